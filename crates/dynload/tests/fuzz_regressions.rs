//! Inputs the fuzz targets (`fuzz/`, `scripts/fuzz.sh`) found to crash the
//! loader's parsers, fed again to the same `dynload::fuzzing` functions.
//! Each must now be refused (or parsed) without a panic.
//!
//! Hand-minimised inputs are constants below; the fuzzer's own minimised
//! artifacts are files under `fixtures/fuzz/`, named after their target
//! (`TARGET-what`), and are all replayed by `fuzzer_artifacts`.

use dynload::fuzzing;

/// Little-endian bytes of `words`.
fn le(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// A raw `dynamic_section` image: the RAW_DYNAMIC header (flags 0, no tail,
/// the dynamic section at 16), then `dynamic` (tag, value) pairs, then
/// `tables`; table offsets count from the start of the image.
fn raw_dynamic(dynamic: &[(u64, u64)], tables: &[u8]) -> Vec<u8> {
    let size = 16 * (dynamic.len() + 1);
    let mut img = le(&[0, 16 | (size as u64) << 32]);
    for &(tag, val) in dynamic {
        img.extend(le(&[tag, val]));
    }
    img.extend(le(&[0, 0])); // DT_NULL
    img.extend_from_slice(tables);
    img
}

const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_STRSZ: u64 = 10;
const DT_VERSYM: u64 = 0x6fff_fff0;
const DT_GNU_HASH: u64 = 0x6fff_fef5;

/// A GNU hash table that hashes no symbol (no buckets) makes the symbol
/// count come from the layout: the symbols run up to the nearest table
/// above them. A table address that wraps around the address space when
/// the load bias is added (here DT_VERSYM = -1) was taken as "above" by
/// its file address, but lay below in memory: `end - start` overflowed
/// (`attempt to subtract with overflow` in `count_by_layout`).
#[test]
fn gnu_hash_without_buckets_and_a_table_address_that_wraps() {
    let tables_at = 16 + 16 * 6; // after the header and six entries
                                 // nbuckets 0, symoffset 1; one Bloom word, shift 0.
    let mut tables = le(&[1 << 32, 1]);
    tables.extend(le(&[!0])); // the Bloom word
    tables.extend([0u8; 8]); // the string table: one empty string
    let input = raw_dynamic(
        &[
            (DT_GNU_HASH, tables_at),
            (DT_SYMTAB, tables_at + 24),
            (DT_STRTAB, tables_at + 24),
            (DT_STRSZ, 1),
            (DT_VERSYM, u64::MAX),
        ],
        &tables,
    );
    fuzzing::dynamic_section(&input);
}

/// The GNU hash (`dl_new_hash`).
fn gnu_hash(name: &[u8]) -> u32 {
    name.iter()
        .fold(5381u32, |h, &c| h.wrapping_mul(33).wrapping_add(c.into()))
}

/// A GNU hash table whose highest bucket is symbol index 2^32 - 1, where
/// its chain ends: the symbol count, one more, overflowed (`attempt to add
/// with overflow` in `parse_gnu`; without overflow checks it wrapped to 0,
/// and a lookup of a name whose hash the chain holds indexed symbol 2^32 -
/// 1 of an empty table: `symbol index 4294967295 out of range`). Found by
/// reading the code while writing the harness, not by the fuzzer.
#[test]
fn gnu_hash_chain_ending_at_the_last_symbol_index() {
    // RAW_TABLES header: flags, tail, DT_GNU_HASH 64, DT_HASH 0,
    // DT_SYMTAB 96, DT_STRTAB 96, DT_STRSZ 1, nothing else.
    let mut input: Vec<u8> = [0u32, 0, 64, 0, 96, 96, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    // nbuckets 1, symoffset 2^32 - 1, one Bloom word, shift 0.
    input.extend(le(&[1 | (0xffff_ffff << 32), 1]));
    input.extend(le(&[!0])); // the Bloom word: every name may be there
    input.extend(u32::MAX.to_le_bytes()); // bucket 0: symbol 2^32 - 1
    input.extend((gnu_hash(b"malloc") | 1).to_le_bytes()); // its chain word
    input.extend([0u8; 8]); // the string table
    fuzzing::hash_tables(&input);
    fuzzing::version_tables(&input);
    fuzzing::relocation_tables(&input);
}

/// A new-format ld.so.cache whose glibc-hwcaps extension section claims
/// 4 GiB of name offsets in a 72-byte file: one (empty) name was kept per
/// claimed offset, a billion of them — out of memory (libFuzzer's
/// `out-of-memory (used: 2211Mb; limit: 2048Mb)`).
#[test]
fn ld_so_cache_hwcaps_section_larger_than_the_file() {
    let mut cache = b"glibc-ld.so.cache1.1".to_vec();
    cache.extend(0u32.to_le_bytes()); // nlibs
    cache.extend(0u32.to_le_bytes()); // len_strings
    cache.extend([2, 0, 0, 0]); // little-endian, padding
    cache.extend(48u32.to_le_bytes()); // extension offset
    cache.extend([0; 12]);
    cache.extend(0xeaa4_2174u32.to_le_bytes()); // extension magic
    cache.extend(1u32.to_le_bytes()); // one section:
    cache.extend(1u32.to_le_bytes()); // glibc-hwcaps,
    cache.extend(0u32.to_le_bytes()); // flags,
    cache.extend(0u32.to_le_bytes()); // at offset 0,
    cache.extend(0xffff_fffcu32.to_le_bytes()); // 4 GiB long
    fuzzing::ld_so_cache(&cache);
}

/// Every fuzzer artifact under fixtures/fuzz/, to the target it crashed.
#[test]
fn fuzzer_artifacts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/fuzz");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures/fuzz") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let target = name.split('-').next().unwrap();
        let run: fn(&[u8]) = match target {
            "elf_header" => fuzzing::elf_header,
            "dynamic_section" => fuzzing::dynamic_section,
            "hash_tables" => fuzzing::hash_tables,
            "version_tables" => fuzzing::version_tables,
            "relocation_tables" => fuzzing::relocation_tables,
            "ld_so_cache" => fuzzing::ld_so_cache,
            _ => continue,
        };
        let data = std::fs::read(&path).unwrap();
        eprintln!("{name}: {} bytes", data.len());
        run(&data);
        seen += 1;
    }
    assert!(seen > 0, "no artifacts in {}", dir.display());
}
