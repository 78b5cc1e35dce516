//! The store: redb is the truth ([`Store`]), written by one group-commit
//! [`writer`]; tantivy is a derived, rebuildable [`index`] fed by the
//! [`indexer`] from redb.

pub mod accounts;
pub mod alerts;
pub mod audit;
pub mod backup;
pub mod cache;
pub mod channels;
pub mod codec;
mod counts;
pub mod decisions;
pub mod deliveries;
pub mod export;
pub mod index;
pub mod indexer;
pub mod live;
pub mod outbox;
mod phrases;
pub mod retention;
pub mod rules;
mod words;
pub mod writer;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use ulid::Ulid;

use crate::model::Event;

/// Last seq of a block -> the block of events (see [`codec`]).
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Schema version, node id, event count, index checkpoint.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Where each source stopped (a file's offset, journald's cursor), written in
/// the same transaction as the events read up to there.
const CHECKPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("source_checkpoints");

/// The schema version this binary writes; files up to it are migrated forward.
pub const SCHEMA_VERSION: u64 = 3;

const META_SCHEMA_VERSION: &str = "schema_version";
const META_NODE_ID: &str = "node_id";
const META_INDEX_CHECKPOINT: &str = "index_checkpoint";
const META_EVENT_COUNT: &str = "event_count";
/// The last seq when retention last deleted every event: seqs go on from
/// it, never again from 1 (they are event ids, export cursors and
/// JetStream message ids).
const META_LAST_SEQ: &str = "last_seq_when_empty";

