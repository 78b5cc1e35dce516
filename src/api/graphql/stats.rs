//! Counts over the index: `eventStats` (events per field value) and
//! `eventHistogram` (events per time interval).

use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::{blocking, coded, grant, internal};
use crate::api::ApiState;
use crate::auth::CanRead;
use crate::store::index::{self, DEFAULT_TOP, Interval, MAX_TIME_BUCKETS, SearchQuery};

#[derive(Default)]
pub struct StatsQuery;

/// Events sharing one value of the grouped field.
#[derive(SimpleObject)]
pub struct Bucket {
    /// The field value (numbers in decimal).
    key: String,
    count: u64,
}

/// Events with `start <= timestamp < start + interval`.
#[derive(SimpleObject)]
pub struct TimeBucket {
    start: DateTime<Utc>,
    count: u64,
}

#[Object]
impl StatsQuery {
    /// The `top` most frequent values of `groupBy` among the events matching
    /// `query` (same syntax as `events`) in `[from, to)`, by count descending
    /// then value. `groupBy` is a keyword field (`source.ip`, `user.name`,
    /// `host.name`, ...) or `source.port`, `destination.port`, `process.pid`,
    /// `event.severity`; `top` defaults to 10, at most 1000.
    #[graphql(complexity = "super::cost(top, DEFAULT_TOP, index::MAX_TOP, child_complexity)")]
    async fn event_stats(
        &self,
        ctx: &Context<'_>,
        query: Option<String>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        group_by: String,
        top: Option<i32>,
    ) -> async_graphql::Result<Vec<Bucket>> {
        let _read: CanRead = grant(ctx)?;
        let state = super::state(ctx)?;
        check_search(&state, query.as_deref())?;
        let top = match top {
            None => DEFAULT_TOP,
            Some(n) => usize::try_from(n).map_err(|_| {
                coded(
                    "BAD_REQUEST",
                    format!("`top` must be between 1 and {}", index::MAX_TOP),
                )
            })?,
        };
        super::take(ctx, top)?;
        let search = search_query(query, from, to);
        let buckets = blocking(move || {
            state
                .index
                .stats(&search, &group_by, top)
                .map_err(index_error)
        })
        .await?;
        Ok(buckets
            .into_iter()
            .map(|b| Bucket {
                key: b.key,
                count: b.count,
            })
            .collect())
    }

    /// Events matching `query` in `[from, to)` counted per `interval`
    /// (`30s`, `1m`, `5m`, `1h`, `1d`: a whole number of s, m, h or d), in
    /// ascending time. Buckets are aligned to the interval in UTC and run
    /// from the first non-empty one to the last, empty ones included with
    /// count 0; at most 10 000 buckets (`BAD_REQUEST` beyond: a larger
    /// interval or a narrower range).
    #[graphql(
        complexity = "histogram_cost(&interval, from, to).saturating_mul(child_complexity.max(1))"
    )]
    async fn event_histogram(
        &self,
        ctx: &Context<'_>,
        query: Option<String>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        interval: String,
    ) -> async_graphql::Result<Vec<TimeBucket>> {
        let _read: CanRead = grant(ctx)?;
        let state = super::state(ctx)?;
        check_search(&state, query.as_deref())?;
        let interval: Interval = interval.parse().map_err(index_error)?;
        if let Some(n) = span_buckets(interval, from, to)
            && n > MAX_TIME_BUCKETS
        {
            return Err(coded(
                "BAD_REQUEST",
                format!(
                    "`from`..`to` holds {n} intervals: at most {MAX_TIME_BUCKETS}, use a larger interval or a narrower range"
                ),
            ));
        }
        let search = search_query(query, from, to);
        let buckets = blocking(move || {
            state
                .index
                .histogram(&search, interval)
                .map_err(index_error)
        })
        .await?;
        super::take(ctx, buckets.len())?;
        Ok(buckets
            .into_iter()
            .map(|b| TimeBucket {
                start: b.start,
                count: b.count,
            })
            .collect())
    }
}

fn search_query(
    text: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> SearchQuery {
    SearchQuery {
        text,
        from,
        to,
        ..SearchQuery::default()
    }
}

/// Refuses a search query over the configured length or nesting
/// (`BAD_QUERY`), before the index parses it.
pub(super) fn check_search(state: &ApiState, text: Option<&str>) -> async_graphql::Result<()> {
    let Some(text) = text else { return Ok(()) };
    let limits = &state.limits;
    index::check_query(
        text,
        limits.max_search_query_bytes.min(index::MAX_QUERY_BYTES),
        limits.max_search_query_depth.min(index::MAX_QUERY_DEPTH),
    )
    .map_err(index_error)
}

/// How many `interval`s `from..to` holds, when both are given.
fn span_buckets(
    interval: Interval,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Option<i64> {
    let (from, to) = (from?, to?);
    let span = (to - from).num_milliseconds().max(0);
    Some(span / interval.millis() + 1)
}

/// A histogram's cost: the buckets it can return (at most
/// `MAX_TIME_BUCKETS`, all of them when the range is open).
fn histogram_cost(interval: &str, from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> usize {
    let most = MAX_TIME_BUCKETS as usize;
    match interval.parse::<Interval>() {
        Ok(i) => span_buckets(i, from, to).map_or(most, |n| (n.max(1) as usize).min(most)),
        Err(_) => 1,
    }
}

pub(super) fn index_error(e: index::Error) -> async_graphql::Error {
    match e {
        index::Error::Query(e) => coded("BAD_QUERY", format!("invalid search query: {e}")),
        index::Error::QueryLimit(message) => {
            coded("BAD_QUERY", format!("invalid search query: {message}"))
        }
        index::Error::BadRequest(message) => coded("BAD_REQUEST", message),
        other => internal(other),
    }
}
