//! A member in your own process: Rust's counterpart of etcd's `embed`
//! package. The `etcd` binary is a thin caller of it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), etcd_server::embed::Error> {
//! use etcd_server::embed::{Config, Etcd};
//!
//! let mut cfg = Config::default();
//! cfg.data_dir = "/tmp/embedded.etcd".into();
//! cfg.listen_client_urls = vec!["http://127.0.0.1:0".into()];
//! cfg.advertise_client_urls = cfg.listen_client_urls.clone();
//! let etcd = Etcd::start(cfg).await?;
//! etcd.ready().await?;
//! println!("serving on {:?}", etcd.client_urls());
//! etcd.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! One shutdown: every task and thread of the member watches one stop
//! signal; [`Etcd::close`] raises it and returns when all of them have
//! ended and the member's files are closed, so the same data dir can be
//! started again at once.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use api::etcdserverpb::{Attributes, ClusterMemberAttrSetRequest, InternalRaftRequest};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::client::{edge, grpc, http, serve};
use crate::config::{parse_url, tls};
pub use crate::config::{ClusterState, Config, TlsInfo};
use crate::duties::{compactor, corrupt, downgrade, lease_expiry};
use crate::node::{apply, bootstrap, raft_node, raft_storage, seams, wait};
pub use crate::server::report::MemberStatus;
use crate::server::{Caller, EtcdServer};
use crate::state::{alarm, leases, quota};
use crate::status::{bail, Context};
use crate::{limits, metrics, peer, transport};
/// The request and response types of [`Server`]'s verbs (etcd's v3 API).
pub use api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};

/// Why a member could not start, or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Start-up failed (a port in use, a data dir that cannot be read, a
    /// configuration the member refuses); nothing is left running.
    #[error(transparent)]
    Start(#[from] crate::Error),
    /// The member stopped by itself (the raft loop or the applier failed,
    /// or it could not publish itself or pass the initial corruption check).
    #[error("{0}")]
    Stopped(String),
}

/// How far a started member has come.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Raft runs; the member has not yet published itself.
    Starting,
    /// Published (and the cluster version set, as leader): clients are served.
    Serving,
    /// It stopped; why, if by itself.
    Stopped(Option<String>),
}

/// A running member. Dropping it without [`Etcd::close`] stops it too, but
/// without waiting: call `close` to know the files are closed.
pub struct Etcd {
    server: Arc<EtcdServer>,
    client_urls: Vec<String>,
    peer_urls: Vec<String>,
    metrics_urls: Vec<String>,
    stop: Arc<watch::Sender<bool>>,
    phase: watch::Receiver<Phase>,
    /// The task that runs the member until the stop signal; it ends with
    /// every other task and thread joined.
    main: Option<JoinHandle<()>>,
}

impl Etcd {
    /// Starts a member with `cfg`: binds every listener (port 0 picks a free
    /// port, see [`Etcd::client_urls`]), opens or founds the data dir,
    /// starts raft and serves peers at once; clients are served once the
    /// member has published itself ([`Etcd::ready`]). Must be called within
    /// a multi-threaded tokio runtime.
    pub async fn start(cfg: Config) -> Result<Etcd, Error> {
        Ok(start(cfg).await?)
    }

    /// Resolves once clients are served, or with the reason the member
    /// stopped before.
    pub async fn ready(&self) -> Result<(), Error> {
        let mut phase = self.phase.clone();
        let reached = phase
            .wait_for(|p| *p != Phase::Starting)
            .await
            .map(|p| p.clone());
        match reached {
            Ok(Phase::Serving) => Ok(()),
            Ok(Phase::Stopped(Some(why))) => Err(Error::Stopped(why)),
            _ => Err(Error::Stopped("the member stopped".into())),
        }
    }

