//! Record framing and the fixed-layout payloads (segment header, snapshot marker).
//! The layout is drawn in the crate docs.

use crc32fast::Hasher;

use crate::{Error, Result, WalSnapshot};

/// Bytes in a record header.
pub(crate) const HEADER_LEN: usize = 16;
/// Records start at multiples of this.
pub(crate) const ALIGN: usize = 8;
/// The largest payload a record may carry. Raft entries are bounded far below this by the
/// server's request size limit; anything larger on disk is damage.
pub(crate) const PAYLOAD_MAX_BYTES: usize = 256 << 20;

/// The format version written by this build.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// First bytes of every segment header payload.
pub(crate) const SEGMENT_MAGIC: [u8; 4] = *b"ERSW";
const SEGMENT_HEADER_LEN: usize = 4 + 4 + 8 + 8 + 4;
const SNAPSHOT_MARKER_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordType {
    SegmentHeader = 1,
    Metadata = 2,
    Entry = 3,
    HardState = 4,
    Snapshot = 5,
}

impl RecordType {
    fn from_u8(b: u8) -> Option<RecordType> {
        Some(match b {
            1 => RecordType::SegmentHeader,
            2 => RecordType::Metadata,
            3 => RecordType::Entry,
            4 => RecordType::HardState,
            5 => RecordType::Snapshot,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            RecordType::SegmentHeader => "segment header",
            RecordType::Metadata => "metadata",
            RecordType::Entry => "entry",
            RecordType::HardState => "hard state",
            RecordType::Snapshot => "snapshot marker",
        }
    }
}

/// Length of a record with `payload_len` payload bytes, padding included.
pub(crate) fn frame_len(payload_len: usize) -> usize {
    align_up(HEADER_LEN + payload_len)
}

pub(crate) fn align_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Appends one record to `buf` and returns its data crc, the seed of the next record.
pub(crate) fn encode(
    buf: &mut Vec<u8>,
    kind: RecordType,
    payload: &[u8],
    prev_crc: u32,
) -> Result<u32> {
    if payload.len() > PAYLOAD_MAX_BYTES {
        return Err(Error::RecordTooLarge {
            what: kind.name(),
            len: payload.len(),
            max: PAYLOAD_MAX_BYTES,
        });
    }
    let mut hasher = Hasher::new_with_initial(prev_crc);
    hasher.update(payload);
    let data_crc = hasher.finalize();

    let mut header = [0u8; HEADER_LEN];
    // PAYLOAD_MAX_BYTES < u32::MAX, checked above.
    header[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[4] = kind as u8;
    header[8..12].copy_from_slice(&data_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&header[0..12]);
    header[12..16].copy_from_slice(&header_crc.to_le_bytes());

    let start = buf.len();
    buf.extend_from_slice(&header);
    buf.extend_from_slice(payload);
    buf.resize(start + frame_len(payload.len()), 0);
    Ok(data_crc)
}

/// A record read back from disk.
#[derive(Debug)]
pub(crate) struct Record<'a> {
    pub kind: RecordType,
    pub payload: &'a [u8],
    pub data_crc: u32,
    /// Offset just past this record (padding included).
    pub next: usize,
}

/// Why the bytes at an offset are not a valid record.
#[derive(Debug)]
pub(crate) struct Damage {
    pub reason: String,
    /// Where the damaged record ends, when its header could be trusted.
    pub end: Option<usize>,
}

/// The outcome of reading at one offset.
#[derive(Debug)]
pub(crate) enum Decoded<'a> {
    Record(Record<'a>),
    /// No more data: the offset is the end of the buffer, or only zeros follow.
    End,
    Damaged(Damage),
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Checks a record header on its own (crc, type, reserved bytes, length bound) and returns
/// the record type and payload length.
fn check_header(header: &[u8]) -> std::result::Result<(RecordType, usize), String> {
    let stored = le_u32(&header[12..16]);
    if crc32fast::hash(&header[0..12]) != stored {
        return Err("record header crc mismatch".to_string());
    }
    let len = le_u32(&header[0..4]) as usize;
    let kind = RecordType::from_u8(header[4])
        .ok_or_else(|| format!("unknown record type {}", header[4]))?;
    if header[5..8] != [0, 0, 0] {
        return Err("non-zero reserved bytes in record header".to_string());
    }
    if len > PAYLOAD_MAX_BYTES {
        return Err(format!(
            "record length {len} exceeds the limit of {PAYLOAD_MAX_BYTES}"
        ));
    }
    Ok((kind, len))
}

/// Whether a valid record header sits at `off` (used to tell damage from a torn tail).
pub(crate) fn looks_like_record(buf: &[u8], off: usize) -> bool {
    match buf.get(off..off + HEADER_LEN) {
        Some(h) if h.iter().any(|&b| b != 0) => check_header(h).is_ok(),
        _ => false,
    }
}

/// Reads the record at `off`; `prev_crc` is the data crc of the record before it.
pub(crate) fn decode(buf: &[u8], off: usize, prev_crc: u32) -> Decoded<'_> {
    let rest = &buf[off.min(buf.len())..];
    // Only a zero header (or a short zero rest) makes it worth scanning the rest for zeros;
    // scanning on every record would make replay quadratic.
    let head = &rest[..rest.len().min(HEADER_LEN)];
    if head.iter().all(|&b| b == 0) && rest.iter().all(|&b| b == 0) {
        return Decoded::End;
    }
    if rest.len() < HEADER_LEN {
        return Decoded::Damaged(Damage {
            reason: "record header cut short by end of file".to_string(),
            end: Some(buf.len()),
        });
    }
    let header = &rest[..HEADER_LEN];
    if header.iter().all(|&b| b == 0) {
        return Decoded::Damaged(Damage {
            reason: "zeroed record header followed by data".to_string(),
            end: None,
        });
    }
    let (kind, len) = match check_header(header) {
        Ok(v) => v,
        Err(reason) => return Decoded::Damaged(Damage { reason, end: None }),
    };
    let end = off + frame_len(len);
    if frame_len(len) > rest.len() {
        return Decoded::Damaged(Damage {
            reason: format!("{} record cut short by end of file", kind.name()),
            end: Some(buf.len()),
        });
    }
    let payload = &rest[HEADER_LEN..HEADER_LEN + len];
    let mut hasher = Hasher::new_with_initial(prev_crc);
    hasher.update(payload);
    let data_crc = hasher.finalize();
    if data_crc != le_u32(&header[8..12]) {
        return Decoded::Damaged(Damage {
            reason: format!("crc mismatch in {} record", kind.name()),
            end: Some(end),
        });
    }
    if rest[HEADER_LEN + len..frame_len(len)]
        .iter()
        .any(|&b| b != 0)
    {
        return Decoded::Damaged(Damage {
            reason: format!("non-zero padding after {} record", kind.name()),
            end: Some(end),
        });
    }
    Decoded::Record(Record {
        kind,
        payload,
        data_crc,
        next: end,
    })
}

/// The payload of the first record of every segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub seq: u64,
    pub first_index: u64,
    /// Data crc of the last record of the previous segment (0 for the first segment).
    pub prev_crc: u32,
}

