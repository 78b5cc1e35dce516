//! Active response: an alert blocks its source, runs a command or calls a
//! webhook, as `response.actions` say.
//!
//! The [`Responder`] reads alert updates from the outbox (its own cursor,
//! like the notification dispatcher): a new alert, or one firing again,
//! that matches an action triggers it, when the events of that firing all
//! came from trusted sources (`response.require_trusted_sources`). A block
//! is a decision in redb (`store::decisions`, audited, its length doubling
//! for repeat offenders) applied to an nftables set with the same expiry,
//! so the kernel lifts it on time; at start-up the table is rebuilt with
//! every active decision.
//!
//! Every block, an action's or an analyst's, goes through
//! [`Firewall::block`]: never an address of [`protect`] (loopback,
//! link-local, the node's own, trusted proxies, the allow-list), at most
//! `max_new_blocks_per_minute` new ones from alerts (untrusted alerts,
//! when allowed at all, from a bucket and a share of `max_active_blocks`
//! of their own, so they never starve trusted ones), then
//! [`crate::store::decisions::plan`]. A dry run takes the same path into a ledger
//! of its own and stops short of nftables, so it reports exactly what a
//! real run would do. What is refused is counted
//! (`secmon_response_refused_total{reason}`) and audited at most once a
//! minute per reason ([`refusals`]).

pub mod protect;
pub mod rate;
pub mod refusals;

use std::net::IpAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Actor;
use crate::config::{ActionKind, Config, Response, ResponseAction};
use crate::notify::severity_rank;
use crate::replicate::{self, Applied, Sink, SinkError};
use crate::store::decisions::{BlockError, BlockRequest, Decision, Ledger};
use crate::store::outbox::{AlertEvent, AlertSummary, Entry, Message};
use crate::store::{self, Store};
use crate::telemetry::metric;

const TIMEOUT: Duration = Duration::from_secs(10);

/// How often the node's addresses are enumerated again and refusals are
/// audited (at most one entry per reason in this time).
const MAINTENANCE: Duration = Duration::from_secs(60);

use protect::{OwnAddresses, Protected, Protection};
use rate::Bucket;
use refusals::{Reason, RefusalLog};

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
    protected: Protected,
    /// New blocks from alerts: trusted ones, untrusted ones.
    buckets: Mutex<(Bucket, Bucket)>,
    refusals: Mutex<RefusalLog>,
}

/// Who asks for a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An analyst over the API.
    Manual,
    /// A response action, for this alert; `trusted` when the events of its
    /// firing all came from trusted sources.
    Alert { alert_id: u64, trusted: bool },
}

/// A block taken: applied to nftables, or in a dry run only recorded in the
/// dry run's ledger.
#[derive(Debug, Clone)]
pub struct Blocked {
    pub decision: Decision,
    pub dry_run: bool,
}

/// Why a block was refused.
#[derive(Debug, thiserror::Error)]
pub enum BlockRefused {
    #[error(
        "the alert's events did not all come from trusted sources (response.require_trusted_sources)"
    )]
    Untrusted,
    #[error("{ip} is never blocked: {}", protection.why())]
    Protected { ip: IpAddr, protection: Protection },
    #[error("{0} new blocks a minute from alerts is the most allowed ({1}): try again later")]
    RateLimited(u32, &'static str),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("{0}")]
    Apply(String),
}

impl BlockRefused {
    /// The reason counted and audited, for refusals of the policy (not for
    /// an address blocked already, or a failure).
    fn reason(&self) -> Option<Reason> {
        match self {
            BlockRefused::Untrusted => Some(Reason::UntrustedSource),
            BlockRefused::Protected { .. } => Some(Reason::ProtectedAddress),
            BlockRefused::RateLimited(..) => Some(Reason::RateLimited),
            BlockRefused::Block(BlockError::Full(_)) => Some(Reason::MaxActive),
            BlockRefused::Block(BlockError::FullUntrusted(_)) => Some(Reason::MaxActiveUntrusted),
            BlockRefused::Block(BlockError::Active(..) | BlockError::Store(_))
            | BlockRefused::Apply(_) => None,
        }
    }
}

