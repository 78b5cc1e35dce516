//! Rule conditions as the prefilter evaluates them: a detection found by
//! its index instead of hashed by its name, a field resolved when the rules
//! are loaded ([`Field`]) instead of matched against the event's names at
//! every read, and no list of the selections that matched (nothing reads
//! it; the crate's `eval_condition` cloned each name into it). The values
//! are still compared by the crate's own matchers
//! ([`CompiledMatcher::matches`]), so a match is the crate's match: the
//! tests check both on the same rules and events.

use std::collections::HashMap;

use rsigma_eval::compiler::{CompiledDetection, CompiledDetectionItem};
use rsigma_eval::matcher::CompiledMatcher;
use rsigma_parser::{ConditionExpr, Quantifier};

use super::adapter::{Field, SigmaEvent};

/// A rule's detections, by index.
pub struct Detections {
    /// Their names, for [`Detections::condition`].
    names: Vec<String>,
    list: Vec<Detection>,
}

/// A condition over a rule's [`Detections`].
#[derive(Debug)]
pub enum Condition {
    Detection(usize),
    /// A name the rule does not define (the crate's compiler rejects such a
    /// rule): never met, as in the crate.
    Undefined,
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    /// `N of` a selector: at least `n` of the detections it names match
    /// (`all of`: every one; `any`: one).
    AtLeast {
        n: u64,
        of: Vec<usize>,
    },
}

enum Detection {
    AllOf(Vec<Item>),
    AnyOf(Vec<Detection>),
    And(Vec<Detection>),
    Keywords(CompiledMatcher),
    /// What the crate evaluates itself (an array's members matched one by
    /// one), through its `eval_condition` of a name it alone has.
    Crate(Box<(ConditionExpr, HashMap<String, CompiledDetection>)>),
}

struct Item {
    /// `None`: the item searches every string of the event.
    field: Option<Field>,
    /// `Some`: the item only says whether the field is there.
    exists: Option<bool>,
    matcher: CompiledMatcher,
}

impl Detections {
    pub fn new(named: HashMap<String, CompiledDetection>) -> Detections {
        let (names, list) = named
            .into_iter()
            .map(|(name, d)| (name, Detection::new(d)))
            .unzip();
        Detections { names, list }
    }

    /// `expr` with its names resolved to these detections.
    pub fn condition(&self, expr: &ConditionExpr) -> Condition {
        let all = |exprs: &[ConditionExpr]| exprs.iter().map(|e| self.condition(e)).collect();
        match expr {
            ConditionExpr::Identifier(name) => self
                .names
                .iter()
                .position(|n| n == name)
                .map_or(Condition::Undefined, Condition::Detection),
            ConditionExpr::And(exprs) => Condition::And(all(exprs)),
            ConditionExpr::Or(exprs) => Condition::Or(all(exprs)),
            ConditionExpr::Not(inner) => Condition::Not(Box::new(self.condition(inner))),
            ConditionExpr::Selector {
                quantifier,
                pattern,
            } => {
                let of: Vec<usize> = (0..self.names.len())
                    .filter(|&i| pattern.matches_detection_name(&self.names[i]))
                    .collect();
                let n = match quantifier {
                    Quantifier::Any => 1,
                    Quantifier::All => of.len() as u64,
                    Quantifier::Count(n) => *n,
                };
                Condition::AtLeast { n, of }
            }
        }
    }

    /// Whether `condition` holds for `event`.
    pub fn holds(&self, condition: &Condition, event: &SigmaEvent) -> bool {
        match condition {
            Condition::Detection(i) => self.list[*i].matches(event),
            Condition::Undefined => false,
            Condition::And(all) => all.iter().all(|c| self.holds(c, event)),
            Condition::Or(any) => any.iter().any(|c| self.holds(c, event)),
            Condition::Not(inner) => !self.holds(inner, event),
            Condition::AtLeast { n, of } => {
                let mut met = 0;
                met >= *n
                    || of.iter().any(|&i| {
                        met += u64::from(self.list[i].matches(event));
                        met >= *n
                    })
            }
        }
    }
}

impl Detection {
    fn new(detection: CompiledDetection) -> Detection {
        let all = |ds: Vec<CompiledDetection>| ds.into_iter().map(Detection::new).collect();
        match detection {
            CompiledDetection::AllOf(items) => {
                Detection::AllOf(items.into_iter().map(Item::new).collect())
            }
            CompiledDetection::AnyOf(ds) => Detection::AnyOf(all(ds)),
            CompiledDetection::And(ds) => Detection::And(all(ds)),
            CompiledDetection::Keywords(matcher) => Detection::Keywords(matcher),
            other => Detection::Crate(Box::new((
                ConditionExpr::Identifier(String::new()),
                HashMap::from([(String::new(), other)]),
            ))),
        }
    }

    /// The crate's `eval_detection_with_bloom`, without a bloom filter.
    fn matches(&self, event: &SigmaEvent) -> bool {
        match self {
            Detection::AllOf(items) => items.iter().all(|i| i.matches(event)),
            Detection::AnyOf(ds) => ds.iter().any(|d| d.matches(event)),
            Detection::And(ds) => ds.iter().all(|d| d.matches(event)),
            Detection::Keywords(matcher) => matcher.matches_keyword(event),
            Detection::Crate(crate_own) => {
                let (name, named) = &**crate_own;
                rsigma_eval::compiler::eval_condition(name, named, event, &mut Vec::new())
            }
        }
    }
}

