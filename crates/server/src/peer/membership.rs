//! Membership on the peer port: a member answers who is in the cluster
//! (asked by members joining it, `transport::discover`) and, as leader,
//! the promotions followers forward to it.

use std::sync::Arc;

use api::etcdserverpb::MemberPromoteResponse;
use api::peerpb::membership_server::Membership;
use api::peerpb::{MembersRequest, MembersResponse, PromoteRequest};
use tonic::{Request, Response, Status};

use super::{checked, running, Running};
use datadir::membership::Cluster;

pub struct MembershipService {
    cluster_id: u64,
    cluster: Arc<Cluster>,
    server: Running,
}

impl MembershipService {
    pub fn new(cluster_id: u64, cluster: Arc<Cluster>, server: Running) -> Self {
        MembershipService {
            cluster_id,
            cluster,
            server,
        }
    }
}

#[tonic::async_trait]
impl Membership for MembershipService {
    async fn members(
        &self,
        request: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        checked(request.get_ref().version)?;
        Ok(Response::new(MembersResponse {
            cluster_id: self.cluster_id,
            members: self.cluster.members(),
            removed: self.cluster.removed(),
        }))
    }

    async fn promote(
        &self,
        request: Request<PromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let request = request.into_inner();
        let server = running(&self.server, request.version)?;
        Ok(Response::new(server.member_promote(request.id).await?))
    }
}
