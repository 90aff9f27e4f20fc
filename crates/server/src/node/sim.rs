//! A three-member cluster in one thread: the real raft loops (`RaftNode`,
//! with their WALs in temporary dirs) over an in-memory network and one
//! manual clock, driven turn by turn from a seed. Elections, writes, a
//! partition and its healing; the same seed gives the same run, event for
//! event. The seams (`seams::Transport`, `seams::Clock`, `RaftNode::turn`)
//! are what make this possible.

use std::collections::VecDeque;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft::eraftpb::{ConfChange, EntryType, Message};

use super::bootstrap;
use super::raft_node::{raft_config, ApplyBatch, Parts, RaftMsg, RaftNode, RaftStatus};
use super::raft_storage::RaftStorage;
use super::seams::{ManualClock, PeerChange, Transport};
use super::wait::Wait;
use crate::config::Config;
use crate::metrics::{Metrics, MetricsLevel};

const TICK: Duration = Duration::from_millis(100);
const MEMBERS: usize = 3;
/// Rounds any phase may take at most (each round: every member one turn).
const ROUNDS_MAX: usize = 400;

/// A member's end of the in-memory network: what it sends waits here until
/// the simulation delivers it.
#[derive(Default)]
struct Outbox(Mutex<Vec<Message>>);

impl Transport for Outbox {
    fn send(&self, msgs: Vec<Message>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(msgs);
    }

    fn take_unreachable(&self) -> Vec<u64> {
        Vec::new()
    }

    fn take_snapshot_reports(&self) -> Vec<(u64, bool)> {
        Vec::new()
    }

    fn membership_changed(&self, _change: PeerChange) {}
}

struct Member {
    id: u64,
    node: RaftNode,
    outbox: Arc<Outbox>,
    applied: Receiver<ApplyBatch>,
    inbox: VecDeque<RaftMsg>,
    /// The payloads of the normal entries applied, in log order.
    log: Vec<Vec<u8>>,
    status: Arc<RaftStatus>,
}

struct Sim {
    members: Vec<Member>,
    clock: Arc<ManualClock>,
    /// Orders the turns and draws the network's losses and delays.
    rng: fastrand::Rng,
    /// Members cut off from every other.
    isolated: Vec<u64>,
    /// Messages the network holds back for a round.
    delayed: Vec<Message>,
    /// What happened, for comparing two runs of one seed.
    trace: Vec<String>,
    next_request: u64,
    _dir: tempfile::TempDir,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new();
        let names: Vec<String> = (1..=MEMBERS).map(|i| format!("m{i}")).collect();
        let cluster: Vec<(String, Vec<String>)> = names
            .iter()
            .map(|n| (n.clone(), vec![format!("http://{n}:2380")]))
            .collect();
        let mut members = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let mut cfg = Config::default().with_name(name);
            cfg.data_dir = dir.path().join(format!("{name}.etcd"));
            cfg.initial_advertise_peer_urls = vec![format!("http://{name}:2380")];
            cfg.initial_cluster = cluster.clone();
            let boot = bootstrap::open(&cfg, None).expect("found a member");
            let store = Arc::new(
                mvcc::Store::open(&cfg.snap_dir().join("db"), mvcc::StoreOptions::default())
                    .expect("open the backend"),
            );
            let metrics = Arc::new(Metrics::new(MetricsLevel::Basic));
            let snapshotter = Arc::new(boot.snapshotter);
            let storage = RaftStorage::new(
                boot.storage,
                snapshotter.clone(),
                store,
                metrics.backend_snapshot.clone(),
                clock.clone(),
            );
            // One election timeout per member (raft-rs draws it from
            // [min, max), a range of one here): the run depends on the seed only.
            let mut raft_cfg = raft_config(boot.member_id, 10, boot.snapshot_index, true);
            raft_cfg.min_election_tick = 10 + 3 * i;
            raft_cfg.max_election_tick = 11 + 3 * i;
            raft_cfg.validate().expect("raft config");
            let logger = slog::Logger::root(slog::Discard, slog::o!());
            let raw = raft::RawNode::new(&raft_cfg, storage, &logger).expect("raft");
            let outbox = Arc::new(Outbox::default());
            let (apply_tx, applied) = channel();
            let status = Arc::new(RaftStatus::default());
            let mut node = RaftNode::new(Parts {
                member_id: boot.member_id,
                raw,
                wal: boot.wal,
                snapshotter,
                snap_dir: cfg.snap_dir(),
                apply_tx,
                status: status.clone(),
                wait: Arc::new(Wait::default()),
                transport: outbox.clone(),
                clock: clock.clone(),
                lessor: Arc::new(lease::Lessor::new(lease::LessorConfig::default())),
                tick_interval: TICK,
                metrics,
            });
            node.start().expect("start the raft loop");
            members.push(Member {
                id: boot.member_id,
                node,
                outbox,
                applied,
                inbox: VecDeque::new(),
                log: Vec::new(),
                status,
            });
        }
        Sim {
            members,
            clock,
            rng: fastrand::Rng::with_seed(seed),
            isolated: Vec::new(),
            delayed: Vec::new(),
            trace: Vec::new(),
            next_request: 1,
            _dir: dir,
        }
    }

    /// One round: the clock moves a tick, every member takes one turn (in a
    /// seeded order) with what reached it, then the network delivers.
    fn round(&mut self) {
        self.clock.advance(TICK);
        let mut order: Vec<usize> = (0..self.members.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, self.rng.usize(..=i));
        }
        for &i in &order {
            let m = &mut self.members[i];
            let msgs: Vec<RaftMsg> = m.inbox.drain(..).collect();
            m.node.turn(msgs).expect("a turn of the raft loop");
            // The applier's part: conf changes go back to the loop, in log
            // order; normal entries are the state machine.
            while let Ok(batch) = m.applied.try_recv() {
                let ApplyBatch::Entries(entries) = batch else {
                    panic!("no snapshot is expected in this run");
                };
                for e in entries {
                    match e.get_entry_type() {
                        EntryType::EntryConfChange => {
                            let cc: ConfChange = protobuf::Message::parse_from_bytes(&e.data)
                                .expect("a conf change entry");
                            let (reply, _) = channel();
                            m.inbox.push_back(RaftMsg::ApplyConfChange {
                                cc: Some(cc),
                                index: e.index,
                                reply,
                            });
                        }
                        EntryType::EntryNormal if !e.data.is_empty() => {
                            m.log.push(e.data.to_vec());
                        }
                        _ => {}
                    }
                }
            }
        }
        self.deliver();
        let states: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}:{}", m.status.term(), m.status.leader() % 1000))
            .collect();
        self.trace.push(states.join(" "));
    }

    /// Hands the sent messages to their members: one in ten is lost and one
    /// in ten held back a round (as the seed draws it), all of an isolated
    /// member's are lost. Raft copes with both; nothing else reorders.
    fn deliver(&mut self) {
        let mut sent: Vec<Message> = std::mem::take(&mut self.delayed);
        for m in &self.members {
            sent.append(&mut m.outbox.0.lock().unwrap_or_else(|p| p.into_inner()));
        }
        sent.sort_by_key(|msg| (msg.to, msg.from));
        for msg in sent {
            if self.isolated.contains(&msg.from) || self.isolated.contains(&msg.to) {
                continue;
            }
            match self.rng.u8(..10) {
                0 => continue,
                1 => {
                    self.delayed.push(msg);
                    continue;
                }
                _ => {}
            }
            if let Some(to) = self.members.iter_mut().find(|m| m.id == msg.to) {
                to.inbox.push_back(RaftMsg::Step(Box::new(msg)));
            }
        }
    }

    /// The leader that every member not isolated agrees on, once there is one.
    fn agreed_leader(&self) -> Option<u64> {
        let mut seen = self
            .members
            .iter()
            .filter(|m| !self.isolated.contains(&m.id))
            .map(|m| m.status.leader());
        let first = seen.next()?;
        (first != 0 && seen.all(|l| l == first)).then_some(first)
    }

    fn until(&mut self, what: &str, done: impl Fn(&Sim) -> bool) {
        for _ in 0..ROUNDS_MAX {
            if done(self) {
                self.trace.push(format!("reached: {what}"));
                return;
            }
            self.round();
        }
        panic!("not reached in {ROUNDS_MAX} rounds: {what}");
    }

    fn propose(&mut self, at: u64, data: &str) {
        let id = self.next_request;
        self.next_request += 1;
        let m = self
            .members
            .iter_mut()
            .find(|m| m.id == at)
            .expect("a member");
        m.inbox.push_back(RaftMsg::Propose {
            id,
            data: data.as_bytes().to_vec(),
        });
        self.trace.push(format!("propose {data} at {}", at % 1000));
    }

    fn logs(&self) -> Vec<Vec<String>> {
        self.members
            .iter()
            .map(|m| {
                m.log
                    .iter()
                    .map(|d| String::from_utf8_lossy(d).into_owned())
                    .collect()
            })
            .collect()
    }

    /// State machine safety: any two applied logs agree where both have entries.
    fn assert_prefixes(&self) {
        let logs = self.logs();
        for a in &logs {
            for b in &logs {
                let n = a.len().min(b.len());
                assert_eq!(a[..n], b[..n], "two members applied different entries");
            }
        }
    }
}

