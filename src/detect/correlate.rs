//! Correlation windows: the Sigma correlation rules (compiled by
//! rsigma-eval's `compile_correlation`) fed with each event's detections,
//! in state of secmon's own.
//!
//! - A group's window keeps its entries in time order, so an event that
//!   arrives late (several connections, a slow forwarder) counts where it
//!   belongs: it is checked in the window that ends with it and in those
//!   that end with the newer entries within one timespan, and no window
//!   holds entries more than a timespan apart. Up to one timespan behind
//!   its group's newest entry an event is counted exactly; later than that
//!   it can only be under-counted (the older entries it would meet are
//!   gone).
//! - Every group lives in one least-recently-fed list: at [`MAX_GROUPS`]
//!   the group fed longest ago is dropped, at constant cost
//!   (`secmon_correlation_groups_dropped_total`).
//! - [`Windows::evict`] drops what lies more than two timespans behind the
//!   windows' clock (the latest event time seen).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use lru::LruCache;
use rsigma_eval::correlation::compile_correlation;
use rsigma_eval::{
    CompiledCorrelation, CorrelationAction, CorrelationBody, EvaluationResult, Event as _,
    EventValue, ResultBody, RuleHeader,
};
use rsigma_parser::{ConditionExpr, CorrelationRule, CorrelationType, SigmaCollection, WindowMode};
use rustc_hash::{FxHashMap, FxHashSet};

use super::adapter::{SigmaEvent, push_value};
use crate::model::Event;

/// Most groups (one per correlation and group-by value) each set of
/// windows keeps; past it the group fed longest ago is dropped.
pub const MAX_GROUPS: usize = 100_000;
/// Most entries one group's window keeps (the newest); a rule may set its
/// own with the `rsigma.max_group_entries` attribute, and an `event_count`
/// window keeps only what its condition needs (`rules::load`).
pub const MAX_GROUP_ENTRIES: usize = 1_000;
/// Most correlations a firing chains through (a cycle stops there).
const MAX_CHAIN_DEPTH: usize = 10;
/// Most windows a late event is checked in when each check walks the
/// window (`temporal_ordered`, percentiles); the other kinds check every
/// window it falls in, in one pass.
const MAX_WALKED_WINDOWS: usize = 16;

/// Compiles `rule`, or says why secmon cannot evaluate it.
pub fn check(rule: &CorrelationRule) -> Result<CompiledCorrelation, String> {
    let compiled = compile_correlation(rule).map_err(|e| e.to_string())?;
    let mode = match compiled.window_mode {
        WindowMode::Sliding => return Ok(compiled),
        WindowMode::Tumbling => "tumbling",
        WindowMode::Session => "session",
    };
    Err(format!(
        "window: {mode} is not supported: secmon's correlation windows slide; \
         remove `window` (and `gap`)"
    ))
}

/// One correlation, compiled.
struct Rule {
    def: CompiledCorrelation,
    /// The window starts over after it fired (`rsigma.action`, `reset`
    /// unless it says `alert`).
    reset: bool,
    /// Most entries a group keeps.
    cap: usize,
}

impl Rule {
    /// The timespan in seconds, small enough that sums of times stay in range.
    fn span(&self) -> i64 {
        i64::try_from(self.def.timespan_secs).map_or(i64::MAX / 8, |s| s.min(i64::MAX / 8))
    }
}

/// The correlations of a rule set, shared by both sets of windows.
pub struct Compiled {
    rules: Vec<Rule>,
    /// Rule and correlation ids → what their detections and firings feed,
    /// worked out once (a detection costs one lookup).
    feeds: FxHashMap<String, Feeds>,
}

/// What the detections (or firings) of one rule or correlation feed.
#[derive(Default)]
struct Feeds {
    /// Its name, when it has one (a correlation may refer to either, and an
    /// aliased group-by field is resolved through either).
    name: Option<String>,
    /// The correlations referring to it by id or name, each once, in
    /// correlation order, with the reference each uses.
    correlations: Vec<(usize, String)>,
    /// A building block of a `generate: false` correlation: its own
    /// detections raise nothing.
    silent: bool,
}

impl Compiled {
    pub fn new(collection: &SigmaCollection) -> Result<Compiled, String> {
        let mut names: FxHashMap<&str, &str> = FxHashMap::default();
        let ids = collection
            .rules
            .iter()
            .map(|r| (&r.id, &r.name))
            .chain(collection.correlations.iter().map(|c| (&c.id, &c.name)));
        for (id, name) in ids {
            if let (Some(id), Some(name)) = (id, name) {
                names.insert(id, name);
            }
        }
        let mut rules = Vec::new();
        // Reference (id or name) → the correlations using it.
        let mut by_ref: FxHashMap<String, Vec<usize>> = FxHashMap::default();
        let mut silent: FxHashSet<String> = FxHashSet::default();
        for corr in &collection.correlations {
            let def = check(corr).map_err(|e| format!("correlation {}: {e}", corr.title))?;
            let index = rules.len();
            for r in &def.rule_refs {
                by_ref.entry(r.clone()).or_default().push(index);
                if !def.generate {
                    silent.insert(r.clone());
                }
            }
            rules.push(Rule {
                reset: def.action != Some(CorrelationAction::Alert),
                cap: def.max_group_entries.unwrap_or(MAX_GROUP_ENTRIES).max(1),
                def,
            });
        }
        // Every id that feeds something: the named ones, and every
        // reference (which may be an id).
        let mut feeds: FxHashMap<String, Feeds> = FxHashMap::default();
        for id in names
            .keys()
            .copied()
            .chain(by_ref.keys().map(String::as_str))
        {
            if feeds.contains_key(id) {
                continue;
            }
            let name = names.get(id).copied();
            let mut f = Feeds {
                name: name.map(str::to_owned),
                ..Feeds::default()
            };
            for r in std::iter::once(id).chain(name) {
                f.silent |= silent.contains(r);
                for &i in by_ref.get(r).into_iter().flatten() {
                    if !f.correlations.iter().any(|(j, _)| *j == i) {
                        f.correlations.push((i, r.to_owned()));
                    }
                }
            }
            f.correlations.sort_unstable();
            feeds.insert(id.to_owned(), f);
        }
        Ok(Compiled { rules, feeds })
    }

