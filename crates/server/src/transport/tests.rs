//! Transports and services on loopback. Each member's service runs on its own
//! runtime, so a member "crashes" by shutting that runtime down; transports
//! are driven from the test thread, as the raft thread drives them.

use std::net::SocketAddr;
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api::peerpb::raft_client::RaftClient;
use api::peerpb::MessageBatch;
use raft::eraftpb::{Entry, Message, MessageType};
use tokio::runtime::Runtime;
use tokio_stream::wrappers::TcpListenerStream;

use super::snapshot::{chunks, SnapshotJob};
use super::stream::Backoff;
use super::*;

const CLUSTER_ID: u64 = 0xc1;
const WAIT: Duration = Duration::from_secs(10);

fn runtime(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A member's peer listener, with what it received.
struct Member {
    id: u64,
    cluster_id: u64,
    addr: SocketAddr,
    server: Option<Runtime>,
    received: Receiver<Message>,
}

impl Member {
    fn start(id: u64, cluster_id: u64) -> Member {
        Member::start_at(id, cluster_id, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    fn start_at(id: u64, cluster_id: u64, addr: SocketAddr) -> Member {
        let listener = bind(addr);
        let addr = listener.local_addr().expect("local addr");
        let (tx, received) = channel();
        let deliver: Deliver = Arc::new(move |msg| {
            let _ = tx.send(msg);
        });
        let server = runtime(1);
        server.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            tonic::transport::Server::builder()
                .add_service(service(id, cluster_id, deliver, Default::default()))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
        });
        Member {
            id,
            cluster_id,
            addr,
            server: Some(server),
            received,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kills the listener and every connection to it.
    fn crash(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown_background();
        }
    }

    fn restart(&mut self) {
        self.crash();
        *self = Member::start_at(self.id, self.cluster_id, self.addr);
    }

    fn recv(&self) -> Message {
        self.received
            .recv_timeout(WAIT)
            .expect("a message within the wait")
    }

    fn assert_nothing_received(&self, wait: Duration) {
        if let Ok(msg) = self.received.recv_timeout(wait) {
            panic!("member {} received {:?}", self.id, msg.get_msg_type());
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.crash();
    }
}

/// Binds, retrying while a crashed member's port is still being released.
fn bind(addr: SocketAddr) -> std::net::TcpListener {
    let deadline = Instant::now() + WAIT;
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(listener) => {
                listener.set_nonblocking(true).expect("nonblocking");
                return listener;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("bind {addr}: {e}"),
        }
    }
}

/// A loopback URL nobody listens on.
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://{}", listener.local_addr().expect("local addr"))
}

fn heartbeat(from: u64, to: u64, commit: u64) -> Message {
    let mut msg = Message::default();
    msg.set_msg_type(MessageType::MsgHeartbeat);
    msg.from = from;
    msg.to = to;
    msg.commit = commit;
    msg
}

fn append(from: u64, to: u64, index: u64, size_bytes: usize) -> Message {
    let mut msg = Message::default();
    msg.set_msg_type(MessageType::MsgAppend);
    msg.from = from;
    msg.to = to;
    msg.index = index;
    msg.entries.push(Entry {
        index: index + 1,
        data: vec![7u8; size_bytes].into(),
        ..Default::default()
    });
    msg
}

fn snapshot_message(from: u64, to: u64, data: Vec<u8>) -> Message {
    let mut msg = Message::default();
    msg.set_msg_type(MessageType::MsgSnapshot);
    msg.from = from;
    msg.to = to;
    let snapshot = msg.mut_snapshot();
    snapshot.mut_metadata().index = 42;
    snapshot.mut_metadata().term = 3;
    snapshot.set_data(data.into());
    msg
}

fn pattern(size_bytes: usize) -> Vec<u8> {
    (0..size_bytes).map(|i| (i * 31 % 251) as u8).collect()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn messages_arrive_in_order_including_large_appends() {
    let rt = runtime(2);
    let member = Member::start(2, CLUSTER_ID);
    let transport = Transport::new(1, CLUSTER_ID, rt.handle().clone(), Dialer::default());
    transport.add_peer(2, vec![member.url()]);
    transport.add_peer(2, vec![member.url()]); // idempotent

    // Two 3 MiB appends do not fit one batch; a 5 MiB one is over gRPC's default limit.
    let mut msgs: Vec<Message> = (0..1000).map(|i| heartbeat(1, 2, i)).collect();
    msgs.push(append(1, 2, 1000, 3 << 20));
    msgs.push(append(1, 2, 1001, 3 << 20));
    msgs.push(append(1, 2, 1002, 5 << 20));
    msgs.extend((1003..2000).map(|i| heartbeat(1, 2, i)));
    transport.send(msgs);

    for i in 0..2000u64 {
        let msg = member.recv();
        match i {
            1000..=1002 => {
                assert_eq!(msg.get_msg_type(), MessageType::MsgAppend);
                assert_eq!(msg.index, i);
                let size = if i == 1002 { 5 << 20 } else { 3 << 20 };
                assert_eq!(msg.entries[0].data.len(), size);
            }
            _ => {
                assert_eq!(msg.get_msg_type(), MessageType::MsgHeartbeat);
                assert_eq!(msg.commit, i, "in order");
            }
        }
        assert_eq!((msg.from, msg.to), (1, 2));
    }
    assert_eq!(transport.connected_peers(), vec![2]);
    assert!(transport.take_unreachable().is_empty());
    transport.shutdown();
}

#[test]
fn down_peer_blocks_nobody_and_is_reported_unreachable() {
    let rt = runtime(2);
    let member = Member::start(2, CLUSTER_ID);
    let transport = Transport::new(1, CLUSTER_ID, rt.handle().clone(), Dialer::default());
    transport.add_peer(2, vec![member.url()]);
    transport.add_peer(3, vec![dead_url(), dead_url()]);

    let started = Instant::now();
    for i in 0..500 {
        // Far more than member 3's queue holds.
        transport.send((0..20).map(|j| heartbeat(1, 3, i * 20 + j)).collect());
        transport.send(vec![heartbeat(1, 2, i)]);
    }
    transport.send(vec![snapshot_message(1, 3, pattern(1000))]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "send blocked: {:?}",
        started.elapsed()
    );

    for i in 0..500 {
        assert_eq!(member.recv().commit, i);
    }
    let mut unreachable = Vec::new();
    wait_until("member 3 reported unreachable", || {
        unreachable.extend(transport.take_unreachable());
        unreachable.contains(&3)
    });
    assert!(!unreachable.contains(&2), "{unreachable:?}");
    wait_until("the failed snapshot reported", || {
        let reports = transport.take_snapshot_reports();
        assert!(
            reports.iter().all(|&report| report == (3, false)),
            "{reports:?}"
        );
        !reports.is_empty()
    });
    assert_eq!(transport.connected_peers(), vec![2]);
    transport.shutdown();
}

#[test]
fn peer_that_comes_back_receives_new_messages() {
    let rt = runtime(2);
    let mut member = Member::start(2, CLUSTER_ID);
    let transport = Transport::new(1, CLUSTER_ID, rt.handle().clone(), Dialer::default());
    transport.add_peer(2, vec![member.url()]);
    transport.send(vec![heartbeat(1, 2, 1)]);
    assert_eq!(member.recv().commit, 1);

    member.crash();
    wait_until("the broken stream reported", || {
        transport.send(vec![heartbeat(1, 2, 2)]);
        transport.take_unreachable().contains(&2) && transport.connected_peers().is_empty()
    });

    member.restart();
    let mut commit = 100;
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no message after the restart");
        transport.send(vec![heartbeat(1, 2, commit)]);
        commit += 1;
        // Messages queued while it was down may come first (raft tolerates stale ones).
        if let Ok(msg) = member.received.recv_timeout(Duration::from_millis(50)) {
            assert_ne!(
                msg.commit, 1,
                "the message delivered before the crash came again"
            );
            if msg.commit >= 100 {
                break;
            }
        }
    }
    assert_eq!(transport.connected_peers(), vec![2]);
    transport.shutdown();
}

#[test]
fn peer_down_at_start_is_reached_once_it_listens() {
    let rt = runtime(2);
    let url = dead_url();
    let transport = Transport::new(1, CLUSTER_ID, rt.handle().clone(), Dialer::default());
    transport.add_peer(2, vec![url.clone()]);
    // Long enough for the reconnect backoff to grow well past its minimum.
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        transport.send(vec![heartbeat(1, 2, 0)]);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(transport.take_unreachable().contains(&2));
    assert!(transport.connected_peers().is_empty());

    let addr = url.trim_start_matches("http://").parse().expect("address");
    let member = Member::start_at(2, CLUSTER_ID, addr);
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "nothing after the peer started listening"
        );
        transport.send(vec![heartbeat(1, 2, 1)]);
        if let Ok(msg) = member.received.recv_timeout(Duration::from_millis(50)) {
            if msg.commit == 1 {
                break;
            }
        }
    }
    assert_eq!(transport.connected_peers(), vec![2]);
    transport.shutdown();
}

