//! An event's labels: a few names and their values, sorted by name.

use std::borrow::Cow;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

type Text = Cow<'static, str>;

/// Names and values, sorted by name, each name once. Names and values a
/// parser sets (`input`, `truncated`) are static strings; submitted and
/// stored ones are owned. Kept in a vector: most events carry one label,
/// for which a `BTreeMap` allocated a node of eleven entries (about 540
/// bytes, an eighth of an sshd event in memory).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Labels(Vec<(Text, Text)>);

impl Labels {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        // Names come in order (parsers, JSON objects, the store): the last
        // is the first place to look.
        match self.0.last() {
            Some((last, _)) if last.as_ref() < name => Err(self.0.len()),
            _ => self.0.binary_search_by(|(n, _)| n.as_ref().cmp(name)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Text> {
        self.position(name).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Sets `name` to `value`; the value it had.
    pub fn insert(&mut self, name: Text, value: Text) -> Option<Text> {
        match self.position(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (name, value));
                None
            }
        }
    }

    /// Sets `name` to `value` unless it has a value.
    pub fn insert_missing(&mut self, name: &Text, value: &Text) {
        if let Err(i) = self.position(name) {
            self.0.insert(i, (name.clone(), value.clone()));
        }
    }

    /// In name order.
    pub fn iter(&self) -> impl Iterator<Item = (&Text, &Text)> {
        self.into_iter()
    }

    pub fn values(&self) -> impl Iterator<Item = &Text> {
        self.0.iter().map(|(_, v)| v)
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a Text, &'a Text);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Text, Text)>,
        fn(&'a (Text, Text)) -> (&'a Text, &'a Text),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(n, v)| (n, v))
    }
}

impl IntoIterator for Labels {
    type Item = (Text, Text);
    type IntoIter = std::vec::IntoIter<(Text, Text)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<const N: usize> From<[(Text, Text); N]> for Labels {
    fn from(pairs: [(Text, Text); N]) -> Labels {
        pairs.into_iter().collect()
    }
}

impl FromIterator<(Text, Text)> for Labels {
    fn from_iter<I: IntoIterator<Item = (Text, Text)>>(pairs: I) -> Labels {
        let mut labels = Labels::default();
        labels.extend(pairs);
        labels
    }
}

/// Adds many at once: appended, then sorted once when they did not come in
/// order (an [`insert`](Labels::insert) each would move the entries after
/// it every time: quadratic for a line of labels in reverse order). A name
/// given twice keeps its last value.
impl Extend<(Text, Text)> for Labels {
    fn extend<I: IntoIterator<Item = (Text, Text)>>(&mut self, pairs: I) {
        let from = self.0.len().saturating_sub(1);
        self.0.extend(pairs);
        if self.0[from..].windows(2).all(|w| w[0].0 < w[1].0) {
            return;
        }
        // Stable: of equal names, the last added stays last.
        self.0.sort_by(|a, b| a.0.cmp(&b.0));
        let mut kept: Vec<(Text, Text)> = Vec::with_capacity(self.0.len());
        for pair in self.0.drain(..) {
            match kept.last_mut() {
                Some(last) if last.0 == pair.0 => *last = pair,
                _ => kept.push(pair),
            }
        }
        self.0 = kept;
    }
}

impl std::ops::Index<&str> for Labels {
    type Output = Text;

    /// The value of `name`; panics when it has none (as a map does).
    fn index(&self, name: &str) -> &Text {
        match self.get(name) {
            Some(value) => value,
            None => panic!("no label {name:?}"),
        }
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Labels, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = Labels;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of strings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut pairs = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, String>()? {
                    pairs.push((name.into(), value.into()));
                }
                Ok(pairs.into_iter().collect())
            }
        }
        deserializer.deserialize_map(Pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kept_sorted_and_once_whatever_the_order_they_come_in() {
        let mut labels = Labels::default();
        for (name, value) in [("m", "1"), ("z", "2"), ("a", "3"), ("m", "4"), ("b", "5")] {
            labels.insert(name.into(), value.into());
        }
        let pairs: Vec<(&str, &str)> = labels.iter().map(|(n, v)| (&**n, &**v)).collect();
        assert_eq!(pairs, [("a", "3"), ("b", "5"), ("m", "4"), ("z", "2")]);
        assert_eq!(labels.get("m").map(|v| v.as_ref()), Some("4"));
        assert!(labels.get("c").is_none());
        labels.insert_missing(&"m".into(), &"5".into());
        labels.insert_missing(&"c".into(), &"6".into());
        assert_eq!((&*labels["m"], &*labels["c"], labels.len()), ("4", "6", 5));
    }

    #[test]
    fn read_and_written_as_a_json_object() {
        let labels: Labels = serde_json::from_str(r#"{"site":"a","env":"prod"}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&labels).unwrap(),
            r#"{"env":"prod","site":"a"}"#
        );
        assert!(serde_json::from_str::<Labels>(r#"{"n":1}"#).is_err());
    }

    /// Many at once, in any order: sorted once, a name given twice keeps
    /// its last value, whatever was there before.
    #[test]
    fn added_out_of_order_they_are_sorted_once() {
        let mut labels = Labels::from([("m".into(), "0".into())]);
        labels.extend(
            [("z", "1"), ("a", "2"), ("z", "3"), ("m", "4")]
                .map(|(n, v)| (Text::from(n), Text::from(v))),
        );
        let pairs: Vec<(&str, &str)> = labels.iter().map(|(n, v)| (&**n, &**v)).collect();
        assert_eq!(pairs, [("a", "2"), ("m", "4"), ("z", "3")]);
        let reversed: Labels = (0..1000)
            .rev()
            .map(|i| (Text::from(format!("{i:04}")), Text::from("v")))
            .collect();
        assert_eq!(reversed.len(), 1000);
        assert!(reversed.iter().map(|(n, _)| n).is_sorted());
    }
}
