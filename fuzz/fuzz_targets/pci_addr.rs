#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nodeprep_fuzz::pci_addr(data));
