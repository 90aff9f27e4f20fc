//! The protobuf messages etcd keeps in its raft log files, written by hand
//! with `prost`'s derive (no build script, no `.proto` files at build time).
//!
//! Sources of truth (etcd 3.4 / 3.5): `raft/raftpb/raft.proto`,
//! `wal/walpb/record.proto`, `etcdserver/api/snap/snappb/snap.proto`,
//! `etcdserver/etcdserverpb/etcdserver.proto`.
//!
//! # Byte identity with etcd
//!
//! All of these files are `proto2` compiled with gogoproto. A field marked
//! `(gogoproto.nullable) = false` is a plain Go value that gogo's marshaller
//! writes ALWAYS, zero or not. prost's `required` gives the same bytes: the
//! field is a plain Rust value, encoded every time. Nullable `bytes` fields
//! are written by gogo whenever the Go slice is non-nil, even when empty; we
//! model them as `Option<Vec<u8>>` so an empty-but-present field survives a
//! decode/encode round trip. Both gogo and prost write fields in tag order,
//! and repeated scalars in proto2 are NOT packed (`packed = "false"`).
//!
//! Consequence: decoding a record etcd wrote and encoding it again gives the
//! same bytes (tested against real etcd output in `tests/real_wal.rs`).
//!
//! Left out: raft `Message`, `ConfChangeV2` and the etcdserverpb requests
//! carried inside entries (the caller decodes entry data itself).

/// raftpb.EntryType.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum EntryType {
    /// Data is an application request (etcd: `InternalRaftRequest` or a v2 `Request`).
    Normal = 0,
    /// Data is a [`ConfChange`].
    ConfChange = 1,
    /// Data is a raftpb.ConfChangeV2 (not modelled here).
    ConfChangeV2 = 2,
}

/// raftpb.ConfChangeType.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ConfChangeType {
    /// ConfChangeAddNode.
    AddNode = 0,
    /// ConfChangeRemoveNode.
    RemoveNode = 1,
    /// ConfChangeUpdateNode.
    UpdateNode = 2,
    /// ConfChangeAddLearnerNode.
    AddLearnerNode = 3,
}

/// raftpb.Entry: one raft log entry (WAL record type 2 carries one).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Entry {
    /// `Type`, field 1 (an [`EntryType`] number).
    #[prost(enumeration = "EntryType", required, tag = "1")]
    pub r#type: i32,
    /// `Term`, field 2.
    #[prost(uint64, required, tag = "2")]
    pub term: u64,
    /// `Index`, field 3.
    #[prost(uint64, required, tag = "3")]
    pub index: u64,
    /// `Data`, field 4 (absent for the empty entry a new leader appends).
    #[prost(bytes = "vec", optional, tag = "4")]
    pub data: Option<Vec<u8>>,
}

/// raftpb.HardState (WAL record type 3).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct HardState {
    /// Current term.
    #[prost(uint64, required, tag = "1")]
    pub term: u64,
    /// Vote in the current term (0: none).
    #[prost(uint64, required, tag = "2")]
    pub vote: u64,
    /// Commit index.
    #[prost(uint64, required, tag = "3")]
    pub commit: u64,
}

impl HardState {
    /// raft's `IsEmptyHardState`: etcd never writes an all-zero state record.
    pub fn is_empty(&self) -> bool {
        self.term == 0 && self.vote == 0 && self.commit == 0
    }
}

/// raftpb.ConfState: the membership a snapshot was taken with.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ConfState {
    /// Voting members.
    #[prost(uint64, repeated, packed = "false", tag = "1")]
    pub voters: Vec<u64>,
    /// Learners.
    #[prost(uint64, repeated, packed = "false", tag = "2")]
    pub learners: Vec<u64>,
    /// Outgoing voters of a joint configuration.
    #[prost(uint64, repeated, packed = "false", tag = "3")]
    pub voters_outgoing: Vec<u64>,
    /// Learners to add when leaving a joint configuration.
    #[prost(uint64, repeated, packed = "false", tag = "4")]
    pub learners_next: Vec<u64>,
    /// Leave the joint configuration automatically.
    #[prost(bool, required, tag = "5")]
    pub auto_leave: bool,
}

/// raftpb.SnapshotMetadata.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SnapshotMetadata {
    /// Membership at `index`.
    #[prost(message, required, tag = "1")]
    pub conf_state: ConfState,
    /// Last log index the snapshot covers.
    #[prost(uint64, required, tag = "2")]
    pub index: u64,
    /// Term of that entry.
    #[prost(uint64, required, tag = "3")]
    pub term: u64,
}

