//! Whose is a data dir? The one check every entry point that opens a data
//! dir (`etcd`, each `etcdutl` command) runs before it writes, renames,
//! locks or creates anything there.
//!
//! ```text
//!  <data-dir>/member/wal/*.wal      our segment header ("ERSW", version) | etcd's first
//!  (or --wal-dir)                   record (length, walpb.Record{type: crc})
//!  <data-dir>/member/snap/*.snap    "ERSS", version | snappb.Snapshot (protobuf, crc first)
//!  <data-dir>/member/snap/db        redb's magic (+ our schema version) | bbolt's meta magic
//!  <data-dir>/member/snap/*.snap.db our image | bbolt (a snapshot etcd received)
//! ```
//!
//! Each file is identified by its first bytes only. A dir is ours when no
//! file says otherwise, etcd's when every file that tells is etcd's; a file
//! of a newer build of ours, a mix of both, or a file nobody wrote gets an
//! error naming the file, and the caller stops with the dir untouched.
//! All-zero heads (a preallocated segment cut short by a crash) say nothing.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// What a data dir holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// No member dir and no WAL: a new member starts here.
    Fresh,
    /// Our own files (a restart).
    Ours,
    /// A stopped etcd member's files; `evidence` names one that proves it.
    Etcd { evidence: PathBuf },
}

/// Whose one file is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Owner {
    Ours,
    /// Ours, by a newer build: what it is and the version found.
    NewerOurs(String),
    Etcd,
    /// Nothing tells (all zeros, empty).
    Silent,
    Unknown,
}

/// Bytes read from the head of each file.
const HEAD_BYTES: usize = 64;

/// Inspects the data dir (`wal_dir`: `--wal-dir` if given). Reads only.
pub fn inspect(data_dir: &Path, wal_dir: Option<&Path>) -> Result<Kind> {
    let member = data_dir.join("member");
    let wal = wal_dir.map_or_else(|| member.join("wal"), Path::to_path_buf);
    let snap = member.join("snap");
    if !member.exists() && !wal.exists() {
        return Ok(Kind::Fresh);
    }
    let mut files: Vec<(PathBuf, Owner)> = Vec::new();
    for path in list(&wal)? {
        if has_suffix(&path, ".wal") {
            let head = read_head(&path)?;
            files.push((path, segment_owner(&head)));
        }
    }
    for path in list(&snap)? {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let head = || read_head(&path);
        let owner = match name.as_deref() {
            Some("db") => backend_owner(&path, &head()?)?,
            Some(n) if n.ends_with(".snap.db") => backend_owner(&path, &head()?)?,
            Some(n) if n.ends_with(".snap") => snap_owner(&head()?),
            _ => continue,
        };
        files.push((path, owner));
    }
    verdict(files, &member, &wal)
}

fn verdict(files: Vec<(PathBuf, Owner)>, member: &Path, wal: &Path) -> Result<Kind> {
    let mut ours = None;
    let mut etcd = None;
    for (path, owner) in files {
        match owner {
            Owner::Ours => ours = ours.or(Some(path)),
            Owner::Etcd => etcd = etcd.or(Some(path)),
            Owner::Silent => {}
            Owner::NewerOurs(what) => bail!(
                "{} was written by a newer etcd-rs ({what}); this build cannot read it, \
                 and leaves the data dir as it is",
                path.display()
            ),
            Owner::Unknown => bail!(
                "{} is neither an etcd-rs nor an etcd file (unrecognised first bytes); \
                 leaving the data dir as it is",
                path.display()
            ),
        }
    }
    match (ours, etcd) {
        (Some(ours), Some(etcd)) => bail!(
            "the data dir mixes etcd-rs files ({}) and etcd files ({}); leaving it as it is",
            ours.display(),
            etcd.display()
        ),
        (None, Some(evidence)) => Ok(Kind::Etcd { evidence }),
        (Some(_), None) => Ok(Kind::Ours),
        (None, None) if member.exists() || wal.exists() => Ok(Kind::Ours),
        (None, None) => Ok(Kind::Fresh),
    }
}

fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

fn has_suffix(path: &Path, suffix: &str) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with(suffix))
}

