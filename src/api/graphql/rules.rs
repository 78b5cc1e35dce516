//! Detection rules: `rules` and `rule(id)` (built-in, file and API rules),
//! `createRule` from Sigma YAML, `updateRule`, `setRuleEnabled`,
//! `deleteRule`, and `backtestRule` over stored events.
//!
//! Reading takes the read capability; changes and back-tests take the
//! edit-rules capability, and each change is audited in its transaction
//! (`store::rules`). A change returns once the writer has the new rules:
//! events sent after it are evaluated by them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Enum, ErrorExtensions, ID, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::alerts::Severity;
use super::events::EventNode;
use super::{blocking, coded, grant, internal, state};
use crate::api::ApiState;
use crate::auth::{CanEditRules, CanRead};
use crate::detect::catalog::{self, Kind, MAX_YAML_BYTES, Origin, RuleInfo};
use crate::detect::rules::{Problem, Source};
use crate::detect::tools::{self, Backtest, TestHit};
use crate::store::rules::{RuleError, StoredRule};

/// Most events one back-test evaluates.
pub const MAX_BACKTEST_EVENTS: u64 = 1_000_000;
/// Longest time range of a back-test.
pub const MAX_BACKTEST_DAYS: i64 = 31;
/// Hits a back-test returns unless `limit` says otherwise.
const DEFAULT_HITS: usize = 100;
/// What a back-test costs besides its hits, in the query cost: it reads up
/// to `MAX_BACKTEST_EVENTS` events, so a request holds a few at most.
const BACKTEST_COST: usize = 10_000;
/// How long a change waits for the writer to take the new rules.
const RELOAD_WAIT: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct RulesQuery;

#[derive(Default)]
pub struct RulesMutation;

/// Where a rule comes from.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "Origin")]
pub enum RuleSource {
    /// The pack shipped in the binary (docs/RULES.md).
    Builtin,
    /// A rule file or folder of `detection.rules`.
    File,
    /// Created over this API.
    Api,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "Kind")]
pub enum RuleKind {
    /// A Sigma detection rule: matches single events.
    Detection,
    /// A Sigma correlation rule: counts, distinct values or sequences of
    /// other rules' matches.
    Correlation,
    /// A Sigma filter: narrows the rules it names.
    Filter,
}

/// The Sigma `status`.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "rsigma_parser::Status")]
pub enum RuleStatus {
    Stable,
    Test,
    Experimental,
    Deprecated,
    Unsupported,
}

/// A rule and, when the store has one, its stored state.
pub struct RuleNode {
    info: Arc<RuleInfo>,
    stored: Option<StoredRule>,
}

#[Object(name = "Rule")]
impl RuleNode {
    /// The Sigma `id` (the title for a file rule without one).
    async fn id(&self) -> ID {
        ID(self.info.id.clone())
    }
    async fn title(&self) -> &str {
        &self.info.title
    }
    async fn description(&self) -> Option<&str> {
        self.info.description.as_deref()
    }
    /// The Sigma `level`: the severity of its alerts (medium when unset).
    async fn level(&self) -> Option<Severity> {
        self.info.level.map(|l| Severity::parse(l.as_str()))
    }
    async fn status(&self) -> Option<RuleStatus> {
        self.info.status.map(Into::into)
    }
    /// The rule's tags (MITRE ATT&CK).
    async fn tags(&self) -> &[String] {
        &self.info.tags
    }
    async fn kind(&self) -> RuleKind {
        self.info.kind.into()
    }
    async fn source(&self) -> RuleSource {
        self.info.origin.into()
    }
    /// The file it was loaded from (`builtin:<file>` for the built-in
    /// pack); none for rules created over the API.
    async fn file(&self) -> Option<&str> {
        (self.info.origin != Origin::Api).then_some(self.info.file.as_str())
    }
    /// The rules a correlation builds on (ids or names).
    async fn uses(&self) -> &[String] {
        &self.info.uses
    }
    /// Whether the daemon runs it.
    async fn enabled(&self) -> bool {
        self.stored.as_ref().is_none_or(|s| s.enabled)
    }
    /// Its Sigma YAML (the rule's own document, for a file holding several).
    async fn yaml(&self) -> &str {
        &self.info.yaml
    }
    /// Who created it (rules created over the API).
    async fn created_by(&self) -> Option<&str> {
        self.api().map(|s| s.created_by.as_str())
    }
    async fn created_at(&self) -> Option<DateTime<Utc>> {
        self.api().map(|s| s.created_at)
    }
    /// Who changed it last: its YAML or its enabled state (for a built-in or
    /// file rule, who enabled or disabled it).
    async fn updated_by(&self) -> Option<&str> {
        self.stored.as_ref().map(|s| s.updated_by.as_str())
    }
    async fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.stored.as_ref().map(|s| s.updated_at)
    }
}

impl RuleNode {
    fn api(&self) -> Option<&StoredRule> {
        self.stored.as_ref().filter(|s| s.yaml.is_some())
    }
}

#[derive(SimpleObject)]
pub struct RuleTotals {
    /// Number of rules matching the filter.
    total_count: usize,
}

