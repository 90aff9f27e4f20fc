//! The raft node loop: one OS thread that owns raft-rs's `RawNode`, the WAL
//! and the snapshotter. It runs on its own thread (not a tokio task) because
//! it blocks in `fdatasync`; every other part talks to it through a channel.
//!
//! Each turn of the loop, in raft-rs's Ready order:
//! 1. take every queued message (proposals, read-index requests, snapshot
//!    requests): proposals that arrive during an fsync are batched into the
//!    next Ready, so one fdatasync acknowledges many writes (group commit);
//! 2. tick when the heartbeat interval has passed;
//! 3. handle a Ready: hand committed entries to the applier, append new
//!    entries and the hard state to the WAL with one fdatasync, answer
//!    read-index requests, advance, and hand over newly committed entries.
//!
//! Invariants: an entry reaches the applier only once raft committed it, and
//! raft commits only entries a quorum persisted (for one member: after our
//! fdatasync); the applied index only grows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::status::{Context, Result};
use api::etcdserverpb::{ClusterSnapshot, Member, RaftSnapshotData};
use api::EtcdError;
use prost::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, Message, MessageType, Snapshot,
};
use raft::{RawNode, StateRole, Storage, StorageError};
use tokio::sync::oneshot;
use wal::{Snapshotter, Wal, WalSnapshot};

use crate::limits::{self, SNAPSHOTS_KEPT, SNAPSHOT_CATCH_UP_ENTRIES};
use crate::metrics::Metrics;
use crate::node::raft_storage::{committed_entries, RaftStorage, RAFT_SNAPSHOT_DATA_VERSION};
use crate::node::seams::{Clock, PeerChange, Transport};
use crate::node::wait::Wait;

/// What other parts of the server ask of the raft loop.
pub enum RaftMsg {
    /// Append `data` (an encoded `InternalRaftRequest` with header ID `id`) to the log.
    Propose {
        id: u64,
        data: Vec<u8>,
    },
    /// Reply with an index that, once applied, makes a local read linearizable.
    ReadIndex {
        reply: ReadReply,
    },
    /// The backend is durable through `index`: take a raft snapshot there (with
    /// `data`, the cluster metadata at that index) and release the WAL behind it.
    Snapshot {
        index: u64,
        data: Vec<u8>,
    },
    /// Apply a committed conf change to raft's configuration (the applier asks,
    /// in log order, and waits for the answer).
    /// `None`: the change was rejected at apply time; only its index is recorded.
    ApplyConfChange {
        cc: Option<ConfChange>,
        /// The index of the entry it came from.
        index: u64,
        reply: std::sync::mpsc::Sender<Result<ConfState, raft::Error>>,
    },
    /// Propose a membership change; its result arrives by `cc.id` through the waiter.
    ProposeConfChange {
        cc: ConfChange,
    },
    /// As leader, whether learner `id` has caught up (its match index is at least
    /// 90% of the leader's, etcd's rule for promotion).
    LearnerReady {
        id: u64,
        reply: oneshot::Sender<Result<bool, EtcdError>>,
    },
    /// Hand leadership to `target` (raft's leader transfer).
    TransferLeader {
        target: u64,
    },
    /// A raft message from a peer.
    Step(Box<Message>),
    Shutdown,
}

/// Where a read-index answer goes.
pub type ReadReply = oneshot::Sender<Result<u64, EtcdError>>;

/// What the applier receives, in log order.
pub enum ApplyBatch {
    /// Committed entries.
    Entries(Vec<Entry>),
    /// A snapshot from the leader replaced the log up to `index`: restore the
    /// backend from the image at `image_path` and the cluster view from `cluster`.
    Snapshot {
        index: u64,
        cluster: Vec<u8>,
        image_path: PathBuf,
    },
}

/// Raft state published for status queries, updated by the loop.
#[derive(Default)]
pub struct RaftStatus {
    pub term: AtomicU64,
    pub leader: AtomicU64,
    pub commit_index: AtomicU64,
}

