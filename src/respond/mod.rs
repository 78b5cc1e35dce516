//! Active response: an alert blocks its source, runs a command or calls a
//! webhook, as `response.actions` say.
//!
//! The [`Responder`] reads alert updates from the outbox (its own cursor,
//! like the notification dispatcher): a new alert, or one firing again,
//! that matches an action triggers it. A block is a decision in redb
//! (`store::decisions`, audited, its length doubling for repeat offenders)
//! applied to an nftables set with the same expiry, so the kernel lifts it
//! on time; at start-up the table is rebuilt with every active decision.
//! Allow-listed networks are never blocked. `dry_run` logs and audits what
//! would happen and does nothing.

use std::net::IpAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Actor;
use crate::config::{ActionKind, Config, Response, ResponseAction};
use crate::notify::severity_rank;
use crate::replicate::{self, Sink, SinkError};
use crate::store::decisions::{BlockError, BlockRequest, Decision};
use crate::store::outbox::{AlertEvent, AlertSummary, Entry, Message};
use crate::store::{self, Store};
use crate::telemetry::metric;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("nftables: {0}")]
    Nft(String),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Replicate(#[from] replicate::Error),
    #[error("the webhook client: {0}")]
    Http(String),
}

/// Blocks and unblocks: the nftables table secmon owns.
pub struct Firewall {
    config: Response,
    store: Store,
    http: reqwest::Client,
}

/// Why a manual block was refused.
#[derive(Debug, thiserror::Error)]
pub enum BlockRefused {
    #[error("{0} is in response.allow: it is never blocked")]
    Allowed(IpAddr),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("{0}")]
    Apply(String),
}

impl Firewall {
    fn allowed(&self, ip: IpAddr) -> bool {
        self.config.allow.iter().any(|c| c.contains(ip))
    }

    fn set(ip: IpAddr) -> &'static str {
        if ip.is_ipv4() {
            "blocklist"
        } else {
            "blocklist6"
        }
    }

    /// Runs `nft -f -` with `script` on stdin.
    async fn nft(&self, script: &str) -> Result<(), String> {
        let mut argv = self.config.nft.clone();
        argv.extend(["-f".to_owned(), "-".to_owned()]);
        pipe(&argv, script.as_bytes()).await
    }

    /// Creates the table afresh (sets and the dropping input chain) and
    /// adds every active decision with what is left of it.
    async fn rebuild(&self) -> Result<usize, Error> {
        let table = &self.config.nft_table;
        let mut script = format!(
            "table inet {table}\ndelete table inet {table}\n\
             table inet {table} {{\n\
               set blocklist {{ type ipv4_addr; flags timeout; }}\n\
               set blocklist6 {{ type ipv6_addr; flags timeout; }}\n\
               chain input {{ type filter hook input priority -10; policy accept;\n\
                 ip saddr @blocklist drop\n\
                 ip6 saddr @blocklist6 drop\n\
               }}\n\
             }}\n"
        );
        let store = self.store.clone();
        let active = tokio::task::spawn_blocking(move || store.decisions(true))
            .await
            .map_err(|e| Error::Nft(e.to_string()))??;
        let now = Utc::now();
        for d in &active {
            if let Some(element) = element(d, now) {
                script.push_str(&format!(
                    "add element inet {table} {} {{ {element} }}\n",
                    Self::set(d.ip)
                ));
            }
        }
        self.nft(&script).await.map_err(Error::Nft)?;
        Ok(active.len())
    }

    async fn apply(&self, d: &Decision) -> Result<(), String> {
        let Some(element) = element(d, Utc::now()) else {
            return Ok(());
        };
        self.nft(&format!(
            "add element inet {} {} {{ {element} }}\n",
            self.config.nft_table,
            Self::set(d.ip)
        ))
        .await
    }

    /// Blocks `ip` (an analyst's decision, or an action's); applied at once.
    pub async fn block(
        &self,
        actor: &Actor,
        ip: IpAddr,
        reason: &str,
        alert_id: Option<u64>,
        duration: chrono::Duration,
    ) -> Result<Decision, BlockRefused> {
        if self.allowed(ip) {
            return Err(BlockRefused::Allowed(ip));
        }
        let max_duration = chrono::Duration::from_std(self.config.max_block_duration.0)
            .unwrap_or(chrono::Duration::days(7));
        let origin = if alert_id.is_some() {
            "alert"
        } else {
            "manual"
        };
        let request = BlockRequest {
            ip,
            reason: reason.to_owned(),
            origin,
            alert_id,
            by: actor.name.clone(),
            duration,
            max_duration,
            max_active: self.config.max_active_blocks,
        };
        let (store, actor) = (self.store.clone(), actor.clone());
        let decision = tokio::task::spawn_blocking(move || store.add_decision(&actor, &request))
            .await
            .map_err(|e| BlockRefused::Apply(e.to_string()))??;
        metrics::counter!(metric::RESPONSE_BLOCKS, "origin" => origin).increment(1);
        if let Err(e) = self.apply(&decision).await {
            // Recorded: the next start (or rebuild) applies it.
            metrics::counter!(metric::RESPONSE_ERRORS, "action" => "block").increment(1);
            tracing::error!(ip = %ip, error = %e, "block recorded but not applied");
            return Err(BlockRefused::Apply(e));
        }
        tracing::info!(ip = %ip, until = %decision.expires_at, offence = decision.offence, reason, "blocked");
        Ok(decision)
    }

    /// Lifts the block of `ip` now.
    pub async fn unblock(&self, actor: &Actor, ip: IpAddr) -> Result<Option<Decision>, String> {
        let store = self.store.clone();
        let actor = actor.clone();
        let ended = tokio::task::spawn_blocking(move || store.remove_decision(&actor, ip))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if ended.is_some() {
            self.nft(&format!(
                "delete element inet {} {} {{ {ip} }}\n",
                self.config.nft_table,
                Self::set(ip)
            ))
            .await?;
            tracing::info!(ip = %ip, "unblocked");
        }
        Ok(ended)
    }
}

