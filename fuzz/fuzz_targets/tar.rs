//! Fuzz target `tar`: see `ferry_fuzz::tar`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::tar(data));
