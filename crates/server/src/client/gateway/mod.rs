//! The gRPC gateway: etcd's v3 API as HTTP/JSON on the client port, for
//! curl, the Python `etcd3gw` client and other HTTP clients.
//!
//! etcd serves it with grpc-gateway, a proxy that dials the member's own
//! gRPC port; here each route decodes its JSON body into the protobuf
//! request and calls the same service instance the gRPC routes use (through
//! its tonic trait), so there is one implementation of every call.
//!
//! ```text
//! POST /v3/kv/range  {"key":"Zm9v"}
//!   └─ body.rs: bounded read, JSON (proto3 mapping, generated in `api` by
//!      pbjson) → RangeRequest, Authorization header → `token` metadata
//!        └─ grpc::KvService::range
//!             └─ reply.rs: RangeResponse → JSON (proto field names, int64 as
//!                strings, bytes as base64, zero values left out)
//! ```
//! - Paths are etcd 3.5's, served under `/v3/`, `/v3beta/` (etcd 3.4's
//!   clients) and `/v3alpha/` (3.3's). Only POST is served, as etcd does.
//! - Streams (watch, lease keep-alive, election observe, snapshot) answer
//!   one `{"result":…}` line per message while the request stays open; the
//!   request body of watch and keep-alive may hold many JSON values.
//! - `/v3/auth/*` call the Auth service; the `Authorization` header carries
//!   the token (as `token` metadata), on every route.
//!
//! Left out: the websocket upgrade of streaming routes (etcd's wsproxy), and
//! etcd's access controller (`--cors`, `--host-whitelist`), which is not
//! specific to the gateway.

mod body;
mod reply;

use std::future::Future;
use std::sync::Arc;

use api::etcdserverpb::auth_server::Auth;
use api::etcdserverpb::cluster_server::Cluster;
use api::etcdserverpb::kv_server::Kv;
use api::etcdserverpb::lease_server::Lease;
use api::etcdserverpb::maintenance_server::Maintenance;
use api::etcdserverpb::watch_server::Watch;
use api::v3electionpb::election_server::Election;
use api::v3lockpb::lock_server::Lock;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_stream::Stream;
use tonic::Status;

use crate::client::grpc::Services;
use body::Limits;

/// The API version prefixes served: etcd 3.5's, 3.4's and 3.3's.
pub const PREFIXES: [&str; 3] = ["/v3", "/v3beta", "/v3alpha"];

struct Gateway {
    services: Arc<Services>,
    limits: Limits,
}

type GatewayState = State<Arc<Gateway>>;

/// The gateway's routes under every prefix.
pub fn router(services: Arc<Services>, max_request_bytes: u64) -> Router {
    let gateway = Arc::new(Gateway {
        services,
        limits: Limits::new(max_request_bytes),
    });
    let api = api_routes();
    PREFIXES
        .into_iter()
        .fold(Router::new(), |router, prefix| {
            router.nest(prefix, api.clone())
        })
        .with_state(gateway)
}

/// A unary route: `unary!(service, method, RequestType)`.
macro_rules! unary {
    ($service:ident, $method:ident) => {
        any(|State(gw): GatewayState, request: Request| async move {
            let service = gw.services.$service.clone();
            unary(
                &gw,
                request,
                move |r| async move { service.$method(r).await },
            )
            .await
        })
    };
}

/// A route whose answer is a stream (its request is one message).
macro_rules! server_stream {
    ($service:ident, $method:ident) => {
        any(|State(gw): GatewayState, request: Request| async move {
            let service = gw.services.$service.clone();
            server_stream(
                &gw,
                request,
                move |r| async move { service.$method(r).await },
            )
            .await
        })
    };
}

/// A route whose request and answer are both streams.
macro_rules! bidi_stream {
    ($service:ident, $method:ident) => {
        any(|State(gw): GatewayState, request: Request| async move {
            let service = gw.services.$service.clone();
            bidi_stream(
                &gw,
                request,
                move |r| async move { service.$method(r).await },
            )
            .await
        })
    };
}

