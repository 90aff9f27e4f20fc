//! Bad input: oversized requests, too many txn ops, duplicate keys in a txn,
//! future and compacted revisions, malformed range_end, empty keys, garbage and
//! abandoned connections on the client port, and a full disk.
//!
//! The request-level checks run the same assertions against our server and the
//! real etcd 3.5.1, so every expected error code and string is etcd's own. Each
//! check also asserts that the rejected input changed nothing (the store
//! revision before and after).
//!
//! The disk-full tests (ours only) put the data dir on a small tmpfs (we run as
//! root); if mounting is not permitted they fall back to `prlimit --fsize`
//! with SIGXFSZ ignored, which makes writes past the limit fail with EFBIG
//! (`ETCD_RS_DISK_FULL_PRLIMIT=1` forces the fallback).
//! The WAL preallocates 64 MiB segments, so the file system must hold at least
//! one segment; the rest of its space is taken by a filler file.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, http_get, start_pair, tail, temp_dir, EtcdProcess, Kind};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Txn, TxnOp,
};

const CALL_TIMEOUT: Duration = Duration::from_secs(15);
const TOO_LARGE: &str = "InvalidArgument: etcdserver: request is too large";
const TOO_MANY_OPS: &str = "InvalidArgument: etcdserver: too many operations in txn request";
const DUPLICATE_KEY: &str = "InvalidArgument: etcdserver: duplicate key given in txn request";
const EMPTY_KEY: &str = "InvalidArgument: etcdserver: key is not provided";
const FUTURE_REV: &str = "OutOfRange: etcdserver: mvcc: required revision is a future revision";
const COMPACTED: &str = "OutOfRange: etcdserver: mvcc: required revision has been compacted";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn connect(url: &str) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(CALL_TIMEOUT);
    tokio::time::timeout(CALL_TIMEOUT, Client::connect([url], Some(options)))
        .await
        .unwrap_or_else(|_| panic!("connect to {url}: timed out"))
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// `Code: message` of a failed call, `ok` for a success; bounded.
async fn outcome<T>(f: impl std::future::Future<Output = Result<T, etcd_client::Error>>) -> String {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(_)) => "ok".to_string(),
        Ok(Err(etcd_client::Error::GRpcStatus(s))) => format!("{:?}: {}", s.code(), s.message()),
        Ok(Err(e)) => format!("not a gRPC status: {e}"),
        Err(_) => format!("no answer within {CALL_TIMEOUT:?}"),
    }
}

async fn revision(client: &mut Client) -> i64 {
    let resp = tokio::time::timeout(CALL_TIMEOUT, client.get("any", None))
        .await
        .expect("get: timed out")
        .expect("get");
    resp.header().expect("header").revision()
}

async fn put_ok(client: &mut Client, key: &str, value: impl Into<Vec<u8>>) -> i64 {
    let resp = tokio::time::timeout(CALL_TIMEOUT, client.put(key, value, None))
        .await
        .unwrap_or_else(|_| panic!("put {key}: timed out"))
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
    resp.header().expect("header").revision()
}

/// Runs `check` against our server and etcd 3.5.1 (started with `args`), so
/// that its assertions hold for both.
fn on_both(args: &[&str], check: impl for<'a> Fn(&'a EtcdProcess, Kind) -> BoxFut<'a>) {
    let (ours, reference) = start_pair(args);
    let rt = runtime();
    for (process, kind) in [(&reference, Kind::Ref35), (&ours, Kind::Ours)] {
        rt.block_on(check(process, kind));
    }
}

type BoxFut<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>;

// ---------------------------------------------------------------------------
// Request-level bad input (ours and etcd 3.5.1).

#[test]
fn oversized_requests_are_rejected_and_change_nothing() {
    // Default --max-request-bytes (1.5 MiB); gRPC accepts 512 KiB more.
    const MAX: usize = 1536 * 1024;
    on_both(&[], |process, kind| {
        Box::pin(async move {
            let label = kind.label();
            let mut client = connect(&process.client_url()).await;
            put_ok(&mut client, "k", "v").await;
            let before = revision(&mut client).await;

            // Just over the limit: etcd's own error.
            let r = outcome(client.put("big", vec![b'x'; MAX + 1], None)).await;
            assert_eq!(r, TOO_LARGE, "{label}: put of max-request-bytes + 1");
            let r = outcome(client.put("big", vec![b'x'; MAX + 400 * 1024], None)).await;
            assert_eq!(r, TOO_LARGE, "{label}: put of max-request-bytes + 400 KiB");
            // A txn whose ops are small but add up.
            // 3 x 600 KiB: over max-request-bytes, under gRPC's limit.
            let ops: Vec<TxnOp> = (0..3)
                .map(|i| TxnOp::put(format!("t{i}"), vec![b'y'; 600 * 1024], None))
                .collect();
            let r = outcome(client.txn(Txn::new().and_then(ops))).await;
            assert_eq!(r, TOO_LARGE, "{label}: txn adding up past the limit");

            // Past gRPC's receive limit: refused (the code is checked in
            // request_past_grpc_receive_limit_is_resource_exhausted).
            for len in [MAX + 600 * 1024, 5 << 20] {
                let r = outcome(client.put("huge", vec![b'z'; len], None)).await;
                assert!(
                    r != "ok" && !r.contains("no answer within"),
                    "{label}: put of {len} bytes past the gRPC receive limit: {r}"
                );
                eprintln!("{label}: put of {len} bytes: {r}");
            }

            // The same connection and a new one keep working; nothing changed.
            assert_eq!(
                revision(&mut client).await,
                before,
                "{label}: revision moved"
            );
            let mut fresh = connect(&process.client_url()).await;
            assert_eq!(
                revision(&mut fresh).await,
                before,
                "{label}: revision moved"
            );
            for key in ["big", "huge", "t0"] {
                let resp = client.get(key, None).await.expect("get");
                assert!(resp.kvs().is_empty(), "{label}: {key} was stored");
            }
            // A request just under the limit is fine.
            let rev = put_ok(&mut client, "almost", vec![b'a'; MAX - 1024]).await;
            assert_eq!(rev, before + 1, "{label}");
        })
    });
}

