//! The etcd server: one member.
//!
//! ```text
//! client ─gRPC/HTTP─▶ client::grpc ──propose──▶ node::raft_node (thread) ──WAL fdatasync
//!                          │                              │ committed entries
//!                          │ read_barrier (ReadIndex)     ▼
//!                          └──────── reads ◀──── mvcc::Store ◀── node::apply (thread)
//! ```
//!
//! The source is laid out by concern; each folder's module doc says what it
//! owns and what it may import, and `tests/layout.rs` holds them to it:
//!
//! ```text
//!  config/   flags and environment, the config file, TLS settings
//!  node/     the raft loop, raft storage, the applier, waiters, bootstrap
//!  state/    alarms, the quota, the lessor on the server
//!  server.rs EtcdServer: the handle the edges and duties call
//!  duties/   the leader's loops: compaction, downgrade monitor, corruption checks
//!  client/   listeners, the gRPC/HTTP edge, services, gateway, health, /metrics
//!  metrics/  the Prometheus families measured on the way (every folder bumps them)
//!  peer/     the peer transport and the peer-port services
//!  limits.rs every bound, status.rs domain errors as etcd's client errors
//! ```
//!
//! A member's files at rest (founding, membership, snapshots, restore,
//! migrate, etcd's data dirs) are the `datadir` crate's.
//! See docs/ARCHITECTURE.md for the layers and the invariants.

pub(crate) mod client;
pub mod config;
pub(crate) mod duties;
pub(crate) mod limits;
pub(crate) mod metrics;
pub(crate) mod node;
pub(crate) mod peer;
pub(crate) mod server;
pub(crate) mod state;
pub(crate) mod status;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use api::etcdserverpb::{Attributes, ClusterMemberAttrSetRequest, InternalRaftRequest};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::client::{edge, grpc, http, serve};
use crate::config::tls;
use crate::config::{parse_url, Config};
use crate::duties::{compactor, corrupt, downgrade};
use crate::node::{apply, bootstrap, raft_node, raft_storage, wait};
use crate::state::{alarm, leases, quota};

pub use datadir::BUILD_VERSION;

