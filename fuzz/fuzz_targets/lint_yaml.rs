#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nodeprep_fuzz::lint_yaml(data));