impl RaftStatus {
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }
    pub fn leader(&self) -> u64 {
        self.leader.load(Ordering::Acquire)
    }
    pub fn commit_index(&self) -> u64 {
        self.commit_index.load(Ordering::Acquire)
    }
}

pub struct RaftNode {
    member_id: u64,
    raw: RawNode<RaftStorage>,
    wal: Wal,
    snapshotter: Arc<Snapshotter>,
    snap_dir: PathBuf,
    apply_tx: Sender<ApplyBatch>,
    status: Arc<RaftStatus>,
    wait: Arc<Wait>,
    transport: Arc<dyn Transport>,
    /// Where the loop reads the time (ticks, read-index retries, heartbeat gaps).
    clock: Arc<dyn Clock>,
    /// Demoted here as soon as leadership is lost (promoted by the applier).
    lessor: Arc<lease::Lessor>,
    tick_interval: Duration,
    metrics: Arc<Metrics>,
    /// The commit index last written to the WAL.
    saved_commit: u64,
    /// The highest index of a committed conf change known to this loop, and
    /// the highest the applier has applied to raft: while the first is ahead,
    /// raft's configuration is not final and this member must not campaign.
    conf_pending_through: u64,
    conf_applied_through: u64,
    /// When the leader last sent a heartbeat to each member (etcd's timeout
    /// detector behind `heartbeat_send_failures_total`).
    heartbeats_sent: HashMap<u64, Instant>,
    /// What the loop carries from one turn to the next.
    turns: Turns,
}

/// What a raft loop is made of: its raft node and log, and the seams and
/// channels to the rest of the member. The loop's own state starts empty.
pub struct Parts {
    pub member_id: u64,
    pub raw: RawNode<RaftStorage>,
    pub wal: Wal,
    pub snapshotter: Arc<Snapshotter>,
    pub snap_dir: PathBuf,
    /// Committed entries go to the applier here.
    pub apply_tx: Sender<ApplyBatch>,
    /// Published after every turn (term, leader, indexes).
    pub status: Arc<RaftStatus>,
    /// Proposers waiting for their entries.
    pub wait: Arc<Wait>,
    pub transport: Arc<dyn Transport>,
    pub clock: Arc<dyn Clock>,
    pub lessor: Arc<lease::Lessor>,
    /// How often raft ticks (`--heartbeat-interval`).
    pub tick_interval: Duration,
    pub metrics: Arc<Metrics>,
}

impl RaftNode {
    /// A raft loop over `parts`, not yet started (see [`RaftNode::start`]).
    pub fn new(parts: Parts) -> RaftNode {
        RaftNode {
            member_id: parts.member_id,
            raw: parts.raw,
            wal: parts.wal,
            snapshotter: parts.snapshotter,
            snap_dir: parts.snap_dir,
            apply_tx: parts.apply_tx,
            status: parts.status,
            wait: parts.wait,
            transport: parts.transport,
            clock: parts.clock,
            lessor: parts.lessor,
            tick_interval: parts.tick_interval,
            metrics: parts.metrics,
            saved_commit: 0,
            conf_pending_through: 0,
            conf_applied_through: 0,
            heartbeats_sent: HashMap::new(),
            turns: Turns::default(),
        }
    }
}

/// What the raft loop carries from one turn to the next.
#[derive(Default)]
pub struct Turns {
    /// When raft ticks next (set by `RaftNode::start`).
    next_tick: Option<Instant>,
    /// Readers that asked during this turn.
    read_waiters: Vec<ReadReply>,
    /// Read-index requests raft has not answered yet, by context.
    read_batches: HashMap<Vec<u8>, ReadBatch>,
    read_ctx: u64,
}

/// Whether the loop goes on after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    Continue,
    /// A `Shutdown` was handled.
    Stop,
}

