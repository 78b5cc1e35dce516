//! Syslog from real senders (util-linux `logger`) and raw sockets: UDP,
//! TCP with octet counting and newline framing, parsed and searchable;
//! bad input kept; allow-lists enforced.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{Node, config};
use secmon::config::Cidr;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

fn syslog_config(dir: &std::path::Path) -> secmon::config::Config {
    let mut cfg = config(dir);
    cfg.ports.syslog_udp = Some(0);
    cfg.ports.syslog_tcp = Some(0);
    cfg.ingest.max_message_bytes = 1024;
    cfg
}

fn logger(args: &[&str], port: u16, message: &str) {
    let out = Command::new("logger")
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args(args)
        .arg(message)
        .output()
        .expect("util-linux logger is installed (scripts/test.sh)");
    assert!(
        out.status.success(),
        "logger {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn wait_for(node: &Node, query: &str, n: u64) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let v = node
            .graphql(
                "query($q: String) { events(query: $q, first: 5) { totalCount edges { node {
                    message hostName processName processPid dataset action outcome sourceIp userName
                    userTargetName original labels fields } } } }",
                json!({ "q": query }),
            )
            .await;
        if v["data"]["events"]["totalCount"].as_u64() == Some(n) {
            return v["data"]["events"]["edges"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "{query}: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn logger_over_udp_and_tcp_is_parsed_and_searchable() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(syslog_config(dir.path())).await;
    let addrs = node.app.addrs();
    let udp = addrs.syslog_udp.unwrap().port();
    let tcp = addrs.syslog_tcp.unwrap().port();

    logger(
        &["--udp", "--rfc3164", "-t", "sshd"],
        udp,
        "Failed password for root from 10.9.8.7 port 4242 ssh2",
    );
    logger(
        &["--tcp", "--octet-count", "--rfc5424", "-t", "sudo"],
        tcp,
        "   alice : user NOT in sudoers ; TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/bash",
    );
    logger(
        &["--tcp", "--rfc3164", "-t", "useradd"],
        tcp,
        "new user: name=mallory, UID=1001, GID=1001, home=/home/mallory, shell=/bin/bash, from=/dev/pts/0",
    );
    logger(
        &["--udp", "--rfc5424", "-t", "myapp"],
        udp,
        "something nobody parses",
    );

    let ssh = wait_for(&node, "event.dataset:sshd AND source.ip:10.9.8.7", 1).await;
    let e = &ssh[0]["node"];
    assert_eq!(e["processName"], "sshd");
    assert_eq!(e["userName"], "root");
    assert_eq!(e["outcome"], "failure");
    assert!(
        e["processPid"].is_null(),
        "logger without -i sends no pid: {e}"
    );

    let sudo = wait_for(&node, "event.dataset:sudo", 1).await;
    assert_eq!(sudo[0]["node"]["userName"], "alice", "{sudo}");
    assert_eq!(sudo[0]["node"]["outcome"], "failure", "{sudo}");

    let user = wait_for(&node, "event.dataset:accounts", 1).await;
    assert_eq!(user[0]["node"]["userTargetName"], "mallory", "{user}");

    let other = wait_for(&node, "\"nobody parses\"", 1).await;
    assert_eq!(other[0]["node"]["processName"], "myapp");
    assert!(other[0]["node"]["dataset"].is_null());
    node.app.stop().await;
}

#[tokio::test]
async fn bad_input_is_kept_and_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(syslog_config(dir.path())).await;
    let tcp = node.app.addrs().syslog_tcp.unwrap();
    let mut stream = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let mut body = b"<13>Jan  5 10:00:00 host1 app: bad byte \xff here\n".to_vec();
    body.extend(format!("<13>Jan  5 10:00:01 host1 app: long {}\n", "x".repeat(5000)).as_bytes());
    let long = format!(
        "<13>Jan  5 10:00:02 host1 app: counted {}",
        "y".repeat(3000)
    );
    body.extend(format!("{} {long}", long.len()).as_bytes());
    body.extend(b"<13>Jan  5 10:00:03 host1 app: after the bad ones\n");
    stream.write_all(&body).await.unwrap();
    stream.shutdown().await.unwrap();

    let bad = wait_for(&node, "\"bad byte\"", 1).await;
    let labels = &bad[0]["node"]["labels"];
    assert_eq!(labels["invalid_utf8"], "true", "{bad}");
    assert!(
        bad[0]["node"]["fields"]["log"]["original_base64"].is_string(),
        "{bad}"
    );
    for q in ["long", "counted"] {
        let hit = wait_for(&node, q, 1).await;
        assert_eq!(hit[0]["node"]["labels"]["truncated"], "true", "{hit}");
        assert!(
            hit[0]["node"]["original"].as_str().unwrap().len() <= 1024,
            "{hit}"
        );
    }
    wait_for(&node, "\"after the bad ones\"", 1).await;
    node.app.stop().await;
}

