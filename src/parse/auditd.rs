//! Linux audit records (`type=SYSCALL msg=audit(1490995752.404:20614537): ...`),
//! from audit.log, audispd/syslog forwarding (`node=... type=...`) or the
//! kernel (`audit: type=1400 audit(...)`), one record per line, and the
//! [`Coalescer`] that groups the records of one event by serial.
//!
//! Dataset `auditd`. `fields.auditd` holds `type` (record type), `sequence`
//! (serial, a number) and `data`: every `key=value` of the record, with the
//! nested `msg='...'` of user-space records flattened, quotes removed and
//! hex-encoded values decoded (`proctitle`, `exe`, `cmd`, `comm`, `cwd`,
//! `name`, `acct`, `path`, `key`, EXECVE `aN`; `proctitle` NULs become spaces)
//! like go-libaudit; `auid`/`ses` 4294967295 read `unset`; `result` is
//! `success`/`fail` from `success=` or `res=`.
//! Also set: `@timestamp` (from `audit(...)`), `process.pid`, `process.name`
//! (`comm`), `process.executable` (`exe`), `process.command_line` (EXECVE
//! args or PROCTITLE, or `cmd` of USER_CMD), `fields.process.parent.pid`,
//! `fields.user.id` (`uid`), `fields.user.audit.id` (`auid`),
//! `user.name` (`acct`), `source.ip` (`addr`).
//!
//! | record types | category | action |
//! |---|---|---|
//! | SYSCALL (execve), EXECVE | process | `executed` |
//! | other SYSCALL | process | `syscall` |
//! | USER_AUTH, USER_ACCT, USER_LOGIN | authentication | `user_auth`, `user_acct`, `user_login` |
//! | USER_START / USER_END | session | `session_started` / `session_ended` |
//! | CRED_ACQ / CRED_DISP / CRED_REFR | authentication | `credentials_acquired` / `_disposed` / `_refreshed` |
//! | USER_CMD | process | `user_command` |
//! | ADD_USER, DEL_USER, ADD_GROUP, DEL_GROUP, USER_CHAUTHTOK, USER_MGMT, GRP_MGMT | iam | `user_created`, `user_deleted`, `group_created`, `group_deleted`, `password_changed`, `user_modified`, `group_modified` |
//! | CONFIG_CHANGE | configuration | `audit_config_changed` |
//! | anything else | host | the type, lowercased |
//!
//! Outcome from `result`, else `unknown`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{classify, parse_ip, set_field};
use crate::model::Event;

/// Parses one audit record into `event`; true when recognised.
pub fn parse(msg: &str, event: &mut Event) -> bool {
    let Some(pos) = msg.find("type=") else {
        return false;
    };
    let rest = &msg[pos + 5..];
    let (record_type, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let Some(a) = rest.find("audit(") else {
        return false;
    };
    let Some((stamp, body)) = rest[a + 6..].split_once(')') else {
        return false;
    };
    let body = body.strip_prefix(':').unwrap_or(body);
    let Some((secs, serial)) = stamp.split_once(':') else {
        return false;
    };
    let Ok(serial) = serial.parse::<u64>() else {
        return false;
    };
    if let Some(ts) = epoch(secs) {
        event.timestamp = ts;
    }
    let mut data = Map::new();
    let mut args: BTreeMap<usize, String> = BTreeMap::new();
    for (k, v) in pairs(body) {
        let v = decode(record_type, k, v);
        if record_type == "EXECVE"
            && let Some(i) = k.strip_prefix('a').and_then(|n| n.parse::<usize>().ok())
        {
            args.insert(i, v.clone());
        }
        data.insert(k.to_owned(), Value::from(v));
    }
    for key in ["auid", "ses"] {
        if data.get(key).and_then(Value::as_str) == Some("4294967295") {
            data.insert(key.into(), Value::from("unset"));
        }
    }
    let text = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_owned);
    let result = match (text("success"), text("res")) {
        (Some(s), _) => Some(if s == "yes" { "success" } else { "fail" }),
        (_, Some(r)) => Some(
            if matches!(r.trim_end_matches([')', ',']), "success" | "yes" | "1") {
                "success"
            } else {
                "fail"
            },
        ),
        _ => None,
    };
    if let Some(r) = result {
        data.insert("result".into(), Value::from(r));
    }
    let get = |k: &str| data.get(k).and_then(Value::as_str).map(str::to_owned);
    event.process_pid = get("pid")
        .and_then(|p| p.parse().ok())
        .or(event.process_pid);
    if let Some(comm) = get("comm") {
        event.process_name = Some(comm);
    }
    if let Some(exe) = get("exe") {
        event.process_executable = Some(exe);
    }
    if let Some(ppid) = get("ppid").and_then(|p| p.parse::<u64>().ok()) {
        set_field(event, "process.parent.pid", Value::from(ppid));
    }
    if let Some(uid) = get("uid") {
        set_field(event, "user.id", Value::from(uid));
    }
    if let Some(auid) = get("auid") {
        set_field(event, "user.audit.id", Value::from(auid));
    }
    if let Some(acct) = get("acct") {
        event.user_name = Some(acct);
    }
    if let Some(ip) = get("addr").as_deref().and_then(parse_ip) {
        event.source_ip = Some(ip);
    }
    if !args.is_empty() {
        event.process_command_line = Some(args.into_values().collect::<Vec<_>>().join(" "));
    } else if let Some(cmd) = get("proctitle").or_else(|| get("cmd")) {
        event.process_command_line = Some(cmd);
    }
    let syscall = get("syscall");
    let is_exec = matches!(syscall.as_deref(), Some("59" | "11" | "execve" | "221"));
    let (category, action) = classify_type(record_type, is_exec);
    let outcome = match result {
        Some("success") => "success",
        Some(_) => "failure",
        None => "unknown",
    };
    set_field(event, "auditd.type", Value::from(record_type));
    set_field(event, "auditd.sequence", Value::from(serial));
    set_field(event, "auditd.data", Value::Object(data));
    classify(event, "auditd", category, action, outcome);
    true
}

