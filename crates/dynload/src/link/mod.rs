//! Symbol lookup: scopes, glibc's `check_match` rules (types, versions,
//! hidden and default versions), binding kinds, protected symbols, and the
//! version requirements checked when an object is loaded.
//!
//! This is the loader's hottest path; it works on the checked tables of
//! [`crate::elf::symbols`] and allocates nothing unless a lookup fails.

use crate::debug::{self, debug};
use crate::elf::symbols::{Bloom, NameHash, SymbolTable, Wanted};
use crate::elf::versions::{VersionEntry, Versions};
use crate::elf::{elf, Sym, SymExt};
use crate::error::Error;
use crate::host::View;
use crate::object::{ObjId, Object, Scope};
use crate::registry::Registry;
use scope_filter::ScopeFilter;

pub(crate) mod collisions;
pub(crate) mod scope_filter;
pub(crate) mod unique;

/// How a lookup treats versions and undefined entries.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Flags {
    /// `dlsym` semantics: an unversioned request takes the default version
    /// (glibc's DL_LOOKUP_RETURN_NEWEST); relocations take the oldest.
    pub return_newest: bool,
    /// PLT class (JUMP_SLOT): undefined entries with a value (canonical PLT
    /// addresses of executables) do not satisfy it.
    pub plt: bool,
}

/// An id no object has: [`PreparedScope::lookup`]'s likely definer when
/// there is none.
pub(crate) const NO_DEFINER: ObjId = ObjId::MAX;

/// A definition found by a lookup: the object and the symbol's index.
///
/// (The index is kept in a whole word: a binding is copied from a lookup's
/// result as 8-byte words, and a 4-byte index beside 4 bytes of padding
/// made the copy's load wait for the index's 4-byte store to reach the
/// cache, store forwarding being impossible: 14% of the 4,000-relocation
/// fixture's `RTLD_NOW` cycle, in two instructions.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    pub obj: ObjId,
    sym: u64,
}

impl Found {
    #[inline(always)]
    pub(crate) fn new(obj: ObjId, sym: u32) -> Found {
        Found {
            obj,
            sym: u64::from(sym),
        }
    }

    /// The symbol's index in the object's table.
    #[inline(always)]
    pub(crate) fn sym(&self) -> u32 {
        self.sym as u32
    }
}

const ALLOWED_TYPES: u32 = (1 << elf::STT_NOTYPE)
    | (1 << elf::STT_OBJECT)
    | (1 << elf::STT_FUNC)
    | (1 << elf::STT_COMMON)
    | (1 << elf::STT_TLS)
    | (1 << elf::STT_GNU_IFUNC);

/// glibc's `do_lookup_x` for one object (its tables): the index of the definition of
/// `name` this object provides, if any.
#[inline]
pub(crate) fn lookup_in_object(
    view: &View,
    name: &[u8],
    hash: &mut NameHash,
    version: Option<&VersionEntry>,
    flags: Flags,
) -> Option<u32> {
    lookup_in_symbols(
        &view.symbols,
        name,
        hash,
        version.map(|v| (v, &view.versions)),
        flags,
    )
}

/// [`lookup_in_object`] on the symbol table alone, with the object's
/// version definitions when the request names a version.
#[inline(always)]
pub(crate) fn lookup_in_symbols(
    syms: &SymbolTable,
    name: &[u8],
    hash: &mut NameHash,
    version: Option<(&VersionEntry, &Versions)>,
    flags: Flags,
) -> Option<u32> {
    lookup_after_bloom(syms, name, hash, version, flags, true).map(|(i, _)| i)
}

