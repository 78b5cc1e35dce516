//! Detection: Sigma rules (the `rsigma` crates) evaluated on every event
//! before it is committed.
//!
//! - [`rules`] loads the built-in pack and rule folders, renames Sigma's
//!   field names to secmon's through the field mapping, and says why each
//!   rejected rule was rejected.
//! - Rules are routed by logsource to the datasets they can match, so an
//!   sshd event never meets an auditd or web rule. Within a dataset,
//!   [`prefilter`] evaluates a rule only when the event holds a literal of
//!   each clause (one per part of an AND) of one of its branches (the
//!   alternatives of a top-level OR) and none of that branch's filters
//!   (`not X`) matches; the rules it cannot prune stay in the crate's
//!   engine.
//! - [`adapter`] shows an [`Event`] to the engine without copying it.
//! - Correlation rules run in [`correlate`]'s windows, fed with the
//!   detections; their windows live in memory (bounded, ended ones dropped
//!   every 10 s, see `window_time`) and are rebuilt by replaying
//!   the stored events of the longest timespan after a restart (on the
//!   writer thread, before its first batch: start-up does not wait for it,
//!   ingest does) and after a failed commit.

pub mod adapter;
pub mod catalog;
pub mod condition;
pub mod correlate;
pub mod locate;
pub mod prefilter;
pub mod rules;
pub mod scanner;
pub mod tools;

use std::cell::RefCell;
use std::sync::Arc;

use rsigma_eval::{Engine, EvaluationResult, ResultBody};
use rustc_hash::FxHashMap;

use adapter::SigmaEvent;
use rules::RuleSet;

use crate::model::{AlertUpdate, Event};
use crate::store::Store;

/// Most events replayed into the correlation windows at start-up.
pub const MAX_REPLAY: u64 = 1_000_000;
/// How often the windows' entries more than two timespans old are dropped
/// (a group's also go when that group sees an event).
const EVICT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The rules routed to one dataset.
struct DatasetRules {
    /// Rules the prefilter cannot skip, in the crate's engine (its own
    /// candidate index skips rules about fields an event lacks); none when
    /// there are none (an empty engine still cost 560 instructions an
    /// event, asking for the event's fields).
    always: Option<Engine>,
    /// Rules evaluated only when a literal of each of their clauses occurs
    /// in the event.
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
    /// Per dataset (`""`: events without a known one). Hashed with FxHash:
    /// the keys are the parsers' dataset names, fixed in the code; an
    /// event's dataset only looks one up (std's SipHash was 160
    /// instructions an event).
    datasets: FxHashMap<&'static str, DatasetRules>,
    /// The prefilter's buffers.
    scratch: RefCell<prefilter::Scratch>,
    correlation: Option<Correlations>,
    pub rules: usize,
    pub correlations: usize,
    /// The longest correlation window, in seconds.
    pub longest_timespan: u64,
}

