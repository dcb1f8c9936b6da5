//! The objects glibc loaded, and glibc's own dl* functions, reached only
//! through public interfaces: `getauxval(AT_BASE)` and the ELF tables of
//! ld.so, the debugger interface `_r_debug` (to find libc.so.6 once),
//! `dl_iterate_phdr`, and the exported symbols of libc.so.6. Nothing here
//! writes to glibc's data.
//!
//! Why not call `dlsym` to find glibc's functions? Under LD_PRELOAD,
//! libdynload.so exports `dlopen`, `dlsym`, ... itself, and every reference
//! to those names — including dynload's own — binds to the first definition
//! in the global scope, which is dynload's. So glibc's entry points are
//! looked up in libc.so.6's symbol table directly.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use crate::elf::dynamic::{self, DynInfo};
use crate::elf::image::Image;
use crate::elf::symbols::{NameHash, SymbolTable};
use crate::elf::versions::Versions;
use crate::elf::{elf, Ehdr, Phdr, SymExt, LE};

/// What an object in memory offers for lookups: its tables, checked.
pub(crate) struct View {
    pub image: Image,
    pub dyn_info: DynInfo,
    pub symbols: SymbolTable,
    pub versions: Versions,
    pub dynamic_addr: usize,
}

impl View {
    /// Read the tables of an object mapped at `base` with the program
    /// headers at `phdr`.
    ///
    /// # Safety
    /// `phdr` must point to `phnum` program headers, and the object's
    /// segments must stay mapped while the view is used.
    pub(crate) unsafe fn of_mapped(
        base: usize,
        phdr: *const Phdr,
        phnum: usize,
        maybe_relocated: bool,
    ) -> Result<View, String> {
        // SAFETY: guaranteed by the caller.
        let phdrs = unsafe { std::slice::from_raw_parts(phdr, phnum) };
        // SAFETY: the caller keeps the segments mapped.
        let image = unsafe { Image::new(base, phdrs) };
        let dynamic = phdrs.iter().find(|p| p.p_type.get(LE) == elf::PT_DYNAMIC);
        let Some(d) = dynamic else {
            return Ok(View {
                symbols: SymbolTable::empty(base),
                image,
                dyn_info: DynInfo::default(),
                versions: Versions::default(),
                dynamic_addr: 0,
            });
        };
        let dyn_addr = base.wrapping_add(d.p_vaddr.get(LE) as usize);
        let dyn_info = dynamic::parse(
            &image,
            dyn_addr,
            d.p_memsz.get(LE) as usize,
            maybe_relocated,
        )?;
        View::of_parsed(image, dyn_info, dyn_addr)
    }

    /// The view of an object whose image and dynamic section (at
    /// `dyn_addr`) are read already: its symbol and version tables.
    pub(crate) fn of_parsed(
        image: Image,
        dyn_info: DynInfo,
        dyn_addr: usize,
    ) -> Result<View, String> {
        let symbols = SymbolTable::parse(&image, &dyn_info)?;
        let versions = Versions::parse(&image, &dyn_info, &symbols)?;
        Ok(View {
            image,
            dyn_info,
            symbols,
            versions,
            dynamic_addr: dyn_addr,
        })
    }

    /// Read an object from its ELF header in memory (ld.so, libc.so.6).
    ///
    /// # Safety
    /// `map_start` must be the mapped ELF header of an object whose program
    /// headers are mapped too, and which stays loaded.
    unsafe fn of_header(base: usize, map_start: usize) -> Result<View, String> {
        // SAFETY: per the contract, an ELF header is mapped at map_start.
        let ehdr = unsafe { &*(map_start as *const Ehdr) };
        if ehdr.e_ident.magic != elf::ELFMAG {
            return Err("no ELF header".into());
        }
        let phdr = (map_start + ehdr.e_phoff.get(LE) as usize) as *const Phdr;
        // SAFETY: the program headers of a loaded object are mapped.
        unsafe { View::of_mapped(base, phdr, usize::from(ehdr.e_phnum.get(LE)), true) }
    }

