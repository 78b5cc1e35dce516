//! Subscriptions: `alerts`, `events` (a live tail) and `systemStatus`.
//!
//! Each subscriber reads its own bounded broadcast buffer ([`Live`]); the
//! writer never waits for it. A subscriber that falls behind by more than
//! the buffer gets a lag notice (`missed` > 0) in place of what it lost.
//!
//! [`Live`]: crate::store::live::Live

use std::sync::Arc;
use std::time::Duration;

use async_graphql::futures_util::Stream;
use async_graphql::futures_util::stream::{self, StreamExt};
use async_graphql::{Context, SimpleObject, Subscription};
use tokio::sync::broadcast;

use super::alerts::{AlertNode, Severity};
use super::events::EventNode;
use super::system::{System, snapshot};
use super::{coded, grant, state};
use crate::auth::CanRead;
use crate::detect::adapter::SigmaEvent;
use crate::model::{Alert, Event};
use crate::telemetry::metric;

/// Longest live-tail filter.
const MAX_FILTER: usize = 1024;
/// Most terms in a live-tail filter: each is checked against every event
/// of every committed batch.
const MAX_TERMS: usize = 32;
/// Most rule ids an `alerts` subscription filters on.
const MAX_RULE_IDS: usize = 100;

/// An alert raised, repeated or changed; or a lag notice.
#[derive(SimpleObject)]
pub struct AlertFeed {
    /// Null in a lag notice.
    alert: Option<AlertNode>,
    /// Alert messages dropped just before this one because the subscriber
    /// fell behind.
    missed: u64,
}

/// Committed events matching the filter, a batch at a time; or a lag notice.
#[derive(SimpleObject)]
pub struct EventFeed {
    events: Vec<EventNode>,
    /// Committed batches dropped just before this one because the
    /// subscriber fell behind.
    missed: u64,
}

#[derive(Default)]
pub struct LiveSubscription;