pub type RuleConnection = Connection<String, RuleNode, RuleTotals, EmptyFields>;

/// One hit of a back-test.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct RuleHit {
    rule_id: String,
    rule_title: String,
    severity: Severity,
    /// Raised by a correlation rule.
    correlation: bool,
    /// What its alert would be grouped by (field name -> value).
    group_key: Json<std::collections::BTreeMap<String, String>>,
    /// The event's time.
    timestamp: DateTime<Utc>,
    /// The event's sequence number.
    seq: u64,
    event_id: ID,
    message: String,
}

#[async_graphql::ComplexObject]
impl RuleHit {
    /// The event that raised it (none once retention deleted it).
    async fn event(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<EventNode>> {
        let state = state(ctx)?;
        let seq = self.seq;
        let event = blocking(move || state.store.get(seq).map_err(internal)).await?;
        Ok(event.map(EventNode))
    }
}

impl From<TestHit> for RuleHit {
    fn from(h: TestHit) -> RuleHit {
        RuleHit {
            rule_id: h.rule_id,
            rule_title: h.rule_title,
            severity: Severity::parse(h.severity),
            correlation: h.correlation,
            group_key: Json(h.group_key),
            timestamp: h.timestamp,
            seq: h.event,
            event_id: ID(h.event_id.map(|id| id.to_string()).unwrap_or_default()),
            message: h.message,
        }
    }
}

/// What a back-test found.
#[derive(SimpleObject)]
pub struct RuleBacktest {
    /// Hits in the range: all of them, `hits` holds the first `limit`.
    count: u64,
    /// The first hits, in event order.
    hits: Vec<RuleHit>,
    /// Stored events of the range that were evaluated.
    events_scanned: u64,
    /// Every stored event of the range was evaluated (false: the back-test
    /// stopped after its most events; narrow the range).
    complete: bool,
}

/// What `rules` lists.
struct Filter {
    enabled: Option<bool>,
    source: Option<Origin>,
    kind: Option<Kind>,
    level: Option<Severity>,
    /// Lower-cased; in the id, title, description, tags or file.
    text: Option<String>,
}

impl Filter {
    fn matches(&self, r: &RuleNode) -> bool {
        let i = &r.info;
        self.enabled
            .is_none_or(|e| r.stored.as_ref().is_none_or(|s| s.enabled) == e)
            && self.source.is_none_or(|s| i.origin == s)
            && self.kind.is_none_or(|k| i.kind == k)
            && self
                .level
                .is_none_or(|l| i.level.is_some_and(|il| il.as_str() == l.as_str()))
            && self.text.as_deref().is_none_or(|t| {
                [i.id.as_str(), i.title.as_str(), i.file.as_str()]
                    .into_iter()
                    .chain(i.description.as_deref())
                    .chain(i.tags.iter().map(String::as_str))
                    .any(|s| s.to_lowercase().contains(t))
            })
    }
}

#[Object]
impl RulesQuery {
    /// Every rule the daemon knows (built-in, file and API rules, enabled
    /// or not), by id. `query` looks for text (any case) in the id, title,
    /// description, tags and file name.
    #[allow(clippy::too_many_arguments)]
    #[graphql(
        complexity = "super::cost(first, super::DEFAULT_PAGE, super::MAX_PAGE, child_complexity)"
    )]
    async fn rules(
        &self,
        ctx: &Context<'_>,
        enabled: Option<bool>,
        source: Option<RuleSource>,
        kind: Option<RuleKind>,
        level: Option<Severity>,
        query: Option<String>,
        #[graphql(validator(minimum = 0))] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<RuleConnection> {
        let _read: CanRead = grant(ctx)?;
        let state = state(ctx)?;
        let limit = super::page(ctx, first)?;
        let filter = Filter {
            enabled,
            source: source.map(Into::into),
            kind: kind.map(Into::into),
            level,
            text: query.map(|q| q.to_lowercase()),
        };
        let rules = blocking(move || all_rules(&state)).await?;
        let matching: Vec<RuleNode> = rules.into_iter().filter(|r| filter.matches(r)).collect();
        let total = matching.len();
        let start = after.map_or(0, |a| matching.partition_point(|r| r.info.id <= a));
        let mut connection = Connection::with_additional_fields(
            start > 0,
            start + limit < total,
            RuleTotals { total_count: total },
        );
        connection.edges.extend(
            matching
                .into_iter()
                .skip(start)
                .take(limit)
                .map(|r| Edge::new(r.info.id.clone(), r)),
        );
        Ok(connection)
    }

    /// One rule by id.
    async fn rule(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<RuleNode>> {
        let _read: CanRead = grant(ctx)?;
        let state = state(ctx)?;
        blocking(move || find_rule(&state, &id)).await
    }

    /// Runs a rule over the stored events with `from <= @timestamp < to`,
    /// raising nothing: `yaml` (a new or changed rule, checked as
    /// `createRule` checks it) or the rule `id`. A correlation runs with the
    /// rules it builds on; its windows start empty at `from`. At most
    /// 31 days and 1 000 000 events; `limit` hits returned (100 unless
    /// set, at most 1000), all of them counted. A back-test still running
    /// when the request's time is up stops there (`complete: false`).
    #[graphql(
        complexity = "BACKTEST_COST.saturating_add(super::cost(limit, DEFAULT_HITS, super::MAX_PAGE, child_complexity))"
    )]
    async fn backtest_rule(
        &self,
        ctx: &Context<'_>,
        yaml: Option<String>,
        id: Option<ID>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        #[graphql(validator(minimum = 0))] limit: Option<i32>,
    ) -> async_graphql::Result<RuleBacktest> {
        let _cap: CanEditRules = grant(ctx)?;
        if from >= to || to - from > chrono::Duration::days(MAX_BACKTEST_DAYS) {
            return Err(coded(
                "BAD_REQUEST",
                format!("`from` must be before `to`, at most {MAX_BACKTEST_DAYS} days before"),
            ));
        }
        let limit = match limit {
            Some(n) => super::page_size(Some(n))?,
            None => DEFAULT_HITS,
        };
        super::take(ctx, limit)?;
        let deadline = super::deadline(ctx);
        if let Some(yaml) = &yaml {
            check_size(yaml)?;
        }
        let state = state(ctx)?;
        blocking(move || {
            let own = match (yaml, id) {
                (Some(yaml), None) => Arc::new(check(&state, &yaml)?),
                (None, Some(id)) => {
                    find_rule(&state, &id)?
                        .ok_or_else(|| coded("NOT_FOUND", format!("no rule {}", id.as_str())))?
                        .info
                }
                _ => {
                    return Err(coded(
                        "BAD_REQUEST",
                        "back-test either `yaml` or the rule `id`",
                    ));
                }
            };
            backtest(&state, &own, from, to, limit, deadline)
        })
        .await
    }
}

