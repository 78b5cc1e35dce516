//! What packaging and orchestration rely on: the systemd notify protocol
//! (readiness, watchdog, stopping) spoken to a real notify socket, the
//! `secmon health` probe containers use, and `vault:` references read over
//! HTTPS.
//!
//! Vault: no Vault or OpenBao server can be installed from this machine's
//! registries, so the server here is a stand-in written to Vault's published
//! KV version 2 HTTP API (`GET /v1/<mount>/data/<path>` with
//! `X-Vault-Token`, the answer `{"data": {"data": {...}, "metadata": {...}}}`,
//! 403 `{"errors": ["permission denied"]}`, 404 `{"errors": []}`), over real
//! TLS with a certificate from secmon's own development CA.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use common::daemon::{BIN, Daemon};
use serde_json::{Value, json};

const TOKEN: &str = "hvs.test-token-for-secmon";
const JWT: &str = "jwt-from-vault-0123456789abcdef0123456789abcdef";
const ADMIN: &str = "admin-password-from-vault";
const METRICS: &str = "metrics-token-from-vault-0123456789";

/// Reads of each secret, by `mount/path`.
type Reads = Arc<Mutex<HashMap<String, usize>>>;

/// The stand-in KV v2 server on a free port of 127.0.0.1, over TLS with a
/// certificate for `localhost`; its CA file and the reads it served.
async fn vault(dir: &Path) -> (String, std::path::PathBuf, Reads) {
    let pki = secmon::tls::generate_dev_pki(&dir.join("vault-pki"), &[], false).unwrap();
    let secrets = json!({
        "secret/secmon": {"jwt_secret": JWT, "admin_password": ADMIN, "metrics_token": METRICS, "node_name": "edge-7"},
        "kv/team/hooks": {"url": "https://hooks.example.org/T0/B0", "retries": 3},
    });
    let reads = Reads::default();
    async fn read(
        State((secrets, reads)): State<(Value, Reads)>,
        UrlPath((mount, path)): UrlPath<(String, String)>,
        headers: HeaderMap,
    ) -> (StatusCode, Json<Value>) {
        let name = format!("{mount}/{path}");
        *reads.lock().unwrap().entry(name.clone()).or_default() += 1;
        if headers.get("x-vault-token").and_then(|t| t.to_str().ok()) != Some(TOKEN) {
            return (
                StatusCode::FORBIDDEN,
                Json(json!({"errors": ["permission denied"]})),
            );
        }
        match secrets.get(&name) {
            Some(data) => (
                StatusCode::OK,
                Json(json!({
                    "request_id": "2b2c8a6e-5d35-4e8d-9c2f-0d8b1f0d9b51",
                    "lease_id": "", "renewable": false, "lease_duration": 0,
                    "data": {
                        "data": data,
                        "metadata": {"created_time": "2026-11-28T10:00:00.000000Z", "custom_metadata": null,
                                     "deletion_time": "", "destroyed": false, "version": 2}
                    },
                    "wrap_info": null, "warnings": null, "auth": null
                })),
            ),
            None => (StatusCode::NOT_FOUND, Json(json!({"errors": []}))),
        }
    }
    // A Vault that redirects (a standby node, or someone in the middle):
    // the token would follow to where `Location` points.
    let moved = |State((_, reads)): State<(Value, Reads)>| async move {
        *reads.lock().unwrap().entry("moved".into()).or_default() += 1;
        (
            StatusCode::TEMPORARY_REDIRECT,
            [("location", "/stolen/LOCATION-SECRET?t=1")],
        )
    };
    let stolen = |State((_, reads)): State<(Value, Reads)>| async move {
        *reads.lock().unwrap().entry("stolen".into()).or_default() += 1;
        StatusCode::OK
    };
    let app = Router::new()
        .route("/v1/moved/data/{*path}", get(moved))
        .route("/stolen/{*rest}", get(stolen))
        .route("/v1/{mount}/data/{*path}", get(read))
        .with_state((secrets, reads.clone()));
    let tls =
        axum_server::tls_rustls::RustlsConfig::from_pem_file(&pki.server_cert, &pki.server_key)
            .await
            .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = axum_server::from_tcp_rustls(listener, tls).unwrap();
    tokio::spawn(server.serve(app.into_make_service()));
    (format!("https://localhost:{port}"), pki.ca_cert, reads)
}

