//! Detection rules in redb: the rules created over the API, and the
//! enabled state of built-in and file rules (which ship in the binary or
//! live in their files).
//!
//! `rules`: rule id -> [`StoredRule`] (JSON). Every change appends its
//! audit entry (before and after) in its own write transaction.

use chrono::{DateTime, Utc};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Error, Result, Store, audit};
use crate::auth::{CanEditRules, Capability};

pub(super) const RULES: TableDefinition<&str, &[u8]> = TableDefinition::new("rules");

/// A rule created over the API, or the enabled state of a built-in or file
/// rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRule {
    /// The Sigma rule's `id`.
    pub id: String,
    /// The Sigma YAML of a rule created over the API; `None` for a built-in
    /// or file rule, of which only `enabled` is kept here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yaml: Option<String>,
    pub enabled: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

impl StoredRule {
    fn new(cap: &CanEditRules, id: &str, yaml: Option<String>, enabled: bool) -> StoredRule {
        let now = Utc::now();
        StoredRule {
            id: id.to_owned(),
            yaml,
            enabled,
            created_by: cap.actor().name.clone(),
            created_at: now,
            updated_by: cap.actor().name.clone(),
            updated_at: now,
        }
    }

    fn touch(&mut self, cap: &CanEditRules) {
        self.updated_by = cap.actor().name.clone();
        self.updated_at = Utc::now();
    }

    /// What the audit log keeps of it.
    fn audit(&self) -> serde_json::Value {
        json!({"enabled": self.enabled, "yaml": self.yaml})
    }
}

/// Why a rule change was not made.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("rule {0} exists: give the new rule another id")]
    Exists(String),
    #[error("no rule {0}")]
    NotFound(String),
    #[error("rule {0} is built-in or from a rule file: it can only be enabled or disabled")]
    ReadOnly(String),
    #[error(transparent)]
    Store(#[from] Error),
}

fn encode(rule: &StoredRule) -> Result<Vec<u8>> {
    serde_json::to_vec(rule).map_err(|e| corrupt(&rule.id, &e.to_string()))
}

fn decode(id: &str, bytes: &[u8]) -> Result<StoredRule> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(id, &e.to_string()))
}

fn corrupt(id: &str, reason: &str) -> Error {
    Error::Corrupt {
        seq: 0,
        reason: format!("rule {id}: {reason}"),
    }
}

