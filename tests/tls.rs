//! Production mode over real TLS (rcgen certificates, rustls on both ends):
//! HTTPS API, metrics behind a bearer token, introspection and GraphiQL off;
//! TLS 1.2+ only; certificates reloaded on a file change and on SIGHUP;
//! syslog TLS with required client certificates; the development PKI and
//! `scripts/generate-certs.sh` output served by the daemon.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use secmon::config::{Environment, Secret};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A test CA.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pem: String,
}

/// A certificate signed by a [`Ca`], with its key.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        Ca { issuer, pem }
    }

    fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A server certificate for localhost and 127.0.0.1.
    fn server(&self) -> Leaf {
        self.sign(
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap(),
        )
    }

    /// A client certificate (syslog sender).
    fn client(&self, name: &str) -> Leaf {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }
}

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let ca = Ca::new("test CA");
    let leaf = ca.server();
    Pki {
        ca_pem: ca.pem,
        cert_pem: leaf.cert_pem,
        key_pem: leaf.key_pem,
    }
}

/// Writes the server certificate and key into `dir` and returns a config
/// with TLS enabled on them (data in `dir/data`).
fn tls_config(dir: &std::path::Path, pki: &Pki) -> secmon::config::Config {
    std::fs::write(dir.join("server.crt"), &pki.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), &pki.key_pem).unwrap();
    let mut cfg = common::config(&dir.join("data"));
    cfg.auth.metrics_token = Some(Secret::new(METRICS_TOKEN));
    cfg.tls.enabled = true;
    cfg.tls.cert_path = dir.join("server.crt");
    cfg.tls.key_path = dir.join("server.key");
    cfg
}

/// A rustls client configuration that trusts only the test CA.
fn client_tls(ca_pem: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(ca_pem.as_bytes()).unwrap();
    roots.add(der).unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(client_tls(ca_pem))
        .build()
        .unwrap()
}

/// [`client`], logged in as `admin` on the API at `api` (`https://host:port`).
async fn admin_client(ca_pem: &str, api: &str) -> reqwest::Client {
    let token = admin_token(ca_pem, api).await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .use_preconfigured_tls(client_tls(ca_pem))
        .default_headers(headers)
        .build()
        .unwrap()
}

