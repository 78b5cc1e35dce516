//! The real `secmon` binary as a child process: clean environment, free
//! ports, data in `cwd/data`, logs appended to `cwd/daemon.log`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_secmon");

/// An admin API key for the data dir `cwd/data`, created (offline, with
/// `secmon apikey create`) the first time and kept in `cwd/admin.key`.
pub fn admin_key(cwd: &Path) -> String {
    let file = cwd.join("admin.key");
    if let Ok(key) = std::fs::read_to_string(&file) {
        return key;
    }
    let out = Command::new(BIN)
        .current_dir(cwd)
        .env_clear()
        .args(["apikey", "create", "test-admin", "--role", "admin"])
        .args(["--data-dir", "data"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "apikey create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = v["key"].as_str().unwrap().to_owned();
    std::fs::write(&file, &key).unwrap();
    key
}

/// A running `secmon serve`. Dropping it kills the process (SIGKILL) so a
/// failing test leaves nothing behind.
pub struct Daemon {
    child: Option<Child>,
    /// Base URL of the API port, e.g. `http://127.0.0.1:41234`.
    pub api: String,
    /// Base URL of the health port.
    pub health: String,
    /// `data/ports.json`: every bound port by listener name.
    pub ports: Value,
    log: PathBuf,
}

impl Daemon {
    /// Starts `secmon serve` in `cwd` and waits until it has written
    /// `data/ports.json` (the last step of start-up: everything is listening).
    pub async fn start(cwd: &Path) -> Daemon {
        Daemon::start_with(cwd, &[]).await
    }

    /// [`Daemon::start`] with more environment variables (`SYSLOG_TCP_PORT=0`).
    pub async fn start_with(cwd: &Path, env: &[(&str, &str)]) -> Daemon {
        admin_key(cwd);
        let ports_file = cwd.join("data/ports.json");
        let _ = std::fs::remove_file(&ports_file);
        let log = cwd.join("daemon.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(BIN)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GRAPHQL_PORT", "0")
            .env("WEBSOCKET_PORT", "0")
            .env("METRICS_PORT", "0")
            .env("HEALTH_PORT", "0")
            .env("SYSLOG_UDP_PORT", "")
            .env("SYSLOG_TCP_PORT", "")
            .env("SYSLOG_TLS_PORT", "")
            .envs(env.iter().copied())
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut daemon = Daemon {
            child: Some(child),
            api: String::new(),
            health: String::new(),
            ports: Value::Null,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let ports: Value = loop {
            if let Ok(bytes) = std::fs::read(&ports_file)
                && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
                && v["graphql"].is_u64()
                && v["health"].is_u64()
            {
                break v;
            }
            if let Some(status) = daemon.child_mut().try_wait().unwrap() {
                panic!(
                    "secmon exited during start-up ({status}):\n{}",
                    daemon.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "secmon did not write ports.json within 30 s:\n{}",
                daemon.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        daemon.api = format!("http://127.0.0.1:{}", ports["graphql"]);
        daemon.health = format!("http://127.0.0.1:{}", ports["health"]);
        daemon.ports = ports;
        daemon
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().unwrap()
    }

    /// The directory it runs in (`data/`, `daemon.log`, `admin.key`).
    pub fn dir(&self) -> &Path {
        self.log.parent().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL: no chance to flush or drain anything.
    pub fn kill9(mut self) {
        signal(self.pid(), "-KILL");
        let status = self.child.take().unwrap().wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "secmon was not killed by SIGKILL but ended with {status}:\n{}",
            self.log_tail()
        );
    }

    /// SIGTERM and wait for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        signal(self.pid(), "-TERM");
        self.child.take().unwrap().wait().unwrap()
    }

    /// The last lines the daemon logged (all runs in this directory).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Everything the daemon logged (all runs in this directory).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Logs in over GraphQL; the access token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let api = self.api.trim_start_matches("http://").parse().unwrap();
        super::login(&reqwest::Client::new(), api, username, password).await
    }

    pub async fn graphql(&self, http: &reqwest::Client, query: &str, variables: Value) -> Value {
        let v: Value = http
            .post(format!("{}/graphql", self.api))
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(v["errors"].is_null(), "graphql error: {v}");
        v
    }

    /// The newest `first` audit entries, newest first, each with `seq action
    /// actor sourceIp target after` (read with the admin key).
    pub async fn audit_log(&self, first: usize) -> Vec<Value> {
        let admin = super::bearer_client(&admin_key(self.dir()));
        let v = self
            .graphql(
                &admin,
                "query($n: Int) { auditLog(first: $n) { edges { node { seq action actor sourceIp target after } } } }",
                json!({ "n": first }),
            )
            .await;
        v["data"]["auditLog"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"].clone())
            .collect()
    }

    /// `system { indexLag eventsStored lastSeq }`.
    pub async fn system(&self, http: &reqwest::Client) -> Value {
        let v = self
            .graphql(
                http,
                "{ system { indexLag eventsStored lastSeq } }",
                json!({}),
            )
            .await;
        v["data"]["system"].clone()
    }

    /// Polls `system` until every stored event is searchable; returns `system`.
    pub async fn wait_indexed(&self, http: &reqwest::Client, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.system(http).await;
            if v["indexLag"] == 0 {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "the index did not catch up within {within:?}: {v}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every stored event's message, read through search (`query`) a page of
    /// 1000 at a time.
    pub async fn all_messages(&self, http: &reqwest::Client, query: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let v = self
                .graphql(
                    http,
                    "query($q: String, $after: String) { events(query: $q, first: 1000, after: $after) { \
                       totalCount edges { node { message } } pageInfo { hasNextPage endCursor } } }",
                    json!({"q": query, "after": after}),
                )
                .await;
            let events = &v["data"]["events"];
            for edge in events["edges"].as_array().unwrap() {
                out.push(edge["node"]["message"].as_str().unwrap().to_owned());
            }
            if events["pageInfo"]["hasNextPage"] != true {
                return out;
            }
            after = Some(events["pageInfo"]["endCursor"].as_str().unwrap().to_owned());
        }
    }

    pub async fn search_total(&self, http: &reqwest::Client, query: &str) -> u64 {
        let v = self
            .graphql(
                http,
                "query($q: String) { events(query: $q, first: 1) { totalCount } }",
                json!({"q": query}),
            )
            .await;
        v["data"]["events"]["totalCount"].as_u64().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig} {pid} failed");
}

/// An HTTP client (reqwest is built without a default crypto provider).
/// A client with `timeout` that authenticates as admin on the data dir
/// `cwd/data` (see [`admin_key`]).
pub fn http_client(cwd: &Path, timeout: Duration) -> reqwest::Client {
    // Err means a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {}", admin_key(cwd)).parse().unwrap();
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .timeout(timeout)
        .default_headers(headers)
        .build()
        .unwrap()
}

/// A small deterministic PRNG (splitmix64), so a failing run can be replayed
/// from its printed seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// The seed from `var` if set, else from the clock.
pub fn seed_from_env(var: &str) -> u64 {
    match std::env::var(var) {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{var}={s:?} is not a u64")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}
