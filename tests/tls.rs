//! Production mode over real TLS (rcgen certificates, rustls on both ends):
//! HTTPS API, metrics behind a bearer token, introspection and GraphiQL off.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use secmon::config::{Environment, Secret};
use serde_json::{Value, json};

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Writes the server certificate and key into `dir` and returns a config
/// with TLS enabled on them (data in `dir/data`).
fn tls_config(dir: &std::path::Path, pki: &Pki) -> secmon::config::Config {
    std::fs::write(dir.join("server.crt"), &pki.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), &pki.key_pem).unwrap();
    let mut cfg = common::config(&dir.join("data"));
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
    let token = v["data"]["login"]["accessToken"].as_str().unwrap();
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

#[tokio::test]
async fn production_serves_https_with_metrics_token_and_no_introspection() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let mut cfg = tls_config(dir.path(), &pki);
    cfg.environment = Environment::Production;
    cfg.bind_address = IpAddr::V4(Ipv4Addr::LOCALHOST);
    cfg.auth.jwt_secret = Some(Secret::new("j".repeat(40)));
    cfg.auth.metrics_token = Some(Secret::new("metrics-token-0123456789"));
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
        .bearer_auth("metrics-token-0123456789")
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
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let mut cfg = tls_config(dir.path(), &pki);
    cfg.ports.syslog_tls = Some(0);
    let app = secmon::App::start(cfg).await.unwrap();
    let addr = app
        .addrs()
        .syslog_tls
        .expect("TLS syslog listens when TLS is enabled");

    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls(&pki.ca_pem)));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = connector.connect(name, tcp).await.unwrap();
    let msg = "<38>1 2026-11-28T01:02:03Z web1 sshd 4242 - - Accepted publickey for deploy from 192.0.2.10 port 50000 ssh2";
    stream
        .write_all(format!("{} {msg}", msg.len()).as_bytes())
        .await
        .unwrap();
    stream.shutdown().await.unwrap();

    let https = admin_client(
        &pki.ca_pem,
        &format!("https://localhost:{}", app.addrs().graphql.port()),
    )
    .await;
    let api = format!("https://localhost:{}/graphql", app.addrs().graphql.port());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let v: Value = https
            .post(&api)
            .json(&json!({"query": "{ events(query: \"event.dataset:sshd\") { totalCount edges { node { hostName userName sourceIp outcome } } } }"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["data"]["events"]["totalCount"] == 1 {
            let e = &v["data"]["events"]["edges"][0]["node"];
            assert_eq!(
                e,
                &json!({"hostName": "web1", "userName": "deploy", "sourceIp": "192.0.2.10", "outcome": "success"})
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    app.stop().await;
}