    /// What the rule or correlation with id `id` feeds.
    fn feeds(&self, id: &str) -> Option<&Feeds> {
        self.feeds.get(id)
    }

    /// Whether `detection` is a building block that raises nothing itself.
    pub fn silences(&self, detection: &EvaluationResult) -> bool {
        detection
            .header
            .rule_id
            .as_deref()
            .is_some_and(|id| self.is_silent(id))
    }

    /// Whether the rule with id `id` is a building block that raises
    /// nothing itself.
    pub fn is_silent(&self, id: &str) -> bool {
        self.feeds(id).is_some_and(|f| f.silent)
    }
}

/// What one entry of a window holds.
#[derive(Clone, Debug)]
enum Value {
    /// Counted (`event_count`, and a chained firing in the value kinds).
    Count,
    /// The counted field's value (`value_count`).
    Text(Arc<str>),
    /// Which of the correlation's rules it came from (`temporal`).
    Rule(usize),
    /// The field's number (`value_sum`, `value_avg`, percentiles).
    Number(f64),
}

#[derive(Clone, Debug)]
struct Entry {
    at: i64,
    value: Value,
}

#[derive(Clone, Debug)]
struct Group {
    rule: usize,
    /// In time order (equal times in arrival order).
    entries: VecDeque<Entry>,
    /// When the group last fired (`rsigma.suppress`).
    fired_at: Option<i64>,
    /// `value_count`: the distinct values of the window that ends with the
    /// newest entry, kept as entries come and go.
    live: Option<Box<Live>>,
}

/// The values of the entries from `from` on: those within a timespan of
/// the group's newest, how often each.
#[derive(Clone, Debug, Default)]
struct Live {
    from: usize,
    counts: HashMap<Arc<str>, u32, lru::DefaultHasher>,
}

impl Live {
    fn add(&mut self, v: &Value) {
        if let Value::Text(t) = v {
            *self.counts.entry(Arc::clone(t)).or_default() += 1;
        }
    }

    fn remove(&mut self, v: &Value) {
        if let Value::Text(t) = v
            && let Some(c) = self.counts.get_mut(t)
        {
            *c -= 1;
            if *c == 0 {
                self.counts.remove(t);
            }
        }
    }
}

impl Group {
    fn new(rule: usize, kind: CorrelationType) -> Group {
        Group {
            rule,
            entries: VecDeque::new(),
            fired_at: None,
            live: (kind == CorrelationType::ValueCount).then(Box::default),
        }
    }

    /// Inserts `entry` in time order; where it went.
    fn insert(&mut self, entry: Entry, span: i64) -> usize {
        let at = entry.at;
        let pos = if self.entries.back().is_none_or(|e| e.at <= at) {
            self.entries.len()
        } else {
            self.entries.partition_point(|e| e.at <= at)
        };
        self.entries.insert(pos, entry);
        if let Some(live) = &mut self.live {
            // Everything before `from` is older than the live window.
            if pos < live.from {
                live.from += 1;
            } else {
                live.add(&self.entries[pos].value);
            }
            let start = self.entries.back().map_or(at, |e| e.at) - span;
            while let Some(e) = self.entries.get(live.from)
                && e.at < start
            {
                live.remove(&e.value);
                live.from += 1;
            }
        }
        pos
    }

    fn pop_front(&mut self) {
        let Some(e) = self.entries.pop_front() else {
            return;
        };
        if let Some(live) = &mut self.live {
            match live.from.checked_sub(1) {
                Some(from) => live.from = from,
                None => live.remove(&e.value),
            }
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        if let Some(live) = &mut self.live {
            **live = Live::default();
        }
    }
}

/// The windows of every correlation and group. Keys are the group's
/// values, length-prefixed (`-` where absent), then `#` and the rule index.
pub struct Windows {
    compiled: Arc<Compiled>,
    groups: LruCache<String, Group>,
    key: String,
    /// A group-by value, written before it goes into `key`, or the value a
    /// `value_count` counts.
    value: String,
}

impl Windows {
    pub fn new(compiled: Arc<Compiled>) -> Windows {
        Windows {
            compiled,
            groups: LruCache::unbounded(),
            key: String::new(),
            value: String::new(),
        }
    }

