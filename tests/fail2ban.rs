//! fail2ban's own annotated test logs (`../shared/data/fail2ban-logs`, see
//! `SOURCES.md`) as an oracle for the parsers.
//!
//! Each log line there may be preceded by `# failJSON: {"match": .., "host":
//! ..}`: `match: true` is an authentication failure (or abuse) from `host`,
//! `match: false` (and every unannotated line) is not. For each line we
//! parse, a `match: true` must give `event.outcome: failure` with the host as
//! `source.ip` (or `source.domain`), and a `match: false` must not give a
//! failure. Lines in a `logtype: journal` block have no syslog header: they
//! reach us as journal entries (`_HOSTNAME`, `SYSLOG_IDENTIFIER`, `_PID`,
//! `MESSAGE`) and go through the journald parser.
//!
//! fail2ban's filters keep state across lines (per pid or connection), so a
//! few of its verdicts are about the line's place in a session, not the line;
//! and its jails disagree with each other on a few lines (a missing file is a
//! failure for apache-noscript, not for apache-auth). Those lines are listed
//! in [`EXPLAINED`] with the reason, and checked for what the line alone
//! says.
//!
//! fail2ban tests some blocks of lines in one of its filter modes only
//! (`filterOptions`): we compare with its default mode; blocks for its
//! `aggressive` mode (every mode's failures at once) are counted in a column
//! of their own, not asserted; blocks for other modes are not compared.
//!
//! `oracle_table` prints the per-file table (`cargo test --test fail2ban --
//! --nocapture`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use secmon::model::Event;
use secmon::parse::{DATASETS, ParseOptions, RawRecord, get_field, journald, parse};
use serde_json::{Map, Value};

const DIR: &str = "../shared/data/fail2ban-logs";

/// fail2ban's test clock (`MyTime.setTime(1124013600)`): yearless dates
/// after it are last year's, as fail2ban's own annotations have them.
fn test_clock() -> DateTime<Utc> {
    DateTime::from_timestamp(1_124_013_600, 0).unwrap()
}

/// One log line and what fail2ban says of it.
#[derive(Debug)]
struct Case {
    file: String,
    line_no: usize,
    line: String,
    journal: bool,
    /// The fail2ban modes the line's block is tested in.
    modes: Modes,
    /// `None`: not annotated (must not be a failure).
    fail: Option<Expect>,
}

#[derive(Debug, Clone)]
struct Expect {
    matched: bool,
    host: Option<String>,
    per_mode: bool,
}

fn cases(file: &str) -> Vec<Case> {
    let bytes = std::fs::read(format!("{DIR}/{file}")).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let mut out = Vec::new();
    let mut pending: Option<Expect> = None;
    let mut file_journal = false;
    let mut journal = false;
    let mut modes = Modes::Default;
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with('#') {
            let body = line.trim_start_matches('#').trim_start();
            if let Some(json) = body.strip_prefix("failJSON:") {
                let v: Value = serde_json::from_str(json.trim()).unwrap_or_else(|e| {
                    panic!("{file}:{}: bad failJSON: {e}", i + 1);
                });
                // A verdict for one of fail2ban's modes only (the same line
                // is annotated once per mode): we have no modes.
                let per_mode = v["constraint"].as_str().is_some_and(|c| c.contains("mode"));
                pending = Some(Expect {
                    matched: v["match"].as_bool().unwrap(),
                    host: ["host", "ip4", "ip6"]
                        .iter()
                        .find_map(|k| v[*k].as_str())
                        .map(str::to_owned),
                    per_mode,
                });
            } else if let Some(opts) = body.strip_prefix("fileOptions:") {
                file_journal = is_journal(opts);
                journal = file_journal;
            } else if let Some(opts) = body.strip_prefix("filterOptions:") {
                journal = file_journal || is_journal(opts);
                modes = modes_of(opts);
            }
            continue;
        }
        out.push(Case {
            file: file.to_owned(),
            line_no: i + 1,
            line: line.to_owned(),
            journal,
            modes,
            fail: pending.take(),
        });
    }
    out
}

