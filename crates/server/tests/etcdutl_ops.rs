//! `etcdutl defrag`, `hashkv` and `migrate` on the data directory of a real
//! member of ours: the offline HashKV equals what etcdctl 3.5.1's `endpoint
//! hashkv` got from the running member; an offline defragmentation keeps
//! every key and hash; a running member is never touched; migrations move
//! the storage version as etcd 3.6's do, and the server follows them (a
//! version it cannot serve stops it at start).
//!
//! The `etcdutl` binary is taken from the target directory beside this test
//! binary (`cargo test --workspace` builds it; alone, run
//! `cargo build --release -p etcdutl` first).

mod common;

use std::path::Path;

use common::*;

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or_default()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn ctl_ok(server: &EtcdProcess, args: &[&str]) -> String {
    let out = Etcdctl::reference(Kind::Ref35).run(&server.endpoint(), args, None);
    assert_eq!(out.code, 0, "etcdctl {args:?}: {out:?}");
    out.stdout
}

/// etcdctl 3.5.1's `endpoint hashkv [--rev]` against the running member:
/// (hash, compact revision, header revision).
fn endpoint_hashkv(server: &EtcdProcess, rev: Option<i64>) -> (u64, i64, i64) {
    let mut args = vec!["endpoint", "hashkv", "-w", "json"];
    let rev_flag = rev.map(|r| format!("--rev={r}"));
    if let Some(flag) = &rev_flag {
        args.push(flag);
    }
    let v = json(&ctl_ok(server, &args));
    let h = &v[0]["HashKV"];
    (
        h["hash"].as_u64().expect("hash"),
        h["compact_revision"].as_i64().unwrap_or(0),
        h["header"]["revision"].as_i64().expect("revision"),
    )
}

/// `etcdutl hashkv <db> -w json [--rev]`: (hash, hash revision, compact revision).
fn offline_hashkv(db: &Path, rev: Option<i64>) -> (u64, i64, i64) {
    let db = db.display().to_string();
    let mut args = vec!["hashkv", db.as_str(), "-w", "json"];
    let rev_flag = rev.map(|r| format!("--rev={r}"));
    if let Some(flag) = &rev_flag {
        args.push(flag);
    }
    let out = run(&etcdutl(), &args);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stderr, "", "hashkv logs nothing");
    let v = json(&out.stdout);
    (
        v["hash"].as_u64().expect("hash"),
        v["hashRevision"].as_i64().expect("hashRevision"),
        v["compactRevision"].as_i64().expect("compactRevision"),
    )
}

#[test]
fn offline_hashkv_equals_what_the_running_member_answered() {
    let mut server = EtcdProcess::start(Kind::Ours, &[]);
    for i in 0..6 {
        ctl_ok(&server, &["put", &format!("k{}", i % 4), &format!("v{i}")]);
    }
    ctl_ok(&server, &["del", "k1"]);
    ctl_ok(&server, &["put", "k5", "after delete"]);
    ctl_ok(&server, &["compact", "5"]);
    ctl_ok(&server, &["del", "k", "--prefix"]);
    ctl_ok(&server, &["put", "k9", "last"]);
    let (hash, compact, revision) = endpoint_hashkv(&server, None);
    assert_eq!(compact, 5);
    let (hash_at_8, _, _) = endpoint_hashkv(&server, Some(8));
    server.terminate();

    let db = server.data_dir().join("member/snap/db");
    assert_eq!(offline_hashkv(&db, None), (hash, revision, compact));
    assert_eq!(offline_hashkv(&db, Some(8)), (hash_at_8, 8, compact));

    // etcd's revision errors; etcd 3.6 hashes the compaction revision itself.
    let db_arg = db.display().to_string();
    for (rev, line) in [
        ("4", "Error: mvcc: required revision has been compacted"),
        ("99", "Error: mvcc: required revision is a future revision"),
    ] {
        let out = run(&etcdutl(), &["hashkv", &db_arg, "--rev", rev]);
        assert_eq!((out.code, last_line(&out.stderr)), (1, line), "{out:?}");
    }
    let at_compaction = run(&etcdutl(), &["hashkv", &db_arg, "--rev", "5"]);
    assert_eq!(at_compaction.code, 0, "{at_compaction:?}");
    assert!(
        at_compaction.stdout.ends_with(", 5, 5\n"),
        "{at_compaction:?}"
    );

    // The member still starts and serves after the offline reads.
    server.restart();
    assert_eq!(endpoint_hashkv(&server, None), (hash, compact, revision));
}

