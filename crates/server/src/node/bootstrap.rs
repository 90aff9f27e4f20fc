//! Opening the data directory: a fresh member writes its identity and the
//! initial voters; a restarting one rebuilds raft's storage from the newest
//! snapshot and the WAL behind it.
//!
//! ```text
//! <data-dir>/
//!   member/
//!     lock              held (flock) while a server uses the directory
//!     snap/
//!       db              the mvcc backend (redb)
//!       <term>-<index>.snap  raft snapshot metadata (conf state, index, term)
//!     wal/              the raft log (or --wal-dir)
//! ```
//!
//! Invariants:
//! - the WAL is created last, so a directory with a WAL is fully initialized;
//! - a new cluster's log starts, as etcd's does, with one committed
//!   `ConfChange(AddNode)` per founding member at term 1, its context the
//!   member: raft learns its voters by applying them, and a member that joins
//!   later learns them the same way;
//! - the backend's consistent index is never behind the newest snapshot (a
//!   snapshot is taken only after a durable backend commit covering it).

use std::fs::{self, File};

use crate::status::{bail, Context, Error, Result};
use api::etcdserverpb::WalMetadata;
use prost::Message;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::Storage;
use wal::{Snapshotter, Wal, WalSnapshot};

use crate::config::{ClusterState, Config};
use crate::node::raft_storage::committed_entries;
use crate::transport::Discovered;
use datadir::founding::{
    create_founding_wal, founding_entries, founding_members, local_member, lock_dir, FoundingMember,
};
use datadir::ids;

/// Everything the raft node needs to start.
pub struct Bootstrapped {
    pub member_id: u64,
    pub cluster_id: u64,
    /// The cluster data of the newest snapshot (None before the first one).
    pub cluster_data: Option<Vec<u8>>,
    pub storage: MemStorage,
    pub wal: Wal,
    pub snapshotter: Snapshotter,
    /// Index of the newest snapshot: raft re-delivers committed entries after it.
    pub snapshot_index: u64,
    /// Held for the life of the process: a second server on the same directory is refused.
    pub lock: File,
}

/// Opens (or creates) the member's data directory. `joined` is what a member
/// joining an existing cluster learned from it (see `grpc::discover`).
pub fn open(cfg: &Config, joined: Option<&Discovered>) -> Result<Bootstrapped> {
    let member_dir = cfg.member_dir();
    fs::create_dir_all(&member_dir)
        .with_context(|| format!("cannot access data directory {}", member_dir.display()))?;
    let lock = lock_dir(&member_dir).map_err(Error::from_cause)?;
    let snap_dir = cfg.snap_dir();
    fs::create_dir_all(&snap_dir)
        .with_context(|| format!("cannot create {}", snap_dir.display()))?;
    let snapshotter = Snapshotter::new(&snap_dir);
    let wal_dir = cfg.wal_dir();

    let members = configured_members(cfg);
    if !Wal::exists(&wal_dir) {
        return match (cfg.initial_cluster_state, joined) {
            (ClusterState::New, _) => create(cfg, members, snapshotter, lock),
            (ClusterState::Existing, Some(joined)) => create_joined(cfg, joined, snapshotter, lock),
            (ClusterState::Existing, None) => {
                bail!("joining an existing cluster needs the cluster's answer (internal error)")
            }
        };
    }
    restart(cfg, snapshotter, lock)
}

fn configured_members(cfg: &Config) -> Vec<FoundingMember> {
    founding_members(&cfg.initial_cluster, &cfg.initial_cluster_token)
}

