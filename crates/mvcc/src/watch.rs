//! The watchable store's hub: which watchers want which changes, and who
//! is up to date.
//!
//! Watchers come in three groups, as in etcd:
//!
//! - **synced**: they have every event up to the last notified revision;
//!   [`WatchHub::notify`] (the applier, after each commit) hands them the
//!   new events at once;
//! - **unsynced**: they still need history (a start revision in the past,
//!   or a victim that caught up on its queue); [`WatchHub::sync_round`] (a
//!   background thread) reads the history from the backend in bounded
//!   chunks and moves them to synced when they reach the head;
//! - **victims**: their stream's queue was full; they keep the one message
//!   that did not fit and receive nothing else until it is delivered, then
//!   catch up as unsynced.
//!
//! Nothing here blocks on a consumer: delivery is a non-blocking
//! [`WatchSink::try_send`], so a slow watcher never stalls the applier or
//! other watchers, and the memory a slow watcher holds is one message.
//!
//! Guarantees (each watcher): events in revision order, none twice, none
//! missing from its start revision on — or a [`WatchMessage::Compacted`]
//! that ends the watcher when the history it needs is compacted. Every
//! watcher tracks `next_rev`, the lowest revision it still needs; a message
//! always covers revisions `next_rev..=r` and moves `next_rev` to `r + 1`.
//! A progress message for a stream is sent only when all its watchers are
//! synced, after everything notified so far, so it never claims a revision
//! whose events are still on their way.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use api::mvccpb::event::EventType;
use api::mvccpb::Event;

use crate::{Error, Store};

/// Identifies a watcher in the hub (unique per hub).
pub type WatcherId = u64;

/// What the hub sends into a stream's queue.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchMessage {
    /// The watcher exists: it receives every event from `revision + 1` (or
    /// its start revision) on. Always its first message.
    Created { watch_id: i64, revision: i64 },
    /// Events for one watcher, in revision order, bringing it up to `revision`.
    Events {
        watch_id: i64,
        events: Vec<Event>,
        revision: i64,
    },
    /// The same events for several watchers of one stream (the live
    /// fan-out of a write: one queue item per stream, not per watcher).
    Shared {
        watch_ids: Vec<i64>,
        events: Arc<Vec<Event>>,
        revision: i64,
    },
    /// The history the watcher needs is compacted: the watcher is gone.
    Compacted {
        watch_id: i64,
        compact_revision: i64,
    },
    /// Every event up to `revision` has been sent to `watch_id` (-1: to
    /// every watcher of the stream).
    Progress { watch_id: i64, revision: i64 },
}

/// The outcome of a non-blocking send.
pub enum TrySend {
    Sent,
    /// The queue is full; the message comes back.
    Full(WatchMessage),
    /// The stream is gone.
    Closed,
}

/// A stream's queue, as the hub sees it.
pub trait WatchSink: Send + Sync {
    fn try_send(&self, msg: WatchMessage) -> TrySend;
}

/// What a new watcher wants.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    pub key: Vec<u8>,
    /// Empty: `key` alone; `[0]`: every key from `key` on; else `[key, range_end)`.
    pub range_end: Vec<u8>,
    /// The first revision to deliver; 0 or less: the one after the
    /// revision the watcher is created at.
    pub start_rev: i64,
    /// The stream's own ID for this watcher.
    pub watch_id: i64,
    pub no_put: bool,
    pub no_delete: bool,
}

impl WatchSpec {
    fn contains(&self, key: &[u8]) -> bool {
        if self.range_end.is_empty() {
            return key == self.key.as_slice();
        }
        key >= self.key.as_slice() && (self.range_end == [0] || key < self.range_end.as_slice())
    }

    fn wants(&self, ev: &Event) -> bool {
        let Some(kv) = &ev.kv else { return false };
        if ev.r#type == EventType::Put as i32 {
            if self.no_put {
                return false;
            }
        } else if self.no_delete {
            return false;
        }
        self.contains(&kv.key)
    }
}

fn event_rev(ev: &Event) -> i64 {
    ev.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Synced,
    Unsynced,
    Victim,
}

struct Watcher {
    stream: u64,
    spec: WatchSpec,
    next_rev: i64,
    group: Group,
    /// A victim's message that did not fit.
    pending: Option<WatchMessage>,
    sink: Arc<dyn WatchSink>,
}

