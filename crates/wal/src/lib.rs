//! The raft log on disk: a segmented write-ahead log (WAL) and raft snapshot files.
//!
//! The WAL holds everything raft must not forget across a crash: log entries, the latest
//! `HardState` (term, vote, commit), the positions of snapshots, and an opaque metadata
//! blob written by the server (member and cluster ids). The server appends one batch per
//! raft `Ready` with [`Wal::save`]; the call returns only after the batch is on stable
//! storage (`fdatasync`), so anything acknowledged survives `kill -9` and power loss.
//!
//! # Directory layout
//!
//! ```text
//! member/wal/0000000000000000-0000000000000000.wal   seq 0, first entry index 0
//!            0000000000000001-00000000000003e9.wal   seq 1, written from index 1001 on
//!            0000000000000002-00000000000007d1.wal   the tail: appended to, preallocated
//! member/snap/0000000000000002-00000000000003e8.snap  raft snapshot, term 2 index 1000
//! ```
//!
//! A segment is named `{seq:016x}-{first_index:016x}.wal`: `seq` counts up by one with no
//! gaps, `first_index` is the index the next entry had when the segment was started. A new
//! segment is written in full (header, metadata, hard state) under a `.tmp` name,
//! preallocated, synced and then renamed into place, so a segment that has its final name
//! always has a valid header. Segments are cut when the tail grows past the segment size
//! (64 MiB by default); the old tail is truncated to its data and synced first.
//!
//! # Records
//!
//! Every segment is a sequence of 8-byte aligned records:
//!
//! ```text
//!  0        4      5          8           12           16              16+len   (pad to 8)
//!  +--------+------+----------+-----------+------------+------------------+-------+
//!  | len    | type | reserved | data crc  | header crc | payload          | zeros |
//!  | u32 LE | u8   | 3 x 0    | u32 LE    | u32 LE     | len bytes        |       |
//!  +--------+------+----------+-----------+------------+------------------+-------+
//! ```
//!
//! * `header crc` is CRC-32 (IEEE) of bytes 0..12, so the length of a record can be trusted
//!   before its payload is read.
//! * `data crc` is CRC-32 of the payload, seeded with the data crc of the previous record in
//!   the segment: the records form a chain, and a record moved, lost or replayed from
//!   elsewhere breaks it.
//! * An all-zero header marks the end of the data: the rest of a preallocated segment is
//!   zeros.
//!
//! Record types and payloads:
//!
//! ```text
//!  1 segment header   magic "ERSW", format version u32, seq u64, first_index u64,
//!                     prev_crc u32 (last data crc of the previous segment); always first,
//!                     its data crc is seeded with 0 and starts the chain of the segment
//!  2 metadata         the server's bytes; repeated at the start of every segment
//!  3 entry            raft Entry (protobuf)
//!  4 hard state       raft HardState (protobuf); also repeated at the start of a segment
//!  5 snapshot marker  index u64 LE, term u64 LE: a snapshot at this position was saved
//! ```
//!
//! The format version lives in the segment header, the first record of every segment, and
//! that record's framing is frozen: a later format keeps it, so an old build reading a new
//! segment reports [`Error::UnsupportedVersion`] instead of garbage.
//!
//! # Reading and recovery
//!
//! * Replay starts at the segment that holds the snapshot index ([`Wal::open`]), skips entries
//!   at or below it, and applies raft's overwrite rule: an entry with an index at or below
//!   the last one seen replaces that entry and everything after it.
//! * The last `HardState` wins; metadata must be identical in every segment.
//! * A damaged record in the **last** segment is a torn write, repaired by truncating there,
//!   when nothing that looks like a record follows it: the bytes after it are zeros
//!   (preallocated space) or fragments without a single valid record header. Otherwise, and
//!   for any damage in an earlier segment, the log is corrupt and opening fails with
//!   [`Error::Corrupt`]: a record that was acknowledged is never dropped silently.
//! * After any failed write or sync the [`Wal`] refuses further use
//!   ([`Error::Poisoned`]): after a failed `fsync` the kernel may have dropped dirty pages,
//!   and only a fresh read of the disk tells what is there.
//!
//! # Deliberately left out
//!
//! * No repair of damage in the middle of the log; an operator tool can do that later.
//! * No compression and no encryption of records.
//! * Failpoints at the durability steps come later, behind a `failpoints` feature.

mod error;
mod identify;
mod record;
mod replay;
mod segment;
mod snapshotter;
mod wal;

use raft::eraftpb::{Entry, HardState};

pub use crate::error::{Error, Result};
pub use crate::identify::{identify_segment, identify_snapshot, Identity, IDENTIFY_HEAD_BYTES};
pub use crate::snapshotter::Snapshotter;
pub use crate::wal::{Wal, DEFAULT_SEGMENT_SIZE_BYTES};

/// Re-exported so callers name the same `Snapshot` type the snapshotter returns.
pub use raft::eraftpb::Snapshot;

/// Snapshot position recorded in the WAL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalSnapshot {
    pub index: u64,
    pub term: u64,
}

/// What [`Wal::open`] read back from disk.
#[derive(Debug, Clone, Default)]
pub struct ReadState {
    /// The metadata given to [`Wal::create`].
    pub metadata: Vec<u8>,
    /// The last hard state saved (default if none was).
    pub hard_state: HardState,
    /// The entries after the snapshot index, contiguous and in order.
    pub entries: Vec<Entry>,
    /// Bytes of a torn write cut off the end of the last segment (0 if none).
    pub repaired_tail_bytes: u64,
}
