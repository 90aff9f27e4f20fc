//! The applier: one OS thread that applies committed raft entries to the
//! mvcc store, in log order, and wakes the proposers.
//!
//! - A batch of entries is applied in one backend transaction; the consistent
//!   index (the last entry's index) is stored in the same transaction, so
//!   after a crash entries at or below it are skipped and replay is idempotent.
//! - Backend commits are not fsynced (the WAL already holds the entries), except
//!   every `BACKEND_DURABLE_INTERVAL`, when idle, before a raft snapshot, and at
//!   shutdown.
//! - Proposers are woken only after the commit, so a client that saw its write
//!   acknowledged reads it back from any later local read.
//! - `apply` is deterministic: the same entries give the same state on every
//!   member. A backend failure stops the node instead of diverging.

use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::status::{Context, Result};
use api::etcdserverpb::{
    request_op, AlarmResponse, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    InternalRaftRequest, LeaseGrantResponse, LeaseRevokeResponse, PutResponse, RequestOp,
    ResponseHeader, TxnRequest, TxnResponse,
};
use api::mvccpb::event::EventType;
use api::mvccpb::Event;
use api::EtcdError;
use prost::Message;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::node::apply_auth;
use crate::node::raft_node::RaftStatus;
use crate::node::raft_node::{ApplyBatch, RaftMsg};
use crate::node::seams::{Clock, PeerChange, Transport};
use crate::node::wait::Wait;
use crate::state::alarm::{AlarmRow, AlarmStore};
use crate::state::auth::Auth;
use crate::state::leases::{encode_record, lease_error, LessorLookup};
use crate::status::request_error;
use datadir::membership::{Cluster, MembershipRequest};

