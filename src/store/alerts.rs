//! Alerts in redb, written in the same transaction as the events that
//! raised them.
//!
//! `alerts`: id -> the alert (JSON, zstd against a fixed dictionary);
//! `alert_heads`: id -> what the queue filters, counts and orders by (rule,
//! severity, status, count, last seen, group key, assignee), in a compact
//! binary form written with the alert;
//! `alert_groups`: dedup key (rule and group key) -> the id of its latest
//! alert. A firing whose group has an
//! active (open or acknowledged) alert last seen within the dedup window
//! counts as a repeat of it; otherwise it opens a new alert.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use redb::{
    ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::{DecoderDictionary, EncoderDictionary};

use super::{Error, Result, Store, audit, outbox};
use crate::auth::{CanTriage, Capability};
use crate::model::{Alert, AlertChange, AlertStatus, AlertUpdate, Event, MAX_LINKED_EVENTS};
use crate::telemetry::metric;

pub(super) const ALERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("alerts");
pub(super) const ALERT_GROUPS: TableDefinition<&str, u64> = TableDefinition::new("alert_groups");
pub(super) const ALERT_HEADS: TableDefinition<u64, &[u8]> = TableDefinition::new("alert_heads");

/// Writes `alert` and its head.
fn put(
    alerts: &mut redb::Table<u64, &[u8]>,
    heads: &mut redb::Table<u64, &[u8]>,
    alert: &Alert,
) -> Result<()> {
    alerts.insert(alert.id, encode(alert)?.as_slice())?;
    heads.insert(alert.id, Head::of(alert).encode().as_slice())?;
    Ok(())
}

/// Writes the head of every alert: the migration of a store (or a
/// backup) from before the heads table, at opening.
pub(super) fn fill_heads(txn: &WriteTransaction) -> Result<()> {
    let alerts = txn.open_table(ALERTS)?;
    let mut heads = txn.open_table(ALERT_HEADS)?;
    tracing::info!(
        alerts = alerts.len()?,
        "writing the alert queue's heads (once, after an upgrade)"
    );
    for item in alerts.iter()? {
        let (id, bytes) = item?;
        let alert = decode(id.value(), bytes.value())?;
        heads.insert(alert.id, Head::of(&alert).encode().as_slice())?;
    }
    Ok(())
}

/// Applies `updates` (whose events are `events`, seqs assigned) inside
/// `txn`; returns the alerts raised or repeated, as written.
pub(super) fn apply(
    txn: &WriteTransaction,
    events: &[Event],
    updates: &[AlertUpdate],
    dedup_window: chrono::Duration,
    outbox: Option<&mut outbox::Writer>,
) -> Result<Vec<Alert>> {
    let mut written = Vec::new();
    if updates.is_empty() {
        return Ok(written);
    }
    let mut alerts = txn.open_table(ALERTS)?;
    let mut heads = txn.open_table(ALERT_HEADS)?;
    let mut groups = txn.open_table(ALERT_GROUPS)?;
    let mut next = alerts.last()?.map_or(1, |(id, _)| id.value() + 1);
    let now = Utc::now();
    // An alert repeated within the batch (a brute force sends hundreds) is
    // read once and written once, as it stands after its last update: by
    // id, its outbox entry in `entries`.
    let mut latest: HashMap<u64, usize> = HashMap::new();
    // The batch's outbox entries, in order: where the alert they carry is in
    // `written`, and what happened to it. Written at the end, once each.
    let mut entries: Vec<(usize, outbox::AlertEvent)> = Vec::new();
    for update in updates {
        let Some(event) = events.get(update.event) else {
            continue;
        };
        let key = update.dedup_key();
        let existing = match groups.get(key.as_str())? {
            Some(id) => {
                let id = id.value();
                match latest.get(&id).and_then(|&entry| entries.get(entry)) {
                    Some(&(at, _)) => written.get(at).cloned(),
                    None => alerts.get(id)?.map(|v| decode(id, v.value())).transpose()?,
                }
            }
            None => None,
        };
        let alert = match existing {
            Some(mut a)
                if a.status.is_active() && event.timestamp - a.last_seen <= dedup_window =>
            {
                a.count += 1;
                a.last_seen = a.last_seen.max(event.timestamp);
                a.first_seen = a.first_seen.min(event.timestamp);
                if a.events.last() != Some(&event.seq) {
                    a.events.push(event.seq);
                }
                if a.events.len() > MAX_LINKED_EVENTS {
                    a.events.remove(0);
                }
                a.updated_at = now;
                // This firing's provenance: a forged repeat cannot lend
                // trust, nor take it from a later genuine one.
                a.trusted = update.trusted;
                a
            }
            _ => {
                metrics::counter!(metric::ALERTS_RAISED, "severity" => update.severity)
                    .increment(1);
                let id = next;
                next += 1;
                groups.insert(key.as_str(), id)?;
                new_alert(id, update, event, now)
            }
        };
        // An alert firing again with the same trust moves its entry of this
        // batch to its newer state: the sinks get it once a batch as the
        // batch leaves it (a raise stays a raise). A change of trust starts
        // an entry of its own, so a trusted firing is never folded into an
        // untrusted one, nor the other way round.
        let at = written.len();
        let same_trust = latest.get(&alert.id).copied().filter(|&entry| {
            entries
                .get(entry)
                .and_then(|&(before, _)| written.get(before))
                .is_some_and(|w| w.trusted == alert.trusted)
        });
        let entry = match same_trust {
            Some(entry) => {
                if let Some((carried, _)) = entries.get_mut(entry) {
                    *carried = at;
                }
                entry
            }
            None => {
                let change = if alert.count == 1 {
                    outbox::AlertEvent::Raised
                } else {
                    outbox::AlertEvent::Repeated
                };
                entries.push((at, change));
                entries.len() - 1
            }
        };
        latest.insert(alert.id, entry);
        written.push(alert);
    }
    if let Some(outbox) = outbox {
        for &(at, change) in &entries {
            if let Some(alert) = written.get_mut(at) {
                alert.version = outbox.alert(alert, change)?;
            }
        }
    }
    for &(at, _) in latest.values().filter_map(|&entry| entries.get(entry)) {
        if let Some(alert) = written.get(at) {
            put(&mut alerts, &mut heads, alert)?;
        }
    }
    Ok(written)
}

