//! Crash tests: our server is killed with SIGKILL in the middle of a stream of
//! concurrent writes, many times, restarted, and must hold every acknowledged
//! write and nothing that was never attempted; and a damaged WAL is either
//! repaired (a torn tail) or refused (corruption before valid records).
//!
//! - Randomness comes from a seeded generator; the seed is printed and can be
//!   fixed with `ETCD_RS_CRASH_SEED=<u64>`.
//! - Every wait is bounded; the cycle loops stop early (after a minimum number
//!   of cycles) when their wall-time budget is spent.
//! - The model is exact: after every restart the whole key space is read back
//!   and compared key by key (value, create/mod revision, version); a write
//!   that was in flight at the kill may or may not have happened, and what the
//!   server shows decides it from then on. The store revision must equal
//!   1 + every write that happened (each write request is one revision).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{http_get, tail, EtcdProcess, Kind, Rng};
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp,
};

/// Bound on any single client call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The cycle tests share two cores; running them one at a time keeps their
/// kill timing meaningful and their wall time bounded.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy_lock() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------
// Seeded randomness (splitmix64; no extra dependency).

fn test_seed(test: &str) -> u64 {
    common::test_seed("ETCD_RS_CRASH_SEED", test)
}

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

/// Runs `f` with CALL_TIMEOUT; a timeout becomes an error string.
async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(show_err(&e)),
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}

fn show_err(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => format!("{other}"),
    }
}

fn show_key(k: &[u8]) -> String {
    String::from_utf8_lossy(k).into_owned()
}

// ---------------------------------------------------------------------------
// Operations, outcomes and the model.

type Key = Vec<u8>;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Kv {
    value: Vec<u8>,
    create: i64,
    modr: i64,
    version: i64,
}

#[derive(Clone, Debug)]
enum Op {
    Put(Key, Vec<u8>),
    Delete(Key),
    /// Puts of fresh keys in one txn (one revision).
    Txn(Vec<(Key, Vec<u8>)>),
}

