//! How one message reaches each kind of channel, in its own format.
//!
//! A message announces one alert update, or a digest of many. Every
//! request carries an idempotency key (`node/alert/version`, or the digest's
//! seq range) so a receiver can drop the duplicate an at-least-once retry
//! may bring.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use lettre::AsyncTransport;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::config::{Channel, ChannelKind};
use crate::store::outbox::AlertSummary;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Alerts listed in a digest's text; the rest are counted.
const DIGEST_LISTED: usize = 20;

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

    fn title(&self) -> String {
        match self.alerts {
            [(_, a)] if !self.digest => format!(
                "[{}] {} ({})",
                a.severity.to_uppercase(),
                a.rule_title,
                describe_event(a)
            ),
            all => format!("{} alert updates on {}", all.len(), self.node_name),
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

/// One alert in one line of text.
fn line(a: &AlertSummary) -> String {
    let mut parts = vec![format!("#{} {} [{}]", a.alert_id, a.rule_title, a.severity)];
    for (name, value) in [
        ("host", &a.host_name),
        ("source", &a.source_ip),
        ("user", &a.user_name),
    ] {
        if let Some(v) = value {
            parts.push(format!("{name} {v}"));
        }
    }
    parts.push(format!(
        "{} ({}x, last {})",
        a.status,
        a.count,
        rfc3339(a.last_seen)
    ));
    parts.join(" · ")
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A channel ready to send: its config and the clients it needs.
pub struct Sender {
    pub config: Channel,
    http: reqwest::Client,
    smtp: Option<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>>,
}

impl Sender {
    pub fn new(config: Channel) -> Result<Sender, String> {
        let tls =
            crate::tls::client_config(config.ca_path.as_deref()).map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let smtp = match (&config.kind, &config.smtp_url) {
            (ChannelKind::Email, Some(url)) => Some(smtp_transport(url.expose(), &config)?),
            (ChannelKind::Email, None) => return Err("email needs smtp_url".into()),
            _ => None,
        };
        Ok(Sender { config, http, smtp })
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
        for (name, value) in &self.config.headers {
            request = request.header(name, value);
        }
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
            .subject(message.title())
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
            .map_err(|e| SendError(format!("smtp: {e}")))
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

async fn check(response: Result<reqwest::Response, reqwest::Error>) -> Result<(), SendError> {
    let response = response.map_err(|e| SendError(format!("request: {e}")))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(200).collect();
    Err(SendError(format!("answered {status}: {body}")))
}

/// A Slack incoming-webhook message: text for notifications, blocks to read.
fn slack(message: &Message<'_>) -> Value {
    json!({
        "text": message.title(),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": truncate(&message.title(), 150)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&message.lines().join("\n"), 3000)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("secmon node {}", message.node_name)}]},
        ]
    })
}

/// A Teams (Workflows) incoming-webhook message: an Adaptive Card.
fn teams(message: &Message<'_>) -> Value {
    let mut body = vec![json!({
        "type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": true,
        "text": message.title(),
    })];
    body.extend(
        message
            .lines()
            .into_iter()
            .map(|l| json!({"type": "TextBlock", "wrap": true, "text": l})),
    );
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

    #[test]
    fn percent_decoding_of_smtp_credentials() {
        assert_eq!(percent_decode("p%40ss%2Fword"), "p@ss/word");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