/// The result of applying one request.
#[derive(Debug)]
pub enum ApplyResult {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    Alarm(AlarmResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    AuthEnable(api::etcdserverpb::AuthEnableResponse),
    AuthDisable(api::etcdserverpb::AuthDisableResponse),
    AuthStatus(api::etcdserverpb::AuthStatusResponse),
    Authenticate(api::etcdserverpb::AuthenticateResponse),
    UserAdd(api::etcdserverpb::AuthUserAddResponse),
    UserGet(api::etcdserverpb::AuthUserGetResponse),
    UserList(api::etcdserverpb::AuthUserListResponse),
    UserDelete(api::etcdserverpb::AuthUserDeleteResponse),
    UserChangePassword(api::etcdserverpb::AuthUserChangePasswordResponse),
    UserGrantRole(api::etcdserverpb::AuthUserGrantRoleResponse),
    UserRevokeRole(api::etcdserverpb::AuthUserRevokeRoleResponse),
    RoleAdd(api::etcdserverpb::AuthRoleAddResponse),
    RoleGet(api::etcdserverpb::AuthRoleGetResponse),
    RoleList(api::etcdserverpb::AuthRoleListResponse),
    RoleDelete(api::etcdserverpb::AuthRoleDeleteResponse),
    RoleGrantPermission(api::etcdserverpb::AuthRoleGrantPermissionResponse),
    RoleRevokePermission(api::etcdserverpb::AuthRoleRevokePermissionResponse),
    /// Cluster metadata requests carry no client-visible response.
    Done,
}

pub type ApplyOutcome = Result<ApplyResult, EtcdError>;

/// When the backend was last made durable, and whether it has changed since.
struct Durability {
    last_durable: Instant,
    dirty: bool,
}

/// Restores the backend from a snapshot image file (durably), then removes the file.
pub fn restore_backend(store: &mvcc::Store, image_path: &Path) -> Result<()> {
    let file = std::fs::File::open(image_path)
        .with_context(|| format!("open {}", image_path.display()))?;
    let info = store
        .restore_image(&mut std::io::BufReader::new(file))
        .with_context(|| format!("restore the backend from {}", image_path.display()))?;
    tracing::info!(
        consistent_index = info.consistent_index,
        revision = info.revision,
        keys = info.keys,
        "restored the backend from a snapshot"
    );
    if let Err(e) = std::fs::remove_file(image_path) {
        tracing::warn!(file = %image_path.display(), error = %e, "cannot remove a restored snapshot image");
    }
    Ok(())
}

/// How long a removed member keeps serving so its last answers go out.
const REMOVED_MEMBER_STOP_GRACE: Duration = Duration::from_millis(500);

/// How often a non-durable backend commit is followed by an fsynced one (etcd's batch interval).
const BACKEND_DURABLE_INTERVAL: Duration = Duration::from_millis(100);

/// An apply slower than this is counted in `etcd_server_slow_apply_total` and
/// logged (etcd's default `--warning-apply-duration`).
const SLOW_APPLY: Duration = Duration::from_millis(100);

pub struct Applier {
    pub store: Arc<mvcc::Store>,
    pub wait: Arc<Wait>,
    pub cluster: Arc<Cluster>,
    pub alarms: Arc<AlarmStore>,
    pub transport: Arc<dyn Transport>,
    /// Where the applier reads the time (lease grants and promotions,
    /// durability intervals, slow-apply measurements).
    pub clock: Arc<dyn Clock>,
    pub applied_tx: watch::Sender<u64>,
    pub raft_tx: Sender<RaftMsg>,
    pub snapshot_count: u64,
    pub last_snapshot_index: u64,
    pub lessor: Arc<lease::Lessor>,
    pub watch_hub: Arc<mvcc::WatchHub>,
    pub raft_status: Arc<RaftStatus>,
    /// How much longer than their TTL leases live after a leader change.
    pub lease_extend: Duration,
    pub metrics: Arc<Metrics>,
    /// Users, roles and tokens: checked before each request, changed by auth requests.
    pub auth: Arc<Auth>,
}

impl Applier {
    pub fn run(mut self, rx: Receiver<ApplyBatch>) -> Result<()> {
        let mut durability = Durability {
            last_durable: self.clock.now(),
            dirty: false,
        };
        loop {
            let first = match rx.recv_timeout(BACKEND_DURABLE_INTERVAL) {
                Ok(b) => b,
                Err(RecvTimeoutError::Timeout) => {
                    if durability.dirty {
                        self.commit_durable()?;
                        durability = Durability {
                            last_durable: self.clock.now(),
                            dirty: false,
                        };
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            // Take whatever else is already committed, to amortize the backend
            // commit; a snapshot from the leader is installed in its place in order.
            let mut entries = Vec::new();
            for item in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                match item {
                    ApplyBatch::Entries(e) => entries.extend(e),
                    ApplyBatch::Snapshot {
                        index,
                        cluster,
                        image_path,
                    } => {
                        self.apply_and_track(std::mem::take(&mut entries), &mut durability)?;
                        self.install_snapshot(index, &cluster, &image_path)?;
                    }
                }
            }
            self.apply_and_track(entries, &mut durability)?;
        }
        if durability.dirty {
            self.commit_durable()?;
        }
        Ok(())
    }

    /// Applies `entries`, keeps the backend's durability cadence, and asks
    /// for a raft snapshot when one is due.
    fn apply_and_track(&mut self, entries: Vec<Entry>, d: &mut Durability) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let durable_due =
            self.clock.now().saturating_duration_since(d.last_durable) >= BACKEND_DURABLE_INTERVAL;
        let snapshot_at = self.apply_entries(entries, durable_due)?;
        if durable_due || snapshot_at.is_some() {
            d.last_durable = self.clock.now();
            d.dirty = false;
        } else {
            d.dirty = true;
        }
        if let Some(index) = snapshot_at {
            self.last_snapshot_index = index;
            let _ = self.raft_tx.send(RaftMsg::Snapshot {
                index,
                data: self.cluster.snapshot(),
            });
        }
        Ok(())
    }

    /// Replaces the backend and the cluster view with a leader's snapshot.
    fn install_snapshot(&mut self, index: u64, cluster: &[u8], image_path: &Path) -> Result<()> {
        self.metrics.snapshot_apply_in_progress.set(1);
        let restored = self.restore_snapshot(index, cluster, image_path);
        self.metrics.snapshot_apply_in_progress.set(0);
        restored
    }

    fn restore_snapshot(&mut self, index: u64, cluster: &[u8], image_path: &Path) -> Result<()> {
        restore_backend(&self.store, image_path)?;
        crate::state::leases::recover(&self.store, &self.lessor)?;
        recover_alarms(&self.store, &self.alarms)?;
        self.auth.reload(&self.store)?;
        self.watch_hub.restored(self.store.current_revision());
        self.cluster
            .restore(cluster)
            .map_err(crate::status::Error::fatal)
            .context("restore the cluster view from the leader's snapshot")?;
        self.last_snapshot_index = index;
        let (consistent_index, _) = self.store.consistent_index();
        self.applied_tx.send_if_modified(|applied| {
            let grew = consistent_index > *applied;
            *applied = (*applied).max(consistent_index);
            grew
        });
        Ok(())
    }

    fn commit_durable(&self) -> Result<()> {
        let wb = self.store.write_batch().context("open backend batch")?;
        let started = self.clock.now();
        wb.commit(true).context("durable backend commit")?;
        self.metrics.backend_commit.observe(
            self.clock
                .now()
                .saturating_duration_since(started)
                .as_secs_f64(),
        );
        Ok(())
    }

    /// Applies `entries`; returns the index to snapshot at, if one is due.
    fn apply_entries(&mut self, entries: Vec<Entry>, durable_due: bool) -> Result<Option<u64>> {
        let Some(last) = entries.last() else {
            return Ok(None);
        };
        let (last_index, last_term) = (last.index, last.term);
        let (consistent_index, _) = self.store.consistent_index();
        // Entries at or below the consistent index were re-delivered after a restart:
        // their backend effects are already there (writing the consistent index for
        // them would move it backwards), but raft's configuration and the cluster
        // view are rebuilt by applying them again.
        let lookup = LessorLookup(self.lessor.clone());
        let mut wb = if last_index > consistent_index {
            let mut wb = self.store.write_batch().context("open backend batch")?;
            wb.set_lease_lookup(&lookup);
            Some(wb)
        } else {
            None
        };
        let mut results: Vec<(u64, ApplyOutcome)> = Vec::with_capacity(entries.len());
        let mut events: Vec<Event> = Vec::new();
        let mut removed_self = false;
        for entry in &entries {
            let fresh = entry.index > consistent_index;
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    if entry.data.is_empty() {
                        // A new leader's empty entry: once the leader has applied
                        // it, every entry of earlier terms is applied too, and its
                        // lessor takes over expiry (etcd's Promote).
                        if self.raft_status.leader() == self.cluster.local_id
                            && self.raft_status.term() == entry.term
                        {
                            self.lessor
                                .promote(self.lease_extend, entry.term, self.clock.now());
                        }
                        continue;
                    }
                    let req = match InternalRaftRequest::decode(&entry.data[..]) {
                        Ok(r) => r,
                        Err(e) => {
                            // Every member decodes the same bytes the same way: skipping is deterministic.
                            tracing::error!(index = entry.index, error = %e, "cannot decode a raft entry; skipped");
                            continue;
                        }
                    };
                    let id = req.header.as_ref().map_or(req.id, |h| h.id);
                    let outcome = if let Some(outcome) = self.apply_cluster_request(&req)? {
                        outcome
                    } else if let Some(wb) = wb.as_mut().filter(|_| fresh) {
                        let started = self.clock.now();
                        let outcome = self.apply_request(wb, req, entry.index, &mut events)?;
                        let took = self.clock.now().saturating_duration_since(started);
                        if took > SLOW_APPLY {
                            self.metrics.slow_applies.inc();
                            tracing::warn!(
                                took = ?took,
                                expected_duration = ?SLOW_APPLY,
                                "apply request took too long"
                            );
                        }
                        outcome
                    } else {
                        continue;
                    };
                    if fresh {
                        results.push((id, outcome));
                    }
                }
                EntryType::EntryConfChange => {
                    let cc: ConfChange = protobuf::Message::parse_from_bytes(&entry.data)
                        .with_context(|| {
                            format!("conf change entry {} is unreadable", entry.index)
                        })?;
                    // Rejected changes (etcd's ValidateConfigurationChange) change nothing;
                    // the proposer gets the reason.
                    let outcome = self.cluster.validate_conf_change(&cc);
                    self.apply_conf_change(outcome.is_ok().then_some(&cc), entry.index)?;
                    if outcome.is_ok()
                        && cc.node_id == self.cluster.local_id
                        && cc.get_change_type() == ConfChangeType::RemoveNode
                    {
                        removed_self = true;
                    }
                    if fresh && cc.id != 0 {
                        results.push((cc.id, outcome.map(|()| ApplyResult::Done)));
                    }
                }
                EntryType::EntryConfChangeV2 => {
                    // This server proposes only v1 conf changes (as etcd does).
                    crate::status::bail!(
                        "entry {} is a v2 conf change, which this version does not apply",
                        entry.index
                    );
                }
            }
        }
        let Some(mut wb) = wb else {
            if removed_self {
                self.stop_removed();
            }
            return Ok(None);
        };
        let downgraded = datadir::storage_version::follow_cluster_version(
            &self.store,
            &mut wb,
            self.cluster.cluster_version(),
        );
        let snapshot_due = downgraded
            || last_index.saturating_sub(self.last_snapshot_index) >= self.snapshot_count;
        wb.set_consistent_index(last_index, last_term);
        // etcd's backend commits are all durable: the durable ones are its
        // `backend_commit_duration_seconds`.
        let durable = durable_due || snapshot_due;
        let started = self.clock.now();
        wb.commit(durable).context("backend commit")?;
        if durable {
            self.metrics.backend_commit.observe(
                self.clock
                    .now()
                    .saturating_duration_since(started)
                    .as_secs_f64(),
            );
        }
        self.watch_hub
            .notify(&events, self.store.current_revision());
        self.applied_tx.send_replace(last_index);
        for (id, outcome) in results {
            self.wait.trigger(id, outcome);
        }
        if removed_self {
            self.stop_removed();
        }
        Ok(snapshot_due.then_some(last_index))
    }

