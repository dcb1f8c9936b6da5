//! Finding the file for a name: glibc's search order, directory by
//! directory, with the checks `open_verify` makes on each candidate.
//!
//! A name with a '/' is used as given. A bare name is looked for in
//! DT_RPATH of the loader chain (unless the loader has DT_RUNPATH),
//! LD_LIBRARY_PATH, DT_RUNPATH of the loader, /etc/ld.so.cache and Debian's
//! default directories, each directory preceded by its hwcaps
//! subdirectories.

pub(crate) mod cache;
pub(crate) mod dst;
pub(crate) mod hwcaps;

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};

use crate::debug::{self, debug};
use crate::elf::header::{self, FileHeader, HeaderProblem, HEADER_READ};
use crate::elf::Phdr;
use crate::error::{strerror, Error, Shown};

/// Debian's default library directories, in search order.
pub(crate) const DEFAULT_DIRS: [&str; 4] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib",
    "/usr/lib",
];
pub(crate) const CACHE_FILE: &str = "/etc/ld.so.cache";

/// How an object was found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FoundVia {
    /// The name contained a '/' and was used as a path.
    Path,
    /// A DT_RPATH directory of the named object.
    Rpath {
        /// The object whose DT_RPATH it was.
        of: String,
    },
    /// LD_LIBRARY_PATH.
    LdLibraryPath,
    /// The loader's DT_RUNPATH.
    Runpath {
        /// The object whose DT_RUNPATH it was.
        of: String,
    },
    /// /etc/ld.so.cache.
    Cache,
    /// One of the default directories.
    DefaultPath,
}

impl std::fmt::Display for FoundVia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FoundVia::Path => f.write_str("path"),
            FoundVia::Rpath { of } => write!(f, "rpath of {of}"),
            FoundVia::LdLibraryPath => f.write_str("LD_LIBRARY_PATH"),
            FoundVia::Runpath { of } => write!(f, "runpath of {of}"),
            FoundVia::Cache => f.write_str("ld.so.cache"),
            FoundVia::DefaultPath => f.write_str("default path"),
        }
    }
}

/// Which list a directory came from.
#[derive(Debug, Clone)]
pub(crate) enum ListKind {
    Rpath(String),
    LdLibraryPath,
    Runpath(String),
    System,
}

/// One list of directories to search (already expanded).
#[derive(Debug, Clone)]
pub(crate) struct SearchList {
    pub kind: ListKind,
    pub dirs: Vec<Vec<u8>>,
}

impl SearchList {
    fn via(&self) -> FoundVia {
        match &self.kind {
            ListKind::Rpath(of) => FoundVia::Rpath { of: of.clone() },
            ListKind::LdLibraryPath => FoundVia::LdLibraryPath,
            ListKind::Runpath(of) => FoundVia::Runpath { of: of.clone() },
            ListKind::System => FoundVia::DefaultPath,
        }
    }
    fn label(&self) -> String {
        match &self.kind {
            ListKind::Rpath(of) => format!("RPATH from file {of}"),
            ListKind::LdLibraryPath => "LD_LIBRARY_PATH".into(),
            ListKind::Runpath(of) => format!("RUNPATH from file {of}"),
            ListKind::System => "system search path".into(),
        }
    }
}

/// Split and expand a DT_RPATH/DT_RUNPATH/LD_LIBRARY_PATH value the way
/// glibc's `fillin_rpath` does: elements whose tokens cannot be expanded are
/// dropped, an empty element means the current directory, trailing slashes
/// go, and duplicates are searched once.
pub(crate) fn expand_list(
    spec: &[u8],
    separators: &[u8],
    values: &dst::DstValues<'_>,
) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for elem in spec.split(|c| separators.contains(c)) {
        let Some(mut dir) = dst::expand(elem, values) else {
            continue;
        };
        // An empty element is the current directory: glibc keeps it as an
        // empty prefix, so the name is opened relative to the cwd. An
        // element that expands to nothing is dropped.
        if dir.is_empty() && !elem.is_empty() {
            continue;
        }
        while dir.len() > 1 && dir.ends_with(b"/") {
            dir.pop();
        }
        if !out.contains(&dir) {
            out.push(dir);
        }
    }
    out
}

/// Everything the search needs to know about who asks.
pub(crate) struct SearchInput<'a> {
    pub name: &'a [u8],
    /// DT_RPATH lists of the loader chain and the executable, in order;
    /// empty when the loader has DT_RUNPATH.
    pub rpaths: Vec<SearchList>,
    pub runpath: Option<SearchList>,
    /// The loader has DF_1_NODEFLIB.
    pub nodeflib: bool,
}