/// Which of fail2ban's filter modes a block of lines is tested in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Modes {
    /// The default mode (an option set without `mode`, or `normal`):
    /// compared.
    Default,
    /// Not the default, but `aggressive` (every mode's failures at once):
    /// reported apart, not asserted.
    Aggressive,
    /// Only other modes (`errors`, `auth`, `fallback`): not compared.
    Other,
}

/// The modes of a `filterOptions` line (`{...}` or `[{...}, ...]`).
fn modes_of(opts: &str) -> Modes {
    let v: Value = serde_json::from_str(opts.trim()).unwrap_or(Value::Null);
    let sets = match v {
        Value::Array(sets) => sets,
        other => vec![other],
    };
    let modes: Vec<&str> = sets
        .iter()
        .map(|set| set["mode"].as_str().unwrap_or("normal"))
        .collect();
    if modes.contains(&"normal") {
        Modes::Default
    } else if modes.contains(&"aggressive") {
        Modes::Aggressive
    } else {
        Modes::Other
    }
}

/// `{"logtype": "journal"}` in a `fileOptions` / `filterOptions` line.
fn is_journal(opts: &str) -> bool {
    opts.replace(' ', "").contains("\"logtype\":\"journal\"")
}

fn files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(DIR)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|n| n != "COPYING")
        .collect();
    names.sort();
    names
}

/// `srv sshd[123]: msg` (a journal-mode line) as the journal entry it was.
fn journal_entry(line: &str) -> Map<String, Value> {
    let mut entry = Map::new();
    let (host, rest) = line.split_once(' ').unwrap_or(("", line));
    let (tag, msg) = rest.split_once(": ").unwrap_or(("", rest));
    let (ident, pid) = match tag.strip_suffix(']').and_then(|t| t.split_once('[')) {
        Some((ident, pid)) => (ident, Some(pid)),
        None => (tag, None),
    };
    entry.insert("_HOSTNAME".into(), host.into());
    entry.insert("SYSLOG_IDENTIFIER".into(), ident.into());
    if let Some(pid) = pid {
        entry.insert("_PID".into(), pid.into());
    }
    entry.insert("MESSAGE".into(), msg.into());
    entry
}

fn parse_case(case: &Case) -> Event {
    let opts = ParseOptions::default();
    // Journal blocks hold `host tag[pid]: msg`; a line there that has its
    // own date is read as what it is.
    if case.journal && !case.line.starts_with(|c: char| c.is_ascii_digit()) {
        journald::parse(&journal_entry(&case.line), test_clock(), &opts)
    } else {
        let raw = RawRecord {
            bytes: case.line.as_bytes().to_vec(),
            source: "file",
            peer: None,
            received_at: test_clock(),
        };
        parse(&raw, &opts)
    }
}

fn text<'a>(e: &'a Event, path: &str) -> Option<&'a str> {
    get_field(e, path).and_then(Value::as_str)
}

fn is_failure(e: &Event) -> bool {
    e.outcome.as_deref() == Some("failure")
}

/// The host the event blames: `source.ip`, else `source.domain`.
fn blamed(e: &Event) -> Option<String> {
    e.source_ip
        .map(|ip| ip.to_canonical().to_string())
        .or_else(|| text(e, "source.domain").map(str::to_owned))
}

/// Same host: equal addresses (`::ffff:a.b.c.d` is `a.b.c.d`), or equal
/// names (case-insensitive), or the same text.
fn same_host(ours: &str, theirs: &str) -> bool {
    match (ours.parse::<IpAddr>(), theirs.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a.to_canonical() == b.to_canonical(),
        _ => ours.eq_ignore_ascii_case(theirs),
    }
}

/// What we say of one case, against fail2ban.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Verdict {
    /// Not from a program we parse (no known dataset), or a verdict for one
    /// of fail2ban's modes only: not counted.
    NotCompared,
    /// Agrees with fail2ban.
    Agrees,
    /// fail2ban says failure; we say none.
    MissedFailure,
    /// fail2ban says failure; we say failure but blame another host.
    WrongHost,
    /// fail2ban says no failure; we say failure.
    FalseFailure,
}

