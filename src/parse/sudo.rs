//! sudo messages.
//!
//! Dataset `sudo`. Actions:
//!
//! | action | category | outcome | message |
//! |---|---|---|---|
//! | `sudo_command` | process | success | `alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/ls` |
//! | `sudo_command` | process | failure | the same with `user NOT in sudoers`, `command not allowed`, `N incorrect password attempts`, ... before `TTY=` |
//!
//! `user.name` is the invoking user, `user.target.name` the `USER=`,
//! `process.command_line` the `COMMAND=`, `process.executable` its first
//! word; `fields.sudo` holds `tty`, `pwd` and `reason` (the failure text).
//! `pam_unix(sudo:...)` lines go to [`super::pam`].

use serde_json::Value;

use super::{classify, set_field};
use crate::model::Event;

/// Parses one sudo message into `event`; true when recognised.
pub fn parse(msg: &str, event: &mut Event) -> bool {
    let Some((user, rest)) = msg.split_once(" : ") else {
        return false;
    };
    let user = user.trim();
    if user.is_empty() || user.contains(' ') {
        return false;
    }
    let mut reason = None;
    let mut command = None;
    for part in rest.split(" ; ") {
        let part = part.trim();
        if let Some((key, value)) = part.split_once('=')
            && matches!(key, "TTY" | "PWD" | "USER" | "GROUP" | "COMMAND" | "ENV")
        {
            match key {
                "TTY" => set_field(event, "sudo.tty", Value::from(value)),
                "PWD" => set_field(event, "sudo.pwd", Value::from(value)),
                "USER" => event.user_target_name = Some(value.to_owned()),
                // COMMAND is last and may itself contain " ; ".
                "COMMAND" => {
                    command = rest
                        .split_once("COMMAND=")
                        .map(|(_, c)| c.trim().to_owned());
                    break;
                }
                _ => {}
            }
        } else if reason.is_none() {
            reason = Some(part.to_owned());
        }
    }
    if command.is_none() && event.user_target_name.is_none() {
        return false;
    }
    event.user_name = Some(user.to_owned());
    if let Some(cmd) = command {
        event.process_executable = cmd.split(' ').next().map(str::to_owned);
        event.process_command_line = Some(cmd);
    }
    let outcome = match &reason {
        Some(r) => {
            set_field(event, "sudo.reason", Value::from(r.as_str()));
            "failure"
        }
        None => "success",
    };
    classify(event, "sudo", "process", "sudo_command", outcome);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_and_refusal() {
        let mut e = Event::default();
        assert!(parse(
            "vagrant : TTY=pts/1 ; PWD=/home/vagrant ; USER=root ; COMMAND=/bin/cat /var/log/secure",
            &mut e
        ));
        assert_eq!(e.user_name.as_deref(), Some("vagrant"));
        assert_eq!(e.user_target_name.as_deref(), Some("root"));
        assert_eq!(
            e.process_command_line.as_deref(),
            Some("/bin/cat /var/log/secure")
        );
        assert_eq!(e.process_executable.as_deref(), Some("/bin/cat"));
        assert_eq!(e.outcome.as_deref(), Some("success"));

        let mut e = Event::default();
        assert!(parse(
            "     tsg : user NOT in sudoers ; TTY=pts/1 ; PWD=/home/vagrant ; USER=root ; COMMAND=/bin/ls",
            &mut e
        ));
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        assert_eq!(e.fields["sudo"]["reason"], "user NOT in sudoers");

        let mut e = Event::default();
        assert!(parse(
            "alice : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/sh -c 'a ; b'",
            &mut e
        ));
        assert_eq!(
            e.process_command_line.as_deref(),
            Some("/bin/sh -c 'a ; b'")
        );
        assert_eq!(e.fields["sudo"]["reason"], "3 incorrect password attempts");
    }

    #[test]
    fn other_lines_are_not_claimed() {
        let mut e = Event::default();
        assert!(!parse(
            "pam_unix(sudo:session): session closed for user root",
            &mut e
        ));
        assert!(!parse(" : ", &mut e));
    }
}
