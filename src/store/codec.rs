//! Event blocks: how events sit in the `events` table.
//!
//! Events are stored in blocks of consecutive seqs, keyed by the block's
//! LAST seq, so the block holding seq `s` is the first key `>= s`. A block
//! is a small uncompressed header followed by its events, zstd-compressed
//! together: neighbouring log lines share most of their bytes, so a block
//! compresses far better than single events would.
//!
//! ```text
//! [format u8][first_seq u64][count u32][min_ts i64][max_ts i64][max_received i64][zstd(body)]
//! ```
//! Times in the header are microseconds since the epoch, little-endian.
//!
//! The body of format 3 (written today) is columnar: each field of every
//! event of the block together (all the hosts, then all the users, ...),
//! which is what zstd compresses best. What can be derived is not stored:
//! the seq (the block's first seq plus the position), the id (the receive
//! time and the seq, see `event_id`), the message when it is the end of the
//! original line (its length only); times are deltas from the event
//! before. Format 2 (JSON lines, written before) is still read.
//!
//! Blocks are cut so that one compressed block fills most of one redb page
//! (4 KiB): a leaf page holds whole values, so a 2.7 KiB block left a third
//! of its page empty.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::model::Event;

/// At most this many events per block.
pub const BLOCK_EVENTS: usize = 1024;
/// At most this many bytes of uncompressed body per block (unless one event
/// is larger), which bounds what reading one event decompresses.
const BLOCK_BODY_BYTES: usize = 256 * 1024;
/// A block is accepted when its stored size is at most this: one 4 KiB
/// redb page less its leaf header, the key and some slack.
const BLOCK_BUDGET: usize = 4096 - 64;
/// What a block aims at: below the budget by about the spread of the
/// estimate, so that few blocks have to be cut again. (Two-page blocks
/// would store 8% less, but reading one event would decompress twice as
/// much; four pages, 17% less.)
const BLOCK_TARGET: usize = BLOCK_BUDGET * 15 / 16;

const FORMAT_ZSTD_JSON_LINES: u8 = 2;
const FORMAT_ZSTD_COLUMNS: u8 = 3;
const HEADER_LEN: usize = 1 + 8 + 4 + 8 + 8 + 8;
const ZSTD_LEVEL: i32 = 3;
/// A block never decompresses to more than this (a damaged frame could
/// claim anything); far above any event ingest lets through.
const MAX_DECOMPRESSED: usize = 256 * 1024 * 1024;

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

/// How many of the first `n` events (at least one, at most all, at most
/// [`BLOCK_EVENTS`]) fit [`BLOCK_BODY_BYTES`] of text.
fn within_body(events: &[Event], n: usize) -> usize {
    let mut text = 0;
    events
        .iter()
        .take(n.min(BLOCK_EVENTS))
        .take_while(|e| {
            text += e.message.len() + e.original.as_ref().map_or(0, String::len);
            text <= BLOCK_BODY_BYTES
        })
        .count()
        .max(1)
        .min(events.len())
}

/// Cuts events (consecutive seqs, already assigned) into blocks.
pub struct Encoder {
    columns: Columns,
    /// Stored bytes per 256 bytes of body in the last block: how much
    /// body to try next.
    stored_per_256: usize,
    /// zstd's context, made once: a new one for every block allocated and
    /// cleared its tables each time, which cost as much as compressing.
    compressor: Option<zstd::bulk::Compressor<'static>>,
    compressed: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            columns: Columns::default(),
            stored_per_256: 64,
            compressor: None,
            compressed: Vec::new(),
        }
    }
}

thread_local! {
    /// An encoder per thread that commits events (the writer's, in a
    /// node), kept from batch to batch.
    static ENCODER: std::cell::RefCell<Encoder> = std::cell::RefCell::new(Encoder::default());
}

