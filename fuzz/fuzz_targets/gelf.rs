#![no_main]

use libfuzzer_sys::fuzz_target;
use secmon::ingest::gelf::Chunks;
use secmon::parse::{ParseOptions, gelf};

// Datagrams through chunk reassembly and decompression, then the parser.
fuzz_target!(|data: &[u8]| {
    let mut chunks = Chunks::default();
    let opts = ParseOptions { max_message_bytes: 1024, year_hint: None };
    let now = chrono::DateTime::from_timestamp(0, 0).unwrap_or_default();
    for datagram in data.split(|b| *b == 0xff) {
        if let Ok(Some(payload)) = chunks.datagram(datagram) {
            let event = gelf::parse(&payload, None, now, &opts);
            assert!(event.original.is_some());
        }
    }
});