fn create(
    cfg: &Config,
    members: Vec<FoundingMember>,
    snapshotter: Snapshotter,
    lock: File,
) -> Result<Bootstrapped> {
    let local = local_member(&members, &cfg.name, &cfg.initial_advertise_peer_urls)
        .map_err(Error::from_cause)?;
    let member_id = local.id;
    let voters: Vec<u64> = members.iter().map(|m| m.id).collect();
    let cluster_id = ids::cluster_id(&voters);
    let (entries, hs) = founding_entries(&members).map_err(Error::from_cause)?;
    let wal = create_founding_wal(&cfg.wal_dir(), member_id, cluster_id, &entries, &hs)
        .map_err(Error::from_cause)?;

    let storage = MemStorage::new();
    {
        let mut core = storage.wl();
        core.append(&entries).context("founding entries")?;
        core.set_hardstate(hs);
    }
    Ok(Bootstrapped {
        member_id,
        cluster_id,
        cluster_data: None,
        storage,
        wal,
        snapshotter,
        snapshot_index: 0,
        lock,
    })
}

/// The newest snapshot the WAL records, and the WAL opened after it.
///
/// A snapshot file the WAL does not record (left by a crash between writing
/// the file and the WAL's marker, in an older layout or by etcd's order) is
/// set aside as `*.snap.orphan` and the next older one is tried, as etcd
/// ignores snapshots without a WAL record.
fn open_wal_at_newest_snapshot(
    cfg: &Config,
    snapshotter: &Snapshotter,
) -> Result<(Option<Snapshot>, WalSnapshot, Wal, wal::ReadState)> {
    const ORPHANS_MAX: usize = 16;
    for _ in 0..=ORPHANS_MAX {
        let snap: Option<Snapshot> = snapshotter
            .load_newest()
            .context("cannot load the newest snapshot")?;
        let walsnap = snap
            .as_ref()
            .map_or(WalSnapshot::default(), |s| WalSnapshot {
                index: s.get_metadata().index,
                term: s.get_metadata().term,
            });
        match Wal::open(&cfg.wal_dir(), walsnap) {
            Ok((wal, state)) => return Ok((snap, walsnap, wal, state)),
            Err(wal::Error::SnapshotNotFound { .. }) if walsnap.index > 0 => {
                let name = format!("{:016x}-{:016x}.snap", walsnap.term, walsnap.index);
                let path = cfg.snap_dir().join(&name);
                let orphan = cfg.snap_dir().join(format!("{name}.orphan"));
                tracing::warn!(
                    snapshot = %path.display(),
                    "the WAL does not record this snapshot; ignoring it"
                );
                fs::rename(&path, &orphan)
                    .with_context(|| format!("cannot set aside {}", path.display()))?;
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot open WAL in {}", cfg.wal_dir().display()))
            }
        }
    }
    bail!(
        "more than {ORPHANS_MAX} snapshot files in {} are unknown to the WAL",
        cfg.snap_dir().display()
    )
}

/// A member joining an existing cluster starts with an empty log: the leader
/// replicates it (founding conf changes included), so raft and the cluster
/// view learn the members by applying it.
fn create_joined(
    cfg: &Config,
    joined: &Discovered,
    snapshotter: Snapshotter,
    lock: File,
) -> Result<Bootstrapped> {
    let meta = WalMetadata {
        node_id: joined.member_id,
        cluster_id: joined.cluster_id,
    }
    .encode_to_vec();
    let wal = Wal::create(&cfg.wal_dir(), &meta)
        .with_context(|| format!("cannot create WAL in {}", cfg.wal_dir().display()))?;
    tracing::info!(
        local_member_id = %format!("{:x}", joined.member_id),
        cluster_id = %format!("{:x}", joined.cluster_id),
        "joining an existing cluster"
    );
    Ok(Bootstrapped {
        member_id: joined.member_id,
        cluster_id: joined.cluster_id,
        cluster_data: None,
        storage: MemStorage::new(),
        wal,
        snapshotter,
        snapshot_index: 0,
        lock,
    })
}