/// File name of the redb database inside the data dir.
pub const DB_FILE: &str = "secmon.redb";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "data dir {0} is in use by another secmon process: stop it first, or use another --data-dir"
    )]
    Locked(PathBuf),
    #[error(
        "{path} has schema version {found}, newer than this binary supports ({supported}): upgrade secmon"
    )]
    TooNew {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error("cannot open {path}: {source} (restore it from a backup, see docs/OPERATIONS.md)")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error("cannot create data dir {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("storage error: {0}")]
    Redb(#[from] redb::Error),
    #[error("the database is closed after an I/O error and is being reopened: retry later")]
    Reopening,
    #[error("stored event {seq} cannot be decoded: {reason}")]
    Corrupt { seq: u64, reason: String },
    #[error(transparent)]
    Index(#[from] index::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

macro_rules! redb_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Redb(e.into())
            }
        }
    )*};
}
redb_from!(
    redb::SetDurabilityError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl Error {
    /// An I/O failure (disk full, EIO): redb refuses every later operation
    /// until the database is closed and opened again.
    fn is_io(&self) -> bool {
        matches!(
            self,
            Error::Redb(redb::Error::Io(_) | redb::Error::PreviousIo) | Error::Reopening
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// At most one reopen attempt per this interval while I/O keeps failing.
const REOPEN_INTERVAL: Duration = Duration::from_secs(1);

/// The redb database: events, their time index and metadata.
///
/// All methods block; call them from a blocking thread.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    node_id: Ulid,
}

/// The open database, shared by every clone of a [`Store`].
///
/// After an I/O error (a full disk) redb answers every operation with
/// `PreviousIo` until the `Database` is dropped and opened again, so the
/// first operation that sees one reopens it (see [`Store::with_db`]). Each
/// operation holds the read lock for its whole transaction; a reopen takes
/// the write lock, so no transaction of the old database outlives it.
struct Shared {
    path: PathBuf,
    db: RwLock<Option<Database>>,
    last_reopen: Mutex<Option<Instant>>,
    /// Set once replication is configured.
    outbox: outbox::Slot,
}

impl Store {
    /// Opens (or creates) `data_dir/secmon.redb` and runs migrations.
    pub fn open(data_dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(data_dir).map_err(|source| Error::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let db = builder().create(&path).map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::Locked(data_dir.to_owned()),
            source => Error::Open {
                path: path.clone(),
                source,
            },
        })?;
        let node_id = migrate(&db, &path)?;
        Ok(Store {
            shared: Arc::new(Shared {
                path,
                db: RwLock::new(Some(db)),
                last_reopen: Mutex::new(None),
                outbox: outbox::Slot::new(),
            }),
            node_id,
        })
    }

    pub fn node_id(&self) -> Ulid {
        self.node_id
    }

    /// Runs `f` on the open database; after an I/O error, reopens it (at
    /// most once per [`REOPEN_INTERVAL`]) so the store recovers once the
    /// cause is gone, without a restart.
    fn with_db<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        let result = {
            let db = self
                .shared
                .db
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            match db.as_ref() {
                Some(db) => f(db),
                None => Err(Error::Reopening),
            }
        };
        if let Err(e) = &result
            && e.is_io()
        {
            self.reopen();
        }
        result
    }

    fn reopen(&self) {
        {
            let mut last = self
                .shared
                .last_reopen
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| t.elapsed() < REOPEN_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        let mut db = self
            .shared
            .db
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Closes the file and releases its lock; the next open recovers
        // the file to its last commit.
        drop(db.take());
        let path = &self.shared.path;
        match builder().create(path) {
            Ok(reopened) => {
                *db = Some(reopened);
                tracing::warn!(path = %path.display(), "reopened the database after an I/O error");
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot reopen the database after an I/O error; retrying");
            }
        }
    }

    /// Appends events in ONE write transaction and returns their seq range.
    ///
    /// Assigns each event its `seq` and `id`. When this returns, the events
    /// are durable.
    pub fn append(&self, events: &mut [Event]) -> Result<Range<u64>> {
        self.append_with(events, &[])
    }

    /// [`Store::append`], also writing source checkpoints in the same
    /// transaction: a checkpoint advances exactly when its events commit.
    pub fn append_with(
        &self,
        events: &mut [Event],
        checkpoints: &[Checkpoint],
    ) -> Result<Range<u64>> {
        self.commit_batch(events, checkpoints, &[], chrono::Duration::zero())
            .map(|(range, _)| range)
    }

    /// Appends events, writes source checkpoints and applies the alert
    /// updates the events raised, all in ONE transaction.
    pub fn commit_batch(
        &self,
        events: &mut [Event],
        checkpoints: &[Checkpoint],
        updates: &[crate::model::AlertUpdate],
        dedup_window: chrono::Duration,
    ) -> Result<(Range<u64>, Vec<crate::model::Alert>)> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let range;
            {
                if !checkpoints.is_empty() {
                    let mut table = txn.open_table(CHECKPOINTS)?;
                    for c in checkpoints {
                        table.insert(c.key.as_str(), c.value.as_slice())?;
                    }
                }
                let mut table = txn.open_table(EVENTS)?;
                let mut meta = txn.open_table(META)?;
                let first = match table.last()? {
                    Some((seq, _)) => seq.value() + 1,
                    None => meta.get(META_LAST_SEQ)?.map_or(0, |v| read_u64(v.value())) + 1,
                };
                for (seq, event) in (first..).zip(events.iter_mut()) {
                    event.seq = seq;
                    event.id = event_id(event, seq);
                }
                let mut block = Vec::new();
                let mut rest = &events[..];
                while !rest.is_empty() {
                    let (n, header) = codec::with_encoder(|e| e.encode(rest, &mut block))?;
                    table.insert(header.last_seq(), block.as_slice())?;
                    rest = &rest[n..];
                }
                range = first..first + events.len() as u64;
                let count = meta
                    .get(META_EVENT_COUNT)?
                    .map_or(0, |v| read_u64(v.value()));
                let count = count + events.len() as u64;
                meta.insert(META_EVENT_COUNT, count.to_be_bytes().as_slice())?;
            }
            let (alerts, head) = {
                let mut outbox = outbox::Writer::open(&txn, self)?;
                let alerts = alerts::apply(&txn, events, updates, dedup_window, outbox.as_mut())?;
                let head = match outbox {
                    Some(mut outbox) => {
                        outbox.count_events(&txn, events)?;
                        Some(outbox.finish(&txn)?)
                    }
                    None => None,
                };
                (alerts, head)
            };
            txn.commit()?;
            if let Some(head) = head {
                self.outbox_written(head);
            }
            Ok((range, alerts))
        })
    }

    /// The checkpoint a source last committed under `key`.
    pub fn checkpoint(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(CHECKPOINTS)?;
            Ok(table.get(key)?.map(|v| v.value().to_vec()))
        })
    }

    pub fn get(&self, seq: u64) -> Result<Option<Event>> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(EVENTS)?;
            let mut blocks = table.range(seq..)?;
            match blocks.next() {
                Some(item) => {
                    let (key, block) = item?;
                    codec::decode_one(key.value(), block.value(), seq)
                }
                None => Ok(None),
            }
        })
    }

    /// Loads the events with the given seqs, in that order, skipping missing
    /// ones. Each block is decoded once.
    pub fn get_many(&self, seqs: &[u64]) -> Result<Vec<Event>> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(EVENTS)?;
            let mut decoded: std::collections::BTreeMap<u64, Vec<Event>> =
                std::collections::BTreeMap::new();
            let mut out = Vec::with_capacity(seqs.len());
            for &seq in seqs {
                let cached = decoded.range(seq..).next().map(|(k, _)| *k);
                let key = match cached {
                    Some(k) if decoded[&k].first().is_some_and(|e| e.seq <= seq) => k,
                    _ => {
                        let Some(item) = table.range(seq..)?.next() else {
                            continue;
                        };
                        let (key, block) = item?;
                        let key = key.value();
                        decoded.insert(key, codec::decode_block(key, block.value())?);
                        key
                    }
                };
                if let Some(e) = decoded[&key].iter().find(|e| e.seq == seq) {
                    out.push(e.clone());
                }
            }
            Ok(out)
        })
    }

    /// Events with seq in `from..`, at least `limit` when there are that
    /// many (whole blocks are returned), in seq order.
    pub fn scan_from(&self, from: u64, limit: usize) -> Result<Vec<Event>> {
        self.blocks_in(from, u64::MAX, limit)
    }

    /// Events with seq in `from..=to` from whole blocks, until at least
    /// `limit` (or the blocks up to `to`) are read.
    fn blocks_in(&self, from: u64, to: u64, limit: usize) -> Result<Vec<Event>> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(EVENTS)?;
            let mut out = Vec::with_capacity(limit.min(8192));
            // Blocks are keyed by their last seq: the first one at or after
            // `from` holds it.
            for item in table.range(from..)? {
                let (key, block) = item?;
                let key = key.value();
                out.extend(
                    codec::decode_block(key, block.value())?
                        .into_iter()
                        .filter(|e| e.seq >= from && e.seq <= to),
                );
                if out.len() >= limit || key >= to {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Events with `from <= @timestamp < to` and a seq above `after`, in seq
    /// order: at least `limit` when there are that many (whole blocks), and
    /// where to go on from. A block whose time range misses `from..to` is
    /// skipped by its header, without decompressing it; one call looks at
    /// [`SCAN_BLOCKS`] blocks at most, so its read transaction stays short.
    pub fn events_between(
        &self,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
        after: u64,
        limit: usize,
    ) -> Result<Scan> {
        let (from_us, to_us) = (from.timestamp_micros(), to.timestamp_micros());
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(EVENTS)?;
            let mut events = Vec::new();
            for (visited, item) in (1..).zip(table.range(after.saturating_add(1)..)?) {
                let (key, block) = item?;
                let key = key.value();
                let header = codec::decode_header(key, block.value())?;
                if header.max_ts >= from_us && header.min_ts < to_us {
                    events.extend(
                        codec::decode_block(key, block.value())?
                            .into_iter()
                            .filter(|e| e.seq > after && e.timestamp >= from && e.timestamp < to),
                    );
                }
                if events.len() >= limit || visited >= SCAN_BLOCKS {
                    return Ok(Scan {
                        events,
                        next: Some(key),
                    });
                }
            }
            Ok(Scan { events, next: None })
        })
    }

    /// Number of stored events and the highest seq (0 when empty).
    pub fn stats(&self) -> Result<StoreStats> {
        self.with_db(|db| self.stats_in(&db.begin_read()?))
    }

    fn stats_in(&self, txn: &redb::ReadTransaction) -> Result<StoreStats> {
        let table = txn.open_table(EVENTS)?;
        let meta = txn.open_table(META)?;
        let last_seq = match table.last()? {
            Some((k, _)) => k.value(),
            None => meta.get(META_LAST_SEQ)?.map_or(0, |v| read_u64(v.value())),
        };
        let events = meta
            .get(META_EVENT_COUNT)?
            .map_or(0, |v| read_u64(v.value()));
        Ok(StoreStats { events, last_seq })
    }

    /// Deletes whole blocks from the oldest on, in ONE write transaction of
    /// at most `max_blocks` blocks, while `purge(header)` says so.
    pub fn purge_oldest(
        &self,
        max_blocks: usize,
        mut purge: impl FnMut(&codec::BlockHeader) -> bool,
    ) -> Result<Purged> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let mut purged = Purged::default();
            {
                let mut table = txn.open_table(EVENTS)?;
                let mut meta = txn.open_table(META)?;
                while purged.blocks < max_blocks {
                    let (key, header) = {
                        let Some((key, block)) = table.first()? else {
                            break;
                        };
                        let key = key.value();
                        (key, codec::decode_header(key, block.value())?)
                    };
                    if !purge(&header) {
                        break;
                    }
                    table.remove(key)?;
                    purged.blocks += 1;
                    purged.events += u64::from(header.count);
                    purged.up_to_seq = key;
                }
                if purged.events > 0 && table.first()?.is_none() {
                    meta.insert(META_LAST_SEQ, purged.up_to_seq.to_be_bytes().as_slice())?;
                }
                if purged.events > 0 {
                    let count = meta
                        .get(META_EVENT_COUNT)?
                        .map_or(0, |v| read_u64(v.value()));
                    let count = count.saturating_sub(purged.events);
                    meta.insert(META_EVENT_COUNT, count.to_be_bytes().as_slice())?;
                }
            }
            txn.commit()?;
            Ok(purged)
        })
    }

    /// Bytes the store's data takes in its file (freed pages are reused, so
    /// the file itself does not shrink).
    pub fn used_bytes(&self) -> Result<u64> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            let stats = txn.stats()?;
            let bytes = stats.allocated_pages() * stats.page_size() as u64;
            txn.abort()?;
            Ok(bytes)
        })
    }

    /// The last seq the full-text index has durably committed.
    pub fn index_checkpoint(&self) -> Result<u64> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            Ok(meta
                .get(META_INDEX_CHECKPOINT)?
                .map_or(0, |v| read_u64(v.value())))
        })
    }

    pub fn set_index_checkpoint(&self, seq: u64) -> Result<()> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            txn.open_table(META)?
                .insert(META_INDEX_CHECKPOINT, seq.to_be_bytes().as_slice())?;
            txn.commit()?;
            Ok(())
        })
    }
}

