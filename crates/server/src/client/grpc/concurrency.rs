//! The Lock (v3lockpb) and Election (v3electionpb) services, built on
//! leases, revisions and watches as etcd's client-side `concurrency`
//! package builds them (etcd's servers call that package through an
//! in-process client; we call our own KV and Lease services directly).
//!
//! - A lock named N is held by the key `N/<lease in hex>` with the lowest
//!   create revision among `N/`; a contender waits until every key of `N/`
//!   created before its own is deleted.
//! - An election is the same queue; the leader's key holds its value.

use std::pin::Pin;
use std::sync::Arc;

use api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use api::etcdserverpb::kv_server::Kv;
use api::etcdserverpb::lease_server::Lease as _;
use api::etcdserverpb::range_request::{SortOrder, SortTarget};
use api::etcdserverpb::{
    request_op, response_op, Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest,
    RangeRequest, RequestOp, ResponseHeader, TxnRequest, TxnResponse,
};
use api::mvccpb::event::EventType;
use api::mvccpb::{Event, KeyValue};
use api::v3electionpb::election_server::Election;
use api::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use api::v3lockpb::lock_server::Lock;
use api::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use mvcc::{TrySend, WatchMessage, WatchSink, WatchSpec, WatcherId};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::{KvService, LeaseService};
use crate::server::EtcdServer;

/// The TTL of the lease a lock or campaign without one gets (etcd's session default).
const DEFAULT_SESSION_TTL: i64 = 60;
/// Stream ID space of in-process watchers (apart from client streams').
const INTERNAL_STREAM_BASE: u64 = 1 << 62;

/// Our KV and Lease services, called in-process.
struct Client {
    server: Arc<EtcdServer>,
    kv: KvService,
    lease: LeaseService,
    /// The token of the request this client works for, passed on to the
    /// KV and Lease calls it makes (etcd's v3client passes the caller's
    /// context), so they are checked as that caller's.
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    /// The client certificate's name of that request, passed on likewise.
    cert_name: Option<crate::client::serve::CertName>,
}

impl Client {
    fn new(server: Arc<EtcdServer>) -> Client {
        Client {
            kv: KvService::new(server.clone()),
            lease: LeaseService::new(server.clone()),
            server,
            token: None,
            cert_name: None,
        }
    }

    /// A client working for `request`'s caller.
    fn for_request<T>(&self, request: &Request<T>) -> Arc<Client> {
        let token = super::token(request).and_then(|t| t.parse().ok());
        let cert_name = request
            .extensions()
            .get::<crate::client::serve::CertName>()
            .cloned();
        Arc::new(Client {
            server: self.server.clone(),
            kv: KvService::new(self.server.clone()),
            lease: LeaseService::new(self.server.clone()),
            token,
            cert_name,
        })
    }

    /// `msg` as a request of this client's caller.
    fn request<T>(&self, msg: T) -> Request<T> {
        let mut request = Request::new(msg);
        if let Some(token) = &self.token {
            request.metadata_mut().insert("token", token.clone());
        }
        if let Some(name) = &self.cert_name {
            request.extensions_mut().insert(name.clone());
        }
        request
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, Status> {
        Ok(self.kv.txn(self.request(req)).await?.into_inner())
    }

    async fn range(&self, req: RangeRequest) -> Result<api::etcdserverpb::RangeResponse, Status> {
        Ok(self.kv.range(self.request(req)).await?.into_inner())
    }

    /// The session's lease: the one given, or a new one (etcd's NewSession).
    async fn session_lease(&self, lease: i64) -> Result<i64, Status> {
        if lease != 0 {
            return Ok(lease);
        }
        let resp = self
            .lease
            .lease_grant(self.request(LeaseGrantRequest {
                ttl: DEFAULT_SESSION_TTL,
                id: 0,
            }))
            .await?
            .into_inner();
        Ok(resp.id)
    }

    /// The key of `prefix` with the lowest (`first`) or highest create
    /// revision, at most `max_create_rev` (0: any).
    async fn by_create(
        &self,
        prefix: &[u8],
        first: bool,
        max_create_rev: i64,
    ) -> Result<(ResponseHeader, Option<KeyValue>), Status> {
        let resp = self
            .range(RangeRequest {
                key: prefix.to_vec(),
                range_end: prefix_end(prefix),
                limit: 1,
                sort_target: SortTarget::Create as i32,
                sort_order: if first {
                    SortOrder::Ascend
                } else {
                    SortOrder::Descend
                } as i32,
                max_create_revision: max_create_rev,
                ..Default::default()
            })
            .await?;
        Ok((resp.header.unwrap_or_default(), resp.kvs.into_iter().next()))
    }

    /// Waits until every key of `prefix` created at or before
    /// `max_create_rev` is deleted (etcd's waitDeletes).
    async fn wait_deletes(
        &self,
        prefix: &[u8],
        max_create_rev: i64,
    ) -> Result<ResponseHeader, Status> {
        loop {
            let (header, last) = self.by_create(prefix, false, max_create_rev).await?;
            let Some(last) = last else {
                return Ok(header);
            };
            let mut watch = InternalWatch::new(&self.server, &last.key, b"", header.revision);
            'wait: loop {
                let Some(events) = watch.next().await else {
                    break 'wait; // compacted or stopped: look again
                };
                if events.iter().any(|e| e.r#type == EventType::Delete as i32) {
                    break 'wait;
                }
            }
        }
    }
}

