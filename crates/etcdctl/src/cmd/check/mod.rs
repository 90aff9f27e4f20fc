//! `check perf` and `check datascale`: etcdctl's built-in load checks.
//!
//! ```text
//!  producer ──keys──▶ bounded queue (one slot per client) ──▶ N workers,
//!  (perf: rate-limited    each with its own connection, one Put at a time,
//!   for 60 s;             no deadline; outcomes (latency or error text)
//!   datascale: N keys)    are collected and summarised at the end
//! ```
//!
//! - perf passes when the rate reaches 90 % of the load's target, the
//!   slowest Put took at most 0.5 s and the latencies' standard deviation
//!   is at most 0.1 s (etcdctl's thresholds); it prints one line per
//!   criterion, then `PASS` or `FAIL` (exit code 1).
//! - datascale reads `process_resident_memory_bytes` from the first
//!   endpoint's `/metrics` before and after writing, and reports the
//!   difference.
//! - Both refuse a prefix that already holds keys (exit code 3), delete
//!   their keys afterwards, and compact / defragment on request.
//! - Keys are the prefix then a zig-zag varint of a random number padded
//!   with zero bytes; values are zero bytes (etcdctl's sizes).

mod bar;
mod metrics;
mod report;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use tokio::sync::{mpsc, Mutex};

use api::etcdserverpb::{
    CompactionRequest, DefragmentRequest, DeleteRangeRequest, PutRequest, RangeRequest,
};

use crate::client::Client;
use crate::cmd::kv::prefix_range_end;
use crate::cmd::Ctx;
use crate::error::{CtlError, CtlResult, EXIT_BAD_FEATURE, EXIT_ERROR, EXIT_INVALID_INPUT};
use crate::global::{parse_go_bool, ClientConfig};

use bar::{Bar, Counter};
use report::Outcome;

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(subcommand)]
    pub command: CheckCommand,
}

#[derive(Subcommand, Debug)]
pub enum CheckCommand {
    /// Check the performance of the etcd cluster
    Perf(PerfArgs),
    /// Check the memory usage of holding data for different workloads on a given server endpoint.
    Datascale(DatascaleArgs),
}

#[derive(Args, Debug)]
pub struct PerfArgs {
    /// The performance check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
    #[arg(long, default_value = "s")]
    pub load: String,
    /// The prefix for writing the performance check's keys.
    #[arg(long, default_value = "/etcdctl-check-perf/")]
    pub prefix: String,
    /// Compact storage with last revision after test is finished.
    #[arg(long = "auto-compact", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub auto_compact: bool,
    /// Defragment storage after test is finished.
    #[arg(long = "auto-defrag", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub auto_defrag: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DatascaleArgs {
    /// The datascale check's workload model. Accepted workloads: s(small), m(medium), l(large), xl(xLarge)
    #[arg(long, default_value = "s")]
    pub load: String,
    /// The prefix for writing the datascale check's keys.
    #[arg(long, default_value = "/etcdctl-check-datascale/")]
    pub prefix: String,
    /// Compact storage with last revision after test is finished.
    #[arg(long = "auto-compact", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub auto_compact: bool,
    /// Defragment storage after test is finished.
    #[arg(long = "auto-defrag", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub auto_defrag: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

/// A perf load: target writes per second, clients, seconds.
struct PerfLoad {
    rate: u32,
    clients: usize,
    seconds: u64,
}

/// A datascale load: keys written, clients.
struct DatascaleLoad {
    keys: u64,
    kv_bytes: usize,
    clients: usize,
}

/// etcdctl's model names and their aliases.
fn model(load: &str) -> CtlResult<&'static str> {
    Ok(match load {
        "s" | "small" => "s",
        "m" | "medium" => "m",
        "l" | "large" => "l",
        "xl" | "xLarge" => "xl",
        other => {
            return Err(CtlError::new(
                EXIT_BAD_FEATURE,
                format!("unknown load option {other}"),
            ))
        }
    })
}

