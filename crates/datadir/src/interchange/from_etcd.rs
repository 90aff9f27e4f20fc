//! Taking over a stopped etcd member's data dir: our `etcd`, started with
//! the flags the real member had, converts `<data-dir>/member` into ours
//! and then restarts from it as the same member.
//!
//! ```text
//!  etcd's member dir                          ours (built in member.converting)
//!  snap/db    bbolt (etcd's buckets):     ─▶ snap/db: our backend (backend::import),
//!             consistent index C              consistent index kept
//!  snap/*.snap newest one the WAL knows:      snap/<term>-<index>.snap at C: the
//!             index S, conf state, v2 store ─▶ membership and conf state of etcd's
//!             (members, removed, version)      snapshot with the entries S+1..C folded
//!  wal/*.wal  entries S+1..C (applied)         in (conf changes, member updates,
//!                                               attributes, versions)
//!             entries after C (unapplied) ─▶ wal/: metadata, snapshot marker C,
//!             metadata, hard state             hard state, entries after C
//!                                               (entries::from_etcd)
//!  then member → member.etcd-original (kept until the user deletes it),
//!       member.converting → member          (staging.rs: crash-safe)
//! ```
//!
//! The log is read as a stream ([`etcdfmt::wal::read_dir_split`]): the
//! entries the backend has applied are folded one by one and dropped, so
//! memory holds the unapplied tail only, however long a log etcd keeps
//! between its snapshots. It is read once, from the newest readable snap
//! file, and walked a second time only when etcd would have started from
//! an older one. After the swap the member restarts as from its own data:
//! raft replays the entries after C, exactly as etcd replays its own log.
//!
//! Before anything is written, no etcd may hold the WAL's locks and the
//! backend's meta pages and its `meta` and membership buckets must read.
//! Then the log is folded on one thread while the backend is converted on
//! another (they read different files; each takes seconds per GB), into
//! the staging dir, which is removed if either fails: a file we cannot
//! read stops the conversion with the dir as it was. A running etcd is
//! recognised by the lock it holds on its WAL files.
//!
//! Left out: `--wal-dir` outside the member dir (refused), and the v2 keys
//! of etcd's v2 store (etcd 3.4 and 3.5 keep them only for the v2 API,
//! which we do not serve; their count is logged).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use api::etcdserverpb::{Member, WalMetadata};
use etcdfmt::raftpb;
use etcdfmt::snap::v2store::V2Membership;
use prost::Message;
use raft::eraftpb::{ConfState, Snapshot};

use super::entries::{self, Translated};
use super::staging::Stage;
use crate::membership::MembershipRequest;

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
    let source = prepare(&member)?;
    let stage = Stage::begin(data_dir, KEPT_DIR)?;
    // The log is folded while the backend converts: they read different
    // files and take about as long as each other on a big member. A log
    // that fails stops the conversion of the backend, which can take
    // minutes; the log (bounded by etcd's snapshot count) is read to its
    // end whatever the backend does.
    let cancel = AtomicBool::new(false);
    let built = std::thread::scope(|scope| {
        let (member, source, cancel) = (&member, &source, &cancel);
        let log = std::thread::Builder::new()
            .name("etcd-log-fold".into())
            .spawn_scoped(scope, move || {
                let started = Instant::now();
                let log = fold_log(member, source).map(|log| (log, started.elapsed()));
                if log.is_err() {
                    cancel.store(true, Ordering::Relaxed);
                }
                log
            })
            .context("start the log reader")?;
        let backend = write_backend(&source.db, &stage.dir(), cancel);
        let log = log
            .join()
            .map_err(|_| anyhow::anyhow!("the WAL reader panicked"))?;
        // The log's error first: the backend's may be the echo of it.
        let (log, log_took) = log?;
        let backend = backend?;
        write_log(&log, &stage.dir())?;
        Ok::<_, anyhow::Error>((log, log_took, backend))
    });
    let (log, log_took, backend) = match built {
        Ok(built) => built,
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
        member_id = %format!("{:x}", log.metadata.node_id),
        cluster_id = %format!("{:x}", log.metadata.cluster_id),
        snapshot_index = log.snapshot_index,
        folded_entries = log.folded,
        entries = log.entries.len(),
        consistent_index = backend.consistent_index,
        revision = backend.revision,
        dropped_v2_requests = log.translated.v2_dropped,
        original = %kept.display(),
        log_read_took = ?log_took,
        took = ?started.elapsed(),
        "converted an etcd data dir; the original files are kept until you delete them"
    );
    Ok(())
}

