//! Snapshots end to end: the real `etcdctl snapshot save` (3.5.1 and 3.4.23)
//! against our server and against etcd 3.5.1; our `etcdutl snapshot status`
//! and `snapshot restore`; members started from the restored directories
//! serving the same keys, revisions and leases; etcd's errors; and writes
//! going on while a large snapshot streams.
//!
//! The `etcdutl` binary is taken from the target directory beside this test
//! binary (`cargo test --workspace` builds it; alone, run
//! `cargo build --release -p etcdutl` first).

mod common;
mod snapshot_support;

use std::path::{Path, PathBuf};

use common::*;
use etcd_client::{GetOptions, LeaseTimeToLiveOptions};
use sha2::{Digest, Sha256};
use snapshot_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_saves_and_etcdutl_restores_a_new_cluster() {
    let (ours, reference) = start_pair(&[]);
    let ctl35 = Etcdctl::reference(Kind::Ref35);
    let ctl34 = Etcdctl::reference(Kind::Ref34);
    let lease_ours = workload(&ctl35, &ours.endpoint());
    let lease_ref = workload(&ctl35, &reference.endpoint());
    let mut original = connect(ours.client_url()).await;
    let expected = dump(&mut original, false).await;
    assert_eq!(expected.0, FINAL_REVISION);
    let expected_hash = hash_kv(&mut original, 0).await;

    // etcdctl 3.5.1 and 3.4.23 save, and print, as they do with etcd.
    let dir = temp_dir();
    let mut ours_files = Vec::new();
    let mut ref_files = Vec::new();
    for (label, ctl) in [("3.5.1", &ctl35), ("3.4.23", &ctl34)] {
        let (ours_path, ours_out) = save(ctl, &ours, dir.path(), &format!("ours-{label}.db"));
        let (ref_path, ref_out) = save(ctl, &reference, dir.path(), &format!("ref-{label}.db"));
        let ours_out = Output {
            stdout: ours_out.stdout.replace("ours-", "<server>-"),
            ..ours_out
        };
        let ref_out = Output {
            stdout: ref_out.stdout.replace("ref-", "<server>-"),
            ..ref_out
        };
        assert_eq!(ours_out, ref_out, "etcdctl {label} snapshot save");
        assert_eq!(ours_out.code, 0);
        let size = std::fs::metadata(&ours_path).unwrap().len();
        assert_eq!(size % 512, 32, "etcd's rule for a digest at the end");
        ours_files.push(ours_path);
        ref_files.push(ref_path);
    }
    let snapshot = &ours_files[0];

    // etcdutl snapshot status, each format, against etcd 3.5.1's etcdutl on
    // etcd's snapshot: same revision, same shape plus 3.6's version column.
    let tool = etcdutl();
    let ref_tool = reference_tool(Kind::Ref35, "etcdutl");
    let status = |bin: &Path, file: &Path, format: &str| {
        run(
            bin,
            &[
                "snapshot",
                "status",
                &file.display().to_string(),
                "-w",
                format,
            ],
        )
    };
    for file in &ours_files {
        let json = ok(status(&tool, file, "json"), "status -w json");
        let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(json["revision"], FINAL_REVISION, "{json}");
        assert_eq!(json["version"], "3.6.0", "{json}");
        let ref_json = ok(status(&ref_tool, &ref_files[0], "json"), "etcd's status");
        let ref_json: serde_json::Value = serde_json::from_str(&ref_json.stdout).unwrap();
        assert_eq!(ref_json["revision"], FINAL_REVISION);
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        let mut ref_keys = keys(&ref_json);
        ref_keys.push("version".into());
        assert_eq!(keys(&json), ref_keys);

        let hash = json["hash"].as_u64().unwrap();
        let keys_total = json["totalKey"].as_u64().unwrap();
        let size = json["totalSize"].as_u64().unwrap();
        let simple = ok(status(&tool, file, "simple"), "status -w simple");
        let fields: Vec<&str> = simple.stdout.trim_end().split(", ").collect();
        assert_eq!(fields.len(), 5, "{simple:?}");
        assert_eq!(fields[0], format!("{hash:x}"));
        assert_eq!(fields[1], FINAL_REVISION.to_string());
        assert_eq!(fields[2], keys_total.to_string());
        assert_eq!(fields[4], "3.6.0");
        let table = ok(status(&tool, file, "table"), "status -w table");
        let ref_table = ok(status(&ref_tool, &ref_files[0], "table"), "etcd's table");
        let header = |t: &str| t.lines().nth(1).unwrap_or_default().to_string();
        assert_eq!(
            header(&table.stdout)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            format!(
                "{} VERSION |",
                header(&ref_table.stdout)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        );
        assert!(table.stdout.contains(&format!("| {hash:x} |")), "{table:?}");
        let fields = ok(status(&tool, file, "fields"), "status -w fields");
        assert_eq!(
            fields.stdout,
            format!(
                "\"Hash\" : {hash}\n\"Revision\" : {FINAL_REVISION}\n\"Keys\" : {keys_total}\n\"Size\" : {size}\n\"Version\" : 3.6.0\n"
            )
        );
        let protobuf = status(&tool, file, "protobuf");
        let ref_protobuf = status(&ref_tool, &ref_files[0], "protobuf");
        assert_eq!(protobuf.code, ref_protobuf.code);
        assert_eq!(error_line(&protobuf), error_line(&ref_protobuf));
    }

    // Restore into three data directories of a new cluster and start it.
    let layout = Layout::new(3, "restored-cluster");
    let dirs: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("m{i}"))).collect();
    for (i, data_dir) in dirs.iter().enumerate() {
        layout.restore(&tool, i, snapshot, data_dir, &[]);
    }
    let mut members: Vec<Member> = (0..3)
        .map(|i| layout.spawn(Kind::Ours, i, &dirs[i]))
        .collect();
    for m in &mut members {
        m.wait_healthy();
    }
    let mut clients = Vec::new();
    for m in &members {
        clients.push(connect(m.url()).await);
    }
    let lease_id = i64::from_str_radix(&lease_ours, 16).unwrap();
    let mut hashes = Vec::new();
    for client in &mut clients {
        assert_eq!(
            dump(client, true).await,
            expected,
            "keys, revisions, leases"
        );
        let leases = bounded("leases", client.leases()).await;
        let ids: Vec<i64> = leases.leases().iter().map(|l| l.id()).collect();
        assert_eq!(ids, [lease_id]);
        let ttl = bounded(
            "time to live",
            client.lease_time_to_live(lease_id, Some(LeaseTimeToLiveOptions::new().with_keys())),
        )
        .await;
        let mut keys = ttl.keys().to_vec();
        keys.sort();
        assert_eq!(keys, [b"lk1".to_vec(), b"lk2".to_vec()]);
        let compacted = client
            .get(
                "k1",
                Some(GetOptions::new().with_revision(COMPACT_REVISION - 1)),
            )
            .await;
        assert!(compacted.is_err(), "a read below the compaction fails");
        hashes.push(hash_kv(client, 0).await);
    }
    assert_eq!(
        hashes,
        vec![expected_hash; 3],
        "HashKV agrees with the source"
    );
    let members_seen = bounded("member list", clients[0].member_list()).await;
    let mut names: Vec<String> = members_seen
        .members()
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["m0", "m1", "m2"]);

    // The new cluster takes writes, at the next revision, on every member.
    let put = bounded("put", clients[0].put("after", "restore", None)).await;
    assert_eq!(put.header().unwrap().revision(), FINAL_REVISION + 1);
    for client in &mut clients {
        let (rev, kvs) = dump(client, false).await;
        assert_eq!(rev, FINAL_REVISION + 1);
        assert!(kvs.iter().any(|kv| kv.0 == "after" && kv.1 == "restore"));
    }
    let mut after = Vec::new();
    for client in &mut clients {
        after.push(hash_kv(client, FINAL_REVISION + 1).await);
    }
    assert!(after.windows(2).all(|w| w[0] == w[1]), "{after:?}");
    drop(members);

    // One member restored by each implementation with the same flags: the
    // same member and cluster IDs, keys and revisions (the advertised peer
    // URL is the same on both; each listens on a port of its own).
    let solo = Layout::new(1, "solo-token");
    let solo_ref = Layout {
        token: solo.token.clone(),
        members: vec![(
            solo.members[0].0.clone(),
            solo.members[0].1.clone(),
            free_port(),
            free_port(),
        )],
    };
    let (ours_dir, ref_dir) = (dir.path().join("solo-ours"), dir.path().join("solo-ref"));
    solo.restore(&tool, 0, snapshot, &ours_dir, &[]);
    solo_ref.restore(&ref_tool, 0, &ref_files[0], &ref_dir, &[]);
    let mut ours_solo = solo.spawn(Kind::Ours, 0, &ours_dir);
    let mut ref_solo = solo_ref.spawn(Kind::Ref35, 0, &ref_dir);
    ours_solo.wait_healthy();
    ref_solo.wait_healthy();
    let ids = |m: &Member| {
        let out = ctl35.run(&m.url(), &["member", "list", "-w", "json"], None);
        let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        (
            json["header"]["cluster_id"].as_u64().unwrap(),
            json["members"][0]["ID"].as_u64().unwrap(),
            json["members"].as_array().unwrap().len(),
        )
    };
    assert_eq!(ids(&ours_solo), ids(&ref_solo), "member and cluster IDs");
    let mut ours_client = connect(ours_solo.url()).await;
    let mut ref_client = connect(ref_solo.url()).await;
    let without_lease = |d: Dump| -> Dump {
        (
            d.0,
            d.1.into_iter()
                .map(|kv| (kv.0, kv.1, kv.2, kv.3, kv.4, 0))
                .collect(),
        )
    };
    let ours_dump = dump(&mut ours_client, false).await;
    assert_eq!(ours_dump, expected);
    assert_eq!(
        without_lease(ours_dump),
        without_lease(dump(&mut ref_client, false).await)
    );
    let ref_lease = i64::from_str_radix(&lease_ref, 16).unwrap();
    assert_eq!(
        bounded("leases", ref_client.leases()).await.leases()[0].id(),
        ref_lease
    );
    for client in [&mut ours_client, &mut ref_client] {
        let put = bounded("put", client.put("k5", "v5", None)).await;
        assert_eq!(put.header().unwrap().revision(), FINAL_REVISION + 1);
    }
}

