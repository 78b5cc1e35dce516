//! The tantivy full-text index over events. Derived from redb: it stores
//! only what search needs (terms, `@timestamp` and `seq` as fast fields) and
//! search results are loaded from redb by seq.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery};
use tantivy::schema::{
    DateOptions, DateTimePrecision, FAST, Field, INDEXED, JsonObjectOptions, STRING, Schema, TEXT,
    TextFieldIndexing,
};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term,
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
    #[error("cannot prepare index directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Keyword fields: indexed verbatim (case-sensitive), searchable as `name:value`.
const KEYWORDS: &[&str] = &[
    "id",
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
    let seq = b.add_u64_field("seq", INDEXED | FAST);
    let timestamp = b.add_date_field(
        "@timestamp",
        DateOptions::from(INDEXED)
            .set_fast()
            .set_precision(DateTimePrecision::Microseconds),
    );
    let message = b.add_text_field("message", TEXT);
    let original = b.add_text_field("log.original", TEXT);
    let command_line = b.add_text_field("process.command_line", TEXT);
    let source_port = b.add_u64_field("source.port", INDEXED);
    let destination_port = b.add_u64_field("destination.port", INDEXED);
    let pid = b.add_u64_field("process.pid", INDEXED);
    let severity = b.add_u64_field("event.severity", INDEXED);
    let labels = b.add_json_field(
        "labels",
        JsonObjectOptions::default()
            .set_indexing_options(TextFieldIndexing::default().set_tokenizer("raw")),
    );
    let fields = b.add_json_field("fields", TEXT);
    let keywords = KEYWORDS
        .iter()
        .map(|name| b.add_text_field(name, STRING))
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
        if let Some(v) = &e.original {
            doc.add_text(f.original, v);
        }
        if let Some(v) = &e.process_command_line {
            doc.add_text(f.command_line, v);
        }
        let ip = |v: &Option<std::net::IpAddr>| v.map(|ip| ip.to_string());
        let keyword_values = [
            Some(e.id.to_string()),
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

    pub fn search(&self, q: &SearchQuery) -> Result<SearchPage, Error> {
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
        let query: Box<dyn Query> = match clauses.len() {
            0 => Box::new(AllQuery),
            1 => clauses.remove(0).1,
            _ => Box::new(BooleanQuery::new(clauses)),
        };
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
