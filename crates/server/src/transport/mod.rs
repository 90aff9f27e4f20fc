//! The peer transport: raft messages between the members of one cluster.
//!
//! ```text
//!  raft thread ──send(msgs)──▶ Transport            (send only try_sends: never blocks)
//!                                │ try_send
//!                                ├──▶ queue(2) ──▶ stream task ══ Raft.Stream ══▶ member 2
//!                                ├──▶ queue(3) ──▶ stream task ══ Raft.Stream ══▶ member 3
//!                                └─ MsgSnapshot ──▶ snapshot task ══ Raft.Snapshot ══▶ member n
//!                                                   (1 MiB chunks, CRC-32 in the last)
//!
//!  member n: service() ── version, cluster ID, addressee ── decode ──▶ deliver(msg)
//! ```
//!
//! The wire protocol is `api::peerpb` (crates/api/proto/peerpb/peer.proto): each
//! member keeps one long-lived client stream (`Raft.Stream`) to every other member
//! and writes everything queued for it as one `MessageBatch` per write; snapshots
//! travel on their own `Raft.Snapshot` call, so a large snapshot never delays
//! heartbeats.
//!
//! What the transport guarantees:
//! - `Transport::send` never blocks: it only `try_send`s into a bounded per-peer
//!   queue, so a slow or dead member never holds up the raft thread or other members.
//! - Messages to one member travel in the order they were sent, as long as one
//!   stream lasts: the receiver handles a stream's batches one after another.
//! - A message that cannot be sent (queue full, member unreachable, stream broken)
//!   is dropped and its member reported by `take_unreachable`; every finished
//!   snapshot send is reported by `take_snapshot_reports`, success or failure.
//! - A snapshot is delivered only whole: all chunks, in order, with a matching CRC-32.
//! - The receiver refuses (and logs) batches from another cluster, of a protocol
//!   version it does not know, or addressed to another member.
//!
//! What it deliberately does not do (raft tolerates all of it):
//! - No retransmission and no delivery guarantee: messages dropped under
//!   back-pressure or while a member is down are gone; raft resends what matters.
//! - No ordering across reconnects: messages queued while a stream breaks may be
//!   lost, and messages from before and after a reconnect may be handled out of order.
//! - No check that the sender is still a member: the raft loop should drop
//!   messages from removed members, as etcd does.
//! - TLS is the dialer's and the listener's business: `Dialer` turns peer
//!   URLs into channels (TLS for `https://`); the listener belongs to the caller.
//! - Snapshots are sent from and reassembled in memory (the `Snapshot.data` of the
//!   raft message); streaming a backend file is a later change.

mod dial;
mod discovery;
mod sender;
mod service;
mod snapshot;
mod stream;

#[cfg(test)]
mod tests;

pub use dial::Dialer;
pub use discovery::{discover, forward_promote, Discovered};
pub use sender::Transport;
pub use service::service;

use std::time::{Duration, Instant};

/// Version of `api::peerpb` this build speaks; a receiver refuses others.
pub const PROTOCOL_VERSION: u32 = 1;

/// The one check of the peer protocol version every peer-port call carries.
pub fn check_version(version: u32) -> Result<(), String> {
    if version != PROTOCOL_VERSION {
        return Err(format!(
            "unsupported peer protocol version {version} (this member speaks {PROTOCOL_VERSION})"
        ));
    }
    Ok(())
}

/// What the transport hands to the raft loop: a message from a peer.
pub type Deliver = std::sync::Arc<dyn Fn(raft::eraftpb::Message) + Send + Sync>;

pub use crate::limits::{
    BATCH_OVERHEAD_BYTES, BATCH_SIZE_TARGET_BYTES, PEER_GRPC_MESSAGE_SIZE_MAX_BYTES,
    PEER_QUEUE_MESSAGES_MAX, SNAPSHOT_CHUNK_SIZE_BYTES, SNAPSHOT_SIZE_MAX_BYTES,
    STREAM_BATCHES_IN_FLIGHT_MAX,
};
/// A snapshot send is given this long, plus `SNAPSHOT_SEND_TIMEOUT_PER_MIB_MS` per MiB.
pub const SNAPSHOT_SEND_TIMEOUT_BASE_MS: u64 = 30_000;
pub const SNAPSHOT_SEND_TIMEOUT_PER_MIB_MS: u64 = 1_000;
/// Time allowed to open a TCP connection (and HTTP/2) to one peer URL.
pub const DIAL_TIMEOUT_MS: u64 = 1_000;
/// HTTP/2 pings on idle peer connections, and how long a ping may go unanswered
/// before the connection counts as broken (a partitioned peer sends no RST).
pub const KEEPALIVE_INTERVAL_MS: u64 = 1_000;
pub const KEEPALIVE_TIMEOUT_MS: u64 = 5_000;
/// Reconnect delays: from the minimum, doubling up to the maximum, with jitter.
pub const RECONNECT_BACKOFF_MIN_MS: u64 = 50;
pub const RECONNECT_BACKOFF_MAX_MS: u64 = 2_000;
/// At most one warning per peer (per kind) in this interval; the rest are counted.
pub const WARN_INTERVAL_MS: u64 = 5_000;
/// Remote members whose refusals the service rate-limits separately.
pub const SERVICE_LOG_PEERS_MAX: usize = 1024;

const _: () = assert!(RECONNECT_BACKOFF_MIN_MS <= RECONNECT_BACKOFF_MAX_MS);
const _: () = assert!(KEEPALIVE_INTERVAL_MS < KEEPALIVE_TIMEOUT_MS);

/// Member IDs are printed in hex, as etcd prints them.
fn hex(id: u64) -> String {
    format!("{id:x}")
}

/// One warning per `WARN_INTERVAL_MS`; the warnings held back meanwhile are counted
/// and reported with the next one.
#[derive(Debug, Default)]
struct WarnLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    /// `Some(suppressed since the last warning)` when a warning may be logged now.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        let interval = Duration::from_millis(WARN_INTERVAL_MS);
        match self.last {
            Some(last) if now.saturating_duration_since(last) < interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}
