#![no_main]

use libfuzzer_sys::fuzz_target;
use secmon::parse::{ParseOptions, RawRecord, parse};

fuzz_target!(|data: &[u8]| {
    let raw = RawRecord {
        bytes: data.to_vec(),
        source: "fuzz",
        peer: None,
        received_at: chrono::DateTime::from_timestamp(0, 0).unwrap_or_default(),
    };
    let opts = ParseOptions { max_message_bytes: 1024, year_hint: None };
    let event = parse(&raw, &opts);
    assert!(event.original.is_some());
});
