//! The Watch service: one bidirectional stream carries many watchers.
//!
//! Per stream, a receiving task handles create / cancel / progress requests,
//! and the response stream itself turns the queue's messages into
//! WatchResponses (adding prev_kv, splitting fragments) as gRPC pulls them.
//! The hub and the receiving task share that one queue, so the hub's
//! "created" answer precedes a watcher's events, and its progress messages
//! follow every event notified before them. The queue is bounded:
//! when a client reads too slowly the hub parks its watchers as victims
//! (see `mvcc::watch`); writes and other streams go on.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::etcdserverpb::watch_create_request::FilterType;
use api::etcdserverpb::watch_request::RequestUnion;
use api::etcdserverpb::watch_server::Watch;
use api::etcdserverpb::{RangeRequest, WatchCreateRequest, WatchRequest, WatchResponse};
use api::mvccpb::Event;
use mvcc::{TrySend, WatchMessage, WatchSink, WatchSpec, WatcherId};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::server::EtcdServer;

use crate::limits::WATCH_STREAM_QUEUE_MESSAGES as STREAM_QUEUE_MESSAGES;

/// etcd's "auto" watch ID in a create request.
const AUTO_WATCH_ID: i64 = 0;

enum Outgoing {
    Hub(WatchMessage),
    Response(WatchResponse),
    /// The client's side failed: the stream ends with this status.
    Error(Status),
}

struct ChannelSink(mpsc::Sender<Outgoing>);

impl WatchSink for ChannelSink {
    fn try_send(&self, msg: WatchMessage) -> TrySend {
        match self.0.try_send(Outgoing::Hub(msg)) {
            Ok(()) => TrySend::Sent,
            Err(mpsc::error::TrySendError::Full(Outgoing::Hub(msg))) => TrySend::Full(msg),
            Err(_) => TrySend::Closed,
        }
    }
}

/// What the sending task needs to know of a watcher.
struct WatcherState {
    hub_id: WatcherId,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    /// Events were sent since the last progress tick.
    active: bool,
}

#[derive(Default)]
struct StreamState {
    watchers: HashMap<i64, WatcherState>,
    next_auto_id: i64,
}

pub struct WatchService {
    server: Arc<EtcdServer>,
    next_stream: AtomicU64,
}

impl WatchService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        WatchService {
            server,
            next_stream: AtomicU64::new(1),
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let stream_id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (queue_tx, queue_rx) = mpsc::channel(STREAM_QUEUE_MESSAGES);
        let state = Arc::new(Mutex::new(StreamState::default()));
        let token = super::token(&request);
        let cert_name = request
            .extensions()
            .get::<crate::client::serve::CertName>()
            .map(|n| n.0.clone());
        let receiving = tokio::spawn(receive(
            self.server.clone(),
            stream_id,
            (token, cert_name),
            request.into_inner(),
            queue_tx,
            state.clone(),
        ));
        let progress = tokio::spawn(progress_ticks(self.server.clone(), state.clone()));
        self.server.metrics().watch_streams.inc();
        Ok(Response::new(Box::pin(ResponseStream {
            server: self.server.clone(),
            stream_id,
            state,
            queue: queue_rx,
            ready: VecDeque::new(),
            done: false,
            tasks: [receiving, progress],
        })))
    }
}

