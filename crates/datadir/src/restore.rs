//! `etcdutl snapshot restore`: a new data directory for one member of a new
//! cluster, holding the data of a snapshot file.
//!
//! ```text
//!  snapshot file ──(SHA-256 checked)──▶ member/snap/db   backend from the image,
//!                                                        consistent index = n, term 1
//!  --initial-cluster, token ──────────▶ member/snap/0000000000000001-<n>.snap
//!                                        raft snapshot at (n, term 1): the n founding
//!                                        voters, the cluster data (members)
//!                                      ▶ member/wal/    identity, the n founding
//!                                        ConfChange entries, hard state, snapshot marker
//! ```
//!
//! What etcd's restore does, with our formats: the member looks exactly like
//! one that bootstrapped the new cluster (the same founding entries and IDs
//! as `bootstrap` writes, so the IDs equal etcd's) and then took a raft
//! snapshot at the last founding entry, with the backend applied through
//! it. Started with `etcd --name … --data-dir …`, it restarts from that
//! snapshot and serves the snapshot's keys, leases and revision.
//!
//! Invariants:
//! - nothing is written into an existing non-empty data directory or an
//!   existing WAL directory; on failure the directories the restore created
//!   are removed again;
//! - the backend's consistent index equals the snapshot index, so no entry
//!   is applied twice and none is missing;
//! - the WAL is written last: a directory with a WAL is complete.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use raft::eraftpb::{ConfChange, Snapshot};
use wal::{Snapshotter, WalSnapshot};

use crate::founding::{self, FoundingMember};
use crate::ids;
use crate::membership::Cluster;
use crate::snapshot_file::SnapshotFile;
use crate::urls::{parse_url, parse_urls_map};

/// What `etcdutl snapshot restore` was asked to do (etcd's RestoreConfig).
#[derive(Clone, Debug)]
pub struct RestoreConfig {
    pub snapshot_path: PathBuf,
    /// This member's name in `initial_cluster`.
    pub name: String,
    pub data_dir: PathBuf,
    /// `None`: `<data-dir>/member/wal`.
    pub wal_dir: Option<PathBuf>,
    /// `--initial-cluster`: `name=url,…`.
    pub initial_cluster: String,
    pub initial_cluster_token: String,
    pub initial_advertise_peer_urls: Vec<String>,
    pub skip_hash_check: bool,
    /// Revisions to add to the snapshot's revision (marked compacted); 0: none.
    pub revision_bump: u64,
}

/// What a restore wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    pub member_id: u64,
    pub cluster_id: u64,
    /// The raft index (and backend consistent index) the member starts at.
    pub snapshot_index: u64,
    /// The revision the member serves.
    pub revision: i64,
}

/// Restores a snapshot file into a new data directory (see the module docs).
pub fn restore(cfg: &RestoreConfig) -> Result<Restored> {
    for url in &cfg.initial_advertise_peer_urls {
        parse_url(url).map_err(anyhow::Error::msg)?;
    }
    let initial_cluster = parse_urls_map(&cfg.initial_cluster).map_err(anyhow::Error::msg)?;
    check_duplicate_urls(&cfg.initial_cluster, &initial_cluster)?;
    let members = founding::founding_members(&initial_cluster, &cfg.initial_cluster_token);
    let local = founding::local_member(&members, &cfg.name, &cfg.initial_advertise_peer_urls)?;

    let data_dir = &cfg.data_dir;
    if data_dir.exists() && !dir_is_empty(data_dir) {
        bail!(
            "data-dir {:?} not empty or could not be read",
            data_dir.display().to_string()
        );
    }
    let wal_dir = match &cfg.wal_dir {
        Some(dir) if dir.exists() => {
            bail!("wal-dir {:?} exists", dir.display().to_string())
        }
        Some(dir) => dir.clone(),
        None => data_dir.join("member").join("wal"),
    };
    let snap_dir = data_dir.join("member").join("snap");
    tracing::info!(
        path = %cfg.snapshot_path.display(),
        wal_dir = %wal_dir.display(),
        data_dir = %data_dir.display(),
        snap_dir = %snap_dir.display(),
        "restoring snapshot"
    );
    // Directories this restore creates are removed again if it fails.
    let mut created = Created::default();
    created.note(data_dir);
    created.note(&wal_dir);
    let restored = write_member(cfg, &members, local, &snap_dir, &wal_dir)?;
    created.keep();
    tracing::info!(
        path = %cfg.snapshot_path.display(),
        wal_dir = %wal_dir.display(),
        data_dir = %data_dir.display(),
        snap_dir = %snap_dir.display(),
        member_id = %format!("{:x}", restored.member_id),
        cluster_id = %format!("{:x}", restored.cluster_id),
        revision = restored.revision,
        "restored snapshot"
    );
    Ok(restored)
}

