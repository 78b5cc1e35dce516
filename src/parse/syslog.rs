//! The syslog header: RFC 5424, RFC 3164 and the loose forms devices send.
//!
//! `syslog_loose` does the parsing; around it we fix only what the vectors in
//! `shared/data` show it gets wrong or leaves out:
//!
//! - an ISO 8601 time without a zone (`2019-06-14T10:40:20.912134 host
//!   sudo: ...`) is read as UTC;
//! - `<PRI>` followed by only an RFC 3339 timestamp is a header (it needs a
//!   space after the timestamp);
//! - an RFC 5424 line without a valid PRI (`122 - - ...`) is no header;
//! - a line it cannot parse at all comes back with everything empty: we
//!   report "no header" and the caller keeps the line as the message;
//! - an out-of-range PRI (`<192>`) is read as a number but has no facility:
//!   we drop it (no facility, severity or priority);
//! - RFC 3164 timestamps have no zone and no year: we read them as UTC
//!   (not the parser's local zone, which would make results depend on the
//!   machine) with the year from [`infer_year`];
//! - structured-data values are unescaped per RFC 5424 §6.3.3 (only `\"`,
//!   `\\` and `\]` are escapes; `syslog_loose` also turns `\n` into a newline);
//! - a UTF-8 BOM at the start of an RFC 5424 MSG is removed;
//! - the old `prog(module)[pid]` tag (`sshd(pam_unix)[1234]`) is split into
//!   the program (`sshd`) and the module (`pam_unix`);
//! - rsyslog's `message repeated N times: [ ... ]` is unwrapped by
//!   [`unwrap_repeated`].
//!
//! Where go-syslog calls a line invalid, we still keep it (parsing never drops
//! a line) and take from it what the loose grammar finds; the tests in this
//! module pin down what that is.

use chrono::{DateTime, Datelike, FixedOffset, Utc};
use serde_json::{Map, Value};
use syslog_loose::{Message, ProcId, Protocol, Variant};

use super::set_field;
use crate::model::Event;

/// A parsed syslog header; borrowed from the line.
#[derive(Debug, Clone, PartialEq)]
pub struct Header<'a> {
    /// `None` for RFC 3164, the VERSION for RFC 5424.
    pub version: Option<u32>,
    pub facility: Option<u8>,
    pub severity: Option<u8>,
    pub timestamp: Option<DateTime<FixedOffset>>,
    pub hostname: Option<&'a str>,
    /// The APP-NAME / TAG as sent (`sshd(pam_unix)`).
    pub appname: Option<&'a str>,
    /// The program: the app name without a `(module)` suffix.
    pub program: Option<&'a str>,
    /// The `module` of a `prog(module)` tag.
    pub tag_module: Option<&'a str>,
    pub procid: Option<String>,
    pub msgid: Option<&'a str>,
    /// SD-ID -> (param, unescaped value); in order, duplicates kept.
    pub structured_data: Vec<(&'a str, Vec<(&'a str, String)>)>,
    pub msg: &'a str,
}

/// The syslog header of `line`, or `None` when it has none we recognise.
///
/// `received_at` and `year_hint` give the year of RFC 3164 timestamps.
pub fn parse_header(
    line: &str,
    received_at: DateTime<Utc>,
    year_hint: Option<i32>,
) -> Option<Header<'_>> {
    let get_year = move |(month, day, ..): syslog_loose::IncompleteDate| {
        year_hint.unwrap_or_else(|| infer_year(month, day, received_at))
    };
    let m: Message<&str> =
        syslog_loose::parse_message_with_year_tz(line, get_year, Some(Utc), Variant::Either);
    let version = match m.protocol {
        Protocol::RFC3164 => None,
        Protocol::RFC5424(v) => Some(v),
    };
    // RFC 5424 needs a PRI: `122 - - - - - -` is a plain line.
    if version.is_some() && m.facility.is_none() {
        return None;
    }
    if version.is_none()
        && m.facility.is_none()
        && m.severity.is_none()
        && m.timestamp.is_none()
        && m.hostname.is_none()
        && m.appname.is_none()
    {
        return pri_and_timestamp_only(line).or_else(|| zoneless_iso(line));
    }
    let (facility, severity) = match (m.facility, m.severity) {
        (Some(f), Some(s)) => (Some(f as u8), Some(s as u8)),
        _ => (None, None),
    };
    let (program, tag_module) = split_module(m.appname);
    let procid = m.procid.map(|p| match p {
        ProcId::PID(pid) => pid.to_string(),
        ProcId::Name(name) => name.to_owned(),
    });
    let mut msg = m.msg;
    if version.is_some() {
        msg = msg.strip_prefix('\u{FEFF}').unwrap_or(msg);
    }
    let structured_data = m
        .structured_data
        .iter()
        .map(|e| {
            let params = e.params.iter().map(|(k, v)| (*k, unescape_sd(v))).collect();
            (e.id, params)
        })
        .collect();
    Some(Header {
        version,
        facility,
        severity,
        timestamp: m.timestamp,
        hostname: m.hostname,
        appname: m.appname,
        program,
        tag_module,
        procid,
        msgid: m.msgid,
        structured_data,
        msg,
    })
}