#[derive(Default)]
struct Inner {
    next_id: WatcherId,
    watchers: HashMap<WatcherId, Watcher>,
    /// Synced single-key watchers by key.
    by_key: HashMap<Vec<u8>, Vec<WatcherId>>,
    /// Synced range watchers.
    ranges: BTreeSet<WatcherId>,
    unsynced: BTreeSet<WatcherId>,
    victims: BTreeSet<WatcherId>,
    /// Streams waiting for a progress message, with their queue.
    progress_pending: HashMap<u64, Arc<dyn WatchSink>>,
    /// The last revision handed to synced watchers.
    notified_rev: i64,
}

impl Inner {
    fn add_synced(&mut self, id: WatcherId) {
        let Some(w) = self.watchers.get_mut(&id) else {
            return;
        };
        w.group = Group::Synced;
        if w.spec.range_end.is_empty() {
            self.by_key.entry(w.spec.key.clone()).or_default().push(id);
        } else {
            self.ranges.insert(id);
        }
    }

    fn remove_from_group(&mut self, id: WatcherId) {
        let Some(w) = self.watchers.get(&id) else {
            return;
        };
        match w.group {
            Group::Synced => {
                if w.spec.range_end.is_empty() {
                    if let Some(ids) = self.by_key.get_mut(&w.spec.key) {
                        ids.retain(|x| *x != id);
                        if ids.is_empty() {
                            self.by_key.remove(&w.spec.key);
                        }
                    }
                } else {
                    self.ranges.remove(&id);
                }
            }
            Group::Unsynced => {
                self.unsynced.remove(&id);
            }
            Group::Victim => {
                self.victims.remove(&id);
            }
        }
    }

    fn remove(&mut self, id: WatcherId) -> Option<Watcher> {
        self.remove_from_group(id);
        self.watchers.remove(&id)
    }

    fn move_to(&mut self, id: WatcherId, group: Group) {
        self.remove_from_group(id);
        match group {
            Group::Synced => self.add_synced(id),
            Group::Unsynced => {
                if let Some(w) = self.watchers.get_mut(&id) {
                    w.group = Group::Unsynced;
                    self.unsynced.insert(id);
                }
            }
            Group::Victim => {
                if let Some(w) = self.watchers.get_mut(&id) {
                    w.group = Group::Victim;
                    self.victims.insert(id);
                }
            }
        }
    }

    /// Sends `msg` to watcher `id`, which covers revisions up to `upto`:
    /// a full queue makes it a victim, a closed one removes it.
    fn deliver(&mut self, id: WatcherId, msg: WatchMessage, upto: i64) {
        let Some(w) = self.watchers.get_mut(&id) else {
            return;
        };
        w.next_rev = upto + 1;
        match w.sink.try_send(msg) {
            TrySend::Sent => {}
            TrySend::Full(msg) => {
                w.pending = Some(msg);
                self.move_to(id, Group::Victim);
            }
            TrySend::Closed => {
                self.remove(id);
            }
        }
    }

    /// The synced watchers that want `ev` (and have not passed its revision).
    fn matching<'a>(&'a self, ev: &'a Event) -> impl Iterator<Item = (WatcherId, &'a Watcher)> {
        let kv = ev.kv.as_ref();
        let rev = kv.map_or(0, |kv| kv.mod_revision);
        let exact = kv
            .and_then(|kv| self.by_key.get(&kv.key))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        exact
            .iter()
            .chain(self.ranges.iter())
            .filter_map(|id| self.watchers.get(id).map(|w| (*id, w)))
            .filter(move |(_, w)| rev >= w.next_rev && w.spec.wants(ev))
    }

    fn stream_synced(&self, stream: u64) -> bool {
        self.watchers
            .values()
            .all(|w| w.stream != stream || w.group == Group::Synced)
    }

    /// Sends the progress messages streams asked for, once all their
    /// watchers are synced.
    fn flush_progress(&mut self) {
        if self.progress_pending.is_empty() {
            return;
        }
        let streams: Vec<u64> = self.progress_pending.keys().copied().collect();
        for stream in streams {
            if !self.stream_synced(stream) {
                continue;
            }
            let Some(sink) = self.progress_pending.remove(&stream) else {
                continue;
            };
            let msg = WatchMessage::Progress {
                watch_id: -1,
                revision: self.notified_rev,
            };
            if let TrySend::Full(_) = sink.try_send(msg) {
                self.progress_pending.insert(stream, sink);
            }
        }
    }
}

