//! gRPC server metrics, measured in one middleware around the gRPC routes:
//! go-grpc-prometheus's families as etcd registers them
//! (`grpc_server_started_total`, `grpc_server_handled_total`,
//! `grpc_server_msg_received_total`, `grpc_server_msg_sent_total`, and with
//! `--metrics=extensive` `grpc_server_handling_seconds`), etcd's
//! `etcd_network_client_grpc_{sent,received}_bytes_total` and
//! `etcd_server_client_requests_total`.
//!
//! ```text
//!  request ──▶ path → method (fixed table; other paths are not counted)
//!              started +1, client_requests{type, client_api_version} +1
//!              request body: gRPC frames counted as they are read
//!                            (msg_received +1, received_bytes += payload length)
//!  response ─▶ grpc-status in the headers (trailers-only answer): handled{code} +1
//!              otherwise the body is wrapped: frames → msg_sent, sent_bytes;
//!              grpc-status in the trailers → handled{code};
//!              body dropped before its trailers (client went away) → Canceled
//! ```
//! Counters are pre-created for every method at start, as
//! go-grpc-prometheus does, so each update is one atomic add.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::Frame;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

use super::{register, MetricsLevel};

/// How an RPC streams, with go-grpc-prometheus's label values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RpcType {
    Unary,
    ServerStream,
    BidiStream,
}

impl RpcType {
    fn label(self) -> &'static str {
        match self {
            RpcType::Unary => "unary",
            RpcType::ServerStream => "server_stream",
            RpcType::BidiStream => "bidi_stream",
        }
    }

    /// The `type` label of `etcd_server_client_requests_total`.
    fn client_request_type(self) -> &'static str {
        match self {
            RpcType::Unary => "unary",
            _ => "stream",
        }
    }
}

use RpcType::{BidiStream, ServerStream, Unary};

/// Every RPC the client port serves: etcd's v3 services (which etcd
/// pre-registers with go-grpc-prometheus) and the v3lock/v3election ones.
pub const RPCS: &[(&str, &str, RpcType)] = &[
    ("etcdserverpb.KV", "Range", Unary),
    ("etcdserverpb.KV", "Put", Unary),
    ("etcdserverpb.KV", "DeleteRange", Unary),
    ("etcdserverpb.KV", "Txn", Unary),
    ("etcdserverpb.KV", "Compact", Unary),
    ("etcdserverpb.Watch", "Watch", BidiStream),
    ("etcdserverpb.Lease", "LeaseGrant", Unary),
    ("etcdserverpb.Lease", "LeaseRevoke", Unary),
    ("etcdserverpb.Lease", "LeaseKeepAlive", BidiStream),
    ("etcdserverpb.Lease", "LeaseTimeToLive", Unary),
    ("etcdserverpb.Lease", "LeaseLeases", Unary),
    ("etcdserverpb.Cluster", "MemberAdd", Unary),
    ("etcdserverpb.Cluster", "MemberRemove", Unary),
    ("etcdserverpb.Cluster", "MemberUpdate", Unary),
    ("etcdserverpb.Cluster", "MemberList", Unary),
    ("etcdserverpb.Cluster", "MemberPromote", Unary),
    ("etcdserverpb.Maintenance", "Alarm", Unary),
    ("etcdserverpb.Maintenance", "Status", Unary),
    ("etcdserverpb.Maintenance", "Defragment", Unary),
    ("etcdserverpb.Maintenance", "Hash", Unary),
    ("etcdserverpb.Maintenance", "HashKV", Unary),
    ("etcdserverpb.Maintenance", "Snapshot", ServerStream),
    ("etcdserverpb.Maintenance", "MoveLeader", Unary),
    ("etcdserverpb.Maintenance", "Downgrade", Unary),
    ("etcdserverpb.Auth", "AuthEnable", Unary),
    ("etcdserverpb.Auth", "AuthDisable", Unary),
    ("etcdserverpb.Auth", "AuthStatus", Unary),
    ("etcdserverpb.Auth", "Authenticate", Unary),
    ("etcdserverpb.Auth", "UserAdd", Unary),
    ("etcdserverpb.Auth", "UserGet", Unary),
    ("etcdserverpb.Auth", "UserList", Unary),
    ("etcdserverpb.Auth", "UserDelete", Unary),
    ("etcdserverpb.Auth", "UserChangePassword", Unary),
    ("etcdserverpb.Auth", "UserGrantRole", Unary),
    ("etcdserverpb.Auth", "UserRevokeRole", Unary),
    ("etcdserverpb.Auth", "RoleAdd", Unary),
    ("etcdserverpb.Auth", "RoleGet", Unary),
    ("etcdserverpb.Auth", "RoleList", Unary),
    ("etcdserverpb.Auth", "RoleDelete", Unary),
    ("etcdserverpb.Auth", "RoleGrantPermission", Unary),
    ("etcdserverpb.Auth", "RoleRevokePermission", Unary),
    ("v3lockpb.Lock", "Lock", Unary),
    ("v3lockpb.Lock", "Unlock", Unary),
    ("v3electionpb.Election", "Campaign", Unary),
    ("v3electionpb.Election", "Proclaim", Unary),
    ("v3electionpb.Election", "Leader", Unary),
    ("v3electionpb.Election", "Observe", ServerStream),
    ("v3electionpb.Election", "Resign", Unary),
];