fn new_alert(id: u64, u: &AlertUpdate, event: &Event, now: DateTime<Utc>) -> Alert {
    Alert {
        id,
        rule_id: u.rule_id.clone(),
        rule_title: u.rule_title.clone(),
        severity: u.severity.to_owned(),
        status: AlertStatus::Open,
        count: 1,
        first_seen: event.timestamp,
        last_seen: event.timestamp,
        group_key: u.group_key.clone(),
        correlation: u.correlation,
        tags: u.tags.clone(),
        events: vec![event.seq],
        assignee: None,
        history: Vec::new(),
        created_at: now,
        updated_at: now,
        version: 0,
        trusted: u.trusted,
    }
}

/// What the audit log keeps of an alert before and after a change.
fn summary(alert: &Alert) -> serde_json::Value {
    serde_json::json!({
        "id": alert.id,
        "status": alert.status,
        "assignee": alert.assignee,
    })
}

/// The first byte of an alert stored compressed; an alert stored before
/// (plain JSON) starts with `{`.
const COMPRESSED: u8 = 1;

/// What alerts are compressed against: the JSON of an alert and the ids,
/// titles, levels and tags of the built-in rules as of 2026-12 (zstd
/// "raw content": matches are found in it as in text already seen). An
/// alert's JSON is about 540 bytes; with it, about 140 bytes (plain zstd:
/// 360). It can never change: every alert stored needs it to be read. A
/// rule added since compresses a little less, nothing more.
static DICTIONARY: &[u8] = include_bytes!("alerts.dict");

/// The largest alert read back: `MAX_HISTORY` changes with comments of
/// `MAX_COMMENT` bytes fit, with room.
const MAX_ALERT_BYTES: usize = 32 * 1024 * 1024;

thread_local! {
    static COMPRESSOR: RefCell<Option<Compressor<'static>>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// The dictionary, prepared once for the whole process.
static ENCODER_DICTIONARY: LazyLock<EncoderDictionary<'static>> =
    LazyLock::new(|| EncoderDictionary::new(DICTIONARY, 3));
static DECODER_DICTIONARY: LazyLock<DecoderDictionary<'static>> =
    LazyLock::new(|| DecoderDictionary::new(DICTIONARY));

pub(super) fn encode(alert: &Alert) -> Result<Vec<u8>> {
    let corrupt = |reason: String| Error::Corrupt {
        seq: alert.id,
        reason,
    };
    let json = serde_json::to_vec(alert).map_err(|e| corrupt(e.to_string()))?;
    let compressed = COMPRESSOR.with_borrow_mut(|slot| {
        let compressor = match slot {
            Some(c) => c,
            None => slot.insert(Compressor::with_prepared_dictionary(&ENCODER_DICTIONARY)?),
        };
        compressor.compress(&json)
    });
    let compressed = compressed.map_err(|e| corrupt(format!("cannot compress alert: {e}")))?;
    let mut out = Vec::with_capacity(1 + compressed.len());
    out.push(COMPRESSED);
    out.extend_from_slice(&compressed);
    Ok(out)
}

pub(super) fn decode(id: u64, bytes: &[u8]) -> Result<Alert> {
    let corrupt = |reason: String| Error::Corrupt {
        seq: id,
        reason: format!("alert: {reason}"),
    };
    let json = match bytes.split_first() {
        Some((&COMPRESSED, body)) => {
            let capacity = Decompressor::upper_bound(body)
                .unwrap_or(MAX_ALERT_BYTES)
                .min(MAX_ALERT_BYTES);
            let json = DECOMPRESSOR.with_borrow_mut(|slot| {
                let decompressor = match slot {
                    Some(d) => d,
                    None => {
                        slot.insert(Decompressor::with_prepared_dictionary(&DECODER_DICTIONARY)?)
                    }
                };
                decompressor.decompress(body, capacity)
            });
            Cow::Owned(json.map_err(|e| corrupt(format!("cannot decompress: {e}")))?)
        }
        _ => Cow::Borrowed(bytes),
    };
    serde_json::from_slice(&json).map_err(|e| corrupt(e.to_string()))
}

/// What `alerts` lists.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub status: Option<AlertStatus>,
    pub severity: Option<String>,
    pub rule_id: Option<String>,
    /// Last seen at or after.
    pub from: Option<DateTime<Utc>>,
    /// Last seen before.
    pub to: Option<DateTime<Utc>>,
    /// Grouped by this `host.name`.
    pub host: Option<String>,
    /// Grouped by this `source.ip`.
    pub source_ip: Option<String>,
    /// Assigned to this user; the empty string: to nobody.
    pub assignee: Option<String>,
}

