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

/// Keys whose `key=value` values are masked wherever they appear.
const SECRET_KEYS: [&str; 10] = [
    "password",
    "passwd",
    "pwd",
    "pass",
    "token",
    "access_token",
    "secret",
    "api_key",
    "apikey",
    "signature",
];

/// `text` with every URL (`scheme://…`) reduced to its scheme and host
/// (`https://hooks.slack.com/…`): no user, password, path or query. Also
/// masks `password=…`, `token=…` and similar pairs as `password=***`.
pub fn redact(text: &str) -> String {
    mask_pairs(&strip_urls(text))
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
        let after = &rest[at + 3..];
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
        if host.len() < url.len() {
            out.push_str(ELIDED);
        }
        out.push_str(trailer);
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn mask_pairs(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while let Some(eq) = lower[i..].find('=').map(|p| p + i) {
        i = eq + 1;
        let key_start = lower[..eq]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .last()
            .map_or(eq, |(p, _)| p);
        let key = &lower[key_start..eq];
        if !SECRET_KEYS.contains(&key) {
            continue;
        }
        let value_end = text[i..]
            .find(|c: char| c.is_whitespace() || matches!(c, '&' | ';' | ',' | '"' | '\'' | ')'))
            .map_or(text.len(), |p| p + i);
        if value_end == i {
            continue;
        }
        out.push_str(&text[copied..i]);
        out.push_str("***");
        copied = value_end;
        i = value_end;
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
        assert_eq!(redact("mypassword=x"), "mypassword=x", "whole keys only");
        assert_eq!(redact("password= empty"), "password= empty");
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
