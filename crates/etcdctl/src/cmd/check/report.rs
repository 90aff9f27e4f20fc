//! etcd's `pkg/report` statistics for the check commands: latencies of the
//! requests that succeeded, the rate over the whole run, and a count per
//! error text.

use std::collections::BTreeMap;
use std::time::Duration;

/// One request's outcome.
pub struct Outcome {
    pub error: Option<String>,
    pub took: Duration,
}

#[derive(Debug, Default)]
pub struct Stats {
    /// Successful requests per second over the run.
    pub rps: f64,
    /// Seconds.
    pub slowest: f64,
    /// Population standard deviation of the latencies, in seconds.
    pub stddev: f64,
    pub errors: BTreeMap<String, u64>,
}

pub fn stats(outcomes: &[Outcome], total: Duration) -> Stats {
    let mut s = Stats::default();
    let mut lats = Vec::with_capacity(outcomes.len());
    for o in outcomes {
        match &o.error {
            Some(e) => *s.errors.entry(e.clone()).or_default() += 1,
            None => lats.push(o.took.as_secs_f64()),
        }
    }
    if total > Duration::ZERO {
        s.rps = lats.len() as f64 / total.as_secs_f64();
    }
    if !lats.is_empty() {
        let average = lats.iter().sum::<f64>() / lats.len() as f64;
        let variance = lats
            .iter()
            .map(|l| (l - average) * (l - average))
            .sum::<f64>()
            / lats.len() as f64;
        s.stddev = variance.sqrt();
        s.slowest = lats.iter().copied().fold(0.0, f64::max);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_count_successes_and_errors() {
        let ms = Duration::from_millis;
        let outcomes = vec![
            Outcome {
                error: None,
                took: ms(10),
            },
            Outcome {
                error: None,
                took: ms(30),
            },
            Outcome {
                error: Some("boom".into()),
                took: ms(1),
            },
        ];
        let s = stats(&outcomes, Duration::from_secs(2));
        assert_eq!(s.rps, 1.0);
        assert!((s.slowest - 0.030).abs() < 1e-9);
        assert!((s.stddev - 0.010).abs() < 1e-9);
        assert_eq!(s.errors.get("boom"), Some(&1));
    }
}
