//! The tantivy full-text index over events. Derived from redb: it stores
//! only what search needs (terms; `@timestamp`, `seq`, the keyword and the
//! numeric fields as fast fields) and search results are loaded from redb by
//! seq. Counts by field (`stats`) and over time (`histogram`) read the fast
//! fields (`counts`).

use std::borrow::Cow;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use tantivy::collector::sort_key::SortByStaticFastValue;
use tantivy::collector::{Collector, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    AllQuery, BooleanQuery, EnableScoring, Occur, Query, QueryParser, RangeQuery, Weight,
};
use tantivy::schema::{
    DateOptions, DateTimePrecision, FAST, Field, IndexRecordOption, JsonObjectOptions,
    NumericOptions, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{
    Index, IndexReader, IndexWriter, Order, ReloadPolicy, Searcher, SegmentReader, TantivyDocument,
    Term,
};

use super::counts::{Histogram, KeptTotals, Kind, Minutes, Spans, TimeRange, TopValues};
use super::{phrases, words};
use crate::model::Event;

/// Writer memory budget, shared by its indexing threads; tantivy flushes a
/// thread's segment when its share is reached.
const WRITER_MEMORY_BYTES: usize = 48 * 1024 * 1024;

/// tantivy's indexing threads, where there are cores for them. With one,
/// adding the documents is the slowest stage end to end and the index falls
/// behind the store (then read back from redb instead of handed over in
/// memory); with two on two cores the index keeps up (docs/PERFORMANCE.md,
/// "Two indexing threads").
const MAX_INDEXING_THREADS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("index error: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("invalid search query: {0}")]
    Query(#[from] tantivy::query::QueryParserError),
    /// A query over the length or nesting limit, refused before parsing.
    #[error("invalid search query: {0}")]
    QueryLimit(String),
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

/// Numeric fields: columns only (fast, so they can be grouped by), no
/// terms: `name:value` and ranges are answered from the column (see
/// [`query_schema`]). Ports and pids are nearly unique to an event, and
/// their terms and postings took about 4 bytes an event for queries that
/// are rare.
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
/// Segments of at least this many events have their counts kept, per
/// minute for histograms and per value for top values (`counts`).
const MIN_KEPT_DOCS: u32 = 100_000;
/// The most memory (KiB) one field's kept totals over a set of segments
/// take: a field with more values is counted per query.
const MAX_TOTALS_KIB: usize = 8 * 1024;
/// The most buckets `histogram` returns.
pub const MAX_TIME_BUCKETS: i64 = 10_000;
/// Longest query text the index parses, whatever the API allows: the
/// parser and [`complete_negations`] recurse, so length and depth are
/// bounded before either sees a query.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;
/// Deepest nesting (parentheses, `+`/`-`/`NOT` prefixes) the index parses.
pub const MAX_QUERY_DEPTH: usize = 64;

struct Fields {
    seq: Field,
    timestamp: Field,
    message: Field,
    original: Field,
    command_line: Field,
    /// The word-pair companions of `message`, `log.original` and
    /// `process.command_line` (`phrases`).
    message_pairs: Field,
    original_pairs: Field,
    command_line_pairs: Field,
    source_port: Field,
    destination_port: Field,
    pid: Field,
    severity: Field,
    labels: Field,
    fields: Field,
    keywords: Vec<Field>,
}

fn schema() -> (Schema, Fields) {
    build_schema(false)
}

/// The schema queries are parsed against: the index's, with the numbers
/// indexed. The parser makes `source.port:22` a term query, which tantivy
/// answers from the column when the index has no terms for the field (a
/// scan of the column: tens of milliseconds at ten million events);
/// against the index's own schema it would refuse the query.
fn query_schema() -> Schema {
    build_schema(true).0
}

fn build_schema(numbers_indexed: bool) -> (Schema, Fields) {
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
        .set_tokenizer(words::TOKENIZER)
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
    let pairs = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(phrases::TOKENIZER)
            .set_index_option(IndexRecordOption::Basic)
            .set_fieldnorms(false),
    );
    let message_pairs = b.add_text_field("message.pairs", pairs.clone());
    let original_pairs = b.add_text_field("log.original.pairs", pairs.clone());
    let command_line_pairs = b.add_text_field("process.command_line.pairs", pairs);
    let number = NumericOptions::default().set_fast();
    let number = if numbers_indexed {
        number.set_indexed()
    } else {
        number
    };
    let [source_port, destination_port, pid, severity] =
        NUMBERS.map(|name| b.add_u64_field(name, number.clone()));
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
        message_pairs,
        original_pairs,
        command_line_pairs,
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
    /// Search after this hit: the page starts with the next older one
    /// (search-after paging: no offset, so no page costs more than its size).
    pub after: Option<After>,
    pub limit: usize,
}

/// Where a page ends: the `@timestamp` (µs since the epoch) and seq of its
/// last hit. Hits are ordered newest `@timestamp` first, and events of the
/// same `@timestamp` by seq (in the order they were received).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct After {
    pub timestamp_micros: i64,
    pub seq: u64,
}

impl After {
    /// The position of `e` in the search order.
    pub fn of(e: &Event) -> After {
        After {
            timestamp_micros: e.timestamp.timestamp_micros(),
            seq: e.seq,
        }
    }
}

/// One page of hits, newest first, as store seqs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    /// Hits of the query and time range (not only those after the cursor).
    pub total: usize,
    pub seqs: Vec<u64>,
    /// More hits follow this page.
    pub more: bool,
}

/// Refuses a query text longer than `max_bytes` or nested deeper than
/// `max_depth` (see [`query_depth`]), in one linear pass and before any
/// parser sees it.
pub fn check_query(text: &str, max_bytes: usize, max_depth: usize) -> Result<(), Error> {
    if text.len() > max_bytes {
        return Err(Error::QueryLimit(format!(
            "the query has {} bytes: at most {max_bytes}",
            text.len()
        )));
    }
    if query_depth(text) > max_depth {
        return Err(Error::QueryLimit(format!(
            "the query nests deeper than {max_depth} levels (parentheses, quotes, +/-/NOT): simplify it"
        )));
    }
    // tantivy separates a JSON field's path from its value with control
    // bytes: one in a `labels.`/`fields.` path trips an assertion in its
    // query parser (found by the search_query fuzz target).
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(Error::QueryLimit(
            "the query holds a control character: remove it".into(),
        ));
    }
    Ok(())
}

/// Whitespace as tantivy's grammar reads it (nom's `multispace`).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Where a field name (`name:`, as tantivy-query-grammar 0.27 reads one)
/// starting at `i` ends, after its colon.
fn field_name_end(b: &[u8], i: usize) -> Option<usize> {
    const SPECIAL: &[u8] = b"+^`:{}\"'[]()!\\* ";
    let mut j = i;
    while j < b.len() {
        match b[j] {
            b'\\' if b.get(j + 1).is_some_and(|c| SPECIAL.contains(c)) => j += 2,
            b'\\' => j += 1,
            c if SPECIAL.contains(&c) => break,
            b'-' if j == i => return None,
            _ => j += 1,
        }
    }
    if j == i {
        return None;
    }
    while j < b.len() && is_space(b[j]) {
        j += 1;
    }
    (b.get(j) == Some(&b':')).then_some(j + 1)
}

/// Where a quoted phrase opened by `b[i]` (`"` or `'`) ends, after its
/// closing quote: `\` escapes any character, the other quote is text.
fn phrase_end(b: &[u8], i: usize) -> Option<usize> {
    let quote = b[i];
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            c if c == quote => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// Where a regex literal `/.../` starting at `i` ends: at least one
/// character, `\/` escapes a slash, and whitespace, `)`, `^` or the end
/// follows it; quotes and parentheses in it are text.
fn regex_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() && b[j] != b'/' {
        j += if b[j] == b'\\' && b.get(j + 1) == Some(&b'/') {
            2
        } else {
            1
        };
    }
    if j >= b.len() || j == i + 1 {
        return None;
    }
    let after = b.get(j + 1).copied();
    after
        .is_none_or(|c| is_space(c) || c == b')' || c == b'^')
        .then_some(j + 1)
}

/// Where a range bound (`*`, or a word without whitespace and
/// `` ` ``, braces, brackets, parentheses or `"`: quotes `'` are text there)
/// starting at `i` ends.
fn range_word_end(b: &[u8], i: usize) -> Option<usize> {
    let stop = |c: u8| is_space(c) || b"{}\"[]()".contains(&c);
    if b.get(i).is_none_or(|&c| stop(c) || c == b'`') {
        return None;
    }
    let mut j = i + 1;
    while j < b.len() && !stop(b[j]) {
        j += 1;
    }
    Some(j)
}

/// Where a range (`[a TO b]`, `{a TO b}` and mixes, `>a`, `>=a`, `<a`,
/// `<=a`) starting at `i` ends.
fn range_end(b: &[u8], i: usize) -> Option<usize> {
    let spaces = |mut j: usize| {
        while j < b.len() && is_space(b[j]) {
            j += 1;
        }
        j
    };
    match b[i] {
        b'>' | b'<' => {
            let j = i + if b.get(i + 1) == Some(&b'=') { 2 } else { 1 };
            range_word_end(b, spaces(j))
        }
        b'[' | b'{' => {
            let j = range_word_end(b, spaces(i + 1))?;
            let k = spaces(j);
            if k == j || !b[k..].starts_with(b"TO") {
                return None;
            }
            let l = spaces(k + 2);
            if l == k + 2 {
                return None;
            }
            let m = spaces(range_word_end(b, l)?);
            matches!(b.get(m), Some(b']' | b'}')).then_some(m + 1)
        }
        _ => None,
    }
}

