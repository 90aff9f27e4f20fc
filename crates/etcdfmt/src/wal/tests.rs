use std::path::Path;

use prost::Message;

use super::frame::{crc32c_update, frame};
use super::*;
use crate::raftpb::{ConfState, Entry, EntryType, HardState, Metadata, WalRecord, WalSnapshotPb};

const META: Metadata = Metadata {
    node_id: 0x8e9e05c52164694d,
    cluster_id: 0xcdf818194e3a8c32,
};

fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        r#type: EntryType::Normal as i32,
        term,
        index,
        data: Some(data.to_vec()),
    }
}

/// Builds segment bytes record by record, chaining the CRC like etcd.
struct Seg {
    bytes: Vec<u8>,
    crc: u32,
}

impl Seg {
    fn new(prev_crc: u32) -> Self {
        let mut s = Seg {
            bytes: Vec::new(),
            crc: prev_crc,
        };
        s.rec(CRC_TYPE, None);
        s
    }
    fn rec(&mut self, t: i64, data: Option<Vec<u8>>) -> &mut Self {
        if t != CRC_TYPE {
            self.crc = crc32c_update(self.crc, data.as_deref().unwrap_or_default());
        }
        let r = WalRecord {
            r#type: t,
            crc: self.crc,
            data,
        };
        frame(&mut self.bytes, &r.encode_to_vec());
        self
    }
    fn meta(&mut self, m: &Metadata) -> &mut Self {
        self.rec(METADATA_TYPE, Some(m.encode_to_vec()))
    }
    fn snap(&mut self, index: u64, term: u64) -> &mut Self {
        let s = WalSnapshotPb {
            index,
            term,
            conf_state: None,
        };
        self.rec(SNAPSHOT_TYPE, Some(s.encode_to_vec()))
    }
    fn ent(&mut self, e: &Entry) -> &mut Self {
        self.rec(ENTRY_TYPE, Some(e.encode_to_vec()))
    }
    fn state(&mut self, term: u64, commit: u64) -> &mut Self {
        let h = HardState {
            term,
            vote: 1,
            commit,
        };
        self.rec(STATE_TYPE, Some(h.encode_to_vec()))
    }
    fn save(&self, dir: &Path, seq: u64, index: u64) {
        std::fs::write(dir.join(segment_name(seq, index)), &self.bytes).unwrap();
    }
}

fn zero() -> WalSnapshot {
    WalSnapshot::default()
}

fn snap(index: u64, term: u64) -> WalSnapshot {
    WalSnapshot {
        index,
        term,
        conf_state: None,
    }
}

/// Two segments: 1..=3 in the first, 4..=5 in the second.
fn two_segments(dir: &Path) -> (Seg, Seg) {
    let mut a = Seg::new(0);
    a.meta(&META).snap(0, 0);
    for i in 1..=3 {
        a.ent(&entry(i, 1, b"abc"));
    }
    a.state(1, 3);
    let mut b = Seg::new(a.crc);
    b.meta(&META).state(1, 3);
    b.ent(&entry(4, 1, b"x")).ent(&entry(5, 1, b"hello world"));
    b.state(1, 5);
    a.save(dir, 0, 0);
    b.save(dir, 1, 4);
    (a, b)
}

#[test]
fn reads_across_segments() {
    let d = tempfile::tempdir().unwrap();
    two_segments(d.path());
    let c = read_dir(d.path(), zero()).unwrap();
    assert_eq!(c.metadata, META);
    assert_eq!(c.hard_state.commit, 5);
    let idx: Vec<u64> = c.entries.iter().map(|e| e.index).collect();
    assert_eq!(idx, [1, 2, 3, 4, 5]);
    assert_eq!(c.snapshots, vec![zero()]);
    assert_eq!(valid_snapshots(d.path()).unwrap(), vec![zero()]);
    assert_eq!(classify_dir(d.path()).unwrap(), WalDirKind::Etcd);
}

