//! Background load for the maintenance workloads (defragment, snapshot):
//! writers issuing puts and one reader issuing linearizable ranges, each
//! request's start and end recorded, until told to stop. The analysis
//! functions then split the requests around a window (the defragmentation)
//! and find the longest stretch without a completed put.
//!
//! ```text
//!  base ──── before ────┬──── window (e.g. Defragment) ────┬──── after ──── stop
//!  puts: ▮▮▮▮▮▮▮▮▮▮▮▮▮▮▮│▮▮▮▮▮           ▮▮▮▮▮▮▮▮▮▮▮▮▮▮▮▮▮│▮▮▮▮▮▮▮▮▮▮▮▮▮▮
//!                       │     └─ pause ─┘ (longest gap between put completions
//!                       │                  that overlaps the window)
//! ```
//!
//! - A request belongs to the window when it overlaps it (started before
//!   its end, ended after its start); "before" is what ended before it.
//! - Every loop is bounded: by the stop flag, a per-request timeout and a
//!   cap on recorded samples (the load stops early and says so).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use api::etcdserverpb::kv_client::KvClient;
use api::etcdserverpb::{PutRequest, RangeRequest};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tonic::transport::Channel;

use crate::Rng;

/// Samples kept in all (16 bytes each), across writers and the reader.
const SAMPLES_MAX: usize = 8_000_000;
/// Distinct error messages kept per task (the rest are counted as "other").
const ERROR_KINDS_MAX: usize = 16;

/// Keys the writers put to: `defrag/w/<n>`, n below the key space.
pub const WRITE_PREFIX: &str = "defrag/w/";

pub struct LoadArgs {
    /// Concurrent writers (0: none).
    pub writers: usize,
    /// Puts per second in all, spread over the writers (0: as fast as they go).
    pub rate_per_sec: u64,
    pub val_size: usize,
    pub key_space: u64,
    /// One reader besides the writers, paced as one writer.
    pub reader: bool,
    pub request_timeout: Duration,
}

/// One successful request, in microseconds after the load's base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub start_us: u64,
    pub end_us: u64,
}

impl Sample {
    fn latency(&self) -> Duration {
        Duration::from_micros(self.end_us.saturating_sub(self.start_us))
    }
}

/// What the load recorded.
pub struct Recorded {
    pub puts: Vec<Sample>,
    pub reads: Vec<Sample>,
    /// Failed requests by message.
    pub errors: BTreeMap<String, u64>,
    /// The sample cap was reached and the load stopped early.
    pub truncated: bool,
}

impl Recorded {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

struct Part {
    read: bool,
    samples: Vec<Sample>,
    errors: BTreeMap<String, u64>,
    truncated: bool,
}

/// A running load.
pub struct Load {
    base: Instant,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<Part>>,
}

impl Load {
    pub fn start(channels: &[Channel], args: &LoadArgs) -> Load {
        let base = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let tasks_n = args.writers + usize::from(args.reader);
        let cap = SAMPLES_MAX / tasks_n.max(1);
        // Each task's pace: the total rate shared by the writers.
        let interval = (args.rate_per_sec > 0 && args.writers > 0)
            .then(|| Duration::from_secs_f64(args.writers as f64 / args.rate_per_sec as f64));
        let mut tasks = Vec::with_capacity(tasks_n);
        for t in 0..tasks_n {
            let read = t == args.writers;
            let mut kv = KvClient::new(channels[t % channels.len()].clone())
                .max_decoding_message_size(usize::MAX);
            let stop = stop.clone();
            let (val_size, key_space, timeout) =
                (args.val_size, args.key_space.max(1), args.request_timeout);
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng(0xA076_1D64_78BD_642F ^ (t as u64 + 1).wrapping_mul(0x9E37_79B9));
                let mut part = Part {
                    read,
                    samples: Vec::new(),
                    errors: BTreeMap::new(),
                    truncated: false,
                };
                let mut pace = interval.map(|i| {
                    let mut p = tokio::time::interval(i);
                    // After a stalled request, carry on at the pace rather
                    // than bursting to catch up.
                    p.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    p
                });
                while !stop.load(Ordering::Relaxed) {
                    if part.samples.len() >= cap {
                        part.truncated = true;
                        break;
                    }
                    if let Some(p) = &mut pace {
                        p.tick().await;
                    }
                    let start = Instant::now();
                    let r = if read {
                        let req = RangeRequest {
                            key: format!("{WRITE_PREFIX}{:08}", 0).into_bytes(),
                            ..Default::default()
                        };
                        tokio::time::timeout(timeout, kv.range(req))
                            .await
                            .map(|r| r.map(|_| ()))
                    } else {
                        let req = PutRequest {
                            key: format!("{WRITE_PREFIX}{:08}", rng.next() % key_space)
                                .into_bytes(),
                            value: vec![b'w'; val_size],
                            ..Default::default()
                        };
                        tokio::time::timeout(timeout, kv.put(req))
                            .await
                            .map(|r| r.map(|_| ()))
                    };
                    let end = Instant::now();
                    let message = match r {
                        Ok(Ok(())) => {
                            part.samples.push(Sample {
                                start_us: micros(base, start),
                                end_us: micros(base, end),
                            });
                            continue;
                        }
                        Ok(Err(status)) => status.message().to_string(),
                        Err(_) => format!("no answer within {timeout:?}"),
                    };
                    let kinds = part.errors.len();
                    match part.errors.get_mut(&message) {
                        Some(n) => *n += 1,
                        None if kinds < ERROR_KINDS_MAX => {
                            part.errors.insert(message, 1);
                        }
                        None => *part.errors.entry("other errors".into()).or_default() += 1,
                    }
                }
                part
            }));
        }
        Load { base, stop, tasks }
    }

    /// `t` in microseconds after the load's base (0 before it).
    pub fn micros(&self, t: Instant) -> u64 {
        micros(self.base, t)
    }

    /// Stops the load and waits for its requests in flight.
    pub async fn stop(self) -> Result<Recorded> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Recorded {
            puts: Vec::new(),
            reads: Vec::new(),
            errors: BTreeMap::new(),
            truncated: false,
        };
        for t in self.tasks {
            let part = t.await.context("load task failed")?;
            if part.read {
                out.reads.extend(part.samples);
            } else {
                out.puts.extend(part.samples);
            }
            for (e, n) in part.errors {
                *out.errors.entry(e).or_default() += n;
            }
            out.truncated |= part.truncated;
        }
        out.puts.sort_unstable_by_key(|s| s.end_us);
        out.reads.sort_unstable_by_key(|s| s.end_us);
        Ok(out)
    }
}