/// etcd (grpc-go) refuses a message past its receive limit with
/// ResourceExhausted "grpc: received message larger than max (N vs. M)".
#[test]
fn request_past_grpc_receive_limit_is_resource_exhausted() {
    const MAX: usize = 1536 * 1024;
    on_both(&[], |process, kind| {
        Box::pin(async move {
            let label = kind.label();
            let mut client = connect(&process.client_url()).await;
            for len in [MAX + 600 * 1024, 5 << 20] {
                let r = outcome(client.put("huge", vec![b'z'; len], None)).await;
                assert!(
                    r.starts_with("ResourceExhausted: "),
                    "{label}: put of {len} bytes past the gRPC receive limit: {r}"
                );
            }
            assert_eq!(revision(&mut client).await, 1, "{label}: revision moved");
        })
    });
}

#[test]
fn txn_op_limits_and_duplicate_keys() {
    on_both(&["--max-txn-ops=16"], |process, kind| {
        Box::pin(async move {
            let label = kind.label();
            let mut client = connect(&process.client_url()).await;
            put_ok(&mut client, "a", "1").await;
            let before = revision(&mut client).await;
            let puts = |n: usize| -> Vec<TxnOp> {
                (0..n)
                    .map(|i| TxnOp::put(format!("op{i:03}"), "v", None))
                    .collect()
            };

            let r = outcome(client.txn(Txn::new().and_then(puts(17)))).await;
            assert_eq!(r, TOO_MANY_OPS, "{label}: 17 ops in success");
            let r = outcome(client.txn(Txn::new().or_else(puts(17)))).await;
            assert_eq!(r, TOO_MANY_OPS, "{label}: 17 ops in failure");
            let cmps: Vec<Compare> = (0..17)
                .map(|i| Compare::version(format!("c{i}"), CompareOp::Equal, 0))
                .collect();
            let r = outcome(client.txn(Txn::new().when(cmps))).await;
            assert_eq!(r, TOO_MANY_OPS, "{label}: 17 compares");

            let dup = Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]);
            let r = outcome(client.txn(dup)).await;
            assert_eq!(r, DUPLICATE_KEY, "{label}: put d twice");
            let overlap = Txn::new().and_then([
                TxnOp::put("m", "1", None),
                TxnOp::delete("a", Some(DeleteOptions::new().with_range("z"))),
            ]);
            let r = outcome(client.txn(overlap)).await;
            assert_eq!(r, DUPLICATE_KEY, "{label}: put inside a deleted range");
            let nested = Txn::new().and_then([
                TxnOp::put("n", "1", None),
                TxnOp::txn(Txn::new().and_then([TxnOp::put("n", "2", None)])),
            ]);
            let r = outcome(client.txn(nested)).await;
            assert_eq!(
                r, DUPLICATE_KEY,
                "{label}: put n in a txn and its nested txn"
            );
            assert_eq!(
                revision(&mut client).await,
                before,
                "{label}: revision moved"
            );
            for key in ["op000", "d", "m", "n"] {
                let resp = client.get(key, None).await.expect("get");
                assert!(resp.kvs().is_empty(), "{label}: {key} was stored");
            }

            // At the limit, and the same key in the two branches: fine.
            let r = outcome(client.txn(Txn::new().and_then(puts(16)))).await;
            assert_eq!(r, "ok", "{label}: 16 ops");
            let branches = Txn::new()
                .when([Compare::value("a", CompareOp::Equal, "1")])
                .and_then([TxnOp::put("b", "then", None)])
                .or_else([TxnOp::put("b", "else", None)]);
            let r = outcome(client.txn(branches)).await;
            assert_eq!(r, "ok", "{label}: same key in both branches");
            assert_eq!(revision(&mut client).await, before + 2, "{label}");
        })
    });
}