#[test]
fn crc_chain_is_checked_across_segments() {
    let d = tempfile::tempdir().unwrap();
    let (_, b) = two_segments(d.path());
    // Second segment restarting its chain from a wrong value.
    let mut bad = Seg::new(b.crc ^ 1);
    bad.meta(&META);
    bad.save(d.path(), 1, 4);
    let e = read_dir(d.path(), zero()).unwrap_err();
    assert_eq!(e.problem(), Some(&Problem::CrcMismatch));
    assert_eq!(
        e.to_string(),
        "etcd wal 0000000000000001-0000000000000004.wal: record at offset 0: crc mismatch"
    );
    // A flipped byte inside a record's data.
    b.save(d.path(), 1, 4);
    let mut bytes = std::fs::read(d.path().join(segment_name(1, 4))).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 0x40;
    std::fs::write(d.path().join(segment_name(1, 4)), &bytes).unwrap();
    assert!(read_dir(d.path(), zero()).is_err());
}

#[test]
fn torn_tail_only_in_last_segment() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = two_segments(d.path());
    // Last segment cut in the middle of its last record: tolerated.
    let cut = &b.bytes[..b.bytes.len() - 5];
    std::fs::write(d.path().join(segment_name(1, 4)), cut).unwrap();
    let c = read_dir(d.path(), zero()).unwrap();
    assert_eq!(c.entries.last().unwrap().index, 5);
    assert_eq!(c.hard_state.commit, 3, "the torn state record is dropped");
    // Followed by preallocated zeros: also fine, as is a zeroed sector.
    let mut padded = b.bytes.clone();
    padded.resize(padded.len() + 4096, 0);
    std::fs::write(d.path().join(segment_name(1, 4)), &padded).unwrap();
    assert_eq!(read_dir(d.path(), zero()).unwrap().hard_state.commit, 5);
    // The first segment cut short: refused.
    b.save(d.path(), 1, 4);
    std::fs::write(
        d.path().join(segment_name(0, 0)),
        &a.bytes[..a.bytes.len() - 3],
    )
    .unwrap();
    let e = read_dir(d.path(), zero()).unwrap_err();
    assert!(matches!(e.problem(), Some(Problem::TornNotLast(_))), "{e}");
}

#[test]
fn metadata_mismatch_refused() {
    let d = tempfile::tempdir().unwrap();
    let (a, _) = two_segments(d.path());
    let mut b = Seg::new(a.crc);
    b.meta(&Metadata {
        node_id: 1,
        cluster_id: 2,
    });
    b.save(d.path(), 1, 4);
    let e = read_dir(d.path(), zero()).unwrap_err();
    assert_eq!(e.problem(), Some(&Problem::MetadataConflict));
}

#[test]
fn overwrite_rule_and_gaps() {
    let d = tempfile::tempdir().unwrap();
    let mut a = Seg::new(0);
    a.meta(&META).snap(0, 0);
    for i in 1..=5 {
        a.ent(&entry(i, 1, b"old"));
    }
    // A new leader overwrites from index 3.
    a.ent(&entry(3, 2, b"new")).ent(&entry(4, 2, b"new"));
    a.state(2, 4);
    a.save(d.path(), 0, 0);
    let c = read_dir(d.path(), zero()).unwrap();
    let got: Vec<(u64, u64)> = c.entries.iter().map(|e| (e.index, e.term)).collect();
    assert_eq!(got, [(1, 1), (2, 1), (3, 2), (4, 2)]);
    // A gap is an error, not a panic.
    let d = tempfile::tempdir().unwrap();
    let mut a = Seg::new(0);
    a.meta(&META)
        .snap(0, 0)
        .ent(&entry(1, 1, b""))
        .ent(&entry(3, 1, b""));
    a.save(d.path(), 0, 0);
    let e = read_dir(d.path(), zero()).unwrap_err();
    assert!(matches!(e.problem(), Some(Problem::EntryGap { .. })), "{e}");
}

