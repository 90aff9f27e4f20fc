//! Txn requests.
//!
//! As in etcd, a txn runs in four steps, all against the state before it:
//! 1. evaluate the compares of the txn and of every nested txn on the taken
//!    branches, giving the *path* (one bool per txn, depth first);
//! 2. check the puts on the path (`ignore_value`/`ignore_lease` need the key,
//!    the lease must exist), then the ranges (revision not future, not
//!    compacted): any failure fails the whole txn, which then changes nothing;
//! 3. apply the ops on the path in order; they cannot fail any more;
//! 4. the txn's revision is the current one, plus one if anything changed.
//!
//! One departure: step 2 decides whether an `ignore_*` put finds its key
//! from the state *at that op*, counting the txn's earlier deletes and puts.
//! etcd checks the state before the txn and crashes when an earlier delete
//! (one with range_end "\0", which escapes the duplicate-key check) removed
//! the key; here the txn fails with [`Error::KeyNotFound`] instead.

use std::cmp::Ordering;

use api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use api::etcdserverpb::request_op::Request;
use api::etcdserverpb::response_op::Response;
use api::etcdserverpb::{
    Compare, RangeRequest, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use api::mvccpb::{Event, KeyValue};

use crate::batch::WriteBatch;
use crate::index::KeyRange;
use crate::range::{self, header, View};
use crate::{Error, Result};

/// Whether every op of both branches is a range: etcd serves such a txn
/// locally instead of through raft (see [`crate::Store::txn_read_only`]).
pub fn is_txn_read_only(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| matches!(op.request, Some(Request::RequestRange(_))))
}

/// Whether every op is a serializable range (no ReadIndex round needed).
pub fn is_txn_serializable(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| matches!(&op.request, Some(Request::RequestRange(r)) if r.serializable))
}