/// What is read and checked before a byte is written: etcd's backend
/// (opened; its meta and membership buckets read) and that no etcd runs on
/// the dir.
struct Source {
    db: etcdfmt::bbolt::Db,
    peek: super::backend::Peek,
}

/// The log, folded up to the backend's consistent index.
struct Log {
    metadata: raftpb::Metadata,
    /// Where our raft snapshot goes: the last entry the backend has applied
    /// (or etcd's snapshot, when the log holds nothing after it).
    snapshot_index: u64,
    snapshot_term: u64,
    conf_state: ConfState,
    /// Our cluster data at the snapshot (None: no snapshot, the log starts
    /// at index 1 and bootstraps the membership itself).
    cluster: Option<Vec<u8>>,
    hard_state: raft::eraftpb::HardState,
    /// The entries after the snapshot: what the backend has not applied.
    entries: Vec<raft::eraftpb::Entry>,
    /// Entries folded into the snapshot.
    folded: u64,
    translated: Translated,
}

fn prepare(member: &Path) -> Result<Source> {
    refuse_if_running(&member.join("wal"))?;
    let db_path = member.join("snap").join("db");
    let db = etcdfmt::bbolt::Db::open(&db_path)
        .with_context(|| format!("read etcd's backend {}", db_path.display()))?;
    let peek = super::backend::peek(&db)
        .with_context(|| format!("read etcd's backend {}", db_path.display()))?;
    Ok(Source { db, peek })
}

/// Reads etcd's log as a stream, from the snapshot etcd would start from:
/// the newest readable snap file that the WAL records at or below its
/// commit. That is nearly always the newest readable file, so the log is
/// read once, from there, and the choice checked at the end; only when the
/// check fails is the WAL walked for its valid snapshots first, as etcd
/// does, and read again.
fn fold_log(member: &Path, source: &Source) -> Result<Log> {
    let snap_dir = member.join("snap");
    let guess = etcdfmt::snap::snap_names(&snap_dir)
        .unwrap_or_default()
        .into_iter()
        .find_map(|name| etcdfmt::snap::read_snap_file(&snap_dir.join(name)).ok());
    if let Ok(folded) = fold_from(member, source, guess.as_ref()) {
        let valid = |index: u64| index > 0 && index <= folded.wal_commit;
        let as_etcd_would = match &guess {
            Some(s) => valid(s.metadata.index),
            None => !folded.wal_snapshots.iter().any(|s| valid(s.index)),
        };
        if as_etcd_would {
            return Ok(folded.log);
        }
    }
    let valid = etcdfmt::wal::valid_snapshots(&member.join("wal")).context("read etcd's WAL")?;
    let newest = newest_snapshot(&snap_dir, &valid)?;
    fold_from(member, source, newest.as_ref()).map(|folded| folded.log)
}

/// A log folded from a snapshot, with what tells whether etcd would have
/// started from that snapshot.
struct Folded {
    log: Log,
    /// The commit index of the last hard state in the WAL.
    wal_commit: u64,
    /// The snapshot records read.
    wal_snapshots: Vec<etcdfmt::wal::WalSnapshot>,
}