fn write_member(
    cfg: &RestoreConfig,
    members: &[FoundingMember],
    local: &FoundingMember,
    snap_dir: &Path,
    wal_dir: &Path,
) -> Result<Restored> {
    let (entries, hard_state) = founding::founding_entries(members)?;
    let index = hard_state.commit;
    let term = hard_state.term;
    let voters: Vec<u64> = members.iter().map(|m| m.id).collect();
    let cluster_id = ids::cluster_id(&voters);

    // The backend: the snapshot's data, following the new cluster's log.
    let mut file = SnapshotFile::open(&cfg.snapshot_path)?;
    file.verify_hash(cfg.skip_hash_check)?;
    std::fs::create_dir_all(snap_dir)
        .with_context(|| format!("cannot create {}", snap_dir.display()))?;
    let store = crate::snapshot_file::restore_backend(&mut file, &snap_dir.join("db"))?;
    let revision = store
        .rebase(index, term, cfg.revision_bump)
        .context("prepare the restored backend for the new cluster")?;
    drop(store);

    // The cluster view after the founding entries, as a raft snapshot's data.
    let cluster = Cluster::new(cluster_id, local.id);
    for entry in &entries {
        let cc: ConfChange = protobuf::Message::parse_from_bytes(&entry.data)
            .context("decode a founding conf change")?;
        cluster.apply_conf_change(&cc);
    }
    let mut snapshot = Snapshot {
        data: cluster.snapshot().into(),
        ..Default::default()
    };
    let meta = snapshot.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.mut_conf_state().voters = voters;
    Snapshotter::new(snap_dir)
        .save(&snapshot)
        .context("cannot save the raft snapshot")?;

    let mut wal =
        founding::create_founding_wal(wal_dir, local.id, cluster_id, &entries, &hard_state)?;
    wal.save_snapshot(WalSnapshot { index, term })
        .context("cannot record the snapshot in the WAL")?;
    Ok(Restored {
        member_id: local.id,
        cluster_id,
        snapshot_index: index,
        revision,
    })
}

/// etcd refuses an initial cluster that names one URL twice.
fn check_duplicate_urls(raw: &str, cluster: &[(String, Vec<String>)]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for url in cluster.iter().flat_map(|(_, urls)| urls) {
        if !seen.insert(url) {
            bail!("initial cluster {raw} has duplicate url");
        }
    }
    Ok(())
}

fn dir_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

/// Directories to remove unless the restore completes: (path, whether it
/// existed before, empty — etcd accepts an empty data directory, which is
/// then emptied again rather than removed).
#[derive(Default)]
struct Created(Vec<(PathBuf, bool)>);

impl Created {
    fn note(&mut self, dir: &Path) {
        if !dir.exists() {
            self.0.push((dir.to_path_buf(), false));
        } else if dir_is_empty(dir) {
            self.0.push((dir.to_path_buf(), true));
        }
    }

    fn keep(&mut self) {
        self.0.clear();
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        for (dir, existed) in &self.0 {
            if !dir.exists() {
                continue;
            }
            let removed = if *existed {
                std::fs::read_dir(dir).and_then(|entries| {
                    for entry in entries {
                        let path = entry?.path();
                        if path.is_dir() {
                            std::fs::remove_dir_all(&path)?;
                        } else {
                            std::fs::remove_file(&path)?;
                        }
                    }
                    Ok(())
                })
            } else {
                std::fs::remove_dir_all(dir)
            };
            if let Err(e) = removed {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove what a failed restore wrote");
            }
        }
    }
}
