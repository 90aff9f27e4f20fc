//! Every bound the server enforces, in one place (relations asserted below).

/// Messages the raft loop takes from its queue in one turn before handling a Ready.
pub const RAFT_MSGS_PER_TURN_MAX: usize = 10_000;
/// Proposals in flight at once; a client past it waits for a slot.
pub const PROPOSALS_IN_FLIGHT_MAX: usize = 10_000;
/// Extra room etcd gives gRPC's receive limit over --max-request-bytes, so that a
/// request slightly too large gets etcd's own "request is too large" error.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// Bytes of entries one raft append message carries at most (etcd's
/// maxSizePerMsg).
pub const RAFT_MESSAGE_BYTES_MAX: u64 = 1024 * 1024;
/// Append messages in flight to one follower at most (etcd's maxInflightMsgs).
pub const RAFT_INFLIGHT_MESSAGES_MAX: usize = 512;
/// Client connections served at once.
pub const CLIENT_CONNECTIONS_MAX: usize = 10_000;
/// HTTP/2 streams per client connection (etcd's --max-concurrent-streams default is unbounded;
/// we bound it).
pub const STREAMS_PER_CONNECTION_MAX: u32 = 1_000;

const _: () = assert!(RAFT_MSGS_PER_TURN_MAX >= PROPOSALS_IN_FLIGHT_MAX);
