//! Loading Sigma rules: the built-in pack shipped in the binary and rule
//! files from folders, each parsed on its own so that every rejection names
//! its file, a line and the reason. Rules are renamed through the field
//! mapping (a pySigma-style processing pipeline built from
//! `rules/field-mapping.yml` and the config) once, when they are loaded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use rsigma_eval::Pipeline;
use rsigma_parser::{CorrelationRule, FilterRule, SigmaCollection, SigmaRule};
use serde::Deserialize;

use super::locate;

/// The built-in Linux pack (docs/RULES.md): (file name, YAML).
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "account_changes.yml",
        include_str!("../../rules/builtin/account_changes.yml"),
    ),
    (
        "auditd_suspicious_exec.yml",
        include_str!("../../rules/builtin/auditd_suspicious_exec.yml"),
    ),
    (
        "cron_modification.yml",
        include_str!("../../rules/builtin/cron_modification.yml"),
    ),
    (
        "firewall_port_scan.yml",
        include_str!("../../rules/builtin/firewall_port_scan.yml"),
    ),
    (
        "ssh_authorized_keys_modification.yml",
        include_str!("../../rules/builtin/ssh_authorized_keys_modification.yml"),
    ),
    (
        "ssh_bruteforce.yml",
        include_str!("../../rules/builtin/ssh_bruteforce.yml"),
    ),
    (
        "service_bruteforce.yml",
        include_str!("../../rules/builtin/service_bruteforce.yml"),
    ),
    (
        "ssh_root_login.yml",
        include_str!("../../rules/builtin/ssh_root_login.yml"),
    ),
    (
        "sudo_su_failures.yml",
        include_str!("../../rules/builtin/sudo_su_failures.yml"),
    ),
    (
        "sudoers_modification.yml",
        include_str!("../../rules/builtin/sudoers_modification.yml"),
    ),
    (
        "web_scanning.yml",
        include_str!("../../rules/builtin/web_scanning.yml"),
    ),
];

/// The shipped Sigma taxonomy -> secmon field table.
const FIELD_MAPPING: &str = include_str!("../../rules/field-mapping.yml");

/// A rule file's text and where it came from.
pub struct Source {
    /// The file path, or `builtin:<name>`.
    pub name: String,
    pub text: String,
}

/// Why a rule (or a whole file) was not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The rule's title, when the file held several.
    pub rule: Option<String>,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(rule) = &self.rule {
            write!(f, " ({rule})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// One loaded rule and its file.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    pub file: String,
    pub rule: T,
}

/// The rules that loaded (already renamed by the field mapping), and why
/// the others did not.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Loaded<SigmaRule>>,
    pub correlations: Vec<Loaded<CorrelationRule>>,
    pub filters: Vec<Loaded<FilterRule>>,
    pub files: usize,
    pub rejected: Vec<Problem>,
    /// Loaded, but something deserves a look (a field no mapping knows).
    pub warnings: Vec<Problem>,
}

impl RuleSet {
    /// All loaded rules as one collection, for the engines.
    pub fn collection(&self) -> SigmaCollection {
        SigmaCollection {
            rules: self.rules.iter().map(|l| l.rule.clone()).collect(),
            correlations: self.correlations.iter().map(|l| l.rule.clone()).collect(),
            filters: self.filters.iter().map(|l| l.rule.clone()).collect(),
            errors: Vec::new(),
        }
    }

    /// Leaves out the rules, correlations and filters whose [`rule_id`] is
    /// in `ids`; the correlations that need one of them are rejected.
    pub fn disable(&mut self, ids: &HashSet<String>) {
        if ids.is_empty() {
            return;
        }
        let off = |id: &Option<String>, title: &str| ids.contains(&rule_id(id.as_deref(), title));
        self.rules.retain(|l| !off(&l.rule.id, &l.rule.title));
        self.correlations
            .retain(|l| !off(&l.rule.id, &l.rule.title));
        self.filters.retain(|l| !off(&l.rule.id, &l.rule.title));
        check_correlations(self);
    }

