//! Notification channels created over the API (those of the config files
//! are not stored): name -> the channel as JSON, secrets included (the data
//! dir is the daemon's own). Each change commits with its audit entry,
//! which shows secrets as `***`.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{Error, Result, Store, audit};
use crate::auth::Actor;

pub(super) const CHANNELS: TableDefinition<&str, &[u8]> = TableDefinition::new("channels");

impl Store {
    /// Every stored channel: (name, JSON).
    pub fn stored_channels(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(CHANNELS)?;
            table
                .iter()?
                .map(|item| {
                    let (k, v) = item?;
                    Ok((k.value().to_owned(), v.value().to_vec()))
                })
                .collect()
        })
    }

    /// Creates or replaces channel `name`; `shown` is what the audit log
    /// keeps of it.
    pub fn put_channel(
        &self,
        actor: &Actor,
        name: &str,
        stored: &[u8],
        shown: serde_json::Value,
    ) -> Result<()> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let before = txn.open_table(CHANNELS)?.insert(name, stored)?.is_some();
            let action = if before {
                "notification.channel.update"
            } else {
                "notification.channel.create"
            };
            audit::append(
                &txn,
                actor,
                audit::Record::new(action)
                    .target(name.to_owned())
                    .after(shown),
            )?;
            txn.commit()?;
            Ok(())
        })
    }

    /// Deletes channel `name`; false when there was none.
    pub fn delete_channel(&self, actor: &Actor, name: &str) -> Result<bool> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let existed = txn.open_table(CHANNELS)?.remove(name)?.is_some();
            if existed {
                audit::append(
                    &txn,
                    actor,
                    audit::Record::new("notification.channel.delete").target(name.to_owned()),
                )?;
            }
            txn.commit()?;
            Ok(existed)
        })
    }
}

/// A stored channel that no longer parses (a newer or older binary).
pub fn corrupt(name: &str, e: &serde_json::Error) -> Error {
    Error::Corrupt {
        seq: 0,
        reason: format!("channel {name}: {e}"),
    }
}