    /// Applies a conf change to raft (on the raft thread, which owns it) and to
    /// the cluster view. Idempotent: entries re-delivered after a restart come here too.
    /// `None` reports a change rejected at apply time, so that raft knows every
    /// committed conf change up to `index` has been dealt with.
    fn apply_conf_change(&self, cc: Option<&ConfChange>, index: u64) -> Result<()> {
        let (reply, answer) = std::sync::mpsc::channel();
        self.raft_tx
            .send(RaftMsg::ApplyConfChange {
                cc: cc.cloned(),
                index,
                reply,
            })
            .context("the raft loop has stopped")?;
        answer
            .recv()
            .context("the raft loop stopped before applying a conf change")?
            .context("raft refused a committed conf change")?;
        if let Some(cc) = cc {
            self.cluster.apply_conf_change(cc);
        }
        Ok(())
    }

    /// Applies a cluster-metadata request; None when `req` is not one.
    /// These change no backend state, so they are applied on replay too.
    /// Err stops the node: a cluster version this server is too old for.
    fn apply_cluster_request(&self, req: &InternalRaftRequest) -> Result<Option<ApplyOutcome>> {
        let Some(change) = MembershipRequest::pick(
            req.cluster_member_attr_set.as_ref(),
            req.cluster_version_set.as_ref(),
            req.downgrade_info_set.as_ref(),
            req.member_update.as_ref(),
        ) else {
            return Ok(None);
        };
        let applied = self
            .cluster
            .apply_request(change)
            .map_err(crate::status::Error::fatal)
            .context("applying a cluster version")?;
        if let Err(e) = applied {
            return Ok(Some(Err(e)));
        }
        if let MembershipRequest::MemberUpdate(r) = change {
            if r.id != self.cluster.local_id {
                self.transport.membership_changed(PeerChange::Updated {
                    id: r.id,
                    peer_urls: r.peer_ur_ls.clone(),
                });
            }
        }
        Ok(Some(Ok(ApplyResult::Done)))
    }

