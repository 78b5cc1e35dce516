//! The GraphQL schema: one file per domain, merged here.

mod accounts;
mod alerts;
mod decisions;
mod events;
mod fleet;
mod ingest;
mod live;
mod notifications;
mod rules;
mod stats;
mod system;
mod triage;

use std::sync::Arc;

use async_graphql::http::GraphiQLSource;
use async_graphql::parser::types::OperationType;
use async_graphql::{Context, ErrorExtensions, MergedObject, Schema, SchemaBuilder};
use async_graphql_axum::rejection::GraphQLRejection;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Extension;
use axum::Router;
use axum::extract::{FromRequest, RawQuery, Request, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::ApiState;
pub use super::guard::Session;
use crate::auth::{Actor, Capability};
use crate::config::Environment;
use crate::store::audit::Record;

pub use events::EventNode;
pub use live::TailFilter;

/// Deepest query accepted.
pub const MAX_DEPTH: usize = 12;
/// Highest query complexity accepted (each field counts 1, connections count per node).
pub const MAX_COMPLEXITY: usize = 5_000;

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

pub fn schema(state: Arc<ApiState>) -> ApiSchema {
    let production = state.environment == Environment::Production;
    let builder = builder()
        .data(state)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY);
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

#[derive(Clone)]
struct GraphqlState {
    schema: ApiSchema,
    graphiql: bool,
}

/// `/graphql`: POST and GET queries, bodies up to `max_body_bytes`;
/// GraphiQL on a bare GET in development.
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
    req: Request,
) -> Response {
    // GraphiQL is a static page (development only); its queries come back
    // with credentials like any other.
    if state.graphiql && query.as_deref().is_none_or(str::is_empty) {
        return Html(GraphiQLSource::build().endpoint("/graphql").finish()).into_response();
    }
    match GraphQLRequest::<GraphQLRejection>::from_request(req, &()).await {
        Ok(req) => execute(state.schema, session, req).await.into_response(),
        Err(rejection) => rejection.into_response(),
    }
}

async fn post_graphql(
    State(state): State<GraphqlState>,
    Extension(session): Extension<Session>,
    req: GraphQLRequest,
) -> GraphQLResponse {
    execute(state.schema, session, req).await
}

/// Runs a request as `session`. Without a principal, only `login` and
/// `refresh` answer; introspection too needs credentials.
async fn execute(schema: ApiSchema, session: Session, req: GraphQLRequest) -> GraphQLResponse {
    let mut req = req.into_inner();
    if session.principal.is_none() {
        req = req.disable_introspection();
    }
    schema.execute(req.data(session)).await.into()
}

/// The session of the request.
pub fn session<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Session> {
    ctx.data::<Session>()
}

/// The caller's capability `C`: `UNAUTHENTICATED` without a principal,
/// `FORBIDDEN` when its role does not grant `C`. A mutation refused for
/// lack of a capability is audited (`access.denied`).
pub fn grant<C: Capability>(ctx: &Context<'_>) -> async_graphql::Result<C> {
    let session = ctx.data::<Session>()?;
    let principal = session
        .principal
        .as_ref()
        .ok_or_else(|| coded("UNAUTHENTICATED", "authentication required"))?;
    principal.grant(Some(session.ip)).map_err(|denied| {
        if ctx.query_env.operation.node.ty == OperationType::Mutation
            && let Ok(state) = state(ctx)
        {
            let actor = Actor {
                name: principal.display_name(),
                ip: Some(session.ip),
            };
            let record = Record::new("access.denied")
                .target(ctx.item.node.name.node.as_str())
                .after(serde_json::json!({ "role": denied.role, "needs": denied.needs }));
            tokio::task::spawn_blocking(move || {
                if let Err(e) = state.store.audit(&actor, record) {
                    tracing::error!(error = %e, "a refused mutation was not audited");
                }
            });
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
    let limit = first.map_or(DEFAULT_PAGE, |n| n as usize);
    if limit > MAX_PAGE {
        return Err(coded(
            "BAD_REQUEST",
            format!("`first` is at most {MAX_PAGE}"),
        ));
    }
    Ok(limit)
}

/// Runs blocking store/index work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, async_graphql::Error> + Send + 'static,
) -> Result<T, async_graphql::Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| coded("INTERNAL", "internal error"))?
}

fn internal(e: impl std::fmt::Display) -> async_graphql::Error {
    tracing::error!(error = %e, "request failed");
    coded("INTERNAL", "internal error")
}

#[cfg(test)]
mod tests {
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