/// Items of a broadcast receiver: `Ok` messages, `Err(n)` for `n` lost.
fn feed<T: Clone + Send + 'static>(
    rx: broadcast::Receiver<T>,
    name: &'static str,
) -> impl Stream<Item = Result<T, u64>> {
    stream::unfold(rx, move |mut rx| async move {
        match rx.recv().await {
            Ok(item) => Some((Ok(item), rx)),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                ::metrics::counter!(metric::SUBSCRIPTION_LAGGED, "feed" => name).increment(n);
                Some((Err(n), rx))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
}

#[Subscription]
impl LiveSubscription {
    /// Alerts as they are raised, repeated or changed, at or above
    /// `minSeverity`, of `ruleIds` (at most 100) when given.
    async fn alerts(
        &self,
        ctx: &Context<'_>,
        min_severity: Option<Severity>,
        rule_ids: Option<Vec<String>>,
    ) -> async_graphql::Result<impl Stream<Item = AlertFeed> + use<>> {
        let _read: CanRead = grant(ctx)?;
        if rule_ids.as_ref().is_some_and(|ids| {
            ids.len() > MAX_RULE_IDS
                || ids
                    .iter()
                    .any(|id| id.len() > crate::detect::catalog::MAX_ID_BYTES)
        }) {
            return Err(coded(
                "BAD_REQUEST",
                format!(
                    "`ruleIds` holds at most {MAX_RULE_IDS} ids of at most {} bytes",
                    crate::detect::catalog::MAX_ID_BYTES
                ),
            ));
        }
        let rx = state(ctx)?.live.subscribe_alerts();
        let wanted = move |a: &Alert| {
            min_severity.is_none_or(|min| Severity::parse(&a.severity) >= min)
                && rule_ids.as_ref().is_none_or(|ids| ids.contains(&a.rule_id))
        };
        Ok(feed(rx, "alerts").filter_map(move |item| {
            let out = match item {
                Ok(a) if wanted(&a) => Some(AlertFeed {
                    alert: Some(AlertNode(Arc::unwrap_or_clone(a))),
                    missed: 0,
                }),
                Ok(_) => None,
                Err(missed) => Some(AlertFeed {
                    alert: None,
                    missed,
                }),
            };
            std::future::ready(out)
        }))
    }

    /// A live tail of committed events matching `query` (see
    /// [`TailFilter`]: `field:value` terms, words and "phrases", `-`
    /// negates, all must hold); every event without one.
    async fn events(
        &self,
        ctx: &Context<'_>,
        query: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = EventFeed> + use<>> {
        let _read: CanRead = grant(ctx)?;
        let filter =
            TailFilter::parse(query.as_deref().unwrap_or("")).map_err(|e| coded("BAD_QUERY", e))?;
        let rx = state(ctx)?.live.subscribe_events();
        Ok(feed(rx, "events").filter_map(move |item| {
            let out = match item {
                Ok(batch) => {
                    let events: Vec<EventNode> = batch
                        .iter()
                        .filter(|e| filter.matches(e))
                        .cloned()
                        .map(EventNode)
                        .collect();
                    (!events.is_empty()).then_some(EventFeed { events, missed: 0 })
                }
                Err(missed) => Some(EventFeed {
                    events: Vec::new(),
                    missed,
                }),
            };
            std::future::ready(out)
        }))
    }

    /// The node's status now, then every `intervalSeconds` (1 to 3600).
    async fn system_status(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 5, validator(minimum = 1, maximum = 3600))] interval_seconds: u64,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<System>> + use<>> {
        let _read: CanRead = grant(ctx)?;
        let state = state(ctx)?;
        let mut ticks = tokio::time::interval(Duration::from_secs(interval_seconds));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(stream::unfold(ticks, move |mut ticks| {
            let state = state.clone();
            async move {
                ticks.tick().await;
                Some((snapshot(state).await, ticks))
            }
        }))
    }
}

/// The live-tail filter: whitespace-separated terms, all of which must
/// hold. `field:value` compares a field by its dotted name (the names of
/// search and rules: `host.name`, `source.ip`, `event.outcome`, `labels.x`,
/// `fields.a.b`) case-insensitively, `*` at either end of the value for a
/// prefix, suffix or substring; a word or "quoted phrase" must occur,
/// case-insensitively, in some text of the event. `-` before a term negates
/// it; `AND` is accepted and ignored.
#[derive(Debug, Clone, Default)]
pub struct TailFilter {
    terms: Vec<Term>,
}

#[derive(Debug, Clone)]
struct Term {
    negated: bool,
    field: Option<String>,
    /// Lower case.
    value: String,
    prefix: bool,
    suffix: bool,
}

impl TailFilter {
    pub fn parse(query: &str) -> Result<TailFilter, String> {
        if query.len() > MAX_FILTER {
            return Err(format!("a live filter has at most {MAX_FILTER} bytes"));
        }
        let mut terms = Vec::new();
        let mut rest = query.trim_start();
        while !rest.is_empty() {
            let (negated, body) = match rest.strip_prefix('-') {
                Some(b) => (true, b),
                None => (false, rest),
            };
            let (token, after) = take_token(body)?;
            rest = after.trim_start();
            if token.is_empty() || (!negated && token == "AND") {
                continue;
            }
            let (field, value) = match token.split_once(':') {
                Some((f, v)) if !f.is_empty() && !f.contains(' ') => {
                    (Some(f.to_owned()), unquote(v))
                }
                _ => (None, unquote(&token)),
            };
            let prefix = field.is_some() && value.len() > 1 && value.ends_with('*');
            let suffix = field.is_some() && value.len() > 1 && value.starts_with('*');
            let value = value.trim_matches('*').to_lowercase();
            if terms.len() == MAX_TERMS {
                return Err(format!("a live filter has at most {MAX_TERMS} terms"));
            }
            terms.push(Term {
                negated,
                field,
                value,
                prefix,
                suffix,
            });
        }
        Ok(TailFilter { terms })
    }

    pub fn matches(&self, event: &Event) -> bool {
        self.terms.iter().all(|t| t.holds(event) != t.negated)
    }
}

/// One token: up to whitespace, with "quoted" parts kept whole.
fn take_token(s: &str) -> Result<(String, &str), String> {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return Ok((s[..i].to_owned(), &s[i..])),
            _ => {}
        }
    }
    if quoted {
        return Err("a quote is not closed".into());
    }
    Ok((s.to_owned(), ""))
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_owned()
}

impl Term {
    fn holds(&self, event: &Event) -> bool {
        match &self.field {
            None => {
                let mut found = false;
                crate::detect::adapter::strings(event, &mut |s| {
                    found = found || contains_folded(s, &self.value);
                });
                found
            }
            Some(field) => {
                use rsigma_eval::Event as _;
                let view = SigmaEvent(event);
                view.get_field(field)
                    .is_some_and(|v| self.value_matches(&v))
            }
        }
    }

    fn value_matches(&self, value: &rsigma_eval::EventValue<'_>) -> bool {
        use rsigma_eval::EventValue;
        let text = match value {
            EventValue::Str(s) => s.to_lowercase(),
            EventValue::Int(i) => i.to_string(),
            EventValue::Float(f) => f.to_string(),
            EventValue::Bool(b) => b.to_string(),
            EventValue::Array(items) => return items.iter().any(|v| self.value_matches(v)),
            _ => return false,
        };
        match (self.prefix, self.suffix) {
            (true, true) => text.contains(&self.value),
            (true, false) => text.starts_with(&self.value),
            (false, true) => text.ends_with(&self.value),
            (false, false) => text == self.value,
        }
    }
}

fn contains_folded(haystack: &str, lower_needle: &str) -> bool {
    haystack.to_lowercase().contains(lower_needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::json;

    fn event(v: serde_json::Value) -> Event {
        Event::from_json(v, Utc::now()).unwrap()
    }

    #[test]
    fn the_tail_filter_ands_fields_words_and_negations() {
        let e = event(json!({
            "message": "Failed password for root from 10.0.0.5 port 22 ssh2",
            "host": {"name": "web-1"},
            "source": {"ip": "10.0.0.5"},
            "event": {"outcome": "failure", "dataset": "sshd"},
        }));
        let yes = [
            "",
            "host.name:web-1",
            "host.name:WEB-1",
            "host.name:web*",
            "host.name:*-1",
            "host.name:*eb*",
            "source.ip:10.0.0.5 AND event.outcome:failure",
            "\"failed password\" root",
            "-host.name:web-2",
            "-\"accepted password\"",
        ];
        for q in yes {
            assert!(TailFilter::parse(q).unwrap().matches(&e), "{q}");
        }
        let no = [
            "host.name:web",
            "host.name:web-2",
            "event.outcome:success",
            "\"accepted password\"",
            "-root",
            "user.name:root",
        ];
        for q in no {
            assert!(!TailFilter::parse(q).unwrap().matches(&e), "{q}");
        }
        assert!(TailFilter::parse("\"open quote").is_err());
        assert!(TailFilter::parse(&"x".repeat(MAX_FILTER + 1)).is_err());
        assert!(TailFilter::parse(&"x ".repeat(MAX_TERMS)).is_ok());
        assert!(TailFilter::parse(&"x ".repeat(MAX_TERMS + 1)).is_err());
    }
}
