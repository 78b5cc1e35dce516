//! How one message reaches each kind of channel, in its own format.
//!
//! A message announces one alert update, or a digest of many. Every
//! request carries an idempotency key (`node/alert/version`, or the digest's
//! seq range) so a receiver can drop the duplicate an at-least-once retry
//! may bring.
//!
//! What an alert says comes from log lines an attacker may write (a user
//! name, a host name), so every format renders it as text: control and
//! bidirectional-formatting characters are shown escaped (`\n`,
//! `\u{202e}`) and each value is bounded ([`plain`]); Slack mrkdwn gets
//! `&`, `<` and `>` escaped and `verbatim` (no mentions, no links made from
//! it); Teams gets `TextRun`s, which Adaptive Cards never read as markdown;
//! an email subject is one bounded line. The webhook and Alertmanager get
//! the values as JSON strings. No client follows redirects (a channel's
//! headers would go with them), and an error never carries the URL.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use lettre::AsyncTransport;
use serde_json::{Value, json};
use sha2::Sha256;

use super::redact::{http_error, redact};
use crate::config::{Channel, ChannelKind};
use crate::store::outbox::AlertSummary;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Alerts listed in a digest's text; the rest are counted.
const DIGEST_LISTED: usize = 20;
/// Characters of one log-derived value (user, host, rule title) shown.
const VALUE_CHARS: usize = 200;
/// Characters of an email subject.
const SUBJECT_CHARS: usize = 200;
/// Characters of a receiver's error answer kept in the error.
const ANSWER_CHARS: usize = 200;

/// Why a message was not delivered (retried later).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SendError(pub String);

/// What one message carries.
pub struct Message<'a> {
    pub node_id: &'a str,
    pub node_name: &'a str,
    /// Oldest first; one alert, or a digest.
    pub alerts: &'a [(u64, &'a AlertSummary)],
    pub digest: bool,
}

impl Message<'_> {
    pub fn idempotency_key(&self) -> String {
        match self.alerts {
            [(seq, a)] if !self.digest => format!("{}/{}/{seq}", self.node_id, a.alert_id),
            all => format!(
                "{}/digest/{}-{}",
                self.node_id,
                all.first().map_or(0, |x| x.0),
                all.last().map_or(0, |x| x.0)
            ),
        }
    }

    /// One line of text (see [`plain`]).
    fn title(&self) -> String {
        match self.alerts {
            [(_, a)] if !self.digest => format!(
                "[{}] {} ({})",
                plain(&a.severity.to_uppercase()),
                plain(&a.rule_title),
                plain(&describe_event(a))
            ),
            all => format!("{} alert updates on {}", all.len(), plain(self.node_name)),
        }
    }

    fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .alerts
            .iter()
            .take(DIGEST_LISTED)
            .map(|(_, a)| line(a))
            .collect();
        if self.alerts.len() > DIGEST_LISTED {
            lines.push(format!(
                "... and {} more",
                self.alerts.len() - DIGEST_LISTED
            ));
        }
        lines
    }

    /// The webhook body: everything, as JSON.
    fn json(&self) -> Value {
        json!({
            "kind": if self.digest { "digest" } else { "alert" },
            "node_id": self.node_id,
            "node_name": self.node_name,
            "idempotency_key": self.idempotency_key(),
            "alerts": self.alerts.iter().map(|(seq, a)| {
                let mut v = serde_json::to_value(a).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("version".into(), (*seq).into());
                }
                v
            }).collect::<Vec<_>>(),
        })
    }
}

fn describe_event(a: &AlertSummary) -> String {
    use crate::store::outbox::AlertEvent;
    match a.event {
        AlertEvent::Raised => "new".to_owned(),
        AlertEvent::Changed => a.status.replace('_', " "),
        AlertEvent::Repeated | AlertEvent::Resent => format!("{} firings", a.count),
    }
}

/// One alert in one line of text (each value through [`plain`]).
fn line(a: &AlertSummary) -> String {
    let mut parts = vec![format!(
        "#{} {} [{}]",
        a.alert_id,
        plain(&a.rule_title),
        plain(&a.severity)
    )];
    for (name, value) in [
        ("host", &a.host_name),
        ("source", &a.source_ip),
        ("user", &a.user_name),
    ] {
        if let Some(v) = value {
            parts.push(format!("{name} {}", plain(v)));
        }
    }
    parts.push(format!(
        "{} ({}x, last {})",
        plain(&a.status),
        a.count,
        rfc3339(a.last_seen)
    ));
    parts.join(" · ")
}

