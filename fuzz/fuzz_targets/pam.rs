#![no_main]

use libfuzzer_sys::fuzz_target;
use secmon::model::Event;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut event = Event::default();
    let _ = secmon::parse::pam::parse(&text, &mut event);
});
