//! Where in a rule's YAML a parser or compiler message points.
//!
//! The `rsigma` crates give a line and column for YAML syntax errors and a
//! position inside the condition string for condition errors; the other
//! Sigma-level errors ("Missing required field 'condition'", "Unknown
//! modifier 'foo'", "invalid regex pattern: ...") name no place. For those
//! the line of the key the message is about is looked up in the text, which
//! works for block-style YAML (every key on its own line, children indented
//! deeper), the way Sigma rules are written.

/// A 1-based line and, when known, a 1-based column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: Option<usize>,
}

impl Position {
    fn line(line: usize) -> Position {
        Position { line, column: None }
    }
}

/// Where `error`, a message about the YAML document `text`, points; `None`
/// when it is about the document as a whole.
pub fn locate(text: &str, error: &str) -> Option<Position> {
    if let Some(rest) = error.strip_prefix("Condition parse error at ") {
        let (line, column) = rest.split_once(':')?;
        let column: String = column.chars().take_while(char::is_ascii_digit).collect();
        return condition_position(text, line.parse().ok()?, column.parse().ok()?);
    }
    if let Some(name) = error.strip_prefix("unknown detection identifier: ") {
        let condition = find_key(text, &["detection", "condition"])?;
        let column = text
            .lines()
            .nth(condition.line - 1)
            .and_then(|l| char_column(l, name.trim()));
        return Some(Position {
            line: condition.line,
            column,
        });
    }
    if let Some(at) = line_column(error) {
        return Some(at);
    }
    if let Some(name) = error.strip_prefix("Unknown modifier ").and_then(quoted) {
        return modifier(text, name);
    }
    for (prefix, name) in [
        ("invalid regex pattern", "re"),
        ("invalid CIDR", "cidr"),
        ("base64 encoding error", "base64"),
    ] {
        if error.starts_with(prefix) {
            return modifier(text, name).or_else(|| key(text, &["detection"]));
        }
    }
    if let Some(field) = error
        .strip_prefix("Missing required field ")
        .and_then(quoted)
    {
        // The key is absent: point at the section that lacks it.
        return match field {
            "condition" if text_has_key(text, "correlation") => key(text, &["correlation"]),
            "condition" => key(text, &["detection"]),
            "type" | "rules" | "timespan" | "group-by" => key(text, &["correlation"]),
            _ => None,
        };
    }
    let lower = error.to_lowercase();
    // The most specific key a message names first.
    const KEYS: &[&[&str]] = &[
        &["correlation", "timespan"],
        &["correlation", "group-by"],
        &["correlation", "rules"],
        &["detection", "condition"],
        &["correlation", "condition"],
        &["filter", "rules"],
        &["filter", "condition"],
        &["correlation"],
        &["filter"],
        &["detection"],
        &["logsource"],
        &["level"],
        &["status"],
        &["date"],
        &["modified"],
        &["related"],
        &["tags"],
        &["title"],
    ];
    for path in KEYS {
        let last = path[path.len() - 1];
        if contains_word(&lower, last)
            && let Some(at) = key(text, path)
        {
            return Some(at);
        }
    }
    if ["invalid modifier", "incompatible value", "expected numeric"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return key(text, &["detection"]);
    }
    None
}

