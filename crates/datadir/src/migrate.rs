//! `etcdutl migrate`: moves a stopped member's storage version to a target
//! version, with etcd 3.6's checks, errors and log lines
//! (`etcdutl/etcdutl/migrate_command.go`, `storage/schema`).
//!
//! ```text
//!  target "X.Y" ── format, go-semver, ≥ 3.5 ──▶ (bad: exit 128)
//!  data dir ── member/lock free ── a conversion a crash cut short: undone,
//!              or finished if it was whole (staging::resume)
//!          ── member/snap/db exists, ours (an etcd dir is refused), member/lock
//!          ── WAL after the newest snapshot ──▶ the lowest version able to replay it
//!  target 3.5 ── interchange::to_etcd: the dir becomes etcd 3.5's files
//!              (original kept as member.etcd-rs-original); --force does not apply
//!  target 3.6 ──
//!  backend ── detect current (storage_version.rs)
//!     current == target        "storage version up-to-date"
//!     plan current → target    one step per minor, 3.5 ⇄ 3.6 only;
//!                              a downgrade below what the WAL needs is refused
//!     plan fails, --force      record the target anyway (cleared below 3.6)
//!  one durable backend commit
//! ```
//!
//! Above 3.5, what it changes in our format is only the storage version
//! record: the backend's layout is one for every version (see
//! `storage_version.rs`). At 3.5 it writes etcd's own files (`to_etcd.rs`):
//! the way back to the real etcd 3.5, after a downgrade to 3.5.

use std::path::{Path, PathBuf};

use anyhow::anyhow;

use crate::interchange::to_etcd;
use crate::offline;
use crate::storage_version::{self, record_for, V3_5, V3_6};
use crate::version::MajorMinor;

/// The command's flags.
#[derive(Clone, Debug)]
pub struct MigrateOptions {
    pub data_dir: PathBuf,
    /// `X.Y`, as given.
    pub target_version: String,
    pub force: bool,
}

/// A failure, split as etcd's command splits them by exit code.
#[derive(Debug)]
pub enum MigrateError {
    /// A bad target version or unreadable raft log (cobrautl's ExitBadArgs).
    BadArgs(anyhow::Error),
    /// Anything else (ExitError).
    Failed(anyhow::Error),
}

/// What a successful run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Migrated {
    /// The storage was at the target already.
    UpToDate(MajorMinor),
    /// The storage moved through these versions.
    Steps(Vec<MajorMinor>),
    /// No plan led to the target; it was recorded anyway (`--force`).
    Forced(MajorMinor),
    /// The member dir was converted into etcd 3.5's files.
    ToEtcd(Box<to_etcd::Converted>),
    /// An interrupted conversion into etcd's files was finished.
    Finished,
}

/// etcd's checks of `--target-version`, in its order and words.
pub fn parse_target(target: &str) -> Result<MajorMinor, String> {
    if target.matches('.').count() != 1 {
        return Err(format!(
            "wrong target version format, expected \"X.Y\", got {target:?}"
        ));
    }
    let full = format!("{target}.0");
    let version = go_semver(&full).map_err(|e| format!("failed to parse target version: {e}"))?;
    if version < V3_5 {
        return Err(format!(
            "target version \"{}\" not supported. Minimal \"3.5\"",
            version.short()
        ));
    }
    Ok(version)
}

/// go-semver's `NewVersion` with its error texts, for `X.Y.0` (one more
/// dot than the target's): pre-release and metadata are split off first,
/// then exactly three base-10 integers must remain.
fn go_semver(version: &str) -> Result<MajorMinor, String> {
    let (rest, _metadata) = version.split_once('+').unwrap_or((version, ""));
    let (core, _pre_release) = rest.split_once('-').unwrap_or((rest, ""));
    let parts: Vec<&str> = core.splitn(3, '.').collect();
    if parts.len() != 3 {
        return Err(format!("{core} is not in dotted-tri format"));
    }
    let mut numbers = [0i64; 3];
    for (slot, part) in numbers.iter_mut().zip(&parts) {
        *slot = go_parse_int(part)?;
    }
    Ok(MajorMinor {
        major: numbers[0],
        minor: numbers[1],
    })
}

