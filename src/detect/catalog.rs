//! The rules as the API shows them, the checks a rule submitted over the
//! API passes before it is stored, and how the API asks for a reload.
//!
//! The daemon runs the built-in pack, the rule files and the rules stored
//! in redb (created over the API), less the disabled ones. [`Catalog`]
//! holds what the pack and the files last loaded as (the stored rules are
//! read from the store itself) and wakes the rules watcher after a change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rsigma_eval::Pipeline;
use rsigma_parser::{Level, SigmaCollection, Status};
use tokio::sync::{Notify, watch};

use super::locate;
use super::rules::{self, Problem, RuleSet, Source};
use crate::config::Detection;

/// Largest rule YAML the API takes.
pub const MAX_YAML_BYTES: usize = 256 * 1024;
/// Longest rule id.
pub const MAX_ID_BYTES: usize = 128;
/// Deepest nesting of a rule's YAML (serde-saphyr's budget refuses more
/// before anything recursive reads it).
pub const MAX_YAML_DEPTH: usize = 64;
/// Deepest nesting of a detection `condition`: parentheses plus `not`s in a
/// row. The condition parser recurses once per level.
pub const MAX_CONDITION_DEPTH: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Detection,
    Correlation,
    Filter,
}

/// Where a rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The pack shipped in the binary.
    Builtin,
    /// A file or folder of `detection.rules`.
    File,
    /// Created over the API, stored in redb.
    Api,
}

impl Origin {
    /// From a [`Source`] name: `builtin:<file>`, `api:<id>`, or a path.
    pub fn of(file: &str) -> Origin {
        if file.starts_with("builtin:") {
            Origin::Builtin
        } else if file.starts_with("api:") {
            Origin::Api
        } else {
            Origin::File
        }
    }
}

/// The [`Source`] name of a rule stored over the API.
pub fn api_source(id: &str) -> String {
    format!("api:{id}")
}

/// One rule (detection, correlation or filter) as the API lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleInfo {
    /// Its `id`, else its title ([`rules::rule_id`]).
    pub id: String,
    pub name: Option<String>,
    pub title: String,
    pub description: Option<String>,
    pub level: Option<Level>,
    pub status: Option<Status>,
    pub tags: Vec<String>,
    pub kind: Kind,
    pub origin: Origin,
    /// Its [`Source`] name.
    pub file: String,
    /// The rules a correlation builds on (ids or names).
    pub uses: Vec<String>,
    /// Its YAML document.
    pub yaml: String,
}

macro_rules! info {
    ($rule:expr, $kind:expr, $uses:expr, $file:expr, $yaml:expr) => {
        RuleInfo {
            id: rules::rule_id($rule.id.as_deref(), &$rule.title),
            name: $rule.name.clone(),
            title: $rule.title.clone(),
            description: $rule.description.clone(),
            level: $rule.level,
            status: $rule.status,
            tags: $rule.tags.clone(),
            kind: $kind,
            origin: Origin::of($file),
            file: $file.to_owned(),
            uses: $uses,
            yaml: $yaml,
        }
    };
}

/// Every rule of `set` (loaded from `sources`), with its own document of
/// its file.
pub fn loaded(set: &RuleSet, sources: &[Source]) -> Vec<RuleInfo> {
    let texts: HashMap<&str, &str> = sources
        .iter()
        .map(|s| (s.name.as_str(), s.text.as_str()))
        .collect();
    let doc = |file: &str, id: &Option<String>, title: &str| {
        let text = texts.get(file).copied().unwrap_or_default();
        document(text, id.as_deref(), title).to_owned()
    };
    let mut out = Vec::new();
    for l in &set.rules {
        let yaml = doc(&l.file, &l.rule.id, &l.rule.title);
        out.push(info!(l.rule, Kind::Detection, Vec::new(), &l.file, yaml));
    }
    for l in &set.correlations {
        let yaml = doc(&l.file, &l.rule.id, &l.rule.title);
        let uses = l.rule.rules.clone();
        out.push(info!(l.rule, Kind::Correlation, uses, &l.file, yaml));
    }
    for l in &set.filters {
        let yaml = doc(&l.file, &l.rule.id, &l.rule.title);
        out.push(info!(l.rule, Kind::Filter, Vec::new(), &l.file, yaml));
    }
    out
}

