//! Abuse resistance: request rate limits per source address and per
//! principal (token buckets, governor); password attempts per account name
//! and per source address with a lockout that doubles with each failure
//! past the free ones, reserved before the password is hashed; and the
//! gate that bounds how many argon2 hashes run at once.
//!
//! An IPv6 source is keyed by its /64 (one host usually holds a whole /64,
//! so per-address limits would otherwise be 2^64 limits for one client).

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{LoginLimits, RateLimits};

/// The key per-address limits count under: the address itself for IPv4
/// (an IPv4-mapped IPv6 address is its IPv4 address), the /64 for IPv6.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(
                u128::from(v6) & 0xffff_ffff_ffff_ffff_0000_0000_0000_0000,
            )),
        },
    }
}

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
            .check_key(&address_key(ip))
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

/// What a refused attempt is told to wait when the key is not locked but
/// as many attempts as it may still fail are already being checked.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Failures {
    /// Failed attempts recorded.
    count: u32,
    /// Attempts reserved and not yet decided (their password is being
    /// checked).
    in_flight: u32,
    locked_until: Option<Instant>,
    /// Refusals since the last one that went to the audit log.
    refused: u32,
    /// `count` when a refusal last went to the audit log: one entry per
    /// lockout period (a period ends with the next recorded failure).
    audited_at: Option<u32>,
}

impl Failures {
    /// `Err(wait)` while locked, or while as many attempts as may still
    /// fail before the lockout are in flight: `free + 1` attempts from
    /// nothing, then one at a time.
    fn admits(&self, free: u32, now: Instant) -> Result<(), Duration> {
        if let Some(wait) = self
            .locked_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|w| !w.is_zero())
        {
            return Err(wait);
        }
        let capacity = (free.saturating_add(1)).saturating_sub(self.count).max(1);
        if self.in_flight >= capacity {
            return Err(IN_FLIGHT_WAIT);
        }
        Ok(())
    }

    /// A reserved attempt failed.
    fn fail(&mut self, free: u32, max: Duration) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.record_failure(free, max);
    }

    fn record_failure(&mut self, free: u32, max: Duration) {
        self.count = self.count.saturating_add(1);
        if self.count > free {
            let doublings = (self.count - free - 1).min(20);
            let lock = Duration::from_secs(1u64 << doublings).min(max);
            self.locked_until = Some(Instant::now() + lock);
        }
    }

    /// Counts a refusal; `Some(n)` when this one goes to the audit log, `n`
    /// being the refusals since the previous entry that did not.
    fn refuse(&mut self) -> Option<u32> {
        if self.audited_at == Some(self.count) {
            self.refused = self.refused.saturating_add(1);
            None
        } else {
            self.audited_at = Some(self.count);
            Some(std::mem::take(&mut self.refused))
        }
    }
}

type Slot = Arc<Mutex<Failures>>;

fn lock(slot: &Slot) -> std::sync::MutexGuard<'_, Failures> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Which lockout refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The account name (too many failures for it, from anywhere).
    Account,
    /// The source address (too many failures from it, for any names).
    Address,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Account => "account",
            Limit::Address => "address",
        }
    }
}

/// An attempt the lockout refused before any hashing.
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    pub wait: Duration,
    pub limit: Limit,
    /// `Some(n)`: this refusal is the sampled one of its lockout period and
    /// goes to the audit log, with `n` refusals since the previous entry
    /// that did not.
    pub audit: Option<u32>,
}

