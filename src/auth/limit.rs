//! Abuse resistance: request rate limits per source IP and per principal
//! (token buckets, governor), and login limits per IP and per account with
//! a lockout that doubles with each failure past the free ones.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::{LoginLimits, RateLimits};

/// Request rate limits; `Err(wait)` means "429, retry after `wait`".
pub struct RequestLimiter {
    by_ip: DefaultKeyedRateLimiter<IpAddr>,
    by_principal: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl RequestLimiter {
    pub fn new(cfg: &RateLimits) -> RequestLimiter {
        let quota = |per_second: u32| {
            let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
            let burst = NonZeroU32::new(cfg.burst.max(per_second).max(1)).unwrap_or(rate);
            Quota::per_second(rate).allow_burst(burst)
        };
        RequestLimiter {
            by_ip: RateLimiter::keyed(quota(cfg.per_ip_per_second)),
            by_principal: RateLimiter::keyed(quota(cfg.per_principal_per_second)),
            clock: DefaultClock::default(),
        }
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Duration> {
        self.by_ip
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    pub fn check_principal(&self, name: &str) -> Result<(), Duration> {
        self.by_principal
            .check_key(&name.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets keys whose buckets are full again (call now and then, so the
    /// maps do not grow with every address ever seen).
    pub fn forget_idle(&self) {
        self.by_ip.retain_recent();
        self.by_ip.shrink_to_fit();
        self.by_principal.retain_recent();
        self.by_principal.shrink_to_fit();
    }
}

#[derive(Debug, Default)]
struct Failures {
    count: u32,
    locked_until: Option<Instant>,
}

/// Failed logins per account name and per source IP. Past the free
/// failures, each one locks the key for twice as long as the one before
/// (1 s, 2 s, 4 s, ... up to the configured maximum). The account key is
/// the name as typed, known or not, so a lockout says nothing about
/// whether the account exists.
pub struct LoginLimiter {
    accounts: moka::sync::Cache<String, Arc<Mutex<Failures>>>,
    ips: moka::sync::Cache<IpAddr, Arc<Mutex<Failures>>>,
    cfg: LoginLimits,
}

impl LoginLimiter {
    pub fn new(cfg: &LoginLimits) -> LoginLimiter {
        let idle = Duration::from_secs(cfg.max_lockout_seconds.max(60) * 2);
        LoginLimiter {
            accounts: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(idle)
                .build(),
            ips: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(idle)
                .build(),
            cfg: cfg.clone(),
        }
    }

    fn key(user: &str) -> String {
        user.chars().take(64).collect::<String>().to_lowercase()
    }

    /// `Err(wait)` while the account or the address is locked.
    pub fn check(&self, user: &str, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let wait = |f: Option<Arc<Mutex<Failures>>>| {
            f.and_then(|f| {
                let f = f.lock().unwrap_or_else(PoisonError::into_inner);
                f.locked_until
                    .and_then(|until| until.checked_duration_since(now))
            })
        };
        let longest = wait(self.accounts.get(&Self::key(user))).max(wait(self.ips.get(&ip)));
        longest.map_or(Ok(()), Err)
    }

    pub fn failed(&self, user: &str, ip: IpAddr) {
        let max = Duration::from_secs(self.cfg.max_lockout_seconds);
        let bump = |f: Arc<Mutex<Failures>>, free: u32| {
            let mut f = f.lock().unwrap_or_else(PoisonError::into_inner);
            f.count += 1;
            if f.count > free {
                let doublings = (f.count - free - 1).min(20);
                let lock = Duration::from_secs(1u64 << doublings).min(max);
                f.locked_until = Some(Instant::now() + lock);
            }
        };
        bump(
            self.accounts.get_with(Self::key(user), Default::default),
            self.cfg.max_failures_per_account,
        );
        bump(
            self.ips.get_with(ip, Default::default),
            self.cfg.max_failures_per_ip,
        );
    }

    /// A successful login clears the account's failures (not the address's:
    /// one good password must not reset a spray from that address).
    pub fn succeeded(&self, user: &str) {
        self.accounts.invalidate(&Self::key(user));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(account: u32, ip: u32) -> LoginLimits {
        LoginLimits {
            max_failures_per_account: account,
            max_failures_per_ip: ip,
            max_lockout_seconds: 900,
        }
    }

    #[test]
    fn an_account_locks_after_its_free_failures_for_growing_times() {
        let limiter = LoginLimiter::new(&limits(3, 100));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check("alice", ip).is_ok());
            limiter.failed("alice", ip);
        }
        assert!(limiter.check("alice", ip).is_ok());
        limiter.failed("alice", ip);
        let first = limiter.check("ALICE", ip).unwrap_err();
        assert!(first <= Duration::from_secs(1), "{first:?}");
        limiter.failed("alice", ip);
        let second = limiter.check("alice", ip).unwrap_err();
        assert!(second > Duration::from_secs(1), "{second:?}");
        // Another account from another address is not affected.
        assert!(limiter.check("bob", "10.0.0.2".parse().unwrap()).is_ok());
        limiter.succeeded("alice");
        assert!(limiter.check("alice", "10.0.0.2".parse().unwrap()).is_ok());
    }

    #[test]
    fn an_address_spraying_many_accounts_locks() {
        let limiter = LoginLimiter::new(&limits(100, 4));
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        for i in 0..5 {
            limiter.failed(&format!("user{i}"), ip);
        }
        assert!(limiter.check("someone-else", ip).is_err());
        assert!(
            limiter
                .check("someone-else", "10.0.0.8".parse().unwrap())
                .is_ok()
        );
    }

    #[test]
    fn request_limits_refuse_past_the_burst_with_a_wait() {
        let limiter = RequestLimiter::new(&RateLimits {
            per_ip_per_second: 1,
            per_principal_per_second: 1,
            burst: 3,
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check_ip(ip).is_ok());
        }
        let wait = limiter.check_ip(ip).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(limiter.check_ip("10.0.0.2".parse().unwrap()).is_ok());
        assert!(limiter.check_principal("alice").is_ok());
    }
}
