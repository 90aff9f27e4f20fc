//! Online defragmentation: the backend is copied into a fresh, compact file
//! while reads and writes go on, then the store switches to the copy.
//!
//! 1. **Copy.** From one read transaction, every table is copied in key
//!    order into `<db>.defrag`, in durable chunks (so that the switch-over
//!    does not sync the whole copy while writes wait).
//! 2. **Switch-over**, holding the writer lock (writes wait, reads go on):
//!    the "key" rows written since the copy's snapshot are appended (between
//!    compactions that table only grows, at its end), the small tables
//!    ("meta", "lease", "alarm") are replaced whole, the copy commits
//!    durably, is renamed over the backend file, the directory is synced,
//!    and new readers and writers get the copy. Readers that started before
//!    finish on the old file, which goes away with its last reader.
//!
//! Writes therefore pause only for the switch-over, whose work is the rows
//! written during the copy, not the database size (etcd holds its writes,
//! and its reads, for the whole copy).
//!
//! A compaction or an image restore during the copy removes rows the copy
//! already holds: the copy starts over, at most [`COPY_ATTEMPTS_MAX`] times,
//! after which the switch-over copies everything itself.
//!
//! Crash safety: the rename is the commit point. A crash before it leaves
//! the old file intact and a `.defrag` leftover, which [`Store::open`]
//! removes; after it, the copy is complete and durable.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redb::{ReadTransaction, ReadableDatabase, ReadableTable};

use crate::backend::{KEY_TABLE, META_TABLE, OPAQUE_TABLES};
use crate::error::Context;
use crate::store::Store;
use crate::{Error, Result};

/// Rows per commit while copying (bounds the memory of one transaction).
const COPY_CHUNK_ROWS: usize = 20_000;
/// Key and value bytes per commit while copying. Each chunk is made durable
/// as it is copied, so the switch-over's commit only syncs what came after:
/// syncing the whole copy there held writes for ~300 ms on a 1 GiB backend
/// (and stalled the WAL's fsync on the same disk), ~30-100 ms this way.
const COPY_CHUNK_BYTES: usize = 32 << 20;
/// Copies started over because of a concurrent compaction, at most.
const COPY_ATTEMPTS_MAX: usize = 3;

/// What a defragmentation did.
#[derive(Clone, Debug)]
pub struct DefragReport {
    pub size_before: u64,
    pub size_after: u64,
    /// How long writes waited (the switch-over).
    pub writes_paused: Duration,
    pub took: Duration,
}

/// The copy's file name: beside the backend, `<name>.defrag`.
fn copy_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".defrag");
    path.with_file_name(name)
}

/// Removes the copy a crash left behind (the backend file itself is intact).
pub(crate) fn remove_leftover(path: &Path) -> Result<()> {
    let leftover = copy_path(path);
    match std::fs::remove_file(&leftover) {
        Ok(()) => {
            tracing::warn!(path = %leftover.display(), "removed an unfinished defragmentation copy");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("remove an unfinished defragmentation copy", e)),
    }
}

fn io_error(context: &'static str, e: std::io::Error) -> Error {
    Error::Backend {
        context,
        source: Box::new(redb::Error::Io(e)),
    }
}

