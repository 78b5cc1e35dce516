//! Real logs from `../shared/data`: Loghub structured CSVs (per line: our
//! dataset/action agrees with the EventTemplate), CrowdSec hub
//! `parser.assert` expectations mapped to our fields, Elastic beats samples.
//! `coverage_table` prints, per file, lines parsed into a known dataset / total.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use secmon::model::Event;
use secmon::parse::{DATASETS, ParseOptions, RawRecord, get_field, parse};

const DATA: &str = "../shared/data";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn parse_line(line: &str) -> Event {
    let raw = RawRecord {
        bytes: line.as_bytes().to_vec(),
        source: "file",
        peer: None,
        received_at: now(),
    };
    parse(&raw, &ParseOptions::default())
}

/// Lines of a file, split on `\n` only (so CRs reach the parser).
fn lines(path: &str) -> Vec<String> {
    let bytes = std::fs::read(format!("{DATA}/{path}")).unwrap();
    String::from_utf8_lossy(&bytes)
        .split('\n')
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// A minimal CSV reader (quoted fields, doubled quotes).
fn csv(path: &str) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(format!("{DATA}/{path}")).unwrap();
    let mut rows = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => record.push(std::mem::take(&mut field)),
            ('\n', false) => {
                record.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut record));
            }
            ('\r', false) => {}
            (c, _) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        rows.push(record);
    }
    let header = rows.remove(0);
    rows.into_iter()
        .map(|r| header.iter().cloned().zip(r).collect())
        .collect()
}

fn known(e: &Event) -> bool {
    e.dataset.as_deref().is_some_and(|d| DATASETS.contains(&d))
}

fn triple(e: &Event) -> (Option<&str>, Option<&str>, Option<&str>) {
    (
        e.dataset.as_deref(),
        e.action.as_deref(),
        e.outcome.as_deref(),
    )
}

/// Loghub OpenSSH: every EventId has the (dataset, action, outcome) we must give.
#[test]
fn loghub_openssh_agrees_with_templates() {
    let expected: BTreeMap<&str, (&str, &str, &str)> = [
        ("E1", ("sshd", "ssh_login", "success")),
        ("E2", ("sshd", "ssh_disconnect", "failure")),
        ("E3", ("sshd", "ssh_no_identification", "failure")),
        ("E4", ("sshd", "ssh_max_auth_attempts", "failure")),
        ("E5", ("sshd", "ssh_max_auth_attempts", "failure")),
        ("E6", ("sshd", "ssh_disconnect", "failure")),
        ("E7", ("sshd", "ssh_disconnect", "failure")),
        ("E8", ("sshd", "ssh_login", "failure")),
        ("E9", ("sshd", "ssh_login", "failure")),
        ("E10", ("sshd", "ssh_login", "failure")),
        ("E11", ("sshd", "ssh_connection_reset", "failure")),
        ("E12", ("sshd", "ssh_invalid_user", "failure")),
        ("E13", ("sshd", "ssh_invalid_user", "failure")),
        ("E14", ("sshd", "ssh_login", "failure")),
        ("E15", ("sshd", "ssh_auth_failures", "failure")),
        ("E16", ("sshd", "ssh_auth_failures", "failure")),
        ("E17", ("sshd", "ssh_auth_failures", "failure")),
        ("E18", ("sshd", "ssh_max_auth_attempts", "failure")),
        ("E19", ("pam", "pam_auth_failure", "failure")),
        ("E20", ("pam", "pam_auth_failure", "failure")),
        ("E21", ("pam", "pam_user_unknown", "failure")),
        ("E22", ("pam", "session_closed", "success")),
        ("E23", ("pam", "session_opened", "success")),
        ("E24", ("sshd", "ssh_disconnect", "failure")),
        ("E25", ("sshd", "ssh_disconnect", "failure")),
        ("E26", ("sshd", "ssh_disconnect", "unknown")),
        ("E27", ("sshd", "ssh_reverse_mapping_failed", "unknown")),
    ]
    .into_iter()
    .collect();
    let log = lines("loghub/OpenSSH/OpenSSH_2k.log");
    let rows = csv("loghub/OpenSSH/OpenSSH_2k.log_structured.csv");
    assert_eq!(log.len(), 2000);
    assert_eq!(rows.len(), 2000);
    let mut bad = Vec::new();
    let mut repeated = 0;
    for row in &rows {
        let n: usize = row["LineId"].parse().unwrap();
        let e = parse_line(&log[n - 1]);
        let (d, a, o) = expected[row["EventId"].as_str()];
        if triple(&e) != (Some(d), Some(a), Some(o)) {
            bad.push(format!(
                "{}: {:?} -> {:?}",
                row["EventId"],
                row["Content"],
                triple(&e)
            ));
        }
        // Header agrees with the CSV.
        assert_eq!(e.host_name.as_deref(), Some(row["Component"].as_str()));
        assert_eq!(
            e.process_pid.map(|p| p.to_string()).as_deref(),
            Some(row["Pid"].as_str())
        );
        assert_eq!(e.message, row["Content"].trim_end());
        if let Some(n) = get_field(&e, "event.repeat_count") {
            repeated += n.as_u64().unwrap();
        }
        if a.starts_with("ssh_")
            && !matches!(row["EventId"].as_str(), "E4" | "E5" | "E11" | "E12" | "E18")
        {
            assert!(
                e.source_ip.is_some() || get_field(&e, "source.domain").is_some(),
                "no source: {}",
                row["Content"]
            );
        }
    }
    assert!(bad.is_empty(), "{} lines disagree: {bad:#?}", bad.len());
    // Two `message repeated 5 times: [ Failed password ...]` lines: one
    // event each, counting 5 (fields.event.repeat_count).
    assert_eq!(repeated, 10);
    let accepted: Vec<Event> = log
        .iter()
        .map(|l| parse_line(l))
        .filter(|e| {
            e.action.as_deref() == Some("ssh_login") && e.outcome.as_deref() == Some("success")
        })
        .collect();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].user_name.as_deref(), Some("fztu"));
    assert_eq!(accepted[0].source_ip, "119.137.62.142".parse().ok());
}

