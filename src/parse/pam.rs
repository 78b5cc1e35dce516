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
//! (`fields.source.address` otherwise). `fields.pam` holds `module`,
//! `service`, `type`, `ruser`, `tty`, `uid`.

use serde_json::Value;

use super::{classify, kv, non_empty, set_field};
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
    }
    if !recognise(body, event) {
        return false;
    }
    match prefix {
        Some((module, svc)) => {
            set_field(event, "pam.module", Value::from(module));
            let (service, kind) = svc.split_once(':').unwrap_or((svc, ""));
            set_field(event, "pam.service", Value::from(service));
            if !kind.is_empty() {
                set_field(event, "pam.type", Value::from(kind));
            }
        }
        None => {
            if let Some(service) = event.process_name.clone() {
                set_field(event, "pam.service", Value::from(service));
            }
        }
    }
    true
}

/// The message after any `pam_x(service:type): ` prefix.
fn recognise(body: &str, event: &mut Event) -> bool {
    if let Some(rest) = body.strip_prefix("authentication failure;") {
        if let Some(user) = non_empty(kv(rest, "user")) {
            event.user_name = Some(user.to_owned());
        }
        if let Some(rhost) = non_empty(kv(rest, "rhost")) {
            match super::parse_ip(rhost) {
                Some(ip) => event.source_ip = Some(ip),
                None => set_field(event, "source.address", Value::from(rhost)),
            }
        }
        for key in ["ruser", "tty", "uid", "logname"] {
            if let Some(v) = non_empty(kv(rest, key)) {
                set_field(event, &format!("pam.{key}"), Value::from(v));
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

fn done(event: &mut Event, category: &str, action: &str, outcome: &str) -> bool {
    classify(event, "pam", category, action, outcome);
    true
}

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
        assert_eq!(e.fields["source"]["address"], "host.example.com");
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
