//! `first-load` for the dlopen-rs crate (same arguments, same output), in
//! its own program because dlopen-rs registers itself with glibc from a
//! constructor.

use dlopen_rs::{ElfLibrary, OpenFlags};
use dynload_bench::{objects_at, Footprint};

#[inline(never)]
#[no_mangle]
pub fn measured_load(path: &str, flags: OpenFlags) -> Option<ElfLibrary> {
    match ElfLibrary::dlopen(path, flags) {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("dlopen-rs: cannot load {path}: {e}");
            None
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: first-load-dlopen-rs dlopen-rs now|lazy PATH|DIR [WARM_PATH]";
    let (mode, path) = match &args[1..] {
        [_, m, p, ..] => (m.as_str(), p.as_str()),
        _ => panic!("{usage}"),
    };
    let flags = match mode {
        "now" => OpenFlags::RTLD_NOW,
        "lazy" => OpenFlags::RTLD_LAZY,
        _ => panic!("{usage}"),
    };
    let _warm = args
        .get(4)
        .map(|w| match ElfLibrary::dlopen(w.as_str(), flags) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("dlopen-rs: cannot load the warm-up object {w}: {e}");
                std::process::exit(1);
            }
        });
    let before = Footprint::now();
    let start = std::time::Instant::now();
    let targets = objects_at(path);
    let mut libs = Vec::new();
    for target in &targets {
        match measured_load(target, flags) {
            Some(lib) => libs.push(lib),
            None => std::process::exit(1),
        }
    }
    let ns = start.elapsed().as_nanos();
    let grown = Footprint::now().since(before);
    println!(
        "{{\"loader\":\"dlopen-rs\",\"ns\":{ns},\"rss_kb\":{},\"mappings\":{},\"heap_bytes\":{},\"objects\":{}}}",
        grown.rss_kb,
        grown.mappings,
        grown.heap_bytes,
        targets.len()
    );
    std::mem::forget(libs);
}
