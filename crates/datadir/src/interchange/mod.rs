//! Interchange with the real etcd's data: the one place that turns etcd's
//! files into ours and ours into etcd's, and that tells whose a data dir is
//! before anything touches it.
//!
//! ```text
//!  etcd's bbolt file ──backend::import──▶ our backend image (mvcc::image)
//!     (snapshot save,                        ├─▶ etcdutl snapshot restore
//!      member/snap/db)                       └─▶ etcdutl snapshot status, hashkv
//!  our backend (ImageSource) ──backend::BboltRows──▶ etcdfmt::bbolt::Plan
//!     + cluster view (members, version)            └─▶ Maintenance.Snapshot
//!  data dir ──datadir::inspect──▶ Fresh | Ours | Etcd | refuse (nothing written)
//! ```
//!
//! # Invariants
//!
//! - Nothing here writes into a data dir it inspects: the answer comes from
//!   reading the first bytes of its files.
//! - Every row etcd keeps is either carried over or refused: a bucket we do
//!   not know (a newer etcd) stops an import with its name, it is never
//!   dropped silently. Membership buckets are read (and checked) but not
//!   stored in our backend: our cluster metadata lives in raft snapshots,
//!   and a restore writes a new membership anyway, as etcd's does.
//! - Rows of `key`, `lease`, `alarm` and the auth buckets are byte for byte
//!   etcd's, so HashKV is equal on both sides of a conversion.
//!
//! Whole member dirs go both ways too: `from_etcd` converts a stopped etcd
//! member's dir at start, `to_etcd` turns ours into etcd 3.5's files for
//! `etcdutl migrate --target-version 3.5`; both build the new dir beside
//! the old one and swap it in (`staging`), keeping the original.

pub mod backend;
pub mod datadir;
pub mod entries;
pub mod from_etcd;
pub mod pipe;
pub mod staging;
pub mod to_etcd;

use api::etcdserverpb::Member;
use etcdfmt::schema::MemberJson;

/// A member as etcd writes it (conf change contexts, the `members` bucket).
pub fn member_to_json(m: Member) -> MemberJson {
    MemberJson {
        id: m.id,
        peer_urls: m.peer_ur_ls,
        is_learner: m.is_learner,
        name: m.name,
        client_urls: m.client_ur_ls,
    }
}

/// A member of etcd's as ours.
pub fn member_from_json(m: MemberJson) -> Member {
    Member {
        id: m.id,
        name: m.name,
        peer_ur_ls: m.peer_urls,
        client_ur_ls: m.client_urls,
        is_learner: m.is_learner,
    }
}
