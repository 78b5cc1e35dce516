//! What an unauthenticated or untrusted client controls on the API: the
//! `Authorization` header, the credential in it (API key, JWT), and the
//! live-tail filter of a subscription. None may panic; a parsed filter must
//! evaluate on any event.

#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use secmon::api::graphql::TailFilter;
use secmon::api::guard::credential_of;
use secmon::auth::token::{Jwt, parse_api_key};
use secmon::model::Event;

static JWT: LazyLock<Jwt> =
    LazyLock::new(|| Jwt::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(900)));

static EVENT: LazyLock<Event> = LazyLock::new(|| {
    Event::from_json(
        serde_json::json!({
            "message": "Failed password for root from 10.0.0.5 port 22 ssh2",
            "host": {"name": "web-1"}, "source": {"ip": "10.0.0.5"},
            "labels": {"env": "prod"}, "x": {"y": [1, "two", {"z": true}]},
        }),
        chrono::Utc::now(),
    )
    .unwrap_or_default()
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(filter) = TailFilter::parse(text) {
        let _ = filter.matches(&EVENT);
    }
    let _ = parse_api_key(text);
    let _ = JWT.verify(text);
    let _ = credential_of(text);
});
