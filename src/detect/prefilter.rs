//! A cross-rule literal prefilter: most rules can only match an event that
//! contains a few literals (a keyword, the text of a `contains` /
//! `endswith` / exact value), one of each part of an AND. A rule's
//! condition is split at its top-level ORs into branches, each with its
//! clauses of literals and its vetoes (the `not X` parts). One Aho-Corasick
//! pass over the event's text finds the rules with a branch whose clauses
//! all have a literal; a branch's vetoes are then evaluated alone (a filter
//! is cheaper than the rule), and only a rule with a branch left is
//! evaluated whole.
//!
//! Sound by construction: [`needles`] returns branches only when every way
//! the rule can match goes through one, needing a literal of each of its
//! clauses somewhere in the event's strings (case-insensitively) and none
//! of its vetoes matching (`X` evaluated as the whole rule is, so exact);
//! what it cannot prove (a `not` below the top level, regexes, CIDR,
//! numbers, encodings, field references, placeholders, ...) adds no clause,
//! and a rule that could match with no literal shown is "always
//! evaluated". A literal found by accident only costs an evaluation.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;

use rsigma_eval::compiler::CompiledDetection;
use rsigma_eval::matcher::{CompiledMatcher, GroupMode};
use rsigma_eval::{CompiledRule, DetectionBody, EvaluationResult, ResultBody, RuleHeader};
use rsigma_parser::{
    ConditionExpr, Detection, Modifier, Quantifier, SelectorPattern, SigmaRule, SigmaValue,
    SpecialChar, StringPart,
};
use rustc_hash::FxHashMap;
use serde_json::Value;

use super::adapter::SigmaEvent;
use super::condition::{Condition, Detections};
use super::decimal;
use super::scanner::{RuleBits, Scanner, merge};
use crate::model::Event;

/// What a match needs: one literal of each clause (lower-cased)
/// somewhere in the event.
pub type Clauses = Vec<Vec<String>>;

/// One way a rule can match (an alternative of its condition's top-level
/// OR): its clauses met, and none of its vetoes.
#[derive(Clone, Debug, PartialEq)]
pub struct Branch {
    pub clauses: Clauses,
    /// The `not X` parts of the alternative: `X` matching rules it out
    /// (evaluated alone, before the whole rule).
    pub vetoes: Vec<ConditionExpr>,
}

/// Most clauses kept per branch (the most selective ones).
const MAX_CLAUSES: usize = 8;
/// Most clauses of a rule's branches together (the bits of a `u32`): a rule
/// with more has its branches merged into one.
const MAX_RULE_CLAUSES: usize = 32;
/// The shortest literal of a clause kept beside a branch's most selective.
const MIN_EXTRA: usize = 3;
/// What an event's parser constants meet together, by their addresses
/// and lengths.
type Constants = FxHashMap<[(usize, usize); 4], Box<[RuleBits]>>;

/// Most combinations of parser constants whose clauses a [`Prefiltered`]
/// keeps (each parser has a few dozen).
const MAX_CONSTANTS: usize = 1024;

