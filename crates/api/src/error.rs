//! etcd's client-visible errors: one table mapping each to its gRPC code and
//! its `etcdserver: …` message. Nothing else in the project knows gRPC codes;
//! domain errors are converted into an [`EtcdError`] at the edge.
//!
//! Clients (etcdctl, clientv3, the `etcd-client` crate) match on the exact
//! message strings, so they are part of the interface and pinned by the table
//! test below.

use tonic::Code;

/// An error that etcd sends to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtcdError {
    EmptyKey,
    KeyNotFound,
    ValueProvided,
    LeaseProvided,
    TooManyOps,
    DuplicateKey,
    Compacted,
    FutureRev,
    NoSpace,
    LeaseNotFound,
    LeaseExist,
    LeaseTtlTooLarge,
    WatchCanceled,
    MemberExist,
    PeerUrlExist,
    MemberNotEnoughStarted,
    MemberBadUrls,
    MemberNotFound,
    MemberNotLearner,
    LearnerNotReady,
    TooManyLearners,
    RequestTooLarge,
    TooManyRequests,
    RootUserNotExist,
    RootRoleNotExist,
    UserAlreadyExist,
    UserEmpty,
    UserNotFound,
    RoleAlreadyExist,
    RoleNotFound,
    RoleEmpty,
    AuthFailed,
    PermissionDenied,
    RoleNotGranted,
    PermissionNotGranted,
    AuthNotEnabled,
    InvalidAuthToken,
    InvalidAuthMgmt,
    AuthOldRevision,
    PermissionNotGiven,
    NoPasswordUser,
    NoLeader,
    NotLeader,
    LeaderChanged,
    NotCapable,
    Stopped,
    Timeout,
    TimeoutDueToLeaderFail,
    TimeoutDueToConnectionLost,
    TimeoutWaitAppliedIndex,
    Unhealthy,
    Corrupt,
    NotSupportedForLearner,
    BadLeaderTransferee,
    InvalidSortOption,
    TimeoutLeaderTransfer,
    ClusterVersionUnavailable,
    WrongDowngradeVersionFormat,
    InvalidDowngradeTargetVersion,
    DowngradeInProcess,
    NoInflightDowngrade,
    UnknownMethod,
}

impl EtcdError {
    /// Every variant, for tables and reverse lookups.
    pub const ALL: [EtcdError; 62] = {
        use EtcdError::*;
        [
            EmptyKey,
            KeyNotFound,
            ValueProvided,
            LeaseProvided,
            TooManyOps,
            DuplicateKey,
            Compacted,
            FutureRev,
            NoSpace,
            LeaseNotFound,
            LeaseExist,
            LeaseTtlTooLarge,
            WatchCanceled,
            MemberExist,
            PeerUrlExist,
            MemberNotEnoughStarted,
            MemberBadUrls,
            MemberNotFound,
            MemberNotLearner,
            LearnerNotReady,
            TooManyLearners,
            RequestTooLarge,
            TooManyRequests,
            RootUserNotExist,
            RootRoleNotExist,
            UserAlreadyExist,
            UserEmpty,
            UserNotFound,
            RoleAlreadyExist,
            RoleNotFound,
            RoleEmpty,
            AuthFailed,
            PermissionDenied,
            RoleNotGranted,
            PermissionNotGranted,
            AuthNotEnabled,
            InvalidAuthToken,
            InvalidAuthMgmt,
            AuthOldRevision,
            PermissionNotGiven,
            NoPasswordUser,
            NoLeader,
            NotLeader,
            LeaderChanged,
            NotCapable,
            Stopped,
            Timeout,
            TimeoutDueToLeaderFail,
            TimeoutDueToConnectionLost,
            TimeoutWaitAppliedIndex,
            Unhealthy,
            Corrupt,
            NotSupportedForLearner,
            BadLeaderTransferee,
            InvalidSortOption,
            TimeoutLeaderTransfer,
            ClusterVersionUnavailable,
            WrongDowngradeVersionFormat,
            InvalidDowngradeTargetVersion,
            DowngradeInProcess,
            NoInflightDowngrade,
            UnknownMethod,
        ]
    };

