//! Reading objects without running them, for the `dynload` CLI's `tree`,
//! `check` and `why`: the dependency tree that loading would build, the
//! reason each object was found, and what every symbol would bind to.
//!
//! Nothing here has its own idea of the rules: the search is
//! [`crate::find`]'s (the same lists, in the same order, built by the same
//! [`find::search_input`]), objects are mapped by [`crate::map`] (read-only:
//! nothing of them can run), their tables are read by the same parsers, and
//! lookups use [`crate::link::lookup_in_object`]. So the answers cannot
//! disagree with what dynload would load. What differs on purpose: a
//! missing dependency does not end the walk, so that every miss is shown.

mod check;
mod why;

pub use check::{Finding, Severity};
pub use why::{Candidate, ScopeReport, Why};

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::elf::{elf, SymExt, LE};
use crate::error::Error;
use crate::find::{self, dst, FoundVia, ListKind, SearchList};
use crate::host::View;
use crate::map::{self, Mapped};

/// Index of an object in an [`Inspector`].
pub type ObjectId = usize;

/// Why an object is in the tree (libtree's bracketed reasons).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The program that loads everything else (`--host`, `--python`).
    Program,
    /// The name contained a '/' and was used as a path.
    Path,
    /// A DT_RPATH directory: of the object that needs it (`own`), or
    /// inherited from an object above it.
    Rpath {
        /// The object whose DT_RPATH it was.
        of: String,
        /// It was the needing object's own DT_RPATH.
        own: bool,
    },
    /// LD_LIBRARY_PATH.
    LdLibraryPath,
    /// The needing object's DT_RUNPATH.
    Runpath,
    /// /etc/ld.so.cache.
    Cache,
    /// A default directory.
    DefaultPath,
    /// An object of this name (or this file) was loaded before.
    AlreadyLoaded,
    /// glibc's own library: dynload always leaves it to glibc.
    CRuntime,
}

impl Reason {
    /// The short tag, as `tree` prints it between brackets.
    pub fn tag(&self) -> String {
        match self {
            Reason::Program => "program".into(),
            Reason::Path => "direct path".into(),
            Reason::Rpath { own: true, .. } => "rpath".into(),
            Reason::Rpath { of, own: false } => format!("rpath of {of}"),
            Reason::LdLibraryPath => "LD_LIBRARY_PATH".into(),
            Reason::Runpath => "runpath".into(),
            Reason::Cache => "ld.so.cache".into(),
            Reason::DefaultPath => "default path".into(),
            Reason::AlreadyLoaded => "already loaded".into(),
            Reason::CRuntime => "C runtime: glibc".into(),
        }
    }

    /// A stable identifier for JSON output.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Program => "program",
            Reason::Path => "path",
            Reason::Rpath { own: true, .. } => "rpath",
            Reason::Rpath { own: false, .. } => "inherited-rpath",
            Reason::LdLibraryPath => "ld-library-path",
            Reason::Runpath => "runpath",
            Reason::Cache => "ld.so.cache",
            Reason::DefaultPath => "default-path",
            Reason::AlreadyLoaded => "already-loaded",
            Reason::CRuntime => "c-runtime",
        }
    }
}

/// A DT_NEEDED entry that was not found (or could not be read).
#[derive(Debug, Clone)]
pub struct Miss {
    /// The error loading would report (glibc's text).
    pub error: Error,
    /// Every path tried, in order.
    pub tried: Vec<String>,
}

/// One DT_NEEDED entry of an object and what it resolved to.
#[derive(Debug, Clone)]
pub struct Dependency {
    /// The name as written in DT_NEEDED.
    pub name: String,
    /// The object it resolved to, with the reason, or the miss.
    pub target: Result<(ObjectId, Reason), Miss>,
}

