//! Leases end to end, through the `etcd-client` crate:
//!
//! - expiry of a lease deletes its keys exactly once, all in one revision
//!   (watched), and the lease is gone afterwards;
//! - keep-alives keep a lease and its keys; without them the keys go, never
//!   before the TTL has passed since the last keep-alive;
//! - TTL boundaries, explicit and duplicate IDs, unknown IDs and ID 0, puts
//!   with unknown leases and `ignore_lease`, and the lease list, compared with
//!   etcd 3.5.1 (same transcript, server-chosen IDs normalized);
//! - a 3-member cluster: kill -9 of the leader does not expire a lease kept
//!   alive through a follower (keep-alive and TimeToLive forwarded to the
//!   leader), and the lease expires once the keep-alives stop;
//! - a lease and its key survive a restart (SIGTERM and SIGKILL) of a single
//!   member, with a fresh TTL plus one election timeout, then expire;
//! - with `--experimental-enable-lease-checkpoint`, a new leader continues
//!   from the checkpointed remaining TTL rather than the full TTL, also after
//!   a second leader change (the first new leader schedules checkpoints too).
//!
//! Timing: only lower bounds that follow from the semantics (a lease cannot
//! expire before its TTL has passed since its last renewal) and generous upper
//! bounds are asserted. Every wait is bounded. The cluster tests run one at a
//! time (a lock): their TTLs are a few election timeouts of the harness
//! (heartbeat 50 ms, election timeout 500 ms).

mod cluster_support;
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_support::{Cluster, ELECTION_MS};
use common::client::{bounded, connect, must};
use common::{start_pair, EtcdProcess, Kind};
use etcd_client::{
    Client, EventType, GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions, Txn,
    TxnOp, WatchOptions,
};

/// etcd's minimum TTL with its default timing (heartbeat 100 ms, election
/// timeout 1000 ms): ⌈1.5 × 1000 ms⌉ in seconds.
const DEFAULT_MIN_TTL: i64 = 2;
/// The election timeout of a single member started with default flags.
const DEFAULT_ELECTION: Duration = Duration::from_millis(1000);
/// The minimum TTL of the cluster harness (heartbeat 50 ms, election 500 ms):
/// ⌈1.5 × 500 ms⌉ in seconds.
const CLUSTER_MIN_TTL: i64 = 1;
/// Bound on one client call.
/// How long an unrenewed lease's keys may take to disappear.
const GONE_WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(100);
/// Tolerance under a lower time bound (clock granularity).
const CLOCK_SLACK: Duration = Duration::from_millis(50);
const LEASE_NOT_FOUND: &str = "NotFound: etcdserver: requested lease not found";

static HEAVY: Mutex<()> = Mutex::new(());

/// The cluster tests run one at a time.
fn heavy_lock() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---------------------------------------------------------------------------
// Client helpers.

fn with_lease(id: i64) -> Option<PutOptions> {
    Some(PutOptions::new().with_lease(id))
}

/// The keys under `prefix` (with their lease) and the store revision.
async fn keys_under(c: &mut Client, prefix: &str) -> Result<(Vec<(String, i64)>, i64), String> {
    let resp = bounded("get", c.get(prefix, Some(GetOptions::new().with_prefix()))).await?;
    let keys = resp
        .kvs()
        .iter()
        .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv.lease()))
        .collect();
    Ok((keys, resp.header().map_or(0, |h| h.revision())))
}