#[test]
fn future_and_compacted_revisions() {
    on_both(&[], |process, kind| {
        Box::pin(async move {
            let label = kind.label();
            let mut client = connect(&process.client_url()).await;
            for i in 0..5 {
                put_ok(&mut client, "k", format!("v{i}")).await; // revisions 2..=6
            }
            let at = |rev: i64| Some(GetOptions::new().with_revision(rev));
            assert_eq!(outcome(client.get("k", at(7))).await, FUTURE_REV, "{label}");
            assert_eq!(
                outcome(client.get("k", at(1 << 40))).await,
                FUTURE_REV,
                "{label}"
            );
            assert_eq!(
                outcome(client.compact(7, None)).await,
                FUTURE_REV,
                "{label}"
            );
            assert_eq!(
                outcome(client.compact(1 << 40, None)).await,
                FUTURE_REV,
                "{label}"
            );
            let ro = Txn::new().and_then([TxnOp::get("k", at(9))]);
            assert_eq!(
                outcome(client.txn(ro)).await,
                FUTURE_REV,
                "{label}: txn range"
            );
            let rw = Txn::new().and_then([TxnOp::get("k", at(9)), TxnOp::put("w", "1", None)]);
            assert_eq!(
                outcome(client.txn(rw)).await,
                FUTURE_REV,
                "{label}: txn range+put"
            );
            assert_eq!(revision(&mut client).await, 6, "{label}: revision moved");

            assert_eq!(outcome(client.compact(4, None)).await, "ok", "{label}");
            assert_eq!(outcome(client.get("k", at(3))).await, COMPACTED, "{label}");
            assert_eq!(outcome(client.get("k", at(1))).await, COMPACTED, "{label}");
            assert_eq!(outcome(client.compact(4, None)).await, COMPACTED, "{label}");
            assert_eq!(outcome(client.compact(2, None)).await, COMPACTED, "{label}");
            let ro = Txn::new().and_then([TxnOp::get("k", at(3))]);
            assert_eq!(
                outcome(client.txn(ro)).await,
                COMPACTED,
                "{label}: txn range"
            );
            let rw = Txn::new().and_then([TxnOp::get("k", at(2)), TxnOp::put("w", "1", None)]);
            assert_eq!(
                outcome(client.txn(rw)).await,
                COMPACTED,
                "{label}: txn range+put"
            );
            // At the compaction revision itself the value is still there.
            let resp = client
                .get("k", at(4))
                .await
                .expect("get at the compaction revision");
            assert_eq!(resp.kvs()[0].value(), b"v2", "{label}");
            assert_eq!(revision(&mut client).await, 6, "{label}: revision moved");
            let resp = client.get("w", None).await.expect("get");
            assert!(resp.kvs().is_empty(), "{label}: w was stored");
        })
    });
}

#[test]
fn malformed_range_end_and_empty_key() {
    on_both(&[], |process, kind| {
        Box::pin(async move {
            let label = kind.label();
            let mut client = connect(&process.client_url()).await;
            for k in ["a", "b", "c"] {
                put_ok(&mut client, k, "v").await;
            }
            let before = revision(&mut client).await;

            // range_end before the key: an empty result, not an error (etcd).
            let backwards = |end: &str| Some(GetOptions::new().with_range(end));
            let resp = client.get("c", backwards("a")).await.expect("get c..a");
            assert_eq!(
                (resp.count(), resp.kvs().len()),
                (0, 0),
                "{label}: get c..a"
            );
            let resp = client
                .get(
                    "c",
                    Some(GetOptions::new().with_range("a").with_count_only()),
                )
                .await
                .expect("count c..a");
            assert_eq!(resp.count(), 0, "{label}: count c..a");
            // range_end equal to the key: also empty.
            let resp = client.get("b", backwards("b")).await.expect("get b..b");
            assert_eq!(resp.count(), 0, "{label}: get b..b");
            let resp = client
                .delete("c", Some(DeleteOptions::new().with_range("a")))
                .await
                .expect("delete c..a");
            assert_eq!(resp.deleted(), 0, "{label}: delete c..a");
            assert_eq!(
                resp.header().unwrap().revision(),
                before,
                "{label}: delete c..a moved the revision"
            );
            let txn = Txn::new().and_then([
                TxnOp::get("c", backwards("a")),
                TxnOp::delete("c", Some(DeleteOptions::new().with_range("a"))),
            ]);
            let resp = client.txn(txn).await.expect("txn with backwards ranges");
            assert!(resp.succeeded(), "{label}");

            // An empty key is refused everywhere.
            assert_eq!(
                outcome(client.get("", None)).await,
                EMPTY_KEY,
                "{label}: get"
            );
            assert_eq!(
                outcome(client.get("", backwards("z"))).await,
                EMPTY_KEY,
                "{label}: get '' .. z"
            );
            assert_eq!(
                outcome(client.put("", "v", None)).await,
                EMPTY_KEY,
                "{label}: put"
            );
            assert_eq!(
                outcome(client.delete("", None)).await,
                EMPTY_KEY,
                "{label}: delete"
            );
            let txn = Txn::new().and_then([TxnOp::put("", "v", None)]);
            assert_eq!(
                outcome(client.txn(txn)).await,
                EMPTY_KEY,
                "{label}: txn put"
            );
            let txn = Txn::new().and_then([TxnOp::get("", None)]);
            assert_eq!(
                outcome(client.txn(txn)).await,
                EMPTY_KEY,
                "{label}: txn get"
            );

            assert_eq!(
                revision(&mut client).await,
                before,
                "{label}: revision moved"
            );
            let all = client
                .get("", Some(GetOptions::new().with_all_keys()))
                .await
                .expect("get all");
            assert_eq!(all.count(), 3, "{label}: keys changed");
        })
    });
}