/// One object read by an [`Inspector`].
pub struct InspectedObject {
    path: Vec<u8>,
    names: Vec<Vec<u8>>,
    soname: Option<Vec<u8>>,
    origin: Option<Vec<u8>>,
    file_id: (u64, u64),
    is_main: bool,
    host: bool,
    loader: Option<ObjectId>,
    reason: Reason,
    deps: Vec<Dependency>,
    deps_done: bool,
    e_type: u16,
    pub(crate) read: ReadObject,
}

impl InspectedObject {
    /// The path it was found at.
    pub fn path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
    /// The file name (the last path component).
    pub fn file_name(&self) -> String {
        let p = self
            .path
            .rsplit(|&c| c == b'/')
            .next()
            .unwrap_or(&self.path);
        String::from_utf8_lossy(p).into_owned()
    }
    /// DT_SONAME.
    pub fn soname(&self) -> Option<String> {
        self.soname
            .as_deref()
            .map(|s| String::from_utf8_lossy(s).into_owned())
    }
    /// Why it was loaded, the first time it was.
    pub fn reason(&self) -> &Reason {
        &self.reason
    }
    /// Its DT_NEEDED entries, in order, with what they resolved to.
    pub fn dependencies(&self) -> &[Dependency] {
        &self.deps
    }
    /// Part of the host program (loaded by glibc before anything else).
    pub fn is_host(&self) -> bool {
        self.host
    }
    /// The object whose DT_NEEDED made it load.
    pub fn loader(&self) -> Option<ObjectId> {
        self.loader
    }
    /// An executable rather than a shared object.
    pub fn is_executable(&self) -> bool {
        self.e_type == elf::ET_EXEC || self.read.view.dyn_info.flag_1(elf::DF_1_PIE)
    }
    /// A DT_RPATH or DT_RUNPATH string.
    pub fn rpath(&self) -> Option<String> {
        self.dyn_str(self.read.view.dyn_info.rpath())
    }
    /// DT_RUNPATH.
    pub fn runpath(&self) -> Option<String> {
        self.dyn_str(self.read.view.dyn_info.runpath())
    }
    fn dyn_str(&self, off: Option<u64>) -> Option<String> {
        let s = self.read.view.symbols.string(off? as usize)?;
        Some(String::from_utf8_lossy(s).into_owned())
    }
    /// Names of the symbols it exports (defined, global or weak, visible),
    /// each once.
    pub fn exported_symbols(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        exported(&self.read.view)
            .filter_map(|(_, s)| {
                let n = self.read.view.symbols.name(s);
                seen.insert(n)
                    .then(|| String::from_utf8_lossy(n).into_owned())
            })
            .collect()
    }
    /// Does it export a definition of `name` (any version)?
    pub fn exports(&self, name: &str) -> bool {
        let syms = &self.read.view.symbols;
        let mut hash = crate::elf::symbols::NameHash::new(name.as_bytes());
        syms.find(name.as_bytes(), &mut hash, |_, s| is_export(s))
            .is_some()
    }
    /// The versions it defines (DT_VERDEF, without the base version).
    pub fn defined_versions(&self) -> Vec<String> {
        self.read.view.versions.defined_names()
    }

    fn answers_to(&self, name: &[u8]) -> bool {
        crate::object::name_matches(&self.path, &self.names, name, |n| {
            self.soname.as_deref() == Some(n)
        })
    }
}

/// Defined, visible, global/weak/unique symbols of an object.
pub(crate) fn exported(view: &View) -> impl Iterator<Item = (u32, &crate::elf::Sym)> + '_ {
    view.symbols.iter().filter(|(_, s)| is_export(s))
}

fn is_export(s: &crate::elf::Sym) -> bool {
    !s.is_undefined()
        && !s.binds_locally()
        && matches!(
            s.bind(),
            elf::STB_GLOBAL | elf::STB_WEAK | elf::STB_GNU_UNIQUE
        )
}

