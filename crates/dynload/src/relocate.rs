//! Relocation processing for x86_64: DT_RELR, DT_RELA, then DT_JMPREL, with
//! IRELATIVE entries of each table run last, and glibc's one-entry lookup
//! cache for consecutive relocations against the same symbol.
//!
//! Hand-written rather than taken from a crate: this loop is the bulk of a
//! large library's load time, and it must apply glibc's exact lookup rules
//! against dynload's own scopes.

use std::time::Instant;

use crate::debug::{self, debug};
use crate::dlfcn;
use crate::elf::dynamic::Table;
use crate::elf::{elf, Rela, SymExt, LE};
use crate::error::Error;
use crate::link::{Flags, Found, ScopeChunks};
use crate::object::{ObjId, Object};
use crate::registry::Registry;

/// What relocating one object found out, applied to the registry after.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// dynload objects bound to that are not dependencies (glibc's reldeps).
    pub reldeps: Vec<ObjId>,
    /// Objects that defined STB_GNU_UNIQUE symbols used here.
    pub unique_definers: Vec<ObjId>,
    pub relocations: u64,
    pub relative: u64,
    pub cached: u64,
}

/// x86_64 relocation types (psABI).
mod r {
    pub const NONE: u32 = 0;
    pub const R64: u32 = 1;
    pub const PC32: u32 = 2;
    pub const COPY: u32 = 5;
    pub const GLOB_DAT: u32 = 6;
    pub const JUMP_SLOT: u32 = 7;
    pub const RELATIVE: u32 = 8;
    pub const R32: u32 = 10;
    pub const DTPMOD64: u32 = 16;
    pub const DTPOFF64: u32 = 17;
    pub const TPOFF64: u32 = 18;
    pub const TLSGD: u32 = 19;
    pub const TLSLD: u32 = 20;
    pub const DTPOFF32: u32 = 21;
    pub const GOTTPOFF: u32 = 22;
    pub const TPOFF32: u32 = 23;
    pub const SIZE32: u32 = 32;
    pub const SIZE64: u32 = 33;
    pub const TLSDESC: u32 = 36;
    pub const IRELATIVE: u32 = 37;
    pub const RELATIVE64: u32 = 38;
}

fn tls_name(t: u32) -> Option<&'static str> {
    Some(match t {
        r::DTPMOD64 => "R_X86_64_DTPMOD64",
        r::DTPOFF64 => "R_X86_64_DTPOFF64",
        r::TPOFF64 => "R_X86_64_TPOFF64",
        r::TLSGD => "R_X86_64_TLSGD",
        r::TLSLD => "R_X86_64_TLSLD",
        r::DTPOFF32 => "R_X86_64_DTPOFF32",
        r::GOTTPOFF => "R_X86_64_GOTTPOFF",
        r::TPOFF32 => "R_X86_64_TPOFF32",
        r::TLSDESC => "R_X86_64_TLSDESC",
        _ => return None,
    })
}

/// The symbol value a relocation uses: where it bound, and the address.
#[derive(Clone, Copy)]
struct Resolved {
    value: usize,
    size: u64,
}

struct Relocator<'a> {
    reg: &'a Registry,
    id: ObjId,
    obj: &'a Object,
    scopes: ScopeChunks<'a>,
    /// glibc's `l_lookup_cache`: (symbol index, PLT class) → result.
    cache: Option<(u32, bool, Resolved)>,
    out: Outcome,
    name: String,
}

/// Relocate one object of ours. Runs IFUNC resolvers (which are code of
/// already-relocated objects) but nothing else of the object.
pub(crate) fn relocate(reg: &Registry, id: ObjId) -> Result<Outcome, Error> {
    let obj = reg.obj(id);
    let start = Instant::now();
    let name = obj.display_name();
    let d = &obj.view.dyn_info;
    if d.has_textrel() {
        return Err(Error::unsupported(name, "cannot load an object with text relocations (DT_TEXTREL)")
            .with_why("text relocations would need its code pages writable while relocating; rebuild it with -fPIC"));
    }
    if d.rel.is_some_and(|t| t.size > 0) {
        return Err(Error::unsupported(
            name,
            "DT_REL relocations are not used on x86_64",
        ));
    }
    if d.pltrel.is_some_and(|p| p != u64::from(elf::DT_RELA)) && d.jmprel.is_some() {
        return Err(Error::unsupported(name, "DT_PLTREL is not DT_RELA"));
    }
    debug!(debug::RELOC, "\nrelocation processing: {name}");
    let symbolic_self: &[ObjId] = std::slice::from_ref(&obj.id);
    let scopes = reg.scope_chunks(&obj.scope, symbolic_self);
    let mut rl = Relocator {
        reg,
        id,
        obj,
        scopes,
        cache: None,
        out: Outcome::default(),
        name,
    };
    if let Some(t) = d.relr {
        rl.relr(t)?;
    }
    if let Some(t) = d.rela {
        rl.rela_table(t, false)?;
    }
    if let Some(t) = d.jmprel {
        rl.rela_table(t, true)?;
    }
    let mut out = rl.out;
    let _ = start.elapsed();
    out.reldeps.sort_unstable();
    out.reldeps.dedup();
    Ok(out)
}

