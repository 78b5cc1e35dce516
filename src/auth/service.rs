//! [`Auth`]: logins, tokens, API keys and accounts, over the store.
//!
//! Every method that hashes a password (login, password changes, creating
//! users) blocks for the argon2 work: call it from `spawn_blocking`, after
//! taking a slot of the hash gate ([`Auth::hash_slot`]); [`Auth::login_async`]
//! and [`Auth::change_password_async`] do both, after reserving the attempt
//! against the lockout. The others are quick (a cache hit, or one small
//! redb transaction).

use sha2::Digest;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ulid::Ulid;

use super::limit::{Attempt, HashGate, LoginLimiter, Refusal, RequestLimiter};
use super::token::{self, Jwt, TokenError};
use super::{Actor, CanAdminister, Capability, Principal, PrincipalKind, Role, password};
use crate::store::accounts::{AccountsTxn, ApiKey, ConsoleSession, RefreshToken, User};
use crate::store::audit::Record;
use crate::store::{self, Store};
use crate::telemetry::metric;

/// How long a looked-up user or API key is trusted before it is read again.
/// Changes made through [`Auth`] invalidate it at once.
const PRINCIPAL_TTL: Duration = Duration::from_secs(30);
/// The one answer to a failed login, whatever failed.
const BAD_LOGIN: &str = "invalid username or password";
/// The audit actor of a refresh whose token names nobody.
const ANONYMOUS: &str = "anonymous";
/// (metric, audit action) of a refused login, password change, refresh.
const LOGIN_LOCKED: (&str, &str) = (metric::LOGINS, "login.locked");
const CHANGE_LOCKED: (&str, &str) = (metric::PASSWORD_CHANGES, "user.change_password.locked");
const REFRESH_LOCKED: (&str, &str) = (metric::TOKEN_REFRESHES, "token.refresh.locked");

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No, or no valid, credentials. The message is safe to show.
    #[error("{0}")]
    Unauthenticated(String),
    /// Too many attempts: try again after the wait.
    #[error("too many failed logins: try again in {} s", secs(*.0))]
    Locked(Duration),
    /// Every password-hashing slot is busy: try again after the wait.
    #[error("too many password checks at once: try again in {} s", secs(*.0))]
    Busy(Duration),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("{0}")]
    Internal(String),
}

impl AuthError {
    /// The stable code clients see in `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Unauthenticated(_) => "UNAUTHENTICATED",
            AuthError::Locked(_) | AuthError::Busy(_) => "RATE_LIMITED",
            AuthError::Invalid(_) => "BAD_REQUEST",
            AuthError::Conflict(_) => "CONFLICT",
            AuthError::NotFound(_) => "NOT_FOUND",
            AuthError::Store(_) | AuthError::Internal(_) => "INTERNAL",
        }
    }
}

impl From<password::PasswordError> for AuthError {
    fn from(e: password::PasswordError) -> Self {
        match e {
            password::PasswordError::Hash(e) => AuthError::Internal(e),
            e => AuthError::Invalid(e.to_string()),
        }
    }
}

/// Whole seconds to wait, rounded up, at least 1.
fn secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

fn random() -> Result<String, AuthError> {
    token::random_secret().map_err(|e| AuthError::Internal(format!("no randomness: {e}")))
}

/// How a refresh transaction ended.
enum Refreshed {
    Issued(Tokens),
    /// A spent token again: its family was revoked.
    Reused,
    /// Expired, or its user gone or disabled: its family was removed.
    Refused,
    /// No such token.
    Unknown,
}

/// How a successful sign-in is turned into what the caller gets, inside
/// the transaction that audits it.
type Issuer<T> = fn(&Auth, &AccountsTxn, &User) -> Result<T, AuthError>;

/// How long a console session lasts, whatever is done with it.
pub const CONSOLE_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// What a console sign-in hands out: the cookie's secret.
#[derive(Debug, Clone)]
pub struct ConsoleLogin {
    pub secret: String,
    pub expires_at: DateTime<Utc>,
    pub principal: Principal,
}

