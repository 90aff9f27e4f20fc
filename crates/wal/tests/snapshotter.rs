//! Snapshot files: save, load the newest intact one, purge.

use std::fs;
use std::path::{Path, PathBuf};

use raft::eraftpb::Snapshot;
use wal::{Error, Snapshotter};

fn snapshot(term: u64, index: u64) -> Snapshot {
    let mut s = Snapshot::default();
    s.mut_metadata().term = term;
    s.mut_metadata().index = index;
    s.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
    s.data = format!("state machine at {index}").into_bytes().into();
    s
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn snap_path(dir: &Path, term: u64, index: u64) -> PathBuf {
    dir.join(format!("{term:016x}-{index:016x}.snap"))
}

#[test]
fn save_and_load_newest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("member").join("snap");
    let s = Snapshotter::new(&dir);
    assert!(dir.is_dir());
    assert_eq!(s.load_newest().unwrap(), None);

    s.save(&snapshot(1, 10)).unwrap();
    s.save(&snapshot(1, 20)).unwrap();
    s.save(&snapshot(2, 30)).unwrap();
    // An empty snapshot is not written.
    s.save(&Snapshot::default()).unwrap();
    assert_eq!(
        names(&dir),
        vec![
            "0000000000000001-000000000000000a.snap",
            "0000000000000001-0000000000000014.snap",
            "0000000000000002-000000000000001e.snap",
        ]
    );
    assert_eq!(s.load_newest().unwrap(), Some(snapshot(2, 30)));
}

#[test]
fn corrupt_files_are_skipped_and_renamed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("snap");
    let s = Snapshotter::new(&dir);
    s.save(&snapshot(1, 10)).unwrap();
    s.save(&snapshot(1, 20)).unwrap();
    s.save(&snapshot(1, 30)).unwrap();

    // Newest: a flipped byte. Next: cut short.
    let newest = snap_path(&dir, 1, 30);
    let mut bytes = fs::read(&newest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&newest, &bytes).unwrap();
    let middle = snap_path(&dir, 1, 20);
    let bytes = fs::read(&middle).unwrap();
    fs::write(&middle, &bytes[..bytes.len() / 2]).unwrap();

    assert_eq!(s.load_newest().unwrap(), Some(snapshot(1, 10)));
    assert_eq!(
        names(&dir),
        vec![
            "0000000000000001-000000000000000a.snap",
            "0000000000000001-0000000000000014.snap.broken",
            "0000000000000001-000000000000001e.snap.broken",
        ]
    );
    // Loading again finds the same one without touching anything.
    assert_eq!(s.load_newest().unwrap(), Some(snapshot(1, 10)));

    // A file whose contents do not match its name is corrupt too.
    fs::copy(snap_path(&dir, 1, 10), snap_path(&dir, 1, 40)).unwrap();
    assert_eq!(s.load_newest().unwrap(), Some(snapshot(1, 10)));
    assert!(dir
        .join("0000000000000001-0000000000000028.snap.broken")
        .exists());
}

#[test]
fn unknown_version_is_an_error_not_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Snapshotter::new(tmp.path());
    s.save(&snapshot(1, 10)).unwrap();
    let path = snap_path(tmp.path(), 1, 10);
    let mut bytes = fs::read(&path).unwrap();
    bytes[4] = 7;
    fs::write(&path, &bytes).unwrap();
    let err = s.load_newest().unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedVersion { found: 7, .. }),
        "{err}"
    );
    assert!(path.exists());
}

#[test]
fn purge_keeps_the_newest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let s = Snapshotter::new(dir);
    for i in 1..=5 {
        s.save(&snapshot(1, i * 100)).unwrap();
    }
    fs::write(dir.join("unrelated.txt"), b"x").unwrap();
    s.purge(2).unwrap();
    assert_eq!(
        names(dir),
        vec![
            "0000000000000001-0000000000000190.snap",
            "0000000000000001-00000000000001f4.snap",
            "unrelated.txt",
        ]
    );
    s.purge(5).unwrap();
    assert_eq!(names(dir).len(), 3);
    s.purge(0).unwrap();
    assert_eq!(names(dir), vec!["unrelated.txt"]);
    assert_eq!(s.load_newest().unwrap(), None);
}

#[test]
fn leftover_tmp_files_are_removed_at_startup() {
    let tmp = tempfile::tempdir().unwrap();
    let leftover = tmp
        .path()
        .join("0000000000000001-0000000000000064.snap.tmp");
    fs::write(&leftover, b"half written").unwrap();
    let s = Snapshotter::new(tmp.path());
    assert!(!leftover.exists());
    assert_eq!(s.load_newest().unwrap(), None);
}
