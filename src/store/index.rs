//! The tantivy full-text index over events. Derived from redb: it stores
//! only what search needs (terms; `@timestamp`, `seq`, the keyword and the
//! numeric fields as fast fields) and search results are loaded from redb by
//! seq. Counts by field (`stats`) and over time (`histogram`) are tantivy
//! aggregations over the fast fields.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use tantivy::aggregation::agg_req::{Aggregation, AggregationVariants, Aggregations};
use tantivy::aggregation::agg_result::{AggregationResult, AggregationResults, BucketResult};
use tantivy::aggregation::bucket::{DateHistogramAggregationReq, TermsAggregation};
use tantivy::aggregation::{AggContextParams, AggregationCollector};
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery};
use tantivy::schema::{
    DateOptions, DateTimePrecision, FAST, Field, INDEXED, IndexRecordOption, JsonObjectOptions,
    Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Searcher, TantivyDocument,
    Term,
};

use crate::model::Event;

/// Writer memory budget; tantivy flushes a segment when it is reached.
const WRITER_MEMORY_BYTES: usize = 48 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("index error: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("invalid search query: {0}")]
    Query(#[from] tantivy::query::QueryParserError),
    /// A request the index cannot answer as asked (bad `group_by`, `top`,
    /// interval); the message says what is allowed.
    #[error("{0}")]
    BadRequest(String),
    #[error("cannot prepare index directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Keyword fields: indexed verbatim (case-sensitive), searchable as
/// `name:value`. All but `id` are also fast fields (raw), so they can be
/// grouped by; `id` is unique per event, so counting by it says nothing and
/// its column would only cost disk.
const KEYWORDS: &[&str] = &[
    "host.name",
    "host.ip",
    "source.ip",
    "destination.ip",
    "user.name",
    "user.target.name",
    "process.name",
    "process.executable",
    "event.category",
    "event.action",
    "event.outcome",
    "event.dataset",
];

/// Numeric fields: searchable as `name:value`, fast, so they can be grouped by.
const NUMBERS: [&str; 4] = [
    "source.port",
    "destination.port",
    "process.pid",
    "event.severity",
];

/// `stats` returns this many buckets unless asked otherwise.
pub const DEFAULT_TOP: usize = 10;
/// The most buckets `stats` returns.
pub const MAX_TOP: usize = 1_000;
/// The most buckets `histogram` returns.
pub const MAX_TIME_BUCKETS: i64 = 10_000;

struct Fields {
    seq: Field,
    timestamp: Field,
    message: Field,
    original: Field,
    command_line: Field,
    source_port: Field,
    destination_port: Field,
    pid: Field,
    severity: Field,
    labels: Field,
    fields: Field,
    keywords: Vec<Field>,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    // `seq` and `@timestamp` are fast fields only: ranges over them run on
    // the columns, and an inverted index of near-unique values would cost
    // more disk than everything else.
    let seq = b.add_u64_field("seq", FAST);
    let timestamp = b.add_date_field(
        "@timestamp",
        DateOptions::default()
            .set_fast()
            .set_precision(DateTimePrecision::Microseconds),
    );
    // No field norms anywhere: results are ordered by time, never scored
    // by relevance, and norms cost about a byte per field per event.
    let words = TextFieldIndexing::default()
        .set_tokenizer("default")
        .set_index_option(IndexRecordOption::WithFreqsAndPositions)
        .set_fieldnorms(false);
    let exact = TextFieldIndexing::default()
        .set_tokenizer("raw")
        .set_index_option(IndexRecordOption::Basic)
        .set_fieldnorms(false);
    let text = TextOptions::default().set_indexing_options(words.clone());
    let message = b.add_text_field("message", text.clone());
    let original = b.add_text_field("log.original", text.clone());
    let command_line = b.add_text_field("process.command_line", text);
    let [source_port, destination_port, pid, severity] =
        NUMBERS.map(|name| b.add_u64_field(name, INDEXED | FAST));
    let labels = b.add_json_field(
        "labels",
        JsonObjectOptions::default().set_indexing_options(exact.clone()),
    );
    let fields = b.add_json_field(
        "fields",
        JsonObjectOptions::default().set_indexing_options(words),
    );
    let keyword = TextOptions::default()
        .set_indexing_options(exact)
        .set_fast("raw");
    let keywords = KEYWORDS
        .iter()
        .map(|&name| b.add_text_field(name, keyword.clone()))
        .collect();
    let f = Fields {
        seq,
        timestamp,
        message,
        original,
        command_line,
        source_port,
        destination_port,
        pid,
        severity,
        labels,
        fields,
        keywords,
    };
    (b.build(), f)
}

/// A search over the index: optional query text, time range, one page.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// tantivy query syntax; terms are ANDed; empty means everything.
    pub text: Option<String>,
    /// Inclusive lower bound on `@timestamp`.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound on `@timestamp`.
    pub to: Option<DateTime<Utc>>,
    pub offset: usize,
    pub limit: usize,
}

/// One page of hits, newest first, as store seqs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    pub total: usize,
    pub seqs: Vec<u64>,
}

