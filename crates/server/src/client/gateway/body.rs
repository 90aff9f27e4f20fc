//! Request bodies: read with a bound, decoded from JSON as grpc-gateway
//! decodes them, and turned into the messages the services receive.
//!
//! - A unary body is read whole, up to `Limits::body_bytes_max`; its first
//!   JSON value is the request (Go's `json.Decoder` reads one value and
//!   leaves the rest; an empty body is the empty message).
//! - A streaming body (watch, keep-alive) is split into JSON values as its
//!   bytes arrive, by a small scanner that finds where each top-level value
//!   ends, so each value is parsed once. The values become gRPC frames of a
//!   `tonic::Streaming`, the type the service takes. Bad JSON, or a value
//!   larger than the bound, ends the request side, as grpc-gateway's
//!   `CloseSend` after a decode error does.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use prost::Message;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::Status;

use crate::limits;
use api::EtcdError;

/// Frames queued between the body reader and the service.
const STREAM_FRAMES_QUEUED: usize = 16;

/// Size bounds, from --max-request-bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// What the gRPC server accepts: --max-request-bytes plus etcd's
    /// allowance for gRPC overhead. A larger encoded message gets gRPC-Go's
    /// ResourceExhausted error, as it does through etcd's gateway.
    pub message_bytes_max: usize,
    /// The JSON body (or one value of a streaming body): twice the message
    /// bound, room for base64 (4/3) and JSON punctuation. A larger body is
    /// refused unread with "etcdserver: request is too large".
    pub body_bytes_max: usize,
}

impl Limits {
    pub fn new(max_request_bytes: u64) -> Self {
        let message_bytes_max = usize::try_from(max_request_bytes).unwrap_or(usize::MAX / 4)
            + limits::GRPC_OVERHEAD_BYTES;
        Limits {
            message_bytes_max,
            body_bytes_max: message_bytes_max.saturating_mul(2),
        }
    }

    /// gRPC-Go's check of a received message's size.
    pub fn check_message(&self, message: &impl Message) -> Result<(), Status> {
        let len = message.encoded_len();
        if len > self.message_bytes_max {
            return Err(Status::resource_exhausted(format!(
                "grpc: received message larger than max ({len} vs. {})",
                self.message_bytes_max
            )));
        }
        Ok(())
    }
}

/// Reads a whole body, refusing it once it passes `bytes_max` (at once,
/// unread, when its declared length does).
pub(crate) async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    bytes_max: usize,
) -> Result<Vec<u8>, Status> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > bytes_max as u64) {
        return Err(EtcdError::RequestTooLarge.into());
    }
    let mut data = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = data.next().await {
        let chunk = chunk.map_err(|e| Status::invalid_argument(e.to_string()))?;
        if buf.len() + chunk.len() > bytes_max {
            return Err(EtcdError::RequestTooLarge.into());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// The first JSON value of a unary body; the empty message when there is none.
pub(crate) fn decode_first<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, Status> {
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    match values.next() {
        None => Ok(T::default()),
        Some(Ok(value)) => decode_value(value),
        Some(Err(e)) => Err(Status::invalid_argument(go_json_message(&e, body))),
    }
}

/// A request from one JSON value, read as Go's jsonpb reads it: `null`
/// stands for the field's default, and of a repeated key the last counts
/// (the `Value` map keeps the last).
fn decode_value<T: DeserializeOwned + Default>(value: Value) -> Result<T, Status> {
    let kind = match &value {
        Value::Object(_) => None,
        Value::Null => return Ok(T::default()),
        Value::Array(_) => Some("array"),
        Value::String(_) => Some("string"),
        Value::Number(_) => Some("number"),
        Value::Bool(_) => Some("bool"),
    };
    if let Some(kind) = kind {
        return Err(Status::invalid_argument(format!(
            "json: cannot unmarshal {kind} into Go value of type map[string]json.RawMessage"
        )));
    }
    T::deserialize(without_nulls(value))
        .map_err(|e| Status::invalid_argument(go_data_message(&e.to_string())))
}

fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// Go's wording for a bad base64 string; serde's text otherwise.
fn go_data_message(text: &str) -> String {
    // base64: "Invalid symbol 33, offset 0." / "Invalid last symbol 66, offset 2."
    if text.starts_with("Invalid") && text.contains("symbol") {
        if let Some(offset) = text
            .rsplit_once("offset ")
            .and_then(|(_, rest)| rest.trim_end_matches('.').parse::<usize>().ok())
        {
            return format!("illegal base64 data at input byte {offset}");
        }
    }
    text.to_string()
}

/// Go's wording for the JSON syntax errors clients meet most (a truncated
/// body, a stray character); other errors keep serde's text without its
/// position.
fn go_json_message(e: &serde_json::Error, body: &[u8]) -> String {
    if e.is_eof() {
        return "unexpected EOF".to_string();
    }
    let text = e.to_string();
    if text.starts_with("expected value") {
        if let Some(c) = char_at(body, e.line(), e.column()) {
            return format!("invalid character '{c}' looking for beginning of value");
        }
    }
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// The character at serde_json's 1-based (line, column).
fn char_at(body: &[u8], line: usize, column: usize) -> Option<char> {
    let text = std::str::from_utf8(body).ok()?;
    let line_text = text.split('\n').nth(line.checked_sub(1)?)?;
    line_text.chars().nth(column.checked_sub(1)?)
}

/// Headers grpc-gateway passes on as gRPC metadata, without this prefix
/// (e.g. `Grpc-Metadata-hasleader: true`).
const METADATA_HEADER_PREFIX: &str = "grpc-metadata-";

/// A service request: the message, the `Authorization` header as the gRPC
/// `token` metadata (etcd's gateway passes it on for auth), and the
/// `Grpc-Metadata-*` headers as metadata.
pub(crate) fn grpc_request<T>(headers: &HeaderMap, message: T) -> tonic::Request<T> {
    use tonic::metadata::{MetadataKey, MetadataValue};
    let mut request = tonic::Request::new(message);
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix(METADATA_HEADER_PREFIX) else {
            continue;
        };
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_bytes()),
        ) {
            request.metadata_mut().append(key, value);
        }
    }
    if let Some(token) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| tonic::metadata::MetadataValue::try_from(v.as_bytes()).ok())
    {
        request.metadata_mut().insert("token", token);
    }
    request
}

