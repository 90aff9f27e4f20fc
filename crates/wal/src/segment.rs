//! Segment file names, directory listing and the file-system steps that make writes
//! durable (preallocation, directory fsync, locking).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::{Error, Result};

pub(crate) const WAL_SUFFIX: &str = ".wal";
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// A segment as named on disk: `{seq:016x}-{first_index:016x}.wal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SegmentName {
    pub seq: u64,
    pub first_index: u64,
}

impl SegmentName {
    pub(crate) fn file_name(&self) -> String {
        format!("{:016x}-{:016x}{WAL_SUFFIX}", self.seq, self.first_index)
    }

    /// Parses a segment file name; anything else (including `.tmp` files) is `None`.
    pub(crate) fn parse(name: &str) -> Option<SegmentName> {
        let stem = name.strip_suffix(WAL_SUFFIX)?;
        let (seq, first) = stem.split_once('-')?;
        if seq.len() != 16 || first.len() != 16 {
            return None;
        }
        Some(SegmentName {
            seq: u64::from_str_radix(seq, 16).ok()?,
            first_index: u64::from_str_radix(first, 16).ok()?,
        })
    }
}

/// A segment of an open log.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub name: SegmentName,
    pub path: PathBuf,
}

/// The file names in `dir`, skipping names that are not UTF-8.
pub(crate) fn file_names(dir: &Path) -> Result<Vec<String>> {
    let entries = fs::read_dir(dir).context(|| format!("list {}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.context(|| format!("list {}", dir.display()))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// The segments in `dir`, ordered by sequence number.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<Segment>> {
    let mut segments: Vec<Segment> = file_names(dir)?
        .into_iter()
        .filter_map(|n| {
            let name = SegmentName::parse(&n);
            if name.is_none() && n.ends_with(WAL_SUFFIX) {
                tracing::warn!(file = %n, dir = %dir.display(), "ignoring a .wal file with an unexpected name");
            }
            name.map(|name| Segment {
                name,
                path: dir.join(n),
            })
        })
        .collect();
    segments.sort_by_key(|s| s.name);
    Ok(segments)
}

/// Checks that sequence numbers have no gaps and first indexes never go down.
pub(crate) fn check_sequence(dir: &Path, segments: &[Segment]) -> Result<()> {
    for pair in segments.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.name.seq != a.name.seq + 1 {
            return Err(Error::Corrupt {
                path: dir.to_path_buf(),
                offset: 0,
                reason: format!(
                    "segment sequence gap: {} is followed by {}",
                    a.name.file_name(),
                    b.name.file_name()
                ),
            });
        }
        if b.name.first_index < a.name.first_index {
            return Err(Error::Corrupt {
                path: b.path.clone(),
                offset: 0,
                reason: format!(
                    "segment starts at index {} but the one before it at {}",
                    b.name.first_index, a.name.first_index
                ),
            });
        }
    }
    Ok(())
}

/// Removes `*.wal.tmp` files left by a cut that did not finish. Nothing in them was ever
/// acknowledged: a segment is written to only after it has its final name.
pub(crate) fn remove_stale_tmp(dir: &Path) -> Result<()> {
    let mut removed = false;
    for name in file_names(dir)? {
        if name.ends_with(&format!("{WAL_SUFFIX}{TMP_SUFFIX}")) {
            let path = dir.join(&name);
            tracing::warn!(file = %path.display(), "removing a segment left over from an interrupted cut");
            fs::remove_file(&path).context(|| format!("remove {}", path.display()))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Makes a directory's entries (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .context(|| format!("fsync directory {}", dir.display()))
}

/// Reserves `len` bytes for `file`, so that appends do not change its size and
/// `fdatasync` does not have to write size metadata. Falls back to a sparse extension where
/// the file system cannot preallocate.
pub(crate) fn preallocate(file: &File, len: u64, path: &Path) -> Result<()> {
    match fs4::FileExt::allocate(file, len) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {
            tracing::debug!(file = %path.display(), "preallocation not supported, extending instead");
            let size = file
                .metadata()
                .context(|| format!("stat {}", path.display()))?
                .len();
            if size < len {
                file.set_len(len)
                    .context(|| format!("extend {} to {len} bytes", path.display()))?;
            }
            Ok(())
        }
        Err(e) => Err(Error::Io {
            context: format!("preallocate {len} bytes for {}", path.display()),
            source: e,
        }),
    }
}

/// Opens a segment for reading and writing and takes its exclusive lock.
pub(crate) fn open_locked(path: &Path, create: bool) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(create)
        .open(path)
        .context(|| format!("open {}", path.display()))?;
    lock(&file, path)?;
    Ok(file)
}

fn lock(file: &File, path: &Path) -> Result<()> {
    match fs4::FileExt::try_lock(file) {
        Ok(()) => Ok(()),
        Err(fs4::TryLockError::WouldBlock) => Err(Error::Locked {
            path: path.to_path_buf(),
        }),
        Err(fs4::TryLockError::Error(e)) => Err(Error::Io {
            context: format!("lock {}", path.display()),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let n = SegmentName {
            seq: 1,
            first_index: 0x3e9,
        };
        assert_eq!(n.file_name(), "0000000000000001-00000000000003e9.wal");
        assert_eq!(SegmentName::parse(&n.file_name()), Some(n));
        assert_eq!(
            SegmentName::parse("0000000000000001-00000000000003e9.wal.tmp"),
            None
        );
        assert_eq!(SegmentName::parse("1-2.wal"), None);
        assert_eq!(
            SegmentName::parse("000000000000000g-00000000000003e9.wal"),
            None
        );
    }
}
