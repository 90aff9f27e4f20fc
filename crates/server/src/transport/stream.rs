//! One peer's stream task: keeps a `Raft.Stream` open to the peer and writes
//! everything queued for it, one `MessageBatch` per write.
//!
//! ```text
//!   connect (first reachable URL) ──ok──▶ stream: empty batch (handshake), then
//!        ▲  │ all URLs failed                  batches of queued messages
//!        │  ▼                                       │ broken / refused
//!   backoff 50 ms ×2 … 2 s, jitter ◀── report unreachable, drop the queue
//! ```
//! A new URL list interrupts the backoff; it ends the stream only when the
//! stream's URL is no longer in the list.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::peerpb::raft_client::RaftClient;
use api::peerpb::{MessageBatch, StreamResponse};
use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::dial::{self, error_chain, Dialer};
use super::sender::{PeerShared, Reports};
use super::{
    hex, WarnLimiter, BATCH_OVERHEAD_BYTES, BATCH_SIZE_TARGET_BYTES,
    PEER_GRPC_MESSAGE_SIZE_MAX_BYTES, PEER_QUEUE_MESSAGES_MAX, PROTOCOL_VERSION,
    RECONNECT_BACKOFF_MAX_MS, RECONNECT_BACKOFF_MIN_MS, STREAM_BATCHES_IN_FLIGHT_MAX,
};

/// Everything the stream task of one peer owns.
pub(super) struct StreamTask {
    pub(super) local_id: u64,
    pub(super) cluster_id: u64,
    pub(super) shared: Arc<PeerShared>,
    pub(super) queue: mpsc::Receiver<Message>,
    pub(super) urls: watch::Receiver<Vec<String>>,
    pub(super) reports: Arc<Reports>,
    pub(super) dialer: Dialer,
}

/// Why a stream ended.
enum StreamEnd {
    /// The peer was removed or the transport shut down.
    Stopped,
    /// The stream's URL was removed from the peer's URLs.
    UrlsChanged,
    Failed(String),
}

