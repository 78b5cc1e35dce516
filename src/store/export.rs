//! The export cursors: how far each event sink (`crate::export`) took the
//! event log.
//!
//! `export_cursors`: sink name -> (taken, pending). `taken` is the last seq
//! the sink's receiver confirmed. `pending` is the last seq of the batch the
//! sink is sending, when its batches must be sent again exactly as they were
//! (the archive names its files after their first and last seq): after a
//! crash the sink sends `taken + 1 ..= pending` again, not a larger batch.
//! 0: none pending.
//!
//! A backup does not copy this table: a restored node is a new fleet member
//! (a new node id) and exports its events again under that id.

use redb::{ReadableDatabase, TableDefinition};

use super::{Result, Store};
use crate::model::Event;

pub(super) const CURSORS: TableDefinition<&str, (u64, u64)> =
    TableDefinition::new("export_cursors");

/// Where a sink stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The last seq the receiver confirmed.
    pub taken: u64,
    /// The last seq of the batch being sent (0: none).
    pub pending: u64,
}

impl Store {
    /// The sink's cursor; a sink seen for the first time starts before the
    /// oldest stored event (it exports everything the node holds).
    pub fn export_cursor(&self, sink: &str) -> Result<Cursor> {
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(CURSORS)?;
            Ok(table.get(sink)?.map_or(Cursor::default(), |v| {
                let (taken, pending) = v.value();
                Cursor { taken, pending }
            }))
        })
    }

    /// Records the batch the sink is about to send (`pending`), or what its
    /// receiver confirmed (`taken`, which clears a pending batch it covers).
    pub fn set_export_cursor(&self, sink: &str, cursor: Cursor) -> Result<()> {
        self.with_db(|db| {
            let txn = db.begin_write()?;
            {
                let pending = if cursor.pending > cursor.taken {
                    cursor.pending
                } else {
                    0
                };
                txn.open_table(CURSORS)?
                    .insert(sink, (cursor.taken, pending))?;
            }
            txn.commit()?;
            Ok(())
        })
    }

    /// The lowest `taken` among `sinks` (a sink never seen counts as 0):
    /// retention keeps every event above it. `None` without sinks.
    pub fn export_floor(&self, sinks: &[&str]) -> Result<Option<u64>> {
        if sinks.is_empty() {
            return Ok(None);
        }
        self.with_db(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(CURSORS)?;
            let mut floor = u64::MAX;
            for sink in sinks {
                let taken = table.get(*sink)?.map_or(0, |v| v.value().0);
                floor = floor.min(taken);
            }
            Ok(Some(floor))
        })
    }

    /// Events with seq in `from..=to`, at most `limit`, in seq order.
    pub fn events_in(&self, from: u64, to: u64, limit: usize) -> Result<Vec<Event>> {
        let mut events = self.blocks_in(from, to, limit)?;
        events.truncate(limit);
        Ok(events)
    }

    /// The first stored event after `seq` (its receive time is a sink's lag
    /// in seconds); decodes one block.
    pub fn first_event_after(&self, seq: u64) -> Result<Option<Event>> {
        Ok(self.events_in(seq.saturating_add(1), u64::MAX, 1)?.pop())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| Event {
                message: format!("event {i}"),
                ..Event::default()
            })
            .collect()
    }

    #[test]
    fn a_range_of_events_is_cut_out_of_whole_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.append(&mut events(300)).unwrap();
        let seqs = |v: Vec<Event>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(
            seqs(store.events_in(70, 75, 100).unwrap()),
            vec![70, 71, 72, 73, 74, 75]
        );
        assert_eq!(
            seqs(store.events_in(290, u64::MAX, 100).unwrap()),
            (290..=300).collect::<Vec<_>>()
        );
        assert_eq!(store.events_in(10, 300, 7).unwrap().len(), 7);
        assert!(store.events_in(301, u64::MAX, 10).unwrap().is_empty());
        assert_eq!(store.first_event_after(99).unwrap().unwrap().seq, 100);
    }

    #[test]
    fn cursors_keep_a_pending_batch_until_it_is_taken_and_set_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.export_cursor("nats").unwrap(), Cursor::default());
        assert_eq!(store.export_floor(&[]).unwrap(), None);
        let cursor = Cursor {
            taken: 10,
            pending: 50,
        };
        store.set_export_cursor("archive", cursor).unwrap();
        assert_eq!(store.export_cursor("archive").unwrap(), cursor);
        store
            .set_export_cursor(
                "archive",
                Cursor {
                    taken: 50,
                    pending: 50,
                },
            )
            .unwrap();
        assert_eq!(
            store.export_cursor("archive").unwrap(),
            Cursor {
                taken: 50,
                pending: 0
            }
        );
        assert_eq!(store.export_floor(&["archive"]).unwrap(), Some(50));
        assert_eq!(
            store.export_floor(&["archive", "nats"]).unwrap(),
            Some(0),
            "a sink that never took anything holds everything"
        );
    }
}
