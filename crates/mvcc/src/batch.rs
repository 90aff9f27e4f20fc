//! The write batch: the requests of one raft Ready applied in one redb
//! write transaction.
//!
//! Changes go to the key index at once and to an in-memory list of encoded
//! values, which the commit writes to the "key" table in revision order.
//! Reads inside the batch (prev_kv, txn compares, ranges in a txn) see the
//! batch's own changes. After the commit the batch publishes its revision;
//! until then readers keep reading at the previous one.
//!
//! A request error leaves no trace. A backend error (or a batch dropped
//! without commit after it changed something) makes the store reload its key
//! index from the backend, which still holds the last committed state.

use std::sync::atomic::Ordering;
use std::sync::RwLockReadGuard;

use api::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use api::mvccpb::event::EventType;
use api::mvccpb::{Event, KeyValue};
use prost::Message;
use redb::{Durability, WriteTransaction};

use crate::backend::{self, ALARM_TABLE, KEY_TABLE, LEASE_TABLE, META_TABLE};
use crate::error::Context;
use crate::footprint;
use crate::index::{KeyRange, KeyTree};
use crate::range::{self, header, View};
use crate::revision::{RevKey, REV_KEY_LEN};
use crate::store::{LeaseLookup, Store, WriterGuard};
use crate::{Error, Result, Revision};

/// A change staged for the "key" table; its encoded value is
/// `values[start..end]`.
struct Staged {
    rev: Revision,
    tombstone: bool,
    start: usize,
    end: usize,
}

/// The writes of one raft Ready, applied in one redb write transaction.
pub struct WriteBatch<'s> {
    pub(crate) store: &'s Store,
    txn: Option<WriteTransaction>,
    /// Current revision inside the batch.
    pub(crate) rev: i64,
    /// Revision before the request being applied.
    begin_rev: i64,
    /// Next sub revision of the request being applied.
    sub: i64,
    compact_rev: i64,
    /// Compaction to apply to the key index at commit.
    compaction: Option<i64>,
    consistent: Option<(u64, u64)>,
    staged: Vec<Staged>,
    values: Vec<u8>,
    /// Footprint of the rows added to the "key" table ([`crate::footprint`]).
    added_footprint: u64,
    /// Footprint of the rows compaction removed.
    removed_footprint: u64,
    /// Rows (revisions) compaction removed.
    removed_rows: u64,
    /// The key index holds changes that are not committed.
    dirty: bool,
    /// A backend error struck half way through a request.
    broken: bool,
    pub(crate) leases: Option<&'s dyn LeaseLookup>,
    /// Lease rows to write (Some) or delete (None) at commit, in order.
    lease_rows: Vec<(i64, Option<Vec<u8>>)>,
    /// Alarm rows to write (true) or delete (false) at commit, in order.
    alarm_rows: Vec<(Vec<u8>, bool)>,
    auth_rows: Vec<(backend::AuthTable, Vec<u8>, Option<Vec<u8>>)>,
    /// The storage version to record (Some(None): remove the record).
    storage_version: Option<Option<String>>,
    /// The store's writer lock; declared last so the transaction drops first.
    _writer: WriterGuard<'s>,
}

