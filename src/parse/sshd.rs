//! OpenSSH server (`sshd`) messages.
//!
//! Actions (`event.action`), all with dataset `sshd`:
//!
//! | action | category | outcome | lines |
//! |---|---|---|---|
//! | `ssh_login` | authentication | success/failure | `Accepted <method> for`, `Failed <method> for [invalid user]` |
//! | `ssh_invalid_user` | authentication | failure | `Invalid user X from`, `input_userauth_request: invalid user X` |
//! | `ssh_user_not_allowed` | authentication | failure | `User X from IP not allowed because ...`, `ROOT LOGIN REFUSED` |
//! | `ssh_preauth_disconnect` | authentication | failure | `Connection closed by / Disconnected from authenticating\|invalid user X IP port P` |
//! | `ssh_max_auth_attempts` | authentication | failure | `maximum authentication attempts exceeded`, `Too many authentication failures`, `PAM service(sshd) ignoring max retries` |
//! | `ssh_auth_failures` | authentication | failure | `PAM N more authentication failures` (`fields.ssh.failures` = N) |
//! | `ssh_auth_timeout` | authentication | failure | `Timeout before authentication` |
//! | `ssh_logout` | session | success | `Disconnected from user X IP port P` |
//! | `ssh_disconnect` | network | unknown | `Received disconnect`, `Connection closed by IP`, `Disconnected from IP` |
//! | `ssh_connection` | network | unknown | `Connection from IP port P on IP port P` |
//! | `ssh_connection_reset` | network | failure | `Connection reset by`, `Write failed: Connection reset by peer` |
//! | `ssh_connection_refused` | network | failure | tcp_wrappers `refused connect from` |
//! | `ssh_no_identification` | network | failure | `Did not receive identification string from` |
//! | `ssh_bad_protocol` | network | failure | `Bad protocol version identification`, `banner exchange: ... invalid format`, `Magic value check failed`, `ssh_dispatch_run_fatal` |
//! | `ssh_bad_keyexchange` | network | failure | `Unable to negotiate with` |
//! | `ssh_reverse_mapping_failed` | network | unknown | `POSSIBLE BREAK-IN ATTEMPT!` |
//!
//! `fields.ssh.method` holds the auth method, `fields.ssh.invalid_user` is
//! true when sshd said the user does not exist. `[preauth]`, `error: ` and
//! `fatal: ` decorations are ignored. PAM lines logged by sshd
//! (`pam_unix(sshd:...)`) go to [`super::pam`].

use serde_json::Value;

use super::{classify, parse_ip, set_field, strip_preauth};
use crate::model::Event;

