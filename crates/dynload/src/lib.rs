//! dynload: a dynamic loader for Linux, written in Rust, that lives inside
//! an ordinary glibc process.
//!
//! It maps ELF shared objects itself — `dlopen` semantics, search order,
//! error texts and all — and cooperates with glibc's loader: objects glibc
//! already loaded (libc, libpython, libstdc++ ...) are reused, never mapped
//! twice, and glibc is only ever talked to through its public interfaces.
//!
//! The stages an object goes through are the modules: [`find`](crate::find)
//! (search order, ld.so.cache), `map` (validate and map), `relocate` and
//! `link` (symbol lookup), `init` (constructors), `unload`; `host` is the
//! interface to glibc's objects; `registry` holds the loaded set; `dlfcn`
//! is the C ABI that `libdynload.so` exports.
//!
//! ```
//! use dynload::{Library, OpenFlags};
//! let zlib = unsafe { Library::open("libz.so.1", OpenFlags::NOW | OpenFlags::LOCAL) }?;
//! let compress_bound = unsafe { zlib.get::<unsafe extern "C" fn(u64) -> u64>("compressBound")? };
//! assert!(unsafe { compress_bound(1000) } >= 1000);
//! # Ok::<(), dynload::Error>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod api;
mod debug;
mod debugger;
#[doc(hidden)]
pub mod dlfcn;
mod elf;
mod error;
mod fault;
mod find;
pub mod fuzzing;
mod host;
mod init;
pub mod inspect;
mod lazy;
mod link;
mod load;
mod map;
mod object;
mod policy;
mod process;
mod query;
mod registry;
mod relocate;
mod state;
mod thread_exit;
mod tls;
mod two_cores;
mod unload;
mod unwind;

pub use api::{
    find_address, loaded_objects, on_collision, AddressInfo, Collision, Library, LoadedBy,
    ObjectInfo, OpenFlags, Symbol,
};
pub use error::{Error, ErrorKind, Result};

/// Hooks for tests of failure paths; not a stable interface.
#[doc(hidden)]
pub mod testing {
    pub use crate::api::global_filter_state;
    pub use crate::fault::{check_fast_lane, fail_nth, on_copy_read, Syscall, PANIC};
    pub use crate::two_cores::splits as work_split_over_two_threads;
}
pub use find::FoundVia;
pub use object::LinkMap;
pub use policy::{allow_text_relocations, set_load_policy, LoadPolicy};