/// Why a segment header payload was rejected.
#[derive(Debug)]
pub(crate) enum HeaderError {
    Version(u32),
    Invalid(String),
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SEGMENT_HEADER_LEN);
        out.extend_from_slice(&SEGMENT_MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.first_index.to_le_bytes());
        out.extend_from_slice(&self.prev_crc.to_le_bytes());
        out
    }

    pub(crate) fn decode(payload: &[u8]) -> std::result::Result<SegmentHeader, HeaderError> {
        if payload.len() < 8 || payload[0..4] != SEGMENT_MAGIC {
            return Err(HeaderError::Invalid(
                "segment header without the etcd-rs magic (not a segment of ours?)".to_string(),
            ));
        }
        let version = le_u32(&payload[4..8]);
        if version != FORMAT_VERSION {
            return Err(HeaderError::Version(version));
        }
        if payload.len() != SEGMENT_HEADER_LEN {
            return Err(HeaderError::Invalid(format!(
                "segment header of {} bytes, expected {SEGMENT_HEADER_LEN}",
                payload.len()
            )));
        }
        Ok(SegmentHeader {
            seq: le_u64(&payload[8..16]),
            first_index: le_u64(&payload[16..24]),
            prev_crc: le_u32(&payload[24..28]),
        })
    }
}

