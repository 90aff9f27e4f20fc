//! The log through its public API, with damage done to the files on disk.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use raft::eraftpb::{Entry, HardState};
use wal::{Error, ReadState, Wal, WalSnapshot};

const META: &[u8] = b"member 1 cluster 7";

fn entry(index: u64, term: u64) -> Entry {
    let mut e = Entry::default();
    e.set_index(index);
    e.set_term(term);
    e.set_data(
        format!("value of entry {index} in term {term}, padded to some length")
            .into_bytes()
            .into(),
    );
    e
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| entry(i, term)).collect()
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    let mut hs = HardState::default();
    hs.set_term(term);
    hs.set_vote(vote);
    hs.set_commit(commit);
    hs
}

fn indexes_and_terms(state: &ReadState) -> Vec<(u64, u64)> {
    state.entries.iter().map(|e| (e.index, e.term)).collect()
}

fn expect(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<(u64, u64)> {
    range.map(|i| (i, term)).collect()
}

fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    paths.sort();
    paths
}

/// Offset just past the last non-zero byte of a file (the end of its records).
fn data_end(path: &Path) -> usize {
    let bytes = fs::read(path).unwrap();
    bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1)
}

fn write_at(path: &Path, offset: usize, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset as u64)).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

fn flip_byte(path: &Path, offset: usize) {
    let bytes = fs::read(path).unwrap();
    write_at(path, offset, &[bytes[offset] ^ 0x5a]);
}

/// A log of entries 1..=n (term 1), one save per entry, with small segments if asked.
fn log_with(dir: &Path, n: u64, segment_size: Option<u64>) -> Wal {
    let mut w = Wal::create(dir, META).unwrap();
    if let Some(size) = segment_size {
        w.segment_size_bytes(size);
    }
    for i in 1..=n {
        w.save(Some(&hard_state(1, 1, i)), &[entry(i, 1)]).unwrap();
    }
    w
}

fn open(dir: &Path) -> Result<(Wal, ReadState), Error> {
    Wal::open(dir, WalSnapshot::default())
}

#[test]
fn create_save_open_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("member").join("wal");
    assert!(!Wal::exists(&dir));
    let mut w = Wal::create(&dir, META).unwrap();
    assert!(Wal::exists(&dir));
    assert!(!tmp.path().join("member").join("wal.tmp").exists());
    assert_eq!(w.last_index(), 0);

    w.save(None, &[]).unwrap();
    w.save(Some(&hard_state(1, 1, 0)), &entries(1..=10, 1))
        .unwrap();
    w.save(Some(&hard_state(2, 3, 7)), &[]).unwrap();
    assert_eq!(w.last_index(), 10);
    drop(w);

    let (mut w, state) = open(&dir).unwrap();
    assert_eq!(state.metadata, META);
    assert_eq!(state.hard_state, hard_state(2, 3, 7));
    assert_eq!(state.entries, entries(1..=10, 1));
    assert_eq!(state.repaired_tail_bytes, 0);
    assert_eq!(w.last_index(), 10);

    // Appending after a reopen continues the log.
    w.save(Some(&hard_state(2, 3, 12)), &entries(11..=20, 2))
        .unwrap();
    drop(w);
    let (w, state) = open(&dir).unwrap();
    let mut want = expect(1..=10, 1);
    want.extend(expect(11..=20, 2));
    assert_eq!(indexes_and_terms(&state), want);
    assert_eq!(state.hard_state, hard_state(2, 3, 12));
    assert_eq!(w.last_index(), 20);
}

#[test]
fn create_refuses_existing_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    drop(Wal::create(&dir, META).unwrap());
    let err = Wal::create(&dir, META).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");

    // An existing empty directory is fine.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    drop(Wal::create(&empty, META).unwrap());
    assert!(Wal::exists(&empty));

    let err = open(&tmp.path().join("nothing-here")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    let none = tmp.path().join("none");
    fs::create_dir(&none).unwrap();
    let err = open(&none).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

#[test]
fn second_open_is_refused_while_locked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let w = Wal::create(&dir, META).unwrap();
    let err = open(&dir).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    drop(w);
    let (_w, _) = open(&dir).unwrap();
}

