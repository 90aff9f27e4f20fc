//! Auto compaction (etcd's `v3compactor`): `--auto-compaction-mode` and
//! `--auto-compaction-retention`.
//!
//! ```text
//!  periodic, window W (retention as a duration; a bare integer is hours):
//!    every W/10 (at most 6 min): sample the current revision, keep the last W/(W/10)+1
//!    first compaction W after start, then every min(W, 1h), at the oldest sample
//!    (the revision of about one window ago); a failure is retried at the next sample
//!  revision, keep N:
//!    every 5 min (etcd-rs: --experimental-auto-compaction-check-interval):
//!    compact at current - N when that is > 0 and not the last one done
//! ```
//! - Only the leader compacts: on other members the compactor is paused (the
//!   periodic one keeps sampling, so a new leader compacts at once with the
//!   revision of one window ago). A compaction is proposed through raft like a
//!   client's Compaction; "already compacted" counts as done.
//! - The schedule is a plain state machine ([`Compactor`]) that is told the
//!   time and the revision; the task ([`run`]) only sleeps, reads the
//!   revision, proposes and logs, so the schedule is tested with a fake clock.
//! - Log lines are etcd's (zap): "starting auto periodic compaction",
//!   "completed auto periodic compaction", "failed auto periodic compaction",
//!   and the same with "revision".
//!
//! Differences from etcd, deliberately: a negative periodic retention (etcd
//! then compacts in a busy loop) and one under 10 ns (etcd divides by zero)
//! are refused at start.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::etcdserverpb::{CompactionRequest, InternalRaftRequest};
use api::EtcdError;
use tokio::sync::watch;

use crate::config::retention::{Retention, RETRY_DIVISOR};
use crate::server::EtcdServer;
use gofmt::duration as go_duration;

/// etcd's interval between revision-mode checks (the tests' clock).
#[cfg(test)]
pub const REVISION_CHECK_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Periodic mode compacts at most this often (and samples at most every tenth of it).
const PERIODIC_INTERVAL_MAX: Duration = Duration::from_secs(60 * 60);
/// The compaction schedule of one mode, told the time and the revision.
///
/// The driver's loop: `before_wait(rev)`, sleep `wait()`, then `due(now, rev,
/// paused)`; when that names a revision, compact it and report `finished`.
#[derive(Debug)]
pub enum Compactor {
    Periodic(Periodic),
    Revision(RevisionKeeper),
}

impl Compactor {
    /// A schedule starting at `now`; `revision_interval` is revision mode's check interval.
    pub fn new(retention: Retention, revision_interval: Duration, now: Instant) -> Compactor {
        match retention {
            Retention::Periodic(period) => Compactor::Periodic(Periodic::new(period, now)),
            Retention::Revision(keep) => Compactor::Revision(RevisionKeeper {
                keep,
                interval: revision_interval,
                last: 0,
            }),
        }
    }

    /// How long the driver sleeps between checks.
    pub fn wait(&self) -> Duration {
        match self {
            Compactor::Periodic(p) => p.retry_interval,
            Compactor::Revision(r) => r.interval,
        }
    }

    /// Called before each sleep with the current revision (periodic mode samples it).
    pub fn before_wait(&mut self, current_revision: i64) {
        if let Compactor::Periodic(p) = self {
            p.sample(current_revision);
        }
    }

    /// After a sleep: the revision to compact now, if any. `paused` (not the
    /// leader) never compacts.
    pub fn due(&mut self, now: Instant, current_revision: i64, paused: bool) -> Option<i64> {
        if paused {
            return None;
        }
        match self {
            Compactor::Periodic(p) => p.due(now),
            Compactor::Revision(r) => r.due(current_revision),
        }
    }

    /// The outcome of compacting `revision` (true: done or already compacted).
    pub fn finished(&mut self, revision: i64, succeeded: bool, now: Instant) {
        if !succeeded {
            return;
        }
        match self {
            Compactor::Periodic(p) => p.last_success = now,
            Compactor::Revision(r) => r.last = revision,
        }
    }
}

/// Periodic mode: compacts at the revision of one window ago.
#[derive(Debug)]
pub struct Periodic {
    /// How often it compacts once the first window has passed: min(period, 1h).
    compact_interval: Duration,
    /// How often it samples and retries: min(period, 1h) / 10.
    retry_interval: Duration,
    /// Samples kept: period / retry_interval + 1, so the oldest is about one period old.
    retentions: usize,
    samples: VecDeque<i64>,
    last_success: Instant,
    /// The first compaction waits a whole period, later ones compact_interval.
    base_interval: Duration,
}

impl Periodic {
    fn new(period: Duration, now: Instant) -> Periodic {
        let compact_interval = period.min(PERIODIC_INTERVAL_MAX);
        let retry_interval = compact_interval / RETRY_DIVISOR;
        let retentions = usize::try_from(period.as_nanos() / retry_interval.as_nanos().max(1))
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        Periodic {
            compact_interval,
            retry_interval,
            retentions,
            samples: VecDeque::new(),
            last_success: now,
            base_interval: period,
        }
    }

