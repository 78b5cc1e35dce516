//! The replication outbox: summaries of what the node stored, written in the
//! same transaction as what they summarise, for the sinks (Postgres, Redis)
//! to apply from their own cursor.
//!
//! `outbox`: seq -> [`Entry`] (JSON). The seq is the version a sink compares
//! to keep an older update from overwriting a newer one, so seqs only grow
//! (the next one is kept in `meta`, never derived from what is left).
//! `outbox_cursors`: sink name -> the last seq it applied; entries every
//! sink has applied are deleted. `rollups`: the event counts of the current
//! and the previous hour, each with the seq of its pending entry.
//!
//! Roll-ups and heartbeats are state, not history: a new count replaces the
//! pending entry of its key, so the outbox holds one per key. Alert updates
//! are each kept (a status change is an event for Redis readers) until the
//! outbox holds `max_entries`; past that, an alert's new update replaces its
//! pending one too. Nothing ever drops an alert.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{Error, META, Result, Store, read_u64};
use crate::model::{Alert, Event};

pub(super) const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
pub(super) const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("outbox_cursors");
/// hour (seconds, big-endian) + host, dataset, category, outcome, severity
/// (NUL-separated) -> (count, seq of its pending entry).
pub(super) const ROLLUPS: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("rollups");

const META_NEXT: &str = "outbox_next";
const META_HEARTBEAT: &str = "outbox_heartbeat";

/// Most outbox entries one acknowledgement deletes; the rest go with the next.
const GC_STEP: usize = 50_000;

/// One outbox entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Also the version of what it carries.
    #[serde(skip)]
    pub seq: u64,
    /// When it was written.
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub message: Message,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    Alert(AlertSummary),
    Rollup(Rollup),
    Heartbeat(Heartbeat),
}

/// What happened to an alert in an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    /// A new alert.
    Raised,
    /// The rule fired again for it (its count grew).
    Repeated,
    /// An analyst changed it (status, assignee, comment).
    Changed,
    /// Queued again (replication started on a node that held it).
    Resent,
}

/// An alert as the fleet sees it: no linked events, no history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSummary {
    pub event: AlertEvent,
    pub alert_id: u64,
    pub rule_id: String,
    pub rule_title: String,
    pub severity: String,
    pub status: String,
    pub count: u64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub source_ip: Option<String>,
    pub host_name: Option<String>,
    pub user_name: Option<String>,
    pub assignee: Option<String>,
    pub correlation: bool,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// [`Alert::trusted`]: for `raised` and `repeated`, whether every event
    /// behind THIS firing came from a trusted source. Entries written before
    /// it existed read as untrusted.
    #[serde(default)]
    pub trusted: bool,
}

impl AlertSummary {
    pub fn of(alert: &Alert, event: AlertEvent) -> AlertSummary {
        let key = |name| alert.key_value(name).map(str::to_owned);
        AlertSummary {
            event,
            alert_id: alert.id,
            rule_id: alert.rule_id.clone(),
            rule_title: alert.rule_title.clone(),
            severity: alert.severity.clone(),
            status: alert.status.as_str().to_owned(),
            count: alert.count,
            first_seen: alert.first_seen,
            last_seen: alert.last_seen,
            source_ip: key("source.ip"),
            host_name: key("host.name"),
            user_name: key("user.name"),
            assignee: alert.assignee.clone(),
            correlation: alert.correlation,
            tags: alert.tags.clone(),
            created_at: alert.created_at,
            updated_at: alert.updated_at,
            trusted: alert.trusted,
        }
    }
}

/// Events the node received in one hour with these attributes; `count` is
/// the total so far, not an increment, so applying it twice is harmless.
/// Absent attributes are empty strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Rollup {
    pub hour: DateTime<Utc>,
    pub host_name: String,
    pub dataset: String,
    pub category: String,
    pub outcome: String,
    pub severity: String,
    pub count: u64,
}

impl Rollup {
    fn key(&self) -> Vec<u8> {
        let mut key = u64::try_from(self.hour.timestamp())
            .unwrap_or(0)
            .to_be_bytes()
            .to_vec();
        for part in [
            &self.host_name,
            &self.dataset,
            &self.category,
            &self.outcome,
            &self.severity,
        ] {
            key.extend_from_slice(part.as_bytes());
            key.push(0);
        }
        key
    }
}