thread_local! {
    /// zstd's decompression context per thread that reads blocks, kept:
    /// making and initialising one for every block was 13-15% of reading
    /// events back (`store_scan`).
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with this thread's [`Encoder`].
pub fn with_encoder<R>(f: impl FnOnce(&mut Encoder) -> R) -> R {
    ENCODER.with_borrow_mut(f)
}

impl Encoder {
    /// Encodes the next block from the start of `events` into `out`;
    /// returns how many events it took (at least one when there are any).
    ///
    /// Events are added until their columns are as large as the last
    /// block's compression ratio says fills a page. A block that comes out
    /// larger is cut and encoded again; one that comes out well short
    /// takes more events, once (blocks differ in how well they compress:
    /// without that, a page was a seventh empty on average).
    pub fn encode(
        &mut self,
        events: &[Event],
        out: &mut Vec<u8>,
    ) -> super::Result<(usize, BlockHeader)> {
        let limit = within_body(events, BLOCK_EVENTS);
        let want = BLOCK_TARGET * 256 / self.stored_per_256.max(1);
        self.columns.clear();
        let mut n = 0;
        while n < limit && (n == 0 || self.columns.len() < want) {
            self.put(events, n)?;
            n += 1;
        }
        let mut short: Option<(usize, BlockHeader, Vec<u8>)> = None;
        loop {
            let header = self.finish(&events[..n], out)?;
            let body = self.columns.body.len();
            if (out.len() <= BLOCK_BUDGET && body <= BLOCK_BODY_BYTES) || n == 1 {
                self.stored_per_256 = (out.len() * 256).div_ceil(body.max(1));
                if short.is_none() && out.len() < BLOCK_TARGET * 15 / 16 {
                    let more = within_body(events, n * (BLOCK_BUDGET * 31 / 32) / out.len());
                    if more > n {
                        short = Some((n, header, std::mem::take(out)));
                        for i in n..more {
                            self.put(events, i)?;
                        }
                        n = more;
                        continue;
                    }
                }
                return Ok((n, header));
            }
            if let Some((n, header, block)) = short.take() {
                *out = block;
                return Ok((n, header));
            }
            n = (n * BLOCK_TARGET / out.len())
                .min(n * BLOCK_BODY_BYTES / body)
                .clamp(1, n - 1);
            self.columns.clear();
            for i in 0..n {
                self.put(events, i)?;
            }
        }
    }

    /// Adds `events[i]` to the columns, its times relative to the event
    /// before it in the block.
    fn put(&mut self, events: &[Event], i: usize) -> super::Result<()> {
        let previous = match i.checked_sub(1) {
            Some(before) => (events[before].timestamp, events[before].received_at),
            None => (DateTime::<Utc>::UNIX_EPOCH, DateTime::<Utc>::UNIX_EPOCH),
        };
        self.columns.put(&events[i], previous)
    }

    /// The block of `events`, which are in the columns, into `out`.
    fn finish(&mut self, events: &[Event], out: &mut Vec<u8>) -> super::Result<BlockHeader> {
        let first_seq = events.first().map_or(0, |e| e.seq);
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
        out.push(FORMAT_ZSTD_COLUMNS);
        out.extend_from_slice(&header.first_seq.to_le_bytes());
        out.extend_from_slice(&header.count.to_le_bytes());
        out.extend_from_slice(&header.min_ts.to_le_bytes());
        out.extend_from_slice(&header.max_ts.to_le_bytes());
        out.extend_from_slice(&header.max_received.to_le_bytes());
        let body = self.columns.body();
        let failed = |e: std::io::Error| corrupt(first_seq, format!("cannot compress: {e}"));
        let compressor = match &mut self.compressor {
            Some(c) => c,
            None => self
                .compressor
                .insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(failed)?),
        };
        self.compressed.clear();
        self.compressed
            .reserve(zstd::zstd_safe::compress_bound(body.len()));
        compressor
            .compress_to_buffer(body, &mut self.compressed)
            .map_err(failed)?;
        out.extend_from_slice(&self.compressed);
        Ok(header)
    }
}

