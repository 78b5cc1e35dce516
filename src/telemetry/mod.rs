//! Logging setup and metric names.

pub mod metric;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global tracing subscriber (once; later calls are no-ops).
pub fn init_logging(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> Result<&'static PrometheusHandle, &'static BuildError> {
    static HANDLE: OnceLock<Result<PrometheusHandle, BuildError>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    metric::SECONDS_BUCKETS,
                )?
                .set_buckets_for_metric(
                    Matcher::Full(metric::BATCH_EVENTS.into()),
                    metric::BATCH_BUCKETS,
                )?
                .install_recorder()?;
            metric::describe();
            Ok(handle)
        })
        .as_ref()
}
