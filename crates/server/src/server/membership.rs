//! Membership changes with etcd's checks and errors (the Cluster
//! service's verbs, and the peer port's forwarded promotions).
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
//!   leader knows that, so a follower forwards the request to the leader
//!   over the peer port, as etcd does.

use std::time::Duration;

use api::etcdserverpb::{
    InternalRaftRequest, Member, MemberAddRequest, MemberAddResponse, MemberListResponse,
    MemberPromoteResponse, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use api::EtcdError;
use prost::Message;
use raft::eraftpb::{ConfChange, ConfChangeType};

use crate::config::parse_url;
use crate::server::EtcdServer;
use crate::status::Error;
use datadir::ids;

/// How long forwarding a promotion to the leader may take.
const PROMOTE_FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

fn conf_change(kind: ConfChangeType, member: &Member) -> ConfChange {
    let mut cc = ConfChange::default();
    cc.set_change_type(kind);
    cc.node_id = member.id;
    cc.context = member.encode_to_vec().into();
    cc
}

fn check_urls(urls: &[String]) -> Result<(), EtcdError> {
    if urls.is_empty() || urls.iter().any(|u| parse_url(u).is_err()) {
        return Err(EtcdError::MemberBadUrls);
    }
    Ok(())
}

impl EtcdServer {
    /// The members (etcd's MemberList); `linearizable` waits for ReadIndex.
    pub async fn member_list(&self, linearizable: bool) -> Result<MemberListResponse, Error> {
        if linearizable {
            self.read_barrier().await?;
        }
        Ok(MemberListResponse {
            header: Some(self.cluster_header()),
            members: self.cluster.members(),
        })
    }

    /// Adds a member or a learner.
    pub async fn member_add(&self, req: MemberAddRequest) -> Result<MemberAddResponse, Error> {
        check_urls(&req.peer_ur_ls)?;
        if self.cluster.peer_url_in_use(&req.peer_ur_ls, 0) {
            return Err(EtcdError::PeerUrlExist.into());
        }
        if self.cfg.strict_reconfig_check && !req.is_learner && !self.ready_to_add_voter() {
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
        self.propose_conf_change(conf_change(kind, &member)).await?;
        Ok(MemberAddResponse {
            header: Some(self.cluster_header()),
            member: Some(member),
            members: self.cluster.members(),
        })
    }

    /// Removes a member.
    pub async fn member_remove(&self, id: u64) -> Result<MemberRemoveResponse, Error> {
        let member = self.cluster.member(id).ok_or(EtcdError::MemberNotFound)?;
        if self.cfg.strict_reconfig_check && !member.is_learner && !self.may_remove_voter(id) {
            return Err(EtcdError::MemberNotEnoughStarted.into());
        }
        self.propose_conf_change(conf_change(ConfChangeType::RemoveNode, &member))
            .await?;
        Ok(MemberRemoveResponse {
            header: Some(self.cluster_header()),
            members: self.cluster.members(),
        })
    }

    /// Gives a member new peer URLs.
    pub async fn member_update(
        &self,
        req: MemberUpdateRequest,
    ) -> Result<MemberUpdateResponse, Error> {
        check_urls(&req.peer_ur_ls)?;
        if self.cluster.member(req.id).is_none() {
            return Err(EtcdError::MemberNotFound.into());
        }
        self.propose(InternalRaftRequest {
            member_update: Some(req),
            ..Default::default()
        })
        .await?;
        Ok(MemberUpdateResponse {
            header: Some(self.cluster_header()),
            members: self.cluster.members(),
        })
    }

    /// Promotes a learner that has caught up; a follower forwards the
    /// request to the leader, whose answer is the answer. Counted where it
    /// was decided, as etcd counts it: a success, or a failure by its reason
    /// (a forwarded one counts on the leader).
    pub async fn member_promote(&self, id: u64) -> Result<MemberPromoteResponse, Error> {
        match self.promote_here(id).await {
            Ok(resp) => {
                self.metrics.learner_promote_successes.inc();
                Ok(resp)
            }
            Err(EtcdError::NotLeader) => {
                let channel = self.dial_leader().await?;
                crate::transport::forward_promote(channel, id, PROMOTE_FORWARD_TIMEOUT)
                    .await
                    .map_err(Error::Forwarded)
            }
            Err(e) => {
                self.metrics
                    .learner_promote_failures
                    .with_label_values(&[e.message()])
                    .inc();
                Err(e.into())
            }
        }
    }

    /// The promotion as this member decides it; NotLeader when only the
    /// leader can.
    async fn promote_here(&self, id: u64) -> Result<MemberPromoteResponse, EtcdError> {
        let member = self.cluster.member(id).ok_or(EtcdError::MemberNotFound)?;
        if !member.is_learner {
            return Err(EtcdError::MemberNotLearner);
        }
        if !self.learner_ready(id).await? {
            return Err(EtcdError::LearnerNotReady);
        }
        if self.cfg.strict_reconfig_check && !self.ready_to_add_voter() {
            return Err(EtcdError::MemberNotEnoughStarted);
        }
        let promoted = Member {
            is_learner: false,
            ..member
        };
        self.propose_conf_change(conf_change(ConfChangeType::AddNode, &promoted))
            .await?;
        Ok(MemberPromoteResponse {
            header: Some(self.cluster_header()),
            members: self.cluster.members(),
        })
    }

    /// Voting members, and how many of them have started (published a name).
    fn voters_started(&self, except: Option<u64>) -> (usize, usize) {
        let voters: Vec<Member> = self
            .cluster
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
        let connected = self.transport.connected_peers();
        if id != self.member_id && !connected.contains(&id) {
            return true; // a member that is down is not part of the active quorum
        }
        let all: Vec<u64> = self
            .cluster
            .members()
            .into_iter()
            .filter(|m| !m.is_learner)
            .map(|m| m.id)
            .collect();
        let active = all
            .iter()
            .filter(|m| **m == self.member_id || connected.contains(m))
            .count();
        active > all.len().saturating_sub(1) / 2 + 1
    }
}
