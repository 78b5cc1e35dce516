//! Decisions (CrowdSec's word): which source addresses are blocked, until
//! when, and why. Each change commits with its audit entry.
//!
//! `decisions`: IP (text) -> [`Decision`] (JSON), the latest one per address
//! (expired ones stay until purged, and count for escalation);
//! `offences`: IP -> how many times it was blocked, for escalating
//! durations.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{Error, Result, Store, audit};
use crate::auth::Actor;

pub(super) const DECISIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("decisions");
pub(super) const OFFENCES: TableDefinition<&str, u64> = TableDefinition::new("offences");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub ip: IpAddr,
    /// Why: the rule title, or the analyst's words.
    pub reason: String,
    /// `alert` (a response action) or `manual`.
    pub origin: String,
    pub alert_id: Option<u64>,
    /// Who: the action's name, or the analyst.
    pub by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The how-many-th block of this address.
    pub offence: u64,
}

impl Decision {
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        self.expires_at > now
    }
}

/// Why a block was not added.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("{0} is already blocked until {1}")]
    Active(IpAddr, DateTime<Utc>),
    #[error("{0} blocks are active, the most allowed (response.max_active_blocks)")]
    Full(usize),
    #[error(transparent)]
    Store(#[from] Error),
}

fn encode(d: &Decision) -> Result<Vec<u8>> {
    serde_json::to_vec(d).map_err(|e| Error::Corrupt {
        seq: 0,
        reason: format!("decision: {e}"),
    })
}

fn decode(bytes: &[u8]) -> Result<Decision> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        seq: 0,
        reason: format!("decision: {e}"),
    })
}

/// What a new block is: who asked, why, and how its length is found.
pub struct BlockRequest {
    pub ip: IpAddr,
    pub reason: String,
    /// `alert` or `manual`.
    pub origin: &'static str,
    pub alert_id: Option<u64>,
    pub by: String,
    /// The first block's length; each earlier offence doubles it.
    pub duration: chrono::Duration,
    pub max_duration: chrono::Duration,
    pub max_active: usize,
}

impl Store {
    /// Records a block of `req.ip`, with its audit entry, unless one is
    /// active or `max_active` are. Its length doubles with each earlier
    /// offence of the address, up to `max_duration`.
    pub fn add_decision(
        &self,
        actor: &Actor,
        req: &BlockRequest,
    ) -> std::result::Result<Decision, BlockError> {
        let now = Utc::now();
        let key = req.ip.to_string();
        let result = self.with_db(|db| {
            let txn = db.begin_write()?;
            let decision = {
                let mut decisions = txn.open_table(DECISIONS)?;
                if let Some(d) = decisions
                    .get(key.as_str())?
                    .map(|v| decode(v.value()))
                    .transpose()?
                    && d.active(now)
                {
                    return Ok(Err(BlockError::Active(req.ip, d.expires_at)));
                }
                let mut active = 0;
                for item in decisions.iter()? {
                    if decode(item?.1.value())?.active(now) {
                        active += 1;
                    }
                }
                if active >= req.max_active {
                    return Ok(Err(BlockError::Full(active)));
                }
                let mut offences = txn.open_table(OFFENCES)?;
                let offence = offences.get(key.as_str())?.map_or(0, |v| v.value()) + 1;
                offences.insert(key.as_str(), offence)?;
                let factor = 1i32 << (offence - 1).min(20);
                let duration = (req.duration * factor).min(req.max_duration);
                let decision = Decision {
                    ip: req.ip,
                    reason: req.reason.clone(),
                    origin: req.origin.to_owned(),
                    alert_id: req.alert_id,
                    by: req.by.clone(),
                    created_at: now,
                    expires_at: now + duration,
                    offence,
                };
                decisions.insert(key.as_str(), encode(&decision)?.as_slice())?;
                decision
            };
            audit::append(
                &txn,
                actor,
                audit::Record::new("decision.add")
                    .target(key.clone())
                    .after(serde_json::json!(decision)),
            )?;
            txn.commit()?;
            Ok(Ok(decision))
        });
        result?
    }

