//! Alerts in redb, written in the same transaction as the events that
//! raised them.
//!
//! `alerts`: id -> the alert (JSON); `alert_groups`: dedup key (rule and
//! group key) -> the id of its latest alert. A firing whose group has an
//! active (open or acknowledged) alert last seen within the dedup window
//! counts as a repeat of it; otherwise it opens a new alert.

use chrono::{DateTime, Utc};
use redb::{
    ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};

use super::{Error, Result, Store};
use crate::model::{Alert, AlertStatus, AlertUpdate, Event, MAX_LINKED_EVENTS};
use crate::telemetry::metric;

pub(super) const ALERTS: TableDefinition<u64, &[u8]> = TableDefinition::new("alerts");
pub(super) const ALERT_GROUPS: TableDefinition<&str, u64> = TableDefinition::new("alert_groups");

/// Applies `updates` (whose events are `events`, seqs assigned) inside `txn`.
pub(super) fn apply(
    txn: &WriteTransaction,
    events: &[Event],
    updates: &[AlertUpdate],
    dedup_window: chrono::Duration,
) -> Result<()> {
    if updates.is_empty() {
        return Ok(());
    }
    let mut alerts = txn.open_table(ALERTS)?;
    let mut groups = txn.open_table(ALERT_GROUPS)?;
    let mut next = alerts.last()?.map_or(1, |(id, _)| id.value() + 1);
    let now = Utc::now();
    for update in updates {
        let Some(event) = events.get(update.event) else {
            continue;
        };
        let key = update.dedup_key();
        let existing = match groups.get(key.as_str())? {
            Some(id) => {
                let id = id.value();
                alerts.get(id)?.map(|v| decode(id, v.value())).transpose()?
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
        let bytes = serde_json::to_vec(&alert).map_err(|e| Error::Corrupt {
            seq: alert.id,
            reason: e.to_string(),
        })?;
        alerts.insert(alert.id, bytes.as_slice())?;
    }
    Ok(())
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
        created_at: now,
        updated_at: now,
    }
}

fn decode(id: u64, bytes: &[u8]) -> Result<Alert> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        seq: id,
        reason: format!("alert: {e}"),
    })
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
}

impl AlertFilter {
    fn matches(&self, a: &Alert) -> bool {
        self.status.is_none_or(|s| a.status == s)
            && self.severity.as_deref().is_none_or(|s| a.severity == s)
            && self.rule_id.as_deref().is_none_or(|r| a.rule_id == r)
            && self.from.is_none_or(|t| a.last_seen >= t)
            && self.to.is_none_or(|t| a.last_seen < t)
    }
}

impl Store {
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
            let mut out = Vec::new();
            for item in table.range(..before.unwrap_or(u64::MAX))?.rev() {
                let (id, bytes) = item?;
                let alert = decode(id.value(), bytes.value())?;
                if filter.matches(&alert) {
                    if out.len() == limit {
                        return Ok((out, true));
                    }
                    out.push(alert);
                }
            }
            Ok((out, false))
        })
    }

    pub fn alert(&self, id: u64) -> Result<Option<Alert>> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(ALERTS)?;
            table.get(id)?.map(|v| decode(id, v.value())).transpose()
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