impl Op {
    fn keys(&self) -> Vec<Key> {
        match self {
            Op::Put(k, _) | Op::Delete(k) => vec![k.clone()],
            Op::Txn(puts) => puts.iter().map(|(k, _)| k.clone()).collect(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Op::Put(k, v) => format!("put {} = {}", show_key(k), show_key(v)),
            Op::Delete(k) => format!("delete {}", show_key(k)),
            Op::Txn(puts) => format!(
                "txn {}",
                puts.iter()
                    .map(|(k, _)| show_key(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Applies the op to `keys` at revision `rev`.
    fn apply(&self, keys: &mut BTreeMap<Key, Kv>, rev: i64) {
        let mut put = |k: &Key, v: &Vec<u8>| {
            let kv = match keys.get(k) {
                Some(old) => Kv {
                    value: v.clone(),
                    create: old.create,
                    modr: rev,
                    version: old.version + 1,
                },
                None => Kv {
                    value: v.clone(),
                    create: rev,
                    modr: rev,
                    version: 1,
                },
            };
            keys.insert(k.clone(), kv);
        };
        match self {
            Op::Put(k, v) => put(k, v),
            Op::Txn(puts) => puts.iter().for_each(|(k, v)| put(k, v)),
            Op::Delete(k) => {
                keys.remove(k);
            }
        }
    }
}

#[derive(Debug)]
enum Outcome {
    Acked(i64),
    /// An error or no answer: the op may or may not have happened.
    Unknown(String),
}

/// What one writer did in one cycle, in order. A writer stops at its first
/// failure, so only its last op can be `Unknown`.
struct WriterLog {
    writer: usize,
    ops: Vec<(Op, Outcome)>,
    anomalies: Vec<String>,
    next_counter: u64,
}

/// What one compactor did in one cycle.
#[derive(Default)]
struct CompactLog {
    acked: Vec<i64>,
    unknown: Option<i64>,
    anomalies: Vec<String>,
}

/// A write in flight at the kill: the observed state decides whether it happened.
struct Pending {
    writer: usize,
    op: Op,
    /// The writer's last acknowledged revision: if the op happened, its revision is above.
    after_rev: i64,
    /// What the client saw.
    error: String,
}

#[derive(Default)]
struct Model {
    /// Exactly the keys the server must hold (apart from pending ops).
    keys: BTreeMap<Key, Kv>,
    /// Every key ever attempted.
    attempted: HashSet<Key>,
    /// Writes that happened for sure (acknowledged, or seen after a restart).
    writes: i64,
    acked_writes: i64,
    /// Revisions of writes known to have happened (each unique).
    revs: BTreeSet<i64>,
    /// The highest acknowledged compaction.
    compacted: i64,
    pending: Vec<Pending>,
    problems: Vec<String>,
}

impl Model {
    fn problem(&mut self, p: String) {
        if self.problems.len() < 40 {
            self.problems.push(p);
        }
    }

    fn record_rev(&mut self, rev: i64, what: &str) {
        if !self.revs.insert(rev) {
            self.problem(format!(
                "revision {rev} was given to two writes (the second: {what})"
            ));
        }
    }

    /// Adds a writer's log: acked ops are applied, its failed tail is pending.
    fn absorb(&mut self, log: WriterLog) {
        for a in log.anomalies {
            self.problem(format!("writer {}: {a}", log.writer));
        }
        let mut last_rev = 0;
        let n = log.ops.len();
        for (i, (op, outcome)) in log.ops.into_iter().enumerate() {
            self.attempted.extend(op.keys());
            match outcome {
                Outcome::Acked(rev) => {
                    if rev <= last_rev {
                        self.problem(format!(
                            "writer {}: acked revisions not increasing: {} got {rev} after {last_rev}",
                            log.writer,
                            op.describe()
                        ));
                    }
                    last_rev = rev;
                    if let Op::Delete(k) = &op {
                        if !self.keys.contains_key(k) {
                            self.problem(format!(
                                "writer {}: acked delete of {} which the model lacks",
                                log.writer,
                                show_key(k)
                            ));
                        }
                    }
                    op.apply(&mut self.keys, rev);
                    self.writes += 1;
                    self.acked_writes += 1;
                    self.record_rev(rev, &op.describe());
                }
                Outcome::Unknown(error) => {
                    assert_eq!(i, n - 1, "a writer continued after a failure");
                    self.pending.push(Pending {
                        writer: log.writer,
                        op,
                        after_rev: last_rev,
                        error,
                    });
                }
            }
        }
    }

    fn absorb_compactions(&mut self, log: CompactLog) {
        for a in log.anomalies {
            self.problem(format!("compactor: {a}"));
        }
        if let Some(&max) = log.acked.iter().max() {
            self.compacted = self.compacted.max(max);
        }
    }

    /// Compares the whole key space read back from the server with the model,
    /// decides the pending ops from it, and checks the store revision.
    fn verify(&mut self, observed: &BTreeMap<Key, Kv>, store_rev: i64, cycle: usize) {
        let pending = std::mem::take(&mut self.pending);
        let mut decided: HashSet<Key> = HashSet::new();
        for p in pending {
            let keys = p.op.keys();
            decided.extend(keys.iter().cloned());
            let before: Vec<Option<&Kv>> = keys.iter().map(|k| self.keys.get(k)).collect();
            let seen: Vec<Option<&Kv>> = keys.iter().map(|k| observed.get(k)).collect();
            if before == seen {
                continue; // it did not happen
            }
            // It must have happened, at one revision above the writer's last ack.
            let rev = match &p.op {
                Op::Delete(_) => None,
                _ => seen.iter().flatten().map(|kv| kv.modr).max(),
            };
            let mut after = self.keys.clone();
            let check_rev = rev.unwrap_or(p.after_rev + 1);
            p.op.apply(&mut after, check_rev);
            let expected: Vec<Option<&Kv>> = keys.iter().map(|k| after.get(k)).collect();
            if expected != seen || check_rev <= p.after_rev || check_rev > store_rev {
                self.problem(format!(
                    "cycle {cycle}: in-flight write of writer {} ({}, client saw: {}) is half or \
                     wrongly applied:\n  before {before:?}\n  expected if applied {expected:?}\n  \
                     observed {seen:?}",
                    p.writer,
                    p.op.describe(),
                    p.error
                ));
            } else {
                self.writes += 1;
                if let Some(rev) = rev {
                    self.record_rev(rev, &p.op.describe());
                }
            }
            for k in &keys {
                match observed.get(k) {
                    Some(kv) => self.keys.insert(k.clone(), kv.clone()),
                    None => self.keys.remove(k),
                };
            }
        }

        let mut lost = 0;
        let mut wrong = 0;
        for (k, want) in &self.keys {
            if decided.contains(k) {
                continue;
            }
            match observed.get(k) {
                None => {
                    lost += 1;
                    if lost <= 10 {
                        let p = format!(
                            "cycle {cycle}: acknowledged key {} = {:?} is missing after restart",
                            show_key(k),
                            want
                        );
                        self.problems.push(p);
                    }
                }
                Some(got) if got != want => {
                    wrong += 1;
                    if wrong <= 10 {
                        let p = format!(
                            "cycle {cycle}: key {}: expected {want:?}, found {got:?}",
                            show_key(k)
                        );
                        self.problems.push(p);
                    }
                }
                Some(_) => {}
            }
        }
        if lost > 10 || wrong > 10 {
            self.problem(format!(
                "cycle {cycle}: {lost} acknowledged keys missing, {wrong} keys with wrong contents in all"
            ));
        }
        let mut extra = 0;
        for (k, kv) in observed {
            if self.keys.contains_key(k) {
                continue;
            }
            extra += 1;
            if extra <= 10 {
                let why = if self.attempted.contains(k) {
                    "was deleted (acknowledged) or never acknowledged and already decided absent"
                } else {
                    "was never attempted"
                };
                self.problem(format!(
                    "cycle {cycle}: key {} = {kv:?} exists but {why}",
                    show_key(k)
                ));
            }
        }
        if store_rev != 1 + self.writes {
            self.problem(format!(
                "cycle {cycle}: store revision is {store_rev}, expected 1 + {} writes that \
                 happened ({} acknowledged)",
                self.writes, self.acked_writes
            ));
        }
        if store_rev < self.acked_writes + 1 {
            self.problem(format!(
                "cycle {cycle}: store revision {store_rev} < acknowledged writes {} + 1",
                self.acked_writes
            ));
        }
        if let Some(&max) = self.revs.iter().next_back() {
            if max > store_rev {
                self.problem(format!(
                    "cycle {cycle}: a write was acknowledged at revision {max} but the store is at {store_rev}"
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Writers.

struct WriterCfg {
    url: String,
    writer: usize,
    cycle: usize,
    seed: u64,
    counter: u64,
    stop: Arc<AtomicBool>,
    latest_rev: Arc<AtomicI64>,
}

async fn writer(cfg: WriterCfg) -> WriterLog {
    let w = cfg.writer;
    let mut rng = Rng::new(cfg.seed ^ ((cfg.cycle as u64) << 32) ^ (w as u64 + 1));
    let mut log = WriterLog {
        writer: w,
        ops: Vec::new(),
        anomalies: Vec::new(),
        next_counter: cfg.counter,
    };
    let mut client = match tokio::time::timeout(
        CALL_TIMEOUT,
        Client::connect(
            [cfg.url.as_str()],
            Some(
                ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(3))
                    .with_timeout(CALL_TIMEOUT),
            ),
        ),
    )
    .await
    {
        Ok(Ok(c)) => c,
        _ => return log, // the server died before this writer connected
    };
    let mut deletable: Vec<Key> = Vec::new();
    let mut n = 0u64;
    while !cfg.stop.load(Ordering::SeqCst) {
        n += 1;
        let roll = rng.range(0, 100);
        let op = if roll < 50 {
            let key = format!("w{w}/u/{:03}/{n:05}", cfg.cycle);
            let len = rng.range(0, 200) as usize;
            let value = format!("{key}={}", rng.letters(len));
            Op::Put(key.into_bytes(), value.into_bytes())
        } else if roll < 75 {
            let key = format!("w{w}/o/{}", rng.range(0, 4));
            log.next_counter += 1;
            Op::Put(
                key.into_bytes(),
                format!("{:010}", log.next_counter).into_bytes(),
            )
        } else if roll < 88 || deletable.is_empty() {
            let base = format!("w{w}/t/{:03}/{n:05}", cfg.cycle);
            Op::Txn(vec![
                (format!("{base}/a").into_bytes(), b"ta".to_vec()),
                (
                    format!("{base}/b").into_bytes(),
                    rng.letters(20).into_bytes(),
                ),
            ])
        } else {
            let i = rng.range(0, deletable.len() as u64) as usize;
            Op::Delete(deletable.swap_remove(i))
        };
        let result: Result<i64, String> = match &op {
            Op::Put(k, v) => bounded(client.put(k.clone(), v.clone(), None))
                .await
                .map(|r| r.header().map_or(0, |h| h.revision())),
            Op::Delete(k) => match bounded(client.delete(k.clone(), None)).await {
                Ok(r) => {
                    if r.deleted() != 1 {
                        log.anomalies.push(format!(
                            "delete of {} (acknowledged present) deleted {}",
                            show_key(k),
                            r.deleted()
                        ));
                    }
                    Ok(r.header().map_or(0, |h| h.revision()))
                }
                Err(e) => Err(e),
            },
            Op::Txn(puts) => {
                let txn = Txn::new()
                    .when([Compare::version(puts[0].0.clone(), CompareOp::Equal, 0)])
                    .and_then(
                        puts.iter()
                            .map(|(k, v)| TxnOp::put(k.clone(), v.clone(), None))
                            .collect::<Vec<_>>(),
                    );
                match bounded(client.txn(txn)).await {
                    Ok(r) => {
                        if !r.succeeded() {
                            log.anomalies.push(format!(
                                "txn on fresh keys did not succeed: {}",
                                op.describe()
                            ));
                        }
                        Ok(r.header().map_or(0, |h| h.revision()))
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(rev) => {
                cfg.latest_rev.fetch_max(rev, Ordering::SeqCst);
                if let Op::Put(k, _) = &op {
                    if k.windows(3).any(|w| w == b"/u/") && rng.chance(30) {
                        deletable.push(k.clone());
                    }
                }
                log.ops.push((op, Outcome::Acked(rev)));
            }
            Err(e) => {
                log.ops.push((op, Outcome::Unknown(e)));
                break;
            }
        }
    }
    log
}

/// Compacts (physically) a little behind the newest revision, every few ms.
async fn compactor(
    url: String,
    seed: u64,
    from: i64,
    stop: Arc<AtomicBool>,
    latest_rev: Arc<AtomicI64>,
) -> CompactLog {
    let mut rng = Rng::new(seed ^ 0xc0);
    let mut log = CompactLog::default();
    let mut client = match tokio::time::timeout(CALL_TIMEOUT, async { connect(&url).await }).await {
        Ok(c) => c,
        Err(_) => return log,
    };
    let mut last = from;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(rng.range(10, 60))).await;
        let target = latest_rev.load(Ordering::SeqCst) - rng.range(1, 20) as i64;
        if target <= last {
            continue;
        }
        let opts = CompactionOptions::new().with_physical();
        match bounded(client.compact(target, Some(opts))).await {
            Ok(_) => {
                last = target;
                log.acked.push(target);
            }
            Err(e) if e.contains("required revision has been compacted") => {
                // An earlier in-flight compaction went further; fine.
                last = target;
            }
            Err(e) if e.contains("OutOfRange") => {
                log.anomalies.push(format!("compact {target}: {e}"));
                break;
            }
            Err(_) => {
                log.unknown = Some(target);
                break;
            }
        }
    }
    log
}

// ---------------------------------------------------------------------------
// Reading everything back.

async fn read_all(client: &mut Client) -> (BTreeMap<Key, Kv>, i64) {
    let mut out = BTreeMap::new();
    let mut start = vec![0u8];
    let mut rev = 0;
    for _page in 0..10_000 {
        let mut opts = GetOptions::new().with_from_key().with_limit(2000);
        if rev != 0 {
            opts = opts.with_revision(rev);
        }
        let resp = bounded(client.get(start.clone(), Some(opts)))
            .await
            .unwrap_or_else(|e| panic!("read back all keys: {e}"));
        if rev == 0 {
            rev = resp.header().expect("header").revision();
        }
        for kv in resp.kvs() {
            out.insert(
                kv.key().to_vec(),
                Kv {
                    value: kv.value().to_vec(),
                    create: kv.create_revision(),
                    modr: kv.mod_revision(),
                    version: kv.version(),
                },
            );
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                start = last.key().to_vec();
                start.push(0);
            }
            _ => return (out, rev),
        }
    }
    panic!("more than 10,000 pages of keys");
}

/// A put that is acknowledged only after everything before it in the log is
/// applied; its revision goes into the model.
async fn barrier(client: &mut Client, model: &mut Model, cycle: usize) {
    let op = Op::Put(format!("barrier/{cycle:03}").into_bytes(), b"b".to_vec());
    let Op::Put(k, v) = &op else { unreachable!() };
    let resp = bounded(client.put(k.clone(), v.clone(), None))
        .await
        .unwrap_or_else(|e| panic!("cycle {cycle}: barrier put after restart failed: {e}"));
    let rev = resp.header().expect("header").revision();
    model.absorb(WriterLog {
        writer: usize::MAX,
        ops: vec![(op, Outcome::Acked(rev))],
        anomalies: Vec::new(),
        next_counter: 0,
    });
}

/// Checks the compaction state: below the acknowledged compaction reads and
/// compactions fail with etcd's error; a future revision fails too.
async fn check_revisions(client: &mut Client, model: &mut Model, store_rev: i64, cycle: usize) {
    let future =
        bounded(client.get("w0", Some(GetOptions::new().with_revision(store_rev + 1)))).await;
    match future {
        Err(e) if e == "OutOfRange: etcdserver: mvcc: required revision is a future revision" => {}
        other => model.problem(format!(
            "cycle {cycle}: get at future revision {}: {other:?}",
            store_rev + 1
        )),
    }
    if model.compacted > 1 {
        let at = model.compacted;
        let compacted = "OutOfRange: etcdserver: mvcc: required revision has been compacted";
        match bounded(client.get("w0", Some(GetOptions::new().with_revision(at - 1)))).await {
            Err(e) if e == compacted => {}
            other => model.problem(format!(
                "cycle {cycle}: get --rev={} below acknowledged compaction {at}: {other:?}",
                at - 1
            )),
        }
        match bounded(client.compact(at, None)).await {
            Err(e) if e == compacted => {}
            other => model.problem(format!(
                "cycle {cycle}: compact {at} again after restart: {other:?}"
            )),
        }
        // Reading at the current revision still works after compaction.
        if let Err(e) =
            bounded(client.get("w0", Some(GetOptions::new().with_revision(store_rev)))).await
        {
            model.problem(format!("cycle {cycle}: get --rev={store_rev}: {e}"));
        }
    }
}

// ---------------------------------------------------------------------------
// The kill/restart loop.

struct CycleCfg {
    name: &'static str,
    args: &'static [&'static str],
    writers: usize,
    min_cycles: usize,
    max_cycles: usize,
    budget: Duration,
    /// Bounds (ms) of the random time writes run before the kill.
    kill_after_ms: (u64, u64),
    compact: bool,
}

fn crash_cycles(c: CycleCfg) {
    let _heavy = heavy_lock();
    let seed = test_seed(c.name);
    let mut rng = Rng::new(seed);
    let rt = runtime();
    let started = Instant::now();
    let mut server = EtcdProcess::start(Kind::Ours, c.args);
    let url = server.client_url();
    let mut model = Model::default();
    let mut counters = vec![0u64; c.writers];
    let mut cycles = 0;
    let mut total_ops = 0usize;
    let mut in_flight_total = 0usize;
    for cycle in 0..c.max_cycles {
        if cycle >= c.min_cycles && started.elapsed() > c.budget {
            break;
        }
        cycles += 1;
        let stop = Arc::new(AtomicBool::new(false));
        let latest = Arc::new(AtomicI64::new(0));
        let handles: Vec<_> = (0..c.writers)
            .map(|w| {
                rt.spawn(writer(WriterCfg {
                    url: url.clone(),
                    writer: w,
                    cycle,
                    seed,
                    counter: counters[w],
                    stop: stop.clone(),
                    latest_rev: latest.clone(),
                }))
            })
            .collect();
        let compactor_handle = c.compact.then(|| {
            rt.spawn(compactor(
                url.clone(),
                seed ^ cycle as u64,
                model.compacted,
                stop.clone(),
                latest.clone(),
            ))
        });
        let delay = rng.range(c.kill_after_ms.0, c.kill_after_ms.1);
        std::thread::sleep(Duration::from_millis(delay));
        server.kill9();
        stop.store(true, Ordering::SeqCst);

        let logs: Vec<WriterLog> = rt.block_on(async {
            let mut logs = Vec::new();
            for h in handles {
                let log = tokio::time::timeout(Duration::from_secs(20), h)
                    .await
                    .expect("a writer did not stop within 20 s of the kill")
                    .expect("writer task panicked");
                logs.push(log);
            }
            logs
        });
        if let Some(h) = compactor_handle {
            let log = rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(20), h).await })
                .expect("the compactor did not stop within 20 s of the kill")
                .expect("compactor panicked");
            if let Some(rev) = log.unknown {
                eprintln!(
                    "{}: cycle {cycle}: compaction at {rev} was in flight",
                    c.name
                );
            }
            model.absorb_compactions(log);
        }
        for log in logs {
            counters[log.writer] = log.next_counter;
            total_ops += log.ops.len();
            in_flight_total += log
                .ops
                .iter()
                .filter(|(_, o)| matches!(o, Outcome::Unknown(_)))
                .count();
            model.absorb(log);
        }

        server.restart();
        rt.block_on(async {
            let mut client = connect(&url).await;
            barrier(&mut client, &mut model, cycle).await;
            let (observed, store_rev) = read_all(&mut client).await;
            model.verify(&observed, store_rev, cycle);
            check_revisions(&mut client, &mut model, store_rev, cycle).await;
        });
        if !model.problems.is_empty() {
            break;
        }
    }

    // A clean stop and start keeps everything too.
    if model.problems.is_empty() {
        let status = server.terminate();
        assert!(status.success(), "{}: SIGTERM exit status {status}", c.name);
        server.restart();
        rt.block_on(async {
            let mut client = connect(&url).await;
            barrier(&mut client, &mut model, usize::MAX / 2).await;
            let (observed, store_rev) = read_all(&mut client).await;
            model.verify(&observed, store_rev, cycles);
        });
    }

    let snaps = fs::read_dir(server.data_dir().join("member/snap"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
                .count()
        })
        .unwrap_or(0);
    eprintln!(
        "{}: {cycles} kill -9 cycles in {:.1?}: {total_ops} writes attempted, {} happened \
         ({} acknowledged), {in_flight_total} in flight at the kills, {} keys, compacted at {}, \
         {snaps} .snap files",
        c.name,
        started.elapsed(),
        model.writes,
        model.acked_writes,
        model.keys.len(),
        model.compacted
    );
    assert!(
        model.problems.is_empty(),
        "{} (seed {seed}): {} problems:\n{}\n--- last lines of the server log:\n{}",
        c.name,
        model.problems.len(),
        model.problems.join("\n"),
        server.log_tail()
    );
    assert!(
        model.acked_writes > 100,
        "{}: too few writes were acknowledged ({}) for the test to mean anything",
        c.name,
        model.acked_writes
    );
}

/// Default snapshot count: the whole run stays in the WAL.
#[test]
fn kill9_during_writes_default_snapshot_count() {
    crash_cycles(CycleCfg {
        name: "kill9_during_writes_default_snapshot_count",
        args: &[],
        writers: 8,
        min_cycles: 5,
        max_cycles: 10,
        budget: Duration::from_secs(20),
        kill_after_ms: (20, 1200),
        compact: false,
    });
}

/// Snapshots (and WAL releases) happen during the run.
#[test]
fn kill9_during_writes_with_snapshots() {
    crash_cycles(CycleCfg {
        name: "kill9_during_writes_with_snapshots",
        args: &["--snapshot-count=200"],
        writers: 8,
        min_cycles: 5,
        max_cycles: 12,
        budget: Duration::from_secs(20),
        kill_after_ms: (20, 900),
        compact: false,
    });
}

/// Snapshots every 50 entries and physical compactions all the time, killed
/// often: kills land inside snapshot creation and compaction windows.
#[test]
fn kill9_during_compaction_and_snapshots() {
    crash_cycles(CycleCfg {
        name: "kill9_during_compaction_and_snapshots",
        args: &["--snapshot-count=50"],
        writers: 6,
        min_cycles: 5,
        max_cycles: 15,
        budget: Duration::from_secs(20),
        kill_after_ms: (30, 400),
        compact: true,
    });
}

// ---------------------------------------------------------------------------
// WAL damage.

/// One record as framed on disk (see crates/wal/src/lib.rs).
#[derive(Debug, Clone, Copy)]
struct RecordPos {
    offset: usize,
    kind: u8,
    len: usize,
}

const HEADER_LEN: usize = 16;

fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// CRC-32 (IEEE), as the WAL's header crc.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The records of a segment up to the first all-zero header (the end of the
/// data in a preallocated segment) or a record running past the file.
fn records(buf: &[u8]) -> Vec<RecordPos> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + HEADER_LEN <= buf.len() {
        let h = &buf[off..off + HEADER_LEN];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let len = u32::from_le_bytes(h[0..4].try_into().unwrap()) as usize;
        let next = off + align8(HEADER_LEN + len);
        if next > buf.len() {
            break;
        }
        out.push(RecordPos {
            offset: off,
            kind: h[4],
            len,
        });
        off = next;
    }
    out
}

fn data_end(records: &[RecordPos]) -> usize {
    records
        .last()
        .map_or(0, |r| r.offset + align8(HEADER_LEN + r.len))
}

/// The newest segment file of `<data-dir>/member/wal`.
fn last_segment(data_dir: &Path) -> PathBuf {
    let dir = data_dir.join("member/wal");
    let mut segs: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    segs.pop()
        .unwrap_or_else(|| panic!("no .wal segment in {}", dir.display()))
}

/// A record header with a valid header crc (data crc arbitrary) for `len` bytes.
fn record_header(kind: u8, len: usize, data_crc: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4] = kind;
    h[8..12].copy_from_slice(&data_crc.to_le_bytes());
    let c = crc32(&h[0..12]);
    h[12..16].copy_from_slice(&c.to_le_bytes());
    h
}

fn write_at(path: &Path, offset: usize, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all_at(bytes, offset as u64)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    f.sync_all().expect("sync the damaged segment");
}

/// Puts `count` keys `prefix/NNNN` one after another, each acknowledged.
async fn put_acked(client: &mut Client, prefix: &str, count: usize) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for i in 0..count {
        let key = format!("{prefix}/{i:04}");
        let resp = bounded(client.put(key.clone(), format!("v-{key}"), None))
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
        out.push((key, resp.header().expect("header").revision()));
    }
    out
}

/// Every key in `acked` holds `v-<key>` at its acknowledged revision, and the
/// store holds nothing else; returns the store revision.
async fn assert_holds(client: &mut Client, acked: &[(String, i64)]) -> i64 {
    let (observed, rev) = read_all(client).await;
    let mut problems = Vec::new();
    for (key, at) in acked {
        match observed.get(key.as_bytes()) {
            Some(kv) if kv.value == format!("v-{key}").as_bytes() && kv.modr == *at => {}
            other => problems.push(format!("{key} (acked at {at}): found {other:?}")),
        }
    }
    let expected: HashSet<&[u8]> = acked.iter().map(|(k, _)| k.as_bytes()).collect();
    for k in observed.keys() {
        if !expected.contains(k.as_slice()) {
            problems.push(format!("unexpected key {}", show_key(k)));
        }
    }
    assert!(
        problems.is_empty(),
        "after WAL repair: {}",
        problems.join("\n")
    );
    assert_eq!(rev, acked.len() as i64 + 1, "store revision after repair");
    rev
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// Writes, kill -9, `damage` the tail of the last segment, restart: the server
/// repairs the torn write, logs it, keeps every acknowledged write and keeps
/// working (more writes, another kill -9 and restart with no new repair).
fn torn_tail_case(name: &str, damage: impl FnOnce(&Path, &[u8], &mut Rng)) {
    let seed = test_seed(name);
    let mut rng = Rng::new(seed);
    let rt = runtime();
    let mut server = EtcdProcess::start(Kind::Ours, &[]);
    let url = server.client_url();
    let mut acked = rt.block_on(async {
        let mut client = connect(&url).await;
        put_acked(&mut client, "a", 60).await
    });
    server.kill9();
    let seg = last_segment(&server.data_dir());
    let buf = fs::read(&seg).expect("read the last segment");
    let size_before = buf.len();
    damage(&seg, &buf, &mut rng);
    let before = server.log_contents();

    server.restart();
    let log = server.log_contents();
    let new_log = &log[before.len()..];
    assert!(
        new_log.contains("repaired a torn write at the end of the WAL"),
        "{name}: no repair warning in the log:\n{}",
        tail(new_log, 30)
    );
    let line = new_log
        .lines()
        .find(|l| l.contains("repaired a torn write"))
        .unwrap_or_default();
    assert!(
        line.to_lowercase().contains("warn"),
        "{name}: the repair is not logged as a warning: {line}"
    );
    let size_after = fs::metadata(&seg).map(|m| m.len() as usize).unwrap_or(0);
    eprintln!("{name}: segment {size_before} bytes before, {size_after} after restart");

    rt.block_on(async {
        let mut client = connect(&url).await;
        assert_holds(&mut client, &acked).await;
        // The repaired log takes new records in the right place.
        let more = put_acked(&mut client, "b", 40).await;
        acked.extend(more);
        assert_holds(&mut client, &acked).await;
    });
    server.kill9();
    let repairs_before = count(&server.log_contents(), "repaired a torn write");
    server.restart();
    let repairs_after = count(&server.log_contents(), "repaired a torn write");
    assert_eq!(
        repairs_before,
        repairs_after,
        "{name}: a second repair was needed after a clean append to the repaired log:\n{}",
        server.log_tail()
    );
    rt.block_on(async {
        let mut client = connect(&url).await;
        assert_holds(&mut client, &acked).await;
    });
}

#[test]
fn torn_tail_garbage_after_last_record_is_repaired() {
    torn_tail_case(
        "torn_tail_garbage_after_last_record_is_repaired",
        |seg, buf, rng| {
            let end = data_end(&records(buf));
            assert!(end + 4096 < buf.len(), "segment is not preallocated");
            let mut garbage = rng.bytes(100);
            garbage[0] |= 1; // a non-zero header
            write_at(seg, end, &garbage);
        },
    );
}

#[test]
fn torn_tail_garbage_inside_preallocated_zeros_is_repaired() {
    torn_tail_case(
        "torn_tail_garbage_inside_preallocated_zeros_is_repaired",
        |seg, buf, rng| {
            let end = data_end(&records(buf));
            assert!(end + 8192 < buf.len(), "segment is not preallocated");
            let mut garbage = rng.bytes(333);
            garbage[0] |= 1;
            write_at(seg, end + 4096 + 3, &garbage);
        },
    );
}

#[test]
fn torn_tail_partial_record_is_repaired() {
    // A record whose header made it to disk but whose payload did not fully:
    // the header is valid, the payload half there, zeros after it.
    torn_tail_case("torn_tail_partial_record_is_repaired", |seg, buf, rng| {
        let recs = records(buf);
        let end = data_end(&recs);
        let len = 300;
        let mut bytes = record_header(3, len, 0x1234_5678).to_vec();
        bytes.extend(rng.bytes(len / 2));
        write_at(seg, end, &bytes);
    });
}

#[test]
fn torn_tail_file_truncated_mid_record_is_repaired() {
    // The file ends in the middle of a record (as when a segment's size was
    // not preallocated): header and part of the payload, then end of file.
    torn_tail_case(
        "torn_tail_file_truncated_mid_record_is_repaired",
        |seg, buf, rng| {
            let recs = records(buf);
            let end = data_end(&recs);
            let len = 500;
            let mut bytes = record_header(3, len, 0x0bad_cafe).to_vec();
            bytes.extend(rng.bytes(len / 3));
            write_at(seg, end, &bytes);
            let f = fs::OpenOptions::new().write(true).open(seg).unwrap();
            f.set_len((end + bytes.len()) as u64).expect("truncate");
            f.sync_all().unwrap();
        },
    );
}

/// Content hashes of every file under `dir` (names, sizes and bytes).
fn dir_digest(dir: &Path) -> BTreeMap<PathBuf, (u64, u64)> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, (u64, u64)>) {
        for e in fs::read_dir(dir).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                let bytes = fs::read(&p).unwrap_or_default();
                // FNV-1a
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                for b in &bytes {
                    h ^= *b as u64;
                    h = h.wrapping_mul(0x100_0000_01b3);
                }
                out.insert(p, (bytes.len() as u64, h));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// Runs our binary on `process`'s data dir and ports (the harness's flags) until
/// it exits; panics if it runs past `timeout` or ever answers /health.
fn run_expecting_exit(process: &EtcdProcess, log: &Path, timeout: Duration) -> ExitStatus {
    let client = process.client_url();
    let peer = process.peer_url();
    let args = vec![
        format!("--name={}", process.name()),
        format!("--data-dir={}", process.data_dir().display()),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster={}={peer}", process.name()),
        "--initial-cluster-token=etcd-rs-test".to_string(),
    ];
    let out = fs::File::create(log).expect("create log");
    let err = out.try_clone().unwrap();
    let mut child = Command::new(Kind::Ours.etcd_bin())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn etcd");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if let Some(resp) = http_get(process.client_port(), "/health") {
            if resp.starts_with("HTTP/") {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the server answered /health on a corrupt WAL: {resp}\nlog:\n{}",
                    fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the server neither served nor exited within {timeout:?} on a corrupt WAL; log:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes, kill -9, `damage` an early record of the segment (valid records
/// follow it), start: the server must refuse with a clear error, never serve,
/// and leave the data directory byte for byte as it was.
fn corrupt_middle_case(name: &str, damage: impl FnOnce(&Path, &[u8], &[RecordPos])) {
    let rt = runtime();
    let mut server = EtcdProcess::start(Kind::Ours, &[]);
    let url = server.client_url();
    rt.block_on(async {
        let mut client = connect(&url).await;
        put_acked(&mut client, "c", 40).await;
    });
    server.kill9();
    let seg = last_segment(&server.data_dir());
    let buf = fs::read(&seg).expect("read segment");
    let recs = records(&buf);
    assert!(recs.len() > 20, "too few records: {recs:?}");
    damage(&seg, &buf, &recs);
    let before = dir_digest(&server.data_dir());

    let log_path = server
        .data_dir()
        .parent()
        .unwrap()
        .join("corrupt-start.log");
    let status = run_expecting_exit(&server, &log_path, Duration::from_secs(15));
    let log = fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        !status.success(),
        "{name}: the server exited with {status} on a corrupt WAL; log:\n{log}"
    );
    let lower = log.to_lowercase();
    assert!(
        lower.contains("wal") && (lower.contains("corrupt") || lower.contains("refusing to start")),
        "{name}: the error does not name the WAL corruption:\n{log}"
    );
    assert!(
        lower.contains(&seg.file_name().unwrap().to_string_lossy().to_lowercase()),
        "{name}: the error does not name the damaged segment {}:\n{log}",
        seg.display()
    );
    let after = dir_digest(&server.data_dir());
    assert_eq!(
        before, after,
        "{name}: the refused start changed the data directory"
    );
    eprintln!("{name}: refused with {status}: {}", tail(&log, 3));
}

/// The third entry record (followed by many valid ones).
fn early_entry(recs: &[RecordPos]) -> RecordPos {
    let entries: Vec<&RecordPos> = recs.iter().filter(|r| r.kind == 3 && r.len > 0).collect();
    assert!(entries.len() > 10, "too few entry records");
    *entries[2]
}

#[test]
fn corrupt_payload_in_early_record_refuses_to_start() {
    corrupt_middle_case(
        "corrupt_payload_in_early_record_refuses_to_start",
        |seg, buf, recs| {
            let r = early_entry(recs);
            let at = r.offset + HEADER_LEN + r.len / 2;
            write_at(seg, at, &[buf[at] ^ 0xff]);
        },
    );
}

#[test]
fn corrupt_header_of_early_record_refuses_to_start() {
    corrupt_middle_case(
        "corrupt_header_of_early_record_refuses_to_start",
        |seg, buf, recs| {
            let r = early_entry(recs);
            // The length field: the header crc no longer matches.
            write_at(seg, r.offset, &[buf[r.offset] ^ 0x40]);
        },
    );
}

#[test]
fn zeroed_early_record_refuses_to_start() {
    // A whole record zeroed (a lost block) with valid records after it.
    corrupt_middle_case("zeroed_early_record_refuses_to_start", |seg, _buf, recs| {
        let r = early_entry(recs);
        write_at(seg, r.offset, &vec![0u8; align8(HEADER_LEN + r.len)]);
    });
}

// ---------------------------------------------------------------------------
// A snapshot file without its WAL marker (crash between the two writes).

/// Minimal protobuf reading: the fields (number, wire type, value) of a message;
/// varints as their value, length-delimited fields as their bytes.
enum PbValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn pb_varint(buf: &[u8], pos: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = buf[*pos];
        *pos += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    v
}

fn pb_fields(buf: &[u8]) -> Vec<(u64, PbValue<'_>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let tag = pb_varint(buf, &mut pos);
        match tag & 7 {
            0 => out.push((tag >> 3, PbValue::Varint(pb_varint(buf, &mut pos)))),
            2 => {
                let len = pb_varint(buf, &mut pos) as usize;
                out.push((tag >> 3, PbValue::Bytes(&buf[pos..pos + len])));
                pos += len;
            }
            t => panic!("unexpected protobuf wire type {t}"),
        }
    }
    out
}

fn pb_put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn pb_put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    pb_put_varint(out, (field << 3) | 2);
    pb_put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// (term, index) of the last entry record of a segment.
fn last_entry(buf: &[u8]) -> (u64, u64) {
    let rec = records(buf)
        .into_iter()
        .rfind(|r| r.kind == 3)
        .expect("an entry record");
    let payload = &buf[rec.offset + HEADER_LEN..rec.offset + HEADER_LEN + rec.len];
    let (mut term, mut index) = (0, 0);
    for (field, value) in pb_fields(payload) {
        match (field, value) {
            (2, PbValue::Varint(v)) => term = v,
            (3, PbValue::Varint(v)) => index = v,
            _ => {}
        }
    }
    (term, index)
}

/// etcd saves the snapshot file before the WAL's snapshot record, so a crash
/// between the two leaves a `.snap` file the WAL does not know; on restart
/// etcd (3.5: `wal.ValidSnapshotEntries` + `Snapshotter.LoadNewestAvailable`)
/// ignores snapshot files that have no WAL record. We make that state on
/// purpose: a valid snapshot file at the last applied index, with no marker.
#[test]
fn orphan_snapshot_file_after_crash_is_ignored() {
    let rt = runtime();
    let mut server = EtcdProcess::start(Kind::Ours, &["--snapshot-count=50"]);
    let url = server.client_url();
    let acked = rt.block_on(async {
        let mut client = connect(&url).await;
        let acked = put_acked(&mut client, "s", 80).await;
        // Let the applier make the backend durable (it does when idle).
        tokio::time::sleep(Duration::from_millis(500)).await;
        acked
    });
    server.kill9();

    let snap_dir = server.data_dir().join("member/snap");
    let mut snaps: Vec<PathBuf> = fs::read_dir(&snap_dir)
        .expect("snap dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .collect();
    snaps.sort();
    let newest = snaps
        .pop()
        .expect("a snapshot was taken (--snapshot-count=50)");
    let bytes = fs::read(&newest).expect("read snapshot");
    let payload = &bytes[20..];
    let metadata = pb_fields(payload)
        .into_iter()
        .find_map(|(f, v)| match (f, v) {
            (2, PbValue::Bytes(b)) => Some(b),
            _ => None,
        })
        .expect("snapshot metadata");
    let conf_state = pb_fields(metadata)
        .into_iter()
        .find_map(|(f, v)| match (f, v) {
            (1, PbValue::Bytes(b)) => Some(b.to_vec()),
            _ => None,
        })
        .expect("conf state");

    let (term, index) = last_entry(&fs::read(last_segment(&server.data_dir())).unwrap());
    let mut meta = Vec::new();
    pb_put_bytes(&mut meta, 1, &conf_state);
    pb_put_varint(&mut meta, 2 << 3);
    pb_put_varint(&mut meta, index);
    pb_put_varint(&mut meta, 3 << 3);
    pb_put_varint(&mut meta, term);
    let mut snap = Vec::new();
    pb_put_bytes(&mut snap, 2, &meta);
    let mut file = Vec::new();
    file.extend_from_slice(b"ERSS");
    file.extend_from_slice(&1u32.to_le_bytes());
    file.extend_from_slice(&(snap.len() as u64).to_le_bytes());
    let mut crc_input = file[4..16].to_vec();
    crc_input.extend_from_slice(&snap);
    file.extend_from_slice(&crc32(&crc_input).to_le_bytes());
    file.extend_from_slice(&snap);
    let orphan = snap_dir.join(format!("{term:016x}-{index:016x}.snap"));
    assert!(
        !orphan.exists(),
        "a snapshot at the last entry already exists"
    );
    fs::write(&orphan, &file).expect("write the orphan snapshot");
    eprintln!(
        "wrote {} (no WAL record) beside {}",
        orphan.display(),
        newest.display()
    );

    server.restart();
    rt.block_on(async {
        let mut client = connect(&url).await;
        assert_holds(&mut client, &acked).await;
    });
}
