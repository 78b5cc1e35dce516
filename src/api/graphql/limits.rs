//! What one GraphQL request may ask of the node, checked before and while
//! it runs: the document's size and nesting (a linear scan, before the
//! recursive parser sees it), the nesting of its variables, the items it
//! may return over all its fields and aliases ([`Budget`]), and the
//! refused mutations it made, audited as one entry ([`Refusals`]); once
//! parsed, and before async-graphql validates it, the size its fragments
//! expand to ([`check_expansion`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use async_graphql::Value;
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

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
    /// `QUERY_TOO_COMPLEX`: more fragment definitions than [`MAX_FRAGMENTS`].
    TooManyFragments { count: usize, max: usize },
    /// `QUERY_TOO_COMPLEX`: more fragment spreads than [`MAX_SPREADS`].
    TooManySpreads { max: usize },
    /// `QUERY_TOO_COMPLEX`: with its fragments expanded, the document
    /// holds more selections (fields, fragment spreads, inline fragments)
    /// than [`MAX_EXPANDED_FIELDS`].
    ExpandsTooFar { max: usize },
    /// `BAD_REQUEST`: a spread names a fragment the document does not
    /// define (async-graphql's depth check would walk around it unbounded).
    UnknownFragment { name: String },
    /// `QUERY_TOO_COMPLEX`: a fragment spreads itself, directly or not.
    FragmentCycle { name: String },
}

/// Most fragment definitions one document may hold.
pub const MAX_FRAGMENTS: usize = 100;
/// Most fragment spreads (`...Name`) one document may hold, counted as written.
pub const MAX_SPREADS: usize = 1_000;
/// Most selections (fields, fragment spreads and inline fragments, each
/// counting 1) one document may hold once every fragment spread is
/// replaced by its fragment (and for each fragment on its own).
pub const MAX_EXPANDED_FIELDS: usize = 10_000;

impl Refused {
    pub fn code(&self) -> &'static str {
        match self {
            Refused::TooLarge { .. } => "QUERY_TOO_LARGE",
            Refused::TooDeep { .. } | Refused::VariablesTooDeep { .. } => "QUERY_TOO_DEEP",
            Refused::TooManyFragments { .. }
            | Refused::TooManySpreads { .. }
            | Refused::ExpandsTooFar { .. }
            | Refused::FragmentCycle { .. } => "QUERY_TOO_COMPLEX",
            Refused::UnknownFragment { .. } => "BAD_REQUEST",
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
            Refused::TooManyFragments { count, max } => format!(
                "the GraphQL document defines {count} fragments: at most {max} (inline them or split the request)"
            ),
            Refused::TooManySpreads { max } => format!(
                "the GraphQL document spreads fragments more than {max} times: split the request"
            ),
            Refused::ExpandsTooFar { max } => format!(
                "the GraphQL document holds more than {max} selections once its fragments are expanded: split the request"
            ),
            Refused::UnknownFragment { name } => {
                let name: String = name.chars().take(64).collect();
                format!("the fragment `{name}` is not defined: define it or remove the spread")
            }
            Refused::FragmentCycle { name } => {
                // Names are at most the document's bytes; keep the message short.
                let name: String = name.chars().take(64).collect();
                format!("the fragment `{name}` spreads itself: remove the cycle")
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

/// The selections a selection set holds itself (its own fields, inline
/// fragments and spreads, and those of their sub-selections, each counting
/// 1) and the fragments it spreads, one entry per spread as written.
struct Shape<'a> {
    selections: usize,
    spreads: Vec<&'a str>,
}

/// The [`Shape`] of `set`, walked with an explicit stack; `spreads` counts
/// the spreads seen in the whole document and refuses past [`MAX_SPREADS`].
fn shape<'a>(set: &'a SelectionSet, spreads: &mut usize) -> Result<Shape<'a>, Refused> {
    let mut out = Shape {
        selections: 0,
        spreads: Vec::new(),
    };
    let mut stack = vec![set];
    while let Some(set) = stack.pop() {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    out.selections = out.selections.saturating_add(1);
                    stack.push(&field.node.selection_set.node);
                }
                Selection::InlineFragment(inline) => {
                    out.selections = out.selections.saturating_add(1);
                    stack.push(&inline.node.selection_set.node);
                }
                Selection::FragmentSpread(spread) => {
                    out.selections = out.selections.saturating_add(1);
                    *spreads += 1;
                    if *spreads > MAX_SPREADS {
                        return Err(Refused::TooManySpreads { max: MAX_SPREADS });
                    }
                    out.spreads.push(spread.node.fragment_name.node.as_str());
                }
            }
        }
    }
    Ok(out)
}

