//! OpenVPN (`ssl.c`, `ssl_verify.c`, `socket.c`, `multi.c`, `sig.c`): TLS
//! and password failures of clients, and their connections.
//!
//! Dataset `vpn`:
//!
//! | action | category | outcome | text |
//! |---|---|---|---|
//! | `vpn_login` | authentication | failure/success | `TLS Auth Error: Auth Username/Password verification failed for peer`; `TLS: Username/Password authentication succeeded for username 'U'` |
//! | `vpn_tls_error` | network | failure | `TLS Error: TLS handshake failed`, `TLS Error: cannot locate HMAC in incoming packet from [AF_INET]IP:port`, `TLS Error: incoming packet authentication failed from ...`, `VERIFY ERROR: depth=N, error=...` |
//! | `vpn_connection_reset` | network | failure | `SIGUSR1[soft,connection-reset] received, client-instance restarting`: the client instance ended before a session (fail2ban's openvpn filter counts it) |
//! | `vpn_connection` | network | unknown/success | `TCP connection established with [AF_INET]IP:port`; `Peer Connection Initiated with [AF_INET]IP:port` |
//! | `vpn_disconnect` | network | unknown | `Connection reset, restarting`, `WARNING: Bad encapsulated packet length from peer` |
//!
//! The client is the `IP:port` (or `common-name/IP:port`) prefix OpenVPN
//! puts before a client instance's messages, or the `[AF_INET]IP:port` the
//! server names in the text.

use super::{classify, parse_ip};
use crate::model::Event;

/// Parses one OpenVPN message into `event`; true when recognised.
pub fn parse(msg: &str, event: &mut Event) -> bool {
    let mut m = msg.trim();
    if let Some((first, rest)) = m.split_once(' ')
        && let Some(ip) = client_prefix(first)
    {
        event.source_ip = Some(ip);
        m = rest;
    }
    if let Some(i) = m.find("[AF_INET") {
        let addr = m[i..].split_once(']').map_or("", |(_, a)| a);
        let addr = addr.split(' ').next().unwrap_or("");
        if let Some(ip) = addr.rsplit_once(':').and_then(|(ip, _)| parse_ip(ip)) {
            event.source_ip = Some(ip);
        }
    }
    let (category, action, outcome) = if m
        .starts_with("TLS Auth Error: Auth Username/Password verification failed")
    {
        ("authentication", "vpn_login", "failure")
    } else if let Some(rest) =
        m.strip_prefix("TLS: Username/Password authentication succeeded for username '")
    {
        if let Some((user, _)) = rest.rsplit_once('\'') {
            event.user_name = Some(user.to_owned());
        }
        ("authentication", "vpn_login", "success")
    } else if m.starts_with("TLS Error: ") || m.starts_with("VERIFY ERROR: ") {
        ("network", "vpn_tls_error", "failure")
    } else if m.starts_with("SIGUSR1[soft,connection-reset] received, client-instance restarting") {
        ("network", "vpn_connection_reset", "failure")
    } else if m.starts_with("TCP connection established with ") {
        ("network", "vpn_connection", "unknown")
    } else if m.starts_with("Peer Connection Initiated with ") {
        ("network", "vpn_connection", "success")
    } else if m.starts_with("Connection reset, restarting")
        || m.starts_with("WARNING: Bad encapsulated packet length")
    {
        ("network", "vpn_disconnect", "unknown")
    } else {
        return false;
    };
    classify(event, "vpn", category, action, outcome);
    true
}

/// `IP:port` or `name/IP:port` before a client instance's message.
fn client_prefix(word: &str) -> Option<std::net::IpAddr> {
    let addr = word.rsplit_once('/').map_or(word, |(_, a)| a);
    let (ip, port) = addr.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    parse_ip(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_from_prefix_or_text() {
        let mut e = Event::default();
        assert!(parse(
            "192.0.2.254:64480 TLS Auth Error: Auth Username/Password verification failed for peer",
            &mut e
        ));
        assert_eq!(e.source_ip, "192.0.2.254".parse().ok());
        assert_eq!(e.action.as_deref(), Some("vpn_login"));
        let mut e = Event::default();
        assert!(parse(
            "TLS Error: cannot locate HMAC in incoming packet from [AF_INET]192.0.2.253:55340",
            &mut e
        ));
        assert_eq!(e.source_ip, "192.0.2.253".parse().ok());
        assert!(!parse(
            "Initialization Sequence Completed",
            &mut Event::default()
        ));
    }
}
