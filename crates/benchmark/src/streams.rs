//! Stream workloads: watch fan-out (put-to-event latency and events/s) and
//! lease keep-alive throughput.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use api::etcdserverpb::kv_client::KvClient;
use api::etcdserverpb::lease_client::LeaseClient;
use api::etcdserverpb::watch_client::WatchClient;
use api::etcdserverpb::watch_request::RequestUnion;
use api::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest, WatchCreateRequest, WatchRequest,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::report::Report;

/// VmRSS of a process in KiB (0 if unknown).
fn rss_kib(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub struct WatchArgs {
    pub watchers: usize,
    pub streams: usize,
    pub puts: u64,
    pub put_clients: usize,
    pub val_size: usize,
    pub server_pid: Option<u32>,
}

/// `streams` watch streams with `watchers` watchers in all on one key, then
/// `puts` puts to it: every watcher receives every put. Latency is from the
/// put's start to each event's arrival.
pub async fn run_watch(channels: &[Channel], args: WatchArgs, json: bool) -> Result<()> {
    const KEY: &[u8] = b"watch-bench-key";
    let rss_before = rss_kib(args.server_pid);
    let created_at = Instant::now();
    // Put n carries n in its value's first 8 bytes; starts[n] is when it
    // was sent, in nanoseconds after `base`.
    let base = Instant::now();
    let starts: Arc<Vec<AtomicU64>> = Arc::new((0..args.puts).map(|_| AtomicU64::new(0)).collect());
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let received = Arc::new(AtomicU64::new(0));
    let expected = args.puts * args.watchers as u64;
    let (created_tx, mut created_rx) = mpsc::channel::<usize>(args.streams.max(1));
    let (done_tx, mut done_rx) = mpsc::channel::<Instant>(args.streams.max(1));
    let streams = args.streams.max(1);
    for s in 0..streams {
        let per_stream = args.watchers / streams + usize::from(s < args.watchers % streams);
        let mut client = WatchClient::new(channels[s % channels.len()].clone())
            .max_decoding_message_size(usize::MAX);
        let (req_tx, req_rx) = mpsc::channel::<WatchRequest>(per_stream.max(1));
        for _ in 0..per_stream {
            req_tx
                .send(WatchRequest {
                    request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                        key: KEY.to_vec(),
                        ..Default::default()
                    })),
                })
                .await
                .context("queue a watch request")?;
        }
        let mut responses = client
            .watch(tokio_stream::wrappers::ReceiverStream::new(req_rx))
            .await
            .context("open a watch stream")?
            .into_inner();
        let (starts, latencies, received) = (starts.clone(), latencies.clone(), received.clone());
        let (created_tx, done_tx) = (created_tx.clone(), done_tx.clone());
        tokio::spawn(async move {
            let _keep_open = req_tx;
            let mut created = 0;
            let mut mine = Vec::new();
            let wanted = per_stream as u64 * args.puts;
            let mut got = 0u64;
            while let Some(Ok(resp)) = responses.next().await {
                if resp.created {
                    created += 1;
                    if created == per_stream {
                        let _ = created_tx.send(created).await;
                    }
                    continue;
                }
                let now = Instant::now();
                for ev in &resp.events {
                    let Some(kv) = &ev.kv else { continue };
                    let Some(n) = kv.value.get(..8).and_then(|b| b.try_into().ok()) else {
                        continue;
                    };
                    let n = u64::from_be_bytes(n) as usize;
                    if let Some(start) = starts.get(n) {
                        let start = base + Duration::from_nanos(start.load(Ordering::Acquire));
                        mine.push(now.saturating_duration_since(start));
                    }
                }
                got += resp.events.len() as u64;
                received.fetch_add(resp.events.len() as u64, Ordering::Relaxed);
                if got >= wanted {
                    break;
                }
            }
            latencies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(mine);
            let _ = done_tx.send(Instant::now()).await;
        });
    }
    drop(created_tx);
    drop(done_tx);
    for _ in 0..streams {
        if created_rx.recv().await.is_none() {
            bail!("a watch stream ended before its watchers were created");
        }
    }
    let create_secs = created_at.elapsed().as_secs_f64();
    let rss_watching = rss_kib(args.server_pid);

    // Puts, from put_clients clients sharing the put budget.
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for c in 0..args.put_clients.max(1) {
        let mut kv = KvClient::new(channels[c % channels.len()].clone());
        let (next, starts) = (next.clone(), starts.clone());
        let (puts, val_size) = (args.puts, args.val_size.max(8));
        writers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= puts {
                    break;
                }
                let mut value = vec![b'v'; val_size];
                value[..8].copy_from_slice(&n.to_be_bytes());
                starts[n as usize].store(base.elapsed().as_nanos() as u64, Ordering::Release);
                kv.put(PutRequest {
                    key: KEY.to_vec(),
                    value,
                    ..Default::default()
                })
                .await?;
            }
            anyhow::Ok(())
        }));
    }
    for w in writers {
        w.await.context("put task")??;
    }
    let mut last = started;
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..streams {
        match tokio::time::timeout_at(deadline.into(), done_rx.recv()).await {
            Ok(Some(t)) => last = last.max(t),
            _ => break,
        }
    }
    let got = received.load(Ordering::Relaxed);
    let latencies = std::mem::take(&mut *latencies.lock().unwrap_or_else(|e| e.into_inner()));
    let missing = expected.saturating_sub(got);
    let errors = vec!["missing event".to_string(); missing as usize];
    let report = Report::new(latencies, errors, last - started);
    if json {
        let base = report.json();
        println!(
            "{},\"events\":{got},\"watchers\":{},\"create_secs\":{create_secs:.3},\"rss_before_kib\":{rss_before},\"rss_watching_kib\":{rss_watching}}}",
            base.trim_end_matches('}'),
            args.watchers
        );
    } else {
        print!("{}", report.text());
        println!(
            "\n{got} events to {} watchers on {streams} streams; watchers created in {create_secs:.3}s",
            args.watchers
        );
    }
    Ok(())
}

