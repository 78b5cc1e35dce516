//! Squid's native access log (`access_log ... squid`): `time elapsed
//! client code/status bytes method URL user hierarchy/peer type`.
//!
//! Dataset `proxy`, category `web`: action `proxy_denied`, outcome
//! `failure`, when Squid refused the request itself (`TCP_DENIED`, or a
//! 403, 405 or 407 with no upstream: `HIER_NONE`); else `proxy_request`,
//! `success` below 400 and `unknown` above. `@timestamp` is the line's
//! own (seconds since 1970 with milliseconds). Fields: `source.ip`,
//! `http.response.status_code`, `http.request.method`, `url.original`,
//! `http.response.body.bytes`, `squid.result_code`, `user.name` when not `-`.

use chrono::DateTime;
use serde_json::Value;

use super::{classify, parse_ip, set_field};
use crate::model::Event;

/// Parses one access-log line; true when it has Squid's shape.
pub fn parse(line: &str, event: &mut Event) -> bool {
    let mut words = line.split_ascii_whitespace();
    // `seconds.millis` first: most lines are no Squid lines.
    let Some((secs, millis)) = words.next().and_then(|t| t.split_once('.')) else {
        return false;
    };
    let (Ok(secs), Ok(millis)) = (secs.parse::<i64>(), millis.parse::<u32>()) else {
        return false;
    };
    // elapsed client code/status bytes method URL [user hierarchy type]
    let w: Vec<&str> = words.take(9).collect();
    if w.len() < 6 {
        return false;
    }
    let Some(ip) = parse_ip(w[1]) else {
        return false;
    };
    let Some((code, status)) = w[2].split_once('/') else {
        return false;
    };
    let Ok(status) = status.parse::<u16>() else {
        return false;
    };
    if w[0].parse::<u64>().is_err() || !code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
        return false;
    }
    if let Some(ts) = DateTime::from_timestamp(secs, millis.min(999) * 1_000_000) {
        event.timestamp = ts;
    }
    event.source_ip = Some(ip);
    set_field(event, "squid.result_code", Value::from(code));
    set_field(event, "http.response.status_code", Value::from(status));
    if let Ok(bytes) = w[3].parse::<u64>() {
        set_field(event, "http.response.body.bytes", Value::from(bytes));
    }
    set_field(event, "http.request.method", Value::from(w[4]));
    set_field(event, "url.original", Value::from(w[5]));
    if let Some(user) = w.get(6).filter(|u| **u != "-") {
        event.user_name = Some((*user).to_owned());
    }
    let no_upstream = w.get(7).is_some_and(|h| h.starts_with("HIER_NONE"));
    let denied = code == "TCP_DENIED" || (no_upstream && matches!(status, 403 | 405 | 407));
    match (denied, status) {
        (true, _) => classify(event, "proxy", "web", "proxy_denied", "failure"),
        (false, s) if s < 400 => classify(event, "proxy", "web", "proxy_request", "success"),
        _ => classify(event, "proxy", "web", "proxy_request", "unknown"),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_and_requests() {
        let mut e = Event::default();
        assert!(parse(
            "1386543500.000      5 175.44.0.184 NONE/405 3364 CONNECT error:method-not-allowed - HIER_NONE/- text/html",
            &mut e
        ));
        assert_eq!(e.action.as_deref(), Some("proxy_denied"));
        assert_eq!(e.timestamp.timestamp(), 1_386_543_500);
        let mut e = Event::default();
        assert!(parse(
            "1386543323.123 4 10.0.0.2 TCP_MISS/200 4099 GET http://example.com/ bob HIER_DIRECT/93.184.216.34 text/html",
            &mut e
        ));
        assert_eq!(
            (
                e.action.as_deref(),
                e.outcome.as_deref(),
                e.user_name.as_deref()
            ),
            (Some("proxy_request"), Some("success"), Some("bob"))
        );
        assert!(!parse("12.5 hello world", &mut Event::default()));
    }
}
