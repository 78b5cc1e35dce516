//! Event blocks: how events sit in the `events` table.
//!
//! Events are stored in blocks of up to [`BLOCK_EVENTS`] consecutive seqs,
//! keyed by the block's LAST seq, so the block holding seq `s` is the first
//! key `>= s`. A block is a small uncompressed header followed by the
//! events as JSON lines, zstd-compressed together: neighbouring log lines
//! share most of their bytes, so a block compresses far better than single
//! events would.
//!
//! ```text
//! [format u8 = 2][first_seq u64][count u32][min_ts i64][max_ts i64][max_received i64][zstd(JSON lines)]
//! ```
//! Times are microseconds since the epoch, little-endian integers.

use crate::model::Event;

/// At most this many events per block.
pub const BLOCK_EVENTS: usize = 64;
/// A block is closed once its uncompressed JSON reaches this size.
pub const BLOCK_BYTES: usize = 32 * 1024;

const FORMAT_ZSTD_JSON_LINES: u8 = 2;
const HEADER_LEN: usize = 1 + 8 + 4 + 8 + 8 + 8;
const ZSTD_LEVEL: i32 = 3;

/// What a block holds, readable without decompressing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    pub first_seq: u64,
    pub count: u32,
    /// Lowest and highest `@timestamp` in the block (µs).
    pub min_ts: i64,
    pub max_ts: i64,
    /// Latest receive time in the block (µs); retention by age uses it.
    pub max_received: i64,
}

impl BlockHeader {
    pub fn last_seq(&self) -> u64 {
        self.first_seq + u64::from(self.count) - 1
    }
}

fn corrupt(seq: u64, reason: impl Into<String>) -> super::Error {
    super::Error::Corrupt {
        seq,
        reason: reason.into(),
    }
}

/// Splits `events` (consecutive seqs, already assigned) into block-sized runs.
pub fn blocks(events: &[Event]) -> impl Iterator<Item = &[Event]> {
    let mut rest = events;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut n = 0;
        while n < rest.len() && n < BLOCK_EVENTS && bytes < BLOCK_BYTES {
            // A cheap size estimate; the exact size does not matter.
            bytes += rest[n].message.len() + rest[n].original.as_ref().map_or(0, String::len) + 128;
            n += 1;
        }
        let (block, tail) = rest.split_at(n);
        rest = tail;
        Some(block)
    })
}

/// Encodes one block of events with consecutive seqs into `out`.
pub fn encode_block(
    events: &[Event],
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> super::Result<BlockHeader> {
    let first_seq = events.first().map_or(0, |e| e.seq);
    scratch.clear();
    for e in events {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_writer(&mut *scratch, e).map_err(|err| corrupt(e.seq, err.to_string()))?;
        scratch.push(b'\n');
    }
    let micros = |e: &Event| e.timestamp.timestamp_micros();
    let header = BlockHeader {
        first_seq,
        count: events.len() as u32,
        min_ts: events.iter().map(micros).min().unwrap_or(0),
        max_ts: events.iter().map(micros).max().unwrap_or(0),
        max_received: events
            .iter()
            .map(|e| e.received_at.timestamp_micros())
            .max()
            .unwrap_or(0),
    };
    out.clear();
    out.push(FORMAT_ZSTD_JSON_LINES);
    out.extend_from_slice(&header.first_seq.to_le_bytes());
    out.extend_from_slice(&header.count.to_le_bytes());
    out.extend_from_slice(&header.min_ts.to_le_bytes());
    out.extend_from_slice(&header.max_ts.to_le_bytes());
    out.extend_from_slice(&header.max_received.to_le_bytes());
    let compressed =
        zstd::bulk::compress(scratch, ZSTD_LEVEL).map_err(|e| corrupt(first_seq, e.to_string()))?;
    out.extend_from_slice(&compressed);
    Ok(header)
}

/// Reads the header of a stored block (`key` is its last seq, for errors).
pub fn decode_header(key: u64, bytes: &[u8]) -> super::Result<BlockHeader> {
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(key, "block shorter than its header"));
    }
    if bytes[0] != FORMAT_ZSTD_JSON_LINES {
        return Err(corrupt(key, format!("unknown block format {}", bytes[0])));
    }
    let u64_at = |at: usize| {
        bytes[at..at + 8]
            .try_into()
            .map(u64::from_le_bytes)
            .unwrap_or(0)
    };
    let i64_at = |at: usize| {
        bytes[at..at + 8]
            .try_into()
            .map(i64::from_le_bytes)
            .unwrap_or(0)
    };
    let count = bytes[9..13].try_into().map(u32::from_le_bytes).unwrap_or(0);
    let header = BlockHeader {
        first_seq: u64_at(1),
        count,
        min_ts: i64_at(13),
        max_ts: i64_at(21),
        max_received: i64_at(29),
    };
    if header.count == 0 || header.last_seq() != key {
        return Err(corrupt(key, "block header does not match its key"));
    }
    Ok(header)
}