    /// The longest correlation timespan, in seconds (0 without correlations).
    pub fn longest_timespan(&self) -> u64 {
        self.correlations
            .iter()
            .map(|c| c.rule.timespan.seconds)
            .max()
            .unwrap_or(0)
    }
}

/// How the API and alerts name a rule: its `id`, else its title.
pub fn rule_id(id: Option<&str>, title: &str) -> String {
    id.unwrap_or(title).to_owned()
}

/// The field mapping: Sigma field name -> secmon field names (alternatives).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FieldMapping {
    pub fields: BTreeMap<String, Vec<String>>,
    /// Sigma fields with no secmon equivalent (documented, not mapped).
    #[serde(default)]
    pub unmapped: Vec<String>,
}

impl FieldMapping {
    /// The shipped table, with `overrides` (from the config) replacing
    /// entries of the same name.
    pub fn shipped(overrides: &BTreeMap<String, Vec<String>>) -> Result<FieldMapping, String> {
        let mut mapping: FieldMapping = serde_saphyr::from_str(FIELD_MAPPING)
            .map_err(|e| format!("the shipped field mapping is invalid: {e}"))?;
        for (k, v) in overrides {
            mapping.fields.insert(k.clone(), v.clone());
        }
        Ok(mapping)
    }

    /// A processing pipeline renaming Sigma fields to secmon's, and
    /// expanding `%placeholder%` values (the `expand` modifier).
    pub fn pipeline(
        &self,
        placeholders: &BTreeMap<String, Vec<String>>,
    ) -> Result<Pipeline, String> {
        // JSON is YAML: the crate's own pipeline parser builds it.
        let doc = serde_json::json!({
            "name": "secmon",
            "vars": placeholders,
            "transformations": [
                {"id": "placeholders", "type": "value_placeholders"},
                {"id": "field_mapping", "type": "field_name_mapping", "mapping": self.fields},
            ],
        });
        rsigma_eval::parse_pipeline(&doc.to_string()).map_err(|e| format!("field mapping: {e}"))
    }

    /// The first secmon name of a Sigma field (for correlation group-by and
    /// value fields, which the pipeline does not rename).
    fn rename(&self, field: &str) -> String {
        self.fields
            .get(field)
            .and_then(|v| v.first())
            .cloned()
            .unwrap_or_else(|| field.to_owned())
    }
}

/// The rule files under `paths` (files or folders, recursively; `.yml` and
/// `.yaml`), in a stable order. Unreadable paths are problems.
pub fn read_paths(paths: &[PathBuf]) -> (Vec<Source>, Vec<Problem>) {
    let (files, mut problems) = rule_files(paths);
    let mut sources = Vec::new();
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => sources.push(Source {
                name: file.display().to_string(),
                text,
            }),
            Err(e) => problems.push(Problem {
                file: file.display().to_string(),
                line: None,
                column: None,
                rule: None,
                reason: format!("cannot read: {e}"),
            }),
        }
    }
    (sources, problems)
}

/// The rule files under `paths` (files or folders, recursively; `.yml` and
/// `.yaml`), sorted, without reading them.
pub fn rule_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Problem>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        collect_files(path, &mut files, &mut problems);
    }
    files.sort();
    (files, problems)
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>, problems: &mut Vec<Problem>) {
    let problem = |reason: String| Problem {
        file: path.display().to_string(),
        line: None,
        column: None,
        rule: None,
        reason,
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => match std::fs::read_dir(path) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let p = entry.path();
                    if p.is_dir() {
                        collect_files(&p, out, problems);
                    } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml"))
                    {
                        out.push(p);
                    }
                }
            }
            Err(e) => problems.push(problem(format!("cannot list: {e}"))),
        },
        Ok(_) => out.push(path.to_owned()),
        Err(e) => problems.push(problem(format!("cannot read: {e}"))),
    }
}

/// The built-in pack as sources.
pub fn builtin() -> Vec<Source> {
    BUILTIN
        .iter()
        .map(|(name, text)| Source {
            name: format!("builtin:{name}"),
            text: (*text).to_owned(),
        })
        .collect()
}

