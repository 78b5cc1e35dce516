//! The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer in
//! front of the TCP listeners puts the sender's address before the stream,
//! and the listener takes it as the peer's. Only connections from the
//! listener's `proxy_protocol_from` networks are read this way, and from
//! them the header is required; everyone else's first bytes are syslog.
//!
//! The header is read exactly (never a byte of the stream after it), within
//! [`HEADER_TIMEOUT`] and [`MAX_V2_BODY`] bytes. A v1 `UNKNOWN` or a v2
//! `LOCAL` header (the balancer's own health checks) keeps the balancer's
//! address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// How long a proxied connection may take to send its header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest v1 header, `\r\n` included (the specification's bound).
const MAX_V1: usize = 107;
/// The most bytes after a v2 header's fixed 16 (addresses and TLVs).
pub const MAX_V2_BODY: usize = 512;
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("the PROXY protocol header did not arrive: {0}")]
    Io(String),
}

/// Reads a v1 or v2 header from the start of `stream`; the sender it names
/// (`None`: the balancer speaks for itself).
pub async fn read_header<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> Result<Option<SocketAddr>, ProxyError> {
    let io = |e: std::io::Error| ProxyError::Io(e.to_string());
    let mut start = [0u8; 6];
    stream.read_exact(&mut start).await.map_err(io)?;
    if &start == b"PROXY " {
        // Byte by byte: the stream's first line follows the header at once.
        let mut line = start.to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= MAX_V1 {
                return Err(ProxyError::Malformed("v1 line longer than 107 bytes"));
            }
            line.push(stream.read_u8().await.map_err(io)?);
        }
        return parse_v1(&line);
    }
    if start != V2_SIGNATURE[..6] {
        return Err(ProxyError::Missing);
    }
    let mut fixed = [0u8; 16];
    fixed[..6].copy_from_slice(&start);
    stream.read_exact(&mut fixed[6..]).await.map_err(io)?;
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > MAX_V2_BODY {
        return Err(ProxyError::Malformed("v2 header longer than 512 bytes"));
    }
    let mut header = fixed.to_vec();
    header.resize(16 + len, 0);
    stream.read_exact(&mut header[16..]).await.map_err(io)?;
    parse_v2(&header)
}

/// A whole v1 line, `PROXY ... \r\n`.
pub fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    let bad = ProxyError::Malformed;
    let text = std::str::from_utf8(line)
        .ok()
        .and_then(|t| t.strip_suffix("\r\n"))
        .and_then(|t| t.strip_prefix("PROXY "))
        .ok_or(bad("v1 line"))?;
    let mut parts = text.split(' ');
    let family = parts.next().ok_or(bad("v1 family"))?;
    if family == "UNKNOWN" {
        return Ok(None);
    }
    let (Some(source), Some(_destination), Some(port), Some(_), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad("v1 takes a family, two addresses and two ports"));
    };
    let ip: IpAddr = match family {
        "TCP4" => source
            .parse::<Ipv4Addr>()
            .map_err(|_| bad("v1 TCP4 source"))?
            .into(),
        "TCP6" => source
            .parse::<Ipv6Addr>()
            .map_err(|_| bad("v1 TCP6 source"))?
            .into(),
        _ => return Err(bad("v1 family is TCP4, TCP6 or UNKNOWN")),
    };
    let port = port.parse().map_err(|_| bad("v1 source port"))?;
    Ok(Some(SocketAddr::new(ip, port)))
}

