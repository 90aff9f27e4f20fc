//! Answers as etcd 3.5's grpc-gateway writes them.
//!
//! - A unary answer is the message as JSON (`{...}`), with the
//!   `Grpc-Metadata-Content-Type: application/grpc` header it forwards.
//! - A streaming answer is one `{"result":{...}}` line per message, sent as
//!   it comes (chunked); a failure mid-stream ends it with
//!   `{"error":{"grpc_code":…,"http_code":…,"message":…,"http_status":…}}`.
//! - A call that fails is `{"error":…,"code":…,"message":…}` with the HTTP
//!   status grpc-gateway derives from the gRPC code; a stream that fails
//!   before its first message gets that status and the streamed error body.
//! - JSON strings escape `<`, `>`, `&`, U+2028 and U+2029 as Go does.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Serialize;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Status};

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// grpc-gateway's (v1.16, etcd 3.5) HTTP status for a gRPC code.
pub(crate) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::BAD_REQUEST,
        Code::Aborted => StatusCode::CONFLICT,
        Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
    }
}

/// Compact JSON with Go's HTML-safe escaping.
pub(crate) fn to_json(value: &impl Serialize) -> Vec<u8> {
    let plain = match serde_json::to_vec(value) {
        Ok(v) => v,
        // Generated serializers only fail on a map with non-string keys,
        // which etcd's messages do not have.
        Err(e) => {
            tracing::warn!(error = %e, "gateway: cannot encode a response");
            return b"{}".to_vec();
        }
    };
    go_escape(plain)
}

/// `<`, `>`, `&` and U+2028/U+2029 occur in JSON output only inside
/// strings, where Go writes them as \u escapes.
fn go_escape(json: Vec<u8>) -> Vec<u8> {
    let needs = json.iter().any(|b| matches!(b, b'<' | b'>' | b'&'))
        || json
            .windows(3)
            .any(|w| w == "\u{2028}".as_bytes() || w == "\u{2029}".as_bytes());
    if !needs {
        return json;
    }
    let mut out = Vec::with_capacity(json.len() + 16);
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            0xe2 if json[i..].starts_with("\u{2028}".as_bytes()) => {
                out.extend_from_slice(b"\\u2028");
                i += 2;
            }
            0xe2 if json[i..].starts_with("\u{2029}".as_bytes()) => {
                out.extend_from_slice(b"\\u2029");
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn response(status: StatusCode, body: Body, forwarded: bool) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, JSON);
    if forwarded {
        // The gRPC server's content-type, forwarded as grpc-gateway forwards
        // response metadata.
        headers.insert(
            "grpc-metadata-content-type",
            HeaderValue::from_static("application/grpc"),
        );
    }
    response
}

/// A unary answer.
pub(crate) fn message(value: &impl Serialize) -> Response {
    response(StatusCode::OK, Body::from(to_json(value)), true)
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    code: i32,
    message: &'a str,
}

/// An error answer, before anything else was written.
pub(crate) fn error(status: &Status) -> Response {
    let body = ErrorBody {
        error: status.message(),
        code: status.code() as i32,
        message: status.message(),
    };
    response(
        http_status(status.code()),
        Body::from(to_json(&body)),
        false,
    )
}

#[derive(Serialize)]
struct StreamError<'a> {
    grpc_code: i32,
    http_code: u16,
    message: &'a str,
    http_status: &'a str,
}

fn stream_error_chunk(status: &Status) -> Bytes {
    let http = http_status(status.code());
    let chunk = serde_json::json!({ "error": StreamError {
        grpc_code: status.code() as i32,
        http_code: http.as_u16(),
        message: status.message(),
        http_status: http.canonical_reason().unwrap_or(""),
    }});
    Bytes::from(to_json(&chunk))
}

fn result_chunk(value: &impl Serialize) -> Bytes {
    #[derive(Serialize)]
    struct Chunk<'a, T> {
        result: &'a T,
    }
    let mut line = to_json(&Chunk { result: value });
    line.push(b'\n');
    Bytes::from(line)
}

