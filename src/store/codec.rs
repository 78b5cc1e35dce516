//! Event encoding in the `events` table: one format byte, then the body.
//!
//! Format 1 is JSON. The format byte lets a later, more compact encoding be
//! read side by side with this one.

use crate::model::Event;

const FORMAT_JSON: u8 = 1;

pub fn encode(event: &Event, out: &mut Vec<u8>) {
    out.push(FORMAT_JSON);
    // Serializing plain data with string keys into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, event).is_err() {
        out.truncate(1);
    }
}

pub fn decode(seq: u64, bytes: &[u8]) -> super::Result<Event> {
    let corrupt = |reason: String| super::Error::Corrupt { seq, reason };
    match bytes.split_first() {
        Some((&FORMAT_JSON, body)) => {
            serde_json::from_slice(body).map_err(|e| corrupt(e.to_string()))
        }
        Some((format, _)) => Err(corrupt(format!("unknown format {format}"))),
        None => Err(corrupt("empty record".to_owned())),
    }
}