/// Loghub Linux: the `prog(pam_unix)` lines are PAM events with the action of
/// their template; the others (ftpd, kernel boot messages, ...) are kept
/// without a dataset.
#[test]
fn loghub_linux_pam_lines() {
    let log = lines("loghub/Linux/Linux_2k.log");
    let rows = csv("loghub/Linux/Linux_2k.log_structured.csv");
    assert_eq!(log.len(), rows.len());
    let mut bad = Vec::new();
    let mut pam_failures_with_root = 0;
    for row in &rows {
        let n: usize = row["LineId"].parse().unwrap();
        let e = parse_line(&log[n - 1]);
        let template = row["EventTemplate"].as_str();
        let want = if row["Component"].ends_with("(pam_unix)") {
            if template.starts_with("authentication failure") {
                Some(("pam", "pam_auth_failure", "failure"))
            } else if template.starts_with("check pass; user unknown") {
                Some(("pam", "pam_user_unknown", "failure"))
            } else if template.starts_with("session opened") {
                Some(("pam", "session_opened", "success"))
            } else if template.starts_with("session closed") {
                Some(("pam", "session_closed", "success"))
            } else {
                None
            }
        } else {
            None
        };
        let got = triple(&e);
        // Other lines: the dataset of their program when we parse it
        // (kernel, ftpd, named), else none.
        let program = row["Component"].split('(').next().unwrap_or("");
        let ok = match want {
            Some((d, a, o)) => got == (Some(d), Some(a), Some(o)),
            None => got.0 == secmon::parse::known_program(program).map(|(_, d)| d),
        };
        if !ok {
            bad.push(format!(
                "{} {:?}: {got:?}",
                row["Component"], row["Content"]
            ));
        }
        if got.1 == Some("pam_auth_failure") && e.user_name.as_deref() == Some("root") {
            pam_failures_with_root += 1;
        }
        assert!(!e.message.is_empty());
    }
    assert!(bad.is_empty(), "{} lines disagree: {bad:#?}", bad.len());
    // SOURCES.md: 490 PAM authentication failures, 351 with user=root (sshd
    // and others).
    assert_eq!(pam_failures_with_root, 351);
}

