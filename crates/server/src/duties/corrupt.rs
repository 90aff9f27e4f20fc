//! Corruption checks, as etcd runs them: members compare their HashKV (a
//! hash of the key table up to a revision, see `mvcc::Store::hash_kv`),
//! which must be equal wherever the revision and compaction are equal.
//!
//! - Initial (`--experimental-initial-corrupt-check`): a restarting member
//!   asks every other member for its hash at the member's own current
//!   revision before it serves clients; a different hash at the same
//!   compaction revision stops the member ("found data inconsistency with
//!   peers"). Peers that are behind or compacted past it are skipped.
//! - Periodic (`--experimental-corrupt-check-time`): the leader compares its
//!   hash with every member's at its revision, and raises the cluster-wide
//!   CORRUPT alarm (through raft) naming the member that disagrees — or
//!   itself, when its own hash changed at the same revision — after which
//!   the cluster refuses writes (`alarm::AlarmStore::refusal`).
//!
//! Members answer over the peer port (`Corruption.HashKv`, etcd's
//! /members/hashkv).

use std::sync::Arc;
use std::time::Duration;

use api::etcdserverpb::{
    alarm_request::AlarmAction, AlarmRequest, AlarmType, HashKvResponse, InternalRaftRequest,
};
use api::peerpb::corruption_client::CorruptionClient;
use api::peerpb::PeerHashKvRequest;
use tokio::sync::watch;
use tonic::{Response, Status};

use crate::server::EtcdServer;
use crate::state::hash::hash_kv;
use crate::transport::{Dialer, PROTOCOL_VERSION};

/// How long a member waits for another member's hash.
const PEER_HASH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the start-up check waits for the replayed log to name the other
/// members (a one-member cluster has none and passes).
const MEMBERS_KNOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// One other member's answer.
struct PeerHash {
    id: u64,
    result: Result<HashKvResponse, Status>,
}

/// Asks every member in `peers` (ID, peer URLs) for its HashKV at `rev`, all
/// at once.
async fn peer_hashes(dialer: &Dialer, peers: Vec<(u64, Vec<String>)>, rev: i64) -> Vec<PeerHash> {
    let mut asks = tokio::task::JoinSet::new();
    for (id, urls) in peers {
        let dialer = dialer.clone();
        asks.spawn(async move {
            let mut result = Err(Status::unavailable("no peer URL answered"));
            for url in &urls {
                let ask = async {
                    let channel = dialer.connect(url).await.map_err(Status::unavailable)?;
                    CorruptionClient::new(channel)
                        .hash_kv(PeerHashKvRequest {
                            version: PROTOCOL_VERSION,
                            revision: rev,
                        })
                        .await
                        .map(Response::into_inner)
                };
                result = match tokio::time::timeout(PEER_HASH_TIMEOUT, ask).await {
                    Ok(r) => r,
                    Err(_) => Err(Status::deadline_exceeded("the peer did not answer in time")),
                };
                if result.is_ok() {
                    break;
                }
            }
            PeerHash { id, result }
        });
    }
    let mut out = Vec::new();
    while let Some(answer) = asks.join_next().await {
        if let Ok(answer) = answer {
            out.push(answer);
        }
    }
    out
}

fn other_members(server: &EtcdServer) -> Vec<(u64, Vec<String>)> {
    server
        .cluster()
        .members()
        .into_iter()
        .filter(|m| m.id != server.member_id())
        .map(|m| (m.id, m.peer_ur_ls))
        .collect()
}

fn hex(id: u64) -> String {
    format!("{id:x}")
}

