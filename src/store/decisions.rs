//! Decisions (CrowdSec's word): which source addresses are blocked, until
//! when, and why. Each change commits with its audit entry.
//!
//! `decisions`: IP (text) -> [`Decision`] (JSON), the latest one per address
//! (expired ones stay until purged, and count for escalation);
//! `offences`: IP -> how many times it was blocked, for escalating
//! durations.
//!
//! A dry run (`response.dry_run`) keeps the same two tables under other
//! names (`decisions_dry_run`, `offences_dry_run`, the [`Ledger`]): it
//! takes every decision a real run would take, by the same [`plan`], with
//! its own state, so what it reports is what a real run would have done.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{Error, Result, Store, audit};
use crate::auth::Actor;

pub(super) const DECISIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("decisions");
pub(super) const OFFENCES: TableDefinition<&str, u64> = TableDefinition::new("offences");
const DRY_RUN_DECISIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("decisions_dry_run");
const DRY_RUN_OFFENCES: TableDefinition<&str, u64> = TableDefinition::new("offences_dry_run");

/// Where decisions are kept: the real ones (applied to nftables), or a dry
/// run's (never applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ledger {
    Real,
    DryRun,
}

impl Ledger {
    fn tables(
        self,
    ) -> (
        TableDefinition<'static, &'static str, &'static [u8]>,
        TableDefinition<'static, &'static str, u64>,
    ) {
        match self {
            Ledger::Real => (DECISIONS, OFFENCES),
            Ledger::DryRun => (DRY_RUN_DECISIONS, DRY_RUN_OFFENCES),
        }
    }

    /// The audit action of a decision taken in this ledger.
    fn audit_action(self) -> &'static str {
        match self {
            Ledger::Real => "decision.add",
            Ledger::DryRun => "response.dry_run",
        }
    }
}

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
    /// Whether an analyst, or an alert whose events all came from trusted
    /// sources, asked for it (decisions stored before this field: true).
    #[serde(default = "trusted_default")]
    pub trusted: bool,
}

fn trusted_default() -> bool {
    true
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
    #[error(
        "{0} blocks asked for by alerts from untrusted sources are active, the most allowed (response.max_active_untrusted_blocks)"
    )]
    FullUntrusted(usize),
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
    /// False for an alert with an event from an untrusted source: such
    /// blocks may hold at most `max_active_untrusted` of `max_active`.
    pub trusted: bool,
    pub max_active_untrusted: usize,
}

/// What a ledger holds that a new block depends on.
#[derive(Debug, Clone, Default)]
pub struct LedgerState {
    /// The address's latest decision.
    pub current: Option<Decision>,
    /// Its earlier blocks.
    pub offences: u64,
    /// Active blocks, and how many of them untrusted alerts asked for.
    pub active: usize,
    pub active_untrusted: usize,
}

/// The decision `req` comes to over `state` at `now`: refused while the
/// address is blocked or the bounds are reached; else a block whose length
/// doubles with each earlier offence, up to `max_duration`. The one
/// function a real run, a dry run and a check go through.
pub fn plan(
    req: &BlockRequest,
    state: &LedgerState,
    now: DateTime<Utc>,
) -> std::result::Result<Decision, BlockError> {
    if let Some(d) = &state.current
        && d.active(now)
    {
        return Err(BlockError::Active(req.ip, d.expires_at));
    }
    if state.active >= req.max_active {
        return Err(BlockError::Full(state.active));
    }
    if !req.trusted && state.active_untrusted >= req.max_active_untrusted {
        return Err(BlockError::FullUntrusted(state.active_untrusted));
    }
    let offence = state.offences + 1;
    let factor = 1i32 << (offence - 1).min(20);
    let duration = (req.duration * factor).min(req.max_duration);
    Ok(Decision {
        ip: req.ip,
        reason: req.reason.clone(),
        origin: req.origin.to_owned(),
        alert_id: req.alert_id,
        by: req.by.clone(),
        created_at: now,
        expires_at: now + duration,
        offence,
        trusted: req.trusted,
    })
}

