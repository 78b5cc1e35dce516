//! The prefilter's automaton as a flat table: aho-corasick's DFA over the
//! rules' literals, its states renumbered so that the match states come
//! first, and what each match state meets (the rules and their clauses'
//! bits, merged over the literals ending there) stored with it.
//!
//! The crate's DFA is walked through a method call a byte that the
//! compiler cannot keep in registers (it reloads the table's address and
//! length and checks the bounds at every byte), and a match goes through
//! its patterns one by one. Here a byte is three loads, an add, a mask and
//! a comparison; a match state is its list.

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind, StartKind};

/// A rule (its index) and the bits of its clauses a literal meets.
pub type RuleBits = (usize, u32);

/// Most table entries (states times the byte classes' stride, four bytes
/// each): the SigmaHQ Windows rules' literals take 4M (31 146 states of 69
/// classes, as large as the crate's DFA of them).
const MAX_ENTRIES: usize = 1 << 26;

/// The automaton, flattened.
pub struct Scanner {
    /// A byte's class: one per byte of the literals (a letter's two cases
    /// share it), 0 for every other byte.
    classes: [u8; 256],
    /// A state's transitions start at its index times the stride (a power
    /// of two above the number of classes); entries are next states, as
    /// their index times the stride. Its length is a power of two, so an
    /// index masked with `mask` needs no bounds check.
    trans: Box<[u32]>,
    mask: usize,
    start: u32,
    /// States (times the stride) below this are match states.
    matching: u32,
    /// log2 of the stride.
    shift: u32,
    /// Per match state: the rules it meets and their clauses' bits (each
    /// rule once, in rule order).
    meets: Box<[Box<[RuleBits]>]>,
}

impl Scanner {
    /// The automaton of `literals` (ASCII case folded, each found wherever
    /// it ends, overlapping ones too); `owners[p]`: what literal `p` meets.
    pub fn new(literals: &[String], owners: &[Vec<RuleBits>]) -> Result<Scanner, String> {
        let error = |e: &dyn std::fmt::Display| format!("rule prefilter: {e}");
        let dfa = DFA::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .start_kind(StartKind::Unanchored)
            .prefilter(false)
            .build(literals)
            .map_err(|e| error(&e))?;
        // A class per byte of the literals (a letter's two cases one) and
        // one for every other byte: those fail back to the start state
        // from anywhere, so they move the automaton alike.
        let mut classes = [0u8; 256];
        let mut representatives = vec![0u8];
        for byte in literals.iter().flat_map(|l| l.bytes()) {
            let byte = byte.to_ascii_lowercase();
            if classes[usize::from(byte)] == 0 {
                let class = u8::try_from(representatives.len()).unwrap_or(u8::MAX);
                representatives.push(byte);
                classes[usize::from(byte)] = class;
                classes[usize::from(byte.to_ascii_uppercase())] = class;
            }
        }
        if let Some(other) = (0..=255u8).find(|&b| classes[usize::from(b)] == 0) {
            representatives[0] = other;
        }
        // Every state reachable from the start, in the order first met
        // (the crate's state ids are below its table's length: a vector,
        // not a hash map, says which were met).
        let start = dfa.start_state(Anchored::No).map_err(|e| error(&e))?;
        let mut seen: Vec<bool> = Vec::new();
        let mut states = Vec::new();
        let mut reach = |state: StateID, states: &mut Vec<StateID>| {
            let id = state.as_usize();
            if seen.len() <= id {
                seen.resize(id + 1, false);
            }
            if !seen[id] {
                seen[id] = true;
                states.push(state);
            }
        };
        reach(start, &mut states);
        let mut at = 0;
        while let Some(&state) = states.get(at) {
            for &byte in &representatives {
                reach(dfa.next_state(Anchored::No, state, byte), &mut states);
            }
            at += 1;
        }
        let stride = representatives.len().next_power_of_two();
        let shift = stride.trailing_zeros();
        // Match states first.
        let (matches, others): (Vec<StateID>, Vec<StateID>) =
            states.iter().partition(|&&s| dfa.is_match(s));
        let entries = (states.len() * stride).next_power_of_two();
        if entries > MAX_ENTRIES {
            return Err(error(&format!(
                "{} states of {} byte classes are too many; load fewer rules",
                states.len(),
                representatives.len()
            )));
        }
        let mut index = vec![0u32; seen.len()];
        for (i, s) in matches.iter().chain(&others).enumerate() {
            index[s.as_usize()] = (i * stride) as u32;
        }
        let id = |state: StateID| index[state.as_usize()];
        let mut trans = vec![0u32; entries].into_boxed_slice();
        for &state in matches.iter().chain(&others) {
            let from = id(state) as usize;
            for (class, &byte) in representatives.iter().enumerate() {
                trans[from + class] = id(dfa.next_state(Anchored::No, state, byte));
            }
        }
        let meets = matches
            .iter()
            .map(|&state| {
                let mut met: Vec<RuleBits> = Vec::new();
                for i in 0..dfa.match_len(state) {
                    for &(rule, bits) in &owners[dfa.match_pattern(state, i).as_usize()] {
                        merge(&mut met, rule, bits);
                    }
                }
                met.sort_unstable();
                met.into_boxed_slice()
            })
            .collect();
        Ok(Scanner {
            classes,
            mask: entries - 1,
            trans,
            start: id(start),
            matching: (matches.len() * stride) as u32,
            shift,
            meets,
        })
    }