fn verdict(case: &Case, e: &Event) -> Verdict {
    if !e.dataset.as_deref().is_some_and(|d| DATASETS.contains(&d)) {
        return Verdict::NotCompared;
    }
    let expect = case.fail.clone().unwrap_or(Expect {
        matched: false,
        host: None,
        per_mode: false,
    });
    if expect.per_mode || case.modes == Modes::Other {
        return Verdict::NotCompared;
    }
    match (expect.matched, is_failure(e)) {
        (true, false) => Verdict::MissedFailure,
        (false, true) => Verdict::FalseFailure,
        (true, true) => match (expect.host, blamed(e)) {
            (Some(theirs), Some(ours)) if same_host(&ours, &theirs) => Verdict::Agrees,
            (None, _) => Verdict::Agrees,
            _ => Verdict::WrongHost,
        },
        (false, false) => Verdict::Agrees,
    }
}

/// Files of programs we parse: every disagreement in them must be one of
/// [`EXPLAINED`] (or have the host on another line).
const TARGETS: &[&str] = &[
    "sshd",
    "sshd-journal",
    "dropbear",
    "pam-generic",
    "vsftpd",
    "proftpd",
    "pure-ftpd",
    "postfix",
    "dovecot",
    "exim",
    "named-refused",
    "apache-auth",
    "nginx-http-auth",
    "haproxy-http-auth",
    "openvpn",
    "squid",
];

/// Where fail2ban's verdict is about the line's place in a connection, not
/// the line, or where its jails disagree: (text in the line, our verdict,
/// why). We report what the line says; the correlation rules count per
/// source.
const EXPLAINED: &[(&str, Verdict, &str)] = &[
    (
        "not allowed because account is locked",
        Verdict::FalseFailure,
        "a refusal; fail2ban counts the connection once, at its next line",
    ),
    (
        "input_userauth_request: invalid user",
        Verdict::FalseFailure,
        "an unknown user (no address in the line); fail2ban counts the connection at another line",
    ),
    (
        "Failed publickey for git",
        Verdict::FalseFailure,
        "a rejected key of a valid user: clients offer several, fail2ban counts only when all fail",
    ),
    (
        "Too many authentication failures",
        Verdict::FalseFailure,
        "the summary of attempts fail2ban has already counted one by one",
    ),
    (
        "pam_unix(sshd:auth): authentication failure",
        Verdict::FalseFailure,
        "fail2ban defers PAM failures to the end of the connection (two-method logins, gh-2070)",
    ),
    (
        "Accepted password for known",
        Verdict::MissedFailure,
        "a successful login; fail2ban counts it as a failure because the connection tried other users first",
    ),
    (
        "Disconnected from authenticating user admin",
        Verdict::FalseFailure,
        "a pre-authentication disconnect, which fail2ban counts only in its aggressive mode",
    ),
    (
        "kex_exchange_identification:",
        Verdict::FalseFailure,
        "a failed banner exchange without an address; fail2ban waits for the connection's line with one",
    ),
    (
        "type=USER_LOGIN",
        Verdict::FalseFailure,
        "the login record after the USER_AUTH / USER_ERR record of the same attempt, which fail2ban counts",
    ),
    (
        "HTTP/2.0\" 401 17 \"-\"",
        Verdict::FalseFailure,
        "a 401 without a user name: the challenge before a browser asks for the password, which fail2ban's normal mode skips",
    ),
    (
        "client denied by server configuration: /var/www/webmail/.htaccess",
        Verdict::FalseFailure,
        "fail2ban's apache-auth jail counts this denial (as we do), its apache-botsearch jail does not",
    ),
    (
        "File does not exist: /srv/http/site/[client",
        Verdict::FalseFailure,
        "a missing file: apache-auth does not count it, apache-noscript and apache-botsearch do (as we do); the forged `[client ...]` in the path is not taken",
    ),
    (
        "script '/var/www/forum/mail.php' not found",
        Verdict::FalseFailure,
        "a missing script: apache-noscript counts it (as we do), apache-botsearch only for the paths it lists",
    ),
    (
        "TrackBack/1.02",
        Verdict::MissedFailure,
        "apache-badbots bans by user agent: the request itself succeeded (301)",
    ),
    (
        "index.php?n=http://",
        Verdict::MissedFailure,
        "a remote-include probe the server answered with 200: no failure, a scanner's URL (the web scanning rule)",
    ),
    (
        "for user \"username1\"",
        Verdict::MissedFailure,
        "ZoneMinder's own login message, relayed by PHP into Apache's log: an application's words",
    ),
    (
        "Could not retrieve user username1",
        Verdict::MissedFailure,
        "ZoneMinder's own message, relayed by PHP into Apache's log: an application's words",
    ),
    (
        "F2B: failure from",
        Verdict::MissedFailure,
        "a firewall LOG prefix of fail2ban's own generic example, not a kernel message",
    ),
    (
        "pop(pam_unix)[4920]",
        Verdict::FalseFailure,
        "a real failure in the pre-0.99.2 Linux-PAM format, which fail2ban no longer matches",
    ),
];

