//! The leader's background work, each a loop that proposes through the
//! server handle: auto compaction (`compactor`), the downgrade job and the
//! cluster version monitor (`downgrade`), corruption checks (`corrupt`).
//!
//! May import: `server` (the handle), `peer` (hashes of the other members),
//! `state`, the crate root, and the `datadir` and `mvcc` crates. Never
//! `client`.

pub mod compactor;
pub mod corrupt;
pub mod downgrade;
