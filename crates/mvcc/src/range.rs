//! Range requests, shared by readers and the write batch.
//!
//! As in etcd, the key index decides which revisions are live; the limit is
//! applied while collecting them only when nothing needs all of them (no
//! sort, no revision filter); `count` is the number of keys in the range at
//! the revision, before filters and limit; filters, then sort, then limit.

use std::cmp::Ordering;
use std::sync::RwLockReadGuard;

use api::etcdserverpb::range_request::{SortOrder, SortTarget};
use api::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use api::mvccpb::KeyValue;

use crate::index::{KeyRange, KeyTree};
use crate::{Error, Result, Revision};

/// A consistent state of the store that reads run against.
pub(crate) trait View {
    /// The current revision of this view.
    fn rev(&self) -> i64;
    /// Revisions below this were compacted.
    fn compact_rev(&self) -> i64;
    /// The key index (may hold revisions above [`View::rev`]; lookups at or
    /// below it are unaffected).
    fn index(&self) -> RwLockReadGuard<'_, KeyTree>;
    /// Loads the KeyValues of live revisions, in the given order.
    fn fetch(&self, revs: &[Revision]) -> Result<Vec<KeyValue>>;
}

/// A response header carrying only the revision; the server fills the rest.
pub(crate) fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// The revision a read at `requested` (0 or less: current) runs at.
pub(crate) fn read_revision<V: View>(view: &V, requested: i64) -> Result<i64> {
    let current = view.rev();
    if requested > current {
        return Err(Error::FutureRevision);
    }
    let at = if requested <= 0 { current } else { requested };
    if at < view.compact_rev() {
        return Err(Error::Compacted);
    }
    Ok(at)
}

/// The KeyValues live at `view.rev()` in `range`, in key order.
pub(crate) fn live_kvs<V: View>(view: &V, range: KeyRange<'_>) -> Result<Vec<KeyValue>> {
    let (revs, _) = view.index().revisions(range, view.rev(), 0);
    view.fetch(&revs)
}

/// Serves a range request against `view`.
pub(crate) fn range<V: View>(view: &V, req: &RangeRequest) -> Result<RangeResponse> {
    let at = read_revision(view, req.revision)?;
    let order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let filtered = req.min_mod_revision != 0
        || req.max_mod_revision != 0
        || req.min_create_revision != 0
        || req.max_create_revision != 0;
    // One more than the limit tells whether there is more.
    let collect_limit = if order != SortOrder::None || filtered || req.limit <= 0 {
        0
    } else {
        usize::try_from(req.limit.saturating_add(1)).unwrap_or(0)
    };

    let range = KeyRange::new(&req.key, &req.range_end);
    let (revs, count) = view.index().revisions(range, at, collect_limit);
    let mut resp = RangeResponse {
        header: header(view.rev()),
        kvs: Vec::new(),
        more: false,
        count: count as i64,
    };
    if req.count_only || revs.is_empty() {
        return Ok(resp);
    }

    let mut kvs = view.fetch(&revs)?;
    if filtered {
        kvs.retain(|kv| {
            (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
                && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
        });
    }
    sort(&mut kvs, order, target);
    if req.limit > 0 && kvs.len() as u64 > req.limit as u64 {
        kvs.truncate(req.limit as usize);
        resp.more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value = Vec::new();
        }
    }
    resp.kvs = kvs;
    Ok(resp)
}

/// Sorts as etcd does: a target other than KEY with order NONE sorts
/// ascending (results are in key order already). The sort is stable, so
/// ties stay in key order in both directions.
fn sort(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    let order = match (order, target) {
        (SortOrder::None, SortTarget::Key) => return,
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    };
    let compare = |a: &KeyValue, b: &KeyValue| -> Ordering {
        match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        }
    };
    match order {
        SortOrder::Descend => kvs.sort_by(|a, b| compare(b, a)),
        _ => kvs.sort_by(compare),
    }
}
