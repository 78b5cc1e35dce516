//! Accounts in redb: `users` (name -> user), `api_keys` (id -> key, its
//! secret only as a digest), `refresh_tokens` (digest -> token) and
//! `console_sessions` (digest -> the console's sign-in session). The
//! rules about them (rotation, lockout, who may do what) live in
//! [`crate::auth`]; this module stores and reads, one transaction per
//! [`Store::accounts_write`] call, with the audit entry inside it.

use chrono::{DateTime, Utc};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Error, Result, Store, audit};
use crate::auth::{Actor, Role};

pub(super) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
pub(super) const API_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("api_keys");
pub(super) const REFRESH_TOKENS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("refresh_tokens");
pub(super) const CONSOLE_SESSIONS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("console_sessions");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub username: String,
    pub role: Role,
    /// argon2id, PHC string.
    pub password_hash: String,
    pub disabled: bool,
    /// Moves on at each password change, role change or disabling; access
    /// tokens of an older epoch are refused.
    pub epoch: u32,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the key's secret part.
    pub digest: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RefreshToken {
    pub username: String,
    /// Every token descended from one login shares it: reusing a replaced
    /// token revokes the whole family (it was stolen, or replayed).
    pub family: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Replaced by a newer token of the family.
    pub used: bool,
}

/// A console sign-in (the cookie holds its secret; stored by digest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConsoleSession {
    pub username: String,
    /// The user's epoch at sign-in: a password or role change, or disabling
    /// the user, ends the session.
    pub epoch: u32,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        seq: 0,
        reason: format!("{what}: {e}"),
    })
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Corrupt {
        seq: 0,
        reason: e.to_string(),
    })
}

/// One write transaction over the account tables.
pub struct AccountsTxn<'a> {
    txn: &'a WriteTransaction,
}

impl AccountsTxn<'_> {
    pub fn user(&self, name: &str) -> Result<Option<User>> {
        let table = self.txn.open_table(USERS)?;
        let user = table.get(name)?;
        user.map(|v| decode("user", v.value())).transpose()
    }

    pub fn put_user(&self, user: &User) -> Result<()> {
        let mut table = self.txn.open_table(USERS)?;
        table.insert(user.username.as_str(), encode(user)?.as_slice())?;
        Ok(())
    }

    pub fn api_key(&self, id: &str) -> Result<Option<ApiKey>> {
        let table = self.txn.open_table(API_KEYS)?;
        let key = table.get(id)?;
        key.map(|v| decode("api key", v.value())).transpose()
    }

    pub fn put_api_key(&self, key: &ApiKey) -> Result<()> {
        let mut table = self.txn.open_table(API_KEYS)?;
        table.insert(key.id.as_str(), encode(key)?.as_slice())?;
        Ok(())
    }

    pub fn refresh_token(&self, digest: &str) -> Result<Option<RefreshToken>> {
        let table = self.txn.open_table(REFRESH_TOKENS)?;
        let token = table.get(digest)?;
        token
            .map(|v| decode("refresh token", v.value()))
            .transpose()
    }

    pub fn put_refresh_token(&self, digest: &str, token: &RefreshToken) -> Result<()> {
        let mut table = self.txn.open_table(REFRESH_TOKENS)?;
        table.insert(digest, encode(token)?.as_slice())?;
        Ok(())
    }

    /// Removes the tokens `revoke` selects, and every expired one; returns
    /// how many of the selected were removed.
    pub fn remove_refresh_tokens(&self, revoke: impl Fn(&RefreshToken) -> bool) -> Result<usize> {
        let now = Utc::now();
        let mut table = self.txn.open_table(REFRESH_TOKENS)?;
        let mut revoked = 0;
        table.retain(
            |_, bytes| match decode::<RefreshToken>("refresh token", bytes) {
                Ok(t) if revoke(&t) => {
                    revoked += 1;
                    false
                }
                Ok(t) => t.expires_at > now,
                Err(_) => false,
            },
        )?;
        Ok(revoked)
    }

    /// Stores a console session, and drops the expired ones.
    pub fn put_console_session(&self, digest: &str, session: &ConsoleSession) -> Result<()> {
        let now = Utc::now();
        let mut table = self.txn.open_table(CONSOLE_SESSIONS)?;
        table.retain(|_, bytes| {
            decode::<ConsoleSession>("console session", bytes).is_ok_and(|s| s.expires_at > now)
        })?;
        table.insert(digest, encode(session)?.as_slice())?;
        Ok(())
    }

    /// Removes a console session; the one removed.
    pub fn remove_console_session(&self, digest: &str) -> Result<Option<ConsoleSession>> {
        let mut table = self.txn.open_table(CONSOLE_SESSIONS)?;
        let removed = table.remove(digest)?;
        removed
            .map(|v| decode("console session", v.value()))
            .transpose()
    }

    pub fn audit(&self, actor: &Actor, record: audit::Record) -> Result<u64> {
        audit::append(self.txn, actor, record)
    }
}

impl Store {
    /// Runs `f` in one write transaction, committed only when `f` succeeds.
    pub fn accounts_write<T, E: From<Error>>(
        &self,
        f: impl FnOnce(&AccountsTxn) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let outcome = self.with_db(|db| {
            let txn = db.begin_write()?;
            match f(&AccountsTxn { txn: &txn }) {
                Ok(value) => {
                    txn.commit()?;
                    Ok(Ok(value))
                }
                Err(e) => Ok(Err(e)),
            }
        });
        outcome?
    }

    pub fn user(&self, name: &str) -> Result<Option<User>> {
        self.read_one(USERS, "user", name)
    }

    pub fn api_key(&self, id: &str) -> Result<Option<ApiKey>> {
        self.read_one(API_KEYS, "api key", id)
    }

    pub fn console_session(&self, digest: &str) -> Result<Option<ConsoleSession>> {
        self.read_one(CONSOLE_SESSIONS, "console session", digest)
    }

    pub fn users(&self) -> Result<Vec<User>> {
        self.read_all(USERS, "user")
    }

    pub fn api_keys(&self) -> Result<Vec<ApiKey>> {
        self.read_all(API_KEYS, "api key")
    }

    fn read_one<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        what: &str,
        key: &str,
    ) -> Result<Option<T>> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(table)?;
            let value = table.get(key)?;
            value.map(|v| decode(what, v.value())).transpose()
        })
    }

    fn read_all<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        what: &str,
    ) -> Result<Vec<T>> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(table)?;
            table
                .iter()?
                .map(|item| {
                    let (_, v) = item?;
                    decode(what, v.value())
                })
                .collect()
        })
    }
}
