//! The auth store: whether auth is on, its revision, users and roles, as
//! every member applies them from the log, with etcd's rules and errors.
//!
//! It is a pure state machine: each change returns the backend rows to
//! write (etcd's `auth`, `authUsers` and `authRoles` buckets, authpb
//! encodings) in the applier's batch, so the rows and the state cannot
//! drift apart, and every member computes the same from the same entries.
//! Tokens are not here (they are a member's, see `token`).

use std::collections::{BTreeMap, HashMap};

use api::authpb::{permission, Permission, Role, User, UserAddOptions};
use api::etcdserverpb::{
    AuthRoleAddRequest, AuthRoleDeleteRequest, AuthRoleGetRequest, AuthRoleGetResponse,
    AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserAddRequest,
    AuthUserChangePasswordRequest, AuthUserDeleteRequest, AuthUserGetRequest, AuthUserGetResponse,
    AuthUserGrantRoleRequest, AuthUserRevokeRoleRequest,
};
use api::EtcdError;
use prost::Message;

use crate::password;
use crate::perms::{self, Perms};

/// The user and the role that may do everything.
pub const ROOT: &str = "root";

/// Keys of the `auth` bucket.
pub const ENABLED_KEY: &[u8] = b"authEnabled";
pub const REVISION_KEY: &[u8] = b"authRevision";

/// One of the backend's auth buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// `auth`: the enabled flag and the revision.
    Auth,
    /// `authUsers`: name → `authpb.User`.
    Users,
    /// `authRoles`: name → `authpb.Role`.
    Roles,
}

/// A backend row an auth change writes (`None`: deletes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub bucket: Bucket,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// Who a request comes from, and the auth revision it was checked at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthInfo {
    pub user: String,
    pub revision: u64,
}

/// Read or write, for a permission check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A backend row the store cannot read.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("the auth bucket's {key} row is unreadable ({len} bytes)")]
    Meta { key: &'static str, len: usize },
    #[error("an authUsers row is unreadable: {0}")]
    User(prost::DecodeError),
    #[error("an authRoles row is unreadable: {0}")]
    Role(prost::DecodeError),
}

/// The auth state of a member (etcd's `authStore` without its tokens).
#[derive(Debug, Clone)]
pub struct AuthStore {
    enabled: bool,
    revision: u64,
    users: BTreeMap<Vec<u8>, User>,
    roles: BTreeMap<Vec<u8>, Role>,
    /// Each user's merged permissions, rebuilt when users or roles change.
    perms: HashMap<Vec<u8>, Perms>,
    /// bcrypt's cost for passwords that arrive unhashed (log entries of
    /// members older than 3.5).
    bcrypt_cost: u32,
}

impl Default for AuthStore {
    fn default() -> Self {
        AuthStore::new(password::DEFAULT_COST)
    }
}

impl AuthStore {
    /// An empty store: auth off, revision 1 (as etcd commits it on a new
    /// backend), no users or roles.
    pub fn new(bcrypt_cost: u32) -> AuthStore {
        AuthStore {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
            perms: HashMap::new(),
            bcrypt_cost,
        }
    }

    /// The store as the backend's three buckets hold it.
    pub fn recover(
        auth: &[(Vec<u8>, Vec<u8>)],
        users: &[(Vec<u8>, Vec<u8>)],
        roles: &[(Vec<u8>, Vec<u8>)],
        bcrypt_cost: u32,
    ) -> Result<AuthStore, RecoverError> {
        let mut store = AuthStore::new(bcrypt_cost);
        for (key, value) in auth {
            if key == ENABLED_KEY {
                store.enabled = value.as_slice() == [1];
            } else if key == REVISION_KEY {
                let bytes: [u8; 8] =
                    value
                        .as_slice()
                        .try_into()
                        .map_err(|_| RecoverError::Meta {
                            key: "authRevision",
                            len: value.len(),
                        })?;
                store.revision = u64::from_be_bytes(bytes).max(1);
            }
        }
        for (name, row) in users {
            let user = User::decode(row.as_slice()).map_err(RecoverError::User)?;
            store.users.insert(name.clone(), user);
        }
        for (name, row) in roles {
            let role = Role::decode(row.as_slice()).map_err(RecoverError::Role)?;
            store.roles.insert(name.clone(), role);
        }
        store.refresh_perms();
        Ok(store)
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The auth revision: it moves with every change to users, roles or
    /// permissions, and when auth is disabled.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The user, if there is one by that name.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name.as_bytes())
    }