/// Elastic beats system/auth samples: each line's expected classification.
#[test]
fn beats_auth_samples() {
    let log = lines("elastic-beats/filebeat/module/system/auth/test/test.log");
    let want = [
        ("sshd", "ssh_login", "success", Some("vagrant")),
        ("sshd", "ssh_login", "success", Some("vagrant")),
        ("sshd", "ssh_invalid_user", "failure", Some("test")),
        ("sshd", "ssh_login", "failure", Some("root")),
        ("sudo", "sudo_command", "success", Some("vagrant")),
        ("sshd", "ssh_no_identification", "failure", None),
        ("sudo", "sudo_command", "success", Some("vagrant")),
        ("sudo", "sudo_command", "failure", Some("tsg")),
        ("accounts", "group_created", "success", None),
        ("accounts", "user_created", "success", None),
    ];
    assert_eq!(log.len(), want.len());
    for (line, (d, a, o, user)) in log.iter().zip(want) {
        let e = parse_line(line);
        assert_eq!(triple(&e), (Some(d), Some(a), Some(o)), "{line}");
        assert_eq!(e.user_name.as_deref(), user, "{line}");
    }
    let ts = lines("elastic-beats/filebeat/module/system/auth/test/timestamp.log");
    for line in &ts {
        let e = parse_line(line);
        assert!(e.host_name.is_some(), "{line}");
        assert_ne!(e.timestamp, now(), "{line}");
    }
}

/// One CrowdSec expectation: `Evt.Parsed[...]` / `Evt.Meta[...]` by key.
type Expect = BTreeMap<String, String>;

/// The s01-parse expectations of a `parser.assert`, one per event that the
/// parser reported as a success, keyed by the parser's name.
fn crowdsec_asserts(test: &str) -> Vec<(String, Expect)> {
    let path = format!("{DATA}/crowdsec-hub/.tests/{test}/parser.assert");
    let text = std::fs::read_to_string(path).unwrap();
    let mut by_index: BTreeMap<(String, usize), Expect> = BTreeMap::new();
    let mut success: BTreeMap<(String, usize), bool> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("results[\"s01-parse\"][\"") else {
            continue;
        };
        let Some((parser, rest)) = rest.split_once("\"][") else {
            continue;
        };
        let Some((idx, rest)) = rest.split_once("].") else {
            continue;
        };
        let key = (parser.to_owned(), idx.parse().unwrap());
        if let Some(v) = rest.strip_prefix("Success == ") {
            success.insert(key, v == "true");
        } else if let Some(rest) = rest.strip_prefix("Evt.") {
            let Some((kind, rest)) = rest.split_once("[\"") else {
                continue;
            };
            let Some((name, value)) = rest.split_once("\"] == \"") else {
                continue;
            };
            let value = value
                .strip_suffix('"')
                .unwrap_or(value)
                .replace("\\\"", "\"");
            by_index
                .entry(key)
                .or_default()
                .insert(format!("{kind}.{name}"), value);
        }
    }
    by_index
        .into_iter()
        .filter(|(k, _)| success.get(k) == Some(&true))
        .map(|((parser, _), e)| (parser, e))
        .collect()
}