fn branch(req: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

/// Whether all compares hold.
fn compares_hold<V: View>(view: &V, compares: &[Compare]) -> Result<bool> {
    for compare in compares {
        if !compare_holds(view, compare)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A compare holds when it holds for every key of its range live now; over
/// no key it compares against an empty KeyValue, except a value compare,
/// which then fails.
fn compare_holds<V: View>(view: &V, compare: &Compare) -> Result<bool> {
    let range = KeyRange::new(&compare.key, &compare.range_end);
    let target = CompareTarget::try_from(compare.target).ok();
    let kvs = match target {
        Some(CompareTarget::Value | CompareTarget::Lease) => range::live_kvs(view, range)?,
        // Versions and revisions are in the index: no backend read.
        _ => {
            let at = view.rev();
            let mut kvs = Vec::new();
            view.index().visit(range, |_, ki| {
                if let Some((modified, created, version)) = ki.get(at) {
                    kvs.push(KeyValue {
                        create_revision: created.main,
                        mod_revision: modified.main,
                        version,
                        ..Default::default()
                    });
                }
            });
            kvs
        }
    };
    if kvs.is_empty() {
        if target == Some(CompareTarget::Value) {
            return Ok(false);
        }
        return Ok(compare_kv(compare, target, &KeyValue::default()));
    }
    Ok(kvs.iter().all(|kv| compare_kv(compare, target, kv)))
}

fn compare_kv(compare: &Compare, target: Option<CompareTarget>, kv: &KeyValue) -> bool {
    let number = |pick: fn(&TargetUnion) -> Option<i64>| {
        compare.target_union.as_ref().and_then(pick).unwrap_or(0)
    };
    let ordering = match target {
        Some(CompareTarget::Value) => {
            let value = match &compare.target_union {
                Some(TargetUnion::Value(v)) => v.as_slice(),
                _ => &[],
            };
            kv.value.as_slice().cmp(value)
        }
        Some(CompareTarget::Version) => kv.version.cmp(&number(|u| match u {
            TargetUnion::Version(v) => Some(*v),
            _ => None,
        })),
        Some(CompareTarget::Create) => kv.create_revision.cmp(&number(|u| match u {
            TargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        Some(CompareTarget::Mod) => kv.mod_revision.cmp(&number(|u| match u {
            TargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        })),
        Some(CompareTarget::Lease) => kv.lease.cmp(&number(|u| match u {
            TargetUnion::Lease(v) => Some(*v),
            _ => None,
        })),
        None => Ordering::Equal,
    };
    match CompareResult::try_from(compare.result) {
        Ok(CompareResult::Equal) => ordering == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ordering != Ordering::Equal,
        Ok(CompareResult::Greater) => ordering == Ordering::Greater,
        Ok(CompareResult::Less) => ordering == Ordering::Less,
        Err(_) => true,
    }
}

/// Appends the outcome of `req`'s compares, then those of the nested txns
/// on the taken branch, depth first.
fn compare_to_path<V: View>(view: &V, req: &TxnRequest, path: &mut Vec<bool>) -> Result<()> {
    let succeeded = compares_hold(view, &req.compare)?;
    path.push(succeeded);
    for op in branch(req, succeeded) {
        if let Some(Request::RequestTxn(nested)) = &op.request {
            compare_to_path(view, nested, path)?;
        }
    }
    Ok(())
}

/// etcd's revision check for a range inside a txn. Unlike a plain range, a
/// negative revision below the compaction revision fails here.
fn check_range_revision<V: View>(view: &V, req: &RangeRequest) -> Result<()> {
    if req.revision == 0 {
        Ok(())
    } else if req.revision > view.rev() {
        Err(Error::FutureRevision)
    } else if req.revision < view.compact_rev() {
        Err(Error::Compacted)
    } else {
        Ok(())
    }
}

/// A write on the path, for deciding whether a later put finds its key.
enum Step<'r> {
    Put(&'r [u8]),
    Delete(KeyRange<'r>),
}

/// Checks the puts on the path in order (`ignore_*` needs the key, the
/// lease must exist).
fn check_puts<'r>(
    batch: &WriteBatch<'_>,
    req: &'r TxnRequest,
    path: &[bool],
    pos: &mut usize,
    steps: &mut Vec<Step<'r>>,
) -> Result<()> {
    let succeeded = path.get(*pos).copied().unwrap_or(false);
    *pos += 1;
    for op in branch(req, succeeded) {
        match &op.request {
            Some(Request::RequestTxn(nested)) => check_puts(batch, nested, path, pos, steps)?,
            Some(Request::RequestPut(put)) => {
                if (put.ignore_value || put.ignore_lease) && !key_exists(batch, steps, &put.key) {
                    return Err(Error::KeyNotFound);
                }
                if put.lease != 0 && !batch.lease_exists(put.lease) {
                    return Err(Error::LeaseNotFound);
                }
                steps.push(Step::Put(&put.key));
            }
            Some(Request::RequestDeleteRange(delete)) => {
                steps.push(Step::Delete(KeyRange::new(&delete.key, &delete.range_end)));
            }
            Some(Request::RequestRange(_)) | None => {}
        }
    }
    Ok(())
}

/// Whether `key` exists after the txn's `steps` so far.
fn key_exists(batch: &WriteBatch<'_>, steps: &[Step<'_>], key: &[u8]) -> bool {
    for step in steps.iter().rev() {
        match step {
            Step::Put(k) if *k == key => return true,
            Step::Delete(range) if range.contains(key) => return false,
            _ => {}
        }
    }
    batch.index().get(key, batch.rev()).is_some()
}

/// Checks the revisions of the ranges on the path.
fn check_ranges<V: View>(view: &V, req: &TxnRequest, path: &[bool], pos: &mut usize) -> Result<()> {
    let succeeded = path.get(*pos).copied().unwrap_or(false);
    *pos += 1;
    for op in branch(req, succeeded) {
        match &op.request {
            Some(Request::RequestTxn(nested)) => check_ranges(view, nested, path, pos)?,
            Some(Request::RequestRange(r)) => check_range_revision(view, r)?,
            _ => {}
        }
    }
    Ok(())
}

/// Serves a read-only txn against `view`.
pub(crate) fn txn_read_only<V: View>(view: &V, req: &TxnRequest) -> Result<TxnResponse> {
    if !is_txn_read_only(req) {
        return Err(Error::NotReadOnly);
    }
    let succeeded = compares_hold(view, &req.compare)?;
    let ops = branch(req, succeeded);
    for op in ops {
        if let Some(Request::RequestRange(r)) = &op.request {
            check_range_revision(view, r)?;
        }
    }
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => Some(Response::ResponseRange(range::range(view, r)?)),
            _ => None,
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse {
        header: header(view.rev()),
        succeeded,
        responses,
    })
}

impl WriteBatch<'_> {
    /// Applies a txn (the request has begun).
    pub(crate) fn apply_txn_request(
        &mut self,
        req: &TxnRequest,
        events: &mut Vec<Event>,
    ) -> Result<TxnResponse> {
        let mut path = Vec::new();
        compare_to_path(self, req, &mut path)?;
        check_puts(self, req, &path, &mut 0, &mut Vec::new())?;
        check_ranges(self, req, &path, &mut 0)?;
        match self.apply_txn(req, &path, &mut 0, events) {
            Ok(mut resp) => {
                resp.header = header(self.rev);
                Ok(resp)
            }
            Err(e) => {
                // Part of the txn may be applied: the batch cannot go on.
                self.mark_broken();
                Err(e)
            }
        }
    }

    fn apply_txn(
        &mut self,
        req: &TxnRequest,
        path: &[bool],
        pos: &mut usize,
        events: &mut Vec<Event>,
    ) -> Result<TxnResponse> {
        let succeeded = path.get(*pos).copied().unwrap_or(false);
        *pos += 1;
        let ops = branch(req, succeeded);
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => {
                    Some(Response::ResponseRange(range::range(&*self, r)?))
                }
                Some(Request::RequestPut(r)) => {
                    Some(Response::ResponsePut(self.apply_put(r, events)?))
                }
                Some(Request::RequestDeleteRange(r)) => Some(Response::ResponseDeleteRange(
                    self.apply_delete_range(r, events)?,
                )),
                Some(Request::RequestTxn(nested)) => {
                    let mut resp = self.apply_txn(nested, path, pos, events)?;
                    // etcd fills no revision in a nested txn's header.
                    resp.header = Some(ResponseHeader::default());
                    Some(Response::ResponseTxn(resp))
                }
                None => None,
            };
            responses.push(ResponseOp { response });
        }
        Ok(TxnResponse {
            header: None,
            succeeded,
            responses,
        })
    }
}