    /// Does this object refer to `name` (an undefined dynamic symbol)? The
    /// hash tables list definitions only: the symbol table is walked.
    fn refers_to(&self, name: &[u8]) -> bool {
        self.symbols
            .iter()
            .any(|(_, sym)| sym.is_undefined() && self.symbols.string_is(sym.name_offset(), name))
    }

    /// The address of the default-version definition of `name`.
    fn default_definition(&self, name: &[u8]) -> Option<usize> {
        let mut hash = NameHash::new(name);
        let idx = self.symbols.find(name, &mut hash, |i, sym| {
            !sym.is_undefined() && self.symbols.versym(i).is_none_or(|v| v & 0x8000 == 0)
        })?;
        Some(self.symbols.address(self.symbols.sym(idx)))
    }
}

/// `struct r_debug` from <link.h>.
#[repr(C)]
struct RDebug {
    r_version: c_int,
    r_map: *mut LinkMapPrefix,
    r_brk: usize,
    r_state: c_int,
    r_ldbase: usize,
}

/// The public prefix of glibc's `struct link_map` (<link.h>).
#[repr(C)]
pub(crate) struct LinkMapPrefix {
    pub l_addr: usize,
    pub l_name: *const c_char,
    pub l_ld: *const c_void,
    pub l_next: *mut LinkMapPrefix,
    pub l_prev: *mut LinkMapPrefix,
}

type IterateCallback = unsafe extern "C" fn(*mut libc::dl_phdr_info, usize, *mut c_void) -> c_int;
type IterateFn = unsafe extern "C" fn(Option<IterateCallback>, *mut c_void) -> c_int;
type DlopenFn = unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void;
type DlcloseFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type DlsymFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;
type DlerrorFn = unsafe extern "C" fn() -> *mut c_char;
type DladdrFn = unsafe extern "C" fn(*const c_void, *mut libc::Dl_info) -> c_int;
type Dladdr1Fn =
    unsafe extern "C" fn(*const c_void, *mut libc::Dl_info, *mut *mut c_void, c_int) -> c_int;
type DlinfoFn = unsafe extern "C" fn(*mut c_void, c_int, *mut c_void) -> c_int;
type FindObjectFn = unsafe extern "C" fn(*mut c_void, *mut crate::unwind::DlFindObject) -> c_int;
pub(crate) type ThreadDtor = unsafe extern "C" fn(*mut c_void);
type ThreadAtexitFn = unsafe extern "C" fn(ThreadDtor, *mut c_void, *mut c_void) -> c_int;
/// `__x86_get_cpuid_feature_leaf` (<sys/platform/x86.h>): glibc's copy of
/// one CPUID leaf, as `struct cpuid_feature`.
type CpuidLeafFn = unsafe extern "C" fn(u32) -> *const CpuidFeature;

/// <bits/platform/x86.h>'s `struct cpuid_feature`: the registers (eax,
/// ebx, ecx, edx) CPUID gave glibc at start-up, and the same with only the
/// features glibc found usable (present, and enabled by the OS).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuidFeature {
    pub cpuid: [u32; 4],
    pub active: [u32; 4],
}

/// The leaves glibc keeps (its `CPUID_INDEX_*`).
pub(crate) mod cpuid_index {
    /// Leaf 1.
    pub const LEAF_1: u32 = 0;
    /// Leaf 7, subleaf 0.
    pub const LEAF_7: u32 = 1;
    /// Leaf 0x80000001.
    pub const LEAF_80000001: u32 = 2;
    /// Leaf 0xd, subleaf 1.
    pub const LEAF_D_1: u32 = 3;
}

