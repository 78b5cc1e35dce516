//! Engine conformance against SigmaHQ's regression data: real Windows
//! events (Sysmon, Security, Defender, ...) with the number of matches each
//! rule must produce. The rules go through secmon's loader with a Windows
//! field mapping (tests/fixtures/windows-sysmon-pipeline.yml), the events
//! through secmon's event model and its engine adapter, as ingest would
//! hand them over.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::shared_data;
use secmon::detect::adapter::SigmaEvent;
use secmon::detect::prefilter;
use secmon::detect::rules::{self, FieldMapping, Source};
use secmon::model::Event;
use serde::Deserialize;

#[derive(Deserialize)]
struct Info {
    rule_metadata: Vec<RuleMeta>,
    #[serde(default)]
    regression_tests_info: Vec<TestInfo>,
}

#[derive(Deserialize)]
struct RuleMeta {
    id: String,
}

#[derive(Deserialize)]
struct TestInfo {
    /// Absent: at least one match.
    match_count: Option<usize>,
}

fn files(dir: &Path, name: &dyn Fn(&str) -> bool, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, name, out);
        } else if path.file_name().and_then(|n| n.to_str()).is_some_and(name) {
            out.push(path);
        }
    }
}

/// Rule id -> rule file, over the SigmaHQ rule folders.
fn rules_by_id() -> HashMap<String, PathBuf> {
    let mut paths = Vec::new();
    for folder in ["rules", "rules-emerging-threats", "rules-threat-hunting"] {
        files(
            &shared_data(&format!("sigma/{folder}")),
            &|n| n.ends_with(".yml"),
            &mut paths,
        );
    }
    let mut by_id = HashMap::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        if let Some(id) = text.lines().find_map(|l| l.strip_prefix("id: ")) {
            by_id.insert(id.trim().to_owned(), path);
        }
    }
    by_id
}