/// Go's `strconv.ParseInt(s, 10, 64)` and its error texts.
pub fn go_parse_int(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.ParseInt: parsing {s:?}: invalid syntax"));
    }
    s.strip_prefix('+')
        .unwrap_or(s)
        .parse::<i64>()
        .map_err(|_| format!("strconv.ParseInt: parsing {s:?}: value out of range"))
}

/// Runs `etcdutl migrate` on a stopped member.
pub fn migrate(opts: &MigrateOptions) -> Result<Migrated, MigrateError> {
    let target =
        parse_target(&opts.target_version).map_err(|e| MigrateError::BadArgs(anyhow!(e)))?;
    // A conversion a crash interrupted is finished or undone first, as the
    // server does at start (never under a running member's feet).
    refuse_if_running(&opts.data_dir).map_err(MigrateError::Failed)?;
    let finished = crate::interchange::staging::resume(&opts.data_dir).map_err(|e| {
        MigrateError::Failed(e.context("cannot finish or undo an interrupted conversion"))
    })?;
    if finished && target <= V3_5 && opts.data_dir.join(to_etcd::KEPT_DIR).is_dir() {
        // The crash came after the new dir was whole: it is in place now.
        tracing::info!(
            data_dir = %opts.data_dir.display(),
            original = %opts.data_dir.join(to_etcd::KEPT_DIR).display(),
            "finished the conversion into etcd's files an earlier migrate began"
        );
        return Ok(Migrated::Finished);
    }
    let db = offline::backend_path(&opts.data_dir);
    if let Err(e) = std::fs::metadata(&db) {
        let e = crate::snapshot_file::go_io_error("open", &db, &e);
        return Err(MigrateError::Failed(e));
    }
    let kept = opts.data_dir.join(to_etcd::KEPT_DIR);
    let foreign = if kept.exists() {
        format!(
            "it is already in etcd's format (converted by an earlier migrate; the etcd-rs \
             original is kept as {}): migrating it further is etcd's own etcdutl's job",
            kept.display()
        )
    } else {
        "migrating an etcd data dir is etcd's own etcdutl's job".to_string()
    };
    offline::refuse_foreign(&opts.data_dir, &foreign).map_err(MigrateError::Failed)?;
    // A lock file this run creates (no server ever ran here) goes again.
    let lock_path = opts.data_dir.join("member").join("lock");
    let created = (!lock_path.exists()).then_some(lock_path);
    let _lock = offline::lock_member(&opts.data_dir).map_err(MigrateError::Failed)?;
    let _created = RemoveOnDrop(created);
    let log = read_log(&opts.data_dir)?;
    let wal_version = storage_version::wal_minimal_version(&log.state.entries)
        .map_err(|e| MigrateError::BadArgs(e.context("failed to read wal")))?;
    if target <= V3_5 {
        // etcd 3.5's own files, when etcd 3.6's checks pass (read-only:
        // nothing is written before everything is read and checked).
        let current = detect_read_only(&db)?;
        let planned = if current == target {
            tracing::info!(storage_version = %current.short(), "storage version up-to-date");
            Ok(())
        } else {
            plan(current, target, wal_version).map(|_| ())
        };
        match planned {
            Ok(()) => {
                return to_etcd::convert(&opts.data_dir, target, wal_version, log)
                    .map(|converted| Migrated::ToEtcd(Box::new(converted)))
                    .map_err(MigrateError::Failed)
            }
            Err(e) if !opts.force => {
                if wal_version.is_some_and(|needed| target < needed) {
                    tracing::error!(
                        "this member's log still sets cluster version {}: downgrade the running \
                         cluster first (`etcdctl downgrade enable {}`, or POST \
                         /v3/maintenance/downgrade {{\"action\":\"ENABLE\",\"version\":\"{}\"}}), \
                         wait for cluster version {}.0, stop the members, then migrate",
                        wal_version.map_or_else(String::new, |v| v.short()),
                        target.short(),
                        target.short(),
                        target.short()
                    );
                }
                return Err(MigrateError::Failed(anyhow!(e)));
            }
            // etcd's --force: the storage version record alone, below.
            Err(_) => {}
        }
    }
    let store = offline::open_backend(&db).map_err(MigrateError::Failed)?;

    let current = storage_version::detect(&store).map_err(|e| {
        tracing::error!(
            "failed to detect storage version. Please make sure you are using data dir from etcd v3.5 and older"
        );
        MigrateError::Failed(anyhow!(e))
    })?;
    if current == target {
        tracing::info!(storage_version = %current.short(), "storage version up-to-date");
        return Ok(Migrated::UpToDate(current));
    }
    let (record, migrated) = match plan(current, target, wal_version) {
        Ok(steps) => {
            for step in &steps {
                tracing::info!(new_storage_version = %step, "updated storage version");
            }
            (record_for(target), Migrated::Steps(steps))
        }
        Err(e) if !opts.force => return Err(MigrateError::Failed(anyhow!(e))),
        Err(e) => {
            tracing::info!(error = %e, "normal migrate failed, trying with force");
            if target < V3_6 {
                tracing::warn!("forcefully cleared storage version");
            } else {
                tracing::warn!(storage_version = %target.short(), "forcefully set storage version");
            }
            (record_for(target), Migrated::Forced(target))
        }
    };
    let commit = || -> mvcc::Result<()> {
        let mut batch = store.write_batch()?;
        batch.set_storage_version(record.as_deref());
        batch.commit(true)
    };
    commit().map_err(|e| MigrateError::Failed(anyhow!(e).context("record the storage version")))?;
    Ok(migrated)
}

