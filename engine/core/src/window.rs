//! Sliding-window counters for rate limits.
//!
//! A window keeps two fixed buckets, the current and the previous one, and estimates the
//! count over the last `len` as `current + previous × (unexpired share of the previous
//! bucket)`. That costs sixteen bytes per key and never under-counts a burst at a bucket
//! boundary by more than the previous bucket's decay.

use crate::time::{Duration, Timestamp};

/// A limit: at most `max` events in any `per` span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed in one window.
    pub max: u32,
    /// The window's length.
    pub per: Duration,
}

/// A two-bucket sliding window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlidingWindow {
    bucket_start: Timestamp,
    current: u32,
    previous: u32,
}

impl SlidingWindow {
    fn roll(&mut self, now: Timestamp, len: Duration) {
        let len_ms = len.as_millis().max(1);
        let elapsed = now.since(self.bucket_start).as_millis();
        if elapsed >= 2 * len_ms {
            self.previous = 0;
            self.current = 0;
            self.bucket_start = Timestamp::from_millis(now.as_millis() - now.as_millis() % len_ms);
        } else if elapsed >= len_ms {
            self.previous = self.current;
            self.current = 0;
            self.bucket_start = self.bucket_start + len;
        }
    }

    /// The estimated number of events in the `len` before `now`.
    pub fn estimate(&self, now: Timestamp, len: Duration) -> u64 {
        let mut w = *self;
        w.roll(now, len);
        let len_ms = len.as_millis().max(1);
        let into = now.since(w.bucket_start).as_millis().min(len_ms);
        let carried = u64::from(w.previous) * (len_ms - into) / len_ms;
        u64::from(w.current) + carried
    }

    /// Adds `n` events at `now` if that keeps the estimate within `rate`; otherwise leaves
    /// the window as it is and says how long until one more event would fit.
    pub fn try_add(&mut self, now: Timestamp, rate: Rate, n: u32) -> Result<(), Duration> {
        self.roll(now, rate.per);
        if self.estimate(now, rate.per) + u64::from(n) > u64::from(rate.max) {
            return Err(self.retry_after(now, rate));
        }
        self.current = self.current.saturating_add(n);
        Ok(())
    }

    /// Adds `n` events unconditionally (for counting failures).
    pub fn add(&mut self, now: Timestamp, len: Duration, n: u32) {
        self.roll(now, len);
        self.current = self.current.saturating_add(n);
    }

    /// Takes back `n` events added by a [`try_add`](Self::try_add) that was not used.
    pub fn remove(&mut self, n: u32) {
        self.current = self.current.saturating_sub(n);
    }

    /// A conservative wait before the estimate drops below `rate.max`: the end of the
    /// current bucket, plus a whole window when the current bucket alone is full.
    pub fn retry_after(&self, now: Timestamp, rate: Rate) -> Duration {
        let end = self.bucket_start + rate.per;
        let wait = end.since(now);
        if u64::from(self.current) >= u64::from(rate.max) {
            wait + rate.per
        } else {
            wait.max(Duration::from_secs(1))
        }
    }

    /// Whether the window has forgotten everything by `now`.
    pub fn is_idle(&self, now: Timestamp, len: Duration) -> bool {
        self.estimate(now, len) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_within_and_across_buckets() {
        let rate = Rate {
            max: 3,
            per: Duration::from_secs(60),
        };
        let mut w = SlidingWindow::default();
        let t = |s: u64| Timestamp::from_secs(6_000 + s);
        assert!(w.try_add(t(0), rate, 1).is_ok());
        assert!(w.try_add(t(1), rate, 1).is_ok());
        assert!(w.try_add(t(2), rate, 1).is_ok());
        let wait = w.try_add(t(3), rate, 1).unwrap_err();
        assert!(wait >= Duration::from_secs(57), "{wait:?}");
        // Half-way into the next bucket, half of the previous three still count.
        assert_eq!(w.estimate(t(90), rate.per), 1);
        assert!(w.try_add(t(90), rate, 1).is_ok());
        assert!(w.try_add(t(90), rate, 1).is_ok());
        assert!(w.try_add(t(90), rate, 1).is_err());
        // Long after, everything is forgotten.
        assert!(w.is_idle(t(1000), rate.per));
        assert!(w.try_add(t(1000), rate, 3).is_ok());
    }

    #[test]
    fn refused_adds_change_nothing_and_remove_refunds() {
        let rate = Rate {
            max: 1,
            per: Duration::from_secs(10),
        };
        let mut w = SlidingWindow::default();
        let t = Timestamp::from_secs(100);
        w.try_add(t, rate, 1).unwrap();
        let before = w;
        assert!(w.try_add(t, rate, 1).is_err());
        assert_eq!(w, before);
        w.remove(1);
        assert!(w.try_add(t, rate, 1).is_ok());
    }
}
