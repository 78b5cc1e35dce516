//! Sources: each turns bytes from the outside into events and submits them
//! to the store's writer, acknowledging the sender only after the commit.
//!
//! Each source marks its events `trusted` or not ([`Event::trusted`]), from
//! its configuration only: see [`listener_trusted`] for the syslog and GELF
//! listeners, `ingest.api_trusted` for the authenticated API,
//! `ingest.files.trusted` and `ingest.journald.trusted`.
//!
//! The TCP listeners (syslog TCP and TLS, GELF TCP) bound their connections
//! per listener and per source address (`ingest.connections`), and all of
//! them together to what the process's file descriptor limit leaves once
//! the rest of the node has its share ([`FD_HEADROOM_MIN`] and more): a
//! flood of connections on an ingest port cannot take the descriptors the
//! API needs. A connection that completes no frame within
//! `ingest.connections.idle_timeout_seconds` is closed, and an accept that
//! fails (EMFILE, ENFILE) backs off instead of spinning.

pub mod bulk;
pub mod file;
pub mod gelf;
pub mod http;
pub mod journald;
pub mod proxy;
pub mod syslog;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use chrono::Utc;

use crate::config::{Cidr, Connections, SyslogListener};
use crate::model::Event;
use crate::parse::{self, ParseOptions, RawRecord};
use crate::store::writer::{SubmitError, WriterHandle};
use crate::telemetry::metric;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why a request's events were not committed; nothing was acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The write queue is full: 429, retry later.
    Busy,
    /// The node is stopping: 503.
    Closed,
    /// The store could not commit (a full disk, say): 503.
    NotCommitted,
}

