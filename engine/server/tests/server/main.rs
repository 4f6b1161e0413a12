//! The server library's integration tests, one binary (it links once): reading import
//! files, the request handler, and the sign-in log on disk. The QUIC endpoint is tested
//! over real connections in `tests/tests/quic.rs`, the command in `engine/cli/tests`.

mod import;
mod service;
mod signin;
