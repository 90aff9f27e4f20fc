//! The applier's auth half: the checks a committed request must pass
//! against the auth store at the revision it was admitted at (etcd's
//! `authApplierV3`), and the auth requests themselves.
//!
//! Both run on the applier's thread, in log order, on every member: a
//! permission revoked by an earlier entry refuses a later write on every
//! member alike (`AuthOldRevision` when the auth store moved since the
//! write was admitted), so members cannot diverge over auth (etcd #11691).

use api::etcdserverpb::{
    request_op, AuthDisableResponse, AuthEnableResponse, AuthRoleAddResponse,
    AuthRoleDeleteResponse, AuthRoleGrantPermissionResponse, AuthRoleListResponse,
    AuthRoleRevokePermissionResponse, AuthStatusResponse, AuthUserAddResponse,
    AuthUserChangePasswordResponse, AuthUserDeleteResponse, AuthUserGrantRoleResponse,
    AuthUserListResponse, AuthUserRevokeRoleResponse, AuthenticateResponse, InternalRaftRequest,
    PutRequest, RequestOp, ResponseHeader, TxnRequest,
};
use api::EtcdError;
use auth::{Access, AuthInfo, AuthStore, Row};

use crate::node::apply::{ApplyOutcome, ApplyResult};
use crate::state::auth::Auth;

/// Who proposed `req`, as its header says (etcd's `Username` and
/// `AuthRevision`).
pub fn proposer(req: &InternalRaftRequest) -> Option<AuthInfo> {
    req.header.as_ref().map(|h| AuthInfo {
        user: h.username.clone(),
        revision: h.auth_revision,
    })
}

/// Whether `req` is one only root may make once auth is on.
fn needs_admin(r: &InternalRaftRequest) -> bool {
    r.auth_enable.is_some()
        || r.auth_disable.is_some()
        || r.auth_user_add.is_some()
        || r.auth_user_delete.is_some()
        || r.auth_user_change_password.is_some()
        || r.auth_user_grant_role.is_some()
        || r.auth_user_revoke_role.is_some()
        || r.auth_role_add.is_some()
        || r.auth_role_grant_permission.is_some()
        || r.auth_role_revoke_permission.is_some()
        || r.auth_role_delete.is_some()
        || r.auth_user_list.is_some()
        || r.auth_role_list.is_some()
}

/// The checks `req` must pass before it is applied, as etcd makes them at
/// apply time. `lease_keys` gives the keys attached to a lease.
pub fn check(
    store: &AuthStore,
    who: Option<&AuthInfo>,
    req: &InternalRaftRequest,
    lease_keys: &dyn Fn(i64) -> Vec<Vec<u8>>,
) -> Result<(), EtcdError> {
    if !store.is_enabled() {
        return Ok(());
    }
    let empty = AuthInfo::default();
    let who = who.unwrap_or(&empty);
    if needs_admin(req) {
        return store.check_admin(Some(who));
    }
    if let Some(r) = &req.put {
        return check_put(store, who, r, lease_keys);
    }
    if let Some(r) = &req.delete_range {
        store.check(Some(who), &r.key, &r.range_end, Access::Write)?;
        if r.prev_kv {
            store.check(Some(who), &r.key, &r.range_end, Access::Read)?;
        }
        return Ok(());
    }
    if let Some(r) = &req.txn {
        return check_txn_request(store, who, r, lease_keys);
    }
    if let Some(r) = &req.lease_revoke {
        return check_lease_puts(store, who, r.id, lease_keys);
    }
    if let Some(r) = &req.auth_user_get {
        // A user may read itself.
        if store.check_admin(Some(who)).is_err() && r.name != who.user {
            return store.check_admin(Some(who));
        }
        return Ok(());
    }
    if let Some(r) = &req.auth_role_get {
        // A user may read the roles it has.
        let has = store
            .user(&who.user)
            .is_some_and(|u| u.roles.contains(&r.role));
        if store.check_admin(Some(who)).is_err() && !has {
            return store.check_admin(Some(who));
        }
        return Ok(());
    }
    Ok(())
}

fn check_put(
    store: &AuthStore,
    who: &AuthInfo,
    r: &PutRequest,
    lease_keys: &dyn Fn(i64) -> Vec<Vec<u8>>,
) -> Result<(), EtcdError> {
    store.check(Some(who), &r.key, b"", Access::Write)?;
    // A lease that holds a key this user cannot write cannot be revoked by
    // it: neither may it attach the lease to more keys.
    check_lease_puts(store, who, r.lease, lease_keys)?;
    if r.prev_kv {
        store.check(Some(who), &r.key, b"", Access::Read)?;
    }
    Ok(())
}

fn check_lease_puts(
    store: &AuthStore,
    who: &AuthInfo,
    lease: i64,
    lease_keys: &dyn Fn(i64) -> Vec<Vec<u8>>,
) -> Result<(), EtcdError> {
    if lease == lease::NO_LEASE || store.check_admin(Some(who)).is_ok() {
        return Ok(());
    }
    for key in lease_keys(lease) {
        store.check(Some(who), &key, b"", Access::Write)?;
    }
    Ok(())
}