    /// Tells `meet` the rule and clause bits of every literal ending at
    /// each byte of `text`. Each string starts from the start state: no
    /// literal spans two.
    #[inline]
    pub fn scan(&self, text: &[u8], meet: &mut impl FnMut(usize, u32)) {
        // As long as the mask: the compiler drops the bounds checks.
        let trans = &self.trans[..=self.mask];
        let mut state = self.start;
        let mut step = |byte: u8| {
            let class = u32::from(self.classes[usize::from(byte)]);
            state = trans[(state + class) as usize & self.mask];
            if state < self.matching {
                self.note(state, meet);
            }
        };
        // Four bytes a turn of the loop: its counting is a third of the
        // instructions a byte otherwise.
        let mut quads = text.chunks_exact(4);
        for quad in &mut quads {
            quad.iter().for_each(|&byte| step(byte));
        }
        quads.remainder().iter().for_each(|&byte| step(byte));
    }

    /// Tells `meet` what the match state `state` meets. Out of line: the
    /// scan loop stays small and keeps its state in registers.
    #[inline(never)]
    fn note(&self, state: u32, meet: &mut impl FnMut(usize, u32)) {
        if let Some(met) = self.meets.get((state >> self.shift) as usize) {
            met.iter().for_each(|&(rule, bits)| meet(rule, bits));
        }
    }
}

/// Adds `rule`'s `bits` to `met`, where each rule is once.
pub fn merge(met: &mut Vec<RuleBits>, rule: usize, bits: u32) {
    match met.iter_mut().find(|(r, _)| *r == rule) {
        Some((_, b)) => *b |= bits,
        None => met.push((rule, bits)),
    }
}

#[cfg(test)]
mod tests {
    use aho_corasick::AhoCorasick;

    use super::*;

    fn literals(patterns: &[&str]) -> Vec<String> {
        patterns.iter().map(|p| p.to_string()).collect()
    }

    /// What the crate's overlapping search finds, as the scanner reports
    /// it: per pattern one rule (its index) with bit 1.
    fn expected(patterns: &[&str], text: &str) -> Vec<RuleBits> {
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(patterns)
            .unwrap();
        let mut found: Vec<RuleBits> = ac
            .find_overlapping_iter(text)
            .map(|m| (m.pattern().as_usize(), 1))
            .collect();
        found.sort_unstable();
        found
    }

    fn scanned(scanner: &Scanner, text: &str) -> Vec<RuleBits> {
        let mut found = Vec::new();
        scanner.scan(text.as_bytes(), &mut |rule, bits| found.push((rule, bits)));
        found.sort_unstable();
        found
    }

    #[test]
    fn finds_what_the_crates_overlapping_search_finds() {
        let patterns = [
            "abcd", "bc", "cd", "d", "password", "Failed", "fail", "ssh", "sshd[", "über", "ΟΔΟΣ",
            "a", "aa", "aaa",
        ];
        let owners: Vec<Vec<RuleBits>> = (0..patterns.len()).map(|p| vec![(p, 1)]).collect();
        let scanner = Scanner::new(&literals(&patterns), &owners).unwrap();
        for text in [
            "",
            "x",
            "xABCDx",
            "Failed password for invalid user sshd[123]",
            "FAILED PASSWORD über ΟΔΟΣ",
            "aaaaaaa",
            "abcdabcdabc",
            "\u{0}\u{ff}ÿ",
        ] {
            assert_eq!(
                scanned(&scanner, text),
                expected(&patterns, text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_state_meets_each_rule_once_with_its_clauses_merged() {
        // Rule 0: clause bits 1 ("ab") and 2 ("b"); rule 1: bit 1 ("b").
        let owners = vec![vec![(0, 1)], vec![(0, 2), (1, 1)]];
        let scanner = Scanner::new(&literals(&["ab", "b"]), &owners).unwrap();
        assert_eq!(scanned(&scanner, "ab"), [(0, 3), (1, 1)]);
        assert_eq!(scanned(&scanner, "b"), [(0, 2), (1, 1)]);
    }
}
