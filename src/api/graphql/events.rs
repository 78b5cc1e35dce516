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
use crate::store::index::{After, SearchQuery};

#[derive(Default)]
pub struct EventsQuery;

#[derive(SimpleObject)]
pub struct EventTotals {
    /// Number of events matching the query (in the index; see `system.indexLag`).
    total_count: usize,
    /// Events received before this were deleted here by retention (null:
    /// none were). With an archive (`ARCHIVE_URL`) retention deletes only
    /// what it holds: older events are there (docs/ARCHIVE.md).
    local_since: Option<DateTime<Utc>>,
    /// The time range starts before `localSince` (or has no start): the
    /// search may miss events retention deleted here.
    beyond_local: bool,
}

pub type EventConnection = Connection<String, EventNode, EventTotals, EmptyFields>;

#[Object]
impl EventsQuery {
    /// Searches events, newest first (events of one `@timestamp` in the order
    /// they were received).
    /// `query` uses the Lucene-like syntax of tantivy over `message`,
    /// `log.original`, `process.command_line` and the keyword fields
    /// (`host.name:web1 AND "failed password"`); terms are ANDed; at most
    /// `api.max_search_query_bytes` long and `api.max_search_query_depth`
    /// deep (`BAD_QUERY`). `from` is inclusive, `to` exclusive. `after` is
    /// an `endCursor`: the page starts just after that event.
    #[graphql(
        complexity = "super::cost(first, super::DEFAULT_PAGE, super::MAX_PAGE, child_complexity)"
    )]
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
        let after = after.as_deref().map(decode_cursor).transpose()?;
        super::stats::check_search(&state, query.as_deref())?;
        let limit = super::page(ctx, first)?;
        let search = SearchQuery {
            text: query,
            from,
            to,
            after,
            limit,
        };
        let page = blocking(move || {
            let indexed = state.progress.indexed.load(Ordering::Acquire);
            let purged = state.progress.purged.load(Ordering::Acquire);
            state
                .search_cache
                .get_or_search(&search, indexed, purged, || {
                    let page = state
                        .index
                        .search(&search)
                        .map_err(super::stats::index_error)?;
                    let events = state.store.get_many(&page.seqs).map_err(internal)?;
                    Ok(Page {
                        total: page.total,
                        events,
                        more: page.more,
                    })
                })
                .and_then(|page| Ok((page, local_since(&state.store)?)))
        })
        .await?;
        let (page, local_since) = page;
        let beyond_local = local_since.is_some_and(|since| from.is_none_or(|from| from < since));
        let mut connection = Connection::with_additional_fields(
            after.is_some(),
            page.more,
            EventTotals {
                total_count: page.total,
                local_since,
                beyond_local,
            },
        );
        connection.edges.extend(
            page.events
                .iter()
                .map(|e| Edge::new(encode_cursor(After::of(e)), EventNode(e.clone()))),
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

/// When the oldest event held here was received, if retention deleted
/// older ones (the first stored seq is not 1; now when it deleted them
/// all); decodes one block.
fn local_since(store: &crate::store::Store) -> async_graphql::Result<Option<DateTime<Utc>>> {
    match store.first_event_after(0).map_err(internal)? {
        Some(first) => Ok((first.seq > 1).then_some(first.received_at)),
        None if store.stats().map_err(internal)?.last_seq > 0 => Ok(Some(Utc::now())),
        None => Ok(None),
    }
}

/// Longest cursor this API hands out (`t<i64>:<u64>`, base64): anything
/// longer is refused before it is decoded.
const MAX_CURSOR: usize = 64;

/// An event's cursor: where it is in the search order (`@timestamp` in µs
/// and seq), so the next page is a search after it, never an offset.
pub fn encode_cursor(at: After) -> String {
    URL_SAFE_NO_PAD.encode(format!("t{}:{}", at.timestamp_micros, at.seq))
}

pub fn decode_cursor(cursor: &str) -> async_graphql::Result<After> {
    let bad = || {
        coded(
            "BAD_REQUEST",
            "`after` is not a cursor from this API: use an `endCursor`",
        )
    };
    if cursor.len() > MAX_CURSOR {
        return Err(bad());
    }
    let text = URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    let (micros, seq) = text
        .strip_prefix('t')
        .and_then(|rest| rest.split_once(':'))
        .ok_or_else(bad)?;
    let timestamp_micros: i64 = micros.parse().map_err(|_| bad())?;
    // Beyond what an event can have (chrono's range), it came from no page.
    chrono::DateTime::<Utc>::from_timestamp_micros(timestamp_micros).ok_or_else(bad)?;
    Ok(After {
        timestamp_micros,
        seq: seq.parse().map_err(|_| bad())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_nothing_else_decodes() {
        for at in [
            After {
                timestamp_micros: 1_700_000_000_123_456,
                seq: 42,
            },
            After {
                timestamp_micros: -8_000_000_000_000_000,
                seq: u64::MAX,
            },
        ] {
            let c = encode_cursor(at);
            assert!(c.len() <= MAX_CURSOR, "{c}");
            assert_eq!(decode_cursor(&c).unwrap(), at);
        }
        let code = |c: &str| {
            let e = decode_cursor(c).unwrap_err();
            e.extensions.and_then(|x| x.get("code").cloned())
        };
        let bad = [
            // The offset cursor of issue 17 (`o10000000000000`).
            "bzEwMDAwMDAwMDAwMDAwMA",
            "",
            "!!!",
            &URL_SAFE_NO_PAD.encode("t1:"),
            &URL_SAFE_NO_PAD.encode("t:1"),
            &URL_SAFE_NO_PAD.encode("t99999999999999999999:1"),
            &URL_SAFE_NO_PAD.encode("t1:-1"),
            &URL_SAFE_NO_PAD.encode(format!("t{}:1", i64::MIN)),
            &URL_SAFE_NO_PAD.encode([0xff, 0xfe]),
            &"A".repeat(100_000),
        ];
        for c in bad {
            assert_eq!(
                code(c),
                Some(async_graphql::Value::from("BAD_REQUEST")),
                "{c:.40}"
            );
        }
    }
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
    /// Whether it came from a trusted source (set by the source's
    /// configuration, never by the event's content; docs/SECURITY.md).
    async fn trusted(&self) -> bool {
        self.0.trusted
    }
    async fn labels(&self) -> Json<&crate::model::Labels> {
        Json(&self.0.labels)
    }
    /// Everything else, as JSON.
    async fn fields(&self) -> Json<&serde_json::Map<String, serde_json::Value>> {
        Json(&self.0.fields)
    }
}