/// Paths as etcd 3.5's *.pb.gw.go register them (Hash and HashKV share
/// `/maintenance/hash`; the first registered, Hash, serves it).
fn api_routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/kv/range", unary!(kv, range))
        .route("/kv/put", unary!(kv, put))
        .route("/kv/deleterange", unary!(kv, delete_range))
        .route("/kv/txn", unary!(kv, txn))
        .route("/kv/compaction", unary!(kv, compact))
        .route("/watch", bidi_stream!(watch, watch))
        .route("/lease/grant", unary!(lease, lease_grant))
        .route("/lease/revoke", unary!(lease, lease_revoke))
        .route("/kv/lease/revoke", unary!(lease, lease_revoke))
        .route("/lease/keepalive", bidi_stream!(lease, lease_keep_alive))
        .route("/lease/timetolive", unary!(lease, lease_time_to_live))
        .route("/kv/lease/timetolive", unary!(lease, lease_time_to_live))
        .route("/lease/leases", unary!(lease, lease_leases))
        .route("/kv/lease/leases", unary!(lease, lease_leases))
        .route("/cluster/member/add", unary!(cluster, member_add))
        .route("/cluster/member/remove", unary!(cluster, member_remove))
        .route("/cluster/member/update", unary!(cluster, member_update))
        .route("/cluster/member/list", unary!(cluster, member_list))
        .route("/cluster/member/promote", unary!(cluster, member_promote))
        .route("/maintenance/alarm", unary!(maintenance, alarm))
        .route("/maintenance/status", unary!(maintenance, status))
        .route("/maintenance/defragment", unary!(maintenance, defragment))
        .route("/maintenance/hash", unary!(maintenance, hash))
        .route(
            "/maintenance/snapshot",
            server_stream!(maintenance, snapshot),
        )
        .route(
            "/maintenance/transfer-leadership",
            unary!(maintenance, move_leader),
        )
        .route("/maintenance/downgrade", unary!(maintenance, downgrade))
        .route("/auth/enable", unary!(auth, auth_enable))
        .route("/auth/disable", unary!(auth, auth_disable))
        .route("/auth/status", unary!(auth, auth_status))
        .route("/auth/authenticate", unary!(auth, authenticate))
        .route("/auth/user/add", unary!(auth, user_add))
        .route("/auth/user/get", unary!(auth, user_get))
        .route("/auth/user/list", unary!(auth, user_list))
        .route("/auth/user/delete", unary!(auth, user_delete))
        .route("/auth/user/changepw", unary!(auth, user_change_password))
        .route("/auth/user/grant", unary!(auth, user_grant_role))
        .route("/auth/user/revoke", unary!(auth, user_revoke_role))
        .route("/auth/role/add", unary!(auth, role_add))
        .route("/auth/role/get", unary!(auth, role_get))
        .route("/auth/role/list", unary!(auth, role_list))
        .route("/auth/role/delete", unary!(auth, role_delete))
        .route("/auth/role/grant", unary!(auth, role_grant_permission))
        .route("/auth/role/revoke", unary!(auth, role_revoke_permission))
        .route("/lock/lock", unary!(lock, lock))
        .route("/lock/unlock", unary!(lock, unlock))
        .route("/election/campaign", unary!(election, campaign))
        .route("/election/proclaim", unary!(election, proclaim))
        .route("/election/leader", unary!(election, leader))
        .route("/election/observe", server_stream!(election, observe))
        .route("/election/resign", unary!(election, resign))
        .route("/{*rest}", any(|| async { reply::not_found() }))
}

/// Only POST reaches a call; OPTIONS is answered empty (etcd answers every
/// preflight so), anything else with 405.
fn refuse_method(request: &Request) -> Option<Response> {
    match *request.method() {
        Method::POST => None,
        Method::OPTIONS => Some(StatusCode::OK.into_response()),
        _ => Some(reply::method_not_allowed()),
    }
}

/// Reads and decodes a one-message request body.
async fn one_message<T>(gw: &Gateway, request: Request) -> Result<tonic::Request<T>, Response>
where
    T: Message + DeserializeOwned + Default,
{
    if let Some(refused) = refuse_method(&request) {
        return Err(refused);
    }
    let (parts, body) = request.into_parts();
    let message = async {
        let bytes = body::read_limited(&parts.headers, body, gw.limits.body_bytes_max).await?;
        let message: T = body::decode_first(&bytes)?;
        gw.limits.check_message(&message)?;
        Ok::<_, Status>(message)
    };
    match message.await {
        Ok(message) => Ok(body::grpc_request(&parts.headers, message)),
        Err(status) => Err(reply::error(&status)),
    }
}

async fn unary<Req, Resp, F, Fut>(gw: &Gateway, request: Request, call: F) -> Response
where
    Req: Message + DeserializeOwned + Default,
    Resp: Serialize,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let request = match one_message::<Req>(gw, request).await {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    match call(request).await {
        Ok(response) => reply::message(response.get_ref()),
        Err(status) => reply::error(&status),
    }
}

async fn server_stream<Req, Resp, S, F, Fut>(gw: &Gateway, request: Request, call: F) -> Response
where
    Req: Message + DeserializeOwned + Default,
    Resp: Serialize + Send + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + 'static,
    F: FnOnce(tonic::Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<S>, Status>>,
{
    let request = match one_message::<Req>(gw, request).await {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    match call(request).await {
        Ok(response) => reply::stream(response.into_inner()).await,
        Err(status) => reply::error(&status),
    }
}

async fn bidi_stream<Req, Resp, S, F, Fut>(gw: &Gateway, request: Request, call: F) -> Response
where
    Req: Message + DeserializeOwned + Default + Send + 'static,
    Resp: Serialize + Send + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + 'static,
    F: FnOnce(tonic::Request<tonic::Streaming<Req>>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<S>, Status>>,
{
    if let Some(refused) = refuse_method(&request) {
        return refused;
    }
    let (parts, body) = request.into_parts();
    let requests = body::request_stream::<Req>(body, gw.limits);
    match call(body::grpc_request(&parts.headers, requests)).await {
        Ok(response) => reply::stream(response.into_inner()).await,
        Err(status) => reply::error(&status),
    }
}
