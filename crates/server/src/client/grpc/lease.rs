//! The Lease service: grants and revocations go through raft; keep-alives
//! and TimeToLive are answered by the leader's lessor (forwarded there by
//! followers); Leases lists the local lessor's leases.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use api::etcdserverpb::lease_server::Lease;
use api::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use api::EtcdError;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::server::EtcdServer;

pub struct LeaseService {
    server: Arc<EtcdServer>,
}

impl LeaseService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        LeaseService { server }
    }
}

type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        self.server.require_user(&caller)?;
        let req = request.into_inner();
        self.server.check_quota(crate::state::quota::LEASE_COST)?;
        Ok(Response::new(self.server.lease_grant(&caller, req).await?))
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        self.server.require_user(&caller)?;
        let req = request.into_inner();
        Ok(Response::new(self.server.lease_revoke(&caller, req).await?))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut requests = request.into_inner();
        let server = self.server.clone();
        let responses = async_stream(move |tx| async move {
            while let Some(next) = requests.next().await {
                let Ok(req) = next else {
                    return; // the client went away
                };
                // The header is taken before the renewal: a revoke seen at a
                // revision never precedes a keep-alive answered at a later one.
                let header = server.header(0);
                let ttl = match server.lease_renew(req.id).await {
                    Ok(ttl) => ttl,
                    Err(EtcdError::LeaseNotFound) => 0,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let resp = LeaseKeepAliveResponse {
                    header: Some(header),
                    id: req.id,
                    ttl,
                };
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(responses))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        self.server.require_user(&caller)?;
        let req = request.into_inner();
        let (id, with_keys) = (req.id, req.keys);
        // With keys, every key must be readable (etcd's checkLeaseTimeToLive).
        let checked_at = self.server.auth().read().revision();
        if with_keys {
            self.server.check_lease_keys(&caller, &[id])?;
        }
        let mut resp = match self.server.lease_time_to_live(req).await {
            Ok(resp) => resp,
            // etcd answers an unknown lease with TTL -1, not an error.
            Err(EtcdError::LeaseNotFound) => LeaseTimeToLiveResponse {
                id,
                ttl: -1,
                ..Default::default()
            },
            Err(e) => return Err(e.into()),
        };
        if with_keys {
            let auth = self.server.auth().read();
            if auth.is_enabled() && auth.revision() != checked_at {
                return Err(EtcdError::AuthOldRevision.into());
            }
        }
        resp.header = Some(self.server.header(0));
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        let ids = self.server.lessor().leases(Instant::now());
        // Every key of every lease must be readable (etcd's checkLeaseLeases).
        let checked_at = self.server.auth().read().revision();
        self.server.check_lease_keys(&caller, &ids)?;
        if self.server.auth().read().revision() != checked_at {
            return Err(EtcdError::AuthOldRevision.into());
        }
        let leases = ids.into_iter().map(|id| LeaseStatus { id }).collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.server.header(0)),
            leases,
        }))
    }
}

/// A response stream fed by a task: `body` sends into a small channel and
/// stops when the client goes away.
pub(crate) fn async_stream<T, F, Fut>(
    body: F,
) -> Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
