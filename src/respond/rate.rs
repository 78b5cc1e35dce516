//! The bound on new blocks: a token bucket per minute.

use std::time::Instant;

/// Up to `n` tokens, refilled evenly at `n` a minute; each new block takes
/// one. A bucket of 0 refuses everything.
#[derive(Debug, Clone)]
pub struct Bucket {
    capacity: f64,
    tokens: f64,
    per_second: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket of `n` a minute.
    pub fn per_minute(n: u32, now: Instant) -> Bucket {
        let capacity = f64::from(n);
        Bucket {
            capacity,
            tokens: capacity,
            per_second: capacity / 60.0,
            last: now,
        }
    }

    /// Takes a token if one is left at `now`.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.last = now.max(self.last);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_of_n_then_one_per_60_over_n_seconds() {
        let t0 = Instant::now();
        let mut bucket = Bucket::per_minute(60, t0);
        let taken = (0..100).filter(|_| bucket.take(t0)).count();
        assert_eq!(taken, 60, "the burst");
        assert!(!bucket.take(t0 + Duration::from_millis(900)));
        assert!(bucket.take(t0 + Duration::from_millis(1000)));
        assert!(!bucket.take(t0 + Duration::from_millis(1500)));
        // A long pause refills to the capacity, not beyond.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| bucket.take(later)).count(), 60);

        let mut none = Bucket::per_minute(0, t0);
        assert!(!none.take(t0 + Duration::from_secs(3600)));
    }
}
