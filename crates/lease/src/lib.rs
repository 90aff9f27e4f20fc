//! The lessor: etcd's leases, kept in memory by every member.
//!
//! A lease has an ID, a granted TTL (seconds, at least the minimum TTL the
//! election timeout implies) and the keys attached to it. Every member holds
//! the same leases and attachments, changed only by applied raft entries
//! (grant, revoke, checkpoint, and puts/deletes that attach and detach keys).
//! Only the *primary* lessor — the leader's — tracks expiry times:
//!
//! - [`Lessor::promote`] (a new leader, once it has applied its first entry
//!   of the term) gives every lease its remaining TTL plus an extension, so a
//!   leader change never expires a healthy lease, and spreads expiries when
//!   many fall in the same second;
//! - [`Lessor::renew`] (keep-alive) resets a lease's expiry; only the primary
//!   renews, followers forward keep-alives to the leader;
//! - [`Lessor::expired`] hands the leader the leases to revoke through raft
//!   (each one again after a retry interval until the revoke is applied);
//! - [`Lessor::demote`] (leadership lost) makes every lease live forever until
//!   the next promotion.
//!
//! With checkpointing on, the leader periodically records each long lease's
//! remaining TTL through raft ([`Lessor::due_checkpoints`],
//! [`Lessor::checkpoint`]), so that a new leader continues from it instead of
//! the full TTL.
//!
//! Time is passed in (`now`), never read here, so the lessor runs the same
//! under a simulated clock. Persistence is the caller's: the mutating calls
//! return the [`LeaseRecord`] to store with the applied entry.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// "No lease" in requests and key-values.
pub const NO_LEASE: i64 = 0;
/// The largest TTL a lease may be granted (etcd's MaxLeaseTTL, in seconds).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// How many leases the leader revokes per second at most (etcd's leaseRevokeRate).
pub const REVOKE_RATE_PER_SEC: usize = 1000;
/// How many checkpoints one raft request carries at most.
pub const CHECKPOINT_BATCH_MAX: usize = 1000;
/// etcd's default checkpoint interval.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// How long the leader waits before asking again to revoke an expired lease.
pub const DEFAULT_EXPIRED_RETRY_INTERVAL: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseError {
    /// No such lease (or the ID 0).
    NotFound,
    Exists,
    TtlTooLarge,
    /// This lessor is not the leader's.
    NotPrimary,
}

impl std::fmt::Display for LeaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LeaseError::NotFound => "lease not found",
            LeaseError::Exists => "lease already exists",
            LeaseError::TtlTooLarge => "too large lease TTL",
            LeaseError::NotPrimary => "not a primary lessor",
        })
    }
}

impl std::error::Error for LeaseError {}

#[derive(Debug, Clone)]
pub struct LessorConfig {
    /// Granted TTLs below this are raised to it (seconds).
    pub min_ttl_secs: i64,
    /// Record remaining TTLs through raft (`--experimental-enable-lease-checkpoint`).
    pub checkpointing: bool,
    pub checkpoint_interval: Duration,
    pub expired_retry_interval: Duration,
}

impl LessorConfig {
    /// etcd's minimum TTL for an election timeout and heartbeat:
    /// ⌈1.5 × election ticks × heartbeat⌉ in seconds.
    pub fn min_ttl_for(election_timeout: Duration, heartbeat: Duration) -> i64 {
        let ticks = (election_timeout.as_millis() / heartbeat.as_millis().max(1)) as u64;
        let min = heartbeat.as_millis() as u64 * ((3 * ticks) / 2);
        min.div_ceil(1000) as i64
    }
}

impl Default for LessorConfig {
    fn default() -> Self {
        LessorConfig {
            min_ttl_secs: 2,
            checkpointing: false,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            expired_retry_interval: DEFAULT_EXPIRED_RETRY_INTERVAL,
        }
    }
}

/// What is persisted for a lease (etcd's leasepb.Lease).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRecord {
    pub id: i64,
    pub ttl: i64,
    /// Remaining TTL from the last checkpoint; 0 when unset.
    pub remaining_ttl: i64,
}

/// A lease as TimeToLive reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    pub id: i64,
    pub ttl: i64,
    /// None on a non-primary lessor, where leases do not expire.
    pub remaining: Option<Duration>,
    pub keys: Vec<Vec<u8>>,
}

#[derive(Debug)]
struct Lease {
    ttl: i64,
    remaining_ttl: i64,
    /// None: forever (not primary).
    expiry: Option<Instant>,
    /// Where the lease sits in the expiry queue.
    queued: Option<Instant>,
    keys: BTreeSet<Vec<u8>>,
}