impl Item {
    fn new(item: CompiledDetectionItem) -> Item {
        Item {
            field: item.field.as_deref().map(Field::of),
            exists: item.exists,
            matcher: item.matcher,
        }
    }

    /// The crate's `eval_detection_item_with_bloom`, without a bloom filter.
    fn matches(&self, event: &SigmaEvent) -> bool {
        match (&self.field, self.exists) {
            (Some(field), Some(exists)) => event.get(field).is_some_and(|v| !v.is_null()) == exists,
            (None, Some(exists)) => !exists,
            (Some(field), None) => match event.get(field) {
                Some(value) => self.matcher.matches(&value, event),
                None => matches!(self.matcher, CompiledMatcher::Null),
            },
            (None, None) => self.matcher.matches_keyword(event),
        }
    }
}

#[cfg(test)]
mod tests {
    use rsigma_eval::compiler::{compile_rule, eval_condition};

    use super::*;
    use crate::model::Event;

    /// Every condition form (names, and/or/not, `1 of`, `all of`, `N of`,
    /// `them`) and item form (a field, a keyword, a field that must or must
    /// not be there, a null value, a number, a label, a path into `fields`,
    /// an array's members, alone and beside an item) gives what the crate's
    /// evaluation gives, over events that meet each condition and events
    /// that miss it.
    #[test]
    fn conditions_hold_where_the_crates_do() {
        let rule = "title: t\nsigma-version: 3\nlogsource:\n    product: linux\ndetection:\n\
            \x20   sel_user:\n        user.name: root\n\
            \x20   sel_msg:\n        message|contains|all: ['failed', 'password']\n\
            \x20   sel_port:\n        source.port|gte: 1024\n\
            \x20   sel_ip:\n        source.ip|cidr: 10.0.0.0/8\n\
            \x20   keywords:\n        - 'invalid user'\n        - 'BREAK-IN'\n\
            \x20   present:\n        process.pid|exists: true\n\
            \x20   absent:\n        host.name|exists: false\n\
            \x20   nothing:\n        user.target.name: null\n\
            \x20   label:\n        labels.site: berlin\n\
            \x20   deep:\n        fields.ssh.method|endswith: word\n\
            \x20   either:\n        - event.outcome: failure\n        - event.action: ssh_login\n\
            \x20   member:\n        hosts[any]:\n            name: b\n\
            \x20   mixed:\n        user.name: root\n        hosts[all]:\n            name|startswith: a\n\
            \x20   condition:\n\
            \x20       - sel_user and not sel_ip\n\
            \x20       - 1 of sel_* and (keywords or present)\n\
            \x20       - all of sel_*\n\
            \x20       - 5 of them\n\
            \x20       - absent and nothing and not label\n\
            \x20       - deep or either\n\
            \x20       - member or mixed\n\
            \x20       - not 1 of sel_* and not keywords\n\
            level: low\n";
        let collection = rsigma_parser::parse_sigma_yaml(rule).unwrap();
        let compiled = compile_rule(&collection.rules[0]).unwrap();
        let detections = Detections::new(compiled.detections.clone());
        let conditions: Vec<Condition> = compiled
            .conditions
            .iter()
            .map(|c| detections.condition(c))
            .collect();
        let events = [
            serde_json::json!({"message": "Failed password for root", "user": {"name": "root"},
                "source": {"ip": "10.1.2.3", "port": 50000}}),
            serde_json::json!({"message": "Invalid user admin", "source": {"ip": "192.0.2.1"},
                "process": {"pid": 42}, "host": {"name": "h"}, "user": {"target": {"name": "x"}}}),
            serde_json::json!({"message": "PASSWORD FAILED: BREAK-IN attempt",
                "user": {"name": "ROOT"}, "source": {"port": 80}, "labels": {"site": "berlin"},
                "ssh": {"method": "password"}, "hosts": [{"name": "a1"}, {"name": "b"}]}),
            serde_json::json!({"message": "x", "user": {"name": "root"},
                "hosts": [{"name": "a1"}, {"name": "a2"}]}),
            serde_json::json!({"message": "quiet", "event": {"outcome": "failure"}}),
            serde_json::json!({"message": ""}),
        ];
        let mut held = vec![0; conditions.len()];
        for json in &events {
            let event = Event::from_json(json.clone(), chrono::Utc::now()).unwrap();
            let view = SigmaEvent(&event);
            for (i, (expr, condition)) in compiled.conditions.iter().zip(&conditions).enumerate() {
                let expected = eval_condition(expr, &compiled.detections, &view, &mut Vec::new());
                assert_eq!(
                    detections.holds(condition, &view),
                    expected,
                    "{expr:?} on {json}"
                );
                held[i] += usize::from(expected);
            }
        }
        // Each condition holds for some events and not for others.
        assert!(held.iter().all(|&n| n > 0 && n < events.len()), "{held:?}");
    }
}
