//! Builds the pipeline, spawns its tasks and threads, and owns shutdown.
//!
//! Start order: health listener (so `/ready` answers 503 while opening),
//! store, index and indexer, writer, API and metrics listeners. Shutdown
//! order: listeners stop accepting and finish in-flight requests; that drops
//! the last writer handle, so the writer drains its queue and stops; the
//! indexer then indexes what was committed last, commits, and stops.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use ulid::Ulid;

use crate::api::{self, ApiState, guard};
use crate::auth::{Auth, CanIngest};
use crate::config::{Config, Secret};
use crate::detect::catalog::{Catalog, RuleInfo};
use crate::ingest;
use crate::store::index::EventIndex;
use crate::store::indexer::{self, IndexerConfig, Progress};
use crate::store::live::Live;
use crate::store::{self, Store, writer};
use crate::telemetry;
use crate::{notify, replicate};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot listen on {addr} for {service}: {source} (is another process using the port? set {var})"
    )]
    Bind {
        service: &'static str,
        var: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Index(#[from] store::index::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(String),
    #[error("detection: {0}")]
    Detection(String),
    #[error("accounts: {0}")]
    Auth(String),
    #[error("replication: {0}")]
    Replication(#[from] replicate::Error),
    #[error("fleet search: {0}")]
    Fleet(String),
    #[error("export: {0}")]
    Export(#[from] crate::export::Error),
    #[error(transparent)]
    Notify(#[from] notify::Error),
    #[error("response: {0}")]
    Respond(#[from] crate::respond::Error),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// The addresses the listeners actually bound (ports may have been 0).
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub graphql: SocketAddr,
    pub websocket: SocketAddr,
    pub metrics: SocketAddr,
    pub health: SocketAddr,
    pub syslog_udp: Option<SocketAddr>,
    pub syslog_tcp: Option<SocketAddr>,
    pub syslog_tls: Option<SocketAddr>,
    pub gelf_udp: Option<SocketAddr>,
    pub gelf_tcp: Option<SocketAddr>,
}

/// A running secmon node.
pub struct App {
    addrs: Addrs,
    node_id: Ulid,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl App {
    /// Starts every component; returns once all listeners are bound and the
    /// store is open (the index may still be catching up).
    pub async fn start(config: Config) -> Result<App, Error> {
        let started = Instant::now();
        crate::install_crypto_provider();
        let prometheus = telemetry::prometheus().map_err(|e| Error::Metrics(e.to_string()))?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let ip = config.bind_address;

        let health_listener = bind(
            "health",
            "HEALTH_PORT",
            SocketAddr::new(ip, config.ports.health),
        )?;
        let graphql_listener = bind(
            "graphql",
            "GRAPHQL_PORT",
            SocketAddr::new(ip, config.ports.graphql),
        )?;
        let websocket_listener = bind(
            "websocket",
            "WEBSOCKET_PORT",
            SocketAddr::new(ip, config.ports.websocket),
        )?;
        let metrics_listener = bind(
            "metrics",
            "METRICS_PORT",
            SocketAddr::new(ip, config.ports.metrics),
        )?;
        let ports = &config.ports;
        let syslog_udp = ports
            .syslog_udp
            .map(|port| bind_udp("syslog_udp", "SYSLOG_UDP_PORT", SocketAddr::new(ip, port)))
            .transpose()?;
        let syslog_tcp = ports
            .syslog_tcp
            .map(|port| bind("syslog_tcp", "SYSLOG_TCP_PORT", SocketAddr::new(ip, port)))
            .transpose()?;
        let gelf_udp = ports
            .gelf_udp
            .map(|port| bind_udp("gelf_udp", "GELF_UDP_PORT", SocketAddr::new(ip, port)))
            .transpose()?;
        let gelf_tcp = ports
            .gelf_tcp
            .map(|port| bind("gelf_tcp", "GELF_TCP_PORT", SocketAddr::new(ip, port)))
            .transpose()?;
        // TLS syslog needs the server certificate: only with TLS enabled.
        let syslog_tls = match ports.syslog_tls {
            Some(port) if config.tls.enabled => Some(bind(
                "syslog_tls",
                "SYSLOG_TLS_PORT",
                SocketAddr::new(ip, port),
            )?),
            Some(_) => {
                tracing::info!("syslog over TLS is off: it needs tls.enabled and a certificate");
                None
            }
            None => None,
        };
        let addrs = Addrs {
            graphql: local_addr(&graphql_listener)?,
            websocket: local_addr(&websocket_listener)?,
            metrics: local_addr(&metrics_listener)?,
            health: local_addr(&health_listener)?,
            syslog_udp: syslog_udp.as_ref().map(local_udp_addr).transpose()?,
            syslog_tcp: syslog_tcp.as_ref().map(local_addr).transpose()?,
            syslog_tls: syslog_tls.as_ref().map(local_addr).transpose()?,
            gelf_udp: gelf_udp.as_ref().map(local_udp_addr).transpose()?,
            gelf_tcp: gelf_tcp.as_ref().map(local_addr).transpose()?,
        };

        let (ready_tx, ready_rx) = watch::channel::<Option<Arc<Progress>>>(None);
        let replication = Arc::new(replicate::Status::new(&config));
        let (ready_tx_notify, notify_rx) = watch::channel(None);
        tasks.spawn(serve(
            "health",
            health_listener,
            api::health::router(ready_rx.clone(), replication.clone(), notify_rx)
                .layer(axum::middleware::from_fn(api::catch_panic)),
            None,
            &shutdown,
        ));

        // One certificate for the HTTPS ports and syslog TLS, reloaded on
        // SIGHUP and when its files change.
        let tls = if config.tls.enabled {
            let cfg = config.tls.clone();
            let tls = tokio::task::spawn_blocking(move || crate::tls::ServerTls::load(&cfg))
                .await
                .map_err(|e| Error::Io {
                    what: "loading the TLS certificate".into(),
                    source: std::io::Error::other(e.to_string()),
                })??;
            let tls = Arc::new(tls);
            tasks.spawn(tls.clone().watch(shutdown.clone()));
            Some(tls)
        } else {
            None
        };

        let data_dir = config.data_dir.clone();
        let (store, index, opened, stats) = tokio::task::spawn_blocking(move || {
            let store = Store::open(&data_dir)?;
            let stats = store.stats()?;
            let (index, opened) = EventIndex::open(&data_dir.join("index"))?;
            Ok::<_, Error>((store, index, opened, stats))
        })
        .await
        .map_err(|e| Error::Io {
            what: "opening the store".into(),
            source: std::io::Error::other(e.to_string()),
        })??;
        let jwt_secret = match &config.auth.jwt_secret {
            Some(s) => s.clone(),
            None => dev_jwt_secret(&config.data_dir)?,
        };
        let auth = Arc::new(Auth::new(
            store.clone(),
            jwt_secret.expose().as_bytes(),
            &config.auth,
        ));
        bootstrap_admin(&auth, &config).await?;
        let live = Arc::new(Live::default());

        let index = Arc::new(index);
        let progress = Arc::new(Progress::new(stats.last_seq));
        let indexer_cfg = IndexerConfig {
            commit_interval: Duration::from_millis(config.index.commit_interval_ms),
            commit_max_events: config.index.commit_max_events,
        };
        let indexer_thread = {
            let (store, index, progress) = (store.clone(), index.clone(), progress.clone());
            tokio::task::spawn_blocking(move || {
                indexer::spawn(store, index, opened, progress, indexer_cfg)
            })
            .await
            .map_err(|e| Error::Io {
                what: "starting the indexer".into(),
                source: std::io::Error::other(e.to_string()),
            })??
        };
        // Before the writer: everything it commits goes to the outbox.
        let head = replicate::enable_outbox(&config, &store).await?;
        let fleet = replicate::start(
            &config,
            &store,
            (progress.clone(), head.clone()),
            &replication,
            (&tasks, &shutdown),
        )
        .await?;
        crate::export::start(
            &config,
            &store,
            (&progress, &head),
            &replication,
            (&tasks, &shutdown),
        )
        .await?;
        let notifier =
            notify::start(&config, &store, &head, &replication, (&tasks, &shutdown)).await?;
        ready_tx_notify.send_replace(Some(notifier.clone()));
        let firewall =
            crate::respond::start(&config, &store, &head, &replication, (&tasks, &shutdown))
                .await?;

        let (detection, loaded_rules) = if config.detection.enabled {
            let (cfg, store) = (config.detection.clone(), store.clone());
            let (detection, loaded) =
                tokio::task::spawn_blocking(move || load_detection(&cfg, &store))
                    .await
                    .map_err(|e| Error::Detection(e.to_string()))??;
            (Some(detection), loaded)
        } else {
            (None, Vec::new())
        };
        let rules = Arc::new(Catalog::new(config.detection.clone(), loaded_rules));
        let (writer, writer_thread) = writer::spawn_bounded(
            store.clone(),
            (config.ingest.queue_capacity, config.ingest.queue_max_bytes),
            config.ingest.batch_max_events,
            progress.clone(),
            live.clone(),
            detection,
        )
        .map_err(io_err("starting the writer"))?;
        let writer = writer.with_api_trusted(config.ingest.api_trusted);

        if config.detection.enabled {
            tasks.spawn(watch_rules(
                store.clone(),
                rules.clone(),
                writer.clone(),
                shutdown.clone(),
            ));
        }

        let parse = crate::parse::ParseOptions {
            max_message_bytes: config.ingest.max_message_bytes,
            ..Default::default()
        };
        let listeners = &config.exposure.listeners;
        // Client certificates make syslog TLS senders known (source trust).
        let client_certs = tls.is_some() && config.tls.syslog_client_ca_path.is_some();
        let listener = |source, cfg: &crate::config::SyslogListener| {
            let transport = ingest::Transport::of(source, client_certs);
            let trusted = ingest::listener_trusted(cfg, transport);
            tracing::info!(source, trusted, "ingest listener source trust");
            Arc::new(ingest::Listener::new(
                writer.clone(),
                parse.clone(),
                (cfg.allow_sources.clone(), cfg.proxy_protocol_from.clone()),
                source,
                trusted,
                config.ingest.connections.clone(),
            ))
        };
        for (socket, source, allow) in [
            (syslog_udp, "syslog_udp", &listeners.syslog_udp),
            (gelf_udp, "gelf_udp", &listeners.gelf_udp),
        ] {
            let Some(socket) = socket else { continue };
            let socket = tokio_udp(socket)?;
            let listener = listener(source, allow);
            if source == "gelf_udp" {
                tasks.spawn(ingest::gelf::serve_udp(socket, listener, shutdown.clone()));
            } else {
                tasks.spawn(ingest::syslog::serve_udp(
                    socket,
                    listener,
                    shutdown.clone(),
                ));
            }
        }
        for (tcp, tls_acceptor, source, allow) in [
            (syslog_tcp, None, "syslog_tcp", &listeners.syslog_tcp),
            (
                syslog_tls,
                tls.as_ref().map(|t| t.syslog()),
                "syslog_tls",
                &listeners.syslog_tls,
            ),
        ] {
            let Some(tcp) = tcp else { continue };
            tasks.spawn(ingest::syslog::serve_tcp(
                tokio_tcp(tcp)?,
                tls_acceptor,
                listener(source, allow),
                shutdown.clone(),
                tasks.clone(),
            ));
        }
        if let Some(tcp) = gelf_tcp {
            tasks.spawn(ingest::gelf::serve_tcp(
                tokio_tcp(tcp)?,
                listener("gelf_tcp", &listeners.gelf_tcp),
                shutdown.clone(),
                tasks.clone(),
            ));
        }
        if !config.ingest.files.paths.is_empty() {
            tasks.spawn(ingest::file::run(
                ingest::file::FileSource {
                    config: config.ingest.files.clone(),
                    writer: writer.clone(),
                    store: store.clone(),
                    parse: parse.clone(),
                    host_name: node_name(&config),
                },
                shutdown.clone(),
            ));
        }
        if config.ingest.journald.enabled {
            tasks.spawn(ingest::journald::run(
                ingest::journald::JournaldSource {
                    config: config.ingest.journald.clone(),
                    writer: writer.clone(),
                    store: store.clone(),
                    parse: parse.clone(),
                },
                shutdown.clone(),
            ));
        }

        let fanout = match (&fleet, &config.auth.fleet_api_key) {
            (Some(fleet), Some(key)) => Some(Arc::new(
                crate::fanout::FanOut::new(
                    fleet.clone(),
                    key.clone(),
                    &config.fleet,
                    config.environment == crate::config::Environment::Production,
                )
                .map_err(Error::Fleet)?,
            )),
            _ => None,
        };
        let state = Arc::new(ApiState {
            store: store.clone(),
            auth: auth.clone(),
            writer: writer.clone(),
            live,
            index,
            progress: progress.clone(),
            search_cache: Default::default(),
            node_id: store.node_id(),
            environment: config.environment,
            started,
            rules,
            fleet,
            fanout,
            notifier: Some(notifier),
            firewall,
            limits: config.api.clone(),
        });
        let schema = api::graphql::schema(state.clone());
        let console = api::console::router(
            state,
            schema.clone(),
            replication.clone(),
            tls.is_some(),
            shutdown.clone(),
        );
        let ingest_routes = ingest::bulk::router(
            writer.clone(),
            parse.clone(),
            store.node_id(),
            config.ingest.max_body_bytes,
        )
        .merge(ingest::http::router(writer, config.ingest.max_body_bytes))
        .route_layer(axum::middleware::from_fn(guard::require::<CanIngest>));
        let api_router = guarded(
            "api",
            api::graphql::router(
                schema.clone(),
                config.environment,
                config.ingest.max_body_bytes,
            )
            .merge(ingest_routes)
            .merge(console)
            .layer(axum::middleware::from_fn(api::console::browser_root)),
            &auth,
        );
        tasks.spawn(serve(
            "graphql",
            graphql_listener,
            api_router,
            tls.as_ref().map(|t| t.http()),
            &shutdown,
        ));
        tasks.spawn(serve(
            "websocket",
            websocket_listener,
            guarded(
                "websocket",
                api::ws::router(schema, auth.clone(), shutdown.clone()),
                &auth,
            ),
            tls.as_ref().map(|t| t.http()),
            &shutdown,
        ));
        tasks.spawn(forget_idle_limits(auth.clone(), shutdown.clone()));
        tasks.spawn(fold_histograms(prometheus, shutdown.clone()));
        let metrics_router = api::metrics::router(
            prometheus,
            config.auth.metrics_token.clone(),
            auth.clone(),
            ready_rx,
        )
        .layer(axum::middleware::from_fn(api::catch_panic));
        tasks.spawn(serve(
            "metrics",
            metrics_listener,
            metrics_router,
            tls.as_ref().map(|t| t.http()),
            &shutdown,
        ));

        tasks.spawn(store::retention::run(
            store.clone(),
            config.data_dir.clone(),
            (
                config.retention.clone(),
                store::retention::Exported {
                    sinks: crate::export::sink_names(&config),
                    drops: config.export.retention_drops_unexported,
                },
            ),
            progress.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(crate::backup::scheduled(
            auth.clone(),
            config.backup.clone(),
            config.s3.clone(),
            config.data_dir.clone(),
            shutdown.clone(),
        ));
        let control =
            crate::control::bind(&config.data_dir).map_err(io_err("binding the control socket"))?;
        tasks.spawn(crate::control::serve(control, auth, shutdown.clone()));

        ready_tx.send_replace(Some(progress));
        write_ports(&config.data_dir, &addrs)?;
        tracing::info!(
            node_id = %store.node_id(),
            environment = %config.environment,
            graphql = %addrs.graphql,
            websocket = %addrs.websocket,
            metrics = %addrs.metrics,
            health = %addrs.health,
            events = stats.events,
            startup_ms = started.elapsed().as_millis() as u64,
            "secmon started"
        );
        crate::systemd::ready(&format!(
            "serving: api {}, {} events stored",
            addrs.graphql, stats.events
        ));
        Ok(App {
            addrs,
            node_id: store.node_id(),
            shutdown,
            tasks,
            threads: vec![writer_thread, indexer_thread],
        })
    }

    pub fn addrs(&self) -> Addrs {
        self.addrs
    }

    pub fn node_id(&self) -> Ulid {
        self.node_id
    }

    /// Cancelling this token starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until shutdown is requested, then drains everything: in-flight
    /// requests finish, queued batches are committed, the index is committed.
    /// Under a systemd watchdog, a keep-alive goes out every half period
    /// while the writer and indexer threads run.
    pub async fn run_until_stopped(self) {
        match crate::systemd::watchdog_interval() {
            Some(period) => {
                let mut tick = tokio::time::interval(period);
                let mut withheld = false;
                loop {
                    tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        _ = tick.tick() => {
                            if self.threads.iter().all(|t| !t.is_finished()) {
                                crate::systemd::keep_alive();
                            } else if !withheld {
                                withheld = true;
                                tracing::error!("a pipeline thread has stopped: no more watchdog keep-alives, systemd will restart secmon");
                            }
                        }
                    }
                }
            }
            None => self.shutdown.cancelled().await,
        }
        crate::systemd::stopping();
        tracing::info!("shutting down");
        self.tasks.close();
        self.tasks.wait().await;
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        tracing::info!("stopped");
    }

    /// Requests shutdown and waits for it to complete.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.run_until_stopped().await;
    }
}

fn bind(service: &'static str, var: &'static str, addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).map_err(|source| Error::Bind {
        service,
        var,
        addr,
        source,
    })
}

fn bind_udp(
    service: &'static str,
    var: &'static str,
    addr: SocketAddr,
) -> Result<std::net::UdpSocket, Error> {
    std::net::UdpSocket::bind(addr).map_err(|source| Error::Bind {
        service,
        var,
        addr,
        source,
    })
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, Error> {
    listener
        .local_addr()
        .map_err(io_err("reading a listener address"))
}

fn local_udp_addr(socket: &std::net::UdpSocket) -> Result<SocketAddr, Error> {
    socket
        .local_addr()
        .map_err(io_err("reading a listener address"))
}

fn tokio_tcp(listener: TcpListener) -> Result<tokio::net::TcpListener, Error> {
    listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
        .map_err(io_err("configuring a listener"))
}

fn tokio_udp(socket: std::net::UdpSocket) -> Result<tokio::net::UdpSocket, Error> {
    socket
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UdpSocket::from_std(socket))
        .map_err(io_err("configuring a udp socket"))
}

/// Loads and compiles the rules: the built-in pack, the rule files and the
/// rules stored over the API, less the disabled ones. Rules that do not load
/// are logged and left out; the others run. Also returns the built-in and
/// file rules as loaded, disabled ones included, for the API.
fn load_detection(
    cfg: &crate::config::Detection,
    store: &Store,
) -> Result<(writer::Detection, Vec<RuleInfo>), Error> {
    use crate::detect::{Detector, catalog, rules};
    let mut sources = if cfg.builtin {
        rules::builtin()
    } else {
        Vec::new()
    };
    let (more, unreadable) = rules::read_paths(&cfg.rules);
    sources.extend(more);
    let stored = store.rules()?;
    let disabled: std::collections::HashSet<String> = stored
        .iter()
        .filter(|r| !r.enabled)
        .map(|r| r.id.clone())
        .collect();
    sources.extend(stored.into_iter().filter_map(|r| {
        let text = r.yaml.filter(|_| r.enabled)?;
        Some(rules::Source {
            name: catalog::api_source(&r.id),
            text,
        })
    }));
    let (mapping, pipeline) = crate::detect::tools::mapping(cfg).map_err(Error::Detection)?;
    let mut set = rules::load(&sources, &mapping, &pipeline);
    let loaded: Vec<RuleInfo> = catalog::loaded(&set, &sources)
        .into_iter()
        .filter(|r| r.origin != catalog::Origin::Api)
        .collect();
    set.disable(&disabled);
    for problem in unreadable.iter().chain(&set.rejected) {
        tracing::warn!(problem = %problem, "rule not loaded");
    }
    for problem in &set.warnings {
        tracing::info!(problem = %problem, "rule loaded with a warning");
    }
    let detector = Detector::new(&set).map_err(Error::Detection)?;
    tracing::info!(
        rules = detector.rules,
        correlations = detector.correlations,
        rejected = set.rejected.len() + unreadable.len(),
        disabled = disabled.len(),
        "detection rules loaded"
    );
    let detection = writer::Detection {
        detector,
        dedup_window: chrono::Duration::from_std(cfg.dedup_window.0)
            .unwrap_or(chrono::Duration::hours(1)),
    };
    Ok((detection, loaded))
}

/// What the rule files look like now (path, length, modification time),
/// from their metadata only.
fn rules_fingerprint(
    cfg: &crate::config::Detection,
) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let (files, _) = crate::detect::rules::rule_files(&cfg.rules);
    files
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (path, len, modified)
        })
        .collect()
}

/// Reloads the rules on SIGHUP, when a rule file changes and when a rule
/// changes over the API (at once), keeping the correlation windows; a
/// reload that fails keeps the running rules.
async fn watch_rules(
    store: Store,
    catalog: Arc<Catalog>,
    writer: writer::WriterHandle,
    shutdown: CancellationToken,
) {
    let cfg = catalog.config.clone();
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler: rules reload on file changes only");
            None
        }
    };
    let interval = Duration::from_secs(cfg.watch_interval_seconds.max(1));
    let mut seen = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || rules_fingerprint(&cfg))
            .await
            .unwrap_or_default()
    };
    loop {
        let why = tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(()) = async { match &mut hangup { Some(h) => h.recv().await, None => None } } => "SIGHUP",
            _ = catalog.reload_requested() => "a rule changed over the API",
            _ = tokio::time::sleep(interval), if cfg.watch_interval_seconds > 0 => "a rule file changed",
        };
        let cfg2 = cfg.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || rules_fingerprint(&cfg2)).await else {
            continue;
        };
        if why == "a rule file changed" && now == seen {
            continue;
        }
        seen = now;
        // Read before the store: this reload covers the changes up to here.
        let changes = catalog.requested();
        let (cfg2, store2) = (cfg.clone(), store.clone());
        match tokio::task::spawn_blocking(move || load_detection(&cfg2, &store2)).await {
            Ok(Ok((detection, loaded))) => {
                tracing::info!(reason = why, "reloading detection rules");
                if writer.reload(detection).await.is_err() {
                    return;
                }
                catalog.set_loaded(loaded);
            }
            Ok(Err(e)) => tracing::error!(error = %e, "rules not reloaded; the running rules stay"),
            Err(e) => tracing::error!(error = %e, "rules not reloaded; the running rules stay"),
        }
        // Also after a failure: whoever waits for these changes stops waiting.
        catalog.mark_applied(changes);
    }
}