impl Store {
    /// Rewrites the backend into a compact file (etcd's defragment), while
    /// reads go on and writes wait only for the switch-over. One at a time:
    /// a second call waits for the first.
    pub fn defragment(&self) -> Result<DefragReport> {
        self.check_poisoned()?;
        let _one = self.defragmenting.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let size_before = self.db_size_bytes();
        let target = copy_path(&self.path);
        remove_leftover(&self.path)?;

        // 1. Copy from a snapshot, with writes going on.
        let mut copied = None;
        for _ in 0..COPY_ATTEMPTS_MAX {
            let rewrites = self.rewrites.load(Ordering::Acquire);
            let source = self.db().begin_read().context("begin defragment read")?;
            let (copy, last_key) = self.copy_tables(&source, &target)?;
            drop(source);
            if self.rewrites.load(Ordering::Acquire) == rewrites {
                copied = Some((copy, last_key, rewrites));
                break;
            }
            drop(copy);
            remove_leftover(&self.path)?;
        }

        // 2. Switch over, holding the writers off.
        let writer = self.lock_writer();
        let paused_at = Instant::now();
        let old = self.db();
        let source = old.begin_read().context("begin defragment switch-over")?;
        let copy = match copied {
            Some((copy, last_key, rewrites))
                if self.rewrites.load(Ordering::Acquire) == rewrites =>
            {
                append_new_rows(&source, &copy, last_key.as_deref())?;
                copy
            }
            other => {
                drop(other);
                remove_leftover(&self.path)?;
                self.copy_tables(&source, &target)?.0
            }
        };
        {
            let mut txn = copy.begin_write().context("begin defragment commit")?;
            txn.set_quick_repair(self.opts.quick_repair);
            replace_small_tables(&source, &txn)?;
            txn.commit().context("commit defragmented copy")?;
        }
        drop(source);
        std::fs::rename(&target, &self.path)
            .map_err(|e| io_error("rename the defragmented copy", e))?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error("sync the backend directory", e))?;
        }
        self.replace_db(copy);
        self.refresh_file_size();
        self.shrink_size_to_in_use();
        let writes_paused = paused_at.elapsed();
        drop(writer);
        drop(old);

        let report = DefragReport {
            size_before,
            size_after: self.db_size_bytes(),
            writes_paused,
            took: started.elapsed(),
        };
        tracing::info!(
            size_before = report.size_before,
            size_after = report.size_after,
            writes_paused_ms = report.writes_paused.as_millis() as u64,
            took_ms = report.took.as_millis() as u64,
            "defragmented the backend"
        );
        Ok(report)
    }

    /// Creates `target` and copies every table of `source` into it; returns
    /// the copy and the last "key" row copied.
    fn copy_tables(
        &self,
        source: &ReadTransaction,
        target: &Path,
    ) -> Result<(redb::Database, Option<Vec<u8>>)> {
        let copy = redb::Database::builder()
            .set_cache_size(self.opts.cache_size_bytes)
            .create(target)
            .context("create defragmentation copy")?;
        {
            let txn = copy.begin_write().context("begin defragment copy")?;
            txn.open_table(KEY_TABLE).context("create key table")?;
            replace_small_tables(source, &txn)?;
            txn.commit().context("commit defragment copy")?;
        }
        let keys = source.open_table(KEY_TABLE).context("open key table")?;
        let last_key = copy_rows(keys.iter().context("scan key table")?, &copy)?;
        Ok((copy, last_key))
    }
}

/// Appends the "key" rows of `source` after `last_key` to `copy`.
fn append_new_rows(
    source: &ReadTransaction,
    copy: &redb::Database,
    last_key: Option<&[u8]>,
) -> Result<()> {
    let keys = source.open_table(KEY_TABLE).context("open key table")?;
    let rows = match last_key {
        Some(last) => keys
            .range::<&[u8]>((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded))
            .context("scan key table")?,
        None => keys.iter().context("scan key table")?,
    };
    copy_rows(rows, copy)?;
    Ok(())
}

/// Copies rows into the copy's "key" table in durable chunks (bounded in
/// rows and bytes); returns the last key.
fn copy_rows(
    mut rows: redb::Range<'_, &'static [u8], &'static [u8]>,
    copy: &redb::Database,
) -> Result<Option<Vec<u8>>> {
    let mut last_key = None;
    loop {
        let txn = copy.begin_write().context("begin defragment copy")?;
        let mut done = true;
        {
            let mut table = txn.open_table(KEY_TABLE).context("open copied key table")?;
            let mut bytes = 0;
            for _ in 0..COPY_CHUNK_ROWS {
                let Some(row) = rows.next() else {
                    break;
                };
                let (key, value) = row.context("scan key table")?;
                table
                    .insert(key.value(), value.value())
                    .context("copy key row")?;
                last_key = Some(key.value().to_vec());
                done = false;
                bytes += key.value().len() + value.value().len();
                if bytes >= COPY_CHUNK_BYTES {
                    break;
                }
            }
        }
        txn.commit().context("commit defragment copy")?;
        if done {
            return Ok(last_key);
        }
    }
}

