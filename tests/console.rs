//! The analyst console over real HTTP: sign-in and its cookie, the
//! security headers, CSRF, the alert queue and bulk triage, the live feed,
//! and what each role is offered and allowed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{ADMIN_PASSWORD, Netns, Node, config_with_rule, eventually, keyword_rule};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

const RULE_ID: &str = "c0ffee00-0000-4000-8000-000000000018";
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn start(dir: &std::path::Path) -> Node {
    let rule = keyword_rule("Console test brute force", RULE_ID, "console-alert", "high");
    Node::start(config_with_rule(dir, &rule)).await
}

/// A client that follows no redirect (each is checked) and sends no cookie
/// by itself.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(headers: &HeaderMap) -> &str {
    headers.get(LOCATION).unwrap().to_str().unwrap()
}

/// `n` events from their own addresses, each raising an alert.
fn alerting_events(first: u32, n: u32) -> String {
    (first..first + n)
        .map(|i| {
            format!(
                "{}\n",
                json!({"message": format!("console-alert attempt {i}"), "source.ip": format!("10.18.0.{i}"),
                       "host.name": "web-1", "user.name": "root"})
            )
        })
        .collect()
}

struct Signed {
    cookie: String,
    csrf: String,
}

/// Signs in through the form; the session cookie and the CSRF token of the
/// queue page.
async fn sign_in(node: &Node, user: &str, password: &str) -> Signed {
    let http = browser();
    let resp = http
        .post(node.api("/ui/login"))
        .form(&[
            ("username", user),
            ("password", password),
            ("next", "/ui/alerts"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(resp.headers()), "/ui/alerts");
    let set = resp
        .headers()
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = get(node, &cookie, "/ui/alerts").await;
    Signed {
        csrf: csrf_of(&page),
        cookie,
    }
}

fn csrf_of(page: &str) -> String {
    let start = page
        .find("name=\"csrf-token\" content=\"")
        .expect("a CSRF token")
        + 27;
    page[start..start + 64].to_owned()
}

async fn get(node: &Node, cookie: &str, path: &str) -> String {
    let resp = browser()
        .get(node.api(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert_eq!(
        status,
        StatusCode::OK,
        "{path}: {}",
        resp.text().await.unwrap()
    );
    resp.text().await.unwrap()
}

async fn triage(
    node: &Node,
    signed: &Signed,
    form: &[(&str, &str)],
    origin: &str,
) -> reqwest::Response {
    browser()
        .post(node.api("/ui/alerts/triage"))
        .header("cookie", &signed.cookie)
        .header("origin", origin)
        .form(form)
        .send()
        .await
        .unwrap()
}

fn origin(node: &Node) -> String {
    format!("http://{}", node.app.addrs().graphql)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_lands_on_the_sign_in_page_and_elasticsearch_clients_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let http = browser();
    let resp = http
        .get(node.api("/"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(resp.headers()), "/ui/");
    let resp = http.get(node.api("/ui/")).send().await.unwrap();
    assert_eq!(location(resp.headers()), "/ui/alerts");
    let resp = http
        .get(node.api("/ui/alerts?status=resolved"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(resp.headers()),
        "/ui/login?next=%2Fui%2Falerts%3Fstatus%3Dresolved"
    );

    // An Elasticsearch client's GET / keeps the cluster answer.
    let es: Value = node
        .http
        .get(node.api("/"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(es["tagline"], "You Know, for Search");

    // The sign-in page: strict headers, no inline script or style.
    let resp = http.get(node.api("/ui/login")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers().clone();
    assert_eq!(h["content-security-policy"], CSP);
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["referrer-policy"], "same-origin");
    let page = resp.text().await.unwrap();
    assert!(!page.contains("<script>") && !page.contains("<style") && !page.contains(" style="));
    assert!(!page.contains(" onclick") && !page.contains(" onload"));
    // The assets it links answer with the digest it names.
    let js = page
        .split("src=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let resp = http.get(node.api(&js)).send().await.unwrap();
    assert_eq!(
        resp.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    node.app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_analyst_signs_in_triages_in_bulk_and_signs_out() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let http = browser();

    // A wrong password: the same answer as the API's, on the page.
    let resp = http
        .post(node.api("/ui/login"))
        .form(&[
            ("username", "admin"),
            ("password", "wrong"),
            ("next", "/ui/alerts"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("invalid username or password")
    );
    // A sign-in posted from another site is refused before the password is looked at.
    let resp = http
        .post(node.api("/ui/login"))
        .header("origin", "https://evil.example")
        .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // `next` never leaves the console.
    let resp = http
        .post(node.api("/ui/login"))
        .form(&[
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("next", "//evil.example/ui/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(location(resp.headers()), "/ui/alerts");
    let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set.starts_with("secmon_session=sms_"), "{set}");
    assert!(
        set.contains("; Path=/ui; HttpOnly; SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain HTTP in this test: {set}");

    let (status, body) = node.ingest(alerting_events(1, 12)).await;
    assert_eq!(status, 200, "{body}");
    let signed = sign_in(&node, "admin", ADMIN_PASSWORD).await;
    let page = eventually("twelve open alerts in the queue", || async {
        let page = get(&node, &signed.cookie, "/ui/alerts").await;
        (page.matches("data-id=").count() == 12, page)
    })
    .await;
    // Sorted another way: the same twelve, the order kept in the page's links.
    let sorted = get(&node, &signed.cookie, "/ui/alerts?sort=last_seen").await;
    assert_eq!(sorted.matches("data-id=").count(), 12);
    assert!(
        sorted.contains("<option value=\"last_seen\" selected>"),
        "{sorted}"
    );
    assert!(
        sorted.contains("name=\"back\" value=\"/ui/alerts?sort=last_seen\""),
        "{sorted}"
    );
    assert!(page.contains("Console test brute force"));
    assert!(page.contains("10.18.0.7"));
    assert!(
        page.contains(r#"data-status="open">Open <span class="count">12</span>"#),
        "{page}"
    );

    // The cookie is no credential for the API: GraphQL takes Authorization only.
    let v: Value = http
        .post(node.api("/graphql"))
        .header("cookie", &signed.cookie)
        .json(&json!({"query": "{ alerts { edges { node { id } } } }"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{v}"
    );

    let ids: Vec<String> = page
        .match_indices("name=\"id\" value=\"")
        .map(|(at, m)| page[at + m.len()..].split('"').next().unwrap().to_owned())
        .take(5)
        .collect();
    assert_eq!(ids.len(), 5);
    let mut form: Vec<(&str, &str)> = ids.iter().map(|id| ("id", id.as_str())).collect();
    form.extend([
        ("action", "resolve"),
        ("comment", "blocked at the edge"),
        ("back", "/ui/alerts"),
    ]);

    // Without the token, with another session's, from another origin: refused.
    let resp = triage(&node, &signed, &form, &origin(&node)).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let mut with_token = form.clone();
    with_token.push(("csrf", signed.csrf.as_str()));
    let resp = triage(&node, &signed, &with_token, "https://evil.example").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let other = sign_in(&node, "admin", ADMIN_PASSWORD).await;
    let mut foreign = form.clone();
    foreign.push(("csrf", other.csrf.as_str()));
    let resp = triage(&node, &signed, &foreign, &origin(&node)).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // With it: all five resolved in one change, and the page says so.
    let resp = triage(&node, &signed, &with_token, &origin(&node)).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(resp.headers()), "/ui/alerts?done=5-resolve");
    let page = get(&node, &signed.cookie, "/ui/alerts?done=5-resolve").await;
    assert!(page.contains("5 alerts resolved."));
    assert_eq!(page.matches("data-id=").count(), 7);
    let resolved = get(&node, &signed.cookie, "/ui/alerts?status=resolved").await;
    assert_eq!(resolved.matches("data-id=").count(), 5);
    let v = node
        .graphql(
            "query($id: ID!) { alert(id: $id) { status history { actor action comment } } }",
            json!({"id": ids[0]}),
        )
        .await;
    assert_eq!(v["data"]["alert"]["status"], "RESOLVED", "{v}");
    assert_eq!(v["data"]["alert"]["history"][0]["actor"], "admin");
    assert_eq!(
        v["data"]["alert"]["history"][0]["comment"],
        "blocked at the edge"
    );

    // One alert already resolved makes the whole change fail: nothing moves.
    let mut mixed: Vec<(&str, &str)> = vec![("id", ids[0].as_str()), ("id", ids[1].as_str())];
    mixed.extend([("action", "acknowledge"), ("csrf", signed.csrf.as_str())]);
    let resp = triage(&node, &signed, &mixed, &origin(&node)).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert!(resp.text().await.unwrap().contains("nothing was changed"));

    // Signing out ends the session on the server, not only in the browser.
    let resp = http
        .post(node.api("/ui/logout"))
        .header("cookie", &signed.cookie)
        .form(&[("csrf", signed.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(location(resp.headers()), "/ui/login");
    assert!(
        resp.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let resp = http
        .get(node.api("/ui/alerts"))
        .header("cookie", &signed.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let metrics = node.metrics().await;
    assert!(
        metrics.contains("secmon_console_refused_total{code=\"CSRF\"} 3"),
        "{metrics}"
    );
    node.app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_is_offered_no_triage_and_a_forged_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let v = node
        .graphql(
            "mutation { createUser(username: \"vic\", password: \"vic-password-1234\", role: VIEWER) { username } }",
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["createUser"]["username"], "vic", "{v}");
    let (status, _) = node.ingest(alerting_events(1, 2)).await;
    assert_eq!(status, 200);
    let signed = sign_in(&node, "vic", "vic-password-1234").await;
    let page = eventually("the viewer sees the alerts", || async {
        let page = get(&node, &signed.cookie, "/ui/alerts").await;
        (page.matches("data-id=").count() == 2, page)
    })
    .await;
    assert!(
        !page.contains("With the selected alerts"),
        "no triage controls"
    );
    assert!(!page.contains("name=\"id\""), "no selection");
    let id = page
        .split("data-id=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let form = [
        ("id", id),
        ("action", "resolve"),
        ("csrf", signed.csrf.as_str()),
    ];
    let resp = triage(&node, &signed, &form, &origin(&node)).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.text().await.unwrap().contains("viewer"));

    // A role change ends the session: the next page asks to sign in again.
    let v = node
        .graphql(
            "mutation { setUserRole(username: \"vic\", role: ANALYST) { role } }",
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["setUserRole"]["role"], "ANALYST", "{v}");
    let resp = browser()
        .get(node.api("/ui/alerts"))
        .header("cookie", &signed.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(location(resp.headers()).starts_with("/ui/login"));
    node.app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_queue_announces_new_alerts_and_changes() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let signed = sign_in(&node, "admin", ADMIN_PASSWORD).await;
    let mut live = browser()
        .get(node.api("/ui/alerts/live"))
        .header("cookie", &signed.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    let (status, _) = node.ingest(alerting_events(40, 1)).await;
    assert_eq!(status, 200);
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !seen.contains("event: alert") {
        let chunk = tokio::time::timeout_at(deadline, live.chunk())
            .await
            .expect("an alert event in time")
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = seen.split("data: ").nth(1).unwrap().lines().next().unwrap();
    let alert: Value = serde_json::from_str(data).unwrap();
    assert_eq!(alert["status"], "open");
    assert_eq!(alert["new"], true);
    node.app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_shows_its_story_and_its_source_is_blocked_and_lifted() {
    let dir = tempfile::tempdir().unwrap();
    let ns = Netns::create();
    let rule = "title: Console detail brute force\nid: c0ffee00-0000-4000-8000-000000000182\n\
                tags:\n    - attack.credential_access\n    - attack.t1110.001\n\
                logsource:\n    product: linux\n\
                detection:\n    keywords:\n        - console-alert\n    condition: keywords\n\
                level: high\n";
    let mut cfg = config_with_rule(dir.path(), rule);
    cfg.response = serde_saphyr::from_str(&format!(
        "enabled: true\nnft: [ip, netns, exec, {}, nft]\n",
        ns.0
    ))
    .unwrap();
    let node = Node::start(cfg).await;
    // Background around it: the same address before, another one.
    let around = "{\"message\": \"console-noise from the same place\", \"source.ip\": \"10.18.0.9\"}\n\
                  {\"message\": \"console-noise elsewhere\", \"source.ip\": \"10.99.0.1\"}\n";
    assert_eq!(node.ingest(around).await.0, 200);
    assert_eq!(node.ingest(alerting_events(9, 1)).await.0, 200);
    let signed = sign_in(&node, "admin", ADMIN_PASSWORD).await;
    let queue = eventually("the alert in the queue", || async {
        let page = get(&node, &signed.cookie, "/ui/alerts").await;
        (page.contains("data-id=\""), page)
    })
    .await;
    let id = queue
        .split("data-id=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        queue.contains(&format!("href=\"/ui/alerts/{id}\"")),
        "rows open the alert"
    );

    // Comment it from its page: the history says who and what.
    let form = [
        ("id", id.as_str()),
        ("action", "acknowledge"),
        ("comment", "looking <b>into</b> it"),
        ("back", &format!("/ui/alerts/{id}")),
        ("csrf", signed.csrf.as_str()),
    ];
    let resp = triage(&node, &signed, &form, &origin(&node)).await;
    assert_eq!(
        location(resp.headers()),
        format!("/ui/alerts/{id}?done=1-acknowledge")
    );
    node.wait_indexed().await;
    let page = get(&node, &signed.cookie, &format!("/ui/alerts/{id}")).await;
    assert!(page.contains("Console detail brute force"));
    assert!(page.contains("acknowledged"));
    assert!(
        page.contains("looking &#60;b&#62;into&#60;/b&#62; it")
            || page.contains("looking &lt;b&gt;into&lt;/b&gt; it"),
        "comments are escaped: {page}"
    );
    assert!(page.contains("href=\"https://attack.mitre.org/techniques/T1110/001/\""));
    assert!(
        page.contains("console-alert attempt 9"),
        "the event behind it"
    );
    assert!(
        page.contains("console-noise from the same place"),
        "an event around it"
    );
    assert!(
        !page.contains("console-noise elsewhere"),
        "not another address's"
    );
    assert!(page.contains("Block 10.18.0.9"));
    // "Open them in search": the same two events, in search.
    let in_search = links(&page, "/ui/search?").next().unwrap();
    assert!(
        in_search.contains("q=source.ip%3A%2210.18.0.9%22"),
        "{in_search}"
    );
    assert_eq!(total(&get(&node, &signed.cookie, &in_search).await), 2);

    // Block its source from there, see it in the decisions, lift it.
    let block = [
        ("ip", "10.18.0.9"),
        ("duration", "24h"),
        ("reason", "alert from the console test"),
        ("back", &format!("/ui/alerts/{id}")),
        ("csrf", signed.csrf.as_str()),
    ];
    let resp = browser()
        .post(node.api("/ui/decisions/block"))
        .header("cookie", &signed.cookie)
        .form(&block)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::SEE_OTHER,
        "{:?}",
        resp.text().await
    );
    let decisions = get(&node, &signed.cookie, "/ui/decisions").await;
    assert!(decisions.contains("10.18.0.9") && decisions.contains("alert from the console test"));
    assert!(
        decisions.contains("23h 59m") || decisions.contains("24h 0m"),
        "{decisions}"
    );
    let v = node.graphql("{ decisions { ip by } }", json!({})).await;
    assert_eq!(v["data"]["decisions"][0]["by"], "admin", "{v}");
    // A protected address is refused with the reason.
    let resp = browser()
        .post(node.api("/ui/decisions/block"))
        .header("cookie", &signed.cookie)
        .form(&[
            ("ip", "127.0.0.1"),
            ("duration", "1h"),
            ("reason", "x"),
            ("csrf", signed.csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = browser()
        .post(node.api("/ui/decisions/lift"))
        .header("cookie", &signed.cookie)
        .form(&[("ip", "10.18.0.9"), ("csrf", signed.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(location(resp.headers()), "/ui/decisions?done=lifted");
    let v = node.graphql("{ decisions { ip } }", json!({})).await;
    assert_eq!(v["data"]["decisions"], json!([]), "{v}");
    let all = get(&node, &signed.cookie, "/ui/decisions?all=1").await;
    assert!(all.contains("expired"));
    node.app.stop().await;
}

/// The `href`s of a page that start with `prefix`, unescaped.
fn links(page: &str, prefix: &str) -> std::vec::IntoIter<String> {
    page.match_indices(&format!("href=\"{prefix}"))
        .map(|(at, _)| {
            let start = at + 6;
            let end = start + page[start..].find('"').unwrap();
            page[start..end].replace("&amp;", "&").replace("&#38;", "&")
        })
        .collect::<Vec<_>>()
        .into_iter()
}

/// The seqs of the hit rows of a search page or a tail answer.
fn rows(page: &str) -> Vec<u64> {
    page.match_indices("<tr data-seq=\"")
        .map(|(at, m)| {
            let rest = &page[at + m.len()..];
            rest[..rest.find('"').unwrap()].parse().unwrap()
        })
        .collect()
}

fn total(page: &str) -> u64 {
    let at = page.find("<p class=\"summary\"><strong>").unwrap() + 27;
    page[at..at + page[at..].find('<').unwrap()]
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn search_zooms_filters_pages_exports_and_tails() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    // 60 events a minute apart, within the last day: every third from root.
    let now = chrono::Utc::now();
    let base = now - chrono::Duration::hours(3);
    // Half past an hour: the events fall in two hour-long bars, 30 each.
    let base = base - chrono::Duration::seconds(base.timestamp() % 3600 - 1800);
    let events: String = (0..60)
        .map(|i| {
            let user = if i % 3 == 0 { "root" } else { "alice" };
            let at = base + chrono::Duration::minutes(i);
            format!(
                "{}\n",
                json!({"message": format!("sshd login {i} =cmd|' /C calc'!A0"), "user.name": user,
                       "source.ip": format!("192.0.2.{}", i % 4), "host.name": "bastion",
                       "@timestamp": at.to_rfc3339()})
            )
        })
        .collect();
    let (status, body) = node.ingest(events).await;
    assert_eq!(status, 200, "{body}");
    node.wait_indexed().await;
    let signed = sign_in(&node, "admin", ADMIN_PASSWORD).await;

    // The last 24 hours: every event, a histogram, top values, a first page.
    let page = get(&node, &signed.cookie, "/ui/search").await;
    assert_eq!(total(&page), 60);
    assert!(page.contains("one bar per 1h"), "{page}");
    assert!(page.matches("<rect x=").count() >= 2, "{page}");
    let first = rows(&page);
    assert_eq!(first.len(), 50);

    // The next page by cursor: the other ten, none twice.
    let older: Vec<_> = links(&page, "/ui/search?")
        .filter(|l| l.contains("after="))
        .collect();
    assert_eq!(older.len(), 1, "{page}");
    let page2 = get(&node, &signed.cookie, &older[0]).await;
    let second = rows(&page2);
    assert_eq!(second.len(), 10);
    assert!(second.iter().all(|s| !first.contains(s)));
    assert!(!page2.contains("rel=\"next\""));

    // Top values: include and exclude root (the exclude alone is a
    // query of only `NOT …`, which must still match).
    let include = links(&page, "/ui/search?")
        .find(|l| l.contains("user.name%3A%22root%22") && !l.contains("NOT"))
        .unwrap();
    assert_eq!(total(&get(&node, &signed.cookie, &include).await), 20);
    let exclude = links(&page, "/ui/search?")
        .find(|l| l.contains("NOT+user.name%3A%22root%22"))
        .unwrap();
    assert_eq!(total(&get(&node, &signed.cookie, &exclude).await), 40);
    let both = get(
        &node,
        &signed.cookie,
        &format!("{}&q=sshd+AND+NOT+user.name%3Aroot", "/ui/search?range=24h"),
    )
    .await;
    assert_eq!(total(&both), 40);

    // Zoom: ten minutes, from inclusive, to exclusive.
    let from = (base + chrono::Duration::minutes(10)).format("%Y-%m-%dT%H:%M");
    let to = (base + chrono::Duration::minutes(20)).format("%Y-%m-%dT%H:%M");
    let zoomed = get(
        &node,
        &signed.cookie,
        &format!("/ui/search?range=custom&from={from}&to={to}"),
    )
    .await;
    assert_eq!(total(&zoomed), 10);
    assert!(zoomed.contains("one bar per 10s"), "{zoomed}");
    // A bar's link is a narrower search that finds that bar's events.
    let bar = links(&page, "/ui/search?")
        .find(|l| l.contains("range=custom") && !l.contains("q="))
        .unwrap();
    let in_bar = total(&get(&node, &signed.cookie, &bar).await);
    assert!((1..60).contains(&in_bar), "{bar}: {in_bar}");

    // Export: every hit, streamed; CSV cells never run as formulas.
    let export = |format: &'static str, q: &'static str| {
        let url = node.api(&format!(
            "/ui/search/export?format={format}&range=24h&q={q}"
        ));
        let cookie = signed.cookie.clone();
        async move {
            let resp = browser()
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let disposition = resp.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(disposition.starts_with("attachment"), "{disposition}");
            resp.text().await.unwrap()
        }
    };
    let csv = export("csv", "").await;
    let lines: Vec<_> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "timestamp,host.name,source.ip,user.name,event.dataset,message"
    );
    assert_eq!(lines.len(), 61);
    assert!(lines[1].ends_with("=cmd|' /C calc'!A0\""), "{}", lines[1]);
    let ndjson = export("ndjson", "user.name%3Aroot").await;
    let docs: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 20);
    assert!(
        docs.iter()
            .all(|d| d["user.name"] == "root" || d["user"]["name"] == "root"),
        "{}",
        docs[0]
    );

    // A query tantivy cannot read: the page says why, with 400.
    let resp = browser()
        .get(node.api("/ui/search?q=user.name%3A%28%28"))
        .header("cookie", &signed.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("the search did not run")
    );

    // Live tail: the page starts it at what the index holds; later
    // arrivals matching the query come newest first, others do not.
    let live = get(
        &node,
        &signed.cookie,
        "/ui/search?q=user.name%3Aroot&live=1",
    )
    .await;
    assert!(live.contains("id=\"tail\""), "{live}");
    let at = live.find("data-tail=\"").unwrap() + 11;
    let tail = live[at..at + live[at..].find('"').unwrap()].replace("&#38;", "&");
    let at = live.find("data-since=\"").unwrap() + 12;
    let since: u64 = live[at..at + live[at..].find('"').unwrap()]
        .parse()
        .unwrap();
    assert_eq!(since, 60);
    let more: String = ["root", "alice", "root", "root"]
        .iter()
        .map(|u| format!("{}\n", json!({"message": "tail", "user.name": u})))
        .collect();
    let (status, body) = node.ingest(more).await;
    assert_eq!(status, 200, "{body}");
    node.wait_indexed().await;
    let resp = browser()
        .get(node.api(&format!("{tail}&since={since}")))
        .header("cookie", &signed.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{tail}");
    let next: u64 = resp.headers()["x-tail-since"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(rows(&resp.text().await.unwrap()), vec![64, 63, 61]);
    assert_eq!(next, 64);
    let resp = browser()
        .get(node.api(&format!("{tail}&since={next}")))
        .header("cookie", &signed.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-tail-since"], "64");
    assert!(rows(&resp.text().await.unwrap()).is_empty());

    // Without a session: the sign-in page, not the events.
    let resp = browser()
        .get(node.api(&format!("{tail}&since=0")))
        .send()
        .await
        .unwrap();
    assert_ne!(resp.status(), StatusCode::OK);
}

/// Posts a console form as the signed-in user, from the console's origin.
async fn post(
    node: &Node,
    signed: &Signed,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut fields = form.to_vec();
    fields.push(("csrf", &signed.csrf));
    browser()
        .post(node.api(path))
        .header("cookie", &signed.cookie)
        .header("origin", origin(node))
        .form(&fields)
        .send()
        .await
        .unwrap()
}

const NEW_RULE: &str = "title: Console back-tested rule
id: 7e57ed00-0000-4000-8000-000000000018
logsource:
    product: linux
detection:
    keywords:
        - console-alert
    condition: keywords
level: medium
";

#[tokio::test(flavor = "multi_thread")]
async fn rules_are_listed_toggled_checked_back_tested_and_saved() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let (status, body) = node.ingest(alerting_events(1, 3)).await;
    assert_eq!(status, 200, "{body}");
    node.wait_indexed().await;
    let signed = sign_in(&node, "admin", ADMIN_PASSWORD).await;

    // The list: the rule with its hits (three alerts of one event each).
    let page = eventually("three hits", || async {
        let page = get(&node, &signed.cookie, "/ui/rules?q=console+test").await;
        (page.contains("<td class=\"num\">3</td>"), page)
    })
    .await;
    assert!(page.contains(&format!("data-rule=\"{RULE_ID}\"")), "{page}");
    assert!(page.contains("<strong>1</strong> rules"), "{page}");

    // Disabled, then enabled again.
    let resp = post(
        &node,
        &signed,
        "/ui/rules/enable",
        &[("id", RULE_ID), ("enabled", "false")],
    )
    .await;
    assert_eq!(location(resp.headers()), "/ui/rules?done=disabled");
    let page = get(&node, &signed.cookie, "/ui/rules?enabled=off").await;
    assert!(page.contains(&format!("data-rule=\"{RULE_ID}\"")), "{page}");
    let resp = post(
        &node,
        &signed,
        "/ui/rules/enable",
        &[("id", RULE_ID), ("enabled", "true")],
    )
    .await;
    assert_eq!(location(resp.headers()), "/ui/rules?done=enabled");

    // A broken condition: the problem at its line, nothing saved.
    let broken = NEW_RULE.replace("condition: keywords", "condition: keywords and");
    let line = broken
        .lines()
        .position(|l| l.contains("condition:"))
        .unwrap()
        + 1;
    let resp = post(
        &node,
        &signed,
        "/ui/rules/check",
        &[("yaml", &broken), ("hours", "1")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = resp.text().await.unwrap();
    assert!(page.contains(&format!("data-line=\"{line}\"")), "{page}");
    let resp = post(&node, &signed, "/ui/rules/save", &[("yaml", &broken)]).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Back-tested over the last hour: the three events, nothing raised.
    let resp = post(
        &node,
        &signed,
        "/ui/rules/check",
        &[("yaml", NEW_RULE), ("hours", "1")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("Back-test: 3 hits over the last hour"),
        "{page}"
    );
    assert_eq!(page.matches("data-id=\"hit\"").count(), 3);
    let alerts = node
        .graphql(
            "{ alerts(first: 100) { edges { node { ruleId } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        alerts["data"]["alerts"]["edges"].as_array().unwrap().len(),
        3,
        "nothing raised"
    );

    // Saved as a new rule, then changed in place.
    let resp = post(&node, &signed, "/ui/rules/save", &[("yaml", NEW_RULE)]).await;
    let at = location(resp.headers()).to_owned();
    assert_eq!(
        at,
        "/ui/rules/7e57ed00-0000-4000-8000-000000000018?done=saved"
    );
    let page = get(&node, &signed.cookie, &at).await;
    assert!(page.contains("Saved; the rule runs from now on."));
    assert!(page.contains("<dd>api</dd>"), "{page}");
    assert!(page.contains("name=\"updates\" value=\"1\""));
    let changed = NEW_RULE.replace("Console back-tested rule", "Console rule, renamed");
    let resp = post(
        &node,
        &signed,
        "/ui/rules/save",
        &[
            ("yaml", &changed),
            ("id", "7e57ed00-0000-4000-8000-000000000018"),
            ("updates", "1"),
        ],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let page = get(
        &node,
        &signed.cookie,
        "/ui/rules/7e57ed00-0000-4000-8000-000000000018",
    )
    .await;
    assert!(page.contains("<h1>Console rule, renamed</h1>"), "{page}");
    // Saving it again as new: its id is taken, and the editor says so.
    let resp = post(&node, &signed, "/ui/rules/save", &[("yaml", NEW_RULE)]).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("give the new rule another id")
    );

    // Without the CSRF token: refused.
    let resp = browser()
        .post(node.api("/ui/rules/enable"))
        .header("cookie", &signed.cookie)
        .form(&[("id", RULE_ID), ("enabled", "false")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // A viewer reads the rules, is offered no change, and a forged one is refused.
    let v = node
        .graphql(
            "mutation { createUser(username: \"vera\", password: \"vera-password-1234\", role: VIEWER) { username } }",
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["createUser"]["username"], "vera", "{v}");
    let viewer = sign_in(&node, "vera", "vera-password-1234").await;
    let page = get(&node, &viewer.cookie, "/ui/rules").await;
    assert!(
        !page.contains("/ui/rules/enable") && !page.contains("New rule"),
        "{page}"
    );
    assert!(
        !page.contains("href=\"/ui/admin\""),
        "no administration for a viewer"
    );
    let resp = post(
        &node,
        &viewer,
        "/ui/rules/enable",
        &[("id", RULE_ID), ("enabled", "false")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = post(
        &node,
        &viewer,
        "/ui/rules/check",
        &[("yaml", NEW_RULE), ("hours", "1")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = browser()
        .get(node.api("/ui/admin"))
        .header("cookie", &viewer.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_manage_users_keys_channels_and_read_the_verified_audit_log() {
    // A webhook receiver for the channel test.
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = {
        let hits = hits.clone();
        axum::Router::new().fallback(move || {
            hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { StatusCode::OK }
        })
    };
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let rule = keyword_rule("Console test brute force", RULE_ID, "console-alert", "high");
    let mut cfg = config_with_rule(dir.path(), &rule);
    cfg.notifications.channels = serde_saphyr::from_str(&format!(
        "- {{name: soc-hook, kind: webhook, url: '{hook}'}}\n"
    ))
    .unwrap();
    let node = Node::start(cfg).await;
    let admin = sign_in(&node, "admin", ADMIN_PASSWORD).await;
    let page = get(&node, &admin.cookie, "/ui/admin").await;
    assert!(page.contains("data-user=\"admin\""), "{page}");
    assert!(page.contains("soc-hook"), "{page}");

    // A user: created, role changed, disabled, enabled, password reset.
    let user = |op: &'static str, extra: &'static [(&'static str, &'static str)]| {
        let mut form = vec![("op", op), ("username", "ana")];
        form.extend_from_slice(extra);
        form
    };
    for (form, done) in [
        (
            user(
                "create",
                &[("password", "ana-password-1234"), ("role", "ANALYST")],
            ),
            "created",
        ),
        (user("role", &[("role", "VIEWER")]), "role"),
        (user("disable", &[]), "disabled"),
        (user("enable", &[]), "enabled"),
        (
            user("reset", &[("password", "ana-new-password-5678")]),
            "reset",
        ),
    ] {
        let resp = post(&node, &admin, "/ui/admin/users", &form).await;
        assert_eq!(
            location(resp.headers()),
            format!("/ui/admin?done={done}"),
            "{form:?}"
        );
    }
    // The API's rules hold: a short password is refused, with the reason.
    let resp = post(
        &node,
        &admin,
        "/ui/admin/users",
        &user("reset", &[("password", "short")]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let page = get(&node, &admin.cookie, "/ui/admin").await;
    assert!(page.contains("data-user=\"ana\""), "{page}");
    let ana = sign_in(&node, "ana", "ana-new-password-5678").await;
    let resp = browser()
        .get(node.api("/ui/admin"))
        .header("cookie", &ana.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // A key: shown once on the answer, works, revoked, works no more.
    let resp = post(
        &node,
        &admin,
        "/ui/admin/keys",
        &[("op", "create"), ("name", "shipper"), ("role", "INGEST")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = resp.text().await.unwrap();
    let at = page.find("<pre class=\"mono key\">").unwrap() + 22;
    let key = page[at..at + page[at..].find('<').unwrap()].to_owned();
    assert!(key.starts_with("smk_"), "{key}");
    let ingest = |key: String| {
        let url = node.api("/api/v1/ingest");
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(key)
                .body("{\"message\": \"from the shipper\"}\n")
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(ingest(key.clone()).await, StatusCode::OK);
    let listing = get(&node, &admin.cookie, "/ui/admin").await;
    assert!(!listing.contains(&key), "the key is never shown again");
    let id = key.strip_prefix("smk_").unwrap().split('_').next().unwrap();
    let resp = post(
        &node,
        &admin,
        "/ui/admin/keys",
        &[("op", "revoke"), ("id", id)],
    )
    .await;
    assert_eq!(location(resp.headers()), "/ui/admin?done=revoked");
    assert_eq!(ingest(key).await, StatusCode::UNAUTHORIZED);

    // A channel test reaches the receiver.
    let resp = post(&node, &admin, "/ui/admin/channels", &[("name", "soc-hook")]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("soc-hook: the test message went out")
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);

    // The node's status: every component of /ready, no fleet without Postgres.
    let page = get(&node, &admin.cookie, "/ui/system").await;
    assert!(page.contains("This node is ready."), "{page}");
    for component in ["store", "index", "notifications"] {
        assert!(
            page.contains(&format!("<h3 id=\"c-{component}\">")),
            "{component}: {page}"
        );
    }
    assert!(page.contains("id=\"autorefresh\""));
    assert!(page.contains("reports to no fleet"));
    assert!(!page.contains("cannot connect"), "no error text");

    // The audit log lists it all, and its chain verifies.
    let page = get(&node, &admin.cookie, "/ui/admin?verify=1").await;
    assert!(page.contains("Chain verified:"), "{page}");
    assert!(
        page.contains("<td>ana</td>") || page.matches("ana").count() > 3,
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_system_page_shows_the_fleet_from_postgres() {
    let db = common::TestDb::create();
    let dir = tempfile::tempdir().unwrap();
    let rule = keyword_rule("Console test brute force", RULE_ID, "console-alert", "high");
    let mut cfg = config_with_rule(dir.path(), &rule);
    cfg.services.database_url = Some(secmon::config::Secret::new(db.url()));
    cfg.replication.heartbeat_interval_seconds = 1;
    let node = Node::start(cfg).await;
    let (status, body) = node.ingest(alerting_events(1, 3)).await;
    assert_eq!(status, 200, "{body}");
    let signed = sign_in(&node, "admin", ADMIN_PASSWORD).await;
    let node_id = node.app.node_id().to_string();
    // This node and its three open alerts, as Postgres holds them.
    let page = eventually("the fleet on the system page", || async {
        let page = get(&node, &signed.cookie, "/ui/system").await;
        let alerts = page.matches("Console test brute force").count();
        (
            page.contains(&format!("<td>{node_id}</td>")) && alerts == 3,
            page,
        )
    })
    .await;
    assert!(page.contains("<h3 id=\"c-replication\">"), "{page}");
    assert!(!page.contains("reports to no fleet"));
    node.app.stop().await;
}