/// Polls until nothing is left under `prefix` (bounded by GONE_WAIT); the
/// instant it was first seen gone and the revision then.
async fn wait_gone(c: &mut Client, prefix: &str) -> (Instant, i64) {
    let deadline = Instant::now() + GONE_WAIT;
    loop {
        let checked_at = Instant::now();
        match keys_under(c, prefix).await {
            Ok((keys, rev)) if keys.is_empty() => return (checked_at, rev),
            Ok(_) => {}
            Err(e) => eprintln!("get {prefix}: {e} (retrying)"),
        }
        assert!(
            Instant::now() < deadline,
            "the keys under {prefix:?} of an unrenewed lease were still there after {GONE_WAIT:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// (TTL, granted TTL, keys) of lease `id` as the member behind `c` reports it.
async fn time_to_live(c: &mut Client, id: i64) -> Result<(i64, i64, Vec<String>), String> {
    let options = LeaseTimeToLiveOptions::new().with_keys();
    let resp = bounded("time to live", c.lease_time_to_live(id, Some(options))).await?;
    assert_eq!(resp.id(), id, "TimeToLive answered for another lease");
    let mut keys: Vec<String> = resp
        .keys()
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    keys.sort();
    Ok((resp.ttl(), resp.granted_ttl(), keys))
}

// ---------------------------------------------------------------------------
// 1. Expiry.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_deletes_keys_exactly_once() {
    let server = EtcdProcess::start(Kind::Ours, &[]);
    let mut c = connect(&[server.client_url()]).await;
    must("put control", c.put("control", "stays", None)).await;
    must("put e/d", c.put("e/d", "no lease yet", None)).await;

    let granted_at = Instant::now();
    let grant = must("grant", c.lease_grant(DEFAULT_MIN_TTL, None)).await;
    assert_eq!(grant.ttl(), DEFAULT_MIN_TTL, "granted TTL");
    let id = grant.id();
    assert!(id > 0, "server-chosen lease IDs are positive: {id}");
    // Attached in a txn, by separate puts, twice to the same key, and by
    // moving an existing lease-less key under the lease.
    let txn = Txn::new().and_then([
        TxnOp::put("e/a", "1", with_lease(id)),
        TxnOp::put("e/b", "2", with_lease(id)),
    ]);
    assert!(must("txn", c.txn(txn)).await.succeeded());
    must("put e/c", c.put("e/c", "3", with_lease(id))).await;
    must("put e/c again", c.put("e/c", "3b", with_lease(id))).await;
    must("put e/d", c.put("e/d", "4", with_lease(id))).await;
    let expected: Vec<String> = ["e/a", "e/b", "e/c", "e/d"].map(String::from).to_vec();

    let (keys, rev) = keys_under(&mut c, "e/").await.expect("get e/");
    assert_eq!(
        keys,
        expected.iter().map(|k| (k.clone(), id)).collect::<Vec<_>>(),
        "every key is attached to the lease"
    );
    let (ttl, granted, attached) = time_to_live(&mut c, id).await.expect("TimeToLive");
    assert_eq!(granted, DEFAULT_MIN_TTL);
    assert!((0..=DEFAULT_MIN_TTL).contains(&ttl), "remaining TTL {ttl}");
    if granted_at.elapsed() < Duration::from_millis(900) {
        assert!(ttl >= 1, "remaining TTL {ttl} right after the grant");
    }
    assert_eq!(attached, expected, "TimeToLive's keys");

    // Every event after the last put.
    let options = WatchOptions::new()
        .with_all_keys()
        .with_start_revision(rev + 1)
        .with_prev_key();
    let mut watch = must("watch", c.watch("", Some(options))).await;
    let created = must("watch created", watch.message())
        .await
        .expect("the watch stream ended");
    assert!(created.created(), "the first watch response: {created:?}");

    let (gone_at, gone_rev) = wait_gone(&mut c, "e/").await;
    let lived = gone_at - granted_at;
    eprintln!("expiry: keys gone {lived:?} after the grant");
    assert!(
        lived + CLOCK_SLACK >= Duration::from_secs(DEFAULT_MIN_TTL as u64),
        "the keys were gone {lived:?} after the grant of a {DEFAULT_MIN_TTL} s lease"
    );
    assert_eq!(gone_rev, rev + 1, "the revoke took exactly one revision");
    let (control, _) = keys_under(&mut c, "control").await.expect("get control");
    assert_eq!(control.len(), 1, "a key without the lease stays");

    let (ttl, granted, attached) = time_to_live(&mut c, id).await.expect("TimeToLive");
    assert_eq!(
        (ttl, granted, attached),
        (-1, 0, vec![]),
        "TimeToLive of the expired lease"
    );
    let revoke = bounded("revoke", c.lease_revoke(id)).await.map(|_| ());
    assert_eq!(revoke, Err(LEASE_NOT_FOUND.to_string()), "second revoke");
    let keep_alive = bounded("keep-alive", c.lease_keep_alive(id))
        .await
        .map(|_| ());
    assert!(keep_alive.is_err(), "keep-alive of the expired lease");
    let leases = must("leases", c.leases()).await;
    assert!(
        leases.leases().iter().all(|l| l.id() != id),
        "the expired lease is still listed"
    );

    // A sentinel write closes the window: everything the watch saw before it.
    let sentinel = must("put sentinel", c.put("zz-sentinel", "x", None)).await;
    let sentinel_rev = sentinel.header().map_or(0, |h| h.revision());
    assert_eq!(sentinel_rev, rev + 2, "nothing else was written");
    let mut seen = Vec::new();
    'read: loop {
        let resp = must("watch message", watch.message())
            .await
            .expect("the watch stream ended");
        assert!(!resp.canceled(), "watch canceled: {resp:?}");
        for ev in resp.events() {
            let kv = ev.kv().expect("an event's kv");
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            if key == "zz-sentinel" {
                break 'read;
            }
            let prev_lease = ev.prev_kv().map(|p| p.lease());
            seen.push((key, ev.event_type(), kv.mod_revision(), prev_lease));
        }
    }
    let expected_events: Vec<_> = expected
        .iter()
        .map(|k| (k.clone(), EventType::Delete, rev + 1, Some(id)))
        .collect();
    assert_eq!(
        seen, expected_events,
        "one DELETE per key, all at the revoke's revision, nothing else"
    );
}

// ---------------------------------------------------------------------------
// 2. Keep-alive.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_keeps_keys() {
    let server = EtcdProcess::start(Kind::Ours, &[]);
    let mut c = connect(&[server.client_url()]).await;
    let grant = must("grant", c.lease_grant(DEFAULT_MIN_TTL, None)).await;
    let id = grant.id();
    assert_eq!(grant.ttl(), DEFAULT_MIN_TTL);
    must("put k/a", c.put("k/a", "1", with_lease(id))).await;
    must("put k/b", c.put("k/b", "2", with_lease(id))).await;

    let mut last_sent = Instant::now();
    let (mut keeper, mut stream) = must("keep-alive", c.lease_keep_alive(id)).await;
    assert_eq!(keeper.id(), id);
    let ttl_secs = Duration::from_secs(DEFAULT_MIN_TTL as u64);
    let kept_from = Instant::now();
    let mut renewals = 0;
    while kept_from.elapsed() < 3 * ttl_secs {
        tokio::time::sleep(Duration::from_millis(300)).await;
        last_sent = Instant::now();
        must("send keep-alive", keeper.keep_alive()).await;
        let resp = must("keep-alive response", stream.message())
            .await
            .expect("the keep-alive stream ended");
        assert_eq!(
            (resp.id(), resp.ttl()),
            (id, DEFAULT_MIN_TTL),
            "keep-alive response"
        );
        renewals += 1;
        let (keys, _) = keys_under(&mut c, "k/").await.expect("get k/");
        assert_eq!(
            keys,
            vec![("k/a".to_string(), id), ("k/b".to_string(), id)],
            "a lease kept alive lost its keys after {:?}",
            kept_from.elapsed()
        );
        let (ttl, granted, _) = time_to_live(&mut c, id).await.expect("TimeToLive");
        assert_eq!(granted, DEFAULT_MIN_TTL);
        // Over a second since the renewal (a stalled machine) may truncate to 0.
        let since_renewal = last_sent.elapsed();
        let least = if since_renewal < Duration::from_millis(900) {
            1
        } else {
            0
        };
        assert!(
            ttl >= least && ttl <= DEFAULT_MIN_TTL,
            "remaining TTL {ttl} of a lease kept alive ({since_renewal:?} after a keep-alive)"
        );
    }
    eprintln!(
        "keep-alive: {renewals} renewals over {:?}",
        kept_from.elapsed()
    );

    drop(keeper);
    drop(stream);
    let (gone_at, _) = wait_gone(&mut c, "k/").await;
    let after = gone_at - last_sent;
    eprintln!("keep-alive: keys gone {after:?} after the last keep-alive");
    assert!(
        after + CLOCK_SLACK >= ttl_secs,
        "the keys were gone {after:?} after the last keep-alive of a {DEFAULT_MIN_TTL} s lease"
    );
    let (ttl, _, _) = time_to_live(&mut c, id).await.expect("TimeToLive");
    assert_eq!(ttl, -1, "TimeToLive of the expired lease");
}

