//! Credentials under attack (issue 17, items 3 and 4), against the real
//! binary:
//! - 200 wrong passwords for one user at once: at most the lockout's free
//!   failures plus one are checked (hashed) at all, the rest are refused
//!   before hashing; the user is locked, from everywhere; another user
//!   still logs in from another address; the refusals are sampled into the
//!   audit log, not written one by one;
//! - a flood of logins for unknown names from many addresses: argon2 runs
//!   at most `auth.max_concurrent_hashes` at once, the rest are answered
//!   `RATE_LIMITED`, and memory stays bounded;
//! - 200 refreshes with tokens nobody was issued, at once from one
//!   address: at most the address's free failures plus one are looked up
//!   and audited, the rest are refused before the lookup and sampled into
//!   the audit log; a user elsewhere still logs in and refreshes;
//! - `X-Forwarded-For` from a peer outside `auth.trusted_proxies` is
//!   ignored, from a trusted proxy it names the client: the audit log and
//!   the address lockout see the client, so a lockout of one client behind
//!   the proxy leaves the others alone; hostile header values change
//!   nothing.
//!
//! Each client binds its own loopback address (127.0.0.0/8 is all local),
//! so "another address" is real.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::common::daemon::{self, Daemon};
use crate::{assert_serving, rss_kib};

/// What the node may use at most through these tests, in MiB.
const MAX_RSS_MIB: u64 = 512;
const PASSWORD: &str = "a-long-enough-password";
const LOGIN: &str =
    "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken } }";

