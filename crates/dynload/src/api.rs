//! The public Rust API: [`Library`], [`Symbol`], [`OpenFlags`], address
//! lookup and iteration over loaded objects.

use std::ffi::{c_int, c_void, OsStr};
use std::marker::PhantomData;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::error::{Error, ErrorKind};
use crate::find::FoundVia;
use crate::load;
use crate::object::ObjId;
use crate::query::{self, Target};
use crate::registry::{registry, LOADER};

/// How to open a library: when to bind (`NOW`/`LAZY`), where its symbols
/// are visible (`LOCAL`/`GLOBAL`), and the modifiers of `dlopen`.
///
/// ```
/// use dynload::OpenFlags;
/// let flags = OpenFlags::NOW | OpenFlags::GLOBAL;
/// assert_eq!(flags.bits(), 0x102);
/// assert_eq!(OpenFlags::default(), OpenFlags::NOW | OpenFlags::LOCAL);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFlags(c_int);

impl OpenFlags {
    /// Resolve functions on first call. dynload currently binds every
    /// symbol at load time even with `LAZY` (see the README).
    pub const LAZY: OpenFlags = OpenFlags(load::RTLD_LAZY);
    /// Resolve every symbol before `open` returns.
    pub const NOW: OpenFlags = OpenFlags(load::RTLD_NOW);
    /// Keep the library's symbols out of the global scope (the default).
    pub const LOCAL: OpenFlags = OpenFlags(0);
    /// Add the library and its dependencies to the global scope.
    pub const GLOBAL: OpenFlags = OpenFlags(load::RTLD_GLOBAL);
    /// Only return the library if it is already loaded.
    pub const NOLOAD: OpenFlags = OpenFlags(load::RTLD_NOLOAD);
    /// Never unload the library.
    pub const NODELETE: OpenFlags = OpenFlags(load::RTLD_NODELETE);
    /// Resolve the library's references in its own dependencies first.
    pub const DEEPBIND: OpenFlags = OpenFlags(load::RTLD_DEEPBIND);

    /// The `dlopen` mode bits.
    pub const fn bits(self) -> c_int {
        self.0
    }

    /// Flags from raw `dlopen` mode bits (checked when opening).
    pub const fn from_bits(bits: c_int) -> OpenFlags {
        OpenFlags(bits)
    }
}

impl Default for OpenFlags {
    fn default() -> OpenFlags {
        OpenFlags::NOW
    }
}

impl std::ops::BitOr for OpenFlags {
    type Output = OpenFlags;
    fn bitor(self, rhs: OpenFlags) -> OpenFlags {
        OpenFlags(self.0 | rhs.0)
    }
}

/// A library opened by dynload. Closing it (explicitly with
/// [`Library::close`], or by dropping it) releases one reference; the
/// library is unloaded when nothing else uses it.
///
/// ```
/// use dynload::{Library, OpenFlags};
/// // SAFETY: zlib's initialisers are sound.
/// let zlib = unsafe { Library::open("libz.so.1", OpenFlags::NOW) }.unwrap();
/// // SAFETY: zlibVersion has this signature.
/// let version = unsafe { zlib.get::<unsafe extern "C" fn() -> *const std::ffi::c_char>("zlibVersion") }.unwrap();
/// let v = unsafe { std::ffi::CStr::from_ptr(version()) };
/// assert!(v.to_str().unwrap().starts_with('1'));
/// zlib.close().unwrap();
/// ```
#[derive(Debug)]
pub struct Library {
    id: ObjId,
    handle: usize,
    closed: bool,
}

// SAFETY: a Library is a counted reference to a loaded object; the loader
// serialises all access to its state.
unsafe impl Send for Library {}
// SAFETY: as above.
unsafe impl Sync for Library {}

/// A symbol of a [`Library`], typed, and valid only while the library is.
///
/// ```
/// use dynload::{Library, OpenFlags};
/// let zlib = unsafe { Library::open("libz.so.1", OpenFlags::NOW) }.unwrap();
/// // SAFETY: crc32 has this signature.
/// let crc32 = unsafe { zlib.get::<unsafe extern "C" fn(u64, *const u8, u32) -> u64>("crc32") }.unwrap();
/// let data = b"hello";
/// assert_eq!(unsafe { crc32(0, data.as_ptr(), data.len() as u32) }, 0x3610a686);
/// ```
pub struct Symbol<'lib, T> {
    ptr: *mut c_void,
    _lib: PhantomData<&'lib Library>,
    _t: PhantomData<T>,
}