/// How deep tantivy's query parser (tantivy-query-grammar 0.27) may
/// recurse on `text`, never less: open parentheses (and brackets and
/// braces) plus the unary prefixes (`+`, `-`, `!`, `NOT`) in a row before a
/// term or group; a phrase, regex or range counts one, as a leaf.
///
/// A word ends at a quote, bracket, brace or parenthesis, and the grammar
/// reads the next term right there (`multispace0` between terms), so any
/// unescaped `"` or `'` outside a range or regex opens a phrase (`\`
/// escapes; the other quote is text), and `[` or `{` may open a range
/// (whose bounds may hold `'`), wherever they stand. A regex `/.../`
/// (`\/` escapes; quotes are text), unless a field name reads first, and
/// a `>`/`<` range are read where a term may start: at the beginning,
/// after whitespace, `(`, `)`, `[`, `]`, `{`, `}`, `:`, a prefix, or a
/// phrase, regex or range. Where it is unsure the scan counts more, never
/// less: an unterminated phrase is text, so what follows counts.
pub fn query_depth(text: &str) -> usize {
    let b = text.as_bytes();
    let (mut parens, mut prefixes, mut deepest) = (0usize, 0usize, 0usize);
    // Whether a term (phrase, regex, range, word) may start at `i`.
    let mut start = true;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let leaf = match c {
            b'"' | b'\'' => phrase_end(b, i),
            b'[' | b'{' => range_end(b, i),
            b'/' | b'>' | b'<' if !start || field_name_end(b, i).is_some() => None,
            b'/' => regex_end(b, i),
            b'>' | b'<' => range_end(b, i),
            _ => None,
        };
        if let Some(end) = leaf {
            deepest = deepest.max(parens + prefixes + 1);
            prefixes = 0;
            // The grammar reads the next term right after a leaf.
            start = true;
            i = end;
            continue;
        }
        match c {
            b'(' | b'[' | b'{' => {
                parens += 1;
                prefixes = 0;
                start = true;
            }
            b')' | b']' | b'}' => {
                parens = parens.saturating_sub(1);
                prefixes = 0;
                start = true;
            }
            // A prefix keeps `start` as it was: `-"a"` is a phrase, `a-"b"` is not.
            b'+' | b'-' | b'!' => prefixes += 1,
            b'N' if b[i..].starts_with(b"NOT")
                && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
                && b.get(i + 3).is_none_or(|c| !c.is_ascii_alphanumeric()) =>
            {
                prefixes += 1;
                start = false;
                i += 2;
            }
            b'\\' => {
                i += 1;
                prefixes = 0;
                start = false;
            }
            b':' => start = true,
            c if is_space(c) => start = true,
            _ => {
                prefixes = 0;
                start = false;
            }
        }
        deepest = deepest.max(parens + prefixes);
        i += 1;
    }
    deepest
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
    minutes: Minutes,
    totals: KeptTotals,
    spans: Spans,
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
                if matches!(e, tantivy::TantivyError::SchemaError(_)) {
                    tracing::warn!(dir = %dir.display(), "the index was built for another version of secmon: rebuilding it from the store");
                } else {
                    tracing::warn!(dir = %dir.display(), error = %e, "index unreadable: rebuilding it from the store");
                }
                std::fs::remove_dir_all(dir).map_err(dir_err)?;
                std::fs::create_dir_all(dir).map_err(dir_err)?;
                (Self::open_in(dir, &schema)?, Opened::Fresh)
            }
        };
        index
            .tokenizers()
            .register(words::TOKENIZER, words::Words::default());
        index
            .tokenizers()
            .register(phrases::TOKENIZER, phrases::WordPairs::default());
        // Counts and aggregations read the segments side by side, one
        // thread a core (at most four).
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        let mut index = index;
        if threads > 1 {
            index.set_multithread_executor(threads)?;
        }
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let mut default_fields = vec![fields.message, fields.original];
        default_fields.push(fields.command_line);
        let mut parser =
            QueryParser::new(query_schema(), default_fields, index.tokenizers().clone());
        parser.set_conjunction_by_default();
        Ok((
            EventIndex {
                index,
                reader,
                fields,
                parser,
                minutes: Minutes::new(MIN_KEPT_DOCS),
                totals: KeptTotals::new(MIN_KEPT_DOCS, MAX_TOTALS_KIB),
                spans: Spans::default(),
            },
            how,
        ))
    }

    fn open_in(dir: &Path, schema: &Schema) -> Result<Index, tantivy::TantivyError> {
        let directory = MmapDirectory::open(dir)
            .map_err(|e| tantivy::TantivyError::SystemError(e.to_string()))?;
        // Nothing is stored in tantivy's document store, but it keeps an
        // offset for every document all the same: zstd makes those about
        // 2 bytes an event where lz4 (the default) leaves 4. An index made
        // before keeps lz4 until it is rebuilt.
        let settings = tantivy::IndexSettings {
            docstore_compression: tantivy::store::Compressor::Zstd(
                tantivy::store::ZstdCompressor::default(),
            ),
            ..tantivy::IndexSettings::default()
        };
        let index = Index::builder()
            .schema(schema.clone())
            .settings(settings)
            .open_or_create(directory)?;
        // Reading the metas catches a truncated or garbled meta.json early.
        index.load_metas()?;
        Ok(index)
    }

    pub fn writer(&self) -> Result<IndexWriter, Error> {
        let threads =
            std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_INDEXING_THREADS));
        self.writer_with_threads(threads)
    }

    /// A writer with `threads` indexing threads, each filling a segment of
    /// its own until the commit.
    fn writer_with_threads(&self, threads: usize) -> Result<IndexWriter, Error> {
        // One merge thread (tantivy's default is four: four big merges at
        // once on a small node).
        let options = tantivy::indexer::IndexWriterOptions::builder()
            .memory_budget_per_thread(WRITER_MEMORY_BYTES / threads)
            .num_worker_threads(threads)
            .num_merge_threads(1)
            .build();
        Ok(self.index.writer_with_options(options)?)
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

    /// The document of `e`, which ends here: the indexer has no more use
    /// for it.
    pub fn document(&self, e: Event) -> TantivyDocument {
        let f = &self.fields;
        let mut doc = TantivyDocument::new();
        doc.add_u64(f.seq, e.seq);
        doc.add_date(f.timestamp, date(e.timestamp.timestamp_micros()));
        doc.add_text(f.message, &e.message);
        doc.add_text(f.message_pairs, &e.message);
        // The raw line is indexed only when it says more than the message:
        // a syslog header adds host and program, which have keyword fields.
        // (The message ends the line in most: a cheap test before the search.)
        if let Some(v) = e
            .original
            .as_ref()
            .filter(|o| !(e.message_ends_original() || o.contains(e.message.as_str())))
        {
            doc.add_text(f.original, v);
            doc.add_text(f.original_pairs, v);
        }
        if let Some(v) = &e.process_command_line {
            doc.add_text(f.command_line, v);
            doc.add_text(f.command_line_pairs, v);
        }
        let ip = |v: Option<std::net::IpAddr>| v.map(|ip| Cow::Owned(crate::model::ip_text(ip)));
        let keyword_values: [Option<Cow<'static, str>>; KEYWORDS.len()] = [
            e.host_name.map(Cow::Owned),
            ip(e.host_ip),
            ip(e.source_ip),
            ip(e.destination_ip),
            e.user_name.map(Cow::Owned),
            e.user_target_name.map(Cow::Owned),
            e.process_name.map(Cow::Owned),
            e.process_executable.map(Cow::Owned),
            e.category,
            e.action,
            e.outcome,
            e.dataset,
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
                .into_iter()
                .map(|(k, v)| {
                    (
                        k.into_owned(),
                        tantivy::schema::OwnedValue::Str(v.into_owned()),
                    )
                })
                .collect();
            doc.add_field_value(f.labels, &tantivy::schema::OwnedValue::Object(labels));
        }
        if !e.fields.is_empty() {
            // Read in place: tantivy's `OwnedValue` of them was a second tree
            // of the same strings, built and dropped for every event.
            doc.add_field_value(f.fields, &serde_json::Value::Object(e.fields));
        }
        doc
    }

    /// The query for `q`'s text and time range (`after`/`limit` are not part of it).
    fn query(&self, q: &SearchQuery) -> Result<Box<dyn Query>, Error> {
        Ok(all_of(
            [self.text_query(q)?, self.time_query(q)]
                .into_iter()
                .flatten()
                .collect(),
        ))
    }

    /// The query of `q`'s text, if it has any.
    fn text_query(&self, q: &SearchQuery) -> Result<Option<Box<dyn Query>>, Error> {
        let Some(text) = q.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        check_query(text, MAX_QUERY_BYTES, MAX_QUERY_DEPTH)?;
        // The parser refuses a query of only exclusions (`NOT x`);
        // analysts mean "everything except x".
        let parsed = match self.parser.parse_query(text) {
            Err(tantivy::query::QueryParserError::AllButQueryForbidden) => {
                self.parser.parse_query(&format!("* AND ({text})"))?
            }
            parsed => parsed?,
        };
        let parsed = complete_negations(parsed);
        // A `~` may ask for a phrase with slop, which pairs cannot answer.
        Ok(Some(if text.contains('~') {
            parsed
        } else {
            phrases::with_pairs(parsed, &|field| self.pairs_of(field))
        }))
    }

    /// The query of `q`'s time range, if it has one.
    fn time_query(&self, q: &SearchQuery) -> Option<Box<dyn Query>> {
        if q.from.is_none() && q.to.is_none() {
            return None;
        }
        let term = |t: DateTime<Utc>| {
            Term::from_field_date(self.fields.timestamp, date(t.timestamp_micros()))
        };
        let lower = q
            .from
            .map_or(Bound::Unbounded, |t| Bound::Included(term(t)));
        let upper = q.to.map_or(Bound::Unbounded, |t| Bound::Excluded(term(t)));
        Some(Box::new(RangeQuery::new(lower, upper)))
    }

    /// The weights of `q` (with `also`, when given, as one more required
    /// clause) for `searcher`.
    fn weights(
        &self,
        searcher: &Searcher,
        q: &SearchQuery,
        also: Option<Box<dyn Query>>,
    ) -> Result<Weights, Error> {
        let scoring = EnableScoring::disabled_from_searcher(searcher);
        let text = self.text_query(q)?;
        let time = self.time_query(q);
        let untimed = match time {
            Some(_) => Some(
                all_of(text.iter().chain(&also).map(|c| c.box_clone()).collect())
                    .weight(scoring)?,
            ),
            None => None,
        };
        let timed = all_of(text.into_iter().chain(time).chain(also).collect()).weight(scoring)?;
        Ok(Weights {
            timed,
            untimed,
            range: time_range(q),
        })
    }

    /// The word-pair field of a text field (`phrases`).
    fn pairs_of(&self, field: Field) -> Option<Field> {
        let f = &self.fields;
        [
            (f.message, f.message_pairs),
            (f.original, f.original_pairs),
            (f.command_line, f.command_line_pairs),
        ]
        .into_iter()
        .find_map(|(text, pairs)| (text == field).then_some(pairs))
    }

    /// One page of the hits of `q`, newest first: by `@timestamp`
    /// descending, then seq ascending (one second's lines in the order they
    /// came), starting after `q.after`. The work and memory
    /// of a page depend on its `limit`, never on how deep it is.
    pub fn search(&self, q: &SearchQuery) -> Result<SearchPage, Error> {
        let searcher = self.reader.searcher();
        let total = self.count_in(&searcher, q)?;
        let (seqs, more) = self.page_in(&searcher, q)?;
        Ok(SearchPage { total, seqs, more })
    }

    /// How many events match `q` (its `after`/`limit` are ignored).
    pub fn count(&self, q: &SearchQuery) -> Result<usize, Error> {
        self.count_in(&self.reader.searcher(), q)
    }

    /// Segments side by side on the search threads, each with its weight.
    fn count_in(&self, searcher: &Searcher, q: &SearchQuery) -> Result<usize, Error> {
        let weights = self.weights(searcher, q, None)?;
        let counts = self.index.search_executor().map(
            |segment: &SegmentReader| weights.of(segment, &self.spans)?.count(segment),
            searcher.segment_readers().iter(),
        )?;
        Ok(counts.into_iter().map(|n| n as usize).sum())
    }

    /// The latest `@timestamp` of every document, read from its column in
    /// one pass: the floor of any search that looks at every hit (the
    /// search benchmark's baseline).
    pub fn timestamp_column_pass(&self) -> Result<i64, Error> {
        let mut latest = i64::MIN;
        for segment in self.reader.searcher().segment_readers() {
            let column = segment.fast_fields().date("@timestamp")?;
            for doc in 0..segment.max_doc() {
                if let Some(t) = column.first(doc) {
                    latest = latest.max(t.into_timestamp_micros());
                }
            }
        }
        Ok(latest)
    }

    /// [`EventIndex::search`] without the total: the page's seqs, and whether
    /// another page follows.
    pub fn page(&self, q: &SearchQuery) -> Result<(Vec<u64>, bool), Error> {
        self.page_in(&self.reader.searcher(), q)
    }

    fn page_in(&self, searcher: &Searcher, q: &SearchQuery) -> Result<(Vec<u64>, bool), Error> {
        let weights = self.weights(searcher, q, q.after.map(|after| self.older_than(after)))?;
        // One more than the page tells whether another page follows.
        let top = TopDocs::with_limit(q.limit.saturating_add(1)).order_by((
            (
                SortByStaticFastValue::<tantivy::DateTime>::for_field("@timestamp"),
                Order::Desc,
            ),
            (SortByStaticFastValue::<u64>::for_field("seq"), Order::Asc),
        ));
        // The newest segments first: once the page is full, a segment whose
        // newest event is older than the page's last hit adds nothing, nor
        // does any after it (events arrive roughly in time order, so most
        // of a big index's segments are skipped).
        let mut segments = Vec::new();
        for (ord, segment) in searcher.segment_readers().iter().enumerate() {
            if segment.num_docs() > 0 {
                let newest = tantivy::DateTime::from_timestamp_micros(self.spans.of(segment)?.max);
                segments.push((newest, ord as u32, segment));
            }
        }
        segments.sort_by_key(|s| std::cmp::Reverse(s.0));
        let mut hits = Vec::new();
        for (newest, ord, segment) in segments {
            let full = hits.len() > q.limit;
            if full && hits.last().is_some_and(|((t, _), _)| Some(newest) < *t) {
                break;
            }
            let found = top.collect_segment(weights.of(segment, &self.spans)?, ord, segment)?;
            hits.extend(top.merge_fruits(vec![found])?);
            // The same order: the newest first, then by seq.
            hits.sort_by(|((t1, s1), _), ((t2, s2), _)| t2.cmp(t1).then(s1.cmp(s2)));
            hits.truncate(q.limit.saturating_add(1));
        }
        let more = hits.len() > q.limit;
        let seqs = hits
            .into_iter()
            .take(q.limit)
            .filter_map(|((_, seq), _)| seq)
            .collect();
        Ok((seqs, more))
    }

    /// The seqs of the first `limit` events with a seq above `seq` that
    /// match `text`, in the order they arrived (a live tail: its time is
    /// arrival, not `@timestamp`). A range over the seq fast field, so a
    /// poll that finds nothing costs next to nothing.
    pub fn arrived_after(
        &self,
        text: Option<&str>,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<u64>, Error> {
        let q = SearchQuery {
            text: text.map(str::to_owned),
            ..SearchQuery::default()
        };
        let query: Box<dyn Query> = Box::new(BooleanQuery::new(vec![
            (Occur::Must, self.query(&q)?),
            (Occur::Must, self.after_seq(seq)),
        ]));
        let top = TopDocs::with_limit(limit).order_by_fast_field::<u64>("seq", Order::Asc);
        let hits = self.reader.searcher().search(&query, &top)?;
        Ok(hits.into_iter().filter_map(|(seq, _)| seq).collect())
    }

    /// The documents ordered after `after`: an older `@timestamp`, or the
    /// same one and a higher seq.
    fn older_than(&self, after: After) -> Box<dyn Query> {
        let at = Term::from_field_date(self.fields.timestamp, date(after.timestamp_micros));
        let older: Box<dyn Query> = Box::new(RangeQuery::new(
            Bound::Unbounded,
            Bound::Excluded(at.clone()),
        ));
        let same_time: Box<dyn Query> = Box::new(RangeQuery::new(
            Bound::Included(at.clone()),
            Bound::Included(at),
        ));
        let later_seq: Box<dyn Query> = Box::new(RangeQuery::new(
            Bound::Excluded(Term::from_field_u64(self.fields.seq, after.seq)),
            Bound::Unbounded,
        ));
        Box::new(BooleanQuery::new(vec![
            (Occur::Should, older),
            (
                Occur::Should,
                Box::new(BooleanQuery::new(vec![
                    (Occur::Must, same_time),
                    (Occur::Must, later_seq),
                ])),
            ),
        ]))
    }

    /// The `top` most frequent values of `group_by` among the events matching
    /// `q` (its `after`/`limit` are ignored), by count descending then value.
    /// Counts are exact: every segment reports all its values.
    pub fn stats(&self, q: &SearchQuery, group_by: &str, top: usize) -> Result<Vec<Bucket>, Error> {
        let mut values = self.top_values(&self.reader.searcher(), q, &[group_by], top)?;
        values.pop().ok_or_else(unexpected_result)
    }

    /// Events matching `q` (its `after`/`limit` are ignored) counted per
    /// `interval`, in ascending time. Buckets are aligned to the interval in
    /// UTC (since the Unix epoch) and run from the first non-empty bucket to
    /// the last, with empty ones in between (count 0). Refused when that would
    /// be more than `MAX_TIME_BUCKETS` buckets.
    pub fn histogram(&self, q: &SearchQuery, interval: Interval) -> Result<Vec<TimeBucket>, Error> {
        self.histogram_in(&self.reader.searcher(), q, interval)
    }

    /// One searcher, so the span checked is the span counted.
    fn histogram_in(
        &self,
        searcher: &Searcher,
        q: &SearchQuery,
        interval: Interval,
    ) -> Result<Vec<TimeBucket>, Error> {
        let Some(histogram) = histogram_of(searcher, q, interval, &self.minutes, &self.spans)?
        else {
            return Ok(Vec::new());
        };
        let counts = searcher.search(&*self.query(q)?, &histogram)?;
        let (Some(first), Some(last)) = (
            counts.iter().position(|&n| n > 0),
            counts.iter().rposition(|&n| n > 0),
        ) else {
            return Ok(Vec::new());
        };
        (first..=last)
            .map(|i| {
                let start = histogram.first + i as i64 * histogram.width;
                Ok(TimeBucket {
                    start: DateTime::from_timestamp_micros(start).ok_or_else(unexpected_result)?,
                    count: counts[i],
                })
            })
            .collect()
    }

    /// A search page (the console's): the histogram of `q`'s hits over its
    /// range, their total (the histogram's sum: every event has a time),
    /// the page of `q` and the `top` values of each of `fields`.
    ///
    /// The histogram is one pass over the hits; the page and the top values
    /// then read only the newest stretch of it that holds enough hits, the
    /// two side by side on two threads. The page's stretch is the newest
    /// histogram buckets holding one more hit than the page (the hits
    /// outside are all older, so the page is the same as over the whole
    /// range). The top values are exact up to `sample` hits; past that they
    /// are those of the newest buckets holding at least `sample` hits, and
    /// [`View::top_of`] says how many and since when.
    pub fn view(
        &self,
        q: &SearchQuery,
        interval: Interval,
        fields: &[&str],
        top: usize,
        sample: u64,
    ) -> Result<View, Error> {
        let searcher = self.reader.searcher();
        let whole = SearchQuery {
            after: None,
            ..q.clone()
        };
        let buckets = self.histogram_in(&searcher, &whole, interval)?;
        let total = buckets.iter().map(|b| b.count).sum();
        // The newest buckets, from the last one up to the first that brings
        // the hits to `need`: where that stretch starts, and its hits.
        let newest = |up_to: Option<i64>, need: u64| {
            let mut hits = 0;
            for b in buckets.iter().rev() {
                let start = b.start.timestamp_micros();
                if up_to.is_some_and(|t| start > t) {
                    continue;
                }
                hits += b.count;
                if hits >= need {
                    let from = q.from.map_or(b.start, |f| f.max(b.start));
                    return (Some(from), hits);
                }
            }
            (q.from, hits)
        };
        // The bucket holding the cursor also holds newer hits: count only
        // the buckets before it.
        let page_need = q.limit as u64 + 1;
        let page_from = match q.after {
            None => newest(None, page_need).0,
            Some(after) => {
                let width = interval.millis() * 1000;
                let cursor_bucket = after.timestamp_micros.div_euclid(width) * width;
                let (from, _) = newest(Some(cursor_bucket - 1), page_need);
                from
            }
        };
        let (top_from, top_hits) = newest(None, sample);
        let top_of = match top_from {
            Some(from) if top_from != q.from => Some((top_hits, from)),
            _ => None,
        };
        let page_q = SearchQuery {
            from: page_from,
            ..q.clone()
        };
        let top_q = SearchQuery {
            from: top_from,
            ..whole
        };
        let (page, values) = std::thread::scope(|s| {
            let page = s.spawn(|| self.page_in(&searcher, &page_q));
            let values = self.top_values(&searcher, &top_q, fields, top);
            (page.join(), values)
        });
        let (seqs, more) = page.map_err(|_| unexpected_result())??;
        Ok(View {
            buckets,
            total,
            seqs,
            more,
            values: values?,
            top_of,
        })
    }

    /// The `top` values of each of `fields` among the hits of `q`, exact,
    /// in one pass.
    fn top_values(
        &self,
        searcher: &Searcher,
        q: &SearchQuery,
        fields: &[&str],
        top: usize,
    ) -> Result<Vec<Vec<Bucket>>, Error> {
        if !(1..=MAX_TOP).contains(&top) {
            return Err(Error::BadRequest(format!(
                "`top` must be between 1 and {MAX_TOP}, not {top}"
            )));
        }
        let fields: Vec<(String, Kind)> = fields
            .iter()
            .map(|&f| groupable_kind(f).map(|kind| (f.to_owned(), kind)))
            .collect::<Result<_, _>>()?;
        let kept_segments = self.totals.segments(searcher, time_only(q), &self.spans)?;
        let kept = fields
            .iter()
            .map(|field| self.totals.totals(searcher, &kept_segments, field))
            .collect::<Result<_, _>>()?;
        let values = TopValues {
            fields,
            top,
            kept,
            kept_segments,
        };
        Ok(searcher.search(&*self.query(q)?, &values)?)
    }
}

/// What [`EventIndex::view`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub buckets: Vec<TimeBucket>,
    /// Hits in the whole range.
    pub total: u64,
    /// The page, newest first, and whether another follows.
    pub seqs: Vec<u64>,
    pub more: bool,
    /// The top values of each field asked for, in order.
    pub values: Vec<Vec<Bucket>>,
    /// When the top values are of the newest hits only: how many, and
    /// the time they start at.
    pub top_of: Option<(u64, DateTime<Utc>)>,
}

