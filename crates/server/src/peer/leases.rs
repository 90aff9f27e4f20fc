//! The peer-port end of forwarded lease keep-alives and TimeToLive.

use api::etcdserverpb::LeaseTimeToLiveResponse;
use api::peerpb::leases_server::Leases;
use api::peerpb::{LeaseRenewRequest, LeaseRenewResponse, LeaseTimeToLiveForward};
use api::EtcdError;
use tonic::{Request, Response, Status};

use super::{running, Running};
use crate::server::leases::Attempt;

/// The peer-port end of forwarded keep-alives and TimeToLive: answered only
/// by the primary; anything else is Unavailable, and the follower retries.
pub struct LeaseForwardService {
    server: Running,
}

impl LeaseForwardService {
    pub fn new(server: Running) -> Self {
        LeaseForwardService { server }
    }
}

fn forward_status<T>(attempt: Attempt<T>) -> Result<Response<T>, Status> {
    match attempt {
        Attempt::Done(Ok(v)) => Ok(Response::new(v)),
        Attempt::Done(Err(EtcdError::LeaseNotFound)) => {
            Err(Status::not_found("etcdserver: requested lease not found"))
        }
        Attempt::Done(Err(e)) => Err(e.into()),
        Attempt::Retry(e) => Err(Status::unavailable(e.to_string())),
    }
}

#[tonic::async_trait]
impl Leases for LeaseForwardService {
    async fn renew(
        &self,
        request: Request<LeaseRenewRequest>,
    ) -> Result<Response<LeaseRenewResponse>, Status> {
        let r = request.into_inner();
        let server = running(&self.server, r.version)?;
        if server.leader() != server.member_id() {
            return Err(Status::unavailable("etcdserver: not leader"));
        }
        let attempt = match server.renew_local(r.id).await {
            Attempt::Done(v) => Attempt::Done(v.map(|ttl| LeaseRenewResponse { ttl })),
            Attempt::Retry(e) => Attempt::Retry(e),
        };
        forward_status(attempt)
    }

    async fn time_to_live(
        &self,
        request: Request<LeaseTimeToLiveForward>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let r = request.into_inner();
        let server = running(&self.server, r.version)?;
        if server.leader() != server.member_id() {
            return Err(Status::unavailable("etcdserver: not leader"));
        }
        let req = r.request.unwrap_or_default();
        forward_status(server.time_to_live_local(&req).await)
    }
}
