//! Cluster metadata the applier maintains: members (with the attributes each
//! publishes through raft after start) and the cluster version.

use std::sync::RwLock;

use api::etcdserverpb::{ClusterMemberAttrSetRequest, Member};

use crate::bootstrap::MemberInfo;

/// The etcd API version this server speaks, reported in Status and /version.
pub const SERVER_VERSION: &str = "3.6.0";
/// The cluster version it proposes (major.minor of the lowest member version).
pub const CLUSTER_VERSION: &str = "3.6.0";

pub struct Cluster {
    pub id: u64,
    pub local_id: u64,
    members: RwLock<Vec<MemberInfo>>,
    version: RwLock<Option<String>>,
}

impl Cluster {
    pub fn new(id: u64, local_id: u64, members: Vec<MemberInfo>) -> Self {
        Cluster {
            id,
            local_id,
            members: RwLock::new(members),
            version: RwLock::new(None),
        }
    }

    pub fn members(&self) -> Vec<Member> {
        let members = self.members.read().unwrap_or_else(|p| p.into_inner());
        members
            .iter()
            .map(|m| Member {
                id: m.id,
                name: m.name.clone(),
                peer_ur_ls: m.peer_urls.clone(),
                client_ur_ls: m.client_urls.clone(),
                is_learner: false,
            })
            .collect()
    }

    /// Applies a member's published name and client URLs.
    pub fn set_member_attributes(&self, r: &ClusterMemberAttrSetRequest) {
        let Some(attrs) = &r.member_attributes else {
            return;
        };
        let mut members = self.members.write().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = members.iter_mut().find(|m| m.id == r.member_id) {
            m.name = attrs.name.clone();
            m.client_urls = attrs.client_urls.clone();
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

    pub fn version(&self) -> Option<String> {
        self.version
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_version(&self, ver: &str) {
        let mut v = self.version.write().unwrap_or_else(|p| p.into_inner());
        match v.as_deref() {
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
            Some(_) => return,
        }
        let major_minor = ver.rsplit_once('.').map_or(ver, |(mm, _)| mm);
        tracing::info!(
            cluster_version = major_minor,
            "enabled capabilities for version {major_minor}"
        );
        *v = Some(ver.to_string());
    }
}