/// The live fan-out of a single event: one shared message per stream whose
/// watchers want it. A full queue makes each of those watchers a victim
/// holding its own copy.
fn notify_one(inner: &mut Inner, ev: &Event, revision: i64) {
    struct StreamBatch {
        stream: u64,
        sink: Arc<dyn WatchSink>,
        ids: Vec<WatcherId>,
        watch_ids: Vec<i64>,
    }
    let mut groups: Vec<StreamBatch> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::new();
    for (id, w) in inner.matching(ev) {
        // Watchers of a stream are mostly adjacent: try the last group first.
        let at = match groups.last() {
            Some(g) if g.stream == w.stream => groups.len() - 1,
            _ => *index.entry(w.stream).or_insert_with(|| {
                groups.push(StreamBatch {
                    stream: w.stream,
                    sink: w.sink.clone(),
                    ids: Vec::new(),
                    watch_ids: Vec::new(),
                });
                groups.len() - 1
            }),
        };
        groups[at].ids.push(id);
        groups[at].watch_ids.push(w.spec.watch_id);
    }
    if groups.is_empty() {
        return;
    }
    let shared = Arc::new(vec![ev.clone()]);
    for g in groups {
        let msg = WatchMessage::Shared {
            watch_ids: g.watch_ids,
            events: shared.clone(),
            revision,
        };
        match g.sink.try_send(msg) {
            TrySend::Sent => {}
            TrySend::Full(_) => {
                for id in g.ids {
                    let Some(w) = inner.watchers.get_mut(&id) else {
                        continue;
                    };
                    w.pending = Some(WatchMessage::Events {
                        watch_id: w.spec.watch_id,
                        events: shared.as_ref().clone(),
                        revision,
                    });
                    w.next_rev = revision + 1;
                    inner.move_to(id, Group::Victim);
                }
            }
            TrySend::Closed => {
                for id in g.ids {
                    inner.remove(id);
                }
            }
        }
    }
}

/// Events a catch-up reads per round at most (cut at a revision boundary).
const SYNC_EVENTS_PER_ROUND: usize = 10_000;
/// Distinct revisions one catch-up message covers at most (etcd's
/// watchBatchMaxRevs), so that a response stays within clients' limits.
const SYNC_REVISIONS_PER_ROUND: i64 = 1000;
/// Unsynced watchers served per round at most (etcd: 512).
const SYNC_WATCHERS_PER_ROUND: usize = 512;
/// A catch-up this close to the head finishes under the lock.
const SYNC_FINISH_UNDER_LOCK_REVS: i64 = 256;

/// The watchers of one store. `Send + Sync`; share it in an `Arc`.
pub struct WatchHub {
    inner: Mutex<Inner>,
    /// Wakes the sync thread when there is catching up to do.
    work: Condvar,
}

impl WatchHub {
    /// A hub whose synced watchers start after `current_rev`.
    pub fn new(current_rev: i64) -> WatchHub {
        WatchHub {
            inner: Mutex::new(Inner {
                notified_rev: current_rev,
                ..Inner::default()
            }),
            work: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last revision synced watchers have been notified of.
    pub fn notified_rev(&self) -> i64 {
        self.lock().notified_rev
    }

    /// Registers a watcher of `stream`; it delivers into `sink`, starting
    /// with [`WatchMessage::Created`] (sent under the hub's lock, so nothing
    /// of the watcher — nor a progress message that counts it — can precede
    /// it). A start revision at or below the notified revision needs history:
    /// the watcher starts unsynced.
    pub fn watch(&self, stream: u64, spec: WatchSpec, sink: Arc<dyn WatchSink>) -> WatcherId {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.next_id += 1;
        let id = inner.next_id;
        let next_rev = if spec.start_rev > 0 {
            spec.start_rev
        } else {
            inner.notified_rev + 1
        };
        let synced = next_rev > inner.notified_rev;
        let created = WatchMessage::Created {
            watch_id: spec.watch_id,
            revision: inner.notified_rev,
        };
        let (pending, closed) = match sink.try_send(created) {
            TrySend::Sent => (None, false),
            TrySend::Full(msg) => (Some(msg), false),
            TrySend::Closed => (None, true),
        };
        if closed {
            return id;
        }
        let victim = pending.is_some();
        inner.watchers.insert(
            id,
            Watcher {
                stream,
                spec,
                next_rev,
                group: Group::Unsynced,
                pending,
                sink,
            },
        );
        if victim {
            inner.move_to(id, Group::Victim);
            self.work.notify_one();
        } else if synced {
            inner.add_synced(id);
        } else {
            inner.unsynced.insert(id);
            self.work.notify_one();
        }
        id
    }

    /// Removes a watcher; false if it was already gone (e.g. compacted).
    pub fn cancel(&self, id: WatcherId) -> bool {
        self.lock().remove(id).is_some()
    }

    /// Removes every watcher of `stream` (the stream ended).
    pub fn cancel_stream(&self, stream: u64) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let ids: Vec<WatcherId> = inner
            .watchers
            .iter()
            .filter(|(_, w)| w.stream == stream)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            inner.remove(id);
        }
        inner.progress_pending.remove(&stream);
    }