/// Parses one sshd message into `event`; true when recognised.
pub fn parse(msg: &str, event: &mut Event) -> bool {
    let (m, _) = strip_preauth(msg);
    let m = m
        .strip_prefix("error: ")
        .or_else(|| m.strip_prefix("fatal: "))
        .unwrap_or(m);
    let Some(first) = m.split(' ').next() else {
        return false;
    };
    match first {
        "Accepted" | "Failed" => {
            let accepted = first == "Accepted";
            let rest = m[first.len()..].trim_start();
            login(rest, accepted, event)
        }
        "Invalid" | "input_userauth_request:" => {
            let rest = m
                .strip_prefix("Invalid user ")
                .or_else(|| m.strip_prefix("input_userauth_request: invalid user "));
            let Some(rest) = rest else { return false };
            let (user, addr) = match rest.rsplit_once(" from ") {
                Some((user, addr)) => (user, Some(addr)),
                None => (rest, None),
            };
            event.user_name = Some(user.to_owned());
            if let Some(addr) = addr {
                ip_port(addr, event);
            }
            set_field(event, "ssh.invalid_user", Value::Bool(true));
            done(event, "authentication", "ssh_invalid_user", "failure")
        }
        "Connection" | "Disconnected" => closed(m, event),
        "Received" => {
            // Received disconnect from IP port P:11: reason | from IP: 11: reason
            let Some(rest) = m.strip_prefix("Received disconnect from ") else {
                return false;
            };
            ip_port(rest, event);
            done(event, "network", "ssh_disconnect", "unknown")
        }
        "Disconnecting" | "Disconnecting:" => {
            if !m.contains("Too many authentication failures") {
                return false;
            }
            if let Some(rest) = m
                .strip_prefix("Disconnecting authenticating user ")
                .or_else(|| m.strip_prefix("Disconnecting invalid user "))
            {
                let head = rest.split(':').next().unwrap_or(rest);
                user_ip_port(head, event);
            } else if let Some(user) = m.split(" for ").nth(1) {
                event.user_name = Some(user.trim().to_owned());
            }
            done(event, "authentication", "ssh_max_auth_attempts", "failure")
        }
        "maximum" => {
            let Some(rest) = m.strip_prefix("maximum authentication attempts exceeded for ") else {
                return false;
            };
            user_from(rest, event);
            done(event, "authentication", "ssh_max_auth_attempts", "failure")
        }
        "PAM" => {
            if m.starts_with("PAM service(") && m.contains("ignoring max retries") {
                return done(event, "authentication", "ssh_max_auth_attempts", "failure");
            }
            let Some((n, rest)) = m
                .strip_prefix("PAM ")
                .and_then(|r| r.split_once(" more authentication failure"))
            else {
                return false;
            };
            if let Ok(n) = n.parse::<u64>() {
                set_field(event, "ssh.failures", Value::from(n));
            }
            if let Some(rhost) = super::non_empty(super::kv(rest, "rhost")) {
                match parse_ip(rhost) {
                    Some(ip) => event.source_ip = Some(ip),
                    None => set_field(event, "source.address", Value::from(rhost)),
                }
            }
            if let Some(user) = super::non_empty(super::kv(rest, "user")) {
                event.user_name = Some(user.to_owned());
            }
            done(event, "authentication", "ssh_auth_failures", "failure")
        }
        "Did" => {
            let Some(rest) = m.strip_prefix("Did not receive identification string from ") else {
                return false;
            };
            ip_port(rest, event);
            done(event, "network", "ssh_no_identification", "failure")
        }
        "reverse" | "Address" => {
            if !m.ends_with("POSSIBLE BREAK-IN ATTEMPT!") {
                return false;
            }
            let ip = if first == "reverse" {
                m.split_once('[')
                    .and_then(|(_, r)| r.split_once(']'))
                    .map(|(ip, _)| ip)
            } else {
                m.split(' ').nth(1)
            };
            event.source_ip = ip.and_then(parse_ip);
            done(event, "network", "ssh_reverse_mapping_failed", "unknown")
        }
        "Write" if m.starts_with("Write failed: Connection reset by peer") => {
            done(event, "network", "ssh_connection_reset", "failure")
        }
        "Timeout" => {
            let Some(rest) = m.strip_prefix("Timeout before authentication for ") else {
                return false;
            };
            ip_port(rest, event);
            done(event, "authentication", "ssh_auth_timeout", "failure")
        }
        "Unable" => {
            let Some(rest) = m.strip_prefix("Unable to negotiate with ") else {
                return false;
            };
            ip_port(rest, event);
            done(event, "network", "ssh_bad_keyexchange", "failure")
        }
        "Bad" => {
            let Some((_, addr)) = m
                .strip_prefix("Bad protocol version identification ")
                .and_then(|r| r.rsplit_once(" from "))
            else {
                return false;
            };
            ip_port(addr, event);
            done(event, "network", "ssh_bad_protocol", "failure")
        }
        "banner" => {
            let Some(rest) = m.strip_prefix("banner exchange: Connection from ") else {
                return false;
            };
            ip_port(rest, event);
            done(event, "network", "ssh_bad_protocol", "failure")
        }
        "refused" => {
            // tcp_wrappers: refused connect from HOST (IP)
            let Some(rest) = m.strip_prefix("refused connect from ") else {
                return false;
            };
            let ip = rest
                .rsplit_once('(')
                .and_then(|(_, r)| r.strip_suffix(')'))
                .unwrap_or(rest);
            event.source_ip = parse_ip(ip);
            done(event, "network", "ssh_connection_refused", "failure")
        }
        "Magic" | "ssh_dispatch_run_fatal:" => {
            // Magic value check failed (N) on obfuscated handshake from IP port P
            // ssh_dispatch_run_fatal: Connection from IP port P: message authentication code incorrect
            let Some((_, addr)) = m.split_once(" from ") else {
                return false;
            };
            ip_port(addr, event);
            done(event, "network", "ssh_bad_protocol", "failure")
        }
        "User" => {
            let Some((who, _)) = m.split_once(" not allowed because ") else {
                return false;
            };
            user_from(who.trim_start_matches("User").trim_start(), event);
            done(event, "authentication", "ssh_user_not_allowed", "failure")
        }
        "ROOT" => {
            let Some(ip) = m.strip_prefix("ROOT LOGIN REFUSED FROM ") else {
                return false;
            };
            event.user_name = Some("root".into());
            event.source_ip = parse_ip(ip.trim());
            done(event, "authentication", "ssh_user_not_allowed", "failure")
        }
        _ => false,
    }
}