/// Replaces the copy's "meta", "lease" and "alarm" tables with the source's.
fn replace_small_tables(source: &ReadTransaction, txn: &redb::WriteTransaction) -> Result<()> {
    txn.delete_table(META_TABLE)
        .context("clear copied meta table")?;
    {
        let mut to = txn
            .open_table(META_TABLE)
            .context("open copied meta table")?;
        let from = source.open_table(META_TABLE).context("open meta table")?;
        for row in from.iter().context("scan meta table")? {
            let (name, value) = row.context("scan meta table")?;
            to.insert(name.value(), value.value())
                .context("copy meta row")?;
        }
    }
    // The byte tables other than "key" are small: copied whole at the switch-over.
    for (_, table) in OPAQUE_TABLES {
        txn.delete_table(table).context("clear copied table")?;
        let mut to = txn.open_table(table).context("open copied table")?;
        let from = match source.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => continue,
            Err(e) => return Err(e).context("open table to copy"),
        };
        for row in from.iter().context("scan table to copy")? {
            let (key, value) = row.context("scan table to copy")?;
            to.insert(key.value(), value.value()).context("copy row")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::store_tests::{open, range_req, TestStore};

    /// Puts `n` keys with values of `size` bytes, in batches.
    fn fill(t: &TestStore, n: usize, size: usize, tag: &str) {
        let value = "v".repeat(size);
        for chunk in 0..n / 100 {
            let mut batch = t.store.write_batch().unwrap();
            for i in 0..100 {
                let key = format!("{tag}{:06}", chunk * 100 + i);
                batch
                    .put(&crate::store_tests::put_req(&key, &value))
                    .unwrap();
            }
            batch.commit(false).unwrap();
        }
    }

    fn count(t: &TestStore, prefix: &str) -> i64 {
        let mut end = prefix.as_bytes().to_vec();
        *end.last_mut().unwrap() += 1;
        let mut req = range_req(prefix, "");
        req.range_end = end;
        req.count_only = true;
        t.store.range(&req).unwrap().count
    }

    #[test]
    fn shrinks_and_keeps_everything() {
        let t = open();
        fill(&t, 4_000, 1_000, "a");
        fill(&t, 4_000, 1_000, "b");
        t.delete("a", "b");
        let rev = t.store.current_revision();
        t.compact(rev).unwrap();
        let hash = t.store.hash().unwrap();
        let hash_kv = t.store.hash_kv(0).unwrap();
        let report = t.store.defragment().unwrap();
        assert!(
            report.size_after < report.size_before,
            "{} -> {}",
            report.size_before,
            report.size_after
        );
        assert_eq!(t.store.hash().unwrap(), hash);
        assert_eq!(t.store.hash_kv(0).unwrap(), hash_kv);
        assert_eq!(count(&t, "b"), 4_000);
        // Writes and reopening go on against the copy.
        let after = t.put("c", "1");
        assert_eq!(after, rev + 1);
        let hash = t.store.hash().unwrap();
        let t = t.reopen();
        assert_eq!(t.store.hash().unwrap(), hash);
        assert_eq!(count(&t, "b"), 4_000);
        assert_eq!(t.get("c").unwrap().mod_revision, rev + 1);
        assert!(!t.dir.path().join("member/snap/db.defrag").exists());
    }

    /// Two stores given the same writes (and compactions) end with the same
    /// hash, one of them defragmented again and again meanwhile.
    #[test]
    fn concurrent_writes_and_compactions_are_kept() {
        let plain = open();
        let defragged = std::sync::Arc::new(open());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let defragger = {
            let t = defragged.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut runs = 0;
                while !stop.load(std::sync::atomic::Ordering::Acquire) && runs < 1_000 {
                    t.store.defragment().unwrap();
                    runs += 1;
                }
                runs
            })
        };
        for round in 0..30 {
            for t in [&plain, &*defragged] {
                fill(t, 300, 200, &format!("k{round:02}-"));
                if round % 7 == 6 {
                    t.compact(t.store.current_revision() - 100).unwrap();
                }
                t.delete(
                    &format!("k{round:02}-000000"),
                    &format!("k{round:02}-000050"),
                );
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Release);
        let runs = defragger.join().unwrap();
        assert!(runs >= 1);
        assert_eq!(defragged.store.hash().unwrap(), plain.store.hash().unwrap());
        assert_eq!(
            defragged.store.hash_kv(0).unwrap(),
            plain.store.hash_kv(0).unwrap()
        );
        let defragged = std::sync::Arc::into_inner(defragged).unwrap().reopen();
        assert_eq!(defragged.store.hash().unwrap(), plain.store.hash().unwrap());
    }

    #[test]
    fn a_leftover_copy_is_removed_on_open() {
        let t = open();
        t.put("a", "1");
        let leftover = t.dir.path().join("member/snap/db.defrag");
        std::fs::write(&leftover, b"half a copy").unwrap();
        let t = t.reopen();
        assert!(!leftover.exists());
        assert_eq!(t.get("a").unwrap().value, b"1");
    }
}
