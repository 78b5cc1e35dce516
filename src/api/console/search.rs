//! Search: the query bar (tantivy syntax), a time range (presets or from
//! and to), the histogram of the hits (click or drag a span to zoom in),
//! the top values of the main fields (click to include or exclude), the
//! hits newest first with every field, paging by cursor, a live tail
//! (new arrivals on top, with pause), and the results as CSV or NDJSON.
//! The whole state is in the URL.

use std::sync::Arc;

use askama::Template;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;

use super::session::Analyst;
use super::{Console, Frame, problem, render};
use crate::api::ApiState;
use crate::auth::CanRead;
use crate::model::Event;
use crate::store::index::{self, After, Interval, SearchQuery};

/// Hits on one page.
const PAGE: usize = 50;
/// Most events one export holds.
pub const MAX_EXPORT: usize = 10_000;
/// Bars of the histogram, about.
const BARS: i64 = 60;
/// The fields of the top-values sidebar.
const SIDEBAR: [&str; 5] = [
    "source.ip",
    "user.name",
    "host.name",
    "process.name",
    "event.dataset",
];
/// Values per sidebar field.
const TOP: usize = 5;
/// Past this many hits, the sidebar's top values are those of the newest
/// hits only (at least this many): its cost stays bounded however many match.
const SAMPLE: u64 = 100_000;
/// Most events one poll of the live tail brings.
const TAIL: usize = 200;
/// Histogram intervals, smallest first.
const INTERVALS: [(&str, i64); 10] = [
    ("1s", 1),
    ("10s", 10),
    ("1m", 60),
    ("5m", 300),
    ("15m", 900),
    ("1h", 3600),
    ("3h", 3 * 3600),
    ("12h", 12 * 3600),
    ("1d", 86_400),
    ("7d", 7 * 86_400),
];
/// Time presets: (value, label, span in seconds).
const RANGES: [(&str, &str, i64); 6] = [
    ("15m", "Last 15 minutes", 900),
    ("1h", "Last hour", 3600),
    ("24h", "Last 24 hours", 86_400),
    ("7d", "Last 7 days", 7 * 86_400),
    ("30d", "Last 30 days", 30 * 86_400),
    ("365d", "Last year", 365 * 86_400),
];

/// The page's query string.
#[derive(Debug, Default, Deserialize, Clone)]
pub struct Params {
    #[serde(default)]
    q: Option<String>,
    /// A preset, or `custom` with `from` and `to`.
    #[serde(default)]
    range: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    /// `<@timestamp µs>-<seq>` of the last hit of the previous page.
    #[serde(default)]
    after: Option<String>,
    /// `csv` or `ndjson` (export).
    #[serde(default)]
    format: Option<String>,
    /// `1`: the live tail is on.
    #[serde(default)]
    live: Option<String>,
}

/// A URL of `path` to append query pairs to.
fn url(path: &str) -> form_urlencoded::Serializer<'static, String> {
    let target = format!("{path}?");
    let start = target.len();
    form_urlencoded::Serializer::for_suffix(target, start)
}

/// This page's URL with the live tail on or off (the time range as asked:
/// a preset stays relative).
fn here(p: &Params, live: bool) -> String {
    let mut s = url("/ui/search");
    for (name, value) in [
        ("q", &p.q),
        ("range", &p.range),
        ("from", &p.from),
        ("to", &p.to),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            s.append_pair(name, v);
        }
    }
    if live {
        s.append_pair("live", "1");
    }
    s.finish()
}

/// A time from the URL: RFC 3339, or a browser's `datetime-local`
/// (`2026-12-04T10:30`, UTC).
fn time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
                .ok()
                .map(|t| t.and_utc())
        })
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
                .ok()
                .map(|t| t.and_utc())
        })
}

/// What a search asks, checked.
#[derive(Clone)]
struct Asked {
    text: Option<String>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// The preset, or `custom`.
    range: &'static str,
    after: Option<After>,
}

