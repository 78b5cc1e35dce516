//! Syslog: UDP (RFC 5426, one message per datagram), TCP (RFC 6587, octet
//! counting or newline framing, told apart per frame) and TLS (RFC 5425,
//! rustls, octet counting in practice; both framings are accepted).
//!
//! Syslog has no authentication of its own: each listener takes an allow-list
//! of source networks (`exposure.listeners.syslog_*.allow_sources`, empty =
//! any), and TLS can require client certificates from a CA
//! (`tls.syslog_client_ca_path`, see `crate::tls`).
//! TCP and TLS read a connection's next frames only after the previous batch
//! is committed, so a slow store slows the sender (backpressure, nothing
//! dropped); UDP cannot wait, so a full write queue drops the datagrams and
//! counts them in `secmon_events_dropped_total`.
//!
//! TCP and TLS connections are capped per listener and per source address,
//! closed when no frame completes within the idle timeout, and TLS
//! handshakes end after 10 s (see `crate::ingest` and `crate::tls`). A
//! frame is at most `ingest.max_message_bytes` (the rest is skipped), so a
//! connection holds one frame and one batch (submitted at 1024 events or
//! 256 KiB, [`super::Batch`]) at most.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Batch, Listener};
use crate::tls::SyslogAcceptor;

/// How long received UDP datagrams wait for more before they are submitted.
const UDP_FLUSH: Duration = Duration::from_millis(20);
/// Largest datagram read (the UDP maximum).
const MAX_DATAGRAM: usize = 65_535;
/// Digits of an octet-counting length prefix at most.
const MAX_LEN_DIGITS: usize = 10;

/// Receives datagrams until `shutdown`.
pub async fn serve_udp(socket: UdpSocket, syslog: Arc<Listener>, shutdown: CancellationToken) {
    super::count_from_zero(syslog.source, true);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut batch = Batch::default();
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => r,
            _ = tokio::time::sleep(UDP_FLUSH), if !batch.is_empty() => {
                syslog.submit_nowait(&mut batch);
                continue;
            }
        };
        match received {
            Ok((n, peer)) => {
                if !syslog.allowed(peer) {
                    syslog.refuse(peer);
                    continue;
                }
                batch.push(syslog.event(buf[..n].to_vec(), peer));
                if batch.is_full() {
                    syslog.submit_nowait(&mut batch);
                }
            }
            Err(e) => tracing::warn!(error = %e, "syslog udp receive failed"),
        }
    }
    syslog.submit_nowait(&mut batch);
}

/// Accepts TCP (or, with `tls`, TLS) connections until `shutdown`. Each TLS
/// connection gets the certificate current when it is accepted (reloads
/// apply to new connections) and, with a client CA configured, must present
/// a client certificate it issued or is refused at the handshake.
pub async fn serve_tcp(
    listener: TcpListener,
    tls: Option<SyslogAcceptor>,
    syslog: Arc<Listener>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    syslog
        .accept(
            listener,
            shutdown,
            tasks,
            move |stream, peer, syslog, shutdown| {
                let tls = tls.clone();
                async move {
                    match tls {
                        Some(tls) => {
                            let handshake = tokio::select! {
                                _ = shutdown.cancelled() => return Ok(()),
                                s = tls.accept(stream, peer, syslog.source) => s,
                            };
                            // A refused handshake is counted and logged by `accept`.
                            let Some(stream) = handshake else {
                                return Ok(());
                            };
                            connection(stream, peer, &syslog, &shutdown).await
                        }
                        None => connection(stream, peer, &syslog, &shutdown).await,
                    }
                }
            },
        )
        .await;
}

async fn connection<S: AsyncRead + Unpin>(
    stream: S,
    peer: SocketAddr,
    syslog: &Listener,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let limit = syslog.parse.max_message_bytes;
    let idle = syslog.idle_timeout();
    let mut batch = Batch::default();
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => None,
            f = tokio::time::timeout(idle, read_frame(&mut reader, limit)) => match f {
                Ok(f) => f?,
                Err(_) => {
                    syslog.closed_idle(peer);
                    None
                }
            },
        };
        let Some(frame) = frame else { break };
        if !frame.is_empty() {
            batch.push(syslog.event(frame, peer));
        }
        // Submit when nothing more is buffered: whatever arrived together is
        // committed together, and the next read waits for that commit.
        if batch.is_full() || reader.buffer().is_empty() {
            syslog.submit_wait(&mut batch).await?;
        }
    }
    syslog.submit_wait(&mut batch).await
}

