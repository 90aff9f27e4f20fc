//! The store: opening the backend, rebuilding the key index, and reads.
//!
//! Concurrency:
//! - one [`WriteBatch`] at a time (redb's writer lock); it updates the key
//!   index as it goes and publishes its revision after its commit;
//! - readers take a redb snapshot after reading the published revision, so
//!   the snapshot holds everything up to it;
//! - a commit that compacts holds `compaction_gate` exclusively while it
//!   commits and compacts the key index (an image restore, while it commits
//!   and swaps in the whole in-memory state); readers hold it shared for the
//!   whole read, so a read never sees a compacted index with an older
//!   snapshot or the reverse.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use api::etcdserverpb::{RangeRequest, RangeResponse, TxnRequest, TxnResponse};
use api::mvccpb::KeyValue;
use redb::{ReadableDatabase, ReadableTableMetadata};

use crate::backend::{self, ALARM_TABLE, KEY_TABLE, LEASE_TABLE, META_TABLE};
use crate::batch::WriteBatch;
use crate::error::Context;
use crate::footprint;
use crate::index::KeyTree;
use crate::range::{self, View};
use crate::{Error, Result, Revision};

/// The first bytes of a backend file (redb's file magic; a test checks it
/// against a file this build creates), to tell a raw `member/snap/db` copy
/// from an image.
pub const BACKEND_FILE_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// Tuning of the store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Memory redb may use to cache pages.
    pub cache_size_bytes: usize,
    /// Save redb's allocator state with every durable commit, so that
    /// opening after a crash is quick instead of a walk of the whole file.
    pub quick_repair: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_size_bytes: 64 << 20,
            quick_repair: true,
        }
    }
}

/// Tells a [`WriteBatch`] which leases exist, so that a put naming an
/// unknown lease fails as in etcd (implemented by the lessor).
pub trait LeaseLookup: Sync {
    fn lease_exists(&self, id: i64) -> bool;
}

/// The multi-version key-value store. `Send + Sync`: share it in an `Arc`.
pub struct Store {
    /// The backend file. Replaced whole only by a defragmentation, under
    /// `writer`; readers clone the handle (their transactions outlive a swap).
    db: RwLock<Arc<redb::Database>>,
    /// Held by the one [`WriteBatch`] (and an image restore, and a
    /// defragmentation's switch-over): whoever holds it writes to the current file.
    pub(crate) writer: WriterLock,
    /// Bumped when rows of the "key" table are removed or replaced (a
    /// compaction, an image restore): a defragmentation copying rows
    /// concurrently starts over.
    pub(crate) rewrites: AtomicU64,
    /// One defragmentation at a time.
    pub(crate) defragmenting: Mutex<()>,
    pub(crate) path: PathBuf,
    pub(crate) opts: StoreOptions,
    pub(crate) index: RwLock<KeyTree>,
    pub(crate) compaction_gate: RwLock<()>,
    /// The revision readers read at: only covers committed data.
    pub(crate) published_rev: AtomicI64,
    /// Published compaction revision (-1 before the first compaction).
    pub(crate) compact_rev: AtomicI64,
    /// (raft index, raft term) of the last committed batch.
    pub(crate) consistent: Mutex<(u64, u64)>,
    /// The storage version recorded in "meta" (None: not recorded).
    pub(crate) storage_version: Mutex<Option<String>>,
    /// What bbolt would use to hold the "key" table's rows
    /// ([`crate::footprint`]): with the empty backend's pages, `dbSizeInUse`.
    rows_footprint: AtomicU64,
    /// The highest `dbSizeInUse` since the store was opened or
    /// defragmented: `dbSize`, which the quota charges.
    size_high_water: AtomicU64,
    /// Rows (revisions) removed by compactions since the store was opened.
    pub(crate) compacted_rows: AtomicU64,
    /// The backend file's length, read after each commit.
    file_size: AtomicU64,
    /// Set when an aborted batch could not reload the index: the in-memory
    /// state no longer matches the backend.
    pub(crate) poisoned: AtomicBool,
}

