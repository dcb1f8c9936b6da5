//! Malformed and unloadable files: each is rejected with glibc's message
//! (or, where glibc would crash or accept something dynload refuses, with
//! dynload's documented one), nothing stays mapped, and the process goes on.

use std::path::Path;
use testkit::{compare, run, run_driver, Lib, Loader, Set};

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}
fn put_u64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

/// Offset of the first program header of `kind`.
fn phdr_of(b: &[u8], kind: u32) -> usize {
    let phoff = u64_at(b, 32) as usize;
    (0..u16_at(b, 56) as usize)
        .map(|i| phoff + 56 * i)
        .find(|&o| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) == kind)
        .expect("program header")
}

fn variant(set: &Set, name: &str, f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut bytes = std::fs::read(set.path("good")).unwrap();
    f(&mut bytes);
    let p = set.dir.join(format!("{name}.so"));
    std::fs::write(&p, bytes).unwrap();
    p.to_string_lossy().into_owned()
}

fn good_set(name: &str) -> Set {
    Set::build(name, &[Lib::node("good", 1).no_log()])
}

#[test]
fn header_damage_gets_glibcs_messages() {
    let set = good_set("capi-bad-header");
    let truncated = variant(&set, "truncated", |b| b.truncate(40));
    let empty = variant(&set, "empty", |b| b.clear());
    let magic = variant(&set, "magic", |b| b[1] = b'X');
    let class = variant(&set, "class32", |b| b[4] = 1);
    let data = variant(&set, "bigendian", |b| b[5] = 2);
    let machine = variant(&set, "machine", |b| {
        b[18..20].copy_from_slice(&3u16.to_le_bytes())
    });
    let etype = variant(&set, "etype", |b| {
        b[16..18].copy_from_slice(&1u16.to_le_bytes())
    });
    let phentsize = variant(&set, "phentsize", |b| {
        b[54..56].copy_from_slice(&32u16.to_le_bytes())
    });
    let phoff = variant(&set, "phoff", |b| put_u64(b, 32, 1 << 30));
    let text = set.dir.join("script.so");
    std::fs::write(&text, "/* GNU ld script\n   Use the shared library, but some functions are only in\n   the static library.  */\nGROUP ( /lib/x86_64-linux-gnu/libc.so.6 )\n").unwrap();
    let cases = [
        &truncated,
        &empty,
        &magic,
        &class,
        &data,
        &machine,
        &etype,
        &phentsize,
        &phoff,
        &text.to_string_lossy().into_owned(),
    ];
    let mut script: Vec<String> = cases.iter().map(|p| format!("open {p} NOW")).collect();
    script.push("maps capi-bad-header".into());
    script.push("open $good NOW".into());
    script.push("call h1 id_good".into());
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    let (g, _) = compare(&set, &script);
    for want in [
        "truncated.so: file too short",
        "empty.so: file too short",
        "magic.so: invalid ELF header",
        "class32.so: wrong ELF class: ELFCLASS32",
        "bigendian.so: ELF file data encoding not little-endian",
        "machine.so: cannot open shared object file: No such file or directory",
        "etype.so: only ET_DYN and ET_EXEC can be loaded",
        "phentsize.so: ELF file's phentsize not the expected size",
        "phoff.so: cannot read file data",
        "script.so: invalid ELF header",
        "maps capi-bad-header: 0\n",
        "call id_good: 1",
    ] {
        assert!(
            g.stdout.contains(want),
            "missing {want:?} in:\n{}",
            g.stdout
        );
    }
}

#[test]
fn executables_and_nodlopen_objects_are_refused_like_glibc() {
    let set = good_set("capi-exec");
    let exe = set.dir.join("nopie");
    let pie = set.dir.join("pie");
    let main = set.dir.join("main.c");
    std::fs::write(&main, "int main(void) { return 0; }\n").unwrap();
    run(std::process::Command::new("gcc")
        .args(["-no-pie", "-o"])
        .arg(&exe)
        .arg(&main));
    run(std::process::Command::new("gcc")
        .args(["-pie", "-fPIE", "-o"])
        .arg(&pie)
        .arg(&main));
    set.compile(&Lib::node("noopen", 1).no_log().flag("-Wl,-z,nodlopen"));
    let script = [
        format!("open {} NOW", exe.display()),
        format!("open {} NOW", pie.display()),
        "open $noopen NOW".into(),
        "maps capi-exec".into(),
    ];
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    let (g, _) = compare(&set, &script);
    assert!(
        g.stdout
            .contains("nopie: cannot dynamically load executable)"),
        "{}",
        g.stdout
    );
    assert!(
        g.stdout
            .contains("pie: cannot dynamically load position-independent executable)"),
        "{}",
        g.stdout
    );
    assert!(
        g.stdout
            .contains("libcapi_exec_noopen.so: shared object cannot be dlopen()ed)"),
        "{}",
        g.stdout
    );
    assert!(g.stdout.ends_with("maps capi-exec: 0\n"), "{}", g.stdout);
}

/// Cases glibc would crash on or accept; dynload refuses them cleanly.
#[test]
fn damage_glibc_does_not_check_is_refused() {
    let set = good_set("capi-bad-body");
    let load_past_eof = variant(&set, "load-past-eof", |b| {
        let o = phdr_of(b, 1);
        let len = b.len() as u64;
        put_u64(b, o + 32, len * 4); // p_filesz
        put_u64(b, o + 40, len * 4); // p_memsz
    });
    let dyn_outside = variant(&set, "dyn-outside", |b| {
        let o = phdr_of(b, 2); // PT_DYNAMIC
        put_u64(b, o + 16, 1 << 40); // p_vaddr
    });
    let unaligned = variant(&set, "unaligned", |b| {
        let o = phdr_of(b, 1);
        let off = u64_at(b, o + 8);
        put_u64(b, o + 8, off + 1);
    });
    let script = [
        format!("open {load_past_eof} NOW"),
        format!("open {dyn_outside} NOW"),
        format!("open {unaligned} NOW"),
        "maps capi-bad-body".into(),
        "open $good NOW".into(),
        "call h1 id_good".into(),
    ];
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    let d = run_driver(&set, &script, Loader::Dynload, &[]);
    let out = &d.stdout;
    assert!(
        out.contains("load-past-eof.so: ELF load command extends beyond the end of the file)"),
        "{out}"
    );
    assert!(
        out.contains("dyn-outside.so: dynamic section at 0x"),
        "{out}"
    );
    assert!(
        out.contains("unaligned.so: ELF load command address/offset not page-aligned)"),
        "{out}"
    );
    assert!(out.contains("maps capi-bad-body: 0\n"), "{out}");
    assert!(out.contains("call id_good: 1"), "{out}");
    assert!(Path::new(&load_past_eof).exists());
}
