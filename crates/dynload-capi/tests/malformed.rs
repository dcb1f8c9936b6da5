//! Damage glibc does not check — it would crash, or map memory that faults
//! later — is refused by dynload with a message naming the file and the
//! problem, before any of the object's code runs, with nothing left
//! mapped; the process goes on. (Damage glibc does check is in the shared
//! scenarios, compared with glibc.)

use testkit::damage::{
    dynamic_entry, file_offset, get_u64, phdr_of, phdrs_of, plt_relocations, put_u64,
    retype_relocation, variant,
};
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
    const DT_INIT: u64 = 12;
    const DT_FINI: u64 = 13;
    const DT_INIT_ARRAY: u64 = 25;
    const DT_INIT_ARRAYSZ: u64 = 27;
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
        (
            // Constructors and destructors must lie in code: DT_INIT, DT_FINI
            // and the arrays' entries pointed at the dynamic section (data).
            variant(&good, d, "init-in-data", |b| {
                let dynamic = get_u64(b, phdr_of(b, 2) + 16);
                let at = dynamic_entry(b, DT_INIT) + 8;
                put_u64(b, at, dynamic);
            }),
            "constructor or destructor at 0x",
        ),
        (
            variant(&good, d, "fini-in-data", |b| {
                let dynamic = get_u64(b, phdr_of(b, 2) + 16);
                let at = dynamic_entry(b, DT_FINI) + 8;
                put_u64(b, at, dynamic);
            }),
            "constructor or destructor at 0x",
        ),
        (
            // The array moved onto the dynamic section: its first word is
            // a tag (DT_NEEDED, 1), which is not 0 or -1, so it would be
            // called.
            variant(&good, d, "init-array-in-data", |b| {
                let dynamic = get_u64(b, phdr_of(b, 2) + 16);
                let at = dynamic_entry(b, DT_INIT_ARRAY) + 8;
                put_u64(b, at, dynamic);
                let at = dynamic_entry(b, DT_INIT_ARRAYSZ) + 8;
                put_u64(b, at, 8);
            }),
            "constructor or destructor at 0x1 is outside",
        ),
        (
            // The first RELATIVE entry (the head of .rela.dyn) made to
            // write at offset 1, in the read-only ELF header: offset 1 was
            // the one target the RELATIVE loop's empty starting window let
            // through unchecked.
            variant(&good, d, "relative-at-1", |b| {
                let (rela, _) = testkit::damage::section(b, ".rela.dyn");
                assert_eq!(get_u64(b, rela + 8) & 0xffff_ffff, 8, "not RELATIVE");
                put_u64(b, rela, 1);
            }),
            "relocation target 0x1 is outside the object's writable segments",
        ),
    ];
    assert_refused(&set, &cases, "NOW", "capi-bad-body/", ("good", "id_good"));
}

/// Open each damaged copy in `cases` with dynload in `mode`: each is
/// refused with its message, nothing under `mapped` stays mapped, and then
/// the undamaged `good` object opens and its `check` function returns 1.
fn assert_refused(
    set: &Set,
    cases: &[(String, &str)],
    mode: &str,
    mapped: &str,
    (good, check): (&str, &str),
) {
    let mut script: Vec<String> = cases
        .iter()
        .map(|(p, _)| format!("open {p} {mode}"))
        .collect();
    script.push(format!("maps {mapped}"));
    script.push(format!("open ${good} {mode}"));
    script.push(format!("call h1 {check}"));
    let script: Vec<&str> = script.iter().map(String::as_str).collect();
    let out = run_driver(set, &script, Loader::Dynload, &[]).stdout;
    for (path, want) in cases {
        assert!(
            out.contains(&format!("({path}: {want}")),
            "missing {want:?} for {path} in:\n{out}"
        );
    }
    assert!(out.contains(&format!("maps {mapped}: 0\n")), "{out}");
    assert!(out.contains(&format!("call {check}: 1")), "{out}");
}

/// PLT slots left for lazy binding are rebased one by one, each checked:
/// its word in a writable segment and aligned, the stub it points to in the
/// object's code. The damage is in the last of 34 slots, after slots that
/// passed the same checks.
#[test]
fn lazily_bound_plt_slots_are_checked_to_the_last() {
    let set = Set::build(
        "capi-bad-plt",
        &[
            Lib::src("callee", "lazy_callee.c").no_log(),
            Lib::src("caller", "lazy_caller.c").dep("callee").no_log(),
        ],
    );
    let caller = set.path("caller");
    let d = &set.dir;
    let last = |b: &[u8]| {
        let slots = plt_relocations(b);
        assert!(slots.len() > 30, "{} PLT slots", slots.len());
        *slots.last().unwrap()
    };
    let cases = [
        (
            variant(&caller, d, "plt-stub-outside", |b| {
                let slot = file_offset(b, get_u64(b, last(b)));
                put_u64(b, slot, 0x10);
            }),
            "PLT slot does not point into the object's code",
        ),
        (
            variant(&caller, d, "plt-target-outside", |b| {
                let e = last(b);
                put_u64(b, e, 1 << 40);
            }),
            "relocation target 0x10000000000 is outside the object's writable segments",
        ),
        (
            variant(&caller, d, "plt-unaligned", |b| {
                let e = last(b);
                let at = get_u64(b, e);
                put_u64(b, e, at + 1);
            }),
            "PLT slot (R_X86_64_JUMP_SLOT) at an unaligned address",
        ),
    ];
    assert_refused(
        &set,
        &cases,
        "LAZY",
        "capi-bad-plt/plt-",
        ("caller", "call_all_slots"),
    );
}