/// How a CrowdSec field reads off our event.
fn ours(e: &Event, key: &str) -> Option<Option<String>> {
    let field = |p: &str| {
        get_field(e, p).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    Some(match key {
        "Meta.source_ip" | "Parsed.sshd_client_ip" | "Parsed.remote_addr" | "Parsed.src_ip" => {
            e.source_ip.map(|ip| ip.to_string())
        }
        "Parsed.sshd_client_port" | "Parsed.src_port" => e.source_port.map(|p| p.to_string()),
        "Parsed.dst_ip" => e.destination_ip.map(|ip| ip.to_string()),
        "Parsed.dst_port" => e.destination_port.map(|p| p.to_string()),
        "Meta.target_user"
        | "Parsed.sshd_invalid_user"
        | "Parsed.sshd_auth_user"
        | "Meta.username"
        | "Meta.user"
        | "Parsed.username" => e.user_name.clone(),
        "Parsed.program" => e.process_name.clone(),
        "Parsed.pid" => e.process_pid.map(|p| p.to_string()),
        "Meta.machine" => e.host_name.clone(),
        "Meta.http_status" | "Parsed.status" => field("http.response.status_code"),
        "Meta.http_verb" | "Parsed.verb" => field("http.request.method"),
        "Meta.http_path" | "Parsed.request" => {
            field("url.original").or_else(|| field("http.request.raw"))
        }
        "Meta.http_user_agent" | "Parsed.http_user_agent" => field("user_agent.original"),
        "Parsed.http_referer" => field("http.request.referrer"),
        "Parsed.body_bytes_sent" => field("http.response.body.bytes"),
        "Parsed.proto" => field("network.transport").map(|t| t.to_uppercase()),
        "Parsed.int_eth" => field("observer.ingress.interface.name"),
        "Meta.exe" => e.process_executable.clone(),
        "Meta.auid" => field("auditd.data.auid"),
        "Meta.ppid" => field("process.parent.pid"),
        "Meta.auditd_eventid" | "Parsed.event_inc_id" => field("auditd.sequence"),
        _ => return None,
    })
}

/// CrowdSec `log_type` -> what our event must say.
fn log_type_ok(e: &Event, log_type: &str) -> bool {
    let (d, a, o) = triple(e);
    match log_type {
        "ssh_failed-auth" => matches!(d, Some("sshd" | "pam")) && o == Some("failure"),
        "auth_success" => d == Some("sshd") && o == Some("success"),
        "ssh_bad_keyexchange" => a == Some("ssh_bad_keyexchange"),
        "ssh_auth_timeout" => a == Some("ssh_auth_timeout"),
        "ssh_dispatch_fatal" => a == Some("ssh_bad_protocol"),
        "ssh_refused_conn" => a == Some("ssh_connection_refused"),
        "pam_failed_auth" => a == Some("pam_auth_failure"),
        "pam_user_lock" => a == Some("pam_user_lock"),
        // We say failure only when the log prefix names the verdict.
        "iptables_drop" => d == Some("firewall") && o != Some("success"),
        "execve" => d == Some("auditd"),
        "http_access-log" => d == Some("web"),
        _ => true,
    }
}

/// Maps every CrowdSec expectation we have a field for; returns (checked, problems).
fn check_crowdsec(test: &str, parsers: &[&str]) -> (usize, Vec<String>) {
    let log_name = std::fs::read_dir(format!("{DATA}/crowdsec-hub/.tests/{test}"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".log"))
        .unwrap();
    let events: Vec<Event> = lines(&format!("crowdsec-hub/.tests/{test}/{log_name}"))
        .iter()
        .map(|l| parse_line(l))
        .collect();
    let mut checked = 0;
    let mut problems = Vec::new();
    for (parser, expect) in crowdsec_asserts(test) {
        if !parsers.contains(&parser.as_str()) {
            continue;
        }
        // Find the line by its message (CrowdSec's `message` is the syslog MSG;
        // for access logs without a header, the whole line).
        let Some(msg) = expect.get("Parsed.message") else {
            continue;
        };
        let Some(e) = events.iter().find(|e| {
            e.message.trim_end() == msg.trim_end()
                || e.original
                    .as_deref()
                    .is_some_and(|o| o.trim_end() == msg.trim_end())
        }) else {
            // Error-log lines (not access logs, not ours) and messages whose
            // escaping the assert file changed: reported, not failed.
            println!("{test}: no line with message {msg:?}");
            continue;
        };
        checked += 1;
        for (key, want) in &expect {
            if CROWDSEC_DEVIATIONS
                .iter()
                .any(|(m, k, _)| m == msg && k == key)
            {
                continue;
            }
            if key == "Meta.log_type" {
                if !log_type_ok(e, want) {
                    problems.push(format!(
                        "{test}: {msg:?}: log_type {want} vs {:?}",
                        triple(e)
                    ));
                }
                continue;
            }
            // CrowdSec's `program` for header-less files comes from the
            // acquisition labels, not the line; `-` is "no value" for us.
            // For audit records our process.name is the audited process (comm).
            if key == "Parsed.program"
                && (e.process_name.is_none() || e.dataset.as_deref() == Some("auditd"))
            {
                continue;
            }
            if let Some(got) = ours(e, key)
                && got.as_deref() != Some(want.as_str())
                && !(want == "-" && got.is_none())
            {
                problems.push(format!("{test}: {msg:?}: {key} = {want:?}, ours {got:?}"));
            }
        }
    }
    (checked, problems)
}

/// (message, key, why) where we knowingly differ from CrowdSec.
const CROWDSEC_DEVIATIONS: &[(&str, &str, &str)] = &[(
    "Connection closed by 118.27.24.104 port 33594 [preauth]",
    "Meta.log_type",
    "no user was named: we record an ssh_disconnect with outcome unknown, not a failed login",
)];

#[test]
fn crowdsec_sshd_and_pam() {
    let mut all = Vec::new();
    for (test, parsers, at_least) in [
        ("sshd-logs", &["crowdsecurity/sshd-logs"][..], 20),
        (
            "sshd-success-logs",
            &["crowdsecurity/sshd-success-logs"][..],
            4,
        ),
        ("pam-logs", &["crowdsecurity/pam-logs"][..], 2),
    ] {
        let (checked, problems) = check_crowdsec(test, parsers);
        assert!(checked >= at_least, "{test}: only {checked} asserts mapped");
        all.extend(problems);
    }
    assert!(all.is_empty(), "{} problems: {all:#?}", all.len());
}

#[test]
fn crowdsec_web_firewall_auditd() {
    let mut all = Vec::new();
    for (test, parsers, at_least) in [
        ("nginx_http-logs", &["crowdsecurity/nginx-logs"][..], 1),
        ("nginx-http-malformed", &["crowdsecurity/nginx-logs"][..], 1),
        ("apache2-logs", &["crowdsecurity/apache2-logs"][..], 1),
        ("iptables-logs", &["crowdsecurity/iptables-logs"][..], 3),
        ("auditd-logs", &["crowdsecurity/auditd-logs"][..], 4),
    ] {
        if !std::path::Path::new(&format!("{DATA}/crowdsec-hub/.tests/{test}/parser.assert"))
            .exists()
        {
            continue;
        }
        let (checked, problems) = check_crowdsec(test, parsers);
        println!(
            "{test}: {checked} asserted events mapped, {} problems",
            problems.len()
        );
        assert!(checked >= at_least, "{test}: only {checked} asserts mapped");
        all.extend(problems);
    }
    assert!(all.is_empty(), "{} problems: {all:#?}", all.len());
}

/// go-libaudit golden files: per record, type, sequence, time and the decoded
/// values we share with go-libaudit.
#[test]
fn go_libaudit_golden() {
    let dir = format!("{DATA}/go-libaudit/auparse/testdata");
    let mut checked = 0;
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "golden") {
            continue;
        }
        let golden: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let log = path.with_extension("");
        let log_lines = lines(
            log.strip_prefix(DATA)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_start_matches('/'),
        );
        for (line, want) in log_lines.iter().zip(&golden) {
            if want.get("error").is_some() || want.get("sequence").is_none() {
                continue;
            }
            let e = parse_line(line);
            checked += 1;
            if e.dataset.as_deref() != Some("auditd") {
                problems.push(format!("not auditd: {line}"));
                continue;
            }
            let seq = get_field(&e, "auditd.sequence").cloned();
            if seq.as_ref() != want.get("sequence") {
                problems.push(format!("sequence {seq:?}: {line}"));
            }
            let ty = get_field(&e, "auditd.type")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_lowercase();
            if Some(ty.as_str()) != want["record_type"].as_str()
                && want["record_type"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("unknown"))
            {
                problems.push(format!("type {ty} vs {}: {line}", want["record_type"]));
            }
            let ts = want["@timestamp"].as_str().unwrap();
            let want_ts = DateTime::parse_from_rfc3339(ts).unwrap().timestamp_millis();
            if e.timestamp.timestamp_millis() != want_ts {
                problems.push(format!("time {} vs {ts}: {line}", e.timestamp));
            }
            for key in [
                "auid",
                "comm",
                "exe",
                "cmd",
                "cwd",
                "acct",
                "pid",
                "ppid",
                "uid",
                "ses",
                "result",
                "proctitle",
            ] {
                let (Some(w), Some(g)) = (
                    want["data"].get(key),
                    get_field(&e, &format!("auditd.data.{key}")),
                ) else {
                    continue;
                };
                if w != g {
                    problems.push(format!("{key}: {w} vs {g}: {line}"));
                }
            }
        }
    }
    assert!(checked > 50, "{checked}");
    assert!(
        problems.is_empty(),
        "{} problems: {problems:#?}",
        problems.len()
    );
}

