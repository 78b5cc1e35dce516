//! GELF from graypy (a real GELF client library): UDP with zlib and
//! chunking, TCP with null-byte framing; gzip datagrams; bad datagrams
//! counted and the stream going on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{Node, config};
use serde_json::{Value, json};

async fn wait_total(node: &Node, query: &str, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = node
            .graphql(
                "query($q: String) { events(query: $q, first: 5) { totalCount edges { node {
                    message hostName dataset outcome userName sourceIp severity labels fields } } } }",
                json!({ "q": query }),
            )
            .await;
        if v["data"]["events"]["totalCount"].as_u64() == Some(n) {
            return v["data"]["events"]["edges"].clone();
        }
        assert!(Instant::now() < deadline, "{query}: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn graypy_over_udp_and_tcp_and_gzip_datagrams() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.ports.gelf_udp = Some(0);
    cfg.ports.gelf_tcp = Some(0);
    let node = Node::start(cfg).await;
    let (udp, tcp) = (
        node.app.addrs().gelf_udp.unwrap(),
        node.app.addrs().gelf_tcp.unwrap(),
    );

    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gelf_send.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args([
            "127.0.0.1",
            &udp.port().to_string(),
            &tcp.port().to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gelf_send.py (needs `pip install graypy`, scripts/test.sh does): {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A gzip datagram, a malformed chunk and garbage compressed data.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(
        br#"{"version":"1.1","host":"gz-host","short_message":"gelf gzip datagram","level":3}"#,
    )
    .unwrap();
    sock.send_to(&gz.finish().unwrap(), udp).unwrap();
    sock.send_to(&[0x1e, 0x0f, 1, 2, 3], udp).unwrap();
    sock.send_to(&[0x1f, 0x8b, 0, 0, 0, 0], udp).unwrap();

    let sshd = wait_total(&node, "user.name:gelfuser", 1).await;
    let e = &sshd[0]["node"];
    assert_eq!(e["hostName"], "gelf-host", "{e}");
    assert_eq!(e["dataset"], "sshd");
    assert_eq!(e["outcome"], "failure");
    assert_eq!(e["sourceIp"], "10.9.8.7");
    assert_eq!(e["severity"], 4, "warning is syslog level 4");
    assert_eq!(e["labels"]["team"], "blue");
    assert_eq!(e["labels"]["input"], "gelf");

    let chunked = wait_total(&node, "\"gelf chunked\"", 1).await;
    assert_eq!(
        chunked[0]["node"]["message"].as_str().unwrap().len(),
        "gelf chunked ".len() + 3000,
        "the chunks reassembled into the whole message"
    );
    wait_total(&node, "\"gelf tcp message\"", 3).await;
    let gz = wait_total(&node, "\"gelf gzip datagram\"", 1).await;
    assert_eq!(gz[0]["node"]["hostName"], "gz-host");

    let metrics = node.metrics().await;
    let rejected = metrics
        .lines()
        .find(|l| l.starts_with("secmon_events_rejected_total{source=\"gelf_udp\"}"))
        .unwrap_or_else(|| panic!("no gelf_udp rejections in:\n{metrics}"));
    assert!(rejected.ends_with(" 2"), "{rejected}");
    node.app.stop().await;
}
