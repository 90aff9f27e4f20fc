//! A multi-member cluster harness for the multi-process tests, with a
//! fault-injecting TCP proxy on the peer network.
//!
//! ```text
//!   member i: --listen-peer-urls=http://127.0.0.1:<peer_port i>          (real)
//!             --initial-advertise-peer-urls=http://127.0.0.1:<proxy_port i>
//!             --initial-cluster=m0=<proxy 0>,m1=<proxy 1>,...
//!
//!   member j ──dial──▶ proxy i (a thread in the test process) ──▶ member i
//! ```
//! Every peer connection to member i goes through proxy i. The proxy learns
//! which member opened a connection from the kernel (the client socket's inode
//! in /proc/net/tcp, found among the fds of each member's process), so a link
//! between two members can be cut in both directions:
//! - a new connection across a cut link is accepted and then held without ever
//!   being forwarded (a black hole: no RST, the dialer times out);
//! - an existing connection across a cut link stalls: bytes read from either
//!   side are held, not written, until the link heals (then they flow again,
//!   like TCP after a partition; the members' HTTP/2 keepalives usually have
//!   given up on them by then).
//!
//! Every wait is bounded; everything (processes, proxy threads) is killed or
//! closed on Drop. Member i is named `m{i}`; its data directory and its log
//! (all its starts appended) live in one temporary directory per cluster.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions};
use tempfile::TempDir;

use crate::common::{free_port, http_get, tail, temp_dir, Kind, LOG_TAIL_LINES};

/// Raft timing of the test clusters (etcd's defaults are 100 / 1000).
pub const HEARTBEAT_MS: u64 = 50;
pub const ELECTION_MS: u64 = 500;
/// How long a whole cluster may take to become healthy.
pub const CLUSTER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one restarted member may take to become healthy.
pub const MEMBER_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a member may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one harness call to a member (status, dump).
pub const HARNESS_CALL_TIMEOUT: Duration = Duration::from_secs(3);
const START_ATTEMPTS: usize = 3;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------
// The proxy network.

/// What one member reports in Maintenance.Status (plus the response header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    pub member_id: u64,
    pub leader: u64,
    pub raft_index: u64,
    pub raft_term: u64,
    pub raft_applied_index: u64,
    pub revision: i64,
}

/// One key as a member holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpKv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
}

/// Every key a member holds (a serializable read), with the store revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dump {
    pub revision: i64,
    pub kvs: Vec<DumpKv>,
}

struct NetState {
    /// Directed links (from member, to member) that are cut.
    blocked: HashSet<(usize, usize)>,
    /// The process of each member, while it runs (to name a connection's source).
    pids: Vec<Option<u32>>,
    /// The real peer port of each member (where proxy i forwards).
    upstream: Vec<u16>,
    /// Both ends of every live connection, for shutdown.
    conns: Vec<(Arc<AtomicBool>, TcpStream, TcpStream)>,
    /// Connections whose source could not be identified.
    unidentified: u64,
}

struct NetInner {
    state: Mutex<NetState>,
    stopped: AtomicBool,
    accepted: AtomicU64,
}