#[test]
fn cluster_id_mismatch_is_refused() {
    let rt = runtime(2);
    let member = Member::start(2, 0xabc);
    let transport = Transport::new(1, 0x1000, rt.handle().clone(), Dialer::default());
    transport.add_peer(2, vec![member.url()]);
    wait_until("member 2 reported unreachable", || {
        transport.send(vec![heartbeat(1, 2, 1)]);
        transport.take_unreachable().contains(&2)
    });
    member.assert_nothing_received(Duration::from_millis(200));

    // The refusal as the sender sees it.
    let url = member.url();
    let response = rt.block_on(async move {
        let mut client = RaftClient::connect(url).await.expect("connect");
        let batch = MessageBatch {
            version: PROTOCOL_VERSION,
            cluster_id: 0x1000,
            from: 1,
            to: 2,
            messages: vec![protobuf::Message::write_to_bytes(&heartbeat(1, 2, 1)).expect("encode")],
        };
        client
            .stream(tokio_stream::iter(vec![batch]))
            .await
            .expect("an answer")
            .into_inner()
    });
    assert_eq!(
        response.error,
        "cluster ID mismatch: local abc, remote 1000"
    );
    member.assert_nothing_received(Duration::from_millis(100));
    transport.shutdown();
}

#[test]
fn snapshot_arrives_intact_and_is_reported() {
    let rt = runtime(2);
    let member = Member::start(2, CLUSTER_ID);
    let transport = Transport::new(1, CLUSTER_ID, rt.handle().clone(), Dialer::default());
    transport.add_peer(2, vec![member.url()]);
    let data = pattern(5 * SNAPSHOT_CHUNK_SIZE_BYTES + 123);
    transport.send(vec![
        heartbeat(1, 2, 1),
        snapshot_message(1, 2, data.clone()),
        heartbeat(1, 2, 2),
    ]);

    let mut heartbeats = Vec::new();
    let mut snapshot = None;
    while snapshot.is_none() || heartbeats.len() < 2 {
        let msg = member.recv();
        match msg.get_msg_type() {
            MessageType::MsgSnapshot => snapshot = Some(msg),
            _ => heartbeats.push(msg.commit),
        }
    }
    assert_eq!(heartbeats, vec![1, 2]);
    let snapshot = snapshot.expect("snapshot");
    assert_eq!((snapshot.from, snapshot.to), (1, 2));
    assert_eq!(snapshot.get_snapshot().get_metadata().index, 42);
    assert_eq!(snapshot.get_snapshot().get_metadata().term, 3);
    assert!(
        snapshot.get_snapshot().get_data() == data.as_slice(),
        "snapshot data differs"
    );
    let mut reports = Vec::new();
    wait_until("the snapshot reported", || {
        reports.extend(transport.take_snapshot_reports());
        !reports.is_empty()
    });
    assert_eq!(reports, vec![(2, true)]);
    transport.shutdown();
}