/// What a login or a refresh hands out.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: DateTime<Utc>,
    pub principal: Principal,
}

pub struct Auth {
    store: Store,
    jwt: Jwt,
    refresh_ttl: Duration,
    logins: LoginLimiter,
    hashes: HashGate,
    trusted_proxies: Vec<crate::config::Cidr>,
    forwarded_header: crate::config::ForwardedHeader,
    pub requests: RequestLimiter,
    users: moka::sync::Cache<String, Arc<User>>,
    keys: moka::sync::Cache<String, Arc<ApiKey>>,
    /// Console sessions by digest.
    sessions: moka::sync::Cache<String, Arc<ConsoleSession>>,
    /// SHA-256 of `auth.fleet_api_key`, when set.
    fleet_key: Option<[u8; 32]>,
}

/// The principal the fleet credential authenticates as.
pub const FLEET_PRINCIPAL: &str = "fleet";

/// User names: lower case letters, digits and `._@-`, up to 64, starting
/// with a letter or digit.
pub fn valid_username(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._@-".contains(c))
}

impl Auth {
    pub fn new(store: Store, jwt_secret: &[u8], cfg: &crate::config::Auth) -> Auth {
        let hashes = HashGate::new(
            cfg.max_concurrent_hashes,
            Duration::from_millis(cfg.hash_queue_wait_ms),
        );
        password::keep_memory_for(hashes.size());
        Auth {
            store,
            jwt: Jwt::new(
                jwt_secret,
                Duration::from_secs(cfg.access_token_ttl_seconds),
            ),
            refresh_ttl: Duration::from_secs(cfg.refresh_token_ttl_seconds),
            logins: LoginLimiter::new(&cfg.login),
            hashes,
            trusted_proxies: cfg.trusted_proxies.clone(),
            forwarded_header: cfg.forwarded_header,
            requests: RequestLimiter::new(&cfg.rate_limit),
            users: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(PRINCIPAL_TTL)
                .build(),
            keys: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(PRINCIPAL_TTL)
                .build(),
            sessions: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(PRINCIPAL_TTL)
                .build(),
            fleet_key: cfg
                .fleet_api_key
                .as_ref()
                .map(|key| sha2::Sha256::digest(key.expose().as_bytes()).into()),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The networks whose `Forwarded` / `X-Forwarded-For` are believed,
    /// and which of the two headers they write.
    pub fn trusted_proxies(&self) -> (&[crate::config::Cidr], crate::config::ForwardedHeader) {
        (&self.trusted_proxies, self.forwarded_header)
    }

    /// A password-hashing slot for `operation` (a metric label: `login`,
    /// `change_password`, `create_user`, `reset_password`), held until the
    /// permit drops; `Busy` when none frees up within the queue wait.
    pub async fn hash_slot(
        &self,
        operation: &'static str,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, AuthError> {
        self.hashes.enter().await.map_err(|wait| {
            ::metrics::counter!(metric::PASSWORD_HASH_BUSY, "operation" => operation).increment(1);
            AuthError::Busy(wait)
        })
    }

    /// How long an access token lives.
    pub fn access_ttl(&self) -> Duration {
        self.jwt.ttl()
    }

    /// The principal behind a bearer credential: an access token or an
    /// API key.
    pub fn authenticate(&self, credential: &str) -> Result<Principal, AuthError> {
        // Digests compared, so the time taken says nothing about the key.
        if let Some(fleet) = &self.fleet_key
            && sha2::Sha256::digest(credential.as_bytes()).as_slice() == fleet.as_slice()
        {
            return Ok(Principal {
                name: FLEET_PRINCIPAL.to_owned(),
                kind: PrincipalKind::ApiKey,
                role: Role::Viewer,
            });
        }
        if let Some((id, secret)) = token::parse_api_key(credential) {
            return self.authenticate_key(id, secret);
        }
        if !token::is_jwt(credential) {
            return Err(AuthError::Unauthenticated(
                "the bearer credential is neither an access token nor an API key".into(),
            ));
        }
        let claims = self.jwt.verify(credential).map_err(|e| match e {
            TokenError::Expired | TokenError::Invalid => AuthError::Unauthenticated(e.to_string()),
            TokenError::Sign(e) => AuthError::Internal(e),
        })?;
        let user = self.cached_user(&claims.sub)?;
        match user {
            Some(user) if !user.disabled && user.epoch == claims.epoch => Ok(Principal {
                name: user.username.clone(),
                kind: PrincipalKind::User,
                role: user.role,
            }),
            _ => Err(AuthError::Unauthenticated(
                "the access token is no longer valid: log in again".into(),
            )),
        }
    }

    /// [`Auth::authenticate`] for async callers: a principal not in the
    /// cache is read from redb, off the async threads.
    pub async fn authenticate_async(
        self: &Arc<Self>,
        credential: String,
    ) -> Result<Principal, AuthError> {
        let auth = self.clone();
        tokio::task::spawn_blocking(move || auth.authenticate(&credential))
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?
    }

    fn authenticate_key(&self, id: &str, secret: &str) -> Result<Principal, AuthError> {
        let refused = || AuthError::Unauthenticated("the API key is not valid".into());
        let key = match self.keys.get(id) {
            Some(key) => key,
            None => {
                let key = Arc::new(self.store.api_key(id)?.ok_or_else(refused)?);
                self.keys.insert(id.to_owned(), key.clone());
                key
            }
        };
        let given = token::digest(secret);
        if key.revoked_at.is_some()
            || !crate::api::constant_time_eq(given.as_bytes(), key.digest.as_bytes())
        {
            return Err(refused());
        }
        Ok(Principal {
            name: key.name.clone(),
            kind: PrincipalKind::ApiKey,
            role: key.role,
        })
    }

    fn cached_user(&self, name: &str) -> Result<Option<Arc<User>>, AuthError> {
        if let Some(user) = self.users.get(name) {
            return Ok(Some(user));
        }
        let Some(user) = self.store.user(name)? else {
            return Ok(None);
        };
        let user = Arc::new(user);
        self.users.insert(name.to_owned(), user.clone());
        Ok(Some(user))
    }

    /// Checks a password (blocking: argon2) and hands out tokens. Unknown
    /// user, wrong password and disabled user get the same answer, in the
    /// same time; every attempt is audited. The attempt is reserved against
    /// the lockout before the password is hashed. Async callers use
    /// [`Auth::login_async`], which also bounds the hashing.
    pub fn login(&self, username: &str, password: &str, ip: IpAddr) -> Result<Tokens, AuthError> {
        let attempt = self
            .logins
            .reserve(username, ip)
            .map_err(|refusal| self.refused(LOGIN_LOCKED, username, ip, refusal))?;
        self.check_login(attempt, username, password, ip, Auth::new_tokens)
    }

    /// [`Auth::login`] for async callers: the attempt is reserved first
    /// (a refused one never waits for, or takes, a hashing slot), then the
    /// password is checked on a blocking thread holding a slot of the hash
    /// gate (`Busy` when none frees up in time; the attempt is then
    /// released uncounted).
    pub async fn login_async(
        self: &Arc<Self>,
        username: String,
        password: String,
        ip: IpAddr,
    ) -> Result<Tokens, AuthError> {
        self.sign_in(username, password, ip, Auth::new_tokens).await
    }

    /// [`Auth::login_async`] for the console: the same checks, lockouts
    /// and audit, and a console session instead of tokens.
    pub async fn console_login_async(
        self: &Arc<Self>,
        username: String,
        password: String,
        ip: IpAddr,
    ) -> Result<ConsoleLogin, AuthError> {
        self.sign_in(username, password, ip, Auth::new_console_session)
            .await
    }

    async fn sign_in<T: Send + 'static>(
        self: &Arc<Self>,
        username: String,
        password: String,
        ip: IpAddr,
        issue: Issuer<T>,
    ) -> Result<T, AuthError> {
        let attempt = match self.logins.reserve(&username, ip) {
            Ok(attempt) => attempt,
            Err(refusal) => {
                return Err(self
                    .refused_async(LOGIN_LOCKED, username, ip, refusal)
                    .await);
            }
        };
        let slot = self.hash_slot("login").await.inspect_err(|_| {
            ::metrics::counter!(metric::LOGINS, "result" => "busy").increment(1);
        })?;
        let auth = self.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            auth.check_login(attempt, &username, &password, ip, issue)
        })
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))?
    }

    /// An attempt the lockout refused: counted (`result="locked"` of the
    /// operation's metric, and by limit), and the sampled one of its lockout
    /// period audited (blocking when it is). `username` is empty for a
    /// refresh.
    fn refused(
        &self,
        (counter, action): (&'static str, &'static str),
        username: &str,
        ip: IpAddr,
        refusal: Refusal,
    ) -> AuthError {
        ::metrics::counter!(counter, "result" => "locked").increment(1);
        ::metrics::counter!(metric::LOCKOUT_REFUSALS, "limit" => refusal.limit.as_str())
            .increment(1);
        if let Some(unaudited) = refusal.audit {
            let attempted: String = username.chars().take(64).collect();
            let actor = Actor {
                name: if attempted.is_empty() {
                    ANONYMOUS.to_owned()
                } else {
                    attempted.clone()
                },
                ip: Some(ip),
            };
            let mut record = Record::new(action);
            if !attempted.is_empty() {
                record = record.target(attempted);
            }
            let record = record.after(serde_json::json!({
                "limit": refusal.limit.as_str(),
                "retry_after_seconds": secs(refusal.wait),
                "refused_since_last_entry": unaudited,
            }));
            if let Err(e) = self.store.audit(&actor, record) {
                tracing::error!(error = %e, "a refused login was not audited");
            }
        }
        AuthError::Locked(refusal.wait)
    }

    /// [`Auth::refused`] off the async threads when it writes.
    async fn refused_async(
        self: &Arc<Self>,
        action: (&'static str, &'static str),
        username: String,
        ip: IpAddr,
        refusal: Refusal,
    ) -> AuthError {
        if refusal.audit.is_none() {
            return self.refused(action, &username, ip, refusal);
        }
        let auth = self.clone();
        tokio::task::spawn_blocking(move || auth.refused(action, &username, ip, refusal))
            .await
            .unwrap_or_else(|e| AuthError::Internal(e.to_string()))
    }

    /// The password check of a reserved login attempt (blocking: argon2).
    fn check_login<T>(
        &self,
        attempt: Attempt,
        username: &str,
        password: &str,
        ip: IpAddr,
        issue: Issuer<T>,
    ) -> Result<T, AuthError> {
        let user = self.store.user(username)?;
        let ok = match &user {
            Some(u) => password::verify(password, &u.password_hash) && !u.disabled,
            None => {
                password::verify_dummy(password);
                false
            }
        };
        let attempted: String = username.chars().take(64).collect();
        let actor = Actor {
            name: attempted.clone(),
            ip: Some(ip),
        };
        let Some(user) = user.filter(|_| ok) else {
            attempt.failed();
            ::metrics::counter!(metric::LOGINS, "result" => "failure").increment(1);
            self.store
                .audit(&actor, Record::new("login.failed").target(attempted))?;
            return Err(AuthError::Unauthenticated(BAD_LOGIN.into()));
        };
        attempt.succeeded();
        ::metrics::counter!(metric::LOGINS, "result" => "success").increment(1);
        self.store.accounts_write(|tx| {
            tx.audit(&actor, Record::new("login").target(&user.username))?;
            issue(self, tx, &user)
        })
    }

    /// Tokens of a new family, at a login.
    fn new_tokens(&self, tx: &AccountsTxn, user: &User) -> Result<Tokens, AuthError> {
        self.issue(tx, user, Ulid::generate().to_string())
    }

    /// A console session, at a console sign-in.
    fn new_console_session(
        &self,
        tx: &AccountsTxn,
        user: &User,
    ) -> Result<ConsoleLogin, AuthError> {
        let secret = format!("{}{}", token::CONSOLE_PREFIX, random()?);
        let now = Utc::now();
        let expires_at = now + CONSOLE_SESSION_TTL;
        tx.put_console_session(
            &token::digest(&secret),
            &ConsoleSession {
                username: user.username.clone(),
                epoch: user.epoch,
                created_at: now,
                expires_at,
            },
        )?;
        Ok(ConsoleLogin {
            secret,
            expires_at,
            principal: Principal {
                name: user.username.clone(),
                kind: PrincipalKind::User,
                role: user.role,
            },
        })
    }

    /// The user behind a console session's secret: refused once the
    /// session expired or ended (sign-out), or the user's epoch moved on
    /// (a password or role change, disabling) or the user is gone.
    pub fn console_principal(&self, secret: &str) -> Result<Principal, AuthError> {
        let ended =
            || AuthError::Unauthenticated("the console session has ended: sign in again".into());
        if !secret.starts_with(token::CONSOLE_PREFIX) {
            return Err(ended());
        }
        let digest = token::digest(secret);
        let session = match self.sessions.get(&digest) {
            Some(session) => session,
            None => {
                let session = Arc::new(self.store.console_session(&digest)?.ok_or_else(ended)?);
                self.sessions.insert(digest, session.clone());
                session
            }
        };
        if session.expires_at <= Utc::now() {
            return Err(ended());
        }
        match self.cached_user(&session.username)? {
            Some(user) if !user.disabled && user.epoch == session.epoch => Ok(Principal {
                name: user.username.clone(),
                kind: PrincipalKind::User,
                role: user.role,
            }),
            _ => Err(ended()),
        }
    }

    /// [`Auth::console_principal`] off the async threads (a session not in
    /// the cache is read from redb).
    pub async fn console_principal_async(
        self: &Arc<Self>,
        secret: String,
    ) -> Result<Principal, AuthError> {
        let auth = self.clone();
        tokio::task::spawn_blocking(move || auth.console_principal(&secret))
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?
    }

    /// Ends a console session (sign-out), audited as `logout`.
    pub fn console_logout(&self, secret: &str, ip: IpAddr) -> Result<(), AuthError> {
        let digest = token::digest(secret);
        self.sessions.invalidate(&digest);
        self.store.accounts_write(|tx| {
            if let Some(session) = tx.remove_console_session(&digest)? {
                let actor = Actor {
                    name: session.username.clone(),
                    ip: Some(ip),
                };
                tx.audit(
                    &actor,
                    Record::new("logout")
                        .target(&session.username)
                        .after(serde_json::json!({ "session": "console" })),
                )?;
            }
            Ok(())
        })
    }

    /// Stores a new refresh token of `family` and signs an access token.
    fn issue(&self, tx: &AccountsTxn, user: &User, family: String) -> Result<Tokens, AuthError> {
        let refresh = format!("{}{}", token::REFRESH_PREFIX, random()?);
        let now = Utc::now();
        tx.put_refresh_token(
            &token::digest(&refresh),
            &RefreshToken {
                username: user.username.clone(),
                family,
                issued_at: now,
                expires_at: now + self.refresh_ttl,
                used: false,
            },
        )?;
        let (access, expires_at) = self
            .jwt
            .issue(&user.username, user.epoch)
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        Ok(Tokens {
            access_token: access,
            refresh_token: refresh,
            expires_at,
            principal: Principal {
                name: user.username.clone(),
                kind: PrincipalKind::User,
                role: user.role,
            },
        })
    }

    /// Trades a refresh token for a new pair; the old one is spent. A spent
    /// token presented again revokes its whole family: one of the two
    /// holders is not the user. Every outcome is audited: `token.refresh`,
    /// `token.reuse_revoked`, `token.refresh.failed` (an expired token, or
    /// its user gone or disabled: its family is removed with the entry).
    /// The attempt is reserved against the address's lockout before the
    /// token is looked up, like a login: a token nobody was issued counts
    /// as a failure of the address, so however many arrive at once, at most
    /// `max_failures_per_ip + 1` of them are looked up and audited before
    /// the address locks; the refusals are counted and sampled into the
    /// audit log (`token.refresh.locked`), one entry per lockout period.
    pub fn refresh(&self, refresh_token: &str, ip: IpAddr) -> Result<Tokens, AuthError> {
        let attempt = self
            .logins
            .reserve_address(ip)
            .map_err(|refusal| self.refused(REFRESH_LOCKED, "", ip, refusal))?;
        let digest = token::digest(refresh_token);
        let invalid = || AuthError::Unauthenticated("the refresh token is not valid".into());
        let outcome = self.store.accounts_write(|tx| {
            let Some(mut stored) = tx.refresh_token(&digest)? else {
                return Ok(Refreshed::Unknown);
            };
            let actor = Actor {
                name: stored.username.clone(),
                ip: Some(ip),
            };
            let family = stored.family.clone();
            if stored.used {
                tx.remove_refresh_tokens(|t| t.family == family)?;
                tx.audit(
                    &actor,
                    Record::new("token.reuse_revoked").target(&stored.username),
                )?;
                return Ok(Refreshed::Reused);
            }
            let user = tx.user(&stored.username)?;
            let reason = match &user {
                None => Some("the user no longer exists"),
                Some(u) if u.disabled => Some("the user is disabled"),
                Some(_) if stored.expires_at <= Utc::now() => Some("the token expired"),
                Some(_) => None,
            };
            let (Some(user), None) = (user, reason) else {
                tx.remove_refresh_tokens(|t| t.family == family)?;
                tx.audit(
                    &actor,
                    Record::new("token.refresh.failed")
                        .target(&stored.username)
                        .after(serde_json::json!({ "reason": reason })),
                )?;
                return Ok(Refreshed::Refused);
            };
            stored.used = true;
            tx.put_refresh_token(&digest, &stored)?;
            tx.audit(&actor, Record::new("token.refresh").target(&user.username))?;
            self.issue(tx, &user, stored.family).map(Refreshed::Issued)
        })?;
        let result = match &outcome {
            Refreshed::Issued(_) => "success",
            Refreshed::Reused => "reused",
            Refreshed::Refused => "refused",
            Refreshed::Unknown => "unknown",
        };
        ::metrics::counter!(metric::TOKEN_REFRESHES, "result" => result).increment(1);
        match outcome {
            Refreshed::Issued(tokens) => {
                attempt.succeeded();
                Ok(tokens)
            }
            Refreshed::Unknown => {
                attempt.failed();
                let actor = Actor {
                    name: ANONYMOUS.to_owned(),
                    ip: Some(ip),
                };
                self.store.audit(
                    &actor,
                    Record::new("token.refresh.failed")
                        .after(serde_json::json!({ "reason": "no such refresh token" })),
                )?;
                Err(invalid())
            }
            Refreshed::Reused | Refreshed::Refused => Err(invalid()),
        }
    }

    /// Revokes the refresh token's whole family (this login, on every
    /// device it was refreshed on).
    pub fn logout(&self, refresh_token: &str, ip: IpAddr) -> Result<(), AuthError> {
        let digest = token::digest(refresh_token);
        self.store.accounts_write(|tx| {
            let Some(stored) = tx.refresh_token(&digest)? else {
                return Err(AuthError::Unauthenticated(
                    "the refresh token is not valid".into(),
                ));
            };
            let family = stored.family.clone();
            tx.remove_refresh_tokens(|t| t.family == family)?;
            let actor = Actor {
                name: stored.username.clone(),
                ip: Some(ip),
            };
            tx.audit(&actor, Record::new("logout").target(&stored.username))?;
            Ok(())
        })
    }

    /// A user changes their own password (blocking: argon2). Every session
    /// of the user ends: its refresh tokens are revoked and its access
    /// tokens stop working. The current password is checked like a login:
    /// reserved against the user's and the address's lockout first, a
    /// wrong one counted and audited (`user.change_password.failed`).
    pub fn change_password(
        &self,
        principal: &Principal,
        old: &str,
        new: &str,
        ip: IpAddr,
    ) -> Result<(), AuthError> {
        if principal.kind != PrincipalKind::User {
            return Err(AuthError::Invalid("only users have passwords".into()));
        }
        password::check_policy(new)?;
        let attempt = self
            .logins
            .reserve(&principal.name, ip)
            .map_err(|refusal| self.refused(CHANGE_LOCKED, &principal.name, ip, refusal))?;
        self.check_password_change(attempt, principal, old, new, ip)
    }

    /// [`Auth::change_password`] for async callers: reserved first, then
    /// checked and hashed on a blocking thread holding a hash-gate slot.
    pub async fn change_password_async(
        self: &Arc<Self>,
        principal: Principal,
        old: String,
        new: String,
        ip: IpAddr,
    ) -> Result<(), AuthError> {
        if principal.kind != PrincipalKind::User {
            return Err(AuthError::Invalid("only users have passwords".into()));
        }
        password::check_policy(&new)?;
        let attempt = match self.logins.reserve(&principal.name, ip) {
            Ok(attempt) => attempt,
            Err(refusal) => {
                return Err(self
                    .refused_async(CHANGE_LOCKED, principal.name.clone(), ip, refusal)
                    .await);
            }
        };
        let slot = self.hash_slot("change_password").await.inspect_err(|_| {
            ::metrics::counter!(metric::PASSWORD_CHANGES, "result" => "busy").increment(1);
        })?;
        let auth = self.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            auth.check_password_change(attempt, &principal, &old, &new, ip)
        })
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))?
    }

    fn check_password_change(
        &self,
        attempt: Attempt,
        principal: &Principal,
        old: &str,
        new: &str,
        ip: IpAddr,
    ) -> Result<(), AuthError> {
        let user = self
            .store
            .user(&principal.name)?
            .ok_or_else(|| AuthError::NotFound("no such user".into()))?;
        let actor = Actor {
            name: principal.name.clone(),
            ip: Some(ip),
        };
        if !password::verify(old, &user.password_hash) {
            attempt.failed();
            ::metrics::counter!(metric::PASSWORD_CHANGES, "result" => "failure").increment(1);
            self.store.audit(
                &actor,
                Record::new("user.change_password.failed").target(&principal.name),
            )?;
            return Err(AuthError::Unauthenticated(
                "the current password is wrong".into(),
            ));
        }
        attempt.succeeded();
        let hash = password::hash(new)?;
        self.update_user(&actor, &principal.name, "user.change_password", |u| {
            u.password_hash = hash;
            Ok(())
        })?;
        ::metrics::counter!(metric::PASSWORD_CHANGES, "result" => "success").increment(1);
        Ok(())
    }

    /// Creates a user (blocking: argon2).
    pub fn create_user(
        &self,
        cap: &CanAdminister,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<User, AuthError> {
        if !valid_username(username) {
            return Err(AuthError::Invalid(format!(
                "`{username}` is not a valid user name: lower case letters, digits and ._@- only, at most 64"
            )));
        }
        let hash = password::hash(password)?;
        let now = Utc::now();
        let user = User {
            username: username.to_owned(),
            role,
            password_hash: hash,
            disabled: false,
            epoch: 0,
            created_at: now,
            created_by: cap.actor().name.clone(),
            updated_at: now,
        };
        self.store.accounts_write(|tx| {
            if tx.user(username)?.is_some() {
                return Err(AuthError::Conflict(format!(
                    "user `{username}` already exists"
                )));
            }
            tx.put_user(&user)?;
            tx.audit(
                cap.actor(),
                Record::new("user.create")
                    .target(username)
                    .after(serde_json::json!({ "role": role })),
            )?;
            Ok(user.clone())
        })
    }

    /// Creates `admin` with `password` when no user exists yet; whether it
    /// did (blocking: argon2).
    pub fn bootstrap_admin(&self, password: &str) -> Result<bool, AuthError> {
        if !self.store.users()?.is_empty() {
            return Ok(false);
        }
        let cap: CanAdminister = Principal::local()
            .grant(None)
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        match self.create_user(&cap, "admin", password, Role::Admin) {
            Ok(_) => Ok(true),
            Err(AuthError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn set_role(
        &self,
        cap: &CanAdminister,
        username: &str,
        role: Role,
    ) -> Result<User, AuthError> {
        self.update_user(cap.actor(), username, "user.set_role", |u| {
            u.role = role;
            Ok(())
        })
    }

    pub fn set_disabled(
        &self,
        cap: &CanAdminister,
        username: &str,
        disabled: bool,
    ) -> Result<User, AuthError> {
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        self.update_user(cap.actor(), username, action, |u| {
            u.disabled = disabled;
            Ok(())
        })
    }

    /// An administrator sets a user's password (blocking: argon2).
    pub fn reset_password(
        &self,
        cap: &CanAdminister,
        username: &str,
        password: &str,
    ) -> Result<User, AuthError> {
        let hash = password::hash(password)?;
        self.update_user(cap.actor(), username, "user.reset_password", |u| {
            u.password_hash = hash;
            Ok(())
        })
    }

    /// Applies `change` to a user, moves its epoch on (its tokens stop
    /// working), revokes its refresh tokens, and audits what changed.
    fn update_user(
        &self,
        actor: &Actor,
        username: &str,
        action: &str,
        change: impl FnOnce(&mut User) -> Result<(), AuthError>,
    ) -> Result<User, AuthError> {
        let user = self.store.accounts_write(|tx| {
            let mut user = tx
                .user(username)?
                .ok_or_else(|| AuthError::NotFound(format!("no user `{username}`")))?;
            let before = serde_json::json!({ "role": user.role, "disabled": user.disabled });
            change(&mut user)?;
            user.epoch = user.epoch.wrapping_add(1);
            user.updated_at = Utc::now();
            tx.put_user(&user)?;
            tx.remove_refresh_tokens(|t| t.username == username)?;
            tx.audit(
                actor,
                Record::new(action)
                    .target(username)
                    .before(before)
                    .after(serde_json::json!({ "role": user.role, "disabled": user.disabled })),
            )?;
            Ok::<_, AuthError>(user)
        })?;
        self.users.invalidate(username);
        Ok(user)
    }

    /// Creates an API key; returns it with the key itself, which is shown
    /// this once and stored only as a digest.
    pub fn create_api_key(
        &self,
        cap: &CanAdminister,
        name: &str,
        role: Role,
    ) -> Result<(ApiKey, String), AuthError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(AuthError::Invalid(
                "an API key name has 1 to 64 printable characters".into(),
            ));
        }
        let id = Ulid::generate().to_string().to_lowercase();
        let key =
            token::api_key(&id).map_err(|e| AuthError::Internal(format!("no randomness: {e}")))?;
        let (_, secret) = token::parse_api_key(&key)
            .ok_or_else(|| AuthError::Internal("malformed new key".into()))?;
        let record = ApiKey {
            id: id.clone(),
            name: name.to_owned(),
            role,
            digest: token::digest(secret),
            created_at: Utc::now(),
            created_by: cap.actor().name.clone(),
            revoked_at: None,
        };
        self.store.accounts_write(|tx| {
            tx.put_api_key(&record)?;
            tx.audit(
                cap.actor(),
                Record::new("apikey.create")
                    .target(&id)
                    .after(serde_json::json!({ "name": name, "role": role })),
            )?;
            Ok::<_, AuthError>(())
        })?;
        Ok((record, key))
    }

    pub fn revoke_api_key(&self, cap: &CanAdminister, id: &str) -> Result<ApiKey, AuthError> {
        let key = self.store.accounts_write(|tx| {
            let mut key = tx
                .api_key(id)?
                .ok_or_else(|| AuthError::NotFound(format!("no API key `{id}`")))?;
            if key.revoked_at.is_none() {
                key.revoked_at = Some(Utc::now());
                tx.put_api_key(&key)?;
                tx.audit(
                    cap.actor(),
                    Record::new("apikey.revoke")
                        .target(id)
                        .before(serde_json::json!({ "name": key.name, "revoked": false }))
                        .after(serde_json::json!({ "name": key.name, "revoked": true })),
                )?;
            }
            Ok::<_, AuthError>(key)
        })?;
        self.keys.invalidate(id);
        Ok(key)
    }
}