/// The split reader hands out only final entries below the split, in
/// order, once each, and keeps the tail as `read_dir` would.
#[test]
fn split_read_hands_out_final_entries_and_keeps_the_tail() {
    let d = tempfile::tempdir().unwrap();
    let mut a = Seg::new(0);
    a.meta(&META).snap(0, 0);
    for i in 1..=4 {
        a.ent(&entry(i, 1, b"t1"));
    }
    a.state(1, 2);
    // Uncommitted 3 and 4 are overwritten by a new leader, then more.
    for i in 3..=8 {
        a.ent(&entry(i, 2, b"t2"));
    }
    a.state(2, 6);
    // The tail past the split is overwritten too.
    a.ent(&entry(8, 3, b"t3")).ent(&entry(9, 3, b"t3"));
    a.save(d.path(), 0, 0);
    let whole = read_dir(d.path(), zero()).unwrap();
    for split in 0..=10 {
        let mut below = Vec::new();
        let c = read_dir_split(d.path(), zero(), split, |e| {
            below.push(e);
            Ok::<(), Error>(())
        })
        .unwrap();
        let n = split.min(9) as usize;
        assert_eq!(below, whole.entries[..n], "split {split}");
        assert_eq!(c.entries, whole.entries[n..], "split {split}");
        assert_eq!(c.hard_state, whole.hard_state);
    }
    // Rewriting a committed entry is refused.
    let d = tempfile::tempdir().unwrap();
    let mut a = Seg::new(0);
    a.meta(&META).snap(0, 0);
    a.ent(&entry(1, 1, b"")).ent(&entry(2, 1, b"")).state(1, 2);
    a.ent(&entry(2, 2, b""));
    a.save(d.path(), 0, 0);
    let e = read_dir_split(d.path(), zero(), 5, |_| Ok::<(), Error>(())).unwrap_err();
    assert_eq!(e.problem(), Some(&Problem::CommittedOverwritten(2)));
    // The callback's error stops the read and comes back as it was.
    let e = read_dir_split(d.path(), zero(), 5, |_| {
        Err(Error::Wal {
            dir: "x".into(),
            problem: Problem::NoSnapshot,
        })
    })
    .unwrap_err();
    assert_eq!(e.problem(), Some(&Problem::NoSnapshot));
}

#[test]
fn snapshot_selection() {
    let d = tempfile::tempdir().unwrap();
    let mut a = Seg::new(0);
    a.meta(&META).snap(0, 0);
    for i in 1..=10 {
        a.ent(&entry(i, 2, b"v"));
    }
    a.state(2, 10).snap(8, 2);
    a.save(d.path(), 0, 0);
    let c = read_dir(d.path(), snap(8, 2)).unwrap();
    let idx: Vec<u64> = c.entries.iter().map(|e| e.index).collect();
    assert_eq!(idx, [9, 10]);
    assert_eq!(c.snapshots.len(), 2);
    let e = read_dir(d.path(), snap(7, 2)).unwrap_err();
    assert_eq!(
        e.problem(),
        Some(&Problem::SnapshotNotFound { index: 7, term: 2 })
    );
    let e = read_dir(d.path(), snap(8, 3)).unwrap_err();
    assert!(matches!(
        e.problem(),
        Some(Problem::SnapshotMismatch { .. })
    ));
    assert_eq!(valid_snapshots(d.path()).unwrap(), vec![zero(), snap(8, 2)]);
}

