//! Images: a logical copy of the whole backend at one committed point.
//!
//! A member that fell too far behind the leader's log receives an image in
//! a raft snapshot (etcd sends its bbolt file; we send the rows). The same
//! image serves `Maintenance.Snapshot` and `etcdutl snapshot restore`, so it
//! names itself, carries its format version and ends with a checksum.
//!
//! ```text
//!  header   ┌──────────────────┬───────────────────────┐
//!           │ magic "ETCDRSIM" │ format version u32 BE │  12 bytes
//!           └──────────────────┴───────────────────────┘
//!  records  ┌──────────┬─────────────┬───────────────┬─────┬───────┐
//!  (0..n)   │ table u8 │ key len u32 │ value len u32 │ key │ value │
//!           └──────────┴─────────────┴───────────────┴─────┴───────┘
//!           table 1 = "meta" (key: UTF-8 name), 2 = "key" (key: revision),
//!           3 = "lease" (key: lease ID, 8 bytes BE; since format version 2),
//!           4 = "alarm" (key: opaque, value empty; since format version 3),
//!           5 = "auth", 6 = "authUsers", 7 = "authRoles" (etcd's rows,
//!           opaque here; since format version 4)
//!  end      ┌──────┬────────┬──────┬──────────┬─────────┬──────┬─────────┐
//!           │ 0xFF │ cindex │ term │ revision │ compact │ keys │ records │
//!           │      │ u64    │ u64  │ i64      │ i64     │ u64  │ u64     │
//!           └──────┴────────┴──────┴──────────┴─────────┴──────┴─────────┘
//!  checksum ┌────────────────────────────────────────────┐
//!           │ CRC-32 u32 of every byte above (header on) │
//!           └────────────────────────────────────────────┘
//! ```
//!
//! All integers are big-endian; the CRC is IEEE (`crc32fast`). Rows are
//! copied exactly as the backend holds them (see the crate docs), meta rows
//! of unknown names included. The end record summarizes the records:
//! `cindex`/`term` are the meta rows `consistent_index`/`term` (0 if
//! absent); `compact` is the larger of the meta marks `finishedCompactRev`
//! and `scheduledCompactRev` (-1 if none; a restore redoes a compaction that
//! was scheduled but not finished, as opening does); `revision` is the main
//! revision of the last "key" row, at least `compact` and 1; `keys` counts
//! the "key" rows (one per stored change), `records` all records.
//!
//! # Invariants
//!
//! - An image is written from one redb read transaction: it holds one
//!   committed state even while write batches continue.
//! - Records come in strictly increasing (table, key) order: "meta" first,
//!   so a reader meets the schema version before any data.
//! - The summary in the end record is derived from the records by the same
//!   code on both sides (`Summary`); a reader recomputes it and rejects an
//!   image whose end record disagrees.
//! - A restore replaces the store's tables in one write transaction and
//!   commits only after the checksum and the summary check out; the key
//!   index, revisions and consistent index are swapped in while readers are
//!   held off, so no reader sees a mix of old and new.
//! - A reader reads exactly the image's bytes and nothing after it (give it
//!   a buffered source: it makes small reads).
//!
//! # Left out, with room kept
//!
//! - Tables still to come (members): each will get a table id here; a new
//!   table is a format version bump, so that an older build refuses the
//!   image rather than drop the table. Readers accept older versions
//!   (version 1 had no lease table, version 2 no alarm table, version 3 no
//!   auth tables).
//! - Compression: the stream can be wrapped by the transport.

use std::io::{Read, Write};
use std::sync::atomic::Ordering;

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use crate::backend::{self, IndexBuilder, Restored, KEY_TABLE, META_TABLE, OPAQUE_TABLES};
use crate::error::Context;
use crate::hash::Crc32c;
use crate::revision::decode_rev_key;
use crate::store::Store;
use crate::{Error, Result};

/// The image format this build writes and reads.
pub const IMAGE_FORMAT_VERSION: u32 = 4;
/// The oldest image format this build reads.
const OLDEST_READABLE_FORMAT_VERSION: u32 = 1;

/// The first bytes of every image.
pub const IMAGE_MAGIC: [u8; 8] = *b"ETCDRSIM";
const END: u8 = 0xFF;