    /// Resolves when the member stops by itself (the raft loop or the
    /// applier failed, or it could not get ready), with the reason; then
    /// [`Etcd::close`] waits for the rest of it to end.
    pub async fn stopped(&self) -> Error {
        let mut phase = self.phase.clone();
        let reached = phase
            .wait_for(|p| matches!(p, Phase::Stopped(_)))
            .await
            .map(|p| p.clone());
        match reached {
            Ok(Phase::Stopped(Some(why))) => Error::Stopped(why),
            _ => Error::Stopped("the member stopped".into()),
        }
    }

    /// The client URLs served, with the ports bound (a listen URL with port
    /// 0 appears with the port the system picked).
    pub fn client_urls(&self) -> &[String] {
        &self.client_urls
    }

    /// The peer URLs served, with the ports bound.
    pub fn peer_urls(&self) -> &[String] {
        &self.peer_urls
    }

    /// The extra `/metrics` and health URLs (`listen_metrics_urls`), bound.
    pub fn metrics_urls(&self) -> &[String] {
        &self.metrics_urls
    }

    /// The member, for in-process requests without a client connection.
    pub fn server(&self) -> Server {
        Server(self.server.clone())
    }

    /// Stops the member: raises the one stop signal, and returns once every
    /// listener, task and thread has ended and the WAL, the backend and the
    /// data dir's lock are released.
    pub async fn close(mut self) {
        let _ = self.stop.send(true);
        if let Some(main) = self.main.take() {
            let _ = main.await;
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// In-process access to a member: etcd's `RaftKV` and `Lessor` verbs,
/// answered as the gRPC services answer them (the same errors; the quota,
/// validation and learner checks of the gRPC edge are not applied).
#[derive(Clone)]
pub struct Server(Arc<EtcdServer>);

impl Server {
    /// This member's ID.
    pub fn member_id(&self) -> u64 {
        self.0.member_id()
    }

    /// The cluster's ID.
    pub fn cluster_id(&self) -> u64 {
        self.0.cluster().id
    }

    /// The leader's member ID as this member knows it (0: none).
    pub fn leader(&self) -> u64 {
        self.0.raft_status().leader()
    }

    /// This member's state now (what the Status RPC and `/metrics` report).
    pub fn status(&self) -> MemberStatus {
        self.0.status()
    }

    /// Reads keys (linearizable unless `req.serializable`).
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse, crate::Error> {
        self.0.range(&Caller::Member, &req).await
    }

    /// Writes a key.
    pub async fn put(&self, req: PutRequest) -> Result<PutResponse, crate::Error> {
        Ok(self.0.put(&Caller::Member, req).await?)
    }

    /// Deletes a key or a range.
    pub async fn delete_range(
        &self,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, crate::Error> {
        Ok(self.0.delete_range(&Caller::Member, req).await?)
    }

    /// A transaction that writes (a read-only one too, through raft).
    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, crate::Error> {
        Ok(self.0.txn(&Caller::Member, req).await?)
    }

    /// Compacts the key history.
    pub async fn compact(
        &self,
        req: CompactionRequest,
    ) -> Result<CompactionResponse, crate::Error> {
        Ok(self.0.compact(&Caller::Member, req).await?)
    }

    /// Grants a lease (ID 0: the member picks one).
    pub async fn lease_grant(
        &self,
        req: LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, crate::Error> {
        Ok(self.0.lease_grant(&Caller::Member, req).await?)
    }

    /// Revokes a lease and deletes its keys.
    pub async fn lease_revoke(
        &self,
        req: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, crate::Error> {
        Ok(self.0.lease_revoke(&Caller::Member, req).await?)
    }
}

/// Runs a member until `shutdown` resolves or it stops by itself: the
/// `etcd` binary's whole life.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let etcd = Etcd::start(cfg).await?;
    tokio::pin!(shutdown);
    let outcome = tokio::select! {
        _ = &mut shutdown => Ok(()),
        e = etcd.stopped() => Err(e),
    };
    etcd.close().await;
    outcome
}

/// Makes the data dir ours before anything else touches it: finishes a
/// conversion a crash interrupted, converts a stopped etcd member's dir
/// (keeping the original), and refuses a dir of a newer build or one we
/// cannot tell, leaving it as it is.
fn check_data_dir(cfg: &Config) -> crate::status::Result<()> {
    use datadir::interchange::datadir::{inspect, Kind};
    let wal_dir = cfg.wal_dir();
    let refuse = || format!("cannot start on data dir {}", cfg.data_dir.display());
    datadir::interchange::staging::resume(&cfg.data_dir).with_context(refuse)?;
    match inspect(&cfg.data_dir, Some(&wal_dir)).with_context(refuse)? {
        Kind::Fresh | Kind::Ours => Ok(()),
        Kind::Etcd { evidence } => {
            tracing::info!(
                data_dir = %cfg.data_dir.display(),
                evidence = %evidence.display(),
                "found a stopped etcd member's data dir; converting it"
            );
            datadir::interchange::from_etcd::convert(&cfg.data_dir, &wal_dir).with_context(
                || {
                    format!(
                        "cannot convert the etcd data dir {} (it is left as it was)",
                        cfg.data_dir.display()
                    )
                },
            )?;
            match inspect(&cfg.data_dir, Some(&wal_dir)).with_context(refuse)? {
                Kind::Ours => Ok(()),
                other => bail!("the converted data dir reads as {other:?}"),
            }
        }
    }
}

/// A bound listener and the URL it serves, with the port the system picked.
struct Bound {
    url: String,
    listener: TcpListener,
}

/// Binds every URL of `urls`.
async fn bind_all(urls: &[String]) -> crate::status::Result<Vec<Bound>> {
    let mut out = Vec::with_capacity(urls.len());
    for u in urls {
        let url = parse_url(u).map_err(crate::status::Error::fatal)?;
        let listener = match TcpListener::bind((url.host.as_str(), url.port)).await {
            Ok(listener) => listener,
            // Go's words, which supervisors and scripts match on.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                bail!(
                    "listen tcp {}:{}: bind: address already in use",
                    url.host,
                    url.port
                )
            }
            Err(e) => {
                return Err(e).with_context(|| format!("listen tcp {}:{}", url.host, url.port))
            }
        };
        let url = if url.port == 0 {
            let port = listener.local_addr().context("a bound address")?.port();
            let host = if url.host.contains(':') {
                format!("[{}]", url.host)
            } else {
                url.host.clone()
            };
            format!("{}://{host}:{port}", url.scheme)
        } else {
            u.clone()
        };
        out.push(Bound { url, listener });
    }
    Ok(out)
}

/// `given` with each URL that was bound at port 0 replaced by the bound one.
fn resolved(given: &[String], listen: &[String], bound: &[Bound]) -> Vec<String> {
    given
        .iter()
        .map(|u| match listen.iter().position(|l| l == u) {
            Some(i) => bound[i].url.clone(),
            None => u.clone(),
        })
        .collect()
}

async fn start(mut cfg: Config) -> crate::status::Result<Etcd> {
    // Before anything (auto-TLS fixtures, the lock file, the WAL) touches
    // the data dir: refuse one we cannot read, leaving it as it is.
    check_data_dir(&cfg)?;
    // https metrics listeners use the client TLS settings, as in etcd.
    let client_tls = if cfg
        .listen_client_urls
        .iter()
        .chain(&cfg.listen_metrics_urls)
        .any(|u| u.starts_with("https://"))
    {
        let resolved = tls::resolve(
            tls::Side::Client,
            &cfg.client_tls,
            &cfg.data_dir,
            &cfg.listen_client_urls,
        )?
        .context("an https client URL needs --cert-file and --key-file, or --auto-tls")?;
        Some(tokio_rustls::TlsAcceptor::from(
            resolved.server_config(&[b"h2", b"http/1.1"])?,
        ))
    } else {
        None
    };
    // Peer TLS serves the peer listener and dials the other members.
    let peer_tls = tls::resolve(
        tls::Side::Peer,
        &cfg.peer_tls,
        &cfg.data_dir,
        &cfg.listen_peer_urls,
    )?;
    let peer_acceptor = match &peer_tls {
        Some(resolved)
            if cfg
                .listen_peer_urls
                .iter()
                .any(|u| u.starts_with("https://")) =>
        {
            Some(tokio_rustls::TlsAcceptor::from(
                resolved.server_config(&[b"h2"])?,
            ))
        }
        _ => None,
    };
    if peer_acceptor.is_none() {
        if let Some(u) = cfg
            .listen_peer_urls
            .iter()
            .find(|u| u.starts_with("https://"))
        {
            bail!("--listen-peer-urls {u}: an https peer URL needs --peer-cert-file and --peer-key-file, or --peer-auto-tls");
        }
    }
    let dialer = transport::Dialer::new(match &peer_tls {
        Some(resolved) => Some(resolved.client_config()?),
        None => None,
    });
    // Bind first, so a port in use fails start-up before anything touches the data dir.
    let client_listeners = bind_all(&cfg.listen_client_urls).await?;
    let metrics_listeners = bind_all(&cfg.listen_metrics_urls).await?;
    let peer_listeners = bind_all(&cfg.listen_peer_urls).await?;
    cfg.advertise_client_urls = resolved(
        &cfg.advertise_client_urls,
        &cfg.listen_client_urls,
        &client_listeners,
    );
    let cfg = Arc::new(cfg);

    // A new member of an existing cluster asks the others who it is.
    let joined = if cfg.initial_cluster_state == ClusterState::Existing
        && !wal::Wal::exists(&cfg.wal_dir())
    {
        let others: Vec<String> = cfg
            .initial_cluster
            .iter()
            .filter(|(name, _)| *name != cfg.name)
            .flat_map(|(_, urls)| urls.clone())
            .collect();
        Some(transport::discover(&dialer, &others, &cfg.initial_advertise_peer_urls).await?)
    } else {
        None
    };
    let initialized = wal::Wal::exists(&cfg.wal_dir());
    let boot = bootstrap::open(&cfg, joined.as_ref())?;
    let store = Arc::new(
        mvcc::Store::open(&cfg.snap_dir().join("db"), mvcc::StoreOptions::default())
            .context("cannot open the backend")?,
    );
    datadir::storage_version::validate(&store).map_err(crate::status::Error::from_cause)?;
    // A crash between receiving a leader's snapshot and restoring the backend
    // from it leaves the image beside the snapshot: finish the restore.
    if store.consistent_index().0 < boot.snapshot_index {
        let suffix = format!("-{:016x}.snap.db", boot.snapshot_index);
        let image = std::fs::read_dir(cfg.snap_dir())
            .with_context(|| format!("read {}", cfg.snap_dir().display()))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(&suffix));
        if let Some(image) = image {
            apply::restore_backend(&store, &image)?;
        }
    }
    let (consistent_index, _) = store.consistent_index();
    if consistent_index < boot.snapshot_index {
        bail!(
            "the backend's consistent index {consistent_index} is behind the snapshot index {}: \
             the backend file is older than the WAL",
            boot.snapshot_index
        );
    }
    tracing::info!(
        name = %cfg.name,
        data_dir = %cfg.data_dir.display(),
        member_id = %format!("{:x}", boot.member_id),
        cluster_id = %format!("{:x}", boot.cluster_id),
        consistent_index,
        "starting etcd member"
    );

    let raft_cfg = raft_node::raft_config(
        boot.member_id,
        (cfg.election_timeout_ms / cfg.heartbeat_interval_ms) as usize,
        boot.snapshot_index,
        cfg.pre_vote,
    );
    raft_cfg.validate().context("raft configuration")?;
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let snapshotter = Arc::new(boot.snapshotter);
    let metrics = Arc::new(metrics::Metrics::new(cfg.metrics));
    let clock: Arc<dyn seams::Clock> = Arc::new(seams::SystemClock);
    let raft_storage = raft_storage::RaftStorage::new(
        boot.storage,
        snapshotter.clone(),
        store.clone(),
        metrics.backend_snapshot.clone(),
        clock.clone(),
    );
    let raw = raft::RawNode::new(&raft_cfg, raft_storage, &logger).context("start raft")?;

    let lessor = Arc::new(lease::Lessor::new(lease::LessorConfig {
        min_ttl_secs: lease::LessorConfig::min_ttl_for(
            Duration::from_millis(cfg.election_timeout_ms),
            Duration::from_millis(cfg.heartbeat_interval_ms),
        ),
        checkpointing: cfg.lease_checkpointing,
        checkpoint_interval: cfg.lease_checkpoint_interval,
        ..Default::default()
    }));
    leases::recover(&store, &lessor)?;
    let watch_hub = Arc::new(mvcc::WatchHub::new(store.current_revision()));
    let cluster = Arc::new(datadir::membership::Cluster::new(
        boot.cluster_id,
        boot.member_id,
    ));
    if let Some(data) = &boot.cluster_data {
        cluster.restore(data).map_err(crate::status::Error::fatal)?;
    }
    // etcd's check when it recovers the cluster state: a server older than
    // the cluster version may not serve it, unless a downgrade targets it.
    let job = cluster.downgrade_info();
    if job.enabled {
        tracing::info!(
            target_cluster_version = %job.target_version,
            current_server_version = datadir::membership::SERVER_VERSION,
            "cluster is downgrading to target version"
        );
    }
    cluster
        .check_local_version(cluster.version().as_deref())
        .map_err(crate::status::Error::fatal)?;
    let wait = Arc::new(wait::Wait::default());
    let alarms = Arc::new(alarm::AlarmStore::default());
    apply::recover_alarms(&store, &alarms)?;
    if cfg.auth_token != "simple" {
        bail!(
            "--auth-token {:?}: this build issues simple tokens only (jwt is not supported yet)",
            cfg.auth_token
        );
    }
    let auth = Arc::new(crate::state::auth::Auth::recover(
        &store,
        cfg.bcrypt_cost,
        Duration::from_secs(cfg.auth_token_ttl_secs),
    )?);
    match quota::effective_quota(cfg.quota_backend_bytes) {
        None => tracing::info!(
            quota_size_bytes = cfg.quota_backend_bytes,
            "disabled backend quota"
        ),
        Some(q) if q as i64 > quota::MAX_RECOMMENDED_QUOTA_BYTES => tracing::warn!(
            quota_size_bytes = q,
            quota_maximum_size_bytes = quota::MAX_RECOMMENDED_QUOTA_BYTES,
            "quota exceeds the maximum value"
        ),
        Some(q) => tracing::info!(quota_size_bytes = q, "enabled backend quota"),
    }
    let raft_status = Arc::new(raft_node::RaftStatus::default());
    let (raft_tx, raft_rx) = std::sync::mpsc::channel();
    let (apply_tx, apply_rx) = std::sync::mpsc::channel();
    let (applied_tx, applied_rx) = watch::channel(consistent_index);
    // The one stop signal every task and thread of the member watches.
    let (stop_tx, stop) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);

    // Peers: the transport dials them; the peer listener delivers their messages.
    let transport = transport::Transport::with_metrics(
        boot.member_id,
        boot.cluster_id,
        tokio::runtime::Handle::current(),
        dialer,
        metrics.peer.clone(),
    );
    let known_members = joined.map_or_else(|| cluster.members(), |j| j.members);
    for m in known_members {
        if m.id != boot.member_id {
            transport.add_peer(m.id, m.peer_ur_ls.clone());
        }
    }
    let peer_deliver: transport::Deliver = {
        let raft_tx = raft_tx.clone();
        let cluster = cluster.clone();
        Arc::new(move |m| {
            // A removed member may never take part again (etcd drops its traffic too).
            if cluster.is_removed(m.from) {
                return;
            }
            let _ = raft_tx.send(raft_node::RaftMsg::Step(Box::new(m)));
        })
    };
    let running_server: peer::Running = Arc::new(OnceLock::new());
    let peer_router = peer::router(peer::PeerPort {
        member_id: boot.member_id,
        cluster_id: boot.cluster_id,
        cluster: cluster.clone(),
        store: store.clone(),
        deliver: peer_deliver,
        metrics: metrics.peer.clone(),
        running: running_server.clone(),
    });
    let peer_urls: Vec<String> = peer_listeners.iter().map(|b| b.url.clone()).collect();
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    tasks.extend(serve_all(
        peer_listeners,
        Port::Peer,
        peer_acceptor,
        peer_router,
        limits::STREAMS_PER_CONNECTION_MAX,
        &stop,
    ));

    // The raft loop's and the applier's seams: the gRPC transport and the
    // system clock (made above, for raft storage too).
    let raft_transport: Arc<dyn seams::Transport> = Arc::new(transport.clone());
    let node = raft_node::RaftNode::new(raft_node::Parts {
        member_id: boot.member_id,
        raw,
        wal: boot.wal,
        snapshotter,
        snap_dir: cfg.snap_dir(),
        apply_tx,
        status: raft_status.clone(),
        wait: wait.clone(),
        transport: raft_transport.clone(),
        clock: clock.clone(),
        lessor: lessor.clone(),
        tick_interval: Duration::from_millis(cfg.heartbeat_interval_ms),
        metrics: metrics.clone(),
    });
    let (fatal_tx, fatal_rx) = mpsc::unbounded_channel::<String>();
    let raft_fatal = fatal_tx.clone();
    let raft_thread = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || {
            if let Err(e) = node.run(raft_rx) {
                let _ = raft_fatal.send(format!("raft loop stopped: {e:#}"));
            }
        })
        .context("spawn the raft thread")?;

