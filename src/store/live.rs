//! The live feed: committed events and alert changes, for subscribers.
//!
//! Broadcast channels with a bounded buffer: the writer never waits for a
//! subscriber; one that falls behind by more than the buffer loses the
//! oldest messages and is told how many (tokio's `Lagged`). Nothing is
//! copied while no one listens.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::model::{Alert, Event};

/// Committed batches a subscriber may fall behind by.
const EVENT_BATCHES: usize = 256;
/// Alert changes a subscriber may fall behind by.
const ALERT_CHANGES: usize = 4096;

pub struct Live {
    events: broadcast::Sender<Arc<[Event]>>,
    alerts: broadcast::Sender<Arc<Alert>>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            events: broadcast::channel(EVENT_BATCHES).0,
            alerts: broadcast::channel(ALERT_CHANGES).0,
        }
    }
}

impl Live {
    /// Publishes a committed batch (seqs and ids assigned).
    pub fn events(&self, events: &[Event]) {
        if self.events.receiver_count() > 0 && !events.is_empty() {
            let _ = self.events.send(events.into());
        }
    }

    /// Publishes a raised, repeated or changed alert.
    pub fn alert(&self, alert: &Alert) {
        if self.alerts.receiver_count() > 0 {
            let _ = self.alerts.send(Arc::new(alert.clone()));
        }
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<Arc<[Event]>> {
        self.events.subscribe()
    }

    pub fn subscribe_alerts(&self) -> broadcast::Receiver<Arc<Alert>> {
        self.alerts.subscribe()
    }
}