#[tokio::test]
async fn senders_outside_the_allow_list_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = syslog_config(dir.path());
    let elsewhere: Cidr = "192.0.2.0/24".to_string().try_into().unwrap();
    let here: Cidr = "127.0.0.0/8".to_string().try_into().unwrap();
    cfg.exposure.listeners.syslog_udp.allow_sources = vec![elsewhere];
    cfg.exposure.listeners.syslog_tcp.allow_sources = vec![here];
    let node = Node::start(cfg).await;
    let addrs = node.app.addrs();
    logger(
        &["--udp", "--rfc3164", "-t", "app"],
        addrs.syslog_udp.unwrap().port(),
        "refused by the allow list",
    );
    logger(
        &["--tcp", "--rfc3164", "-t", "app"],
        addrs.syslog_tcp.unwrap().port(),
        "allowed by the allow list",
    );
    wait_for(&node, "\"allowed by the allow list\"", 1).await;
    // The UDP datagram was received before the TCP one was stored; it is not there.
    let v = node
        .graphql("{ events(query: \"refused\") { totalCount } }", json!({}))
        .await;
    assert_eq!(v["data"]["events"]["totalCount"], 0, "{v}");
    let needle = "secmon_events_rejected_total{source=\"syslog_udp\"}";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let metrics = node.metrics().await;
        if metrics.contains(needle) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle} in\n{metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    node.app.stop().await;
}

/// A TCP connection from `from` to `port` that sends `bytes` and closes.
async fn send_from(from: [u8; 4], port: u16, bytes: &[u8]) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind((std::net::Ipv4Addr::from(from), 0).into())
        .unwrap();
    let mut stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream.shutdown().await.unwrap();
}