/// [`lookup_in_symbols`], without the Bloom check unless `check_bloom`,
/// giving the definition with its index.
#[inline(always)]
fn lookup_after_bloom<'s, 'n>(
    syms: &'s SymbolTable,
    name: impl Wanted<'n>,
    hash: &mut NameHash,
    version: Option<(&VersionEntry, &Versions)>,
    flags: Flags,
    check_bloom: bool,
) -> Option<(u32, &'s Sym)> {
    let mut versioned: Option<u32> = None;
    let mut num_versions = 0u32;
    // (The check inlined into the chain walk: called, it was a sixth of a
    // `dlsym` hit.)
    let found = syms.find_wanted(
        name,
        hash,
        check_bloom,
        #[inline(always)]
        |idx, sym| {
            let stt = sym.kind();
            if (sym.value() == 0 && sym.shndx() != elf::SHN_ABS && stt != elf::STT_TLS)
                || (flags.plt && sym.is_undefined())
                || (ALLOWED_TYPES & (1 << stt)) == 0
            {
                return false;
            }
            let versym = syms.versym(idx);
            match (version, versym) {
                (Some(_), None) => true,
                (Some((want, versions)), Some(vs)) => {
                    let (h, n) = versions.at(vs);
                    !((h != want.hash || n != want.name)
                        && (want.hidden || h != 0 || vs & 0x8000 != 0))
                }
                (None, Some(vs)) => {
                    let limit = if flags.return_newest { 2 } else { 3 };
                    if vs & 0x7fff >= limit {
                        if vs & 0x8000 == 0 {
                            num_versions += 1;
                            if num_versions == 1 {
                                versioned = Some(idx);
                            }
                        }
                        false
                    } else {
                        true
                    }
                }
                (None, None) => true,
            }
        },
    );
    // Exactly one non-hidden versioned definition and an unversioned
    // request: no ambiguity, take it.
    let (idx, sym) = match found {
        Some(found) => found,
        None if num_versions == 1 => versioned.map(|i| (i, syms.sym(i)))?,
        None => return None,
    };
    if sym.binds_locally() {
        return None;
    }
    match sym.bind() {
        elf::STB_GLOBAL | elf::STB_WEAK | elf::STB_GNU_UNIQUE => Some((idx, sym)),
        _ => None,
    }
}

/// An object a lookup visits, with its Bloom filter when known.
#[derive(Clone, Copy)]
pub(crate) struct Candidate {
    id: ObjId,
    bloom: Option<Bloom>,
}

/// What a lookup walks: the objects of its scopes, in order.
pub(crate) trait Searched {
    fn candidates(&self) -> impl Iterator<Item = Candidate> + '_;

    /// The same objects, prepared for a relocation pass.
    fn prepared(&self) -> Option<&PreparedScope<'_>> {
        None
    }

    /// [`Searched::candidates`] without the scope whose lists are `global`
    /// (the registry's global scope), when given and the scopes are lists.
    fn candidates_without<'a>(
        &'a self,
        global: Option<[&'a [ObjId]; 2]>,
    ) -> impl Iterator<Item = Candidate> + 'a {
        let _ = global;
        self.candidates()
    }
}

/// The objects of scopes given as lists.
fn list_candidates<'a>(
    scopes: impl Iterator<Item = &'a [&'a [ObjId]; 2]> + 'a,
) -> impl Iterator<Item = Candidate> + 'a {
    scopes
        .flatten()
        .flat_map(|chunk| chunk.iter())
        .map(|&id| Candidate { id, bloom: None })
}

impl Searched for [[&[ObjId]; 2]] {
    fn candidates(&self) -> impl Iterator<Item = Candidate> + '_ {
        list_candidates(self.iter())
    }

    fn candidates_without<'a>(
        &'a self,
        global: Option<[&'a [ObjId]; 2]>,
    ) -> impl Iterator<Item = Candidate> + 'a {
        // (A scope's lists are the registry's own: the global scope is the
        // one whose lists are the very ones given.)
        let is = |s: &[&[ObjId]; 2], g: [&[ObjId]; 2]| {
            std::ptr::eq(s[0], g[0]) && std::ptr::eq(s[1], g[1])
        };
        list_candidates(
            self.iter()
                .filter(move |s| !global.is_some_and(|g| is(s, g))),
        )
    }
}

