//! The crate's one error type. Messages are written for the operator who reads them in a
//! log at 3 a.m.: they name the file, the offset and what to do about it where we know.

use std::io;
use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system call failed.
    #[error("wal: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// Data on disk fails its checks where it cannot be a torn write.
    #[error("wal: {reason} in {} at offset {offset}: refusing to start", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },

    /// A segment or snapshot file was written in a format this build does not know.
    #[error(
        "wal: {} is in format version {found}, this build reads version {supported} only \
         (was it written by a newer etcd-rs?)",
        path.display()
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// [`crate::Wal::create`] found data where it was to create a new log.
    #[error("wal: {} already holds files; refusing to create a new log over them", dir.display())]
    AlreadyExists { dir: PathBuf },

    /// [`crate::Wal::open`] found no segment.
    #[error("wal: no segment (*.wal) in {}", dir.display())]
    NotFound { dir: PathBuf },

    /// No segment reaches back to the snapshot [`crate::Wal::open`] was asked to start from.
    #[error(
        "wal: no segment in {} reaches back to snapshot index {index} (the oldest starts at \
         index {oldest_first_index}); older segments were released, open from a newer snapshot",
        dir.display()
    )]
    SnapshotNotCovered {
        dir: PathBuf,
        index: u64,
        oldest_first_index: u64,
    },

    /// The snapshot to start from was never recorded in this log.
    #[error(
        "wal: snapshot index {index} term {term} is not recorded in the log in {}; the \
         snapshot and the log do not belong together",
        dir.display()
    )]
    SnapshotNotFound { dir: PathBuf, index: u64, term: u64 },

    /// The log records the snapshot index with another term.
    #[error(
        "wal: snapshot index {index} has term {term}, but the log in {} records term \
         {wal_term} for it",
        dir.display()
    )]
    SnapshotMismatch {
        dir: PathBuf,
        index: u64,
        term: u64,
        wal_term: u64,
    },

    /// Another process holds the log.
    #[error("wal: {} is locked by another process (is another member running on this data dir?)", path.display())]
    Locked { path: PathBuf },

    /// A raft message could not be encoded.
    #[error("wal: cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: protobuf::ProtobufError,
    },

    /// A record is larger than any record the log accepts.
    #[error("wal: a {what} record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },

    /// An earlier write or sync failed; the log must be reopened from disk.
    #[error(
        "wal: an earlier write or sync failed ({reason}); what reached the disk is unknown, \
         restart to recover"
    )]
    Poisoned { reason: String },

    /// A snapshot file fails its checks. [`crate::Snapshotter::load_newest`] renames such a
    /// file to `*.broken` and moves on to an older one.
    #[error("snap: {} is corrupt: {reason}", path.display())]
    SnapshotCorrupt { path: PathBuf, reason: String },
}

/// Adds context to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn context<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: f(),
            source,
        })
    }
}