/// The Windows field mapping, as a processing pipeline.
fn windows_pipeline() -> rsigma_eval::Pipeline {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/windows-sysmon-pipeline.yml");
    rsigma_eval::parse_pipeline(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Cases whose shipped events hold more records that satisfy the rule
/// than their `match_count` says (each checked by hand against the rule):
/// the count the Sigma specification gives, and why.
const SPEC_COUNTS: &[(&str, usize, &str)] = &[
    (
        "file_event_win_anydesk_artefact",
        3,
        "records 3-5 each write a path containing \\AnyDesk\\user.conf",
    ),
    (
        "file_event_win_cred_dump_tools_dropped_files",
        3,
        "procdump.exe, procdump64.exe and procdump64a.exe each end a TargetFilename",
    ),
    (
        "registry_set_change_security_zones",
        3,
        "three ZoneMap\\Domains values set to DWORD 2, none filtered",
    ),
    (
        "registry_set_disable_administrative_share",
        2,
        "AutoShareServer and AutoShareWks both set to DWORD 0",
    ),
];

#[test]
fn sigmahq_regression_data_matches_as_many_events_as_expected() {
    let pipeline = windows_pipeline();
    let by_id = rules_by_id();
    let mut infos = Vec::new();
    files(
        &shared_data("sigma/regression_data"),
        &|n| n == "info.yml",
        &mut infos,
    );
    infos.sort();

    let (mut cases, mut events_seen, mut negatives) = (0, 0, 0);
    let mut failures = Vec::new();
    for info_path in &infos {
        let info: Info =
            serde_saphyr::from_str(&std::fs::read_to_string(info_path).unwrap()).unwrap();
        let Some(test) = info.regression_tests_info.first() else {
            continue; // a commented-out test (a raw Cisco log, not shipped)
        };
        let id = &info.rule_metadata[0].id;
        let rule_path = &by_id[id];
        let source = Source {
            name: rule_path.display().to_string(),
            text: std::fs::read_to_string(rule_path).unwrap(),
        };
        let set = rules::load(&[source], &FieldMapping::default(), &pipeline);
        let case = info_path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy();
        if let Some(p) = set.rejected.first() {
            failures.push(format!("{case}: rejected: {p}"));
            continue;
        }
        let mut engine = rsigma_eval::Engine::new();
        assert!(
            engine
                .add_rules(set.rules.iter().map(|l| &l.rule))
                .is_empty()
        );

        let mut json = Vec::new();
        files(
            info_path.parent().unwrap(),
            &|n| n.ends_with(".json"),
            &mut json,
        );
        let mut matched = 0;
        let mut total = 0;
        for file in json {
            let text = std::fs::read_to_string(&file).unwrap();
            // evtx_dump writes one JSON document per record, back to back.
            for value in serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>()
            {
                let event = Event::from_json(value.unwrap(), chrono::Utc::now()).unwrap();
                total += 1;
                let hits = engine.evaluate(&SigmaEvent(&event));
                if hits.iter().any(|h| h.header.rule_id.as_ref() == Some(id)) {
                    matched += 1;
                }
            }
        }
        cases += 1;
        events_seen += total;
        negatives += total - matched.min(total);
        let spec = SPEC_COUNTS.iter().find(|(c, _, _)| *c == case);
        let ok = match spec.map(|s| s.1).or(test.match_count) {
            Some(n) => matched == n,
            None => matched >= 1,
        };
        if !ok {
            failures.push(format!(
                "{case}: {matched} of {total} events match, expected {}",
                spec.map(|s| s.1)
                    .or(test.match_count)
                    .map_or_else(|| "at least 1".to_owned(), |n| n.to_string())
            ));
        }
    }
    println!(
        "{cases} regression cases, {events_seen} events ({negatives} not matching their rule), {} failures",
        failures.len()
    );
    assert!(cases >= 200, "only {cases} regression cases found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The literal prefilter is sound: over the SigmaHQ Windows and
/// emerging-threat rules and the regression events, the rules it lets
/// through find exactly what evaluating every rule finds.
#[test]
fn the_literal_prefilter_finds_what_evaluating_every_rule_finds() {
    let pipeline = windows_pipeline();
    let mut paths = Vec::new();
    for folder in [
        "rules/windows",
        "rules-threat-hunting/windows",
        "rules-emerging-threats",
    ] {
        files(
            &shared_data(&format!("sigma/{folder}")),
            &|n| n.ends_with(".yml"),
            &mut paths,
        );
    }
    let sources: Vec<Source> = paths
        .iter()
        .map(|p| Source {
            name: p.display().to_string(),
            text: std::fs::read_to_string(p).unwrap(),
        })
        .collect();
    let set = rules::load(&sources, &FieldMapping::default(), &pipeline);
    assert!(set.rules.len() > 200, "{} rules", set.rules.len());

    let mut every = rsigma_eval::Engine::new();
    assert!(
        every
            .add_rules(set.rules.iter().map(|l| &l.rule))
            .is_empty()
    );
    let mut always = rsigma_eval::Engine::new();
    let mut with_literals = Vec::new();
    for loaded in &set.rules {
        match prefilter::needles(&loaded.rule) {
            Some(literals) => {
                with_literals.push((rsigma_eval::compile_rule(&loaded.rule).unwrap(), literals))
            }
            None => always.add_rule(&loaded.rule).unwrap(),
        }
    }
    let prunable = with_literals.len();
    let prefiltered = prefilter::Prefiltered::new(with_literals).unwrap();

    let mut events = Vec::new();
    files(
        &shared_data("sigma/regression_data"),
        &|n| n.ends_with(".json"),
        &mut events,
    );
    let (mut checked, mut hits) = (0, 0);
    let mut scratch = prefilter::Scratch::default();
    for file in events {
        let text = std::fs::read_to_string(&file).unwrap();
        for value in serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>() {
            let event = Event::from_json(value.unwrap(), chrono::Utc::now()).unwrap();
            let ids = |results: Vec<rsigma_eval::EvaluationResult>| {
                let mut ids: Vec<String> = results
                    .into_iter()
                    .map(|r| r.header.rule_id.unwrap_or(r.header.rule_title))
                    .collect();
                ids.sort();
                ids
            };
            let expected = ids(every.evaluate(&SigmaEvent(&event)));
            let mut results = always.evaluate(&SigmaEvent(&event));
            prefiltered.evaluate(&event, &mut scratch, &mut results);
            assert_eq!(ids(results), expected, "{}", file.display());
            checked += 1;
            hits += expected.len();
        }
    }
    println!(
        "{} rules ({prunable} behind the prefilter), {checked} events, {hits} matches, all found",
        set.rules.len()
    );
    assert!(hits > checked);
}
