//! Dense, segmented slots indexed by a small integer.
//!
//! Known users have dense ids, so their records and their sign-in state can live in
//! arrays instead of hash tables: a lookup is an index computation and one cache line,
//! with no probing and no power-of-two slack. Segments are allocated on first use and
//! never moved or freed while the arena lives, so a reference to a slot stays valid
//! without any lock on the arena itself; each slot carries its own lock.

use std::sync::OnceLock;

#[cfg(not(any(loom, fuzzing)))]
const SEGMENT_BITS: u32 = 14;
#[cfg(loom)]
const SEGMENT_BITS: u32 = 2;
// Small segments under fuzzing: an engine per input stays cheap, and users cross segment
// boundaries after a few adds.
#[cfg(all(fuzzing, not(loom)))]
const SEGMENT_BITS: u32 = 4;
const SEGMENT: usize = 1 << SEGMENT_BITS;
#[cfg(not(loom))]
const SEGMENTS: usize = 1 << 12;
#[cfg(loom)]
const SEGMENTS: usize = 4;

/// The largest index an arena holds, plus one.
#[cfg(test)]
pub(crate) const CAPACITY: usize = SEGMENT * SEGMENTS;

pub(crate) struct Slots<T> {
    segments: Box<[OnceLock<Box<[T]>>]>,
}

impl<T: Default> Slots<T> {
    pub(crate) fn new() -> Self {
        Self {
            segments: (0..SEGMENTS).map(|_| OnceLock::new()).collect(),
        }
    }

    fn split(i: u32) -> (usize, usize) {
        let i = i as usize;
        (i >> SEGMENT_BITS, i & (SEGMENT - 1))
    }

    /// The slot at `i`, if its segment exists.
    pub(crate) fn get(&self, i: u32) -> Option<&T> {
        let (s, o) = Self::split(i);
        self.segments.get(s)?.get()?.get(o)
    }

    /// The slot at `i`, allocating its segment if needed; `None` past [`CAPACITY`].
    pub(crate) fn get_or_alloc(&self, i: u32) -> Option<&T> {
        let (s, o) = Self::split(i);
        self.segments
            .get(s)?
            .get_or_init(|| (0..SEGMENT).map(|_| T::default()).collect())
            .get(o)
    }

    /// Every slot of every allocated segment.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.segments
            .iter()
            .filter_map(OnceLock::get)
            .flat_map(|s| s.iter())
    }

    /// Every slot of every allocated segment, with its index.
    pub(crate) fn iter_indexed(&self) -> impl Iterator<Item = (u32, &T)> {
        self.segments
            .iter()
            .enumerate()
            .filter_map(|(s, seg)| seg.get().map(|seg| (s, seg)))
            .flat_map(|(s, seg)| {
                seg.iter()
                    .enumerate()
                    .map(move |(o, t)| (((s << SEGMENT_BITS) | o) as u32, t))
            })
    }

    /// Segments allocated so far, for memory accounting.
    pub(crate) fn allocated_slots(&self) -> usize {
        self.segments.iter().filter(|s| s.get().is_some()).count() * SEGMENT
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn slots_allocate_lazily_and_stay_put() {
        let s: Slots<std::sync::Mutex<u32>> = Slots::new();
        assert!(s.get(5).is_none());
        *s.get_or_alloc(5).unwrap().lock().unwrap() = 7;
        let p = s.get(5).unwrap() as *const _;
        s.get_or_alloc(SEGMENT as u32 * 3).unwrap();
        assert_eq!(s.get(5).unwrap() as *const _, p, "slots never move");
        assert_eq!(*s.get(5).unwrap().lock().unwrap(), 7);
        assert_eq!(s.allocated_slots(), 2 * SEGMENT);
        assert!(s.get_or_alloc(CAPACITY as u32).is_none());
        assert_eq!(s.iter().count(), 2 * SEGMENT);
    }
}
