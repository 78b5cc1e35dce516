//! Notifications: the channels and their state (admins), each delivery's
//! status (readers), and a test send (admins, audited).

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Enum, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::{blocking, coded, grant, internal};
use crate::auth::{CanAdminister, CanRead, Capability};
use crate::notify::redact::redact;
use crate::store::audit::Record;
use crate::store::deliveries::{Delivery, DeliveryState};

#[derive(Default)]
pub struct NotificationsQuery;

#[derive(Default)]
pub struct NotificationsMutation;

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "DeliveryState", remote = "DeliveryState")]
pub enum State {
    Pending,
    Sent,
    Digested,
}

/// A configured channel (its URLs, secrets and headers are never shown).
#[derive(SimpleObject)]
pub struct NotificationChannel {
    name: String,
    kind: String,
    min_severity: String,
    max_messages_per_minute: u32,
    /// Created over the API (else from the config files, read-only here).
    stored: bool,
    pending: u64,
    messages_sent: u64,
    digests_sent: u64,
    failures: u64,
    last_sent: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

/// One alert update to announce on one channel.
pub struct DeliveryNode(Delivery);

#[Object(name = "Notification")]
impl DeliveryNode {
    async fn channel(&self) -> &str {
        &self.0.channel
    }
    async fn alert_id(&self) -> u64 {
        self.0.alert.alert_id
    }
    async fn rule_title(&self) -> &str {
        &self.0.alert.rule_title
    }
    async fn severity(&self) -> &str {
        &self.0.alert.severity
    }
    /// raised or changed.
    async fn event(&self) -> Json<crate::store::outbox::AlertEvent> {
        Json(self.0.alert.event)
    }
    async fn state(&self) -> State {
        self.0.state.into()
    }
    async fn attempts(&self) -> u32 {
        self.0.attempts
    }
    /// Why the last attempt failed; never a URL or a credential.
    async fn last_error(&self) -> Option<String> {
        // Redacted when recorded; again here for what older versions stored.
        self.0.last_error.as_deref().map(redact)
    }
    async fn queued_at(&self) -> DateTime<Utc> {
        self.0.queued_at
    }
    async fn sent_at(&self) -> Option<DateTime<Utc>> {
        self.0.sent_at
    }
}

pub type NotificationConnection = Connection<String, DeliveryNode, EmptyFields, EmptyFields>;

#[Object]
impl NotificationsQuery {
    /// Deliveries, newest first: what was announced where, and what is
    /// still pending (with its last error).
    #[graphql(
        complexity = "super::cost(first, super::DEFAULT_PAGE, super::MAX_PAGE, child_complexity)"
    )]
    async fn notifications(
        &self,
        ctx: &Context<'_>,
        channel: Option<String>,
        state: Option<State>,
        #[graphql(validator(minimum = 0))] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<NotificationConnection> {
        let _read: CanRead = grant(ctx)?;
        let state_filter = state.map(DeliveryState::from);
        let app = super::state(ctx)?;
        let limit = super::page(ctx, first)?;
        let before = match after {
            Some(c) => Some(
                c.parse::<u64>()
                    .map_err(|_| coded("BAD_REQUEST", "`after` is not a cursor from this API"))?,
            ),
            None => None,
        };
        let (deliveries, more) = blocking(move || {
            app.store
                .deliveries(channel.as_deref(), state_filter, before, limit)
                .map_err(internal)
        })
        .await?;
        let mut connection = Connection::new(before.is_some(), more);
        connection.edges.extend(
            deliveries
                .into_iter()
                .map(|d| Edge::new(d.seq.to_string(), DeliveryNode(d))),
        );
        Ok(connection)
    }

    /// The configured channels and how their deliveries go.
    async fn notification_channels(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<NotificationChannel>> {
        let _admin: CanAdminister = grant(ctx)?;
        let app = super::state(ctx)?;
        let Some(notifier) = &app.notifier else {
            return Ok(Vec::new());
        };
        Ok(notifier
            .channels()
            .into_iter()
            .map(|(c, s, stored)| NotificationChannel {
                stored,
                name: c.name,
                kind: serde_json::to_value(c.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                min_severity: c.min_severity,
                max_messages_per_minute: c.max_messages_per_minute,
                pending: s.pending,
                messages_sent: s.messages_sent,
                digests_sent: s.digests_sent,
                failures: s.failures,
                last_sent: s.last_sent,
                last_error: s.last_error.as_deref().map(redact),
            })
            .collect())
    }
}

/// What a test send did.
#[derive(SimpleObject)]
pub struct ChannelTest {
    ok: bool,
    error: Option<String>,
}

fn notifier(ctx: &Context<'_>) -> async_graphql::Result<std::sync::Arc<crate::notify::Notifier>> {
    super::state(ctx)?
        .notifier
        .clone()
        .ok_or_else(|| coded("NOT_CONFIGURED", "notifications are off"))
}

#[Object]
impl NotificationsMutation {
    /// Creates or replaces a channel: `channel` is what one entry of
    /// `notifications.channels` holds in the config (docs/NOTIFICATIONS.md),
    /// as JSON. Checked as `secmon config check` checks the files; stored
    /// and audited (secrets as `***`); it sends from the next alert on.
    async fn set_notification_channel(
        &self,
        ctx: &Context<'_>,
        channel: Json<serde_json::Value>,
    ) -> async_graphql::Result<bool> {
        let admin: CanAdminister = grant(ctx)?;
        let channel: crate::config::Channel = serde_json::from_value(channel.0)
            .map_err(|e| coded("BAD_REQUEST", format!("channel: {e}")))?;
        let mut check = crate::config::Config::default();
        check.notifications.channels = vec![channel.clone()];
        let problems: Vec<String> = crate::config::validate(&check)
            .into_iter()
            .filter(|p| p.key.starts_with("notifications."))
            .map(|p| {
                format!(
                    "{}: {}",
                    p.key.trim_start_matches("notifications.channels[0]."),
                    p.reason
                )
            })
            .collect();
        if !problems.is_empty() {
            return Err(coded("BAD_REQUEST", problems.join("; ")));
        }
        notifier(ctx)?
            .set(admin.actor(), channel)
            .await
            .map_err(|e| coded("BAD_REQUEST", e))?;
        Ok(true)
    }

    /// Deletes a channel created over the API; false when there is none.
    async fn delete_notification_channel(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<bool> {
        let admin: CanAdminister = grant(ctx)?;
        notifier(ctx)?
            .delete(admin.actor(), &name)
            .await
            .map_err(|e| coded("BAD_REQUEST", e))
    }

    /// Sends a sample alert on `name` now and says whether it went through.
    async fn test_notification_channel(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<ChannelTest> {
        let admin: CanAdminister = grant(ctx)?;
        let app = super::state(ctx)?;
        let notifier = app
            .notifier
            .clone()
            .ok_or_else(|| coded("NOT_FOUND", format!("no channel {name}")))?;
        if !notifier.channels().iter().any(|(c, _, _)| c.name == name) {
            return Err(coded("NOT_FOUND", format!("no channel {name}")));
        }
        let result = notifier.test(&name).await;
        let record = Record::new("notification.test")
            .target(name.clone())
            .after(serde_json::json!({ "ok": result.is_ok(), "error": result.as_ref().err() }));
        let actor = admin.actor().clone();
        blocking(move || app.store.audit(&actor, record).map_err(internal)).await?;
        Ok(ChannelTest {
            ok: result.is_ok(),
            error: result.err(),
        })
    }
}
