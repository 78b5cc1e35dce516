//! Event search: `events` (Relay connection, newest first) and `event(id)`.

use std::sync::atomic::Ordering;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, ID, Json, Object, SimpleObject};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use super::{blocking, coded, grant, internal};
use crate::auth::CanRead;
use crate::model::Event;
use crate::store::cache::Page;
use crate::store::index::SearchQuery;

#[derive(Default)]
pub struct EventsQuery;

#[derive(SimpleObject)]
pub struct EventTotals {
    /// Number of events matching the query (in the index; see `system.indexLag`).
    total_count: usize,
}

pub type EventConnection = Connection<String, EventNode, EventTotals, EmptyFields>;

#[Object]
impl EventsQuery {
    /// Searches events, newest first. `query` uses the Lucene-like syntax of
    /// tantivy over `message`, `log.original`, `process.command_line` and the
    /// keyword fields (`host.name:web1 AND "failed password"`); terms are
    /// ANDed. `from` is inclusive, `to` exclusive.
    async fn events(
        &self,
        ctx: &Context<'_>,
        query: Option<String>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        #[graphql(validator(minimum = 0))] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<EventConnection> {
        let _read: CanRead = grant(ctx)?;
        let state = super::state(ctx)?;
        let limit = super::page_size(first)?;
        let offset = match after {
            Some(cursor) => decode_cursor(&cursor)? + 1,
            None => 0,
        };
        let search = SearchQuery {
            text: query,
            from,
            to,
            offset,
            limit,
        };
        let page = blocking(move || {
            let indexed = state.progress.indexed.load(Ordering::Acquire);
            let purged = state.progress.purged.load(Ordering::Acquire);
            state
                .search_cache
                .get_or_search(&search, indexed, purged, || {
                    let page = state.index.search(&search).map_err(|e| match e {
                        crate::store::index::Error::Query(e) => {
                            coded("BAD_QUERY", format!("invalid search query: {e}"))
                        }
                        other => internal(other),
                    })?;
                    let events = state.store.get_many(&page.seqs).map_err(internal)?;
                    Ok(Page {
                        total: page.total,
                        events,
                    })
                })
        })
        .await?;
        let (total, events) = (page.total, page.events.clone());
        let has_next = offset + events.len() < total;
        let mut connection = Connection::with_additional_fields(
            offset > 0,
            has_next,
            EventTotals { total_count: total },
        );
        connection.edges.extend(
            events
                .into_iter()
                .enumerate()
                .map(|(i, e)| Edge::new(encode_cursor(offset + i), EventNode(e))),
        );
        Ok(connection)
    }

    /// One event by id.
    async fn event(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<EventNode>> {
        let _read: CanRead = grant(ctx)?;
        let state = super::state(ctx)?;
        let Ok(ulid) = id.parse::<ulid::Ulid>() else {
            return Err(coded("BAD_REQUEST", "`id` is not an event id"));
        };
        let seq = crate::store::seq_of_id(ulid);
        let event = blocking(move || state.store.get(seq).map_err(internal)).await?;
        Ok(event.filter(|e| e.id == ulid).map(EventNode))
    }
}

fn encode_cursor(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("o{offset}"))
}

fn decode_cursor(cursor: &str) -> async_graphql::Result<usize> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix('o').and_then(|n| n.parse().ok()))
        .ok_or_else(|| coded("BAD_REQUEST", "`after` is not a cursor from this API"))
}

/// A stored event.
pub struct EventNode(pub Event);

#[Object(name = "Event")]
impl EventNode {
    /// Node-unique, time-ordered id (ULID).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The store's sequence number.
    async fn seq(&self) -> u64 {
        self.0.seq
    }
    /// Event time (`@timestamp`).
    async fn timestamp(&self) -> DateTime<Utc> {
        self.0.timestamp
    }
    async fn received_at(&self) -> DateTime<Utc> {
        self.0.received_at
    }
    async fn message(&self) -> &str {
        &self.0.message
    }
    async fn host_name(&self) -> Option<&str> {
        self.0.host_name.as_deref()
    }
    async fn host_ip(&self) -> Option<String> {
        self.0.host_ip.map(|ip| ip.to_string())
    }
    async fn source_ip(&self) -> Option<String> {
        self.0.source_ip.map(|ip| ip.to_string())
    }
    async fn source_port(&self) -> Option<u16> {
        self.0.source_port
    }
    async fn destination_ip(&self) -> Option<String> {
        self.0.destination_ip.map(|ip| ip.to_string())
    }
    async fn destination_port(&self) -> Option<u16> {
        self.0.destination_port
    }
    async fn user_name(&self) -> Option<&str> {
        self.0.user_name.as_deref()
    }
    async fn user_target_name(&self) -> Option<&str> {
        self.0.user_target_name.as_deref()
    }
    async fn process_name(&self) -> Option<&str> {
        self.0.process_name.as_deref()
    }
    async fn process_pid(&self) -> Option<u32> {
        self.0.process_pid
    }
    async fn process_command_line(&self) -> Option<&str> {
        self.0.process_command_line.as_deref()
    }
    async fn process_executable(&self) -> Option<&str> {
        self.0.process_executable.as_deref()
    }
    async fn dataset(&self) -> Option<&str> {
        self.0.dataset.as_deref()
    }
    async fn category(&self) -> Option<&str> {
        self.0.category.as_deref()
    }
    async fn action(&self) -> Option<&str> {
        self.0.action.as_deref()
    }
    async fn outcome(&self) -> Option<&str> {
        self.0.outcome.as_deref()
    }
    async fn severity(&self) -> Option<u8> {
        self.0.severity
    }
    /// The raw line as received (`log.original`).
    async fn original(&self) -> Option<&str> {
        self.0.original.as_deref()
    }
    async fn labels(&self) -> Json<&std::collections::BTreeMap<String, String>> {
        Json(&self.0.labels)
    }
    /// Everything else, as JSON.
    async fn fields(&self) -> Json<&serde_json::Map<String, serde_json::Value>> {
        Json(&self.0.fields)
    }
}
