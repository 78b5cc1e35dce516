//! Error text that leaves the node (logs, `/ready`, GraphQL `lastError`,
//! audit entries) never carries a credential. Slack and Teams webhook URLs
//! ARE credentials (the token is the path), an Alertmanager, SMTP, Redis or
//! Postgres URL may hold `user:pass@`, and HTTP clients put the URL they
//! called into their errors (reqwest's `Display` and `Debug` both do).
//!
//! [`http_error`] is how a reqwest error is turned into text anywhere in
//! the crate (notifications, response webhooks, Vault); [`redact`] is the
//! net under every other client's error text (lettre, redis, postgres).

/// What a URL is reduced to after its host: the path, query and fragment
/// are gone.
const ELIDED: &str = "/…";

/// Keys whose values are masked wherever they appear: a key matches when
/// it ends with one of these (ASCII case-insensitive), so `db_password`,
/// `PGPASSWORD`, `client_secret`, `x-api-key` and `access_token` all do.
/// Some harmless keys match too (`monkey`, `hotkey`): a masked value that
/// was no secret is not a bug, a shown secret is.
const SECRET_SUFFIXES: [&str; 14] = [
    "password",
    "passwd",
    "secret",
    "token",
    "key",
    "apikey",
    "api-key",
    "auth",
    "authorization",
    "sig",
    "signature",
    "credential",
    "credentials",
    "pwd",
];

/// Keys masked only as a whole (as a suffix, `pass` would match `bypass`).
const SECRET_KEYS: [&str; 1] = ["pass"];

/// Authorization schemes: the credential is the word after them.
const SCHEMES: [&str; 5] = ["bearer", "basic", "token", "digest", "negotiate"];

/// `text` with every URL (`scheme://…`) reduced to its scheme and host
/// (`https://hooks.slack.com/…`): no user, password, path or query (a URL
/// escaped for JSON, `https:\/\/…`, too). Also masks the values of
/// secret-looking keys, as `password=***`, `"password":"***"` or
/// `password: ***`.
pub fn redact(text: &str) -> String {
    mask_pairs(&strip_urls(&text.replace("\\/", "/")))
}

/// A reqwest error as text: its kind and causes, without the URL it was
/// for, redacted.
pub fn http_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        ""
    };
    let chain = redact(&crate::error_chain(&e));
    if what.is_empty() || chain.contains(what) {
        chain
    } else {
        format!("{what}: {chain}")
    }
}

/// Bytes that end a URL in running text.
fn ends_url(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`' | '|' | '\\')
}

fn strip_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme: letters, digits, `+ - .`, starting with a letter.
        let before = &rest[..at];
        let scheme_len = before
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .map(char::len_utf8)
            .sum::<usize>();
        let scheme = &before[before.len() - scheme_len..];
        let scheme = scheme.trim_start_matches(|c: char| !c.is_ascii_alphabetic());
        out.push_str(&before[..before.len() - scheme.len()]);
        let mut after = &rest[at + 3..];
        // A `user:pass@` may hold any character that would end a URL in
        // running text (`"`, `<`, `|`, `\`, ...): everything up to the last
        // `@` before the next whitespace goes, whatever it holds.
        let word = after.find(char::is_whitespace).unwrap_or(after.len());
        let userinfo = after[..word].rfind('@').is_some_and(|p| {
            after = &after[p + 1..];
            true
        });
        let end = after.find(ends_url).unwrap_or(after.len());
        let mut url = &after[..end];
        // Punctuation closing the sentence or a parenthesis is not the URL's.
        let trimmed = url.trim_end_matches([')', ']', '}', '.', ',', ';', ':']);
        let trailer = &url[trimmed.len()..];
        url = trimmed;
        // Whatever precedes the last `@` may be a user and password (even
        // one holding a `/`): never shown.
        let host_part = url.rsplit_once('@').map_or(url, |(_, h)| h);
        let host = host_part.split(['/', '?', '#']).next().unwrap_or_default();
        if scheme.is_empty() {
            out.push_str("://");
        } else {
            out.push_str(scheme);
            out.push_str("://");
        }
        out.push_str(host);
        if userinfo || host.len() < url.len() {
            out.push_str(ELIDED);
        }
        out.push_str(trailer);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && (SECRET_KEYS.contains(&key) || SECRET_SUFFIXES.iter().any(|s| key.ends_with(s)))
}