    fn sample(&mut self, revision: i64) {
        self.samples.push_back(revision);
        if self.samples.len() > self.retentions {
            self.samples.pop_front();
        }
    }

    fn due(&mut self, now: Instant) -> Option<i64> {
        if now.saturating_duration_since(self.last_success) < self.base_interval {
            return None;
        }
        self.base_interval = self.compact_interval;
        self.samples.front().copied()
    }
}

/// Revision mode: keeps the last `keep` revisions.
#[derive(Debug)]
pub struct RevisionKeeper {
    keep: i64,
    interval: Duration,
    /// The last revision compacted (etcd's `prev`).
    last: i64,
}

impl RevisionKeeper {
    fn due(&self, current_revision: i64) -> Option<i64> {
        let revision = current_revision.saturating_sub(self.keep);
        (revision > 0 && revision != self.last).then_some(revision)
    }
}

/// The compactor task: runs until `stop` changes, compacting only while this
/// member is the leader.
pub async fn run(
    server: Arc<EtcdServer>,
    retention: Retention,
    revision_interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut compactor = Compactor::new(retention, revision_interval, Instant::now());
    loop {
        compactor.before_wait(server.store().current_revision());
        tokio::select! {
            _ = tokio::time::sleep(compactor.wait()) => {}
            _ = stop.changed() => return,
        }
        let paused = server.leader() != server.member_id();
        let Some(revision) =
            compactor.due(Instant::now(), server.store().current_revision(), paused)
        else {
            continue;
        };
        let log = LogFields::new(retention, compactor.wait());
        log.starting(revision);
        let started = Instant::now();
        let outcome = server
            .propose(InternalRaftRequest {
                compaction: Some(CompactionRequest {
                    revision,
                    physical: false,
                }),
                ..Default::default()
            })
            .await;
        let succeeded = matches!(outcome, Ok(_) | Err(EtcdError::Compacted));
        match outcome {
            Ok(_) | Err(EtcdError::Compacted) => log.completed(revision, started.elapsed()),
            Err(e) => log.failed(revision, &e),
        }
        compactor.finished(revision, succeeded, Instant::now());
    }
}

/// etcd's log lines for one mode.
struct LogFields {
    retention: Retention,
    retry_interval: String,
}

impl LogFields {
    fn new(retention: Retention, retry_interval: Duration) -> LogFields {
        LogFields {
            retention,
            retry_interval: go_duration::format(retry_interval),
        }
    }

    fn starting(&self, revision: i64) {
        match self.retention {
            Retention::Periodic(period) => tracing::info!(
                revision,
                compact_period = %go_duration::format(period),
                "starting auto periodic compaction"
            ),
            Retention::Revision(keep) => tracing::info!(
                revision,
                revision_compaction_retention = keep,
                "starting auto revision compaction"
            ),
        }
    }

    fn completed(&self, revision: i64, took: Duration) {
        let took = go_duration::format(took);
        match self.retention {
            Retention::Periodic(period) => tracing::info!(
                revision,
                compact_period = %go_duration::format(period),
                took = %took,
                "completed auto periodic compaction"
            ),
            Retention::Revision(keep) => tracing::info!(
                revision,
                revision_compaction_retention = keep,
                took = %took,
                "completed auto revision compaction"
            ),
        }
    }

