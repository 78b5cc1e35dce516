//! The bodies of the fuzz targets, shared by the libFuzzer binaries in
//! `fuzz_targets/` and by the corpus regression test of the main crate
//! (`tests/fuzz_corpus.rs` replays `fuzz/corpus/<target>/*` through these
//! same functions on every CI run).
//!
//! Each function takes the fuzzer's bytes and panics on a finding: a
//! parser that panics, a differential mismatch, or an API answer that is
//! `INTERNAL` (a caught panic), a 5xx, or no answer at all.

pub mod api;
pub mod parsers;

/// A target's body: the fuzzer's bytes in, a panic on a finding.
pub type Target = fn(&[u8]);

/// Every target: its name (the folder of its corpus) and its body.
pub const TARGETS: &[(&str, Target)] = &[
    ("sshd", parsers::sshd),
    ("dropbear", parsers::dropbear),
    ("ftp", parsers::ftp),
    ("mail", parsers::mail),
    ("dns", parsers::dns),
    ("web_error", parsers::web_error),
    ("haproxy", parsers::haproxy),
    ("squid", parsers::squid),
    ("openvpn", parsers::openvpn),
    ("kernel", parsers::kernel),
    ("pam", parsers::pam),
    ("sudo", parsers::sudo),
    ("su", parsers::su),
    ("auditd", parsers::auditd),
    ("firewall", parsers::firewall),
    ("web", parsers::web),
    ("cron", parsers::cron),
    ("systemd", parsers::systemd),
    ("accounts", parsers::accounts),
    ("parse", parsers::parse),
    ("gelf", parsers::gelf),
    ("proxy_header", parsers::proxy_header),
    ("journald", parsers::journald),
    ("prefilter", parsers::prefilter),
    ("api_input", parsers::api_input),
    ("graphql", api::graphql),
    ("search_query", api::search_query),
    ("cursor", api::cursor),
];
