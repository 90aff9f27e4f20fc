//! The client side of the peer port's membership calls: a new member of an
//! existing cluster (`--initial-cluster-state existing`) asks the others
//! who is in the cluster, to learn the cluster ID and the member ID that
//! MemberAdd gave it (matched by its peer URLs), as etcd does over its peer
//! HTTP API; a follower forwards MemberPromote to the leader.

use std::time::Duration;

use crate::status::{bail, Context, Result};
use api::etcdserverpb::{Member, MemberPromoteResponse};
use api::peerpb::membership_client::MembershipClient;
use api::peerpb::{MembersRequest, PromoteRequest};
use tonic::{Response, Status};

use crate::transport::{Dialer, PROTOCOL_VERSION};

/// How long asking one peer may take.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(3);

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
            let channel = dialer
                .connect(url)
                .await
                .map_err(crate::status::Error::fatal)?;
            let mut client = MembershipClient::new(channel);
            let call = client.members(MembersRequest {
                version: PROTOCOL_VERSION,
            });
            let resp = tokio::time::timeout(DISCOVERY_TIMEOUT, call)
                .await
                .context("timed out")?
                .context("the members call failed")?;
            Ok::<_, crate::status::Error>(resp.into_inner())
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