/// What the queue, the alert list and the rule list read of a stored
/// alert to filter, count and order it, from `alert_heads`.
#[derive(Debug, PartialEq)]
struct Head<'a> {
    rule_id: &'a str,
    severity: &'a str,
    status: AlertStatus,
    count: u64,
    last_seen: DateTime<Utc>,
    group_key: Vec<(&'a str, &'a str)>,
    assignee: Option<&'a str>,
}

/// Reads a head's bytes front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn text(&mut self) -> Option<&'a str> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        std::str::from_utf8(self.take(len as usize)?).ok()
    }
}

/// A status's code in a head: its place here.
const STATUSES: [AlertStatus; 4] = [
    AlertStatus::Open,
    AlertStatus::Acknowledged,
    AlertStatus::Resolved,
    AlertStatus::FalsePositive,
];

impl<'a> Head<'a> {
    fn of(a: &'a Alert) -> Head<'a> {
        Head {
            rule_id: &a.rule_id,
            severity: &a.severity,
            status: a.status,
            count: a.count,
            last_seen: a.last_seen,
            group_key: a
                .group_key
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            assignee: a.assignee.as_deref(),
        }
    }

    /// status (1 byte), count (u64), last seen (µs, i64), rule id,
    /// severity, whether assigned (1 byte) and to whom, then the group
    /// key's pairs; strings with a u32 length before them.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        let status = STATUSES.iter().position(|s| *s == self.status).unwrap_or(0);
        out.push(status as u8);
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.last_seen.timestamp_micros().to_le_bytes());
        let text = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        };
        text(&mut out, self.rule_id);
        text(&mut out, self.severity);
        out.push(u8::from(self.assignee.is_some()));
        if let Some(user) = self.assignee {
            text(&mut out, user);
        }
        for (k, v) in &self.group_key {
            text(&mut out, k);
            text(&mut out, v);
        }
        out
    }

    fn decode(id: u64, bytes: &'a [u8]) -> Result<Head<'a>> {
        let mut r = Reader(bytes);
        let head = (|| {
            let status = *STATUSES.get(usize::from(r.byte()?))?;
            let count = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
            let micros = i64::from_le_bytes(r.take(8)?.try_into().ok()?);
            let last_seen = DateTime::from_timestamp_micros(micros)?;
            let rule_id = r.text()?;
            let severity = r.text()?;
            let assignee = match r.byte()? {
                0 => None,
                _ => Some(r.text()?),
            };
            let mut group_key = Vec::new();
            while !r.0.is_empty() {
                group_key.push((r.text()?, r.text()?));
            }
            Some(Head {
                rule_id,
                severity,
                status,
                count,
                last_seen,
                group_key,
                assignee,
            })
        })();
        head.ok_or_else(|| Error::Corrupt {
            seq: id,
            reason: "alert head: truncated or not UTF-8".to_owned(),
        })
    }

    fn key_value(&self, name: &str) -> Option<&'a str> {
        self.group_key
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }

    fn matches(&self, filter: &AlertFilter) -> bool {
        filter.status.is_none_or(|s| self.status == s) && self.matches_but_status(filter)
    }

    fn matches_but_status(&self, filter: &AlertFilter) -> bool {
        filter
            .severity
            .as_deref()
            .is_none_or(|s| self.severity == s)
            && filter.rule_id.as_deref().is_none_or(|r| self.rule_id == r)
            && filter.from.is_none_or(|t| self.last_seen >= t)
            && filter.to.is_none_or(|t| self.last_seen < t)
            && filter
                .host
                .as_deref()
                .is_none_or(|h| self.key_value("host.name") == Some(h))
            && filter
                .source_ip
                .as_deref()
                .is_none_or(|ip| self.key_value("source.ip") == Some(ip))
            && filter
                .assignee
                .as_deref()
                .is_none_or(|u| self.assignee.unwrap_or_default() == u)
    }
}

/// Where an alert goes in the queue's order.
#[derive(Debug, Clone, Copy)]
struct Rank {
    id: u64,
    last_seen: DateTime<Utc>,
    severity: u8,
    count: u64,
}

/// Deepest offset a sorted queue page starts at.
pub const MAX_QUEUE_OFFSET: usize = 100_000;

/// The orders of the alert queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertOrder {
    /// Raised most recently first (by id).
    Newest,
    /// Seen most recently first.
    LastSeen,
    /// The most severe first, then the newest.
    Severity,
    /// The most events first, then the newest.
    Count,
}

