//! Membership on the peer port: a member answers who is in the cluster, and
//! a new member joining an existing cluster (`--initial-cluster-state
//! existing`) asks, to learn the cluster ID and the member ID that
//! MemberAdd gave it (matched by its peer URLs), as etcd does over its
//! peer HTTP API.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use api::etcdserverpb::Member;
use api::peerpb::membership_client::MembershipClient;
use api::peerpb::membership_server::Membership;
use api::peerpb::{MembersRequest, MembersResponse};
use tonic::{Request, Response, Status};

use crate::cluster::Cluster;
use crate::peer::PROTOCOL_VERSION;

/// How long asking one peer may take.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(3);

pub struct MembershipService {
    cluster_id: u64,
    cluster: Arc<Cluster>,
}

impl MembershipService {
    pub fn new(cluster_id: u64, cluster: Arc<Cluster>) -> Self {
        MembershipService {
            cluster_id,
            cluster,
        }
    }
}

#[tonic::async_trait]
impl Membership for MembershipService {
    async fn members(
        &self,
        request: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        if request.get_ref().version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "peer protocol version {} is not {PROTOCOL_VERSION}",
                request.get_ref().version
            )));
        }
        Ok(Response::new(MembersResponse {
            cluster_id: self.cluster_id,
            members: self.cluster.members(),
            removed: self.cluster.removed(),
        }))
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
pub async fn discover(peer_urls: &[String], own_peer_urls: &[String]) -> Result<Discovered> {
    let mut last_error = String::from("no peer URL to ask");
    for url in peer_urls {
        let answer = async {
            let channel = tonic::transport::Endpoint::from_shared(url.clone())?
                .connect_timeout(DISCOVERY_TIMEOUT)
                .timeout(DISCOVERY_TIMEOUT)
                .connect()
                .await?;
            let resp = MembershipClient::new(channel)
                .members(MembersRequest {
                    version: PROTOCOL_VERSION,
                })
                .await?;
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
