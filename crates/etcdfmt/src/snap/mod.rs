//! etcd's raft snapshot files (`member/snap/*.snap`) and the v2 store JSON
//! they carry ([`v2store`]).
//!
//! # File layout
//!
//! ```text
//! 000000000000000b-0000000000000191.snap      name: %016x-%016x.snap (term, index)
//! +------------------------------------------------------------------+
//! | snappb.Snapshot                                                  |
//! |   1: crc  (uint32) = CRC-32C (Castagnoli) of `data`, from 0      |
//! |   2: data (bytes)  = raftpb.Snapshot                             |
//! |        1: data     = v2 store JSON (membership, cluster version) |
//! |        2: metadata = { conf_state, index, term }                 |
//! +------------------------------------------------------------------+
//! ```
//!
//! # Invariants
//!
//! - A file is usable when it is non-empty, its `data` is non-empty, its
//!   crc is non-zero and matches, and `data` decodes.
//! - etcd starts from the newest file (names sort by term, then index)
//!   whose (term, index) is one of the WAL's snapshot records
//!   ([`crate::wal::valid_snapshots`]).
//! - Only names ending in `.snap` count: `*.snap.db` (v3 backend snapshots
//!   received from a leader), `*.broken`, `*.tmp` and others are ignored.
//!
//! Differences from etcd, on purpose: a broken file is skipped, never
//! renamed to `.broken`; `db.tmp*` files are left alone. The writer writes
//! `<name>.tmp`, fsyncs, renames and fsyncs the directory (etcd 3.4/3.5
//! write the final name in place), so a crash never leaves a torn `.snap`.

pub mod v2store;

use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::raftpb::{SnapFile, Snapshot};
use crate::wal::{crc32c_update, Error, Problem, WalSnapshot};

/// Name etcd gives the snap file of `(term, index)`.
pub fn snap_file_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}.snap")
}

fn snap_err(path: &Path, problem: Problem) -> Error {
    Error::Snap {
        path: path.to_owned(),
        problem,
    }
}

/// Decodes the bytes of a `.snap` file (`path` only names it in errors).
pub fn decode_snap_file(path: &Path, bytes: &[u8]) -> Result<Snapshot, Error> {
    if bytes.is_empty() {
        return Err(snap_err(path, Problem::EmptySnapshot));
    }
    let file = SnapFile::decode(bytes).map_err(|e| {
        snap_err(
            path,
            Problem::Decode {
                what: "snappb.Snapshot",
                why: e.to_string(),
            },
        )
    })?;
    let data = file.data.unwrap_or_default();
    if data.is_empty() || file.crc == 0 {
        return Err(snap_err(path, Problem::EmptySnapshot));
    }
    if crc32c_update(0, &data) != file.crc {
        return Err(snap_err(path, Problem::CrcMismatch));
    }
    Snapshot::decode(data.as_slice()).map_err(|e| {
        snap_err(
            path,
            Problem::Decode {
                what: "raftpb.Snapshot",
                why: e.to_string(),
            },
        )
    })
}

/// Encodes a raft snapshot as the bytes of a `.snap` file.
pub fn encode_snap_file(snapshot: &Snapshot) -> Vec<u8> {
    let data = snapshot.encode_to_vec();
    SnapFile {
        crc: crc32c_update(0, &data),
        data: Some(data),
    }
    .encode_to_vec()
}

/// Reads and checks one `.snap` file. Never renames anything.
pub fn read_snap_file(path: &Path) -> Result<Snapshot, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_snap_file(path, &bytes)
}

/// The `.snap` file names of `dir`, newest first (reverse name order, as
/// etcd sorts them).
pub fn snap_names(dir: &Path) -> Result<Vec<String>, Error> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut names = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(dir, e))?;
        if let Some(n) = ent.file_name().to_str() {
            if n.ends_with(".snap") {
                names.push(n.to_owned());
            }
        }
    }
    names.sort_unstable_by(|a, b| b.cmp(a));
    Ok(names)
}