impl Rollup {
    /// The roll-up a [`Rollup::key`] stands for (`None`: not one).
    fn from_key(key: &[u8], count: u64) -> Option<Rollup> {
        let (hour, rest) = key.split_first_chunk::<8>()?;
        let hour = DateTime::from_timestamp(i64::try_from(u64::from_be_bytes(*hour)).ok()?, 0)?;
        let mut parts = rest
            .split(|b| *b == 0)
            .map(|p| String::from_utf8_lossy(p).into_owned());
        Some(Rollup {
            hour,
            host_name: parts.next()?,
            dataset: parts.next()?,
            category: parts.next()?,
            outcome: parts.next()?,
            severity: parts.next()?,
            count,
        })
    }
}

/// The node's status, sent every `replication.heartbeat_interval_seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub hostname: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub uptime_seconds: u64,
    /// Events stored since the node was created (the last seq).
    pub events_total: u64,
    pub events_per_second: f64,
    pub storage_bytes: u64,
    pub index_lag: u64,
    pub outbox_entries: u64,
    pub heartbeat_interval_seconds: u64,
    /// `fleet.api_url`: where the fleet search reaches this node's API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// Set by [`Store::enable_outbox`] at start-up (the daemon always reads
/// the outbox: the notification dispatcher does); offline tools leave it off.
pub(super) struct Outbox {
    max_entries: u64,
    /// Whether commits count their events into hourly roll-ups: only
    /// Postgres and Redis apply them (the fleet view), so without either a
    /// batch that changes no alert writes nothing here and wakes no sink.
    rollups: bool,
    /// The last seq written, for the sinks to wait on.
    head: watch::Sender<u64>,
}

pub(super) type Slot = OnceLock<Outbox>;

/// Writes entries inside one write transaction.
pub(super) struct Writer<'t> {
    table: Table<'t, u64, &'static [u8]>,
    next: u64,
    len: u64,
    max_entries: u64,
    rollups: bool,
    at: DateTime<Utc>,
}

/// Whether a new entry replaces the pending one of the same thing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Merge {
    Always,
    PastBound,
}

impl<'t> Writer<'t> {
    /// `None` when replication is off.
    pub(super) fn open(txn: &'t redb::WriteTransaction, store: &Store) -> Result<Option<Self>> {
        let Some(outbox) = store.shared.outbox.get() else {
            return Ok(None);
        };
        let next = txn
            .open_table(META)?
            .get(META_NEXT)?
            .map_or(1, |v| read_u64(v.value()));
        let table = txn.open_table(OUTBOX)?;
        let len = table.len()?;
        Ok(Some(Writer {
            table,
            next,
            len,
            max_entries: outbox.max_entries,
            rollups: outbox.rollups,
            at: Utc::now(),
        }))
    }

    fn push(&mut self, message: &Message, replaces: u64, merge: Merge) -> Result<u64> {
        if replaces != 0
            && (merge == Merge::Always || self.len >= self.max_entries)
            && self.table.remove(replaces)?.is_some()
        {
            self.len -= 1;
        }
        let seq = self.next;
        let entry = Entry {
            seq,
            at: self.at,
            message: message.clone(),
        };
        let bytes = serde_json::to_vec(&entry).map_err(|e| Error::Corrupt {
            seq,
            reason: format!("outbox entry: {e}"),
        })?;
        self.table.insert(seq, bytes.as_slice())?;
        self.next += 1;
        self.len += 1;
        Ok(seq)
    }

    /// An alert's new state; returns its version (the entry's seq).
    pub(super) fn alert(&mut self, alert: &Alert, event: AlertEvent) -> Result<u64> {
        self.push(
            &Message::Alert(AlertSummary::of(alert, event)),
            alert.version,
            Merge::PastBound,
        )
    }