    let applier = apply::Applier {
        store: store.clone(),
        wait: wait.clone(),
        cluster: cluster.clone(),
        alarms: alarms.clone(),
        transport: raft_transport,
        clock,
        applied_tx,
        raft_tx: raft_tx.clone(),
        snapshot_count: cfg.snapshot_count.max(1),
        last_snapshot_index: boot.snapshot_index,
        lessor: lessor.clone(),
        watch_hub: watch_hub.clone(),
        raft_status: raft_status.clone(),
        lease_extend: Duration::from_millis(cfg.election_timeout_ms),
        metrics: metrics.clone(),
        auth: auth.clone(),
    };
    let apply_fatal = fatal_tx.clone();
    let apply_thread = std::thread::Builder::new()
        .name("apply".into())
        .spawn(move || {
            if let Err(e) = applier.run(apply_rx) {
                let _ = apply_fatal.send(format!("applier stopped: {e:#}"));
            }
        })
        .context("spawn the applier thread")?;

    let server = Arc::new(EtcdServer::new(
        cfg.clone(),
        boot.member_id,
        cluster.clone(),
        alarms,
        transport.clone(),
        store,
        raft_status,
        lessor,
        watch_hub,
        metrics.clone(),
        raft_tx,
        wait,
        applied_rx,
        auth,
    ));
    let watch_sync = {
        let server = server.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("watch-sync".into())
            .spawn(move || grpc::run_watch_sync(server, stop))
            .context("spawn the watch catch-up thread")?
    };
    let _ = running_server.set(server.clone());