/// `clients` keep-alive streams, each renewing its own lease in turn,
/// `total` keep-alives in all.
pub async fn run_keepalive(
    channels: &[Channel],
    clients: usize,
    total: u64,
    json: bool,
) -> Result<()> {
    let mut leases = Vec::with_capacity(clients);
    for c in 0..clients.max(1) {
        let mut lease = LeaseClient::new(channels[c % channels.len()].clone());
        let id = lease
            .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
            .await
            .context("grant a lease")?
            .into_inner()
            .id;
        leases.push((lease, id));
    }
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (mut lease, id) in leases {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let (tx, rx) = mpsc::channel(1);
            let mut latencies = Vec::new();
            let mut errors = Vec::new();
            if next.fetch_add(1, Ordering::Relaxed) >= total {
                return anyhow::Ok((latencies, errors));
            }
            // etcd sends the stream's headers with its first answer: the first
            // request must be on its way before the call is awaited.
            let mut t = Instant::now();
            tx.send(LeaseKeepAliveRequest { id }).await?;
            let mut responses = lease
                .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await?
                .into_inner();
            let mut first = true;
            loop {
                if !std::mem::take(&mut first) {
                    if next.fetch_add(1, Ordering::Relaxed) >= total {
                        break;
                    }
                    t = Instant::now();
                    if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                        errors.push("stream closed".to_string());
                        break;
                    }
                }
                match responses.next().await {
                    Some(Ok(r)) if r.ttl > 0 => latencies.push(t.elapsed()),
                    Some(Ok(_)) => errors.push("lease expired".to_string()),
                    Some(Err(e)) => {
                        errors.push(e.message().to_string());
                        break;
                    }
                    None => break,
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        let (l, e) = t.await.context("keep-alive task")??;
        latencies.extend(l);
        errors.extend(e);
    }
    let report = Report::new(latencies, errors, started.elapsed());
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(())
}