fn classify_type(record_type: &str, is_exec: bool) -> (&'static str, String) {
    let fixed = |c: &'static str, a: &str| (c, a.to_owned());
    match record_type {
        "SYSCALL" if is_exec => fixed("process", "executed"),
        "SYSCALL" => fixed("process", "syscall"),
        "EXECVE" => fixed("process", "executed"),
        "USER_AUTH" => fixed("authentication", "user_auth"),
        "USER_ACCT" => fixed("authentication", "user_acct"),
        "USER_LOGIN" => fixed("authentication", "user_login"),
        "USER_START" => fixed("session", "session_started"),
        "USER_END" => fixed("session", "session_ended"),
        "CRED_ACQ" => fixed("authentication", "credentials_acquired"),
        "CRED_DISP" => fixed("authentication", "credentials_disposed"),
        "CRED_REFR" => fixed("authentication", "credentials_refreshed"),
        "USER_CMD" => fixed("process", "user_command"),
        "ADD_USER" => fixed("iam", "user_created"),
        "DEL_USER" => fixed("iam", "user_deleted"),
        "ADD_GROUP" => fixed("iam", "group_created"),
        "DEL_GROUP" => fixed("iam", "group_deleted"),
        "USER_CHAUTHTOK" => fixed("iam", "password_changed"),
        "USER_MGMT" => fixed("iam", "user_modified"),
        "GRP_MGMT" => fixed("iam", "group_modified"),
        "CONFIG_CHANGE" => fixed("configuration", "audit_config_changed"),
        other => ("host", other.to_lowercase()),
    }
}

/// `1490995752.404` -> time.
fn epoch(s: &str) -> Option<DateTime<Utc>> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let millis: i64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    DateTime::from_timestamp_millis(secs.parse::<i64>().ok()?.checked_mul(1000)? + millis)
}

/// The `key=value` pairs of a record body; a `msg='...'` value is opened and
/// its pairs returned in place (quotes stay on values, see [`decode`]).
fn pairs(body: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].rsplit(' ').next().unwrap_or("").trim();
        let after = &rest[eq + 1..];
        let (value, next) = match after.as_bytes().first() {
            Some(b'\'') => match after[1..].find('\'') {
                Some(end) => {
                    let inner = &after[1..end + 1];
                    out.extend(pairs(inner));
                    (None, &after[end + 2..])
                }
                None => {
                    out.extend(pairs(&after[1..]));
                    (None, "")
                }
            },
            Some(b'"') => match after[1..].find('"') {
                Some(end) => (Some(&after[..end + 2]), &after[end + 2..]),
                None => (Some(after), ""),
            },
            _ => {
                let end = after.find(' ').unwrap_or(after.len());
                (Some(&after[..end]), &after[end..])
            }
        };
        if let Some(v) = value
            && !key.is_empty()
        {
            out.push((key, v));
        }
        rest = next.trim_start();
    }
    out
}

