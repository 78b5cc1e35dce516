//! Notifications against real counterparts: an HTTP receiver that checks
//! the webhook signature (and stands in for Slack's and Teams' webhook
//! endpoints, checking their message formats), a real SMTP server with
//! STARTTLS (aiosmtpd), and the real Prometheus Alertmanager.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use common::{Node, config_with_rule, eventually, free_port, keyword_rule};
use secmon::config::{Channel, Config};
use serde_json::{Value, json};

const RULE_ID: &str = "0b7c5e2a-9d41-4f3e-8a6b-1c2d3e4f5a6b";

/// A node whose only rule raises a high alert per source IP of an event
/// carrying `notify-marker`, with `channels`.
fn node_config(dir: &Path, channels: &str) -> Config {
    let mut cfg = config_with_rule(
        dir,
        &(keyword_rule("Notify Marker", RULE_ID, "notify-marker", "high")
            + "tags:\n    - attack.t1110\n"),
    );
    cfg.replication.retry_initial_ms = 50;
    cfg.replication.retry_max_seconds = 1;
    cfg.notifications.channels = serde_saphyr::from_str::<Vec<Channel>>(channels).unwrap();
    cfg
}

async fn raise_alerts(node: &Node, first: u32, n: u32) {
    let body: String = (first..first + n)
        .map(|i| {
            let ip = format!("10.9.{}.{}", i / 256 % 256, i % 256);
            format!(
                "{}\n",
                json!({"message": format!("notify-marker {i}"), "source.ip": ip, "host.name": "web-1"})
            )
        })
        .collect();
    let (status, resp) = node.ingest(body).await;
    assert_eq!(status, 200, "{resp}");
}

/// What an HTTP receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Value,
    raw: Bytes,
}

