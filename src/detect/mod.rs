//! Detection: Sigma rules (the `rsigma` crates) evaluated on every event
//! before it is committed.
//!
//! - [`rules`] loads the built-in pack and rule folders, renames Sigma's
//!   field names to secmon's through the field mapping, and says why each
//!   rejected rule was rejected.
//! - Rules are routed by logsource to the datasets they can match, so an
//!   sshd event never meets an auditd or web rule. Within a dataset,
//!   [`prefilter`] evaluates a rule only when one of its literals occurs in
//!   the event; the rules it cannot prune stay in the crate's engine.
//! - [`adapter`] shows an [`Event`] to the engine without copying it.
//! - Correlation rules run in the crate's correlation engine, fed with the
//!   detections; their windows live in memory and are rebuilt by replaying
//!   the stored events of the longest timespan after a restart (on the
//!   writer thread, before its first batch: start-up does not wait for it,
//!   ingest does) and after a failed commit.

pub mod adapter;
pub mod catalog;
pub mod locate;
pub mod prefilter;
pub mod rules;
pub mod tools;

use std::cell::RefCell;
use std::collections::HashMap;

use rsigma_eval::{CorrelationConfig, CorrelationEngine, Engine, EvaluationResult, ResultBody};
use rsigma_parser::SigmaCollection;

use adapter::SigmaEvent;
use rules::RuleSet;

use crate::model::{AlertUpdate, Event};
use crate::store::Store;

/// Most events replayed into the correlation windows at start-up.
pub const MAX_REPLAY: u64 = 1_000_000;
/// Most entries one group's correlation window keeps (the newest); a rule
/// may set its own with the `rsigma.max_group_entries` attribute.
pub const MAX_GROUP_ENTRIES: usize = 10_000;

/// The rules routed to one dataset.
struct DatasetRules {
    /// Rules the prefilter cannot skip, in the crate's engine (its own
    /// candidate index skips rules about fields an event lacks).
    always: Engine,
    /// Rules evaluated only when one of their literals occurs in the event.
    prefiltered: prefilter::Prefiltered,
}

/// An engine with the rules `indexes` of `set`, and its filters.
fn engine(set: &RuleSet, indexes: &[usize]) -> Result<Engine, String> {
    let mut engine = Engine::new();
    let failed = engine.add_rules(indexes.iter().map(|&i| &set.rules[i].rule));
    if let Some((i, e)) = failed.first() {
        return Err(format!("rule {}: {e}", set.rules[indexes[*i]].rule.title));
    }
    for filter in &set.filters {
        engine
            .apply_filter(&filter.rule)
            .map_err(|e| format!("filter {}: {e}", filter.rule.title))?;
    }
    Ok(engine)
}

/// The compiled rules and the correlation state.
pub struct Detector {
    /// Per dataset (`""`: events without a known one).
    datasets: HashMap<&'static str, DatasetRules>,
    /// The prefilter's scratch buffer.
    scratch: RefCell<String>,
    correlation: Option<Correlations>,
    /// What `correlation` was built from, to start it over.
    collection: SigmaCollection,
    pub rules: usize,
    pub correlations: usize,
    /// The longest correlation window, in seconds.
    pub longest_timespan: u64,
}

impl Detector {
    /// Compiles `set` (already validated by [`rules::load`]).
    pub fn new(set: &RuleSet) -> Result<Detector, String> {
        let literals: Vec<Option<Vec<String>>> = set
            .rules
            .iter()
            .map(|r| prefilter::needles(&r.rule))
            .collect();
        let mut datasets = HashMap::new();
        for (dataset, indexes) in rules::routes(&set.rules) {
            let (with, without): (Vec<usize>, Vec<usize>) =
                indexes.iter().partition(|&&i| literals[i].is_some());
            let always = engine(set, &without)?;
            let compiled = engine(set, &with)?.rules().to_vec();
            let prefiltered = prefilter::Prefiltered::new(
                compiled
                    .into_iter()
                    .zip(&with)
                    .map(|(rule, &i)| (rule, literals[i].clone().unwrap_or_default()))
                    .collect(),
            )?;
            datasets.insert(
                dataset,
                DatasetRules {
                    always,
                    prefiltered,
                },
            );
        }
        let (correlation, collection) = if set.correlations.is_empty() {
            (None, SigmaCollection::default())
        } else {
            let collection = set.collection();
            (Some(Correlations::new(&collection)?), collection)
        };
        Ok(Detector {
            datasets,
            scratch: RefCell::default(),
            correlation,
            collection,
            rules: set.rules.len(),
            correlations: set.correlations.len(),
            longest_timespan: set.longest_timespan(),
        })
    }

