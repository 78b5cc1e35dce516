//! The GraphQL schema: one file per domain, merged here.

mod accounts;
mod alerts;
mod decisions;
mod events;
mod fleet;
mod ingest;
pub mod limits;
mod live;
mod notifications;
mod rules;
mod stats;
mod system;
pub mod triage;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::futures_util::FutureExt;
use async_graphql::http::GraphiQLSource;
use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql::{
    Context, ErrorExtensions, MergedObject, Request, Response, Schema, SchemaBuilder, ServerError,
};
use async_graphql_axum::rejection::GraphQLRejection;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Extension;
use axum::Router;
use axum::extract::{FromRequest, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response as HttpResponse};
use axum::routing::get;

use super::ApiState;
pub use super::guard::Session;
use crate::auth::{Actor, Capability};
use crate::config::{Api, Environment};
use crate::store::audit::Record;
use crate::telemetry::metric;
use limits::{Budget, Refusals, Refused};

pub use events::{EventNode, decode_cursor, encode_cursor};
pub use live::TailFilter;

#[derive(MergedObject, Default)]
pub struct QueryRoot(
    accounts::AccountsQuery,
    events::EventsQuery,
    alerts::AlertsQuery,
    fleet::FleetQuery,
    decisions::DecisionsQuery,
    notifications::NotificationsQuery,
    rules::RulesQuery,
    stats::StatsQuery,
    system::SystemQuery,
);

#[derive(MergedObject, Default)]
pub struct MutationRoot(
    accounts::AccountsMutation,
    triage::TriageMutation,
    rules::RulesMutation,
    ingest::IngestMutation,
    notifications::NotificationsMutation,
    decisions::DecisionsMutation,
);

pub type SubscriptionRoot = live::LiveSubscription;

pub type ApiSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

fn builder() -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
}

/// The schema, with `state` as its data and the depth and cost limits of
/// `state.limits`. Run requests with [`execute`]: it applies the rest.
pub fn schema(state: Arc<ApiState>) -> ApiSchema {
    let production = state.environment == Environment::Production;
    let builder = builder()
        .limit_depth(state.limits.max_query_depth)
        .limit_complexity(state.limits.max_complexity)
        .data(state);
    if production {
        builder.disable_introspection().finish()
    } else {
        builder.finish()
    }
}

/// The schema in SDL, as committed in `docs/schema.graphql`.
pub fn sdl() -> String {
    builder().finish().sdl()
}

/// The API state a schema made by [`schema`] carries.
pub fn api_state(schema: &ApiSchema) -> Option<Arc<ApiState>> {
    schema.data::<Arc<ApiState>>().cloned()
}

#[derive(Clone)]
struct GraphqlState {
    schema: ApiSchema,
    graphiql: bool,
}

/// `/graphql`: POST and GET queries (GET carries no mutation), bodies up
/// to `max_body_bytes`; GraphiQL on a bare GET in development.
pub fn router(schema: ApiSchema, environment: Environment, max_body_bytes: usize) -> Router {
    let state = GraphqlState {
        schema,
        graphiql: environment == Environment::Development,
    };
    Router::new()
        .route("/graphql", get(get_graphql).post(post_graphql))
        .with_state(state)
        .layer(axum::middleware::from_fn(move |req, next| {
            super::guard::limit_body(max_body_bytes, req, next)
        }))
}

async fn get_graphql(
    State(state): State<GraphqlState>,
    Extension(session): Extension<Session>,
    RawQuery(query): RawQuery,
    req: axum::extract::Request,
) -> HttpResponse {
    // GraphiQL is a static page (development only); its queries come back
    // with credentials like any other.
    if state.graphiql && query.as_deref().is_none_or(str::is_empty) {
        return Html(GraphiQLSource::build().endpoint("/graphql").finish()).into_response();
    }
    let mut req = match GraphQLRequest::<GraphQLRejection>::from_request(req, &()).await {
        Ok(req) => req.into_inner(),
        Err(rejection) => return rejection.into_response(),
    };
    let Some(api) = api_state(&state.schema) else {
        return GraphQLResponse::from(state.schema.execute(req).await).into_response();
    };
    let prepared = prepare(&api.limits, &mut req);
    // Any operation but a query refuses the request, whichever one it
    // selects: async-graphql reads the operation name of a GET from
    // `operation_name`, not `operationName`.
    let changes = prepared.is_ok()
        && req.parsed_query().is_ok_and(|doc| {
            doc.operations
                .iter()
                .any(|(_, op)| op.node.ty != OperationType::Query)
        });
    match prepared {
        Err(refused) => GraphQLResponse::from(refusal(&refused)).into_response(),
        Ok(_) if changes => {
            count_refused("METHOD_NOT_ALLOWED");
            let mut response = super::guard::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "GET runs queries only: send mutations with POST",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            response
        }
        Ok(_) => {
            GraphQLResponse::from(run(&state.schema, &api, session, req).await).into_response()
        }
    }
}