// ---------------------------------------------------------------------------
// 3. Boundaries and bad IDs, against etcd 3.5.1.

/// A scenario's transcript, with server-chosen lease IDs as `<id-N>`.
#[derive(Default)]
struct Transcript {
    lines: Vec<String>,
    chosen: Vec<i64>,
}

impl Transcript {
    fn push(&mut self, line: String) {
        self.lines.push(line);
    }

    fn name(&self, id: i64) -> String {
        match self.chosen.iter().position(|&c| c == id) {
            Some(i) => format!("<id-{}>", i + 1),
            None => id.to_string(),
        }
    }

    async fn grant(&mut self, c: &mut Client, ttl: i64, id: Option<i64>) -> Option<i64> {
        let options = id.map(|id| LeaseGrantOptions::new().with_id(id));
        let what = match id {
            Some(id) => format!("grant ttl={ttl} id={id}"),
            None => format!("grant ttl={ttl}"),
        };
        match bounded(&what, c.lease_grant(ttl, options)).await {
            Ok(resp) => {
                if id.is_none() {
                    self.chosen.push(resp.id());
                }
                let rev = resp.header().map_or(0, |h| h.revision());
                let line = format!(
                    "{what}: id={} ttl={} error={:?} rev={rev}",
                    self.name(resp.id()),
                    resp.ttl(),
                    resp.error()
                );
                self.push(line);
                Some(resp.id())
            }
            Err(e) => {
                self.push(format!("{what}: {e}"));
                None
            }
        }
    }

    async fn revoke(&mut self, c: &mut Client, id: i64) {
        let what = format!("revoke {}", self.name(id));
        let line = match bounded(&what, c.lease_revoke(id)).await {
            Ok(resp) => format!("{what}: rev={}", resp.header().map_or(0, |h| h.revision())),
            Err(e) => format!("{what}: {e}"),
        };
        self.push(line);
    }

    async fn time_to_live(&mut self, c: &mut Client, id: i64, keys: bool) {
        let what = format!("time-to-live {} keys={keys}", self.name(id));
        let options = keys.then(|| LeaseTimeToLiveOptions::new().with_keys());
        let line = match bounded(&what, c.lease_time_to_live(id, options)).await {
            Ok(resp) => {
                let mut attached: Vec<String> = resp
                    .keys()
                    .iter()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect();
                attached.sort(); // etcd lists them in Go map order
                format!(
                    "{what}: id={} ttl={} granted={} keys={attached:?} rev={}",
                    self.name(resp.id()),
                    remaining(resp.ttl(), resp.granted_ttl()),
                    resp.granted_ttl(),
                    resp.header().map_or(0, |h| h.revision())
                )
            }
            Err(e) => format!("{what}: {e}"),
        };
        self.push(line);
    }