    /// Ends the block of `ip` now; the decision it ended, if one was active.
    pub fn remove_decision(&self, actor: &Actor, ip: IpAddr) -> Result<Option<Decision>> {
        let now = Utc::now();
        let key = ip.to_string();
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let ended = {
                let mut decisions = txn.open_table(DECISIONS)?;
                let current = decisions
                    .get(key.as_str())?
                    .map(|v| decode(v.value()))
                    .transpose()?;
                match current {
                    Some(mut d) if d.active(now) => {
                        let before = d.clone();
                        d.expires_at = now;
                        decisions.insert(key.as_str(), encode(&d)?.as_slice())?;
                        Some(before)
                    }
                    _ => None,
                }
            };
            if let Some(before) = &ended {
                audit::append(
                    &txn,
                    actor,
                    audit::Record::new("decision.remove")
                        .target(key.clone())
                        .before(serde_json::json!(before)),
                )?;
            }
            txn.commit()?;
            Ok(ended)
        })
    }

    /// Every decision, or the active ones, most recent first.
    pub fn decisions(&self, active_only: bool) -> Result<Vec<Decision>> {
        let now = Utc::now();
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(DECISIONS)?;
            let mut out = Vec::new();
            for item in table.iter()? {
                let d = decode(item?.1.value())?;
                if !active_only || d.active(now) {
                    out.push(d);
                }
            }
            out.sort_by_key(|d| std::cmp::Reverse(d.created_at));
            Ok(out)
        })
    }

    /// Deletes decisions expired before `cutoff` (their offence count stays).
    pub fn purge_decisions(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let mut purged = 0;
            {
                let mut table = txn.open_table(DECISIONS)?;
                let mut old = Vec::new();
                for item in table.iter()? {
                    let (key, bytes) = item?;
                    if decode(bytes.value())?.expires_at < cutoff {
                        old.push(key.value().to_owned());
                    }
                }
                for key in &old {
                    table.remove(key.as_str())?;
                    purged += 1;
                }
            }
            txn.commit()?;
            Ok(purged)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(ip: &str) -> BlockRequest {
        BlockRequest {
            ip: ip.parse().unwrap(),
            reason: "brute force".into(),
            origin: "alert",
            alert_id: Some(1),
            by: "block-ssh".into(),
            duration: chrono::Duration::hours(1),
            max_duration: chrono::Duration::hours(3),
            max_active: 2,
        }
    }

    #[test]
    fn blocks_escalate_are_capped_audited_and_end_early() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let actor = Actor::system("response");
        let first = store.add_decision(&actor, &request("10.0.0.1")).unwrap();
        assert_eq!(first.offence, 1);
        assert_eq!((first.expires_at - first.created_at).num_hours(), 1);
        assert!(matches!(
            store.add_decision(&actor, &request("10.0.0.1")),
            Err(BlockError::Active(..))
        ));
        store.add_decision(&actor, &request("10.0.0.2")).unwrap();
        assert!(matches!(
            store.add_decision(&actor, &request("10.0.0.3")),
            Err(BlockError::Full(2))
        ));

        // Ended early, then blocked again: twice as long; then capped.
        assert!(
            store
                .remove_decision(&actor, "10.0.0.1".parse().unwrap())
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .remove_decision(&actor, "10.0.0.1".parse().unwrap())
                .unwrap()
                .is_none()
        );
        let second = store.add_decision(&actor, &request("10.0.0.1")).unwrap();
        assert_eq!(
            (
                second.offence,
                (second.expires_at - second.created_at).num_hours()
            ),
            (2, 2)
        );
        store
            .remove_decision(&actor, "10.0.0.1".parse().unwrap())
            .unwrap();
        let third = store.add_decision(&actor, &request("10.0.0.1")).unwrap();
        assert_eq!(
            (third.expires_at - third.created_at).num_hours(),
            3,
            "capped"
        );

        assert_eq!(store.decisions(true).unwrap().len(), 2);
        let audit: Vec<String> = store
            .audit_entries(None, 100)
            .unwrap()
            .0
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(audit.iter().filter(|a| *a == "decision.add").count(), 4);
        assert_eq!(audit.iter().filter(|a| *a == "decision.remove").count(), 2);
    }
}