// ---------------------------------------------------------------------------
// Garbage and abandoned connections on the client port.

/// A client that puts and reads back `healthy/N` in a loop until stopped;
/// counts its acknowledged puts and its failures.
struct Healthy {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    handle: tokio::task::JoinHandle<Vec<String>>,
}

fn start_healthy(rt: &tokio::runtime::Runtime, url: String) -> Healthy {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let (s, a) = (stop.clone(), acked.clone());
    let handle = rt.spawn(async move {
        let mut failures = Vec::new();
        let mut client = connect(&url).await;
        let mut i = 0u64;
        while !s.load(Ordering::SeqCst) && failures.len() < 10 {
            i += 1;
            let key = format!("healthy/{i:05}");
            let r = outcome(client.put(key.as_str(), "ok", None)).await;
            if r != "ok" {
                failures.push(format!("put {key}: {r}"));
                continue;
            }
            a.fetch_add(1, Ordering::SeqCst);
            match tokio::time::timeout(CALL_TIMEOUT, client.get(key.as_str(), None)).await {
                Ok(Ok(resp)) if resp.count() == 1 => {}
                other => failures.push(format!("get {key}: {other:?}")),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        failures
    });
    Healthy {
        stop,
        acked,
        handle,
    }
}

impl Healthy {
    /// Stops the client; its acknowledged puts; panics on any failure.
    fn finish(self, rt: &tokio::runtime::Runtime, label: &str) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let failures = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), self.handle).await })
            .expect("the healthy client did not stop")
            .expect("healthy client panicked");
        assert!(
            failures.is_empty(),
            "{label}: the healthy client failed while bad connections were served:\n{}",
            failures.join("\n")
        );
        let acked = self.acked.load(Ordering::SeqCst);
        assert!(acked > 0, "{label}: the healthy client made no progress");
        acked
    }
}

/// What a raw connection got back.
#[derive(Debug)]
struct Probe {
    /// The first bytes the server sent (lossy text).
    answer: String,
    /// The server closed (or reset) the connection within the timeout.
    closed: bool,
}

/// Connects, sends `bytes`, optionally half-closes, and reads until the
/// server closes or `timeout` passes.
fn probe(port: u16, bytes: &[u8], half_close: bool, timeout: Duration) -> Probe {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .expect("connect to the client port");
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The server may close before reading everything (a reset is fine).
    let _ = stream.write_all(bytes);
    if half_close {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let deadline = Instant::now() + timeout;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => {
                if answer.len() < 512 {
                    answer.extend_from_slice(&buf[..n]);
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                break false
            }
            Err(_) => break true, // reset
        }
    };
    Probe {
        answer: String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned(),
        closed,
    }
}

struct Lcg(u64);
impl Lcg {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 = self
                    .0
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (self.0 >> 56) as u8
            })
            .collect()
    }
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn garbage_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut rng = Lcg(0x5eed);
    let mut preface_then_garbage = PREFACE.to_vec();
    preface_then_garbage.extend(rng.bytes(2048));
    // A valid preface and SETTINGS, then a HEADERS frame on stream 0 (a protocol error).
    let mut bad_frame = PREFACE.to_vec();
    bad_frame.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    bad_frame.extend_from_slice(&[0, 0, 4, 1, 4, 0, 0, 0, 0, 0x82, 0x86, 0x84, 0x41]);
    // A frame that announces 16 MiB of payload and sends none.
    let mut huge_frame = PREFACE.to_vec();
    huge_frame.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    huge_frame.extend_from_slice(&[0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1]);
    let mut long_line = b"GET /".to_vec();
    long_line.extend(std::iter::repeat_n(b'A', 256 * 1024));
    let tls_hello: Vec<u8> = {
        let mut v = vec![
            0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
        ];
        v.extend(rng.bytes(200));
        v
    };
    vec![
        ("4 KiB of random bytes", rng.bytes(4096)),
        ("random bytes starting with a newline", {
            let mut v = b"\r\n\r\n".to_vec();
            v.extend(rng.bytes(512));
            v
        }),
        ("half an HTTP/2 preface", PREFACE[..14].to_vec()),
        ("HTTP/2 preface then garbage", preface_then_garbage),
        ("HTTP/2 HEADERS on stream 0", bad_frame),
        ("HTTP/2 frame announcing 16 MiB", huge_frame),
        (
            "HTTP/1.1 GET of a gRPC path",
            b"GET /etcdserverpb.KV/Range HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "HTTP/1.1 POST of garbage to a gRPC path",
            b"POST /etcdserverpb.KV/Range HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
        ),
        ("HTTP/1.1 request line of 256 KiB", long_line),
        ("TLS ClientHello", tls_hello),
        ("a single zero byte", vec![0]),
    ]
}

