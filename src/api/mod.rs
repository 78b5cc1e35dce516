//! The HTTP surfaces: the API port (GraphQL and ingest), health, metrics.

pub mod console;
pub mod graphql;
pub mod guard;
pub mod health;
pub mod metrics;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum_server::tls_rustls::RustlsConfig;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use ulid::Ulid;

use crate::config::Environment;
use crate::store::Store;
use crate::store::index::EventIndex;
use crate::store::indexer::Progress;
use crate::telemetry::metric;

/// How long in-flight requests get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(8);

/// What the API needs. The writer handle it holds (for `ingestEvents`)
/// is dropped with the routers when the listeners stop, so shutdown can
/// drain the writer.
pub struct ApiState {
    pub store: Store,
    pub auth: Arc<crate::auth::Auth>,
    pub writer: crate::store::writer::WriterHandle,
    pub live: Arc<crate::store::live::Live>,
    pub index: Arc<EventIndex>,
    pub progress: Arc<Progress>,
    pub search_cache: crate::store::cache::SearchCache,
    pub node_id: Ulid,
    pub environment: Environment,
    pub started: Instant,
    /// The running rules as the API shows them; asks for reloads.
    pub rules: Arc<crate::detect::catalog::Catalog>,
    /// The central tables, when `DATABASE_URL` is set.
    pub fleet: Option<crate::replicate::Fleet>,
    /// The fleet search, when `DATABASE_URL` and `FLEET_API_KEY` are set.
    pub fanout: Option<Arc<crate::fanout::FanOut>>,
    /// The notification channels, when configured.
    pub notifier: Option<Arc<crate::notify::Notifier>>,
    /// Active response, when `response.enabled`.
    pub firewall: Option<Arc<crate::respond::Firewall>>,
    /// What one request or connection may ask (`api` in the config).
    pub limits: crate::config::Api,
}

/// Serves `router` on `listener` (TLS when `tls` is set) until `shutdown`,
/// then lets in-flight requests finish for up to [`DRAIN`].
pub async fn serve(
    listener: std::net::TcpListener,
    router: Router,
    tls: Option<RustlsConfig>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        stopper.graceful_shutdown(Some(DRAIN));
    });
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        Some(tls) => {
            axum_server::from_tcp_rustls(listener, tls)?
                .handle(handle)
                .serve(service)
                .await
        }
        None => {
            axum_server::from_tcp(listener)?
                .handle(handle)
                .serve(service)
                .await
        }
    }
}

/// Middleware counting requests by server, route and status.
pub async fn track(server: &'static str, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let span = tracing::info_span!(
        "request",
        server,
        method = %req.method(),
        route = %route,
        status = tracing::field::Empty,
    );
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16().to_string();
    span.record("status", status.as_str());
    ::metrics::histogram!(metric::HTTP_REQUEST_SECONDS, "server" => server, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    ::metrics::counter!(metric::HTTP_REQUESTS, "server" => server, "route" => route, "status" => status)
        .increment(1);
    response
}

/// Middleware: a handler that panics answers 500 `INTERNAL` (counted in
/// `secmon_api_panics_total`) instead of dropping the connection; the node
/// and every other request go on.
pub async fn catch_panic(req: Request, next: Next) -> Response {
    use async_graphql::futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(_) => {
            tracing::error!("a request handler panicked; it answers 500");
            ::metrics::counter!(metric::API_PANICS, "server" => "http").increment(1);
            guard::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "internal error",
            )
        }
    }
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
