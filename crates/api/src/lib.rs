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
//! - [`error`]: etcd's client-visible errors with their gRPC codes and
//!   `etcdserver: …` strings, in one table.

pub mod error;

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod authpb {
    tonic::include_proto!("authpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub use error::EtcdError;
