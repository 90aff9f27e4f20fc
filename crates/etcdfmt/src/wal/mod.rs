//! etcd's write-ahead log (`member/wal/*.wal`), read and written without
//! etcd: enough to take over a stopped etcd member's raft log, and to hand
//! one back that etcd 3.4 and 3.5 start on.
//!
//! # Segments
//!
//! A WAL directory holds segments named `%016x-%016x.wal`: a sequence
//! number (0, 1, 2, ... without gaps) and the raft index of the first entry
//! the segment may hold. etcd preallocates each segment to
//! [`SEGMENT_SIZE_BYTES`] (64,000,000: decimal "64MB") of zeros, so a
//! segment is its records followed by zeros:
//!
//! ```text
//! 0000000000000000-0000000000000000.wal      (first segment, from Create)
//! +-----+----------+----------+----------+-------+-------+--------------+
//! | crc | metadata | snapshot | snapshot | entry |  ...  | 00 00 00 ... |
//! | (0) |          | (0, 0)   | (i, t)   |       | state | (prealloc)   |
//! +-----+----------+----------+----------+-------+-------+--------------+
//!
//! 0000000000000001-00000000000004d3.wal      (later segment, from cut)
//! +---------------+----------+-------+-------+-------+------------------+
//! | crc (previous | metadata | state | entry |  ...  | 00 00 00 ...     |
//! |  segment's)   |          |       |       |       |                  |
//! +---------------+----------+-------+-------+-------+------------------+
//! ```
//!
//! Each record is framed as drawn in `frame.rs`: an 8-byte little-endian
//! length field (low 56 bits: length; top byte `0x80 | pad` when padded),
//! the walpb.Record protobuf, and zero padding to a multiple of 8 bytes.
//!
//! # Invariants (what the reader checks)
//!
//! - Record types: 1 metadata, 2 entry, 3 hard state, 4 crc, 5 snapshot;
//!   any other type is an error.
//! - Every non-crc record carries the CRC-32C (Castagnoli) of all record
//!   data so far, chained from the crc record that opens its segment; a crc
//!   record carries the chain value the previous segment ended with (0 in
//!   the first segment). The chain spans segments.
//! - A zero length field, or the end of the file, ends a segment.
//! - Only the LAST segment may end in a torn record (short read, or a
//!   record whose 512-byte sector chunks include an all-zero one); reading
//!   stops there, as etcd's read mode does. Anywhere else it is an error.
//! - Every segment repeats the same metadata record (etcdserverpb.Metadata:
//!   node id and cluster id).
//! - An entry at index `i` replaces every entry from `i` on (raft may
//!   overwrite an uncommitted tail); an entry may not leave a gap.
//! - A record of 10 MiB or more (etcd 3.4/3.5's `maxWALEntrySizeLimit`), or
//!   one running past the end of the file, is never allocated.
//!
//! Left out: writing more than one segment (etcd cuts a new segment only
//! after a `Save` leaves the tail at or past 64 MB, and our writer does one
//! `Save`), locking, and any repair (etcd's `Open` zeroes torn tails;
//! our reader only reads).

mod frame;
mod read;
mod write;

use std::fmt;
use std::path::{Path, PathBuf};

pub use frame::{crc32c_update, MAX_RECORD_BYTES};
pub use read::{read_dir, read_dir_split, valid_snapshots};
pub(crate) use write::sync_dir;
pub use write::{write_dir, SEGMENT_SIZE_BYTES};

use crate::raftpb::{ConfState, Entry, HardState, Metadata, WalRecord};

/// WAL record type of the metadata record.
pub const METADATA_TYPE: i64 = 1;
/// WAL record type of an entry record.
pub const ENTRY_TYPE: i64 = 2;
/// WAL record type of a hard state record.
pub const STATE_TYPE: i64 = 3;
/// WAL record type of the crc record opening each segment.
pub const CRC_TYPE: i64 = 4;
/// WAL record type of a snapshot record.
pub const SNAPSHOT_TYPE: i64 = 5;

