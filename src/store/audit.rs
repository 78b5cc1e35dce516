//! The audit log: append-only and tamper-evident.
//!
//! `audit`: seq -> `hash (32 bytes) || body (JSON)`. The body holds its own
//! seq and the previous entry's hash, and `hash = SHA-256(prev || body)`.
//! Editing a body breaks its hash; recomputing the hash breaks the next
//! entry's `prev`; removing an entry leaves a gap in the seqs; swapping two
//! breaks both links. [`Store::verify_audit`] walks the chain and names the
//! first entry that does not hold. An entry is appended inside the write
//! transaction of the change it records ([`append`]), so a change is never
//! committed without its entry.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Error, Result, Store};
use crate::auth::Actor;

pub(super) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

const HASH_LEN: usize = 32;
const GENESIS: [u8; HASH_LEN] = [0; HASH_LEN];

/// What happened, before it is chained.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// `login`, `login.failed`, `user.create`, `alert.acknowledge`, ...
    pub action: String,
    /// What it happened to (a user name, a key id, alert ids, a rule id).
    pub target: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl Record {
    pub fn new(action: impl Into<String>) -> Record {
        Record {
            action: action.into(),
            ..Default::default()
        }
    }

    pub fn target(mut self, target: impl Into<String>) -> Record {
        self.target = Some(target.into());
        self
    }

    pub fn before(mut self, before: impl Serialize) -> Record {
        self.before = serde_json::to_value(before).ok();
        self
    }

    pub fn after(mut self, after: impl Serialize) -> Record {
        self.after = serde_json::to_value(after).ok();
        self
    }
}

/// A chained entry, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub source_ip: Option<IpAddr>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// Hex SHA-256 of the previous entry (zeros for the first).
    pub prev: String,
}

/// Appends `record` by `actor` inside `txn`; returns its seq.
pub(crate) fn append(txn: &WriteTransaction, actor: &Actor, record: Record) -> Result<u64> {
    let mut table = txn.open_table(AUDIT)?;
    let (seq, prev) = match table.last()? {
        Some((seq, value)) => {
            let value = value.value();
            let prev: [u8; HASH_LEN] = value
                .get(..HASH_LEN)
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| corrupt(seq.value(), "shorter than its hash"))?;
            (seq.value() + 1, prev)
        }
        None => (1, GENESIS),
    };
    let entry = Entry {
        seq,
        at: Utc::now(),
        actor: actor.name.clone(),
        source_ip: actor.ip,
        action: record.action,
        target: record.target,
        before: record.before,
        after: record.after,
        prev: hex(&prev),
    };
    let body = serde_json::to_vec(&entry).map_err(|e| corrupt(seq, &e.to_string()))?;
    let mut value = chain(&prev, &body).to_vec();
    value.extend_from_slice(&body);
    table.insert(seq, value.as_slice())?;
    Ok(seq)
}

fn chain(prev: &[u8; HASH_LEN], body: &[u8]) -> [u8; HASH_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(body);
    hasher.finalize().into()
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn corrupt(seq: u64, reason: &str) -> Error {
    Error::Corrupt {
        seq,
        reason: format!("audit entry: {reason}"),
    }
}

fn split(seq: u64, value: &[u8]) -> Result<([u8; HASH_LEN], Entry)> {
    let (hash, body) = value
        .split_at_checked(HASH_LEN)
        .ok_or_else(|| corrupt(seq, "shorter than its hash"))?;
    let entry = serde_json::from_slice(body).map_err(|e| corrupt(seq, &e.to_string()))?;
    Ok((hash.try_into().unwrap_or(GENESIS), entry))
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    /// Hex hash of the last entry: record it elsewhere to detect a
    /// truncated or wholly rewritten log later.
    pub head: String,
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("audit entry {seq} was changed: its hash does not match its contents")]
    Edited { seq: u64 },
    #[error(
        "audit entry {seq} does not follow entry {prev_seq}: an entry was removed or reordered"
    )]
    Unlinked { seq: u64, prev_seq: u64 },
    #[error("audit entries {expected} to {}: missing (removed)", found - 1)]
    Gap { expected: u64, found: u64 },
    #[error("audit entry {seq} is stored under key {key}: moved")]
    Moved { seq: u64, key: u64 },
    #[error("audit entry {seq} cannot be read: {reason}")]
    Unreadable { seq: u64, reason: String },
}