/// A scope that starts with the global scope: the global scope's filter,
/// its objects, and the objects after it (see
/// [`PreparedScope::after_global`]).
pub(crate) type GlobalFirst<'p, 'r> = (
    &'r ScopeFilter,
    &'p [(&'r Object, Bloom)],
    &'p [(&'r Object, Bloom)],
);

/// Scopes flattened once for the many lookups of one relocation pass, each
/// object with its Bloom filter beside it: most objects of a scope do not
/// define a given name, and rejecting one then reads one word instead of
/// the object (bionic's idea). The run of global-scope objects may come
/// with the registry's [`ScopeFilter`] over all of them. The registry must
/// not change while it is used (the loader lock is held throughout a
/// relocation pass).
pub(crate) struct PreparedScope<'r> {
    objects: Vec<(&'r Object, Bloom)>,
    /// `objects[start..end]` is the global scope, and `filter` covers it.
    global: Option<(usize, usize, &'r ScopeFilter)>,
    /// Is any of the objects being unloaded? (Then lookups take the general
    /// walk, which skips them.)
    any_removed: bool,
}

impl Searched for PreparedScope<'_> {
    fn candidates(&self) -> impl Iterator<Item = Candidate> + '_ {
        self.objects.iter().map(|&(obj, bloom)| Candidate {
            id: obj.id,
            bloom: Some(bloom),
        })
    }

    fn prepared(&self) -> Option<&PreparedScope<'_>> {
        Some(self)
    }
}

impl<'r> PreparedScope<'r> {
    /// Does it come with the global scope's filter?
    pub(crate) fn has_global_filter(&self) -> bool {
        self.global.is_some()
    }

    /// May lookups take [`PreparedScope::lookup`]? (Not while an object
    /// in the scope is being unloaded, nor while lookups are traced.)
    pub(crate) fn walks_fast(&self) -> bool {
        !self.any_removed && !debug::enabled(debug::SYMBOLS)
    }

    /// For a scope that starts with the global scope, under its filter:
    /// that filter, the global scope's objects, and the objects after it.
    /// (What the relocation pass's fast lane walks; None where lookups may
    /// not walk fast.)
    pub(crate) fn after_global(&self) -> Option<GlobalFirst<'_, 'r>> {
        match self.global {
            Some((0, end, filter)) if self.walks_fast() => {
                let (global, after) = self.objects.split_at(end);
                Some((filter, global, after))
            }
            _ => None,
        }
    }

    /// glibc's lookup loop for the common case (no object being unloaded,
    /// no tracing), written tight: each object costs its Bloom check, and
    /// the global scope one probe of its filter when that rejects the name.
    /// Gives the definer, the definition's index and the definition (if
    /// it is STB_GNU_UNIQUE, the process-wide definition is to be asked).
    ///
    /// The Bloom filter of object `likely` (the previous lookup's definer,
    /// or [`NO_DEFINER`]) is not asked: it would mostly pass, and where
    /// the object does not define the name its hash table says so too.
    #[inline(always)]
    pub(crate) fn lookup<'n>(
        &self,
        name: impl Wanted<'n>,
        hash: &mut NameHash,
        version: Option<&VersionEntry>,
        flags: Flags,
        likely: ObjId,
    ) -> Option<(&'r Object, u32, &'r Sym)> {
        let h = hash.gnu;
        let all = self.objects.as_slice();
        match self.global {
            Some((start, end, filter)) if !filter.may_contain(h) => {
                // (The global scope usually comes first: then one run.)
                if start > 0 {
                    if let Some(found) = walk(&all[..start], name, hash, version, flags, likely) {
                        return Some(found);
                    }
                }
                walk(&all[end..], name, hash, version, flags, likely)
            }
            _ => walk(all, name, hash, version, flags, likely),
        }
    }
}