/// Microseconds since the epoch as a tantivy date, clamped to what it
/// holds (nanoseconds in an i64: about the years 1678 to 2262): a time
/// outside, from a log line, a `from`/`to` or a cursor, neither overflows
/// nor panics, and sorts at the end of the range.
fn date(micros: i64) -> tantivy::DateTime {
    tantivy::DateTime::from_timestamp_micros(micros.clamp(i64::MIN / 1000, i64::MAX / 1000))
}

/// The fields `stats` can group by: the fast keyword and numeric fields.
fn groupable() -> impl Iterator<Item = &'static str> {
    KEYWORDS.iter().chain(NUMBERS.iter()).copied()
}

/// The time span (ms) a histogram of `q` can cover: the `@timestamp`
/// range of the indexed events (read from the columns' min and max, no
/// search), narrowed by the query's `from`/`to`. It bounds the bucket count
/// before the aggregation runs.
fn time_span(
    searcher: &Searcher,
    q: &SearchQuery,
    spans: &Spans,
) -> Result<Option<(i64, i64)>, Error> {
    let mut range: Option<(i64, i64)> = None;
    for segment in searcher.segment_readers() {
        if segment.num_docs() == 0 {
            continue;
        }
        let span = spans.of(segment)?;
        let (lo, hi) = (span.min, span.max);
        range = Some(range.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
    }
    let Some((mut lo, mut hi)) = range else {
        return Ok(None);
    };
    if let Some(from) = q.from {
        lo = lo.max(from.timestamp_micros());
    }
    if let Some(to) = q.to {
        hi = hi.min(to.timestamp_micros().saturating_sub(1));
    }
    Ok((lo <= hi).then(|| (lo.div_euclid(1_000), hi.div_euclid(1_000))))
}

/// How `group_by` is counted; refused when it cannot be grouped by.
fn groupable_kind(group_by: &str) -> Result<Kind, Error> {
    if KEYWORDS.contains(&group_by) {
        Ok(Kind::Keyword)
    } else if NUMBERS.contains(&group_by) {
        Ok(Kind::Number)
    } else {
        let allowed: Vec<_> = groupable().collect();
        Err(Error::BadRequest(format!(
            "cannot group by `{group_by}`: use one of {}",
            allowed.join(" ")
        )))
    }
}

/// The buckets of [`EventIndex::histogram`] over what `searcher` holds of
/// `q`'s range; none when that is empty. Refused past `MAX_TIME_BUCKETS`
/// buckets.
fn histogram_of<'a>(
    searcher: &Searcher,
    q: &SearchQuery,
    interval: Interval,
    minutes: &'a Minutes,
    spans: &'a Spans,
) -> Result<Option<Histogram<'a>>, Error> {
    let Some((first, last)) = time_span(searcher, q, spans)? else {
        return Ok(None);
    };
    let width = interval.millis();
    let buckets = last.div_euclid(width) - first.div_euclid(width) + 1;
    if buckets > MAX_TIME_BUCKETS {
        return Err(Error::BadRequest(format!(
            "the matching events span {buckets} intervals of {width} ms: at most {MAX_TIME_BUCKETS}, use a larger interval or a narrower time range"
        )));
    }
    Ok(Some(Histogram {
        first: first.div_euclid(width) * width * 1000,
        width: width * 1000,
        len: buckets as usize,
        time_only: time_only(q),
        minutes: (width % 60_000 == 0).then_some(minutes),
        spans,
    }))
}