/// The document of a (multi-document) file that holds the rule `id`, else
/// the one with its title, else the whole text.
fn document<'a>(text: &'a str, id: Option<&str>, title: &str) -> &'a str {
    let docs = locate::documents(text);
    if docs.len() < 2 {
        return text;
    }
    // Its own `id:` line (other documents may refer to the id).
    let own_id = |d: &&(usize, &str)| {
        d.1.lines().any(|l| {
            l.strip_prefix("id:")
                .is_some_and(|v| Some(v.trim().trim_matches(['\'', '"'])) == id)
        })
    };
    docs.iter()
        .find(own_id)
        .or_else(|| docs.iter().find(|(_, d)| d.contains(title)))
        .map_or(text, |(_, d)| d)
}

/// The one rule of a YAML document, unchecked (a stored rule, to list it).
pub fn describe(yaml: &str, file: &str) -> Option<RuleInfo> {
    let collection = rsigma_parser::parse_sigma_yaml(yaml).ok()?;
    first(&collection, file, yaml)
}

fn first(collection: &SigmaCollection, file: &str, yaml: &str) -> Option<RuleInfo> {
    let yaml = yaml.to_owned();
    if let Some(r) = collection.rules.first() {
        return Some(info!(r, Kind::Detection, Vec::new(), file, yaml));
    }
    if let Some(c) = collection.correlations.first() {
        return Some(info!(c, Kind::Correlation, c.rules.clone(), file, yaml));
    }
    collection
        .filters
        .first()
        .map(|f| info!(f, Kind::Filter, Vec::new(), file, yaml))
}

/// Checks a rule submitted over the API as the daemon will load it: one
/// YAML document holding one detection rule, correlation or filter, with an
/// `id`, that parses, compiles with the field mapping and whose correlation
/// refers to rules that exist (`known`). Every problem has a line.
pub fn check(
    yaml: &str,
    pipeline: &Pipeline,
    known: impl Fn(&str) -> bool,
) -> Result<RuleInfo, Vec<Problem>> {
    if yaml.len() > MAX_YAML_BYTES {
        return Err(vec![Problem {
            reason: format!("a rule is at most {} KiB of YAML", MAX_YAML_BYTES / 1024),
            ..problem("", "")
        }]);
    }
    // serde-saphyr first: it places YAML errors precisely, tells a second
    // document apart, and bounds the nesting (its budget) before the Sigma
    // parser, which recurses, reads the YAML.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! { max_depth: MAX_YAML_DEPTH },
    };
    if let Err(e) = serde_saphyr::from_str_with_options::<serde::de::IgnoredAny>(yaml, options) {
        let text = e.to_string();
        let mut reason = yaml_reason(&text);
        if text.contains("multiple YAML documents") {
            reason = "one rule per request: a second YAML document starts here".to_owned();
        }
        let at = e.location();
        return Err(vec![Problem {
            line: Some(at.map_or(1, |l| l.line() as usize)),
            column: at.map(|l| l.column() as usize),
            reason,
            ..problem(yaml, "")
        }]);
    }
    if let Some(reason) = deep_condition(yaml) {
        return Err(vec![at_key(yaml, &["detection", "condition"], reason)]);
    }
    let collection =
        rsigma_parser::parse_sigma_yaml(yaml).map_err(|e| vec![problem(yaml, &e.to_string())])?;
    if !collection.errors.is_empty() {
        return Err(collection.errors.iter().map(|e| problem(yaml, e)).collect());
    }
    let found = collection.rules.len() + collection.correlations.len() + collection.filters.len();
    if found != 1 {
        return Err(vec![Problem {
            reason: format!("one rule per request: the YAML holds {found}"),
            ..problem(yaml, "")
        }]);
    }
    let id_field = collection
        .rules
        .first()
        .map(|r| &r.id)
        .or(collection.correlations.first().map(|c| &c.id))
        .or(collection.filters.first().map(|f| &f.id));
    match id_field.and_then(Option::as_deref) {
        None => {
            return Err(vec![Problem {
                reason: "the rule has no `id`: the API names rules by it (give it a new UUID)"
                    .to_owned(),
                ..problem(yaml, "")
            }]);
        }
        Some(id) if id.len() > MAX_ID_BYTES || id.trim().is_empty() => {
            return Err(vec![at_key(
                yaml,
                &["id"],
                format!("the `id` must be 1 to {MAX_ID_BYTES} bytes"),
            )]);
        }
        Some(_) => {}
    }
    if let Some(rule) = collection.rules.first() {
        let mut rule = rule.clone();
        rsigma_eval::apply_pipelines(std::slice::from_ref(pipeline), &mut rule)
            .and_then(|()| rsigma_eval::compile_rule(&rule))
            .map_err(|e| vec![problem(yaml, &e.to_string())])?;
    }
    if let Some(corr) = collection.correlations.first() {
        let own = [corr.id.as_deref(), corr.name.as_deref()];
        let missing: Vec<&str> = corr
            .rules
            .iter()
            .map(String::as_str)
            .filter(|r| !own.contains(&Some(*r)) && !known(r))
            .collect();
        if !missing.is_empty() {
            return Err(vec![at_key(
                yaml,
                &["correlation", "rules"],
                format!("refers to rules that do not exist: {}", missing.join(", ")),
            )]);
        }
        super::correlate::check(corr).map_err(|e| vec![problem(yaml, &e)])?;
    }
    if let Some(filter) = collection.filters.first() {
        rsigma_eval::Engine::new()
            .apply_filter(filter)
            .map_err(|e| vec![problem(yaml, &e.to_string())])?;
    }
    let id = id_field.and_then(Option::as_deref).unwrap_or_default();
    first(&collection, &api_source(id), yaml).ok_or_else(|| vec![problem(yaml, "no rule")])
}

