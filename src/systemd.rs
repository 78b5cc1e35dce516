//! The systemd service protocol (`Type=notify`): readiness, status,
//! stopping, and watchdog keep-alives. Without `NOTIFY_SOCKET` (not run by
//! systemd) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

/// Tells the service manager the daemon is up: listeners bound, store open.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells the service manager a graceful shutdown has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

/// How often to send a keep-alive: half of `WatchdogSec=`, or `None` when
/// the watchdog is off. As libsystemd's `sd_watchdog_enabled`:
/// `WATCHDOG_USEC` set and `WATCHDOG_PID`, when set, this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    let for_us =
        std::env::var("WATCHDOG_PID").map_or(true, |pid| pid.parse() == Ok(std::process::id()));
    (usec > 0 && for_us).then(|| Duration::from_micros(usec / 2))
}

/// One keep-alive: the caller sends it only while the pipeline is alive, so a
/// hung runtime or a dead writer lets systemd restart the service.
pub fn keep_alive() {
    send(&[NotifyState::Watchdog]);
}

fn send(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}