/// Reads one frame: `LEN SP MSG` (octet counting) when the frame starts
/// with digits followed by a space, else bytes up to `\n`. A frame over
/// `limit` keeps `limit + 1` bytes (so the parser flags it as truncated) and
/// the rest is skipped. `None` at a clean end of stream.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    limit: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut frame = Vec::new();
    if reader.fill_buf().await?.is_empty() {
        return Ok(None);
    }
    // A length prefix, read byte by byte so it may span TCP segments.
    if matches!(reader.buffer().first(), Some(b'1'..=b'9')) {
        loop {
            let Ok(b) = reader.read_u8().await else {
                return Ok(Some(frame));
            };
            frame.push(b);
            if !b.is_ascii_digit() || frame.len() > MAX_LEN_DIGITS {
                break;
            }
        }
        if frame.last() == Some(&b' ') {
            let len = std::str::from_utf8(&frame[..frame.len() - 1])
                .ok()
                .and_then(|s| s.parse::<usize>().ok());
            if let Some(len) = len {
                let keep = len.min(limit + 1);
                let mut msg = vec![0u8; keep];
                reader.read_exact(&mut msg).await?;
                let skip = (len - keep) as u64;
                if skip > 0 {
                    tokio::io::copy(&mut reader.take(skip), &mut tokio::io::sink()).await?;
                }
                return Ok(Some(msg));
            }
        }
        if frame.last() == Some(&b'\n') {
            frame.pop();
            return Ok(Some(frame));
        }
    }
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(Some(frame));
        }
        let (chunk, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = (limit + 1).saturating_sub(frame.len());
        frame.extend_from_slice(&buf[..chunk.min(room)]);
        reader.consume(chunk);
        if done {
            if frame.last() == Some(&b'\n') {
                frame.pop();
            }
            return Ok(Some(frame));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cidr;

    async fn frames(input: &[u8], limit: usize) -> Vec<Vec<u8>> {
        let mut reader = BufReader::new(input);
        let mut out = Vec::new();
        while let Some(f) = read_frame(&mut reader, limit).await.unwrap() {
            out.push(f);
        }
        out
    }

    #[tokio::test]
    async fn octet_counting_and_newline_framing_mix() {
        let input = b"11 <13>hello\n x3 <13>second line\n<14>third\n";
        let got = frames(input, 1024).await;
        assert_eq!(
            got,
            [
                b"<13>hello\n ".to_vec(),
                b"x3 <13>second line".to_vec(),
                b"<14>third".to_vec()
            ]
        );
    }

    #[tokio::test]
    async fn a_line_without_newline_at_the_end_is_kept() {
        assert_eq!(
            frames(b"<13>a\n<13>b", 1024).await,
            [b"<13>a".to_vec(), b"<13>b".to_vec()]
        );
    }

    #[tokio::test]
    async fn oversized_frames_keep_limit_plus_one_and_the_stream_goes_on() {
        let mut input = format!("{} ", 50).into_bytes();
        input.extend(std::iter::repeat_n(b'a', 50));
        input.extend(std::iter::repeat_n(b'b', 30));
        input.extend(b"\n<13>after\n");
        let got = frames(&input, 10).await;
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], vec![b'a'; 11]);
        assert_eq!(got[1], vec![b'b'; 11]);
        assert_eq!(got[2], b"<13>after".to_vec());
    }

    #[tokio::test]
    async fn a_number_that_is_not_a_length_is_a_line() {
        let got = frames(b"2026-01-01 host app: hi\n12\n", 1024).await;
        assert_eq!(got, [b"2026-01-01 host app: hi".to_vec(), b"12".to_vec()]);
    }

    #[tokio::test]
    async fn a_length_prefix_split_across_reads_is_still_a_length() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let sender = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for part in [&b"1"[..], b"1", b" <13>", b"a\nbcdef"] {
                tx.write_all(part).await.unwrap();
                tx.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let mut reader = BufReader::new(rx);
        let frame = read_frame(&mut reader, 1024).await.unwrap().unwrap();
        assert_eq!(frame, b"<13>a\nbcdef".to_vec());
        sender.await.unwrap();
    }

    #[test]
    fn allow_lists_match_networks() {
        let net: Cidr = "10.0.0.0/8".to_string().try_into().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".to_string().try_into().unwrap();
        assert!(v6.contains("2001:db8::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".to_string().try_into().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
    }
}
