//! `dynload check`: what would go wrong if an object were loaded, found by
//! reading it and its tree (nothing runs), by severity.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;

use super::{exported, phdrs_of, version_suffix, Inspector, ObjectId, Reason};
use crate::elf::symbols::NameHash;
use crate::elf::versions::VersionEntry;
use crate::elf::{elf, Rela, SymExt, LE};
use crate::error::Error;
use crate::link::{lookup_in_object, Flags};

/// How bad a finding is. `check` exits with 2 if there is an error, 1 if
/// there is a warning, else 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing; nothing breaks.
    Info,
    /// Works now, but by luck or with a cost.
    Warning,
    /// Loading fails, or the program breaks.
    Error,
}

impl Severity {
    /// "info", "warning" or "error".
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One thing `check` found.
#[derive(Debug, Clone)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// A stable identifier (`missing-dependency`, `undefined-symbol`, ...).
    pub code: &'static str,
    /// The object concerned.
    pub object: String,
    /// The symbol concerned, if any.
    pub symbol: Option<String>,
    /// One line: what is wrong (glibc's error text where glibc has one).
    pub message: String,
    /// Further lines: why, what was tried, what would fix it.
    pub details: Vec<String>,
}

/// glibc 2.36's static TLS surplus for objects loaded after start-up
/// (`glibc.rtld.optional_static_tls` 512 bytes plus what its namespaces
/// reserve): an initial-exec TLS block bigger than this can never fit.
const STATIC_TLS_SURPLUS: u64 = 1664;

/// Undefined symbols of one object for which the nearest candidates are
/// worked out.
const DIAGNOSED_PER_OBJECT: usize = 20;

/// One symbolic reference of an object (a relocation's symbol).
pub(crate) struct Reference {
    pub(crate) sym: u32,
    /// Only PLT slots (R_X86_64_JUMP_SLOT) refer to it.
    pub(crate) plt: bool,
    /// An initial-exec TLS reference (R_X86_64_TPOFF64) among them.
    pub(crate) tpoff: bool,
}

impl Inspector {
    /// Everything that would go wrong, or work only by luck, when `root`
    /// is opened (RTLD_LOCAL) by the host program.
    pub fn check(&self, root: ObjectId) -> Vec<Finding> {
        let mut out = Vec::new();
        let list = self.search_list(root);
        let ours: Vec<ObjectId> = list
            .iter()
            .copied()
            .filter(|&id| !self.objects[id].host)
            .collect();
        let r = &self.objects[root];
        if r.is_executable() {
            let pie = r.read.view.dyn_info.flag_1(elf::DF_1_PIE);
            out.push(Finding {
                severity: Severity::Error,
                code: "executable",
                object: r.path(),
                symbol: None,
                message: format!(
                    "{}: cannot dynamically load {}executable",
                    r.path(),
                    if pie { "position-independent " } else { "" }
                ),
                details: vec!["only shared objects can be opened; build it with -shared".into()],
            });
        }
        for &id in &ours {
            self.check_dependencies(id, &mut out);
            // glibc's own libraries are glibc's business.
            if self.objects[id].reason != Reason::CRuntime || id == root {
                self.check_object(id, &mut out);
            }
            self.check_versions(id, &mut out);
        }
        let mut missing: Vec<(usize, String)> = Vec::new();
        for &id in &ours {
            // glibc's own libraries are glibc's business, unless one is what
            // was asked for.
            if self.objects[id].reason == Reason::CRuntime && id != root {
                continue;
            }
            self.check_symbols(id, &mut out, &mut missing);
        }
        self.suggest_definers(&mut out, &missing);
        self.check_collisions(root, &ours, &mut out);
        out
    }

