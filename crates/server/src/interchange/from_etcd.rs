//! Taking over a stopped etcd member's data dir: our `etcd`, started with
//! the flags the real member had, converts `<data-dir>/member` into ours
//! and then restarts from it as the same member.
//!
//! ```text
//!  etcd's member dir                          ours (built in member.converting)
//!  wal/*.wal  metadata (member, cluster ID) ─▶ wal/  metadata, snapshot marker,
//!             hard state, entries after         hard state, entries (entries::from_etcd)
//!             the newest snapshot
//!  snap/*.snap newest one the WAL knows:  ─▶ snap/<term>-<index>.snap: the same index,
//!             index, term, conf state,         term and conf state; cluster data from
//!             v2 store (members, removed,      the v2 store (or the backend's members
//!             cluster version)                 buckets when there is no snap file)
//!  snap/db    bbolt (etcd's buckets)      ─▶ snap/db: our backend (backend::import),
//!                                              consistent index kept
//!  then member → member.etcd-original (kept until the user deletes it),
//!       member.converting → member          (staging.rs: crash-safe)
//! ```
//!
//! After the swap the member restarts as from its own data: raft replays
//! the entries after the snapshot, conf changes are applied again, and
//! writes at or below the backend's consistent index are skipped, exactly
//! as etcd replays its own log.
//!
//! The WAL and the snapshot are read and checked before anything is
//! written; the backend is checked as it is converted, into the staging
//! dir, which is removed if anything fails: a file we cannot read stops the
//! conversion with the dir as it was. A running etcd is recognised by the
//! lock it holds on its WAL files.
//!
//! Left out: `--wal-dir` outside the member dir (refused), and the v2 keys
//! of etcd's v2 store (etcd 3.4 and 3.5 keep them only for the v2 API,
//! which we do not serve; their count is logged).

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use api::etcdserverpb::{Member, WalMetadata};
use etcdfmt::raftpb;
use etcdfmt::snap::v2store::V2Membership;
use prost::Message;
use raft::eraftpb::{ConfState, Snapshot};

use super::entries::{self, Translated};
use super::staging::Stage;

/// Where the etcd member dir is kept after a conversion.
pub const KEPT_DIR: &str = "member.etcd-original";

/// Converts the etcd member dir under `data_dir` into ours, keeping the
/// original as `member.etcd-original`.
pub fn convert(data_dir: &Path, wal_dir: &Path) -> Result<()> {
    let started = Instant::now();
    let member = data_dir.join("member");
    if wal_dir != member.join("wal") {
        bail!(
            "converting an etcd data dir whose WAL is elsewhere (--wal-dir {}) is not \
             supported: move the WAL into {} first",
            wal_dir.display(),
            member.join("wal").display()
        );
    }
    let source = read(&member)?;
    let stage = Stage::begin(data_dir, KEPT_DIR)?;
    let backend = match write(&source, &stage.dir()) {
        Ok(backend) => backend,
        Err(e) => {
            // The original is untouched; the half-built dir goes.
            let _ = std::fs::remove_dir_all(stage.dir());
            return Err(e);
        }
    };
    let kept = stage.kept_dir();
    stage.commit()?;
    tracing::info!(
        data_dir = %data_dir.display(),
        member_id = %format!("{:x}", source.metadata.node_id),
        cluster_id = %format!("{:x}", source.metadata.cluster_id),
        snapshot_index = source.snapshot_index,
        entries = source.entries.len(),
        consistent_index = backend.consistent_index,
        revision = backend.revision,
        dropped_v2_requests = source.translated.v2_dropped,
        original = %kept.display(),
        took = ?started.elapsed(),
        "converted an etcd data dir; the original files are kept until you delete them"
    );
    Ok(())
}

/// Everything read from the etcd member dir, checked, before a byte is written.
struct Source {
    metadata: raftpb::Metadata,
    snapshot_index: u64,
    snapshot_term: u64,
    conf_state: ConfState,
    /// The membership of the newest snapshot's v2 store (None: etcd has
    /// taken no snapshot yet).
    membership: Option<V2Membership>,
    hard_state: raft::eraftpb::HardState,
    entries: Vec<raft::eraftpb::Entry>,
    translated: Translated,
    db: etcdfmt::bbolt::Db,
}

fn read(member: &Path) -> Result<Source> {
    let wal_dir = member.join("wal");
    let snap_dir = member.join("snap");
    refuse_if_running(&wal_dir)?;
    let valid = etcdfmt::wal::valid_snapshots(&wal_dir).context("read etcd's WAL")?;
    let newest = newest_snapshot(&snap_dir, &valid)?;
    let from = match &newest {
        Some(s) => etcdfmt::wal::WalSnapshot {
            index: s.metadata.index,
            term: s.metadata.term,
            conf_state: Some(s.metadata.conf_state.clone()),
        },
        None => etcdfmt::wal::WalSnapshot::default(),
    };
    let mut wal = etcdfmt::wal::read_dir(&wal_dir, from.clone()).context("read etcd's WAL")?;
    let mut translated = Translated::default();
    // Consumed as translated: one copy of the log's data at a time.
    let entries = std::mem::take(&mut wal.entries)
        .into_iter()
        .map(|e| entries::from_etcd(&e, &mut translated))
        .collect::<Result<Vec<_>>>()
        .context("translate etcd's log")?;
    let db_path = snap_dir.join("db");
    let db = etcdfmt::bbolt::Db::open(&db_path)
        .with_context(|| format!("read etcd's backend {}", db_path.display()))?;
    let membership = newest.as_ref().map(v2_membership).transpose()?;
    let conf_state = newest
        .as_ref()
        .map(|s| conf_state(&s.metadata.conf_state))
        .unwrap_or_default();
    let hard_state = raft::eraftpb::HardState {
        term: wal.hard_state.term,
        vote: wal.hard_state.vote,
        commit: wal.hard_state.commit,
        ..Default::default()
    };
    Ok(Source {
        metadata: wal.metadata,
        snapshot_index: from.index,
        snapshot_term: from.term,
        conf_state,
        membership,
        hard_state,
        entries,
        translated,
        db,
    })
}

