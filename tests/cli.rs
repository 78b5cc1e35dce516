//! The real `secmon` binary: start with no configuration, graceful
//! shutdown on SIGTERM, production refusal, config check, validate-ports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::daemon::{BIN, Daemon};

/// A command with a clean environment: no inherited secmon variables, run
/// from `cwd` (so no ./config is picked up unless the test puts one there).
fn secmon(cwd: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}

fn free_ports(cmd: &mut Command) -> &mut Command {
    cmd.env("GRAPHQL_PORT", "0")
        .env("WEBSOCKET_PORT", "0")
        .env("METRICS_PORT", "0")
        .env("HEALTH_PORT", "0")
        .env("SYSLOG_UDP_PORT", "")
        .env("SYSLOG_TCP_PORT", "")
        .env("SYSLOG_TLS_PORT", "")
}

async fn graphql(cwd: &std::path::Path, api: &str, query: &str) -> Value {
    secmon::install_crypto_provider();
    common::daemon::http_client(cwd, Duration::from_secs(30))
        .post(format!("{api}/graphql"))
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn serves_with_no_config_and_drains_on_sigterm() {
    // reqwest is built without a default crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    secmon::install_crypto_provider();
    let daemon = Daemon::start(dir.path()).await;
    let body: String = (0..1000)
        .map(|i| json!({"message": format!("event {i}")}).to_string() + "\n")
        .collect();
    let resp = common::daemon::http_client(dir.path(), Duration::from_secs(30))
        .post(format!("{}/api/v1/ingest", daemon.api))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        dir.path().join("data/jwt_secret").exists(),
        "development keeps a generated JWT secret"
    );
    // With no user, development creates `admin` with a generated password,
    // in a file only the owner reads; the log names the file, not the password.
    let password_file = dir.path().join("data/admin_password");
    let password = std::fs::read_to_string(&password_file).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&password_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o077, 0);
    let token = daemon.login("admin", &password).await;
    assert!(!token.is_empty());
    assert!(
        !daemon.log().contains(&password),
        "the password reached the log"
    );
    let started = Instant::now();
    let status = daemon.terminate();
    let took = started.elapsed();
    let stderr = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert!(status.success(), "exit {status:?}\n{stderr}");
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    // JSON logs on stderr.
    let first: Value = serde_json::from_str(stderr.lines().next().unwrap()).unwrap();
    assert!(first["level"].is_string(), "{first}");

    let daemon = Daemon::start(dir.path()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = graphql(
            dir.path(),
            &daemon.api,
            "{ system { eventsStored indexLag } events(query: \"event\") { totalCount } }",
        )
        .await;
        assert_eq!(v["data"]["system"]["eventsStored"], 1000, "{v}");
        if v["data"]["events"]["totalCount"] == 1000 {
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = daemon.terminate();
    assert!(status.success());
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn production_refuses_to_start_naming_every_missing_item() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(free_ports(&mut secmon(dir.path()))
        .env("ENVIRONMENT", "production")
        .env("TLS_CERT_PATH", dir.path().join("none.crt"))
        .env("TLS_KEY_PATH", dir.path().join("none.key"))
        .arg("serve"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let all = text(&out);
    for needle in ["JWT_SECRET", "none.crt", "none.key", "METRICS_TOKEN"] {
        assert!(all.contains(needle), "missing {needle} in\n{all}");
    }
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created before the config is valid"
    );
}

#[test]
fn config_check_prints_the_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(secmon(dir.path())
        .env("JWT_SECRET", "s3cr3t-value-that-must-not-leak-0123456789")
        .env("GRAPHQL_PORT", "8123")
        .args(["config", "check"]));
    assert!(out.status.success(), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("8123"), "{all}");
    assert!(!all.contains("s3cr3t"), "secret leaked:\n{all}");
    assert!(all.contains("***"), "{all}");

    let out = run(secmon(dir.path())
        .env("GRAPHQL_PORT", "eighty")
        .args(["config", "check"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("GRAPHQL_PORT"), "{}", text(&out));
}

#[test]
fn validate_ports_on_the_shipped_config() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let dir = tempfile::tempdir().unwrap();
    let out = run(secmon(dir.path())
        .arg("validate-ports")
        .arg("--config")
        .arg(&config)
        .arg("development"));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(text(&out).matches('✓').count(), 5, "{}", text(&out));

    // Production without TLS: HTTPS rule fails, exit 1.
    let out = run(secmon(dir.path())
        .env("TLS_ENABLED", "false")
        .env("METRICS_TOKEN", "0123456789abcdef0123456789abcdef")
        .arg("validate-ports")
        .arg("--config")
        .arg(&config)
        .arg("production"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains('✗'), "{}", text(&out));
}

fn json_out(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

fn data_arg(cwd: &Path) -> [String; 2] {
    ["--data-dir".into(), cwd.join("data").display().to_string()]
}

#[tokio::test]
async fn offline_import_search_backup_while_serving_restore_and_rebuild() {
    secmon::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let log = common::shared_data("loghub-2.0/2k_dataset/OpenSSH/OpenSSH_2k.log");

    // Offline import parses the syslog lines.
    let report = json_out(&run(secmon(cwd)
        .arg("ingest")
        .arg(&log)
        .args(data_arg(cwd))));
    assert_eq!(report["accepted"], 2000, "{report}");
    assert_eq!(report["indexed_up_to"], 2000, "{report}");
    let out = run(secmon(cwd)
        .args(["search", "\"Failed password\"", "--limit", "3"])
        .args(data_arg(cwd)));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    assert!(text(&out).contains("3 of 520 events"), "{}", text(&out));
    let out = run(secmon(cwd)
        .args([
            "search",
            "source.ip:183.62.140.253 AND event.outcome:failure",
            "--json",
        ])
        .args(data_arg(cwd)));
    let first: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["dataset"], "sshd", "{first}");

    // A daemon holds the data dir: offline commands are refused, backup goes through it.
    let daemon = Daemon::start(cwd).await;
    let out = run(secmon(cwd).args(["search", "x"]).args(data_arg(cwd)));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("in use by another secmon process"),
        "{}",
        text(&out)
    );
    let body: String = (0..100)
        .map(|i| json!({"message": format!("while serving {i}")}).to_string() + "\n")
        .collect();
    let resp = common::daemon::http_client(cwd, Duration::from_secs(30))
        .post(format!("{}/api/v1/ingest", daemon.api))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let backup = cwd.join("backup.redb");
    let report = json_out(&run(secmon(cwd)
        .arg("backup")
        .arg(&backup)
        .args(data_arg(cwd))));
    assert_eq!(report["events"], 2100, "{report}");
    let out = run(secmon(cwd).arg("restore").arg(&backup).args(data_arg(cwd)));
    assert!(
        !out.status.success(),
        "restore must refuse a data dir in use"
    );
    assert!(
        text(&out).contains("in use by another secmon process"),
        "{}",
        text(&out)
    );
    let status = daemon.terminate();
    assert!(status.success());

    // More data after the backup, then restore: back to the backup's content.
    let extra = cwd.join("extra.ndjson");
    std::fs::write(&extra, "{\"message\":\"after backup\"}\nnot json\n").unwrap();
    let out = run(secmon(cwd)
        .arg("ingest")
        .arg(&extra)
        .args(["--format", "ndjson"])
        .args(data_arg(cwd)));
    assert_eq!(
        out.status.code(),
        Some(3),
        "a partial import says so: {}",
        text(&out)
    );
    let report = json_out(&run(secmon(cwd)
        .arg("restore")
        .arg(&backup)
        .args(data_arg(cwd))));
    assert_eq!(report["events"], 2100, "{report}");
    let out = run(secmon(cwd)
        .args(["search", "\"after backup\""])
        .args(data_arg(cwd)));
    assert!(text(&out).contains("0 of 0 events"), "{}", text(&out));
    let out = run(secmon(cwd)
        .args(["search", "\"while serving\""])
        .args(data_arg(cwd)));
    assert!(text(&out).contains("of 100 events"), "{}", text(&out));

    // A lost index is rebuilt on demand.
    std::fs::remove_dir_all(cwd.join("data/index")).unwrap();
    let out = run(secmon(cwd).args(["index", "rebuild"]).args(data_arg(cwd)));
    assert!(
        text(&out).contains("index rebuilt up to seq 2100"),
        "{}",
        text(&out)
    );
    let out = run(secmon(cwd)
        .args(["search", "\"Failed password\""])
        .args(data_arg(cwd)));
    assert!(text(&out).contains("of 520 events"), "{}", text(&out));
}

/// `secmon init`, then users, API keys and the audit log from the command
/// line: offline on the data dir, and through a running daemon.
#[tokio::test]
async fn init_users_api_keys_and_audit_from_the_command_line() {
    secmon::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let out = run(secmon(cwd).arg("init").args(data_arg(cwd)));
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("user admin created; its password (shown once): "))
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();
    for file in [
        "jwt_secret",
        "tls/ca.crt",
        "tls/server.crt",
        "tls/server.key",
    ] {
        assert!(cwd.join("data").join(file).exists(), "{file}");
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(cwd.join("data/tls/server.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "the key is readable by its owner only");
    // Again: nothing is replaced, no second admin.
    let again = text(&run(secmon(cwd).arg("init").args(data_arg(cwd))));
    assert!(again.contains("users exist already"), "{again}");
    assert!(again.contains("development TLS (kept)"), "{again}");

    let add = |name: &str, role: &str, stdin: Option<&str>| {
        let mut cmd = secmon(cwd);
        cmd.args(["user", "add", name, "--role", role])
            .args(data_arg(cwd));
        if let Some(password) = stdin {
            use std::io::Write;
            cmd.arg("--password-stdin")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
            child.wait_with_output().unwrap()
        } else {
            run(&mut cmd)
        }
    };
    let bob = json_out(&add("bob", "viewer", Some("bob-password-1234")));
    assert_eq!(
        bob,
        json!({"username": "bob", "role": "viewer", "password": null})
    );
    let carol = json_out(&add("carol", "analyst", None));
    assert_eq!(carol["password"].as_str().unwrap().len(), 43, "{carol}");
    let dup = add("bob", "viewer", Some("bob-password-1234"));
    assert!(!dup.status.success());
    assert!(
        text(&dup).contains("user `bob` already exists"),
        "{}",
        text(&dup)
    );
    let short = add("dave", "viewer", Some("short"));
    assert!(
        text(&short).contains("at least 12 characters"),
        "{}",
        text(&short)
    );

    let key = json_out(&run(secmon(cwd)
        .args(["apikey", "create", "filebeat", "--role", "ingest"])
        .args(data_arg(cwd))));
    let secret = key["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("smk_"), "{key}");

    // With a daemon running, the same commands go through it.
    let daemon = Daemon::start(cwd).await;
    let token = daemon.login("admin", &password).await;
    let ingest = common::bearer_client(&secret)
        .post(format!("{}/api/v1/ingest", daemon.api))
        .body("{\"message\":\"from the shipper\"}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(ingest.status(), 200);
    let revoked = json_out(&run(secmon(cwd)
        .args(["apikey", "revoke", key["id"].as_str().unwrap()])
        .args(data_arg(cwd))));
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let refused = common::bearer_client(&secret)
        .post(format!("{}/api/v1/ingest", daemon.api))
        .body("{\"message\":\"after the revocation\"}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        401,
        "the daemon's cache saw the revocation"
    );
    json_out(&run(secmon(cwd)
        .args(["user", "disable", "bob"])
        .args(data_arg(cwd))));
    let users = json_out(&run(secmon(cwd).args(["user", "list"]).args(data_arg(cwd))));
    let names: Vec<(&str, bool)> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["username"].as_str().unwrap(), u["disabled"] == true))
        .collect();
    assert_eq!(names, [("admin", false), ("bob", true), ("carol", false)]);
    let keys = json_out(&run(secmon(cwd)
        .args(["apikey", "list"])
        .args(data_arg(cwd))));
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .all(|k| k.get("key").is_none()),
        "a key is never shown again: {keys}"
    );
    assert!(!token.is_empty());

    let out = run(secmon(cwd).args(["audit", "verify"]).args(data_arg(cwd)));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).starts_with("audit log intact: "),
        "{}",
        text(&out)
    );
    let status = daemon.terminate();
    assert!(status.success());
}
