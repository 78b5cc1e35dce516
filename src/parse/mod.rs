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
//!    receive time), `message` = the MSG part, the rest in `fields.log.syslog`
//!    (a Solaris `[ID 800047 auth.info]` message ID too).
//! 6. **Program parser**, chosen by the program name (see [`dispatch`]), or by
//!    the shape of a header-less line (audit `type=` records, access logs,
//!    Apache/nginx error logs, BIND's and Exim's log files, Squid's access
//!    log).
//!
//! Whatever happens, `log.original` holds the whole line and `message` is
//! never empty unless the line was: a line nobody understands is still an
//! event.
//!
//! Vocabulary (what the parsers write):
//!
//! | dataset | programs | categories |
//! |---|---|---|
//! | `sshd` | sshd, sshd-session, sshd-auth | authentication, network, session |
//! | `dropbear` | dropbear (sshd's action names) | authentication, network, session |
//! | `ftp` | vsftpd, proftpd, pure-ftpd, ftpd, wu-ftpd | authentication, network |
//! | `mail` | postfix/*, dovecot (and its `*-login`, `auth`, `auth-worker`), exim | authentication, email, network |
//! | `dns` | named (and BIND's own log file) | network |
//! | `vpn` | openvpn, ovpn-* | authentication, network |
//! | `proxy` | squid (and its access log) | web |
//! | `pam` | any `pam_unix(...)` / `prog(pam_unix)` line | authentication, session |
//! | `sudo` | sudo | process, authentication |
//! | `su` | su | authentication, session |
//! | `accounts` | useradd, groupadd, usermod, userdel, groupdel, passwd, chpasswd, gpasswd, chage | iam |
//! | `auditd` | audit records | per record type |
//! | `firewall` | kernel iptables/nftables/UFW lines | network |
//! | `kernel` | other kernel lines: USB devices, segfaults, OOM kills | host, process |
//! | `web` | nginx/apache access and error logs, haproxy | web, authentication, network |
//! | `cron` | cron, CRON, crond | process, configuration |
//! | `systemd` | systemd | process |
//!
//! `event.outcome` is `success`, `failure` or `unknown`. A line from a
//! program of this table (see [`PROGRAMS`]) always gets its dataset; when the
//! parser does not know the message, `event.action` is [`UNRECOGNISED`] (and
//! the ingest path counts it in `secmon_parse_unrecognised_total{program}`).

use std::borrow::Cow;
use std::net::IpAddr;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::model::{Event, EventInputError};

/// A parser module's `done(event, category, action, outcome)`: classifies
/// the event under `$dataset` and answers true (recognised).
macro_rules! done_in {
    ($dataset:literal) => {
        fn done(
            event: &mut Event,
            category: &'static str,
            action: &'static str,
            outcome: &'static str,
        ) -> bool {
            super::classify(event, $dataset, category, action, outcome);
            true
        }
    };
}

pub mod accounts;
pub mod auditd;
pub mod cron;
pub mod dns;
pub mod dropbear;
pub mod firewall;
pub mod ftp;
pub mod gelf;
pub mod haproxy;
pub mod journald;
pub mod kernel;
pub mod mail;
pub mod openvpn;
pub mod pam;
pub mod squid;
pub mod sshd;
pub mod su;
pub mod sudo;
pub mod syslog;
pub mod systemd;
pub mod web;
pub mod web_error;

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
    /// Year for RFC 3164 timestamps, which have none; `None`: the most
    /// recent year that does not put the date in the future
    /// ([`syslog::infer_year`]).
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
    "sshd", "dropbear", "ftp", "mail", "dns", "vpn", "proxy", "pam", "sudo", "su", "accounts",
    "auditd", "firewall", "kernel", "web", "cron", "systemd",
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
                event.labels.insert("json_error".into(), why.into());
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
            let inner = strip_solaris_id(inner, &mut event);
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
            .insert("original_length".into(), bytes.len().to_string().into());
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

