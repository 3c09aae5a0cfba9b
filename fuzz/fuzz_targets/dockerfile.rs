//! Fuzz target `dockerfile`: see `ferry_fuzz::dockerfile`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::dockerfile(data));