/// The query text, checked against the node's limits; none when empty.
fn text(state: &ApiState, q: Option<&str>) -> Result<Option<String>, String> {
    let text = q
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(str::to_owned);
    if let Some(text) = &text {
        index::check_query(
            text,
            state
                .limits
                .max_search_query_bytes
                .min(index::MAX_QUERY_BYTES),
            state
                .limits
                .max_search_query_depth
                .min(index::MAX_QUERY_DEPTH),
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(text)
}

fn asked(state: &ApiState, p: &Params, now: DateTime<Utc>) -> Result<Asked, String> {
    let text = text(state, p.q.as_deref())?;
    let custom = (p.from.as_deref(), p.to.as_deref());
    let (from, to, range) = match (p.range.as_deref(), custom) {
        (Some("custom") | None, (Some(from), Some(to))) if !from.is_empty() && !to.is_empty() => {
            let from = time(from).ok_or("`from` is not a time: use 2026-12-04T10:30 (UTC)")?;
            let to = time(to).ok_or("`to` is not a time: use 2026-12-04T11:30 (UTC)")?;
            if to <= from {
                return Err("`to` must be after `from`".into());
            }
            (from, to, "custom")
        }
        (range, _) => {
            let (value, _, span) = RANGES
                .iter()
                .find(|(v, _, _)| Some(*v) == range)
                .unwrap_or(&RANGES[2]);
            (now - chrono::Duration::seconds(*span), now, *value)
        }
    };
    let after = match p.after.as_deref() {
        None | Some("") => None,
        Some(a) => {
            let (micros, seq) = a
                .split_once('-')
                .ok_or("`after` is not a cursor of this page")?;
            Some(After {
                timestamp_micros: micros
                    .parse()
                    .map_err(|_| "`after` is not a cursor of this page")?,
                seq: seq
                    .parse()
                    .map_err(|_| "`after` is not a cursor of this page")?,
            })
        }
    };
    Ok(Asked {
        text,
        from,
        to,
        range,
        after,
    })
}

/// The query string of a search (no paging), for links.
pub(super) fn link(q: Option<&str>, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    if let Some(q) = q.filter(|q| !q.is_empty()) {
        s.append_pair("q", q);
    }
    s.append_pair("range", "custom");
    s.append_pair(
        "from",
        &from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    s.append_pair("to", &to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    s.finish()
}

/// `field:"value"` in the query syntax.
fn term(field: &str, value: &str) -> String {
    format!(
        "{field}:\"{}\"",
        value.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

pub struct Bar {
    /// Position and size in the SVG's 0..1000 × 0..100 box.
    x: f64,
    width: f64,
    y: f64,
    height: f64,
    label: String,
    href: String,
    start: String,
    end: String,
}

pub struct Value_ {
    value: String,
    count: u64,
    include: String,
    exclude: String,
}

pub struct Field {
    name: &'static str,
    values: Vec<Value_>,
}

pub struct Hit {
    seq: u64,
    time: String,
    host: String,
    source: String,
    user: String,
    dataset: String,
    message: String,
    original: String,
    fields: Vec<(String, String)>,
}

impl From<Event> for Hit {
    fn from(e: Event) -> Hit {
        let fields = match e.to_export_json() {
            // The message and the raw line are shown above the fields.
            serde_json::Value::Object(map) => map
                .into_iter()
                .filter(|(k, _)| k != "message" && k != "log.original")
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect(),
            _ => Vec::new(),
        };
        Hit {
            seq: e.seq,
            time: e.timestamp.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            host: e.host_name.unwrap_or_default(),
            source: e.source_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            user: e.user_name.unwrap_or_default(),
            dataset: e.dataset.unwrap_or_default().into_owned(),
            message: e.message,
            original: e.original.unwrap_or_default(),
            fields,
        }
    }
}

#[derive(Template)]
#[template(path = "console/search.html")]
struct SearchPage {
    frame: Frame,
    q: String,
    ranges: Vec<(&'static str, &'static str, bool)>,
    from: String,
    to: String,
    error: Option<String>,
    total: u64,
    /// The top values are of the newest hits only: how many, since when.
    top_of: Option<(u64, String)>,
    bars: Vec<Bar>,
    interval: &'static str,
    fields: Vec<Field>,
    hits: Vec<Hit>,
    next: Option<String>,
    first: Option<String>,
    export: String,
    beyond_local: Option<String>,
    /// Live: the tail's URL and the seq it starts after.
    tail: Option<(String, u64)>,
    /// This page with the live tail switched.
    live_toggle: String,
}

/// New arrivals for the live tail, newest first.
#[derive(Template)]
#[template(path = "console/hits.html")]
struct Hits {
    hits: Vec<Hit>,
}

/// The histogram interval giving about [`BARS`] bars over `from..to`.
fn interval(from: DateTime<Utc>, to: DateTime<Utc>) -> (&'static str, i64) {
    let span = (to - from).num_seconds().max(1);
    INTERVALS
        .iter()
        .copied()
        .find(|(_, secs)| span / secs <= BARS)
        .unwrap_or(INTERVALS[INTERVALS.len() - 1])
}

struct Found {
    view: index::View,
    events: Vec<Event>,
    local_since: Option<DateTime<Utc>>,
}

fn find(state: &ApiState, a: &Asked, interval: Interval) -> Result<Found, String> {
    let query = SearchQuery {
        text: a.text.clone(),
        from: Some(a.from),
        to: Some(a.to),
        after: a.after,
        limit: PAGE,
    };
    let view = state
        .index
        .view(&query, interval, &SIDEBAR, TOP, SAMPLE)
        .map_err(|e| e.to_string())?;
    let events = state
        .store
        .get_many(&view.seqs)
        .map_err(|e| e.to_string())?;
    let local_since = match state
        .store
        .first_event_after(0)
        .map_err(|e| e.to_string())?
    {
        Some(first) if first.seq > 1 => Some(first.received_at),
        _ => None,
    };
    Ok(Found {
        view,
        events,
        local_since,
    })
}

pub async fn page(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    Query(p): Query<Params>,
) -> Response {
    let _read: CanRead = match analyst.grant() {
        Ok(cap) => cap,
        Err(denied) => return problem(StatusCode::FORBIDDEN, &denied.to_string()),
    };
    let now = Utc::now();
    let frame = Frame::new(&analyst, "search");
    let q = p.q.clone().unwrap_or_default();
    let ranges = |current: &str| {
        RANGES
            .iter()
            .map(|(v, l, _)| (*v, *l, *v == current))
            .chain(std::iter::once((
                "custom",
                "From … to …",
                current == "custom",
            )))
            .collect()
    };
    let a = match asked(&console.api, &p, now) {
        Ok(a) => a,
        Err(error) => {
            let page = SearchPage {
                frame,
                q,
                ranges: ranges("24h"),
                from: String::new(),
                to: String::new(),
                error: Some(error),
                total: 0,
                top_of: None,
                bars: Vec::new(),
                interval: "",
                fields: Vec::new(),
                hits: Vec::new(),
                next: None,
                first: None,
                export: String::new(),
                beyond_local: None,
                tail: None,
                live_toggle: here(&p, false),
            };
            return render(StatusCode::BAD_REQUEST, &page);
        }
    };
    let (interval_name, interval_secs) = interval(a.from, a.to);
    let Ok(parsed_interval) = interval_name.parse::<Interval>() else {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, "no histogram interval");
    };
    let live = p.live.as_deref() == Some("1");
    let (state, asked) = (console.api.clone(), a.clone());
    // The tail starts at what the index holds before the search runs: an
    // event both on the page and in the tail is shown once (by its seq).
    let found = tokio::task::spawn_blocking(move || {
        let since = if live {
            state.index.committed_seq().map_err(|e| e.to_string())?
        } else {
            0
        };
        find(&state, &asked, parsed_interval).map(|found| (found, since))
    })
    .await;
    let (found, since) = match found {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                &format!("the search did not run: {e}"),
            );
        }
        Err(_) => return problem(StatusCode::INTERNAL_SERVER_ERROR, "the search did not run"),
    };
    let text = a.text.as_deref();
    let max = found
        .view
        .buckets
        .iter()
        .map(|b| b.count)
        .max()
        .unwrap_or(0)
        .max(1);
    let span = (a.to - a.from).num_milliseconds().max(1) as f64;
    let bars = found
        .view
        .buckets
        .iter()
        .filter(|b| b.count > 0)
        .map(|b| {
            let start = b.start.max(a.from);
            let end = (b.start + chrono::Duration::seconds(interval_secs)).min(a.to);
            let x = (start - a.from).num_milliseconds() as f64 / span * 1000.0;
            let width = ((end - start).num_milliseconds() as f64 / span * 1000.0 - 1.0).max(1.0);
            let height = b.count as f64 / max as f64 * 100.0;
            Bar {
                x,
                width,
                y: 100.0 - height,
                height,
                label: format!("{} from {}", b.count, start.format("%Y-%m-%d %H:%M:%S")),
                href: format!("/ui/search?{}", link(text, start, end)),
                start: start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                end: end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }
        })
        .collect();
    let with = |extra: &str| match text {
        Some(q) => format!("{q} AND {extra}"),
        None => extra.to_owned(),
    };
    let fields = SIDEBAR
        .into_iter()
        .zip(found.view.values)
        .map(|(name, buckets)| Field {
            name,
            values: buckets
                .into_iter()
                .map(|b| Value_ {
                    include: format!(
                        "/ui/search?{}",
                        link(Some(&with(&term(name, &b.key))), a.from, a.to)
                    ),
                    exclude: format!(
                        "/ui/search?{}",
                        link(
                            Some(&with(&format!("NOT {}", term(name, &b.key)))),
                            a.from,
                            a.to
                        )
                    ),
                    value: b.key,
                    count: b.count,
                })
                .collect(),
        })
        .filter(|f| !f.values.is_empty())
        .collect();
    let base = link(text, a.from, a.to);
    let next = found
        .view
        .more
        .then(|| {
            found.events.last().map(|e| {
                let after = After::of(e);
                format!(
                    "/ui/search?{base}&after={}-{}",
                    after.timestamp_micros, after.seq
                )
            })
        })
        .flatten();
    let beyond_local = found
        .local_since
        .filter(|since| a.from < *since)
        .map(|since| since.format("%Y-%m-%d %H:%M").to_string());
    let page = SearchPage {
        frame,
        q,
        ranges: ranges(a.range),
        from: a.from.format("%Y-%m-%dT%H:%M").to_string(),
        to: a.to.format("%Y-%m-%dT%H:%M").to_string(),
        error: None,
        total: found.view.total,
        top_of: found
            .view
            .top_of
            .map(|(hits, since)| (hits, since.format("%Y-%m-%d %H:%M:%S").to_string())),
        bars,
        interval: interval_name,
        fields,
        hits: found.events.into_iter().map(Hit::from).collect(),
        next,
        first: a.after.map(|_| format!("/ui/search?{base}")),
        export: base,
        beyond_local,
        tail: live.then(|| {
            let mut s = url("/ui/search/tail");
            if let Some(q) = text {
                s.append_pair("q", q);
            }
            (s.finish(), since)
        }),
        live_toggle: here(&p, !live),
    };
    render(StatusCode::OK, &page)
}

/// The live tail's query string.
#[derive(Debug, Deserialize)]
pub struct TailParams {
    #[serde(default)]
    q: Option<String>,
    /// The last seq the page holds.
    since: u64,
}

/// `GET /ui/search/tail?q=…&since=<seq>`: the rows of the events that
/// arrived after `since` and match `q` (at most [`TAIL`], newest first),
/// and in `X-Tail-Since` the seq to ask after next time.
pub async fn tail(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    Query(p): Query<TailParams>,
) -> Response {
    let _read: CanRead = match analyst.grant() {
        Ok(cap) => cap,
        Err(denied) => return problem(StatusCode::FORBIDDEN, &denied.to_string()),
    };
    let text = match text(&console.api, p.q.as_deref()) {
        Ok(text) => text,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &e),
    };
    let state = console.api.clone();
    let arrived = tokio::task::spawn_blocking(move || {
        let seqs = state
            .index
            .arrived_after(text.as_deref(), p.since, TAIL)
            .map_err(|e| e.to_string())?;
        let since = seqs.last().copied().unwrap_or(p.since);
        let mut events = state.store.get_many(&seqs).map_err(|e| e.to_string())?;
        events.reverse();
        Ok::<_, String>((events, since))
    })
    .await;
    let (events, since) = match arrived {
        Ok(Ok(arrived)) => arrived,
        Ok(Err(e)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                &format!("the live tail did not run: {e}"),
            );
        }
        Err(_) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the live tail did not run",
            );
        }
    };
    let rows = Hits {
        hits: events.into_iter().map(Hit::from).collect(),
    };
    let mut response = render(StatusCode::OK, &rows);
    response
        .headers_mut()
        .insert("x-tail-since", HeaderValue::from(since));
    response
}

