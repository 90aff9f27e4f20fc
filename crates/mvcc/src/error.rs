//! The errors of this crate.
//!
//! Request errors (everything but [`Error::Backend`], [`Error::Corrupt`] and
//! [`Error::Broken`]) are decided before anything changes: the request had no
//! effect and the [`crate::WriteBatch`] stays usable. The other three mean the
//! batch must be dropped; the store then reloads its index from the backend.
//! The server maps each variant to etcd's gRPC code and string in one place.

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The requested revision was removed by a compaction.
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// The requested revision is above the current revision.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// `ignore_value` or `ignore_lease` on a key that does not exist (and
    /// etcd's answer to an empty `RequestOp`).
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// A put names a lease the [`crate::LeaseLookup`] does not know.
    #[error("lease not found")]
    LeaseNotFound,
    /// A txn has more compares, success or failure ops than allowed.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// A txn writes a key twice, or puts a key it also deletes.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A request has an empty key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value` together with a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` together with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A range asks for an unknown sort order or target.
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    /// A txn with writes was given to the read-only path (a caller bug).
    #[error("mvcc: txn has writes and cannot run as a read")]
    NotReadOnly,
    /// redb failed.
    #[error("backend: {context}: {source}")]
    Backend {
        context: &'static str,
        #[source]
        source: Box<redb::Error>,
    },
    /// The backend holds data this code cannot have written.
    #[error("backend corrupt: {0}")]
    Corrupt(String),
    /// An earlier operation of this batch failed half way; drop the batch.
    #[error("mvcc: write batch is broken by an earlier error")]
    Broken,
}

impl Error {
    /// Whether this error leaves the batch unusable (see the module docs).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::Backend { .. } | Error::Corrupt(_) | Error::Broken
        )
    }

    /// Whether opening failed because another process has the backend
    /// file open (redb's file lock: a running server).
    pub fn is_locked(&self) -> bool {
        matches!(self, Error::Backend { source, .. } if matches!(**source, redb::Error::DatabaseAlreadyOpen))
    }
}

/// Adds a context to a redb error.
pub(crate) trait Context<T> {
    fn context(self, context: &'static str) -> Result<T>;
}

impl<T, E: Into<redb::Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: &'static str) -> Result<T> {
        self.map_err(|e| Error::Backend {
            context,
            source: Box::new(e.into()),
        })
    }
}