    /// Queues every alert again (each replaces its pending update).
    fn requeue_alerts(&mut self, txn: &redb::WriteTransaction) -> Result<()> {
        let mut alerts = txn.open_table(super::alerts::ALERTS)?;
        let all: Vec<Alert> = alerts
            .iter()?
            .map(|item| {
                let (id, v) = item?;
                super::alerts::decode(id.value(), v.value())
            })
            .collect::<Result<_>>()?;
        for mut alert in all {
            alert.version = self.alert(&alert, AlertEvent::Resent)?;
            alerts.insert(alert.id, super::alerts::encode(&alert)?.as_slice())?;
        }
        Ok(())
    }

    /// Queues the roll-ups still counted (the current and the previous
    /// hour) again.
    fn requeue_rollups(&mut self, txn: &redb::WriteTransaction) -> Result<()> {
        let mut rollups = txn.open_table(ROLLUPS)?;
        let all: Vec<(Vec<u8>, u64, u64)> = rollups
            .iter()?
            .map(|item| {
                let (key, v) = item?;
                let (count, pending) = v.value();
                Ok((key.value().to_vec(), count, pending))
            })
            .collect::<Result<_>>()?;
        for (key, count, pending) in all {
            let Some(rollup) = Rollup::from_key(&key, count) else {
                continue;
            };
            let seq = self.push(&Message::Rollup(rollup), pending, Merge::Always)?;
            rollups.insert(key.as_slice(), (count, seq))?;
        }
        Ok(())
    }

    /// Adds `events` to the roll-ups of the hour they were received in
    /// (when the outbox keeps roll-ups).
    pub(super) fn count_events(
        &mut self,
        txn: &redb::WriteTransaction,
        events: &[Event],
    ) -> Result<()> {
        if !self.rollups {
            return Ok(());
        }
        let mut counts: BTreeMap<Rollup, u64> = BTreeMap::new();
        for event in events {
            *counts.entry(rollup_of(event)).or_default() += 1;
        }
        let mut rollups = txn.open_table(ROLLUPS)?;
        for (mut rollup, n) in counts {
            let key = rollup.key();
            let (count, pending) = rollups.get(key.as_slice())?.map_or((0, 0), |v| v.value());
            rollup.count = count + n;
            let seq = self.push(&Message::Rollup(rollup.clone()), pending, Merge::Always)?;
            rollups.insert(key.as_slice(), (rollup.count, seq))?;
        }
        // Only the current and the previous hour are still counted; older
        // totals are final and already in the outbox.
        let cutoff = hour_of(self.at) - TimeDelta::hours(1);
        let cutoff = u64::try_from(cutoff.timestamp()).unwrap_or(0).to_be_bytes();
        for _ in 0..64 {
            let old = match rollups.first()? {
                Some((key, _)) if key.value() < cutoff.as_slice() => key.value().to_vec(),
                _ => break,
            };
            rollups.remove(old.as_slice())?;
        }
        Ok(())
    }

    /// Stores the next seq; returns the last one written.
    pub(super) fn finish(self, txn: &redb::WriteTransaction) -> Result<u64> {
        txn.open_table(META)?
            .insert(META_NEXT, self.next.to_be_bytes().as_slice())?;
        Ok(self.next - 1)
    }
}

fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}

fn rollup_of(event: &Event) -> Rollup {
    let text = |s: Option<&str>| s.unwrap_or_default().to_owned();
    Rollup {
        hour: hour_of(event.received_at),
        host_name: text(event.host_name.as_deref()),
        dataset: text(event.dataset.as_deref()),
        category: text(event.category.as_deref()),
        outcome: text(event.outcome.as_deref()),
        severity: event
            .severity
            .map(|s| severity_name(s).to_owned())
            .unwrap_or_default(),
        count: 0,
    }
}

/// The syslog keyword of a severity (RFC 5424).
fn severity_name(severity: u8) -> &'static str {
    match severity {
        0 => "emergency",
        1 => "alert",
        2 => "critical",
        3 => "error",
        4 => "warning",
        5 => "notice",
        6 => "informational",
        _ => "debug",
    }
}

/// What a sink sees of the outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub entries: u64,
    /// The last seq written (0: none yet).
    pub head: u64,
}

