//! Apache httpd and nginx error logs: refused HTTP authentication, denied
//! access, broken TLS handshakes. Apache (`modules/aaa/mod_auth_*.c`,
//! `mod_authz_*.c`, `modules/ssl/ssl_engine_kernel.c`) writes
//! `[module:level] [pid N] [client IP:port] AHnnnnn: text` (2.2: `[level]
//! [client IP] text`); nginx (`ngx_http_auth_basic_module.c`,
//! `ngx_http_access_module.c`) writes `[level] pid#tid: *cid text, client:
//! IP, server: NAME, request: "..."`. Both come as their own log files
//! (after a date) or through syslog.
//!
//! Dataset `web`:
//!
//! | action | category | outcome | text |
//! |---|---|---|---|
//! | `http_auth` | authentication | failure | Apache `user X not found`, `user X: authentication failure for "/p": Password Mismatch`, `Digest: user X: password mismatch`, `client used wrong authentication scheme`, digest `realm mismatch` / `unknown algorithm` / `invalid qop` / stale or forged nonces; nginx `user "X" was not found in "F"`, `user "X": password mismatch`, `PAM: user 'X' - not authenticated` |
//! | `http_access_denied` | web | failure | Apache `client denied by server configuration`, `Authorization of user X ... failed`, `user X: authorization failure`, `Directory index forbidden by rule`; nginx `access forbidden by rule`, `directory index of ... is forbidden` |
//! | `http_rate_limited` | web | failure (nginx) / unknown (Apache mod_evasive) | nginx `limiting requests, excess: ...`, `delaying request`, `limiting connections by zone`; mod_evasive's denials |
//! | `http_tls_error` | network | failure | Apache SNI mismatches (AH02031-AH02033); nginx `SSL_do_handshake() failed` |
//! | `http_not_found` | web | failure | Apache `File does not exist`, `script not found or unable to stat`, `Primary script unknown`; nginx `open() "..." failed (2: ...)`, `"..." is not found`: a failed request, as a 404 is in an access log |
//! | `http_bad_request` | web | failure | Apache `Invalid URI in request`, `Invalid method in request`, `invalid URI path`, `request failed: URI too long` |
//! | `http_waf_block` | web | failure | `ModSecurity: Access denied with code N` |
//! | `http_exploit_attempt` | web | failure | bash refusing a function definition in a CGI variable (Shellshock) |
//!
//! Any other error-log line keeps dataset `web` with action
//! `unrecognised`. The client is Apache's `[client X]` / `[remote X]` field,
//! nginx's `, client: X, server: ` (the first one followed by nginx's own
//! fields up to the end of the line: a user name or request line cannot
//! forge it); the text a client controls (a path, a user name) is read
//! after the server's fixed words, never searched for them.

use serde_json::Value;

use super::{UNRECOGNISED, classify, parse_ip, set_field};
use crate::model::Event;

/// Parses one error-log line (or syslog message) into `event`; false when
/// it does not have an error log's shape.
pub fn parse(msg: &str, event: &mut Event) -> bool {
    let m = skip_own_date(msg.trim());
    let Some(rest) = m.strip_prefix('[') else {
        return false;
    };
    let Some((level, rest)) = rest.split_once("] ") else {
        return false;
    };
    let (module, level) = level.rsplit_once(':').unwrap_or(("", level));
    if !LEVELS.contains(&level) {
        return false;
    }
    set_field(event, "log.level", Value::from(level));
    if rest.starts_with('[') {
        apache(module, rest, event);
        return true;
    }
    // nginx: `pid#tid: *cid text`.
    match rest.split_once(": ") {
        Some((ids, text)) if is_nginx_ids(ids) => nginx(text, event),
        // An Erlang process (`<0.22741.1>@module:...`, ejabberd) is no web
        // server.
        _ if rest.starts_with('<') => return false,
        _ => apache(module, rest, event),
    }
    true
}

/// nginx's `pid#tid`.
fn is_nginx_ids(ids: &str) -> bool {
    ids.split_once('#').is_some_and(|(pid, tid)| {
        !pid.is_empty()
            && !tid.is_empty()
            && pid.bytes().chain(tid.bytes()).all(|b| b.is_ascii_digit())
    })
}

