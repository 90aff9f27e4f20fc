//! The leader's background work, each a loop that proposes through the
//! server handle: auto compaction (`compactor`), the downgrade job and the
//! cluster version monitor (`downgrade`), corruption checks (`corrupt`),
//! lease expiry and checkpoints (`lease_expiry`).
//!
//! May import: `server` (the handle), `transport` (hashes of the other
//! members), `state`, the crate root, and the `datadir` and `mvcc` crates.
//! Never `client` or `peer`.

pub mod compactor;
pub mod corrupt;
pub mod downgrade;
pub mod lease_expiry;