#[test]
fn offline_defrag_keeps_everything_and_never_touches_a_running_member() {
    let mut server = EtcdProcess::start(Kind::Ours, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = server.client_url();
    runtime.block_on(async move {
        let mut client = common::client::connect(&[url]).await;
        // About 4 MB of history, half of it deleted and compacted away.
        let value = vec![b'v'; 1024];
        for batch in 0..40 {
            let ops: Vec<etcd_client::TxnOp> = (0..100)
                .map(|i| {
                    etcd_client::TxnOp::put(
                        format!("k/{:05}", batch * 100 + i),
                        value.clone(),
                        None,
                    )
                })
                .collect();
            common::client::must("txn", client.txn(etcd_client::Txn::new().and_then(ops))).await;
        }
        let options = etcd_client::DeleteOptions::new().with_range("k/02000");
        common::client::must("delete", client.delete("k/00000", Some(options))).await;
        let rev = common::client::must("get", client.get("k/", None)).await;
        let rev = rev.header().expect("header").revision();
        let options = etcd_client::CompactionOptions::new().with_physical();
        common::client::must("compact", client.compact(rev, Some(options))).await;
    });
    let (hash, compact, revision) = endpoint_hashkv(&server, None);
    let data_dir = server.data_dir();
    let data_arg = format!("--data-dir={}", data_dir.display());
    let db = data_dir.join("member/snap/db");

    // Running: refused at once.
    let refused = run(&etcdutl(), &["defrag", &data_arg]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert_eq!(
        last_line(&refused.stderr),
        format!(
            "Error: Failed to defragment etcd data[{}] (data directory {}/member is in use by \
             another etcd process (cannot lock {}/member/lock))",
            data_dir.display(),
            data_dir.display(),
            data_dir.display()
        )
    );
    server.terminate();
    let size_before = std::fs::metadata(&db).unwrap().len();

    // A defragmentation killed before its rename leaves a copy behind; the
    // next run (or start) removes it.
    let leftover = data_dir.join("member/snap/db.defrag");
    std::fs::write(&leftover, b"half a copy").unwrap();
    let out = run(&etcdutl(), &["defrag", &data_arg]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "", "etcdutl defrag prints nothing on success");
    assert!(out.stderr.contains("\tdefragmenting\t"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("\tfinished defragmenting directory\t{\"path\": "),
        "{}",
        out.stderr
    );
    assert!(!leftover.exists());
    let size_after = std::fs::metadata(&db).unwrap().len();
    assert!(size_after < size_before, "{size_before} -> {size_after}");
    assert_eq!(offline_hashkv(&db, None), (hash, revision, compact));

    server.restart();
    assert_eq!(endpoint_hashkv(&server, None), (hash, compact, revision));
    let count = ctl_ok(
        &server,
        &["get", "k/", "--prefix", "--count-only", "-w", "fields"],
    );
    assert!(count.contains("\"Count\" : 2000\n"), "{count}");
    let last = ctl_ok(&server, &["get", "k/03999", "--print-value-only"]);
    assert_eq!(last.trim_end().len(), 1024);
    ctl_ok(&server, &["put", "after", "defrag"]);
}

/// Starts our etcd on `data_dir` expecting it to refuse; returns its log.
fn refused_start(data_dir: &Path) -> String {
    let (client, peer) = (free_port(), free_port());
    let client = format!("http://127.0.0.1:{client}");
    let peer = format!("http://127.0.0.1:{peer}");
    let out = run(
        &Kind::Ours.etcd_bin(),
        &[
            "--name=etcd-test",
            &format!("--data-dir={}", data_dir.display()),
            &format!("--listen-client-urls={client}"),
            &format!("--advertise-client-urls={client}"),
            &format!("--listen-peer-urls={peer}"),
            &format!("--initial-advertise-peer-urls={peer}"),
            &format!("--initial-cluster=etcd-test={peer}"),
            "--initial-cluster-token=etcd-rs-test",
        ],
    );
    assert_ne!(out.code, 0, "etcd started: {out:?}");
    out.stderr + &out.stdout
}

#[test]
fn migrate_moves_the_storage_version_as_etcd_does() {
    let mut server = EtcdProcess::start(Kind::Ours, &[]);
    ctl_ok(&server, &["put", "k", "v"]);
    let version = json(
        http_get(server.client_port(), "/version")
            .expect("/version")
            .split("\r\n\r\n")
            .nth(1)
            .expect("body"),
    );
    assert_eq!(version["storage"], "3.6.0");
    let data = format!("--data-dir={}", server.data_dir().display());
    let migrate = |target: &str, force: bool| {
        let target = format!("--target-version={target}");
        let mut args = vec!["migrate", data.as_str(), target.as_str()];
        if force {
            args.push("--force");
        }
        run(&etcdutl(), &args)
    };

    // Running: refused.
    let out = migrate("3.6", false);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        last_line(&out.stderr).contains("is in use by another etcd process"),
        "{out:?}"
    );
    server.terminate();

    // The member recorded 3.6 as it applied the cluster version.
    let out = migrate("3.6", false);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    assert!(
        out.stderr
            .contains("\tstorage version up-to-date\t{\"storage-version\": \"3.6\"}"),
        "{out:?}"
    );
    // Its WAL sets cluster version 3.6: no downgrade without --force.
    let out = migrate("3.5", false);
    assert_eq!((out.code, last_line(&out.stderr)), (1, "Error: cannot downgrade storage, WAL contains newer entries, as the target version (3.5.0) is lower than the version (3.6.0) detected from WAL logs"), "{out:?}");
    let out = migrate("3.7", false);
    assert_eq!(
        (out.code, last_line(&out.stderr)),
        (
            1,
            "Error: cannot create migration plan: version \"3.7.0\" is not supported"
        ),
        "{out:?}"
    );
    let out = migrate("3.5", true);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("\tnormal migrate failed, trying with force\t"),
        "{out:?}"
    );
    assert!(out.stderr.contains("\twarn\t"), "{out:?}");
    assert!(
        out.stderr.contains("\tforcefully cleared storage version"),
        "{out:?}"
    );
    let out = migrate("3.5", false);
    assert!(
        out.stderr
            .contains("\tstorage version up-to-date\t{\"storage-version\": \"3.5\"}"),
        "{out:?}"
    );

    // A 3.6 member upgrades a 3.5 storage again as it applies.
    server.restart();
    ctl_ok(&server, &["put", "k", "v2"]);
    server.terminate();
    let out = migrate("3.6", false);
    assert!(
        out.stderr
            .contains("\tstorage version up-to-date\t{\"storage-version\": \"3.6\"}"),
        "{out:?}"
    );

    // A version with no step back to 3.6 stops the member at start.
    let out = migrate("3.7", true);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("\tforcefully set storage version\t{\"storage-version\": \"3.7\"}"),
        "{out:?}"
    );
    let log = refused_start(&server.data_dir());
    assert!(
        log.contains(
            r#""msg":"Failed to validate schema","error":"version \"3.7.0\" is not supported""#
        ),
        "{log}"
    );
    let out = migrate("3.6", true);
    assert_eq!(out.code, 0, "{out:?}");
    server.restart();
    assert_eq!(ctl_ok(&server, &["get", "k", "--print-value-only"]), "v2\n");
}

