//! etcd's watch guarantees, checked against the true write history.
//!
//! A reusable checker ([`check_logs`]) takes
//! - the true history ([`History`]): every event of every revision, with the
//!   previous version of each key. On one member it is built from the
//!   acknowledged writes alone (each write's response revision, replayed
//!   through a model of the key space, which also checks every response's
//!   `deleted` count and `prev_kv`), and cross-checked against a fresh watch
//!   over the whole key space from the first revision still available; on a
//!   cluster (where a write can fail without its outcome being known) it is
//!   the fresh watch from revision 1, every revision of which must be
//!   explained by exactly one attempted write (acknowledged ones at their
//!   revision), identical on every member;
//! - what every watch stream received ([`StreamLog`]): all its responses in
//!   arrival order (created, canceled, events, progress), per connection
//!   ("segment"), with what each watcher asked for, and how watchers were
//!   resumed ("chains": cancelled and re-created from the last received
//!   revision + 1, or re-created on another member after the stream broke,
//!   or from the compaction revision after a compaction cancelled them).
//!
//! and checks, per watcher (start revision S, key range, filters):
//! - ordered: event revisions never decrease, and within a revision the
//!   events come in the order of the write;
//! - unique: no (revision, key) twice;
//! - reliable: what it received is exactly a prefix of the history's events
//!   from S in its range (no gaps, nothing extra, same contents: value,
//!   create/mod revision, version); and at the end of every test each live
//!   watcher is drained (a WatchProgressRequest answered at or past the
//!   final revision) so the prefix is all of it;
//! - atomic: a response holds whole revisions (never part of a txn's events)
//!   unless the watcher asked for fragments;
//! - progress: a progress notification (no events, not created/canceled:
//!   WatchProgressRequest answers to the whole stream, `progress_notify`
//!   ticks to one watcher) at revision H arrives only after every event <= H
//!   of the watcher's range; no response claims a revision past the history;
//! - resumable: the concatenation of a chain's watchers is itself a prefix
//!   of the history from the chain's start (each resumed at the right
//!   revision);
//! - compaction: a watcher cancelled with compact_revision C was told of
//!   nothing at or past C, C is a compaction that happened, and what it got
//!   before is gap-free; a watcher created after a compaction at C with a
//!   start below C must be cancelled that way without any event;
//! - prev_kv: equal to the key's previous version in the history (absent
//!   only for a new key, or if that revision was compacted), and absent for
//!   watchers that did not ask for it.
//!
//! Tests: the checker on injected faults (no server); concurrent writers with
//! many watchers (history replay, restarts, progress requests, filters,
//! fragments); compaction while old watchers lag; a consumer that stops
//! reading for 2 s; a 3-member cluster through a leader kill -9, a restart
//! and a partition healed by a snapshot; progress requests racing watcher
//! creation. Every loop and wait is bounded. Randomness is seeded
//! (`ETCD_RS_WATCH_SEED=<u64>` replays a run). Tests run one at a time.
//! `ETCD_RS_OURS_BIN=<etcd>` runs the single-member tests against another
//! etcd (etcd 3.5.1 answers progress requests before the events they claim:
//! etcd-io/etcd#15220, which the progress check reports).

mod cluster_support;
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_support::Cluster;
use common::{EtcdProcess, Kind, Rng};
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse, WatchFilterType, WatchOptions,
    WatchRequestSender, WatchResponse, WatchResponseStream,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt;

/// Largest watch response the clients accept (a catch-up response holds
/// many revisions; etcd's own client accepts up to 2 GiB).
const MAX_MESSAGE: usize = 256 << 20;
/// Bound on draining one stream at the end of a test.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Violations shown in a failure message.
const SHOWN_VIOLATIONS: usize = 40;

static HEAVY: Mutex<()> = Mutex::new(());

fn heavy_lock() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn test_seed(test: &str) -> u64 {
    common::test_seed("ETCD_RS_WATCH_SEED", test)
}

// ---------------------------------------------------------------------------
// Keys, key-value pairs, events.

/// A key range as etcd encodes it: `end` empty is `key` alone, `[0]` is
/// every key from `key` on, else `[key, end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Range {
    key: Vec<u8>,
    end: Vec<u8>,
}

impl Range {
    fn key(key: &str) -> Range {
        Range {
            key: key.into(),
            end: Vec::new(),
        }
    }

    fn prefix(prefix: &str) -> Range {
        let key = prefix.as_bytes().to_vec();
        let mut end = key.clone();
        *end.last_mut().expect("a non-empty prefix") += 1;
        Range { key, end }
    }

    fn between(from: &str, to: &str) -> Range {
        Range {
            key: from.into(),
            end: to.into(),
        }
    }

    fn from_key(key: &str) -> Range {
        Range {
            key: key.into(),
            end: vec![0],
        }
    }

