//! Online backup and offline restore of the redb file.
//!
//! A backup copies every table from ONE read transaction (a consistent
//! snapshot; the writer keeps committing meanwhile) into a new redb file.
//! The index is not backed up: it is derived, and rebuilt after a restore.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;

use super::{CHECKPOINTS, DB_FILE, EVENTS, Error, META, Result, Store};

/// Entries copied per write transaction into the backup file.
const COPY_CHUNK: usize = 1024;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    pub events: u64,
    pub last_seq: u64,
    pub bytes: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

impl Store {
    /// Writes a consistent copy of the store to `path`, which must not exist.
    pub fn backup_to(&self, path: &Path) -> Result<BackupReport> {
        if path.exists() {
            return Err(Error::Io {
                path: path.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "the backup file already exists",
                ),
            });
        }
        let partial = path.with_extension("partial");
        let _ = std::fs::remove_file(&partial);
        let target = Database::create(&partial).map_err(|source| Error::Open {
            path: partial.clone(),
            source,
        })?;
        let snapshot = self.with_db(|db| Ok(db.begin_read()?))?;
        copy_table(&snapshot, &target, EVENTS)?;
        copy_table(&snapshot, &target, META)?;
        copy_table(&snapshot, &target, CHECKPOINTS)?;
        copy_table(&snapshot, &target, super::alerts::ALERTS)?;
        copy_table(&snapshot, &target, super::alerts::ALERT_GROUPS)?;
        copy_table(&snapshot, &target, super::rules::RULES)?;
        // Accounts and the audit log, but not the refresh tokens: a restored
        // node starts with no sessions (and none revoked since comes back).
        copy_table(&snapshot, &target, super::accounts::USERS)?;
        copy_table(&snapshot, &target, super::accounts::API_KEYS)?;
        copy_table(&snapshot, &target, super::audit::AUDIT)?;
        // Blocks are re-applied by the restored node (offences escalate on).
        copy_table(&snapshot, &target, super::decisions::DECISIONS)?;
        copy_table(&snapshot, &target, super::decisions::OFFENCES)?;
        copy_table(&snapshot, &target, super::channels::CHANNELS)?;
        drop(target);
        std::fs::rename(&partial, path).map_err(io(path))?;
        let stats = self.stats_in(&snapshot)?;
        let bytes = std::fs::metadata(path).map_err(io(path))?.len();
        Ok(BackupReport {
            path: path.to_owned(),
            events: stats.events,
            last_seq: stats.last_seq,
            bytes,
        })
    }
}

/// Copies one table from the snapshot, in chunks of [`COPY_CHUNK`] entries.
fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    snapshot: &redb::ReadTransaction,
    target: &Database,
    def: TableDefinition<K, V>,
) -> Result<()> {
    let source = snapshot.open_table(def)?;
    let mut iter = source.iter()?.peekable();
    loop {
        // Each chunk in its own transaction; an empty table is created too.
        let txn = target.begin_write()?;
        {
            let mut table = txn.open_table(def)?;
            for item in iter.by_ref().take(COPY_CHUNK) {
                let (k, v) = item?;
                table.insert(k.value(), v.value())?;
            }
        }
        txn.commit()?;
        if iter.peek().is_none() {
            return Ok(());
        }
    }
}

