//! The compare-and-set adapter passes the contract: over a plain map of versioned records,
//! and over one where another writer slips in before every first swap, so that every
//! update runs its function a second time on what that writer left.

mod contract;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use portvakt_core::id::{MethodId, Subject, UserId};
use portvakt_core::state::{StateStore, StoreError};
use portvakt_core::time::Timestamp;
use portvakt_store::cas::{CasStore, Versioned, VersionedRecords};

/// Versioned records in a map, as a network store would keep them.
#[derive(Default)]
struct Records {
    map: Mutex<HashMap<Vec<u8>, Versioned>>,
    versions: AtomicU64,
    /// Bump a record's version (same bytes) before the first swap of each record that
    /// exists, as if another node had written it between the read and the swap.
    interfere: bool,
    interfered: Mutex<std::collections::HashSet<Vec<u8>>>,
    conflicts: AtomicU64,
}

impl Records {
    fn interfering() -> Self {
        Self {
            interfere: true,
            ..Self::default()
        }
    }
}

impl VersionedRecords for Records {
    fn load(&self, key: &[u8]) -> Result<Option<Versioned>, StoreError> {
        Ok(self.map.lock().unwrap().get(key).cloned())
    }

    fn swap(
        &self,
        key: &[u8],
        expected: Option<u64>,
        value: Option<&[u8]>,
        _keep: Option<std::time::Duration>,
    ) -> Result<Result<(), Option<Versioned>>, StoreError> {
        let mut map = self.map.lock().unwrap();
        if self.interfere
            && map.contains_key(key)
            && self.interfered.lock().unwrap().insert(key.to_vec())
        {
            let version = self.versions.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some(v) = map.get_mut(key) {
                v.version = version;
            }
        }
        let current = map.get(key).map(|v| v.version);
        if current != expected {
            self.conflicts.fetch_add(1, Ordering::SeqCst);
            return Ok(Err(map.get(key).cloned()));
        }
        match value {
            None => drop(map.remove(key)),
            Some(bytes) => {
                let version = self.versions.fetch_add(1, Ordering::SeqCst) + 1;
                map.insert(
                    key.to_vec(),
                    Versioned {
                        version,
                        bytes: bytes.to_vec(),
                    },
                );
            }
        }
        Ok(Ok(()))
    }

    fn scan(&self, prefix: u8, f: &mut dyn FnMut(&[u8])) -> Result<(), StoreError> {
        for (k, v) in self.map.lock().unwrap().iter() {
            if k.first() == Some(&prefix) {
                f(&v.bytes);
            }
        }
        Ok(())
    }
}

mod plain {
    use super::*;
    contract_tests!(CasStore::new(Records::default()));
}

mod interfering {
    use super::*;
    contract_tests!(CasStore::new(Records::interfering()));
}

#[test]
fn calls_per_decision_are_the_memory_store_s() {
    let cas = contract::calls_per_decision(|| CasStore::new(Records::default()));
    let memory = contract::calls_per_decision(portvakt_store::MemoryStore::default);
    assert_eq!(cas, memory);
}

#[test]
fn a_conflict_runs_the_function_again_on_the_other_writer_s_record() {
    let store = CasStore::new(Records::interfering());
    let subject = Subject::Known(UserId(3));
    let now = Timestamp::from_secs(1_800_000_000);
    let (first, second) = (MethodId(1), MethodId(2));
    let mut runs = 0;
    store
        .update_subject(subject, now, |u| {
            runs += 1;
            u.raise_otp(first, 10);
        })
        .unwrap();
    // A record that is not there yet cannot be written by anyone else in between.
    assert_eq!(runs, 1);
    // Now another writer slips in between the read and the swap.
    let mut seen = Vec::new();
    store
        .update_subject(subject, now, |u| {
            seen.push(u.otp(first).map(|s| s.next));
            u.raise_otp(second, 7);
        })
        .unwrap();
    assert_eq!(store.records().conflicts.load(Ordering::SeqCst), 1);
    assert_eq!(
        seen,
        [Some(10), Some(10)],
        "run twice, each on a whole record"
    );
    let after = store
        .read_subject(subject, |u| {
            let u = u.unwrap();
            (u.otp(first).map(|s| s.next), u.otp(second).map(|s| s.next))
        })
        .unwrap();
    assert_eq!(after, (Some(10), Some(7)));
    // A function that changes nothing writes nothing, so it cannot conflict.
    let swaps = store.records().versions.load(Ordering::SeqCst);
    assert_eq!(
        store
            .update_subject(subject, now, |u| u.otp(first))
            .unwrap()
            .map(|s| s.next),
        Some(10)
    );
    assert_eq!(store.records().versions.load(Ordering::SeqCst), swaps);
}

#[test]
fn a_record_this_build_cannot_read_fails_the_call() {
    let store = CasStore::new(Records::default());
    let subject = Subject::Unknown(77);
    store.records().map.lock().unwrap().insert(
        portvakt_store::cas::subject_key(subject),
        Versioned {
            version: 1,
            bytes: vec![9, 9, 9],
        },
    );
    let now = Timestamp::from_secs(1_800_000_000);
    let e = store
        .update_subject(subject, now, |u| u.unlock())
        .unwrap_err();
    assert!(e.message().contains("unknown format"), "{e}");
    assert!(store.read_subject(subject, |u| u.is_some()).is_err());
    assert!(store.locked_subjects(now).is_err());
    // Nothing was written over it.
    let kept = store
        .records()
        .load(&portvakt_store::cas::subject_key(subject));
    assert_eq!(kept.unwrap().unwrap().bytes, [9, 9, 9]);
}