    fn all() -> Range {
        Range {
            key: vec![0],
            end: vec![0],
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        if self.end.is_empty() {
            key == self.key.as_slice()
        } else if self.end == [0] {
            key >= self.key.as_slice()
        } else {
            key >= self.key.as_slice() && key < self.end.as_slice()
        }
    }

    fn describe(&self) -> String {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if self.end.is_empty() {
            format!("key {}", text(&self.key))
        } else if self.key == [0] && self.end == [0] {
            "all keys".to_string()
        } else if self.end == [0] {
            format!("keys >= {}", text(&self.key))
        } else {
            format!("[{}, {})", text(&self.key), text(&self.end))
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Kv {
    key: Vec<u8>,
    value: Vec<u8>,
    create: i64,
    modr: i64,
    version: i64,
    lease: i64,
}

impl Kv {
    fn of(kv: &etcd_client::KeyValue) -> Kv {
        Kv {
            key: kv.key().to_vec(),
            value: kv.value().to_vec(),
            create: kv.create_revision(),
            modr: kv.mod_revision(),
            version: kv.version(),
            lease: kv.lease(),
        }
    }

    fn show(&self) -> String {
        let mut value = String::from_utf8_lossy(&self.value).into_owned();
        if value.len() > 16 {
            value.truncate(16);
            value.push('…');
        }
        format!(
            "{}={value:?} (create {} mod {} version {}{})",
            String::from_utf8_lossy(&self.key),
            self.create,
            self.modr,
            self.version,
            if self.lease != 0 {
                format!(" lease {}", self.lease)
            } else {
                String::new()
            }
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Ev {
    put: bool,
    kv: Kv,
    prev: Option<Kv>,
}

impl Ev {
    fn of(e: &etcd_client::Event) -> Ev {
        let kv = e.kv().map(Kv::of).unwrap_or(Kv {
            key: b"<event without kv>".to_vec(),
            value: Vec::new(),
            create: 0,
            modr: -1,
            version: 0,
            lease: 0,
        });
        Ev {
            put: matches!(e.event_type(), EventType::Put),
            kv,
            prev: e.prev_kv().map(Kv::of),
        }
    }

    fn rev(&self) -> i64 {
        self.kv.modr
    }

    fn same_change(&self, other: &Ev) -> bool {
        self.put == other.put && self.kv == other.kv
    }

    fn show(&self) -> String {
        if self.put {
            format!("rev {} PUT {}", self.rev(), self.kv.show())
        } else {
            format!(
                "rev {} DELETE {}{}",
                self.rev(),
                String::from_utf8_lossy(&self.kv.key),
                if self.kv.value.is_empty() && self.kv.create == 0 && self.kv.version == 0 {
                    String::new()
                } else {
                    format!(" ({})", self.kv.show())
                }
            )
        }
    }
}

fn show_prev(prev: &Option<Kv>) -> String {
    prev.as_ref().map_or("none".to_string(), Kv::show)
}

// ---------------------------------------------------------------------------
// Writes and the model that turns them into events.

#[derive(Clone, Debug)]
enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        prev_kv: bool,
    },
    Del {
        range: Range,
        prev_kv: bool,
    },
}

/// One request a writer sends.
#[derive(Clone, Debug)]
enum Req {
    Single(Op),
    /// `if version(cmp) > 0 then … else …`
    Txn {
        cmp: String,
        then: Vec<Op>,
        els: Vec<Op>,
    },
}

impl Req {
    fn branches(&self) -> Vec<Vec<Op>> {
        match self {
            Req::Single(op) => vec![vec![op.clone()]],
            Req::Txn { then, els, .. } => vec![then.clone(), els.clone()],
        }
    }

    fn is_plain_put(&self) -> bool {
        matches!(self, Req::Single(Op::Put { .. }))
    }
}

/// What the server answered for one operation.
#[derive(Clone, Debug)]
enum OpResult {
    Put {
        prev: Option<Option<Kv>>,
    },
    Del {
        deleted: i64,
        prevs: Option<Vec<Kv>>,
    },
}

#[derive(Clone, Debug)]
struct Ack {
    header_rev: i64,
    branch: usize,
    results: Vec<OpResult>,
}

/// One attempted write and, if it was acknowledged, the answer.
#[derive(Clone, Debug)]
struct Write {
    tag: String,
    branches: Vec<Vec<Op>>,
    ack: Option<Ack>,
    error: Option<String>,
}

impl Write {
    /// The revision the write created, if it was acknowledged and changed something.
    fn created_rev(&self) -> Option<i64> {
        let ack = self.ack.as_ref()?;
        let ops = &self.branches[ack.branch];
        let changed = ops.iter().any(|op| matches!(op, Op::Put { .. }))
            || ack
                .results
                .iter()
                .any(|r| matches!(r, OpResult::Del { deleted, .. } if *deleted > 0));
        changed.then_some(ack.header_rev)
    }

    fn describe(&self) -> String {
        let ops = |ops: &[Op]| {
            ops.iter()
                .map(|op| match op {
                    Op::Put { key, .. } => format!("put {key}"),
                    Op::Del { range, .. } => format!("delete {}", range.describe()),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let branches: Vec<String> = self.branches.iter().map(|b| ops(b)).collect();
        format!("{} [{}]", self.tag, branches.join(" | else "))
    }
}

enum Effect {
    Put(Option<Kv>),
    Del(Vec<Kv>),
}

/// The key space as the writes left it.
#[derive(Clone, Default)]
struct Model {
    kvs: BTreeMap<Vec<u8>, Kv>,
}

impl Model {
    /// Applies one revision's operations: its events (with the true prev_kv)
    /// and each operation's effect.
    fn apply(&mut self, rev: i64, ops: &[Op]) -> (Vec<Ev>, Vec<Effect>) {
        let mut events = Vec::new();
        let mut effects = Vec::new();
        for op in ops {
            match op {
                Op::Put { key, value, .. } => {
                    let k = key.as_bytes().to_vec();
                    let prev = self.kvs.get(&k).cloned();
                    let kv = Kv {
                        key: k.clone(),
                        value: value.clone(),
                        create: prev.as_ref().map_or(rev, |p| p.create),
                        modr: rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        lease: 0,
                    };
                    self.kvs.insert(k, kv.clone());
                    events.push(Ev {
                        put: true,
                        kv,
                        prev: prev.clone(),
                    });
                    effects.push(Effect::Put(prev));
                }
                Op::Del { range, .. } => {
                    let keys: Vec<Vec<u8>> = self
                        .kvs
                        .keys()
                        .filter(|k| range.contains(k))
                        .cloned()
                        .collect();
                    let mut gone = Vec::new();
                    for k in keys {
                        let prev = self.kvs.remove(&k).expect("listed just now");
                        events.push(Ev {
                            put: false,
                            kv: Kv {
                                key: k,
                                value: Vec::new(),
                                create: 0,
                                modr: rev,
                                version: 0,
                                lease: 0,
                            },
                            prev: Some(prev.clone()),
                        });
                        gone.push(prev);
                    }
                    effects.push(Effect::Del(gone));
                }
            }
        }
        (events, effects)
    }

    /// Applies events seen in a history that no write explains (to go on checking).
    fn apply_events(&mut self, events: &[Ev]) -> Vec<Ev> {
        events
            .iter()
            .map(|e| {
                let prev = self.kvs.get(&e.kv.key).cloned();
                if e.put {
                    self.kvs.insert(e.kv.key.clone(), e.kv.clone());
                } else {
                    self.kvs.remove(&e.kv.key);
                }
                Ev { prev, ..e.clone() }
            })
            .collect()
    }
}

/// Whether the server's answer to a write matches the model.
fn check_ack(w: &Write, rev: i64, effects: &[Effect], out: &mut Vec<String>) {
    let Some(ack) = &w.ack else { return };
    if ack.results.len() != effects.len() {
        out.push(format!(
            "write {} (revision {rev}): {} operation results for {} operations",
            w.describe(),
            ack.results.len(),
            effects.len()
        ));
        return;
    }
    for (result, effect) in ack.results.iter().zip(effects) {
        match (result, effect) {
            (OpResult::Put { prev: Some(got) }, Effect::Put(want)) if got != want => {
                out.push(format!(
                    "write {} (revision {rev}): put answered prev_kv {} but the key was {}",
                    w.describe(),
                    show_prev(got),
                    show_prev(want)
                ))
            }
            (OpResult::Del { deleted, prevs }, Effect::Del(gone)) => {
                if *deleted != gone.len() as i64 {
                    out.push(format!(
                        "write {} (revision {rev}): delete answered deleted={deleted} but {} keys existed",
                        w.describe(),
                        gone.len()
                    ));
                }
                if let Some(prevs) = prevs {
                    if prevs != gone {
                        out.push(format!(
                            "write {} (revision {rev}): delete answered prev_kvs [{}] but the keys were [{}]",
                            w.describe(),
                            prevs.iter().map(Kv::show).collect::<Vec<_>>().join(", "),
                            gone.iter().map(Kv::show).collect::<Vec<_>>().join(", ")
                        ));
                    }
                }
            }
            (OpResult::Put { .. }, Effect::Put(_)) => {}
            _ => out.push(format!(
                "write {} (revision {rev}): operation results do not line up with the operations",
                w.describe()
            )),
        }
    }
}

/// The true history: every event from the first write's revision to `last`,
/// in order, each with the key's previous version.
struct History {
    last: i64,
    events: Vec<Ev>,
    compactions: Vec<i64>,
}

impl History {
    /// Whether a delivered prev_kv is right for the history's event `want`:
    /// equal to the key's previous version, or absent when there was none or
    /// the revision before the event was compacted.
    fn prev_ok(&self, want: &Ev, got: &Option<Kv>) -> bool {
        match got {
            Some(_) => got == &want.prev,
            None => want.prev.is_none() || self.compactions.iter().any(|&c| c >= want.rev()),
        }
    }
}

/// Deletes acknowledged with nothing deleted: no key of their range existed
/// at the revision they answered with (`header_rev`).
fn check_noops(
    model: &Model,
    rev: i64,
    noops: &BTreeMap<i64, Vec<usize>>,
    writes: &[Write],
    out: &mut Vec<String>,
) {
    for &i in noops.get(&rev).into_iter().flatten() {
        let w = &writes[i];
        let ack = w.ack.as_ref().expect("noops are acknowledged");
        for op in &w.branches[ack.branch] {
            if let Op::Del { range, .. } = op {
                if let Some(k) = model.kvs.keys().find(|k| range.contains(k)) {
                    out.push(format!(
                        "write {} answered revision {rev} and deleted nothing, but {} existed at revision {rev}",
                        w.describe(),
                        String::from_utf8_lossy(k)
                    ));
                }
            }
        }
    }
}

/// Acknowledged writes that changed nothing, by the revision they answered.
fn noop_writes(writes: &[Write]) -> BTreeMap<i64, Vec<usize>> {
    let mut noops: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, w) in writes.iter().enumerate() {
        if let (Some(ack), None) = (&w.ack, w.created_rev()) {
            noops.entry(ack.header_rev).or_default().push(i);
        }
    }
    noops
}

/// The history from the acknowledged writes alone (every write must have
/// been acknowledged: single member). Revisions must be `base+1..` without
/// holes or doubles; every answer (deleted counts, prev_kv) must match.
fn history_from_writes(base: i64, writes: &[Write], compactions: &[i64]) -> (History, Vec<String>) {
    let mut errors = Vec::new();
    let mut by_rev: BTreeMap<i64, usize> = BTreeMap::new();
    for (i, w) in writes.iter().enumerate() {
        if w.ack.is_none() {
            errors.push(format!(
                "write {} failed: {}",
                w.describe(),
                w.error.as_deref().unwrap_or("?")
            ));
        }
        if let Some(r) = w.created_rev() {
            if let Some(j) = by_rev.insert(r, i) {
                errors.push(format!(
                    "writes {} and {} were both acknowledged with revision {r}",
                    writes[j].describe(),
                    w.describe()
                ));
            }
        }
    }
    let last = by_rev.keys().next_back().copied().unwrap_or(base);
    let holes: Vec<i64> = (base + 1..=last)
        .filter(|r| !by_rev.contains_key(r))
        .collect();
    if !holes.is_empty() {
        errors.push(format!(
            "{} revisions between {} and {last} belong to no acknowledged write: {:?}",
            holes.len(),
            base + 1,
            &holes[..holes.len().min(10)]
        ));
    }
    let noops = noop_writes(writes);
    let mut model = Model::default();
    let mut events = Vec::new();
    check_noops(&model, base, &noops, writes, &mut errors);
    for (&rev, &i) in &by_rev {
        let w = &writes[i];
        let ack = w.ack.as_ref().expect("acknowledged");
        let (evs, effects) = model.apply(rev, &w.branches[ack.branch]);
        check_ack(w, rev, &effects, &mut errors);
        if evs.is_empty() {
            errors.push(format!(
                "write {} answered a new revision {rev} but changes nothing",
                w.describe()
            ));
        }
        events.extend(evs);
        check_noops(&model, rev, &noops, writes, &mut errors);
    }
    (
        History {
            last,
            events,
            compactions: compactions.to_vec(),
        },
        errors,
    )
}

/// The history a fresh watch from revision `base+1` reported, checked against
/// the attempted writes: revisions without holes, every revision exactly the
/// events of one attempted write (an acknowledged one at its own revision,
/// else one whose outcome is unknown), every acknowledged change present,
/// and every prev_kv the watch reported equal to the model's.
fn history_from_watch(base: i64, observed: &[Ev], writes: &[Write]) -> (History, Vec<String>) {
    let mut errors = Vec::new();
    let mut groups: Vec<(i64, Vec<Ev>)> = Vec::new();
    for e in observed {
        match groups.last_mut() {
            Some((r, evs)) if *r == e.rev() => evs.push(e.clone()),
            Some((r, _)) if *r > e.rev() => errors.push(format!(
                "the history watch went back from revision {r} to {}",
                e.rev()
            )),
            _ => groups.push((e.rev(), vec![e.clone()])),
        }
    }
    let last = groups.last().map_or(base, |(r, _)| *r);
    let present: HashSet<i64> = groups.iter().map(|(r, _)| *r).collect();
    let holes: Vec<i64> = (base + 1..=last).filter(|r| !present.contains(r)).collect();
    if !holes.is_empty() {
        errors.push(format!(
            "the history has no events at {} revisions between {} and {last}: {:?}",
            holes.len(),
            base + 1,
            &holes[..holes.len().min(10)]
        ));
    }
    let mut acked: BTreeMap<i64, usize> = BTreeMap::new();
    for (i, w) in writes.iter().enumerate() {
        if let Some(r) = w.created_rev() {
            if let Some(j) = acked.insert(r, i) {
                errors.push(format!(
                    "writes {} and {} were both acknowledged with revision {r}",
                    writes[j].describe(),
                    w.describe()
                ));
            }
        }
    }
    let noops = noop_writes(writes);
    let mut used: HashSet<usize> = HashSet::new();
    let mut model = Model::default();
    let mut events = Vec::new();
    let show = |evs: &[Ev]| evs.iter().map(Ev::show).collect::<Vec<_>>().join("; ");
    check_noops(&model, base, &noops, writes, &mut errors);
    for (rev, obs) in &groups {
        let rev = *rev;
        let mut chosen: Option<(Model, Vec<Ev>)> = None;
        if let Some(&i) = acked.get(&rev) {
            let w = &writes[i];
            let ack = w.ack.as_ref().expect("acknowledged");
            let mut m = model.clone();
            let (evs, effects) = m.apply(rev, &w.branches[ack.branch]);
            used.insert(i);
            check_ack(w, rev, &effects, &mut errors);
            if evs.len() == obs.len() && evs.iter().zip(obs).all(|(a, b)| a.same_change(b)) {
                chosen = Some((m, evs));
            } else {
                errors.push(format!(
                    "revision {rev}: acknowledged write {} should be [{}] but the history has [{}]",
                    w.describe(),
                    show(&evs),
                    show(obs)
                ));
            }
        } else {
            'search: for (i, w) in writes.iter().enumerate() {
                if w.ack.is_some() || used.contains(&i) {
                    continue;
                }
                for ops in &w.branches {
                    let mut m = model.clone();
                    let (evs, _) = m.apply(rev, ops);
                    if !evs.is_empty()
                        && evs.len() == obs.len()
                        && evs.iter().zip(obs).all(|(a, b)| a.same_change(b))
                    {
                        used.insert(i);
                        chosen = Some((m, evs));
                        break 'search;
                    }
                }
            }
            if chosen.is_none() {
                errors.push(format!(
                    "revision {rev}: [{}] is no attempted write (a phantom or repeated write)",
                    show(obs)
                ));
            }
        }
        let evs = match chosen {
            Some((m, evs)) => {
                model = m;
                evs
            }
            None => model.apply_events(obs),
        };
        for (want, got) in evs.iter().zip(obs) {
            if got.prev != want.prev {
                errors.push(format!(
                    "the history watch's prev_kv of {} is {} but the key was {}",
                    want.show(),
                    show_prev(&got.prev),
                    show_prev(&want.prev)
                ));
            }
        }
        events.extend(evs);
        check_noops(&model, rev, &noops, writes, &mut errors);
    }
    for (&rev, &i) in &acked {
        if !used.contains(&i) {
            errors.push(format!(
                "acknowledged write {} (revision {rev}) is not in the history (last revision {last})",
                writes[i].describe()
            ));
        }
    }
    (
        History {
            last,
            events,
            compactions: Vec::new(),
        },
        errors,
    )
}

/// A fresh watch's events from `start` must be the history's.
fn compare_fresh(hist: &History, fresh: &[Ev], start: i64, label: &str) -> Vec<String> {
    let want: Vec<&Ev> = hist.events.iter().filter(|e| e.rev() >= start).collect();
    let mut errors = Vec::new();
    for k in 0..want.len().max(fresh.len()) {
        match (want.get(k), fresh.get(k)) {
            (Some(w), Some(g)) if w.same_change(g) => {
                if !hist.prev_ok(w, &g.prev) {
                    errors.push(format!(
                        "{label}: prev_kv of {} is {} but the key was {}",
                        w.show(),
                        show_prev(&g.prev),
                        show_prev(&w.prev)
                    ));
                }
            }
            (w, g) => {
                errors.push(format!(
                    "{label}: event #{k} from revision {start} is {} but the history has {}",
                    g.map_or("nothing".to_string(), |e| e.show()),
                    w.map_or("nothing".to_string(), |e| e.show())
                ));
                break;
            }
        }
    }
    errors
}

// ---------------------------------------------------------------------------
// What the watch streams received.

/// What a watcher asks for.
#[derive(Clone, Debug)]
struct Spec {
    label: String,
    range: Range,
    /// 0: from the next revision.
    start: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    fragment: bool,
    progress_notify: bool,
    /// When cancelled as compacted, go on from the compaction revision.
    resume_after_compaction: bool,
}

impl Spec {
    fn new(label: &str, range: Range, start: i64) -> Spec {
        Spec {
            label: label.to_string(),
            range,
            start,
            prev_kv: false,
            no_put: false,
            no_delete: false,
            fragment: false,
            progress_notify: false,
            resume_after_compaction: false,
        }
    }

    fn prev_kv(mut self) -> Spec {
        self.prev_kv = true;
        self
    }

    fn no_put(mut self) -> Spec {
        self.no_put = true;
        self
    }

    fn no_delete(mut self) -> Spec {
        self.no_delete = true;
        self
    }

    fn fragment(mut self) -> Spec {
        self.fragment = true;
        self
    }

    fn progress_notify(mut self) -> Spec {
        self.progress_notify = true;
        self
    }

    fn resume_after_compaction(mut self) -> Spec {
        self.resume_after_compaction = true;
        self
    }

    fn options(&self, watch_id: i64, start: i64) -> WatchOptions {
        let mut o = WatchOptions::new()
            .with_watch_id(watch_id)
            .with_start_revision(start);
        if !self.range.end.is_empty() {
            o = o.with_range(self.range.end.clone());
        }
        if self.prev_kv {
            o = o.with_prev_key();
        }
        if self.fragment {
            o = o.with_fragment();
        }
        if self.progress_notify {
            o = o.with_progress_notify();
        }
        let mut filters = Vec::new();
        if self.no_put {
            filters.push(WatchFilterType::NoPut);
        }
        if self.no_delete {
            filters.push(WatchFilterType::NoDelete);
        }
        if !filters.is_empty() {
            o = o.with_filters(filters);
        }
        o
    }

    fn wants(&self, e: &Ev) -> bool {
        let filtered = if e.put { self.no_put } else { self.no_delete };
        self.range.contains(&e.kv.key) && !filtered
    }

    fn describe(&self) -> String {
        let mut s = format!("{}: {}", self.label, self.range.describe());
        for (on, what) in [
            (self.prev_kv, "prev_kv"),
            (self.no_put, "NOPUT"),
            (self.no_delete, "NODELETE"),
            (self.fragment, "fragment"),
            (self.progress_notify, "progress_notify"),
        ] {
            if on {
                s.push(' ');
                s.push_str(what);
            }
        }
        s
    }
}

/// One response as received.
#[derive(Clone, Debug)]
struct Resp {
    watch_id: i64,
    created: bool,
    canceled: bool,
    compact_revision: i64,
    cancel_reason: String,
    header_rev: i64,
    events: Vec<Ev>,
}

impl Resp {
    fn of(r: &WatchResponse) -> Resp {
        Resp {
            watch_id: r.watch_id(),
            created: r.created(),
            canceled: r.canceled(),
            compact_revision: r.compact_revision(),
            cancel_reason: r.cancel_reason().to_string(),
            header_rev: r.header().map_or(-1, |h| h.revision()),
            events: r.events().iter().map(Ev::of).collect(),
        }
    }
}

/// How a watcher of a chain came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    First,
    /// The client cancelled the previous one and resumed after its last event.
    AfterCancel,
    /// The previous one's stream broke (or it was cancelled unasked).
    AfterBreak,
    /// The previous one was cancelled as compacted at this revision.
    AfterCompaction(i64),
}

/// One watcher as created on one connection.
#[derive(Clone, Debug)]
struct Phys {
    chain: usize,
    segment: usize,
    watch_id: i64,
    /// The start_revision sent (0: now).
    start: i64,
    link: Link,
    /// The latest acknowledged compaction when the create request was sent.
    compacted_before_create: i64,
    cancel_requested: bool,
}

/// One connection of a stream: its responses in arrival order.
#[derive(Clone, Debug, Default)]
struct Segment {
    endpoint: String,
    responses: Vec<Resp>,
    /// Why the connection ended before the test finished with it.
    end: Option<String>,
}

/// Everything one watch stream (possibly over several connections) saw.
#[derive(Clone, Debug, Default)]
struct StreamLog {
    label: String,
    /// What each chain asks for.
    specs: Vec<Spec>,
    phys: Vec<Phys>,
    segments: Vec<Segment>,
    /// Problems of the stream itself (a drain that never completed, …).
    notes: Vec<String>,
}

// ---------------------------------------------------------------------------
// The checker.

#[derive(Default)]
struct Report {
    violations: Vec<String>,
    streams: usize,
    segments: usize,
    watchers: usize,
    chains: usize,
    responses: usize,
    events: usize,
    progress: usize,
    progress_checks: usize,
    compacted: usize,
    client_cancels: usize,
    breaks: usize,
    largest_response: usize,
    /// Responses to fragment watchers that ended inside a revision.
    fragments: usize,
}

impl Report {
    fn summary(&self) -> String {
        format!(
            "{} streams ({} connections, {} broke), {} watchers in {} chains, {} responses, \
             {} events delivered (at most {} in one response), {} progress notifications \
             ({} watcher checks), {} cancelled by compaction, {} cancelled and resumed by the client, \
             {} fragments",
            self.streams,
            self.segments,
            self.breaks,
            self.watchers,
            self.chains,
            self.responses,
            self.events,
            self.largest_response,
            self.progress,
            self.progress_checks,
            self.compacted,
            self.client_cancels,
            self.fragments
        )
    }
}

/// One watcher's deliveries, from the responses of its segment.
#[derive(Clone, Default)]
struct Run {
    created: Option<i64>,
    start: i64,
    delivered: Vec<Ev>,
    /// The delivered events of each response: [from, to).
    batches: Vec<(usize, usize)>,
    /// (revision, events delivered when it arrived) of each progress notification.
    progress: Vec<(i64, usize)>,
    /// (compact_revision, reason)
    canceled: Option<(i64, String)>,
}

/// The history's events a watcher with `spec` from `start` must receive.
fn expected<'a>(hist: &'a History, spec: &Spec, start: i64) -> Vec<&'a Ev> {
    hist.events
        .iter()
        .filter(|e| e.rev() >= start && spec.wants(e))
        .collect()
}

/// True when `i` is a revision boundary of `exp` (no revision spans it).
fn boundary(exp: &[&Ev], i: usize) -> bool {
    i == 0 || i >= exp.len() || exp[i].rev() != exp[i - 1].rev()
}

/// How many of `got` match `exp` from the start; reports the first mismatch
/// and wrong prev_kvs.
fn matched_prefix(
    hist: &History,
    spec: &Spec,
    exp: &[&Ev],
    got: &[Ev],
    name: &str,
    out: &mut Vec<String>,
) -> usize {
    let mut prev_errors = 0;
    for (k, g) in got.iter().enumerate() {
        let Some(w) = exp.get(k) else {
            out.push(format!(
                "{name}: reliable/unique: delivered {} after all {} events of the history",
                g.show(),
                exp.len()
            ));
            return k;
        };
        if g.same_change(w) {
            let prev_wrong = if spec.prev_kv {
                !hist.prev_ok(w, &g.prev)
            } else {
                g.prev.is_some()
            };
            if prev_wrong && prev_errors < 3 {
                prev_errors += 1;
                out.push(format!(
                    "{name}: prev_kv of {} is {} but {}",
                    w.show(),
                    show_prev(&g.prev),
                    if spec.prev_kv {
                        format!("the key was {}", show_prev(&w.prev))
                    } else {
                        "the watcher did not ask for prev_kv".to_string()
                    }
                ));
            }
            continue;
        }
        let duplicate = got[..k]
            .iter()
            .any(|e| e.rev() == g.rev() && e.kv.key == g.kv.key);
        let kind = if duplicate {
            "unique: a duplicate"
        } else if g.rev() < w.rev() {
            "ordered: out of order or unexpected"
        } else if g.rev() > w.rev() {
            "reliable: a gap (an event is missing)"
        } else {
            "ordered/contents: a different event"
        };
        out.push(format!(
            "{name}: {kind} at its event #{k}: got {} where the history has {} (last delivered before: {})",
            g.show(),
            w.show(),
            k.checked_sub(1)
                .map_or("nothing".to_string(), |j| got[j].show())
        ));
        return k;
    }
    got.len()
}

/// Checks every watcher of every stream against the history.
fn check_logs(hist: &History, logs: &[StreamLog], report: &mut Report) {
    for log in logs {
        check_log(hist, log, report);
    }
}

fn check_log(hist: &History, log: &StreamLog, report: &mut Report) {
    report.streams += 1;
    report.segments += log.segments.len();
    report.watchers += log.phys.len();
    report.chains += log.specs.len();
    let out = &mut report.violations;
    let mut runs = vec![Run::default(); log.phys.len()];
    let index: HashMap<(usize, i64), usize> = log
        .phys
        .iter()
        .enumerate()
        .map(|(p, ph)| ((ph.segment, ph.watch_id), p))
        .collect();
    for (s, seg) in log.segments.iter().enumerate() {
        let at = format!("{} (connection {s} to {})", log.label, seg.endpoint);
        if seg.end.is_some() {
            report.breaks += 1;
        }
        let mut active: Vec<usize> = Vec::new();
        for resp in &seg.responses {
            report.responses += 1;
            let who = index.get(&(s, resp.watch_id)).copied();
            if resp.header_rev > hist.last {
                out.push(format!(
                    "{at}: a response for watch {} claims revision {} beyond the last revision {}",
                    resp.watch_id, resp.header_rev, hist.last
                ));
            }
            if resp.created {
                let Some(p) = who else {
                    out.push(format!(
                        "{at}: a creation answer for unknown watch {} (canceled {}, {:?})",
                        resp.watch_id, resp.canceled, resp.cancel_reason
                    ));
                    continue;
                };
                let run = &mut runs[p];
                if run.created.is_some() {
                    out.push(format!("{at}: watch {} created twice", resp.watch_id));
                } else if resp.canceled {
                    out.push(format!(
                        "{at}: creating watch {} was refused: {:?}",
                        resp.watch_id, resp.cancel_reason
                    ));
                    run.canceled = Some((resp.compact_revision, resp.cancel_reason.clone()));
                } else {
                    run.created = Some(resp.header_rev);
                    let requested = log.phys[p].start;
                    run.start = if requested > 0 {
                        requested
                    } else {
                        resp.header_rev + 1
                    };
                    active.push(p);
                }
            } else if resp.canceled {
                let Some(p) = who else {
                    out.push(format!(
                        "{at}: a cancel answer for unknown watch {}",
                        resp.watch_id
                    ));
                    continue;
                };
                let run = &mut runs[p];
                if run.created.is_none() {
                    out.push(format!(
                        "{at}: watch {} cancelled before it was created",
                        resp.watch_id
                    ));
                } else if run.canceled.is_some() {
                    out.push(format!("{at}: watch {} cancelled twice", resp.watch_id));
                } else {
                    run.canceled = Some((resp.compact_revision, resp.cancel_reason.clone()));
                }
                active.retain(|&x| x != p);
            } else if !resp.events.is_empty() {
                report.events += resp.events.len();
                report.largest_response = report.largest_response.max(resp.events.len());
                let Some(p) = who else {
                    out.push(format!(
                        "{at}: {} events for unknown watch {}",
                        resp.events.len(),
                        resp.watch_id
                    ));
                    continue;
                };
                let run = &mut runs[p];
                if run.created.is_none() {
                    out.push(format!(
                        "{at}: events for watch {} before it was created: {}",
                        resp.watch_id,
                        resp.events[0].show()
                    ));
                    continue;
                }
                if run.canceled.is_some() {
                    out.push(format!(
                        "{at}: events for watch {} after it was cancelled: {}",
                        resp.watch_id,
                        resp.events[0].show()
                    ));
                    continue;
                }
                let top = resp.events.iter().map(Ev::rev).max().unwrap_or(0);
                if resp.header_rev < top {
                    out.push(format!(
                        "{at}: watch {}: a response with header revision {} holds an event of revision {top}",
                        resp.watch_id, resp.header_rev
                    ));
                }
                let from = run.delivered.len();
                run.delivered.extend(resp.events.iter().cloned());
                run.batches.push((from, run.delivered.len()));
            } else {
                report.progress += 1;
                let targets: Vec<usize> = if resp.watch_id == -1 {
                    active.clone()
                } else {
                    match who {
                        Some(p) if active.contains(&p) => vec![p],
                        _ => {
                            out.push(format!(
                                "{at}: a progress notification (revision {}) for watch {} which is not active",
                                resp.header_rev, resp.watch_id
                            ));
                            Vec::new()
                        }
                    }
                };
                for p in targets {
                    let n = runs[p].delivered.len();
                    runs[p].progress.push((resp.header_rev, n));
                }
            }
        }
    }
    for (p, ph) in log.phys.iter().enumerate() {
        check_watcher(hist, log, ph, &runs[p], report);
    }
    for c in 0..log.specs.len() {
        check_chain(hist, log, c, &runs, &mut report.violations);
    }
    for note in &log.notes {
        report.violations.push(format!("{}: {note}", log.label));
    }
}

fn watcher_name(log: &StreamLog, ph: &Phys, start: i64) -> String {
    format!(
        "{}/{} watch {} (connection {}, from {start}, {:?})",
        log.label,
        log.specs[ph.chain].describe(),
        ph.watch_id,
        ph.segment,
        ph.link
    )
}

fn check_watcher(hist: &History, log: &StreamLog, ph: &Phys, run: &Run, report: &mut Report) {
    let spec = &log.specs[ph.chain];
    if run.created.is_none() {
        return; // never created (its connection broke first): nothing delivered
    }
    let start = run.start;
    let name = watcher_name(log, ph, start);
    let out = &mut report.violations;
    let exp = expected(hist, spec, start);
    let got = &run.delivered;
    // Ordered and unique, stated on their own (the prefix check implies them).
    let mut top = 0;
    for e in got {
        if e.rev() < top {
            out.push(format!(
                "{name}: ordered: {} after an event of revision {top}",
                e.show()
            ));
            break;
        }
        top = e.rev();
    }
    let mut seen = HashSet::new();
    if let Some(dup) = got
        .iter()
        .find(|e| !seen.insert((e.rev(), e.kv.key.clone())))
    {
        out.push(format!("{name}: unique: {} delivered twice", dup.show()));
    }
    let ok = matched_prefix(hist, spec, &exp, got, &name, out);
    if spec.fragment {
        report.fragments += run
            .batches
            .iter()
            .filter(|&&(_, j)| j <= ok && !boundary(&exp, j))
            .count();
    } else {
        for &(i, j) in &run.batches {
            if j > ok {
                break;
            }
            if !boundary(&exp, i) || !boundary(&exp, j) {
                let r = if !boundary(&exp, i) {
                    exp[i].rev()
                } else {
                    exp[j - 1].rev()
                };
                let all = exp.iter().filter(|e| e.rev() == r).count();
                let here = got[i..j].iter().filter(|e| e.rev() == r).count();
                out.push(format!(
                    "{name}: atomic: a response held {here} of the {all} events of revision {r}"
                ));
                break;
            }
        }
    }
    for &(h, n) in &run.progress {
        report.progress_checks += 1;
        let need = exp.partition_point(|e| e.rev() <= h);
        if need > n {
            out.push(format!(
                "{name}: progress: a notification at revision {h} arrived when {n} of the {need} \
                 events up to {h} had been delivered; first missing: {}",
                exp[n].show()
            ));
            break;
        }
    }
    let told = got
        .last()
        .map_or(0, |e| e.rev() + 1)
        .max(run.progress.iter().map(|(h, _)| h + 1).max().unwrap_or(0))
        .max(start);
    match &run.canceled {
        Some((c, reason)) if *c > 0 => {
            report.compacted += 1;
            if !hist.compactions.contains(c) {
                out.push(format!(
                    "{name}: cancelled with compact_revision {c} ({reason:?}) but the compactions were {:?}",
                    hist.compactions
                ));
            }
            if told >= *c {
                out.push(format!(
                    "{name}: cancelled as compacted at {c} ({reason:?}) although it needed nothing \
                     below {told} (events or progress up to {})",
                    told - 1
                ));
            }
        }
        Some((_, reason)) => {
            if ph.cancel_requested {
                report.client_cancels += 1;
            } else {
                out.push(format!(
                    "{name}: cancelled by the server without a compaction: {reason:?}"
                ));
            }
        }
        None => {}
    }
    if ph.compacted_before_create > start {
        match &run.canceled {
            Some((c, _)) if *c >= ph.compacted_before_create => {
                if !got.is_empty() {
                    out.push(format!(
                        "{name}: its start was compacted (at {}) before it was created, yet it \
                         received {}",
                        ph.compacted_before_create,
                        got[0].show()
                    ));
                }
            }
            _ => out.push(format!(
                "{name}: its start was compacted (at {}) before it was created, but it was not \
                 cancelled with a compact_revision (cancel: {:?}, {} events)",
                ph.compacted_before_create,
                run.canceled,
                got.len()
            )),
        }
    }
}

/// A chain's watchers, each resumed where the previous one stopped, must
/// together deliver a prefix of the history from the chain's start (from
/// the compaction revision after a compaction).
fn check_chain(hist: &History, log: &StreamLog, c: usize, runs: &[Run], out: &mut Vec<String>) {
    let spec = &log.specs[c];
    let members: Vec<usize> = (0..log.phys.len())
        .filter(|&p| log.phys[p].chain == c)
        .collect();
    if !members.iter().any(|&p| runs[p].created.is_some()) {
        out.push(format!(
            "{}/{}: no watcher of this chain was ever created",
            log.label,
            spec.describe()
        ));
        return;
    }
    let mut group: Option<(i64, Vec<Ev>, usize)> = None;
    let flush = |group: &Option<(i64, Vec<Ev>, usize)>, out: &mut Vec<String>| {
        if let Some((start, acc, n)) = group {
            if *n > 1 {
                let exp = expected(hist, spec, *start);
                let name = format!(
                    "{}/{} resumable chain of {n} watchers from {start}",
                    log.label,
                    spec.describe()
                );
                matched_prefix(hist, spec, &exp, acc, &name, out);
            }
        }
    };
    for p in members {
        let ph = &log.phys[p];
        let run = &runs[p];
        if run.created.is_none() {
            continue;
        }
        match (ph.link, group.as_mut()) {
            (Link::AfterCancel | Link::AfterBreak, Some((start, acc, n))) => {
                let continuation = acc.last().map_or(*start, |e| e.rev() + 1);
                if run.start != continuation {
                    out.push(format!(
                        "{}: resumed from {} but its chain continues at {continuation}",
                        watcher_name(log, ph, run.start),
                        run.start
                    ));
                }
                acc.extend(run.delivered.iter().cloned());
                *n += 1;
            }
            _ => {
                flush(&group, out);
                group = Some((run.start, run.delivered.clone(), 1));
            }
        }
    }
    flush(&group, out);
}

// ---------------------------------------------------------------------------
// Watch streams: a recorder task per stream.

type Msg = Option<Result<WatchResponse, etcd_client::Error>>;

enum Cmd {
    Create(Spec),
    /// Cancel the chain's watcher and resume after its last event.
    Restart(usize),
    Progress,
    /// Stop reading the stream for a while.
    Stall(Duration),
    /// Pause after each response read.
    ReadDelay(Duration),
    /// Request progress until the stream answers at or past the revision.
    Drain(i64, Duration, oneshot::Sender<Result<(), String>>),
    Finish(oneshot::Sender<StreamLog>),
}

#[derive(Clone)]
struct StreamCfg {
    /// Send a WatchProgressRequest this often.
    progress_every: Option<Duration>,
    /// Re-create the watchers on the next endpoint when the stream breaks.
    reconnect: bool,
    read_delay: Duration,
}

impl StreamCfg {
    fn plain() -> StreamCfg {
        StreamCfg {
            progress_every: None,
            reconnect: false,
            read_delay: Duration::ZERO,
        }
    }
}

/// The test's side of a recorder.
struct Stream {
    label: String,
    tx: mpsc::UnboundedSender<Cmd>,
    chains: usize,
    /// Events received so far (all watchers).
    delivered: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Stream {
    fn spawn(
        rt: &tokio::runtime::Handle,
        label: &str,
        endpoints: Vec<String>,
        cfg: StreamCfg,
        compacted: Arc<AtomicI64>,
    ) -> Stream {
        let (tx, cmds) = mpsc::unbounded_channel();
        let (msgs_tx, msgs) = mpsc::channel(1);
        let delivered = Arc::new(AtomicUsize::new(0));
        let recorder = Recorder {
            endpoints,
            next_endpoint: 0,
            read_delay: cfg.read_delay,
            cfg,
            client: None,
            sender: None,
            reader: None,
            live: None,
            msgs_tx,
            log: StreamLog {
                label: label.to_string(),
                ..StreamLog::default()
            },
            chains: Vec::new(),
            ids: HashMap::new(),
            next_id: 1,
            compacted,
            delivered: delivered.clone(),
            drain: None,
            connect_failures: 0,
            gave_up: false,
        };
        let task = rt.spawn(recorder.run(cmds, msgs));
        Stream {
            label: label.to_string(),
            tx,
            chains: 0,
            delivered,
            task,
        }
    }

    fn create(&mut self, spec: Spec) -> usize {
        let _ = self.tx.send(Cmd::Create(spec));
        self.chains += 1;
        self.chains - 1
    }

    fn restart(&self, chain: usize) {
        let _ = self.tx.send(Cmd::Restart(chain));
    }

    fn progress(&self) {
        let _ = self.tx.send(Cmd::Progress);
    }

    fn stall(&self, d: Duration) {
        let _ = self.tx.send(Cmd::Stall(d));
    }

    fn read_delay(&self, d: Duration) {
        let _ = self.tx.send(Cmd::ReadDelay(d));
    }

    fn delivered(&self) -> usize {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Waits (bounded) until a progress answer at or past `upto` proves every
    /// watcher of the stream has everything up to it.
    fn drain(
        &self,
        upto: i64,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
        let (tx, label) = (self.tx.clone(), self.label.clone());
        async move {
            let (reply, done) = oneshot::channel();
            if tx.send(Cmd::Drain(upto, DRAIN_TIMEOUT, reply)).is_err() {
                return Err(format!("{label}: the recorder is gone"));
            }
            match tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(10), done).await {
                Ok(Ok(result)) => result,
                _ => Err(format!("{label}: the recorder did not answer the drain")),
            }
        }
    }

    async fn finish(self) -> StreamLog {
        let (reply, done) = oneshot::channel();
        let _ = self.tx.send(Cmd::Finish(reply));
        match tokio::time::timeout(Duration::from_secs(20), done).await {
            Ok(Ok(log)) => log,
            _ => {
                self.task.abort();
                StreamLog {
                    label: self.label.clone(),
                    notes: vec!["the recorder did not hand over its log".to_string()],
                    ..StreamLog::default()
                }
            }
        }
    }
}

/// Drains every stream (in parallel), then collects their logs.
async fn drain_and_finish(streams: Vec<Stream>, upto: i64) -> Vec<StreamLog> {
    let drains: Vec<_> = streams.iter().map(|s| s.drain(upto)).collect();
    let results = futures_join_all(drains).await;
    let mut logs = Vec::new();
    for (s, r) in streams.into_iter().zip(results) {
        let mut log = s.finish().await;
        if let Err(e) = r {
            log.notes.push(format!("drain: {e}"));
        }
        logs.push(log);
    }
    logs
}

/// Awaits futures concurrently (no `futures` dependency).
async fn futures_join_all<F>(futures: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("a joined task panicked"));
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChainState {
    /// Needs a watcher (first, or resumed).
    Pending,
    Creating,
    Active,
    Canceling,
    Ended,
}

struct ChainRt {
    current: Option<usize>,
    state: ChainState,
    /// Revision of the last event received (resume after it).
    last_rev: i64,
    /// The current watcher's effective start, once known.
    start: i64,
    link: Link,
}

struct DrainState {
    upto: i64,
    deadline: Instant,
    reply: oneshot::Sender<Result<(), String>>,
}

struct Recorder {
    endpoints: Vec<String>,
    next_endpoint: usize,
    cfg: StreamCfg,
    read_delay: Duration,
    client: Option<Client>,
    sender: Option<WatchRequestSender>,
    reader: Option<tokio::task::JoinHandle<()>>,
    /// The segment being read.
    live: Option<usize>,
    msgs_tx: mpsc::Sender<(usize, Msg)>,
    log: StreamLog,
    chains: Vec<ChainRt>,
    /// Watch ID → watcher (IDs are never reused within a stream).
    ids: HashMap<i64, usize>,
    next_id: i64,
    compacted: Arc<AtomicI64>,
    delivered: Arc<AtomicUsize>,
    drain: Option<DrainState>,
    connect_failures: usize,
    gave_up: bool,
}

/// Reads one connection's responses into the recorder (capacity 1: when the
/// recorder does not read, neither does this).
async fn read_responses(
    seg: usize,
    mut responses: WatchResponseStream,
    tx: mpsc::Sender<(usize, Msg)>,
) {
    loop {
        let msg = responses.next().await;
        let end = !matches!(msg, Some(Ok(_)));
        if tx.send((seg, msg)).await.is_err() || end {
            return;
        }
    }
}

async fn connect_client(urls: &[String]) -> Result<Client, String> {
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(1));
    match tokio::time::timeout(Duration::from_secs(3), Client::connect(urls, Some(options))).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(show_err(&e)),
        Err(_) => Err("connect timed out".to_string()),
    }
}

fn show_err(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => format!("{other}"),
    }
}

impl Recorder {
    async fn run(
        mut self,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        mut msgs: mpsc::Receiver<(usize, Msg)>,
    ) {
        let every = self.cfg.progress_every;
        let mut progress = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain_tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            let pending = self.chains.iter().any(|c| c.state == ChainState::Pending);
            if pending && self.sender.is_none() && !self.gave_up {
                self.connect().await;
            }
            if self.sender.is_some() {
                self.create_pending().await;
            }
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    None => break,
                    Some(Cmd::Finish(reply)) => {
                        self.close();
                        let _ = reply.send(std::mem::take(&mut self.log));
                        return;
                    }
                    Some(cmd) => self.command(cmd).await,
                },
                Some((seg, msg)) = msgs.recv() => self.on_message(seg, msg).await,
                _ = progress.tick(), if every.is_some() => self.send_progress().await,
                _ = drain_tick.tick(), if self.drain.is_some() => self.drain_tick().await,
            }
        }
        self.close();
    }

    fn close(&mut self) {
        self.sender = None;
        if let Some(r) = self.reader.take() {
            r.abort();
        }
        self.live = None;
    }

    /// Where a chain's next watcher starts, and how it is linked.
    fn resume_point(&self, c: usize) -> (i64, Link) {
        let chain = &self.chains[c];
        let start = if chain.last_rev > 0 {
            chain.last_rev + 1
        } else if chain.start > 0 {
            chain.start
        } else {
            self.log.specs[c].start
        };
        (start, chain.link)
    }

    fn record_watcher(&mut self, c: usize, seg: usize, id: i64, start: i64, link: Link) {
        let p = self.log.phys.len();
        self.log.phys.push(Phys {
            chain: c,
            segment: seg,
            watch_id: id,
            start,
            link,
            compacted_before_create: self.compacted.load(Ordering::SeqCst),
            cancel_requested: false,
        });
        self.ids.insert(id, p);
        let chain = &mut self.chains[c];
        chain.current = Some(p);
        chain.state = ChainState::Creating;
        if start > 0 {
            chain.start = start;
        }
    }

    /// Opens a connection (next endpoint) with the first pending chain's watcher.
    async fn connect(&mut self) {
        let Some(c) = self
            .chains
            .iter()
            .position(|c| c.state == ChainState::Pending)
        else {
            return;
        };
        let endpoint = self.endpoints[self.next_endpoint % self.endpoints.len()].clone();
        let failure = match self.open(c, &endpoint).await {
            Ok(()) => {
                self.connect_failures = 0;
                return;
            }
            Err(e) => e,
        };
        self.next_endpoint += 1;
        self.connect_failures += 1;
        if self.connect_failures >= 100 || !self.cfg.reconnect && self.log.segments.is_empty() {
            self.gave_up = true;
            self.log.notes.push(format!(
                "gave up connecting; last failure at {endpoint}: {failure}"
            ));
            for chain in &mut self.chains {
                chain.state = ChainState::Ended;
            }
            if let Some(d) = self.drain.take() {
                let _ = d.reply.send(Err("gave up connecting".to_string()));
            }
        } else {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn open(&mut self, c: usize, endpoint: &str) -> Result<(), String> {
        let client = connect_client(&[endpoint.to_string()]).await?;
        let (start, link) = self.resume_point(c);
        let id = self.next_id;
        self.next_id += 1;
        let spec = self.log.specs[c].clone();
        let mut watch = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
        let stream = match tokio::time::timeout(
            Duration::from_secs(3),
            watch.watch(spec.range.key.clone(), Some(spec.options(id, start))),
        )
        .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(show_err(&e)),
            Err(_) => return Err("opening the watch stream timed out".to_string()),
        };
        let (sender, responses) = stream.split();
        let seg = self.log.segments.len();
        self.log.segments.push(Segment {
            endpoint: endpoint.to_string(),
            ..Segment::default()
        });
        self.record_watcher(c, seg, id, start, link);
        self.sender = Some(sender);
        self.client = Some(client);
        self.live = Some(seg);
        self.reader = Some(tokio::spawn(read_responses(
            seg,
            responses,
            self.msgs_tx.clone(),
        )));
        Ok(())
    }

    async fn create_pending(&mut self) {
        for c in 0..self.chains.len() {
            if self.chains[c].state != ChainState::Pending {
                continue;
            }
            let (Some(seg), Some(_)) = (self.live, self.sender.as_ref()) else {
                return;
            };
            let (start, link) = self.resume_point(c);
            let id = self.next_id;
            self.next_id += 1;
            let spec = self.log.specs[c].clone();
            self.record_watcher(c, seg, id, start, link);
            let sent = self
                .sender
                .as_mut()
                .expect("checked")
                .watch(spec.range.key.clone(), Some(spec.options(id, start)))
                .await;
            if let Err(e) = sent {
                self.broken(seg, format!("sending a create request failed: {e}"));
                return;
            }
        }
    }

    async fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Create(spec) => {
                let start = spec.start;
                self.log.specs.push(spec);
                self.chains.push(ChainRt {
                    current: None,
                    state: ChainState::Pending,
                    last_rev: 0,
                    start,
                    link: Link::First,
                });
            }
            Cmd::Restart(c) => {
                let Some(chain) = self.chains.get(c) else {
                    return;
                };
                let (Some(p), ChainState::Active) = (chain.current, chain.state) else {
                    return;
                };
                let id = self.log.phys[p].watch_id;
                let Some(sender) = self.sender.as_mut() else {
                    return;
                };
                if sender.cancel(id).await.is_ok() {
                    self.log.phys[p].cancel_requested = true;
                    self.chains[c].state = ChainState::Canceling;
                    self.chains[c].link = Link::AfterCancel;
                }
            }
            Cmd::Progress => self.send_progress().await,
            Cmd::Stall(d) => tokio::time::sleep(d).await,
            Cmd::ReadDelay(d) => self.read_delay = d,
            Cmd::Drain(upto, timeout, reply) => {
                if self.gave_up {
                    let _ = reply.send(Err("the stream is gone".to_string()));
                    return;
                }
                if let Some(old) = self.drain.take() {
                    let _ = old.reply.send(Err("superseded".to_string()));
                }
                self.drain = Some(DrainState {
                    upto,
                    deadline: Instant::now() + timeout,
                    reply,
                });
                self.send_progress().await;
            }
            Cmd::Finish(_) => unreachable!("handled by run"),
        }
    }

    async fn send_progress(&mut self) {
        if let Some(sender) = self.sender.as_mut() {
            let _ = sender.request_progress().await;
        }
    }

    async fn drain_tick(&mut self) {
        let Some(d) = &self.drain else { return };
        if Instant::now() < d.deadline {
            self.send_progress().await;
            return;
        }
        let d = self.drain.take().expect("checked");
        let states: Vec<String> = self
            .chains
            .iter()
            .enumerate()
            .map(|(c, ch)| format!("{}: {:?}", self.log.specs[c].label, ch.state))
            .collect();
        let _ = d.reply.send(Err(format!(
            "no progress notification at or past revision {} (all watchers active) within {DRAIN_TIMEOUT:?}; \
             chains: {}",
            d.upto,
            states.join(", ")
        )));
    }

    async fn on_message(&mut self, seg: usize, msg: Msg) {
        if self.live != Some(seg) {
            return;
        }
        match msg {
            Some(Ok(resp)) => {
                let r = Resp::of(&resp);
                self.update(&r);
                self.log.segments[seg].responses.push(r);
                if !self.read_delay.is_zero() {
                    tokio::time::sleep(self.read_delay).await;
                }
            }
            Some(Err(e)) => self.broken(seg, show_err(&e)),
            None => self.broken(seg, "the server ended the stream".to_string()),
        }
    }

    /// Follows the chains' states from one response.
    fn update(&mut self, r: &Resp) {
        let p = self.ids.get(&r.watch_id).copied();
        let current = |s: &Self, p: usize| {
            let c = s.log.phys[p].chain;
            (s.chains[c].current == Some(p)).then_some(c)
        };
        if r.created {
            let Some(c) = p.and_then(|p| current(self, p)) else {
                return;
            };
            let p = p.expect("known");
            if r.canceled {
                self.chains[c].state = ChainState::Ended;
            } else {
                self.chains[c].state = ChainState::Active;
                if self.log.phys[p].start <= 0 {
                    self.chains[c].start = r.header_rev + 1;
                }
            }
        } else if r.canceled {
            let Some(c) = p.and_then(|p| current(self, p)) else {
                return;
            };
            let chain = &mut self.chains[c];
            if r.compact_revision > 0 {
                if self.log.specs[c].resume_after_compaction {
                    chain.last_rev = r.compact_revision - 1;
                    chain.link = Link::AfterCompaction(r.compact_revision);
                    chain.state = ChainState::Pending;
                } else {
                    chain.state = ChainState::Ended;
                }
            } else if chain.state == ChainState::Canceling {
                chain.state = ChainState::Pending;
            } else {
                // Cancelled unasked (the checker reports it): go on elsewhere.
                chain.link = Link::AfterBreak;
                chain.state = ChainState::Pending;
            }
        } else if !r.events.is_empty() {
            self.delivered.fetch_add(r.events.len(), Ordering::Relaxed);
            if let Some(c) = p.and_then(|p| current(self, p)) {
                let top = r.events.iter().map(Ev::rev).max().unwrap_or(0);
                self.chains[c].last_rev = self.chains[c].last_rev.max(top);
            }
        } else if r.watch_id == -1 {
            let settled = self
                .chains
                .iter()
                .all(|c| matches!(c.state, ChainState::Active | ChainState::Ended));
            if settled && self.drain.as_ref().is_some_and(|d| r.header_rev >= d.upto) {
                let d = self.drain.take().expect("checked");
                let _ = d.reply.send(Ok(()));
            }
        }
    }

    fn broken(&mut self, seg: usize, why: String) {
        self.log.segments[seg].end = Some(why.clone());
        self.close();
        self.next_endpoint += 1;
        for chain in &mut self.chains {
            if matches!(
                chain.state,
                ChainState::Creating | ChainState::Active | ChainState::Canceling
            ) {
                chain.state = ChainState::Pending;
                chain.link = Link::AfterBreak;
            }
        }
        if !self.cfg.reconnect {
            self.gave_up = true;
            self.log.notes.push(format!("the stream broke: {why}"));
            for chain in &mut self.chains {
                chain.state = ChainState::Ended;
            }
            if let Some(d) = self.drain.take() {
                let _ = d.reply.send(Err(format!("the stream broke: {why}")));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Writers.

/// State shared by the writers and the test.
#[derive(Default)]
struct Shared {
    /// The highest revision acknowledged so far.
    acked_rev: AtomicI64,
    /// Writes finished (acknowledged or failed).
    done: AtomicUsize,
    stop: AtomicBool,
    /// Write without the pauses of `WriterCfg::max_pause`.
    unpaced: AtomicBool,
    /// Revisions of acknowledged plain puts (safe compaction points).
    put_revs: Mutex<Vec<i64>>,
}

#[derive(Clone)]
struct WriterCfg {
    endpoints: Vec<String>,
    writes: usize,
    value_len: usize,
    /// Percent of big two-key txns (for fragmented responses).
    big_pct: u64,
    big_len: usize,
    call_timeout: Duration,
    /// A pause of up to this long between two writes (spreads the writes
    /// over time so watchers come and go while they happen).
    max_pause: Duration,
}

fn key_space() -> Vec<String> {
    let mut keys = Vec::new();
    for p in ["a", "b", "c"] {
        for i in 0..6 {
            keys.push(format!("{p}/{i}"));
        }
    }
    keys
}

fn make_value(tag: &str, j: usize, len: usize) -> Vec<u8> {
    let mut v = format!("{tag}.{j}.").into_bytes();
    while v.len() < len {
        v.push(b'a' + (v.len() % 26) as u8);
    }
    v
}

fn distinct_keys(rng: &mut Rng, keys: &[String], n: usize) -> Vec<String> {
    let mut picked: Vec<String> = Vec::new();
    while picked.len() < n {
        let k = keys[rng.range(0, keys.len() as u64) as usize].clone();
        if !picked.contains(&k) {
            picked.push(k);
        }
    }
    picked
}

fn gen_request(rng: &mut Rng, tag: &str, keys: &[String], cfg: &WriterCfg) -> Req {
    let put = |key: &str, j: usize, len: usize, prev_kv: bool| Op::Put {
        key: key.to_string(),
        value: make_value(tag, j, len),
        prev_kv,
    };
    let roll = rng.range(0, 100);
    if roll < cfg.big_pct {
        let k = distinct_keys(rng, keys, 2);
        return Req::Txn {
            cmp: k[0].clone(),
            then: vec![
                put(&k[0], 0, cfg.big_len, false),
                put(&k[1], 1, cfg.big_len, false),
            ],
            els: vec![put(&k[1], 0, cfg.value_len, false)],
        };
    }
    if roll < 45 {
        let k = distinct_keys(rng, keys, 1);
        let prev_kv = rng.chance(25);
        return Req::Single(put(&k[0], 0, cfg.value_len, prev_kv));
    }
    if roll < 57 {
        let k = distinct_keys(rng, keys, 1);
        return Req::Single(Op::Del {
            range: Range::key(&k[0]),
            prev_kv: rng.chance(50),
        });
    }
    if roll < 60 {
        let range = match rng.range(0, 3) {
            0 => Range::prefix("b/"),
            1 => Range::between("c/1", "c/4"),
            _ => Range::between("a/4", "b/2"),
        };
        return Req::Single(Op::Del {
            range,
            prev_kv: rng.chance(50),
        });
    }
    let k = distinct_keys(rng, keys, 3);
    Req::Txn {
        cmp: k[0].clone(),
        then: vec![
            put(&k[0], 0, cfg.value_len, false),
            put(&k[1], 1, cfg.value_len, false),
            Op::Del {
                range: Range::key(&k[2]),
                prev_kv: false,
            },
        ],
        els: vec![
            put(&k[1], 0, cfg.value_len, false),
            put(&k[2], 1, cfg.value_len, false),
        ],
    }
}

fn txn_op(op: &Op) -> TxnOp {
    match op {
        Op::Put { key, value, .. } => TxnOp::put(key.clone(), value.clone(), None),
        Op::Del { range, .. } => {
            let mut o = DeleteOptions::new();
            if !range.end.is_empty() {
                o = o.with_range(range.end.clone());
            }
            TxnOp::delete(range.key.clone(), Some(o))
        }
    }
}

fn header_rev(h: Option<&etcd_client::ResponseHeader>) -> i64 {
    h.map_or(-1, |h| h.revision())
}

async fn perform(client: &mut Client, req: &Req) -> Result<Ack, etcd_client::Error> {
    match req {
        Req::Single(Op::Put {
            key,
            value,
            prev_kv,
        }) => {
            let options = prev_kv.then(|| PutOptions::new().with_prev_key());
            let r = client.put(key.clone(), value.clone(), options).await?;
            Ok(Ack {
                header_rev: header_rev(r.header()),
                branch: 0,
                results: vec![OpResult::Put {
                    prev: prev_kv.then(|| r.prev_key().map(Kv::of)),
                }],
            })
        }
        Req::Single(Op::Del { range, prev_kv }) => {
            let mut o = DeleteOptions::new();
            if !range.end.is_empty() {
                o = o.with_range(range.end.clone());
            }
            if *prev_kv {
                o = o.with_prev_key();
            }
            let r = client.delete(range.key.clone(), Some(o)).await?;
            Ok(Ack {
                header_rev: header_rev(r.header()),
                branch: 0,
                results: vec![OpResult::Del {
                    deleted: r.deleted(),
                    prevs: prev_kv.then(|| r.prev_kvs().iter().map(Kv::of).collect()),
                }],
            })
        }
        Req::Txn { cmp, then, els } => {
            let txn = Txn::new()
                .when([Compare::version(cmp.clone(), CompareOp::Greater, 0)])
                .and_then(then.iter().map(txn_op).collect::<Vec<_>>())
                .or_else(els.iter().map(txn_op).collect::<Vec<_>>());
            let r = client.txn(txn).await?;
            let results = r
                .op_responses()
                .iter()
                .map(|o| match o {
                    TxnOpResponse::Delete(d) => OpResult::Del {
                        deleted: d.deleted(),
                        prevs: None,
                    },
                    _ => OpResult::Put { prev: None },
                })
                .collect();
            Ok(Ack {
                header_rev: header_rev(r.header()),
                branch: if r.succeeded() { 0 } else { 1 },
                results,
            })
        }
    }
}

/// Writes until `cfg.writes` are done or `shared.stop`; on a failure moves to
/// the next endpoint. Every attempt is recorded.
async fn writer(id: usize, seed: u64, cfg: WriterCfg, shared: Arc<Shared>) -> Vec<Write> {
    let mut rng = Rng::new(seed.wrapping_add(id as u64 * 0x9e37));
    let keys = key_space();
    let mut endpoint = id;
    let mut client: Option<Client> = None;
    let mut out = Vec::new();
    let mut seq = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seq < cfg.writes && !shared.stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        if client.is_none() {
            let url = cfg.endpoints[endpoint % cfg.endpoints.len()].clone();
            match connect_client(&[url]).await {
                Ok(c) => client = Some(c),
                Err(_) => {
                    endpoint += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let tag = format!("w{id}.{seq}");
        seq += 1;
        let req = gen_request(&mut rng, &tag, &keys, &cfg);
        let c = client.as_mut().expect("connected");
        let result = tokio::time::timeout(cfg.call_timeout, perform(c, &req)).await;
        let mut w = Write {
            tag,
            branches: req.branches(),
            ack: None,
            error: None,
        };
        match result {
            Ok(Ok(ack)) => {
                w.ack = Some(ack);
                if let Some(r) = w.created_rev() {
                    shared.acked_rev.fetch_max(r, Ordering::SeqCst);
                    if req.is_plain_put() {
                        shared
                            .put_revs
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(r);
                    }
                }
            }
            Ok(Err(e)) => w.error = Some(show_err(&e)),
            Err(_) => w.error = Some(format!("no answer within {:?}", cfg.call_timeout)),
        }
        if !cfg.max_pause.is_zero() && !shared.unpaced.load(Ordering::Relaxed) {
            let micros = rng.range(0, cfg.max_pause.as_micros() as u64 + 1);
            tokio::time::sleep(Duration::from_micros(micros)).await;
        }
        if w.error.is_some() {
            client = None;
            endpoint += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shared.done.fetch_add(1, Ordering::SeqCst);
        out.push(w);
    }
    out
}

fn spawn_writers(
    rt: &tokio::runtime::Handle,
    n: usize,
    seed: u64,
    cfg: &WriterCfg,
    shared: &Arc<Shared>,
) -> Vec<tokio::task::JoinHandle<Vec<Write>>> {
    (0..n)
        .map(|i| rt.spawn(writer(i, seed, cfg.clone(), shared.clone())))
        .collect()
}

async fn join_writers(writers: Vec<tokio::task::JoinHandle<Vec<Write>>>) -> Vec<Write> {
    let mut all = Vec::new();
    for w in writers {
        match tokio::time::timeout(Duration::from_secs(150), w).await {
            Ok(Ok(writes)) => all.extend(writes),
            Ok(Err(e)) => panic!("a writer panicked: {e}"),
            Err(_) => panic!("a writer did not finish within 150 s"),
        }
    }
    all
}

// ---------------------------------------------------------------------------
// Small client helpers.

/// The store revision and the number of keys (a linearizable read).
async fn revision_and_count(client: &mut Client) -> Result<(i64, i64), String> {
    let options = GetOptions::new().with_all_keys().with_count_only();
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        client.get(vec![0u8], Some(options)),
    )
    .await
    .map_err(|_| "get timed out".to_string())?
    .map_err(|e| show_err(&e))?;
    Ok((header_rev(r.header()), r.count()))
}

/// Every event from `start` to `last` (whole key space, prev_kv) by a fresh watch.
async fn fresh_events(url: &str, start: i64, last: i64) -> Result<Vec<Ev>, String> {
    let mut events = Vec::new();
    if start > last {
        return Ok(events);
    }
    let client = connect_client(&[url.to_string()]).await?;
    let mut watch = client.watch_client().max_decoding_message_size(MAX_MESSAGE);
    let options = WatchOptions::new()
        .with_all_keys()
        .with_prev_key()
        .with_start_revision(start);
    let mut stream = tokio::time::timeout(
        Duration::from_secs(5),
        watch.watch(vec![0u8], Some(options)),
    )
    .await
    .map_err(|_| "opening the history watch timed out".to_string())?
    .map_err(|e| show_err(&e))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, stream.message())
            .await
            .map_err(|_| {
                format!(
                    "the history watch from {start} reached only revision {} of {last} within 30 s",
                    events.last().map_or(start - 1, Ev::rev)
                )
            })?
            .map_err(|e| show_err(&e))?
            .ok_or("the history watch ended")?;
        if msg.canceled() {
            return Err(format!(
                "the history watch from {start} was cancelled: compact_revision {} {:?}",
                msg.compact_revision(),
                msg.cancel_reason()
            ));
        }
        events.extend(msg.events().iter().map(Ev::of));
        if events.last().is_some_and(|e| e.rev() >= last) {
            return Ok(events);
        }
    }
}

/// Panics listing the violations, if any; prints the summary either way.
fn conclude(test: &str, seed: u64, report: &Report) {
    eprintln!("{test}: {}", report.summary());
    if report.violations.is_empty() {
        return;
    }
    let mut text = String::new();
    for v in report.violations.iter().take(SHOWN_VIOLATIONS) {
        let _ = writeln!(text, "- {v}");
    }
    panic!(
        "{test}: {} watch guarantee violations (seed {seed}; rerun with ETCD_RS_WATCH_SEED={seed}):\n{text}{}",
        report.violations.len(),
        if report.violations.len() > SHOWN_VIOLATIONS {
            "…\n"
        } else {
            ""
        }
    );
}

// ---------------------------------------------------------------------------
// 1. Many watchers under concurrent writes.

/// ~2000 writes from 4 concurrent writers (puts, some with prev_kv; single and
/// range deletes; 2-3 key txns; big 2-key txns whose prev_kv responses exceed
/// --max-request-bytes, for fragments). Watchers: whole key space, prefixes,
/// single keys, ranges, filters, prev_kv, fragment, progress_notify; created
/// before the writes, and mid-way from past revisions (history replay, some
/// on a stream that requests progress every 30 ms while they catch up);
/// watchers cancelled and resumed from their last revision every 200 ms;
/// progress requests throughout.
#[test]
fn watchers_under_concurrent_writes_keep_every_guarantee() {
    let _heavy = heavy_lock();
    let test = "watchers_under_concurrent_writes_keep_every_guarantee";
    let seed = test_seed(test);
    let server = EtcdProcess::start(
        Kind::Ours,
        &[
            "--experimental-watch-progress-notify-interval=100ms",
            "--max-request-bytes=8192",
        ],
    );
    let url = server.client_url();
    let rt = runtime();
    let started = Instant::now();
    let report = rt.block_on(async {
        let h = tokio::runtime::Handle::current();
        let mut client = connect_client(std::slice::from_ref(&url))
            .await
            .expect("connect");
        let (base, keys) = revision_and_count(&mut client).await.expect("revision");
        assert_eq!(keys, 0, "a fresh server has no keys");
        let shared = Arc::new(Shared::default());
        shared.acked_rev.store(base, Ordering::SeqCst);
        let eps = vec![url.clone()];
        let none = Arc::new(AtomicI64::new(0));
        let mut streams = Vec::new();

        let mut a = Stream::spawn(&h, "A", eps.clone(), StreamCfg::plain(), none.clone());
        a.create(Spec::new("all", Range::all(), 0));
        a.create(Spec::new("a/ prev", Range::prefix("a/"), 0).prev_kv());
        a.create(Spec::new("b/1", Range::key("b/1"), 0));
        a.create(Spec::new("all nodelete", Range::all(), 0).no_delete());
        a.create(
            Spec::new("c/ noput prev", Range::prefix("c/"), 0)
                .no_put()
                .prev_kv(),
        );
        a.create(Spec::new("from b/3", Range::from_key("b/3"), 0).progress_notify());
        a.create(
            Spec::new("all prev fragment", Range::all(), base + 1)
                .prev_kv()
                .fragment(),
        );
        a.create(Spec::new("all from the future", Range::all(), base + 1000).prev_kv());

        let progress_cfg = StreamCfg {
            progress_every: Some(Duration::from_millis(30)),
            ..StreamCfg::plain()
        };
        let mut p = Stream::spawn(&h, "P", eps.clone(), progress_cfg.clone(), none.clone());
        p.create(Spec::new("all", Range::all(), 0));
        p.create(Spec::new("b/ notify", Range::prefix("b/"), 0).progress_notify());
        p.create(Spec::new("[a/3, c/2)", Range::between("a/3", "c/2"), base + 1).prev_kv());

        let mut r = Stream::spawn(&h, "R", eps.clone(), StreamCfg::plain(), none.clone());
        let restartable = [
            r.create(Spec::new("all", Range::all(), 0)),
            r.create(Spec::new("a/ prev", Range::prefix("a/"), 0).prev_kv()),
            r.create(Spec::new("c/3", Range::key("c/3"), 0)),
            r.create(Spec::new("all from start", Range::all(), base + 1).progress_notify()),
            r.create(Spec::new("b/ nodelete", Range::prefix("b/"), base + 1).no_delete()),
        ];

        let cfg = WriterCfg {
            endpoints: eps.clone(),
            writes: 500,
            value_len: 24,
            big_pct: 4,
            big_len: 3000,
            call_timeout: Duration::from_secs(10),
            max_pause: Duration::from_millis(8),
        };
        let total = 4 * cfg.writes;
        let writers = spawn_writers(&h, 4, seed, &cfg, &shared);

        let mut late: Vec<Stream> = Vec::new();
        let mut step = 0usize;
        let mut next_restart = 0usize;
        let orchestrate_until = Instant::now() + Duration::from_secs(90);
        while shared.done.load(Ordering::SeqCst) < total && Instant::now() < orchestrate_until {
            tokio::time::sleep(Duration::from_millis(50)).await;
            step += 1;
            let done = shared.done.load(Ordering::SeqCst);
            let rev = shared.acked_rev.load(Ordering::SeqCst);
            if late.is_empty() && done >= total / 4 {
                let mut hs =
                    Stream::spawn(&h, "H", eps.clone(), progress_cfg.clone(), none.clone());
                hs.create(Spec::new("all from 1", Range::all(), 1));
                hs.create(Spec::new("c/ mid", Range::prefix("c/"), rev / 3).prev_kv());
                hs.create(Spec::new("a/2", Range::key("a/2"), 5).prev_kv());
                hs.create(
                    Spec::new("[a/3, b/2) frag", Range::between("a/3", "b/2"), rev / 2)
                        .prev_kv()
                        .fragment(),
                );
                hs.create(
                    Spec::new("all recent", Range::all(), (rev - 20).max(1)).progress_notify(),
                );
                late.push(hs);
            }
            if late.len() == 1 && done >= total / 2 {
                let mut m = Stream::spawn(&h, "M", eps.clone(), StreamCfg::plain(), none.clone());
                m.create(Spec::new("all now", Range::all(), 0));
                m.create(Spec::new("all back 50 prev", Range::all(), (rev - 50).max(1)).prev_kv());
                m.create(Spec::new("b/ from 2", Range::prefix("b/"), 2).no_put());
                m.create(Spec::new("keys >= c/", Range::from_key("c/"), rev / 4));
                late.push(m);
            }
            if step.is_multiple_of(2) {
                r.restart(restartable[next_restart % restartable.len()]);
                next_restart += 1;
            }
            if step.is_multiple_of(3) {
                a.progress();
            }
        }
        let writes = join_writers(writers).await;
        let (last, _) = revision_and_count(&mut client)
            .await
            .expect("final revision");
        eprintln!(
            "{test}: {} writes up to revision {last} in {:?}",
            writes.len(),
            started.elapsed()
        );
        streams.push(a);
        streams.push(p);
        streams.push(r);
        streams.extend(late);
        let logs = drain_and_finish(streams, last).await;

        let mut report = Report::default();
        let (hist, errors) = history_from_writes(base, &writes, &[]);
        report.violations.extend(errors);
        if hist.last != last {
            report.violations.push(format!(
                "the writes end at revision {} but the server is at {last}",
                hist.last
            ));
        }
        match fresh_events(&url, base + 1, last).await {
            Ok(fresh) => {
                report
                    .violations
                    .extend(compare_fresh(&hist, &fresh, base + 1, "history watch"))
            }
            Err(e) => report.violations.push(format!("history watch: {e}")),
        }
        check_logs(&hist, &logs, &mut report);
        report
    });
    eprintln!("{test}: finished in {:?}", started.elapsed());
    conclude(test, seed, &report);
}

// ---------------------------------------------------------------------------
// 2. Compaction while old watchers lag.

/// ~1600 writes; watchers on streams read slowly (2-4 ms per response) from
/// the first revision fall behind as the writes go on, and four physical
/// compactions (each at a plain put's revision at least 100 behind the head)
/// overtake them: they must be cancelled with that compact_revision, having
/// received a gap-free prefix (some resume from the compaction revision and
/// must then see exactly the rest). After each compaction a new stream
/// creates watchers from below it (must be cancelled at once, no events), at
/// it, after it and from now (must not be cancelled unless a later
/// compaction overtakes them). Watchers on a stream read at full speed must
/// never be cancelled once past a compaction.
#[test]
fn compaction_cancels_exactly_the_watchers_that_need_compacted_history() {
    let _heavy = heavy_lock();
    let test = "compaction_cancels_exactly_the_watchers_that_need_compacted_history";
    let seed = test_seed(test);
    let server = EtcdProcess::start(
        Kind::Ours,
        &["--experimental-watch-progress-notify-interval=100ms"],
    );
    let url = server.client_url();
    let rt = runtime();
    let started = Instant::now();
    let report = rt.block_on(async {
        let h = tokio::runtime::Handle::current();
        let mut client = connect_client(std::slice::from_ref(&url))
            .await
            .expect("connect");
        let (base, _) = revision_and_count(&mut client).await.expect("revision");
        let shared = Arc::new(Shared::default());
        shared.acked_rev.store(base, Ordering::SeqCst);
        let compacted = Arc::new(AtomicI64::new(0));
        let eps = vec![url.clone()];
        let slow = |ms: u64| StreamCfg {
            read_delay: Duration::from_millis(ms),
            ..StreamCfg::plain()
        };
        let mut streams = Vec::new();
        let mut s1 = Stream::spawn(&h, "slow1", eps.clone(), slow(2), compacted.clone());
        s1.create(
            Spec::new("all prev", Range::all(), base + 1)
                .prev_kv()
                .resume_after_compaction(),
        );
        s1.create(Spec::new("a/", Range::prefix("a/"), base + 1));
        s1.create(Spec::new("all", Range::all(), base + 1).resume_after_compaction());
        let mut s2 = Stream::spawn(&h, "slow2", eps.clone(), slow(4), compacted.clone());
        s2.create(Spec::new("b/1 prev", Range::key("b/1"), base + 1).prev_kv());
        s2.create(
            Spec::new("[a/2, c/3)", Range::between("a/2", "c/3"), base + 1)
                .resume_after_compaction(),
        );
        s2.create(
            Spec::new("all nodelete", Range::all(), base + 1)
                .no_delete()
                .resume_after_compaction(),
        );
        let mut n = Stream::spawn(
            &h,
            "normal",
            eps.clone(),
            StreamCfg::plain(),
            compacted.clone(),
        );
        n.create(Spec::new("all now", Range::all(), 0));
        n.create(
            Spec::new("c/ prev", Range::prefix("c/"), 0)
                .prev_kv()
                .progress_notify(),
        );
        n.create(Spec::new("all from start prev", Range::all(), base + 1).prev_kv());

        let cfg = WriterCfg {
            endpoints: eps.clone(),
            writes: 400,
            value_len: 24,
            big_pct: 0,
            big_len: 0,
            call_timeout: Duration::from_secs(10),
            max_pause: Duration::from_millis(6),
        };
        let total = 4 * cfg.writes;
        let writers = spawn_writers(&h, 4, seed, &cfg, &shared);
        let mut compactions: Vec<i64> = Vec::new();
        let mut problems: Vec<String> = Vec::new();
        let mut late: Vec<Stream> = Vec::new();
        let until = Instant::now() + Duration::from_secs(90);
        while shared.done.load(Ordering::SeqCst) < total && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let done = shared.done.load(Ordering::SeqCst);
            if compactions.len() >= 4 || done < total * (compactions.len() + 1) / 5 {
                continue;
            }
            let head = shared.acked_rev.load(Ordering::SeqCst);
            let floor = compactions.last().copied().unwrap_or(base);
            let at = shared
                .put_revs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .copied()
                .filter(|&r| r <= head - 100 && r > floor)
                .max();
            let Some(at) = at else { continue };
            let options = CompactionOptions::new().with_physical();
            match tokio::time::timeout(Duration::from_secs(10), client.compact(at, Some(options)))
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    problems.push(format!("compaction at {at} failed: {}", show_err(&e)));
                    continue;
                }
                Err(_) => {
                    problems.push(format!("compaction at {at} timed out"));
                    continue;
                }
            }
            compactions.push(at);
            compacted.store(at, Ordering::SeqCst);
            eprintln!("{test}: compacted at {at} (head {head}, {done} writes done)");
            let k = compactions.len();
            let mut l = Stream::spawn(
                &h,
                &format!("late{k}"),
                eps.clone(),
                StreamCfg::plain(),
                compacted.clone(),
            );
            l.create(
                Spec::new("all below", Range::all(), (at - 10).max(1))
                    .prev_kv()
                    .resume_after_compaction(),
            );
            l.create(Spec::new("a/ from 1", Range::prefix("a/"), 1));
            l.create(Spec::new("all at compaction", Range::all(), at).prev_kv());
            l.create(Spec::new("b/ after", Range::prefix("b/"), at + 5));
            l.create(Spec::new("all now", Range::all(), 0));
            late.push(l);
        }
        let writes = join_writers(writers).await;
        let (last, _) = revision_and_count(&mut client)
            .await
            .expect("final revision");
        eprintln!(
            "{test}: {} writes up to revision {last}, compactions {compactions:?}, in {:?}",
            writes.len(),
            started.elapsed()
        );
        s1.read_delay(Duration::ZERO);
        s2.read_delay(Duration::ZERO);
        streams.push(s1);
        streams.push(s2);
        streams.push(n);
        streams.extend(late);
        let logs = drain_and_finish(streams, last).await;

        let mut report = Report::default();
        report.violations.extend(problems);
        if compactions.len() < 2 {
            report.violations.push(format!(
                "the test compacted only {} times (expected 4)",
                compactions.len()
            ));
        }
        let (hist, errors) = history_from_writes(base, &writes, &compactions);
        report.violations.extend(errors);
        let from = compactions.last().copied().unwrap_or(base + 1);
        match fresh_events(&url, from, last).await {
            Ok(fresh) => report.violations.extend(compare_fresh(
                &hist,
                &fresh,
                from,
                "history watch from the last compaction",
            )),
            Err(e) => report.violations.push(format!("history watch: {e}")),
        }
        check_logs(&hist, &logs, &mut report);
        if report.compacted == 0 {
            report
                .violations
                .push("no watcher was cancelled by a compaction: the test did not test it".into());
        }
        report
    });
    eprintln!("{test}: finished in {:?}", started.elapsed());
    conclude(test, seed, &report);
}

