//! Reading: a per-segment record decoder, and etcd's `ReadAll` and
//! `ValidSnapshotEntries` on top of it. Read-only: nothing is written,
//! renamed, locked or repaired.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use prost::Message;

use super::frame::{crc32c_update, decode_frame_len, FRAME_HEADER, MAX_RECORD_BYTES};
use super::{
    list_segments, Error, Problem, Segment, WalContents, WalSnapshot, CRC_TYPE, ENTRY_TYPE,
    METADATA_TYPE, SNAPSHOT_TYPE, STATE_TYPE,
};
use crate::raftpb::{Entry, HardState, Metadata, WalRecord, WalSnapshotPb};

/// etcd's torn-write detection works on 512-byte sectors.
const SECTOR: u64 = 512;

/// What the next step of a segment is.
enum Step {
    /// A record whose CRC checked (crc records: not checked here).
    Record(WalRecord),
    /// A zero length field or the end of the file.
    End,
    /// A record cut short or torn: fine at the end of the last segment.
    Torn(&'static str),
}

/// Reads one segment's records, continuing the CRC chain.
struct SegmentReader {
    name: String,
    reader: BufReader<File>,
    size: u64,
    /// Offset of the next length field.
    off: u64,
}

impl SegmentReader {
    fn open(seg: &Segment) -> Result<Self, Error> {
        let f = File::open(&seg.path).map_err(|e| Error::io(&seg.path, e))?;
        let size = f.metadata().map_err(|e| Error::io(&seg.path, e))?.len();
        Ok(SegmentReader {
            name: seg.name(),
            reader: BufReader::with_capacity(64 * 1024, f),
            size,
            off: 0,
        })
    }

    fn err(&self, problem: Problem) -> Error {
        Error::Record {
            file: self.name.clone(),
            offset: self.off,
            problem,
        }
    }

    /// Fills `buf` as far as the file allows; returns the bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let mut n = 0;
        while n < buf.len() {
            let Some(rest) = buf.get_mut(n..) else { break };
            match self.reader.read(rest) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Io {
                        path: self.name.clone().into(),
                        source: e,
                    })
                }
            }
        }
        Ok(n)
    }

    /// Whether some 512-byte sector chunk of the record body (which starts
    /// at file offset `body_off`) is all zeros: etcd's sign of a torn write.
    fn torn(data: &[u8], body_off: u64) -> bool {
        let mut pos = 0usize;
        let mut file_off = body_off;
        while pos < data.len() {
            let room = (SECTOR - file_off % SECTOR) as usize;
            let end = data.len().min(pos.saturating_add(room));
            if data
                .get(pos..end)
                .is_some_and(|c| c.iter().all(|&b| b == 0))
            {
                return true;
            }
            file_off += (end - pos) as u64;
            pos = end;
        }
        false
    }

    /// The next record. `crc` is the running chain value; it is advanced
    /// past the record's data.
    fn next(&mut self, crc: &mut u32) -> Result<Step, Error> {
        let mut head = [0u8; 8];
        match self.fill(&mut head)? {
            0 => return Ok(Step::End),
            8 => {}
            _ => return Ok(Step::Torn("length field cut short")),
        }
        let field = u64::from_le_bytes(head);
        if field == 0 {
            return Ok(Step::End);
        }
        let (len, pad) = decode_frame_len(field);
        let total = len.saturating_add(pad);
        if total >= MAX_RECORD_BYTES {
            return Err(self.err(Problem::TooLarge(len)));
        }
        let remaining = self
            .size
            .saturating_sub(self.off.saturating_add(FRAME_HEADER));
        if total > remaining {
            return Ok(Step::Torn("record runs past the end of the file"));
        }
        // Bounded by MAX_RECORD_BYTES and by the file's size.
        let mut data = vec![0u8; total as usize];
        if self.fill(&mut data)? != data.len() {
            return Ok(Step::Torn("record cut short"));
        }
        let body_off = self.off + FRAME_HEADER;
        let body = data.get(..len as usize).unwrap_or_default();
        let rec = match WalRecord::decode(body) {
            Ok(r) => r,
            Err(_) if Self::torn(&data, body_off) => return Ok(Step::Torn("zeroed sector")),
            Err(e) => {
                return Err(self.err(Problem::Decode {
                    what: "walpb.Record",
                    why: e.to_string(),
                }))
            }
        };
        if rec.r#type != CRC_TYPE {
            *crc = crc32c_update(*crc, rec.data.as_deref().unwrap_or_default());
            if rec.crc != *crc {
                if Self::torn(&data, body_off) {
                    return Ok(Step::Torn("zeroed sector"));
                }
                return Err(self.err(Problem::CrcMismatch));
            }
        }
        self.off = body_off + total;
        Ok(Step::Record(rec))
    }
}

