#![no_main]

// See dynload::fuzzing::elf_header for what is fed, and README.md, "Fuzzing".
libfuzzer_sys::fuzz_target!(|data: &[u8]| dynload::fuzzing::elf_header(data));
