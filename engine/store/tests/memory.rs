//! The in-memory store passes the contract.

mod contract;

contract_tests!(portvakt_store::MemoryStore::default());

/// The store calls per decision on the common paths, printed for `docs/design.md`
/// (`cargo test -p portvakt-store --test memory -- --nocapture calls`), and held to what
/// the document says.
#[test]
fn calls_per_decision_on_the_common_paths() {
    let calls = contract::calls_per_decision(portvakt_store::MemoryStore::default);
    for (name, ops) in &calls {
        println!("{name}: {} ({})", ops.len(), ops.join(", "));
    }
    let n: Vec<usize> = calls.iter().map(|(_, ops)| ops.len()).collect();
    assert_eq!(n, [1, 3, 2, 3, 2], "{calls:?}");
    // Of which exactly one touches the subject's record: one commit (or read) per decision.
    for (name, ops) in &calls {
        let subject = ops.iter().filter(|op| op.ends_with("_subject")).count();
        assert_eq!(subject, 1, "{name}: {ops:?}");
    }
}
