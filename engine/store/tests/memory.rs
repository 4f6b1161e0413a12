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
    assert_eq!(n, [1, 3, 4, 3, 4], "{calls:?}");
}
