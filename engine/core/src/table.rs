//! A sharded hash map with one mutex per shard, an optional cap and eviction.
//!
//! Every read-modify-write of one key happens under its shard's lock, which is what makes
//! the state store's operations atomic per key. Tables keyed by input an attacker chooses
//! (addresses, unknown user names, challenges) are bounded: when a shard is full, entries
//! that hold nothing worth keeping go first, then a quarter of the shard, and the
//! evictions are counted.

use std::collections::HashMap;
use std::hash::Hash;

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use crate::time::Timestamp;

const SHARDS: usize = 64;

/// Values that can say whether they still hold anything worth keeping.
pub(crate) trait Idle {
    /// Whether the entry could be dropped at `now` without changing any future answer.
    fn is_idle(&self, now: Timestamp) -> bool;

    /// How much dropping the entry at `now` would change: when a full shard must evict
    /// live entries, the lightest go first.
    fn weight(&self, _now: Timestamp) -> u64 {
        0
    }
}

type Shard<K, V> = CachePadded<Mutex<HashMap<K, V, ahash::RandomState>>>;

pub(crate) struct Table<K, V> {
    shards: Box<[Shard<K, V>]>,
    hasher: ahash::RandomState,
    shard_cap: usize,
    evictions: AtomicU64,
}

impl<K: Hash + Eq, V: Idle + Default> Table<K, V> {
    /// A table holding at most about `cap` entries (`None`: unbounded).
    pub(crate) fn new(cap: Option<usize>) -> Self {
        let hasher = ahash::RandomState::new();
        let shards = (0..SHARDS)
            .map(|_| CachePadded::new(Mutex::new(HashMap::with_hasher(hasher.clone()))))
            .collect();
        let shard_cap = cap.map_or(usize::MAX, |c| c.div_ceil(SHARDS).max(1));
        Self {
            shards,
            hasher,
            shard_cap,
            evictions: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &K) -> &Mutex<HashMap<K, V, ahash::RandomState>> {
        let i = (self.hasher.hash_one(key) >> 58) as usize % SHARDS;
        // INVARIANT: i < SHARDS == shards.len().
        match self.shards.get(i) {
            Some(s) => s,
            None => unreachable!("shard index is reduced modulo the shard count"),
        }
    }

    /// Runs `f` on the entry for `key`, if there is one.
    pub(crate) fn read<R>(&self, key: &K, f: impl FnOnce(Option<&V>) -> R) -> R {
        let shard = lock(self.shard(key));
        f(shard.get(key))
    }

    /// Runs `f` on the entry for `key`, created as `V::default()` if absent, atomically
    /// with respect to every other operation on `key`. An entry that `f` leaves idle is
    /// removed.
    pub(crate) fn update<R>(&self, key: K, now: Timestamp, f: impl FnOnce(&mut V) -> R) -> R {
        let mut shard = lock(self.shard(&key));
        if shard.len() >= self.shard_cap && !shard.contains_key(&key) {
            let before = shard.len();
            shard.retain(|_, v| !v.is_idle(now));
            if shard.len() >= self.shard_cap {
                // A quarter of the shard goes, lightest first: a flood of names that each
                // failed once pushes out other such names, not a lock in force.
                let quota = (self.shard_cap / 4).max(1);
                let mut weights: Vec<u64> = shard.values().map(|v| v.weight(now)).collect();
                let nth = quota.min(weights.len()).saturating_sub(1);
                let (_, cut, _) = weights.select_nth_unstable(nth);
                let cut = *cut;
                let mut drop = quota;
                shard.retain(|_, v| {
                    if drop > 0 && v.weight(now) <= cut {
                        drop -= 1;
                        false
                    } else {
                        true
                    }
                });
            }
            let evicted = (before - shard.len()) as u64;
            self.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
        match shard.get_mut(&key) {
            Some(v) => {
                let r = f(v);
                if v.is_idle(now) {
                    shard.remove(&key);
                }
                r
            }
            None => {
                let mut v = V::default();
                let r = f(&mut v);
                if !v.is_idle(now) {
                    shard.insert(key, v);
                }
                r
            }
        }
    }

    /// Entries held now.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Entries for which `f` holds (a scan of every shard, for metrics).
    pub(crate) fn count(&self, f: impl Fn(&V) -> bool) -> usize {
        self.shards
            .iter()
            .map(|s| lock(s).values().filter(|v| f(v)).count())
            .sum()
    }

    /// Calls `f` with every entry, one shard locked at a time (a dump, not a snapshot of
    /// one instant).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        for shard in self.shards.iter() {
            for (k, v) in lock(shard).iter() {
                f(k, v);
            }
        }
    }

    /// Entries evicted so far to respect the cap.
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Drops every idle entry (a periodic sweep).
    pub(crate) fn sweep(&self, now: Timestamp) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let mut s = lock(s);
                let before = s.len();
                s.retain(|_, v| !v.is_idle(now));
                before - s.len()
            })
            .sum()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Default, Debug, PartialEq)]
    struct Count(u32);
    impl Idle for Count {
        fn is_idle(&self, _: Timestamp) -> bool {
            self.0 == 0
        }
    }

    #[test]
    fn update_creates_and_idle_entries_vanish() {
        let t: Table<u32, Count> = Table::new(None);
        let now = Timestamp::EPOCH;
        t.update(1, now, |c| c.0 += 2);
        assert_eq!(t.read(&1, |c| c.map(|c| c.0)), Some(2));
        t.update(1, now, |c| c.0 = 0);
        assert_eq!(t.len(), 0);
        // An update that leaves the default in place creates nothing.
        t.update(2, now, |_| ());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn bounded_table_stays_bounded_and_counts_evictions() {
        let cap = 1_000;
        let t: Table<u32, Count> = Table::new(Some(cap));
        for k in 0..100_000u32 {
            t.update(k, Timestamp::EPOCH, |c| c.0 = 1);
            assert!(t.len() <= cap.div_ceil(SHARDS) * SHARDS);
        }
        assert!(t.evictions() >= 100_000 - (cap.div_ceil(SHARDS) * SHARDS) as u64);
        // Idle entries are swept first, before live ones.
        let t: Table<u32, Count> = Table::new(Some(SHARDS));
        t.update(7, Timestamp::EPOCH, |c| c.0 = 1);
        assert_eq!(t.sweep(Timestamp::EPOCH), 0);
        assert_eq!(t.read(&7, |c| c.copied()), Some(Count(1)));
    }
}