impl Store {
    /// Appends one record in its own transaction (for events with no other
    /// change to go with, such as a failed login).
    pub fn audit(&self, actor: &Actor, record: Record) -> Result<u64> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let seq = append(&txn, actor, record)?;
            txn.commit()?;
            Ok(seq)
        })
    }

    /// Entries newest first, with seq below `before`; at most `limit`, and
    /// whether there are more.
    pub fn audit_entries(&self, before: Option<u64>, limit: usize) -> Result<(Vec<Entry>, bool)> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(AUDIT)?;
            let mut out = Vec::new();
            for item in table.range(..before.unwrap_or(u64::MAX))?.rev() {
                let (seq, value) = item?;
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(split(seq.value(), value.value())?.1);
            }
            Ok((out, false))
        })
    }

    /// Walks the whole chain; the first break it finds, if any.
    pub fn verify_audit(&self) -> Result<std::result::Result<Verified, Broken>> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(AUDIT)?;
            let mut prev = GENESIS;
            let mut expected = 1;
            for item in table.iter()? {
                let (key, value) = item?;
                let key = key.value();
                let (hash, entry) = match split(key, value.value()) {
                    Ok(x) => x,
                    Err(e) => {
                        return Ok(Err(Broken::Unreadable {
                            seq: key,
                            reason: e.to_string(),
                        }));
                    }
                };
                if entry.seq != key {
                    return Ok(Err(Broken::Moved {
                        seq: entry.seq,
                        key,
                    }));
                }
                if key != expected {
                    return Ok(Err(Broken::Gap {
                        expected,
                        found: key,
                    }));
                }
                let body = &value.value()[HASH_LEN..];
                if chain(&prev, body) != hash {
                    return Ok(Err(if entry.prev == hex(&prev) {
                        Broken::Edited { seq: key }
                    } else {
                        Broken::Unlinked {
                            seq: key,
                            prev_seq: key - 1,
                        }
                    }));
                }
                prev = hash;
                expected += 1;
            }
            Ok(Ok(Verified {
                entries: expected - 1,
                head: hex(&prev),
            }))
        })
    }

    /// Test support: rewrites the raw stored value of entry `seq` (to prove
    /// that verification notices).
    #[doc(hidden)]
    pub fn tamper_audit(&self, seq: u64, f: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(AUDIT)?;
                let mut value = table
                    .get(seq)?
                    .map(|v| v.value().to_vec())
                    .ok_or_else(|| corrupt(seq, "absent"))?;
                f(&mut value);
                if value.is_empty() {
                    table.remove(seq)?;
                } else {
                    table.insert(seq, value.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor() -> Actor {
        Actor {
            name: "alice".into(),
            ip: Some("10.0.0.1".parse().unwrap()),
        }
    }

    fn store_with(n: u64) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..n {
            store
                .audit(
                    &actor(),
                    Record::new("alert.acknowledge")
                        .target(i.to_string())
                        .before("open")
                        .after("acknowledged"),
                )
                .unwrap();
        }
        (dir, store)
    }

    #[test]
    fn an_intact_chain_verifies_and_reads_newest_first() {
        let (_dir, store) = store_with(5);
        let verified = store.verify_audit().unwrap().unwrap();
        assert_eq!(verified.entries, 5);
        let (page, more) = store.audit_entries(None, 2).unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [5, 4]);
        assert!(more);
        assert_eq!(page[0].actor, "alice");
        assert_eq!(page[0].after, Some(Value::from("acknowledged")));
        let (rest, more) = store.audit_entries(Some(2), 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert!(!more);
    }

    #[test]
    fn an_edited_entry_is_named() {
        let (_dir, store) = store_with(4);
        store
            .tamper_audit(2, |v| {
                let s = String::from_utf8(v.split_off(HASH_LEN)).unwrap();
                v.extend_from_slice(s.replace("alice", "mallory").as_bytes());
            })
            .unwrap();
        assert_eq!(
            store.verify_audit().unwrap(),
            Err(Broken::Edited { seq: 2 })
        );
    }

    #[test]
    fn an_edit_with_a_recomputed_hash_breaks_the_next_link() {
        let (_dir, store) = store_with(4);
        let mut first = [0u8; HASH_LEN];
        store
            .tamper_audit(1, |v| first.copy_from_slice(&v[..HASH_LEN]))
            .unwrap();
        store
            .tamper_audit(2, |v| {
                let body = String::from_utf8(v.split_off(HASH_LEN)).unwrap();
                let body = body.replace("alice", "mallory");
                *v = chain(&first, body.as_bytes()).to_vec();
                v.extend_from_slice(body.as_bytes());
            })
            .unwrap();
        assert_eq!(
            store.verify_audit().unwrap(),
            Err(Broken::Unlinked {
                seq: 3,
                prev_seq: 2
            })
        );
    }

    #[test]
    fn a_removed_entry_leaves_a_gap() {
        let (_dir, store) = store_with(4);
        store.tamper_audit(3, Vec::clear).unwrap();
        assert_eq!(
            store.verify_audit().unwrap(),
            Err(Broken::Gap {
                expected: 3,
                found: 4
            })
        );
    }

    #[test]
    fn swapped_entries_are_caught() {
        let (_dir, store) = store_with(4);
        let (page, _) = store.audit_entries(None, 10).unwrap();
        assert_eq!(page.len(), 4);
        let mut two = Vec::new();
        let mut three = Vec::new();
        store.tamper_audit(2, |v| two = v.clone()).unwrap();
        store.tamper_audit(3, |v| three = v.clone()).unwrap();
        store.tamper_audit(2, |v| *v = three.clone()).unwrap();
        store.tamper_audit(3, |v| *v = two.clone()).unwrap();
        assert_eq!(
            store.verify_audit().unwrap(),
            Err(Broken::Moved { seq: 3, key: 2 })
        );
    }
}