/// gRPC status codes by number, with grpc-go's names (the `grpc_code` label).
pub const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const CODE_CANCELED: usize = 1;
const CODE_UNKNOWN: usize = 2;

/// Histogram buckets of `grpc_server_handling_seconds` (Prometheus' defaults,
/// which go-grpc-prometheus uses).
const HANDLING_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A client API version label longer than this, or with other characters than
/// digits and dots, counts as "unknown": the label comes from the client and
/// must not grow the number of series without bound.
const CLIENT_API_VERSION_LEN_MAX: usize = 16;

/// The counters of one RPC.
pub struct MethodMetrics {
    rpc_type: RpcType,
    started: IntCounter,
    msg_received: IntCounter,
    msg_sent: IntCounter,
    handled: [IntCounter; 17],
    handling: Option<Histogram>,
}

pub struct GrpcMetrics {
    /// By request path, `/<service>/<method>`.
    methods: HashMap<String, Arc<MethodMetrics>>,
    sent_bytes: IntCounter,
    received_bytes: IntCounter,
    client_requests: IntCounterVec,
}

impl GrpcMetrics {
    pub(super) fn new(registry: &Registry, level: MetricsLevel) -> GrpcMetrics {
        let labels = ["grpc_type", "grpc_service", "grpc_method"];
        let vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let started = vec(
            "grpc_server_started_total",
            "Total number of RPCs started on the server.",
            &labels,
        );
        let received = vec(
            "grpc_server_msg_received_total",
            "Total number of RPC stream messages received on the server.",
            &labels,
        );
        let sent = vec(
            "grpc_server_msg_sent_total",
            "Total number of gRPC stream messages sent by the server.",
            &labels,
        );
        let handled = vec(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        );
        let handling = (level == MetricsLevel::Extensive).then(|| {
            register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "grpc_server_handling_seconds",
                        "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                    )
                    .buckets(HANDLING_BUCKETS.to_vec()),
                    &labels,
                )
                .expect("valid metric"),
            )
        });
        let methods = RPCS
            .iter()
            .map(|&(service, method, rpc_type)| {
                let l = [rpc_type.label(), service, method];
                let metrics = MethodMetrics {
                    rpc_type,
                    started: started.with_label_values(&l),
                    msg_received: received.with_label_values(&l),
                    msg_sent: sent.with_label_values(&l),
                    handled: CODES.map(|code| handled.with_label_values(&[l[0], l[1], l[2], code])),
                    handling: handling.as_ref().map(|h| h.with_label_values(&l)),
                };
                (format!("/{service}/{method}"), Arc::new(metrics))
            })
            .collect();
        GrpcMetrics {
            methods,
            sent_bytes: register(
                registry,
                IntCounter::new(
                    "etcd_network_client_grpc_sent_bytes_total",
                    "The total number of bytes sent to grpc clients.",
                )
                .expect("valid metric"),
            ),
            received_bytes: register(
                registry,
                IntCounter::new(
                    "etcd_network_client_grpc_received_bytes_total",
                    "The total number of bytes received from grpc clients.",
                )
                .expect("valid metric"),
            ),
            client_requests: vec(
                "etcd_server_client_requests_total",
                "The total number of client requests per client version.",
                &["type", "client_api_version"],
            ),
        }
    }
}

/// The `client-api-version` metadata etcd's clients send, or "unknown".
fn client_api_version(headers: &HeaderMap) -> &str {
    headers
        .get("client-api-version")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= CLIENT_API_VERSION_LEN_MAX
                && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        })
        .unwrap_or("unknown")
}

/// The middleware (`axum::middleware::from_fn_with_state`) around the gRPC routes.
pub async fn track(State(metrics): State<Arc<GrpcMetrics>>, req: Request, next: Next) -> Response {
    let Some(method) = metrics.methods.get(req.uri().path()).cloned() else {
        return next.run(req).await;
    };
    method.started.inc();
    metrics
        .client_requests
        .with_label_values(&[
            method.rpc_type.client_request_type(),
            client_api_version(req.headers()),
        ])
        .inc();
    let completion = Completion {
        method: method.clone(),
        started: Instant::now(),
        done: false,
    };
    let req = req.map(|body| {
        Body::new(Counted {
            inner: body,
            frames: FrameCounter::default(),
            messages: method.msg_received.clone(),
            bytes: metrics.received_bytes.clone(),
            completion: None,
        })
    });
    // The edge rewrites tonic's oversized-message status to gRPC-Go's in a
    // layer inside this one, so the code counted is the one the client sees.
    let response = next.run(req).await;
    if let Some(code) = grpc_status(response.headers()) {
        // A trailers-only answer: no message follows.
        let mut completion = completion;
        completion.finish(code);
        return response;
    }
    response.map(|body| {
        Body::new(Counted {
            inner: body,
            frames: FrameCounter::default(),
            messages: method.msg_sent.clone(),
            bytes: metrics.sent_bytes.clone(),
            completion: Some(completion),
        })
    })
}