/// Which of an event's optional parts are there, one bit each.
mod has {
    pub const HOST_NAME: u32 = 1;
    pub const HOST_IP: u32 = 1 << 1;
    pub const SOURCE_IP: u32 = 1 << 2;
    pub const SOURCE_PORT: u32 = 1 << 3;
    pub const DESTINATION_IP: u32 = 1 << 4;
    pub const DESTINATION_PORT: u32 = 1 << 5;
    pub const USER_NAME: u32 = 1 << 6;
    pub const USER_TARGET_NAME: u32 = 1 << 7;
    pub const PROCESS_NAME: u32 = 1 << 8;
    pub const PROCESS_PID: u32 = 1 << 9;
    pub const PROCESS_COMMAND_LINE: u32 = 1 << 10;
    pub const PROCESS_EXECUTABLE: u32 = 1 << 11;
    pub const CATEGORY: u32 = 1 << 12;
    pub const ACTION: u32 = 1 << 13;
    pub const OUTCOME: u32 = 1 << 14;
    pub const SEVERITY: u32 = 1 << 15;
    pub const DATASET: u32 = 1 << 16;
    pub const ORIGINAL: u32 = 1 << 17;
    /// The message is the end of the original line: only its length is stored.
    pub const MESSAGE_IN_ORIGINAL: u32 = 1 << 18;
    pub const LABELS: u32 = 1 << 19;
    pub const FIELDS: u32 = 1 << 20;
    pub const TRUSTED: u32 = 1 << 21;
    /// The id is not the one the store derives: stored whole.
    pub const ID: u32 = 1 << 22;
}

/// The columns of a block body, in the order they are stored.
#[derive(Clone, Copy)]
enum Column {
    Presence,
    Times,
    Ids,
    Hosts,
    Addresses,
    Numbers,
    Users,
    Processes,
    Classes,
    Originals,
    Messages,
    Labels,
    Fields,
}

const COLUMNS: usize = Column::Fields as usize + 1;

#[derive(Default)]
struct Columns {
    columns: [Vec<u8>; COLUMNS],
    body: Vec<u8>,
}

impl Columns {
    fn clear(&mut self) {
        self.columns.iter_mut().for_each(Vec::clear);
    }

    /// The bytes of the columns so far (the body, less its lengths).
    fn len(&self) -> usize {
        self.columns.iter().map(Vec::len).sum()
    }

    fn col(&mut self, c: Column) -> &mut Vec<u8> {
        &mut self.columns[c as usize]
    }