#[test]
fn segment_names_and_detection() {
    assert_eq!(
        parse_segment_name("0000000000000001-00000000000004d3.wal"),
        Some((1, 0x4d3))
    );
    assert_eq!(parse_segment_name("1-2.wal"), None);
    assert_eq!(
        parse_segment_name("0000000000000001-00000000000004d3.wal.tmp"),
        None
    );
    let d = tempfile::tempdir().unwrap();
    assert_eq!(
        classify_dir(&d.path().join("nope")).unwrap(),
        WalDirKind::Empty
    );
    std::fs::create_dir(d.path().join("0.tmp")).unwrap();
    assert_eq!(classify_dir(d.path()).unwrap(), WalDirKind::Empty);
    let e = read_dir(d.path(), zero()).unwrap_err();
    assert_eq!(e.problem(), Some(&Problem::NoSegments));
    std::fs::write(d.path().join(segment_name(0, 0)), b"not a wal at all").unwrap();
    assert_eq!(classify_dir(d.path()).unwrap(), WalDirKind::Unknown);
    let s = Seg::new(0);
    assert!(looks_like_etcd_wal(&s.bytes));
    assert!(!looks_like_etcd_wal(&s.bytes[..9]));
    assert!(looks_like_etcd_wal(&Seg::new(0xdead_beef).bytes));
}

#[test]
fn write_dir_layout_and_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let target = d.path().join("wal");
    let ents: Vec<Entry> = (101..=110).map(|i| entry(i, 3, b"payload")).collect();
    let hs = HardState {
        term: 3,
        vote: 0x8e9e05c52164694d,
        commit: 110,
    };
    let s = WalSnapshot {
        index: 100,
        term: 3,
        conf_state: Some(ConfState {
            voters: vec![META.node_id],
            ..Default::default()
        }),
    };
    write_dir(&target, &META, s.clone(), &hs, &ents).unwrap();
    let seg = target.join(segment_name(0, 0));
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), SEGMENT_SIZE_BYTES);
    assert!(!d.path().join("wal.tmp").exists());
    let c = read_dir(&target, s.clone()).unwrap();
    assert_eq!(c.entries, ents);
    assert_eq!(c.hard_state, hs);
    assert_eq!(c.metadata, META);
    assert_eq!(c.snapshots, vec![zero(), s.clone()]);
    assert_eq!(valid_snapshots(&target).unwrap(), vec![zero(), s.clone()]);
    // The first 16 bytes are exactly what wal.Create writes.
    let head = std::fs::read(&seg).unwrap();
    assert_eq!(
        &head[..16],
        &[4, 0, 0, 0, 0, 0, 0, 0x84, 8, 4, 0x10, 0, 0, 0, 0, 0]
    );
    let e = write_dir(&target, &META, s.clone(), &hs, &ents).unwrap_err();
    assert_eq!(e.problem(), Some(&Problem::TargetExists));
    // Inputs etcd's raft would reject.
    let e = write_dir(&d.path().join("w2"), &META, s.clone(), &hs, &ents[1..]).unwrap_err();
    assert!(matches!(e.problem(), Some(Problem::Invalid(_))));
    let bad = HardState { commit: 111, ..hs };
    assert!(write_dir(&d.path().join("w3"), &META, s, &bad, &ents).is_err());
    assert!(!d.path().join("w3").exists() && !d.path().join("w3.tmp").exists());
    // A record etcd 3.4/3.5 could not read back is refused, and no
    // temporary directory is left behind.
    let big = vec![entry(101, 3, &vec![7u8; MAX_RECORD_BYTES as usize])];
    let hs = HardState { commit: 101, ..hs };
    let s = snap(100, 3);
    let e = write_dir(&d.path().join("w4"), &META, s, &hs, &big).unwrap_err();
    assert!(matches!(e.problem(), Some(Problem::Invalid(_))), "{e}");
    assert!(!d.path().join("w4").exists() && !d.path().join("w4.tmp").exists());
}