/// The dependency trees of objects as dynload would load them into a
/// program, read without running anything.
///
/// ```no_run
/// use dynload::inspect::Inspector;
/// let mut inspector = Inspector::new()?;
/// let root = inspector.open("libz.so.1".as_ref())?;
/// for dep in inspector.object(root).dependencies() {
///     println!("{}", dep.name);
/// }
/// # Ok::<(), dynload::Error>(())
/// ```
pub struct Inspector {
    finder: find::Finder,
    library_path: Option<SearchList>,
    objects: Vec<InspectedObject>,
    main: Option<ObjectId>,
    global: Vec<ObjectId>,
    roots: Vec<ObjectId>,
}

impl Inspector {
    /// An inspector whose host is a minimal C program: its global scope is
    /// libc.so.6 and what that needs.
    pub fn new() -> Result<Inspector, Error> {
        let mut ins = Inspector::empty();
        ins.init_library_path();
        let libc = ins.resolve(b"libc.so.6", None)?.0;
        ins.finish_host(libc)?;
        Ok(ins)
    }

    /// An inspector whose host is `program` (an executable: the Python
    /// interpreter, a plugin host): its start-up objects, as glibc would
    /// load them, form the global scope, and its DT_RPATH applies to every
    /// search (as it does to dlopen).
    pub fn with_host(program: &std::path::Path) -> Result<Inspector, Error> {
        let mut ins = Inspector::empty();
        let canonical = std::fs::canonicalize(program).unwrap_or_else(|_| program.to_path_buf());
        let path = canonical.as_os_str().as_bytes().to_vec();
        let opened = find::open_path(&path)?;
        let main = ins.add(opened, &path, None, Reason::Program, true)?;
        ins.main = Some(main);
        ins.init_library_path();
        ins.finish_host(main)?;
        Ok(ins)
    }

    fn empty() -> Inspector {
        Inspector {
            finder: find::Finder::new(),
            library_path: None,
            objects: Vec::new(),
            main: None,
            global: Vec::new(),
            roots: Vec::new(),
        }
    }

    /// LD_LIBRARY_PATH, its tokens expanded for the main program (as the
    /// loader does; with no program, `$ORIGIN` elements are dropped).
    fn init_library_path(&mut self) {
        let settings = crate::process::settings();
        let Some(parts) = &settings.library_path else {
            return;
        };
        let joined = parts.join(&b':');
        let dirs = match self.main {
            Some(m) => find::expand_list(&joined, b":;", &self.dst_values(m)),
            None => {
                let values = dst::DstValues {
                    origin: None,
                    platform: self.finder.hwcaps().platform.as_bytes(),
                    lib: dst::LIB,
                    secure: settings.secure,
                    is_main: true,
                };
                find::expand_list(&joined, b":;", &values)
            }
        };
        self.library_path = Some(SearchList {
            kind: ListKind::LdLibraryPath,
            dirs,
        });
    }

    /// Load the host's dependencies; everything loaded so far is the host
    /// and its breadth-first list is the global scope. glibc puts its own
    /// ld.so at the end if nothing needed it.
    fn finish_host(&mut self, first: ObjectId) -> Result<(), Error> {
        // glibc's start-up order: the program, the preloaded objects
        // (LD_PRELOAD, /etc/ld.so.preload), then everything they need,
        // breadth first.
        let mut start = vec![first];
        for p in &crate::process::settings().preload {
            if let Ok((id, _)) = self.resolve(p, self.main) {
                if !start.contains(&id) {
                    start.push(id);
                }
            }
        }
        let mut list = self.map_deps_from(start);
        if !list.iter().any(|&id| self.objects[id].answers_to(LD_SO)) {
            if let Ok((id, _)) = self.resolve(LD_SO, None) {
                self.map_deps(id);
                list.push(id);
            }
        }
        for o in &mut self.objects {
            o.host = true;
        }
        self.global = list;
        Ok(())
    }

