#![allow(dead_code)] // each bench uses part of it
//! What the end-to-end benches share: a real node on free ports with one
//! keyword rule, logged in as admin.

use std::fmt::Display;
use std::net::SocketAddr;

use secmon::App;
use secmon::config::{Config, Secret};
use serde_json::{Value, json};

const PASSWORD: &str = "bench-admin-password";

pub fn ok<T, E: Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// A node running in `dir`, logged in.
pub struct Node {
    pub app: App,
    pub api: SocketAddr,
    pub http: reqwest::Client,
    pub token: String,
}

impl Node {
    /// A node whose only rule raises a `level` alert for each event with
    /// `keyword` in it; `adjust` changes the rest of the config.
    pub async fn start(
        dir: &std::path::Path,
        (keyword, level): (&str, &str),
        adjust: impl FnOnce(&mut Config),
    ) -> Node {
        let rules = dir.join("rules");
        ok(std::fs::create_dir_all(&rules));
        ok(std::fs::write(
            rules.join("bench.yml"),
            format!(
                "title: Bench {keyword}\nid: 6a1e1c3e-6d1f-4b0e-9a53-3c1f7e9b2d10\n\
                 logsource:\n    product: linux\ndetection:\n    keywords:\n        - {keyword}\n\
                 \x20   condition: keywords\nlevel: {level}\n"
            ),
        ));
        let mut cfg = Config {
            data_dir: dir.join("data"),
            ..Config::default()
        };
        let ports = &mut cfg.ports;
        (ports.graphql, ports.websocket, ports.metrics, ports.health) = (0, 0, 0, 0);
        (ports.syslog_udp, ports.syslog_tcp, ports.syslog_tls) = (None, None, None);
        cfg.auth.admin_password = Some(Secret::new(PASSWORD));
        cfg.auth.rate_limit.burst = 1_000_000;
        cfg.detection.builtin = false;
        cfg.detection.rules = vec![rules];
        adjust(&mut cfg);
        let app = ok(App::start(cfg).await);
        let api = app.addrs().graphql;
        let http = reqwest::Client::new();
        let v: Value = ok(ok(http
            .post(format!("http://{api}/graphql"))
            .json(&json!({
                "query": "mutation($p: String!) { login(username: \"admin\", password: $p) { accessToken } }",
                "variables": {"p": PASSWORD},
            }))
            .send()
            .await)
        .json()
        .await);
        let token = v["data"]["login"]["accessToken"]
            .as_str()
            .unwrap_or_else(|| panic!("login: {v}"))
            .to_owned();
        Node {
            app,
            api,
            http,
            token,
        }
    }

    /// The id of the newest alert (panics without one: the bench would
    /// measure nothing).
    pub async fn newest_alert(&self) -> u64 {
        let v: Value = ok(ok(self
            .http
            .post(format!("http://{}/graphql", self.api))
            .bearer_auth(&self.token)
            .json(&json!({"query": "{ alerts(first: 1) { edges { node { id } } } }"}))
            .send()
            .await)
        .json()
        .await);
        v["data"]["alerts"]["edges"][0]["node"]["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no alert was raised: {v}"))
    }

    /// Posts NDJSON to the ingest API; returns once it is acknowledged.
    pub async fn ingest(&self, body: String) {
        let resp = ok(self
            .http
            .post(format!("http://{}/api/v1/ingest", self.api))
            .bearer_auth(&self.token)
            .body(body)
            .send()
            .await);
        assert!(resp.status().is_success(), "{}", resp.status());
    }
}
