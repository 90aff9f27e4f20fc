//! Every bound the server enforces, in one place (relations asserted below):
//! queues, message sizes, raft's flow control, snapshots, connections.
//! Units come last in names.

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

// Raft and the peer transport.

/// Entries kept in memory behind a snapshot, for slow followers (etcd's
/// SnapshotCatchUpEntries).
pub const SNAPSHOT_CATCH_UP_ENTRIES: u64 = 5000;
/// Snapshot files kept on disk (etcd keeps 5).
pub const SNAPSHOTS_KEPT: usize = 5;
/// Messages queued for one peer; past it `send` drops and reports the peer unreachable.
pub const PEER_QUEUE_MESSAGES_MAX: usize = 4096;
/// Encoded bytes gathered into one `MessageBatch` before it is written (a single
/// larger message still goes alone).
pub const BATCH_SIZE_TARGET_BYTES: usize = 4 * 1024 * 1024;
/// Batches handed to a stream and not yet written to the connection.
pub const STREAM_BATCHES_IN_FLIGHT_MAX: usize = 4;
/// gRPC message limit on the peer port, both ways (raft append batches reach a few MiB).
pub const PEER_GRPC_MESSAGE_SIZE_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Room left in a gRPC message for the batch's own fields.
pub const BATCH_OVERHEAD_BYTES: usize = 64 * 1024;
/// Data bytes per `SnapshotChunk`.
pub const SNAPSHOT_CHUNK_SIZE_BYTES: usize = 1024 * 1024;
/// Largest snapshot a receiver reassembles (etcd's largest recommended backend quota).
pub const SNAPSHOT_SIZE_MAX_BYTES: u64 = 8 * 1024 * 1024 * 1024;

// Client streams.

/// Messages a watch stream's queue holds before its watchers become victims.
pub const WATCH_STREAM_QUEUE_MESSAGES: usize = 256;

const _: () = assert!(RAFT_MSGS_PER_TURN_MAX >= PROPOSALS_IN_FLIGHT_MAX);
// A full window of appends to one follower fits in its queue, with room
// for heartbeats and votes.
const _: () = assert!(PEER_QUEUE_MESSAGES_MAX >= 2 * RAFT_INFLIGHT_MESSAGES_MAX);
// One append message, a target batch and a snapshot chunk each fit in one
// gRPC message on the peer port, with the batch's own fields.
const _: () = assert!(
    RAFT_MESSAGE_BYTES_MAX as usize + BATCH_OVERHEAD_BYTES <= PEER_GRPC_MESSAGE_SIZE_MAX_BYTES
);
const _: () =
    assert!(BATCH_SIZE_TARGET_BYTES + BATCH_OVERHEAD_BYTES <= PEER_GRPC_MESSAGE_SIZE_MAX_BYTES);
const _: () =
    assert!(SNAPSHOT_CHUNK_SIZE_BYTES + BATCH_OVERHEAD_BYTES <= PEER_GRPC_MESSAGE_SIZE_MAX_BYTES);
const _: () = assert!(STREAM_BATCHES_IN_FLIGHT_MAX >= 1 && WATCH_STREAM_QUEUE_MESSAGES >= 1);
// A follower that missed less than the catch-up window is sent entries,
// not a snapshot: the window holds more than one full append window.
const _: () = assert!(SNAPSHOT_CATCH_UP_ENTRIES >= RAFT_INFLIGHT_MESSAGES_MAX as u64);
