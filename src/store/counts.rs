//! Counting hits by value and by time: the collectors behind the index's
//! `stats`, `histogram` and the console's top values.
//!
//! Both read the fast-field columns a block of hits at a time, each
//! segment on its own thread. A histogram counts into a fixed array of
//! buckets. Top values count per term ordinal within a segment (no string
//! is touched while counting); still on the segment's thread, the values
//! that were hit are read from the segment's dictionary; the segments'
//! counts are then summed per value and the most frequent kept. Counts are
//! exact.
//!
//! A query with no text matches every event of a segment whose times lie
//! inside its range. Large segments matched whole are what such queries
//! (a dashboard's "top addresses", "events per hour") read again and
//! again, and a segment never changes: their counts are kept, per minute
//! for histograms ([`Minutes`]) and per value for top values
//! ([`KeptTotals`]), and only the other segments are read per query.
//! Each segment's oldest and newest time are kept too ([`Spans`]): what
//! searches order segments by and check ranges against.

use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Cardinality, Column, StrColumn};
use tantivy::index::SegmentId;
use tantivy::query::{AllQuery, EnableScoring, Query, Weight};
use tantivy::{DocId, Score, Searcher, SegmentOrdinal, SegmentReader};

use super::index::Bucket;

/// Hits counted per interval of `@timestamp`: `width` microseconds wide,
/// the first starting at `first` (aligned), `len` of them; a hit outside
/// is not counted.
pub struct Histogram<'a> {
    pub first: i64,
    pub width: i64,
    pub len: usize,
    /// When the query has no text: its time range (a segment wholly inside
    /// it, without deletions, is matched whole).
    pub time_only: Option<TimeRange>,
    /// Where large segments' per-minute counts are kept, when `width` is
    /// whole minutes.
    pub minutes: Option<&'a Minutes>,
    /// Where the segments' time bounds are kept.
    pub spans: &'a Spans,
}

/// A time range in microseconds since the epoch: from (included), to
/// (excluded), either open.
pub type TimeRange = (Option<i64>, Option<i64>);

/// A segment's `@timestamp` bounds (microseconds), deleted events
/// included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub min: i64,
    pub max: i64,
    /// Every event has a `@timestamp`.
    pub full: bool,
}

impl Span {
    /// Every event has a time inside `range`.
    pub fn inside(&self, (from, to): TimeRange) -> bool {
        self.full && from.is_none_or(|from| from <= self.min) && to.is_none_or(|to| self.max < to)
    }
}

/// Each segment's [`Span`], read once. Opening a segment's `@timestamp`
/// column reads the whole index of its blocks, which in a large segment
/// costs more than a term search's own work; a search that orders the
/// segments or checks them against a range needs only the bounds.
pub struct Spans(moka::sync::Cache<SegmentId, Span>);

/// The most segments whose spans are kept (tantivy merges an index into
/// far fewer).
const MAX_SPANS: u64 = 4096;

impl Default for Spans {
    fn default() -> Spans {
        Spans(
            moka::sync::Cache::builder()
                .max_capacity(MAX_SPANS)
                .time_to_idle(KEPT_IDLE)
                .build(),
        )
    }
}

impl Spans {
    /// The span of `segment` (which holds at least one document).
    pub fn of(&self, segment: &SegmentReader) -> tantivy::Result<Span> {
        let id = segment.segment_id();
        if let Some(span) = self.0.get(&id) {
            return Ok(span);
        }
        let times = segment.fast_fields().date("@timestamp")?;
        let span = Span {
            min: times.min_value().into_timestamp_micros(),
            max: times.max_value().into_timestamp_micros(),
            full: times.index.get_cardinality() == Cardinality::Full,
        };
        self.0.insert(id, span);
        Ok(span)
    }
}

/// A segment's events per minute: the minute's start (microseconds since
/// the epoch) and the count.
type SegmentMinutes = Arc<[(i64, u64)]>;

/// A microsecond timestamp's minute, in microseconds.
const MINUTE: i64 = 60_000_000;
/// The most minutes one segment is kept with (a year of events every
/// minute): a segment spread wider is counted hit by hit.
const MAX_SEGMENT_MINUTES: usize = 1 << 19;
/// The most minutes kept over all segments: 16 MiB.
const MAX_MINUTES: u64 = 1 << 20;
/// Kept counts nobody asked for this long are dropped: those of segments
/// merged away, or of a dashboard closed.
const KEPT_IDLE: Duration = Duration::from_secs(600);

