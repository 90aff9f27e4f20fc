//! The member's auth: the auth store as applied (changed by the applier
//! only, read by the edges to check requests) and the simple tokens this
//! member holds. Its rows live in the backend's `auth`, `authUsers` and
//! `authRoles` tables, written in the applier's batch.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use auth::token::SimpleTokens;
use auth::{AuthStore, Bucket, Row};
use mvcc::AuthTable;

use crate::status::{Context, Result};

pub struct Auth {
    store: RwLock<AuthStore>,
    tokens: SimpleTokens,
    bcrypt_cost: u32,
}

fn table(bucket: Bucket) -> AuthTable {
    match bucket {
        Bucket::Auth => AuthTable::Auth,
        Bucket::Users => AuthTable::Users,
        Bucket::Roles => AuthTable::Roles,
    }
}

/// The auth store as `backend` holds it.
fn load(backend: &mvcc::Store, bcrypt_cost: u32) -> Result<AuthStore> {
    let rows = |t| backend.auth_rows(t).context("read the auth tables");
    AuthStore::recover(
        &rows(AuthTable::Auth)?,
        &rows(AuthTable::Users)?,
        &rows(AuthTable::Roles)?,
        bcrypt_cost,
    )
    .context("the backend's auth tables are unreadable")
}

impl Auth {
    /// The auth state of `backend`; `bcrypt_cost` and `token_ttl` are the
    /// member's (`--bcrypt-cost`, `--auth-token-ttl`).
    pub fn recover(backend: &mvcc::Store, bcrypt_cost: u32, token_ttl: Duration) -> Result<Auth> {
        let bcrypt_cost = auth::password::effective_cost(bcrypt_cost);
        let store = load(backend, bcrypt_cost)?;
        let tokens = SimpleTokens::new(token_ttl);
        if store.is_enabled() {
            tokens.enable();
        }
        Ok(Auth {
            store: RwLock::new(store),
            tokens,
            bcrypt_cost,
        })
    }

    /// Reads the state again after the backend was replaced (a snapshot
    /// from the leader). Tokens stay, as in etcd's `Recover`, unless auth
    /// is off in the snapshot; a token of a user the snapshot no longer has
    /// stands for no one (its requests are refused).
    pub fn reload(&self, backend: &mvcc::Store) -> Result<()> {
        let store = load(backend, self.bcrypt_cost)?;
        if store.is_enabled() {
            self.tokens.enable();
        } else {
            self.tokens.disable();
        }
        *self.write() = store;
        Ok(())
    }

    /// The store, to check a request against.
    pub fn read(&self) -> RwLockReadGuard<'_, AuthStore> {
        self.store.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The store, to change (the applier only).
    pub fn write(&self) -> RwLockWriteGuard<'_, AuthStore> {
        self.store.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn tokens(&self) -> &SimpleTokens {
        &self.tokens
    }

    /// bcrypt's cost for hashing passwords before proposing them.
    pub fn bcrypt_cost(&self) -> u32 {
        self.bcrypt_cost
    }
}

/// Writes the rows of an auth change in `wb`.
pub fn write_rows(wb: &mut mvcc::WriteBatch<'_>, rows: Vec<Row>) {
    for row in rows {
        wb.put_auth_row(table(row.bucket), row.key, row.value);
    }
}