/// The branches every match of `rule` goes through, or `None` when one
/// needs no literal that can be shown.
pub fn needles(rule: &SigmaRule) -> Option<Vec<Branch>> {
    // Several conditions: the rule matches when any does.
    let mut alternatives = Vec::new();
    for condition in &rule.detection.conditions {
        top_level_alternatives(condition, &mut alternatives);
    }
    let branches = alternatives
        .into_iter()
        .map(|expr| {
            let clauses = condition_needles(expr, rule)?;
            let vetoes = match expr {
                ConditionExpr::And(parts) => parts
                    .iter()
                    .filter_map(|part| match part {
                        ConditionExpr::Not(inner) => Some((**inner).clone()),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Some(Branch { clauses, vetoes })
        })
        .collect::<Option<Vec<Branch>>>()?;
    if branches.iter().map(|b| b.clauses.len()).sum::<usize>() <= MAX_RULE_CLAUSES {
        return Some(branches);
    }
    let clauses = either(branches.into_iter().map(|b| Some(b.clauses)))?;
    Some(vec![Branch {
        clauses,
        vetoes: Vec::new(),
    }])
}

fn top_level_alternatives<'a>(expr: &'a ConditionExpr, out: &mut Vec<&'a ConditionExpr>) {
    match expr {
        ConditionExpr::Or(items) => items.iter().for_each(|e| top_level_alternatives(e, out)),
        _ => out.push(expr),
    }
}

fn condition_needles(expr: &ConditionExpr, rule: &SigmaRule) -> Option<Clauses> {
    let named = &rule.detection.named;
    match expr {
        ConditionExpr::Identifier(name) => detection_needles(named.get(name)?),
        ConditionExpr::Not(_) => None,
        ConditionExpr::Or(items) => either(items.iter().map(|e| condition_needles(e, rule))),
        ConditionExpr::And(items) => both(items.iter().filter_map(|e| condition_needles(e, rule))),
        ConditionExpr::Selector {
            quantifier,
            pattern,
        } => {
            // Whether `them` counts `_`-prefixed names or not, a union
            // over more alternatives, or the required parts among fewer,
            // stays sound: `any` takes them, `all` leaves them out.
            let all = matches!(quantifier, Quantifier::All);
            let chosen: Vec<&Detection> = named
                .iter()
                .filter(|(name, _)| match pattern {
                    SelectorPattern::Them => !(all && name.starts_with('_')),
                    SelectorPattern::Pattern(p) => wildcard_match(p, name),
                })
                .map(|(_, d)| d)
                .collect();
            if chosen.is_empty() {
                return None;
            }
            let each = chosen.into_iter().map(detection_needles);
            match quantifier {
                Quantifier::All => both(each.flatten()),
                Quantifier::Any => either(each),
                Quantifier::Count(n) if *n > 0 => either(each),
                Quantifier::Count(_) => None,
            }
        }
    }
}

fn detection_needles(detection: &Detection) -> Option<Clauses> {
    match detection {
        Detection::Keywords(values) => either(values.iter().map(value_needle)),
        Detection::AnyOf(items) => either(items.iter().map(detection_needles)),
        Detection::AllOf(items) => both(items.iter().filter_map(|item| {
            let literal = item.field.modifiers.iter().all(|m| {
                matches!(
                    m,
                    Modifier::Contains
                        | Modifier::StartsWith
                        | Modifier::EndsWith
                        | Modifier::All
                        | Modifier::Cased
                )
            });
            let typed = item
                .field
                .name
                .as_deref()
                .is_some_and(|f| TYPED_FIELDS.contains(&f));
            if !literal || typed || item.values.is_empty() {
                return None;
            }
            if item.field.has_modifier(Modifier::All) {
                // Every value must occur.
                both(item.values.iter().filter_map(value_needle))
            } else {
                either(item.values.iter().map(value_needle))
            }
        })),
        _ => None,
    }
}

/// The longest literal run of a string value (lower-cased).
fn value_needle(value: &SigmaValue) -> Option<Clauses> {
    let SigmaValue::String(s) = value else {
        return None;
    };
    let mut longest = String::new();
    let mut run = String::new();
    for part in &s.parts {
        match part {
            StringPart::Plain(text) => run.push_str(text),
            StringPart::Special(SpecialChar::WildcardMulti | SpecialChar::WildcardSingle) => {
                if run.len() > longest.len() {
                    longest = std::mem::take(&mut run);
                }
                run.clear();
            }
        }
    }
    if run.len() > longest.len() {
        longest = run;
    }
    (!longest.is_empty()).then(|| vec![vec![longest.to_lowercase()]])
}

/// Any of several alternatives: each needs literals. One alternative keeps
/// its clauses; of several, the i-th clause takes the i-th most selective
/// clause of every alternative (its last when it has fewer): a match meets
/// all of one alternative's clauses, so one of each of these.
fn either(alternatives: impl Iterator<Item = Option<Clauses>>) -> Option<Clauses> {
    let mut alternatives = alternatives.collect::<Option<Vec<Clauses>>>()?;
    if alternatives.len() == 1 {
        return alternatives.pop();
    }
    // Each is sorted, the most selective first, as `both` leaves them.
    let depth = alternatives.iter().map(Vec::len).max()?;
    let clauses: Clauses = (0..depth)
        .map(|i| {
            let mut clause: Vec<String> = alternatives
                .iter()
                .filter_map(|clauses| clauses.get(i).or(clauses.last()))
                .flatten()
                .cloned()
                .collect();
            clause.sort();
            clause.dedup();
            clause
        })
        .collect();
    both(std::iter::once(clauses))
}

/// All of several parts: every clause of each is needed. The most
/// selective is kept, and up to [`MAX_CLAUSES`] in all of those with no
/// literal shorter than [`MIN_EXTRA`] (a short one occurs in most events
/// and would only cost a lookup at every occurrence).
fn both(parts: impl Iterator<Item = Clauses>) -> Option<Clauses> {
    let mut clauses: Clauses = parts.flatten().collect();
    clauses.sort_by(|a, b| selectivity(b).cmp(&selectivity(a)).then_with(|| a.cmp(b)));
    clauses.dedup();
    let keep = clauses
        .iter()
        .skip(1)
        .take(MAX_CLAUSES - 1)
        .take_while(|c| selectivity(c) >= MIN_EXTRA)
        .count();
    clauses.truncate(1 + keep);
    (!clauses.is_empty()).then_some(clauses)
}

/// How rarely a clause is met by chance: the longer its shortest literal,
/// the rarer.
fn selectivity(clause: &[String]) -> usize {
    clause.iter().map(String::len).min().unwrap_or(0)
}

/// Sigma's selector patterns: `*` matches any run of characters.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (0..=name.len() - head.len())
                    .filter(|&i| name.is_char_boundary(head.len() + i))
                    .any(|i| wildcard_match(tail, &name[head.len() + i..]))
        }
    }
}

