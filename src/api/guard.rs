//! Authentication and rate limits in front of the API, WebSocket and
//! metrics routers.
//!
//! [`authenticate`] runs on every request: it refuses an address over its
//! rate (429 + `Retry-After`), resolves the credential to a [`Principal`]
//! (a credential that does not check out is 401 at once), refuses a
//! principal over its rate, and leaves a [`Session`] in the request
//! extensions. A request without credentials goes on as anonymous: GraphQL
//! answers it only `login` and `refresh`, every other route refuses it
//! (see [`require`]).
//!
//! Credentials: `Authorization: Bearer <access token | API key>`; for log
//! shippers that speak Elasticsearch, also `ApiKey <key>` or
//! `ApiKey base64(id:<key>)`, and `Basic base64(<any>:<API key>)`. Basic
//! never takes a password: that would put argon2 on every request.
//!
//! The client address ([`Session::ip`], what rate limits, lockouts, the
//! audit log and alert histories see) is the TCP peer's, unless the peer is
//! one of `auth.trusted_proxies`: then it is taken from the header those
//! proxies write ([`client_ip`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::auth::{Auth, AuthError, Capability, Principal};
use crate::config::{Cidr, ForwardedHeader};
use crate::telemetry::metric;

/// Who is calling, as the middleware established it.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Option<Principal>,
    pub ip: IpAddr,
}

#[derive(Clone)]
pub struct Guard {
    pub auth: Arc<Auth>,
    /// For metrics labels: `api`, `websocket`, `metrics`.
    pub server: &'static str,
}

/// The credential of an `Authorization` header, in any accepted form.
pub fn credential(headers: &HeaderMap) -> Option<String> {
    credential_of(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// The credential of an `Authorization` header's value.
pub fn credential_of(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(rest.to_owned()),
        "apikey" if rest.starts_with(crate::auth::token::API_KEY_PREFIX) => Some(rest.to_owned()),
        "apikey" => {
            let decoded = String::from_utf8(STANDARD.decode(rest).ok()?).ok()?;
            let (_, key) = decoded.split_once(':')?;
            Some(key.to_owned())
        }
        "basic" => {
            let decoded = String::from_utf8(STANDARD.decode(rest).ok()?).ok()?;
            let (_, key) = decoded.split_once(':')?;
            key.starts_with(crate::auth::token::API_KEY_PREFIX)
                .then(|| key.to_owned())
        }
        _ => None,
    }
}

/// The middleware: rate limits, credential, [`Session`] (see the module docs).
pub async fn authenticate(
    State(guard): State<Guard>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let (trusted, header) = guard.auth.trusted_proxies();
    let ip = client_ip(peer.ip(), req.headers(), trusted, header);
    if let Err(wait) = guard.auth.requests.check_ip(ip) {
        return too_many(guard.server, "ip", wait);
    }
    let principal = match req.headers().get(header::AUTHORIZATION) {
        None => None,
        Some(_) => {
            let resolved = match credential(req.headers()) {
                Some(credential) => guard.auth.authenticate_async(credential).await,
                None => Err(AuthError::Unauthenticated(
                    "the Authorization header is not `Bearer <token or API key>`".into(),
                )),
            };
            match resolved {
                Ok(principal) => Some(principal),
                Err(e) => return refused(guard.server, &e),
            }
        }
    };
    if let Some(p) = &principal
        && let Err(wait) = guard.auth.requests.check_principal(&p.display_name())
    {
        return too_many(guard.server, "principal", wait);
    }
    req.extensions_mut().insert(Session { principal, ip });
    next.run(req).await
}

/// Header lines of the forwarding header read (the last ones).
const MAX_FORWARDED_LINES: usize = 16;
/// Longest forwarding header line read; a longer one is not believed.
const MAX_FORWARDED_LEN: usize = 2048;
/// Hops read from the right of the forwarding chain.
const MAX_FORWARDED_HOPS: usize = 32;

/// The client's address. `peer` (the TCP peer) unless it is in `trusted`:
/// then the forwarding chain of `header` (every line, in order) is walked
/// from the right, past the addresses that are themselves trusted
/// proxies, and the first one that is not is the client. A chain of only
/// trusted proxies gives its leftmost address. An element that is not an
/// address (`unknown`, an obfuscated name, garbage), a line longer than
/// 2 KiB, or a walk past 32 hops or 16 lines stops the walk at the last
/// trusted address seen (the proxy that forwarded it): a client behind a
/// trusted proxy can only ever name an address for itself, never move a
/// limit onto someone else's address by a malformed header.
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[Cidr],
    header: ForwardedHeader,
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    let name = match header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    if !is_trusted(peer) {
        if headers.contains_key(name) {
            ::metrics::counter!(metric::FORWARDED_IGNORED, "reason" => "untrusted_peer")
                .increment(1);
        }
        return peer;
    }
    let mut client = peer;
    let mut hops = 0;
    for (index, line) in headers.get_all(name).iter().rev().enumerate() {
        let Some(text) = line
            .to_str()
            .ok()
            .filter(|t| t.len() <= MAX_FORWARDED_LEN && index < MAX_FORWARDED_LINES)
        else {
            return malformed(client);
        };
        let elements = match header {
            ForwardedHeader::XForwardedFor => text.split(',').map(str::to_owned).collect(),
            ForwardedHeader::Forwarded => forwarded_for(text),
        };
        for element in elements.iter().rev() {
            hops += 1;
            let Some(ip) = (hops <= MAX_FORWARDED_HOPS)
                .then(|| node_address(element))
                .flatten()
            else {
                return malformed(client);
            };
            if !is_trusted(ip) {
                return ip;
            }
            client = ip;
        }
    }
    client
}

