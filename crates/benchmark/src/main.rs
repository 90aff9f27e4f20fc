//! `benchmark`: drives an etcd (ours or the real one) with put or range load
//! and prints throughput and latency percentiles in the shape of etcd's own
//! benchmark tool.
//!
//! `--clients` concurrent clients share `--conns` gRPC connections (round
//! robin); together they issue `--total` requests, each client taking the
//! next request number from a shared counter. `defrag` and `snapshot` time
//! those maintenance calls while `--clients` writers run (`maintenance.rs`).

mod load;
mod maintenance;
mod report;
mod streams;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use api::etcdserverpb::kv_client::KvClient;
use api::etcdserverpb::{PutRequest, RangeRequest};
use clap::{Parser, Subcommand};
use etcd_rs_client::dial::{self, DialOptions, Scheme, Target};
use etcd_rs_client::tls::{self, TlsFiles};
use tonic::transport::Channel;

#[derive(Parser)]
#[command(name = "benchmark", about = "A low-level benchmark tool for etcd3")]
struct Cli {
    /// gRPC endpoints, comma separated.
    #[arg(
        long,
        default_value = "127.0.0.1:2379",
        value_delimiter = ',',
        global = true
    )]
    endpoints: Vec<String>,
    /// Total number of gRPC connections.
    #[arg(long, default_value_t = 1, global = true)]
    conns: usize,
    /// Total number of concurrent clients.
    #[arg(long, default_value_t = 1, global = true)]
    clients: usize,
    /// Print a one-line JSON summary instead of the text report.
    #[arg(long, global = true)]
    json: bool,
    /// Verify the server's certificate with this CA bundle, else the
    /// system's roots (https:// endpoints).
    #[arg(long, global = true)]
    cacert: Option<std::path::PathBuf>,
    /// Identify with this client certificate (https:// endpoints).
    #[arg(long = "cert", id = "tls_cert", global = true, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The client certificate's key.
    #[arg(long = "key", id = "tls_key", global = true, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Benchmark put.
    Put {
        #[arg(long, default_value_t = 10000)]
        total: u64,
        #[arg(long, default_value_t = 8)]
        key_size: usize,
        #[arg(long, default_value_t = 8)]
        val_size: usize,
        /// Maximum possible keys.
        #[arg(long, default_value_t = 1)]
        key_space_size: u64,
        /// Use sequential keys instead of random ones.
        #[arg(long)]
        sequential_keys: bool,
    },
    /// Benchmark range.
    Range {
        key: String,
        end: Option<String>,
        #[arg(long, default_value_t = 10000)]
        total: u64,
        /// Linearizable (l) or serializable (s).
        #[arg(long, default_value = "l")]
        consistency: String,
        /// Maximum number of results (0: no limit).
        #[arg(long, default_value_t = 0)]
        limit: i64,
    },
    /// Benchmark watch fan-out: watchers on one key, then puts to it.
    Watch {
        /// Watchers in all.
        #[arg(long, default_value_t = 10000)]
        watchers: usize,
        /// Watch streams the watchers are spread over.
        #[arg(long, default_value_t = 100)]
        streams: usize,
        /// Puts to the watched key.
        #[arg(long, default_value_t = 100)]
        puts: u64,
        /// Concurrent put clients.
        #[arg(long, default_value_t = 1)]
        put_clients: usize,
        #[arg(long, default_value_t = 8)]
        val_size: usize,
        /// Report the server's RSS before and after creating the watchers.
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Benchmark lease keep-alive: each client renews its own lease.
    LeaseKeepalive {
        #[arg(long, default_value_t = 10000)]
        total: u64,
    },
    /// Benchmark defragmentation: fill the backend, delete part of it and
    /// compact, then defragment while --clients writers and a reader run.
    Defrag {
        /// Bytes of values to fill the backend with.
        #[arg(long, default_value_t = 1 << 30)]
        db_bytes: u64,
        /// Value size of the fill's puts.
        #[arg(long, default_value_t = 50_000)]
        fill_val_size: usize,
        /// Concurrent clients filling the backend.
        #[arg(long, default_value_t = 32)]
        fill_clients: usize,
        /// Percentage of the fill's keys deleted (spread evenly) before compacting.
        #[arg(long, default_value_t = 50)]
        delete_percent: u64,
        /// Defragment the backend as it is, without filling it.
        #[arg(long)]
        skip_fill: bool,
        /// The server's backend file, if local: its allocated size is
        /// reported too (Status gives the file's length, which may be sparse).
        #[arg(long)]
        db_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        load: LoadFlags,
        /// Seconds of load before the defragmentation.
        #[arg(long, default_value_t = 3.0)]
        before_secs: f64,
        /// Seconds of load after it.
        #[arg(long, default_value_t = 2.0)]
        after_secs: f64,
        /// Give up on the Defragment call after this many seconds.
        #[arg(long, default_value_t = 600)]
        defrag_timeout_secs: u64,
    },
    /// Benchmark snapshot save: stream Maintenance.Snapshot into a file,
    /// optionally while --clients writers run.
    Snapshot {
        /// Where to write the snapshot.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Run --clients writers (and a reader) during the snapshot.
        #[arg(long)]
        with_writes: bool,
        #[command(flatten)]
        load: LoadFlags,
        /// Seconds of load before the snapshot (with --with-writes).
        #[arg(long, default_value_t = 2.0)]
        before_secs: f64,
        /// Give up on the snapshot after this many seconds.
        #[arg(long, default_value_t = 600)]
        snapshot_timeout_secs: u64,
    },
}

