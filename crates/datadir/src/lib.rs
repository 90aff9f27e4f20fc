//! A member's files at rest, and the work done on them while no member runs.
//!
//! The server opens, founds and converts data dirs through this crate;
//! `etcdutl` does all its work through it, without linking the server.
//!
//! ```text
//!  founding   lock a member dir; a new member's WAL and founding entries
//!  membership the cluster's members, versions and downgrade (raft snapshot data)
//!  snapshot_file  snapshot files (ours and etcd's bbolt), status, restore of a backend
//!  restore    etcdutl snapshot restore: a new member dir from a snapshot file
//!  migrate    etcdutl migrate: storage versions, and back to etcd 3.5's files
//!  offline    etcdutl defrag and hashkv on a stopped member
//!  interchange  etcd's data dirs and bbolt files in and out, and whose a dir is
//! ```
//!
//! May import: `api`, `wal`, `mvcc`, `etcdfmt`, `gofmt`, raft's types. Never
//! the server: nothing here runs a raft node or serves a request.

pub mod founding;
pub mod ids;
pub mod interchange;
pub mod membership;
pub mod migrate;
pub mod offline;
pub mod restore;
pub mod snapshot_file;
pub mod storage_version;
pub mod urls;
pub mod version;

/// Our own build version, shown by `etcd --version` and `etcdutl version`.
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");