fn perf_load(model: &str) -> PerfLoad {
    let (rate, clients) = match model {
        "s" => (150, 50),
        "m" => (1000, 200),
        "l" => (8000, 500),
        _ => (15000, 1000),
    };
    PerfLoad {
        rate,
        clients,
        seconds: 60,
    }
}

fn datascale_load(model: &str) -> DatascaleLoad {
    let (keys, clients) = match model {
        "s" => (10_000, 50),
        "m" => (100_000, 200),
        "l" => (1_000_000, 500),
        // 3 versions of 1M objects: the upper bound etcd is tested for.
        _ => (3_000_000, 1000),
    };
    DatascaleLoad {
        keys,
        kv_bytes: 1024,
        clients,
    }
}

pub async fn run(ctx: &Ctx, a: CheckArgs) -> CtlResult {
    match a.command {
        CheckCommand::Perf(p) => perf(ctx, p).await,
        CheckCommand::Datascale(d) => datascale(ctx, d).await,
    }
}

/// One connection per client; client `i` prefers endpoint `i mod n`, so the
/// load is spread over the endpoints as clientv3's balancer spreads it.
async fn connect_clients(config: &ClientConfig, n: usize) -> CtlResult<Vec<Client>> {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let mut endpoints = config.endpoints.clone();
        if !endpoints.is_empty() {
            let k = i % endpoints.len();
            endpoints.rotate_left(k);
        }
        let c = ClientConfig {
            endpoints,
            ..config.clone()
        };
        clients.push(Client::connect(&c).await?);
    }
    Ok(clients)
}

/// Refuses a prefix that already has keys (perf quotes the suggested
/// command, datascale does not: etcdctl's two texts).
async fn ensure_empty(
    client: &Client,
    prefix: &str,
    timeout: Option<Duration>,
    quoted_hint: bool,
) -> CtlResult {
    let request = RangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: prefix_range_end(prefix.as_bytes()),
        limit: 1,
        ..RangeRequest::default()
    };
    let mut kv = client.kv();
    let resp = client
        .within(timeout.unwrap_or(NO_DEADLINE), kv.range(request))
        .await?;
    if !resp.kvs.is_empty() {
        return Err(CtlError::new(
            EXIT_INVALID_INPUT,
            format!(
                "prefix {} has keys. Delete with {q}etcdctl del --prefix {prefix}{q} first",
                gofmt::duration::quote(prefix),
                q = if quoted_hint { "'" } else { "" }
            ),
        ));
    }
    Ok(())
}

/// Calls etcdctl makes without a deadline still end some day.
const NO_DEADLINE: Duration = Duration::from_secs(365 * 24 * 3600);

/// Deletes the check's keys; the revision after the delete.
async fn delete_prefix(client: &Client, prefix: &str, timeout: Duration) -> CtlResult<i64> {
    let request = DeleteRangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: prefix_range_end(prefix.as_bytes()),
        prev_kv: false,
    };
    let resp = client
        .within(timeout, client.kv().delete_range(request))
        .await?;
    Ok(resp.header.map(|h| h.revision).unwrap_or_default())
}

/// `--auto-compact` and `--auto-defrag`, with etcdctl's lines.
async fn clean_up(
    client: &Client,
    config: &ClientConfig,
    revision: i64,
    compact: bool,
    defrag: bool,
) -> CtlResult {
    const CLEAN_UP_TIMEOUT: Duration = Duration::from_secs(30);
    if compact {
        println!("Compacting with revision {revision}");
        let request = CompactionRequest {
            revision,
            physical: true,
        };
        client
            .within(CLEAN_UP_TIMEOUT, client.kv().compact(request))
            .await?;
        println!("Compacted with revision {revision}");
    }
    if defrag {
        for ep in &config.endpoints {
            let quoted = gofmt::duration::quote(ep);
            println!("Defragmenting {quoted}");
            let c = Client::connect_to(config, ep).await?;
            c.within(
                CLEAN_UP_TIMEOUT,
                c.maintenance().defragment(DefragmentRequest {}),
            )
            .await?;
            println!("Defragmented {quoted}");
        }
    }
    Ok(())
}

