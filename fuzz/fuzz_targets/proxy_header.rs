#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| secmon_fuzz::parsers::proxy_header(data));
