//! The way back: `etcdutl migrate --target-version 3.5` turns a stopped
//! member's data dir into etcd 3.5's files, so that the real etcd 3.5
//! starts on it as the same member (the mirror of `from_etcd.rs`).
//!
//! ```text
//!  ours                                         etcd's (built in member.converting)
//!  wal/  metadata (member, cluster ID),      ─▶ wal/0000000000000000-0000000000000000.wal:
//!        newest snapshot marker, hard state,     metadata, snapshot record (index, term,
//!        entries after it                        conf state), entries (entries::to_etcd),
//!                                                hard state          (etcdfmt::wal::write_dir)
//!  snap/<term>-<index>.snap: index, term,    ─▶ snap/<term>-<index>.snap: the same metadata,
//!        conf state, ClusterSnapshot             data: the v2 store JSON of the membership
//!                                                and cluster version at the snapshot
//!                                                (none when we have no snapshot yet)
//!  snap/db  our backend (ImageSource)        ─▶ snap/db: bbolt, etcd's buckets (BboltRows):
//!                                                rows as they are, consistent index and term
//!                                                kept, membership/version/downgrade/confState
//!                                                rows from the cluster view at that index
//!  then member → member.etcd-rs-original (kept until the user deletes it),
//!       member.converting → member          (staging.rs: crash-safe)
//! ```
//!
//! etcd then restarts as from its own files: it recovers the v2 store from
//! the snap file, opens the backend (its consistent index is at or above
//! the snapshot's, so no `<index>.snap.db` is wanted), replays the entries
//! after the snapshot, applying again to the v2 store what touches
//! membership and skipping the backend writes at or below the consistent
//! index, exactly as after its own restart.
//!
//! Checked before a byte is written (the dir is left as it is otherwise):
//! the cluster version at the end of the log (snapshot + replayed
//! `ClusterVersionSet` entries) is not above the target (etcd 3.5 would
//! refuse to start: "invalid downgrade; server version is lower than
//! determined cluster version"; the downgrade job is how it gets there),
//! the log needs nothing newer than the target (etcd 3.6's own check),
//! the backend's consistent index lies between the snapshot and the
//! commit index, the member is still in the cluster, and every entry
//! translates.
//!
//! Left out: `--target-version 3.4` (refused by the target check: our
//! cluster version never goes below 3.5, and etcd 3.4 would need v2
//! requests for what 3.5 applies as v3 requests), `--wal-dir` elsewhere
//! (etcdutl has no such flag), and the v2 keys of etcd's store (we keep
//! none).

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use api::etcdserverpb::{InternalRaftRequest, WalMetadata};
use etcdfmt::raftpb;
use etcdfmt::snap::v2store::{V2Member, V2Membership};
use prost::Message;
use raft::eraftpb::{ConfChange, ConfState, Entry, EntryType};

use super::backend::{BboltRows, EtcdCluster, PAGE_SIZE_BYTES};
use super::entries;
use super::staging::Stage;
use crate::membership::Cluster;
use crate::migrate::Log;
use crate::version::MajorMinor;

/// Where our member dir is kept after a conversion.
pub const KEPT_DIR: &str = "member.etcd-rs-original";

/// What a conversion did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converted {
    pub member_id: u64,
    pub cluster_id: u64,
    /// The raft snapshot etcd starts from (0: none, the log from index 1).
    pub snapshot_index: u64,
    /// Entries written to etcd's WAL.
    pub entries: usize,
    pub consistent_index: u64,
    pub revision: i64,
    /// The cluster version at the end of the log.
    pub cluster_version: Option<String>,
    /// Where the original member dir is kept.
    pub kept: std::path::PathBuf,
}

/// Converts our member dir under `data_dir` (locked by the caller) into
/// etcd `target`'s files, keeping the original as `member.etcd-rs-original`.
/// `wal_version` is the lowest version able to replay `log`.
pub fn convert(
    data_dir: &Path,
    target: MajorMinor,
    wal_version: Option<MajorMinor>,
    log: Log,
) -> Result<Converted> {
    let started = Instant::now();
    let source = read(data_dir, target, wal_version, log)?;
    let stage = Stage::begin(data_dir, KEPT_DIR)?;
    if let Err(e) = write(&source, &stage.dir()) {
        // The original is untouched; the half-built dir goes.
        let _ = std::fs::remove_dir_all(stage.dir());
        return Err(e);
    }
    let kept = stage.kept_dir();
    stage.commit()?;
    let converted = Converted {
        member_id: source.metadata.node_id,
        cluster_id: source.metadata.cluster_id,
        snapshot_index: source.snapshot.index,
        entries: source.entries.len(),
        consistent_index: source.info.consistent_index,
        revision: source.info.revision,
        cluster_version: source.end_version.clone(),
        kept: kept.clone(),
    };
    tracing::info!(
        data_dir = %data_dir.display(),
        target_version = %target.short(),
        member_id = %format!("{:x}", converted.member_id),
        cluster_id = %format!("{:x}", converted.cluster_id),
        snapshot_index = converted.snapshot_index,
        entries = converted.entries,
        consistent_index = converted.consistent_index,
        revision = converted.revision,
        cluster_version = converted.cluster_version.as_deref().unwrap_or(""),
        members = source.v2.members.len(),
        original = %kept.display(),
        took = ?started.elapsed(),
        "converted the data dir into etcd's files; start etcd {} on it. The etcd-rs \
         files are kept until you delete them",
        target.short()
    );
    Ok(converted)
}