// ---------------------------------------------------------------------------
// 3. A consumer that stops reading.

/// One stream with six watchers (whole key space with and without prev_kv,
/// a prefix, a key, a from-key with NODELETE, and a fragmented replay from
/// the first revision) is not read for 2 s while 8 writers make ~5000 writes
/// of 200-byte values; then it is drained: every watcher must have everything
/// in order, once, in whole revisions. Meanwhile another stream's watcher
/// must keep receiving, and every write must complete.
#[test]
fn a_stalled_consumer_catches_up_without_gaps_or_duplicates() {
    let _heavy = heavy_lock();
    let test = "a_stalled_consumer_catches_up_without_gaps_or_duplicates";
    let seed = test_seed(test);
    let server = EtcdProcess::start(Kind::Ours, &[]);
    let url = server.client_url();
    let rt = runtime();
    let started = Instant::now();
    let report = rt.block_on(async {
        let h = tokio::runtime::Handle::current();
        let mut client = connect_client(std::slice::from_ref(&url))
            .await
            .expect("connect");
        let (base, _) = revision_and_count(&mut client).await.expect("revision");
        let shared = Arc::new(Shared::default());
        shared.acked_rev.store(base, Ordering::SeqCst);
        let none = Arc::new(AtomicI64::new(0));
        let eps = vec![url.clone()];
        let mut slow = Stream::spawn(&h, "stalled", eps.clone(), StreamCfg::plain(), none.clone());
        slow.create(Spec::new("all", Range::all(), 0));
        slow.create(Spec::new("all prev", Range::all(), 0).prev_kv());
        slow.create(Spec::new("b/", Range::prefix("b/"), 0));
        slow.create(Spec::new("c/1 prev", Range::key("c/1"), 0).prev_kv());
        slow.create(Spec::new("from b/3 nodelete", Range::from_key("b/3"), 0).no_delete());
        slow.create(
            Spec::new("all from start fragment", Range::all(), base + 1)
                .prev_kv()
                .fragment(),
        );
        let mut fast = Stream::spawn(&h, "fast", eps.clone(), StreamCfg::plain(), none.clone());
        fast.create(Spec::new("all", Range::all(), 0));
        // Let the watchers be created before the stall.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let cfg = WriterCfg {
            endpoints: eps.clone(),
            writes: 625,
            value_len: 200,
            big_pct: 0,
            big_len: 0,
            call_timeout: Duration::from_secs(20),
            max_pause: Duration::from_millis(3),
        };
        slow.stall(Duration::from_secs(2));
        let writers = spawn_writers(&h, 8, seed, &cfg, &shared);
        let fast_before = fast.delivered();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let fast_during = fast.delivered() - fast_before;
        let done_during = shared.done.load(Ordering::SeqCst);
        let writes = join_writers(writers).await;
        let (last, _) = revision_and_count(&mut client)
            .await
            .expect("final revision");
        eprintln!(
            "{test}: {} writes up to revision {last} in {:?}; {done_during} during the 2 s stall, \
             when the other stream received {fast_during} events",
            writes.len(),
            started.elapsed()
        );
        let logs = drain_and_finish(vec![slow, fast], last).await;

        let mut report = Report::default();
        let (hist, errors) = history_from_writes(base, &writes, &[]);
        report.violations.extend(errors);
        if writes.len() != 8 * cfg.writes {
            report.violations.push(format!(
                "only {} of {} writes were made",
                writes.len(),
                8 * cfg.writes
            ));
        }
        if done_during > 0 && fast_during == 0 {
            report.violations.push(format!(
                "{done_during} writes during the stall, but the other stream received nothing"
            ));
        }
        match fresh_events(&url, base + 1, last).await {
            Ok(fresh) => {
                report
                    .violations
                    .extend(compare_fresh(&hist, &fresh, base + 1, "history watch"))
            }
            Err(e) => report.violations.push(format!("history watch: {e}")),
        }
        check_logs(&hist, &logs, &mut report);
        report
    });
    eprintln!("{test}: finished in {:?}", started.elapsed());
    conclude(test, seed, &report);
}

