//! Replication against the real servers: the machine's Postgres
//! (127.0.0.1:5432) and Redis (127.0.0.1:6379), each test in a database or
//! key prefix of its own; a Postgres cluster of its own (initdb, TLS with
//! rcgen certificates) stopped and started mid-stream; a redis-server of its
//! own killed mid-stream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Node, TestDb, config_with_rule, eventually, free_port, keyword_rule};
use secmon::config::{Cidr, Config, Secret};
use serde_json::{Value, json};

const RULE_ID: &str = "5f0c8a7e-2b1d-4e6f-9a3c-8d7e6f5a4b3c";

/// A node whose only rule raises one alert per source IP of an event
/// carrying `replication-marker`, replicating fast.
fn node_config(dir: &Path) -> Config {
    let mut cfg = config_with_rule(
        dir,
        &keyword_rule("Replication Marker", RULE_ID, "replication-marker", "high"),
    );
    cfg.replication.heartbeat_interval_seconds = 1;
    cfg.replication.retry_initial_ms = 50;
    cfg.replication.retry_max_seconds = 1;
    cfg
}

/// `n` events, each raising an alert for its own source IP (`first..`).
async fn raise_alerts(node: &Node, first: u32, n: u32) {
    let body: String = (first..first + n)
        .map(|i| {
            let ip = format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256);
            format!(
                "{}\n",
                json!({"message": format!("replication-marker {i}"), "source.ip": ip,
                       "host.name": "web-1", "event.dataset": "test", "event.outcome": "failure"})
            )
        })
        .collect();
    let (status, resp) = node.ingest(body).await;
    assert_eq!(status, 200, "{resp}");
}

/// The node's alerts: id -> (status, count).
async fn node_alerts(node: &Node) -> BTreeMap<i64, (String, i64)> {
    let mut out = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let v = node
            .graphql(
                "query($after: String) { alerts(first: 1000, after: $after) {
                    edges { cursor node { id status count } } pageInfo { hasNextPage } } }",
                json!({"after": after}),
            )
            .await;
        let edges = v["data"]["alerts"]["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"));
        for e in edges {
            let n = &e["node"];
            out.insert(
                n["id"].as_str().unwrap().parse().unwrap(),
                (
                    n["status"].as_str().unwrap().to_lowercase(),
                    n["count"].as_i64().unwrap(),
                ),
            );
            after = Some(e["cursor"].as_str().unwrap().to_owned());
        }
        if v["data"]["alerts"]["pageInfo"]["hasNextPage"] != true {
            return out;
        }
    }
}

/// Resolves the alerts `ids` over GraphQL.
async fn resolve(node: &Node, ids: &[u32]) {
    for id in ids {
        let v = node
            .graphql(
                &format!("mutation {{ resolveAlert(id: \"{id}\") {{ status }} }}"),
                json!({}),
            )
            .await;
        assert_eq!(v["data"]["resolveAlert"]["status"], "RESOLVED", "{v}");
    }
}

/// How often `sink` found its receiver behind and sent the state again.
async fn resends(node: &Node, sink: &str) -> u64 {
    let metrics = node.metrics().await;
    let sample = format!("secmon_replication_resends_total{{sink=\"{sink}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&sample)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in\n{metrics}"))
}

async fn events_stored(node: &Node) -> i64 {
    let v = node.graphql("{ system { eventsStored } }", json!({})).await;
    v["data"]["system"]["eventsStored"].as_i64().unwrap()
}

// ---------------------------------------------------------------- Postgres

async fn pg(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(conn);
    client
}

/// The central rows of `node_id`: alert id -> (status, count).
async fn central_alerts(
    db: &tokio_postgres::Client,
    node_id: &str,
) -> BTreeMap<i64, (String, i64)> {
    db.query(
        "SELECT alert_id, status, count FROM secmon.alerts WHERE node_id = $1",
        &[&node_id],
    )
    .await
    .map(|rows| {
        rows.iter()
            .map(|r| (r.get::<_, i64>(0), (r.get(1), r.get(2))))
            .collect()
    })
    .unwrap_or_default()
}

async fn central_events(db: &tokio_postgres::Client, node_id: &str) -> i64 {
    db.query_one(
        "SELECT coalesce(sum(count), 0)::int8 FROM secmon.event_rollups WHERE node_id = $1",
        &[&node_id],
    )
    .await
    .map_or(-1, |r| r.get(0))
}

/// Waits until the central tables hold exactly what `node` holds.
async fn converged(node: &Node, db: &tokio_postgres::Client) {
    let node_id = node.app.node_id().to_string();
    let want = node_alerts(node).await;
    let events = events_stored(node).await;
    eventually("central tables equal the node's", || async {
        let got = central_alerts(db, &node_id).await;
        let got_events = central_events(db, &node_id).await;
        (
            got == want && got_events == events,
            (got.len(), want.len(), got_events, events),
        )
    })
    .await;
}

