//! The server library's integration tests, one binary (it links once): the audit trail, reading
//! import files, the request handler, and the sign-in log on disk. The QUIC endpoint is tested
//! over real connections in `tests/tests/quic.rs`, the command in `engine/cli/tests`.

mod audit;
mod import;
mod push;
mod service;
mod signin;
