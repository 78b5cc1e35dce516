//! cron daemon messages (Debian `CRON`, cronie `crond`, `crontab`).
//!
//! Dataset `cron`. `(root) CMD (cmd)`: category process, action
//! `cron_command`, outcome success, `user.name`, `process.command_line`.
//! `(root) REPLACE|BEGIN EDIT|END EDIT|DELETE (root)`: category
//! configuration, action `crontab_changed`, `user.target.name` the crontab
//! owner.

use super::classify;
use crate::model::Event;

/// Parses one cron message into `event`; true when recognised.
pub fn parse(msg: &str, event: &mut Event) -> bool {
    let Some(rest) = msg.trim().strip_prefix('(') else {
        return false;
    };
    let Some((user, rest)) = rest.split_once(") ") else {
        return false;
    };
    if let Some(cmd) = rest.strip_prefix("CMD (") {
        event.user_name = Some(user.to_owned());
        event.process_command_line = Some(cmd.strip_suffix(')').unwrap_or(cmd).to_owned());
        classify(event, "cron", "process", "cron_command", "success");
        return true;
    }
    for verb in ["REPLACE (", "BEGIN EDIT (", "END EDIT (", "DELETE ("] {
        if let Some(owner) = rest.strip_prefix(verb) {
            event.user_name = Some(user.to_owned());
            event.user_target_name = Some(owner.trim_end_matches(')').to_owned());
            classify(event, "cron", "configuration", "crontab_changed", "success");
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmd_and_edit() {
        let mut e = Event::default();
        assert!(parse(
            "(root) CMD (   cd / && run-parts --report /etc/cron.hourly)",
            &mut e
        ));
        assert_eq!(e.user_name.as_deref(), Some("root"));
        assert_eq!(
            e.process_command_line.as_deref(),
            Some("   cd / && run-parts --report /etc/cron.hourly")
        );
        let mut e = Event::default();
        assert!(parse("(bob) REPLACE (bob)", &mut e));
        assert_eq!(e.action.as_deref(), Some("crontab_changed"));
        assert!(!parse(
            "(CRON) INFO (pidfile fd = 3)",
            &mut Event::default()
        ));
    }
}