/// A WAL snapshot record (walpb.Snapshot): the raft snapshot a log
/// continues from. `conf_state` is written by etcd 3.5+ only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalSnapshot {
    /// Snapshot index.
    pub index: u64,
    /// Snapshot term.
    pub term: u64,
    /// Membership at the snapshot (3.5+).
    pub conf_state: Option<ConfState>,
}

/// What [`read_dir`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WalContents {
    /// Node and cluster id.
    pub metadata: Metadata,
    /// The metadata record's bytes as etcd wrote them.
    pub metadata_raw: Vec<u8>,
    /// The last hard state record (all zero if none).
    pub hard_state: HardState,
    /// Every snapshot record read, in log order.
    pub snapshots: Vec<WalSnapshot>,
    /// The entries after the snapshot read from, overwrites applied.
    pub entries: Vec<Entry>,
}

/// One segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Sequence number (first half of the name).
    pub seq: u64,
    /// First raft index the segment may hold (second half of the name).
    pub index: u64,
    /// Full path.
    pub path: PathBuf,
}

impl Segment {
    /// The file name, `%016x-%016x.wal`.
    pub fn name(&self) -> String {
        segment_name(self.seq, self.index)
    }
}

/// etcd's segment name for `(seq, index)`.
pub fn segment_name(seq: u64, index: u64) -> String {
    format!("{seq:016x}-{index:016x}.wal")
}

/// Parses `%016x-%016x.wal` (exactly 16 lowercase or uppercase hex digits
/// each, as etcd writes them).
pub fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (a, b) = stem.split_once('-')?;
    let hex = |s: &str| {
        if s.len() == 16 && s.bytes().all(|c| c.is_ascii_hexdigit()) {
            u64::from_str_radix(s, 16).ok()
        } else {
            None
        }
    };
    Some((hex(a)?, hex(b)?))
}

/// The segments of `dir`, sorted by name (etcd's order). Files that are
/// not segments (`*.tmp`, the `0.tmp` directory, anything else) are
/// skipped.
pub fn list_segments(dir: &Path) -> Result<Vec<Segment>, Error> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((seq, index)) = parse_segment_name(name) {
            out.push((name.to_owned(), seq, index));
        }
    }
    out.sort();
    Ok(out
        .into_iter()
        .map(|(name, seq, index)| Segment {
            seq,
            index,
            path: dir.join(name),
        })
        .collect())
}

/// Whether `first_bytes` (the start of a file) look like an etcd segment:
/// a length field, then a walpb.Record of type crc (field 1 = 4).
pub fn looks_like_etcd_wal(first_bytes: &[u8]) -> bool {
    let Some(head) = first_bytes.get(..8) else {
        return false;
    };
    let mut field = [0u8; 8];
    field.copy_from_slice(head);
    let (len, _) = frame::decode_frame_len(u64::from_le_bytes(field));
    // type (2 bytes) + crc (2..6 bytes): 4 to 8 bytes, no data.
    if !(4..=16).contains(&len) {
        return false;
    }
    let Some(body) = first_bytes.get(8..8 + len as usize) else {
        return false;
    };
    use prost::Message;
    matches!(WalRecord::decode(body), Ok(r) if r.r#type == CRC_TYPE && r.data.is_none())
}

/// What a WAL directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalDirKind {
    /// etcd segments (the first one opens with a crc record).
    Etcd,
    /// Missing, or nothing but etcd's temporaries.
    Empty,
    /// Something else (another program's files, or a damaged first segment).
    Unknown,
}

/// Classifies a WAL directory by its file names and its first segment's
/// first bytes.
pub fn classify_dir(dir: &Path) -> Result<WalDirKind, Error> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(WalDirKind::Empty),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut others = false;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(dir, e))?;
        let name = ent.file_name();
        let name = name.to_string_lossy();
        if parse_segment_name(&name).is_none() && !name.ends_with(".tmp") {
            others = true;
        }
    }
    let segs = list_segments(dir)?;
    let Some(first) = segs.first() else {
        return Ok(if others {
            WalDirKind::Unknown
        } else {
            WalDirKind::Empty
        });
    };
    use std::io::Read;
    let mut buf = Vec::with_capacity(32);
    std::fs::File::open(&first.path)
        .and_then(|f| f.take(32).read_to_end(&mut buf))
        .map_err(|e| Error::io(&first.path, e))?;
    Ok(if looks_like_etcd_wal(&buf) {
        WalDirKind::Etcd
    } else {
        WalDirKind::Unknown
    })
}