async fn post_graphql(
    State(state): State<GraphqlState>,
    Extension(session): Extension<Session>,
    req: GraphQLRequest,
) -> GraphQLResponse {
    execute(&state.schema, session, req.into_inner())
        .await
        .into()
}

/// Runs a query or mutation as `session`, within the limits of `api`
/// (docs/CONFIGURATION.md, `api`): the document's size and nesting are
/// checked before it is parsed; its cost and depth when it is validated;
/// the items it returns while it runs; it ends with `TIMEOUT` when it runs
/// over `request_timeout_seconds`; a panic answers `INTERNAL` (and is
/// counted), never ends the node. The mutations it was refused are audited
/// as one entry. Without a principal, only `login` and `refresh` answer;
/// introspection too needs credentials. HTTP and the WebSocket both run
/// their queries and mutations here.
pub async fn execute(schema: &ApiSchema, session: Session, mut req: Request) -> Response {
    let Some(api) = api_state(schema) else {
        return schema.execute(req.data(session)).await;
    };
    if let Err(refused) = prepare(&api.limits, &mut req) {
        return refusal(&refused);
    }
    run(schema, &api, session, req).await
}

/// Checks `req` against the document limits, before anything recursive
/// reads it; then parses it (the parse is kept for execution), refuses it
/// when its fragments expand too far (before async-graphql's own checks
/// walk them, once per spread), and says which kind of operation it
/// selects (none when it does not parse or names no operation it has:
/// execution reports that). Every path runs this first: POST, GET and the
/// WebSocket.
pub(crate) fn prepare(limits: &Api, req: &mut Request) -> Result<Option<OperationType>, Refused> {
    limits::check_document(
        &req.query,
        limits.max_document_bytes,
        limits.max_document_depth,
    )?;
    limits::check_variables(req.variables.values(), limits.max_document_depth)?;
    let name = req.operation_name.clone();
    let Ok(doc) = req.parsed_query() else {
        return Ok(None);
    };
    limits::check_expansion(doc)?;
    Ok(match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(op.node.ty),
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, op)| op.node.ty),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| op.node.ty)
        }
        (DocumentOperations::Multiple(_), None) => None,
    })
}

/// Executes a prepared request: see [`execute`].
pub(crate) async fn run(
    schema: &ApiSchema,
    api: &Arc<ApiState>,
    session: Session,
    mut req: Request,
) -> Response {
    let limits = &api.limits;
    if session.principal.is_none() {
        req = req.disable_introspection();
    }
    let timeout = Duration::from_secs(limits.request_timeout_seconds.max(1));
    let refusals = Arc::new(Refusals::default());
    let budget = Arc::new(Budget::new(
        limits.max_items_per_request,
        Instant::now() + timeout,
    ));
    let actor = session.principal.as_ref().map(|p| Actor {
        name: p.display_name(),
        ip: Some(session.ip),
    });
    let req = req.data(session).data(refusals.clone()).data(budget);
    let mut response = bounded(timeout, schema.execute(req)).await;
    code_validation_errors(&mut response);
    if let Some(actor) = actor {
        audit_refusals(api, actor, &refusals).await;
    }
    response
}

/// `running`'s response, `TIMEOUT` once it has run for `timeout` (it is
/// dropped: blocking work it started finishes on its own), `INTERNAL` when
/// it panics.
async fn bounded(timeout: Duration, running: impl Future<Output = Response>) -> Response {
    match tokio::time::timeout(timeout, AssertUnwindSafe(running).catch_unwind()).await {
        Ok(Ok(response)) => response,
        Ok(Err(panic)) => panicked(panic.as_ref()),
        Err(_) => {
            count_refused("TIMEOUT");
            error_response(
                "TIMEOUT",
                format!(
                    "the request ran longer than {} s: narrow its time range or query, or ask for less",
                    timeout.as_secs()
                ),
            )
        }
    }
}