/// raftpb.Snapshot (the payload of a `.snap` file). etcd puts the v2 store
/// JSON in `data` (see [`crate::snap::v2store`]).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Snapshot {
    /// Application state (etcd: v2 store JSON).
    #[prost(bytes = "vec", optional, tag = "1")]
    pub data: Option<Vec<u8>>,
    /// Index, term and membership.
    #[prost(message, required, tag = "2")]
    pub metadata: SnapshotMetadata,
}

/// raftpb.ConfChange (the data of an [`EntryType::ConfChange`] entry; etcd
/// puts the JSON of a `membership.Member` in `context`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ConfChange {
    /// `ID`, field 1 (etcd: the request id).
    #[prost(uint64, required, tag = "1")]
    pub id: u64,
    /// `Type`, field 2 (a [`ConfChangeType`] number).
    #[prost(enumeration = "ConfChangeType", required, tag = "2")]
    pub r#type: i32,
    /// `NodeID`, field 3.
    #[prost(uint64, required, tag = "3")]
    pub node_id: u64,
    /// `Context`, field 4.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub context: Option<Vec<u8>>,
}

/// walpb.Record: one framed WAL record.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct WalRecord {
    /// Record type (1 metadata, 2 entry, 3 state, 4 crc, 5 snapshot).
    #[prost(int64, required, tag = "1")]
    pub r#type: i64,
    /// Rolling CRC-32C after this record's data (crc records: the previous
    /// segment's final value).
    #[prost(uint32, required, tag = "2")]
    pub crc: u32,
    /// Payload (absent in crc records).
    #[prost(bytes = "vec", optional, tag = "3")]
    pub data: Option<Vec<u8>>,
}

/// walpb.Snapshot: the data of a WAL snapshot record.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct WalSnapshotPb {
    /// Snapshot index.
    #[prost(uint64, required, tag = "1")]
    pub index: u64,
    /// Snapshot term.
    #[prost(uint64, required, tag = "2")]
    pub term: u64,
    /// Membership (etcd 3.5+; 3.4 neither writes nor reads it, and skips
    /// the unknown field when it reads a 3.5 WAL).
    #[prost(message, optional, tag = "3")]
    pub conf_state: Option<ConfState>,
}

/// etcdserverpb.Metadata: the data of the WAL metadata record.
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct Metadata {
    /// This member's id.
    #[prost(uint64, required, tag = "1")]
    pub node_id: u64,
    /// The cluster's id.
    #[prost(uint64, required, tag = "2")]
    pub cluster_id: u64,
}

/// snappb.Snapshot: the whole content of a `.snap` file.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SnapFile {
    /// CRC-32C (Castagnoli) of `data`.
    #[prost(uint32, required, tag = "1")]
    pub crc: u32,
    /// An encoded [`Snapshot`].
    #[prost(bytes = "vec", optional, tag = "2")]
    pub data: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn zero_scalars_are_written() {
        let e = Entry::default();
        // Type=0, Term=0, Index=0, no Data: gogo writes 08 00 10 00 18 00.
        assert_eq!(e.encode_to_vec(), [0x08, 0, 0x10, 0, 0x18, 0]);
        let e = Entry {
            data: Some(Vec::new()),
            ..Default::default()
        };
        assert_eq!(e.encode_to_vec(), [0x08, 0, 0x10, 0, 0x18, 0, 0x22, 0]);
        let back = Entry::decode(&[0x08, 0, 0x10, 0, 0x18, 0, 0x22, 0][..]).unwrap();
        assert_eq!(back.data, Some(Vec::new()));
    }

    #[test]
    fn conf_state_is_unpacked() {
        let c = ConfState {
            voters: vec![1, 2],
            ..Default::default()
        };
        assert_eq!(c.encode_to_vec(), [0x08, 1, 0x08, 2, 0x28, 0]);
        // A snapshot metadata always carries its (possibly empty) ConfState.
        let m = SnapshotMetadata::default();
        assert_eq!(m.encode_to_vec(), [0x0a, 2, 0x28, 0, 0x10, 0, 0x18, 0]);
    }

    #[test]
    fn conf_change_field_order() {
        let cc = ConfChange {
            id: 7,
            r#type: ConfChangeType::AddLearnerNode as i32,
            node_id: 9,
            context: None,
        };
        assert_eq!(cc.encode_to_vec(), [0x08, 7, 0x10, 3, 0x18, 9]);
    }
}
