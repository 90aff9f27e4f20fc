//! One listener, two protocols, split as etcd's cmux splits them: a request
//! is gRPC only if it is HTTP/2 with an `application/grpc` content type;
//! everything else (HTTP/1.1, or HTTP/2 without that type) goes to the HTTP
//! routes, where a gRPC path is simply not found. So gRPC framing sent over
//! HTTP/1.1 never reaches a service.
//!
//! gRPC-Go's wording for an oversized message is kept: tonic reports it as
//! `OutOfRange "Error, decoded message length too large: found X bytes, the
//! limit is: Y bytes"`, etcd (gRPC-Go) as `ResourceExhausted "grpc: received
//! message larger than max (X vs. Y)"`, and clients match on the latter.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Version};
use axum::response::Response;
use axum::Router;
use tower::ServiceExt;

use crate::metrics::grpc::{track, GrpcMetrics};

pub fn router(grpc: Router, http: Router) -> Router {
    Router::new().fallback(move |req: Request| {
        // Clone only the router that serves this request (an Arc bump).
        let grpc_request = is_grpc(&req);
        let router = if grpc_request {
            grpc.clone()
        } else {
            http.clone()
        };
        async move {
            let response = router.oneshot(req).await;
            response.unwrap_or_else(|never| match never {})
        }
    })
}

/// The gRPC routes as clients see them: tonic's oversized-message status
/// rewritten to gRPC-Go's, and the gRPC metrics middleware around that, so
/// the code it counts is the one the client gets.
pub fn grpc_router(routes: Router, metrics: Arc<GrpcMetrics>) -> Router {
    routes
        .layer(axum::middleware::map_response(|r: Response| async move {
            fix_too_large(r)
        }))
        .layer(axum::middleware::from_fn_with_state(metrics, track))
}

fn is_grpc(req: &Request) -> bool {
    req.version() == Version::HTTP_2
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: found ";
const GRPC_STATUS_OUT_OF_RANGE: &[u8] = b"11";
const GRPC_STATUS_RESOURCE_EXHAUSTED: &str = "8";

/// Rewrites tonic's oversized-message status into gRPC-Go's.
pub(crate) fn fix_too_large(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    if headers.get("grpc-status").map(|v| v.as_bytes()) != Some(GRPC_STATUS_OUT_OF_RANGE) {
        return response;
    }
    let Some(message) = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
    else {
        return response;
    };
    if let Some((found, limit)) = parse_too_large(&message) {
        let go = format!("grpc: received message larger than max ({found} vs. {limit})");
        if let Ok(v) = HeaderValue::from_str(&percent_encode(&go)) {
            headers.insert("grpc-message", v);
            headers.insert(
                "grpc-status",
                HeaderValue::from_static(GRPC_STATUS_RESOURCE_EXHAUSTED),
            );
        }
    }
    response
}

/// "Error, decoded message length too large: found X bytes, the limit is: Y bytes" → (X, Y).
fn parse_too_large(message: &str) -> Option<(u64, u64)> {
    let rest = message.strip_prefix(TONIC_TOO_LARGE)?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    Some((found.parse().ok()?, limit.parse().ok()?))
}

/// grpc-message is percent-encoded (gRPC HTTP/2 spec): bytes outside 0x20..=0x7e and '%'.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonic_too_large_becomes_grpc_go_wording() {
        let msg = "Error, decoded message length too large: found 2187275 bytes, the limit is: 2097152 bytes";
        assert_eq!(parse_too_large(msg), Some((2187275, 2097152)));
        let mut response = Response::new(Body::empty());
        response
            .headers_mut()
            .insert("grpc-status", HeaderValue::from_static("11"));
        response.headers_mut().insert(
            "grpc-message",
            HeaderValue::from_str(&percent_encode(msg)).unwrap(),
        );
        let fixed = fix_too_large(response);
        assert_eq!(fixed.headers()["grpc-status"], "8");
        assert_eq!(
            percent_decode(fixed.headers()["grpc-message"].to_str().unwrap()),
            "grpc: received message larger than max (2187275 vs. 2097152)"
        );
    }

    #[test]
    fn other_statuses_are_untouched() {
        let mut response = Response::new(Body::empty());
        response
            .headers_mut()
            .insert("grpc-status", HeaderValue::from_static("11"));
        response.headers_mut().insert(
            "grpc-message",
            HeaderValue::from_static("etcdserver: mvcc: required revision is a future revision"),
        );
        let fixed = fix_too_large(response);
        assert_eq!(fixed.headers()["grpc-status"], "11");
    }

    #[test]
    fn percent_round_trip() {
        let s = "a%b\nc (1 vs. 2)";
        assert_eq!(percent_decode(&percent_encode(s)), s);
    }
}
