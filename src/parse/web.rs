//! nginx / apache access logs: common and combined formats, with the
//! variants real servers write (X-Forwarded-For chains before the address,
//! a vhost before it, IPv6, `"-" 408`, an empty request `""`, extra fields
//! after the user agent).
//!
//! Dataset `web`, category `web`, action `http_request`; outcome `success`
//! for status < 400, else `failure`. Fields (ECS names, in `fields`):
//! `http.request.method`, `url.original`, `http.version`,
//! `http.response.status_code`, `http.response.body.bytes`,
//! `http.request.referrer`, `user_agent.original`, and
//! `http.request.forwarded_for` (the addresses before the last one).
//! `source.ip` is the LAST address before the identity fields: the peer the
//! server saw (an X-Forwarded-For entry can be forged by the client);
//! a non-IP there (`monitoring-server`) goes to `fields.source.address`.
//! `user.name` is the authenticated user when not `-`; `@timestamp` the
//! request time.

use chrono::DateTime;
use serde_json::Value;

use super::{classify, parse_ip, set_field};
use crate::model::Event;

/// Parses one access-log line into `event`; true when recognised.
pub fn parse(line: &str, event: &mut Event) -> bool {
    // `<client...> <ident> <user> [<time>] "<request>" <status> <bytes> ...`
    let Some(open) = line.find(" [") else {
        return false;
    };
    let Some(close) = line[open..].find("] \"").map(|i| open + i) else {
        return false;
    };
    let head: Vec<&str> = line[..open].split(' ').filter(|w| !w.is_empty()).collect();
    if head.len() < 2 {
        return false;
    }
    let time = &line[open + 2..close];
    let Ok(ts) = DateTime::parse_from_str(time, "%d/%b/%Y:%H:%M:%S %z") else {
        return false;
    };
    let after = &line[close + 3..];
    let Some((request, rest)) = split_request(after) else {
        return false;
    };
    let mut words = rest.split(' ').filter(|w| !w.is_empty());
    let Some(status) = words.next().and_then(|s| s.parse::<u16>().ok()) else {
        return false;
    };
    let bytes = words.next().and_then(|b| b.parse::<u64>().ok());

    // Usually `<ident> <user>`; some formats log only `<user>`.
    let (clients, ident_user) = head.split_at(head.len() - 2.min(head.len() - 1));
    let user = ident_user[ident_user.len() - 1];
    let addrs: Vec<&str> = clients
        .iter()
        .flat_map(|w| w.split(','))
        .map(|w| w.trim_matches(['"', ' ']))
        .filter(|w| !w.is_empty() && *w != "-")
        .collect();
    if let Some((last, before)) = addrs.split_last() {
        match parse_ip(last) {
            Some(ip) => event.source_ip = Some(ip),
            None => set_field(event, "source.address", Value::from(*last)),
        }
        let forwarded: Vec<Value> = before
            .iter()
            .filter(|a| parse_ip(a).is_some())
            .map(|a| Value::from(*a))
            .collect();
        if !forwarded.is_empty() {
            set_field(event, "http.request.forwarded_for", Value::Array(forwarded));
        }
    }
    if user != "-" {
        event.user_name = Some(user.to_owned());
    }
    event.timestamp = ts.to_utc();

    let mut parts = request.split(' ');
    if let (Some(method), Some(url)) = (parts.next(), parts.next())
        && !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase())
    {
        set_field(event, "http.request.method", Value::from(method));
        set_field(event, "url.original", Value::from(url));
        if let Some(version) = parts.next().and_then(|v| v.strip_prefix("HTTP/")) {
            set_field(event, "http.version", Value::from(version));
        }
    } else if !request.is_empty() && request != "-" {
        set_field(event, "http.request.raw", Value::from(request));
    }
    set_field(event, "http.response.status_code", Value::from(status));
    if let Some(b) = bytes {
        set_field(event, "http.response.body.bytes", Value::from(b));
    }
    let rest = words.collect::<Vec<_>>().join(" ");
    let mut quoted = quoted_strings(&rest);
    if let Some(referrer) = quoted.next().filter(|r| *r != "-") {
        set_field(event, "http.request.referrer", Value::from(referrer));
    }
    if let Some(agent) = quoted.next().filter(|a| *a != "-") {
        set_field(event, "user_agent.original", Value::from(agent));
    }
    let outcome = if status < 400 { "success" } else { "failure" };
    classify(event, "web", "web", "http_request", outcome);
    true
}

/// `request" 200 ...` -> (`request`, ` 200 ...`): the closing quote is the one
/// followed by a space and a 3-digit status (requests may contain quotes).
fn split_request(s: &str) -> Option<(&str, &str)> {
    let mut from = 0;
    while let Some(i) = s[from..].find("\" ") {
        let end = from + i;
        let rest = &s[end + 2..];
        let status = rest.as_bytes().get(..3)?;
        if status.iter().all(u8::is_ascii_digit)
            && rest.as_bytes().get(3).is_none_or(|b| *b == b' ')
        {
            return Some((&s[..end], rest));
        }
        from = end + 1;
    }
    None
}

/// The `"..."` strings of `s`, in order (backslash escapes skipped over).
fn quoted_strings(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        let start = rest.find('"')? + 1;
        let bytes = rest.as_bytes();
        let mut i = start;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        let end = i.min(rest.len());
        let out = rest.get(start..end)?;
        rest = rest.get(end + 1..).unwrap_or("");
        Some(out)
    })
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
    fn combined_with_forwarded_for() {
        let e = p(
            r#""10.5.102.222, 199.96.1.1, 204.246.1.1" 10.2.1.185 - - [22/Jan/2016:13:18:29 +0000] "GET /assets/xxxx?q=100 HTTP/1.1" 200 25507 "-" "Amazon CloudFront""#,
        );
        assert_eq!(e.source_ip, "10.2.1.185".parse().ok());
        assert_eq!(
            e.fields["http"]["request"]["forwarded_for"][0],
            "10.5.102.222"
        );
        assert_eq!(e.fields["url"]["original"], "/assets/xxxx?q=100");
        assert_eq!(e.fields["http"]["response"]["status_code"], 200);
        assert_eq!(e.fields["user_agent"]["original"], "Amazon CloudFront");
        assert_eq!(e.outcome.as_deref(), Some("success"));
    }

    #[test]
    fn odd_requests() {
        let e = p(r#"::1 - - [26/Dec/2016:16:16:48 +0200] "-" 408 -"#);
        assert_eq!(e.source_ip, "::1".parse().ok());
        assert_eq!(e.fields["http"]["response"]["status_code"], 408);
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        let e = p(r#"127.0.0.1 - - [12/Apr/2018:09:48:40 +0200] "" 400 0 "-" "-""#);
        assert!(e.fields.get("user_agent").is_none());
        let e = p(
            r#"1.2.3.4 - bob [29/Jul/2023:10:26:06 -0700] "GET /a"b HTTP/1.1" 404 1 "-" "x \"y\"""#,
        );
        assert_eq!(e.user_name.as_deref(), Some("bob"));
        assert_eq!(e.fields["user_agent"]["original"], r#"x \"y\""#);
        assert!(!parse("hello [world] \"x\" 200", &mut Event::default()));
    }
}
