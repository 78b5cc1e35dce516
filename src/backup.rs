//! Backups that leave the node: verified, checksummed, kept off-site.
//!
//! A backup is the redb copy `store::backup` writes (audited by
//! `control`). Every backup is then verified: a copy is opened as a store
//! in a scratch directory and read through, and what it holds must equal
//! what the backup reported; its SHA-256 goes beside it in `<name>.sha256`
//! (the `sha256sum` format). A backup to `s3://bucket/prefix/` is staged in
//! `<data dir>/backups/`, uploaded (in parts when large) with its checksum,
//! and the staged file removed. A restore from S3 checks the checksum
//! before it touches the data dir.
//!
//! The daemon makes one every `backup.schedule` into `backup.target`
//! (a directory or `s3://`), keeping the `backup.keep` newest of the node.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use object_store::ObjectStoreExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::config::S3;
use crate::objects::Location;
use crate::store::backup::BackupReport;
use crate::telemetry::metric;

/// A verified backup.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Made {
    /// Where it is: a path, or `s3://bucket/key`.
    pub target: String,
    pub events: u64,
    pub last_seq: u64,
    pub bytes: u64,
    pub sha256: String,
    /// Opened in a scratch directory and read through: it holds what it
    /// should.
    pub verified: bool,
}

/// `secmon-<node>-<YYYYMMDDTHHMMSSZ>.redb`: sorts by time per node.
pub fn file_name(node: ulid::Ulid, at: DateTime<Utc>) -> String {
    format!("secmon-{node}-{}.redb", at.format("%Y%m%dT%H%M%SZ"))
}