impl Refused {
    pub fn status(self) -> StatusCode {
        match self {
            Refused::Busy => StatusCode::TOO_MANY_REQUESTS,
            Refused::Closed | Refused::NotCommitted => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Registers a source's counters at zero when it starts, so a rate or an
/// increase sees its first event, refusal or loss. `lossy`: the source
/// drops what a full queue refuses (datagrams), else it answers 429.
pub fn count_from_zero(source: &'static str, lossy: bool) {
    metrics::counter!(metric::EVENTS_RECEIVED, "source" => source).increment(0);
    metrics::counter!(metric::EVENTS_REJECTED, "source" => source).increment(0);
    if lossy {
        metrics::counter!(metric::EVENTS_DROPPED, "source" => source).increment(0);
    } else {
        metrics::counter!(metric::INGEST_THROTTLED, "source" => source).increment(0);
    }
}

/// Queues `events` without waiting for room, then waits for their commit:
/// how the request/response sources (HTTP ingest, `_bulk`, GraphQL
/// `ingestEvents`) submit. They are all authenticated: their events are
/// marked trusted as `ingest.api_trusted` says, whatever they claim.
pub async fn commit(
    writer: &WriterHandle,
    batch: Batch,
    source: &'static str,
) -> Result<Range<u64>, Refused> {
    let trusted = writer.api_trusted();
    let Batch {
        mut events, bytes, ..
    } = batch;
    for event in &mut events {
        event.trusted = trusted;
    }
    let pending = writer
        .try_submit_sized(events, bytes)
        .map_err(|e| match e {
            SubmitError::Full => {
                metrics::counter!(metric::INGEST_THROTTLED, "source" => source).increment(1);
                Refused::Busy
            }
            SubmitError::Closed => Refused::Closed,
        })?;
    match pending.await {
        Ok(Ok(range)) => Ok(range),
        Ok(Err(e)) => {
            tracing::warn!(source, error = %e, "ingest batch not committed");
            Err(Refused::NotCommitted)
        }
        Err(_) => Err(Refused::Closed),
    }
}

/// A source's per-event counters, looked up once: `counter!` finds its
/// counter in the registry on every call, which cost about 1 400
/// instructions an event for the received and parsed counts.
#[derive(Clone)]
pub struct SourceCounters {
    source: &'static str,
    received: metrics::Counter,
    parsed: metrics::Counter,
    truncated: metrics::Counter,
}

impl SourceCounters {
    pub fn new(source: &'static str) -> SourceCounters {
        SourceCounters {
            source,
            received: metrics::counter!(metric::EVENTS_RECEIVED, "source" => source),
            parsed: metrics::counter!(metric::EVENTS_PARSED, "source" => source),
            truncated: metrics::counter!(metric::EVENTS_TRUNCATED, "source" => source),
        }
    }

    pub fn received(&self, n: u64) {
        self.received.increment(n);
    }

    /// Parses one framed record received now, counting it as received,
    /// parsed (a program parser knew it) and truncated.
    pub fn parse(&self, bytes: Vec<u8>, peer: Option<IpAddr>, opts: &ParseOptions) -> Event {
        self.received(1);
        let raw = RawRecord {
            bytes,
            source: self.source,
            peer,
            received_at: Utc::now(),
        };
        let event = parse::parse(&raw, opts);
        self.count_parsed(&event);
        event
    }

    /// Counts `event` as parsed and truncated where it is.
    pub fn count_parsed(&self, event: &Event) {
        if event.labels.contains_key("truncated") {
            self.truncated.increment(1);
        }
        if event.action.as_deref() == Some(parse::UNRECOGNISED) {
            if let Some(program) = event
                .process_name
                .as_deref()
                .and_then(parse::known_program)
                .map(|(p, _)| p)
            {
                metrics::counter!(metric::PARSE_UNRECOGNISED, "program" => program).increment(1);
            }
        } else if event.dataset.is_some() {
            self.parsed.increment(1);
        }
    }
}

/// How a syslog or GELF listener receives: what its source address is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Datagrams (`syslog_udp`, `gelf_udp`): the source address has no
    /// handshake behind it and anyone on the path can forge it.
    Udp,
    /// A TCP connection (`syslog_tcp`, `gelf_tcp`): the handshake proves
    /// the source address, not the sender.
    Tcp,
    /// TLS (`syslog_tls`); `client_certs` when it requires client
    /// certificates (`tls.syslog_client_ca_path`).
    Tls { client_certs: bool },
}

impl Transport {
    /// The transport of the listener named `source` (`syslog_udp`, ...).
    /// A name not listed here counts as UDP, the least trusted: a new
    /// listener is never trusted by default through a typo or an
    /// oversight.
    pub fn of(source: &str, client_certs: bool) -> Transport {
        match source {
            "syslog_tcp" | "gelf_tcp" => Transport::Tcp,
            "syslog_tls" => Transport::Tls { client_certs },
            _ => Transport::Udp,
        }
    }
}

/// Whether a syslog or GELF listener's events are trusted: its `trusted`
/// when set; else, for TCP and TLS, true when TLS requires client
/// certificates or `allow_sources` lists only private, loopback or
/// link-local networks, and false for a listener open to any address; and
/// for UDP always false, since a datagram's source address can be spoofed
/// and an allow-list of it proves nothing.
pub fn listener_trusted(cfg: &SyslogListener, transport: Transport) -> bool {
    cfg.trusted.unwrap_or_else(|| match transport {
        Transport::Udp => false,
        Transport::Tls { client_certs: true } => true,
        Transport::Tcp
        | Transport::Tls {
            client_certs: false,
        } => !cfg.allow_sources.is_empty() && cfg.allow_sources.iter().all(is_private),
    })
}

/// True when all of `net` lies in a private (RFC 1918, RFC 4193), loopback
/// or link-local range.
fn is_private(net: &Cidr) -> bool {
    const RANGES: &[(&str, u8)] = &[
        ("10.0.0.0", 8),
        ("172.16.0.0", 12),
        ("192.168.0.0", 16),
        ("127.0.0.0", 8),
        ("169.254.0.0", 16),
        ("fc00::", 7),
        ("fe80::", 10),
        ("::1", 128),
    ];
    let (addr, prefix) = match net.addr {
        IpAddr::V6(v6) if net.prefix >= 96 && v6.to_ipv4_mapped().is_some() => (
            v6.to_ipv4_mapped().map_or(net.addr, IpAddr::V4),
            net.prefix - 96,
        ),
        addr => (addr, net.prefix),
    };
    RANGES.iter().any(|(range, range_prefix)| {
        range.parse::<IpAddr>().is_ok_and(|range| {
            prefix >= *range_prefix
                && Cidr {
                    addr: range,
                    prefix: *range_prefix,
                }
                .contains(addr)
        })
    })
}

/// The least file descriptors the TCP ingest listeners leave to the rest
/// of the node (API connections, the store, the index, outgoing clients);
/// an eighth of the limit when that is more, up to [`FD_HEADROOM_MAX`].
pub const FD_HEADROOM_MIN: usize = 32;
pub const FD_HEADROOM_MAX: usize = 512;

/// Connections open on all TCP ingest listeners of the process.
static INGEST_OPEN: AtomicUsize = AtomicUsize::new(0);
/// How many of them the file descriptor limit leaves room for.
static FD_BUDGET: AtomicUsize = AtomicUsize::new(usize::MAX);

/// The soft RLIMIT_NOFILE of this process (from `/proc/self/limits`).
fn fd_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Descriptors this process has open now.
fn fds_open() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

/// What the ingest connections may use: the limit less the descriptors the
/// rest of the node holds (`open - ingest`) less the headroom.
fn fd_budget(limit: usize, open: usize, ingest: usize) -> usize {
    let headroom = (limit / 8).clamp(FD_HEADROOM_MIN, FD_HEADROOM_MAX);
    let others = open.saturating_sub(ingest);
    limit.saturating_sub(others + headroom)
}

/// Re-reads the descriptor limit and use; returns (limit, budget) when
/// `/proc` tells them.
fn refresh_fd_budget() -> Option<(usize, usize)> {
    let limit = fd_limit()?;
    let open = fds_open()?;
    let budget = fd_budget(limit, open, INGEST_OPEN.load(Ordering::Acquire));
    FD_BUDGET.store(budget, Ordering::Release);
    Some((limit, budget))
}

/// Why a new connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Full {
    Listener,
    Source,
    FdBudget,
}

impl Full {
    fn label(self) -> &'static str {
        match self {
            Full::Listener => "listener_full",
            Full::Source => "source_full",
            Full::FdBudget => "fd_budget",
        }
    }
}