impl NetInner {
    /// True while traffic from `from` (None: unknown) to `to` must not pass.
    fn blocked(&self, from: Option<usize>, to: Option<usize>) -> bool {
        let state = lock(&self.state);
        match (from, to) {
            (Some(f), Some(t)) => state.blocked.contains(&(f, t)),
            // Unknown source: blocked if the destination is cut off from anyone.
            (None, Some(t)) => state.blocked.iter().any(|&(_, d)| d == t),
            (Some(f), None) => state.blocked.iter().any(|&(s, _)| s == f),
            (None, None) => false,
        }
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

/// One proxy per member on the peer network, and the cut links between members.
pub struct Network {
    inner: Arc<NetInner>,
    proxy_ports: Vec<u16>,
    listeners: Vec<thread::JoinHandle<()>>,
}

impl Network {
    /// Binds one proxy port per member (forwarding to `upstream[i]`).
    fn start(upstream: Vec<u16>) -> Network {
        let n = upstream.len();
        let inner = Arc::new(NetInner {
            state: Mutex::new(NetState {
                blocked: HashSet::new(),
                pids: vec![None; n],
                upstream,
                conns: Vec::new(),
                unidentified: 0,
            }),
            stopped: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
        });
        let mut proxy_ports = Vec::new();
        let mut listeners = Vec::new();
        for dst in 0..n {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind a proxy port");
            let port = listener.local_addr().expect("proxy address").port();
            proxy_ports.push(port);
            let inner = inner.clone();
            listeners.push(
                thread::Builder::new()
                    .name(format!("proxy-{dst}"))
                    .spawn(move || accept_loop(inner, listener, dst, port))
                    .expect("spawn a proxy thread"),
            );
        }
        Network {
            inner,
            proxy_ports,
            listeners,
        }
    }

    fn set_pid(&self, member: usize, pid: Option<u32>) {
        lock(&self.inner.state).pids[member] = pid;
    }

    fn set_upstream(&self, member: usize, port: u16) {
        lock(&self.inner.state).upstream[member] = port;
    }

    /// Cuts the link between `a` and `b`, both directions.
    pub fn cut(&self, a: usize, b: usize) {
        let mut state = lock(&self.inner.state);
        state.blocked.insert((a, b));
        state.blocked.insert((b, a));
    }

    /// Cuts every link of `member`.
    pub fn partition(&self, member: usize) {
        let n = self.proxy_ports.len();
        for other in (0..n).filter(|&o| o != member) {
            self.cut(member, other);
        }
    }

    /// Restores every link of `member`.
    pub fn heal(&self, member: usize) {
        lock(&self.inner.state)
            .blocked
            .retain(|&(a, b)| a != member && b != member);
    }

    pub fn heal_all(&self) {
        lock(&self.inner.state).blocked.clear();
    }

    /// The cut directed links.
    pub fn cut_links(&self) -> BTreeSet<(usize, usize)> {
        lock(&self.inner.state).blocked.iter().copied().collect()
    }

    /// (connections accepted so far, of which the source was not identified).
    pub fn stats(&self) -> (u64, u64) {
        (
            self.inner.accepted.load(Ordering::Relaxed),
            lock(&self.inner.state).unidentified,
        )
    }

    fn stop(&mut self) {
        self.inner.stopped.store(true, Ordering::Release);
        {
            let state = lock(&self.inner.state);
            for (_, a, b) in &state.conns {
                let _ = a.shutdown(Shutdown::Both);
                let _ = b.shutdown(Shutdown::Both);
            }
        }
        // Wake each accept() with a connection of our own.
        for port in &self.proxy_ports {
            let _ = TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], *port)),
                Duration::from_millis(200),
            );
        }
        for listener in self.listeners.drain(..) {
            let _ = listener.join();
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(inner: Arc<NetInner>, listener: TcpListener, dst: usize, proxy_port: u16) {
    for conn in listener.incoming() {
        if inner.stopped() {
            return;
        }
        let Ok(conn) = conn else { continue };
        inner.accepted.fetch_add(1, Ordering::Relaxed);
        let inner = inner.clone();
        let _ = thread::Builder::new()
            .name(format!("proxy-{dst}-conn"))
            .spawn(move || handle_conn(inner, conn, dst, proxy_port));
    }
}

/// Forwards one accepted connection to member `dst` (or holds it while the link is cut).
fn handle_conn(inner: Arc<NetInner>, client: TcpStream, dst: usize, proxy_port: u16) {
    let _ = client.set_nodelay(true);
    let src = match client.peer_addr() {
        Ok(addr) => identify_source(&inner, addr.port(), proxy_port),
        Err(_) => return,
    };
    if src.is_none() {
        lock(&inner.state).unidentified += 1;
    }
    // A new connection across a cut link is a black hole until the dialer gives up.
    while inner.blocked(src, Some(dst)) {
        if inner.stopped() || peer_closed(&client) {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let upstream_port = lock(&inner.state).upstream[dst];
    let Ok(upstream) = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], upstream_port)),
        Duration::from_secs(1),
    ) else {
        return; // the member is down: the dialer sees the connection close
    };
    let _ = upstream.set_nodelay(true);
    let done = Arc::new(AtomicBool::new(false));
    let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = (
        client.try_clone(),
        upstream.try_clone(),
        client.try_clone(),
        upstream.try_clone(),
    ) else {
        return;
    };
    {
        let mut state = lock(&inner.state);
        state.conns.retain(|(d, _, _)| !d.load(Ordering::Acquire));
        state.conns.push((done.clone(), c3, u3));
    }
    let back = {
        let inner = inner.clone();
        let done = done.clone();
        thread::Builder::new()
            .name(format!("proxy-{dst}-back"))
            .spawn(move || pump(&inner, u2, c2, Some(dst), src, &done))
    };
    pump(&inner, client, upstream, src, Some(dst), &done);
    if let Ok(back) = back {
        let _ = back.join();
    }
}