/// Random keys: the prefix, then a zig-zag varint of a random non-negative
/// number at the start of a zeroed buffer of `len` bytes (etcdctl's
/// `binary.PutVarint` into a reused buffer).
struct KeyMaker {
    prefix: Vec<u8>,
    buf: Vec<u8>,
    state: u64,
}

impl KeyMaker {
    fn new(prefix: &str, len: usize) -> KeyMaker {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        KeyMaker {
            prefix: prefix.as_bytes().to_vec(),
            buf: vec![0; len],
            state: seed,
        }
    }

    /// splitmix64.
    fn random(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn next_key(&mut self) -> Vec<u8> {
        // A non-negative int63: zig-zag encoding doubles it.
        let mut v = (self.random() >> 1) << 1;
        let mut i = 0;
        while v >= 0x80 && i < self.buf.len() {
            self.buf[i] = (v as u8) | 0x80;
            v >>= 7;
            i += 1;
        }
        if i < self.buf.len() {
            self.buf[i] = v as u8;
        }
        let mut key = self.prefix.clone();
        key.extend_from_slice(&self.buf);
        key
    }
}

/// Puts every key from `keys` through `clients`, one request at a time per
/// client; the outcomes and the time until the last one finished.
async fn put_all(
    clients: Vec<Client>,
    keys: mpsc::Receiver<Vec<u8>>,
    value: Vec<u8>,
    progress: Option<Counter>,
) -> (Vec<Outcome>, Duration) {
    let started = Instant::now();
    let keys = Arc::new(Mutex::new(keys));
    let value = Arc::new(value);
    let mut workers = Vec::with_capacity(clients.len());
    for client in clients {
        let keys = keys.clone();
        let value = value.clone();
        let progress = progress.clone();
        workers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            loop {
                let next = keys.lock().await.recv().await;
                let Some(key) = next else { break };
                let request = PutRequest {
                    key,
                    value: value.as_ref().clone(),
                    ..PutRequest::default()
                };
                let st = Instant::now();
                let done = client.within(NO_DEADLINE, client.kv().put(request)).await;
                outcomes.push(Outcome {
                    error: done.err().map(|e| e.message),
                    took: st.elapsed(),
                });
                if let Some(p) = &progress {
                    p.add(1);
                }
            }
            outcomes
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        if let Ok(outcomes) = w.await {
            all.extend(outcomes);
        }
    }
    (all, started.elapsed())
}

pub async fn perf(ctx: &Ctx, a: PerfArgs) -> CtlResult {
    let load = perf_load(model(&a.load)?);
    let config = ctx.global.client_config()?;
    let clients = connect_clients(&config, load.clients).await?;
    let first = clients[0].clone();
    let run_time = Duration::from_secs(load.seconds);
    ensure_empty(&first, &a.prefix, Some(run_time), true).await?;

    let bar = Bar::start(load.seconds);
    let ticks = bar.counter();
    let ticker = tokio::spawn(async move {
        for _ in 0..load.seconds {
            tokio::time::sleep(Duration::from_secs(1)).await;
            ticks.add(1);
        }
    });

    let (tx, rx) = mpsc::channel(load.clients);
    let mut keys = KeyMaker::new(&a.prefix, 256);
    let interval = Duration::from_secs_f64(1.0 / f64::from(load.rate));
    let producer = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + run_time;
        let mut next = tokio::time::Instant::now();
        loop {
            next += interval;
            if next > deadline {
                break;
            }
            tokio::time::sleep_until(next).await;
            if tx.send(keys.next_key()).await.is_err() {
                break;
            }
        }
    });
    let (outcomes, total) = put_all(clients, rx, vec![0; 1024], None).await;
    let _ = producer.await;
    ticker.abort();
    bar.finish().await;
    let s = report::stats(&outcomes, total);

    let revision = delete_prefix(&first, &a.prefix, Duration::from_secs(30)).await?;
    clean_up(&first, &config, revision, a.auto_compact, a.auto_defrag).await?;

    let mut ok = true;
    if !s.errors.is_empty() {
        println!("FAIL: too many errors");
        for (e, n) in &s.errors {
            println!("FAIL: ERROR({e}) -> {n}");
        }
        ok = false;
    }
    let writes = s.rps as i64 + 1;
    if s.rps / f64::from(load.rate) <= 0.9 {
        println!("FAIL: Throughput too low: {writes} writes/s");
        ok = false;
    } else {
        println!("PASS: Throughput is {writes} writes/s");
    }
    if s.slowest > 0.5 {
        println!("Slowest request took too long: {:.6}s", s.slowest);
        ok = false;
    } else {
        println!("PASS: Slowest request took {:.6}s", s.slowest);
    }
    if s.stddev > 0.1 {
        println!("Stddev too high: {:.6}s", s.stddev);
        ok = false;
    } else {
        println!("PASS: Stddev is {:.6}s", s.stddev);
    }
    if ok {
        println!("PASS");
        Ok(())
    } else {
        println!("FAIL");
        Err(CtlError::exit(EXIT_ERROR))
    }
}

