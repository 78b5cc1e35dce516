//! GELF (Graylog Extended Log Format) over UDP and TCP, as Docker's `gelf`
//! log driver, Graylog sidecars and logging libraries send it.
//!
//! UDP: one message per datagram, or chunked (magic `1e 0f`, 8-byte message
//! id, sequence number, count of at most [`MAX_CHUNKS`]), each plain, gzip
//! or zlib. Chunks are reassembled for at most [`CHUNK_TIMEOUT`] (the
//! spec's 5 s); incomplete messages then count as dropped. TCP:
//! uncompressed messages separated by a null byte, committed before the
//! next ones are read.
//!
//! Sizes, so that a small datagram cannot become a big event:
//! - the payload, decompressed as a stream that stops at the cap (never
//!   decompressed whole and then checked), is held to
//!   `ingest.max_message_bytes`; past it the first `max_message_bytes` are
//!   kept as text (no longer JSON), flagged `truncated`;
//! - the parser cuts `short_message`, `full_message` and every additional
//!   field to `ingest.max_message_bytes` (`crate::parse::gelf`);
//! - reassembly holds [`MAX_PENDING`] messages and [`MAX_PENDING_BYTES`] at
//!   most (the oldest goes first), and a message's chunks
//!   `max_message_bytes` + [`CHUNK_SLACK`] at most (past it, it is dropped).
//!
//! Each limit that cuts or drops counts in `secmon_gelf_limited_total` by
//! source and reason.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Batch, Listener};
use crate::model::Event;
use crate::parse;
use crate::telemetry::metric;

/// How long the chunks of one message wait for the rest.
pub const CHUNK_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages being reassembled at once at most; the oldest goes first.
pub const MAX_PENDING: usize = 1024;
/// Bytes of chunks being reassembled at once at most, over all messages.
pub const MAX_PENDING_BYTES: usize = 32 * 1024 * 1024;
/// Chunks of one message at most (the spec's limit).
pub const MAX_CHUNKS: usize = 128;
/// How much a message's chunks may exceed the payload cap (compression
/// headers; a payload cut at the cap still makes an event).
pub const CHUNK_SLACK: usize = 64 * 1024;
const CHUNK_MAGIC: [u8; 2] = [0x1e, 0x0f];
const CHUNK_HEADER: usize = 12;
const UDP_FLUSH: Duration = Duration::from_millis(20);

/// Every reason `secmon_gelf_limited_total` counts.
const REASONS: [&str; 6] = [
    "payload_truncated",
    "field_truncated",
    "too_many_chunks",
    "message_too_large",
    "reassembly_full",
    "chunk_timeout",
];

fn limited(source: &'static str, reason: &'static str, n: u64) {
    metrics::counter!(metric::GELF_LIMITED, "source" => source, "reason" => reason).increment(n);
}

impl Listener {
    /// `payload` holds up to `max_message_bytes + 1` bytes: one more than
    /// the cap means it was cut.
    fn gelf_event(&self, payload: &[u8], peer: SocketAddr) -> Event {
        self.counters.received(1);
        let cap = self.parse.max_message_bytes;
        let mut event = if payload.len() > cap {
            limited(self.source, "payload_truncated", 1);
            // What is kept is no JSON document any more: text, flagged.
            let mut event =
                parse::gelf::parse(&payload[..cap], Some(peer.ip()), Utc::now(), &self.parse);
            event.labels.insert("truncated".into(), "true".into());
            event
        } else {
            let event = parse::gelf::parse(payload, Some(peer.ip()), Utc::now(), &self.parse);
            if event.labels.contains_key("truncated") {
                limited(self.source, "field_truncated", 1);
            }
            event
        };
        // The listener's word, never the payload's.
        event.trusted = self.trusted;
        self.counters.count_parsed(&event);
        event
    }
}