pub(crate) fn encode_snapshot_marker(snap: WalSnapshot) -> [u8; SNAPSHOT_MARKER_LEN] {
    let mut out = [0u8; SNAPSHOT_MARKER_LEN];
    out[0..8].copy_from_slice(&snap.index.to_le_bytes());
    out[8..16].copy_from_slice(&snap.term.to_le_bytes());
    out
}

pub(crate) fn decode_snapshot_marker(payload: &[u8]) -> Option<WalSnapshot> {
    if payload.len() != SNAPSHOT_MARKER_LEN {
        return None;
    }
    Some(WalSnapshot {
        index: le_u64(&payload[0..8]),
        term: le_u64(&payload[8..16]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(kind: RecordType, payload: &[u8], seed: u32) -> (Vec<u8>, u32) {
        let mut buf = Vec::new();
        let crc = encode(&mut buf, kind, payload, seed).unwrap();
        (buf, crc)
    }

    #[test]
    fn round_trip_and_alignment() {
        for len in [0usize, 1, 7, 8, 9, 100] {
            let payload = vec![0xabu8; len];
            let (buf, crc) = one(RecordType::Entry, &payload, 7);
            assert_eq!(buf.len() % ALIGN, 0);
            match decode(&buf, 0, 7) {
                Decoded::Record(r) => {
                    assert_eq!(r.kind, RecordType::Entry);
                    assert_eq!(r.payload, &payload[..]);
                    assert_eq!(r.data_crc, crc);
                    assert_eq!(r.next, buf.len());
                }
                other => panic!("len {len}: {other:?}"),
            }
        }
    }

    #[test]
    fn zero_header_is_never_valid() {
        // The end-of-data marker must not pass as a record.
        assert_ne!(crc32fast::hash(&[0u8; 12]), 0);
        assert!(!looks_like_record(&[0u8; 32], 0));
        assert!(matches!(decode(&[0u8; 64], 0, 0), Decoded::End));
        assert!(matches!(decode(&[], 0, 0), Decoded::End));
    }

    #[test]
    fn chain_seed_matters() {
        let (buf, _) = one(RecordType::Metadata, b"abc", 1);
        assert!(matches!(decode(&buf, 0, 2), Decoded::Damaged(_)));
    }

    #[test]
    fn damage_kinds() {
        let (mut buf, _) = one(RecordType::Entry, b"hello world", 0);
        // Cut short: header intact, payload missing.
        let cut = &buf[..HEADER_LEN + 3];
        match decode(cut, 0, 0) {
            Decoded::Damaged(d) => assert_eq!(d.end, Some(cut.len())),
            other => panic!("{other:?}"),
        }
        // Payload flipped: extent known.
        buf[HEADER_LEN] ^= 1;
        match decode(&buf, 0, 0) {
            Decoded::Damaged(d) => assert_eq!(d.end, Some(buf.len())),
            other => panic!("{other:?}"),
        }
        // Header flipped: extent unknown.
        buf[HEADER_LEN] ^= 1;
        buf[0] ^= 0x40;
        match decode(&buf, 0, 0) {
            Decoded::Damaged(d) => assert_eq!(d.end, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn segment_header_versions() {
        let h = SegmentHeader {
            seq: 3,
            first_index: 99,
            prev_crc: 0xdead_beef,
        };
        let mut bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes).unwrap(), h);
        bytes[4] = 9;
        assert!(matches!(
            SegmentHeader::decode(&bytes),
            Err(HeaderError::Version(9))
        ));
        bytes[0] = b'X';
        assert!(matches!(
            SegmentHeader::decode(&bytes),
            Err(HeaderError::Invalid(_))
        ));
    }
}