/// The start-up check of a restarting member: an error means this member's
/// data differs from a peer's at the same revision and compaction.
pub async fn check_initial(server: &EtcdServer) -> crate::status::Result<()> {
    tracing::info!(
        local_member_id = %hex(server.member_id()),
        "starting initial corruption check"
    );
    // The members are known once the applier has replayed the log's
    // configuration changes, which it does right after start.
    let deadline = tokio::time::Instant::now() + MEMBERS_KNOWN_TIMEOUT;
    let mut others = other_members(server);
    while others.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        others = other_members(server);
    }
    let mine = hash_kv(server.store().clone(), 0).await?;
    let peers = peer_hashes(server.transport().dialer(), others, mine.current_revision).await;
    let mut mismatches = 0;
    for peer in peers {
        match peer.result {
            Ok(theirs) if theirs.hash != mine.hash => {
                if theirs.compact_revision == mine.compact_revision {
                    tracing::warn!(
                        local_member_id = %hex(server.member_id()),
                        local_member_revision = mine.current_revision,
                        local_member_compact_revision = mine.compact_revision,
                        local_member_hash = mine.hash,
                        remote_peer_id = %hex(peer.id),
                        remote_peer_compact_revision = theirs.compact_revision,
                        remote_peer_hash = theirs.hash,
                        "found different hash values from remote peer"
                    );
                    mismatches += 1;
                } else {
                    tracing::warn!(
                        local_member_id = %hex(server.member_id()),
                        local_member_compact_revision = mine.compact_revision,
                        remote_peer_id = %hex(peer.id),
                        remote_peer_compact_revision = theirs.compact_revision,
                        "found different compact revision values from remote peer"
                    );
                }
            }
            Ok(_) => {}
            Err(e) if e.message() == api::EtcdError::FutureRev.message() => tracing::warn!(
                remote_peer_id = %hex(peer.id),
                error = %e.message(),
                "cannot fetch hash from slow remote peer"
            ),
            Err(e) if e.message() == api::EtcdError::Compacted.message() => tracing::warn!(
                remote_peer_id = %hex(peer.id),
                error = %e.message(),
                "cannot fetch hash from remote peer; local member is behind"
            ),
            Err(e) => tracing::warn!(
                remote_peer_id = %hex(peer.id),
                error = %e.message(),
                "cannot fetch hash from remote peer"
            ),
        }
    }
    if mismatches > 0 {
        crate::status::bail!(
            "{} found data inconsistency with peers",
            hex(server.member_id())
        );
    }
    tracing::info!(
        local_member_id = %hex(server.member_id()),
        "initial corruption checking passed; no corruption"
    );
    Ok(())
}

/// The leader's periodic check, every `every` until `stop`.
pub async fn run_periodic(server: Arc<EtcdServer>, every: Duration, stop: watch::Receiver<bool>) {
    tracing::info!(interval = ?every, "enabled corruption checking");
    // As etcd, the first check comes one interval after start.
    let tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    crate::server::on_ticks_as_leader(server, tick, stop, |server| async move {
        if let Err(e) = check_as_leader(&server).await {
            tracing::warn!(error = %e, "failed to check the members' hashes");
        }
    })
    .await;
}

/// etcd's checkHashKV: compares the leader's hash with every member's.
async fn check_as_leader(server: &Arc<EtcdServer>) -> crate::status::Result<()> {
    let first = hash_kv(server.store().clone(), 0).await?;
    let peers = peer_hashes(
        server.transport().dialer(),
        other_members(server),
        first.current_revision,
    )
    .await;
    let again = hash_kv(server.store().clone(), 0).await?;

    let mut corrupt = None;
    if again.hash != first.hash
        && again.current_revision == first.current_revision
        && again.compact_revision == first.compact_revision
    {
        tracing::warn!(
            leader_compact_revision = again.compact_revision,
            leader_hash = again.hash,
            "found hash mismatch"
        );
        corrupt.get_or_insert(server.member_id());
    }
    let mut checked = 0;
    for peer in peers {
        let Ok(theirs) = peer.result else {
            continue;
        };
        checked += 1;
        let revision = theirs.header.as_ref().map_or(0, |h| h.revision);
        if revision > again.current_revision {
            tracing::warn!(
                leader_revision = again.current_revision,
                follower_revision = revision,
                follower_peer_id = %hex(peer.id),
                "revision from follower must be less than or equal to leader's"
            );
            corrupt.get_or_insert(peer.id);
        }
        if theirs.compact_revision > again.compact_revision {
            tracing::warn!(
                leader_compact_revision = again.compact_revision,
                follower_compact_revision = theirs.compact_revision,
                follower_peer_id = %hex(peer.id),
                "compact revision from follower must be less than or equal to leader's"
            );
            corrupt.get_or_insert(peer.id);
        }
        if theirs.compact_revision == first.compact_revision && theirs.hash != first.hash {
            tracing::warn!(
                leader_compact_revision = first.compact_revision,
                leader_hash = first.hash,
                follower_compact_revision = theirs.compact_revision,
                follower_hash = theirs.hash,
                follower_peer_id = %hex(peer.id),
                "same compact revision then hashes must match"
            );
            corrupt.get_or_insert(peer.id);
        }
    }
    tracing::debug!(
        number_of_peers_checked = checked,
        "finished peer corruption check"
    );
    if let Some(member_id) = corrupt {
        let raise = InternalRaftRequest {
            alarm: Some(AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id,
                alarm: AlarmType::Corrupt as i32,
            }),
            ..Default::default()
        };
        server.propose(raise).await?;
    }
    Ok(())
}