/// One group of `stats`: a field value and how many events have it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub key: String,
    pub count: u64,
}

/// One interval of `histogram`: events with `start <= @timestamp < start + interval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeBucket {
    pub start: DateTime<Utc>,
    pub count: u64,
}

/// A histogram interval: a whole number of seconds, minutes, hours or days
/// (`30s`, `5m`, `1h`, `1d`), at most 366 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    millis: i64,
}

impl Interval {
    pub fn millis(self) -> i64 {
        self.millis
    }
}

impl std::str::FromStr for Interval {
    type Err = Error;

    fn from_str(s: &str) -> Result<Interval, Error> {
        const MAX_MILLIS: i64 = 366 * 86_400_000;
        let bad = || {
            Error::BadRequest(format!(
                "invalid interval `{s}`: use a whole number and a unit s, m, h or d (`30s`, `5m`, `1h`, `1d`), at most 366d"
            ))
        };
        let unit_at = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = s.split_at(unit_at);
        let number: i64 = number.parse().map_err(|_| bad())?;
        let unit_millis = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        match number.checked_mul(unit_millis) {
            Some(millis) if millis > 0 && millis <= MAX_MILLIS => Ok(Interval { millis }),
            _ => Err(bad()),
        }
    }
}

pub struct EventIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    parser: QueryParser,
}

/// How the index was found when opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    Existing,
    /// Missing or unreadable: a new empty index; everything must be re-indexed.
    Fresh,
}