impl Header<'_> {
    /// Writes the header into `event`: host, process, time, and the
    /// `fields.log.syslog` object (ECS names). `message` is left to the caller.
    pub fn apply(&self, event: &mut Event) {
        if let Some(ts) = self.timestamp {
            event.timestamp = ts.with_timezone(&Utc);
        }
        event.host_name = self.hostname.map(str::to_owned);
        event.process_name = self.program.map(str::to_owned);
        event.process_pid = self.procid.as_deref().and_then(|p| p.parse().ok());

        let mut syslog = Map::new();
        if let (Some(f), Some(s)) = (self.facility, self.severity) {
            syslog.insert(
                "priority".into(),
                Value::from(u32::from(f) * 8 + u32::from(s)),
            );
            syslog.insert(
                "facility".into(),
                serde_json::json!({"code": f, "name": FACILITIES[usize::from(f)]}),
            );
            syslog.insert(
                "severity".into(),
                serde_json::json!({"code": s, "name": SEVERITIES[usize::from(s)]}),
            );
        }
        if let Some(v) = self.version {
            syslog.insert("version".into(), Value::from(v));
        }
        if let Some(app) = self.appname {
            syslog.insert("appname".into(), Value::from(app));
        }
        if let Some(module) = self.tag_module {
            syslog.insert("module".into(), Value::from(module));
        }
        if let Some(p) = &self.procid
            && event.process_pid.is_none()
        {
            syslog.insert("procid".into(), Value::from(p.as_str()));
        }
        if let Some(id) = self.msgid {
            syslog.insert("msgid".into(), Value::from(id));
        }
        if !self.structured_data.is_empty() {
            let mut sd = Map::new();
            for (id, params) in &self.structured_data {
                let entry = sd
                    .entry(id.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(p) = entry {
                    for (k, v) in params {
                        p.insert(k.to_string(), Value::from(v.as_str()));
                    }
                }
            }
            syslog.insert("structured_data".into(), Value::Object(sd));
        }
        if !syslog.is_empty() {
            set_field(event, "log.syslog", Value::Object(syslog));
        }
    }
}

/// Facility names by code (RFC 5424 table 1, as rsyslog names them).
pub const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// Severity names by code (RFC 5424 table 2, as rsyslog names them).
pub const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// The year of a yearless RFC 3164 date seen at `received_at`: the receive
/// year, or the previous one when the date would be more than a month in the
/// future (a December line read in January), or the next one for a January
/// line received on 31 December (sender clock slightly ahead).
pub fn infer_year(month: u32, day: u32, received_at: DateTime<Utc>) -> i32 {
    let year = received_at.year();
    let now = received_at.month();
    if month == 1 && now == 12 && day <= 1 {
        year + 1
    } else if month > now + 1 {
        year - 1
    } else {
        year
    }
}