    fn check_dependencies(&self, id: ObjectId, out: &mut Vec<Finding>) {
        let o = &self.objects[id];
        for dep in &o.deps {
            match &dep.target {
                Err(miss) => {
                    let not_found = matches!(miss.error, Error::NotFound { .. });
                    let mut details = Vec::new();
                    if !miss.tried.is_empty() {
                        details.push(format!(
                            "tried, in order: {}",
                            super::fold_tried(&miss.tried).join(", ")
                        ));
                    }
                    details.extend(self.runpath_hint(id, &dep.name));
                    out.push(Finding {
                        severity: Severity::Error,
                        code: if not_found {
                            "missing-dependency"
                        } else {
                            "unreadable-dependency"
                        },
                        object: o.path(),
                        symbol: None,
                        message: format!("{} (needed by {})", miss.error, o.path()),
                        details,
                    });
                }
                Ok((t, Reason::Rpath { of, own: false })) => {
                    let t = &self.objects[*t];
                    out.push(Finding {
                        severity: Severity::Info,
                        code: "inherited-rpath",
                        object: o.path(),
                        symbol: None,
                        message: format!(
                            "{} was found only through the DT_RPATH of {of}, inherited by {}",
                            t.path(),
                            o.file_name()
                        ),
                        details: vec![format!(
                            "DT_RPATH is inherited by dependencies; DT_RUNPATH (what current linkers write) is not: relinked with RUNPATH, {of} would no longer make {} findable for {}",
                            dep.name,
                            o.file_name()
                        )],
                    });
                }
                Ok(_) => {}
            }
        }
    }

    /// A missing `name` needed by `id` that an ancestor's DT_RUNPATH
    /// would have found: RUNPATH is not inherited.
    fn runpath_hint(&self, id: ObjectId, name: &str) -> Option<String> {
        let mut cur = self.objects[id].loader;
        while let Some(a) = cur {
            let ao = &self.objects[a];
            if let Some(spec) = ao.runpath() {
                let values = self.dst_values(a);
                for dir in crate::find::expand_list(spec.as_bytes(), b":", &values) {
                    let mut p = dir.clone();
                    p.push(b'/');
                    p.extend_from_slice(name.as_bytes());
                    if std::path::Path::new(std::ffi::OsStr::new(
                        std::str::from_utf8(&p).unwrap_or_default(),
                    ))
                    .is_file()
                    {
                        return Some(format!(
                            "{} exists in {}, a DT_RUNPATH directory of {}; but DT_RUNPATH applies only to {}'s own DT_NEEDED entries, not to those of its dependencies (unlike DT_RPATH). Fix: give {} its own RUNPATH (e.g. -Wl,-rpath,'$ORIGIN'), or make {} a direct dependency of {}",
                            name,
                            String::from_utf8_lossy(&dir),
                            ao.file_name(),
                            ao.file_name(),
                            self.objects[id].file_name(),
                            name,
                            ao.file_name()
                        ));
                    }
                }
            }
            cur = ao.loader;
        }
        None
    }