    let client_urls: Vec<String> = client_listeners.iter().map(|b| b.url.clone()).collect();
    let metrics_urls: Vec<String> = metrics_listeners.iter().map(|b| b.url.clone()).collect();
    let (phase_tx, phase) = watch::channel(Phase::Starting);
    let member = Member {
        server: server.clone(),
        initialized,
        client_listeners,
        metrics_listeners,
        client_tls,
        stop: stop.clone(),
        stop_tx: stop_tx.clone(),
        fatal: fatal_rx,
        phase: phase_tx,
    };
    let lock = boot.lock;
    let handle = server.clone();
    let main = tokio::spawn(async move {
        let mut tasks = tasks;
        tasks.extend(member.run().await);
        // Everything below runs once the stop signal is raised.
        transport.shutdown();
        server.stop();
        drop(server);
        for t in tasks {
            let _ = t.await;
        }
        let _ = tokio::task::spawn_blocking(move || {
            let _ = raft_thread.join();
            let _ = apply_thread.join();
            let _ = watch_sync.join();
        })
        .await;
        drop(lock);
        tracing::info!("stopped etcd member");
    });
    Ok(Etcd {
        server: handle,
        client_urls,
        peer_urls,
        metrics_urls,
        stop: stop_tx,
        phase,
        main: Some(main),
    })
}