/// Errors of the WAL and snap readers and writers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system call failed.
    #[error("etcd file {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// One record of one segment is wrong.
    #[error("etcd wal {file}: record at offset {offset}: {problem}")]
    Record {
        /// Segment file name.
        file: String,
        /// Byte offset of the record's length field.
        offset: u64,
        /// What is wrong.
        problem: Problem,
    },
    /// The WAL directory as a whole is wrong (or the request is).
    #[error("etcd wal {}: {problem}", dir.display())]
    Wal {
        /// The WAL directory.
        dir: PathBuf,
        /// What is wrong.
        problem: Problem,
    },
    /// A snap file or snap directory is wrong.
    #[error("etcd snap {}: {problem}", path.display())]
    Snap {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        problem: Problem,
    },
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// The problem, for errors that are not I/O errors.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Error::Io { .. } => None,
            Error::Record { problem, .. }
            | Error::Wal { problem, .. }
            | Error::Snap { problem, .. } => Some(problem),
        }
    }
}

/// What is wrong, inside an [`Error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The record's CRC does not continue the chain.
    #[error("crc mismatch")]
    CrcMismatch,
    /// A record is cut short or torn, in a segment that is not the last.
    #[error("torn or truncated record ({0}) in a segment that is not the last")]
    TornNotLast(&'static str),
    /// A record of 10 MiB or more.
    #[error("record of {0} bytes is at or over etcd's 10 MiB limit")]
    TooLarge(u64),
    /// Undecodable protobuf.
    #[error("cannot decode {what}: {why}")]
    Decode {
        /// Which message.
        what: &'static str,
        /// prost's message.
        why: String,
    },
    /// A record type etcd does not write.
    #[error("unexpected record type {0}")]
    UnknownType(i64),
    /// Segments disagree on the metadata.
    #[error("metadata record differs from the one read before")]
    MetadataConflict,
    /// No metadata record at all.
    #[error("no metadata record")]
    NoMetadata,
    /// No `*.wal` file.
    #[error("no wal segment files")]
    NoSegments,
    /// No segment starts at or before the snapshot index.
    #[error("no segment can hold snapshot index {0}")]
    NoSegmentFor(u64),
    /// Segment sequence numbers jump.
    #[error("segment sequence numbers do not increase by one at {0}")]
    SeqGap(String),
    /// The snapshot record asked for is missing.
    #[error("snapshot record (index {index}, term {term}) not found")]
    SnapshotNotFound {
        /// Index asked for.
        index: u64,
        /// Term asked for.
        term: u64,
    },
    /// A snapshot record has the index asked for but another term.
    #[error("snapshot record at index {index} has term {found}, expected {term}")]
    SnapshotMismatch {
        /// Index asked for.
        index: u64,
        /// Term asked for.
        term: u64,
        /// Term found.
        found: u64,
    },
    /// An entry would leave a hole after the ones read so far.
    #[error("entry index {index} leaves a gap (snapshot index {from}, {have} entries read)")]
    EntryGap {
        /// The entry's index.
        index: u64,
        /// Snapshot index read from.
        from: u64,
        /// Entries kept so far.
        have: usize,
    },
    /// An entry rewrites one a hard state had already committed.
    #[error("entry {0} rewrites a committed entry")]
    CommittedOverwritten(u64),
    /// The target of a write exists already.
    #[error("target exists")]
    TargetExists,
    /// Arguments a write cannot turn into a log etcd accepts.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// An empty snap file (or empty data, or a zero crc).
    #[error("empty snapshot")]
    EmptySnapshot,
    /// No snap file usable.
    #[error("no usable snapshot file")]
    NoSnapshot,
    /// The v2 store JSON is not what etcd writes.
    #[error("v2 store: {0}")]
    V2Store(String),
}

impl fmt::Display for WalSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(index {}, term {})", self.index, self.term)
    }
}

#[cfg(test)]
mod tests;