/// raft-rs's configuration for a member: a tick per heartbeat interval,
/// `election_tick` ticks to an election, check-quorum on, etcd's message
/// bounds, and `applied` the index raft re-delivers committed entries after.
pub fn raft_config(
    member_id: u64,
    election_tick: usize,
    applied: u64,
    pre_vote: bool,
) -> raft::Config {
    raft::Config {
        id: member_id,
        election_tick,
        heartbeat_tick: 1,
        applied,
        max_size_per_msg: limits::RAFT_MESSAGE_BYTES_MAX,
        max_inflight_msgs: limits::RAFT_INFLIGHT_MESSAGES_MAX,
        pre_vote,
        check_quorum: true,
        ..Default::default()
    }
}

/// A learner may be promoted once its log matches this fraction of the leader's (etcd's 90%).
const LEARNER_READY_FRACTION: f64 = 0.9;

/// Readers waiting for one read-index answer.
pub struct ReadBatch {
    asked: Instant,
    waiters: Vec<ReadReply>,
}

/// How long a read-index request may go unanswered before it is asked again (etcd: 500 ms).
const READ_INDEX_RETRY_INTERVAL: Duration = Duration::from_millis(500);

impl RaftNode {
    /// Runs until `Shutdown` or until every sender is gone. A storage failure
    /// stops the loop with an error: the process must not keep acknowledging.
    pub fn run(mut self, rx: Receiver<RaftMsg>) -> Result<()> {
        self.start()?;
        loop {
            let timeout = self.next_tick().saturating_duration_since(self.clock.now());
            let first = match rx.recv_timeout(timeout) {
                Ok(msg) => Some(msg),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            };
            let msgs: Vec<RaftMsg> = first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
                .take(limits::RAFT_MSGS_PER_TURN_MAX)
                .collect();
            if self.turn(msgs)? == Turn::Stop {
                return Ok(());
            }
        }
    }

    /// Before the first turn: what the log says about pending conf changes,
    /// the status, and a lone voter's campaign.
    pub fn start(&mut self) -> Result<()> {
        self.conf_pending_through = self.committed_conf_change_through()?;
        self.turns.next_tick = Some(self.clock.now() + self.tick_interval);
        self.publish_status();
        self.campaign_if_alone()
    }

    /// When raft ticks next.
    pub fn next_tick(&self) -> Instant {
        self.turns
            .next_tick
            .unwrap_or_else(|| self.clock.now() + self.tick_interval)
    }

