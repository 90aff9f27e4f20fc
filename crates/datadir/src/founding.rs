//! A member's data dir: its lock, and what a new member writes into it
//! first (its identity, then the founding entries of a new cluster's log).
//! Both a starting server and `etcdutl snapshot restore` found members.
//!
//! Invariants:
//! - the WAL is created last, so a directory with a WAL is fully initialized;
//! - a new cluster's log starts, as etcd's does, with one committed
//!   `ConfChange(AddNode)` per founding member at term 1, its context the
//!   member: raft learns its voters by applying them, and a member that joins
//!   later learns them the same way.

use std::fs::{self, File};
use std::path::Path;

use anyhow::{bail, Context, Result};
use api::etcdserverpb::{Member, WalMetadata};
use prost::Message;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType, HardState};
use wal::Wal;

use crate::ids;

/// A founding member as `--initial-cluster` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundingMember {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
}

/// Takes the member directory's lock (held for the life of a server; offline
/// tools hold it while they work), creating the lock file if needed.
pub fn lock_dir(member_dir: &Path) -> Result<File> {
    let path = member_dir.join("lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "data directory {} is in use by another etcd process (cannot lock {})",
            member_dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// The members `--initial-cluster` names, with their IDs as etcd derives them.
pub fn founding_members(
    initial_cluster: &[(String, Vec<String>)],
    token: &str,
) -> Vec<FoundingMember> {
    initial_cluster
        .iter()
        .map(|(name, urls)| FoundingMember {
            id: ids::member_id(urls, token),
            name: name.clone(),
            peer_urls: urls.clone(),
        })
        .collect()
}

/// This member among the founding ones, checked as etcd checks a bootstrap:
/// it is named in `--initial-cluster` with exactly the URLs it advertises.
pub fn local_member<'a>(
    members: &'a [FoundingMember],
    name: &str,
    advertise_peer_urls: &[String],
) -> Result<&'a FoundingMember> {
    let local = members.iter().find(|m| m.name == name).with_context(|| {
        format!("couldn't find local name \"{name}\" in the initial cluster configuration")
    })?;
    let mut own_urls = advertise_peer_urls.to_vec();
    let mut listed = local.peer_urls.clone();
    own_urls.sort();
    listed.sort();
    if own_urls != listed {
        bail!(
            "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={} (\"{}\"(resolved from {}) != \"{}\"(resolved from {}))",
            name,
            local.peer_urls.join(","),
            advertise_peer_urls.join(","),
            own_urls.join(","),
            advertise_peer_urls.join(","),
            listed.join(","),
            local.peer_urls.join(",")
        );
    }
    Ok(local)
}

/// The founding entries of a new cluster's log: one committed AddNode per
/// member at term 1 (etcd's bootstrap), in `--initial-cluster` order.
pub fn founding_entries(members: &[FoundingMember]) -> Result<(Vec<Entry>, HardState)> {
    let mut entries = Vec::with_capacity(members.len());
    for (i, m) in members.iter().enumerate() {
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::AddNode);
        cc.node_id = m.id;
        cc.context = Member {
            id: m.id,
            name: m.name.clone(),
            peer_ur_ls: m.peer_urls.clone(),
            client_ur_ls: Vec::new(),
            is_learner: false,
        }
        .encode_to_vec()
        .into();
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryConfChange);
        e.term = 1;
        e.index = i as u64 + 1;
        e.data = protobuf::Message::write_to_bytes(&cc)
            .context("encode a founding conf change")?
            .into();
        entries.push(e);
    }
    let hs = HardState {
        term: 1,
        commit: entries.len() as u64,
        ..Default::default()
    };
    Ok((entries, hs))
}

/// Creates the WAL of a founding member: its identity, then the founding
/// entries and hard state.
pub fn create_founding_wal(
    wal_dir: &Path,
    member_id: u64,
    cluster_id: u64,
    entries: &[Entry],
    hs: &HardState,
) -> Result<Wal> {
    let meta = WalMetadata {
        node_id: member_id,
        cluster_id,
    }
    .encode_to_vec();
    let mut wal = Wal::create(wal_dir, &meta)
        .with_context(|| format!("cannot create WAL in {}", wal_dir.display()))?;
    wal.save(Some(hs), entries)
        .context("cannot write the founding entries to the WAL")?;
    Ok(wal)
}