/// glibc's copy of a CPUID leaf (see [`cpuid_index`]), where glibc has
/// one (2.33 and later). Reading CPUID again costs a trap to the
/// hypervisor in a virtual machine (7 µs each on this project's), and a
/// process's first `dlopen` read a dozen leaves that glibc had read at
/// start-up.
pub(crate) fn glibc_cpuid(index: u32) -> Option<CpuidFeature> {
    let f = glibc_if_any()?.cpuid_leaf?;
    // SAFETY: glibc's function, with a leaf index it knows (it returns a
    // table of zeros for one it does not); the table is static.
    let p = unsafe { f(index) };
    // SAFETY: a pointer to glibc's static `struct cpuid_feature`.
    (!p.is_null()).then(|| unsafe { *p })
}

/// glibc's own entry points.
pub(crate) struct Glibc {
    pub dl_iterate_phdr: IterateFn,
    pub dlopen: DlopenFn,
    pub dlclose: DlcloseFn,
    pub dlsym: DlsymFn,
    pub dlerror: DlerrorFn,
    pub dladdr: DladdrFn,
    pub dladdr1: Dladdr1Fn,
    pub dlinfo: DlinfoFn,
    /// libc's `_dl_find_object` (glibc 2.35 and later).
    pub find_object: Option<FindObjectFn>,
    /// libc's `__cxa_thread_atexit_impl`.
    pub thread_atexit: ThreadAtexitFn,
    /// libc's `__x86_get_cpuid_feature_leaf` (glibc 2.33 and later).
    cpuid_leaf: Option<CpuidLeafFn>,
    /// glibc's handle for the main program (`dlopen(NULL)`).
    pub main_handle: *mut c_void,

    /// The address of ld.so's `__tls_get_addr`, to which dynload's own
    /// forwards glibc's module ids (a tail jump, so no function type).
    pub tls_get_addr: usize,
}

// SAFETY: function pointers and an opaque glibc handle, used from any thread
// exactly as glibc allows.
unsafe impl Send for Glibc {}
// SAFETY: as above.
unsafe impl Sync for Glibc {}

/// glibc's functions, found once.
pub(crate) fn glibc() -> &'static Glibc {
    match found_glibc() {
        Ok(g) => g,
        Err(e) => {
            // Without glibc's entry points nothing can work; this only
            // happens outside a dynamically linked glibc process.
            eprintln!("dynload: cannot find glibc's dynamic-linking functions: {e}");
            std::process::abort();
        }
    }
}

/// glibc's functions, if this is a dynamically linked glibc process (for
/// code that runs whether or not dynload is used, such as constructors).
pub(crate) fn glibc_if_any() -> Option<&'static Glibc> {
    found_glibc().ok()
}

fn found_glibc() -> Result<&'static Glibc, &'static String> {
    static GLIBC: OnceLock<Result<Glibc, String>> = OnceLock::new();
    GLIBC.get_or_init(find_glibc).as_ref()
}

