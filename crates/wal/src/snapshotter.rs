//! Raft snapshot files in `<data-dir>/member/snap`.
//!
//! One file per snapshot, named `{term:016x}-{index:016x}.snap`, so that sorting the names
//! sorts the snapshots. Each file is:
//!
//! ```text
//!  0        4         8              16          20
//!  +--------+---------+--------------+-----------+---------------------------+
//!  | "ERSS" | version | payload len  | crc32     | raft Snapshot (protobuf)  |
//!  |        | u32 LE  | u64 LE       | u32 LE    | payload len bytes         |
//!  +--------+---------+--------------+-----------+---------------------------+
//! ```
//!
//! The crc covers bytes 4..16 and the payload. A file is written under a `.tmp` name,
//! synced and renamed, so a snapshot file with its final name is complete unless the disk
//! damaged it later. A damaged file is renamed to `*.broken` and an older one is used.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use protobuf::Message;
use raft::eraftpb::Snapshot;

use crate::error::IoContext;
use crate::segment::{self, TMP_SUFFIX};
use crate::{Error, Result};

const SNAP_SUFFIX: &str = ".snap";
const BROKEN_SUFFIX: &str = ".broken";
pub(crate) const MAGIC: [u8; 4] = *b"ERSS";
pub(crate) const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 20;

/// Saves and loads raft snapshots in one directory.
#[derive(Debug, Clone)]
pub struct Snapshotter {
    dir: PathBuf,
}

impl Snapshotter {
    /// A snapshotter for `dir`, created if missing. Temporary files left by a save that
    /// was interrupted are removed, so create it once, at startup.
    pub fn new(dir: &Path) -> Snapshotter {
        if let Err(e) = fs::create_dir_all(dir) {
            // Reported again, with context, by the first save or load.
            tracing::warn!(dir = %dir.display(), error = %e, "snap: cannot create the snapshot directory");
        } else if let Ok(names) = segment::file_names(dir) {
            for name in names.iter().filter(|n| n.ends_with(TMP_SUFFIX)) {
                let path = dir.join(name);
                if let Err(e) = fs::remove_file(&path) {
                    tracing::warn!(file = %path.display(), error = %e, "snap: cannot remove a leftover temporary file");
                }
            }
        }
        Snapshotter {
            dir: dir.to_path_buf(),
        }
    }

    /// A snapshotter that only reads `dir`: nothing is created or removed (for offline
    /// tools, see [`Snapshotter::intact_newest_first`]).
    pub fn for_reading(dir: &Path) -> Snapshotter {
        Snapshotter {
            dir: dir.to_path_buf(),
        }
    }

