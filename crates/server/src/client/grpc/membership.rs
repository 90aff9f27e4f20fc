//! Membership on the peer port: a member answers who is in the cluster, and
//! a new member joining an existing cluster (`--initial-cluster-state
//! existing`) asks, to learn the cluster ID and the member ID that
//! MemberAdd gave it (matched by its peer URLs), as etcd does over its
//! peer HTTP API. A follower also forwards MemberPromote to the leader here.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Result};
use api::etcdserverpb::cluster_server::Cluster as _;
use api::etcdserverpb::{Member, MemberPromoteRequest, MemberPromoteResponse};
use api::peerpb::membership_client::MembershipClient;
use api::peerpb::membership_server::Membership;
use api::peerpb::{MembersRequest, MembersResponse, PromoteRequest};
use tonic::{Request, Response, Status};

use crate::client::grpc::ClusterService;
use crate::peer::{Dialer, PROTOCOL_VERSION};
use crate::server::EtcdServer;
use datadir::membership::Cluster;

/// How long asking one peer may take.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(3);

pub struct MembershipService {
    cluster_id: u64,
    cluster: Arc<Cluster>,
    /// Set once the server runs (the peer port serves before it does).
    server: Arc<OnceLock<Arc<EtcdServer>>>,
}

impl MembershipService {
    pub fn new(
        cluster_id: u64,
        cluster: Arc<Cluster>,
        server: Arc<OnceLock<Arc<EtcdServer>>>,
    ) -> Self {
        MembershipService {
            cluster_id,
            cluster,
            server,
        }
    }
}

fn check_version(version: u32) -> Result<(), Status> {
    if version != PROTOCOL_VERSION {
        return Err(Status::failed_precondition(format!(
            "peer protocol version {version} is not {PROTOCOL_VERSION}"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl Membership for MembershipService {
    async fn members(
        &self,
        request: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        check_version(request.get_ref().version)?;
        Ok(Response::new(MembersResponse {
            cluster_id: self.cluster_id,
            members: self.cluster.members(),
            removed: self.cluster.removed(),
        }))
    }

    async fn promote(
        &self,
        request: Request<PromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let request = request.into_inner();
        check_version(request.version)?;
        let server = self
            .server
            .get()
            .cloned()
            .ok_or_else(|| Status::unavailable("etcdserver: server not started yet"))?;
        ClusterService::new(server)
            .member_promote(Request::new(MemberPromoteRequest { id: request.id }))
            .await
    }
}

/// Asks the leader (at the end of `channel`) to promote learner `id`; its
/// answer, error or not, is the answer.
pub async fn forward_promote(
    channel: tonic::transport::Channel,
    id: u64,
    timeout: Duration,
) -> Result<MemberPromoteResponse, Status> {
    let mut client = MembershipClient::new(channel);
    let call = client.promote(PromoteRequest {
        version: PROTOCOL_VERSION,
        id,
    });
    match tokio::time::timeout(timeout, call).await {
        Ok(answer) => answer.map(Response::into_inner),
        Err(_) => Err(api::EtcdError::Timeout.into()),
    }
}

/// What a joining member learns from the cluster.
#[derive(Debug)]
pub struct Discovered {
    pub cluster_id: u64,
    pub member_id: u64,
    pub members: Vec<Member>,
}

/// Asks the other members' peer URLs (from --initial-cluster) for the cluster,
/// and finds this member in it by its advertised peer URLs.
pub async fn discover(
    dialer: &Dialer,
    peer_urls: &[String],
    own_peer_urls: &[String],
) -> Result<Discovered> {
    let mut last_error = String::from("no peer URL to ask");
    for url in peer_urls {
        let answer = async {
            let channel = dialer.connect(url).await.map_err(anyhow::Error::msg)?;
            let mut client = MembershipClient::new(channel);
            let call = client.members(MembersRequest {
                version: PROTOCOL_VERSION,
            });
            let resp = tokio::time::timeout(DISCOVERY_TIMEOUT, call)
                .await
                .map_err(|_| anyhow::anyhow!("timed out"))??;
            anyhow::Ok(resp.into_inner())
        }
        .await;
        let resp = match answer {
            Ok(r) => r,
            Err(e) => {
                last_error = format!("{url}: {e}");
                continue;
            }
        };
        let mut own = own_peer_urls.to_vec();
        own.sort();
        let local = resp.members.iter().find(|m| {
            let mut urls = m.peer_ur_ls.clone();
            urls.sort();
            urls == own
        });
        let Some(local) = local else {
            bail!(
                "this member (peer URLs {}) is not in the cluster {:x} that {url} belongs to: \
                 add it with 'etcdctl member add' first",
                own_peer_urls.join(","),
                resp.cluster_id
            );
        };
        if resp.removed.contains(&local.id) {
            bail!("the member has been permanently removed from the cluster");
        }
        return Ok(Discovered {
            cluster_id: resp.cluster_id,
            member_id: local.id,
            members: resp.members.clone(),
        });
    }
    bail!("cannot reach any member of the existing cluster ({last_error})")
}
