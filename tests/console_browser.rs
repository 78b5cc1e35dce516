//! The console in a real browser: Debian's chromium driven through its
//! chromedriver with fantoccini (WebDriver). Alerts raised by real syslog
//! over TCP; every page checked with axe-core in light and dark.
//!
//! Needs `chromium`, `chromedriver` and axe-core (`SECMON_AXE_JS`, else
//! `.tools/axe-core/axe.min.js`): `scripts/test.sh` installs them. With
//! `SECMON_UPDATE_SCREENSHOTS=1` the screenshots it takes replace those in
//! `docs/console/`; otherwise they go to `target/console-screenshots/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN_PASSWORD, Netns, Node, config_with_rule, free_port, keyword_rule};
use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const RULE_ID: &str = "c0ffee00-0000-4000-8000-000000000181";

struct Browser {
    driver: Child,
    client: Client,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A headless chromium at 1280×720 through a chromedriver of the test's own.
async fn browser() -> Browser {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver runs (scripts/test.sh installs Debian's chromium-driver)");
    let url = format!("http://127.0.0.1:{port}");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--window-size=1280,720", "--hide-scrollbars"]}),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return Browser { driver, client },
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no WebDriver session: {e}"),
        }
    }
}

/// Waits until `script` (a function body) returns true in the page.
async fn until(client: &Client, what: &str, script: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if client.execute(script, vec![]).await.unwrap() == Value::Bool(true) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn url(client: &Client) -> String {
    client.current_url().await.unwrap().to_string()
}

/// axe-core's serious and critical violations on the current page.
async fn axe(client: &Client, page: &str) {
    let path = std::env::var_os("SECMON_AXE_JS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/axe-core/axe.min.js"),
        PathBuf::from,
    );
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/test.sh fetches axe-core)", path.display()));
    // WebDriver runs scripts outside the page's CSP: axe is loaded for the
    // test only, never by the page.
    client
        .execute(&format!("{source}\nreturn true;"), vec![])
        .await
        .unwrap();
    let found = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document).then(r => done(r.violations
                 .filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => ({id: v.id, impact: v.impact, help: v.help,
                             nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(found, json!([]), "axe-core on {page}");
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = if std::env::var_os("SECMON_UPDATE_SCREENSHOTS").is_some() {
        root.join("docs/console")
    } else {
        root.join("target/console-screenshots")
    };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn sign_in(client: &Client, base: &str, user: &str, password: &str) {
    client.goto(&format!("{base}/")).await.unwrap();
    assert!(
        url(client).await.contains("/ui/login"),
        "a browser's GET / lands on the sign-in page"
    );
    client
        .find(Locator::Id("username"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    client
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    client
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        "the alert queue",
        "return !!document.querySelector('table.queue');",
    )
    .await;
}

/// Failed sshd logins in bursts from a few addresses, timestamped now, as
/// a syslog sender writes them: the built-in rules and the test's rule
/// raise alerts from them.
fn attack_lines() -> String {
    let now = chrono::Utc::now();
    let mut lines = String::new();
    for attacker in 1..=6u32 {
        for attempt in 0..8u32 {
            let at =
                (now - chrono::Duration::seconds(i64::from(60 - attempt))).format("%b %e %H:%M:%S");
            lines.push_str(&format!(
                "<38>{at} web-{} sshd[{}]: Failed password for root from 203.0.113.{attacker} port {} ssh2 console-attack\n",
                attacker % 2 + 1,
                1000 + attacker,
                40_000 + attempt
            ));
        }
    }
    lines
}

/// `n` syslog lines carrying `word`, timestamped now.
fn tail_lines(word: &str, n: u32) -> String {
    let at = chrono::Utc::now().format("%b %e %H:%M:%S");
    (0..n)
        .map(|i| format!("<38>{at} web-9 sshd[77]: Connection closed by 198.51.100.{i} {word}\n"))
        .collect()
}

/// The hit count a search page shows.
async fn total(client: &Client) -> u64 {
    client
        .find(Locator::Css(".summary strong"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn analysts_triage_live_alerts_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let rule = keyword_rule("Console attack seen", RULE_ID, "console-attack", "high");
    let mut cfg = config_with_rule(dir.path(), &rule);
    cfg.detection.builtin = true;
    cfg.ports.syslog_tcp = Some(0);
    // Active response on a real nftables set, in a namespace of the test's own.
    let ns = Netns::create();
    cfg.response = serde_saphyr::from_str(&format!(
        "enabled: true\nnft: [ip, netns, exec, {}, nft]\n",
        ns.0
    ))
    .unwrap();
    let node = Node::start(cfg).await;
    let v = node
        .graphql(
            "mutation { createUser(username: \"vic\", password: \"vic-password-1234\", role: VIEWER) { username } }",
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["createUser"]["username"], "vic", "{v}");
    let base = format!("http://{}", node.app.addrs().graphql);
    let browser = browser().await;
    let client = &browser.client;

    // The sign-in page, light: accessible.
    client.goto(&format!("{base}/")).await.unwrap();
    until(
        client,
        "the sign-in page",
        "return !!document.getElementById('username');",
    )
    .await;
    axe(client, "sign-in").await;
    screenshot(client, "login").await;

    sign_in(client, &base, "admin", ADMIN_PASSWORD).await;
    assert!(url(client).await.ends_with("/ui/alerts"));
    // Alerts raised by real syslog arrive while the analyst reads the
    // queue: announced, never inserted under the reader's eyes.
    let mut syslog = tokio::net::TcpStream::connect(node.app.addrs().syslog_tcp.unwrap())
        .await
        .unwrap();
    syslog.write_all(attack_lines().as_bytes()).await.unwrap();
    syslog.flush().await.unwrap();
    until(
        client,
        "the new-alerts notice",
        "return !document.getElementById('live').hidden;",
    )
    .await;
    assert_eq!(
        client
            .execute(
                "return document.querySelectorAll('tbody tr[data-id]').length;",
                vec![]
            )
            .await
            .unwrap(),
        json!(0),
        "the rows did not move"
    );
    client
        .find(Locator::Css("#live a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        "the new alerts",
        "return document.querySelectorAll('tbody tr[data-id]').length >= 6;",
    )
    .await;
    axe(client, "alerts (light)").await;
    screenshot(client, "alerts").await;

    // The keyboard: `?` lists the shortcuts; `j` `x` select the first row.
    let body = client.find(Locator::Css("body")).await.unwrap();
    body.send_keys("?").await.unwrap();
    until(
        client,
        "the shortcuts",
        "return document.getElementById('help').open;",
    )
    .await;
    axe(client, "shortcuts").await;
    client
        .find(Locator::Css("#help button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    body.send_keys("jx").await.unwrap();
    until(
        client,
        "the first row selected",
        "return document.querySelector('tbody input[name=id]').checked;",
    )
    .await;

    // Bulk: every alert of the page resolved with a comment, in one change.
    client
        .find(Locator::Id("select-all"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let rows = client
        .execute(
            "return document.querySelectorAll('tbody tr[data-id]').length;",
            vec![],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap();
    client
        .find(Locator::Css("select[name=action]"))
        .await
        .unwrap()
        .select_by_value("resolve")
        .await
        .unwrap();
    client
        .find(Locator::Css("input[name=comment]"))
        .await
        .unwrap()
        .send_keys("blocked upstream")
        .await
        .unwrap();
    client
        .find(Locator::Css(".actions button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        "the change confirmed",
        "return !!document.querySelector('.notice');",
    )
    .await;
    let notice = client
        .find(Locator::Css(".notice"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(notice, format!("{rows} alerts resolved."));
    let resolved = node
        .graphql(
            "{ alerts(status: RESOLVED, first: 100) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        resolved["data"]["alerts"]["edges"]
            .as_array()
            .unwrap()
            .len() as u64,
        rows
    );

    // An alert's own page, opened from the keyboard; the decisions page.
    client
        .goto(&format!("{base}/ui/alerts?status=resolved"))
        .await
        .unwrap();
    until(
        client,
        "the resolved alerts",
        "return document.querySelectorAll('tbody tr[data-id]').length > 0;",
    )
    .await;
    let body = client.find(Locator::Css("body")).await.unwrap();
    body.send_keys("jo").await.unwrap();
    until(
        client,
        "the alert's page",
        "return /^\\/ui\\/alerts\\/[0-9]+$/.test(location.pathname);",
    )
    .await;
    let text = client
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("blocked upstream"),
        "the history shows the comment: {text}"
    );
    axe(client, "an alert").await;
    screenshot(client, "alert").await;
    // Block the source of one alert from its page; lift it on the
    // decisions page.
    let v = node
        .graphql(
            &format!("{{ alerts(ruleId: \"{RULE_ID}\", first: 1) {{ edges {{ node {{ id groupKey }} }} }} }}"),
            json!({}),
        )
        .await;
    let alert = &v["data"]["alerts"]["edges"][0]["node"];
    let ip = alert["groupKey"]["source.ip"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned();
    client
        .goto(&format!(
            "{base}/ui/alerts/{}",
            alert["id"].as_str().unwrap()
        ))
        .await
        .unwrap();
    client
        .find(Locator::Css("form[action='/ui/decisions/block'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        "blocked",
        "return location.search === '?done=blocked';",
    )
    .await;
    client.goto(&format!("{base}/ui/decisions")).await.unwrap();
    until(
        client,
        "the block",
        &format!("return document.querySelector('main').textContent.includes('{ip}');"),
    )
    .await;
    axe(client, "decisions").await;
    screenshot(client, "decisions").await;
    let set = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.0, "nft", "list", "ruleset"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&set.stdout).contains(&ip),
        "{ip} in the nftables set"
    );
    client
        .find(Locator::Css(&format!(
            "button[aria-label='Lift the block of {ip}']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        "lifted",
        "return location.search === '?done=lifted';",
    )
    .await;
    let v = node.graphql("{ decisions { ip } }", json!({})).await;
    assert_eq!(v["data"]["decisions"], json!([]), "{v}");

    // Search: the syslog lines of the last quarter hour, a histogram and
    // the top values; include one user, exclude one address.
    client
        .goto(&format!("{base}/ui/search?range=15m"))
        .await
        .unwrap();
    until(
        client,
        "the histogram",
        "return document.querySelectorAll('#histogram rect[data-start]').length > 0;",
    )
    .await;
    let all = total(client).await;
    assert!(all >= 48, "every syslog line: {all}");
    axe(client, "search (light)").await;
    screenshot(client, "search").await;
    client
        .find(Locator::Css("a[aria-label='Only user.name root']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        "only root",
        "return new URL(location.href).searchParams.get('q') === 'user.name:\"root\"';",
    )
    .await;
    assert_eq!(total(client).await, 48);
    client
        .find(Locator::Css("a[aria-label='Not source.ip 203.0.113.1']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        "not one address",
        "return location.search.includes('NOT+source.ip');",
    )
    .await;
    assert_eq!(total(client).await, 40);

    // Zoom: drag across the bars, from just before the first to just
    // after the last; the same hits over a narrower span.
    let span = client
        .execute(
            "const c = document.getElementById('histogram').getBoundingClientRect();
             const bars = Array.from(document.querySelectorAll('#histogram rect[data-start]'))
                 .map(b => b.getBoundingClientRect());
             const mid = c.left + c.width / 2;
             return [Math.max(c.left + 1, bars[0].left - 3) - mid,
                     Math.min(c.right - 1, bars[bars.length - 1].right + 3) - mid];",
            vec![],
        )
        .await
        .unwrap();
    let chart = client.find(Locator::Id("histogram")).await.unwrap();
    let drag = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement {
            element: chart.clone(),
            duration: None,
            x: span[0].as_f64().unwrap(),
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::MoveToElement {
            element: chart,
            duration: Some(Duration::from_millis(200)),
            x: span[1].as_f64().unwrap(),
            y: 0.0,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    client.perform_actions(drag).await.unwrap();
    until(
        client,
        "zoomed in",
        "return new URL(location.href).searchParams.get('range') === 'custom';",
    )
    .await;
    assert_eq!(total(client).await, 40);
    assert!(
        client
            .execute("return location.search;", vec![])
            .await
            .unwrap()
            .as_str()
            .unwrap()
            .contains("NOT+source.ip"),
        "zooming keeps the query"
    );

    // Live tail: new lines come in on top while the reader keeps their
    // place further down; paused, nothing comes.
    client
        .goto(&format!("{base}/ui/search?range=15m&live=1"))
        .await
        .unwrap();
    until(
        client,
        "the tail",
        "return !!document.getElementById('tail');",
    )
    .await;
    axe(client, "search, live").await;
    client
        .execute("window.scrollTo(0, 400); return true;", vec![])
        .await
        .unwrap();
    let reading = "const r = document.elementFromPoint(640, 360).closest('tr[data-seq]');
                   return r ? r.dataset.seq : null;";
    let before = client.execute(reading, vec![]).await.unwrap();
    assert!(before.is_string(), "a row under the reader's eyes");
    syslog
        .write_all(tail_lines("tail-one", 3).as_bytes())
        .await
        .unwrap();
    syslog.flush().await.unwrap();
    until(
        client,
        "three new rows on top",
        "return document.querySelectorAll('#tail > tr[data-seq]')[2].textContent.includes('tail-one');",
    )
    .await;
    assert_eq!(
        client.execute(reading, vec![]).await.unwrap(),
        before,
        "the reader's row stays where it was"
    );
    client
        .find(Locator::Id("pause"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    syslog
        .write_all(tail_lines("tail-two", 2).as_bytes())
        .await
        .unwrap();
    syslog.flush().await.unwrap();
    node.wait_indexed().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shown = "return document.querySelector('#tail').textContent.includes('tail-two');";
    assert_eq!(
        client.execute(shown, vec![]).await.unwrap(),
        json!(false),
        "paused"
    );
    client
        .find(Locator::Id("pause"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(client, "resumed", shown).await;

    // Rules: a new rule written in the editor; its problem shown at its
    // line, where a click puts the cursor; fixed, back-tested over the
    // last hour (the attack's 48 lines), saved.
    client.goto(&format!("{base}/ui/rules")).await.unwrap();
    until(
        client,
        "the rules",
        "return document.querySelectorAll('tr[data-rule]').length > 1;",
    )
    .await;
    axe(client, "rules").await;
    screenshot(client, "rules").await;
    client.goto(&format!("{base}/ui/rules/new")).await.unwrap();
    let rule = [
        "title: Console attack, back-tested",
        "id: 7e57ed00-0000-4000-8000-000000000181",
        "logsource:",
        "    product: linux",
        "detection:",
        "    keywords:",
        "        - console-attack",
        "    condition: keywords",
        "level: high\n",
    ]
    .join("\n");
    let broken = rule.replace("condition: keywords", "condition: keywords or");
    let editor = client.find(Locator::Id("yaml")).await.unwrap();
    editor.clear().await.unwrap();
    editor.send_keys(&broken).await.unwrap();
    client
        .find(Locator::Css("form.editor button:not([formaction])"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        "the problem",
        "return !!document.querySelector('#problems a[data-line]');",
    )
    .await;
    axe(client, "a rule with a problem").await;
    client
        .find(Locator::Css("#problems a[data-line]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let at = client
        .execute(
            "const t = document.getElementById('yaml');
             return [document.activeElement === t, t.value.slice(0, t.selectionStart).split('\\n').length,
                     Number(document.querySelector('#problems a[data-line]').dataset.line)];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(at[0], json!(true), "{at}");
    assert_eq!(at[1], at[2], "the cursor is on the problem's line: {at}");
    let editor = client.find(Locator::Id("yaml")).await.unwrap();
    editor.clear().await.unwrap();
    editor.send_keys(&rule).await.unwrap();
    client
        .find(Locator::Css("select[name=hours]"))
        .await
        .unwrap()
        .select_by_value("1")
        .await
        .unwrap();
    client
        .find(Locator::Css("form.editor button:not([formaction])"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        "the back-test",
        "return !!document.getElementById('backtest');",
    )
    .await;
    let heading = client
        .find(Locator::Id("backtest"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(heading, "Back-test: 48 hits over the last hour");
    axe(client, "a back-tested rule").await;
    client
        .execute(
            "document.querySelector('.editor .actions').scrollIntoView(); return true;",
            vec![],
        )
        .await
        .unwrap();
    screenshot(client, "rule").await;
    client
        .find(Locator::Css("button[formaction='/ui/rules/save']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        "saved",
        "return location.pathname === '/ui/rules/7e57ed00-0000-4000-8000-000000000181' && !!document.querySelector('.notice');",
    )
    .await;

    // The node's status.
    client.goto(&format!("{base}/ui/system")).await.unwrap();
    until(
        client,
        "the status",
        "return !!document.getElementById('status');",
    )
    .await;
    axe(client, "system").await;
    screenshot(client, "system").await;

    // Administration: an API key created (shown once) and revoked.
    client.goto(&format!("{base}/ui/admin")).await.unwrap();
    until(
        client,
        "the users",
        "return !!document.querySelector('tr[data-user=vic]');",
    )
    .await;
    axe(client, "administration").await;
    screenshot(client, "admin").await;
    client
        .find(Locator::Css(
            "form[action='/ui/admin/keys'] input[name=name]",
        ))
        .await
        .unwrap()
        .send_keys("browser-shipper")
        .await
        .unwrap();
    client
        .find(Locator::Css("form[action='/ui/admin/keys'] button.primary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        "the new key",
        "return !!document.getElementById('created-key');",
    )
    .await;
    let key = client
        .find(Locator::Css("#created-key pre"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(key.starts_with("smk_"), "{key}");
    client
        .find(Locator::Css("button[aria-label='Revoke browser-shipper']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        "revoked",
        "return !!document.querySelector('.notice') && document.querySelector('.notice').textContent.includes('revoked');",
    )
    .await;
    let status = reqwest::Client::new()
        .post(format!("{base}/api/v1/ingest"))
        .bearer_auth(&key)
        .body("{\"message\": \"late\"}\n")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(
        status,
        reqwest::StatusCode::UNAUTHORIZED,
        "a revoked key is refused"
    );

    // Dark, by the switch: accessible too, and kept on the next page.
    client
        .goto(&format!("{base}/ui/alerts?status=resolved"))
        .await
        .unwrap();
    client
        .find(Locator::Id("theme"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        "dark",
        "return document.documentElement.dataset.theme === 'dark';",
    )
    .await;
    axe(client, "alerts (dark)").await;
    client
        .find(Locator::Css("tbody tr[data-id] a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        "the alert's page, dark",
        "return !!document.querySelector('.facts');",
    )
    .await;
    axe(client, "an alert (dark)").await;
    for (path, ready) in [
        ("/ui/search?range=15m", "#histogram"),
        ("/ui/rules", "tr[data-rule]"),
        ("/ui/rules/new", "#yaml"),
        ("/ui/decisions", "main h1"),
        ("/ui/admin", "tr[data-user]"),
        ("/ui/system", "#status"),
    ] {
        client.goto(&format!("{base}{path}")).await.unwrap();
        until(
            client,
            path,
            &format!("return !!document.querySelector('{ready}');"),
        )
        .await;
        axe(client, &format!("{path} (dark)")).await;
    }
    client
        .goto(&format!("{base}/ui/alerts?status=resolved"))
        .await
        .unwrap();
    client.refresh().await.unwrap();
    until(
        client,
        "dark after a reload",
        "return document.documentElement.dataset.theme === 'dark';",
    )
    .await;
    screenshot(client, "alerts-dark").await;

    // On a phone: the queue fits the screen's width, and its rows open.
    client.set_window_size(390, 844).await.unwrap();
    client.refresh().await.unwrap();
    until(
        client,
        "the queue on a phone",
        "return document.querySelectorAll('tbody tr[data-id]').length > 0;",
    )
    .await;
    assert_eq!(
        client
            .execute(
                "const s = document.querySelector('.scroll'); return s.scrollWidth <= s.clientWidth;",
                vec![]
            )
            .await
            .unwrap(),
        json!(true),
        "the queue's table fits too"
    );
    assert_eq!(
        client
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth;",
                vec![]
            )
            .await
            .unwrap(),
        json!(true),
        "no sideways scrolling"
    );
    axe(client, "alerts on a phone").await;
    screenshot(client, "alerts-phone").await;
    client.set_window_size(1280, 720).await.unwrap();

    // Sign out: back to the sign-in page; the queue asks to sign in again.
    client
        .find(Locator::Css("form[action='/ui/logout'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        client,
        "signed out",
        "return location.pathname === '/ui/login';",
    )
    .await;
    client.goto(&format!("{base}/ui/alerts")).await.unwrap();
    assert!(url(client).await.contains("/ui/login?next="));

    // A viewer reads the queue and is offered no triage.
    sign_in(client, &base, "vic", "vic-password-1234").await;
    client
        .goto(&format!("{base}/ui/alerts?status=resolved"))
        .await
        .unwrap();
    until(
        client,
        "the viewer's queue",
        "return document.querySelectorAll('tbody tr[data-id]').length > 0;",
    )
    .await;
    assert_eq!(
        client
            .execute("return [!!document.getElementById('select-all'), document.querySelectorAll('.actions').length];", vec![])
            .await
            .unwrap(),
        json!([false, 0])
    );
    axe(client, "alerts (viewer, dark)").await;
    browser.client.clone().close().await.unwrap();
    node.app.stop().await;
}
