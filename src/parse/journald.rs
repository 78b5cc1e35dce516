//! systemd journal entries, as `journalctl -o json` prints them.
//!
//! The journal's trusted fields fill the same places as a syslog header
//! (`SYSLOG_IDENTIFIER` is the program, `_HOSTNAME` the host, `PRIORITY` and
//! `SYSLOG_FACILITY` the syslog severity and facility), then the program
//! parser runs on `MESSAGE` as it does for syslog. `_SYSTEMD_UNIT`, `_UID`,
//! `_COMM`, `_EXE` and `_CMDLINE` are kept; journal-internal fields (`__*`,
//! `_BOOT_ID`, ...) are not.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::syslog::Header;
use super::{ParseOptions, set_field};
use crate::model::Event;

/// The entry's cursor: where reading resumes after it.
pub fn cursor(entry: &Map<String, Value>) -> Option<&str> {
    entry.get("__CURSOR").and_then(Value::as_str)
}

/// One journal entry as an event.
pub fn parse(entry: &Map<String, Value>, received_at: DateTime<Utc>, opts: &ParseOptions) -> Event {
    let text = |key: &str| entry.get(key).and_then(Value::as_str);
    let number = |key: &str| text(key).and_then(|v| v.parse::<u64>().ok());

    // MESSAGE is a string, or an array of bytes when it is not UTF-8: the
    // generic parser keeps such bytes losslessly and cuts overlong ones.
    let message = match entry.get("MESSAGE") {
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(Value::Array(bytes)) => bytes
            .iter()
            .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect(),
        _ => Vec::new(),
    };
    let mut event = Event {
        timestamp: received_at,
        received_at,
        ..Event::default()
    };
    event.labels.insert("input".into(), "journald".into());
    let msg = super::decode(&message, opts, &mut event).into_owned();
    event.original = Some(msg.clone());
    event.message = msg.clone();

    let program = text("SYSLOG_IDENTIFIER").or_else(|| text("_COMM"));
    let timestamp = number("__REALTIME_TIMESTAMP")
        .and_then(|us| DateTime::from_timestamp_micros(i64::try_from(us).ok()?))
        .map(|t| t.fixed_offset());
    let header = Header {
        version: None,
        facility: number("SYSLOG_FACILITY").and_then(|f| u8::try_from(f).ok()),
        severity: number("PRIORITY").and_then(|p| u8::try_from(p).ok()),
        timestamp,
        hostname: text("_HOSTNAME"),
        appname: program,
        program,
        tag_module: None,
        procid: text("_PID")
            .or_else(|| text("SYSLOG_PID"))
            .map(Cow::Borrowed),
        msgid: None,
        structured_data: Vec::new(),
        msg: &msg,
    };
    header.apply(&mut event);
    event.severity = header.severity;
    event.process_executable = text("_EXE").map(str::to_owned);
    event.process_command_line = text("_CMDLINE").map(str::to_owned);
    for (key, path) in [
        ("_SYSTEMD_UNIT", "systemd.unit"),
        ("_TRANSPORT", "journald.transport"),
        ("_COMM", "process.comm"),
        ("_UID", "journald.uid"),
    ] {
        if let Some(v) = text(key) {
            set_field(&mut event, path, Value::from(v));
        }
    }
    let inner = match super::syslog::unwrap_repeated(&msg) {
        Some((count, inner)) => {
            set_field(&mut event, "event.repeat_count", Value::from(count));
            inner
        }
        None => &msg,
    };
    super::dispatch(program, None, inner, &mut event);
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn an_sshd_entry_is_parsed_like_its_syslog_line() {
        let e = entry(
            r#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1700000000123456","_HOSTNAME":"web1",
                "SYSLOG_IDENTIFIER":"sshd","_PID":"42","PRIORITY":"6","SYSLOG_FACILITY":"10",
                "_SYSTEMD_UNIT":"ssh.service","_EXE":"/usr/sbin/sshd",
                "MESSAGE":"Failed password for invalid user admin from 10.0.0.9 port 2222 ssh2"}"#,
        );
        assert_eq!(cursor(&e), Some("s=1;i=2"));
        let ev = parse(&e, Utc::now(), &ParseOptions::default());
        assert_eq!(ev.host_name.as_deref(), Some("web1"));
        assert_eq!(ev.process_name.as_deref(), Some("sshd"));
        assert_eq!(ev.process_pid, Some(42));
        assert_eq!(ev.timestamp.timestamp_micros(), 1_700_000_000_123_456);
        assert_eq!(ev.dataset.as_deref(), Some("sshd"));
        assert_eq!(ev.outcome.as_deref(), Some("failure"));
        assert_eq!(ev.user_name.as_deref(), Some("admin"));
        assert_eq!(ev.source_ip, Some("10.0.0.9".parse().unwrap()));
        assert_eq!(ev.severity, Some(6));
        assert_eq!(ev.labels.get("input").map(|v| v.as_ref()), Some("journald"));
        assert_eq!(
            super::super::get_field(&ev, "systemd.unit"),
            Some(&Value::from("ssh.service"))
        );
        assert_eq!(
            super::super::get_field(&ev, "log.syslog.facility.name"),
            Some(&Value::from("authpriv"))
        );
    }

    #[test]
    fn a_binary_message_is_kept_losslessly() {
        let e = entry(r#"{"MESSAGE":[104,105,255],"_COMM":"x"}"#);
        let received = Utc::now();
        let ev = parse(&e, received, &ParseOptions::default());
        assert_eq!(ev.message, "hi\u{fffd}");
        assert_eq!(
            super::super::get_field(&ev, "log.original_base64"),
            Some(&Value::from("aGn/"))
        );
        assert_eq!(ev.timestamp, received);
        assert_eq!(ev.process_name.as_deref(), Some("x"));
    }
}