impl<'s> WriteBatch<'s> {
    pub(crate) fn new(
        store: &'s Store,
        txn: WriteTransaction,
        writer: WriterGuard<'s>,
    ) -> WriteBatch<'s> {
        let rev = store.current_revision();
        WriteBatch {
            store,
            txn: Some(txn),
            rev,
            begin_rev: rev,
            sub: 0,
            compact_rev: store.compact_revision(),
            compaction: None,
            consistent: None,
            staged: Vec::new(),
            values: Vec::new(),
            added_footprint: 0,
            removed_footprint: 0,
            removed_rows: 0,
            dirty: false,
            broken: false,
            leases: None,
            lease_rows: Vec::new(),
            alarm_rows: Vec::new(),
            auth_rows: Vec::new(),
            storage_version: None,
            _writer: writer,
        }
    }

    /// Stores lease `id`'s row (written with the batch).
    pub fn put_lease(&mut self, id: i64, value: Vec<u8>) {
        self.lease_rows.push((id, Some(value)));
    }

    /// Removes lease `id`'s row (with the batch).
    pub fn delete_lease(&mut self, id: i64) {
        self.lease_rows.push((id, None));
    }

    /// Stores an alarm row (written with the batch).
    pub fn put_alarm(&mut self, key: Vec<u8>) {
        self.alarm_rows.push((key, true));
    }

    /// Removes an alarm row (with the batch).
    pub fn delete_alarm(&mut self, key: Vec<u8>) {
        self.alarm_rows.push((key, false));
    }

    /// Stores (`Some`) or removes (`None`) a row of an auth bucket (with
    /// the batch).
    pub fn put_auth_row(
        &mut self,
        table: backend::AuthTable,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    ) {
        self.auth_rows.push((table, key, value));
    }

    /// Makes puts check that their lease exists ([`Error::LeaseNotFound`]).
    /// Without it every lease is accepted.
    pub fn set_lease_lookup(&mut self, leases: &'s dyn LeaseLookup) {
        self.leases = Some(leases);
    }

    /// The current revision, including this batch's changes.
    pub fn revision(&self) -> i64 {
        self.rev
    }

    /// Applies a put request.
    pub fn put(&mut self, req: &PutRequest) -> Result<(PutResponse, Vec<Event>)> {
        self.check_usable()?;
        if req.lease != 0 && !self.lease_exists(req.lease) {
            return Err(Error::LeaseNotFound);
        }
        self.begin_request();
        let mut events = Vec::with_capacity(1);
        let resp = self.apply_put(req, &mut events)?;
        Ok((resp, events))
    }

    /// Applies a delete-range request. Deleting nothing takes no revision.
    pub fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<(DeleteRangeResponse, Vec<Event>)> {
        self.check_usable()?;
        self.begin_request();
        let mut events = Vec::new();
        let resp = self.apply_delete_range(req, &mut events)?;
        Ok((resp, events))
    }

    /// Applies a txn request: one revision for all its writes, none if it
    /// writes nothing.
    pub fn txn(&mut self, req: &TxnRequest) -> Result<(TxnResponse, Vec<Event>)> {
        self.check_usable()?;
        self.begin_request();
        let mut events = Vec::new();
        let resp = self.apply_txn_request(req, &mut events)?;
        Ok((resp, events))
    }

    /// Serves a range request that sees this batch's writes.
    pub fn range(&mut self, req: &RangeRequest) -> Result<RangeResponse> {
        self.check_usable()?;
        range::range(self, req)
    }

    /// Compacts at `req.revision`: revisions superseded at it are deleted
    /// from the backend in this batch; reads below it fail from now on.
    pub fn compact(&mut self, req: &CompactionRequest) -> Result<CompactionResponse> {
        self.check_usable()?;
        let at = req.revision;
        if at <= self.compact_rev {
            return Err(Error::Compacted);
        }
        if at > self.rev {
            return Err(Error::FutureRevision);
        }
        let result = self.compact_backend(at);
        if result.is_err() {
            self.broken = true;
        }
        result?;
        self.compact_rev = at;
        self.compaction = Some(at);
        Ok(CompactionResponse {
            header: header(self.rev),
        })
    }

    /// Records `version` as the storage version (None removes the record),
    /// with the batch; see [`Store::storage_version`].
    pub fn set_storage_version(&mut self, version: Option<&str>) {
        self.storage_version = Some(version.map(str::to_string));
    }

    /// Records the raft entry this batch applies up to; written in the same
    /// redb transaction as the data.
    pub fn set_consistent_index(&mut self, index: u64, term: u64) {
        let (current, _) = self.store.consistent_index();
        assert!(
            index >= current,
            "the consistent index only grows: {current} -> {index}"
        );
        self.consistent = Some((index, term));
    }

    /// Commits the batch and publishes its revision to readers. With
    /// `durable` false the commit is visible at once but not fsynced (the
    /// raft log provides durability). redb keeps the pages freed by
    /// non-durable commits until the next durable one, so commit durably
    /// from time to time (etcd: every 100 ms or 10,000 changes).
    pub fn commit(mut self, durable: bool) -> Result<()> {
        self.check_usable()?;
        let Some(mut txn) = self.txn.take() else {
            return Err(Error::Broken);
        };
        let result = self.write_out(&mut txn, durable);
        if let Err(e) = result {
            self.broken = true;
            return Err(e);
        }
        match self.compaction {
            Some(at) => {
                let store = self.store;
                let _gate = store
                    .compaction_gate
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                store.rewrites.fetch_add(1, Ordering::AcqRel);
                txn.commit().context("commit write batch")?;
                store.write_index().compact(at);
                store.compact_rev.store(at, Ordering::Release);
                store.published_rev.store(self.rev, Ordering::Release);
            }
            None => {
                txn.commit().context("commit write batch")?;
                self.store.published_rev.store(self.rev, Ordering::Release);
            }
        }
        self.dirty = false;
        self.store.refresh_file_size();
        if let Some(consistent) = self.consistent {
            *self
                .store
                .consistent
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = consistent;
        }
        if let Some(version) = self.storage_version.take() {
            *self
                .store
                .storage_version
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = version;
        }
        self.store
            .change_footprint(self.added_footprint, self.removed_footprint);
        self.store
            .compacted_rows
            .fetch_add(self.removed_rows, Ordering::Relaxed);
        Ok(())
    }

    fn write_out(&mut self, txn: &mut WriteTransaction, durable: bool) -> Result<()> {
        self.flush_staged(txn)?;
        if !self.lease_rows.is_empty() {
            let mut leases = txn.open_table(LEASE_TABLE).context("open lease table")?;
            for (id, row) in self.lease_rows.drain(..) {
                let key = id.to_be_bytes();
                match row {
                    Some(value) => leases
                        .insert(key.as_slice(), value.as_slice())
                        .context("write lease")?,
                    None => leases.remove(key.as_slice()).context("delete lease")?,
                };
            }
        }
        if !self.alarm_rows.is_empty() {
            let mut alarms = txn.open_table(ALARM_TABLE).context("open alarm table")?;
            for (key, present) in self.alarm_rows.drain(..) {
                if present {
                    alarms
                        .insert(key.as_slice(), [].as_slice())
                        .context("write alarm")?;
                } else {
                    alarms.remove(key.as_slice()).context("delete alarm")?;
                }
            }
        }
        for (table, key, value) in self.auth_rows.drain(..) {
            let mut rows = txn
                .open_table(table.definition())
                .context("open an auth table")?;
            match value {
                Some(v) => rows
                    .insert(key.as_slice(), v.as_slice())
                    .context("write an auth row")?,
                None => rows.remove(key.as_slice()).context("delete an auth row")?,
            };
        }
        if let Some((index, term)) = self.consistent {
            let mut meta = txn.open_table(META_TABLE).context("open meta table")?;
            backend::write_meta_u64(&mut meta, backend::CONSISTENT_INDEX_KEY, index)?;
            backend::write_meta_u64(&mut meta, backend::TERM_KEY, term)?;
        }
        if let Some(version) = &self.storage_version {
            let mut meta = txn.open_table(META_TABLE).context("open meta table")?;
            match version {
                Some(v) => meta
                    .insert(backend::STORAGE_VERSION_KEY, v.as_bytes())
                    .context("write storage version")?,
                None => meta
                    .remove(backend::STORAGE_VERSION_KEY)
                    .context("remove storage version")?,
            };
        }
        if durable {
            txn.set_quick_repair(self.store.opts.quick_repair);
        } else {
            txn.set_durability(Durability::None)
                .context("set durability")?;
        }
        Ok(())
    }

    pub(crate) fn check_usable(&self) -> Result<()> {
        if self.broken || self.txn.is_none() {
            return Err(Error::Broken);
        }
        Ok(())
    }

    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }

    pub(crate) fn lease_exists(&self, id: i64) -> bool {
        self.leases.is_none_or(|l| l.lease_exists(id))
    }

    /// Starts a request: its changes take main revision `rev + 1`.
    fn begin_request(&mut self) {
        self.begin_rev = self.rev;
        self.sub = 0;
    }

    /// The revision of the next change of the current request.
    fn next_change(&mut self) -> Revision {
        let rev = Revision::new(self.begin_rev + 1, self.sub);
        self.sub += 1;
        self.rev = rev.main;
        self.dirty = true;
        rev
    }

    /// The KeyValue of `key` as of the current revision.
    pub(crate) fn get_kv(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let found = self.store.read_index().get(key, self.rev);
        match found {
            Some((modified, _, _)) => Ok(self.fetch(&[modified])?.pop()),
            None => Ok(None),
        }
    }

    /// A put inside a request; errors only before anything changed.
    pub(crate) fn apply_put(
        &mut self,
        req: &PutRequest,
        events: &mut Vec<Event>,
    ) -> Result<PutResponse> {
        let ignore = req.ignore_value || req.ignore_lease;
        let prev = if ignore || req.prev_kv {
            self.get_kv(&req.key)?
        } else {
            None
        };
        let (value, lease) = match &prev {
            Some(prev) => (
                if req.ignore_value {
                    &prev.value
                } else {
                    &req.value
                },
                if req.ignore_lease {
                    prev.lease
                } else {
                    req.lease
                },
            ),
            None if ignore => return Err(Error::KeyNotFound),
            None => (&req.value, req.lease),
        };
        let rev = self.next_change();
        let (create_revision, version) = self.store.write_index().put(&req.key, rev);
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision,
            mod_revision: rev.main,
            version,
            value: value.clone(),
            lease,
        };
        self.stage(rev, false, &kv);
        events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: None,
        });
        Ok(PutResponse {
            header: header(self.rev),
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    /// A delete inside a request; errors only before anything changed.
    pub(crate) fn apply_delete_range(
        &mut self,
        req: &DeleteRangeRequest,
        events: &mut Vec<Event>,
    ) -> Result<DeleteRangeResponse> {
        let range = KeyRange::new(&req.key, &req.range_end);
        let prev_kvs = if req.prev_kv {
            range::live_kvs(self, range)?
        } else {
            Vec::new()
        };
        let main = self.begin_rev + 1;
        let deleted = self
            .store
            .write_index()
            .tombstone_range(range, self.rev, main, self.sub);
        if !deleted.is_empty() {
            self.sub += deleted.len() as i64;
            self.rev = main;
            self.dirty = true;
        }
        events.reserve(deleted.len());
        let count = deleted.len() as i64;
        for (key, rev) in deleted {
            let mut kv = KeyValue {
                key,
                ..Default::default()
            };
            self.stage(rev, true, &kv);
            kv.mod_revision = main;
            events.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(kv),
                prev_kv: None,
            });
        }
        Ok(DeleteRangeResponse {
            header: header(self.rev),
            deleted: count,
            prev_kvs,
        })
    }

    /// Encodes a change for the "key" table.
    fn stage(&mut self, rev: Revision, tombstone: bool, kv: &KeyValue) {
        let start = self.values.len();
        kv.encode_raw(&mut self.values);
        let end = self.values.len();
        let key_len = REV_KEY_LEN + usize::from(tombstone);
        self.added_footprint += footprint::row((key_len + end - start) as u64);
        self.staged.push(Staged {
            rev,
            tombstone,
            start,
            end,
        });
    }

    /// Writes the staged changes to the "key" table.
    fn flush_staged(&mut self, txn: &WriteTransaction) -> Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let mut table = txn.open_table(KEY_TABLE).context("open key table")?;
        for staged in &self.staged {
            let key = RevKey::new(staged.rev, staged.tombstone);
            table
                .insert(key.as_bytes(), &self.values[staged.start..staged.end])
                .context("write key table")?;
        }
        self.staged.clear();
        self.values.clear();
        Ok(())
    }

    fn compact_backend(&mut self, at: i64) -> Result<()> {
        let Some(txn) = self.txn.take() else {
            return Err(Error::Broken);
        };
        let result = (|| {
            // Changes of this batch at or below `at` may be superseded too.
            self.flush_staged(&txn)?;
            let keep = self.store.read_index().keep(at);
            let mut meta = txn.open_table(META_TABLE).context("open meta table")?;
            backend::write_meta_u64(&mut meta, backend::SCHEDULED_COMPACT_KEY, at as u64)?;
            let mut keys = txn.open_table(KEY_TABLE).context("open key table")?;
            let compacted = backend::compact_key_table(&mut keys, at, &keep)?;
            self.removed_footprint += compacted.footprint;
            self.removed_rows += compacted.rows;
            backend::write_meta_u64(&mut meta, backend::FINISHED_COMPACT_KEY, at as u64)?;
            tracing::info!(revision = at, kept = keep.len(), "compacted backend");
            Ok(())
        })();
        self.txn = Some(txn);
        result
    }
}

