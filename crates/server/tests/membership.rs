//! Membership changes driven by the real etcdctl 3.5.1 against a cluster of
//! our members under a steady write load: add a learner, start it with
//! `--initial-cluster-state existing`, check that it refuses writes, promote
//! it, update it, remove the leader, and move leadership. Afterwards every
//! acknowledged write is on every remaining member.
//!
//! Every wait is bounded; every process is killed on Drop.

mod cluster_support;
mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_support::Cluster;
use common::{free_port, Etcdctl, Kind};

/// A member started by this test (the harness starts only the founding ones).
struct Extra {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Extra {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_joining_member(cluster: &Cluster, name: &str, peer_url: &str) -> Extra {
    let dir = tempfile::tempdir().expect("temp dir");
    let client_port = free_port();
    let endpoint = format!("127.0.0.1:{client_port}");
    let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_etcd"))
        .args([
            format!("--name={name}"),
            format!("--data-dir={}", dir.path().join("data").display()),
            format!("--listen-client-urls=http://{endpoint}"),
            format!("--advertise-client-urls=http://{endpoint}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!(
                "--initial-cluster={},{name}={peer_url}",
                cluster.initial_cluster()
            ),
            format!("--initial-cluster-token={}", cluster.token()),
            "--initial-cluster-state=existing".to_string(),
            "--heartbeat-interval=50".to_string(),
            "--election-timeout=500".to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start the joining member");
    Extra {
        child,
        endpoint,
        _dir: dir,
    }
}

/// Runs etcdctl until `done` accepts its output, for at most `timeout`.
fn retry_etcdctl(
    ctl: &Etcdctl,
    endpoint: &str,
    args: &[&str],
    timeout: Duration,
    done: impl Fn(&common::Output) -> bool,
) -> common::Output {
    let deadline = Instant::now() + timeout;
    loop {
        let out = ctl.run(endpoint, args, None);
        if done(&out) || Instant::now() >= deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The member ID etcdctl prints in "Member <id> added to cluster <cid>".
fn added_id(stdout: &str) -> String {
    stdout
        .split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no member ID in {stdout:?}"))
        .to_string()
}

/// Puts `w<n>` keys through every endpoint until stopped; returns the acknowledged keys.
fn start_writer(
    endpoints: Vec<String>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut acked = Vec::new();
            let urls: Vec<String> = endpoints
                .iter()
                .map(|e| {
                    if e.contains("://") {
                        e.clone()
                    } else {
                        format!("http://{e}")
                    }
                })
                .collect();
            let mut client = match etcd_client::Client::connect(urls, None).await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("writer cannot connect: {e}");
                    return acked;
                }
            };
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 20_000 {
                let key = format!("w{n:06}");
                let put = tokio::time::timeout(
                    Duration::from_secs(3),
                    client.put(key.as_str(), "v", None),
                );
                match put.await {
                    Ok(Ok(_)) => acked.push(key),
                    Ok(Err(e)) if n.is_multiple_of(100) => eprintln!("writer: put {key}: {e}"),
                    Err(_) if n.is_multiple_of(100) => eprintln!("writer: put {key} timed out"),
                    _ => {}
                }
                n += 1;
            }
            acked
        })
    })
}

