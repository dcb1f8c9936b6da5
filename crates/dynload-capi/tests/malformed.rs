//! Damage glibc does not check — it would crash, or map memory that faults
//! later — is refused by dynload with a message naming the file and the
//! problem, before any of the object's code runs, with nothing left
//! mapped; the process goes on. (Damage glibc does check is in the shared
//! scenarios, compared with glibc.)

use testkit::damage::{phdr_of, phdrs_of, put_u64, retype_relocation, variant};
use testkit::{run_driver, Lib, Loader, Set};

#[test]
fn damage_glibc_does_not_check_is_refused() {
    let set = Set::build(
        "capi-bad-body",
        &[
            Lib::node("good", 1).no_log(),
            Lib::src("tls", "tls.c").no_log(),
        ],
    );
    let good = set.path("good");
    let tls = set.path("tls");
    const PT_TLS: u32 = 7;
    let d = &set.dir;
    let cases = [
        (
            variant(&good, d, "load-past-eof", |b| {
                let o = phdr_of(b, 1);
                let len = b.len() as u64;
                put_u64(b, o + 32, len * 4);
                put_u64(b, o + 40, len * 4);
            }),
            "ELF load command extends beyond the end of the file",
        ),
        (
            variant(&good, d, "dyn-outside", |b| {
                let o = phdr_of(b, 2);
                put_u64(b, o + 16, 1 << 40);
            }),
            "dynamic section at 0x",
        ),
        (
            variant(&good, d, "unaligned", |b| {
                let o = phdr_of(b, 1);
                let off = u64::from_le_bytes(b[o + 8..o + 16].try_into().unwrap());
                put_u64(b, o + 8, off + 1);
            }),
            "ELF load command address/offset not page-aligned",
        ),
        (
            variant(&good, d, "unordered", |b| {
                // Swap the first two PT_LOAD headers.
                let l = phdrs_of(b, 1);
                let (x, y) = (b[l[0]..l[0] + 56].to_vec(), b[l[1]..l[1] + 56].to_vec());
                b[l[0]..l[0] + 56].copy_from_slice(&y);
                b[l[1]..l[1] + 56].copy_from_slice(&x);
            }),
            "ELF load commands are not in ascending order or overlap",
        ),
        (
            variant(&good, d, "copyreloc", |b| retype_relocation(b, 6, 5)),
            "R_X86_64_COPY relocation in a shared object",
        ),
        (
            variant(&good, d, "badreloc", |b| retype_relocation(b, 6, 0x99)),
            "unexpected reloc type 0x99",
        ),
        (
            // A DTPMOD64 against the object itself, which has no TLS.
            variant(&good, d, "tlsreloc", |b| retype_relocation(b, 8, 16)),
            "TLS reference to",
        ),
        (
            variant(&tls, d, "tls-image-outside", |b| {
                let o = phdr_of(b, PT_TLS);
                put_u64(b, o + 16, 1 << 40);
            }),
            "PT_TLS initialisation image lies outside the loaded segments",
        ),
        (
            variant(&tls, d, "tls-filesz", |b| {
                let o = phdr_of(b, PT_TLS);
                put_u64(b, o + 32, 64);
                put_u64(b, o + 40, 8);
            }),
            "invalid PT_TLS segment",
        ),
        (
            variant(&tls, d, "tls-align", |b| {
                let o = phdr_of(b, PT_TLS);
                put_u64(b, o + 48, 3);
            }),
            "invalid PT_TLS segment",
        ),
    ];
    let mut script: Vec<String> = cases.iter().map(|(p, _)| format!("open {p} NOW")).collect();
    script.push("maps capi-bad-body/".into());
    script.push("open $good NOW".into());
    script.push("call h1 id_good".into());
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    let out = run_driver(&set, &script, Loader::Dynload, &[]).stdout;
    for (path, want) in &cases {
        assert!(
            out.contains(&format!("({path}: {want}")),
            "missing {want:?} for {path} in:\n{out}"
        );
    }
    assert!(out.contains("maps capi-bad-body/: 0\n"), "{out}");
    assert!(out.contains("call id_good: 1"), "{out}");
}