    /// One turn of the loop: handles `msgs`, the transport's reports, a tick
    /// if one is due by the clock, read-index requests, and a Ready.
    pub fn turn(&mut self, msgs: Vec<RaftMsg>) -> Result<Turn> {
        for msg in msgs {
            match msg {
                RaftMsg::Propose { id, data } => {
                    if let Err(e) = self.raw.propose(vec![], data) {
                        tracing::debug!(error = %e, "proposal dropped");
                        self.metrics.proposals_failed.inc();
                        self.wait.fail(id, self.no_leader_error());
                    }
                }
                RaftMsg::ReadIndex { reply } => self.turns.read_waiters.push(reply),
                RaftMsg::Snapshot { index, data } => self.snapshot(index, data)?,
                RaftMsg::ApplyConfChange { cc, index, reply } => {
                    self.conf_applied_through = self.conf_applied_through.max(index);
                    let result = match &cc {
                        Some(cc) => self.raw.apply_conf_change(cc).inspect(|cs| {
                            self.raw.mut_store().wl().set_conf_state(cs.clone());
                        }),
                        None => Ok(self.raw.raft.prs().conf().to_conf_state()),
                    };
                    if let (Some(cc), Ok(_)) = (&cc, &result) {
                        self.update_peers(cc);
                    }
                    let _ = reply.send(result);
                    self.campaign_if_alone()?;
                }
                RaftMsg::ProposeConfChange { cc } => {
                    let id = cc.id;
                    if let Err(e) = self.raw.propose_conf_change(vec![], cc) {
                        tracing::debug!(error = %e, "conf change proposal dropped");
                        self.wait.fail(id, self.no_leader_error());
                    }
                }
                RaftMsg::LearnerReady { id, reply } => {
                    let _ = reply.send(self.learner_ready(id));
                }
                RaftMsg::TransferLeader { target } => self.raw.transfer_leader(target),
                RaftMsg::Step(m) => {
                    if let Err(e) = self.raw.step(*m) {
                        tracing::debug!(error = %e, "raft refused a peer message");
                    }
                }
                RaftMsg::Shutdown => return Ok(Turn::Stop),
            }
        }

        for id in self.transport.take_unreachable() {
            self.raw.report_unreachable(id);
        }
        for (id, ok) in self.transport.take_snapshot_reports() {
            let status = if ok {
                raft::SnapshotStatus::Finish
            } else {
                raft::SnapshotStatus::Failure
            };
            self.raw.report_snapshot(id, status);
        }

        let now = self.clock.now();
        let next_tick = self.next_tick();
        if now >= next_tick {
            self.raw.tick();
            let mut next = next_tick + self.tick_interval;
            if next < now {
                next = now + self.tick_interval;
            }
            self.turns.next_tick = Some(next);
        }

        if !self.turns.read_waiters.is_empty() {
            if self.raw.raft.leader_id == raft::INVALID_ID {
                self.metrics.read_indexes_failed.inc();
                for w in self.turns.read_waiters.drain(..) {
                    let _ = w.send(Err(EtcdError::NoLeader));
                }
            } else {
                self.turns.read_ctx += 1;
                // Unique across members: followers forward their requests to the
                // leader, which ignores a context it already has pending.
                let mut ctx = self.member_id.to_be_bytes().to_vec();
                ctx.extend_from_slice(&self.turns.read_ctx.to_be_bytes());
                self.raw.read_index(ctx.clone());
                let waiters = std::mem::take(&mut self.turns.read_waiters);
                self.turns.read_batches.insert(
                    ctx,
                    ReadBatch {
                        asked: now,
                        waiters,
                    },
                );
            }
        }
        let mut read_batches = std::mem::take(&mut self.turns.read_batches);
        self.retry_reads(&mut read_batches);
        let ready = self.on_ready(&mut read_batches);
        self.turns.read_batches = read_batches;
        ready?;
        Ok(Turn::Continue)
    }

    fn learner_ready(&self, id: u64) -> Result<bool, EtcdError> {
        let raft = &self.raw.raft;
        if raft.state != StateRole::Leader {
            return Err(EtcdError::NotLeader);
        }
        let progress = raft.prs();
        let leader_match = progress.get(self.member_id).map_or(0, |p| p.matched);
        let learner = progress.get(id).ok_or(EtcdError::MemberNotFound)?;
        Ok(learner.matched as f64 >= leader_match as f64 * LEARNER_READY_FRACTION)
    }

    /// The index of the last committed conf change in the log raft will re-deliver.
    fn committed_conf_change_through(&self) -> Result<u64> {
        let entries = committed_entries(self.raw.store(), self.raw.raft.raft_log.committed)
            .context("read the committed log")?;
        Ok(entries
            .iter()
            .rev()
            .find(|e| e.get_entry_type() != EntryType::EntryNormal)
            .map_or(0, |e| e.index))
    }