/// `<ip> timeout <seconds>s` for what is left of `d`; `None` once expired.
fn element(d: &Decision, now: chrono::DateTime<Utc>) -> Option<String> {
    let left = (d.expires_at - now).num_seconds();
    (left > 0).then(|| format!("{} timeout {left}s", d.ip))
}

/// Whether `action` fires for this alert update: a new alert or one
/// firing again, of its rules or (without rules) of its severity or above.
pub fn triggers(action: &ResponseAction, alert: &AlertSummary) -> bool {
    matches!(alert.event, AlertEvent::Raised | AlertEvent::Repeated)
        && if action.rules.is_empty() {
            severity_rank(&alert.severity) >= severity_rank(&action.min_severity)
        } else {
            action.rules.contains(&alert.rule_id)
        }
}

/// The outbox consumer that runs the actions.
pub struct Responder {
    firewall: Arc<Firewall>,
}

impl Sink for Responder {
    const NAME: &'static str = "respond";

    async fn apply(&mut self, entries: &[Entry]) -> Result<u64, SinkError> {
        let mut done = 0;
        for entry in entries {
            let Message::Alert(alert) = &entry.message else {
                continue;
            };
            for action in &self.firewall.config.actions {
                if triggers(action, alert) {
                    self.run(action, alert).await?;
                    done += 1;
                }
            }
        }
        Ok(done)
    }
}

