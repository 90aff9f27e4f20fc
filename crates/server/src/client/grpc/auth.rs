//! The Auth service: every call goes through the server's auth verbs
//! (through raft, checked by the applier), Authenticate included.

use std::sync::Arc;

use api::etcdserverpb::auth_server::Auth;
use api::etcdserverpb::*;
use tonic::{Request, Response, Status};

use crate::server::EtcdServer;

pub struct AuthService {
    server: Arc<EtcdServer>,
}

impl AuthService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        AuthService { server }
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        request: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        Ok(Response::new(
            self.server
                .auth_enable(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn auth_disable(
        &self,
        request: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        Ok(Response::new(
            self.server
                .auth_disable(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn auth_status(
        &self,
        request: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        Ok(Response::new(
            self.server
                .auth_status(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn user_add(
        &self,
        request: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        Ok(Response::new(
            self.server.user_add(&caller, request.into_inner()).await?,
        ))
    }

    async fn user_get(
        &self,
        request: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        Ok(Response::new(
            self.server.user_get(&caller, request.into_inner()).await?,
        ))
    }

    async fn user_list(
        &self,
        request: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        Ok(Response::new(
            self.server.user_list(&caller, request.into_inner()).await?,
        ))
    }

    async fn user_delete(
        &self,
        request: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        Ok(Response::new(
            self.server
                .user_delete(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        Ok(Response::new(
            self.server
                .user_change_password(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        Ok(Response::new(
            self.server
                .user_grant_role(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        Ok(Response::new(
            self.server
                .user_revoke_role(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn role_add(
        &self,
        request: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        Ok(Response::new(
            self.server.role_add(&caller, request.into_inner()).await?,
        ))
    }

    async fn role_get(
        &self,
        request: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        Ok(Response::new(
            self.server.role_get(&caller, request.into_inner()).await?,
        ))
    }

    async fn role_list(
        &self,
        request: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        Ok(Response::new(
            self.server.role_list(&caller, request.into_inner()).await?,
        ))
    }

    async fn role_delete(
        &self,
        request: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        Ok(Response::new(
            self.server
                .role_delete(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        Ok(Response::new(
            self.server
                .role_grant_permission(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        Ok(Response::new(
            self.server
                .role_revoke_permission(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let resp = self.server.authenticate(request.into_inner()).await?;
        Ok(Response::new(resp))
    }
}
