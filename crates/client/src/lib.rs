//! What every client of an etcd member shares: `etcdctl`, the `benchmark`
//! tool and a member dialing its peers (leader forwarding, discovery,
//! hashes).
//!
//! # Layout
//!
//! - [`dial`]: the one place that turns an endpoint (`host:port`,
//!   `http://…`, `https://…`) into a tonic `Channel`: time bounds, HTTP/2
//!   keepalives, TCP_NODELAY, TLS with ALPN h2 and an optional server name;
//!   [`dial::failover`] and [`dial::connect_any`] try endpoints in order.
//! - [`tls`]: the client side of TLS as Go's clients do it: certificate
//!   files, a CA file or the system's roots, the one verifier that skips
//!   the chain but checks signatures, and [`tls::client_config`] building a
//!   configuration from the files a user names.
//! - [`auth`]: the auth token, had from the Auth service and added to every
//!   request by an interceptor.
//! - [`Error`]: the crate's one error type; every variant keeps its cause,
//!   and [`error_chain`] prints them all.
//!
//! # What the callers keep
//!
//! Their wording and policy: etcdctl words every error as the real etcdctl
//! does, decides when TLS is used and puts its `--command-timeout` and
//! clientv3's message limits on requests; a member decides which peer URLs
//! it dials and how long it waits.
//!
//! May import: `api` (the Auth service's messages and etcd's error table),
//! tonic, rustls and their plumbing; never a member's code.

pub mod auth;
pub mod dial;
mod error;
pub mod tls;

pub use error::{error_chain, innermost_cause, Error};
