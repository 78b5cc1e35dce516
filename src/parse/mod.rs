//! Parsing: a [`RawRecord`] (bytes from a source) becomes one [`Event`].
//!
//! Pure functions, no I/O. The steps, in order:
//!
//! 1. **Size**: input longer than [`ParseOptions::max_message_bytes`] is cut
//!    (at a UTF-8 character boundary when possible) and flagged with
//!    `labels["truncated"] = "true"` and `labels["original_length"]` (bytes).
//! 2. **Encoding**: valid UTF-8 is used as is. Invalid UTF-8 is decoded lossily
//!    (U+FFFD) for `message`/`log.original`, and the exact bytes are kept in
//!    `fields.log.original_base64` (standard base64) with
//!    `labels["invalid_utf8"] = "true"`: nothing is lost.
//! 3. **Framing leftovers**: trailing `\n` / `\r` are removed.
//! 4. **JSON**: a line that is a JSON object becomes an event through
//!    [`Event::from_json`]; if it names a known program (`process.name`) and
//!    has no `event.dataset`, the program parser still runs on its `message`.
//! 5. **Syslog header** (RFC 5424, RFC 3164, loose forms; see [`syslog`]):
//!    `host.name`, `process.name`, `process.pid`, `@timestamp` (else the
//!    receive time), `message` = the MSG part, the rest in `fields.log.syslog`.
//! 6. **Program parser**, chosen by the program name (see [`dispatch`]), or by
//!    the shape of a header-less line (audit `type=` records, access logs).
//!
//! Whatever happens, `log.original` holds the whole line and `message` is
//! never empty unless the line was: a line nobody understands is still an
//! event.
//!
//! Vocabulary (what the parsers write):
//!
//! | dataset | programs | categories |
//! |---|---|---|
//! | `sshd` | sshd | authentication, network, session |
//! | `pam` | any `pam_unix(...)` / `prog(pam_unix)` line | authentication, session |
//! | `sudo` | sudo | process, authentication |
//! | `su` | su | authentication, session |
//! | `accounts` | useradd, groupadd, usermod, userdel, groupdel, passwd, chpasswd, gpasswd, chage | iam |
//! | `auditd` | audit records | per record type |
//! | `firewall` | kernel iptables/nftables/UFW lines | network |
//! | `web` | nginx/apache access logs | web |
//! | `cron` | cron, CRON, crond | process, configuration |
//! | `systemd` | systemd | process |
//!
//! `event.outcome` is `success`, `failure` or `unknown`.

use std::net::IpAddr;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::model::Event;

pub mod accounts;
pub mod auditd;
pub mod cron;
pub mod firewall;
pub mod gelf;
pub mod journald;
pub mod pam;
pub mod sshd;
pub mod su;
pub mod sudo;
pub mod syslog;
pub mod systemd;
pub mod web;

/// Bytes as a source framed them, before parsing.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord {
    pub bytes: Vec<u8>,
    /// The source kind: `"syslog_udp"`, `"syslog_tcp"`, `"http"`, `"file"`, ...
    pub source: &'static str,
    /// The address the record came from, when there is one.
    pub peer: Option<IpAddr>,
    pub received_at: DateTime<Utc>,
}

/// Knobs for [`parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct ParseOptions {
    /// Longer input is truncated to this many bytes and flagged.
    pub max_message_bytes: usize,
    /// Year for RFC 3164 timestamps, which have none; `None`: the receive
    /// year (the previous one if the date would be over a month ahead).
    pub year_hint: Option<i32>,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            max_message_bytes: 64 * 1024,
            year_hint: None,
        }
    }
}

/// Every dataset a program parser may set.
pub const DATASETS: &[&str] = &[
    "sshd", "pam", "sudo", "su", "accounts", "auditd", "firewall", "web", "cron", "systemd",
];

/// Turns one record into one event. Never fails, never drops the line.
pub fn parse(raw: &RawRecord, opts: &ParseOptions) -> Event {
    let mut event = Event {
        timestamp: raw.received_at,
        received_at: raw.received_at,
        host_ip: raw.peer,
        ..Event::default()
    };
    event.labels.insert("input".into(), raw.source.into());

    let text = decode(&raw.bytes, opts, &mut event);
    let text: &str = &text;

    if text.trim_start().starts_with('{') {
        match from_json_line(text, &event) {
            Some(Ok(json_event)) => return json_event,
            // Valid JSON that is no acceptable event: kept as text, with why.
            Some(Err(why)) => {
                event.labels.insert("json_error".into(), why);
            }
            None => {}
        }
    }

    event.original = Some(text.to_owned());
    match syslog::parse_header(text, raw.received_at, opts.year_hint) {
        Some(header) => {
            let program = header.program;
            let msg = header.msg;
            header.apply(&mut event);
            event.message = msg.to_owned();
            let inner = match syslog::unwrap_repeated(msg) {
                Some((count, inner)) => {
                    set_field(&mut event, "event.repeat_count", Value::from(count));
                    inner
                }
                None => msg,
            };
            dispatch(program, header.tag_module, inner, &mut event);
        }
        None => {
            event.message = text.to_owned();
            dispatch_headerless(text, &mut event);
        }
    }
    event
}