/// `<14>2010-08-30T23:00:05Z` and nothing else: `syslog_loose` needs a space
/// after an RFC 3339 timestamp, rsyslog (`weird.parse1`) accepts it.
fn pri_and_timestamp_only(line: &str) -> Option<Header<'_>> {
    let rest = line.trim().strip_prefix('<')?;
    let (pri, ts) = rest.split_once('>')?;
    let pri: u8 = pri.parse().ok().filter(|p| *p < 192)?;
    let timestamp = DateTime::parse_from_rfc3339(ts.trim()).ok()?;
    Some(Header {
        version: None,
        facility: Some(pri >> 3),
        severity: Some(pri & 7),
        timestamp: Some(timestamp),
        hostname: None,
        appname: None,
        program: None,
        tag_module: None,
        procid: None,
        msgid: None,
        structured_data: Vec::new(),
        msg: "",
    })
}

/// `2019-06-14T10:40:20.912134 host tag[pid]: msg`: an ISO 8601 time without
/// a zone (read as UTC; journald/rsyslog file output with a local-time
/// template), which `syslog_loose` does not take as RFC 3339.
fn zoneless_iso(line: &str) -> Option<Header<'_>> {
    let (ts, rest) = line.split_once(' ')?;
    if ts.len() < 19 || !ts.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    let naive = chrono::NaiveDateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    let (hostname, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let (tag, msg) = match rest.split_once(": ") {
        Some((tag, msg)) if !tag.contains(' ') => (Some(tag), msg),
        _ => (None, rest),
    };
    let (appname, procid) = match tag.and_then(|t| t.strip_suffix(']')?.split_once('[')) {
        Some((app, pid)) => (Some(app), Some(pid.to_owned())),
        None => (tag, None),
    };
    let (program, tag_module) = split_module(appname);
    Some(Header {
        version: None,
        facility: None,
        severity: None,
        timestamp: Some(naive.and_utc().fixed_offset()),
        hostname: Some(hostname).filter(|h| !h.is_empty()),
        appname,
        program,
        tag_module,
        procid,
        msgid: None,
        structured_data: Vec::new(),
        msg,
    })
}

/// `sshd(pam_unix)` -> (`sshd`, `pam_unix`).
fn split_module(appname: Option<&str>) -> (Option<&str>, Option<&str>) {
    match appname {
        Some(app) => match app.strip_suffix(')').and_then(|a| a.split_once('(')) {
            Some((prog, module)) if !prog.is_empty() => (Some(prog), Some(module)),
            _ => (Some(app), None),
        },
        None => (None, None),
    }
}

/// RFC 5424 §6.3.3: in a PARAM-VALUE, `\"`, `\\` and `\]` are escapes; any
/// other backslash is a literal backslash.
fn unescape_sd(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&next @ ('"' | '\\' | ']')) = chars.peek()
        {
            out.push(next);
            chars.next();
        } else {
            out.push(c);
        }
    }
    out
}

/// rsyslog's repeat reduction: `message repeated 3 times: [ inner]` gives
/// `(3, "inner")`.
pub fn unwrap_repeated(msg: &str) -> Option<(u64, &str)> {
    let rest = msg.strip_prefix("message repeated ")?;
    let (n, rest) = rest.split_once(' ')?;
    let n = n.parse().ok()?;
    let inner = rest.strip_prefix("times: [")?;
    let inner = inner.trim_end().strip_suffix(']').unwrap_or(inner);
    Some((n, inner.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_messages_unwrap() {
        assert_eq!(
            unwrap_repeated(
                "message repeated 2 times: [ Failed password for root from 1.2.3.4 port 5 ssh2]"
            ),
            Some((2, "Failed password for root from 1.2.3.4 port 5 ssh2"))
        );
        assert_eq!(unwrap_repeated("message repeated x times: [a]"), None);
    }

    #[test]
    fn year_inference_handles_new_year() {
        let jan = DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(infer_year(12, 31, jan), 2025);
        assert_eq!(infer_year(1, 2, jan), 2026);
        assert_eq!(infer_year(2, 10, jan), 2026);
        let dec = DateTime::parse_from_rfc3339("2026-12-31T23:59:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(infer_year(1, 1, dec), 2027);
    }

    #[test]
    fn sd_unescaping_follows_the_rfc() {
        assert_eq!(unescape_sd(r#"a\"b\\c\]d\ne"#), "a\"b\\c]d\\ne");
    }
}