#[test]
fn restore_errors_are_etcds() {
    let (mut ours, mut reference) = start_pair(&[]);
    let ctl = Etcdctl::reference(Kind::Ref35);
    workload(&ctl, &ours.endpoint());
    workload(&ctl, &reference.endpoint());
    let dir = temp_dir();
    let (ours_file, _) = save(&ctl, &ours, dir.path(), "ours.db");
    let (ref_file, _) = save(&ctl, &reference, dir.path(), "ref.db");
    let tool = etcdutl();
    let ref_tool = reference_tool(Kind::Ref35, "etcdutl");
    let restore = |bin: &Path, file: &Path, data_dir: &Path, extra: &[&str]| {
        let mut args = vec![
            "snapshot".to_string(),
            "restore".to_string(),
            file.display().to_string(),
            format!("--data-dir={}", data_dir.display()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(bin, &args)
    };
    let both = |what: &str, ours_file: &Path, ref_file: &Path, data: &str, extra: &[&str]| {
        let ours_dir = dir.path().join(format!("{data}-ours"));
        let ref_dir = dir.path().join(format!("{data}-ref"));
        let ours_out = restore(&tool, ours_file, &ours_dir, extra);
        let ref_out = restore(&ref_tool, ref_file, &ref_dir, extra);
        assert_eq!(
            ours_out.code, ref_out.code,
            "{what}: {ours_out:?} {ref_out:?}"
        );
        (ours_out, ref_out, ours_dir)
    };

    // A data directory that is not empty is refused, untouched.
    let existing = dir.path().join("existing");
    std::fs::create_dir_all(&existing).unwrap();
    std::fs::write(existing.join("keep"), b"x").unwrap();
    let ours_out = restore(&tool, &ours_file, &existing, &[]);
    let ref_out = restore(&ref_tool, &ref_file, &existing, &[]);
    assert_eq!(
        (ours_out.code, error_line(&ours_out)),
        (ref_out.code, error_line(&ref_out))
    );
    assert_eq!(ours_out.code, 1);
    assert_eq!(std::fs::read_dir(&existing).unwrap().count(), 1);

    // A corrupted file fails the digest check; nothing is left behind.
    let corrupt = |file: &Path, name: &str| {
        let mut bytes = std::fs::read(file).unwrap();
        bytes[100] ^= 0xFF;
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let (ours_out, ref_out, ours_dir) = both(
        "corrupted",
        &corrupt(&ours_file, "ours-corrupt.db"),
        &corrupt(&ref_file, "ref-corrupt.db"),
        "corrupt",
        &[],
    );
    assert_eq!(ours_out.code, 1);
    for out in [&ours_out, &ref_out] {
        assert!(
            error_line(out).starts_with("Error: expected sha256 ["),
            "{out:?}"
        );
    }
    assert!(
        !ours_dir.exists(),
        "a failed restore leaves no data directory"
    );

    // Without the digest, --skip-hash-check is required.
    let truncate = |file: &Path, name: &str| {
        let bytes = std::fs::read(file).unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes[..bytes.len() - 32]).unwrap();
        path
    };
    let (ours_trunc, ref_trunc) = (
        truncate(&ours_file, "ours-nohash.db"),
        truncate(&ref_file, "ref-nohash.db"),
    );
    let (ours_out, ref_out, _) = both("no digest", &ours_trunc, &ref_trunc, "nohash", &[]);
    assert_eq!(error_line(&ours_out), error_line(&ref_out));
    assert_eq!(
        error_line(&ours_out),
        "Error: snapshot missing hash but --skip-hash-check=false"
    );
    let (ours_out, _, _) = both(
        "no digest, skipped",
        &ours_trunc,
        &ref_trunc,
        "nohash-skip",
        &["--skip-hash-check"],
    );
    assert_eq!(ours_out.code, 0);

    // A raw copy of a member's backend file: refused without the flag,
    // restored with it (here with a revision bump, etcd 3.6's flags).
    ours.terminate();
    reference.terminate();
    let raw = |process: &EtcdProcess, name: &str| {
        let path = dir.path().join(name);
        std::fs::copy(process.data_dir().join("member/snap/db"), &path).unwrap();
        path
    };
    let (ours_raw, ref_raw) = (raw(&ours, "ours-raw.db"), raw(&reference, "ref-raw.db"));
    let (ours_out, ref_out, _) = both("raw copy", &ours_raw, &ref_raw, "raw", &[]);
    assert_eq!(error_line(&ours_out), error_line(&ref_out));
    let (ours_out, _, _) = both(
        "raw copy, skipped",
        &ours_raw,
        &ref_raw,
        "raw-skip",
        &["--skip-hash-check"],
    );
    assert_eq!(ours_out.code, 0);

    let bump = run(
        &tool,
        &[
            "snapshot",
            "restore",
            &ours_raw.display().to_string(),
            "--skip-hash-check",
            "--bump-revision=1000",
            &format!("--data-dir={}", dir.path().join("bump-refused").display()),
        ],
    );
    assert_eq!(bump.code, 128);
    assert_eq!(
        error_line(&bump),
        "Error: --mark-compacted required if --revision-bump > 0"
    );

    let layout = Layout::new(1, "bumped");
    let bumped_dir = dir.path().join("bumped");
    layout.restore(
        &tool,
        0,
        &ours_raw,
        &bumped_dir,
        &[
            "--skip-hash-check",
            "--bump-revision=1000",
            "--mark-compacted",
        ],
    );
    let mut member = layout.spawn(Kind::Ours, 0, &bumped_dir);
    member.wait_healthy();
    let get = |args: &[&str]| ctl.run(&member.url(), args, None);
    let out = get(&["get", "k1", "-w", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["header"]["revision"], FINAL_REVISION + 1000, "{json}");
    assert_eq!(json["kvs"][0]["mod_revision"], 5);
    let old = get(&["get", "k1", &format!("--rev={FINAL_REVISION}")]);
    assert!(
        old.stderr.contains("required revision has been compacted"),
        "{old:?}"
    );
    let out = get(&["put", "k9", "v9", "-w", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["header"]["revision"], FINAL_REVISION + 1001, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_on_while_a_large_snapshot_streams() {
    let server = EtcdProcess::start(Kind::Ours, &[]);
    let mut client = connect(server.client_url()).await;
    // About 16 MiB: 16 txns of 128 puts of 8 KiB.
    let value = "v".repeat(8 << 10);
    for t in 0..16 {
        let ops: Vec<etcd_client::TxnOp> = (0..128)
            .map(|i| etcd_client::TxnOp::put(format!("big/{t:02}/{i:03}"), value.clone(), None))
            .collect();
        bounded("txn", client.txn(etcd_client::Txn::new().and_then(ops))).await;
    }
    let before = revision(&mut client).await;

    // A client that goes away mid-stream leaves the server serving.
    let mut abandoned = bounded("snapshot", client.snapshot()).await;
    let first = bounded("first chunk", abandoned.message())
        .await
        .expect("a chunk");
    assert!(first.remaining_bytes() > 0);
    drop(abandoned);

    let mut stream = bounded("snapshot", client.snapshot()).await;
    let first = bounded("first chunk", stream.message())
        .await
        .expect("a chunk");
    assert_eq!(first.blob().len(), 32 * 1024);
    let total = first.blob().len() as u64 + first.remaining_bytes();
    assert!(total > 16 << 20, "{total}");
    assert_eq!(first.version(), "3.6.0");
    assert!(first.header().is_none(), "etcd 3.6 sends no header");
    // The stream is paused after one chunk: writes are acknowledged meanwhile.
    let mut writer = connect(server.client_url()).await;
    for i in 0..50 {
        bounded("put", writer.put(format!("during/{i}"), "x", None)).await;
    }
    let mut data = first.blob().to_vec();
    let mut last_remaining = first.remaining_bytes();
    let digest = loop {
        let msg = bounded("chunk", stream.message())
            .await
            .expect("the stream ends with a digest");
        if msg.remaining_bytes() == 0 && data.len() as u64 == total {
            break msg.blob().to_vec();
        }
        assert!(msg.remaining_bytes() < last_remaining);
        last_remaining = msg.remaining_bytes();
        data.extend_from_slice(msg.blob());
        assert!(data.len() as u64 <= total);
    };
    assert!(bounded("end", stream.message()).await.is_none());
    assert_eq!(digest, Sha256::digest(&data).to_vec());

    // The snapshot is of the moment it was asked for.
    let dir = temp_dir();
    let path = dir.path().join("big.db");
    std::fs::write(&path, [data.as_slice(), digest.as_slice()].concat()).unwrap();
    let status = datadir::snapshot_file::status(&path).unwrap();
    assert_eq!(status.revision, before);
    assert_eq!(revision(&mut client).await, before + 50);
}
