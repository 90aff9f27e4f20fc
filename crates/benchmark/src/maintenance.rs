//! Maintenance workloads: defragmentation and snapshot save, each while a
//! background load (`load.rs`) runs and measures what clients see.
//!
//! `defrag`:
//! 1. fill: `--db-bytes` of values in keys `defrag/fill/{k,d}/<n>` (large
//!    values, many clients), the keys to delete interleaved with the keys
//!    to keep so that the space freed is spread over the file;
//! 2. delete the `d` keys (one DeleteRange) and compact at that revision,
//!    so that a defragmentation has space to reclaim;
//! 3. start the writers and the reader, let them run `--before-secs`, call
//!    Defragment and time it, let them run `--after-secs`, stop them;
//! 4. report the backend size before and after, the defragmentation time,
//!    failed requests, the longest stretch without a completed put, and put
//!    latency (p99, max) during the defragmentation against before it.
//!
//! `snapshot`: streams Maintenance.Snapshot into a file (synced) and reports
//! its size and the time taken, optionally while writers run.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use api::etcdserverpb::kv_client::KvClient;
use api::etcdserverpb::maintenance_client::MaintenanceClient;
use api::etcdserverpb::{
    CompactionRequest, DefragmentRequest, DeleteRangeRequest, PutRequest, SnapshotRequest,
    StatusRequest, StatusResponse,
};
use tokio::io::AsyncWriteExt;
use tonic::transport::Channel;

use crate::load::{self, Load, LoadArgs, Phase, Recorded, Window};

const FILL_PREFIX: &str = "defrag/fill/";

pub struct DefragArgs {
    pub db_bytes: u64,
    pub fill_val_size: usize,
    pub fill_clients: usize,
    pub delete_percent: u64,
    pub skip_fill: bool,
    /// The server's backend file, when on this machine: its allocated size
    /// is reported beside the size Status gives.
    pub db_file: Option<PathBuf>,
    pub load: LoadArgs,
    pub before: Duration,
    pub after: Duration,
    pub defrag_timeout: Duration,
}

pub struct SnapshotArgs {
    pub out: PathBuf,
    pub load: LoadArgs,
    pub before: Duration,
    pub timeout: Duration,
}

/// Whether fill key `i` is one of those deleted: `percent` of them, spread
/// evenly (every other key at 50).
fn deleted(i: u64, percent: u64) -> bool {
    (i + 1) * percent / 100 > i * percent / 100
}

async fn status(channel: &Channel) -> Result<StatusResponse> {
    Ok(MaintenanceClient::new(channel.clone())
        .status(StatusRequest {})
        .await
        .context("Status")?
        .into_inner())
}

struct Filled {
    puts: u64,
    deleted: u64,
    compact_revision: i64,
    took: Duration,
}

/// Steps 1 and 2: fill, delete, compact.
async fn fill(channels: &[Channel], args: &DefragArgs) -> Result<Filled> {
    let started = Instant::now();
    let val_size = args.fill_val_size.max(1);
    let puts = args.db_bytes.div_ceil(val_size as u64);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..args.fill_clients.max(1) {
        let mut kv = KvClient::new(channels[c % channels.len()].clone())
            .max_encoding_message_size(usize::MAX);
        let next = next.clone();
        let (percent, timeout) = (args.delete_percent, args.load.request_timeout);
        tasks.push(tokio::spawn(async move {
            let value = vec![b'f'; val_size];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= puts {
                    return anyhow::Ok(());
                }
                let group = if deleted(i, percent) { 'd' } else { 'k' };
                let req = PutRequest {
                    key: format!("{FILL_PREFIX}{group}/{i:08}").into_bytes(),
                    value: value.clone(),
                    ..Default::default()
                };
                tokio::time::timeout(timeout, kv.put(req))
                    .await
                    .with_context(|| format!("fill put {i}: no answer within {timeout:?}"))?
                    .with_context(|| format!("fill put {i}"))?;
            }
        }));
    }
    for t in tasks {
        t.await.context("fill task failed")??;
    }
    let channel = &channels[0];
    let delete = KvClient::new(channel.clone())
        .delete_range(DeleteRangeRequest {
            key: format!("{FILL_PREFIX}d/").into_bytes(),
            range_end: format!("{FILL_PREFIX}d0").into_bytes(),
            ..Default::default()
        })
        .await
        .context("delete the fill's d keys")?
        .into_inner();
    let revision = delete.header.map(|h| h.revision).unwrap_or_default();
    KvClient::new(channel.clone())
        .compact(CompactionRequest {
            revision,
            physical: true,
        })
        .await
        .with_context(|| format!("compact at {revision}"))?;
    Ok(Filled {
        puts,
        deleted: delete.deleted as u64,
        compact_revision: revision,
        took: started.elapsed(),
    })
}