    /// Open `name` as the host program's `dlopen` would: found from the
    /// main program's point of view, with every dependency resolved (misses
    /// are recorded in the tree, not returned). Fails only if `name` itself
    /// cannot be found or read.
    pub fn open(&mut self, name: &OsStr) -> Result<ObjectId, Error> {
        let (root, _) = self.resolve(name.as_bytes(), self.main)?;
        self.objects[root].loader = None;
        self.map_deps(root);
        if !self.roots.contains(&root) {
            self.roots.push(root);
        }
        Ok(root)
    }

    /// An object.
    pub fn object(&self, id: ObjectId) -> &InspectedObject {
        &self.objects[id]
    }

    /// Every object, in load order.
    pub fn objects(&self) -> impl Iterator<Item = (ObjectId, &InspectedObject)> {
        self.objects.iter().enumerate()
    }

    /// The host program, if one was given.
    pub fn host(&self) -> Option<ObjectId> {
        self.main
    }

    /// The global scope, in search order.
    pub fn global_scope(&self) -> &[ObjectId] {
        &self.global
    }

    /// The breadth-first search list of `root` (its local scope).
    pub fn search_list(&self, root: ObjectId) -> Vec<ObjectId> {
        let mut list = vec![root];
        let mut i = 0;
        while i < list.len() {
            for d in &self.objects[list[i]].deps {
                if let Ok((t, _)) = d.target {
                    if !list.contains(&t) {
                        list.push(t);
                    }
                }
            }
            i += 1;
        }
        list
    }

    /// The root whose tree holds `id` (the first opened), if any.
    pub(crate) fn root_of(&self, id: ObjectId) -> Option<ObjectId> {
        self.roots
            .iter()
            .copied()
            .find(|&r| self.search_list(r).contains(&id))
    }

    /// Breadth-first over DT_NEEDED from `root` (glibc's
    /// `_dl_map_object_deps`), resolving what has not been resolved yet.
    fn map_deps(&mut self, root: ObjectId) -> Vec<ObjectId> {
        self.map_deps_from(vec![root])
    }

    fn map_deps_from(&mut self, mut list: Vec<ObjectId>) -> Vec<ObjectId> {
        let mut i = 0;
        while i < list.len() {
            let l = list[i];
            i += 1;
            if !self.objects[l].deps_done {
                self.objects[l].deps_done = true;
                let names: Vec<Vec<u8>> = {
                    let o = &self.objects[l];
                    o.read
                        .view
                        .dyn_info
                        .needed
                        .iter()
                        .filter_map(|&off| {
                            o.read.view.symbols.string(off as usize).map(<[u8]>::to_vec)
                        })
                        .collect()
                };
                let mut deps = Vec::new();
                for n in names {
                    let target = self.resolve(&n, Some(l)).map_err(|error| Miss {
                        tried: match &error {
                            Error::NotFound { tried, .. } => tried.clone(),
                            _ => Vec::new(),
                        },
                        error,
                    });
                    deps.push(Dependency {
                        name: String::from_utf8_lossy(&n).into_owned(),
                        target,
                    });
                }
                self.objects[l].deps = deps;
            }
            for d in &self.objects[l].deps {
                if let Ok((t, _)) = d.target {
                    if !list.contains(&t) {
                        list.push(t);
                    }
                }
            }
        }
        list
    }

