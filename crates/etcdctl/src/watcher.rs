//! clientv3's watcher, as etcdctl's `watch` and `make-mirror` see it: many
//! watches over one Watch stream, each handed back as a channel of
//! [`WatchResponse`]s once the server has created it.
//!
//! - Creates go out one at a time, in order; the server answers them in
//!   order, so each "created" answer belongs to the head of the queue.
//! - "Created" answers are not delivered (etcdctl never asks for them); a
//!   create the server refuses (`created` and `canceled` with a reason) is
//!   delivered as a cancel carrying that reason, then the channel closes.
//! - A response carrying an error (compaction, a refusal) is delivered and
//!   closes its channel; a plain server-side cancel closes it silently.
//! - Progress notifications for watch ID -1 (answers to a progress request)
//!   go to every watch of the stream.
//! - The stream carries `hasleader: true` (clientv3's `WithRequireLeader`).
//!   When it breaks with `Unavailable` or `Internal` (not "no leader"), it
//!   is reopened after 500 ms and every watch resumes after the last
//!   revision it saw; any other failure ends every watch with that error.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Code;

use api::etcdserverpb::watch_request::RequestUnion;
use api::etcdserverpb::{
    ResponseHeader, WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest,
    WatchResponse as PbWatchResponse,
};
use api::mvccpb::Event;

use crate::client::Client;
use crate::error::status_text;

/// How long clientv3 waits before reopening a broken stream.
const RETRY_WAIT: Duration = Duration::from_millis(500);

/// What to watch (clientv3's watch options, resolved).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchSpec {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// 0: from the next revision.
    pub start_revision: i64,
    pub prev_kv: bool,
    pub progress_notify: bool,
}

/// One response as clientv3 hands it to etcdctl (`clientv3.WatchResponse`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchResponse {
    pub header: ResponseHeader,
    /// `None` when clientv3 made the response itself to report a failure
    /// (its `Events` is then nil: `null` in json).
    pub events: Option<Vec<Event>>,
    pub compact_revision: i64,
    pub canceled: bool,
    pub created: bool,
    pub cancel_reason: String,
    /// A failure of the stream or of the create, as clientv3's `closeErr`.
    pub close_err: Option<String>,
}

impl WatchResponse {
    fn from_pb(r: &PbWatchResponse) -> Self {
        WatchResponse {
            header: r.header.unwrap_or_default(),
            events: Some(r.events.clone()),
            compact_revision: r.compact_revision,
            canceled: r.canceled,
            created: r.created,
            cancel_reason: r.cancel_reason.clone(),
            close_err: None,
        }
    }

    /// A response clientv3 makes up to end a watch with `err`.
    fn closed(err: &str) -> Self {
        WatchResponse {
            canceled: true,
            close_err: Some(err.to_string()),
            ..WatchResponse::default()
        }
    }

    pub fn events(&self) -> &[Event] {
        self.events.as_deref().unwrap_or_default()
    }

    /// clientv3's `IsProgressNotify`.
    pub fn is_progress_notify(&self) -> bool {
        self.events().is_empty()
            && !self.canceled
            && !self.created
            && self.compact_revision == 0
            && self.header.revision != 0
    }

    /// clientv3's `Err()` as text.
    pub fn err(&self) -> Option<String> {
        if let Some(e) = &self.close_err {
            return Some(e.clone());
        }
        if self.compact_revision != 0 {
            return Some(api::EtcdError::Compacted.message().to_string());
        }
        if self.canceled {
            if !self.cancel_reason.is_empty() {
                return Some(self.cancel_reason.clone());
            }
            return Some(api::EtcdError::FutureRev.message().to_string());
        }
        None
    }
}

/// The receiving end of one watch.
pub type WatchChan = mpsc::UnboundedReceiver<WatchResponse>;

enum Request {
    Watch(WatchSpec, oneshot::Sender<WatchChan>),
    Progress,
}

/// Watches sharing one Watch stream.
pub struct Watcher {
    requests: mpsc::UnboundedSender<Request>,
}

impl Watcher {
    pub fn new(client: &Client) -> Watcher {
        let (requests, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(client.clone(), rx));
        Watcher { requests }
    }

    /// Starts a watch and waits until the server has created it (or refused
    /// it: the channel then holds the cancel and closes).
    pub async fn watch(&self, spec: WatchSpec) -> WatchChan {
        let (reply, created) = oneshot::channel();
        if self.requests.send(Request::Watch(spec, reply)).is_err() {
            return closed_chan("watcher is closed");
        }
        created
            .await
            .unwrap_or_else(|_| closed_chan("watcher is closed"))
    }

    /// Asks the server for a progress notification on every watch.
    pub fn request_progress(&self) {
        let _ = self.requests.send(Request::Progress);
    }
}

fn closed_chan(err: &str) -> WatchChan {
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(WatchResponse::closed(err));
    rx
}

