//! Online backup and offline restore of the redb file.
//!
//! A backup copies every table from ONE read transaction (a consistent
//! snapshot; the writer keeps committing meanwhile) into a new redb file.
//! The index is not backed up: it is derived, and rebuilt after a restore.
//!
//! A backup holds every account, the audit log and the channels' secrets:
//! it is created mode 0600 (whatever the umask of who runs it), and never
//! in a directory every user may write without the sticky bit (another
//! user could swap the file). The caller audits it (`control::execute`).

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{CHECKPOINTS, DB_FILE, EVENTS, Error, META, Result, Store};

/// Entries copied per write transaction into the backup file.
const COPY_CHUNK: usize = 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    /// The node backed up (a restore gives the node a new id: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<ulid::Ulid>,
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
        check_directory(path)?;
        let partial = path.with_extension("partial");
        let _ = std::fs::remove_file(&partial);
        let file = private_file(&partial)?;
        let target = redb::backends::FileBackend::new(file)
            .and_then(|backend| Database::builder().create_with_backend(backend))
            .map_err(|source| Error::Open {
                path: partial.clone(),
                source,
            })?;
        let snapshot = self.with_db(|db| Ok(db.begin_read()?))?;
        let copied = (|| -> Result<()> {
            copy_table(&snapshot, &target, EVENTS)?;
            copy_table(&snapshot, &target, META)?;
            copy_table(&snapshot, &target, CHECKPOINTS)?;
            copy_table(&snapshot, &target, super::alerts::ALERTS)?;
            copy_table(&snapshot, &target, super::alerts::ALERT_GROUPS)?;
            copy_table(&snapshot, &target, super::alerts::ALERT_HEADS)?;
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
            Ok(())
        })();
        drop(target);
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, path).map_err(io(path))?;
        let stats = self.stats_in(&snapshot)?;
        let bytes = std::fs::metadata(path).map_err(io(path))?.len();
        Ok(BackupReport {
            path: path.to_owned(),
            node_id: Some(self.node_id),
            events: stats.events,
            last_seq: stats.last_seq,
            bytes,
        })
    }
}

/// A new file at `path`, mode 0600 from its creation (not set after, so
/// there is no moment where others may open it), never over an existing
/// file or through a symbolic link (`create_new` is `O_CREAT|O_EXCL`).
fn private_file(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))
}

/// Refuses a directory that every user may write into without the sticky
/// bit: another user could replace or remove the backup there.
fn check_directory(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mode = std::fs::metadata(dir)
        .map_err(io(dir))?
        .permissions()
        .mode();
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(Error::Io {
            path: dir.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "every user may write into this directory (and it has no sticky bit): write the backup where only secmon's user (or root) can",
            ),
        });
    }
    Ok(())
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
        node_id: None,
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
    fn a_backup_is_private_from_its_creation_and_not_in_a_shared_directory() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("live")).unwrap();
        let backup = dir.path().join("b.redb");
        store.backup_to(&backup).unwrap();
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");

        // Every user may write here and nothing stops them swapping the file.
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = store.backup_to(&shared.join("b.redb")).unwrap_err();
        assert!(err.to_string().contains("sticky"), "{err}");
        assert!(!shared.join("b.redb").exists());
        assert!(!shared.join("b.partial").exists());
        // With the sticky bit (like /tmp) only the owner may remove it.
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        store.backup_to(&shared.join("b.redb")).unwrap();

        // A link planted at the partial file's name is not written through.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let target = dir.path().join("c.redb");
        std::os::unix::fs::symlink(&victim, target.with_extension("partial")).unwrap();
        store.backup_to(&target).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
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
