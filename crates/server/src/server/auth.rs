//! Who a request comes from, and the Auth service's verbs (etcd's
//! `AuthGetter` and the auth half of `v3_server.go`).
//!
//! Every auth request goes through raft, reads included, as in etcd; the
//! applier checks admin rights. Passwords are hashed and checked here,
//! before proposing and off the async threads, never on the raft loop or
//! the applier.

use api::etcdserverpb::{
    AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse,
    AuthRoleGetRequest, AuthRoleGetResponse, AuthRoleGrantPermissionRequest,
    AuthRoleGrantPermissionResponse, AuthRoleListRequest, AuthRoleListResponse,
    AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse, AuthStatusRequest,
    AuthStatusResponse, AuthUserAddRequest, AuthUserAddResponse, AuthUserChangePasswordRequest,
    AuthUserChangePasswordResponse, AuthUserDeleteRequest, AuthUserDeleteResponse,
    AuthUserGetRequest, AuthUserGetResponse, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse,
    AuthUserListRequest, AuthUserListResponse, AuthUserRevokeRoleRequest,
    AuthUserRevokeRoleResponse, AuthenticateRequest, AuthenticateResponse,
    InternalAuthenticateRequest, InternalRaftRequest,
};
use api::EtcdError;
use auth::{Access, AuthInfo};

use super::EtcdServer;

/// Who a request is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A client: with the identity its token (or certificate) gave, or
    /// none.
    Client(Option<AuthInfo>),
    /// The member itself (lease expiry, alarms, in-process use through
    /// `embed`): acts as root, as etcd's `WithRoot`.
    Member,
}

/// How the password of a new user or a changed password is carried: hashed
/// with the member's bcrypt cost, off the async threads.
async fn hash_password(password: String, cost: u32) -> Result<String, EtcdError> {
    tokio::task::spawn_blocking(move || auth::password::hash_for_proposal(&password, cost))
        .await
        .map_err(|_| EtcdError::Stopped)?
        .map_err(|e| {
            tracing::warn!(error = %e, "cannot hash a password");
            EtcdError::AuthFailed
        })
}

impl EtcdServer {
    /// The identity an entry proposed for `caller` carries.
    pub(super) fn identity(&self, caller: &Caller) -> AuthInfo {
        match caller {
            Caller::Client(who) => who.clone().unwrap_or_default(),
            Caller::Member => AuthInfo {
                user: auth::store::ROOT.to_string(),
                revision: self.auth.read().revision(),
            },
        }
    }

    /// The caller a request's token stands for (etcd's `AuthInfoFromCtx`):
    /// none while auth is off; without a token, the CommonName of the
    /// client certificate (`cert_name`) with `--client-cert-auth`, else
    /// none; a token this member does not hold (once it has applied the
    /// entry that made it) is `InvalidAuthToken`. Either is checked at the
    /// auth revision of now.
    pub async fn caller(
        &self,
        token: Option<&str>,
        cert_name: Option<&str>,
    ) -> Result<Caller, EtcdError> {
        if !self.auth.read().is_enabled() {
            return Ok(Caller::Client(None));
        }
        let token = match (token, cert_name) {
            (Some(t), _) => t.strip_prefix("Bearer ").unwrap_or(t),
            (None, Some(name)) if self.cfg.client_tls.client_cert_auth => {
                return Ok(Caller::Client(Some(AuthInfo {
                    user: name.to_string(),
                    revision: self.auth.read().revision(),
                })));
            }
            (None, _) => return Ok(Caller::Client(None)),
        };
        let index = auth::token::index_of(token).ok_or(EtcdError::InvalidAuthToken)?;
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        self.wait_applied(index, deadline)
            .await
            .map_err(|_| EtcdError::InvalidAuthToken)?;
        let user = self
            .auth
            .tokens()
            .user(token, std::time::Instant::now())
            .ok_or(EtcdError::InvalidAuthToken)?;
        Ok(Caller::Client(Some(AuthInfo {
            user,
            revision: self.auth.read().revision(),
        })))
    }

    /// Whether `caller` may read `[key, range_end)` (etcd's ranges).
    pub fn check_read(
        &self,
        caller: &Caller,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), EtcdError> {
        match caller {
            Caller::Member => Ok(()),
            Caller::Client(who) => {
                self.auth
                    .read()
                    .check(who.as_ref(), key, range_end, Access::Read)
            }
        }
    }

    /// Whether `caller` may make an admin call (defragment, snapshot,
    /// hashes, move-leader, downgrade, membership).
    pub fn check_admin(&self, caller: &Caller) -> Result<(), EtcdError> {
        match caller {
            Caller::Member => Ok(()),
            Caller::Client(who) => self.auth.read().check_admin(who.as_ref()),
        }
    }

    /// Whether `caller` is someone, once auth is on (etcd 3.7's
    /// `requireAuthInfo`: lease calls, Status, alarm lists, member lists).
    pub fn require_user(&self, caller: &Caller) -> Result<(), EtcdError> {
        match caller {
            Caller::Client(None) if self.auth.read().is_enabled() => Err(EtcdError::UserEmpty),
            _ => Ok(()),
        }
    }

