//! The backend quota (`--quota-backend-bytes`), as etcd charges it: a
//! request that adds data is refused with "database space exceeded" when the
//! backend size (`dbSize`: what bbolt would occupy for the same rows, see
//! `mvcc::Store::db_size_bytes`, not redb's file, which grows by doubling)
//! plus the request's estimated cost would reach the quota, and the member
//! raises the cluster-wide NOSPACE alarm. Deletes, reads and compactions
//! cost nothing and always pass.

use api::etcdserverpb::{request_op, PutRequest, TxnRequest};

/// etcd's estimate of a lease's storage cost.
pub const LEASE_COST: u64 = 64;
/// etcd's estimate of a key's metadata cost.
const KV_OVERHEAD: u64 = 256;
/// etcd's default quota (when the flag is 0): 2 GiB.
pub const DEFAULT_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;
/// etcd warns above this quota: 8 GiB.
pub const MAX_RECOMMENDED_QUOTA_BYTES: i64 = 8 * 1024 * 1024 * 1024;

pub fn put_cost(r: &PutRequest) -> u64 {
    KV_OVERHEAD + r.key.len() as u64 + r.value.len() as u64
}

/// The dearer branch's puts (top-level ones only, as etcd counts).
pub fn txn_cost(r: &TxnRequest) -> u64 {
    let branch = |ops: &[api::etcdserverpb::RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(request_op::Request::RequestPut(p)) => put_cost(p),
                _ => 0,
            })
            .sum()
    };
    branch(&r.success).max(branch(&r.failure))
}

/// The quota in force for the flag's value: None when disabled (negative).
pub fn effective_quota(flag: i64) -> Option<u64> {
    match flag {
        q if q < 0 => None,
        0 => Some(DEFAULT_QUOTA_BYTES as u64),
        q => Some(q as u64),
    }
}

/// Whether a request of `cost` fits: free requests always do.
pub fn fits(quota: Option<u64>, db_size: u64, cost: u64) -> bool {
    match quota {
        _ if cost == 0 => true,
        None => true,
        Some(q) => db_size.saturating_add(cost) < q,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::etcdserverpb::{DeleteRangeRequest, RequestOp};

    fn put(key: &str, value: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn costs_as_etcd_charges_them() {
        assert_eq!(
            put_cost(&PutRequest {
                key: b"k".to_vec(),
                value: b"vv".to_vec(),
                ..Default::default()
            }),
            259
        );
        let delete = RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest::default(),
            )),
        };
        let txn = TxnRequest {
            success: vec![put("a", "1"), delete],
            failure: vec![put("a", "1"), put("bb", "22")],
            ..Default::default()
        };
        assert_eq!(txn_cost(&txn), 258 + 260);
        assert_eq!(txn_cost(&TxnRequest::default()), 0);
    }

    #[test]
    fn quota_flag_and_fit() {
        assert_eq!(effective_quota(0), Some(DEFAULT_QUOTA_BYTES as u64));
        assert_eq!(effective_quota(-1), None);
        assert!(fits(Some(1000), 700, 299));
        assert!(!fits(Some(1000), 700, 300));
        assert!(fits(Some(1000), 5000, 0));
        assert!(fits(None, u64::MAX, 10));
    }
}
