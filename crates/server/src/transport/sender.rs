//! `Transport`: the raft loop's side of the peer transport. It owns one queue
//! and one stream task per peer, starts snapshot sends, and collects what the
//! tasks report (unreachable peers, finished snapshots) for the raft loop to drain.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use raft::eraftpb::{Message, MessageType};
use tokio::runtime::Handle;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use super::dial::Dialer;
use super::snapshot::{self, SnapshotJob};
use super::stream::{self, StreamTask};
use super::{hex, WarnLimiter, PEER_QUEUE_MESSAGES_MAX};
use crate::metrics::PeerMetrics;

/// Sends raft messages to the other members; see the module docs for what it guarantees.
/// Cheap to clone: clones share one transport.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    local_id: u64,
    cluster_id: u64,
    runtime: Handle,
    dialer: Dialer,
    peers: RwLock<HashMap<u64, PeerHandle>>,
    reports: Arc<Reports>,
    closed: AtomicBool,
    metrics: PeerMetrics,
    /// Tests set it to send snapshots with a wrong CRC.
    #[cfg(test)]
    corrupt_snapshot_crc: AtomicBool,
}

/// What the tasks report, drained by the raft loop through `take_*`.
#[derive(Default)]
pub(super) struct Reports {
    unreachable: Mutex<BTreeSet<u64>>,
    snapshots: Mutex<Vec<(u64, bool)>>,
}

impl Reports {
    pub(super) fn unreachable(&self, id: u64) {
        lock(&self.unreachable).insert(id);
    }

    fn snapshot(&self, id: u64, success: bool) {
        lock(&self.snapshots).push((id, success));
    }
}

/// What one peer's tasks share with the transport.
pub(super) struct PeerShared {
    pub(super) id: u64,
    /// `etcd_network_peer_sent_bytes_total`, `…_sent_failures_total` and
    /// `etcd_network_disconnected_peers_total` of this peer.
    pub(super) sent_bytes: prometheus::IntCounter,
    pub(super) sent_failures: prometheus::IntCounter,
    pub(super) disconnected: prometheus::IntCounter,
    /// A stream to the peer is open.
    pub(super) connected: AtomicBool,
    /// A snapshot send to the peer is under way (at most one at a time).
    snapshot_in_flight: AtomicBool,
    /// Warnings from `send` (full queue) and from snapshot sends.
    warn_send: Mutex<WarnLimiter>,
    warn_snapshot: Mutex<WarnLimiter>,
}

/// The transport's hold on one peer. Dropping it stops the peer's tasks.
struct PeerHandle {
    queue: mpsc::Sender<Message>,
    urls: watch::Sender<Vec<String>>,
    shared: Arc<PeerShared>,
    stream_task: AbortHandle,
    snapshot_task: Mutex<Option<AbortHandle>>,
}

impl Drop for PeerHandle {
    fn drop(&mut self) {
        self.stream_task.abort();
        if let Some(task) = lock(&self.snapshot_task).take() {
            task.abort();
        }
    }
}

