#![no_main]

// See dynload::fuzzing::version_tables for what is fed, and README.md, "Fuzzing".
libfuzzer_sys::fuzz_target!(|data: &[u8]| dynload::fuzzing::version_tables(data));