impl Relocator<'_> {
    #[inline]
    fn target(&self, offset: u64, len: usize) -> Result<usize, Error> {
        let addr = self.obj.view.image.addr(offset);
        if !self.obj.view.image.is_writable(addr, len) {
            return Err(Error::invalid(
                self.name.clone(),
                format!("relocation target {offset:#x} is outside the object's writable segments"),
            ));
        }
        Ok(addr)
    }

    /// DT_RELR: an even entry is an address to relocate; an odd entry is a
    /// bitmap over the 63 words that follow the last address.
    fn relr(&mut self, t: Table) -> Result<(), Error> {
        let image = &self.obj.view.image;
        let entries: &[u64] = image
            .slice(image.addr(t.vaddr), (t.size / 8) as usize)
            .ok_or_else(|| {
                Error::invalid(
                    self.name.clone(),
                    "DT_RELR lies outside the loaded segments",
                )
            })?;
        let base = image.base;
        let mut next: usize = 0;
        for &e in entries {
            if e & 1 == 0 {
                let addr = self.target(e, 8)?;
                // SAFETY: `target` checked that the word is writable memory
                // of this object.
                unsafe { *(addr as *mut usize) = (*(addr as *const usize)).wrapping_add(base) };
                next = addr + 8;
                self.out.relative += 1;
            } else {
                if next == 0 {
                    return Err(Error::invalid(
                        self.name.clone(),
                        "DT_RELR bitmap before any address",
                    ));
                }
                let mut bits = e >> 1;
                let mut where_ = next;
                while bits != 0 {
                    if bits & 1 != 0 {
                        if !image.is_writable(where_, 8) {
                            return Err(Error::invalid(
                                self.name.clone(),
                                "DT_RELR bitmap points outside the writable segments",
                            ));
                        }
                        // SAFETY: checked writable just above.
                        unsafe {
                            *(where_ as *mut usize) = (*(where_ as *const usize)).wrapping_add(base)
                        };
                        self.out.relative += 1;
                    }
                    bits >>= 1;
                    where_ += 8;
                }
                next += 63 * 8;
            }
        }
        Ok(())
    }

    fn rela_table(&mut self, t: Table, plt: bool) -> Result<(), Error> {
        let image = &self.obj.view.image;
        let relas: &[Rela] = image
            .slice(image.addr(t.vaddr), (t.size / 24) as usize)
            .ok_or_else(|| {
                Error::invalid(
                    self.name.clone(),
                    "relocation table lies outside the loaded segments",
                )
            })?;
        let mut irelative = Vec::new();
        for rela in relas {
            let rtype = (rela.r_info.get(LE) & 0xffff_ffff) as u32;
            if rtype == r::IRELATIVE {
                irelative.push(rela);
                continue;
            }
            if plt && rtype != r::JUMP_SLOT {
                let msg = match tls_name(rtype) {
                    Some(n) => format!("cannot handle TLS relocation {n}"),
                    None => format!("unexpected PLT reloc type 0x{}", hex_type(rtype)),
                };
                return Err(Error::unsupported(self.name.clone(), msg));
            }
            self.apply(rela, rtype)?;
        }
        for rela in irelative {
            self.apply(rela, r::IRELATIVE)?;
        }
        Ok(())
    }

    fn apply(&mut self, rela: &Rela, rtype: u32) -> Result<(), Error> {
        let base = self.obj.view.image.base;
        let addend = rela.r_addend.get(LE);
        let offset = rela.r_offset.get(LE);
        match rtype {
            r::NONE => return Ok(()),
            r::RELATIVE | r::RELATIVE64 => {
                let addr = self.target(offset, 8)?;
                // SAFETY: checked writable by `target`.
                unsafe { *(addr as *mut usize) = base.wrapping_add(addend as usize) };
                self.out.relative += 1;
                return Ok(());
            }
            r::IRELATIVE => {
                let addr = self.target(offset, 8)?;
                let resolver = base.wrapping_add(addend as usize);
                self.check_code(resolver, "IRELATIVE resolver")?;
                // SAFETY: an IFUNC resolver of this object, inside its
                // executable segment; x86_64 resolvers take no arguments.
                let value = unsafe { call_resolver(resolver) };
                // SAFETY: checked writable by `target`.
                unsafe { *(addr as *mut usize) = value };
                self.out.relocations += 1;
                return Ok(());
            }
            r::COPY => {
                return Err(Error::unsupported(
                    self.name.clone(),
                    "R_X86_64_COPY relocation in a shared object",
                ));
            }
            _ => {}
        }
        if let Some(n) = tls_name(rtype) {
            return Err(Error::unsupported(
                self.name.clone(),
                format!("cannot handle TLS relocation {n}"),
            )
            .with_why("thread-local storage in objects loaded by dynload is not supported yet"));
        }
        let len = match rtype {
            r::R64 | r::GLOB_DAT | r::JUMP_SLOT | r::SIZE64 => 8,
            r::PC32 | r::R32 | r::SIZE32 => 4,
            _ => {
                return Err(Error::invalid(
                    self.name.clone(),
                    format!("unexpected reloc type 0x{}", hex_type(rtype)),
                ));
            }
        };
        let addr = self.target(offset, len)?;
        let symidx = (rela.r_info.get(LE) >> 32) as u32;
        let res = self.resolve(symidx, rtype == r::JUMP_SLOT)?;
        self.out.relocations += 1;
        let value = res.value;
        // SAFETY (all writes below): `target` checked that [addr, addr+len)
        // is writable memory of this object.
        unsafe {
            match rtype {
                r::GLOB_DAT | r::JUMP_SLOT => *(addr as *mut usize) = value,
                r::R64 => *(addr as *mut usize) = value.wrapping_add(addend as usize),
                r::SIZE64 => *(addr as *mut u64) = res.size.wrapping_add(addend as u64),
                r::SIZE32 | r::R32 => {
                    let v = if rtype == r::SIZE32 {
                        res.size as i64
                    } else {
                        value as i64
                    }
                    .wrapping_add(addend);
                    if v as u64 > u32::MAX as u64 {
                        return Err(self.overflow(symidx, "R_X86_64_32"));
                    }
                    (addr as *mut u32).write_unaligned(v as u32);
                }
                r::PC32 => {
                    let v = (value as i64)
                        .wrapping_add(addend)
                        .wrapping_sub(addr as i64);
                    if v != v as i32 as i64 {
                        return Err(self.overflow(symidx, "R_X86_64_PC32"));
                    }
                    (addr as *mut u32).write_unaligned(v as u32);
                }
                _ => unreachable!("filtered above"),
            }
        }
        Ok(())
    }

    fn overflow(&self, symidx: u32, kind: &str) -> Error {
        let sym = self
            .obj
            .view
            .symbols
            .get(symidx)
            .map(|s| String::from_utf8_lossy(self.obj.view.symbols.name(s)).into_owned());
        Error::invalid(
            self.name.clone(),
            format!(
                "Symbol `{}' causes overflow in {kind} relocation",
                sym.unwrap_or_default()
            ),
        )
    }

    fn check_code(&self, addr: usize, what: &str) -> Result<(), Error> {
        if !is_code(self.obj, addr) {
            return Err(Error::invalid(
                self.name.clone(),
                format!("{what} at {addr:#x} is outside the object's executable segments"),
            ));
        }
        Ok(())
    }

    /// Find the definition a symbolic relocation refers to (glibc's
    /// `RESOLVE_MAP`, with its one-entry cache).
    fn resolve(&mut self, symidx: u32, plt: bool) -> Result<Resolved, Error> {
        if let Some((ci, cp, res)) = self.cache {
            if ci == symidx && cp == plt {
                self.out.cached += 1;
                return Ok(res);
            }
        }
        let syms = &self.obj.view.symbols;
        let sym = syms.get(symidx).ok_or_else(|| {
            Error::invalid(
                self.name.clone(),
                format!("relocation refers to symbol {symidx}, beyond the symbol table"),
            )
        })?;
        let res = if symidx == 0 {
            Resolved { value: 0, size: 0 }
        } else if sym.bind() == elf::STB_LOCAL || sym.binds_locally() {
            let found = Found {
                obj: self.id,
                sym: symidx,
            };
            self.value_of(found)?
        } else {
            let name = syms.name(sym);
            let version = syms
                .versym(symidx)
                .and_then(|v| self.obj.view.versions.entry(v));
            let flags = Flags {
                return_newest: false,
                plt,
            };
            match self
                .reg
                .lookup_reference(&self.scopes, name, version, flags, self.id, symidx)
            {
                Some(found) => {
                    self.note_binding(found, name, version.map(|v| &*v.name));
                    self.value_of(found)?
                }
                None if sym.bind() == elf::STB_WEAK => Resolved { value: 0, size: 0 },
                None => {
                    return Err(self.reg.undefined_error(
                        &self.scopes,
                        self.name.clone(),
                        name,
                        version,
                    ));
                }
            }
        };
        self.cache = Some((symidx, plt, res));
        Ok(res)
    }

    fn note_binding(&mut self, found: Found, name: &[u8], version: Option<&[u8]>) {
        let def = self.reg.obj(found.obj);
        let dsym = def.view.symbols.sym(found.sym);
        if debug::enabled(debug::BINDINGS) {
            let kind = if dsym.visibility() == elf::STV_PROTECTED {
                "protected"
            } else {
                "normal"
            };
            let ver = version
                .map(|v| format!(" [{}]", String::from_utf8_lossy(v)))
                .unwrap_or_default();
            debug!(
                debug::BINDINGS,
                "binding file {} [0] to {} [0]: {kind} symbol `{}'{ver}",
                self.name,
                def.display_name(),
                String::from_utf8_lossy(name)
            );
        }
        if dsym.bind() == elf::STB_GNU_UNIQUE {
            self.out.unique_definers.push(found.obj);
        }
        // A binding to another dynload object that is not a dependency keeps
        // that object alive as long as this one (glibc's add_dependency).
        if found.obj != self.id
            && def.is_ours()
            && !self.obj.initfini.contains(&found.obj)
            && !self.out.reldeps.contains(&found.obj)
        {
            self.out.reldeps.push(found.obj);
        }
    }

    fn value_of(&self, found: Found) -> Result<Resolved, Error> {
        let def = self.reg.obj(found.obj);
        let sym = def.view.symbols.sym(found.sym);
        let mut value = if sym.is_undefined() && sym.value() == 0 {
            0
        } else {
            def.view.symbols.address(sym)
        };
        if let Some(ours) = interposed(self.reg, found, def) {
            value = ours;
        } else if sym.kind() == elf::STT_GNU_IFUNC && !sym.is_undefined() {
            if def.is_ours() && found.obj != self.id && !def.relocated {
                let n = String::from_utf8_lossy(def.view.symbols.name(sym)).into_owned();
                return Err(Error::invalid(self.name.clone(), format!("Relink `{}' with `{}' for IFUNC symbol `{n}'", self.name, def.display_name()))
                    .with_why("the IFUNC resolver belongs to an object that is not relocated yet (a dependency cycle)"));
            }
            if def.is_ours() && !is_code(def, value) {
                return Err(Error::invalid(
                    def.display_name(),
                    format!(
                        "IFUNC resolver at {value:#x} is outside the object's executable segments"
                    ),
                ));
            }
            // SAFETY: the resolver of a relocated object (glibc's own for
            // host objects such as libc's memcpy); it takes no arguments.
            value = unsafe { call_resolver(value) };
        }
        Ok(Resolved {
            value,
            size: sym.size(),
        })
    }
}