impl View for WriteBatch<'_> {
    fn rev(&self) -> i64 {
        self.rev
    }

    fn compact_rev(&self) -> i64 {
        self.compact_rev
    }

    fn index(&self) -> RwLockReadGuard<'_, KeyTree> {
        self.store.read_index()
    }

    fn fetch(&self, revs: &[Revision]) -> Result<Vec<KeyValue>> {
        let mut table = None;
        let mut kvs = Vec::with_capacity(revs.len());
        for &rev in revs {
            if let Ok(i) = self.staged.binary_search_by_key(&rev, |s| s.rev) {
                let staged = &self.staged[i];
                kvs.push(backend::decode_kv(
                    rev,
                    &self.values[staged.start..staged.end],
                )?);
                continue;
            }
            if table.is_none() {
                let txn = self.txn.as_ref().ok_or(Error::Broken)?;
                table = Some(txn.open_table(KEY_TABLE).context("open key table")?);
            }
            if let Some(table) = &table {
                kvs.push(backend::load_kv(table, rev)?);
            }
        }
        Ok(kvs)
    }
}

impl Drop for WriteBatch<'_> {
    fn drop(&mut self) {
        if let Some(txn) = self.txn.take() {
            if let Err(e) = txn.abort() {
                tracing::warn!(error = %e, "aborting write batch");
            }
        }
        if self.dirty {
            tracing::warn!("write batch dropped without commit; reloading the key index");
            self.store.reload();
        }
    }
}