const LEVELS: [&str; 8] = [
    "emerg", "alert", "crit", "error", "warn", "notice", "info", "debug",
];

/// nginx's `2012/04/09 11:53:29 ` (a syslog message holds it; a file line
/// has lost it to the header parser), and what a journal puts before it.
fn skip_own_date(m: &str) -> &str {
    if m.starts_with('[') {
        return m;
    }
    match m.find(" [") {
        Some(i) if i <= 64 && m[..i].ends_with(|c: char| c.is_ascii_digit()) => &m[i + 1..],
        _ => m,
    }
}

/// `[pid N] [client IP:port] AHnnnnn: text` (each bracket optional).
fn apache(module: &str, mut rest: &str, event: &mut Event) {
    while let Some((field, after)) = bracketed(rest) {
        if let Some(addr) = field
            .strip_prefix("client ")
            .or_else(|| field.strip_prefix("remote "))
        {
            set_client(addr, event);
        }
        rest = after;
    }
    let text = skip_ah_code(rest);
    let text = text.strip_prefix("Digest: ").unwrap_or(text);
    let (action, outcome) = apache_kind(module, text, event);
    finish(event, action, outcome);
}

/// `[field] rest`, brackets nested (`[client [2001:db8::1]:51548]`).
fn bracketed(s: &str) -> Option<(&str, &str)> {
    if !s.starts_with('[') {
        return None;
    }
    let mut depth = 0usize;
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some((&s[1..i], s[i + 1..].trim_start()));
                }
            }
            _ => {}
        }
    }
    None
}

/// `IP`, `IP:port`, `[IPv6]:port` or a bare IPv6 address.
fn set_client(addr: &str, event: &mut Event) {
    let ip = parse_ip(addr)
        .or_else(|| {
            let inner = addr.strip_prefix('[')?;
            parse_ip(inner.split_once(']')?.0)
        })
        .or_else(|| parse_ip(addr.rsplit_once(':')?.0));
    if let Some(ip) = ip {
        event.source_ip = Some(ip);
    }
}

/// `AH01617: text` -> `text`, the code in `error.code`.
fn skip_ah_code(text: &str) -> &str {
    match text.split_once(": ") {
        Some((code, rest))
            if code.len() == 7
                && code.starts_with("AH")
                && code[2..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            rest
        }
        _ => text,
    }
}

