//! What one GraphQL request may ask of the node, checked before and while
//! it runs: the document's size and nesting (a linear scan, before the
//! recursive parser sees it), the nesting of its variables, the items it
//! may return over all its fields and aliases ([`Budget`]), and the
//! refused mutations it made, audited as one entry ([`Refusals`]).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use async_graphql::Value;

use super::coded;

/// Why a document was refused before parsing, with its error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// `QUERY_TOO_LARGE`.
    TooLarge { bytes: usize, max: usize },
    /// `QUERY_TOO_DEEP`.
    TooDeep { max: usize },
    /// `QUERY_TOO_DEEP`, in the variables.
    VariablesTooDeep { max: usize },
}

impl Refused {
    pub fn code(&self) -> &'static str {
        match self {
            Refused::TooLarge { .. } => "QUERY_TOO_LARGE",
            Refused::TooDeep { .. } | Refused::VariablesTooDeep { .. } => "QUERY_TOO_DEEP",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refused::TooLarge { bytes, max } => format!(
                "the GraphQL document has {bytes} bytes: at most {max} (pass large values as variables)"
            ),
            Refused::TooDeep { max } => format!(
                "the GraphQL document nests `{{`, `[` or `(` deeper than {max} levels: flatten it"
            ),
            Refused::VariablesTooDeep { max } => {
                format!(
                    "the variables nest arrays or objects deeper than {max} levels: flatten them"
                )
            }
        }
    }
}

