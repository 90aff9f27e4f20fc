//! What the raft loop and the applier are given instead of reaching for the
//! world themselves: a [`Transport`] to the other members and a [`Clock`].
//! The running member passes the gRPC transport and the system clock; a
//! simulation passes an in-memory network and a clock it moves by hand, and
//! then drives the loop turn by turn (`RaftNode::turn`), deterministically.

use std::time::Instant;

use raft::eraftpb::Message;

/// A change of the members the transport sends to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerChange {
    /// A member joined (or this member learned of it): start sending to it;
    /// a known member only gets the URLs.
    Added { id: u64, peer_urls: Vec<String> },
    /// A known member's peer URLs changed; an unknown member is ignored.
    Updated { id: u64, peer_urls: Vec<String> },
    /// A member left: stop sending to it and drop what is queued for it.
    Removed { id: u64 },
}

/// How the raft loop reaches the other members. Never blocks: a message that
/// cannot be sent is dropped (raft retransmits) and its member reported.
pub trait Transport: Send + Sync {
    /// Queues raft's messages for their members.
    fn send(&self, msgs: Vec<Message>);
    /// Members a message could not reach since the last call.
    fn take_unreachable(&self) -> Vec<u64>;
    /// Snapshot sends that finished since the last call (member, success).
    fn take_snapshot_reports(&self) -> Vec<(u64, bool)>;
    /// The one path by which the peer list changes.
    fn membership_changed(&self, change: PeerChange);
}

impl Transport for crate::transport::Transport {
    fn send(&self, msgs: Vec<Message>) {
        crate::transport::Transport::send(self, msgs)
    }

    fn take_unreachable(&self) -> Vec<u64> {
        crate::transport::Transport::take_unreachable(self)
    }

    fn take_snapshot_reports(&self) -> Vec<(u64, bool)> {
        crate::transport::Transport::take_snapshot_reports(self)
    }

    fn membership_changed(&self, change: PeerChange) {
        match change {
            PeerChange::Added { id, peer_urls } => self.add_peer(id, peer_urls),
            PeerChange::Updated { id, peer_urls } => self.update_peer(id, peer_urls),
            PeerChange::Removed { id } => self.remove_peer(id),
        }
    }
}

/// Where the raft loop and the applier read the time.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

#[cfg(test)]
pub use manual::ManualClock;

#[cfg(test)]
mod manual {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use super::Clock;

    /// A clock that moves only when told to (simulations, tests).
    #[derive(Debug)]
    pub struct ManualClock {
        start: Instant,
        elapsed: Mutex<Duration>,
    }

    impl ManualClock {
        pub fn new() -> Arc<ManualClock> {
            Arc::new(ManualClock {
                start: Instant::now(),
                elapsed: Mutex::new(Duration::ZERO),
            })
        }

        /// Moves the clock forward by `by`.
        pub fn advance(&self, by: Duration) {
            *self.elapsed.lock().unwrap_or_else(|p| p.into_inner()) += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            self.start + *self.elapsed.lock().unwrap_or_else(|p| p.into_inner())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new();
        let t0 = clock.now();
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::from_millis(250));
        assert_eq!(clock.now() - t0, Duration::from_millis(250));
    }
}