/// When `q` has no text: its time range, which the counts can answer for
/// whole segments without searching them.
fn time_only(q: &SearchQuery) -> Option<TimeRange> {
    let has_text = q.text.as_deref().is_some_and(|t| !t.trim().is_empty());
    (!has_text).then(|| time_range(q))
}

/// `q`'s time range in microseconds, as the index holds times.
fn time_range(q: &SearchQuery) -> TimeRange {
    let micros = |t: DateTime<Utc>| date(t.timestamp_micros()).into_timestamp_micros();
    (q.from.map(micros), q.to.map(micros))
}

/// Queries that must all match: AllQuery when there are none.
fn all_of(mut clauses: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    match clauses.len() {
        0 => Box::new(AllQuery),
        1 => clauses.remove(0),
        _ => Box::new(BooleanQuery::new(
            clauses.into_iter().map(|c| (Occur::Must, c)).collect(),
        )),
    }
}

/// A query's weight, and, when it has a time range, the weight of the same
/// query without it: in a segment whose events all lie inside the range,
/// the range only costs (a term's count is then its document frequency,
/// not its postings walked alongside the range).
struct Weights {
    timed: Box<dyn Weight>,
    untimed: Option<Box<dyn Weight>>,
    range: TimeRange,
}

impl Weights {
    /// The weight to search `segment` with.
    fn of(&self, segment: &SegmentReader, spans: &Spans) -> tantivy::Result<&dyn Weight> {
        if let Some(untimed) = &self.untimed
            && segment.num_docs() > 0
            && spans.of(segment)?.inside(self.range)
        {
            return Ok(&**untimed);
        }
        Ok(&*self.timed)
    }
}