    /// Writes `snapshot` durably. An empty snapshot (index 0) is not saved.
    pub fn save(&self, snapshot: &Snapshot) -> Result<()> {
        let meta = snapshot.get_metadata();
        if meta.index == 0 {
            return Ok(());
        }
        let payload = snapshot.write_to_bytes().map_err(|source| Error::Encode {
            what: "snapshot",
            source,
        })?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        let crc = checksum(&bytes[4..16], &payload);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(&payload);

        fs::create_dir_all(&self.dir).context(|| format!("create {}", self.dir.display()))?;
        let name = snap_name(meta.term, meta.index);
        let path = self.dir.join(&name);
        let tmp_path = self.dir.join(format!("{name}{TMP_SUFFIX}"));
        let written = File::create(&tmp_path)
            .and_then(|mut f| {
                f.write_all(&bytes)?;
                f.sync_all()
            })
            .context(|| format!("write {}", tmp_path.display()));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp_path);
            return Err(e);
        }
        fs::rename(&tmp_path, &path)
            .context(|| format!("rename {} to {}", tmp_path.display(), path.display()))?;
        segment::sync_dir(&self.dir)?;
        tracing::debug!(file = %path.display(), "snap: saved snapshot");
        Ok(())
    }

    /// The newest snapshot that reads back intact, or `None` if there is none. Damaged
    /// files are renamed to `*.broken` and skipped.
    pub fn load_newest(&self) -> Result<Option<Snapshot>> {
        for name in self.snap_names()?.iter().rev() {
            let path = self.dir.join(name);
            match read_snapshot(&path, name) {
                Ok(snapshot) => return Ok(Some(snapshot)),
                Err(Error::SnapshotCorrupt { reason, .. }) => {
                    let broken = self.dir.join(format!("{name}{BROKEN_SUFFIX}"));
                    tracing::warn!(
                        file = %path.display(),
                        reason = %reason,
                        "snap: snapshot file is corrupt; renaming it to {} and trying an older one",
                        broken.display()
                    );
                    fs::rename(&path, &broken)
                        .context(|| format!("rename {} to {}", path.display(), broken.display()))?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The snapshots that read back intact, newest first, leaving damaged files where they
    /// are (for offline tools, which change nothing in a data directory).
    pub fn intact_newest_first(&self) -> Result<Vec<Snapshot>> {
        let mut snapshots = Vec::new();
        for name in self.snap_names()?.iter().rev() {
            match read_snapshot(&self.dir.join(name), name) {
                Ok(snapshot) => snapshots.push(snapshot),
                Err(Error::SnapshotCorrupt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(snapshots)
    }

    /// Deletes all but the newest `keep` snapshot files.
    pub fn purge(&self, keep: usize) -> Result<()> {
        let names = self.snap_names()?;
        let excess = names.len().saturating_sub(keep);
        for name in &names[..excess] {
            let path = self.dir.join(name);
            fs::remove_file(&path).context(|| format!("remove {}", path.display()))?;
            tracing::debug!(file = %path.display(), "snap: purged snapshot");
        }
        if excess > 0 {
            segment::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Names of the snapshot files, oldest first.
    fn snap_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = segment::file_names(&self.dir)?
            .into_iter()
            .filter(|n| parse_snap_name(n).is_some())
            .collect();
        names.sort();
        Ok(names)
    }
}

fn snap_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}{SNAP_SUFFIX}")
}

/// `(term, index)` from a snapshot file name.
fn parse_snap_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SNAP_SUFFIX)?;
    let (term, index) = stem.split_once('-')?;
    if term.len() != 16 || index.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(term, 16).ok()?,
        u64::from_str_radix(index, 16).ok()?,
    ))
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    hasher.update(payload);
    hasher.finalize()
}

fn read_snapshot(path: &Path, name: &str) -> Result<Snapshot> {
    let corrupt = |reason: String| Error::SnapshotCorrupt {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = fs::read(path).context(|| format!("read {}", path.display()))?;
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "{} bytes, shorter than the {HEADER_LEN}-byte header",
            bytes.len()
        )));
    }
    if bytes[0..4] != MAGIC {
        return Err(corrupt(
            "bad magic (not an etcd-rs snapshot file)".to_string(),
        ));
    }
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[4..8]);
    let version = u32::from_le_bytes(word);
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[8..16]);
    let len = u64::from_le_bytes(len);
    let payload = &bytes[HEADER_LEN..];
    if payload.len() as u64 != len {
        return Err(corrupt(format!(
            "header announces {len} payload bytes, the file holds {}",
            payload.len()
        )));
    }
    word.copy_from_slice(&bytes[16..20]);
    if checksum(&bytes[4..16], payload) != u32::from_le_bytes(word) {
        return Err(corrupt("crc mismatch".to_string()));
    }
    let snapshot = Snapshot::parse_from_bytes(payload)
        .map_err(|e| corrupt(format!("undecodable snapshot: {e}")))?;
    let meta = snapshot.get_metadata();
    if parse_snap_name(name) != Some((meta.term, meta.index)) {
        return Err(corrupt(format!(
            "holds the snapshot at term {} index {}, which does not match its name",
            meta.term, meta.index
        )));
    }
    Ok(snapshot)
}