/// An HTTP server recording every POST; answers 503 to the first
/// `fail_first` requests.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(fail_first: usize) -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let failures = Arc::new(AtomicUsize::new(fail_first));
        let app = {
            let got = got.clone();
            axum::Router::new().fallback(
                move |uri: axum::http::Uri, headers: HeaderMap, raw: Bytes| {
                    let (got, failures) = (got.clone(), failures.clone());
                    async move {
                        if failures
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok()
                        {
                            return StatusCode::SERVICE_UNAVAILABLE;
                        }
                        got.lock().unwrap().push(Received {
                            path: uri.path().to_owned(),
                            headers,
                            body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
                            raw,
                        });
                        StatusCode::OK
                    }
                },
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, got }
    }

    fn on(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

fn hmac_hex(secret: &str, message: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_slack_and_teams_get_signed_formatted_messages() {
    let receiver = Receiver::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let url = &receiver.url;
    let cfg = node_config(
        dir.path(),
        &format!(
            "- {{name: soc, kind: webhook, url: '{url}/hook', secret: s3cret, headers: {{X-Team: soc}}, on: [raised, changed]}}\n\
             - {{name: slack, kind: slack, url: '{url}/slack'}}\n\
             - {{name: teams, kind: teams, url: '{url}/teams'}}\n\
             - {{name: critical-only, kind: webhook, url: '{url}/critical', min_severity: critical}}\n"
        ),
    );
    let node = Node::start(cfg).await;
    raise_alerts(&node, 0, 1).await;

    let hooks = eventually("the webhook", || async {
        let got = receiver.on("/hook");
        (!got.is_empty(), got)
    })
    .await;
    let hook = &hooks[0];
    let timestamp = hook.headers["x-secmon-timestamp"].to_str().unwrap();
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(&hook.raw);
    assert_eq!(
        hook.headers["x-secmon-signature"].to_str().unwrap(),
        format!("sha256={}", hmac_hex("s3cret", &signed)),
        "the signature checks out"
    );
    assert_eq!(hook.headers["x-team"], "soc");
    let node_id = node.app.node_id().to_string();
    assert_eq!(
        hook.headers["idempotency-key"].to_str().unwrap(),
        format!("{node_id}/1/{}", hook.body["alerts"][0]["version"])
    );
    assert_eq!(hook.body["kind"], "alert");
    assert_eq!(hook.body["alerts"][0]["rule_title"], "Notify Marker");
    assert_eq!(hook.body["alerts"][0]["event"], "raised");
    assert_eq!(hook.body["alerts"][0]["source_ip"], "10.9.0.0");

    let slack = eventually("slack", || async {
        let got = receiver.on("/slack");
        (!got.is_empty(), got)
    })
    .await;
    assert!(
        slack[0].body["text"]
            .as_str()
            .unwrap()
            .contains("Notify Marker")
    );
    assert_eq!(slack[0].body["blocks"][0]["type"], "header");
    let teams = eventually("teams", || async {
        let got = receiver.on("/teams");
        (!got.is_empty(), got)
    })
    .await;
    let card = &teams[0].body["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");

    // An analyst's change is announced where `on` asks for it.
    let v = node
        .graphql("mutation { resolveAlert(id: \"1\") { status } }", json!({}))
        .await;
    assert_eq!(v["data"]["resolveAlert"]["status"], "RESOLVED", "{v}");
    let hooks = eventually("the change", || async {
        let got = receiver.on("/hook");
        (got.len() == 2, got.len())
    })
    .await;
    assert_eq!(hooks, 2);
    assert_eq!(
        receiver.on("/hook")[1].body["alerts"][0]["status"],
        "resolved"
    );
    assert!(receiver.on("/critical").is_empty(), "below its severity");

    // Every delivery is listed with its state (recorded just after the
    // receiver answered); a test send goes out and is audited.
    let sent: BTreeSet<(String, String)> = [("slack", "SENT"), ("soc", "SENT"), ("teams", "SENT")]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .into();
    eventually("every delivery recorded as sent", || async {
        let v = node
            .graphql(
                "{ notifications(first: 10) { edges { node { channel alertId state attempts event } } } }",
                json!({}),
            )
            .await;
        let states: BTreeSet<(String, String)> = v["data"]["notifications"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["node"]["channel"].as_str().unwrap().to_owned(),
                    e["node"]["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        (states == sent, states)
    })
    .await;
    let v = node
        .graphql(
            "mutation { testNotificationChannel(name: \"slack\") { ok error } }",
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["testNotificationChannel"]["ok"], true, "{v}");
    assert_eq!(receiver.on("/slack").len(), 2);
    let v = node
        .graphql(
            "{ notificationChannels { name kind messagesSent } auditLog(first: 50) { edges { node { action target } } } }",
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["notificationChannels"][0]["name"], "soc", "{v}");
    assert!(
        v["data"]["auditLog"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["node"]["action"] == "notification.test" && e["node"]["target"] == "slack"),
        "{v}"
    );
    node.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_storm_becomes_a_digest_and_failures_are_retried() {
    // The receiver refuses the first 3 requests.
    let receiver = Receiver::start(3).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = node_config(
        dir.path(),
        &format!(
            "- {{name: soc, kind: webhook, url: '{}/hook', max_messages_per_minute: 5}}\n",
            receiver.url
        ),
    );
    let node = Node::start(cfg).await;
    raise_alerts(&node, 0, 300).await;

    let ready = eventually("the failure in /ready", || async {
        let r: Value = reqwest::get(format!("http://{}/ready", node.app.addrs().health))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let failures = r["components"]["notifications"]["channels"]["soc"]["failures"]
            .as_u64()
            .unwrap_or(0);
        (failures > 0, r)
    })
    .await;
    assert_eq!(ready["status"], "ready", "{ready}");

    let ids = eventually("every alert announced", || async {
        let ids: Vec<u64> = receiver
            .on("/hook")
            .iter()
            .flat_map(|r| {
                r.body["alerts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["alert_id"].as_u64().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        (ids.len() >= 300, ids)
    })
    .await;
    let messages = receiver.on("/hook");
    assert!(
        messages.len() <= 5,
        "300 alerts in at most 5 messages, got {}",
        messages.len()
    );
    assert!(messages.iter().any(|m| m.body["kind"] == "digest"));
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique, (1..=300).collect(), "each alert, none missing");
    assert_eq!(ids.len(), 300, "none twice");
    let v = eventually("the digest recorded", || async {
        let v = node
            .graphql(
                "{ notifications(first: 1) { edges { node { state attempts } } } }",
                json!({}),
            )
            .await;
        (
            v["data"]["notifications"]["edges"][0]["node"]["state"] == "DIGESTED",
            v,
        )
    })
    .await;
    let n = &v["data"]["notifications"]["edges"][0]["node"];
    assert!(n["attempts"].as_u64().unwrap() > 1, "retried: {v}");
    assert!(
        node.metrics()
            .await
            .contains("secmon_notification_failures_total{channel=\"soc\"}")
    );
    node.app.stop().await;
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_out_over_starttls_to_a_real_smtp_server() {
    let dir = tempfile::tempdir().unwrap();
    let pki = secmon::tls::generate_dev_pki(&dir.path().join("pki"), &[], false).unwrap();
    let port = free_port();
    let out = dir.path().join("mail.jsonl");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smtp_server.py");
    let _smtp = Killed(
        Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&pki.server_cert)
            .arg(&pki.server_key)
            .arg(&out)
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs the aiosmtpd fixture (scripts/test.sh installs aiosmtpd)"),
    );
    wait_for_port(port);
    let cfg = node_config(
        dir.path(),
        &format!(
            "- {{name: mail, kind: email, smtp_url: 'smtp://alerts:p%40ss@localhost:{port}', \
               from: secmon@example.org, to: [soc@example.org, oncall@example.org], ca_path: '{}'}}\n",
            pki.ca_cert.display()
        ),
    );
    let node = Node::start(cfg).await;
    raise_alerts(&node, 0, 1).await;
    let mails = eventually("the email", || async {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let mails: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let state = node
            .graphql(
                "{ notifications(first: 1) { edges { node { state lastError } } } }",
                json!({}),
            )
            .await;
        (!mails.is_empty(), (mails, state))
    })
    .await
    .0;
    let mail = &mails[0];
    assert_eq!(mail["tls"], true, "sent after STARTTLS");
    assert_eq!(mail["mail_from"], "secmon@example.org");
    assert_eq!(
        mail["rcpt_tos"],
        json!(["soc@example.org", "oncall@example.org"])
    );
    let data = mail["data"].as_str().unwrap();
    assert!(
        data.contains("Subject: [HIGH] Notify Marker (new)"),
        "{data}"
    );
    assert!(data.contains("source 10.9.0.0"), "{data}");
    node.app.stop().await;
}

/// RFC 2045 quoted-printable, decoded (soft line breaks, `=XX`).
fn quoted_printable(text: &str) -> String {
    let joined = text.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = joined
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What an attacker puts in a log line to make a message say something else.
const HOSTILE_USER: &str = "<!channel> <https://evil|reset> [click](https://evil)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_text_arrives_as_text_on_slack_teams_and_email() {
    let receiver = Receiver::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let pki = secmon::tls::generate_dev_pki(&dir.path().join("pki"), &[], false).unwrap();
    let port = free_port();
    let out = dir.path().join("mail.jsonl");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smtp_server.py");
    let _smtp = Killed(
        Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&pki.server_cert)
            .arg(&pki.server_key)
            .arg(&out)
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs the aiosmtpd fixture (scripts/test.sh installs aiosmtpd)"),
    );
    wait_for_port(port);
    let url = &receiver.url;
    let cfg = node_config(
        dir.path(),
        &format!(
            "- {{name: slack, kind: slack, url: '{url}/slack'}}\n\
             - {{name: teams, kind: teams, url: '{url}/teams'}}\n\
             - {{name: mail, kind: email, smtp_url: 'smtp://alerts:p%40ss@localhost:{port}', \
                from: secmon@example.org, to: [soc@example.org], ca_path: '{}'}}\n",
            pki.ca_cert.display()
        ),
    );
    let node = Node::start(cfg).await;
    let event = json!({
        "message": "notify-marker hostile",
        "source.ip": "10.9.9.9",
        "host.name": "web-1\r\nBcc: victim@example.org",
        "user.name": HOSTILE_USER,
    });
    let (status, resp) = node.ingest(format!("{event}\n")).await;
    assert_eq!(status, 200, "{resp}");

    // Slack: `&`, `<`, `>` escaped in every mrkdwn text, which is verbatim.
    let slack = eventually("slack", || async {
        let got = receiver.on("/slack");
        (!got.is_empty(), got)
    })
    .await;
    let body = &slack[0].body;
    let section = body["blocks"][1]["text"].clone();
    assert_eq!(section["type"], "mrkdwn");
    assert_eq!(section["verbatim"], true);
    let text = section["text"].as_str().unwrap();
    assert!(
        text.contains("user &lt;!channel&gt; &lt;https://evil|reset&gt; [click](https://evil)"),
        "{text}"
    );
    assert!(
        text.contains("host web-1\\r\\nBcc: victim@example.org"),
        "{text}"
    );
    let raw = String::from_utf8_lossy(&slack[0].raw);
    assert!(
        !raw.contains("<!channel>") && !raw.contains("<https://evil"),
        "{raw}"
    );

    // Teams: the text is in TextRuns, which Adaptive Cards never read as
    // markdown; no TextBlock carries it.
    let teams = eventually("teams", || async {
        let got = receiver.on("/teams");
        (!got.is_empty(), got)
    })
    .await;
    let card = &teams[0].body["attachments"][0]["content"];
    let blocks = card["body"].as_array().unwrap();
    assert!(
        blocks.iter().all(|b| b["type"] == "RichTextBlock"),
        "{card}"
    );
    let run = &blocks[1]["inlines"][0];
    assert_eq!(run["type"], "TextRun");
    assert!(
        run["text"].as_str().unwrap().contains(HOSTILE_USER),
        "{run}"
    );
    assert!(!run["text"].as_str().unwrap().contains('\n'), "{run}");

    // Email: the line break in the host name is shown, not obeyed.
    let mails = eventually("the email", || async {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let mails: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (!mails.is_empty(), mails)
    })
    .await;
    let data = mails[0]["data"].as_str().unwrap().replace("\r\n", "\n");
    assert_eq!(mails[0]["rcpt_tos"], json!(["soc@example.org"]));
    let (headers, body) = data.split_once("\n\n").unwrap();
    assert!(!headers.lines().any(|l| l.starts_with("Bcc:")), "{data}");
    let body = if headers.contains("Content-Transfer-Encoding: quoted-printable") {
        quoted_printable(body)
    } else {
        body.to_owned()
    };
    assert!(!body.lines().any(|l| l.starts_with("Bcc:")), "{body}");
    assert!(
        body.contains("web-1\\r\\nBcc: victim@example.org"),
        "{body}"
    );
    assert!(body.contains(HOSTILE_USER), "as text: {body}");
    node.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_receives_the_alert_and_its_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let am_config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &am_config,
        "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
    )
    .unwrap();
    let port = free_port();
    let _am = Killed(
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", am_config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager runs (scripts/test.sh puts it on PATH)"),
    );
    wait_for_port(port);
    let am = format!("http://127.0.0.1:{port}");
    let cfg = node_config(
        dir.path(),
        &format!("- {{name: am, kind: alertmanager, url: '{am}', on: [raised, changed]}}\n"),
    );
    let node = Node::start(cfg).await;
    raise_alerts(&node, 0, 1).await;
    let active = |am: String| async move {
        let alerts: Vec<Value> = reqwest::get(format!("{am}/api/v2/alerts?active=true"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        alerts
            .into_iter()
            .filter(|a| a["labels"]["rule_id"] == RULE_ID)
            .collect::<Vec<_>>()
    };
    let firing = eventually("the alert in Alertmanager", || async {
        let a = active(am.clone()).await;
        (a.len() == 1, a)
    })
    .await;
    let labels = &firing[0]["labels"];
    assert_eq!(labels["alertname"], "Notify Marker");
    assert_eq!(labels["severity"], "high");
    assert_eq!(labels["source_ip"], "10.9.0.0");
    assert_eq!(labels["host"], "web-1");

    let v = node
        .graphql("mutation { resolveAlert(id: \"1\") { status } }", json!({}))
        .await;
    assert_eq!(v["data"]["resolveAlert"]["status"], "RESOLVED", "{v}");
    eventually("resolved in Alertmanager", || async {
        let a = active(am.clone()).await;
        (a.is_empty(), a)
    })
    .await;
    node.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_manage_channels_over_the_api() {
    let receiver = Receiver::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = node_config(
        dir.path(),
        &format!(
            "- {{name: fixed, kind: slack, url: '{}/fixed'}}\n",
            receiver.url
        ),
    );
    let node = Node::start(cfg.clone()).await;
    let set = |channel: Value| {
        let node = &node;
        async move {
            node.graphql(
                "mutation($c: JSON!) { setNotificationChannel(channel: $c) }",
                json!({"c": channel}),
            )
            .await
        }
    };
    let hook = format!("{}/api", receiver.url);
    let v = set(
        json!({"name": "api-hook", "kind": "webhook", "url": hook, "secret": "k3y",
                       "headers": {"Authorization": "Bearer h3ader-t0ken"}}),
    )
    .await;
    assert_eq!(v["data"]["setNotificationChannel"], true, "{v}");
    let v = set(json!({"name": "broken", "kind": "email"})).await;
    assert_eq!(v["errors"][0]["extensions"]["code"], "BAD_REQUEST", "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("smtp_url"),
        "{v}"
    );
    let v = set(json!({"name": "fixed", "kind": "slack", "url": hook})).await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("config files"),
        "{v}"
    );

    raise_alerts(&node, 0, 1).await;
    eventually("the API channel sends", || async {
        let n = receiver.on("/api").len();
        (n == 1, n)
    })
    .await;
    let v = node
        .graphql("{ notificationChannels { name stored } }", json!({}))
        .await;
    assert_eq!(
        v["data"]["notificationChannels"],
        json!([{"name": "fixed", "stored": false}, {"name": "api-hook", "stored": true}])
    );

    // Kept across a restart, secret included (the signature still checks).
    node.app.stop().await;
    let node = Node::start(cfg).await;
    raise_alerts(&node, 1, 1).await;
    let got = eventually("sent after the restart", || async {
        let got = receiver.on("/api");
        (got.len() == 2, got.len())
    })
    .await;
    assert_eq!(got, 2);
    let last = receiver.on("/api").pop().unwrap();
    let ts = last.headers["x-secmon-timestamp"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut signed = format!("{ts}.").into_bytes();
    signed.extend_from_slice(&last.raw);
    assert_eq!(
        last.headers["x-secmon-signature"].to_str().unwrap(),
        format!("sha256={}", hmac_hex("k3y", &signed))
    );
    assert_eq!(
        last.headers["authorization"], "Bearer h3ader-t0ken",
        "the stored header is sent in clear"
    );

    let v = node
        .graphql(
            "mutation { deleteNotificationChannel(name: \"api-hook\") }",
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["deleteNotificationChannel"], true, "{v}");
    raise_alerts(&node, 2, 1).await;
    eventually("the fixed channel got all three", || async {
        let n = receiver.on("/fixed").len();
        (n == 3, n)
    })
    .await;
    assert_eq!(receiver.on("/api").len(), 2, "deleted: no more");
    let v = node
        .graphql(
            "{ auditLog(first: 50) { edges { node { action target after } } } }",
            json!({}),
        )
        .await;
    let edges = v["data"]["auditLog"]["edges"].as_array().unwrap();
    let create = edges
        .iter()
        .find(|e| e["node"]["action"] == "notification.channel.create")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(
        create["node"]["after"]["secret"], "***",
        "no secret in the audit log"
    );
    assert_eq!(create["node"]["after"]["url"], "***");
    assert_eq!(
        create["node"]["after"]["headers"],
        json!({"Authorization": "***"}),
        "header values are secrets"
    );
    assert!(!v.to_string().contains("h3ader-t0ken"), "{v}");
    assert!(
        edges
            .iter()
            .any(|e| e["node"]["action"] == "notification.channel.delete")
    );
    node.app.stop().await;
}
