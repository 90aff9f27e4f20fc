//! Cluster metadata the applier maintains: the members (from conf-change
//! entries, with the attributes each publishes through raft after start),
//! the IDs of removed members, the cluster version and the downgrade job
//! (`version.rs` holds the rules for the last two).
//!
//! All of it changes only by applying committed entries, so every member
//! holds the same view at the same index. It is captured in the data of each
//! raft snapshot ([`ClusterSnapshot`]) and restored from it; conf changes
//! after the snapshot are re-applied on restart (idempotently).

use std::collections::BTreeSet;
use std::sync::RwLock;

use api::etcdserverpb::{
    ClusterDowngrade, ClusterMemberAttrSetRequest, ClusterSnapshot, ClusterVersionSetRequest,
    DowngradeInfoSetRequest, Member, MemberUpdateRequest,
};
use api::EtcdError;
use prost::Message;
use raft::eraftpb::{ConfChange, ConfChangeType};

use crate::version::{check_server_version, DowngradeInfo, MajorMinor};

/// The etcd API version this server speaks, reported in Status and /version.
pub const SERVER_VERSION: &str = api::ETCD_VERSION;
/// The cluster version it proposes (major.minor of the lowest member version).
pub const CLUSTER_VERSION: &str = "3.6.0";
/// Learners a cluster may have at once (etcd 3.4-3.6: one).
const LEARNERS_MAX: usize = 1;
/// Format version of [`ClusterSnapshot`]. Additive fields (the downgrade
/// job) keep it: data without them reads as their defaults, and an older
/// build ignores them.
const CLUSTER_SNAPSHOT_VERSION: u32 = 1;

#[derive(Default)]
struct State {
    /// Sorted by ID, as etcd lists members.
    members: Vec<Member>,
    removed: BTreeSet<u64>,
    version: Option<String>,
    /// Server version each member published.
    member_versions: std::collections::BTreeMap<u64, String>,
    downgrade: DowngradeInfo,
}

pub struct Cluster {
    pub id: u64,
    pub local_id: u64,
    state: RwLock<State>,
}

impl Cluster {
    pub fn new(id: u64, local_id: u64) -> Self {
        Cluster {
            id,
            local_id,
            state: RwLock::new(State::default()),
        }
    }

    /// Restores the state captured in a raft snapshot's data.
    pub fn restore(&self, data: &[u8]) -> Result<(), String> {
        let snap = ClusterSnapshot::decode(data)
            .map_err(|e| format!("the snapshot's cluster data is unreadable: {e}"))?;
        if snap.version != CLUSTER_SNAPSHOT_VERSION {
            return Err(format!(
                "the snapshot's cluster data has format version {}, this build reads {}",
                snap.version, CLUSTER_SNAPSHOT_VERSION
            ));
        }
        let mut s = self.write();
        s.members = snap.members;
        s.members.sort_by_key(|m| m.id);
        s.removed = snap.removed.into_iter().collect();
        s.version = Some(snap.cluster_version).filter(|v| !v.is_empty());
        s.member_versions = snap.member_versions.into_iter().collect();
        s.downgrade = snap
            .downgrade
            .map(|d| DowngradeInfo {
                enabled: d.enabled,
                target_version: d.target_version,
            })
            .unwrap_or_default();
        Ok(())
    }

    /// The cluster data of a raft snapshot for a view built elsewhere (an
    /// etcd data dir being converted): members, removed IDs and version.
    pub fn snapshot_data(
        members: Vec<Member>,
        removed: Vec<u64>,
        cluster_version: Option<String>,
    ) -> Vec<u8> {
        let cluster = Cluster::new(0, 0);
        {
            let mut s = cluster.write();
            s.members = members;
            s.members.sort_by_key(|m| m.id);
            s.removed = removed.into_iter().collect();
            s.version = cluster_version.filter(|v| !v.is_empty());
        }
        cluster.snapshot()
    }

    /// The state to put in a raft snapshot taken at the applied index.
    pub fn snapshot(&self) -> Vec<u8> {
        let s = self.read();
        ClusterSnapshot {
            version: CLUSTER_SNAPSHOT_VERSION,
            members: s.members.clone(),
            removed: s.removed.iter().copied().collect(),
            cluster_version: s.version.clone().unwrap_or_default(),
            member_versions: s
                .member_versions
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
            // Left out while no job ever ran, so such data stays byte for
            // byte what builds before downgrades wrote.
            downgrade: (s.downgrade != DowngradeInfo::default()).then(|| ClusterDowngrade {
                enabled: s.downgrade.enabled,
                target_version: s.downgrade.target_version.clone(),
            }),
        }
        .encode_to_vec()
    }

