//! Replay: turns the records of the segments, read in order, into the state raft restarts
//! from, and decides whether damage at the end of the log is a torn write or corruption.
//!
//! Invariants kept while replaying:
//! * `entries` holds indexes `snap.index + 1 ..= snap.index + entries.len()` without gaps.
//! * Within a segment every record's data crc is seeded with the one before it; the
//!   segment header names the last data crc of the previous segment.

use std::path::{Path, PathBuf};

use protobuf::Message;
use raft::eraftpb::{Entry, HardState};

use crate::record::{self, Decoded, HeaderError, RecordType, SegmentHeader, ALIGN, HEADER_LEN};
use crate::segment::SegmentName;
use crate::{Error, Result, WalSnapshot};

/// A torn write found at the end of the last segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TornTail {
    /// Where the valid data ends and the repair truncates.
    pub offset: u64,
    /// Bytes from `offset` to the last non-zero byte of the file.
    pub bytes: u64,
}

/// Where the valid records of a segment end.
#[derive(Debug)]
pub(crate) struct SegmentEnd {
    pub valid_len: u64,
    /// Data crc of the last valid record: the seed of the next one appended.
    pub last_crc: u32,
    pub torn: Option<TornTail>,
}

/// State accumulated over the segments of one open.
#[derive(Debug)]
pub(crate) struct Replay {
    dir: PathBuf,
    snap: WalSnapshot,
    pub metadata: Option<Vec<u8>>,
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
    /// Index of the last entry the log holds (raised by snapshot markers).
    pub last_index: u64,
    pub snapshot_found: bool,
    prev_segment_crc: Option<u32>,
}

impl Replay {
    pub(crate) fn new(dir: &Path, snap: WalSnapshot) -> Replay {
        Replay {
            dir: dir.to_path_buf(),
            snap,
            metadata: None,
            hard_state: HardState::default(),
            entries: Vec::new(),
            last_index: snap.index,
            snapshot_found: false,
            prev_segment_crc: None,
        }
    }

    /// Replays the records of one segment held in `buf`.
    pub(crate) fn read_segment(
        &mut self,
        name: SegmentName,
        path: &Path,
        buf: &[u8],
        is_last: bool,
    ) -> Result<SegmentEnd> {
        let corrupt = |offset: usize, reason: String| Error::Corrupt {
            path: path.to_path_buf(),
            offset: offset as u64,
            reason,
        };

        // The header: its framing is the same in every format version.
        let header = match record::decode(buf, 0, 0) {
            Decoded::Record(r) if r.kind == RecordType::SegmentHeader => r,
            Decoded::Record(r) => {
                return Err(corrupt(
                    0,
                    format!("segment starts with a {} record", r.kind.name()),
                ))
            }
            Decoded::End => return Err(corrupt(0, "empty segment (no header)".to_string())),
            Decoded::Damaged(d) => {
                return Err(corrupt(
                    0,
                    format!("unreadable segment header: {}", d.reason),
                ))
            }
        };
        let fields = SegmentHeader::decode(header.payload).map_err(|e| match e {
            HeaderError::Version(found) => Error::UnsupportedVersion {
                path: path.to_path_buf(),
                found,
                supported: record::FORMAT_VERSION,
            },
            HeaderError::Invalid(reason) => corrupt(0, reason),
        })?;
        if fields.seq != name.seq || fields.first_index != name.first_index {
            return Err(corrupt(
                0,
                format!(
                    "segment header says seq {} first index {}, the file name disagrees",
                    fields.seq, fields.first_index
                ),
            ));
        }
        if let Some(prev) = self.prev_segment_crc {
            if prev != fields.prev_crc {
                return Err(corrupt(
                    0,
                    "checksum chain broken: the previous segment does not end where this one \
                     says it does (segment replaced or truncated?)"
                        .to_string(),
                ));
            }
        }

        let mut off = header.next;
        let mut crc = header.data_crc;
        let mut torn = None;
        loop {
            match record::decode(buf, off, crc) {
                Decoded::Record(r) => {
                    self.apply(r.kind, r.payload, |reason| corrupt(off, reason))?;
                    crc = r.data_crc;
                    off = r.next;
                }
                Decoded::End => break,
                Decoded::Damaged(d) => {
                    let scan_from = d.end.unwrap_or(off + ALIGN);
                    if !is_last {
                        return Err(corrupt(
                            off,
                            format!("{} (not in the last segment)", d.reason),
                        ));
                    }
                    if let Some(valid) = next_record_at(buf, scan_from) {
                        return Err(corrupt(
                            off,
                            format!(
                                "{} (not at the tail: a valid record follows at offset {valid})",
                                d.reason
                            ),
                        ));
                    }
                    let data_end = buf.iter().rposition(|&b| b != 0).map_or(off, |p| p + 1);
                    tracing::warn!(
                        file = %path.display(),
                        offset = off,
                        bytes = data_end.saturating_sub(off),
                        reason = %d.reason,
                        "wal: torn write at the end of the log; truncating it (it was never acknowledged)"
                    );
                    torn = Some(TornTail {
                        offset: off as u64,
                        bytes: data_end.saturating_sub(off) as u64,
                    });
                    break;
                }
            }
        }
        self.prev_segment_crc = Some(crc);
        Ok(SegmentEnd {
            valid_len: off as u64,
            last_crc: crc,
            torn,
        })
    }

