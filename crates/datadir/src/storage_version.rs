//! The storage version: which etcd version's data a member's backend holds,
//! recorded as etcd 3.6 records it (`storageVersion` in "meta", `3.6.0`),
//! with etcd's rules for reading, validating and changing it (its
//! `storage/schema` package). `etcdutl migrate` and the server share them.
//!
//! ```text
//!  record in "meta"     version it stands for
//!  "3.6.0"              3.6
//!  none, term > 0       3.5   (etcd: a 3.5 backend; ours: written before a
//!                              3.6 cluster version was applied, or cleared
//!                              by a migration to 3.5)
//!  none, term 0         unknown ("missing term information")
//! ```
//!
//! - Our backend's layout is the same for every version (`mvcc` documents
//!   it), so a migration changes only the record: to 3.6 it writes
//!   `3.6.0`, to 3.5 it removes the record (etcd removes the fields 3.6
//!   added, the record being the one our backend has). Steps exist between
//!   3.5 and 3.6 only, as in etcd 3.6; other targets need `--force`.
//! - A member records the version as it follows the cluster version
//!   ([`follow_cluster_version`], etcd's storage version monitor), and at
//!   start refuses a recorded version it has no step to ([`validate`]),
//!   as etcd does with `version "3.7.0" is not supported`.

use anyhow::{Context, Result};
use api::etcdserverpb::InternalRaftRequest;
use prost::Message;
use raft::eraftpb::{Entry, EntryType};

use crate::membership::SERVER_VERSION;
use crate::version::MajorMinor;

pub const V3_5: MajorMinor = MajorMinor { major: 3, minor: 5 };
pub const V3_6: MajorMinor = MajorMinor { major: 3, minor: 6 };

/// The versions a migration step leads to or from (etcd's `schemaChanges`
/// keys): the step between 3.5 and 3.6 is the only one.
fn has_step(version: MajorMinor) -> bool {
    version == V3_6
}

/// The version the backend holds (etcd's `DetectSchemaVersion`); Err is
/// etcd's reason it cannot tell.
pub fn detect(store: &mvcc::Store) -> Result<MajorMinor, String> {
    detect_from(store.storage_version(), store.consistent_index().1)
}

/// [`detect`] of a backend's `storageVersion` record and raft term, read
/// by the caller (from a backend file opened read-only).
pub fn detect_from(recorded: Option<String>, term: u64) -> Result<MajorMinor, String> {
    if let Some(recorded) = recorded {
        return MajorMinor::of(&recorded)
            .ok_or_else(|| format!("storage version {recorded:?} does not parse"));
    }
    if term == 0 {
        return Err("missing term information".to_string());
    }
    Ok(V3_5)
}

/// The record a backend at `version` carries: none below 3.6.
pub fn record_for(version: MajorMinor) -> Option<String> {
    (version >= V3_6).then(|| version.to_string())
}

/// The steps from `current` to `target` (etcd's `newPlan`), each the
/// version it reaches; Err is etcd's reason there is no plan.
pub fn plan(current: MajorMinor, target: MajorMinor) -> Result<Vec<MajorMinor>, String> {
    if current.major != target.major {
        tracing::error!(
            storage_version = %current,
            target_storage_version = %target,
            "Changing major storage version is not supported"
        );
        return Err("changing major storage version is not supported".to_string());
    }
    let mut steps = Vec::new();
    let mut at = current;
    while at != target {
        let upgrade = at < target;
        // An upgrade takes the changes of the version it reaches, a
        // downgrade undoes those of the version it leaves.
        let changes_of = if upgrade {
            MajorMinor {
                major: at.major,
                minor: at.minor + 1,
            }
        } else {
            at
        };
        if !has_step(changes_of) {
            return Err(format!("version \"{changes_of}\" is not supported"));
        }
        at = MajorMinor {
            major: at.major,
            minor: if upgrade { at.minor + 1 } else { at.minor - 1 },
        };
        steps.push(at);
    }
    Ok(steps)
}