/// Everything read from our member dir, checked, before a byte is written.
struct Source {
    metadata: raftpb::Metadata,
    snapshot: etcdfmt::wal::WalSnapshot,
    /// The v2 store's membership at the snapshot.
    v2: V2Membership,
    hard_state: raftpb::HardState,
    entries: Vec<raftpb::Entry>,
    backend: mvcc::ImageSource,
    info: mvcc::ImageInfo,
    /// The cluster view at the backend's consistent index.
    cluster: EtcdCluster,
    end_version: Option<String>,
}

fn read(
    data_dir: &Path,
    target: MajorMinor,
    wal_version: Option<MajorMinor>,
    log: Log,
) -> Result<Source> {
    let Log { snapshot, state } = log;
    let metadata = WalMetadata::decode(&state.metadata[..]).context("the WAL's metadata")?;
    let metadata = raftpb::Metadata {
        node_id: metadata.node_id,
        cluster_id: metadata.cluster_id,
    };
    let (snap_index, snap_term, conf_state, snap_data) = match &snapshot {
        Some(s) => {
            let m = s.get_metadata();
            (m.index, m.term, m.get_conf_state().clone(), s.data.to_vec())
        }
        None => (0, 0, ConfState::default(), Vec::new()),
    };

    // The cluster view: at the snapshot, at the consistent index, at the end.
    let at_snapshot = Cluster::new(metadata.cluster_id, 0);
    if snapshot.is_some() {
        at_snapshot
            .restore(&snap_data)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("the cluster data of raft snapshot {snap_index}"))?;
    }
    let db_path = crate::offline::backend_path(data_dir);
    let backend = mvcc::ImageSource::open_file(&db_path)
        .with_context(|| format!("cannot read the backend {}", db_path.display()))?;
    match backend.schema_version() {
        Ok((_, true)) => {}
        Ok((version, false)) => bail!(
            "the backend {} has layout version {version:?}, written by a newer etcd-rs",
            db_path.display()
        ),
        Err(e) => return Err(e).context(format!("cannot read {}", db_path.display())),
    }
    // A whole pass over the backend: every row read and checked.
    let info = backend
        .status()
        .with_context(|| format!("cannot read the backend {}", db_path.display()))?
        .info;
    let ci = info.consistent_index;
    let last_index = state.entries.last().map_or(snap_index, |e| e.index);
    let (at_ci, at_end) = {
        // Replaying logs what the server logs when it applies; not here.
        let _quiet = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
        let at_ci = Cluster::new(metadata.cluster_id, 0);
        let at_end = Cluster::new(metadata.cluster_id, 0);
        if snapshot.is_some() {
            at_ci.restore(&snap_data).map_err(anyhow::Error::msg)?;
            at_end.restore(&snap_data).map_err(anyhow::Error::msg)?;
        }
        for e in &state.entries {
            if e.index <= ci {
                replay(&at_ci, e)?;
            }
            replay(&at_end, e)?;
        }
        (at_ci, at_end)
    };

    let end_version = at_end.version();
    if let Some(version) = at_end.cluster_version().filter(|&v| v > target) {
        bail!(
            "the cluster version is {} (at the end of this member's log), above the target \
             {}: etcd {} would refuse to start (\"invalid downgrade; server version is lower \
             than determined cluster version\"). Downgrade the cluster first while it runs: \
             `etcdctl downgrade enable {}` (or POST /v3/maintenance/downgrade \
             {{\"action\":\"ENABLE\",\"version\":\"{}\"}}), wait until the cluster version is \
             {}.0, stop the members, then migrate each; the data dir is left as it is",
            version.short(),
            target.short(),
            target.short(),
            target.short(),
            target.short(),
            target.short()
        );
    }
    if let Some(needed) = wal_version.filter(|&needed| target < needed) {
        bail!(
            "cannot downgrade storage, WAL contains newer entries, as the target version \
             ({target}) is lower than the version ({needed}) detected from WAL logs; the \
             member takes a raft snapshot when the cluster version goes down, so start it \
             once more and stop it again after its cluster version is {}.0",
            target.short()
        );
    }
    if ci < snap_index {
        bail!(
            "the backend's consistent index {ci} is below the raft snapshot's index \
             {snap_index}: etcd would want a backend snapshot file; start etcd-rs once on \
             this dir so that it catches up, then migrate"
        );
    }
    if ci > last_index || ci > state.hard_state.commit {
        bail!(
            "the backend's consistent index {ci} is past the log (last index {last_index}, \
             commit {}): the WAL and the backend do not belong together",
            state.hard_state.commit
        );
    }
    if at_end.is_removed(metadata.node_id) || at_end.member(metadata.node_id).is_none() {
        bail!(
            "member {:x} is not a member of its cluster at the end of its log (removed?): \
             etcd would not start on it",
            metadata.node_id
        );
    }

    let mut translated = Vec::with_capacity(state.entries.len());
    for e in &state.entries {
        translated.push(entries::to_etcd(e).context("translate the log for etcd")?);
    }
    // etcd's v2 store holds the membership at the snapshot; its cluster
    // version is the snapshot's unless that is above the target (a snapshot
    // from before the downgrade: the replayed ClusterVersionSet sets the
    // same version the end of the log has).
    let mut v2_version = at_snapshot.version();
    if at_snapshot.cluster_version().is_some_and(|v| v > target) {
        v2_version = end_version.clone();
    }
    let v2 = V2Membership {
        members: at_snapshot
            .members()
            .into_iter()
            .map(|m| V2Member {
                id: m.id,
                name: m.name,
                peer_urls: m.peer_ur_ls,
                client_urls: m.client_ur_ls,
                is_learner: m.is_learner,
            })
            .collect(),
        removed: at_snapshot.removed(),
        cluster_version: v2_version,
    };
    let mut cluster = EtcdCluster::of(&at_ci);
    if cluster.cluster_version.is_none() {
        cluster.cluster_version = end_version.clone();
    }
    let hs = &state.hard_state;
    Ok(Source {
        metadata,
        snapshot: if snap_index > 0 {
            etcdfmt::wal::WalSnapshot {
                index: snap_index,
                term: snap_term,
                conf_state: Some(etcd_conf_state(&conf_state)),
            }
        } else {
            etcdfmt::wal::WalSnapshot::default()
        },
        v2,
        hard_state: raftpb::HardState {
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
        },
        entries: translated,
        backend,
        info,
        cluster,
        end_version,
    })
}