/// `<method> for [invalid user ]USER from IP port P ssh2[: KEY]`
fn login(rest: &str, accepted: bool, event: &mut Event) -> bool {
    let Some((method, rest)) = rest.split_once(" for ") else {
        return false;
    };
    set_field(event, "ssh.method", Value::from(method));
    user_from(rest, event);
    let outcome = if accepted { "success" } else { "failure" };
    done(event, "authentication", "ssh_login", outcome)
}

/// `[invalid user ]USER from IP port P ...`
fn user_from(rest: &str, event: &mut Event) {
    let rest = match rest.strip_prefix("invalid user ") {
        Some(r) => {
            set_field(event, "ssh.invalid_user", Value::Bool(true));
            r
        }
        None => rest,
    };
    match rest.rsplit_once(" from ") {
        Some((user, addr)) => {
            event.user_name = Some(user.to_owned());
            ip_port(addr, event);
        }
        None => event.user_name = Some(rest.trim().to_owned()),
    }
}

/// `Connection closed by ...`, `Connection reset by ...`, `Disconnected from ...`,
/// `Connection from IP port P on IP port P`.
fn closed(m: &str, event: &mut Event) -> bool {
    let (rest, reset) = if let Some(r) = m.strip_prefix("Connection closed by ") {
        (r, false)
    } else if let Some(r) = m.strip_prefix("Disconnected from ") {
        (r, false)
    } else if let Some(r) = m.strip_prefix("Connection reset by ") {
        (r, true)
    } else if let Some(r) = m.strip_prefix("Connection from ") {
        let (src, dst) = r.split_once(" on ").unwrap_or((r, ""));
        ip_port(src, event);
        let mut words = dst.split(' ');
        if let (Some(ip), Some("port"), Some(port)) = (words.next(), words.next(), words.next()) {
            event.destination_ip = ip.parse().ok();
            event.destination_port = port.parse().ok();
        }
        return done(event, "network", "ssh_connection", "unknown");
    } else {
        return false;
    };
    let user = rest
        .strip_prefix("authenticating user ")
        .or_else(|| rest.strip_prefix("invalid user "));
    if let Some(user) = user {
        if rest.starts_with("invalid") {
            set_field(event, "ssh.invalid_user", Value::Bool(true));
        }
        user_ip_port(user, event);
        let action = if reset {
            "ssh_connection_reset"
        } else {
            "ssh_preauth_disconnect"
        };
        return done(event, "authentication", action, "failure");
    }
    if let Some(user) = rest.strip_prefix("user ") {
        user_ip_port(user, event);
        return done(event, "session", "ssh_logout", "success");
    }
    ip_port(rest, event);
    if reset {
        done(event, "network", "ssh_connection_reset", "failure")
    } else {
        done(event, "network", "ssh_disconnect", "unknown")
    }
}

/// `USER IP port P` (the user may contain spaces; the address is last).
fn user_ip_port(s: &str, event: &mut Event) {
    let head = s.split(" port ").next().unwrap_or(s).trim_end();
    match head.rsplit_once(' ') {
        Some((user, _)) => {
            event.user_name = Some(user.to_owned());
            ip_port(&s[user.len() + 1..], event);
        }
        None => event.user_name = Some(head.to_owned()),
    }
}

/// `IP[:][ port P[:...]][ anything]` into source ip/port.
fn ip_port(s: &str, event: &mut Event) {
    let mut words = s.trim().split(' ');
    if let Some(ip) = words.next().and_then(|w| parse_ip(w.trim_end_matches(':'))) {
        event.source_ip = Some(ip);
    }
    if words.next() == Some("port")
        && let Some(port) = words.next()
    {
        let end = port
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(port.len());
        event.source_port = port[..end].parse().ok();
    }
}

