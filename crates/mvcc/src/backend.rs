//! The redb tables of the store and the helpers that read and write them.
//! The layout is drawn in the crate docs.

use std::collections::HashSet;

use api::mvccpb::KeyValue;
use prost::Message;
use redb::{ReadableTable, TableDefinition};

use crate::error::Context;
use crate::index::KeyTree;
use crate::revision::{decode_rev_key, RevKey};
use crate::{Error, Result, Revision};

/// Every change, keyed by its encoded revision; values are KeyValues.
pub(crate) const KEY_TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("key");
/// Small named values; integers are big-endian.
pub(crate) const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub(crate) const SCHEMA_VERSION_KEY: &str = "schema_version";
pub(crate) const CONSISTENT_INDEX_KEY: &str = "consistent_index";
pub(crate) const TERM_KEY: &str = "term";
pub(crate) const SCHEDULED_COMPACT_KEY: &str = "scheduledCompactRev";
pub(crate) const FINISHED_COMPACT_KEY: &str = "finishedCompactRev";

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
    /// Key and value bytes in the "key" table.
    pub(crate) stored_bytes: u64,
}

/// Rebuilds the key index from every change in the "key" table.
pub(crate) fn restore_index<T>(table: &T) -> Result<Restored>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let mut tree = KeyTree::new();
    let mut last_rev = None;
    let mut previous: Option<Revision> = None;
    let mut stored_bytes = 0u64;
    for entry in table.iter().context("scan key table")? {
        let (key, value) = entry.context("scan key table")?;
        let (rev, tombstone) = decode_rev_key(key.value())?;
        if previous.is_some_and(|p| p >= rev) {
            return Err(Error::Corrupt(format!("revision {rev} out of order")));
        }
        previous = Some(rev);
        stored_bytes += (key.value().len() + value.value().len()) as u64;
        let kv = decode_kv(rev, value.value())?;
        tree.restore(&kv.key, rev, tombstone, kv.create_revision, kv.version);
        last_rev = Some(rev.main);
    }
    Ok(Restored {
        tree,
        last_rev,
        stored_bytes,
    })
}

/// Deletes from the "key" table every revision `<= at` that is not in
/// `keep`. Returns the key and value bytes deleted.
pub(crate) fn compact_key_table(
    table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    at: i64,
    keep: &HashSet<Revision>,
) -> Result<u64> {
    let end = RevKey::new(Revision::new(at.saturating_add(1), 0), false);
    let mut deleted_bytes = 0u64;
    let mut bad_key = None;
    table
        .retain_in::<&[u8], _>(..end.as_bytes(), |key, value| match decode_rev_key(key) {
            Ok((rev, _)) => {
                let stays = keep.contains(&rev);
                if !stays {
                    deleted_bytes += (key.len() + value.len()) as u64;
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
        None => Ok(deleted_bytes),
    }
}