impl<T> Symbol<'_, T> {
    /// The symbol's address.
    pub fn as_ptr(&self) -> *mut c_void {
        self.ptr
    }
}

impl<T> std::ops::Deref for Symbol<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `get` checked that T is pointer-sized, and the caller of
        // `get` promised that the symbol has type T.
        unsafe { &*(&self.ptr as *const *mut c_void as *const T) }
    }
}

impl<T> std::fmt::Debug for Symbol<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Symbol({:p})", self.ptr)
    }
}

/// The "loader" of libraries opened through the Rust API, for DT_RPATH and
/// DT_RUNPATH: the object (executable or shared library) that contains
/// dynload.
fn api_caller() -> usize {
    api_caller as *const () as usize
}

impl Library {
    /// Open a library by path or by name, with glibc's `dlopen` search and
    /// semantics. A library already loaded — by dynload or by glibc — is
    /// returned again, never loaded twice.
    ///
    /// # Safety
    /// Opening a library runs its initialisers, and binds it to symbols of
    /// the process; the caller must trust the library's code.
    ///
    /// ```
    /// use dynload::{Library, OpenFlags};
    /// let err = unsafe { Library::open("libdoes-not-exist.so", OpenFlags::NOW) }.unwrap_err();
    /// assert_eq!(err.to_string(), "libdoes-not-exist.so: cannot open shared object file: No such file or directory");
    /// ```
    pub unsafe fn open(name: impl AsRef<OsStr>, flags: OpenFlags) -> Result<Library, Error> {
        let name = name.as_ref().as_bytes();
        if name.is_empty() {
            return Ok(Library::this());
        }
        match load::dlopen(Some(name), flags.bits(), api_caller())? {
            Some(o) => Ok(Library {
                id: o.id,
                handle: o.handle,
                closed: false,
            }),
            None => Err(Error::load(
                ErrorKind::NotOpen,
                String::from_utf8_lossy(name),
                "not loaded (RTLD_NOLOAD)",
            )),
        }
    }

    /// The process's global scope, like `dlopen(NULL)`: lookups search the
    /// main program, its dependencies, and everything opened `GLOBAL`.
    ///
    /// ```
    /// let global = dynload::Library::this();
    /// // SAFETY: strlen has this signature.
    /// let strlen = unsafe { global.get::<unsafe extern "C" fn(*const std::ffi::c_char) -> usize>("strlen") }.unwrap();
    /// assert_eq!(unsafe { strlen(c"four".as_ptr()) }, 4);
    /// ```
    pub fn this() -> Library {
        let o = load::dlopen(None, load::RTLD_NOW, api_caller())
            .ok()
            .flatten()
            .expect("dlopen(NULL) cannot fail");
        Library {
            id: o.id,
            handle: o.handle,
            closed: false,
        }
    }

