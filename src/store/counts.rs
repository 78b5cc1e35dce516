//! Counting hits by value and by time: the collectors behind the index's
//! `stats`, `histogram` and the console's top values.
//!
//! Both read the fast-field columns a block of hits at a time, each
//! segment on its own thread. A histogram counts into a fixed array of
//! buckets. Top values count per term ordinal within a segment (no string
//! is touched while counting); still on the segment's thread, the values
//! that were hit are read from the segment's dictionary in its order
//! (sorted, into one buffer); the segments' sorted lists are then merged,
//! summing equal values, and the most frequent kept. Counts are exact.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

use super::index::Bucket;

/// Hits counted per interval of `@timestamp`: `width` microseconds wide,
/// the first starting at `first` (aligned), `len` of them; a hit outside
/// is not counted.
pub struct Histogram {
    pub first: i64,
    pub width: i64,
    pub len: usize,
}

pub struct HistogramSegment {
    column: Column<tantivy::DateTime>,
    spec: (i64, i64, usize),
    counts: Vec<u64>,
    /// The bucket the last hit fell in: `[start, end)` and its index (hits
    /// come in doc order, mostly time order, so most fall in the same one).
    last: (i64, i64, usize),
    values: Vec<Option<tantivy::DateTime>>,
    times: Vec<tantivy::DateTime>,
}

impl Collector for Histogram {
    type Fruit = Vec<u64>;
    type Child = HistogramSegment;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<Self::Child> {
        Ok(HistogramSegment {
            column: segment.fast_fields().date("@timestamp")?,
            spec: (self.first, self.width, self.len),
            counts: vec![0; self.len],
            last: (0, 0, 0),
            values: Vec::new(),
            times: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
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

impl HistogramSegment {
    fn count(&mut self, micros: i64) {
        let (start, end, i) = self.last;
        if start <= micros && micros < end {
            self.counts[i] += 1;
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
            self.counts[i as usize] += 1;
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
        self.counts
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
}

/// One field's column in one segment.
enum FieldColumn {
    /// Counts per term ordinal.
    Keyword(StrColumn, Vec<u64>),
    /// Counts per value.
    Number(Column<u64>, FxHashMap<u64, u64>),
    /// The segment has no value of the field.
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
    fn keyword(&self, i: usize) -> &[u8] {
        match self {
            SegmentValues::Keywords { bytes, ends, .. } => {
                let start = if i == 0 { 0 } else { ends[i - 1] };
                &bytes[start..ends[i]]
            }
            SegmentValues::Numbers(_) => &[],
        }
    }
}

impl Collector for TopValues {
    /// Per field, its buckets: count descending, then value ascending.
    type Fruit = Vec<Vec<Bucket>>;
    type Child = TopValuesSegment;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<Self::Child> {
        let fast = segment.fast_fields();
        let mut columns = Vec::with_capacity(self.fields.len());
        for (name, kind) in &self.fields {
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
            .map(|segments| merge_top(segments, self.top))
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

/// The `top` values over all segments: count descending, then value
/// ascending (numbers by value, keywords by their bytes).
fn merge_top(segments: &[SegmentValues], top: usize) -> Vec<Bucket> {
    let mut numbers: FxHashMap<u64, u64> = FxHashMap::default();
    // The keyword lists are sorted: merge them, summing equal values.
    let mut keywords: Vec<(&[u8], u64)> = Vec::new();
    let mut heads = BinaryHeap::new();
    for (s, segment) in segments.iter().enumerate() {
        match segment {
            SegmentValues::Numbers(counts) => {
                for (&v, &n) in counts {
                    *numbers.entry(v).or_default() += n;
                }
            }
            SegmentValues::Keywords { ends, .. } => {
                if !ends.is_empty() {
                    heads.push(Reverse((segment.keyword(0), s, 0)));
                }
            }
        }
    }
    while let Some(Reverse((key, s, i))) = heads.pop() {
        let SegmentValues::Keywords { ends, counts, .. } = &segments[s] else {
            continue;
        };
        match keywords.last_mut() {
            Some((last, total)) if *last == key => *total += counts[i],
            _ => keywords.push((key, counts[i])),
        }
        if i + 1 < ends.len() {
            heads.push(Reverse((segments[s].keyword(i + 1), s, i + 1)));
        }
    }
    let mut numbers: Vec<(u64, u64)> = numbers.into_iter().collect();
    let best_numbers = most_frequent(&mut numbers, top);
    let best_keywords = most_frequent(&mut keywords, top);
    // A field is either; the other list is empty.
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
