//! Phrases answered from word pairs instead of positions.
//!
//! Each text field has a companion field indexing every two consecutive
//! words of the value as one term (`failed password`), doc ids only. A
//! two-word phrase is then one term lookup: its total is the term's
//! document count, where a phrase over positions reads the positions of
//! every event holding both words. A longer phrase must hold each of its
//! pairs and is checked against positions only where it does. Pairs with
//! a number in them (`port 22`, the parts of an address) are not indexed:
//! there are too many of them for what they save; a phrase with numbers
//! uses the pairs it has and positions for the rest.
//!
//! Words are the text field's own ([`Words`]: tantivy's default
//! tokenizer, split on anything but letters and digits, lowercased, words
//! over 40 bytes dropped). Pairs join the words that are kept, so a
//! two-word phrase also finds the two words with a dropped over-long word
//! between them, where a phrase over positions would not: a few more hits,
//! never fewer.

use tantivy::Term;
use tantivy::query::{BooleanQuery, Occur, PhraseQuery, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

use super::words::{WordStream, Words};

/// The tokenizer of the pair fields, registered under this name.
pub const TOKENIZER: &str = "word_pairs";

/// Every two consecutive words of the text, as `first second`.
#[derive(Clone, Default)]
pub struct WordPairs {
    words: Words,
}

pub struct PairStream<'a> {
    words: WordStream<'a>,
    /// The last word and where it starts.
    previous: Option<(String, usize)>,
    token: Token,
}

impl Tokenizer for WordPairs {
    type TokenStream<'a> = PairStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> PairStream<'a> {
        PairStream {
            words: self.words.token_stream(text),
            previous: None,
            token: Token {
                position: usize::MAX,
                ..Token::default()
            },
        }
    }
}

impl TokenStream for PairStream<'_> {
    fn advance(&mut self) -> bool {
        while self.words.advance() {
            let word = self.words.token();
            let Some((previous, from)) = self.previous.as_mut() else {
                self.previous = Some((word.text.clone(), word.offset_from));
                continue;
            };
            if is_number(previous) || is_number(&word.text) {
                previous.clone_from(&word.text);
                *from = word.offset_from;
                continue;
            }
            self.token.text.clear();
            self.token.text.push_str(previous);
            self.token.text.push(' ');
            self.token.text.push_str(&word.text);
            self.token.position = self.token.position.wrapping_add(1);
            self.token.offset_from = *from;
            self.token.offset_to = word.offset_to;
            previous.clone_from(&word.text);
            *from = word.offset_from;
            return true;
        }
        false
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

/// Numbers (addresses, ports, pids) are many and mostly unique: pairs with
/// them would cost more index than they save time.
fn is_number(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit())
}

/// The pair term of two words in `field`.
fn pair(field: Field, first: &str, second: &str) -> Term {
    let mut text = String::with_capacity(first.len() + 1 + second.len());
    text.push_str(first);
    text.push(' ');
    text.push_str(second);
    Term::from_field_text(field, &text)
}

/// `query` with every exact phrase over a field that has pairs (`pairs_of`)
/// answered from them: two words by their pair's term, more by all their
/// pairs and the phrase itself. Other queries are left as they are.
pub fn with_pairs(
    query: Box<dyn Query>,
    pairs_of: &dyn Fn(Field) -> Option<Field>,
) -> Box<dyn Query> {
    if let Some(boolean) = query.downcast_ref::<BooleanQuery>() {
        let clauses = boolean
            .clauses()
            .iter()
            .map(|(occur, q)| (*occur, with_pairs(q.box_clone(), pairs_of)))
            .collect();
        return Box::new(BooleanQuery::new(clauses));
    }
    let Some(phrase) = query.downcast_ref::<PhraseQuery>() else {
        return query;
    };
    let Some(field) = pairs_of(phrase.field()) else {
        return query;
    };
    let terms = phrase.phrase_terms();
    let words: Option<Vec<String>> = terms
        .iter()
        .map(|t| t.value().as_str().map(str::to_owned))
        .collect();
    let Some(words) = words else {
        return query;
    };
    let mut pairs: Vec<(Occur, Box<dyn Query>)> = words
        .windows(2)
        .filter(|w| !is_number(&w[0]) && !is_number(&w[1]))
        .map(|w| {
            let term = TermQuery::new(pair(field, &w[0], &w[1]), IndexRecordOption::Basic);
            (Occur::Must, Box::new(term) as Box<dyn Query>)
        })
        .collect();
    match pairs.len() {
        0 => query,
        // Two words, both paired: the pair is the phrase.
        1 if words.len() == 2 => pairs.remove(0).1,
        _ => {
            pairs.push((Occur::Must, query));
            Box::new(BooleanQuery::new(pairs))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, usize, usize, usize)> {
        let mut tokenizer = WordPairs::default();
        let mut stream = tokenizer.token_stream(text);
        let mut out = Vec::new();
        while let Some(t) = stream.next() {
            out.push((t.text.clone(), t.position, t.offset_from, t.offset_to));
        }
        out
    }

    #[test]
    fn pairs_are_consecutive_kept_words() {
        assert_eq!(
            pairs("Failed password for root"),
            [
                ("failed password".to_owned(), 0, 0, 15),
                ("password for".to_owned(), 1, 7, 19),
                ("for root".to_owned(), 2, 16, 24),
            ]
        );
        assert!(pairs("").is_empty());
        assert!(pairs("alone").is_empty());
        assert!(pairs("  ..  ").is_empty());
        let long = "x".repeat(41);
        assert_eq!(
            pairs(&format!("Accepted {long} key from 10.0.0.1 port 22 ssh2")),
            [
                ("accepted key".to_owned(), 0, 0, 54),
                ("key from".to_owned(), 1, 51, 59),
            ]
        );
        assert_eq!(
            pairs("port 22 ssh2 x1 2b"),
            [
                ("ssh2 x1".to_owned(), 0, 8, 15),
                ("x1 2b".to_owned(), 1, 13, 18)
            ]
        );
    }
}