/// A source's position, committed with the events read up to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// `file:/var/log/auth.log`, `journald`, ...
    pub key: String,
    pub value: Vec<u8>,
}

/// Most blocks one [`Store::events_between`] call looks at.
pub const SCAN_BLOCKS: usize = 16_384;

/// One step of [`Store::events_between`].
#[derive(Debug, Default)]
pub struct Scan {
    pub events: Vec<Event>,
    /// The `after` of the next step; `None` once every block was looked at.
    pub next: Option<u64>,
}

/// What one purge step deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub blocks: usize,
    pub events: u64,
    /// Every event up to this seq is gone (0 when nothing was deleted).
    pub up_to_seq: u64,
}

impl Store {
    /// Bytes of the database file on disk.
    pub fn file_size(&self) -> std::io::Result<u64> {
        Ok(std::fs::metadata(&self.shared.path)?.len())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    pub events: u64,
    pub last_seq: u64,
}

/// redb's page cache; its default (1 GiB) would make it most of the RSS.
/// Half of it at most holds a commit's dirty pages before they go to the
/// file. 64 MiB peaked 25 MB higher at 10M events over HTTP, at the same
/// rate (docs/PERFORMANCE.md, "Memory at ten million, looked at again").
const CACHE_BYTES: usize = 32 * 1024 * 1024;

fn builder() -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(CACHE_BYTES);
    builder
}