/// `GET /ui/search/export?format=csv|ndjson&…`: the hits of the search,
/// newest first, at most [`MAX_EXPORT`], written as they are read.
pub async fn export(
    State(console): State<Arc<Console>>,
    analyst: Analyst,
    Query(p): Query<Params>,
) -> Response {
    let _read: CanRead = match analyst.grant() {
        Ok(cap) => cap,
        Err(denied) => return problem(StatusCode::FORBIDDEN, &denied.to_string()),
    };
    let csv = match p.format.as_deref() {
        Some("csv") => true,
        Some("ndjson") => false,
        _ => return problem(StatusCode::BAD_REQUEST, "format is csv or ndjson"),
    };
    let a = match asked(&console.api, &p, Utc::now()) {
        Ok(a) => a,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &e),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let state = console.api.clone();
    tokio::task::spawn_blocking(move || {
        let mut query = SearchQuery {
            text: a.text,
            from: Some(a.from),
            to: Some(a.to),
            after: None,
            limit: 500,
        };
        if csv {
            let header = "timestamp,host.name,source.ip,user.name,event.dataset,message\n";
            if tx.blocking_send(Ok(header.as_bytes().to_vec())).is_err() {
                return;
            }
        }
        let mut sent = 0;
        while sent < MAX_EXPORT {
            query.limit = 500.min(MAX_EXPORT - sent);
            let events = match state
                .index
                .search(&query)
                .map_err(|e| e.to_string())
                .and_then(|page| state.store.get_many(&page.seqs).map_err(|e| e.to_string()))
            {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, "a console export ended early");
                    let _ = tx.blocking_send(Err(std::io::Error::other("the search failed")));
                    return;
                }
            };
            let Some(last) = events.last() else { return };
            query.after = Some(After::of(last));
            let mut chunk = Vec::new();
            for e in &events {
                if csv {
                    csv_row(&mut chunk, e);
                } else {
                    chunk.extend_from_slice(e.to_export_json().to_string().as_bytes());
                    chunk.push(b'\n');
                }
            }
            sent += events.len();
            if tx.blocking_send(Ok(chunk)).is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let (content_type, name) = if csv {
        ("text/csv; charset=utf-8", "secmon-search.csv")
    } else {
        ("application/x-ndjson", "secmon-search.ndjson")
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
                    .unwrap_or(HeaderValue::from_static("attachment")),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// One CSV line (RFC 4180 quoting). A cell a spreadsheet would run as a
/// formula (`=`, `+`, `-`, `@`, tab, CR first) is prefixed with `'`.
fn csv_row(out: &mut Vec<u8>, e: &Event) {
    let ip = e.source_ip.map(|ip| ip.to_string());
    let cells = [
        Some(
            e.timestamp
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ),
        e.host_name.clone(),
        ip,
        e.user_name.clone(),
        e.dataset.as_deref().map(str::to_owned),
        Some(e.message.clone()),
    ];
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let cell = cell.as_deref().unwrap_or_default();
        let guarded = if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{cell}")
        } else {
            cell.to_owned()
        };
        out.push(b'"');
        out.extend_from_slice(guarded.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_never_formulas() {
        let e = Event {
            message: "=HYPERLINK(\"http://evil\") said \"hi\"".into(),
            timestamp: DateTime::from_timestamp(0, 0).unwrap(),
            user_name: Some("root".into()),
            ..Event::default()
        };
        let mut out = Vec::new();
        csv_row(&mut out, &e);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"1970-01-01T00:00:00.000Z\",\"\",\"\",\"root\",\"\",\"'=HYPERLINK(\"\"http://evil\"\") said \"\"hi\"\"\"\n"
        );
    }

    #[test]
    fn the_histogram_has_about_sixty_bars() {
        let to = Utc::now();
        assert_eq!(interval(to - chrono::Duration::hours(1), to).0, "1m");
        assert_eq!(interval(to - chrono::Duration::hours(24), to).0, "1h");
        assert_eq!(interval(to - chrono::Duration::days(30), to).0, "12h");
        assert_eq!(interval(to - chrono::Duration::days(365), to).0, "7d");
        assert_eq!(interval(to - chrono::Duration::minutes(15), to).0, "1m");
    }

    #[test]
    fn times_from_the_url() {
        assert!(time("2026-12-04T10:30").is_some());
        assert!(time("2026-12-04T10:30:00Z").is_some());
        assert!(time("yesterday").is_none());
    }
}
