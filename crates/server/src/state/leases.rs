//! The lessor's state on the server: recovering it from the backend, the
//! backend's lease rows, and lease errors as etcd's. The leader's expiry
//! loop is `duties::lease_expiry`; keep-alive and TimeToLive, which only the
//! primary lessor answers, are the server's (`server::leases`).

use std::sync::Arc;

use crate::status::{Context, Result};
use api::etcdserverpb::RangeRequest;
use api::EtcdError;
use lease::{LeaseError, LeaseRecord, Lessor};
use prost::Message;

/// Keys read per range while rebuilding lease attachments. A page holds its
/// values in memory: 10,000 keys of 50 kB values made a 1.1 GB member peak at
/// 690 MB RSS while it started; 256 keep a page to a few MB in common cases.
const RECOVER_PAGE_KEYS: i64 = 256;

/// Lets the backend check that a put's lease exists.
pub struct LessorLookup(pub Arc<Lessor>);

impl mvcc::LeaseLookup for LessorLookup {
    fn lease_exists(&self, id: i64) -> bool {
        self.0.exists(id)
    }
}

/// A lease row as the backend stores it (etcd's leasepb.Lease).
pub fn encode_record(r: &LeaseRecord) -> Vec<u8> {
    api::leasepb::Lease {
        id: r.id,
        ttl: r.ttl,
        remaining_ttl: r.remaining_ttl,
    }
    .encode_to_vec()
}

pub fn lease_error(e: LeaseError) -> EtcdError {
    match e {
        LeaseError::NotFound => EtcdError::LeaseNotFound,
        LeaseError::Exists => EtcdError::LeaseExist,
        LeaseError::TtlTooLarge => EtcdError::LeaseTtlTooLarge,
        LeaseError::NotPrimary => EtcdError::NotLeader,
    }
}

/// Rebuilds the lessor from the backend: the lease rows, and every live key
/// that names a lease (at start-up, and after a snapshot from the leader).
pub fn recover(store: &mvcc::Store, lessor: &Lessor) -> Result<()> {
    let mut records = Vec::new();
    for (id, value) in store.leases().context("read the lease table")? {
        let row = api::leasepb::Lease::decode(value.as_slice())
            .with_context(|| format!("lease {id:016x} is unreadable"))?;
        records.push(LeaseRecord {
            id,
            ttl: row.ttl,
            remaining_ttl: row.remaining_ttl,
        });
    }
    let mut attached = Vec::new();
    let mut start = vec![0u8];
    loop {
        let page = store
            .range(&RangeRequest {
                key: start.clone(),
                range_end: vec![0],
                limit: RECOVER_PAGE_KEYS,
                ..Default::default()
            })
            .context("read keys to rebuild lease attachments")?;
        for kv in &page.kvs {
            if kv.lease != lease::NO_LEASE {
                attached.push((kv.key.clone(), kv.lease));
            }
        }
        match page.kvs.last() {
            Some(last) if page.more => {
                start = last.key.clone();
                start.push(0);
            }
            _ => break,
        }
    }
    lessor.recover(&records, &attached);
    tracing::info!(
        leases = records.len(),
        attached_keys = attached.len(),
        "recovered leases"
    );
    Ok(())
}