#[Object]
impl RulesMutation {
    /// Stores a rule from its Sigma YAML (one document: a detection rule,
    /// correlation or filter with a new `id`), enabled. Invalid YAML or
    /// Sigma is `RULE_INVALID`, with `extensions.problems`: `[{message,
    /// line, column}]`; a taken id is `RULE_EXISTS`.
    async fn create_rule(
        &self,
        ctx: &Context<'_>,
        yaml: String,
    ) -> async_graphql::Result<RuleNode> {
        let cap: CanEditRules = grant(ctx)?;
        check_size(&yaml)?;
        let state = state(ctx)?;
        change(state, move |state| {
            let info = check(state, &yaml)?;
            if let Some(r) = state.rules.loaded().iter().find(|r| r.id == info.id) {
                return Err(coded(
                    "RULE_EXISTS",
                    format!(
                        "rule {} exists ({}): give the new rule another id",
                        info.id, r.file
                    ),
                ));
            }
            let stored = state
                .store
                .create_rule(&cap, &info.id, &yaml)
                .map_err(rule_error)?;
            Ok(RuleNode {
                info: Arc::new(info),
                stored: Some(stored),
            })
        })
        .await
    }

    /// Replaces the YAML of a rule created over the API; the `id` in the
    /// YAML stays the same. Built-in and file rules are `RULE_READ_ONLY`.
    async fn update_rule(
        &self,
        ctx: &Context<'_>,
        id: ID,
        yaml: String,
    ) -> async_graphql::Result<RuleNode> {
        let cap: CanEditRules = grant(ctx)?;
        check_size(&yaml)?;
        let state = state(ctx)?;
        change(state, move |state| {
            let info = check(state, &yaml)?;
            if info.id != id.as_str() {
                let reason = format!(
                    "the rule's id is `{}`; `{}` keeps its id (create a new rule for a new id)",
                    info.id,
                    id.as_str()
                );
                let at = crate::detect::locate::key(&yaml, &["id"]);
                return Err(invalid(vec![Problem {
                    line: Some(at.map_or(1, |p| p.line)),
                    column: at.and_then(|p| p.column),
                    reason,
                    ..catalog::problem(&yaml, "")
                }]));
            }
            let stored = state
                .store
                .update_rule(&cap, &info.id, &yaml)
                .map_err(|e| read_only(state, e))?;
            Ok(RuleNode {
                info: Arc::new(info),
                stored: Some(stored),
            })
        })
        .await
    }

    /// Enables or disables a rule (any source). A correlation whose rule is
    /// disabled does not run either.
    async fn set_rule_enabled(
        &self,
        ctx: &Context<'_>,
        id: ID,
        enabled: bool,
    ) -> async_graphql::Result<RuleNode> {
        let cap: CanEditRules = grant(ctx)?;
        let state = state(ctx)?;
        change(state, move |state| {
            let loaded = state.rules.loaded();
            let info = loaded.iter().find(|r| r.id == id.as_str()).cloned();
            let stored = state
                .store
                .set_rule_enabled(&cap, &id, enabled, info.is_some())
                .map_err(rule_error)?;
            let info = match (&stored.yaml, info) {
                (Some(yaml), _) => Arc::new(describe(&stored.id, yaml)),
                (None, Some(info)) => info,
                (None, None) => return Err(internal("an enabled state without its rule")),
            };
            Ok(RuleNode {
                info,
                stored: Some(stored),
            })
        })
        .await
    }