/// Per file: lines parsed into a known dataset / total (printed; run with
/// `--nocapture`). Also asserts that every line keeps its message.
#[test]
fn coverage_table() {
    let mut files = vec![
        "loghub/OpenSSH/OpenSSH_2k.log".to_owned(),
        "loghub/Linux/Linux_2k.log".to_owned(),
        "loghub/Apache/Apache_2k.log".to_owned(),
    ];
    for f in [
        "filebeat/module/system/auth/test/test.log",
        "filebeat/module/system/auth/test/timestamp.log",
        "filebeat/module/auditd/log/test/test.log",
        "filebeat/module/auditd/log/test/useradd.log",
        "filebeat/module/auditd/log/test/execve-hex-arg.log",
        "filebeat/module/nginx/access/test/test.log",
        "filebeat/module/apache/access/test/test.log",
    ] {
        files.push(format!("elastic-beats/{f}"));
    }
    let mut tests: Vec<String> = std::fs::read_dir(format!("{DATA}/crowdsec-hub/.tests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    tests.sort();
    for t in tests {
        for entry in std::fs::read_dir(format!("{DATA}/crowdsec-hub/.tests/{t}")).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name.ends_with(".log") {
                files.push(format!("crowdsec-hub/.tests/{t}/{name}"));
            }
        }
    }
    println!("| file | known dataset / lines |\n|---|---|");
    for f in files {
        let ls = lines(&f);
        let mut n_known = 0;
        for l in &ls {
            let e = parse_line(l);
            // The line is kept whole; the message may be empty only when the
            // header took every word (`<ts> host tag` and nothing else).
            assert_eq!(
                e.original.as_deref(),
                Some(l.trim_end_matches(['\r', '\n'])),
                "{f}"
            );
            if known(&e) {
                n_known += 1;
            }
        }
        println!("| {f} | {n_known} / {} |", ls.len());
    }
}

/// Loghub Apache: Apache's own error log, no syslog header. Every line is
/// `web` with the time it gives; the refusals name the client as a failure.
#[test]
fn loghub_apache_error_log() {
    let log = lines("loghub/Apache/Apache_2k.log");
    assert_eq!(log.len(), 2000);
    let mut denied = 0;
    for line in &log {
        let e = parse_line(line);
        assert_eq!(e.dataset.as_deref(), Some("web"), "{line}");
        // `[Sun Dec 04 04:47:44 2005] ...`
        assert_eq!(
            e.timestamp.format("%a %b %d %H:%M:%S %Y").to_string(),
            line[1..25],
            "{line}"
        );
        if line.contains("Directory index forbidden by rule") {
            denied += 1;
            assert_eq!(triple(&e).1, Some("http_access_denied"), "{line}");
            assert_eq!(triple(&e).2, Some("failure"), "{line}");
            assert!(e.source_ip.is_some(), "{line}");
        }
    }
    // SOURCES.md: 32 lines carry `[client IP]` ("Directory index forbidden").
    assert_eq!(denied, 32);
}
