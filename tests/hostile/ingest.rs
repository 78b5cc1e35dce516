//! Ingest as an attacker on the network would try it: a GELF decompression
//! bomb, a connection flood from one address, idle connections, running the
//! node out of file descriptors through a syslog port, filling the write
//! queue with big events, and log lines that claim to be trusted.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::assert_serving;
use crate::common::daemon::{BIN, Daemon, http_client};

/// RSS bound for these attacks: the daemon idles at well under this.
const MAX_RSS_MIB: u64 = 600;

fn write_config(dir: &Path, yaml: &str) {
    std::fs::create_dir_all(dir.join("config")).unwrap();
    std::fs::write(dir.join("config/config.yaml"), yaml).unwrap();
}

fn port(daemon: &Daemon, name: &str) -> u16 {
    daemon.ports[name].as_u64().unwrap() as u16
}

/// The daemon's Prometheus text (with the admin key).
async fn metrics(daemon: &Daemon) -> String {
    let http = http_client(daemon.dir(), Duration::from_secs(30));
    let url = format!("http://127.0.0.1:{}/metrics", port(daemon, "metrics"));
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// The value of the sample `name{labels}` (labels as Prometheus prints
/// them, in order), or 0 when it is not there.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// Polls the metrics until `series` satisfies `ok`; its value.
async fn wait_metric(daemon: &Daemon, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = sample(&metrics(daemon).await, series);
        if ok(v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {v}\n{}",
            daemon.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls search until `query` finds `n` events.
async fn wait_found(daemon: &Daemon, http: &reqwest::Client, query: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = daemon.search_total(http, query).await;
        if found == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{query}: {found} events, expected {n}\n{}",
            daemon.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A TCP connection from `from` (any 127.0.0.0/8 address is this machine).
async fn connect_from(from: Ipv4Addr, to: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(SocketAddr::from(([127, 0, 0, 1], to))).await
}

/// True when the node closed `stream` (EOF or reset) within `within`.
async fn closed_by_node(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(within, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// A 1 KiB zlib datagram that would inflate to 1 MiB is cut to
/// `ingest.max_message_bytes` (64 KiB): stored as flagged text no longer
/// than the cap, counted, and the node's memory does not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gelf_decompression_bomb_is_cut_to_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "detection:\n  enabled: false\n");
    let daemon = Daemon::start_with(dir.path(), &[("GELF_UDP_PORT", "0")]).await;
    let admin = http_client(dir.path(), Duration::from_secs(30));
    let idle = super::rss_kib(daemon.pid()) / 1024;

    let mut doc = br#"{"version":"1.1","host":"bomb","short_message":""#.to_vec();
    doc.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    doc.extend(br#""}"#);
    let bomb = zlib(&doc);
    assert!(bomb.len() < 2048, "the bomb is {} bytes", bomb.len());
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = ("127.0.0.1", port(&daemon, "gelf_udp"));
    for _ in 0..20 {
        udp.send_to(&bomb, to).unwrap();
    }
    let cut = wait_metric(
        &daemon,
        "secmon_gelf_limited_total{source=\"gelf_udp\",reason=\"payload_truncated\"}",
        |v| v >= 1.0,
    )
    .await;
    // A legitimate sender after the bombs.
    udp.send_to(
        &zlib(br#"{"version":"1.1","host":"web-1","short_message":"after the bomb"}"#),
        to,
    )
    .unwrap();
    wait_found(&daemon, &admin, "\"after the bomb\"", 1).await;
    let v = daemon
        .graphql(
            &admin,
            "{ events(query: \"labels.truncated:true\", first: 50) { totalCount edges { node { message } } } }",
            json!({}),
        )
        .await;
    let edges = v["data"]["events"]["edges"].as_array().unwrap();
    assert!(!edges.is_empty(), "{v}");
    for edge in edges {
        let len = edge["node"]["message"].as_str().unwrap().len();
        assert!(len <= 64 * 1024, "a stored bomb event holds {len} bytes");
    }
    let rss = super::rss_kib(daemon.pid()) / 1024;
    println!(
        "GELF bomb: {} bytes inflating to {} bytes, {cut} cut, {} stored; RSS {idle} -> {rss} MiB",
        bomb.len(),
        doc.len(),
        v["data"]["events"]["totalCount"]
    );
    assert_serving(&daemon, MAX_RSS_MIB).await;
}

/// Chunked GELF messages that never complete: reassembly keeps 1024 of
/// them at most (the oldest go first, counted), so they cannot pile up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_gelf_chunks_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "detection:\n  enabled: false\n");
    let daemon = Daemon::start_with(dir.path(), &[("GELF_UDP_PORT", "0")]).await;
    let admin = http_client(dir.path(), Duration::from_secs(30));
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = ("127.0.0.1", port(&daemon, "gelf_udp"));
    for id in 0..1500u64 {
        // Chunk 0 of 128 of a message that never gets its other chunks.
        let mut d = vec![0x1e, 0x0f];
        d.extend(id.to_be_bytes());
        d.extend([0, 128]);
        d.extend([b'x'; 1000]);
        udp.send_to(&d, to).unwrap();
        if id % 50 == 49 {
            // Paced so that the socket buffer does not drop most of them.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let evicted = wait_metric(
        &daemon,
        "secmon_gelf_limited_total{source=\"gelf_udp\",reason=\"reassembly_full\"}",
        |v| v >= 1.0,
    )
    .await;
    // 129 chunks is over the spec's limit: refused, counted.
    let mut d = vec![0x1e, 0x0f];
    d.extend(7u64.to_be_bytes());
    d.extend([0, 129]);
    udp.send_to(&d, to).unwrap();
    wait_metric(
        &daemon,
        "secmon_gelf_limited_total{source=\"gelf_udp\",reason=\"too_many_chunks\"}",
        |v| v >= 1.0,
    )
    .await;
    udp.send_to(
        &zlib(br#"{"version":"1.1","host":"web-1","short_message":"after the chunks"}"#),
        to,
    )
    .unwrap();
    wait_found(&daemon, &admin, "\"after the chunks\"", 1).await;
    println!("GELF chunk flood: {evicted} incomplete messages evicted");
    assert_serving(&daemon, MAX_RSS_MIB).await;
}

/// One address opening 40 connections gets 8 (`max_per_source`); the rest
/// are closed at once and counted, while another client's syslog goes
/// through on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_from_one_address_is_capped_per_source() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "detection:\n  enabled: false\ningest:\n  connections:\n    max_per_source: 8\n",
    );
    let daemon = Daemon::start_with(dir.path(), &[("SYSLOG_TCP_PORT", "0")]).await;
    let admin = http_client(dir.path(), Duration::from_secs(30));
    let tcp = port(&daemon, "syslog_tcp");
    let attacker = Ipv4Addr::new(127, 0, 0, 66);
    let mut flood = Vec::new();
    for _ in 0..40 {
        flood.push(connect_from(attacker, tcp).await.unwrap());
    }
    wait_metric(
        &daemon,
        "secmon_ingest_connections_refused_total{source=\"syslog_tcp\",reason=\"source_full\"}",
        |v| v >= 32.0,
    )
    .await;
    let mut refused = 0;
    for s in &mut flood {
        if closed_by_node(s, Duration::from_millis(200)).await {
            refused += 1;
        }
    }
    assert_eq!(refused, 32, "8 of 40 connections are kept");
    // Another client on the same port.
    let mut other = connect_from(Ipv4Addr::new(127, 0, 0, 77), tcp)
        .await
        .unwrap();
    other
        .write_all(b"<13>Mar  1 10:00:00 web-1 app: legitimate after the flood\n")
        .await
        .unwrap();
    wait_found(&daemon, &admin, "\"legitimate after the flood\"", 1).await;
    let m = metrics(&daemon).await;
    assert_eq!(
        sample(&m, "secmon_ingest_connections{source=\"syslog_tcp\"}"),
        9.0,
        "8 flood connections and the other client"
    );
    assert_serving(&daemon, MAX_RSS_MIB).await;
}

/// A connection that sends nothing, and one that dribbles a frame without
/// ever ending it, are closed after `idle_timeout_seconds`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_dribbling_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "detection:\n  enabled: false\ningest:\n  connections:\n    idle_timeout_seconds: 1\n",
    );
    let daemon = Daemon::start_with(dir.path(), &[("SYSLOG_TCP_PORT", "0")]).await;
    let tcp = port(&daemon, "syslog_tcp");
    let started = Instant::now();
    let mut silent = TcpStream::connect(("127.0.0.1", tcp)).await.unwrap();
    let mut dribbler = TcpStream::connect(("127.0.0.1", tcp)).await.unwrap();
    let dribble = tokio::spawn(async move {
        // A byte every 300 ms, never a newline: active, but no frame.
        for _ in 0..30 {
            if dribbler.write_all(b"a").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        closed_by_node(&mut dribbler, Duration::from_millis(10)).await
    });
    assert!(
        closed_by_node(&mut silent, Duration::from_secs(10)).await,
        "a silent connection stayed open"
    );
    assert!(dribble.await.unwrap(), "a dribbling connection stayed open");
    assert!(started.elapsed() < Duration::from_secs(9));
    wait_metric(
        &daemon,
        "secmon_ingest_connections_closed_total{source=\"syslog_tcp\",reason=\"idle\"}",
        |v| v >= 2.0,
    )
    .await;
    assert_serving(&daemon, MAX_RSS_MIB).await;
}

fn prlimit_nofile(pid: u32, n: usize) {
    let out = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        // The soft limit only: it can go back up without privileges.
        .arg(format!("--nofile={n}:"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "prlimit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The process runs (not exited, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

fn fds_open(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat (11 and 12 after the name).
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// With RLIMIT_NOFILE lowered to 256 while it runs, the node sizes its
/// ingest connections to fit and keeps descriptors for the API: 400
/// connections to a syslog port leave /health and GraphQL answering. Then,
/// with no descriptor left at all (the limit at what is open), the syslog
/// accept loop backs off (no spinning, one log line) and everything
/// recovers once descriptors are free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fd_exhaustion_through_a_syslog_port_leaves_the_api_answering() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "detection:\n  enabled: false\ningest:\n  connections:\n    max_per_source: 10000\n    max_per_listener: 10000\n",
    );
    let daemon = Daemon::start_with(dir.path(), &[("SYSLOG_TCP_PORT", "0")]).await;
    let pid = daemon.pid();
    let tcp = port(&daemon, "syslog_tcp");
    prlimit_nofile(pid, 256);
    let max = wait_metric(
        &daemon,
        "secmon_ingest_connections_max{source=\"syslog_tcp\"}",
        |v| v > 0.0 && v < 256.0,
    )
    .await;
    let mut flood = Vec::new();
    for i in 0..400u32 {
        let from = Ipv4Addr::new(127, 1, (i / 200) as u8, (i % 200) as u8 + 1);
        flood.push(connect_from(from, tcp).await.unwrap());
    }
    wait_metric(
        &daemon,
        "secmon_ingest_connections_refused_total{source=\"syslog_tcp\",reason=\"fd_budget\"}",
        |v| v >= 1.0,
    )
    .await;
    let open = fds_open(pid);
    assert!(open < 256, "{open} descriptors open with a limit of 256");
    println!("limit 256: ingest capped at {max} connections, {open} descriptors open");
    assert_serving(&daemon, MAX_RSS_MIB).await;
    drop(flood);

    wait_metric(
        &daemon,
        "secmon_ingest_connections{source=\"syslog_tcp\"}",
        |v| v == 0.0,
    )
    .await;
    // No descriptor left at all (a few below what is open, as a closing
    // client connection may free one): accept fails with EMFILE.
    let before = daemon.log().matches("accept failed").count();
    let open = fds_open(pid);
    prlimit_nofile(pid, open - 4);
    let mut knocking = Vec::new();
    for _ in 0..20 {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", tcp)).await {
            knocking.push(s);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.log().matches("accept failed").count() == before {
        assert!(Instant::now() < deadline, "{}", daemon.log_tail());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = cpu_seconds(pid);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_seconds(pid) - cpu;
    let elapsed = window.elapsed().as_secs_f64();
    assert!(
        used < 0.5 * elapsed,
        "the node used {used:.2} s of CPU in {elapsed:.2} s with no descriptors: spinning"
    );
    assert_eq!(
        daemon.log().matches("accept failed").count(),
        before + 1,
        "logged once per episode"
    );
    assert!(alive(pid), "the node exited:\n{}", daemon.log_tail());
    prlimit_nofile(pid, 1024);
    drop(knocking);
    let m = metrics(&daemon).await;
    assert!(
        sample(
            &m,
            "secmon_ingest_accept_errors_total{source=\"syslog_tcp\",kind=\"fd_exhausted\"}"
        ) >= 1.0
    );
    println!("no descriptors left: {used:.3} s of CPU in {elapsed:.2} s");
    assert_serving(&daemon, MAX_RSS_MIB).await;
}

/// With the queue bounded to 4 MiB (and room for 10,000 batches, so only
/// bytes can refuse), concurrent 2 MB requests are told 429 instead of
/// queueing without bound; what was acknowledged is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_queue_is_bounded_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "ingest:\n  queue_capacity: 10000\n  queue_max_bytes: 4194304\n",
    );
    let daemon = Daemon::start(dir.path()).await;
    let http = http_client(dir.path(), Duration::from_secs(60));
    let m = metrics(&daemon).await;
    assert_eq!(sample(&m, "secmon_write_queue_capacity_bytes"), 4194304.0);
    let body: String = (0..2000)
        .map(|i| format!("{{\"message\":\"queue bound {i} {}\"}}\n", "x".repeat(1000)))
        .collect();
    let mut posters = Vec::new();
    for _ in 0..6 {
        let (http, api, body) = (http.clone(), daemon.api.clone(), body.clone());
        posters.push(tokio::spawn(async move {
            let (mut ok, mut busy) = (0u64, 0u64);
            for _ in 0..6 {
                let resp = http
                    .post(format!("{api}/api/v1/ingest"))
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                match resp.status().as_u16() {
                    200 => ok += 1,
                    429 => busy += 1,
                    other => panic!("HTTP {other}"),
                }
            }
            (ok, busy)
        }));
    }
    let (mut ok, mut busy) = (0, 0);
    for p in posters {
        let (o, b) = p.await.unwrap();
        ok += o;
        busy += b;
    }
    println!("queue bound 4 MiB: {ok} requests of 2 MB stored, {busy} refused with 429");
    assert!(busy > 0, "no request was refused");
    assert!(ok > 0, "no request was stored");
    let stored = daemon.system(&http).await["eventsStored"].as_u64().unwrap();
    assert_eq!(stored, ok * 2000);
    let m = metrics(&daemon).await;
    assert_eq!(sample(&m, "secmon_write_queue_bytes"), 0.0);
    assert_serving(&daemon, MAX_RSS_MIB).await;
}

/// JSON log lines that claim `"trusted": true` stay untrusted when they
/// come from a source that is not: the flag is the source's (here an open
/// syslog TCP listener), while a trusted source's (the authenticated HTTP
/// API, GELF TCP allow-listed to loopback, GELF UDP set `trusted: true`)
/// events are trusted. Syslog UDP allow-listed to loopback stays untrusted:
/// a datagram's source address can be forged, so only an explicit `trusted`
/// makes a UDP listener trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_claiming_trust_stays_untrusted() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "detection:\n  enabled: false\nexposure:\n  listeners:\n\
         \x20   syslog_udp:\n      allow_sources: [127.0.0.0/8]\n\
         \x20   gelf_udp:\n      allow_sources: [127.0.0.0/8]\n      trusted: true\n\
         \x20   gelf_tcp:\n      allow_sources: [127.0.0.0/8]\n",
    );
    let daemon = Daemon::start_with(
        dir.path(),
        &[
            ("SYSLOG_TCP_PORT", "0"),
            ("SYSLOG_UDP_PORT", "0"),
            ("GELF_UDP_PORT", "0"),
            ("GELF_TCP_PORT", "0"),
        ],
    )
    .await;
    let admin = http_client(dir.path(), Duration::from_secs(30));
    let mut tcp = TcpStream::connect(("127.0.0.1", port(&daemon, "syslog_tcp")))
        .await
        .unwrap();
    tcp.write_all(
        b"{\"message\":\"forged tcp\",\"trusted\":true,\"event\":{\"trusted\":true}}\n\
          <13>Mar  1 10:00:00 web-1 app: {\"message\":\"forged in a line\",\"trusted\":true}\n",
    )
    .await
    .unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(
        b"<13>Mar  1 10:00:00 web-1 app: allow-listed udp",
        ("127.0.0.1", port(&daemon, "syslog_udp")),
    )
    .unwrap();
    udp.send_to(
        br#"{"version":"1.1","host":"web-1","short_message":"explicitly trusted udp"}"#,
        ("127.0.0.1", port(&daemon, "gelf_udp")),
    )
    .unwrap();
    let mut gelf_tcp = TcpStream::connect(("127.0.0.1", port(&daemon, "gelf_tcp")))
        .await
        .unwrap();
    gelf_tcp
        .write_all(
            b"{\"version\":\"1.1\",\"host\":\"web-1\",\"short_message\":\"allow-listed tcp\"}\0",
        )
        .await
        .unwrap();
    let resp = admin
        .post(format!("{}/api/v1/ingest", daemon.api))
        .body("{\"message\":\"over the api\",\"trusted\":false}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    wait_found(&daemon, &admin, "forged", 2).await;
    wait_found(&daemon, &admin, "\"allow-listed udp\"", 1).await;
    wait_found(&daemon, &admin, "\"explicitly trusted udp\"", 1).await;
    wait_found(&daemon, &admin, "\"allow-listed tcp\"", 1).await;
    wait_found(&daemon, &admin, "\"over the api\"", 1).await;
    daemon.wait_indexed(&admin, Duration::from_secs(20)).await;
    assert_serving(&daemon, MAX_RSS_MIB).await;
    assert!(daemon.terminate().success());

    let out = Command::new(BIN)
        .current_dir(dir.path())
        .env_clear()
        .args([
            "search",
            "",
            "--json",
            "--limit",
            "100",
            "--data-dir",
            "data",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let trusted = |needle: &str| {
        let e = events
            .iter()
            .find(|e| e["message"].as_str().unwrap_or("").contains(needle))
            .unwrap_or_else(|| panic!("no event {needle}: {events:?}"));
        e["trusted"] == true
    };
    assert!(!trusted("forged tcp"));
    assert!(!trusted("forged in a line"));
    assert!(!trusted("allow-listed udp"));
    assert!(trusted("explicitly trusted udp"));
    assert!(trusted("allow-listed tcp"));
    assert!(trusted("over the api"));
}
