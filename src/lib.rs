//! secmon: a security monitoring appliance in one process.
//!
//! Module map, in data-flow order (see ARCHITECTURE.md):
//!
//! - [`config`]: typed configuration, layered loading, validation, port plan.
//! - [`model`]: the normalised [`model::Event`] and [`model::Alert`]; plain data.
//! - [`parse`]: raw records to events: syslog header, then one parser per program.
//! - [`ingest`]: sources that turn bytes into events: syslog, GELF, HTTP, `_bulk`, files, journald.
//! - [`detect`]: Sigma rules (rsigma) evaluated on every event before its commit.
//! - [`store`]: redb (the truth), the group-commit writer, the tantivy index.
//! - [`auth`]: principals, roles and capabilities; passwords, tokens, API keys, rate limits.
//! - [`replicate`]: the outbox applied to the fleet's Postgres and Redis; the fleet view.
//! - [`notify`]: alert updates announced on channels (webhook, Slack, Teams, email, Alertmanager).
//! - [`respond`]: active response: blocks (nftables, decisions), commands and webhooks run by alerts.
//! - [`api`]: the axum routers: GraphQL and ingest, health, metrics.
//! - [`telemetry`]: logging setup and metric names.
//! - [`tls`]: server certificates (TLS 1.2+, reloaded on SIGHUP or change), syslog client certificates, the development PKI.
//! - [`offline`]: import, search, index rebuild without a daemon.
//! - [`control`]: the control socket through which the CLI reaches a daemon.
//! - [`app`]: wires the pipeline together and owns shutdown.
//! - [`systemd`]: readiness, status and watchdog for `Type=notify` services.

pub mod api;
pub mod app;
pub mod auth;
pub mod backup;
pub mod bench;
pub mod config;
pub mod control;
pub mod detect;
pub mod export;
pub mod fanout;
pub mod ingest;
pub mod model;
pub mod notify;
pub mod objects;
pub mod offline;
pub mod parse;
pub mod replicate;
pub mod respond;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod tls;

pub use app::App;

/// Installs ring as the process-wide rustls crypto provider (servers and
/// the HTTP client use it). Idempotent.
pub fn install_crypto_provider() {
    // Err means a provider is already installed: fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An error and its sources, `: `-separated: what a TLS or connection
/// failure really was is often three levels down.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