/// Copies `from` → `to`, holding the bytes while the link (a → b) is cut.
fn pump(
    inner: &NetInner,
    mut from: TcpStream,
    mut to: TcpStream,
    a: Option<usize>,
    b: Option<usize>,
    done: &AtomicBool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    'copy: loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while inner.blocked(a, b) {
            if inner.stopped() || done.load(Ordering::Acquire) {
                break 'copy;
            }
            thread::sleep(Duration::from_millis(5));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    done.store(true, Ordering::Release);
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// True when the other end closed (a read would return EOF). Does not consume data.
fn peer_closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    let closed = match stream.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    let _ = stream.set_nonblocking(false);
    closed
}

/// Which member's process owns the client end (local port `client_port`,
/// connected to `proxy_port`) of an accepted connection.
fn identify_source(inner: &NetInner, client_port: u16, proxy_port: u16) -> Option<usize> {
    for _ in 0..10 {
        if let Some(inode) = socket_inode(client_port, proxy_port) {
            let pids = lock(&inner.state).pids.clone();
            let target = format!("socket:[{inode}]");
            for (member, pid) in pids.iter().enumerate() {
                let Some(pid) = pid else { continue };
                let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                    continue;
                };
                for fd in fds.flatten() {
                    if std::fs::read_link(fd.path())
                        .is_ok_and(|l| l.to_string_lossy() == target.as_str())
                    {
                        return Some(member);
                    }
                }
            }
        }
        thread::sleep(Duration::from_millis(2));
    }
    None
}