    async fn keep_alive(&mut self, c: &mut Client, id: i64) {
        let what = format!("keep-alive {}", self.name(id));
        let line = match bounded(&what, c.lease_keep_alive(id)).await {
            Ok((mut keeper, mut stream)) => {
                let again = async {
                    keeper.keep_alive().await?;
                    stream.message().await
                };
                match bounded(&what, again).await {
                    Ok(Some(resp)) => format!(
                        "{what}: id={} ttl={} rev={}",
                        self.name(resp.id()),
                        resp.ttl(),
                        resp.header().map_or(0, |h| h.revision())
                    ),
                    Ok(None) => format!("{what}: the stream ended"),
                    Err(e) => format!("{what}: second keep-alive: {e}"),
                }
            }
            Err(e) => format!("{what}: {e}"),
        };
        self.push(line);
    }

    async fn put(
        &mut self,
        c: &mut Client,
        key: &str,
        value: &str,
        how: &str,
        options: PutOptions,
    ) {
        let what = format!("put {key}={value} {how}");
        let line = match bounded(&what, c.put(key, value, Some(options))).await {
            Ok(resp) => format!("{what}: rev={}", resp.header().map_or(0, |h| h.revision())),
            Err(e) => format!("{what}: {e}"),
        };
        self.push(line);
    }

    async fn get(&mut self, c: &mut Client, prefix: &str) {
        let what = format!("get {prefix}*");
        let line = match bounded(&what, c.get(prefix, Some(GetOptions::new().with_prefix()))).await
        {
            Ok(resp) => {
                let kvs: Vec<String> = resp
                    .kvs()
                    .iter()
                    .map(|kv| {
                        format!(
                            "{}={} lease={} mod={} version={}",
                            String::from_utf8_lossy(kv.key()),
                            String::from_utf8_lossy(kv.value()),
                            self.name(kv.lease()),
                            kv.mod_revision(),
                            kv.version()
                        )
                    })
                    .collect();
                format!(
                    "{what}: rev={} [{}]",
                    resp.header().map_or(0, |h| h.revision()),
                    kvs.join(", ")
                )
            }
            Err(e) => format!("{what}: {e}"),
        };
        self.push(line);
    }

    async fn leases(&mut self, c: &mut Client) {
        let line = match bounded("leases", c.leases()).await {
            Ok(resp) => {
                let ids: Vec<String> = resp.leases().iter().map(|l| self.name(l.id())).collect();
                format!("leases: [{}]", ids.join(", "))
            }
            Err(e) => format!("leases: {e}"),
        };
        self.push(line);
    }
}

/// A remaining TTL as `~granted` when it is within the second it may lose to
/// truncation, the number (with `!`) otherwise.
fn remaining(ttl: i64, granted: i64) -> String {
    if ttl >= 0 && granted > 0 && (granted - 1..=granted).contains(&ttl) {
        format!("~{granted}")
    } else if ttl == -1 {
        "-1".to_string()
    } else {
        format!("{ttl}!")
    }
}

const EXPLICIT_ID: i64 = 0x1234;
const NEGATIVE_ID: i64 = -5;
const UNKNOWN_ID: i64 = 0x777;

