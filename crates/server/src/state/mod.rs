//! What every member holds the same of, besides the keys: cluster-wide
//! alarms (`alarm`), the backend quota (`quota`) and the lessor on the
//! server (`leases`: recovery from the backend, the leader's expiry and
//! checkpoint loop, keep-alives). Membership and versions live in the
//! `datadir` crate (`datadir::membership`), which founding and restore share.
//!
//! May import: the crate root (`limits`, `status`), `peer` (keep-alives
//! forwarded to the leader), and the `mvcc`, `lease` and `datadir` crates.
//! Known import still to be cut (issue 14): `server` (the expiry loop
//! proposes through the server handle; it belongs in `duties`).

pub mod alarm;
pub mod leases;
pub mod quota;
