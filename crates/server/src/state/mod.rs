//! What every member holds the same of, besides the keys: cluster-wide
//! alarms (`alarm`), the backend quota (`quota`), the lessor's recovery
//! and rows (`leases`), users, roles and tokens (`auth`) and HashKV off
//! the async threads (`hash`).
//! Membership and versions live in the `datadir` crate
//! (`datadir::membership`), which founding and restore share.
//!
//! May import: the crate root (`limits`, `status`, `metrics`), `transport`,
//! and the `mvcc`, `lease`, `auth` and `datadir` crates.

pub mod alarm;
pub mod auth;
pub mod hash;
pub mod leases;
pub mod quota;