/// The tables of an image, by their id in the record's first byte; records
/// come in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Table {
    /// Named values (UTF-8 names; integers big-endian).
    Meta = 1,
    /// Every change, by revision key; values are mvccpb.KeyValue.
    Key = 2,
    /// leasepb.Lease by lease ID (8 bytes, big-endian).
    Lease = 3,
    /// Active alarms (AlarmMember), values empty.
    Alarm = 4,
    /// etcd's auth buckets, row for row.
    Auth = 5,
    AuthUsers = 6,
    AuthRoles = 7,
}

impl Table {
    /// Every table, in image order.
    pub const ALL: [Table; 7] = [
        Table::Meta,
        Table::Key,
        Table::Lease,
        Table::Alarm,
        Table::Auth,
        Table::AuthUsers,
        Table::AuthRoles,
    ];

    /// The table's name (etcd's bucket name).
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Key => "key",
            Table::Lease => "lease",
            Table::Alarm => "alarm",
            Table::Auth => "auth",
            Table::AuthUsers => "authUsers",
            Table::AuthRoles => "authRoles",
        }
    }

    fn from_id(id: u8) -> Result<Table> {
        Table::ALL
            .into_iter()
            .find(|t| *t as u8 == id)
            .ok_or_else(|| unknown_table(id))
    }
}
/// Bytes of the end record's fields between the tag and the checksum.
const END_FIELDS_LEN: usize = 6 * 8;
/// Key and value bytes per transaction of [`Store::load_image`].
pub const LOAD_CHUNK_BYTES: usize = 32 << 20;
/// Bytes a writer buffers before handing them to its output.
const WRITE_BUFFER_BYTES: usize = 64 << 10;

/// What an image holds, from its end record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageInfo {
    /// Size of the image, checksum included.
    pub bytes: u64,
    /// Raft index of the last entry applied to the image's state.
    pub consistent_index: u64,
    /// Raft term of that entry.
    pub consistent_term: u64,
    /// The store's current revision in the image.
    pub revision: i64,
    /// The compaction revision in the image (-1 if none).
    pub compact_revision: i64,
    /// Rows of the "key" table (one per stored change).
    pub keys: u64,
}

impl Store {
    /// Writes an image of the backend to `out` from one redb read
    /// transaction, so it is consistent while write batches continue.
    /// Streams row by row: memory stays bounded whatever the database size.
    pub fn write_image(&self, out: &mut dyn Write) -> Result<ImageInfo> {
        let info = self.image_source()?.write_to(out)?;
        tracing::info!(
            bytes = info.bytes,
            revision = info.revision,
            consistent_index = info.consistent_index,
            "wrote backend image"
        );
        Ok(info)
    }

    /// Fixes the backend's current committed state for writing images of
    /// it (etcd's `backend.Snapshot()`): writes continue meanwhile, and
    /// every image written from the source is the same.
    pub fn image_source(&self) -> Result<ImageSource> {
        Ok(ImageSource {
            txn: self.db().begin_read().context("begin image")?,
            _file: None,
        })
    }

    /// Makes a committed image the store's state for readers.
    fn install(&self, restored: Restored, info: &ImageInfo, storage_version: Option<String>) {
        let _gate = self
            .compaction_gate
            .write()
            .unwrap_or_else(|e| e.into_inner());
        self.install_gated(restored, info, storage_version);
    }

    /// [`Store::install`] with the readers' gate held.
    fn install_gated(&self, restored: Restored, info: &ImageInfo, storage_version: Option<String>) {
        self.rewrites.fetch_add(1, Ordering::AcqRel);
        *self.write_index() = restored.tree;
        self.reset_footprint(restored.footprint, true);
        self.compact_rev
            .store(info.compact_revision, Ordering::Release);
        self.published_rev.store(info.revision, Ordering::Release);
        self.refresh_file_size();
        *self.consistent.lock().unwrap_or_else(|e| e.into_inner()) =
            (info.consistent_index, info.consistent_term);
        *self
            .storage_version
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = storage_version;
    }