/// Reads what [`plan`] needs about `key` from a ledger's tables (of a read
/// or a write transaction). The counts are only taken when the address is
/// not blocked already (the common case of an alert firing again).
fn ledger_state(
    decisions: &impl ReadableTable<&'static str, &'static [u8]>,
    offences: &impl ReadableTable<&'static str, u64>,
    key: &str,
    now: DateTime<Utc>,
) -> Result<LedgerState> {
    let current = decisions.get(key)?.map(|v| decode(v.value())).transpose()?;
    let mut state = LedgerState {
        offences: offences.get(key)?.map_or(0, |v| v.value()),
        current,
        ..LedgerState::default()
    };
    if state.current.as_ref().is_some_and(|d| d.active(now)) {
        return Ok(state);
    }
    for item in decisions.iter()? {
        let d = decode(item?.1.value())?;
        if d.active(now) {
            state.active += 1;
            if !d.trusted {
                state.active_untrusted += 1;
            }
        }
    }
    Ok(state)
}

impl Store {
    /// Records a block of `req.ip` in `ledger`, with its audit entry
    /// (`decision.add`, or `response.dry_run` in the dry run's ledger), as
    /// [`plan`] decides it.
    pub fn add_decision(
        &self,
        actor: &Actor,
        req: &BlockRequest,
        ledger: Ledger,
    ) -> std::result::Result<Decision, BlockError> {
        let now = Utc::now();
        let key = req.ip.to_string();
        let (decisions_table, offences_table) = ledger.tables();
        let result = self.with_db(|db| {
            let txn = db.begin_write()?;
            let decision = {
                let mut decisions = txn.open_table(decisions_table)?;
                let mut offences = txn.open_table(offences_table)?;
                let state = ledger_state(&decisions, &offences, &key, now)?;
                let decision = match plan(req, &state, now) {
                    Ok(d) => d,
                    Err(refused) => return Ok(Err(refused)),
                };
                offences.insert(key.as_str(), decision.offence)?;
                decisions.insert(key.as_str(), encode(&decision)?.as_slice())?;
                decision
            };
            audit::append(
                &txn,
                actor,
                audit::Record::new(ledger.audit_action())
                    .target(key.clone())
                    .after(serde_json::json!(decision)),
            )?;
            txn.commit()?;
            Ok(Ok(decision))
        });
        result?
    }

