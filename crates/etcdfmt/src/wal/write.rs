//! Writing: one complete WAL directory, laid out as etcd's `wal.Create`
//! followed by `SaveSnapshot` and one `Save` lay it out (which is also what
//! `etcdutl snapshot restore` produces).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use prost::Message;

use super::frame::{crc32c_update, encode_frame_len, frame, MAX_RECORD_BYTES};
use super::{
    segment_name, Error, Problem, WalSnapshot, CRC_TYPE, ENTRY_TYPE, METADATA_TYPE, SNAPSHOT_TYPE,
    STATE_TYPE,
};
use crate::raftpb::{Entry, HardState, Metadata, WalRecord, WalSnapshotPb};

/// etcd's `SegmentSizeBytes`: 64 * 1000 * 1000 (decimal).
pub const SEGMENT_SIZE_BYTES: u64 = 64 * 1000 * 1000;

/// Appends framed records to one segment, keeping the CRC chain.
struct Encoder {
    out: BufWriter<File>,
    path: PathBuf,
    crc: u32,
    off: u64,
    buf: Vec<u8>,
}

impl Encoder {
    fn record(&mut self, r#type: i64, data: Option<Vec<u8>>) -> Result<(), Error> {
        if r#type != CRC_TYPE {
            self.crc = crc32c_update(self.crc, data.as_deref().unwrap_or_default());
        }
        let rec = WalRecord {
            r#type,
            crc: self.crc,
            data,
        };
        let body = rec.encode_to_vec();
        let (_, pad) = encode_frame_len(body.len() as u64);
        // The reader's limit: etcd 3.4/3.5 refuse length + padding >= 10 MiB.
        if body.len() as u64 + pad >= MAX_RECORD_BYTES {
            return Err(Error::Wal {
                dir: self.path.clone(),
                problem: Problem::Invalid(format!(
                    "a record of {} bytes is over etcd's 10 MiB read limit",
                    body.len()
                )),
            });
        }
        self.buf.clear();
        frame(&mut self.buf, &body);
        self.out
            .write_all(&self.buf)
            .map_err(|e| Error::io(&self.path, e))?;
        self.off += self.buf.len() as u64;
        Ok(())
    }
}

fn invalid(dir: &Path, why: String) -> Error {
    Error::Wal {
        dir: dir.to_owned(),
        problem: Problem::Invalid(why),
    }
}

/// Checks that etcd's raft will accept the log: entries consecutive from
/// `snapshot.index + 1`, and `snapshot.index <= commit <= last index`
/// (raft panics on restart otherwise).
fn check(
    target: &Path,
    snapshot: &WalSnapshot,
    hard_state: &HardState,
    entries: &[Entry],
) -> Result<(), Error> {
    let mut want = snapshot.index.checked_add(1);
    for e in entries {
        if Some(e.index) != want {
            return Err(invalid(
                target,
                format!(
                    "entry index {} where {} was expected (snapshot index {})",
                    e.index,
                    want.map_or("none".to_owned(), |w| w.to_string()),
                    snapshot.index
                ),
            ));
        }
        want = e.index.checked_add(1);
    }
    let last = entries.last().map_or(snapshot.index, |e| e.index);
    if !hard_state.is_empty() && (hard_state.commit < snapshot.index || hard_state.commit > last) {
        return Err(invalid(
            target,
            format!(
                "commit index {} outside [snapshot index {}, last index {}]",
                hard_state.commit, snapshot.index, last
            ),
        ));
    }
    Ok(())
}

#[cfg(unix)]
fn create_dir_private(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(p)
}

#[cfg(not(unix))]
fn create_dir_private(p: &Path) -> std::io::Result<()> {
    std::fs::create_dir(p)
}

fn create_file_private(p: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(p)
}

