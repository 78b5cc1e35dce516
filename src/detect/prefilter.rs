//! A cross-rule literal prefilter: most rules can only match an event that
//! contains one of a few literals (a keyword, the text of a `contains` /
//! `endswith` / exact value). One Aho-Corasick pass over the event's text
//! finds the rules whose literals occur; only those are evaluated.
//!
//! Sound by construction: [`needles`] returns a set only when every way the
//! rule can match needs one of its literals somewhere in the event's
//! strings (case-insensitively); anything it cannot prove (`not`, regexes,
//! CIDR, numbers, encodings, field references, placeholders, ...) makes the
//! rule "always evaluated". A literal found by accident only costs an
//! evaluation.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use rsigma_eval::{CompiledRule, EvaluationResult};
use rsigma_parser::{
    ConditionExpr, Detection, Modifier, Quantifier, SelectorPattern, SigmaRule, SigmaValue,
    SpecialChar, StringPart,
};
use serde_json::Value;

use super::adapter::SigmaEvent;
use crate::model::Event;

/// Literals one of which every match of `rule` contains (lower-cased), or
/// `None` when that cannot be shown.
pub fn needles(rule: &SigmaRule) -> Option<Vec<String>> {
    let detections = &rule.detection;
    let mut all = Vec::new();
    // Several conditions: the rule matches when any does.
    for condition in &detections.conditions {
        all.extend(condition_needles(condition, rule)?);
    }
    (!all.is_empty()).then_some(all)
}

fn condition_needles(expr: &ConditionExpr, rule: &SigmaRule) -> Option<Vec<String>> {
    let named = &rule.detection.named;
    match expr {
        ConditionExpr::Identifier(name) => detection_needles(named.get(name)?),
        ConditionExpr::Not(_) => None,
        ConditionExpr::Or(items) => union(items.iter().map(|e| condition_needles(e, rule))),
        ConditionExpr::And(items) => best(items.iter().filter_map(|e| condition_needles(e, rule))),
        ConditionExpr::Selector {
            quantifier,
            pattern,
        } => {
            // Whether `them` counts `_`-prefixed names or not, a union
            // over more alternatives, or one required part among fewer,
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
                Quantifier::All => best(each.flatten()),
                Quantifier::Any => union(each),
                Quantifier::Count(n) if *n > 0 => union(each),
                Quantifier::Count(_) => None,
            }
        }
    }
}

fn detection_needles(detection: &Detection) -> Option<Vec<String>> {
    match detection {
        Detection::Keywords(values) => union(values.iter().map(value_needle)),
        Detection::AnyOf(items) => union(items.iter().map(detection_needles)),
        Detection::AllOf(items) => best(items.iter().filter_map(|item| {
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
                // Every value must occur: any one of them will do.
                best(item.values.iter().filter_map(value_needle))
            } else {
                union(item.values.iter().map(value_needle))
            }
        })),
        _ => None,
    }
}

/// The longest literal run of a string value (lower-cased).
fn value_needle(value: &SigmaValue) -> Option<Vec<String>> {
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
    (!longest.is_empty()).then(|| vec![longest.to_lowercase()])
}

/// Any of several alternatives: all of them need literals.
fn union(sets: impl Iterator<Item = Option<Vec<String>>>) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for set in sets {
        out.extend(set?);
    }
    (!out.is_empty()).then_some(out)
}

/// All of several parts: the most selective part's literals suffice (the
/// set whose shortest literal is longest).
fn best(sets: impl Iterator<Item = Vec<String>>) -> Option<Vec<String>> {
    sets.max_by_key(|set| set.iter().map(String::len).min().unwrap_or(0))
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
    rules: Vec<CompiledRule>,
    automaton: AhoCorasick,
    /// Pattern index -> the rules it belongs to.
    owners: Vec<Vec<usize>>,
}

