//! Hashes of the backend, as etcd computes them: CRC-32C (Castagnoli) over
//! rows in key order. [`Store::hash_kv`] is etcd's HashKV (the "key" table
//! up to a revision, as a compaction would leave it), which members compare
//! to detect corruption; [`Store::hash`] covers every table but the
//! per-member raft position.

use std::collections::HashSet;

use redb::{ReadableDatabase, ReadableTable};

use crate::backend::{self, ALARM_TABLE, LEASE_TABLE, META_TABLE};
use crate::error::Context;
use crate::revision::decode_rev_key;
use crate::{Error, Result, Revision, Store};

/// CRC-32C (Castagnoli), Go's `crc32.MakeTable(crc32.Castagnoli)`: etcd's
/// hash of rows and buckets (the table is `etcdfmt`'s, shared with etcd's
/// WAL; the checked value of "123456789" is in the tests).
pub struct Crc32c(u32);

impl Crc32c {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Crc32c {
        Crc32c(0)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0 = etcdfmt::wal::crc32c_update(self.0, bytes);
    }

    pub fn finish(&self) -> u32 {
        self.0
    }
}

/// What HashKV answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    pub hash: u32,
    /// The store's current revision when hashed.
    pub current_revision: i64,
    pub compact_revision: i64,
    /// The revision hashed up to.
    pub hash_revision: i64,
}

impl Store {
    /// etcd's HashKV at `rev` (0: the current revision): the "key" table's
    /// rows up to `rev`, leaving out those a compaction at `rev` would
    /// remove below the compaction revision. Fails with
    /// [`Error::Compacted`] at or below the compaction revision and
    /// [`Error::FutureRevision`] above the current one.
    pub fn hash_kv(&self, rev: i64) -> Result<KvHash> {
        self.hash_kv_from(rev, false)
    }

    /// [`Store::hash_kv`] as etcd 3.6 bounds it: the compaction revision
    /// itself can be hashed (etcd 3.5, whose answers the server's HashKV
    /// matches, refuses it). `etcdutl hashkv` uses this.
    pub fn hash_kv_v3_6(&self, rev: i64) -> Result<KvHash> {
        self.hash_kv_from(rev, true)
    }

    fn hash_kv_from(&self, rev: i64, compaction_rev_hashable: bool) -> Result<KvHash> {
        let view = self.read_view()?;
        let (current, compact) = (view.rev, view.compact_rev);
        let compacted = if compaction_rev_hashable {
            rev < compact
        } else {
            rev <= compact
        };
        if rev > 0 && compacted {
            return Err(Error::Compacted);
        }
        if rev > current {
            return Err(Error::FutureRevision);
        }
        let rev = if rev <= 0 { current } else { rev };
        let keep: HashSet<Revision> = self.read_index().keep(rev);
        let mut h = Crc32c::new();
        h.update(b"key");
        for row in view.table.iter().context("scan key table")? {
            let (key, value) = row.context("scan key table")?;
            let (kr, _) = decode_rev_key(key.value())?;
            if kr.main > rev {
                break;
            }
            if kr.main <= compact && !keep.is_empty() && !keep.contains(&kr) {
                continue;
            }
            h.update(key.value());
            h.update(value.value());
        }
        Ok(KvHash {
            hash: h.finish(),
            current_revision: current,
            compact_revision: compact,
            hash_revision: rev,
        })
    }

    /// etcd's Hash: every table's name and rows, except the raft position
    /// in "meta" (consistent index and term), which differs while members
    /// catch up, and the storage version (etcd 3.6 leaves these three out).
    pub fn hash(&self) -> Result<u32> {
        let view = self.read_view()?;
        let txn = self.db().begin_read().context("begin hash")?;
        let mut h = Crc32c::new();
        h.update(b"key");
        for row in view.table.iter().context("scan key table")? {
            let (key, value) = row.context("scan key table")?;
            h.update(key.value());
            h.update(value.value());
        }
        match txn.open_table(LEASE_TABLE) {
            Ok(leases) => {
                h.update(b"lease");
                for row in leases.iter().context("scan lease table")? {
                    let (key, value) = row.context("scan lease table")?;
                    h.update(key.value());
                    h.update(value.value());
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e).context("open lease table"),
        }
        match txn.open_table(ALARM_TABLE) {
            Ok(alarms) => {
                h.update(b"alarm");
                for row in alarms.iter().context("scan alarm table")? {
                    let (key, value) = row.context("scan alarm table")?;
                    h.update(key.value());
                    h.update(value.value());
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e).context("open alarm table"),
        }
        let meta = txn.open_table(META_TABLE).context("open meta table")?;
        h.update(b"meta");
        for row in meta.iter().context("scan meta table")? {
            let (name, value) = row.context("scan meta table")?;
            let name = name.value();
            if [
                backend::CONSISTENT_INDEX_KEY,
                backend::TERM_KEY,
                backend::STORAGE_VERSION_KEY,
            ]
            .contains(&name)
            {
                continue;
            }
            h.update(name.as_bytes());
            h.update(value.value());
        }
        Ok(h.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        let mut h = Crc32c::new();
        h.update(b"123456789");
        assert_eq!(h.finish(), 0xE306_9283);
        let mut split = Crc32c::new();
        split.update(b"1234");
        split.update(b"56789");
        assert_eq!(split.finish(), 0xE306_9283);
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), crate::StoreOptions::default()).unwrap();
        (dir, store)
    }

    fn put(store: &Store, key: &str, value: &str) {
        let mut wb = store.write_batch().unwrap();
        wb.put(&api::etcdserverpb::PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })
        .unwrap();
        wb.commit(false).unwrap();
    }