/// etcd locks its WAL files while it runs: with an exclusive fcntl
/// (open file description) lock on Linux, or flock where those are
/// missing. A shared lock of either kind fails then; both are released
/// when the file is closed, and reading for them changes nothing.
fn refuse_if_running(wal_dir: &Path) -> Result<()> {
    use rustix::fs::{fcntl_lock, FlockOperation};
    for segment in etcdfmt::wal::list_segments(wal_dir).context("read etcd's WAL")? {
        let path = &segment.path;
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let locked = match fcntl_lock(&file, FlockOperation::NonBlockingLockShared) {
            Ok(()) => false,
            Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::ACCESS => true,
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("cannot lock {}", path.display()))
            }
        };
        let locked = locked
            || match file.try_lock_shared() {
                Ok(()) => false,
                Err(std::fs::TryLockError::WouldBlock) => true,
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()))
                }
            };
        if locked {
            bail!(
                "{} is locked: etcd is still running on this data dir; stop it first",
                path.display()
            );
        }
    }
    Ok(())
}

fn newest_snapshot(
    snap_dir: &Path,
    valid: &[etcdfmt::wal::WalSnapshot],
) -> Result<Option<raftpb::Snapshot>> {
    let known: Vec<_> = valid.iter().filter(|s| s.index > 0).cloned().collect();
    if known.is_empty() {
        return Ok(None);
    }
    match etcdfmt::snap::load_newest_available(snap_dir, &known) {
        Ok((_, snapshot)) => Ok(Some(snapshot)),
        Err(e) => Err(e).context("read etcd's snapshot files"),
    }
}

fn conf_state(cs: &raftpb::ConfState) -> ConfState {
    ConfState {
        voters: cs.voters.clone(),
        learners: cs.learners.clone(),
        voters_outgoing: cs.voters_outgoing.clone(),
        learners_next: cs.learners_next.clone(),
        auto_leave: cs.auto_leave,
        ..Default::default()
    }
}

/// The membership at the snapshot: etcd 3.4 and 3.5 keep it in the v2
/// store the snapshot carries.
fn v2_membership(snapshot: &raftpb::Snapshot) -> Result<V2Membership> {
    let data = snapshot.data.as_deref().unwrap_or_default();
    etcdfmt::snap::v2store::parse_v2_store(data).map_err(|e| {
        anyhow::anyhow!(
            "etcd snapshot {}: its v2 store is unreadable: {e:?}",
            snapshot.metadata.index
        )
    })
}

/// Our cluster data at the snapshot; the backend's `cluster` bucket gives
/// the version when the v2 store has none.
fn cluster_data(v2: &V2Membership, backend: &super::backend::EtcdCluster) -> Vec<u8> {
    let members = v2
        .members
        .iter()
        .map(|m| Member {
            id: m.id,
            name: m.name.clone(),
            peer_ur_ls: m.peer_urls.clone(),
            client_ur_ls: m.client_urls.clone(),
            is_learner: m.is_learner,
        })
        .collect();
    let version = v2
        .cluster_version
        .clone()
        .or_else(|| backend.cluster_version.clone());
    crate::cluster::Cluster::snapshot_data(members, v2.removed.clone(), version)
}

/// Writes our member dir into `dir`; returns what the backend holds.
fn write(source: &Source, dir: &Path) -> Result<mvcc::ImageInfo> {
    let snap_dir = dir.join("snap");
    std::fs::create_dir_all(&snap_dir)
        .with_context(|| format!("cannot create {}", snap_dir.display()))?;
    let store = mvcc::Store::open(&snap_dir.join("db"), mvcc::StoreOptions::default())
        .context("create the backend")?;
    let imported = crate::snapshot_file::restore_bbolt(&source.db, &store)
        .context("convert etcd's backend")?;
    drop(store);

    if let Some(membership) = &source.membership {
        let data = cluster_data(membership, &imported.cluster);
        let mut snapshot = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = source.snapshot_index;
        meta.term = source.snapshot_term;
        meta.set_conf_state(source.conf_state.clone());
        wal::Snapshotter::new(&snap_dir)
            .save(&snapshot)
            .context("write the raft snapshot")?;
    }

    let metadata = WalMetadata {
        node_id: source.metadata.node_id,
        cluster_id: source.metadata.cluster_id,
    }
    .encode_to_vec();
    let mut log = wal::Wal::create(&dir.join("wal"), &metadata).context("create the WAL")?;
    if source.snapshot_index > 0 {
        log.save_snapshot(wal::WalSnapshot {
            index: source.snapshot_index,
            term: source.snapshot_term,
        })
        .context("record the snapshot in the WAL")?;
    }
    // Synced here, and again with the whole dir before the swap.
    log.save(Some(&source.hard_state), &source.entries)
        .context("write the entries to the WAL")?;
    Ok(imported.info)
}