/// Failed password attempts per account name and per source address. Past
/// the free failures, each one locks the key for twice as long as the one
/// before (1 s, 2 s, 4 s, ... up to the configured maximum).
///
/// An attempt is reserved ([`LoginLimiter::reserve`]) before its password
/// is hashed and counts as a possible failure until it is decided, so
/// concurrent guesses cannot all pass the check before any failure is
/// recorded: at most `free + 1` attempts per key are ever checked before
/// the lockout, however many arrive at once.
///
/// The account key is the name as typed, known or not, so a lockout says
/// nothing about whether the account exists. The address is checked (and
/// its slot taken) first: an attempt refused by its address never looks up,
/// creates or touches an account's state, so a locked-out address cannot
/// churn the account cache with made-up names. One address can fail at
/// most `max_failures_per_ip + 1` times before its own lockout, which
/// then doubles like an account's, so it cannot keep more accounts locked
/// than its own lockout lets it fail.
///
/// Account state lives in two bounded caches. `accounts` holds a slot for
/// every name an admitted attempt was made for (evictable, least recently
/// and least frequently used first). `held` holds, besides, the slot of
/// every name with a recorded failure (its count and lockout), until a
/// success clears it or it has been idle for twice the maximum lockout: an
/// entry enters `held` only through a failed password check, which is
/// charged to an address and bounded by that address's own lockout, so
/// pushing a failing or locked account's state out of `held` takes as many
/// failures for other names as `held` has room for (100 000), not requests.
pub struct LoginLimiter {
    accounts: moka::sync::Cache<String, Slot>,
    held: moka::sync::Cache<String, Slot>,
    ips: moka::sync::Cache<IpAddr, Slot>,
    cfg: LoginLimits,
}

/// Entries of each of the limiter's caches.
const CAPACITY: u64 = 100_000;

/// A reserved attempt. Resolve it with [`Attempt::failed`] or
/// [`Attempt::succeeded`]; dropped undecided (the request was refused for
/// another reason, or failed), it is released without counting.
///
/// An attempt reserved with [`LoginLimiter::reserve_address`] holds the
/// address alone (no account is involved).
#[must_use]
#[derive(Debug)]
pub struct Attempt {
    account: Option<AccountHold>,
    ip: Slot,
    free_account: u32,
    free_ip: u32,
    max: Duration,
    decided: bool,
}

/// The account side of an attempt: its slot, and where a failure pins it.
#[derive(Debug)]
struct AccountHold {
    slot: Slot,
    key: String,
    held: moka::sync::Cache<String, Slot>,
}

impl Attempt {
    /// The password was wrong (or the user unknown or disabled; for an
    /// address-only attempt: the token was not one anybody was issued).
    pub fn failed(mut self) {
        self.decided = true;
        if let Some(account) = &self.account {
            lock(&account.slot).fail(self.free_account, self.max);
            account
                .held
                .insert(account.key.clone(), account.slot.clone());
        }
        lock(&self.ip).fail(self.free_ip, self.max);
    }

    /// The password was right: the account's failures are cleared (not the
    /// address's: one good password must not reset a spray from it).
    pub fn succeeded(mut self) {
        self.decided = true;
        if let Some(account) = &self.account {
            {
                let mut f = lock(&account.slot);
                f.in_flight = f.in_flight.saturating_sub(1);
                f.count = 0;
                f.locked_until = None;
                f.audited_at = None;
                f.refused = 0;
            }
            account.held.invalidate(&account.key);
        }
        let mut ip = lock(&self.ip);
        ip.in_flight = ip.in_flight.saturating_sub(1);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.decided {
            return;
        }
        if let Some(account) = &self.account {
            let mut f = lock(&account.slot);
            f.in_flight = f.in_flight.saturating_sub(1);
        }
        let mut ip = lock(&self.ip);
        ip.in_flight = ip.in_flight.saturating_sub(1);
    }
}

impl LoginLimiter {
    pub fn new(cfg: &LoginLimits) -> LoginLimiter {
        LoginLimiter::with_capacity(cfg, CAPACITY)
    }