    /// The decision in force for `ip` in `ledger`, if any: one lookup,
    /// so an alert firing again for a blocked address costs little.
    pub fn active_decision(&self, ip: IpAddr, ledger: Ledger) -> Result<Option<Decision>> {
        let now = Utc::now();
        let (decisions_table, _) = ledger.tables();
        self.with_db(|db| {
            let txn = db.begin_read()?;
            // A dry run's tables exist once it decided something.
            let decisions = match txn.open_table(decisions_table) {
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                other => other?,
            };
            let current = decisions
                .get(ip.to_string().as_str())?
                .map(|v| decode(v.value()))
                .transpose()?;
            Ok(current.filter(|d| d.active(now)))
        })
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

    /// Deletes decisions expired before `cutoff` (their offence count
    /// stays), in both ledgers.
    pub fn purge_decisions(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let mut purged = 0;
            for (definition, _) in [Ledger::Real.tables(), Ledger::DryRun.tables()] {
                let mut table = txn.open_table(definition)?;
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
            trusted: true,
            max_active_untrusted: 1,
        }
    }

    #[test]
    fn blocks_escalate_are_capped_audited_and_end_early() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let actor = Actor::system("response");
        let first = store
            .add_decision(&actor, &request("10.0.0.1"), Ledger::Real)
            .unwrap();
        assert_eq!(first.offence, 1);
        assert_eq!((first.expires_at - first.created_at).num_hours(), 1);
        assert!(matches!(
            store.add_decision(&actor, &request("10.0.0.1"), Ledger::Real),
            Err(BlockError::Active(..))
        ));
        store
            .add_decision(&actor, &request("10.0.0.2"), Ledger::Real)
            .unwrap();
        assert!(matches!(
            store.add_decision(&actor, &request("10.0.0.3"), Ledger::Real),
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
        let second = store
            .add_decision(&actor, &request("10.0.0.1"), Ledger::Real)
            .unwrap();
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
        let third = store
            .add_decision(&actor, &request("10.0.0.1"), Ledger::Real)
            .unwrap();
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

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::Duration::minutes(minutes)
    }

    #[test]
    fn plan_refuses_active_and_full_and_escalates() {
        let req = request("203.0.113.9");
        let blocked = plan(&req, &LedgerState::default(), at(0)).unwrap();
        assert_eq!((blocked.offence, blocked.expires_at), (1, at(60)));
        assert!(blocked.trusted);

        let state = LedgerState {
            current: Some(blocked.clone()),
            offences: 1,
            active: 1,
            active_untrusted: 0,
        };
        assert!(matches!(
            plan(&req, &state, at(59)),
            Err(BlockError::Active(_, until)) if until == at(60)
        ));
        // Expired: the second block is twice as long; the fourth is capped.
        let second = plan(&req, &state, at(61)).unwrap();
        assert_eq!((second.offence, second.expires_at), (2, at(61 + 120)));
        let fourth = plan(
            &req,
            &LedgerState {
                offences: 3,
                ..LedgerState::default()
            },
            at(0),
        )
        .unwrap();
        assert_eq!(fourth.expires_at, at(180), "max_duration");

        let full = LedgerState {
            active: 2,
            ..LedgerState::default()
        };
        assert!(matches!(plan(&req, &full, at(0)), Err(BlockError::Full(2))));

        // Untrusted blocks have their own, smaller share.
        let untrusted = BlockRequest {
            trusted: false,
            ..request("203.0.113.10")
        };
        let one_untrusted = LedgerState {
            active: 1,
            active_untrusted: 1,
            ..LedgerState::default()
        };
        assert!(matches!(
            plan(&untrusted, &one_untrusted, at(0)),
            Err(BlockError::FullUntrusted(1))
        ));
        assert!(
            plan(&req, &one_untrusted, at(0)).is_ok(),
            "a trusted block still has room"
        );
        assert!(
            !plan(&untrusted, &LedgerState::default(), at(0))
                .unwrap()
                .trusted
        );
    }

    #[test]
    fn a_dry_run_keeps_its_own_ledger_and_audits_as_a_dry_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let actor = Actor::system("response");
        let req = request("10.0.0.1");
        let ip = req.ip;
        assert!(store.active_decision(ip, Ledger::DryRun).unwrap().is_none());
        let dry = store.add_decision(&actor, &req, Ledger::DryRun).unwrap();
        assert_eq!(dry.offence, 1);
        assert_eq!(
            store.active_decision(ip, Ledger::DryRun).unwrap(),
            Some(dry)
        );
        assert!(matches!(
            store.add_decision(&actor, &req, Ledger::DryRun),
            Err(BlockError::Active(..))
        ));
        // The real ledger saw none of it.
        assert!(store.decisions(false).unwrap().is_empty());
        assert!(store.active_decision(ip, Ledger::Real).unwrap().is_none());

        let untrusted = BlockRequest {
            trusted: false,
            ..request("10.0.0.2")
        };
        store
            .add_decision(&actor, &untrusted, Ledger::DryRun)
            .unwrap();
        let another = BlockRequest {
            trusted: false,
            ..request("10.0.0.3")
        };
        assert!(matches!(
            store.add_decision(&actor, &another, Ledger::DryRun),
            Err(BlockError::Full(2))
        ));

        let actions: Vec<String> = store
            .audit_entries(None, 100)
            .unwrap()
            .0
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(actions, ["response.dry_run", "response.dry_run"]);
        assert_eq!(
            store
                .purge_decisions(Utc::now() + chrono::Duration::days(1))
                .unwrap(),
            2
        );
    }
}
