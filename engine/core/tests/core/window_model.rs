//! The sliding window against an exact log of event times, by property test.
//!
//! Never generous: an event is accepted only if the exact count over the window, with it,
//! stays within the limit. Not much stricter: a refusal happens only if the exact count,
//! with events held one quantum longer, is at the limit. The wait it reports is never
//! longer than the window, and once it has passed the event fits.

use portvakt_core::window::{QUANTA, Rate, SlidingWindow};
use portvakt_core::{Duration, Timestamp};
use proptest::prelude::*;

/// Events in `(now - hold, now]`.
fn exact(log: &[u64], now: u64, hold: u64) -> u64 {
    log.iter().filter(|&&t| t + hold > now).count() as u64
}

proptest! {
    #[test]
    fn never_generous_and_waits_are_true(
        max in 1u32..8,
        per_s in 1u64..2_000,
        steps in proptest::collection::vec((0u64..400_000, 1u32..3, any::<bool>()), 1..300),
    ) {
        let rate = Rate { max, per: Duration::from_secs(per_s) };
        let per = rate.per.as_millis();
        let quantum = per.div_ceil(QUANTA);
        let mut w = SlidingWindow::default();
        let mut log: Vec<u64> = Vec::new();
        let mut now = 1_000_000_000u64;
        for (gap, n, refund) in steps {
            now += gap;
            let t = Timestamp::from_millis(now);
            prop_assert!(w.estimate(t, rate.per) >= exact(&log, now, per));
            let before = w;
            match w.try_add(t, rate, n) {
                Ok(()) => {
                    prop_assert!(exact(&log, now, per) + u64::from(n) <= u64::from(max),
                        "accepted {n} over the limit at {now}: {log:?}");
                    if refund {
                        w.remove(n);
                    } else {
                        log.extend(std::iter::repeat_n(now, n as usize));
                    }
                }
                Err(wait) => {
                    prop_assert_eq!(w, before);
                    if n <= max {
                        // Refused only where an exact log holding events a quantum longer
                        // would be at the limit too.
                        prop_assert!(exact(&log, now, per + quantum) + u64::from(n) > u64::from(max));
                        prop_assert!(wait <= rate.per, "{wait:?}");
                        prop_assert!(wait > Duration::ZERO);
                        let then = Timestamp::from_millis(now + wait.as_millis());
                        prop_assert!(w.wait(then, rate, n).is_none(), "still no room after {wait:?}");
                        let earlier = Timestamp::from_millis(now + wait.as_millis() - 1);
                        prop_assert!(w.wait(earlier, rate, n).is_some(), "room before {wait:?}");
                    }
                }
            }
        }
    }

    /// Counting failures: the estimate never falls below the exact count.
    #[test]
    fn counts_never_fall_short(
        per_s in 1u64..5_000,
        gaps in proptest::collection::vec(0u64..600_000, 1..300),
    ) {
        let per = Duration::from_secs(per_s);
        let mut w = SlidingWindow::default();
        let mut log = Vec::new();
        let mut now = 5_000_000u64;
        for gap in gaps {
            now += gap;
            w.add(Timestamp::from_millis(now), per, 1);
            log.push(now);
            prop_assert!(w.estimate(Timestamp::from_millis(now), per) >= exact(&log, now, per.as_millis()));
        }
    }
}
