//! What the responder did not do, audited in a bounded way: one audit
//! entry per reason and per minute at most, with the count since the last
//! one and the first few examples, never one commit per forged line.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// Examples kept in one audit entry.
pub const EXAMPLES: usize = 5;

/// Why an action was not taken (the `reason` label of
/// `secmon_response_refused_total`, the target of `response.refused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// `response.require_trusted_sources` and an event of the alert came
    /// from an untrusted source.
    UntrustedSource,
    /// The address is never blocked (`respond::protect`).
    ProtectedAddress,
    /// Past `response.max_new_blocks_per_minute` (or the untrusted one).
    RateLimited,
    /// `response.max_active_blocks` are active.
    MaxActive,
    /// `response.max_active_untrusted_blocks` are active.
    MaxActiveUntrusted,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::UntrustedSource,
        Reason::ProtectedAddress,
        Reason::RateLimited,
        Reason::MaxActive,
        Reason::MaxActiveUntrusted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UntrustedSource => "untrusted_source",
            Reason::ProtectedAddress => "protected_address",
            Reason::RateLimited => "rate_limited",
            Reason::MaxActive => "max_active",
            Reason::MaxActiveUntrusted => "max_active_untrusted",
        }
    }
}

#[derive(Debug)]
struct Pending {
    count: u64,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    examples: Vec<Value>,
}

/// Refusals noted since each reason's last audit entry.
#[derive(Debug)]
pub struct RefusalLog {
    window: Duration,
    dry_run: bool,
    pending: BTreeMap<Reason, Pending>,
    written: BTreeMap<Reason, Instant>,
}

impl RefusalLog {
    pub fn new(window: Duration, dry_run: bool) -> RefusalLog {
        RefusalLog {
            window,
            dry_run,
            pending: BTreeMap::new(),
            written: BTreeMap::new(),
        }
    }

    /// Counts one refusal; `example` is kept if it is among the first
    /// [`EXAMPLES`] since the last entry.
    pub fn note(&mut self, reason: Reason, example: Value, at: DateTime<Utc>) {
        let pending = self.pending.entry(reason).or_insert_with(|| Pending {
            count: 0,
            first: at,
            last: at,
            examples: Vec::new(),
        });
        pending.count += 1;
        pending.last = at;
        if pending.examples.len() < EXAMPLES {
            pending.examples.push(example);
        }
    }

    /// The audit entries due at `now` (target: the reason; body: count,
    /// first and last time, examples, dry run): a reason's first refusal
    /// at once, then at most one entry per window; `all` takes everything
    /// noted (at shutdown).
    pub fn due(&mut self, now: Instant, all: bool) -> Vec<(Reason, Value)> {
        let window = self.window;
        let ready: Vec<Reason> = self
            .pending
            .keys()
            .copied()
            .filter(|r| {
                all || self
                    .written
                    .get(r)
                    .is_none_or(|at| now.saturating_duration_since(*at) >= window)
            })
            .collect();
        let mut out = Vec::new();
        for reason in ready {
            if let Some(p) = self.pending.remove(&reason) {
                self.written.insert(reason, now);
                out.push((
                    reason,
                    json!({
                        "count": p.count,
                        "first_at": p.first,
                        "last_at": p.last,
                        "examples": p.examples,
                        "dry_run": self.dry_run,
                    }),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_makes_one_entry_per_reason_and_window() {
        let t0 = Instant::now();
        let mut log = RefusalLog::new(Duration::from_secs(60), true);
        let at = Utc::now();
        for i in 0..10_000 {
            log.note(Reason::UntrustedSource, json!({"alert_id": i}), at);
        }
        let first = log.due(t0, false);
        assert_eq!(first.len(), 1, "the first refusal is audited at once");
        assert_eq!(first[0].0, Reason::UntrustedSource);
        assert_eq!(first[0].1["count"], 10_000);
        assert_eq!(first[0].1["dry_run"], true);
        assert_eq!(first[0].1["examples"].as_array().unwrap().len(), EXAMPLES);
        assert_eq!(first[0].1["examples"][0]["alert_id"], 0);

        // Within the window: counted, not written.
        for i in 0..500 {
            log.note(Reason::UntrustedSource, json!({"alert_id": i}), at);
        }
        log.note(Reason::RateLimited, json!({}), at);
        let soon = log.due(t0 + Duration::from_secs(30), false);
        assert_eq!(
            soon.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
            [Reason::RateLimited],
            "another reason's first entry is not held back"
        );
        let later = log.due(t0 + Duration::from_secs(60), false);
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].1["count"], 500);
        assert!(log.due(t0 + Duration::from_secs(600), false).is_empty());

        // At shutdown everything noted goes out.
        log.note(Reason::RateLimited, json!({}), at);
        assert!(log.due(t0 + Duration::from_secs(31), false).is_empty());
        assert_eq!(log.due(t0 + Duration::from_secs(31), true).len(), 1);
    }
}