pub async fn datascale(ctx: &Ctx, a: DatascaleArgs) -> CtlResult {
    let load = datascale_load(model(&a.load)?);
    let config = ctx.global.client_config()?;
    let clients = connect_clients(&config, load.clients).await?;
    let first = clients[0].clone();
    let endpoint = config
        .endpoints
        .first()
        .cloned()
        .ok_or_else(|| CtlError::error("no endpoints given"))?;
    ensure_empty(&first, &a.prefix, None, false).await?;

    let before = metrics::resident_memory_bytes(&endpoint, &config).await;
    if before == 0.0 {
        println!("FAIL: Could not read process_resident_memory_bytes before the put operations.");
        return Err(CtlError::exit(EXIT_ERROR));
    }
    println!(
        "Start data scale check for work load [{} key-value pairs, {} bytes per key-value, {} concurrent clients].",
        load.keys, load.kv_bytes, load.clients
    );
    let bar = Bar::start(load.keys);
    let (tx, rx) = mpsc::channel(load.clients);
    let mut keys = KeyMaker::new(&a.prefix, load.kv_bytes / 2);
    let count = load.keys;
    let producer = tokio::spawn(async move {
        for _ in 0..count {
            if tx.send(keys.next_key()).await.is_err() {
                break;
            }
        }
    });
    let (outcomes, total) =
        put_all(clients, rx, vec![0; load.kv_bytes / 2], Some(bar.counter())).await;
    let _ = producer.await;
    bar.finish().await;
    let s = report::stats(&outcomes, total);

    let after = metrics::resident_memory_bytes(&endpoint, &config).await;
    if after == 0.0 {
        println!("FAIL: Could not read process_resident_memory_bytes after the put operations.");
        return Err(CtlError::exit(EXIT_ERROR));
    }
    let revision = delete_prefix(&first, &a.prefix, NO_DEADLINE).await?;
    clean_up(&first, &config, revision, a.auto_compact, a.auto_defrag).await?;

    if !s.errors.is_empty() {
        println!("FAIL: too many errors");
        for (e, n) in &s.errors {
            println!("FAIL: ERROR({e}) -> {n}");
        }
        return Err(CtlError::exit(EXIT_ERROR));
    }
    let used_mb = (after - before) / (1024.0 * 1024.0);
    println!("PASS: Approximate system memory used : {used_mb:.2} MB.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_aliases() {
        assert_eq!(model("xLarge").unwrap(), "xl");
        assert_eq!(model("small").unwrap(), "s");
        let e = model("huge").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (4, "unknown load option huge")
        );
        assert_eq!(perf_load("s").rate, 150);
        assert_eq!(datascale_load("m").keys, 100_000);
    }

    #[test]
    fn keys_are_prefix_and_padded_varint() {
        let mut k = KeyMaker::new("/p/", 256);
        let key = k.next_key();
        assert_eq!(key.len(), 3 + 256);
        assert!(key.starts_with(b"/p/"));
        assert_ne!(k.next_key(), key);
    }
}