// ---------------------------------------------------------------------------
// 4. A cluster through a leader kill and a partition.

/// A 3-member cluster (--snapshot-count=1000); a watch stream on each member
/// (whole key space with prev_kv, a prefix, a key with progress_notify, a
/// NODELETE range, all from the first revision) while 6 writers write
/// through any member. The leader is killed with SIGKILL, a new leader
/// elected, writes go on, a stream created mid-way replays history; the
/// killed member restarts; a new stream opens on a follower (the restarted
/// member if it is one), which is then partitioned while the others write
/// 7,000 raft entries past it, and healed: it catches up by a snapshot from
/// the leader (printed), which its watchers must cross without a gap. A
/// stream that breaks resumes its watchers on the next member from their
/// last revision + 1. The true history is a fresh watch from revision 1
/// (identical on every member), every revision of it explained by exactly
/// one attempted write.
#[test]
fn cluster_watchers_keep_guarantees_across_leader_kill_and_partition() {
    let _heavy = heavy_lock();
    let test = "cluster_watchers_keep_guarantees_across_leader_kill_and_partition";
    let seed = test_seed(test);
    let started = Instant::now();
    let mut cluster = Cluster::start(
        "watch-guarantees",
        3,
        &[
            "--experimental-watch-progress-notify-interval=200ms",
            "--snapshot-count=1000",
        ],
    );
    let rt = runtime();
    let h = rt.handle().clone();
    let eps = cluster.endpoints();
    let base = rt
        .block_on(async {
            let mut c = connect_client(&[eps[0].clone()]).await?;
            revision_and_count(&mut c).await
        })
        .expect("the starting revision")
        .0;
    let shared = Arc::new(Shared::default());
    shared.acked_rev.store(base, Ordering::SeqCst);
    let none = Arc::new(AtomicI64::new(0));
    let rotated = |i: usize| -> Vec<String> {
        (0..eps.len())
            .map(|k| eps[(i + k) % eps.len()].clone())
            .collect()
    };
    let cfg = StreamCfg {
        reconnect: true,
        ..StreamCfg::plain()
    };
    let mut streams = Vec::new();
    for i in 0..3 {
        let mut s = Stream::spawn(
            &h,
            &format!("on m{i}"),
            rotated(i),
            cfg.clone(),
            none.clone(),
        );
        s.create(Spec::new("all prev", Range::all(), base + 1).prev_kv());
        s.create(Spec::new("a/", Range::prefix("a/"), base + 1));
        s.create(
            Spec::new("b/2 notify", Range::key("b/2"), base + 1)
                .prev_kv()
                .progress_notify(),
        );
        s.create(
            Spec::new(
                "[b/0, c/3) nodelete",
                Range::between("b/0", "c/3"),
                base + 1,
            )
            .no_delete(),
        );
        streams.push(s);
    }
    let wcfg = WriterCfg {
        endpoints: eps.clone(),
        writes: usize::MAX,
        value_len: 24,
        big_pct: 0,
        big_len: 0,
        call_timeout: Duration::from_secs(3),
        max_pause: Duration::from_millis(10),
    };
    let writers = spawn_writers(&h, 6, seed, &wcfg, &shared);
    std::thread::sleep(Duration::from_millis(1500));

    let leader = cluster.wait_leader(Duration::from_secs(10));
    eprintln!(
        "{test}: kill -9 the leader m{leader} at revision {}",
        shared.acked_rev.load(Ordering::SeqCst)
    );
    cluster.kill9(leader);
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = cluster
        .wait_leader_among(&others, Duration::from_secs(8))
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
    eprintln!("{test}: new leader m{new_leader}");
    std::thread::sleep(Duration::from_millis(1500));
    let rev = shared.acked_rev.load(Ordering::SeqCst);
    let mut mid = Stream::spawn(
        &h,
        "mid-run",
        rotated(new_leader),
        cfg.clone(),
        none.clone(),
    );
    mid.create(Spec::new("all back 100 prev", Range::all(), (rev - 100).max(base + 1)).prev_kv());
    mid.create(Spec::new("c/ from start", Range::prefix("c/"), base + 1));
    mid.create(Spec::new("a/1 from start", Range::key("a/1"), base + 1).progress_notify());
    streams.push(mid);
    cluster.restart(leader);
    eprintln!("{test}: m{leader} restarted");
    std::thread::sleep(Duration::from_millis(1000));

    // Partition a follower that serves watchers (the restarted member if it
    // is one) until the leader has written past the log it keeps for
    // followers: after the heal it catches up by a snapshot, which its
    // watchers must cross without a gap.
    let leader2 = cluster.wait_leader(Duration::from_secs(10));
    let follower = if leader != leader2 {
        leader
    } else {
        (0..3).find(|&i| i != leader2).expect("a follower")
    };
    let mut on_follower = Stream::spawn(
        &h,
        &format!("on m{follower} (partitioned)"),
        rotated(follower),
        cfg.clone(),
        none.clone(),
    );
    on_follower.create(Spec::new("all", Range::all(), base + 1));
    on_follower.create(
        Spec::new("b/ prev notify", Range::prefix("b/"), 0)
            .prev_kv()
            .progress_notify(),
    );
    on_follower.create(Spec::new("all now prev", Range::all(), 0).prev_kv());
    streams.push(on_follower);
    std::thread::sleep(Duration::from_millis(500));
    let behind = cluster
        .status(leader2)
        .unwrap_or_else(|e| panic!("status of the leader: {e}"))
        .raft_index;
    eprintln!(
        "{test}: partition the follower m{follower} at revision {}, raft index {behind}",
        shared.acked_rev.load(Ordering::SeqCst)
    );
    cluster.net().partition(follower);
    shared.unpaced.store(true, Ordering::SeqCst);
    let target = behind + 7_000;
    let until = Instant::now() + Duration::from_secs(40);
    let mut index = behind;
    while index < target && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(s) = cluster.status(leader2) {
            index = s.raft_index;
        }
    }
    shared.unpaced.store(false, Ordering::SeqCst);
    cluster.net().heal(follower);
    eprintln!(
        "{test}: healed at revision {}, raft index {index}",
        shared.acked_rev.load(Ordering::SeqCst)
    );
    std::thread::sleep(Duration::from_millis(1500));
    let snapshots = cluster
        .log_lines(follower, "installing a snapshot from the leader")
        .len();
    eprintln!("{test}: m{follower} installed {snapshots} snapshots from the leader");
    shared.stop.store(true, Ordering::SeqCst);
    let writes = rt.block_on(join_writers(writers));
    let statuses = cluster
        .wait_converged(&[0, 1, 2], Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.all_logs()));
    let last = statuses[0].revision;
    let failed = writes.iter().filter(|w| w.ack.is_none()).count();
    eprintln!(
        "{test}: {} writes ({failed} failed or unknown) up to revision {last} in {:?}",
        writes.len(),
        started.elapsed()
    );
    let mut report = Report::default();
    for s in &statuses {
        if s.revision != last {
            report
                .violations
                .push(format!("members disagree on the revision: {statuses:?}"));
        }
    }
    let logs = rt.block_on(drain_and_finish(streams, last));
    let fresh: Vec<Result<Vec<Ev>, String>> = (0..3)
        .map(|i| rt.block_on(fresh_events(&eps[i], base + 1, last)))
        .collect();
    let hist = match &fresh[0] {
        Ok(events) => {
            let (hist, errors) = history_from_watch(base, events, &writes);
            report.violations.extend(errors);
            hist
        }
        Err(e) => panic!(
            "the history watch on m0 failed: {e}\n{}",
            cluster.all_logs()
        ),
    };
    if hist.last != last {
        report.violations.push(format!(
            "the history watch ends at revision {} but the members are at {last}",
            hist.last
        ));
    }
    for (i, f) in fresh.iter().enumerate().skip(1) {
        match f {
            Ok(events) => report.violations.extend(compare_fresh(
                &hist,
                events,
                base + 1,
                &format!("the history watch on m{i}"),
            )),
            Err(e) => report
                .violations
                .push(format!("the history watch on m{i}: {e}")),
        }
    }
    check_logs(&hist, &logs, &mut report);
    if report.breaks == 0 {
        report
            .violations
            .push("no watch stream broke: the leader kill did not test resumption".into());
    }
    eprintln!("{test}: finished in {:?}", started.elapsed());
    conclude(test, seed, &report);
}