    fn put(
        &mut self,
        e: &Event,
        (ts, received): (DateTime<Utc>, DateTime<Utc>),
    ) -> super::Result<()> {
        let message_in_original = e.message_ends_original();
        let derived_id = super::event_id(e, e.seq) == e.id;
        let bits = [
            (e.host_name.is_some(), has::HOST_NAME),
            (e.host_ip.is_some(), has::HOST_IP),
            (e.source_ip.is_some(), has::SOURCE_IP),
            (e.source_port.is_some(), has::SOURCE_PORT),
            (e.destination_ip.is_some(), has::DESTINATION_IP),
            (e.destination_port.is_some(), has::DESTINATION_PORT),
            (e.user_name.is_some(), has::USER_NAME),
            (e.user_target_name.is_some(), has::USER_TARGET_NAME),
            (e.process_name.is_some(), has::PROCESS_NAME),
            (e.process_pid.is_some(), has::PROCESS_PID),
            (e.process_command_line.is_some(), has::PROCESS_COMMAND_LINE),
            (e.process_executable.is_some(), has::PROCESS_EXECUTABLE),
            (e.category.is_some(), has::CATEGORY),
            (e.action.is_some(), has::ACTION),
            (e.outcome.is_some(), has::OUTCOME),
            (e.severity.is_some(), has::SEVERITY),
            (e.dataset.is_some(), has::DATASET),
            (e.original.is_some(), has::ORIGINAL),
            (message_in_original, has::MESSAGE_IN_ORIGINAL),
            (!e.labels.is_empty(), has::LABELS),
            (!e.fields.is_empty(), has::FIELDS),
            (e.trusted, has::TRUSTED),
            (!derived_id, has::ID),
        ];
        let presence = bits
            .iter()
            .filter(|(on, _)| *on)
            .fold(0, |acc, (_, bit)| acc | bit);
        put_varint(self.col(Column::Presence), u64::from(presence));

        let times = self.col(Column::Times);
        put_time(times, e.timestamp, ts);
        put_time(times, e.received_at, received);
        if !derived_id {
            self.col(Column::Ids).extend_from_slice(&e.id.to_bytes());
        }
        put_opt_str(self.col(Column::Hosts), e.host_name.as_deref());
        let addresses = self.col(Column::Addresses);
        for ip in [e.host_ip, e.source_ip, e.destination_ip]
            .into_iter()
            .flatten()
        {
            put_ip(addresses, ip);
        }
        let numbers = self.col(Column::Numbers);
        for n in [
            e.source_port.map(u64::from),
            e.destination_port.map(u64::from),
            e.process_pid.map(u64::from),
            e.severity.map(u64::from),
        ]
        .into_iter()
        .flatten()
        {
            put_varint(numbers, n);
        }
        let users = self.col(Column::Users);
        put_opt_str(users, e.user_name.as_deref());
        put_opt_str(users, e.user_target_name.as_deref());
        let processes = self.col(Column::Processes);
        put_opt_str(processes, e.process_name.as_deref());
        put_opt_str(processes, e.process_command_line.as_deref());
        put_opt_str(processes, e.process_executable.as_deref());
        let classes = self.col(Column::Classes);
        for class in [&e.category, &e.action, &e.outcome, &e.dataset] {
            put_opt_str(classes, class.as_deref());
        }
        put_opt_str(self.col(Column::Originals), e.original.as_deref());
        let messages = self.col(Column::Messages);
        if message_in_original {
            put_varint(messages, e.message.len() as u64);
        } else {
            put_str(messages, &e.message);
        }
        if !e.labels.is_empty() {
            let labels = self.col(Column::Labels);
            put_varint(labels, e.labels.len() as u64);
            for (k, v) in &e.labels {
                put_str(labels, k);
                put_str(labels, v);
            }
        }
        if !e.fields.is_empty() {
            // One JSON line (JSON text holds no raw newline). Serializing
            // plain JSON values cannot fail.
            let fields = self.col(Column::Fields);
            serde_json::to_writer(&mut *fields, &e.fields)
                .map_err(|err| corrupt(e.seq, err.to_string()))?;
            fields.push(b'\n');
        }
        Ok(())
    }

    /// The body: every column's length, then the columns.
    fn body(&mut self) -> &[u8] {
        self.body.clear();
        for column in &self.columns {
            put_varint(&mut self.body, column.len() as u64);
        }
        for column in &self.columns {
            self.body.extend_from_slice(column);
        }
        &self.body
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    if let Some(s) = s {
        put_str(out, s);
    }
}

/// Whole seconds as a zigzag delta from `before`, then the nanoseconds.
fn put_time(out: &mut Vec<u8>, t: DateTime<Utc>, before: DateTime<Utc>) {
    let delta = t.timestamp().wrapping_sub(before.timestamp());
    put_varint(out, ((delta << 1) ^ (delta >> 63)) as u64);
    put_varint(out, u64::from(t.timestamp_subsec_nanos()));
}

fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
}