    fn with_capacity(cfg: &LoginLimits, capacity: u64) -> LoginLimiter {
        let idle = Duration::from_secs(cfg.max_lockout_seconds.max(60).saturating_mul(2));
        fn cache<K>(capacity: u64, idle: Duration) -> moka::sync::Cache<K, Slot>
        where
            K: std::hash::Hash + Eq + Send + Sync + 'static,
        {
            moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(idle)
                .build()
        }
        LoginLimiter {
            accounts: cache(capacity, idle),
            held: cache(capacity, idle),
            ips: cache(capacity, idle),
            cfg: cfg.clone(),
        }
    }

    fn key(user: &str) -> String {
        user.chars().take(64).collect::<String>().to_lowercase()
    }

    /// Reserves a password attempt for `user` from `ip`, or refuses it
    /// while either is locked or has as many attempts in flight as it may
    /// still fail. The address is checked first: an attempt it refuses
    /// never creates or touches the account's state.
    pub fn reserve(&self, user: &str, ip: IpAddr) -> Result<Attempt, Refusal> {
        let address = self.ips.get_with(address_key(ip), Default::default);
        let now = Instant::now();
        // Always address before account: no other order is ever taken.
        let mut i = lock(&address);
        if let Err(wait) = i.admits(self.cfg.max_failures_per_ip, now) {
            return Err(Refusal {
                wait,
                limit: Limit::Address,
                audit: i.refuse(),
            });
        }
        let key = Self::key(user);
        let account = match self.held.get(&key) {
            Some(slot) => slot,
            None => self.accounts.get_with(key.clone(), Default::default),
        };
        let mut a = lock(&account);
        if let Err(wait) = a.admits(self.cfg.max_failures_per_account, now) {
            return Err(Refusal {
                wait,
                limit: Limit::Account,
                audit: a.refuse(),
            });
        }
        a.in_flight += 1;
        i.in_flight += 1;
        drop((a, i));
        Ok(Attempt {
            account: Some(AccountHold {
                slot: account,
                key,
                held: self.held.clone(),
            }),
            ip: address,
            free_account: self.cfg.max_failures_per_account,
            free_ip: self.cfg.max_failures_per_ip,
            max: Duration::from_secs(self.cfg.max_lockout_seconds),
            decided: false,
        })
    }

    /// Reserves an attempt against the address alone, for requests that
    /// cost no hashing but can fail on a guess (a refresh token): refused
    /// while the address is locked or has as many attempts in flight as it
    /// may still fail, so concurrent guesses from one address are held to
    /// `max_failures_per_ip + 1` before its lockout, like logins.
    pub fn reserve_address(&self, ip: IpAddr) -> Result<Attempt, Refusal> {
        let address = self.ips.get_with(address_key(ip), Default::default);
        let mut i = lock(&address);
        if let Err(wait) = i.admits(self.cfg.max_failures_per_ip, Instant::now()) {
            return Err(Refusal {
                wait,
                limit: Limit::Address,
                audit: i.refuse(),
            });
        }
        i.in_flight += 1;
        drop(i);
        Ok(Attempt {
            account: None,
            ip: address,
            free_account: self.cfg.max_failures_per_account,
            free_ip: self.cfg.max_failures_per_ip,
            max: Duration::from_secs(self.cfg.max_lockout_seconds),
            decided: false,
        })
    }
}

/// Bounds the argon2 work running at once: `permits` hashes, each holding
/// 19 MiB for tens of milliseconds; a caller waits at most `wait` for a
/// slot, and at most `permits * QUEUE_PER_PERMIT` callers wait at all.
/// Past either, the caller is refused (`RATE_LIMITED`) instead of queueing
/// a blocking thread.
pub struct HashGate {
    permits: Arc<Semaphore>,
    size: usize,
    waiting: AtomicUsize,
    wait: Duration,
}

/// Callers allowed to wait per hashing slot.
pub const QUEUE_PER_PERMIT: usize = 32;