/// Parses and compiles every source; what does not load is in `rejected`.
/// A rule with the same id as an earlier one replaces it (so a rule folder
/// can override a built-in rule).
pub fn load(sources: &[Source], mapping: &FieldMapping, pipeline: &Pipeline) -> RuleSet {
    let mut set = RuleSet {
        files: sources.len(),
        ..RuleSet::default()
    };
    let pipelines = std::slice::from_ref(pipeline);
    for source in sources {
        let collection = match rsigma_parser::parse_sigma_yaml(&source.text) {
            Ok(c) => c,
            Err(e) => {
                set.rejected.push(problem(source, &e.to_string()));
                continue;
            }
        };
        let loaded =
            collection.rules.len() + collection.correlations.len() + collection.filters.len();
        for error in &collection.errors {
            let problem = problem(source, error);
            // The parser also reports non-fatal findings for rules it keeps.
            if loaded == 0 {
                set.rejected.push(problem);
            } else {
                set.warnings.push(problem);
            }
        }
        for mut rule in collection.rules {
            let title = rule.title.clone();
            let compiled = rsigma_eval::apply_pipelines(pipelines, &mut rule)
                .and_then(|()| rsigma_eval::compile_rule(&rule));
            match compiled {
                Ok(_) => {
                    lint(source, &rule, &mut set.warnings);
                    replace_or_push(&mut set.rules, &source.name, rule, |r| r.id.clone());
                }
                Err(e) => set
                    .rejected
                    .push(rule_problem(source, &title, &e.to_string())),
            }
        }
        for mut corr in collection.correlations {
            corr.group_by = corr.group_by.iter().map(|f| mapping.rename(f)).collect();
            require_every_rule(&mut corr);
            cap_event_count_windows(&mut corr);
            if let rsigma_parser::CorrelationCondition::Threshold {
                field: Some(fields),
                ..
            } = &mut corr.condition
            {
                *fields = fields.iter().map(|f| mapping.rename(f)).collect();
            }
            replace_or_push(&mut set.correlations, &source.name, corr, |c| c.id.clone());
        }
        for filter in collection.filters {
            // A filter the engine cannot compile would fail the whole set.
            match rsigma_eval::Engine::new().apply_filter(&filter) {
                Ok(()) => set.filters.push(Loaded {
                    file: source.name.clone(),
                    rule: filter,
                }),
                Err(e) => set
                    .rejected
                    .push(rule_problem(source, &filter.title, &e.to_string())),
            }
        }
    }
    check_correlations(&mut set);
    set
}

/// The specification: a `temporal` correlation without a condition fires
/// when ALL its rules matched within the timespan. rsigma defaults the
/// condition to `gte: 1` (any one rule), so a missing or default condition
/// becomes `gte: <number of rules>`.
fn require_every_rule(corr: &mut CorrelationRule) {
    use rsigma_parser::{ConditionOperator, CorrelationCondition, CorrelationType};
    if !matches!(
        corr.correlation_type,
        CorrelationType::Temporal | CorrelationType::TemporalOrdered
    ) {
        return;
    }
    if let CorrelationCondition::Threshold {
        predicates,
        field: None,
        ..
    } = &mut corr.condition
        && predicates.as_slice() == [(ConditionOperator::Gte, 1)]
    {
        predicates[0].1 = corr.rules.len() as u64;
    }
}

/// An `event_count` window needs no more entries than its condition's
/// largest number plus one (`gte: 6` is decided by the newest 6), so unless
/// the rule sets `rsigma.max_group_entries` itself, its groups keep that
/// many: 100 000 groups then hold kilobytes each, not megabytes.
fn cap_event_count_windows(corr: &mut CorrelationRule) {
    use rsigma_parser::{CorrelationCondition, CorrelationType};
    const KEY: &str = "rsigma.max_group_entries";
    if corr.correlation_type != CorrelationType::EventCount
        || corr.custom_attributes.contains_key(KEY)
    {
        return;
    }
    if let CorrelationCondition::Threshold { predicates, .. } = &corr.condition
        && let Some(largest) = predicates.iter().map(|&(_, n)| n).max()
    {
        let cap = largest
            .saturating_add(1)
            .min(super::correlate::MAX_GROUP_ENTRIES as u64);
        corr.custom_attributes
            .insert(KEY.to_owned(), yaml_serde::Value::String(cap.to_string()));
    }
}