    /// The rules matching `event`, through the rules of its dataset.
    fn detect(&self, event: &Event) -> Vec<EvaluationResult> {
        let dataset = event.dataset.as_deref().unwrap_or("");
        let Some(rules) = self.datasets.get(dataset).or_else(|| self.datasets.get("")) else {
            return Vec::new();
        };
        let mut results = rules.always.evaluate(&SigmaEvent(event));
        rules
            .prefiltered
            .evaluate(event, &mut self.scratch.borrow_mut(), &mut results);
        results
    }

    /// Evaluates a batch in order; correlation windows advance.
    pub fn evaluate(&mut self, events: &[Event]) -> Vec<AlertUpdate> {
        let mut hits = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let detections = self.detect(event);
            let results = match &mut self.correlation {
                Some(c) => c.process(event, detections),
                None => detections.into_iter().map(|r| (r, event.trusted)).collect(),
            };
            hits.extend(
                results
                    .into_iter()
                    .map(|(r, trusted)| update(i, event, r, trusted)),
            );
        }
        hits
    }

    /// Takes over the correlation windows of `old` (a reload): windows of
    /// correlations that kept their id carry on; the others start empty.
    pub fn take_state_of(&mut self, old: &Detector) {
        if let (Some(new), Some(old)) = (&mut self.correlation, &old.correlation)
            && !new.take_state_of(old)
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

    /// Starts the correlation windows over from the store: after a failed
    /// commit, whose events advanced the windows but were not stored (and
    /// may come again when their sender retries).
    pub fn reset_windows(&mut self, store: &Store) -> Result<u64, crate::store::Error> {
        if self.correlation.is_none() {
            return Ok(0);
        }
        match Correlations::new(&self.collection) {
            Ok(fresh) => self.correlation = Some(fresh),
            Err(e) => tracing::error!(error = %e, "correlation windows not reset"),
        }
        self.rebuild_windows(store)
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
                c.process(event, detections);
            }
        }
    }
}

/// The correlation windows, twice: over every event, and over the events
/// of trusted sources only. A correlation's firing is trusted when the
/// trusted events alone make it fire, so forged lines cannot fill a window
/// that one genuine line then completes "trusted" (docs/SECURITY.md).
struct Correlations {
    all: CorrelationEngine,
    trusted: CorrelationEngine,
}

impl Correlations {
    fn new(collection: &SigmaCollection) -> Result<Correlations, String> {
        Ok(Correlations {
            all: correlation_engine(collection)?,
            trusted: correlation_engine(collection)?,
        })
    }

    /// `event`'s detections and correlation firings, each with its trust:
    /// a detection has its event's; a correlation firing is trusted when
    /// the trusted windows fire it too. A firing of the trusted windows
    /// alone (those over every event fired earlier, on a mix, and started
    /// over) comes out as a trusted firing of its own.
    fn process(
        &mut self,
        event: &Event,
        detections: Vec<EvaluationResult>,
    ) -> Vec<(EvaluationResult, bool)> {
        let at = event.timestamp.timestamp();
        let mut trusted_firings: Vec<EvaluationResult> = if event.trusted {
            self.trusted
                .process_with_detections(&SigmaEvent(event), detections.clone(), at)
                .into_iter()
                .filter(EvaluationResult::is_correlation)
                .collect()
        } else {
            Vec::new()
        };
        let mut out = Vec::new();
        for result in self
            .all
            .process_with_detections(&SigmaEvent(event), detections, at)
        {
            let trusted = if result.is_correlation() {
                match trusted_firings.iter().position(|t| same_firing(t, &result)) {
                    Some(i) => {
                        trusted_firings.swap_remove(i);
                        true
                    }
                    None => false,
                }
            } else {
                event.trusted
            };
            out.push((result, trusted));
        }
        out.extend(trusted_firings.into_iter().map(|r| (r, true)));
        out
    }

