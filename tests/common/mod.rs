//! Test harness: a real App on port 0 in a temp dir, and a small client.
#![allow(dead_code)]

pub mod daemon;
pub mod ws;

use std::path::Path;
use std::time::{Duration, Instant};

use secmon::App;
use secmon::config::{Config, Secret};
use serde_json::{Value, json};

/// The password of the `admin` user every test node starts with.
pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// A development config on free ports with its data in `dir`.
pub fn config(dir: &Path) -> Config {
    let mut cfg = Config {
        data_dir: dir.to_owned(),
        ..Config::default()
    };
    cfg.ports.graphql = 0;
    cfg.ports.websocket = 0;
    cfg.ports.metrics = 0;
    cfg.ports.health = 0;
    cfg.ports.syslog_udp = None;
    cfg.ports.syslog_tcp = None;
    cfg.ports.syslog_tls = None;
    cfg.index.commit_interval_ms = 100;
    cfg.auth.admin_password = Some(Secret::new(ADMIN_PASSWORD));
    cfg
}

/// [`config`] under `dir/data` whose only rule is `rule` (Sigma YAML,
/// written to `dir/rules/rule.yml`): no built-in rules.
pub fn config_with_rule(dir: &Path, rule: &str) -> Config {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("rule.yml"), rule).unwrap();
    let mut cfg = config(&dir.join("data"));
    cfg.detection.builtin = false;
    cfg.detection.rules = vec![rules];
    cfg
}

/// A Sigma rule matching every event whose text holds `keyword`.
pub fn keyword_rule(title: &str, id: &str, keyword: &str, level: &str) -> String {
    format!(
        "title: {title}\nid: {id}\nlogsource:\n    product: linux\n\
         detection:\n    keywords:\n        - {keyword}\n    condition: keywords\n\
         level: {level}\n"
    )
}

/// A client that sends `Authorization: Bearer <credential>`.
pub fn bearer_client(credential: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!("Bearer {credential}").parse().unwrap();
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

pub struct Node {
    pub app: App,
    /// Logged in as `admin`.
    pub http: reqwest::Client,
    /// No credentials.
    pub anon: reqwest::Client,
    /// The admin's access token.
    pub token: String,
}

impl Node {
    /// Starts the app and logs in as `admin`.
    pub async fn start(cfg: Config) -> Node {
        let app = App::start(cfg).await.expect("app starts");
        let anon = reqwest::Client::new();
        let token = login(&anon, app.addrs().graphql, "admin", ADMIN_PASSWORD).await;
        Node {
            app,
            http: bearer_client(&token),
            anon,
            token,
        }
    }

    /// A client logged in as `username`.
    pub async fn client_for(&self, username: &str, password: &str) -> reqwest::Client {
        let token = login(&self.anon, self.app.addrs().graphql, username, password).await;
        bearer_client(&token)
    }

    pub fn api(&self, path: &str) -> String {
        format!("http://{}{path}", self.app.addrs().graphql)
    }

    pub async fn ingest(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let resp = self
            .http
            .post(self.api("/api/v1/ingest"))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Runs a GraphQL query and returns the whole response (data and errors).
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        self.http
            .post(self.api("/graphql"))
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until every stored event is searchable.
    pub async fn wait_indexed(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self
                .graphql("{ system { indexLag eventsStored } }", json!({}))
                .await;
            if v["data"]["system"]["indexLag"] == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "index did not catch up: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until exactly `n` events are stored; more is a failure (a
    /// source stored something twice).
    pub async fn wait_stored(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.graphql("{ system { eventsStored } }", json!({})).await;
            let stored = v["data"]["system"]["eventsStored"]
                .as_u64()
                .unwrap_or_else(|| panic!("{v}"));
            assert!(stored <= n, "more events than sent: {stored} > {n}");
            if stored == n {
                return;
            }
            assert!(Instant::now() < deadline, "{stored} of {n} events stored");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The metrics page (Prometheus text).
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("http://{}/metrics", self.app.addrs().metrics))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn search_total(&self, query: &str) -> u64 {
        let v = self
            .graphql(
                "query($q: String) { events(query: $q, first: 1) { totalCount } }",
                json!({"q": query}),
            )
            .await;
        v["data"]["events"]["totalCount"]
            .as_u64()
            .unwrap_or_else(|| panic!("{v}"))
    }
}

/// Waits (60 s at most) until `check` holds; fails with what it last saw.
pub async fn eventually<T: std::fmt::Debug, F: Future<Output = (bool, T)>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, seen) = check().await;
        if ok {
            return seen;
        }
        assert!(Instant::now() < deadline, "{what}: last saw {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP port free on 127.0.0.1 now (for a server the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Logs in over GraphQL; the access token.
pub async fn login(
    http: &reqwest::Client,
    api: std::net::SocketAddr,
    username: &str,
    password: &str,
) -> String {
    login_pair(http, api, username, password).await.0
}

/// Logs in over GraphQL; the access token and the refresh token.
pub async fn login_pair(
    http: &reqwest::Client,
    api: std::net::SocketAddr,
    username: &str,
    password: &str,
) -> (String, String) {
    let v: Value = http
        .post(format!("http://{api}/graphql"))
        .json(&json!({
            "query": "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken refreshToken } }",
            "variables": {"u": username, "p": password},
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = |name: &str| {
        v["data"]["login"][name]
            .as_str()
            .unwrap_or_else(|| panic!("login as {username} failed: {v}"))
            .to_owned()
    };
    (token("accessToken"), token("refreshToken"))
}

/// `../shared/data/...` relative to the repository root.
pub fn shared_data(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel)
}

/// One NDJSON line `{"message": line}` per line of a log file.
pub fn log_as_ndjson(path: &Path) -> (usize, String) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut n = 0;
    let mut body = String::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        body.push_str(&json!({ "message": line }).to_string());
        body.push('\n');
        n += 1;
    }
    (n, body)
}

/// A network namespace of the test's own (smk100..smk199; needs root),
/// deleted when dropped: nftables changes stay inside it.
pub struct Netns(pub String);

impl Netns {
    pub fn create() -> Netns {
        let start = std::process::id() % 100;
        let name = (0..100)
            .map(|i| format!("smk{}", 100 + (start + i) % 100))
            .find(|name| {
                std::process::Command::new("ip")
                    .args(["netns", "add", name])
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .expect("a free network namespace smk100..smk199 (as root)");
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// A database of its own on the machine's Postgres, dropped at the end.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub fn create() -> TestDb {
        let name = format!(
            "secmon_t_{}",
            ulid::Ulid::generate().to_string().to_lowercase()
        );
        psql("test", &format!("CREATE DATABASE {name}"));
        TestDb { name }
    }

    pub fn url(&self) -> String {
        format!(
            "postgres://root@127.0.0.1:5432/{}?sslmode=disable",
            self.name
        )
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        psql(
            "test",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// Runs `sql` on the machine's Postgres database `db` as root; panics on failure.
pub fn psql(db: &str, sql: &str) {
    let out = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "root",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