/// The checks of a txn: every compare, every operation of both branches,
/// nested txns included.
pub fn check_txn_request(
    store: &AuthStore,
    who: &AuthInfo,
    r: &TxnRequest,
    lease_keys: &dyn Fn(i64) -> Vec<Vec<u8>>,
) -> Result<(), EtcdError> {
    if !store.is_enabled() {
        return Ok(());
    }
    for c in &r.compare {
        store.check(Some(who), &c.key, &c.range_end, Access::Read)?;
    }
    check_ops(store, who, &r.success, lease_keys)?;
    check_ops(store, who, &r.failure, lease_keys)
}

fn check_ops(
    store: &AuthStore,
    who: &AuthInfo,
    ops: &[RequestOp],
    lease_keys: &dyn Fn(i64) -> Vec<Vec<u8>>,
) -> Result<(), EtcdError> {
    for op in ops {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                store.check(Some(who), &r.key, &r.range_end, Access::Read)?;
            }
            Some(request_op::Request::RequestPut(r)) => check_put(store, who, r, lease_keys)?,
            Some(request_op::Request::RequestDeleteRange(r)) => {
                if r.prev_kv {
                    store.check(Some(who), &r.key, &r.range_end, Access::Read)?;
                }
                store.check(Some(who), &r.key, &r.range_end, Access::Write)?;
            }
            Some(request_op::Request::RequestTxn(r)) => {
                check_txn_request(store, who, r, lease_keys)?
            }
            None => {}
        }
    }
    Ok(())
}

/// Whether `req` is an auth request (answered by [`apply`]).
pub fn is_auth_request(r: &InternalRaftRequest) -> bool {
    needs_admin(r)
        || r.auth_status.is_some()
        || r.authenticate.is_some()
        || r.auth_user_get.is_some()
        || r.auth_role_get.is_some()
}

/// Applies an auth request at raft index `index`; the backend rows it
/// changes go to `rows`. `header` is the response header the applier gives.
pub fn apply(
    auth: &Auth,
    req: &InternalRaftRequest,
    index: u64,
    now: std::time::Instant,
    header: ResponseHeader,
    rows: &mut Vec<Row>,
) -> ApplyOutcome {
    let h = Some(header);
    let mut store = auth.write();
    Ok(if req.auth_enable.is_some() {
        store.enable(rows)?;
        auth.tokens().enable();
        ApplyResult::AuthEnable(AuthEnableResponse { header: h })
    } else if req.auth_disable.is_some() {
        store.disable(rows);
        auth.tokens().disable();
        ApplyResult::AuthDisable(AuthDisableResponse { header: h })
    } else if req.auth_status.is_some() {
        ApplyResult::AuthStatus(AuthStatusResponse {
            header: h,
            enabled: store.is_enabled(),
            auth_revision: store.revision(),
        })
    } else if let Some(r) = &req.authenticate {
        store.check_authenticate(&r.name)?;
        let token = auth.tokens().assign(&r.name, &r.simple_token, index, now);
        ApplyResult::Authenticate(AuthenticateResponse { header: h, token })
    } else if let Some(r) = &req.auth_user_add {
        store.user_add(r, rows)?;
        ApplyResult::UserAdd(AuthUserAddResponse { header: h })
    } else if let Some(r) = &req.auth_user_delete {
        store.user_delete(r, rows)?;
        auth.tokens().invalidate_user(&r.name);
        ApplyResult::UserDelete(AuthUserDeleteResponse { header: h })
    } else if let Some(r) = &req.auth_user_change_password {
        store.user_change_password(r, rows)?;
        auth.tokens().invalidate_user(&r.name);
        ApplyResult::UserChangePassword(AuthUserChangePasswordResponse { header: h })
    } else if let Some(r) = &req.auth_user_grant_role {
        store.user_grant_role(r, rows)?;
        ApplyResult::UserGrantRole(AuthUserGrantRoleResponse { header: h })
    } else if let Some(r) = &req.auth_user_revoke_role {
        store.user_revoke_role(r, rows)?;
        ApplyResult::UserRevokeRole(AuthUserRevokeRoleResponse { header: h })
    } else if let Some(r) = &req.auth_user_get {
        let mut resp = store.user_get(r)?;
        resp.header = h;
        ApplyResult::UserGet(resp)
    } else if req.auth_user_list.is_some() {
        ApplyResult::UserList(AuthUserListResponse {
            header: h,
            users: store.user_list(),
        })
    } else if let Some(r) = &req.auth_role_add {
        store.role_add(r, rows)?;
        ApplyResult::RoleAdd(AuthRoleAddResponse { header: h })
    } else if let Some(r) = &req.auth_role_get {
        let mut resp = store.role_get(r)?;
        resp.header = h;
        ApplyResult::RoleGet(resp)
    } else if req.auth_role_list.is_some() {
        ApplyResult::RoleList(AuthRoleListResponse {
            header: h,
            roles: store.role_list(),
        })
    } else if let Some(r) = &req.auth_role_delete {
        store.role_delete(r, rows)?;
        ApplyResult::RoleDelete(AuthRoleDeleteResponse { header: h })
    } else if let Some(r) = &req.auth_role_grant_permission {
        store.role_grant_permission(r, rows)?;
        ApplyResult::RoleGrantPermission(AuthRoleGrantPermissionResponse { header: h })
    } else if let Some(r) = &req.auth_role_revoke_permission {
        store.role_revoke_permission(r, rows)?;
        ApplyResult::RoleRevokePermission(AuthRoleRevokePermissionResponse { header: h })
    } else {
        ApplyResult::Done
    })
}
