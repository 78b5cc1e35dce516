//! Account and group management (shadow-utils: useradd, groupadd, usermod,
//! userdel, groupdel, groupmod, passwd, chpasswd, gpasswd, chage).
//!
//! Dataset `accounts`, category `iam`. Actions: `user_created`,
//! `user_deleted`, `user_modified`, `group_created`, `group_deleted`,
//! `group_modified`, `user_added_to_group`, `password_changed`. `user.target.name`
//! is the account acted on, `fields.group.name` the group, `fields.group.id`
//! / `fields.user.id` the ids when given; `user.name` is the actor when the
//! line names one (`by 'root'`). Outcome `failure` for `failed ...` lines.

use serde_json::Value;

use super::{classify, set_field};
use crate::model::Event;

/// Parses one message of `program` into `event`; true when recognised.
pub fn parse(program: &str, msg: &str, event: &mut Event) -> bool {
    let m = msg.trim();
    // pam_unix(passwd:chauthtok): password changed for bob
    let m = match m.split_once("): ") {
        Some((head, rest)) if head.starts_with("pam_") => rest,
        _ => m,
    };
    if let Some(rest) = m
        .strip_prefix("new user: ")
        .or_else(|| m.strip_prefix("new account: "))
    {
        fields(rest, event, true);
        return done(event, "user_created", "success");
    }
    if let Some(rest) = m
        .strip_prefix("new group: ")
        .or_else(|| m.strip_prefix("group added to /etc/group: "))
        .or_else(|| m.strip_prefix("group added to /etc/gshadow: "))
    {
        fields(rest, event, false);
        return done(event, "group_created", "success");
    }
    if let Some(rest) = m.strip_prefix("add '") {
        // add 'bob' to group 'sudo' / add 'bob' to shadow group 'sudo'
        let mut q = quoted(rest);
        event.user_target_name = q.next().map(str::to_owned);
        if let Some(group) = q.next() {
            set_field(event, "group.name", Value::from(group));
        }
        return done(event, "user_added_to_group", "success");
    }
    if let Some(rest) = m.strip_prefix("user ")
        && let Some((user, rest)) = rest.split_once(" added by ")
        && let Some((actor, group)) = rest.split_once(" to group ")
    {
        // gpasswd: user bob added by root to group sudo
        event.user_target_name = Some(user.to_owned());
        event.user_name = Some(actor.to_owned());
        set_field(event, "group.name", Value::from(group));
        return done(event, "user_added_to_group", "success");
    }
    if let Some(rest) = m.strip_prefix("password changed for ") {
        event.user_target_name = Some(rest.trim().to_owned());
        return done(event, "password_changed", "success");
    }
    if let Some(rest) = m.strip_prefix("password for '") {
        // password for 'bob' changed by 'root'
        let mut q = quoted(rest);
        event.user_target_name = q.next().map(str::to_owned);
        event.user_name = q.next().map(str::to_owned);
        return done(event, "password_changed", "success");
    }
    if let Some(rest) = m.strip_prefix("delete user '") {
        event.user_target_name = quoted(rest).next().map(str::to_owned);
        return done(event, "user_deleted", "success");
    }
    if let Some(rest) = m
        .strip_prefix("removed group '")
        .or_else(|| m.strip_prefix("group '"))
        .filter(|_| m.contains("removed"))
    {
        if let Some(group) = quoted(rest).next() {
            set_field(event, "group.name", Value::from(group));
        }
        return done(event, "group_deleted", "success");
    }
    if let Some(rest) = m.strip_prefix("failed adding user '") {
        event.user_target_name = quoted(rest).next().map(str::to_owned);
        return done(event, "user_created", "failure");
    }
    let action = match program {
        "usermod" | "chage" | "passwd" => "user_modified",
        "groupmod" | "gpasswd" => "group_modified",
        _ => return false,
    };
    // change user 'bob' shell from ..., lock user 'bob' password, user 'a' renamed to 'b'
    let Some((_, rest)) = m.split_once('\'') else {
        return false;
    };
    let name = quoted(rest).next().map(str::to_owned);
    if action == "user_modified" {
        event.user_target_name = name;
    } else if let Some(group) = name {
        set_field(event, "group.name", Value::from(group));
    }
    done(event, action, "success")
}

/// The texts between single quotes, `rest` starting just after an opening one.
fn quoted(rest: &str) -> impl Iterator<Item = &str> {
    rest.split('\'').step_by(2)
}

/// `name=apache, UID=48, GID=48, home=..., shell=...`
fn fields(s: &str, event: &mut Event, user: bool) {
    for part in s.split(", ") {
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        match k.trim() {
            "name" if user => event.user_target_name = Some(v.to_owned()),
            "name" => set_field(event, "group.name", Value::from(v)),
            "UID" => set_field(event, "user.id", Value::from(v)),
            "GID" => set_field(event, "group.id", Value::from(v)),
            "home" => set_field(event, "user.home", Value::from(v)),
            "shell" => set_field(event, "user.shell", Value::from(v)),
            _ => {}
        }
    }
}

fn done(event: &mut Event, action: &'static str, outcome: &'static str) -> bool {
    classify(event, "accounts", "iam", action, outcome);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(program: &str, msg: &str) -> Event {
        let mut e = Event::default();
        assert!(parse(program, msg, &mut e), "{msg}");
        e
    }

    #[test]
    fn users_and_groups() {
        let e = p(
            "useradd",
            "new user: name=apache, UID=48, GID=48, home=/usr/share/httpd, shell=/sbin/nologin",
        );
        assert_eq!(e.action.as_deref(), Some("user_created"));
        assert_eq!(e.user_target_name.as_deref(), Some("apache"));
        assert_eq!(e.fields["user"]["id"], "48");

        let e = p("groupadd", "new group: name=apache, GID=48");
        assert_eq!(e.action.as_deref(), Some("group_created"));
        assert_eq!(e.fields["group"]["name"], "apache");

        let e = p("usermod", "add 'bob' to group 'sudo'");
        assert_eq!(e.action.as_deref(), Some("user_added_to_group"));
        assert_eq!(e.user_target_name.as_deref(), Some("bob"));
        assert_eq!(e.fields["group"]["name"], "sudo");

        let e = p("userdel", "delete user 'bob'");
        assert_eq!(e.action.as_deref(), Some("user_deleted"));
        let e = p(
            "passwd",
            "pam_unix(passwd:chauthtok): password changed for bob",
        );
        assert_eq!(e.action.as_deref(), Some("password_changed"));
        assert_eq!(e.user_target_name.as_deref(), Some("bob"));
        let e = p(
            "usermod",
            "change user 'bob' shell from '/bin/sh' to '/bin/bash'",
        );
        assert_eq!(e.action.as_deref(), Some("user_modified"));
        assert_eq!(e.user_target_name.as_deref(), Some("bob"));
        let e = p("groupdel", "group 'dev' removed");
        assert_eq!(e.action.as_deref(), Some("group_deleted"));
        assert!(!parse("useradd", "something else", &mut Event::default()));
    }
}