/// The facts about one object that decide where the objects it needs are
/// searched for.
pub(crate) struct PathOwner<'a> {
    /// Its name in messages (`RPATH from file NAME`).
    pub name: String,
    pub rpath: Option<&'a [u8]>,
    pub runpath: Option<&'a [u8]>,
    pub nodeflib: bool,
    pub dst: dst::DstValues<'a>,
}

/// glibc's `_dl_map_object` search lists for `name`: `chain` is the object
/// that needs it followed by the objects that loaded it, up to the root;
/// `main` is the main program when it is not in the chain. DT_RPATH of
/// the whole chain (and of the main program) is used unless the requester
/// has DT_RUNPATH, which is then searched after LD_LIBRARY_PATH; the
/// DT_RPATH of an object that also has DT_RUNPATH is never used.
pub(crate) fn search_input<'a>(
    name: &'a [u8],
    chain: &[PathOwner<'_>],
    main: Option<&PathOwner<'_>>,
) -> SearchInput<'a> {
    let Some(requester) = chain.first().or(main) else {
        return SearchInput {
            name,
            rpaths: Vec::new(),
            runpath: None,
            nodeflib: false,
        };
    };
    let mut rpaths = Vec::new();
    if requester.runpath.is_none() {
        // An object that has DT_RUNPATH has no DT_RPATH for glibc
        // (`elf_get_dynamic_info` drops it): not for its own needs, and not
        // for those of the objects below it.
        for o in chain.iter().chain(main).filter(|o| o.runpath.is_none()) {
            if let Some(spec) = o.rpath {
                rpaths.push(SearchList {
                    kind: ListKind::Rpath(o.name.clone()),
                    dirs: expand_list(spec, b":", &o.dst),
                });
            }
        }
    }
    let runpath = requester.runpath.map(|spec| SearchList {
        kind: ListKind::Runpath(requester.name.clone()),
        dirs: expand_list(spec, b":", &requester.dst),
    });
    SearchInput {
        name,
        rpaths,
        runpath,
        nodeflib: requester.nodeflib,
    }
}

/// An opened and checked candidate file.
pub(crate) struct Opened {
    pub path: Vec<u8>,
    pub file: File,
    pub header: FileHeader,
    pub phdrs: Vec<Phdr>,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub via: FoundVia,
}

/// Why a candidate was not taken.
pub(crate) enum Rejected {
    /// Could not be opened (errno); the search continues.
    Missing(i32),
    /// Another ELF class or machine; the search continues.
    Skipped(HeaderProblem),
    /// A real error that ends the search.
    Fatal(Error),
}

/// Open `path` and check it is an object this loader could map.
pub(crate) fn open_verify(path: &[u8]) -> Result<Opened, Rejected> {
    let os = std::ffi::OsStr::from_bytes(path);
    if let Some(errno) = crate::fault::injected(crate::fault::Syscall::Open) {
        return Err(Rejected::Missing(errno));
    }
    // (std opens with O_CLOEXEC; this descriptor is the one mapped.)
    let mut file = match std::fs::OpenOptions::new().read(true).open(os) {
        Ok(f) => f,
        Err(e) => return Err(Rejected::Missing(e.raw_os_error().unwrap_or(libc::ENOENT))),
    };
    // (The name is only for errors: made a string when one is.)
    let name = Shown(path);
    let mut buf = [0u8; HEADER_READ];
    let mut len = 0;
    while len < std::mem::size_of::<crate::elf::Ehdr>() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Rejected::Fatal(Error::system(
                    name,
                    "cannot read file data",
                    e.raw_os_error().unwrap_or(libc::EIO),
                )))
            }
        }
    }
    let buf = &buf[..len];
    let header = match header::check(buf) {
        Ok(h) => h,
        Err(p) if p.skips_in_search() => return Err(Rejected::Skipped(p)),
        Err(p) => return Err(Rejected::Fatal(Error::invalid(name, p.message()))),
    };
    let meta = file.metadata().map_err(|e| {
        Rejected::Fatal(Error::system(
            name,
            "cannot stat shared object",
            e.raw_os_error().unwrap_or(libc::EIO),
        ))
    })?;
    let phnum = usize::from(header.phnum);
    let ph_bytes = phnum * std::mem::size_of::<Phdr>();
    let phoff = header.phoff as usize;
    let phdrs = match phoff.checked_add(ph_bytes) {
        Some(end) if end <= buf.len() => header::program_headers(&buf[phoff..end], phnum),
        Some(end) if (end as u64) <= meta.len() => {
            let mut ph = vec![0u8; ph_bytes];
            match file.read_exact_at(&mut ph, phoff as u64) {
                Ok(()) => header::program_headers(&ph, phnum),
                Err(e) => {
                    return Err(Rejected::Fatal(Error::system(
                        name,
                        "cannot read file data",
                        e.raw_os_error().unwrap_or(libc::EIO),
                    )))
                }
            }
        }
        _ => None,
    };
    let Some(phdrs) = phdrs else {
        return Err(Rejected::Fatal(
            Error::invalid(name, "cannot read file data")
                .with_why("the program headers lie beyond the end of the file"),
        ));
    };
    Ok(Opened {
        path: path.to_vec(),
        file,
        header,
        phdrs,
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.len(),
        via: FoundVia::Path,
    })
}

