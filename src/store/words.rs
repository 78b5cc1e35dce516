//! The words of the text fields: tantivy's default tokenizer (split on
//! anything but letters and digits, words of 40 bytes or more dropped,
//! lowercased), with a fast path for ASCII text, which nearly every log
//! line is. The tokens are the same, positions and offsets included (a
//! dropped word still takes its position): text that is not ASCII goes
//! through tantivy's own, and the index and its queries do not change.
//!
//! Registered as tantivy's `default`, so the query parser splits a query's
//! words the same way. In the node, tantivy's pipeline (a `char` at a time,
//! three streams deep) took about 240 instructions a word, this one 165.

use tantivy::tokenizer::{
    BoxTokenStream, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer, Token,
    TokenStream, Tokenizer,
};

/// The name tantivy gives its default tokenizer, which this one replaces.
pub const TOKENIZER: &str = "default";

/// Words this long or longer are dropped (tantivy's default).
const MAX_WORD_BYTES: usize = 40;

/// The bytes of words: ASCII letters and digits (one load a byte where
/// the test is five comparisons).
const WORD_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < table.len() {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    table
};

/// The tokenizer: tantivy's default tokens, ASCII text split here.
#[derive(Clone)]
pub struct Words {
    token: Token,
    /// tantivy's default, for text that is not ASCII.
    other: TextAnalyzer,
}

impl Default for Words {
    fn default() -> Words {
        Words {
            token: Token::default(),
            other: TextAnalyzer::builder(SimpleTokenizer::default())
                .filter(RemoveLongFilter::limit(MAX_WORD_BYTES))
                .filter(LowerCaser)
                .build(),
        }
    }
}

/// The words of one text.
pub enum WordStream<'a> {
    /// ASCII text, split here.
    Ascii {
        text: &'a str,
        /// Where the next word is looked for.
        at: usize,
        token: &'a mut Token,
    },
    /// Any other text, split by tantivy's default.
    Other(BoxTokenStream<'a>),
}

impl Tokenizer for Words {
    type TokenStream<'a> = WordStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordStream<'a> {
        if text.is_ascii() {
            self.token.reset();
            WordStream::Ascii {
                text,
                at: 0,
                token: &mut self.token,
            }
        } else {
            WordStream::Other(self.other.token_stream(text))
        }
    }
}

impl TokenStream for WordStream<'_> {
    fn advance(&mut self) -> bool {
        let (text, at, token) = match self {
            WordStream::Ascii { text, at, token } => (text, at, token),
            WordStream::Other(words) => return words.advance(),
        };
        let bytes = text.as_bytes();
        token.text.clear();
        loop {
            token.position = token.position.wrapping_add(1);
            let Some(start) = bytes[*at..]
                .iter()
                .position(|&b| WORD_BYTE[usize::from(b)])
                .map(|i| *at + i)
            else {
                *at = bytes.len();
                return false;
            };
            let end = bytes[start..]
                .iter()
                .position(|&b| !WORD_BYTE[usize::from(b)])
                .map_or(bytes.len(), |i| start + i);
            *at = end;
            if end - start < MAX_WORD_BYTES {
                token.offset_from = start;
                token.offset_to = end;
                token.text.push_str(&text[start..end]);
                token.text.make_ascii_lowercase();
                return true;
            }
        }
    }

    fn token(&self) -> &Token {
        match self {
            WordStream::Ascii { token, .. } => token,
            WordStream::Other(words) => words.token(),
        }
    }

    fn token_mut(&mut self) -> &mut Token {
        match self {
            WordStream::Ascii { token, .. } => token,
            WordStream::Other(words) => words.token_mut(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Tokens = Vec<(String, usize, usize, usize, usize)>;

    fn tokens(tokenizer: &mut TextAnalyzer, text: &str) -> Tokens {
        let mut stream = tokenizer.token_stream(text);
        let mut out = Vec::new();
        while let Some(t) = stream.next() {
            out.push((
                t.text.clone(),
                t.position,
                t.offset_from,
                t.offset_to,
                t.position_length,
            ));
        }
        out
    }

    /// Every token, position and offset is tantivy's default's.
    fn same_as_tantivy(ours: &mut TextAnalyzer, text: &str) {
        let mut theirs = tantivy::tokenizer::TokenizerManager::default()
            .get(TOKENIZER)
            .unwrap();
        assert_eq!(tokens(ours, text), tokens(&mut theirs, text), "{text:?}");
    }

    #[test]
    fn words_are_tantivys() {
        let mut ours = TextAnalyzer::from(Words::default());
        let long = "Ab".repeat(20);
        for text in [
            "",
            " ",
            "..,;",
            "Failed password for invalid user ADMIN from 10.0.0.1 port 22 ssh2",
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0",
            "x",
            "trailing word ",
            "\0\t\r\nA\u{7f}b_c-d",
            &format!("{} {long} {}", "x".repeat(39), "y".repeat(40)),
            &format!("{long}{long} after a dropped word"),
            "Ünïcödé Straße İstanbul ΣΊΣΥΦΟΣ 東京 ok",
            "mixed ascii then é",
        ] {
            same_as_tantivy(&mut ours, text);
        }
        // The same tokenizer again: nothing carried over from the text before.
        same_as_tantivy(&mut ours, "again");
    }

    /// Random ASCII texts (words, separators, control bytes, runs around
    /// the 40-byte limit), a few with a letter that is not ASCII.
    #[test]
    fn random_texts_split_as_tantivy_splits_them() {
        const PIECES: [&str; 14] = [
            "a", "Z", "0", "9", " ", ".", "-", "_", "\t", "\0", "\u{7f}", "=", "é", "Σ",
        ];
        let mut ours = TextAnalyzer::from(Words::default());
        // The same texts every run.
        let mut random = crate::store::xorshift(0x9e37_79b9_7f4a_7c15);
        let mut next = move |n: usize| (random() % n as u64) as usize;
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..next(60) {
                // Mostly ASCII: the last two pieces one time in ten.
                let pieces = if next(10) == 0 { 14 } else { 12 };
                let piece = PIECES[next(pieces)];
                // Long runs of one byte reach the dropped-word limit.
                text.push_str(&piece.repeat(if next(8) == 0 { 35 + next(10) } else { 1 }));
            }
            same_as_tantivy(&mut ours, &text);
        }
    }

    #[test]
    fn real_lines_split_as_tantivy_splits_them() {
        let mut ours = TextAnalyzer::from(Words::default());
        let mut files: Vec<_> = [
            "OpenSSH/OpenSSH_2k.log",
            "Linux/Linux_2k.log",
            "Apache/Apache_2k.log",
        ]
        .map(|f| std::path::PathBuf::from("../shared/data/loghub").join(f))
        .into();
        // fail2ban's test logs: every kind of service, some not ASCII.
        for entry in std::fs::read_dir("../shared/data/fail2ban-logs").unwrap() {
            files.push(entry.unwrap().path());
        }
        let (mut lines, mut other) = (0, 0);
        for path in files.iter().filter(|p| p.is_file()) {
            let bytes = std::fs::read(path).unwrap();
            for line in String::from_utf8_lossy(&bytes).lines() {
                same_as_tantivy(&mut ours, line);
                lines += 1;
                other += usize::from(!line.is_ascii());
            }
        }
        assert!(
            lines >= 9_000 && other >= 2,
            "{lines} lines, {other} not ASCII"
        );
    }
}