    fn check_object(&self, id: ObjectId, out: &mut Vec<Finding>) {
        let o = &self.objects[id];
        let d = &o.read.view.dyn_info;
        let mut push = |severity, code, message: String, details: Vec<String>| {
            out.push(Finding {
                severity,
                code,
                object: o.path(),
                symbol: None,
                message,
                details,
            })
        };
        let stack = phdrs_of(o, elf::PT_GNU_STACK).next();
        if stack.is_none_or(|p| p.p_flags.get(LE) & elf::PF_X != 0) {
            let e = crate::map::executable_stack_error(o.path());
            push(
                Severity::Error,
                "executable-stack",
                e.to_string(),
                vec![
                    why_of(&e),
                    "glibc 2.36 loads it and makes every thread's stack executable. Usually an assembly file without a .note.GNU-stack section: link with -Wl,-z,noexecstack".into(),
                ],
            );
        }
        if phdrs_of(o, elf::PT_LOAD).any(|p| {
            let f = p.p_flags.get(LE);
            f & elf::PF_W != 0 && f & elf::PF_X != 0
        }) {
            push(
                Severity::Error,
                "writable-executable",
                format!(
                    "{}: ELF load command is both writable and executable",
                    o.path()
                ),
                vec!["dynload never maps a page writable and executable at once (W^X)".into()],
            );
        }
        if d.has_textrel() {
            let e = crate::relocate::text_relocation_error(o.path());
            push(
                Severity::Error,
                "text-relocations",
                e.to_string(),
                vec![why_of(&e)],
            );
        }
        if d.filter {
            push(
                Severity::Error,
                "filter",
                format!(
                    "{}: filter objects (DT_FILTER/DT_AUXILIARY) are not supported",
                    o.path()
                ),
                Vec::new(),
            );
        }
        // Initial-exec TLS of its own: the loader hands the object to glibc,
        // which must fit it into its static TLS surplus. (Initial-exec
        // references to others' TLS are checked with the symbols.)
        let tls_size = phdrs_of(o, elf::PT_TLS)
            .map(|p| p.p_memsz.get(LE))
            .max()
            .unwrap_or(0);
        if d.flags & u64::from(elf::DF_STATIC_TLS) != 0 && tls_size > 0 {
            // The same rule as the loader's: glibc loads it and what it
            // needs, so nothing it needs may be dynload's already (loaded
            // before it: ids are in load order).
            let ours = o.deps.iter().find_map(|dep| match dep.target {
                Ok((t, _))
                    if t < id
                        && !self.objects[t].host
                        && self.objects[t].reason != Reason::CRuntime =>
                {
                    Some(self.objects[t].file_name())
                }
                _ => None,
            });
            if let Some(dep) = ours {
                let e = crate::load::static_tls_dependency_error(&o.path(), &dep);
                push(
                    Severity::Error,
                    "initial-exec-tls",
                    e.to_string(),
                    vec![why_of(&e)],
                );
            } else if tls_size > STATIC_TLS_SURPLUS {
                push(
                    Severity::Error,
                    "initial-exec-tls",
                    format!("{}: cannot allocate memory in static TLS block", o.path()),
                    vec![format!(
                        "its initial-exec TLS ({tls_size} bytes) must live in glibc's static TLS surplus, which has {STATIC_TLS_SURPLUS} bytes in all for objects loaded after start-up (glibc 2.36's default): glibc refuses it. Build it with -ftls-model=global-dynamic (or -mtls-dialect=gnu2)"
                    )],
                );
            } else {
                push(
                    Severity::Warning,
                    "initial-exec-tls",
                    format!(
                        "{}: uses the initial-exec TLS model (DF_STATIC_TLS) in an object meant for dlopen",
                        o.path()
                    ),
                    vec![format!("its TLS ({tls_size} bytes) must live in glibc's static TLS surplus ({STATIC_TLS_SURPLUS} bytes for every object loaded after start-up): dynload hands the object to glibc, and once the surplus is used up, loading fails with \"cannot allocate memory in static TLS block\". Build with -ftls-model=global-dynamic (or -mtls-dialect=gnu2)")],
                );
            }
        }
        if d.rpath().is_some() && d.runpath().is_some() {
            push(
                Severity::Info,
                "rpath-ignored",
                format!(
                    "{}: DT_RPATH ({}) is ignored because DT_RUNPATH ({}) is present",
                    o.path(),
                    o.rpath().unwrap_or_default(),
                    o.runpath().unwrap_or_default()
                ),
                Vec::new(),
            );
        }
    }

    fn check_versions(&self, id: ObjectId, out: &mut Vec<Finding>) {
        let o = &self.objects[id];
        for (file, reqs) in o.read.view.versions.requirements_by_file() {
            let dep = o.deps.iter().find_map(|d| match d.target {
                Ok((t, _)) if self.objects[t].answers_to(file) => Some(t),
                _ => None,
            });
            let Some(dep) = dep.map(|t| &self.objects[t]) else {
                continue;
            };
            for req in reqs {
                if !dep.read.view.versions.unmet(&req) {
                    continue;
                }
                let version = String::from_utf8_lossy(req.name).into_owned();
                let defined = dep.defined_versions();
                let mut details = Vec::new();
                if let Some(h) = highest_like(&version, &defined) {
                    details.push(format!(
                        "the highest {} version {} defines is {h}: {} was built against a newer {}",
                        prefix_of(&version),
                        dep.file_name(),
                        o.file_name(),
                        dep.file_name()
                    ));
                } else if !defined.is_empty() {
                    details.push(format!(
                        "{} defines: {}",
                        dep.file_name(),
                        defined.join(", ")
                    ));
                }
                out.push(Finding {
                    severity: Severity::Error,
                    code: "version-not-found",
                    object: o.path(),
                    symbol: None,
                    message: format!(
                        "{}: version `{version}' not found (required by {})",
                        dep.path(),
                        o.path()
                    ),
                    details,
                });
            }
        }
    }