/// etcd's `schema.Migrate` after detection: the plan, and for a downgrade
/// the check that the WAL needs no more than the target.
fn plan(
    current: MajorMinor,
    target: MajorMinor,
    wal_version: Option<MajorMinor>,
) -> Result<Vec<MajorMinor>, String> {
    let steps = storage_version::plan(current, target)
        .map_err(|e| format!("cannot create migration plan: {e}"))?;
    if target < current {
        if let Some(needed) = wal_version.filter(|&needed| target < needed) {
            return Err(format!(
                "cannot downgrade storage, WAL contains newer entries, as the target version \
                 ({target}) is lower than the version ({needed}) detected from WAL logs"
            ));
        }
    }
    Ok(steps)
}

/// Removes a file when dropped (if it is still there).
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// [`storage_version::detect`] of a backend file opened read-only.
fn detect_read_only(db: &Path) -> Result<MajorMinor, MigrateError> {
    let failed = |e: anyhow::Error| MigrateError::Failed(e);
    let source = mvcc::ImageSource::open_file(db).map_err(|e| {
        let hint = if e.to_string().contains("repair") {
            " (the backend was not closed cleanly: a crash, or a copy of a running member; \
             start etcd-rs on this dir once and stop it, then migrate)"
        } else {
            ""
        };
        failed(anyhow!(e).context(format!("cannot read {}{hint}", db.display())))
    })?;
    let (mut recorded, mut term) = (None, 0u64);
    source
        .for_each_row_of(mvcc::Table::Meta, &mut |_, key, value| {
            if key == etcdfmt::schema::META_STORAGE_VERSION.as_bytes() {
                recorded = Some(String::from_utf8_lossy(value).into_owned());
            } else if key == etcdfmt::schema::META_TERM.as_bytes() {
                term = value.try_into().map(u64::from_be_bytes).unwrap_or(0);
            }
            Ok(())
        })
        .map_err(|e| failed(anyhow!(e).context(format!("cannot read {}", db.display()))))?;
    storage_version::detect_from(recorded, term).map_err(|e| {
        tracing::error!(
            "failed to detect storage version. Please make sure you are using data dir from etcd v3.5 and older"
        );
        failed(anyhow!(e))
    })
}

/// A stopped member's raft log: its newest snapshot the WAL records (None:
/// none yet) and the WAL from there on.
pub struct Log {
    pub snapshot: Option<raft::eraftpb::Snapshot>,
    pub state: wal::ReadState,
}

/// Refuses a member a server (or another etcdutl) runs on, by its lock,
/// without creating anything.
fn refuse_if_running(data_dir: &Path) -> anyhow::Result<()> {
    let path = data_dir.join("member").join("lock");
    let Ok(file) = std::fs::File::open(&path) else {
        return Ok(());
    };
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(anyhow!(
            "data directory {} is in use by another etcd process (cannot lock {}): stop it first",
            data_dir.join("member").display(),
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(anyhow!(e).context(format!("cannot lock {}", path.display())))
        }
    }
}