/// Replaces the store in `data_dir` by the backup at `backup`, and removes
/// the index (it is rebuilt). Refuses while the data dir is in use.
///
/// The restored node gets a new node id: the fleet's central database
/// keeps what the old one replicated (including what the restore rolled
/// back), and the restored alerts replicate again under the new id, instead
/// of reusing alert ids and versions the central rows already have.
pub fn restore(backup: &Path, data_dir: &Path) -> Result<BackupReport> {
    // Check the backup opens and is a store this binary can read.
    let restored = {
        let scratch = data_dir.join("restore.partial");
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).map_err(io(&scratch))?;
        std::fs::copy(backup, scratch.join(DB_FILE)).map_err(io(backup))?;
        let store = Store::open(&scratch)?;
        let stats = store.stats()?;
        store.new_identity()?;
        drop(store);
        (scratch, stats)
    };
    // Holding the live store proves no daemon uses the data dir.
    let live = Store::open(data_dir)?;
    drop(live);
    let (scratch, stats) = restored;
    let db = data_dir.join(DB_FILE);
    std::fs::rename(scratch.join(DB_FILE), &db).map_err(io(&db))?;
    let _ = std::fs::remove_dir_all(&scratch);
    let index = data_dir.join("index");
    if index.exists() {
        std::fs::remove_dir_all(&index).map_err(io(&index))?;
    }
    let bytes = std::fs::metadata(&db).map_err(io(&db))?.len();
    Ok(BackupReport {
        path: db,
        events: stats.events,
        last_seq: stats.last_seq,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Event;

    #[test]
    fn backup_then_restore_gives_back_every_event_under_a_new_node_id() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        let store = Store::open(&live).unwrap();
        let mut events: Vec<Event> = (0..1000)
            .map(|i| Event {
                message: format!("event {i}"),
                received_at: chrono::Utc::now(),
                timestamp: chrono::Utc::now(),
                user_name: Some(format!("u{}", i % 7)),
                ..Event::default()
            })
            .collect();
        store.append(&mut events).unwrap();
        store.set_index_checkpoint(1000).unwrap();
        let backup = dir.path().join("b.redb");
        let report = store.backup_to(&backup).unwrap();
        assert_eq!((report.events, report.last_seq), (1000, 1000));
        assert!(
            store.backup_to(&backup).is_err(),
            "never overwrites a backup"
        );

        // Diverge after the backup, then restore over it.
        let mut more = vec![Event {
            message: "later".into(),
            ..Event::default()
        }];
        store.append(&mut more).unwrap();
        let node_id = store.node_id();
        drop(store);
        std::fs::create_dir_all(live.join("index")).unwrap();
        let restored = restore(&backup, &live).unwrap();
        assert_eq!(restored.events, 1000);
        assert!(
            !live.join("index").exists(),
            "the index is removed, to be rebuilt"
        );

        let store = Store::open(&live).unwrap();
        assert_ne!(
            store.node_id(),
            node_id,
            "a restored node is a new fleet member"
        );
        assert_eq!(store.scan_from(1, 5000).unwrap(), events);
        assert_eq!(store.stats().unwrap().events, 1000);
    }

    #[test]
    fn accounts_and_the_audit_log_are_backed_up_but_not_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        let store = Store::open(&live).unwrap();
        let auth = crate::auth::Auth::new(
            store.clone(),
            b"0123456789abcdef0123456789abcdef",
            &crate::config::Auth::default(),
        );
        auth.bootstrap_admin("a-long-enough-password").unwrap();
        let ip = "127.0.0.1".parse().unwrap();
        let tokens = auth.login("admin", "a-long-enough-password", ip).unwrap();
        let admin: crate::auth::CanAdminister =
            crate::auth::Principal::local().grant(None).unwrap();
        let (key, secret) = auth
            .create_api_key(&admin, "shipper", crate::auth::Role::Ingest)
            .unwrap();
        let backup = dir.path().join("b.redb");
        store.backup_to(&backup).unwrap();
        drop((auth, store));
        restore(&backup, &live).unwrap();

        let store = Store::open(&live).unwrap();
        let auth = crate::auth::Auth::new(
            store.clone(),
            b"0123456789abcdef0123456789abcdef",
            &crate::config::Auth::default(),
        );
        assert_eq!(store.user("admin").unwrap().unwrap().username, "admin");
        assert_eq!(auth.authenticate(&secret).unwrap().name, key.name);
        let verified = store.verify_audit().unwrap().unwrap();
        assert_eq!(verified.entries, 3, "user.create, login, apikey.create");
        assert!(
            auth.refresh(&tokens.refresh_token, ip).is_err(),
            "sessions do not come back with a restore"
        );
    }

    #[test]
    fn restore_refuses_a_data_dir_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("live")).unwrap();
        store.backup_to(&dir.path().join("b.redb")).unwrap();
        let err = restore(&dir.path().join("b.redb"), &dir.path().join("live")).unwrap_err();
        assert!(matches!(err, Error::Locked(_)), "{err}");
    }
}