    /// This member was removed from the cluster: it must stop (and may never
    /// rejoin with this identity). The grace lets the answer to the request
    /// that removed it reach its client.
    fn stop_removed(&self) -> ! {
        tracing::warn!(
            local_member_id = %format!("{:x}", self.cluster.local_id),
            "the member has been permanently removed from the cluster; \
             the data-dir used by this member must be removed"
        );
        std::thread::sleep(REMOVED_MEMBER_STOP_GRACE);
        std::process::exit(0);
    }

    /// Applies one request. `Err` only for backend failures, which stop the node;
    /// request errors are part of the outcome.
    fn apply_request(
        &self,
        wb: &mut mvcc::WriteBatch<'_>,
        req: InternalRaftRequest,
        index: u64,
        events_out: &mut Vec<Event>,
    ) -> Result<ApplyOutcome> {
        {
            let lease_keys = |id: i64| self.lessor.keys(id).unwrap_or_default();
            let auth = self.auth.read();
            let who = apply_auth::proposer(&req);
            if let Err(e) = apply_auth::check(&auth, who.as_ref(), &req, &lease_keys) {
                return Ok(Err(e));
            }
        }
        if apply_auth::is_auth_request(&req) {
            let mut rows = Vec::new();
            let outcome = apply_auth::apply(
                &self.auth,
                &req,
                index,
                self.clock.now(),
                header(wb.revision()),
                &mut rows,
            );
            crate::state::auth::write_rows(wb, rows);
            return Ok(outcome);
        }
        let refusal = if req.put.is_some() || req.lease_grant.is_some() {
            self.alarms.refusal(true)
        } else if let Some(r) = &req.txn {
            self.alarms.refusal(crate::state::quota::txn_cost(r) > 0)
        } else if req.delete_range.is_some()
            || req.compaction.is_some()
            || req.lease_revoke.is_some()
        {
            self.alarms.refusal(false)
        } else {
            None
        };
        if let Some(e) = refusal {
            return Ok(Err(e));
        }
        let mut track = |events: Vec<Event>| {
            self.track_leases(&events);
            events_out.extend(events);
        };
        let ops = &self.metrics.mvcc;
        let result = if let Some(r) = req.put {
            ops.record(0, 1, 0, (r.key.len() + r.value.len()) as u64);
            wb.put(&r).map(|(resp, events)| {
                track(events);
                ApplyResult::Put(resp)
            })
        } else if let Some(r) = req.delete_range {
            ops.record(0, 0, 1, 0);
            wb.delete_range(&r).map(|(resp, events)| {
                track(events);
                ApplyResult::DeleteRange(resp)
            })
        } else if let Some(r) = req.txn {
            wb.txn(&r).map(|(resp, events)| {
                ops.record_txn(&r, &resp);
                track(events);
                ApplyResult::Txn(resp)
            })
        } else if let Some(r) = req.lease_grant {
            return Ok(self
                .lessor
                .grant(r.id, r.ttl, self.clock.now())
                .map(|record| {
                    self.metrics.lease_granted.inc();
                    self.metrics.lease_ttl.observe(record.ttl as f64);
                    wb.put_lease(record.id, encode_record(&record));
                    ApplyResult::LeaseGrant(LeaseGrantResponse {
                        header: Some(header(wb.revision())),
                        id: record.id,
                        ttl: record.ttl,
                        error: String::new(),
                    })
                })
                .map_err(lease_error));
        } else if let Some(r) = req.lease_revoke {
            return self.revoke(wb, r.id, events_out);
        } else if let Some(r) = req.lease_checkpoint {
            for c in r.checkpoints {
                if let Some(record) =
                    self.lessor
                        .checkpoint(c.id, c.remaining_ttl, self.clock.now())
                {
                    wb.put_lease(record.id, encode_record(&record));
                }
            }
            Ok(ApplyResult::Done)
        } else if let Some(r) = req.compaction {
            wb.compact(&r).map(ApplyResult::Compaction)
        } else if let Some(r) = req.alarm {
            let (alarms, row) = self.alarms.apply(&r);
            match row {
                Some(AlarmRow::Put(key)) => wb.put_alarm(key),
                Some(AlarmRow::Delete(key)) => wb.delete_alarm(key),
                None => {}
            }
            Ok(ApplyResult::Alarm(AlarmResponse {
                header: Some(api::etcdserverpb::ResponseHeader {
                    revision: wb.revision(),
                    ..Default::default()
                }),
                alarms,
            }))
        } else {
            tracing::warn!("ignoring a raft request of a kind this version does not know");
            Ok(ApplyResult::Done)
        };
        match result {
            Ok(r) => Ok(Ok(r)),
            // A backend failure is not a request error: stop rather than diverge.
            Err(e) => match request_error(e) {
                Ok(etcd) => Ok(Err(etcd)),
                Err(fatal) => Err(fatal).context("applying a committed entry"),
            },
        }
    }
}