/// A panic while answering: logged, counted, `INTERNAL` for the caller.
pub(crate) fn panicked(panic: &(dyn std::any::Any + Send)) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %message, "a GraphQL request panicked; it answers INTERNAL");
    ::metrics::counter!(metric::API_PANICS, "server" => "graphql").increment(1);
    error_response("INTERNAL", "internal error".to_owned())
}

/// Writes the refusals of one request as one audit entry (`access.denied`:
/// the role, the capabilities needed, how many mutations, the first few
/// names), in one transaction, however many aliases were refused.
async fn audit_refusals(api: &Arc<ApiState>, actor: Actor, refusals: &Refusals) {
    let summary = refusals.take();
    if summary.count == 0 {
        return;
    }
    let record = Record::new("access.denied")
        .target(summary.target())
        .after(summary.details());
    let api = api.clone();
    let written = tokio::task::spawn_blocking(move || api.store.audit(&actor, record)).await;
    if !matches!(written, Ok(Ok(_))) {
        tracing::error!("refused mutations were not audited");
    }
}

/// The errors async-graphql raises itself when it validates a document
/// over a limit, given the codes of ours.
fn code_validation_errors(response: &mut Response) {
    for e in &mut response.errors {
        let has_code = e
            .extensions
            .as_ref()
            .is_some_and(|x| x.get("code").is_some());
        if has_code {
            continue;
        }
        let code = if e.message.starts_with("Query is too complex") {
            "QUERY_TOO_COMPLEX"
        } else if e.message.starts_with("Query is nested too deep")
            || e.message.starts_with("The recursion depth of the query")
        {
            "QUERY_TOO_DEEP"
        } else {
            continue;
        };
        count_refused(code);
        e.extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
}

/// The response to a document refused before parsing.
pub(crate) fn refusal(refused: &Refused) -> Response {
    count_refused(refused.code());
    error_response(refused.code(), refused.message())
}

/// A response of one error with `extensions.code`.
pub(crate) fn error_response(code: &'static str, message: String) -> Response {
    let mut e = ServerError::new(message, None);
    e.extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
    Response::from_errors(vec![e])
}

/// Counts a request refused by a limit (`secmon_graphql_refused_total`).
pub(crate) fn count_refused(code: &'static str) {
    ::metrics::counter!(metric::GRAPHQL_REFUSED, "code" => code).increment(1);
}

/// The session of the request.
pub fn session<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Session> {
    ctx.data::<Session>()
}

/// The caller's capability `C`: `UNAUTHENTICATED` without a principal,
/// `FORBIDDEN` when its role does not grant `C`. A mutation refused for
/// lack of a capability is audited (`access.denied`): once per request,
/// however many of its fields were refused (see [`execute`]).
pub fn grant<C: Capability>(ctx: &Context<'_>) -> async_graphql::Result<C> {
    let session = ctx.data::<Session>()?;
    let principal = session
        .principal
        .as_ref()
        .ok_or_else(|| coded("UNAUTHENTICATED", "authentication required"))?;
    principal.grant(Some(session.ip)).map_err(|denied| {
        if ctx.query_env.operation.node.ty == OperationType::Mutation {
            let field = ctx.item.node.name.node.as_str();
            match ctx.data_opt::<Arc<Refusals>>() {
                Some(refusals) => refusals.add(field, denied.role.as_str(), denied.needs),
                None => {
                    // Executed outside `execute` (tests): audited at once.
                    if let Ok(state) = state(ctx) {
                        let actor = Actor {
                            name: principal.display_name(),
                            ip: Some(session.ip),
                        };
                        let record = Record::new("access.denied").target(field).after(
                            serde_json::json!({ "role": denied.role, "needs": denied.needs }),
                        );
                        tokio::task::spawn_blocking(move || {
                            if let Err(e) = state.store.audit(&actor, record) {
                                tracing::error!(error = %e, "a refused mutation was not audited");
                            }
                        });
                    }
                }
            }
        }
        coded("FORBIDDEN", denied.to_string())
    })
}

/// The shared API state.
pub fn state(ctx: &Context<'_>) -> async_graphql::Result<Arc<ApiState>> {
    Ok(ctx.data::<Arc<ApiState>>()?.clone())
}

/// A GraphQL error with a stable `extensions.code`.
pub fn coded(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
}

/// Largest page a client may ask for.
pub const MAX_PAGE: usize = 1_000;
const DEFAULT_PAGE: usize = 50;

/// The page size of a Relay connection's `first` argument.
fn page_size(first: Option<i32>) -> async_graphql::Result<usize> {
    let limit = match first {
        None => DEFAULT_PAGE,
        Some(n) => usize::try_from(n).map_err(|_| {
            coded(
                "BAD_REQUEST",
                format!("`first` is between 0 and {MAX_PAGE}"),
            )
        })?,
    };
    if limit > MAX_PAGE {
        return Err(coded(
            "BAD_REQUEST",
            format!("`first` is at most {MAX_PAGE}"),
        ));
    }
    Ok(limit)
}

/// [`page_size`], taken from the request's item budget
/// (`api.max_items_per_request`).
fn page(ctx: &Context<'_>, first: Option<i32>) -> async_graphql::Result<usize> {
    let limit = page_size(first)?;
    take(ctx, limit)?;
    Ok(limit)
}

/// Takes `n` items from the request's budget (`QUERY_TOO_COMPLEX` when
/// fewer are left).
fn take(ctx: &Context<'_>, n: usize) -> async_graphql::Result<()> {
    match ctx.data_opt::<Arc<Budget>>() {
        Some(budget) => budget.take(n),
        None => Ok(()),
    }
}

/// When the request's time is up, for blocking work that checks it.
fn deadline(ctx: &Context<'_>) -> Option<Instant> {
    ctx.data_opt::<Arc<Budget>>().map(|b| b.deadline)
}

/// The cost of a list of `n` items (a `first`, `limit` or `top`; `default`
/// when not given), each with `child` cost: what async-graphql's complexity
/// adds up, so a request's cost grows with its page sizes and its aliases.
/// An `n` outside `0..=max` costs one item: the resolver refuses it.
pub fn cost(n: Option<i32>, default: usize, max: usize, child: usize) -> usize {
    let n = match n {
        None => default,
        Some(n) => usize::try_from(n).ok().filter(|&n| n <= max).unwrap_or(1),
    };
    n.max(1).saturating_mul(child.max(1)).saturating_add(1)
}

/// Runs blocking store/index work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, async_graphql::Error> + Send + 'static,
) -> Result<T, async_graphql::Error> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        if e.is_panic() {
            tracing::error!("blocking work of a GraphQL request panicked; it answers INTERNAL");
            ::metrics::counter!(metric::API_PANICS, "server" => "graphql").increment(1);
        }
        coded("INTERNAL", "internal error")
    })?
}

