//! FTP servers: vsftpd (`logging.c`, `postlogin.c`), ProFTPD (`mod_auth.c`,
//! `mod_auth_unix.c`) and Pure-FTPd (`log_*.c`, `pure-ftpd.c`). Their PAM
//! lines (`pam_unix(vsftpd:auth): ...`, `(pam_unix) ...`) go to
//! [`super::pam`].
//!
//! Dataset `ftp`; `process.name` says which server:
//!
//! | action | category | outcome | lines |
//! |---|---|---|---|
//! | `ftp_login` | authentication | success/failure | vsftpd `[user] OK LOGIN: Client "IP"` / `FAIL LOGIN: Client "IP"`; proftpd `USER u: Login successful.` / `USER u (Login failed): reason`; pure-ftpd `(?@IP) [WARNING] Authentication failed for user [u]`, `(?@IP) [INFO] u is now logged in` |
//! | `ftp_invalid_user` | authentication | failure | proftpd `USER u: no such user found from ...` |
//! | `ftp_user_not_allowed` | authentication | failure | proftpd `SECURITY VIOLATION: root login attempted` |
//! | `ftp_max_auth_attempts` | authentication | failure | proftpd `Maximum login attempts (N) exceeded` |
//! | `ftp_connection` | network | unknown | vsftpd `CONNECT: Client "IP"`, pure-ftpd `New connection from IP`, BSD ftpd `connection from IP (NAME) at DATE` |
//!
//! BSD ftpd and wu-ftpd: `failed login from NAME [IP]` (`ftp_login`,
//! failure), `repeated login failures from IP (NAME)`
//! (`ftp_max_auth_attempts`), `FTP LOGIN FROM NAME [IP], user` (success).
//!
//! The client address is where each server puts it: vsftpd's `Client "IP"`,
//! proftpd's first `(NAME[IP])` (what follows is the client's user name and
//! may imitate one), pure-ftpd's `(user@IP)`.

use serde_json::Value;

use super::{parse_ip, set_field, set_source_host};
use crate::model::Event;

/// Parses one message of FTP server `program` into `event`.
pub fn parse(program: &str, msg: &str, event: &mut Event) -> bool {
    match program {
        "proftpd" => proftpd(msg.trim(), event),
        "pure-ftpd" => pure_ftpd(msg.trim(), event),
        "ftpd" | "wu-ftpd" => bsd_ftpd(msg.trim(), event),
        _ => vsftpd(msg.trim(), event),
    }
}

/// `[pid N] [user] FAIL LOGIN: Client "IP"[, "reason"]` (the pid only in
/// vsftpd's own log file).
pub fn vsftpd(msg: &str, event: &mut Event) -> bool {
    let mut m = msg;
    if let Some(rest) = m.strip_prefix("[pid ")
        && let Some((_, rest)) = rest.split_once("] ")
    {
        m = rest;
    }
    let (user, rest) = match m.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((user, rest)) => (Some(user), rest),
        None => (None, m),
    };
    let (kind, client) = if let Some(c) = rest.strip_prefix("FAIL LOGIN: Client \"") {
        ("failure", c)
    } else if let Some(c) = rest.strip_prefix("OK LOGIN: Client \"") {
        ("success", c)
    } else if let Some(c) = rest.strip_prefix("CONNECT: Client \"") {
        ("connect", c)
    } else {
        return false;
    };
    let (ip, reason) = client.split_once('"').unwrap_or((client, ""));
    event.source_ip = parse_ip(ip);
    if let Some(why) = reason.strip_prefix(", \"").map(|r| r.trim_end_matches('"')) {
        set_field(event, "ftp.reason", Value::from(why));
    }
    if kind == "connect" {
        return done(event, "network", "ftp_connection", "unknown");
    }
    if let Some(user) = user {
        event.user_name = Some(user.to_owned());
    }
    done(event, "authentication", "ftp_login", kind)
}