    /// Applies one valid record; `corrupt` turns a reason into the error to return.
    fn apply(
        &mut self,
        kind: RecordType,
        payload: &[u8],
        corrupt: impl Fn(String) -> Error,
    ) -> Result<()> {
        match kind {
            RecordType::SegmentHeader => {
                return Err(corrupt(
                    "segment header in the middle of a segment".to_string(),
                ))
            }
            RecordType::Metadata => match &self.metadata {
                Some(m) if m != payload => {
                    return Err(corrupt(
                        "metadata differs from the earlier segments".to_string(),
                    ))
                }
                Some(_) => {}
                None => self.metadata = Some(payload.to_vec()),
            },
            RecordType::Entry => {
                let entry = Entry::parse_from_bytes(payload)
                    .map_err(|e| corrupt(format!("undecodable entry: {e}")))?;
                self.apply_entry(entry).map_err(corrupt)?;
            }
            RecordType::HardState => {
                self.hard_state = HardState::parse_from_bytes(payload)
                    .map_err(|e| corrupt(format!("undecodable hard state: {e}")))?;
            }
            RecordType::Snapshot => {
                let snap = record::decode_snapshot_marker(payload)
                    .ok_or_else(|| corrupt("snapshot marker of the wrong size".to_string()))?;
                if snap.index == self.snap.index && self.snap.index != 0 {
                    if snap.term != self.snap.term {
                        return Err(Error::SnapshotMismatch {
                            dir: self.dir.clone(),
                            index: snap.index,
                            term: self.snap.term,
                            wal_term: snap.term,
                        });
                    }
                    self.snapshot_found = true;
                }
                self.last_index = self.last_index.max(snap.index);
            }
        }
        Ok(())
    }

    fn apply_entry(&mut self, entry: Entry) -> std::result::Result<(), String> {
        let index = entry.index;
        if index > self.snap.index {
            // Position of `index` in `entries`; at most one past the end.
            let pos = index - self.snap.index - 1;
            if pos > self.entries.len() as u64 {
                return Err(format!(
                    "entry {index} leaves a gap after entry {}",
                    self.snap.index + self.entries.len() as u64
                ));
            }
            // pos <= entries.len(), so it fits in usize.
            self.entries.truncate(pos as usize);
            self.entries.push(entry);
        }
        self.last_index = index;
        Ok(())
    }
}