#[test]
fn oversized_length_field_is_an_error_without_allocation() {
    let d = tempfile::tempdir().unwrap();
    let mut s = Seg::new(0);
    s.meta(&META).snap(0, 0);
    let at = s.bytes.len();
    s.bytes.extend_from_slice(&(MAX_RECORD_BYTES).to_le_bytes());
    s.bytes.extend_from_slice(&[1u8; 64]);
    s.save(d.path(), 0, 0);
    let e = read_dir(d.path(), zero()).unwrap_err();
    assert_eq!(e.problem(), Some(&Problem::TooLarge(MAX_RECORD_BYTES)));
    assert!(
        e.to_string().contains(&format!("record at offset {at}")),
        "{e}"
    );
}

use crate::test_rng::Rng;

#[test]
fn property_write_then_read_and_mutations_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case in 0..64 {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("wal");
        let base = rng.below(1000);
        let term = 1 + rng.below(5);
        let n = rng.below(40);
        let ents: Vec<Entry> = (0..n)
            .map(|i| {
                let len = rng.below(300) as usize;
                let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                Entry {
                    r#type: rng.below(3) as i32,
                    term,
                    index: base + 1 + i,
                    data: if rng.below(4) == 0 { None } else { Some(data) },
                }
            })
            .collect();
        let hs = HardState {
            term,
            vote: rng.below(3),
            commit: base + rng.below(n + 1),
        };
        let s = snap(base, if base == 0 { 0 } else { term });
        let meta = Metadata {
            node_id: rng.next(),
            cluster_id: rng.next(),
        };
        write_dir(&target, &meta, s.clone(), &hs, &ents).unwrap();
        let c = read_dir(&target, s.clone()).unwrap();
        assert_eq!(c.entries, ents, "case {case}");
        assert_eq!(c.metadata, meta);
        if !hs.is_empty() {
            assert_eq!(c.hard_state, hs);
        }
        // Mutate: flip bytes, truncate, or both; the reader must answer.
        let seg = target.join(segment_name(0, 0));
        let mut orig = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(std::fs::File::open(&seg).unwrap(), 1 << 20),
            &mut orig,
        )
        .unwrap();
        let used = orig.iter().rposition(|&b| b != 0).unwrap_or(0) + 1;
        for _ in 0..8 {
            let mut m = orig[..(used + 64).min(orig.len())].to_vec();
            match rng.below(3) {
                0 => {
                    let k = rng.below(m.len() as u64) as usize;
                    m[k] ^= 1 << rng.below(8);
                }
                1 => m.truncate(rng.below(m.len() as u64) as usize),
                _ => {
                    let k = rng.below(m.len() as u64) as usize;
                    m[k] = rng.next() as u8;
                    m.truncate(k + rng.below((m.len() - k) as u64) as usize);
                }
            }
            std::fs::write(&seg, &m).unwrap();
            let _ = read_dir(&target, s.clone());
            let _ = read_dir(&target, zero());
            let _ = valid_snapshots(&target);
            let _ = classify_dir(&target);
        }
        // Arbitrary bytes, including huge length fields.
        let junk: Vec<u8> = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
        std::fs::write(&seg, &junk).unwrap();
        let _ = read_dir(&target, zero());
        let mut huge = (u64::MAX >> 8).to_le_bytes().to_vec();
        huge.extend_from_slice(&[1; 32]);
        std::fs::write(&seg, &huge).unwrap();
        assert!(read_dir(&target, zero()).is_err());
        // Snap files: truncations and flips.
        let snapf = crate::snap::encode_snap_file(&crate::raftpb::Snapshot {
            data: Some(
                ents.first()
                    .and_then(|e| e.data.clone())
                    .unwrap_or_default(),
            ),
            metadata: Default::default(),
        });
        for _ in 0..8 {
            let mut m = snapf.clone();
            if !m.is_empty() {
                let k = rng.below(m.len() as u64) as usize;
                m[k] ^= rng.next() as u8;
                m.truncate(rng.below(m.len() as u64 + 1) as usize);
            }
            let _ = crate::snap::decode_snap_file(Path::new("x.snap"), &m);
        }
    }
}
