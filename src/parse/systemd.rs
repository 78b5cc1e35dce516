//! systemd (PID 1) unit state messages.
//!
//! Dataset `systemd`, category `process`, `fields.systemd.unit` the unit
//! (or its description, which is what older systemd logs). Actions:
//! `unit_started` (`Started X.`), `unit_stopped` (`Stopped X.`),
//! `unit_failed` (`X: Failed with result '...'.`, `Failed to start X.`),
//! outcome failure for the last, success otherwise. `Starting X...` /
//! `Stopping X...` are not claimed (no state change yet).

use serde_json::Value;

use super::{classify, set_field};
use crate::model::Event;

/// Parses one systemd message into `event`; true when recognised.
pub fn parse(msg: &str, event: &mut Event) -> bool {
    let m = msg.trim();
    let (unit, action, outcome) = if let Some(u) = m.strip_prefix("Started ") {
        (u, "unit_started", "success")
    } else if let Some(u) = m.strip_prefix("Stopped ") {
        (u, "unit_stopped", "success")
    } else if let Some(u) = m.strip_prefix("Failed to start ") {
        (u, "unit_failed", "failure")
    } else if let Some((u, _)) = m.split_once(": Failed with result ") {
        (u, "unit_failed", "failure")
    } else {
        return false;
    };
    let unit = unit.trim_end_matches('.').trim();
    if unit.is_empty() {
        return false;
    }
    set_field(event, "systemd.unit", Value::from(unit));
    classify(event, "systemd", "process", action, outcome);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        for (msg, action, unit) in [
            (
                "Started OpenBSD Secure Shell server.",
                "unit_started",
                "OpenBSD Secure Shell server",
            ),
            ("Stopped nginx.service.", "unit_stopped", "nginx.service"),
            (
                "nginx.service: Failed with result 'exit-code'.",
                "unit_failed",
                "nginx.service",
            ),
            (
                "Failed to start The nginx HTTP server.",
                "unit_failed",
                "The nginx HTTP server",
            ),
        ] {
            let mut e = Event::default();
            assert!(parse(msg, &mut e), "{msg}");
            assert_eq!(e.action.as_deref(), Some(action));
            assert_eq!(e.fields["systemd"]["unit"], unit);
        }
        assert!(!parse("Starting Daily apt...", &mut Event::default()));
    }
}