/// Locks a mutex that no code panics while holding; a poisoned one is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Transport {
    /// `runtime` is the tokio Handle tasks are spawned on; every method may be
    /// called from a plain OS thread (the raft thread) and none of them blocks.
    #[cfg(test)]
    pub fn new(local_id: u64, cluster_id: u64, runtime: Handle, dialer: Dialer) -> Transport {
        Transport::with_metrics(
            local_id,
            cluster_id,
            runtime,
            dialer,
            PeerMetrics::default(),
        )
    }

    /// A transport that counts its traffic in `metrics` (`etcd_network_peer_*`).
    pub fn with_metrics(
        local_id: u64,
        cluster_id: u64,
        runtime: Handle,
        dialer: Dialer,
        metrics: PeerMetrics,
    ) -> Transport {
        Transport {
            inner: Arc::new(Inner {
                local_id,
                cluster_id,
                runtime,
                dialer,
                peers: RwLock::new(HashMap::new()),
                reports: Arc::new(Reports::default()),
                closed: AtomicBool::new(false),
                metrics,
                #[cfg(test)]
                corrupt_snapshot_crc: AtomicBool::new(false),
            }),
        }
    }

    /// How this transport opens connections (other peer-port clients share it).
    pub fn dialer(&self) -> &Dialer {
        &self.inner.dialer
    }

    /// Starts sending to member `id` at the first reachable of `peer_urls`.
    /// Adding a known peer only updates its URLs.
    pub fn add_peer(&self, id: u64, peer_urls: Vec<String>) {
        if id == self.inner.local_id || self.inner.closed.load(Ordering::Acquire) {
            return;
        }
        let mut peers = self
            .inner
            .peers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(peer) = peers.get(&id) {
            set_urls(&peer.urls, peer_urls);
            return;
        }
        let (queue, queue_rx) = mpsc::channel(PEER_QUEUE_MESSAGES_MAX);
        let (urls, urls_rx) = watch::channel(peer_urls);
        let m = &self.inner.metrics;
        let shared = Arc::new(PeerShared {
            id,
            sent_bytes: m.sent_bytes.with_label_values(&[&hex(id)]),
            sent_failures: m.sent_failures.with_label_values(&[&hex(id)]),
            disconnected: m
                .disconnected
                .with_label_values(&[&hex(self.inner.local_id), &hex(id)]),
            connected: AtomicBool::new(false),
            snapshot_in_flight: AtomicBool::new(false),
            warn_send: Mutex::new(WarnLimiter::default()),
            warn_snapshot: Mutex::new(WarnLimiter::default()),
        });
        let task = StreamTask {
            local_id: self.inner.local_id,
            cluster_id: self.inner.cluster_id,
            shared: shared.clone(),
            queue: queue_rx,
            urls: urls_rx,
            reports: self.inner.reports.clone(),
            dialer: self.inner.dialer.clone(),
        };
        let stream_task = self.inner.runtime.spawn(stream::run(task)).abort_handle();
        tracing::info!(
            local_member_id = %hex(self.inner.local_id),
            remote_peer_id = %hex(id),
            "added remote peer"
        );
        peers.insert(
            id,
            PeerHandle {
                queue,
                urls,
                shared,
                stream_task,
                snapshot_task: Mutex::new(None),
            },
        );
    }

    /// Points a known peer at new URLs (its stream moves if its URL is gone);
    /// an unknown peer is ignored, as etcd does.
    pub fn update_peer(&self, id: u64, peer_urls: Vec<String>) {
        let peers = self
            .inner
            .peers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match peers.get(&id) {
            Some(peer) => set_urls(&peer.urls, peer_urls),
            None => tracing::debug!(remote_peer_id = %hex(id), "ignored update of an unknown peer"),
        }
    }

    /// Stops sending to member `id`: its tasks end and its queued messages are dropped.
    pub fn remove_peer(&self, id: u64) {
        let removed = self
            .inner
            .peers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&id);
        lock(&self.inner.reports.unreachable).remove(&id);
        if removed.is_some() {
            tracing::info!(
                local_member_id = %hex(self.inner.local_id),
                remote_peer_id = %hex(id),
                "removed remote peer"
            );
        }
    }

    /// Queues each message for its `to` peer and returns at once. A peer whose queue
    /// is full drops the message (raft retransmits) and is reported unreachable.
    /// `MsgSnapshot` goes through its own snapshot send instead of the queue.
    pub fn send(&self, msgs: Vec<Message>) {
        if self.inner.closed.load(Ordering::Acquire) {
            return;
        }
        let peers = self
            .inner
            .peers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for msg in msgs {
            let to = msg.to;
            let Some(peer) = peers.get(&to) else {
                tracing::debug!(remote_peer_id = %hex(to), "ignored message to an unknown peer");
                continue;
            };
            if msg.get_msg_type() == MessageType::MsgSnapshot {
                self.start_snapshot(peer, msg);
                continue;
            }
            match peer.queue.try_send(msg) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    peer.shared.sent_failures.inc();
                    self.inner.reports.unreachable(to);
                    if let Some(suppressed) = lock(&peer.shared.warn_send).allow(Instant::now()) {
                        tracing::warn!(
                            local_member_id = %hex(self.inner.local_id),
                            remote_peer_id = %hex(to),
                            queue_size = PEER_QUEUE_MESSAGES_MAX,
                            suppressed,
                            "dropped internal raft message since sending buffer is full (overloaded network)"
                        );
                    }
                }
                // The stream task is gone only when the peer is being removed.
                Err(TrySendError::Closed(_)) => self.inner.reports.unreachable(to),
            }
        }
    }

    /// Sends a MsgSnapshot on its own task; one at a time per peer.
    fn start_snapshot(&self, peer: &PeerHandle, message: Message) {
        let shared = peer.shared.clone();
        let reports = self.inner.reports.clone();
        if shared.snapshot_in_flight.swap(true, Ordering::AcqRel) {
            reports.unreachable(shared.id);
            reports.snapshot(shared.id, false);
            if let Some(suppressed) = lock(&shared.warn_snapshot).allow(Instant::now()) {
                tracing::warn!(
                    remote_peer_id = %hex(shared.id),
                    suppressed,
                    "dropped a snapshot: another one is still being sent to this peer"
                );
            }
            return;
        }
        let job = SnapshotJob {
            local_id: self.inner.local_id,
            cluster_id: self.inner.cluster_id,
            urls: peer.urls.borrow().clone(),
            message,
            crc_xor: self.snapshot_crc_xor(),
            dialer: self.inner.dialer.clone(),
        };
        // Held across the spawn, so a quicker later send cannot have its handle overwritten.
        let mut slot = lock(&peer.snapshot_task);
        let label = [hex(shared.id)];
        let sent_ok = self
            .inner
            .metrics
            .snapshot_send_success
            .with_label_values(&label);
        let sent_failed = self
            .inner
            .metrics
            .snapshot_send_failures
            .with_label_values(&label);
        let task = self.inner.runtime.spawn(async move {
            let id = shared.id;
            let started = Instant::now();
            let result = snapshot::send(job).await;
            // Free the slot before reporting, so raft may send the next one at once.
            shared.snapshot_in_flight.store(false, Ordering::Release);
            match result {
                Ok(size_bytes) => {
                    sent_ok.inc();
                    shared.sent_bytes.inc_by(size_bytes);
                    tracing::info!(
                        remote_peer_id = %hex(id),
                        size_bytes,
                        took = ?started.elapsed(),
                        "sent database snapshot"
                    );
                    reports.snapshot(id, true);
                }
                Err(error) => {
                    sent_failed.inc();
                    shared.sent_failures.inc();
                    if let Some(suppressed) = lock(&shared.warn_snapshot).allow(Instant::now()) {
                        tracing::warn!(
                            remote_peer_id = %hex(id),
                            %error,
                            suppressed,
                            "failed to send database snapshot"
                        );
                    }
                    reports.unreachable(id);
                    reports.snapshot(id, false);
                }
            }
        });
        // The previous task has finished (the in-flight flag was clear); forget it.
        *slot = Some(task.abort_handle());
    }

    #[cfg(test)]
    fn snapshot_crc_xor(&self) -> u32 {
        if self.inner.corrupt_snapshot_crc.load(Ordering::Acquire) {
            u32::MAX
        } else {
            0
        }
    }

    #[cfg(not(test))]
    fn snapshot_crc_xor(&self) -> u32 {
        0
    }

    #[cfg(test)]
    pub(super) fn corrupt_snapshot_crc(&self, corrupt: bool) {
        self.inner
            .corrupt_snapshot_crc
            .store(corrupt, Ordering::Release);
    }

    /// Peers to report to raft with `RawNode::report_unreachable` since the last
    /// call (send failures, dropped messages, broken streams), in ID order.
    pub fn take_unreachable(&self) -> Vec<u64> {
        std::mem::take(&mut *lock(&self.inner.reports.unreachable))
            .into_iter()
            .collect()
    }

    /// Snapshot sends that finished since the last call: (peer ID, success), for
    /// `RawNode::report_snapshot`.
    pub fn take_snapshot_reports(&self) -> Vec<(u64, bool)> {
        std::mem::take(&mut *lock(&self.inner.reports.snapshots))
    }

    /// Peers with an open stream right now, in ID order.
    pub fn connected_peers(&self) -> Vec<u64> {
        let peers = self
            .inner
            .peers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut ids: Vec<u64> = peers
            .values()
            .filter(|peer| peer.shared.connected.load(Ordering::Acquire))
            .map(|peer| peer.shared.id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Every peer with whether a stream to it is open, in ID order.
    pub fn peer_states(&self) -> Vec<(u64, bool)> {
        let peers = self
            .inner
            .peers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut states: Vec<(u64, bool)> = peers
            .values()
            .map(|peer| {
                (
                    peer.shared.id,
                    peer.shared.connected.load(Ordering::Acquire),
                )
            })
            .collect();
        states.sort_unstable();
        states
    }

    /// Stops every task and drops every queue; later calls do nothing.
    pub fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let peers = std::mem::take(
            &mut *self
                .inner
                .peers
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        drop(peers);
    }
}

fn set_urls(urls: &watch::Sender<Vec<String>>, new: Vec<String>) {
    urls.send_if_modified(|current| {
        if *current == new {
            return false;
        }
        *current = new;
        true
    });
}