    pub fn members(&self) -> Vec<Member> {
        self.read().members.clone()
    }

    pub fn is_removed(&self, id: u64) -> bool {
        self.read().removed.contains(&id)
    }

    pub fn removed(&self) -> Vec<u64> {
        self.read().removed.iter().copied().collect()
    }

    pub fn member(&self, id: u64) -> Option<Member> {
        self.read().members.iter().find(|m| m.id == id).cloned()
    }

    pub fn is_learner(&self, id: u64) -> bool {
        self.read()
            .members
            .iter()
            .any(|m| m.id == id && m.is_learner)
    }

    /// Whether any of `urls` is a peer URL of a member other than `except`.
    pub fn peer_url_in_use(&self, urls: &[String], except: u64) -> bool {
        self.read()
            .members
            .iter()
            .filter(|m| m.id != except)
            .any(|m| m.peer_ur_ls.iter().any(|u| urls.contains(u)))
    }

    /// Whether a committed conf change may be applied, and etcd's error when
    /// not. Decided from the cluster view alone, so every member decides alike.
    pub fn validate_conf_change(&self, cc: &ConfChange) -> Result<(), EtcdError> {
        let s = self.read();
        if s.removed.contains(&cc.node_id) {
            return Err(EtcdError::MemberNotFound);
        }
        let existing = s.members.iter().find(|m| m.id == cc.node_id);
        match cc.get_change_type() {
            ConfChangeType::AddNode => match existing {
                Some(m) if m.is_learner => Ok(()), // promotion
                Some(_) => Err(EtcdError::MemberExist),
                None => Self::validate_new(&s, cc),
            },
            ConfChangeType::AddLearnerNode => match existing {
                Some(_) => Err(EtcdError::MemberExist),
                None if s.members.iter().filter(|m| m.is_learner).count() >= LEARNERS_MAX => {
                    Err(EtcdError::TooManyLearners)
                }
                None => Self::validate_new(&s, cc),
            },
            ConfChangeType::RemoveNode => existing.map(|_| ()).ok_or(EtcdError::MemberNotFound),
        }
    }

    fn validate_new(s: &State, cc: &ConfChange) -> Result<(), EtcdError> {
        let m = Member::decode(&cc.context[..]).map_err(|_| EtcdError::MemberBadUrls)?;
        if s.members
            .iter()
            .any(|other| other.peer_ur_ls.iter().any(|u| m.peer_ur_ls.contains(u)))
        {
            return Err(EtcdError::PeerUrlExist);
        }
        Ok(())
    }

    /// Applies a committed MemberUpdate (new peer URLs), with etcd's checks.
    pub fn update_member(&self, id: u64, peer_urls: &[String]) -> Result<(), EtcdError> {
        if self.peer_url_in_use(peer_urls, id) {
            return Err(EtcdError::PeerUrlExist);
        }
        let mut s = self.write();
        let m = s
            .members
            .iter_mut()
            .find(|m| m.id == id)
            .ok_or(EtcdError::MemberNotFound)?;
        m.peer_ur_ls = peer_urls.to_vec();
        Ok(())
    }