/// Steps 1 to 3 of [`parse`]: `bytes` cut to the size limit, without
/// trailing line ends, as text; what was cut or not UTF-8 is flagged on
/// `event`, and invalid bytes are kept in `fields.log.original_base64`.
pub fn decode<'a>(
    mut bytes: &'a [u8],
    opts: &ParseOptions,
    event: &mut Event,
) -> std::borrow::Cow<'a, str> {
    if bytes.len() > opts.max_message_bytes {
        event.labels.insert("truncated".into(), "true".into());
        event
            .labels
            .insert("original_length".into(), bytes.len().to_string());
        bytes = cut_at_char_boundary(&bytes[..opts.max_message_bytes]);
    }
    while let [rest @ .., b'\n' | b'\r'] = bytes {
        bytes = rest;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => {
            event.labels.insert("invalid_utf8".into(), "true".into());
            set_field(
                event,
                "log.original_base64",
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
            );
            String::from_utf8_lossy(bytes)
        }
    }
}

/// Runs the parser for `program` on `msg`; true when a parser recognised it.
///
/// `module` is the `(pam_unix)` part of the old `prog(pam_unix)[pid]` tag.
pub fn dispatch(program: Option<&str>, module: Option<&str>, msg: &str, event: &mut Event) -> bool {
    if (module.is_some_and(|m| m.starts_with("pam_")) || msg.starts_with("pam_"))
        && pam::parse(msg, event)
    {
        return true;
    }
    let Some(program) = program else {
        return dispatch_headerless(msg, event);
    };
    match program {
        "sshd" | "sshd-session" => sshd::parse(msg, event),
        "sudo" => sudo::parse(msg, event),
        "su" => su::parse(msg, event),
        "useradd" | "groupadd" | "usermod" | "userdel" | "groupdel" | "groupmod" | "passwd"
        | "chpasswd" | "gpasswd" | "chage" => accounts::parse(program, msg, event),
        "kernel" => firewall::parse(msg, event),
        "audit" | "auditd" | "audispd" | "audisp-syslog" => auditd::parse(msg, event),
        "nginx" | "apache" | "apache2" | "httpd" => web::parse(msg, event),
        "cron" | "CRON" | "crond" => cron::parse(msg, event),
        "systemd" => systemd::parse(msg, event),
        _ => dispatch_headerless(msg, event),
    }
}

/// Chooses a parser by the shape of a line that has no (known) program.
fn dispatch_headerless(text: &str, event: &mut Event) -> bool {
    let t = text.trim_start();
    if t.starts_with("type=") || t.starts_with("node=") {
        return auditd::parse(t, event);
    }
    if t.contains(" SRC=") && t.contains(" PROTO=") {
        return firewall::parse(t, event);
    }
    web::parse(t, event)
}

/// A JSON object line, as an event; `None` when it is not JSON, an error when
/// it is JSON but not an acceptable event (the line then goes on as text).
fn from_json_line(text: &str, base: &Event) -> Option<Result<Event, String>> {
    let value: Value = serde_json::from_str(text).ok()?;
    let mut event = match Event::from_json(value, base.received_at) {
        Ok(event) => event,
        Err(err) => return Some(Err(err.to_string())),
    };
    event.host_ip = event.host_ip.or(base.host_ip);
    for (k, v) in &base.labels {
        event.labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if let Some(Value::Object(log)) = base.fields.get("log") {
        for (k, v) in log {
            set_field(&mut event, &format!("log.{k}"), v.clone());
        }
    }
    if event.original.is_none() {
        event.original = Some(text.to_owned());
    }
    if event.dataset.is_none()
        && let Some(program) = event.process_name.clone()
    {
        let msg = event.message.clone();
        dispatch(Some(&program), None, &msg, &mut event);
    }
    Some(Ok(event))
}

/// `bytes` without an incomplete UTF-8 sequence at its end (what a cut in the
/// middle of a character leaves); other invalid bytes are left alone.
fn cut_at_char_boundary(bytes: &[u8]) -> &[u8] {
    match std::str::from_utf8(bytes) {
        Err(e) if e.error_len().is_none() => &bytes[..e.valid_up_to()],
        _ => bytes,
    }
}

/// Sets `fields` at a dotted path (`"http.request.method"`), creating the
/// nested objects on the way (the same shape `Event::from_json` keeps).
pub fn set_field(event: &mut Event, path: &str, value: Value) {
    let mut map: &mut Map<String, Value> = &mut event.fields;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            map.insert(part.to_owned(), value);
            return;
        }
        let entry = map
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(inner) = entry else {
            return;
        };
        map = inner;
    }
}