    pub(crate) fn references(&self, id: ObjectId) -> Vec<Reference> {
        let view = &self.objects[id].read.view;
        let d = &view.dyn_info;
        // symbol index -> (only PLT slots, some TPOFF64)
        let mut seen: HashMap<u32, (bool, bool)> = HashMap::new();
        for t in [d.rela(), d.jmprel()].into_iter().flatten() {
            let count = (t.size as usize) / std::mem::size_of::<Rela>();
            let Some(relas) = view.image.slice::<Rela>(view.image.addr(t.vaddr), count) else {
                continue;
            };
            for r in relas {
                let info = r.r_info.get(LE);
                let (sym, kind) = ((info >> 32) as u32, (info & 0xffff_ffff) as u32);
                if sym == 0 || view.symbols.get(sym).is_none() {
                    continue;
                }
                let plt = kind == elf::R_X86_64_JUMP_SLOT;
                let tpoff = kind == elf::R_X86_64_TPOFF64;
                let e = seen.entry(sym).or_insert((plt, tpoff));
                e.0 &= plt;
                e.1 |= tpoff;
            }
        }
        let mut v: Vec<Reference> = seen
            .into_iter()
            .map(|(sym, (plt, tpoff))| Reference { sym, plt, tpoff })
            .collect();
        v.sort_by_key(|r| r.sym);
        v
    }

    /// Initial-exec TLS of its own (DF_STATIC_TLS and a PT_TLS segment):
    /// the loader leaves such an object to glibc.
    fn has_own_static_tls(&self, id: ObjectId) -> bool {
        let o = &self.objects[id];
        o.read.view.dyn_info.flags & u64::from(elf::DF_STATIC_TLS) != 0
            && phdrs_of(o, elf::PT_TLS).any(|p| p.p_memsz.get(LE) > 0)
    }

    /// The first definition in `scopes` of a reference.
    fn bind(
        &self,
        scopes: &[(String, Vec<ObjectId>)],
        name: &[u8],
        version: Option<&VersionEntry>,
        plt: bool,
    ) -> Option<(ObjectId, u32)> {
        let mut hash = NameHash::new(name);
        let flags = Flags {
            plt,
            ..Flags::default()
        };
        scopes.iter().flat_map(|(_, l)| l.iter()).find_map(|&oid| {
            lookup_in_object(
                &self.objects[oid].read.view,
                name,
                &mut hash,
                version,
                flags,
            )
            .map(|s| (oid, s))
        })
    }