#[test]
fn garbage_on_the_client_port() {
    let (ours, reference) = start_pair(&[]);
    let rt = runtime();
    for (process, kind) in [(&reference, Kind::Ref35), (&ours, Kind::Ours)] {
        let label = kind.label();
        let url = process.client_url();
        let before = rt.block_on(async { revision(&mut connect(&url).await).await });
        let healthy = start_healthy(&rt, url.clone());
        for (what, bytes) in garbage_inputs() {
            let p = probe(process.client_port(), &bytes, true, Duration::from_secs(10));
            eprintln!("{label}: {what}: closed={} answer={:?}", p.closed, p.answer);
            assert!(
                p.closed,
                "{label}: {what}: the connection was not closed within 10 s of the \
                 client's half-close (answer so far: {:?})",
                p.answer
            );
            if what.starts_with("HTTP/1.1") {
                assert!(
                    p.answer.is_empty() || p.answer.starts_with("HTTP/1."),
                    "{label}: {what}: not an HTTP answer: {:?}",
                    p.answer
                );
            }
            // Still serving after each.
            assert!(
                http_get(process.client_port(), "/health").is_some_and(|r| r.contains("true")),
                "{label}: /health failed after {what}"
            );
        }
        // Without a half-close: garbage alone must end the connection too.
        for (what, bytes) in garbage_inputs()
            .into_iter()
            .filter(|(w, _)| w.contains("random") || w.contains("stream 0"))
        {
            let p = probe(
                process.client_port(),
                &bytes,
                false,
                Duration::from_secs(10),
            );
            eprintln!("{label}: {what} (no half-close): {p:?}");
            assert!(p.closed, "{label}: {what}: connection left open: {p:?}");
        }
        let acked = healthy.finish(&rt, label);
        let after = rt.block_on(async { revision(&mut connect(&url).await).await });
        // The healthy client's puts are the only changes: the HTTP/1.1 "Put"
        // must not have written anything.
        assert_eq!(
            after,
            before + acked as i64,
            "{label}: revision {before} -> {after} with {acked} healthy puts"
        );
    }
    assert!(ours_running(ours), "our server exited");
}