/// Blanks between a key, its separator and its value: ASCII whitespace
/// other than a newline (which ends a `key: value` line).
fn is_blank(b: u8) -> bool {
    b.is_ascii_whitespace() && b != b'\n'
}

/// The key ending just before the separator at `sep`: blanks and one
/// closing quote (`"`, `'`, or JSON-escaped `\"`) may stand between.
fn key_before(lower: &[u8], sep: usize) -> (usize, usize) {
    let mut end = sep;
    while end > 0 && is_blank(lower[end - 1]) {
        end -= 1;
    }
    if end > 0 && matches!(lower[end - 1], b'"' | b'\'') {
        end -= 1;
        if end > 0 && lower[end - 1] == b'\\' {
            end -= 1;
        }
    }
    let mut start = end;
    while start > 0 && is_key_byte(lower[start - 1]) {
        start -= 1;
    }
    (start, end)
}

/// Where the value after the separator at `sep` starts and ends (the
/// part to mask: inside its quotes when quoted), or `None` when it is
/// empty.
fn value_after(text: &str, sep: usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut start = sep + 1;
    while start < bytes.len() && is_blank(bytes[start]) {
        start += 1;
    }
    // An opening quote, possibly JSON-escaped: the value ends at its match.
    let quote = match bytes.get(start..) {
        Some([b'\\', q @ (b'"' | b'\''), ..]) => Some((2, [b'\\', *q])),
        Some([q @ (b'"' | b'\''), ..]) => Some((1, [*q, 0])),
        _ => None,
    };
    if let Some((len, q)) = quote {
        start += len;
        let end = closing_quote(bytes, start, len == 2, q[len - 1]);
        return (end > start).then_some((start, end));
    }
    let word_end = |from: usize| {
        text[from..]
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '&' | ';' | ',' | '"' | '\'' | ')' | '}' | ']')
            })
            .map_or(text.len(), |p| p + from)
    };
    let mut end = word_end(start);
    if end == start {
        return None;
    }
    // `Authorization: Bearer abc`: the credential is the next word.
    if SCHEMES.contains(&text[start..end].to_ascii_lowercase().as_str())
        && bytes.get(end).is_some_and(|b| is_blank(*b))
    {
        let next = word_end(end + 1);
        if next > end + 1 {
            end = next;
        }
    }
    Some((start, end))
}