    /// Keeps the transport's peers in step with an applied conf change.
    fn update_peers(&self, cc: &ConfChange) {
        if cc.node_id == self.member_id {
            return;
        }
        match cc.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                match Member::decode(&cc.context[..]) {
                    Ok(m) => self.transport.membership_changed(PeerChange::Added {
                        id: cc.node_id,
                        peer_urls: m.peer_ur_ls,
                    }),
                    Err(e) => tracing::warn!(
                        member_id = %format!("{:x}", cc.node_id),
                        error = %e,
                        "conf change without a readable member: no peer URLs to dial"
                    ),
                }
            }
            ConfChangeType::RemoveNode => self
                .transport
                .membership_changed(PeerChange::Removed { id: cc.node_id }),
        }
    }

    /// Raft may drop a read-index request (no leader yet, a leader change): ask
    /// again for batches unanswered for a while, as etcd does, and forget
    /// batches whose readers have all given up.
    fn retry_reads(&mut self, read_batches: &mut HashMap<Vec<u8>, ReadBatch>) {
        read_batches.retain(|_, b| b.waiters.iter().any(|w| !w.is_closed()));
        let now = self.clock.now();
        for (ctx, batch) in read_batches.iter_mut() {
            if now.saturating_duration_since(batch.asked) >= READ_INDEX_RETRY_INTERVAL {
                self.metrics.slow_read_indexes.inc();
                batch.asked = now;
                self.raw.read_index(ctx.clone());
            }
        }
    }

    /// A lone voter needs no election timeout to find out it wins. Only once every
    /// committed conf change is applied (etcd raft's rule): while the founding
    /// entries replay, the first member looks alone and would win a term alone
    /// that another member already leads.
    fn campaign_if_alone(&mut self) -> Result<()> {
        if self.conf_applied_through >= self.conf_pending_through
            && self.is_single_voter()
            && self.raw.raft.leader_id == raft::INVALID_ID
        {
            self.raw.campaign().context("campaign")?;
        }
        Ok(())
    }

    fn is_single_voter(&self) -> bool {
        let cs = self.raw.raft.prs().conf().to_conf_state();
        cs.voters == [self.member_id] && cs.learners.is_empty()
    }

    fn no_leader_error(&self) -> EtcdError {
        if self.raw.raft.leader_id == raft::INVALID_ID {
            EtcdError::NoLeader
        } else {
            EtcdError::NotLeader
        }
    }

    fn publish_status(&self) {
        let r = &self.raw.raft;
        self.status.term.store(r.term, Ordering::Release);
        self.status.leader.store(r.leader_id, Ordering::Release);
        self.status
            .commit_index
            .store(r.raft_log.committed, Ordering::Release);
    }

    fn on_ready(&mut self, read_batches: &mut HashMap<Vec<u8>, ReadBatch>) -> Result<()> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut rd = self.raw.ready();

        if let Some(ss) = rd.ss() {
            if ss.raft_state != StateRole::Leader {
                // Promotions for a term this member can no longer lead are
                // stale. A candidate may still win its own term; anyone else
                // cannot lead the current one (a new term needs a campaign).
                let term = self.raw.raft.term;
                let settled = if ss.raft_state == StateRole::Candidate {
                    term.saturating_sub(1)
                } else {
                    term
                };
                self.lessor.demote(settled);
            }
            if ss.raft_state == StateRole::Leader {
                self.heartbeats_sent.clear();
                tracing::info!(
                    logger = "raft",
                    "{:x} became leader at term {}",
                    self.member_id,
                    self.raw.raft.term
                );
            }
            if ss.leader_id != self.status.leader() {
                if ss.leader_id != raft::INVALID_ID {
                    self.metrics.leader_changes.inc();
                }
                // Read requests in flight were asked of the old leader (etcd's
                // "leader changed"); their clients may retry at once.
                for (_, batch) in read_batches.drain() {
                    for w in batch.waiters {
                        let _ = w.send(Err(EtcdError::LeaderChanged));
                    }
                }
                tracing::info!(
                    logger = "raft",
                    "raft.node: {:x} elected leader {:x} at term {}",
                    self.member_id,
                    ss.leader_id,
                    self.raw.raft.term
                );
            }
        }

        // A leader may send before persisting (raft-rs's order); followers send
        // only after, with the persisted messages below.
        if !rd.messages().is_empty() {
            self.send(rd.take_messages());
        }

        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot().clone())?;
        }

        // Leader and term first: the applier reads them when it applies a new
        // leader's first entry (the lessor's promotion).
        self.publish_status();
        let committed = rd.take_committed_entries();
        self.hand_to_applier(committed)?;

        // Persist before anything that depends on it (raft-rs's order). A commit
        // index that moved since the last write rides along with this one.
        let hard_state = match rd.hs() {
            Some(hs) => Some(hs.clone()),
            None => {
                let stored = self.raw.store().rl().hard_state().clone();
                (stored.commit != self.saved_commit).then_some(stored)
            }
        };
        if !rd.entries().is_empty() || hard_state.is_some() {
            self.wal
                .save(hard_state.as_ref(), rd.entries())
                .context("cannot write to the WAL")?;
            if let Some(took) = self.wal.last_sync_duration() {
                self.metrics.wal_fsync.observe(took.as_secs_f64());
            }
            self.metrics
                .wal_write_bytes
                .set(self.wal.bytes_written() as i64);
            if let Some(hs) = &hard_state {
                self.saved_commit = hs.commit;
            }
            let mut core = self.raw.mut_store().wl();
            if !rd.entries().is_empty() {
                core.append(rd.entries())
                    .context("append to raft storage")?;
            }
            if let Some(hs) = rd.hs() {
                core.set_hardstate(hs.clone());
            }
        }

        if !rd.persisted_messages().is_empty() {
            self.send(rd.take_persisted_messages());
        }

        for rs in rd.take_read_states() {
            if let Some(batch) = read_batches.remove(&rs.request_ctx) {
                for w in batch.waiters {
                    let _ = w.send(Ok(rs.index));
                }
            }
        }

        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.raw
                .mut_store()
                .wl()
                .mut_hard_state()
                .set_commit(commit);
        }
        if !light.messages().is_empty() {
            self.send(light.take_messages());
        }
        self.hand_to_applier(light.take_committed_entries())?;
        self.raw.advance_apply();
        self.publish_status();
        Ok(())
    }

    /// Hands messages to the transport. As leader, a heartbeat to a member
    /// more than two heartbeat intervals after the previous one means this
    /// loop was held up (likely by a slow disk): etcd counts and warns.
    fn send(&mut self, msgs: Vec<Message>) {
        let now = self.clock.now();
        for m in msgs
            .iter()
            .filter(|m| m.get_msg_type() == MessageType::MsgHeartbeat)
        {
            if let Some(previous) = self.heartbeats_sent.insert(m.to, now) {
                let gap = now.saturating_duration_since(previous);
                if gap > 2 * self.tick_interval {
                    self.metrics.heartbeat_send_failures.inc();
                    tracing::warn!(
                        to = %format!("{:x}", m.to),
                        heartbeat_interval = ?self.tick_interval,
                        expected_duration = ?(2 * self.tick_interval),
                        exceeded_duration = ?(gap - 2 * self.tick_interval),
                        "leader failed to send out heartbeat on time; took too long, leader is overloaded likely from slow disk"
                    );
                }
            }
        }
        self.transport.send(msgs);
    }

    fn hand_to_applier(&mut self, entries: Vec<Entry>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        if let Some(cc) = entries
            .iter()
            .rev()
            .find(|e| e.get_entry_type() != EntryType::EntryNormal)
        {
            self.conf_pending_through = self.conf_pending_through.max(cc.index);
        }
        self.apply_tx
            .send(ApplyBatch::Entries(entries))
            .context("the applier has stopped")
    }

    /// Installs a snapshot the leader sent because this member fell behind its log.
    /// Order: backend image to disk, WAL marker, snapshot file, raft storage, then
    /// the applier restores the backend; a crash in between is recovered at start
    /// from the image file.
    fn install_snapshot(&mut self, snap: Snapshot) -> Result<()> {
        let (index, term) = (snap.get_metadata().index, snap.get_metadata().term);
        let data = RaftSnapshotData::decode(&snap.data[..])
            .context("the leader's snapshot data is unreadable")?;
        if data.version != RAFT_SNAPSHOT_DATA_VERSION {
            crate::status::bail!(
                "the leader's snapshot data has format version {}, this build reads {}",
                data.version,
                RAFT_SNAPSHOT_DATA_VERSION
            );
        }
        tracing::info!(
            snapshot_index = index,
            snapshot_term = term,
            bytes = data.backend_image.len(),
            "installing a snapshot from the leader"
        );
        let image_path = self
            .snap_dir
            .join(format!("{term:016x}-{index:016x}.snap.db"));
        write_durably(&image_path, &data.backend_image)?;
        self.wal
            .save_snapshot(WalSnapshot { index, term })
            .context("record the received snapshot in the WAL")?;
        let mut saved = snap;
        saved.data = data.cluster.clone().into();
        self.snapshotter
            .save(&saved)
            .context("save the received snapshot")?;
        self.raw
            .mut_store()
            .wl()
            .apply_snapshot(saved)
            .context("install the snapshot in raft storage")?;
        if let Ok(cluster) = ClusterSnapshot::decode(&data.cluster[..]) {
            for m in cluster.members.iter().filter(|m| m.id != self.member_id) {
                self.transport.membership_changed(PeerChange::Added {
                    id: m.id,
                    peer_urls: m.peer_ur_ls.clone(),
                });
            }
        }
        self.apply_tx
            .send(ApplyBatch::Snapshot {
                index,
                cluster: data.cluster,
                image_path,
            })
            .context("the applier has stopped")
    }

    /// Takes a raft snapshot at `index` (the backend is durable through it),
    /// then trims raft's in-memory log and releases the WAL behind it.
    ///
    /// The applier asks after applying `index`; a snapshot from the leader may
    /// have been installed past it meanwhile (the applier had not reached that
    /// batch yet). Then the log before `index` is gone, the installed snapshot
    /// already covers it, and there is nothing to take.
    fn snapshot(&mut self, index: u64, data: Vec<u8>) -> Result<()> {
        let store = self.raw.store();
        let term = match store.term(index) {
            Ok(term) => term,
            Err(raft::Error::Store(StorageError::Compacted)) => {
                tracing::debug!(
                    snapshot_index = index,
                    "a newer snapshot from the leader covers this index; not taking one"
                );
                return Ok(());
            }
            Err(e) => return Err(e).context("term of the snapshot index"),
        };
        let conf_state = store.initial_state().context("raft state")?.conf_state;
        let mut snap = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(conf_state);
        // The WAL records the snapshot before its file exists, so every .snap file
        // on disk is one the WAL knows: a crash between the two steps leaves only a
        // marker, and the restart uses the previous snapshot.
        self.wal
            .save_snapshot(WalSnapshot { index, term })
            .context("record snapshot in WAL")?;
        self.snapshotter.save(&snap).context("save snapshot")?;
        let compact_to = index.saturating_sub(SNAPSHOT_CATCH_UP_ENTRIES);
        if compact_to > self.raw.store().first_index().unwrap_or(0) {
            self.raw
                .mut_store()
                .wl()
                .compact(compact_to)
                .context("compact raft log")?;
        }
        self.wal.release_to(index).context("release WAL")?;
        self.snapshotter
            .purge(SNAPSHOTS_KEPT)
            .context("purge old snapshots")?;
        tracing::info!(
            snapshot_index = index,
            snapshot_term = term,
            "saved snapshot"
        );
        Ok(())
    }
}

/// Writes `bytes` to `path` so that it survives a crash: a temporary file,
/// fsync, rename, fsync of the directory.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("write {}", tmp.display()))?;
    f.sync_all()
        .with_context(|| format!("fsync {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("fsync {}", dir.display()))?;
    }
    Ok(())
}
