//! Active response against a real firewall: nftables in a network
//! namespace the test creates, where a blocked source really cannot connect
//! and an allow-listed one can.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};

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

/// Two network namespaces joined by a veth pair: `smtN` (the edge: `.2`,
/// where a TCP server listens and secmon's nftables table lives) and `smcN`
/// (the clients: `.1` the attacker, `.3` the admin, allow-listed). secmon
/// itself runs in the test's namespace, so none of these addresses is one
/// of its own (which it never blocks).
struct Netns {
    name: String,
    clients: String,
    net: u8,
    server: Option<Child>,
}

impl Netns {
    fn create() -> Netns {
        // Tests run in parallel processes: the first free number is ours
        // (`ip netns add` fails on an existing name).
        let add = |name: &str| {
            Command::new("ip")
                .args(["netns", "add", name])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let start = std::process::id() % 100;
        let net = (0..100)
            .map(|i| 100 + ((start + i) % 100) as u8)
            .find(|net| add(&format!("smt{net}")))
            .expect("no free network namespace smt100..smt199 (left by interrupted runs? ip netns del them)");
        let (name, clients) = (format!("smt{net}"), format!("smc{net}"));
        let ns = Netns {
            name: name.clone(),
            clients: clients.clone(),
            net,
            server: None,
        };
        // A leftover of an interrupted run goes first.
        let _ = Command::new("ip")
            .args(["netns", "del", &clients])
            .stderr(Stdio::null())
            .status();
        run(&["ip", "netns", "add", &clients]);
        let (outer, inner) = (format!("smh{net}"), format!("smn{net}"));
        run(&[
            "ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ]);
        run(&["ip", "link", "set", &inner, "netns", &name]);
        run(&["ip", "link", "set", &outer, "netns", &clients]);
        let exec = |ns: &str, args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", ns];
            all.extend_from_slice(args);
            run(&all);
        };
        for ip in [1, 3] {
            exec(
                &clients,
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("10.77.{net}.{ip}/24"),
                    "dev",
                    &outer,
                ],
            );
        }
        exec(&clients, &["ip", "link", "set", &outer, "up"]);
        exec(
            &name,
            &[
                "ip",
                "addr",
                "add",
                &format!("10.77.{net}.2/24"),
                "dev",
                &inner,
            ],
        );
        for ns in [&name, &clients] {
            exec(ns, &["ip", "link", "set", "lo", "up"]);
        }
        exec(&name, &["ip", "link", "set", &inner, "up"]);
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

    /// Whether a TCP connection from `source` (in the clients' namespace)
    /// to `to` gets through in a second.
    async fn connects(&self, source: IpAddr, to: SocketAddr) -> bool {
        let script = "import socket, sys\n\
                      s = socket.socket()\n\
                      s.settimeout(1)\n\
                      s.bind((sys.argv[1], 0))\n\
                      s.connect((sys.argv[2], int(sys.argv[3])))\n";
        tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.clients, "python3", "-c", script])
            .args([
                source.to_string(),
                to.ip().to_string(),
                to.port().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .unwrap()
            .success()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.name, &self.clients] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
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
        (ns.connects(admin, server).await, ())
    })
    .await;
    assert!(ns.connects(attacker, server).await, "nothing blocked yet");

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
    assert!(
        !ns.connects(attacker, server).await,
        "the attacker is cut off"
    );
    assert!(
        ns.connects(admin, server).await,
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
    assert!(ns.connects(attacker, server).await, "the table is gone");
    let node = Node::start(node_config(dir.path(), &ns, &extra)).await;
    assert!(ns.blocklist().contains(&attacker.to_string()));
    assert!(
        !ns.connects(attacker, server).await,
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
    assert!(ns.connects(attacker, server).await, "lifted");
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
    assert!(!ns.connects(attacker, server).await);
    let v = node
        .graphql(
            &format!("mutation {{ addDecision(ip: \"{admin}\", reason: \"oops\") {{ ip }} }}"),
            json!({}),
        )
        .await;
    assert_eq!(
        v["errors"][0]["extensions"]["code"], "PROTECTED_ADDRESS",
        "{v}"
    );
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("is in response.allow"),
        "{v}"
    );

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

/// The audit entries of the node, oldest first: (action, target, after).
async fn audit(node: &Node) -> Vec<(String, String, Value)> {
    let v = node
        .graphql(
            "{ auditLog(first: 1000) { edges { node { action target after } } } }",
            json!({}),
        )
        .await;
    let mut out: Vec<(String, String, Value)> = v["data"]["auditLog"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|e| {
            let n = &e["node"];
            (
                n["action"].as_str().unwrap().to_owned(),
                n["target"].as_str().unwrap_or_default().to_owned(),
                n["after"].clone(),
            )
        })
        .collect();
    out.reverse();
    out
}

/// Attacks from every source in one request (one NDJSON line each).
async fn attack_all(node: &Node, sources: &[IpAddr]) {
    let body: String = sources
        .iter()
        .map(|ip| {
            format!(
                "{}\n",
                json!({"message": "brute-marker: Failed password for root", "source.ip": ip.to_string()})
            )
        })
        .collect();
    let (status, resp) = node.ingest(body).await;
    assert_eq!(status, 200, "{resp}");
}

/// An IPv4 address of this machine (where secmon runs), not loopback.
fn own_address() -> IpAddr {
    let out = run(&["ip", "-o", "-4", "addr", "show", "scope", "global"]);
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("this machine has no global IPv4 address: {out}"))
}

/// The addresses never blocked, whoever asks: by class, the node's own,
/// a trusted proxy (`198.51.100.0/24` in these tests), the allow-list.
fn protected(ns: &Netns) -> Vec<IpAddr> {
    [
        "127.0.0.1",
        "::1",
        "::ffff:127.0.0.1",
        "169.254.169.254",
        "fe80::1",
        "0.0.0.0",
        "224.0.0.251",
        "ff02::1",
        "255.255.255.255",
        "198.51.100.7",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .chain([own_address(), ns.ip(3)])
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_addresses_are_never_blocked_and_new_blocks_are_rate_bound() {
    let ns = Netns::create();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "max_new_blocks_per_minute: 3\n\
         actions:\n- {{name: block-brute-force, kind: block, rules: ['{RULE_ID}']}}\n"
    );
    let mut cfg = node_config(dir.path(), &ns, &extra);
    cfg.auth.trusted_proxies = vec!["198.51.100.0/24".to_owned().try_into().unwrap()];
    let node = Node::start(cfg).await;

    // Alerts for every protected address: none is blocked.
    let protected = protected(&ns);
    attack_all(&node, &protected).await;
    // Then ten attackers at once: three new blocks a minute at most.
    let attackers: Vec<IpAddr> = (1..=10)
        .map(|i| format!("203.0.113.{i}").parse().unwrap())
        .collect();
    attack_all(&node, &attackers).await;
    let entries = eventually("every alert handled", || async {
        let a = audit(&node).await;
        let rate = a
            .iter()
            .find(|(action, target, _)| action == "response.refused" && target == "rate_limited");
        (rate.is_some(), a)
    })
    .await;
    let blocked = eventually("three blocks", || async {
        let d = decisions(&node).await;
        (d.len() == 3, d)
    })
    .await;
    for d in &blocked {
        let ip: IpAddr = d["ip"].as_str().unwrap().parse().unwrap();
        assert!(attackers.contains(&ip), "{d}");
        assert!(ns.blocklist().contains(&ip.to_string()));
    }
    let set = ns.blocklist();
    for ip in &protected {
        assert!(!set.contains(&format!(" {ip}")), "{ip} in {set}");
    }

    // Refusals are audited once per reason (and per minute), with a count
    // and examples, not once per alert.
    let refused: Vec<&(String, String, Value)> = entries
        .iter()
        .filter(|(action, ..)| action == "response.refused")
        .collect();
    let targets: Vec<&str> = refused.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(
        targets
            .iter()
            .filter(|t| **t == "protected_address")
            .count(),
        1,
        "{refused:?}"
    );
    assert_eq!(
        targets.iter().filter(|t| **t == "rate_limited").count(),
        1,
        "{refused:?}"
    );
    let (_, _, first) = refused
        .iter()
        .find(|(_, t, _)| t == "protected_address")
        .unwrap();
    let count = first["count"].as_u64().unwrap();
    assert!((1..=protected.len() as u64).contains(&count), "{first}");
    for example in first["examples"].as_array().unwrap() {
        let ip: IpAddr = example["ip"].as_str().unwrap().parse().unwrap();
        assert!(
            protected.contains(&ip) || protected.contains(&ip.to_canonical()),
            "{example}"
        );
        assert!(example["protection"].is_string(), "{example}");
    }

    // By hand: refused with a clear code, whatever the analyst says; the
    // rate of new blocks does not apply to analysts.
    for ip in protected {
        let v = node
            .graphql(
                "mutation($ip: String!) { addDecision(ip: $ip, reason: \"by hand\") { ip } }",
                json!({"ip": ip.to_string()}),
            )
            .await;
        assert_eq!(
            v["errors"][0]["extensions"]["code"], "PROTECTED_ADDRESS",
            "{ip}: {v}"
        );
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("is never blocked: it is"),
            "{v}"
        );
    }
    let v = node
        .graphql(
            "mutation { addDecision(ip: \"203.0.113.99\", reason: \"by hand\") { ip origin } }",
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["addDecision"]["origin"], "manual", "{v}");
    assert!(ns.blocklist().contains("203.0.113.99"));
    node.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_says_exactly_what_a_real_run_would_do() {
    let ns = Netns::create();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "dry_run: true\nactions:\n- {{name: block-brute-force, kind: block, rules: ['{RULE_ID}']}}\n"
    );
    let node = Node::start(node_config(dir.path(), &ns, &extra)).await;
    let (attacker, admin) = (ns.ip(1), ns.ip(3));
    // The allow-listed admin first, then the attacker twice (its alert
    // fires again: a real run would find it blocked already).
    attack(&node, admin).await;
    attack(&node, attacker).await;
    attack(&node, attacker).await;
    let marker: IpAddr = "203.0.113.200".parse().unwrap();
    attack(&node, marker).await;
    let entries = eventually("the dry run audited", || async {
        let a = audit(&node).await;
        let done = a.iter().any(|(action, target, _)| {
            action == "response.dry_run" && *target == marker.to_string()
        });
        (done, a)
    })
    .await;
    let would_block: Vec<&(String, String, Value)> = entries
        .iter()
        .filter(|(action, ..)| action == "response.dry_run")
        .collect();
    assert_eq!(
        would_block
            .iter()
            .map(|(_, target, _)| target.clone())
            .collect::<Vec<_>>(),
        [attacker.to_string(), marker.to_string()],
        "the allow-listed admin would not be blocked, the attacker once: {would_block:?}"
    );
    let (_, _, decision) = would_block[0];
    assert_eq!(decision["offence"], 1);
    assert_eq!(decision["origin"], "alert");
    assert_eq!(decision["by"], "system:response:block-brute-force");
    let refused = entries
        .iter()
        .find(|(action, target, _)| action == "response.refused" && target == "protected_address")
        .unwrap_or_else(|| panic!("{entries:?}"));
    assert_eq!(refused.2["dry_run"], true);
    assert_eq!(refused.2["examples"][0]["ip"], admin.to_string());
    assert_eq!(refused.2["examples"][0]["protection"], "allow_list");

    // An analyst's block in a dry run: refused with what would be done.
    let v = node
        .graphql(
            "mutation { addDecision(ip: \"203.0.113.201\", reason: \"by hand\") { ip } }",
            json!({}),
        )
        .await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "DRY_RUN", "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("a real run would block 203.0.113.201 until"),
        "{v}"
    );

    assert!(decisions(&node).await.is_empty());
    let tables = run(&["ip", "netns", "exec", &ns.name, "nft", "list", "tables"]);
    assert!(!tables.contains("secmon"), "nothing touched: {tables}");
    node.app.stop().await;
}