/// Where the quoted value starting at `from` ends: at its closing quote
/// `q` (`\q` when `escaped`, the value being inside a JSON string), past
/// every backslash escape (`\q` inside `"…"`, `\\\q` inside `\"…\"`), or
/// at the end of the text when it has none.
fn closing_quote(bytes: &[u8], from: usize, escaped: bool, q: u8) -> usize {
    let mut i = from;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'\\', Some(&b'\\')) if escaped => {
                // An escape inside the JSON string: `\\` then the escaped
                // character, itself escaped (`\q`, `\\`) or plain (`n`).
                i += 2;
                i += if bytes.get(i) == Some(&b'\\') { 2 } else { 1 };
            }
            (b'\\', Some(&c)) if escaped && c == q => return i,
            (b'\\', Some(_)) if !escaped => i += 2,
            (c, _) if c == q && !escaped => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn mask_pairs(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let lower = lower.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while let Some(sep) = lower[i..]
        .iter()
        .position(|b| matches!(b, b'=' | b':'))
        .map(|p| p + i)
    {
        i = sep + 1;
        let (key_start, key_end) = key_before(lower, sep);
        if key_start < copied {
            continue;
        }
        let key = std::str::from_utf8(&lower[key_start..key_end]).unwrap_or_default();
        if !is_secret_key(key) {
            continue;
        }
        let Some((start, end)) = value_after(text, sep) else {
            continue;
        };
        out.push_str(&text[copied..start]);
        out.push_str("***");
        copied = end;
        i = end;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_only_scheme_and_host() {
        for (input, expected) in [
            (
                "error sending request for url (https://hooks.slack.com/services/T0/B0/XyZsecret)",
                "error sending request for url (https://hooks.slack.com/…)",
            ),
            (
                "POST http://admin:hunter2@am.example:9093/api/v2/alerts: refused",
                "POST http://am.example:9093/…: refused",
            ),
            (
                "redis://:p/ss@cache:6379/0 is down",
                "redis://cache:6379/… is down",
            ),
            (
                "see <https://evil/reset|reset>",
                "see <https://evil/…|reset>",
            ),
            ("https://plain.example", "https://plain.example"),
            ("no url here: a:b", "no url here: a:b"),
            ("odd ://x/y", "odd ://x/…"),
            (
                "smtps://alerts:p%40ss@mail.example:465, then smtp://mail.example/x.",
                "smtps://mail.example:465/…, then smtp://mail.example/….",
            ),
        ] {
            assert_eq!(redact(input), expected, "{input}");
        }
    }

    #[test]
    fn secret_pairs_are_masked() {
        assert_eq!(
            redact("host=db user=secmon password=hunter2 sslmode=require"),
            "host=db user=secmon password=*** sslmode=require"
        );
        assert_eq!(redact("TOKEN=abc&x=1"), "TOKEN=***&x=1");
        assert_eq!(redact("password=&x=1"), "password=&x=1", "nothing to mask");
        assert_eq!(redact("password="), "password=");
    }

    #[test]
    fn keys_ending_in_a_secret_word_are_masked() {
        for (input, expected) in [
            ("db_password=hunter2 x=1", "db_password=*** x=1"),
            ("PGPASSWORD=hunter2", "PGPASSWORD=***"),
            ("client_secret=abc&grant=x", "client_secret=***&grant=x"),
            ("x-api-key=abc", "x-api-key=***"),
            ("X-Api-Key: abc", "X-Api-Key: ***"),
            ("refresh_token=r1;", "refresh_token=***;"),
            (
                "spring.datasource.passwd = p4ss",
                "spring.datasource.passwd = ***",
            ),
            ("aws_sig=0a1b", "aws_sig=***"),
            ("X-Amz-Signature=0a1b", "X-Amz-Signature=***"),
            ("credentials=u:p", "credentials=***"),
            ("proxy_auth=abc", "proxy_auth=***"),
            ("pwd=x", "pwd=***"),
            ("pass=x bypass=y", "pass=*** bypass=y"),
            (
                "Authorization: Bearer eyJhbGci.x.y next",
                "Authorization: *** next",
            ),
            ("authorization: Basic dXNlcjpwYXNz", "authorization: ***"),
            ("user=secmon host=db", "user=secmon host=db"),
        ] {
            assert_eq!(redact(input), expected, "{input}");
        }
    }

    #[test]
    fn json_and_yaml_forms_are_masked() {
        for (input, expected) in [
            (
                r#"{"user":"a","password":"hunter2","ok":false}"#,
                r#"{"user":"a","password":"***","ok":false}"#,
            ),
            (
                r#"{"client_secret" : "s3cr3t with spaces"}"#,
                r#"{"client_secret" : "***"}"#,
            ),
            (r#"{'apiKey': 'abc'}"#, r#"{'apiKey': '***'}"#),
            ("password: hunter2\nuser: x", "password: ***\nuser: x"),
            ("token:abc", "token:***"),
            (r#"{\"password\":\"hunter2\"}"#, r#"{\"password\":\"***\"}"#),
            (r#"{"token": 12345}"#, r#"{"token": ***}"#),
            (r#"{"password":""}"#, r#"{"password":""}"#),
            (r#"{"password":"unterminated"#, r#"{"password":"***"#),
        ] {
            assert_eq!(redact(input), expected, "{input}");
        }
    }

    #[test]
    fn tabs_and_other_blanks_around_the_separator_are_skipped() {
        for (input, expected) in [
            ("password:\thunter2", "password:\t***"),
            ("password\t=\t hunter2 x", "password\t=\t *** x"),
            ("password :\r hunter2", "password :\r ***"),
            (
                "Authorization:\tBearer\tabc next",
                "Authorization:\t*** next",
            ),
            // A newline ends the line: the next line is not the value.
            ("password:\nuser: x", "password:\nuser: x"),
        ] {
            assert_eq!(redact(input), expected, "{input:?}");
        }
    }

    #[test]
    fn escaped_quotes_do_not_end_a_quoted_value() {
        for (input, expected) in [
            (r#"{"password":"ab\"cd"}"#, r#"{"password":"***"}"#),
            (
                r#"{"password":"ab\\","x":1}"#,
                r#"{"password":"***","x":1}"#,
            ),
            (r#"{'password':'it\'s'}"#, r#"{'password':'***'}"#),
            (
                r#"{\"password\":\"ab\\\"cd\"}"#,
                r#"{\"password\":\"***\"}"#,
            ),
            (
                r#"{\"password\":\"ab\\\\\",\"x\":1}"#,
                r#"{\"password\":\"***\",\"x\":1}"#,
            ),
        ] {
            let out = redact(input);
            assert_eq!(out, expected, "{input}");
            assert!(!out.contains("cd") && !out.contains("ab"), "{out}");
        }
    }

    #[test]
    fn a_password_with_url_ending_characters_is_dropped_whole() {
        for (input, expected) in [
            (
                r#"GET http://admin:p"ss<x>|y@am.example:9093/api failed"#,
                "GET http://am.example:9093/… failed",
            ),
            (
                "redis://:pa'ss`w\\rd@cache:6379 down",
                "redis://cache:6379/… down",
            ),
            ("http://u:a@b@host/x", "http://host/…"),
            ("http://u:p>w@host", "http://host/…"),
        ] {
            let out = redact(input);
            assert_eq!(out, expected, "{input}");
        }
    }

    #[test]
    fn json_escaped_urls_are_stripped() {
        assert_eq!(
            redact(r#"{"error":"POST https:\/\/user:pass@am.example\/api\/v2 failed"}"#),
            r#"{"error":"POST https://am.example/… failed"}"#
        );
        assert_eq!(
            redact(r#"{"url":"https:\/\/hooks.slack.com\/services\/T0\/B0\/XyZ"}"#),
            r#"{"url":"https://hooks.slack.com/…"}"#
        );
    }

    #[test]
    fn multibyte_text_is_kept() {
        assert_eq!(
            redact("ünïcode – https://h/ä?ö=1 ü"),
            "ünïcode – https://h/… ü"
        );
        assert_eq!(redact("pässword=x ünd"), "pässword=x ünd");
    }

    #[tokio::test]
    async fn a_reqwest_error_names_no_url() {
        // A port nothing listens on: a connect error for a URL with a secret path.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let tls = crate::tls::client_config(None).unwrap();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap();
        let e = client
            .post(format!(
                "http://user:pw@127.0.0.1:{port}/services/T/B/S3CR3T"
            ))
            .send()
            .await
            .unwrap_err();
        assert!(format!("{e}").contains("S3CR3T"), "reqwest itself names it");
        let text = http_error(e);
        assert!(!text.contains("S3CR3T") && !text.contains("pw"), "{text}");
        assert!(text.starts_with("cannot connect"), "{text}");
    }
}