    fn dst_values(&self, id: ObjectId) -> dst::DstValues<'_> {
        let o = &self.objects[id];
        dst::DstValues {
            origin: o.origin.as_deref(),
            platform: self.finder.hwcaps().platform.as_bytes(),
            lib: dst::LIB,
            secure: crate::process::settings().secure,
            is_main: o.is_main,
        }
    }

    fn path_owner(&self, id: ObjectId) -> find::PathOwner<'_> {
        let o = &self.objects[id];
        let d = &o.read.view.dyn_info;
        find::PathOwner {
            name: o.path(),
            rpath: d
                .rpath()
                .and_then(|off| o.read.view.symbols.string(off as usize)),
            runpath: d
                .runpath()
                .and_then(|off| o.read.view.symbols.string(off as usize)),
            nodeflib: d.flag_1(elf::DF_1_NODEFLIB),
            dst: self.dst_values(id),
        }
    }

    /// glibc's `_dl_map_object` for `name` needed by `loader` (None: a
    /// dlopen by the main program, or the host itself).
    fn resolve(
        &mut self,
        name: &[u8],
        loader: Option<ObjectId>,
    ) -> Result<(ObjectId, Reason), Error> {
        let c_runtime = crate::host::is_c_runtime(name);
        if let Some(id) = self.objects.iter().position(|o| o.answers_to(name)) {
            let reason = if c_runtime {
                Reason::CRuntime
            } else {
                Reason::AlreadyLoaded
            };
            return Ok((id, reason));
        }
        let shown = String::from_utf8_lossy(name).into_owned();
        let expanded;
        let name_used = if dst::has_dst(name) {
            let values = loader.or(self.main).map(|l| self.dst_values(l));
            expanded = values.and_then(|v| dst::expand(name, &v)).ok_or_else(|| {
                Error::invalid(shown.clone(), "empty dynamic string token substitution")
            })?;
            &expanded[..]
        } else {
            name
        };
        let opened = if name_used.contains(&b'/') {
            find::open_path(name_used)?
        } else {
            let input = {
                let mut chain = Vec::new();
                let mut main_in_chain = false;
                let mut cur = loader;
                while let Some(id) = cur {
                    chain.push(self.path_owner(id));
                    main_in_chain |= Some(id) == self.main;
                    cur = self.objects[id].loader;
                }
                let main = self
                    .main
                    .filter(|_| !main_in_chain)
                    .map(|m| self.path_owner(m));
                find::search_input(name_used, &chain, main.as_ref())
            };
            let lp = self.library_path.clone();
            self.finder.search(&input, lp.as_ref())?
        };
        if let Some(id) = self
            .objects
            .iter()
            .position(|o| o.file_id == (opened.dev, opened.ino))
        {
            if !self.objects[id].names.iter().any(|n| n == name) {
                self.objects[id].names.push(name.to_vec());
            }
            return Ok((id, Reason::AlreadyLoaded));
        }
        let requester = loader.map(|l| self.objects[l].path());
        let mut reason = match &opened.via {
            FoundVia::Path => Reason::Path,
            FoundVia::Rpath { of } => Reason::Rpath {
                own: requester.as_deref() == Some(of.as_str()),
                of: of.clone(),
            },
            FoundVia::LdLibraryPath => Reason::LdLibraryPath,
            FoundVia::Runpath { .. } => Reason::Runpath,
            FoundVia::Cache => Reason::Cache,
            FoundVia::DefaultPath => Reason::DefaultPath,
        };
        if c_runtime {
            reason = Reason::CRuntime;
        }
        let path = opened.path.clone();
        let id = self.add(opened, name, loader, reason.clone(), false)?;
        if self.objects[id]
            .soname
            .as_deref()
            .is_some_and(crate::host::is_c_runtime)
        {
            self.objects[id].reason = Reason::CRuntime;
            reason = Reason::CRuntime;
        }
        let _ = path;
        Ok((id, reason))
    }

    fn add(
        &mut self,
        opened: find::Opened,
        name: &[u8],
        loader: Option<ObjectId>,
        reason: Reason,
        is_main: bool,
    ) -> Result<ObjectId, Error> {
        let read = read_file(&opened)?;
        let view = &read.view;
        let soname = view
            .dyn_info
            .soname()
            .and_then(|o| view.symbols.string(o as usize))
            .map(<[u8]>::to_vec);
        let origin = if is_main {
            std::path::Path::new(OsStr::from_bytes(&opened.path))
                .parent()
                .map(|p| p.as_os_str().as_bytes().to_vec())
        } else {
            crate::registry::origin_of(&opened.path)
        };
        let id = self.objects.len();
        self.objects.push(InspectedObject {
            path: opened.path.clone(),
            names: vec![name.to_vec()],
            soname,
            origin,
            file_id: (opened.dev, opened.ino),
            is_main,
            host: false,
            loader,
            reason,
            deps: Vec::new(),
            deps_done: false,
            e_type: opened.header.e_type,
            read,
        });
        Ok(id)
    }

    /// The scopes a reference from `id` is looked up in, in order, as
    /// dynload would give it when `id`'s root is opened RTLD_LOCAL (or
    /// with `deepbind`, RTLD_DEEPBIND): each scope as (name, objects).
    pub(crate) fn scopes_of(&self, id: ObjectId, deepbind: bool) -> Vec<(String, Vec<ObjectId>)> {
        let mut out = Vec::new();
        let o = &self.objects[id];
        if o.read.view.dyn_info.is_symbolic() {
            out.push(("the object itself (DT_SYMBOLIC)".to_string(), vec![id]));
        }
        let global = ("global scope".to_string(), self.global.clone());
        let local = if o.host {
            None
        } else {
            self.root_of(id).map(|r| {
                (
                    format!("local scope of {}", self.objects[r].file_name()),
                    self.search_list(r),
                )
            })
        };
        match (local, deepbind) {
            (Some(l), true) => {
                out.push(l);
                out.push(global);
            }
            (Some(l), false) => {
                out.push(global);
                out.push(l);
            }
            (None, _) => out.push(global),
        }
        out
    }

    /// The files of the default directories, for "which library would
    /// define this" (each file once).
    pub(crate) fn system_libraries() -> Vec<OsString> {
        use std::os::unix::fs::MetadataExt;
        // One name per file: a versioned name (libz.so.1) rather than the
        // development link (libz.so), the shortest of those.
        let mut by_file: std::collections::BTreeMap<(u64, u64), OsString> = Default::default();
        let key = |n: &OsStr| {
            let b = n.as_bytes();
            (!b.windows(4).any(|w| w == b".so."), b.len())
        };
        for dir in find::DEFAULT_DIRS {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in rd.flatten() {
                let n = e.file_name();
                let b = n.as_bytes();
                if !(b.ends_with(b".so") || b.windows(4).any(|w| w == b".so.")) {
                    continue;
                }
                let mut p = dir.as_bytes().to_vec();
                p.push(b'/');
                p.extend_from_slice(b);
                let p = OsString::from_vec(p);
                let Ok(meta) = std::fs::metadata(&p) else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                let slot = by_file
                    .entry((meta.dev(), meta.ino()))
                    .or_insert_with(|| p.clone());
                let base = |x: &OsString| {
                    let b = x.as_bytes();
                    OsStr::from_bytes(&b[b.iter().rposition(|&c| c == b'/').map_or(0, |i| i + 1)..])
                        .to_os_string()
                };
                if key(&base(&p)) < key(&base(slot)) {
                    *slot = p;
                }
            }
        }
        let mut out: Vec<OsString> = by_file.into_values().collect();
        out.sort();
        out
    }

    /// Read one file on its own (not added to any tree).
    pub(crate) fn read_alone(path: &OsStr) -> Option<ReadObject> {
        let opened = find::open_verify(path.as_bytes()).ok()?;
        read_file(&opened).ok()
    }
}