/// Makes the data dir ours before anything else touches it: finishes a
/// conversion a crash interrupted, converts a stopped etcd member's dir
/// (keeping the original), and refuses a dir of a newer build or one we
/// cannot tell, leaving it as it is.
fn check_data_dir(cfg: &Config) -> Result<()> {
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

/// Starts the member and serves until `shutdown` resolves.
pub async fn run(cfg: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let cfg = Arc::new(cfg);
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
    let dialer = peer::Dialer::new(match &peer_tls {
        Some(resolved) => Some(resolved.client_config()?),
        None => None,
    });
    // Bind first, so a port in use fails start-up before anything touches the data dir.
    let mut listeners = Vec::new();
    for u in cfg.listen_client_urls.iter() {
        let url = parse_url(u).map_err(anyhow::Error::msg)?;
        let listener = TcpListener::bind((url.host.as_str(), url.port))
            .await
            .with_context(|| format!("listen tcp {}:{}", url.host, url.port))?;
        listeners.push((u.clone(), listener));
    }

    let mut metrics_listeners = Vec::new();
    for u in cfg.listen_metrics_urls.iter() {
        let url = parse_url(u).map_err(anyhow::Error::msg)?;
        let listener = TcpListener::bind((url.host.as_str(), url.port))
            .await
            .with_context(|| format!("listen tcp {}:{}", url.host, url.port))?;
        metrics_listeners.push((u.clone(), listener));
    }

    let mut peer_listeners = Vec::new();
    for u in cfg.listen_peer_urls.iter() {
        let url = parse_url(u).map_err(anyhow::Error::msg)?;
        if url.scheme == "https" && peer_acceptor.is_none() {
            bail!("--listen-peer-urls {u}: an https peer URL needs --peer-cert-file and --peer-key-file, or --peer-auto-tls");
        }
        let listener = TcpListener::bind((url.host.as_str(), url.port))
            .await
            .with_context(|| format!("listen tcp {}:{}", url.host, url.port))?;
        peer_listeners.push((u.clone(), listener));
    }

    // A new member of an existing cluster asks the others who it is.
    let joined = if cfg.initial_cluster_state == config::ClusterState::Existing
        && !wal::Wal::exists(&cfg.wal_dir())
    {
        let others: Vec<String> = cfg
            .initial_cluster
            .iter()
            .filter(|(name, _)| *name != cfg.name)
            .flat_map(|(_, urls)| urls.clone())
            .collect();
        Some(grpc::discover(&dialer, &others, &cfg.initial_advertise_peer_urls).await?)
    } else {
        None
    };
    let initialized = wal::Wal::exists(&cfg.wal_dir());
    let boot = bootstrap::open(&cfg, joined.as_ref())?;
    let store = Arc::new(
        mvcc::Store::open(&cfg.snap_dir().join("db"), mvcc::StoreOptions::default())
            .context("cannot open the backend")?,
    );
    datadir::storage_version::validate(&store)?;
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

    let raft_cfg = raft::Config {
        id: boot.member_id,
        election_tick: (cfg.election_timeout_ms / cfg.heartbeat_interval_ms) as usize,
        heartbeat_tick: 1,
        applied: boot.snapshot_index,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 512,
        pre_vote: cfg.pre_vote,
        check_quorum: true,
        ..Default::default()
    };
    raft_cfg.validate().context("raft configuration")?;
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let snapshotter = Arc::new(boot.snapshotter);
    let metrics = Arc::new(metrics::Metrics::new(cfg.metrics));
    let raft_storage = raft_storage::RaftStorage::new(
        boot.storage,
        snapshotter.clone(),
        store.clone(),
        metrics.backend_snapshot.clone(),
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
        cluster.restore(data).map_err(anyhow::Error::msg)?;
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
        .map_err(anyhow::Error::msg)?;
    let wait = Arc::new(wait::Wait::default());
    let alarms = Arc::new(alarm::AlarmStore::default());
    apply::recover_alarms(&store, &alarms)?;
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
    let _lock = boot.lock;

    // Peers: the transport dials them; the peer listener delivers their messages.
    let transport = peer::Transport::with_metrics(
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
    let peer_deliver: peer::Deliver = {
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
    let (peer_stop_tx, peer_stop_rx) = watch::channel(false);
    let running_server = Arc::new(std::sync::OnceLock::new());
    let peer_router = tonic::service::Routes::new(peer::service(
        boot.member_id,
        boot.cluster_id,
        peer_deliver,
        metrics.peer.clone(),
    ))
    .add_service(api::peerpb::membership_server::MembershipServer::new(
        grpc::MembershipService::new(boot.cluster_id, cluster.clone(), running_server.clone()),
    ))
    .add_service(api::peerpb::leases_server::LeasesServer::new(
        leases::LeaseForwardService::new(running_server.clone()),
    ))
    .add_service(api::peerpb::corruption_server::CorruptionServer::new(
        corrupt::CorruptionService::new(store.clone(), boot.member_id, boot.cluster_id),
    ))
    .prepare()
    .into_axum_router();
    let mut peer_serving = Vec::new();
    for (url, listener) in peer_listeners {
        let tls = if url.starts_with("https://") {
            tracing::info!(address = %url, "serving peer traffic securely");
            peer_acceptor.clone()
        } else {
            tracing::info!(address = %url, "serving peer traffic");
            None
        };
        peer_serving.push(tokio::spawn(serve::serve(
            listener,
            tls,
            peer_router.clone(),
            limits::STREAMS_PER_CONNECTION_MAX,
            peer_stop_rx.clone(),
        )));
    }

    let node = raft_node::RaftNode {
        member_id: boot.member_id,
        raw,
        wal: boot.wal,
        snapshotter,
        snap_dir: cfg.snap_dir(),
        apply_tx,
        status: raft_status.clone(),
        wait: wait.clone(),
        transport: transport.clone(),
        lessor: lessor.clone(),
        tick_interval: Duration::from_millis(cfg.heartbeat_interval_ms),
        saved_commit: 0,
        conf_pending_through: 0,
        conf_applied_through: 0,
        metrics: metrics.clone(),
        heartbeats_sent: std::collections::HashMap::new(),
    };
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
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
        transport: transport.clone(),
        applied_tx,
        raft_tx: raft_tx.clone(),
        snapshot_count: cfg.snapshot_count.max(1),
        last_snapshot_index: boot.snapshot_index,
        lessor: lessor.clone(),
        watch_hub: watch_hub.clone(),
        raft_status: raft_status.clone(),
        lease_extend: Duration::from_millis(cfg.election_timeout_ms),
        metrics: metrics.clone(),
    };
    let apply_fatal = fatal_tx;
    let apply_thread = std::thread::Builder::new()
        .name("apply".into())
        .spawn(move || {
            if let Err(e) = applier.run(apply_rx) {
                let _ = apply_fatal.send(format!("applier stopped: {e:#}"));
            }
        })
        .context("spawn the applier thread")?;

    let server = Arc::new(server::EtcdServer::new(
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
    ));
    let watch_sync_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watch_sync = {
        let server = server.clone();
        let stop = watch_sync_stop.clone();
        std::thread::Builder::new()
            .name("watch-sync".into())
            .spawn(move || grpc::run_watch_sync(server, stop))
            .context("spawn the watch catch-up thread")?
    };

    let _ = running_server.set(server.clone());

    tokio::pin!(shutdown);
    // A restarting member compares its data with its peers' before it serves
    // (a new member has nothing to compare).
    if initialized && cfg.initial_corrupt_check {
        tokio::select! {
            r = corrupt::check_initial(&server) => r?,
            _ = &mut shutdown => {
                let _ = peer_stop_tx.send(true);
                transport.shutdown();
                server.stop();
                watch_sync_stop.store(true, std::sync::atomic::Ordering::Release);
                return Ok(());
            }
        }
    }
    tokio::select! {
        r = publish(&server) => r?,
        m = fatal_rx.recv() => bail!(m.unwrap_or_else(|| "the server stopped".into())),
        _ = &mut shutdown => {
            let _ = peer_stop_tx.send(true);
            transport.shutdown();
            server.stop();
            watch_sync_stop.store(true, std::sync::atomic::Ordering::Release);
            return Ok(());
        }
    }

    let services = Arc::new(grpc::Services::new(server.clone()));
    let grpc_router = edge::grpc_router(
        grpc::routes(&services, server.cfg.max_request_bytes).into_axum_router(),
        metrics.grpc.clone(),
    );
    let router = edge::router(grpc_router, http::router(server.clone(), services));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(monitor_cluster_version(server.clone(), stop_rx.clone()));
    tokio::spawn(leases::run_expiry(server.clone(), stop_rx.clone()));
    if !cfg.corrupt_check_interval.is_zero() {
        tokio::spawn(corrupt::run_periodic(
            server.clone(),
            cfg.corrupt_check_interval,
            stop_rx.clone(),
        ));
    }
    if let Some(retention) = cfg.auto_compaction {
        tokio::spawn(compactor::run(
            server.clone(),
            retention,
            cfg.auto_compaction_check_interval,
            stop_rx.clone(),
        ));
    }
    let mut serving = Vec::new();
    for (url, listener) in listeners {
        tracing::info!("ready to serve client requests");
        let tls = if url.starts_with("https://") {
            tracing::info!(address = %url, "serving client traffic securely");
            client_tls.clone()
        } else {
            tracing::warn!(
                address = %url,
                "serving client traffic insecurely; this is strongly discouraged!"
            );
            None
        };
        serving.push(tokio::spawn(serve::serve(
            listener,
            tls,
            router.clone(),
            cfg.max_concurrent_streams,
            stop_rx.clone(),
        )));
    }

    let metrics_router = http::metrics_router(server.clone());
    for (url, listener) in metrics_listeners {
        tracing::info!(address = %url, "serving metrics");
        let tls = if url.starts_with("https://") {
            client_tls.clone()
        } else {
            None
        };
        serving.push(tokio::spawn(serve::serve(
            listener,
            tls,
            metrics_router.clone(),
            limits::STREAMS_PER_CONNECTION_MAX,
            stop_rx.clone(),
        )));
    }

    let outcome = tokio::select! {
        _ = &mut shutdown => Ok(()),
        m = fatal_rx.recv() => Err(anyhow::anyhow!(m.unwrap_or_else(|| "the server stopped".into()))),
    };
    let _ = stop_tx.send(true);
    let _ = peer_stop_tx.send(true);
    transport.shutdown();
    server.stop();
    watch_sync_stop.store(true, std::sync::atomic::Ordering::Release);
    drop(server);
    for s in serving.into_iter().chain(peer_serving) {
        let _ = s.await;
    }
    let _ = tokio::task::spawn_blocking(move || {
        let _ = raft_thread.join();
        let _ = apply_thread.join();
        let _ = watch_sync.join();
    })
    .await;
    tracing::info!("stopped etcd member");
    outcome
}

/// Publishes this member's name and client URLs through raft, then (as leader)
/// sets the cluster version: etcd's steps before it serves clients.
async fn publish(server: &server::EtcdServer) -> Result<()> {
    let attrs = InternalRaftRequest {
        cluster_member_attr_set: Some(ClusterMemberAttrSetRequest {
            member_id: server.member_id,
            member_attributes: Some(Attributes {
                name: server.cfg.name.clone(),
                client_urls: server.cfg.advertise_client_urls.clone(),
                server_version: datadir::membership::SERVER_VERSION.to_string(),
            }),
        }),
        ..Default::default()
    };
    // Proposals made before there is a leader are dropped: wait for one first.
    let mut status_poll = tokio::time::interval(Duration::from_millis(10));
    while server.raft_status.leader() == 0 {
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
    Ok(())
}

/// How often the leader compares the cluster version with the members' and
/// checks the downgrade job (etcd: every 4 s and 5 s).
const CLUSTER_VERSION_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// As leader, keeps the cluster version where the members' versions and the
/// downgrade job put it, and ends a finished job (etcd's version monitor:
/// `downgrade::monitor`).
async fn monitor_cluster_version(server: Arc<server::EtcdServer>, stop: watch::Receiver<bool>) {
    let tick = tokio::time::interval(CLUSTER_VERSION_CHECK_INTERVAL);
    server::on_ticks_as_leader(server, tick, stop, |server| async move {
        downgrade::monitor(&server).await;
    })
    .await;
}
