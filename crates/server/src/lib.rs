//! An etcd member. [`embed`] starts one in your own process (etcd's
//! `embed` package); the `etcd` binary is a thin caller of it.
//!
//! ```text
//! client ─gRPC/HTTP─▶ client::grpc ──propose──▶ node::raft_node (thread) ──WAL fdatasync
//!                          │                              │ committed entries
//!                          │ read_barrier (ReadIndex)     ▼
//!                          └──────── reads ◀──── mvcc::Store ◀── node::apply (thread)
//! ```
//!
//! The source is laid out by concern; each folder's module doc says what it
//! owns and what it may import, and `tests/layout.rs` holds them to it:
//!
//! ```text
//!  config/   flags and environment, the config file, TLS settings
//!  node/     the raft loop, raft storage, the applier, waiters, bootstrap
//!  state/    alarms, the quota, the lessor on the server
//!  transport/ raft messages and snapshots between members, the peer dialer
//!  server/   EtcdServer: typed verbs the edges and duties call
//!  duties/   the leader's loops: compaction, downgrade monitor, corruption
//!            checks, lease expiry
//!  client/   listeners, the gRPC/HTTP edge, services, gateway, health, /metrics
//!  peer/     the peer port's services (membership, leases, hashes), one router
//!  metrics/  the Prometheus families measured on the way (every folder bumps them)
//!  limits.rs every bound, status.rs domain errors as etcd's client errors
//!  embed.rs  start a member, wait until it serves, close it: the public way in
//! ```
//!
//! A member's files at rest (founding, membership, snapshots, restore,
//! migrate, etcd's data dirs) are the `datadir` crate's.
//! See docs/ARCHITECTURE.md for the layers and the invariants.

pub(crate) mod client;
pub mod config;
pub(crate) mod duties;
pub(crate) mod limits;
pub(crate) mod metrics;
pub(crate) mod node;
pub(crate) mod peer;
pub(crate) mod server;
pub(crate) mod state;
pub(crate) mod status;
pub(crate) mod transport;

pub mod embed;

pub use datadir::BUILD_VERSION;
pub use status::Error;

/// Starts the member and serves until `shutdown` resolves or the member
/// stops by itself (see [`embed::run`]).
pub async fn run(
    cfg: config::Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), embed::Error> {
    embed::run(cfg, shutdown).await
}