#[test]
fn learner_join_promote_update_remove_leader_and_move_leader() {
    let ctl = Etcdctl::reference(Kind::Ref35);
    let mut cluster = Cluster::start("membership", 3, &[]);
    let all = cluster.endpoints().join(",");

    // Load: a writer through all endpoints for the whole membership dance.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = start_writer(cluster.endpoints(), stop.clone());
    let problems = Mutex::new(Vec::<String>::new());
    let expect = |ok: bool, what: String| {
        if !ok {
            problems.lock().unwrap().push(what);
        }
    };

    // 1. Add a learner, then start it: it joins and catches up.
    let peer_url = format!("http://127.0.0.1:{}", free_port());
    let add = ctl.run(
        &all,
        &[
            "member",
            "add",
            "m3",
            "--learner",
            &format!("--peer-urls={peer_url}"),
        ],
        None,
    );
    assert_eq!(add.code, 0, "member add --learner: {add:?}");
    assert!(add.stdout.contains("added to cluster"), "{add:?}");
    assert!(
        add.stdout
            .contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""),
        "{add:?}"
    );
    let new_id = added_id(&add.stdout);
    let extra = start_joining_member(&cluster, "m3", &peer_url);
    let caught_up = retry_etcdctl(
        &ctl,
        &extra.endpoint,
        &["get", "w000000", "--consistency=s", "--print-value-only"],
        Duration::from_secs(20),
        |o| o.code == 0 && o.stdout.trim() == "v",
    );
    expect(
        caught_up.stdout.trim() == "v",
        format!("learner did not catch up: {caught_up:?}"),
    );
    let list = ctl.run(&all, &["member", "list"], None);
    expect(
        list.stdout
            .lines()
            .any(|l| l.contains("m3") && l.trim_end().ends_with("true")),
        format!(
            "member list does not show a started learner m3: {}",
            list.stdout
        ),
    );

    // Its own status says so (IS LEARNER), as etcd's does.
    let status = ctl.run(&extra.endpoint, &["endpoint", "status", "-w", "json"], None);
    expect(
        status.stdout.contains("\"isLearner\":true"),
        format!("a learner's status does not say so: {status:?}"),
    );

    // 2. A learner refuses writes and linearizable reads, as etcd's does.
    let put = ctl.run(&extra.endpoint, &["put", "x", "1"], None);
    expect(
        put.code != 0
            && put
                .stderr
                .contains("etcdserver: rpc not supported for learner"),
        format!("learner accepted a write: {put:?}"),
    );

    // A voter cannot be promoted: etcd's error, counted once as a failure
    // with its reason.
    let voter = list
        .stdout
        .lines()
        .find(|l| l.trim_end().ends_with("false"))
        .and_then(|l| l.split(',').next())
        .unwrap_or_default()
        .trim()
        .to_string();
    let refused = ctl.run(&all, &["member", "promote", &voter], None);
    expect(
        refused.code != 0
            && refused
                .stderr
                .contains("etcdserver: can only promote a learner member"),
        format!("promoting voter {voter:?} was not refused as etcd refuses it: {refused:?}"),
    );
    let failures: u64 = (0..cluster.size())
        .filter_map(|i| common::http_get(cluster.client_port(i), "/metrics"))
        .flat_map(|body| {
            body.lines()
                .filter(|l| {
                    l.starts_with("etcd_server_learner_promote_failures{Reason=\"etcdserver: can only promote a learner member\"} ")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum();
    expect(
        failures == 1,
        format!("etcd_server_learner_promote_failures for a voter summed to {failures}, not 1"),
    );

    // 3. Promote (it may need a moment to be in sync with the leader).
    let promote = retry_etcdctl(
        &ctl,
        &all,
        &["member", "promote", &new_id],
        Duration::from_secs(20),
        |o| o.code == 0,
    );
    expect(
        promote.code == 0 && promote.stdout.contains("promoted in cluster"),
        format!("promote failed: {promote:?}"),
    );
    // One success counted, on the member that decided it (the leader when
    // a follower forwarded it), as etcd counts it.
    let successes: u64 = (0..cluster.size())
        .filter_map(|i| common::http_get(cluster.client_port(i), "/metrics"))
        .flat_map(|body| {
            body.lines()
                .filter(|l| l.starts_with("etcd_server_learner_promote_successes "))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum();
    expect(
        successes == 1,
        format!("etcd_server_learner_promote_successes summed to {successes}, not 1"),
    );
    let put = retry_etcdctl(
        &ctl,
        &extra.endpoint,
        &["put", "x", "1"],
        Duration::from_secs(10),
        |o| o.code == 0,
    );
    expect(
        put.stdout.trim() == "OK",
        format!("promoted member refused a write: {put:?}"),
    );

    // 4. Update its peer URLs (to the same URL) and check etcd's errors.
    let update = ctl.run(
        &all,
        &[
            "member",
            "update",
            &new_id,
            &format!("--peer-urls={peer_url}"),
        ],
        None,
    );
    expect(
        update.code == 0 && update.stdout.contains("updated in cluster"),
        format!("member update failed: {update:?}"),
    );
    let taken = ctl.run(
        &all,
        &["member", "add", "dup", &format!("--peer-urls={peer_url}")],
        None,
    );
    expect(
        taken.code != 0
            && taken
                .stderr
                .contains("etcdserver: Peer URLs already exists"),
        format!("a duplicate peer URL was accepted: {taken:?}"),
    );
    let unknown = ctl.run(&all, &["member", "remove", "1234"], None);
    expect(
        unknown.code != 0 && unknown.stderr.contains("etcdserver: member not found"),
        format!("removing an unknown member: {unknown:?}"),
    );

    // 5. Remove the leader: it stops, the others elect a new one and keep serving.
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let leader_id = format!("{:x}", cluster.member_id(leader));
    let others: Vec<usize> = (0..cluster.size()).filter(|i| *i != leader).collect();
    let others_endpoints: Vec<String> = others.iter().map(|i| cluster.endpoint(*i)).collect();
    let remove = ctl.run(
        &others_endpoints.join(","),
        &["member", "remove", &leader_id],
        None,
    );
    expect(
        remove.code == 0 && remove.stdout.contains("removed from cluster"),
        format!("removing the leader failed: {remove:?}"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.is_running(leader) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    expect(
        !cluster.is_running(leader),
        "the removed leader kept running".to_string(),
    );
    // The new leader may be any remaining voter, the joined member included.
    let removed_id = cluster.member_id(leader);
    let deadline = Instant::now() + Duration::from_secs(10);
    let (agreed, leaders) = loop {
        let leaders: Vec<u64> = others
            .iter()
            .filter_map(|i| cluster.status(*i).ok().map(|s| s.leader))
            .collect();
        let agreed = leaders.len() == others.len()
            && leaders
                .iter()
                .all(|l| *l == leaders[0] && *l != 0 && *l != removed_id);
        if agreed || Instant::now() >= deadline {
            break (agreed, leaders);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    expect(
        agreed,
        format!("no agreed new leader after removing the leader: {leaders:?}"),
    );

    // 6. Move leadership to the joined member.
    let remaining = format!("{},{}", others_endpoints.join(","), extra.endpoint);
    let moved = retry_etcdctl(
        &ctl,
        &remaining,
        &["move-leader", &new_id],
        Duration::from_secs(15),
        |o| o.code == 0,
    );
    expect(
        moved.code == 0 && moved.stdout.contains("Leadership transferred"),
        format!("move-leader failed: {moved:?}"),
    );

    // 7. Every acknowledged write is on every remaining member.
    stop.store(true, Ordering::Relaxed);
    let acked = writer.join().expect("writer thread");
    expect(
        acked.len() > 50,
        format!("the writer got only {} writes through", acked.len()),
    );
    let last = acked.last().cloned().unwrap_or_default();
    for endpoint in others_endpoints
        .iter()
        .chain(std::iter::once(&extra.endpoint))
    {
        let count = retry_etcdctl(
            &ctl,
            endpoint,
            &["get", "w", "--prefix", "--keys-only", "--consistency=s"],
            Duration::from_secs(10),
            |o| o.stdout.contains(&last),
        );
        let present: std::collections::HashSet<&str> =
            count.stdout.lines().filter(|l| !l.is_empty()).collect();
        let missing: Vec<&String> = acked
            .iter()
            .filter(|k| !present.contains(k.as_str()))
            .collect();
        expect(
            missing.is_empty(),
            format!(
                "{endpoint} misses {} acknowledged writes, e.g. {:?}",
                missing.len(),
                missing.first()
            ),
        );
    }
    let members = ctl.run(&remaining, &["member", "list"], None);
    expect(
        members.stdout.lines().filter(|l| !l.is_empty()).count() == 3
            && !members.stdout.contains(&leader_id),
        format!("member list after removing the leader: {}", members.stdout),
    );

    let problems = problems.into_inner().unwrap();
    assert!(
        problems.is_empty(),
        "membership problems:\n{}",
        problems.join("\n")
    );
}
