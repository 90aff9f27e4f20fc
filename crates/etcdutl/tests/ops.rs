//! `etcdutl hashkv`, `defrag`, `migrate` and `completion` as a user runs
//! them, on backends made here from a store: every output format, etcd's
//! argument errors and exit codes, the shell scripts. Runs against a real
//! member are in `crates/server/tests/etcdutl_ops.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use api::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest};

mod support;

use support::{error_line, etcdutl};

/// A member's data directory with only a backend: 200 puts of 1 KiB over
/// 20 keys, one delete, a compaction. Returns the backend's path and its
/// HashKV and Hash.
fn backend(dir: &Path) -> (PathBuf, mvcc::KvHash, u32) {
    let db = dir.join("member/snap/db");
    let store = mvcc::Store::open(&db, mvcc::StoreOptions::default()).unwrap();
    for i in 0..200 {
        let mut batch = store.write_batch().unwrap();
        batch
            .put(&PutRequest {
                key: format!("k{:02}", i % 20).into_bytes(),
                value: vec![b'v'; 1024],
                ..Default::default()
            })
            .unwrap();
        batch.set_consistent_index(i + 1, 2);
        batch.commit(true).unwrap();
    }
    let mut batch = store.write_batch().unwrap();
    batch
        .delete_range(&DeleteRangeRequest {
            key: b"k05".to_vec(),
            ..Default::default()
        })
        .unwrap();
    batch
        .compact(&CompactionRequest {
            revision: 150,
            physical: true,
        })
        .unwrap();
    batch.commit(true).unwrap();
    let hash = store.hash_kv_v3_6(0).unwrap();
    let all = store.hash().unwrap();
    drop(store);
    (db, hash, all)
}

#[test]
fn hashkv_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let (db, h, _) = backend(dir.path());
    let db = db.display().to_string();
    let (hash, rev, compact) = (h.hash, h.hash_revision, h.compact_revision);
    assert_eq!((rev, compact), (202, 150));
    let cases = [
        ("simple", format!("{hash}, {rev}, {compact}\n")),
        (
            "json",
            format!("{{\"hash\":{hash},\"hashRevision\":{rev},\"compactRevision\":{compact}}}\n"),
        ),
        (
            "fields",
            format!(
                "\"Hash\" : {hash}\n\"Hash revision\" : {rev}\n\"Compact revision\" : {compact}\n"
            ),
        ),
    ];
    for (format, want) in cases {
        let run = etcdutl(&["hashkv", &db, "-w", format]);
        assert_eq!(
            (run.code, run.stdout.as_str()),
            (0, want.as_str()),
            "{format}: {}",
            run.stderr
        );
        assert_eq!(run.stderr, "", "hashkv logs nothing");
    }
    let table = etcdutl(&["--write-out=table", "hashkv", &db]);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", table.stdout);
    let width = hash.to_string().len();
    let gap = width - "HASH".len();
    assert_eq!(
        lines[1],
        format!(
            "| {}HASH{} | HASH REVISION | COMPACT REVISION |",
            " ".repeat(gap / 2),
            " ".repeat(gap - gap / 2)
        )
    );
    assert_eq!(lines[3], format!("| {hash} | {rev:>13} | {compact:>16} |"));

    let at = etcdutl(&["hashkv", &db, "--rev=160"]);
    assert!(at.stdout.ends_with(", 160, 150\n"), "{}", at.stderr);
    for (args, code, line) in [
        (
            &["-w", "protobuf"][..],
            4,
            "Error: protobuf not supported as output format",
        ),
        (&["-w", "yaml"], 4, "Error: unsupported output format"),
        (
            &["--rev", "149"],
            1,
            "Error: mvcc: required revision has been compacted",
        ),
        (
            &["--rev", "203"],
            1,
            "Error: mvcc: required revision is a future revision",
        ),
    ] {
        let mut all = vec!["hashkv", db.as_str()];
        all.extend_from_slice(args);
        let run = etcdutl(&all);
        assert_eq!((run.code, error_line(&run)), (code, line), "{args:?}");
    }
}

