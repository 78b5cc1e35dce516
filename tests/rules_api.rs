//! Rules over GraphQL, end to end: a rule created over the API raises
//! alerts from the next event on, stops when disabled, survives a restart
//! (next to a stored rule that no longer compiles), and invalid YAML comes
//! back with the line to fix.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Node, config, shared_data};
use serde_json::{Value, json};

/// SigmaHQ's "Shellshock Expression" (keywords, any Linux log).
const SHELLSHOCK: &str = "c67e0c98-4d39-46ee-8f6b-437ebf6b950e";

const ATTACK: &str = r#"{"message": "10.9.9.9 - - \"GET /cgi-bin/status HTTP/1.1\" 200 12 \"-\" \"() { :; }; /bin/bash -c 'cat /etc/passwd'\"", "host.name": "web1"}"#;

async fn alerts(node: &Node) -> Vec<Value> {
    let v = node
        .graphql(
            "query($r: String) { alerts(ruleId: $r) { edges { node { ruleTitle severity count events { message } } } } }",
            json!({ "r": SHELLSHOCK }),
        )
        .await;
    assert!(v["errors"].is_null(), "{v}");
    v["data"]["alerts"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

async fn set_enabled(node: &Node, enabled: bool) {
    let v = node
        .graphql(
            "mutation($id: ID!, $on: Boolean!) { setRuleEnabled(id: $id, enabled: $on) { enabled } }",
            json!({ "id": SHELLSHOCK, "on": enabled }),
        )
        .await;
    assert_eq!(v["data"]["setRuleEnabled"]["enabled"], enabled, "{v}");
}

async fn send_attack(node: &Node) {
    // Acknowledged means committed, with the alerts it raised.
    assert_eq!(node.ingest(ATTACK).await.0, 200);
}

#[tokio::test]
async fn a_rule_created_over_graphql_alerts_until_it_is_disabled_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path())).await;
    send_attack(&node).await;
    assert!(alerts(&node).await.is_empty(), "not a built-in rule");

    let yaml = std::fs::read_to_string(shared_data("sigma/rules/linux/builtin/lnx_shellshock.yml"))
        .unwrap();
    let created = node
        .graphql(
            "mutation($yaml: String!) { createRule(yaml: $yaml) { id source enabled createdBy } }",
            json!({ "yaml": yaml }),
        )
        .await;
    assert_eq!(created["data"]["createRule"]["id"], SHELLSHOCK, "{created}");
    assert_eq!(created["data"]["createRule"]["source"], "API");

    // createRule returns once the writer has the rule: the next event meets it.
    send_attack(&node).await;
    let raised = alerts(&node).await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0]["ruleTitle"], "Shellshock Expression");
    assert_eq!(raised[0]["severity"], "HIGH");
    assert_eq!(raised[0]["count"], 1);
    assert!(
        raised[0]["events"][0]["message"]
            .as_str()
            .unwrap()
            .contains("() { :; };")
    );

    set_enabled(&node, false).await;
    send_attack(&node).await;
    assert_eq!(
        alerts(&node).await[0]["count"],
        1,
        "a disabled rule is silent"
    );
    set_enabled(&node, true).await;
    send_attack(&node).await;
    assert_eq!(alerts(&node).await[0]["count"], 2);

    // Invalid YAML: RULE_INVALID, and the line and column to fix.
    let broken = yaml.replace("    condition: keywords", "    condition: keywords and (");
    let line = broken
        .lines()
        .position(|l| l.contains("condition:"))
        .unwrap()
        + 1;
    let refused = node
        .graphql(
            "mutation($yaml: String!) { createRule(yaml: $yaml) { id } }",
            json!({ "yaml": broken.replace(SHELLSHOCK, "d5b0e6a4-2f5c-4d8e-9b61-7c3a9e0f1b22") }),
        )
        .await;
    let error = &refused["errors"][0];
    assert_eq!(error["extensions"]["code"], "RULE_INVALID", "{refused}");
    assert_eq!(
        error["extensions"]["problems"][0]["line"], line,
        "{refused}"
    );
    assert!(
        error["extensions"]["problems"][0]["column"].is_u64(),
        "{refused}"
    );

    // The rule is in the store: after a restart it still runs, and a
    // stored rule that no longer compiles is left out, not fatal.
    node.app.stop().await;
    {
        let store = secmon::store::Store::open(dir.path()).unwrap();
        let local = secmon::auth::Principal::local().grant(None).unwrap();
        store
            .create_rule(
                &local,
                "broken",
                "title: Broken\nid: broken\nlogsource:\n    product: linux\ndetection:\n    sel:\n        message|re: '(unclosed'\n    condition: sel\n",
            )
            .unwrap();
    }
    let node = Node::start(config(dir.path())).await;
    send_attack(&node).await;
    assert_eq!(alerts(&node).await[0]["count"], 3);
    let listed = node
        .graphql(
            "{ rules(source: API) { totalCount edges { node { id enabled } } } }",
            json!({}),
        )
        .await;
    assert_eq!(listed["data"]["rules"]["totalCount"], 2, "{listed}");
    node.app.stop().await;
}