#[tokio::test]
async fn only_the_configured_balancer_may_name_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = syslog_config(dir.path());
    let listener = &mut cfg.exposure.listeners.syslog_tcp;
    listener.proxy_protocol_from = vec!["127.0.0.1/32".to_string().try_into().unwrap()];
    listener.allow_sources = vec![
        "192.0.2.0/24".to_string().try_into().unwrap(),
        "127.0.0.0/8".to_string().try_into().unwrap(),
    ];
    let node = Node::start(cfg).await;
    let port = node.app.addrs().syslog_tcp.unwrap().port();
    let host_ip = |edges: Value| edges[0]["node"]["hostIp"].as_str().map(str::to_owned);
    let events = |query: &'static str| {
        let node = &node;
        async move {
            let v = node
                .graphql(
                    "query($q: String) { events(query: $q, first: 1) { totalCount edges { node { hostIp } } } }",
                    json!({ "q": query }),
                )
                .await;
            (
                v["data"]["events"]["totalCount"].as_u64().unwrap(),
                host_ip(v["data"]["events"]["edges"].clone()),
            )
        }
    };

    // The balancer (127.0.0.1) names the sender, in v1 and in v2.
    send_from(
        [127, 0, 0, 1],
        port,
        b"PROXY TCP4 192.0.2.7 127.0.0.1 40123 601\r\n<38>Dec  4 06:00:00 web-1 app: through v1\n",
    )
    .await;
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend([192, 0, 2, 8, 127, 0, 0, 1, 0x9c, 0xbb, 0x02, 0x59]);
    v2.extend(b"<38>Dec  4 06:00:00 web-2 app: through v2\n");
    send_from([127, 0, 0, 1], port, &v2).await;
    // Another address cannot: its header is just text, its address stands.
    send_from(
        [127, 0, 0, 2],
        port,
        b"PROXY TCP4 192.0.2.9 127.0.0.1 40123 601\r\n<38>Dec  4 06:00:00 web-3 app: forged\n",
    )
    .await;
    // The balancer without a header is refused.
    send_from(
        [127, 0, 0, 1],
        port,
        b"<38>Dec  4 06:00:00 web-4 app: headerless\n",
    )
    .await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let seen = (
            events("\"through v1\"").await,
            events("\"through v2\"").await,
            events("forged").await,
        );
        if seen.0.0 == 1 && seen.1.0 == 1 && seen.2.0 >= 1 {
            assert_eq!(seen.0.1.as_deref(), Some("192.0.2.7"));
            assert_eq!(seen.1.1.as_deref(), Some("192.0.2.8"));
            assert_eq!(
                seen.2.1.as_deref(),
                Some("127.0.0.2"),
                "not the forged 192.0.2.9"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{seen:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(events("headerless").await.0, 0);
    let needle =
        "secmon_ingest_connections_refused_total{source=\"syslog_tcp\",reason=\"proxy_header\"} 1";
    while !node.metrics().await.contains(needle) {
        assert!(std::time::Instant::now() < deadline, "no {needle}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    node.app.stop().await;
}

#[tokio::test]
async fn headers_read_at_once_from_a_balancer_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = syslog_config(dir.path());
    cfg.exposure.listeners.syslog_tcp.proxy_protocol_from =
        vec!["127.0.0.1/32".to_string().try_into().unwrap()];
    cfg.ingest.connections.max_per_listener = 2;
    let node = Node::start(cfg).await;
    let port = node.app.addrs().syslog_tcp.unwrap().port();
    // Two connections that never send their header hold both places ...
    let mut stalled = Vec::new();
    for _ in 0..2 {
        stalled.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    // ... so a third is refused at once, counted as the listener full.
    let needle =
        "secmon_ingest_connections_refused_total{source=\"syslog_tcp\",reason=\"listener_full\"} 1";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    let mut third = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    use tokio::io::AsyncReadExt;
    assert_eq!(third.read(&mut byte).await.unwrap_or(0), 0, "closed");
    while !node.metrics().await.contains(needle) {
        assert!(std::time::Instant::now() < deadline, "no {needle}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(stalled);
    node.app.stop().await;
}

/// rsyslog, the syslog daemon most servers run, forwarding with omfwd over
/// TCP twice: RFC 5424 with octet counting, and its traditional format with
/// newline framing. `logger` feeds rsyslog's UDP input.
#[tokio::test]
async fn rsyslog_omfwd_forwards_in_both_framings() {
    let rsyslogd = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("rsyslogd is missing: install rsyslog (scripts/test.sh does)");
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(syslog_config(&dir.path().join("data"))).await;
    let tcp = node.app.addrs().syslog_tcp.unwrap().port();
    // A free UDP port for rsyslog's input (released just before rsyslog binds it).
    let input = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let work = dir.path().join("rsyslog");
    std::fs::create_dir(&work).unwrap();
    let conf = work.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{work}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{input}")
action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp"
       TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp"
       template="RSYSLOG_ForwardFormat")
"#,
            work = work.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(rsyslogd)
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(work.join("rsyslogd.pid"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // rsyslog needs a moment to bind its input: resend until both copies of
    // one probe message arrive, then send the real messages once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        logger(&["--udp", "-t", "probe"], input, "rsyslog probe");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let n = node.search_total("\"rsyslog probe\"").await;
        if n >= 2 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            panic!("rsyslogd exited ({status}): {err}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rsyslog forwarded nothing"
        );
    }
    logger(
        &["--udp", "-t", "sshd", "-i"],
        input,
        "Invalid user rsyslogtest from 10.7.7.7 port 5555",
    );
    let both = wait_for(&node, "user.name:rsyslogtest", 2).await;
    let mut versions: Vec<Value> = both
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let e = &e["node"];
            assert_eq!(e["dataset"], "sshd", "{e}");
            assert_eq!(e["sourceIp"], "10.7.7.7", "{e}");
            assert_eq!(e["processName"], "sshd", "{e}");
            assert!(e["processPid"].is_u64(), "{e}");
            e["fields"]["log"]["syslog"]["version"].clone()
        })
        .collect();
    versions.sort_by_key(|v| v.to_string());
    assert_eq!(
        versions,
        [json!(1), Value::Null],
        "one RFC 5424, one RFC 3164"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    node.app.stop().await;
}