/// This node's name: `node_name`, else the host name.
pub fn node_name(config: &Config) -> String {
    config.node_name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    })
}

/// `router` behind authentication and rate limits, with request metrics.
fn guarded(server: &'static str, router: Router, auth: &Arc<Auth>) -> Router {
    let guard = guard::Guard {
        auth: auth.clone(),
        server,
    };
    router
        .layer(axum::middleware::from_fn_with_state(
            guard,
            guard::authenticate,
        ))
        .layer(axum::middleware::from_fn(move |req, next| {
            api::track(server, req, next)
        }))
        .layer(axum::middleware::from_fn(api::catch_panic))
}

/// Drops the rate-limit state of idle addresses and principals now and then.
async fn forget_idle_limits(auth: Arc<Auth>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(60)) => auth.requests.forget_idle(),
        }
    }
}

/// Folds the histogram samples recorded since into their buckets now and
/// then: the recorder keeps every sample until then, and only a scrape of
/// `/metrics` would do it otherwise.
async fn fold_histograms(
    prometheus: &'static metrics_exporter_prometheus::PrometheusHandle,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => prometheus.run_upkeep(),
        }
    }
}

fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    tls: Option<RustlsConfig>,
    shutdown: &CancellationToken,
) -> impl Future<Output = ()> + use<> {
    let shutdown = shutdown.clone();
    async move {
        if let Err(e) = api::serve(listener, router, tls, shutdown.clone()).await {
            tracing::error!(server = name, error = %e, "server failed; shutting down");
            shutdown.cancel();
        }
    }
}

