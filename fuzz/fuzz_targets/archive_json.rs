//! Fuzz target `archive_json`: see `ferry_fuzz::archive_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::archive_json(data));