/// Elections, writes, the leader cut off and a new one elected, writes on
/// both sides, healing: the majority's writes survive everywhere, the cut
/// off leader's never apply. Returns the run's trace.
fn run(seed: u64) -> Vec<String> {
    let mut sim = Sim::new(seed);
    sim.until("a leader", |s| s.agreed_leader().is_some());
    let first = sim.agreed_leader().expect("a leader");
    for i in 0..5 {
        sim.propose(first, &format!("a{i}"));
    }
    sim.until("five writes applied everywhere", |s| {
        s.members.iter().all(|m| m.log.len() == 5)
    });
    sim.assert_prefixes();

    sim.isolated = vec![first];
    sim.trace.push(format!("isolate {}", first % 1000));
    sim.until("a new leader on the majority side", |s| {
        s.agreed_leader().is_some_and(|l| l != first)
    });
    let second = sim.agreed_leader().expect("a leader");
    sim.propose(first, "lost");
    for i in 0..3 {
        sim.propose(second, &format!("b{i}"));
    }
    sim.until("the majority applied its writes", |s| {
        s.members
            .iter()
            .filter(|m| m.id != first)
            .all(|m| m.log.len() == 8)
    });
    sim.assert_prefixes();

    sim.isolated.clear();
    sim.trace.push("heal".into());
    sim.until("every member applied the same eight writes", |s| {
        s.members.iter().all(|m| m.log.len() == 8)
    });
    for _ in 0..20 {
        sim.round();
    }
    sim.assert_prefixes();
    let logs = sim.logs();
    let want: Vec<String> = (0..5)
        .map(|i| format!("a{i}"))
        .chain((0..3).map(|i| format!("b{i}")))
        .collect();
    for log in &logs {
        assert_eq!(
            log, &want,
            "the majority's writes, in order, and nothing else"
        );
    }
    sim.trace
}

#[test]
fn three_members_elect_write_partition_and_heal_the_same_way_from_one_seed() {
    let seed = std::env::var("ETCD_RS_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0001);
    let first = run(seed);
    let again = run(seed);
    assert_eq!(first, again, "seed {seed}: two runs differ");
}