    /// Number of watchers (all groups).
    pub fn len(&self) -> usize {
        self.lock().watchers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hands the events of one committed batch (revision order, ending at
    /// `revision`) to the synced watchers that want them.
    pub fn notify(&self, events: &[Event], revision: i64) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        if revision <= inner.notified_rev {
            return;
        }
        if !events.is_empty() && !inner.watchers.is_empty() {
            if events.len() == 1 {
                notify_one(inner, &events[0], revision);
                inner.notified_rev = revision;
                inner.flush_progress();
                return;
            }
            // Per watcher, in the order watchers first match.
            let mut per_watcher: Vec<(WatcherId, Vec<Event>)> = Vec::new();
            let mut slot: HashMap<WatcherId, usize> = HashMap::new();
            for ev in events {
                for (id, _) in inner.matching(ev) {
                    let at = *slot.entry(id).or_insert_with(|| {
                        per_watcher.push((id, Vec::new()));
                        per_watcher.len() - 1
                    });
                    per_watcher[at].1.push(ev.clone());
                }
            }
            for (id, events) in per_watcher {
                let Some(w) = inner.watchers.get(&id) else {
                    continue;
                };
                let msg = WatchMessage::Events {
                    watch_id: w.spec.watch_id,
                    events,
                    revision,
                };
                inner.deliver(id, msg, revision);
            }
        }
        inner.notified_rev = revision;
        inner.flush_progress();
    }

    /// The backend was replaced (a snapshot from the leader) at `revision`:
    /// every watcher catches up from the new backend (or learns its history
    /// is compacted).
    pub fn restored(&self, revision: i64) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let next = inner.notified_rev + 1;
        let synced: Vec<WatcherId> = inner
            .watchers
            .iter()
            .filter(|(_, w)| w.group == Group::Synced)
            .map(|(id, _)| *id)
            .collect();
        for id in synced {
            if let Some(w) = inner.watchers.get_mut(&id) {
                w.next_rev = w.next_rev.max(next);
            }
            inner.move_to(id, Group::Unsynced);
        }
        inner.notified_rev = revision;
        self.work.notify_one();
    }