    /// Replaces the whole content of the store with the image read from
    /// `input`, in one durable write transaction that commits only if the
    /// image is whole (checksum, summary, schema version); otherwise the
    /// store is untouched. Then installs the image's key index, compaction
    /// revision, current revision and consistent index for readers at once.
    ///
    /// Apply path only: it takes the writer lock as [`Store::write_batch`]
    /// does, so it waits for (and on the same thread, deadlocks with) a live
    /// [`crate::WriteBatch`]. The revision and consistent index may go
    /// backwards: the caller decides whether the image is newer.
    pub fn restore_image(&self, input: &mut dyn Read) -> Result<ImageInfo> {
        self.check_poisoned()?;
        let _writer = self.lock_writer();
        let mut txn = self.db().begin_write().context("begin restore")?;
        txn.set_quick_repair(self.opts.quick_repair);
        let (restored, info, storage_version) = match fill(&txn, input) {
            Ok(filled) => filled,
            Err(e) => {
                if let Err(abort) = txn.abort() {
                    tracing::warn!(error = %abort, "aborting image restore");
                }
                return Err(e);
            }
        };
        {
            // Readers hold the gate for a whole read: none sees the new
            // snapshot with the old index or revisions, or the reverse.
            let _gate = self
                .compaction_gate
                .write()
                .unwrap_or_else(|e| e.into_inner());
            txn.commit().context("commit restore")?;
            self.install_gated(restored, &info, storage_version);
        }
        tracing::info!(
            bytes = info.bytes,
            revision = info.revision,
            compact_revision = info.compact_revision,
            consistent_index = info.consistent_index,
            "restored backend image"
        );
        Ok(info)
    }
}

impl Store {
    /// Fills the store from an image in transactions of
    /// [`LOAD_CHUNK_BYTES`], so memory stays bounded whatever the image's
    /// size (one transaction holds its dirty pages in memory until it
    /// commits). Unlike [`Store::restore_image`], a failure leaves the store
    /// partly filled: for a new backend that is thrown away if this fails
    /// (a conversion of etcd's data), never for a live one.
    pub fn load_image(&self, input: &mut dyn Read) -> Result<ImageInfo> {
        self.check_poisoned()?;
        let _writer = self.lock_writer();
        let mut reader = ImageReader::open(input)?;
        let mut builder = IndexBuilder::default();
        let mut first = true;
        let (restored, info, storage_version) = loop {
            let txn = self.db().begin_write().context("begin load")?;
            if std::mem::take(&mut first) {
                clear_tables(&txn)?;
            }
            let mut tables = Tables::open(&txn)?;
            let mut bytes = 0usize;
            let mut end = false;
            while bytes < LOAD_CHUNK_BYTES {
                let Some(table) = reader.next()? else {
                    end = true;
                    break;
                };
                bytes += reader.key.len() + reader.value.len();
                tables.insert(table, &reader.key, &reader.value, &mut builder)?;
            }
            if end {
                let info = reader.finish()?;
                let finished = tables.finish(builder, info)?;
                drop(tables);
                txn.commit().context("commit load")?;
                break finished;
            }
            drop(tables);
            // Only the last commit is durable: it makes every chunk before
            // it durable too, and a load that stops midway is thrown away.
            // (A durable commit per chunk cost a third of a 1 GB load.)
            let mut txn = txn;
            txn.set_durability(redb::Durability::None)
                .context("set durability")?;
            txn.commit().context("commit load")?;
        };
        self.install(restored, &info, storage_version);
        Ok(info)
    }
}

/// Reads a whole image, checking its structure, summary and checksum, and
/// returns its summary (for `etcdutl snapshot status`). Values are not
/// decoded.
pub fn image_info(input: &mut dyn Read) -> Result<ImageInfo> {
    let mut reader = ImageReader::open(input)?;
    while reader.next()?.is_some() {}
    reader.finish()
}

/// etcd's `snapshot status` numbers for a backend or an image of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageStatus {
    /// The summary (`bytes`: the size of the image, checksum included).
    pub info: ImageInfo,
    /// Rows of every table (etcd's "total keys" counts the rows of all buckets).
    pub rows: u64,
    /// CRC-32C (Castagnoli), as etcd's status computes it over its buckets,
    /// over our tables in image order ("meta", "key", "lease"): each
    /// table's name, then the key and value of each of its rows.
    pub hash: u32,
}