/// The member's log from its newest snapshot on (etcd's `ReadWALVersion`
/// reads the same), read without changing anything.
pub(crate) fn read_log(data_dir: &Path) -> Result<Log, MigrateError> {
    let member = data_dir.join("member");
    let bad =
        |context: &str, e: anyhow::Error| MigrateError::BadArgs(e.context(context.to_string()));
    let snapshots = wal::Snapshotter::for_reading(&member.join("snap"))
        .intact_newest_first()
        .map_err(|e| bad("failed to get the lastest snapshot", e.into()))?;
    let wal_dir = member.join("wal");
    let mut positions: Vec<wal::WalSnapshot> = snapshots
        .iter()
        .map(|s| wal::WalSnapshot {
            index: s.get_metadata().index,
            term: s.get_metadata().term,
        })
        .collect();
    positions.push(wal::WalSnapshot::default());
    let mut state = None;
    for (i, snap) in positions.into_iter().enumerate() {
        match wal::Wal::read(&wal_dir, snap) {
            Ok(read) => {
                state = Some((snapshots.get(i).cloned(), read));
                break;
            }
            // A snapshot file the WAL does not record (the server sets
            // those aside at start): try an older one.
            Err(wal::Error::SnapshotNotFound { .. }) if snap.index > 0 => continue,
            Err(e) => return Err(bad("failed to open wal", e.into())),
        }
    }
    let Some((snapshot, state)) = state else {
        return Err(bad(
            "failed to open wal",
            anyhow!("no snapshot recorded in {}", wal_dir.display()),
        ));
    };
    Ok(Log { snapshot, state })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_versions_are_checked_as_etcd_checks_them() {
        let cases = [
            (
                "abc",
                r#"wrong target version format, expected "X.Y", got "abc""#,
            ),
            (
                "3",
                r#"wrong target version format, expected "X.Y", got "3""#,
            ),
            (
                "3.6.0",
                r#"wrong target version format, expected "X.Y", got "3.6.0""#,
            ),
            ("", r#"wrong target version format, expected "X.Y", got """#),
            (
                "3.a",
                r#"failed to parse target version: strconv.ParseInt: parsing "a": invalid syntax"#,
            ),
            (
                ".5",
                r#"failed to parse target version: strconv.ParseInt: parsing "": invalid syntax"#,
            ),
            (
                "3.5-rc",
                "failed to parse target version: 3.5 is not in dotted-tri format",
            ),
            (
                "3.99999999999999999999",
                r#"failed to parse target version: strconv.ParseInt: parsing "99999999999999999999": value out of range"#,
            ),
            (
                "3.4",
                r#"target version "3.4" not supported. Minimal "3.5""#,
            ),
            (
                "2.9",
                r#"target version "2.9" not supported. Minimal "3.5""#,
            ),
        ];
        for (target, want) in cases {
            assert_eq!(parse_target(target), Err(want.to_string()), "{target:?}");
        }
        assert_eq!(parse_target("3.5"), Ok(V3_5));
        assert_eq!(parse_target("3.6"), Ok(V3_6));
        assert_eq!(parse_target("03.6"), Ok(V3_6));
        assert_eq!(
            parse_target("3.+6"),
            Err("failed to parse target version: 3. is not in dotted-tri format".to_string())
        );
        assert_eq!(parse_target("3.7"), Ok(MajorMinor { major: 3, minor: 7 }));
    }

    #[test]
    fn downgrades_respect_the_wal() {
        let v = |minor| MajorMinor { major: 3, minor };
        assert_eq!(plan(v(5), v(6), Some(v(6))), Ok(vec![v(6)]));
        assert_eq!(plan(v(6), v(5), None), Ok(vec![v(5)]));
        assert_eq!(plan(v(6), v(5), Some(v(5))), Ok(vec![v(5)]));
        assert_eq!(
            plan(v(6), v(5), Some(v(6))),
            Err(
                "cannot downgrade storage, WAL contains newer entries, as the target version \
                 (3.5.0) is lower than the version (3.6.0) detected from WAL logs"
                    .to_string()
            )
        );
        assert_eq!(
            plan(v(6), v(7), None),
            Err("cannot create migration plan: version \"3.7.0\" is not supported".to_string())
        );
    }
}
