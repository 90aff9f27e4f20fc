//! What a member reports about itself at one moment: the Status RPC and the
//! `/metrics` scrape read this snapshot instead of reaching into the
//! server's parts.

use api::etcdserverpb::AlarmMember;
use datadir::version::DowngradeInfo;

use crate::server::EtcdServer;

/// One member's state, read at once.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    /// This member's ID.
    pub member_id: u64,
    /// The cluster's ID.
    pub cluster_id: u64,
    /// The leader as this member knows it (0: none).
    pub leader: u64,
    /// Raft's term.
    pub term: u64,
    /// The highest log index raft knows committed.
    pub commit_index: u64,
    /// The highest log index this member has applied.
    pub applied_index: u64,
    /// Whether this member is a learner (no vote).
    pub is_learner: bool,
    /// The backend file's size, and the part of it in use.
    pub db_size_bytes: u64,
    pub db_size_in_use_bytes: u64,
    /// The key store's current revision.
    pub revision: i64,
    /// The revision of the last compaction.
    pub compact_revision: i64,
    /// Revisions removed by compactions since the member started.
    pub compacted_revisions_total: u64,
    /// Keys alive at the current revision.
    pub keys: usize,
    /// Watchers of every stream.
    pub watchers: usize,
    /// The cluster version, once the leader has set it.
    pub cluster_version: Option<String>,
    /// The storage version the backend records (3.6 and later).
    pub storage_version: Option<String>,
    /// The downgrade job, if one runs.
    pub downgrade: DowngradeInfo,
    /// The active alarms, cluster-wide.
    pub alarms: Vec<AlarmMember>,
    /// The other members the transport knows, and whether each is connected.
    pub peers: Vec<(u64, bool)>,
}

impl EtcdServer {
    /// This member's state now.
    pub fn status(&self) -> MemberStatus {
        MemberStatus {
            member_id: self.member_id,
            cluster_id: self.cluster.id,
            leader: self.raft_status.leader(),
            term: self.raft_status.term(),
            commit_index: self.raft_status.commit_index(),
            applied_index: self.applied_index(),
            is_learner: self.is_learner(),
            db_size_bytes: self.store.db_size_bytes(),
            db_size_in_use_bytes: self.store.db_size_in_use_bytes(),
            revision: self.store.current_revision(),
            compact_revision: self.store.compact_revision(),
            compacted_revisions_total: self.store.compacted_revisions_total(),
            keys: self.store.live_keys(),
            watchers: self.watch_hub.len(),
            cluster_version: self.cluster.version(),
            storage_version: self.store.storage_version(),
            downgrade: self.cluster.downgrade_info(),
            alarms: self.alarms.active(),
            peers: self.transport.peer_states(),
        }
    }
}
