//! The server crate's one error type, [`Error`], and the only place that
//! decides which mvcc failure a client sees as which `etcdserver: …` error.
//!
//! An error is either a request's (deterministic: every member refuses the
//! same request the same way, and the client gets etcd's error) or fatal
//! to this member (a file, the WAL, the backend, a peer or the
//! configuration failed: the member refuses to start, or stops).
//! [`Context`] attaches what the member was doing to a fatal error, and
//! [`bail!`] returns one.

use api::EtcdError;
use tonic::Status;

/// What a request to the server can end in besides its answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Refused with one of etcd's errors (`etcdserver: …`). Deterministic:
    /// the same request against the same state is refused the same way on
    /// every member, so it is the client's answer, never a reason to stop.
    #[error(transparent)]
    Request(#[from] EtcdError),
    /// The backend itself failed (I/O, corruption): not the request's
    /// doing, and not what another member would answer.
    #[error("backend failed: {0}")]
    Backend(mvcc::Error),
    /// The leader's answer to a request this member forwarded to it, error
    /// or not, passed on as the leader gave it.
    #[error("the leader answered: {}", .0.message())]
    Forwarded(Status),
    /// This member cannot start or go on: `what` it was doing, and why.
    /// Never a client's answer.
    #[error("{}", fatal_text(what, source.as_deref()))]
    Fatal {
        what: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// Results of the member's own work (start-up, the raft loop, the applier).
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `what: cause: cause's cause …`, each cause once.
fn fatal_text(what: &str, source: Option<&(dyn std::error::Error + Send + Sync)>) -> String {
    let Some(source) = source else {
        return what.to_string();
    };
    let chain = etcd_rs_client::error_chain(source);
    if chain.starts_with(what) {
        chain
    } else {
        format!("{what}: {chain}")
    }
}

impl Error {
    /// Whether every member would answer the same (a refused request), as
    /// opposed to a failure of this member.
    pub fn is_deterministic(&self) -> bool {
        match self {
            Error::Request(_) => true,
            Error::Forwarded(status) => EtcdError::from_status(status).is_some(),
            Error::Backend(_) | Error::Fatal { .. } => false,
        }
    }

    /// A fatal error that is another one, which already says what failed
    /// (another crate's error, with its context).
    pub fn from_cause(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        let source = cause.into();
        Error::Fatal {
            what: source.to_string(),
            source: Some(source),
        }
    }

    /// A fatal error that is only a message (no underlying cause).
    pub fn fatal(what: impl Into<String>) -> Error {
        Error::Fatal {
            what: what.into(),
            source: None,
        }
    }
}

/// Returns a fatal [`Error`] made of a formatted message.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::status::Error::fatal(format!($($arg)*)).into())
    };
}
pub(crate) use bail;

/// Says what the member was doing when something failed, making the
/// failure a fatal [`Error`].
pub trait Context<T> {
    /// Wraps the failure in a fatal error saying `what` failed.
    fn context(self, what: impl Into<String>) -> Result<T>;
    /// As [`Context::context`], with the message made only on failure.
    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

/// Any error (a library's, another crate's `anyhow` error, a message).
impl<T, E: Into<Box<dyn std::error::Error + Send + Sync>>> Context<T>
    for std::result::Result<T, E>
{
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::Fatal {
            what: what.into(),
            source: Some(e.into()),
        })
    }

    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::Fatal {
            what: what().into(),
            source: Some(e.into()),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.ok_or_else(|| Error::fatal(what))
    }

    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.ok_or_else(|| Error::fatal(what()))
    }
}

impl From<mvcc::Error> for Error {
    fn from(e: mvcc::Error) -> Error {
        match request_error(e) {
            Ok(etcd) => Error::Request(etcd),
            Err(e) => Error::Backend(e),
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match e {
            Error::Request(etcd) => etcd.into(),
            Error::Backend(e) => {
                tracing::error!(error = %e, "backend read failed");
                Status::internal(format!("etcdserver: {e}"))
            }
            Error::Forwarded(status) => status,
            e @ Error::Fatal { .. } => {
                tracing::error!(error = %e, "request failed");
                Status::internal(format!("etcdserver: {e}"))
            }
        }
    }
}

/// The client-visible error for a request error, or `Err` for a failure of
/// the backend itself (which must stop the applier rather than be reported).
pub fn request_error(e: mvcc::Error) -> Result<EtcdError, mvcc::Error> {
    use mvcc::Error as E;
    Ok(match e {
        E::Compacted => EtcdError::Compacted,
        E::FutureRevision => EtcdError::FutureRev,
        E::KeyNotFound => EtcdError::KeyNotFound,
        E::LeaseNotFound => EtcdError::LeaseNotFound,
        E::TooManyOps => EtcdError::TooManyOps,
        E::DuplicateKey => EtcdError::DuplicateKey,
        E::EmptyKey => EtcdError::EmptyKey,
        E::ValueProvided => EtcdError::ValueProvided,
        E::LeaseProvided => EtcdError::LeaseProvided,
        E::InvalidSortOption => EtcdError::InvalidSortOption,
        e @ (E::NotReadOnly | E::Backend { .. } | E::Corrupt(_) | E::Broken) => return Err(e),
    })
}

/// The gRPC status for an mvcc error on the read path.
pub fn mvcc_status(e: mvcc::Error) -> Status {
    Error::from(e).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_errors_map_to_etcds_strings() {
        let cases = [
            (
                mvcc::Error::Compacted,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                mvcc::Error::FutureRevision,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (
                mvcc::Error::TooManyOps,
                "etcdserver: too many operations in txn request",
            ),
            (
                mvcc::Error::DuplicateKey,
                "etcdserver: duplicate key given in txn request",
            ),
            (mvcc::Error::KeyNotFound, "etcdserver: key not found"),
            (
                mvcc::Error::LeaseNotFound,
                "etcdserver: requested lease not found",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(mvcc_status(e).message(), want);
        }
        assert!(request_error(mvcc::Error::Corrupt("x".into())).is_err());
    }

    #[test]
    fn fatal_errors_say_what_failed_and_why_once() {
        let io = std::io::Error::other("disk on fire");
        let inner: Result<()> = Err(io).context("fsync wal/0.wal");
        let outer = inner.context("cannot write to the WAL").unwrap_err();
        assert_eq!(
            outer.to_string(),
            "cannot write to the WAL: fsync wal/0.wal: disk on fire"
        );
        assert!(!outer.is_deterministic());
        let none: Result<u8> = None.context("no leader");
        assert_eq!(none.unwrap_err().to_string(), "no leader");
        assert!(Error::Request(EtcdError::KeyNotFound).is_deterministic());
    }
}