    /// Deletes a rule created over the API; returns its id. Built-in and
    /// file rules are `RULE_READ_ONLY` (disable them instead).
    async fn delete_rule(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ID> {
        let cap: CanEditRules = grant(ctx)?;
        let state = state(ctx)?;
        let deleted = change(state, move |state| {
            state
                .store
                .delete_rule(&cap, &id)
                .map_err(|e| read_only(state, e))
        })
        .await?;
        Ok(ID(deleted.id))
    }
}

/// Runs a rule change on a blocking thread, then waits for the reload.
async fn change<T: Send + 'static>(
    state: Arc<ApiState>,
    f: impl FnOnce(&ApiState) -> async_graphql::Result<T> + Send + 'static,
) -> async_graphql::Result<T> {
    let changed = {
        let state = state.clone();
        blocking(move || f(&state)).await?
    };
    reloaded(&state).await;
    Ok(changed)
}

/// Asks for a reload and waits until the writer has the new rules.
async fn reloaded(state: &ApiState) {
    let change = state.rules.request_reload();
    if !state.rules.wait_applied(change, RELOAD_WAIT).await {
        tracing::warn!(
            "the rules were changed but not reloaded within {}s; they apply with the next reload",
            RELOAD_WAIT.as_secs()
        );
    }
}

fn check_size(yaml: &str) -> async_graphql::Result<()> {
    if yaml.len() > MAX_YAML_BYTES {
        return Err(coded(
            "BAD_REQUEST",
            format!("a rule is at most {} KiB of YAML", MAX_YAML_BYTES / 1024),
        ));
    }
    Ok(())
}

/// `yaml` checked as the daemon will load it (`RULE_INVALID` otherwise).
fn check(state: &ApiState, yaml: &str) -> async_graphql::Result<RuleInfo> {
    let (_, pipeline) = tools::mapping(&state.rules.config).map_err(internal)?;
    let rules = all_rules(state)?;
    let known: HashSet<&str> = rules
        .iter()
        .flat_map(|r| [Some(r.info.id.as_str()), r.info.name.as_deref()])
        .flatten()
        .collect();
    catalog::check(yaml, &pipeline, |r| known.contains(r)).map_err(invalid)
}

/// `RULE_INVALID`, with every problem's message, line and column in
/// `extensions.problems`.
fn invalid(problems: Vec<Problem>) -> async_graphql::Error {
    let message = match problems.first() {
        Some(p) => format!("invalid rule: line {}: {}", p.line.unwrap_or(1), p.reason),
        None => "invalid rule".to_owned(),
    };
    let list: Vec<serde_json::Value> = problems
        .iter()
        .map(|p| serde_json::json!({"message": p.reason, "line": p.line, "column": p.column}))
        .collect();
    let list = async_graphql::Value::from_json(serde_json::Value::Array(list)).unwrap_or_default();
    async_graphql::Error::new(message).extend_with(move |_, e| {
        e.set("code", "RULE_INVALID");
        e.set("problems", list.clone());
    })
}

fn rule_error(e: RuleError) -> async_graphql::Error {
    match e {
        RuleError::Exists(_) => coded("RULE_EXISTS", e.to_string()),
        RuleError::NotFound(_) => coded("NOT_FOUND", e.to_string()),
        RuleError::ReadOnly(_) => coded("RULE_READ_ONLY", e.to_string()),
        RuleError::Store(e) => internal(e),
    }
}

/// [`rule_error`], where a rule the store does not hold may be a built-in
/// or file rule.
fn read_only(state: &ApiState, e: RuleError) -> async_graphql::Error {
    match e {
        RuleError::NotFound(id) if state.rules.loaded().iter().any(|r| r.id == id) => {
            rule_error(RuleError::ReadOnly(id))
        }
        e => rule_error(e),
    }
}

/// A stored rule's description (its YAML was checked when it was stored).
fn describe(id: &str, yaml: &str) -> RuleInfo {
    let file = catalog::api_source(id);
    catalog::describe(yaml, &file).unwrap_or_else(|| RuleInfo {
        id: id.to_owned(),
        name: None,
        title: id.to_owned(),
        description: None,
        level: None,
        status: None,
        tags: Vec::new(),
        kind: Kind::Detection,
        origin: Origin::Api,
        file,
        uses: Vec::new(),
        yaml: yaml.to_owned(),
    })
}

/// Every rule: the built-in and file rules as loaded and the rules stored
/// over the API (which win over a file rule with their id), by id.
fn all_rules(state: &ApiState) -> async_graphql::Result<Vec<RuleNode>> {
    let stored = state.store.rules().map_err(internal)?;
    let mut by_id: HashMap<String, StoredRule> =
        stored.into_iter().map(|r| (r.id.clone(), r)).collect();
    let mut out = Vec::new();
    for info in state.rules.loaded().iter() {
        if by_id.get(&info.id).is_some_and(|s| s.yaml.is_some()) {
            continue;
        }
        out.push(RuleNode {
            info: info.clone(),
            stored: by_id.remove(&info.id),
        });
    }
    for (id, stored) in by_id {
        if let Some(yaml) = &stored.yaml {
            out.push(RuleNode {
                info: Arc::new(describe(&id, yaml)),
                stored: Some(stored),
            });
        }
    }
    out.sort_by(|a, b| a.info.id.cmp(&b.info.id));
    Ok(out)
}