/// Applies to the cluster view what one entry changes (what the server's
/// applier does with it; rejected conf changes change nothing).
fn replay(cluster: &Cluster, e: &Entry) -> Result<()> {
    match e.get_entry_type() {
        EntryType::EntryNormal => {
            if e.data.is_empty() {
                return Ok(());
            }
            let Ok(req) = InternalRaftRequest::decode(&e.data[..]) else {
                // The server skips what it cannot decode.
                return Ok(());
            };
            if let Some(r) = &req.cluster_member_attr_set {
                cluster.set_member_attributes(r);
            } else if let Some(r) = &req.cluster_version_set {
                cluster
                    .set_version(&r.ver)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| format!("entry {}: cluster version", e.index))?;
            } else if let Some(r) = &req.downgrade_info_set {
                cluster.set_downgrade_info(r);
            } else if let Some(r) = &req.member_update {
                let _ = cluster.update_member(r.id, &r.peer_ur_ls);
            }
        }
        EntryType::EntryConfChange => {
            let cc: ConfChange = protobuf::Message::parse_from_bytes(&e.data)
                .with_context(|| format!("entry {}: conf change", e.index))?;
            if cluster.validate_conf_change(&cc).is_ok() {
                cluster.apply_conf_change(&cc);
            }
        }
        EntryType::EntryConfChangeV2 => bail!(
            "entry {} is a ConfChangeV2, which etcd-rs never writes",
            e.index
        ),
    }
    Ok(())
}

fn etcd_conf_state(cs: &ConfState) -> raftpb::ConfState {
    raftpb::ConfState {
        voters: cs.voters.clone(),
        learners: cs.learners.clone(),
        voters_outgoing: cs.voters_outgoing.clone(),
        learners_next: cs.learners_next.clone(),
        auto_leave: cs.auto_leave,
    }
}

fn write(source: &Source, dir: &Path) -> Result<()> {
    private_dir(dir)?;
    let snap_dir = dir.join("snap");
    std::fs::create_dir(&snap_dir)
        .with_context(|| format!("cannot create {}", snap_dir.display()))?;
    private_dir(&snap_dir)?;
    let mut rows = BboltRows::new(&source.backend, &source.cluster).without_storage_version();
    etcdfmt::bbolt::write_file(
        &snap_dir.join("db"),
        &etcdfmt::schema::BUCKETS,
        PAGE_SIZE_BYTES,
        &mut rows,
    )
    .context("write etcd's backend")?;
    if source.snapshot.index > 0 {
        let snapshot = raftpb::Snapshot {
            data: Some(etcdfmt::snap::v2store::to_v2_store_json(
                &source.v2,
                source.snapshot.index,
            )),
            metadata: raftpb::SnapshotMetadata {
                conf_state: source.snapshot.conf_state.clone().unwrap_or_default(),
                index: source.snapshot.index,
                term: source.snapshot.term,
            },
        };
        etcdfmt::snap::write_snap_file(&snap_dir, &snapshot)
            .context("write etcd's snapshot file")?;
    }
    etcdfmt::wal::write_dir(
        &dir.join("wal"),
        &source.metadata,
        source.snapshot.clone(),
        &source.hard_state,
        &source.entries,
    )
    .context("write etcd's WAL")?;
    Ok(())
}

/// etcd's member dirs are 0700.
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set the permissions of {}", dir.display()))
}