/// [`PreparedScope::lookup`] over one run of its objects.
#[inline(always)]
fn walk<'r, 'n>(
    objects: &[(&'r Object, Bloom)],
    name: impl Wanted<'n>,
    hash: &mut NameHash,
    version: Option<&VersionEntry>,
    flags: Flags,
    likely: ObjId,
) -> Option<(&'r Object, u32, &'r Sym)> {
    let h = hash.gnu;
    for &(obj, bloom) in objects {
        if obj.id != likely && !bloom.may_contain(h) {
            continue;
        }
        let view = &obj.view;
        let version = version.map(|v| (v, &view.versions));
        if let Some((idx, sym)) =
            lookup_after_bloom(&view.symbols, name, hash, version, flags, false)
        {
            return Some((obj, idx, sym));
        }
    }
    None
}

impl Registry {
    /// The concrete lists behind one scope of an object.
    fn scope_chunk<'a>(&'a self, s: &Scope, symbolic_self: &'a [ObjId]) -> [&'a [ObjId]; 2] {
        match *s {
            Scope::Global => self.global_parts(),
            Scope::Local(root) => [self.obj(root).searchlist.as_deref().unwrap_or(&[]), &[]],
            Scope::Symbolic(_) => [symbolic_self, &[]],
        }
    }

    /// Call `f` with the lists of objects an object's scope walks, in
    /// order: one `[_; 2]` per scope, since the global scope is two lists
    /// (glibc's part, then dynload's) that count as one. No allocation when
    /// the scope is short (it almost always is: global, then local).
    pub(crate) fn with_scope_chunks<R>(
        &self,
        scope: &[Scope],
        symbolic_self: &[ObjId],
        f: impl FnOnce(&[[&[ObjId]; 2]]) -> R,
    ) -> R {
        let chunk = |s: &Scope| self.scope_chunk(s, symbolic_self);
        const SHORT: usize = 4;
        if scope.len() <= SHORT {
            let mut chunks: [[&[ObjId]; 2]; SHORT] = [[&[], &[]]; SHORT];
            for (c, s) in chunks.iter_mut().zip(scope) {
                *c = chunk(s);
            }
            f(&chunks[..scope.len()])
        } else {
            f(&scope.iter().map(chunk).collect::<Vec<_>>())
        }
    }

    /// [`PreparedScope`] of object `id`'s scope, for a pass of about
    /// `lookups` lookups: with the global-scope filter when there is one,
    /// or when building it pays for itself in this pass.
    pub(crate) fn prepare_scope(&self, id: ObjId, lookups: usize) -> PreparedScope<'_> {
        let obj = self.obj(id);
        let me = std::slice::from_ref(&obj.id);
        let most = obj
            .scope
            .iter()
            .flat_map(|s| self.scope_chunk(s, me))
            .map(<[ObjId]>::len)
            .sum();
        let mut objects = Vec::with_capacity(most);
        let mut global = None;
        for s in &obj.scope {
            let start = objects.len();
            for chunk in self.scope_chunk(s, me) {
                // (An object glibc unloaded has no tables left to read.)
                objects.extend(
                    chunk
                        .iter()
                        .map(|&id| self.obj(id))
                        .filter(|o| !o.is_gone())
                        .map(|o| (o, o.view.symbols.bloom().unwrap_or_else(Bloom::pass_all))),
                );
            }
            if *s == Scope::Global && global.is_none() {
                global = self
                    .global_filter(lookups)
                    .map(|f| (start, objects.len(), f));
            }
        }
        let any_removed = objects.iter().any(|(o, _)| o.removed);
        PreparedScope {
            objects,
            global,
            any_removed,
        }
    }

    /// The global scope's filter: the one built for it, or a new one if
    /// `lookups` lookups pay for it.
    fn global_filter(&self, lookups: usize) -> Option<&ScopeFilter> {
        if let Some(f) = self.global_filter.get() {
            return Some(f);
        }
        // (Counted without a list of them: most passes, a small object's,
        // go no further.)
        let tables = || self.filter_covered().map(|id| &self.obj(id).view.symbols);
        let objects = tables().count();
        let symbols = tables().map(|t| t.hashed_count() as usize).sum();
        let always = crate::fault::fast_lane_checked() && objects > 1;
        if !always && !scope_filter::worth_building(lookups, objects, symbols) {
            return None;
        }
        // (The process's first is a one-off: see `Registry::drop_one_off_filter`.)
        let built = self.filters_built.get();
        self.filters_built.set(built.saturating_add(1));
        let one_off = built == 0;
        let filter = self
            .global_filter
            .get_or_init(|| ScopeFilter::build(tables(), symbols, self.filter_density, one_off));
        debug!(
            debug::SCOPES,
            "global scope filter: {objects} objects, {symbols} symbols, {} bytes ({:?})",
            filter.bytes(),
            filter.density()
        );
        Some(filter)
    }

    /// glibc's `_dl_lookup_symbol_x` without the error: walk the scopes and
    /// return the first acceptable definition. `undef` is the referencing
    /// object, if any.
    #[inline(always)]
    pub(crate) fn lookup<S: Searched + ?Sized>(
        &self,
        scopes: &S,
        name: &[u8],
        mut hash: NameHash,
        version: Option<&VersionEntry>,
        flags: Flags,
        undef: Option<ObjId>,
    ) -> Option<Found> {
        if let Some(p) = scopes.prepared().filter(|p| p.walks_fast()) {
            let (def, sym, dsym) = p.lookup(name, &mut hash, version, flags, NO_DEFINER)?;
            let found = Found::new(def.id, sym);
            if dsym.bind() == elf::STB_GNU_UNIQUE {
                return Some(self.unique_definition(name, hash.gnu, found));
            }
            return Some(found);
        }
        self.lookup_general(scopes, name, hash, version, flags, undef)
    }

    /// [`Registry::lookup`]'s walk for every case: objects being unloaded,
    /// tracing, scopes not prepared.
    #[inline(never)]
    fn lookup_general<S: Searched + ?Sized>(
        &self,
        scopes: &S,
        name: &[u8],
        mut hash: NameHash,
        version: Option<&VersionEntry>,
        flags: Flags,
        undef: Option<ObjId>,
    ) -> Option<Found> {
        // (With the symbols category on, every object is visited, so that
        // the trace lists each as glibc's does.)
        let tracing = debug::enabled(debug::SYMBOLS);
        let undef_removed = undef.is_some_and(|u| self.obj(u).removed);
        // The global scope's filter, once a relocation pass has built it,
        // rejects a name for all of that scope's objects with one probe, as
        // in a prepared scope (a lazily bound call, `dlsym(RTLD_DEFAULT)`).
        let rejected = !tracing
            && self
                .global_filter
                .get()
                .is_some_and(|f| !f.may_contain(hash.gnu));
        let skipped = rejected.then(|| self.global_parts());
        for Candidate { id, bloom } in scopes.candidates_without(skipped) {
            if bloom.is_some_and(|b| !tracing && !b.may_contain(hash.gnu)) {
                continue;
            }
            let obj = self.obj(id);
            // Objects being unloaded are skipped, unless the reference
            // comes from one of them (glibc bug 30425's fix); an object
            // glibc unloaded has no tables left to read.
            if (obj.removed && !undef_removed) || obj.is_gone() {
                continue;
            }
            if tracing {
                debug!(
                    debug::SYMBOLS,
                    "symbol={};  lookup in file={} [0]",
                    String::from_utf8_lossy(name),
                    obj.display_name()
                );
            }
            if let Some(sym) = lookup_in_object(&obj.view, name, &mut hash, version, flags) {
                let found = Found::new(id, sym);
                if obj.view.symbols.sym(sym).bind() == elf::STB_GNU_UNIQUE {
                    return Some(self.unique_definition(name, hash.gnu, found));
                }
                return Some(found);
            }
        }
        None
    }

    /// A lookup on behalf of a reference from `undef` whose own symbol entry
    /// is `ref_sym` (of visibility `ref_visibility`): adds glibc's rule that
    /// a reference to a protected symbol binds inside the referencing object.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn lookup_reference<S: Searched + ?Sized>(
        &self,
        scopes: &S,
        name: &[u8],
        hash: NameHash,
        version: Option<&VersionEntry>,
        flags: Flags,
        undef: ObjId,
        (ref_sym, ref_visibility): (u32, u8),
    ) -> Option<Found> {
        let found = self.lookup(scopes, name, hash, version, flags, Some(undef))?;
        if ref_visibility == elf::STV_PROTECTED && found.obj != undef {
            let local = Found::new(undef, ref_sym);
            if flags.plt {
                return Some(local);
            }
            // For data, glibc repeats the lookup as a PLT-class one and keeps
            // the local definition if that finds another object.
            let plt = Flags { plt: true, ..flags };
            if self
                .lookup(scopes, name, hash, version, plt, Some(undef))
                .is_some_and(|f| f.obj != undef)
            {
                return Some(local);
            }
        }
        Some(found)
    }

    /// Build the "undefined symbol" error, with what dynload knows: the
    /// objects searched and definitions that exist but did not match.
    pub(crate) fn undefined_error<S: Searched + ?Sized>(
        &self,
        scopes: &S,
        object: String,
        name: &[u8],
        version: Option<&VersionEntry>,
    ) -> Error {
        let mut searched = Vec::new();
        let mut near_misses = Vec::new();
        for Candidate { id, .. } in scopes.candidates() {
            let obj = self.obj(id);
            let shown = obj.display_name();
            if !searched.contains(&shown) {
                searched.push(shown.clone());
            }
            let syms = &obj.view.symbols;
            for (i, s) in syms.iter() {
                if syms.name(s) != name || s.is_undefined() {
                    continue;
                }
                let ver = obj.view.versions.suffix(syms.versym(i));
                let why = match (s.bind(), s.visibility()) {
                    (elf::STB_LOCAL, _) => " (local)",
                    (_, elf::STV_HIDDEN) | (_, elf::STV_INTERNAL) => " (hidden visibility)",
                    _ => "",
                };
                let entry = format!("{shown}: {}{ver}{why}", String::from_utf8_lossy(name));
                if !near_misses.contains(&entry) {
                    near_misses.push(entry);
                }
            }
        }
        Error::UndefinedSymbol {
            object,
            symbol: String::from_utf8_lossy(name).into_owned(),
            version: version.map(|v| String::from_utf8_lossy(v.name).into_owned()),
            searched,
            near_misses,
        }
    }

    /// glibc's `_dl_check_map_versions`: every version `id` requires must be
    /// defined by the dependency it names.
    pub(crate) fn check_versions(&self, id: ObjId) -> Result<(), Error> {
        let obj = self.obj(id);
        for (file, reqs) in obj.view.versions.requirements_by_file() {
            let Some(dep) = self.find_needed(file, id) else {
                continue;
            };
            let dep = self.obj(dep);
            if !dep.view.versions.has_verdef() {
                continue;
            }
            for req in reqs {
                debug!(
                    debug::VERSIONS,
                    "checking for version `{}' in file {} [0] required by file {} [0]",
                    String::from_utf8_lossy(req.name),
                    dep.display_name(),
                    obj.display_name()
                );
                if dep.view.versions.unmet(&req) {
                    return Err(Error::VersionNotFound {
                        library: dep.display_name(),
                        version: String::from_utf8_lossy(req.name).into_owned(),
                        required_by: obj.display_name(),
                        available: dep.view.versions.defined_names(),
                    });
                }
            }
        }
        Ok(())
    }

    /// glibc's `find_needed`: the loaded object answering to `name`, first
    /// in load order, else in `of`'s search list.
    pub(crate) fn find_needed(&self, name: &[u8], of: ObjId) -> Option<ObjId> {
        self.all_in_load_order()
            .find(|&id| self.obj(id).answers_to(name))
            .or_else(|| {
                self.obj(of)
                    .searchlist
                    .as_ref()?
                    .iter()
                    .copied()
                    .find(|&id| self.obj(id).answers_to(name))
            })
    }
}