/// The rules that have literals, compiled, and one automaton over all
/// their literals.
pub struct Prefiltered {
    rules: Vec<Rule>,
    /// The literals' automaton, with the rules and clauses each meets.
    scanner: Scanner,
    /// The clauses an event's parser constants meet ([`Text::Constants`]),
    /// by their addresses and lengths: worked out the first time, not
    /// walked again in every event.
    constants: RefCell<Constants>,
}

/// A rule the prefilter evaluates.
struct Rule {
    /// What its results say (its detections and conditions are taken
    /// out into `detections` and `conditions`).
    compiled: CompiledRule,
    detections: Detections,
    conditions: Vec<Condition>,
    /// Its branches, each as the bits of its clauses and its vetoes.
    branches: Vec<(u32, Vec<Condition>)>,
}

impl Prefiltered {
    /// `rules`: compiled rules with their branches, as [`needles`] gives
    /// them (at most [`MAX_RULE_CLAUSES`] clauses a rule).
    pub fn new(rules: Vec<(CompiledRule, Vec<Branch>)>) -> Result<Prefiltered, String> {
        let mut owners: BTreeMap<String, Vec<(usize, u32)>> = BTreeMap::new();
        let mut compiled = Vec::with_capacity(rules.len());
        for (i, (mut rule, branches)) in rules.into_iter().enumerate() {
            rule.detections.values_mut().for_each(lower_once);
            let detections = Detections::new(std::mem::take(&mut rule.detections));
            // A bit per clause, the rule's branches one after the other.
            let mut bit = 0;
            let branches = branches
                .into_iter()
                .map(|branch| {
                    let mut bits = 0u32;
                    for clause in branch.clauses.iter().take(MAX_RULE_CLAUSES - bit) {
                        for literal in clause {
                            let rules = owners.entry(literal.clone()).or_default();
                            match rules.last_mut() {
                                Some((rule, met)) if *rule == i => *met |= 1 << bit,
                                _ => rules.push((i, 1 << bit)),
                            }
                        }
                        bits |= 1 << bit;
                        bit += 1;
                    }
                    let vetoes = branch.vetoes.iter().map(|v| detections.condition(v));
                    (bits, vetoes.collect())
                })
                .collect();
            let conditions = std::mem::take(&mut rule.conditions);
            compiled.push(Rule {
                conditions: conditions.iter().map(|c| detections.condition(c)).collect(),
                compiled: rule,
                detections,
                branches,
            });
        }
        let (patterns, owners): (Vec<String>, Vec<Vec<(usize, u32)>>) = owners.into_iter().unzip();
        Ok(Prefiltered {
            rules: compiled,
            scanner: Scanner::new(&patterns, &owners)?,
            constants: RefCell::default(),
        })
    }

    /// Evaluates the rules with a branch whose clauses all have a literal
    /// in `event` and none of whose vetoes match.
    pub fn evaluate(&self, event: &Event, scratch: &mut Scratch, out: &mut Vec<EvaluationResult>) {
        if self.rules.is_empty() {
            return;
        }
        let Scratch { met, touched } = scratch;
        // All zero between events: the rules touched are reset at the end
        // (a bit left by a panic would only cost an evaluation).
        met.resize(self.rules.len(), 0);
        touched.clear();
        let mut meet = |rule: usize, bits: u32| {
            if met[rule] == 0 {
                touched.push(rule);
            }
            met[rule] |= bits;
        };
        haystack(event, &mut |text| match text {
            Text::Lying(text) => self.scanner.scan(text, &mut meet),
            Text::Constants(texts) => self.scan_constants(texts, &mut meet),
        });
        // In rule order, as the engine reports them.
        touched.sort_unstable();
        let view = SigmaEvent(event);
        for &i in touched.iter() {
            let rule = &self.rules[i];
            let holds = |c| rule.detections.holds(c, &view);
            let possible = rule
                .branches
                .iter()
                .any(|(bits, vetoes)| met[i] & bits == *bits && !vetoes.iter().any(holds));
            if possible && rule.conditions.iter().any(holds) {
                out.push(result(&rule.compiled, &view));
            }
        }
        touched.iter().for_each(|&i| met[i] = 0);
    }