/// The `grpc-status` of a header or trailer map, as an index into [`CODES`]
/// (an unknown number counts as Unknown).
fn grpc_status(headers: &HeaderMap) -> Option<usize> {
    let value = headers.get("grpc-status")?;
    let code = value
        .to_str()
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|c| *c < CODES.len())
        .unwrap_or(CODE_UNKNOWN);
    Some(code)
}

/// Records the end of one RPC once.
struct Completion {
    method: Arc<MethodMetrics>,
    started: Instant,
    done: bool,
}

impl Completion {
    fn finish(&mut self, code: usize) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.method.handled[code].inc();
        if let Some(h) = &self.method.handling {
            h.observe(self.started.elapsed().as_secs_f64());
        }
    }
}

impl Drop for Completion {
    /// The response was dropped before its status went out: the client
    /// cancelled (or the connection broke), which gRPC reports as Canceled.
    fn drop(&mut self) {
        self.finish(CODE_CANCELED);
    }
}

/// Counts gRPC messages in a byte stream: each message is a 5-byte prefix
/// (compressed flag, big-endian length) and the payload.
#[derive(Default, Debug)]
struct FrameCounter {
    prefix: [u8; 5],
    prefix_len: usize,
    payload_left: u64,
}

impl FrameCounter {
    /// Feeds the next bytes; returns (messages begun, their payload bytes).
    fn feed(&mut self, mut data: &[u8]) -> (u64, u64) {
        let (mut messages, mut bytes) = (0, 0);
        while !data.is_empty() {
            if self.payload_left > 0 {
                let n = (self.payload_left.min(data.len() as u64)) as usize;
                self.payload_left -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
            self.prefix_len += n;
            data = &data[n..];
            if self.prefix_len == 5 {
                let len = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]) as u64;
                messages += 1;
                bytes += len;
                self.payload_left = len;
                self.prefix_len = 0;
            }
        }
        (messages, bytes)
    }
}

/// A request or response body whose gRPC messages are counted as they pass;
/// a response body also records the RPC's status from its trailers.
struct Counted {
    inner: Body,
    frames: FrameCounter,
    messages: IntCounter,
    bytes: IntCounter,
    completion: Option<Completion>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let (messages, bytes) = this.frames.feed(data);
                    if messages > 0 {
                        this.messages.inc_by(messages);
                        this.bytes.inc_by(bytes);
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    if let (Some(code), Some(c)) = (grpc_status(trailers), &mut this.completion) {
                        c.finish(code);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(c) = &mut this.completion {
                    c.finish(CODE_UNKNOWN);
                }
            }
            Poll::Ready(None) => {
                // Ended without a status: not a well-formed gRPC answer.
                if let Some(c) = &mut this.completion {
                    c.finish(CODE_UNKNOWN);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn frames_are_counted_across_chunk_boundaries() {
        let mut stream = frame(b"hello");
        stream.extend(frame(b""));
        stream.extend(frame(&[7; 300]));
        for chunk_size in [1, 2, 5, 6, 7, 64, stream.len()] {
            let mut counter = FrameCounter::default();
            let (mut messages, mut bytes) = (0, 0);
            for chunk in stream.chunks(chunk_size) {
                let (m, b) = counter.feed(chunk);
                messages += m;
                bytes += b;
            }
            assert_eq!((messages, bytes), (3, 305), "chunks of {chunk_size}");
        }
    }

    #[test]
    fn status_codes_and_versions() {
        let mut h = HeaderMap::new();
        assert_eq!(grpc_status(&h), None);
        h.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(grpc_status(&h).map(|c| CODES[c]), Some("NotFound"));
        h.insert("grpc-status", "99".parse().unwrap());
        assert_eq!(grpc_status(&h).map(|c| CODES[c]), Some("Unknown"));
        let mut h = HeaderMap::new();
        assert_eq!(client_api_version(&h), "unknown");
        h.insert("client-api-version", "3.5".parse().unwrap());
        assert_eq!(client_api_version(&h), "3.5");
        h.insert("client-api-version", "3.5; drop table".parse().unwrap());
        assert_eq!(client_api_version(&h), "unknown");
    }

    #[test]
    fn every_method_is_pre_created() {
        let registry = Registry::new();
        let m = GrpcMetrics::new(&registry, MetricsLevel::Extensive);
        assert_eq!(m.methods.len(), RPCS.len());
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert!(names.contains(&"grpc_server_handling_seconds".to_string()));
        let basic = Registry::new();
        GrpcMetrics::new(&basic, MetricsLevel::Basic);
        assert!(!basic
            .gather()
            .iter()
            .any(|f| f.name() == "grpc_server_handling_seconds"));
    }
}
