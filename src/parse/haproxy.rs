//! HAProxy's HTTP and TCP logs (`log-format` defaults of `option httplog`
//! and `option tcplog`): `IP:port [date] frontend backend/server
//! Tq/Tw/Tc/Tr/Tt status bytes ... "request"`.
//!
//! Dataset `web`, action `http_request` (category `web`), or `http_auth`
//! (category `authentication`, outcome `failure`) for a 401 or 407: a
//! refused login, by HAProxy's own `http-request auth` (server `<NOSRV>`)
//! or by the application behind it. Other statuses are `success` below
//! 400, else `unknown`: HAProxy relays an application's 403 or 404, which
//! says nothing about the client by itself. TCP lines are
//! `tcp_connection`, outcome `unknown`. Fields: `source.ip`,
//! `source.port`, `http.response.status_code`, `http.request.method`,
//! `url.original`, `haproxy.frontend`, `haproxy.backend`,
//! `haproxy.server`, `haproxy.termination_state`.

use serde_json::Value;

use super::{classify, parse_ip, set_field};
use crate::model::Event;

/// Parses one HAProxy log message into `event`; true when recognised.
pub fn parse(msg: &str, event: &mut Event) -> bool {
    let mut words = msg.trim().split(' ').filter(|w| !w.is_empty());
    let Some((ip, port)) = words.next().and_then(|w| w.rsplit_once(':')) else {
        return false;
    };
    let Some(ip) = parse_ip(ip) else {
        return false;
    };
    if !words.next().is_some_and(|w| w.starts_with('[')) {
        return false;
    }
    let (Some(frontend), Some(backend), Some(timers)) = (words.next(), words.next(), words.next())
    else {
        return false;
    };
    event.source_ip = Some(ip);
    if let Ok(port) = port.parse::<u16>() {
        event.source_port = Some(port);
    }
    set_field(event, "haproxy.frontend", Value::from(frontend));
    if let Some((backend, server)) = backend.split_once('/') {
        set_field(event, "haproxy.backend", Value::from(backend));
        set_field(event, "haproxy.server", Value::from(server));
    }
    if timers.split('/').count() != 5 {
        classify(event, "web", "network", "tcp_connection", "unknown");
        return true;
    }
    let Some(status) = words.next().and_then(|s| s.parse::<u16>().ok()) else {
        return false;
    };
    set_field(event, "http.response.status_code", Value::from(status));
    // `bytes cookie_req cookie_resp termination_state ...`
    if let Some(state) = words.nth(3) {
        set_field(event, "haproxy.termination_state", Value::from(state));
    }
    if let Some(request) = msg
        .split_once(" \"")
        .map(|(_, r)| r.trim_end().trim_end_matches('"'))
    {
        let mut parts = request.split(' ');
        if let (Some(method), Some(url)) = (parts.next(), parts.next()) {
            set_field(event, "http.request.method", Value::from(method));
            set_field(event, "url.original", Value::from(url));
        }
    }
    match status {
        401 | 407 => classify(event, "web", "authentication", "http_auth", "failure"),
        s if s < 400 => classify(event, "web", "web", "http_request", "success"),
        _ => classify(event, "web", "web", "http_request", "unknown"),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_logins_and_relayed_statuses() {
        let mut e = Event::default();
        assert!(parse(
            r#"2001:db8::1234:58430 [14/Nov/2015:22:45:11.608] main main/<NOSRV> -1/-1/-1/-1/0 401 248 - - PR-- 0/0/0/0/0 0/0 "GET / HTTP/1.1""#,
            &mut e
        ));
        assert_eq!(e.source_ip, "2001:db8::1234".parse().ok());
        assert_eq!(e.outcome.as_deref(), Some("failure"));
        let mut e = Event::default();
        assert!(parse(
            r#"192.168.33.1:58444 [14/Nov/2015:22:45:25.439] main app/app1 1939/0/1/0/1940 403 5168 - - ---- 3/3/0/0/0 0/0 "GET / HTTP/1.1""#,
            &mut e
        ));
        assert_eq!(e.outcome.as_deref(), Some("unknown"));
        assert_eq!(
            super::super::get_field(&e, "url.original"),
            Some(&Value::from("/"))
        );
    }
}
