//! Domain errors → etcd's client-visible errors. The only place that decides
//! which mvcc failure a client sees as which `etcdserver: …` error, and the
//! server's [`Error`].

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
}

impl Error {
    /// Whether every member would answer the same (a refused request), as
    /// opposed to a failure of this member.
    pub fn is_deterministic(&self) -> bool {
        match self {
            Error::Request(_) => true,
            Error::Forwarded(status) => EtcdError::from_status(status).is_some(),
            Error::Backend(_) => false,
        }
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
}