/// Reads a whole image like [`image_info`] and also computes its
/// [`ImageStatus`].
pub fn image_status(input: &mut dyn Read) -> Result<ImageStatus> {
    let mut reader = ImageReader::open(input)?;
    let mut hash = StatusHash::default();
    while let Some(table) = reader.next()? {
        hash.add(table, &reader.key, &reader.value);
    }
    let info = reader.finish()?;
    Ok(hash.finish(info))
}

/// One committed state of a backend that images are written from: a redb
/// read transaction, on a live store ([`Store::image_source`]) or on a
/// backend file opened read-only ([`ImageSource::open_file`]).
pub struct ImageSource {
    txn: redb::ReadTransaction,
    /// The database a source opened itself; declared after `txn`, so it is
    /// dropped after it.
    _file: Option<redb::ReadOnlyDatabase>,
}

impl ImageSource {
    /// Opens a backend file (`member/snap/db`) read-only.
    pub fn open_file(path: &std::path::Path) -> Result<ImageSource> {
        let db = redb::ReadOnlyDatabase::open(path).context("open backend file")?;
        let txn = db.begin_read().context("begin image")?;
        Ok(ImageSource {
            txn,
            _file: Some(db),
        })
    }

    /// The backend layout version the source records, and whether this
    /// build reads it (a newer build's backend is refused before anything
    /// writes to it).
    pub fn schema_version(&self) -> Result<(Option<u64>, bool)> {
        let meta = self.txn.open_table(META_TABLE).context("open meta table")?;
        let version = backend::read_meta_u64(&meta, backend::SCHEMA_VERSION_KEY)?;
        Ok((
            version,
            version.is_none_or(|v| v <= backend::SCHEMA_VERSION),
        ))
    }

    /// Writes the image to `out`, streaming row by row.
    pub fn write_to(&self, out: &mut dyn Write) -> Result<ImageInfo> {
        self.write_rows(out, None)
    }

    /// The size in bytes of the image [`ImageSource::write_to`] writes
    /// (a pass over every row that writes nothing).
    pub fn size(&self) -> Result<u64> {
        Ok(self.write_rows(&mut std::io::sink(), None)?.bytes)
    }

    /// The status of the backend as of this source (a pass over every row).
    pub fn status(&self) -> Result<ImageStatus> {
        let mut hash = StatusHash::default();
        let info = self.write_rows(&mut std::io::sink(), Some(&mut hash))?;
        Ok(hash.finish(info))
    }

    fn write_rows(
        &self,
        out: &mut dyn Write,
        mut hash: Option<&mut StatusHash>,
    ) -> Result<ImageInfo> {
        let mut sink = Sink::new(out);
        sink.put(&IMAGE_MAGIC)?;
        sink.put(&IMAGE_FORMAT_VERSION.to_be_bytes())?;
        let mut summary = Summary::default();
        self.for_each_row(&mut |table, key, value| {
            summary.observe(table, key, value)?;
            if let Some(hash) = hash.as_deref_mut() {
                hash.add(table, key, value);
            }
            sink.record(table, key, value)
        })?;
        let mut info = summary.info()?;
        sink.end(&info, summary.records)?;
        info.bytes = sink.bytes;
        Ok(info)
    }

    /// Calls `f` with every row, in image order (tables in [`Table::ALL`]
    /// order, rows in key order): the rows an image of this source holds.
    pub fn for_each_row(&self, f: &mut RowVisitor<'_>) -> Result<()> {
        for table in Table::ALL {
            self.for_each_row_of(table, f)?;
        }
        Ok(())
    }

    /// Calls `f` with every row of one table, in key order (nothing for a
    /// table an older backend lacks).
    pub fn for_each_row_of(&self, table: Table, f: &mut RowVisitor<'_>) -> Result<()> {
        match table {
            Table::Meta => {
                let meta = self.txn.open_table(META_TABLE).context("open meta table")?;
                for entry in meta.iter().context("scan meta table")? {
                    let (name, value) = entry.context("scan meta table")?;
                    f(Table::Meta, name.value().as_bytes(), value.value())?;
                }
            }
            Table::Key => {
                let keys = self.txn.open_table(KEY_TABLE).context("open key table")?;
                for entry in keys.iter().context("scan key table")? {
                    let (key, value) = entry.context("scan key table")?;
                    f(Table::Key, key.value(), value.value())?;
                }
            }
            other => {
                let Some((_, definition)) = OPAQUE_TABLES.into_iter().find(|(t, _)| *t == other)
                else {
                    return Err(unknown_table(other as u8));
                };
                let rows = match self.txn.open_table(definition) {
                    Ok(rows) => rows,
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
                    Err(e) => return Err(e).context("open table"),
                };
                for entry in rows.iter().context("scan table")? {
                    let (key, value) = entry.context("scan table")?;
                    f(other, key.value(), value.value())?;
                }
            }
        }
        Ok(())
    }
}