fn malformed(client: IpAddr) -> IpAddr {
    ::metrics::counter!(metric::FORWARDED_IGNORED, "reason" => "malformed").increment(1);
    client
}

/// The `for=` value of each element of one `Forwarded` line (RFC 7239:
/// elements split by commas, pairs by semicolons, values maybe quoted); an
/// element without `for=` gives an empty value (not an address).
fn forwarded_for(line: &str) -> Vec<String> {
    let mut elements = Vec::new();
    let mut current = String::new();
    let mut pair = String::new();
    let mut quoted = false;
    let mut escaped = false;
    let finish_pair = |pair: &mut String, current: &mut String| {
        if let Some((key, value)) = pair.split_once('=')
            && key.trim().eq_ignore_ascii_case("for")
        {
            *current = value.trim().to_owned();
        }
        pair.clear();
    };
    for c in line.chars() {
        match c {
            _ if escaped => {
                escaped = false;
                pair.push(c);
            }
            '\\' if quoted => escaped = true,
            '"' => {
                quoted = !quoted;
                pair.push(c);
            }
            ';' if !quoted => finish_pair(&mut pair, &mut current),
            ',' if !quoted => {
                finish_pair(&mut pair, &mut current);
                elements.push(std::mem::take(&mut current));
            }
            c => pair.push(c),
        }
    }
    finish_pair(&mut pair, &mut current);
    elements.push(current);
    elements
}

/// An address in a forwarding header: `192.0.2.1`, `192.0.2.1:8080`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:8080`, maybe quoted.
fn node_address(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    let node = node
        .strip_prefix('"')
        .and_then(|n| n.strip_suffix('"'))
        .unwrap_or(node);
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| p.parse::<u16>().is_ok());
        return port_ok.then(|| inside.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6))?;
    }
    let (addr, port) = node.split_once(':')?;
    port.parse::<u16>().ok()?;
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Route layer: the caller must hold `C` (401 without credentials, 403
/// when the role lacks it).
pub async fn require<C: Capability>(req: Request, next: Next) -> Response {
    let caller = req.extensions().get::<Session>();
    match caller.and_then(|c| c.principal.as_ref()) {
        None => refused(
            "api",
            &AuthError::Unauthenticated("authentication required".into()),
        ),
        Some(p) => match p.grant::<C>(None) {
            Ok(_) => next.run(req).await,
            Err(denied) => error(StatusCode::FORBIDDEN, "FORBIDDEN", &denied.to_string()),
        },
    }
}

/// Caps a request body at `max` bytes: 413 at once when it says it is
/// longer, an error for the handler when it turns out longer. (The GraphQL
/// extractor reads bodies whole, with no limit of its own.)
pub async fn limit_body(max: usize, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            &format!("a request body has at most {max} bytes"),
        );
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::Body::new(http_body_util::Limited::new(body, max));
    next.run(Request::from_parts(parts, body)).await
}

