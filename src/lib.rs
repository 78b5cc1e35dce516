//! secmon: a security monitoring appliance in one process.
//!
//! Module map, in data-flow order (see ARCHITECTURE.md):
//!
//! - [`config`]: typed configuration, layered loading, validation, port plan.
//! - [`model`]: the normalised [`model::Event`]; plain data.
//! - [`ingest`]: sources that turn bytes into events (HTTP NDJSON first).
//! - [`store`]: redb (the truth), the group-commit writer, the tantivy index.
//! - [`api`]: the axum routers: GraphQL and ingest, health, metrics.
//! - [`telemetry`]: logging setup and metric names.
//! - [`app`]: wires the pipeline together and owns shutdown.

pub mod api;
pub mod app;
pub mod bench;
pub mod config;
pub mod ingest;
pub mod model;
pub mod store;
pub mod telemetry;

pub use app::App;
