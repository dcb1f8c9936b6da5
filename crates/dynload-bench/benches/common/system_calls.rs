//! The kernel's part of dynload's open+close of an object, with no loader
//! around it: the system calls dynload makes for it (`strace`: the file's
//! `openat`, `read` of its headers, `statx` for its identity, one `mmap`
//! over the whole span, an `mprotect` for each segment that span already
//! holds but with other permissions, one `mmap` of the writable segment,
//! populated when `map::written_whole` says so, or else its RELRO pages
//! populated by `madvise` (`map::populate_relro`), `close`, the RELRO
//! `mprotect`, then `munmap`), and the page faults its load still takes
//! (the first read of the object's tables and the first call into its
//! code). Paired with glibc's open+close of the small object `tiny`, it
//! gives what the kernel's part of dynload's cycle costs, as a fraction of
//! glibc's whole cycle: the least dynload's open+close can take while it
//! makes these calls. [`SystemCallsAlone::map_with`] runs a relocation
//! step between the `close` and the RELRO `mprotect`, where dynload
//! relocates (`lazy_floor.rs`).
//!
//! Built for GNU ld's layout (a read-only first segment at file offset 0
//! that holds the symbol tables, then code, read-only data and one
//! writable segment, RELRO at its start); [`SystemCallsAlone::new`]
//! refuses any other. The paired bench checks, before timing, that the
//! replay makes the mappings dynload makes for the same file and takes as
//! many faults.

use std::ffi::{c_int, c_void, CStr, CString};
use std::os::unix::ffi::OsStrExt;

use testkit::damage::{get_u64, phdrs_of, section};

const PAGE: usize = 4096;
const PT_LOAD: u32 = 1;
const PT_GNU_RELRO: u32 = 0x6474_e552;

fn page_down(a: usize) -> usize {
    a & !(PAGE - 1)
}

fn page_up(a: usize) -> usize {
    page_down(a + PAGE - 1)
}

/// One segment's fields: (flags, file offset, address, file size, memory size).
fn segment(b: &[u8], phdr: usize) -> (u32, usize, usize, usize, usize) {
    let field = |o: usize| get_u64(b, phdr + o) as usize;
    (
        (get_u64(b, phdr) >> 32) as u32,
        field(8),
        field(16),
        field(32),
        field(40),
    )
}

fn prot(flags: u32) -> c_int {
    let mut p = 0;
    for (bit, prot) in [
        (4, libc::PROT_READ),
        (2, libc::PROT_WRITE),
        (1, libc::PROT_EXEC),
    ] {
        if flags & bit != 0 {
            p |= prot;
        }
    }
    p
}

/// What one cycle does, worked out once from the file.
pub struct SystemCallsAlone {
    path: CString,
    span: usize,
    /// (start, length, permissions) of the segments the first mapping
    /// holds with other permissions.
    protect: Vec<(usize, usize, c_int)>,
    /// (start, length, file offset, populated) of the writable segment.
    writable: (usize, usize, usize, bool),
    /// (start, length) of RELRO's pages, populated by `madvise` where the
    /// writable segment is not populated when mapped.
    populate: Option<(usize, usize)>,
    /// (start, length) of RELRO, rounded as glibc and dynload round it.
    relro: (usize, usize),
    /// The first byte of the symbol table, and of the code.
    touch: [usize; 2],
}