// ---------------------------------------------------------------------------
// 0. The checker itself.

fn synthetic_history() -> History {
    let put = |k: &str, v: &str| Op::Put {
        key: k.into(),
        value: v.into(),
        prev_kv: false,
    };
    let del = |k: &str| Op::Del {
        range: Range::key(k),
        prev_kv: false,
    };
    let steps = [
        vec![put("a/0", "1")],
        vec![put("a/1", "2"), put("b/0", "3")],
        vec![del("a/0")],
        vec![put("a/1", "4")],
        vec![put("b/1", "5"), del("b/0"), put("a/2", "6")],
        vec![put("a/2", "7")],
    ];
    let mut model = Model::default();
    let mut events = Vec::new();
    for (i, ops) in steps.iter().enumerate() {
        events.extend(model.apply(2 + i as i64, ops).0);
    }
    History {
        last: 1 + steps.len() as i64,
        events,
        compactions: vec![4],
    }
}

fn resp(watch_id: i64, header_rev: i64, events: Vec<Ev>) -> Resp {
    Resp {
        watch_id,
        created: false,
        canceled: false,
        compact_revision: 0,
        cancel_reason: String::new(),
        header_rev,
        events,
    }
}

/// A correct stream for one watcher from revision 2: created, one response
/// per revision, a final progress notification.
fn correct_responses(hist: &History, spec: &Spec) -> Vec<Resp> {
    let mut out = vec![Resp {
        created: true,
        ..resp(1, 1, Vec::new())
    }];
    for rev in 2..=hist.last {
        let evs: Vec<Ev> = hist
            .events
            .iter()
            .filter(|e| e.rev() == rev && spec.wants(e))
            .map(|e| Ev {
                prev: if spec.prev_kv { e.prev.clone() } else { None },
                ..e.clone()
            })
            .collect();
        if !evs.is_empty() {
            out.push(resp(1, rev, evs));
        }
    }
    out.push(resp(-1, hist.last, Vec::new()));
    out
}