/// Reads one column; every read is checked against what is there.
struct Reader<'a> {
    bytes: &'a [u8],
    seq: u64,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, what: &str) -> super::Result<T> {
        Err(corrupt(self.seq, format!("block body: {what}")))
    }

    fn take(&mut self, n: usize) -> super::Result<&'a [u8]> {
        if n > self.bytes.len() {
            return self.fail("a value runs past its column");
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn varint(&mut self) -> super::Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let [b] = self.take(1)? else {
                return self.fail("short varint");
            };
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.fail("varint too long")
    }

    fn len(&mut self) -> super::Result<usize> {
        let n = self.varint()?;
        usize::try_from(n).or_else(|_| self.fail("length out of range"))
    }

    fn str(&mut self) -> super::Result<&'a str> {
        let n = self.len()?;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes).or_else(|_| self.fail("text is not UTF-8"))
    }

    fn string_if(&mut self, present: bool) -> super::Result<Option<String>> {
        Ok(if present {
            Some(self.str()?.to_owned())
        } else {
            None
        })
    }

    fn time(&mut self, before: DateTime<Utc>) -> super::Result<DateTime<Utc>> {
        let zigzag = self.varint()?;
        let delta = (zigzag >> 1) as i64 ^ -((zigzag & 1) as i64);
        let nanos = u32::try_from(self.varint()?).or_else(|_| self.fail("nanoseconds"))?;
        match DateTime::from_timestamp(before.timestamp().wrapping_add(delta), nanos) {
            Some(t) => Ok(t),
            None => self.fail("time out of range"),
        }
    }

    fn ip_if(&mut self, present: bool) -> super::Result<Option<IpAddr>> {
        if !present {
            return Ok(None);
        }
        let tag = self.take(1)?[0];
        Ok(Some(match tag {
            4 => IpAddr::from(<[u8; 4]>::try_from(self.take(4)?).unwrap_or_default()),
            6 => IpAddr::from(<[u8; 16]>::try_from(self.take(16)?).unwrap_or_default()),
            _ => return self.fail("unknown address kind"),
        }))
    }

    fn number_if<T: TryFrom<u64>>(&mut self, present: bool) -> super::Result<Option<T>> {
        if !present {
            return Ok(None);
        }
        let v = self.varint()?;
        T::try_from(v)
            .map(Some)
            .or_else(|_| self.fail("number out of range"))
    }
}

fn decode_columns(header: &BlockHeader, body: &[u8]) -> super::Result<Vec<Event>> {
    let seq = header.first_seq;
    let mut rest = Reader { bytes: body, seq };
    let mut sizes = [0usize; COLUMNS];
    for size in &mut sizes {
        *size = rest.len()?;
    }
    let mut columns = sizes.map(|_| Reader { bytes: &[], seq });
    for (column, size) in columns.iter_mut().zip(sizes) {
        column.bytes = rest.take(size)?;
    }
    let [
        mut presence,
        mut times,
        mut ids,
        mut hosts,
        mut addresses,
        mut numbers,
        mut users,
        mut processes,
        mut classes,
        mut originals,
        mut messages,
        mut labels,
        mut fields,
    ] = columns;
    let class = |r: &mut Reader, present: bool| {
        r.string_if(present).map(|s| s.map(std::borrow::Cow::Owned))
    };
    let mut events = Vec::with_capacity((header.count as usize).min(BLOCK_EVENTS));
    let mut previous = (DateTime::<Utc>::UNIX_EPOCH, DateTime::<Utc>::UNIX_EPOCH);
    for i in 0..u64::from(header.count) {
        let seq = header.first_seq + i;
        let bits = presence.varint()?;
        let on = |bit: u32| bits & u64::from(bit) != 0;
        let timestamp = times.time(previous.0)?;
        let received_at = times.time(previous.1)?;
        previous = (timestamp, received_at);
        let mut e = Event {
            seq,
            timestamp,
            received_at,
            host_name: hosts.string_if(on(has::HOST_NAME))?,
            host_ip: addresses.ip_if(on(has::HOST_IP))?,
            source_ip: addresses.ip_if(on(has::SOURCE_IP))?,
            destination_ip: addresses.ip_if(on(has::DESTINATION_IP))?,
            source_port: numbers.number_if(on(has::SOURCE_PORT))?,
            destination_port: numbers.number_if(on(has::DESTINATION_PORT))?,
            process_pid: numbers.number_if(on(has::PROCESS_PID))?,
            severity: numbers.number_if(on(has::SEVERITY))?,
            user_name: users.string_if(on(has::USER_NAME))?,
            user_target_name: users.string_if(on(has::USER_TARGET_NAME))?,
            process_name: processes.string_if(on(has::PROCESS_NAME))?,
            process_command_line: processes.string_if(on(has::PROCESS_COMMAND_LINE))?,
            process_executable: processes.string_if(on(has::PROCESS_EXECUTABLE))?,
            category: class(&mut classes, on(has::CATEGORY))?,
            action: class(&mut classes, on(has::ACTION))?,
            outcome: class(&mut classes, on(has::OUTCOME))?,
            dataset: class(&mut classes, on(has::DATASET))?,
            original: originals.string_if(on(has::ORIGINAL))?,
            trusted: on(has::TRUSTED),
            ..Event::default()
        };
        e.id = if on(has::ID) {
            let bytes = ids.take(16)?;
            ulid::Ulid::from_bytes(<[u8; 16]>::try_from(bytes).unwrap_or_default())
        } else {
            super::event_id(&e, seq)
        };
        e.message = if on(has::MESSAGE_IN_ORIGINAL) {
            let n = messages.len()?;
            let original = e.original.as_deref().unwrap_or_default();
            match original
                .len()
                .checked_sub(n)
                .and_then(|at| original.get(at..))
            {
                Some(m) => m.to_owned(),
                None => return Err(corrupt(seq, "block body: message outside its line")),
            }
        } else {
            messages.str()?.to_owned()
        };
        if on(has::LABELS) {
            let n = labels.len()?;
            for _ in 0..n {
                let k = labels.str()?.to_owned();
                let v = labels.str()?.to_owned();
                e.labels.insert(k.into(), v.into());
            }
        }
        if on(has::FIELDS) {
            let line = match fields.bytes.iter().position(|&b| b == b'\n') {
                Some(end) => fields.take(end + 1)?,
                None => return Err(corrupt(seq, "block body: fields without an end")),
            };
            e.fields = serde_json::from_slice::<Map<String, Value>>(line)
                .map_err(|err| corrupt(seq, format!("block body: fields: {err}")))?;
        }
        events.push(e);
    }
    Ok(events)
}