/// Decodes every event of a stored block.
pub fn decode_block(key: u64, bytes: &[u8]) -> super::Result<Vec<Event>> {
    let header = decode_header(key, bytes)?;
    let lines = decompress(key, bytes)?;
    let mut events = Vec::with_capacity(header.count as usize);
    for (i, line) in lines
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let seq = header.first_seq + i as u64;
        events.push(serde_json::from_slice(line).map_err(|e| corrupt(seq, e.to_string()))?);
    }
    if events.len() != header.count as usize {
        return Err(corrupt(
            key,
            format!(
                "block holds {} events, header says {}",
                events.len(),
                header.count
            ),
        ));
    }
    Ok(events)
}

/// Decodes the one event with `seq` from a stored block.
pub fn decode_one(key: u64, bytes: &[u8], seq: u64) -> super::Result<Option<Event>> {
    let header = decode_header(key, bytes)?;
    if seq < header.first_seq || seq > header.last_seq() {
        return Ok(None);
    }
    let lines = decompress(key, bytes)?;
    let index = (seq - header.first_seq) as usize;
    match lines.split(|&b| b == b'\n').nth(index) {
        Some(line) => serde_json::from_slice(line)
            .map(Some)
            .map_err(|e| corrupt(seq, e.to_string())),
        None => Err(corrupt(seq, "event missing from its block")),
    }
}

fn decompress(key: u64, bytes: &[u8]) -> super::Result<Vec<u8>> {
    let body = &bytes[HEADER_LEN..];
    let capacity = zstd::bulk::Decompressor::upper_bound(body).unwrap_or(BLOCK_BYTES * 8);
    zstd::bulk::decompress(body, capacity)
        .map_err(|e| corrupt(key, format!("cannot decompress: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn events(first: u64, n: usize) -> Vec<Event> {
        (0..n as u64)
            .map(|i| Event {
                seq: first + i,
                timestamp: Utc
                    .timestamp_opt(1_700_000_000 + (i as i64 % 7), 0)
                    .unwrap(),
                received_at: Utc.timestamp_opt(1_700_000_100 + i as i64, 0).unwrap(),
                message: format!("Failed password for root from 10.0.0.{i} port 22 ssh2"),
                ..Event::default()
            })
            .collect()
    }

    #[test]
    fn round_trip_and_header() {
        let evs = events(10, 20);
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        let header = encode_block(&evs, &mut scratch, &mut out).unwrap();
        assert_eq!(header.first_seq, 10);
        assert_eq!(header.last_seq(), 29);
        assert_eq!(header.min_ts, 1_700_000_000_000_000);
        assert_eq!(header.max_ts, 1_700_000_006_000_000);
        assert_eq!(decode_header(29, &out).unwrap(), header);
        assert_eq!(decode_block(29, &out).unwrap(), evs);
        assert_eq!(decode_one(29, &out, 15).unwrap().unwrap(), evs[5]);
        assert_eq!(decode_one(29, &out, 30).unwrap(), None);
        // Similar lines compress well.
        assert!(
            out.len() * 4 < scratch.len(),
            "{} vs {}",
            out.len(),
            scratch.len()
        );
    }

    #[test]
    fn blocks_respect_count_and_size() {
        let evs = events(1, 200);
        let sizes: Vec<_> = blocks(&evs).map(<[Event]>::len).collect();
        assert_eq!(sizes, [64, 64, 64, 8]);
        let mut big = events(1, 3);
        for e in &mut big {
            e.message = "x".repeat(BLOCK_BYTES);
        }
        assert_eq!(blocks(&big).count(), 3);
    }

    #[test]
    fn damaged_blocks_are_errors_not_panics() {
        let evs = events(1, 5);
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        encode_block(&evs, &mut scratch, &mut out).unwrap();
        assert!(decode_header(5, &out[..10]).is_err());
        assert!(decode_header(6, &out).is_err(), "key must match the header");
        let mut garbled = out.clone();
        let n = garbled.len();
        garbled[n - 5..].fill(0xff);
        assert!(decode_block(5, &garbled).is_err());
        let mut wrong_format = out;
        wrong_format[0] = 9;
        assert!(
            decode_block(5, &wrong_format)
                .unwrap_err()
                .to_string()
                .contains("unknown block format 9")
        );
    }
}
