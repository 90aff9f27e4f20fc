//! The backend quota against etcd 3.4.23: with the same
//! `--quota-backend-bytes`, a few clients put values of one size until
//! "database space exceeded"; our member must hold about as much data before
//! NOSPACE as etcd does (within [`TOLERANCE`]).
//!
//! `measure_by_hand` (ignored) runs the same fill for the cases in
//! `QUOTA_MEASURE` (`<quota MiB>:<value bytes>,...`) and prints the figures
//! of both servers, e.g. for the default-sized quotas that take too long for
//! the suite.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::client::{bounded, connect, must};
use common::{EtcdProcess, Kind};

/// Clients writing concurrently.
const CLIENTS: u64 = 4;
/// How far our data held before NOSPACE may be from etcd's (a fraction).
const TOLERANCE: f64 = 0.10;
/// Bound on one fill.
const FILL_TIMEOUT: Duration = Duration::from_secs(600);

/// What one server held when it refused the first put.
#[derive(Debug)]
struct Filled {
    /// Puts that succeeded.
    puts: u64,
    /// Value bytes they wrote.
    held: u64,
    /// Status after the refusal.
    db_size: i64,
    db_size_in_use: i64,
    /// The backend file's length (redb's for us, bbolt's for etcd).
    file_bytes: u64,
    elapsed: Duration,
}

/// Starts a member of `kind` with `quota` and puts values of `value_bytes`
/// (distinct keys) from [`CLIENTS`] clients until one is refused for space.
fn fill(kind: Kind, quota: u64, value_bytes: usize) -> Filled {
    let server = EtcdProcess::start(kind, &["--quota-backend-bytes", &quota.to_string()]);
    let url = server.client_url();
    let file = server.data_dir().join("member/snap/db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let filled = runtime.block_on(async move {
        // Every put costs more than its value: twice the quota's worth of
        // puts is more than any member can take.
        let max_puts = 2 * quota / value_bytes as u64 + 1000;
        let next = Arc::new(AtomicU64::new(0));
        let ok = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let (next, ok, refused) = (next.clone(), ok.clone(), refused.clone());
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let mut client = connect(&[url]).await;
                let value = vec![b'q'; value_bytes];
                while !refused.load(Ordering::Acquire) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    assert!(i < max_puts, "{max_puts} puts never hit the quota");
                    let key = format!("fill/{i:08}");
                    match bounded("put", client.put(key, value.clone(), None)).await {
                        Ok(_) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.contains("database space exceeded") => {
                            refused.store(true, Ordering::Release);
                        }
                        Err(e) => panic!("put {i}: {e}"),
                    }
                }
            }));
        }
        let joined = tokio::time::timeout(FILL_TIMEOUT, async {
            for t in tasks {
                t.await.unwrap();
            }
        })
        .await;
        assert!(joined.is_ok(), "the fill took over {FILL_TIMEOUT:?}");
        let elapsed = started.elapsed();
        let mut client = connect(&[url]).await;
        let status = must("status", client.status()).await;
        let puts = ok.load(Ordering::Relaxed);
        Filled {
            puts,
            held: puts * value_bytes as u64,
            db_size: status.db_size(),
            db_size_in_use: status.raft_used_db_size(),
            file_bytes: std::fs::metadata(&file).map_or(0, |m| m.len()),
            elapsed,
        }
    });
    eprintln!(
        "{}: quota {quota}, values of {value_bytes} bytes: {filled:?}",
        kind.label()
    );
    filled
}

/// Fills ours and etcd 3.4.23 alike; returns (ours, etcd's).
fn fill_both(quota: u64, value_bytes: usize) -> (Filled, Filled) {
    (
        fill(Kind::Ours, quota, value_bytes),
        fill(Kind::Ref34, quota, value_bytes),
    )
}

/// One case at a time: on a small machine two would slow each other's
/// servers and change how many puts pass the quota check at once.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn check_holds_what_etcd_holds(quota_mib: u64, value_bytes: usize) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (ours, etcd) = fill_both(quota_mib << 20, value_bytes);
    // etcd may hold more than its quota: puts pass its check until the next
    // backend commit (every 100 ms, later under load) updates the size, and
    // a loaded machine let 17% more through once (776 puts of 100 kB into
    // 64 MiB, 673 to 691 when idle). What it holds up to its quota is what
    // ours must hold.
    let etcd_within_quota = etcd.held.min(quota_mib << 20);
    let ratio = ours.held as f64 / etcd_within_quota as f64;
    eprintln!(
        "{quota_mib} MiB, {value_bytes}-byte values: ours held {} bytes ({} puts, file {}), \
         etcd {} ({} puts, file {}): {ratio:.3}x",
        ours.held, ours.puts, ours.file_bytes, etcd.held, etcd.puts, etcd.file_bytes
    );
    assert!(
        (ratio - 1.0).abs() <= TOLERANCE,
        "data held before NOSPACE: ours {ours:?}, etcd 3.4.23 {etcd:?} ({ratio:.3}x)"
    );
    // Both report the size they charged: at the quota, not far below.
    let quota = (quota_mib << 20) as f64;
    assert!(
        ours.db_size as f64 >= quota * (1.0 - TOLERANCE),
        "our dbSize {} at NOSPACE, quota {quota}",
        ours.db_size
    );
    assert!(ours.db_size_in_use <= ours.db_size, "{ours:?}");
}

#[test]
fn quota_64mib_10kb_values_holds_what_etcd_holds() {
    check_holds_what_etcd_holds(64, 10_000);
}

#[test]
fn quota_64mib_100kb_values_holds_what_etcd_holds() {
    check_holds_what_etcd_holds(64, 100_000);
}

#[test]
#[ignore = "by hand: QUOTA_MEASURE=<quota MiB>:<value bytes>,..."]
fn measure_by_hand() {
    let cases = std::env::var("QUOTA_MEASURE").unwrap_or_else(|_| "64:10000".to_string());
    for case in cases.split(',') {
        let (quota_mib, value_bytes) = case.split_once(':').expect("<quota MiB>:<value bytes>");
        let quota_mib: u64 = quota_mib.parse().unwrap();
        let value_bytes: usize = value_bytes.parse().unwrap();
        let only = std::env::var("QUOTA_MEASURE_ONLY").unwrap_or_default();
        let ours = (only != "etcd").then(|| fill(Kind::Ours, quota_mib << 20, value_bytes));
        let etcd = (only != "ours").then(|| fill(Kind::Ref34, quota_mib << 20, value_bytes));
        if let (Some(ours), Some(etcd)) = (ours, etcd) {
            eprintln!(
                "MEASURED {quota_mib} MiB, {value_bytes}-byte values: ours held {} bytes in {:?}, \
                 etcd {} in {:?} ({:.3}x)",
                ours.held,
                ours.elapsed,
                etcd.held,
                etcd.elapsed,
                ours.held as f64 / etcd.held as f64
            );
        }
    }
}
