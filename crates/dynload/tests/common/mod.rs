//! Runs the driver's scenario scripts through the Rust API, in-process, so
//! that the same scenarios can be compared with glibc's driver output.

#![allow(dead_code)]

use std::ffi::{c_char, c_int, c_void};

use dynload::{Library, OpenFlags};
use testkit::Set;

fn flags(s: &str) -> OpenFlags {
    let mut f = OpenFlags::from_bits(0);
    for t in s.split('|') {
        f = f | match t {
            "NOW" => OpenFlags::NOW,
            "LAZY" => OpenFlags::LAZY,
            "GLOBAL" => OpenFlags::GLOBAL,
            "LOCAL" => OpenFlags::LOCAL,
            "NOLOAD" => OpenFlags::NOLOAD,
            "NODELETE" => OpenFlags::NODELETE,
            "DEEPBIND" => OpenFlags::DEEPBIND,
            n => OpenFlags::from_bits(
                i32::from_str_radix(
                    n.trim_start_matches("0x"),
                    if n.starts_with("0x") { 16 } else { 10 },
                )
                .unwrap(),
            ),
        };
    }
    f
}

fn base(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// One open handle slot: the libraries opened through it.
struct Slot {
    raw: *mut c_void,
    libs: Vec<Library>,
}

/// Run `script` through the Rust API; the output has the driver's format.
pub fn run_api(set: &Set, script: &[&str]) -> String {
    let mut slots: Vec<Slot> = Vec::new();
    let mut out = String::new();
    let global = Library::this();
    type Waiting = (
        std::sync::mpsc::Sender<extern "C" fn() -> c_int>,
        std::thread::JoinHandle<c_int>,
    );
    let mut waiting: Vec<Waiting> = Vec::new();
    for line in script {
        let line = set.expand(line);
        let w: Vec<&str> = line.split(' ').collect();
        let lib_of = |slots: &Vec<Slot>, h: &str| -> Option<usize> {
            let i: usize = h.trim_start_matches('h').parse().ok()?;
            slots.get(i - 1).map(|_| i - 1)
        };
        match w[0] {
            "open" => {
                let mode = flags(w.get(2).copied().unwrap_or("NOW"));
                let r = if w[1] == "NULL" {
                    Ok(Library::this())
                } else {
                    unsafe { Library::open(w[1], mode) }
                };
                match r {
                    Ok(lib) => {
                        let raw = lib.as_raw();
                        let i = match slots
                            .iter()
                            .position(|s| s.raw == raw && !s.libs.is_empty())
                        {
                            Some(i) => i,
                            None => {
                                slots.push(Slot {
                                    raw,
                                    libs: Vec::new(),
                                });
                                slots.len() - 1
                            }
                        };
                        slots[i].libs.push(lib);
                        out.push_str(&format!("open {}: h{}\n", base(w[1]), i + 1));
                    }
                    Err(e)
                        if mode.bits() & OpenFlags::NOLOAD.bits() != 0
                            && e.kind() == Some(dynload::ErrorKind::NotOpen) =>
                    {
                        out.push_str(&format!("open {}: NULL (no error)\n", base(w[1])));
                    }
                    Err(e) => out.push_str(&format!("open {}: NULL ({e})\n", base(w[1]))),
                }
            }
            "close" => {
                let i = lib_of(&slots, w[1]).unwrap();
                match slots[i].libs.pop() {
                    Some(lib) => match lib.close() {
                        Ok(()) => out.push_str(&format!("close {}: 0\n", w[1])),
                        Err(e) => out.push_str(&format!("close {}: -1 ({e})\n", w[1])),
                    },
                    None => out.push_str(&format!("close {}: -1 (shared object not open)\n", w[1])),
                }
            }
            "call" | "vcall" | "data" | "sym" | "addr" => {
                let lib = match w[1] {
                    "DEFAULT" => &global,
                    h => slots[lib_of(&slots, h).unwrap()]
                        .libs
                        .last()
                        .expect("open handle"),
                };
                let r = if w[0] == "vcall" {
                    unsafe { lib.get_versioned::<*mut c_void>(w[2], w[3]) }.map(|s| *s)
                } else {
                    unsafe { lib.get::<*mut c_void>(w[2]) }.map(|s| *s)
                };
                match (w[0], r) {
                    ("call" | "vcall", Ok(p)) => {
                        let f: extern "C" fn() -> c_int = unsafe { std::mem::transmute(p) };
                        out.push_str(&format!("{} {}: {}\n", w[0], w[2], f()));
                    }
                    ("data", Ok(p)) => out.push_str(&format!("data {}: {}\n", w[2], unsafe {
                        *(p as *const c_int)
                    })),
                    ("sym", Ok(_)) => out.push_str(&format!("sym {}: found\n", w[2])),
                    ("sym", Err(e)) => out.push_str(&format!("sym {}: {e}\n", w[2])),
                    ("addr", Ok(p)) => {
                        let off: usize = w.get(3).map(|s| s.parse().unwrap()).unwrap_or(0);
                        match dynload::find_address((p as usize + off) as *const c_void) {
                            Some(a) => out.push_str(&format!(
                                "addr {}: {} {} {}\n",
                                w[2],
                                base(&a.object.to_string_lossy()),
                                a.symbol.as_deref().unwrap_or("(none)"),
                                if a.symbol_address == Some(p as usize) {
                                    "exact"
                                } else {
                                    "other"
                                }
                            )),
                            None => out.push_str(&format!("addr {}: not found\n", w[2])),
                        }
                    }
                    ("addr", Err(_)) => out.push_str(&format!("addr {}: not found\n", w[2])),
                    (op, Err(e)) => out.push_str(&format!("{op} {}: NULL ({e})\n", w[2])),
                    _ => unreachable!(),
                }
            }
            "same" => {
                let a = slots[lib_of(&slots, w[1]).unwrap()].libs.last().unwrap();
                let b = if w[2] == "DEFAULT" {
                    &global
                } else {
                    slots[lib_of(&slots, w[2]).unwrap()].libs.last().unwrap()
                };
                let p = unsafe { a.get::<*mut c_void>(w[3]) }.map(|s| *s).ok();
                let q = unsafe { b.get::<*mut c_void>(w[3]) }.map(|s| *s).ok();
                out.push_str(&format!(
                    "same {}: {}\n",
                    w[3],
                    if p.is_some() && p == q { "yes" } else { "no" }
                ));
            }
            "maps" => {
                out.push_str(&format!(
                    "maps {}: {}\n",
                    w[1],
                    i32::from(testkit::mapped_here(w[1]))
                ));
            }
            "log" => {
                let lib = slots[lib_of(&slots, w[1]).unwrap()].libs.last().unwrap();
                let dump =
                    unsafe { lib.get::<extern "C" fn() -> *const c_char>("log_dump") }.unwrap();
                let text = unsafe { std::ffi::CStr::from_ptr(dump()) }
                    .to_string_lossy()
                    .into_owned();
                out.push_str(&format!("log: {text}\n"));
            }
            "threads" => {
                // threads N HANDLE FUNC: N threads call FUNC at once.
                let n: usize = w[1].parse().unwrap();
                let lib = slots[lib_of(&slots, w[2]).unwrap()].libs.last().unwrap();
                let f = *unsafe { lib.get::<extern "C" fn() -> c_int>(w[3]) }.unwrap();
                let barrier = std::sync::Barrier::new(n);
                let sum: c_int = std::thread::scope(|s| {
                    let ts: Vec<_> = (0..n)
                        .map(|_| {
                            s.spawn(|| {
                                barrier.wait();
                                f()
                            })
                        })
                        .collect();
                    ts.into_iter().map(|t| t.join().unwrap()).sum()
                });
                out.push_str(&format!("threads {}: {sum}\n", w[3]));
            }
            "pre" => {
                // pre N: N threads that wait for a function from "prerun".
                let n: usize = w[1].parse().unwrap();
                for _ in 0..n {
                    let (tx, rx) = std::sync::mpsc::channel::<extern "C" fn() -> c_int>();
                    waiting.push((tx, std::thread::spawn(move || rx.recv().unwrap()())));
                }
                out.push_str(&format!("pre: {n} threads\n"));
            }
            "prerun" => {
                let lib = slots[lib_of(&slots, w[1]).unwrap()].libs.last().unwrap();
                let f = *unsafe { lib.get::<extern "C" fn() -> c_int>(w[2]) }.unwrap();
                let sum: c_int = waiting
                    .drain(..)
                    .map(|(tx, t)| {
                        tx.send(f).unwrap();
                        t.join().unwrap()
                    })
                    .sum();
                out.push_str(&format!("prerun {}: {sum}\n", w[2]));
            }
            "sameaddr" => {
                // sameaddr HANDLE SYM FUNC: does the symbol's address equal FUNC()?
                let lib = slots[lib_of(&slots, w[1]).unwrap()].libs.last().unwrap();
                let p = unsafe { lib.get::<*mut c_void>(w[2]) }.map(|s| *s).ok();
                let f = unsafe { lib.get::<extern "C" fn() -> *mut c_void>(w[3]) }
                    .map(|s| *s)
                    .ok();
                let same = matches!((p, f), (Some(p), Some(f)) if p == f());
                out.push_str(&format!(
                    "sameaddr {}: {}\n",
                    w[2],
                    if same { "yes" } else { "no" }
                ));
            }
            "abs" => {
                let lib = slots[lib_of(&slots, w[1]).unwrap()].libs.last().unwrap();
                match unsafe { lib.get::<*mut c_void>(w[2]) } {
                    Ok(p) => out.push_str(&format!("abs {}: {:p}\n", w[2], *p)),
                    Err(e) => out.push_str(&format!("abs {}: NULL ({e})\n", w[2])),
                }
            }
            other => panic!("the Rust API runner does not know `{other}`"),
        }
    }
    // Keep every library the script left open, as the driver process does.
    for s in slots {
        std::mem::forget(s.libs);
    }
    out
}

/// Replace the main program's path in error messages, which differs
/// between the driver and the test binary.
fn normalise(text: &str, main: &str) -> String {
    text.replace(main, "<main>")
}

/// Assert that glibc's driver output and the Rust API's agree, apart from
/// the main program's name.
pub fn assert_same(glibc: &str, api: &str, script: &[&str]) {
    let driver = testkit::driver().to_string_lossy().into_owned();
    let me = std::env::current_exe()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let (g, a) = (normalise(glibc, &driver), normalise(api, &me));
    assert_eq!(
        g, a,
        "glibc and the Rust API disagree on {script:?}\n--- glibc\n{g}\n--- Rust API\n{a}"
    );
}
