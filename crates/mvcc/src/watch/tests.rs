use std::collections::VecDeque;

use api::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest};

use super::*;
use crate::StoreOptions;

/// A queue of `cap` messages, as a stream's channel.
struct Queue {
    cap: usize,
    items: Mutex<VecDeque<WatchMessage>>,
    closed: std::sync::atomic::AtomicBool,
}

impl Queue {
    fn new(cap: usize) -> Arc<Queue> {
        Arc::new(Queue {
            cap,
            items: Mutex::new(VecDeque::new()),
            closed: Default::default(),
        })
    }

    fn drain(&self) -> Vec<WatchMessage> {
        self.items.lock().unwrap().drain(..).collect()
    }
}

impl WatchSink for Queue {
    fn try_send(&self, msg: WatchMessage) -> TrySend {
        if self.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return TrySend::Closed;
        }
        let mut items = self.items.lock().unwrap();
        if items.len() >= self.cap {
            return TrySend::Full(msg);
        }
        items.push_back(msg);
        TrySend::Sent
    }
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db"), StoreOptions::default()).unwrap();
    (dir, store)
}

/// Applies puts (and deletes for "-key") one batch each, and notifies.
fn write(store: &Store, hub: &WatchHub, ops: &[&str]) {
    for op in ops {
        let mut wb = store.write_batch().unwrap();
        let events = if let Some(key) = op.strip_prefix('-') {
            wb.delete_range(&DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })
            .unwrap()
            .1
        } else {
            let (k, v) = op.split_once('=').unwrap();
            wb.put(&PutRequest {
                key: k.as_bytes().to_vec(),
                value: v.as_bytes().to_vec(),
                ..Default::default()
            })
            .unwrap()
            .1
        };
        let rev = wb.revision();
        wb.commit(false).unwrap();
        hub.notify(&events, rev);
    }
}

fn spec(key: &str, end: &str, start_rev: i64, watch_id: i64) -> WatchSpec {
    WatchSpec {
        key: key.as_bytes().to_vec(),
        range_end: end.as_bytes().to_vec(),
        start_rev,
        watch_id,
        no_put: false,
        no_delete: false,
    }
}

/// (watch_id, revision, type, key) of every event in `msgs`.
fn flat(msgs: &[WatchMessage]) -> Vec<(i64, i64, i32, String)> {
    let mut out = Vec::new();
    for m in msgs {
        let per_watcher: Vec<(i64, &Vec<Event>)> = match m {
            WatchMessage::Events {
                watch_id, events, ..
            } => vec![(*watch_id, events)],
            WatchMessage::Shared {
                watch_ids, events, ..
            } => watch_ids.iter().map(|id| (*id, events.as_ref())).collect(),
            _ => Vec::new(),
        };
        for (watch_id, events) in per_watcher {
            for ev in events {
                let kv = ev.kv.as_ref().unwrap();
                out.push((
                    watch_id,
                    kv.mod_revision,
                    ev.r#type,
                    String::from_utf8_lossy(&kv.key).into_owned(),
                ));
            }
        }
    }
    out
}

fn without_created(msgs: Vec<WatchMessage>) -> Vec<WatchMessage> {
    msgs.into_iter()
        .filter(|m| !matches!(m, WatchMessage::Created { .. }))
        .collect()
}

#[test]
fn created_comes_first_even_when_the_queue_is_full() {
    let (_d, store) = open();
    let hub = WatchHub::new(store.current_revision());
    let q = Queue::new(1);
    hub.watch(1, spec("k", "", 0, 1), q.clone());
    // The queue holds the first watcher's "created"; the second's waits.
    hub.watch(1, spec("k", "", 0, 2), q.clone());
    write(&store, &hub, &["k=1"]);
    let mut got = Vec::new();
    for _ in 0..20 {
        got.extend(q.drain());
        hub.sync_round(&store);
    }
    got.extend(q.drain());
    let firsts: Vec<&WatchMessage> = [1, 2]
        .iter()
        .filter_map(|id| {
            got.iter().find(|m| match m {
                WatchMessage::Created { watch_id, .. } | WatchMessage::Events { watch_id, .. } => {
                    watch_id == id
                }
                _ => false,
            })
        })
        .collect();
    assert!(
        firsts
            .iter()
            .all(|m| matches!(m, WatchMessage::Created { revision: 1, .. })),
        "{got:?}"
    );
    assert_eq!(flat(&got).len(), 2, "both watchers get the event: {got:?}");
}

#[test]
fn catch_up_messages_cover_at_most_1000_revisions() {
    let (_d, store) = open();
    let hub = WatchHub::new(store.current_revision());
    let ops: Vec<String> = (0..2500).map(|i| format!("k={i}")).collect();
    let ops: Vec<&str> = ops.iter().map(String::as_str).collect();
    write(&store, &hub, &ops);
    let q = Queue::new(10_000);
    hub.watch(1, spec("k", "", 1, 1), q.clone());
    while hub.sync_round(&store) {}
    let msgs = without_created(q.drain());
    let mut last = 1;
    for m in &msgs {
        if let WatchMessage::Events { events, .. } = m {
            let first = events.first().unwrap().kv.as_ref().unwrap().mod_revision;
            let end = events.last().unwrap().kv.as_ref().unwrap().mod_revision;
            assert!(end - first < 1000, "{first}..{end}");
            assert_eq!(first, last + 1);
            last = end;
        }
    }
    assert_eq!(last, 2501);
}