/// An object mapped read-only, with the view of its tables. The view
/// points into the mapping: it is declared first, so it is dropped first,
/// and the two are only ever moved together.
pub(crate) struct ReadObject {
    pub(crate) view: View,
    pub(crate) mapped: Mapped,
}

/// Map an opened file read-only and read its tables.
fn read_file(opened: &find::Opened) -> Result<ReadObject, Error> {
    let shown = String::from_utf8_lossy(&opened.path).into_owned();
    let mapped = map::map_for_reading(opened, &shown)?;
    // SAFETY: `mapped` owns the read-only mapping of the object and its
    // program headers, and is kept with the view in `ReadObject`. (As for
    // any loader, a file truncated while mapped would make reads fault.)
    let view = unsafe {
        View::of_mapped(
            mapped.base,
            mapped.phdrs.as_ptr(),
            mapped.phdrs.len(),
            false,
        )
    }
    .map_err(|why| Error::invalid(shown, why))?;
    Ok(ReadObject { view, mapped })
}

/// glibc's own loader, in every program's global scope.
const LD_SO: &[u8] = b"ld-linux-x86-64.so.2";

/// The text of a version index of `view`: "@@V" (default), "@V" (hidden),
/// or "" (none).
pub(crate) fn version_suffix(view: &View, versym: Option<u16>) -> String {
    view.versions.suffix(versym)
}