    /// Whether `name` exists and has the root role.
    pub fn is_root(&self, name: &str) -> bool {
        self.user(name).is_some_and(has_root_role)
    }

    fn refresh_perms(&mut self) {
        self.perms = self
            .users
            .iter()
            .map(|(name, user)| {
                let granted = user
                    .roles
                    .iter()
                    .filter_map(|r| self.roles.get(r.as_bytes()))
                    .flat_map(|role| role.key_permission.iter());
                (name.clone(), Perms::merged(granted))
            })
            .collect();
    }

    /// A change made: the revision moves, and the permissions are rebuilt.
    fn commit(&mut self, rows: &mut Vec<Row>) {
        self.revision += 1;
        rows.push(Row {
            bucket: Bucket::Auth,
            key: REVISION_KEY.to_vec(),
            value: Some(self.revision.to_be_bytes().to_vec()),
        });
        self.refresh_perms();
    }

    fn put_user(&mut self, user: User, rows: &mut Vec<Row>) {
        rows.push(Row {
            bucket: Bucket::Users,
            key: user.name.clone(),
            value: Some(user.encode_to_vec()),
        });
        self.users.insert(user.name.clone(), user);
    }

    fn put_role(&mut self, role: Role, rows: &mut Vec<Row>) {
        rows.push(Row {
            bucket: Bucket::Roles,
            key: role.name.clone(),
            value: Some(role.encode_to_vec()),
        });
        self.roles.insert(role.name.clone(), role);
    }

    /// AuthEnable: needs a root user with the root role; enabling twice is
    /// no change.
    pub fn enable(&mut self, rows: &mut Vec<Row>) -> Result<(), EtcdError> {
        if self.enabled {
            return Ok(());
        }
        let root = self.user(ROOT).ok_or(EtcdError::RootUserNotExist)?;
        if !has_root_role(root) {
            return Err(EtcdError::RootRoleNotExist);
        }
        self.enabled = true;
        rows.push(enabled_row(true));
        Ok(())
    }

    /// AuthDisable: disabling twice is no change.
    pub fn disable(&mut self, rows: &mut Vec<Row>) {
        if !self.enabled {
            return;
        }
        self.enabled = false;
        rows.push(enabled_row(false));
        self.commit(rows);
    }

    /// Whether `name` may authenticate at all (the password is checked
    /// before proposing, off the raft loop): etcd's apply-time check.
    pub fn check_authenticate(&self, name: &str) -> Result<(), EtcdError> {
        if !self.enabled {
            return Err(EtcdError::AuthNotEnabled);
        }
        match self.user(name) {
            Some(user) if !no_password(user) => Ok(()),
            _ => Err(EtcdError::AuthFailed),
        }
    }

    /// The stored bcrypt hash of `name`'s password, and the revision, for
    /// checking a password off the raft loop (etcd's `CheckPassword`).
    pub fn password_hash(&self, name: &str) -> Result<(Vec<u8>, u64), EtcdError> {
        if !self.enabled {
            return Err(EtcdError::AuthNotEnabled);
        }
        let user = self.user(name).ok_or(EtcdError::AuthFailed)?;
        if no_password(user) {
            return Err(EtcdError::NoPasswordUser);
        }
        Ok((user.password.clone(), self.revision))
    }

