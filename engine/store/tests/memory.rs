//! The in-memory store passes the contract.

mod contract;

contract_tests!(portvakt_store::MemoryStore::default());