impl SystemCallsAlone {
    /// The cycle for the object at `path`.
    pub fn new(path: &CStr) -> SystemCallsAlone {
        let b = std::fs::read(std::ffi::OsStr::from_bytes(path.to_bytes())).expect("the fixture");
        let mut loads: Vec<_> = phdrs_of(&b, PT_LOAD)
            .into_iter()
            .map(|p| segment(&b, p))
            .collect();
        loads.sort_by_key(|l| l.2);
        let (first, rest) = loads.split_first().expect("segments");
        let (last, middle) = rest.split_last().expect("more than one segment");
        assert!(
            first.0 == 4
                && first.1 == 0
                && first.2 == 0
                && last.0 == 6
                && middle.iter().all(|l| l.0 & 2 == 0),
            "not GNU ld's layout of a small object: {loads:?}"
        );
        let protect = middle
            .iter()
            .filter(|l| l.0 != 4)
            .map(|&(flags, _, vaddr, _, memsz)| {
                (
                    page_down(vaddr),
                    page_up(vaddr + memsz) - page_down(vaddr),
                    prot(flags),
                )
            })
            .collect();
        let (_, offset, vaddr, filesz, memsz) = *last;
        let (start, end) = (page_down(vaddr), page_up(vaddr + memsz));
        let relro = segment(&b, phdrs_of(&b, PT_GNU_RELRO)[0]);
        let (relro_start, relro_end) = (page_down(relro.2), page_down(relro.2 + relro.4));
        // `map::written_whole`: every page RELRO, or the one .bss starts in.
        let relro_last = page_up(relro.2 + relro.4);
        let bss_page =
            (memsz > filesz && (vaddr + filesz) % PAGE != 0).then(|| page_down(vaddr + filesz));
        let whole = relro_start <= start
            && (relro_last >= end || bss_page.is_some_and(|p| p == relro_last && p + PAGE >= end));
        assert!(
            relro.4 < 2 << 20,
            "a big RELRO is populated at relocation, not when mapped"
        );
        let text = middle
            .iter()
            .find(|l| l.0 & 1 != 0)
            .expect("a code segment")
            .2;
        SystemCallsAlone {
            path: path.to_owned(),
            span: end,
            protect,
            writable: (start, end - start, page_down(offset), whole),
            populate: (!whole && relro_start >= start)
                .then(|| (relro_start, relro_last - relro_start)),
            relro: (relro_start, relro_end - relro_start),
            touch: [section(&b, ".dynsym").0, text],
        }
    }

    /// Open and map the object as dynload does: its base.
    pub fn map(&self) -> *mut u8 {
        self.map_with(|_| {})
    }

    /// [`SystemCallsAlone::map`], with `relocate` given the base where
    /// dynload relocates: after the `close`, before the RELRO `mprotect`.
    pub fn map_with(&self, relocate: impl FnOnce(*mut u8)) -> *mut u8 {
        let ok = |r: c_int| assert!(r >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: system calls on a file this owns and on the span the
        // first mmap gave it; each result is checked.
        unsafe {
            let fd = libc::open(self.path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            ok(fd);
            let mut header = [0u8; 832];
            ok(libc::read(fd, header.as_mut_ptr().cast(), header.len()) as c_int);
            let mut st: libc::statx = std::mem::zeroed();
            ok(libc::statx(
                fd,
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                libc::STATX_ALL,
                &mut st,
            ));
            let base = libc::mmap(
                std::ptr::null_mut(),
                self.span,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                fd,
                0,
            );
            assert_ne!(base, libc::MAP_FAILED);
            let at = |o: usize| base.cast::<u8>().add(o).cast::<c_void>();
            for &(start, len, prot) in &self.protect {
                ok(libc::mprotect(at(start), len, prot));
            }
            let (start, len, offset, populate) = self.writable;
            let flags =
                libc::MAP_PRIVATE | libc::MAP_FIXED | if populate { libc::MAP_POPULATE } else { 0 };
            let rw = libc::PROT_READ | libc::PROT_WRITE;
            assert_ne!(
                libc::mmap(at(start), len, rw, flags, fd, offset as i64),
                libc::MAP_FAILED
            );
            if let Some((start, len)) = self.populate {
                ok(libc::madvise(at(start), len, libc::MADV_POPULATE_WRITE));
            }
            ok(libc::close(fd));
            relocate(base.cast());
            ok(libc::mprotect(
                at(self.relro.0),
                self.relro.1,
                libc::PROT_READ,
            ));
            for o in self.touch {
                std::ptr::read_volatile(at(o).cast::<u8>());
            }
            base.cast()
        }
    }

    /// Unmap what [`SystemCallsAlone::map`] mapped.
    pub fn unmap(&self, base: *mut u8) {
        // SAFETY: the span `map` mapped, which nothing else uses.
        assert_eq!(unsafe { libc::munmap(base.cast(), self.span) }, 0);
    }

    /// Page faults this process has taken so far: those of its accesses
    /// and those `MAP_POPULATE` takes for it.
    pub fn faults() -> i64 {
        // SAFETY: getrusage fills the struct it is given.
        unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
            usage.ru_minflt
        }
    }
}
