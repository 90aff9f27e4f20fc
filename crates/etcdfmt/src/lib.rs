//! etcd's on-disk formats, read and written by our own code, so that our
//! member can take over a stopped etcd member's data and give it back, and
//! so that snapshot files travel both ways between etcd and etcd-rs.
//!
//! # Layout
//!
//! - [`bbolt`]: bbolt's page format (etcd's backend `member/snap/db`, and
//!   every `etcdctl snapshot save` file): a streaming reader and a bulk
//!   writer.
//! - [`schema`]: etcd's buckets and the encodings of the rows etcd keeps in
//!   them (meta keys, revision keys), for 3.4, 3.5 and 3.6.
//! - [`wal`]: etcd's write-ahead log (`member/wal/*.wal`): record framing,
//!   CRC chain, segments.
//! - [`raftpb`]: the protobuf messages of the WAL and snap files
//!   (raftpb, walpb, snappb, etcdserverpb.Metadata), byte-identical to
//!   gogoproto's encoding.
//! - [`snap`]: etcd's raft snapshot files (`member/snap/*.snap`, snappb) and
//!   the v2 store JSON they carry (membership, cluster version).
//!
//! This crate knows nothing of our own formats (`wal`, `mvcc`): converting
//! between the two is the caller's job. It has no async and no server
//! dependencies, so offline tools link it cheaply.

pub mod bbolt;
pub mod raftpb;
pub mod schema;
pub mod snap;
pub mod wal;

#[cfg(test)]
mod test_rng;