/// The JSON error body every guard refusal has, shaped like a GraphQL
/// error so GraphQL clients read it too.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, axum::Json(body)).into_response()
}

fn refused(server: &'static str, e: &AuthError) -> Response {
    ::metrics::counter!(metric::UNAUTHENTICATED, "server" => server).increment(1);
    let (status, code) = match e {
        AuthError::Store(_) | AuthError::Internal(_) => {
            tracing::error!(error = %e, "authentication failed");
            (StatusCode::SERVICE_UNAVAILABLE, "INTERNAL")
        }
        _ => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
    };
    let mut response = error(status, code, &e.to_string());
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// 429 with `Retry-After` in whole seconds (at least 1).
pub fn too_many(server: &'static str, limit: &'static str, wait: Duration) -> Response {
    ::metrics::counter!(metric::RATE_LIMITED, "server" => server, "limit" => limit).increment(1);
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        &format!("too many requests: retry in {} s", secs.max(1)),
    );
    if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn credentials_come_in_the_forms_shippers_send() {
        let key = "smk_01abc_secret";
        assert_eq!(
            credential(&headers("Bearer abc.def.ghi")).unwrap(),
            "abc.def.ghi"
        );
        assert_eq!(credential(&headers(&format!("ApiKey {key}"))).unwrap(), key);
        let encoded = STANDARD.encode(format!("01abc:{key}"));
        assert_eq!(
            credential(&headers(&format!("ApiKey {encoded}"))).unwrap(),
            key
        );
        let basic = STANDARD.encode(format!("filebeat:{key}"));
        assert_eq!(
            credential(&headers(&format!("Basic {basic}"))).unwrap(),
            key
        );
        let password = STANDARD.encode("admin:hunter2hunter2");
        assert_eq!(credential(&headers(&format!("Basic {password}"))), None);
        assert_eq!(credential(&headers("Digest x")), None);
    }

    fn forwarded(name: &str, lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(line).unwrap(),
            );
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<Cidr> {
        list.iter()
            .map(|n| Cidr::try_from((*n).to_owned()).unwrap())
            .collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let xff = ForwardedHeader::XForwardedFor;
        let proxies = nets(&["10.0.0.0/8", "fd00::/8"]);
        let spoofed = forwarded("x-forwarded-for", &["1.2.3.4"]);
        // From an untrusted peer, or with no proxies configured: the peer.
        assert_eq!(
            client_ip(ip("203.0.113.9"), &spoofed, &proxies, xff),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &spoofed, &[], xff),
            ip("10.0.0.1")
        );
        // From a trusted proxy: the rightmost address that is not a proxy.
        let chain = forwarded("x-forwarded-for", &["6.6.6.6, 198.51.100.7", "10.1.1.1"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &chain, &proxies, xff),
            ip("198.51.100.7"),
            "a client-supplied address left of the real one is ignored"
        );
        // No header: the proxy itself.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &proxies, xff),
            ip("10.0.0.1")
        );
        // Only proxies: the leftmost.
        let inner = forwarded("x-forwarded-for", &["10.2.2.2, 10.3.3.3"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &inner, &proxies, xff),
            ip("10.2.2.2")
        );
        // Ports and brackets as proxies write them.
        for (value, expected) in [
            ("198.51.100.7:4711", "198.51.100.7"),
            ("[2001:db8::7]:4711", "2001:db8::7"),
            ("2001:db8::7", "2001:db8::7"),
            (" 198.51.100.7 ", "198.51.100.7"),
        ] {
            let h = forwarded("x-forwarded-for", &[value]);
            assert_eq!(
                client_ip(ip("fd00::1"), &h, &proxies, xff),
                ip(expected),
                "{value}"
            );
        }
        // The other header is never read.
        let other = forwarded("forwarded", &["for=1.2.3.4"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &other, &proxies, xff),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn rfc_7239_forwarded_for_is_parsed() {
        let fwd = ForwardedHeader::Forwarded;
        let proxies = nets(&["10.0.0.0/8"]);
        for (lines, expected) in [
            (
                vec!["for=192.0.2.60;proto=http;by=203.0.113.43"],
                "192.0.2.60",
            ),
            (
                vec!["For=\"[2001:db8:cafe::17]:4711\""],
                "2001:db8:cafe::17",
            ),
            (vec!["for=192.0.2.43, for=198.51.100.17"], "198.51.100.17"),
            (
                vec!["for=192.0.2.43", "for=10.9.9.9;by=10.0.0.1"],
                "192.0.2.43",
            ),
            (
                vec!["proto=https;for=\"198.51.100.1:80\";host=\"a,b\""],
                "198.51.100.1",
            ),
        ] {
            let h = forwarded("forwarded", &lines);
            assert_eq!(
                client_ip(ip("10.0.0.1"), &h, &proxies, fwd),
                ip(expected),
                "{lines:?}"
            );
        }
    }

    #[test]
    fn hostile_forwarding_headers_fall_back_to_the_last_trusted_hop() {
        let xff = ForwardedHeader::XForwardedFor;
        let fwd = ForwardedHeader::Forwarded;
        let proxies = nets(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        let long = format!("{}198.51.100.7", "1.1.1.1, ".repeat(400));
        let many_hops = vec!["10.4.4.4"; 40].join(",");
        let cases: Vec<(ForwardedHeader, Vec<String>, &str)> = vec![
            (xff, vec!["unknown".into()], "10.0.0.1"),
            (xff, vec!["".into()], "10.0.0.1"),
            (xff, vec!["198.51.100.7, garbage".into()], "10.0.0.1"),
            (
                xff,
                vec!["198.51.100.7, 10.5.5.5, _hidden".into()],
                "10.0.0.1",
            ),
            (
                xff,
                vec!["198.51.100.7, nonsense, 10.5.5.5".into()],
                "10.5.5.5",
            ),
            (xff, vec!["300.1.1.1".into()], "10.0.0.1"),
            (xff, vec!["1.2.3.4:99999".into()], "10.0.0.1"),
            (xff, vec!["[::1".into()], "10.0.0.1"),
            (xff, vec![long], "10.0.0.1"),
            (xff, vec![many_hops], "10.4.4.4"),
            (xff, vec!["10.6.6.6".into(); 20], "10.6.6.6"),
            (fwd, vec!["for=unknown".into()], "10.0.0.1"),
            (fwd, vec!["for=_gazonk".into()], "10.0.0.1"),
            (fwd, vec!["by=1.2.3.4".into()], "10.0.0.1"),
            (fwd, vec!["for=\"1.2.3.4".into()], "10.0.0.1"),
            (fwd, vec![";;;,,,===\"\\".into()], "10.0.0.1"),
        ];
        for (kind, lines, expected) in cases {
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            let name = match kind {
                ForwardedHeader::XForwardedFor => "x-forwarded-for",
                ForwardedHeader::Forwarded => "forwarded",
            };
            let h = forwarded(name, &refs);
            assert_eq!(
                client_ip(peer, &h, &proxies, kind),
                ip(expected),
                "{name}: {lines:?}"
            );
        }
        // Not visible ASCII (obs-text): the header is not believed.
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"198.51.100.7\xff").unwrap(),
        );
        assert_eq!(client_ip(peer, &h, &proxies, xff), peer);
    }
}