/// Leaves the wait count when the waiter is done (or dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HashGate {
    /// `permits: None` is the number of CPU cores.
    pub fn new(permits: Option<usize>, wait: Duration) -> HashGate {
        let size = permits
            .filter(|p| *p > 0)
            .unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
            })
            .min(Semaphore::MAX_PERMITS);
        HashGate {
            permits: Arc::new(Semaphore::new(size)),
            size,
            waiting: AtomicUsize::new(0),
            wait,
        }
    }

    /// How many hashes may run at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// A hashing slot, held until the permit drops; `Err(retry after)`
    /// when none frees up in time or too many callers wait already.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, Duration> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let retry = self.wait.max(Duration::from_secs(1));
        let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.waiting);
        if queued >= self.size.saturating_mul(QUEUE_PER_PERMIT) {
            return Err(retry);
        }
        match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(retry),
        }
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

    fn fail(limiter: &LoginLimiter, user: &str, ip: IpAddr) {
        limiter.reserve(user, ip).unwrap().failed();
    }

    #[test]
    fn an_account_locks_after_its_free_failures_for_growing_times() {
        let limiter = LoginLimiter::new(&limits(3, 100));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..4 {
            fail(&limiter, "alice", ip);
        }
        let first = limiter.reserve("ALICE", ip).unwrap_err();
        assert_eq!(first.limit, Limit::Account);
        assert!(first.wait <= Duration::from_secs(1), "{first:?}");
        // Another account from another address is not affected.
        assert!(limiter.reserve("bob", "10.0.0.2".parse().unwrap()).is_ok());
        // A success clears the account.
        let limiter2 = LoginLimiter::new(&limits(3, 100));
        for _ in 0..3 {
            fail(&limiter2, "carol", ip);
        }
        limiter2.reserve("carol", ip).unwrap().succeeded();
        for _ in 0..3 {
            fail(&limiter2, "carol", ip);
        }
        assert!(limiter2.reserve("carol", ip).is_ok());
    }

    #[test]
    fn the_lockout_doubles_past_the_free_failures() {
        let limiter = LoginLimiter::new(&limits(0, 100));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        fail(&limiter, "alice", ip);
        let slot = limiter.accounts.get("alice").unwrap();
        let wait = |slot: &Slot| {
            lock(slot)
                .locked_until
                .unwrap()
                .duration_since(Instant::now())
        };
        assert!(wait(&slot) <= Duration::from_secs(1));
        // Past the lock, one more failure locks for about 2 s.
        {
            let mut f = lock(&slot);
            f.locked_until = None;
        }
        fail(&limiter, "alice", ip);
        assert!(wait(&slot) > Duration::from_secs(1), "{:?}", wait(&slot));
    }

    #[test]
    fn concurrent_attempts_reserve_before_anything_is_recorded() {
        // 200 guesses at once: only the free failures plus one are let
        // through to the password check; the rest are refused at once.
        let limiter = LoginLimiter::new(&limits(5, 1000));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut held = Vec::new();
        let mut refused = Vec::new();
        for _ in 0..200 {
            match limiter.reserve("alice", ip) {
                Ok(a) => held.push(a),
                Err(r) => refused.push(r),
            }
        }
        assert_eq!(held.len(), 6);
        assert!(refused.iter().all(|r| r.limit == Limit::Account));
        // One refusal per period goes to the audit log, the rest counted.
        let audited: Vec<_> = refused.iter().filter_map(|r| r.audit).collect();
        assert_eq!(audited, vec![0]);
        for a in held {
            a.failed();
        }
        let after = limiter.reserve("alice", ip).unwrap_err();
        assert!(after.wait > Duration::ZERO && after.wait <= Duration::from_secs(1));
        assert_eq!(after.audit, Some(193), "{after:?}");
        // Threads: the same bound holds with real concurrency.
        let limiter = Arc::new(LoginLimiter::new(&limits(5, 1000)));
        let passed = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (limiter, passed) = (limiter.clone(), passed.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        if let Ok(a) = limiter.reserve("bob", ip) {
                            passed.fetch_add(1, Ordering::SeqCst);
                            std::thread::yield_now();
                            a.failed();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // 6 free, then at most one per lockout period (the test takes far
        // less than the 1 s + 2 s of the first two).
        assert!(passed.load(Ordering::SeqCst) <= 7, "{passed:?}");
    }

    #[test]
    fn an_undecided_attempt_is_released_without_counting() {
        let limiter = LoginLimiter::new(&limits(0, 100));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = limiter.reserve("alice", ip).unwrap();
        assert!(limiter.reserve("alice", ip).is_err());
        drop(a);
        assert!(limiter.reserve("alice", ip).is_ok());
    }

    #[test]
    fn an_address_spraying_many_accounts_locks_before_it_locks_them_all() {
        let limiter = LoginLimiter::new(&limits(5, 20));
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        // One address sprays 1000 names: its own lockout stops it after 21
        // failures, so at most 21 / 6 = 3 names are ever locked by it.
        let mut failed = 0;
        for i in 0..1000 {
            for _ in 0..6 {
                if let Ok(a) = limiter.reserve(&format!("user{i}"), ip) {
                    a.failed();
                    failed += 1;
                }
            }
        }
        assert_eq!(failed, 21);
        let other: IpAddr = "10.0.0.8".parse().unwrap();
        let locked = (0..1000)
            .filter(|i| limiter.reserve(&format!("user{i}"), other).is_err())
            .count();
        assert!(locked <= 3, "{locked} names locked by one address");
        let refusal = limiter.reserve("someone-else", ip).unwrap_err();
        assert_eq!(refusal.limit, Limit::Address);
        assert!(limiter.reserve("someone-else", other).is_ok());
    }

    #[test]
    fn a_locked_address_creates_no_account_state() {
        // One free failure per address: the second locks it.
        let limiter = LoginLimiter::new(&limits(5, 1));
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        fail(&limiter, "first", ip);
        fail(&limiter, "second", ip);
        limiter.accounts.run_pending_tasks();
        assert_eq!(limiter.accounts.entry_count(), 2);
        // 1000 requests with 1000 made-up names: each refused by the
        // address, none creates (or touches) an account entry.
        for i in 0..1000 {
            let refusal = limiter.reserve(&format!("churn{i}"), ip).unwrap_err();
            assert_eq!(refusal.limit, Limit::Address);
        }
        limiter.accounts.run_pending_tasks();
        limiter.held.run_pending_tasks();
        assert_eq!(limiter.accounts.entry_count(), 2);
        assert!((0..1000).all(|i| !limiter.accounts.contains_key(&format!("churn{i}"))));
        assert_eq!(limiter.held.entry_count(), 2);
        // Another address is not affected.
        assert!(
            limiter
                .reserve("third", "10.0.0.8".parse().unwrap())
                .is_ok()
        );
    }

    #[test]
    fn a_locked_account_outlives_churn_of_the_name_cache() {
        // A cache of 50 names; one address per churned name so that no
        // address lockout gets in the way.
        let limiter = LoginLimiter::with_capacity(&limits(2, 100), 50);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            fail(&limiter, "alice", ip);
        }
        assert_eq!(
            limiter.reserve("alice", ip).unwrap_err().limit,
            Limit::Account
        );
        // Her lock (2 s) must outlast the churn below however slow the
        // machine is: this test is about the cache, not the clock.
        lock(&limiter.held.get("alice").unwrap()).locked_until =
            Some(Instant::now() + Duration::from_secs(900));
        // 5000 admitted attempts for other names, undecided (as when every
        // hashing slot is busy): the name cache turns over many times.
        for i in 0..5000u32 {
            let other = IpAddr::from([10, 1, (i >> 8) as u8, i as u8]);
            // More often each than alice was tried, so that no frequency
            // estimate favours her slot.
            for _ in 0..8 {
                drop(limiter.reserve(&format!("churn{i}"), other).unwrap());
            }
        }
        limiter.accounts.run_pending_tasks();
        assert!(limiter.accounts.entry_count() <= 50);
        // Alice's failures are still held: locked, from anywhere.
        let refusal = limiter
            .reserve("alice", "10.9.9.9".parse().unwrap())
            .unwrap_err();
        assert_eq!(refusal.limit, Limit::Account);
        // A success releases the hold.
        let limiter = LoginLimiter::with_capacity(&limits(2, 100), 50);
        fail(&limiter, "bob", ip);
        limiter.reserve("bob", ip).unwrap().succeeded();
        limiter.held.run_pending_tasks();
        assert!(!limiter.held.contains_key("bob"));
    }

    #[test]
    fn address_only_attempts_are_held_to_the_address_lockout() {
        // 200 refresh guesses at once from one address: the free failures
        // plus one pass, the rest are refused, one refusal sampled.
        let limiter = LoginLimiter::new(&limits(5, 20));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut held = Vec::new();
        let mut refused = Vec::new();
        for _ in 0..200 {
            match limiter.reserve_address(ip) {
                Ok(a) => held.push(a),
                Err(r) => refused.push(r),
            }
        }
        assert_eq!(held.len(), 21);
        assert!(refused.iter().all(|r| r.limit == Limit::Address));
        assert_eq!(refused.iter().filter(|r| r.audit.is_some()).count(), 1);
        for a in held {
            a.failed();
        }
        // Locked now, for logins too; no account state was made.
        assert!(limiter.reserve_address(ip).is_err());
        assert_eq!(
            limiter.reserve("alice", ip).unwrap_err().limit,
            Limit::Address
        );
        limiter.accounts.run_pending_tasks();
        assert_eq!(limiter.accounts.entry_count(), 0);
        // An undecided one is released uncounted.
        let limiter = LoginLimiter::new(&limits(5, 0));
        drop(limiter.reserve_address(ip).unwrap());
        limiter.reserve_address(ip).unwrap().succeeded();
        assert!(limiter.reserve_address(ip).is_ok());
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_their_limits() {
        let limiter = LoginLimiter::new(&limits(100, 0));
        fail(&limiter, "a", "2001:db8:1:2::1".parse().unwrap());
        assert!(
            limiter
                .reserve("b", "2001:db8:1:2:ffff::9".parse().unwrap())
                .is_err()
        );
        assert!(
            limiter
                .reserve("b", "2001:db8:1:3::1".parse().unwrap())
                .is_ok()
        );
        assert_eq!(
            address_key("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
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

    #[tokio::test]
    async fn the_hash_gate_admits_its_size_and_refuses_past_the_wait() {
        let gate = HashGate::new(Some(2), Duration::from_millis(50));
        let a = gate.enter().await.unwrap();
        let _b = gate.enter().await.unwrap();
        let refused = gate.enter().await.unwrap_err();
        assert_eq!(refused, Duration::from_secs(1));
        drop(a);
        assert!(gate.enter().await.is_ok());
        assert_eq!(gate.size(), 2);
    }

    #[tokio::test]
    async fn the_hash_gate_refuses_at_once_past_its_queue() {
        let gate = Arc::new(HashGate::new(Some(1), Duration::from_secs(30)));
        let _held = gate.enter().await.unwrap();
        let waiters: Vec<_> = (0..QUEUE_PER_PERMIT)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.enter().await.map(drop) })
            })
            .collect();
        // Wait until they all queue.
        let deadline = Instant::now() + Duration::from_secs(10);
        while gate.waiting.load(Ordering::Acquire) < QUEUE_PER_PERMIT {
            assert!(Instant::now() < deadline);
            tokio::task::yield_now().await;
        }
        let started = Instant::now();
        assert!(gate.enter().await.is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
        for w in waiters {
            w.abort();
        }
    }
}
