//! The redb tables of the store and the helpers that read and write them.
//! The layout is drawn in the crate docs.

use std::collections::HashSet;

use api::mvccpb::KeyValue;
use prost::Message;
use redb::{ReadableTable, TableDefinition};

use crate::error::Context;
use crate::footprint;
use crate::index::KeyTree;
use crate::revision::{decode_rev_key, RevKey};
use crate::{Error, Result, Revision};

/// Every change, keyed by its encoded revision; values are KeyValues.
pub(crate) const KEY_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key");
/// Small named values; integers are big-endian.
pub(crate) const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Leases, keyed by ID (8 bytes, big-endian, as etcd); values are opaque to
/// this crate (the server stores etcd's leasepb.Lease).
pub(crate) const LEASE_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("lease");

/// Active alarms; keys are opaque to this crate (the server stores etcd's
/// AlarmMember, as etcd keys its "alarm" bucket), values empty.
pub(crate) const ALARM_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("alarm");

/// etcd's auth buckets, kept row for row (etcd's keys and values) so that
/// nothing is lost when data comes from etcd; this crate does not read them.
pub(crate) const AUTH_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("auth");
pub(crate) const AUTH_USERS_TABLE: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("authUsers");
pub(crate) const AUTH_ROLES_TABLE: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("authRoles");

/// A table of byte keys and values.
/// One of the auth buckets (etcd's `auth`, `authUsers`, `authRoles`),
/// whose rows the server's auth store writes and reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthTable {
    Auth,
    Users,
    Roles,
}

impl AuthTable {
    pub(crate) fn definition(self) -> BytesTable {
        match self {
            AuthTable::Auth => AUTH_TABLE,
            AuthTable::Users => AUTH_USERS_TABLE,
            AuthTable::Roles => AUTH_ROLES_TABLE,
        }
    }
}

pub(crate) type BytesTable = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// The tables whose rows this crate stores without reading them, by image
/// table: lease, alarm and the auth tables. Defragmentation copies them
/// whole; images carry them row for row.
pub(crate) const OPAQUE_TABLES: [(crate::image::Table, BytesTable); 5] = [
    (crate::image::Table::Lease, LEASE_TABLE),
    (crate::image::Table::Alarm, ALARM_TABLE),
    (crate::image::Table::Auth, AUTH_TABLE),
    (crate::image::Table::AuthUsers, AUTH_USERS_TABLE),
    (crate::image::Table::AuthRoles, AUTH_ROLES_TABLE),
];

pub(crate) const SCHEMA_VERSION_KEY: &str = "schema_version";
pub(crate) const CONSISTENT_INDEX_KEY: &str = "consistent_index";
pub(crate) const TERM_KEY: &str = "term";
pub(crate) const SCHEDULED_COMPACT_KEY: &str = "scheduledCompactRev";
pub(crate) const FINISHED_COMPACT_KEY: &str = "finishedCompactRev";
/// etcd's name for the storage version (`3.6.0`, UTF-8); absent until a
/// server or `etcdutl migrate` records one.
pub(crate) const STORAGE_VERSION_KEY: &str = "storageVersion";

/// The layout version this code reads and writes.
pub(crate) const SCHEMA_VERSION: u64 = 1;

/// Reads an 8-byte big-endian integer from the meta table.
pub(crate) fn read_meta_u64<T>(table: &T, name: &str) -> Result<Option<u64>>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    let Some(value) = table.get(name).context("read meta")? else {
        return Ok(None);
    };
    let bytes: [u8; 8] = value
        .value()
        .try_into()
        .map_err(|_| Error::Corrupt(format!("meta {name} is not 8 bytes")))?;
    Ok(Some(u64::from_be_bytes(bytes)))
}

/// Reads the recorded storage version (a UTF-8 string).
pub(crate) fn read_storage_version<T>(table: &T) -> Result<Option<String>>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    let Some(value) = table.get(STORAGE_VERSION_KEY).context("read meta")? else {
        return Ok(None);
    };
    String::from_utf8(value.value().to_vec())
        .map(Some)
        .map_err(|_| Error::Corrupt(format!("meta {STORAGE_VERSION_KEY} is not UTF-8")))
}

/// Reads a revision stored as an 8-byte big-endian integer.
pub(crate) fn read_meta_rev<T>(table: &T, name: &str) -> Result<Option<i64>>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    Ok(read_meta_u64(table, name)?.map(|v| v as i64))
}

pub(crate) fn write_meta_u64(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    name: &str,
    value: u64,
) -> Result<()> {
    table
        .insert(name, value.to_be_bytes().as_slice())
        .context("write meta")?;
    Ok(())
}

/// Decodes a stored KeyValue.
pub(crate) fn decode_kv(rev: Revision, bytes: &[u8]) -> Result<KeyValue> {
    KeyValue::decode(bytes).map_err(|e| Error::Corrupt(format!("value at revision {rev}: {e}")))
}