fn find_glibc() -> Result<Glibc, String> {
    // SAFETY: getauxval has no preconditions.
    let ld_base = unsafe { libc::getauxval(libc::AT_BASE) } as usize;
    if ld_base == 0 {
        return Err("no AT_BASE: not a dynamically linked program".into());
    }
    // SAFETY: AT_BASE is where the kernel mapped ld.so, ELF header first;
    // ld.so is never unloaded.
    let ld = unsafe { View::of_header(ld_base, ld_base)? };
    // `_r_debug` is the debugger interface of <link.h>: its list of
    // link_maps (public prefix only) is read, never written, to find
    // libc.so.6, which was loaded at start-up and is never unloaded.
    let r_debug = ld
        .default_definition(b"_r_debug")
        .ok_or("ld.so has no _r_debug")? as *const RDebug;
    let in_libc = libc::gnu_get_libc_version as *const () as usize;
    let mut libc_view = None;
    // SAFETY: `_r_debug.r_map` is the head of glibc's link_map list; the
    // public prefix of each entry is ABI, and start-up entries (libc among
    // them) are never freed.
    unsafe {
        let mut lm = (*r_debug).r_map;
        let mut guard = 0;
        while !lm.is_null() && guard < 4096 {
            let name = if (*lm).l_name.is_null() {
                &b""[..]
            } else {
                CStr::from_ptr((*lm).l_name).to_bytes()
            };
            if name.ends_with(b"/libc.so.6") || name == b"libc.so.6" {
                let base = (*lm).l_addr;
                if let Ok(v) = View::of_header(base, base) {
                    if v.image.contains(in_libc, 1) {
                        libc_view = Some(v);
                        break;
                    }
                }
            }
            lm = (*lm).l_next;
            guard += 1;
        }
    }
    let libc_view = libc_view.ok_or("libc.so.6 is not in _r_debug's list")?;
    let get = |name: &str| {
        libc_view
            .default_definition(name.as_bytes())
            .ok_or_else(|| format!("libc.so.6 lacks {name}"))
    };
    // SAFETY: these are glibc's exported functions with the prototypes of
    // <dlfcn.h> and <link.h>.
    unsafe {
        let dlopen = std::mem::transmute::<usize, DlopenFn>(get("dlopen")?);
        let main_handle = dlopen(std::ptr::null(), libc::RTLD_LAZY);
        let tls_get_addr = ld
            .default_definition(b"__tls_get_addr")
            .ok_or("ld.so lacks __tls_get_addr")?;
        Ok(Glibc {
            dl_iterate_phdr: std::mem::transmute::<usize, IterateFn>(get("dl_iterate_phdr")?),
            dlopen,
            dlclose: std::mem::transmute::<usize, DlcloseFn>(get("dlclose")?),
            dlsym: std::mem::transmute::<usize, DlsymFn>(get("dlsym")?),
            dlerror: std::mem::transmute::<usize, DlerrorFn>(get("dlerror")?),
            dladdr: std::mem::transmute::<usize, DladdrFn>(get("dladdr")?),
            dladdr1: std::mem::transmute::<usize, Dladdr1Fn>(get("dladdr1")?),
            dlinfo: std::mem::transmute::<usize, DlinfoFn>(get("dlinfo")?),
            find_object: libc_view
                .default_definition(b"_dl_find_object")
                .map(|a| std::mem::transmute::<usize, FindObjectFn>(a)),
            thread_atexit: std::mem::transmute::<usize, ThreadAtexitFn>(get(
                "__cxa_thread_atexit_impl",
            )?),
            cpuid_leaf: libc_view
                .default_definition(b"__x86_get_cpuid_feature_leaf")
                .map(|a| std::mem::transmute::<usize, CpuidLeafFn>(a)),
            main_handle,
            tls_get_addr,
        })
    }
}

/// One object in glibc's list, as `dl_iterate_phdr` reports it.
#[derive(Debug, Clone)]
pub(crate) struct HostEntry {
    pub addr: usize,
    pub name: Vec<u8>,
    pub phdr: *const Phdr,
    pub phnum: usize,
    pub tls_modid: usize,
}

/// glibc's loaded objects in load order, with its (adds, subs) counters.
pub(crate) fn host_objects() -> (Vec<HostEntry>, u64, u64) {
    struct Acc {
        list: Vec<HostEntry>,
        adds: u64,
        subs: u64,
    }
    unsafe extern "C" fn cb(
        info: *mut libc::dl_phdr_info,
        size: usize,
        data: *mut c_void,
    ) -> c_int {
        // SAFETY: glibc passes a valid info of `size` bytes and our `data`.
        unsafe {
            let acc = &mut *(data as *mut Acc);
            let info = &*info;
            let name = if info.dlpi_name.is_null() {
                Vec::new()
            } else {
                CStr::from_ptr(info.dlpi_name).to_bytes().to_vec()
            };
            let tls_modid = if size >= std::mem::size_of::<libc::dl_phdr_info>() {
                info.dlpi_tls_modid
            } else {
                0
            };
            acc.adds = info.dlpi_adds;
            acc.subs = info.dlpi_subs;
            acc.list.push(HostEntry {
                addr: info.dlpi_addr as usize,
                name,
                phdr: info.dlpi_phdr as *const Phdr,
                phnum: usize::from(info.dlpi_phnum),
                tls_modid,
            });
        }
        0
    }
    let mut acc = Acc {
        list: Vec::new(),
        adds: 0,
        subs: 0,
    };
    // SAFETY: the callback only copies out of `info`; `acc` outlives the call.
    unsafe { (glibc().dl_iterate_phdr)(Some(cb), &mut acc as *mut Acc as *mut c_void) };
    (acc.list, acc.adds, acc.subs)
}