impl Store {
    /// Creates or opens the backend at `path`, rebuilds the key index and
    /// finishes a compaction that was interrupted.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::Backend {
                context: "create data directory",
                source: Box::new(redb::Error::Io(e)),
            })?;
        }
        crate::defrag::remove_leftover(path)?;
        let db = redb::Database::builder()
            .set_cache_size(opts.cache_size_bytes)
            .create(path)
            .context("open backend")?;

        let mut txn = db.begin_write().context("begin open")?;
        txn.set_quick_repair(opts.quick_repair);
        let (restored, compact_rev, consistent, storage_version) = {
            let mut meta = txn.open_table(META_TABLE).context("open meta table")?;
            let mut keys = txn.open_table(KEY_TABLE).context("open key table")?;
            for (_, table) in backend::OPAQUE_TABLES {
                txn.open_table(table).context("create table")?;
            }
            match backend::read_meta_u64(&meta, backend::SCHEMA_VERSION_KEY)? {
                Some(backend::SCHEMA_VERSION) => {}
                Some(other) => {
                    return Err(Error::Corrupt(format!(
                        "schema version {other}, this build reads {}",
                        backend::SCHEMA_VERSION
                    )))
                }
                None if keys.is_empty().context("open key table")? => {
                    backend::write_meta_u64(
                        &mut meta,
                        backend::SCHEMA_VERSION_KEY,
                        backend::SCHEMA_VERSION,
                    )?;
                }
                None => return Err(Error::Corrupt("schema version missing".into())),
            }
            let consistent = (
                backend::read_meta_u64(&meta, backend::CONSISTENT_INDEX_KEY)?.unwrap_or(0),
                backend::read_meta_u64(&meta, backend::TERM_KEY)?.unwrap_or(0),
            );
            let mut restored = backend::restore_index(&keys)?;
            let compact_rev = backend::finish_compaction(&mut meta, &mut keys, &mut restored)?;
            let storage_version = backend::read_storage_version(&meta)?;
            (restored, compact_rev, consistent, storage_version)
        };
        txn.commit().context("commit open")?;

        let current = backend::current_revision(&restored, compact_rev);
        tracing::info!(
            revision = current,
            compact_revision = compact_rev,
            keys = restored.tree.len(),
            "opened mvcc store"
        );
        Ok(Store {
            db: RwLock::new(Arc::new(db)),
            writer: WriterLock::default(),
            rewrites: AtomicU64::new(0),
            defragmenting: Mutex::new(()),
            path: path.to_path_buf(),
            opts,
            index: RwLock::new(restored.tree),
            compaction_gate: RwLock::new(()),
            published_rev: AtomicI64::new(current),
            compact_rev: AtomicI64::new(compact_rev),
            consistent: Mutex::new(consistent),
            storage_version: Mutex::new(storage_version),
            rows_footprint: AtomicU64::new(restored.footprint),
            size_high_water: AtomicU64::new(0),
            compacted_rows: AtomicU64::new(0),
            file_size: AtomicU64::new(std::fs::metadata(path).map_or(0, |m| m.len())),
            poisoned: AtomicBool::new(false),
        })
    }

    /// Prepares a restored backend for a new cluster (etcdutl's snapshot
    /// restore), in one durable transaction: the consistent index becomes
    /// `(index, term)` — it goes backwards, the backend now follows a new
    /// raft log — and with `revision_bump > 0` the current revision moves
    /// up by that much and is marked compacted (etcd's `--bump-revision`
    /// with `--mark-compacted`: watchers and readers of revisions from
    /// before the restore are told they are compacted, never served
    /// different data under the same revision numbers). Returns the
    /// current revision after it.
    ///
    /// Offline only: no raft log may be driving this store yet.
    pub fn rebase(&self, index: u64, term: u64, revision_bump: u64) -> Result<i64> {
        self.check_poisoned()?;
        let bumped = match revision_bump {
            0 => None,
            bump => Some(
                i64::try_from(bump)
                    .ok()
                    .and_then(|b| self.current_revision().checked_add(b))
                    .ok_or_else(|| {
                        Error::Corrupt(format!(
                            "revision {} bumped by {bump} overflows",
                            self.current_revision()
                        ))
                    })?,
            ),
        };
        let _writer = self.lock_writer();
        let mut txn = self.db().begin_write().context("begin rebase")?;
        txn.set_quick_repair(self.opts.quick_repair);
        let mut removed_footprint = 0;
        {
            let mut meta = txn.open_table(META_TABLE).context("open meta table")?;
            backend::write_meta_u64(&mut meta, backend::CONSISTENT_INDEX_KEY, index)?;
            backend::write_meta_u64(&mut meta, backend::TERM_KEY, term)?;
            if let Some(at) = bumped {
                let keep = self.read_index().keep(at);
                backend::write_meta_u64(&mut meta, backend::SCHEDULED_COMPACT_KEY, at as u64)?;
                let mut keys = txn.open_table(KEY_TABLE).context("open key table")?;
                removed_footprint = backend::compact_key_table(&mut keys, at, &keep)?.footprint;
                backend::write_meta_u64(&mut meta, backend::FINISHED_COMPACT_KEY, at as u64)?;
            }
        }
        let _gate = self
            .compaction_gate
            .write()
            .unwrap_or_else(|e| e.into_inner());
        txn.commit().context("commit rebase")?;
        if let Some(at) = bumped {
            self.write_index().compact(at);
            self.compact_rev.store(at, Ordering::Release);
            self.published_rev.store(at, Ordering::Release);
            self.change_footprint(0, removed_footprint);
        }
        *self.consistent.lock().unwrap_or_else(|e| e.into_inner()) = (index, term);
        tracing::info!(
            consistent_index = index,
            revision = self.current_revision(),
            compact_revision = self.compact_revision(),
            "rebased the backend for a new cluster"
        );
        Ok(self.current_revision())
    }

    /// The revision of the last committed change (1 for an empty store).
    pub fn current_revision(&self) -> i64 {
        self.published_rev.load(Ordering::Acquire)
    }

    /// The revision of the last compaction (-1 if none).
    pub fn compact_revision(&self) -> i64 {
        self.compact_rev.load(Ordering::Acquire)
    }

    /// (raft index, raft term) stored with the last committed batch.
    pub fn consistent_index(&self) -> (u64, u64) {
        *self.consistent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The storage version recorded in the backend (etcd 3.6's
    /// `storageVersion`, e.g. `3.6.0`), None when none is recorded. The
    /// backend's layout is the same for every version; the record says which
    /// etcd version's data the member last served (see
    /// [`WriteBatch::set_storage_version`]).
    pub fn storage_version(&self) -> Option<String> {
        self.storage_version
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Serves a serializable range at the published revision.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        range::range(&self.read_view()?, req)
    }

    /// Serves a read-only txn (see [`crate::is_txn_read_only`]) on one
    /// snapshot, as etcd does without going through raft.
    pub fn txn_read_only(&self, req: &TxnRequest) -> Result<TxnResponse> {
        crate::txn::txn_read_only(&self.read_view()?, req)
    }

    /// Starts the write batch of one raft Ready. Only the applier calls
    /// this; a second call waits until the first batch is committed or
    /// dropped.
    pub fn write_batch(&self) -> Result<WriteBatch<'_>> {
        self.check_poisoned()?;
        let writer = self.lock_writer();
        let txn = self.db().begin_write().context("begin write batch")?;
        Ok(WriteBatch::new(self, txn, writer))
    }

    /// The current backend file.
    pub(crate) fn db(&self) -> Arc<redb::Database> {
        self.db.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Switches to another backend file (a defragmented copy); the caller
    /// holds `writer`.
    pub(crate) fn replace_db(&self, db: redb::Database) {
        *self.db.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(db);
    }

    pub(crate) fn lock_writer(&self) -> WriterGuard<'_> {
        self.writer.lock()
    }

    /// Every alarm row (opaque to this crate: the server stores etcd's
    /// AlarmMember), in key order.
    pub fn alarms(&self) -> Result<Vec<Vec<u8>>> {
        let rows = self.table_rows(ALARM_TABLE, "read the alarm table")?;
        Ok(rows.into_iter().map(|(key, _)| key).collect())
    }

    /// Every row of an auth bucket, in key order.
    pub fn auth_rows(&self, table: crate::backend::AuthTable) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.table_rows(table.definition(), "read an auth table")
    }

    /// Every row of `table` (none when it was never created), in key order.
    fn table_rows(
        &self,
        table: crate::backend::BytesTable,
        what: &'static str,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        use redb::ReadableTable;
        let txn = self.db().begin_read().context(what)?;
        let rows = match txn.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e).context(what),
        };
        let mut out = Vec::new();
        for row in rows.iter().context(what)? {
            let (key, value) = row.context(what)?;
            out.push((key.value().to_vec(), value.value().to_vec()));
        }
        Ok(out)
    }

    /// The changes of revisions `from..=to` as watch events, in revision
    /// order, at most about `max_events` of them: reading stops at a revision
    /// boundary once that many are read. Returns the events and the last
    /// revision read whole (`to`, or less when the limit cut the read).
    /// A delete's event carries the key and the delete's revision, as etcd's.
    /// Fails with [`Error::Compacted`] when `from` is below the compaction.
    pub fn events(
        &self,
        from: i64,
        to: i64,
        max_events: usize,
    ) -> Result<(Vec<api::mvccpb::Event>, i64)> {
        use api::mvccpb::event::EventType;
        use api::mvccpb::Event;
        let view = self.read_view()?;
        if from < view.compact_rev {
            return Err(Error::Compacted);
        }
        let to = to.min(view.rev);
        let mut events = Vec::new();
        if from > to {
            return Ok((events, to));
        }
        let start = crate::revision::RevKey::new(Revision { main: from, sub: 0 }, false);
        let end = crate::revision::RevKey::new(
            Revision {
                main: to + 1,
                sub: 0,
            },
            false,
        );
        let mut current_main = from;
        for row in view
            .table
            .range(start.as_bytes()..end.as_bytes())
            .context("scan key table")?
        {
            let (key, value) = row.context("scan key table")?;
            let (rev, tombstone) = crate::revision::decode_rev_key(key.value())?;
            if rev.main != current_main {
                if events.len() >= max_events {
                    // Every row of revisions below rev.main has been read.
                    return Ok((events, rev.main - 1));
                }
                current_main = rev.main;
            }
            let mut kv = backend::decode_kv(rev, value.value())?;
            let kind = if tombstone {
                kv.mod_revision = rev.main;
                EventType::Delete
            } else {
                EventType::Put
            };
            events.push(Event {
                r#type: kind as i32,
                kv: Some(kv),
                prev_kv: None,
            });
        }
        Ok((events, to))
    }

    /// Every stored lease row: (ID, value), in ID order (as bytes).
    pub fn leases(&self) -> Result<Vec<(i64, Vec<u8>)>> {
        use redb::ReadableTable;
        let txn = self.db().begin_read().context("begin lease read")?;
        let table = match txn.open_table(LEASE_TABLE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e).context("open lease table"),
        };
        let mut out = Vec::new();
        for row in table.iter().context("scan lease table")? {
            let (key, value) = row.context("scan lease table")?;
            let id: [u8; 8] = key
                .value()
                .try_into()
                .map_err(|_| Error::Corrupt("a lease key is not 8 bytes".into()))?;
            out.push((i64::from_be_bytes(id), value.value().to_vec()));
        }
        Ok(out)
    }

    /// etcd's `dbSize`, which the quota charges: the highest
    /// [`Store::db_size_in_use_bytes`] since the store was opened or
    /// defragmented (see the `footprint` module). A compaction does not lower
    /// it, a defragmentation does.
    pub fn db_size_bytes(&self) -> u64 {
        self.size_high_water
            .load(Ordering::Relaxed)
            .max(self.db_size_in_use_bytes())
    }

    /// etcd's `dbSizeInUse`: what bbolt would use to hold the rows stored
    /// now (see the `footprint` module); goes down with a compaction.
    pub fn db_size_in_use_bytes(&self) -> u64 {
        footprint::EMPTY_BACKEND + self.rows_footprint.load(Ordering::Relaxed)
    }

    /// Length of the backend file (redb's), as of the last commit: more
    /// than [`Store::db_size_bytes`], redb grows it by doubling.
    pub fn db_file_bytes(&self) -> u64 {
        self.file_size.load(Ordering::Relaxed)
    }

    /// Records a commit's rows: `added` and `removed` footprints. Called
    /// with the writer lock held.
    pub(crate) fn change_footprint(&self, added: u64, removed: u64) {
        let rows = self.rows_footprint.load(Ordering::Relaxed);
        let rows = (rows + added).saturating_sub(removed);
        self.rows_footprint.store(rows, Ordering::Relaxed);
        self.size_high_water
            .fetch_max(footprint::EMPTY_BACKEND + rows, Ordering::Relaxed);
    }

    /// Sets the rows' footprint after a rescan of the "key" table; with
    /// `shrink`, the size too (a new backend: an image restored).
    pub(crate) fn reset_footprint(&self, rows: u64, shrink: bool) {
        self.rows_footprint.store(rows, Ordering::Relaxed);
        let size = footprint::EMPTY_BACKEND + rows;
        if shrink {
            self.size_high_water.store(size, Ordering::Relaxed);
        } else {
            self.size_high_water.fetch_max(size, Ordering::Relaxed);
        }
    }

    /// Reads the backend file's size again (after a commit, a defragmentation).
    pub(crate) fn refresh_file_size(&self) {
        if let Ok(m) = std::fs::metadata(&self.path) {
            self.file_size.store(m.len(), Ordering::Relaxed);
        }
    }

    /// After a defragmentation: the size comes down to what is in use.
    pub(crate) fn shrink_size_to_in_use(&self) {
        self.size_high_water
            .store(self.db_size_in_use_bytes(), Ordering::Relaxed);
    }

    /// Number of keys in the index (live or with history).
    pub fn key_index_len(&self) -> usize {
        self.read_index().len()
    }

    /// Number of keys that exist at the current revision.
    pub fn live_keys(&self) -> usize {
        self.read_index().live_len()
    }

    /// Revisions compactions removed from the backend since the store was
    /// opened (etcd's `db_compaction_keys_total`).
    pub fn compacted_revisions_total(&self) -> u64 {
        self.compacted_rows.load(Ordering::Relaxed)
    }

    pub(crate) fn read_index(&self) -> RwLockReadGuard<'_, KeyTree> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write_index(&self) -> RwLockWriteGuard<'_, KeyTree> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn check_poisoned(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Broken);
        }
        Ok(())
    }

    pub(crate) fn read_view(&self) -> Result<ReadView<'_>> {
        self.check_poisoned()?;
        let gate = self
            .compaction_gate
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let rev = self.current_revision();
        let txn = self.db().begin_read().context("begin read")?;
        let table = txn.open_table(KEY_TABLE).context("open key table")?;
        let compact_rev = self.compact_revision();
        Ok(ReadView {
            _gate: gate,
            store: self,
            table,
            rev,
            compact_rev,
        })
    }

    /// Rebuilds the in-memory state from the backend after a batch that
    /// changed the index was dropped without committing.
    pub(crate) fn reload(&self) {
        let result = (|| -> Result<()> {
            let txn = self.db().begin_read().context("begin reload")?;
            let keys = txn.open_table(KEY_TABLE).context("open key table")?;
            let meta = txn.open_table(META_TABLE).context("open meta table")?;
            let compact_rev =
                backend::read_meta_rev(&meta, backend::FINISHED_COMPACT_KEY)?.unwrap_or(-1);
            let restored = backend::restore_index(&keys)?;
            let _gate = self
                .compaction_gate
                .write()
                .unwrap_or_else(|e| e.into_inner());
            *self.write_index() = restored.tree;
            self.reset_footprint(restored.footprint, false);
            self.compact_rev.store(compact_rev, Ordering::Release);
            Ok(())
        })();
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot reload the key index; store unusable");
            self.poisoned.store(true, Ordering::Release);
        }
    }
}

/// The writer lock: a mutex whose guard may move between threads (a
/// [`WriteBatch`] is `Send`), which `std`'s guard may not.
#[derive(Default)]
pub(crate) struct WriterLock {
    busy: Mutex<bool>,
    freed: Condvar,
}

impl WriterLock {
    fn lock(&self) -> WriterGuard<'_> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while *busy {
            busy = self.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy = true;
        WriterGuard(self)
    }
}

/// Holds the [`WriterLock`] until dropped.
pub(crate) struct WriterGuard<'a>(&'a WriterLock);

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.0.freed.notify_one();
    }
}

/// A reader's view: the published revision and a snapshot holding it.
pub(crate) struct ReadView<'s> {
    _gate: RwLockReadGuard<'s, ()>,
    store: &'s Store,
    pub(crate) table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    pub(crate) rev: i64,
    pub(crate) compact_rev: i64,
}

impl View for ReadView<'_> {
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
        revs.iter()
            .map(|&rev| backend::load_kv(&self.table, rev))
            .collect()
    }
}
