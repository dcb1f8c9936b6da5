#![no_main]

// See dynload::fuzzing::ld_so_cache for what is fed, and README.md, "Fuzzing".
libfuzzer_sys::fuzz_target!(|data: &[u8]| dynload::fuzzing::ld_so_cache(data));