/// Reads `fields` at a dotted path.
pub fn get_field<'a>(event: &'a Event, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = event.fields.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

/// Sets the classification fields in one go.
fn classify(event: &mut Event, dataset: &str, category: &str, action: &str, outcome: &str) {
    event.dataset = Some(dataset.to_owned());
    event.category = Some(category.to_owned());
    event.action = Some(action.to_owned());
    event.outcome = Some(outcome.to_owned());
}

/// `s` without a trailing `[preauth]` marker and spaces.
fn strip_preauth(s: &str) -> (&str, bool) {
    let t = s.trim_end();
    match t.strip_suffix("[preauth]") {
        Some(rest) => (rest.trim_end(), true),
        None => (t, false),
    }
}

/// The value of `key=` in a `k=v k=v` (space separated) string.
fn kv<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(pos) = s[from..].find(key) {
        let start = from + pos;
        let after = start + key.len();
        let at_word_start = start == 0 || s.as_bytes()[start - 1] == b' ';
        if at_word_start && s.as_bytes().get(after) == Some(&b'=') {
            let value = &s[after + 1..];
            let end = value.find([' ', ';', ',']).unwrap_or(value.len());
            return Some(&value[..end]);
        }
        from = after;
    }
    None
}

/// An IP address; IPv4-mapped IPv6 (`::ffff:1.2.3.4`) becomes IPv4.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn raw(bytes: &[u8]) -> RawRecord {
        RawRecord {
            bytes: bytes.to_vec(),
            source: "syslog_udp",
            peer: None,
            received_at: now(),
        }
    }

    #[test]
    fn oversized_is_truncated_at_a_char_boundary_and_flagged() {
        let mut line = b"<34>Oct 11 22:14:15 host app: ".to_vec();
        line.extend("é".repeat(100).as_bytes());
        let opts = ParseOptions {
            max_message_bytes: 41,
            year_hint: None,
        };
        let e = parse(&raw(&line), &opts);
        assert_eq!(e.labels["truncated"], "true");
        assert_eq!(e.labels["original_length"], line.len().to_string());
        assert!(!e.labels.contains_key("invalid_utf8"));
        assert_eq!(e.message, "ééééé");
        assert_eq!(e.original.as_deref().map(str::len), Some(40));
    }

    #[test]
    fn invalid_utf8_is_kept_exactly() {
        let line = b"<13>Oct 11 22:14:15 host app: caf\xe9 \xff";
        let e = parse(&raw(line), &ParseOptions::default());
        assert_eq!(e.labels["invalid_utf8"], "true");
        assert_eq!(e.message, "caf\u{FFFD} \u{FFFD}");
        let b64 = get_field(&e, "log.original_base64")
            .unwrap()
            .as_str()
            .unwrap();
        let back = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(back, line);
    }

    #[test]
    fn unknown_lines_are_kept() {
        let e = parse(&raw(b"hello world\r\n"), &ParseOptions::default());
        assert_eq!(e.message, "hello world");
        assert_eq!(e.original.as_deref(), Some("hello world"));
        assert_eq!(e.dataset, None);
        assert_eq!(e.timestamp, now());
        assert_eq!(e.labels["input"], "syslog_udp");
    }

    #[test]
    fn json_lines_become_events_and_known_programs_are_parsed() {
        let line = br#"{"message":"Failed password for root from 10.0.0.9 port 22 ssh2","process":{"name":"sshd"},"host.name":"h1"}"#;
        let e = parse(&raw(line), &ParseOptions::default());
        assert_eq!(e.host_name.as_deref(), Some("h1"));
        assert_eq!(e.dataset.as_deref(), Some("sshd"));
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        assert_eq!(e.source_ip, "10.0.0.9".parse().ok());
        // Invalid JSON is just text.
        let e = parse(&raw(b"{not json"), &ParseOptions::default());
        assert_eq!(e.message, "{not json");
    }

    #[test]
    fn kv_finds_whole_keys_only() {
        let s = "logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4  user=root";
        assert_eq!(kv(s, "uid"), Some("0"));
        assert_eq!(kv(s, "user"), Some("root"));
        assert_eq!(kv(s, "ruser"), Some(""));
        assert_eq!(kv(s, "rhost"), Some("1.2.3.4"));
        assert_eq!(kv(s, "nope"), None);
    }
}