/// `SERVER (NAME[IP]): text` or `SERVER (NAME[IP]) - text`.
fn proftpd(msg: &str, event: &mut Event) -> bool {
    let Some((_, rest)) = msg.split_once(" (") else {
        return false;
    };
    let Some((client, text)) = rest.split_once(')') else {
        return false;
    };
    let Some((name, ip)) = client.strip_suffix(']').and_then(|c| c.split_once('[')) else {
        return false;
    };
    let text = text
        .strip_prefix(": ")
        .or_else(|| text.strip_prefix(" - "))
        .unwrap_or(text)
        .trim();
    event.source_ip = parse_ip(ip);
    if event.source_ip.is_none() {
        set_source_host(event, name);
    }
    if text.starts_with("SECURITY VIOLATION:") {
        event.user_name = Some("root".into());
        set_field(event, "ftp.reason", Value::from(text));
        return done(event, "authentication", "ftp_user_not_allowed", "failure");
    }
    if text.starts_with("Maximum login attempts") {
        return done(event, "authentication", "ftp_max_auth_attempts", "failure");
    }
    let Some(rest) = text.strip_prefix("USER ") else {
        return false;
    };
    // The user name is the client's: read the server's words around it.
    if let Some((user, why)) = rest.split_once(" (Login failed): ") {
        event.user_name = Some(user.to_owned());
        set_field(event, "ftp.reason", Value::from(why));
        return done(event, "authentication", "ftp_login", "failure");
    }
    if let Some((user, _)) = rest.rsplit_once(": no such user found from ") {
        event.user_name = Some(user.to_owned());
        return done(event, "authentication", "ftp_invalid_user", "failure");
    }
    if let Some(user) = rest.strip_suffix(": Login successful.") {
        event.user_name = Some(user.to_owned());
        return done(event, "authentication", "ftp_login", "success");
    }
    false
}

/// `(user@IP) [LEVEL] text`; `?` is the user before login.
fn pure_ftpd(msg: &str, event: &mut Event) -> bool {
    let Some((who, rest)) = msg.strip_prefix('(').and_then(|r| r.split_once(") ")) else {
        return false;
    };
    let Some((_, host)) = who.rsplit_once('@') else {
        return false;
    };
    set_source_host(event, host);
    let text = rest.split_once("] ").map_or(rest, |(_, t)| t);
    if let Some(user) = text.strip_prefix("Authentication failed for user ") {
        let user = user.trim_start_matches('[').trim_end_matches(']');
        event.user_name = Some(user.to_owned());
        return done(event, "authentication", "ftp_login", "failure");
    }
    if let Some(user) = text.strip_suffix(" is now logged in") {
        event.user_name = Some(user.to_owned());
        return done(event, "authentication", "ftp_login", "success");
    }
    if text.starts_with("New connection from ") {
        return done(event, "network", "ftp_connection", "unknown");
    }
    false
}

/// BSD ftpd and wu-ftpd: `connection from IP (NAME) at DATE`, `failed
/// login from NAME [IP]`, `repeated login failures from IP (NAME)`, `FTP
/// LOGIN FROM NAME [IP], user`.
fn bsd_ftpd(msg: &str, event: &mut Event) -> bool {
    let (action, outcome, rest) = if let Some(r) = msg.strip_prefix("connection from ") {
        ("ftp_connection", "unknown", r)
    } else if let Some(r) = msg.strip_prefix("failed login from ") {
        ("ftp_login", "failure", r)
    } else if let Some(r) = msg.strip_prefix("repeated login failures from ") {
        ("ftp_max_auth_attempts", "failure", r)
    } else if let Some(r) = msg.strip_prefix("FTP LOGIN FROM ") {
        ("ftp_login", "success", r)
    } else {
        return false;
    };
    // `IP (NAME)` or `NAME [IP]`.
    let mut words = rest.split(' ');
    let first = words.next().unwrap_or("");
    let second = words.next().unwrap_or("");
    match second.strip_prefix('[').and_then(|w| w.split_once(']')) {
        Some((ip, after)) if parse_ip(ip).is_some() => {
            event.source_ip = parse_ip(ip);
            if let Some(user) = after.strip_prefix(", ").filter(|u| !u.is_empty()) {
                event.user_name = Some(user.to_owned());
            }
        }
        _ => set_source_host(event, first),
    }
    let category = if action == "ftp_connection" {
        "network"
    } else {
        "authentication"
    };
    done(event, category, action, outcome)
}

done_in!("ftp");

#[cfg(test)]
mod tests {
    use super::*;

    fn p(program: &str, msg: &str) -> Event {
        let mut e = Event::default();
        assert!(parse(program, msg, &mut e), "not recognised: {msg}");
        e
    }

    fn ip(e: &Event) -> Option<String> {
        e.source_ip.map(|ip| ip.to_string())
    }