/// Why a datagram gave no payload.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DatagramError {
    #[error("chunk header malformed: {0}")]
    Chunk(&'static str),
    #[error("more than {MAX_CHUNKS} chunks")]
    TooManyChunks,
    #[error("cannot decompress: {0}")]
    Decompress(String),
    #[error("its chunks hold more than the payload cap")]
    TooLarge,
}

/// Reassembles chunked messages.
pub struct Chunks {
    pending: HashMap<[u8; 8], Partial>,
    /// Bytes of all pending chunks.
    bytes: usize,
    /// The payload cap (`ingest.max_message_bytes`).
    max_payload: usize,
    /// The metric label.
    source: &'static str,
}

struct Partial {
    parts: Vec<Option<Vec<u8>>>,
    have: usize,
    bytes: usize,
    first_seen: Instant,
}

/// The default payload cap (`ingest.max_message_bytes`'s default).
impl Default for Chunks {
    fn default() -> Chunks {
        Chunks::new(
            crate::parse::ParseOptions::default().max_message_bytes,
            "gelf_udp",
        )
    }
}

impl Chunks {
    pub fn new(max_payload: usize, source: &'static str) -> Chunks {
        Chunks {
            pending: HashMap::new(),
            bytes: 0,
            max_payload,
            source,
        }
    }

    /// Takes one datagram; returns the message payload (at most the cap
    /// plus one byte, see [`decompress`]) when it completes one.
    pub fn datagram(&mut self, datagram: &[u8]) -> Result<Option<Vec<u8>>, DatagramError> {
        let Some(rest) = datagram.strip_prefix(&CHUNK_MAGIC) else {
            return decompress(datagram, self.max_payload).map(Some);
        };
        if datagram.len() < CHUNK_HEADER {
            return Err(DatagramError::Chunk("shorter than its 12-byte header"));
        }
        let id: [u8; 8] = rest[..8]
            .try_into()
            .map_err(|_| DatagramError::Chunk("no message id"))?;
        let (seq, count) = (usize::from(rest[8]), usize::from(rest[9]));
        if count > MAX_CHUNKS {
            limited(self.source, "too_many_chunks", 1);
            return Err(DatagramError::TooManyChunks);
        }
        if count == 0 || seq >= count {
            return Err(DatagramError::Chunk(
                "sequence number or count out of range",
            ));
        }
        let data = &rest[10..];
        let max_message = self.max_payload.saturating_add(CHUNK_SLACK);
        if !self.pending.contains_key(&id) {
            // Room for one more message, and for this chunk's bytes.
            while !self.pending.is_empty()
                && (self.pending.len() >= MAX_PENDING
                    || self.bytes + data.len() > MAX_PENDING_BYTES)
            {
                self.drop_oldest();
                limited(self.source, "reassembly_full", 1);
            }
        } else {
            while self.bytes + data.len() > MAX_PENDING_BYTES && self.pending.len() > 1 {
                // Older messages than this one go first.
                if !self.drop_oldest_except(&id) {
                    break;
                }
                limited(self.source, "reassembly_full", 1);
            }
        }
        let partial = self.pending.entry(id).or_insert_with(|| Partial {
            parts: vec![None; count],
            have: 0,
            bytes: 0,
            first_seen: Instant::now(),
        });
        if partial.parts.len() != count {
            return Err(DatagramError::Chunk("chunk count differs between chunks"));
        }
        if partial.parts[seq].is_none() {
            partial.bytes += data.len();
            self.bytes += data.len();
            partial.parts[seq] = Some(data.to_vec());
            partial.have += 1;
        }
        if partial.bytes > max_message || self.bytes > MAX_PENDING_BYTES {
            self.remove(&id);
            limited(self.source, "message_too_large", 1);
            return Err(DatagramError::TooLarge);
        }
        if partial.have < count {
            return Ok(None);
        }
        let Some(partial) = self.remove(&id) else {
            return Ok(None);
        };
        let whole: Vec<u8> = partial.parts.into_iter().flatten().flatten().collect();
        decompress(&whole, self.max_payload).map(Some)
    }