/// Why a disagreement is not one, when it is not.
fn explained(case: &Case, v: Verdict) -> Option<&'static str> {
    // The address is on an earlier line of the same connection: fail2ban
    // follows connections by pid; one line alone cannot name the host.
    let host = case.fail.as_ref().and_then(|f| f.host.as_deref());
    if v == Verdict::WrongHost && host.is_some_and(|h| !case.line.contains(h)) {
        return Some("the host is on another line of the same connection");
    }
    EXPLAINED
        .iter()
        .find(|(text, verdict, _)| *verdict == v && case.line.contains(text))
        .map(|(_, _, why)| *why)
}

#[derive(Default)]
struct Row {
    lines: usize,
    parsed: usize,
    fail_lines: usize,
    fail_agree: usize,
    clean_lines: usize,
    clean_agree: usize,
    /// Disagreements [`explained`].
    explained: usize,
    /// Lines fail2ban tests in its aggressive mode only: (compared, agreed).
    aggressive: (usize, usize),
    misses: Vec<String>,
}

fn row(file: &str) -> Row {
    let mut row = Row::default();
    for case in cases(file) {
        let e = parse_case(&case);
        let v = verdict(&case, &e);
        let failing = case.fail.as_ref().is_some_and(|f| f.matched);
        row.lines += 1;
        if v == Verdict::NotCompared {
            continue;
        }
        if case.modes == Modes::Aggressive {
            row.aggressive.0 += 1;
            row.aggressive.1 += usize::from(v == Verdict::Agrees);
            continue;
        }
        row.parsed += 1;
        if failing {
            row.fail_lines += 1;
            row.fail_agree += usize::from(v == Verdict::Agrees);
        } else {
            row.clean_lines += 1;
            row.clean_agree += usize::from(v == Verdict::Agrees);
        }
        if v != Verdict::Agrees && explained(&case, v).is_some() {
            row.explained += 1;
        } else if v != Verdict::Agrees {
            row.misses.push(format!(
                "{}:{}: {v:?} (ours: outcome {:?}, action {:?}, host {:?}; theirs: {:?}): {}",
                case.file,
                case.line_no,
                e.outcome,
                e.action,
                blamed(&e),
                case.fail.as_ref().and_then(|f| f.host.clone()),
                case.line
            ));
        }
    }
    row
}

