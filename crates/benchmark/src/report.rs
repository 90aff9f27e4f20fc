//! The summary etcd's benchmark prints: totals, a latency histogram and the
//! latency distribution.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

pub struct Report {
    sorted: Vec<Duration>,
    errors: BTreeMap<String, usize>,
    elapsed: Duration,
}

const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

impl Report {
    pub fn new(mut latencies: Vec<Duration>, errors: Vec<String>, elapsed: Duration) -> Self {
        latencies.sort_unstable();
        let mut counted = BTreeMap::new();
        for e in errors {
            *counted.entry(e).or_insert(0) += 1;
        }
        Report {
            sorted: latencies,
            errors: counted,
            elapsed,
        }
    }

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let i = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[i.clamp(1, self.sorted.len()) - 1]
    }

    fn average(&self) -> f64 {
        if self.sorted.is_empty() {
            return 0.0;
        }
        self.sorted.iter().map(|d| Self::secs(*d)).sum::<f64>() / self.sorted.len() as f64
    }

    fn stddev(&self) -> f64 {
        if self.sorted.is_empty() {
            return 0.0;
        }
        let avg = self.average();
        let var = self
            .sorted
            .iter()
            .map(|d| (Self::secs(*d) - avg).powi(2))
            .sum::<f64>()
            / self.sorted.len() as f64;
        var.sqrt()
    }

    pub fn requests_per_sec(&self) -> f64 {
        self.sorted.len() as f64 / Self::secs(self.elapsed).max(f64::EPSILON)
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let fastest = self.sorted.first().copied().unwrap_or_default();
        let slowest = self.sorted.last().copied().unwrap_or_default();
        let _ = writeln!(s, "\nSummary:");
        let _ = writeln!(s, "  Total:\t{:.4} secs.", Self::secs(self.elapsed));
        let _ = writeln!(s, "  Slowest:\t{:.4} secs.", Self::secs(slowest));
        let _ = writeln!(s, "  Fastest:\t{:.4} secs.", Self::secs(fastest));
        let _ = writeln!(s, "  Average:\t{:.4} secs.", self.average());
        let _ = writeln!(s, "  Stddev:\t{:.4} secs.", self.stddev());
        let _ = writeln!(s, "  Requests/sec:\t{:.4}", self.requests_per_sec());
        if !self.sorted.is_empty() {
            let _ = writeln!(s, "\nResponse time histogram:");
            let buckets = 10;
            let (lo, hi) = (Self::secs(fastest), Self::secs(slowest));
            let width = (hi - lo) / buckets as f64;
            let mut counts = vec![0usize; buckets + 1];
            for d in &self.sorted {
                let b = if width > 0.0 {
                    ((Self::secs(*d) - lo) / width) as usize
                } else {
                    0
                };
                counts[b.min(buckets)] += 1;
            }
            let max = counts.iter().copied().max().unwrap_or(1).max(1);
            for (i, c) in counts.iter().enumerate() {
                let bar = "∎".repeat(c * 40 / max);
                let _ = writeln!(s, "  {:.4} [{}]\t|{}", lo + width * i as f64, c, bar);
            }
            let _ = writeln!(s, "\nLatency distribution:");
            for p in PERCENTILES {
                let _ = writeln!(s, "  {}% in {:.4} secs.", p, Self::secs(self.percentile(p)));
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(s, "\nError distribution:");
            for (e, n) in &self.errors {
                let _ = writeln!(s, "  [{n}]\t{e}");
            }
        }
        s
    }

    /// One JSON object: requests/s, latency percentiles in milliseconds, error count.
    pub fn json(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "{{\"ok\":{},\"errors\":{},\"secs\":{:.4},\"rps\":{:.1},\"avg_ms\":{:.3},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3}}}",
            self.sorted.len(),
            self.errors.values().sum::<usize>(),
            Self::secs(self.elapsed),
            self.requests_per_sec(),
            self.average() * 1000.0,
            ms(self.percentile(50.0)),
            ms(self.percentile(90.0)),
            ms(self.percentile(99.0)),
            ms(self.percentile(99.9)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_the_sorted_latencies() {
        let l: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let r = Report::new(l, vec!["x".into()], Duration::from_secs(1));
        assert_eq!(r.percentile(50.0), Duration::from_millis(50));
        assert_eq!(r.percentile(99.0), Duration::from_millis(99));
        assert_eq!(r.percentile(99.9), Duration::from_millis(100));
        assert!(r.text().contains("Requests/sec:\t100.0000"));
        assert!(r.json().contains("\"errors\":1"));
    }
}