    #[test]
    fn vsftpd_lines() {
        let e = p(
            "vsftpd",
            "[pid 27202] [anonymous] FAIL LOGIN: Client \"64.106.46.98\"",
        );
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        assert_eq!(e.user_name.as_deref(), Some("anonymous"));
        assert_eq!(ip(&e).as_deref(), Some("64.106.46.98"));
        let e = p(
            "vsftpd",
            "[pid 15019] [guest] FAIL LOGIN: Client \"::ffff:192.0.2.1\", \"User is not in the allow user list.\"",
        );
        assert_eq!(ip(&e).as_deref(), Some("192.0.2.1"));
        assert_eq!(
            e.fields["ftp"]["reason"],
            "User is not in the allow user list."
        );
        let e = p("vsftpd", "[bob] OK LOGIN: Client \"10.0.0.2\"");
        assert_eq!(e.outcome.as_deref(), Some("success"));
        let e = p("vsftpd", "CONNECT: Client \"10.0.0.2\"");
        assert_eq!(e.action.as_deref(), Some("ftp_connection"));
    }

    #[test]
    fn proftpd_lines() {
        let e = p(
            "proftpd",
            "myhost.domain.com (123.123.123.123[123.123.123.123]): USER username (Login failed): User in /etc/ftpusers",
        );
        assert_eq!(e.action.as_deref(), Some("ftp_login"));
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        assert_eq!(e.user_name.as_deref(), Some("username"));
        let e = p(
            "proftpd",
            "platypus.ace-hosting.com.au (mail.bloodymonster.net[::ffff:67.227.224.66]): USER username (Login failed): Incorrect password.",
        );
        assert_eq!(ip(&e).as_deref(), Some("67.227.224.66"));
        let e = p(
            "proftpd",
            "platypus.ace-hosting.com.au (::ffff:59.167.242.100[::ffff:59.167.242.100]): USER platypus.ace-hosting.com.au proftpd[17424] platypus.ace-hosting.com.au (hihoinjection[1.2.3.44]): no such user found from ::ffff:59.167.242.100 [::ffff:59.167.242.100] to ::ffff:113.212.99.194:21",
        );
        assert_eq!(e.action.as_deref(), Some("ftp_invalid_user"));
        assert_eq!(ip(&e).as_deref(), Some("59.167.242.100"));
        let e = p(
            "proftpd",
            "xxxxxxxxxx (::ffff:1.2.3.4[::ffff:1.2.3.4]) - Maximum login attempts (3) exceeded",
        );
        assert_eq!(e.action.as_deref(), Some("ftp_max_auth_attempts"));
        assert_eq!(ip(&e).as_deref(), Some("1.2.3.4"));
        let e = p(
            "proftpd",
            "192.0.2.13 (192.0.2.13[192.0.2.13]) - SECURITY VIOLATION: Root login attempted",
        );
        assert_eq!(e.action.as_deref(), Some("ftp_user_not_allowed"));
        assert_eq!(e.user_name.as_deref(), Some("root"));
        let e = p(
            "proftpd",
            "serv1.domain.com (example.com[1.2.3.4]) - USER jtittle@domain.org: no such user found from example.com [1.2.3.4] to 1.2.3.4:21",
        );
        assert_eq!(e.user_name.as_deref(), Some("jtittle@domain.org"));
    }

    #[test]
    fn pure_ftpd_lines() {
        let e = p(
            "pure-ftpd",
            "(?@24.79.92.194) [WARNING] Authentication failed for user [Administrator]",
        );
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        assert_eq!(e.user_name.as_deref(), Some("Administrator"));
        assert_eq!(ip(&e).as_deref(), Some("24.79.92.194"));
        let e = p(
            "pure-ftpd",
            "(?@host.example) [INFO] New connection from host.example",
        );
        assert_eq!(e.fields["source"]["domain"], "host.example");
        let e = p("pure-ftpd", "(bob@10.0.0.9) [INFO] bob is now logged in");
        assert_eq!(e.outcome.as_deref(), Some("success"));
    }

    #[test]
    fn unknown_is_not_claimed() {
        let mut e = Event::default();
        assert!(!parse("vsftpd", "hello", &mut e));
        assert!(!parse("proftpd", "ProFTPD 1.3.5 (stable) started", &mut e));
        assert!(!parse("pure-ftpd", "(x) y", &mut e));
        assert!(e.dataset.is_none());
    }
}