    /// Forgets messages whose chunks stopped coming; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.pending.len();
        let mut freed = 0;
        self.pending.retain(|_, p| {
            let keep = now.duration_since(p.first_seen) < CHUNK_TIMEOUT;
            if !keep {
                freed += p.bytes;
            }
            keep
        });
        self.bytes -= freed;
        let expired = before - self.pending.len();
        if expired > 0 {
            limited(self.source, "chunk_timeout", expired as u64);
        }
        expired
    }

    fn remove(&mut self, id: &[u8; 8]) -> Option<Partial> {
        let partial = self.pending.remove(id)?;
        self.bytes -= partial.bytes;
        Some(partial)
    }

    fn drop_oldest(&mut self) {
        if let Some(id) = self
            .pending
            .iter()
            .min_by_key(|(_, p)| p.first_seen)
            .map(|(id, _)| *id)
        {
            self.remove(&id);
        }
    }

    /// Drops the oldest message but `keep`; false when there is none.
    fn drop_oldest_except(&mut self, keep: &[u8; 8]) -> bool {
        let oldest = self
            .pending
            .iter()
            .filter(|(id, _)| *id != keep)
            .min_by_key(|(_, p)| p.first_seen)
            .map(|(id, _)| *id);
        oldest.is_some_and(|id| self.remove(&id).is_some())
    }
}

/// A payload as sent: gzip (`1f 8b`), zlib (`78 ..`) or plain, as at most
/// `cap + 1` bytes: decompression streams and stops there, so a bomb costs
/// `cap + 1` bytes of memory and the time to inflate them, whatever it
/// would expand to. `cap + 1` bytes tell the caller it was cut.
fn decompress(data: &[u8], cap: usize) -> Result<Vec<u8>, DatagramError> {
    let keep = cap.saturating_add(1);
    let reader: Box<dyn Read + '_> = match data {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(data)),
        [0x78, second, ..] if (u16::from(0x78u8) << 8 | u16::from(*second)) % 31 == 0 => {
            Box::new(flate2::read::ZlibDecoder::new(data))
        }
        _ => return Ok(data[..data.len().min(keep)].to_vec()),
    };
    let mut out = Vec::with_capacity(keep.min(64 * 1024));
    reader
        .take(keep as u64)
        .read_to_end(&mut out)
        .map_err(|e| DatagramError::Decompress(e.to_string()))?;
    Ok(out)
}

/// Receives GELF datagrams until `shutdown`.
pub async fn serve_udp(socket: UdpSocket, gelf: Arc<Listener>, shutdown: CancellationToken) {
    super::count_from_zero(gelf.source, true);
    for reason in REASONS {
        limited(gelf.source, reason, 0);
    }
    let mut buf = vec![0u8; 65_535];
    let mut chunks = Chunks::new(gelf.parse.max_message_bytes, gelf.source);
    let mut batch = Batch::default();
    let mut expiry = tokio::time::interval(Duration::from_secs(1));
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => r,
            _ = tokio::time::sleep(UDP_FLUSH), if !batch.is_empty() => {
                gelf.submit_nowait(&mut batch);
                continue;
            }
            _ = expiry.tick() => {
                let expired = chunks.expire(Instant::now()) as u64;
                if expired > 0 {
                    metrics::counter!(metric::EVENTS_DROPPED, "source" => gelf.source).increment(expired);
                    tracing::debug!(expired, "incomplete chunked GELF messages expired");
                }
                continue;
            }
        };
        let (n, peer) = match received {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "gelf udp receive failed");
                continue;
            }
        };
        if !gelf.allowed(peer) {
            gelf.refuse(peer);
            continue;
        }
        match chunks.datagram(&buf[..n]) {
            Ok(Some(payload)) => batch.push(gelf.gelf_event(&payload, peer)),
            Ok(None) => {}
            Err(e) => {
                metrics::counter!(metric::EVENTS_RECEIVED, "source" => gelf.source).increment(1);
                metrics::counter!(metric::EVENTS_REJECTED, "source" => gelf.source).increment(1);
                tracing::debug!(%peer, error = %e, "gelf datagram rejected");
            }
        }
        if batch.is_full() {
            gelf.submit_nowait(&mut batch);
        }
    }
    gelf.submit_nowait(&mut batch);
}