/// The search state kept between calls: CPU-dependent subdirectories, the
/// parsed ld.so.cache, and which directories are known not to exist (glibc
/// remembers the same, so later searches skip them).
pub(crate) struct Finder {
    /// Detected when first needed (a search, `$PLATFORM`): a process
    /// whose loads all name paths never reads the CPU's vendor.
    hwcaps: std::sync::OnceLock<hwcaps::Hwcaps>,
    cache: Option<Option<cache::LdCache>>,
    missing_dirs: HashMap<Vec<u8>, bool>,
}

struct Attempt {
    tried: Vec<String>,
    other_class: bool,
    eacces: bool,
}

impl Finder {
    pub(crate) fn new() -> Finder {
        Finder {
            hwcaps: std::sync::OnceLock::new(),
            cache: None,
            missing_dirs: HashMap::new(),
        }
    }

    pub(crate) fn hwcaps(&self) -> &hwcaps::Hwcaps {
        self.hwcaps.get_or_init(hwcaps::Hwcaps::detect)
    }

    fn cache(&mut self) -> Option<&cache::LdCache> {
        self.cache
            .get_or_insert_with(|| {
                let file = std::fs::File::open(CACHE_FILE).ok()?;
                let bytes = crate::map::FileMap::of(&file)?;
                cache::LdCache::parse(cache::CacheBytes::Mapped(bytes)).ok()
            })
            .as_ref()
    }

    /// Look up `name` in ld.so.cache only.
    pub(crate) fn cache_lookup(&mut self, name: &[u8]) -> Option<Vec<u8>> {
        let hwcap = self.hwcaps().hwcap;
        let active = self.hwcaps().glibc_hwcaps.clone();
        self.cache()?
            .lookup(name, &active, hwcap)
            .map(<[u8]>::to_vec)
    }

    /// The default directories (for diagnostics and dlinfo).
    pub(crate) fn system_list() -> SearchList {
        SearchList {
            kind: ListKind::System,
            dirs: DEFAULT_DIRS.iter().map(|d| d.as_bytes().to_vec()).collect(),
        }
    }

