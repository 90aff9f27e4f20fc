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

impl ClusterService {
    /// Membership changes are root's once auth is on (etcd's
    /// `checkMembershipOperationPermission`).
    async fn admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let caller = super::caller(&self.server, request).await?;
        Ok(self.server.check_admin(&caller)?)
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        let linearizable = request.get_ref().linearizable;
        self.server.require_user(&caller)?;
        Ok(Response::new(self.server.member_list(linearizable).await?))
    }

    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        self.admin(&request).await?;
        let req = request.into_inner();
        Ok(Response::new(self.server.member_add(req).await?))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        self.admin(&request).await?;
        let id = request.into_inner().id;
        Ok(Response::new(self.server.member_remove(id).await?))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        self.admin(&request).await?;
        let req = request.into_inner();
        Ok(Response::new(self.server.member_update(req).await?))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.admin(&request).await?;
        let id = request.into_inner().id;
        Ok(Response::new(self.server.member_promote(id).await?))
    }
}