fn find_rule(state: &ApiState, id: &str) -> async_graphql::Result<Option<RuleNode>> {
    if let Some(stored) = state.store.rule(id).map_err(internal)? {
        if let Some(yaml) = &stored.yaml {
            return Ok(Some(RuleNode {
                info: Arc::new(describe(id, yaml)),
                stored: Some(stored),
            }));
        }
        let info = state.rules.loaded().iter().find(|r| r.id == id).cloned();
        return Ok(info.map(|info| RuleNode {
            info,
            stored: Some(stored),
        }));
    }
    let info = state.rules.loaded().iter().find(|r| r.id == id).cloned();
    Ok(info.map(|info| RuleNode { info, stored: None }))
}

/// Runs `own` (with the rules its correlation builds on, transitively)
/// over the stored events of `from..to`.
fn backtest(
    state: &ApiState,
    own: &RuleInfo,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: usize,
    deadline: Option<std::time::Instant>,
) -> async_graphql::Result<RuleBacktest> {
    if own.kind == Kind::Filter {
        return Err(coded(
            "BAD_REQUEST",
            "a filter raises nothing of its own: back-test the rules it applies to",
        ));
    }
    let rules = all_rules(state)?;
    let mut by_ref: HashMap<&str, &RuleInfo> = HashMap::new();
    for r in &rules {
        by_ref.insert(&r.info.id, &r.info);
        if let Some(name) = &r.info.name {
            by_ref.entry(name).or_insert(&r.info);
        }
    }
    let mut context = Vec::new();
    let mut seen: HashSet<&str> = HashSet::from([own.id.as_str()]);
    let mut todo: VecDeque<&str> = own.uses.iter().map(String::as_str).collect();
    while let Some(r) = todo.pop_front() {
        let Some(info) = by_ref.get(r) else { continue };
        if !seen.insert(&info.id) {
            continue;
        }
        todo.extend(info.uses.iter().map(String::as_str));
        context.push(Source {
            name: info.file.clone(),
            text: info.yaml.clone(),
        });
    }
    let own = vec![Source {
        name: "backtest".to_owned(),
        text: own.yaml.clone(),
    }];
    let (mapping, pipeline) = tools::mapping(&state.rules.config).map_err(internal)?;
    let mut test =
        Backtest::new(own, context, &mapping, &pipeline).map_err(|p| invalid(vec![p]))?;
    let mut result = RuleBacktest {
        count: 0,
        hits: Vec::new(),
        events_scanned: 0,
        complete: true,
    };
    let mut after = 0;
    loop {
        let scan = state
            .store
            .events_between(from, to, after, 8192)
            .map_err(internal)?;
        result.events_scanned += scan.events.len() as u64;
        for hit in test.run(&scan.events) {
            result.count += 1;
            if result.hits.len() < limit {
                result.hits.push(hit.into());
            }
        }
        let out_of_time = deadline.is_some_and(|d| std::time::Instant::now() >= d);
        match scan.next {
            Some(_) if result.events_scanned >= MAX_BACKTEST_EVENTS || out_of_time => {
                result.complete = false;
                break;
            }
            Some(next) => after = next,
            None => break,
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use async_graphql::{Request, Variables};
    use serde_json::{Value, json};

    use super::*;
    use crate::api::graphql::{ApiSchema, Session, schema};
    use crate::auth::{Principal, PrincipalKind, Role};
    use crate::config::{Detection, Environment};
    use crate::detect::catalog::Catalog;
    use crate::detect::rules;
    use crate::model::Event;
    use crate::store::Store;
    use crate::store::index::EventIndex;
    use crate::store::indexer::Progress;

    const SHELLSHOCK: &str = "c67e0c98-4d39-46ee-8f6b-437ebf6b950e";
    const BRUTE_FORCE: &str = "443f2c4e-156b-49bf-a0a7-b193b705812c";
    const ROOT_LOGIN: &str = "045518a7-693f-4f27-82e8-c64d66a9b2fb";

    struct Fixture {
        _dir: tempfile::TempDir,
        state: Arc<ApiState>,
        schema: ApiSchema,
    }

    /// The API over a store in a temp dir, with the built-in rules loaded.
    /// No rules watcher runs: changes do not wait for a reload.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (index, _) = EventIndex::open(&dir.path().join("index")).unwrap();
        let config = Detection {
            enabled: false,
            ..Detection::default()
        };
        let (mapping, pipeline) = tools::mapping(&config).unwrap();
        let sources = rules::builtin();
        let set = rules::load(&sources, &mapping, &pipeline);
        let loaded = catalog::loaded(&set, &sources);
        let progress = Arc::new(Progress::new(0));
        let live = Arc::new(crate::store::live::Live::default());
        let (writer, _) = crate::store::writer::spawn(
            store.clone(),
            16,
            100,
            progress.clone(),
            live.clone(),
            None,
        )
        .unwrap();
        let auth = crate::auth::Auth::new(
            store.clone(),
            b"0123456789abcdef0123456789abcdef",
            &crate::config::Auth::default(),
        );
        let state = Arc::new(ApiState {
            node_id: store.node_id(),
            store,
            auth: Arc::new(auth),
            writer,
            live,
            index: Arc::new(index),
            progress,
            search_cache: Default::default(),
            environment: Environment::Development,
            started: Instant::now(),
            rules: Arc::new(Catalog::new(config, loaded)),
            fleet: None,
            fanout: None,
            notifier: None,
            firewall: None,
            limits: Default::default(),
        });
        Fixture {
            _dir: dir,
            schema: schema(state.clone()),
            state,
        }
    }

    impl Fixture {
        async fn run(&self, role: Option<Role>, query: &str, variables: Value) -> Value {
            let session = Session {
                principal: role.map(|role| Principal {
                    name: format!("{role}-user"),
                    kind: PrincipalKind::User,
                    role,
                }),
                ip: "10.1.2.3".parse().unwrap(),
            };
            let request = Request::new(query).variables(Variables::from_json(variables));
            let response = crate::api::graphql::execute(&self.schema, session, request).await;
            serde_json::to_value(response).unwrap()
        }

        async fn admin(&self, query: &str, variables: Value) -> Value {
            self.run(Some(Role::Admin), query, variables).await
        }
    }

    fn code(response: &Value) -> &str {
        response["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code: {response}"))
    }

    fn shellshock() -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/data/sigma/rules/linux/builtin/lnx_shellshock.yml"),
        )
        .unwrap()
    }

    const CREATE: &str = "mutation($yaml: String!) { createRule(yaml: $yaml) { id title level status tags source kind enabled file createdBy updatedBy yaml } }";

    #[tokio::test]
    async fn reading_needs_a_principal_and_changing_needs_the_edit_rules_role() {
        let f = fixture();
        let list = "{ rules(first: 1) { totalCount } }";
        assert_eq!(code(&f.run(None, list, json!({})).await), "UNAUTHENTICATED");
        let viewer = f.run(Some(Role::Viewer), list, json!({})).await;
        assert!(
            viewer["data"]["rules"]["totalCount"].as_u64().unwrap() > 20,
            "{viewer}"
        );

        let yaml = shellshock();
        let create = json!({"yaml": yaml});
        for role in [Role::Viewer, Role::Ingest] {
            let refused = f.run(Some(role), CREATE, create.clone()).await;
            assert_eq!(code(&refused), "FORBIDDEN", "{role}");
        }
        assert_eq!(
            code(&f.run(None, CREATE, create.clone()).await),
            "UNAUTHENTICATED"
        );
        for mutation in [
            format!("mutation {{ setRuleEnabled(id: \"{ROOT_LOGIN}\", enabled: false) {{ id }} }}"),
            format!("mutation {{ deleteRule(id: \"{ROOT_LOGIN}\") }}"),
            format!(
                "{{ backtestRule(id: \"{ROOT_LOGIN}\", from: \"2026-01-01T00:00:00Z\", to: \"2026-01-02T00:00:00Z\") {{ count }} }}"
            ),
        ] {
            let refused = f.run(Some(Role::Viewer), &mutation, json!({})).await;
            assert_eq!(code(&refused), "FORBIDDEN", "{mutation}");
        }
        assert!(f.state.store.rules().unwrap().is_empty());

        let analyst = f.run(Some(Role::Analyst), CREATE, create).await;
        assert_eq!(
            analyst["data"]["createRule"]["createdBy"], "analyst-user",
            "{analyst}"
        );
    }

    #[tokio::test]
    async fn a_sigmahq_rule_is_created_listed_changed_and_deleted() {
        let f = fixture();
        let yaml = shellshock();
        let created = f.admin(CREATE, json!({"yaml": yaml})).await;
        assert_eq!(
            created["data"]["createRule"],
            json!({
                "id": SHELLSHOCK,
                "title": "Shellshock Expression",
                "level": "HIGH",
                "status": "TEST",
                "tags": ["attack.persistence", "attack.t1505.003"],
                "source": "API",
                "kind": "DETECTION",
                "enabled": true,
                "file": null,
                "createdBy": "admin-user",
                "updatedBy": "admin-user",
                "yaml": yaml,
            }),
            "{created}"
        );
        assert_eq!(
            code(&f.admin(CREATE, json!({"yaml": yaml})).await),
            "RULE_EXISTS"
        );
        // A built-in rule's id is taken too.
        let builtin = yaml.replace(SHELLSHOCK, ROOT_LOGIN);
        assert_eq!(
            code(&f.admin(CREATE, json!({"yaml": builtin})).await),
            "RULE_EXISTS"
        );

        let list = "query($source: RuleSource, $q: String, $enabled: Boolean, $after: String) { rules(source: $source, query: $q, enabled: $enabled, first: 2, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { id source enabled } } } }";
        let api = f.admin(list, json!({"source": "API"})).await;
        assert_eq!(api["data"]["rules"]["totalCount"], 1, "{api}");
        let found = f.admin(list, json!({"q": "SHELLSHOCK"})).await;
        assert_eq!(
            found["data"]["rules"]["edges"][0]["node"],
            json!({"id": SHELLSHOCK, "source": "API", "enabled": true})
        );
        // Pages follow the ids.
        let first = f.admin(list, json!({"source": "BUILTIN"})).await;
        let builtin_total = first["data"]["rules"]["totalCount"].as_u64().unwrap();
        assert_eq!(builtin_total as usize, f.state.rules.loaded().len());
        assert_eq!(first["data"]["rules"]["pageInfo"]["hasNextPage"], true);
        let cursor = first["data"]["rules"]["pageInfo"]["endCursor"].clone();
        let second = f
            .admin(list, json!({"source": "BUILTIN", "after": cursor}))
            .await;
        let id = |v: &Value, i: usize| v["data"]["rules"]["edges"][i]["node"]["id"].clone();
        assert!(id(&second, 0).as_str() > cursor.as_str(), "{second}");

        // Updating keeps the id; the YAML's id cannot change.
        let update = "mutation($id: ID!, $yaml: String!) { updateRule(id: $id, yaml: $yaml) { level updatedBy } }";
        let changed = yaml.replace("level: high", "level: critical");
        let updated = f
            .run(
                Some(Role::Analyst),
                update,
                json!({"id": SHELLSHOCK, "yaml": changed}),
            )
            .await;
        assert_eq!(
            updated["data"]["updateRule"],
            json!({"level": "CRITICAL", "updatedBy": "analyst-user"}),
            "{updated}"
        );
        let moved = f
            .admin(
                update,
                json!({"id": SHELLSHOCK, "yaml": yaml.replace(SHELLSHOCK, "new-id")}),
            )
            .await;
        assert_eq!(code(&moved), "RULE_INVALID");
        assert_eq!(moved["errors"][0]["extensions"]["problems"][0]["line"], 2);

        // Built-in rules can be disabled, not changed or deleted.
        let enable = "mutation($id: ID!, $on: Boolean!) { setRuleEnabled(id: $id, enabled: $on) { id source enabled updatedBy } }";
        let disabled = f
            .admin(enable, json!({"id": ROOT_LOGIN, "on": false}))
            .await;
        assert_eq!(
            disabled["data"]["setRuleEnabled"],
            json!({"id": ROOT_LOGIN, "source": "BUILTIN", "enabled": false, "updatedBy": "admin-user"})
        );
        let off = f.admin(list, json!({"enabled": false})).await;
        assert_eq!(off["data"]["rules"]["totalCount"], 1, "{off}");
        assert_eq!(
            code(
                &f.admin(update, json!({"id": ROOT_LOGIN, "yaml": builtin}))
                    .await
            ),
            "RULE_READ_ONLY"
        );
        let delete = "mutation($id: ID!) { deleteRule(id: $id) }";
        assert_eq!(
            code(&f.admin(delete, json!({"id": ROOT_LOGIN})).await),
            "RULE_READ_ONLY"
        );
        assert_eq!(
            code(
                &f.admin(enable, json!({"id": "no-such-rule", "on": false}))
                    .await
            ),
            "NOT_FOUND"
        );

        let deleted = f.admin(delete, json!({"id": SHELLSHOCK})).await;
        assert_eq!(deleted["data"]["deleteRule"], SHELLSHOCK);
        let gone = f
            .admin(
                "query($id: ID!) { rule(id: $id) { id } }",
                json!({"id": SHELLSHOCK}),
            )
            .await;
        assert_eq!(gone["data"]["rule"], Value::Null);
        let builtin = f
            .admin(
                "query($id: ID!) { rule(id: $id) { enabled file yaml } }",
                json!({"id": ROOT_LOGIN}),
            )
            .await;
        assert_eq!(builtin["data"]["rule"]["enabled"], false);
        assert_eq!(
            builtin["data"]["rule"]["file"],
            "builtin:ssh_root_login.yml"
        );
        assert!(
            builtin["data"]["rule"]["yaml"]
                .as_str()
                .unwrap()
                .contains(ROOT_LOGIN)
        );

        // Every change is audited, by whom and from where.
        let (entries, _) = f.state.store.audit_entries(None, 100).unwrap();
        let audited: Vec<(&str, &str, Option<&str>)> = entries
            .iter()
            .rev()
            .map(|e| (e.action.as_str(), e.actor.as_str(), e.target.as_deref()))
            .collect();
        assert_eq!(
            audited,
            [
                ("rule.create", "admin-user", Some(SHELLSHOCK)),
                ("rule.update", "analyst-user", Some(SHELLSHOCK)),
                ("rule.disable", "admin-user", Some(ROOT_LOGIN)),
                ("rule.delete", "admin-user", Some(SHELLSHOCK)),
            ]
        );
        assert!(
            entries
                .iter()
                .all(|e| e.source_ip == Some("10.1.2.3".parse().unwrap()))
        );
    }

    #[tokio::test]
    async fn invalid_rules_come_back_with_their_problems_and_lines() {
        let f = fixture();
        let yaml = shellshock().replace("condition: keywords", "condition: keywords and");
        let response = f.admin(CREATE, json!({"yaml": yaml})).await;
        assert_eq!(code(&response), "RULE_INVALID", "{response}");
        let line = yaml.lines().position(|l| l.contains("condition:")).unwrap() + 1;
        let problem = &response["errors"][0]["extensions"]["problems"][0];
        assert_eq!(problem["line"], line, "{response}");
        // Just after `keywords and`: what should follow is missing.
        assert_eq!(problem["column"], 28, "{response}");
        assert_eq!(
            problem["message"],
            "invalid condition: expected quantifier, ident, or not_op"
        );
        assert!(
            response["errors"][0]["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("invalid rule: line {line}: ")),
            "{response}"
        );

        let broken = f
            .admin(CREATE, json!({"yaml": "title: x\n  id: [\n"}))
            .await;
        assert_eq!(code(&broken), "RULE_INVALID");
        assert!(
            broken["errors"][0]["extensions"]["problems"][0]["line"]
                .as_u64()
                .unwrap()
                >= 2
        );

        let huge = "#".repeat(MAX_YAML_BYTES + 1);
        assert_eq!(
            code(&f.admin(CREATE, json!({"yaml": huge})).await),
            "BAD_REQUEST"
        );
        assert!(f.state.store.rules().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_backtest_runs_a_rule_over_stored_events_and_raises_nothing() {
        let f = fixture();
        let now = Utc::now();
        let event = |message: &str, dataset: &str| Event {
            timestamp: now,
            received_at: now,
            dataset: Some(dataset.to_owned().into()),
            message: message.into(),
            ..Event::default()
        };
        let mut events = vec![event(
            "GET /cgi-bin/status HTTP/1.1 \"() { :; }; /bin/bash -c id\"",
            "web",
        )];
        for _ in 0..6 {
            events.push(Event {
                category: Some("authentication".into()),
                outcome: Some("failure".into()),
                action: Some("ssh_login".into()),
                source_ip: Some("10.7.7.7".parse().unwrap()),
                ..event(
                    "Failed password for root from 10.7.7.7 port 22 ssh2",
                    "sshd",
                )
            });
        }
        events.push(event("GET /index.html HTTP/1.1", "web"));
        f.state.store.append(&mut events).unwrap();

        let backtest = "query($yaml: String, $id: ID, $from: DateTime!, $to: DateTime!, $limit: Int) { backtestRule(yaml: $yaml, id: $id, from: $from, to: $to, limit: $limit) { count eventsScanned complete hits { ruleId seq eventId severity correlation groupKey event { message } } } }";
        let range = |extra: Value| {
            let mut v = json!({
                "from": (now - chrono::Duration::hours(1)).to_rfc3339(),
                "to": (now + chrono::Duration::hours(1)).to_rfc3339(),
            });
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            v
        };
        let shellshock = f
            .admin(backtest, range(json!({"yaml": shellshock()})))
            .await;
        let result = &shellshock["data"]["backtestRule"];
        assert_eq!(result["count"], 1, "{shellshock}");
        assert_eq!(result["eventsScanned"], 8);
        assert_eq!(result["complete"], true);
        assert_eq!(result["hits"][0]["ruleId"], SHELLSHOCK);
        assert_eq!(result["hits"][0]["seq"], 1);
        assert_eq!(result["hits"][0]["eventId"], events[0].id.to_string());
        assert!(
            result["hits"][0]["event"]["message"]
                .as_str()
                .unwrap()
                .contains("() { :; };")
        );

        // A built-in correlation, by id, with the rule it counts.
        let brute = f.admin(backtest, range(json!({"id": BRUTE_FORCE}))).await;
        let result = &brute["data"]["backtestRule"];
        assert_eq!(result["count"], 1, "{brute}");
        assert_eq!(result["hits"][0]["correlation"], true);
        assert_eq!(
            result["hits"][0]["groupKey"],
            json!({"source.ip": "10.7.7.7"})
        );
        assert_eq!(result["hits"][0]["seq"], 7);
        let none = f
            .admin(backtest, range(json!({"id": BRUTE_FORCE, "limit": 0})))
            .await;
        assert_eq!(none["data"]["backtestRule"]["count"], 1);
        assert_eq!(none["data"]["backtestRule"]["hits"], json!([]));

        // Outside the range: nothing.
        let later = f
            .admin(
                backtest,
                json!({"id": BRUTE_FORCE, "from": (now + chrono::Duration::hours(1)).to_rfc3339(), "to": (now + chrono::Duration::hours(2)).to_rfc3339()}),
            )
            .await;
        assert_eq!(later["data"]["backtestRule"]["eventsScanned"], 0, "{later}");

        assert_eq!(
            f.state.store.alert_count().unwrap(),
            0,
            "a back-test raises nothing"
        );
        for (vars, expected) in [
            (range(json!({})), "BAD_REQUEST"),
            (range(json!({"id": "nope"})), "NOT_FOUND"),
            (range(json!({"yaml": "title: [x"})), "RULE_INVALID"),
            (
                json!({"id": BRUTE_FORCE, "from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}),
                "BAD_REQUEST",
            ),
        ] {
            let refused = f.admin(backtest, vars.clone()).await;
            assert_eq!(code(&refused), expected, "{vars}");
        }
    }
}