/// dynload's replacement when a relocation binds a dl* function of glibc.
fn interposed(reg: &Registry, found: Found, def: &Object) -> Option<usize> {
    if def.is_ours() {
        return None;
    }
    let _ = reg;
    dlfcn::replacement(def.view.symbols.name(def.view.symbols.sym(found.sym)))
}

/// Is `addr` inside an executable PT_LOAD of `obj`?
pub(crate) fn is_code(obj: &Object, addr: usize) -> bool {
    let base = obj.view.image.base;
    // SAFETY: `phdr` points to the object's `phnum` program headers, kept
    // alive with the object.
    let phdrs = unsafe { std::slice::from_raw_parts(obj.phdr, obj.phnum) };
    phdrs.iter().any(|p| {
        p.p_type.get(LE) == elf::PT_LOAD && p.p_flags.get(LE) & elf::PF_X != 0 && {
            let s = base.wrapping_add(p.p_vaddr.get(LE) as usize);
            s <= addr && addr < s.wrapping_add(p.p_memsz.get(LE) as usize)
        }
    })
}

/// Call an IFUNC resolver.
///
/// # Safety
/// `addr` must be the address of an IFUNC resolver of a loaded, relocated
/// object.
pub(crate) unsafe fn call_resolver(addr: usize) -> usize {
    // SAFETY: per the contract; x86_64 resolvers are `fn() -> addr`.
    unsafe {
        let f: extern "C" fn() -> usize = std::mem::transmute(addr);
        f()
    }
}

fn hex_type(t: u32) -> String {
    if t > 0xff {
        format!("{t:08x}")
    } else {
        format!("{t:02x}")
    }
}