/// A whole v2 header: the 16 fixed bytes and the length they give.
pub fn parse_v2(header: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    let bad = ProxyError::Malformed;
    let (fixed, body) = header
        .split_first_chunk::<16>()
        .ok_or(bad("v2 header shorter than 16 bytes"))?;
    if fixed[..12] != V2_SIGNATURE {
        return Err(ProxyError::Missing);
    }
    if fixed[12] >> 4 != 2 {
        return Err(bad("v2 version"));
    }
    if body.len() != usize::from(u16::from_be_bytes([fixed[14], fixed[15]])) {
        return Err(bad("v2 length"));
    }
    match fixed[12] & 0x0f {
        // LOCAL: the balancer's own connection (a health check).
        0 => return Ok(None),
        1 => {}
        _ => return Err(bad("v2 command")),
    }
    match fixed[13] {
        // TCP over IPv4: source, destination, source port, destination port.
        0x11 => {
            let (addrs, _) = body
                .split_first_chunk::<12>()
                .ok_or(bad("v2 TCP4 addresses"))?;
            let ip = Ipv4Addr::new(addrs[0], addrs[1], addrs[2], addrs[3]);
            Ok(Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([addrs[8], addrs[9]]),
            )))
        }
        0x21 => {
            let (addrs, _) = body
                .split_first_chunk::<36>()
                .ok_or(bad("v2 TCP6 addresses"))?;
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&addrs[..16]);
            Ok(Some(SocketAddr::new(
                Ipv6Addr::from(ip).into(),
                u16::from_be_bytes([addrs[32], addrs[33]]),
            )))
        }
        // UNSPEC (or UDP, UNIX, which a TCP listener does not carry): the
        // balancer's address stands.
        0x00 => Ok(None),
        _ => Err(bad("v2 family is TCP over IPv4 or IPv6")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend([0x20 | command, family]);
        h.extend(u16::try_from(body.len()).unwrap().to_be_bytes());
        h.extend(body);
        h
    }

    #[test]
    fn v1_headers_name_the_sender() {
        let cases: [(&[u8], Option<&str>); 3] = [
            (
                b"PROXY TCP4 192.0.2.7 10.0.0.1 40123 601\r\n",
                Some("192.0.2.7:40123"),
            ),
            (
                b"PROXY TCP6 2001:db8::7 2001:db8::1 40123 601\r\n",
                Some("[2001:db8::7]:40123"),
            ),
            (b"PROXY UNKNOWN\r\n", None),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_v1(line),
                Ok(want.map(|w| w.parse().unwrap())),
                "{line:?}"
            );
        }
        for bad in [
            &b"PROXY TCP4 192.0.2.7 10.0.0.1 40123\r\n"[..],
            b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",
            b"PROXY UDP4 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 99999 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2 3\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 1 2\n",
        ] {
            assert!(parse_v1(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn v2_headers_name_the_sender_or_leave_the_balancer() {
        let tcp4 = [192, 0, 2, 7, 10, 0, 0, 1, 0x9c, 0xbb, 0x02, 0x59];
        assert_eq!(
            parse_v2(&v2(1, 0x11, &tcp4)),
            Ok(Some("192.0.2.7:40123".parse().unwrap()))
        );
        // TLVs after the addresses are skipped.
        let mut with_tlv = tcp4.to_vec();
        with_tlv.extend([0x04, 0x00, 0x01, 0xff]);
        assert_eq!(
            parse_v2(&v2(1, 0x11, &with_tlv)),
            Ok(Some("192.0.2.7:40123".parse().unwrap()))
        );
        let mut tcp6 = [0u8; 36];
        tcp6[..16].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        tcp6[32..34].copy_from_slice(&40123u16.to_be_bytes());
        assert_eq!(
            parse_v2(&v2(1, 0x21, &tcp6)),
            Ok(Some("[2001:db8::7]:40123".parse().unwrap()))
        );
        assert_eq!(parse_v2(&v2(0, 0x00, &[])), Ok(None), "LOCAL");
        assert_eq!(parse_v2(&v2(1, 0x00, &[])), Ok(None), "UNSPEC");
        assert!(parse_v2(&v2(1, 0x11, &tcp4[..8])).is_err(), "short");
        assert!(parse_v2(&v2(2, 0x11, &tcp4)).is_err(), "command");
        assert!(parse_v2(&v2(1, 0x31, &tcp4)).is_err(), "unix");
        let mut wrong_version = v2(1, 0x11, &tcp4);
        wrong_version[12] = 0x11;
        assert!(parse_v2(&wrong_version).is_err());
    }

    #[tokio::test]
    async fn the_header_is_read_exactly_and_bounded() {
        for header in [
            b"PROXY TCP4 192.0.2.7 10.0.0.1 40123 601\r\n".to_vec(),
            v2(
                1,
                0x11,
                &[192, 0, 2, 7, 10, 0, 0, 1, 0x9c, 0xbb, 0x02, 0x59],
            ),
        ] {
            let mut stream = header.clone();
            stream.extend(b"<34>first line\n");
            let mut reader = stream.as_slice();
            assert_eq!(
                read_header(&mut reader).await,
                Ok(Some("192.0.2.7:40123".parse().unwrap()))
            );
            assert_eq!(reader, b"<34>first line\n", "nothing after it is read");
        }
        let mut plain: &[u8] = b"<34>Dec  4 06:00:00 host sshd[1]: hello\n";
        assert_eq!(read_header(&mut plain).await, Err(ProxyError::Missing));
        let long = [b"PROXY ".as_slice(), &[b'1'; 200]].concat();
        assert!(matches!(
            read_header(&mut long.as_slice()).await,
            Err(ProxyError::Malformed(_))
        ));
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend([0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(
            read_header(&mut huge.as_slice()).await,
            Err(ProxyError::Malformed(_))
        ));
        let mut cut: &[u8] = b"PROXY TCP4 192.0.2.7";
        assert!(matches!(
            read_header(&mut cut).await,
            Err(ProxyError::Io(_))
        ));
    }
}