/// Runs until the peer is removed or the transport shut down.
pub(super) async fn run(mut task: StreamTask) {
    let mut backoff = Backoff::new();
    let mut warn = WarnLimiter::default();
    // A peer that refuses every stream would otherwise log "active" on each reconnect.
    let mut info = WarnLimiter::default();
    let mut active = false;
    loop {
        let urls = task.urls.borrow_and_update().clone();
        let connected = tokio::select! {
            connected = dial::connect_any(&task.dialer, &urls) => connected,
            changed = task.urls.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        match connected {
            Ok((url, client)) => {
                if !std::mem::replace(&mut active, true) && info.allow(Instant::now()).is_some() {
                    tracing::info!(
                        local_member_id = %hex(task.local_id),
                        remote_peer_id = %hex(task.shared.id),
                        %url,
                        "peer became active"
                    );
                }
                let started = Instant::now();
                let end = task.stream(client, &url).await;
                task.shared.connected.store(false, Ordering::Release);
                match end {
                    StreamEnd::Stopped => return,
                    StreamEnd::UrlsChanged => {
                        backoff.reset();
                        continue;
                    }
                    StreamEnd::Failed(reason) => {
                        // A stream that lasted is a fresh start; a refused or
                        // flapping one keeps backing off.
                        if started.elapsed() >= Duration::from_millis(RECONNECT_BACKOFF_MAX_MS) {
                            backoff.reset();
                        }
                        task.failed(
                            &mut warn,
                            &mut active,
                            &format!("lost stream to {url}: {reason}"),
                        );
                    }
                }
            }
            Err(reason) => {
                task.failed(&mut warn, &mut active, &format!("failed to dial: {reason}"))
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            changed = task.urls.changed() => {
                if changed.is_err() {
                    return;
                }
                backoff.reset();
            }
        }
    }
}

impl StreamTask {
    /// The peer cannot be reached: report it, drop what is queued for it (raft
    /// resends what still matters) and warn, at most once per interval.
    fn failed(&mut self, warn: &mut WarnLimiter, active: &mut bool, reason: &str) {
        self.reports.unreachable(self.shared.id);
        let mut dropped = 0usize;
        while self.queue.try_recv().is_ok() {
            dropped += 1;
        }
        self.shared.sent_failures.inc_by(dropped as u64);
        let became_inactive = std::mem::replace(active, false);
        if became_inactive {
            self.shared.disconnected.inc();
        }
        if let Some(suppressed) = warn.allow(Instant::now()) {
            tracing::warn!(
                local_member_id = %hex(self.local_id),
                remote_peer_id = %hex(self.shared.id),
                error = %reason,
                dropped_messages = dropped,
                suppressed,
                "{}",
                if became_inactive {
                    "peer became inactive (message send to peer failed)"
                } else {
                    "peer is unreachable"
                }
            );
        }
    }

    /// Writes queued messages to one stream until it breaks, is refused, or is no longer wanted.
    async fn stream(&mut self, mut client: RaftClient<Channel>, url: &str) -> StreamEnd {
        let (batches, batches_rx) = mpsc::channel(STREAM_BATCHES_IN_FLIGHT_MAX);
        // An empty first batch: the receiver checks version and cluster ID at once,
        // so a refusal ends the stream before messages are lost to it.
        if batches.try_send(self.batch(Vec::new())).is_err() {
            return StreamEnd::Failed("stream closed before the handshake".to_string());
        }
        let call = client.stream(ReceiverStream::new(batches_rx));
        tokio::pin!(call);
        self.shared.connected.store(true, Ordering::Release);
        let mut pending: Option<Vec<u8>> = None;
        loop {
            let first = match pending.take() {
                Some(first) => first,
                None => {
                    let msg = tokio::select! {
                        biased;
                        result = &mut call => return ended(result),
                        changed = self.urls.changed() => {
                            if changed.is_err() {
                                return StreamEnd::Stopped;
                            }
                            if !self.urls.borrow_and_update().iter().any(|u| u == url) {
                                return StreamEnd::UrlsChanged;
                            }
                            continue;
                        }
                        msg = self.queue.recv() => match msg {
                            Some(msg) => msg,
                            None => return StreamEnd::Stopped,
                        },
                    };
                    match self.encode(&msg) {
                        Some(encoded) => encoded,
                        None => continue,
                    }
                }
            };
            // Wait for room first, so that what queues meanwhile joins this batch.
            let permit = tokio::select! {
                biased;
                result = &mut call => return ended(result),
                permit = batches.reserve() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return StreamEnd::Failed("stream closed".to_string()),
                },
            };
            let messages = self.gather(first, &mut pending);
            let bytes: usize = messages.iter().map(Vec::len).sum();
            self.shared.sent_bytes.inc_by(bytes as u64);
            permit.send(self.batch(messages));
        }
    }

    /// `first` and whatever else is queued, up to `BATCH_SIZE_TARGET_BYTES` (a larger
    /// single message goes alone); the message that does not fit waits in `pending`.
    fn gather(&mut self, first: Vec<u8>, pending: &mut Option<Vec<u8>>) -> Vec<Vec<u8>> {
        let mut size = first.len();
        let mut messages = vec![first];
        while messages.len() < PEER_QUEUE_MESSAGES_MAX {
            let Ok(msg) = self.queue.try_recv() else {
                break;
            };
            let Some(encoded) = self.encode(&msg) else {
                continue;
            };
            if size + encoded.len() > BATCH_SIZE_TARGET_BYTES {
                *pending = Some(encoded);
                break;
            }
            size += encoded.len();
            messages.push(encoded);
        }
        messages
    }

    /// The message's protobuf encoding, or `None` (warned, peer reported) when it
    /// cannot be encoded or is too large for the peer port.
    fn encode(&self, msg: &Message) -> Option<Vec<u8>> {
        let error = match msg.write_to_bytes() {
            Ok(encoded)
                if encoded.len() + BATCH_OVERHEAD_BYTES <= PEER_GRPC_MESSAGE_SIZE_MAX_BYTES =>
            {
                return Some(encoded)
            }
            Ok(encoded) => format!(
                "message of {} bytes is over the peer message limit",
                encoded.len()
            ),
            Err(e) => format!("cannot encode message: {e}"),
        };
        self.reports.unreachable(self.shared.id);
        tracing::warn!(
            remote_peer_id = %hex(self.shared.id),
            msg_type = ?msg.get_msg_type(),
            %error,
            "dropped internal raft message"
        );
        None
    }

    fn batch(&self, messages: Vec<Vec<u8>>) -> MessageBatch {
        MessageBatch {
            version: PROTOCOL_VERSION,
            cluster_id: self.cluster_id,
            from: self.local_id,
            to: self.shared.id,
            messages,
        }
    }
}

/// The receiver answers only when a stream ends, so any answer is an ending.
fn ended(result: Result<tonic::Response<StreamResponse>, tonic::Status>) -> StreamEnd {
    match result {
        Ok(response) if response.get_ref().error.is_empty() => {
            StreamEnd::Failed("peer closed the stream".to_string())
        }
        Ok(response) => StreamEnd::Failed(format!(
            "peer refused the stream: {}",
            response.into_inner().error
        )),
        Err(status) => StreamEnd::Failed(error_chain(&status)),
    }
}

/// Reconnect delays: exponential from the minimum to the maximum, each one drawn
/// uniformly from its upper half so that members do not reconnect in lockstep.
pub(super) struct Backoff {
    next_ms: u64,
    rng: u64,
}

impl Backoff {
    pub(super) fn new() -> Backoff {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(0);
        Backoff {
            next_ms: RECONNECT_BACKOFF_MIN_MS,
            rng: hasher.finish() | 1,
        }
    }

    pub(super) fn reset(&mut self) {
        self.next_ms = RECONNECT_BACKOFF_MIN_MS;
    }

    pub(super) fn next_delay(&mut self) -> Duration {
        let ceiling = self.next_ms;
        self.next_ms = (ceiling * 2).min(RECONNECT_BACKOFF_MAX_MS);
        let floor = ceiling / 2;
        Duration::from_millis(floor + self.random() % (ceiling - floor + 1))
    }

    /// xorshift64: jitter needs spread, not quality.
    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
}