/// An access token for `admin`, over HTTPS.
async fn admin_token(ca_pem: &str, api: &str) -> String {
    let v: Value = client(ca_pem)
        .post(format!("{api}/graphql"))
        .json(&json!({
            "query": "mutation($p: String!) { login(username: \"admin\", password: $p) { accessToken } }",
            "variables": {"p": common::ADMIN_PASSWORD},
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"]["login"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The WebSocket port speaks WSS with the server certificate; plain
/// WebSocket gets nowhere.
#[tokio::test]
async fn subscriptions_are_served_over_wss() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let app = secmon::App::start(tls_config(dir.path(), &pki))
        .await
        .unwrap();
    let addrs = app.addrs();
    let token = admin_token(
        &pki.ca_pem,
        &format!("https://localhost:{}", addrs.graphql.port()),
    )
    .await;
    let tls = handshake(addrs.websocket, client_tls(&pki.ca_pem), "localhost")
        .await
        .unwrap();
    let url = format!("wss://localhost:{}/ws", addrs.websocket.port());
    let (mut ws, protocol) = common::ws::connect_over(tls, &url, "graphql-transport-ws").await;
    assert_eq!(protocol.as_deref(), Some("graphql-transport-ws"));
    common::ws::init(&mut ws, json!({"authorization": format!("Bearer {token}")}))
        .await
        .unwrap();
    common::ws::subscribe(
        &mut ws,
        false,
        "s",
        "subscription { systemStatus(intervalSeconds: 1) { environment } }",
        json!({}),
    )
    .await;
    let msg = common::ws::next(&mut ws, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        msg["payload"]["data"]["systemStatus"]["environment"], "development",
        "{msg}"
    );

    let tcp = tokio::net::TcpStream::connect(addrs.websocket)
        .await
        .unwrap();
    let request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://127.0.0.1:{}/ws", addrs.websocket.port()),
    )
    .unwrap();
    let plain = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(request, tcp),
    )
    .await
    .unwrap();
    assert!(plain.is_err(), "plain WebSocket on the TLS port");
    app.stop().await;
}

#[tokio::test]
async fn production_serves_https_with_metrics_token_and_no_introspection() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let mut cfg = tls_config(dir.path(), &pki);
    cfg.environment = Environment::Production;
    cfg.bind_address = IpAddr::V4(Ipv4Addr::LOCALHOST);
    cfg.auth.jwt_secret = Some(Secret::new("j".repeat(40)));
    cfg.auth.metrics_token = Some(Secret::new(METRICS_TOKEN));
    assert!(
        secmon::config::validate(&cfg).is_empty(),
        "{:?}",
        secmon::config::validate(&cfg)
    );
    let app = secmon::App::start(cfg).await.unwrap();
    let addrs = app.addrs();
    let https = client(&pki.ca_pem);
    let api = format!("https://localhost:{}", addrs.graphql.port());
    let admin = admin_client(&pki.ca_pem, &api).await;

    let resp = admin
        .post(format!("{api}/api/v1/ingest"))
        .body("{\"message\":\"over tls\"}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = admin
        .post(format!("{api}/graphql"))
        .json(&json!({"query": "{ system { environment eventsStored } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["data"]["system"],
        json!({"environment": "production", "eventsStored": 1})
    );

    // Plain HTTP on the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/graphql", addrs.graphql.port()))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());

    let v: Value = admin
        .post(format!("{api}/graphql"))
        .json(&json!({"query": "{ __schema { types { name } } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        v["data"]["__schema"].is_null(),
        "introspection must be off in production: {v}"
    );
    let resp = https.get(format!("{api}/graphql")).send().await.unwrap();
    assert!(
        !resp.text().await.unwrap().contains("graphiql"),
        "GraphiQL must be off in production"
    );

    let metrics = format!("https://localhost:{}/metrics", addrs.metrics.port());
    assert_eq!(https.get(&metrics).send().await.unwrap().status(), 401);
    assert_eq!(
        https
            .get(&metrics)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let resp = https
        .get(&metrics)
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("secmon_events_stored_total")
    );

    // Health stays plain HTTP, no auth, no data.
    let resp = reqwest::get(format!("http://{}/ready", addrs.health))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn syslog_over_tls_with_octet_counting() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let mut cfg = tls_config(dir.path(), &pki);
    cfg.ports.syslog_tls = Some(0);
    let data_dir = cfg.data_dir.clone();
    let app = secmon::App::start(cfg).await.unwrap();
    let addr = app
        .addrs()
        .syslog_tls
        .expect("TLS syslog listens when TLS is enabled");

    let stream = handshake(addr, client_tls(&pki.ca_pem), "localhost")
        .await
        .unwrap();
    let msg = "<38>1 2026-11-28T01:02:03Z web1 sshd 4242 - - Accepted publickey for deploy from 192.0.2.10 port 50000 ssh2";
    send_syslog(stream, msg).await.unwrap();
    app.stop().await;

    let store = secmon::store::Store::open(&data_dir).unwrap();
    let events = store.scan_from(0, 10).unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(
        (
            e.host_name.as_deref(),
            e.user_name.as_deref(),
            e.source_ip.map(|ip| ip.to_string()),
            e.outcome.as_deref(),
            e.dataset.as_deref()
        ),
        (
            Some("web1"),
            Some("deploy"),
            Some("192.0.2.10".to_owned()),
            Some("success"),
            Some("sshd")
        )
    );
}

/// A rustls client trusting `ca_pem`, speaking only `versions`, presenting
/// `identity` when given.
fn client_with(
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    identity: Option<&Leaf>,
) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots);
    match identity {
        None => builder.with_no_client_auth(),
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    }
}

type ClientStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS handshake with `addr`, verifying the server as `name`.
async fn handshake(
    addr: SocketAddr,
    config: rustls::ClientConfig,
    name: &str,
) -> std::io::Result<ClientStream> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    connector.connect(name, tcp).await
}

/// The leaf certificate `addr` serves to a new connection.
async fn served_leaf(addr: SocketAddr, ca_pem: &str) -> Vec<u8> {
    let stream = handshake(addr, client_tls(ca_pem), "localhost")
        .await
        .unwrap_or_else(|e| panic!("handshake with {addr}: {e}"));
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Polls until every address in `addrs` serves `leaf`.
async fn wait_for_leaf(addrs: &[SocketAddr], ca_pem: &str, leaf: &Leaf, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for &addr in addrs {
        while served_leaf(addr, ca_pem).await != leaf.der {
            assert!(Instant::now() < deadline, "{addr} does not serve {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Replaces a file by rename, as deployment tools do.
fn replace(path: &Path, contents: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, contents).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// The value of a counter on a Prometheus page (0 when absent).
fn counter(page: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    page.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// What Prometheus would be given in these tests.
const METRICS_TOKEN: &str = "metrics-token-0123456789";

async fn metrics_page(https: &reqwest::Client, addr: SocketAddr) -> String {
    https
        .get(format!("https://localhost:{}/metrics", addr.port()))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Certificate A is served on the API, metrics and syslog TLS ports; after
/// its files are replaced by certificate B, new connections get B without a
/// restart; a broken replacement keeps B and counts an error; a good one
/// after it is taken again.
#[tokio::test]
async fn certificates_reload_when_their_files_change() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("reload CA");
    let (a, b) = (ca.server(), ca.server());
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    std::fs::write(&cert, &a.cert_pem).unwrap();
    std::fs::write(&key, &a.key_pem).unwrap();
    let mut cfg = common::config(&dir.path().join("data"));
    cfg.auth.metrics_token = Some(Secret::new(METRICS_TOKEN));
    cfg.tls.enabled = true;
    cfg.tls.cert_path = cert.clone();
    cfg.tls.key_path = key.clone();
    cfg.tls.reload_interval_seconds = 1;
    cfg.ports.syslog_tls = Some(0);
    let app = secmon::App::start(cfg).await.unwrap();
    let addrs = app.addrs();
    let ports = [addrs.graphql, addrs.metrics, addrs.syslog_tls.unwrap()];
    for addr in ports {
        assert_eq!(served_leaf(addr, &ca.pem).await, a.der, "{addr}");
    }
    let https = client(&ca.pem);
    let reloads =
        |page: &str, result| counter(page, "secmon_tls_reloads_total", &[("result", result)]);
    let page = metrics_page(&https, addrs.metrics).await;
    let (ok_before, errors_before) = (reloads(&page, "ok"), reloads(&page, "error"));

    // The key first, then the certificate, each by rename.
    replace(&key, &b.key_pem);
    replace(&cert, &b.cert_pem);
    wait_for_leaf(&ports, &ca.pem, &b, "certificate B after its files changed").await;
    let page = metrics_page(&https, addrs.metrics).await;
    assert!(reloads(&page, "ok") > ok_before, "{page}");

    // A certificate file that is not PEM: the error is counted, B stays.
    replace(&cert, "this is not a certificate\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = metrics_page(&https, addrs.metrics).await;
        if reloads(&page, "error") > errors_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed reload counted:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for addr in ports {
        assert_eq!(
            served_leaf(addr, &ca.pem).await,
            b.der,
            "{addr} after a failed reload"
        );
    }

    // A good replacement is taken after the failed one.
    replace(&key, &a.key_pem);
    replace(&cert, &a.cert_pem);
    wait_for_leaf(&ports, &ca.pem, &a, "certificate A again").await;
    app.stop().await;
}

/// The daemon reloads its certificate on SIGHUP (file polling off, so
/// only the signal can do it) and keeps running.
#[tokio::test]
async fn sighup_reloads_the_certificate_of_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("sighup CA");
    let (a, b) = (ca.server(), ca.server());
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    std::fs::write(&cert, &a.cert_pem).unwrap();
    std::fs::write(&key, &a.key_pem).unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(
        dir.path().join("config/config.yaml"),
        "tls:\n  reload_interval_seconds: 0\n",
    )
    .unwrap();
    let daemon = common::daemon::Daemon::start_with(
        dir.path(),
        &[
            ("TLS_ENABLED", "true"),
            ("TLS_CERT_PATH", cert.to_str().unwrap()),
            ("TLS_KEY_PATH", key.to_str().unwrap()),
        ],
    )
    .await;
    let api: SocketAddr = format!("127.0.0.1:{}", daemon.ports["graphql"])
        .parse()
        .unwrap();
    assert_eq!(served_leaf(api, &ca.pem).await, a.der);

    replace(&key, &b.key_pem);
    replace(&cert, &b.cert_pem);
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &daemon.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_for_leaf(&[api], &ca.pem, &b, "certificate B after SIGHUP").await;
    // The reload is logged just after the swap: give the line a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !daemon.log().contains("TLS certificate reloaded") {
        assert!(Instant::now() < deadline, "{}", daemon.log_tail());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = daemon.terminate();
    assert!(status.success(), "{status}");
}

/// A ClientHello of the given version (no supported_versions extension,
/// so this is the version offered) with what a TLS 1.2 hello needs:
/// signature algorithms, groups, point formats.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend((data.len() as u16).to_be_bytes());
        out.extend(data);
        out
    }
    // ECDHE-ECDSA/RSA with AES-GCM and AES-CBC, RSA AES-CBC.
    let suites: [u8; 10] = [0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x2f];
    let mut extensions = Vec::new();
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    extensions.extend(extension(0x000d, &[0, 6, 4, 3, 8, 4, 4, 1]));
    // supported_groups: x25519, secp256r1
    extensions.extend(extension(0x000a, &[0, 4, 0, 0x1d, 0, 0x17]));
    // ec_point_formats: uncompressed
    extensions.extend(extension(0x000b, &[1, 0]));
    let mut body = version.to_vec();
    body.extend([7u8; 32]); // random
    body.push(0); // no session id
    body.extend((suites.len() as u16).to_be_bytes());
    body.extend(suites);
    body.extend([1, 0]); // compression: null only
    body.extend((extensions.len() as u16).to_be_bytes());
    body.extend(extensions);
    let mut handshake = vec![1]; // client_hello
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// What the server answers first to `hello`: the record type and, for an
/// alert, its description.
async fn first_answer(addr: SocketAddr, hello: &[u8]) -> (u8, Option<u8>) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(hello).await.unwrap();
    let mut header = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut header))
        .await
        .unwrap()
        .unwrap();
    if header[0] != 0x15 {
        return (header[0], None);
    }
    let mut alert = [0u8; 2];
    tcp.read_exact(&mut alert).await.unwrap();
    (header[0], Some(alert[1]))
}

/// TLS 1.0 and 1.1 hellos get a protocol_version alert on every TLS port;
/// TLS 1.2 and 1.3 clients get through.
#[tokio::test]
async fn only_tls_1_2_and_1_3_are_spoken() {
    const ALERT: u8 = 0x15;
    const HANDSHAKE: u8 = 0x16;
    const PROTOCOL_VERSION: u8 = 70;
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let mut cfg = tls_config(dir.path(), &pki);
    cfg.ports.syslog_tls = Some(0);
    let app = secmon::App::start(cfg).await.unwrap();
    let addrs = app.addrs();
    for addr in [addrs.graphql, addrs.metrics, addrs.syslog_tls.unwrap()] {
        for (version, name) in [([3, 1], "TLS 1.0"), ([3, 2], "TLS 1.1")] {
            assert_eq!(
                first_answer(addr, &client_hello(version)).await,
                (ALERT, Some(PROTOCOL_VERSION)),
                "{name} on {addr}"
            );
        }
        // The same hello offering TLS 1.2 gets a ServerHello: the alert
        // above is about the version and nothing else.
        assert_eq!(
            first_answer(addr, &client_hello([3, 3])).await,
            (HANDSHAKE, None),
            "TLS 1.2 on {addr}"
        );
        for (version, expected) in [
            (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
            (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        ] {
            let stream = handshake(
                addr,
                client_with(&pki.ca_pem, &[version], None),
                "localhost",
            )
            .await
            .unwrap();
            assert_eq!(
                stream.get_ref().1.protocol_version(),
                Some(expected),
                "{addr}"
            );
        }
    }
    app.stop().await;
}

/// Messages in the data dir of a stopped node.
fn stored_messages(data_dir: &Path) -> Vec<String> {
    let store = secmon::store::Store::open(data_dir).unwrap();
    store
        .scan_from(0, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect()
}

/// Sends one octet-counted syslog message and waits until the server
/// closes the connection, which it does after committing what it read.
async fn send_syslog(mut stream: ClientStream, msg: &str) -> std::io::Result<()> {
    stream
        .write_all(format!("{} {msg}", msg.len()).as_bytes())
        .await?;
    stream.shutdown().await?;
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest).await {
        // The server closes without close_notify.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(()),
        other => other.map(|_| ()),
    }
}

/// With `tls.syslog_client_ca_path` set, syslog TLS takes messages only from
/// clients with a certificate from that CA: one without a certificate and
/// one with a certificate from another CA are refused at the handshake,
/// deliver nothing, and are counted.
#[tokio::test]
async fn syslog_tls_requires_a_client_certificate_from_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let clients = Ca::new("syslog clients CA");
    let stranger = Ca::new("some other CA");
    std::fs::write(dir.path().join("clients-ca.crt"), &clients.pem).unwrap();
    let mut cfg = tls_config(dir.path(), &pki);
    cfg.ports.syslog_tls = Some(0);
    cfg.tls.syslog_client_ca_path = Some(dir.path().join("clients-ca.crt"));
    assert_eq!(secmon::config::validate(&cfg), vec![]);
    let data_dir = cfg.data_dir.clone();
    let app = secmon::App::start(cfg).await.unwrap();
    let addrs = app.addrs();
    let syslog = addrs.syslog_tls.unwrap();
    let https = client(&pki.ca_pem);
    let failures = |page: &str, reason| {
        counter(
            page,
            "secmon_tls_handshake_failures_total",
            &[("source", "syslog_tls"), ("reason", reason)],
        )
    };
    let page = metrics_page(&https, addrs.metrics).await;
    let missing_before = failures(&page, "client_certificate_missing");
    let invalid_before = failures(&page, "client_certificate_invalid");

    let tls13 = [&rustls::version::TLS13];
    let tls12 = [&rustls::version::TLS12];
    let refused = [
        ("no certificate", None, &tls13[..]),
        ("no certificate", None, &tls12[..]),
        ("another CA", Some(stranger.client("intruder")), &tls13[..]),
        ("another CA", Some(stranger.client("intruder")), &tls12[..]),
    ];
    for (what, identity, versions) in &refused {
        let config = client_with(&pki.ca_pem, versions, identity.as_ref());
        // TLS 1.2 fails in the handshake; in TLS 1.3 the client finishes
        // first and learns of the refusal when it reads.
        let result = match handshake(syslog, config, "localhost").await {
            Ok(stream) => send_syslog(stream, &format!("<13>1 - h app - - - from {what}")).await,
            Err(e) => Err(e),
        };
        assert!(result.is_err(), "a client with {what} was not refused");
    }
    let sender = clients.client("edge-01");
    let stream = handshake(
        syslog,
        client_with(&pki.ca_pem, &tls13, Some(&sender)),
        "localhost",
    )
    .await
    .unwrap();
    send_syslog(stream, "<13>1 - edge-01 app - - - from a known sender")
        .await
        .unwrap();

    let page = metrics_page(&https, addrs.metrics).await;
    assert_eq!(
        failures(&page, "client_certificate_missing"),
        missing_before + 2,
        "{page}"
    );
    assert_eq!(
        failures(&page, "client_certificate_invalid"),
        invalid_before + 2,
        "{page}"
    );
    app.stop().await;
    assert_eq!(
        stored_messages(&data_dir),
        ["from a known sender"],
        "only the sender with a certificate from the clients CA is stored"
    );
}

/// `secmon::tls::generate_dev_pki` output, served by the daemon, verifies
/// against the generated CA for localhost, 127.0.0.1, ::1 and the names
/// given, and for no other name.
#[tokio::test]
async fn development_pki_is_served_and_verifies_for_its_names() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let pki = secmon::tls::generate_dev_pki(
        &certs,
        &["secmon.test".to_owned(), "10.9.8.7".to_owned()],
        false,
    )
    .unwrap();
    assert!(pki.created);
    let ca_pem = std::fs::read_to_string(&pki.ca_cert).unwrap();
    let mut cfg = common::config(&dir.path().join("data"));
    cfg.auth.metrics_token = Some(Secret::new(METRICS_TOKEN));
    cfg.tls.enabled = true;
    cfg.tls.cert_path = pki.server_cert.clone();
    cfg.tls.key_path = pki.server_key.clone();
    assert_eq!(secmon::config::validate(&cfg), vec![]);
    let app = secmon::App::start(cfg).await.unwrap();
    let api = app.addrs().graphql;
    let all = [&rustls::version::TLS13, &rustls::version::TLS12];
    for name in ["127.0.0.1", "localhost", "::1", "secmon.test", "10.9.8.7"] {
        handshake(api, client_with(&ca_pem, &all, None), name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let err = handshake(api, client_with(&ca_pem, &all, None), "elsewhere.test")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not valid for name"), "{err}");
    // Over HTTPS, too.
    let base = format!("https://127.0.0.1:{}", api.port());
    let resp = admin_client(&ca_pem, &base)
        .await
        .post(format!("{base}/api/v1/ingest"))
        .body("{\"message\":\"over the development certificate\"}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    app.stop().await;
}

/// `scripts/generate-certs.sh` (openssl) makes a CA, a server certificate
/// and a syslog client certificate; run twice it changes nothing; the daemon
/// serves HTTPS with them and takes syslog over TLS from `openssl s_client`
/// with the client certificate, and refuses it without.
#[tokio::test]
async fn generate_certs_script_output_serves_https_and_mutual_tls_syslog() {
    let openssl = std::process::Command::new("openssl")
        .arg("version")
        .output();
    if std::env::var_os("SECMON_REQUIRE_OPENSSL").is_some() {
        assert!(
            openssl.is_ok(),
            "openssl is not on PATH (scripts/test.sh installs it)"
        );
    }
    if openssl.is_err() {
        eprintln!("skipped: no openssl on PATH");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/generate-certs.sh");
    let run = || {
        let out = std::process::Command::new(&script)
            .args(["--out", certs.to_str().unwrap(), "--client", "edge-01"])
            .args(["localhost", "127.0.0.1", "secmon.test"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run();
    let read_all = || {
        [
            "ca.crt",
            "ca.key",
            "server.crt",
            "server.key",
            "client.crt",
            "client.key",
        ]
        .map(|f| std::fs::read(certs.join(f)).unwrap())
    };
    let first = read_all();
    run();
    assert!(first == read_all(), "a second run changed the files");
    let mode = |f: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(certs.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        (mode("server.key"), mode("client.key"), mode("ca.key")),
        (0o600, 0o600, 0o600)
    );

    let path = |f: &str| certs.join(f).to_str().unwrap().to_owned();
    let daemon = common::daemon::Daemon::start_with(
        dir.path(),
        &[
            ("TLS_ENABLED", "true"),
            ("TLS_CERT_PATH", &path("server.crt")),
            ("TLS_KEY_PATH", &path("server.key")),
            ("SYSLOG_TLS_PORT", "0"),
            ("SYSLOG_TLS_CLIENT_CA_PATH", &path("ca.crt")),
            ("METRICS_TOKEN", METRICS_TOKEN),
        ],
    )
    .await;
    let ca_pem = std::fs::read_to_string(certs.join("ca.crt")).unwrap();
    let port = |name: &str| daemon.ports[name].as_u64().unwrap();
    let api: SocketAddr = format!("127.0.0.1:{}", port("graphql")).parse().unwrap();
    for name in ["localhost", "127.0.0.1", "secmon.test"] {
        handshake(api, client_tls(&ca_pem), name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    let s_client = |with_cert: bool, msg: &str| {
        let mut cmd = std::process::Command::new("openssl");
        cmd.args(["s_client", "-brief", "-connect"])
            .arg(format!("127.0.0.1:{}", port("syslog_tls")))
            .args(["-CAfile", &path("ca.crt"), "-verify_return_error"]);
        if with_cert {
            cmd.args(["-cert", &path("client.crt"), "-key", &path("client.key")]);
        }
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let line = format!("{} {msg}", msg.len());
        child
            .stdin
            .take()
            .unwrap()
            .write_all(line.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    use std::io::Write as _;
    let refused = s_client(false, "<13>1 - anon app - - - without a certificate");
    let sent = s_client(
        true,
        "<13>1 - edge-01 app - - - with the script's client certificate",
    );
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );

    // Stored (this process is the daemon's only client: its counters are ours).
    let https = client(&ca_pem);
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics: SocketAddr = format!("127.0.0.1:{}", port("metrics")).parse().unwrap();
    loop {
        let page = metrics_page(&https, metrics).await;
        if counter(&page, "secmon_events_stored_total", &[]) == 1 {
            assert_eq!(
                counter(
                    &page,
                    "secmon_tls_handshake_failures_total",
                    &[("reason", "client_certificate_missing")]
                ),
                1,
                "{page}\n{}",
                String::from_utf8_lossy(&refused.stderr)
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not stored:\n{page}\n{}",
            daemon.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(daemon.terminate().success());
    assert_eq!(
        stored_messages(&dir.path().join("data")),
        ["with the script's client certificate"]
    );
}