fn apache_kind(module: &str, text: &str, event: &mut Event) -> (&'static str, &'static str) {
    if text.starts_with("client denied by server configuration") {
        // mod_evasive's own denials are rate limiting, not a refused login.
        if module.starts_with("evasive") {
            return ("http_rate_limited", "unknown");
        }
        return ("http_access_denied", "failure");
    }
    if let Some(rest) = text.strip_prefix("user ") {
        // `user X not found[: path]`, `user X: authentication failure for
        // "p": why`, `user X: password mismatch: p`, `user X: authorization
        // failure for "p"`, `user `X' in realm `R' not found: p`.
        let (user, verdict) = if let Some(quoted) = rest.strip_prefix('`') {
            match quoted.split_once("' in realm `") {
                Some((user, after)) => (user, after.split_once("' ").map_or("", |(_, v)| v)),
                None => return ("http_error", "unknown"),
            }
        } else if let Some((user, verdict)) = rest.rsplit_once(": authentication failure for ") {
            (
                user,
                if verdict.is_empty() {
                    ""
                } else {
                    "authentication failure"
                },
            )
        } else if let Some((user, _)) = rest.rsplit_once(": authorization failure for ") {
            set_user(event, user);
            return ("http_access_denied", "failure");
        } else if let Some((user, _)) = rest.rsplit_once(": password mismatch") {
            (user, "password mismatch")
        } else if let Some(i) = rest.rfind(" not found") {
            (&rest[..i], "not found")
        } else {
            return ("http_error", "unknown");
        };
        if verdict.is_empty() {
            return ("http_error", "unknown");
        }
        set_user(event, user);
        return ("http_auth", "failure");
    }
    if let Some(rest) = text.strip_prefix("Authorization of user ") {
        if let Some(user) = rest.split(" to access ").next() {
            set_user(event, user);
        }
        return ("http_access_denied", "failure");
    }
    const DIGEST_ABUSE: [&str; 4] = [
        "client used wrong authentication scheme",
        "invalid qop ",
        "realm mismatch",
        "unknown algorithm ",
    ];
    if DIGEST_ABUSE.iter().any(|p| text.starts_with(p)) {
        return ("http_auth", "failure");
    }
    if let Some(rest) = text.strip_prefix("invalid nonce ") {
        // A malformed or replayed nonce is forged; a nonce whose hash does
        // not match is what a client with an old page sends.
        if rest.ends_with("user attempted time travel") || rest.contains("received - length is not")
        {
            return ("http_auth", "failure");
        }
        return ("http_auth", "unknown");
    }
    if text.starts_with("Directory index forbidden by rule") {
        return ("http_access_denied", "failure");
    }
    if text.contains("provided via SNI") {
        return ("http_tls_error", "failure");
    }
    // What scanners look for and do not find: failed requests, as a 404
    // is in an access log.
    if text.starts_with("File does not exist")
        || text.contains("script not found or unable to stat")
        || (text.starts_with("script '") && text.ends_with("' not found or unable to stat"))
        || text.starts_with("Got error 'Primary script unknown")
    {
        return ("http_not_found", "failure");
    }
    const MALFORMED: [&str; 4] = [
        "Invalid URI in request",
        "Invalid method in request",
        "invalid URI path",
        "request failed: ",
    ];
    if MALFORMED.iter().any(|p| text.starts_with(p)) {
        return ("http_bad_request", "failure");
    }
    if text.starts_with("ModSecurity: ") && text.contains("Access denied with code") {
        return ("http_waf_block", "failure");
    }
    // bash refusing a function definition in a CGI environment variable:
    // Shellshock (CVE-2014-6271) attempts.
    if text.starts_with("/bin/bash: ") && text.contains("function definition") {
        return ("http_exploit_attempt", "failure");
    }
    (UNRECOGNISED, "")
}

/// nginx: `*cid text, client: IP, server: ...`.
fn nginx(text: &str, event: &mut Event) {
    let text = match text.strip_prefix('*') {
        Some(r) => r.split_once(' ').map_or("", |(_, t)| t),
        None => text,
    };
    let kind_text = match client_context(text) {
        Some((before, ip)) => {
            event.source_ip = parse_ip(ip);
            before
        }
        None => text,
    };
    let (action, outcome) = nginx_kind(kind_text, event);
    finish(event, action, outcome);
}

/// How many `, client: ` candidates are checked: each check reads the rest
/// of the line, so a line of forged ones would cost its length squared. A
/// real line has one, and one forged before it in a user name.
const MAX_CLIENT_CANDIDATES: usize = 4;

/// The first `, client: IP` followed by nginx's own fields, each in its
/// shape, up to the end of the line: the text before it and the address.
/// None after [`MAX_CLIENT_CANDIDATES`] forged ones.
fn client_context(text: &str) -> Option<(&str, &str)> {
    let mut from = 0;
    for _ in 0..MAX_CLIENT_CANDIDATES {
        let i = from + text[from..].find(", client: ")?;
        let after = &text[i + ", client: ".len()..];
        let (ip, tail) = after.split_once(", ").unwrap_or((after, ""));
        if parse_ip(ip).is_some() && well_formed_context(tail) {
            return Some((&text[..i], ip));
        }
        from = i + 1;
    }
    None
}

/// `server: NAME[, KEY: "VALUE"]...` to the end of the line.
fn well_formed_context(tail: &str) -> bool {
    let Some(rest) = tail.strip_prefix("server: ") else {
        return tail.is_empty();
    };
    let mut rest = match rest.split_once(", ") {
        Some((name, r)) if !name.contains(' ') => r,
        None => return !rest.contains(' '),
        _ => return false,
    };
    while !rest.is_empty() {
        let Some((key, value)) = rest.split_once(": \"") else {
            return false;
        };
        if !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return false;
        }
        let Some(end) = value.find('"') else {
            return false;
        };
        rest = &value[end + 1..];
        rest = match rest.strip_prefix(", ") {
            Some(r) => r,
            None if rest.is_empty() => rest,
            None => return false,
        };
    }
    true
}