fn synthetic_log(spec: &Spec, segments: Vec<Vec<Resp>>, phys: Vec<Phys>) -> StreamLog {
    StreamLog {
        label: "synthetic".into(),
        specs: vec![spec.clone()],
        phys,
        segments: segments
            .into_iter()
            .map(|responses| Segment {
                endpoint: "-".into(),
                responses,
                end: None,
            })
            .collect(),
        notes: Vec::new(),
    }
}

fn phys(segment: usize, watch_id: i64, start: i64, link: Link) -> Phys {
    Phys {
        chain: 0,
        segment,
        watch_id,
        start,
        link,
        compacted_before_create: 0,
        cancel_requested: false,
    }
}

fn violations_of(hist: &History, log: StreamLog) -> Vec<String> {
    let mut report = Report::default();
    check_logs(hist, &[log], &mut report);
    report.violations
}

/// Each kind of violation, injected into a correct recording, is reported
/// (and the correct recording is clean). No server involved.
#[test]
fn checker_detects_injected_violations() {
    let hist = synthetic_history();
    let spec = Spec::new("all prev", Range::all(), 2).prev_kv();
    let good = correct_responses(&hist, &spec);
    let one = |responses: Vec<Resp>| {
        synthetic_log(&spec, vec![responses], vec![phys(0, 1, 2, Link::First)])
    };
    let clean = violations_of(&hist, one(good.clone()));
    assert!(
        clean.is_empty(),
        "a correct recording was flagged: {clean:#?}"
    );

    // (what is injected, the recording, a word the violation must contain)
    let mut cases: Vec<(&str, StreamLog, &str)> = Vec::new();
    let mut r = good.clone();
    r.remove(3); // revision 4: the delete of a/0
    cases.push(("a missing revision", one(r), "gap"));
    let mut r = good.clone();
    r.insert(3, good[2].clone());
    cases.push(("a repeated response", one(r), "unique"));
    let mut r = good.clone();
    r.swap(3, 4);
    cases.push(("two revisions swapped", one(r), "ordered"));
    let mut r = good.clone();
    let txn = r[2].clone(); // revision 3: two puts
    r[2] = resp(1, 3, vec![txn.events[0].clone()]);
    r.insert(3, resp(1, 3, vec![txn.events[1].clone()]));
    cases.push(("a txn split in two responses", one(r), "atomic"));
    let mut r = good.clone();
    r.insert(3, resp(-1, 5, Vec::new()));
    cases.push((
        "a progress notification ahead of the events",
        one(r),
        "progress",
    ));
    let mut r = good.clone();
    r.insert(3, resp(1, 4, Vec::new()));
    cases.push((
        "a watcher's own progress notification ahead",
        one(r),
        "progress",
    ));
    let mut r = good.clone();
    r.remove(r.len() - 2); // the last revision, then the final progress
    cases.push(("a lost tail before the final progress", one(r), "progress"));
    let mut r = good.clone();
    r[1].events[0].prev = Some(r[1].events[0].kv.clone());
    cases.push(("a wrong prev_kv", one(r), "prev_kv"));
    let mut r = good.clone();
    r[1].events[0].kv.version = 2;
    cases.push(("a wrong version", one(r), "different event"));
    let mut r = good.clone();
    r.insert(
        4,
        Resp {
            canceled: true,
            compact_revision: 4,
            ..resp(1, 7, Vec::new())
        },
    );
    cases.push((
        "a cancel as compacted after revision 4 was delivered",
        one(r),
        "compacted",
    ));
    let mut r = good.clone();
    r.insert(
        2,
        Resp {
            canceled: true,
            cancel_reason: "because".into(),
            ..resp(1, 7, Vec::new())
        },
    );
    cases.push(("a cancel nobody asked for", one(r), "without a compaction"));

    // A chain: cancelled after revision 3, resumed at 5 (revision 4 skipped).
    let first: Vec<Resp> = good[..3].to_vec();
    let mut second = vec![Resp {
        created: true,
        ..resp(2, 4, Vec::new())
    }];
    second.extend(good[4..].iter().map(|x| Resp {
        watch_id: if x.watch_id == 1 { 2 } else { x.watch_id },
        ..x.clone()
    }));
    let mut seg = first.clone();
    seg.push(Resp {
        canceled: true,
        ..resp(1, 3, Vec::new())
    });
    seg.extend(second);
    let mut p1 = phys(0, 1, 2, Link::First);
    p1.cancel_requested = true;
    let chain = synthetic_log(&spec, vec![seg], vec![p1, phys(0, 2, 5, Link::AfterCancel)]);
    cases.push((
        "a resumption that skips a revision",
        chain,
        "continues at 4",
    ));

    // A watcher created after a compaction at 4 from revision 2 must be cancelled.
    let mut p = phys(0, 1, 2, Link::First);
    p.compacted_before_create = 4;
    cases.push((
        "a watcher from a compacted revision not cancelled",
        synthetic_log(&spec, vec![good.clone()], vec![p]),
        "not cancelled",
    ));

    let mut missed = Vec::new();
    for (what, log, word) in cases {
        let found = violations_of(&hist, log);
        if !found.iter().any(|v| v.contains(word)) {
            missed.push(format!(
                "{what}: expected a violation with {word:?}, got {found:#?}"
            ));
        }
    }
    assert!(
        missed.is_empty(),
        "the checker missed:\n{}",
        missed.join("\n")
    );
}

