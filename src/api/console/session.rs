//! Console sign-in: the session cookie and CSRF.
//!
//! The cookie holds a random secret (`sms_…`, 256 bits); the store keeps
//! only its digest, with the user's epoch ([`crate::auth::Auth`]). It is
//! `HttpOnly`, `SameSite=Strict`, `Path=/ui`, and `Secure` with the
//! `__Host-` prefix when the API speaks TLS. The API's guard never reads
//! it: GraphQL, ingest and the WebSocket take `Authorization` only, so no
//! other origin can use a signed-in browser against them.
//!
//! Every state-changing request (POST) carries a CSRF token derived from
//! the session's secret (`SHA-256("csrf" ‖ secret)`, nothing stored): in
//! the form field `csrf` or the header `X-CSRF-Token`. It is refused
//! without it, and when the browser says the request comes from another
//! site (`Sec-Fetch-Site`) or another origin (`Origin` against `Host`).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

use super::Console;
use crate::api::guard::Session;
use crate::auth::{Capability, Principal};

/// The cookie's name without TLS, and with it (the `__Host-` prefix: the
/// browser keeps it only if it is `Secure`, `Path=/`-less-or-root and has
/// no `Domain`; we use `Path=/` under TLS for that reason).
const COOKIE: &str = "secmon_session";
const HOST_COOKIE: &str = "__Host-secmon_session";

/// The signed-in analyst of a console request.
pub struct Analyst {
    pub principal: Principal,
    /// The CSRF token of the session, put in every form.
    pub csrf: String,
    pub ip: std::net::IpAddr,
    /// The theme chosen in the console (cookie `secmon_theme`).
    pub theme: Option<&'static str>,
}

impl Analyst {
    /// The capability `C`, when the analyst's role grants it.
    pub fn grant<C: Capability>(&self) -> Result<C, crate::auth::Denied> {
        self.principal.grant::<C>(Some(self.ip))
    }

    /// Whether the role grants `C` (what the page offers).
    pub fn may<C: Capability>(&self) -> bool {
        C::allows(self.principal.role)
    }
}

/// The value of the first cookie named one of `names`.
fn cookie_value<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| names.contains(name))
        .map(|(_, value)| value)
}

/// The session secret in the request's cookies, if any.
pub fn secret(headers: &HeaderMap) -> Option<String> {
    cookie_value(headers, &[COOKIE, HOST_COOKIE])
        .filter(|v| v.len() <= 128)
        .map(str::to_owned)
}

/// The theme the analyst chose, if any.
fn theme(headers: &HeaderMap) -> Option<&'static str> {
    match cookie_value(headers, &["secmon_theme"]) {
        Some("dark") => Some("dark"),
        Some("light") => Some("light"),
        _ => None,
    }
}

pub fn csrf_token(secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"csrf");
    hasher.update(secret.as_bytes());
    format!("{:x}", hasher.finalize())
}

/// `Set-Cookie` for a new session (or, with `None`, one that clears it).
pub fn cookie(tls: bool, secret: Option<&str>) -> HeaderValue {
    let (name, secure) = if tls {
        (HOST_COOKIE, "; Secure")
    } else {
        (COOKIE, "")
    };
    let path = if tls { "/" } else { "/ui" };
    let value = match secret {
        Some(secret) => format!(
            "{name}={secret}; Path={path}; HttpOnly; SameSite=Strict{secure}; Max-Age={}",
            crate::auth::service::CONSOLE_SESSION_TTL.as_secs()
        ),
        None => format!("{name}=; Path={path}; HttpOnly; SameSite=Strict{secure}; Max-Age=0"),
    };
    // Our own name and secret (base64url): always a valid header value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whether a state-changing request may go on: it carries the session's
/// CSRF token (`given`), and the browser does not say it comes from
/// elsewhere.
pub fn check_csrf(headers: &HeaderMap, analyst: &Analyst, given: Option<&str>) -> bool {
    let given = given.or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
    let token_ok =
        given.is_some_and(|g| crate::api::constant_time_eq(g.as_bytes(), analyst.csrf.as_bytes()));
    token_ok && same_origin(headers)
}

/// Whether the browser says a request comes from this origin (or does not
/// say): `Sec-Fetch-Site` and `Origin`. The sign-in form has no session
/// yet, so this is its whole check.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let site_ok = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|site| site == "same-origin" || site == "none");
    let origin_ok = match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
    };
    site_ok && origin_ok
}