/// Walks the records of `segs` in order: checks the CRC chain and hands
/// every non-crc record to `visit` with its segment name and offset. A torn
/// tail ends the walk in the last segment and is an error elsewhere.
fn walk<E: From<Error>>(
    segs: &[Segment],
    mut visit: impl FnMut(&str, u64, WalRecord) -> Result<(), E>,
) -> Result<(), E> {
    let mut crc = 0u32;
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        let mut r = SegmentReader::open(seg)?;
        loop {
            let off = r.off;
            match r.next(&mut crc)? {
                Step::End => break,
                Step::Torn(_) if last => return Ok(()),
                Step::Torn(why) => return Err(r.err(Problem::TornNotLast(why)).into()),
                Step::Record(rec) if rec.r#type == CRC_TYPE => {
                    // The chain value so far must equal the recorded one;
                    // a fresh chain (0) accepts any, as etcd does when it
                    // starts reading at a later segment.
                    if crc != 0 && rec.crc != crc {
                        return Err(Error::Record {
                            file: r.name.clone(),
                            offset: off,
                            problem: Problem::CrcMismatch,
                        }
                        .into());
                    }
                    crc = rec.crc;
                }
                Step::Record(rec) => visit(&r.name, off, rec)?,
            }
        }
    }
    Ok(())
}

fn decode<M: Message + Default>(
    file: &str,
    offset: u64,
    what: &'static str,
    data: Option<&[u8]>,
) -> Result<M, Error> {
    M::decode(data.unwrap_or_default()).map_err(|e| Error::Record {
        file: file.to_owned(),
        offset,
        problem: Problem::Decode {
            what,
            why: e.to_string(),
        },
    })
}

fn wal_snapshot(pb: WalSnapshotPb) -> WalSnapshot {
    WalSnapshot {
        index: pb.index,
        term: pb.term,
        conf_state: pb.conf_state,
    }
}

/// The segments etcd reads from to reach snapshot index `index`: from the
/// last one whose first index is at or below it, to the end, with
/// consecutive sequence numbers.
fn select_segments(dir: &Path, index: u64) -> Result<Vec<Segment>, Error> {
    let wal_err = |problem| Error::Wal {
        dir: dir.to_owned(),
        problem,
    };
    let segs = list_segments(dir)?;
    if segs.is_empty() {
        return Err(wal_err(Problem::NoSegments));
    }
    let start = segs
        .iter()
        .rposition(|s| s.index <= index)
        .ok_or_else(|| wal_err(Problem::NoSegmentFor(index)))?;
    let chosen: Vec<Segment> = segs.into_iter().skip(start).collect();
    for pair in chosen.windows(2) {
        if let [a, b] = pair {
            // etcd skips the check after a sequence number 0.
            if a.seq != 0 && a.seq.checked_add(1) != Some(b.seq) {
                return Err(wal_err(Problem::SeqGap(b.name())));
            }
        }
    }
    Ok(chosen)
}

/// Reads a WAL directory as etcd's `ReadAll` does after opening at `from`:
/// metadata, the last hard state, the snapshot records, and the entries
/// after `from.index`.
///
/// The snapshot record `(from.index, from.term)` must be present (a record
/// with that index and another term is an error), unless `from` is the
/// zero snapshot. Entries are kept in memory: the log after the last
/// snapshot is bounded by etcd's `--snapshot-count` (10,000 entries by
/// default in 3.5, 100,000 in 3.4, plus the 5,000 etcd keeps for slow
/// followers), each entry by the request size limit. [`read_dir_split`]
/// keeps only a tail.
pub fn read_dir(wal_dir: &Path, from: WalSnapshot) -> Result<WalContents, Error> {
    let index = from.index;
    read_dir_split(wal_dir, from, index, |_| Ok::<(), Error>(()))
}