/// Programs with a parser, and the dataset each writes. A line from one of
/// them always gets its dataset: with [`UNRECOGNISED`] as its action when
/// the parser does not know the message.
pub const PROGRAMS: &[(&str, &str)] = &[
    ("sshd", "sshd"),
    ("sshd-session", "sshd"),
    ("sshd-auth", "sshd"),
    ("dropbear", "dropbear"),
    ("vsftpd", "ftp"),
    ("proftpd", "ftp"),
    ("pure-ftpd", "ftp"),
    ("ftpd", "ftp"),
    ("wu-ftpd", "ftp"),
    ("postfix", "mail"),
    ("dovecot", "mail"),
    ("exim", "mail"),
    ("exim4", "mail"),
    ("named", "dns"),
    ("openvpn", "vpn"),
    ("haproxy", "web"),
    ("squid", "proxy"),
    ("sudo", "sudo"),
    ("su", "su"),
    ("useradd", "accounts"),
    ("groupadd", "accounts"),
    ("usermod", "accounts"),
    ("userdel", "accounts"),
    ("groupdel", "accounts"),
    ("groupmod", "accounts"),
    ("passwd", "accounts"),
    ("chpasswd", "accounts"),
    ("gpasswd", "accounts"),
    ("chage", "accounts"),
    ("audit", "auditd"),
    ("auditd", "auditd"),
    ("audispd", "auditd"),
    ("audisp-syslog", "auditd"),
    ("nginx", "web"),
    ("apache", "web"),
    ("apache2", "web"),
    ("httpd", "web"),
    ("kernel", "kernel"),
    ("cron", "cron"),
    ("CRON", "cron"),
    ("crond", "cron"),
    ("systemd", "systemd"),
];

/// The `event.action` of a line from a known program ([`PROGRAMS`]) whose
/// message its parser does not recognise.
pub const UNRECOGNISED: &str = "unrecognised";

/// The known program `name` (from [`PROGRAMS`]) and its dataset, as static
/// strings. Families that name their processes go by their family's name:
/// `postfix/smtpd` and `postfix-incoming/smtpd` are `postfix`, Dovecot's
/// `imap-login` and `pop3-login` are `dovecot`, `ovpn-server` is
/// `openvpn`, Apache's `httpd/backend1` is `httpd`.
pub fn known_program(name: &str) -> Option<(&'static str, &'static str)> {
    let family = if name.starts_with("postfix") {
        "postfix"
    } else if name.ends_with("-login") || name == "dovecot-auth" {
        "dovecot"
    } else if name.starts_with("ovpn-") {
        "openvpn"
    } else {
        name.split_once('/').map_or(name, |(first, _)| first)
    };
    PROGRAMS.iter().find(|(p, _)| *p == family).copied()
}