impl AlertOrder {
    fn cmp(self, a: &Rank, b: &Rank) -> std::cmp::Ordering {
        let newest = b.id.cmp(&a.id);
        match self {
            AlertOrder::Newest => newest,
            AlertOrder::LastSeen => b.last_seen.cmp(&a.last_seen).then(newest),
            AlertOrder::Severity => b.severity.cmp(&a.severity).then(newest),
            AlertOrder::Count => b.count.cmp(&a.count).then(newest),
        }
    }
}

/// Which page of the queue.
#[derive(Debug, Clone, Copy)]
pub enum Paging {
    /// Newest first, alerts with an id below `before`.
    Newest { before: Option<u64> },
    /// Another order, from `offset`.
    Sorted { order: AlertOrder, offset: usize },
}

/// A page of the alert queue and the counts beside it.
#[derive(Debug, Default)]
pub struct AlertQueue {
    pub alerts: Vec<Alert>,
    /// More match after the page.
    pub more: bool,
    /// Alerts matching the filter but its status, per status.
    pub counts: std::collections::BTreeMap<&'static str, u64>,
}

/// Why an analyst's change was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no alert {0}")]
    NotFound(u64),
    #[error("alert {id}: {reason}")]
    Invalid { id: u64, reason: String },
    #[error(transparent)]
    Store(#[from] Error),
}

impl Store {
    /// Applies `change` to every alert of `ids` in one transaction: all of
    /// them change, or (one is missing, one cannot make the transition)
    /// none. Returns the changed alerts in the order of `ids`.
    pub fn change_alerts(
        &self,
        cap: &CanTriage,
        ids: &[u64],
        change: &AlertChange,
    ) -> std::result::Result<Vec<Alert>, ChangeError> {
        let result = self.with_db(|db| {
            let txn = db.begin_write()?;
            let mut before = Vec::with_capacity(ids.len());
            let mut outbox = outbox::Writer::open(&txn, self)?;
            let changed = {
                let mut alerts = txn.open_table(ALERTS)?;
                let mut heads = txn.open_table(ALERT_HEADS)?;
                let mut changed = Vec::with_capacity(ids.len());
                for &id in ids {
                    let Some(mut alert) =
                        alerts.get(id)?.map(|v| decode(id, v.value())).transpose()?
                    else {
                        return Ok(Err(ChangeError::NotFound(id)));
                    };
                    before.push(summary(&alert));
                    if let Err(reason) = alert.change(change.clone()) {
                        return Ok(Err(ChangeError::Invalid { id, reason }));
                    }
                    if let Some(outbox) = outbox.as_mut() {
                        alert.version = outbox.alert(&alert, outbox::AlertEvent::Changed)?;
                    }
                    put(&mut alerts, &mut heads, &alert)?;
                    changed.push(alert);
                }
                changed
            };
            let target = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
            let record = audit::Record::new(format!("alert.{}", change.action.as_str()))
                .target(target)
                .before(before)
                .after(serde_json::json!({
                    "alerts": changed.iter().map(summary).collect::<Vec<_>>(),
                    "comment": change.comment,
                }));
            audit::append(&txn, cap.actor(), record)?;
            let head = outbox.map(|o| o.finish(&txn)).transpose()?;
            txn.commit()?;
            if let Some(head) = head {
                self.outbox_written(head);
            }
            metrics::counter!(metric::ALERT_CHANGES, "action" => change.action.as_str())
                .increment(changed.len() as u64);
            Ok(Ok(changed))
        });
        result?
    }