/// [`read_dir`] that keeps only the entries after `split_at` in memory:
/// the entries from `from.index + 1` to `split_at` are handed to `below`
/// instead, in index order, each once, and only in their final form (an
/// entry overwritten later in the log is never handed out).
///
/// An entry is final once a hard state commits it (raft never rewrites a
/// committed entry) or the log ends; until then it waits in a buffer, so
/// memory is bounded by the uncommitted window, not by the log. An entry
/// that rewrites one already committed is an error: the log contradicts
/// itself.
pub fn read_dir_split<E: From<Error>>(
    wal_dir: &Path,
    from: WalSnapshot,
    split_at: u64,
    mut below: impl FnMut(Entry) -> Result<(), E>,
) -> Result<WalContents, E> {
    let segs = select_segments(wal_dir, from.index)?;
    let mut out = WalContents::default();
    let mut meta_seen = false;
    let mut matched = from.index == 0 && from.term == 0;
    let mut log = LogView::new(from.index, split_at);
    walk::<E>(&segs, |file, offset, rec| {
        match rec.r#type {
            ENTRY_TYPE => {
                let e: Entry = decode(file, offset, "raftpb.Entry", rec.data.as_deref())?;
                log.push(e, &mut out.entries)
                    .map_err(|problem| Error::Record {
                        file: file.to_owned(),
                        offset,
                        problem,
                    })?;
            }
            STATE_TYPE => {
                out.hard_state = decode(file, offset, "raftpb.HardState", rec.data.as_deref())?;
                log.release(out.hard_state.commit, &mut below)?;
            }
            METADATA_TYPE => {
                let raw = rec.data.unwrap_or_default();
                if meta_seen {
                    if raw != out.metadata_raw {
                        return Err(Error::Record {
                            file: file.to_owned(),
                            offset,
                            problem: Problem::MetadataConflict,
                        }
                        .into());
                    }
                } else {
                    out.metadata = decode::<Metadata>(file, offset, "Metadata", Some(&raw))?;
                    out.metadata_raw = raw;
                    meta_seen = true;
                }
            }
            SNAPSHOT_TYPE => {
                let s: WalSnapshotPb = decode(file, offset, "walpb.Snapshot", rec.data.as_deref())?;
                if s.index == from.index {
                    if s.term != from.term {
                        return Err(Error::Record {
                            file: file.to_owned(),
                            offset,
                            problem: Problem::SnapshotMismatch {
                                index: from.index,
                                term: from.term,
                                found: s.term,
                            },
                        }
                        .into());
                    }
                    matched = true;
                }
                out.snapshots.push(wal_snapshot(s));
            }
            other => {
                return Err(Error::Record {
                    file: file.to_owned(),
                    offset,
                    problem: Problem::UnknownType(other),
                }
                .into())
            }
        }
        Ok(())
    })?;
    let wal_err = |problem| Error::Wal {
        dir: wal_dir.to_owned(),
        problem,
    };
    if !meta_seen {
        return Err(wal_err(Problem::NoMetadata).into());
    }
    if !matched {
        return Err(wal_err(Problem::SnapshotNotFound {
            index: from.index,
            term: from.term,
        })
        .into());
    }
    log.release(u64::MAX, &mut below)?;
    Ok(out)
}

/// The log as read so far, split at an index: entries up to the split wait
/// in `pending` until they are final, entries after it are kept by the
/// caller. Applies etcd's overwrite rule: an entry at index i replaces the
/// one there and drops every entry after it.
struct LogView {
    from: u64,
    split_at: u64,
    /// The highest index in the log so far (`from` when none).
    last: u64,
    /// The highest index handed out as final.
    released: u64,
    pending: std::collections::VecDeque<Entry>,
}

impl LogView {
    fn new(from: u64, split_at: u64) -> Self {
        LogView {
            from,
            split_at,
            last: from,
            released: from,
            pending: Default::default(),
        }
    }

    fn push(&mut self, e: Entry, kept: &mut Vec<Entry>) -> Result<(), Problem> {
        if e.index <= self.from {
            return Ok(());
        }
        if e.index > self.last.saturating_add(1) {
            return Err(Problem::EntryGap {
                index: e.index,
                from: self.from,
                have: usize::try_from(self.last - self.from).unwrap_or(usize::MAX),
            });
        }
        if e.index <= self.released {
            return Err(Problem::CommittedOverwritten(e.index));
        }
        // Overwrite: drop what sits at or after e.index.
        while self.pending.back().is_some_and(|p| p.index >= e.index) {
            self.pending.pop_back();
        }
        let keep = e
            .index
            .saturating_sub(self.split_at.max(self.from))
            .saturating_sub(1);
        kept.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        self.last = e.index;
        if e.index <= self.split_at {
            self.pending.push_back(e);
        } else {
            kept.push(e);
        }
        Ok(())
    }

    /// Hands out the pending entries at or below `commit`.
    fn release<E>(
        &mut self,
        commit: u64,
        below: &mut impl FnMut(Entry) -> Result<(), E>,
    ) -> Result<(), E> {
        while self.pending.front().is_some_and(|p| p.index <= commit) {
            if let Some(e) = self.pending.pop_front() {
                self.released = e.index;
                below(e)?;
            }
        }
        Ok(())
    }
}

/// etcd's `ValidSnapshotEntries`: the snapshot records of every segment,
/// keeping those at or below the last hard state's commit index (3.5's
/// rule; 3.4 keeps all). The newest `.snap` file among these is the one
/// etcd starts from (see [`crate::snap::load_newest_available`]).
pub fn valid_snapshots(wal_dir: &Path) -> Result<Vec<WalSnapshot>, Error> {
    let segs = list_segments(wal_dir)?;
    if segs.is_empty() {
        return Err(Error::Wal {
            dir: wal_dir.to_owned(),
            problem: Problem::NoSegments,
        });
    }
    let mut snaps = Vec::new();
    let mut state = HardState::default();
    walk(&segs, |file, offset, rec| -> Result<(), Error> {
        match rec.r#type {
            SNAPSHOT_TYPE => {
                let s: WalSnapshotPb = decode(file, offset, "walpb.Snapshot", rec.data.as_deref())?;
                snaps.push(wal_snapshot(s));
            }
            STATE_TYPE => {
                state = decode(file, offset, "raftpb.HardState", rec.data.as_deref())?;
            }
            _ => {}
        }
        Ok(())
    })?;
    snaps.retain(|s| s.index <= state.commit);
    Ok(snaps)
}