    /// Look up a symbol in this library and its dependencies (the default
    /// version for versioned symbols, as `dlsym`).
    ///
    /// # Safety
    /// `T` must be the symbol's real type (a function pointer type, or a
    /// raw pointer for data); `T` must be pointer-sized.
    pub unsafe fn get<T>(&self, name: &str) -> Result<Symbol<'_, T>, Error> {
        // SAFETY: forwarded contract.
        unsafe { self.lookup(name, None) }
    }

    /// Look up a symbol of a given version (`dlvsym`), hidden versions
    /// (`f@V1`) included.
    ///
    /// ```
    /// use dynload::{Library, OpenFlags};
    /// let libc = unsafe { Library::open("libc.so.6", OpenFlags::NOW) }.unwrap();
    /// // The oldest memcpy, and the default one, are different symbols.
    /// let old = unsafe { libc.get_versioned::<*mut std::ffi::c_void>("memcpy", "GLIBC_2.2.5") }.unwrap();
    /// let new = unsafe { libc.get_versioned::<*mut std::ffi::c_void>("memcpy", "GLIBC_2.14") }.unwrap();
    /// assert_ne!(*old, *new);
    /// let err = unsafe { libc.get_versioned::<*mut std::ffi::c_void>("memcpy", "GLIBC_9.9") }.unwrap_err();
    /// assert!(err.to_string().ends_with("undefined symbol: memcpy, version GLIBC_9.9"));
    /// ```
    ///
    /// # Safety
    /// As for [`Library::get`].
    pub unsafe fn get_versioned<T>(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Symbol<'_, T>, Error> {
        // SAFETY: forwarded contract.
        unsafe { self.lookup(name, Some(version)) }
    }

    unsafe fn lookup<T>(&self, name: &str, version: Option<&str>) -> Result<Symbol<'_, T>, Error> {
        if std::mem::size_of::<T>() != std::mem::size_of::<*mut c_void>() {
            return Err(Error::load(
                ErrorKind::InvalidArgument,
                "",
                "the symbol type must be pointer-sized",
            ));
        }
        let addr = query::lookup_symbol(
            Target::Handle(self.handle),
            name.as_bytes(),
            version.map(str::as_bytes),
            api_caller(),
        )?;
        Ok(Symbol {
            ptr: addr as *mut c_void,
            _lib: PhantomData,
            _t: PhantomData,
        })
    }

    /// Release this reference now, reporting failure. The library is
    /// unloaded (destructors run, pages unmapped) when nothing else holds
    /// it: no other `Library`, no dependent, no NODELETE.
    ///
    /// ```
    /// use dynload::{Library, OpenFlags};
    /// let zlib = unsafe { Library::open("libz.so.1", OpenFlags::NOW) }.unwrap();
    /// assert!(zlib.close().is_ok());
    /// ```
    pub fn close(mut self) -> Result<(), Error> {
        self.closed = true;
        crate::unload::dlclose(self.id)
    }

    /// The path the library was loaded from ("" for the main program).
    ///
    /// ```
    /// use dynload::{Library, OpenFlags};
    /// let zlib = unsafe { Library::open("libz.so.1", OpenFlags::NOW) }.unwrap();
    /// assert!(zlib.path().is_absolute());
    /// assert!(zlib.path().ends_with("libz.so.1"));
    /// ```
    pub fn path(&self) -> PathBuf {
        let guard = LOADER.lock();
        registry(&guard)
            .map(|r| PathBuf::from(OsStr::from_bytes(r.obj(self.id).name.to_bytes())))
            .unwrap_or_default()
    }

    /// The load bias (`l_addr`): where file address 0 of the object is.
    ///
    /// ```
    /// use dynload::{Library, OpenFlags};
    /// let zlib = unsafe { Library::open("libz.so.1", OpenFlags::NOW) }.unwrap();
    /// let crc32 = unsafe { zlib.get::<*mut std::ffi::c_void>("crc32") }.unwrap();
    /// assert!((*crc32 as usize) > zlib.base_address());
    /// ```
    pub fn base_address(&self) -> usize {
        let guard = LOADER.lock();
        registry(&guard)
            .map(|r| r.obj(self.id).view.image.base)
            .unwrap_or(0)
    }

    /// The handle as the C ABI (`libdynload.so`) knows it: a pointer to the
    /// object's `link_map`.
    ///
    /// ```
    /// use dynload::{Library, LinkMap, OpenFlags};
    /// let zlib = unsafe { Library::open("libz.so.1", OpenFlags::NOW) }.unwrap();
    /// let map = zlib.as_raw() as *const LinkMap;
    /// let name = unsafe { std::ffi::CStr::from_ptr((*map).l_name) };
    /// assert_eq!(name.to_str().unwrap(), zlib.path().to_str().unwrap());
    /// ```
    pub fn as_raw(&self) -> *mut c_void {
        self.handle as *mut c_void
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        if !self.closed {
            let _ = crate::unload::dlclose(self.id);
        }
    }
}

/// Which loader mapped an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadedBy {
    /// dynload mapped it.
    Dynload,
    /// glibc's ld.so loaded it (at start-up or through glibc's dlopen).
    Glibc,
}