    /// How many groups it holds.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// Feeds `event`'s detections at `at` (seconds); the correlations that
    /// fired, chained firings included.
    pub fn process(
        &mut self,
        event: &Event,
        detections: &[EvaluationResult],
        at: i64,
    ) -> Vec<EvaluationResult> {
        let at = at.clamp(0, i64::MAX / 4);
        let compiled = Arc::clone(&self.compiled);
        let view = SigmaEvent(event);
        let mut fired = Vec::new();
        for detection in detections {
            let Some(id) = detection.header.rule_id.as_deref() else {
                continue;
            };
            let Some(feeds) = compiled.feeds(id) else {
                continue;
            };
            // Aliased group-by fields resolve through the id, then the name.
            let resolve: &[&str] = match feeds.name.as_deref() {
                Some(name) => &[id, name],
                None => &[id],
            };
            // The correlation whose group-by values are in `self.key`, and
            // their length.
            let mut grouped: Option<(usize, usize)> = None;
            for (index, reference) in &feeds.correlations {
                let index = *index;
                let def = &compiled.rules[index].def;
                let value = match def.correlation_type {
                    CorrelationType::EventCount => Some(Value::Count),
                    CorrelationType::ValueCount => def
                        .condition
                        .field
                        .as_deref()
                        .filter(|fields| counted(&view, fields, &mut self.value))
                        .map(|_| Value::Text(self.value.as_str().into())),
                    CorrelationType::Temporal | CorrelationType::TemporalOrdered => def
                        .rule_refs
                        .iter()
                        .position(|r| r == reference)
                        .map(Value::Rule),
                    CorrelationType::ValueSum
                    | CorrelationType::ValueAvg
                    | CorrelationType::ValuePercentile
                    | CorrelationType::ValueMedian => def
                        .condition
                        .field
                        .as_ref()
                        .and_then(|f| f.first())
                        .and_then(|f| view.get_field(f))
                        .and_then(|v| v.as_f64())
                        .map(Value::Number),
                };
                let Some(value) = value else { continue };
                // Correlations grouping by the same fields (most group by
                // the source address) share the key's values.
                match grouped {
                    Some((by, len)) if same_grouping(&compiled.rules[by].def, def, resolve) => {
                        self.key.truncate(len);
                    }
                    _ => {
                        self.key.clear();
                        for f in &def.group_by {
                            self.value.clear();
                            let present = view.push_text(f.resolve(resolve), &mut self.value);
                            push_key_value(&mut self.key, present.then_some(self.value.as_str()));
                        }
                        grouped = Some((index, self.key.len()));
                    }
                }
                fired.extend(self.feed(index, at, value));
            }
        }
        self.chain(&mut fired, at);
        fired
    }

    /// Feeds correlation firings to the correlations that refer to them,
    /// level after level.
    fn chain(&mut self, fired: &mut Vec<EvaluationResult>, at: i64) {
        let compiled = Arc::clone(&self.compiled);
        let mut level = 0..fired.len();
        let mut next = Vec::new();
        for _ in 0..MAX_CHAIN_DEPTH {
            for result in &fired[level.clone()] {
                let (Some(id), Some(body)) = (&result.header.rule_id, result.as_correlation())
                else {
                    continue;
                };
                let Some(feeds) = compiled.feeds(id) else {
                    continue;
                };
                let pairs = &body.group_key;
                for (index, reference) in &feeds.correlations {
                    let index = *index;
                    let def = &compiled.rules[index].def;
                    let value = match def.correlation_type {
                        CorrelationType::Temporal | CorrelationType::TemporalOrdered => {
                            match def.rule_refs.iter().position(|r| r == reference) {
                                Some(r) => Value::Rule(r),
                                None => continue,
                            }
                        }
                        _ => Value::Count,
                    };
                    self.key.clear();
                    for f in &def.group_by {
                        let v = pairs.iter().find(|(name, _)| name == f.name());
                        push_key_value(&mut self.key, v.map(|(_, v)| v.as_str()));
                    }
                    next.extend(self.feed(index, at, value));
                }
            }
            if next.is_empty() {
                return;
            }
            level = fired.len()..fired.len() + next.len();
            fired.append(&mut next);
        }
        tracing::warn!(
            depth = MAX_CHAIN_DEPTH,
            "correlations chained too deep (a cycle?); the rest was not fed"
        );
    }

    /// Adds an entry to the window of the group whose values are in
    /// `self.key` (see [`push_key_value`]) and checks the windows it falls in.
    fn feed(&mut self, index: usize, at: i64, value: Value) -> Option<EvaluationResult> {
        let rule = &self.compiled.rules[index];
        let span = rule.span();
        self.key.push('#');
        push_decimal(&mut self.key, index);
        let key = self.key.as_str();
        if self.groups.len() >= MAX_GROUPS && !self.groups.contains(key) {
            self.groups.pop_lru();
            metrics::counter!(crate::telemetry::metric::CORRELATION_GROUPS_DROPPED).increment(1);
        }
        let g = self
            .groups
            .get_or_insert_mut_ref(key, || Group::new(index, rule.def.correlation_type));
        let pos = g.insert(Entry { at, value }, span);
        let value = satisfied(rule, g, pos, span);
        let suppressed = rule
            .def
            .suppress_secs
            .and_then(|s| i64::try_from(s).ok())
            .zip(g.fired_at)
            .is_some_and(|(s, fired)| at - fired < s);
        let fires = value.is_some() && !suppressed;
        if fires {
            g.fired_at = Some(at);
            if rule.reset {
                g.clear();
            }
        }
        // What no window can need any more, and the cap.
        let newest = g.entries.back().map_or(at, |e| e.at);
        while g.entries.front().is_some_and(|e| e.at < newest - 2 * span) {
            g.pop_front();
        }
        while g.entries.len() > rule.cap {
            g.pop_front();
        }
        if !fires {
            return None;
        }
        let def = &rule.def;
        Some(EvaluationResult {
            header: RuleHeader {
                rule_title: def.title.clone(),
                rule_id: def.id.clone(),
                level: def.level,
                tags: def.tags.clone(),
                custom_attributes: Arc::clone(&def.custom_attributes),
                enrichments: None,
            },
            body: ResultBody::Correlation(CorrelationBody {
                correlation_type: def.correlation_type,
                group_key: def
                    .group_by
                    .iter()
                    .zip(key_values(key))
                    .filter_map(|(f, v)| Some((f.name().to_owned(), v?.to_owned())))
                    .collect(),
                aggregated_value: value.unwrap_or_default(),
                timespan_secs: def.timespan_secs,
                events: None,
                event_refs: None,
            }),
        })
    }