/// The first key after every key with `prefix` (etcd's GetPrefixRangeEnd).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn create_revision_is(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(rev)),
        ..Default::default()
    }
}

fn op_put(key: &[u8], value: &[u8], lease: i64, ignore_lease: bool) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease: if ignore_lease { 0 } else { lease },
            ignore_lease,
            ..Default::default()
        })),
    }
}

fn op_get(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

fn op_delete(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(
            DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            },
        )),
    }
}

/// The first key-value of a txn's first (range) response.
fn first_range_kv(resp: &TxnResponse) -> Option<KeyValue> {
    match resp.responses.first()?.response.as_ref()? {
        response_op::Response::ResponseRange(r) => r.kvs.first().cloned(),
        _ => None,
    }
}

/// A watcher on the server's own hub, for waiting in-process.
struct InternalWatch {
    server: Arc<EtcdServer>,
    id: WatcherId,
    rx: mpsc::Receiver<WatchMessage>,
}

struct InternalSink(mpsc::Sender<WatchMessage>);

impl WatchSink for InternalSink {
    fn try_send(&self, msg: WatchMessage) -> TrySend {
        match self.0.try_send(msg) {
            Ok(()) => TrySend::Sent,
            Err(mpsc::error::TrySendError::Full(msg)) => TrySend::Full(msg),
            Err(mpsc::error::TrySendError::Closed(_)) => TrySend::Closed,
        }
    }
}

static INTERNAL_STREAMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl InternalWatch {
    /// Watches `key` (to `range_end`) from `start_rev`.
    fn new(server: &Arc<EtcdServer>, key: &[u8], range_end: &[u8], start_rev: i64) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let stream = INTERNAL_STREAM_BASE
            + INTERNAL_STREAMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = server.watch_hub().watch(
            stream,
            WatchSpec {
                key: key.to_vec(),
                range_end: range_end.to_vec(),
                start_rev,
                watch_id: 0,
                no_put: false,
                no_delete: false,
            },
            Arc::new(InternalSink(tx)),
        );
        InternalWatch {
            server: server.clone(),
            id,
            rx,
        }
    }

    /// The next events; None when the watch ended (compacted).
    async fn next(&mut self) -> Option<Vec<Event>> {
        loop {
            match self.rx.recv().await? {
                WatchMessage::Events { events, .. } => return Some(events),
                WatchMessage::Shared { events, .. } => return Some(events.as_ref().clone()),
                WatchMessage::Compacted { .. } => return None,
                WatchMessage::Progress { .. } | WatchMessage::Created { .. } => continue,
            }
        }
    }
}

impl Drop for InternalWatch {
    fn drop(&mut self) {
        self.server.watch_hub().cancel(self.id);
    }
}

/// A contender's key, taken back if its request is dropped before it got
/// the lock or won the election (the client went away or gave up while
/// waiting): etcd's servers see the canceled context and delete the key,
/// so that those queued behind it are not blocked by a contender that is
/// gone.
struct Contender {
    client: Arc<Client>,
    key: Vec<u8>,
    settled: bool,
}