    fn failed(&self, revision: i64, error: &EtcdError) {
        match self.retention {
            Retention::Periodic(period) => tracing::warn!(
                revision,
                compact_period = %go_duration::format(period),
                retry_interval = %self.retry_interval,
                error = %error,
                "failed auto periodic compaction"
            ),
            Retention::Revision(keep) => tracing::warn!(
                revision,
                revision_compaction_retention = keep,
                retry_interval = %self.retry_interval,
                error = %error,
                "failed auto revision compaction"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);
    const HOUR: Duration = Duration::from_secs(3600);

    /// Runs the driver's loop on a fake clock for `until`: the revision at a
    /// time, whether the member is paused then, whether a compaction then
    /// fails; returns (when, revision) of every compaction attempted.
    fn simulate(
        retention: Retention,
        until: Duration,
        revision_at: impl Fn(Duration) -> i64,
        paused_at: impl Fn(Duration) -> bool,
        fails_at: impl Fn(Duration) -> bool,
    ) -> Vec<(Duration, i64)> {
        let start = Instant::now();
        let mut compactor = Compactor::new(retention, REVISION_CHECK_INTERVAL, start);
        let mut t = Duration::ZERO;
        let mut attempts = Vec::new();
        while t < until {
            compactor.before_wait(revision_at(t));
            t += compactor.wait();
            if let Some(rev) = compactor.due(start + t, revision_at(t), paused_at(t)) {
                attempts.push((t, rev));
                compactor.finished(rev, !fails_at(t), start + t);
            }
        }
        attempts
    }

    /// One revision per second since the start, from revision 1.
    fn one_per_second(t: Duration) -> i64 {
        1 + t.as_secs() as i64
    }

    fn never(_: Duration) -> bool {
        false
    }

    #[test]
    fn periodic_under_an_hour_compacts_every_window_at_the_oldest_sample() {
        // 10 min window: samples every minute, 11 kept; compacts at 10, 20, 30 min.
        let got = simulate(
            Retention::Periodic(10 * MINUTE),
            35 * MINUTE,
            one_per_second,
            never,
            never,
        );
        let want = vec![
            (10 * MINUTE, 1),          // the sample at start
            (20 * MINUTE, 1 + 9 * 60), // the sample at 9 min (11 samples back)
            (30 * MINUTE, 1 + 19 * 60),
        ];
        assert_eq!(got, want);
        // Nothing younger than one window is ever compacted.
        for (t, rev) in got {
            assert!(one_per_second(t - 10 * MINUTE) >= rev);
        }
    }

    #[test]
    fn periodic_of_a_day_compacts_hourly_at_the_revision_of_a_day_ago() {
        let got = simulate(
            Retention::Periodic(24 * HOUR),
            27 * HOUR,
            one_per_second,
            never,
            never,
        );
        let minute = 60;
        assert_eq!(
            got,
            vec![
                (24 * HOUR, 1),
                (25 * HOUR, 1 + 54 * minute),
                (26 * HOUR, 1 + 114 * minute),
                (27 * HOUR, 1 + 174 * minute),
            ]
        );
    }

    #[test]
    fn periodic_of_seconds_samples_every_tenth() {
        let compactor = Compactor::new(
            Retention::Periodic(Duration::from_secs(5)),
            REVISION_CHECK_INTERVAL,
            Instant::now(),
        );
        assert_eq!(compactor.wait(), Duration::from_millis(500));
        let got = simulate(
            Retention::Periodic(Duration::from_secs(5)),
            Duration::from_secs(12),
            |t| 1 + t.as_millis() as i64 / 100,
            never,
            never,
        );
        assert_eq!(
            got,
            vec![(Duration::from_secs(5), 1), (Duration::from_secs(10), 46)]
        );
    }

    #[test]
    fn periodic_retries_a_failure_at_the_next_sample() {
        let got = simulate(
            Retention::Periodic(10 * MINUTE),
            12 * MINUTE,
            one_per_second,
            never,
            |t| t == 10 * MINUTE,
        );
        assert_eq!(got, vec![(10 * MINUTE, 1), (11 * MINUTE, 1)]);
    }

    #[test]
    fn periodic_paused_keeps_sampling_and_a_new_leader_compacts_at_once() {
        // A follower until 25 min, then leader: it compacts at its first check
        // with the revision of one window (plus a sample) ago.
        let got = simulate(
            Retention::Periodic(10 * MINUTE),
            36 * MINUTE,
            one_per_second,
            |t| t < 25 * MINUTE,
            never,
        );
        assert_eq!(
            got,
            vec![(25 * MINUTE, 1 + 14 * 60), (35 * MINUTE, 1 + 24 * 60)]
        );
    }

    #[test]
    fn revision_mode_keeps_the_last_n_revisions() {
        // 100 revisions a minute; keep 1000: the first check (5 min, rev 501) has nothing to do.
        let rev = |t: Duration| 1 + (t.as_secs() as i64 * 100) / 60;
        let got = simulate(Retention::Revision(1000), 30 * MINUTE, rev, never, never);
        assert_eq!(
            got,
            vec![
                (10 * MINUTE, 1),
                (15 * MINUTE, 501),
                (20 * MINUTE, 1001),
                (25 * MINUTE, 1501),
                (30 * MINUTE, 2001),
            ]
        );
    }

    #[test]
    fn revision_mode_skips_a_revision_it_compacted_and_retries_failures() {
        // Writes stop at 12 min (rev 2001): compactions at 667 and 1001, then nothing new.
        let rev = |t: Duration| 1 + (t.min(12 * MINUTE).as_secs() as i64 * 2000) / 720;
        let got = simulate(Retention::Revision(1000), 31 * MINUTE, rev, never, never);
        assert_eq!(got, vec![(10 * MINUTE, 667), (15 * MINUTE, 1001)]);
        let got = simulate(
            Retention::Revision(10),
            16 * MINUTE,
            |_| 50,
            never,
            |t| t == 5 * MINUTE,
        );
        assert_eq!(got, vec![(5 * MINUTE, 40), (10 * MINUTE, 40)]);
        let paused = simulate(
            Retention::Revision(10),
            16 * MINUTE,
            |_| 50,
            |_| true,
            never,
        );
        assert!(paused.is_empty());
    }

    #[test]
    fn revision_mode_uses_the_configured_interval() {
        let c = Compactor::new(
            Retention::Revision(5),
            Duration::from_millis(200),
            Instant::now(),
        );
        assert_eq!(c.wait(), Duration::from_millis(200));
    }
}