    /// Drops the entries more than two timespans before `now` (a late
    /// event meets entries one timespan before it, and is up to one
    /// timespan behind its group's newest), and the groups left empty.
    pub fn evict(&mut self, now: i64) {
        let rules = &self.compiled.rules;
        let mut empty = Vec::new();
        for (key, g) in self.groups.iter_mut() {
            let oldest = now.saturating_sub(2 * rules[g.rule].span());
            while g.entries.front().is_some_and(|e| e.at < oldest) {
                g.pop_front();
            }
            if g.entries.is_empty() {
                empty.push(key.clone());
            }
        }
        for key in empty {
            self.groups.pop(key.as_str());
        }
    }

    /// Takes over the windows of `old` (a reload) whose correlation kept its
    /// id, kind, grouping and counted field; the others start empty.
    pub fn take_state_of(&mut self, old: &Windows) {
        let same = |a: &CompiledCorrelation, b: &CompiledCorrelation| {
            a.id.is_some()
                && a.id == b.id
                && a.correlation_type == b.correlation_type
                && a.rule_refs == b.rule_refs
                && a.condition.field == b.condition.field
                && a.group_by
                    .iter()
                    .map(|f| f.name())
                    .eq(b.group_by.iter().map(|f| f.name()))
        };
        let moved: Vec<Option<usize>> = old
            .compiled
            .rules
            .iter()
            .map(|o| {
                self.compiled
                    .rules
                    .iter()
                    .position(|n| same(&o.def, &n.def))
            })
            .collect();
        // Oldest first, so the list keeps its order.
        for (key, g) in old.groups.iter().rev() {
            let Some(index) = moved[g.rule] else { continue };
            let Some((values, _)) = key.rsplit_once('#') else {
                continue;
            };
            let mut g = g.clone();
            g.rule = index;
            self.groups.push(format!("{values}#{index}"), g);
        }
        while self.groups.len() > MAX_GROUPS {
            self.groups.pop_lru();
        }
    }
}

/// Whether correlations `a` and `b` group by the same fields (resolved
/// through the names in `resolve`).
fn same_grouping(a: &CompiledCorrelation, b: &CompiledCorrelation, resolve: &[&str]) -> bool {
    a.group_by.len() == b.group_by.len()
        && a.group_by
            .iter()
            .zip(&b.group_by)
            .all(|(x, y)| x.resolve(resolve) == y.resolve(resolve))
}

/// Appends a group-by value to a group's key: its length, `:` and the
/// value, or `-` where the event has none. The key ends with `#` and the
/// correlation's index.
fn push_key_value(out: &mut String, value: Option<&str>) {
    match value {
        Some(v) => {
            push_decimal(out, v.len());
            out.push(':');
            out.push_str(v);
        }
        None => out.push('-'),
    }
}

/// `n` in decimal (a formatter per group key cost as much as the rest of
/// feeding the window).
fn push_decimal(out: &mut String, n: usize) {
    out.extend(
        super::decimal(n as u64, &mut [0; 20])
            .iter()
            .map(|&d| char::from(d)),
    );
}

/// The group-by values of a key [`push_key_value`] wrote, in order.
fn key_values(key: &str) -> impl Iterator<Item = Option<&str>> {
    let mut rest = key;
    std::iter::from_fn(move || {
        if let Some(after) = rest.strip_prefix('-') {
            rest = after;
            return Some(None);
        }
        let (len, after) = rest.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let value = after.get(..len)?;
        rest = &after[len..];
        Some(Some(value))
    })
}

/// What a `value_count` counts: the fields' values (all present), joined
/// by the unit separator, written into `out` (cleared first); whether
/// there is one.
fn counted(event: &SigmaEvent, fields: &[String], out: &mut String) -> bool {
    out.clear();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push('\u{1f}');
        }
        match event.get_field(f) {
            None => return false,
            Some(EventValue::Null) => out.push_str("null"),
            Some(v) => {
                if !push_value(v, out) {
                    return false;
                }
            }
        }
    }
    !fields.is_empty()
}