/// Our raft snapshot is taken where etcd's backend stands (its consistent
/// index): the entries up to there are applied in the backend already, so
/// only the membership they change is kept (folded into the snapshot's
/// cluster data and conf state, as our applier would apply them) and only
/// the tail after it is carried. Memory is bounded by the unapplied tail,
/// not by the log etcd keeps between its snapshots (100,000 entries in 3.4).
fn fold_from(
    member: &Path,
    source: &Source,
    snapshot: Option<&raftpb::Snapshot>,
) -> Result<Folded> {
    let wal_dir = member.join("wal");
    let from = match snapshot {
        Some(s) => etcdfmt::wal::WalSnapshot {
            index: s.metadata.index,
            term: s.metadata.term,
            conf_state: Some(s.metadata.conf_state.clone()),
        },
        None => etcdfmt::wal::WalSnapshot::default(),
    };
    let mut fold = Fold::new(from.index, from.term);
    if let Some(snapshot) = snapshot {
        let membership = v2_membership(snapshot)?;
        fold.cluster
            .restore(&cluster_data(&membership, &source.peek.cluster))
            .map_err(anyhow::Error::msg)?;
        fold.conf_state = conf_state(&snapshot.metadata.conf_state);
    }
    let mut translated = Translated::default();
    // Folding applies entries to a cluster view of its own: its log lines
    // (members publishing, versions set) are not news.
    let wal =
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            etcdfmt::wal::read_dir_split(&wal_dir, from, source.peek.consistent_index, |e| {
                let ours = entries::from_etcd(&e, &mut translated)?;
                fold.apply(&ours)
            })
        })
        .context("read etcd's WAL")?;
    let entries = wal
        .entries
        .iter()
        .map(|e| entries::from_etcd(e, &mut translated))
        .collect::<Result<Vec<_>>>()
        .context("translate etcd's log")?;
    let (snapshot_index, snapshot_term) = fold.last;
    let cluster = (snapshot_index > 0).then(|| fold.cluster.snapshot());
    // etcd's backend may have applied entries its last saved hard state
    // does not commit yet (it applies while the hard state is written);
    // applied means committed, and raft wants commit at or past the snapshot.
    let hard_state = raft::eraftpb::HardState {
        term: wal.hard_state.term.max(snapshot_term),
        vote: wal.hard_state.vote,
        commit: wal.hard_state.commit.max(snapshot_index),
        ..Default::default()
    };
    let log = Log {
        metadata: wal.metadata,
        snapshot_index,
        snapshot_term,
        conf_state: fold.conf_state,
        cluster,
        hard_state,
        entries,
        folded: fold.folded,
        translated,
    };
    Ok(Folded {
        log,
        wal_commit: wal.hard_state.commit,
        wal_snapshots: wal.snapshots,
    })
}

/// The cluster view and raft conf state at an index: those of etcd's
/// snapshot, then each final entry after it applied as our applier applies
/// it (conf changes that pass etcd's checks, member updates, published
/// attributes, cluster versions, downgrade jobs).
struct Fold {
    cluster: crate::membership::Cluster,
    conf_state: ConfState,
    /// Index and term of the last entry folded (etcd's snapshot at first).
    last: (u64, u64),
    folded: u64,
}

impl Fold {
    fn new(index: u64, term: u64) -> Fold {
        Fold {
            cluster: crate::membership::Cluster::new(0, 0),
            conf_state: ConfState::default(),
            last: (index, term),
            folded: 0,
        }
    }

    fn apply(&mut self, e: &raft::eraftpb::Entry) -> Result<()> {
        use raft::eraftpb::{ConfChange, ConfChangeType, EntryType};
        match e.get_entry_type() {
            EntryType::EntryConfChange => {
                let cc: ConfChange = protobuf::Message::parse_from_bytes(&e.data)
                    .with_context(|| format!("conf change entry {} is unreadable", e.index))?;
                if self.cluster.validate_conf_change(&cc).is_ok() {
                    self.cluster.apply_conf_change(&cc);
                    let cs = &mut self.conf_state;
                    let id = cc.node_id;
                    match cc.get_change_type() {
                        ConfChangeType::AddNode => {
                            cs.learners.retain(|&l| l != id);
                            if !cs.voters.contains(&id) {
                                cs.voters.push(id);
                            }
                        }
                        ConfChangeType::AddLearnerNode => {
                            if !cs.voters.contains(&id) && !cs.learners.contains(&id) {
                                cs.learners.push(id);
                            }
                        }
                        ConfChangeType::RemoveNode => {
                            cs.voters.retain(|&v| v != id);
                            cs.learners.retain(|&l| l != id);
                        }
                    }
                }
            }
            EntryType::EntryNormal => {
                // What does not decode is skipped, as the applier skips it.
                if let Ok(req) = MembershipView::decode(&e.data[..]) {
                    let change = MembershipRequest::pick(
                        req.cluster_member_attr_set.as_ref(),
                        req.cluster_version_set.as_ref(),
                        req.downgrade_info_set.as_ref(),
                        req.member_update.as_ref(),
                    );
                    if let Some(change) = change {
                        // Refused updates change nothing, as when applied.
                        let _refused = self
                            .cluster
                            .apply_request(change)
                            .map_err(anyhow::Error::msg)
                            .with_context(|| format!("entry {}: the cluster version", e.index))?;
                    }
                }
            }
            EntryType::EntryConfChangeV2 => {
                bail!(
                    "entry {} is a v2 conf change, which etcd does not write",
                    e.index
                )
            }
        }
        self.last = (e.index, e.term);
        self.folded += 1;
        Ok(())
    }
}