impl Detector {
    /// Compiles `set` (already validated by [`rules::load`]).
    pub fn new(set: &RuleSet) -> Result<Detector, String> {
        let literals: Vec<Option<Vec<prefilter::Branch>>> = set
            .rules
            .iter()
            .map(|r| prefilter::needles(&r.rule))
            .collect();
        let compiled = if set.correlations.is_empty() {
            None
        } else {
            Some(Arc::new(correlate::Compiled::new(&set.collection())?))
        };
        let mut datasets = FxHashMap::default();
        for (dataset, indexes) in rules::routes(&set.rules) {
            let (with, without): (Vec<usize>, Vec<usize>) =
                indexes.iter().partition(|&&i| literals[i].is_some());
            let always = (!without.is_empty())
                .then(|| engine(set, &without))
                .transpose()?;
            let mut rules = engine(set, &with)?.rules().to_vec();
            // A building block's detections feed its correlations (by id)
            // and are dropped: its title and tags are not copied into each.
            if let Some(compiled) = &compiled {
                for rule in &mut rules {
                    if rule.id.as_deref().is_some_and(|id| compiled.is_silent(id)) {
                        rule.title = String::new();
                        rule.tags = Vec::new();
                    }
                }
            }
            let prefiltered = prefilter::Prefiltered::new(
                rules
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
        Ok(Detector {
            datasets,
            scratch: RefCell::default(),
            correlation: compiled.map(Correlations::new),
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
        let mut results = match &rules.always {
            Some(engine) => engine.evaluate(&SigmaEvent(event)),
            None => Vec::new(),
        };
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
        if let Some(c) = &mut self.correlation {
            c.evict_if_due();
        }
        hits
    }

    /// Takes over the correlation windows of `old` (a reload): windows of
    /// correlations that kept their id, kind, grouping and counted field
    /// carry on; the others start empty.
    pub fn take_state_of(&mut self, old: &Detector) {
        if let (Some(new), Some(old)) = (&mut self.correlation, &old.correlation) {
            new.take_state_of(old);
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
        let Some(c) = &mut self.correlation else {
            return Ok(0);
        };
        *c = Correlations::new(Arc::clone(&c.compiled));
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
        if let Some(c) = &mut self.correlation {
            c.evict_if_due();
        }
    }
}

/// The correlation windows, twice: over every event, and over the events
/// of trusted sources only. A correlation's firing is trusted when the
/// trusted events alone make it fire, so forged lines cannot fill a window
/// that one genuine line then completes "trusted" (docs/SECURITY.md).
struct Correlations {
    compiled: Arc<correlate::Compiled>,
    all: correlate::Windows,
    trusted: correlate::Windows,
    /// The latest window time seen ([`window_time`]): the windows' clock.
    now: i64,
    evicted_at: std::time::Instant,
}

impl Correlations {
    fn new(compiled: Arc<correlate::Compiled>) -> Correlations {
        Correlations {
            all: correlate::Windows::new(Arc::clone(&compiled)),
            trusted: correlate::Windows::new(Arc::clone(&compiled)),
            compiled,
            now: 0,
            evicted_at: std::time::Instant::now(),
        }
    }

    fn evict_if_due(&mut self) {
        if self.evicted_at.elapsed() >= EVICT_EVERY {
            self.evict();
        }
    }

    /// Drops the windows that ended before `now`.
    fn evict(&mut self) {
        self.evicted_at = std::time::Instant::now();
        self.all.evict(self.now);
        self.trusted.evict(self.now);
        metrics::gauge!(crate::telemetry::metric::CORRELATION_GROUPS).set(self.groups() as f64);
    }

    fn groups(&self) -> usize {
        self.all.groups() + self.trusted.groups()
    }

    /// `event`'s detections (but those of building blocks) and correlation
    /// firings, each with its trust: a detection has its event's; a
    /// correlation firing is trusted when the trusted windows fire it too.
    /// A firing of the trusted windows alone (those over every event fired
    /// earlier, on a mix, and started over) comes out as a trusted firing
    /// of its own.
    fn process(
        &mut self,
        event: &Event,
        detections: Vec<EvaluationResult>,
    ) -> Vec<(EvaluationResult, bool)> {
        let at = window_time(event);
        self.now = self.now.max(at);
        // Most events match nothing: nothing to feed, nothing to chain.
        if detections.is_empty() {
            return Vec::new();
        }
        let mut trusted_firings = if event.trusted {
            self.trusted.process(event, &detections, at)
        } else {
            Vec::new()
        };
        let firings = self.all.process(event, &detections, at);
        let mut out: Vec<(EvaluationResult, bool)> = detections
            .into_iter()
            .filter(|d| !self.compiled.silences(d))
            .map(|d| (d, event.trusted))
            .collect();
        for result in firings {
            let trusted = match trusted_firings.iter().position(|t| same_firing(t, &result)) {
                Some(i) => {
                    trusted_firings.swap_remove(i);
                    true
                }
                None => false,
            };
            out.push((result, trusted));
        }
        out.extend(trusted_firings.into_iter().map(|r| (r, true)));
        out
    }

    /// Carries the windows of `old` over (a reload).
    fn take_state_of(&mut self, old: &Correlations) {
        self.all.take_state_of(&old.all);
        self.trusted.take_state_of(&old.trusted);
        self.now = old.now;
    }
}

/// `n` in decimal, written at the end of `digits` (without a formatter:
/// one cost as much as what the callers do with the digits).
fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[at..];
        }
    }
}

/// The time a window counts `event` at: its own, but never later than its
/// arrival, so one line stamped in the future cannot become the windows'
/// clock and end every other window at once.
fn window_time(event: &Event) -> i64 {
    event.timestamp.min(event.received_at).timestamp()
}

/// The same correlation rule firing for the same group.
fn same_firing(a: &EvaluationResult, b: &EvaluationResult) -> bool {
    a.header.rule_id == b.header.rule_id
        && a.header.rule_title == b.header.rule_title
        && a.as_correlation().map(|c| &c.group_key) == b.as_correlation().map(|c| &c.group_key)
}

fn update(index: usize, event: &Event, result: EvaluationResult, trusted: bool) -> AlertUpdate {
    let header = result.header;
    let (group_key, correlation) = match result.body {
        ResultBody::Correlation(body) => (body.group_key, true),
        ResultBody::Detection(_) => {
            let mut key = Vec::new();
            for (name, value) in [
                ("host.name", event.host_name.clone()),
                ("source.ip", event.source_ip.map(crate::model::ip_text)),
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
    use chrono::{DateTime, Utc};

    use super::*;

    const BRUTE_FORCE: &str = "443f2c4e-156b-49bf-a0a7-b193b705812c";

    fn failures(n: usize) -> Vec<Event> {
        (0..n).map(|_| failure("10.7.7.7", Utc::now())).collect()
    }

    /// A failed SSH login from `ip`, stamped `at`, arrived now.
    fn failure(ip: &str, at: DateTime<Utc>) -> Event {
        Event {
            timestamp: at,
            received_at: Utc::now(),
            dataset: Some("sshd".into()),
            category: Some("authentication".into()),
            outcome: Some("failure".into()),
            action: Some("ssh_login".into()),
            source_ip: Some(ip.parse().unwrap()),
            message: format!("Failed password for root from {ip}"),
            ..Event::default()
        }
    }

    /// The built-in pack and `extra`, loaded with the shipped field mapping.
    fn builtin_and(extra: Option<rules::Source>) -> RuleSet {
        let mut sources = rules::builtin();
        sources.extend(extra);
        let mapping = rules::FieldMapping::shipped(&Default::default()).unwrap();
        let pipeline = mapping.pipeline(&Default::default()).unwrap();
        rules::load(&sources, &mapping, &pipeline)
    }

    fn builtin_detector() -> Detector {
        Detector::new(&builtin_and(None)).unwrap()
    }

    fn groups(detector: &Detector) -> usize {
        detector.correlation.as_ref().unwrap().groups()
    }

    /// A rule the prefilter cannot prune (a regex) is evaluated for the
    /// datasets it is routed to, beside the prefiltered ones; a dataset
    /// without such rules has no engine for them.
    #[test]
    fn rules_without_literals_are_evaluated_beside_the_prefiltered() {
        let custom = rules::Source {
            name: "custom.yml".into(),
            text: "title: Root by regex\nid: 0b8e6a52-7b1f-4d0c-9a51-3c0d1f6b2e11\n\
                   logsource:\n    product: linux\n    service: sshd\n\
                   detection:\n    selection:\n        message|re: 'for r[o]+t from'\n\
                   \x20   condition: selection\n---\n\
                   title: Root by literal\nid: 6f2a1c3e-8d4b-4e7f-b1a2-9c0d3e4f5a61\n\
                   logsource:\n    product: linux\n    service: sshd\n\
                   detection:\n    selection:\n        message|contains: 'for root from'\n\
                   \x20   condition: selection\n"
                .into(),
        };
        let set = builtin_and(Some(custom));
        assert!(set.rejected.is_empty(), "{:?}", set.rejected);
        let mut detector = Detector::new(&set).unwrap();
        assert!(detector.datasets["sshd"].always.is_some());
        assert!(detector.datasets["sudo"].always.is_none());
        let mut titles: Vec<String> = detector
            .evaluate(&failures(1))
            .into_iter()
            .map(|u| u.rule_title)
            .collect();
        titles.sort();
        assert_eq!(titles, ["Root by literal", "Root by regex"]);
    }

    /// Entries more than two timespans old are dropped (every
    /// [`EVICT_EVERY`] in service), whether or not their group sees another
    /// event: many sources failing once leave nothing behind hours later.
    #[test]
    fn windows_past_their_timespan_are_dropped() {
        let mut detector = builtin_detector();
        let then = Utc::now() - chrono::Duration::hours(3);
        let once: Vec<Event> = (0..500)
            .map(|i| failure(&format!("10.1.{}.{}", i / 250, i % 250), then))
            .collect();
        detector.evaluate(&once);
        let held = groups(&detector);
        assert!(held >= 500, "{held}");
        // Events of now: the old windows ended long before.
        detector.evaluate(&failures(1));
        detector.correlation.as_mut().unwrap().evict();
        assert!(groups(&detector) < 10, "{}", groups(&detector));
    }

    /// An `event_count` window keeps what its condition needs (`gte: 6`:
    /// 7 entries) unless its rule says otherwise; other kinds keep
    /// [`correlate::MAX_GROUP_ENTRIES`].
    #[test]
    fn event_count_windows_keep_what_their_condition_needs() {
        let custom = rules::Source {
            name: "custom.yml".into(),
            text: "title: Failures\nid: 5d1c4f0e-2c55-4d8e-9d44-0f7e6c1b2a10\n\
                   logsource:\n    product: linux\n    service: sshd\n\
                   detection:\n    selection:\n        event.outcome: failure\n\
                   \x20   condition: selection\n---\n\
                   title: Many failures\ncorrelation:\n    type: event_count\n\
                   \x20   rules: [5d1c4f0e-2c55-4d8e-9d44-0f7e6c1b2a10]\n\
                   \x20   group-by: [source.ip]\n    timespan: 1h\n\
                   \x20   condition:\n        gte: 50000\n\
                   rsigma.max_group_entries: '60000'\n"
                .into(),
        };
        let set = builtin_and(Some(custom));
        assert!(set.rejected.is_empty(), "{:?}", set.rejected);
        let cap = |title: &str| {
            let corr = &set
                .correlations
                .iter()
                .find(|c| c.rule.title == title)
                .unwrap()
                .rule;
            corr.custom_attributes
                .get("rsigma.max_group_entries")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        assert_eq!(
            cap("SSH Brute Force From Single Source").as_deref(),
            Some("7")
        );
        assert_eq!(
            cap("SSH Password Spraying Or User Enumeration From Single Source"),
            None
        );
        assert_eq!(cap("Many failures").as_deref(), Some("60000"));
    }

    /// A line stamped in the future counts at its arrival, so it cannot
    /// become the windows' clock and end every other window at once.
    #[test]
    fn a_future_stamp_counts_at_its_arrival() {
        let mut detector = builtin_detector();
        detector.evaluate(&failures(1));
        detector.correlation.as_mut().unwrap().evict();
        let one_source = groups(&detector);
        assert!(one_source > 0);
        let future = Utc::now() + chrono::Duration::days(365);
        detector.evaluate(&[failure("10.8.8.8", future)]);
        detector.correlation.as_mut().unwrap().evict();
        assert_eq!(
            groups(&detector),
            2 * one_source,
            "a future stamp ended the other windows"
        );
    }

    fn brute_force(updates: &[AlertUpdate]) -> usize {
        updates.iter().filter(|u| u.rule_id == BRUTE_FORCE).count()
    }

    /// A batch that fails to commit has advanced the windows; resetting
    /// them from the store makes its retry count as if it were the first
    /// time (here: the retry completes the 6 failures and fires).
    #[test]
    fn windows_reset_from_the_store_forget_an_uncommitted_batch() {
        let set = builtin_and(None);
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
        let set = builtin_and(None);
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
        let set = builtin_and(Some(filter));
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