#[test]
fn defrag_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let (db, h, all) = backend(dir.path());
    let data_dir = format!("--data-dir={}", dir.path().display());
    let run = etcdutl(&["defrag", &data_dir]);
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{}", run.stderr);
    assert!(run.stderr.contains("\tfinished defragmenting directory\t"));
    let store = mvcc::Store::open(&db, mvcc::StoreOptions::default()).unwrap();
    assert_eq!(store.hash_kv_v3_6(0).unwrap(), h);
    assert_eq!(store.hash().unwrap(), all);
    assert_eq!(store.consistent_index(), (200, 2));
    drop(store);
    assert!(!dir.path().join("member/snap/db.defrag").exists());
}

#[test]
fn argument_errors() {
    let cases: [(&[&str], i32, &str); 12] = [
        (
            &["defrag"],
            1,
            r#"Error: required flag(s) "data-dir" not set"#,
        ),
        (
            &["migrate"],
            1,
            r#"Error: required flag(s) "data-dir", "target-version" not set"#,
        ),
        (
            &["migrate", "--target-version=3.6"],
            1,
            r#"Error: required flag(s) "data-dir" not set"#,
        ),
        (
            &["migrate", "--data-dir=x", "--target-version=3.6.1"],
            128,
            r#"Error: wrong target version format, expected "X.Y", got "3.6.1""#,
        ),
        (&["hashkv"], 1, "Error: accepts 1 arg(s), received 0"),
        (
            &["hashkv", "a", "b"],
            1,
            "Error: accepts 1 arg(s), received 2",
        ),
        (
            &["hashkv", "a", "--rev=x"],
            1,
            r#"Error: invalid argument "x" for "--rev" flag: strconv.ParseInt: parsing "x": invalid syntax"#,
        ),
        (
            &["hashkv", "/nonexistent.db"],
            1,
            "Error: open /nonexistent.db: no such file or directory",
        ),
        (&["completion"], 1, "Error: accepts 1 arg(s), received 0"),
        (
            &["completion", "tcsh"],
            1,
            r#"Error: invalid argument "tcsh" for "etcdutl completion""#,
        ),
        (
            &["completion", "bash", "zsh"],
            1,
            "Error: accepts 1 arg(s), received 2",
        ),
        (&["frobnicate"], 1, "Run 'etcdutl --help' for usage."),
    ];
    for (args, code, line) in cases {
        let run = etcdutl(args);
        assert_eq!((run.code, error_line(&run)), (code, line), "{args:?}");
    }
    // cobra's prefix matching of command names.
    let run = etcdutl(&["ver"]);
    assert!(
        run.stdout.starts_with("etcdutl version: "),
        "{}",
        run.stderr
    );
}

/// Whether `shell` is installed (the syntax checks need it).
fn have(shell: &str) -> bool {
    Command::new(shell)
        .args(["-c", "exit 0"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn completion_scripts_name_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let run = etcdutl(&["completion", shell]);
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        assert!(run.stdout.len() > 500, "{shell}: {}", run.stdout);
        for command in [
            "defrag",
            "snapshot",
            "hashkv",
            "version",
            "completion",
            "migrate",
        ] {
            assert!(
                run.stdout.contains(command),
                "{shell} script lacks {command}"
            );
        }
        for flag in ["data-dir", "target-version", "write-out"] {
            assert!(run.stdout.contains(flag), "{shell} script lacks --{flag}");
        }
        if matches!(shell, "bash" | "zsh") && have(shell) {
            let script = dir.path().join(format!("etcdutl.{shell}"));
            std::fs::write(&script, &run.stdout).unwrap();
            let check = Command::new(shell).arg("-n").arg(&script).output().unwrap();
            assert!(
                check.status.success(),
                "{shell} -n: {}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }
    if have("bash") {
        // Sourced, the bash script registers its function for etcdutl.
        let script = dir.path().join("etcdutl.bash");
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {} && complete -p etcdutl",
                script.display()
            ))
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("-F _etcdutl etcdutl"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
