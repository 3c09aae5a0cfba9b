//! Fuzz target `docker_config`: see `ferry_fuzz::docker_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::docker_config(data));
