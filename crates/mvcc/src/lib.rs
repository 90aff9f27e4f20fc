//! etcd's multi-version key-value store.
//!
//! Every change to the key space is stamped with a [`Revision`] `(main, sub)`:
//! a write request (a put, a delete that removes something, a txn with at
//! least one write) takes the next `main` revision, and the changes it makes
//! take sub revisions 0, 1, 2, … in order. The store keeps every version of
//! every key until a compaction removes the versions nobody may read any more.
//!
//! Two structures hold the data:
//!
//! - the **key index** ([`index::KeyTree`], in memory): for each key, its
//!   [`KeyIndex`] of generations of revisions (a generation runs from the put
//!   that created the key to the delete that removed it). A read first asks
//!   the index which revision of each key was live at the requested revision;
//! - the **backend** (a redb file at `<data-dir>/member/snap/db`): the values,
//!   keyed by revision.
//!
//! ```text
//!  table "key"   (one row per change, in revision order)
//!  ┌──────────────────────────────────────────────┬─────────────────────────┐
//!  │ key: main (8 B, big-endian) '_' sub (8 B, BE) │ value: KeyValue, protobuf│
//!  │      [+ 't' when the change is a delete]      │ (a delete stores {key}) │
//!  ├──────────────────────────────────────────────┼─────────────────────────┤
//!  │ 00..02 _ 00..00                               │ {foo, c=2, m=2, v=1, …} │
//!  │ 00..03 _ 00..00                               │ {foo, c=2, m=3, v=2, …} │
//!  │ 00..04 _ 00..00 t                             │ {foo}                   │
//!  └──────────────────────────────────────────────┴─────────────────────────┘
//!  table "meta"  (&str -> bytes, integers big-endian)
//!    schema_version      u64   layout version of this file (1)
//!    consistent_index    u64   raft index of the last applied entry
//!    term                u64   raft term of that entry
//!    scheduledCompactRev i64   compaction started at this revision
//!    finishedCompactRev  i64   compaction finished at this revision
//!    storageVersion      str   etcd storage version ("3.6.0"), if recorded
//! ```
//!
//! The revision key format and the value encoding are etcd's own, so a hash
//! over the "key" table (HashKV) can be computed exactly as etcd does.
//!
//! # Use
//!
//! - Edge: [`validate_range`], [`validate_put`], [`validate_delete_range`],
//!   [`validate_txn`] before proposing; [`is_txn_read_only`] txns are served
//!   locally by [`Store::txn_read_only`], like ranges by [`Store::range`].
//! - Apply: one [`WriteBatch`] per raft Ready ([`Store::write_batch`]): put,
//!   delete_range, txn, compact, then [`WriteBatch::set_consistent_index`]
//!   and [`WriteBatch::commit`]. Each write returns its mvccpb events.
//! - Snapshots: [`Store::write_image`] writes a consistent, checksummed image
//!   of the backend (raft snapshots, `Maintenance.Snapshot`) while writes go
//!   on; [`Store::restore_image`] replaces the store with one, on the apply
//!   path; [`image_info`] checks one and reads its summary, [`image_status`]
//!   also etcd's `snapshot status` hash. [`Store::image_source`] fixes one
//!   committed state to write (and size) an image from; [`Store::rebase`]
//!   prepares a restored backend for a new cluster. Format: [`image`].
//!
//! # Invariants
//!
//! - Revisions only grow; a request that changes nothing (a delete matching
//!   nothing, a read-only txn, a failed request) takes no revision.
//! - A reader only sees revisions whose data is committed: reads run at the
//!   *published* revision, which a [`WriteBatch`] advances after its commit.
//! - The consistent index (raft index and term of the applied entry) is
//!   written in the same redb transaction as the data it covers.
//! - A compaction at revision `c` keeps, for every key live at `c`, its
//!   latest revision `<= c`, and every revision `> c`; reads below `c` fail
//!   with [`Error::Compacted`].
//! - Only one [`WriteBatch`] exists at a time (redb's writer lock); reads run
//!   concurrently with it.
//!
//! # Left out, with room kept
//!
//! - Auth and member tables: the names `auth`, `authUsers`, `authRoles`,
//!   `members` are reserved; each new table takes a table id in [`image`]
//!   and is copied by [`Store::defragment`].
//! - Compaction in several backend transactions: the marks in "meta" already
//!   allow resuming one, but today one batch deletes everything at once.

mod backend;
mod batch;
mod defrag;
mod error;
mod footprint;
mod hash;
pub mod image;
pub mod index;
pub mod key_index;
mod range;
pub mod revision;
mod store;
mod txn;
mod validate;
pub mod watch;

#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod txn_tests;

pub use backend::AuthTable;
pub use batch::WriteBatch;
pub use defrag::DefragReport;
pub use error::{Error, Result};
pub use hash::{Crc32c, KvHash};
pub use image::{
    image_info, image_status, schema_version_row, ImageInfo, ImageSource, ImageStatus, ImageWriter,
    RowVisitor, Table, IMAGE_FORMAT_VERSION, IMAGE_MAGIC,
};
pub use key_index::KeyIndex;
pub use revision::Revision;
pub use store::{LeaseLookup, Store, StoreOptions, BACKEND_FILE_MAGIC};
pub use txn::{is_txn_read_only, is_txn_serializable};
pub use validate::{validate_delete_range, validate_put, validate_range, validate_txn};
pub use watch::{TrySend, WatchHub, WatchMessage, WatchSink, WatchSpec, WatcherId};