impl EventIndex {
    /// Opens the index in `dir`, or creates it; an unreadable index is
    /// replaced by an empty one (it is rebuilt from redb).
    pub fn open(dir: &Path) -> Result<(EventIndex, Opened), Error> {
        let (schema, fields) = schema();
        let dir_err = |source| Error::Dir {
            path: dir.to_owned(),
            source,
        };
        let existed = dir.join("meta.json").exists();
        std::fs::create_dir_all(dir).map_err(dir_err)?;
        let opened = Self::open_in(dir, &schema);
        let (index, how) = match opened {
            Ok(index) if existed => (index, Opened::Existing),
            Ok(index) => (index, Opened::Fresh),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "index unreadable: rebuilding it from the store");
                std::fs::remove_dir_all(dir).map_err(dir_err)?;
                std::fs::create_dir_all(dir).map_err(dir_err)?;
                (Self::open_in(dir, &schema)?, Opened::Fresh)
            }
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let mut default_fields = vec![fields.message, fields.original];
        default_fields.push(fields.command_line);
        let mut parser = QueryParser::for_index(&index, default_fields);
        parser.set_conjunction_by_default();
        Ok((
            EventIndex {
                index,
                reader,
                fields,
                parser,
            },
            how,
        ))
    }

    fn open_in(dir: &Path, schema: &Schema) -> Result<Index, tantivy::TantivyError> {
        let directory = MmapDirectory::open(dir)
            .map_err(|e| tantivy::TantivyError::SystemError(e.to_string()))?;
        let index = Index::open_or_create(directory, schema.clone())?;
        // Reading the metas catches a truncated or garbled meta.json early.
        index.load_metas()?;
        Ok(index)
    }

    pub fn writer(&self) -> Result<IndexWriter, Error> {
        Ok(self.index.writer_with_num_threads(1, WRITER_MEMORY_BYTES)?)
    }

    /// The seq recorded with the last index commit (0 if none).
    pub fn committed_seq(&self) -> Result<u64, Error> {
        Ok(self
            .index
            .load_metas()?
            .payload
            .and_then(|p| p.parse().ok())
            .unwrap_or(0))
    }

    /// A query matching every document with seq > `seq`.
    pub fn after_seq(&self, seq: u64) -> Box<dyn Query> {
        Box::new(RangeQuery::new(
            Bound::Excluded(Term::from_field_u64(self.fields.seq, seq)),
            Bound::Unbounded,
        ))
    }

    /// A query matching every document with seq <= `seq`.
    pub fn up_to_seq(&self, seq: u64) -> Box<dyn Query> {
        Box::new(RangeQuery::new(
            Bound::Unbounded,
            Bound::Included(Term::from_field_u64(self.fields.seq, seq)),
        ))
    }

    /// Makes the last commit visible to searches.
    pub fn reload(&self) -> Result<(), Error> {
        Ok(self.reader.reload()?)
    }

    pub fn document(&self, e: &Event) -> TantivyDocument {
        let f = &self.fields;
        let mut doc = TantivyDocument::new();
        doc.add_u64(f.seq, e.seq);
        doc.add_date(
            f.timestamp,
            tantivy::DateTime::from_timestamp_micros(e.timestamp.timestamp_micros()),
        );
        doc.add_text(f.message, &e.message);
        // The raw line is indexed only when it says more than the message:
        // a syslog header adds host and program, which have keyword fields.
        if let Some(v) = e
            .original
            .as_ref()
            .filter(|o| !o.contains(e.message.as_str()))
        {
            doc.add_text(f.original, v);
        }
        if let Some(v) = &e.process_command_line {
            doc.add_text(f.command_line, v);
        }
        let ip = |v: &Option<std::net::IpAddr>| v.map(|ip| ip.to_string());
        let keyword_values: [Option<String>; KEYWORDS.len()] = [
            e.host_name.clone(),
            ip(&e.host_ip),
            ip(&e.source_ip),
            ip(&e.destination_ip),
            e.user_name.clone(),
            e.user_target_name.clone(),
            e.process_name.clone(),
            e.process_executable.clone(),
            e.category.clone(),
            e.action.clone(),
            e.outcome.clone(),
            e.dataset.clone(),
        ];
        for (field, value) in f.keywords.iter().zip(keyword_values) {
            if let Some(v) = value {
                doc.add_text(*field, v);
            }
        }
        let numbers = [
            (f.source_port, e.source_port.map(u64::from)),
            (f.destination_port, e.destination_port.map(u64::from)),
            (f.pid, e.process_pid.map(u64::from)),
            (f.severity, e.severity.map(u64::from)),
        ];
        for (field, value) in numbers {
            if let Some(v) = value {
                doc.add_u64(field, v);
            }
        }
        if !e.labels.is_empty() {
            let labels = e
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), tantivy::schema::OwnedValue::Str(v.clone())))
                .collect::<Vec<_>>();
            doc.add_object(f.labels, labels.into_iter().collect());
        }
        if !e.fields.is_empty() {
            let value = serde_json::Value::Object(e.fields.clone());
            doc.add_field_value(f.fields, &tantivy::schema::OwnedValue::from(value));
        }
        doc
    }

    /// The query for `q`'s text and time range (`offset`/`limit` are not part of it).
    fn query(&self, q: &SearchQuery) -> Result<Box<dyn Query>, Error> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if let Some(text) = q.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            clauses.push((
                Occur::Must,
                complete_negations(self.parser.parse_query(text)?),
            ));
        }
        if q.from.is_some() || q.to.is_some() {
            let term = |t: DateTime<Utc>| {
                Term::from_field_date(
                    self.fields.timestamp,
                    tantivy::DateTime::from_timestamp_micros(t.timestamp_micros()),
                )
            };
            let lower = q
                .from
                .map_or(Bound::Unbounded, |t| Bound::Included(term(t)));
            let upper = q.to.map_or(Bound::Unbounded, |t| Bound::Excluded(term(t)));
            clauses.push((Occur::Must, Box::new(RangeQuery::new(lower, upper))));
        }
        Ok(match clauses.len() {
            0 => Box::new(AllQuery),
            1 => clauses.remove(0).1,
            _ => Box::new(BooleanQuery::new(clauses)),
        })
    }

    pub fn search(&self, q: &SearchQuery) -> Result<SearchPage, Error> {
        let query = self.query(q)?;
        let searcher = self.reader.searcher();
        let top = TopDocs::with_limit(q.limit.max(1))
            .and_offset(q.offset)
            .order_by_fast_field::<tantivy::DateTime>("@timestamp", Order::Desc);
        let (total, hits) = searcher.search(&query, &(Count, top))?;
        let mut seqs = Vec::with_capacity(hits.len());
        for (
            _,
            DocAddress {
                segment_ord,
                doc_id,
            },
        ) in hits.into_iter().take(q.limit)
        {
            let column = searcher
                .segment_reader(segment_ord)
                .fast_fields()
                .u64("seq")?;
            if let Some(seq) = column.first(doc_id) {
                seqs.push(seq);
            }
        }
        Ok(SearchPage { total, seqs })
    }

    /// The `top` most frequent values of `group_by` among the events matching
    /// `q` (its `offset`/`limit` are ignored), by count descending then value.
    /// Counts are exact: every segment reports all its values.
    pub fn stats(&self, q: &SearchQuery, group_by: &str, top: usize) -> Result<Vec<Bucket>, Error> {
        if !groupable().any(|name| name == group_by) {
            let allowed: Vec<_> = groupable().collect();
            return Err(Error::BadRequest(format!(
                "cannot group by `{group_by}`: use one of {}",
                allowed.join(" ")
            )));
        }
        if !(1..=MAX_TOP).contains(&top) {
            return Err(Error::BadRequest(format!(
                "`top` must be between 1 and {MAX_TOP}, not {top}"
            )));
        }
        let terms = TermsAggregation {
            field: group_by.to_owned(),
            size: Some(top as u32),
            // Without a per-segment cut-off the counts are exact, not estimates.
            segment_size: Some(u32::MAX),
            ..TermsAggregation::default()
        };
        let query = self.query(q)?;
        let searcher = self.reader.searcher();
        let buckets = match aggregate(&searcher, &*query, AggregationVariants::Terms(terms))? {
            BucketResult::Terms { buckets, .. } => buckets,
            _ => return Err(unexpected_result()),
        };
        // tantivy orders them by count descending, then key ascending.
        Ok(buckets
            .into_iter()
            .map(|b| Bucket {
                key: b.key.to_string(),
                count: b.doc_count,
            })
            .collect())
    }

    /// Events matching `q` (its `offset`/`limit` are ignored) counted per
    /// `interval`, in ascending time. Buckets are aligned to the interval in
    /// UTC (since the Unix epoch) and run from the first non-empty bucket to
    /// the last, with empty ones in between (count 0). Refused when that would
    /// be more than `MAX_TIME_BUCKETS` buckets.
    pub fn histogram(&self, q: &SearchQuery, interval: Interval) -> Result<Vec<TimeBucket>, Error> {
        let query = self.query(q)?;
        // One searcher, so the span checked is the span aggregated.
        let searcher = self.reader.searcher();
        let Some((first, last)) = time_span(&searcher, q)? else {
            return Ok(Vec::new());
        };
        let width = interval.millis();
        let buckets = last.div_euclid(width) - first.div_euclid(width) + 1;
        if buckets > MAX_TIME_BUCKETS {
            return Err(Error::BadRequest(format!(
                "the matching events span {buckets} intervals of {width} ms: at most {MAX_TIME_BUCKETS}, use a larger interval or a narrower time range"
            )));
        }
        let request = DateHistogramAggregationReq {
            field: "@timestamp".to_owned(),
            fixed_interval: Some(format!("{width}ms")),
            min_doc_count: Some(0),
            ..DateHistogramAggregationReq::default()
        };
        let histogram = AggregationVariants::DateHistogram(request);
        let buckets = match aggregate(&searcher, &*query, histogram)? {
            BucketResult::Histogram { buckets } => buckets,
            _ => return Err(unexpected_result()),
        };
        let mut out = Vec::new();
        for b in buckets.iter() {
            // Date histogram keys are milliseconds since the epoch.
            let tantivy::aggregation::Key::F64(millis) = b.key else {
                return Err(unexpected_result());
            };
            let start =
                DateTime::from_timestamp_millis(millis as i64).ok_or_else(unexpected_result)?;
            out.push(TimeBucket {
                start,
                count: b.doc_count,
            });
        }
        out.sort_by_key(|b| b.start);
        Ok(out)
    }
}

