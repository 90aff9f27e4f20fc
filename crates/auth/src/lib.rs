//! etcd's authentication and role-based access control: users, roles and
//! key permissions as every member applies them from the log
//! ([`store::AuthStore`]), merged permission sets ([`perms`]) and
//! passwords ([`password`]), and the simple tokens a member holds ([`token`]).
//!
//! The server proposes auth changes through raft and applies them with
//! [`store::AuthStore`], writing the rows it returns in the same backend
//! batch; it checks every request against the store at admission and again
//! at apply, at the auth revision the request was admitted at.

pub mod password;
pub mod perms;
pub mod store;
pub mod token;

pub use store::{Access, AuthInfo, AuthStore, Bucket, Row};