impl Store {
    /// Turns the outbox on: from now on every commit that stores events or
    /// changes alerts writes their summaries. Returns a receiver of the last
    /// seq written. The first time a data dir replicates, every alert it
    /// already holds is queued, so a sink starts from the node's whole
    /// state. `rollups`: whether commits also count their events into
    /// hourly roll-ups (for Postgres and Redis).
    pub fn enable_outbox(&self, max_entries: u64, rollups: bool) -> Result<watch::Receiver<u64>> {
        let head = self.with_db(|db| {
            let txn = db.begin_read()?;
            let next = txn
                .open_table(META)?
                .get(META_NEXT)?
                .map(|v| read_u64(v.value()));
            Ok(next.map_or(0, |n| n - 1))
        })?;
        let (tx, rx) = watch::channel(head);
        let outbox = Outbox {
            max_entries,
            rollups,
            head: tx,
        };
        if let Err(outbox) = self.shared.outbox.set(outbox) {
            drop(outbox);
            if let Some(enabled) = self.shared.outbox.get() {
                return Ok(enabled.head.subscribe());
            }
        }
        Ok(rx)
    }

    /// Makes this store a new fleet member (after a restore): a new node id,
    /// and replication starts over (every alert is queued again).
    pub(super) fn new_identity(&self) -> Result<()> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            {
                let mut meta = txn.open_table(META)?;
                meta.insert(
                    super::META_NODE_ID,
                    ulid::Ulid::generate().to_bytes().as_slice(),
                )?;
                meta.remove(META_NEXT)?;
                meta.remove(META_HEARTBEAT)?;
            }
            txn.delete_table(OUTBOX)?;
            txn.delete_table(CURSORS)?;
            txn.delete_table(ROLLUPS)?;
            txn.commit()?;
            Ok(())
        })
    }

    /// Tells the sinks that entries up to `head` are committed.
    pub(super) fn outbox_written(&self, head: u64) {
        if let Some(outbox) = self.shared.outbox.get() {
            // A commit that wrote nothing here wakes no sink.
            outbox.head.send_if_modified(|last| {
                let changed = *last != head;
                *last = head;
                changed
            });
        }
    }

    /// Queues the node's heartbeat, replacing the one still pending.
    pub fn write_heartbeat(&self, heartbeat: &Heartbeat) -> Result<()> {
        let head = self.with_db(|db| {
            let txn = db.begin_write()?;
            let Some(mut writer) = Writer::open(&txn, self)? else {
                return Ok(None);
            };
            let pending = txn
                .open_table(META)?
                .get(META_HEARTBEAT)?
                .map_or(0, |v| read_u64(v.value()));
            let seq = writer.push(
                &Message::Heartbeat(heartbeat.clone()),
                pending,
                Merge::Always,
            )?;
            let head = writer.finish(&txn)?;
            txn.open_table(META)?
                .insert(META_HEARTBEAT, seq.to_be_bytes().as_slice())?;
            txn.commit()?;
            Ok(Some(head))
        })?;
        if let Some(head) = head {
            self.outbox_written(head);
        }
        Ok(())
    }

    /// Up to `limit` entries after seq `after`, in seq order.
    pub fn outbox_after(&self, after: u64, limit: usize) -> Result<Vec<Entry>> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(OUTBOX)?;
            let mut out = Vec::with_capacity(limit.min(16_384));
            for item in table.range(after.saturating_add(1)..)?.take(limit) {
                let (seq, bytes) = item?;
                let seq = seq.value();
                let mut entry: Entry =
                    serde_json::from_slice(bytes.value()).map_err(|e| Error::Corrupt {
                        seq,
                        reason: format!("outbox entry: {e}"),
                    })?;
                entry.seq = seq;
                out.push(entry);
            }
            Ok(out)
        })
    }

    /// Where `sink` goes on from. The first time it runs it starts at the
    /// head, or with `resend`, from the start, with every alert the node
    /// holds queued again (a new replication sink gets the whole state).
    pub fn outbox_join(&self, sink: &str, resend: bool) -> Result<u64> {
        let head = self.with_db(|db| {
            let txn = db.begin_write()?;
            if let Some(cursor) = txn.open_table(CURSORS)?.get(sink)?.map(|v| v.value()) {
                return Ok((cursor, None));
            }
            let (cursor, head) = match Writer::open(&txn, self)? {
                Some(mut writer) if resend => {
                    writer.requeue_alerts(&txn)?;
                    (0, Some(writer.finish(&txn)?))
                }
                Some(writer) => {
                    let head = writer.next - 1;
                    drop(writer);
                    (head, None)
                }
                None => (0, None),
            };
            txn.open_table(CURSORS)?.insert(sink, cursor)?;
            txn.commit()?;
            Ok((cursor, head))
        })?;
        if let (_, Some(written)) = head {
            self.outbox_written(written);
        }
        Ok(head.0)
    }

    /// Queues the node's state again: every alert it holds (as `resent`,
    /// which no notification or response acts on) and the roll-ups still
    /// counted. For a receiver that lost writes it had acknowledged (a
    /// failover to a replica that had not received them, a database
    /// restored from an older backup). Returns the new head.
    pub fn outbox_resend(&self) -> Result<u64> {
        let head = self.with_db(|db| {
            let txn = db.begin_write()?;
            let Some(mut writer) = Writer::open(&txn, self)? else {
                return Ok(None);
            };
            writer.requeue_alerts(&txn)?;
            writer.requeue_rollups(&txn)?;
            let head = writer.finish(&txn)?;
            txn.commit()?;
            Ok(Some(head))
        })?;
        if let Some(head) = head {
            self.outbox_written(head);
        }
        Ok(head.unwrap_or(0))
    }

    /// The last seq `sink` applied (0: none).
    pub fn outbox_cursor(&self, sink: &str) -> Result<u64> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let cursors = txn.open_table(CURSORS)?;
            Ok(cursors.get(sink)?.map_or(0, |v| v.value()))
        })
    }

    /// Records that `sink` applied everything up to `seq`, and deletes the
    /// entries every one of `sinks` has applied.
    pub fn outbox_ack(&self, sink: &str, seq: u64, sinks: &[&str]) -> Result<()> {
        self.with_db(|db| {
            let mut txn = db.begin_write()?;
            // Without its own fsync: the writer's next commit (or closing the
            // store) makes it durable. A crash before that only moves the
            // cursor back over entries the sink already has, which it takes
            // as it takes a batch applied but not yet acknowledged: once.
            txn.set_durability(redb::Durability::None)?;
            {
                let mut cursors = txn.open_table(CURSORS)?;
                cursors.insert(sink, seq)?;
                let mut done = u64::MAX;
                for s in sinks {
                    done = done.min(cursors.get(*s)?.map_or(0, |v| v.value()));
                }
                let mut table = txn.open_table(OUTBOX)?;
                for _ in 0..GC_STEP {
                    match table.first()? {
                        Some((k, _)) if k.value() <= done => {}
                        _ => break,
                    }
                    table.pop_first()?;
                }
            }
            txn.commit()?;
            Ok(())
        })
    }

    pub fn outbox_stats(&self) -> Result<OutboxStats> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let entries = txn.open_table(OUTBOX)?.len()?;
            let head = txn
                .open_table(META)?
                .get(META_NEXT)?
                .map_or(1, |v| read_u64(v.value()))
                - 1;
            Ok(OutboxStats { entries, head })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlertAction, AlertChange, AlertUpdate};

    #[test]
    fn a_rollup_key_reads_back_as_its_rollup() {
        let rollup = Rollup {
            hour: hour_of(Utc::now()),
            host_name: "web-1".into(),
            dataset: "sshd".into(),
            category: String::new(),
            outcome: "failure".into(),
            severity: "informational".into(),
            count: 42,
        };
        assert_eq!(Rollup::from_key(&rollup.key(), 42), Some(rollup));
        assert_eq!(Rollup::from_key(b"short", 1), None);
    }

    #[test]
    fn an_alert_summary_carries_trust_and_old_entries_read_untrusted() {
        let now = Utc::now();
        let entry = json_entry(now);
        let Message::Alert(old) = serde_json::from_value::<Entry>(entry.clone())
            .unwrap()
            .message
        else {
            panic!("not an alert");
        };
        assert!(!old.trusted);
        let mut trusted = entry;
        trusted["trusted"] = serde_json::json!(true);
        let Message::Alert(new) = serde_json::from_value::<Entry>(trusted).unwrap().message else {
            panic!("not an alert");
        };
        assert!(new.trusted);
        let back = serde_json::to_value(Entry {
            seq: 1,
            at: now,
            message: Message::Alert(new),
        })
        .unwrap();
        assert_eq!(back["trusted"], true);
    }

    /// An alert entry as written before `trusted` existed.
    fn json_entry(now: DateTime<Utc>) -> serde_json::Value {
        serde_json::json!({
            "at": now, "kind": "alert", "event": "raised", "alert_id": 1,
            "rule_id": "r", "rule_title": "t", "severity": "high", "status": "open",
            "count": 1, "first_seen": now, "last_seen": now, "source_ip": "192.0.2.1",
            "host_name": null, "user_name": null, "assignee": null, "correlation": false,
            "tags": [], "created_at": now, "updated_at": now
        })
    }

    fn event(host: &str, received_at: DateTime<Utc>) -> Event {
        Event {
            host_name: Some(host.to_owned()),
            dataset: Some("sshd".into()),
            outcome: Some("failure".into()),
            severity: Some(6),
            received_at,
            timestamp: received_at,
            source_ip: Some("10.0.0.1".parse().unwrap()),
            message: "m".to_owned(),
            ..Event::default()
        }
    }

    fn update(rule: &str) -> AlertUpdate {
        AlertUpdate {
            event: 0,
            rule_id: rule.to_owned(),
            rule_title: format!("title {rule}"),
            severity: "high",
            group_key: vec![("source.ip".to_owned(), "10.0.0.1".to_owned())],
            correlation: false,
            tags: vec!["attack.t1110".to_owned()],
            trusted: false,
        }
    }

    fn kinds(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| match &e.message {
                Message::Alert(a) => format!("alert {} {} {}", a.alert_id, a.status, a.count),
                Message::Rollup(r) => format!("rollup {} {}", r.host_name, r.count),
                Message::Heartbeat(h) => format!("heartbeat {}", h.events_total),
            })
            .collect()
    }

    /// Without Postgres or Redis nothing applies roll-ups: a batch that
    /// changes no alert writes nothing and wakes no sink.
    #[test]
    fn without_rollups_only_alerts_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut head = store.enable_outbox(1_000, false).unwrap();
        let now = Utc::now();
        let window = chrono::Duration::minutes(10);

        let mut batch = vec![event("a", now), event("b", now)];
        store.commit_batch(&mut batch, &[], &[], window).unwrap();
        assert!(!head.has_changed().unwrap());
        assert!(store.outbox_after(0, 100).unwrap().is_empty());

        let mut batch = vec![event("a", now)];
        store
            .commit_batch(&mut batch, &[], &[update("r1")], window)
            .unwrap();
        assert!(head.has_changed().unwrap());
        assert_eq!(*head.borrow_and_update(), 1);
        let entries = store.outbox_after(0, 100).unwrap();
        assert_eq!(kinds(&entries), ["alert 1 open 1"]);
    }

    #[test]
    fn written_with_the_events_merged_per_key_and_deleted_once_every_sink_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let head = store.enable_outbox(1_000, true).unwrap();
        let now = Utc::now();
        let window = chrono::Duration::minutes(10);

        let mut batch = vec![event("a", now), event("a", now), event("b", now)];
        store
            .commit_batch(&mut batch, &[], &[update("r1")], window)
            .unwrap();
        assert!(head.has_changed().unwrap());
        let entries = store.outbox_after(0, 100).unwrap();
        assert_eq!(
            kinds(&entries),
            ["alert 1 open 1", "rollup a 2", "rollup b 1"]
        );

        // The same hour again: host a's count replaces its pending entry.
        let mut batch = vec![event("a", now)];
        store
            .commit_batch(&mut batch, &[], &[update("r1")], window)
            .unwrap();
        let entries = store.outbox_after(0, 100).unwrap();
        assert_eq!(
            kinds(&entries),
            [
                "alert 1 open 1",
                "rollup b 1",
                "alert 1 open 2",
                "rollup a 3"
            ]
        );
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 3, 4, 5], "seqs only grow");
        let alert = store.alert(1).unwrap().unwrap();
        assert_eq!(alert.version, 4, "the alert knows its latest version");

        // An analyst's change is an update too.
        let change = AlertChange::new("alice", AlertAction::Acknowledge);
        let cap: crate::auth::CanTriage = crate::auth::Principal::local().grant(None).unwrap();
        store.change_alerts(&cap, &[1], &change).unwrap();
        let entries = store.outbox_after(5, 100).unwrap();
        assert_eq!(kinds(&entries), ["alert 1 acknowledged 2"]);
        assert_eq!(entries[0].seq, 6);

        // Deleted only once both sinks have applied them.
        store
            .outbox_ack("postgres", 4, &["postgres", "redis"])
            .unwrap();
        assert_eq!(store.outbox_stats().unwrap().entries, 5);
        store
            .outbox_ack("redis", 5, &["postgres", "redis"])
            .unwrap();
        assert_eq!(store.outbox_after(0, 100).unwrap()[0].seq, 5);
        assert_eq!(store.outbox_cursor("redis").unwrap(), 5);
        assert_eq!(
            store.outbox_stats().unwrap(),
            OutboxStats {
                entries: 2,
                head: 6
            }
        );
    }

    /// However often an alert fires in a batch (a brute force fires hundreds
    /// of times in one), the batch writes one entry of it, as the batch
    /// leaves it, raised when the batch raised it; a change of trust writes
    /// an entry of its own.
    #[test]
    fn an_alert_is_one_outbox_entry_a_batch_unless_its_trust_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.enable_outbox(1_000, false).unwrap();
        let now = Utc::now();
        let window = chrono::Duration::minutes(10);
        let firings = |trust: &[bool]| -> Vec<AlertUpdate> {
            trust
                .iter()
                .enumerate()
                .map(|(event, &trusted)| AlertUpdate {
                    event,
                    trusted,
                    ..update("r1")
                })
                .collect()
        };
        let summaries = |after: u64| -> Vec<(u64, AlertEvent, u64, bool)> {
            store
                .outbox_after(after, 100)
                .unwrap()
                .into_iter()
                .map(|e| match e.message {
                    Message::Alert(a) => (e.seq, a.event, a.count, a.trusted),
                    other => panic!("{other:?}"),
                })
                .collect()
        };

        let mut batch = vec![event("a", now); 3];
        store
            .commit_batch(&mut batch, &[], &firings(&[false; 3]), window)
            .unwrap();
        assert_eq!(summaries(0), [(1, AlertEvent::Raised, 3, false)]);

        // Untrusted, then trusted twice: two entries, neither raised.
        let mut batch = vec![event("a", now); 3];
        store
            .commit_batch(&mut batch, &[], &firings(&[false, true, true]), window)
            .unwrap();
        assert_eq!(
            summaries(1),
            [
                (2, AlertEvent::Repeated, 4, false),
                (3, AlertEvent::Repeated, 6, true)
            ]
        );
        let alert = store.alert(1).unwrap().unwrap();
        assert_eq!((alert.count, alert.version), (6, 3));

        // Raised untrusted, then trusted: the trusted firing is not folded
        // into the raise.
        let mut batch = vec![event("b", now); 2];
        let updates: Vec<AlertUpdate> = firings(&[false, true])
            .into_iter()
            .map(|u| AlertUpdate {
                rule_id: "r2".to_owned(),
                ..u
            })
            .collect();
        store
            .commit_batch(&mut batch, &[], &updates, window)
            .unwrap();
        assert_eq!(
            summaries(3),
            [
                (4, AlertEvent::Raised, 1, false),
                (5, AlertEvent::Repeated, 2, true)
            ]
        );
    }

    /// An acknowledgement has no fsync of its own: closing the store, like
    /// the writer's next commit, makes it durable.
    #[test]
    fn an_acknowledgement_outlives_the_store_closing() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        {
            let store = Store::open(dir.path()).unwrap();
            store.enable_outbox(1_000, false).unwrap();
            let mut batch = vec![event("a", now)];
            store
                .commit_batch(
                    &mut batch,
                    &[],
                    &[update("r1")],
                    chrono::Duration::minutes(10),
                )
                .unwrap();
            store.outbox_ack("notify", 1, &["notify"]).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.outbox_cursor("notify").unwrap(), 1);
        assert!(store.outbox_after(0, 100).unwrap().is_empty());
    }

    #[test]
    fn past_the_bound_alert_updates_merge_but_no_alert_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.enable_outbox(4, true).unwrap();
        let now = Utc::now();
        let window = chrono::Duration::minutes(10);
        for i in 0..10 {
            // Two rules: two alerts, each repeated.
            let mut batch = vec![event("a", now)];
            let rule = if i % 2 == 0 { "r1" } else { "r2" };
            store
                .commit_batch(&mut batch, &[], &[update(rule)], window)
                .unwrap();
        }
        let entries = store.outbox_after(0, 100).unwrap();
        let alerts: Vec<String> = kinds(&entries)
            .into_iter()
            .filter(|k| k.starts_with("alert"))
            .collect();
        // The first updates stay until the bound; then each alert keeps
        // only its newest pending one.
        assert!(entries.len() <= 5, "{entries:?}");
        assert!(alerts.contains(&"alert 1 open 5".to_owned()), "{alerts:?}");
        assert!(alerts.contains(&"alert 2 open 5".to_owned()), "{alerts:?}");
        assert_eq!(kinds(&entries).last().unwrap(), "rollup a 10");
    }

    #[test]
    fn a_new_replication_sink_gets_every_alert_and_heartbeats_replace_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut batch = vec![event("a", Utc::now())];
        store
            .commit_batch(&mut batch, &[], &[update("r1")], chrono::Duration::zero())
            .unwrap();
        store.write_heartbeat(&heartbeat(1)).unwrap();
        assert_eq!(
            store.outbox_stats().unwrap().entries,
            0,
            "off: nothing written"
        );

        store.enable_outbox(100, true).unwrap();
        store.write_heartbeat(&heartbeat(1)).unwrap();
        store.write_heartbeat(&heartbeat(2)).unwrap();
        // A consumer that only wants what comes next starts at the head.
        assert_eq!(store.outbox_join("notify", false).unwrap(), 2);
        // A new replication sink starts from the beginning, every alert
        // queued again; only once.
        assert_eq!(store.outbox_join("postgres", true).unwrap(), 0);
        let entries = store.outbox_after(0, 100).unwrap();
        assert_eq!(kinds(&entries), ["heartbeat 2", "alert 1 open 1"]);
        assert_eq!(entries[1].seq, 3);
        store
            .outbox_ack("postgres", 3, &["postgres", "notify"])
            .unwrap();
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        store.enable_outbox(100, true).unwrap();
        assert_eq!(store.outbox_join("postgres", true).unwrap(), 3);
        assert_eq!(
            store.outbox_stats().unwrap().entries,
            1,
            "notify has not read seq 3"
        );
    }

    fn heartbeat(events_total: u64) -> Heartbeat {
        Heartbeat {
            hostname: "h".into(),
            version: "0".into(),
            started_at: Utc::now(),
            uptime_seconds: 1,
            events_total,
            events_per_second: 0.0,
            storage_bytes: 0,
            index_lag: 0,
            outbox_entries: 0,
            heartbeat_interval_seconds: 30,
            api_url: None,
        }
    }

    #[test]
    fn old_hours_leave_the_rollups_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.enable_outbox(100, true).unwrap();
        let old = Utc::now() - chrono::Duration::hours(5);
        let mut batch = vec![event("a", old)];
        store.append(&mut batch).unwrap();
        let mut batch = vec![event("a", Utc::now())];
        store.append(&mut batch).unwrap();
        let keys = store
            .with_db(|db| Ok(db.begin_read()?.open_table(ROLLUPS)?.len()?))
            .unwrap();
        assert_eq!(keys, 1);
        let entries = store.outbox_after(0, 100).unwrap();
        assert_eq!(kinds(&entries), ["rollup a 1", "rollup a 1"]);
    }
}
