//! Notification deliveries: one per (alert update, channel), queued from the
//! outbox and kept with their state for the `notifications` query.
//!
//! `deliveries`: (outbox seq, channel) -> [`Delivery`] (JSON); the key is the
//! delivery's identity, so queueing the same update twice (the outbox
//! replays a batch after a crash) adds nothing. `deliveries_pending`:
//! (channel, seq) for the channel's sender to take in order.

use chrono::{DateTime, Utc};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::outbox::AlertSummary;
use super::{Error, Result, Store};

pub(super) const DELIVERIES: TableDefinition<(u64, &str), &[u8]> =
    TableDefinition::new("deliveries");
pub(super) const PENDING: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("deliveries_pending");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting to be sent, or to be retried.
    Pending,
    /// Sent on its own.
    Sent,
    /// Sent in a digest with others.
    Digested,
}

/// One alert update to announce on one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    #[serde(skip)]
    pub seq: u64,
    #[serde(skip)]
    pub channel: String,
    pub alert: AlertSummary,
    pub state: DeliveryState,
    pub queued_at: DateTime<Utc>,
    pub attempts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub sent_at: Option<DateTime<Utc>>,
}

fn encode(d: &Delivery) -> Result<Vec<u8>> {
    serde_json::to_vec(d).map_err(|e| Error::Corrupt {
        seq: d.seq,
        reason: format!("delivery: {e}"),
    })
}

fn decode(seq: u64, channel: &str, bytes: &[u8]) -> Result<Delivery> {
    let mut d: Delivery = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
        seq,
        reason: format!("delivery: {e}"),
    })?;
    d.seq = seq;
    d.channel = channel.to_owned();
    Ok(d)
}

/// How a send attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Sent { digest: bool },
    Failed { error: String },
}

impl Store {
    /// Queues deliveries (seq, channel, alert); those already known are
    /// left alone. Returns how many were new.
    pub fn queue_deliveries(&self, new: &[(u64, &str, &AlertSummary)]) -> Result<u64> {
        if new.is_empty() {
            return Ok(0);
        }
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let mut added = 0;
            {
                let mut deliveries = txn.open_table(DELIVERIES)?;
                let mut pending = txn.open_table(PENDING)?;
                let now = Utc::now();
                for &(seq, channel, alert) in new {
                    if deliveries.get((seq, channel))?.is_some() {
                        continue;
                    }
                    let d = Delivery {
                        seq,
                        channel: channel.to_owned(),
                        alert: alert.clone(),
                        state: DeliveryState::Pending,
                        queued_at: now,
                        attempts: 0,
                        last_error: None,
                        sent_at: None,
                    };
                    deliveries.insert((seq, channel), encode(&d)?.as_slice())?;
                    pending.insert((channel, seq), ())?;
                    added += 1;
                }
            }
            txn.commit()?;
            Ok(added)
        })
    }

    /// The oldest `limit` deliveries still pending on `channel`.
    pub fn pending_deliveries(&self, channel: &str, limit: usize) -> Result<Vec<Delivery>> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let pending = txn.open_table(PENDING)?;
            let deliveries = txn.open_table(DELIVERIES)?;
            let mut out = Vec::new();
            for item in pending
                .range((channel, 0)..=(channel, u64::MAX))?
                .take(limit)
            {
                let (key, _) = item?;
                let (_, seq) = key.value();
                if let Some(bytes) = deliveries.get((seq, channel))? {
                    out.push(decode(seq, channel, bytes.value())?);
                }
            }
            Ok(out)
        })
    }

    /// Records an attempt at sending `seqs` on `channel`: sent ones leave
    /// the pending list, failed ones stay with their error.
    pub fn record_deliveries(&self, channel: &str, seqs: &[u64], outcome: &Outcome) -> Result<()> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            {
                let mut deliveries = txn.open_table(DELIVERIES)?;
                let mut pending = txn.open_table(PENDING)?;
                let now = Utc::now();
                for &seq in seqs {
                    let Some(mut d) = deliveries
                        .get((seq, channel))?
                        .map(|v| decode(seq, channel, v.value()))
                        .transpose()?
                    else {
                        continue;
                    };
                    d.attempts += 1;
                    match outcome {
                        Outcome::Sent { digest } => {
                            d.state = if *digest {
                                DeliveryState::Digested
                            } else {
                                DeliveryState::Sent
                            };
                            d.sent_at = Some(now);
                            d.last_error = None;
                            pending.remove((channel, seq))?;
                        }
                        Outcome::Failed { error } => d.last_error = Some(error.clone()),
                    }
                    deliveries.insert((seq, channel), encode(&d)?.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
    }

    /// Deliveries newest first, with seq below `before`, matching the
    /// filters; at most `limit`, and whether there are more.
    pub fn deliveries(
        &self,
        channel: Option<&str>,
        state: Option<DeliveryState>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<Delivery>, bool)> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(DELIVERIES)?;
            let end = (before.unwrap_or(u64::MAX), "");
            let mut out = Vec::new();
            for item in table.range(..end)?.rev() {
                let (key, bytes) = item?;
                let (seq, name) = key.value();
                if channel.is_some_and(|c| c != name) {
                    continue;
                }
                let d = decode(seq, name, bytes.value())?;
                if state.is_some_and(|s| s != d.state) {
                    continue;
                }
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(d);
            }
            Ok((out, false))
        })
    }

    /// Deletes sent deliveries queued before `cutoff` (at most `limit`).
    pub fn purge_deliveries(&self, cutoff: DateTime<Utc>, limit: usize) -> Result<u64> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let mut purged = 0;
            {
                let mut table = txn.open_table(DELIVERIES)?;
                let mut old = Vec::new();
                for item in table.iter()? {
                    let (key, bytes) = item?;
                    let (seq, name) = key.value();
                    let d = decode(seq, name, bytes.value())?;
                    if d.queued_at >= cutoff {
                        break;
                    }
                    if d.state != DeliveryState::Pending {
                        old.push((seq, name.to_owned()));
                        if old.len() == limit {
                            break;
                        }
                    }
                }
                for (seq, name) in &old {
                    table.remove((*seq, name.as_str()))?;
                    purged += 1;
                }
            }
            txn.commit()?;
            Ok(purged)
        })
    }
}
