//! PAM messages, from any program: `pam_unix(sshd:auth): ...`, and the old
//! `sshd(pam_unix)[pid]: ...` tag form (Loghub Linux) where the message has
//! no `pam_...(service:type):` prefix and the service is the program.
//!
//! Dataset `pam`. Actions:
//!
//! | action | category | outcome | message |
//! |---|---|---|---|
//! | `pam_auth_failure` | authentication | failure | `authentication failure; ... user=X`, `auth could not identify password for [X]` |
//! | `pam_user_unknown` | authentication | failure | `check pass; user unknown` |
//! | `pam_user_lock` | authentication | failure | `pam_tally2`/`pam_faillock`: `user X (uid) tally N, deny M` |
//! | `session_opened` / `session_closed` | session | success | `session opened for user X by Y(uid=N)` |
//!
//! For sessions, `user.name` is who opened it (`by Y`, when named) and
//! `user.target.name` the account; with no name after `by`, `user.name` is
//! the account. For auth failures, `user.name` is the `user=` being
//! authenticated, `source.ip` the `rhost=` when it is an address
//! (`fields.source.domain` for a host name). `fields.pam` holds `module`,
//! `service`, `type`, `ruser`, `tty`, `uid`.

use serde_json::Value;

use super::{kv, non_empty, set_field};
use crate::model::Event;

/// Parses one PAM message into `event`; true when recognised.
pub fn parse(msg: &str, event: &mut Event) -> bool {
    let mut body = msg.trim();
    let mut prefix = None;
    // pam_unix(sshd:auth): ...
    if let Some((head, rest)) = body.split_once("): ")
        && let Some((module, svc)) = head.split_once('(')
        && module.starts_with("pam_")
    {
        prefix = Some((module, svc));
        body = rest;
    } else if let Some((module, rest)) = body
        .strip_prefix('(')
        .and_then(|b| b.split_once(") "))
        .or_else(|| body.split_once(": "))
        && module.starts_with("pam_")
        && !module.contains(' ')
    {
        // (pam_unix) ..., pam_unix: ... (old Linux-PAM, Solaris)
        prefix = Some((module, ""));
        body = rest;
    }
    if !recognise(body, event) {
        return false;
    }
    match prefix {
        Some((module, svc)) if !svc.is_empty() => {
            set_field(event, "pam.module", Value::from(module));
            let (service, kind) = svc.split_once(':').unwrap_or((svc, ""));
            set_field(event, "pam.service", Value::from(service));
            if !kind.is_empty() {
                set_field(event, "pam.type", Value::from(kind));
            }
        }
        _ => {
            if let Some((module, _)) = prefix {
                set_field(event, "pam.module", Value::from(module));
            }
            if let Some(service) = event.process_name.clone() {
                set_field(event, "pam.service", Value::from(service));
            }
        }
    }
    true
}

/// The `rhost=` value of `logname=.. uid=.. euid=.. tty=.. ruser=R rhost=H[
/// user=U]`: R and U are the client's and may carry a fake `rhost=`, so it
/// is the first `rhost=` that ends the text or is followed by `user=`.
fn rhost(s: &str) -> Option<&str> {
    let mut at = 0;
    let mut last = None;
    while let Some(pos) = s[at..].find("rhost=") {
        let start = at + pos;
        at = start + "rhost=".len();
        if start > 0 && s.as_bytes()[start - 1] != b' ' {
            continue;
        }
        let value = &s[at..];
        let end = value.find(' ').unwrap_or(value.len());
        let after = value[end..].trim_start();
        last = Some(&value[..end]);
        if after.is_empty() || after.starts_with("user=") {
            return last;
        }
    }
    last
}

