//! Accounts: `login`, `refresh`, `logout`, `changePassword`, `me`; for
//! admins, users, API keys and the audit log.

use std::net::IpAddr;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Enum, ID, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::{blocking, coded, grant, internal, session, state};
use crate::auth::{
    self, Auth, AuthError, CanAdminister, CanEditRules, CanIngest, CanRead, CanTriage, Capability,
    PrincipalKind,
};
use crate::store::accounts;
use crate::store::audit::Entry;

/// A role: which capabilities a user or API key has.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "auth::Role")]
pub enum Role {
    /// Everything, including users, API keys and the audit log.
    Admin,
    /// Read, triage alerts, edit rules.
    Analyst,
    /// Read only.
    Viewer,
    /// Send events; read nothing.
    Ingest,
}

fn failed(e: AuthError) -> async_graphql::Error {
    match e {
        AuthError::Store(_) | AuthError::Internal(_) => internal(e),
        e => coded(e.code(), e.to_string()),
    }
}

#[derive(SimpleObject)]
pub struct AuthPayload {
    /// A JWT for `Authorization: Bearer`, valid until `expiresAt`.
    access_token: String,
    /// Trades for a new pair once (`refresh`); revoked by `logout`.
    refresh_token: String,
    expires_at: DateTime<Utc>,
    me: Me,
}

impl From<auth::Tokens> for AuthPayload {
    fn from(t: auth::Tokens) -> Self {
        AuthPayload {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            expires_at: t.expires_at,
            me: Me::of(&t.principal),
        }
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalType {
    User,
    ApiKey,
    Local,
}

/// The caller.
#[derive(SimpleObject)]
pub struct Me {
    name: String,
    #[graphql(name = "type")]
    kind: PrincipalType,
    role: Role,
    /// What the role allows: `read data`, `triage alerts`, `edit rules`,
    /// `ingest events`, `administer`.
    capabilities: Vec<&'static str>,
}

impl Me {
    fn of(p: &auth::Principal) -> Me {
        fn has<C: Capability>(role: auth::Role) -> Option<&'static str> {
            C::allows(role).then_some(C::NAME)
        }
        let role = p.role;
        Me {
            name: p.name.clone(),
            kind: match p.kind {
                PrincipalKind::User => PrincipalType::User,
                PrincipalKind::ApiKey => PrincipalType::ApiKey,
                PrincipalKind::Local => PrincipalType::Local,
            },
            role: role.into(),
            capabilities: [
                has::<CanRead>(role),
                has::<CanTriage>(role),
                has::<CanEditRules>(role),
                has::<CanIngest>(role),
                has::<CanAdminister>(role),
            ]
            .into_iter()
            .flatten()
            .collect(),
        }
    }
}

#[derive(SimpleObject)]
pub struct User {
    username: String,
    role: Role,
    disabled: bool,
    created_at: DateTime<Utc>,
    created_by: String,
    updated_at: DateTime<Utc>,
}

impl From<accounts::User> for User {
    fn from(u: accounts::User) -> Self {
        User {
            username: u.username,
            role: u.role.into(),
            disabled: u.disabled,
            created_at: u.created_at,
            created_by: u.created_by,
            updated_at: u.updated_at,
        }
    }
}

#[derive(SimpleObject)]
pub struct ApiKey {
    id: ID,
    name: String,
    role: Role,
    created_at: DateTime<Utc>,
    created_by: String,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<accounts::ApiKey> for ApiKey {
    fn from(k: accounts::ApiKey) -> Self {
        ApiKey {
            id: ID(k.id),
            name: k.name,
            role: k.role.into(),
            created_at: k.created_at,
            created_by: k.created_by,
            revoked_at: k.revoked_at,
        }
    }
}

#[derive(SimpleObject)]
pub struct ApiKeyCreated {
    /// The key, for `Authorization: Bearer`. Shown this once: only its
    /// digest is stored.
    key: String,
    api_key: ApiKey,
}

/// One audit log entry.
#[derive(SimpleObject)]
pub struct AuditEntry {
    seq: u64,
    at: DateTime<Utc>,
    /// A user name, `apikey:<name>`, `local:<unix user>`, or for a failed
    /// login the name that was tried.
    actor: String,
    source_ip: Option<String>,
    /// `login`, `login.failed`, `user.create`, `alert.acknowledge`, ...
    action: String,
    target: Option<String>,
    before: Option<Json<serde_json::Value>>,
    after: Option<Json<serde_json::Value>>,
    /// Hex SHA-256 of the previous entry: the chain `secmon audit verify` checks.
    prev: String,
}

impl From<Entry> for AuditEntry {
    fn from(e: Entry) -> Self {
        AuditEntry {
            seq: e.seq,
            at: e.at,
            actor: e.actor,
            source_ip: e.source_ip.map(|ip| ip.to_string()),
            action: e.action,
            target: e.target,
            before: e.before.map(Json),
            after: e.after.map(Json),
            prev: e.prev,
        }
    }
}

pub type AuditConnection = Connection<String, AuditEntry, EmptyFields, EmptyFields>;

#[derive(Default)]
pub struct AccountsQuery;

#[Object]
impl AccountsQuery {
    /// The caller: who, which role, which capabilities.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Me> {
        let principal = session(ctx)?
            .principal
            .as_ref()
            .ok_or_else(|| coded("UNAUTHENTICATED", "authentication required"))?;
        Ok(Me::of(principal))
    }

