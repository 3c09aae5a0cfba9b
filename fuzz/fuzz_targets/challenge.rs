//! Fuzz target `challenge`: see `ferry_fuzz::challenge`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::challenge(data));