/// Bytes of disk allocated to `path` (a file may be sparse), or -1.
fn allocated_bytes(path: Option<&std::path::Path>) -> i64 {
    use std::os::unix::fs::MetadataExt;
    path.and_then(|p| std::fs::metadata(p).ok())
        .map_or(-1, |m| (m.blocks() * 512) as i64)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mb(bytes: i64) -> f64 {
    bytes as f64 / 1e6
}

/// The load's figures around a window, as JSON fields (no braces).
fn load_json(r: &Recorded, w: Window) -> String {
    let (pb, pd) = (load::before(&r.puts, w), load::during(&r.puts, w));
    let (rb, rd) = (load::before(&r.reads, w), load::during(&r.reads, w));
    let (pause, pause_at) = load::longest_gap_at(&r.puts, w);
    let kinds: Vec<String> = r
        .errors
        .iter()
        .map(|(e, n)| format!("{}:{n}", json_string(e)))
        .collect();
    format!(
        "\"errors\":{},\"error_kinds\":{{{}}},\"truncated\":{},\"put_pause_ms\":{:.1},\"put_pause_at_s\":{:.3},\"put_pause_before_ms\":{:.1},\
         \"put_p99_before_ms\":{:.2},\"put_max_before_ms\":{:.1},\"put_rps_before\":{:.0},\
         \"put_p99_during_ms\":{:.2},\"put_max_during_ms\":{:.1},\"put_rps_during\":{:.0},\"puts_during\":{},\
         \"read_pause_ms\":{:.1},\"read_p99_before_ms\":{:.2},\"read_max_during_ms\":{:.1}",
        r.error_count(),
        kinds.join(","),
        r.truncated,
        ms(pause),
        pause_at,
        ms(load::longest_gap(
            &r.puts,
            Window {
                from_us: 0,
                to_us: w.from_us
            }
        )),
        ms(pb.p99),
        ms(pb.max),
        pb.per_sec,
        ms(pd.p99),
        ms(pd.max),
        pd.per_sec,
        pd.count,
        ms(load::longest_gap(&r.reads, w)),
        ms(rb.p99),
        ms(rd.max),
    )
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn phase_text(name: &str, p: Phase) -> String {
    format!(
        "  {name:<7} {:>8} requests, {:>8.0}/s, p99 {:>8.2} ms, max {:>8.1} ms\n",
        p.count,
        p.per_sec,
        ms(p.p99),
        ms(p.max)
    )
}

fn load_text(r: &Recorded, w: Window, what: &str) -> String {
    let mut s = String::new();
    let before_w = Window {
        from_us: 0,
        to_us: w.from_us,
    };
    let (pause, pause_at) = load::longest_gap_at(&r.puts, w);
    s += &format!(
        "Puts: longest pause {:.1} ms during the {what}, from {pause_at:.3} s after its start \
         ({:.1} ms before it)\n",
        ms(pause),
        ms(load::longest_gap(&r.puts, before_w)),
    );
    s += &phase_text("before", load::before(&r.puts, w));
    s += &phase_text("during", load::during(&r.puts, w));
    if !r.reads.is_empty() {
        s += &format!(
            "Reads (linearizable): longest pause {:.1} ms during the {what}\n",
            ms(load::longest_gap(&r.reads, w)),
        );
        s += &phase_text("before", load::before(&r.reads, w));
        s += &phase_text("during", load::during(&r.reads, w));
    }
    s += &format!("Failed requests: {}\n", r.error_count());
    for (e, n) in &r.errors {
        s += &format!("  [{n}]\t{e}\n");
    }
    if r.truncated {
        s += "(the sample cap was reached: the load stopped early)\n";
    }
    s
}

pub async fn run_defrag(channels: &[Channel], args: DefragArgs, json: bool) -> Result<()> {
    let channel = &channels[0];
    let filled = if args.skip_fill {
        None
    } else {
        Some(fill(channels, &args).await?)
    };
    let before_status = status(channel).await?;
    let disk_before = allocated_bytes(args.db_file.as_deref());

    let load = Load::start(channels, &args.load);
    tokio::time::sleep(args.before).await;
    let from = Instant::now();
    let defragged = tokio::time::timeout(
        args.defrag_timeout,
        MaintenanceClient::new(channel.clone()).defragment(DefragmentRequest {}),
    )
    .await;
    let to = Instant::now();
    tokio::time::sleep(args.after).await;
    let window = Window {
        from_us: load.micros(from),
        to_us: load.micros(to),
    };
    let recorded = load.stop().await?;
    match defragged {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => bail!("Defragment failed: {}", e.message()),
        Err(_) => bail!("Defragment did not answer within {:?}", args.defrag_timeout),
    }
    let after_status = status(channel).await?;
    let disk_after = allocated_bytes(args.db_file.as_deref());
    let took = to - from;

    if json {
        let fill_json = filled.as_ref().map_or(String::new(), |f| {
            format!(
                "\"fill_puts\":{},\"fill_secs\":{:.1},\"deleted\":{},",
                f.puts,
                f.took.as_secs_f64(),
                f.deleted
            )
        });
        println!(
            "{{{fill_json}\"defrag_secs\":{:.3},\"db_before\":{},\"in_use_before\":{},\"disk_before\":{disk_before},\
             \"db_after\":{},\"in_use_after\":{},\"disk_after\":{disk_after},{}}}",
            took.as_secs_f64(),
            before_status.db_size,
            before_status.db_size_in_use,
            after_status.db_size,
            after_status.db_size_in_use,
            load_json(&recorded, window),
        );
        return Ok(());
    }
    if let Some(f) = &filled {
        println!(
            "Fill: {} puts of {} bytes in {:.1} s; deleted {} keys, compacted at revision {}",
            f.puts,
            args.fill_val_size,
            f.took.as_secs_f64(),
            f.deleted,
            f.compact_revision
        );
    }
    println!(
        "Backend: {:.1} MB ({:.1} MB in use) before, {:.1} MB ({:.1} MB in use) after",
        mb(before_status.db_size),
        mb(before_status.db_size_in_use),
        mb(after_status.db_size),
        mb(after_status.db_size_in_use),
    );
    if disk_before >= 0 {
        println!(
            "Backend file on disk: {:.1} MB allocated before, {:.1} MB after",
            mb(disk_before),
            mb(disk_after)
        );
    }
    println!("Defragment: {:.3} s", took.as_secs_f64());
    print!("{}", load_text(&recorded, window, "defragmentation"));
    Ok(())
}

pub async fn run_snapshot(channels: &[Channel], args: SnapshotArgs, json: bool) -> Result<()> {
    let channel = &channels[0];
    let db = status(channel).await?;
    let load = (args.load.writers > 0).then(|| Load::start(channels, &args.load));
    if load.is_some() {
        tokio::time::sleep(args.before).await;
    }
    let from = Instant::now();
    let saved = tokio::time::timeout(args.timeout, save(channel, &args.out)).await;
    let to = Instant::now();
    let recorded = match load {
        Some(load) => {
            let w = Window {
                from_us: load.micros(from),
                to_us: load.micros(to),
            };
            Some((load.stop().await?, w))
        }
        None => None,
    };
    let bytes = match saved {
        Ok(r) => r?,
        Err(_) => bail!("the snapshot did not finish within {:?}", args.timeout),
    };
    let secs = (to - from).as_secs_f64();
    let mb_per_sec = bytes as f64 / 1e6 / secs.max(f64::EPSILON);
    if json {
        let load = recorded
            .as_ref()
            .map_or(String::new(), |(r, w)| format!(",{}", load_json(r, *w)));
        println!(
            "{{\"snapshot_secs\":{secs:.3},\"bytes\":{bytes},\"mb_per_sec\":{mb_per_sec:.1},\"db_size\":{}{load}}}",
            db.db_size
        );
        return Ok(());
    }
    println!(
        "Snapshot: {bytes} bytes in {secs:.3} s ({mb_per_sec:.1} MB/s) to {} (backend {:.1} MB)",
        args.out.display(),
        mb(db.db_size)
    );
    if let Some((r, w)) = &recorded {
        print!("{}", load_text(r, *w, "snapshot"));
    }
    Ok(())
}

/// Streams a snapshot into `out` and syncs it; returns its size.
async fn save(channel: &Channel, out: &std::path::Path) -> Result<u64> {
    let mut stream = MaintenanceClient::new(channel.clone())
        .snapshot(SnapshotRequest {})
        .await
        .context("Snapshot")?
        .into_inner();
    let file = tokio::fs::File::create(out)
        .await
        .with_context(|| format!("cannot create {}", out.display()))?;
    let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut bytes = 0u64;
    let mut remaining = None;
    while let Some(resp) = stream.message().await.context("Snapshot stream")? {
        file.write_all(&resp.blob)
            .await
            .with_context(|| format!("write {}", out.display()))?;
        bytes += resp.blob.len() as u64;
        remaining = Some(resp.remaining_bytes);
    }
    if remaining != Some(0) {
        bail!("the snapshot stream ended early ({bytes} bytes, {remaining:?} remaining)");
    }
    file.flush().await.context("flush the snapshot")?;
    file.get_ref()
        .sync_all()
        .await
        .context("sync the snapshot")?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::{deleted, json_string};

    #[test]
    fn error_messages_are_quoted_for_json() {
        assert_eq!(
            json_string("a \"b\" \\ c\n"),
            "\"a \\\"b\\\" \\\\ c\\u000a\""
        );
    }

    #[test]
    fn the_deleted_keys_are_spread_evenly() {
        let picked = |p| (0..100).filter(|&i| deleted(i, p)).collect::<Vec<_>>();
        assert_eq!(picked(50), (0..50).map(|i| 2 * i + 1).collect::<Vec<_>>());
        assert_eq!(picked(0), Vec::<u64>::new());
        assert_eq!(picked(100).len(), 100);
        assert_eq!(
            picked(25),
            vec![
                3, 7, 11, 15, 19, 23, 27, 31, 35, 39, 43, 47, 51, 55, 59, 63, 67, 71, 75, 79, 83,
                87, 91, 95, 99
            ]
        );
    }
}