    /// [`Scanner::scan`] of an event's parser constants (ASCII): their
    /// clauses as found the first time, each rule once.
    fn scan_constants(&self, texts: [Option<&'static str>; 4], meet: &mut impl FnMut(usize, u32)) {
        let mut key = [(0, 0); 4];
        for (k, text) in key.iter_mut().zip(texts) {
            *k = text.map_or((0, 0), |t| (t.as_ptr() as usize, t.len()));
        }
        let mut constants = self.constants.borrow_mut();
        if let Some(clauses) = constants.get(&key) {
            clauses.iter().for_each(|&(rule, bits)| meet(rule, bits));
            return;
        }
        let mut clauses: Vec<RuleBits> = Vec::new();
        for text in texts.into_iter().flatten() {
            self.scanner.scan(text.as_bytes(), &mut |rule, bits| {
                merge(&mut clauses, rule, bits)
            });
        }
        clauses.iter().for_each(|&(rule, bits)| meet(rule, bits));
        if constants.len() < MAX_CONSTANTS {
            constants.insert(key, clauses.into());
        }
    }
}

/// Wraps each case-insensitive string comparison of a field in the crate's
/// `CaseInsensitiveGroup`, alone: that lowers the field's text only when it
/// has capitals (`ascii_lowercase_cow`, the same text as `to_lowercase`),
/// where the bare comparison allocates a lowered copy every time (about 130
/// instructions an event with the SigmaHQ Linux rules). The crate's
/// optimizer wraps two or more alternatives this way, not one; the
/// comparison is the same.
fn lower_once(detection: &mut CompiledDetection) {
    fn wrap(matcher: CompiledMatcher) -> CompiledMatcher {
        match matcher {
            m @ (CompiledMatcher::Exact {
                case_insensitive: true,
                ..
            }
            | CompiledMatcher::Contains {
                case_insensitive: true,
                ..
            }
            | CompiledMatcher::StartsWith {
                case_insensitive: true,
                ..
            }
            | CompiledMatcher::EndsWith {
                case_insensitive: true,
                ..
            }) => CompiledMatcher::CaseInsensitiveGroup {
                children: vec![m],
                mode: GroupMode::Any,
            },
            CompiledMatcher::AnyOf(all) => {
                CompiledMatcher::AnyOf(all.into_iter().map(wrap).collect())
            }
            CompiledMatcher::AllOf(all) => {
                CompiledMatcher::AllOf(all.into_iter().map(wrap).collect())
            }
            CompiledMatcher::Not(inner) => CompiledMatcher::Not(Box::new(wrap(*inner))),
            other => other,
        }
    }
    match detection {
        CompiledDetection::AllOf(items) => {
            for item in items.iter_mut().filter(|i| i.field.is_some()) {
                item.matcher = wrap(std::mem::replace(&mut item.matcher, CompiledMatcher::Null));
            }
        }
        CompiledDetection::AnyOf(all) | CompiledDetection::And(all) => {
            all.iter_mut().for_each(lower_once);
        }
        _ => {}
    }
}

/// What `rsigma_eval::evaluate_rule` gives for a match of `rule`, without
/// the field-by-field match details nothing downstream reads (that
/// evaluates a matching rule twice more to collect them) nor the names of
/// the selections matched.
fn result(rule: &CompiledRule, event: &SigmaEvent) -> EvaluationResult {
    EvaluationResult {
        header: RuleHeader {
            rule_title: rule.title.clone(),
            rule_id: rule.id.clone(),
            level: rule.level,
            tags: rule.tags.clone(),
            custom_attributes: rule.custom_attributes.clone(),
            enrichments: None,
        },
        body: ResultBody::Detection(DetectionBody {
            matched_selections: Vec::new(),
            matched_fields: Vec::new(),
            event: rule
                .include_event
                .then(|| rsigma_eval::Event::to_json(event)),
        }),
    }
}

/// Buffers reused from one event to the next.
#[derive(Default)]
pub struct Scratch {
    /// Per rule: the bits of its clauses met.
    met: Vec<u32>,
    /// The rules with a clause met.
    touched: Vec<usize>,
}

/// Fields the adapter shows as numbers or addresses, not as strings of
/// the event: a literal on them is not searched for.
const TYPED_FIELDS: &[&str] = &[
    "host.ip",
    "source.ip",
    "destination.ip",
    "source.port",
    "destination.port",
    "process.pid",
    "event.severity",
    "@timestamp",
    "timestamp",
];

/// A string of the event for [`Scanner::scan`].
enum Text<'a> {
    /// Where it lies in the event (or lower-cased, beyond ASCII).
    Lying(&'a [u8]),
    /// The parser's constants (`event.category`, `action`, `outcome`,
    /// `dataset`, those that are), ASCII: the same text at the same address
    /// in every event that has it (about 35 bytes of an sshd event).
    Constants([Option<&'static str>; 4]),
}

/// Shows `scan` every string a literal on a rule's field or keyword can be
/// found in, where it lies (a copy per string cost more than walking it):
/// the event's strings (the message is skipped when the original line holds
/// it; text beyond ASCII lower-cased, as the automaton folds ASCII case
/// only), the parsers' constants, and the strings, numbers and booleans of
/// `fields` (walked once).
fn haystack(event: &Event, scan: &mut dyn FnMut(Text)) {
    fn visit(text: &str, scan: &mut dyn FnMut(Text)) {
        if is_ascii(text.as_bytes()) {
            scan(Text::Lying(text.as_bytes()));
        } else {
            // As a whole, as the engine lowers it (a final sigma is `ς`).
            scan(Text::Lying(text.to_lowercase().as_bytes()));
        }
    }
    // The message is left out when the original line ends with it, maybe
    // but for blanks the parser trimmed (a search for it anywhere in the
    // line cost more than scanning it): every literal in it is in the line
    // too. Unless a capital sigma could lower differently without the
    // line's letters around it (`ΑΣ` is `ας`, `Σ` alone `σ`).
    let message_in_original = event.original.as_deref().is_some_and(|original| {
        !event.message.is_empty()
            && original.trim_end().ends_with(event.message.as_str())
            && (is_ascii(original.as_bytes()) || !event.message.contains('Σ'))
    });
    super::adapter::own_strings(event, &mut |s| {
        if !(message_in_original && std::ptr::eq(s, event.message.as_str())) {
            visit(s, scan);
        }
    });
    // (A loop, not `array::map`: that cost 50 instructions a string.)
    let mut constants = [None; 4];
    let mut any = false;
    for (constant, s) in constants.iter_mut().zip([
        &event.category,
        &event.action,
        &event.outcome,
        &event.dataset,
    ]) {
        match s {
            Some(Cow::Borrowed(s)) if s.is_ascii() => {
                *constant = Some(*s);
                any = true;
            }
            Some(s) => visit(s, scan),
            None => {}
        }
    }
    if any {
        scan(Text::Constants(constants));
    }
    // A string of `fields` the same as the program's name (`log.syslog.appname`
    // of every syslog line) meets nothing the name did not meet.
    fn walk(v: &Value, same: &str, scan: &mut dyn FnMut(Text)) {
        match v {
            Value::String(s) if s == same => {}
            Value::String(s) => visit(s, scan),
            Value::Number(n) => match n.as_u64() {
                // Without a formatter: a few pids and ports in most events.
                Some(n) => scan(Text::Lying(decimal(n, &mut [0; 20]))),
                None => scan(Text::Lying(n.to_string().as_bytes())),
            },
            Value::Bool(b) => scan(Text::Lying(if *b { b"true" } else { b"false" })),
            Value::Array(items) => items.iter().for_each(|i| walk(i, same, scan)),
            Value::Object(map) => map.values().for_each(|i| walk(i, same, scan)),
            Value::Null => {}
        }
    }
    // (Without a name only empty strings are skipped, which meet nothing.)
    let same = event.process_name.as_deref().unwrap_or_default();
    for v in event.fields.values() {
        walk(v, same, scan);
    }
}

/// Whether `text` is ASCII, eight bytes at a time (std's check goes
/// through the last up to 63 bytes one at a time: about 200 instructions
/// for a syslog line, 60 this way).
fn is_ascii(text: &[u8]) -> bool {
    let (words, rest) = text.as_chunks::<8>();
    let words = words.iter().fold(0, |any, w| any | u64::from_ne_bytes(*w));
    let rest = rest.iter().fold(0, |any, b| any | b);
    words & 0x8080_8080_8080_8080 == 0 && rest < 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literals(detection: &str) -> Option<Vec<Branch>> {
        let yaml = format!(
            "title: t\nlogsource:\n    product: linux\ndetection:\n{detection}\nlevel: low\n"
        );
        let collection = rsigma_parser::parse_sigma_yaml(&yaml).unwrap();
        needles(&collection.rules[0])
    }

    /// A branch of `clauses` and no veto.
    fn branch(clauses: &[&[&str]]) -> Branch {
        Branch {
            clauses: clauses
                .iter()
                .map(|c| c.iter().map(|l| l.to_string()).collect())
                .collect(),
            vetoes: Vec::new(),
        }
    }

    #[test]
    fn literals_are_what_every_match_needs() {
        let one = |clauses: &[&[&str]]| Some(vec![branch(clauses)]);
        // Keywords: any of them; the longest run between wildcards.
        assert_eq!(
            literals(
                "    keywords:\n        - 'Foo*barbaz'\n        - 'qux'\n    condition: keywords"
            ),
            one(&[&["barbaz", "qux"]])
        );
        // AND: every part, the most selective first; a short literal only
        // when it is the most selective.
        assert_eq!(
            literals(
                "    sel:\n        process.name: 'sshd'\n        process.command_line|contains: 'longer one'\n        user.name: 'ab'\n    condition: sel"
            ),
            one(&[&["longer one"], &["sshd"]])
        );
        assert_eq!(
            literals(
                "    sel:\n        process.name: 'ab'\n        user.name: 'a'\n    condition: sel"
            ),
            one(&[&["ab"]])
        );
        // `|all`: every value.
        assert_eq!(
            literals(
                "    sel:\n        message|contains|all: ['abcd', 'abcdef']\n    condition: sel"
            ),
            one(&[&["abcdef"], &["abcd"]])
        );
        // `1 of`: every alternative needs a literal.
        assert_eq!(
            literals(
                "    sel_a:\n        message: 'one'\n    sel_b:\n        message|endswith: 'TWO'\n    condition: 1 of sel_*"
            ),
            one(&[&["one", "two"]])
        );
        // A top-level OR: a branch per alternative, each with its clauses.
        assert_eq!(
            literals(
                "    sel_a:\n        message: 'one'\n        user.name: 'three'\n    sel_b:\n        message: 'two'\n    condition: sel_a or sel_b"
            ),
            Some(vec![branch(&[&["three"], &["one"]]), branch(&[&["two"]])])
        );
        // An OR inside: the i-th clause takes the i-th of every alternative.
        assert_eq!(
            literals(
                "    sel_a:\n        message: 'one'\n        user.name: 'three'\n    sel_b:\n        message: 'two'\n        user.name: 'four'\n    sel_c:\n        message: 'seven'\n    condition: (sel_a or sel_b) and sel_c"
            ),
            one(&[&["seven"], &["four", "three"], &["one", "two"]])
        );
        // `all of them`: the parts that need literals.
        assert_eq!(
            literals(
                "    sel:\n        message: 'one'\n    _aux:\n        message|re: 'two'\n    condition: all of them"
            ),
            one(&[&["one"]])
        );
        // A `not` part adds no literal: it is the branch's veto.
        assert_eq!(
            literals(
                "    sel:\n        message: 'one'\n    filter:\n        message: 'two'\n    condition: sel and not filter"
            ),
            Some(vec![Branch {
                vetoes: vec![ConditionExpr::Identifier("filter".into())],
                ..branch(&[&["one"]])
            }])
        );
        // At most eight clauses, the most selective.
        let many: String = (1..=10)
            .map(|n| format!("        f{n}: '{}'\n", "x".repeat(n + 3)))
            .collect();
        let found = literals(&format!("    sel:\n{many}    condition: sel")).unwrap();
        assert_eq!(found[0].clauses.len(), MAX_CLAUSES);
        assert_eq!(found[0].clauses[0], ["x".repeat(13)]);
        assert_eq!(found[0].clauses[7], ["x".repeat(6)]);
    }

    #[test]
    fn what_cannot_be_shown_is_always_evaluated() {
        for detection in [
            "    sel:\n        message: 'x'\n    condition: not sel",
            "    sel:\n        message|re: 'ab+c'\n    condition: sel",
            "    sel:\n        source.ip|cidr: '10.0.0.0/8'\n    condition: sel",
            "    sel:\n        source.ip: '10.0.0.1'\n    condition: sel",
            "    sel:\n        message|base64offset|contains: 'abc'\n    condition: sel",
            "    sel:\n        message: '*'\n    condition: sel",
            "    sel:\n        process.pid: 42\n    condition: sel",
            "    sel_a:\n        message: 'one'\n    sel_b:\n        message|re: 'two'\n    condition: sel_a or sel_b",
            // `1 of them` counts `_`-prefixed names too, to be safe.
            "    sel:\n        message: 'one'\n    _aux:\n        message|re: 'two'\n    condition: 1 of them",
            "    sel:\n        message: 'one'\n    condition: 0 of them",
        ] {
            assert_eq!(literals(detection), None, "{detection}");
        }
    }

    /// Literals inside others, ending at the same byte, in any case and
    /// beyond ASCII are all found, in every string of the event; a rule
    /// needing several is evaluated when all occur.
    #[test]
    fn every_literal_in_the_event_is_found() {
        let keywords = |k: &str| format!("    keywords:\n        - '{k}'\n    condition: keywords");
        let rules = [
            ("abcd", keywords("abcd")),
            ("bc", keywords("bc")),
            ("cd", keywords("cd")),
            ("ÜBER", keywords("ÜBER")),
            ("zzz", keywords("zzz")),
            ("tail", keywords("tail")),
            ("ΟΔΟΣ", keywords("ΟΔΟΣ")),
            (
                "both",
                "    sel:\n        message|contains: 'abcdx'\n        user.name|endswith: 'tail'\n    condition: sel".into(),
            ),
            (
                "one of two",
                "    sel:\n        message|contains: 'abcdx'\n        user.name: 'zzz'\n    condition: sel".into(),
            ),
            (
                "number",
                "    sel:\n        ssh.port|contains: '222'\n    condition: sel".into(),
            ),
            (
                "negative",
                "    sel:\n        ssh.delta: '-1.5'\n    condition: sel".into(),
            ),
            (
                "boolean",
                "    sel:\n        ssh.ok: 'true'\n    condition: sel".into(),
            ),
            // The end of one string (the message) and the start of the next
            // (the user) are not a literal of either.
            ("across", keywords("ΟΔΟΣthe")),
        ]
        .into_iter()
        .map(|(title, detection)| compiled(title, &detection))
        .collect();
        let prefiltered = Prefiltered::new(rules).unwrap();
        assert_eq!(
            found(
                &prefiltered,
                serde_json::json!({
                    "message": "xABCDx über ΟΔΟΣ",
                    "user": {"name": "the tail"},
                    "ssh": {"port": 2222, "ok": true, "delta": -1.5}
                })
            ),
            [
                "abcd", "bc", "boolean", "both", "cd", "negative", "number", "tail", "ÜBER", "ΟΔΟΣ"
            ]
        );
    }

    /// The parsers' constants (`event.category` and the like) meet what
    /// the same text meets when it is not a constant, the first time (when
    /// they are walked) and every time after (when what they met is kept).
    #[test]
    fn constants_meet_what_their_text_does() {
        let rules = [
            (
                "category",
                "    sel:\n        event.category: 'AUTHENTICATION'",
            ),
            ("action", "    sel:\n        event.action|contains: 'login'"),
            (
                "outcome and user",
                "    sel:\n        event.outcome|endswith: 'ure'\n        user.name: 'root'",
            ),
            (
                "dataset",
                "    sel:\n        event.dataset|startswith: 'ssh'",
            ),
            ("not there", "    sel:\n        event.action: 'ssh_logout'"),
        ]
        .into_iter()
        .map(|(title, detection)| compiled(title, &format!("{detection}\n    condition: sel")))
        .collect();
        let prefiltered = Prefiltered::new(rules).unwrap();
        let line = "Failed password for root from 203.0.113.7 port 22 ssh2";
        let parsed = crate::parse::parse(
            &crate::parse::RawRecord {
                bytes: format!("<38>Dec 10 06:55:46 host sshd[24200]: {line}").into_bytes(),
                source: "test",
                peer: None,
                received_at: chrono::Utc::now(),
            },
            &crate::parse::ParseOptions::default(),
        );
        assert!(matches!(parsed.action, Some(Cow::Borrowed("ssh_login"))));
        let owned = |c: &Option<Cow<'static, str>>| c.clone().map(|c| Cow::Owned(c.into_owned()));
        let not_constant = Event {
            category: owned(&parsed.category),
            action: owned(&parsed.action),
            outcome: owned(&parsed.outcome),
            dataset: owned(&parsed.dataset),
            ..parsed.clone()
        };
        let expected = ["action", "category", "dataset", "outcome and user"];
        assert_eq!(titles(&prefiltered, &parsed), expected);
        assert_eq!(prefiltered.constants.borrow().len(), 1);
        assert_eq!(titles(&prefiltered, &parsed), expected);
        assert_eq!(titles(&prefiltered, &not_constant), expected);
    }

    /// Case-insensitive comparisons lowered once find what the crate's own
    /// find, with capitals and letters beyond ASCII on either side.
    #[test]
    fn comparisons_lowered_once_find_what_the_crate_finds() {
        let detection = "    sel:\n        user.name: 'Root'\n        process.name|startswith: 'SSH'\n    other:\n        message|contains:\n            - 'ÄRGER'\n            - 'Fail'\n        message|endswith: 'ΟΣ'\n    filter:\n        user.name|contains|all:\n            - 'AD'\n            - 'MIN'\n    condition: sel or (other and not filter)";
        let (rule, branches) = compiled("lowered", detection);
        let mut engine = rsigma_eval::Engine::new();
        let yaml = format!(
            "title: lowered\nlogsource:\n    product: linux\ndetection:\n{detection}\nlevel: low\n"
        );
        engine
            .add_rules(&rsigma_parser::parse_sigma_yaml(&yaml).unwrap().rules)
            .is_empty()
            .then_some(())
            .unwrap();
        let prefiltered = Prefiltered::new(vec![(rule, branches)]).unwrap();
        let mut hits = 0;
        for (user, process, message) in [
            ("ROOT", "sshd", "x"),
            ("root", "Sshd", "x"),
            ("rooT", "cron", "x"),
            ("admin", "cron", "Ärger happened, Fail ΟΔΟΣ"),
            ("Operator", "cron", "ärger and fail ΟΔΟΣ"),
            ("Admin", "cron", "FAIL ärger"),
            ("nobody", "cron", "nothing"),
            ("ädmin", "SSHD", "ÄRGER fail ΟΔΟΣ"),
        ] {
            let event = Event::from_json(
                serde_json::json!({
                    "message": message,
                    "user": {"name": user},
                    "process": {"name": process},
                }),
                chrono::Utc::now(),
            )
            .unwrap();
            let expected: Vec<String> = engine
                .evaluate(&SigmaEvent(&event))
                .into_iter()
                .map(|r| r.header.rule_title)
                .collect();
            hits += expected.len();
            assert_eq!(
                titles(&prefiltered, &event),
                expected,
                "{user} {process} {message}"
            );
        }
        assert_eq!(hits, 4);
    }

    /// A rule titled `title` of `detection`, compiled, with its branches.
    fn compiled(title: &str, detection: &str) -> (CompiledRule, Vec<Branch>) {
        let yaml = format!(
            "title: {title}\nlogsource:\n    product: linux\ndetection:\n{detection}\nlevel: low\n"
        );
        let collection = rsigma_parser::parse_sigma_yaml(&yaml).unwrap();
        let rule = &collection.rules[0];
        (
            rsigma_eval::compile_rule(rule).unwrap(),
            needles(rule).unwrap(),
        )
    }

    /// The titles of the rules `prefiltered` finds in `event`, sorted.
    fn found(prefiltered: &Prefiltered, event: serde_json::Value) -> Vec<String> {
        titles(
            prefiltered,
            &Event::from_json(event, chrono::Utc::now()).unwrap(),
        )
    }

    fn titles(prefiltered: &Prefiltered, event: &Event) -> Vec<String> {
        let mut found = Vec::new();
        prefiltered.evaluate(event, &mut Scratch::default(), &mut found);
        let mut titles: Vec<String> = found.into_iter().map(|r| r.header.rule_title).collect();
        titles.sort();
        titles
    }

    /// A message that ends the original line is scanned as part of it,
    /// except where lowering it alone gives other letters.
    #[test]
    fn is_ascii_agrees_with_std() {
        let line = "Dec 10 06:55:46 LabSZ sshd[24200]: Failed password for root from 1.2.3.4";
        for len in 0..=line.len() {
            let text = &line.as_bytes()[..len];
            assert!(is_ascii(text));
            // A byte beyond ASCII at every place: in a word, in the rest.
            for at in 0..len {
                let mut text = text.to_vec();
                text[at] |= 0x80;
                assert!(!is_ascii(&text), "{len} {at}");
            }
        }
    }

    #[test]
    fn a_message_inside_the_original_line_is_found_there() {
        let keyword = |k: &str| {
            compiled(
                k,
                &format!("    keywords:\n        - '{k}'\n    condition: keywords"),
            )
        };
        let prefiltered = Prefiltered::new(vec![keyword("failed"), keyword("Σ")]).unwrap();
        let found = |message: &str, original: &str| {
            found(
                &prefiltered,
                serde_json::json!({"message": message, "log.original": original}),
            )
        };
        assert_eq!(
            found("Failed password", "host sshd: Failed password"),
            ["failed"]
        );
        // Blanks after it in the line, trimmed from the message.
        assert_eq!(
            found("Failed password", "host sshd: Failed password \t"),
            ["failed"]
        );
        // `ΑΣ` lowers to `ας`: the message alone (`σ`) is what the rule finds.
        assert_eq!(found("Σ", "ΑΣ"), ["Σ"]);
    }

    /// A branch's veto rules the rule out only when the other branches'
    /// clauses are not met either.
    #[test]
    fn a_veto_rules_out_its_branch() {
        let prefiltered = Prefiltered::new(vec![compiled(
            "rule",
            "    sel:\n        message|contains: 'login failed'\n    sel_pam:\n        message|contains: 'authentication failure'\n    filter:\n        pam.service: 'sshd'\n    condition: sel or (sel_pam and not filter)",
        )])
        .unwrap();
        let found = |message: &str, service: &str| {
            !found(
                &prefiltered,
                serde_json::json!({"message": message, "pam": {"service": service}}),
            )
            .is_empty()
        };
        assert!(!found("authentication failure", "sshd"));
        assert!(!found("authentication failure", "SSHD"));
        assert!(found("authentication failure", "dovecot"));
        assert!(found("login failed; authentication failure", "sshd"));
        assert!(!found("nothing", "dovecot"));
    }

    #[test]
    fn selector_patterns_match_names() {
        assert!(wildcard_match("sel_*", "sel_a"));
        assert!(wildcard_match("*_b", "sel_b"));
        assert!(!wildcard_match("sel_*", "filter"));
        assert!(wildcard_match("a*c*e", "abcde"));
    }
}
