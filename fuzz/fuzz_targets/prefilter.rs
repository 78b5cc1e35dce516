//! Differential: the literal prefilter (plus the always-evaluated rules)
//! finds exactly what evaluating every rule finds, on arbitrary text.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use rsigma_eval::{Engine, EvaluationResult};
use secmon::detect::adapter::SigmaEvent;
use secmon::detect::prefilter::{self, Prefiltered};
use secmon::detect::rules::{self, FieldMapping, Source};
use secmon::model::Event;

/// Keyword and field rules with wildcards, mixed case and non-ASCII
/// literals, next to the built-in pack.
const RULES: &str = r#"
title: k1
id: 00000000-0000-4000-8000-000000000001
logsource: {product: linux}
detection:
    keywords: ['ab*CD', 'straße', 'K?lvin', 'İx']
    condition: keywords
---
title: k2
id: 00000000-0000-4000-8000-000000000002
logsource: {product: linux}
detection:
    sel:
        process.command_line|contains|all: ['-e', 'Sh']
    filter:
        user.name: 'root'
    condition: sel and not filter
---
title: k3
id: 00000000-0000-4000-8000-000000000003
logsource: {product: linux}
detection:
    a:
        message|startswith: 'ÄÖ'
    b:
        user.name|endswith: 'min'
    condition: 1 of them
---
title: k4
id: 00000000-0000-4000-8000-000000000004
logsource: {product: linux}
detection:
    sel:
        message|contains|cased: 'CaSe'
        user.name: '*x*'
    condition: sel
"#;

struct Rules {
    every: Engine,
    always: Engine,
    prefiltered: Prefiltered,
}

static ENGINES: LazyLock<Rules> = LazyLock::new(|| {
    let mut sources = rules::builtin();
    sources.push(Source {
        name: "fuzz.yml".into(),
        text: RULES.into(),
    });
    let mapping = FieldMapping::shipped(&Default::default()).unwrap();
    let pipeline = mapping.pipeline(&Default::default()).unwrap();
    let set = rules::load(&sources, &mapping, &pipeline);
    assert!(set.rejected.is_empty(), "{:?}", set.rejected);
    let mut every = Engine::new();
    assert!(every.add_rules(set.rules.iter().map(|l| &l.rule)).is_empty());
    let mut always = Engine::new();
    let mut with = Vec::new();
    for l in &set.rules {
        match prefilter::needles(&l.rule) {
            Some(n) => with.push((rsigma_eval::compile_rule(&l.rule).unwrap(), n)),
            None => always.add_rule(&l.rule).unwrap(),
        }
    }
    Rules {
        every,
        always,
        prefiltered: Prefiltered::new(with).unwrap(),
    }
});

fn ids(results: Vec<EvaluationResult>) -> Vec<String> {
    let mut ids: Vec<String> = results
        .into_iter()
        .map(|r| r.header.rule_title)
        .collect();
    ids.sort();
    ids
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0xff);
    let mut next = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let event = Event {
        message: next(),
        process_command_line: Some(next()),
        user_name: Some(next()),
        dataset: Some("sshd".into()),
        ..Event::default()
    };
    let r = &*ENGINES;
    let expected = ids(r.every.evaluate(&SigmaEvent(&event)));
    let mut results = r.always.evaluate(&SigmaEvent(&event));
    r.prefiltered
        .evaluate(&event, &mut String::new(), &mut results);
    assert_eq!(ids(results), expected, "{event:?}");
});