fn nginx_kind(text: &str, event: &mut Event) -> (&'static str, &'static str) {
    if let Some(rest) = text.strip_prefix("user \"") {
        // `" was not found in "` (nginx 1.x) or `": was not found in "`.
        if let Some((user, _)) = rest
            .rsplit_once("\" was not found in \"")
            .or_else(|| rest.rsplit_once("\": was not found in \""))
        {
            set_user(event, user);
            return ("http_auth", "failure");
        }
        if let Some(user) = rest.strip_suffix("\": password mismatch") {
            set_user(event, user);
            return ("http_auth", "failure");
        }
        return ("http_error", "unknown");
    }
    if let Some(rest) = text.strip_prefix("PAM: user '")
        && let Some((user, _)) = rest.rsplit_once("' - not authenticated")
    {
        set_user(event, user);
        return ("http_auth", "failure");
    }
    if text.starts_with("access forbidden by rule") || text.starts_with("directory index of ") {
        return ("http_access_denied", "failure");
    }
    if text.starts_with("limiting requests, excess")
        || text.starts_with("delaying request, excess")
        || text.starts_with("limiting connections by zone")
    {
        return ("http_rate_limited", "failure");
    }
    if text.starts_with("SSL_do_handshake() failed") {
        return ("http_tls_error", "failure");
    }
    if (text.starts_with("open() ") && text.contains(" failed (2: "))
        || (text.starts_with('"') && text.contains("\" is not found (2: "))
    {
        return ("http_not_found", "failure");
    }
    (UNRECOGNISED, "")
}

fn set_user(event: &mut Event, user: &str) {
    let user = user.trim();
    if !user.is_empty() {
        event.user_name = Some(user.to_owned());
    }
}

fn finish(event: &mut Event, action: &'static str, outcome: &'static str) {
    let category = match action {
        "http_auth" => "authentication",
        "http_tls_error" => "network",
        _ => "web",
    };
    classify(event, "web", category, action, outcome);
    if outcome.is_empty() {
        event.outcome = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> Event {
        let mut e = Event::default();
        assert!(parse(line, &mut e), "not an error log line: {line}");
        e
    }

    #[test]
    fn apache_fields_before_the_text_only() {
        let e = run(
            "[error] [client 192.168.33.1] File does not exist: /srv/http/site/[client 192.168.0.1] user root not found",
        );
        assert_eq!(e.source_ip, "192.168.33.1".parse().ok());
        assert_eq!(e.action.as_deref(), Some("http_not_found"));
        let e = run(
            "[authz_owner:error] [pid 17540:tid 1] [client [2001:db8::80da:af6b:8b2c]:51548] AH01637: Authorization of user test-ipv6 to access /x failed, reason: y",
        );
        assert_eq!(e.source_ip, "2001:db8::80da:af6b:8b2c".parse().ok());
        assert_eq!(e.action.as_deref(), Some("http_access_denied"));
        assert_eq!(e.user_name.as_deref(), Some("test-ipv6"));
    }

    #[test]
    fn nginx_client_is_the_one_followed_by_nginx_fields() {
        let e = run(
            r#"[error] 30708#0: *3 user "test": password mismatch, client: 127.0.0.1, server: test, request: "GET / HTTP/1.1", host: "localhost:8443"": was not found in "/etc/nginx/.htpasswd", client: 192.0.2.2, server: , request: "GET / HTTP/1.1", host: "localhost:8443""#,
        );
        assert_eq!(e.source_ip, "192.0.2.2".parse().ok());
        assert_eq!(e.action.as_deref(), Some("http_auth"));
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        // A line of forged contexts: a few are checked, then no client.
        let forged = r#", client: 6.6.6.6, server: x, host: "a"x"#.repeat(2000);
        let e = run(&format!(
            r#"[error] 1#0: *3 user "{forged}": password mismatch, client: 192.0.2.2, server: s"#
        ));
        assert_eq!(e.source_ip, None);
        let e = run("[notice] 1#1: signal process started");
        assert_eq!(e.action.as_deref(), Some(UNRECOGNISED));
        assert_eq!(e.outcome, None);
    }
}