impl Prefiltered {
    /// `rules`: compiled rules with their literals.
    pub fn new(rules: Vec<(CompiledRule, Vec<String>)>) -> Result<Prefiltered, String> {
        let mut owners: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut compiled = Vec::with_capacity(rules.len());
        for (i, (rule, literals)) in rules.into_iter().enumerate() {
            for literal in literals {
                let rules = owners.entry(literal).or_default();
                if rules.last() != Some(&i) {
                    rules.push(i);
                }
            }
            compiled.push(rule);
        }
        let (patterns, owners): (Vec<String>, Vec<Vec<usize>>) = owners.into_iter().unzip();
        // A DFA: the fastest overlapping search, and its size stays small
        // at a few thousand literals.
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&patterns)
            .map_err(|e| format!("rule prefilter: {e}"))?;
        Ok(Prefiltered {
            rules: compiled,
            automaton,
            owners,
        })
    }

    /// Evaluates the rules whose literals occur in `event`.
    pub fn evaluate(&self, event: &Event, scratch: &mut String, out: &mut Vec<EvaluationResult>) {
        if self.rules.is_empty() {
            return;
        }
        let mut hit = vec![false; self.rules.len()];
        let mut any = false;
        let mut scan = |text: &str| {
            for m in self.automaton.find_overlapping_iter(text) {
                for &rule in &self.owners[m.pattern().as_usize()] {
                    hit[rule] = true;
                }
                any = true;
            }
        };
        haystack(event, scratch, &mut |text| {
            if text.is_ascii() {
                scan(text);
            } else {
                // The automaton folds ASCII case only.
                scan(&text.to_lowercase());
            }
        });
        if !any {
            return;
        }
        let view = SigmaEvent(event);
        for (rule, _) in self.rules.iter().zip(&hit).filter(|(_, h)| **h) {
            if let Some(result) = rsigma_eval::evaluate_rule(rule, &view) {
                out.push(result);
            }
        }
    }
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

/// Visits every string a literal on a rule's field or keyword can be found
/// in: the event's strings (the message is skipped when the original line
/// ends with it) and the numbers and booleans of `fields`, as text.
fn haystack(event: &Event, scratch: &mut String, visit: &mut dyn FnMut(&str)) {
    let message_in_original = event
        .original
        .as_deref()
        .is_some_and(|o| o.ends_with(event.message.as_str()));
    super::adapter::strings(event, &mut |s| {
        if !(message_in_original && std::ptr::eq(s, event.message.as_str())) {
            visit(s);
        }
    });
    for s in [
        &event.category,
        &event.action,
        &event.outcome,
        &event.dataset,
    ]
    .into_iter()
    .flatten()
    {
        visit(s);
    }
    fn scalars(v: &Value, scratch: &mut String, visit: &mut dyn FnMut(&str)) {
        match v {
            Value::Number(n) => {
                scratch.clear();
                let _ = write!(scratch, "{n}");
                visit(scratch);
            }
            Value::Bool(b) => visit(if *b { "true" } else { "false" }),
            Value::Array(items) => items.iter().for_each(|i| scalars(i, scratch, visit)),
            Value::Object(map) => map.values().for_each(|i| scalars(i, scratch, visit)),
            Value::String(_) | Value::Null => {}
        }
    }
    for v in event.fields.values() {
        scalars(v, scratch, visit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literals(detection: &str) -> Option<Vec<String>> {
        let yaml = format!(
            "title: t\nlogsource:\n    product: linux\ndetection:\n{detection}\nlevel: low\n"
        );
        let collection = rsigma_parser::parse_sigma_yaml(&yaml).unwrap();
        let mut found = needles(&collection.rules[0]);
        if let Some(f) = &mut found {
            f.sort();
        }
        found
    }

    #[test]
    fn literals_are_what_every_match_needs() {
        // Keywords: any of them; the longest run between wildcards.
        assert_eq!(
            literals(
                "    keywords:\n        - 'Foo*barbaz'\n        - 'qux'\n    condition: keywords"
            ),
            Some(vec!["barbaz".into(), "qux".into()])
        );
        // AND: one part suffices, the most selective.
        assert_eq!(
            literals(
                "    sel:\n        process.name: 'ab'\n        process.command_line|contains: 'longer one'\n    condition: sel"
            ),
            Some(vec!["longer one".into()])
        );
        // `|all`: any one value is needed.
        assert_eq!(
            literals(
                "    sel:\n        message|contains|all: ['abc', 'abcdef']\n    condition: sel"
            ),
            Some(vec!["abcdef".into()])
        );
        // OR and `1 of`: every alternative needs a literal.
        assert_eq!(
            literals(
                "    sel_a:\n        message: 'one'\n    sel_b:\n        message|endswith: 'TWO'\n    condition: 1 of sel_*"
            ),
            Some(vec!["one".into(), "two".into()])
        );
        // `all of them`: one required part is enough.
        assert_eq!(
            literals(
                "    sel:\n        message: 'one'\n    _aux:\n        message|re: 'two'\n    condition: all of them"
            ),
            Some(vec!["one".into()])
        );
        // A `not` part adds nothing; the rest still needs its literal.
        assert_eq!(
            literals(
                "    sel:\n        message: 'one'\n    filter:\n        message: 'two'\n    condition: sel and not filter"
            ),
            Some(vec!["one".into()])
        );
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

    #[test]
    fn selector_patterns_match_names() {
        assert!(wildcard_match("sel_*", "sel_a"));
        assert!(wildcard_match("*_b", "sel_b"));
        assert!(!wildcard_match("sel_*", "filter"));
        assert!(wildcard_match("a*c*e", "abcde"));
    }
}