impl Responder {
    /// Runs one action. Only a failure to record (redb) is an error, which
    /// retries the batch; a block that is refused (allow-listed, active,
    /// too many) or a command that fails is logged and counted.
    async fn run(&self, action: &ResponseAction, alert: &AlertSummary) -> Result<(), SinkError> {
        let actor = Actor::system(&format!("response:{}", action.name));
        let fw = &self.firewall;
        let source: Option<IpAddr> = alert.source_ip.as_deref().and_then(|s| s.parse().ok());
        if fw.config.dry_run {
            tracing::info!(action = %action.name, kind = ?action.kind, alert = alert.alert_id, source = ?source, "dry run: would respond");
            let record = crate::store::audit::Record::new("response.dry_run")
                .target(action.name.clone())
                .after(
                    serde_json::json!({"alert_id": alert.alert_id, "source_ip": alert.source_ip}),
                );
            let store = fw.store.clone();
            return tokio::task::spawn_blocking(move || store.audit(&actor, record))
                .await
                .map_err(|e| SinkError(e.to_string()))?
                .map(|_| ())
                .map_err(|e| SinkError(e.to_string()));
        }
        let result = match action.kind {
            ActionKind::Block => {
                let Some(ip) = source else {
                    return Ok(());
                };
                let duration = chrono::Duration::from_std(action.duration.0)
                    .unwrap_or(chrono::Duration::hours(1));
                match fw
                    .block(
                        &actor,
                        ip,
                        &alert.rule_title,
                        Some(alert.alert_id),
                        duration,
                    )
                    .await
                {
                    Ok(_) | Err(BlockRefused::Block(BlockError::Active(..))) => Ok(()),
                    Err(BlockRefused::Block(BlockError::Store(e))) => {
                        return Err(SinkError(e.to_string()));
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            ActionKind::Command => {
                pipe(
                    &action.command,
                    &serde_json::to_vec(alert).unwrap_or_default(),
                )
                .await
            }
            ActionKind::Webhook => match &action.url {
                Some(url) => fw
                    .http
                    .post(url.expose())
                    .json(alert)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => Err("no url".into()),
            },
        };
        if let Err(e) = result {
            let kind = format!("{:?}", action.kind).to_lowercase();
            metrics::counter!(metric::RESPONSE_ERRORS, "action" => kind).increment(1);
            tracing::warn!(action = %action.name, alert = alert.alert_id, error = %e, "response action failed");
        } else if action.kind != ActionKind::Block {
            let record = crate::store::audit::Record::new("response.run")
                .target(action.name.clone())
                .after(
                    serde_json::json!({"alert_id": alert.alert_id, "source_ip": alert.source_ip}),
                );
            let store = fw.store.clone();
            tokio::task::spawn_blocking(move || store.audit(&actor, record))
                .await
                .map_err(|e| SinkError(e.to_string()))?
                .map_err(|e| SinkError(e.to_string()))?;
        }
        Ok(())
    }
}

/// Runs `argv` with `input` on stdin; fails on a non-zero exit or after
/// [`TIMEOUT`], with its stderr.
async fn pipe(argv: &[String], input: &[u8]) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("no command".into());
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .await
            .map_err(|e| format!("{program}: {e}"))?;
    }
    let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("{program} did not finish in {}s", TIMEOUT.as_secs()))?
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Sets up the firewall (not in a dry run) and starts the responder on
/// the outbox when there are actions. `None` unless `response.enabled`.
pub async fn start(
    config: &Config,
    store: &Store,
    head: &watch::Receiver<u64>,
    status: &replicate::Status,
    (tasks, shutdown): (&TaskTracker, &CancellationToken),
) -> Result<Option<Arc<Firewall>>, Error> {
    if !config.response.enabled {
        return Ok(None);
    }
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(
            crate::tls::client_config(None).map_err(|e| Error::Http(e.to_string()))?,
        )
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| Error::Http(e.to_string()))?;
    let firewall = Arc::new(Firewall {
        config: config.response.clone(),
        store: store.clone(),
        http,
    });
    if !config.response.dry_run {
        let reapplied = firewall.rebuild().await?;
        tracing::info!(table = %config.response.nft_table, reapplied, "nftables block set ready");
    }
    // From zero, so the first block or failure shows as an increase.
    for origin in ["alert", "manual"] {
        metrics::counter!(metric::RESPONSE_BLOCKS, "origin" => origin).increment(0);
    }
    for action in &config.response.actions {
        let kind = format!("{:?}", action.kind).to_lowercase();
        metrics::counter!(metric::RESPONSE_ERRORS, "action" => kind).increment(0);
    }
    if !config.response.actions.is_empty() {
        let responder = Responder {
            firewall: firewall.clone(),
        };
        replicate::spawn(config, store, responder, status, head, (tasks, shutdown)).await?;
    }
    tasks.spawn(purge_loop(store.clone(), shutdown.clone()));
    Ok(Some(firewall))
}

/// Deletes decisions expired more than a day ago, hourly.
async fn purge_loop(store: Store, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let store = store.clone();
        let cutoff = Utc::now() - chrono::Duration::days(1);
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.purge_decisions(cutoff)).await
        {
            tracing::warn!(error = %e, "cannot purge expired decisions");
        }
    }
}