impl Lease {
    fn effective_ttl(&self) -> i64 {
        if self.remaining_ttl > 0 {
            self.remaining_ttl
        } else {
            self.ttl
        }
    }

    fn remaining(&self, now: Instant) -> Option<Duration> {
        self.expiry.map(|e| e.saturating_duration_since(now))
    }

    fn expired(&self, now: Instant) -> bool {
        self.expiry.is_some_and(|e| e <= now)
    }

    fn record(&self, id: i64) -> LeaseRecord {
        LeaseRecord {
            id,
            ttl: self.ttl,
            remaining_ttl: self.remaining_ttl,
        }
    }
}

#[derive(Default)]
struct Inner {
    leases: HashMap<i64, Lease>,
    /// key → the lease it is attached to.
    items: HashMap<Vec<u8>, i64>,
    primary: bool,
    /// The highest term this lessor was demoted at: a promotion for that term
    /// or an older one comes too late and is ignored.
    demoted_term: u64,
    /// (expiry or retry time, lease) for the primary.
    expiry_queue: BTreeSet<(Instant, i64)>,
    /// Checkpoint times, earliest first (stale entries are skipped).
    checkpoints: BinaryHeap<Reverse<(Instant, i64)>>,
}

impl Inner {
    fn requeue(&mut self, id: i64, at: Option<Instant>) {
        let Some(lease) = self.leases.get_mut(&id) else {
            return;
        };
        if let Some(old) = lease.queued.take() {
            self.expiry_queue.remove(&(old, id));
        }
        if let Some(at) = at {
            lease.queued = Some(at);
            self.expiry_queue.insert((at, id));
        }
    }

    /// Sets the lease's expiry to now + extend + its TTL and queues it.
    fn refresh(&mut self, id: i64, extend: Duration, now: Instant) {
        let Some(lease) = self.leases.get_mut(&id) else {
            return;
        };
        let expiry = now + extend + Duration::from_secs(lease.effective_ttl().max(0) as u64);
        lease.expiry = Some(expiry);
        self.requeue(id, Some(expiry));
    }

    fn schedule_checkpoint(&mut self, cfg: &LessorConfig, id: i64, now: Instant) {
        if !cfg.checkpointing || !self.primary {
            return;
        }
        if let Some(lease) = self.leases.get(&id) {
            if lease.effective_ttl() > cfg.checkpoint_interval.as_secs() as i64 {
                self.checkpoints
                    .push(Reverse((now + cfg.checkpoint_interval, id)));
            }
        }
    }
}

/// The leases of one member. `Send + Sync`; share it in an `Arc`.
pub struct Lessor {
    cfg: LessorConfig,
    inner: Mutex<Inner>,
}

