//! Telling our files from anyone else's by their first bytes, without
//! opening, locking or repairing anything: what a caller checks before it
//! lets [`crate::Wal::open`] or [`crate::Snapshotter`] touch a directory
//! (both may truncate a torn tail or set a damaged file aside).

use crate::record::{self, HEADER_LEN};

/// Bytes [`identify_segment`] and [`identify_snapshot`] look at.
pub const IDENTIFY_HEAD_BYTES: usize = HEADER_LEN + 8;

/// Whose a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Ours, in a format version this build reads.
    Ours,
    /// Ours, written by a newer build (its format version).
    NewerOurs(u32),
    /// Not ours (or too short to tell).
    Foreign,
}

/// A WAL segment: its first record is our segment header (magic, version).
pub fn identify_segment(head: &[u8]) -> Identity {
    let Some(payload) = head.get(HEADER_LEN..HEADER_LEN + 8) else {
        return Identity::Foreign;
    };
    identify(payload, record::SEGMENT_MAGIC, record::FORMAT_VERSION)
}

/// A raft snapshot file (`*.snap`): magic, then the format version.
pub fn identify_snapshot(head: &[u8]) -> Identity {
    let Some(start) = head.get(..8) else {
        return Identity::Foreign;
    };
    identify(
        start,
        crate::snapshotter::MAGIC,
        crate::snapshotter::FORMAT_VERSION,
    )
}

fn identify(start: &[u8], magic: [u8; 4], supported: u32) -> Identity {
    if start[..4] != magic {
        return Identity::Foreign;
    }
    let version = u32::from_le_bytes([start[4], start[5], start[6], start[7]]);
    if version > supported {
        Identity::NewerOurs(version)
    } else {
        Identity::Ours
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_files_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        drop(crate::Wal::create(&dir.path().join("wal"), b"meta").unwrap());
        let segment = std::fs::read_dir(dir.path().join("wal"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "wal"))
            .unwrap();
        let head = std::fs::read(segment).unwrap();
        assert_eq!(
            identify_segment(&head[..IDENTIFY_HEAD_BYTES]),
            Identity::Ours
        );
        let mut newer = head[..IDENTIFY_HEAD_BYTES].to_vec();
        newer[HEADER_LEN + 4] = 9;
        assert_eq!(identify_segment(&newer), Identity::NewerOurs(9));
        // etcd's first record: a length field, then walpb.Record{type: crcType}.
        let etcd = [4u8, 0, 0, 0, 0, 0, 0, 0x84, 0x08, 0x04, 0, 0, 0, 0, 0, 0];
        assert_eq!(identify_segment(&etcd), Identity::Foreign);
        assert_eq!(identify_snapshot(b"ERSS\x01\0\0\0"), Identity::Ours);
        assert_eq!(identify_snapshot(b"ERSS\x02\0\0\0"), Identity::NewerOurs(2));
        assert_eq!(identify_snapshot(b"\x08\x95\x01"), Identity::Foreign);
    }
}
