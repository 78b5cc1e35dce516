//! Kernel packet-filter log lines: iptables/ip6tables `LOG`, nftables `log`,
//! UFW. Shape: `[uptime] PREFIX IN=eth0 OUT= MAC=.. SRC=.. DST=.. ... PROTO=TCP
//! SPT=.. DPT=.. [flags]`.
//!
//! Dataset `firewall`, category `network`. The action comes from the log
//! prefix (the only place the rule's verdict appears): one containing
//! BLOCK, DROP, REJECT or DENY gives `connection_denied` / `failure`, ALLOW
//! or ACCEPT `connection_allowed` / `success`, anything else (or no prefix)
//! `connection_logged` / `unknown`. Fields: `source.ip/port`,
//! `destination.ip/port`, `fields.network.transport` (lowercase),
//! `fields.observer.ingress.interface.name` (IN),
//! `fields.observer.egress.interface.name` (OUT), `fields.firewall.prefix`,
//! `fields.firewall.mac`, `fields.firewall.tcp_flags`.

use serde_json::Value;

use super::{classify, parse_ip, set_field};
use crate::model::Event;

/// Parses one kernel firewall message into `event`; true when recognised.
pub fn parse(msg: &str, event: &mut Event) -> bool {
    let mut m = msg.trim();
    // [ 1234.567890] uptime stamp
    if m.starts_with('[')
        && let Some((stamp, rest)) = m[1..].split_once(']')
        && stamp.trim().parse::<f64>().is_ok()
    {
        m = rest.trim_start();
    }
    let Some(start) = m.find("IN=") else {
        return false;
    };
    if start > 0 && !m[..start].ends_with(' ') {
        return false;
    }
    let prefix = m[..start].trim();
    let mut src = false;
    let mut flags = Vec::new();
    for token in m[start..].split(' ').filter(|t| !t.is_empty()) {
        let Some((k, v)) = token.split_once('=') else {
            flags.push(Value::from(token));
            continue;
        };
        match k {
            "IN" if !v.is_empty() => {
                set_field(event, "observer.ingress.interface.name", Value::from(v))
            }
            "OUT" if !v.is_empty() => {
                set_field(event, "observer.egress.interface.name", Value::from(v))
            }
            "MAC" if !v.is_empty() => set_field(event, "firewall.mac", Value::from(v)),
            "SRC" => {
                event.source_ip = parse_ip(v);
                src = event.source_ip.is_some();
            }
            "DST" => event.destination_ip = parse_ip(v),
            "SPT" => event.source_port = v.parse().ok(),
            "DPT" => event.destination_port = v.parse().ok(),
            "PROTO" => set_field(event, "network.transport", Value::from(v.to_lowercase())),
            _ => {}
        }
    }
    if !src {
        return false;
    }
    if !prefix.is_empty() {
        set_field(event, "firewall.prefix", Value::from(prefix));
    }
    if !flags.is_empty() {
        set_field(event, "firewall.tcp_flags", Value::Array(flags));
    }
    let upper = prefix.to_uppercase();
    let (action, outcome) = if ["BLOCK", "DROP", "REJECT", "DENY"]
        .iter()
        .any(|w| upper.contains(w))
    {
        ("connection_denied", "failure")
    } else if upper.contains("ALLOW") || upper.contains("ACCEPT") {
        ("connection_allowed", "success")
    } else {
        ("connection_logged", "unknown")
    };
    classify(event, "firewall", "network", action, outcome);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ufw_block() {
        let mut e = Event::default();
        assert!(parse(
            "[ 1234.5] [UFW BLOCK] IN=eth0 OUT= MAC=aa:bb SRC=203.0.113.9 DST=10.0.0.1 LEN=40 TTL=50 ID=1 PROTO=TCP SPT=4444 DPT=22 WINDOW=1024 RES=0x00 SYN URGP=0",
            &mut e
        ));
        assert_eq!(e.action.as_deref(), Some("connection_denied"));
        assert_eq!(e.source_ip, "203.0.113.9".parse().ok());
        assert_eq!(e.destination_port, Some(22));
        assert_eq!(e.source_port, Some(4444));
        assert_eq!(e.fields["network"]["transport"], "tcp");
        assert_eq!(e.fields["firewall"]["prefix"], "[UFW BLOCK]");
        assert_eq!(e.fields["firewall"]["tcp_flags"][0], "SYN");
    }

    #[test]
    fn not_firewall() {
        assert!(!parse("usb 1-1: new device", &mut Event::default()));
        assert!(!parse("XIN=eth0 SRC=1.2.3.4", &mut Event::default()));
    }
}
