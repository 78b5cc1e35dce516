//! Dropbear SSH server messages (the SSH server of many routers and edge
//! devices), from its source (`svr-auth.c`, `svr-authpasswd.c`,
//! `svr-authpubkey.c`, `svr-main.c`, `common-session.c`).
//!
//! Dataset `dropbear`, with sshd's action names so one rule can count both:
//!
//! | action | category | outcome | lines |
//! |---|---|---|---|
//! | `ssh_login` | authentication | success/failure | `Password auth succeeded for 'U' from IP:P`, `Pubkey auth succeeded for 'U' with ... from IP:P`, `Bad password attempt for 'U' from IP:P` |
//! | `ssh_invalid_user` | authentication | failure | `Login attempt for nonexistent user ['U' ]from IP:P` |
//! | `ssh_user_not_allowed` | authentication | failure | `User 'U' has invalid shell, rejected`, `... has blank password, rejected`, `root login rejected` |
//! | `ssh_max_auth_attempts` | authentication | failure | `Exit before auth [from <IP:P>]: (user 'U', N fails): Max auth tries reached - user 'U'[ from IP:P]` |
//! | `ssh_preauth_disconnect` | authentication | failure | any other `Exit before auth` |
//! | `ssh_logout` | session | success | `Exit (U)[ from <IP:P>]: ...` |
//! | `ssh_connection` | network | unknown | `Child connection from IP:P` |
//!
//! Addresses are written `IP:PORT` (IPv6 too, without brackets). Some
//! builds log their own `[pid] Mon dd hh:mm:ss ` before the message: it is
//! skipped.

use serde_json::Value;

use super::{parse_ip, set_field};
use crate::model::Event;

/// Parses one dropbear message into `event`; true when recognised.
pub fn parse(msg: &str, event: &mut Event) -> bool {
    let m = skip_own_stamp(msg.trim());
    if let Some(rest) = after(m, "Bad password attempt for ") {
        quoted_user_from(rest, event);
        set_field(event, "ssh.method", Value::from("password"));
        return done(event, "authentication", "ssh_login", "failure");
    }
    for (prefix, method) in [
        ("Password auth succeeded for ", "password"),
        ("Pubkey auth succeeded for ", "publickey"),
    ] {
        if let Some(rest) = m.strip_prefix(prefix) {
            set_field(event, "ssh.method", Value::from(method));
            quoted_user_from(rest, event);
            return done(event, "authentication", "ssh_login", "success");
        }
    }
    if let Some(rest) = after(m, "Login attempt for nonexistent user ") {
        match rest.strip_prefix("from ") {
            Some(addr) => address(addr, event),
            None => quoted_user_from(rest, event),
        }
        set_field(event, "ssh.invalid_user", Value::Bool(true));
        return done(event, "authentication", "ssh_invalid_user", "failure");
    }
    if let Some(rest) = m.strip_prefix("User '")
        && let Some((user, why)) = rest.split_once("' has ")
        && why.ends_with("rejected")
    {
        event.user_name = Some(user.to_owned());
        set_field(event, "ssh.reason", Value::from(why));
        return done(event, "authentication", "ssh_user_not_allowed", "failure");
    }
    if after(m, "Root login rejected").is_some() {
        event.user_name = Some("root".into());
        return done(event, "authentication", "ssh_user_not_allowed", "failure");
    }
    if let Some(rest) = m.strip_prefix("Exit before auth") {
        return exit_before_auth(rest, event);
    }
    if let Some(rest) = m.strip_prefix("Exit (") {
        // Exit (USER)[ from <IP:P>]: reason
        let Some((user, rest)) = rest.split_once(')') else {
            return false;
        };
        event.user_name = Some(user.to_owned());
        if let Some(addr) = bracketed(rest) {
            address(addr, event);
        }
        return done(event, "session", "ssh_logout", "success");
    }
    if let Some(addr) = m.strip_prefix("Child connection from ") {
        address(addr, event);
        return done(event, "network", "ssh_connection", "unknown");
    }
    false
}