/// The lowest etcd version that can replay `entries` (etcd's
/// `MinimalEtcdVersion` of a WAL), None when nothing in them needs more
/// than any 3.x. Of etcd's rules only one can fire on what we write: a
/// cluster version set to v needs v (every other request and conf change
/// we log exists since 3.5 at the latest). An entry that does not decode
/// is an error, as in etcd.
pub fn wal_minimal_version(entries: &[Entry]) -> Result<Option<MajorMinor>> {
    let mut minimal: Option<MajorMinor> = None;
    for entry in entries {
        if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
            continue;
        }
        let req = InternalRaftRequest::decode(&entry.data[..])
            .with_context(|| format!("entry {} is not a raft request", entry.index))?;
        if let Some(set) = req.cluster_version_set {
            let version = MajorMinor::of(&set.ver).with_context(|| {
                format!("entry {} sets cluster version {:?}", entry.index, set.ver)
            })?;
            minimal = minimal.max(Some(version));
        }
    }
    Ok(minimal)
}

/// At start (etcd's `schema.Validate`): a recorded version this server has
/// no migration plan to is refused; a backend without one is fine.
pub fn validate(store: &mvcc::Store) -> Result<()> {
    let current = match detect(store) {
        Ok(v) => v,
        Err(e) => {
            // Only a backend raft never wrote to (a new member) has no
            // version: nothing to validate (etcd warns here).
            tracing::debug!(error = %e, "no storage version to validate");
            return Ok(());
        }
    };
    let local = MajorMinor::of(SERVER_VERSION).context("this build's version does not parse")?;
    if let Err(e) = plan(current, local) {
        tracing::error!(error = %e, "Failed to validate schema");
        anyhow::bail!(e);
    }
    Ok(())
}

/// Makes the backend's record follow the cluster version, in the batch
/// that applies it (etcd's monitor `UpdateStorageVersion`). Returns true
/// when the record went down (a downgrade reached its target): the caller
/// then takes a raft snapshot, so that the log after the newest snapshot
/// holds no entry that needs the newer version and `etcdutl migrate
/// --target-version` can go down to it.
pub fn follow_cluster_version(
    store: &mvcc::Store,
    batch: &mut mvcc::WriteBatch<'_>,
    cluster_version: Option<MajorMinor>,
) -> bool {
    let Some(cluster) = cluster_version else {
        return false;
    };
    let wanted = record_for(cluster);
    let recorded = store.storage_version();
    if recorded == wanted {
        return false;
    }
    batch.set_storage_version(wanted.as_deref());
    tracing::info!(new_storage_version = %cluster, "updated storage version");
    let before = recorded.as_deref().and_then(MajorMinor::of);
    before.is_some_and(|before| cluster < before)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(minor: i64) -> MajorMinor {
        MajorMinor { major: 3, minor }
    }

    #[test]
    fn plans_follow_etcds_steps() {
        assert_eq!(plan(v(5), v(6)), Ok(vec![v(6)]));
        assert_eq!(plan(v(6), v(5)), Ok(vec![v(5)]));
        assert_eq!(plan(v(6), v(6)), Ok(vec![]));
        assert_eq!(
            plan(v(6), v(7)),
            Err("version \"3.7.0\" is not supported".to_string())
        );
        assert_eq!(
            plan(v(7), v(6)),
            Err("version \"3.7.0\" is not supported".to_string())
        );
        assert_eq!(
            plan(v(5), v(4)),
            Err("version \"3.5.0\" is not supported".to_string())
        );
        assert_eq!(
            plan(v(5), MajorMinor { major: 4, minor: 0 }),
            Err("changing major storage version is not supported".to_string())
        );
        assert_eq!(record_for(v(6)).as_deref(), Some("3.6.0"));
        assert_eq!(record_for(v(5)), None);
    }

    fn entry(index: u64, req: &InternalRaftRequest) -> Entry {
        Entry {
            index,
            data: req.encode_to_vec().into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_wal_needs_the_highest_cluster_version_it_sets() {
        let set = |ver: &str| InternalRaftRequest {
            cluster_version_set: Some(api::etcdserverpb::ClusterVersionSetRequest {
                ver: ver.to_string(),
            }),
            ..Default::default()
        };
        let put = InternalRaftRequest {
            put: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(wal_minimal_version(&[entry(1, &put)]).unwrap(), None);
        let entries = [
            entry(1, &set("3.5.0")),
            entry(2, &put),
            entry(3, &set("3.6.0")),
        ];
        assert_eq!(wal_minimal_version(&entries).unwrap(), Some(v(6)));
        let bad = Entry {
            index: 4,
            data: vec![0xff, 0xff, 0xff].into(),
            ..Default::default()
        };
        assert!(wal_minimal_version(&[bad]).is_err());
    }
}