    fn check_symbols(
        &self,
        id: ObjectId,
        out: &mut Vec<Finding>,
        missing: &mut Vec<(usize, String)>,
    ) {
        let o = &self.objects[id];
        let view = &o.read.view;
        let scopes = self.scopes_of(id, false);
        let mut diagnosed = 0;
        for r in self.references(id) {
            let sym = view.symbols.sym(r.sym);
            if sym.bind() == elf::STB_LOCAL {
                continue;
            }
            let name = view.symbols.name(sym);
            let version = view
                .symbols
                .versym(r.sym)
                .and_then(|v| view.versions.entry(v));
            let bound = self.bind(&scopes, name, version.as_ref(), r.plt);
            if let (true, Some((definer, _))) = (r.tpoff, bound) {
                // An initial-exec reference from an object dynload relocates:
                // served only for TLS in glibc's static block — the host's
                // start-up objects, and objects glibc loads for their own
                // initial-exec TLS. (An object with initial-exec TLS of its
                // own is loaded, and relocated, by glibc.)
                let d = &self.objects[definer];
                if !d.host && !self.has_own_static_tls(definer) && !self.has_own_static_tls(id) {
                    out.push(Finding {
                        severity: Severity::Error,
                        code: "initial-exec-tls",
                        object: o.path(),
                        symbol: Some(String::from_utf8_lossy(name).into_owned()),
                        message: format!("{}: cannot allocate memory in static TLS block", o.path()),
                        details: vec![format!(
                            "it uses initial-exec TLS (R_X86_64_TPOFF64) for `{}' in {}, which would be loaded after start-up: its TLS has no fixed offset from the thread pointer. Rebuild it with -ftls-model=global-dynamic (or -mtls-dialect=gnu2)",
                            String::from_utf8_lossy(name),
                            d.file_name()
                        )],
                    });
                }
            }
            if bound.is_some() || sym.bind() == elf::STB_WEAK {
                continue;
            }
            let shown = String::from_utf8_lossy(name).into_owned();
            let mut details = Vec::new();
            let searched: Vec<String> = scopes
                .iter()
                .map(|(n, l)| {
                    format!(
                        "{n}: {}",
                        l.iter()
                            .map(|&i| self.objects[i].file_name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
                .collect();
            details.push(format!("searched: {}", searched.join("; ")));
            // The nearest candidates cost a walk over every name in scope:
            // worked out for the first few undefined symbols of an object
            // (an object built against another version of a big library
            // can have thousands).
            diagnosed += 1;
            if diagnosed <= DIAGNOSED_PER_OBJECT {
                for (oid, entry) in self.other_versions(&scopes, name) {
                    details.push(format!(
                        "{} defines {shown}{entry}, not the version asked for",
                        self.objects[oid].file_name()
                    ));
                }
                let similar = self.similar_names(&scopes, &shown);
                if !similar.is_empty() {
                    details.push(format!("similar names in scope: {}", similar.join(", ")));
                }
                missing.push((out.len(), shown.clone()));
            }
            if r.plt {
                details.push("a function: with RTLD_LAZY the load succeeds and the process ends at its first call; with RTLD_NOW (CPython's default) the load fails".into());
            }
            out.push(Finding {
                severity: Severity::Error,
                code: "undefined-symbol",
                object: o.path(),
                symbol: Some(shown.clone()),
                message: Error::UndefinedSymbol {
                    object: o.path(),
                    symbol: shown,
                    version: version.map(|v| String::from_utf8_lossy(v.name).into_owned()),
                    searched: Vec::new(),
                    near_misses: Vec::new(),
                }
                .to_string(),
                details,
            });
        }
    }

    /// Definitions of `name` in the scopes under another version.
    fn other_versions(
        &self,
        scopes: &[(String, Vec<ObjectId>)],
        name: &[u8],
    ) -> Vec<(ObjectId, String)> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for &oid in scopes.iter().flat_map(|(_, l)| l.iter()) {
            if !seen.insert(oid) {
                continue;
            }
            let view = &self.objects[oid].read.view;
            let mut hash = NameHash::new(name);
            view.symbols.find(name, &mut hash, |i, s| {
                if !s.is_undefined() {
                    out.push((oid, version_suffix(view, view.symbols.versym(i))));
                }
                false
            });
        }
        out
    }

    /// Exported names in the scopes within a small edit distance of `name`.
    fn similar_names(&self, scopes: &[(String, Vec<ObjectId>)], name: &str) -> Vec<String> {
        let limit = if name.len() < 6 { 1 } else { 2 };
        let mut best: BTreeMap<(usize, String), String> = BTreeMap::new();
        let mut seen = HashSet::new();
        for &oid in scopes.iter().flat_map(|(_, l)| l.iter()) {
            if !seen.insert(oid) {
                continue;
            }
            let o = &self.objects[oid];
            for (_, s) in exported(&o.read.view) {
                let n = o.read.view.symbols.name(s);
                if n.len().abs_diff(name.len()) > limit || n == name.as_bytes() {
                    continue;
                }
                let n = String::from_utf8_lossy(n);
                let d = strsim::levenshtein(&n, name);
                if d <= limit {
                    best.insert((d, n.to_string()), format!("{n} ({})", o.file_name()));
                }
            }
        }
        best.into_values().take(3).collect()
    }

    /// For undefined symbols: libraries of the default directories that
    /// define them (the missing -l).
    fn suggest_definers(&self, out: &mut [Finding], missing: &[(usize, String)]) {
        if missing.is_empty() {
            return;
        }
        let mut found: HashMap<&str, Vec<OsString>> = HashMap::new();
        for lib in Inspector::system_libraries() {
            let Some(read) = Inspector::read_alone(&lib) else {
                continue;
            };
            for (_, name) in missing {
                let v = found.entry(name.as_str()).or_default();
                if v.len() >= 3 {
                    continue;
                }
                let mut hash = NameHash::new(name.as_bytes());
                if read
                    .view
                    .symbols
                    .find(name.as_bytes(), &mut hash, |_, s| super::is_export(s))
                    .is_some()
                {
                    v.push(lib.clone());
                }
            }
        }
        for (i, name) in missing {
            if let Some(libs) = found.get(name.as_str()).filter(|l| !l.is_empty()) {
                let shown: Vec<String> = libs
                    .iter()
                    .map(|l| l.to_string_lossy().into_owned())
                    .collect();
                let flags: Vec<String> = libs
                    .iter()
                    .filter_map(|l| link_flag(&l.to_string_lossy()))
                    .collect();
                out[*i].details.push(format!(
                    "defined by {}, which is not in the tree: a missing DT_NEEDED? (link with {})",
                    shown.join(", "),
                    flags.join(" or ")
                ));
            }
        }
    }

    /// Symbols defined by several objects of `root`'s scope: the first
    /// definition wins for every reference, the object's own included.
    fn check_collisions(&self, root: ObjectId, ours: &[ObjectId], out: &mut Vec<Finding>) {
        let mut scope: Vec<ObjectId> = Vec::new();
        for &id in self.global.iter().chain(self.search_list(root).iter()) {
            if !scope.contains(&id) {
                scope.push(id);
            }
        }
        let scopes = vec![(String::new(), scope)];
        // Who references each name (a relocation against it): a symbol
        // defined twice that nothing in the tree uses binds nothing.
        let mut referenced: HashMap<Vec<u8>, Vec<ObjectId>> = HashMap::new();
        for &id in ours {
            let syms = &self.objects[id].read.view.symbols;
            for r in self.references(id) {
                referenced
                    .entry(syms.name(syms.sym(r.sym)).to_vec())
                    .or_default()
                    .push(id);
            }
        }
        // (x, w) -> names of x's definitions that w's shadow, and whether x
        // itself refers to any of them.
        let mut groups: BTreeMap<(ObjectId, ObjectId), (Vec<String>, bool)> = BTreeMap::new();
        for &x in ours {
            let o = &self.objects[x];
            if o.reason == Reason::CRuntime {
                continue;
            }
            let view = &o.read.view;
            for (i, s) in exported(view) {
                if !crate::link::collisions::may_collide(s) {
                    continue;
                }
                let vs = view.symbols.versym(i);
                if vs.is_some_and(|v| v & 0x8000 != 0) {
                    continue;
                }
                let name = view.symbols.name(s);
                if crate::link::collisions::LINKER_MADE.contains(&name)
                    || is_handle_entry_point(name)
                {
                    continue;
                }
                let Some(users) = referenced.get(name) else {
                    continue;
                };
                let version = vs.and_then(|v| view.versions.entry(v));
                if let Some((w, wsym)) = self.bind(&scopes, name, version.as_ref(), false) {
                    let wo = &self.objects[w];
                    if w != x
                        && crate::link::collisions::may_collide(wo.read.view.symbols.sym(wsym))
                    {
                        let g = groups.entry((x, w)).or_default();
                        g.0.push(format!(
                            "{}{}",
                            String::from_utf8_lossy(name),
                            version_suffix(view, vs)
                        ));
                        g.1 |= users.contains(&x);
                    }
                }
            }
        }
        for ((x, w), (names, self_ref)) in groups {
            let (xo, wo) = (&self.objects[x], &self.objects[w]);
            let sample: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
            let more = if names.len() > sample.len() {
                format!(" and {} more", names.len() - sample.len())
            } else {
                String::new()
            };
            let (xn, wn, rn) = (
                self.shown_name(x, w),
                self.shown_name(w, x),
                self.objects[root].file_name(),
            );
            let own = if self_ref {
                format!(", {xn}'s own included,")
            } else {
                String::new()
            };
            // One depends on the other: perhaps a wrapper or a deliberate
            // override (or an accident: a plugin defining strlen).
            let depends = if self.search_list(x).contains(&w) {
                Some((&xn, &wn))
            } else if self.search_list(w).contains(&x) {
                Some((&wn, &xn))
            } else {
                None
            };
            let mut details = vec![if self.global.contains(&w) {
                format!(
                    "{wn} is in the global scope, searched first: references from {rn}'s tree{own} bind to {wn}'s definition, not {xn}'s (silently, if they differ). RTLD_DEEPBIND would search {rn}'s own tree first; linking {xn} with -Wl,-Bsymbolic (or making the symbols hidden) keeps its own references inside it"
                )
            } else {
                format!(
                    "{wn} comes before {xn} in {rn}'s search list: references from the tree{own} bind to {wn}'s definition. Opened RTLD_GLOBAL, {wn}'s also wins for every object loaded later; RTLD_DEEPBIND does not change the order between them"
                )
            }];
            if let (Some((user, used)), false) = (depends, self.global.contains(&w)) {
                details.push(format!(
                    "{user} needs {used}: if {wn} overrides {xn}'s definitions on purpose (a wrapper), this is intended"
                ));
            }
            out.push(Finding {
                severity: Severity::Warning,
                code: "symbol-collision",
                object: xo.path(),
                symbol: (names.len() == 1).then(|| names[0].clone()),
                message: format!(
                    "{} symbol{} of {} {} also defined by {}, which comes first: {}{more}",
                    names.len(),
                    if names.len() == 1 { "" } else { "s" },
                    xo.path(),
                    if names.len() == 1 { "is" } else { "are" },
                    wo.path(),
                    sample.join(", ")
                ),
                details,
            });
        }
    }

    /// An object's file name, or its path when `other` has the same file
    /// name (two copies of one library).
    fn shown_name(&self, id: ObjectId, other: ObjectId) -> String {
        let (o, p) = (&self.objects[id], &self.objects[other]);
        if o.file_name() == p.file_name() {
            o.path()
        } else {
            o.file_name()
        }
    }
}

/// Entry points a host looks up through the object's own handle
/// (`dlsym(handle, ...)` searches the object's tree first), so a
/// definition elsewhere does not shadow them.
fn is_handle_entry_point(name: &[u8]) -> bool {
    ["PyInit_", "PyModExport_", "JNI_OnLoad", "JNI_OnUnload"]
        .iter()
        .any(|p| name.starts_with(p.as_bytes()))
}

/// The explanation dynload's loader attaches to an error.
fn why_of(e: &Error) -> String {
    match e {
        Error::Load { why: Some(w), .. } => w.clone(),
        _ => String::new(),
    }
}

/// The linker flag for a library path: "-lz" for ".../libz.so.1".
fn link_flag(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = file.strip_prefix("lib")?;
    let end = stem.find(".so")?;
    Some(format!("-l{}", &stem[..end]))
}

/// "GLIBC" of "GLIBC_2.38".
fn prefix_of(version: &str) -> &str {
    version
        .find(|c: char| c.is_ascii_digit())
        .map(|i| version[..i].trim_end_matches(['_', '.']))
        .unwrap_or(version)
}

/// The highest of `defined` with the same prefix as `version`, by numeric
/// components ("GLIBC_2.36" for "GLIBC_2.38").
fn highest_like(version: &str, defined: &[String]) -> Option<String> {
    let prefix = prefix_of(version);
    let key = |v: &str| -> Vec<u64> {
        v[prefix.len()..]
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap_or(0))
            .collect()
    };
    defined
        .iter()
        .filter(|d| d.starts_with(prefix) && d[prefix.len()..].starts_with(['_', '.']))
        .max_by_key(|d| key(d))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_version_of_the_same_family() {
        let defined: Vec<String> = ["GLIBC_2.2.5", "GLIBC_2.36", "GLIBC_2.4", "GLIBC_PRIVATE"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            highest_like("GLIBC_2.38", &defined).as_deref(),
            Some("GLIBC_2.36")
        );
        assert_eq!(prefix_of("GLIBCXX_3.4.32"), "GLIBCXX");
        assert_eq!(
            highest_like("VERS_2", &["VERS_1".to_string()]).as_deref(),
            Some("VERS_1")
        );
    }
}