/// Large segments' events counted per minute of `@timestamp`, each read
/// once (a segment never changes). A histogram of a query with no text,
/// in whole minutes, adds these up for a segment with no deleted event
/// whose times lie inside its range, instead of reading its column again.
pub struct Minutes {
    /// None: the segment's times are spread over too many minutes.
    segments: moka::sync::Cache<SegmentId, Option<SegmentMinutes>>,
    /// Smaller segments are read every time: cheap, and they come and go
    /// with every commit.
    min_docs: u32,
}

impl Minutes {
    pub fn new(min_docs: u32) -> Minutes {
        Minutes {
            segments: moka::sync::Cache::builder()
                .max_capacity(MAX_MINUTES)
                .time_to_idle(KEPT_IDLE)
                .weigher(|_, minutes: &Option<SegmentMinutes>| {
                    minutes.as_ref().map_or(1, |m| m.len().max(1) as u32)
                })
                .build(),
            min_docs,
        }
    }

    /// How many segments are kept.
    #[cfg(test)]
    pub fn segments(&self) -> u64 {
        self.segments.run_pending_tasks();
        self.segments.entry_count()
    }
}

/// The events of `times` (every event of a segment) counted per minute;
/// None past `MAX_SEGMENT_MINUTES`. Times mostly come in order, so a run
/// of one minute is counted before it reaches the map.
fn count_minutes(times: &Column<tantivy::DateTime>) -> Option<SegmentMinutes> {
    let mut minutes: FxHashMap<i64, u64> = FxHashMap::default();
    let mut run = (i64::MIN, 0);
    let mut chunk = vec![tantivy::DateTime::default(); 4096];
    let rows = times.values.num_vals();
    let mut start = 0;
    while start < rows {
        let len = (rows - start).min(chunk.len() as u32);
        let chunk = &mut chunk[..len as usize];
        times.values.get_range(u64::from(start), chunk);
        for t in chunk.iter() {
            let minute = t.into_timestamp_micros().div_euclid(MINUTE) * MINUTE;
            if minute == run.0 {
                run.1 += 1;
                continue;
            }
            if run.1 > 0 {
                *minutes.entry(run.0).or_default() += run.1;
                if minutes.len() > MAX_SEGMENT_MINUTES {
                    return None;
                }
            }
            run = (minute, 1);
        }
        start += len;
    }
    if run.1 > 0 {
        *minutes.entry(run.0).or_default() += run.1;
    }
    Some(minutes.into_iter().collect())
}

/// Whether a query with no text and the time range `time_only` matches
/// every event of `segment`: the segment has no deleted event and every
/// event a time inside the range.
fn matches_whole(
    time_only: Option<TimeRange>,
    segment: &SegmentReader,
    spans: &Spans,
) -> tantivy::Result<bool> {
    let Some((from, to)) = time_only else {
        return Ok(false);
    };
    if segment.has_deletes() {
        return Ok(false);
    }
    if (from, to) == (None, None) || segment.num_docs() == 0 {
        return Ok(true);
    }
    Ok(spans.of(segment)?.inside((from, to)))
}

/// The hits of `weight` in `segment` into `collector`, without scores:
/// tantivy's own loop (not public).
fn collect_hits<C: SegmentCollector>(
    weight: &dyn Weight,
    segment: &SegmentReader,
    collector: &mut C,
) -> tantivy::Result<()> {
    match segment.alive_bitset() {
        Some(alive) => weight.for_each_no_score(segment, &mut |docs| {
            for &doc in docs {
                if alive.is_alive(doc) {
                    collector.collect(doc, 0.0);
                }
            }
        }),
        None => weight.for_each_no_score(segment, &mut |docs| collector.collect_block(docs)),
    }
}

pub struct HistogramSegment {
    column: Column<tantivy::DateTime>,
    buckets: Buckets,
    values: Vec<Option<tantivy::DateTime>>,
    times: Vec<tantivy::DateTime>,
}