/// Reads the header of a stored block (`key` is its last seq, for errors).
pub fn decode_header(key: u64, bytes: &[u8]) -> super::Result<BlockHeader> {
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(key, "block shorter than its header"));
    }
    if !matches!(bytes[0], FORMAT_ZSTD_JSON_LINES | FORMAT_ZSTD_COLUMNS) {
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
    if header.count == 0 || header.first_seq.checked_add(u64::from(header.count) - 1) != Some(key) {
        return Err(corrupt(key, "block header does not match its key"));
    }
    Ok(header)
}

/// Decodes every event of a stored block.
pub fn decode_block(key: u64, bytes: &[u8]) -> super::Result<Vec<Event>> {
    let header = decode_header(key, bytes)?;
    let body = decompress(key, bytes)?;
    let events = if bytes[0] == FORMAT_ZSTD_COLUMNS {
        decode_columns(&header, &body)?
    } else {
        decode_json_lines(&header, &body)?
    };
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

fn decode_json_lines(header: &BlockHeader, lines: &[u8]) -> super::Result<Vec<Event>> {
    let mut events = Vec::with_capacity((header.count as usize).min(BLOCK_EVENTS));
    for (i, line) in lines
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let seq = header.first_seq + i as u64;
        events.push(serde_json::from_slice(line).map_err(|e| corrupt(seq, e.to_string()))?);
    }
    Ok(events)
}

/// Decodes the one event with `seq` from a stored block.
pub fn decode_one(key: u64, bytes: &[u8], seq: u64) -> super::Result<Option<Event>> {
    let header = decode_header(key, bytes)?;
    if seq < header.first_seq || seq > header.last_seq() {
        return Ok(None);
    }
    let index = (seq - header.first_seq) as usize;
    Ok(decode_block(key, bytes)?.into_iter().nth(index))
}