/// The program headers of `o` with type `t`.
pub(crate) fn phdrs_of(o: &InspectedObject, t: u32) -> impl Iterator<Item = &crate::elf::Phdr> {
    o.read
        .mapped
        .phdrs
        .iter()
        .filter(move |p| p.p_type.get(LE) == t)
}

/// The names a file exports, read without loading it (nothing runs); for
/// telling Python extension modules apart.
pub fn exported_symbols_of(path: &std::path::Path) -> Result<Vec<String>, Error> {
    let bytes = path.as_os_str().as_bytes();
    let opened = find::open_path(bytes)?;
    let read = read_file(&opened)?;
    let view = &read.view;
    let mut seen = HashSet::new();
    let names = exported(view)
        .filter_map(|(_, s)| {
            let n = view.symbols.name(s);
            seen.insert(n)
                .then(|| String::from_utf8_lossy(n).into_owned())
        })
        .collect();
    Ok(names)
}

/// The places a search tried, with each directory's CPU-specific
/// subdirectories (glibc-hwcaps/..., tls/..., haswell/...) folded into the
/// directory they precede: "DIR/NAME (after N subdirectories of it)".
pub fn fold_tried(tried: &[String]) -> Vec<String> {
    // (path, number of CPU subdirectories folded into it)
    let mut out: Vec<(String, usize)> = Vec::new();
    for t in tried {
        let Some(slash) = t.rfind('/') else {
            out.push((t.clone(), 0));
            continue;
        };
        let (dir, name) = (&t[..=slash], &t[slash + 1..]);
        let mut folded = 0;
        while let Some((last, n)) = out.last() {
            let Some(sub) = last
                .strip_prefix(dir)
                .and_then(|r| r.strip_suffix(name))
                .and_then(|r| r.strip_suffix('/'))
            else {
                break;
            };
            if !sub.split('/').all(is_cpu_subdir) {
                break;
            }
            folded += 1 + n;
            out.pop();
        }
        out.push((t.clone(), folded));
    }
    out.into_iter()
        .map(|(t, n)| {
            if n == 0 {
                t
            } else {
                format!("{t} (after {n} CPU-specific subdirectories of it)")
            }
        })
        .collect()
}

/// Components of the subdirectories glibc tries first in each directory.
fn is_cpu_subdir(c: &str) -> bool {
    matches!(
        c,
        "glibc-hwcaps"
            | "tls"
            | "haswell"
            | "xeon_phi"
            | "avx512_1"
            | "x86_64"
            | "x86-64-v2"
            | "x86-64-v3"
            | "x86-64-v4"
    )
}

#[cfg(test)]
mod fold_tests {
    #[test]
    fn hwcaps_subdirectories_fold_into_their_directory() {
        let tried: Vec<String> = [
            "/etc/ld.so.cache (no entry)",
            "/lib/glibc-hwcaps/x86-64-v3/libx.so",
            "/lib/tls/libx.so",
            "/lib/libx.so",
            "/opt/libx.so",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            super::fold_tried(&tried),
            [
                "/etc/ld.so.cache (no entry)",
                "/lib/libx.so (after 2 CPU-specific subdirectories of it)",
                "/opt/libx.so"
            ]
        );
    }
}