fn done(event: &mut Event, category: &str, action: &str, outcome: &str) -> bool {
    classify(event, "sshd", category, action, outcome);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(msg: &str) -> Event {
        let mut e = Event::default();
        assert!(parse(msg, &mut e), "not recognised: {msg}");
        e
    }

    #[test]
    fn logins() {
        let e = p("Accepted publickey for alice from 2001:db8::1 port 50022 ssh2: RSA SHA256:abc");
        assert_eq!(e.action.as_deref(), Some("ssh_login"));
        assert_eq!(e.outcome.as_deref(), Some("success"));
        assert_eq!(e.user_name.as_deref(), Some("alice"));
        assert_eq!(e.source_ip, "2001:db8::1".parse().ok());
        assert_eq!(e.source_port, Some(50022));
        assert_eq!(e.fields["ssh"]["method"], "publickey");

        let e = p("Failed password for invalid user admin from 10.0.0.1 port 4242 ssh2");
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        assert_eq!(e.user_name.as_deref(), Some("admin"));
        assert_eq!(e.fields["ssh"]["invalid_user"], true);

        let e = p("Failed none for invalid user  from 10.0.0.1 port 4242 ssh2");
        assert_eq!(e.user_name.as_deref(), Some(""));
        let e = p("Failed keyboard-interactive/pam for root from 10.0.0.1 port 1 ssh2");
        assert_eq!(e.fields["ssh"]["method"], "keyboard-interactive/pam");
    }

    #[test]
    fn preauth_and_network_lines() {
        let e =
            p("Connection closed by authenticating user root 206.81.24.125 port 45362 [preauth]");
        assert_eq!(e.action.as_deref(), Some("ssh_preauth_disconnect"));
        assert_eq!(e.user_name.as_deref(), Some("root"));
        assert_eq!(e.source_ip, "206.81.24.125".parse().ok());
        assert_eq!(e.source_port, Some(45362));

        let e = p("Disconnected from invalid user odd name 1.2.3.4 port 22 [preauth]");
        assert_eq!(e.user_name.as_deref(), Some("odd name"));

        let e = p(
            "error: maximum authentication attempts exceeded for invalid user x from 1.2.3.4 port 5 ssh2 [preauth]",
        );
        assert_eq!(e.action.as_deref(), Some("ssh_max_auth_attempts"));
        assert_eq!(e.user_name.as_deref(), Some("x"));

        let e = p(
            "Unable to negotiate with 2001:db8::7 port 45626: no matching key exchange method found. [preauth]",
        );
        assert_eq!(e.source_ip, "2001:db8::7".parse().ok());
        assert_eq!(e.source_port, Some(45626));
        let e = p("refused connect from x@::ffff:192.168.1.1 (::ffff:192.168.1.1)");
        assert_eq!(e.source_ip, "192.168.1.1".parse().ok());

        let e = p("Did not receive identification string from 1.2.3.4 port 6");
        assert_eq!(e.action.as_deref(), Some("ssh_no_identification"));
        assert_eq!(e.source_port, Some(6));

        let e = p("Received disconnect from 139.59.209.18: 11: Bye Bye [preauth]");
        assert_eq!(e.source_ip, "139.59.209.18".parse().ok());
        let e = p("Received disconnect from 1.2.3.4 port 9:11: Bye Bye [preauth]");
        assert_eq!(e.source_port, Some(9));

        let e = p("Disconnected from user bob 1.2.3.4 port 22");
        assert_eq!(e.action.as_deref(), Some("ssh_logout"));

        let e = p(
            "PAM 5 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4  user=root",
        );
        assert_eq!(e.fields["ssh"]["failures"], 5);
        assert_eq!(e.user_name.as_deref(), Some("root"));
    }

    #[test]
    fn unknown_is_not_claimed() {
        let mut e = Event::default();
        assert!(!parse("Server listening on 0.0.0.0 port 22.", &mut e));
        assert!(!parse("", &mut e));
        assert!(!parse("Invalid", &mut e));
        assert!(e.dataset.is_none());
    }
}
