//! The Cluster service: membership changes, answered by the server's
//! membership verbs (`server::membership`).

use std::sync::Arc;

use api::etcdserverpb::cluster_server::Cluster;
use api::etcdserverpb::*;
use tonic::{Request, Response, Status};

use crate::server::EtcdServer;

pub struct ClusterService {
    server: Arc<EtcdServer>,
}

impl ClusterService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        ClusterService { server }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let linearizable = request.get_ref().linearizable;
        Ok(Response::new(self.server.member_list(linearizable).await?))
    }

    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let req = request.into_inner();
        Ok(Response::new(self.server.member_add(req).await?))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let id = request.into_inner().id;
        Ok(Response::new(self.server.member_remove(id).await?))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let req = request.into_inner();
        Ok(Response::new(self.server.member_update(req).await?))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let id = request.into_inner().id;
        Ok(Response::new(self.server.member_promote(id).await?))
    }
}
