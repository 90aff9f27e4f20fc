//! The member's replicated core: the raft loop (`raft_node`, one OS thread
//! that owns raft-rs's `RawNode`, the WAL and the snapshotter), raft's
//! storage (`raft_storage`), the applier (`apply`, one OS thread applying
//! committed entries in log order), the waiters proposers block on
//! (`wait`), and opening a member dir for the loop (`bootstrap`).
//!
//! May import: `state`, `config`, `transport`, the crate root (`limits`,
//! `status`, `metrics`), and the `datadir`, `mvcc`, `lease` and `wal`
//! crates.

pub mod apply;
pub mod apply_auth;
pub mod bootstrap;
pub mod raft_node;
pub mod raft_storage;
pub mod seams;
#[cfg(test)]
mod sim;
pub mod wait;