/// Unquotes a value, or hex-decodes it when it is a field auditd encodes.
fn decode(record_type: &str, key: &str, value: &str) -> String {
    if let Some(q) = value.strip_prefix('"') {
        return q.strip_suffix('"').unwrap_or(q).to_owned();
    }
    let encoded = matches!(
        key,
        "proctitle" | "exe" | "cmd" | "comm" | "cwd" | "name" | "acct" | "path" | "key" | "data"
    ) || (record_type == "EXECVE" && key.starts_with('a') && key != "argc");
    if encoded && let Some(text) = hex(value) {
        // proctitle separates arguments with NUL; `key` may hold several
        // keys separated by 0x01.
        return text.replace(['\0', '\u{1}'], " ").trim_end().to_owned();
    }
    value.to_owned()
}

fn hex(s: &str) -> Option<String> {
    if s.is_empty() || !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect();
    Some(String::from_utf8_lossy(&bytes?).into_owned())
}

/// Groups audit records of one event (same serial) into one event.
///
/// Pure: the caller passes the time. An event is emitted when its EOE record
/// arrives, when it has waited `timeout` since its first record
/// ([`Coalescer::flush_expired`]), or, oldest first, when more than
/// `max_pending` events are open. Non-audit events pass straight through.
#[derive(Debug)]
pub struct Coalescer {
    max_pending: usize,
    timeout: chrono::Duration,
    /// serial -> (first seen, merged event), in arrival order.
    pending: Vec<(u64, DateTime<Utc>, Event)>,
}

impl Coalescer {
    pub fn new(max_pending: usize, timeout: chrono::Duration) -> Self {
        Coalescer {
            max_pending: max_pending.max(1),
            timeout,
            pending: Vec::new(),
        }
    }

    /// Adds one parsed event; returns the events now complete.
    pub fn push(&mut self, event: Event, now: DateTime<Utc>) -> Vec<Event> {
        let Some(serial) = super::get_field(&event, "auditd.sequence").and_then(Value::as_u64)
        else {
            return vec![event];
        };
        let eoe = super::get_field(&event, "auditd.type").and_then(Value::as_str) == Some("EOE");
        let mut out = Vec::new();
        match self.pending.iter().position(|(s, ..)| *s == serial) {
            Some(i) => {
                if !eoe {
                    merge(&mut self.pending[i].2, event);
                }
                if eoe {
                    out.push(self.pending.remove(i).2);
                }
            }
            None if eoe => {}
            None => self.pending.push((serial, now, event)),
        }
        while self.pending.len() > self.max_pending {
            out.push(self.pending.remove(0).2);
        }
        out
    }

    /// Emits the events that have waited `timeout` or longer.
    pub fn flush_expired(&mut self, now: DateTime<Utc>) -> Vec<Event> {
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(_, first, _)| now - *first >= self.timeout);
        self.pending = keep;
        done.into_iter().map(|(.., e)| e).collect()
    }

    /// Emits everything still open (shutdown).
    pub fn flush_all(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(.., e)| e)
            .collect()
    }
}