#[test]
fn many_segments_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = log_with(&dir, 300, Some(2048));
    drop(w);
    let paths = segment_paths(&dir);
    assert!(paths.len() > 10, "only {} segments", paths.len());
    for (seq, p) in paths.iter().enumerate() {
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(&format!("{seq:016x}-")), "{name}");
    }

    let (w2, state) = open(&dir).unwrap();
    assert_eq!(state.entries, entries(1..=300, 1));
    assert_eq!(state.hard_state, hard_state(1, 1, 300));
    assert_eq!(w2.last_index(), 300);
    w = w2;
    w.segment_size_bytes(2048);
    for i in 301..=400 {
        w.save(None, &[entry(i, 2)]).unwrap();
    }
    drop(w);
    let (_, state) = open(&dir).unwrap();
    assert_eq!(state.entries.len(), 400);
    assert_eq!(state.entries[399].index, 400);
    assert_eq!(state.hard_state, hard_state(1, 1, 300));
}

#[test]
fn overwritten_suffix_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = Wal::create(&dir, META).unwrap();
    w.save(None, &entries(1..=10, 1)).unwrap();
    // A new leader overwrites 6.. with its own entries.
    w.save(Some(&hard_state(2, 2, 5)), &entries(6..=8, 2))
        .unwrap();
    assert_eq!(w.last_index(), 8);
    drop(w);
    let (mut w, state) = open(&dir).unwrap();
    let mut want = expect(1..=5, 1);
    want.extend(expect(6..=8, 2));
    assert_eq!(indexes_and_terms(&state), want);
    assert_eq!(w.last_index(), 8);

    // And across a segment boundary: fill segments, then overwrite from an old index.
    w.segment_size_bytes(1024);
    w.save(None, &entries(9..=60, 2)).unwrap();
    for i in 61..=100 {
        w.save(None, &[entry(i, 2)]).unwrap();
    }
    w.save(None, &entries(40..=45, 3)).unwrap();
    drop(w);
    let (w, state) = open(&dir).unwrap();
    let mut want = expect(1..=5, 1);
    want.extend(expect(6..=39, 2));
    want.extend(expect(40..=45, 3));
    assert_eq!(indexes_and_terms(&state), want);
    assert_eq!(w.last_index(), 45);
}

#[test]
fn release_to_deletes_old_segments_and_open_from_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = Wal::create(&dir, META).unwrap();
    w.segment_size_bytes(2048);
    w.save(Some(&hard_state(4, 2, 1)), &[]).unwrap();
    for i in 1..=300 {
        w.save(None, &[entry(i, 4)]).unwrap();
    }
    let snap = WalSnapshot {
        index: 200,
        term: 4,
    };
    w.save_snapshot(snap).unwrap();
    let before = segment_paths(&dir).len();
    w.release_to(200).unwrap();
    let after = segment_paths(&dir);
    assert!(after.len() < before / 2, "{before} -> {}", after.len());
    // The oldest kept segment starts at or below 200.
    let oldest = after[0].file_name().unwrap().to_str().unwrap();
    let first_index = u64::from_str_radix(&oldest[17..33], 16).unwrap();
    assert!(first_index <= 200 && first_index > 150, "{oldest}");
    // Releasing again, or below what is left, changes nothing.
    w.release_to(200).unwrap();
    w.release_to(3).unwrap();
    assert_eq!(segment_paths(&dir), after);
    drop(w);

    let (mut w, state) = Wal::open(&dir, snap).unwrap();
    assert_eq!(state.entries, entries(201..=300, 4));
    // The hard state was saved before the released segments and survives them.
    assert_eq!(state.hard_state, hard_state(4, 2, 1));
    assert_eq!(state.metadata, META);
    assert_eq!(w.last_index(), 300);
    w.save(None, &[entry(301, 4)]).unwrap();
    drop(w);

    let err = open(&dir).unwrap_err();
    assert!(matches!(err, Error::SnapshotNotCovered { .. }), "{err}");
    let err = Wal::open(
        &dir,
        WalSnapshot {
            index: 250,
            term: 4,
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::SnapshotNotFound { .. }), "{err}");
    let err = Wal::open(
        &dir,
        WalSnapshot {
            index: 200,
            term: 3,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::SnapshotMismatch { wal_term: 4, .. }),
        "{err}"
    );
    let (_, state) = Wal::open(&dir, snap).unwrap();
    assert_eq!(state.entries.last().map(|e| e.index), Some(301));
}