/// The first offset at or after `from` (aligned) where a valid record header sits.
fn next_record_at(buf: &[u8], from: usize) -> Option<usize> {
    let start = record::align_up(from);
    (start..buf.len().saturating_sub(HEADER_LEN - 1))
        .step_by(ALIGN)
        .find(|&off| record::looks_like_record(buf, off))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(seq: u64, first_index: u64) -> SegmentName {
        SegmentName { seq, first_index }
    }

    /// A segment holding a header with `header_payload`, metadata and `entries`.
    fn segment(header_payload: &[u8], entries: &[u64]) -> (Vec<u8>, u32) {
        let mut buf = Vec::new();
        let mut crc =
            record::encode(&mut buf, RecordType::SegmentHeader, header_payload, 0).unwrap();
        crc = record::encode(&mut buf, RecordType::Metadata, b"meta", crc).unwrap();
        for &index in entries {
            let mut e = Entry::default();
            e.set_index(index);
            e.set_term(1);
            let payload = e.write_to_bytes().unwrap();
            crc = record::encode(&mut buf, RecordType::Entry, &payload, crc).unwrap();
        }
        (buf, crc)
    }

    fn header(seq: u64, first_index: u64, prev_crc: u32) -> Vec<u8> {
        SegmentHeader {
            seq,
            first_index,
            prev_crc,
        }
        .encode()
    }

    #[test]
    fn unknown_version_is_reported_as_such() {
        let mut payload = header(0, 0, 0);
        payload[4..8].copy_from_slice(&2u32.to_le_bytes());
        let (buf, _) = segment(&payload, &[1]);
        let mut replay = Replay::new(Path::new("d"), WalSnapshot::default());
        let err = replay
            .read_segment(name(0, 0), Path::new("d/x.wal"), &buf, true)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnsupportedVersion {
                    found: 2,
                    supported: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("newer etcd-rs"), "{err}");
    }

    #[test]
    fn chain_between_segments_is_checked() {
        let (first, last_crc) = segment(&header(0, 0, 0), &[1, 2]);
        let (good, _) = segment(&header(1, 3, last_crc), &[3]);
        let (bad, _) = segment(&header(1, 3, last_crc ^ 1), &[3]);

        let mut replay = Replay::new(Path::new("d"), WalSnapshot::default());
        let end = replay
            .read_segment(name(0, 0), Path::new("a"), &first, false)
            .unwrap();
        assert_eq!(end.last_crc, last_crc);
        replay
            .read_segment(name(1, 3), Path::new("b"), &good, true)
            .unwrap();
        assert_eq!(replay.entries.len(), 3);

        let mut replay = Replay::new(Path::new("d"), WalSnapshot::default());
        replay
            .read_segment(name(0, 0), Path::new("a"), &first, false)
            .unwrap();
        let err = replay
            .read_segment(name(1, 3), Path::new("b"), &bad, true)
            .unwrap_err();
        assert!(err.to_string().contains("chain broken"), "{err}");
    }

    #[test]
    fn header_must_match_file_name() {
        let (buf, _) = segment(&header(0, 0, 0), &[]);
        let mut replay = Replay::new(Path::new("d"), WalSnapshot::default());
        let err = replay
            .read_segment(name(0, 5), Path::new("a"), &buf, true)
            .unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }

    #[test]
    fn entry_gap_is_corrupt() {
        let (buf, _) = segment(&header(0, 0, 0), &[1, 2, 4]);
        let mut replay = Replay::new(Path::new("d"), WalSnapshot::default());
        let err = replay
            .read_segment(name(0, 0), Path::new("a"), &buf, true)
            .unwrap_err();
        assert!(err.to_string().contains("gap"), "{err}");
    }

    #[test]
    fn entries_at_or_below_the_snapshot_are_skipped() {
        let (buf, _) = segment(&header(0, 0, 0), &[1, 2, 3, 4, 5, 3, 4]);
        let mut replay = Replay::new(Path::new("d"), WalSnapshot { index: 2, term: 1 });
        replay
            .read_segment(name(0, 0), Path::new("a"), &buf, true)
            .unwrap();
        let indexes: Vec<u64> = replay.entries.iter().map(|e| e.index).collect();
        assert_eq!(indexes, vec![3, 4]);
        assert_eq!(replay.last_index, 4);
    }
}
