//! Secrets never leak (issue 17, item 7), against the real binary:
//! - notification channels and replication sinks whose URLs carry
//!   credentials (a Slack webhook's secret path, `user:pass@` for
//!   Alertmanager, SMTP, Redis and Postgres) all pointed at a closed port:
//!   their failures show in `/ready` as states only, in GraphQL `lastError`
//!   without URL or credential, and nowhere in the daemon's log;
//! - backups, taken through the daemon and offline, under `umask 000`, are
//!   mode 0600, and each one (and a refused one) is in the audit log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::assert_serving;
use crate::common::daemon::{self, BIN, Daemon};

/// What the node may use at most through these tests, in MiB.
const MAX_RSS_MIB: u64 = 256;

/// Every secret of the configuration below.
const SECRETS: [&str; 7] = [
    "SLACK-SECRET-PATH",
    "SLACKPW",
    "TEAMS-SIG",
    "AMPASS",
    "SMTPPASS",
    "REDISPASS",
    "PGPASS",
];

/// A port held for the test, bound but never listening: connections to it
/// are refused, and no other test can take it meanwhile.
fn closed_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} in {what}:\n{text}");
    }
}

/// Polls `f` every 50 ms until it gives `Some`, for at most `within`.
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_channels_and_sinks_never_show_their_urls() {
    secmon::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("rule.yml"),
        crate::common::keyword_rule(
            "Hostile Marker",
            "5a0c6f1e-3b9d-4c2a-8e7f-6d5c4b3a2910",
            "hostile-marker",
            "high",
        ),
    )
    .unwrap();
    let (_held, port) = closed_port();
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.yaml"),
        format!(
            "detection:\n  builtin: false\n  rules: ['{rules}']\n\
             replication:\n  retry_initial_ms: 50\n  retry_max_seconds: 1\n\
             notifications:\n  channels:\n\
             \x20   - {{name: slack, kind: slack, url: 'http://hook:SLACKPW@127.0.0.1:{port}/services/T0/B0/SLACK-SECRET-PATH'}}\n\
             \x20   - {{name: teams, kind: teams, url: 'http://127.0.0.1:{port}/workflows/x/triggers/manual/paths/invoke?api-version=1&sig=TEAMS-SIG'}}\n\
             \x20   - {{name: am, kind: alertmanager, url: 'http://am:AMPASS@127.0.0.1:{port}'}}\n\
             \x20   - {{name: mail, kind: email, smtp_url: 'smtp://alerts:SMTPPASS@127.0.0.1:{port}', from: secmon@example.org, to: [soc@example.org]}}\n",
            rules = rules.display(),
        ),
    )
    .unwrap();
    let redis = format!("redis://:REDISPASS@127.0.0.1:{port}/0");
    let postgres = format!("postgres://secmon:PGPASS@127.0.0.1:{port}/secmon?sslmode=disable");
    let daemon = Daemon::start_with(
        dir.path(),
        &[
            ("REDIS_URL", redis.as_str()),
            ("DATABASE_URL", postgres.as_str()),
        ],
    )
    .await;
    let http = daemon::http_client(dir.path(), Duration::from_secs(10));

    // An alert for every channel; its user name is what an attacker wrote.
    let event = json!({
        "message": "hostile-marker",
        "user.name": "<!channel> <https://evil|reset>",
        "source.ip": "10.66.0.1",
    });
    let resp = http
        .post(format!("{}/api/v1/ingest", daemon.api))
        .body(format!("{event}\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Every channel and sink failed at least once.
    let anon = reqwest::Client::new();
    let ready = until("every failure in /ready", Duration::from_secs(30), || {
        let anon = anon.clone();
        let url = format!("{}/ready", daemon.health);
        async move {
            let text = anon.get(url).send().await.ok()?.text().await.ok()?;
            let v: Value = serde_json::from_str(&text).ok()?;
            let c = &v["components"];
            let failing = ["slack", "teams", "am", "mail"]
                .iter()
                .all(|n| c["notifications"]["channels"][n]["failing"] == true)
                && ["redis", "postgres"]
                    .iter()
                    .all(|n| c["replication"]["sinks"][n]["failing"] == true);
            failing.then_some(text)
        }
    })
    .await;
    assert_no_secret("/ready", &ready);
    for word in ["error", "127.0.0.1", "refused"] {
        assert!(
            !ready.contains(word),
            "/ready shows states, not error text: {ready}"
        );
    }

    // Admins see why, without URL or credential.
    let v = until("each delivery's last error", Duration::from_secs(30), || {
        let http = http.clone();
        let api = daemon.api.clone();
        async move {
            let v: Value = http
                .post(format!("{api}/graphql"))
                .json(&json!({"query": "{ notifications(first: 10) { edges { node { channel lastError attempts } } } \
                                         notificationChannels { name lastError failures } }"}))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let edges = v["data"]["notifications"]["edges"].as_array()?;
            (edges.len() == 4 && edges.iter().all(|e| e["node"]["lastError"].is_string()))
                .then_some(v)
        }
    })
    .await;
    let text = v.to_string();
    assert_no_secret("GraphQL", &text);
    for edge in v["data"]["notifications"]["edges"].as_array().unwrap() {
        let error = edge["node"]["lastError"].as_str().unwrap();
        assert!(
            !error.contains("/services/") && !error.contains("sig="),
            "{error}"
        );
        if edge["node"]["channel"] != "mail" {
            assert!(
                error.contains("cannot connect"),
                "says what went wrong: {error}"
            );
        }
    }

    // The log said each failed, and named no secret.
    let log = until("the failures logged", Duration::from_secs(30), || {
        let log = daemon.log();
        let logged = |needles: [String; 2]| {
            log.lines()
                .any(|l| needles.iter().all(|n| l.contains(n.as_str())))
        };
        let all = ["slack", "teams", "am", "mail"]
            .iter()
            .all(|c| logged(["notification failed".into(), format!("\"channel\":\"{c}\"")]))
            && ["redis", "postgres"]
                .iter()
                .all(|s| logged(["replication failed".into(), format!("\"sink\":\"{s}\"")]));
        std::future::ready(all.then_some(log.clone()))
    })
    .await;
    assert_no_secret("the daemon log", &log);
    assert_serving(&daemon, MAX_RSS_MIB).await;
}

/// `secmon backup` as `sh -c 'umask 000; …'`: stdout, stderr, success.
fn backup(dir: &Path, to: &Path) -> (bool, String) {
    let out = Command::new("sh")
        .current_dir(dir)
        .arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(BIN)
        .args(["backup", "--data-dir", "data"])
        .arg(to)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

async fn audited_backups(daemon: &Daemon) -> Vec<Value> {
    daemon
        .audit_log(200)
        .await
        .into_iter()
        .filter(|n| n["action"].as_str().unwrap().starts_with("backup."))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_are_private_whatever_the_umask_and_each_is_audited() {
    secmon::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();

    // Through the running daemon (the control socket).
    let daemon = Daemon::start(dir.path()).await;
    let online = out.join("online.redb");
    let (ok, said) = tokio::task::block_in_place(|| backup(dir.path(), &online));
    assert!(ok, "{said}");
    assert_eq!(mode(&online), 0o600, "{:o}", mode(&online));
    // A directory every user may write to (no sticky bit) is refused, and
    // the refusal is audited too.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let (ok, said) = tokio::task::block_in_place(|| backup(dir.path(), &shared.join("b.redb")));
    assert!(!ok, "{said}");
    assert!(said.contains("sticky"), "{said}");
    assert!(std::fs::read_dir(&shared).unwrap().next().is_none());
    assert_serving(&daemon, MAX_RSS_MIB).await;
    assert!(daemon.terminate().success());

    // Offline: no daemon, the command line opens the data dir itself.
    let offline = out.join("offline.redb");
    let (ok, said) = tokio::task::block_in_place(|| backup(dir.path(), &offline));
    assert!(ok, "{said}");
    assert_eq!(mode(&offline), 0o600, "{:o}", mode(&offline));

    let daemon = Daemon::start(dir.path()).await;
    let entries = audited_backups(&daemon).await;
    let summary: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let display = |p: &Path| p.display().to_string();
    assert_eq!(
        summary,
        [
            ("backup.create".to_owned(), display(&offline)),
            ("backup.failed".to_owned(), display(&shared.join("b.redb"))),
            ("backup.create".to_owned(), display(&online)),
        ],
        "newest first: {entries:?}"
    );
    assert!(entries[2]["after"]["bytes"].as_u64().unwrap() > 0);
    assert!(
        entries[2]["actor"].as_str().unwrap().contains("(uid "),
        "the socket's peer: {entries:?}"
    );
    assert!(entries[0]["actor"].as_str().unwrap().starts_with("local:"));
    assert_serving(&daemon, MAX_RSS_MIB).await;
}