/// The background load of the maintenance workloads: --clients writers.
#[derive(clap::Args)]
struct LoadFlags {
    /// Puts per second from all writers together (0: as fast as they go).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Value size of the writers' puts.
    #[arg(long, default_value_t = 256)]
    val_size: usize,
    /// Keys the writers put to.
    #[arg(long, default_value_t = 10000)]
    key_space_size: u64,
    /// No reader beside the writers.
    #[arg(long)]
    no_reader: bool,
    /// A request without an answer after this many seconds counts as failed.
    #[arg(long, default_value_t = 600)]
    request_timeout_secs: u64,
}

impl LoadFlags {
    fn args(&self, writers: usize) -> load::LoadArgs {
        load::LoadArgs {
            writers,
            rate_per_sec: self.rate,
            val_size: self.val_size,
            key_space: self.key_space_size,
            reader: !self.no_reader,
            request_timeout: Duration::from_secs(self.request_timeout_secs),
        }
    }
}

fn secs(s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("bad duration {s}"))
}

/// A small, fast PRNG (xorshift64*), seeded per client: the load, not the keys, is measured.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// How to dial `http://` (and scheme-less) endpoints, and `https://` ones:
/// TLS from --cacert (else the system's roots), --cert and --key. The TLS
/// files are read when an endpoint is https:// or a TLS flag is given.
fn dial_options(cli: &Cli) -> Result<(DialOptions, DialOptions)> {
    let plain = DialOptions::new().tcp_nodelay(true);
    let any_https = cli.endpoints.iter().any(|e| e.starts_with("https://"));
    let any_flag = cli.cacert.is_some() || cli.tls_cert.is_some() || cli.tls_key.is_some();
    if !any_https && !any_flag {
        return Ok((plain.clone(), plain));
    }
    let files = TlsFiles {
        ca: cli.cacert.clone(),
        cert: cli.tls_cert.clone(),
        key: cli.tls_key.clone(),
        skip_verify: false,
    };
    let config = tls::client_config(&files).context("TLS configuration")?;
    let secure = plain.clone().tls(Some(Arc::new(config)));
    Ok((plain, secure))
}