/// Folds record `other` into `into`: missing top-level fields are taken,
/// the records' types and data are kept in `fields.auditd.records`, an
/// `executed` record decides the classification, lines are joined.
fn merge(into: &mut Event, other: Event) {
    let record = |e: &Event| {
        let mut r = Map::new();
        for k in ["type", "data"] {
            if let Some(v) = super::get_field(e, &format!("auditd.{k}")) {
                r.insert(k.into(), v.clone());
            }
        }
        Value::Object(r)
    };
    if super::get_field(into, "auditd.records").is_none() {
        let first = record(into);
        set_field(into, "auditd.records", Value::Array(vec![first]));
    }
    let rec = record(&other);
    if let Some(Value::Object(auditd)) = into.fields.get_mut("auditd")
        && let Some(Value::Array(records)) = auditd.get_mut("records")
    {
        records.push(rec);
    }
    if other.action.as_deref() == Some("executed") && into.action.as_deref() != Some("executed") {
        into.category = other.category.clone();
        into.action = other.action.clone();
    }
    // EXECVE args beat PROCTITLE (truncated) beat nothing.
    if other.process_command_line.is_some()
        && (into.process_command_line.is_none()
            || super::get_field(&other, "auditd.type").and_then(Value::as_str) == Some("EXECVE"))
    {
        into.process_command_line = other.process_command_line;
    }
    into.process_executable = into.process_executable.take().or(other.process_executable);
    into.process_name = into.process_name.take().or(other.process_name);
    into.process_pid = into.process_pid.or(other.process_pid);
    into.user_name = into.user_name.take().or(other.user_name);
    into.source_ip = into.source_ip.or(other.source_ip);
    into.message = format!("{}\n{}", into.message, other.message);
    if let (Some(a), Some(b)) = (into.original.as_mut(), other.original) {
        a.push('\n');
        a.push_str(&b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Event {
        let mut e = Event::default();
        assert!(parse(line, &mut e), "{line}");
        e
    }

    #[test]
    fn syscall_with_hex_exe() {
        let e = p(
            r#"type=SYSCALL msg=audit(1490995752.404:20614537): arch=c000003e syscall=44 success=yes exit=464 a0=9 items=0 ppid=1240 pid=1287 auid=4294967295 uid=0 tty=(none) ses=4294967295 comm="charon" exe=2F7573722F6C6962657865632F7374726F6E677377616E2F636861726F6E202864656C6574656429 key=(null)"#,
        );
        assert_eq!(
            e.process_executable.as_deref(),
            Some("/usr/libexec/strongswan/charon (deleted)")
        );
        assert_eq!(e.fields["auditd"]["data"]["auid"], "unset");
        assert_eq!(e.fields["auditd"]["sequence"], 20614537);
        assert_eq!(e.timestamp.to_rfc3339(), "2017-03-31T21:29:12.404+00:00");
        assert_eq!(e.outcome.as_deref(), Some("success"));
        assert_eq!(e.process_pid, Some(1287));
    }

    #[test]
    fn user_records_open_msg() {
        let e = p(
            r#"type=USER_LOGIN msg=audit(1492896301.818:19955): pid=12635 uid=0 auid=4294967295 ses=4294967295 msg='op=login acct=28696E76616C6964207573657229 exe="/usr/sbin/sshd" hostname=? addr=179.38.151.221 terminal=sshd res=failed'"#,
        );
        assert_eq!(e.user_name.as_deref(), Some("(invalid user)"));
        assert_eq!(e.source_ip, "179.38.151.221".parse().ok());
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        assert_eq!(e.action.as_deref(), Some("user_login"));
    }

    #[test]
    fn coalescer_groups_by_serial() {
        let t0 = DateTime::from_timestamp(0, 0).unwrap();
        let mut c = Coalescer::new(2, chrono::Duration::seconds(2));
        let sys = p(r#"type=SYSCALL msg=audit(1.0:7): syscall=59 success=yes pid=5 exe="/bin/ls""#);
        let exe = p(r#"type=EXECVE msg=audit(1.0:7): argc=2 a0="ls" a1=2D6C"#);
        let eoe = p("type=EOE msg=audit(1.0:7): ");
        assert!(c.push(sys, t0).is_empty());
        assert!(c.push(exe, t0).is_empty());
        let out = c.push(eoe, t0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].process_command_line.as_deref(), Some("ls -l"));
        assert_eq!(out[0].action.as_deref(), Some("executed"));
        assert_eq!(
            out[0].fields["auditd"]["records"].as_array().unwrap().len(),
            2
        );

        let a = p("type=SYSCALL msg=audit(1.0:8): syscall=2 success=no");
        let b = p("type=SYSCALL msg=audit(1.0:9): syscall=2 success=no");
        let d = p("type=SYSCALL msg=audit(1.0:10): syscall=2 success=no");
        assert!(c.push(a, t0).is_empty());
        assert!(c.push(b, t0 + chrono::Duration::seconds(1)).is_empty());
        // Bound of 2: the oldest goes out.
        assert_eq!(c.push(d, t0 + chrono::Duration::seconds(1)).len(), 1);
        assert_eq!(c.flush_expired(t0 + chrono::Duration::seconds(3)).len(), 2);
        assert!(c.flush_all().is_empty());
    }
}