    /// The candidate directories of `list`, each with its hwcaps
    /// subdirectories first, skipping those known not to exist.
    pub(crate) fn expanded_dirs(&self, list: &SearchList) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for dir in &list.dirs {
            for sub in &self.hwcaps().subdirs {
                let d = if sub.is_empty() {
                    dir.clone()
                } else {
                    join_dir(dir, sub.trim_end_matches('/').as_bytes())
                };
                if self.missing_dirs.get(&d) != Some(&true) {
                    out.push(d);
                }
            }
        }
        out
    }

    fn try_list(
        &mut self,
        name: &[u8],
        list: &SearchList,
        att: &mut Attempt,
    ) -> Result<Option<Opened>, Error> {
        let dirs = self.expanded_dirs(list);
        if dirs.is_empty() {
            return Ok(None);
        }
        if debug::enabled(debug::LIBS) {
            let shown: Vec<String> = dirs
                .iter()
                .map(|d| String::from_utf8_lossy(d).into_owned())
                .collect();
            debug!(
                debug::LIBS,
                " search path={}\t\t({})",
                shown.join(":"),
                list.label()
            );
        }
        for dir in dirs {
            let path = join_dir(&dir, name);
            let shown = String::from_utf8_lossy(&path).into_owned();
            debug!(debug::LIBS, "  trying file={shown}");
            att.tried.push(shown);
            match open_verify(&path) {
                Ok(mut o) => {
                    o.via = list.via();
                    return Ok(Some(o));
                }
                Err(Rejected::Skipped(HeaderProblem::WrongClass)) => att.other_class = true,
                Err(Rejected::Skipped(_)) => {}
                // Another failure than "not there" or "not allowed" ends
                // the search with its reason, as in glibc's `open_path`
                // (EMFILE: "Too many open files").
                Err(Rejected::Missing(errno)) if !is_absence(errno) => {
                    return Err(Error::NotFound {
                        name: String::from_utf8_lossy(name).into_owned(),
                        reason: strerror(errno),
                        tried: att.tried.clone(),
                    });
                }
                Err(Rejected::Missing(errno)) => {
                    if errno == libc::EACCES {
                        att.eacces = true;
                    }
                    // Remember directories that do not exist, as glibc does,
                    // so that later searches do not try them again (not
                    // relative ones: the current directory may change).
                    if dir.starts_with(b"/") {
                        self.missing_dirs.entry(dir.clone()).or_insert_with(|| {
                            !std::path::Path::new(std::ffi::OsStr::from_bytes(&dir)).is_dir()
                        });
                    }
                }
                Err(Rejected::Fatal(e)) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Search for a bare name in glibc's order.
    pub(crate) fn search(
        &mut self,
        input: &SearchInput<'_>,
        library_path: Option<&SearchList>,
    ) -> Result<Opened, Error> {
        let name = input.name;
        let shown = String::from_utf8_lossy(name).into_owned();
        debug!(debug::LIBS, "find library={shown} [0]; searching");
        let mut att = Attempt {
            tried: Vec::new(),
            other_class: false,
            eacces: false,
        };
        let mut found = None;
        for list in &input.rpaths {
            if let Some(o) = self.try_list(name, list, &mut att)? {
                found = Some(o);
                break;
            }
        }
        if found.is_none() {
            if let Some(list) = library_path {
                found = self.try_list(name, list, &mut att)?;
            }
        }
        if found.is_none() {
            if let Some(list) = &input.runpath {
                found = self.try_list(name, list, &mut att)?;
            }
        }
        if found.is_none() {
            debug!(debug::LIBS, " search cache={CACHE_FILE}");
            let cached = self.cache_lookup(name);
            if cached.is_none() {
                att.tried.push(format!("{CACHE_FILE} (no entry)"));
            }
            if let Some(path) = cached {
                let in_system_dir = DEFAULT_DIRS
                    .iter()
                    .any(|d| path.starts_with(d.as_bytes()) && path.get(d.len()) == Some(&b'/'));
                if !(input.nodeflib && in_system_dir) {
                    let p = String::from_utf8_lossy(&path).into_owned();
                    debug!(debug::LIBS, "  trying file={p}");
                    att.tried.push(p);
                    match open_verify(&path) {
                        Ok(mut o) => {
                            o.via = FoundVia::Cache;
                            found = Some(o);
                        }
                        Err(Rejected::Skipped(HeaderProblem::WrongClass)) => att.other_class = true,
                        Err(Rejected::Skipped(_)) | Err(Rejected::Missing(_)) => {}
                        Err(Rejected::Fatal(e)) => return Err(e),
                    }
                }
            }
        }
        if found.is_none() && !input.nodeflib {
            found = self.try_list(name, &Finder::system_list(), &mut att)?;
        }
        debug!(debug::LIBS, "");
        match found {
            Some(o) => Ok(o),
            None if att.other_class => Err(Error::invalid(shown, "wrong ELF class: ELFCLASS32")),
            None => Err(Error::NotFound {
                name: shown,
                reason: strerror(if att.eacces {
                    libc::EACCES
                } else {
                    libc::ENOENT
                }),
                tried: att.tried,
            }),
        }
    }
}

/// Open a name that contains '/' (after token expansion).
pub(crate) fn open_path(path: &[u8]) -> Result<Opened, Error> {
    let shown = Shown(path);
    match open_verify(path) {
        Ok(o) => Ok(o),
        Err(Rejected::Missing(errno)) => Err(Error::NotFound {
            name: shown.into(),
            reason: strerror(errno),
            tried: vec![shown.into()],
        }),
        Err(Rejected::Skipped(HeaderProblem::WrongClass)) => {
            Err(Error::invalid(shown, "wrong ELF class: ELFCLASS32"))
        }
        // glibc skips a file for another machine with ENOENT, so a direct
        // path to one reads "cannot open shared object file: No such file
        // or directory".
        Err(Rejected::Skipped(_)) => Err(Error::NotFound {
            name: shown.into(),
            reason: strerror(libc::ENOENT),
            tried: vec![format!("{shown} (an ELF object for another machine)")],
        }),
        Err(Rejected::Fatal(e)) => Err(e),
    }
}

/// Does a failed open mean only that this candidate is not usable (so the
/// search goes on)?
fn is_absence(errno: i32) -> bool {
    matches!(errno, libc::ENOENT | libc::ENOTDIR | libc::EACCES)
}

/// `dir/name`; an empty `dir` is the current directory (no prefix).
fn join_dir(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = dir.to_vec();
    if !path.is_empty() && !path.ends_with(b"/") {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}
