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
    let ip = peer.ip();
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
}
