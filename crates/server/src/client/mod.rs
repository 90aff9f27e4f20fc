//! The client edge: listeners and the connection loop (`serve`), the
//! gRPC/HTTP split of one port (`edge`), the gRPC services (`grpc`), the
//! HTTP/JSON gateway (`gateway`), `/version`, `/metrics` and the health
//! endpoints (`http`, `health`), and the `/metrics` body (`metrics`).
//!
//! May import: `server` (the handle every service calls), `config`,
//! `state`, `duties` (the Downgrade RPC), `transport`, the crate root (`limits`, `status`, `metrics`), and the
//! `api`, `mvcc` and `datadir` crates.

pub mod edge;
pub mod gateway;
pub mod grpc;
pub mod health;
pub mod http;
pub mod metrics;
pub mod serve;
