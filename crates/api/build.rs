//! Compiles the .proto files with protox (pure Rust: no protoc needed on the
//! machine), then generates serde impls with the proto3 JSON mapping for the
//! HTTP/JSON gateway (pbjson-build, from the same descriptors).

use prost::Message;

/// Packages the gateway speaks JSON for, as etcd's grpc-gateway does.
const JSON_PACKAGES: [&str; 5] = [
    ".mvccpb",
    ".authpb",
    ".etcdserverpb",
    ".v3lockpb",
    ".v3electionpb",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/mvccpb/kv.proto",
        "proto/authpb/auth.proto",
        "proto/etcdserverpb/rpc.proto",
        "proto/etcdserverpb/raft_internal.proto",
        "proto/peerpb/peer.proto",
        "proto/leasepb/lease.proto",
        "proto/v3lockpb/v3lock.proto",
        "proto/v3electionpb/v3election.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(files, ["proto"])?;
    let encoded = descriptors.encode_to_vec();
    // Kept for tools that print messages by reflection (etcdctl's JSON writer).
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("descriptors.bin"), &encoded)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    // etcd's gateway (grpc-gateway with OrigName) writes the .proto field
    // names and ignores fields it does not know.
    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&JSON_PACKAGES)?;
    Ok(())
}
