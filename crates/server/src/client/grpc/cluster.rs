//! The Cluster service: membership changes with etcd's checks and errors.
//!
//! - Add, remove and promote are raft conf changes whose context is the
//!   member; update (new peer URLs) is a normal entry (raft-rs has no
//!   `UpdateNode`). Every change is validated again when applied, from the
//!   cluster view alone, so all members decide alike.
//! - `--strict-reconfig-check` (on by default, as in etcd): a
//!   voter may be added or promoted only while enough members have started
//!   (published their name), and a voter may be removed only if the members
//!   still connected keep a quorum.
//! - Promotion needs the learner's log at 90% of the leader's; only the
//!   leader knows that, so a follower forwards the request to the leader's
//!   client URL, as etcd forwards it over the peer port.

use std::sync::Arc;
use std::time::Duration;

use api::etcdserverpb::cluster_server::Cluster;
use api::etcdserverpb::*;
use api::EtcdError;
use prost::Message;
use raft::eraftpb::{ConfChange, ConfChangeType};
use tonic::{Request, Response, Status};

use crate::config::parse_url;
use crate::server::EtcdServer;
use datadir::ids;

/// How long forwarding a promotion to the leader may take.
const PROMOTE_FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

pub struct ClusterService {
    server: Arc<EtcdServer>,
}

impl ClusterService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        ClusterService { server }
    }

    fn members(&self) -> Vec<Member> {
        self.server.cluster.members()
    }

    /// Voting members, and how many of them have started (published a name).
    fn voters_started(&self, except: Option<u64>) -> (usize, usize) {
        let voters: Vec<Member> = self
            .members()
            .into_iter()
            .filter(|m| !m.is_learner && Some(m.id) != except)
            .collect();
        let started = voters.iter().filter(|m| !m.name.is_empty()).count();
        (voters.len(), started)
    }

    /// etcd's IsReadyToAddVotingMember: after adding one voter, the started
    /// members still form a quorum (a lone member may always add a second).
    fn ready_to_add_voter(&self) -> bool {
        let (voters, started) = self.voters_started(None);
        let members = voters + 1;
        (started == 1 && members == 2) || started > members / 2
    }

    /// etcd's mayRemoveMember: removing a voter must leave a started quorum,
    /// and the members connected right now must keep a quorum without it.
    fn may_remove_voter(&self, id: u64) -> bool {
        let (voters, started) = self.voters_started(Some(id));
        if started < voters / 2 + 1 {
            return false;
        }
        let connected = self.server.transport.connected_peers();
        if id != self.server.member_id && !connected.contains(&id) {
            return true; // a member that is down is not part of the active quorum
        }
        let all: Vec<u64> = self
            .members()
            .into_iter()
            .filter(|m| !m.is_learner)
            .map(|m| m.id)
            .collect();
        let active = all
            .iter()
            .filter(|m| **m == self.server.member_id || connected.contains(m))
            .count();
        active > all.len().saturating_sub(1) / 2 + 1
    }

    fn check_urls(urls: &[String]) -> Result<(), Status> {
        if urls.is_empty() || urls.iter().any(|u| parse_url(u).is_err()) {
            return Err(EtcdError::MemberBadUrls.into());
        }
        Ok(())
    }

    /// A follower asks the leader to promote, over the peer port (as etcd does).
    async fn forward_promote(&self, id: u64) -> Result<MemberPromoteResponse, Status> {
        let channel = self.server.dial_leader().await?;
        super::membership::forward_promote(channel, id, PROMOTE_FORWARD_TIMEOUT).await
    }
}

fn conf_change(kind: ConfChangeType, member: &Member) -> ConfChange {
    let mut cc = ConfChange::default();
    cc.set_change_type(kind);
    cc.node_id = member.id;
    cc.context = member.encode_to_vec().into();
    cc
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.get_ref().linearizable {
            self.server.read_barrier().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: Some(self.server.cluster_header()),
            members: self.members(),
        }))
    }

    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let req = request.into_inner();
        Self::check_urls(&req.peer_ur_ls)?;
        if self.server.cluster.peer_url_in_use(&req.peer_ur_ls, 0) {
            return Err(EtcdError::PeerUrlExist.into());
        }
        if self.server.cfg.strict_reconfig_check && !req.is_learner && !self.ready_to_add_voter() {
            return Err(EtcdError::MemberNotEnoughStarted.into());
        }
        let now_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let member = Member {
            id: ids::member_id_at(&req.peer_ur_ls, "", now_secs),
            name: String::new(),
            peer_ur_ls: req.peer_ur_ls.clone(),
            client_ur_ls: Vec::new(),
            is_learner: req.is_learner,
        };
        let kind = if req.is_learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        };
        self.server
            .propose_conf_change(conf_change(kind, &member))
            .await?;
        Ok(Response::new(MemberAddResponse {
            header: Some(self.server.cluster_header()),
            member: Some(member),
            members: self.members(),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let id = request.into_inner().id;
        let member = self
            .server
            .cluster
            .member(id)
            .ok_or(EtcdError::MemberNotFound)?;
        if self.server.cfg.strict_reconfig_check && !member.is_learner && !self.may_remove_voter(id)
        {
            return Err(EtcdError::MemberNotEnoughStarted.into());
        }
        self.server
            .propose_conf_change(conf_change(ConfChangeType::RemoveNode, &member))
            .await?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(self.server.cluster_header()),
            members: self.members(),
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let req = request.into_inner();
        Self::check_urls(&req.peer_ur_ls)?;
        if self.server.cluster.member(req.id).is_none() {
            return Err(EtcdError::MemberNotFound.into());
        }
        self.server
            .propose(InternalRaftRequest {
                member_update: Some(req),
                ..Default::default()
            })
            .await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(self.server.cluster_header()),
            members: self.members(),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let id = request.into_inner().id;
        let member = self
            .server
            .cluster
            .member(id)
            .ok_or(EtcdError::MemberNotFound)?;
        if !member.is_learner {
            return Err(EtcdError::MemberNotLearner.into());
        }
        match self.server.learner_ready(id).await {
            Ok(true) => {}
            Ok(false) => return Err(EtcdError::LearnerNotReady.into()),
            Err(EtcdError::NotLeader) => return self.forward_promote(id).await.map(Response::new),
            Err(e) => return Err(e.into()),
        }
        if self.server.cfg.strict_reconfig_check && !self.ready_to_add_voter() {
            return Err(EtcdError::MemberNotEnoughStarted.into());
        }
        let promoted = Member {
            is_learner: false,
            ..member
        };
        self.server
            .propose_conf_change(conf_change(ConfChangeType::AddNode, &promoted))
            .await?;
        // Counted where the promotion was decided, as etcd counts it (a
        // forwarded one counts on the leader).
        self.server.metrics.learner_promote_successes.inc();
        Ok(Response::new(MemberPromoteResponse {
            header: Some(self.server.cluster_header()),
            members: self.members(),
        }))
    }
}