#[test]
fn oracle_table() {
    println!(
        "| file | lines | parsed | failures agreed | non-failures agreed | explained (a connection's state, or jails that disagree) | aggressive mode only: agreed |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut total = Row::default();
    let mut target_misses = Vec::new();
    for file in files() {
        let r = row(&file);
        println!(
            "| {file} | {} | {} | {}/{} | {}/{} | {} | {}/{} |",
            r.lines,
            r.parsed,
            r.fail_agree,
            r.fail_lines,
            r.clean_agree,
            r.clean_lines,
            r.explained,
            r.aggressive.1,
            r.aggressive.0
        );
        total.lines += r.lines;
        total.parsed += r.parsed;
        total.fail_lines += r.fail_lines;
        total.fail_agree += r.fail_agree;
        total.clean_lines += r.clean_lines;
        total.clean_agree += r.clean_agree;
        total.explained += r.explained;
        total.aggressive.0 += r.aggressive.0;
        total.aggressive.1 += r.aggressive.1;
        if TARGETS.contains(&file.as_str()) {
            target_misses.extend(r.misses.iter().cloned());
        }
        total.misses.extend(r.misses);
    }
    println!(
        "| **all** | {} | {} | {}/{} | {}/{} | {} | {}/{} |",
        total.lines,
        total.parsed,
        total.fail_agree,
        total.fail_lines,
        total.clean_agree,
        total.clean_lines,
        total.explained,
        total.aggressive.1,
        total.aggressive.0
    );
    println!("\nwhy a disagreement is none:");
    for (text, verdict, why) in EXPLAINED {
        println!("  {text:?} ({verdict:?}): {why}");
    }
    println!("\ndisagreements (files of programs without a parser yet included):");
    for m in &total.misses {
        println!("  {m}");
    }
    assert!(total.lines > 1000, "the fail2ban logs are missing: {DIR}");
    assert!(
        target_misses.is_empty(),
        "{} disagreements with fail2ban in {TARGETS:?}:\n{}",
        target_misses.len(),
        target_misses.join("\n")
    );
}

/// The service files' lines replayed as a burst, each line five times in
/// a row (each source trying five times within seconds, as fail2ban's
/// default jails count): the built-in pack's service brute force rule flags every source
/// fail2ban blames for a login failure there, and no source it does not.
#[test]
fn replayed_as_a_burst_every_login_failure_source_is_flagged() {
    use std::collections::BTreeSet;

    use secmon::detect::Detector;
    use secmon::detect::rules::{self, BUILTIN, FieldMapping, Source};

    const SERVICE_BRUTEFORCE: &str = "f8be5615-f245-40be-8363-51d4615a17da";
    let files = [
        "dropbear",
        "vsftpd",
        "proftpd",
        "pure-ftpd",
        "wuftpd",
        "postfix",
        "dovecot",
        "exim",
        "apache-auth",
        "nginx-http-auth",
        "haproxy-http-auth",
        "openvpn",
    ];
    let mapping = FieldMapping::shipped(&Default::default()).unwrap();
    let pipeline = mapping.pipeline(&Default::default()).unwrap();
    let sources: Vec<Source> = BUILTIN
        .iter()
        .map(|(name, text)| Source {
            name: format!("builtin:{name}"),
            text: (*text).to_owned(),
        })
        .collect();
    let set = rules::load(&sources, &mapping, &pipeline);
    assert!(set.rejected.is_empty(), "{:?}", set.rejected);
    let mut detector = Detector::new(&set).unwrap();

    let mut expected = BTreeSet::new();
    let mut blamable = BTreeSet::new();
    let mut events = Vec::new();
    for file in files {
        for case in cases(file) {
            let e = parse_case(&case);
            let login_failure = is_failure(&e) && e.category.as_deref() == Some("authentication");
            if let (true, Some(ip)) = (login_failure, e.source_ip) {
                blamable.insert(ip.to_string());
                if case.modes == Modes::Default
                    && case.fail.as_ref().is_some_and(|f| f.matched && !f.per_mode)
                {
                    expected.insert(ip.to_string());
                }
            }
            events.push(e);
        }
    }
    let t0 = test_clock();
    let mut flagged = BTreeSet::new();
    let mut i = 0;
    for e in &events {
        for _ in 0..5 {
            let mut e = e.clone();
            e.timestamp = t0 + chrono::Duration::seconds(i);
            e.received_at = e.timestamp;
            i += 1;
            for hit in detector.evaluate(std::slice::from_ref(&e)) {
                if hit.rule_id == SERVICE_BRUTEFORCE {
                    let ip = hit.group_key.iter().find(|(k, _)| k == "source.ip");
                    flagged.insert(ip.map(|(_, v)| v.clone()).unwrap_or_default());
                }
            }
        }
    }
    println!(
        "{} sources flagged, {} expected",
        flagged.len(),
        expected.len()
    );
    let missed: Vec<_> = expected.difference(&flagged).collect();
    assert!(missed.is_empty(), "not flagged: {missed:?}");
    let innocent: Vec<_> = flagged.difference(&blamable).collect();
    assert!(
        innocent.is_empty(),
        "flagged without a login failure: {innocent:?}"
    );
    assert!(expected.len() >= 40, "{expected:?}");
}