fn read_head(path: &Path) -> Result<Vec<u8>> {
    let mut head = Vec::with_capacity(HEAD_BYTES);
    fs::File::open(path)
        .and_then(|f| f.take(HEAD_BYTES as u64).read_to_end(&mut head))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(head)
}

fn silent(head: &[u8]) -> bool {
    head.iter().all(|b| *b == 0)
}

fn segment_owner(head: &[u8]) -> Owner {
    match wal::identify_segment(head) {
        wal::Identity::Ours => Owner::Ours,
        wal::Identity::NewerOurs(v) => Owner::NewerOurs(format!("WAL format version {v}")),
        wal::Identity::Foreign if silent(head) => Owner::Silent,
        wal::Identity::Foreign if etcdfmt::wal::looks_like_etcd_wal(head) => Owner::Etcd,
        wal::Identity::Foreign => Owner::Unknown,
    }
}

fn snap_owner(head: &[u8]) -> Owner {
    match wal::identify_snapshot(head) {
        wal::Identity::Ours => Owner::Ours,
        wal::Identity::NewerOurs(v) => Owner::NewerOurs(format!("snapshot format version {v}")),
        wal::Identity::Foreign if head.is_empty() => Owner::Silent,
        // snappb.Snapshot: field 1 (crc, varint) is always written first.
        wal::Identity::Foreign if head.first() == Some(&0x08) => Owner::Etcd,
        wal::Identity::Foreign => Owner::Unknown,
    }
}

/// A backend file or a received snapshot (`*.snap.db`): the one place
/// that tells file formats apart decides.
fn backend_owner(path: &Path, head: &[u8]) -> Result<Owner> {
    use crate::snapshot_file::{detect_format, Format};
    Ok(match detect_format(head) {
        Format::Bbolt => Owner::Etcd,
        Format::Image => Owner::Ours,
        Format::Backend => backend_version(path),
        Format::Unknown if silent(head) => Owner::Silent,
        Format::Unknown => Owner::Unknown,
    })
}

/// Our backend file: ours, unless its schema is a newer build's. A backend
/// that needs repair (a crash) cannot be opened read-only; it is ours, and
/// opening it for real repairs it.
fn backend_version(path: &Path) -> Owner {
    let Ok(source) = mvcc::ImageSource::open_file(path) else {
        return Owner::Ours;
    };
    match source.schema_version() {
        Ok((Some(v), false)) => Owner::NewerOurs(format!("backend schema version {v}")),
        _ => Owner::Ours,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, bytes: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    /// An etcd WAL, as etcdfmt writes it for etcd.
    fn etcd_wal(dir: &Path) {
        let meta = etcdfmt::raftpb::Metadata {
            node_id: 1,
            cluster_id: 2,
        };
        let hard_state = etcdfmt::raftpb::HardState {
            term: 1,
            vote: 1,
            commit: 0,
        };
        etcdfmt::wal::write_dir(dir, &meta, Default::default(), &hard_state, &[]).unwrap();
    }

    fn bbolt_head() -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[16..20].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
        b
    }

    #[test]
    fn fresh_ours_etcd_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(inspect(d, None).unwrap(), Kind::Fresh);

        std::fs::create_dir_all(d.join("member")).unwrap();
        etcd_wal(&d.join("member/wal"));
        write(&d.join("member/snap/db"), &bbolt_head());
        write(
            &d.join("member/snap/0000000000000002-0000000000000064.snap"),
            b"\x08\x95\x9a\x02\x12",
        );
        assert!(matches!(inspect(d, None).unwrap(), Kind::Etcd { .. }));

        write(
            &d.join("member/snap/0000000000000003-0000000000000064.snap"),
            b"ERSS\x01\0\0\0",
        );
        let mixed = inspect(d, None).unwrap_err().to_string();
        assert!(mixed.contains("mixes"), "{mixed}");

        write(
            &d.join("member/snap/0000000000000003-0000000000000064.snap"),
            b"ERSS\x07\0\0\0",
        );
        let newer = inspect(d, None).unwrap_err().to_string();
        assert!(
            newer.contains("newer etcd-rs (snapshot format version 7)"),
            "{newer}"
        );

        write(
            &d.join("member/snap/0000000000000003-0000000000000064.snap"),
            b"garbage!",
        );
        let unknown = inspect(d, None).unwrap_err().to_string();
        assert!(unknown.contains("neither"), "{unknown}");
    }
}