/// fsyncs a directory (a no-op where directories cannot be opened).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes a new WAL directory at `target_dir` that etcd 3.4 and 3.5 open at
/// `snapshot`: one segment `0000000000000000-0000000000000000.wal` with
///
/// ```text
/// crc(0) | metadata | snapshot(0,0) | snapshot(index,term[,conf]) | entries... | hard state
/// ```
///
/// exactly as `wal.Create` + `SaveSnapshot` + `Save` (and so `etcdutl
/// snapshot restore`) write it. The second snapshot record is left out when
/// `snapshot` is the zero snapshot, the hard state when it is empty (etcd
/// never writes an empty one).
///
/// Preallocation: the segment is extended to [`SEGMENT_SIZE_BYTES`] with
/// `set_len` (a sparse file of zeros), as `wal.Create` does with fallocate.
/// etcd would also accept a segment cut at its last record (its decoder
/// ends a segment at end of file as at a zero length field, and `ReadAll`
/// in write mode re-zeroes the tail to the file's length whatever it is),
/// but then its next cut would come only after 64 MB of appends past a
/// file of unusual size; matching `Create` keeps the directory
/// indistinguishable from etcd's own. A log longer than 64 MB stays in the
/// one segment (etcd cuts after its next `Save`).
///
/// Atomic: the segment is built in `<target_dir>.tmp` (a leftover one is
/// removed first, as etcd does), fsynced with its directory, renamed to
/// `target_dir`, and the parent directory is fsynced. Refuses when
/// `target_dir` exists.
pub fn write_dir(
    target_dir: &Path,
    meta: &Metadata,
    snapshot: WalSnapshot,
    hard_state: &HardState,
    entries: &[Entry],
) -> Result<(), Error> {
    if target_dir.symlink_metadata().is_ok() {
        return Err(Error::Wal {
            dir: target_dir.to_owned(),
            problem: Problem::TargetExists,
        });
    }
    check(target_dir, &snapshot, hard_state, entries)?;
    let Some(name) = target_dir.file_name() else {
        return Err(invalid(target_dir, "no directory name".to_owned()));
    };
    let mut tmp_name = name.to_owned();
    tmp_name.push(".tmp");
    let tmp = target_dir.with_file_name(tmp_name);
    if tmp.symlink_metadata().is_ok() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    create_dir_private(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let res = fill_tmp(&tmp, meta, &snapshot, hard_state, entries).and_then(|()| {
        std::fs::rename(&tmp, target_dir).map_err(|e| Error::io(target_dir, e))?;
        let parent = match target_dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent)
    });
    if res.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    res
}

fn fill_tmp(
    tmp: &Path,
    meta: &Metadata,
    snapshot: &WalSnapshot,
    hard_state: &HardState,
    entries: &[Entry],
) -> Result<(), Error> {
    let path = tmp.join(segment_name(0, 0));
    let file = create_file_private(&path).map_err(|e| Error::io(&path, e))?;
    let mut enc = Encoder {
        out: BufWriter::with_capacity(256 * 1024, file),
        path: path.clone(),
        crc: 0,
        off: 0,
        buf: Vec::new(),
    };
    enc.record(CRC_TYPE, None)?;
    enc.record(METADATA_TYPE, Some(meta.encode_to_vec()))?;
    let zero = WalSnapshotPb::default();
    enc.record(SNAPSHOT_TYPE, Some(zero.encode_to_vec()))?;
    if snapshot.index != 0 || snapshot.term != 0 {
        let pb = WalSnapshotPb {
            index: snapshot.index,
            term: snapshot.term,
            conf_state: snapshot.conf_state.clone(),
        };
        enc.record(SNAPSHOT_TYPE, Some(pb.encode_to_vec()))?;
    }
    for e in entries {
        enc.record(ENTRY_TYPE, Some(e.encode_to_vec()))?;
    }
    if !hard_state.is_empty() {
        enc.record(STATE_TYPE, Some(hard_state.encode_to_vec()))?;
    }
    let file = enc
        .out
        .into_inner()
        .map_err(|e| Error::io(&path, e.into_error()))?;
    if enc.off < SEGMENT_SIZE_BYTES {
        file.set_len(SEGMENT_SIZE_BYTES)
            .map_err(|e| Error::io(&path, e))?;
    }
    file.sync_all().map_err(|e| Error::io(&path, e))?;
    drop(file);
    sync_dir(tmp)
}