    async fn users(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<User>> {
        let users = as_admin(ctx, |auth, _| Ok(auth.store().users()?)).await?;
        Ok(users.into_iter().map(User::from).collect())
    }

    async fn api_keys(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ApiKey>> {
        let keys = as_admin(ctx, |auth, _| Ok(auth.store().api_keys()?)).await?;
        Ok(keys.into_iter().map(ApiKey::from).collect())
    }

    /// The audit log, newest first.
    #[graphql(
        complexity = "super::cost(first, super::DEFAULT_PAGE, super::MAX_PAGE, child_complexity)"
    )]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(minimum = 0))] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<AuditConnection> {
        let _admin: CanAdminister = grant(ctx)?;
        let state = state(ctx)?;
        let limit = super::page(ctx, first)?;
        let before = after
            .map(|c| {
                c.parse::<u64>()
                    .map_err(|_| coded("BAD_REQUEST", "`after` is not a cursor from this API"))
            })
            .transpose()?;
        let (entries, more) =
            blocking(move || state.store.audit_entries(before, limit).map_err(internal)).await?;
        let mut connection = Connection::new(before.is_some(), more);
        connection.edges.extend(
            entries
                .into_iter()
                .map(|e| Edge::new(e.seq.to_string(), AuditEntry::from(e))),
        );
        Ok(connection)
    }
}

#[derive(Default)]
pub struct AccountsMutation;

/// Runs `f` on the accounts, on a blocking thread (argon2, redb), with the
/// caller's address.
async fn with_auth<T: Send + 'static>(
    ctx: &Context<'_>,
    f: impl FnOnce(&Auth, IpAddr) -> Result<T, AuthError> + Send + 'static,
) -> async_graphql::Result<T> {
    let ip = session(ctx)?.ip;
    let state = state(ctx)?;
    blocking(move || f(&state.auth, ip).map_err(failed)).await
}

/// [`with_auth`] for administrators only.
async fn as_admin<T: Send + 'static>(
    ctx: &Context<'_>,
    f: impl FnOnce(&Auth, &CanAdminister) -> Result<T, AuthError> + Send + 'static,
) -> async_graphql::Result<T> {
    let cap: CanAdminister = grant(ctx)?;
    with_auth(ctx, move |auth, _| f(auth, &cap)).await
}

/// [`as_admin`] for an operation that hashes a password: it runs holding a
/// slot of the hash gate (`RATE_LIMITED` when none frees up in time).
async fn as_admin_hashing<T: Send + 'static>(
    ctx: &Context<'_>,
    operation: &'static str,
    f: impl FnOnce(&Auth, &CanAdminister) -> Result<T, AuthError> + Send + 'static,
) -> async_graphql::Result<T> {
    let cap: CanAdminister = grant(ctx)?;
    let slot = state(ctx)?
        .auth
        .hash_slot(operation)
        .await
        .map_err(failed)?;
    with_auth(ctx, move |auth, _| {
        let _slot = slot;
        f(auth, &cap)
    })
    .await
}