async fn boundary_scenario(c: &mut Client) -> Vec<String> {
    let mut t = Transcript::default();
    // TTLs the server raises to the minimum (or keeps): each lease is revoked
    // at once, so none can expire while the scenario runs.
    for ttl in [
        0,
        1,
        DEFAULT_MIN_TTL,
        DEFAULT_MIN_TTL + 1,
        -1,
        -100,
        i64::MIN,
    ] {
        if let Some(id) = t.grant(c, ttl, None).await {
            t.time_to_live(c, id, false).await;
            t.revoke(c, id).await;
        }
    }
    // The largest TTL, and beyond.
    let max = t.grant(c, 9_000_000_000, None).await;
    t.grant(c, 9_000_000_001, None).await;
    t.grant(c, i64::MAX, None).await;
    // Explicit IDs; an ID twice.
    t.grant(c, 100, Some(EXPLICIT_ID)).await;
    t.grant(c, 100, Some(EXPLICIT_ID)).await;
    t.grant(c, 7, Some(EXPLICIT_ID)).await;
    t.grant(c, 50, Some(NEGATIVE_ID)).await;
    t.grant(c, 9_000_000_001, Some(UNKNOWN_ID)).await;
    t.time_to_live(c, EXPLICIT_ID, false).await;
    if let Some(max) = max {
        t.time_to_live(c, max, false).await;
    }

    // Puts with leases, unknown leases and ignore_lease.
    t.put(
        c,
        "k1",
        "a",
        "lease=4660",
        PutOptions::new().with_lease(EXPLICIT_ID),
    )
    .await;
    t.put(
        c,
        "k2",
        "b",
        "lease=4660",
        PutOptions::new().with_lease(EXPLICIT_ID),
    )
    .await;
    t.put(
        c,
        "k3",
        "c",
        "lease=-5",
        PutOptions::new().with_lease(NEGATIVE_ID),
    )
    .await;
    t.put(
        c,
        "k4",
        "d",
        "lease=unknown",
        PutOptions::new().with_lease(UNKNOWN_ID),
    )
    .await;
    t.put(c, "plain", "p", "", PutOptions::new()).await;
    t.put(
        c,
        "plain",
        "p2",
        "ignore_lease",
        PutOptions::new().with_ignore_lease(),
    )
    .await;
    t.put(
        c,
        "k1",
        "a2",
        "ignore_lease",
        PutOptions::new().with_ignore_lease(),
    )
    .await;
    t.put(
        c,
        "missing",
        "m",
        "ignore_lease",
        PutOptions::new().with_ignore_lease(),
    )
    .await;
    t.put(
        c,
        "k1",
        "a3",
        "lease=4660 ignore_lease",
        PutOptions::new()
            .with_lease(EXPLICIT_ID)
            .with_ignore_lease(),
    )
    .await;
    // k3 moves from one lease to the other.
    t.put(
        c,
        "k3",
        "c2",
        "lease=4660",
        PutOptions::new().with_lease(EXPLICIT_ID),
    )
    .await;
    t.get(c, "").await;
    t.time_to_live(c, EXPLICIT_ID, true).await;
    t.time_to_live(c, NEGATIVE_ID, true).await;

    // Unknown IDs and ID 0.
    for id in [UNKNOWN_ID, 0] {
        t.time_to_live(c, id, false).await;
        t.time_to_live(c, id, true).await;
        t.revoke(c, id).await;
        t.keep_alive(c, id).await;
    }
    t.keep_alive(c, EXPLICIT_ID).await;
    t.keep_alive(c, NEGATIVE_ID).await;
    t.leases(c).await;

    // Revocations: no keys (no new revision), three keys (one revision).
    t.revoke(c, NEGATIVE_ID).await;
    t.revoke(c, EXPLICIT_ID).await;
    t.get(c, "").await;
    t.revoke(c, EXPLICIT_ID).await;
    t.time_to_live(c, EXPLICIT_ID, true).await;
    t.keep_alive(c, EXPLICIT_ID).await;
    t.put(
        c,
        "k1",
        "again",
        "lease=4660 (revoked)",
        PutOptions::new().with_lease(EXPLICIT_ID),
    )
    .await;
    // An ID is free again once its lease is revoked.
    t.grant(c, 10, Some(EXPLICIT_ID)).await;
    t.leases(c).await;
    if let Some(max) = max {
        t.revoke(c, max).await;
    }
    t.revoke(c, EXPLICIT_ID).await;
    t.leases(c).await;
    t.lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_boundaries_and_bad_ids_match_etcd() {
    let (ours, reference) = start_pair(&[]);
    let theirs = boundary_scenario(&mut connect(&[reference.client_url()]).await).await;
    let mine = boundary_scenario(&mut connect(&[ours.client_url()]).await).await;
    if std::env::var_os("ETCD_RS_TEST_VERBOSE").is_some() {
        eprintln!("etcd 3.5.1:\n{}", theirs.join("\n"));
    }
    let diff: Vec<String> = mine
        .iter()
        .zip(&theirs)
        .filter(|(o, r)| o != r)
        .map(|(o, r)| format!("  etcd: {r}\n  ours: {o}"))
        .collect();
    assert!(
        diff.is_empty() && mine.len() == theirs.len(),
        "{} steps differ from etcd 3.5.1:\n{}\n--- etcd 3.5.1:\n{}\n--- ours:\n{}",
        diff.len(),
        diff.join("\n"),
        theirs.join("\n"),
        mine.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Background keep-alives for the cluster tests.

/// Keeps a lease alive from a task, reconnecting after errors, until stopped.
struct Keeper {
    stop: Arc<AtomicBool>,
    /// Successful renewals so far.
    renewals: Arc<AtomicU64>,
    /// When the last keep-alive request was sent.
    last_sent: Arc<Mutex<Instant>>,
    /// Errors met (the stream is reopened after each).
    errors: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Keeper {
    fn start(rt: &tokio::runtime::Runtime, urls: Vec<String>, id: i64, every: Duration) -> Keeper {
        let stop = Arc::new(AtomicBool::new(false));
        let renewals = Arc::new(AtomicU64::new(0));
        let last_sent = Arc::new(Mutex::new(Instant::now()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let task = rt.spawn(keep_alive_loop(
            urls,
            id,
            every,
            stop.clone(),
            renewals.clone(),
            last_sent.clone(),
            errors.clone(),
        ));
        Keeper {
            stop,
            renewals,
            last_sent,
            errors,
            task,
        }
    }

    fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::Relaxed)
    }

    fn errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops the task (bounded); when its last keep-alive was sent.
    fn stop(self, rt: &tokio::runtime::Runtime) -> Instant {
        self.stop.store(true, Ordering::Relaxed);
        let task = self.task;
        rt.block_on(async {
            if tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .is_err()
            {
                panic!("the keep-alive task did not stop within 20 s");
            }
        });
        *self.last_sent.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn keep_alive_loop(
    urls: Vec<String>,
    id: i64,
    every: Duration,
    stop: Arc<AtomicBool>,
    renewals: Arc<AtomicU64>,
    last_sent: Arc<Mutex<Instant>>,
    errors: Arc<Mutex<Vec<String>>>,
) {
    let note = |e: String| {
        eprintln!("keep-alive {id:x}: {e}");
        errors.lock().unwrap_or_else(|p| p.into_inner()).push(e);
    };
    let sent = |at: Instant| *last_sent.lock().unwrap_or_else(|p| p.into_inner()) = at;
    'connect: while !stop.load(Ordering::Relaxed) {
        let mut c = connect(&urls).await;
        let at = Instant::now();
        sent(at);
        let (mut keeper, mut stream) = match bounded("keep-alive", c.lease_keep_alive(id)).await {
            Ok(pair) => pair,
            Err(e) => {
                note(format!("open: {e}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        renewals.fetch_add(1, Ordering::Relaxed);
        loop {
            tokio::time::sleep(every).await;
            if stop.load(Ordering::Relaxed) {
                break 'connect;
            }
            sent(Instant::now());
            if let Err(e) = keeper.keep_alive().await {
                note(format!("send: {e}"));
                continue 'connect;
            }
            match bounded("keep-alive response", stream.message()).await {
                Ok(Some(resp)) if resp.ttl() > 0 => {
                    renewals.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(resp)) => {
                    note(format!("the lease is gone (ttl {})", resp.ttl()));
                    break 'connect;
                }
                Ok(None) => {
                    note("the stream ended".into());
                    continue 'connect;
                }
                Err(e) => {
                    note(format!("response: {e}"));
                    continue 'connect;
                }
            }
        }
    }
}

/// Whether member `i` holds `key` (a serializable read), with its create revision.
fn key_on(cluster: &Cluster, i: usize, key: &str) -> Result<Option<i64>, String> {
    let dump = cluster.dump(i)?;
    Ok(dump
        .kvs
        .iter()
        .find(|kv| kv.key == key.as_bytes())
        .map(|kv| kv.create_revision))
}

// ---------------------------------------------------------------------------
// 4. Leader failover.

/// A leader change (kill -9) does not expire a lease kept alive through a
/// follower; once keep-alives stop, the new leader revokes it.
#[test]
fn leader_failover_does_not_expire_healthy_leases() {
    let _heavy = heavy_lock();
    let label = "lease_failover";
    // Six election timeouts of the harness.
    const TTL: i64 = 3;
    let ttl = Duration::from_secs(TTL as u64);
    let key = "failover/key";
    let mut cluster = Cluster::start(label, 3, &[]);
    let rt = runtime();
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    let other = (0..3)
        .find(|&i| i != leader && i != follower)
        .expect("a second follower");
    let follower_url = vec![cluster.client_url(follower)];

    // Granted, attached and kept alive through a follower.
    let (id, create_rev) = rt.block_on(async {
        let mut c = connect(&follower_url).await;
        let min = must("grant ttl 0", c.lease_grant(0, None)).await;
        assert_eq!(min.ttl(), CLUSTER_MIN_TTL, "the harness's minimum TTL");
        must("revoke", c.lease_revoke(min.id())).await;
        let grant = must("grant", c.lease_grant(TTL, None)).await;
        assert_eq!(grant.ttl(), TTL);
        let put = must("put", c.put(key, "v", with_lease(grant.id()))).await;
        (grant.id(), put.header().map_or(0, |h| h.revision()))
    });
    let keeper = Keeper::start(&rt, follower_url.clone(), id, Duration::from_millis(300));
    std::thread::sleep(ttl);
    assert!(keeper.renewals() >= 3, "keep-alives through the follower");
    for i in 0..3 {
        assert_eq!(
            key_on(&cluster, i, key),
            Ok(Some(create_rev)),
            "m{i} before the kill"
        );
    }

    cluster.kill9(leader);
    let survivors = [follower, other];
    let new = cluster
        .wait_leader_among(&survivors, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{label}: {e}\n{}", cluster.all_logs()));
    eprintln!("{label}: killed leader m{leader}; m{new} leads; keep-alives through m{follower}");
    let renewals_at_election = keeper.renewals();

    // Several TTLs: the key stays, TimeToLive answers on every survivor.
    let watched_from = Instant::now();
    while watched_from.elapsed() < 3 * ttl {
        for &i in &survivors {
            let on = key_on(&cluster, i, key);
            assert_eq!(
                on,
                Ok(Some(create_rev)),
                "{label}: m{i} lost the key of a lease kept alive, {:?} after the new leader \
                 (keep-alive errors: {:?})\n{}",
                watched_from.elapsed(),
                keeper.errors(),
                cluster.all_logs()
            );
        }
        for &i in &survivors {
            let url = vec![cluster.client_url(i)];
            let got = rt.block_on(async { time_to_live(&mut connect(&url).await, id).await });
            let (remaining, granted, keys) =
                got.unwrap_or_else(|e| panic!("{label}: TimeToLive on m{i}: {e}"));
            assert_eq!(granted, TTL, "{label}: granted TTL on m{i}");
            assert!(
                remaining > 0 && remaining <= TTL,
                "{label}: remaining TTL {remaining} on m{i}"
            );
            assert_eq!(keys, vec![key.to_string()], "{label}: keys on m{i}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        keeper.renewals() >= renewals_at_election + 3,
        "{label}: keep-alives stopped after the leader change: {} before, {} now; errors: {:?}",
        renewals_at_election,
        keeper.renewals(),
        keeper.errors()
    );

    // Without keep-alives the key goes, on every survivor.
    let last_sent = keeper.stop(&rt);
    let (gone_at, _) = rt.block_on(async {
        let mut c = connect(&[cluster.client_url(new)]).await;
        wait_gone(&mut c, "failover/").await
    });
    let after = gone_at - last_sent;
    eprintln!("{label}: key gone {after:?} after the last keep-alive");
    assert!(
        after + CLOCK_SLACK >= ttl,
        "{label}: the key was gone {after:?} after the last keep-alive of a {TTL} s lease"
    );
    let statuses = cluster
        .wait_converged(&survivors, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    for (&i, status) in survivors.iter().zip(&statuses) {
        assert_eq!(key_on(&cluster, i, key), Ok(None), "m{i} after expiry");
        assert_eq!(
            status.revision,
            create_rev + 1,
            "m{i}: one revision for the revoke"
        );
        let url = vec![cluster.client_url(i)];
        let got = rt.block_on(async { time_to_live(&mut connect(&url).await, id).await });
        assert_eq!(got, Ok((-1, 0, vec![])), "TimeToLive on m{i} after expiry");
    }
}

// ---------------------------------------------------------------------------
// 5. Restart.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_survives_restart_and_expires_after() {
    const TTL: i64 = 5;
    let mut server = EtcdProcess::start(Kind::Ours, &[]);
    let mut c = connect(&[server.client_url()]).await;
    let grant = must("grant", c.lease_grant(TTL, None)).await;
    let id = grant.id();
    must("put", c.put("r/key", "v", with_lease(id))).await;
    drop(c);

    let mut restarted_at = Instant::now();
    for how in ["SIGTERM", "SIGKILL"] {
        restarted_at = Instant::now();
        if how == "SIGKILL" {
            server.kill9();
        }
        server.restart();
        let mut c = connect(&[server.client_url()]).await;
        let (ttl, granted, keys) = time_to_live(&mut c, id)
            .await
            .unwrap_or_else(|e| panic!("TimeToLive after {how} and restart: {e}"));
        assert_eq!(granted, TTL, "granted TTL after {how} and restart");
        assert_eq!(
            keys,
            vec!["r/key".to_string()],
            "keys after {how} and restart"
        );
        // A full TTL again (no checkpoints), plus the election timeout.
        assert!(
            ttl > 0 && ttl <= TTL,
            "remaining TTL {ttl} after {how} and restart"
        );
        let (kvs, _) = keys_under(&mut c, "r/").await.expect("get");
        assert_eq!(
            kvs,
            vec![("r/key".to_string(), id)],
            "after {how} and restart"
        );
        let leases = must("leases", c.leases()).await;
        let ids: Vec<i64> = leases.leases().iter().map(|l| l.id()).collect();
        assert_eq!(ids, vec![id], "leases after {how} and restart");
    }

    let mut c = connect(&[server.client_url()]).await;
    let (gone_at, _) = wait_gone(&mut c, "r/").await;
    let after = gone_at - restarted_at;
    eprintln!("restart: key gone {after:?} after the last restart began");
    // The new leader's lessor gives the lease its TTL plus an election timeout.
    let least = Duration::from_secs(TTL as u64) + DEFAULT_ELECTION;
    assert!(
        after + CLOCK_SLACK >= least,
        "the key was gone {after:?} after the restart began (at least {least:?} expected)"
    );
    let (ttl, _, _) = time_to_live(&mut c, id).await.expect("TimeToLive");
    assert_eq!(ttl, -1, "TimeToLive after expiry");
}

// ---------------------------------------------------------------------------
// 6. Checkpoints.

/// Moves leadership from `from` to `to` (MoveLeader on the leader) and waits
/// until every member agrees.
fn move_leader(cluster: &Cluster, rt: &tokio::runtime::Runtime, from: usize, to: usize) {
    let url = vec![cluster.client_url(from)];
    let target = cluster.member_id(to);
    rt.block_on(async {
        let mut c = connect(&url).await;
        must("move leader", c.move_leader(target)).await;
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cluster.wait_leader_among(&[0, 1, 2], Duration::from_secs(10)) {
            Ok(l) if l == to => return,
            Ok(l) => assert!(
                Instant::now() < deadline,
                "leadership went to m{l}, not m{to}"
            ),
            Err(e) => panic!("after MoveLeader to m{to}: {e}\n{}", cluster.all_logs()),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// With checkpoints, a new leader continues from the checkpointed remaining
/// TTL (plus one election timeout), not from the full TTL. (Regression: a
/// member demoted its lessor at its own term as a candidate, so no leader of
/// a multi-member cluster was ever promoted.)
#[test]
fn checkpointed_remaining_ttl_survives_leader_change() {
    let _heavy = heavy_lock();
    let label = "lease_checkpoint";
    const TTL: i64 = 20;
    let cluster = Cluster::start(
        label,
        3,
        &[
            "--experimental-enable-lease-checkpoint",
            "--experimental-lease-checkpoint-interval=1s",
        ],
    );
    let rt = runtime();
    let extension = Duration::from_millis(ELECTION_MS);
    let first = cluster
        .wait_leader_among(&[0, 1, 2], Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let second = (first + 1) % 3;
    let third = (first + 2) % 3;
    let ttl_on = |i: usize| -> (i64, i64, Vec<String>) {
        let url = vec![cluster.client_url(i)];
        rt.block_on(async { time_to_live(&mut connect(&url).await, id_of(&url).await).await })
            .unwrap_or_else(|e| panic!("{label}: TimeToLive on m{i}: {e}"))
    };
    // (the lease is the only one: its ID is read back from the lease list)
    async fn id_of(url: &[String]) -> i64 {
        let leases = must("leases", connect(url).await.leases()).await;
        leases.leases().first().expect("one lease").id()
    }

    let granted_at = Instant::now();
    rt.block_on(async {
        let mut c = connect(&[cluster.client_url(first)]).await;
        let grant = must("grant", c.lease_grant(TTL, None)).await;
        assert_eq!(grant.ttl(), TTL);
        must("put", c.put("cp/key", "v", with_lease(grant.id()))).await;
    });
    std::thread::sleep(Duration::from_secs(5));
    let (before, _, _) = ttl_on(first);
    eprintln!(
        "{label}: m{first} leads; remaining {before} s after {:?}",
        granted_at.elapsed()
    );

    // First leader change: the checkpointed remaining TTL, not the full TTL.
    move_leader(&cluster, &rt, first, second);
    let (after_first, granted, keys) = ttl_on(second);
    let elapsed = granted_at.elapsed();
    eprintln!("{label}: m{second} leads; remaining {after_first} s after {elapsed:?}");
    assert_eq!(granted, TTL);
    assert_eq!(keys, vec!["cp/key".to_string()]);
    // Without checkpoints: TTL + extension, i.e. 20 here.
    let most = TTL - 2 + extension.as_secs() as i64;
    assert!(
        after_first <= most,
        "{label}: after the leader change the lease has {after_first} s left of {TTL} s \
         ({elapsed:?} after the grant, checkpoints every 1 s): the checkpointed remaining \
         TTL was not used (expected at most {most})\n{}",
        cluster.all_logs()
    );
    let least = TTL - elapsed.as_secs() as i64 - 1;
    assert!(
        after_first >= least,
        "{label}: {after_first} s left, {elapsed:?} after the grant of {TTL} s"
    );

    // Second leader change: the new leader checkpoints too.
    std::thread::sleep(Duration::from_secs(4));
    move_leader(&cluster, &rt, second, third);
    let (after_second, _, _) = ttl_on(third);
    let elapsed = granted_at.elapsed();
    eprintln!("{label}: m{third} leads; remaining {after_second} s after {elapsed:?}");
    assert!(
        after_second < after_first,
        "{label}: after a second leader change, 4 s later, the lease has {after_second} s left \
         (it had {after_first} s): the first new leader did not checkpoint\n{}",
        cluster.all_logs()
    );
    let least = TTL - elapsed.as_secs() as i64 - 1;
    assert!(
        after_second >= least,
        "{label}: {after_second} s left, {elapsed:?} after the grant of {TTL} s"
    );

    // A keep-alive restores the full TTL, also across a leader change.
    rt.block_on(async {
        let mut c = connect(&[cluster.client_url(third)]).await;
        let id = id_of(&[cluster.client_url(third)]).await;
        let (_keeper, _stream) = must("keep-alive", c.lease_keep_alive(id)).await;
        let (ttl, _, _) = time_to_live(&mut c, id).await.expect("TimeToLive");
        assert!(
            ttl >= TTL - 1,
            "{label}: {ttl} s left right after a keep-alive"
        );
    });
    // Let the clearing checkpoint commit before the change.
    std::thread::sleep(Duration::from_millis(500));
    move_leader(&cluster, &rt, third, first);
    let (after_renew, _, _) = ttl_on(first);
    eprintln!("{label}: m{first} leads again; remaining {after_renew} s after a keep-alive");
    assert!(
        after_renew >= TTL - 3,
        "{label}: {after_renew} s left after a keep-alive and a leader change"
    );
}