/// Refuses a GraphQL document longer than `max_bytes` or whose `{`, `[`
/// and `(` nest deeper than `max_depth`, in one pass over its bytes.
/// Strings (`"..."` with escapes, `"""..."""` block strings) and comments
/// (`#` to the end of the line) are skipped: brackets there nest nothing.
pub fn check_document(doc: &str, max_bytes: usize, max_depth: usize) -> Result<(), Refused> {
    if doc.len() > max_bytes {
        return Err(Refused::TooLarge {
            bytes: doc.len(),
            max: max_bytes,
        });
    }
    let b = doc.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if b[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < b.len() && !b[i..].starts_with(b"\"\"\"") {
                    // `\"""` is an escaped triple quote inside a block string.
                    i += if b[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > max_depth {
                    return Err(Refused::TooDeep { max: max_depth });
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Refuses variables whose lists and objects nest deeper than `max_depth`
/// (walked with an explicit stack: no recursion on client data).
pub fn check_variables<'a>(
    values: impl Iterator<Item = &'a Value>,
    max_depth: usize,
) -> Result<(), Refused> {
    let mut stack: Vec<(&Value, usize)> = values.map(|v| (v, 1)).collect();
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::List(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth > max_depth {
            return Err(Refused::VariablesTooDeep { max: max_depth });
        }
        stack.extend(children.map(|v| (v, depth + 1)));
    }
    Ok(())
}

/// The items (events, alerts, rules, notifications, hits) one request may
/// still return, over all its fields and aliases. Each list resolver takes
/// its page size before it runs.
#[derive(Debug)]
pub struct Budget {
    max: usize,
    left: AtomicUsize,
    /// When the request's time is up (`api.request_timeout_seconds`): long
    /// blocking work (a back-test) stops there.
    pub deadline: Instant,
}

impl Budget {
    pub fn new(max: usize, deadline: Instant) -> Budget {
        Budget {
            max,
            left: AtomicUsize::new(max),
            deadline,
        }
    }

    /// Takes `n` items, or refuses with `QUERY_TOO_COMPLEX` when fewer are left.
    pub fn take(&self, n: usize) -> async_graphql::Result<()> {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(n)
            })
            .map(|_| ())
            .map_err(|_| {
                coded(
                    "QUERY_TOO_COMPLEX",
                    format!(
                        "one request returns at most {} items over all its fields and aliases: ask for smaller pages or split the request",
                        self.max
                    ),
                )
            })
    }
}

/// Most field names a summary of refused mutations lists.
const LISTED: usize = 20;

/// The mutations of one request refused for lack of a capability,
/// summarised in bounded memory; written as one audit entry once the
/// request is done (`access.denied`).
#[derive(Debug, Default)]
pub struct Refusals(Mutex<Summary>);

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub count: usize,
    pub role: Option<String>,
    /// The capabilities they needed.
    pub needs: BTreeSet<String>,
    /// The first [`LISTED`] distinct mutations refused.
    pub fields: BTreeSet<String>,
}

impl Refusals {
    pub fn add(&self, field: &str, role: &str, needs: &str) {
        let mut s = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.count += 1;
        s.role.get_or_insert_with(|| role.to_owned());
        if s.needs.len() < LISTED {
            s.needs.insert(needs.to_owned());
        }
        if s.fields.len() < LISTED {
            s.fields.insert(field.to_owned());
        }
    }

    /// What was refused, leaving nothing behind.
    pub fn take(&self) -> Summary {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl Summary {
    /// The audit entry's target: the mutation, or how many there were.
    pub fn target(&self) -> String {
        match (self.count, self.fields.first()) {
            (1, Some(field)) => field.clone(),
            (n, _) => format!("{n} mutations"),
        }
    }

    pub fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "role": self.role,
            "needs": self.needs,
            "count": self.count,
            "mutations": self.fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::Name;

    fn obj(pairs: Vec<(&str, Value)>) -> Value {
        Value::Object(pairs.into_iter().map(|(k, v)| (Name::new(k), v)).collect())
    }

    fn deep(n: usize, open: &str, close: &str) -> String {
        format!("{}1{}", open.repeat(n), close.repeat(n))
    }

    #[test]
    fn documents_are_refused_by_size_and_nesting_before_parsing() {
        assert_eq!(
            check_document(&"x".repeat(11), 10, 32),
            Err(Refused::TooLarge { bytes: 11, max: 10 })
        );
        assert_eq!(check_document(&"x".repeat(10), 10, 32), Ok(()));
        let ok = format!("{{ a(x: {}) }}", deep(30, "[", "]"));
        assert_eq!(check_document(&ok, 1 << 20, 32), Ok(()));
        let list = format!("{{ a(x: {}) }}", deep(31, "[", "]"));
        assert_eq!(
            check_document(&list, 1 << 20, 32),
            Err(Refused::TooDeep { max: 32 })
        );
        let object = format!("{{ a(x: {}) }}", deep(100_000, "{a: ", "}"));
        assert!(check_document(&object, 1 << 20, 32).is_err());
        let selections = deep(33, "{ a ", "}");
        assert!(check_document(&selections, 1 << 20, 32).is_err());
    }

    #[test]
    fn brackets_in_strings_and_comments_nest_nothing() {
        let text = format!(
            "{{ a(x: \"{open}\\\"{open}\", y: \"\"\"{open}\\\"\"\"{open}\"\"\") # {open}\n b }}",
            open = "[".repeat(100)
        );
        assert_eq!(check_document(&text, 1 << 20, 4), Ok(()));
        // An unterminated string ends the scan; the parser reports it.
        assert_eq!(check_document("{ a(x: \"[[[[", 1 << 20, 2), Ok(()));
    }

    #[test]
    fn the_deepest_document_the_check_lets_through_parses() {
        // async-graphql's parser recurses on values; at the default limit
        // it must answer (a document or an error) on a 2 MiB stack.
        let docs = [
            format!("{{ a(x: {}) }}", deep(30, "[", "]")),
            format!("{{ a(x: {}) }}", deep(30, "{a: ", "}")),
            deep(32, "{ a ", "}"),
            format!("query($v: {}Int{}) {{ a }}", "[".repeat(31), "]".repeat(31)),
        ];
        for doc in docs {
            assert_eq!(check_document(&doc, 1 << 20, 32), Ok(()), "{doc}");
            std::thread::Builder::new()
                .stack_size(2 * 1024 * 1024)
                .spawn(move || {
                    let _ = async_graphql::parser::parse_query(&doc);
                })
                .unwrap()
                .join()
                .unwrap();
        }
    }

    #[test]
    fn variables_are_refused_by_nesting() {
        let mut v = Value::Number(1.into());
        for _ in 0..10 {
            v = Value::List(vec![v]);
        }
        assert_eq!(check_variables([&v].into_iter(), 10), Ok(()));
        assert_eq!(
            check_variables([&v].into_iter(), 9),
            Err(Refused::VariablesTooDeep { max: 9 })
        );
        let o = obj(vec![("a", obj(vec![("b", Value::List(vec![]))]))]);
        assert_eq!(check_variables([&o].into_iter(), 3), Ok(()));
        assert!(check_variables([&o].into_iter(), 2).is_err());
    }

    #[test]
    fn the_budget_refuses_what_is_over() {
        let b = Budget::new(100, Instant::now());
        assert!(b.take(60).is_ok());
        assert!(b.take(50).is_err());
        assert!(b.take(40).is_ok());
        assert!(b.take(1).is_err());
    }

    #[test]
    fn refusals_are_summarised_in_bounded_memory() {
        let r = Refusals::default();
        for i in 0..2_400 {
            r.add(&format!("m{}", i % 50), "viewer", "edit_rules");
        }
        let s = r.take();
        assert_eq!(s.count, 2_400);
        assert_eq!(s.fields.len(), LISTED);
        assert_eq!(s.needs.len(), 1);
        assert_eq!(s.target(), "2400 mutations");
        assert_eq!(r.take().count, 0);
        r.add("deleteRule", "viewer", "edit_rules");
        assert_eq!(r.take().target(), "deleteRule");
    }
}
