//! su messages (util-linux, shadow and the old BSD-style forms).
//!
//! Dataset `su`, category `authentication`, action `su_switch`; outcome
//! success or failure. `user.name` is who ran su, `user.target.name` the
//! account switched to; `fields.su.tty` the terminal.
//!
//! | form | example |
//! |---|---|
//! | util-linux | `(to root) alice on pts/0`, `FAILED SU (to root) alice on pts/0` |
//! | shadow | `Successful su for root by alice`, `FAILED su for root by alice` |
//! | sulog style | `+ pts/0 alice:root`, `- pts/0 alice:root` |
//!
//! `pam_unix(su:...)` and `su(pam_unix)` lines go to [`super::pam`].

use serde_json::Value;

use super::{classify, set_field};
use crate::model::Event;

/// Parses one su message into `event`; true when recognised.
pub fn parse(msg: &str, event: &mut Event) -> bool {
    let m = msg.trim();
    // (to root) alice on pts/0
    let (failed, rest) = match m.strip_prefix("FAILED SU ") {
        Some(r) => (true, r),
        None => (false, m),
    };
    if let Some(rest) = rest.strip_prefix("(to ")
        && let Some((target, rest)) = rest.split_once(") ")
    {
        let (user, tty) = rest.split_once(" on ").unwrap_or((rest, ""));
        return done(event, user, target, tty, !failed);
    }
    // Successful su for root by alice / FAILED su for root by alice
    for (prefix, ok) in [("Successful su for ", true), ("FAILED su for ", false)] {
        if let Some(rest) = m.strip_prefix(prefix)
            && let Some((target, user)) = rest.split_once(" by ")
        {
            return done(event, user, target, "", ok);
        }
    }
    // + pts/0 alice:root
    if let Some((sign, rest)) = m.split_once(' ')
        && (sign == "+" || sign == "-")
        && let Some((tty, users)) = rest.split_once(' ')
        && let Some((user, target)) = users.split_once(':')
    {
        return done(event, user, target, tty, sign == "+");
    }
    false
}

fn done(event: &mut Event, user: &str, target: &str, tty: &str, ok: bool) -> bool {
    event.user_name = Some(user.trim().to_owned());
    event.user_target_name = Some(target.trim().to_owned());
    if !tty.is_empty() {
        set_field(event, "su.tty", Value::from(tty.trim()));
    }
    let outcome = if ok { "success" } else { "failure" };
    classify(event, "su", "authentication", "su_switch", outcome);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        for (msg, user, target, outcome) in [
            ("(to root) alice on pts/0", "alice", "root", "success"),
            (
                "FAILED SU (to root) alice on pts/0",
                "alice",
                "root",
                "failure",
            ),
            (
                "Successful su for root by alice",
                "alice",
                "root",
                "success",
            ),
            ("FAILED su for root by bob", "bob", "root", "failure"),
            ("+ pts/0 alice:root", "alice", "root", "success"),
            ("- pts/1 eve:root", "eve", "root", "failure"),
        ] {
            let mut e = Event::default();
            assert!(parse(msg, &mut e), "{msg}");
            assert_eq!(e.user_name.as_deref(), Some(user), "{msg}");
            assert_eq!(e.user_target_name.as_deref(), Some(target), "{msg}");
            assert_eq!(e.outcome.as_deref(), Some(outcome), "{msg}");
        }
        assert!(!parse(
            "pam_authenticate: Authentication failure",
            &mut Event::default()
        ));
    }
}