impl Lessor {
    pub fn new(cfg: LessorConfig) -> Lessor {
        Lessor {
            cfg,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> &LessorConfig {
        &self.cfg
    }

    /// Replaces every lease and attachment with those recovered from the
    /// backend (start-up, or a snapshot from the leader). Leases live forever
    /// until the next promotion.
    pub fn recover(&self, records: &[LeaseRecord], attached: &[(Vec<u8>, i64)]) {
        let mut inner = self.lock();
        inner.leases.clear();
        inner.items.clear();
        inner.expiry_queue.clear();
        inner.checkpoints.clear();
        for r in records {
            inner.leases.insert(
                r.id,
                Lease {
                    ttl: r.ttl.max(self.cfg.min_ttl_secs),
                    remaining_ttl: r.remaining_ttl,
                    expiry: None,
                    queued: None,
                    keys: BTreeSet::new(),
                },
            );
        }
        for (key, id) in attached {
            if let Some(lease) = inner.leases.get_mut(id) {
                lease.keys.insert(key.clone());
                inner.items.insert(key.clone(), *id);
            }
        }
    }

    /// Applies a grant: the lease's TTL is raised to the minimum. Returns the
    /// record to persist.
    pub fn grant(&self, id: i64, ttl: i64, now: Instant) -> Result<LeaseRecord, LeaseError> {
        if id == NO_LEASE {
            return Err(LeaseError::NotFound);
        }
        if ttl > MAX_LEASE_TTL {
            return Err(LeaseError::TtlTooLarge);
        }
        let mut inner = self.lock();
        if inner.leases.contains_key(&id) {
            return Err(LeaseError::Exists);
        }
        let lease = Lease {
            ttl: ttl.max(self.cfg.min_ttl_secs),
            remaining_ttl: 0,
            expiry: None,
            queued: None,
            keys: BTreeSet::new(),
        };
        let record = lease.record(id);
        inner.leases.insert(id, lease);
        if inner.primary {
            inner.refresh(id, Duration::ZERO, now);
            inner.schedule_checkpoint(&self.cfg, id, now);
        }
        Ok(record)
    }

    /// The keys attached to lease `id`, sorted: what a revoke deletes.
    pub fn keys(&self, id: i64) -> Result<Vec<Vec<u8>>, LeaseError> {
        let inner = self.lock();
        let lease = inner.leases.get(&id).ok_or(LeaseError::NotFound)?;
        Ok(lease.keys.iter().cloned().collect())
    }

    /// Removes lease `id` and its attachments (the end of a revoke).
    pub fn remove(&self, id: i64) -> Result<(), LeaseError> {
        let mut inner = self.lock();
        inner.requeue(id, None);
        let lease = inner.leases.remove(&id).ok_or(LeaseError::NotFound)?;
        for key in lease.keys {
            if inner.items.get(&key) == Some(&id) {
                inner.items.remove(&key);
            }
        }
        Ok(())
    }

    /// Applies a checkpoint; returns the record to persist (None: no such lease).
    pub fn checkpoint(&self, id: i64, remaining_ttl: i64, now: Instant) -> Option<LeaseRecord> {
        let mut inner = self.lock();
        let lease = inner.leases.get_mut(&id)?;
        lease.remaining_ttl = remaining_ttl;
        let record = lease.record(id);
        inner.schedule_checkpoint(&self.cfg, id, now);
        Some(record)
    }

    /// A keep-alive on the primary: the lease's expiry starts over. Returns
    /// the granted TTL and whether a checkpointed remaining TTL must be
    /// cleared through raft (the full TTL applies again).
    pub fn renew(&self, id: i64, now: Instant) -> Result<(i64, bool), LeaseError> {
        let mut inner = self.lock();
        if !inner.primary {
            return Err(LeaseError::NotPrimary);
        }
        let lease = inner.leases.get_mut(&id).ok_or(LeaseError::NotFound)?;
        // Expired and waiting to be revoked: the client learns it is gone.
        if lease.expired(now) {
            return Err(LeaseError::NotFound);
        }
        let clear = self.cfg.checkpointing && lease.remaining_ttl > 0;
        lease.remaining_ttl = 0;
        let ttl = lease.ttl;
        inner.refresh(id, Duration::ZERO, now);
        Ok((ttl, clear))
    }

    pub fn lookup(&self, id: i64, now: Instant) -> Option<LeaseView> {
        let inner = self.lock();
        let lease = inner.leases.get(&id)?;
        Some(LeaseView {
            id,
            ttl: lease.ttl,
            remaining: lease.remaining(now),
            keys: lease.keys.iter().cloned().collect(),
        })
    }

    pub fn exists(&self, id: i64) -> bool {
        self.lock().leases.contains_key(&id)
    }

    /// Lease IDs, soonest expiry first (ties by ID).
    pub fn leases(&self, now: Instant) -> Vec<i64> {
        let inner = self.lock();
        let mut all: Vec<(Option<Duration>, i64)> = inner
            .leases
            .iter()
            .map(|(id, l)| (l.remaining(now), *id))
            .collect();
        // None (forever) sorts after every finite remaining time.
        all.sort_by_key(|(remaining, id)| (remaining.is_none(), *remaining, *id));
        all.into_iter().map(|(_, id)| id).collect()
    }

    pub fn len(&self) -> usize {
        self.lock().leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Attaches `key` to lease `id` (a put with a lease), detaching it from
    /// any other lease first.
    pub fn attach(&self, id: i64, key: &[u8]) -> Result<(), LeaseError> {
        let mut inner = self.lock();
        if !inner.leases.contains_key(&id) {
            return Err(LeaseError::NotFound);
        }
        if let Some(old) = inner.items.insert(key.to_vec(), id) {
            if old != id {
                if let Some(lease) = inner.leases.get_mut(&old) {
                    lease.keys.remove(key);
                }
            }
        }
        if let Some(lease) = inner.leases.get_mut(&id) {
            lease.keys.insert(key.to_vec());
        }
        Ok(())
    }

    /// Detaches `key` from its lease, if any (a delete, or a put without a
    /// lease); returns the lease it was attached to.
    pub fn detach(&self, key: &[u8]) -> Option<i64> {
        let mut inner = self.lock();
        let id = inner.items.remove(key)?;
        if let Some(lease) = inner.leases.get_mut(&id) {
            lease.keys.remove(key);
        }
        Some(id)
    }

    /// The lease `key` is attached to (NO_LEASE if none).
    pub fn lease_of(&self, key: &[u8]) -> i64 {
        self.lock().items.get(key).copied().unwrap_or(NO_LEASE)
    }

    pub fn is_primary(&self) -> bool {
        self.lock().primary
    }

    /// Becomes the primary lessor for `term`: every lease expires `extend`
    /// after its remaining TTL from now; when many leases would expire in the
    /// same second, later ones are pushed back so that revocations stay
    /// under the revoke rate (etcd's Promote). Ignored if this lessor was
    /// already demoted at `term` or later.
    pub fn promote(&self, extend: Duration, term: u64, now: Instant) {
        let mut inner = self.lock();
        if term <= inner.demoted_term {
            return;
        }
        inner.primary = true;
        let ids: Vec<i64> = inner.leases.keys().copied().collect();
        for &id in &ids {
            inner.refresh(id, extend, now);
            inner.schedule_checkpoint(&self.cfg, id, now);
        }
        if ids.len() < REVOKE_RATE_PER_SEC {
            return;
        }
        let mut by_expiry: Vec<(Duration, i64)> = ids
            .iter()
            .filter_map(|id| {
                let remaining = inner.leases.get(id)?.remaining(now)?;
                Some((remaining, *id))
            })
            .collect();
        by_expiry.sort();
        let Some(&(first, _)) = by_expiry.first() else {
            return;
        };
        let target_per_sec = (3 * REVOKE_RATE_PER_SEC) / 4;
        let mut base_window = first;
        let mut next_window = base_window + Duration::from_secs(1);
        let mut expires = 0usize;
        for (remaining, id) in by_expiry {
            if remaining > next_window {
                base_window = remaining;
                next_window = base_window + Duration::from_secs(1);
                expires = 1;
                continue;
            }
            expires += 1;
            if expires <= target_per_sec {
                continue;
            }
            let rate_delay = Duration::from_secs_f64(expires as f64 / target_per_sec as f64);
            let delay = rate_delay.saturating_sub(remaining.saturating_sub(base_window));
            next_window = base_window + delay;
            inner.refresh(id, delay + extend, now);
            inner.schedule_checkpoint(&self.cfg, id, now);
        }
    }

    /// Stops being primary (leadership lost at `term`): leases live forever
    /// until the next promotion.
    pub fn demote(&self, term: u64) {
        let mut inner = self.lock();
        inner.demoted_term = inner.demoted_term.max(term);
        if !inner.primary {
            return;
        }
        inner.primary = false;
        for lease in inner.leases.values_mut() {
            lease.expiry = None;
            lease.queued = None;
        }
        inner.expiry_queue.clear();
        inner.checkpoints.clear();
    }

    /// On the primary: up to `limit` expired leases to revoke. Each is asked
    /// for again after the retry interval if its revoke has not been applied.
    pub fn expired(&self, now: Instant, limit: usize) -> Vec<i64> {
        let mut inner = self.lock();
        let mut out = Vec::new();
        if !inner.primary {
            return out;
        }
        while out.len() < limit {
            let Some(&(at, id)) = inner.expiry_queue.first() else {
                break;
            };
            if at > now {
                break;
            }
            let expired = inner.leases.get(&id).is_some_and(|l| l.expired(now));
            if expired {
                inner.requeue(id, Some(now + self.cfg.expired_retry_interval));
                out.push(id);
            } else {
                // Renewed since it was queued, or gone: not due.
                let expiry = inner.leases.get(&id).and_then(|l| l.expiry);
                inner.requeue(id, expiry.filter(|e| *e > now));
            }
        }
        out
    }

    /// On the primary with checkpointing: up to `limit` (lease, remaining
    /// TTL in whole seconds, rounded up) checkpoints that are due.
    pub fn due_checkpoints(&self, now: Instant, limit: usize) -> Vec<(i64, i64)> {
        let mut inner = self.lock();
        let mut out = Vec::new();
        if !self.cfg.checkpointing || !inner.primary {
            return out;
        }
        while out.len() < limit {
            let Some(Reverse((at, id))) = inner.checkpoints.peek().copied() else {
                break;
            };
            if at > now {
                break;
            }
            inner.checkpoints.pop();
            let Some(lease) = inner.leases.get(&id) else {
                continue;
            };
            let Some(remaining) = lease.remaining(now).filter(|r| !r.is_zero()) else {
                continue;
            };
            let remaining_secs = remaining.as_secs_f64().ceil() as i64;
            if remaining_secs >= lease.ttl {
                continue;
            }
            out.push((id, remaining_secs));
        }
        out
    }
}

#[cfg(test)]
mod tests;