/// The values of a streaming body as the `tonic::Streaming` a service takes.
pub(crate) fn request_stream<T>(body: Body, limits: Limits) -> tonic::Streaming<T>
where
    T: Message + DeserializeOwned + Default + Send + 'static,
{
    let (frames, queued) = mpsc::channel(STREAM_FRAMES_QUEUED);
    tokio::spawn(feed::<T>(body, frames, limits));
    let body = Body::from_stream(ReceiverStream::new(queued));
    tonic::Streaming::new_request(tonic_prost::ProstDecoder::<T>::default(), body, None, None)
}

/// Reads the body, sending each complete value as a gRPC frame; returns (so
/// ending the request stream) at the body's end, on bad JSON or an oversized
/// value, or when the service is gone.
async fn feed<T>(body: Body, frames: mpsc::Sender<Result<Bytes, Infallible>>, limits: Limits)
where
    T: Message + DeserializeOwned + Default,
{
    let mut data = body.into_data_stream();
    let mut splitter = ValueSplitter::default();
    loop {
        loop {
            match splitter.next_value() {
                Split::Value(value) => {
                    let Ok(message) = serde_json::from_slice::<Value>(&value)
                        .map_err(|_| ())
                        .and_then(|v| decode_value::<T>(v).map_err(|_| ()))
                    else {
                        return;
                    };
                    if limits.check_message(&message).is_err() {
                        return;
                    }
                    if frames.send(Ok(grpc_frame(&message))).await.is_err() {
                        return;
                    }
                }
                Split::NeedMore => break,
                Split::Invalid => return,
            }
        }
        if splitter.pending_len() > limits.body_bytes_max {
            return;
        }
        match data.next().await {
            Some(Ok(chunk)) => splitter.push(&chunk),
            Some(Err(_)) | None => return,
        }
    }
}

/// A message in gRPC's length-prefixed framing (uncompressed).
fn grpc_frame(message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let mut frame = Vec::with_capacity(5 + len);
    frame.push(0);
    frame.extend_from_slice(&(len as u32).to_be_bytes());
    message.encode_raw(&mut frame);
    Bytes::from(frame)
}

#[derive(Debug, PartialEq)]
enum Split {
    Value(Vec<u8>),
    NeedMore,
    Invalid,
}

