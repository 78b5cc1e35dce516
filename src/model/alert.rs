//! Alerts: what a rule firing becomes, grouped by (rule, group key).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How many event seqs an alert keeps (the newest); its `events_query`
/// finds them all.
pub const MAX_LINKED_EVENTS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Open,
    Acknowledged,
    Resolved,
    FalsePositive,
}

impl AlertStatus {
    /// Open or acknowledged: repeats are counted on it.
    pub fn is_active(self) -> bool {
        matches!(self, AlertStatus::Open | AlertStatus::Acknowledged)
    }
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: u64,
    pub rule_id: String,
    pub rule_title: String,
    /// informational, low, medium, high or critical (the rule's level).
    pub severity: String,
    pub status: AlertStatus,
    /// How many times the rule fired for this group.
    pub count: u64,
    /// Event time of the first and the latest firing.
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// The correlation's group-by values, or host, source IP and user of a
    /// plain detection.
    pub group_key: Vec<(String, String)>,
    pub correlation: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Seqs of the newest events behind it, at most [`MAX_LINKED_EVENTS`].
    pub events: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    /// When it was created and last changed (wall clock).
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Alert {
    /// The dedup key it was raised under (see [`AlertUpdate::dedup_key`]).
    pub fn dedup_key(&self) -> String {
        dedup_key(&self.rule_id, &self.group_key)
    }

    pub fn key_value(&self, name: &str) -> Option<&str> {
        self.group_key
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A search query for the events behind the alert: its group key's
    /// fields (the time range is `first_seen..=last_seen`).
    pub fn events_query(&self) -> String {
        self.group_key
            .iter()
            .map(|(k, v)| format!("{k}:\"{}\"", v.replace('"', "\\\"")))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

/// A rule firing on one event of a batch: what the detector hands the
/// store, which turns it into a new alert or a repeat of an active one.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertUpdate {
    /// Index of the event in its batch.
    pub event: usize,
    pub rule_id: String,
    pub rule_title: String,
    pub severity: &'static str,
    pub tags: Vec<String>,
    pub group_key: Vec<(String, String)>,
    pub correlation: bool,
}

impl AlertUpdate {
    /// The dedup key: one active alert per (rule, group key).
    pub fn dedup_key(&self) -> String {
        dedup_key(&self.rule_id, &self.group_key)
    }
}

/// `rule_id` and the group key's pairs, separated by a unit separator.
fn dedup_key(rule_id: &str, group_key: &[(String, String)]) -> String {
    let mut key = rule_id.to_owned();
    for (k, v) in group_key {
        key.push('\x1f');
        key.push_str(k);
        key.push('=');
        key.push_str(v);
    }
    key
}