#[test]
fn snapshot_ahead_of_the_log() {
    // A follower installs a leader's snapshot beyond its own last entry.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = log_with(&dir, 5, None);
    let snap = WalSnapshot { index: 50, term: 3 };
    w.save_snapshot(snap).unwrap();
    assert_eq!(w.last_index(), 50);
    w.save(None, &entries(51..=53, 3)).unwrap();
    drop(w);
    let (w, state) = Wal::open(&dir, snap).unwrap();
    assert_eq!(indexes_and_terms(&state), expect(51..=53, 3));
    assert_eq!(w.last_index(), 53);
}

#[test]
fn torn_tail_cut_mid_record_is_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    drop(log_with(&dir, 10, None));
    let tail = segment_paths(&dir).pop().unwrap();
    // Cut the file inside the last record (the hard state of entry 10's save).
    let end = data_end(&tail);
    let f = OpenOptions::new().write(true).open(&tail).unwrap();
    f.set_len((end - 5) as u64).unwrap();
    drop(f);

    let (mut w, state) = open(&dir).unwrap();
    assert!(state.repaired_tail_bytes > 0);
    assert_eq!(state.entries, entries(1..=10, 1));
    assert_eq!(state.hard_state, hard_state(1, 1, 9));
    w.save(Some(&hard_state(1, 1, 11)), &[entry(11, 1)])
        .unwrap();
    drop(w);

    let (_, state) = open(&dir).unwrap();
    assert_eq!(state.repaired_tail_bytes, 0);
    assert_eq!(state.entries, entries(1..=11, 1));
    assert_eq!(state.hard_state, hard_state(1, 1, 11));
}

/// `Wal::read` sees what `Wal::open` sees, while the log is locked by a writer, and
/// leaves a torn tail where it is.
#[test]
fn read_only_takes_no_lock_and_repairs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let w = log_with(&dir, 10, Some(4096));
    let state = Wal::read(&dir, WalSnapshot::default()).unwrap();
    assert_eq!(state.entries, entries(1..=10, 1));
    assert_eq!(state.metadata, META);
    drop(w);

    let tail = segment_paths(&dir).pop().unwrap();
    let end = data_end(&tail);
    let f = OpenOptions::new().write(true).open(&tail).unwrap();
    f.set_len((end - 5) as u64).unwrap();
    drop(f);
    let before = fs::read(&tail).unwrap();
    let state = Wal::read(&dir, WalSnapshot::default()).unwrap();
    assert!(state.repaired_tail_bytes > 0);
    assert_eq!(state.entries, entries(1..=10, 1));
    assert_eq!(fs::read(&tail).unwrap(), before, "read changed the file");

    fs::create_dir(tmp.path().join("empty")).unwrap();
    let err = Wal::read(&tmp.path().join("empty"), WalSnapshot::default()).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

#[test]
fn torn_tail_garbage_then_zeros_is_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    drop(log_with(&dir, 5, None));
    let tail = segment_paths(&dir).pop().unwrap();
    // Records are 8-byte aligned; the last one may end in zero padding.
    let end = data_end(&tail).div_ceil(8) * 8;
    // Half a sector of garbage where the next record would have gone.
    let garbage: Vec<u8> = (0..300u32).map(|i| (i * 7 + 13) as u8 | 1).collect();
    write_at(&tail, end, &garbage);

    let (mut w, state) = open(&dir).unwrap();
    assert_eq!(state.repaired_tail_bytes, 300);
    assert_eq!(state.entries, entries(1..=5, 1));
    assert_eq!(state.hard_state, hard_state(1, 1, 5));
    w.save(None, &[entry(6, 1)]).unwrap();
    drop(w);
    // The garbage is gone for good: nothing is left to repair.
    let (_, state) = open(&dir).unwrap();
    assert_eq!(state.repaired_tail_bytes, 0);
    assert_eq!(state.entries, entries(1..=6, 1));
}