    /// The password to store: the hash the proposer made, or (for log
    /// entries of members older than 3.5) the password hashed here.
    fn stored_password(&self, password: &str, hashed: &str) -> Result<Vec<u8>, EtcdError> {
        if !password.is_empty() && hashed.is_empty() {
            return password::hash(password, self.bcrypt_cost)
                .map_err(|_| EtcdError::NoPasswordUser);
        }
        password::decode_hashed(hashed).ok_or(EtcdError::NoPasswordUser)
    }

    pub fn user_add(
        &mut self,
        r: &AuthUserAddRequest,
        rows: &mut Vec<Row>,
    ) -> Result<(), EtcdError> {
        if r.name.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        if self.user(&r.name).is_some() {
            return Err(EtcdError::UserAlreadyExist);
        }
        let options = r.options.unwrap_or(UserAddOptions { no_password: false });
        let password = if options.no_password {
            Vec::new()
        } else {
            self.stored_password(&r.password, &r.hashed_password)?
        };
        let user = User {
            name: r.name.as_bytes().to_vec(),
            password,
            roles: Vec::new(),
            options: Some(options),
        };
        self.put_user(user, rows);
        self.commit(rows);
        Ok(())
    }

    pub fn user_delete(
        &mut self,
        r: &AuthUserDeleteRequest,
        rows: &mut Vec<Row>,
    ) -> Result<(), EtcdError> {
        if self.enabled && r.name == ROOT {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        if self.users.remove(r.name.as_bytes()).is_none() {
            return Err(EtcdError::UserNotFound);
        }
        rows.push(Row {
            bucket: Bucket::Users,
            key: r.name.as_bytes().to_vec(),
            value: None,
        });
        self.commit(rows);
        Ok(())
    }

    pub fn user_change_password(
        &mut self,
        r: &AuthUserChangePasswordRequest,
        rows: &mut Vec<Row>,
    ) -> Result<(), EtcdError> {
        let mut user = self.user(&r.name).ok_or(EtcdError::UserNotFound)?.clone();
        user.password = if no_password(&user) {
            Vec::new()
        } else {
            self.stored_password(&r.password, &r.hashed_password)?
        };
        self.put_user(user, rows);
        self.commit(rows);
        Ok(())
    }

    pub fn user_grant_role(
        &mut self,
        r: &AuthUserGrantRoleRequest,
        rows: &mut Vec<Row>,
    ) -> Result<(), EtcdError> {
        let mut user = self.user(&r.user).ok_or(EtcdError::UserNotFound)?.clone();
        if r.role != ROOT && !self.roles.contains_key(r.role.as_bytes()) {
            return Err(EtcdError::RoleNotFound);
        }
        match user.roles.binary_search(&r.role) {
            // Granted already: no change, as etcd.
            Ok(_) => return Ok(()),
            Err(at) => user.roles.insert(at, r.role.clone()),
        }
        self.put_user(user, rows);
        self.commit(rows);
        Ok(())
    }

    pub fn user_get(&self, r: &AuthUserGetRequest) -> Result<AuthUserGetResponse, EtcdError> {
        let user = self.user(&r.name).ok_or(EtcdError::UserNotFound)?;
        Ok(AuthUserGetResponse {
            header: None,
            roles: user.roles.clone(),
        })
    }

    /// Every user's name, in the backend's order.
    pub fn user_list(&self) -> Vec<String> {
        self.users
            .keys()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    pub fn user_revoke_role(
        &mut self,
        r: &AuthUserRevokeRoleRequest,
        rows: &mut Vec<Row>,
    ) -> Result<(), EtcdError> {
        if self.enabled && r.name == ROOT && r.role == ROOT {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        let mut user = self.user(&r.name).ok_or(EtcdError::UserNotFound)?.clone();
        let before = user.roles.len();
        user.roles.retain(|role| *role != r.role);
        if user.roles.len() == before {
            return Err(EtcdError::RoleNotGranted);
        }
        self.put_user(user, rows);
        self.commit(rows);
        Ok(())
    }

    pub fn role_add(
        &mut self,
        r: &AuthRoleAddRequest,
        rows: &mut Vec<Row>,
    ) -> Result<(), EtcdError> {
        if r.name.is_empty() {
            return Err(EtcdError::RoleEmpty);
        }
        if self.roles.contains_key(r.name.as_bytes()) {
            return Err(EtcdError::RoleAlreadyExist);
        }
        let role = Role {
            name: r.name.as_bytes().to_vec(),
            key_permission: Vec::new(),
        };
        self.put_role(role, rows);
        self.commit(rows);
        Ok(())
    }

    pub fn role_get(&self, r: &AuthRoleGetRequest) -> Result<AuthRoleGetResponse, EtcdError> {
        let role = self
            .roles
            .get(r.role.as_bytes())
            .ok_or(EtcdError::RoleNotFound)?;
        let perm = if role.name == ROOT.as_bytes() {
            // The root role may do everything, whatever it was granted.
            vec![Permission {
                perm_type: permission::Type::Readwrite as i32,
                key: Vec::new(),
                range_end: vec![0],
            }]
        } else {
            role.key_permission.clone()
        };
        Ok(AuthRoleGetResponse { header: None, perm })
    }

    /// Every role's name, in the backend's order.
    pub fn role_list(&self) -> Vec<String> {
        self.roles
            .keys()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    pub fn role_delete(
        &mut self,
        r: &AuthRoleDeleteRequest,
        rows: &mut Vec<Row>,
    ) -> Result<(), EtcdError> {
        if self.enabled && r.role == ROOT {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        if self.roles.remove(r.role.as_bytes()).is_none() {
            return Err(EtcdError::RoleNotFound);
        }
        rows.push(Row {
            bucket: Bucket::Roles,
            key: r.role.as_bytes().to_vec(),
            value: None,
        });
        let holders: Vec<User> = self
            .users
            .values()
            .filter(|u| u.roles.contains(&r.role))
            .cloned()
            .collect();
        for mut user in holders {
            user.roles.retain(|role| *role != r.role);
            self.put_user(user, rows);
        }
        self.commit(rows);
        Ok(())
    }

    pub fn role_grant_permission(
        &mut self,
        r: &AuthRoleGrantPermissionRequest,
        rows: &mut Vec<Row>,
    ) -> Result<(), EtcdError> {
        let perm = r.perm.as_ref().ok_or(EtcdError::PermissionNotGiven)?;
        if !perms::is_valid_range(&perm.key, &perm.range_end) {
            return Err(EtcdError::InvalidAuthMgmt);
        }
        let mut role = self
            .roles
            .get(r.name.as_bytes())
            .ok_or(EtcdError::RoleNotFound)?
            .clone();
        let first = role.key_permission.partition_point(|p| p.key < perm.key);
        match role.key_permission.get_mut(first) {
            Some(p) if p.key == perm.key && p.range_end == perm.range_end => {
                p.perm_type = perm.perm_type;
            }
            _ => {
                role.key_permission.push(perm.clone());
                role.key_permission.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
        self.put_role(role, rows);
        self.commit(rows);
        Ok(())
    }

    pub fn role_revoke_permission(
        &mut self,
        r: &AuthRoleRevokePermissionRequest,
        rows: &mut Vec<Row>,
    ) -> Result<(), EtcdError> {
        let mut role = self
            .roles
            .get(r.role.as_bytes())
            .ok_or(EtcdError::RoleNotFound)?
            .clone();
        let before = role.key_permission.len();
        role.key_permission
            .retain(|p| p.key != r.key || p.range_end != r.range_end);
        if role.key_permission.len() == before {
            return Err(EtcdError::PermissionNotGranted);
        }
        self.put_role(role, rows);
        self.commit(rows);
        Ok(())
    }

    /// Whether `who` may read or write `[key, range_end)` (etcd's ranges),
    /// checked against the revision the request was admitted at: a request
    /// admitted before a change to auth is refused with
    /// `AuthOldRevision`, on every member alike.
    pub fn check(
        &self,
        who: Option<&AuthInfo>,
        key: &[u8],
        range_end: &[u8],
        access: Access,
    ) -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        let who = who
            .filter(|w| w.revision != 0)
            .ok_or(EtcdError::UserEmpty)?;
        if who.revision < self.revision {
            return Err(EtcdError::AuthOldRevision);
        }
        let user = self.user(&who.user).ok_or(EtcdError::PermissionDenied)?;
        if has_root_role(user) {
            return Ok(());
        }
        let allowed = self.perms.get(who.user.as_bytes()).is_some_and(|p| {
            let set = match access {
                Access::Read => &p.read,
                Access::Write => &p.write,
            };
            set.contains(key, range_end)
        });
        if allowed {
            Ok(())
        } else {
            Err(EtcdError::PermissionDenied)
        }
    }

    /// Whether `who` may make an admin call (membership, alarms, defrag,
    /// snapshot, auth management, …): root only, once auth is on.
    pub fn check_admin(&self, who: Option<&AuthInfo>) -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        let who = who
            .filter(|w| !w.user.is_empty())
            .ok_or(EtcdError::UserEmpty)?;
        let user = self.user(&who.user).ok_or(EtcdError::UserNotFound)?;
        if has_root_role(user) {
            Ok(())
        } else {
            Err(EtcdError::PermissionDenied)
        }
    }
}

fn enabled_row(on: bool) -> Row {
    Row {
        bucket: Bucket::Auth,
        key: ENABLED_KEY.to_vec(),
        value: Some(vec![u8::from(on)]),
    }
}

fn has_root_role(user: &User) -> bool {
    user.roles
        .binary_search_by(|r| r.as_str().cmp(ROOT))
        .is_ok()
}

fn no_password(user: &User) -> bool {
    user.options.is_some_and(|o| o.no_password)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password;

    fn add_user(s: &mut AuthStore, name: &str, pw: &str) -> Result<(), EtcdError> {
        let req = AuthUserAddRequest {
            name: name.into(),
            hashed_password: password::hash_for_proposal(pw, password::MIN_COST).expect("hash"),
            ..Default::default()
        };
        s.user_add(&req, &mut Vec::new())
    }

    fn grant_role(s: &mut AuthStore, user: &str, role: &str) -> Result<(), EtcdError> {
        let req = AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        };
        s.user_grant_role(&req, &mut Vec::new())
    }

    fn add_role(s: &mut AuthStore, name: &str) -> Result<(), EtcdError> {
        s.role_add(&AuthRoleAddRequest { name: name.into() }, &mut Vec::new())
    }

    fn grant(s: &mut AuthStore, role: &str, key: &str, end: &str, t: permission::Type) {
        let req = AuthRoleGrantPermissionRequest {
            name: role.into(),
            perm: Some(Permission {
                perm_type: t as i32,
                key: key.into(),
                range_end: end.into(),
            }),
        };
        s.role_grant_permission(&req, &mut Vec::new())
            .expect("grant");
    }

    fn enabled_with_root() -> AuthStore {
        let mut s = AuthStore::default();
        add_user(&mut s, ROOT, "rootpw").expect("root");
        grant_role(&mut s, ROOT, ROOT).expect("root role");
        s.enable(&mut Vec::new()).expect("enable");
        s
    }

    fn who(s: &AuthStore, user: &str) -> AuthInfo {
        AuthInfo {
            user: user.into(),
            revision: s.revision(),
        }
    }

    #[test]
    fn enabling_needs_a_root_user_with_the_root_role() {
        let mut s = AuthStore::default();
        assert_eq!(s.enable(&mut Vec::new()), Err(EtcdError::RootUserNotExist));
        add_user(&mut s, ROOT, "pw").expect("add");
        assert_eq!(s.enable(&mut Vec::new()), Err(EtcdError::RootRoleNotExist));
        grant_role(&mut s, ROOT, ROOT).expect("grant");
        let rev = s.revision();
        let mut rows = Vec::new();
        s.enable(&mut rows).expect("enable");
        assert!(s.is_enabled());
        // Enabling does not move the revision; disabling does.
        assert_eq!(s.revision(), rev);
        assert_eq!(rows, vec![enabled_row(true)]);
        s.enable(&mut Vec::new()).expect("again");
        s.disable(&mut Vec::new());
        assert_eq!(s.revision(), rev + 1);
    }

    #[test]
    fn users_and_roles_follow_etcds_rules() {
        let mut s = enabled_with_root();
        assert_eq!(add_user(&mut s, "", "pw"), Err(EtcdError::UserEmpty));
        assert_eq!(
            add_user(&mut s, ROOT, "pw"),
            Err(EtcdError::UserAlreadyExist)
        );
        assert_eq!(add_role(&mut s, ""), Err(EtcdError::RoleEmpty));
        add_role(&mut s, "r").expect("role");
        assert_eq!(add_role(&mut s, "r"), Err(EtcdError::RoleAlreadyExist));
        add_user(&mut s, "u", "pw").expect("user");
        assert_eq!(
            grant_role(&mut s, "u", "nope"),
            Err(EtcdError::RoleNotFound)
        );
        assert_eq!(
            grant_role(&mut s, "nobody", "r"),
            Err(EtcdError::UserNotFound)
        );
        grant_role(&mut s, "u", "r").expect("grant");
        let rev = s.revision();
        grant_role(&mut s, "u", "r").expect("granted twice: no change");
        assert_eq!(s.revision(), rev);
        let revoke_root = AuthUserRevokeRoleRequest {
            name: ROOT.into(),
            role: ROOT.into(),
        };
        assert_eq!(
            s.user_revoke_role(&revoke_root, &mut Vec::new()),
            Err(EtcdError::InvalidAuthMgmt)
        );
        let del_root = AuthUserDeleteRequest { name: ROOT.into() };
        assert_eq!(
            s.user_delete(&del_root, &mut Vec::new()),
            Err(EtcdError::InvalidAuthMgmt)
        );
        let del_root_role = AuthRoleDeleteRequest { role: ROOT.into() };
        assert_eq!(
            s.role_delete(&del_root_role, &mut Vec::new()),
            Err(EtcdError::InvalidAuthMgmt)
        );
        // Deleting a role takes it from its users.
        s.role_delete(&AuthRoleDeleteRequest { role: "r".into() }, &mut Vec::new())
            .expect("delete role");
        let got = s
            .user_get(&AuthUserGetRequest { name: "u".into() })
            .expect("get");
        assert!(got.roles.is_empty());
        let revoke = AuthUserRevokeRoleRequest {
            name: "u".into(),
            role: "r".into(),
        };
        assert_eq!(
            s.user_revoke_role(&revoke, &mut Vec::new()),
            Err(EtcdError::RoleNotGranted)
        );
        assert_eq!(s.user_list(), vec!["root".to_string(), "u".to_string()]);
    }

    #[test]
    fn permissions_are_checked_at_the_admitted_revision() {
        let mut s = enabled_with_root();
        add_role(&mut s, "r").expect("role");
        add_user(&mut s, "u", "pw").expect("user");
        grant_role(&mut s, "u", "r").expect("grant");
        grant(&mut s, "r", "foo", "", permission::Type::Read);
        grant(&mut s, "r", "dir/", "dir0", permission::Type::Readwrite);
        let u = who(&s, "u");
        assert_eq!(s.check(Some(&u), b"foo", b"", Access::Read), Ok(()));
        assert_eq!(
            s.check(Some(&u), b"foo", b"", Access::Write),
            Err(EtcdError::PermissionDenied)
        );
        // Read on one key is not read from that key onward (GHSA-xg4h-6gfc-h4m8).
        assert_eq!(
            s.check(Some(&u), b"foo", b"\0", Access::Read),
            Err(EtcdError::PermissionDenied)
        );
        assert_eq!(s.check(Some(&u), b"dir/a", b"dir/b", Access::Write), Ok(()));
        assert_eq!(
            s.check(None, b"foo", b"", Access::Read),
            Err(EtcdError::UserEmpty)
        );
        assert_eq!(
            s.check(Some(&who(&s, "ghost")), b"foo", b"", Access::Read),
            Err(EtcdError::PermissionDenied)
        );
        let root = who(&s, ROOT);
        assert_eq!(s.check(Some(&root), b"", b"\0", Access::Write), Ok(()));
        // A change to auth after admission: the request is refused, even
        // where the change did not touch its permission.
        let revoke = AuthRoleRevokePermissionRequest {
            role: "r".into(),
            key: b"foo".to_vec(),
            range_end: Vec::new(),
        };
        s.role_revoke_permission(&revoke, &mut Vec::new())
            .expect("revoke");
        assert_eq!(
            s.check(Some(&u), b"dir/a", b"", Access::Read),
            Err(EtcdError::AuthOldRevision)
        );
        let u = who(&s, "u");
        assert_eq!(
            s.check(Some(&u), b"foo", b"", Access::Read),
            Err(EtcdError::PermissionDenied)
        );
        assert_eq!(
            s.role_revoke_permission(&revoke, &mut Vec::new()),
            Err(EtcdError::PermissionNotGranted)
        );
    }

    #[test]
    fn admin_calls_are_roots() {
        let mut s = AuthStore::default();
        assert_eq!(s.check_admin(None), Ok(()));
        add_user(&mut s, ROOT, "pw").expect("root");
        grant_role(&mut s, ROOT, ROOT).expect("grant");
        add_user(&mut s, "u", "pw").expect("u");
        s.enable(&mut Vec::new()).expect("enable");
        assert_eq!(s.check_admin(None), Err(EtcdError::UserEmpty));
        assert_eq!(
            s.check_admin(Some(&who(&s, "u"))),
            Err(EtcdError::PermissionDenied)
        );
        assert_eq!(
            s.check_admin(Some(&who(&s, "x"))),
            Err(EtcdError::UserNotFound)
        );
        assert_eq!(s.check_admin(Some(&who(&s, ROOT))), Ok(()));
    }

    #[test]
    fn passwords_and_no_password_users() {
        let mut s = enabled_with_root();
        let nopw = AuthUserAddRequest {
            name: "svc".into(),
            options: Some(UserAddOptions { no_password: true }),
            ..Default::default()
        };
        s.user_add(&nopw, &mut Vec::new()).expect("add");
        assert_eq!(s.check_authenticate("svc"), Err(EtcdError::AuthFailed));
        assert_eq!(s.password_hash("svc"), Err(EtcdError::NoPasswordUser));
        assert_eq!(s.check_authenticate("ghost"), Err(EtcdError::AuthFailed));
        let (hash, rev) = s.password_hash(ROOT).expect("root");
        assert!(password::verify("rootpw", &hash));
        assert_eq!(rev, s.revision());
        // An entry of a pre-3.5 member carries the password itself.
        let old = AuthUserAddRequest {
            name: "old".into(),
            password: "pw".into(),
            ..Default::default()
        };
        let mut cheap = AuthStore::new(password::MIN_COST);
        cheap.user_add(&old, &mut Vec::new()).expect("add");
        let stored = &cheap.user("old").expect("user").password;
        assert!(password::verify("pw", stored));
        let bad = AuthUserAddRequest {
            name: "bad".into(),
            hashed_password: "%%%".into(),
            ..Default::default()
        };
        assert_eq!(
            s.user_add(&bad, &mut Vec::new()),
            Err(EtcdError::NoPasswordUser)
        );
    }

    #[test]
    fn role_get_and_permission_grants() {
        let mut s = AuthStore::default();
        add_role(&mut s, ROOT).expect("root role");
        add_role(&mut s, "r").expect("role");
        grant(&mut s, "r", "b", "", permission::Type::Read);
        grant(&mut s, "r", "a", "c", permission::Type::Read);
        // The same range again changes its type, in place.
        grant(&mut s, "r", "b", "", permission::Type::Write);
        let got = s
            .role_get(&AuthRoleGetRequest { role: "r".into() })
            .expect("get");
        let keys: Vec<(&[u8], i32)> = got
            .perm
            .iter()
            .map(|p| (p.key.as_slice(), p.perm_type))
            .collect();
        assert_eq!(keys, vec![(&b"a"[..], 0), (&b"b"[..], 1)]);
        let root = s
            .role_get(&AuthRoleGetRequest { role: ROOT.into() })
            .expect("root");
        assert_eq!(root.perm[0].range_end, vec![0]);
        let none = AuthRoleGrantPermissionRequest {
            name: "r".into(),
            perm: None,
        };
        assert_eq!(
            s.role_grant_permission(&none, &mut Vec::new()),
            Err(EtcdError::PermissionNotGiven)
        );
        let inverted = AuthRoleGrantPermissionRequest {
            name: "r".into(),
            perm: Some(Permission {
                perm_type: 0,
                key: b"b".to_vec(),
                range_end: b"a".to_vec(),
            }),
        };
        assert_eq!(
            s.role_grant_permission(&inverted, &mut Vec::new()),
            Err(EtcdError::InvalidAuthMgmt)
        );
        assert_eq!(s.role_list(), vec!["r".to_string(), "root".to_string()]);
    }

    #[test]
    fn the_rows_written_recover_the_same_store() {
        let mut s = AuthStore::default();
        let mut rows = Vec::new();
        let root = AuthUserAddRequest {
            name: ROOT.into(),
            hashed_password: password::hash_for_proposal("pw", password::MIN_COST).expect("hash"),
            ..Default::default()
        };
        s.user_add(&root, &mut rows).expect("root");
        let grant_root = AuthUserGrantRoleRequest {
            user: ROOT.into(),
            role: ROOT.into(),
        };
        s.user_grant_role(&grant_root, &mut rows).expect("grant");
        s.role_add(&AuthRoleAddRequest { name: "r".into() }, &mut rows)
            .expect("role");
        s.role_delete(&AuthRoleDeleteRequest { role: "r".into() }, &mut rows)
            .expect("del");
        s.enable(&mut rows).expect("enable");
        // Play the rows into three buckets, as the backend would.
        let mut buckets: [BTreeMap<Vec<u8>, Vec<u8>>; 3] = Default::default();
        for row in rows {
            let b = &mut buckets[row.bucket as usize];
            match row.value {
                Some(v) => b.insert(row.key, v),
                None => b.remove(&row.key),
            };
        }
        let pairs = |b: &BTreeMap<Vec<u8>, Vec<u8>>| -> Vec<(Vec<u8>, Vec<u8>)> {
            b.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let back = AuthStore::recover(
            &pairs(&buckets[0]),
            &pairs(&buckets[1]),
            &pairs(&buckets[2]),
            password::MIN_COST,
        )
        .expect("recover");
        assert!(back.is_enabled());
        assert_eq!(back.revision(), s.revision());
        assert_eq!(back.users, s.users);
        assert_eq!(back.roles, s.roles);
        assert_eq!(back.perms, s.perms);
        let short = [(REVISION_KEY.to_vec(), vec![1, 2])];
        assert!(AuthStore::recover(&short, &[], &[], 4).is_err());
    }
}
