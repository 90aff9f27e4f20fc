//! Work on the files of a stopped member, for `etcdutl`: offline
//! defragmentation of a data directory and HashKV of a backend file.
//!
//! Safety rules, as etcd's tools follow them and a bit stricter:
//! - nothing is created where no backend exists: a missing
//!   `member/snap/db` is an error (etcd's bbolt would create an empty file);
//! - a member that is running is never touched: the member directory's
//!   lock (`member/lock`, held by a running server) is taken first, and
//!   redb's own file lock refuses a backend open elsewhere; either fails at
//!   once with a clear error (etcd waits for the lock, without end);
//! - defragmentation is the store's own ([`mvcc::Store::defragment`]):
//!   the copy becomes the backend by an atomic rename, so stopping it at
//!   any point leaves the old file whole (and a `db.defrag` leftover that
//!   the next open removes).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::snapshot_file::{go_io_error, Format, SnapshotFile};
use gofmt::bytes::humanize as humanize_bytes;

/// `<data-dir>/member/snap/db` (etcd's `datadir.ToBackendFileName`).
pub fn backend_path(data_dir: &Path) -> PathBuf {
    data_dir.join("member").join("snap").join("db")
}

/// Refuses, before anything is created or locked there, a data dir that
/// is not ours: etcd's (`tool` names what to use instead), a newer
/// build's, or one whose files nobody wrote.
pub fn refuse_foreign(data_dir: &Path, tool: &str) -> Result<()> {
    match crate::interchange::datadir::inspect(data_dir, None)? {
        crate::interchange::datadir::Kind::Etcd { evidence } => bail!(
            "data dir {} was written by etcd ({} is etcd's): {tool}; the dir is left as it is",
            data_dir.display(),
            evidence.display()
        ),
        _ => Ok(()),
    }
}

/// Takes the member's lock, failing at once if a server holds it.
pub fn lock_member(data_dir: &Path) -> Result<File> {
    crate::founding::lock_dir(&data_dir.join("member"))
}

/// Fails unless `path` is an existing file (Go's error text otherwise).
fn require_file(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| go_io_error("open", path, &e))?;
    if meta.is_dir() {
        bail!("{} is a directory, not a backend file", path.display());
    }
    Ok(())
}

/// Opens an existing backend file as a store.
pub fn open_backend(path: &Path) -> Result<mvcc::Store> {
    require_file(path)?;
    mvcc::Store::open(path, mvcc::StoreOptions::default()).map_err(|e| {
        if e.is_locked() {
            anyhow::anyhow!(
                "{} is in use by another process (a running etcd?): stop it first",
                path.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("cannot open the backend {}", path.display()))
        }
    })
}

/// Defragments the backend of the stopped member at `data_dir` (etcd's
/// `etcdutl defrag --data-dir`), logging etcd's two lines.
pub fn defrag(data_dir: &Path) -> Result<mvcc::DefragReport> {
    let path = backend_path(data_dir);
    require_file(&path)?;
    refuse_foreign(data_dir, "defragment it with etcd's own etcdutl")?;
    let _lock = lock_member(data_dir)?;
    let started = Instant::now();
    let store = open_backend(&path)?;
    let (size, in_use) = (store.db_size_bytes(), store.db_size_in_use_bytes());
    tracing::info!(
        path = %path.display(),
        current_db_size_bytes = size,
        current_db_size = %humanize_bytes(size),
        current_db_size_in_use_bytes = in_use,
        current_db_size_in_use = %humanize_bytes(in_use),
        "defragmenting"
    );
    let report = store
        .defragment()
        .with_context(|| format!("defragment {}", path.display()))?;
    let (size_after, in_use_after) = (store.db_size_bytes(), store.db_size_in_use_bytes());
    drop(store);
    tracing::info!(
        path = %path.display(),
        current_db_size_bytes_diff = size_after as i64 - size as i64,
        current_db_size_bytes = size_after,
        current_db_size = %humanize_bytes(size_after),
        current_db_size_in_use_bytes_diff = in_use_after as i64 - in_use as i64,
        current_db_size_in_use_bytes = in_use_after,
        current_db_size_in_use = %humanize_bytes(in_use_after),
        took = started.elapsed().as_secs_f64(),
        "finished defragmenting directory"
    );
    Ok(report)
}

/// etcd's HashKV of a backend file at `rev` (0: the latest revision), as
/// `etcdutl hashkv` computes it. The file may be a member's backend (a
/// stopped member's `member/snap/db`, or a copy), etcd's bbolt backend or
/// a snapshot of it, or one of our older image snapshots (etcd's bbolt
/// files and images are restored into a temporary backend first).
pub fn hash_kv(path: &Path, rev: i64) -> Result<mvcc::KvHash> {
    require_file(path)?;
    let mut file = SnapshotFile::open(path)?;
    match file.format() {
        Format::Backend => {
            drop(file);
            let store = open_backend(path)?;
            Ok(store.hash_kv_v3_6(rev)?)
        }
        Format::Image => {
            let scratch = tempfile::tempdir().context("create a temporary directory")?;
            let store =
                crate::snapshot_file::restore_backend(&mut file, &scratch.path().join("db"))?;
            Ok(store.hash_kv_v3_6(rev)?)
        }
        Format::Bbolt => {
            let db = file.bbolt()?;
            let scratch = tempfile::tempdir().context("create a temporary directory")?;
            let store = mvcc::Store::open(&scratch.path().join("db"), Default::default())
                .context("open a temporary backend")?;
            crate::snapshot_file::restore_bbolt(&db, &store)
                .with_context(|| format!("read the bbolt file {}", path.display()))?;
            Ok(store.hash_kv_v3_6(rev)?)
        }
        Format::Unknown => Err(file.unsupported()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_created_where_no_backend_is() {
        let dir = tempfile::tempdir().unwrap();
        let err = defrag(dir.path()).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!(
                "open {}: no such file or directory",
                backend_path(dir.path()).display()
            )
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let missing = dir.path().join("db");
        let err = hash_kv(&missing, 0).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!("open {}: no such file or directory", missing.display())
        );
        assert!(!missing.exists());
    }

    #[test]
    fn a_locked_member_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = backend_path(dir.path());
        drop(mvcc::Store::open(&db, mvcc::StoreOptions::default()).unwrap());
        let held = lock_member(dir.path()).unwrap();
        let before = std::fs::read(&db).unwrap();
        let err = defrag(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("is in use by another etcd process"));
        assert_eq!(std::fs::read(&db).unwrap(), before);
        drop(held);

        // A backend open in another store (redb's lock) is refused too.
        let open = mvcc::Store::open(&db, mvcc::StoreOptions::default()).unwrap();
        let err = hash_kv(&db, 0).unwrap_err();
        assert!(
            format!("{err:#}").contains("is in use by another process"),
            "{err:#}"
        );
        drop(open);
        assert!(hash_kv(&db, 0).is_ok());
    }
}