#[test]
fn synced_watchers_get_matching_events() {
    let (_d, store) = open();
    let hub = WatchHub::new(store.current_revision());
    let q = Queue::new(100);
    hub.watch(1, spec("a", "", 0, 10), q.clone());
    hub.watch(1, spec("b", "c", 0, 11), q.clone());
    hub.watch(1, spec("", "\0", 0, 12), q.clone());
    write(&store, &hub, &["a=1", "b1=2", "c=3", "-a"]);
    let got = flat(&q.drain());
    let put = EventType::Put as i32;
    let del = EventType::Delete as i32;
    let mut expected = vec![
        (10, 2, put, "a".to_string()),
        (12, 2, put, "a".into()),
        (11, 3, put, "b1".into()),
        (12, 3, put, "b1".into()),
        (12, 4, put, "c".into()),
        (10, 5, del, "a".into()),
        (12, 5, del, "a".into()),
    ];
    let mut got_sorted = got.clone();
    got_sorted.sort_by_key(|e| (e.1, e.0));
    expected.sort_by_key(|e| (e.1, e.0));
    assert_eq!(got_sorted, expected);
}

#[test]
fn history_then_live_without_gaps_or_duplicates() {
    let (_d, store) = open();
    let hub = WatchHub::new(store.current_revision());
    write(&store, &hub, &["k=1", "k=2", "k=3"]);
    let q = Queue::new(100);
    hub.watch(1, spec("k", "", 2, 1), q.clone());
    // A write lands before the catch-up runs.
    write(&store, &hub, &["k=4"]);
    while hub.sync_round(&store) {}
    write(&store, &hub, &["k=5"]);
    let revs: Vec<i64> = flat(&q.drain()).iter().map(|e| e.1).collect();
    assert_eq!(revs, vec![2, 3, 4, 5, 6]);
}

#[test]
fn slow_watchers_become_victims_and_recover_everything() {
    let (_d, store) = open();
    let hub = WatchHub::new(store.current_revision());
    let slow = Queue::new(2);
    let fast = Queue::new(1000);
    hub.watch(1, spec("k", "", 0, 1), slow.clone());
    hub.watch(2, spec("k", "", 0, 1), fast.clone());
    let mut received = Vec::new();
    for i in 0..50 {
        write(&store, &hub, &[&format!("k={i}")]);
        if i % 10 == 9 {
            received.extend(slow.drain());
            hub.sync_round(&store);
        }
    }
    for _ in 0..100 {
        received.extend(slow.drain());
        if !hub.sync_round(&store) && slow.items.lock().unwrap().is_empty() {
            break;
        }
    }
    received.extend(slow.drain());
    let revs: Vec<i64> = flat(&received).iter().map(|e| e.1).collect();
    assert_eq!(revs, (2..=51).collect::<Vec<_>>(), "slow watcher");
    let fast_revs: Vec<i64> = flat(&fast.drain()).iter().map(|e| e.1).collect();
    assert_eq!(fast_revs, (2..=51).collect::<Vec<_>>(), "fast watcher");
}

#[test]
fn compacted_history_cancels_the_watcher() {
    let (_d, store) = open();
    let hub = WatchHub::new(store.current_revision());
    write(&store, &hub, &["k=1", "k=2", "k=3", "k=4"]);
    let mut wb = store.write_batch().unwrap();
    wb.compact(&CompactionRequest {
        revision: 4,
        physical: false,
    })
    .unwrap();
    wb.commit(true).unwrap();
    let q = Queue::new(10);
    let id = hub.watch(1, spec("k", "", 2, 7), q.clone());
    hub.sync_round(&store);
    assert_eq!(
        without_created(q.drain()),
        vec![WatchMessage::Compacted {
            watch_id: 7,
            compact_revision: 4
        }]
    );
    assert!(!hub.cancel(id), "the watcher is gone");
    // From the compaction revision on is fine.
    hub.watch(1, spec("k", "", 4, 8), q.clone());
    while hub.sync_round(&store) {}
    assert_eq!(
        flat(&q.drain()).iter().map(|e| e.1).collect::<Vec<_>>(),
        vec![4, 5]
    );
}

#[test]
fn progress_waits_for_unsynced_watchers() {
    let (_d, store) = open();
    let hub = WatchHub::new(store.current_revision());
    write(&store, &hub, &["k=1", "k=2"]);
    let q = Queue::new(100);
    hub.watch(1, spec("k", "", 2, 1), q.clone());
    hub.request_progress(1, q.clone());
    assert!(
        without_created(q.drain()).is_empty(),
        "no progress before the catch-up"
    );
    while hub.sync_round(&store) {}
    let msgs = q.drain();
    assert!(
        matches!(
            msgs.last(),
            Some(WatchMessage::Progress {
                watch_id: -1,
                revision: 3
            })
        ),
        "{msgs:?}"
    );
    assert_eq!(
        flat(&msgs).iter().map(|e| e.1).collect::<Vec<_>>(),
        vec![2, 3]
    );
}

#[test]
fn filters_and_closed_streams() {
    let (_d, store) = open();
    let hub = WatchHub::new(store.current_revision());
    let q = Queue::new(100);
    let mut no_put = spec("k", "", 0, 1);
    no_put.no_put = true;
    hub.watch(1, no_put, q.clone());
    let gone = Queue::new(100);
    hub.watch(2, spec("k", "", 0, 1), gone.clone());
    gone.closed
        .store(true, std::sync::atomic::Ordering::Relaxed);
    write(&store, &hub, &["k=1", "-k"]);
    let got = flat(&q.drain());
    assert_eq!(got, vec![(1, 3, EventType::Delete as i32, "k".to_string())]);
    assert_eq!(hub.len(), 1, "the closed stream's watcher is removed");
}