    /// Applies a committed conf change. Its context is the member (etcd puts
    /// the member in the context too). Idempotent, so replay is safe.
    pub fn apply_conf_change(&self, cc: &ConfChange) {
        let member = Member::decode(&cc.context[..]).ok();
        let mut s = self.write();
        match cc.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                let learner = cc.get_change_type() == ConfChangeType::AddLearnerNode;
                if let Some(existing) = s.members.iter_mut().find(|m| m.id == cc.node_id) {
                    // Adding a voter that is a learner promotes it.
                    existing.is_learner = learner;
                } else if let Some(mut m) = member {
                    m.id = cc.node_id;
                    m.is_learner = learner;
                    s.members.push(m);
                    s.members.sort_by_key(|m| m.id);
                } else {
                    tracing::warn!(member_id = %format!("{:x}", cc.node_id), "conf change without a member in its context");
                }
            }
            ConfChangeType::RemoveNode => {
                s.members.retain(|m| m.id != cc.node_id);
                s.removed.insert(cc.node_id);
            }
        }
    }

    /// Applies a member's published name and client URLs.
    pub fn set_member_attributes(&self, r: &ClusterMemberAttrSetRequest) {
        let Some(attrs) = &r.member_attributes else {
            return;
        };
        {
            let mut s = self.write();
            if let Some(m) = s.members.iter_mut().find(|m| m.id == r.member_id) {
                m.name = attrs.name.clone();
                m.client_ur_ls = attrs.client_urls.clone();
            }
            if !attrs.server_version.is_empty() {
                s.member_versions
                    .insert(r.member_id, attrs.server_version.clone());
            }
        }
        if r.member_id == self.local_id {
            tracing::info!(
                local_member_id = %format!("{:x}", self.local_id),
                local_member_attributes = %format!("{{Name:{} ClientURLs:[{}]}}", attrs.name, attrs.client_urls.join(" ")),
                cluster_id = %format!("{:x}", self.id),
                "published {{Name:{} ClientURLs:[{}]}} to cluster {:x}",
                attrs.name,
                attrs.client_urls.join(" "),
                self.id
            );
        }
    }

    /// The lowest server version the members published, as major.minor
    /// (etcd's minimal server version). None while any member has not
    /// published a version that parses.
    pub fn lowest_member_version(&self) -> Option<MajorMinor> {
        let versions = self.member_versions();
        let mut lowest: Option<MajorMinor> = None;
        for v in versions {
            let v = v?;
            lowest = Some(lowest.map_or(v, |l| l.min(v)));
        }
        lowest
    }

    /// The published server version (major.minor) of every member, in ID order.
    pub fn member_versions(&self) -> Vec<Option<MajorMinor>> {
        let s = self.read();
        s.members
            .iter()
            .map(|m| s.member_versions.get(&m.id).and_then(|v| MajorMinor::of(v)))
            .collect()
    }

    /// The cluster version as etcd writes it (`3.6.0`); None before the leader set one.
    pub fn version(&self) -> Option<String> {
        self.read().version.clone()
    }

    /// The cluster version as major.minor.
    pub fn cluster_version(&self) -> Option<MajorMinor> {
        self.read().version.as_deref().and_then(MajorMinor::of)
    }

    /// The downgrade job (disabled with an empty target when none runs).
    pub fn downgrade_info(&self) -> DowngradeInfo {
        self.read().downgrade.clone()
    }

    /// Applies a committed DowngradeInfoSetRequest: a job starts with its
    /// target, a cancel clears both (etcd's applier). Idempotent.
    pub fn set_downgrade_info(&self, r: &DowngradeInfoSetRequest) {
        let job = if r.enabled {
            DowngradeInfo {
                enabled: true,
                target_version: r.ver.clone(),
            }
        } else {
            DowngradeInfo::default()
        };
        self.write().downgrade = job;
    }

    /// Whether this member's own server version may serve `cluster_version`
    /// under the current downgrade job; Err is etcd's refusal
    /// (`version::check_server_version`).
    pub fn check_local_version(&self, cluster_version: Option<&str>) -> Result<(), String> {
        let server = MajorMinor::of(SERVER_VERSION).ok_or_else(|| {
            format!("this build's server version {SERVER_VERSION} does not parse")
        })?;
        let cluster = cluster_version.and_then(MajorMinor::of);
        check_server_version(server, cluster, &self.downgrade_info()).map_err(|msg| {
            let determined = cluster.map_or_else(String::new, MajorMinor::short);
            tracing::error!(
                current_server_version = SERVER_VERSION,
                determined_cluster_version = %determined,
                "{msg}"
            );
            format!("{msg} (server version {SERVER_VERSION}, cluster version {determined})")
        })
    }

    /// Applies a committed request that changes the membership rather than
    /// the keys, as the applier and the conversion of etcd's log both do.
    /// The outer `Err` is fatal (a cluster version newer than this member:
    /// it must stop); the inner one a refusal answered to the client, which
    /// changes nothing.
    pub fn apply_request(
        &self,
        req: MembershipRequest<'_>,
    ) -> Result<Result<(), EtcdError>, String> {
        match req {
            MembershipRequest::Attributes(r) => self.set_member_attributes(r),
            MembershipRequest::Version(r) => self.set_version(&r.ver)?,
            MembershipRequest::Downgrade(r) => self.set_downgrade_info(r),
            MembershipRequest::MemberUpdate(r) => {
                return Ok(self.update_member(r.id, &r.peer_ur_ls))
            }
        }
        Ok(Ok(()))
    }

    /// Applies a committed cluster version. Err when this member's server is
    /// older than it (etcd stops such a member: it must not serve a version
    /// it does not implement).
    pub fn set_version(&self, ver: &str) -> Result<(), String> {
        self.check_local_version(Some(ver))?;
        let mut s = self.write();
        match s.version.as_deref() {
            None => tracing::info!(
                cluster_id = %format!("{:x}", self.id),
                local_member_id = %format!("{:x}", self.local_id),
                cluster_version = ver,
                "set initial cluster version"
            ),
            Some(old) if old != ver => tracing::info!(
                cluster_id = %format!("{:x}", self.id),
                local_member_id = %format!("{:x}", self.local_id),
                from = old,
                to = ver,
                "updated the cluster version from {old} to {ver}"
            ),
            Some(_) => return Ok(()),
        }
        // etcd's storage version follows the cluster version on every
        // member, with this line when it reaches a downgrade target.
        if s.version.is_some() {
            let target = s.downgrade.target();
            if target.is_some() && target == MajorMinor::of(ver) {
                tracing::info!(
                    target_version = %s.downgrade.target_version,
                    server_version = SERVER_VERSION,
                    "The server is ready to downgrade"
                );
            }
        }
        let major_minor = ver.rsplit_once('.').map_or(ver, |(mm, _)| mm);
        tracing::info!(
            cluster_version = major_minor,
            "enabled capabilities for version {major_minor}"
        );
        s.version = Some(ver.to_string());
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// A raft request that changes the membership: the fields of
/// `InternalRaftRequest` the membership owns, at most one of them set.
#[derive(Clone, Copy, Debug)]
pub enum MembershipRequest<'a> {
    Attributes(&'a ClusterMemberAttrSetRequest),
    Version(&'a ClusterVersionSetRequest),
    Downgrade(&'a DowngradeInfoSetRequest),
    MemberUpdate(&'a MemberUpdateRequest),
}

impl<'a> MembershipRequest<'a> {
    /// The membership request among a request's fields, if it is one.
    pub fn pick(
        attributes: Option<&'a ClusterMemberAttrSetRequest>,
        version: Option<&'a ClusterVersionSetRequest>,
        downgrade: Option<&'a DowngradeInfoSetRequest>,
        member_update: Option<&'a MemberUpdateRequest>,
    ) -> Option<Self> {
        attributes
            .map(Self::Attributes)
            .or(version.map(Self::Version))
            .or(downgrade.map(Self::Downgrade))
            .or(member_update.map(Self::MemberUpdate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(id: u64, name: &str, learner: bool) -> ConfChange {
        let mut cc = ConfChange::default();
        cc.set_change_type(if learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        });
        cc.node_id = id;
        cc.context = Member {
            id,
            name: name.into(),
            peer_ur_ls: vec![format!("http://{name}:2380")],
            ..Default::default()
        }
        .encode_to_vec()
        .into();
        cc
    }

    #[test]
    fn conf_changes_add_promote_remove_and_replay_idempotently() {
        let c = Cluster::new(1, 10);
        c.apply_conf_change(&add(20, "b", false));
        c.apply_conf_change(&add(10, "a", false));
        c.apply_conf_change(&add(30, "c", true));
        c.apply_conf_change(&add(10, "a", false)); // replayed
        let ids: Vec<u64> = c.members().iter().map(|m| m.id).collect();
        assert_eq!(ids, [10, 20, 30]);
        assert!(c.members()[2].is_learner);
        c.apply_conf_change(&add(30, "c", false)); // promote
        assert!(!c.members()[2].is_learner);
        let mut rm = ConfChange::default();
        rm.set_change_type(ConfChangeType::RemoveNode);
        rm.node_id = 20;
        c.apply_conf_change(&rm);
        assert_eq!(c.members().len(), 2);
        assert!(c.is_removed(20));
    }

    #[test]
    fn cluster_version_is_the_lowest_published_member_version() {
        let c = Cluster::new(1, 10);
        c.apply_conf_change(&add(10, "a", false));
        c.apply_conf_change(&add(20, "b", false));
        let publish = |id: u64, v: &str| {
            c.set_member_attributes(&ClusterMemberAttrSetRequest {
                member_id: id,
                member_attributes: Some(api::etcdserverpb::Attributes {
                    name: format!("m{id}"),
                    client_urls: vec![],
                    server_version: v.into(),
                }),
            })
        };
        publish(10, "3.6.2");
        assert_eq!(c.lowest_member_version(), None, "b has not published");
        publish(20, "3.5.9");
        let mm = |major, minor| Some(MajorMinor { major, minor });
        assert_eq!(c.lowest_member_version(), mm(3, 5));
        publish(20, "3.6.0");
        assert_eq!(c.lowest_member_version(), mm(3, 6));
        assert_eq!(c.member_versions(), [mm(3, 6), mm(3, 6)]);
    }

    #[test]
    fn snapshot_round_trip() {
        let c = Cluster::new(1, 10);
        c.apply_conf_change(&add(10, "a", false));
        c.set_version("3.6.0").unwrap();
        let d = Cluster::new(1, 10);
        d.restore(&c.snapshot()).unwrap();
        assert_eq!(d.members(), c.members());
        assert_eq!(d.version().as_deref(), Some("3.6.0"));
        assert_eq!(d.downgrade_info(), DowngradeInfo::default());
    }

    fn downgrade(enabled: bool, ver: &str) -> DowngradeInfoSetRequest {
        DowngradeInfoSetRequest {
            enabled,
            ver: ver.into(),
        }
    }

    #[test]
    fn downgrade_jobs_start_cancel_and_travel_in_snapshots() {
        let c = Cluster::new(1, 10);
        c.apply_conf_change(&add(10, "a", false));
        c.set_version("3.6.0").unwrap();
        c.set_downgrade_info(&downgrade(true, "3.5.0"));
        let job = DowngradeInfo {
            enabled: true,
            target_version: "3.5.0".into(),
        };
        assert_eq!(c.downgrade_info(), job);
        c.set_downgrade_info(&downgrade(true, "3.5.0")); // replayed
        assert_eq!(c.downgrade_info(), job);
        // The monitor lowers the version to the target.
        c.set_version("3.5.0").unwrap();
        let d = Cluster::new(1, 10);
        d.restore(&c.snapshot()).unwrap();
        assert_eq!(d.downgrade_info(), job);
        assert_eq!(d.version().as_deref(), Some("3.5.0"));
        assert_eq!(d.cluster_version(), Some(MajorMinor { major: 3, minor: 5 }));
        // A cancel clears the target too.
        d.set_downgrade_info(&downgrade(false, ""));
        assert_eq!(d.downgrade_info(), DowngradeInfo::default());
        let e = Cluster::new(1, 10);
        e.restore(&d.snapshot()).unwrap();
        assert_eq!(e.downgrade_info(), DowngradeInfo::default());
    }

    #[test]
    fn data_written_before_downgrades_existed_reads_as_no_job() {
        // ClusterSnapshot as builds without field 6 encode it.
        let old = ClusterSnapshot {
            version: 1,
            members: vec![],
            removed: vec![7],
            cluster_version: "3.6.0".into(),
            member_versions: Default::default(),
            downgrade: None,
        }
        .encode_to_vec();
        let c = Cluster::new(1, 10);
        c.restore(&old).unwrap();
        assert_eq!(c.downgrade_info(), DowngradeInfo::default());
        assert!(c.is_removed(7));
        // Without a job, the encoding is still the old one, byte for byte.
        assert_eq!(c.snapshot(), old);
    }

    #[test]
    fn a_cluster_version_above_this_server_is_refused() {
        let c = Cluster::new(1, 10);
        c.set_version("3.6.0").unwrap();
        let err = c.set_version("3.7.0").unwrap_err();
        assert!(
            err.starts_with(
                "invalid downgrade; server version is lower than determined cluster version"
            ),
            "{err}"
        );
        assert_eq!(c.version().as_deref(), Some("3.6.0"));
        assert!(c.check_local_version(Some("3.5.0")).is_ok());
        assert!(c.check_local_version(None).is_ok());
    }
}
