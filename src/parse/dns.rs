//! BIND `named` (`lib/ns/query.c`, `lib/ns/xfrout.c`, `lib/ns/client.c`):
//! refused queries and zone transfers, the lines that show a resolver being
//! abused or a zone being harvested.
//!
//! Dataset `dns`, category `network`:
//!
//! | action | outcome | lines |
//! |---|---|---|
//! | `dns_query_denied` | failure | `client IP#port (name): query (cache) 'name/type/class' denied` |
//! | `dns_transfer_denied` | failure | `client IP#port: zone transfer 'zone/AXFR/IN' denied`, `bad zone transfer request: 'zone/IN': non-authoritative zone` |
//! | `dns_update_denied` | failure | `client IP#port: update 'zone/IN' denied` |
//!
//! The client is BIND's `client [@0x...] IP#port` at the start of the
//! message (after `view V:` and a `category: severity:` prefix when the
//! channel prints them); the query name, which the client chose, comes
//! after it. `dns.question.name` and `dns.question.type` are set.

use serde_json::Value;

use super::{classify, parse_ip, set_field};
use crate::model::Event;

/// Parses one named message into `event`; true when recognised.
pub fn parse(msg: &str, event: &mut Event) -> bool {
    let Some(rest) = client_part(msg.trim()) else {
        return false;
    };
    // `@0x7f... ` (BIND 9.11+), then `IP#port`.
    let rest = match rest.strip_prefix('@') {
        Some(r) => r.split_once(' ').map_or("", |(_, r)| r),
        None => rest,
    };
    let Some((addr, rest)) = rest.split_once('#') else {
        return false;
    };
    let Some(ip) = parse_ip(addr) else {
        return false;
    };
    // `port (name): ` or `port: `; then an optional `view V: `.
    let Some((_, text)) = rest.split_once(": ") else {
        return false;
    };
    let text = match text.strip_prefix("view ") {
        Some(r) => r.split_once(": ").map_or(r, |(_, t)| t),
        None => text,
    };
    let (action, question) = if let Some(q) = text.strip_prefix("query ") {
        ("dns_query_denied", q.trim_start_matches("(cache) "))
    } else if let Some(q) = text.strip_prefix("zone transfer ") {
        ("dns_transfer_denied", q)
    } else if let Some(q) = text.strip_prefix("bad zone transfer request: ") {
        ("dns_transfer_denied", q)
    } else if let Some(q) = text.strip_prefix("update ") {
        ("dns_update_denied", q)
    } else {
        return false;
    };
    // `'name/type/class' denied[ (why)]`: the verdict after the closing
    // quote (a query name cannot hold `'` unescaped).
    let Some((name, verdict)) = question
        .strip_prefix('\'')
        .and_then(|q| q.rsplit_once('\''))
    else {
        return false;
    };
    let verdict = verdict.trim();
    if !(verdict.starts_with("denied") || verdict.starts_with(": non-authoritative")) {
        return false;
    }
    event.source_ip = Some(ip);
    let mut parts = name.split('/');
    if let Some(qname) = parts.next() {
        set_field(event, "dns.question.name", Value::from(qname));
    }
    if let Some(qtype) = parts.next().filter(|_| parts.clone().next().is_some()) {
        set_field(event, "dns.question.type", Value::from(qtype));
    }
    classify(event, "dns", "network", action, "failure");
    true
}

/// What follows `client ` at the start, after `category: severity: `
/// (`security: info: client ...`) or a level (`error: client ...`).
fn client_part(msg: &str) -> Option<&str> {
    let mut m = msg;
    for _ in 0..2 {
        if let Some(rest) = m.strip_prefix("client ") {
            return Some(rest);
        }
        let (word, rest) = m.split_once(": ")?;
        if word.contains(' ') {
            return None;
        }
        m = rest;
    }
    m.strip_prefix("client ")
}

/// True when a line without a known program looks like named's.
pub fn looks_like(msg: &str) -> bool {
    client_part(msg).is_some_and(|r| r.contains('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denied_queries_and_transfers() {
        let mut e = Event::default();
        assert!(parse(
            "client @0x7f4e446fd6e8 192.0.2.8#53 (example.io): query (cache) 'example.io/A/IN' denied",
            &mut e
        ));
        assert_eq!(e.action.as_deref(), Some("dns_query_denied"));
        assert_eq!(e.source_ip, "192.0.2.8".parse().ok());
        assert_eq!(
            super::super::get_field(&e, "dns.question.type"),
            Some(&Value::from("A"))
        );
        let mut e = Event::default();
        assert!(parse(
            "security: info: client 62.109.4.89#9334: view external: zone transfer 'a.b/AXFR/IN' denied",
            &mut e
        ));
        assert_eq!(e.action.as_deref(), Some("dns_transfer_denied"));
        let mut e = Event::default();
        assert!(!parse("client 1.2.3.4#5: query: a.example IN A +", &mut e));
    }
}