/// One loaded object, as [`loaded_objects`] reports it.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    /// Its path ("" for the main program).
    pub path: PathBuf,
    /// Its DT_SONAME.
    pub soname: Option<String>,
    /// The load bias.
    pub base: usize,
    /// Who mapped it.
    pub loaded_by: LoadedBy,
    /// How dynload found it (dynload's objects only).
    pub found_via: Option<FoundVia>,
    /// Its number of direct opens through dynload.
    pub open_count: u32,
    /// Whether it is in the global scope.
    pub global: bool,
}

/// Every loaded object: glibc's in its load order, then dynload's.
///
/// ```
/// let objects = dynload::loaded_objects();
/// assert!(objects.iter().any(|o| o.soname.as_deref() == Some("libc.so.6")));
/// ```
pub fn loaded_objects() -> Vec<ObjectInfo> {
    let guard = LOADER.lock();
    let Ok(mut reg) = crate::registry::registry_mut(&guard) else {
        return Vec::new();
    };
    reg.refresh_host();
    reg.all_in_load_order()
        .map(|id| reg.obj(id))
        .filter(|o| !o.host().is_some_and(|h| h.is_vdso))
        .map(|o| ObjectInfo {
            path: PathBuf::from(OsStr::from_bytes(o.name.to_bytes())),
            soname: o.soname().map(|s| String::from_utf8_lossy(s).into_owned()),
            base: o.view.image.base,
            loaded_by: if o.is_ours() {
                LoadedBy::Dynload
            } else {
                LoadedBy::Glibc
            },
            found_via: o.via.clone(),
            open_count: o.direct_opencount,
            global: o.global,
        })
        .collect()
}

/// What [`find_address`] knows about an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressInfo {
    /// The object containing the address.
    pub object: PathBuf,
    /// The object's lowest mapped address.
    pub object_base: usize,
    /// The nearest symbol at or below the address that contains it.
    pub symbol: Option<String>,
    /// That symbol's address.
    pub symbol_address: Option<usize>,
}

/// Which object, and which symbol, an address belongs to (`dladdr`).
///
/// ```
/// let strlen = libc::strlen as usize;
/// let info = dynload::find_address(strlen as *const _).unwrap();
/// assert!(info.object.to_string_lossy().contains("libc.so.6"));
/// ```
// The address is only compared with object ranges, never dereferenced.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn find_address(addr: *const c_void) -> Option<AddressInfo> {
    if let Some(a) = query::address_info(addr as usize) {
        // SAFETY: the strings belong to a loaded object's tables.
        let cstr = |p: *const std::ffi::c_char| unsafe { std::ffi::CStr::from_ptr(p) };
        return Some(AddressInfo {
            object: PathBuf::from(OsStr::from_bytes(cstr(a.fname).to_bytes())),
            object_base: a.fbase,
            symbol: (!a.sname.is_null()).then(|| cstr(a.sname).to_string_lossy().into_owned()),
            symbol_address: (!a.sname.is_null()).then_some(a.saddr),
        });
    }
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    // SAFETY: glibc's dladdr with a valid out-pointer.
    if unsafe { (crate::host::glibc().dladdr)(addr, &mut info) } == 0 {
        return None;
    }
    // SAFETY: glibc's strings for a loaded object.
    let cstr = |p: *const std::ffi::c_char| unsafe { std::ffi::CStr::from_ptr(p) };
    Some(AddressInfo {
        object: if info.dli_fname.is_null() {
            PathBuf::new()
        } else {
            PathBuf::from(OsStr::from_bytes(cstr(info.dli_fname).to_bytes()))
        },
        object_base: info.dli_fbase as usize,
        symbol: (!info.dli_sname.is_null())
            .then(|| cstr(info.dli_sname).to_string_lossy().into_owned()),
        symbol_address: (!info.dli_sname.is_null()).then_some(info.dli_saddr as usize),
    })
}

/// For tests: how many filters over the global scope this process built
/// (`link::scope_filter`), and the one it keeps, if any: its size in bytes
/// and whether it is a one-off (dropped when the `dlopen` that built it
/// ends).
pub fn global_filter_state() -> (u32, Option<(usize, bool)>) {
    let guard = LOADER.lock();
    let Ok(reg) = registry(&guard) else {
        return (0, None);
    };
    let kept = reg.global_filter.get().map(|f| (f.bytes(), f.is_one_off()));
    (reg.filters_built.get(), kept)
}