fn micros(base: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(base).as_micros() as u64
}

/// A stretch of the load, in microseconds after its base.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub from_us: u64,
    pub to_us: u64,
}

/// Latency summary of the requests of one phase.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Phase {
    pub count: usize,
    pub p99: Duration,
    pub max: Duration,
    /// Completions per second within the phase's span.
    pub per_sec: f64,
}

fn phase<'a>(samples: impl Iterator<Item = &'a Sample>, span_us: u64) -> Phase {
    let mut latencies: Vec<Duration> = samples.map(Sample::latency).collect();
    latencies.sort_unstable();
    let count = latencies.len();
    if count == 0 {
        return Phase::default();
    }
    let i = ((0.99 * count as f64).ceil() as usize).clamp(1, count) - 1;
    Phase {
        count,
        p99: latencies[i],
        max: latencies[count - 1],
        per_sec: count as f64 / (span_us.max(1) as f64 / 1e6),
    }
}

/// Requests that ended before the window (from the first start on).
pub fn before(samples: &[Sample], w: Window) -> Phase {
    let first = samples.iter().map(|s| s.start_us).min().unwrap_or(0);
    phase(
        samples.iter().filter(|s| s.end_us < w.from_us),
        w.from_us.saturating_sub(first),
    )
}

/// Requests that overlapped the window.
pub fn during(samples: &[Sample], w: Window) -> Phase {
    phase(
        samples
            .iter()
            .filter(|s| s.start_us <= w.to_us && s.end_us >= w.from_us),
        w.to_us.saturating_sub(w.from_us),
    )
}

/// The longest time between two consecutive completions (of `samples`,
/// sorted by end) that overlaps the window: how long the server completed
/// none of these requests.
pub fn longest_gap(samples: &[Sample], w: Window) -> Duration {
    longest_gap_at(samples, w).0
}

/// [`longest_gap`] and when it began, in seconds after the window's start
/// (negative: before it).
pub fn longest_gap_at(samples: &[Sample], w: Window) -> (Duration, f64) {
    let Some((gap, at_us)) = samples
        .windows(2)
        .filter(|p| p[1].end_us >= w.from_us && p[0].end_us <= w.to_us)
        .map(|p| (p[1].end_us - p[0].end_us, p[0].end_us))
        .max()
    else {
        return (Duration::ZERO, 0.0);
    };
    let at = (at_us as f64 - w.from_us as f64) / 1e6;
    (Duration::from_micros(gap), at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(start_us: u64, end_us: u64) -> Sample {
        Sample { start_us, end_us }
    }

    #[test]
    fn the_longest_gap_is_the_one_across_the_window() {
        // Completions at 10, 20, 220, 230, then none until 900: the window
        // 300..700 falls in the last gap; the earlier 200 µs gap counts
        // only for a window it overlaps.
        let samples = vec![
            s(0, 10),
            s(10, 20),
            s(20, 220),
            s(220, 230),
            s(230, 900),
            s(900, 910),
        ];
        let w = Window {
            from_us: 300,
            to_us: 700,
        };
        assert_eq!(longest_gap(&samples, w), Duration::from_micros(670));
        assert_eq!(
            longest_gap_at(&samples, w),
            (Duration::from_micros(670), -70e-6)
        );
        let early = Window {
            from_us: 0,
            to_us: 25,
        };
        assert_eq!(longest_gap(&samples, early), Duration::from_micros(200));
    }

    #[test]
    fn requests_overlapping_the_window_are_during_it() {
        let samples = vec![s(0, 5), s(0, 10), s(5, 150), s(150, 160), s(210, 220)];
        let w = Window {
            from_us: 100,
            to_us: 200,
        };
        let b = before(&samples, w);
        assert_eq!((b.count, b.max), (2, Duration::from_micros(10)));
        let d = during(&samples, w);
        assert_eq!(d.count, 2, "the stalled request and the one inside");
        assert_eq!(d.max, Duration::from_micros(145));
        assert_eq!(d.p99, Duration::from_micros(145));
        assert_eq!(d.per_sec, 2.0 / 100e-6);
    }
}