/// gRPC over HTTP/1.1 (a gRPC-framed body with `content-type: application/grpc`).
fn http1_grpc(method: &str, message: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    let mut req = format!(
        "POST /etcdserverpb.KV/{method} HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc\r\n\
         TE: trailers\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    req
}

/// etcd serves gRPC over HTTP/2 only: an HTTP/1.1 request to a gRPC method gets
/// 404 from its HTTP mux and is never executed.
#[test]
fn grpc_over_http1_is_refused_and_changes_nothing() {
    let (ours, reference) = start_pair(&[]);
    let rt = runtime();
    for (process, kind) in [(&reference, Kind::Ref35), (&ours, Kind::Ours)] {
        let label = kind.label();
        let url = process.client_url();
        let before = rt.block_on(async { revision(&mut connect(&url).await).await });
        // PutRequest{key: "p", value: "vv"}; RangeRequest{key: "p"}.
        let put = http1_grpc("Put", &[0x0a, 1, b'p', 0x12, 2, b'v', b'v']);
        let range = http1_grpc("Range", &[0x0a, 1, b'p']);
        let mut problems = Vec::new();
        for (what, bytes) in [("Put", put), ("Range", range)] {
            let p = probe(process.client_port(), &bytes, true, Duration::from_secs(10));
            eprintln!("{label}: HTTP/1.1 gRPC {what}: {p:?}");
            if !p.closed {
                problems.push(format!("HTTP/1.1 gRPC {what}: connection left open"));
            }
            if !p.answer.starts_with("HTTP/1.1 404") {
                problems.push(format!(
                    "HTTP/1.1 gRPC {what}: expected etcd's 404, got {:?}",
                    p.answer
                ));
            }
        }
        rt.block_on(async {
            let mut c = connect(&url).await;
            let resp = c.get("p", None).await.expect("get p");
            if !resp.kvs().is_empty() {
                problems.push(format!("the HTTP/1.1 Put wrote p: {:?}", resp.kvs()[0]));
            }
            let after = revision(&mut c).await;
            if after != before {
                problems.push(format!("revision moved: {before} -> {after}"));
            }
        });
        assert!(problems.is_empty(), "{label}:\n{}", problems.join("\n"));
    }
}

fn ours_running(mut p: EtcdProcess) -> bool {
    p.is_running()
}

#[test]
fn many_connections_opened_and_abandoned() {
    let (ours, reference) = start_pair(&[]);
    let rt = runtime();
    for (process, kind) in [(&reference, Kind::Ref35), (&ours, Kind::Ours)] {
        let label = kind.label();
        let url = process.client_url();
        let port = process.client_port();
        let before = rt.block_on(async { revision(&mut connect(&url).await).await });
        let healthy = start_healthy(&rt, url.clone());

        // 300 raw connections held open: silent, half a preface, a full client start.
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut held = Vec::new();
        for i in 0..300 {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                .unwrap_or_else(|e| panic!("{label}: connection {i}: {e}"));
            let _ = match i % 3 {
                0 => Ok(()),
                1 => s.write_all(&PREFACE[..10]),
                _ => s
                    .write_all(PREFACE)
                    .and_then(|()| s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])),
            };
            held.push(s);
        }
        // While they are held, a new client connects and works.
        rt.block_on(async {
            let mut c = connect(&url).await;
            let r = outcome(c.get("healthy/00001", None)).await;
            assert_eq!(
                r, "ok",
                "{label}: a new client with 300 idle connections open"
            );
        });
        // Abandon them: half closed, the rest just dropped.
        for (i, s) in held.iter().enumerate() {
            if i % 2 == 0 {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        drop(held);

        // gRPC clients that start requests and go away mid-flight.
        let abandoned: u64 = rt.block_on(async {
            let mut n = 0;
            for i in 0..30 {
                let mut c = connect(&url).await;
                let key = format!("abandon/{i:02}");
                let put = c.put(key, vec![b'p'; 64 * 1024], None);
                // Give it a moment to be sent, then drop the future and the client.
                let _ = tokio::time::timeout(Duration::from_micros(200 + i * 50), put).await;
                n += 1;
            }
            n
        });
        assert_eq!(abandoned, 30);
        std::thread::sleep(Duration::from_millis(300));

        let acked = healthy.finish(&rt, label);
        rt.block_on(async {
            let mut c = connect(&url).await;
            let resp = c
                .get("abandon/", Some(GetOptions::new().with_prefix().with_count_only()))
                .await
                .expect("count abandoned puts");
            let happened = resp.count();
            let after = resp.header().unwrap().revision();
            eprintln!("{label}: {happened} of 30 abandoned puts happened; {acked} healthy puts");
            assert_eq!(
                after,
                before + acked as i64 + happened,
                "{label}: revision {before} -> {after}: {acked} healthy puts, {happened} abandoned puts"
            );
            // Every abandoned put that happened is whole.
            let resp = c
                .get("abandon/", Some(GetOptions::new().with_prefix()))
                .await
                .expect("get abandoned puts");
            for kv in resp.kvs() {
                assert_eq!(kv.value().len(), 64 * 1024, "{label}: partial value");
            }
        });
        assert!(
            http_get(port, "/health").is_some_and(|r| r.contains("true")),
            "{label}: /health failed after the abandoned connections"
        );
    }
    assert!(ours_running(ours), "our server exited");
}

// ---------------------------------------------------------------------------
// Disk full (ours only).

/// A tmpfs mounted for the life of the value.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mib: u64) -> Option<Tmpfs> {
        let parent = temp_dir();
        let dir = parent.path().join("fs");
        fs::create_dir_all(&dir).ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(&dir)
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(Tmpfs {
            dir,
            _parent: parent,
        })
    }

    /// Grows the file system (tmpfs can be resized while mounted).
    fn resize(&self, size_mib: u64) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size_mib}m")])
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {} with size={size_mib}m", self.dir.display());
    }

    fn available(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.dir)
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df output")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Our server on a data dir of our choosing (the harness picks its own).
struct Server {
    child: Option<Child>,
    data_dir: PathBuf,
    log: PathBuf,
    client_port: u16,
    peer_port: u16,
    /// Command prefix (e.g. prlimit) and whether SIGXFSZ is ignored.
    wrapper: Vec<String>,
}