/// What the member's main task needs after start-up: the steps before
/// clients are served, the client listeners, and the signals.
struct Member {
    server: Arc<EtcdServer>,
    /// Whether the member had a WAL before this start (a restart).
    initialized: bool,
    client_listeners: Vec<Bound>,
    metrics_listeners: Vec<Bound>,
    client_tls: Option<tokio_rustls::TlsAcceptor>,
    stop: watch::Receiver<bool>,
    stop_tx: Arc<watch::Sender<bool>>,
    fatal: mpsc::UnboundedReceiver<String>,
    phase: watch::Sender<Phase>,
}

impl Member {
    /// Passes the steps before serving, serves clients, and returns when the
    /// stop signal is raised (by `close`, or here when the member failed),
    /// with the tasks it started for them.
    async fn run(mut self) -> Vec<JoinHandle<()>> {
        let mut stop = self.stop.clone();
        let failed = tokio::select! {
            r = before_serving(&self.server, self.initialized) => r.err().map(|e| e.to_string()),
            m = self.fatal.recv() => Some(m.unwrap_or_else(|| "the server stopped".into())),
            _ = stop.wait_for(|s| *s) => None,
        };
        if failed.is_some() || *stop.borrow() {
            self.stopped(failed);
            return Vec::new();
        }
        let serving = self.serve_clients();
        let _ = self.phase.send(Phase::Serving);
        let why = tokio::select! {
            m = self.fatal.recv() => Some(m.unwrap_or_else(|| "the server stopped".into())),
            _ = stop.wait_for(|s| *s) => None,
        };
        self.stopped(why);
        serving
    }

