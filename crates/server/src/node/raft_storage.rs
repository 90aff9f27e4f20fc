//! raft-rs's `Storage` for this server: raft-rs's `MemStorage` for the log,
//! hard state and conf state, with one difference: the snapshot raft sends to
//! a member that fell behind the log carries data that can rebuild it.
//!
//! That snapshot is the newest one saved (index S, its conf state and the
//! cluster metadata at S) with an image of the current backend (consistent
//! index C ≥ S) attached, as etcd sends its current bbolt file with its
//! newest raft snapshot. The receiver replays entries after S idempotently.

use std::sync::Arc;

use api::etcdserverpb::RaftSnapshotData;
use prost::Message;
use raft::eraftpb::{Entry, Snapshot};
use raft::storage::{MemStorage, MemStorageCore};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use wal::Snapshotter;

use super::seams::Clock;
use crate::status::Context;

/// The committed entries raft still holds (from its first index through `commit`).
pub fn committed_entries(storage: &impl Storage, commit: u64) -> raft::Result<Vec<Entry>> {
    let first = storage.first_index()?;
    if commit < first {
        return Ok(Vec::new());
    }
    storage.entries(
        first,
        commit + 1,
        None,
        raft::GetEntriesContext::empty(false),
    )
}

/// Format version of [`RaftSnapshotData`].
pub const RAFT_SNAPSHOT_DATA_VERSION: u32 = 1;

pub struct RaftStorage {
    mem: MemStorage,
    snapshotter: Arc<Snapshotter>,
    store: Arc<mvcc::Store>,
    /// Observes how long imaging the backend takes (`etcd_disk_backend_snapshot_duration_seconds`).
    snapshot_duration: prometheus::Histogram,
    /// The raft loop's clock (raft asks for snapshots from the loop).
    clock: Arc<dyn Clock>,
}

impl RaftStorage {
    pub fn new(
        mem: MemStorage,
        snapshotter: Arc<Snapshotter>,
        store: Arc<mvcc::Store>,
        snapshot_duration: prometheus::Histogram,
        clock: Arc<dyn Clock>,
    ) -> Self {
        RaftStorage {
            mem,
            snapshotter,
            store,
            snapshot_duration,
            clock,
        }
    }

    pub fn wl(&self) -> std::sync::RwLockWriteGuard<'_, MemStorageCore> {
        self.mem.wl()
    }

    pub fn rl(&self) -> std::sync::RwLockReadGuard<'_, MemStorageCore> {
        self.mem.rl()
    }

    /// The newest saved snapshot with the backend image attached.
    fn snapshot_to_send(&self, request_index: u64) -> crate::status::Result<Snapshot> {
        let mut snap = self
            .snapshotter
            .load_newest()
            .context("cannot load the newest snapshot")?
            .context("no snapshot has been taken yet")?;
        if snap.get_metadata().index < request_index {
            crate::status::bail!(
                "the newest snapshot ({}) is older than requested ({request_index})",
                snap.get_metadata().index
            );
        }
        let mut image = Vec::new();
        let started = self.clock.now();
        let info = self
            .store
            .write_image(&mut image)
            .context("cannot image the backend")?;
        self.snapshot_duration
            .observe(self.clock.now().duration_since(started).as_secs_f64());
        tracing::info!(
            snapshot_index = snap.get_metadata().index,
            backend_consistent_index = info.consistent_index,
            bytes = image.len(),
            "sending a snapshot to a member that fell behind"
        );
        snap.data = RaftSnapshotData {
            version: RAFT_SNAPSHOT_DATA_VERSION,
            cluster: snap.data.to_vec(),
            backend_image: image,
        }
        .encode_to_vec()
        .into();
        Ok(snap)
    }
}

impl Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        self.snapshot_to_send(request_index).map_err(|why| {
            tracing::warn!(reason = %why, "snapshot for a lagging member not available yet");
            raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable)
        })
    }
}
