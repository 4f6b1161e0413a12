//! Sliding-window counters for rate limits.
//!
//! A limit says: at most `max` events in any span of length `per`. Keeping every event's
//! time would be exact but costs `max` timestamps per key, and the keys (source addresses,
//! phone numbers) are chosen by whoever sends the requests. A [`SlidingWindow`] instead
//! splits time into quanta of `per / QUANTA` (rounded up) and keeps one slot per quantum
//! that still holds events: a count and the time of the *latest* event in it. At most
//! `QUANTA + 1` quanta can hold events of the last `per`, so that many slots suffice.
//!
//! Every event in a slot happened at or before the slot's latest time, so the window
//! treats the slot's events as leaving when the latest one does. That makes the count an
//! upper bound of the true count: the limit is conservative, never generous. An event is
//! held at most one quantum longer than an exact log would hold it, and never longer than
//! `per` after the newest event, so a wait it reports is never longer than the window.
//! `tests/window_model.rs` checks these bounds against an exact log.

use crate::time::{Duration, Timestamp};

/// A limit: at most `max` events in any `per` span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed in one window.
    pub max: u32,
    /// The window's length.
    pub per: Duration,
}

/// Quanta per window: an event is held at most `per / QUANTA` too long.
pub const QUANTA: u64 = 4;

/// Slots: one per quantum that can hold events of the last `per`.
const SLOTS: usize = QUANTA as usize + 1;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Slot {
    /// The latest event's time, in milliseconds after the window's `base`.
    offset: u32,
    /// Events held (0: the slot is free).
    count: u32,
}

/// A sliding window of `QUANTA + 1` slots; see the module docs.
///
/// Slot times are kept as 32-bit offsets from one 64-bit base, which holds the window to
/// 48 bytes: the per-source table has an entry per address, and its size showed in the
/// decision's time. Live slots lie within one window of each other, and windows are at
/// most 31 days (`config`), so an offset always fits; should one not, the window folds
/// everything into one slot at the newest time, which only ever counts more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlidingWindow {
    /// Milliseconds; the oldest slot's latest time while any slot is used.
    base: u64,
    /// Oldest first; free slots (count 0) only at the end.
    slots: [Slot; SLOTS],
}

impl SlidingWindow {
    /// Writes the window in record format (`record.rs`).
    pub(crate) fn put(&self, p: &mut crate::record::Put<'_>) {
        p.u64(self.base);
        for s in &self.slots {
            p.u32(s.offset);
            p.u32(s.count);
        }
    }

    /// Reads a window written by [`put`](Self::put), refusing one whose slots break the
    /// window's rules (used slots first and in order of time, free slots all zero).
    pub(crate) fn get(g: &mut crate::record::Get<'_>) -> Result<Self, crate::record::RecordError> {
        let base = g.u64()?;
        let mut slots = [Slot::default(); SLOTS];
        for s in &mut slots {
            *s = Slot {
                offset: g.u32()?,
                count: g.u32()?,
            };
        }
        let used = slots.iter().take_while(|s| s.count > 0).count();
        let (live, free) = slots.split_at(used);
        let ordered = live
            .iter()
            .zip(live.iter().skip(1))
            .all(|(a, b)| a.offset <= b.offset);
        if !ordered || free.iter().any(|s| *s != Slot::default()) {
            return Err(crate::record::RecordError(
                "a window's slots are out of order",
            ));
        }
        Ok(Self { base, slots })
    }
}

impl SlidingWindow {
    /// The used slots as (latest time, count), oldest first.
    fn used(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.slots
            .iter()
            .take_while(|s| s.count > 0)
            .map(|s| (self.base + u64::from(s.offset), s.count))
    }