/// Finds where concatenated top-level JSON objects (or arrays) end, across
/// chunks, scanning each byte once: depth, and whether inside a string.
#[derive(Default)]
struct ValueSplitter {
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned.
    scanned: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl ValueSplitter {
    fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    fn pending_len(&self) -> usize {
        self.buf.len()
    }

    fn next_value(&mut self) -> Split {
        while self.scanned < self.buf.len() {
            let b = self.buf[self.scanned];
            self.scanned += 1;
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b' ' | b'\t' | b'\r' | b'\n' if self.depth == 0 => {
                    self.buf.drain(..self.scanned);
                    self.scanned = 0;
                }
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' if self.depth > 0 => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        let value = self.buf.drain(..self.scanned).collect();
                        self.scanned = 0;
                        return Split::Value(value);
                    }
                }
                b'"' if self.depth > 0 => self.in_string = true,
                _ if self.depth == 0 => return Split::Invalid,
                _ => {}
            }
        }
        Split::NeedMore
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::etcdserverpb::{RangeRequest, WatchRequest};

    #[test]
    fn splitter_finds_values_across_chunks() {
        let mut s = ValueSplitter::default();
        s.push(b" {\"a\":\"}{\\\"\"}\n{\"b\":");
        assert_eq!(s.next_value(), Split::Value(b"{\"a\":\"}{\\\"\"}".to_vec()));
        assert_eq!(s.next_value(), Split::NeedMore);
        s.push(b"[1,{}]}");
        assert_eq!(s.next_value(), Split::Value(b"{\"b\":[1,{}]}".to_vec()));
        assert_eq!(s.next_value(), Split::NeedMore);
        assert_eq!(s.pending_len(), 0);
        s.push(b"xx");
        assert_eq!(s.next_value(), Split::Invalid);
    }

    #[test]
    fn unary_body_takes_the_first_value() {
        let r: RangeRequest = decode_first(b"{\"key\":\"Zm9v\",\"keysOnly\":true}xx").unwrap();
        assert_eq!((r.key.as_slice(), r.keys_only), (&b"foo"[..], true));
        let empty: RangeRequest = decode_first(b"  ").unwrap();
        assert_eq!(empty, RangeRequest::default());
        // As jsonpb: null is the default, and the last of a repeated key counts.
        let r: RangeRequest =
            decode_first(b"{\"key\":\"YQ==\",\"key\":\"Yg==\",\"limit\":null,\"range_end\":null}")
                .unwrap();
        assert_eq!((r.key.as_slice(), r.limit), (&b"b"[..], 0));
    }

    #[test]
    fn json_errors_read_as_go_writes_them() {
        let eof = decode_first::<RangeRequest>(b"{\"key\":\"Zm9v\"").unwrap_err();
        assert_eq!(eof.message(), "unexpected EOF");
        assert_eq!(eof.code(), tonic::Code::InvalidArgument);
        let stray = decode_first::<RangeRequest>(b"xx").unwrap_err();
        assert_eq!(
            stray.message(),
            "invalid character 'x' looking for beginning of value"
        );
        let inner = decode_first::<RangeRequest>(b"{\"limit\":abc}").unwrap_err();
        assert_eq!(
            inner.message(),
            "invalid character 'a' looking for beginning of value"
        );
        let base64 = decode_first::<RangeRequest>(b"{\"key\":\"a!\"}").unwrap_err();
        assert_eq!(base64.message(), "illegal base64 data at input byte 1");
        let array = decode_first::<RangeRequest>(b"[1]").unwrap_err();
        assert_eq!(
            array.message(),
            "json: cannot unmarshal array into Go value of type map[string]json.RawMessage"
        );
    }

    #[test]
    fn oversized_message_gets_grpc_go_wording() {
        let limits = Limits::new(10);
        assert_eq!(limits.message_bytes_max, 10 + limits::GRPC_OVERHEAD_BYTES);
        let big = RangeRequest {
            key: vec![b'x'; limits.message_bytes_max],
            ..Default::default()
        };
        let status = limits.check_message(&big).unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status
            .message()
            .starts_with("grpc: received message larger than max ("));
        assert!(limits.check_message(&WatchRequest::default()).is_ok());
    }

    #[test]
    fn authorization_becomes_the_token_and_metadata_headers_metadata() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "abc.def".parse().unwrap());
        headers.insert("grpc-metadata-hasleader", "true".parse().unwrap());
        let request = grpc_request(&headers, ());
        assert_eq!(request.metadata().get("token").unwrap(), "abc.def");
        assert_eq!(request.metadata().get("hasleader").unwrap(), "true");
    }
}
