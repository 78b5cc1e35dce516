//! OpenTelemetry export of the daemon's spans (OTLP over HTTP, protobuf),
//! built with the `otlp` feature and on when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set. The exporter reads the standard `OTEL_*` variables itself
//! (endpoint, headers, timeout); `OTEL_SERVICE_NAME` defaults to `secmon`.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use tracing_opentelemetry::OpenTelemetryLayer;

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The layer that hands spans to the exporter, or `None` when export is off
/// (or cannot start: said on stderr, logging is not set up yet).
pub fn layer<S>() -> Option<OpenTelemetryLayer<S, Tracer>>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())?;
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("secmon: no OTLP export to {endpoint}: {e}");
            return None;
        }
    };
    let mut resource = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("secmon");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("secmon");
    let _ = PROVIDER.set(provider);
    Some(tracing_opentelemetry::layer().with_tracer(tracer))
}

/// Exports what is buffered and stops the exporter.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(e) = provider.shutdown()
    {
        tracing::warn!(error = %e, "flushing the last spans over OTLP failed");
    }
}