/// glibc's load and unload counters (`dlpi_adds`, `dlpi_subs`), read from
/// the first object alone: the cheap check that glibc's list is unchanged,
/// done before copying it.
pub(crate) fn host_counters() -> (u64, u64) {
    unsafe extern "C" fn cb(info: *mut libc::dl_phdr_info, _: usize, data: *mut c_void) -> c_int {
        // SAFETY: glibc passes a valid info and our `data`.
        unsafe {
            *(data as *mut (u64, u64)) = ((*info).dlpi_adds, (*info).dlpi_subs);
        }
        1
    }
    let mut counters = (0u64, 0u64);
    // SAFETY: the callback writes only `counters`, which outlives the call.
    unsafe { (glibc().dl_iterate_phdr)(Some(cb), &mut counters as *mut (u64, u64) as *mut c_void) };
    counters
}

/// The sonames glibc itself provides. dynload never maps these: a second
/// libc in one process is a broken process.
const C_RUNTIME: &[&str] = &[
    "libc.so.6",
    "ld-linux-x86-64.so.2",
    "libm.so.6",
    "libmvec.so.1",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libresolv.so.2",
    "libutil.so.1",
    "libanl.so.1",
    "libBrokenLocale.so.1",
    "libthread_db.so.1",
    "libc_malloc_debug.so.0",
    "libnss_files.so.2",
    "libnss_dns.so.2",
    "libnss_compat.so.2",
    "libnss_db.so.2",
    "libnss_hesiod.so.2",
];

/// Is `name` (a soname or a path) part of glibc itself?
pub(crate) fn is_c_runtime(name: &[u8]) -> bool {
    let base = name.rsplit(|&c| c == b'/').next().unwrap_or(name);
    C_RUNTIME.iter().any(|c| c.as_bytes() == base)
}

/// Does the glibc-loaded object that contains `addr` refer to the dynamic
/// symbol `name`?
pub(crate) fn object_refers_to(addr: usize, name: &[u8]) -> bool {
    // SAFETY: dladdr only reads glibc's tables; `info` is written.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    if addr == 0 || unsafe { (glibc().dladdr)(addr as *const c_void, &mut info) } == 0 {
        return false;
    }
    let base = info.dli_fbase as usize;
    // SAFETY: glibc maps a shared object's ELF header and program headers
    // at its base (`dli_fbase`, `l_map_start`); the object contains code
    // the caller may call, so it stays loaded while it is read.
    match unsafe { View::of_header(base, base) } {
        Ok(view) => view.refers_to(name),
        Err(_) => false,
    }
}

/// The text of glibc's pending dlerror, if any (consumes it).
pub(crate) fn glibc_error() -> Option<String> {
    // SAFETY: dlerror returns NULL or a string valid until the next call.
    unsafe {
        let p = (glibc().dlerror)();
        (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_objects_refer_to_dl_find_object() {
        let g = glibc();
        // SAFETY: glibc's dlsym with RTLD_DEFAULT and a C string.
        let register = unsafe { (g.dlsym)(libc::RTLD_DEFAULT, c"__register_frame".as_ptr()) };
        assert!(!register.is_null(), "libgcc_s is loaded in a Rust test");
        // glibc 2.36's libgcc_s asks `_dl_find_object`; libc defines it.
        assert!(object_refers_to(register as usize, b"_dl_find_object"));
        assert!(!object_refers_to(register as usize, b"no_such_symbol"));
        let malloc = libc::malloc as *const () as usize;
        assert!(!object_refers_to(malloc, b"_dl_find_object"));
        assert!(!object_refers_to(0, b"_dl_find_object"));
    }
}
