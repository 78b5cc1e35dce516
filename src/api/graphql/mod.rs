//! The GraphQL schema: one file per domain, merged here.

mod alerts;
mod events;
mod rules;
mod stats;
mod system;
mod triage;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_graphql::http::GraphiQLSource;
use async_graphql::{
    Context, EmptySubscription, ErrorExtensions, MergedObject, Schema, SchemaBuilder,
};
use async_graphql_axum::rejection::GraphQLRejection;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Router;
use axum::extract::{ConnectInfo, FromRequest, RawQuery, Request, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::ApiState;
use crate::auth::{Capability, Principal};
use crate::config::Environment;

pub use events::EventNode;

/// Deepest query accepted.
pub const MAX_DEPTH: usize = 12;
/// Highest query complexity accepted (each field counts 1, connections count per node).
pub const MAX_COMPLEXITY: usize = 5_000;

#[derive(MergedObject, Default)]
pub struct QueryRoot(
    events::EventsQuery,
    alerts::AlertsQuery,
    rules::RulesQuery,
    stats::StatsQuery,
    system::SystemQuery,
);

#[derive(MergedObject, Default)]
pub struct MutationRoot(triage::TriageMutation, rules::RulesMutation);

pub type ApiSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

fn builder() -> SchemaBuilder<QueryRoot, MutationRoot, EmptySubscription> {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        EmptySubscription,
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

/// `/graphql`: POST and GET queries; GraphiQL on a bare GET in development.
pub fn router(schema: ApiSchema, environment: Environment) -> Router {
    let state = GraphqlState {
        schema,
        graphiql: environment == Environment::Development,
    };
    Router::new()
        .route("/graphql", get(get_graphql).post(post_graphql))
        .with_state(state)
}

async fn get_graphql(
    State(state): State<GraphqlState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Response {
    if state.graphiql && query.as_deref().is_none_or(str::is_empty) {
        return Html(GraphiQLSource::build().endpoint("/graphql").finish()).into_response();
    }
    match GraphQLRequest::<GraphQLRejection>::from_request(req, &()).await {
        Ok(req) => execute(state.schema, peer, req).await.into_response(),
        Err(rejection) => rejection.into_response(),
    }
}

async fn post_graphql(
    State(state): State<GraphqlState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: GraphQLRequest,
) -> GraphQLResponse {
    execute(state.schema, peer, req).await
}

/// Runs a request. Until accounts exist, the actor recorded in alert
/// histories is the client's address.
async fn execute(schema: ApiSchema, peer: SocketAddr, req: GraphQLRequest) -> GraphQLResponse {
    let session = Session {
        principal: None,
        ip: peer.ip(),
    };
    schema.execute(req.into_inner().data(session)).await.into()
}

/// Who is calling and from where; in every request's data.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Option<Principal>,
    pub ip: IpAddr,
}

/// The caller's capability `C`: `UNAUTHENTICATED` without a principal,
/// `FORBIDDEN` when its role does not grant `C`.
pub fn grant<C: Capability>(ctx: &Context<'_>) -> async_graphql::Result<C> {
    let session = ctx.data::<Session>()?;
    let principal = session
        .principal
        .as_ref()
        .ok_or_else(|| coded("UNAUTHENTICATED", "authentication required"))?;
    principal
        .grant(Some(session.ip))
        .map_err(|denied| coded("FORBIDDEN", denied.to_string()))
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