/// Opens a copy of `file` as a store in a scratch directory beside it
/// (never `file` itself: opening runs migrations), reads every event, and
/// compares with `report`; returns `file`'s SHA-256. Blocks.
pub fn verify(file: &Path, report: &BackupReport) -> Result<String, String> {
    let scratch = file.with_extension("verify");
    let _ = std::fs::remove_dir_all(&scratch);
    let checked = (|| {
        std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
        std::fs::copy(file, scratch.join(crate::store::DB_FILE)).map_err(|e| e.to_string())?;
        let store = crate::store::Store::open(&scratch).map_err(|e| e.to_string())?;
        let stats = store.stats().map_err(|e| e.to_string())?;
        let (mut events, mut last, mut from) = (0u64, 0u64, 0u64);
        loop {
            let batch = store.scan_from(from, 8192).map_err(|e| e.to_string())?;
            let Some(end) = batch.last().map(|e| e.seq) else {
                break;
            };
            for event in &batch {
                if event.seq <= last {
                    return Err(format!("event {} out of order", event.seq));
                }
                last = event.seq;
            }
            events += batch.len() as u64;
            from = end + 1;
        }
        if (events, stats.events, stats.last_seq) != (report.events, report.events, report.last_seq)
        {
            return Err(format!(
                "the copy holds {} events up to seq {} ({events} read), the backup reported {} up to {}",
                stats.events, stats.last_seq, report.events, report.last_seq
            ));
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    checked.map_err(|e| format!("the backup does not verify: {e}"))?;
    sha256_file(file).map_err(|e| format!("reading {}: {e}", file.display()))
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// The checksum file's text for `name` (`sha256sum -c` reads it).
fn checksum_line(sha256: &str, name: &str) -> String {
    format!("{sha256}  {name}\n")
}

/// The checksum in a checksum file's text.
fn parse_checksum(text: &str) -> Option<&str> {
    let hex = text.split_whitespace().next()?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// Writes `<file>.sha256` beside a local backup (mode 0600).
pub fn write_checksum(file: &Path, sha256: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = checksum_path(file);
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(checksum_line(sha256, &name).as_bytes()))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

fn checksum_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Checks a local backup against the `<file>.sha256` beside it, when there
/// is one; `Ok(false)` when there is none.
pub fn check_local(file: &Path) -> Result<bool, String> {
    let Ok(text) = std::fs::read_to_string(checksum_path(file)) else {
        return Ok(false);
    };
    let expected = parse_checksum(&text).ok_or_else(|| {
        format!(
            "{} is not a SHA-256 checksum file",
            checksum_path(file).display()
        )
    })?;
    let actual = sha256_file(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    if actual != expected {
        return Err(format!(
            "{} does not match its checksum (SHA-256 {actual}, expected {expected}): the file is damaged or not the one backed up",
            file.display()
        ));
    }
    Ok(true)
}

/// Uploads `file` as `name` into `location` (in parts when large), then
/// its checksum file; returns the object's URL.
pub async fn upload(
    location: &Location,
    file: &Path,
    name: &str,
    sha256: &str,
) -> Result<String, String> {
    let path = location.path(name);
    let mut writer = object_store::buffered::BufWriter::new(location.store.clone(), path.clone());
    let mut source = tokio::fs::File::open(file)
        .await
        .map_err(|e| format!("reading {}: {e}", file.display()))?;
    let copied = async {
        tokio::io::copy(&mut source, &mut writer).await?;
        tokio::io::AsyncWriteExt::shutdown(&mut writer).await
    }
    .await;
    if let Err(e) = copied {
        let _ = writer.abort().await;
        return Err(format!("uploading to {}: {e}", location.url));
    }
    let line = checksum_line(sha256, name);
    location
        .store
        .put(
            &location.path(&format!("{name}.sha256")),
            line.into_bytes().into(),
        )
        .await
        .map_err(|e| format!("uploading the checksum to {}: {e}", location.url))?;
    Ok(format!("{}/{name}", location.url.trim_end_matches('/')))
}

/// Downloads `s3://bucket/key` into `dest` (a new file, mode 0600) and
/// checks it against `key.sha256`.
pub async fn download(url: &str, s3: &S3, dest: &Path) -> Result<(), String> {
    let (dir, name) = url
        .rsplit_once('/')
        .filter(|(dir, name)| !name.is_empty() && dir.len() > "s3://".len())
        .ok_or_else(|| format!("{url} names no object: use s3://bucket/key"))?;
    let location = Location::open(dir, s3)?;
    let checksum = location
        .store
        .get(&location.path(&format!("{name}.sha256")))
        .await
        .map_err(|e| format!("{url}.sha256: {e} (every backup secmon uploads has one beside it)"))?
        .bytes()
        .await
        .map_err(|e| format!("{url}.sha256: {e}"))?;
    let expected = parse_checksum(&String::from_utf8_lossy(&checksum))
        .ok_or_else(|| format!("{url}.sha256 is not a SHA-256 checksum file"))?
        .to_owned();
    let object = location
        .store
        .get(&location.path(name))
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let mut out = {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)
            .map_err(|e| format!("{}: {e}", dest.display()))?;
        tokio::fs::File::from_std(file)
    };
    let mut hasher = Sha256::new();
    let mut stream = object.into_stream();
    let written = async {
        while let Some(chunk) = stream.try_next().await.map_err(|e| e.to_string())? {
            hasher.update(&chunk);
            tokio::io::AsyncWriteExt::write_all(&mut out, &chunk)
                .await
                .map_err(|e| e.to_string())?;
        }
        out.sync_all().await.map_err(|e| e.to_string())
    }
    .await;
    let actual = format!("{:x}", hasher.finalize());
    let result = match written {
        Err(e) => Err(format!("downloading {url}: {e}")),
        Ok(()) if actual != expected => Err(format!(
            "{url} does not match its checksum (SHA-256 {actual}, expected {expected}): nothing was restored"
        )),
        Ok(()) => Ok(()),
    };
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}

/// The names of `node`'s backups in `location`, oldest first.
async fn backups_of(location: &Location, node: ulid::Ulid) -> Result<Vec<String>, String> {
    let prefix = format!("secmon-{node}-");
    let listed: Vec<object_store::ObjectMeta> = location
        .store
        .list(Some(&location.prefix))
        .try_collect()
        .await
        .map_err(|e| format!("listing {}: {e}", location.url))?;
    let mut backups: Vec<String> = listed
        .iter()
        .filter_map(|o| o.location.filename())
        .filter(|name| name.starts_with(&prefix) && name.ends_with(".redb"))
        .map(str::to_owned)
        .collect();
    backups.sort();
    Ok(backups)
}

/// Deletes all but the `keep` newest backups of `node` in `location` (and
/// their checksums); the number deleted.
pub async fn prune(location: &Location, node: ulid::Ulid, keep: usize) -> Result<usize, String> {
    let backups = backups_of(location, node).await?;
    let old = backups.len().saturating_sub(keep);
    for name in &backups[..old] {
        for object in [name.clone(), format!("{name}.sha256")] {
            location
                .store
                .delete(&location.path(&object))
                .await
                .map_err(|e| format!("deleting {object} from {}: {e}", location.url))?;
        }
    }
    Ok(old)
}

/// Where backups go: an absolute directory or `s3://bucket/prefix`.
pub fn target_location(target: &str, s3: &S3) -> Result<Location, String> {
    if target.starts_with("s3://") {
        Location::open(target.trim_end_matches('/'), s3)
    } else {
        Location::open(&format!("file://{}", target.trim_end_matches('/')), s3)
    }
}

/// Where a backup bound for object storage is written first:
/// `<data dir>/backups/` (mode 0700).
pub fn staging_file(data_dir: &Path) -> Result<PathBuf, String> {
    let staging = data_dir.join("backups");
    create_private_dir(&staging)?;
    Ok(staging.join(format!(
        "staging-{}.redb",
        Utc::now().format("%Y%m%dT%H%M%S%.6fZ")
    )))
}

/// The file a new backup of `node` for `target` is written to: in the
/// target directory, or staged for `s3://`.
pub fn new_file(target: &str, data_dir: &Path, node: ulid::Ulid) -> Result<PathBuf, String> {
    if target.starts_with("s3://") {
        staging_file(data_dir)
    } else {
        Ok(Path::new(target).join(file_name(node, Utc::now())))
    }
}

/// Verifies the backup just written at `file` (as `report` says), then
/// writes its checksum beside it, or uploads both to `remote` and removes
/// the staged file (kept, and named in the error, when the upload fails).
/// A backup that does not verify is deleted.
pub async fn finish(
    file: &Path,
    report: BackupReport,
    remote: Option<&Location>,
) -> Result<Made, String> {
    let verified = {
        let (file, report) = (file.to_owned(), report.clone());
        tokio::task::spawn_blocking(move || verify(&file, &report))
            .await
            .map_err(|e| e.to_string())?
    };
    let sha256 = match verified {
        Ok(sha256) => sha256,
        Err(e) => {
            let _ = std::fs::remove_file(file);
            return Err(e);
        }
    };
    let target = match remote {
        Some(location) => {
            let node = report.node_id.unwrap_or_default();
            let name = file_name(node, Utc::now());
            let uploaded = upload(location, file, &name, &sha256).await.map_err(|e| {
                format!(
                    "{e}; the verified backup stays at {} (SHA-256 {sha256}): copy it off the node or delete it",
                    file.display()
                )
            })?;
            let _ = std::fs::remove_file(file);
            uploaded
        }
        None => {
            write_checksum(file, &sha256)?;
            file.display().to_string()
        }
    };
    Ok(Made {
        target,
        events: report.events,
        last_seq: report.last_seq,
        bytes: report.bytes,
        sha256,
        verified: true,
    })
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("creating {}: {e}", dir.display())),
    }
}

/// When the newest backup of `node` in `location` was made (`None`: there
/// is none yet).
async fn newest(location: &Location, node: ulid::Ulid) -> Result<Option<DateTime<Utc>>, String> {
    let Some(newest) = backups_of(location, node).await?.pop() else {
        return Ok(None);
    };
    let stamp = newest
        .strip_prefix(&format!("secmon-{node}-"))
        .and_then(|s| s.strip_suffix(".redb"))
        .unwrap_or_default();
    Ok(
        chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
            .ok()
            .map(|t| t.and_utc()),
    )
}

/// The daemon's scheduled backups: every `backup.schedule` (counted from
/// the newest backup already in the target, so a restart does not delay
/// or repeat one), then the oldest beyond `backup.keep` are deleted.
pub async fn scheduled(
    auth: Arc<Auth>,
    config: crate::config::Backup,
    s3: S3,
    data_dir: PathBuf,
    shutdown: CancellationToken,
) {
    let (Some(every), Some(target)) = (config.schedule, config.target.clone()) else {
        return;
    };
    let node = auth.store().node_id();
    let location = match target_location(&target, &s3) {
        Ok(location) => location,
        Err(e) => {
            tracing::error!(error = %e, "backup.target: scheduled backups are off");
            return;
        }
    };
    let every = chrono::Duration::from_std(every.0).unwrap_or(chrono::Duration::days(1));
    // The last backup this process made: the schedule holds even when the
    // target cannot be listed (a key allowed to write but not to list).
    let mut made_at: Option<DateTime<Utc>> = None;
    loop {
        let listed = match newest(&location, node).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(error = %crate::notify::redact::redact(&e), "cannot list backup.target; the schedule counts from this process's last backup");
                None
            }
        };
        let next = listed.max(made_at).map_or(Utc::now(), |t| t + every);
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
        let made = async {
            let file = new_file(&target, &data_dir, node)?;
            let (auth, path) = (auth.clone(), file.clone());
            let report = tokio::task::spawn_blocking(move || {
                crate::control::backup_as(&auth, "backup.schedule", &path)
            })
            .await
            .map_err(|e| e.to_string())??;
            let remote = target.starts_with("s3://").then_some(&location);
            finish(&file, report, remote).await
        }
        .await;
        match made {
            Ok(made) => {
                made_at = Some(Utc::now());
                metrics::counter!(metric::BACKUPS, "result" => "ok").increment(1);
                metrics::gauge!(metric::BACKUP_LAST_SUCCESS).set(Utc::now().timestamp() as f64);
                tracing::info!(target = %made.target, events = made.events, bytes = made.bytes, "scheduled backup made and verified");
                match prune(&location, node, config.keep.max(1)).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(deleted = n, keep = config.keep, "older backups deleted")
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot delete older backups"),
                }
            }
            Err(e) => {
                metrics::counter!(metric::BACKUPS, "result" => "failed").increment(1);
                tracing::error!(error = %crate::notify::redact::redact(&e), "scheduled backup failed; retrying in 10 minutes");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(600)) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Event;

    #[test]
    fn a_backup_verifies_and_a_damaged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("live")).unwrap();
        let mut events: Vec<Event> = (0..500)
            .map(|i| Event {
                message: format!("event {i}"),
                ..Event::default()
            })
            .collect();
        store.append(&mut events).unwrap();
        let file = dir.path().join("b.redb");
        let report = store.backup_to(&file).unwrap();
        let sha = verify(&file, &report).unwrap();
        assert_eq!(sha, sha256_file(&file).unwrap());
        assert!(!file.with_extension("verify").exists(), "scratch removed");

        let wrong = BackupReport {
            events: 501,
            ..report.clone()
        };
        assert!(
            verify(&file, &wrong)
                .unwrap_err()
                .contains("does not verify")
        );

        assert!(!check_local(&file).unwrap(), "no checksum yet");
        write_checksum(&file, &sha).unwrap();
        assert!(check_local(&file).unwrap());
        let text = std::fs::read_to_string(dir.path().join("b.redb.sha256")).unwrap();
        assert_eq!(text, format!("{sha}  b.redb\n"));
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&file, bytes).unwrap();
        assert!(check_local(&file).unwrap_err().contains("does not match"));
    }

    #[test]
    fn backup_names_sort_by_time() {
        let node = ulid::Ulid::nil();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let a = file_name(node, at("2026-12-03T23:59:59Z"));
        let b = file_name(node, at("2026-12-04T00:00:00Z"));
        assert_eq!(a, format!("secmon-{node}-20261203T235959Z.redb"));
        assert!(a < b);
        assert_eq!(parse_checksum("ab  x"), None);
        assert!(parse_checksum(&format!("{}  x\n", "a".repeat(64))).is_some());
    }
}