/// A value from a log line as one line of text: control characters
/// (line breaks included) and the invisible formatting ones that reorder
/// or hide text (bidirectional overrides, zero-width characters) are shown
/// escaped, and the value is cut at [`VALUE_CHARS`] characters.
pub fn plain(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(VALUE_CHARS * 4));
    for (i, c) in value.chars().enumerate() {
        if i == VALUE_CHARS {
            out.push('…');
            break;
        }
        let invisible = matches!(c,
            '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}');
        if c.is_control() || invisible {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Text for Slack mrkdwn: `&`, `<` and `>` escaped, as Slack asks, so a
/// `<!channel>` or `<https://evil|reset>` in it arrives as text.
pub fn mrkdwn(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A channel ready to send: its config and the clients it needs.
pub struct Sender {
    pub config: Channel,
    http: reqwest::Client,
    /// The webhook's own headers (values marked sensitive).
    headers: reqwest::header::HeaderMap,
    smtp: Option<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>>,
}

impl Sender {
    pub fn new(config: Channel) -> Result<Sender, String> {
        let tls =
            crate::tls::client_config(config.ca_path.as_deref()).map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client: {}", http_error(e)))?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &config.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: {name:?} is not an HTTP header name"))?;
            let mut value = reqwest::header::HeaderValue::from_str(value.expose()).map_err(|_| {
                format!("headers: the value of {name} is not a valid header value (visible ASCII, no line breaks)")
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let smtp = match (&config.kind, &config.smtp_url) {
            (ChannelKind::Email, Some(url)) => Some(smtp_transport(url.expose(), &config)?),
            (ChannelKind::Email, None) => return Err("email needs smtp_url".into()),
            _ => None,
        };
        Ok(Sender {
            config,
            http,
            headers,
            smtp,
        })
    }

    pub async fn send(&self, message: &Message<'_>) -> Result<(), SendError> {
        match self.config.kind {
            ChannelKind::Webhook => self.webhook(message).await,
            ChannelKind::Slack => self.post(&slack(message), message).await,
            ChannelKind::Teams => self.post(&teams(message), message).await,
            ChannelKind::Alertmanager => self.alertmanager(message).await,
            ChannelKind::Email => self.email(message).await,
        }
    }

    fn url(&self) -> Result<&str, SendError> {
        self.config
            .url
            .as_ref()
            .map(|u| u.expose())
            .ok_or_else(|| SendError("no url".into()))
    }

    async fn post(&self, body: &Value, message: &Message<'_>) -> Result<(), SendError> {
        let request = self
            .http
            .post(self.url()?)
            .header("Idempotency-Key", message.idempotency_key())
            .json(body);
        check(request.send().await).await
    }

    /// JSON, with `X-Secmon-Timestamp` and, with a secret,
    /// `X-Secmon-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
    async fn webhook(&self, message: &Message<'_>) -> Result<(), SendError> {
        let body = message.json().to_string();
        let timestamp = Utc::now().timestamp().to_string();
        let mut request = self
            .http
            .post(self.url()?)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", message.idempotency_key())
            .header("X-Secmon-Timestamp", &timestamp);
        if let Some(secret) = &self.config.secret {
            request = request.header(
                "X-Secmon-Signature",
                format!("sha256={}", sign(secret.expose(), &timestamp, &body)),
            );
        }
        request = request.headers(self.headers.clone());
        check(request.body(body).send().await).await
    }

    /// `POST /api/v2/alerts`: one Alertmanager alert per update; resolved
    /// and false positive ones end now, the others stay firing.
    async fn alertmanager(&self, message: &Message<'_>) -> Result<(), SendError> {
        let url = format!("{}/api/v2/alerts", self.url()?.trim_end_matches('/'));
        let alerts: Vec<Value> = message
            .alerts
            .iter()
            .map(|(_, a)| {
                let mut labels = json!({
                    "alertname": a.rule_title,
                    "severity": a.severity,
                    "rule_id": a.rule_id,
                    "secmon_node": message.node_name,
                    "alert_id": a.alert_id.to_string(),
                });
                for (name, value) in [
                    ("source_ip", &a.source_ip),
                    ("host", &a.host_name),
                    ("user", &a.user_name),
                ] {
                    if let Some(v) = value {
                        labels[name] = json!(v);
                    }
                }
                let mut alert = json!({
                    "labels": labels,
                    "annotations": {"summary": line(a), "status": a.status, "count": a.count.to_string()},
                    "startsAt": rfc3339(a.first_seen),
                });
                if matches!(a.status.as_str(), "resolved" | "false_positive") {
                    alert["endsAt"] = json!(rfc3339(a.updated_at));
                }
                alert
            })
            .collect();
        check(self.http.post(url).json(&alerts).send().await).await
    }

    async fn email(&self, message: &Message<'_>) -> Result<(), SendError> {
        let smtp = self
            .smtp
            .as_ref()
            .ok_or_else(|| SendError("no SMTP transport".into()))?;
        let from = self
            .config
            .from
            .as_deref()
            .ok_or_else(|| SendError("no from address".into()))?;
        let mut builder = lettre::Message::builder()
            .from(from.parse().map_err(|e| SendError(format!("from: {e}")))?)
            .subject(subject(&message.title()))
            .message_id(Some(format!(
                "<{}@secmon>",
                message.idempotency_key().replace('/', ".")
            )));
        for to in &self.config.to {
            builder = builder.to(to.parse().map_err(|e| SendError(format!("to {to}: {e}")))?);
        }
        let email = builder
            .body(message.lines().join("\n") + "\n")
            .map_err(|e| SendError(format!("message: {e}")))?;
        smtp.send(email)
            .await
            .map(|_| ())
            .map_err(|e| SendError(format!("smtp: {}", redact(&e.to_string()))))
    }
}

/// `smtps://` is TLS from the start; `smtp://` must upgrade with STARTTLS
/// (a server that does not offer it gets nothing, credentials included).
fn smtp_transport(
    url: &str,
    config: &Channel,
) -> Result<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>, String> {
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("smtp_url: {e}"))?;
    let host = parsed.host_str().ok_or("smtp_url: no host")?.to_owned();
    let implicit = match parsed.scheme() {
        "smtps" => true,
        "smtp" => false,
        other => return Err(format!("smtp_url: scheme {other}: use smtps:// or smtp://")),
    };
    let mut params = TlsParameters::builder(host.clone());
    if let Some(ca) = &config.ca_path {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", ca.display()))?;
        params = params.add_root_certificate(cert);
    }
    let params = params.build().map_err(|e| format!("smtp TLS: {e}"))?;
    let port = parsed.port().unwrap_or(if implicit { 465 } else { 587 });
    let mut builder = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .timeout(Some(TIMEOUT))
        .tls(if implicit {
            Tls::Wrapper(params)
        } else {
            Tls::Required(params)
        });
    if !parsed.username().is_empty() {
        let user = percent_decode(parsed.username());
        let password = percent_decode(parsed.password().unwrap_or_default());
        builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
            user, password,
        ));
    }
    Ok(builder.build())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => match std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => {
                    out.push(b'%');
                    i += 1;
                }
            },
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// HMAC-SHA256 of `"<timestamp>.<body>"`, hex.
pub fn sign(secret: &str, timestamp: &str, body: &str) -> String {
    // HMAC takes a key of any length: this never fails.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An email subject: one line (see [`plain`]) of at most
/// [`SUBJECT_CHARS`] characters.
fn subject(title: &str) -> String {
    let line = plain(title);
    if line.chars().count() <= SUBJECT_CHARS {
        return line;
    }
    truncate(&line, SUBJECT_CHARS)
}

/// The outcome of a request, as an error naming neither the URL nor what a
/// redirect pointed at.
async fn check(response: Result<reqwest::Response, reqwest::Error>) -> Result<(), SendError> {
    let response = response.map_err(|e| SendError(format!("request: {}", http_error(e))))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    if status.is_redirection() {
        return Err(SendError(format!(
            "answered {status}, a redirect: secmon follows none (the channel's headers would go with it); set url to the address that answers"
        )));
    }
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(ANSWER_CHARS).collect();
    Err(SendError(format!(
        "answered {status}: {}",
        plain(&redact(&body))
    )))
}

/// A Slack incoming-webhook message: text for notifications, blocks to
/// read. The mrkdwn parts are escaped and `verbatim` (Slack makes no
/// links or mentions of them); the header is `plain_text`, never parsed.
fn slack(message: &Message<'_>) -> Value {
    let node = format!("secmon node {}", plain(message.node_name));
    json!({
        "text": mrkdwn(&message.title()),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": truncate(&message.title(), 150)}},
            {"type": "section", "text": {"type": "mrkdwn", "verbatim": true, "text": truncate_escaped(&mrkdwn(&message.lines().join("\n")), 3000)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "verbatim": true, "text": mrkdwn(&node)}]},
        ]
    })
}