/// A streaming answer. The headers wait for the first message, as
/// grpc-gateway waits for the gRPC response headers; a stream that fails
/// before it gets the error's HTTP status and the streamed error body.
pub(crate) async fn stream<S, T>(messages: S) -> Response
where
    S: Stream<Item = Result<T, Status>> + Send + 'static,
    T: Serialize + Send + 'static,
{
    let mut messages = Box::pin(messages);
    let first = match messages.next().await {
        None => return response(StatusCode::OK, Body::empty(), true),
        Some(Err(status)) => {
            return response(
                http_status(status.code()),
                Body::from(stream_error_chunk(&status)),
                false,
            )
        }
        Some(Ok(first)) => result_chunk(&first),
    };
    let chunks = Chunks {
        messages,
        first: Some(first),
        done: false,
    };
    response(StatusCode::OK, Body::from_stream(chunks), true)
}

struct Chunks<T> {
    messages: Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>,
    first: Option<Bytes>,
    done: bool,
}

impl<T: Serialize> Stream for Chunks<T> {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        match this.messages.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(m))) => Poll::Ready(Some(Ok(result_chunk(&m)))),
            Poll::Ready(Some(Err(status))) => {
                this.done = true;
                Poll::Ready(Some(Ok(stream_error_chunk(&status))))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// What grpc-gateway's mux answers for a path it does not serve.
pub(crate) fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "Not Found\n")
}

/// What it answers for a served path with another method than POST.
pub(crate) fn method_not_allowed() -> Response {
    plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_are_grpc_gateways() {
        let table = [
            (Code::Ok, 200),
            (Code::Cancelled, 408),
            (Code::Unknown, 500),
            (Code::InvalidArgument, 400),
            (Code::DeadlineExceeded, 504),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 400),
            (Code::Aborted, 409),
            (Code::OutOfRange, 400),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DataLoss, 500),
            (Code::Unauthenticated, 401),
        ];
        for (code, http) in table {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
        }
    }

    #[test]
    fn error_bodies_match_etcd_35() {
        let status =
            Status::out_of_range("etcdserver: mvcc: required revision is a future revision");
        assert_eq!(
            String::from_utf8(to_json(&ErrorBody {
                error: status.message(),
                code: status.code() as i32,
                message: status.message(),
            }))
            .unwrap(),
            r#"{"error":"etcdserver: mvcc: required revision is a future revision","code":11,"message":"etcdserver: mvcc: required revision is a future revision"}"#
        );
        assert_eq!(
            stream_error_chunk(&Status::unavailable("etcdserver: no leader")),
            Bytes::from_static(
                br#"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}"#
            )
        );
    }

    async fn body_text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn streams_frame_results_and_errors_as_etcd() {
        let failing_late = tokio_stream::iter(vec![
            Ok(serde_json::json!({"ID": "1"})),
            Ok(serde_json::json!({"ID": "2"})),
            Err(Status::unavailable("etcdserver: no leader")),
        ]);
        let response = stream(failing_late).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["grpc-metadata-content-type"],
            "application/grpc"
        );
        assert_eq!(
            body_text(response).await,
            "{\"result\":{\"ID\":\"1\"}}\n{\"result\":{\"ID\":\"2\"}}\n\
             {\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"etcdserver: no leader\",\"http_status\":\"Service Unavailable\"}}"
        );

        // Failing before any message: the error's status, the streamed body.
        let failing_early = tokio_stream::iter(vec![Err::<serde_json::Value, _>(Status::unknown(
            "auth: user name is empty",
        ))]);
        let response = stream(failing_early).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response
            .headers()
            .get("grpc-metadata-content-type")
            .is_none());
        assert_eq!(
            body_text(response).await,
            r#"{"error":{"grpc_code":2,"http_code":500,"message":"auth: user name is empty","http_status":"Internal Server Error"}}"#
        );
    }

    #[test]
    fn strings_escape_as_go_does() {
        let out = to_json(&serde_json::json!({"name": "a<b>&c\u{2028}d\u{2029}é"}));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"name":"a\u003cb\u003e\u0026c\u2028d\u2029é"}"#
        );
    }
}