/// Writes an image from rows that come from elsewhere (etcd's bbolt
/// buckets, converted by the caller), checking them as a reader would:
/// rows in image order, meta encodings, a schema version.
pub struct ImageWriter<'a> {
    sink: Sink<'a>,
    summary: Summary,
}

impl<'a> ImageWriter<'a> {
    /// Starts an image on `out` (the header is written at once).
    pub fn new(out: &'a mut dyn Write) -> Result<ImageWriter<'a>> {
        let mut sink = Sink::new(out);
        sink.put(&IMAGE_MAGIC)?;
        sink.put(&IMAGE_FORMAT_VERSION.to_be_bytes())?;
        Ok(ImageWriter {
            sink,
            summary: Summary::default(),
        })
    }

    /// Adds one row; rows must come in image order.
    pub fn row(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<()> {
        self.summary.observe(table, key, value)?;
        self.sink.record(table, key, value)
    }

    /// Writes the end record and the checksum.
    pub fn finish(mut self) -> Result<ImageInfo> {
        let mut info = self.summary.info()?;
        self.sink.end(&info, self.summary.records)?;
        info.bytes = self.sink.bytes;
        Ok(info)
    }
}

/// The meta row that names the backend layout an image holds, for
/// [`ImageWriter`] users: the first meta row every image needs.
pub fn schema_version_row() -> (&'static str, [u8; 8]) {
    (
        backend::SCHEMA_VERSION_KEY,
        backend::SCHEMA_VERSION.to_be_bytes(),
    )
}

/// Called with each row: (table, key, value).
pub type RowVisitor<'a> = dyn FnMut(Table, &[u8], &[u8]) -> Result<()> + 'a;

/// The hash and row count of [`ImageStatus`], fed the rows in order.
#[derive(Default)]
struct StatusHash {
    crc: Option<Crc32c>,
    table: Option<Table>,
    rows: u64,
}

impl StatusHash {
    fn add(&mut self, table: Table, key: &[u8], value: &[u8]) {
        let crc = self.crc.get_or_insert_with(Crc32c::new);
        if self.table != Some(table) {
            self.table = Some(table);
            crc.update(table.name().as_bytes());
        }
        crc.update(key);
        crc.update(value);
        self.rows += 1;
    }

    fn finish(self, info: ImageInfo) -> ImageStatus {
        ImageStatus {
            info,
            rows: self.rows,
            hash: self.crc.unwrap_or_else(Crc32c::new).finish(),
        }
    }
}

/// Writes the records of `input` into emptied tables of `txn` and rebuilds
/// the key index; the caller commits. Also returns the storage version the
/// image records.
fn fill(
    txn: &WriteTransaction,
    input: &mut dyn Read,
) -> Result<(Restored, ImageInfo, Option<String>)> {
    clear_tables(txn)?;
    let mut tables = Tables::open(txn)?;
    let mut reader = ImageReader::open(input)?;
    let mut builder = IndexBuilder::default();
    while let Some(table) = reader.next()? {
        tables.insert(table, &reader.key, &reader.value, &mut builder)?;
    }
    let info = reader.finish()?;
    tables.finish(builder, info)
}

fn clear_tables(txn: &WriteTransaction) -> Result<()> {
    txn.delete_table(META_TABLE).context("clear meta table")?;
    txn.delete_table(KEY_TABLE).context("clear key table")?;
    for (_, definition) in OPAQUE_TABLES {
        txn.delete_table(definition).context("clear table")?;
    }
    Ok(())
}

/// An open table of byte keys and values.
type BytesRows<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

/// The tables of one write transaction an image is written into.
struct Tables<'t> {
    meta: redb::Table<'t, &'static str, &'static [u8]>,
    keys: BytesRows<'t>,
    opaque: Vec<(Table, BytesRows<'t>)>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>> {
        let mut opaque = Vec::with_capacity(OPAQUE_TABLES.len());
        for (id, definition) in OPAQUE_TABLES {
            opaque.push((id, txn.open_table(definition).context("open table")?));
        }
        Ok(Tables {
            meta: txn.open_table(META_TABLE).context("open meta table")?,
            keys: txn.open_table(KEY_TABLE).context("open key table")?,
            opaque,
        })
    }

    fn insert(
        &mut self,
        table: Table,
        key: &[u8],
        value: &[u8],
        builder: &mut IndexBuilder,
    ) -> Result<()> {
        match table {
            Table::Meta => {
                let name = meta_name(key)?;
                self.meta
                    .insert(name, value)
                    .context("restore meta table")?;
            }
            Table::Key => {
                builder.add(key, value)?;
                self.keys.insert(key, value).context("restore key table")?;
            }
            other => {
                let (_, rows) = self
                    .opaque
                    .iter_mut()
                    .find(|(id, _)| *id == other)
                    .ok_or_else(|| unknown_table(other as u8))?;
                rows.insert(key, value).context("restore table")?;
            }
        }
        Ok(())
    }

    /// Finishes an interrupted compaction, checks the result against the
    /// image's end record and reads the storage version.
    fn finish(
        &mut self,
        builder: IndexBuilder,
        info: ImageInfo,
    ) -> Result<(Restored, ImageInfo, Option<String>)> {
        let mut restored = builder.finish();
        let compact_rev =
            backend::finish_compaction(&mut self.meta, &mut self.keys, &mut restored)?;
        let revision = backend::current_revision(&restored, compact_rev);
        if (revision, compact_rev) != (info.revision, info.compact_revision) {
            return Err(Error::Corrupt(format!(
                "image restores to revision {revision} compacted at {compact_rev}, \
                 its end record says {} compacted at {}",
                info.revision, info.compact_revision
            )));
        }
        let storage_version = backend::read_storage_version(&self.meta)?;
        Ok((restored, info, storage_version))
    }
}

fn meta_name(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes)
        .map_err(|_| Error::Corrupt(format!("image meta name {bytes:02x?} is not UTF-8")))
}

