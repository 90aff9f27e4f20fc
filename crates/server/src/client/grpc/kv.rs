//! The KV service: edge validation as etcd's v3rpc does it, then reads from
//! the local store (after a ReadIndex barrier unless serializable) and writes
//! through raft.

use std::sync::Arc;

use api::etcdserverpb::kv_server::Kv;
use api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use api::EtcdError;
use tonic::{Request, Response, Status};

use crate::server::EtcdServer;
use crate::status::mvcc_status;

pub struct KvService {
    server: Arc<EtcdServer>,
}

impl KvService {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        KvService { server }
    }

    /// A learner serves serializable reads only, as in etcd.
    fn refuse_learner(&self) -> Result<(), Status> {
        if self.server.is_learner() {
            return Err(EtcdError::NotSupportedForLearner.into());
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        let req = request.into_inner();
        mvcc::validate_range(&req).map_err(mvcc_status)?;
        if !req.serializable {
            self.refuse_learner()?;
        }
        Ok(Response::new(self.server.range(&caller, &req).await?))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        let req = request.into_inner();
        self.server
            .check_quota(crate::state::quota::put_cost(&req))?;
        mvcc::validate_put(&req).map_err(mvcc_status)?;
        self.refuse_learner()?;
        Ok(Response::new(self.server.put(&caller, req).await?))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        let req = request.into_inner();
        mvcc::validate_delete_range(&req).map_err(mvcc_status)?;
        self.refuse_learner()?;
        Ok(Response::new(self.server.delete_range(&caller, req).await?))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        let req = request.into_inner();
        self.server
            .check_quota(crate::state::quota::txn_cost(&req))?;
        mvcc::validate_txn(&req, self.server.config().max_txn_ops).map_err(mvcc_status)?;
        // A txn that only reads is served locally, as etcd serves it.
        if mvcc::is_txn_read_only(&req) {
            if !mvcc::is_txn_serializable(&req) {
                self.refuse_learner()?;
                self.server.read_barrier().await?;
            }
            self.server.check_txn(&caller, &req)?;
            let mut resp = self
                .server
                .store()
                .txn_read_only(&req)
                .map_err(mvcc_status)?;
            self.server.metrics().mvcc.record_txn(&req, &resp);
            self.server.fill_header(&mut resp.header);
            return Ok(Response::new(resp));
        }
        self.refuse_learner()?;
        Ok(Response::new(self.server.txn(&caller, req).await?))
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let caller = super::caller(&self.server, &request).await?;
        let req = request.into_inner();
        self.refuse_learner()?;
        Ok(Response::new(self.server.compact(&caller, req).await?))
    }
}
