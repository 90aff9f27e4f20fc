//! The checks etcd makes at the gRPC edge, before a request is proposed.
//! A request that fails them never reaches raft.

use std::collections::HashSet;

use api::etcdserverpb::range_request::{SortOrder, SortTarget};
use api::etcdserverpb::request_op::Request;
use api::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

use crate::{Error, Result};

/// A range needs a key and a known sort order and target.
pub fn validate_range(req: &RangeRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if SortOrder::try_from(req.sort_order).is_err()
        || SortTarget::try_from(req.sort_target).is_err()
    {
        return Err(Error::InvalidSortOption);
    }
    Ok(())
}

/// A put needs a key, and no value with `ignore_value`, no lease with
/// `ignore_lease`.
pub fn validate_put(req: &PutRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

/// A delete needs a key.
pub fn validate_delete_range(req: &DeleteRangeRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// A txn: at most `max_txn_ops` compares, success ops and failure ops each
/// (a nested txn gets what its parent leaves), every op valid, and no key
/// written twice: a put may not hit a key put or deleted by its own list of
/// ops, by that list's earlier nested txns, or by a delete of an enclosing
/// list. As in etcd, a delete with range_end "\0" conflicts with nothing.
pub fn validate_txn(req: &TxnRequest, max_txn_ops: usize) -> Result<()> {
    check_txn(req, i64::try_from(max_txn_ops).unwrap_or(i64::MAX))?;
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    Ok(())
}

fn check_txn(req: &TxnRequest, max_ops: i64) -> Result<()> {
    let ops = req
        .compare
        .len()
        .max(req.success.len())
        .max(req.failure.len()) as i64;
    if ops > max_ops {
        return Err(Error::TooManyOps);
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in req.success.iter().chain(&req.failure) {
        check_op(op, max_ops - ops)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_ops: i64) -> Result<()> {
    match &op.request {
        Some(Request::RequestRange(r)) => validate_range(r),
        Some(Request::RequestPut(r)) => validate_put(r),
        Some(Request::RequestDeleteRange(r)) => validate_delete_range(r),
        Some(Request::RequestTxn(r)) => check_txn(r, max_ops),
        // etcd answers an empty op so.
        None => Err(Error::KeyNotFound),
    }
}

/// The keys a delete covers, as etcd's edge sees them: a point for an empty
/// range_end, else `[key, range_end)` compared bytewise. A range_end of
/// "\0" (all keys from key) therefore covers nothing here, as in etcd.
#[derive(Clone, Copy)]
struct Deleted<'r> {
    key: &'r [u8],
    range_end: &'r [u8],
}

impl Deleted<'_> {
    fn covers(&self, key: &[u8]) -> bool {
        if self.range_end.is_empty() {
            key == self.key
        } else {
            self.key <= key && key < self.range_end
        }
    }
}

fn covered(deletes: &[Deleted<'_>], key: &[u8]) -> bool {
    deletes.iter().any(|d| d.covers(key))
}

/// etcd's duplicate-key rule for one list of ops: a put may not hit a key
/// put or deleted by the same list, by the list's earlier nested txns, or by
/// a delete of its parent lists. The two branches of one nested txn may put
/// the same key (only one runs). Returns the puts and deletes of the list
/// for the parent's check.
fn check_intervals(ops: &[RequestOp]) -> Result<(HashSet<&[u8]>, Vec<Deleted<'_>>)> {
    let mut deletes: Vec<Deleted<'_>> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(Deleted {
                key: &d.key,
                range_end: &d.range_end,
            }),
            _ => None,
        })
        .collect();

    let mut puts: HashSet<&[u8]> = HashSet::new();
    for op in ops {
        let Some(Request::RequestTxn(nested)) = &op.request else {
            continue;
        };
        let (puts_then, deletes_then) = check_intervals(&nested.success)?;
        let (puts_else, deletes_else) = check_intervals(&nested.failure)?;
        for &key in &puts_then {
            if puts.contains(key) || covered(&deletes, key) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(key);
        }
        for &key in &puts_else {
            if (puts.contains(key) && !puts_then.contains(key)) || covered(&deletes, key) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(key);
        }
        deletes.extend(deletes_then);
        deletes.extend(deletes_else);
    }

    for op in ops {
        let Some(Request::RequestPut(put)) = &op.request else {
            continue;
        };
        let key = put.key.as_slice();
        if puts.contains(key) || covered(&deletes, key) {
            return Err(Error::DuplicateKey);
        }
        puts.insert(key);
    }
    Ok((puts, deletes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::etcdserverpb::Compare;

    fn put(key: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: key.into(),
                ..Default::default()
            })),
        }
    }

    fn del(key: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: key.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }

    fn get(key: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key: key.into(),
                ..Default::default()
            })),
        }
    }

    fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestTxn(TxnRequest {
                compare: vec![],
                success,
                failure,
            })),
        }
    }

    fn txn(success: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success,
            failure: vec![],
        }
    }

    #[test]
    fn single_requests() {
        let bad_sort = RangeRequest {
            key: b"a".to_vec(),
            sort_order: 9,
            ..Default::default()
        };
        let bad_target = RangeRequest {
            key: b"a".to_vec(),
            sort_target: 9,
            ..Default::default()
        };
        let cases: Vec<(Result<()>, Option<Error>)> = vec![
            (
                validate_range(&RangeRequest::default()),
                Some(Error::EmptyKey),
            ),
            (validate_range(&bad_sort), Some(Error::InvalidSortOption)),
            (validate_range(&bad_target), Some(Error::InvalidSortOption)),
            (
                validate_range(&RangeRequest {
                    key: b"a".to_vec(),
                    sort_order: 2,
                    sort_target: 4,
                    ..Default::default()
                }),
                None,
            ),
            (validate_put(&PutRequest::default()), Some(Error::EmptyKey)),
            (
                validate_put(&PutRequest {
                    key: b"a".to_vec(),
                    value: b"v".to_vec(),
                    ignore_value: true,
                    ..Default::default()
                }),
                Some(Error::ValueProvided),
            ),
            (
                validate_put(&PutRequest {
                    key: b"a".to_vec(),
                    lease: 5,
                    ignore_lease: true,
                    ..Default::default()
                }),
                Some(Error::LeaseProvided),
            ),
            (
                validate_put(&PutRequest {
                    key: b"a".to_vec(),
                    ignore_value: true,
                    ignore_lease: true,
                    ..Default::default()
                }),
                None,
            ),
            (
                validate_delete_range(&DeleteRangeRequest::default()),
                Some(Error::EmptyKey),
            ),
        ];
        for (i, (got, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                got.err().map(|e| e.to_string()),
                want.map(|e| e.to_string()),
                "case {i}"
            );
        }
    }

    #[test]
    fn txn_rules() {
        let ops = |n: usize| (0..n).map(|i| get(&format!("k{i}"))).collect::<Vec<_>>();
        let compare = |key: &str| Compare {
            key: key.into(),
            ..Default::default()
        };
        let cases: Vec<(&str, TxnRequest, Option<Error>)> = vec![
            ("empty txn", txn(vec![]), None),
            ("at the limit", txn(ops(4)), None),
            ("over the limit", txn(ops(5)), Some(Error::TooManyOps)),
            (
                "compares count too",
                TxnRequest {
                    compare: (0..5).map(|_| compare("a")).collect(),
                    ..Default::default()
                },
                Some(Error::TooManyOps),
            ),
            (
                "nested txn gets what is left",
                txn(vec![get("a"), nested(ops(2), vec![])]),
                None,
            ),
            (
                "nested txn over what is left",
                txn(vec![get("a"), get("b"), get("c"), nested(ops(2), vec![])]),
                Some(Error::TooManyOps),
            ),
            (
                "compare without key",
                TxnRequest {
                    compare: vec![compare("")],
                    ..Default::default()
                },
                Some(Error::EmptyKey),
            ),
            ("op without key", txn(vec![put("")]), Some(Error::EmptyKey)),
            (
                "empty op",
                txn(vec![RequestOp { request: None }]),
                Some(Error::KeyNotFound),
            ),
            (
                "two puts",
                txn(vec![put("a"), put("a")]),
                Some(Error::DuplicateKey),
            ),
            (
                "put and point delete",
                txn(vec![del("a", ""), put("a")]),
                Some(Error::DuplicateKey),
            ),
            (
                "put in deleted range",
                txn(vec![put("b"), del("a", "c")]),
                Some(Error::DuplicateKey),
            ),
            ("put at range end", txn(vec![put("c"), del("a", "c")]), None),
            (
                "from-key delete escapes",
                txn(vec![del("a", "\0"), put("b")]),
                None,
            ),
            ("inverted range", txn(vec![del("c", "a"), put("b")]), None),
            ("two deletes", txn(vec![del("a", "c"), del("b", "d")]), None),
            (
                "gets are free",
                txn(vec![get("a"), put("a"), get("a")]),
                None,
            ),
            (
                "both branches may put a key",
                txn(vec![nested(vec![put("a")], vec![put("a")])]),
                None,
            ),
            (
                "nested put and parent put",
                txn(vec![nested(vec![put("a")], vec![]), put("a")]),
                Some(Error::DuplicateKey),
            ),
            (
                "nested else put and parent put",
                txn(vec![nested(vec![], vec![put("a")]), put("a")]),
                Some(Error::DuplicateKey),
            ),
            (
                "nested put under parent delete",
                txn(vec![del("a", "b"), nested(vec![put("a")], vec![])]),
                Some(Error::DuplicateKey),
            ),
            (
                "nested delete and parent put",
                txn(vec![put("a"), nested(vec![del("a", "")], vec![])]),
                Some(Error::DuplicateKey),
            ),
            (
                "two nested txns put one key",
                txn(vec![
                    nested(vec![put("a")], vec![]),
                    nested(vec![], vec![put("a")]),
                ]),
                Some(Error::DuplicateKey),
            ),
            (
                "later nested put under earlier nested delete",
                txn(vec![
                    nested(vec![del("a", "")], vec![]),
                    nested(vec![put("a")], vec![]),
                ]),
                Some(Error::DuplicateKey),
            ),
            (
                "earlier nested put, later nested delete (etcd lets it pass)",
                txn(vec![
                    nested(vec![put("a")], vec![]),
                    nested(vec![del("a", "")], vec![]),
                ]),
                None,
            ),
            (
                "duplicate inside a nested branch",
                txn(vec![nested(vec![put("a"), put("a")], vec![])]),
                Some(Error::DuplicateKey),
            ),
        ];
        for (name, req, want) in cases {
            let got = validate_txn(&req, 4).err().map(|e| e.to_string());
            assert_eq!(got, want.map(|e| e.to_string()), "{name}");
        }
        // Failure ops are checked too.
        let req = TxnRequest {
            failure: vec![put("x"), put("x")],
            ..Default::default()
        };
        assert!(matches!(validate_txn(&req, 4), Err(Error::DuplicateKey)));
    }
}
