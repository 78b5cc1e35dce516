//! What authentication costs a request, next to a baseline measured in the
//! same run (one SHA-256 of a 43-byte secret, the least any credential check
//! does):
//!
//! - `api_key_cached` / `access_token`: [`Auth::authenticate`] on every
//!   request, with the principal cache warm (the steady state);
//! - `rate_limit`: one keyed token-bucket check;
//! - `login`: a password login (argon2id verify, a redb commit for the
//!   audit entry and the refresh token): paid once per session, by design
//!   slow.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use secmon::auth::{Auth, CanAdminister, Principal, Role, token};
use secmon::config;

fn auth(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = secmon::store::Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = config::Auth::default();
    cfg.rate_limit.per_ip_per_second = u32::MAX;
    cfg.rate_limit.burst = u32::MAX;
    cfg.login.max_failures_per_account = u32::MAX;
    let auth = Auth::new(store, b"0123456789abcdef0123456789abcdef", &cfg);
    let password = "a-long-enough-password";
    auth.bootstrap_admin(password)
        .unwrap_or_else(|e| panic!("{e}"));
    let admin: CanAdminister = Principal::local()
        .grant(None)
        .unwrap_or_else(|e| panic!("{e}"));
    let (_, key) = auth
        .create_api_key(&admin, "bench", Role::Ingest)
        .unwrap_or_else(|e| panic!("{e}"));
    let ip: IpAddr = "127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"));
    let tokens = auth
        .login("admin", password, ip)
        .unwrap_or_else(|e| panic!("{e}"));
    let secret = token::random_secret().unwrap_or_else(|e| panic!("{e}"));

    let mut group = c.benchmark_group("auth");
    group.bench_function("baseline_sha256", |b| {
        b.iter(|| black_box(token::digest(black_box(&secret))))
    });
    group.bench_function("api_key_cached", |b| {
        b.iter(|| black_box(auth.authenticate(black_box(&key)).is_ok()))
    });
    group.bench_function("access_token", |b| {
        b.iter(|| black_box(auth.authenticate(black_box(&tokens.access_token)).is_ok()))
    });
    group.bench_function("rate_limit", |b| {
        b.iter(|| black_box(auth.requests.check_principal(black_box("admin")).is_ok()))
    });
    group.sample_size(10);
    group.bench_function("login", |b| {
        b.iter(|| black_box(auth.login("admin", password, ip).is_ok()))
    });
    group.finish();
}

criterion_group!(benches, auth);
criterion_main!(benches);