/// etcd's `LoadNewestAvailable`: the newest readable snap file whose
/// (term, index) is among `valid` (the WAL's snapshot records), with its
/// path. Unreadable files are skipped (not renamed).
pub fn load_newest_available(
    dir: &Path,
    valid: &[WalSnapshot],
) -> Result<(PathBuf, Snapshot), Error> {
    for name in snap_names(dir)? {
        let path = dir.join(&name);
        let Ok(snap) = read_snap_file(&path) else {
            continue;
        };
        let m = &snap.metadata;
        if valid.iter().any(|w| w.term == m.term && w.index == m.index) {
            return Ok((path, snap));
        }
    }
    Err(snap_err(dir, Problem::NoSnapshot))
}

/// Writes `snapshot` into `dir` under etcd's name (replacing a file of that
/// name): `<name>.tmp`, fsync, rename, fsync of `dir`. Returns the path.
/// Refuses the empty snapshot (index 0), which etcd never writes.
pub fn write_snap_file(dir: &Path, snapshot: &Snapshot) -> Result<PathBuf, Error> {
    let m = &snapshot.metadata;
    let name = snap_file_name(m.term, m.index);
    let path = dir.join(&name);
    if m.index == 0 {
        return Err(snap_err(
            &path,
            Problem::Invalid("snapshot index 0 (etcd never writes an empty snapshot)".into()),
        ));
    }
    let tmp = dir.join(format!("{name}.tmp"));
    let bytes = encode_snap_file(snapshot);
    let res = (|| -> std::io::Result<()> {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o666);
        }
        let mut f = o.open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    crate::wal::sync_dir(dir)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftpb::{ConfState, SnapshotMetadata};

    fn sample() -> Snapshot {
        Snapshot {
            data: Some(b"{\"Root\":{}}".to_vec()),
            metadata: SnapshotMetadata {
                conf_state: ConfState {
                    voters: vec![0x8e9e05c52164694d],
                    ..Default::default()
                },
                index: 0x191,
                term: 0xb,
            },
        }
    }

    #[test]
    fn write_read_and_pick_newest() {
        let d = tempfile::tempdir().unwrap();
        let p = write_snap_file(d.path(), &sample()).unwrap();
        assert_eq!(
            p.file_name().unwrap(),
            "000000000000000b-0000000000000191.snap"
        );
        assert_eq!(read_snap_file(&p).unwrap(), sample());
        let mut newer = sample();
        newer.metadata.index = 0x300;
        write_snap_file(d.path(), &newer).unwrap();
        std::fs::write(d.path().join("0000000000000300.snap.db"), b"x").unwrap();
        std::fs::write(d.path().join("ffff-ffff.snap.broken"), b"x").unwrap();
        // A broken newest file is skipped and left in place.
        std::fs::write(d.path().join("000000000000000c-0000000000000001.snap"), b"").unwrap();
        let names = snap_names(d.path()).unwrap();
        assert_eq!(names.len(), 3);
        assert_eq!(names[0], "000000000000000c-0000000000000001.snap");
        let w = |index| WalSnapshot {
            index,
            term: 0xb,
            conf_state: None,
        };
        let (_, s) = load_newest_available(d.path(), &[w(0x191), w(0x300)]).unwrap();
        assert_eq!(s.metadata.index, 0x300);
        let (_, s) = load_newest_available(d.path(), &[w(0x191)]).unwrap();
        assert_eq!(s.metadata.index, 0x191);
        let e = load_newest_available(d.path(), &[w(5)]).unwrap_err();
        assert_eq!(e.problem(), Some(&Problem::NoSnapshot));
        assert!(d
            .path()
            .join("000000000000000c-0000000000000001.snap")
            .exists());
    }

    #[test]
    fn corrupt_files_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let p = write_snap_file(d.path(), &sample()).unwrap();
        let good = std::fs::read(&p).unwrap();
        let e = decode_snap_file(&p, &[]).unwrap_err();
        assert_eq!(e.problem(), Some(&Problem::EmptySnapshot));
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let e = decode_snap_file(&p, &bad).unwrap_err();
        assert_eq!(e.problem(), Some(&Problem::CrcMismatch));
        assert!(e.to_string().starts_with("etcd snap "), "{e}");
        // Every truncation: an error or a valid snapshot, never a panic.
        for n in 0..good.len() {
            let _ = decode_snap_file(&p, &good[..n]);
        }
    }
}
