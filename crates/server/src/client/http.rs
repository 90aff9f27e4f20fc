//! The HTTP endpoints served beside gRPC on the client port: `/version`,
//! `/metrics`, and the health endpoints of `health.rs` (`/health`, `/livez`,
//! `/readyz`). `--listen-metrics-urls` listeners serve [`metrics_router`]:
//! `/metrics` and the health endpoints only. The gRPC gateway (`gateway/`) is merged into the client port's router.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::Router;

use crate::client::gateway;
use crate::client::grpc::Services;
use crate::server::EtcdServer;
use datadir::membership::{CLUSTER_VERSION, SERVER_VERSION};

pub fn router(server: Arc<EtcdServer>, services: Arc<Services>) -> Router {
    let gateway = gateway::router(services, server.config().max_request_bytes);
    crate::client::health::routes(Router::new())
        .route("/version", get(version))
        .route("/metrics", any(metrics))
        .with_state(server)
        .merge(gateway)
        .fallback(not_found)
}

/// The router of a `--listen-metrics-urls` listener.
pub fn metrics_router(server: Arc<EtcdServer>) -> Router {
    crate::client::health::routes(Router::new())
        .route("/metrics", any(metrics))
        .fallback(not_found)
        .with_state(server)
}

/// A request body read before answering 404 at the most: answering without
/// reading it makes the close reset the connection, and the client may lose
/// the answer.
const NOT_FOUND_BODY_DRAIN_BYTES_MAX: usize = 64 * 1024;

async fn not_found(request: axum::extract::Request) -> axum::response::Response {
    let _ = axum::body::to_bytes(request.into_body(), NOT_FOUND_BODY_DRAIN_BYTES_MAX).await;
    // Go's http.NotFound.
    (
        StatusCode::NOT_FOUND,
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            ),
            (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        "404 page not found\n",
    )
        .into_response()
}

fn json(status: StatusCode, body: serde_json::Value) -> axum::response::Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `/metrics`: the Prometheus text format, as etcd's promhttp handler serves it.
async fn metrics(State(server): State<Arc<EtcdServer>>) -> axum::response::Response {
    let body = crate::client::metrics::render(&server);
    (
        StatusCode::OK,
        [(
            axum::http::header::CONTENT_TYPE,
            crate::client::metrics::CONTENT_TYPE,
        )],
        body,
    )
        .into_response()
}

/// etcd 3.6's `/version`: server, cluster and storage version (the storage
/// version the backend records, else the cluster version it follows; as
/// Status reports it).
async fn version(State(server): State<Arc<EtcdServer>>) -> axum::response::Response {
    let cluster = server.cluster().version();
    let storage = server
        .store()
        .storage_version()
        .or_else(|| cluster.clone())
        .unwrap_or_else(|| CLUSTER_VERSION.to_string());
    let cluster = cluster.unwrap_or_else(|| "not_decided".to_string());
    json(
        StatusCode::OK,
        serde_json::json!({"etcdserver": SERVER_VERSION, "etcdcluster": cluster, "storage": storage}),
    )
}
