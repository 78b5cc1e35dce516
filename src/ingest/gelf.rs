//! GELF (Graylog Extended Log Format) over UDP and TCP, as Docker's `gelf`
//! log driver, Graylog sidecars and logging libraries send it.
//!
//! UDP: one message per datagram, or chunked (magic `1e 0f`, 8-byte message
//! id, sequence number, count of at most 128), each plain, gzip or zlib.
//! Chunks are reassembled for at most [`CHUNK_TIMEOUT`] (the spec's 5 s);
//! incomplete messages then count as dropped. TCP: uncompressed messages
//! separated by a null byte, committed before the next ones are read.
//!
//! Payloads are capped at [`MAX_PAYLOAD`] bytes after decompression (a
//! compression bomb stops there); the GELF parser cuts the message itself
//! to `ingest.max_message_bytes`.

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

use super::Listener;
use crate::model::Event;
use crate::parse;
use crate::telemetry::metric;

/// Largest payload, reassembled and decompressed.
pub const MAX_PAYLOAD: usize = 1024 * 1024;
/// How long the chunks of one message wait for the rest.
pub const CHUNK_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages being reassembled at once at most; the oldest goes first.
const MAX_PENDING: usize = 1024;
const MAX_CHUNKS: usize = 128;
const CHUNK_MAGIC: [u8; 2] = [0x1e, 0x0f];
const CHUNK_HEADER: usize = 12;
const BATCH: usize = 1024;
const UDP_FLUSH: Duration = Duration::from_millis(20);

impl Listener {
    fn gelf_event(&self, payload: &[u8], peer: SocketAddr) -> Event {
        metrics::counter!(metric::EVENTS_RECEIVED, "source" => self.source).increment(1);
        let event = parse::gelf::parse(payload, Some(peer.ip()), Utc::now(), &self.parse);
        super::count_parsed(&event, self.source);
        event
    }
}

/// Why a datagram gave no payload.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DatagramError {
    #[error("chunk header malformed: {0}")]
    Chunk(&'static str),
    #[error("cannot decompress: {0}")]
    Decompress(String),
    #[error("larger than {MAX_PAYLOAD} bytes once decompressed")]
    TooLarge,
}

/// Reassembles chunked messages.
#[derive(Default)]
pub struct Chunks {
    pending: HashMap<[u8; 8], Partial>,
}

struct Partial {
    parts: Vec<Option<Vec<u8>>>,
    have: usize,
    bytes: usize,
    first_seen: Instant,
}

impl Chunks {
    /// Takes one datagram; returns the message payload when it completes one.
    pub fn datagram(&mut self, datagram: &[u8]) -> Result<Option<Vec<u8>>, DatagramError> {
        let Some(rest) = datagram.strip_prefix(&CHUNK_MAGIC) else {
            return decompress(datagram).map(Some);
        };
        if datagram.len() < CHUNK_HEADER {
            return Err(DatagramError::Chunk("shorter than its 12-byte header"));
        }
        let id: [u8; 8] = rest[..8]
            .try_into()
            .map_err(|_| DatagramError::Chunk("no message id"))?;
        let (seq, count) = (usize::from(rest[8]), usize::from(rest[9]));
        if count == 0 || count > MAX_CHUNKS || seq >= count {
            return Err(DatagramError::Chunk(
                "sequence number or count out of range",
            ));
        }
        let data = &rest[10..];
        if self.pending.len() >= MAX_PENDING && !self.pending.contains_key(&id) {
            self.drop_oldest();
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
            partial.parts[seq] = Some(data.to_vec());
            partial.have += 1;
        }
        if partial.bytes > MAX_PAYLOAD {
            self.pending.remove(&id);
            return Err(DatagramError::TooLarge);
        }
        if partial.have < count {
            return Ok(None);
        }
        let Some(partial) = self.pending.remove(&id) else {
            return Ok(None);
        };
        let whole: Vec<u8> = partial.parts.into_iter().flatten().flatten().collect();
        decompress(&whole).map(Some)
    }

    /// Forgets messages whose chunks stopped coming; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.pending.len();
        self.pending
            .retain(|_, p| now.duration_since(p.first_seen) < CHUNK_TIMEOUT);
        before - self.pending.len()
    }

    fn drop_oldest(&mut self) {
        if let Some(id) = self
            .pending
            .iter()
            .min_by_key(|(_, p)| p.first_seen)
            .map(|(id, _)| *id)
        {
            self.pending.remove(&id);
        }
    }
}

