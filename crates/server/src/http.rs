//! The HTTP endpoints served beside gRPC on the client port: `/health`,
//! `/version` (etcd's JSON bodies) and the gRPC gateway (`gateway.rs`).
//! (/livez, /readyz and /metrics come with the operations issue.)

use std::sync::Arc;

use api::etcdserverpb::RangeRequest;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use crate::cluster::SERVER_VERSION;
use crate::gateway;
use crate::grpc::Services;
use crate::server::EtcdServer;

pub fn router(server: Arc<EtcdServer>, services: Arc<Services>) -> Router {
    let gateway = gateway::router(services, server.cfg.max_request_bytes);
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .with_state(server)
        .merge(gateway)
        .fallback(not_found)
}

/// A request body read before answering 404 at the most: answering without
/// reading it makes the close reset the connection, and the client may lose
/// the answer.
const NOT_FOUND_BODY_DRAIN_BYTES_MAX: usize = 64 * 1024;

async fn not_found(request: axum::extract::Request) -> StatusCode {
    let _ = axum::body::to_bytes(request.into_body(), NOT_FOUND_BODY_DRAIN_BYTES_MAX).await;
    StatusCode::NOT_FOUND
}

#[derive(Deserialize)]
struct HealthQuery {
    serializable: Option<String>,
}

fn json(status: StatusCode, body: serde_json::Value) -> axum::response::Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `{"health":"true","reason":""}` when the member has a leader and can serve
/// a read (linearizable unless `?serializable=true`); otherwise 503 with
/// `"false"` and the reason, as etcd answers.
async fn health(
    State(server): State<Arc<EtcdServer>>,
    Query(q): Query<HealthQuery>,
) -> axum::response::Response {
    let serializable = q.serializable.as_deref() == Some("true");
    let unhealthy = |reason: &str| {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"health": "false", "reason": reason}),
        )
    };
    if server.raft_status.leader() == 0 {
        return unhealthy("RAFT NO LEADER");
    }
    if !serializable {
        let check = tokio::time::timeout(server.request_timeout(), server.read_barrier()).await;
        if !matches!(check, Ok(Ok(()))) {
            return unhealthy("QGET ERROR");
        }
    }
    let probe = RangeRequest {
        key: b"health".to_vec(),
        keys_only: true,
        limit: 1,
        serializable: true,
        ..Default::default()
    };
    if server.store.range(&probe).is_err() {
        return unhealthy("QGET ERROR");
    }
    json(
        StatusCode::OK,
        serde_json::json!({"health": "true", "reason": ""}),
    )
}

async fn version(State(server): State<Arc<EtcdServer>>) -> axum::response::Response {
    let cluster = server
        .cluster
        .version()
        .unwrap_or_else(|| "not_decided".to_string());
    json(
        StatusCode::OK,
        serde_json::json!({"etcdserver": SERVER_VERSION, "etcdcluster": cluster}),
    )
}
