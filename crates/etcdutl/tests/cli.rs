//! The etcdutl binary as a user runs it, on snapshot files made here from a
//! store: output formats, exit codes and error lines (etcd's), and a
//! restored data directory. Members started from restored directories are
//! tested in `crates/server/tests/snapshot_restore.rs`.

use std::path::{Path, PathBuf};

use api::etcdserverpb::PutRequest;
use sha2::{Digest, Sha256};

mod support;

use support::{error_line, etcdutl};

/// A snapshot file as Maintenance.Snapshot streams it: three puts, the
/// image padded to 512 bytes, its SHA-256. Returns (file, revision).
fn snapshot_file(dir: &Path) -> (PathBuf, i64) {
    let store = mvcc::Store::open(&dir.join("src/db"), mvcc::StoreOptions::default()).unwrap();
    for (i, key) in ["a", "b", "c"].iter().enumerate() {
        let mut batch = store.write_batch().unwrap();
        batch
            .put(&PutRequest {
                key: key.as_bytes().to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            })
            .unwrap();
        batch.set_consistent_index(i as u64 + 10, 2);
        batch.commit(true).unwrap();
    }
    let mut bytes = Vec::new();
    store.write_image(&mut bytes).unwrap();
    bytes.resize(bytes.len().div_ceil(512) * 512, 0);
    let digest = Sha256::digest(&bytes);
    bytes.extend_from_slice(&digest);
    let path = dir.join("snap.db");
    std::fs::write(&path, bytes).unwrap();
    (path, store.current_revision())
}

#[test]
fn version() {
    let run = etcdutl(&["version"]);
    assert_eq!(run.code, 0);
    assert!(run
        .stdout
        .starts_with("etcdutl version: 3.6.0\nAPI version: 3.6\n"));
}

#[test]
fn status_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let (file, revision) = snapshot_file(dir.path());
    let file = file.display().to_string();
    let json = etcdutl(&["snapshot", "status", &file, "-w", "json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["revision"], revision);
    assert_eq!(v["version"], "3.6.0");
    let hash = v["hash"].as_u64().unwrap();
    let simple = etcdutl(&["snapshot", "status", &file]);
    assert_eq!(
        simple.stdout,
        format!(
            "{hash:x}, {revision}, {}, {} B, 3.6.0\n",
            v["totalKey"], v["totalSize"]
        )
    );
    let table = etcdutl(&["snapshot", "status", &file, "--write-out=table"]);
    assert!(table
        .stdout
        .contains("|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE | VERSION |"));
    let fields = etcdutl(&["snapshot", "status", &file, "-w", "fields"]);
    assert!(fields.stdout.starts_with(&format!("\"Hash\" : {hash}\n")));

    let protobuf = etcdutl(&["snapshot", "status", &file, "-w", "protobuf"]);
    assert_eq!(protobuf.code, 4);
    assert_eq!(
        error_line(&protobuf),
        "Error: protobuf not supported as output format"
    );
    let unknown = etcdutl(&["snapshot", "status", &file, "-w", "yaml"]);
    assert_eq!(
        (unknown.code, error_line(&unknown)),
        (4, "Error: unsupported output format")
    );
}

#[test]
fn argument_errors() {
    let cases: [(&[&str], i32, &str); 6] = [
        (
            &["snapshot", "status"],
            128,
            "Error: snapshot status requires exactly one argument",
        ),
        (
            &["snapshot", "status", "a", "b"],
            128,
            "Error: snapshot status requires exactly one argument",
        ),
        (
            &["snapshot", "status", "/nonexistent.db"],
            1,
            "Error: stat /nonexistent.db: no such file or directory",
        ),
        (
            &["snapshot", "restore"],
            128,
            "Error: snapshot restore requires exactly one argument",
        ),
        (
            &["snapshot", "restore", "x.db", "--bump-revision=5"],
            128,
            "Error: --mark-compacted required if --revision-bump > 0",
        ),
        (&["--foo"], 1, "Error: unknown flag: --foo"),
    ];
    for (args, code, line) in cases {
        let run = etcdutl(args);
        assert_eq!((run.code, error_line(&run)), (code, line), "{args:?}");
    }
    let run = etcdutl(&[
        "snapshot",
        "restore",
        "/nonexistent.db",
        "--data-dir=/tmp/never-created-by-etcdutl",
    ]);
    assert_eq!(
        (run.code, error_line(&run)),
        (1, "Error: open /nonexistent.db: no such file or directory")
    );
    assert!(!Path::new("/tmp/never-created-by-etcdutl").exists());
}

#[test]
fn restore_writes_a_member_directory_once() {
    let dir = tempfile::tempdir().unwrap();
    let (file, revision) = snapshot_file(dir.path());
    let file = file.display().to_string();
    let data_dir = dir.path().join("restored");
    let data_flag = format!("--data-dir={}", data_dir.display());
    let wal_dir = dir.path().join("wal-elsewhere");
    let wal_flag = format!("--wal-dir={}", wal_dir.display());
    let run = etcdutl(&["snapshot", "restore", &file, &data_flag, &wal_flag]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("\tinfo\t"),
        "zap console lines: {}",
        run.stderr
    );
    assert!(data_dir.join("member/snap/db").is_file());
    assert!(data_dir
        .join("member/snap/0000000000000001-0000000000000001.snap")
        .is_file());
    assert!(std::fs::read_dir(&wal_dir).unwrap().count() > 0);
    assert!(!data_dir.join("member/wal").exists());

    // The backend follows the new log: consistent index 1 (one founding
    // member), the snapshot's revision.
    let store = mvcc::Store::open(
        &data_dir.join("member/snap/db"),
        mvcc::StoreOptions::default(),
    )
    .unwrap();
    assert_eq!(store.consistent_index(), (1, 1));
    assert_eq!(store.current_revision(), revision);
    drop(store);

    let again = etcdutl(&["snapshot", "restore", &file, &data_flag]);
    assert_eq!(again.code, 1);
    assert_eq!(
        error_line(&again),
        format!(
            "Error: data-dir \"{}\" not empty or could not be read",
            data_dir.display()
        )
    );
    let other = dir.path().join("other");
    let run = etcdutl(&[
        "snapshot",
        "restore",
        &file,
        &format!("--data-dir={}", other.display()),
        &wal_flag,
    ]);
    assert_eq!(
        (run.code, error_line(&run).to_string()),
        (
            1,
            format!("Error: wal-dir \"{}\" exists", wal_dir.display())
        )
    );
    let run = etcdutl(&[
        "snapshot",
        "restore",
        &file,
        "--name=other",
        &format!("--data-dir={}", other.display()),
    ]);
    assert_eq!(
        error_line(&run),
        "Error: couldn't find local name \"other\" in the initial cluster configuration"
    );
    assert!(!other.exists(), "nothing is left by a refused restore");
}