/// `text` (escaped for mrkdwn) cut to `max` characters, never inside an
/// `&amp;`-style entity.
fn truncate_escaped(text: &str, max: usize) -> String {
    let mut t = truncate(text, max);
    if t != text {
        t.pop(); // the ellipsis
        if let Some(amp) = t.rfind('&')
            && !t[amp..].contains(';')
        {
            t.truncate(amp);
        }
        t.push('…');
    }
    t
}

/// A Teams (Workflows) incoming-webhook message: an Adaptive Card. The text
/// is in `TextRun`s of `RichTextBlock`s, which Adaptive Cards render as
/// they are: a `TextBlock` would read markdown (links) from log text.
fn teams(message: &Message<'_>) -> Value {
    let run = |text: String| json!({"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": text}]});
    let mut body = vec![json!({
        "type": "RichTextBlock",
        "inlines": [{"type": "TextRun", "size": "Large", "weight": "Bolder", "text": message.title()}],
    })];
    body.extend(message.lines().into_iter().map(run));
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            }
        }]
    })
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2 ("Jefe"), message split as timestamp.body.
        assert_eq!(sign("Jefe", "what do ya want for nothing?", "").len(), 64);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            expected,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(sign("Jefe", "what do ya want", " for nothing?"), {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
            mac.update(b"what do ya want. for nothing?");
            mac.finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        });
    }

    const HOSTILE: &str = "<!channel> <https://evil|reset>";

    fn hostile_alert() -> AlertSummary {
        let now = Utc::now();
        AlertSummary {
            event: crate::store::outbox::AlertEvent::Raised,
            alert_id: 7,
            rule_title: "Brute *force* & [link](https://evil)".into(),
            rule_id: "r".into(),
            severity: "high".into(),
            status: "open".into(),
            count: 1,
            first_seen: now,
            last_seen: now,
            source_ip: Some("10.0.0.1".into()),
            host_name: Some("web\r\nBcc: victim@example.org".into()),
            user_name: Some(HOSTILE.into()),
            assignee: None,
            correlation: false,
            tags: vec![],
            created_at: now,
            updated_at: now,
            trusted: false,
        }
    }

    fn with_message<T>(f: impl FnOnce(&Message<'_>) -> T) -> T {
        let alert = hostile_alert();
        let alerts = [(1, &alert)];
        f(&Message {
            node_id: "n",
            node_name: "node <!here>",
            alerts: &alerts,
            digest: false,
        })
    }

    /// Every string in `v`, with where it is.
    fn strings(v: &Value, at: String, out: &mut Vec<(String, String)>) {
        match v {
            Value::String(s) => out.push((at, s.clone())),
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    strings(x, format!("{at}[{i}]"), out);
                }
            }
            Value::Object(o) => {
                for (k, x) in o {
                    strings(x, format!("{at}.{k}"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn slack_mrkdwn_escapes_mentions_and_links() {
        let v = with_message(slack);
        let mut all = Vec::new();
        strings(&v, String::new(), &mut all);
        let section = v["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(
            section.contains("user &lt;!channel&gt; &lt;https://evil|reset&gt;"),
            "{section}"
        );
        assert!(section.contains("Brute *force* &amp; [link]"), "{section}");
        assert_eq!(v["blocks"][1]["text"]["verbatim"], true);
        assert!(
            section.contains("web\\r\\nBcc"),
            "line breaks shown: {section}"
        );
        assert_eq!(
            v["blocks"][2]["elements"][0]["text"],
            "secmon node node &lt;!here&gt;"
        );
        for (at, text) in all {
            if at.contains("blocks[0]") || at.ends_with(".type") {
                continue; // plain_text: Slack parses nothing in it
            }
            assert!(!text.contains("<!"), "{at}: {text}");
            assert!(!text.contains("<https"), "{at}: {text}");
        }
    }

    #[test]
    fn a_cut_never_splits_an_entity() {
        for n in [2000, 751] {
            let text = mrkdwn(&"<".repeat(n));
            let cut = truncate_escaped(&text, 3000);
            assert!(cut.ends_with("&lt;…"), "{}", &cut[cut.len() - 12..]);
            assert!(cut.chars().count() <= 3000);
        }
        let fits = mrkdwn(&"<".repeat(750));
        assert_eq!(truncate_escaped(&fits, 3000), fits);
    }

    #[test]
    fn teams_text_is_never_markdown() {
        let v = with_message(teams);
        let body = v["attachments"][0]["content"]["body"].as_array().unwrap();
        for block in body {
            assert_eq!(block["type"], "RichTextBlock", "{block}");
            for run in block["inlines"].as_array().unwrap() {
                assert_eq!(run["type"], "TextRun", "TextRuns are never markdown");
            }
        }
        let text = body[1]["inlines"][0]["text"].as_str().unwrap();
        assert!(text.contains(HOSTILE), "kept as text: {text}");
        assert!(!text.contains('\n'), "one line: {text}");
    }

    #[test]
    fn an_email_subject_is_one_bounded_line() {
        let mut alert = hostile_alert();
        alert.rule_title = format!("x\r\nBcc: victim@example.org\r\n{}", "y".repeat(500));
        let alerts = [(1, &alert)];
        let message = Message {
            node_id: "n",
            node_name: "node",
            alerts: &alerts,
            digest: false,
        };
        let subject = subject(&message.title());
        assert!(subject.chars().count() <= SUBJECT_CHARS, "{subject}");
        assert!(!subject.contains(['\r', '\n']), "{subject}");
        let email = lettre::Message::builder()
            .from("a@example.org".parse().unwrap())
            .to("b@example.org".parse().unwrap())
            .subject(subject)
            .body(message.lines().join("\n"))
            .unwrap();
        let raw = String::from_utf8(email.formatted()).unwrap();
        assert!(
            !raw.lines().any(|l| l.starts_with("Bcc:")),
            "no header injected: {raw}"
        );
    }

    #[test]
    fn plain_escapes_invisible_and_control_characters() {
        assert_eq!(
            plain("a\u{202e}b\u{200b}c\td\u{1b}[31m"),
            "a\\u{202e}b\\u{200b}c\\td\\u{1b}[31m"
        );
        assert_eq!(plain(&"é".repeat(300)).chars().count(), VALUE_CHARS + 1);
        assert_eq!(plain("ünïcode ok"), "ünïcode ok");
    }

    #[test]
    fn webhook_headers_are_checked_and_kept_out_of_debug() {
        let channel = |headers: &str| -> Channel {
            serde_saphyr::from_str(&format!(
                "name: h\nkind: webhook\nurl: http://127.0.0.1:1/\nheaders: {headers}\n"
            ))
            .unwrap()
        };
        let err = Sender::new(channel("{\"Bad Name\": x}")).err().unwrap();
        assert!(err.contains("not an HTTP header name"), "{err}");
        let err = Sender::new(channel("{X-A: \"a\\nb\"}")).err().unwrap();
        assert!(err.contains("not a valid header value"), "{err}");
        assert!(!err.contains("a\nb"));
        let sender = Sender::new(channel("{Authorization: Bearer t0ken}")).unwrap();
        assert!(!format!("{:?}", sender.headers).contains("t0ken"));
        let shown = serde_json::to_value(&sender.config).unwrap();
        assert_eq!(shown["headers"]["Authorization"], "***");
    }

    #[tokio::test]
    async fn a_failed_send_names_no_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let channel: Channel = serde_saphyr::from_str(&format!(
            "name: s\nkind: slack\nurl: http://127.0.0.1:{port}/services/T0/B0/S3CR3T\n"
        ))
        .unwrap();
        let sender = Sender::new(channel).unwrap();
        let alert = hostile_alert();
        let alerts = [(1, &alert)];
        let message = Message {
            node_id: "n",
            node_name: "node",
            alerts: &alerts,
            digest: false,
        };
        let err = sender.send(&message).await.unwrap_err();
        assert!(!err.0.contains("S3CR3T"), "{err}");
        assert!(err.0.contains("cannot connect"), "{err}");
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_nor_named() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let followed = Arc::new(AtomicUsize::new(0));
        let app = {
            let followed = followed.clone();
            axum::Router::new()
                .route(
                    "/hook",
                    axum::routing::post(|| async {
                        (
                            axum::http::StatusCode::TEMPORARY_REDIRECT,
                            [("location", "/elsewhere/L0CATION-SECRET")],
                        )
                    }),
                )
                .fallback(move || {
                    followed.fetch_add(1, Ordering::SeqCst);
                    async { axum::http::StatusCode::OK }
                })
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let channel: Channel = serde_saphyr::from_str(&format!(
            "name: h\nkind: webhook\nurl: http://{addr}/hook\nheaders: {{X-Api-Key: k3y}}\n"
        ))
        .unwrap();
        let sender = Sender::new(channel).unwrap();
        let alert = hostile_alert();
        let alerts = [(1, &alert)];
        let message = Message {
            node_id: "n",
            node_name: "node",
            alerts: &alerts,
            digest: false,
        };
        let err = sender.send(&message).await.unwrap_err();
        assert!(err.0.contains("307") && err.0.contains("redirect"), "{err}");
        assert!(!err.0.contains("L0CATION-SECRET"), "{err}");
        assert_eq!(
            followed.load(Ordering::SeqCst),
            0,
            "the key went nowhere else"
        );
    }

    #[test]
    fn percent_decoding_of_smtp_credentials() {
        assert_eq!(percent_decode("p%40ss%2Fword"), "p@ss/word");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
