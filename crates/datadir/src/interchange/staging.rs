//! Converting a member dir in place without ever leaving a half-converted
//! one that starts: the new dir is built beside the old one and swapped in
//! by renames, and a crash at any point is finished or undone at the next
//! start.
//!
//! ```text
//!  <data-dir>/member                  the dir being converted (etcd's or ours)
//!  <data-dir>/member.converting/      the new dir, built and synced here
//!            CONVERTED                written last: the new dir is whole; names the
//!                                     directory the old one is kept under
//!  1. rename member → <kept>          (member.etcd-original or member.etcd-rs-original)
//!  2. rename member.converting → member
//! ```
//!
//! [`resume`] reads these states at start: a `member.converting` without
//! its marker is a conversion cut short (removed: `member` is untouched);
//! with the marker, the renames that did not happen are done. So after a
//! crash there is either the untouched original, or the finished
//! conversion with the original kept beside it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The staging dir's name, beside `member`.
pub const STAGING_DIR: &str = "member.converting";
/// Written last into the staging dir: its content is the kept dir's name.
const MARKER_FILE: &str = "CONVERTED";

/// A conversion being built.
pub struct Stage {
    data_dir: PathBuf,
    kept: String,
}

impl Stage {
    /// Starts a conversion of `<data_dir>/member`, which will be kept as
    /// `<data_dir>/<kept>`; refuses if something is already there.
    pub fn begin(data_dir: &Path, kept: &str) -> Result<Stage> {
        let kept_path = data_dir.join(kept);
        if kept_path.exists() {
            bail!(
                "{} exists (kept by an earlier conversion?): move it away first",
                kept_path.display()
            );
        }
        let stage = Stage {
            data_dir: data_dir.to_path_buf(),
            kept: kept.to_string(),
        };
        let dir = stage.dir();
        if dir.exists() {
            fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove the leftover {}", dir.display()))?;
        }
        fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(stage)
    }

    /// Where the new member dir is built.
    pub fn dir(&self) -> PathBuf {
        self.data_dir.join(STAGING_DIR)
    }

    /// Where the old member dir will be kept.
    pub fn kept_dir(&self) -> PathBuf {
        self.data_dir.join(&self.kept)
    }

    /// Marks the new dir whole (everything in it already synced by its
    /// writers) and swaps it in.
    pub fn commit(self) -> Result<()> {
        let dir = self.dir();
        sync_tree(&dir)?;
        let marker = dir.join(MARKER_FILE);
        write_synced(&marker, self.kept.as_bytes())?;
        sync_dir(&dir)?;
        sync_dir(&self.data_dir)?;
        swap(&self.data_dir, &self.kept)
    }
}

/// Finishes or undoes a conversion a crash interrupted; does nothing when
/// none was under way. Returns true when it finished one.
pub fn resume(data_dir: &Path) -> Result<bool> {
    let dir = data_dir.join(STAGING_DIR);
    if !dir.is_dir() {
        return Ok(false);
    }
    match fs::read_to_string(dir.join(MARKER_FILE)) {
        Ok(kept) => {
            let kept = kept.trim().to_string();
            if kept.is_empty() || kept.contains('/') {
                bail!("{}: the conversion marker is damaged", dir.display());
            }
            tracing::warn!(
                data_dir = %data_dir.display(),
                kept = %data_dir.join(&kept).display(),
                "finishing a data dir conversion a crash interrupted"
            );
            swap(data_dir, &kept)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(
                dir = %dir.display(),
                "removing a data dir conversion a crash cut short (the original is untouched)"
            );
            fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
            sync_dir(data_dir)?;
            Ok(false)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
    }
}

/// The two renames, each made durable; either may already be done.
fn swap(data_dir: &Path, kept: &str) -> Result<()> {
    let member = data_dir.join("member");
    let kept_path = data_dir.join(kept);
    let staged = data_dir.join(STAGING_DIR);
    if member.exists() {
        if kept_path.exists() {
            bail!(
                "cannot keep {} as {}: that exists already",
                member.display(),
                kept_path.display()
            );
        }
        fs::rename(&member, &kept_path).with_context(|| {
            format!(
                "cannot rename {} to {}",
                member.display(),
                kept_path.display()
            )
        })?;
        sync_dir(data_dir)?;
    }
    fs::rename(&staged, &member)
        .with_context(|| format!("cannot rename {} to {}", staged.display(), member.display()))?;
    fs::remove_file(member.join(MARKER_FILE))
        .with_context(|| format!("cannot remove the marker in {}", member.display()))?;
    sync_dir(&member)?;
    sync_dir(data_dir)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f =
        fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// Syncs every file and directory below `dir` (the writers synced their
/// files; this makes the directory entries durable too).
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            sync_tree(&path)?;
        } else {
            fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot sync {}", path.display()))?;
        }
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        fs::create_dir_all(d.join("member")).unwrap();
        fs::write(d.join("member/old"), b"old").unwrap();
        (dir, d)
    }

    fn staged(d: &Path) -> Stage {
        let stage = Stage::begin(d, "member.kept").unwrap();
        fs::write(stage.dir().join("new"), b"new").unwrap();
        stage
    }

    #[test]
    fn commit_swaps_and_keeps_the_original() {
        let (_t, d) = setup();
        staged(&d).commit().unwrap();
        assert_eq!(fs::read(d.join("member/new")).unwrap(), b"new");
        assert_eq!(fs::read(d.join("member.kept/old")).unwrap(), b"old");
        assert!(!d.join(STAGING_DIR).exists());
        assert!(!d.join("member").join(MARKER_FILE).exists());
        assert!(!resume(&d).unwrap());
    }

    #[test]
    fn a_conversion_cut_short_is_removed() {
        let (_t, d) = setup();
        drop(staged(&d));
        assert!(!resume(&d).unwrap());
        assert!(!d.join(STAGING_DIR).exists());
        assert_eq!(fs::read(d.join("member/old")).unwrap(), b"old");
    }

    #[test]
    fn a_whole_conversion_is_finished_after_either_rename() {
        for renamed_first in [false, true] {
            let (_t, d) = setup();
            let stage = staged(&d);
            fs::write(stage.dir().join(MARKER_FILE), b"member.kept").unwrap();
            if renamed_first {
                fs::rename(d.join("member"), d.join("member.kept")).unwrap();
            }
            assert!(resume(&d).unwrap());
            assert_eq!(fs::read(d.join("member/new")).unwrap(), b"new");
            assert_eq!(fs::read(d.join("member.kept/old")).unwrap(), b"old");
        }
    }

    #[test]
    fn a_kept_dir_in_the_way_is_refused() {
        let (_t, d) = setup();
        fs::create_dir(d.join("member.kept")).unwrap();
        assert!(Stage::begin(&d, "member.kept").is_err());
        assert_eq!(fs::read(d.join("member/old")).unwrap(), b"old");
    }
}