impl Server {
    fn new(data_dir: PathBuf, log: PathBuf, wrapper: Vec<String>) -> Server {
        Server {
            child: None,
            data_dir,
            log,
            client_port: free_port(),
            peer_port: free_port(),
            wrapper,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn start(&mut self) {
        let client = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let args = vec![
            "--name=full".to_string(),
            format!("--data-dir={}", self.data_dir.display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=full={peer}"),
        ];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let err = log.try_clone().unwrap();
        let bin = Kind::Ours.etcd_bin();
        let mut cmd = if self.wrapper.is_empty() {
            Command::new(&bin)
        } else {
            let mut c = Command::new(&self.wrapper[0]);
            c.args(&self.wrapper[1..]).arg(&bin);
            c
        };
        let child = cmd
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("spawn etcd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if !self.is_running() {
                panic!(
                    "our server exited during start-up; log:\n{}",
                    self.log_tail()
                );
            }
            if http_get(self.client_port, "/health")
                .is_some_and(|r| r.contains(r#""health":"true""#))
            {
                return;
            }
            if Instant::now() > deadline {
                self.kill9();
                panic!(
                    "our server was not healthy within 20 s; log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; true if it exited within 10 s (else it is killed).
    fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        tail(&self.log_text(), 30)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What happened when the disk filled up.
struct FullRun {
    acked: BTreeMap<String, usize>,
    attempted: Vec<String>,
    first_error: Option<String>,
    later: Vec<String>,
}

/// Writes until the server fails a request (or exits), then a few more; every
/// call is bounded, so a hung server fails the test instead of blocking it.
/// `op(i)` returns the key written and the size of its value, after the call.
async fn write_until_full(server_url: &str, mut budget: usize, big_txns: bool) -> FullRun {
    let mut run = FullRun {
        acked: BTreeMap::new(),
        attempted: Vec::new(),
        first_error: None,
        later: Vec::new(),
    };
    let mut client = connect(server_url).await;
    let started = Instant::now();
    let mut i = 0;
    while budget > 0 && started.elapsed() < Duration::from_secs(40) {
        budget -= 1;
        i += 1;
        let key = format!("full/{i:05}");
        let len = if big_txns { 100 } else { 48 * 1024 };
        run.attempted.push(key.clone());
        let t = Instant::now();
        let r = outcome(client.put(key.as_str(), vec![b'f'; len], None)).await;
        if r == "ok" {
            run.acked.insert(key, len);
        } else {
            run.first_error = Some(format!("put {key} after {:.1?}: {r}", t.elapsed()));
            break;
        }
        if big_txns {
            // ~1 MiB in the WAL, nothing in the backend (the compare fails).
            let txn = Txn::new()
                .when([Compare::version("never", CompareOp::Greater, 0)])
                .and_then([TxnOp::put("never", vec![b'w'; 1000 * 1024], None)]);
            let t = Instant::now();
            let r = outcome(client.txn(txn)).await;
            if r != "ok" {
                run.first_error = Some(format!("big txn after {:.1?}: {r}", t.elapsed()));
                break;
            }
        }
    }
    if run.first_error.is_some() {
        for j in 0..3 {
            let key = format!("full/after-{j}");
            run.attempted.push(key.clone());
            let t = Instant::now();
            let r = outcome(client.put(key.as_str(), "small", None)).await;
            if r == "ok" {
                run.acked.insert(key.clone(), 5);
            }
            run.later
                .push(format!("put {key} after {:.1?}: {r}", t.elapsed()));
        }
    }
    run
}

/// Key -> value length under `prefix`, read in pages (values are large), and
/// the revision the pages were read at.
async fn read_prefix(c: &mut Client, prefix: &str) -> (BTreeMap<String, usize>, i64) {
    let mut found = BTreeMap::new();
    let mut start = prefix.as_bytes().to_vec();
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    let mut rev = 0;
    for _ in 0..1000 {
        let mut opts = GetOptions::new().with_range(end.clone()).with_limit(40);
        if rev != 0 {
            opts = opts.with_revision(rev);
        }
        let resp = tokio::time::timeout(CALL_TIMEOUT, c.get(start.clone(), Some(opts)))
            .await
            .expect("read back: timed out")
            .expect("read back");
        if rev == 0 {
            rev = resp.header().unwrap().revision();
        }
        for kv in resp.kvs() {
            found.insert(
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.value().len(),
            );
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                start = last.key().to_vec();
                start.push(0);
            }
            _ => return (found, rev),
        }
    }
    panic!("more than 1000 pages under {prefix}");
}

/// Fills the file system under `dir` leaving `leave` bytes free.
fn fill(dir: &Path, avail: u64, leave: u64) -> PathBuf {
    let filler = dir.join("filler");
    let len = avail.saturating_sub(leave);
    let ok = Command::new("fallocate")
        .args(["-l", &len.to_string()])
        .arg(&filler)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "fallocate {len} bytes in {}", dir.display());
    filler
}

/// Starts our server on a tmpfs, fills it, writes until full, then frees space,
/// restarts and checks that every acknowledged write survived.
fn disk_full_case(name: &str, size_mib: u64, leave: u64, big_txns: bool) {
    let forced = std::env::var_os("ETCD_RS_DISK_FULL_PRLIMIT").is_some_and(|v| !v.is_empty());
    let mounted = if forced { None } else { Tmpfs::mount(size_mib) };
    let Some(fs_) = mounted else {
        if big_txns {
            // RLIMIT_FSIZE is per file: it cannot stop the WAL's next 64 MiB
            // segment without stopping the first one too.
            eprintln!("{name}: no tmpfs (forced prlimit: {forced}); SKIPPED: needs a tmpfs");
            return;
        }
        eprintln!("{name}: no tmpfs (forced prlimit: {forced}); using prlimit --fsize instead");
        return disk_full_prlimit(name);
    };
    eprintln!("{name}: tmpfs of {size_mib} MiB at {}", fs_.dir.display());
    let data = fs_.dir.join("data");
    let log = fs_._parent.path().join("etcd.log");
    let mut server = Server::new(data.clone(), log, Vec::new());
    server.start();
    let avail = fs_.available();
    let filler = fill(&fs_.dir, avail, leave);
    eprintln!(
        "{name}: {avail} bytes free after start-up; filler leaves {}",
        fs_.available()
    );
    let rt = runtime();
    let run = rt.block_on(write_until_full(&server.url(), 3000, big_txns));
    stop_after_full(
        name,
        &mut server,
        &run,
        &["no space left on device", "enospc"],
    );

    // Room again (the WAL may need a new 64 MiB segment at once).
    fs::remove_file(&filler).expect("remove the filler");
    fs_.resize(size_mib + 160);
    verify_after_full(name, &mut server, &run, &rt);
}

/// Checks how the server failed (bounded, logged clearly) and stops it.
fn stop_after_full(name: &str, server: &mut Server, run: &FullRun, log_says: &[&str]) {
    std::thread::sleep(Duration::from_millis(300));
    let running = server.is_running();
    let exit = server.exit_status();
    eprintln!(
        "{name}: {} writes acknowledged; first failure: {:?}; then: {:?}; server running: \
         {running} (exit {exit:?})",
        run.acked.len(),
        run.first_error,
        run.later
    );
    let first_error = run.first_error.clone().unwrap_or_else(|| {
        panic!(
            "{name}: the disk never filled up; log:\n{}",
            server.log_tail()
        )
    });
    assert!(
        !first_error.contains("no answer within"),
        "{name}: a write hung on a full disk: {first_error}\nlog:\n{}",
        server.log_tail()
    );
    for l in &run.later {
        assert!(
            !l.contains("no answer within"),
            "{name}: a write hung on a full disk: {l}"
        );
    }
    let log = server.log_text();
    let lower = log.to_lowercase();
    assert!(
        log_says.iter().any(|s| lower.contains(s)),
        "{name}: the log does not say {log_says:?}:\n{}",
        tail(&log, 20)
    );
    let mut shutdown = "had exited";
    if running {
        shutdown = if server.terminate() {
            "exited on SIGTERM"
        } else {
            "did not exit within 10 s of SIGTERM (killed)"
        };
    }
    eprintln!(
        "{name}: server {shutdown}; its last log lines:\n{}",
        tail(&log, 4)
    );
    server.child = None;
}

/// Restarts with room to spare: every acknowledged write is there, whole; no
/// write that was not attempted; one revision per put that happened.
fn verify_after_full(name: &str, server: &mut Server, run: &FullRun, rt: &tokio::runtime::Runtime) {
    let log_before = server.log_text().len();
    server.start();
    let url = server.url();
    rt.block_on(async {
        let mut c = connect(&url).await;
        let (found, rev) = read_prefix(&mut c, "full/").await;
        for (k, len) in &run.acked {
            assert_eq!(
                found.get(k),
                Some(len),
                "{name}: acknowledged {k} ({len} bytes) lost or changed after the disk filled"
            );
        }
        for (k, len) in &found {
            assert!(run.attempted.contains(k), "{name}: {k} was never written");
            let whole = *len == 48 * 1024 || *len == 100 || *len == 5;
            assert!(whole, "{name}: {k} holds a partial value of {len} bytes");
        }
        // The failed-compare txns change nothing.
        assert_eq!(rev, 1 + found.len() as i64, "{name}: store revision");
        put_ok(&mut c, "after-full", "ok").await;
        eprintln!(
            "{name}: after restart: {} keys, {} acknowledged before; revision {rev}",
            found.len(),
            run.acked.len()
        );
    });
    let after = server.log_text()[log_before..].to_string();
    eprintln!(
        "{name}: restart repaired a torn WAL tail: {}",
        after.contains("repaired a torn write")
    );
    server.kill9();
}

/// The backend (redb) runs out of space; the WAL still has preallocated room.
#[test]
fn disk_full_backend_keeps_every_acknowledged_write() {
    disk_full_case(
        "disk_full_backend_keeps_every_acknowledged_write",
        96,
        3 << 20,
        false,
    );
}

/// The WAL fills its segment and cannot preallocate the next one.
#[test]
fn disk_full_wal_segment_keeps_every_acknowledged_write() {
    disk_full_case(
        "disk_full_wal_segment_keeps_every_acknowledged_write",
        100,
        20 << 20,
        true,
    );
}

/// Fallback when tmpfs cannot be mounted: a file size limit (SIGXFSZ ignored,
/// so writes past it fail with EFBIG). The WAL's 64 MiB preallocation must fit.
fn disk_full_prlimit(name: &str) {
    let dir = temp_dir();
    let limit: u64 = 64 * 1024 * 1024 + 6 * 1024 * 1024;
    let wrapper = vec![
        "sh".to_string(),
        "-c".to_string(),
        format!("trap '' XFSZ; exec prlimit --fsize={limit} \"$@\""),
        "sh".to_string(),
    ];
    let mut server = Server::new(
        dir.path().join("data"),
        dir.path().join("etcd.log"),
        wrapper,
    );
    server.start();
    let rt = runtime();
    let run = rt.block_on(write_until_full(&server.url(), 3000, false));
    stop_after_full(name, &mut server, &run, &["file too large", "efbig"]);
    server.wrapper.clear();
    verify_after_full(name, &mut server, &run, &rt);
}
