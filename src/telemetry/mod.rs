//! Logging setup and metric names.

pub mod metric;
#[cfg(feature = "otlp")]
mod otlp;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global tracing subscriber (once; later calls are no-ops):
/// logs to stderr, and with the `otlp` feature and
/// `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans exported over OTLP too.
pub fn init_logging(filter: &str, format: LogFormat) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
        LogFormat::Pretty => fmt.boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    #[cfg(feature = "otlp")]
    let registry = registry.with(otlp::layer());
    let _ = registry.try_init();
}

/// Sends the spans still buffered (OTLP); call before the process exits.
pub fn shutdown() {
    #[cfg(feature = "otlp")]
    otlp::shutdown();
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
            metrics::gauge!(metric::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            Ok(handle)
        })
        .as_ref()
}
