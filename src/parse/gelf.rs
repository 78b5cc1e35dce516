//! GELF 1.1 payloads (Graylog Extended Log Format), once the source has
//! reassembled and decompressed them.
//!
//! `host` is the host, `short_message` the message, `timestamp` (seconds,
//! with decimals) the time, `level` the syslog severity. `full_message` and
//! the deprecated `facility`, `file` and `line` are kept under `fields.gelf`;
//! additional `_name` fields become labels (`_id` is reserved by the spec and
//! is dropped). A program named by `_program`, `_application_name` or
//! `_appname` (or a message that is recognisable on its own, like an access
//! log line) goes through its program parser.
//!
//! A payload that is not a GELF message is kept as text with
//! `labels["gelf_error"]` saying why: nothing is dropped.
//!
//! Sizes: the source caps the payload (`crate::ingest::gelf`: to
//! `max_message_bytes`, decompressed; a cut document no longer parses and
//! is kept as text, flagged `truncated`). Here `short_message`,
//! `full_message` and every additional field's value are each cut to
//! `max_message_bytes`, flagged `truncated` (with `original_length` for the
//! message), whatever the payload holds.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{ParseOptions, set_field};
use crate::model::Event;

/// One GELF payload as an event. Never fails.
pub fn parse(
    payload: &[u8],
    peer: Option<std::net::IpAddr>,
    received_at: DateTime<Utc>,
    opts: &ParseOptions,
) -> Event {
    let mut event = Event {
        timestamp: received_at,
        received_at,
        host_ip: peer,
        ..Event::default()
    };
    event.labels.insert("input".into(), "gelf".into());
    let max = opts.max_message_bytes;
    // The source caps the payload; here the cap applies to each value, as
    // a cut JSON document would not parse.
    let whole = ParseOptions {
        max_message_bytes: usize::MAX,
        ..opts.clone()
    };
    let text = super::decode(payload, &whole, &mut event).into_owned();
    let object = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return kept_as_text(event, text, "a GELF message must be a JSON object"),
        Err(e) => return kept_as_text(event, text, &format!("invalid JSON: {e}")),
    };
    let Some(short) = object.get("short_message").and_then(Value::as_str) else {
        return kept_as_text(event, text, "a GELF message needs a short_message string");
    };
    let (short, cut_short) = cut(short, max);
    if cut_short {
        event.labels.insert("truncated".into(), "true".into());
        event.labels.insert(
            "original_length".into(),
            object
                .get("short_message")
                .and_then(Value::as_str)
                .map_or(0, str::len)
                .to_string()
                .into(),
        );
    }
    event.message = short.to_owned();
    event.original = Some(short.to_owned());
    event.host_name = object
        .get("host")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(t) = object.get("timestamp").and_then(Value::as_f64)
        && let Some(t) = DateTime::from_timestamp_micros((t * 1e6).round() as i64)
    {
        event.timestamp = t;
    }
    event.severity = object
        .get("level")
        .and_then(Value::as_u64)
        .and_then(|l| u8::try_from(l).ok())
        .filter(|l| *l <= 7);
    let mut program = None;
    let mut cut_any = false;
    // Added at once, sorted once (see `Labels`' `Extend`).
    let mut additional = Vec::new();
    for (key, value) in &object {
        match key.as_str() {
            "full_message" | "facility" | "file" | "line" => {
                let value = match value {
                    Value::String(s) => {
                        let (kept, was_cut) = cut(s, max);
                        cut_any |= was_cut;
                        Value::String(kept.to_owned())
                    }
                    Value::Number(_) | Value::Bool(_) | Value::Null => value.clone(),
                    // Nothing the spec allows: kept as its text, cut.
                    other => {
                        let text = other.to_string();
                        let (kept, was_cut) = cut(&text, max);
                        cut_any |= was_cut;
                        Value::String(kept.to_owned())
                    }
                };
                set_field(&mut event, &format!("gelf.{key}"), value);
            }
            "_id" => {}
            _ => {
                let Some(name) = key.strip_prefix('_') else {
                    continue;
                };
                let value = match value {
                    Value::String(s) => s.clone(),
                    Value::Null => continue,
                    other => other.to_string(),
                };
                let value = match cut(&value, max) {
                    (kept, true) => {
                        cut_any = true;
                        kept.to_owned()
                    }
                    (_, false) => value,
                };
                if matches!(name, "program" | "application_name" | "appname") {
                    program = Some(value.clone());
                }
                additional.push((name.to_owned().into(), value.into()));
            }
        }
    }
    event.labels.extend(additional);
    if cut_any {
        event.labels.insert("truncated".into(), "true".into());
    }
    if let Some(p) = &program {
        event.process_name = Some(p.clone());
    }
    super::dispatch(program.as_deref(), None, short, &mut event);
    event
}