/// The fields of our `InternalRaftRequest` that the fold reads, with their
/// tags: decoding only these skips a put's value rather than copying it
/// (most of a log is puts, folded and dropped).
#[derive(Clone, PartialEq, prost::Message)]
struct MembershipView {
    #[prost(message, optional, tag = "1300")]
    cluster_version_set: Option<api::etcdserverpb::ClusterVersionSetRequest>,
    #[prost(message, optional, tag = "1301")]
    cluster_member_attr_set: Option<api::etcdserverpb::ClusterMemberAttrSetRequest>,
    #[prost(message, optional, tag = "1302")]
    downgrade_info_set: Option<api::etcdserverpb::DowngradeInfoSetRequest>,
    #[prost(message, optional, tag = "5000")]
    member_update: Option<api::etcdserverpb::MemberUpdateRequest>,
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
    crate::membership::Cluster::snapshot_data(members, v2.removed.clone(), version)
}

/// Converts etcd's backend into `<dir>/snap/db`; returns what it holds.
fn write_backend(
    db: &etcdfmt::bbolt::Db,
    dir: &Path,
    cancel: &AtomicBool,
) -> Result<mvcc::ImageInfo> {
    let snap_dir = dir.join("snap");
    std::fs::create_dir_all(&snap_dir)
        .with_context(|| format!("cannot create {}", snap_dir.display()))?;
    let store = mvcc::Store::open(&snap_dir.join("db"), mvcc::StoreOptions::default())
        .context("create the backend")?;
    let imported = crate::snapshot_file::restore_bbolt_until(db, &store, cancel)
        .context("convert etcd's backend")?;
    Ok(imported.info)
}

/// Writes our raft snapshot and WAL into `dir`.
fn write_log(log: &Log, dir: &Path) -> Result<()> {
    let snap_dir = dir.join("snap");
    if let Some(data) = &log.cluster {
        let mut snapshot = Snapshot {
            data: data.clone().into(),
            ..Default::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = log.snapshot_index;
        meta.term = log.snapshot_term;
        meta.set_conf_state(log.conf_state.clone());
        wal::Snapshotter::new(&snap_dir)
            .save(&snapshot)
            .context("write the raft snapshot")?;
    }

    let metadata = WalMetadata {
        node_id: log.metadata.node_id,
        cluster_id: log.metadata.cluster_id,
    }
    .encode_to_vec();
    let mut wal = wal::Wal::create(&dir.join("wal"), &metadata).context("create the WAL")?;
    if log.snapshot_index > 0 {
        wal.save_snapshot(wal::WalSnapshot {
            index: log.snapshot_index,
            term: log.snapshot_term,
        })
        .context("record the snapshot in the WAL")?;
    }
    // Synced here, and again with the whole dir before the swap.
    wal.save(Some(&log.hard_state), &log.entries)
        .context("write the entries to the WAL")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::etcdserverpb::InternalRaftRequest;

    /// The view's tags are those of `InternalRaftRequest`.
    #[test]
    fn the_membership_view_reads_what_the_applier_reads() {
        use api::etcdserverpb::{
            ClusterMemberAttrSetRequest, ClusterVersionSetRequest, DowngradeInfoSetRequest,
            MemberUpdateRequest, PutRequest,
        };
        let requests = [
            InternalRaftRequest {
                cluster_version_set: Some(ClusterVersionSetRequest {
                    ver: "3.5.0".into(),
                }),
                ..Default::default()
            },
            InternalRaftRequest {
                cluster_member_attr_set: Some(ClusterMemberAttrSetRequest {
                    member_id: 7,
                    ..Default::default()
                }),
                ..Default::default()
            },
            InternalRaftRequest {
                downgrade_info_set: Some(DowngradeInfoSetRequest {
                    enabled: true,
                    ver: "3.4.0".into(),
                }),
                ..Default::default()
            },
            InternalRaftRequest {
                member_update: Some(MemberUpdateRequest {
                    id: 9,
                    peer_ur_ls: vec!["http://a:2380".into()],
                }),
                ..Default::default()
            },
            InternalRaftRequest {
                put: Some(PutRequest {
                    key: b"k".to_vec(),
                    value: vec![1; 1000],
                    ..Default::default()
                }),
                ..Default::default()
            },
        ];
        for req in requests {
            let view = MembershipView::decode(&req.encode_to_vec()[..]).expect("decode");
            assert_eq!(view.cluster_version_set, req.cluster_version_set);
            assert_eq!(view.cluster_member_attr_set, req.cluster_member_attr_set);
            assert_eq!(view.downgrade_info_set, req.downgrade_info_set);
            assert_eq!(view.member_update, req.member_update);
        }
    }
}