/// Runs the parser for `program` on `msg`; true when a parser recognised it.
///
/// `module` is the `(pam_unix)` part of the old `prog(pam_unix)[pid]` tag.
pub fn dispatch(program: Option<&str>, module: Option<&str>, msg: &str, event: &mut Event) -> bool {
    if (module.is_some_and(|m| m.starts_with("pam_"))
        || msg.starts_with("pam_")
        || msg.starts_with("(pam_"))
        && pam::parse(msg, event)
    {
        return true;
    }
    let Some(program) = program else {
        return dispatch_headerless(msg, event);
    };
    let Some((name, dataset)) = known_program(program) else {
        // Dovecot's authentication processes log under generic names.
        if matches!(program, "auth" | "auth-worker") && mail::dovecot(msg, event) {
            return true;
        }
        return dispatch_headerless(msg, event);
    };
    let recognised = match dataset {
        "sshd" => sshd::parse(msg, event),
        "dropbear" => dropbear::parse(msg, event),
        "ftp" => ftp::parse(name, msg, event),
        "mail" => mail::parse(name, msg, event),
        "dns" => dns::parse(msg, event),
        "vpn" => openvpn::parse(msg, event),
        "proxy" => squid::parse(msg, event),
        "sudo" => sudo::parse(msg, event),
        "su" => su::parse(msg, event),
        "accounts" => accounts::parse(name, msg, event),
        "auditd" => auditd::parse(msg, event),
        "web" if name == "haproxy" => haproxy::parse(msg, event),
        "web" => web::parse(msg, event) || web_error::parse(msg, event),
        "kernel" => firewall::parse(msg, event) || kernel::parse(msg, event),
        "cron" => cron::parse(msg, event),
        _ => systemd::parse(msg, event),
    };
    // PAM lines under the program's own name, without a module prefix.
    if recognised || pam::parse(msg, event) {
        return true;
    }
    event.dataset = Some(dataset.into());
    event.action = Some(UNRECOGNISED.into());
    false
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
    // vsftpd's own log: `[pid N] [user] FAIL LOGIN: Client "IP"`.
    if t.starts_with("[pid ") && ftp::vsftpd(t, event) {
        event.process_name.get_or_insert_with(|| "vsftpd".into());
        return true;
    }
    // Access logs first: the most common lines without a program.
    if web::parse(t, event) {
        return true;
    }
    // Apache's and nginx's error logs (`[level] ...` after their date).
    if t.starts_with('[') && web_error::parse(t, event) {
        return event.action.as_deref() != Some(UNRECOGNISED);
    }
    // BIND's log file (`client IP#port ...` after its date).
    if dns::looks_like(t) {
        return dns::parse(t, event);
    }
    // Squid's access log starts with its own `seconds.millis` time.
    if t.starts_with(|c: char| c.is_ascii_digit()) && squid::parse(t, event) {
        return true;
    }
    // Exim's main log (`2013-01-04 17:03:46 ...`, no program in it), and
    // Dovecot 2.4's `auth(user,IP,mech)<id>: ...`, which is no tag.
    mail::exim(t, event) || (t.starts_with("auth(") && mail::dovecot(t, event))
}

/// Solaris's `[ID 800047 auth.info] msg`: the message ID goes to
/// `log.syslog.msgid`, the message on without it.
fn strip_solaris_id<'a>(msg: &'a str, event: &mut Event) -> &'a str {
    let Some((inside, after)) = msg
        .strip_prefix("[ID ")
        .and_then(|rest| rest.split_once("] "))
    else {
        return msg;
    };
    let Some((id, facility)) = inside.split_once(' ') else {
        return msg;
    };
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || !facility.contains('.') {
        return msg;
    }
    set_field(event, "log.syslog.msgid", Value::from(id));
    after
}

