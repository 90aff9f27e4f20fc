//! The peer-port end of corruption checks: this member's HashKV, asked by
//! the other members (etcd's `/members/hashkv`).

use std::sync::Arc;

use api::etcdserverpb::{HashKvResponse, ResponseHeader};
use api::peerpb::corruption_server::Corruption;
use api::peerpb::PeerHashKvRequest;
use tonic::{Request, Response, Status};

use super::checked;
use crate::state::hash::hash_kv;

/// Serves this member's HashKV to the other members.
pub struct CorruptionService {
    store: Arc<mvcc::Store>,
    member_id: u64,
    cluster_id: u64,
}

impl CorruptionService {
    pub fn new(store: Arc<mvcc::Store>, member_id: u64, cluster_id: u64) -> Self {
        CorruptionService {
            store,
            member_id,
            cluster_id,
        }
    }
}

#[tonic::async_trait]
impl Corruption for CorruptionService {
    async fn hash_kv(
        &self,
        request: Request<PeerHashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let r = request.into_inner();
        checked(r.version)?;
        let h = hash_kv(self.store.clone(), r.revision)
            .await
            .map_err(crate::status::mvcc_status)?;
        Ok(Response::new(HashKvResponse {
            header: Some(ResponseHeader {
                cluster_id: self.cluster_id,
                member_id: self.member_id,
                revision: h.current_revision,
                raft_term: 0,
            }),
            hash: h.hash,
            compact_revision: h.compact_revision,
            hash_revision: h.hash_revision,
        }))
    }
}