    /// The gRPC status code and message etcd sends for this error.
    pub fn code_and_message(self) -> (Code, &'static str) {
        use EtcdError::*;
        match self {
            EmptyKey => (Code::InvalidArgument, "etcdserver: key is not provided"),
            KeyNotFound => (Code::InvalidArgument, "etcdserver: key not found"),
            ValueProvided => (Code::InvalidArgument, "etcdserver: value is provided"),
            LeaseProvided => (Code::InvalidArgument, "etcdserver: lease is provided"),
            TooManyOps => (
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            DuplicateKey => (
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            Compacted => (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            FutureRev => (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            NoSpace => (
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            LeaseNotFound => (Code::NotFound, "etcdserver: requested lease not found"),
            LeaseExist => (Code::FailedPrecondition, "etcdserver: lease already exists"),
            LeaseTtlTooLarge => (Code::OutOfRange, "etcdserver: too large lease TTL"),
            WatchCanceled => (Code::Cancelled, "etcdserver: watch canceled"),
            MemberExist => (
                Code::FailedPrecondition,
                "etcdserver: member ID already exist",
            ),
            PeerUrlExist => (
                Code::FailedPrecondition,
                "etcdserver: Peer URLs already exists",
            ),
            MemberNotEnoughStarted => (
                Code::FailedPrecondition,
                "etcdserver: re-configuration failed due to not enough started members",
            ),
            MemberBadUrls => (
                Code::InvalidArgument,
                "etcdserver: given member URLs are invalid",
            ),
            MemberNotFound => (Code::NotFound, "etcdserver: member not found"),
            MemberNotLearner => (
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member",
            ),
            LearnerNotReady => (
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            TooManyLearners => (
                Code::FailedPrecondition,
                "etcdserver: too many learner members in cluster",
            ),
            RequestTooLarge => (Code::InvalidArgument, "etcdserver: request is too large"),
            TooManyRequests => (Code::ResourceExhausted, "etcdserver: too many requests"),
            RootUserNotExist => (
                Code::FailedPrecondition,
                "etcdserver: root user does not exist",
            ),
            RootRoleNotExist => (
                Code::FailedPrecondition,
                "etcdserver: root user does not have root role",
            ),
            UserAlreadyExist => (
                Code::FailedPrecondition,
                "etcdserver: user name already exists",
            ),
            UserEmpty => (Code::InvalidArgument, "etcdserver: user name is empty"),
            UserNotFound => (Code::FailedPrecondition, "etcdserver: user name not found"),
            RoleAlreadyExist => (
                Code::FailedPrecondition,
                "etcdserver: role name already exists",
            ),
            RoleNotFound => (Code::FailedPrecondition, "etcdserver: role name not found"),
            RoleEmpty => (Code::InvalidArgument, "etcdserver: role name is empty"),
            AuthFailed => (
                Code::InvalidArgument,
                "etcdserver: authentication failed, invalid user ID or password",
            ),
            PermissionDenied => (Code::PermissionDenied, "etcdserver: permission denied"),
            RoleNotGranted => (
                Code::FailedPrecondition,
                "etcdserver: role is not granted to the user",
            ),
            PermissionNotGranted => (
                Code::FailedPrecondition,
                "etcdserver: permission is not granted to the role",
            ),
            AuthNotEnabled => (
                Code::FailedPrecondition,
                "etcdserver: authentication is not enabled",
            ),
            InvalidAuthToken => (Code::Unauthenticated, "etcdserver: invalid auth token"),
            InvalidAuthMgmt => (Code::InvalidArgument, "etcdserver: invalid auth management"),
            AuthOldRevision => (
                Code::InvalidArgument,
                "etcdserver: revision of auth store is old",
            ),
            PermissionNotGiven => (Code::InvalidArgument, "etcdserver: permission not given"),
            // Not in etcd's gRPC error map: it goes out with code Unknown
            // and the auth store's own words.
            NoPasswordUser => (
                Code::Unknown,
                "auth: authentication failed, password was given for no password user",
            ),
            NoLeader => (Code::Unavailable, "etcdserver: no leader"),
            NotLeader => (Code::FailedPrecondition, "etcdserver: not leader"),
            LeaderChanged => (Code::Unavailable, "etcdserver: leader changed"),
            NotCapable => (Code::Unavailable, "etcdserver: not capable"),
            Stopped => (Code::Unavailable, "etcdserver: server stopped"),
            Timeout => (Code::Unavailable, "etcdserver: request timed out"),
            TimeoutDueToLeaderFail => (
                Code::Unavailable,
                "etcdserver: request timed out, possibly due to previous leader failure",
            ),
            TimeoutDueToConnectionLost => (
                Code::Unavailable,
                "etcdserver: request timed out, possibly due to connection lost",
            ),
            TimeoutWaitAppliedIndex => (
                Code::Unavailable,
                "etcdserver: request timed out, waiting for the applied index took too long",
            ),
            Unhealthy => (Code::Unavailable, "etcdserver: unhealthy cluster"),
            Corrupt => (Code::DataLoss, "etcdserver: corrupt cluster"),
            NotSupportedForLearner => (
                Code::Unavailable,
                "etcdserver: rpc not supported for learner",
            ),
            BadLeaderTransferee => (
                Code::FailedPrecondition,
                "etcdserver: bad leader transferee",
            ),
            InvalidSortOption => (Code::InvalidArgument, "etcdserver: invalid sort option"),
            // Not in etcd's gRPC error map, so etcd sends it with code Unknown.
            TimeoutLeaderTransfer => (
                Code::Unknown,
                "etcdserver: request timed out, leader transfer took too long",
            ),
            ClusterVersionUnavailable => (
                Code::FailedPrecondition,
                "etcdserver: cluster version not found during downgrade",
            ),
            WrongDowngradeVersionFormat => (
                Code::InvalidArgument,
                "etcdserver: wrong downgrade target version format",
            ),
            InvalidDowngradeTargetVersion => (
                Code::InvalidArgument,
                "etcdserver: invalid downgrade target version",
            ),
            DowngradeInProcess => (
                Code::FailedPrecondition,
                "etcdserver: cluster has a downgrade job in progress",
            ),
            NoInflightDowngrade => (
                Code::FailedPrecondition,
                "etcdserver: no inflight downgrade job",
            ),
            // A Downgrade action outside the enum; not in etcd's gRPC error
            // map either, so it goes out with code Unknown.
            UnknownMethod => (Code::Unknown, "etcdserver: unknown method"),
        }
    }

    pub fn message(self) -> &'static str {
        self.code_and_message().1
    }

    /// The error a status received from a server stands for, if it is one of etcd's.
    pub fn from_status(status: &tonic::Status) -> Option<EtcdError> {
        Self::ALL
            .into_iter()
            .find(|e| e.code_and_message() == (status.code(), status.message()))
    }
}

impl std::fmt::Display for EtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for EtcdError {}

impl From<EtcdError> for tonic::Status {
    fn from(e: EtcdError) -> Self {
        let (code, message) = e.code_and_message();
        tonic::Status::new(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the strings and codes clients match on (from etcd's rpctypes).
    #[test]
    fn table_matches_etcd() {
        let cases = [
            (
                EtcdError::RequestTooLarge,
                Code::InvalidArgument,
                "etcdserver: request is too large",
            ),
            (
                EtcdError::TooManyOps,
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (
                EtcdError::DuplicateKey,
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            (
                EtcdError::Compacted,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                EtcdError::FutureRev,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (
                EtcdError::NoSpace,
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            (
                EtcdError::LeaseNotFound,
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                EtcdError::NoLeader,
                Code::Unavailable,
                "etcdserver: no leader",
            ),
            (
                EtcdError::Timeout,
                Code::Unavailable,
                "etcdserver: request timed out",
            ),
            (
                EtcdError::LearnerNotReady,
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            (
                EtcdError::EmptyKey,
                Code::InvalidArgument,
                "etcdserver: key is not provided",
            ),
            (
                EtcdError::WrongDowngradeVersionFormat,
                Code::InvalidArgument,
                "etcdserver: wrong downgrade target version format",
            ),
            (
                EtcdError::InvalidDowngradeTargetVersion,
                Code::InvalidArgument,
                "etcdserver: invalid downgrade target version",
            ),
            (
                EtcdError::ClusterVersionUnavailable,
                Code::FailedPrecondition,
                "etcdserver: cluster version not found during downgrade",
            ),
            (
                EtcdError::DowngradeInProcess,
                Code::FailedPrecondition,
                "etcdserver: cluster has a downgrade job in progress",
            ),
            (
                EtcdError::NoInflightDowngrade,
                Code::FailedPrecondition,
                "etcdserver: no inflight downgrade job",
            ),
            (
                EtcdError::UnknownMethod,
                Code::Unknown,
                "etcdserver: unknown method",
            ),
        ];
        for (err, code, msg) in cases {
            let status = tonic::Status::from(err);
            assert_eq!((status.code(), status.message()), (code, msg), "{err:?}");
        }
    }

    #[test]
    fn messages_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for e in EtcdError::ALL {
            assert!(seen.insert(e.message()), "duplicate message for {e:?}");
            // One error etcd sends in its auth store's words.
            let prefix = if e == EtcdError::NoPasswordUser {
                "auth: "
            } else {
                "etcdserver: "
            };
            assert!(e.message().starts_with(prefix), "{e:?}");
            assert_eq!(EtcdError::from_status(&e.into()), Some(e));
        }
    }
}
