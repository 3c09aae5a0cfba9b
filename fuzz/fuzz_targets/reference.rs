//! Fuzz target `reference`: see `ferry_fuzz::reference`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::reference(data));