/// Where an unsigned request goes: the sign-in page, coming back after.
fn sign_in(parts: &Parts) -> Response {
    let back = parts.uri.path_and_query().map_or("/ui/", |p| p.as_str());
    let back: String = form_urlencoded::byte_serialize(back.as_bytes()).collect();
    Redirect::to(&format!("/ui/login?next={back}")).into_response()
}

impl FromRequestParts<Arc<Console>> for Analyst {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Response> {
        let Some(secret) = secret(&parts.headers) else {
            return Err(sign_in(parts));
        };
        let ip = parts
            .extensions
            .get::<Session>()
            .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |s| s.ip);
        let principal = match console
            .api
            .auth
            .console_principal_async(secret.clone())
            .await
        {
            Ok(principal) => principal,
            Err(crate::auth::AuthError::Unauthenticated(_)) => {
                let mut response = sign_in(parts);
                response
                    .headers_mut()
                    .insert(header::SET_COOKIE, cookie(console.tls, None));
                return Err(response);
            }
            Err(e) => {
                return Err(super::problem(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    &e.to_string(),
                ));
            }
        };
        if let Err(wait) = console
            .api
            .auth
            .requests
            .check_principal(&principal.display_name())
        {
            return Err(super::problem(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "too many requests: try again in {} s",
                    wait.as_secs().max(1)
                ),
            ));
        }
        Ok(Analyst {
            csrf: csrf_token(&secret),
            principal,
            ip,
            theme: theme(&parts.headers),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyst() -> Analyst {
        Analyst {
            principal: Principal {
                name: "ann".into(),
                kind: crate::auth::PrincipalKind::User,
                role: crate::auth::Role::Analyst,
            },
            csrf: csrf_token("sms_secret"),
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            theme: None,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn csrf_needs_the_token_and_the_same_origin() {
        let a = analyst();
        let token = csrf_token("sms_secret");
        let same = headers(&[("host", "node:8000"), ("origin", "https://node:8000")]);
        assert!(check_csrf(&same, &a, Some(&token)));
        assert!(!check_csrf(&same, &a, None), "no token");
        assert!(
            !check_csrf(&same, &a, Some(&csrf_token("sms_other"))),
            "another session's"
        );
        let with_header = headers(&[("host", "node:8000"), ("x-csrf-token", &token)]);
        assert!(check_csrf(&with_header, &a, None));
        let other = headers(&[("host", "node:8000"), ("origin", "https://evil.example")]);
        assert!(!check_csrf(&other, &a, Some(&token)), "another origin");
        let cross = headers(&[("host", "node:8000"), ("sec-fetch-site", "cross-site")]);
        assert!(!check_csrf(&cross, &a, Some(&token)), "another site");
        let same_site = headers(&[("host", "node:8000"), ("sec-fetch-site", "same-site")]);
        assert!(
            !check_csrf(&same_site, &a, Some(&token)),
            "a sibling subdomain"
        );
    }

    #[test]
    fn the_cookie_is_strict_and_secure_under_tls() {
        let plain = cookie(false, Some("sms_x"));
        let plain = plain.to_str().unwrap();
        assert!(plain.starts_with("secmon_session=sms_x; Path=/ui; HttpOnly; SameSite=Strict"));
        assert!(!plain.contains("Secure"));
        let tls = cookie(true, Some("sms_x"));
        let tls = tls.to_str().unwrap();
        assert!(
            tls.starts_with(
                "__Host-secmon_session=sms_x; Path=/; HttpOnly; SameSite=Strict; Secure"
            )
        );
        assert!(cookie(true, None).to_str().unwrap().contains("Max-Age=0"));
        let h = headers(&[("cookie", "a=b; __Host-secmon_session=sms_y; c=d")]);
        assert_eq!(secret(&h).as_deref(), Some("sms_y"));
    }
}
