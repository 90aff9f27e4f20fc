//! The gRPC services of etcd's v3 API: KV, Watch, Lease, Cluster,
//! Maintenance, Auth, Lock and Election, and who each request comes from
//! (its token).

mod auth;
mod cluster;
mod concurrency;
mod kv;
mod lease;
mod maintenance;
mod snapshot;
mod watch;

use std::sync::Arc;

use crate::limits;
use crate::server::{Caller, EtcdServer};

pub use auth::AuthService;
pub use cluster::ClusterService;
pub use concurrency::{ElectionService, LockService};
pub use kv::KvService;
pub use lease::LeaseService;
pub use maintenance::MaintenanceService;
pub use watch::{run_sync as run_watch_sync, WatchService};

/// The token a request carries: gRPC metadata `token` (clientv3), or
/// `authorization` (the gateway, and the gRPC-gateway swagger name).
pub fn token<T>(request: &tonic::Request<T>) -> Option<String> {
    let md = request.metadata();
    md.get("token")
        .or_else(|| md.get("authorization"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Who a request comes from (etcd's `AuthInfoFromCtx`, then
/// `AuthInfoFromTLS`): its token, or else its client certificate's name.
pub async fn caller<T>(
    server: &EtcdServer,
    request: &tonic::Request<T>,
) -> Result<Caller, tonic::Status> {
    let cert_name = request
        .extensions()
        .get::<crate::client::serve::CertName>()
        .map(|n| n.0.as_str());
    Ok(server.caller(token(request).as_deref(), cert_name).await?)
}

/// One instance of each client service, shared by the gRPC routes and the
/// HTTP/JSON gateway (so both draw, e.g., watch stream IDs from one counter).
pub struct Services {
    pub kv: Arc<KvService>,
    pub watch: Arc<WatchService>,
    pub lease: Arc<LeaseService>,
    pub cluster: Arc<ClusterService>,
    pub maintenance: Arc<MaintenanceService>,
    pub auth: Arc<AuthService>,
    pub lock: Arc<LockService>,
    pub election: Arc<ElectionService>,
}

impl Services {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        Services {
            kv: Arc::new(KvService::new(server.clone())),
            watch: Arc::new(WatchService::new(server.clone())),
            lease: Arc::new(LeaseService::new(server.clone())),
            cluster: Arc::new(ClusterService::new(server.clone())),
            maintenance: Arc::new(MaintenanceService::new(server.clone())),
            auth: Arc::new(AuthService::new(server.clone())),
            lock: Arc::new(LockService::new(server.clone())),
            election: Arc::new(ElectionService::new(server)),
        }
    }
}

/// The gRPC routes for the client listener, with receive limits sized from
/// --max-request-bytes as etcd sizes them.
pub fn routes(services: &Services, max_request_bytes: u64) -> tonic::service::Routes {
    use api::etcdserverpb::{
        cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
        maintenance_server::MaintenanceServer, watch_server::WatchServer,
    };
    use api::v3electionpb::election_server::ElectionServer;
    use api::v3lockpb::lock_server::LockServer;
    let max_recv = max_request_bytes as usize + limits::GRPC_OVERHEAD_BYTES;
    let kv = KvServer::from_arc(services.kv.clone())
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let maintenance = MaintenanceServer::from_arc(services.maintenance.clone())
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let watch = WatchServer::from_arc(services.watch.clone())
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let lock = LockServer::from_arc(services.lock.clone())
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let election = ElectionServer::from_arc(services.election.clone())
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let lease = LeaseServer::from_arc(services.lease.clone())
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let cluster = ClusterServer::from_arc(services.cluster.clone())
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    let auth = api::etcdserverpb::auth_server::AuthServer::from_arc(services.auth.clone())
        .max_decoding_message_size(max_recv)
        .max_encoding_message_size(usize::MAX);
    tonic::service::Routes::new(kv)
        .add_service(auth)
        .add_service(maintenance)
        .add_service(watch)
        .add_service(lease)
        .add_service(lock)
        .add_service(election)
        .add_service(cluster)
}