    /// Records why the member stopped and raises the stop signal for the
    /// other tasks (a failure raises it here; `close` raised it otherwise).
    fn stopped(&self, why: Option<String>) {
        if let Some(why) = &why {
            tracing::error!(error = %why, "etcd member stopped");
        }
        let _ = self.phase.send(Phase::Stopped(why));
        let _ = self.stop_tx.send(true);
    }

    /// The client and metrics listeners and the leader's duties, started.
    fn serve_clients(&mut self) -> Vec<JoinHandle<()>> {
        let server = &self.server;
        let cfg = &server.config();
        let services = Arc::new(grpc::Services::new(server.clone()));
        let grpc_router = edge::grpc_router(
            grpc::routes(&services, cfg.max_request_bytes).into_axum_router(),
            server.metrics().grpc.clone(),
        );
        let router = edge::router(grpc_router, http::router(server.clone(), services));
        let stop = &self.stop;
        let mut tasks = vec![
            tokio::spawn(monitor_cluster_version(server.clone(), stop.clone())),
            tokio::spawn(lease_expiry::run_expiry(server.clone(), stop.clone())),
        ];
        if !cfg.corrupt_check_interval.is_zero() {
            tasks.push(tokio::spawn(corrupt::run_periodic(
                server.clone(),
                cfg.corrupt_check_interval,
                stop.clone(),
            )));
        }
        if let Some(retention) = cfg.auto_compaction {
            tasks.push(tokio::spawn(compactor::run(
                server.clone(),
                retention,
                cfg.auto_compaction_check_interval,
                stop.clone(),
            )));
        }
        tasks.extend(serve_all(
            std::mem::take(&mut self.client_listeners),
            Port::Client,
            self.client_tls.clone(),
            router,
            cfg.max_concurrent_streams,
            stop,
        ));
        tasks.extend(serve_all(
            std::mem::take(&mut self.metrics_listeners),
            Port::Metrics,
            self.client_tls.clone(),
            http::metrics_router(server.clone()),
            limits::STREAMS_PER_CONNECTION_MAX,
            stop,
        ));
        tasks
    }
}

