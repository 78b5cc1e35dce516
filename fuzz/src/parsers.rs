//! The parsers and what an untrusted client controls outside GraphQL:
//! none may panic on any input.

use std::sync::LazyLock;
use std::time::Duration;

use rsigma_eval::{Engine, EvaluationResult};
use secmon::api::graphql::TailFilter;
use secmon::api::guard::credential_of;
use secmon::auth::token::{Jwt, parse_api_key};
use secmon::detect::adapter::SigmaEvent;
use secmon::detect::prefilter::{self, Prefiltered};
use secmon::detect::rules::{self, FieldMapping, Source};
use secmon::ingest::gelf::Chunks;
use secmon::ingest::proxy;
use secmon::model::Event;
use secmon::parse::{ParseOptions, RawRecord};

fn opts() -> ParseOptions {
    ParseOptions {
        max_message_bytes: 1024,
        year_hint: None,
    }
}

fn epoch() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(0, 0).unwrap_or_default()
}

/// A program parser on the text of `data`.
macro_rules! program {
    ($name:ident, |$text:ident, $event:ident| $call:expr) => {
        pub fn $name(data: &[u8]) {
            let $text = String::from_utf8_lossy(data);
            let mut $event = Event::default();
            let _ = $call;
        }
    };
}

program!(sshd, |t, e| secmon::parse::sshd::parse(&t, &mut e));
program!(dropbear, |t, e| secmon::parse::dropbear::parse(&t, &mut e));
program!(ftp, |t, e| secmon::parse::ftp::parse(
    ["vsftpd", "proftpd", "pure-ftpd"][t.len() % 3],
    &t,
    &mut e
));
program!(pam, |t, e| secmon::parse::pam::parse(&t, &mut e));
program!(sudo, |t, e| secmon::parse::sudo::parse(&t, &mut e));
program!(su, |t, e| secmon::parse::su::parse(&t, &mut e));
program!(auditd, |t, e| secmon::parse::auditd::parse(&t, &mut e));
program!(firewall, |t, e| secmon::parse::firewall::parse(&t, &mut e));
program!(web, |t, e| secmon::parse::web::parse(&t, &mut e));
program!(cron, |t, e| secmon::parse::cron::parse(&t, &mut e));
program!(systemd, |t, e| secmon::parse::systemd::parse(&t, &mut e));
program!(mail, |t, e| secmon::parse::mail::parse(
    ["postfix/smtpd", "dovecot", "exim"][t.len() % 3],
    &t,
    &mut e
));
program!(dns, |t, e| secmon::parse::dns::parse(&t, &mut e));
program!(web_error, |t, e| secmon::parse::web_error::parse(
    &t, &mut e
));
program!(haproxy, |t, e| secmon::parse::haproxy::parse(&t, &mut e));
program!(squid, |t, e| secmon::parse::squid::parse(&t, &mut e));
program!(openvpn, |t, e| secmon::parse::openvpn::parse(&t, &mut e));
program!(kernel, |t, e| secmon::parse::kernel::parse(&t, &mut e));
program!(accounts, |t, e| secmon::parse::accounts::parse(
    "usermod", &t, &mut e
));

/// A whole record through the syslog header and the program parsers.
pub fn parse(data: &[u8]) {
    let raw = RawRecord {
        bytes: data.to_vec(),
        source: "fuzz",
        peer: None,
        received_at: epoch(),
    };
    let event = secmon::parse::parse(&raw, &opts());
    assert!(event.original.is_some());
}

/// Datagrams (split at 0xff) through chunk reassembly and decompression,
/// then the GELF parser.
pub fn gelf(data: &[u8]) {
    let mut chunks = Chunks::default();
    for datagram in data.split(|b| *b == 0xff) {
        if let Ok(Some(payload)) = chunks.datagram(datagram) {
            let event = secmon::parse::gelf::parse(&payload, None, epoch(), &opts());
            assert!(event.original.is_some());
        }
    }
}

/// The start of a connection from a load balancer: the PROXY protocol
/// header reader stops exactly at the header's end, and what it read parses
/// to the same sender on its own.
pub fn proxy_header(data: &[u8]) {
    static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    });
    let _ = proxy::parse_v1(data);
    let _ = proxy::parse_v2(data);
    let mut rest = data;
    if let Ok(sender) = RT.block_on(proxy::read_header(&mut rest)) {
        let header = &data[..data.len() - rest.len()];
        assert!(
            header.len() <= 16 + proxy::MAX_V2_BODY,
            "read past the bound"
        );
        let alone = if header.starts_with(b"PROXY ") {
            proxy::parse_v1(header)
        } else {
            proxy::parse_v2(header)
        };
        assert_eq!(
            alone,
            Ok(sender),
            "the header read is not the header parsed"
        );
    }
}