fn unexpected_result() -> Error {
    Error::Tantivy(tantivy::TantivyError::InternalError(
        "unexpected count result".to_owned(),
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
            w.add_document(index.document(e.clone())).unwrap();
        }
        w.commit().unwrap();
        index.reload().unwrap();
        (dir, index)
    }

    fn search(index: &EventIndex, q: SearchQuery) -> SearchPage {
        index.search(&SearchQuery { limit: 10, ..q }).unwrap()
    }

    /// The seqs of the first page of hits for the query `text`.
    fn hits(index: &EventIndex, text: &str) -> Vec<u64> {
        search(
            index,
            SearchQuery {
                text: Some(text.into()),
                ..Default::default()
            },
        )
        .seqs
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

    #[test]
    fn numbers_are_searched_from_their_columns() {
        // Ports and pids have no terms in the index; a query on them reads
        // the column and finds exactly what a term would.
        let events: Vec<Event> = (1..=300u64)
            .map(|seq| Event {
                source_port: (seq % 3 != 0).then_some(20 + (seq % 7) as u16),
                process_pid: Some(1000 + (seq % 50) as u32),
                ..event(seq, seq as i64, "Failed password")
            })
            .collect();
        let (_dir, index) = index_with(&events);
        let expect = |keep: &dyn Fn(&Event) -> bool| events.iter().filter(|e| keep(e)).count();
        let total = |text: &str| {
            index
                .search(&SearchQuery {
                    text: Some(text.into()),
                    limit: 1,
                    ..SearchQuery::default()
                })
                .unwrap()
                .total
        };
        assert_eq!(
            total("source.port:22"),
            expect(&|e| e.source_port == Some(22))
        );
        assert!(total("source.port:22") > 0);
        assert_eq!(
            total("source.port:[21 TO 23]"),
            expect(&|e| e.source_port.is_some_and(|p| (21..=23).contains(&p)))
        );
        assert_eq!(
            total("process.pid:1007 AND source.port:22"),
            expect(&|e| e.process_pid == Some(1007) && e.source_port == Some(22))
        );
        assert_eq!(
            total("NOT source.port:22"),
            expect(&|e| e.source_port != Some(22))
        );
        assert_eq!(
            total("password AND process.pid:1049"),
            expect(&|e| e.process_pid == Some(1049))
        );
        assert_eq!(total("destination.port:22"), 0);
        // Not a number: refused as before.
        let refused = index.search(&SearchQuery {
            text: Some("source.port:ssh".into()),
            limit: 1,
            ..SearchQuery::default()
        });
        assert!(matches!(refused, Err(Error::Query(_))));
        // Their hits page newest first, as any others.
        let page = index
            .search(&SearchQuery {
                text: Some("process.pid:1007".into()),
                limit: 10,
                ..SearchQuery::default()
            })
            .unwrap();
        assert_eq!(page.seqs, vec![257, 207, 157, 107, 57, 7]);
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
        // Paging does not apply to stats.
        let paged = SearchQuery {
            after: Some(After {
                timestamp_micros: 0,
                seq: 1,
            }),
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
        // One segment a commit.
        let mut w = index.writer_with_threads(1).unwrap();
        let mut seq = 0;
        let mut add = |w: &mut IndexWriter, user: &str| {
            seq += 1;
            let e = ev(seq, "2026-01-01T00:00:00Z", user, "h", None);
            w.add_document(index.document(e)).unwrap();
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

    /// The merge of top values across segments against a plain count:
    /// skewed values (a few frequent, many rare, some in a segment only)
    /// and near-uniform ones full of ties, numbers and keywords, several
    /// `top`s.
    #[test]
    fn stats_are_exact_whatever_the_distribution() {
        let mut random = crate::store::xorshift(0x9e37_79b9_7f4a_7c15);
        let mut next = move |n: u64| random() % n;
        for skewed in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let (index, _) = EventIndex::open(&dir.path().join("index")).unwrap();
            let mut w = index.writer().unwrap();
            let mut events = Vec::new();
            for seq in 1..=6_000u64 {
                let user = if skewed && next(4) > 0 {
                    // Heavy values, more in some segments than others.
                    format!("heavy{}", next(3 + seq / 2_000))
                } else {
                    format!("u{}", next(5_000))
                };
                let port = if skewed {
                    1 + next(40).pow(2)
                } else {
                    next(300)
                } as u16;
                let e = ev(seq, "2026-01-01T00:00:00Z", &user, "h", Some(port));
                events.push(e.clone());
                w.add_document(index.document(e)).unwrap();
                if seq % 1_500 == 0 {
                    w.commit().unwrap();
                }
            }
            w.commit().unwrap();
            index.reload().unwrap();
            assert!(index.reader.searcher().segment_readers().len() >= 4);
            let plain = |key: fn(&Event) -> String, top: usize| {
                let mut counts: std::collections::HashMap<String, u64> = Default::default();
                for e in &events {
                    *counts.entry(key(e)).or_default() += 1;
                }
                let mut all: Vec<(String, u64)> = counts.into_iter().collect();
                all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                all.truncate(top);
                all.into_iter()
                    .map(|(key, count)| Bucket { key, count })
                    .collect::<Vec<_>>()
            };
            for top in [1, 3, 10, 100, 1_000] {
                let user = |e: &Event| e.user_name.clone().unwrap();
                assert_eq!(
                    index.stats(&all(), "user.name", top).unwrap(),
                    plain(user, top),
                    "user.name top {top}, skewed {skewed}"
                );
                let got = index.stats(&all(), "source.port", top).unwrap();
                let counts: Vec<u64> = got.iter().map(|b| b.count).collect();
                let port = |e: &Event| e.source_port.unwrap().to_string();
                let want: Vec<u64> = plain(port, top).iter().map(|b| b.count).collect();
                // Numbers tie-break by value, not by their text.
                assert_eq!(counts, want, "source.port top {top}, skewed {skewed}");
                for b in got {
                    let n = events
                        .iter()
                        .filter(|e| e.source_port.unwrap().to_string() == b.key)
                        .count();
                    assert_eq!(b.count, n as u64, "port {}", b.key);
                }
            }
        }
    }

    /// Four segments an hour apart (50 events each, a minute apart), the
    /// last with its last ten events deleted, the second with a user name
    /// longer than a column holds; and the events left.
    fn four_hours() -> (tempfile::TempDir, EventIndex, Vec<Event>) {
        let dir = tempfile::tempdir().unwrap();
        let (mut index, _) = EventIndex::open(&dir.path().join("index")).unwrap();
        // Every segment's counts are kept, however small.
        index.minutes = Minutes::new(0);
        index.totals = KeptTotals::new(0, MAX_TOTALS_KIB);
        // One segment a commit.
        let mut w = index.writer_with_threads(1).unwrap();
        let long = "x".repeat(70_000);
        let mut events = Vec::new();
        for hour in 0..4u64 {
            for i in 0..50u64 {
                let seq = hour * 100 + i + 1;
                let user = match (hour, i) {
                    (1, 7) => long.clone(),
                    _ => format!("u{}", (i * i + hour) % 13),
                };
                let time = format!("2026-01-01T{hour:02}:{i:02}:{:02}Z", i % 60);
                let e = ev(seq, &time, &user, &format!("h{}", i % 3), Some(i as u16));
                events.push(e.clone());
                w.add_document(index.document(e)).unwrap();
            }
            w.commit().unwrap();
        }
        w.delete_query(index.after_seq(340)).unwrap();
        w.commit().unwrap();
        index.reload().unwrap();
        events.retain(|e| e.seq <= 340);
        (dir, index, events)
    }

    /// Queries with no text and time ranges cutting through, around and
    /// outside `four_hours`.
    fn ranges() -> Vec<SearchQuery> {
        let at = |t: &str| Some(utc(t));
        [
            (None, None),
            (at("2026-01-01T00:00:00Z"), at("2026-01-01T02:00:00Z")),
            (at("2026-01-01T00:30:00Z"), at("2026-01-01T03:10:00Z")),
            (None, at("2026-01-01T00:49:00Z")),
            (at("2026-01-01T05:00:00Z"), None),
        ]
        .into_iter()
        .map(|(from, to)| SearchQuery { from, to, ..all() })
        .collect()
    }

    /// Top values with totals kept (a query with no text, segments wholly
    /// inside its range, no deletion) against counts of the hits and a
    /// plain count.
    #[test]
    fn stats_from_kept_totals_are_the_counted_ones() {
        let (_d, mut index, events) = four_hours();
        assert_eq!(index.reader.searcher().segment_readers().len(), 4);
        for no_text in ranges() {
            let (from, to) = (no_text.from, no_text.to);
            let inside = |e: &&Event| {
                from.is_none_or(|f| e.timestamp >= f) && to.is_none_or(|t| e.timestamp < t)
            };
            // A column holds the first 65 535 bytes of a value.
            let user = |e: &Event| e.user_name.as_ref().unwrap().chars().take(65_535).collect();
            for (field, key) in [
                ("user.name", user as fn(&Event) -> String),
                ("host.name", |e: &Event| e.host_name.clone().unwrap()),
                ("source.port", |e: &Event| {
                    e.source_port.unwrap().to_string()
                }),
            ] {
                let mut plain: std::collections::HashMap<String, u64> = Default::default();
                for e in events.iter().filter(inside) {
                    *plain.entry(key(e)).or_default() += 1;
                }
                let mut all: Vec<Bucket> = plain
                    .into_iter()
                    .map(|(key, count)| Bucket { key, count })
                    .collect();
                all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
                let every_hit = SearchQuery {
                    text: Some("*".into()),
                    ..no_text.clone()
                };
                // Fewer than the values: the kept values outside the top
                // are left out of the sum.
                for top in [20, 3, 1] {
                    let want = &all[..top.min(all.len())];
                    let by_totals = index.stats(&no_text, field, top).unwrap();
                    let by_hits = index.stats(&every_hit, field, top).unwrap();
                    assert_eq!(by_totals, by_hits, "{field} {from:?}..{to:?} top {top}");
                    if field != "source.port" {
                        // Numbers tie-break by value, not by their text.
                        assert_eq!(by_totals, want, "{field} {from:?}..{to:?} top {top}");
                    }
                }
            }
        }
        // Per field, for each set of whole segments without deletions:
        // all three, the first two, the last two.
        assert_eq!(index.totals.len(), 3 * 3);
        // Totals too large to keep: counted per query.
        index.totals = KeptTotals::new(0, 0);
        let user = SearchQuery {
            text: Some("*".into()),
            ..all()
        };
        let want = index.stats(&user, "user.name", 5).unwrap();
        assert_eq!(index.stats(&all(), "user.name", 5).unwrap(), want);
        assert_eq!(index.totals.len(), 1);
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

    /// A segment whose events all lie inside a query's time range is
    /// searched without the range: totals and every page are those of the
    /// events themselves, for ranges cutting through, around and outside
    /// the segments (one with deleted events).
    #[test]
    fn a_range_is_left_out_only_where_every_event_lies_inside_it() {
        let (_d, index, events) = four_hours();
        type Matches = fn(&Event) -> bool;
        let texts: [(Option<&str>, Matches); 3] = [
            (None, |_| true),
            (Some("user.name:u1"), |e| {
                e.user_name.as_deref() == Some("u1")
            }),
            (Some("host.name:h2 OR user.name:u4"), |e| {
                e.host_name.as_deref() == Some("h2") || e.user_name.as_deref() == Some("u4")
            }),
        ];
        for range in ranges() {
            let (from, to) = (range.from, range.to);
            for (text, matches) in texts {
                let mut want: Vec<&Event> = events
                    .iter()
                    .filter(|e| {
                        from.is_none_or(|f| e.timestamp >= f)
                            && to.is_none_or(|t| e.timestamp < t)
                            && matches(e)
                    })
                    .collect();
                want.sort_by(|a, b| b.timestamp.cmp(&a.timestamp).then(a.seq.cmp(&b.seq)));
                let mut q = SearchQuery {
                    text: text.map(str::to_owned),
                    limit: 7,
                    ..range.clone()
                };
                let what = format!("{text:?} {from:?}..{to:?}");
                assert_eq!(index.count(&q).unwrap(), want.len(), "{what}");
                let mut seqs: Vec<u64> = Vec::new();
                loop {
                    let page = index.search(&q).unwrap();
                    assert_eq!(page.total, want.len(), "{what}");
                    seqs.extend(&page.seqs);
                    let Some(last) = page.seqs.last().filter(|_| page.more) else {
                        break;
                    };
                    let last = events.iter().find(|e| e.seq == *last).unwrap();
                    q.after = Some(After::of(last));
                }
                let want: Vec<u64> = want.iter().map(|e| e.seq).collect();
                assert_eq!(seqs, want, "{what}");
            }
        }
    }

    /// Histograms of a query with no text, whole segments counted from
    /// their kept minutes, against the same counted hit by hit.
    #[test]
    fn histograms_from_kept_minutes_are_the_counted_ones() {
        let (_d, index, events) = four_hours();
        for no_text in ranges() {
            let (from, to) = (no_text.from, no_text.to);
            for every in ["1m", "5m", "1h", "1d", "30s", "90s"] {
                let every_hit = SearchQuery {
                    text: Some("*".into()),
                    ..no_text.clone()
                };
                let by_minutes = index.histogram(&no_text, interval(every)).unwrap();
                let by_hits = index.histogram(&every_hit, interval(every)).unwrap();
                assert_eq!(by_minutes, by_hits, "{every} {from:?}..{to:?}");
                let inside = events
                    .iter()
                    .filter(|e| {
                        from.is_none_or(|f| e.timestamp >= f) && to.is_none_or(|t| e.timestamp < t)
                    })
                    .count();
                let total: u64 = by_minutes.iter().map(|b| b.count).sum();
                assert_eq!(total, inside as u64, "{every} {from:?}..{to:?}");
            }
        }
        // The three segments without deletions.
        assert_eq!(index.minutes.segments(), 3);
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
                seqs: vec![5, 4, 3, 2, 1],
                more: false,
            }
        );
        let page = |after| {
            index
                .search(&SearchQuery {
                    text: None,
                    after,
                    limit: 2,
                    ..Default::default()
                })
                .unwrap()
        };
        let after = |i: u64| Some(After::of(&events[i as usize - 1]));
        assert_eq!(
            page(None),
            SearchPage {
                total: 5,
                seqs: vec![5, 4],
                more: true,
            }
        );
        assert_eq!(
            page(after(4)),
            SearchPage {
                total: 5,
                seqs: vec![3, 2],
                more: true,
            }
        );
        assert_eq!(
            page(after(2)),
            SearchPage {
                total: 5,
                seqs: vec![1],
                more: false,
            }
        );
    }

    #[test]
    fn a_view_pages_like_search_and_takes_top_values_of_the_newest_hits() {
        // Three hours, one event a minute ("old" users the first two hours,
        // "new" the last), plus five more on the first second of 02:00 (a
        // bucket's edge), in two segments.
        let start = utc("2026-01-01T00:00:00Z");
        let mut events: Vec<Event> = (0..180)
            .map(|i| {
                let at = start + chrono::Duration::minutes(i);
                let user = if i < 120 { "old" } else { "new" };
                ev(i as u64 + 1, &at.to_rfc3339(), user, "h", None)
            })
            .collect();
        for k in 0..5 {
            events.push(ev(181 + k, "2026-01-01T02:00:00Z", "new", "h", None));
        }
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = EventIndex::open(&dir.path().join("index")).unwrap();
        let mut w = index.writer().unwrap();
        for (i, e) in events.iter().enumerate() {
            w.add_document(index.document(e.clone())).unwrap();
            if i == 100 {
                w.commit().unwrap();
            }
        }
        w.commit().unwrap();
        index.reload().unwrap();

        let q = |after| SearchQuery {
            from: Some(start),
            to: Some(start + chrono::Duration::hours(3)),
            after,
            limit: 7,
            ..SearchQuery::default()
        };
        let ten = interval("10m");
        // Every page, through the cursor, is the page `search` gives.
        let mut after = None;
        let mut seen = 0;
        loop {
            let view = index.view(&q(after), ten, &["user.name"], 5, 1000).unwrap();
            let page = index.search(&q(after)).unwrap();
            assert_eq!((&view.seqs, view.more), (&page.seqs, page.more));
            assert_eq!(view.total, 185);
            seen += view.seqs.len();
            let Some(last) = view.seqs.last() else { break };
            after = Some(After::of(&events[*last as usize - 1]));
            if !view.more {
                break;
            }
        }
        assert_eq!(seen, 185);

        // Up to the sample, the top values are exact; past it, those of the
        // newest whole buckets holding at least that many.
        let exact = index.view(&q(None), ten, &["user.name"], 5, 1000).unwrap();
        assert_eq!(exact.values, vec![buckets(&[("old", 120), ("new", 65)])]);
        assert_eq!(exact.top_of, None);
        let newest = index.view(&q(None), ten, &["user.name"], 5, 25).unwrap();
        assert_eq!(newest.values, vec![buckets(&[("new", 30)])]);
        assert_eq!(newest.top_of, Some((30, utc("2026-01-01T02:30:00Z"))));
        // No range: the whole index, the same way.
        let open = SearchQuery {
            limit: 7,
            ..SearchQuery::default()
        };
        let view = index.view(&open, ten, &["user.name"], 5, 25).unwrap();
        assert_eq!(view.seqs, index.search(&open).unwrap().seqs);
        assert_eq!(view.top_of, Some((30, utc("2026-01-01T02:30:00Z"))));
    }

    #[test]
    fn events_of_one_timestamp_page_in_seq_order_across_segments() {
        // Eleven events in the same microsecond, in two segments: the
        // order is seq ascending, and paging neither skips nor repeats.
        let dir = tempfile::tempdir().unwrap();
        let (index, _) = EventIndex::open(&dir.path().join("index")).unwrap();
        let mut w = index.writer().unwrap();
        for seq in [3, 9, 1, 7, 5, 11] {
            w.add_document(index.document(event(seq, 0, "x"))).unwrap();
        }
        w.commit().unwrap();
        for seq in [2, 10, 4, 8, 6] {
            w.add_document(index.document(event(seq, 0, "x"))).unwrap();
        }
        w.commit().unwrap();
        index.reload().unwrap();
        let mut seen: Vec<u64> = Vec::new();
        let mut after = None;
        loop {
            let page = index
                .search(&SearchQuery {
                    after,
                    limit: 3,
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(page.total, 11);
            seen.extend(&page.seqs);
            let Some(&last) = page.seqs.last() else { break };
            after = Some(After::of(&event(last, 0, "x")));
            if !page.more {
                break;
            }
        }
        assert_eq!(seen, (1..=11).collect::<Vec<u64>>());
    }

    #[test]
    fn a_cursor_far_past_the_end_is_an_empty_page_not_an_allocation() {
        let (_d, index) = index_with(&[event(1, 1, "x")]);
        for after in [
            After {
                timestamp_micros: i64::MIN,
                seq: 0,
            },
            After {
                timestamp_micros: i64::MAX,
                seq: u64::MAX,
            },
        ] {
            let page = index
                .search(&SearchQuery {
                    after: Some(after),
                    limit: 1000,
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(page.total, 1);
            assert!(page.seqs.len() <= 1);
        }
    }

    #[test]
    fn times_beyond_what_the_index_holds_are_clamped_not_overflowed() {
        let far = DateTime::<Utc>::from_timestamp(6_000_000_000_000, 0).unwrap();
        let before = DateTime::<Utc>::from_timestamp(-6_000_000_000_000, 0).unwrap();
        let mut e = event(1, 1, "x");
        e.timestamp = far;
        let (_d, index) = index_with(&[e, event(2, 2, "y")]);
        let q = SearchQuery {
            from: Some(before),
            to: Some(far),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(
            index.search(&q).unwrap().total,
            1,
            "`to` excludes the clamped end"
        );
        assert!(index.histogram(&q, interval("366d")).is_ok());
        assert!(index.stats(&q, "user.name", 10).is_ok());
    }

    #[test]
    fn long_and_deep_queries_are_refused_before_parsing() {
        let (_d, index) = index_with(&[event(1, 1, "a")]);
        let refused = |text: String| {
            let q = SearchQuery {
                text: Some(text),
                limit: 1,
                ..Default::default()
            };
            matches!(index.search(&q), Err(Error::QueryLimit(_)))
        };
        // The crash of issue 17: 300 000 nested parentheses.
        let deep = format!("{}a{}", "(".repeat(300_000), ")".repeat(300_000));
        assert!(refused(deep));
        let deep = format!(
            "{}a{}",
            "(".repeat(MAX_QUERY_DEPTH + 1),
            ")".repeat(MAX_QUERY_DEPTH + 1)
        );
        assert!(refused(deep));
        for prefix in ["-", "+", "NOT ", "!", "-(", "NOT ("] {
            assert!(
                refused(format!("{}a", prefix.repeat(MAX_QUERY_DEPTH + 1))),
                "{prefix}"
            );
        }
        assert!(refused("a ".repeat(MAX_QUERY_BYTES)));
        // A control byte in a JSON field's path (found by fuzzing: tantivy
        // asserts on it); tabs and newlines are whitespace.
        assert!(refused("labels.a\0b:1".into()));
        assert!(refused("fields.x\u{1}y:5".into()));
        assert!(!refused("host.name:web\tAND\nfailed".into()));
        // Within the limits, the parser answers (a result or its error).
        let ok = format!(
            "{}a{}",
            "(".repeat(MAX_QUERY_DEPTH),
            ")".repeat(MAX_QUERY_DEPTH)
        );
        assert!(!refused(ok));
        assert!(!refused(
            "NOTHING NOTE (a AND -b) \"((( inside quotes\"".into()
        ));
    }

    #[test]
    fn the_depth_scan_reads_quotes_regexes_and_ranges_as_the_grammar_does() {
        let deep = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
        let over = MAX_QUERY_DEPTH + 1;
        let refused = |text: &str| check_query(text, usize::MAX, MAX_QUERY_DEPTH).is_err();
        // A single-quoted `"` used to open a phrase for the scan and hide
        // the parentheses that tantivy parses.
        for text in [
            format!("'\"' {} '\"'", deep(over)),
            format!("'\"' {} '\"'", deep(300_000)),
            format!("\"'\" {} \"'\"", deep(over)),
            format!("f:'\"' AND {} AND g:'\"'", deep(over)),
            // A regex holding a quote: the quote is text.
            format!("/a\"b/ {} /c\"d/", deep(over)),
            format!("f:/\"/ {} x:/\"/", deep(over)),
            // A range bound may hold `'`.
            format!(">'a {} b'", deep(over)),
            format!("f:[a' TO b'] {} c'", deep(over)),
            // Escaped quotes are text.
            format!("\\\" {} \\\"", deep(over)),
            format!("\\' {} \\'", deep(over)),
            // A field name reads before a regex: `/x:(` is a group.
            format!("/x:{}/ ", deep(over)),
            // An unterminated phrase: everything counts.
            format!("\"{}", "(".repeat(over)),
        ] {
            let short: String = text.chars().take(30).collect();
            assert!(refused(&text), "{short}");
            assert!(query_depth(&text) > MAX_QUERY_DEPTH, "{short}");
        }
        // Text in phrases and regexes nests nothing.
        for text in [
            format!("\"{}\"", "(".repeat(1000)),
            format!("'{}'", "(".repeat(1000)),
            format!("'a \"{}\" b'", "(".repeat(1000)),
            format!("\"it's {}\"", ")(".repeat(1000)),
            format!("\"\\\"{}\"", "(".repeat(1000)),
            format!("/{}/", "(".repeat(1000)),
            format!("f:/a\\/{}/ b", "(".repeat(1000)),
            format!("(/\"/) {}", deep(MAX_QUERY_DEPTH - 1)),
            // A word ends at a quote and a phrase starts right there
            // (after the first term; the first must be followed by
            // whitespace, so here tantivy stops at the quote).
            format!("a\"b {} c\"", deep(over)),
            format!("x a\"b {} c\"", deep(MAX_QUERY_DEPTH - 1)),
        ] {
            let short: String = text.chars().take(30).collect();
            assert!(!refused(&text), "{short}");
        }
        assert_eq!(query_depth("a"), 0);
        assert_eq!(query_depth("\"a\""), 1);
        assert_eq!(query_depth("(a AND (b OR \"c\"))"), 3);
        assert_eq!(query_depth("-NOT +a"), 3);
        assert_eq!(query_depth("'\"' ((a)) '\"'"), 2);
        assert_eq!(query_depth("[1 TO 5] ((a))"), 2);
        assert_eq!(query_depth(">=5 AND f:<'x ((a))"), 2);
        // The shapes above are the grammar's: it reads each as one leaf.
        for text in [
            "'\"' a '\"'",
            "/a\"b/",
            "f:[a' TO b']",
            "f:>'x",
            "\"it's\"",
            "a OR 'b c'",
            "(/\"/)",
            "x a\"b ((a)) c\"",
        ] {
            assert!(tantivy::query_grammar::parse_query(text).is_ok(), "{text}");
        }
    }

    /// The second review's shapes: a quote, regex or range right after a
    /// word, a `)` or a phrase is read by tantivy (no whitespace needed
    /// between terms), so the scan must read it too, `n` groups deep.
    fn desync_shapes(n: usize) -> Vec<String> {
        let deep = format!("{}y{}", "(".repeat(n), ")".repeat(n));
        vec![
            format!("x a\" \"{deep} b\" \""),
            format!("x a' '{deep} b' '"),
            format!("x (a)\" \"{deep} b\" \""),
            format!("x \"a\"/ \"/ {deep} /\""),
            format!("x \"a\"/\"/ {deep} /\""),
            format!("x [a TO b]/ \"/ {deep} /\""),
            format!("x[a' TO b]{deep} '"),
            format!("x (a)/ '/ {deep} '"),
        ]
    }

    #[test]
    fn the_depth_scan_reads_terms_that_follow_without_whitespace() {
        let refused = |text: &str| check_query(text, usize::MAX, MAX_QUERY_DEPTH).is_err();
        for n in [MAX_QUERY_DEPTH + 1, 2_000] {
            for text in desync_shapes(n) {
                let short: String = text.chars().take(30).collect();
                assert!(query_depth(&text) >= n, "{short}");
                assert!(refused(&text), "{short}");
            }
        }
        // At the store's 64 KiB ceiling, refused by depth.
        for text in desync_shapes((MAX_QUERY_BYTES - 40) / 2) {
            assert!(text.len() <= MAX_QUERY_BYTES);
            let refused = check_query(&text, MAX_QUERY_BYTES, MAX_QUERY_DEPTH).unwrap_err();
            assert!(refused.to_string().contains("nest"), "{refused}");
        }
        // Each shape is what tantivy reads: a word, then a phrase, regex or
        // range right after it (shallow here, so it parses on any stack).
        for text in desync_shapes(3) {
            let ast = tantivy::query_grammar::parse_query(&text);
            if let Ok(ast) = ast {
                assert!(query_depth(&text) + 1 >= ast_depth(&ast), "{text}");
            }
        }
        assert!(tantivy::query_grammar::parse_query("x a\" \"((y)) b\" \"").is_ok());
    }

    /// How many clauses tantivy's AST nests (the whole query is one when it
    /// has more than one term: one more than the groups it parsed).
    fn ast_depth(ast: &tantivy::query_grammar::UserInputAst) -> usize {
        use tantivy::query_grammar::UserInputAst;
        match ast {
            UserInputAst::Clause(items) if items.is_empty() => 0,
            UserInputAst::Clause(items) => {
                1 + items
                    .iter()
                    .map(|(_, ast)| ast_depth(ast))
                    .max()
                    .unwrap_or(0)
            }
            UserInputAst::Boost(ast, _) => ast_depth(ast),
            UserInputAst::Leaf(_) => 0,
        }
    }

    /// Appends to `out` up to 4 terms, each a leaf or a group of terms
    /// (at most 8 deep), joined by whitespace, an operator or nothing (the
    /// grammar reads the next term right after a phrase, range or group);
    /// returns how deep its groups nest. The leaves are balanced and a
    /// regex is preceded by whitespace, so when tantivy parses the whole
    /// string, each group written is a group it parsed.
    fn grouped_query(next: &mut impl FnMut() -> u64, depth: usize, out: &mut String) -> usize {
        const LEAVES: &[&str] = &[
            "a",
            "x",
            "\" \"",
            "'a b'",
            "\"'\"",
            " /\"/ ",
            " / '/ ",
            "[a TO b]",
            "[a' TO b']",
            "\\\"",
            "a:b",
            "\"(\"",
            "'(('",
            "-a",
            "NOT a",
        ];
        const SEPARATORS: &[&str] = &[" ", "", "", " AND ", " OR "];
        let mut deepest = 0;
        for k in 0..1 + next() % 4 {
            if k > 0 {
                out.push_str(SEPARATORS[(next() % SEPARATORS.len() as u64) as usize]);
            }
            if depth < 8 && next().is_multiple_of(3) {
                out.push('(');
                deepest = deepest.max(1 + grouped_query(next, depth + 1, out));
                out.push(')');
            } else {
                out.push_str(LEAVES[(next() % LEAVES.len() as u64) as usize]);
            }
        }
        deepest
    }

    #[test]
    fn the_depth_scan_never_reads_fewer_groups_than_tantivy_parses() {
        // The scan before the second review read 17 of these shallower
        // than tantivy (a phrase or regex right after a word, `)` or phrase).
        let mut next = crate::store::xorshift(0x9e37_79b9_7f4a_7c15);
        let (mut parsed, mut nested) = (0, 0);
        for _ in 0..50_000 {
            let mut text = String::new();
            let groups = grouped_query(&mut next, 0, &mut text);
            if tantivy::query_grammar::parse_query(&text).is_err() {
                continue;
            }
            parsed += 1;
            if groups > 2 {
                nested += 1;
            }
            assert!(
                query_depth(&text) >= groups,
                "{text:?}: scan {} < {groups} groups",
                query_depth(&text)
            );
        }
        assert!(
            parsed > 10_000 && nested > 500,
            "{parsed} parsed, {nested} nested"
        );
    }

    #[test]
    fn the_depth_scan_never_reads_less_than_tantivy_nests() {
        // Strings over the characters that steer the scan, from a fixed
        // xorshift seed; whenever tantivy parses one, the scan's depth is
        // at least the nesting of the AST it built (less the clause of the
        // whole query).
        const ALPHABET: &[&str] = &[
            "(", ")", "\"", "'", "/", "a", ":", "[", "]", "{", "}", "\\", " ", "NOT ", "-", " TO ",
            "((", "))", " a ", "(a ", " a)", "\"a\"", "'a'",
        ];
        let mut next = crate::store::xorshift(0x9e37_79b9_7f4a_7c15);
        let (mut parsed, mut nested) = (0, 0);
        for _ in 0..200_000 {
            let len = 1 + (next() % 24) as usize;
            let text: String = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            let Ok(ast) = tantivy::query_grammar::parse_query(&text) else {
                continue;
            };
            parsed += 1;
            let depth = ast_depth(&ast);
            if depth > 1 {
                nested += 1;
            }
            assert!(
                query_depth(&text) + 1 >= depth,
                "{text:?}: scan {} < tantivy {depth}",
                query_depth(&text)
            );
        }
        assert!(
            parsed > 1_000 && nested > 50,
            "{parsed} parsed, {nested} nested"
        );
    }

    #[test]
    fn the_query_parser_survives_the_deepest_query_the_check_lets_through() {
        // Each shape at the largest length and depth the index accepts, on a
        // thread with the stack of a blocking-pool thread (2 MiB).
        let shapes = [
            format!(
                "{}a{}",
                "(".repeat(MAX_QUERY_DEPTH),
                ")".repeat(MAX_QUERY_DEPTH)
            ),
            format!("{}a", "-".repeat(MAX_QUERY_DEPTH)),
            format!("{}a", "NOT ".repeat(MAX_QUERY_DEPTH)),
            format!("{}a", "-(".repeat(MAX_QUERY_DEPTH / 2)),
            "a OR ".repeat(MAX_QUERY_BYTES / 5 - 1) + "a",
            "a AND NOT ".repeat(MAX_QUERY_BYTES / 10 - 1) + "a",
            "(a) ".repeat(MAX_QUERY_BYTES / 4),
            "\"a\" ".repeat(MAX_QUERY_BYTES / 4),
            "[a TO b] ".repeat(MAX_QUERY_BYTES / 9),
        ];
        // The second review's shapes, as deep as the check lets through.
        let shapes = shapes
            .into_iter()
            .chain(
                desync_shapes(MAX_QUERY_DEPTH - 1)
                    .into_iter()
                    .filter(|text| check_query(text, MAX_QUERY_BYTES, MAX_QUERY_DEPTH).is_ok()),
            )
            .chain(desync_shapes(MAX_QUERY_DEPTH - 2));
        let (_d, index) = index_with(&[event(1, 1, "a")]);
        let index = std::sync::Arc::new(index);
        for text in shapes {
            let index = index.clone();
            let short = text.chars().take(20).collect::<String>();
            std::thread::Builder::new()
                .stack_size(2 * 1024 * 1024)
                .spawn(move || {
                    let q = SearchQuery {
                        text: Some(text),
                        limit: 1,
                        ..Default::default()
                    };
                    let _ = index.search(&q);
                })
                .unwrap()
                .join()
                .unwrap_or_else(|_| panic!("{short}…"));
        }
    }

    #[test]
    fn terms_are_anded_and_keywords_are_fields() {
        let events = vec![
            event(1, 1, "Failed password"),
            event(2, 2, "Accepted password"),
        ];
        let (_d, index) = index_with(&events);
        let q = |t: &str| hits(&index, t);
        assert_eq!(q("password"), [2, 1]);
        assert_eq!(q("failed password"), [1]);
        assert_eq!(q("\"accepted password\""), [2]);
        assert_eq!(q("user.name:user1"), [1]);
        assert_eq!(q("password -user.name:user1"), [2]);
        assert_eq!(q("password AND NOT user.name:user1"), [2]);
        assert_eq!(q("failed OR (NOT user.name:user1)"), [2, 1]);
        // Only exclusions: everything else.
        assert_eq!(q("NOT user.name:user1"), [2]);
        assert_eq!(q("-user.name:user1 -failed"), [2]);
        assert_eq!(q("NOT (user.name:user1 OR accepted)"), Vec::<u64>::new());
    }

    /// Every value of an event is found by a query on its field: every
    /// kind of value, nested `fields` with an array, a number, a boolean
    /// and a date, labels, addresses.
    #[test]
    fn every_value_of_an_event_is_found_by_its_field() {
        let mut full = Event {
            host_name: Some("web1".into()),
            host_ip: Some("10.0.0.1".parse().unwrap()),
            source_ip: Some("203.0.113.9".parse().unwrap()),
            destination_ip: Some("2001:db8::1".parse().unwrap()),
            source_port: Some(40022),
            destination_port: Some(22),
            user_target_name: Some("admin".into()),
            process_name: Some("sshd".into()),
            process_pid: Some(4242),
            process_executable: Some("/usr/sbin/sshd".into()),
            process_command_line: Some("sshd -D -f /etc/ssh/sshd_config".into()),
            category: Some("authentication".into()),
            action: Some("ssh_login".into()),
            outcome: Some("failure".into()),
            severity: Some(4),
            dataset: Some("sshd".into()),
            original: Some("<38>Nov 1 00:00:00 web1 sshd[4242]: relayed by gateway7".into()),
            fields: serde_json::json!({
                "ssh": {"method": "password", "invalid_user": true, "tries": 3},
                "tags": ["alpha", "beta"],
                "seen": "2024-05-01T10:00:00Z",
            })
            .as_object()
            .unwrap()
            .clone(),
            ..event(1, 1, "Failed password for admin")
        };
        full.labels.insert("input".into(), "syslog_tcp".into());
        let events = [full, event(2, 2, "Accepted password for admin")];
        let (_d, index) = index_with(&events);
        for query in [
            "host.name:web1",
            "host.ip:10.0.0.1",
            "source.ip:203.0.113.9",
            "destination.ip:\"2001:db8::1\"",
            "source.port:40022",
            "destination.port:22",
            "process.pid:4242",
            "event.severity:4",
            "user.name:user1",
            "user.target.name:admin",
            "process.name:sshd",
            "process.executable:\"/usr/sbin/sshd\"",
            "process.command_line:sshd_config",
            "process.command_line:\"sshd -D\"",
            "event.category:authentication",
            "event.action:ssh_login",
            "event.outcome:failure",
            "event.dataset:sshd",
            "failed",
            "\"failed password\"",
            "log.original:gateway7",
            "log.original:\"relayed by gateway7\"",
            "labels.input:syslog_tcp",
            "fields.ssh.method:password",
            "fields.ssh.invalid_user:true",
            "fields.ssh.tries:3",
            "fields.tags:beta",
            "fields.seen:\"2024-05-01T10:00:00Z\"",
        ] {
            assert_eq!(hits(&index, query), [1], "{query}");
        }
        // The raw line of an event whose message ends it is not indexed
        // again: its words are the message's.
        assert_eq!(hits(&index, "log.original:accepted"), Vec::<u64>::new());
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
                seqs: vec![3, 2],
                more: false,
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

    /// Phrases answered from word pairs find exactly what positions find
    /// (`"..."~0` is the same phrase over positions: a `~` keeps it off
    /// the pairs), over real log lines: phrases of two to five words cut
    /// from the lines, unquoted words that split into several (an address,
    /// `key=value`), phrases in compound queries and phrases found nowhere.
    #[test]
    fn phrases_from_pairs_find_what_positions_find() {
        let mut lines = Vec::new();
        for set in ["OpenSSH", "Linux", "Apache"] {
            let path = format!("../shared/data/loghub-2.0/2k_dataset/{set}/{set}_2k.log");
            lines.extend(
                std::fs::read_to_string(path)
                    .unwrap()
                    .lines()
                    .map(str::to_owned),
            );
        }
        let events: Vec<Event> = lines
            .iter()
            .enumerate()
            .map(|(i, line)| event(i as u64 + 1, i as i64, line))
            .collect();
        let (_d, index) = index_with(&events);
        let mut random = crate::store::xorshift(0x2545_f491_4f6c_dd1d);
        let mut next = move |n: usize| (random() % n as u64) as usize;
        let mut queries = vec![
            "\"failed password\"".to_owned(),
            "\"password for invalid user\"".to_owned(),
            "user.name:root AND \"failed password\"".to_owned(),
            "\"failed password\" OR \"accepted password\"".to_owned(),
            "\"password failed\"".to_owned(),
            "\"no such phrase anywhere\"".to_owned(),
        ];
        for _ in 0..400 {
            let line = &lines[next(lines.len())];
            let words: Vec<&str> = line
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .collect();
            if words.len() < 2 {
                continue;
            }
            let n = 2 + next(4).min(words.len() - 2);
            let at = next(words.len() - n + 1);
            queries.push(format!("\"{}\"", words[at..at + n].join(" ")));
            // An unquoted token that splits into several words.
            if let Some(token) = line.split_whitespace().find(|t| {
                t.contains(['.', '=', ':', '-'])
                    && !t.contains([
                        '"', '(', ')', '[', ']', '{', '}', '^', '~', '+', '*', '\\', '!', '<', '>',
                        '\'',
                    ])
            }) {
                let token = token.trim_matches(|c: char| !c.is_alphanumeric());
                if token
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                    .count()
                    > 1
                {
                    // Over positions: the same words, quoted.
                    queries.push(format!("{}\t\"{token}\"", token.replace(':', "\\:")));
                }
            }
        }
        let mut found = 0;
        for query in &queries {
            let (text, over_positions) = query.split_once('\t').unwrap_or((query, query));
            let with = |text: String| SearchQuery {
                text: Some(text),
                limit: 20,
                ..all()
            };
            let pairs = index.search(&with(text.to_owned()));
            let positions = index.search(&with(format!("{over_positions}~0")));
            let (pairs, positions) = match (pairs, positions) {
                (Ok(a), Ok(b)) => (a, b),
                (a, b) => panic!("{text}: {a:?} / {b:?}"),
            };
            assert_eq!(pairs, positions, "{text}");
            found += usize::from(pairs.total > 0);
        }
        assert!(
            queries.len() > 600 && found > 500,
            "{found} of {}",
            queries.len()
        );
        // (Excluding a phrase over positions trips a debug assertion of
        // tantivy's phrase scorer, so this one is checked by its total.)
        let total = |text: &str| {
            let q = SearchQuery {
                text: Some(text.into()),
                ..all()
            };
            index.search(&q).unwrap().total
        };
        assert_eq!(
            total("NOT \"failed password\""),
            events.len() - total("\"failed password\"")
        );
    }

    #[test]
    fn index_with_an_older_schema_is_replaced_by_a_fresh_one() {
        // As written before the keyword fields were fast fields.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        std::fs::create_dir_all(&path).unwrap();
        let mut old = Schema::builder();
        old.add_u64_field("seq", tantivy::schema::INDEXED | FAST);
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
        w.add_document(index.document(event(7, 1, "x"))).unwrap();
        let mut prepared = w.prepare_commit().unwrap();
        prepared.set_payload("7");
        prepared.commit().unwrap();
        assert_eq!(index.committed_seq().unwrap(), 7);
    }
}