impl Applier {
    /// Keeps the lessor's key attachments in step with the keys a write
    /// changed: a put attaches its key to its lease (moving it from another),
    /// a put without a lease or a delete detaches it.
    fn track_leases(&self, events: &[Event]) {
        for ev in events {
            let Some(kv) = &ev.kv else { continue };
            if ev.r#type == EventType::Put as i32 && kv.lease != lease::NO_LEASE {
                if self.lessor.lease_of(&kv.key) != kv.lease {
                    // The put checked that the lease exists.
                    let _ = self.lessor.attach(kv.lease, &kv.key);
                }
            } else {
                self.lessor.detach(&kv.key);
            }
        }
    }

    /// Revokes a lease: its keys are deleted in one revision (one txn), then
    /// the lease is gone, in the same backend batch.
    fn revoke(
        &self,
        wb: &mut mvcc::WriteBatch<'_>,
        id: i64,
        events_out: &mut Vec<Event>,
    ) -> Result<ApplyOutcome> {
        let keys = match self.lessor.keys(id) {
            Ok(keys) => keys,
            Err(e) => return Ok(Err(lease_error(e))),
        };
        if !keys.is_empty() {
            let deletes = TxnRequest {
                success: keys
                    .into_iter()
                    .map(|key| RequestOp {
                        request: Some(request_op::Request::RequestDeleteRange(
                            DeleteRangeRequest {
                                key,
                                ..Default::default()
                            },
                        )),
                    })
                    .collect(),
                ..Default::default()
            };
            match wb.txn(&deletes) {
                Ok((_, events)) => events_out.extend(events),
                Err(e) => {
                    return match request_error(e) {
                        Ok(etcd) => Ok(Err(etcd)),
                        Err(fatal) => Err(fatal).context("revoking a lease's keys"),
                    }
                }
            }
        }
        let _ = self.lessor.remove(id);
        wb.delete_lease(id);
        self.metrics.lease_revoked.inc();
        Ok(Ok(ApplyResult::LeaseRevoke(LeaseRevokeResponse {
            header: Some(header(wb.revision())),
        })))
    }
}

fn header(revision: i64) -> ResponseHeader {
    ResponseHeader {
        revision,
        ..Default::default()
    }
}

/// Loads the alarm list from the backend (at start, after a leader's snapshot).
pub fn recover_alarms(store: &mvcc::Store, alarms: &AlarmStore) -> Result<()> {
    let rows = store.alarms().context("read the alarms from the backend")?;
    alarms.recover(&rows)?;
    for a in alarms.active() {
        tracing::warn!(
            member_id = %format!("{:x}", a.member_id),
            alarm = api::etcdserverpb::AlarmType::try_from(a.alarm).map_or("unknown", |t| t.as_str_name()),
            "alarm active"
        );
    }
    Ok(())
}
