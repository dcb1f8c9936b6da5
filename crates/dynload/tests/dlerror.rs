//! dlerror after a failed dlsym: the message is built only when asked for,
//! and it is glibc's, word for word; the explanation is built on request.

use std::ffi::{c_void, CStr};

use dynload::dlfcn;

fn caller() -> *const c_void {
    caller as *const c_void
}

fn text(p: *const std::ffi::c_char) -> Option<String> {
    // SAFETY: dlerror's string or NULL.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

#[test]
fn a_failed_lookup_reads_as_glibcs_and_is_explained_on_request() {
    let lib = c"libz.so.1";
    // SAFETY: C strings; handles of the loader that opened them.
    unsafe {
        let ours = dlfcn::dlopen_from(lib.as_ptr(), libc::RTLD_NOW, caller());
        assert!(!ours.is_null());
        let theirs = libc::dlopen(lib.as_ptr(), libc::RTLD_NOW);
        assert!(!theirs.is_null());

        for version in [None, Some(c"ZLIB_9.9")] {
            let (mine, glibc) = match version {
                None => (
                    dlfcn::dlsym_from(ours, c"no_such_zlib_symbol".as_ptr(), caller()),
                    libc::dlsym(theirs, c"no_such_zlib_symbol".as_ptr()),
                ),
                Some(v) => (
                    dlfcn::dlvsym_from(ours, c"no_such_zlib_symbol".as_ptr(), v.as_ptr(), caller()),
                    libc::dlvsym(theirs, c"no_such_zlib_symbol".as_ptr(), v.as_ptr()),
                ),
            };
            assert!(mine.is_null() && glibc.is_null());
            let expected = text(libc::dlerror()).expect("glibc's message");
            assert!(
                expected.contains("undefined symbol: no_such_zlib_symbol"),
                "{expected}"
            );
            // The explanation first (it must not consume the message), then
            // the message, once.
            let why = text(dlfcn::last_explanation()).expect("an explanation");
            assert!(why.starts_with(&expected), "{why}");
            assert!(
                why.contains("searched, in order:") && why.contains("libz.so.1"),
                "{why}"
            );
            assert_eq!(text(dlfcn::dl_error()), Some(expected));
            assert_eq!(text(dlfcn::dl_error()), None);
        }

        // A later successful call clears a pending miss, as in glibc.
        assert!(dlfcn::dlsym_from(ours, c"nope_again".as_ptr(), caller()).is_null());
        assert!(!dlfcn::dlsym_from(ours, c"zlibVersion".as_ptr(), caller()).is_null());
        assert_eq!(text(dlfcn::dl_error()), None);
        assert!(dlfcn::last_explanation().is_null());

        assert_eq!(dlfcn::dl_close(ours), 0);
        assert_eq!(libc::dlclose(theirs), 0);
    }
}