fn internal(e: impl std::fmt::Display) -> async_graphql::Error {
    tracing::error!(error = %e, "request failed");
    coded("INTERNAL", "internal error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_names_the_operation_a_request_selects() {
        let limits = Api::default();
        let kind = |query: &str, name: Option<&str>| {
            let mut req = Request::new(query);
            if let Some(name) = name {
                req = req.operation_name(name);
            }
            prepare(&limits, &mut req)
        };
        assert_eq!(kind("{ a }", None), Ok(Some(OperationType::Query)));
        assert_eq!(
            kind("mutation { a }", None),
            Ok(Some(OperationType::Mutation))
        );
        assert_eq!(
            kind("mutation { a }", Some("m")),
            Ok(Some(OperationType::Mutation))
        );
        let two = "query q { a } mutation m { b }";
        assert_eq!(kind(two, Some("m")), Ok(Some(OperationType::Mutation)));
        assert_eq!(kind(two, Some("q")), Ok(Some(OperationType::Query)));
        assert_eq!(kind(two, None), Ok(None));
        assert_eq!(
            kind("subscription s { a }", None),
            Ok(Some(OperationType::Subscription))
        );
        assert_eq!(kind("{ a", None), Ok(None));
        let deep = format!("{{ a(x: {}1{}) }}", "[".repeat(100), "]".repeat(100));
        assert_eq!(kind(&deep, None), Err(Refused::TooDeep { max: 32 }));
        let bomb = fragment_bomb(30, 100);
        assert_eq!(
            kind(&bomb, None),
            Err(Refused::TooManySpreads {
                max: limits::MAX_SPREADS
            })
        );
        let bomb = fragment_bomb(20, 40);
        assert_eq!(
            kind(&bomb, None),
            Err(Refused::ExpandsTooFar {
                max: limits::MAX_EXPANDED_FIELDS
            })
        );
        assert_eq!(
            kind(&fragment_bomb(3, 3), None),
            Ok(Some(OperationType::Query))
        );
    }

    fn fragment_bomb(n: usize, fan: usize) -> String {
        super::limits::tests::fragment_bomb(n, fan, "QueryRoot")
    }

    #[test]
    fn a_fragment_bomb_is_refused_in_bounded_time_and_counted_as_too_complex() {
        let limits = Api::default();
        let started = std::time::Instant::now();
        let mut req = Request::new(fragment_bomb(20, 40));
        let refused = prepare(&limits, &mut req).unwrap_err();
        assert_eq!(refused.code(), "QUERY_TOO_COMPLEX");
        assert_eq!(
            refusal(&refused).errors[0]
                .extensions
                .as_ref()
                .and_then(|e| e.get("code")),
            Some(&async_graphql::Value::from("QUERY_TOO_COMPLEX"))
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn the_cost_of_a_list_is_its_size_times_its_selection() {
        assert_eq!(cost(None, 50, 1000, 4), 201);
        assert_eq!(cost(Some(1000), 50, 1000, 4), 4001);
        assert_eq!(cost(Some(0), 50, 1000, 4), 5);
        // Out of range: the resolver refuses it, so it costs one item.
        assert_eq!(cost(Some(-1), 50, 1000, 4), 5);
        assert_eq!(cost(Some(100_000), 50, 1000, 4), 5);
        assert_eq!(cost(Some(1000), 50, 1000, usize::MAX), usize::MAX);
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_and_the_server_goes_on() {
        async fn boom() -> &'static str {
            panic!("boom")
        }
        let router = Router::new()
            .route("/boom", get(boom))
            .route("/ok", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(super::super::catch_panic));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let resp = http
            .get(format!("http://{addr}/boom"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 500);
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["errors"][0]["extensions"]["code"], "INTERNAL");
        let ok = http.get(format!("http://{addr}/ok")).send().await.unwrap();
        assert_eq!(ok.text().await.unwrap(), "ok");
    }

    fn code(r: &Response) -> Option<&async_graphql::Value> {
        r.errors[0].extensions.as_ref().and_then(|e| e.get("code"))
    }

    #[tokio::test]
    async fn a_request_over_its_time_answers_timeout_and_one_that_panics_internal() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(600)).await;
            Response::new(async_graphql::Value::Null)
        };
        let started = std::time::Instant::now();
        let r = bounded(Duration::from_millis(50), slow).await;
        assert_eq!(code(&r), Some(&async_graphql::Value::from("TIMEOUT")));
        assert!(started.elapsed() < Duration::from_secs(60));
        let boom = async {
            if started.elapsed() < Duration::from_secs(3600) {
                panic!("boom");
            }
            Response::new(async_graphql::Value::Null)
        };
        let r = bounded(Duration::from_secs(10), boom).await;
        assert_eq!(code(&r), Some(&async_graphql::Value::from("INTERNAL")));
        let fine = async { Response::new(async_graphql::Value::from(1)) };
        assert!(
            bounded(Duration::from_secs(10), fine)
                .await
                .errors
                .is_empty()
        );
    }

    #[test]
    fn a_panic_in_a_resolver_is_an_internal_error() {
        let r = panicked(&"boom");
        assert_eq!(
            r.errors[0].extensions.as_ref().and_then(|e| e.get("code")),
            Some(&async_graphql::Value::from("INTERNAL"))
        );
    }

    /// `docs/schema.graphql` is the live schema; `UPDATE_SCHEMA=1` rewrites it.
    #[test]
    fn committed_schema_matches_the_live_schema() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schema.graphql");
        let live = super::sdl();
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &live).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == live,
            "docs/schema.graphql is out of date: run `UPDATE_SCHEMA=1 cargo test --lib committed_schema`"
        );
    }
}