/// Why a `condition` of `yaml` is too deep to parse, or why its conditions
/// cannot be checked, if either (see [`condition_depth`]); the YAML was
/// checked already. Every string (or list of strings) under a key named
/// `condition`, at any level, is checked: the Sigma parser reads one in
/// `detection`, in array blocks, in filters and in correlations. A rule
/// that does not convert to plain data (a complex key such as `? [a]: b`)
/// is refused: its conditions could reach the parser unchecked.
fn deep_condition(yaml: &str) -> Option<String> {
    let Ok(doc) = serde_saphyr::from_str::<serde_json::Value>(yaml) else {
        return Some(
            "the rule cannot be checked: use plain keys (strings, not lists, maps or `?` complex keys)"
                .to_owned(),
        );
    };
    let too_deep = |c: &serde_json::Value| {
        c.as_str()
            .is_some_and(|c| condition_depth(c) > MAX_CONDITION_DEPTH)
    };
    // An explicit stack: the nesting is bounded, but it is client data.
    let mut stack = vec![&doc];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    let deep = match value {
                        serde_json::Value::Array(items) if key == "condition" => {
                            items.iter().any(too_deep)
                        }
                        _ => key == "condition" && too_deep(value),
                    };
                    if deep {
                        return Some(format!(
                            "the condition nests deeper than {MAX_CONDITION_DEPTH} levels (parentheses and `not`s): flatten it"
                        ));
                    }
                    stack.push(value);
                }
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    None
}

/// The deepest nesting of a Sigma condition, in one linear pass:
/// open parentheses plus the `not`s in a row before a term.
pub fn condition_depth(condition: &str) -> usize {
    let b = condition.as_bytes();
    let (mut parens, mut nots, mut deepest) = (0usize, 0usize, 0usize);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'(' => parens += 1,
            b')' => {
                parens = parens.saturating_sub(1);
                nots = 0;
            }
            c if c.is_ascii_whitespace() => {}
            _ => {
                let start = i;
                while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'(' && b[i] != b')' {
                    i += 1;
                }
                if b[start..i].eq_ignore_ascii_case(b"not") {
                    nots += 1;
                } else {
                    nots = 0;
                }
                deepest = deepest.max(parens + nots);
                continue;
            }
        }
        deepest = deepest.max(parens + nots);
        i += 1;
    }
    deepest
}

/// A problem with a rule submitted over the API: the line (1, the
/// document, when the error names no place) and column it is about.
pub fn problem(yaml: &str, error: &str) -> Problem {
    let mut p = rules::problem(
        &Source {
            name: "api".to_owned(),
            text: yaml.to_owned(),
        },
        error,
    );
    p.line = p.line.or(Some(1));
    p
}

fn at_key(yaml: &str, path: &[&str], reason: String) -> Problem {
    let at = locate::key(yaml, path);
    Problem {
        line: Some(at.map_or(1, |p| p.line)),
        column: at.and_then(|p| p.column),
        reason,
        ..problem(yaml, "")
    }
}