impl Firewall {
    /// The firewall of `config.response`, never blocking `own` (the node's
    /// addresses) nor `auth.trusted_proxies`; nothing is applied yet.
    pub fn new(
        config: &Config,
        store: Store,
        http: reqwest::Client,
        own: OwnAddresses,
    ) -> Firewall {
        let r = &config.response;
        let now = Instant::now();
        Firewall {
            config: r.clone(),
            store,
            http,
            protected: Protected::new(r.allow.clone(), config.auth.trusted_proxies.clone(), own),
            buckets: Mutex::new((
                Bucket::per_minute(r.max_new_blocks_per_minute, now),
                Bucket::per_minute(r.max_new_untrusted_blocks_per_minute, now),
            )),
            refusals: Mutex::new(RefusalLog::new(MAINTENANCE, r.dry_run)),
        }
    }

    fn ledger(&self) -> Ledger {
        if self.config.dry_run {
            Ledger::DryRun
        } else {
            Ledger::Real
        }
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

    /// Blocks `ip` (an analyst's decision, or an action's): the one
    /// decision function of real and dry runs. In order: an alert whose
    /// events were not all from trusted sources (with
    /// `require_trusted_sources`), a protected address, an address blocked
    /// already, the rate of new blocks from alerts; then the decision is
    /// recorded with its audit entry, the bounds (`max_active_blocks`, the
    /// untrusted share) checked in the same transaction
    /// ([`crate::store::decisions::plan`]), and, unless in a dry run, applied at
    /// once. Policy refusals are counted and audited (bounded).
    pub async fn block(
        &self,
        actor: &Actor,
        ip: IpAddr,
        reason: &str,
        origin: Origin,
        duration: chrono::Duration,
    ) -> Result<Blocked, BlockRefused> {
        let ip = ip.to_canonical();
        let result = self.decide(actor, ip, reason, origin, duration).await;
        if let Err(refused) = &result
            && let Some(why) = refused.reason()
        {
            let mut example = serde_json::json!({"ip": ip, "by": actor.name});
            if let Origin::Alert { alert_id, trusted } = origin {
                example["alert_id"] = alert_id.into();
                example["trusted"] = trusted.into();
            } else {
                example["origin"] = "manual".into();
            }
            if let BlockRefused::Protected { protection, .. } = refused {
                example["protection"] = protection.as_str().into();
            }
            self.refused(why, example);
        }
        result
    }

    async fn decide(
        &self,
        actor: &Actor,
        ip: IpAddr,
        reason: &str,
        origin: Origin,
        duration: chrono::Duration,
    ) -> Result<Blocked, BlockRefused> {
        let (alert_id, trusted) = match origin {
            Origin::Manual => (None, true),
            Origin::Alert { alert_id, trusted } => (Some(alert_id), trusted),
        };
        if !trusted && self.config.require_trusted_sources {
            return Err(BlockRefused::Untrusted);
        }
        if let Some(p) = self.protected.check(ip) {
            return Err(BlockRefused::Protected { ip, protection: p });
        }
        let max_duration = chrono::Duration::from_std(self.config.max_block_duration.0)
            .unwrap_or(chrono::Duration::days(7));
        let origin_name = if alert_id.is_some() {
            "alert"
        } else {
            "manual"
        };
        let request = BlockRequest {
            ip,
            reason: reason.to_owned(),
            origin: origin_name,
            alert_id,
            by: actor.name.clone(),
            duration,
            max_duration,
            max_active: self.config.max_active_blocks,
            trusted,
            max_active_untrusted: self.config.max_active_untrusted_blocks,
        };
        let ledger = self.ledger();
        // Blocked already (an alert firing again): no token taken. The
        // bounds are checked when the decision is recorded, after the rate,
        // so a flood refused by the rate costs one lookup per alert.
        let store = self.store.clone();
        let current = tokio::task::spawn_blocking(move || store.active_decision(ip, ledger))
            .await
            .map_err(|e| BlockRefused::Apply(e.to_string()))?
            .map_err(BlockError::Store)?;
        if let Some(d) = current {
            return Err(BlockError::Active(ip, d.expires_at).into());
        }
        if alert_id.is_some() {
            let now = Instant::now();
            let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
            let (taken, limit, key) = if trusted {
                (
                    buckets.0.take(now),
                    self.config.max_new_blocks_per_minute,
                    "response.max_new_blocks_per_minute",
                )
            } else {
                (
                    buckets.1.take(now),
                    self.config.max_new_untrusted_blocks_per_minute,
                    "response.max_new_untrusted_blocks_per_minute",
                )
            };
            if !taken {
                return Err(BlockRefused::RateLimited(limit, key));
            }
        }
        let (store, actor) = (self.store.clone(), actor.clone());
        let decision =
            tokio::task::spawn_blocking(move || store.add_decision(&actor, &request, ledger))
                .await
                .map_err(|e| BlockRefused::Apply(e.to_string()))??;
        if ledger == Ledger::DryRun {
            tracing::info!(ip = %ip, until = %decision.expires_at, offence = decision.offence, reason, "dry run: would block");
            return Ok(Blocked {
                decision,
                dry_run: true,
            });
        }
        metrics::counter!(metric::RESPONSE_BLOCKS, "origin" => origin_name).increment(1);
        if let Err(e) = self.apply(&decision).await {
            // Recorded: the next start (or rebuild) applies it.
            metrics::counter!(metric::RESPONSE_ERRORS, "action" => "block").increment(1);
            tracing::error!(ip = %ip, error = %e, "block recorded but not applied");
            return Err(BlockRefused::Apply(e));
        }
        tracing::info!(ip = %ip, until = %decision.expires_at, offence = decision.offence, reason, "blocked");
        Ok(Blocked {
            decision,
            dry_run: false,
        })
    }

    /// Counts a refusal and notes it for the bounded audit.
    fn refused(&self, reason: Reason, example: serde_json::Value) {
        metrics::counter!(metric::RESPONSE_REFUSED, "reason" => reason.as_str()).increment(1);
        tracing::debug!(reason = reason.as_str(), %example, "response refused");
        self.refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .note(reason, example, Utc::now());
    }

    /// Writes the refusal audit entries that are due (`all`: every one
    /// noted), one `response.refused` entry per reason.
    pub async fn flush_refusals(&self, all: bool) {
        let due = self
            .refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .due(Instant::now(), all);
        if due.is_empty() {
            return;
        }
        let store = self.store.clone();
        let written = tokio::task::spawn_blocking(move || {
            let actor = Actor::system("response");
            for (reason, body) in due {
                let record = crate::store::audit::Record::new("response.refused")
                    .target(reason.as_str().to_owned())
                    .after(body);
                store.audit(&actor, record)?;
            }
            Ok::<_, store::Error>(())
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "response refusals were not audited"),
            Err(e) => tracing::error!(error = %e, "response refusals were not audited"),
        }
    }

    /// Why `ip` is never blocked, if it is not.
    pub fn protection(&self, ip: IpAddr) -> Option<Protection> {
        self.protected.check(ip)
    }

    /// Lifts the block of `ip` now.
    pub async fn unblock(&self, actor: &Actor, ip: IpAddr) -> Result<Option<Decision>, String> {
        let store = self.store.clone();
        let actor = actor.clone();
        let ended = tokio::task::spawn_blocking(move || store.remove_decision(&actor, ip))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if ended.is_some() && !self.config.dry_run {
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

    async fn apply(&mut self, _after: u64, entries: &[Entry]) -> Result<Applied, SinkError> {
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
        self.firewall.flush_refusals(false).await;
        Ok(Applied::Rows(done))
    }
}

impl Responder {
    /// Runs one action. Only a failure to record (redb) is an error, which
    /// retries the batch; a refused block (untrusted, protected, rate,
    /// bounds: counted and audited by [`Firewall::block`], or blocked
    /// already) or a command that fails is logged and counted.
    async fn run(&self, action: &ResponseAction, alert: &AlertSummary) -> Result<(), SinkError> {
        let actor = Actor::system(&format!("response:{}", action.name));
        let fw = &self.firewall;
        if fw.config.require_trusted_sources && !alert.trusted {
            fw.refused(
                Reason::UntrustedSource,
                serde_json::json!({
                    "alert_id": alert.alert_id,
                    "rule_id": alert.rule_id,
                    "action": action.name,
                    "source_ip": alert.source_ip,
                }),
            );
            return Ok(());
        }
        let source: Option<IpAddr> = alert.source_ip.as_deref().and_then(|s| s.parse().ok());
        let result = match action.kind {
            ActionKind::Block => {
                let Some(ip) = source else {
                    return Ok(());
                };
                let duration = chrono::Duration::from_std(action.duration.0)
                    .unwrap_or(chrono::Duration::hours(1));
                let origin = Origin::Alert {
                    alert_id: alert.alert_id,
                    trusted: alert.trusted,
                };
                match fw
                    .block(&actor, ip, &alert.rule_title, origin, duration)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(BlockRefused::Block(BlockError::Store(e))) => {
                        return Err(SinkError(e.to_string()));
                    }
                    Err(BlockRefused::Apply(e)) => Err(e),
                    // Blocked already, or refused (counted and audited).
                    Err(_) => Ok(()),
                }
            }
            _ if fw.config.dry_run => {
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
                    .map_err(crate::notify::redact::http_error),
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
        // The action's URL is a credential: a redirect would carry the
        // alert somewhere else.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::Http(e.to_string()))?;
    let own = tokio::task::spawn_blocking(OwnAddresses::enumerate)
        .await
        .map_err(|e| Error::Nft(e.to_string()))?;
    let r = &config.response;
    let firewall = Arc::new(Firewall::new(config, store.clone(), http, own));
    tracing::info!(
        own_addresses = firewall.protected.own_count(),
        allow = r.allow.len(),
        trusted_proxies = config.auth.trusted_proxies.len(),
        require_trusted_sources = r.require_trusted_sources,
        max_new_blocks_per_minute = r.max_new_blocks_per_minute,
        dry_run = r.dry_run,
        "active response: never blocking loopback, link-local, multicast, broadcast, this node's addresses, trusted proxies and the allow-list"
    );
    if !r.require_trusted_sources {
        tracing::warn!(
            "response.require_trusted_sources is false: forged log lines from untrusted sources can trigger response actions"
        );
    }
    if !r.dry_run {
        let reapplied = firewall.rebuild().await?;
        tracing::info!(table = %r.nft_table, reapplied, "nftables block set ready");
    }
    // From zero, so the first block or failure shows as an increase.
    for origin in ["alert", "manual"] {
        metrics::counter!(metric::RESPONSE_BLOCKS, "origin" => origin).increment(0);
    }
    for reason in Reason::ALL {
        metrics::counter!(metric::RESPONSE_REFUSED, "reason" => reason.as_str()).increment(0);
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
    tasks.spawn(maintenance_loop(firewall.clone(), shutdown.clone()));
    Ok(Some(firewall))
}

/// Every minute: enumerates the node's addresses again and audits the
/// refusals that are due; hourly: deletes decisions expired more than a
/// day ago. At shutdown, audits every refusal left.
async fn maintenance_loop(firewall: Arc<Firewall>, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(MAINTENANCE);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => {
                firewall.flush_refusals(true).await;
                return;
            }
        }
        ticks += 1;
        if let Ok(own) = tokio::task::spawn_blocking(OwnAddresses::enumerate).await {
            firewall.protected.refresh(own);
        }
        firewall.flush_refusals(false).await;
        if ticks % 60 == 1 {
            let store = firewall.store.clone();
            let cutoff = Utc::now() - chrono::Duration::days(1);
            if let Ok(Err(e)) =
                tokio::task::spawn_blocking(move || store.purge_decisions(cutoff)).await
            {
                tracing::warn!(error = %e, "cannot purge expired decisions");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firewall(store: &Store, response: &str) -> Firewall {
        let mut config = Config {
            response: serde_saphyr::from_str(response).unwrap(),
            ..Config::default()
        };
        config.auth.trusted_proxies =
            vec![crate::config::Cidr::try_from("198.51.100.0/24".to_owned()).unwrap()];
        crate::install_crypto_provider();
        Firewall::new(
            &config,
            store.clone(),
            reqwest::Client::new(),
            OwnAddresses::default(),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const fn alert(alert_id: u64, trusted: bool) -> Origin {
        Origin::Alert { alert_id, trusted }
    }

    /// The refusal of `origin`'s block of `addr`, or `None` when blocked.
    async fn refusal(fw: &Firewall, addr: &str, origin: Origin) -> Option<String> {
        let actor = Actor::system("response:test");
        match fw
            .block(&actor, ip(addr), "test", origin, chrono::Duration::hours(1))
            .await
        {
            Ok(b) => {
                assert!(b.dry_run);
                None
            }
            Err(BlockRefused::Protected { protection, .. }) => {
                Some(format!("protected {}", protection.as_str()))
            }
            Err(BlockRefused::Block(BlockError::Active(..))) => Some("active".into()),
            Err(e) => Some(
                e.reason()
                    .map_or_else(|| e.to_string(), |r| r.as_str().to_owned()),
            ),
        }
    }

    #[tokio::test]
    async fn one_decision_function_trust_protection_ledger_then_rate() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let fw = firewall(
            &store,
            "enabled: true\ndry_run: true\nallow: ['192.0.2.0/24']\n\
             max_new_blocks_per_minute: 2\nmax_new_untrusted_blocks_per_minute: 1\n",
        );
        let cases: &[(&str, Origin, Option<&str>)] = &[
            // Untrusted alerts first: refused before anything else.
            ("203.0.113.1", alert(1, false), Some("untrusted_source")),
            ("127.0.0.1", alert(2, false), Some("untrusted_source")),
            // Protected, whoever asks.
            ("127.0.0.1", alert(3, true), Some("protected loopback")),
            (
                "::ffff:127.0.0.1",
                Origin::Manual,
                Some("protected loopback"),
            ),
            ("192.0.2.9", alert(4, true), Some("protected allow_list")),
            (
                "198.51.100.9",
                Origin::Manual,
                Some("protected trusted_proxy"),
            ),
            ("fe80::1", alert(5, true), Some("protected link_local")),
            // Two new blocks a minute from alerts.
            ("203.0.113.1", alert(6, true), None),
            // Blocked already: takes no token.
            ("203.0.113.1", alert(7, true), Some("active")),
            ("203.0.113.2", alert(8, true), None),
            ("203.0.113.3", alert(9, true), Some("rate_limited")),
            // An analyst is not rate-bound.
            ("203.0.113.4", Origin::Manual, None),
        ];
        for (addr, origin, expected) in cases {
            assert_eq!(
                refusal(&fw, addr, *origin).await.as_deref(),
                *expected,
                "{addr} {origin:?}"
            );
        }
        // A dry run's blocks are recorded in its own ledger, as a real
        // run's would be; none in the real one.
        assert!(store.decisions(false).unwrap().is_empty());
        let audited: Vec<(String, Option<String>)> = store
            .audit_entries(None, 100)
            .unwrap()
            .0
            .into_iter()
            .map(|e| (e.action, e.target))
            .rev()
            .collect();
        assert_eq!(
            audited,
            ["203.0.113.1", "203.0.113.2", "203.0.113.4"]
                .map(|t| ("response.dry_run".to_owned(), Some(t.to_owned())))
        );
        // Refusals: one audit entry per reason, with the count.
        fw.flush_refusals(false).await;
        let refused: Vec<(Option<String>, u64)> = store
            .audit_entries(None, 100)
            .unwrap()
            .0
            .into_iter()
            .filter(|e| e.action == "response.refused")
            .map(|e| (e.target, e.after.unwrap()["count"].as_u64().unwrap()))
            .collect();
        let mut refused = refused;
        refused.sort();
        assert_eq!(
            refused,
            [
                (Some("protected_address".to_owned()), 5),
                (Some("rate_limited".to_owned()), 1),
                (Some("untrusted_source".to_owned()), 2),
            ]
        );
    }

    #[tokio::test]
    async fn untrusted_alerts_have_a_bucket_of_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let fw = firewall(
            &store,
            "enabled: true\ndry_run: true\nrequire_trusted_sources: false\n\
             max_new_blocks_per_minute: 1\nmax_new_untrusted_blocks_per_minute: 2\n\
             max_active_untrusted_blocks: 1\n",
        );
        let cases: &[(&str, Origin, Option<&str>)] = &[
            ("10.0.0.1", alert(1, false), None),
            // The untrusted share of active blocks is full.
            ("10.0.0.2", alert(2, false), Some("max_active_untrusted")),
            // Trusted ones are not held back by it, nor by their bucket.
            ("10.0.0.3", alert(3, true), None),
            ("10.0.0.4", alert(4, true), Some("rate_limited")),
        ];
        for (addr, origin, expected) in cases {
            assert_eq!(
                refusal(&fw, addr, *origin).await.as_deref(),
                *expected,
                "{addr} {origin:?}"
            );
        }
    }
}