/// A client whose connections come from `local` (a loopback address).
fn client_from(local: &str) -> reqwest::Client {
    secmon::install_crypto_provider();
    reqwest::Client::builder()
        .local_address(local.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// `config/config.yaml` in the daemon's directory (read as `./config`).
fn write_config(dir: &Path, yaml: &str) {
    std::fs::create_dir_all(dir.join("config")).unwrap();
    std::fs::write(dir.join("config/config.yaml"), yaml).unwrap();
}

/// A login's answer: `Ok(())` or the error code.
async fn login(
    daemon: &Daemon,
    http: &reqwest::Client,
    user: &str,
    password: &str,
    headers: &[(&str, &str)],
) -> Result<(), String> {
    login_at(&daemon.api, http, user, password, headers).await
}

/// `n` logins at once: `(client index, user, password)` for each `i`.
async fn flood(
    daemon: &Daemon,
    clients: &[reqwest::Client],
    n: usize,
    attempt: impl Fn(usize) -> (usize, String, String),
) -> Vec<Result<(), String>> {
    let mut set = JoinSet::new();
    for i in 0..n {
        let (client, user, password) = attempt(i);
        let (api, http) = (daemon.api.clone(), clients[client].clone());
        set.spawn(async move { login_at(&api, &http, &user, &password, &[]).await });
    }
    set.join_all().await
}

async fn login_at(
    api: &str,
    http: &reqwest::Client,
    user: &str,
    password: &str,
    headers: &[(&str, &str)],
) -> Result<(), String> {
    let mut req = http
        .post(format!("{api}/graphql"))
        .json(&json!({"query": LOGIN, "variables": {"u": user, "p": password}}));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = req.send().await.unwrap();
    let status = response.status();
    let v: Value = response.json().await.unwrap();
    if v["data"]["login"]["accessToken"].is_string() {
        return Ok(());
    }
    let code = v["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code in {status} {v}"))
        .to_owned();
    Err(code)
}

async fn create_user(daemon: &Daemon, admin: &reqwest::Client, name: &str) {
    daemon
        .graphql(
            admin,
            "mutation($u: String!, $p: String!) { createUser(username: $u, password: $p, role: VIEWER) { username } }",
            json!({"u": name, "p": PASSWORD}),
        )
        .await;
}

/// The newest audit entries (up to 500): (action, actor, sourceIp, after).
async fn audit(daemon: &Daemon) -> Vec<(String, String, String, Value)> {
    daemon
        .audit_log(500)
        .await
        .iter()
        .map(|n| {
            (
                n["action"].as_str().unwrap_or_default().to_owned(),
                n["actor"].as_str().unwrap_or_default().to_owned(),
                n["sourceIp"].as_str().unwrap_or_default().to_owned(),
                n["after"].clone(),
            )
        })
        .collect()
}

async fn metrics(daemon: &Daemon) -> String {
    let key = daemon::admin_key(daemon.dir());
    reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/metrics",
            daemon.ports["metrics"]
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the first series of `metric` whose labels contain `labels`.
fn series(text: &str, metric: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(metric) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_guesses_are_held_to_the_lockout() {
    secmon::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path()).await;
    let admin = crate::common::bearer_client(&daemon::admin_key(dir.path()));
    create_user(&daemon, &admin, "alice").await;
    create_user(&daemon, &admin, "bob").await;

    let attacker = [client_from("127.0.0.3")];
    let answers = flood(&daemon, &attacker, 200, |i| {
        (0, "alice".to_owned(), format!("wrong-guess-{i:04}-xx"))
    })
    .await;
    let checked = answers
        .iter()
        .filter(|a| a.as_ref().err().map(String::as_str) == Some("UNAUTHENTICATED"))
        .count();
    let refused = answers
        .iter()
        .filter(|a| a.as_ref().err().map(String::as_str) == Some("RATE_LIMITED"))
        .count();
    // Defaults: 5 free failures, the 6th locks.
    assert!(checked <= 6, "{checked} guesses were checked: {answers:?}");
    assert_eq!(checked + refused, 200, "{answers:?}");

    let text = metrics(&daemon).await;
    let failures = series(&text, "secmon_logins_total", "result=\"failure\"");
    assert!(failures <= 6.0, "{failures} failed logins hashed\n{text}");
    assert!(
        series(
            &text,
            "secmon_login_lockout_refusals_total",
            "limit=\"account\""
        ) >= 190.0,
        "{text}"
    );

    // Alice is locked from everywhere, even with her password; Bob is not.
    let elsewhere = client_from("127.0.0.4");
    assert_eq!(
        login(&daemon, &elsewhere, "alice", PASSWORD, &[]).await,
        Err("RATE_LIMITED".to_owned())
    );
    assert_eq!(
        login(&daemon, &elsewhere, "bob", PASSWORD, &[]).await,
        Ok(())
    );

    // Each failure is audited; the refusals only sampled (one per lockout
    // period, carrying the count of the ones not written).
    let entries = audit(&daemon).await;
    let failed = entries.iter().filter(|e| e.0 == "login.failed").count();
    let locked: Vec<_> = entries.iter().filter(|e| e.0 == "login.locked").collect();
    assert_eq!(failed, checked, "{entries:?}");
    assert!(
        !locked.is_empty() && locked.len() <= checked + 2,
        "{} refusal entries for {refused} refusals",
        locked.len()
    );
    let counted: u64 = locked
        .iter()
        .map(|e| e.3["refused_since_last_entry"].as_u64().unwrap() + 1)
        .sum();
    assert!(counted <= refused as u64 + 1, "{locked:?}");
    assert!(
        locked
            .iter()
            .all(|e| e.2 == "127.0.0.3" || e.2 == "127.0.0.4")
    );

    assert_serving(&daemon, MAX_RSS_MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_argon2_flood_is_answered_429_within_a_memory_bound() {
    secmon::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "auth:\n  max_concurrent_hashes: 2\n  hash_queue_wait_ms: 200\n",
    );
    let daemon = Daemon::start(dir.path()).await;
    let before = rss_kib(daemon.pid()) / 1024;

    // 400 logins for unknown names (each costs a dummy argon2 check), from
    // 20 addresses so that neither the request rate nor the lockouts stop
    // them: only the hash gate does.
    let clients: Vec<_> = (0..20)
        .map(|i| client_from(&format!("127.0.1.{}", i + 1)))
        .collect();
    let answers = flood(&daemon, &clients, 400, |i| {
        (
            i % 20,
            format!("nobody{i}"),
            "some-password-here".to_owned(),
        )
    })
    .await;
    let busy = answers
        .iter()
        .filter(|a| a.as_ref().err().map(String::as_str) == Some("RATE_LIMITED"))
        .count();
    let checked = answers
        .iter()
        .filter(|a| a.as_ref().err().map(String::as_str) == Some("UNAUTHENTICATED"))
        .count();
    assert_eq!(busy + checked, 400, "{answers:?}");
    assert!(busy > 0, "no login was refused: {checked} checked");
    assert!(checked > 0, "no login was checked at all");

    // 2 hashes at once hold 2 x 19 MiB (reused buffers); without the gate
    // the 400 run at once and the peak passes 7 GiB. The peak (VmHWM)
    // counts, not just what is left.
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let peak_mib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        / 1024;
    assert!(
        peak_mib <= before + 96,
        "peak RSS {peak_mib} MiB, {before} MiB before the flood"
    );
    let text = metrics(&daemon).await;
    assert!(
        series(
            &text,
            "secmon_password_hash_busy_total",
            "operation=\"login\""
        ) >= busy as f64,
        "{text}"
    );
    assert!(series(&text, "secmon_logins_total", "result=\"busy\"") >= busy as f64);
    println!(
        "argon2 flood: {checked} checked, {busy} refused RATE_LIMITED, RSS {before} MiB before, peak {peak_mib} MiB"
    );

    // Once the flood is over, a login is checked again.
    assert_eq!(
        login(&daemon, &clients[0], "nobody", "some-password-here", &[]).await,
        Err("UNAUTHENTICATED".to_owned())
    );
    assert_serving(&daemon, MAX_RSS_MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    secmon::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(dir.path(), &[("AUTH_TRUSTED_PROXIES", "127.0.0.2/32")]).await;
    let admin = crate::common::bearer_client(&daemon::admin_key(dir.path()));
    create_user(&daemon, &admin, "bob").await;
    let proxy = client_from("127.0.0.2");
    let stranger = client_from("127.0.0.5");

    // From an untrusted peer the header is ignored.
    let spoof = [("x-forwarded-for", "198.51.100.7")];
    assert_eq!(
        login(&daemon, &stranger, "mallory", "wrong-password-1", &spoof).await,
        Err("UNAUTHENTICATED".to_owned())
    );
    // From the proxy, the rightmost address that is not a proxy: what a
    // client wrote to the left of it is not believed.
    let chain = [("x-forwarded-for", "6.6.6.6, 198.51.100.8")];
    assert_eq!(
        login(&daemon, &proxy, "trudy", "wrong-password-2", &chain).await,
        Err("UNAUTHENTICATED".to_owned())
    );
    let entries = audit(&daemon).await;
    let ip_of = |actor: &str| {
        entries
            .iter()
            .find(|e| e.0 == "login.failed" && e.1 == actor)
            .map(|e| e.2.clone())
    };
    assert_eq!(ip_of("mallory").as_deref(), Some("127.0.0.5"));
    assert_eq!(ip_of("trudy").as_deref(), Some("198.51.100.8"));

    // One client behind the proxy exhausts its address limit (20 failures,
    // then locked, spread over names so no account locks) ...
    let noisy = [("x-forwarded-for", "203.0.113.66")];
    let mut last = Ok(());
    for i in 0..25 {
        last = login(
            &daemon,
            &proxy,
            &format!("spray{i}"),
            "wrong-password-3",
            &noisy,
        )
        .await;
    }
    assert_eq!(last, Err("RATE_LIMITED".to_owned()));
    assert_eq!(
        login(&daemon, &proxy, "bob", PASSWORD, &noisy).await,
        Err("RATE_LIMITED".to_owned()),
        "the noisy client is locked out"
    );
    // ... and the other clients of the same proxy are not.
    let quiet = [("x-forwarded-for", "203.0.113.77")];
    assert_eq!(
        login(&daemon, &proxy, "bob", PASSWORD, &quiet).await,
        Ok(())
    );

    // Hostile values: never a crash, never an address the client chose.
    let long = format!("{}198.51.100.99", "1.1.1.1, ".repeat(700));
    for value in [
        long.as_str(),
        "unknown",
        "198.51.100.98, _hidden",
        "198.51.100.97, garbage",
        "[::1",
        "1.2.3.4:99999",
        ",,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,",
    ] {
        let answer = login(
            &daemon,
            &proxy,
            "eve",
            "wrong-password-4",
            &[("x-forwarded-for", value)],
        )
        .await;
        assert!(
            answer == Err("UNAUTHENTICATED".to_owned()) || answer == Err("RATE_LIMITED".to_owned()),
            "{value}: {answer:?}"
        );
    }
    let entries = audit(&daemon).await;
    let eve: Vec<_> = entries
        .iter()
        .filter(|e| e.1 == "eve")
        .map(|e| e.2.as_str())
        .collect();
    assert!(!eve.is_empty());
    assert!(
        eve.iter().all(|ip| *ip == "127.0.0.2"),
        "a malformed chain is the proxy's own address: {eve:?}"
    );
    let text = metrics(&daemon).await;
    assert!(
        series(
            &text,
            "secmon_forwarded_headers_ignored_total",
            "reason=\"untrusted_peer\""
        ) >= 1.0,
        "{text}"
    );
    assert!(
        series(
            &text,
            "secmon_forwarded_headers_ignored_total",
            "reason=\"malformed\""
        ) >= 1.0,
        "{text}"
    );

    assert_serving(&daemon, MAX_RSS_MIB).await;
}

const REFRESH: &str =
    "mutation($t: String!) { refresh(refreshToken: $t) { accessToken refreshToken } }";

/// A refresh's answer: the new refresh token or the error code.
async fn refresh_at(api: &str, http: &reqwest::Client, token: &str) -> Result<String, String> {
    let response = http
        .post(format!("{api}/graphql"))
        .json(&json!({"query": REFRESH, "variables": {"t": token}}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let v: Value = response.json().await.unwrap();
    if let Some(token) = v["data"]["refresh"]["refreshToken"].as_str() {
        return Ok(token.to_owned());
    }
    Err(v["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code in {status} {v}"))
        .to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_unknown_refresh_tokens_are_held_to_the_address_lockout() {
    secmon::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path()).await;
    let admin = crate::common::bearer_client(&daemon::admin_key(dir.path()));
    create_user(&daemon, &admin, "carol").await;

    let attacker = client_from("127.0.0.7");
    let mut set = JoinSet::new();
    for i in 0..200 {
        let (api, http) = (daemon.api.clone(), attacker.clone());
        set.spawn(async move { refresh_at(&api, &http, &format!("smr_guess{i:04}")).await });
    }
    let answers = set.join_all().await;
    let looked_up = answers
        .iter()
        .filter(|a| a.as_ref().err().map(String::as_str) == Some("UNAUTHENTICATED"))
        .count();
    let refused = answers
        .iter()
        .filter(|a| a.as_ref().err().map(String::as_str) == Some("RATE_LIMITED"))
        .count();
    assert_eq!(looked_up + refused, 200, "{answers:?}");
    // Defaults: 20 free failures per address, the 21st locks it.
    assert!(looked_up <= 21, "{looked_up} unknown tokens looked up");

    // One `token.refresh.failed` entry per lookup, not per request; the
    // refusals sampled, carrying the count of the ones not written.
    let entries = audit(&daemon).await;
    let failed = entries
        .iter()
        .filter(|e| e.0 == "token.refresh.failed" && e.2 == "127.0.0.7")
        .count();
    assert_eq!(failed, looked_up, "{entries:?}");
    assert!(failed <= 21, "{failed} failure entries for 200 refreshes");
    let locked: Vec<_> = entries
        .iter()
        .filter(|e| e.0 == "token.refresh.locked")
        .collect();
    // At most one per recorded failure (a period ends with the next
    // failure), however many refusals.
    assert!(
        !locked.is_empty() && locked.len() <= looked_up + 1,
        "{} refusal entries for {refused} refusals",
        locked.len()
    );
    let counted: u64 = locked
        .iter()
        .map(|e| e.3["refused_since_last_entry"].as_u64().unwrap() + 1)
        .sum();
    assert!(counted <= refused as u64, "{locked:?}");
    println!(
        "refresh flood: {looked_up} looked up, {refused} refused RATE_LIMITED, {failed} token.refresh.failed and {} token.refresh.locked entries",
        locked.len()
    );
    let text = metrics(&daemon).await;
    assert!(
        series(
            &text,
            "secmon_login_lockout_refusals_total",
            "limit=\"address\""
        ) >= refused as f64,
        "{text}"
    );

    // The attacker's address stays refused; a user elsewhere logs in and
    // refreshes.
    assert_eq!(
        refresh_at(&daemon.api, &attacker, "smr_one-more").await,
        Err("RATE_LIMITED".to_owned())
    );
    let user = client_from("127.0.0.8");
    let v: Value = user
        .post(format!("{}/graphql", daemon.api))
        .json(&json!({"query": "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { refreshToken } }", "variables": {"u": "carol", "p": PASSWORD}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = v["data"]["login"]["refreshToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"));
    let renewed = refresh_at(&daemon.api, &user, token).await;
    assert!(renewed.is_ok(), "{renewed:?}");

    assert_serving(&daemon, MAX_RSS_MIB).await;
}