impl Store {
    /// Every stored rule and enabled state, by id.
    pub fn rules(&self) -> Result<Vec<StoredRule>> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(RULES)?;
            let mut out = Vec::new();
            for item in table.iter()? {
                let (id, bytes) = item?;
                out.push(decode(id.value(), bytes.value())?);
            }
            Ok(out)
        })
    }

    pub fn rule(&self, id: &str) -> Result<Option<StoredRule>> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(RULES)?;
            table.get(id)?.map(|v| decode(id, v.value())).transpose()
        })
    }

    /// Stores a new rule (enabled), checked by the caller; `Exists` when a
    /// rule created over the API has its id. (The caller also refuses the
    /// ids of built-in and file rules; an enabled state left by one that is
    /// gone is replaced.)
    pub fn create_rule(
        &self,
        cap: &CanEditRules,
        id: &str,
        yaml: &str,
    ) -> std::result::Result<StoredRule, RuleError> {
        self.change_rule(cap, id, "rule.create", |existing| match existing {
            Some(r) if r.yaml.is_some() => Err(RuleError::Exists(id.to_owned())),
            _ => Ok(StoredRule::new(cap, id, Some(yaml.to_owned()), true)),
        })
    }

    /// Replaces the YAML of a rule created over the API (same id, checked
    /// by the caller); its enabled state stays.
    pub fn update_rule(
        &self,
        cap: &CanEditRules,
        id: &str,
        yaml: &str,
    ) -> std::result::Result<StoredRule, RuleError> {
        self.change_rule(cap, id, "rule.update", |existing| match existing {
            Some(mut r) if r.yaml.is_some() => {
                r.yaml = Some(yaml.to_owned());
                r.touch(cap);
                Ok(r)
            }
            _ => Err(RuleError::NotFound(id.to_owned())),
        })
    }

    /// Enables or disables a rule: one created over the API, or a built-in
    /// or file rule (`loaded`: the caller knows one with this id).
    pub fn set_rule_enabled(
        &self,
        cap: &CanEditRules,
        id: &str,
        enabled: bool,
        loaded: bool,
    ) -> std::result::Result<StoredRule, RuleError> {
        let action = if enabled {
            "rule.enable"
        } else {
            "rule.disable"
        };
        self.change_rule(cap, id, action, |existing| match existing {
            Some(mut r) if r.yaml.is_some() || loaded => {
                r.enabled = enabled;
                r.touch(cap);
                Ok(r)
            }
            None if loaded => Ok(StoredRule::new(cap, id, None, enabled)),
            _ => Err(RuleError::NotFound(id.to_owned())),
        })
    }

    /// Deletes a rule created over the API; returns it.
    pub fn delete_rule(
        &self,
        cap: &CanEditRules,
        id: &str,
    ) -> std::result::Result<StoredRule, RuleError> {
        let result = self.with_db(|db| {
            let txn = db.begin_write()?;
            let removed = {
                let mut table = txn.open_table(RULES)?;
                let existing = table.get(id)?.map(|v| decode(id, v.value())).transpose()?;
                match existing {
                    Some(r) if r.yaml.is_some() => {
                        table.remove(id)?;
                        r
                    }
                    Some(_) => return Ok(Err(RuleError::ReadOnly(id.to_owned()))),
                    None => return Ok(Err(RuleError::NotFound(id.to_owned()))),
                }
            };
            let record = audit::Record::new("rule.delete")
                .target(id)
                .before(removed.audit());
            audit::append(&txn, cap.actor(), record)?;
            txn.commit()?;
            Ok(Ok(removed))
        });
        result?
    }

    /// Reads the rule `id`, lets `change` decide its new state, writes it
    /// and its audit entry in one transaction.
    fn change_rule(
        &self,
        cap: &CanEditRules,
        id: &str,
        action: &str,
        change: impl FnOnce(Option<StoredRule>) -> std::result::Result<StoredRule, RuleError>,
    ) -> std::result::Result<StoredRule, RuleError> {
        let result = self.with_db(|db| {
            let txn = db.begin_write()?;
            let (before, after) = {
                let mut table = txn.open_table(RULES)?;
                let existing = table.get(id)?.map(|v| decode(id, v.value())).transpose()?;
                let before = existing.as_ref().map(StoredRule::audit);
                let after = match change(existing) {
                    Ok(r) => r,
                    Err(e) => return Ok(Err(e)),
                };
                table.insert(id, encode(&after)?.as_slice())?;
                (before, after)
            };
            let mut record = audit::Record::new(action).target(id).after(after.audit());
            if let Some(before) = before {
                record = record.before(before);
            }
            audit::append(&txn, cap.actor(), record)?;
            txn.commit()?;
            Ok(Ok(after))
        });
        result?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Principal, PrincipalKind, Role};

    fn cap(name: &str) -> CanEditRules {
        Principal {
            name: name.into(),
            kind: PrincipalKind::User,
            role: Role::Analyst,
        }
        .grant(Some("10.0.0.9".parse().unwrap()))
        .unwrap()
    }

    fn actions(store: &Store) -> Vec<(String, String, Option<String>)> {
        let (entries, _) = store.audit_entries(None, 100).unwrap();
        entries
            .into_iter()
            .rev()
            .map(|e| (e.action, e.actor, e.target))
            .collect()
    }

    #[test]
    fn every_change_is_stored_with_who_and_audited_with_before_and_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let created = store
            .create_rule(&cap("alice"), "r1", "title: one")
            .unwrap();
        assert!(created.enabled);
        assert!(matches!(
            store.create_rule(&cap("bob"), "r1", "title: again"),
            Err(RuleError::Exists(_))
        ));
        let updated = store.update_rule(&cap("bob"), "r1", "title: two").unwrap();
        assert_eq!(updated.yaml.as_deref(), Some("title: two"));
        assert_eq!(
            (updated.created_by.as_str(), updated.updated_by.as_str()),
            ("alice", "bob")
        );
        let disabled = store
            .set_rule_enabled(&cap("carol"), "r1", false, false)
            .unwrap();
        assert!(!disabled.enabled);
        assert_eq!(disabled.yaml.as_deref(), Some("title: two"));

        // A built-in rule: only its enabled state is kept, and it cannot be
        // updated or deleted.
        assert!(matches!(
            store.set_rule_enabled(&cap("carol"), "builtin-1", false, false),
            Err(RuleError::NotFound(_))
        ));
        let builtin = store
            .set_rule_enabled(&cap("carol"), "builtin-1", false, true)
            .unwrap();
        assert_eq!((builtin.yaml, builtin.enabled), (None, false));
        assert!(matches!(
            store.update_rule(&cap("bob"), "builtin-1", "title: x"),
            Err(RuleError::NotFound(_))
        ));
        assert!(matches!(
            store.delete_rule(&cap("bob"), "builtin-1"),
            Err(RuleError::ReadOnly(_))
        ));
        assert!(matches!(
            store.delete_rule(&cap("bob"), "nope"),
            Err(RuleError::NotFound(_))
        ));

        let deleted = store.delete_rule(&cap("dave"), "r1").unwrap();
        assert_eq!(deleted.id, "r1");
        assert_eq!(store.rule("r1").unwrap(), None);
        assert_eq!(
            store
                .rules()
                .unwrap()
                .iter()
                .map(|r| r.id.as_str())
                .collect::<Vec<_>>(),
            ["builtin-1"]
        );

        let t = |s: &str| Some(s.to_owned());
        assert_eq!(
            actions(&store),
            [
                ("rule.create".into(), "alice".into(), t("r1")),
                ("rule.update".into(), "bob".into(), t("r1")),
                ("rule.disable".into(), "carol".into(), t("r1")),
                ("rule.disable".into(), "carol".into(), t("builtin-1")),
                ("rule.delete".into(), "dave".into(), t("r1")),
            ]
        );
        let (entries, _) = store.audit_entries(None, 100).unwrap();
        let update = entries.iter().find(|e| e.action == "rule.update").unwrap();
        assert_eq!(
            update.before,
            Some(json!({"enabled": true, "yaml": "title: one"}))
        );
        assert_eq!(
            update.after,
            Some(json!({"enabled": true, "yaml": "title: two"}))
        );
        assert_eq!(update.source_ip, Some("10.0.0.9".parse().unwrap()));
        let delete = entries.iter().find(|e| e.action == "rule.delete").unwrap();
        assert_eq!(
            (delete.before.clone(), delete.after.clone()),
            (Some(json!({"enabled": false, "yaml": "title: two"})), None)
        );
        assert!(store.verify_audit().unwrap().is_ok());
    }

    #[test]
    fn rules_survive_a_reopen_and_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(&dir.path().join("live")).unwrap();
            store
                .create_rule(&cap("alice"), "r1", "title: one")
                .unwrap();
            store
                .set_rule_enabled(&cap("alice"), "builtin-1", false, true)
                .unwrap();
            store.backup_to(&dir.path().join("b.redb")).unwrap();
        }
        let store = Store::open(&dir.path().join("live")).unwrap();
        assert_eq!(store.rules().unwrap().len(), 2);
        drop(store);
        let restored = dir.path().join("restored");
        super::super::backup::restore(&dir.path().join("b.redb"), &restored).unwrap();
        let store = Store::open(&restored).unwrap();
        let ids: Vec<String> = store.rules().unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["builtin-1", "r1"]);
    }
}