/// One segment's counts per bucket.
struct Buckets {
    spec: (i64, i64, usize),
    counts: Vec<u64>,
    /// The bucket the last hit fell in: `[start, end)` and its index (hits
    /// come in doc order, mostly time order, so most fall in the same one).
    last: (i64, i64, usize),
}

impl Collector for Histogram<'_> {
    type Fruit = Vec<u64>;
    type Child = HistogramSegment;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<Self::Child> {
        Ok(HistogramSegment {
            column: segment.fast_fields().date("@timestamp")?,
            buckets: self.buckets(),
            values: Vec::new(),
            times: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    /// As tantivy's own, but a segment whose minutes are kept is counted
    /// from them.
    fn collect_segment(
        &self,
        weight: &dyn Weight,
        segment_ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<Vec<u64>> {
        match self.minutes_of(reader)? {
            Some(minutes) => {
                let mut buckets = self.buckets();
                for &(minute, n) in minutes.iter() {
                    buckets.count_n(minute, n);
                }
                Ok(buckets.counts)
            }
            None => {
                let mut child = self.for_segment(segment_ord, reader)?;
                collect_hits(weight, reader, &mut child)?;
                Ok(child.harvest())
            }
        }
    }

    fn merge_fruits(&self, fruits: Vec<Vec<u64>>) -> tantivy::Result<Vec<u64>> {
        let mut total = vec![0; self.len];
        for fruit in fruits {
            for (sum, n) in total.iter_mut().zip(fruit) {
                *sum += n;
            }
        }
        Ok(total)
    }
}

impl Histogram<'_> {
    fn buckets(&self) -> Buckets {
        Buckets {
            spec: (self.first, self.width, self.len),
            counts: vec![0; self.len],
            last: (0, 0, 0),
        }
    }

    /// The per-minute counts of `segment`, when it is kept (or worth
    /// keeping) and matched whole.
    fn minutes_of(&self, segment: &SegmentReader) -> tantivy::Result<Option<SegmentMinutes>> {
        let Some(minutes) = self.minutes else {
            return Ok(None);
        };
        if segment.num_docs() < minutes.min_docs
            || !matches_whole(self.time_only, segment, self.spans)?
        {
            return Ok(None);
        }
        if let Some(kept) = minutes.segments.get(&segment.segment_id()) {
            return Ok(kept);
        }
        let counted = count_minutes(&segment.fast_fields().date("@timestamp")?);
        minutes
            .segments
            .insert(segment.segment_id(), counted.clone());
        Ok(counted)
    }
}

impl HistogramSegment {
    fn count(&mut self, micros: i64) {
        self.buckets.count_n(micros, 1);
    }
}

impl Buckets {
    /// `n` hits at `micros`.
    fn count_n(&mut self, micros: i64, n: u64) {
        let (start, end, i) = self.last;
        if start <= micros && micros < end {
            self.counts[i] += n;
            return;
        }
        let (first, width, len) = self.spec;
        if micros < first {
            return;
        }
        let i = (micros - first) / width;
        if i < len as i64 {
            let start = first + i * width;
            self.last = (start, start + width, i as usize);
            self.counts[i as usize] += n;
        }
    }
}

impl SegmentCollector for HistogramSegment {
    type Fruit = Vec<u64>;

    fn collect(&mut self, doc: DocId, _: Score) {
        if let Some(t) = self.column.first(doc) {
            self.count(t.into_timestamp_micros());
        }
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        // A run of consecutive docs (every doc, or a time range) is read as
        // the run of values its docs hold, not doc by doc.
        if let Some(run) = run_of(docs) {
            let rows = self.column.index.docid_range_to_rowids(run);
            let mut times = std::mem::take(&mut self.times);
            times.resize(rows.len(), tantivy::DateTime::default());
            self.column
                .values
                .get_range(u64::from(rows.start), &mut times);
            for t in &times {
                self.count(t.into_timestamp_micros());
            }
            self.times = times;
            return;
        }
        let mut values = std::mem::take(&mut self.values);
        values.resize(docs.len(), None);
        self.column.first_vals(docs, &mut values);
        for t in values.iter().flatten() {
            self.count(t.into_timestamp_micros());
        }
        self.values = values;
    }

    fn harvest(self) -> Vec<u64> {
        self.buckets.counts
    }
}

/// `docs` (ascending) as a range, when they are consecutive.
fn run_of(docs: &[DocId]) -> Option<std::ops::Range<DocId>> {
    match (docs.first(), docs.last()) {
        (Some(&lo), Some(&hi)) if (hi - lo) as usize + 1 == docs.len() => Some(lo..hi + 1),
        _ => None,
    }
}

/// Whether a groupable field is a keyword (a dictionary-encoded column) or
/// a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Keyword,
    Number,
}

/// The `top` most frequent values of each of `fields`, exact, in one pass.
pub struct TopValues {
    pub fields: Vec<(String, Kind)>,
    pub top: usize,
    /// Per field, the totals of the segments in `kept_segments`, when
    /// kept: those segments are not read for that field.
    pub kept: Vec<Option<Arc<Totals>>>,
    /// Sorted.
    pub kept_segments: Vec<SegmentOrdinal>,
}

/// One field's column in one segment.
enum FieldColumn {
    /// Counts per term ordinal.
    Keyword(StrColumn, Vec<u64>),
    /// Counts per value.
    Number(Column<u64>, FxHashMap<u64, u64>),
    /// The segment has no value of the field, or its totals are kept.
    Missing,
}

pub struct TopValuesSegment {
    columns: Vec<FieldColumn>,
    values: Vec<Option<u64>>,
    run_values: Vec<u64>,
}

/// Where a column's values are counted.
enum Counts<'a> {
    /// By term ordinal (below the dictionary's size).
    Dense(&'a mut Vec<u64>),
    /// By number.
    Sparse(&'a mut FxHashMap<u64, u64>),
}

impl Counts<'_> {
    fn add(self, values: impl Iterator<Item = u64>) {
        match self {
            Counts::Dense(counts) => {
                for v in values {
                    if let Some(n) = counts.get_mut(v as usize) {
                        *n += 1;
                    }
                }
            }
            Counts::Sparse(counts) => {
                for v in values {
                    *counts.entry(v).or_default() += 1;
                }
            }
        }
    }
}

/// One field's counts in one segment.
pub enum SegmentValues {
    /// The keyword values hit, in the dictionary's (byte) order: value `i`
    /// is `bytes[ends[i - 1]..ends[i]]`, hit `counts[i]` times.
    Keywords {
        bytes: Vec<u8>,
        ends: Vec<usize>,
        counts: Vec<u64>,
    },
    Numbers(FxHashMap<u64, u64>),
}

impl SegmentValues {
    fn keywords(&self) -> impl Iterator<Item = (&[u8], u64)> {
        let (bytes, ends, counts) = match self {
            SegmentValues::Keywords {
                bytes,
                ends,
                counts,
            } => (bytes.as_slice(), ends.as_slice(), counts.as_slice()),
            SegmentValues::Numbers(_) => (&[][..], &[][..], &[][..]),
        };
        let starts = std::iter::once(0).chain(ends.iter().copied());
        starts
            .zip(ends)
            .zip(counts)
            .map(move |((start, &end), &n)| (&bytes[start..end], n))
    }
}

impl Collector for TopValues {
    /// Per field, its buckets: count descending, then value ascending.
    type Fruit = Vec<Vec<Bucket>>;
    type Child = TopValuesSegment;

    fn for_segment(
        &self,
        segment_ord: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<Self::Child> {
        let fast = segment.fast_fields();
        let kept_segment = self.kept_segments.binary_search(&segment_ord).is_ok();
        let mut columns = Vec::with_capacity(self.fields.len());
        for ((name, kind), kept) in self.fields.iter().zip(&self.kept) {
            if kept_segment && kept.is_some() {
                columns.push(FieldColumn::Missing);
                continue;
            }
            columns.push(match kind {
                Kind::Keyword => match fast.str(name)? {
                    Some(column) => {
                        let counts = vec![0; column.num_terms()];
                        FieldColumn::Keyword(column, counts)
                    }
                    None => FieldColumn::Missing,
                },
                Kind::Number => match fast.column_opt::<u64>(name)? {
                    Some(column) => FieldColumn::Number(column, FxHashMap::default()),
                    None => FieldColumn::Missing,
                },
            });
        }
        Ok(TopValuesSegment {
            columns,
            values: Vec::new(),
            run_values: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    /// As tantivy's own, but a segment with nothing to read (every field
    /// kept) is not searched.
    fn collect_segment(
        &self,
        weight: &dyn Weight,
        segment_ord: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<Vec<std::io::Result<SegmentValues>>> {
        let mut child = self.for_segment(segment_ord, reader)?;
        let missing = |c: &FieldColumn| matches!(c, FieldColumn::Missing);
        if !child.columns.iter().all(missing) {
            collect_hits(weight, reader, &mut child)?;
        }
        Ok(child.harvest())
    }

    /// `fruits` is per segment, per field.
    fn merge_fruits(
        &self,
        fruits: Vec<Vec<std::io::Result<SegmentValues>>>,
    ) -> tantivy::Result<Vec<Vec<Bucket>>> {
        let mut per_field: Vec<Vec<SegmentValues>> =
            self.fields.iter().map(|_| Vec::new()).collect();
        for segment in fruits {
            for (field, values) in per_field.iter_mut().zip(segment) {
                field.push(values?);
            }
        }
        Ok(per_field
            .iter()
            .zip(&self.kept)
            .map(|(segments, kept)| {
                let (numbers, keywords) = sum(segments, kept.as_deref(), self.top);
                top_of(numbers, keywords, self.top)
            })
            .collect())
    }
}

impl SegmentCollector for TopValuesSegment {
    type Fruit = Vec<std::io::Result<SegmentValues>>;

    fn collect(&mut self, doc: DocId, _: Score) {
        self.collect_block(&[doc]);
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        // A run of consecutive docs (every doc, or a time range) is read as
        // the run of values its docs hold, not doc by doc.
        let run = run_of(docs);
        let mut values = std::mem::take(&mut self.values);
        let mut run_values = std::mem::take(&mut self.run_values);
        for column in &mut self.columns {
            let (column, counts) = match column {
                FieldColumn::Keyword(column, counts) => (column.ords(), Counts::Dense(counts)),
                FieldColumn::Number(column, counts) => (&*column, Counts::Sparse(counts)),
                FieldColumn::Missing => continue,
            };
            match &run {
                Some(run) => {
                    let rows = column.index.docid_range_to_rowids(run.clone());
                    run_values.resize(rows.len(), 0);
                    column
                        .values
                        .get_range(u64::from(rows.start), &mut run_values);
                    counts.add(run_values.iter().copied());
                }
                None => {
                    values.resize(docs.len(), None);
                    column.first_vals(docs, &mut values);
                    counts.add(values.iter().flatten().copied());
                }
            }
        }
        self.values = values;
        self.run_values = run_values;
    }

    fn harvest(self) -> Vec<std::io::Result<SegmentValues>> {
        self.columns
            .into_iter()
            .map(|column| match column {
                FieldColumn::Keyword(column, all) => {
                    let hit: Vec<u64> = (0..)
                        .zip(&all)
                        .filter(|(_, n)| **n > 0)
                        .map(|(ord, _)| ord)
                        .collect();
                    let counts = hit.iter().map(|&ord| all[ord as usize]).collect();
                    let mut bytes = Vec::new();
                    let mut ends = Vec::with_capacity(hit.len());
                    column.dictionary().sorted_ords_to_term_cb(&hit, |term| {
                        bytes.extend_from_slice(term);
                        ends.push(bytes.len());
                    })?;
                    Ok(SegmentValues::Keywords {
                        bytes,
                        ends,
                        counts,
                    })
                }
                FieldColumn::Number(_, counts) => Ok(SegmentValues::Numbers(counts)),
                FieldColumn::Missing => Ok(SegmentValues::Numbers(FxHashMap::default())),
            })
            .collect()
    }
}

/// Every value of one field counted over a set of segments.
pub struct Totals {
    /// The values and their counts in value order (numbers by value,
    /// keywords by their bytes); a field is either, the other is empty.
    numbers: Vec<(u64, u64)>,
    keywords: Vec<(Box<[u8]>, u64)>,
    /// Indexes into the one that is not empty, most frequent first (count
    /// descending, then value).
    ranked: Vec<usize>,
    /// About what they hold, in KiB.
    kib: u32,
}

impl Totals {
    fn new(numbers: FxHashMap<u64, u64>, keywords: FxHashMap<&[u8], u64>, kib: u32) -> Totals {
        let mut numbers: Vec<(u64, u64)> = numbers.into_iter().collect();
        numbers.sort_unstable();
        let mut keywords: Vec<(Box<[u8]>, u64)> = keywords
            .into_iter()
            .map(|(k, n)| (Box::from(k), n))
            .collect();
        keywords.sort_unstable();
        let mut ranked: Vec<usize> = (0..numbers.len().max(keywords.len())).collect();
        if keywords.is_empty() {
            ranked.sort_unstable_by(|&a, &b| numbers[b].1.cmp(&numbers[a].1).then(a.cmp(&b)));
        } else {
            ranked.sort_unstable_by(|&a, &b| keywords[b].1.cmp(&keywords[a].1).then(a.cmp(&b)));
        }
        Totals {
            numbers,
            keywords,
            ranked,
            kib,
        }
    }

    fn number(&self, value: u64) -> u64 {
        self.numbers
            .binary_search_by_key(&value, |&(v, _)| v)
            .map_or(0, |i| self.numbers[i].1)
    }

    fn keyword(&self, value: &[u8]) -> u64 {
        self.keywords
            .binary_search_by(|(k, _)| (**k).cmp(value))
            .map_or(0, |i| self.keywords[i].1)
    }
}

/// Each field's totals over the large segments a query with no text
/// matches whole, kept per set of such segments: the segments a stats
/// query reads again and again, which change only when they are merged.
/// Only the newer, smaller segments (and those at the edges of a time
/// range, or with deleted events) are read per query.
pub struct KeptTotals {
    /// None: too many values to keep.
    totals: moka::sync::Cache<(String, Vec<SegmentId>), Option<Arc<Totals>>>,
    min_docs: u32,
    /// The most memory one field's totals over one set of segments are
    /// kept in (KiB).
    max_kib: usize,
}

/// The most memory all kept totals take (KiB).
const MAX_KEPT_KIB: u64 = 32 * 1024;

impl KeptTotals {
    pub fn new(min_docs: u32, max_kib: usize) -> KeptTotals {
        KeptTotals {
            totals: moka::sync::Cache::builder()
                .max_capacity(MAX_KEPT_KIB)
                .time_to_idle(KEPT_IDLE)
                .weigher(|_, totals: &Option<Arc<Totals>>| {
                    totals.as_ref().map_or(1, |t| t.kib.max(1))
                })
                .build(),
            min_docs,
            max_kib,
        }
    }

    /// The segments of `searcher` whose totals are kept for a query with
    /// no text and the time range `time_only`, sorted.
    pub fn segments(
        &self,
        searcher: &Searcher,
        time_only: Option<TimeRange>,
        spans: &Spans,
    ) -> tantivy::Result<Vec<SegmentOrdinal>> {
        let mut kept = Vec::new();
        for (ord, segment) in (0..).zip(searcher.segment_readers()) {
            if segment.num_docs() >= self.min_docs && matches_whole(time_only, segment, spans)? {
                kept.push(ord);
            }
        }
        Ok(kept)
    }

    /// The totals of `field` over `segments` of `searcher` (each matched
    /// whole, none with deleted events), counted on first use; None when
    /// there are too many values to keep.
    pub fn totals(
        &self,
        searcher: &Searcher,
        segments: &[SegmentOrdinal],
        field: &(String, Kind),
    ) -> tantivy::Result<Option<Arc<Totals>>> {
        if segments.is_empty() {
            return Ok(None);
        }
        let readers = searcher.segment_readers();
        let ids = segments
            .iter()
            .map(|&ord| readers[ord as usize].segment_id())
            .collect();
        self.totals
            .try_get_with((field.0.clone(), ids), || {
                let count = TopValues {
                    fields: vec![field.clone()],
                    top: 1,
                    kept: vec![None],
                    kept_segments: Vec::new(),
                };
                let every = AllQuery.weight(EnableScoring::disabled_from_searcher(searcher))?;
                let mut values = Vec::with_capacity(segments.len());
                for &ord in segments {
                    let mut fruit = count.collect_segment(&*every, ord, &readers[ord as usize])?;
                    values.push(fruit.pop().ok_or_else(|| {
                        tantivy::TantivyError::InternalError("no counts".to_owned())
                    })??);
                }
                let (numbers, keywords) = sum(&values, None, 0);
                // A value, its count, its rank and a box: about 32 bytes.
                let bytes = 32 * (numbers.len() + keywords.len())
                    + keywords.keys().map(|k| k.len()).sum::<usize>();
                if bytes > self.max_kib * 1024 {
                    return Ok(None);
                }
                Ok(Some(Arc::new(Totals::new(
                    numbers,
                    keywords,
                    (bytes / 1024) as u32,
                ))))
            })
            .map_err(|e: Arc<tantivy::TantivyError>| (*e).clone())
    }

    /// How many sets of totals are kept.
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.totals.run_pending_tasks();
        self.totals.entry_count()
    }
}

/// The counts of `segments` summed, with `kept`'s: for the values the
/// segments hold, their total; of the others, only the `top` most frequent
/// in `kept`, the only ones that can be among the `top` of the sum (a
/// request reads a few small segments, not the tens of thousands of values
/// kept).
fn sum<'a>(
    segments: &'a [SegmentValues],
    kept: Option<&'a Totals>,
    top: usize,
) -> (FxHashMap<u64, u64>, FxHashMap<&'a [u8], u64>) {
    let mut numbers: FxHashMap<u64, u64> = FxHashMap::default();
    let mut keywords: FxHashMap<&[u8], u64> = FxHashMap::default();
    for segment in segments {
        match segment {
            SegmentValues::Numbers(counts) => {
                for (&v, &n) in counts {
                    *numbers.entry(v).or_default() += n;
                }
            }
            SegmentValues::Keywords { .. } => {
                for (k, n) in segment.keywords() {
                    *keywords.entry(k).or_default() += n;
                }
            }
        }
    }
    let Some(kept) = kept else {
        return (numbers, keywords);
    };
    for (&v, n) in &mut numbers {
        *n += kept.number(v);
    }
    for (k, n) in &mut keywords {
        *n += kept.keyword(k);
    }
    let mut untouched = 0;
    for &i in &kept.ranked {
        if untouched == top {
            break;
        }
        let added = match kept.keywords.get(i) {
            Some((k, n)) => insert_new(&mut keywords, &**k, *n),
            None => insert_new(&mut numbers, kept.numbers[i].0, kept.numbers[i].1),
        };
        untouched += usize::from(added);
    }
    (numbers, keywords)
}

/// Puts `key` in `map` with `n` unless it is there; whether it was not.
fn insert_new<K: Eq + std::hash::Hash>(map: &mut FxHashMap<K, u64>, key: K, n: u64) -> bool {
    match map.entry(key) {
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(n);
            true
        }
        std::collections::hash_map::Entry::Occupied(_) => false,
    }
}

/// The `top` values: count descending, then value ascending (numbers by
/// value, keywords by their bytes). A field is either; the other map is
/// empty.
fn top_of(
    numbers: FxHashMap<u64, u64>,
    keywords: FxHashMap<&[u8], u64>,
    top: usize,
) -> Vec<Bucket> {
    let mut numbers: Vec<(u64, u64)> = numbers.into_iter().collect();
    let mut keywords: Vec<(&[u8], u64)> = keywords.into_iter().collect();
    let best_numbers = most_frequent(&mut numbers, top);
    let best_keywords = most_frequent(&mut keywords, top);
    best_numbers
        .iter()
        .map(|(v, n)| Bucket {
            key: v.to_string(),
            count: *n,
        })
        .chain(best_keywords.iter().map(|(k, n)| Bucket {
            key: String::from_utf8_lossy(k).into_owned(),
            count: *n,
        }))
        .collect()
}

/// The `top` most frequent of `counts`, count descending then value
/// ascending.
fn most_frequent<K: Ord + Copy>(counts: &mut [(K, u64)], top: usize) -> &[(K, u64)] {
    let order = |a: &(K, u64), b: &(K, u64)| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0));
    let top = top.min(counts.len());
    if top < counts.len() {
        counts.select_nth_unstable_by(top, order);
    }
    let best = &mut counts[..top];
    best.sort_unstable_by(order);
    best
}
