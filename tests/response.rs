//! Active response against a real firewall: nftables in a network
//! namespace the test creates, where a blocked source really cannot connect
//! and an allow-listed one can.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Node, config_with_rule, eventually, keyword_rule};
use secmon::config::Config;
use serde_json::{Value, json};

const RULE_ID: &str = "3c9e1f0a-7b2d-4e8f-a1c6-5d4b3a291807";

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace `ns` with a veth pair: the host side has `.1` (the
/// attacker) and `.3` (the admin, allow-listed), the namespace `.2`, where
/// a TCP server listens and secmon's nftables table lives.
struct Netns {
    name: String,
    net: u8,
    server: Option<Child>,
}

impl Netns {
    fn create() -> Netns {
        // Tests run in parallel processes: the first free number is ours
        // (`ip netns add` fails on an existing name).
        let start = std::process::id() % 100;
        let net = (0..100)
            .map(|i| 100 + ((start + i) % 100) as u8)
            .find(|net| {
                Command::new("ip")
                    .args(["netns", "add", &format!("smt{net}")])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .expect("no free network namespace smt100..smt199 (left by interrupted runs? ip netns del them)");
        let name = format!("smt{net}");
        let (host, inner) = (format!("smh{net}"), format!("smn{net}"));
        let ns = Netns {
            name: name.clone(),
            net,
            server: None,
        };
        run(&[
            "ip", "link", "add", &host, "type", "veth", "peer", "name", &inner,
        ]);
        run(&["ip", "link", "set", &inner, "netns", &name]);
        for ip in [1, 3] {
            run(&[
                "ip",
                "addr",
                "add",
                &format!("10.77.{net}.{ip}/24"),
                "dev",
                &host,
            ]);
        }
        run(&["ip", "link", "set", &host, "up"]);
        let exec = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", &name];
            all.extend_from_slice(args);
            run(&all);
        };
        exec(&[
            "ip",
            "addr",
            "add",
            &format!("10.77.{net}.2/24"),
            "dev",
            &inner,
        ]);
        exec(&["ip", "link", "set", &inner, "up"]);
        exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn ip(&self, host: u8) -> IpAddr {
        format!("10.77.{}.{host}", self.net).parse().unwrap()
    }

    fn serve(&mut self) -> SocketAddr {
        let addr = SocketAddr::new(self.ip(2), 8080);
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "python3", "-m", "http.server"])
            .args(["--bind", &addr.ip().to_string(), "8080"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.server = Some(child);
        addr
    }

    fn nft(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.name, "nft"]
            .map(str::to_owned)
            .to_vec()
    }

    fn blocklist(&self) -> String {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.name,
            "nft",
            "list",
            "set",
            "inet",
            "secmon",
            "blocklist",
        ])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Whether a TCP connection from `source` to `to` gets through in a second.
async fn connects(source: IpAddr, to: SocketAddr) -> bool {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    matches!(
        tokio::time::timeout(Duration::from_secs(1), socket.connect(to)).await,
        Ok(Ok(_))
    )
}

fn node_config(dir: &Path, ns: &Netns, extra: &str) -> Config {
    let mut cfg = config_with_rule(
        dir,
        &keyword_rule("Brute Force Marker", RULE_ID, "brute-marker", "critical"),
    );
    cfg.replication.retry_initial_ms = 50;
    cfg.response = serde_saphyr::from_str(&format!(
        "enabled: true\nnft: {}\nallow: ['{}/32']\n{extra}",
        serde_json::to_string(&ns.nft()).unwrap(),
        ns.ip(3)
    ))
    .unwrap();
    cfg
}

async fn attack(node: &Node, source: IpAddr) {
    let body = format!(
        "{}\n",
        json!({"message": "brute-marker: Failed password for root", "source.ip": source.to_string()})
    );
    let (status, resp) = node.ingest(body).await;
    assert_eq!(status, 200, "{resp}");
}

/// An HTTP endpoint recording the JSON bodies posted to it.
async fn receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    let got: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let app = {
        let got = got.clone();
        axum::Router::new().fallback(move |body: axum::body::Bytes| {
            let got = got.clone();
            async move {
                got.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                "ok"
            }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/respond", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

async fn decisions(node: &Node) -> Vec<Value> {
    let v = node
        .graphql(
            "{ decisions { ip origin offence active expiresAt reason } }",
            json!({}),
        )
        .await;
    v["data"]["decisions"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brute_forcer_is_blocked_in_nftables_and_the_admin_network_is_not() {
    let mut ns = Netns::create();
    let server = ns.serve();
    let (attacker, admin) = (ns.ip(1), ns.ip(3));
    eventually("the server in the namespace", || async {
        (connects(admin, server).await, ())
    })
    .await;
    assert!(connects(attacker, server).await, "nothing blocked yet");

    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("command.jsonl");
    let (hook, posted) = receiver().await;
    let extra = format!(
        "actions:\n\
         - {{name: block-brute-force, kind: block, rules: ['{RULE_ID}'], duration: 1h}}\n\
         - {{name: ticket, kind: command, command: [sh, -c, 'cat >> {} && echo >> {}'], min_severity: critical}}\n\
         - {{name: siem, kind: webhook, url: '{hook}', rules: ['{RULE_ID}']}}\n",
        ran.display(),
        ran.display()
    );
    let node = Node::start(node_config(dir.path(), &ns, &extra)).await;
    attack(&node, attacker).await;
    attack(&node, admin).await;

    let blocked = eventually("the attacker blocked", || async {
        let d = decisions(&node).await;
        (d.len() == 1, d)
    })
    .await;
    assert_eq!(blocked[0]["ip"], attacker.to_string());
    assert_eq!(blocked[0]["origin"], "alert");
    assert_eq!(blocked[0]["reason"], "Brute Force Marker");
    eventually("the element in the nftables set", || async {
        let set = ns.blocklist();
        (set.contains(&attacker.to_string()), set)
    })
    .await;
    assert!(!connects(attacker, server).await, "the attacker is cut off");
    assert!(
        connects(admin, server).await,
        "the allow-listed admin is not"
    );
    let commands = eventually("the command ran for both alerts", || async {
        let text = std::fs::read_to_string(&ran).unwrap_or_default();
        (text.lines().filter(|l| !l.is_empty()).count() == 2, text)
    })
    .await;
    let first: Value = serde_json::from_str(commands.lines().next().unwrap()).unwrap();
    assert_eq!(first["rule_id"], RULE_ID);
    let posted = eventually("the webhook called for both alerts", || async {
        let got = posted.lock().unwrap().clone();
        (got.len() == 2, got)
    })
    .await;
    assert_eq!(posted[0]["rule_title"], "Brute Force Marker");

    // A restart re-applies the block from redb (with what is left of it).
    node.app.stop().await;
    run(&[
        "ip", "netns", "exec", &ns.name, "nft", "delete", "table", "inet", "secmon",
    ]);
    assert!(connects(attacker, server).await, "the table is gone");
    let node = Node::start(node_config(dir.path(), &ns, &extra)).await;
    assert!(ns.blocklist().contains(&attacker.to_string()));
    assert!(
        !connects(attacker, server).await,
        "blocked again after the restart"
    );

    // Lifted early by an analyst; blocked again by hand: twice as long.
    let v = node
        .graphql(
            &format!("mutation {{ deleteDecision(ip: \"{attacker}\") }}"),
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["deleteDecision"], true, "{v}");
    assert!(!ns.blocklist().contains(&attacker.to_string()));
    assert!(connects(attacker, server).await, "lifted");
    let v = node
        .graphql(
            &format!(
                "mutation {{ addDecision(ip: \"{attacker}\", reason: \"seen again\", durationSeconds: 600) {{ offence expiresAt createdAt origin }} }}"
            ),
            json!({}),
        )
        .await;
    let d = &v["data"]["addDecision"];
    assert_eq!(d["offence"], 2, "{v}");
    assert_eq!(d["origin"], "manual");
    let length = chrono::DateTime::parse_from_rfc3339(d["expiresAt"].as_str().unwrap()).unwrap()
        - chrono::DateTime::parse_from_rfc3339(d["createdAt"].as_str().unwrap()).unwrap();
    assert_eq!(
        length.num_seconds(),
        1200,
        "a repeat offender's block doubles"
    );
    assert!(!connects(attacker, server).await);
    let v = node
        .graphql(
            &format!("mutation {{ addDecision(ip: \"{admin}\", reason: \"oops\") {{ ip }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "CONFLICT", "{v}");

    let v = node
        .graphql(
            "{ auditLog(first: 100) { edges { node { action actor target } } } }",
            json!({}),
        )
        .await;
    let actions: Vec<(String, String)> = v["data"]["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["node"]["action"].as_str().unwrap().to_owned(),
                e["node"]["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("decision.add", "system:response:block-brute-force"),
        ("response.run", "system:response:ticket"),
        ("decision.remove", "admin"),
        ("decision.add", "admin"),
    ] {
        assert!(
            actions.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} in {actions:?}"
        );
    }
    node.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_only_says_what_it_would_do() {
    let ns = Netns::create();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "dry_run: true\nactions:\n- {{name: block-brute-force, kind: block, rules: ['{RULE_ID}']}}\n"
    );
    let node = Node::start(node_config(dir.path(), &ns, &extra)).await;
    attack(&node, ns.ip(1)).await;
    eventually("the dry run audited", || async {
        let v = node
            .graphql(
                "{ auditLog(first: 20) { edges { node { action } } } }",
                json!({}),
            )
            .await;
        (v.to_string().contains("response.dry_run"), v)
    })
    .await;
    assert!(decisions(&node).await.is_empty());
    let tables = run(&["ip", "netns", "exec", &ns.name, "nft", "list", "tables"]);
    assert!(!tables.contains("secmon"), "nothing touched: {tables}");
    node.app.stop().await;
}