#[test]
fn corrupted_snapshot_crc_is_refused_and_reported() {
    let rt = runtime(2);
    let member = Member::start(2, CLUSTER_ID);
    let transport = Transport::new(1, CLUSTER_ID, rt.handle().clone(), Dialer::default());
    transport.add_peer(2, vec![member.url()]);
    transport.corrupt_snapshot_crc(true);
    transport.send(vec![snapshot_message(
        1,
        2,
        pattern(2 * SNAPSHOT_CHUNK_SIZE_BYTES + 5),
    )]);
    let mut reports = Vec::new();
    wait_until("the snapshot reported", || {
        reports.extend(transport.take_snapshot_reports());
        !reports.is_empty()
    });
    assert_eq!(reports, vec![(2, false)]);
    assert!(transport.take_unreachable().contains(&2));
    member.assert_nothing_received(Duration::from_millis(200));

    // The refusal as the sender sees it.
    let job = SnapshotJob {
        local_id: 1,
        cluster_id: CLUSTER_ID,
        urls: Vec::new(),
        message: snapshot_message(1, 2, pattern(100)),
        crc_xor: 1,
        dialer: Dialer::default(),
    };
    let url = member.url();
    let response = rt.block_on(async move {
        let mut client = RaftClient::connect(url).await.expect("connect");
        let chunks = chunks(job).expect("chunks");
        client
            .snapshot(tokio_stream::iter(chunks))
            .await
            .expect("an answer")
            .into_inner()
    });
    assert!(
        response.error.starts_with("snapshot CRC mismatch"),
        "{}",
        response.error
    );
    member.assert_nothing_received(Duration::from_millis(100));
    transport.shutdown();
}