/// One watch as the stream task tracks it.
struct Sub {
    spec: WatchSpec,
    /// Where a resumed watch starts (0 until the server created it).
    next_rev: i64,
    tx: mpsc::UnboundedSender<WatchResponse>,
    rx: Option<WatchChan>,
    /// Answered once, when the watch is first created.
    reply: Option<oneshot::Sender<WatchChan>>,
}

impl Sub {
    fn create_request(&self) -> WatchRequest {
        let mut create = WatchCreateRequest {
            key: self.spec.key.clone(),
            range_end: self.spec.range_end.clone(),
            start_revision: self.spec.start_revision,
            progress_notify: self.spec.progress_notify,
            prev_kv: self.spec.prev_kv,
            ..WatchCreateRequest::default()
        };
        if self.next_rev != 0 {
            create.start_revision = self.next_rev;
        }
        WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        }
    }

    /// Hands the channel to the caller waiting on the create.
    fn answer(&mut self) {
        if let (Some(reply), Some(rx)) = (self.reply.take(), self.rx.take()) {
            let _ = reply.send(rx);
        }
    }

    /// Ends the watch, delivering `last` first.
    fn end(mut self, last: Option<WatchResponse>) {
        if let Some(resp) = last {
            let _ = self.tx.send(resp);
        }
        self.answer();
    }
}

#[derive(Default)]
struct State {
    /// Watches waiting for "created", in the order their creates go out.
    pending: VecDeque<Sub>,
    /// Whether the head of `pending` has been sent on the current stream.
    head_sent: bool,
    active: HashMap<i64, Sub>,
    /// Watch IDs we asked the server to cancel (responses for unknown IDs).
    canceling: HashSet<i64>,
    /// clientv3's stream-wide `closeErr` (set by a refused create).
    close_err: Option<String>,
}

/// Why a stream ended.
enum StreamEnd {
    /// Nothing left to watch and the caller is gone.
    Done,
    /// Reopen and resume.
    Retry,
    /// End every watch with this error.
    Halt(String),
}

async fn run(client: Client, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut state = State::default();
    let mut open = true;
    loop {
        // The stream opens when there is something to watch.
        while state.pending.is_empty() && state.active.is_empty() {
            match requests.recv().await {
                Some(Request::Watch(spec, reply)) => state.pending.push_back(new_sub(spec, reply)),
                Some(Request::Progress) => {}
                None => return,
            }
        }
        match stream(&client, &mut state, &mut requests, &mut open).await {
            StreamEnd::Done => return,
            StreamEnd::Retry => {
                // Resume every created watch after what it has seen.
                let mut resumed: Vec<(i64, Sub)> = state.active.drain().collect();
                resumed.sort_by_key(|(id, _)| *id);
                for (_, sub) in resumed.into_iter().rev() {
                    state.pending.push_front(sub);
                }
                state.head_sent = false;
                state.canceling.clear();
                tokio::time::sleep(RETRY_WAIT).await;
            }
            StreamEnd::Halt(err) => {
                for (_, sub) in state.active.drain() {
                    sub.end(Some(WatchResponse::closed(&err)));
                }
                for sub in state.pending.drain(..) {
                    sub.end(Some(WatchResponse::closed(&err)));
                }
                state.head_sent = false;
                state.canceling.clear();
            }
        }
        if !open && state.pending.is_empty() && state.active.is_empty() {
            return;
        }
    }
}

fn new_sub(spec: WatchSpec, reply: oneshot::Sender<WatchChan>) -> Sub {
    let (tx, rx) = mpsc::unbounded_channel();
    Sub {
        spec,
        next_rev: 0,
        tx,
        rx: Some(rx),
        reply: Some(reply),
    }
}

