//! The fuzz corpora as regression tests: every input kept in
//! `fuzz/corpus/<target>/` (the seeds and what the fuzzers found worth
//! keeping) is replayed through its target's body in `fuzz/src/`, the same
//! function the libFuzzer binary runs (see README.md, "Fuzzing").
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz;

fn replay(target: &str) {
    let (_, body) = fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no fuzz target {target}"));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} holds no input", dir.display());
    for input in inputs {
        let data = std::fs::read(&input).unwrap();
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(outcome.is_ok(), "{} fails its target", input.display());
    }
}

macro_rules! corpus {
    ($($target:ident),* $(,)?) => {
        $(
            #[test]
            fn $target() {
                replay(stringify!($target));
            }
        )*

        #[test]
        fn every_target_has_its_test() {
            let tested = [$(stringify!($target)),*];
            for (name, _) in fuzz::TARGETS {
                assert!(tested.contains(name), "fuzz target {name} has no corpus test");
            }
        }
    };
}

corpus!(
    sshd,
    dropbear,
    ftp,
    mail,
    dns,
    web_error,
    haproxy,
    squid,
    openvpn,
    kernel,
    pam,
    sudo,
    su,
    auditd,
    firewall,
    web,
    cron,
    systemd,
    accounts,
    parse,
    gelf,
    proxy_header,
    journald,
    prefilter,
    api_input,
    graphql,
    search_query,
    cursor,
);