    /// Carries the windows of `old` over (a reload); false when they could not be.
    fn take_state_of(&mut self, old: &Correlations) -> bool {
        let all = self.all.import_state(old.all.export_state());
        let trusted = self.trusted.import_state(old.trusted.export_state());
        all && trusted
    }
}

/// The same correlation rule firing for the same group.
fn same_firing(a: &EvaluationResult, b: &EvaluationResult) -> bool {
    a.header.rule_id == b.header.rule_id
        && a.header.rule_title == b.header.rule_title
        && a.as_correlation().map(|c| &c.group_key) == b.as_correlation().map(|c| &c.group_key)
}

fn correlation_engine(collection: &SigmaCollection) -> Result<CorrelationEngine, String> {
    let mut engine = CorrelationEngine::new(CorrelationConfig {
        timestamp_fields: vec!["@timestamp".into()],
        // Rules marked `generate: false` (the base rules of a correlation)
        // raise no alert of their own.
        emit_detections: false,
        // A group's window keeps its newest entries only: the crate's
        // check walks the whole window on every event, so an unbounded
        // window (a flood from one source) would cost quadratic time.
        max_group_entries: Some(MAX_GROUP_ENTRIES),
        ..CorrelationConfig::default()
    });
    engine
        .add_collection(collection)
        .map_err(|e| format!("correlation rules: {e}"))?;
    Ok(engine)
}