/// After `Exit before auth`: `[ from <IP:P>][ (user 'U', N fails)]: reason`.
fn exit_before_auth(rest: &str, event: &mut Event) -> bool {
    if let Some(addr) = bracketed(rest) {
        address(addr, event);
    }
    if let Some((_, who)) = rest.split_once("(user '")
        && let Some((user, _)) = who.split_once('\'')
    {
        event.user_name = Some(user.to_owned());
    }
    let why = rest.rsplit_once("): ").map_or(rest, |(_, r)| r);
    let why = why.rsplit_once(">: ").map_or(why, |(_, r)| r);
    let why = why.trim_start_matches(':').trim();
    set_field(event, "ssh.reason", Value::from(why));
    if let Some(tail) = why.strip_prefix("Max auth tries reached - user '") {
        // ... - user 'U'[ from IP:P]
        if let Some((user, after)) = tail.rsplit_once('\'') {
            event.user_name.get_or_insert_with(|| user.to_owned());
            if let Some(addr) = after.strip_prefix(" from ")
                && event.source_ip.is_none()
            {
                address(addr, event);
            }
        }
        return done(event, "authentication", "ssh_max_auth_attempts", "failure");
    }
    done(event, "authentication", "ssh_preauth_disconnect", "failure")
}

/// `m` after `prefix`, whose first letter may be lower case (old releases
/// wrote `bad password attempt`, `login attempt`).
fn after<'a>(m: &'a str, prefix: &str) -> Option<&'a str> {
    let (head, want) = (m.as_bytes().get(..prefix.len())?, prefix.as_bytes());
    (head[0].eq_ignore_ascii_case(&want[0]) && head[1..] == want[1..]).then(|| &m[prefix.len()..])
}

/// `'USER'[ with KEY...] from IP:PORT` (the user may contain quotes and
/// words: the address is last).
fn quoted_user_from(rest: &str, event: &mut Event) {
    let Some((who, addr)) = rest.rsplit_once(" from ") else {
        return;
    };
    let who = who.strip_prefix('\'').unwrap_or(who);
    let user = match who.rsplit_once("' with ") {
        Some((user, _)) => user,
        None => who.strip_suffix('\'').unwrap_or(who),
    };
    event.user_name = Some(user.to_owned());
    address(addr, event);
}

/// The `IP:PORT` inside ` from <IP:PORT>`.
fn bracketed(s: &str) -> Option<&str> {
    let rest = s.trim_start().strip_prefix("from <")?;
    rest.split_once('>').map(|(addr, _)| addr)
}