    /// Alerts matching `filter`, newest (highest id) first, with ids below
    /// `before`; at most `limit`, and whether there are more.
    pub fn alerts(
        &self,
        filter: &AlertFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Alert>, bool)> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(ALERTS)?;
            let heads = txn.open_table(ALERT_HEADS)?;
            let mut out = Vec::new();
            for item in heads.range(..before.unwrap_or(u64::MAX))?.rev() {
                let (id, bytes) = item?;
                let id = id.value();
                if !Head::decode(id, bytes.value())?.matches(filter) {
                    continue;
                }
                if out.len() == limit {
                    return Ok((out, true));
                }
                if let Some(bytes) = table.get(id)? {
                    out.push(decode(id, bytes.value())?);
                }
            }
            Ok((out, false))
        })
    }

    /// A page of the alerts matching `filter` in `order` and, in the same
    /// pass, how many alerts of each status match the rest of `filter`
    /// (the console's queue). Newest first pages by id (`before`); the
    /// other orders by `offset`, keeping at most about twice
    /// `offset + limit` alerts in memory while they scan.
    pub fn alert_queue(
        &self,
        filter: &AlertFilter,
        page: Paging,
        limit: usize,
    ) -> Result<AlertQueue> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(ALERTS)?;
            let heads = txn.open_table(ALERT_HEADS)?;
            let mut queue = AlertQueue::default();
            let (order, before, offset) = match page {
                Paging::Newest { before } => (AlertOrder::Newest, before, 0),
                Paging::Sorted { order, offset } => (order, None, offset.min(MAX_QUEUE_OFFSET)),
            };
            let keep = offset.saturating_add(limit).saturating_add(1);
            let mut kept: Vec<Rank> = Vec::new();
            for item in heads.iter()?.rev() {
                let (id, bytes) = item?;
                let id = id.value();
                let head = Head::decode(id, bytes.value())?;
                if !head.matches_but_status(filter) {
                    continue;
                }
                *queue.counts.entry(head.status.as_str()).or_default() += 1;
                let wanted =
                    filter.status.is_none_or(|s| head.status == s) && before.is_none_or(|b| id < b);
                if !wanted {
                    continue;
                }
                let rank = Rank {
                    id,
                    last_seen: head.last_seen,
                    severity: crate::notify::severity_rank(head.severity),
                    count: head.count,
                };
                if order == AlertOrder::Newest {
                    // Ids descend: the first `keep` are the page and one more.
                    if kept.len() < keep {
                        kept.push(rank);
                    }
                    continue;
                }
                kept.push(rank);
                if kept.len() >= 2 * keep {
                    kept.select_nth_unstable_by(keep - 1, |a, b| order.cmp(a, b));
                    kept.truncate(keep);
                }
            }
            kept.sort_by(|a, b| order.cmp(a, b));
            queue.more = kept.len() > offset + limit;
            // Only the page's alerts are decoded whole.
            for rank in kept.into_iter().skip(offset).take(limit) {
                if let Some(bytes) = table.get(rank.id)? {
                    queue.alerts.push(decode(rank.id, bytes.value())?);
                }
            }
            Ok(queue)
        })
    }

    /// How many events each rule matched, by rule id: the counts of its
    /// alerts still held (the console's rule list).
    pub fn rule_hits(&self) -> Result<std::collections::HashMap<String, u64>> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let heads = txn.open_table(ALERT_HEADS)?;
            let mut hits = std::collections::HashMap::new();
            for item in heads.iter()? {
                let (id, bytes) = item?;
                let head = Head::decode(id.value(), bytes.value())?;
                *hits.entry(head.rule_id.to_owned()).or_default() += head.count;
            }
            Ok(hits)
        })
    }

    pub fn alert(&self, id: u64) -> Result<Option<Alert>> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(ALERTS)?;
            table.get(id)?.map(|v| decode(id, v.value())).transpose()
        })
    }

    /// Deletes up to `limit` alerts last seen before `cutoff` (oldest ids
    /// first), with their dedup entries; returns how many.
    pub fn purge_alerts(&self, cutoff: DateTime<Utc>, limit: usize) -> Result<u64> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let mut purged = 0;
            {
                let mut alerts = txn.open_table(ALERTS)?;
                let mut heads = txn.open_table(ALERT_HEADS)?;
                let mut groups = txn.open_table(ALERT_GROUPS)?;
                let mut old = Vec::new();
                for item in alerts.iter()? {
                    let (id, bytes) = item?;
                    let alert = decode(id.value(), bytes.value())?;
                    if alert.last_seen < cutoff {
                        old.push(alert);
                        if old.len() == limit {
                            break;
                        }
                    }
                }
                for alert in old {
                    alerts.remove(alert.id)?;
                    heads.remove(alert.id)?;
                    let key = alert.dedup_key();
                    if groups.get(key.as_str())?.map(|v| v.value()) == Some(alert.id) {
                        groups.remove(key.as_str())?;
                    }
                    purged += 1;
                }
            }
            txn.commit()?;
            Ok(purged)
        })
    }

    /// How many alerts are stored.
    pub fn alert_count(&self) -> Result<u64> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            Ok(txn.open_table(ALERTS)?.len()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triage() -> CanTriage {
        crate::auth::Principal::local().grant(None).unwrap()
    }

    fn event(seq: u64, ts: &str) -> Event {
        Event {
            seq,
            timestamp: DateTime::parse_from_rfc3339(ts)
                .unwrap()
                .with_timezone(&Utc),
            ..Event::default()
        }
    }

    fn update(ip: &str) -> AlertUpdate {
        AlertUpdate {
            event: 0,
            rule_id: "r1".into(),
            rule_title: "Rule one".into(),
            severity: "high",
            tags: Vec::new(),
            group_key: vec![("source.ip".into(), ip.into())],
            correlation: false,
            trusted: false,
        }
    }

    fn apply_one(store: &Store, e: Event, u: AlertUpdate, window: chrono::Duration) {
        store
            .with_db(|db| {
                let txn = db.begin_write()?;
                apply(&txn, &[e], &[u], window, None)?;
                txn.commit()?;
                Ok(())
            })
            .unwrap();
    }

    fn rank(a: &Alert) -> Rank {
        Rank {
            id: a.id,
            last_seen: a.last_seen,
            severity: crate::notify::severity_rank(&a.severity),
            count: a.count,
        }
    }

    #[test]
    fn the_queue_sorts_and_pages_in_every_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hour = chrono::Duration::hours(1);
        // 30 alerts: ip i fires 1 + i % 4 times; severities rotate; the
        // lower the id, the later it was last seen.
        let severities = ["low", "critical", "medium", "high", "informational"];
        let mut seq = 0;
        for i in 0..30u32 {
            for _ in 0..1 + i % 4 {
                seq += 1;
                let at = format!("2026-03-01T{:02}:{:02}:00Z", 10 - i / 10, 59 - i);
                let u = AlertUpdate {
                    severity: severities[i as usize % 5],
                    ..update(&format!("10.0.0.{i}"))
                };
                apply_one(&store, event(seq, &at), u, hour);
            }
        }
        let all = |order| {
            let mut out = Vec::new();
            let mut offset = 0;
            loop {
                let page = store
                    .alert_queue(&AlertFilter::default(), Paging::Sorted { order, offset }, 7)
                    .unwrap();
                offset += page.alerts.len();
                out.extend(page.alerts);
                if !page.more {
                    return out;
                }
            }
        };
        for order in [
            AlertOrder::LastSeen,
            AlertOrder::Severity,
            AlertOrder::Count,
        ] {
            let got = all(order);
            assert_eq!(got.len(), 30, "{order:?}");
            assert!(
                got.windows(2)
                    .all(|w| order.cmp(&rank(&w[0]), &rank(&w[1])).is_le()),
                "{order:?}"
            );
        }
        assert_eq!(all(AlertOrder::Severity)[0].severity, "critical");
        assert_eq!(all(AlertOrder::Count)[0].count, 4);
        assert_eq!(all(AlertOrder::LastSeen)[0].id, 1);
        // Newest first pages by id, and counts every status.
        let first = store
            .alert_queue(&AlertFilter::default(), Paging::Newest { before: None }, 7)
            .unwrap();
        assert_eq!(
            first.alerts.iter().map(|a| a.id).collect::<Vec<_>>(),
            (24..=30).rev().collect::<Vec<_>>()
        );
        assert!(first.more);
        assert_eq!(first.counts.values().sum::<u64>(), 30);
        let last = store
            .alert_queue(
                &AlertFilter::default(),
                Paging::Newest { before: Some(3) },
                7,
            )
            .unwrap();
        assert_eq!(last.alerts.iter().map(|a| a.id).collect::<Vec<_>>(), [2, 1]);
        assert!(!last.more);
    }

    #[test]
    fn a_head_reads_back_what_was_written_and_refuses_garbage() {
        let mut alert = new_alert(
            7,
            &update("192.0.2.9"),
            &event(1, "2026-03-01T10:00:00Z"),
            Utc::now(),
        );
        alert.count = 12;
        alert.status = AlertStatus::FalsePositive;
        alert.group_key.push(("host.name".into(), "wéb-1".into()));
        for assignee in [None, Some("ana".to_owned()), Some(String::new())] {
            alert.assignee = assignee;
            let bytes = Head::of(&alert).encode();
            assert_eq!(Head::decode(7, &bytes).unwrap(), Head::of(&alert));
            for cut in 0..bytes.len() {
                // A truncated head never reads as another valid one with
                // the same fields, and never panics.
                if let Ok(head) = Head::decode(7, &bytes[..cut]) {
                    assert_ne!(head, Head::of(&alert));
                }
            }
        }
        assert!(Head::decode(7, &[9; 40]).is_err());
    }

    /// A brute-force alert as the built-in rules raise it.
    fn typical_alert() -> Alert {
        let u = AlertUpdate {
            rule_id: "443f2c4e-156b-49bf-a0a7-b193b705812c".into(),
            rule_title: "SSH Brute Force From Single Source".into(),
            severity: "medium",
            tags: vec!["attack.credential-access".into(), "attack.t1110.001".into()],
            correlation: true,
            trusted: true,
            ..update("98.241.217.251")
        };
        let mut alert = new_alert(
            15001,
            &u,
            &event(938104, "2025-11-29T03:26:02Z"),
            Utc::now(),
        );
        alert.count = 4;
        alert.events = vec![938049, 938068, 938086, 938104];
        alert
    }

    #[test]
    fn an_alert_is_stored_compressed_and_reads_back_whole() {
        let mut alert = typical_alert();
        let json = serde_json::to_vec(&alert).unwrap();
        let stored = encode(&alert).unwrap();
        assert_eq!(stored[0], COMPRESSED);
        assert_eq!(decode(alert.id, &stored).unwrap(), alert);
        // The dictionary is what makes it small: plain zstd leaves about
        // two thirds of the JSON.
        assert!(
            stored.len() * 3 < json.len(),
            "{} bytes stored for {} of JSON",
            stored.len(),
            json.len()
        );
        // Everything an analyst adds, in any characters, comes back.
        for (i, action) in [
            crate::model::AlertAction::Assign,
            crate::model::AlertAction::Comment,
            crate::model::AlertAction::Acknowledge,
        ]
        .into_iter()
        .enumerate()
        {
            let mut change = AlertChange::new(format!("analyst-{i}"), action);
            change.assignee = Some("ana".into());
            change.comment = Some(format!("seen before, ticket #{i} ✓ \"quoted\"\n"));
            alert.change(change).unwrap();
        }
        assert_eq!(decode(alert.id, &encode(&alert).unwrap()).unwrap(), alert);
        // Alerts stored before compression (plain JSON) still read.
        assert_eq!(
            decode(alert.id, &serde_json::to_vec(&alert).unwrap()).unwrap(),
            alert
        );
    }

    #[test]
    fn a_damaged_alert_is_an_error_not_a_panic() {
        let stored = encode(&typical_alert()).unwrap();
        for cut in 0..stored.len() {
            assert!(decode(1, &stored[..cut]).is_err(), "cut at {cut}");
        }
        for at in 1..stored.len() {
            let mut damaged = stored.clone();
            damaged[at] ^= 0x5a;
            // Either refused or read as some alert; never a panic.
            let _ = decode(1, &damaged);
        }
        assert!(decode(1, &[COMPRESSED, 0x28, 0xb5, 0x2f, 0xfd]).is_err());
    }

    #[test]
    fn the_alert_dictionary_never_changes() {
        // Every compressed alert needs exactly these bytes to be read.
        use sha2::Digest;
        let digest = sha2::Sha256::digest(DICTIONARY);
        assert_eq!(
            format!("{digest:x}"),
            "b5b11a42d750e0d928be53f7453e5233bd146e262bf9b440ea490786ad3aee34"
        );
    }

    #[test]
    fn a_store_from_before_the_heads_gets_them_at_opening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            for i in 0..5u64 {
                let at = format!("2026-03-01T10:0{i}:00Z");
                apply_one(
                    &store,
                    event(i + 1, &at),
                    update(&format!("10.0.0.{i}")),
                    chrono::Duration::hours(1),
                );
            }
            // As a version 1 store: no heads.
            store
                .with_db(|db| {
                    let txn = db.begin_write()?;
                    txn.delete_table(ALERT_HEADS)?;
                    txn.open_table(super::super::META)?.insert(
                        super::super::META_SCHEMA_VERSION,
                        1u64.to_be_bytes().as_slice(),
                    )?;
                    txn.commit()?;
                    Ok(())
                })
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let queue = store
            .alert_queue(&AlertFilter::default(), Paging::Newest { before: None }, 10)
            .unwrap();
        assert_eq!(
            queue.alerts.iter().map(|a| a.id).collect::<Vec<_>>(),
            [5, 4, 3, 2, 1]
        );
        let filter = AlertFilter {
            source_ip: Some("10.0.0.3".into()),
            ..AlertFilter::default()
        };
        let (found, _) = store.alerts(&filter, None, 10).unwrap();
        assert_eq!(found.iter().map(|a| a.id).collect::<Vec<_>>(), [4]);
        assert_eq!(store.rule_hits().unwrap()["r1"], 5);
    }

    #[test]
    fn an_alert_is_trusted_when_the_events_of_its_latest_firing_are() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hour = chrono::Duration::hours(1);
        let firing = |seq, minute: u32, trusted| Event {
            trusted,
            ..event(seq, &format!("2026-03-01T10:{minute:02}:00Z"))
        };
        let trusted_now = |store: &Store| {
            let (all, _) = store.alerts(&AlertFilter::default(), None, 10).unwrap();
            assert_eq!(all.len(), 1);
            all[0].trusted
        };
        let as_trusted = |trusted| AlertUpdate {
            trusted,
            ..update("10.0.0.1")
        };
        apply_one(&store, firing(1, 0, true), as_trusted(true), hour);
        assert!(trusted_now(&store));
        // A forged repeat (an untrusted source) is untrusted...
        apply_one(&store, firing(2, 1, false), as_trusted(false), hour);
        assert!(!trusted_now(&store));
        // ...and does not keep a later genuine firing from being trusted.
        apply_one(&store, firing(3, 2, true), as_trusted(true), hour);
        assert!(trusted_now(&store));
        // An analyst's change keeps it.
        store
            .change_alerts(
                &triage(),
                &[1],
                &AlertChange::new("bob", crate::model::AlertAction::Acknowledge),
            )
            .unwrap();
        assert!(trusted_now(&store));
        // An alert stored before the flag existed reads as untrusted.
        let mut old = serde_json::to_value(
            store.alerts(&AlertFilter::default(), None, 1).unwrap().0[0].clone(),
        )
        .unwrap();
        old.as_object_mut().unwrap().remove("trusted");
        assert!(!serde_json::from_value::<Alert>(old).unwrap().trusted);
    }

    #[test]
    fn repeats_count_within_the_window_and_a_new_alert_opens_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hour = chrono::Duration::hours(1);
        apply_one(
            &store,
            event(1, "2026-03-01T10:00:00Z"),
            update("10.0.0.1"),
            hour,
        );
        apply_one(
            &store,
            event(2, "2026-03-01T10:30:00Z"),
            update("10.0.0.1"),
            hour,
        );
        apply_one(
            &store,
            event(3, "2026-03-01T10:31:00Z"),
            update("10.0.0.2"),
            hour,
        );
        apply_one(
            &store,
            event(4, "2026-03-01T12:00:00Z"),
            update("10.0.0.1"),
            hour,
        );
        let (all, more) = store.alerts(&AlertFilter::default(), None, 10).unwrap();
        assert!(!more);
        let summary: Vec<(u64, &str, u64, Vec<u64>)> = all
            .iter()
            .map(|a| {
                (
                    a.id,
                    a.key_value("source.ip").unwrap(),
                    a.count,
                    a.events.clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (3, "10.0.0.1", 1, vec![4]),
                (2, "10.0.0.2", 1, vec![3]),
                (1, "10.0.0.1", 2, vec![1, 2]),
            ]
        );

        // Retention: alerts last seen before the cutoff go, with their
        // dedup entry; a later firing opens a new alert.
        let cutoff = DateTime::parse_from_rfc3339("2026-03-01T11:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(store.purge_alerts(cutoff, 100).unwrap(), 2);
        assert_eq!(store.alert_count().unwrap(), 1);
        apply_one(
            &store,
            event(5, "2026-03-01T12:10:00Z"),
            update("10.0.0.2"),
            hour,
        );
        let (all, _) = store.alerts(&AlertFilter::default(), None, 10).unwrap();
        assert_eq!(
            all.iter().map(|a| (a.id, a.count)).collect::<Vec<_>>(),
            [(4, 1), (3, 1)]
        );
    }

    /// The firings above in one batch: each is returned as it left the
    /// alert, and the store holds what separate batches leave; the next
    /// batch goes on from it.
    #[test]
    fn repeats_within_one_batch_are_stored_as_in_separate_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hour = chrono::Duration::hours(1);
        let apply_all = |firings: &[(u64, &str, &str)]| {
            let events: Vec<Event> = firings.iter().map(|&(seq, ts, _)| event(seq, ts)).collect();
            let updates: Vec<AlertUpdate> = firings
                .iter()
                .enumerate()
                .map(|(i, &(_, _, ip))| AlertUpdate {
                    event: i,
                    ..update(ip)
                })
                .collect();
            store
                .with_db(|db| {
                    let txn = db.begin_write()?;
                    let written = apply(&txn, &events, &updates, hour, None)?;
                    txn.commit()?;
                    Ok(written)
                })
                .unwrap()
                .iter()
                .map(|a| (a.id, a.count, a.events.clone()))
                .collect::<Vec<_>>()
        };
        let written = apply_all(&[
            (1, "2026-03-01T10:00:00Z", "10.0.0.1"),
            (2, "2026-03-01T10:30:00Z", "10.0.0.1"),
            (3, "2026-03-01T10:31:00Z", "10.0.0.2"),
            (4, "2026-03-01T12:00:00Z", "10.0.0.1"),
        ]);
        assert_eq!(
            written,
            [
                (1, 1, vec![1]),
                (1, 2, vec![1, 2]),
                (2, 1, vec![3]),
                (3, 1, vec![4]),
            ]
        );
        let stored = |id| {
            let a = store.alert(id).unwrap().unwrap();
            (a.id, a.count, a.events)
        };
        assert_eq!(stored(1), (1, 2, vec![1, 2]));
        assert_eq!(stored(2), (2, 1, vec![3]));
        assert_eq!(stored(3), (3, 1, vec![4]));
        let heads: Vec<(u64, u64)> = store
            .alerts(&AlertFilter::default(), None, 10)
            .unwrap()
            .0
            .iter()
            .map(|a| (a.id, a.count))
            .collect();
        assert_eq!(heads, [(3, 1), (2, 1), (1, 2)]);

        let written = apply_all(&[
            (5, "2026-03-01T10:40:00Z", "10.0.0.2"),
            (6, "2026-03-01T12:05:00Z", "10.0.0.1"),
        ]);
        assert_eq!(written, [(2, 2, vec![3, 5]), (3, 2, vec![4, 6])]);
        assert_eq!(stored(2), (2, 2, vec![3, 5]));
    }

    #[test]
    fn a_bulk_change_applies_to_all_or_none() {
        use crate::model::AlertAction;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hour = chrono::Duration::hours(1);
        for (seq, ip) in [(1, "10.0.0.1"), (2, "10.0.0.2"), (3, "10.0.0.3")] {
            apply_one(&store, event(seq, "2026-03-01T10:00:00Z"), update(ip), hour);
        }
        let ack = AlertChange::new("alice", AlertAction::Acknowledge);
        let changed = store.change_alerts(&triage(), &[2], &ack).unwrap();
        assert_eq!(changed[0].status, AlertStatus::Acknowledged);

        // Alert 2 is already acknowledged: nothing changes.
        let err = store
            .change_alerts(&triage(), &[1, 2, 3], &ack)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "alert 2: cannot acknowledge an alert that is acknowledged"
        );
        assert!(matches!(
            store.change_alerts(&triage(), &[1, 99], &ack),
            Err(ChangeError::NotFound(99))
        ));
        assert_eq!(store.alert(1).unwrap().unwrap().status, AlertStatus::Open);
        assert!(store.alert(1).unwrap().unwrap().history.is_empty());

        let resolve = AlertChange::new("bob", AlertAction::Resolve);
        let changed = store
            .change_alerts(&triage(), &[1, 2, 3], &resolve)
            .unwrap();
        assert!(changed.iter().all(|a| a.status == AlertStatus::Resolved));
        assert_eq!(store.alert(2).unwrap().unwrap().history.len(), 2);

        // A resolved alert takes no repeats: the next firing opens a new one.
        apply_one(
            &store,
            event(4, "2026-03-01T10:05:00Z"),
            update("10.0.0.1"),
            hour,
        );
        assert_eq!(store.alert_count().unwrap(), 4);
    }
}