/// The aggregate of the first window the entry at `pos` falls in that
/// meets the rule's condition: the window ending with it, then those
/// ending with each newer entry up to a timespan later (a late event).
fn satisfied(rule: &Rule, group: &Group, pos: usize, span: i64) -> Option<f64> {
    let def = &rule.def;
    let entries = &group.entries;
    if let Some(live) = &group.live
        && pos + 1 == entries.len()
    {
        let distinct = live.counts.len() as f64;
        return def.condition.check(distinct).then_some(distinct);
    }
    let start = |end: usize| entries.partition_point(|e| e.at < entries[end].at - span);
    // In order, an event count is the entries a timespan back from it
    // (what the walk below would count, without walking the window).
    if def.correlation_type == CorrelationType::EventCount && pos + 1 == entries.len() {
        let n = (pos + 1 - start(pos)) as f64;
        return (def.extended_expr.is_some() || def.condition.check(n)).then_some(n);
    }
    let at = entries[pos].at;
    // The last entry of each window: this one's (equal times before it
    // are in), then the last of each newer time within the span.
    let ends = std::iter::once(pos).chain(
        (pos + 1..entries.len())
            .take_while(|&j| entries[j].at <= at + span)
            .filter(|&j| entries.get(j + 1).is_none_or(|n| n.at != entries[j].at)),
    );
    match def.correlation_type {
        CorrelationType::TemporalOrdered
        | CorrelationType::ValuePercentile
        | CorrelationType::ValueMedian => ends.take(MAX_WALKED_WINDOWS).find_map(|end| {
            let window = entries.range(start(end)..=end);
            walked(def, window).filter(|&v| def.extended_expr.is_some() || def.condition.check(v))
        }),
        _ => {
            let mut acc = Running::new(def);
            let (mut lo, mut hi) = (start(pos), start(pos));
            for end in ends {
                while hi <= end {
                    acc.add(&entries[hi].value);
                    hi += 1;
                }
                let from = entries[end].at - span;
                while entries[lo].at < from {
                    acc.remove(&entries[lo].value);
                    lo += 1;
                }
                if let Some(v) = acc.value(def)
                    && (def.extended_expr.is_some() || def.condition.check(v))
                {
                    return Some(v);
                }
            }
            None
        }
    }
}

/// An aggregate kept while a window slides: counts, distinct values,
/// sums, rules seen.
struct Running<'a> {
    n: usize,
    distinct: HashMap<&'a str, usize, lru::DefaultHasher>,
    sum: f64,
    numbers: usize,
    rules: Vec<usize>,
}

impl<'a> Running<'a> {
    fn new(def: &CompiledCorrelation) -> Running<'a> {
        let temporal = matches!(
            def.correlation_type,
            CorrelationType::Temporal | CorrelationType::TemporalOrdered
        );
        Running {
            n: 0,
            distinct: HashMap::default(),
            sum: 0.0,
            numbers: 0,
            // Only temporal windows hold rules (no allocation for the others).
            rules: if temporal {
                vec![0; def.rule_refs.len()]
            } else {
                Vec::new()
            },
        }
    }

    fn add(&mut self, v: &'a Value) {
        self.n += 1;
        match v {
            Value::Count => {}
            Value::Text(t) => *self.distinct.entry(t).or_default() += 1,
            Value::Rule(r) => self.rules[*r] += 1,
            Value::Number(x) => {
                self.sum += x;
                self.numbers += 1;
            }
        }
    }

    fn remove(&mut self, v: &Value) {
        self.n -= 1;
        match v {
            Value::Count => {}
            Value::Text(t) => {
                if let Some(c) = self.distinct.get_mut(&**t) {
                    *c -= 1;
                    if *c == 0 {
                        self.distinct.remove(&**t);
                    }
                }
            }
            Value::Rule(r) => self.rules[*r] -= 1,
            Value::Number(x) => {
                self.sum -= x;
                self.numbers -= 1;
            }
        }
    }

    /// The window's aggregate; for a `temporal` with an expression, the
    /// number of its rules seen when the expression holds.
    fn value(&self, def: &CompiledCorrelation) -> Option<f64> {
        Some(match def.correlation_type {
            CorrelationType::EventCount => self.n as f64,
            CorrelationType::ValueCount => self.distinct.len() as f64,
            CorrelationType::ValueSum => self.sum,
            CorrelationType::ValueAvg if self.numbers == 0 => return None,
            CorrelationType::ValueAvg => self.sum / self.numbers as f64,
            _ => {
                let seen = |r: &str| {
                    def.rule_refs
                        .iter()
                        .position(|x| x == r)
                        .is_some_and(|i| self.rules[i] > 0)
                };
                if let Some(expr) = &def.extended_expr
                    && !holds(expr, &seen)
                {
                    return None;
                }
                self.rules.iter().filter(|&&c| c > 0).count() as f64
            }
        })
    }
}

/// The aggregate of one window, walked: `temporal_ordered` (whether its
/// rules came in their order), percentiles and the median.
fn walked<'a>(
    def: &CompiledCorrelation,
    window: impl Iterator<Item = &'a Entry> + Clone,
) -> Option<f64> {
    match def.correlation_type {
        CorrelationType::TemporalOrdered => {
            if let Some(expr) = &def.extended_expr {
                let seen = |r: &str| {
                    window
                        .clone()
                        .any(|e| matches!(e.value, Value::Rule(i) if def.rule_refs[i] == r))
                };
                if !holds(expr, &seen) {
                    return None;
                }
            }
            // Rules at the same second may come in either order.
            let entries: Vec<&Entry> = window.collect();
            let mut next = 0;
            let mut i = 0;
            while i < entries.len() && next < def.rule_refs.len() {
                let run = entries[i..].partition_point(|e| e.at == entries[i].at);
                loop {
                    let found = next < def.rule_refs.len()
                        && entries[i..i + run]
                            .iter()
                            .any(|e| matches!(e.value, Value::Rule(r) if r == next));
                    if !found {
                        break;
                    }
                    next += 1;
                }
                i += run;
            }
            (next == def.rule_refs.len()).then_some(next as f64)
        }
        _ => {
            let mut values: Vec<f64> = window
                .filter_map(|e| match e.value {
                    Value::Number(x) if x.is_finite() => Some(x),
                    _ => None,
                })
                .collect();
            if values.is_empty() {
                return None;
            }
            values.sort_by(f64::total_cmp);
            let rank = if def.correlation_type == CorrelationType::ValueMedian {
                50.0
            } else {
                def.condition.percentile.map_or(50.0, |p| p as f64)
            };
            Some(percentile(&values, rank))
        }
    }
}