/// `line N column M` (serde-saphyr, yaml_serde), or `line N`.
fn line_column(error: &str) -> Option<Position> {
    let (at, _) = error.match_indices("line ").find(|(i, _)| {
        !error[..*i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })?;
    let rest = &error[at + 5..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let line = digits.parse().ok()?;
    let column = rest[digits.len()..]
        .strip_prefix(" column ")
        .map(|r| {
            r.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|d| d.parse().ok());
    Some(Position { line, column })
}

/// The text between the first pair of single quotes.
fn quoted(s: &str) -> Option<&str> {
    let start = s.find('\'')? + 1;
    let len = s[start..].find('\'')?;
    Some(&s[start..start + len])
}

fn contains_word(haystack: &str, word: &str) -> bool {
    haystack.match_indices(word).any(|(i, _)| {
        let before = haystack[..i].chars().next_back();
        let after = haystack[i + word.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// A position inside the condition string -> a position in the text (the
/// column only when the condition is a one-line scalar after its key).
fn condition_position(text: &str, line: usize, column: usize) -> Option<Position> {
    let key = find_key(text, &["detection", "condition"])?;
    Some(match key.value_column {
        Some(start) if line == 1 => Position {
            line: key.line,
            column: Some(start + column.max(1) - 1),
        },
        _ => Position::line(key.line),
    })
}

/// The first detection key using the modifier `name` (`field|name:`), at
/// the modifier.
fn modifier(text: &str, name: &str) -> Option<Position> {
    let needle = format!("|{name}");
    text.lines().enumerate().find_map(|(i, line)| {
        let key = line.split(':').next()?;
        let at = key
            .match_indices(&needle)
            .find(|(at, _)| matches!(key[at + needle.len()..].chars().next(), None | Some('|')))?;
        Some(Position {
            line: i + 1,
            column: Some(line[..at.0].chars().count() + 2),
        })
    })
}

fn text_has_key(text: &str, key: &str) -> bool {
    find_key(text, &[key]).is_some()
}

/// The line and column of the key at `path` (see [`find_key`]).
pub fn key(text: &str, path: &[&str]) -> Option<Position> {
    find_key(text, path).map(|k| Position {
        line: k.line,
        column: Some(k.column),
    })
}

/// Where a key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    line: usize,
    column: usize,
    /// Where its value starts, when it is on the key's line (inside the
    /// quotes of a quoted scalar).
    value_column: Option<usize>,
}

/// The key at `path` (the first at the top level, the next below it, ...)
/// in block-style YAML; the first match.
fn find_key(text: &str, path: &[&str]) -> Option<Key> {
    // Each matched ancestor's indentation, and that of its children.
    let mut parents: Vec<(usize, Option<usize>)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let content = raw.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = raw.len() - content.len();
        if raw.trim_end() == "---" {
            parents.clear();
            continue;
        }
        while parents.last().is_some_and(|&(p, _)| indent <= p) {
            parents.pop();
        }
        let depth = parents.len();
        // Only direct children: deeper lines belong to a sibling's value.
        let direct = match parents.last_mut() {
            None => indent == 0,
            Some((_, children)) => *children.get_or_insert(indent) == indent,
        };
        if !direct {
            continue;
        }
        let Some(after) = content
            .strip_prefix(path[depth])
            .and_then(|rest| rest.trim_start().strip_prefix(':'))
        else {
            continue;
        };
        if depth + 1 == path.len() {
            let column = raw[..indent].chars().count() + 1;
            let value = after.trim_start();
            let value_column = (!value.is_empty() && !value.starts_with('#')).then(|| {
                let offset = raw.len() - value.len();
                let quote = usize::from(value.starts_with(['\'', '"']));
                raw[..offset].chars().count() + 1 + quote
            });
            return Some(Key {
                line: i + 1,
                column,
                value_column,
            });
        }
        parents.push((indent, None));
    }
    None
}

/// The 1-based character column of `needle` as a whole word in `line`.
fn char_column(line: &str, needle: &str) -> Option<usize> {
    line.match_indices(needle)
        .find(|(i, _)| {
            let before = line[..*i].chars().next_back();
            let after = line[i + needle.len()..].chars().next();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .map(|(i, _)| line[..i].chars().count() + 1)
}

/// The YAML documents of a file (split at `---` lines): the 1-based line of
/// each one's first line, and its text.
pub fn documents(text: &str) -> Vec<(usize, &str)> {
    let mut docs = Vec::new();
    let (mut start, mut start_line, mut offset) = (0, 1, 0);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let end = offset + line.len();
        if line.trim_end() == "---" {
            if !text[start..offset].trim().is_empty() {
                docs.push((start_line, &text[start..offset]));
            }
            start = end;
            start_line = i + 2;
        }
        offset = end;
    }
    if !text[start..].trim().is_empty() {
        docs.push((start_line, &text[start..]));
    }
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "\
title: Whoami
id: 6f0f6e1c-3e2b-4a36-9d0b-0f7a1c2a1d01
logsource:
    product: linux
    service: auditd
detection:
    selection:
        process.command_line|contains: whoami
        process.name|re: '^who'
    condition: 'selection and'
level: low
";

    fn at(line: usize, column: Option<usize>) -> Option<Position> {
        Some(Position { line, column })
    }

    /// Messages as `rsigma-parser`, `rsigma-eval` and serde-saphyr word
    /// them, and where each points in `RULE`.
    #[test]
    fn messages_point_at_the_line_they_are_about() {
        for (error, expected) in [
            (
                "YAML parse error: did not find expected key at line 4 column 2, while parsing a block mapping",
                at(4, Some(2)),
            ),
            (
                "error: line 7 column 9: duplicate mapping key",
                at(7, Some(9)),
            ),
            // The condition value starts in column 17 (inside the quote);
            // the parser's column 14 is the end of `selection and`.
            (
                "Condition parse error at 1:14:  --> 1:14\n  |\n1 | selection and\n  = expected quantifier, ident, or not_op",
                at(10, Some(30)),
            ),
            ("unknown detection identifier: selection", at(10, Some(17))),
            ("Unknown modifier 'contains'", at(8, Some(30))),
            (
                "invalid regex pattern: regex parse error:\n    (abc\n    ^\nerror: unclosed group",
                at(9, Some(22)),
            ),
            ("Missing required field 'condition'", at(6, Some(1))),
            ("Missing required field 'title'", None),
            ("invalid level: 'bogus'", at(11, Some(1))),
            (
                "Invalid detection: Detection section must be a mapping",
                at(6, Some(1)),
            ),
            ("Document is not a YAML mapping", None),
        ] {
            assert_eq!(locate(RULE, error), expected, "{error}");
        }
    }

    #[test]
    fn keys_are_found_below_their_parent_only() {
        let text = "title: t\nfields:\n    condition: not this one\ndetection:\n    sel:\n        condition: nor this\n    condition: sel\n";
        assert_eq!(
            find_key(text, &["detection", "condition"]),
            Some(Key {
                line: 7,
                column: 5,
                value_column: Some(16),
            })
        );
        assert_eq!(find_key(text, &["correlation"]), None);
    }

    #[test]
    fn documents_split_at_separators_with_their_first_line() {
        let text = "title: a\n---\ntitle: b\nid: x\n---\n\n";
        assert_eq!(
            documents(text),
            [(1, "title: a\n"), (3, "title: b\nid: x\n")]
        );
        assert_eq!(documents("---\ntitle: a"), [(2, "title: a")]);
    }
}