fn decompress(key: u64, bytes: &[u8]) -> super::Result<Vec<u8>> {
    let body = &bytes[HEADER_LEN..];
    let capacity = zstd::bulk::Decompressor::upper_bound(body)
        .unwrap_or(BLOCK_BODY_BYTES)
        .min(MAX_DECOMPRESSED);
    let cannot = |e: std::io::Error| corrupt(key, format!("cannot decompress: {e}"));
    DECOMPRESSOR.with_borrow_mut(|slot| {
        let decompressor = match slot {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new().map_err(cannot)?),
        };
        decompressor.decompress(body, capacity).map_err(cannot)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::borrow::Cow;

    fn at(secs: i64, nanos: u32) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, nanos).unwrap()
    }

    /// Events as the store hands them to the encoder: seqs and ids assigned.
    fn stored(first: u64, mut events: Vec<Event>) -> Vec<Event> {
        for (seq, e) in (first..).zip(&mut events) {
            e.seq = seq;
            e.id = crate::store::event_id(e, seq);
        }
        events
    }

    fn sshd_events(first: u64, n: usize) -> Vec<Event> {
        let events = (0..n as u64)
            .map(|i| {
                let message = format!(
                    "Failed password for root from 10.0.{}.{} port {} ssh2",
                    i / 250,
                    i % 250,
                    40_000 + i * 7 % 20_000
                );
                Event {
                    timestamp: at(1_700_000_000 + (i as i64 % 7), 0),
                    received_at: at(1_700_000_100 + i as i64, 0),
                    host_name: Some(format!("host{}", i % 4)),
                    process_name: Some("sshd".into()),
                    process_pid: Some(1000 + i as u32),
                    original: Some(format!(
                        "Nov  1 00:00:0{} host sshd[{}]: {message}",
                        i % 7,
                        1000 + i
                    )),
                    message,
                    ..Event::default()
                }
            })
            .collect();
        stored(first, events)
    }

    /// Every block `encoder` cuts from `events`, decoded back.
    fn round_trip(events: &[Event]) -> (Vec<Event>, Vec<usize>) {
        let (mut encoder, mut out) = (Encoder::default(), Vec::new());
        let (mut back, mut sizes) = (Vec::new(), Vec::new());
        let mut rest = events;
        while !rest.is_empty() {
            let (n, header) = encoder.encode(rest, &mut out).unwrap();
            assert_eq!(header.first_seq, rest[0].seq);
            assert_eq!(header.count as usize, n);
            assert_eq!(decode_header(header.last_seq(), &out).unwrap(), header);
            back.extend(decode_block(header.last_seq(), &out).unwrap());
            sizes.push(out.len());
            rest = &rest[n..];
        }
        (back, sizes)
    }

    #[test]
    fn every_part_of_an_event_comes_back() {
        let mut fields = Map::new();
        fields.insert(
            "log".into(),
            serde_json::json!({"syslog": {"appname": "sshd", "facility": {"code": 4}}}),
        );
        fields.insert("note".into(), Value::String("two\nlines \u{1F600}".into()));
        let full = Event {
            timestamp: at(1_700_000_000, 123_456_789),
            received_at: at(1_700_000_001, 5),
            host_name: Some("web-1".into()),
            host_ip: Some("192.0.2.1".parse().unwrap()),
            source_ip: Some("2001:db8::7".parse().unwrap()),
            source_port: Some(65_535),
            destination_ip: Some("10.0.0.1".parse().unwrap()),
            destination_port: Some(22),
            user_name: Some("root".into()),
            user_target_name: Some("admin".into()),
            process_name: Some("sudo".into()),
            process_pid: Some(u32::MAX),
            process_command_line: Some("/bin/sh -c id".into()),
            process_executable: Some("/bin/sh".into()),
            category: Some(Cow::Borrowed("authentication")),
            action: Some(Cow::Owned("sudo".into())),
            outcome: Some(Cow::Borrowed("success")),
            severity: Some(255),
            dataset: Some(Cow::Borrowed("sudo")),
            original: Some("<86>Nov  1 00:00:00 web-1 sudo: root : COMMAND=/bin/sh -c id".into()),
            message: "root : COMMAND=/bin/sh -c id".into(),
            labels: [("input".into(), "syslog".into()), ("k".into(), "".into())].into(),
            fields,
            trusted: true,
            ..Event::default()
        };
        // The message not at the end of the line; no line at all; an event
        // time before the one of the event before and before 1970; an id
        // the store did not derive; the bare minimum.
        let mut elsewhere = full.clone();
        elsewhere.message = "COMMAND".into();
        let no_line = Event {
            original: None,
            timestamp: at(-86_400 * 365, 999_999_999),
            ..full.clone()
        };
        let mut events = stored(41, vec![full, elsewhere, no_line, Event::default()]);
        events[1].id = ulid::Ulid::from_parts(1, 2);
        events[3].message = String::new();
        let (back, _) = round_trip(&events);
        assert_eq!(back, events);
    }

    #[test]
    fn blocks_fill_a_page() {
        let events = sshd_events(1, 20_000);
        let (back, sizes) = round_trip(&events);
        assert_eq!(back, events);
        assert!(sizes.iter().all(|&s| s <= BLOCK_BUDGET), "{sizes:?}");
        // Only the last block of the run may be short; the others are
        // filled to within an eighth of a page on average.
        let full = &sizes[..sizes.len() - 1];
        let mean = full.iter().sum::<usize>() / full.len();
        assert!(
            mean > BLOCK_BUDGET * 7 / 8,
            "blocks of {mean} bytes on average"
        );
    }

    #[test]
    fn an_event_larger_than_a_page_is_a_block_of_its_own() {
        let mut events = sshd_events(1, 3);
        // Random-looking text does not compress below a page.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        events[1].message = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect();
        let (back, sizes) = round_trip(&events);
        assert_eq!(back, events);
        assert_eq!(sizes.len(), 3, "{sizes:?}");
        assert!(sizes[1] > BLOCK_BUDGET);
    }

    #[test]
    fn json_line_blocks_written_before_are_read() {
        // Format 2, as it was written: the header, then zstd of JSON lines.
        let events = sshd_events(7, 3);
        let mut lines = Vec::new();
        for e in &events {
            serde_json::to_writer(&mut lines, e).unwrap();
            lines.push(b'\n');
        }
        let mut block = vec![FORMAT_ZSTD_JSON_LINES];
        block.extend_from_slice(&7u64.to_le_bytes());
        block.extend_from_slice(&3u32.to_le_bytes());
        for t in [0i64, 0, 0] {
            block.extend_from_slice(&t.to_le_bytes());
        }
        block.extend_from_slice(&zstd::bulk::compress(&lines, 3).unwrap());
        assert_eq!(decode_block(9, &block).unwrap(), events);
        assert_eq!(decode_one(9, &block, 8).unwrap().as_ref(), Some(&events[1]));
    }

    #[test]
    fn damaged_blocks_are_errors_not_panics() {
        let events = sshd_events(1, 5);
        let (mut encoder, mut out) = (Encoder::default(), Vec::new());
        let (n, header) = encoder.encode(&events, &mut out).unwrap();
        assert_eq!((n, header.last_seq()), (5, 5));
        assert_eq!(decode_one(5, &out, 3).unwrap().as_ref(), Some(&events[2]));
        assert_eq!(decode_one(5, &out, 6).unwrap(), None);
        assert!(decode_header(5, &out[..10]).is_err());
        assert!(decode_header(6, &out).is_err(), "key must match the header");
        let mut wrong_format = out.clone();
        wrong_format[0] = 9;
        assert!(
            decode_block(5, &wrong_format)
                .unwrap_err()
                .to_string()
                .contains("unknown block format 9")
        );
        // Any damage to the compressed body or to the body inside it.
        for at in HEADER_LEN..out.len() {
            let mut garbled = out.clone();
            garbled[at] ^= 0x5a;
            let _ = decode_block(5, &garbled);
        }
        let body = decompress(5, &out).unwrap();
        for at in 0..body.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut garbled = body.clone();
                garbled[at] ^= flip;
                let _ = decode_columns(&header, &garbled);
            }
            let _ = decode_columns(&header, &body[..at]);
        }
    }
}