fn unknown_table(table: u8) -> Error {
    Error::Corrupt(format!(
        "image record for unknown table id {table} (format version {IMAGE_FORMAT_VERSION})"
    ))
}

/// What the records of an image add up to; computed by writer and reader
/// alike, which also checks the record order.
#[derive(Default)]
struct Summary {
    records: u64,
    keys: u64,
    table: Option<Table>,
    previous_key: Vec<u8>,
    last_main: Option<i64>,
    schema_version: Option<u64>,
    consistent_index: u64,
    consistent_term: u64,
    finished_compact: Option<i64>,
    scheduled_compact: Option<i64>,
}

impl Summary {
    fn observe(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<()> {
        let current = Some(table);
        if current < self.table || (current == self.table && key <= self.previous_key.as_slice()) {
            return Err(Error::Corrupt(format!(
                "image record {} (table {}) out of order",
                self.records,
                table.name()
            )));
        }
        self.table = current;
        self.previous_key.clear();
        self.previous_key.extend_from_slice(key);
        self.records += 1;
        match table {
            Table::Meta => self.observe_meta(meta_name(key)?, value),
            Table::Key => {
                let (rev, _) = decode_rev_key(key)?;
                self.last_main = Some(rev.main);
                self.keys += 1;
                Ok(())
            }
            Table::Lease if key.len() == 8 => Ok(()),
            Table::Lease => Err(Error::Corrupt(format!(
                "image lease key {key:02x?} is not 8 bytes"
            ))),
            Table::Alarm | Table::Auth | Table::AuthUsers | Table::AuthRoles => Ok(()),
        }
    }

    fn observe_meta(&mut self, name: &str, value: &[u8]) -> Result<()> {
        match name {
            backend::SCHEMA_VERSION_KEY => {
                let version = meta_u64(name, value)?;
                if version != backend::SCHEMA_VERSION {
                    return Err(Error::Corrupt(format!(
                        "image holds backend schema version {version}, this build reads {}",
                        backend::SCHEMA_VERSION
                    )));
                }
                self.schema_version = Some(version);
            }
            backend::CONSISTENT_INDEX_KEY => self.consistent_index = meta_u64(name, value)?,
            backend::TERM_KEY => self.consistent_term = meta_u64(name, value)?,
            backend::FINISHED_COMPACT_KEY => {
                self.finished_compact = Some(meta_u64(name, value)? as i64);
            }
            backend::SCHEDULED_COMPACT_KEY => {
                self.scheduled_compact = Some(meta_u64(name, value)? as i64);
            }
            _ => {}
        }
        Ok(())
    }

    /// The summary of a complete image (`bytes` left 0).
    fn info(&self) -> Result<ImageInfo> {
        if self.schema_version.is_none() {
            return Err(Error::Corrupt("image has no schema version".into()));
        }
        let finished = self.finished_compact.unwrap_or(-1);
        // A compaction scheduled but not finished is redone on restore.
        let compact_revision = finished.max(self.scheduled_compact.unwrap_or(-1));
        Ok(ImageInfo {
            bytes: 0,
            consistent_index: self.consistent_index,
            consistent_term: self.consistent_term,
            revision: self.last_main.unwrap_or(1).max(compact_revision).max(1),
            compact_revision,
            keys: self.keys,
        })
    }
}

fn meta_u64(name: &str, value: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = value
        .try_into()
        .map_err(|_| Error::Corrupt(format!("image meta {name} is not 8 bytes")))?;
    Ok(u64::from_be_bytes(bytes))
}

/// The writing end: buffers, counts and checksums what it writes.
struct Sink<'a> {
    out: std::io::BufWriter<&'a mut dyn Write>,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<'a> Sink<'a> {
    fn new(out: &'a mut dyn Write) -> Sink<'a> {
        Sink {
            out: std::io::BufWriter::with_capacity(WRITE_BUFFER_BYTES, out),
            crc: crc32fast::Hasher::new(),
            bytes: 0,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.crc.update(bytes);
        self.put_unsummed(bytes)
    }

    fn put_unsummed(&mut self, bytes: &[u8]) -> Result<()> {
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes).map_err(write_error)
    }

    fn record(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<()> {
        let len = |bytes: &[u8]| {
            u32::try_from(bytes.len())
                .map_err(|_| Error::Corrupt(format!("row of {} bytes is too large", bytes.len())))
        };
        let (key_len, value_len) = (len(key)?, len(value)?);
        self.put(&[table as u8])?;
        self.put(&key_len.to_be_bytes())?;
        self.put(&value_len.to_be_bytes())?;
        self.put(key)?;
        self.put(value)
    }

    fn end(&mut self, info: &ImageInfo, records: u64) -> Result<()> {
        self.put(&[END])?;
        self.put(&encode_end_fields(info, records))?;
        let crc = self.crc.clone().finalize();
        self.put_unsummed(&crc.to_be_bytes())?;
        self.out.flush().map_err(write_error)
    }
}

fn write_error(e: std::io::Error) -> Error {
    Error::Backend {
        context: "write image",
        source: Box::new(redb::Error::Io(e)),
    }
}

fn encode_end_fields(info: &ImageInfo, records: u64) -> [u8; END_FIELDS_LEN] {
    let fields = [
        info.consistent_index,
        info.consistent_term,
        info.revision as u64,
        info.compact_revision as u64,
        info.keys,
        records,
    ];
    let mut bytes = [0u8; END_FIELDS_LEN];
    for (chunk, field) in bytes.chunks_exact_mut(8).zip(fields) {
        chunk.copy_from_slice(&field.to_be_bytes());
    }
    bytes
}

/// The reading end: parses records one by one, checking order, summary and
/// checksum. Reads exactly the image's bytes.
struct ImageReader<'a> {
    input: &'a mut dyn Read,
    crc: crc32fast::Hasher,
    bytes: u64,
    summary: Summary,
    /// Key and value of the last record read.
    key: Vec<u8>,
    value: Vec<u8>,
    info: Option<ImageInfo>,
}

impl<'a> ImageReader<'a> {
    /// Reads and checks the header.
    fn open(input: &'a mut dyn Read) -> Result<ImageReader<'a>> {
        let mut reader = ImageReader {
            input,
            crc: crc32fast::Hasher::new(),
            bytes: 0,
            summary: Summary::default(),
            key: Vec::new(),
            value: Vec::new(),
            info: None,
        };
        let mut magic = [0u8; 8];
        reader.exact(&mut magic, "header")?;
        if magic != IMAGE_MAGIC {
            return Err(Error::Corrupt(format!(
                "not an etcd-rs backend image (magic {magic:02x?})"
            )));
        }
        let mut version = [0u8; 4];
        reader.exact(&mut version, "header")?;
        let version = u32::from_be_bytes(version);
        if !(OLDEST_READABLE_FORMAT_VERSION..=IMAGE_FORMAT_VERSION).contains(&version) {
            return Err(Error::Corrupt(format!(
                "unsupported image format version {version}: this build reads versions \
                 {OLDEST_READABLE_FORMAT_VERSION} to {IMAGE_FORMAT_VERSION}"
            )));
        }
        Ok(reader)
    }

    /// Reads the next record into `key` and `value` and returns its table,
    /// or reads and checks the end record and returns `None`.
    fn next(&mut self) -> Result<Option<Table>> {
        if self.info.is_some() {
            return Ok(None);
        }
        let mut tag = [0u8; 1];
        self.exact(&mut tag, "record")?;
        if tag[0] == END {
            self.read_end()?;
            return Ok(None);
        }
        let mut lens = [0u8; 8];
        self.exact(&mut lens, "record")?;
        let key_len = u32::from_be_bytes([lens[0], lens[1], lens[2], lens[3]]);
        let value_len = u32::from_be_bytes([lens[4], lens[5], lens[6], lens[7]]);
        let mut key = std::mem::take(&mut self.key);
        let mut value = std::mem::take(&mut self.value);
        let read = self
            .variable(&mut key, key_len)
            .and_then(|()| self.variable(&mut value, value_len));
        self.key = key;
        self.value = value;
        read?;
        let table = Table::from_id(tag[0])?;
        self.summary.observe(table, &self.key, &self.value)?;
        Ok(Some(table))
    }

    /// The summary of an image read to its end.
    fn finish(&self) -> Result<ImageInfo> {
        self.info
            .clone()
            .ok_or_else(|| Error::Corrupt("image not read to its end".into()))
    }

    fn read_end(&mut self) -> Result<()> {
        let mut fields = [0u8; END_FIELDS_LEN];
        self.exact(&mut fields, "end record")?;
        let computed = self.crc.clone().finalize();
        let mut stored = [0u8; 4];
        self.exact(&mut stored, "checksum")?;
        let stored = u32::from_be_bytes(stored);
        if stored != computed {
            return Err(Error::Corrupt(format!(
                "image checksum mismatch: stored {stored:08x}, computed {computed:08x}"
            )));
        }
        let mut info = self.summary.info()?;
        if encode_end_fields(&info, self.summary.records) != fields {
            return Err(Error::Corrupt(format!(
                "image end record disagrees with its records ({} records, {info:?})",
                self.summary.records
            )));
        }
        info.bytes = self.bytes;
        self.info = Some(info);
        Ok(())
    }

    /// Fills `buf` from the input, adding it to the checksum.
    fn exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        self.input
            .read_exact(buf)
            .map_err(|e| self.read_error(e, what))?;
        self.bytes += buf.len() as u64;
        self.crc.update(buf);
        Ok(())
    }

    /// Reads `len` bytes into `buf`, growing it as bytes arrive (a corrupt
    /// length makes the image look truncated, not a huge allocation).
    fn variable(&mut self, buf: &mut Vec<u8>, len: u32) -> Result<()> {
        buf.clear();
        let read = (&mut *self.input)
            .take(u64::from(len))
            .read_to_end(buf)
            .map_err(|e| self.read_error(e, "record"))?;
        self.bytes += read as u64;
        if read < len as usize {
            return Err(self.truncated("record"));
        }
        self.crc.update(buf);
        Ok(())
    }

    fn read_error(&self, e: std::io::Error, what: &str) -> Error {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            return self.truncated(what);
        }
        Error::Backend {
            context: "read image",
            source: Box::new(redb::Error::Io(e)),
        }
    }

    fn truncated(&self, what: &str) -> Error {
        Error::Corrupt(format!(
            "image truncated: input ends in the {what} after byte {} (record {})",
            self.bytes, self.summary.records
        ))
    }
}
