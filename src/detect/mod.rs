//! Detection: Sigma rules (the `rsigma` crates) evaluated on every event
//! before it is committed.
//!
//! - [`rules`] loads the built-in pack and rule folders, renames Sigma's
//!   field names to secmon's through the field mapping, and says why each
//!   rejected rule was rejected.
//! - Rules are routed by logsource to the datasets they can match; one
//!   compiled engine per dataset, so an sshd event never meets an auditd or
//!   web rule (and the engine's own candidate index prefilters within).
//! - [`adapter`] shows an [`Event`] to the engine without copying it.
//! - Correlation rules run in the crate's correlation engine, fed with the
//!   detections; their windows live in memory and are rebuilt after a
//!   restart by replaying the stored events of the longest timespan (on the
//!   writer thread, before its first batch: start-up does not wait for it,
//!   ingest does).

pub mod adapter;
pub mod rules;
pub mod tools;

use std::collections::HashMap;

use rsigma_eval::{CorrelationConfig, CorrelationEngine, Engine, EvaluationResult, ResultBody};

use crate::model::{AlertUpdate, Event};
use crate::store::Store;

/// Most events replayed into the correlation windows at start-up.
pub const MAX_REPLAY: u64 = 1_000_000;
use adapter::SigmaEvent;
use rules::RuleSet;

/// The compiled rules and the correlation state.
pub struct Detector {
    /// Per dataset (`""`: events without a known one).
    engines: HashMap<&'static str, Engine>,
    correlation: Option<CorrelationEngine>,
    pub rules: usize,
    pub correlations: usize,
    /// The longest correlation window, in seconds.
    pub longest_timespan: u64,
}

impl Detector {
    /// Compiles `set` (already validated by [`rules::load`]).
    pub fn new(set: &RuleSet) -> Result<Detector, String> {
        let mut engines = HashMap::new();
        for (dataset, indexes) in rules::routes(&set.rules) {
            let mut engine = Engine::new();
            let failed = engine.add_rules(indexes.iter().map(|&i| &set.rules[i].rule));
            if let Some((i, e)) = failed.first() {
                return Err(format!("rule {}: {e}", set.rules[indexes[*i]].rule.title));
            }
            engines.insert(dataset, engine);
        }
        let correlation = if set.correlations.is_empty() {
            None
        } else {
            let mut engine = CorrelationEngine::new(CorrelationConfig {
                timestamp_fields: vec!["@timestamp".into()],
                // Rules marked `generate: false` (the base rules of a
                // correlation) raise no alert of their own.
                emit_detections: false,
                ..CorrelationConfig::default()
            });
            engine
                .add_collection(&set.collection())
                .map_err(|e| format!("correlation rules: {e}"))?;
            Some(engine)
        };
        Ok(Detector {
            engines,
            correlation,
            rules: set.rules.len(),
            correlations: set.correlations.len(),
            longest_timespan: set.longest_timespan(),
        })
    }

    /// The rules matching `event`, through the engine of its dataset.
    fn detect(&self, event: &Event) -> Vec<EvaluationResult> {
        let dataset = event.dataset.as_deref().unwrap_or("");
        let engine = self.engines.get(dataset).or_else(|| self.engines.get(""));
        engine.map_or_else(Vec::new, |e| e.evaluate(&SigmaEvent(event)))
    }

    /// Evaluates a batch in order; correlation windows advance.
    pub fn evaluate(&mut self, events: &[Event]) -> Vec<AlertUpdate> {
        let mut hits = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let detections = self.detect(event);
            let results = match &mut self.correlation {
                Some(c) => c.process_with_detections(
                    &SigmaEvent(event),
                    detections,
                    event.timestamp.timestamp(),
                ),
                None => detections,
            };
            hits.extend(results.into_iter().map(|r| update(i, event, r)));
        }
        hits
    }

    /// Takes over the correlation windows of `old` (a reload): windows of
    /// correlations that kept their id carry on; the others start empty.
    pub fn take_state_of(&mut self, old: &Detector) {
        if let (Some(new), Some(old)) = (&mut self.correlation, &old.correlation)
            && !new.import_state(old.export_state())
        {
            tracing::warn!("correlation state could not be carried over the reload");
        }
    }

    /// Rebuilds the correlation windows after a restart: feeds the stored
    /// events of the last `longest_timespan` (by event time, the newest
    /// [`MAX_REPLAY`] at most) to them, in order, raising nothing.
    pub fn rebuild_windows(&mut self, store: &Store) -> Result<u64, crate::store::Error> {
        if self.longest_timespan == 0 || self.correlation.is_none() {
            return Ok(0);
        }
        let since = chrono::Utc::now()
            - chrono::Duration::seconds(
                i64::try_from(self.longest_timespan).unwrap_or(i64::MAX / 2),
            );
        let last = store.stats()?.last_seq;
        const CHUNK: u64 = 8192;
        // Walk back a chunk at a time until a whole chunk is older than `since`.
        let mut from = last + 1;
        while from > 1 && last + 1 - from < MAX_REPLAY {
            let start = from.saturating_sub(CHUNK).max(1);
            let chunk = store.scan_from(start, (from - start) as usize)?;
            from = start;
            if chunk.iter().all(|e| e.timestamp < since) {
                break;
            }
        }
        let mut replayed = 0;
        let mut next = from;
        while next <= last {
            let events = store.scan_from(next, CHUNK as usize)?;
            let Some(end) = events.last().map(|e| e.seq) else {
                break;
            };
            let recent: Vec<_> = events
                .into_iter()
                .filter(|e| e.timestamp >= since)
                .collect();
            replayed += recent.len() as u64;
            self.replay(&recent);
            next = end + 1;
        }
        Ok(replayed)
    }

    /// Feeds stored events to the correlation windows without raising
    /// anything: how the windows are rebuilt after a restart.
    pub fn replay(&mut self, events: &[Event]) {
        if self.correlation.is_none() {
            return;
        }
        for event in events {
            let detections = self.detect(event);
            if let Some(c) = &mut self.correlation {
                c.process_with_detections(
                    &SigmaEvent(event),
                    detections,
                    event.timestamp.timestamp(),
                );
            }
        }
    }
}

fn update(index: usize, event: &Event, result: EvaluationResult) -> AlertUpdate {
    let header = result.header;
    let (group_key, correlation) = match result.body {
        ResultBody::Correlation(body) => (body.group_key, true),
        ResultBody::Detection(_) => {
            let mut key = Vec::new();
            for (name, value) in [
                ("host.name", event.host_name.clone()),
                ("source.ip", event.source_ip.map(|ip| ip.to_string())),
                ("user.name", event.user_name.clone()),
            ] {
                if let Some(v) = value {
                    key.push((name.to_owned(), v));
                }
            }
            (key, false)
        }
    };
    AlertUpdate {
        event: index,
        rule_id: header.rule_id.unwrap_or_else(|| header.rule_title.clone()),
        rule_title: header.rule_title,
        severity: header.level.map_or("medium", |l| l.as_str()),
        tags: header.tags,
        group_key,
        correlation,
    }
}