/// What a listener serves, for its log lines (etcd's wording).
#[derive(Debug, Clone, Copy)]
enum Port {
    Client,
    Metrics,
    Peer,
}

impl Port {
    fn log_serving(self, url: &str, secure: bool) {
        match (self, secure) {
            (Port::Client, true) => {
                tracing::info!("ready to serve client requests");
                tracing::info!(address = %url, "serving client traffic securely");
            }
            (Port::Client, false) => {
                tracing::info!("ready to serve client requests");
                tracing::warn!(
                    address = %url,
                    "serving client traffic insecurely; this is strongly discouraged!"
                );
            }
            (Port::Metrics, _) => tracing::info!(address = %url, "serving metrics"),
            (Port::Peer, true) => tracing::info!(address = %url, "serving peer traffic securely"),
            (Port::Peer, false) => tracing::info!(address = %url, "serving peer traffic"),
        }
    }
}

/// Serves `router` on every bound listener (TLS on the `https` ones) until
/// the stop signal.
fn serve_all(
    bound: Vec<Bound>,
    port: Port,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: axum::Router,
    max_streams: u32,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    bound
        .into_iter()
        .map(|Bound { url, listener }| {
            let secure = url.starts_with("https://");
            port.log_serving(&url, secure);
            let tls = if secure { tls.clone() } else { None };
            tokio::spawn(serve::serve(
                listener,
                tls,
                router.clone(),
                max_streams,
                stop.clone(),
            ))
        })
        .collect()
}