/// Writes the bound ports to `data_dir/ports.json` (useful with port 0).
fn write_ports(data_dir: &Path, addrs: &Addrs) -> Result<(), Error> {
    let body = json!({
        "graphql": addrs.graphql.port(),
        "websocket": addrs.websocket.port(),
        "metrics": addrs.metrics.port(),
        "health": addrs.health.port(),
        "syslog_udp": addrs.syslog_udp.map(|a| a.port()),
        "syslog_tcp": addrs.syslog_tcp.map(|a| a.port()),
        "syslog_tls": addrs.syslog_tls.map(|a| a.port()),
        "gelf_udp": addrs.gelf_udp.map(|a| a.port()),
        "gelf_tcp": addrs.gelf_tcp.map(|a| a.port()),
    });
    let path = data_dir.join("ports.json");
    std::fs::write(&path, format!("{body:#}\n"))
        .map_err(io_err(format!("writing {}", path.display())))
}

/// The first user, when there is none: `admin` with `SECMON_ADMIN_PASSWORD`;
/// in development without it, with a generated password written to
/// `data_dir/admin_password` (mode 0600; the log names the file, never the
/// password). Production without it starts with no user: create one with
/// `secmon user add` or `secmon init`.
async fn bootstrap_admin(auth: &Arc<Auth>, config: &Config) -> Result<(), Error> {
    let users = {
        let auth = auth.clone();
        tokio::task::spawn_blocking(move || auth.store().users())
            .await
            .map_err(|e| Error::Auth(e.to_string()))??
    };
    if !users.is_empty() {
        return Ok(());
    }
    let path = config.data_dir.join("admin_password");
    let password = match (&config.auth.admin_password, config.environment) {
        (Some(p), _) => p.clone(),
        (None, crate::config::Environment::Development) => {
            let generated = crate::auth::token::random_secret()
                .map_err(|e| Error::Auth(format!("no randomness: {e}")))?;
            // The file first: an admin whose generated password was lost
            // would lock the node out.
            write_private(&path, &generated)
                .map_err(io_err(format!("writing {}", path.display())))?;
            Secret::new(generated)
        }
        (None, crate::config::Environment::Production) => {
            tracing::warn!(
                "no user exists: set SECMON_ADMIN_PASSWORD, or run `secmon user add NAME --role admin`"
            );
            return Ok(());
        }
    };
    let auth = auth.clone();
    tokio::task::spawn_blocking(move || auth.bootstrap_admin(password.expose()))
        .await
        .map_err(|e| Error::Auth(e.to_string()))?
        .map_err(|e| Error::Auth(format!("creating user admin: {e}")))?;
    if config.auth.admin_password.is_some() {
        tracing::info!("created user admin from SECMON_ADMIN_PASSWORD");
    } else {
        tracing::info!(password_file = %path.display(), "created user admin with a generated password");
    }
    Ok(())
}

/// Development only: a JWT secret generated once and kept in the data dir.
pub fn dev_jwt_secret(data_dir: &Path) -> Result<Secret, Error> {
    let path = data_dir.join("jwt_secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if existing.len() >= 32 {
            return Ok(Secret::new(existing.to_owned()));
        }
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Error::Io {
        what: "generating a JWT secret".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, &secret).map_err(io_err(format!("writing {}", path.display())))?;
    tracing::info!(path = %path.display(), "generated a development JWT secret");
    Ok(Secret::new(secret))
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}