/// Accepts GELF TCP connections until `shutdown`.
pub async fn serve_tcp(
    listener: TcpListener,
    gelf: Arc<Listener>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    for reason in REASONS {
        limited(gelf.source, reason, 0);
    }
    gelf.accept(listener, shutdown, tasks, |stream, peer, gelf, shutdown| async move {
        connection(stream, peer, &gelf, &shutdown).await
    })
    .await;
}

async fn connection<S: AsyncRead + Unpin>(
    stream: S,
    peer: SocketAddr,
    gelf: &Listener,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let limit = gelf.parse.max_message_bytes;
    let idle = gelf.idle_timeout();
    let mut batch = Batch::default();
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => None,
            f = tokio::time::timeout(idle, read_frame(&mut reader, limit)) => match f {
                Ok(f) => f?,
                Err(_) => {
                    gelf.closed_idle(peer);
                    None
                }
            },
        };
        let Some(frame) = frame else { break };
        if !frame.iter().all(u8::is_ascii_whitespace) {
            batch.push(gelf.gelf_event(&frame, peer));
        }
        if batch.is_full() || reader.buffer().is_empty() {
            gelf.submit_wait(&mut batch).await?;
        }
    }
    gelf.submit_wait(&mut batch).await
}

/// Bytes up to the next null byte; a frame over `limit` keeps `limit + 1`
/// bytes (cut to `limit` and kept as text, flagged) and the rest is
/// skipped. `None` at the end of the stream.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    limit: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut frame = Vec::new();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok((!frame.is_empty()).then_some(frame));
        }
        let (chunk, done) = match memchr::memchr(0, buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = limit.saturating_add(1).saturating_sub(frame.len());
        frame.extend_from_slice(&buf[..chunk.min(room)]);
        reader.consume(chunk);
        if done {
            if frame.last() == Some(&0) {
                frame.pop();
            }
            return Ok(Some(frame));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const CAP: usize = 64 * 1024;

    fn chunk(id: u8, seq: u8, count: u8, data: &[u8]) -> Vec<u8> {
        let mut d = CHUNK_MAGIC.to_vec();
        d.extend([id; 8]);
        d.extend([seq, count]);
        d.extend(data);
        d
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn chunks() -> Chunks {
        Chunks::new(CAP, "gelf_udp")
    }

    #[test]
    fn chunks_in_any_order_make_the_message() {
        let payload = zlib(br#"{"version":"1.1","host":"h","short_message":"hello"}"#);
        let (a, b) = payload.split_at(payload.len() / 2);
        let mut chunks = chunks();
        assert_eq!(chunks.datagram(&chunk(1, 1, 2, b)), Ok(None));
        // A repeated chunk changes nothing.
        assert_eq!(chunks.datagram(&chunk(1, 1, 2, b)), Ok(None));
        let whole = chunks.datagram(&chunk(1, 0, 2, a)).unwrap().unwrap();
        assert!(whole.starts_with(br#"{"version""#));
        assert!(chunks.pending.is_empty());
        assert_eq!(chunks.bytes, 0);
    }

    #[test]
    fn bad_chunks_are_refused_and_incomplete_ones_expire() {
        let mut chunks = chunks();
        assert!(matches!(
            chunks.datagram(&chunk(2, 3, 2, b"x")),
            Err(DatagramError::Chunk(_))
        ));
        assert_eq!(
            chunks.datagram(&chunk(2, 0, 129, b"x")),
            Err(DatagramError::TooManyChunks)
        );
        assert_eq!(chunks.datagram(&chunk(3, 0, 2, b"x")), Ok(None));
        assert_eq!(chunks.expire(Instant::now()), 0);
        assert_eq!(chunks.expire(Instant::now() + CHUNK_TIMEOUT), 1);
        assert_eq!(chunks.bytes, 0);
    }

    #[test]
    fn a_compression_bomb_stops_at_the_cap() {
        // 1 KiB of zlib that inflates to 16 MiB.
        let bomb = zlib(&vec![b'a'; 16 * 1024 * 1024]);
        assert!(bomb.len() < 20 * 1024, "{}", bomb.len());
        let out = chunks().datagram(&bomb).unwrap().unwrap();
        assert_eq!(out.len(), CAP + 1, "inflated up to the cap and one byte");
        assert!(matches!(
            chunks().datagram(&[0x1f, 0x8b, 0, 1, 2]),
            Err(DatagramError::Decompress(_))
        ));
        // Plain payloads are held to the cap too.
        let plain = vec![b'{'; CAP + 100];
        assert_eq!(chunks().datagram(&plain).unwrap().unwrap().len(), CAP + 1);
    }

    #[test]
    fn a_chunked_message_over_the_cap_is_dropped() {
        let mut chunks = Chunks::new(1000, "gelf_udp");
        let part = vec![b'x'; 8000];
        let mut result = Ok(None);
        for seq in 0..10 {
            result = chunks.datagram(&chunk(4, seq, 10, &part));
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(DatagramError::TooLarge));
        assert!(chunks.pending.is_empty());
        assert_eq!(chunks.bytes, 0);
    }

    #[test]
    fn reassembly_is_bounded_in_messages_and_bytes() {
        let mut chunks = Chunks::new(1024 * 1024, "gelf_udp");
        // Many messages that never complete: the oldest go first.
        for i in 0..(MAX_PENDING + 10) {
            let mut d = CHUNK_MAGIC.to_vec();
            d.extend((i as u64).to_be_bytes());
            d.extend([0, 2]);
            d.extend(b"x");
            assert_eq!(chunks.datagram(&d), Ok(None));
        }
        assert_eq!(chunks.pending.len(), MAX_PENDING);
        // Big chunks: the total stays under MAX_PENDING_BYTES.
        let part = vec![b'y'; 60_000];
        for i in 0..2_000u64 {
            let mut d = CHUNK_MAGIC.to_vec();
            d.extend((1_000_000 + i).to_be_bytes());
            d.extend([0, 3]);
            d.extend(&part);
            let _ = chunks.datagram(&d);
            assert!(chunks.bytes <= MAX_PENDING_BYTES);
        }
        assert_eq!(
            chunks.bytes,
            chunks.pending.values().map(|p| p.bytes).sum::<usize>()
        );
    }

    #[tokio::test]
    async fn tcp_frames_end_at_null_bytes_and_are_held_to_the_cap() {
        let mut reader = BufReader::new(&b"{\"a\":1}\0{\"b\":2}\n\0tail"[..]);
        let mut frames = Vec::new();
        while let Some(f) = read_frame(&mut reader, CAP).await.unwrap() {
            frames.push(f);
        }
        assert_eq!(
            frames,
            [
                b"{\"a\":1}".to_vec(),
                b"{\"b\":2}\n".to_vec(),
                b"tail".to_vec()
            ]
        );
        let mut long = vec![b'a'; 100];
        long.push(0);
        long.extend(b"next\0");
        let mut reader = BufReader::new(&long[..]);
        assert_eq!(
            read_frame(&mut reader, 10).await.unwrap().unwrap().len(),
            11
        );
        assert_eq!(
            read_frame(&mut reader, 10).await.unwrap().unwrap(),
            b"next".to_vec()
        );
    }
}