/// The message after any `pam_x(service:type): ` prefix.
fn recognise(body: &str, event: &mut Event) -> bool {
    if let Some(rest) = body.strip_prefix("authentication failure;") {
        if let Some(user) = non_empty(kv(rest, "user")) {
            event.user_name = Some(user.to_owned());
        }
        if let Some(rhost) = non_empty(rhost(rest)) {
            super::set_source_host(event, rhost);
        }
        for (key, path) in [
            ("ruser", "pam.ruser"),
            ("tty", "pam.tty"),
            ("uid", "pam.uid"),
            ("logname", "pam.logname"),
        ] {
            if let Some(v) = non_empty(kv(rest, key)) {
                set_field(event, path, Value::from(v));
            }
        }
        return done(event, "authentication", "pam_auth_failure", "failure");
    }
    if let Some(rest) = body.strip_prefix("auth could not identify password for [") {
        event.user_name = Some(rest.trim_end_matches(']').to_owned());
        return done(event, "authentication", "pam_auth_failure", "failure");
    }
    if body.starts_with("check pass; user unknown") {
        return done(event, "authentication", "pam_user_unknown", "failure");
    }
    if let Some(rest) = body.strip_prefix("user ")
        && let Some((who, tally)) = rest.split_once(") tally ")
    {
        // pam_tally2: user X (uid) tally N, deny M
        let (user, uid) = who.split_once(" (").unwrap_or((who, ""));
        event.user_name = Some(user.to_owned());
        if !uid.is_empty() {
            set_field(event, "pam.uid", Value::from(uid));
        }
        set_field(event, "pam.tally", Value::from(tally));
        return done(event, "authentication", "pam_user_lock", "failure");
    }
    let (opened, rest) = if let Some(r) = body.strip_prefix("session opened for user ") {
        (true, r)
    } else if let Some(r) = body.strip_prefix("session closed for user ") {
        (false, r)
    } else {
        return false;
    };
    let (target, by) = match rest.split_once(" by ") {
        Some((t, b)) => (t, b),
        None => (rest, ""),
    };
    let target = strip_uid(target);
    let by = strip_uid(by.trim());
    if by.is_empty() || by == target {
        event.user_name = Some(target.to_owned());
    } else {
        event.user_name = Some(by.to_owned());
        event.user_target_name = Some(target.to_owned());
    }
    let action = if opened {
        "session_opened"
    } else {
        "session_closed"
    };
    done(event, "session", action, "success")
}

/// `root(uid=0)` -> `root`; `(uid=0)` -> ``; `LOGIN(uid=0)` -> `LOGIN`.
fn strip_uid(s: &str) -> &str {
    s.split_once('(').map_or(s, |(name, _)| name).trim()
}

done_in!("pam");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failure_with_prefix() {
        let mut e = Event::default();
        assert!(parse(
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=5.33.63.160 user=workshop",
            &mut e
        ));
        assert_eq!(e.action.as_deref(), Some("pam_auth_failure"));
        assert_eq!(e.user_name.as_deref(), Some("workshop"));
        assert_eq!(e.source_ip, "5.33.63.160".parse().ok());
        assert_eq!(e.fields["pam"]["service"], "sshd");
        assert_eq!(e.fields["pam"]["type"], "auth");
    }

    #[test]
    fn old_tag_form_and_sessions() {
        let mut e = Event {
            process_name: Some("su".into()),
            ..Event::default()
        };
        assert!(parse("session opened for user news by (uid=0)", &mut e));
        assert_eq!(e.user_name.as_deref(), Some("news"));
        assert_eq!(e.fields["pam"]["service"], "su");

        let mut e = Event::default();
        assert!(parse(
            "pam_unix(sudo:session): session opened for user root(uid=0) by alice(uid=1000)",
            &mut e
        ));
        assert_eq!(e.user_name.as_deref(), Some("alice"));
        assert_eq!(e.user_target_name.as_deref(), Some("root"));

        let mut e = Event::default();
        assert!(parse(
            "authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=host.example.com",
            &mut e
        ));
        assert_eq!(e.fields["source"]["domain"], "host.example.com");
    }

    #[test]
    fn prefix_forms_of_old_pam() {
        for line in [
            "(pam_unix) authentication failure; logname= uid=0 euid=0 tty= ruser= rhost=209.67.1.67",
            "pam_unix: authentication failure; logname= uid=0 euid=0 tty=ftp ruser=an8767 rhost=209.67.1.67",
        ] {
            let mut e = Event::default();
            assert!(parse(line, &mut e), "{line}");
            assert_eq!(e.source_ip, "209.67.1.67".parse().ok());
            assert_eq!(e.fields["pam"]["module"], "pam_unix");
        }
    }

    /// fail2ban's injection tests: `ruser=` and `user=` are the client's.
    #[test]
    fn injected_rhost_is_not_believed() {
        let mut e = Event::default();
        assert!(parse(
            "pam_unix(auth): authentication failure; logname= uid=0 euid=0 tty=xxx ruser=test rhost=192.0.2.151 rhost=192.0.2.1",
            &mut e
        ));
        assert_eq!(e.source_ip, "192.0.2.1".parse().ok());
        let mut e = Event::default();
        assert!(parse(
            "pam_unix(auth): authentication failure; logname= uid=0 euid=0 tty=xxx ruser= rhost=192.0.2.2 user=test rhost=192.0.2.152",
            &mut e
        ));
        assert_eq!(e.source_ip, "192.0.2.2".parse().ok());
    }

    #[test]
    fn tally() {
        let mut e = Event::default();
        assert!(parse(
            "pam_tally2(sudo:auth): user zbadguy (4001) tally 6, deny 5",
            &mut e
        ));
        assert_eq!(e.action.as_deref(), Some("pam_user_lock"));
        assert_eq!(e.user_name.as_deref(), Some("zbadguy"));
    }
}