/// serde-saphyr's message without its `error: line N column M:` prefix
/// and the snippet below it.
fn yaml_reason(text: &str) -> String {
    let first = text.lines().next().unwrap_or(text);
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let reason = match first.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map_or(first, |(_, r)| r),
        None => first,
    };
    format!("invalid YAML: {reason}")
}

/// What the API knows of the running rules, and how it asks for a reload.
pub struct Catalog {
    /// The detection config: the field mapping rules are checked with.
    pub config: Detection,
    /// The built-in and file rules as last loaded, disabled ones included.
    loaded: RwLock<Arc<Vec<Arc<RuleInfo>>>>,
    wake: Notify,
    /// Changes asked for so far.
    requested: AtomicU64,
    /// The last change whose rules the writer has (queued before any event
    /// submitted after it).
    applied: watch::Sender<u64>,
}

impl Catalog {
    pub fn new(config: Detection, loaded: Vec<RuleInfo>) -> Catalog {
        Catalog {
            config,
            loaded: RwLock::new(Arc::new(loaded.into_iter().map(Arc::new).collect())),
            wake: Notify::new(),
            requested: AtomicU64::new(0),
            applied: watch::Sender::new(0),
        }
    }

    /// The built-in and file rules as last loaded.
    pub fn loaded(&self) -> Arc<Vec<Arc<RuleInfo>>> {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_loaded(&self, rules: Vec<RuleInfo>) {
        let rules = rules.into_iter().map(Arc::new).collect();
        *self.loaded.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(rules);
    }

    /// After a committed change: wakes the rules watcher. Returns the
    /// change's number, for [`Catalog::wait_applied`].
    pub fn request_reload(&self) -> u64 {
        let change = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        self.wake.notify_one();
        change
    }

    /// For the rules watcher: resolves on the next [`Catalog::request_reload`]
    /// (or at once if one came since the last wake).
    pub async fn reload_requested(&self) {
        self.wake.notified().await;
    }

    /// For the rules watcher, before it reads the rules: the changes its
    /// reload will cover.
    pub fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// For the rules watcher: the rules of the changes up to `change` are
    /// with the writer (or failed to load and never will be).
    pub fn mark_applied(&self, change: u64) {
        self.applied.send_if_modified(|v| {
            let newer = change > *v;
            if newer {
                *v = change;
            }
            newer
        });
    }

    /// Waits (at most `timeout`) until the writer has the rules of change
    /// `change`: an event submitted after that is evaluated by them. True
    /// when it has; at once when detection is off.
    pub async fn wait_applied(&self, change: u64, timeout: Duration) -> bool {
        if !self.config.enabled {
            return true;
        }
        let mut applied = self.applied.subscribe();
        matches!(
            tokio::time::timeout(timeout, applied.wait_for(|&v| v >= change)).await,
            Ok(Ok(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline() -> Pipeline {
        let mapping = rules::FieldMapping::shipped(&Default::default()).unwrap();
        mapping.pipeline(&Default::default()).unwrap()
    }

    fn problems(yaml: &str) -> Vec<(usize, Option<usize>, String)> {
        check(yaml, &pipeline(), |_| false)
            .unwrap_err()
            .into_iter()
            .map(|p| (p.line.unwrap(), p.column, p.reason))
            .collect()
    }

    const HEAD: &str =
        "title: Whoami\nid: 0b7c2d5e-5f3a-4c1e-9a57-3b0c8f1d2e64\nlogsource:\n    product: linux\n";

    #[test]
    fn a_valid_rule_is_described() {
        let yaml = format!(
            "{HEAD}detection:\n    selection:\n        process.command_line|contains: whoami\n    condition: selection\nlevel: high\ntags:\n    - attack.discovery\n"
        );
        let info = check(&yaml, &pipeline(), |_| false).unwrap();
        assert_eq!(info.id, "0b7c2d5e-5f3a-4c1e-9a57-3b0c8f1d2e64");
        assert_eq!(info.title, "Whoami");
        assert_eq!(info.level, Some(Level::High));
        assert_eq!(info.tags, ["attack.discovery"]);
        assert_eq!(info.origin, Origin::Api);
        assert_eq!(info.kind, Kind::Detection);
        assert_eq!(info.yaml, yaml);
    }

    #[test]
    fn a_rule_whose_condition_cannot_be_checked_is_refused() {
        let yaml = format!(
            "{HEAD}? [a]\n: b\ndetection:\n    selection:\n        message: x\n    condition: selection\n"
        );
        let problems = check(&yaml, &pipeline(), |_| false).unwrap_err();
        assert!(
            problems[0].reason.starts_with("the rule cannot be checked"),
            "{problems:?}"
        );
        assert!(deep_condition(&yaml).is_some());
        // A plain rule is checked, and passes.
        let plain = format!(
            "{HEAD}detection:\n    selection:\n        message: x\n    condition: [selection, not selection]\n"
        );
        assert_eq!(deep_condition(&plain), None);
        // Every built-in rule is checked, and passes.
        for (file, text) in crate::detect::rules::BUILTIN {
            let mut doc = String::new();
            for line in text.lines().chain(["---"]) {
                if line.trim_end() == "---" {
                    if !doc.trim().is_empty() {
                        assert_eq!(deep_condition(&doc), None, "{file}:\n{doc}");
                    }
                    doc.clear();
                } else {
                    doc.push_str(line);
                    doc.push('\n');
                }
            }
        }
    }

    #[test]
    fn condition_depth_counts_parentheses_and_nots() {
        assert_eq!(condition_depth("selection"), 0);
        assert_eq!(condition_depth("a and (b or (c and not d))"), 3);
        assert_eq!(condition_depth("not not not a"), 3);
        assert_eq!(condition_depth("(not (a))"), 3);
        assert_eq!(condition_depth("nothing and notes"), 0);
        assert_eq!(condition_depth(")))((("), 3);
    }

    #[test]
    fn deep_rules_are_refused_before_the_sigma_parser_reads_them() {
        let rule = |condition: &str| {
            format!(
                "{HEAD}detection:\n    selection:\n        message: x\n    condition: {condition}\n"
            )
        };
        // Each refused with a reason and a line, on a 2 MiB stack.
        let deep = [
            rule(&format!(
                "{}selection{}",
                "(".repeat(100_000),
                ")".repeat(100_000)
            )),
            rule(&format!("{}selection", "not ".repeat(50_000))),
            rule(&format!(
                "'{}selection{}'",
                "(".repeat(MAX_CONDITION_DEPTH + 1),
                ")".repeat(MAX_CONDITION_DEPTH + 1)
            )),
            format!(
                "{HEAD}detection:\n    selection:\n        message: {}x{}\n    condition: selection\n",
                "[".repeat(100_000),
                "]".repeat(100_000)
            ),
            format!(
                "{HEAD}detection:\n    selection:\n        message: {}x{}\n    condition: selection\n",
                "{a: ".repeat(MAX_YAML_DEPTH),
                "}".repeat(MAX_YAML_DEPTH)
            ),
            format!(
                "{HEAD}detection:\n    selection:\n        message: {}x\n    condition: selection\n",
                "- ".repeat(10_000)
            ),
            // A complex key: the rule does not convert to plain data, so its
            // condition could not be checked (it used to pass unchecked).
            format!(
                "{HEAD}? [a]\n: b\ndetection:\n    selection:\n        message: x\n    condition: {}selection{}\n",
                "(".repeat(100_000),
                ")".repeat(100_000)
            ),
            // Conditions the Sigma parser reads outside `detection.condition`.
            format!(
                "{HEAD}detection:\n    selection:\n        - message: x\n          condition: {}selection{}\n    condition: selection\n",
                "(".repeat(100_000),
                ")".repeat(100_000)
            ),
            format!(
                "title: t\nid: 5d1f3c3e-9a7e-4d0b-8b53-2b9d0e6c1a77\ncorrelation:\n    type: temporal\n    rules: [a, b]\n    timespan: 5m\n    condition: {}a and b{}\n",
                "(".repeat(100_000),
                ")".repeat(100_000)
            ),
        ];
        for yaml in deep {
            let short: String = yaml.chars().skip(HEAD.len()).take(60).collect();
            let refused = std::thread::Builder::new()
                .stack_size(2 * 1024 * 1024)
                .spawn(move || check(&yaml, &pipeline(), |_| false).err())
                .unwrap()
                .join()
                .unwrap_or_else(|_| panic!("{short}"));
            let problems = refused.unwrap_or_else(|| panic!("accepted: {short}"));
            assert!(problems[0].line.is_some(), "{short}: {problems:?}");
        }
        // The deepest condition allowed compiles.
        let ok = rule(&format!(
            "{}selection{}",
            "(".repeat(MAX_CONDITION_DEPTH),
            ")".repeat(MAX_CONDITION_DEPTH)
        ));
        std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || check(&ok, &pipeline(), |_| false).unwrap())
            .unwrap()
            .join()
            .unwrap();
    }

    /// Each kind of mistake comes back with the line (and column) to fix.
    #[test]
    fn problems_name_their_line() {
        // YAML syntax: serde-saphyr's position.
        assert_eq!(
            problems(&format!("{HEAD} detection:\n    selection: x\n")),
            [(
                5,
                Some(2),
                "invalid YAML: while parsing a block mapping, did not find expected key".into()
            )]
        );
        // A condition that does not parse: the place in the condition.
        let p = problems(&format!(
            "{HEAD}detection:\n    selection:\n        message: x\n    condition: selection and\n"
        ));
        assert_eq!((p[0].0, p[0].1), (8, Some(29)), "{p:?}");
        assert!(p[0].2.starts_with("invalid condition: "), "{p:?}");
        // A Sigma error with no position: the key it is about.
        assert_eq!(
            problems(&format!(
                "{HEAD}detection:\n    selection:\n        message|foo: x\n    condition: selection\n"
            )),
            [(7, Some(17), "Unknown modifier 'foo'".into())]
        );
        assert_eq!(
            problems(&format!(
                "{HEAD}detection:\n    selection:\n        message: x\n"
            )),
            [(5, Some(1), "Missing required field 'condition'".into())]
        );
        // Compile errors.
        assert_eq!(
            problems(&format!(
                "{HEAD}detection:\n    selection:\n        message|re: '(x'\n    condition: selection\n"
            )),
            [(
                7,
                Some(17),
                "invalid regex pattern: regex parse error:".into()
            )]
        );
        assert_eq!(
            problems(&format!(
                "{HEAD}detection:\n    selection:\n        message: x\n    condition: selectoin\n"
            )),
            [(
                8,
                Some(16),
                "unknown detection identifier: selectoin".into()
            )]
        );
        // What the API asks of a rule.
        assert_eq!(
            problems(&format!(
                "{HEAD}detection:\n    selection:\n        message: x\n    condition: selection\n---\n{HEAD}"
            )),
            [(
                10,
                Some(1),
                "one rule per request: a second YAML document starts here".into()
            )]
        );
        assert_eq!(
            problems(
                "title: No id\nlogsource:\n    product: linux\ndetection:\n    selection:\n        message: x\n    condition: selection\n"
            ),
            [(
                1,
                None,
                "the rule has no `id`: the API names rules by it (give it a new UUID)".into()
            )]
        );
        assert_eq!(
            problems(
                "title: Count\nid: c1\ncorrelation:\n    type: event_count\n    rules:\n        - nowhere\n    group-by: [source.ip]\n    timespan: 5m\n    condition:\n        gte: 3\n"
            ),
            [(
                5,
                Some(5),
                "refers to rules that do not exist: nowhere".into()
            )]
        );
        // A filter the engine cannot compile.
        assert_eq!(
            problems(
                "title: F\nid: f1\nlogsource:\n    product: linux\nfilter:\n    rules:\n        - x\n    selection:\n        message|re: '(x'\n    condition: not selection\n"
            ),
            [(
                9,
                Some(17),
                "invalid regex pattern: regex parse error:".into()
            )]
        );
        assert_eq!(problems("")[0].0, 1);
    }

    #[test]
    fn a_rule_of_a_multi_document_file_is_listed_with_its_own_document() {
        let builtin = rules::builtin();
        let mapping = rules::FieldMapping::shipped(&Default::default()).unwrap();
        let set = rules::load(&builtin, &mapping, &pipeline());
        let infos = loaded(&set, &builtin);
        let brute = infos
            .iter()
            .find(|i| i.id == "443f2c4e-156b-49bf-a0a7-b193b705812c")
            .unwrap();
        assert_eq!(brute.kind, Kind::Correlation);
        assert_eq!(brute.origin, Origin::Builtin);
        assert_eq!(brute.file, "builtin:ssh_bruteforce.yml");
        assert!(brute.yaml.contains("correlation:"));
        assert_eq!(brute.yaml.matches("title:").count(), 1, "{}", brute.yaml);
        assert!(!brute.uses.is_empty());
        assert_eq!(
            describe(&brute.yaml, "x").map(|i| i.title),
            Some(brute.title.clone())
        );
    }
}