/// Errors that come before any data is read, next to etcd 3.5.1's etcdutl
/// where it has the command.
#[test]
fn argument_errors_match_etcd() {
    let ours = etcdutl();
    let theirs = reference_tool(Kind::Ref35, "etcdutl");
    for args in [&["defrag"][..], &["snapshot", "status"], &["--foo"]] {
        let (a, b) = (run(&ours, args), run(&theirs, args));
        assert_eq!(
            (a.code, last_line(&a.stderr)),
            (b.code, last_line(&b.stderr)),
            "{args:?}"
        );
    }
    let empty = temp_dir();
    let dir = format!("--data-dir={}", empty.path().display());
    for (target, line) in [
        (
            "abc",
            r#"Error: wrong target version format, expected "X.Y", got "abc""#,
        ),
        (
            "3.a",
            r#"Error: failed to parse target version: strconv.ParseInt: parsing "a": invalid syntax"#,
        ),
        (
            "3",
            r#"Error: wrong target version format, expected "X.Y", got "3""#,
        ),
        (
            "3.6.0",
            r#"Error: wrong target version format, expected "X.Y", got "3.6.0""#,
        ),
        (
            "3.4",
            r#"Error: target version "3.4" not supported. Minimal "3.5""#,
        ),
    ] {
        let out = run(&ours, &["migrate", &dir, "--target-version", target]);
        assert_eq!((out.code, last_line(&out.stderr)), (128, line), "{target}");
    }
    let db = empty.path().join("member/snap/db");
    for out in [
        run(&ours, &["migrate", &dir, "--target-version", "3.6"]),
        run(&ours, &["defrag", &dir]),
    ] {
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            last_line(&out.stderr)
                .contains(&format!("open {}: no such file or directory", db.display())),
            "{out:?}"
        );
    }
    assert_eq!(
        std::fs::read_dir(empty.path()).unwrap().count(),
        0,
        "nothing created"
    );
}

/// A snapshot file (what `etcdctl snapshot save` wrote) hashes like the
/// member it came from.
#[test]
fn hashkv_reads_snapshot_files_too() {
    let server = EtcdProcess::start(Kind::Ours, &[]);
    for i in 0..5 {
        ctl_ok(&server, &["put", &format!("k{i}"), "v"]);
    }
    ctl_ok(&server, &["del", "k2"]);
    let (hash, _, revision) = endpoint_hashkv(&server, None);
    let dir = temp_dir();
    let file = dir.path().join("snap.db");
    ctl_ok(&server, &["snapshot", "save", &file.display().to_string()]);
    assert_eq!(offline_hashkv(&file, None), (hash, revision, -1));
    let out = run(&etcdutl(), &["hashkv", "/nonexistent/db"]);
    assert_eq!(
        (out.code, last_line(&out.stderr)),
        (1, "Error: open /nonexistent/db: no such file or directory")
    );
}
