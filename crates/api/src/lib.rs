//! etcd's v3 wire protocol.
//!
//! The messages and services are generated from the .proto files under
//! `proto/`, written from etcd's wire contract: package, message, field and
//! service names and numbers are the ones every etcd client speaks.
//!
//! - [`mvccpb`]: `KeyValue` and `Event`.
//! - [`authpb`]: users, roles and permissions.
//! - [`etcdserverpb`]: the KV, Watch, Lease, Cluster, Maintenance and Auth
//!   services, and `InternalRaftRequest`, the payload of a raft log entry.
//! - [`leasepb`]: a lease as the backend stores it.
//! - [`v3lockpb`], [`v3electionpb`]: the Lock and Election services.
//! - [`peerpb`]: our peer protocol (raft messages between members).
//! - [`error`]: etcd's client-visible errors with their gRPC codes and
//!   `etcdserver: …` strings, in one table.

pub mod error;

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}

pub mod authpb {
    tonic::include_proto!("authpb");
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}

pub mod leasepb {
    tonic::include_proto!("leasepb");
}

pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}

pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}

/// Generated code for `etcdrs.peer.v1` refers to other packages by relative path,
/// so it lives at the same depth as its package name.
pub mod etcdrs {
    pub mod peer {
        pub mod v1 {
            tonic::include_proto!("etcdrs.peer.v1");
        }
    }
}

/// Our member-to-member protocol (raft messages, snapshots and membership on the peer port).
pub use etcdrs::peer::v1 as peerpb;

pub use error::EtcdError;

/// The etcd release whose API, outputs and semantics these binaries speak.
pub const ETCD_VERSION: &str = "3.6.0";

/// Its API version ("3.6"): what `etcdctl version` and the cluster version use.
pub const API_VERSION: &str = "3.6";

/// The encoded `FileDescriptorSet` of every .proto file above, for tools
/// that walk messages by reflection (etcdctl prints Go-style JSON with it).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