/// A summary of what dynload did in this process, for `dynload run
/// --stats`. None when the loader was never used or is busy.
pub(crate) fn summary() -> Option<String> {
    let guard = LOADER.try_lock_for(std::time::Duration::from_millis(200))?;
    let reg = registry(&guard).ok()?;
    if reg.stats.objects_loaded == 0 {
        return None;
    }
    let ours: Vec<_> = reg
        .loaded
        .iter()
        .map(|&id| reg.obj(id))
        .filter(|o| !o.removed)
        .collect();
    let glibc = reg
        .host_list
        .iter()
        .filter(|&&id| reg.obj(id).host().is_some_and(|h| h.present && !h.is_vdso))
        .count();
    let s = reg.stats;
    let mut out = format!(
        "dynload: {} dlopen calls; {} objects loaded by dynload ({} still loaded), {} by glibc; {} relocations ({} from the lookup cache, {} in the fast lane), {} relative; {}{}{:.1} ms in dlopen\n",
        s.dlopen_calls,
        s.objects_loaded,
        ours.len(),
        glibc,
        s.relocations,
        s.lookups_cached,
        s.fast_lane,
        s.relative_relocations,
        if s.relro_populated > 0 {
            format!("{} KiB of RELRO copied before relocation; ", s.relro_populated / 1024)
        } else {
            String::new()
        },
        match crate::two_cores::splits() {
            0 => String::new(),
            1 => "1 piece of work shared with a helper thread; ".to_owned(),
            n => format!("{n} pieces of work shared with a helper thread; "),
        },
        s.nanos as f64 / 1e6
    );
    for o in ours {
        let via = o
            .via
            .as_ref()
            .map(|v| format!(" [{v}]"))
            .unwrap_or_default();
        out.push_str(&format!("  {}{via}\n", o.display_name()));
    }
    Some(out)
}

/// A symbol defined a second time in the global scope: an object joining
/// it (opened `GLOBAL`, or promoted to `GLOBAL` by a later open such as
/// `NOLOAD | GLOBAL`) defines a symbol that an object already there
/// defines. The existing definition wins: `Library::this()` lookups
/// (`dlsym(RTLD_DEFAULT)`) and the relocations of objects loaded later get
/// it, never the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Collision {
    /// The symbol's name.
    pub symbol: String,
    /// The version the new object defines it with (`VERS_1` for
    /// `name@@VERS_1`), if any.
    pub version: Option<String>,
    /// The path of the object that joined the global scope.
    pub new_object: String,
    /// The path of the object whose definition lookups get: the first one
    /// in the global scope that defines the symbol.
    pub existing_object: String,
}

/// Call `callback` for every [`Collision`] from now on, in this process
/// (replacing any callback set before). Only collisions involving an
/// object dynload loaded are reported, not the C runtime's own
/// duplicates. `DYNLOAD_DEBUG=collisions` prints the same reports.
///
/// The callback runs inside the loader, with its lock held, while the
/// `open` that caused it is in progress: it must not call back into the
/// loader (open, close or look up symbols, or call `on_collision`), or that
/// call fails; it should record what it needs and return. A panic in the
/// callback is caught and ignored.
///
/// ```no_run
/// use std::sync::{Arc, Mutex};
/// use dynload::{Collision, Library, OpenFlags};
///
/// let seen: Arc<Mutex<Vec<Collision>>> = Arc::default();
/// let sink = seen.clone();
/// dynload::on_collision(move |c| sink.lock().unwrap().push(c.clone()));
/// // SAFETY: trusted libraries.
/// let _a = unsafe { Library::open("liba.so", OpenFlags::NOW | OpenFlags::GLOBAL) }?;
/// let _b = unsafe { Library::open("libb.so", OpenFlags::NOW | OpenFlags::GLOBAL) }?;
/// for c in seen.lock().unwrap().iter() {
///     eprintln!("{} of {} is hidden by {}'s", c.symbol, c.new_object, c.existing_object);
/// }
/// # Ok::<(), dynload::Error>(())
/// ```
pub fn on_collision(callback: impl Fn(&Collision) + Send + Sync + 'static) {
    crate::link::collisions::set_callback(std::sync::Arc::new(callback));
}