/// `s` cut to at most `max` bytes at a character boundary, and whether it was.
fn cut(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

fn kept_as_text(mut event: Event, text: String, why: &str) -> Event {
    event
        .labels
        .insert("gelf_error".into(), why.to_owned().into());
    event.message = text.clone();
    event.original = Some(text);
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gelf(json: &str) -> Event {
        parse(json.as_bytes(), None, Utc::now(), &ParseOptions::default())
    }

    #[test]
    fn a_gelf_message_fills_host_time_severity_and_labels() {
        let e = gelf(
            r#"{"version":"1.1","host":"example.org","short_message":"A short message",
                "full_message":"Backtrace here\n\nmore stuff","timestamp":1385053862.3072,
                "level":1,"_user_id":9001,"_some_info":"foo","_id":"dropped"}"#,
        );
        assert_eq!(e.host_name.as_deref(), Some("example.org"));
        assert_eq!(e.message, "A short message");
        assert_eq!(e.timestamp.timestamp_millis(), 1_385_053_862_307);
        assert_eq!(e.severity, Some(1));
        assert_eq!(e.labels.get("user_id").map(|v| v.as_ref()), Some("9001"));
        assert_eq!(e.labels.get("some_info").map(|v| v.as_ref()), Some("foo"));
        assert!(!e.labels.contains_key("id"));
        assert_eq!(
            super::super::get_field(&e, "gelf.full_message"),
            Some(&Value::from("Backtrace here\n\nmore stuff"))
        );
    }

    #[test]
    fn a_named_program_goes_through_its_parser() {
        let e = gelf(
            r#"{"version":"1.1","host":"h","_program":"sshd",
                "short_message":"Accepted publickey for alice from 192.0.2.7 port 50000 ssh2"}"#,
        );
        assert_eq!(e.dataset.as_deref(), Some("sshd"));
        assert_eq!(e.user_name.as_deref(), Some("alice"));
        assert_eq!(e.outcome.as_deref(), Some("success"));
        assert_eq!(e.process_name.as_deref(), Some("sshd"));
    }

    #[test]
    fn what_is_not_gelf_is_kept_with_the_reason() {
        let e = gelf(r#"{"host":"h"}"#);
        assert_eq!(e.message, r#"{"host":"h"}"#);
        assert_eq!(
            e.labels.get("gelf_error").map(|v| v.as_ref()),
            Some("a GELF message needs a short_message string")
        );
        let e = gelf("not json");
        assert!(e.labels["gelf_error"].starts_with("invalid JSON"));
        assert_eq!(e.message, "not json");
    }

    #[test]
    fn a_long_message_is_cut_and_flagged_not_the_document() {
        let long = "é".repeat(40);
        let json = format!(r#"{{"version":"1.1","host":"h","short_message":"{long}"}}"#);
        let opts = ParseOptions {
            max_message_bytes: 11,
            ..ParseOptions::default()
        };
        let e = parse(json.as_bytes(), None, Utc::now(), &opts);
        assert_eq!(e.message, "ééééé");
        assert_eq!(e.labels.get("truncated").map(|v| v.as_ref()), Some("true"));
        assert_eq!(
            e.labels.get("original_length").map(|v| v.as_ref()),
            Some("80")
        );
    }

    #[test]
    fn full_message_and_every_additional_field_are_cut_to_the_cap() {
        let big = "x".repeat(5_000);
        let json = format!(
            r#"{{"short_message":"m","full_message":"{big}","_a":"{big}","_b":["{big}"],"_n":12,"file":{{"k":"{big}"}}}}"#
        );
        let opts = ParseOptions {
            max_message_bytes: 1_000,
            ..ParseOptions::default()
        };
        let e = parse(json.as_bytes(), None, Utc::now(), &opts);
        assert_eq!(e.message, "m");
        assert_eq!(e.labels.get("truncated").map(|v| v.as_ref()), Some("true"));
        assert!(
            !e.labels.contains_key("original_length"),
            "the message was whole"
        );
        assert_eq!(e.labels["a"].len(), 1_000);
        assert_eq!(e.labels["b"].len(), 1_000);
        assert_eq!(e.labels["n"], "12");
        let full = super::super::get_field(&e, "gelf.full_message").unwrap();
        assert_eq!(full.as_str().unwrap().len(), 1_000);
        let file = super::super::get_field(&e, "gelf.file").unwrap();
        assert_eq!(file.as_str().unwrap().len(), 1_000);
        assert!(
            e.approx_bytes() < 8 * 1_000,
            "{} bytes from a {}-byte cap",
            e.approx_bytes(),
            1_000
        );
        // Under the cap nothing is flagged.
        let e = parse(
            br#"{"short_message":"m","full_message":"f","_a":"a"}"#,
            None,
            Utc::now(),
            &opts,
        );
        assert!(!e.labels.contains_key("truncated"));
    }
}