/// The inode of the TCP socket with local port `local` and remote port `remote`.
fn socket_inode(local: u16, remote: u16) -> Option<u64> {
    let port_of = |field: &str| {
        field
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 {
                continue;
            }
            if port_of(fields[1]) == Some(local) && port_of(fields[2]) == Some(remote) {
                if let Ok(inode) = fields[9].parse::<u64>() {
                    if inode != 0 {
                        return Some(inode);
                    }
                }
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Members and the cluster.

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// Learned from Status once the cluster is up.
    id: u64,
}

/// N of our members on loopback, their peer traffic through a [`Network`].
pub struct Cluster {
    /// Which `etcd` the members run (ours unless a test says otherwise).
    kind: Kind,
    label: String,
    token: String,
    members: Vec<Member>,
    net: Network,
    extra_args: Vec<String>,
    rt: tokio::runtime::Runtime,
    // Last: removed after every process is dead.
    dir: TempDir,
}

static CLUSTERS: AtomicU64 = AtomicU64::new(0);

impl Cluster {
    /// Starts `n` members with `extra_args` and waits until every member's
    /// /health is true (bounded); `label` names the test in the cluster token.
    pub fn start(label: &str, n: usize, extra_args: &[&str]) -> Cluster {
        Cluster::start_of(Kind::Ours, label, n, extra_args)
    }

    /// [`Cluster::start`] with members running the `etcd` of `kind`.
    pub fn start_of(kind: Kind, label: &str, n: usize, extra_args: &[&str]) -> Cluster {
        for attempt in 1..=START_ATTEMPTS {
            let mut cluster = Cluster::spawn_all(kind, label, n, extra_args);
            match cluster.wait_all_healthy(CLUSTER_START_TIMEOUT) {
                Ok(()) => {
                    cluster.learn_ids();
                    return cluster;
                }
                Err(e) => {
                    let ports_taken =
                        (0..n).any(|i| cluster.log_contents(i).contains("address already in use"));
                    if ports_taken && attempt < START_ATTEMPTS {
                        eprintln!("{label}: a port was taken; starting the cluster again");
                        continue; // Drop kills this attempt
                    }
                    panic!(
                        "{label}: the cluster did not start: {e}\n{}",
                        cluster.all_logs()
                    );
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn_all(kind: Kind, label: &str, n: usize, extra_args: &[&str]) -> Cluster {
        let dir = temp_dir();
        let peer_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let net = Network::start(peer_ports.clone());
        let token = format!(
            "etcd-rs-{label}-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        );
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: peer_ports[i],
                child: None,
                data_dir: dir.path().join(format!("m{i}.etcd")),
                log_path: dir.path().join(format!("m{i}.log")),
                id: 0,
            })
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("harness runtime");
        let mut cluster = Cluster {
            kind,
            label: label.to_string(),
            token,
            members,
            net,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            rt,
            dir,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster
    }

    pub fn size(&self) -> usize {
        self.members.len()
    }

    pub fn net(&self) -> &Network {
        &self.net
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// `http://127.0.0.1:<client port>` of member i.
    pub fn client_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// `127.0.0.1:<client port>` of member i (etcdctl's --endpoints form).
    pub fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.size()).map(|i| self.client_url(i)).collect()
    }

    /// The peer URL member i advertises (its proxy).
    pub fn peer_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.net.proxy_ports[i])
    }

    /// The peer URL member i listens on (behind its proxy).
    pub fn listen_peer_url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].peer_port)
    }

    pub fn client_port(&self, i: usize) -> u16 {
        self.members[i].client_port
    }

    /// Member i's ID (as its Status reported it when the cluster came up).
    pub fn member_id(&self, i: usize) -> u64 {
        self.members[i].id
    }

    /// The index of the member with `id`.
    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.members.iter().position(|m| m.id == id && id != 0)
    }

    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.members[i].data_dir.clone()
    }

    pub fn initial_cluster(&self) -> String {
        (0..self.size())
            .map(|i| format!("{}={}", self.members[i].name, self.peer_url(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn args(&self, i: usize) -> Vec<String> {
        let m = &self.members[i];
        let client = self.client_url(i);
        let mut args = vec![
            format!("--name={}", m.name),
            format!("--data-dir={}", m.data_dir.display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={}", self.listen_peer_url(i)),
            format!("--initial-advertise-peer-urls={}", self.peer_url(i)),
            format!("--initial-cluster={}", self.initial_cluster()),
            format!("--initial-cluster-token={}", self.token),
            "--initial-cluster-state=new".to_string(),
            format!("--heartbeat-interval={HEARTBEAT_MS}"),
            format!("--election-timeout={ELECTION_MS}"),
        ];
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// The `etcd` that members started from now on run (a stopped member
    /// restarted by another implementation on its own data dir).
    pub fn set_kind(&mut self, kind: Kind) {
        self.kind = kind;
    }

    /// Replaces the extra flags members get from their next start on.
    pub fn set_extra_args(&mut self, extra_args: &[&str]) {
        self.extra_args = extra_args.iter().map(|s| s.to_string()).collect();
    }

    /// Starts member i's process (it must not be running); does not wait.
    pub fn spawn(&mut self, i: usize) {
        assert!(
            self.members[i].child.is_none(),
            "{} is already running",
            self.members[i].name
        );
        let args = self.args(i);
        let m = &mut self.members[i];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log_path)
            .expect("open the member's log");
        let log_err = log.try_clone().expect("clone the log handle");
        let bin = self.kind.etcd_bin();
        let child = Command::new(&bin)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        self.net.set_pid(i, Some(child.id()));
        m.child = Some(child);
    }

    /// SIGKILL member i (if it runs), then reap it.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.net.set_pid(i, None);
    }

    /// SIGTERM member i and wait (bounded) for it to exit; its exit status.
    pub fn terminate(&mut self, i: usize) -> std::process::ExitStatus {
        let mut child = self.members[i]
            .child
            .take()
            .unwrap_or_else(|| panic!("terminate: {} is not running", self.members[i].name));
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.net.set_pid(i, None);
                panic!(
                    "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM:\n{}",
                    self.members[i].name,
                    self.log_tail(i)
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        self.net.set_pid(i, None);
        status
    }

    /// Starts member i again (same flags and data) and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        if self.members[i].child.is_some() {
            self.terminate(i);
        }
        self.spawn(i);
        if let Err(e) = self.wait_healthy(i, MEMBER_START_TIMEOUT) {
            panic!(
                "{}: restarted {} {e}\n{}",
                self.label,
                self.members[i].name,
                self.all_logs()
            );
        }
    }

    /// True while member i's process has not exited.
    pub fn is_running(&mut self, i: usize) -> bool {
        match self.members[i].child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The exit status of member i if its process exited on its own.
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        self.members[i]
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn running(&mut self) -> Vec<usize> {
        (0..self.size()).filter(|&i| self.is_running(i)).collect()
    }

    /// True when member i's `/health` answers `"health":"true"`.
    pub fn is_healthy(&self, i: usize) -> bool {
        http_get(self.members[i].client_port, "/health")
            .is_some_and(|r| r.contains(r#""health":"true""#))
    }

    /// Waits until member i is healthy; an error if it exits or the time runs out.
    pub fn wait_healthy(&mut self, i: usize, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited(i) {
                return Err(format!("exited with {status}"));
            }
            if self.members[i].child.is_none() {
                return Err("is not running".into());
            }
            if self.is_healthy(i) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("was not healthy within {timeout:?}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every running member is healthy.
    pub fn wait_all_healthy(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        for i in 0..self.size() {
            if self.members[i].child.is_none() {
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            self.wait_healthy(i, left)
                .map_err(|e| format!("{} {e}", self.members[i].name))?;
        }
        Ok(())
    }

    fn learn_ids(&mut self) {
        for i in 0..self.size() {
            let status = self
                .status(i)
                .unwrap_or_else(|e| panic!("{}: status of m{i}: {e}", self.label));
            self.members[i].id = status.member_id;
        }
        let ids: HashSet<u64> = self.members.iter().map(|m| m.id).collect();
        assert_eq!(ids.len(), self.size(), "member IDs are not distinct");
    }

    // -----------------------------------------------------------------------
    // Calls to members (on the harness's own runtime: call from sync code).

    async fn connect(url: String) -> Result<Client, String> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(HARNESS_CALL_TIMEOUT);
        match tokio::time::timeout(HARNESS_CALL_TIMEOUT, Client::connect([url], Some(options)))
            .await
        {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("connect timed out".into()),
        }
    }

    /// Maintenance.Status of member i.
    pub fn status(&self, i: usize) -> Result<MemberStatus, String> {
        let url = self.client_url(i);
        self.rt.block_on(async move {
            let mut client = Self::connect(url).await?;
            let resp = tokio::time::timeout(HARNESS_CALL_TIMEOUT, client.status())
                .await
                .map_err(|_| "status timed out".to_string())?
                .map_err(|e| e.to_string())?;
            let header = resp.header().ok_or("status without a header")?;
            Ok(MemberStatus {
                member_id: header.member_id(),
                leader: resp.leader(),
                raft_index: resp.raft_index(),
                raft_term: resp.raft_term(),
                raft_applied_index: resp.raft_applied_index(),
                revision: header.revision(),
            })
        })
    }

    /// Every key member i holds (a serializable range over the whole key space).
    pub fn dump(&self, i: usize) -> Result<Dump, String> {
        let url = self.client_url(i);
        self.rt.block_on(async move {
            let mut client = Self::connect(url).await?;
            let options = GetOptions::new().with_all_keys().with_serializable();
            let resp =
                tokio::time::timeout(HARNESS_CALL_TIMEOUT, client.get(vec![0u8], Some(options)))
                    .await
                    .map_err(|_| "range timed out".to_string())?
                    .map_err(|e| e.to_string())?;
            Ok(Dump {
                revision: resp.header().map_or(0, |h| h.revision()),
                kvs: resp
                    .kvs()
                    .iter()
                    .map(|kv| DumpKv {
                        key: kv.key().to_vec(),
                        value: kv.value().to_vec(),
                        create_revision: kv.create_revision(),
                        mod_revision: kv.mod_revision(),
                        version: kv.version(),
                    })
                    .collect(),
            })
        })
    }

    /// Member i's HashKV at `revision`: (hash, compact revision).
    pub fn hash_kv(&self, i: usize, revision: i64) -> Result<(u32, i64), String> {
        let url = self.client_url(i);
        self.rt.block_on(async move {
            let mut client = Self::connect(url).await?;
            let resp = tokio::time::timeout(HARNESS_CALL_TIMEOUT, client.hash_kv(revision))
                .await
                .map_err(|_| "hash_kv timed out".to_string())?
                .map_err(|e| e.to_string())?;
            Ok((resp.hash(), resp.compact_version()))
        })
    }

    /// The leader as the members in `among` see it: Some(index) when every one
    /// of them answers Status, all name the same leader, and it is one of them.
    pub fn leader_among(&self, among: &[usize]) -> Option<usize> {
        let mut leader = None;
        for &i in among {
            let status = self.status(i).ok()?;
            if status.leader == 0 || leader.is_some_and(|l| l != status.leader) {
                return None;
            }
            leader = Some(status.leader);
        }
        let index = self.index_of(leader?)?;
        among.contains(&index).then_some(index)
    }

    /// Waits (bounded) until the members in `among` agree on a leader among them.
    pub fn wait_leader_among(&self, among: &[usize], timeout: Duration) -> Result<usize, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader_among(among) {
                return Ok(l);
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = among
                    .iter()
                    .map(|&i| match self.status(i) {
                        Ok(s) => format!("m{i}: leader {:x} term {}", s.leader, s.raft_term),
                        Err(e) => format!("m{i}: {e}"),
                    })
                    .collect();
                return Err(format!(
                    "no agreed leader among {among:?} within {timeout:?}: {}",
                    seen.join("; ")
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) until every running member agrees on a leader.
    pub fn wait_leader(&mut self, timeout: Duration) -> usize {
        let running = self.running();
        self.wait_leader_among(&running, timeout)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", self.label, self.all_logs()))
    }

    /// Waits until the members in `among` report the same raft commit and
    /// applied index, twice in a row 100 ms apart; their statuses.
    pub fn wait_converged(
        &self,
        among: &[usize],
        timeout: Duration,
    ) -> Result<Vec<MemberStatus>, String> {
        let deadline = Instant::now() + timeout;
        let mut previous: Option<Vec<MemberStatus>> = None;
        loop {
            let statuses: Result<Vec<MemberStatus>, String> =
                among.iter().map(|&i| self.status(i)).collect();
            let last_seen;
            match statuses {
                Ok(s) => {
                    let applied: BTreeSet<u64> = s.iter().map(|x| x.raft_applied_index).collect();
                    let commit: BTreeSet<u64> = s.iter().map(|x| x.raft_index).collect();
                    let converged = applied.len() == 1 && commit.len() == 1;
                    let same_as_before = previous.as_ref().is_some_and(|p| {
                        p.iter()
                            .zip(&s)
                            .all(|(a, b)| a.raft_applied_index == b.raft_applied_index)
                    });
                    if converged && same_as_before {
                        return Ok(s);
                    }
                    last_seen = format!("{s:?}");
                    previous = converged.then_some(s);
                }
                Err(e) => {
                    previous = None;
                    last_seen = e;
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "members {among:?} did not converge within {timeout:?}; last seen: {last_seen}"
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    // -----------------------------------------------------------------------
    // Logs.

    pub fn log_contents(&self, i: usize) -> String {
        std::fs::read(&self.members[i].log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn log_tail(&self, i: usize) -> String {
        tail(&self.log_contents(i), LOG_TAIL_LINES)
    }

    /// The last lines of every member's log, for failure messages.
    pub fn all_logs(&self) -> String {
        let mut s = String::new();
        for i in 0..self.size() {
            s.push_str(&format!(
                "--- last {LOG_TAIL_LINES} lines of {}'s log ({}):\n{}\n",
                self.members[i].name,
                self.members[i].log_path.display(),
                self.log_tail(i)
            ));
        }
        s
    }

    /// Lines of member i's log that contain `needle`.
    pub fn log_lines(&self, i: usize, needle: &str) -> Vec<String> {
        self.log_contents(i)
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// Every "<id> became leader at term <t>" line of every member's log:
    /// term → the members (index) that became leader in it. Raft's election
    /// safety: at most one per term.
    pub fn leaders_by_term(&self) -> BTreeMap<u64, Vec<(usize, String)>> {
        let mut out: BTreeMap<u64, Vec<(usize, String)>> = BTreeMap::new();
        for i in 0..self.size() {
            for line in self.log_lines(i, " became leader at term ") {
                let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let Some(msg) = json["msg"].as_str() else {
                    continue;
                };
                let Some(term) = msg.rsplit(' ').next().and_then(|t| t.parse::<u64>().ok()) else {
                    continue;
                };
                let ts = json["ts"].as_str().unwrap_or("?").to_string();
                out.entry(term).or_default().push((i, ts));
            }
        }
        out
    }

    /// Terms in which more than one member became leader, described.
    pub fn election_safety_violations(&self) -> Vec<String> {
        self.leaders_by_term()
            .into_iter()
            .filter(|(_, leaders)| {
                leaders
                    .iter()
                    .map(|(i, _)| *i)
                    .collect::<BTreeSet<_>>()
                    .len()
                    > 1
            })
            .map(|(term, leaders)| {
                let who: Vec<String> = leaders
                    .iter()
                    .map(|(i, ts)| format!("m{i} ({:x}) at {ts}", self.members[*i].id))
                    .collect();
                format!("term {term} has two leaders: {}", who.join(", "))
            })
            .collect()
    }

    /// Keeps the cluster's directory (data and logs) after the test, printing
    /// where it is (for a failure worth a look).
    pub fn keep_dir(self) -> PathBuf {
        let mut this = self;
        for i in 0..this.size() {
            this.kill9(i);
        }
        let dir = std::mem::replace(&mut this.dir, temp_dir());
        dir.keep()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill9(i);
        }
        self.net.stop();
    }
}