    fn compact(store: &Store, rev: i64) {
        let mut wb = store.write_batch().unwrap();
        wb.compact(&api::etcdserverpb::CompactionRequest {
            revision: rev,
            physical: true,
        })
        .unwrap();
        wb.commit(true).unwrap();
    }

    #[test]
    fn hash_kv_is_stable_at_a_revision_and_equal_for_equal_histories() {
        let (_a, a) = open();
        let (_b, b) = open();
        for store in [&a, &b] {
            for i in 0..20 {
                put(store, &format!("k{}", i % 5), &format!("v{i}"));
            }
        }
        let at_10 = a.hash_kv(10).unwrap();
        assert_eq!(at_10, b.hash_kv(10).unwrap());
        assert_eq!(at_10.hash_revision, 10);
        assert_eq!(a.hash_kv(0).unwrap(), b.hash_kv(0).unwrap());
        put(&a, "later", "x");
        // Later writes do not change the hash at an earlier revision.
        assert_eq!(a.hash_kv(10).unwrap().hash, at_10.hash);
        assert_ne!(a.hash_kv(0).unwrap().hash, b.hash_kv(0).unwrap().hash);
        assert!(matches!(a.hash_kv(1000), Err(Error::FutureRevision)));
        // Members compacted at the same revision agree (etcd compares hashes
        // only when the compaction revisions match).
        put(&b, "later", "x");
        compact(&a, 12);
        assert_ne!(a.hash_kv(18).unwrap().hash, b.hash_kv(18).unwrap().hash);
        compact(&b, 12);
        assert_eq!(a.hash_kv(18).unwrap(), b.hash_kv(18).unwrap());
        assert!(matches!(a.hash_kv(12), Err(Error::Compacted)));
        assert_eq!(a.hash_kv(0).unwrap().compact_revision, 12);
        // etcd 3.6 hashes at the compaction revision, below it neither does.
        let at_12 = a.hash_kv_v3_6(12).unwrap();
        assert_eq!(at_12, b.hash_kv_v3_6(12).unwrap());
        assert_eq!(at_12.hash_revision, 12);
        assert!(matches!(a.hash_kv_v3_6(11), Err(Error::Compacted)));
        assert_eq!(a.hash_kv_v3_6(18).unwrap(), a.hash_kv(18).unwrap());
    }

    /// The storage version is recorded, survives a reopen and an image
    /// restore, can be removed, and (as in etcd 3.6) is not hashed.
    #[test]
    fn storage_version_is_kept_and_not_hashed() {
        let (dir, a) = open();
        let (_b, b) = open();
        put(&a, "k", "v");
        put(&b, "k", "v");
        assert_eq!(a.storage_version(), None);
        let mut wb = a.write_batch().unwrap();
        wb.set_storage_version(Some("3.6.0"));
        wb.commit(true).unwrap();
        assert_eq!(a.storage_version().as_deref(), Some("3.6.0"));
        assert_eq!(a.hash().unwrap(), b.hash().unwrap());

        let mut image = Vec::new();
        a.write_image(&mut image).unwrap();
        b.restore_image(&mut image.as_slice()).unwrap();
        assert_eq!(b.storage_version().as_deref(), Some("3.6.0"));

        drop(a);
        let a = Store::open(&dir.path().join("db"), crate::StoreOptions::default()).unwrap();
        assert_eq!(a.storage_version().as_deref(), Some("3.6.0"));
        let mut wb = a.write_batch().unwrap();
        wb.set_storage_version(None);
        wb.commit(true).unwrap();
        drop(a);
        let a = Store::open(&dir.path().join("db"), crate::StoreOptions::default()).unwrap();
        assert_eq!(a.storage_version(), None);
    }

    #[test]
    fn hash_ignores_the_raft_position_only() {
        let (_a, a) = open();
        let (_b, b) = open();
        for (store, index) in [(&a, 5), (&b, 9)] {
            let mut wb = store.write_batch().unwrap();
            wb.put(&api::etcdserverpb::PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            })
            .unwrap();
            wb.set_consistent_index(index, 2);
            wb.commit(true).unwrap();
        }
        assert_eq!(a.hash().unwrap(), b.hash().unwrap());
        let mut wb = a.write_batch().unwrap();
        wb.put_lease(7, b"lease".to_vec());
        wb.commit(true).unwrap();
        assert_ne!(a.hash().unwrap(), b.hash().unwrap());
    }
}