fn update(index: usize, event: &Event, result: EvaluationResult, trusted: bool) -> AlertUpdate {
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
        rule_id: rules::rule_id(header.rule_id.as_deref(), &header.rule_title),
        rule_title: header.rule_title,
        severity: header.level.map_or("medium", |l| l.as_str()),
        tags: header.tags,
        group_key,
        correlation,
        trusted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRUTE_FORCE: &str = "443f2c4e-156b-49bf-a0a7-b193b705812c";

    fn failures(n: usize) -> Vec<Event> {
        (0..n)
            .map(|_| Event {
                timestamp: chrono::Utc::now(),
                dataset: Some("sshd".into()),
                category: Some("authentication".into()),
                outcome: Some("failure".into()),
                action: Some("ssh_login".into()),
                source_ip: Some("10.7.7.7".parse().unwrap()),
                message: "Failed password for root from 10.7.7.7".into(),
                ..Event::default()
            })
            .collect()
    }

    fn brute_force(updates: &[AlertUpdate]) -> usize {
        updates.iter().filter(|u| u.rule_id == BRUTE_FORCE).count()
    }

    /// A batch that fails to commit has advanced the windows; resetting
    /// them from the store makes its retry count as if it were the first
    /// time (here: the retry completes the 6 failures and fires).
    #[test]
    fn windows_reset_from_the_store_forget_an_uncommitted_batch() {
        let mapping = rules::FieldMapping::shipped(&Default::default()).unwrap();
        let pipeline = mapping.pipeline(&Default::default()).unwrap();
        let set = rules::load(&rules::builtin(), &mapping, &pipeline);
        let mut detector = Detector::new(&set).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();

        let mut stored = failures(3);
        assert_eq!(brute_force(&detector.evaluate(&stored)), 0);
        store
            .commit_batch(&mut stored, &[], &[], chrono::Duration::hours(1))
            .unwrap();
        // This batch fires, then (say) its commit fails: the alert is lost
        // with it, and the windows have started over after firing.
        assert_eq!(brute_force(&detector.evaluate(&failures(3))), 1);
        let retry = failures(3);
        let mut unreset = Detector::new(&set).unwrap();
        unreset.rebuild_windows(&store).unwrap();
        unreset.evaluate(&failures(3));
        assert_eq!(brute_force(&unreset.evaluate(&retry)), 0, "without a reset");

        assert_eq!(detector.reset_windows(&store).unwrap(), 3);
        assert_eq!(brute_force(&detector.evaluate(&retry)), 1);
    }

    /// Forged failures cannot fill the brute-force window that one genuine
    /// failure then completes "trusted": the firing is trusted only when
    /// the trusted events alone make the correlation fire.
    #[test]
    fn a_correlation_is_trusted_only_when_its_trusted_events_complete_it() {
        let mapping = rules::FieldMapping::shipped(&Default::default()).unwrap();
        let pipeline = mapping.pipeline(&Default::default()).unwrap();
        let set = rules::load(&rules::builtin(), &mapping, &pipeline);
        let trusted = |mut events: Vec<Event>, trusted: bool| {
            for e in &mut events {
                e.trusted = trusted;
            }
            events
        };
        let firings = |updates: Vec<AlertUpdate>| -> Vec<bool> {
            updates
                .into_iter()
                .filter(|u| u.rule_id == BRUTE_FORCE)
                .map(|u| u.trusted)
                .collect()
        };

        // 5 forged failures, then a genuine one: it fires, untrusted.
        let mut detector = Detector::new(&set).unwrap();
        assert!(firings(detector.evaluate(&trusted(failures(5), false))).is_empty());
        assert_eq!(
            firings(detector.evaluate(&trusted(failures(1), true))),
            [false]
        );

        // 6 genuine failures: trusted.
        let mut detector = Detector::new(&set).unwrap();
        assert_eq!(
            firings(detector.evaluate(&trusted(failures(6), true))),
            [true]
        );

        // The windows over every event fired on a mix and started over;
        // the genuine failures go on and complete their own window: a
        // trusted firing of its own.
        let mut detector = Detector::new(&set).unwrap();
        detector.evaluate(&trusted(failures(3), true));
        assert_eq!(
            firings(detector.evaluate(&trusted(failures(3), false))),
            [false]
        );
        assert_eq!(
            firings(detector.evaluate(&trusted(failures(3), true))),
            [true]
        );
    }

    /// A Sigma filter (a separate document naming the rules it narrows)
    /// applies to those rules' detections.
    #[test]
    fn filters_narrow_the_rules_they_name() {
        let filter = rules::Source {
            name: "admin-hosts.yml".into(),
            text: "title: Root logins from the admin host are expected\n\
                   logsource:\n    product: linux\n    service: sshd\n\
                   filter:\n    rules:\n        - 045518a7-693f-4f27-82e8-c64d66a9b2fb\n\
                   \x20   selection:\n        source.ip: 10.0.0.5\n    condition: not selection\n"
                .into(),
        };
        let mut sources = rules::builtin();
        sources.push(filter);
        let mapping = rules::FieldMapping::shipped(&Default::default()).unwrap();
        let pipeline = mapping.pipeline(&Default::default()).unwrap();
        let set = rules::load(&sources, &mapping, &pipeline);
        assert!(set.rejected.is_empty(), "{:?}", set.rejected);
        assert_eq!(set.filters.len(), 1);
        let mut detector = Detector::new(&set).unwrap();
        let root_login = |ip: &str| Event {
            timestamp: chrono::Utc::now(),
            dataset: Some("sshd".into()),
            category: Some("authentication".into()),
            outcome: Some("success".into()),
            action: Some("ssh_login".into()),
            user_name: Some("root".into()),
            source_ip: Some(ip.parse().unwrap()),
            message: format!("Accepted publickey for root from {ip}"),
            ..Event::default()
        };
        let raised: Vec<String> = detector
            .evaluate(&[root_login("10.0.0.5"), root_login("10.0.0.6")])
            .into_iter()
            .filter(|u| u.rule_id == "045518a7-693f-4f27-82e8-c64d66a9b2fb")
            .map(|u| format!("{}:{:?}", u.event, u.group_key))
            .collect();
        assert_eq!(
            raised,
            [r#"1:[("source.ip", "10.0.0.6"), ("user.name", "root")]"#]
        );
    }
}