impl Contender {
    fn new(client: &Arc<Client>, key: &[u8]) -> Self {
        Contender {
            client: client.clone(),
            key: key.to_vec(),
            settled: false,
        }
    }

    /// The request ended on its own (won, or failed and cleaned up).
    fn settle(mut self) {
        self.settled = true;
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        let key = std::mem::take(&mut self.key);
        runtime.spawn(async move {
            let _ = client
                .txn(TxnRequest {
                    success: vec![op_delete(&key)],
                    ..Default::default()
                })
                .await;
        });
    }
}

pub struct LockService {
    client: Arc<Client>,
}

impl LockService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        LockService {
            client: Arc::new(Client::new(server)),
        }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let client = self.client.for_request(&request);
        let req = request.into_inner();
        let c = &client;
        let lease = c.session_lease(req.lease).await?;
        let mut prefix = req.name.clone();
        prefix.push(b'/');
        let key = [prefix.clone(), format!("{lease:x}").into_bytes()].concat();
        let contender = Contender::new(c, &key);
        // Put my key unless it exists (a re-entrant lock with the same lease).
        let resp = c
            .txn(TxnRequest {
                compare: vec![create_revision_is(&key, 0)],
                success: vec![op_put(&key, b"", lease, false)],
                failure: vec![op_get(&key)],
            })
            .await?;
        let my_rev = if resp.succeeded {
            resp.header.as_ref().map_or(0, |h| h.revision)
        } else {
            first_range_kv(&resp).map_or(0, |kv| kv.create_revision)
        };
        let waited = c.wait_deletes(&prefix, my_rev - 1).await;
        let header = match waited {
            Ok(h) => h,
            Err(e) => {
                let _ = c
                    .txn(TxnRequest {
                        success: vec![op_delete(&key)],
                        ..Default::default()
                    })
                    .await;
                contender.settle();
                return Err(e);
            }
        };
        contender.settle();
        // The session may have expired while waiting.
        let mine = c
            .range(RangeRequest {
                key: key.clone(),
                ..Default::default()
            })
            .await?;
        if mine.kvs.is_empty() {
            return Err(Status::unknown("concurrency: session expired"));
        }
        let mut header = Some(header);
        c.server.fill_header(&mut header);
        Ok(Response::new(LockResponse { header, key }))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let client = self.client.for_request(&request);
        let key = request.into_inner().key;
        let resp = client
            .kv
            .delete_range(client.request(DeleteRangeRequest {
                key,
                ..Default::default()
            }))
            .await?
            .into_inner();
        Ok(Response::new(UnlockResponse {
            header: resp.header,
        }))
    }
}

pub struct ElectionService {
    client: Arc<Client>,
}

impl ElectionService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        ElectionService {
            client: Arc::new(Client::new(server)),
        }
    }
}

fn missing_leader() -> Status {
    Status::unknown("\"leader\" field must be provided")
}