    /// Whether `caller` may read every key attached to each of `leases`
    /// (TimeToLive with keys, the lease list); root may.
    pub fn check_lease_keys(&self, caller: &Caller, leases: &[i64]) -> Result<(), EtcdError> {
        let Caller::Client(who) = caller else {
            return Ok(());
        };
        let store = self.auth.read();
        if !store.is_enabled() {
            return Ok(());
        }
        let who = who.as_ref().ok_or(EtcdError::UserEmpty)?;
        if store.check_admin(Some(who)).is_ok() {
            return Ok(());
        }
        for &id in leases {
            for key in self.lessor.keys(id).unwrap_or_default() {
                store.check(Some(who), &key, b"", Access::Read)?;
            }
        }
        Ok(())
    }

    /// Whether `caller` may run a read-only txn served locally (every
    /// compare and every operation of both branches).
    pub fn check_txn(
        &self,
        caller: &Caller,
        txn: &api::etcdserverpb::TxnRequest,
    ) -> Result<(), EtcdError> {
        match caller {
            Caller::Member => Ok(()),
            Caller::Client(who) => {
                let lease_keys = |id: i64| self.lessor.keys(id).unwrap_or_default();
                let store = self.auth.read();
                let empty = AuthInfo::default();
                crate::node::apply_auth::check_txn_request(
                    &store,
                    who.as_ref().unwrap_or(&empty),
                    txn,
                    &lease_keys,
                )
            }
        }
    }

    /// Authenticate: the password is checked here, then an entry assigns
    /// the token on every member; retried when auth changed meanwhile.
    pub async fn authenticate(
        &self,
        req: AuthenticateRequest,
    ) -> Result<AuthenticateResponse, EtcdError> {
        self.read_barrier().await?;
        loop {
            let (hash, checked_at) = self.auth.read().password_hash(&req.name)?;
            let password = req.password.clone();
            let matches =
                tokio::task::spawn_blocking(move || auth::password::verify(&password, &hash))
                    .await
                    .map_err(|_| EtcdError::Stopped)?;
            if !matches {
                return Err(EtcdError::AuthFailed);
            }
            let simple_token = auth::token::random_prefix().map_err(|e| {
                tracing::error!(error = %e, "no random source for a token");
                EtcdError::AuthFailed
            })?;
            let resp: AuthenticateResponse = self
                .write(
                    &Caller::Client(None),
                    InternalRaftRequest {
                        authenticate: Some(InternalAuthenticateRequest {
                            name: req.name.clone(),
                            password: String::new(),
                            simple_token,
                        }),
                        ..Default::default()
                    },
                )
                .await?;
            if checked_at == self.auth.read().revision() {
                return Ok(resp);
            }
            tracing::info!("revision when password checked became stale; retrying");
        }
    }

    pub async fn user_add(
        &self,
        caller: &Caller,
        mut req: AuthUserAddRequest,
    ) -> Result<AuthUserAddResponse, EtcdError> {
        if !req.options.is_some_and(|o| o.no_password) {
            let password = std::mem::take(&mut req.password);
            req.hashed_password = hash_password(password, self.auth.bcrypt_cost()).await?;
        }
        let request = InternalRaftRequest {
            auth_user_add: Some(req),
            ..Default::default()
        };
        self.write(caller, request).await
    }

    pub async fn user_change_password(
        &self,
        caller: &Caller,
        mut req: AuthUserChangePasswordRequest,
    ) -> Result<AuthUserChangePasswordResponse, EtcdError> {
        if !req.password.is_empty() {
            let password = std::mem::take(&mut req.password);
            req.hashed_password = hash_password(password, self.auth.bcrypt_cost()).await?;
        }
        let request = InternalRaftRequest {
            auth_user_change_password: Some(req),
            ..Default::default()
        };
        self.write(caller, request).await
    }
}

/// Auth verbs that propose their request as it came: each request in its
/// field of the entry, answered with its response.
macro_rules! proposed_as_is {
    ($($verb:ident: $request:ty => $field:ident => $response:ty;)*) => {
        impl EtcdServer {$(
            pub async fn $verb(
                &self,
                caller: &Caller,
                req: $request,
            ) -> Result<$response, EtcdError> {
                let request = InternalRaftRequest {
                    $field: Some(req),
                    ..Default::default()
                };
                self.write(caller, request).await
            }
        )*}
    };
}

proposed_as_is! {
    auth_enable: AuthEnableRequest => auth_enable => AuthEnableResponse;
    auth_disable: AuthDisableRequest => auth_disable => AuthDisableResponse;
    auth_status: AuthStatusRequest => auth_status => AuthStatusResponse;
    user_get: AuthUserGetRequest => auth_user_get => AuthUserGetResponse;
    user_list: AuthUserListRequest => auth_user_list => AuthUserListResponse;
    user_delete: AuthUserDeleteRequest => auth_user_delete => AuthUserDeleteResponse;
    user_grant_role: AuthUserGrantRoleRequest => auth_user_grant_role => AuthUserGrantRoleResponse;
    user_revoke_role: AuthUserRevokeRoleRequest => auth_user_revoke_role => AuthUserRevokeRoleResponse;
    role_add: AuthRoleAddRequest => auth_role_add => AuthRoleAddResponse;
    role_get: AuthRoleGetRequest => auth_role_get => AuthRoleGetResponse;
    role_list: AuthRoleListRequest => auth_role_list => AuthRoleListResponse;
    role_delete: AuthRoleDeleteRequest => auth_role_delete => AuthRoleDeleteResponse;
    role_grant_permission: AuthRoleGrantPermissionRequest => auth_role_grant_permission => AuthRoleGrantPermissionResponse;
    role_revoke_permission: AuthRoleRevokePermissionRequest => auth_role_revoke_permission => AuthRoleRevokePermissionResponse;
}