/// A journal entry (`journalctl -o json`) through the journald parser.
pub fn journald(data: &[u8]) {
    if let Ok(entry) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(data) {
        let event = secmon::parse::journald::parse(&entry, epoch(), &opts());
        assert!(event.original.is_some());
    }
}

static JWT: LazyLock<Jwt> = LazyLock::new(|| {
    Jwt::new(
        b"0123456789abcdef0123456789abcdef",
        Duration::from_secs(900),
    )
});

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

/// The `Authorization` header, the credential in it (API key, JWT), and
/// the live-tail filter of a subscription: a parsed filter must evaluate
/// on any event.
pub fn api_input(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(filter) = TailFilter::parse(text) {
        let _ = filter.matches(&EVENT);
    }
    let _ = parse_api_key(text);
    let _ = JWT.verify(text);
    let _ = credential_of(text);
}

/// Keyword and field rules with wildcards, mixed case and non-ASCII
/// literals, next to the built-in pack.
const RULES: &str = r#"
title: k1
id: 00000000-0000-4000-8000-000000000001
logsource: {product: linux}
detection:
    keywords: ['ab*CD', 'straße', 'K?lvin', 'İx']
    condition: keywords
---
title: k2
id: 00000000-0000-4000-8000-000000000002
logsource: {product: linux}
detection:
    sel:
        process.command_line|contains|all: ['-e', 'Sh']
    filter:
        user.name: 'root'
    condition: sel and not filter
---
title: k3
id: 00000000-0000-4000-8000-000000000003
logsource: {product: linux}
detection:
    a:
        message|startswith: 'ÄÖ'
    b:
        user.name|endswith: 'min'
    condition: 1 of them
---
title: k4
id: 00000000-0000-4000-8000-000000000004
logsource: {product: linux}
detection:
    sel:
        message|contains|cased: 'CaSe'
        user.name: '*x*'
    condition: sel
"#;

struct Rules {
    every: Engine,
    always: Engine,
    prefiltered: Prefiltered,
}

// Per thread: a `Prefiltered` keeps what the parsers' constants met in a
// `RefCell`.
thread_local! {
    static ENGINES: Rules = engines();
}

#[allow(clippy::unwrap_used)]
fn engines() -> Rules {
    let mut sources = rules::builtin();
    sources.push(Source {
        name: "fuzz.yml".into(),
        text: RULES.into(),
    });
    let mapping = FieldMapping::shipped(&Default::default()).unwrap();
    let pipeline = mapping.pipeline(&Default::default()).unwrap();
    let set = rules::load(&sources, &mapping, &pipeline);
    assert!(set.rejected.is_empty(), "{:?}", set.rejected);
    let mut every = Engine::new();
    assert!(
        every
            .add_rules(set.rules.iter().map(|l| &l.rule))
            .is_empty()
    );
    let mut always = Engine::new();
    let mut with = Vec::new();
    for l in &set.rules {
        match prefilter::needles(&l.rule) {
            Some(n) => with.push((rsigma_eval::compile_rule(&l.rule).unwrap(), n)),
            None => always.add_rule(&l.rule).unwrap(),
        }
    }
    Rules {
        every,
        always,
        prefiltered: Prefiltered::new(with).unwrap(),
    }
}

fn ids(results: Vec<EvaluationResult>) -> Vec<String> {
    let mut ids: Vec<String> = results.into_iter().map(|r| r.header.rule_title).collect();
    ids.sort();
    ids
}

/// Differential: the literal prefilter (plus the always-evaluated rules)
/// finds exactly what evaluating every rule finds, on arbitrary text
/// (message, command line and user name, split at 0xff).
pub fn prefilter(data: &[u8]) {
    let mut parts = data.split(|&b| b == 0xff);
    let mut next = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let event = Event {
        message: next(),
        process_command_line: Some(next()),
        user_name: Some(next()),
        dataset: Some("sshd".into()),
        ..Event::default()
    };
    ENGINES.with(|r| {
        let expected = ids(r.every.evaluate(&SigmaEvent(&event)));
        let mut results = r.always.evaluate(&SigmaEvent(&event));
        r.prefiltered
            .evaluate(&event, &mut prefilter::Scratch::default(), &mut results);
        assert_eq!(ids(results), expected, "{event:?}");
    });
}