/// A payload as sent: gzip (`1f 8b`), zlib (`78 ..`) or plain.
fn decompress(data: &[u8]) -> Result<Vec<u8>, DatagramError> {
    let reader: Box<dyn Read + '_> = match data {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(data)),
        [0x78, second, ..] if (u16::from(0x78u8) << 8 | u16::from(*second)) % 31 == 0 => {
            Box::new(flate2::read::ZlibDecoder::new(data))
        }
        _ if data.len() > MAX_PAYLOAD => return Err(DatagramError::TooLarge),
        _ => return Ok(data.to_vec()),
    };
    let mut out = Vec::new();
    reader
        .take(MAX_PAYLOAD as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DatagramError::Decompress(e.to_string()))?;
    if out.len() > MAX_PAYLOAD {
        return Err(DatagramError::TooLarge);
    }
    Ok(out)
}

/// Receives GELF datagrams until `shutdown`.
pub async fn serve_udp(socket: UdpSocket, gelf: Arc<Listener>, shutdown: CancellationToken) {
    super::count_from_zero(gelf.source, true);
    let mut buf = vec![0u8; 65_535];
    let mut chunks = Chunks::default();
    let mut batch = Vec::with_capacity(BATCH);
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
        if batch.len() >= BATCH {
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
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => None,
            f = read_frame(&mut reader) => f?,
        };
        let Some(frame) = frame else { break };
        if !frame.iter().all(u8::is_ascii_whitespace) {
            batch.push(gelf.gelf_event(&frame, peer));
        }
        if batch.len() >= BATCH || reader.buffer().is_empty() {
            gelf.submit_wait(&mut batch).await?;
        }
    }
    gelf.submit_wait(&mut batch).await
}

/// Bytes up to the next null byte; a frame over [`MAX_PAYLOAD`] keeps its
/// first part (which then fails to parse and is kept as text, flagged) and
/// the rest is skipped. `None` at the end of the stream.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
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
        let room = MAX_PAYLOAD.saturating_sub(frame.len());
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

    fn chunk(id: u8, seq: u8, count: u8, data: &[u8]) -> Vec<u8> {
        let mut d = CHUNK_MAGIC.to_vec();
        d.extend([id; 8]);
        d.extend([seq, count]);
        d.extend(data);
        d
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn chunks_in_any_order_make_the_message() {
        let payload = zlib(br#"{"version":"1.1","host":"h","short_message":"hello"}"#);
        let (a, b) = payload.split_at(payload.len() / 2);
        let mut chunks = Chunks::default();
        assert_eq!(chunks.datagram(&chunk(1, 1, 2, b)), Ok(None));
        // A repeated chunk changes nothing.
        assert_eq!(chunks.datagram(&chunk(1, 1, 2, b)), Ok(None));
        let whole = chunks.datagram(&chunk(1, 0, 2, a)).unwrap().unwrap();
        assert!(whole.starts_with(br#"{"version""#));
        assert!(chunks.pending.is_empty());
    }

    #[test]
    fn bad_chunks_are_refused_and_incomplete_ones_expire() {
        let mut chunks = Chunks::default();
        assert!(matches!(
            chunks.datagram(&chunk(2, 3, 2, b"x")),
            Err(DatagramError::Chunk(_))
        ));
        assert!(matches!(
            chunks.datagram(&chunk(2, 0, 129, b"x")),
            Err(DatagramError::Chunk(_))
        ));
        assert_eq!(chunks.datagram(&chunk(3, 0, 2, b"x")), Ok(None));
        assert_eq!(chunks.expire(Instant::now()), 0);
        assert_eq!(chunks.expire(Instant::now() + CHUNK_TIMEOUT), 1);
    }

    #[test]
    fn a_compression_bomb_stops_at_the_cap() {
        let bomb = zlib(&vec![b'a'; MAX_PAYLOAD + 10]);
        assert!(bomb.len() < 10_000);
        assert_eq!(
            Chunks::default().datagram(&bomb),
            Err(DatagramError::TooLarge)
        );
        assert!(matches!(
            Chunks::default().datagram(&[0x1f, 0x8b, 0, 1, 2]),
            Err(DatagramError::Decompress(_))
        ));
    }

    #[tokio::test]
    async fn tcp_frames_end_at_null_bytes() {
        let mut reader = BufReader::new(&b"{\"a\":1}\0{\"b\":2}\n\0tail"[..]);
        let mut frames = Vec::new();
        while let Some(f) = read_frame(&mut reader).await.unwrap() {
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
    }
}