/// `IP:PORT` (IPv6 without brackets, IPv4-mapped too) into source ip/port.
fn address(s: &str, event: &mut Event) {
    let s = s.trim();
    let (ip, port) = match s.rsplit_once(':') {
        Some((ip, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() => {
            (ip, port.parse().ok())
        }
        _ => (s, None),
    };
    event.source_ip = parse_ip(ip.trim_start_matches('[').trim_end_matches(']'));
    event.source_port = port;
}

/// `[825] Jul 10 23:53:52 msg` (dropbear's own pid and time, written when
/// it logs to stderr and that lands in the journal) -> `msg`.
fn skip_own_stamp(m: &str) -> &str {
    let Some((pid, rest)) = m.strip_prefix('[').and_then(|r| r.split_once("] ")) else {
        return m;
    };
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return m;
    }
    // `Mon dd hh:mm:ss ` (the day may be padded with a space).
    let mut words = rest.split_whitespace();
    let (Some(month), Some(day), Some(time)) = (words.next(), words.next(), words.next()) else {
        return m;
    };
    let looks_like_time = month.len() == 3
        && day.len() <= 2
        && day.bytes().all(|b| b.is_ascii_digit())
        && time.len() == 8
        && time.as_bytes()[2] == b':';
    if !looks_like_time {
        return m;
    }
    let at = rest.find(time).map_or(0, |i| i + time.len());
    rest[at..].trim_start()
}

done_in!("dropbear");

#[cfg(test)]
mod tests {
    use super::*;

    fn p(msg: &str) -> Event {
        let mut e = Event::default();
        assert!(parse(msg, &mut e), "not recognised: {msg}");
        e
    }

    fn ip(e: &Event) -> Option<String> {
        e.source_ip.map(|ip| ip.to_string())
    }

    #[test]
    fn authentication() {
        let e = p("Bad password attempt for 'root' from 1.2.3.4:60588");
        assert_eq!(e.action.as_deref(), Some("ssh_login"));
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        assert_eq!(e.user_name.as_deref(), Some("root"));
        assert_eq!(ip(&e).as_deref(), Some("1.2.3.4"));
        assert_eq!(e.source_port, Some(60588));
        let e = p("bad password attempt for 'root' from 198.51.100.87:5543");
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        let e = p("login attempt for nonexistent user from ::ffff:198.51.100.215:60495");
        assert_eq!(e.action.as_deref(), Some("ssh_invalid_user"));
        assert_eq!(ip(&e).as_deref(), Some("198.51.100.215"));
        let e = p("Password auth succeeded for 'admin' from 2001:db8::5:41000");
        assert_eq!(e.outcome.as_deref(), Some("success"));
        assert_eq!(ip(&e).as_deref(), Some("2001:db8::5"));
        assert_eq!(e.source_port, Some(41000));
        let e = p("Pubkey auth succeeded for 'u' with ssh-ed25519 key SHA256:abc from 10.0.0.2:22");
        assert_eq!(e.user_name.as_deref(), Some("u"));
        assert_eq!(e.fields["ssh"]["method"], "publickey");
    }

    #[test]
    fn exits() {
        let e = p(
            "Exit before auth (user 'root', 10 fails): Max auth tries reached - user 'root' from 1.2.3.4:60588",
        );
        assert_eq!(e.action.as_deref(), Some("ssh_max_auth_attempts"));
        assert_eq!(ip(&e).as_deref(), Some("1.2.3.4"));
        assert_eq!(e.user_name.as_deref(), Some("root"));
        let e = p(
            "[825] Jul 10 23:57:29 Exit before auth from <192.0.2.3:52289>: (user 'root', 10 fails): Max auth tries reached - user 'root'",
        );
        assert_eq!(e.action.as_deref(), Some("ssh_max_auth_attempts"));
        assert_eq!(ip(&e).as_deref(), Some("192.0.2.3"));
        assert_eq!(e.source_port, Some(52289));
        let e = p(
            "[826] Jul 10 23:59:24 Exit before auth from <192.0.2.3:52325>: Max auth tries reached - user 'is invalid'",
        );
        assert_eq!(e.user_name.as_deref(), Some("is invalid"));
        let e = p("[825] Jul 10 23:53:52 Bad password attempt for 'root' from 1.2.3.4:52289");
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        let e = p("Exit before auth from <192.0.2.9:1>: Exited normally");
        assert_eq!(e.action.as_deref(), Some("ssh_preauth_disconnect"));
        assert_eq!(e.fields["ssh"]["reason"], "Exited normally");
        let e = p("Exit (root) from <192.0.2.9:1>: Disconnect received");
        assert_eq!(e.action.as_deref(), Some("ssh_logout"));
        assert_eq!(e.user_name.as_deref(), Some("root"));
        let e = p("Child connection from 192.0.2.9:4444");
        assert_eq!(e.action.as_deref(), Some("ssh_connection"));
    }

    #[test]
    fn unknown_is_not_claimed() {
        let mut e = Event::default();
        assert!(!parse("Running in background", &mut e));
        assert!(!parse("", &mut e));
        assert!(!parse("[1] x", &mut e));
        assert!(e.dataset.is_none());
    }
}