/// The stream of responses: pulls the queue as gRPC asks for more, so what
/// is ready goes out in one write. Dropped when the client goes away: then
/// the stream's watchers are removed.
struct ResponseStream {
    server: Arc<EtcdServer>,
    stream_id: u64,
    state: Arc<Mutex<StreamState>>,
    queue: mpsc::Receiver<Outgoing>,
    ready: VecDeque<Result<WatchResponse, Status>>,
    done: bool,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Stream for ResponseStream {
    type Item = Result<WatchResponse, Status>;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            if let Some(r) = this.ready.pop_front() {
                return Poll::Ready(Some(r));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.queue.poll_recv(cx) {
                Poll::Ready(Some(Outgoing::Response(r))) => this.ready.push_back(Ok(r)),
                Poll::Ready(Some(Outgoing::Hub(msg))) => this.ready.extend(
                    hub_responses(&this.server, &this.state, msg)
                        .into_iter()
                        .map(Ok),
                ),
                Poll::Ready(Some(Outgoing::Error(status))) => {
                    this.ready.push_back(Err(status));
                    this.done = true;
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for ResponseStream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.server.watch_hub().cancel_stream(self.stream_id);
        self.server.metrics().watch_streams.dec();
    }
}

fn lock(state: &Mutex<StreamState>) -> std::sync::MutexGuard<'_, StreamState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Handles the client's requests until it closes its side (the watchers
/// keep running, as in etcd) or the stream fails.
async fn receive(
    server: Arc<EtcdServer>,
    stream_id: u64,
    (token, cert_name): (Option<String>, Option<String>),
    mut requests: Streaming<WatchRequest>,
    queue: mpsc::Sender<Outgoing>,
    state: Arc<Mutex<StreamState>>,
) {
    let sink: Arc<dyn WatchSink> = Arc::new(ChannelSink(queue.clone()));
    while let Some(next) = requests.next().await {
        let req = match next {
            Ok(req) => req,
            Err(status) => {
                tracing::debug!(error = %status, "watch stream receive failed");
                let _ = queue.send(Outgoing::Error(status)).await;
                return;
            }
        };
        match req.request_union {
            Some(RequestUnion::CreateRequest(create)) => {
                if let Err(e) =
                    watch_permitted(&server, token.as_deref(), cert_name.as_deref(), &create).await
                {
                    // Refused as etcd refuses it: created and canceled at once,
                    // with the gRPC error's text.
                    let resp = WatchResponse {
                        header: Some(server.header(server.watch_hub().notified_rev())),
                        watch_id: -1,
                        created: true,
                        canceled: true,
                        cancel_reason: format!(
                            "rpc error: code = {:?} desc = {}",
                            tonic::Status::from(e).code(),
                            e.message()
                        ),
                        ..Default::default()
                    };
                    if queue.send(Outgoing::Response(resp)).await.is_err() {
                        return;
                    }
                    continue;
                }
                let created =
                    create_watcher(&server, stream_id, create, &state, &sink, &queue).await;
                if !created {
                    return;
                }
            }
            Some(RequestUnion::CancelRequest(cancel)) => {
                let removed = lock(&state).watchers.remove(&cancel.watch_id);
                if let Some(w) = removed {
                    server.watch_hub().cancel(w.hub_id);
                    let resp = WatchResponse {
                        header: Some(server.header(server.watch_hub().notified_rev())),
                        watch_id: cancel.watch_id,
                        canceled: true,
                        ..Default::default()
                    };
                    if queue.send(Outgoing::Response(resp)).await.is_err() {
                        return;
                    }
                }
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                server.watch_hub().request_progress(stream_id, sink.clone());
            }
            None => {}
        }
    }
}

/// Whether the stream's caller may watch the whole of the create request's
/// range (checked against the range as sent, before any rewriting: a read
/// grant on one key does not cover a watch from that key onward,
/// GHSA-xg4h-6gfc-h4m8). Errors other than etcd's token and revision ones
/// are `PermissionDenied`, as etcd reports them.
async fn watch_permitted(
    server: &EtcdServer,
    token: Option<&str>,
    cert_name: Option<&str>,
    create: &WatchCreateRequest,
) -> Result<(), api::EtcdError> {
    use api::EtcdError as E;
    let checked = match server.caller(token, cert_name).await {
        Ok(caller) => server.check_read(&caller, &create.key, &create.range_end),
        Err(e) => Err(e),
    };
    checked.map_err(|e| match e {
        E::InvalidAuthToken | E::AuthOldRevision | E::UserEmpty => e,
        _ => E::PermissionDenied,
    })
}

/// Registers a watcher and queues its "created" answer first. False when the
/// stream is gone.
async fn create_watcher(
    server: &Arc<EtcdServer>,
    stream_id: u64,
    create: WatchCreateRequest,
    state: &Arc<Mutex<StreamState>>,
    sink: &Arc<dyn WatchSink>,
    queue: &mpsc::Sender<Outgoing>,
) -> bool {
    let empty_range =
        !create.range_end.is_empty() && create.range_end != [0] && create.key >= create.range_end;
    let id = {
        let mut st = lock(state);
        if empty_range {
            Err("mvcc: watcher range is empty")
        } else if create.watch_id != AUTO_WATCH_ID {
            if st.watchers.contains_key(&create.watch_id) {
                Err("mvcc: duplicate watch ID provided on the WatchStream")
            } else {
                Ok(create.watch_id)
            }
        } else {
            while st.watchers.contains_key(&st.next_auto_id) {
                st.next_auto_id += 1;
            }
            let id = st.next_auto_id;
            st.next_auto_id += 1;
            Ok(id)
        }
    };
    let id = match id {
        Ok(id) => id,
        Err(reason) => {
            let resp = WatchResponse {
                header: Some(server.header(server.watch_hub().notified_rev())),
                watch_id: -1,
                created: true,
                canceled: true,
                cancel_reason: reason.to_string(),
                ..Default::default()
            };
            return queue.send(Outgoing::Response(resp)).await.is_ok();
        }
    };
    // Reserve the ID before the await, so a second create cannot take it.
    lock(state).watchers.insert(
        id,
        WatcherState {
            hub_id: 0,
            prev_kv: create.prev_kv,
            fragment: create.fragment,
            progress_notify: create.progress_notify,
            active: false,
        },
    );
    // The hub queues the "created" answer itself, under its lock, before
    // anything else of the watcher.
    let spec = WatchSpec {
        key: create.key,
        range_end: create.range_end,
        // A start revision of 0 is left to the hub: it picks the revision after
        // the one its "created" answer reports, under its lock. Reading the head
        // here instead let a write slip in between, and the watcher then got
        // events below the revision its "created" header claimed.
        start_rev: create.start_revision,
        watch_id: id,
        no_put: create.filters.contains(&(FilterType::Noput as i32)),
        no_delete: create.filters.contains(&(FilterType::Nodelete as i32)),
    };
    let hub_id = server.watch_hub().watch(stream_id, spec, sink.clone());
    let mut st = lock(state);
    match st.watchers.get_mut(&id) {
        Some(w) => w.hub_id = hub_id,
        // Canceled while the answer was queued.
        None => {
            server.watch_hub().cancel(hub_id);
        }
    }
    true
}

/// Ticks of `--experimental-watch-progress-notify-interval` for one stream.
async fn progress_ticks(server: Arc<EtcdServer>, state: Arc<Mutex<StreamState>>) {
    let interval = server.config().watch_progress_notify_interval;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        ticks.tick().await;
        progress_tick(&server, &state);
    }
}

/// Progress notifications for watchers that asked for them and were quiet
/// since the last tick (etcd's --experimental-watch-progress-notify-interval).
fn progress_tick(server: &EtcdServer, state: &Mutex<StreamState>) {
    let mut st = lock(state);
    for w in st.watchers.values_mut() {
        if w.progress_notify && !w.active {
            server.watch_hub().watcher_progress(w.hub_id);
        }
        w.active = false;
    }
}

fn hub_responses(
    server: &EtcdServer,
    state: &Mutex<StreamState>,
    msg: WatchMessage,
) -> Vec<WatchResponse> {
    match msg {
        WatchMessage::Events {
            watch_id,
            events,
            revision,
        } => event_responses(server, state, watch_id, events, revision),
        WatchMessage::Shared {
            watch_ids,
            events,
            revision,
        } => {
            let mut out = Vec::with_capacity(watch_ids.len());
            for watch_id in watch_ids {
                out.extend(event_responses(
                    server,
                    state,
                    watch_id,
                    events.as_ref().clone(),
                    revision,
                ));
            }
            out
        }
        WatchMessage::Created { watch_id, revision } => vec![WatchResponse {
            header: Some(server.header(revision)),
            watch_id,
            created: true,
            ..Default::default()
        }],
        WatchMessage::Compacted {
            watch_id,
            compact_revision,
        } => {
            lock(state).watchers.remove(&watch_id);
            // etcd leaves the header's revision out of this answer.
            let mut header = server.header(1);
            header.revision = 0;
            vec![WatchResponse {
                header: Some(header),
                watch_id,
                canceled: true,
                compact_revision,
                cancel_reason: api::EtcdError::Compacted.to_string(),
                ..Default::default()
            }]
        }
        WatchMessage::Progress { watch_id, revision } => vec![WatchResponse {
            header: Some(server.header(revision)),
            watch_id,
            ..Default::default()
        }],
    }
}

/// The responses carrying `events` to one watcher: prev_kv added if it asked,
/// split into fragments if it allows them; none if it was canceled meanwhile.
fn event_responses(
    server: &EtcdServer,
    state: &Mutex<StreamState>,
    watch_id: i64,
    mut events: Vec<Event>,
    revision: i64,
) -> Vec<WatchResponse> {
    let (prev_kv, fragment) = {
        let mut st = lock(state);
        let Some(w) = st.watchers.get_mut(&watch_id) else {
            return Vec::new();
        };
        w.active = true;
        (w.prev_kv, w.fragment)
    };
    if prev_kv {
        fill_prev_kvs(server, &mut events);
    }
    let header = Some(server.header(revision));
    if fragment {
        fragments(
            header,
            watch_id,
            events,
            server.config().max_request_bytes as usize,
        )
    } else {
        vec![WatchResponse {
            header,
            watch_id,
            events,
            ..Default::default()
        }]
    }
}

/// The previous version of each event's key, read at the revision before
/// the event (as etcd does); left out if compacted away.
fn fill_prev_kvs(server: &EtcdServer, events: &mut [Event]) {
    for ev in events {
        let Some(kv) = &ev.kv else { continue };
        let req = RangeRequest {
            key: kv.key.clone(),
            revision: kv.mod_revision - 1,
            ..Default::default()
        };
        if let Ok(resp) = server.store().range(&req) {
            ev.prev_kv = resp.kvs.into_iter().next();
        }
    }
}

/// Splits events into responses under `limit` bytes each; all but the last
/// carry `fragment` (etcd's fragmented watch responses). A single event
/// larger than the limit still goes alone.
fn fragments(
    header: Option<api::etcdserverpb::ResponseHeader>,
    watch_id: i64,
    events: Vec<Event>,
    limit: usize,
) -> Vec<WatchResponse> {
    let whole = WatchResponse {
        header,
        watch_id,
        events,
        ..Default::default()
    };
    if whole.encoded_len() <= limit {
        return vec![whole];
    }
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut size = 0usize;
    for ev in whole.events {
        let len = ev.encoded_len() + 8;
        if !current.is_empty() && size + len > limit {
            out.push(std::mem::take(&mut current));
            size = 0;
        }
        size += len;
        current.push(ev);
    }
    out.push(current);
    let last = out.len() - 1;
    out.into_iter()
        .enumerate()
        .map(|(i, events)| WatchResponse {
            header,
            watch_id,
            events,
            fragment: i < last,
            ..Default::default()
        })
        .collect()
}

/// The catch-up thread: serves unsynced watchers and victims.
pub fn run_sync(server: Arc<EtcdServer>, stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow() {
        server.watch_hub().wait_for_work(Duration::from_millis(100));
        if server.watch_hub().sync_round(server.store()) {
            // More to do: a short pause lets slow consumers drain.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