/// `secmon config check` with only `env` and a config dir holding `config`.
fn config_check(dir: &Path, config: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let config_dir = dir.join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(config_dir.join("config.yaml"), config).unwrap();
    let out = Command::new(BIN)
        .env_clear()
        .envs(env.iter().copied())
        .args(["config", "check", "--config"])
        .arg(&config_dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const CONFIG: &str = "\
node_name: vault:secret/secmon#node_name
notifications:
  channels:
    - name: team
      kind: webhook
      url: vault:kv/team/hooks#url
";

#[tokio::test(flavor = "multi_thread")]
async fn vault_references_are_read_over_https_once_per_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, ca, reads) = vault(dir.path()).await;
    let ca = ca.to_str().unwrap();
    let env = [
        ("VAULT_ADDR", addr.as_str()),
        ("VAULT_TOKEN", TOKEN),
        ("VAULT_CACERT", ca),
        ("JWT_SECRET", "vault:secret/secmon#jwt_secret"),
        (
            "SECMON_ADMIN_PASSWORD",
            "vault:secret/secmon#admin_password",
        ),
        ("METRICS_TOKEN", "vault:secret/secmon#metrics_token"),
    ];
    let (code, stdout, stderr) =
        tokio::task::block_in_place(|| config_check(dir.path(), CONFIG, &env));
    assert_eq!(code, 0, "config check failed:\n{stderr}");
    assert!(stdout.contains("node_name: edge-7"), "{stdout}");
    for secret in [JWT, ADMIN, METRICS, "hooks.example.org", TOKEN] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} printed"
        );
    }
    // Four references into secret/secmon, one read; one into kv/team/hooks.
    assert_eq!(reads.lock().unwrap().get("secret/secmon"), Some(&1));
    assert_eq!(reads.lock().unwrap().get("kv/team/hooks"), Some(&1));

    // The resolved values are the ones the daemon runs with: the admin
    // created at first start has the password from Vault.
    let opts = secmon::config::LoadOptions {
        config_dir: Some(dir.path().join("config")),
        environment: None,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let loaded = tokio::task::block_in_place(|| secmon::config::load(&opts)).unwrap();
    assert_eq!(loaded.node_name.as_deref(), Some("edge-7"));
    let mut cfg = common::config(&dir.path().join("data"));
    cfg.auth = loaded.auth;
    cfg.node_name = loaded.node_name;
    let app = secmon::App::start(cfg).await.unwrap();
    let http = reqwest::Client::new();
    let token = common::login(&http, app.addrs().graphql, "admin", ADMIN).await;
    assert!(!token.is_empty());
    let metrics = http
        .get(format!("http://{}/metrics", app.addrs().metrics))
        .bearer_auth(METRICS)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200, "METRICS_TOKEN from Vault refused");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn vault_problems_name_the_reference_and_never_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, ca, reads) = vault(dir.path()).await;
    let ca = ca.to_str().unwrap();
    let check = |env: &[(&str, &str)]| {
        tokio::task::block_in_place(|| config_check(dir.path(), CONFIG, env))
    };
    let base = |token: &'static str| {
        vec![
            ("VAULT_ADDR", addr.as_str()),
            ("VAULT_TOKEN", token),
            ("VAULT_CACERT", ca),
            ("JWT_SECRET", "vault:secret/secmon#jwt_secret"),
        ]
    };
    let assert_no_secret = |text: &str| {
        for secret in [JWT, ADMIN, METRICS, "edge-7", "hooks.example.org", TOKEN] {
            assert!(!text.contains(secret), "{secret} printed in:\n{text}");
        }
    };

    // A token Vault refuses: every reference names itself and its key.
    let (code, stdout, stderr) = check(&base("hvs.wrong"));
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "vault:secret/secmon#jwt_secret: auth.jwt_secret: permission denied reading secret/secmon"
        ),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("vault:kv/team/hooks#url: notifications.channels[0].url: permission denied"),
        "{stderr}"
    );
    assert_no_secret(&(stdout + &stderr));

    // A key the secret does not have, a secret that does not exist, a
    // malformed reference.
    let mut env = base(TOKEN);
    env.push(("SECMON_ADMIN_PASSWORD", "vault:secret/secmon#nope"));
    env.push(("METRICS_TOKEN", "vault:secret/missing#token"));
    env.push(("DATABASE_URL", "vault:secret-secmon-db"));
    let (code, stdout, stderr) = check(&env);
    assert_eq!(code, 2, "{stdout}{stderr}");
    for needle in [
        "vault:secret/secmon#nope: auth.admin_password: key nope not found in secret/secmon",
        "vault:secret/missing#token: auth.metrics_token: no secret at secret/missing",
        "vault:secret-secmon-db: services.database_url: no #<key>: write vault:<mount>/<path>#<key>",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    assert_no_secret(&(stdout + &stderr));

    // A redirect is not followed: the token stays home, and the error names
    // the status, not where it pointed.
    let mut env = base(TOKEN);
    env.push(("METRICS_TOKEN", "vault:moved/secmon#token"));
    let (code, stdout, stderr) = check(&env);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains(
            "vault:moved/secmon#token: auth.metrics_token: Vault answered a redirect (HTTP 307)"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("LOCATION-SECRET") && !stderr.contains("stolen"),
        "{stderr}"
    );
    assert_eq!(reads.lock().unwrap().get("moved"), Some(&1));
    assert_eq!(
        reads.lock().unwrap().get("stolen"),
        None,
        "the token followed the redirect"
    );

    // A VAULT_ADDR with credentials in it is named by its host only.
    let with_user = addr.replace("https://", "https://ops:VAULTPASS@");
    let (code, _, stderr) = check(&[
        ("VAULT_ADDR", with_user.as_str()),
        ("VAULT_TOKEN", TOKEN),
        ("JWT_SECRET", "vault:secret/secmon#jwt_secret"),
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot reach Vault at https://localhost:"),
        "{stderr}"
    );
    assert!(!stderr.contains("VAULTPASS"), "{stderr}");

    // Without the private CA the server's certificate is not trusted.
    let env: Vec<_> = base(TOKEN)
        .into_iter()
        .filter(|(k, _)| *k != "VAULT_CACERT")
        .collect();
    let (code, _, stderr) = check(&env);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("vault:secret/secmon#jwt_secret: auth.jwt_secret: cannot reach Vault at")
            && stderr.contains("certificate"),
        "{stderr}"
    );

    // The token never crosses a network in clear; no token, no read.
    let (code, _, stderr) = check(&[
        ("VAULT_ADDR", "http://vault.internal:8200"),
        ("VAULT_TOKEN", TOKEN),
        ("JWT_SECRET", "vault:secret/secmon#jwt_secret"),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("must be https://"), "{stderr}");
    let (code, _, stderr) = check(&[
        ("VAULT_ADDR", addr.as_str()),
        ("JWT_SECRET", "vault:secret/secmon#jwt_secret"),
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("VAULT_TOKEN (services.vault_token) is not set"),
        "{stderr}"
    );
}

/// Datagrams the daemon sent to the notify socket, until `until` is seen.
fn notifications(socket: &UnixDatagram, until: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = text.lines().any(|l| l == until);
            seen.push(text);
            if done {
                return seen;
            }
        }
    }
    panic!("no {until} within {within:?}; got {seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_speaks_the_systemd_notify_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let daemon = Daemon::start_with(
        dir.path(),
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            // WatchdogSec=0.4: a keep-alive every 200 ms.
            ("WATCHDOG_USEC", "400000"),
        ],
    )
    .await;
    let started =
        tokio::task::block_in_place(|| notifications(&socket, "READY=1", Duration::from_secs(10)));
    let ready = started.last().unwrap();
    assert!(ready.contains("STATUS=serving: api "), "{ready}");

    let t0 = Instant::now();
    let mut pings = 0;
    while pings < 5 {
        let got = tokio::task::block_in_place(|| {
            notifications(&socket, "WATCHDOG=1", Duration::from_secs(2))
        });
        pings += got
            .iter()
            .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
            .count();
    }
    let elapsed = t0.elapsed();
    assert!(
        elapsed < Duration::from_millis(1600),
        "5 keep-alives took {elapsed:?} with WatchdogSec=0.4"
    );

    // `secmon health` is the probe containers use.
    let health_port = daemon.ports["health"].to_string();
    let health = |args: &[&str], env: &[(&str, &str)]| {
        Command::new(BIN)
            .env_clear()
            .envs(env.iter().copied())
            .arg("health")
            .args(args)
            .output()
            .unwrap()
    };
    let ok = tokio::task::block_in_place(|| health(&[], &[("HEALTH_PORT", &health_port)]));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let ready_url = format!("{}/ready", daemon.health);
    let ok = tokio::task::block_in_place(|| health(&["--url", &ready_url], &[]));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let pid = daemon.pid();
    let status = tokio::task::block_in_place(|| daemon.terminate());
    assert!(status.success(), "secmon {pid} ended with {status}");
    let stopping = tokio::task::block_in_place(|| {
        notifications(&socket, "STOPPING=1", Duration::from_secs(1))
    });
    assert!(stopping.last().unwrap().contains("STATUS=shutting down"));

    // Nothing listens any more: the probe fails and says where it looked.
    let down = tokio::task::block_in_place(|| health(&[], &[("HEALTH_PORT", &health_port)]));
    assert_eq!(down.status.code(), Some(1));
    let said = String::from_utf8_lossy(&down.stderr);
    assert!(
        said.contains(&format!("http://127.0.0.1:{health_port}/health")),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_script_takes_verified_rotated_backups_of_a_running_node() {
    secmon::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path()).await;
    let key = common::daemon::admin_key(dir.path());
    let body: String = (0..50)
        .map(|i| format!("{{\"message\":\"backup event {i}\"}}\n"))
        .collect();
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/ingest", daemon.api))
        .bearer_auth(&key)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/backup.sh");
    let out = dir.path().join("backups");
    for _ in 0..3 {
        // Whoever runs it with whatever umask: the backups stay private.
        let run = tokio::task::block_in_place(|| {
            Command::new("sh")
                .arg("-c")
                .arg("umask 000; exec \"$@\"")
                .arg("sh")
                .arg(script)
                .args(["--keep", "2", "--secmon", BIN, "--data-dir"])
                .arg(dir.path().join("data"))
                .arg(&out)
                .output()
                .unwrap()
        });
        assert!(
            run.status.success(),
            "backup.sh: {}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            String::from_utf8_lossy(&run.stdout).contains("(50 events, verified)"),
            "{}",
            String::from_utf8_lossy(&run.stdout)
        );
        // Names are by the second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        6,
        "two backups, their checksums and reports: {names:?}"
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join(&names[0])).unwrap()).unwrap();
    assert_eq!(report["events"], 50);
    assert_eq!(report["verified"], true);
    assert!(names[1].ends_with(".redb") && report["target"].as_str().unwrap().ends_with(&names[1]));
    // The checksum beside it is one sha256sum checks.
    let check = Command::new("sha256sum")
        .current_dir(&out)
        .args(["-c", &names[2]])
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out), 0o700, "DEST");
    for name in &names {
        assert_eq!(mode(&out.join(name)), 0o600, "{name}");
    }
    // Each backup is in the audit log, by the local user who asked.
    let audit = daemon
        .graphql(
            &common::bearer_client(&key),
            "{ auditLog(first: 100) { edges { node { action actor target after } } } }",
            json!({}),
        )
        .await;
    let backups: Vec<&Value> = audit["data"]["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["action"] == "backup.create")
        .collect();
    assert_eq!(backups.len(), 3, "{audit}");
    assert_eq!(backups[0]["node"]["after"]["events"], 50, "{audit}");
    assert!(
        backups[0]["node"]["actor"]
            .as_str()
            .unwrap()
            .contains("(uid "),
        "the kernel's word on who asked: {audit}"
    );
    // Nothing is left in the staging dir, and the node still serves.
    let staged = std::fs::read_dir(dir.path().join("data/backups"))
        .unwrap()
        .count();
    assert_eq!(staged, 0);
    let health = reqwest::get(format!("{}/health", daemon.health))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