/// Runs one Watch stream until it breaks.
async fn stream(
    client: &Client,
    state: &mut State,
    requests: &mut mpsc::UnboundedReceiver<Request>,
    open: &mut bool,
) -> StreamEnd {
    let (out, out_rx) = mpsc::unbounded_channel::<WatchRequest>();
    let mut request = tonic::Request::new(UnboundedReceiverStream::new(out_rx));
    request.metadata_mut().insert(
        "hasleader",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    let mut watch = client.watch();
    let mut connect = Box::pin(watch.watch(request));
    let mut inbound = None;
    send_head(state, &out);
    loop {
        let idle = state.pending.is_empty() && state.active.is_empty();
        if idle && !*open {
            return StreamEnd::Done;
        }
        tokio::select! {
            request = requests.recv(), if *open => match request {
                Some(Request::Watch(spec, reply)) => {
                    state.pending.push_back(new_sub(spec, reply));
                    send_head(state, &out);
                }
                Some(Request::Progress) => {
                    let _ = out.send(WatchRequest {
                        request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
                    });
                }
                None => *open = false,
            },
            connected = &mut connect, if inbound.is_none() => match connected {
                Ok(resp) => inbound = Some(resp.into_inner()),
                Err(status) => return stream_end(&status),
            },
            message = next(&mut inbound), if inbound.is_some() => match message {
                Ok(Some(resp)) => handle(state, &resp, &out),
                Ok(None) => return StreamEnd::Retry,
                Err(status) => return stream_end(&status),
            },
        }
    }
}

async fn next(
    inbound: &mut Option<tonic::Streaming<PbWatchResponse>>,
) -> Result<Option<PbWatchResponse>, tonic::Status> {
    match inbound {
        Some(s) => s.message().await,
        None => std::future::pending().await,
    }
}

/// clientv3's `isHaltErr`, with "no leader" ending the watches too. A
/// broken connection (grpc-go's `Unavailable`) comes from tonic as
/// `Unknown` with the transport's words.
fn stream_end(status: &tonic::Status) -> StreamEnd {
    let text = status_text(status);
    let transport = status.code() == Code::Unknown
        && (status.message().starts_with("h2 protocol error")
            || status.message().starts_with("transport error"));
    let retry = (transport || matches!(status.code(), Code::Unavailable | Code::Internal))
        && text != api::EtcdError::NoLeader.message();
    if retry {
        StreamEnd::Retry
    } else {
        StreamEnd::Halt(text)
    }
}

fn send_head(state: &mut State, out: &mpsc::UnboundedSender<WatchRequest>) {
    if state.head_sent {
        return;
    }
    if let Some(head) = state.pending.front() {
        let _ = out.send(head.create_request());
        state.head_sent = true;
    }
}

fn handle(state: &mut State, pb: &PbWatchResponse, out: &mpsc::UnboundedSender<WatchRequest>) {
    if pb.created {
        state.head_sent = false;
        if let Some(mut sub) = state.pending.pop_front() {
            let refused = pb.watch_id == -1 || (pb.canceled && !pb.cancel_reason.is_empty());
            if refused {
                // clientv3 turns the reason into its error of the same text.
                let err = pb.cancel_reason.clone();
                state.close_err = Some(err.clone());
                sub.end(Some(WatchResponse::closed(&err)));
            } else {
                if sub.next_rev == 0 {
                    sub.next_rev = if sub.spec.start_revision > 0 {
                        sub.spec.start_revision
                    } else {
                        pb.header.as_ref().map_or(0, |h| h.revision) + 1
                    };
                }
                sub.answer();
                state.active.insert(pb.watch_id, sub);
            }
        }
        send_head(state, out);
        return;
    }
    if pb.canceled && pb.compact_revision == 0 {
        if let Some(sub) = state.active.remove(&pb.watch_id) {
            let last = state.close_err.as_deref().map(WatchResponse::closed);
            sub.end(last);
        }
        state.canceling.remove(&pb.watch_id);
        return;
    }
    let resp = WatchResponse::from_pb(pb);
    if resp.is_progress_notify() && pb.watch_id == -1 {
        for sub in state.active.values_mut() {
            sub.next_rev = sub.next_rev.max(resp.header.revision + 1);
            let _ = sub.tx.send(resp.clone());
        }
        return;
    }
    let Some(sub) = state.active.get_mut(&pb.watch_id) else {
        if state.canceling.insert(pb.watch_id) {
            let _ = out.send(WatchRequest {
                request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest {
                    watch_id: pb.watch_id,
                })),
            });
        }
        return;
    };
    match resp.events().last() {
        Some(last) => sub.next_rev = last.kv.as_ref().map_or(0, |kv| kv.mod_revision) + 1,
        None => sub.next_rev = sub.next_rev.max(resp.header.revision + 1),
    }
    let failed = resp.err().is_some();
    let _ = sub.tx.send(resp);
    if failed {
        if let Some(sub) = state.active.remove(&pb.watch_id) {
            sub.end(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_notifications_are_bare_responses_with_a_revision() {
        let mut r = WatchResponse {
            events: Some(Vec::new()),
            ..WatchResponse::default()
        };
        assert!(!r.is_progress_notify());
        r.header.revision = 5;
        assert!(r.is_progress_notify());
        r.compact_revision = 3;
        assert!(!r.is_progress_notify());
        assert_eq!(
            r.err().as_deref(),
            Some("etcdserver: mvcc: required revision has been compacted")
        );
    }

    #[test]
    fn cancel_reasons_read_as_clientv3_errors() {
        let r = WatchResponse {
            canceled: true,
            ..WatchResponse::default()
        };
        assert_eq!(
            r.err().as_deref(),
            Some("etcdserver: mvcc: required revision is a future revision")
        );
        let r = WatchResponse::closed("mvcc: watcher range is empty");
        assert_eq!(r.err().as_deref(), Some("mvcc: watcher range is empty"));
    }
}