#[test]
fn removed_peer_and_shut_down_transport_send_nothing() {
    let rt = runtime(2);
    let member = Member::start(2, CLUSTER_ID);
    let transport = Transport::new(1, CLUSTER_ID, rt.handle().clone(), Dialer::default());
    transport.add_peer(2, vec![member.url()]);
    transport.send(vec![heartbeat(1, 2, 1)]);
    assert_eq!(member.recv().commit, 1);
    transport.remove_peer(2);
    assert!(transport.connected_peers().is_empty());
    transport.send(vec![heartbeat(1, 2, 2)]);
    member.assert_nothing_received(Duration::from_millis(200));

    transport.shutdown();
    transport.add_peer(2, vec![member.url()]);
    transport.send(vec![heartbeat(1, 2, 3)]);
    member.assert_nothing_received(Duration::from_millis(200));
    assert!(transport.connected_peers().is_empty());
}

#[test]
fn update_peer_moves_the_stream() {
    let rt = runtime(2);
    let old = Member::start(2, CLUSTER_ID);
    let new = Member::start(2, CLUSTER_ID);
    let transport = Transport::new(1, CLUSTER_ID, rt.handle().clone(), Dialer::default());
    transport.add_peer(2, vec![old.url()]);
    transport.send(vec![heartbeat(1, 2, 1)]);
    assert_eq!(old.recv().commit, 1);
    transport.update_peer(2, vec![dead_url(), new.url()]);
    let deadline = Instant::now() + WAIT;
    let mut commit = 2;
    loop {
        assert!(Instant::now() < deadline, "nothing at the new URL");
        transport.send(vec![heartbeat(1, 2, commit)]);
        commit += 1;
        if new.received.recv_timeout(Duration::from_millis(50)).is_ok() {
            break;
        }
    }
    transport.shutdown();
}

#[test]
fn backoff_doubles_within_bounds() {
    let mut backoff = Backoff::new();
    let mut ceiling = RECONNECT_BACKOFF_MIN_MS;
    for _ in 0..20 {
        let delay = backoff.next_delay().as_millis() as u64;
        assert!(
            delay >= ceiling / 2 && delay <= ceiling,
            "{delay} ms, ceiling {ceiling} ms"
        );
        ceiling = (ceiling * 2).min(RECONNECT_BACKOFF_MAX_MS);
    }
    backoff.reset();
    assert!(backoff.next_delay() <= Duration::from_millis(RECONNECT_BACKOFF_MIN_MS));
}

#[test]
fn warnings_are_rate_limited() {
    let mut limiter = WarnLimiter::default();
    let start = Instant::now();
    assert_eq!(limiter.allow(start), Some(0));
    assert_eq!(limiter.allow(start + Duration::from_millis(1)), None);
    assert_eq!(limiter.allow(start + Duration::from_millis(2)), None);
    assert_eq!(
        limiter.allow(start + Duration::from_millis(WARN_INTERVAL_MS)),
        Some(2)
    );
}
