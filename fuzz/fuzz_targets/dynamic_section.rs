#![no_main]

// See dynload::fuzzing::dynamic_section for what is fed, and README.md, "Fuzzing".
libfuzzer_sys::fuzz_target!(|data: &[u8]| dynload::fuzzing::dynamic_section(data));