fn restart(cfg: &Config, snapshotter: Snapshotter, lock: File) -> Result<Bootstrapped> {
    let (snap, walsnap, wal, state) = open_wal_at_newest_snapshot(cfg, &snapshotter)?;
    if state.repaired_tail_bytes > 0 {
        tracing::warn!(
            bytes = state.repaired_tail_bytes,
            "repaired a torn write at the end of the WAL"
        );
    }
    let wal_meta = WalMetadata::decode(state.metadata.as_slice())
        .context("the WAL metadata record is unreadable")?;

    let storage = MemStorage::new();
    let cluster_data = snap.as_ref().map(|s| s.data.to_vec());
    if let Some(snap) = snap {
        storage
            .wl()
            .apply_snapshot(snap)
            .context("cannot restore the raft snapshot")?;
    }
    {
        let mut core = storage.wl();
        core.append(&state.entries)
            .context("the WAL entries do not follow the snapshot")?;
        // The commit index is persisted lazily (with the next write after it
        // moved), so it may trail; it is never below the snapshot, and raft
        // re-commits what lies between.
        let mut hs: HardState = state.hard_state.clone();
        let last = state.entries.last().map_or(walsnap.index, |e| e.index);
        hs.commit = hs.commit.clamp(walsnap.index, last.max(walsnap.index));
        if hs != HardState::default() {
            core.set_hardstate(hs);
        }
    }
    tracing::info!(
        local_member_id = %format!("{:x}", wal_meta.node_id),
        cluster_id = %format!("{:x}", wal_meta.cluster_id),
        snapshot_index = walsnap.index,
        entries = state.entries.len(),
        "restarting local member"
    );
    let mut wal = wal;
    if cfg.force_new_cluster {
        force_standalone(&storage, &mut wal, wal_meta.node_id)?;
    }
    Ok(Bootstrapped {
        member_id: wal_meta.node_id,
        cluster_id: wal_meta.cluster_id,
        cluster_data,
        storage,
        wal,
        snapshotter,
        snapshot_index: walsnap.index,
        lock,
    })
}

/// `--force-new-cluster` (etcd's restart as a standalone node): uncommitted
/// entries are dropped, and committed `RemoveNode` entries for every other
/// member are appended, so this member restarts as a cluster of one with its
/// data. Raft and the cluster view apply the removals like any conf change.
fn force_standalone(storage: &MemStorage, wal: &mut Wal, local_id: u64) -> Result<()> {
    let state = storage.initial_state().context("raft state")?;
    let mut members: std::collections::BTreeSet<u64> = state
        .conf_state
        .voters
        .iter()
        .chain(&state.conf_state.learners)
        .copied()
        .collect();
    let commit = state.hard_state.commit;
    let committed = committed_entries(storage, commit).context("read the committed log")?;
    for e in committed
        .iter()
        .filter(|e| e.get_entry_type() == EntryType::EntryConfChange)
    {
        let cc: ConfChange = protobuf::Message::parse_from_bytes(&e.data)
            .with_context(|| format!("conf change entry {} is unreadable", e.index))?;
        match cc.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                members.insert(cc.node_id);
            }
            ConfChangeType::RemoveNode => {
                members.remove(&cc.node_id);
            }
        }
    }
    let term = state.hard_state.term;
    let mut entries = Vec::new();
    for (i, id) in members.iter().filter(|id| **id != local_id).enumerate() {
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::RemoveNode);
        cc.node_id = *id;
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryConfChange);
        e.term = term;
        e.index = commit + 1 + i as u64;
        e.data = protobuf::Message::write_to_bytes(&cc)
            .context("encode a removal")?
            .into();
        entries.push(e);
    }
    let hs = HardState {
        commit: commit + entries.len() as u64,
        ..state.hard_state
    };
    tracing::warn!(
        local_member_id = %format!("{local_id:x}"),
        removed_members = entries.len(),
        commit_index = hs.commit,
        "forcing a new cluster: every other member is removed and uncommitted entries are discarded"
    );
    wal.save(Some(&hs), &entries)
        .context("write the forced removals to the WAL")?;
    let mut core = storage.wl();
    if !entries.is_empty() {
        core.append(&entries)
            .context("append the forced removals")?;
    }
    core.set_hardstate(hs);
    Ok(())
}