/// `conns` channels over `endpoints`, round robin. A benchmark measures the
/// endpoints it was given, so one that cannot be reached fails the run
/// instead of being failed over.
async fn connect(
    endpoints: &[String],
    conns: usize,
    (plain, secure): &(DialOptions, DialOptions),
) -> Result<Vec<Channel>> {
    let mut out = Vec::with_capacity(conns);
    for i in 0..conns.max(1) {
        let target = Target::parse(&endpoints[i % endpoints.len()])?;
        let options = match target.scheme() {
            Some(Scheme::Https) => secure,
            Some(Scheme::Http) | None => plain,
        };
        out.push(dial::dial(&target, options).await?);
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    if cli.endpoints.is_empty() {
        bail!("--endpoints is empty");
    }
    let conns = connect(&cli.endpoints, cli.conns, &dial_options(&cli)?).await?;
    let total = match &cli.cmd {
        Cmd::Put { total, .. } | Cmd::Range { total, .. } => *total,
        Cmd::Watch {
            watchers,
            streams,
            puts,
            put_clients,
            val_size,
            server_pid,
        } => {
            let args = streams::WatchArgs {
                watchers: *watchers,
                streams: *streams,
                puts: *puts,
                put_clients: *put_clients,
                val_size: *val_size,
                server_pid: *server_pid,
            };
            return streams::run_watch(&conns, args, cli.json).await;
        }
        Cmd::LeaseKeepalive { total } => {
            return streams::run_keepalive(&conns, cli.clients, *total, cli.json).await;
        }
        Cmd::Defrag {
            db_bytes,
            fill_val_size,
            fill_clients,
            delete_percent,
            skip_fill,
            db_file,
            load,
            before_secs,
            after_secs,
            defrag_timeout_secs,
        } => {
            if *delete_percent > 100 {
                bail!("--delete-percent must be at most 100");
            }
            let args = maintenance::DefragArgs {
                db_bytes: *db_bytes,
                fill_val_size: *fill_val_size,
                fill_clients: *fill_clients,
                delete_percent: *delete_percent,
                skip_fill: *skip_fill,
                db_file: db_file.clone(),
                load: load.args(cli.clients),
                before: secs(*before_secs)?,
                after: secs(*after_secs)?,
                defrag_timeout: Duration::from_secs(*defrag_timeout_secs),
            };
            return maintenance::run_defrag(&conns, args, cli.json).await;
        }
        Cmd::Snapshot {
            out,
            with_writes,
            load,
            before_secs,
            snapshot_timeout_secs,
        } => {
            let writers = if *with_writes { cli.clients } else { 0 };
            let args = maintenance::SnapshotArgs {
                out: out.clone(),
                load: load.args(writers),
                before: secs(*before_secs)?,
                timeout: Duration::from_secs(*snapshot_timeout_secs),
            };
            return maintenance::run_snapshot(&conns, args, cli.json).await;
        }
    };
    let next = Arc::new(AtomicU64::new(0));
    let cmd = Arc::new(cli.cmd);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(cli.clients);
    for c in 0..cli.clients.max(1) {
        let mut kv = KvClient::new(conns[c % conns.len()].clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let next = next.clone();
        let cmd = cmd.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng =
                Rng(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1).wrapping_mul(0x1234_5678_9ABC_DEF1));
            let mut latencies: Vec<Duration> = Vec::new();
            let mut errors: Vec<String> = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let t = Instant::now();
                let r = match &*cmd {
                    Cmd::Put {
                        key_size,
                        val_size,
                        key_space_size,
                        sequential_keys,
                        ..
                    } => {
                        let k = if *sequential_keys {
                            n % key_space_size.max(&1)
                        } else {
                            rng.next() % key_space_size.max(&1)
                        };
                        let mut key = vec![b'0'; *key_size];
                        let digits = k.to_string().into_bytes();
                        let start = key.len().saturating_sub(digits.len());
                        key[start..]
                            .copy_from_slice(&digits[digits.len().saturating_sub(*key_size)..]);
                        kv.put(PutRequest {
                            key,
                            value: vec![b'v'; *val_size],
                            ..Default::default()
                        })
                        .await
                        .map(|_| ())
                    }
                    Cmd::Range {
                        key,
                        end,
                        consistency,
                        limit,
                        ..
                    } => kv
                        .range(RangeRequest {
                            key: key.clone().into_bytes(),
                            range_end: end.clone().unwrap_or_default().into_bytes(),
                            serializable: consistency == "s",
                            limit: *limit,
                            ..Default::default()
                        })
                        .await
                        .map(|_| ()),
                    Cmd::Watch { .. }
                    | Cmd::LeaseKeepalive { .. }
                    | Cmd::Defrag { .. }
                    | Cmd::Snapshot { .. } => {
                        unreachable!("stream workloads run on their own")
                    }
                };
                match r {
                    Ok(()) => latencies.push(t.elapsed()),
                    Err(e) => errors.push(e.message().to_string()),
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::with_capacity(total as usize);
    let mut errors = Vec::new();
    for t in tasks {
        let (l, e) = t.await.context("client task failed")?;
        latencies.extend(l);
        errors.extend(e);
    }
    let elapsed = started.elapsed();
    let r = report::Report::new(latencies, errors, elapsed);
    if cli.json {
        println!("{}", r.json());
    } else {
        print!("{}", r.text());
    }
    Ok(())
}