#[test]
fn torn_last_record_followed_by_zeros_is_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    drop(log_with(&dir, 5, None));
    let tail = segment_paths(&dir).pop().unwrap();
    // Damage the payload of the last record, as if its last sector never made it.
    let end = data_end(&tail);
    flip_byte(&tail, end - 2);
    let (_, state) = open(&dir).unwrap();
    assert!(state.repaired_tail_bytes > 0);
    assert_eq!(state.hard_state, hard_state(1, 1, 4));
    assert_eq!(state.entries, entries(1..=5, 1));
}

#[test]
fn damage_early_in_the_last_segment_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    drop(log_with(&dir, 20, None));
    let tail = segment_paths(&dir).pop().unwrap();
    let len_before = fs::metadata(&tail).unwrap().len();
    // Every byte of an early record must be covered: payload, header, padding.
    for offset in [200, 203, 256, 300, 311] {
        flip_byte(&tail, offset);
        let err = open(&dir).unwrap_err();
        match &err {
            Error::Corrupt { path, .. } => assert_eq!(path, &tail),
            other => panic!("offset {offset}: {other}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("not at the tail"), "{msg}");
        assert!(msg.contains("refusing to start"), "{msg}");
        flip_byte(&tail, offset);
    }
    // Nothing was truncated by the refused opens.
    assert_eq!(fs::metadata(&tail).unwrap().len(), len_before);
    let (_, state) = open(&dir).unwrap();
    assert_eq!(state.entries, entries(1..=20, 1));
}

#[test]
fn damage_in_an_earlier_segment_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    drop(log_with(&dir, 100, Some(2048)));
    let paths = segment_paths(&dir);
    assert!(paths.len() > 3);
    let first = &paths[1];
    // Even the very last byte of an earlier segment counts: it is not the tail.
    let end = data_end(first);
    flip_byte(first, end - 1);
    let err = open(&dir).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("not in the last segment"), "{err}");
    flip_byte(first, end - 1);

    // A truncated earlier segment is corruption too.
    let f = OpenOptions::new().write(true).open(first).unwrap();
    f.set_len((end - 3) as u64).unwrap();
    drop(f);
    let err = open(&dir).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[test]
fn missing_segment_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    drop(log_with(&dir, 100, Some(2048)));
    let paths = segment_paths(&dir);
    fs::remove_file(&paths[2]).unwrap();
    let err = open(&dir).unwrap_err();
    assert!(err.to_string().contains("sequence gap"), "{err}");
}

#[test]
fn leftover_tmp_segment_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    drop(log_with(&dir, 3, None));
    let leftover = dir.join("0000000000000001-0000000000000004.wal.tmp");
    fs::write(&leftover, b"half a cut").unwrap();
    let (mut w, state) = open(&dir).unwrap();
    assert!(!leftover.exists());
    assert_eq!(state.entries, entries(1..=3, 1));
    // The next cut can use that name.
    w.segment_size_bytes(1);
    w.save(None, &[entry(4, 1)]).unwrap();
    assert!(dir.join("0000000000000001-0000000000000005.wal").exists());
}

#[test]
fn tail_fragments_without_a_record_header_are_torn_but_a_record_after_damage_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    drop(log_with(&dir, 5, None));
    let tail = segment_paths(&dir).pop().unwrap();
    let end = data_end(&tail).div_ceil(8) * 8;
    // Sectors of a multi-sector write that landed out of order: fragments, a hole, more
    // fragments. None of it holds a record header, so none of it was ever acknowledged.
    let garbage: Vec<u8> = (0..512u32).map(|i| (i * 31 + 5) as u8 | 0x80).collect();
    write_at(&tail, end, &garbage);
    write_at(&tail, end + 4096, &garbage[..100]);
    let (w, state) = open(&dir).unwrap();
    assert_eq!(state.repaired_tail_bytes, 4096 + 100);
    assert_eq!(state.entries, entries(1..=5, 1));
    drop(w);

    // Damage followed by something that parses as a record header: that record could have
    // been acknowledged, so this is corruption, not a torn write.
    write_at(&tail, end, &garbage[..64]);
    let start_of_file = fs::read(&tail).unwrap()[..256].to_vec();
    write_at(&tail, end + 1024, &start_of_file);
    let err = open(&dir).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Corrupt { .. }), "{msg}");
    assert!(
        msg.contains(&format!("a valid record follows at offset {}", end + 1024)),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("at offset {end}: refusing to start")),
        "{msg}"
    );
}
