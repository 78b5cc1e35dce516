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
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Resolved => "resolved",
            AlertStatus::FalsePositive => "false_positive",
        }
    }

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
    /// What analysts did to it, oldest first: status changes, assignments
    /// and comments, each with who and when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<AlertChange>,
    /// When it was created and last changed (wall clock).
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The replication outbox seq of its latest update (0: not replicated).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u64,
    /// Every event behind its latest firing (raise or repeat) came from a
    /// trusted source ([`crate::model::Event::trusted`]); set at each firing,
    /// kept by analysts' changes. Alerts stored before it existed read as
    /// untrusted. For a correlation, the event that completed it.
    #[serde(default)]
    pub trusted: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Alert {
    /// Applies an analyst's `change`: checks the transition, sets the
    /// status or assignee, and records it in the history.
    pub fn change(&mut self, mut change: AlertChange) -> Result<(), String> {
        if self.history.len() >= MAX_HISTORY {
            return Err(format!(
                "alert {} has {MAX_HISTORY} changes, the most one alert keeps",
                self.id
            ));
        }
        change.status = change.action.next_status(self.status)?;
        match change.action {
            AlertAction::Assign => self.assignee.clone_from(&change.assignee),
            AlertAction::Comment if change.comment.as_deref().is_none_or(str::is_empty) => {
                return Err("a comment needs text".into());
            }
            _ => {}
        }
        self.status = change.status;
        self.updated_at = change.at;
        self.history.push(change);
        Ok(())
    }

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

/// Most changes (status changes, assignments, comments) one alert keeps.
pub const MAX_HISTORY: usize = 1_000;

/// What an analyst does to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertAction {
    Acknowledge,
    Resolve,
    MarkFalsePositive,
    Reopen,
    Assign,
    Comment,
}

impl AlertAction {
    /// The status after this action on an alert in `from`: open ->
    /// acknowledged -> resolved | false_positive, and reopen from any but
    /// open. Assigning and commenting keep the status.
    pub fn next_status(self, from: AlertStatus) -> Result<AlertStatus, String> {
        use AlertStatus::*;
        let to = match (self, from) {
            (AlertAction::Acknowledge, Open) => Acknowledged,
            (AlertAction::Resolve, Open | Acknowledged) => Resolved,
            (AlertAction::MarkFalsePositive, Open | Acknowledged) => FalsePositive,
            (AlertAction::Reopen, Acknowledged | Resolved | FalsePositive) => Open,
            (AlertAction::Assign | AlertAction::Comment, s) => s,
            (action, from) => {
                return Err(format!(
                    "cannot {} an alert that is {}",
                    action.verb(),
                    from.as_str()
                ));
            }
        };
        Ok(to)
    }

    /// The action's name (as stored).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertAction::Acknowledge => "acknowledge",
            AlertAction::Resolve => "resolve",
            AlertAction::MarkFalsePositive => "mark_false_positive",
            AlertAction::Reopen => "reopen",
            AlertAction::Assign => "assign",
            AlertAction::Comment => "comment",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            AlertAction::Acknowledge => "acknowledge",
            AlertAction::Resolve => "resolve",
            AlertAction::MarkFalsePositive => "mark as false positive",
            AlertAction::Reopen => "reopen",
            AlertAction::Assign => "assign",
            AlertAction::Comment => "comment on",
        }
    }
}

/// One entry of an alert's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertChange {
    pub at: DateTime<Utc>,
    /// Who made it: a user name, an API key's name, or (without accounts)
    /// the client's address.
    pub actor: String,
    pub action: AlertAction,
    /// The status after the change.
    pub status: AlertStatus,
    /// The assignee after an assignment (none: unassigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl AlertChange {
    /// A change by `actor` now; `status` is set when it is applied.
    pub fn new(actor: impl Into<String>, action: AlertAction) -> AlertChange {
        AlertChange {
            at: Utc::now(),
            actor: actor.into(),
            action,
            status: AlertStatus::Open,
            assignee: None,
            comment: None,
        }
    }

    pub fn with_comment(mut self, comment: Option<String>) -> AlertChange {
        self.comment = comment.filter(|c| !c.is_empty());
        self
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
    /// Whether this firing's events all came from trusted sources (for a
    /// correlation: whether the trusted events alone made it fire).
    pub trusted: bool,
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

#[cfg(test)]
mod tests {
    use super::*;
    use AlertAction::*;
    use AlertStatus::*;

    #[test]
    fn the_lifecycle_allows_these_transitions_and_no_others() {
        let statuses = [Open, Acknowledged, Resolved, FalsePositive];
        let allowed = [
            (Acknowledge, Open, Acknowledged),
            (Resolve, Open, Resolved),
            (Resolve, Acknowledged, Resolved),
            (MarkFalsePositive, Open, FalsePositive),
            (MarkFalsePositive, Acknowledged, FalsePositive),
            (Reopen, Acknowledged, Open),
            (Reopen, Resolved, Open),
            (Reopen, FalsePositive, Open),
        ];
        for action in [Acknowledge, Resolve, MarkFalsePositive, Reopen] {
            for from in statuses {
                let expected = allowed
                    .iter()
                    .find(|(a, f, _)| *a == action && *f == from)
                    .map(|(_, _, to)| *to);
                assert_eq!(
                    action.next_status(from).ok(),
                    expected,
                    "{action:?} from {from:?}"
                );
            }
        }
        for from in statuses {
            assert_eq!(Assign.next_status(from), Ok(from));
            assert_eq!(Comment.next_status(from), Ok(from));
        }
        assert_eq!(
            Acknowledge.next_status(Resolved).unwrap_err(),
            "cannot acknowledge an alert that is resolved"
        );
    }

    #[test]
    fn changes_are_recorded_with_who_and_when() {
        let now = Utc::now();
        let mut alert = Alert {
            id: 7,
            rule_id: "r".into(),
            rule_title: "R".into(),
            severity: "high".into(),
            status: Open,
            count: 1,
            first_seen: now,
            last_seen: now,
            group_key: Vec::new(),
            correlation: false,
            tags: Vec::new(),
            events: vec![1],
            assignee: None,
            history: Vec::new(),
            created_at: now,
            updated_at: now,
            version: 0,
            trusted: false,
        };
        let mut assign = AlertChange::new("alice", Assign);
        assign.assignee = Some("bob".into());
        alert.change(assign).unwrap();
        alert
            .change(AlertChange::new("bob", Acknowledge).with_comment(Some("looking".into())))
            .unwrap();
        assert_eq!(
            alert
                .change(AlertChange::new("bob", Comment).with_comment(Some(String::new())))
                .unwrap_err(),
            "a comment needs text"
        );
        alert
            .change(AlertChange::new("bob", Resolve).with_comment(Some("patched".into())))
            .unwrap();
        assert_eq!(alert.status, Resolved);
        assert_eq!(alert.assignee.as_deref(), Some("bob"));
        let trail: Vec<_> = alert
            .history
            .iter()
            .map(|c| (c.actor.as_str(), c.action, c.status, c.comment.as_deref()))
            .collect();
        assert_eq!(
            trail,
            [
                ("alice", Assign, Open, None),
                ("bob", Acknowledge, Acknowledged, Some("looking")),
                ("bob", Resolve, Resolved, Some("patched")),
            ]
        );
        assert_eq!(alert.updated_at, alert.history[2].at);
        // A rejected change leaves the alert as it was.
        assert!(alert.change(AlertChange::new("bob", Resolve)).is_err());
        assert_eq!(alert.history.len(), 3);
    }
}