    /// Asks for a progress message on `stream` (WatchProgressRequest): sent
    /// now if all its watchers are synced, else once they are.
    pub fn request_progress(&self, stream: u64, sink: Arc<dyn WatchSink>) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.progress_pending.insert(stream, sink);
        inner.flush_progress();
    }

    /// A progress notification for one watcher (progress_notify), if it is
    /// synced: every event up to the notified revision has been sent to it.
    pub fn watcher_progress(&self, id: WatcherId) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let revision = inner.notified_rev;
        let Some(w) = inner.watchers.get(&id) else {
            return;
        };
        if w.group != Group::Synced {
            return;
        }
        let msg = WatchMessage::Progress {
            watch_id: w.spec.watch_id,
            revision,
        };
        let _ = w.sink.try_send(msg);
    }

    /// Waits (at most `timeout`) until there may be catching up to do.
    pub fn wait_for_work(&self, timeout: Duration) {
        let inner = self.lock();
        if !inner.unsynced.is_empty() || !inner.victims.is_empty() {
            return;
        }
        let _ = self.work.wait_timeout(inner, timeout);
    }

    /// One round of catching up: victims retry their pending message, then
    /// up to 512 unsynced watchers read history from `store`. Returns
    /// whether work is left.
    pub fn sync_round(&self, store: &Store) -> bool {
        self.retry_victims();
        // Who needs what, taken under the lock; the backend is read without it.
        let (wanted, target) = {
            let guard = self.lock();
            let inner = &*guard;
            let wanted: Vec<(WatcherId, i64)> = inner
                .unsynced
                .iter()
                .take(SYNC_WATCHERS_PER_ROUND)
                .filter_map(|id| inner.watchers.get(id).map(|w| (*id, w.next_rev)))
                .collect();
            (wanted, inner.notified_rev)
        };
        if wanted.is_empty() {
            let guard = self.lock();
            let inner = &*guard;
            return !inner.victims.is_empty();
        }
        let compact_rev = store.compact_revision();
        let from = wanted
            .iter()
            .map(|(_, rev)| *rev)
            .min()
            .unwrap_or(target + 1);
        let read = if from < compact_rev {
            Err(Error::Compacted)
        } else {
            let to = target.min(from.saturating_add(SYNC_REVISIONS_PER_ROUND - 1));
            store.events(from, to, SYNC_EVENTS_PER_ROUND)
        };
        let mut guard = self.lock();
        let inner = &mut *guard;
        let (events, upto) = match read {
            Ok(read) => read,
            Err(Error::Compacted) => {
                // Those below the compaction end; the others try next round.
                for (id, next_rev) in &wanted {
                    if *next_rev < compact_rev {
                        if let Some(w) = inner.remove(*id) {
                            let _ = w.sink.try_send(WatchMessage::Compacted {
                                watch_id: w.spec.watch_id,
                                compact_revision: compact_rev,
                            });
                        }
                    }
                }
                return true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "watch catch-up cannot read the backend");
                return true;
            }
        };
        // Close to the head: read the rest while holding the lock, so that no
        // notify slips in between and the watchers can join the synced group.
        let mut events = events;
        let mut upto = upto;
        let head = inner.notified_rev;
        if upto == target
            && head > upto
            && head - upto <= SYNC_FINISH_UNDER_LOCK_REVS
            && upto - from + 1 + (head - upto) <= SYNC_REVISIONS_PER_ROUND
        {
            match store.events(upto + 1, head, usize::MAX) {
                Ok((more, more_upto)) => {
                    events.extend(more);
                    upto = more_upto;
                }
                Err(e) => tracing::warn!(error = %e, "watch catch-up cannot read the backend"),
            }
        }
        for (id, next_rev) in wanted {
            let Some(w) = inner.watchers.get(&id) else {
                continue;
            };
            if w.group != Group::Unsynced || w.next_rev != next_rev {
                continue;
            }
            let mine: Vec<Event> = events
                .iter()
                .filter(|ev| event_rev(ev) >= next_rev && w.spec.wants(ev))
                .cloned()
                .collect();
            if !mine.is_empty() {
                let msg = WatchMessage::Events {
                    watch_id: w.spec.watch_id,
                    events: mine,
                    revision: upto,
                };
                inner.deliver(id, msg, upto);
            } else if let Some(w) = inner.watchers.get_mut(&id) {
                w.next_rev = w.next_rev.max(upto + 1);
            }
            let caught_up = inner
                .watchers
                .get(&id)
                .is_some_and(|w| w.group == Group::Unsynced && w.next_rev > inner.notified_rev);
            if caught_up {
                inner.move_to(id, Group::Synced);
            }
        }
        inner.flush_progress();
        !inner.unsynced.is_empty() || !inner.victims.is_empty()
    }

    /// Victims whose pending message now fits go back to catching up.
    fn retry_victims(&self) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let victims: Vec<WatcherId> = inner.victims.iter().copied().collect();
        for id in victims {
            let Some(w) = inner.watchers.get_mut(&id) else {
                continue;
            };
            let Some(msg) = w.pending.take() else {
                inner.move_to(id, Group::Unsynced);
                continue;
            };
            match w.sink.try_send(msg) {
                TrySend::Sent => {
                    let synced = w.next_rev > inner.notified_rev;
                    inner.move_to(
                        id,
                        if synced {
                            Group::Synced
                        } else {
                            Group::Unsynced
                        },
                    );
                }
                TrySend::Full(msg) => w.pending = Some(msg),
                TrySend::Closed => {
                    inner.remove(id);
                }
            }
        }
        inner.flush_progress();
    }
}

#[cfg(test)]
mod tests;