/// The fields `stats` can group by: the fast keyword and numeric fields.
fn groupable() -> impl Iterator<Item = &'static str> {
    KEYWORDS.iter().chain(NUMBERS.iter()).copied()
}

/// The time span (ms) a histogram of `q` can cover: the `@timestamp`
/// range of the indexed events (read from the columns' min and max, no
/// search), narrowed by the query's `from`/`to`. It bounds the bucket count
/// before the aggregation runs.
fn time_span(searcher: &Searcher, q: &SearchQuery) -> Result<Option<(i64, i64)>, Error> {
    let mut range: Option<(i64, i64)> = None;
    for segment in searcher.segment_readers() {
        if segment.num_docs() == 0 {
            continue;
        }
        let column = segment.fast_fields().date("@timestamp")?;
        let (lo, hi) = (
            column.min_value().into_timestamp_micros(),
            column.max_value().into_timestamp_micros(),
        );
        range = Some(range.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
    }
    let Some((mut lo, mut hi)) = range else {
        return Ok(None);
    };
    if let Some(from) = q.from {
        lo = lo.max(from.timestamp_micros());
    }
    if let Some(to) = q.to {
        hi = hi.min(to.timestamp_micros() - 1);
    }
    Ok((lo <= hi).then(|| (lo.div_euclid(1_000), hi.div_euclid(1_000))))
}

/// Runs one bucket aggregation over the events matching `query`.
fn aggregate(
    searcher: &Searcher,
    query: &dyn Query,
    agg: AggregationVariants,
) -> Result<BucketResult, Error> {
    let request: Aggregations = [(
        "agg".to_owned(),
        Aggregation {
            agg,
            sub_aggregation: Aggregations::default(),
        },
    )]
    .into_iter()
    .collect();
    let context = AggContextParams::new(Default::default(), searcher.index().tokenizers().clone());
    let collector = AggregationCollector::from_aggs(request, context);
    let AggregationResults(mut results) = searcher.search(query, &collector)?;
    match results.remove("agg") {
        Some(AggregationResult::BucketResult(result)) => Ok(result),
        _ => Err(unexpected_result()),
    }
}

fn unexpected_result() -> Error {
    Error::Tantivy(tantivy::TantivyError::InternalError(
        "unexpected aggregation result".to_owned(),
    ))
}

/// A boolean query made only of exclusions (`NOT x`) matches nothing in
/// tantivy; analysts mean "everything except x", so such a query gets an
/// all-documents clause, at every depth.
fn complete_negations(query: Box<dyn Query>) -> Box<dyn Query> {
    let Some(boolean) = query.downcast_ref::<BooleanQuery>() else {
        return query;
    };
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = boolean
        .clauses()
        .iter()
        .map(|(occur, q)| (*occur, complete_negations(q.box_clone())))
        .collect();
    if clauses.iter().all(|(occur, _)| *occur == Occur::MustNot) {
        clauses.push((Occur::Must, Box::new(AllQuery)));
    }
    Box::new(BooleanQuery::new(clauses))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn event(seq: u64, secs: i64, msg: &str) -> Event {
        let t = Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap();
        Event {
            seq,
            timestamp: t,
            received_at: t,
            message: msg.into(),
            user_name: Some(format!("user{}", seq % 2)),
            ..Event::default()
        }
    }

    fn index_with(events: &[Event]) -> (tempfile::TempDir, EventIndex) {
        let dir = tempfile::tempdir().unwrap();
        let (index, how) = EventIndex::open(&dir.path().join("index")).unwrap();
        assert_eq!(how, Opened::Fresh);
        let mut w = index.writer().unwrap();
        for e in events {
            w.add_document(index.document(e)).unwrap();
        }
        w.commit().unwrap();
        index.reload().unwrap();
        (dir, index)
    }

    fn search(index: &EventIndex, q: SearchQuery) -> SearchPage {
        index.search(&SearchQuery { limit: 10, ..q }).unwrap()
    }

    /// An event at `time` (RFC 3339) with the given user, host and port.
    fn ev(seq: u64, time: &str, user: &str, host: &str, port: Option<u16>) -> Event {
        let t = DateTime::parse_from_rfc3339(time).unwrap().to_utc();
        Event {
            seq,
            timestamp: t,
            received_at: t,
            message: format!("login by {user}"),
            user_name: Some(user.into()),
            host_name: Some(host.into()),
            source_port: port,
            ..Event::default()
        }
    }

    fn buckets(pairs: &[(&str, u64)]) -> Vec<Bucket> {
        pairs
            .iter()
            .map(|&(key, count)| Bucket {
                key: key.into(),
                count,
            })
            .collect()
    }

    fn utc(time: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(time).unwrap().to_utc()
    }

    fn time_buckets(pairs: &[(&str, u64)]) -> Vec<TimeBucket> {
        pairs
            .iter()
            .map(|&(start, count)| TimeBucket {
                start: utc(start),
                count,
            })
            .collect()
    }

    fn interval(s: &str) -> Interval {
        s.parse().unwrap()
    }

    /// users: carol 3, alice 2, bob 2, dave 1; hosts: web1 5, web2 3.
    fn logins() -> Vec<Event> {
        let rows = [
            ("carol", "web1", Some(22)),
            ("bob", "web1", Some(22)),
            ("alice", "web2", Some(2222)),
            ("carol", "web1", Some(22)),
            ("dave", "web2", None),
            ("alice", "web1", Some(22)),
            ("carol", "web2", Some(2222)),
            ("bob", "web1", Some(8022)),
        ];
        rows.iter()
            .enumerate()
            .map(|(i, &(user, host, port))| {
                let time = format!("2026-01-01T00:00:{:02}Z", i * 5);
                ev(i as u64 + 1, &time, user, host, port)
            })
            .collect()
    }

    fn all() -> SearchQuery {
        SearchQuery::default()
    }

    #[test]
    fn stats_counts_by_count_then_key() {
        let (_d, index) = index_with(&logins());
        assert_eq!(
            index.stats(&all(), "user.name", DEFAULT_TOP).unwrap(),
            buckets(&[("carol", 3), ("alice", 2), ("bob", 2), ("dave", 1)])
        );
        assert_eq!(
            index.stats(&all(), "host.name", DEFAULT_TOP).unwrap(),
            buckets(&[("web1", 5), ("web2", 3)])
        );
    }

    #[test]
    fn stats_top_keeps_the_largest_buckets() {
        let (_d, index) = index_with(&logins());
        assert_eq!(
            index.stats(&all(), "user.name", 2).unwrap(),
            buckets(&[("carol", 3), ("alice", 2)])
        );
        assert_eq!(
            index.stats(&all(), "user.name", 1).unwrap(),
            buckets(&[("carol", 3)])
        );
    }

    #[test]
    fn stats_groups_by_numbers() {
        let (_d, index) = index_with(&logins());
        // dave's event has no port and is in no bucket.
        assert_eq!(
            index.stats(&all(), "source.port", DEFAULT_TOP).unwrap(),
            buckets(&[("22", 4), ("2222", 2), ("8022", 1)])
        );
        assert_eq!(
            index.stats(&all(), "event.severity", DEFAULT_TOP).unwrap(),
            []
        );
    }

    #[test]
    fn stats_counts_only_matching_events_in_the_time_range() {
        let (_d, index) = index_with(&logins());
        let web2 = SearchQuery {
            text: Some("host.name:web2".into()),
            ..all()
        };
        assert_eq!(
            index.stats(&web2, "user.name", DEFAULT_TOP).unwrap(),
            buckets(&[("alice", 1), ("carol", 1), ("dave", 1)])
        );
        // Events 2..=5 (seconds 5 to 20), `to` exclusive.
        let range = SearchQuery {
            from: Some(utc("2026-01-01T00:00:05Z")),
            to: Some(utc("2026-01-01T00:00:25Z")),
            ..all()
        };
        assert_eq!(
            index.stats(&range, "user.name", DEFAULT_TOP).unwrap(),
            buckets(&[("alice", 1), ("bob", 1), ("carol", 1), ("dave", 1)])
        );
        // Offset and limit do not apply to stats.
        let paged = SearchQuery {
            offset: 5,
            limit: 1,
            ..all()
        };
        assert_eq!(index.stats(&paged, "host.name", 10).unwrap().len(), 2);
    }

    #[test]
    fn stats_counts_are_exact_across_segments() {
        // Segment 1: eleven users with 3 events each and "a" with 2, so "a"
        // is not among that segment's top ten (tantivy's default cut-off for
        // one bucket); segment 2: "a" 5 times.
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = EventIndex::open(&dir.path().join("index")).unwrap();
        let mut w = index.writer().unwrap();
        let mut seq = 0;
        let mut add = |w: &mut IndexWriter, user: &str| {
            seq += 1;
            let e = ev(seq, "2026-01-01T00:00:00Z", user, "h", None);
            w.add_document(index.document(&e)).unwrap();
        };
        for i in 0..11 {
            for _ in 0..3 {
                add(&mut w, &format!("u{i:02}"));
            }
        }
        add(&mut w, "a");
        add(&mut w, "a");
        w.commit().unwrap();
        for _ in 0..5 {
            add(&mut w, "a");
        }
        w.commit().unwrap();
        index.reload().unwrap();
        assert_eq!(index.reader.searcher().segment_readers().len(), 2);
        assert_eq!(
            index.stats(&all(), "user.name", 1).unwrap(),
            buckets(&[("a", 7)])
        );
    }

    #[test]
    fn stats_rejects_unknown_fields_and_bad_top() {
        let (_d, index) = index_with(&logins());
        for field in ["message", "id", "nosuch", "labels.env", ""] {
            let err = index.stats(&all(), field, 10).unwrap_err();
            assert!(matches!(err, Error::BadRequest(_)), "{field}: {err:?}");
            let msg = err.to_string();
            assert!(
                msg.contains("user.name") && msg.contains("source.port"),
                "{msg}"
            );
        }
        for top in [0, MAX_TOP + 1] {
            let err = index.stats(&all(), "user.name", top).unwrap_err();
            assert!(matches!(err, Error::BadRequest(_)), "{top}: {err:?}");
        }
        assert_eq!(index.stats(&all(), "user.name", MAX_TOP).unwrap().len(), 4);
        let bad_query = SearchQuery {
            text: Some("nosuchfield:x".into()),
            ..all()
        };
        assert!(matches!(
            index.stats(&bad_query, "user.name", 10),
            Err(Error::Query(_))
        ));
    }

    #[test]
    fn histogram_is_aligned_and_fills_gaps_with_zero() {
        let events = [
            "2026-01-01T00:01:05Z",
            "2026-01-01T00:01:59.999Z",
            "2026-01-01T00:04:00Z",
            "2026-01-01T00:04:30Z",
            "2026-01-01T00:04:31Z",
        ];
        let events: Vec<_> = events
            .iter()
            .enumerate()
            .map(|(i, t)| ev(i as u64 + 1, t, "u", "h", None))
            .collect();
        let (_d, index) = index_with(&events);
        assert_eq!(
            index.histogram(&all(), interval("1m")).unwrap(),
            time_buckets(&[
                ("2026-01-01T00:01:00Z", 2),
                ("2026-01-01T00:02:00Z", 0),
                ("2026-01-01T00:03:00Z", 0),
                ("2026-01-01T00:04:00Z", 3),
            ])
        );
        assert_eq!(
            index.histogram(&all(), interval("30s")).unwrap(),
            time_buckets(&[
                ("2026-01-01T00:01:00Z", 1),
                ("2026-01-01T00:01:30Z", 1),
                ("2026-01-01T00:02:00Z", 0),
                ("2026-01-01T00:02:30Z", 0),
                ("2026-01-01T00:03:00Z", 0),
                ("2026-01-01T00:03:30Z", 0),
                ("2026-01-01T00:04:00Z", 1),
                ("2026-01-01T00:04:30Z", 2),
            ])
        );
        assert_eq!(
            index.histogram(&all(), interval("1h")).unwrap(),
            time_buckets(&[("2026-01-01T00:00:00Z", 5)])
        );
    }

    #[test]
    fn histogram_days_start_at_utc_midnight() {
        let events: Vec<_> = [
            "2026-03-01T23:59:59Z",
            "2026-03-02T00:00:00Z",
            "2026-03-04T12:00:00Z",
        ]
        .iter()
        .enumerate()
        .map(|(i, t)| ev(i as u64 + 1, t, "u", "h", None))
        .collect();
        let (_d, index) = index_with(&events);
        assert_eq!(
            index.histogram(&all(), interval("1d")).unwrap(),
            time_buckets(&[
                ("2026-03-01T00:00:00Z", 1),
                ("2026-03-02T00:00:00Z", 1),
                ("2026-03-03T00:00:00Z", 0),
                ("2026-03-04T00:00:00Z", 1),
            ])
        );
    }

    #[test]
    fn histogram_counts_only_matching_events_in_the_time_range() {
        let (_d, index) = index_with(&logins());
        // Seconds 0, 5, .., 35: in 10 s buckets 2 each; [5 s, 25 s) is events 2..=5.
        let range = SearchQuery {
            from: Some(utc("2026-01-01T00:00:05Z")),
            to: Some(utc("2026-01-01T00:00:25Z")),
            ..all()
        };
        assert_eq!(
            index.histogram(&range, interval("10s")).unwrap(),
            time_buckets(&[
                ("2026-01-01T00:00:00Z", 1),
                ("2026-01-01T00:00:10Z", 2),
                ("2026-01-01T00:00:20Z", 1),
            ])
        );
        let carol = SearchQuery {
            text: Some("user.name:carol".into()),
            ..all()
        };
        // carol at seconds 0, 15 and 30.
        assert_eq!(
            index.histogram(&carol, interval("15s")).unwrap(),
            time_buckets(&[
                ("2026-01-01T00:00:00Z", 1),
                ("2026-01-01T00:00:15Z", 1),
                ("2026-01-01T00:00:30Z", 1),
            ])
        );
        let nobody = SearchQuery {
            text: Some("user.name:nobody".into()),
            ..all()
        };
        assert_eq!(index.histogram(&nobody, interval("1m")).unwrap(), []);
    }

    #[test]
    fn histogram_refuses_more_than_the_bucket_limit() {
        let start = utc("2026-01-01T00:00:00Z");
        let minutes = |m: i64| (start + chrono::Duration::minutes(m)).to_rfc3339();
        let span = |last: i64| {
            let events = [
                ev(1, &minutes(0), "u", "h", None),
                ev(2, &minutes(last), "u", "h", None),
            ];
            index_with(&events)
        };
        let (_d, index) = span(MAX_TIME_BUCKETS - 1);
        let got = index.histogram(&all(), interval("1m")).unwrap();
        assert_eq!(got.len(), MAX_TIME_BUCKETS as usize);
        assert_eq!(got.iter().map(|b| b.count).sum::<u64>(), 2);

        let (_d, index) = span(MAX_TIME_BUCKETS);
        let err = index.histogram(&all(), interval("1m")).unwrap_err();
        assert!(matches!(err, Error::BadRequest(_)), "{err:?}");
        assert!(err.to_string().contains("larger interval"), "{err}");
        assert_eq!(index.histogram(&all(), interval("1h")).unwrap().len(), 167);
    }

    #[test]
    fn intervals_parse_whole_units_only() {
        let ms = |s: &str| s.parse::<Interval>().map(Interval::millis).ok();
        assert_eq!(ms("30s"), Some(30_000));
        assert_eq!(ms("1m"), Some(60_000));
        assert_eq!(ms("5m"), Some(300_000));
        assert_eq!(ms("1h"), Some(3_600_000));
        assert_eq!(ms("1d"), Some(86_400_000));
        assert_eq!(ms("366d"), Some(366 * 86_400_000));
        for bad in [
            "",
            "m",
            "30",
            "0s",
            "-1m",
            "1.5h",
            "1w",
            "1ms",
            " 1m",
            "1m ",
            "1M",
            "367d",
            "99999999999999999999s",
        ] {
            let err = bad.parse::<Interval>().unwrap_err();
            assert!(err.to_string().contains("`30s`"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn newest_first_with_total_and_paging() {
        let events: Vec<_> = (1..=5)
            .map(|i| event(i, i as i64, "Failed password for root"))
            .collect();
        let (_d, index) = index_with(&events);
        let all = search(
            &index,
            SearchQuery {
                text: Some("failed password".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            all,
            SearchPage {
                total: 5,
                seqs: vec![5, 4, 3, 2, 1]
            }
        );
        let page = index
            .search(&SearchQuery {
                text: None,
                offset: 2,
                limit: 2,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            page,
            SearchPage {
                total: 5,
                seqs: vec![3, 2]
            }
        );
    }

    #[test]
    fn terms_are_anded_and_keywords_are_fields() {
        let events = vec![
            event(1, 1, "Failed password"),
            event(2, 2, "Accepted password"),
        ];
        let (_d, index) = index_with(&events);
        let q = |t: &str| {
            search(
                &index,
                SearchQuery {
                    text: Some(t.into()),
                    ..Default::default()
                },
            )
            .seqs
        };
        assert_eq!(q("password"), [2, 1]);
        assert_eq!(q("failed password"), [1]);
        assert_eq!(q("\"accepted password\""), [2]);
        assert_eq!(q("user.name:user1"), [1]);
        assert_eq!(q("password -user.name:user1"), [2]);
        assert_eq!(q("password AND NOT user.name:user1"), [2]);
        assert_eq!(q("failed OR (NOT user.name:user1)"), [2, 1]);
    }

    #[test]
    fn time_range_is_inclusive_exclusive() {
        let events: Vec<_> = (1..=5).map(|i| event(i, i as i64 * 10, "x")).collect();
        let (_d, index) = index_with(&events);
        let at = |s: i64| Some(Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap());
        let got = search(
            &index,
            SearchQuery {
                from: at(20),
                to: at(40),
                ..Default::default()
            },
        );
        assert_eq!(
            got,
            SearchPage {
                total: 2,
                seqs: vec![3, 2]
            }
        );
    }

    #[test]
    fn bad_query_is_an_error_not_a_panic() {
        let (_d, index) = index_with(&[event(1, 1, "x")]);
        let err = index
            .search(&SearchQuery {
                text: Some("nosuchfield:x".into()),
                limit: 1,
                ..Default::default()
            })
            .unwrap_err();
        assert!(err.to_string().contains("nosuchfield"), "{err}");
    }

    #[test]
    fn corrupt_index_is_replaced_by_a_fresh_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("meta.json"), b"{ not json").unwrap();
        let (index, how) = EventIndex::open(&path).unwrap();
        assert_eq!(how, Opened::Fresh);
        assert_eq!(index.committed_seq().unwrap(), 0);
    }

    #[test]
    fn index_with_an_older_schema_is_replaced_by_a_fresh_one() {
        // As written before the keyword fields were fast fields.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        std::fs::create_dir_all(&path).unwrap();
        let mut old = Schema::builder();
        old.add_u64_field("seq", INDEXED | FAST);
        old.add_text_field("user.name", tantivy::schema::STRING);
        Index::create_in_dir(&path, old.build()).unwrap();
        let (_index, how) = EventIndex::open(&path).unwrap();
        assert_eq!(how, Opened::Fresh);
        let (_, how) = EventIndex::open(&path).unwrap();
        assert_eq!(how, Opened::Existing);
    }

    #[test]
    fn delete_after_seq_and_ranges_work_on_fast_only_fields() {
        let events: Vec<_> = (1..=5).map(|i| event(i, i as i64 * 10, "x")).collect();
        let (_d, index) = index_with(&events);
        let mut w = index.writer().unwrap();
        w.delete_query(index.after_seq(3)).unwrap();
        w.commit().unwrap();
        index.reload().unwrap();
        let all = search(&index, SearchQuery::default());
        assert_eq!(all.seqs, [3, 2, 1]);
        let q = "@timestamp:[2023-11-14T22:13:40Z TO *]";
        let got = search(
            &index,
            SearchQuery {
                text: Some(q.into()),
                ..Default::default()
            },
        );
        assert_eq!(got.seqs, [3, 2]);
    }

    #[test]
    fn commit_payload_is_the_checkpoint() {
        let (_d, index) = index_with(&[]);
        let mut w = index.writer().unwrap();
        w.add_document(index.document(&event(7, 1, "x"))).unwrap();
        let mut prepared = w.prepare_commit().unwrap();
        prepared.set_payload("7");
        prepared.commit().unwrap();
        assert_eq!(index.committed_seq().unwrap(), 7);
    }
}
