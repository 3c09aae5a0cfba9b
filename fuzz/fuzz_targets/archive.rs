//! Fuzz target `archive`: see `ferry_fuzz::archive`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::archive(data));