/// [`node_config`] replicating to `db` and to the machine's Redis under
/// `prefix`.
fn both_sinks(dir: &Path, db: &TestDb, prefix: &str) -> Config {
    let mut cfg = node_config(dir);
    cfg.services.database_url = Some(Secret::new(db.url()));
    cfg.services.redis_url = Some(Secret::new("redis://127.0.0.1:6379"));
    cfg.replication.redis_key_prefix = prefix.to_owned();
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_rollups_and_heartbeats_reach_postgres_and_redis_exactly_once() {
    let db = TestDb::create();
    let prefix = format!("secmon-test-{}", ulid::Ulid::generate());
    let _cleanup = RedisKeys(prefix.clone());
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(both_sinks(dir.path(), &db, &prefix)).await;
    let node_id = node.app.node_id().to_string();

    let redis = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut pubsub = redis.get_async_pubsub().await.unwrap();
    pubsub.subscribe(format!("{prefix}:alerts")).await.unwrap();

    raise_alerts(&node, 0, 300).await;
    let central = pg(&db.url()).await;
    converged(&node, &central).await;
    let alerts = central_alerts(&central, &node_id).await;
    assert_eq!(alerts.len(), 300, "300 alerts, 300 rows");
    assert_eq!(
        alerts.keys().copied().collect::<Vec<_>>(),
        (1..=300).collect::<Vec<i64>>()
    );
    let row = central
        .query_one(
            "SELECT rule_id, rule_title, severity, source_ip, host_name, tags, version
             FROM secmon.alerts WHERE node_id = $1 AND alert_id = 1",
            &[&node_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), RULE_ID);
    assert_eq!(row.get::<_, String>(1), "Replication Marker");
    assert_eq!(row.get::<_, String>(2), "high");
    assert_eq!(row.get::<_, Option<String>>(3).as_deref(), Some("10.0.0.0"));
    assert_eq!(row.get::<_, Option<String>>(4).as_deref(), Some("web-1"));
    assert!(row.get::<_, i64>(6) > 0);
    let rollup = central
        .query_one(
            "SELECT host_name, dataset, outcome, count FROM secmon.event_rollups WHERE node_id = $1",
            &[&node_id],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            rollup.get::<_, String>(0),
            rollup.get::<_, String>(1),
            rollup.get::<_, String>(2),
            rollup.get::<_, i64>(3)
        ),
        ("web-1".into(), "test".into(), "failure".into(), 300)
    );
    let node_row = eventually("the node's heartbeat row", || async {
        let rows = central
            .query(
                "SELECT hostname, version, events_total, status FROM secmon.fleet_nodes WHERE node_id = $1",
                &[&node_id],
            )
            .await
            .unwrap();
        let seen = rows
            .first()
            .map(|r| (r.get::<_, String>(1), r.get::<_, i64>(2), r.get::<_, String>(3)));
        (seen.as_ref().is_some_and(|s| s.1 == 300), seen)
    })
    .await
    .unwrap();
    assert_eq!(node_row.0, env!("CARGO_PKG_VERSION"));
    assert_eq!(node_row.2, "online");

    // An analyst's change replicates too, and a second migration run is a no-op.
    let v = node
        .graphql(
            "mutation { acknowledgeAlert(id: \"7\", comment: \"looking\") { status } }",
            json!({}),
        )
        .await;
    assert_eq!(
        v["data"]["acknowledgeAlert"]["status"], "ACKNOWLEDGED",
        "{v}"
    );
    converged(&node, &central).await;
    let migrations: i64 = central
        .query_one("SELECT count(*) FROM secmon.schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(migrations, 4);

    // Redis: one stream message per alert update, published too.
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let stream = eventually("the alerts stream", || {
        let mut conn = conn.clone();
        let key = format!("{prefix}:alerts");
        async move {
            let entries = stream_alerts(&mut conn, &key).await;
            (entries.len() == 301, entries.len())
        }
    })
    .await;
    assert_eq!(stream, 301, "300 new alerts and one acknowledgement");
    let entries = stream_alerts(&mut conn, &format!("{prefix}:alerts")).await;
    let last = entries.iter().rfind(|a| a["alert_id"] == 7).unwrap();
    assert_eq!(last["status"], "acknowledged");
    assert_eq!(last["node_id"], node_id.as_str());
    let message = tokio::time::timeout(Duration::from_secs(10), async {
        use futures_util::StreamExt;
        pubsub.on_message().next().await.unwrap()
    })
    .await
    .expect("a published alert");
    let published: Value = serde_json::from_str(&message.get_payload::<String>().unwrap()).unwrap();
    assert_eq!(published["node_id"], node_id.as_str());
    assert!(published["alert_id"].as_u64().is_some());
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{prefix}:node:{node_id}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=3).contains(&ttl), "heartbeat key expires: ttl {ttl}");
    let counters: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("{prefix}:counters:{node_id}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(counters.contains_key("events_total"), "{counters:?}");

    // The fleet view reads the central tables; /ready reports the sinks.
    let v = node
        .graphql(
            "{ fleet { nodes { id hostname version lastSeen eventsPerSecond status }
                       alerts(status: ACKNOWLEDGED) { nodeId alertId status }
                       rollups(from: \"2000-01-01T00:00:00Z\", to: \"2100-01-01T00:00:00Z\") { count dataset } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        v["data"]["fleet"]["nodes"][0]["id"],
        node_id.as_str(),
        "{v}"
    );
    assert_eq!(v["data"]["fleet"]["nodes"][0]["status"], "online");
    assert_eq!(
        v["data"]["fleet"]["alerts"],
        json!([{"nodeId": node_id, "alertId": 7, "status": "acknowledged"}])
    );
    assert_eq!(v["data"]["fleet"]["rollups"][0]["count"], 300);
    grafana_queries_answer(&central).await;
    let ready: Value = reqwest::get(format!("http://{}/ready", node.app.addrs().health))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sinks = &ready["components"]["replication"]["sinks"];
    assert_eq!(sinks["postgres"]["connected"], true, "{ready}");
    assert_eq!(sinks["redis"]["connected"], true, "{ready}");
    let metrics = node.metrics().await;
    assert!(
        metrics.contains("secmon_replication_rows_total{sink=\"postgres\"}"),
        "{metrics}"
    );
    node.app.stop().await;
}

/// Every query of the fleet dashboard runs on the replicated tables, and
/// each panel has rows to show.
async fn grafana_queries_answer(db: &tokio_postgres::Client) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/dashboards/fleet.json");
    let dashboard: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    let time_filter = regex::Regex::new(r"\$__timeFilter\(([^)]+)\)").unwrap();
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let sql = target["rawSql"].as_str().unwrap();
            // Grafana's macro, as it expands it for the last day.
            let sql = time_filter.replace_all(
                sql,
                "$1 BETWEEN now() - interval '1 day' AND now() + interval '1 hour'",
            );
            let rows = db
                .query(sql.as_ref(), &[])
                .await
                .unwrap_or_else(|e| panic!("{}: {sql}: {e:?}", panel["title"]));
            assert!(!rows.is_empty(), "{}: no rows: {sql}", panel["title"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_database_each_with_its_own_rows() {
    let db = TestDb::create();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let start = |dir: PathBuf, name: &'static str| {
        let mut cfg = node_config(&dir);
        cfg.node_name = Some(name.into());
        cfg.services.database_url = Some(Secret::new(db.url()));
        Node::start(cfg)
    };
    // Started together: the migrations must not race.
    let (a, b) = tokio::join!(
        start(a_dir.path().to_owned(), "edge-a"),
        start(b_dir.path().to_owned(), "edge-b")
    );
    raise_alerts(&a, 0, 20).await;
    raise_alerts(&b, 1000, 30).await;
    let central = pg(&db.url()).await;
    converged(&a, &central).await;
    converged(&b, &central).await;
    let v = eventually("both nodes in the fleet view", || async {
        let v = a
            .graphql(
                "{ fleet { nodes { id hostname } alerts(limit: 1000) { nodeId } } }",
                json!({}),
            )
            .await;
        let nodes = v["data"]["fleet"]["nodes"].as_array().map_or(0, Vec::len);
        (nodes == 2, v)
    })
    .await;
    let hostnames: Vec<&str> = v["data"]["fleet"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(hostnames, ["edge-a", "edge-b"]);
    let per_node = |id: String| {
        v["data"]["fleet"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["nodeId"] == id.as_str())
            .count()
    };
    assert_eq!(per_node(a.app.node_id().to_string()), 20);
    assert_eq!(per_node(b.app.node_id().to_string()), 30);
    a.app.stop().await;
    b.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_replica_that_does_not_answer_leaves_the_fleet_view_to_the_primary() {
    let db = TestDb::create();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = node_config(dir.path());
    cfg.services.database_url = Some(Secret::new(db.url()));
    // Nothing listens there.
    cfg.services.database_read_url = Some(Secret::new(format!(
        "postgres://root@127.0.0.1:{}/postgres?sslmode=disable&connect_timeout=1",
        free_port()
    )));
    let node = Node::start(cfg).await;
    raise_alerts(&node, 0, 10).await;
    converged(&node, &pg(&db.url()).await).await;
    let v = node
        .graphql(
            "{ fleet { source { server lagSeconds } alerts { alertId } } }",
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["fleet"]["source"]["server"], "primary", "{v}");
    assert_eq!(
        v["data"]["fleet"]["alerts"].as_array().unwrap().len(),
        10,
        "{v}"
    );
    let metrics = node.metrics().await;
    let fallbacks: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("secmon_fleet_read_fallbacks_total "))
        .unwrap_or_else(|| panic!("no fallback counter: {metrics}"))
        .parse()
        .unwrap();
    assert!(fallbacks >= 1.0, "the fallback is counted: {fallbacks}");
    let r = ready(&node).await;
    assert_eq!(
        r["components"]["replication"]["read_replica"]["connected"], false,
        "{r}"
    );
    assert_eq!(
        r["status"], "ready",
        "a replica down is reported, not fatal: {r}"
    );
    node.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_database_url_the_fleet_view_says_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(node_config(dir.path())).await;
    let v = node.graphql("{ fleet { nodes { id } } }", json!({})).await;
    assert_eq!(
        v["errors"][0]["extensions"]["code"], "NOT_CONFIGURED",
        "{v}"
    );
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("DATABASE_URL")
    );
    node.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_database_no_node_wrote_to_yet_is_an_empty_fleet() {
    use secmon::replicate::Sink;
    use secmon::replicate::postgres::{FleetAlertFilter, Postgres};
    let db = TestDb::create();
    let mut sink = Postgres::new(&db.url(), 1, ulid::Ulid::generate()).unwrap();
    let fleet = sink.fleet(None, 1).unwrap();
    // No schema yet (the first batch creates it): no rows, not an error.
    assert!(fleet.nodes().await.unwrap().is_empty());
    let alerts = fleet.alerts(FleetAlertFilter::default(), 10, 0).await;
    assert!(alerts.unwrap().is_empty());
    sink.apply(0, &[]).await.unwrap();
    let tables = pg(&db.url())
        .await
        .query_one("SELECT to_regclass('secmon.fleet_nodes') IS NOT NULL", &[])
        .await
        .unwrap()
        .get::<_, bool>(0);
    assert!(tables, "the first batch creates the schema");
    assert!(fleet.nodes().await.unwrap().is_empty());
}

/// A Postgres cluster of the test's own (initdb), serving TLS with an rcgen
/// certificate; stopped and started at will.
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

/// The PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup).
fn pg_bin() -> PathBuf {
    std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries in /usr/lib/postgresql (scripts/test.sh installs them)")
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .find(|p| p.join("initdb").exists())
        .expect("initdb")
}

impl Cluster {
    /// A primary; `extra` is appended to its postgresql.conf.
    fn start_new(extra: &str) -> Cluster {
        let bin = pg_bin();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let port = free_port();
        // initdb refuses root: run the server as `postgres` then.
        chown_postgres(dir.path());
        run_pg(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        );

        // A CA and a certificate for localhost it signed (`secmon init`'s).
        let pki = secmon::tls::generate_dev_pki(&dir.path().join("pki"), &[], false).unwrap();
        std::fs::copy(&pki.ca_cert, dir.path().join("ca.pem")).unwrap();
        std::fs::copy(&pki.server_cert, data.join("server.crt")).unwrap();
        std::fs::copy(&pki.server_key, data.join("server.key")).unwrap();
        chown_postgres(&data);
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        use std::io::Write;
        writeln!(
            conf,
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nfsync = off\n{extra}",
            dir.path().display()
        )
        .unwrap();
        let cluster = Cluster { dir, bin, port };
        cluster.start();
        cluster
    }

    /// A streaming standby of this cluster (pg_basebackup -R), started.
    /// Its certificate and key come with the copy; the CA stays this one's.
    fn standby(&self) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let port = free_port();
        chown_postgres(dir.path());
        run_pg(
            &self.bin,
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-D",
                data.to_str().unwrap(),
                "-R",
                "-X",
                "stream",
            ],
        );
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        use std::io::Write;
        // Promoted, it must not wait for a standby of its own.
        writeln!(
            conf,
            "port = {port}\nunix_socket_directories = '{}'\nsynchronous_standby_names = ''",
            dir.path().display()
        )
        .unwrap();
        std::fs::copy(self.ca(), dir.path().join("ca.pem")).unwrap();
        chown_postgres(dir.path());
        let standby = Cluster {
            dir,
            bin: self.bin.clone(),
            port,
        };
        standby.start();
        standby
    }

    /// `pg_ctl promote`; returns once it takes writes (asked every 5 ms:
    /// pg_ctl's own wait looks every 100 ms).
    async fn promote(&self) {
        run_pg(&self.bin, "pg_ctl", &["-D", &self.data(), "-W", "promote"]);
        let client = self.local().await;
        loop {
            let row = client
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await
                .unwrap();
            if !row.get::<_, bool>(0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A client over the socket directory, without TLS (the test's view).
    async fn local(&self) -> tokio_postgres::Client {
        let local = format!(
            "host={} port={} user=postgres dbname=postgres",
            self.dir.path().display(),
            self.port
        );
        let (client, conn) = tokio_postgres::connect(&local, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn start(&self) {
        let log = self.dir.path().join("log").display().to_string();
        run_pg(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data(), "-l", &log, "-w", "start"],
        );
    }

    fn stop(&self) {
        run_pg(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    fn url(&self, ca: &Path) -> String {
        format!(
            "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
            self.port,
            ca.display()
        )
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut cmd = Command::new(self.bin.join("pg_ctl"));
        cmd.args(["-D", &self.data(), "-m", "immediate", "stop"]);
        let _ = as_postgres(&cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// The command, run as `postgres` when we are root (initdb and postgres
/// refuse root).
fn as_postgres(cmd: &Command) -> Command {
    if !is_root() {
        let mut same = Command::new(cmd.get_program());
        same.args(cmd.get_args());
        return same;
    }
    let mut runuser = Command::new("runuser");
    runuser
        .args(["-u", "postgres", "--"])
        .arg(cmd.get_program());
    runuser.args(cmd.get_args());
    runuser
}

fn run_pg(bin: &Path, program: &str, args: &[&str]) {
    let mut cmd = Command::new(bin.join(program));
    cmd.args(args);
    let out = as_postgres(&cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chown_postgres(path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

async fn ready(node: &Node) -> Value {
    reqwest::get(format!("http://{}/ready", node.app.addrs().health))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_stopped_mid_stream_converges_without_gaps_or_duplicates() {
    let cluster = Cluster::start_new("");
    let url = cluster.url(&cluster.ca());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = node_config(dir.path());
    cfg.services.database_url = Some(Secret::new(url.clone()));
    let node = Node::start(cfg).await;

    raise_alerts(&node, 0, 100).await;
    let central = cluster.local().await;
    converged(&node, &central).await;
    let tls: bool = central
        .query_one(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'secmon'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(tls, "the sink's connections use TLS");

    // Cut off mid-stream: the node goes on storing, detecting and triaging.
    drop(central);
    cluster.stop();
    raise_alerts(&node, 100, 150).await;
    resolve(&node, &[3, 150, 200]).await;
    raise_alerts(&node, 250, 50).await;
    let lagging = eventually("the lag shows in /ready", || async {
        let r = ready(&node).await;
        let pg = r["components"]["replication"]["sinks"]["postgres"].clone();
        (
            pg["connected"] == false && pg["lag_entries"].as_u64() > Some(0),
            r,
        )
    })
    .await;
    assert_eq!(
        lagging["status"], "ready",
        "lag is reported, not fatal: {lagging}"
    );
    assert!(
        node.metrics()
            .await
            .contains("secmon_replication_errors_total{sink=\"postgres\"}")
    );

    cluster.start();
    let central = cluster.local().await;
    converged(&node, &central).await;
    let alerts = central_alerts(&central, &node.app.node_id().to_string()).await;
    assert_eq!(alerts.len(), 300);
    assert_eq!(alerts[&150].0, "resolved");
    assert_eq!(alerts[&151].0, "open");

    // A CA that did not sign the server's certificate is refused, by name.
    let other = tempfile::tempdir().unwrap();
    let stranger = secmon::tls::generate_dev_pki(other.path(), &[], false).unwrap();
    let mut sink = secmon::replicate::postgres::Postgres::new(
        &cluster.url(&stranger.ca_cert),
        1,
        ulid::Ulid::generate(),
    )
    .unwrap();
    use secmon::replicate::Sink;
    let err = sink.apply(0, &[]).await.unwrap_err().to_string();
    assert!(err.contains("certificate"), "{err}");
    assert!(err.contains("sslrootcert"), "{err}");
    node.app.stop().await;
}

/// The postgres sink's last success, from `/ready`.
async fn last_success(node: &Node, sink: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let r = ready(node).await;
    r["components"]["replication"]["sinks"][sink]["last_success"]
        .as_str()
        .and_then(|t| t.parse().ok())
}

/// Waits until `sink` applied a batch after `since`; how long after it.
async fn resumed_after(node: &Node, sink: &str, since: chrono::DateTime<chrono::Utc>) -> Duration {
    let at = eventually("replication resumes", || async {
        let at = last_success(node, sink).await;
        (at.is_some_and(|at| at > since), at)
    })
    .await
    .unwrap();
    (at - since).to_std().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failover_to_a_promoted_standby_loses_nothing_and_doubles_nothing() {
    // Synchronous replication: a commit the sink saw is on the standby.
    let primary = Cluster::start_new("synchronous_standby_names = '*'\nsynchronous_commit = on");
    let standby = primary.standby();
    let ca = primary.ca();
    let central = primary.local().await;
    eventually("the standby streams synchronously", || async {
        let rows = central
            .query(
                "SELECT sync_state FROM pg_stat_replication WHERE state = 'streaming'",
                &[],
            )
            .await
            .unwrap();
        let states: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        (states == ["sync"], states)
    })
    .await;

    // A write that reaches a standby is "wrong host", not a data error;
    // a read-write session refuses the standby at connection.
    use secmon::replicate::Sink;
    let mut sink = secmon::replicate::postgres::Postgres::new(
        &format!("{}&target_session_attrs=any", standby.url(&ca)),
        1,
        ulid::Ulid::generate(),
    )
    .unwrap();
    let err = sink.apply(0, &[]).await.unwrap_err().to_string();
    assert!(err.contains("standby now: reconnecting"), "{err}");
    let mut sink =
        secmon::replicate::postgres::Postgres::new(&standby.url(&ca), 1, ulid::Ulid::generate())
            .unwrap();
    let err = sink.apply(0, &[]).await.unwrap_err().to_string();
    assert!(err.contains("does not allow writes"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = node_config(dir.path());
    // Both hosts, in libpq's key=value form (the read URL is a URL).
    cfg.services.database_url = Some(Secret::new(format!(
        "host=localhost,localhost port={},{} user=postgres dbname=postgres \
         sslmode=verify-full sslrootcert={}",
        primary.port,
        standby.port,
        ca.display()
    )));
    cfg.services.database_read_url = Some(Secret::new(standby.url(&ca)));
    let node = Node::start(cfg).await;
    raise_alerts(&node, 0, 100).await;
    converged(&node, &central).await;

    // The fleet view reads the replica and says how old its data is.
    let fleet = eventually("the fleet view reads the replica", || async {
        let v = node
            .graphql(
                "{ fleet { source { server lagSeconds } alerts(limit: 1000) { alertId } } }",
                json!({}),
            )
            .await;
        let fleet = &v["data"]["fleet"];
        (
            fleet["source"]["server"] == "replica"
                && fleet["alerts"].as_array().map(Vec::len) == Some(100),
            v,
        )
    })
    .await;
    assert!(
        fleet["data"]["fleet"]["source"]["lagSeconds"]
            .as_f64()
            .unwrap()
            >= 0.0
    );
    let replica = eventually("/ready shows the read replica", || async {
        let r = ready(&node).await;
        let replica = r["components"]["replication"]["read_replica"].clone();
        (replica["connected"] == true, r)
    })
    .await;
    assert!(
        !replica.to_string().contains("error"),
        "no error text in /ready: {replica}"
    );

    // The primary dies; the node goes on; the standby is promoted.
    drop(central);
    primary.stop();
    let killed_at = chrono::Utc::now();
    let killed = Instant::now();
    raise_alerts(&node, 100, 100).await;
    resolve(&node, &[3, 150, 199]).await;
    standby.promote().await;
    let failover = killed.elapsed();
    let resumed = resumed_after(&node, "postgres", killed_at).await;
    eprintln!(
        "postgres failover: the standby took writes {failover:?} after the primary's death; replication resumed {resumed:?} after it"
    );

    let central = standby.local().await;
    converged(&node, &central).await;
    let alerts = central_alerts(&central, &node.app.node_id().to_string()).await;
    assert_eq!(alerts.len(), 200);
    assert_eq!(alerts[&150].0, "resolved");
    // Nothing was lost, so nothing had to be sent again.
    assert_eq!(resends(&node, "postgres").await, 0);
    node.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_an_asynchronous_standby_that_missed_batches_is_repaired() {
    // Asynchronous replication (the default): the standby is down while the
    // primary confirms more batches, then the primary dies and the stale
    // standby is promoted. The sink finds the database behind what it had
    // confirmed and sends the node's state again.
    let primary = Cluster::start_new("");
    let standby = primary.standby();
    let ca = primary.ca();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = node_config(dir.path());
    cfg.services.database_url = Some(Secret::new(format!(
        "postgres://postgres@localhost:{},localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        primary.port,
        standby.port,
        ca.display()
    )));
    let node = Node::start(cfg).await;
    let node_id = node.app.node_id().to_string();
    raise_alerts(&node, 0, 50).await;
    converged(&node, &primary.local().await).await;
    let replica = standby.local().await;
    eventually("the standby replayed the first 50", || async {
        let n = central_alerts(&replica, &node_id).await.len();
        (n == 50, n)
    })
    .await;
    drop(replica);

    standby.stop();
    raise_alerts(&node, 50, 50).await;
    resolve(&node, &[7, 70]).await;
    converged(&node, &primary.local().await).await;
    primary.stop();
    standby.start();
    standby.promote().await;

    let central = standby.local().await;
    converged(&node, &central).await;
    let alerts = central_alerts(&central, &node_id).await;
    assert_eq!(alerts.len(), 100);
    assert_eq!(alerts[&7].0, "resolved");
    assert_eq!(alerts[&70].0, "resolved");
    assert_eq!(resends(&node, "postgres").await, 1);
    node.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_lost_confirmed_writes_gets_the_node_state_again() {
    // As after a failover to an asynchronous standby or replica that had
    // not received the last batches, a restore from an older backup, or a
    // Redis restarted without persistence.
    let db = TestDb::create();
    let prefix = format!("secmon-test-{}", ulid::Ulid::generate());
    let _cleanup = RedisKeys(prefix.clone());
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(both_sinks(dir.path(), &db, &prefix)).await;
    let central = pg(&db.url()).await;
    let redis = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let stream_key = format!("{prefix}:alerts");
    raise_alerts(&node, 0, 50).await;
    converged(&node, &central).await;
    eventually("50 alerts in the stream", || {
        let mut conn = conn.clone();
        let key = stream_key.clone();
        async move {
            let n = stream_alerts(&mut conn, &key).await.len();
            (n == 50, n)
        }
    })
    .await;

    let node_id = node.app.node_id().to_string();
    central
        .batch_execute(&format!(
            "DELETE FROM secmon.alerts WHERE node_id = '{node_id}' AND alert_id > 20;
             DELETE FROM secmon.event_rollups WHERE node_id = '{node_id}';
             UPDATE secmon.node_outbox SET applied_seq = 3 WHERE node_id = '{node_id}';"
        ))
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&stream_key)
        .arg(format!("{prefix}:applied:{node_id}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    raise_alerts(&node, 50, 1).await;

    converged(&node, &central).await;
    assert_eq!(central_alerts(&central, &node_id).await.len(), 51);
    let messages = eventually("the stream holds the node's state again", || {
        let mut conn = conn.clone();
        let key = stream_key.clone();
        async move {
            let messages = stream_alerts(&mut conn, &key).await;
            (messages.len() >= 51, messages)
        }
    })
    .await;
    assert_eq!(exactly_once(&messages), node_alerts(&node).await);
    for sink in ["postgres", "redis"] {
        assert_eq!(resends(&node, sink).await, 1, "{sink}");
    }
    node.app.stop().await;
}

// ------------------------------------------------------------------- Redis

/// Deletes every key under a prefix of the shared Redis at the end.
struct RedisKeys(String);

impl Drop for RedisKeys {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open("redis://127.0.0.1:6379") else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.0))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// The alert messages of a stream, oldest first.
async fn stream_alerts(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<Value> {
    let reply: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap_or_default();
    reply
        .into_iter()
        .flat_map(|(_, fields)| fields)
        .filter(|(f, _)| f == "alert")
        .map(|(_, v)| serde_json::from_str(&v).unwrap())
        .collect()
}

/// A redis-server of the test's own, TLS only (a certificate for localhost
/// from `secmon init`'s CA), persisting every write (AOF, fsync always), so
/// a SIGKILL loses nothing it acknowledged.
struct RedisServer {
    dir: tempfile::TempDir,
    pki: secmon::tls::DevPki,
    port: u16,
    /// More arguments (replication, credentials).
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// A server with a PKI of its own (in its directory).
    fn start_new() -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let pki = secmon::tls::generate_dev_pki(&dir.path().join("pki"), &[], false).unwrap();
        RedisServer::start_in(dir, pki, &[])
    }

    /// A server with the certificate of `pki` (kept by the caller) and
    /// `extra` arguments.
    fn start_with(pki: secmon::tls::DevPki, extra: &[String]) -> RedisServer {
        RedisServer::start_in(tempfile::tempdir().unwrap(), pki, extra)
    }

    fn start_in(dir: tempfile::TempDir, pki: secmon::tls::DevPki, extra: &[String]) -> RedisServer {
        let mut server = RedisServer {
            dir,
            pki,
            port: free_port(),
            extra: extra.to_vec(),
            child: None,
        };
        server.start();
        server
    }

    fn start(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &self.port.to_string()])
            .args(&self.extra)
            .args(["--bind", "127.0.0.1", "--tls-auth-clients", "no"])
            .arg("--tls-cert-file")
            .arg(&self.pki.server_cert)
            .arg("--tls-key-file")
            .arg(&self.pki.server_key)
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.child = Some(child);
        wait_for_port(self.port);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("rediss://localhost:{}", self.port)
    }

    /// A client that trusts the server's CA.
    fn client(&self) -> redis::Client {
        redis::Client::build_with_tls(
            self.url(),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(&self.pki.ca_cert).unwrap()),
            },
        )
        .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} did not open");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const REDIS_PASSWORD: &str = "s3ntinel-test-pw";
const MASTER_NAME: &str = "mymaster";

/// A Redis master with two replicas watched by three Sentinels, all over
/// TLS (one CA) and with a password, as a site runs it.
struct SentinelSite {
    servers: Vec<RedisServer>,
    sentinels: Vec<Child>,
    sentinel_ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl SentinelSite {
    fn start() -> SentinelSite {
        let dir = tempfile::tempdir().unwrap();
        let pki = secmon::tls::generate_dev_pki(&dir.path().join("pki"), &[], false).unwrap();
        let tls = |pki: &secmon::tls::DevPki| -> Vec<String> {
            [
                "--tls-ca-cert-file",
                pki.ca_cert.to_str().unwrap(),
                "--tls-replication",
                "yes",
                "--requirepass",
                REDIS_PASSWORD,
                "--masterauth",
                REDIS_PASSWORD,
            ]
            .map(str::to_owned)
            .to_vec()
        };
        let master = RedisServer::start_with(pki.clone(), &tls(&pki));
        let mut replica_args = tls(&pki);
        replica_args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            master.port.to_string(),
        ]);
        let replicas: Vec<RedisServer> = (0..2)
            .map(|_| RedisServer::start_with(pki.clone(), &replica_args))
            .collect();
        let mut site = SentinelSite {
            sentinel_ports: Vec::new(),
            sentinels: Vec::new(),
            servers: std::iter::once(master).chain(replicas).collect(),
            _dir: dir,
        };
        for i in 0..3 {
            let port = free_port();
            let conf = site._dir.path().join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port 0\ntls-port {port}\nbind 127.0.0.1\n\
                     tls-cert-file {cert}\ntls-key-file {key}\ntls-ca-cert-file {ca}\n\
                     tls-auth-clients no\ntls-replication yes\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
                     sentinel auth-pass {MASTER_NAME} {REDIS_PASSWORD}\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 10000\n\
                     sentinel parallel-syncs {MASTER_NAME} 2\n",
                    cert = pki.server_cert.display(),
                    key = pki.server_key.display(),
                    ca = pki.ca_cert.display(),
                    master = site.servers[0].port,
                ),
            )
            .unwrap();
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server --sentinel runs");
            wait_for_port(port);
            site.sentinels.push(child);
            site.sentinel_ports.push(port);
        }
        site
    }

    fn pki(&self) -> &secmon::tls::DevPki {
        &self.servers[0].pki
    }

    fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinel_ports
            .iter()
            .map(|p| format!("localhost:{p}"))
            .collect();
        format!(
            "rediss+sentinel://:{REDIS_PASSWORD}@{}/{MASTER_NAME}",
            sentinels.join(",")
        )
    }

    /// A connection to a server or Sentinel on `port`.
    async fn connect(
        &self,
        port: u16,
        password: bool,
    ) -> Option<redis::aio::MultiplexedConnection> {
        let auth = if password {
            format!(":{REDIS_PASSWORD}@")
        } else {
            String::new()
        };
        let client = redis::Client::build_with_tls(
            format!("rediss://{auth}localhost:{port}"),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(&self.pki().ca_cert).unwrap()),
            },
        )
        .unwrap();
        client.get_multiplexed_async_connection().await.ok()
    }

    /// What the first Sentinel says: (master port, replicas, other Sentinels).
    async fn view(&self) -> Option<(u16, usize, usize)> {
        let mut conn = self.connect(self.sentinel_ports[0], false).await?;
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(MASTER_NAME)
            .query_async(&mut conn)
            .await
            .ok()?;
        let count = |what: &'static str| {
            let mut conn = conn.clone();
            async move {
                redis::cmd("SENTINEL")
                    .arg(what)
                    .arg(MASTER_NAME)
                    .query_async::<Vec<redis::Value>>(&mut conn)
                    .await
                    .map_or(0, |v| v.len())
            }
        };
        Some((port, count("REPLICAS").await, count("SENTINELS").await))
    }

    /// The alert messages of the stream on the current master.
    async fn stream(&self) -> Vec<Value> {
        let Some((port, _, _)) = self.view().await else {
            return Vec::new();
        };
        match self.connect(port, true).await {
            Some(mut conn) => stream_alerts(&mut conn, "secmon:alerts").await,
            None => Vec::new(),
        }
    }
}

impl Drop for SentinelSite {
    fn drop(&mut self) {
        for child in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Each (alert, version) once; the newest message of each alert.
fn exactly_once(messages: &[Value]) -> BTreeMap<i64, (String, i64)> {
    let mut seen = HashSet::new();
    let mut newest = BTreeMap::new();
    for m in messages {
        let id = m["alert_id"].as_i64().unwrap();
        assert!(
            seen.insert((id, m["version"].as_u64().unwrap())),
            "duplicate {m}"
        );
        newest.insert(
            id,
            (
                m["status"].as_str().unwrap().to_owned(),
                m["count"].as_i64().unwrap(),
            ),
        );
    }
    newest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel_failover_the_sink_follows_the_new_master_exactly_once() {
    let site = SentinelSite::start();
    eventually("the Sentinels see both replicas and each other", || async {
        let view = site.view().await;
        (
            view.is_some_and(|(_, replicas, others)| replicas == 2 && others == 2),
            view,
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = node_config(dir.path());
    cfg.services.redis_url = Some(Secret::new(site.url()));
    cfg.replication.redis_ca_path = Some(site.pki().ca_cert.clone());
    // A batch counts once a replica has it: the failover loses nothing.
    cfg.replication.redis_min_replicas = 1;
    let node = Node::start(cfg).await;
    raise_alerts(&node, 0, 100).await;
    eventually("100 alerts in the master's stream", || async {
        let n = site.stream().await.len();
        (n == 100, n)
    })
    .await;

    // The master dies; the node goes on; the Sentinels elect a replica.
    let old_master = site.servers[0].port;
    let mut site = site;
    site.servers[0].kill();
    let killed_at = chrono::Utc::now();
    let killed = Instant::now();
    raise_alerts(&node, 100, 100).await;
    let v = node
        .graphql(
            "mutation { setAlertsStatus(ids: [\"1\", \"2\", \"150\"], status: ACKNOWLEDGED) { id } }",
            json!({}),
        )
        .await;
    assert!(v["errors"].is_null(), "{v}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut failover, mut resumed) = (None, None);
    while failover.is_none() || resumed.is_none() {
        assert!(
            Instant::now() < deadline,
            "no failover or no resumption: {failover:?} {resumed:?}"
        );
        if failover.is_none()
            && site
                .view()
                .await
                .is_some_and(|(port, _, _)| port != old_master)
        {
            failover = Some(killed.elapsed());
        }
        resumed = last_success(&node, "redis")
            .await
            .filter(|at| *at > killed_at);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (failover, resumed) = (failover.unwrap(), resumed.unwrap());
    let resumed = (resumed - killed_at).to_std().unwrap_or_default();
    eprintln!(
        "redis sentinel failover: the new master was named {failover:?} after the master's death; the sink resumed {resumed:?} after it"
    );

    let messages = eventually("every update in the new master's stream", || async {
        let messages = site.stream().await;
        (messages.len() >= 203, messages)
    })
    .await;
    assert_eq!(messages.len(), 203, "200 alerts and 3 acknowledgements");
    assert_eq!(exactly_once(&messages), node_alerts(&node).await);
    assert_eq!(resends(&node, "redis").await, 0);
    node.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_killed_mid_stream_gets_every_update_once_when_it_returns() {
    let mut server = RedisServer::start_new();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = node_config(dir.path());
    cfg.services.redis_url = Some(Secret::new(server.url()));
    cfg.replication.redis_ca_path = Some(server.pki.ca_cert.clone());
    let node = Node::start(cfg).await;
    let client = server.client();
    let stream = |client: redis::Client| async move {
        match client.get_multiplexed_async_connection().await {
            Ok(mut conn) => stream_alerts(&mut conn, "secmon:alerts").await,
            Err(_) => Vec::new(),
        }
    };

    raise_alerts(&node, 0, 100).await;
    eventually("100 alerts in the stream", || async {
        let n = stream(client.clone()).await.len();
        (n == 100, n)
    })
    .await;

    server.kill();
    raise_alerts(&node, 100, 100).await;
    let v = node
        .graphql(
            "mutation { setAlertsStatus(ids: [\"1\", \"2\", \"150\"], status: ACKNOWLEDGED) { id } }",
            json!({}),
        )
        .await;
    assert!(v["errors"].is_null(), "{v}");
    eventually("the redis sink notices", || async {
        let r = ready(&node).await;
        let sink = r["components"]["replication"]["sinks"]["redis"].clone();
        (
            sink["connected"] == false && sink["lag_entries"].as_u64() > Some(0),
            r,
        )
    })
    .await;

    server.start();
    let messages = eventually("every update in the stream", || async {
        let messages = stream(client.clone()).await;
        (messages.len() >= 203, messages)
    })
    .await;
    // No duplicates: each (alert, version) once; no gaps: each alert's
    // newest message is what the node holds.
    assert_eq!(messages.len(), 203, "200 alerts and 3 acknowledgements");
    assert_eq!(exactly_once(&messages), node_alerts(&node).await);
    node.app.stop().await;
}

// --------------------------------------------------------- Two nodes, one site

/// HAProxy with the site configuration the repository ships
/// (deploy/haproxy/secmon-site.cfg) in front of two nodes' syslog TCP.
struct Haproxy(Child);

impl Haproxy {
    fn start(bind: u16, a: std::net::SocketAddr, b: std::net::SocketAddr) -> Haproxy {
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/haproxy/secmon-site.cfg"))
            .env("SECMON_SYSLOG_BIND", format!("127.0.0.1:{bind}"))
            .env("SECMON_NODE_A", a.to_string())
            .env("SECMON_NODE_B", b.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("haproxy runs (scripts/test.sh installs it)");
        wait_for_port(bind);
        Haproxy(child)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Host `h` of the site: sends from 127.0.0.(10 + h), as itself.
fn host_addr(h: u8) -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, 10 + h])
}

/// Host `h` sends `n` sshd failures from `attacker` over one connection to
/// `port`, and closes it.
async fn send_failures(port: u16, h: u8, attacker: &str, n: usize) {
    send_failures_from(host_addr(h), port, h, attacker, n).await;
}

async fn send_failures_from(from: std::net::IpAddr, port: u16, h: u8, attacker: &str, n: usize) {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::new(from, 0)).unwrap();
    let mut stream = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap();
    let time = chrono::Utc::now().format("%b %e %H:%M:%S");
    let lines: String = (0..n)
        .map(|i| {
            format!(
                "<38>{time} host-{h} sshd[{}]: Failed password for root from {attacker} port {} ssh2\n",
                1000 + i,
                40000 + i
            )
        })
        .collect();
    stream.write_all(lines.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
}

/// The source addresses of a node's SSH brute-force alerts.
async fn brute_forced(node: &Node) -> Vec<String> {
    let v = node
        .graphql(
            "{ alerts(first: 1000) { edges { node { ruleTitle sourceIp } } } }",
            json!({}),
        )
        .await;
    let mut ips: Vec<String> = v["data"]["alerts"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|e| &e["node"])
        .filter(|n| n["ruleTitle"] == "SSH Brute Force From Single Source")
        .map(|n| n["sourceIp"].as_str().unwrap().to_owned())
        .collect();
    ips.sort();
    ips
}

/// Events of `host-h` a node holds, and the address they came from.
async fn host_events(node: &Node, h: u8) -> (i64, Option<String>) {
    let v = node
        .graphql(
            "query($q: String) { events(query: $q, first: 1) { totalCount edges { node { hostIp } } } }",
            json!({ "q": format!("host.name:\"host-{h}\"") }),
        )
        .await;
    let events = &v["data"]["events"];
    (
        events["totalCount"]
            .as_i64()
            .unwrap_or_else(|| panic!("{v}")),
        events["edges"][0]["node"]["hostIp"]
            .as_str()
            .map(str::to_owned),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_per_site_each_sender_pinned_to_one_node_both_in_the_fleet_view() {
    const HOSTS: u8 = 16;
    let db = TestDb::create();
    let start = |dir: PathBuf, name: &'static str| {
        // The built-in rules: SSH brute force is >= 6 failures in a minute
        // from one address, counted by the node that receives them.
        let mut cfg = common::config(&dir);
        cfg.node_name = Some(name.into());
        cfg.ports.syslog_tcp = Some(0);
        // HAProxy (on 127.0.0.1) names each sender in a PROXY header; the
        // site's hosts are 127.0.0.0/27, 127.0.0.40 is not one of them.
        let listener = &mut cfg.exposure.listeners.syslog_tcp;
        listener.proxy_protocol_from = vec![Cidr::try_from("127.0.0.1/32".to_owned()).unwrap()];
        listener.allow_sources = vec![Cidr::try_from("127.0.0.0/27".to_owned()).unwrap()];
        cfg.services.database_url = Some(Secret::new(db.url()));
        cfg.replication.heartbeat_interval_seconds = 1;
        cfg.replication.retry_initial_ms = 50;
        cfg.replication.retry_max_seconds = 1;
        Node::start(cfg)
    };
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = tokio::join!(
        start(a_dir.path().to_owned(), "site-a"),
        start(b_dir.path().to_owned(), "site-b")
    );
    let port = free_port();
    let _lb = Haproxy::start(
        port,
        a.app.addrs().syslog_tcp.unwrap(),
        b.app.addrs().syslog_tcp.unwrap(),
    );
    // Its first health checks pass within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Each host is attacked by an address of its own, six times.
    let attacker = |h: u8| format!("198.51.100.{h}");
    for h in 0..HOSTS {
        send_failures(port, h, &attacker(h), 6).await;
    }
    let total = usize::from(HOSTS);
    let (on_a, on_b) = eventually("every attack raised on one node", || async {
        let (on_a, on_b) = (brute_forced(&a).await, brute_forced(&b).await);
        (on_a.len() + on_b.len() == total, (on_a, on_b))
    })
    .await;
    assert!(
        !on_a.is_empty() && !on_b.is_empty(),
        "both nodes take senders: {on_a:?} {on_b:?}"
    );
    let mut all: Vec<String> = on_a.iter().chain(&on_b).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), total, "each attack once: {on_a:?} {on_b:?}");
    // Every line of a host is on the node that raised its alert, from the
    // host's own address (not HAProxy's).
    for h in 0..HOSTS {
        let (home, other) = if on_a.contains(&attacker(h)) {
            (&a, &b)
        } else {
            (&b, &a)
        };
        let want = ((6, Some(host_addr(h).to_string())), (0, None));
        eventually("the host's lines indexed", || async {
            let seen = (host_events(home, h).await, host_events(other, h).await);
            (seen == want, seen)
        })
        .await;
    }
    // A sender outside allow_sources is refused behind the balancer too.
    let stranger = std::net::IpAddr::from([127, 0, 0, 40]);
    send_failures_from(stranger, port, 99, "198.51.100.99", 6).await;
    eventually("the stranger's lines refused", || async {
        let metrics = (a.metrics().await, b.metrics().await);
        let rejected =
            |m: &str| m.contains("secmon_events_rejected_total{source=\"syslog_tcp\"} 1");
        (rejected(&metrics.0) || rejected(&metrics.1), ())
    })
    .await;
    assert_eq!(host_events(&a, 99).await.0 + host_events(&b, 99).await.0, 0);

    // The analyst sees both nodes and all their alerts in the fleet view.
    eventually("both nodes and every attack in the fleet view", || async {
        let v = a
            .graphql(
                "{ fleet { nodes { hostname status } alerts(limit: 1000) { ruleTitle sourceIp } } }",
                json!({}),
            )
            .await;
        let mut hosts: Vec<String> = v["data"]["fleet"]["nodes"]
            .as_array()
            .map(|n| n.iter().map(|n| n["hostname"].as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        hosts.sort();
        let mut attacks: Vec<String> = v["data"]["fleet"]["alerts"]
            .as_array()
            .map(|alerts| {
                alerts
                    .iter()
                    .filter(|x| x["ruleTitle"] == "SSH Brute Force From Single Source")
                    .map(|x| x["sourceIp"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        attacks.sort();
        (hosts == ["site-a", "site-b"] && attacks == all, v)
    })
    .await;

    // Node B fails mid-attack: a host pinned to it has sent three failures;
    // HAProxy moves it to A, which counts from zero (B's windows are lost).
    let h = (0..HOSTS).find(|h| on_b.contains(&attacker(*h))).unwrap();
    let slow = "198.51.100.200";
    send_failures(port, h, slow, 3).await;
    eventually("B has the first three", || async {
        let n = host_events(&b, h).await.0;
        (n == 9, n)
    })
    .await;
    b.app.stop().await;
    tokio::time::sleep(Duration::from_millis(2500)).await; // two failed checks
    send_failures(port, h, slow, 3).await;
    eventually("A takes the host's lines", || async {
        let n = host_events(&a, h).await.0;
        (n == 3, n)
    })
    .await;
    assert!(
        !brute_forced(&a).await.contains(&slow.to_owned()),
        "three on each node: no alert (the documented loss)"
    );
    send_failures(port, h, slow, 3).await;
    eventually("A raises it once it has seen six", || async {
        let ips = brute_forced(&a).await;
        (ips.contains(&slow.to_owned()), ips)
    })
    .await;
    a.app.stop().await;
}

// ------------------------------------------------------------ fleet search

const FLEET_KEY: &str = "fleet-credential-of-the-test-fleet-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_search_asks_every_node_and_says_which_did_not_answer() {
    let db = TestDb::create();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // Three different ports (each held until all are chosen), published as
    // the nodes' API URLs before they start.
    let ports: Vec<u16> = {
        let held: Vec<_> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        held.iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect()
    };
    let start = |dir: &Path, name: &str, port: u16| {
        let mut cfg = node_config(dir);
        cfg.node_name = Some(name.to_owned());
        cfg.services.database_url = Some(Secret::new(db.url()));
        cfg.auth.fleet_api_key = Some(Secret::new(FLEET_KEY));
        cfg.ports.graphql = port;
        cfg.fleet.api_url = Some(format!("http://127.0.0.1:{}", cfg.ports.graphql));
        cfg.fleet.search_timeout_ms = 1000;
        Node::start(cfg)
    };
    let (a, b, c) = tokio::join!(
        start(dirs[0].path(), "edge-a", ports[0]),
        start(dirs[1].path(), "edge-b", ports[1]),
        start(dirs[2].path(), "edge-c", ports[2])
    );
    // Node n's events are n seconds apart from the others': merged newest
    // first they interleave.
    for (n, (node, count)) in [(&a, 30), (&b, 20), (&c, 10)].into_iter().enumerate() {
        let body: String = (0..count)
            .map(|i| {
                let at = chrono::DateTime::from_timestamp(1_780_000_000 + i * 10 + n as i64, 0).unwrap();
                format!(
                    "{}\n",
                    json!({"message": format!("fleet-search {n} {i}"), "host.name": format!("edge-{n}"),
                           "@timestamp": at.to_rfc3339()})
                )
            })
            .collect();
        let (status, resp) = node.ingest(body).await;
        assert_eq!(status, 200, "{resp}");
        node.wait_indexed().await;
    }
    // A node that takes the connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(8).collect();
        std::thread::sleep(Duration::from_secs(60));
        drop(held);
    });
    let central = pg(&db.url()).await;
    central
        .execute(
            "INSERT INTO secmon.nodes (node_id, hostname, version, started_at, last_seen,
                 uptime_seconds, events_total, events_per_second, storage_bytes, index_lag,
                 outbox_entries, heartbeat_interval_seconds, heartbeat_seq, api_url)
             VALUES ('silent', 'edge-silent', '0', now(), now() + interval '1 hour',
                 0, 0, 0, 0, 0, 0, 30, 1, $1)",
            &[&format!("http://127.0.0.1:{silent_port}")],
        )
        .await
        .unwrap();
    eventually("every node's API URL in the fleet view", || async {
        let v = a
            .graphql("{ fleet { nodes { hostname apiUrl } } }", json!({}))
            .await;
        let urls = v["data"]["fleet"]["nodes"]
            .as_array()
            .map_or(0, |n| n.iter().filter(|n| n["apiUrl"].is_string()).count());
        (urls == 4, v)
    })
    .await;

    let search = "{ fleet { events(query: \"fleet-search\", first: 25) {
        totalCount partial
        events { nodeId hostname event { timestamp message } }
        nodes { hostname status totalCount tookMs error } } } }";
    let statuses = |v: &Value| -> BTreeMap<String, String> {
        v["data"]["fleet"]["events"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["hostname"].as_str().unwrap().to_owned(),
                    n["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let v = a.graphql(search, json!({})).await;
    let found = &v["data"]["fleet"]["events"];
    assert_eq!(found["totalCount"], 60, "{v}");
    assert_eq!(found["partial"], true, "{v}");
    assert_eq!(
        statuses(&v),
        BTreeMap::from([
            ("edge-a".into(), "OK".into()),
            ("edge-b".into(), "OK".into()),
            ("edge-c".into(), "OK".into()),
            ("edge-silent".into(), "TIMEOUT".into()),
        ])
    );
    let events = found["events"].as_array().unwrap();
    assert_eq!(events.len(), 25);
    let times: Vec<&str> = events
        .iter()
        .map(|e| e["event"]["timestamp"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let messages: Vec<&str> = events
        .iter()
        .map(|e| e["event"]["message"].as_str().unwrap())
        .collect();
    // The newest: node a's last ten stand alone, then a and b interleave.
    assert_eq!(messages[..2], ["fleet-search 0 29", "fleet-search 0 28"]);
    assert_eq!(
        messages[10..13],
        [
            "fleet-search 1 19",
            "fleet-search 0 19",
            "fleet-search 1 18"
        ]
    );

    let stats = a
        .graphql(
            "{ fleet { eventStats(query: \"fleet-search\", groupBy: \"host.name\") {
                buckets { key count } partial } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        stats["data"]["fleet"]["eventStats"]["buckets"],
        json!([{"key": "edge-0", "count": 30}, {"key": "edge-1", "count": 20}, {"key": "edge-2", "count": 10}]),
        "{stats}"
    );

    // One node stopped: its part is missing and it says so.
    c.app.stop().await;
    let v = a.graphql(search, json!({})).await;
    assert_eq!(v["data"]["fleet"]["events"]["totalCount"], 50, "{v}");
    assert_eq!(statuses(&v)["edge-c"], "OFFLINE", "{v}");
    assert_eq!(statuses(&v)["edge-b"], "OK", "{v}");

    // The fleet credential reads one node, never the fleet (no loops).
    let fleet = common::bearer_client(FLEET_KEY);
    let ask = |query: &'static str| {
        let fleet = fleet.clone();
        let url = b.api("/graphql");
        async move {
            fleet
                .post(url)
                .json(&json!({"query": query}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let own = ask("{ events(query: \"fleet-search\", first: 1) { totalCount } }").await;
    assert_eq!(own["data"]["events"]["totalCount"], 20, "{own}");
    let loop_ = ask("{ fleet { nodes { id } } }").await;
    assert_eq!(
        loop_["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{loop_}"
    );
    let write = ask("mutation { createApiKey(name: \"x\", role: VIEWER) { key } }").await;
    assert!(write["errors"].is_array(), "a reader only: {write}");
    a.app.stop().await;
    b.app.stop().await;
}