fn election_prefix(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let client = self.client.for_request(&request);
        let req = request.into_inner();
        let c = &client;
        let lease = c.session_lease(req.lease).await?;
        let prefix = election_prefix(&req.name);
        let key = [prefix.clone(), format!("{lease:x}").into_bytes()].concat();
        let contender = Contender::new(c, &key);
        let resp = c
            .txn(TxnRequest {
                compare: vec![create_revision_is(&key, 0)],
                success: vec![op_put(&key, &req.value, lease, false)],
                failure: vec![op_get(&key)],
            })
            .await?;
        let mut leader_rev = resp.header.as_ref().map_or(0, |h| h.revision);
        if !resp.succeeded {
            if let Some(kv) = first_range_kv(&resp) {
                leader_rev = kv.create_revision;
                if kv.value != req.value {
                    proclaim(c, &key, leader_rev, &req.value).await?;
                }
            }
        }
        if let Err(e) = c.wait_deletes(&prefix, leader_rev - 1).await {
            let _ = resign(c, &key, leader_rev).await;
            contender.settle();
            return Err(e);
        }
        contender.settle();
        let mut header = resp.header;
        c.server.fill_header(&mut header);
        Ok(Response::new(CampaignResponse {
            header,
            leader: Some(LeaderKey {
                name: req.name,
                key,
                rev: leader_rev,
                lease,
            }),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let client = self.client.for_request(&request);
        let req = request.into_inner();
        let leader = req.leader.ok_or_else(missing_leader)?;
        let header = proclaim(&client, &leader.key, leader.rev, &req.value).await?;
        Ok(Response::new(ProclaimResponse { header }))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let client = self.client.for_request(&request);
        let prefix = election_prefix(&request.into_inner().name);
        let (header, kv) = client.by_create(&prefix, true, 0).await?;
        let Some(kv) = kv else {
            return Err(Status::unknown("election: no leader"));
        };
        let mut header = Some(header);
        client.server.fill_header(&mut header);
        Ok(Response::new(LeaderResponse {
            header,
            kv: Some(kv),
        }))
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let client = self.client.for_request(&request);
        let prefix = election_prefix(&request.into_inner().name);
        Ok(Response::new(super::lease::async_stream(
            move |tx| async move {
                observe(client, prefix, tx).await;
            },
        )))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let client = self.client.for_request(&request);
        let leader = request.into_inner().leader.ok_or_else(missing_leader)?;
        let header = resign(&client, &leader.key, leader.rev).await?;
        Ok(Response::new(ResignResponse { header }))
    }
}

async fn proclaim(
    c: &Client,
    key: &[u8],
    rev: i64,
    value: &[u8],
) -> Result<Option<ResponseHeader>, Status> {
    let resp = c
        .txn(TxnRequest {
            compare: vec![create_revision_is(key, rev)],
            success: vec![op_put(key, value, 0, true)],
            failure: Vec::new(),
        })
        .await?;
    if !resp.succeeded {
        return Err(Status::unknown("election: not leader"));
    }
    Ok(resp.header)
}

async fn resign(c: &Client, key: &[u8], rev: i64) -> Result<Option<ResponseHeader>, Status> {
    let resp = c
        .txn(TxnRequest {
            compare: vec![create_revision_is(key, rev)],
            success: vec![op_delete(key)],
            failure: Vec::new(),
        })
        .await?;
    Ok(resp.header)
}

/// Streams the election's leader and each change of it (etcd's Observe):
/// the current leader (waiting for one), its value updates, and the next
/// leader once its key is deleted.
async fn observe(
    c: Arc<Client>,
    prefix: Vec<u8>,
    tx: mpsc::Sender<Result<LeaderResponse, Status>>,
) {
    let send = |header: ResponseHeader, kv: KeyValue| {
        let mut header = Some(header);
        c.server.fill_header(&mut header);
        tx.send(Ok(LeaderResponse {
            header,
            kv: Some(kv),
        }))
    };
    loop {
        let (header, leader) = match c.by_create(&prefix, true, 0).await {
            Ok(found) => found,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let (mut header, leader) = match leader {
            Some(kv) => (header, kv),
            None => {
                // Wait for the first put under the prefix.
                let mut watch = InternalWatch::new(
                    &c.server,
                    &prefix,
                    &prefix_end(&prefix),
                    header.revision + 1,
                );
                let mut found = None;
                while found.is_none() {
                    let Some(events) = watch.next().await else {
                        break;
                    };
                    found = events
                        .into_iter()
                        .find(|e| e.r#type == EventType::Put as i32)
                        .and_then(|e| e.kv);
                }
                let Some(kv) = found else { continue };
                let header = ResponseHeader {
                    revision: kv.mod_revision,
                    ..header
                };
                (header, kv)
            }
        };
        let key = leader.key.clone();
        if send(header, leader).await.is_err() {
            return;
        }
        // Follow the leader's key until it is deleted.
        let mut watch = InternalWatch::new(&c.server, &key, b"", header.revision + 1);
        'leader: loop {
            let Some(events) = watch.next().await else {
                break 'leader;
            };
            for ev in events {
                if ev.r#type == EventType::Delete as i32 {
                    break 'leader;
                }
                let Some(kv) = ev.kv else { continue };
                header.revision = kv.mod_revision;
                if send(header, kv).await.is_err() {
                    return;
                }
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}
