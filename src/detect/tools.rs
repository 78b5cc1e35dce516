//! `secmon rules check` and `secmon rules test`: the rule loader and the
//! engine without a daemon.

use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Detector;
use super::rules::{self, FieldMapping, Problem, Source};
use crate::config::Detection;
use crate::model::Event;
use crate::parse::{self, ParseOptions, RawRecord};

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub files: usize,
    pub rules: usize,
    pub correlations: usize,
    pub filters: usize,
    pub rejected: Vec<String>,
    pub warnings: Vec<String>,
    /// Rejections by reason (the reason's first words), most frequent first.
    pub reasons: Vec<(String, usize)>,
}

/// The field mapping of `cfg` and the pipeline that applies it.
pub(crate) fn mapping(cfg: &Detection) -> Result<(FieldMapping, rsigma_eval::Pipeline), String> {
    let mapping = FieldMapping::shipped(&cfg.field_mapping)?;
    let pipeline = mapping.pipeline(&cfg.placeholders)?;
    Ok((mapping, pipeline))
}

/// Loads the rules under `paths` as the daemon would, and reports.
pub fn check(paths: &[PathBuf], cfg: &Detection) -> Result<CheckReport, String> {
    let (sources, unreadable) = rules::read_paths(paths);
    let (mapping, pipeline) = mapping(cfg)?;
    let set = rules::load(&sources, &mapping, &pipeline);
    let rejected: Vec<&Problem> = unreadable.iter().chain(&set.rejected).collect();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for p in &rejected {
        let short: String = p.reason.chars().take(60).collect();
        *reasons.entry(short).or_default() += 1;
    }
    let mut reasons: Vec<(String, usize)> = reasons.into_iter().collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
    Ok(CheckReport {
        files: set.files,
        rules: set.rules.len(),
        correlations: set.correlations.len(),
        filters: set.filters.len(),
        rejected: rejected.iter().map(ToString::to_string).collect(),
        warnings: set.warnings.iter().map(ToString::to_string).collect(),
        reasons,
    })
}

/// One hit of a back-test.
#[derive(Debug, Serialize)]
pub struct TestHit {
    pub rule_id: String,
    pub rule_title: String,
    pub severity: &'static str,
    pub correlation: bool,
    pub group_key: BTreeMap<String, String>,
    pub timestamp: DateTime<Utc>,
    /// The event's seq (stored events) or line number (a file).
    pub event: u64,
    /// The stored event's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<ulid::Ulid>,
    pub message: String,
}

/// The events of an NDJSON or syslog file, parsed as ingest would.
pub fn read_events(path: &Path) -> Result<Vec<Event>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let opts = ParseOptions::default();
    let mut events = Vec::new();
    for (i, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut event = parse::parse(
            &RawRecord {
                bytes: line,
                source: "file",
                peer: None,
                received_at: Utc::now(),
            },
            &opts,
        );
        event.seq = i as u64 + 1;
        events.push(event);
    }
    Ok(events)
}

/// Runs the rules of `rule_file` (with the built-in pack, which its
/// correlations may build on) over `events`, raising nothing; returns the
/// hits of `rule_file`'s rules only.
pub fn backtest(
    rule_file: &Path,
    events: &[Event],
    cfg: &Detection,
) -> Result<Vec<TestHit>, String> {
    let (own, unreadable) = rules::read_paths(&[rule_file.to_owned()]);
    if let Some(p) = unreadable.first() {
        return Err(p.to_string());
    }
    let context = if cfg.builtin {
        rules::builtin()
    } else {
        Vec::new()
    };
    let (mapping, pipeline) = mapping(cfg)?;
    let mut test = Backtest::new(own, context, &mapping, &pipeline).map_err(|p| p.to_string())?;
    let mut hits = Vec::new();
    for chunk in events.chunks(4096) {
        hits.extend(test.run(chunk));
    }
    Ok(hits)
}

/// Rules under test, evaluated over events without raising alerts.
pub struct Backtest {
    detector: Detector,
    /// The ids of the rules under test (hits of the others are dropped).
    ids: HashSet<String>,
}

impl Backtest {
    /// Compiles the rules of `own` with those of `context` (the rules its
    /// correlations build on; an `own` rule replaces one with its id). The
    /// first problem with an `own` rule is an error.
    pub fn new(
        own: Vec<Source>,
        context: Vec<Source>,
        mapping: &FieldMapping,
        pipeline: &rsigma_eval::Pipeline,
    ) -> Result<Backtest, Problem> {
        let files: HashSet<String> = own.iter().map(|s| s.name.clone()).collect();
        let mut sources = context;
        sources.extend(own);
        let set = rules::load(&sources, mapping, pipeline);
        if let Some(p) = set.rejected.iter().find(|p| files.contains(&p.file)) {
            return Err(p.clone());
        }
        let own = |file: &String| files.contains(file);
        let ids = set
            .rules
            .iter()
            .filter(|r| own(&r.file))
            .map(|r| rules::rule_id(r.rule.id.as_deref(), &r.rule.title))
            .chain(
                set.correlations
                    .iter()
                    .filter(|c| own(&c.file))
                    .map(|c| rules::rule_id(c.rule.id.as_deref(), &c.rule.title)),
            )
            .collect();
        let detector = Detector::new(&set).map_err(|reason| Problem {
            file: String::new(),
            line: None,
            column: None,
            rule: None,
            reason,
        })?;
        Ok(Backtest { detector, ids })
    }

    /// Evaluates the next `events` (in order: correlation windows carry
    /// over from one call to the next); the hits of the rules under test.
    pub fn run(&mut self, events: &[Event]) -> Vec<TestHit> {
        let mut hits = Vec::new();
        for u in self.detector.evaluate(events) {
            if !self.ids.contains(&u.rule_id) {
                continue;
            }
            let e = &events[u.event];
            hits.push(TestHit {
                rule_id: u.rule_id,
                rule_title: u.rule_title,
                severity: u.severity,
                correlation: u.correlation,
                group_key: u.group_key.into_iter().collect(),
                timestamp: e.timestamp,
                event: e.seq,
                event_id: (!e.id.is_nil()).then_some(e.id),
                message: e.message.clone(),
            });
        }
        hits
    }
}

/// Stored events with `from <= @timestamp < to`, in seq order (the data dir
/// must not be in use by a daemon).
pub fn stored_events(
    data_dir: &Path,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<Vec<Event>, String> {
    let store = crate::store::Store::open(data_dir).map_err(|e| e.to_string())?;
    let from = from.unwrap_or(DateTime::<Utc>::MIN_UTC);
    let to = to.unwrap_or(DateTime::<Utc>::MAX_UTC);
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let scan = store
            .events_between(from, to, after, 8192)
            .map_err(|e| e.to_string())?;
        out.extend(scan.events);
        match scan.next {
            Some(next) => after = next,
            None => return Ok(out),
        }
    }
}