/// Loads the KeyValue of a live (non-tombstone) revision.
pub(crate) fn load_kv<T>(table: &T, rev: Revision) -> Result<KeyValue>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let key = RevKey::new(rev, false);
    let value = table
        .get(key.as_bytes())
        .context("read key table")?
        .ok_or_else(|| Error::Corrupt(format!("indexed revision {rev} missing in backend")))?;
    decode_kv(rev, value.value())
}

/// What a scan of the backend found.
pub(crate) struct Restored {
    /// The rebuilt key index.
    pub(crate) tree: KeyTree,
    /// The highest main revision stored.
    pub(crate) last_rev: Option<i64>,
    /// What bbolt would use to hold the "key" table's rows
    /// ([`crate::footprint`]).
    pub(crate) footprint: u64,
}

/// Rebuilds the key index from every change in the "key" table.
pub(crate) fn restore_index<T>(table: &T) -> Result<Restored>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let mut builder = IndexBuilder::default();
    for entry in table.iter().context("scan key table")? {
        let (key, value) = entry.context("scan key table")?;
        builder.add(key.value(), value.value())?;
    }
    Ok(builder.finish())
}

/// Builds the key index from the rows of a "key" table, given in order.
#[derive(Default)]
pub(crate) struct IndexBuilder {
    tree: KeyTree,
    previous: Option<Revision>,
    footprint: u64,
}

impl IndexBuilder {
    /// Adds one row; rows must come in increasing revision order.
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let (rev, tombstone) = decode_rev_key(key)?;
        if self.previous.is_some_and(|p| p >= rev) {
            return Err(Error::Corrupt(format!("revision {rev} out of order")));
        }
        self.previous = Some(rev);
        self.footprint += footprint::row((key.len() + value.len()) as u64);
        let kv = decode_kv(rev, value)?;
        self.tree
            .restore(&kv.key, rev, tombstone, kv.create_revision, kv.version);
        Ok(())
    }

    pub(crate) fn finish(self) -> Restored {
        Restored {
            tree: self.tree,
            last_rev: self.previous.map(|rev| rev.main),
            footprint: self.footprint,
        }
    }
}

/// Reads the compaction marks and, if the last compaction was scheduled but
/// did not finish, redoes it on `keys` and `restored`. Returns the
/// compaction revision (-1 if none).
pub(crate) fn finish_compaction(
    meta: &mut redb::Table<'_, &'static str, &'static [u8]>,
    keys: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    restored: &mut Restored,
) -> Result<i64> {
    let finished = read_meta_rev(meta, FINISHED_COMPACT_KEY)?.unwrap_or(-1);
    let scheduled = read_meta_rev(meta, SCHEDULED_COMPACT_KEY)?;
    let Some(at) = scheduled.filter(|&at| at > finished) else {
        return Ok(finished);
    };
    tracing::info!(revision = at, "resuming interrupted compaction");
    let keep = restored.tree.compact(at);
    restored.footprint -= compact_key_table(keys, at, &keep)?.footprint;
    write_meta_u64(meta, FINISHED_COMPACT_KEY, at as u64)?;
    Ok(at)
}

/// The revision readers see in a store holding `restored` and compacted at
/// `compact_rev`: the last change, or the compaction if it removed that
/// change (a compacted tombstone), and at least 1.
pub(crate) fn current_revision(restored: &Restored, compact_rev: i64) -> i64 {
    restored.last_rev.unwrap_or(1).max(compact_rev).max(1)
}

/// Deletes from the "key" table every revision `<= at` that is not in
/// `keep`. Returns what it deleted.
pub(crate) fn compact_key_table(
    table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    at: i64,
    keep: &HashSet<Revision>,
) -> Result<Compacted> {
    let end = RevKey::new(Revision::new(at.saturating_add(1), 0), false);
    let mut deleted_footprint = 0u64;
    let mut deleted_rows = 0u64;
    let mut bad_key = None;
    table
        .retain_in::<&[u8], _>(..end.as_bytes(), |key, value| match decode_rev_key(key) {
            Ok((rev, _)) => {
                let stays = keep.contains(&rev);
                if !stays {
                    deleted_footprint += footprint::row((key.len() + value.len()) as u64);
                    deleted_rows += 1;
                }
                stays
            }
            Err(e) => {
                bad_key.get_or_insert(e);
                true
            }
        })
        .context("compact key table")?;
    match bad_key {
        Some(e) => Err(e),
        None => Ok(Compacted {
            footprint: deleted_footprint,
            rows: deleted_rows,
        }),
    }
}

/// What a compaction removed from the "key" table.
pub(crate) struct Compacted {
    /// The rows' footprint ([`crate::footprint`]).
    pub(crate) footprint: u64,
    /// Rows (revisions).
    pub(crate) rows: u64,
}
