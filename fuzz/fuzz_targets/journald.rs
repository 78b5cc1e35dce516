#![no_main]

use libfuzzer_sys::fuzz_target;
use secmon::parse::{ParseOptions, journald};

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data) {
        let opts = ParseOptions { max_message_bytes: 1024, year_hint: None };
        let now = chrono::DateTime::from_timestamp(0, 0).unwrap_or_default();
        let event = journald::parse(&entry, now, &opts);
        assert!(event.original.is_some());
    }
});