/// A JSON object line, as an event; `None` when it is not JSON, an error when
/// it is JSON but not an acceptable event (the line then goes on as text).
fn from_json_line(text: &str, base: &Event) -> Option<Result<Event, String>> {
    let mut event = match Event::from_json_slice(text.as_bytes(), base.received_at) {
        Ok(event) => event,
        Err(EventInputError::Json(_)) => return None,
        Err(err) => return Some(Err(err.to_string())),
    };
    event.host_ip = event.host_ip.or(base.host_ip);
    for (k, v) in &base.labels {
        event.labels.insert_missing(k, v);
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
    let mut rest = path;
    // Paths are short: a byte scan beats a `split` searcher here.
    while let Some(dot) = rest.bytes().position(|b| b == b'.') {
        let (part, next) = (&rest[..dot], &rest[dot + 1..]);
        // An object already there is entered without allocating its key.
        if !map.get(part).is_some_and(Value::is_object) {
            map.insert(part.to_owned(), Value::Object(Map::new()));
        }
        let Some(Value::Object(inner)) = map.get_mut(part) else {
            return;
        };
        map = inner;
        rest = next;
    }
    map.insert(rest.to_owned(), value);
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
fn classify(
    event: &mut Event,
    dataset: &'static str,
    category: &'static str,
    action: impl Into<Cow<'static, str>>,
    outcome: &'static str,
) {
    event.dataset = Some(dataset.into());
    event.category = Some(category.into());
    event.action = Some(action.into());
    event.outcome = Some(outcome.into());
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
    // Word by word (a word starts after each space), without a searcher
    // per word: these strings are short.
    let mut rest = s;
    loop {
        if let Some(value) = rest.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
            let end = value
                .bytes()
                .position(|b| matches!(b, b' ' | b';' | b','))
                .unwrap_or(value.len());
            return Some(&value[..end]);
        }
        rest = &rest[memchr::memchr(b' ', rest.as_bytes())? + 1..];
    }
}

/// A host as a line names it: an address goes to `source.ip`, a host name
/// to `fields.source.domain`; anything else (`UNKNOWN`, stray words) is not
/// a host and is left out.
fn set_source_host(event: &mut Event, host: &str) {
    if let Some(ip) = parse_ip(host) {
        event.source_ip = Some(ip);
    } else if is_host_name(host) {
        set_field(event, "source.domain", Value::from(host));
    }
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with(['-', '.'])
        && !s.eq_ignore_ascii_case("unknown")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
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
    fn known_programs_always_get_their_dataset() {
        let e = parse(
            &raw(b"<38>Oct 11 22:14:15 host sshd[7]: Server listening on 0.0.0.0 port 22."),
            &ParseOptions::default(),
        );
        assert_eq!(e.dataset.as_deref(), Some("sshd"));
        assert_eq!(e.action.as_deref(), Some(UNRECOGNISED));
        assert_eq!(e.outcome, None);
        let e = parse(
            &raw(b"<38>Oct 11 22:14:15 host myapp: hello"),
            &ParseOptions::default(),
        );
        assert_eq!(e.dataset, None);
        assert_eq!(
            known_program("sshd-session"),
            Some(("sshd-session", "sshd"))
        );
        assert_eq!(known_program("sshd-sessionX"), None);
        assert_eq!(
            known_program("postfix-incoming/smtpd"),
            Some(("postfix", "mail"))
        );
        assert_eq!(known_program("imap-login"), Some(("dovecot", "mail")));
        assert_eq!(known_program("ovpn-server"), Some(("openvpn", "vpn")));
        assert_eq!(known_program("httpd/backend1"), Some(("httpd", "web")));
    }

    #[test]
    fn solaris_message_ids_are_read() {
        let e = parse(
            &raw(b"Mar 29 05:59:23 dusky sshd[20878]: [ID 800047 auth.info] Failed keyboard-interactive for james from 205.186.180.55 port 42742 ssh2"),
            &ParseOptions::default(),
        );
        assert_eq!(e.action.as_deref(), Some("ssh_login"));
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        assert_eq!(e.source_ip, "205.186.180.55".parse().ok());
        assert_eq!(
            get_field(&e, "log.syslog.msgid"),
            Some(&Value::from("800047"))
        );
    }

    #[test]
    fn hosts_by_name_are_domains_and_junk_is_no_host() {
        let mut e = Event::default();
        set_source_host(&mut e, "mail.example.com");
        assert_eq!(
            get_field(&e, "source.domain"),
            Some(&Value::from("mail.example.com"))
        );
        let mut e = Event::default();
        for junk in ["UNKNOWN", "", "-x", "a b", "<invalid>"] {
            set_source_host(&mut e, junk);
        }
        assert!(e.fields.is_empty() && e.source_ip.is_none());
    }

    #[test]
    fn kv_finds_whole_keys_only() {
        let s = "logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4  user=root";
        assert_eq!(kv(s, "uid"), Some("0"));
        assert_eq!(kv(s, "user"), Some("root"));
        assert_eq!(kv(s, "ruser"), Some(""));
        assert_eq!(kv(s, "rhost"), Some("1.2.3.4"));
        assert_eq!(kv(s, "nope"), None);
        // Inside a word, or without `=`, a key is no key; a value ends at
        // a space, `;` or `,`.
        assert_eq!(kv("xuser=a user user=b,c", "user"), Some("b"));
        assert_eq!(kv("user=a;b user=c", "user"), Some("a"));
        assert_eq!(kv("user", "user"), None);
        assert_eq!(kv("tty=", "tty"), Some(""));
    }
}