/// The event id: a ULID whose time part is the receive time and whose
/// random part is the seq, so ids are time-ordered, unique on this node, and
/// lead back to the stored event without a lookup table.
pub(crate) fn event_id(event: &Event, seq: u64) -> Ulid {
    let ms = u64::try_from(event.received_at.timestamp_millis()).unwrap_or(0);
    Ulid::from_parts(ms, u128::from(seq))
}

/// The seq an event id points at.
pub fn seq_of_id(id: Ulid) -> u64 {
    // The random part holds the seq in its low 64 bits; see `event_id`.
    (id.random() & u128::from(u64::MAX)) as u64
}

fn read_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map_or(0, u64::from_be_bytes)
}

/// Creates or migrates the schema; returns the node id.
fn migrate(db: &Database, path: &Path) -> Result<Ulid> {
    let txn = db.begin_write()?;
    let node_id;
    {
        let mut meta = txn.open_table(META)?;
        let version = meta.get(META_SCHEMA_VERSION)?.map(|v| read_u64(v.value()));
        if let Some(found) = version
            && found > SCHEMA_VERSION
        {
            return Err(Error::TooNew {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        // Forward migrations: one `if version < N` step each, below.
        meta.insert(META_SCHEMA_VERSION, SCHEMA_VERSION.to_be_bytes().as_slice())?;
        let existing = meta
            .get(META_NODE_ID)?
            .and_then(|v| <[u8; 16]>::try_from(v.value()).ok())
            .map(Ulid::from_bytes);
        node_id = match existing {
            Some(id) => id,
            None => {
                let id = Ulid::generate();
                meta.insert(META_NODE_ID, id.to_bytes().as_slice())?;
                id
            }
        };
        txn.open_table(EVENTS)?;
        txn.open_table(CHECKPOINTS)?;
        txn.open_table(alerts::ALERTS)?;
        txn.open_table(alerts::ALERT_GROUPS)?;
        txn.open_table(alerts::ALERT_HEADS)?;
        txn.open_table(rules::RULES)?;
        txn.open_table(accounts::USERS)?;
        txn.open_table(accounts::API_KEYS)?;
        txn.open_table(accounts::REFRESH_TOKENS)?;
        txn.open_table(accounts::CONSOLE_SESSIONS)?;
        txn.open_table(audit::AUDIT)?;
        txn.open_table(outbox::OUTBOX)?;
        txn.open_table(outbox::CURSORS)?;
        txn.open_table(outbox::ROLLUPS)?;
        txn.open_table(export::CURSORS)?;
        txn.open_table(deliveries::DELIVERIES)?;
        txn.open_table(deliveries::PENDING)?;
        txn.open_table(decisions::DECISIONS)?;
        txn.open_table(channels::CHANNELS)?;
        txn.open_table(decisions::OFFENCES)?;
        if version.is_some_and(|v| v < 2) {
            alerts::fill_heads(&txn)?;
        }
        // Version 3 writes columnar event blocks (`codec`) and compressed
        // alerts; the JSON-line blocks and JSON alerts of versions 1 and 2
        // stay readable as they are, so there is nothing to rewrite. The
        // version is raised so that an older binary, which cannot read
        // either, refuses the file.
    }
    txn.commit()?;
    Ok(node_id)
}

/// A repeatable stream of pseudo-random numbers (xorshift64) for tests
/// that draw many inputs: the same inputs every run.
#[cfg(test)]
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(msg: &str) -> Event {
        Event {
            message: msg.to_owned(),
            received_at: chrono::Utc::now(),
            timestamp: chrono::Utc::now(),
            ..Event::default()
        }
    }

    #[test]
    fn append_assigns_seq_and_id_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let node;
        {
            let store = Store::open(dir.path()).unwrap();
            node = store.node_id();
            let mut batch = vec![event("a"), event("b")];
            assert_eq!(store.append(&mut batch).unwrap(), 1..3);
            let mut batch = vec![event("c")];
            assert_eq!(store.append(&mut batch).unwrap(), 3..4);
            assert_eq!(seq_of_id(batch[0].id), 3);
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.node_id(), node);
        assert_eq!(
            store.stats().unwrap(),
            StoreStats {
                events: 3,
                last_seq: 3
            }
        );
        let got = store.get(2).unwrap().unwrap();
        assert_eq!(got.message, "b");
        assert_eq!(seq_of_id(got.id), 2);
        let msgs: Vec<_> = store
            .scan_from(2, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(msgs, ["b", "c"]);
    }

    #[test]
    fn events_between_reads_a_time_range_in_steps() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t0 = chrono::Utc::now() - chrono::Duration::hours(1);
        let second = chrono::Duration::seconds;
        // Messages that do not compress, so that they fill many blocks.
        let noise = || {
            (0..8)
                .map(|_| Ulid::generate().to_string())
                .collect::<String>()
        };
        let mut events: Vec<Event> = (0..300)
            .map(|i| Event {
                timestamp: t0 + second(i),
                ..event(&format!("e{i} {}", noise()))
            })
            .collect();
        store.append(&mut events).unwrap();
        let (from, to) = (t0 + second(100), t0 + second(250));
        let (mut seqs, mut after, mut steps) = (Vec::new(), 0, 0);
        loop {
            let scan = store.events_between(from, to, after, 10).unwrap();
            seqs.extend(scan.events.iter().map(|e| e.seq));
            steps += 1;
            match scan.next {
                Some(next) => after = next,
                None => break,
            }
        }
        assert_eq!(seqs, (101..=250).collect::<Vec<u64>>());
        assert!(steps > 2, "{steps} steps");
        let later = store
            .events_between(t0 + second(300), t0 + second(400), 0, 10)
            .unwrap();
        assert!(later.events.is_empty() && later.next.is_none());
    }

    #[test]
    fn second_open_of_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _store = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).err().unwrap();
        assert!(matches!(err, Error::Locked(_)), "{err}");
    }

    #[test]
    fn newer_schema_is_refused_with_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::create(dir.path().join(DB_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(META_SCHEMA_VERSION, 99u64.to_be_bytes().as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let err = Store::open(dir.path()).err().unwrap().to_string();
        assert!(
            err.contains("schema version 99, newer than this binary supports (3)"),
            "{err}"
        );
    }

    #[test]
    fn garbage_file_gives_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), vec![0xAB; 8192]).unwrap();
        let err = Store::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("secmon.redb"), "{err}");
        assert!(err.contains("restore it from a backup"), "{err}");
    }

    #[test]
    fn index_checkpoint_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.index_checkpoint().unwrap(), 0);
        store.set_index_checkpoint(42).unwrap();
        assert_eq!(store.index_checkpoint().unwrap(), 42);
    }
}