    /// The used slots still in the window `(now - len, now]`.
    fn live(&self, now: Timestamp, len: Duration) -> impl Iterator<Item = (u64, u32)> + '_ {
        let (now, len) = (now.as_millis(), len.as_millis());
        self.used()
            .filter(move |(latest, _)| latest.saturating_add(len) > now)
    }

    /// Drops slots whose latest event left the window, and rebases on the oldest left.
    fn expire(&mut self, now: Timestamp, len: Duration) {
        let (t, len) = (now.as_millis(), len.as_millis());
        let gone = self
            .used()
            .take_while(|(latest, _)| latest.saturating_add(len) <= t)
            .count();
        if gone == 0 {
            return;
        }
        self.slots.rotate_left(gone);
        for s in self.slots.iter_mut().rev().take(gone) {
            *s = Slot::default();
        }
        self.rebase();
    }

    /// Moves the base to the oldest slot's latest time.
    fn rebase(&mut self) {
        let [first, ..] = self.slots;
        if first.count == 0 {
            *self = Self::default();
            return;
        }
        self.base += u64::from(first.offset);
        for s in self.slots.iter_mut().take_while(|s| s.count > 0) {
            s.offset -= first.offset;
        }
    }

    /// Events counted in the `len` before `now` (an upper bound of the true count).
    pub fn estimate(&self, now: Timestamp, len: Duration) -> u64 {
        self.live(now, len).map(|(_, c)| u64::from(c)).sum()
    }

    /// How long until `n` more events fit within `rate`; `None` if they fit now.
    ///
    /// The wait is exact with respect to what the window keeps: once it has passed (and
    /// nothing else was added), [`try_add`](Self::try_add) of `n` succeeds. It is never
    /// longer than `rate.per`. `None` too when `n` alone exceeds `rate.max`: such a batch
    /// never fits, and waiting would not help; [`try_add`](Self::try_add) refuses it.
    pub fn wait(&self, now: Timestamp, rate: Rate, n: u32) -> Option<Duration> {
        let len = rate.per.as_millis();
        let mut count = self.estimate(now, rate.per);
        let max = u64::from(rate.max);
        if count + u64::from(n) <= max || u64::from(n) > max {
            return None;
        }
        for (latest, c) in self.live(now, rate.per) {
            count -= u64::from(c);
            if count + u64::from(n) <= max {
                let leaves = latest.saturating_add(len);
                return Some(Duration::from_millis(leaves - now.as_millis()));
            }
        }
        // Unreachable: once every slot has left, the count is zero and `n <= max`.
        Some(rate.per)
    }

    /// Adds `n` events at `now` if that keeps the count within `rate`; otherwise leaves
    /// the window as it is and says how long until they would fit.
    pub fn try_add(&mut self, now: Timestamp, rate: Rate, n: u32) -> Result<(), Duration> {
        if n > rate.max {
            return Err(rate.per);
        }
        // The common case, a key with nothing counted: no arithmetic at all.
        if self.slots[0].count == 0 {
            self.base = now.as_millis();
            self.slots[0] = Slot {
                offset: 0,
                count: n,
            };
            return Ok(());
        }
        if let Some(wait) = self.wait(now, rate, n) {
            return Err(wait);
        }
        self.add(now, rate.per, n);
        Ok(())
    }

    /// Adds `n` events unconditionally (for counting failures).
    pub fn add(&mut self, now: Timestamp, len: Duration, n: u32) {
        if n == 0 {
            return;
        }
        self.expire(now, len);
        let t = now.as_millis();
        let used = self.slots.iter().take_while(|s| s.count > 0).count();
        let Some(newest) = used.checked_sub(1) else {
            self.base = t;
            self.slots[0] = Slot {
                offset: 0,
                count: n,
            };
            return;
        };
        let latest = self.used().last().map_or(t, |(latest, _)| latest);
        let quantum = len.as_millis().div_ceil(QUANTA).max(1);
        let Ok(offset) = u32::try_from(t.saturating_sub(self.base)) else {
            // Beyond any configurable window: fold everything into one slot at `now`.
            let total = self.used().fold(n, |sum, (_, c)| sum.saturating_add(c));
            *self = Self::default();
            self.base = t;
            self.slots[0] = Slot {
                offset: 0,
                count: total,
            };
            return;
        };
        // An event no later than the newest (a clock that stepped back) or in the same
        // quantum joins the newest slot; its latest time only moves forward.
        if t <= latest || t / quantum == latest / quantum {
            if let Some(s) = self.slots.get_mut(newest) {
                s.count = s.count.saturating_add(n);
                s.offset = s.offset.max(offset);
            }
            return;
        }
        let (at, offset) = if used == SLOTS {
            // Full. Unreachable while time moves forward (`QUANTA + 1` quanta hold all the
            // window's events), kept so that no input can lose a count: merge the two
            // oldest into one slot that leaves when the later does.
            let [a, b, ..] = &mut self.slots;
            b.count = b.count.saturating_add(a.count);
            self.slots.rotate_left(1);
            self.slots[SLOTS - 1] = Slot::default();
            let shift = self.slots[0].offset;
            self.rebase();
            (SLOTS - 1, offset - shift)
        } else {
            (used, offset)
        };
        if let Some(s) = self.slots.get_mut(at) {
            *s = Slot { offset, count: n };
        }
    }

    /// Takes back `n` events added by a [`try_add`](Self::try_add) that was not used,
    /// newest first. (Slots empty from the newest back, so free ones stay at the end.)
    pub fn remove(&mut self, mut n: u32) {
        for s in self.slots.iter_mut().rev() {
            let take = s.count.min(n);
            s.count -= take;
            n -= take;
            if s.count == 0 {
                *s = Slot::default();
            }
        }
        if self.slots[0].count == 0 {
            *self = Self::default();
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

    fn rate(max: u32, secs: u64) -> Rate {
        Rate {
            max,
            per: Duration::from_secs(secs),
        }
    }

    #[test]
    fn limits_within_and_across_quanta() {
        let rate = rate(3, 60);
        let mut w = SlidingWindow::default();
        let t = |s: u64| Timestamp::from_secs(6_000 + s);
        assert!(w.try_add(t(0), rate, 1).is_ok());
        assert!(w.try_add(t(1), rate, 1).is_ok());
        assert!(w.try_add(t(2), rate, 1).is_ok());
        // The three share a quantum (15 s) and leave with the latest, at 62.
        assert_eq!(w.try_add(t(3), rate, 1), Err(Duration::from_secs(59)));
        assert_eq!(w.estimate(t(59), rate.per), 3);
        assert_eq!(w.estimate(t(62), rate.per), 0);
        assert!(w.try_add(t(62), rate, 3).is_ok());
        assert!(w.is_idle(t(1000), rate.per));
    }

    #[test]
    fn the_boundary_burst_is_refused() {
        // Three codes in the last second before a quantum boundary, a fourth just after.
        let rate = rate(3, 900);
        let mut w = SlidingWindow::default();
        let base = 900_000 * 10;
        for ms in [base - 900, base - 500, base - 1] {
            assert!(w.try_add(Timestamp::from_millis(ms), rate, 1).is_ok());
        }
        let wait = w.try_add(Timestamp::from_millis(base + 1), rate, 1);
        // The first one left at base - 900 + 900 s; the slot's latest leaves at base - 1 + 900 s.
        assert_eq!(wait, Err(Duration::from_millis(900_000 - 2)));
    }

    #[test]
    fn refused_adds_change_nothing_and_remove_refunds() {
        let rate = rate(1, 10);
        let mut w = SlidingWindow::default();
        let t = Timestamp::from_secs(100);
        w.try_add(t, rate, 1).unwrap();
        let before = w;
        assert!(w.try_add(t, rate, 1).is_err());
        assert_eq!(w, before);
        w.remove(1);
        assert_eq!(w, SlidingWindow::default());
        assert!(w.try_add(t, rate, 1).is_ok());
        // A batch larger than the limit never fits.
        assert_eq!(SlidingWindow::default().try_add(t, rate, 2), Err(rate.per));
    }

    #[test]
    fn every_quantum_of_the_window_has_its_slot() {
        let rate = rate(100, 100);
        let mut w = SlidingWindow::default();
        // One event in each of five quanta of 25 s, all within 100 s.
        for s in [1_024, 1_030, 1_060, 1_090, 1_110] {
            w.add(Timestamp::from_secs(s), rate.per, 1);
        }
        assert_eq!(w.estimate(Timestamp::from_secs(1_110), rate.per), 5);
        assert_eq!(w.estimate(Timestamp::from_secs(1_124), rate.per), 4);
        assert_eq!(w.estimate(Timestamp::from_secs(1_130), rate.per), 3);
        // Events in one quantum leave with its latest: 1_201 and 1_210 together.
        let mut w = SlidingWindow::default();
        w.add(Timestamp::from_secs(1_201), rate.per, 1);
        w.add(Timestamp::from_secs(1_210), rate.per, 1);
        assert_eq!(w.estimate(Timestamp::from_secs(1_305), rate.per), 2);
        assert_eq!(w.estimate(Timestamp::from_secs(1_310), rate.per), 0);
    }
}