/// A restarting member compares its data with its peers' first (a new
/// member has nothing to compare); then it publishes itself.
async fn before_serving(server: &Arc<EtcdServer>, initialized: bool) -> crate::status::Result<()> {
    if initialized && server.config().initial_corrupt_check {
        corrupt::check_initial(server).await?;
    }
    publish(server).await;
    Ok(())
}

/// Publishes this member's name and client URLs through raft, then (as leader)
/// sets the cluster version: etcd's steps before it serves clients.
async fn publish(server: &EtcdServer) {
    let attrs = InternalRaftRequest {
        cluster_member_attr_set: Some(ClusterMemberAttrSetRequest {
            member_id: server.member_id(),
            member_attributes: Some(Attributes {
                name: server.config().name.clone(),
                client_urls: server.config().advertise_client_urls.clone(),
                server_version: datadir::membership::SERVER_VERSION.to_string(),
            }),
        }),
        ..Default::default()
    };
    // Proposals made before there is a leader are dropped: wait for one first.
    let mut status_poll = tokio::time::interval(Duration::from_millis(10));
    while server.leader() == 0 {
        status_poll.tick().await;
    }
    loop {
        match server.propose(attrs.clone()).await {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(error = %e, "failed to publish local member to cluster through raft; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// How often the leader compares the cluster version with the members' and
/// checks the downgrade job (etcd: every 4 s and 5 s).
const CLUSTER_VERSION_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// As leader, keeps the cluster version where the members' versions and the
/// downgrade job put it, and ends a finished job (etcd's version monitor:
/// `downgrade::monitor`).
async fn monitor_cluster_version(server: Arc<EtcdServer>, stop: watch::Receiver<bool>) {
    let tick = tokio::time::interval(CLUSTER_VERSION_CHECK_INTERVAL);
    crate::server::on_ticks_as_leader(server, tick, stop, |server| async move {
        downgrade::monitor(&server).await;
    })
    .await;
}
