//! The progress line etcdctl draws with cheggaaa/pb (v1) when stdout is not
//! a terminal: no bar, only `\r 12 / 60   20.00% 00m48s`, redrawn every
//! 200 ms, and on finish the final count, `100.00%`, the time spent and a
//! newline.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// pb's default refresh rate.
const REFRESH: Duration = Duration::from_millis(200);

pub struct Bar {
    state: Arc<State>,
    refresher: Option<JoinHandle<()>>,
}

struct State {
    total: u64,
    current: AtomicU64,
    started: Instant,
    finished: AtomicBool,
}

impl Bar {
    /// Draws the line now and then every 200 ms until [`Bar::finish`].
    pub fn start(total: u64) -> Bar {
        let state = Arc::new(State {
            total,
            current: AtomicU64::new(0),
            started: Instant::now(),
            finished: AtomicBool::new(false),
        });
        state.draw(false);
        let s = state.clone();
        let refresher = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + REFRESH, REFRESH);
            while !s.finished.load(Ordering::Acquire) {
                tick.tick().await;
                if !s.finished.load(Ordering::Acquire) {
                    s.draw(false);
                }
            }
        });
        Bar {
            state,
            refresher: Some(refresher),
        }
    }

    /// A handle that counts progress.
    pub fn counter(&self) -> Counter {
        Counter(self.state.clone())
    }

    /// The final line (the count at its total) and a newline.
    pub async fn finish(mut self) {
        self.state.finished.store(true, Ordering::Release);
        if let Some(r) = self.refresher.take() {
            r.abort();
            let _ = r.await;
        }
        self.state
            .current
            .store(self.state.total, Ordering::Release);
        self.state.draw(true);
    }
}

#[derive(Clone)]
pub struct Counter(Arc<State>);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.current.fetch_add(n, Ordering::AcqRel);
    }
}

impl State {
    fn draw(&self, finished: bool) {
        let current = self.current.load(Ordering::Acquire).min(self.total);
        let elapsed = self.started.elapsed();
        let mut line = format!(" {current} / {} ", self.total);
        let percent = if self.total == 0 {
            0.0
        } else {
            current as f64 * 100.0 / self.total as f64
        };
        line.push_str(&format!(" {percent:6.2}%"));
        if finished {
            let whole = Duration::from_secs(elapsed.as_secs());
            line.push_str(&format!(" {}", gofmt::duration::format(whole)));
        } else if current > 0 && current < self.total {
            let per_entry = elapsed.as_secs_f64() / current as f64;
            let left = (per_entry * (self.total - current) as f64).floor() as u64;
            if left > 0 {
                line.push_str(&format!(" {:02}m{:02}s", left / 60, left % 60));
            }
        }
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\r{line}");
        if finished {
            let _ = writeln!(out);
        }
        let _ = out.flush();
    }
}