// ---------------------------------------------------------------------------
// 5. Progress requests racing watcher creation.

/// Many streams, each: a watcher that must catch up on the whole history
/// (a key never written, from revision 1: the server reads everything and
/// delivers nothing), a progress request (pending until that watcher is
/// synced), a pause of 0-4 ms, then a watcher of the whole key space from 30
/// revisions back; writes go on meanwhile. The progress answer must not
/// overtake the second watcher's catch-up once its "created" has arrived.
#[test]
fn progress_requests_racing_watcher_creation() {
    let _heavy = heavy_lock();
    let test = "progress_requests_racing_watcher_creation";
    let seed = test_seed(test);
    let server = EtcdProcess::start(Kind::Ours, &[]);
    let url = server.client_url();
    let rt = runtime();
    let started = Instant::now();
    let report = rt.block_on(async {
        let h = tokio::runtime::Handle::current();
        let mut client = connect_client(std::slice::from_ref(&url))
            .await
            .expect("connect");
        let (base, _) = revision_and_count(&mut client).await.expect("revision");
        let shared = Arc::new(Shared::default());
        shared.acked_rev.store(base, Ordering::SeqCst);
        let none = Arc::new(AtomicI64::new(0));
        let eps = vec![url.clone()];
        let cfg = WriterCfg {
            endpoints: eps.clone(),
            writes: 1500,
            value_len: 24,
            big_pct: 0,
            big_len: 0,
            call_timeout: Duration::from_secs(10),
            max_pause: Duration::ZERO,
        };
        // A history to catch up on, then writes at a slower pace.
        shared.unpaced.store(true, Ordering::SeqCst);
        let writers = spawn_writers(
            &h,
            4,
            seed,
            &WriterCfg {
                max_pause: Duration::from_millis(4),
                ..cfg
            },
            &shared,
        );
        while shared.done.load(Ordering::SeqCst) < 3000
            && started.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shared.unpaced.store(false, Ordering::SeqCst);
        let mut rng = Rng::new(seed);
        let mut streams = Vec::new();
        for i in 0..120 {
            // Watchers that make the next catch-up round long (it filters
            // the history for each of them while holding the hub's lock).
            let mut bulk = Stream::spawn(
                &h,
                &format!("bulk{i}"),
                eps.clone(),
                StreamCfg::plain(),
                none.clone(),
            );
            for k in 0..100 {
                bulk.create(Spec::new(
                    &format!("never written {k}"),
                    Range::key("zz"),
                    1,
                ));
            }
            streams.push(bulk);
            let mut s = Stream::spawn(
                &h,
                &format!("race{i}"),
                eps.clone(),
                StreamCfg::plain(),
                none.clone(),
            );
            s.create(Spec::new("never written, from 1", Range::key("zz"), 1));
            s.progress();
            s.stall(Duration::from_micros(rng.range(0, 4_000)));
            let rev = shared.acked_rev.load(Ordering::SeqCst);
            s.create(Spec::new("all back 30", Range::all(), (rev - 30).max(1)));
            streams.push(s);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let writes = join_writers(writers).await;
        let (last, _) = revision_and_count(&mut client)
            .await
            .expect("final revision");
        eprintln!(
            "{test}: {} writes up to revision {last} in {:?}",
            writes.len(),
            started.elapsed()
        );
        let logs = drain_and_finish(streams, last).await;
        // How often the second watcher's "created" came before the progress
        // answer (the answer then had to wait for its catch-up too).
        let race: Vec<&StreamLog> = logs
            .iter()
            .filter(|l| l.label.starts_with("race"))
            .collect();
        let created_first = race
            .iter()
            .filter(|l| {
                let r = &l.segments.first().map_or(&[][..], |s| &s.responses[..]);
                let created = r.iter().position(|x| x.created && x.watch_id == 2);
                let progress = r.iter().position(|x| x.watch_id == -1);
                matches!((created, progress), (Some(c), Some(p)) if c < p)
            })
            .count();
        eprintln!(
            "{test}: on {created_first} of {} streams the second watcher's created came first",
            race.len()
        );
        let mut report = Report::default();
        let (hist, errors) = history_from_writes(base, &writes, &[]);
        report.violations.extend(errors);
        check_logs(&hist, &logs, &mut report);
        report
    });
    eprintln!("{test}: finished in {:?}", started.elapsed());
    conclude(test, seed, &report);
}