/// A connection counted against the caps until it is dropped.
pub struct Slot {
    listener: Arc<Listener>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let l = &self.listener;
        if let Ok(mut open) = l.open.lock()
            && let Some(n) = open.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
        l.total.fetch_sub(1, Ordering::AcqRel);
        INGEST_OPEN.fetch_sub(1, Ordering::AcqRel);
        // Relative, so concurrent changes cannot leave a stale value.
        metrics::gauge!(metric::INGEST_CONNECTIONS, "source" => l.source).decrement(1.0);
    }
}

/// Is `e` the process or the system running out of file descriptors?
fn fd_exhausted(e: &std::io::Error) -> bool {
    // EMFILE, ENFILE (Linux).
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// First and longest pause after a failed accept.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often the descriptor budget is re-read (a changed limit applies).
const FD_REFRESH: Duration = Duration::from_secs(1);

/// Events a listener gathers for one submission: full at [`BATCH_EVENTS`]
/// events or [`BATCH_BYTES`], so a connection never holds more than about
/// that (plus one event) before it submits. A request source gathers a
/// request's events in one for [`commit`] (its body limit bounds them).
#[derive(Debug, Default)]
pub struct Batch {
    events: Vec<Event>,
    bytes: usize,
    /// How many events the batch before held.
    expected: usize,
}

/// Events per submission at most.
pub const BATCH_EVENTS: usize = 1024;
/// Bytes ([`Event::approx_bytes`]) past which a batch is submitted: about
/// 200 sshd lines with a syslog priority (about 5 KB each in memory, three
/// quarters of it the nodes of the six objects of their `fields`).
pub const BATCH_BYTES: usize = 1024 * 1024;

impl Batch {
    /// Adds `event`, counting its bytes while it is fresh in the cache (a
    /// request's thousands of events counted at once missed it on every
    /// map node).
    pub fn push(&mut self, event: Event) {
        if self.events.capacity() == 0 {
            // Room for as many as the last batch at the first event (a busy
            // listener's next batch is about as large; growing it from
            // nothing moved every event about twice). Not kept between
            // batches: an idle connection holds nothing.
            self.events.reserve(self.expected);
        }
        self.bytes += event.approx_bytes();
        self.events.push(event);
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn is_full(&self) -> bool {
        self.events.len() >= BATCH_EVENTS || self.bytes >= BATCH_BYTES
    }

    /// The events and their bytes, leaving the batch empty. Their vector
    /// has room for at most twice as many (a batch cut short of what it
    /// reserved gives the rest back): the writer and the indexer's
    /// hand-over keep these vectors, and count events, not room.
    fn take(&mut self) -> (Vec<Event>, usize) {
        self.expected = self.events.len();
        let mut events = std::mem::take(&mut self.events);
        if events.capacity() > 2 * events.len() {
            events.shrink_to_fit();
        }
        (events, std::mem::take(&mut self.bytes))
    }
}

/// What every unauthenticated listener (syslog, GELF) shares.
pub struct Listener {
    pub writer: WriterHandle,
    pub parse: ParseOptions,
    /// Networks allowed to send; empty means any.
    pub allow: Vec<Cidr>,
    /// Load balancers that put a PROXY protocol header before each stream
    /// ([`proxy`]): their connections carry another sender's address.
    pub proxies: Vec<Cidr>,
    /// The listener's name (`syslog_udp`, `gelf_tcp`, ...): the metric label.
    pub source: &'static str,
    pub counters: SourceCounters,
    /// Whether its events are trusted (see [`listener_trusted`]).
    pub trusted: bool,
    /// Connection caps and idle timeout (TCP listeners).
    pub limits: Connections,
    /// Open connections by source address, and in all.
    open: Mutex<HashMap<IpAddr, usize>>,
    total: AtomicUsize,
    /// Connections from `proxies` whose header is still being read (at
    /// most `limits.max_per_listener`).
    pending_headers: AtomicUsize,
}

impl Listener {
    pub fn new(
        writer: WriterHandle,
        parse: ParseOptions,
        (allow, proxies): (Vec<Cidr>, Vec<Cidr>),
        source: &'static str,
        trusted: bool,
        limits: Connections,
    ) -> Listener {
        Listener {
            writer,
            parse,
            allow,
            proxies,
            source,
            counters: SourceCounters::new(source),
            trusted,
            limits,
            open: Mutex::new(HashMap::new()),
            total: AtomicUsize::new(0),
            pending_headers: AtomicUsize::new(0),
        }
    }

    pub fn allowed(&self, peer: SocketAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(peer.ip()))
    }

    pub fn event(&self, bytes: Vec<u8>, peer: SocketAddr) -> Event {
        let mut event = self.counters.parse(bytes, Some(peer.ip()), &self.parse);
        // The listener's word, never the line's.
        event.trusted = self.trusted;
        event
    }

    /// How long a connection may take to complete its next frame.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.idle_timeout_seconds)
    }

    /// Counts a connection closed for idling (no frame within the timeout).
    pub fn closed_idle(&self, peer: SocketAddr) {
        metrics::counter!(metric::INGEST_CONNECTIONS_CLOSED, "source" => self.source, "reason" => "idle")
            .increment(1);
        tracing::debug!(source = self.source, %peer, "idle connection closed");
    }

    /// The connections it accepts at most now.
    fn max_now(&self) -> usize {
        self.limits
            .max_per_listener
            .min(FD_BUDGET.load(Ordering::Acquire))
    }

    /// Takes a slot for a connection from `ip`, or says which cap is full.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Full> {
        let mut open = self.open.lock().map_err(|_| Full::Listener)?;
        if self.total.load(Ordering::Acquire) >= self.limits.max_per_listener {
            return Err(Full::Listener);
        }
        if INGEST_OPEN.load(Ordering::Acquire) >= FD_BUDGET.load(Ordering::Acquire) {
            return Err(Full::FdBudget);
        }
        let from_ip = open.entry(ip).or_insert(0);
        if *from_ip >= self.limits.max_per_source {
            if *from_ip == 0 {
                open.remove(&ip);
            }
            return Err(Full::Source);
        }
        *from_ip += 1;
        self.total.fetch_add(1, Ordering::AcqRel);
        INGEST_OPEN.fetch_add(1, Ordering::AcqRel);
        metrics::gauge!(metric::INGEST_CONNECTIONS, "source" => self.source).increment(1.0);
        Ok(Slot {
            listener: self.clone(),
            ip,
        })
    }

    /// Re-reads the descriptor budget; logs it when the limit changed.
    fn size_to_fd_limit(&self, last_limit: &mut Option<usize>) {
        let Some((limit, budget)) = refresh_fd_budget() else {
            return;
        };
        metrics::gauge!(metric::INGEST_CONNECTIONS_MAX, "source" => self.source)
            .set(self.max_now() as f64);
        if *last_limit != Some(limit) {
            *last_limit = Some(limit);
            let max = self.max_now();
            if max < self.limits.max_per_listener {
                tracing::warn!(
                    source = self.source,
                    fd_limit = limit,
                    ingest_fd_budget = budget,
                    max_connections = max,
                    configured = self.limits.max_per_listener,
                    "ingest connections capped below ingest.connections.max_per_listener to fit the file descriptor limit: raise LimitNOFILE to accept more"
                );
            } else {
                tracing::info!(
                    source = self.source,
                    fd_limit = limit,
                    ingest_fd_budget = budget,
                    max_connections = max,
                    max_per_source = self.limits.max_per_source,
                    "ingest connections sized to the file descriptor limit"
                );
            }
        }
    }

    /// Counts a message from a sender outside the allow-list.
    pub fn refuse(&self, peer: SocketAddr) {
        metrics::counter!(metric::EVENTS_RECEIVED, "source" => self.source).increment(1);
        metrics::counter!(metric::EVENTS_REJECTED, "source" => self.source).increment(1);
        tracing::debug!(source = self.source, %peer, "sender not in allow_sources");
    }

    /// A connection from an allowed sender gets a slot; else it is refused
    /// (counted) and dropped.
    fn admit_sender(self: &Arc<Self>, peer: SocketAddr) -> Option<Slot> {
        if !self.allowed(peer) {
            self.refuse(peer);
            return None;
        }
        self.take_slot(peer)
    }

    /// [`Listener::admit`], counting and logging a refusal.
    fn take_slot(self: &Arc<Self>, peer: SocketAddr) -> Option<Slot> {
        match self.admit(peer.ip()) {
            Ok(slot) => Some(slot),
            Err(full) => {
                metrics::counter!(metric::INGEST_CONNECTIONS_REFUSED, "source" => self.source, "reason" => full.label())
                    .increment(1);
                tracing::debug!(source = self.source, %peer, reason = full.label(), "connection refused");
                None
            }
        }
    }

    /// The sender a connection from a load balancer in `proxies` speaks
    /// for, from its PROXY protocol header; `None` (counted, logged): no
    /// valid header in time, the connection is dropped.
    async fn proxied_sender(
        &self,
        stream: &mut TcpStream,
        balancer: SocketAddr,
    ) -> Option<SocketAddr> {
        let header = tokio::time::timeout(proxy::HEADER_TIMEOUT, proxy::read_header(stream)).await;
        let why = match header {
            Ok(Ok(sender)) => return Some(sender.unwrap_or(balancer)),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no PROXY protocol header in time".to_owned(),
        };
        metrics::counter!(metric::INGEST_CONNECTIONS_REFUSED, "source" => self.source, "reason" => "proxy_header")
            .increment(1);
        tracing::debug!(source = self.source, %balancer, reason = %why, "connection from a load balancer refused");
        None
    }

    /// Accepts connections until `shutdown`; each allowed one runs
    /// `connection` on its own task (refused senders are counted). A
    /// connection from `proxies` is first read for the sender's address,
    /// which the allow-list, the per-source cap and the events then see.
    pub async fn accept<F, Fut>(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: CancellationToken,
        tasks: TaskTracker,
        connection: F,
    ) where
        F: Fn(TcpStream, SocketAddr, Arc<Listener>, CancellationToken) -> Fut
            + Send
            + Sync
            + 'static,
        Fut: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let connection = Arc::new(connection);
        count_from_zero(self.source, true);
        for reason in ["listener_full", "source_full", "fd_budget", "proxy_header"] {
            metrics::counter!(metric::INGEST_CONNECTIONS_REFUSED, "source" => self.source, "reason" => reason)
                .increment(0);
        }
        metrics::counter!(metric::INGEST_CONNECTIONS_CLOSED, "source" => self.source, "reason" => "idle")
            .increment(0);
        for kind in ["fd_exhausted", "other"] {
            metrics::counter!(metric::INGEST_ACCEPT_ERRORS, "source" => self.source, "kind" => kind)
                .increment(0);
        }
        metrics::gauge!(metric::INGEST_CONNECTIONS, "source" => self.source).increment(0.0);
        let mut last_limit = None;
        self.size_to_fd_limit(&mut last_limit);
        let mut refresh = tokio::time::interval(FD_REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = Duration::ZERO;
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = refresh.tick() => {
                    self.size_to_fd_limit(&mut last_limit);
                    continue;
                }
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        let kind = if fd_exhausted(&e) { "fd_exhausted" } else { "other" };
                        metrics::counter!(metric::INGEST_ACCEPT_ERRORS, "source" => self.source, "kind" => kind)
                            .increment(1);
                        // Once per episode: the backoff keeps it from flooding the log.
                        if backoff.is_zero() {
                            tracing::warn!(source = self.source, error = %e, kind, "accept failed: backing off until it succeeds");
                        }
                        backoff = (backoff * 2).clamp(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX);
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        continue;
                    }
                },
            };
            if !backoff.is_zero() {
                tracing::info!(source = self.source, "accepting connections again");
                backoff = Duration::ZERO;
            }
            let source = self.source;
            if self.proxies.iter().any(|net| net.contains(peer.ip())) {
                // The header is read on the connection's own task (within
                // proxy::HEADER_TIMEOUT, as many at once as the listener
                // takes connections); the slot is the sender's.
                if self.pending_headers.fetch_add(1, Ordering::AcqRel)
                    >= self.limits.max_per_listener
                {
                    self.pending_headers.fetch_sub(1, Ordering::AcqRel);
                    metrics::counter!(metric::INGEST_CONNECTIONS_REFUSED, "source" => source, "reason" => Full::Listener.label())
                        .increment(1);
                    continue;
                }
                let (this, connection, shutdown) =
                    (self.clone(), connection.clone(), shutdown.clone());
                tasks.spawn(async move {
                    let (mut stream, balancer) = (stream, peer);
                    let sender = tokio::select! {
                        _ = shutdown.cancelled() => None,
                        sender = this.proxied_sender(&mut stream, balancer) => sender,
                    };
                    this.pending_headers.fetch_sub(1, Ordering::AcqRel);
                    let Some(peer) = sender else {
                        return;
                    };
                    // The balancer speaking for itself (its health checks)
                    // is let in as the balancer.
                    let slot = if peer == balancer {
                        this.take_slot(peer)
                    } else {
                        this.admit_sender(peer)
                    };
                    let Some(_slot) = slot else {
                        return;
                    };
                    if let Err(e) = connection(stream, peer, this.clone(), shutdown).await {
                        tracing::debug!(source, %peer, error = %e, "connection ended");
                    }
                });
                continue;
            }
            // Refused: closed at once, the sender sees the connection end.
            let Some(slot) = self.admit_sender(peer) else {
                continue;
            };
            let done = connection(stream, peer, self.clone(), shutdown.clone());
            tasks.spawn(async move {
                let _slot = slot;
                if let Err(e) = done.await {
                    tracing::debug!(source, %peer, error = %e, "connection ended");
                }
            });
        }
    }

    /// Queues `batch` without waiting, for datagram sources that cannot
    /// slow their sender: a full queue drops it, counted.
    pub fn submit_nowait(&self, batch: &mut Batch) {
        if batch.is_empty() {
            return;
        }
        let n = batch.events.len() as u64;
        let (events, bytes) = batch.take();
        match self.writer.try_submit_sized(events, bytes) {
            // Nobody to acknowledge: the commit outcome is logged by the writer.
            Ok(_) => {}
            Err(SubmitError::Full | SubmitError::Closed) => {
                metrics::counter!(metric::EVENTS_DROPPED, "source" => self.source).increment(n);
            }
        }
    }

    /// Queues `batch` and waits for its commit, for stream sources: the next
    /// read waits, which slows the sender. An error closes the connection.
    pub async fn submit_wait(&self, batch: &mut Batch) -> std::io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.events.len() as u64;
        let (events, bytes) = batch.take();
        let committed = match self.writer.submit_sized(events, bytes, None).await {
            Ok(pending) => matches!(pending.await, Ok(Ok(_))),
            Err(_) => false,
        };
        if committed {
            Ok(())
        } else {
            metrics::counter!(metric::EVENTS_DROPPED, "source" => self.source).increment(n);
            // Closing the connection tells the sender to resend (rsyslog does).
            Err(std::io::Error::other(
                "the store did not commit; closing the connection",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(nets: &[&str]) -> Vec<Cidr> {
        nets.iter()
            .map(|n| n.to_string().try_into().unwrap())
            .collect()
    }

    fn listener_cfg(allow: &[&str], trusted: Option<bool>) -> SyslogListener {
        SyslogListener {
            allow_sources: cidrs(allow),
            trusted,
            ..SyslogListener::default()
        }
    }

    #[test]
    fn a_batch_is_sized_like_the_one_before_and_holds_nothing_between() {
        let mut batch = Batch::default();
        for _ in 0..300 {
            batch.push(Event::default());
        }
        let (events, _) = batch.take();
        assert_eq!(events.len(), 300);
        // Taken: an idle connection keeps no room for events.
        assert_eq!(batch.events.capacity(), 0);
        batch.push(Event::default());
        assert!(
            batch.events.capacity() >= 300,
            "room for the next 300 at the first event"
        );
        let (events, _) = batch.take();
        assert_eq!(events.len(), 1);
        assert!(events.capacity() <= 2, "what it did not use given back");
        batch.push(Event::default());
        assert!(
            batch.events.capacity() < 300,
            "sized by the last batch, not the largest"
        );
    }

    #[test]
    fn trust_defaults_follow_who_can_send() {
        use Transport::{Tcp, Tls, Udp};
        let certs = Tls { client_certs: true };
        let no_certs = Tls {
            client_certs: false,
        };
        let cases: &[(&[&str], Option<bool>, Transport, bool)] = &[
            // Open to any address: untrusted.
            (&[], None, Tcp, false),
            (&[], None, no_certs, false),
            (&["0.0.0.0/0"], None, Tcp, false),
            (&["10.0.0.0/8", "0.0.0.0/0"], None, Tcp, false),
            (&["10.0.0.0/7"], None, Tcp, false),
            (&["192.0.2.0/24"], None, no_certs, false),
            // TCP or TLS from private, loopback and link-local networks
            // only: trusted.
            (&["10.0.0.0/8", "192.168.1.0/24"], None, Tcp, true),
            (&["172.16.0.0/12", "127.0.0.1/32"], None, no_certs, true),
            (&["fd00::/8", "fe80::/64", "::1/128"], None, Tcp, true),
            (&["::ffff:10.1.0.0/112"], None, Tcp, true),
            // TLS with client certificates: trusted.
            (&[], None, certs, true),
            (&["0.0.0.0/0"], None, certs, true),
            // UDP: the source address can be forged, so no allow-list makes
            // it trusted by default.
            (&[], None, Udp, false),
            (&["0.0.0.0/0"], None, Udp, false),
            (&["10.0.0.0/8", "192.168.1.0/24"], None, Udp, false),
            (&["127.0.0.1/32"], None, Udp, false),
            (&["::1/128"], None, Udp, false),
            // An explicit setting wins.
            (&["10.0.0.0/8"], Some(false), certs, false),
            (&["10.0.0.0/8"], Some(false), Tcp, false),
            (&[], Some(true), Tcp, true),
            (&[], Some(true), Udp, true),
            (&["127.0.0.1/32"], Some(true), Udp, true),
        ];
        for (allow, trusted, transport, expected) in cases {
            assert_eq!(
                listener_trusted(&listener_cfg(allow, *trusted), *transport),
                *expected,
                "{allow:?} trusted={trusted:?} {transport:?}"
            );
        }
    }

    #[test]
    fn listener_names_map_to_their_transport() {
        assert_eq!(Transport::of("syslog_udp", true), Transport::Udp);
        assert_eq!(Transport::of("gelf_udp", true), Transport::Udp);
        assert_eq!(Transport::of("syslog_tcp", true), Transport::Tcp);
        assert_eq!(Transport::of("gelf_tcp", true), Transport::Tcp);
        assert_eq!(
            Transport::of("syslog_tls", true),
            Transport::Tls { client_certs: true }
        );
        assert_eq!(
            Transport::of("syslog_tls", false),
            Transport::Tls {
                client_certs: false
            }
        );
    }

    #[test]
    fn unknown_listener_names_are_untrusted_udp() {
        for name in [
            "",
            "syslog",
            "syslog_tcp2",
            "SYSLOG_TCP",
            "http",
            "journald",
        ] {
            assert_eq!(Transport::of(name, true), Transport::Udp, "{name:?}");
        }
        // So a private allow-list does not make an unknown listener trusted.
        let cfg = listener_cfg(&["10.0.0.0/8"], None);
        assert!(!listener_trusted(&cfg, Transport::of("mystery", false)));
    }

    #[test]
    fn the_fd_budget_leaves_the_rest_of_the_node_its_share() {
        // 1024 descriptors, 50 used by the node, none by ingest: 128 headroom.
        assert_eq!(fd_budget(1024, 50, 0), 1024 - 50 - 128);
        // Ingest connections count in the budget, not against it.
        assert_eq!(fd_budget(1024, 550, 500), 1024 - 50 - 128);
        assert_eq!(fd_budget(256, 40, 0), 256 - 40 - 32);
        assert_eq!(fd_budget(1 << 20, 100, 0), (1 << 20) - 100 - 512);
        // Nothing left: nothing accepted.
        assert_eq!(fd_budget(64, 60, 0), 0);
    }

    #[test]
    fn the_descriptor_limit_is_read_from_proc() {
        let limit = fd_limit().unwrap();
        let open = fds_open().unwrap();
        assert!(limit >= open && open > 2, "limit {limit}, open {open}");
    }

    #[tokio::test]
    async fn connections_are_capped_per_source_and_per_listener() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let (writer, _thread) = crate::store::writer::spawn(
            store,
            4,
            16,
            Arc::new(crate::store::indexer::Progress::new(0)),
            Default::default(),
            None,
        )
        .unwrap();
        let listener = Arc::new(Listener::new(
            writer,
            ParseOptions::default(),
            (Vec::new(), Vec::new()),
            "syslog_tcp",
            false,
            Connections {
                max_per_listener: 5,
                max_per_source: 2,
                idle_timeout_seconds: 300,
            },
        ));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = listener.admit(a).unwrap();
        let _a2 = listener.admit(a).unwrap();
        assert_eq!(listener.admit(a).err(), Some(Full::Source));
        let _b1 = listener.admit(b).unwrap();
        let _b2 = listener.admit(b).unwrap();
        // A closed connection frees its slot.
        drop(a1);
        let _a3 = listener.admit(a).unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        let _c1 = listener.admit(c).unwrap();
        assert_eq!(listener.admit(c).err(), Some(Full::Listener));
        assert_eq!(listener.total.load(Ordering::Acquire), 5);
    }

    #[test]
    fn descriptor_exhaustion_is_told_apart() {
        assert!(fd_exhausted(&std::io::Error::from_raw_os_error(24)));
        assert!(fd_exhausted(&std::io::Error::from_raw_os_error(23)));
        assert!(!fd_exhausted(&std::io::Error::from_raw_os_error(104)));
    }
}