#[Object]
impl AccountsMutation {
    /// Logs in with a password. Unknown user and wrong password get the
    /// same `UNAUTHENTICATED` answer; repeated failures lock the account
    /// and the address for growing times (`RATE_LIMITED`), and so does a
    /// node whose password-hashing slots are all busy.
    async fn login(
        &self,
        ctx: &Context<'_>,
        username: String,
        password: String,
    ) -> async_graphql::Result<AuthPayload> {
        let ip = session(ctx)?.ip;
        state(ctx)?
            .auth
            .login_async(username, password, ip)
            .await
            .map(AuthPayload::from)
            .map_err(failed)
    }

    /// Trades a refresh token for a new access and refresh token. Each
    /// refresh token works once; presenting a spent one again ends the
    /// whole session.
    async fn refresh(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<AuthPayload> {
        with_auth(ctx, move |auth, ip| {
            auth.refresh(&refresh_token, ip).map(AuthPayload::from)
        })
        .await
    }

    /// Ends the session the refresh token belongs to.
    async fn logout(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<bool> {
        with_auth(ctx, move |auth, ip| {
            auth.logout(&refresh_token, ip).map(|()| true)
        })
        .await
    }

    /// Changes the caller's own password; every session of the user ends.
    /// A wrong current password counts towards the login lockout of the
    /// user and the address (`RATE_LIMITED` once locked).
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        current_password: String,
        new_password: String,
    ) -> async_graphql::Result<bool> {
        let session = session(ctx)?;
        let principal = session
            .principal
            .clone()
            .ok_or_else(|| coded("UNAUTHENTICATED", "authentication required"))?;
        state(ctx)?
            .auth
            .change_password_async(principal, current_password, new_password, session.ip)
            .await
            .map(|()| true)
            .map_err(failed)
    }

    async fn create_user(
        &self,
        ctx: &Context<'_>,
        username: String,
        password: String,
        role: Role,
    ) -> async_graphql::Result<User> {
        as_admin_hashing(ctx, "create_user", move |auth, cap| {
            auth.create_user(cap, &username, &password, role.into())
                .map(User::from)
        })
        .await
    }

    /// Changes a user's role; the user's sessions end.
    async fn set_user_role(
        &self,
        ctx: &Context<'_>,
        username: String,
        role: Role,
    ) -> async_graphql::Result<User> {
        as_admin(ctx, move |auth, cap| {
            auth.set_role(cap, &username, role.into()).map(User::from)
        })
        .await
    }

    /// Disables (or enables again) a user; disabling ends its sessions.
    async fn set_user_disabled(
        &self,
        ctx: &Context<'_>,
        username: String,
        disabled: bool,
    ) -> async_graphql::Result<User> {
        as_admin(ctx, move |auth, cap| {
            auth.set_disabled(cap, &username, disabled).map(User::from)
        })
        .await
    }

    /// Sets another user's password; the user's sessions end.
    async fn reset_password(
        &self,
        ctx: &Context<'_>,
        username: String,
        password: String,
    ) -> async_graphql::Result<User> {
        as_admin_hashing(ctx, "reset_password", move |auth, cap| {
            auth.reset_password(cap, &username, &password)
                .map(User::from)
        })
        .await
    }

    /// Creates an API key; `key` is shown in this answer only.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        name: String,
        role: Role,
    ) -> async_graphql::Result<ApiKeyCreated> {
        as_admin(ctx, move |auth, cap| {
            auth.create_api_key(cap, &name, role.into())
                .map(|(record, key)| ApiKeyCreated {
                    key,
                    api_key: record.into(),
                })
        })
        .await
    }

    /// Revokes an API key at once.
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ApiKey> {
        as_admin(ctx, move |auth, cap| {
            auth.revoke_api_key(cap, &id).map(ApiKey::from)
        })
        .await
    }
}