fn replace_or_push<T>(
    list: &mut Vec<Loaded<T>>,
    file: &str,
    rule: T,
    id: impl Fn(&T) -> Option<String>,
) {
    let loaded = Loaded {
        file: file.to_owned(),
        rule,
    };
    match id(&loaded.rule)
        .and_then(|i| list.iter().position(|l| id(&l.rule).as_deref() == Some(&i)))
    {
        Some(at) => list[at] = loaded,
        None => list.push(loaded),
    }
}

/// Rejects correlations whose rule references resolve to nothing or that
/// secmon cannot evaluate ([`super::correlate::check`]).
fn check_correlations(set: &mut RuleSet) {
    let mut known: HashSet<String> = HashSet::new();
    for r in &set.rules {
        known.extend(r.rule.id.clone());
        known.extend(r.rule.name.clone());
    }
    for c in &set.correlations {
        known.extend(c.rule.id.clone());
        known.extend(c.rule.name.clone());
    }
    let mut kept = Vec::new();
    for c in std::mem::take(&mut set.correlations) {
        let missing: Vec<&String> = c
            .rule
            .rules
            .iter()
            .filter(|r| !known.contains(*r))
            .collect();
        let problem = if !missing.is_empty() {
            Some(format!(
                "refers to rules that did not load, are disabled or do not exist: {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        } else {
            super::correlate::check(&c.rule).err()
        };
        match problem {
            Some(reason) => set.rejected.push(Problem {
                file: c.file.clone(),
                line: None,
                column: None,
                rule: Some(c.rule.title.clone()),
                reason,
            }),
            None => kept.push(c),
        }
    }
    set.correlations = kept;
}

/// Warns about fields that neither the mapping nor secmon's event knows.
fn lint(source: &Source, rule: &SigmaRule, warnings: &mut Vec<Problem>) {
    let collection = SigmaCollection {
        rules: vec![rule.clone()],
        correlations: Vec::new(),
        filters: Vec::new(),
        errors: Vec::new(),
    };
    let fields = rsigma_eval::RuleFieldSet::collect(&collection, &[], false);
    let unknown: Vec<&str> = fields
        .names()
        // A dotted name is a path into the event (`fields.*`, `labels.*`);
        // a bare name that is not an event field is a Sigma name no mapping
        // renamed.
        .filter(|f| !f.contains('.') && !crate::model::KNOWN_FIELDS.contains(f))
        .collect();
    if !unknown.is_empty() {
        warnings.push(Problem {
            file: source.name.clone(),
            line: line_of(&source.text, &rule.title),
            column: None,
            rule: Some(rule.title.clone()),
            reason: format!(
                "uses fields no mapping knows (they match nothing): {}",
                unknown.join(", ")
            ),
        });
    }
}

/// A problem with the whole file; the line and a clearer reason where the
/// parser's message allows.
pub(crate) fn problem(source: &Source, error: &str) -> Problem {
    let at = locate::locate(&source.text, error);
    let (mut line, mut column) = (at.map(|p| p.line), at.and_then(|p| p.column));
    let mut reason = first_line(error).to_owned();
    if error.contains("Condition parse error") {
        let old_syntax = source.text.lines().any(|l| {
            let l: String = l.chars().filter(|c| !c.is_whitespace()).collect();
            l.contains("condition:") && (l.contains("|count(") || l.contains("|near"))
        });
        if old_syntax {
            // About the whole condition, not a place in it.
            column = None;
            line = line.or_else(|| condition_line(&source.text));
            reason = "unsupported: the condition uses the old Sigma aggregation syntax \
                      (`| count() by ...` / `| near ...`), which the Sigma 2 specification \
                      replaced with correlation rules; rewrite it as a correlation rule"
                .to_owned();
        } else {
            reason = format!("invalid condition: {}", condition_reason(error));
        }
    }
    Problem {
        file: source.name.clone(),
        line,
        column,
        rule: None,
        reason,
    }
}

/// A rule of `source` that did not compile: the place in its document the
/// error points at, else the line of its title.
fn rule_problem(source: &Source, title: &str, error: &str) -> Problem {
    let docs = locate::documents(&source.text);
    let doc = docs
        .iter()
        .find(|(_, text)| text.contains(title))
        .or(docs.first());
    let at = doc.and_then(|&(first, text)| {
        locate::locate(text, error).map(|p| (p.line + first - 1, p.column))
    });
    Problem {
        file: source.name.clone(),
        line: at.map(|a| a.0).or_else(|| line_of(&source.text, title)),
        column: at.and_then(|a| a.1),
        rule: Some(title.to_owned()),
        reason: first_line(error).to_owned(),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim()
}

/// What was expected (the last line of pest's message), without the
/// position (the problem has it).
fn condition_reason(error: &str) -> String {
    let at = first_line(error);
    if let Some(reason) = at.strip_prefix("Condition parse error: ") {
        return reason.to_owned();
    }
    let expected = error
        .lines()
        .rev()
        .find(|l| l.contains('='))
        .and_then(|l| l.split_once('='))
        .map(|(_, e)| e.trim());
    expected.unwrap_or(at).to_owned()
}

fn condition_line(text: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.trim_start().starts_with("condition:"))
        .map(|i| i + 1)
}

/// The line that holds `needle` (a rule's title), 1-based.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

/// Per-rule routing: the datasets whose events a rule can match, from its
/// logsource. `None` means any event.
pub fn route(rule: &SigmaRule) -> Option<Vec<&'static str>> {
    let ls = &rule.logsource;
    let product = ls.product.as_deref();
    if product.is_some_and(|p| p != "linux") && ls.category.as_deref() != Some("webserver") {
        return Some(Vec::new());
    }
    if let Some(service) = ls.service.as_deref() {
        return Some(match service {
            "sshd" | "ssh" => vec!["sshd"],
            "auth" => vec!["sshd", "dropbear", "pam", "sudo", "su", "accounts"],
            "dropbear" => vec!["dropbear"],
            "vsftpd" | "proftpd" | "pure-ftpd" | "ftp" | "ftpd" => vec!["ftp"],
            "postfix" | "dovecot" | "exim" | "mail" | "smtp" => vec!["mail"],
            "named" | "bind" | "dns" => vec!["dns"],
            "openvpn" | "vpn" => vec!["vpn"],
            "squid" => vec!["proxy"],
            "kernel" => vec!["kernel", "firewall"],
            "sudo" => vec!["sudo"],
            "su" => vec!["su"],
            "pam" => vec!["pam"],
            "auditd" => vec!["auditd"],
            "cron" => vec!["cron"],
            "systemd" => vec!["systemd"],
            "syslog" => return None,
            // nginx / apache services of web rules.
            "nginx" | "apache" | "apache2" | "httpd" | "haproxy" => vec!["web"],
            _ => Vec::new(),
        });
    }
    if let Some(category) = ls.category.as_deref() {
        return Some(match category {
            "webserver" => vec!["web"],
            "proxy" => vec!["web", "proxy"],
            "dns" => vec!["dns"],
            "firewall" => vec!["firewall"],
            "process_creation" | "file_event" | "file_change" | "file_access" | "file_delete"
            | "file_rename" | "network_connection" => vec!["auditd"],
            _ => Vec::new(),
        });
    }
    None
}

/// Rules by dataset (and `""` for events without one), for the per-dataset
/// engines: each rule appears under every dataset it can match.
pub fn routes(rules: &[Loaded<SigmaRule>]) -> HashMap<&'static str, Vec<usize>> {
    let mut by: HashMap<&'static str, Vec<usize>> = HashMap::new();
    let all: Vec<&'static str> = crate::parse::DATASETS.iter().copied().chain([""]).collect();
    for (i, r) in rules.iter().enumerate() {
        let targets = route(&r.rule).unwrap_or_else(|| all.clone());
        for d in targets {
            by.entry(d).or_default().push(i);
        }
    }
    by
}