/// The value at `rank` (0–100) of sorted `values`, interpolated linearly.
fn percentile(values: &[f64], rank: f64) -> f64 {
    let at = rank.clamp(0.0, 100.0) / 100.0 * (values.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    values[lo] + (at - lo as f64) * (values[hi.min(values.len() - 1)] - values[lo])
}

/// Whether a `temporal` expression holds, its names being rules seen.
fn holds(expr: &ConditionExpr, seen: &dyn Fn(&str) -> bool) -> bool {
    match expr {
        ConditionExpr::Identifier(name) => seen(name),
        ConditionExpr::And(all) => all.iter().all(|e| holds(e, seen)),
        ConditionExpr::Or(any) => any.iter().any(|e| holds(e, seen)),
        ConditionExpr::Not(e) => !holds(e, seen),
        ConditionExpr::Selector { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};

    use super::super::{Detector, rules};
    use crate::model::Event;

    const BASE: &str = "title: Failure\nid: 6c0d2e1a-0000-4000-8000-000000000001\n\
        logsource:\n    product: linux\n    service: sshd\n\
        detection:\n    selection:\n        event.outcome: failure\n    condition: selection\n";

    /// `sources` loaded with the shipped field mapping.
    fn load(sources: &[rules::Source]) -> rules::RuleSet {
        let mapping = rules::FieldMapping::shipped(&Default::default()).unwrap();
        let pipeline = mapping.pipeline(&Default::default()).unwrap();
        rules::load(sources, &mapping, &pipeline)
    }

    /// The rules of one file `text`, every one loaded.
    fn load_all(text: String) -> rules::RuleSet {
        let set = load(&[rules::Source {
            name: "test.yml".into(),
            text,
        }]);
        assert!(set.rejected.is_empty(), "{:?}", set.rejected);
        set
    }

    /// A detector with the base rule above and `correlation` over it.
    fn detector(correlation: &str) -> Detector {
        let set = load_all(format!(
            "{BASE}---\ntitle: Correlated\nid: 6c0d2e1a-0000-4000-8000-000000000002\n\
             correlation:\n    rules: [6c0d2e1a-0000-4000-8000-000000000001]\n\
             \x20   group-by: [source.ip]\n{correlation}"
        ));
        Detector::new(&set).unwrap()
    }

    /// A failure of `user` from `ip`, `secs` into the day before.
    fn failure(ip: &str, secs: i64, user: &str) -> Event {
        Event {
            timestamp: Utc::now() - Duration::days(1) + Duration::seconds(secs),
            received_at: Utc::now(),
            dataset: Some("sshd".into()),
            outcome: Some("failure".into()),
            source_ip: Some(ip.parse().unwrap()),
            user_name: Some(user.into()),
            ..Event::default()
        }
    }

    /// The events (by position) that fire the correlation, fed one at a
    /// time in this order.
    fn fired(detector: &mut Detector, events: &[Event]) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let hits = detector.evaluate(std::slice::from_ref(e));
            if hits.iter().any(|h| h.correlation) {
                out.push(i);
            }
        }
        out
    }

    const THREE_IN_A_MINUTE: &str =
        "    type: event_count\n    timespan: 1m\n    condition:\n        gte: 3\n";

    /// A late event counts in the windows it falls in, not with the newer
    /// events more than a timespan away (rsigma-eval's windows counted it
    /// with everything they held).
    #[test]
    fn a_late_event_counts_where_it_belongs() {
        let ip = "10.1.1.1";
        let at = |secs| failure(ip, secs, "root");
        // 0 and 100 are 100 s apart; 50 arrives last: no minute holds three.
        let mut d = detector(THREE_IN_A_MINUTE);
        assert!(fired(&mut d, &[at(0), at(100), at(50)]).is_empty());
        // 55 arrives later still: 0, 50 and 55 are within a minute.
        assert_eq!(fired(&mut d, &[at(55)]), [0]);

        // A late event completes the window that ends with a newer one.
        let mut d = detector(THREE_IN_A_MINUTE);
        assert_eq!(fired(&mut d, &[at(10), at(20), at(5)]), [2]);
        // ... and not one more than a minute after it.
        let mut d = detector(THREE_IN_A_MINUTE);
        assert!(fired(&mut d, &[at(70), at(80), at(5)]).is_empty());
    }

    /// In time order every window is the one ending with the newest event;
    /// `rsigma.action: reset` (the default) starts it over after it fired.
    #[test]
    fn in_order_windows_slide_and_start_over_after_firing() {
        let at = |secs| failure("10.1.1.2", secs, "root");
        let mut d = detector(THREE_IN_A_MINUTE);
        let events: Vec<Event> = [0, 30, 61, 62, 63, 64, 65, 66].map(at).into();
        // 0 is out of the minute at 61; 30, 61 and 62 fire and the
        // window starts over; 63, 64 and 65 fire again.
        assert_eq!(fired(&mut d, &events), [3, 6]);

        let mut d = detector(&format!("{THREE_IN_A_MINUTE}rsigma.action: alert\n"));
        assert_eq!(fired(&mut d, &[0, 1, 2, 3].map(at)), [2, 3]);
    }

    /// A group's values come back as the firing's group key exactly, the
    /// separators of the key inside them and a value missing included; a
    /// value never runs into the next one.
    #[test]
    fn a_firing_carries_its_group_values() {
        let set = load_all(format!(
            "{BASE}---\ntitle: Correlated\nid: 6c0d2e1a-0000-4000-8000-000000000002\n\
             correlation:\n    rules: [6c0d2e1a-0000-4000-8000-000000000001]\n\
             \x20   group-by: [source.ip, user.name, host.name]\n{THREE_IN_A_MINUTE}"
        ));
        let mut d = Detector::new(&set).unwrap();
        let user = "3:a-#0:ü";
        let groups = |d: &mut Detector, events: &[Event]| -> Vec<Vec<(String, String)>> {
            d.evaluate(events)
                .into_iter()
                .filter(|h| h.correlation)
                .map(|h| h.group_key)
                .collect()
        };
        let events = [0, 1, 2].map(|s| failure("10.1.1.2", s, user));
        assert_eq!(
            groups(&mut d, &events),
            [vec![
                ("source.ip".to_owned(), "10.1.1.2".to_owned()),
                ("user.name".to_owned(), user.to_owned())
            ]]
        );
        // "1:a" then "-" is not "-" then "1:a": two groups, neither full.
        let mut a = failure("10.1.1.3", 3, "a");
        a.host_name = None;
        let mut b = failure("10.1.1.3", 4, "");
        b.user_name = None;
        b.host_name = Some("a".into());
        assert!(groups(&mut d, &[a.clone(), b, a]).is_empty());
    }

    /// An aliased group-by field is read from each rule's own field: the
    /// rule referred to by id through its id, the one referred to by name
    /// through its name.
    #[test]
    fn aliased_group_by_fields_resolve_per_rule() {
        let set = load_all(format!(
            "{BASE}---\ntitle: Success\nname: login_success\n\
             id: 6c0d2e1a-0000-4000-8000-000000000003\n\
             logsource:\n    product: linux\n    service: sshd\n\
             detection:\n    selection:\n        event.outcome: success\n    condition: selection\n\
             ---\ntitle: Failure then success\nid: 6c0d2e1a-0000-4000-8000-000000000002\n\
             correlation:\n    type: temporal\n\
             \x20   rules: [6c0d2e1a-0000-4000-8000-000000000001, login_success]\n\
             \x20   aliases:\n        peer:\n\
             \x20           6c0d2e1a-0000-4000-8000-000000000001: source.ip\n\
             \x20           login_success: destination.ip\n\
             \x20   group-by: [peer]\n    timespan: 1m\n"
        ));
        let mut d = Detector::new(&set).unwrap();
        let success = |ip: &str, secs| Event {
            outcome: Some("success".into()),
            source_ip: None,
            destination_ip: Some(ip.parse().unwrap()),
            ..failure("10.9.9.9", secs, "root")
        };
        let peers = |d: &mut Detector, events: &[Event]| -> Vec<Vec<(String, String)>> {
            d.evaluate(events)
                .into_iter()
                .filter(|h| h.correlation)
                .map(|h| h.group_key)
                .collect()
        };
        // A success towards another address completes nothing.
        assert!(
            peers(
                &mut d,
                &[failure("10.1.1.9", 0, "root"), success("10.1.1.8", 1)]
            )
            .is_empty()
        );
        assert_eq!(
            peers(&mut d, &[success("10.1.1.9", 2)]),
            [vec![("peer".to_owned(), "10.1.1.9".to_owned())]]
        );
    }

    /// `value_count` counts distinct values in the window; late events
    /// count with the values of their own minute only.
    #[test]
    fn value_count_counts_distinct_values_in_each_window() {
        let mut d = detector(
            "    type: value_count\n    timespan: 1m\n    condition:\n        field: user.name\n        gte: 3\n",
        );
        let ip = "10.1.1.3";
        let events = [
            failure(ip, 0, "a"),
            failure(ip, 10, "a"),
            failure(ip, 100, "b"),
            failure(ip, 110, "c"),
            failure(ip, 20, "d"),
        ];
        assert!(fired(&mut d, &events).is_empty());
        assert_eq!(fired(&mut d, &[failure(ip, 105, "e")]), [0]);
    }

    /// `value_count` in time order (its distinct values kept as entries
    /// come and go) and out of order by less than the timespan (an event
    /// fires when a window it falls in, one ending with it or with a newer
    /// event that has arrived, holds enough): the same firings as counting
    /// each of those windows anew.
    #[test]
    fn value_count_agrees_with_counting_each_window() {
        for late in [0, 50] {
            let mut d = detector(
                "    type: value_count\n    timespan: 1m\n    condition:\n        field: user.name\n        gte: 4\n\
                 rsigma.action: alert\n",
            );
            let mut seed = 11u64;
            let mut next = |n: u64| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) % n
            };
            let mut at = 0;
            // (time, user, arrival): each event late by up to `late` s.
            let mut events: Vec<(i64, String, i64)> = (0..2000)
                .map(|_| {
                    at += next(25) as i64;
                    (at, format!("u{}", next(6)), at + next(late + 1) as i64)
                })
                .collect();
            events.sort_by_key(|&(_, _, arrives)| arrives);
            let expected: Vec<usize> = (0..events.len())
                .filter(|&i| {
                    let arrived = &events[..=i];
                    let t = events[i].0;
                    let mut ends = arrived
                        .iter()
                        .map(|e| e.0)
                        .filter(|&e| e >= t && e <= t + 60);
                    ends.any(|end| {
                        let users: std::collections::HashSet<&str> = arrived
                            .iter()
                            .filter(|(s, _, _)| *s >= end - 60 && *s <= end)
                            .map(|(_, u, _)| u.as_str())
                            .collect();
                        users.len() >= 4
                    })
                })
                .collect();
            assert!(expected.len() > 100 && expected.len() < 1900, "{late}");
            let fed: Vec<Event> = events
                .iter()
                .map(|(t, u, _)| failure("10.1.1.5", *t, u))
                .collect();
            assert_eq!(fired(&mut d, &fed), expected, "late by up to {late} s");
        }
    }

    /// Groups are dropped least recently fed first once a set holds
    /// [`MAX_GROUPS`]; a group fed again stays.
    #[test]
    fn the_group_fed_longest_ago_is_dropped_at_the_cap() {
        let mut d = detector(THREE_IN_A_MINUTE);
        let (kept, dropped) = ("192.0.2.1", "192.0.2.2");
        d.evaluate(&[failure(dropped, 0, "x"), failure(kept, 0, "x")]);
        let others: Vec<Event> = (1..super::MAX_GROUPS as u32 + 1000)
            .map(|i| {
                let ip = match i % 1000 {
                    0 => kept.to_owned(),
                    _ => std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string(),
                };
                failure(&ip, i64::from(i), "x")
            })
            .collect();
        d.evaluate(&others);
        let all = &d.correlation.as_ref().unwrap().all;
        assert_eq!(all.groups(), super::MAX_GROUPS);
        let group = |ip: &str| format!("{}:{ip}#0", ip.len());
        assert!(all.groups.contains(group(kept).as_str()));
        assert!(!all.groups.contains(group(dropped).as_str()));
    }

    /// `temporal_ordered`: the rules in their order; at the same second in
    /// either order.
    #[test]
    fn temporal_ordered_wants_its_order() {
        let text = format!(
            "{BASE}---\ntitle: Success\nid: 6c0d2e1a-0000-4000-8000-000000000003\n\
             logsource:\n    product: linux\n    service: sshd\n\
             detection:\n    selection:\n        event.outcome: success\n    condition: selection\n\
             ---\ntitle: Then\nid: 6c0d2e1a-0000-4000-8000-000000000004\ncorrelation:\n\
             \x20   type: temporal_ordered\n\
             \x20   rules: [6c0d2e1a-0000-4000-8000-000000000001, 6c0d2e1a-0000-4000-8000-000000000003]\n\
             \x20   group-by: [source.ip]\n    timespan: 1m\n"
        );
        let set = load_all(text);
        let success = |ip, secs| Event {
            outcome: Some("success".into()),
            ..failure(ip, secs, "root")
        };
        let mut d = Detector::new(&set).unwrap();
        // Success first, then failure: not in order.
        assert!(
            fired(
                &mut d,
                &[success("10.2.0.1", 0), failure("10.2.0.1", 5, "r")]
            )
            .is_empty()
        );
        // Failure, then success; the success arriving first but stamped later.
        let mut d = Detector::new(&set).unwrap();
        assert_eq!(
            fired(
                &mut d,
                &[success("10.2.0.2", 10), failure("10.2.0.2", 5, "r")]
            ),
            [1]
        );
        // The same second, either order.
        let mut d = Detector::new(&set).unwrap();
        assert_eq!(
            fired(
                &mut d,
                &[success("10.2.0.3", 7), failure("10.2.0.3", 7, "r")]
            ),
            [1]
        );
    }

    /// A correlation fed by another's firings: the built-in brute force,
    /// then an accepted login from the same address.
    #[test]
    fn a_chained_correlation_fires_on_the_firing_it_refers_to() {
        const AFTER_BRUTE_FORCE: &str = "46a21241-a95e-41d0-a924-5298b3d3189e";
        let set = load(&rules::builtin());
        let ssh = |ip: &str, secs, outcome: &'static str| Event {
            category: Some("authentication".into()),
            action: Some("ssh_login".into()),
            outcome: Some(outcome.into()),
            ..failure(ip, secs, "root")
        };
        let raised = |events: Vec<Event>| -> Vec<usize> {
            let mut d = Detector::new(&set).unwrap();
            d.evaluate(&events)
                .into_iter()
                .filter(|u| u.rule_id == AFTER_BRUTE_FORCE)
                .map(|u| u.event)
                .collect()
        };
        let mut events: Vec<Event> = (0..6).map(|i| ssh("10.3.0.1", i, "failure")).collect();
        events.push(ssh("10.3.0.2", 20, "success"));
        events.push(ssh("10.3.0.1", 30, "success"));
        assert_eq!(raised(events), [7]);
        // Five failures are no brute force: the login raises nothing.
        let mut events: Vec<Event> = (0..5).map(|i| ssh("10.3.0.3", i, "failure")).collect();
        events.push(ssh("10.3.0.3", 30, "success"));
        assert!(raised(events).is_empty());
    }

    /// Windows secmon does not evaluate are refused with a reason.
    #[test]
    fn tumbling_windows_are_refused() {
        let source = rules::Source {
            name: "test.yml".into(),
            text: format!(
                "{BASE}---\ntitle: Tumbling\ncorrelation:\n    type: event_count\n\
                 \x20   rules: [6c0d2e1a-0000-4000-8000-000000000001]\n\
                 \x20   group-by: [source.ip]\n    timespan: 1m\n    window: tumbling\n\
                 \x20   condition:\n        gte: 3\n"
            ),
        };
        let set = load(&[source]);
        assert_eq!(set.correlations.len(), 0);
        assert!(
            set.rejected[0]
                .reason
                .contains("window: tumbling is not supported"),
            "{:?}",
            set.rejected
        );
    }
}