/// Refuses a parsed document that async-graphql's own checks (its
/// recursion-depth check, complexity and validation, which walk a fragment
/// again at each spread) could not walk in bounded time: more than
/// [`MAX_FRAGMENTS`] fragment definitions or [`MAX_SPREADS`] spreads, a
/// spread to a fragment it does not define (async-graphql's depth check
/// skips those, so they would hide an unbounded walk), a fragment cycle,
/// or more than [`MAX_EXPANDED_FIELDS`] selections once every spread is
/// expanded (over all operations, and for each fragment). Every selection
/// counts 1 (a field, an inline fragment, a spread), a spread plus its
/// fragment's expansion, so selections without fields still add up. Each
/// fragment's expanded size is computed once (memoised, saturating), so
/// this is linear in the document, and no recursion follows client data.
pub fn check_expansion(doc: &ExecutableDocument) -> Result<(), Refused> {
    if doc.fragments.len() > MAX_FRAGMENTS {
        return Err(Refused::TooManyFragments {
            count: doc.fragments.len(),
            max: MAX_FRAGMENTS,
        });
    }
    let mut spreads = 0usize;
    let mut shapes: HashMap<&str, Shape<'_>> = HashMap::with_capacity(doc.fragments.len());
    for (name, fragment) in &doc.fragments {
        shapes.insert(
            name.as_str(),
            shape(&fragment.node.selection_set.node, &mut spreads)?,
        );
    }
    let mut operations = Vec::new();
    for (_, op) in doc.operations.iter() {
        operations.push(shape(&op.node.selection_set.node, &mut spreads)?);
    }
    if let Some(name) = shapes
        .values()
        .chain(operations.iter())
        .flat_map(|shape| shape.spreads.iter())
        .find(|name| !shapes.contains_key(*name))
    {
        return Err(Refused::UnknownFragment {
            name: (*name).to_owned(),
        });
    }
    let too_far = || Refused::ExpandsTooFar {
        max: MAX_EXPANDED_FIELDS,
    };
    // Expanded size of each fragment, depth first with an explicit stack.
    let mut sizes: HashMap<&str, usize> = HashMap::with_capacity(shapes.len());
    let mut open: HashSet<&str> = HashSet::new();
    for &root in shapes.keys() {
        if sizes.contains_key(root) {
            continue;
        }
        // (fragment, index of the next spread to look at)
        let mut stack: Vec<(&str, usize)> = vec![(root, 0)];
        open.insert(root);
        while let Some(top) = stack.last_mut() {
            let (name, next) = *top;
            top.1 += 1;
            let Some(shape) = shapes.get(name) else {
                stack.pop();
                continue;
            };
            if let Some(&child) = shape.spreads.get(next) {
                if sizes.contains_key(child) || !shapes.contains_key(child) {
                    continue;
                }
                if !open.insert(child) {
                    return Err(Refused::FragmentCycle {
                        name: child.to_owned(),
                    });
                }
                stack.push((child, 0));
                continue;
            }
            let size = shape.spreads.iter().fold(shape.selections, |sum, child| {
                sum.saturating_add(sizes.get(child).copied().unwrap_or(0))
            });
            if size > MAX_EXPANDED_FIELDS {
                return Err(too_far());
            }
            sizes.insert(name, size);
            open.remove(name);
            stack.pop();
        }
    }
    let total = operations.iter().fold(0usize, |total, op| {
        op.spreads
            .iter()
            .fold(total.saturating_add(op.selections), |sum, child| {
                sum.saturating_add(sizes.get(child).copied().unwrap_or(0))
            })
    });
    if total > MAX_EXPANDED_FIELDS {
        return Err(too_far());
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
pub(super) mod tests {
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

    fn parse(doc: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(doc).unwrap()
    }

    fn chain(n: usize, fan: usize) -> String {
        fragment_bomb(n, fan, "Q")
    }

    /// `n` fragments on `on`, each spreading the next `fan` times; the
    /// last selects `a`: `fan^(n-1)` fields once expanded.
    pub(in crate::api::graphql) fn fragment_bomb(n: usize, fan: usize, on: &str) -> String {
        let mut doc = String::from("{ ...F0 }");
        for i in 0..n {
            let body = if i + 1 == n {
                "a".to_owned()
            } else {
                format!("...F{} ", i + 1).repeat(fan)
            };
            doc.push_str(&format!(" fragment F{i} on {on} {{ {body} }}"));
        }
        doc
    }

    #[test]
    fn fragments_are_expanded_once_each_and_refused_past_the_cap() {
        // 100^29 fields if walked spread by spread (the bomb of the
        // review); refused by its spread count, at once.
        let started = Instant::now();
        assert_eq!(
            check_expansion(&parse(&chain(30, 100))),
            Err(Refused::TooManySpreads { max: MAX_SPREADS })
        );
        // Under the spread cap: 40^19 fields, refused by expansion.
        assert_eq!(
            check_expansion(&parse(&chain(20, 40))),
            Err(Refused::ExpandsTooFar {
                max: MAX_EXPANDED_FIELDS
            })
        );
        // Saturating: 2^99 would overflow a usize.
        assert_eq!(
            check_expansion(&parse(&chain(100, 2))),
            Err(Refused::ExpandsTooFar {
                max: MAX_EXPANDED_FIELDS
            })
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Exactly at the cap: the operation's spread (1) plus F1's 99
        // spreads, each 1 plus F0's 100 fields: 1 + 99 x 101 = 10,000.
        let at_cap = format!(
            "{{ ...F1 }} fragment F1 on Q {{ {} }} fragment F0 on Q {{ {} }}",
            "...F0 ".repeat(99),
            (0..100).map(|i| format!("f{i} ")).collect::<String>()
        );
        assert_eq!(check_expansion(&parse(&at_cap)), Ok(()));
        let over = at_cap.replacen("{ ...F1 }", "{ x ...F1 }", 1);
        assert_eq!(
            check_expansion(&parse(&over)),
            Err(Refused::ExpandsTooFar {
                max: MAX_EXPANDED_FIELDS
            })
        );
        // Two operations add up; nested fields and inline fragments count.
        let two = at_cap.replacen(
            "{ ...F1 }",
            "query a { ...F1 } query b { y { ... on Q { z } } }",
            1,
        );
        assert!(check_expansion(&parse(&two)).is_err());
        // An unused fragment is held to the cap too.
        let unused = at_cap.replacen("{ ...F1 }", "{ a }", 1);
        assert_eq!(check_expansion(&parse(&unused)), Ok(()));
        let unused = unused.replacen("{ a }", "{ a } fragment F2 on Q { ...F1 ...F1 }", 1);
        assert!(check_expansion(&parse(&unused)).is_err());
        // Small documents.
        assert_eq!(check_expansion(&parse(&chain(3, 3))), Ok(()));
        assert_eq!(check_expansion(&parse("{ a { b c } d }")), Ok(()));
    }

    /// The second review's bomb: F0..F29 each spread the next 31 times,
    /// F30 spreads a fragment that does not exist; no field anywhere.
    /// async-graphql's depth check walks it 31^30 times.
    fn fieldless_bomb() -> String {
        let mut doc = String::from("{ ...F0 }");
        for i in 0..30 {
            let body = format!("...F{} ", i + 1).repeat(31);
            doc.push_str(&format!(" fragment F{i} on Q {{ {body} }}"));
        }
        doc.push_str(" fragment F30 on Q { ...Missing }");
        doc
    }

    #[test]
    fn spreads_and_inline_fragments_count_and_unknown_fragments_are_refused() {
        let started = Instant::now();
        let bomb = fieldless_bomb();
        let refused = check_expansion(&parse(&bomb)).unwrap_err();
        assert_eq!(
            refused,
            Refused::UnknownFragment {
                name: "Missing".into()
            }
        );
        assert_eq!(refused.code(), "BAD_REQUEST");
        // The same without the unknown spread: refused by expansion, with
        // no field in it.
        let known = bomb.replace("{ ...Missing }", "{ ... on Q { __typename } }");
        assert_eq!(
            check_expansion(&parse(&known)),
            Err(Refused::ExpandsTooFar {
                max: MAX_EXPANDED_FIELDS
            })
        );
        let empty_inline = bomb.replace("{ ...Missing }", "{ ... on Q { ... on Q { a } } }");
        assert!(check_expansion(&parse(&empty_inline)).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Unknown fragments anywhere: in an operation, in an unused fragment.
        for doc in [
            "{ a ...Missing }",
            "{ a { b ...Missing } }",
            "{ a } fragment A on Q { ... on Q { ...Missing } }",
        ] {
            assert!(
                matches!(
                    check_expansion(&parse(doc)),
                    Err(Refused::UnknownFragment { .. })
                ),
                "{doc}"
            );
        }
        // Spreads and inline fragments count 1 each: 10,001 selections.
        let spreads = format!(
            "{{ {} }} fragment F on Q {{ {} }}",
            "...F ".repeat(1_000),
            "... on Q { a } ".repeat(4) + "b "
        );
        // 1,000 x (1 + 4 x 2 + 1) = 10,000: at the cap.
        assert_eq!(check_expansion(&parse(&spreads)), Ok(()));
        let over = spreads.replacen("{ ...F", "{ x ...F", 1);
        assert_eq!(
            check_expansion(&parse(&over)),
            Err(Refused::ExpandsTooFar {
                max: MAX_EXPANDED_FIELDS
            })
        );
    }

    #[test]
    fn fragment_cycles_and_counts_are_refused() {
        for doc in [
            "{ ...A } fragment A on Q { a ...A }",
            "{ ...A } fragment A on Q { ...B } fragment B on Q { c { ...C } } fragment C on Q { ...A }",
            // Unused, still a cycle.
            "{ a } fragment A on Q { ...B } fragment B on Q { ...A }",
        ] {
            let refused = check_expansion(&parse(doc)).unwrap_err();
            assert!(
                matches!(refused, Refused::FragmentCycle { .. }),
                "{doc}: {refused:?}"
            );
            assert_eq!(refused.code(), "QUERY_TOO_COMPLEX");
        }
        // A diamond is no cycle.
        let diamond = "{ ...A } fragment A on Q { ...B ...C } fragment B on Q { ...D } \
                       fragment C on Q { ...D } fragment D on Q { d }";
        assert_eq!(check_expansion(&parse(diamond)), Ok(()));
        let many: String = (0..=MAX_FRAGMENTS)
            .map(|i| format!(" fragment F{i} on Q {{ a }}"))
            .collect();
        assert_eq!(
            check_expansion(&parse(&format!("{{ a }}{many}"))),
            Err(Refused::TooManyFragments {
                count: MAX_FRAGMENTS + 1,
                max: MAX_FRAGMENTS
            })
        );
        let spreads = format!(
            "{{ {} }} fragment F on Q {{ a }}",
            "...F ".repeat(MAX_SPREADS + 1)
        );
        assert_eq!(
            check_expansion(&parse(&spreads)),
            Err(Refused::TooManySpreads { max: MAX_SPREADS })
        );
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
