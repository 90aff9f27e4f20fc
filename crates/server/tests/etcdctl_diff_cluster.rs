//! Our etcdctl against the real etcdctl 3.5.1: `member`, `endpoint`,
//! `alarm`, `defrag`, `move-leader`, `snapshot save` and `check`'s argument
//! checks, in every writer, with their usage and server errors. Each
//! etcdctl drives its own single-member server of the same kind with the
//! same history (see `common::Differential::ctls`); the corpus runs against
//! our server and against the real etcd 3.5.1 and 3.4.23.
//!
//! - IDs each side got (a learner's, the member's own when it is an
//!   argument) are passed per side and normalized with `d.literal`; lists
//!   whose order follows random member IDs are compared sorted.
//! - A second pair of servers with a small backend quota runs the NOSPACE
//!   alarm through `alarm`, `endpoint health` and `endpoint status`.
//! - `--cluster` runs on the single member; several endpoints are the
//!   member plus a closed port (`127.0.0.1:1`).
//! - `downgrade` and `member list --consistency` are etcdctl 3.6 only: they
//!   are checked against our server with expected text.
//! - Three of our members (no reference cluster: too dear) check what one
//!   member cannot show: `--cluster` and `--endpoints` rows per member, and
//!   a real leadership transfer.

mod cluster_support;
mod common;

use std::time::Duration;

use cluster_support::Cluster;
use common::{Differential, Etcdctl, Kind, ServerIds};

const WRITERS: [&str; 5] = ["simple", "json", "fields", "protobuf", "table"];
/// Peer URLs nothing listens on: learners added here never start. Each
/// learner gets its own: etcd derives a new member's ID from its URLs and
/// the second, and refuses the ID of a removed member ("member not found").
const LEARNER_PEER_URLS: [&str; 3] = [
    "http://127.0.0.1:1",
    "http://127.0.0.1:3",
    "http://127.0.0.1:4",
];
/// An endpoint that refuses connections, beside the member's.
const DEAD_ENDPOINT: &str = "--endpoints=127.0.0.1:1";

/// Per-side values of one quantity (ours, reference).
struct Pair {
    ours: String,
    reference: String,
}

/// The member's own ID (hex) on each side, with the `%16x` forms of its and
/// the cluster's ID in `Member … in cluster …` normalized too (etcdctl pads
/// them with spaces).
fn member_ids(d: &mut Differential) -> Pair {
    let ours = ServerIds::read(&d.ctl, &d.ours.endpoint());
    let reference = ServerIds::read(&d.ctl, &d.reference.endpoint());
    d.literal(
        format!("Member {:16x}", ours.member_id),
        format!("Member {:16x}", reference.member_id),
        "Member <member-id>",
    );
    d.literal(
        format!("cluster {:16x}", ours.cluster_id),
        format!("cluster {:16x}", reference.cluster_id),
        "cluster <cluster-id>",
    );
    Pair {
        ours: format!("{:x}", ours.member_id),
        reference: format!("{:x}", reference.member_id),
    }
}

/// The learner's ID on one side, from `member list -w json` (0 when there
/// is none: the differential then reports what went wrong).
fn learner_id(ctl: &Etcdctl, endpoint: &str) -> u64 {
    let out = ctl.run(endpoint, &["member", "list", "-w", "json"], None);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    json["members"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["isLearner"].as_bool() == Some(true))
        .and_then(|m| m["ID"].as_u64())
        .unwrap_or(0)
}

/// The learner each side just added, normalized as `<learner-id>` from now
/// on; its hex IDs.
fn learner_ids(d: &mut Differential) -> Pair {
    let ours = learner_id(&d.ours_ctl, &d.ours.endpoint());
    let reference = learner_id(&d.ctl, &d.reference.endpoint());
    d.literal(
        format!("Member {ours:16x}"),
        format!("Member {reference:16x}"),
        "Member <learner-id>",
    );
    d.literal(
        format!("{ours:x}"),
        format!("{reference:x}"),
        "<learner-id>",
    );
    d.literal(ours.to_string(), reference.to_string(), "<learner-id>");
    Pair {
        ours: format!("{ours:x}"),
        reference: format!("{reference:x}"),
    }
}

/// Member listings in an order that does not depend on the random IDs:
/// `Member <id> added` masked (the learner is not known yet when it is
/// added), raw decimal IDs masked, `ETCD_INITIAL_CLUSTER` entries and JSON
/// member arrays sorted, lines sorted.
fn members_canonical(text: &str) -> String {
    let mut lines: Vec<String> = text
        .lines()
        .map(|line| {
            let mut line = line.to_string();
            if let Some(rest) = line.strip_prefix("Member ") {
                if let Some((_, tail)) = rest.trim_start().split_once(" added") {
                    line = format!("Member <id> added{tail}");
                }
            }
            if let Some(inner) = line
                .strip_prefix("ETCD_INITIAL_CLUSTER=\"")
                .and_then(|l| l.strip_suffix('"'))
            {
                let mut entries: Vec<&str> = inner.split(',').collect();
                entries.sort_unstable();
                line = format!("ETCD_INITIAL_CLUSTER=\"{}\"", entries.join(","));
            }
            if line.starts_with('{') {
                line = json_ids_masked(&line);
                line = json_members_sorted(&line);
            }
            line
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// `"ID":<digits>` → `"ID":<id>` (IDs not normalized yet).
fn json_ids_masked(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find("\"ID\":") {
        let (head, tail) = rest.split_at(at + 5);
        out.push_str(head);
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            out.push_str("<id>");
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

/// The elements of `"members":[...]` sorted as text.
fn json_members_sorted(line: &str) -> String {
    let Some(at) = line.find("\"members\":[") else {
        return line.to_string();
    };
    let start = at + "\"members\":[".len();
    let bytes = line.as_bytes();
    let (mut depth, mut in_string, mut end) = (0usize, false, None);
    let mut elements = Vec::new();
    let mut element_start = start;
    let mut i = start;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b']' if depth == 0 => {
                    elements.push(&line[element_start..i]);
                    end = Some(i);
                    break;
                }
                b'}' | b']' => depth -= 1,
                b',' if depth == 0 => {
                    elements.push(&line[element_start..i]);
                    element_start = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    let Some(end) = end else {
        return line.to_string();
    };
    elements.sort_unstable();
    format!("{}{}{}", &line[..start], elements.join(","), &line[end..])
}

/// `check_each` that expects etcd's etcdctl to succeed or fail.
fn expect_each(d: &mut Differential, ours: &[&str], reference: &[&str], success: bool) {
    let out = d.check_each(ours, reference, None, members_canonical);
    assert_eq!(
        out.code == 0,
        success,
        "etcdctl {reference:?} against etcd 3.5.1 should {}: {out:#?}",
        if success { "succeed" } else { "fail" }
    );
}

/// `ok` / `err` for member listings (sorted).
fn expect_sorted(d: &mut Differential, args: &[&str], success: bool) {
    expect_each(d, args, args, success);
}

/// Runs `args` (with `{id}` replaced by each side's ID) and expects etcd's
/// etcdctl to succeed or fail.
fn with_id(d: &mut Differential, ids: &Pair, args: &[&str], success: bool) {
    let ours: Vec<String> = args.iter().map(|a| a.replace("{id}", &ids.ours)).collect();
    let reference: Vec<String> = args
        .iter()
        .map(|a| a.replace("{id}", &ids.reference))
        .collect();
    let ours: Vec<&str> = ours.iter().map(String::as_str).collect();
    let reference: Vec<&str> = reference.iter().map(String::as_str).collect();
    expect_each(d, &ours, &reference, success);
}

/// Adds a learner named `name` on `url` with `writer`, then registers its IDs.
fn add_learner(d: &mut Differential, name: &str, url: &str, writer: &str, success: bool) -> Pair {
    let peer = format!("--peer-urls={url}");
    expect_sorted(
        d,
        &["member", "add", name, &peer, "--learner", "-w", writer],
        success,
    );
    learner_ids(d)
}

fn members(d: &mut Differential, me: &Pair) {
    for w in WRITERS.iter().filter(|w| **w != "protobuf") {
        d.ok(&["member", "list", "-w", w]);
    }
    d.ok(&["member", "list", "-w", "json", "--hex"]);
    d.ok(&["member", "list", "extra-args-are-ignored"]);
    d.err(&["member", "add"]);
    d.err(&["member", "add", "x"]);
    d.err(&["member", "add", "x", "y", "http://a:1"]);
    d.err(&["member", "add", "x", "--peer-urls=foo"]);
    d.err(&["member", "add", "x", "--peer-urls=http://a"]);
    d.err(&["member", "add", "x", "--peer-urls=http://a:1/path"]);
    d.err(&["member", "remove"]);
    d.err(&["member", "remove", "zz"]);
    d.err(&["member", "remove", "1"]);
    d.err(&["member", "update", "1"]);
    d.err(&["member", "update", "1", "--peer-urls=http://a:1"]);
    d.err(&["member", "promote"]);
    d.err(&["member", "promote", "1"]);
    d.err(&["member", "list", "-w", "yaml"]);
    // Update the member to the peer URL it has: a change that changes nothing.
    let ours_peer = format!("--peer-urls={}", d.ours.peer_url());
    let reference_peer = format!("--peer-urls={}", d.reference.peer_url());
    for (w, success) in [("simple", true), ("json", true), ("fields", false)] {
        let ours = ["member", "update", &me.ours, &ours_peer, "-w", w];
        let reference = ["member", "update", &me.reference, &reference_peer, "-w", w];
        expect_each(d, &ours, &reference, success);
    }

    // A learner on a URL nothing listens on: listed unstarted, not
    // promotable (etcd's error), removed.
    let learner = add_learner(d, "learner1", LEARNER_PEER_URLS[0], "simple", true);
    for w in ["simple", "json", "fields", "table"] {
        expect_sorted(d, &["member", "list", "-w", w], true);
    }
    expect_sorted(d, &["member", "list", "-w", "json", "--hex"], true);
    d.err(&[
        "member",
        "add",
        "second",
        "--peer-urls=http://127.0.0.1:2",
        "--learner",
    ]);
    with_id(d, &learner, &["member", "promote", "{id}"], false);
    with_id(
        d,
        &learner,
        &["member", "promote", "{id}", "-w", "json"],
        false,
    );
    with_id(d, &learner, &["member", "remove", "{id}"], true);
    with_id(d, &learner, &["member", "remove", "{id}"], false);
    let learner = add_learner(d, "learner2", LEARNER_PEER_URLS[1], "json", true);
    with_id(
        d,
        &learner,
        &["member", "remove", "{id}", "-w", "json"],
        true,
    );
    // The fields writer has no member add: the learner is added all the same.
    let learner = add_learner(d, "learner3", LEARNER_PEER_URLS[2], "fields", false);
    with_id(
        d,
        &learner,
        &["member", "remove", "{id}", "-w", "table"],
        false,
    );
    expect_sorted(d, &["member", "list"], true);
}

fn endpoints(d: &mut Differential) {
    for w in WRITERS {
        for command in ["status", "health", "hashkv"] {
            d.check(&["endpoint", command, "-w", w], None);
        }
    }
    d.ok(&["put", "k", "v1"]);
    d.ok(&["put", "k", "v2"]);
    d.ok(&["endpoint", "hashkv", "--rev=2"]);
    d.ok(&["endpoint", "hashkv", "--rev", "3", "-w", "json"]);
    d.err(&["endpoint", "hashkv", "--rev=99999"]);
    d.err(&["endpoint", "hashkv", "--rev=x"]);
    d.ok(&["endpoint", "status", "--cluster"]);
    d.ok(&["endpoint", "--cluster", "health", "-w", "table"]);
    d.ok(&["endpoint", "hashkv", "--cluster=true", "-w", "json"]);
    d.ok(&["endpoint", "health", "extra"]);
    d.err(&["endpoint", "status", "-w", "yaml"]);
    // The member and a closed port: one answer, one failure.
    let short = "--command-timeout=1s";
    d.err(&["endpoint", "health", DEAD_ENDPOINT, short]);
    d.err(&["endpoint", "health", DEAD_ENDPOINT, short, "-w", "json"]);
    d.err(&["endpoint", "status", DEAD_ENDPOINT, short]);
    d.err(&["endpoint", "hashkv", DEAD_ENDPOINT, short, "-w", "table"]);
}

fn alarms_defrag_leader(d: &mut Differential, me: &Pair) {
    // Not fields: with no alarm etcd 3.4 sends no header, and etcdctl's
    // fields writer crashes on that (the NOSPACE test covers fields).
    for w in ["simple", "json", "protobuf", "table"] {
        d.check(&["alarm", "list", "-w", w], None);
    }
    d.err(&["alarm", "list", "extra"]);
    d.ok(&["alarm", "disarm"]);
    d.ok(&["alarm", "disarm", "-w", "json"]);
    d.err(&["alarm", "disarm", "extra"]);

    d.ok(&["defrag"]);
    d.ok(&["defrag", "--cluster", "-w", "json"]);
    d.err(&["defrag", DEAD_ENDPOINT, "--command-timeout=1s"]);

    d.err(&["move-leader"]);
    d.err(&["move-leader", "zz"]);
    d.err(&["move-leader", "1", "2"]);
    with_id(d, me, &["move-leader", "{id}"], true);
    with_id(d, me, &["move-leader", "{id}", "-w", "json"], true);
    with_id(d, me, &["move-leader", "{id}", "-w", "fields"], false);
    d.err(&["move-leader", "1234"]);
}

fn snapshot_and_check(d: &mut Differential) {
    let dir = common::temp_dir();
    let path = dir.path().join("snap.db");
    let path = path.to_str().expect("utf-8 temp path");
    d.err(&["snapshot", "save"]);
    d.ok(&["snapshot", "save", path]);
    assert!(
        std::path::Path::new(path).is_file()
            && !std::path::Path::new(&format!("{path}.part")).exists(),
        "snapshot save leaves the file and no .part"
    );
    d.ok(&["snapshot", "save", path, "-w", "json"]);
    d.err(&["snapshot", "save", path, DEAD_ENDPOINT]);
    d.err(&["snapshot", "save", "/nonexistent-dir/snap.db"]);

    d.err(&["check", "perf", "--load=huge"]);
    d.err(&["check", "datascale", "--load=x"]);
    d.ok(&["put", "/etcdctl-check-perf/x", "y"]);
    d.err(&["check", "perf"]);
    d.err(&["check", "datascale", "--prefix=/etcdctl-check-perf/"]);
}

fn corpus(d: &mut Differential) {
    let me = member_ids(d);
    members(d, &me);
    endpoints(d);
    alarms_defrag_leader(d, &me);
    snapshot_and_check(d);
}

/// Writers for an alarm list with an alarm (not protobuf: the alarm's
/// member ID is binary there).
const ALARM_WRITERS: [&str; 4] = ["simple", "json", "fields", "table"];

/// A backend quota both servers pass at start and one large put exceeds
/// (an empty backend: 16 KiB for us, 20 kB for etcd).
const SMALL_QUOTA: &str = "--quota-backend-bytes=1500000";

/// The NOSPACE alarm: raised by a put over the quota, then seen by every
/// command that reports alarms, then disarmed.
fn nospace(d: &mut Differential, writers: &[&str]) {
    member_ids(d);
    d.err_in(&["put", "big"], vec![b'a'; 1_490_000]);
    for w in writers {
        d.check(&["alarm", "list", "-w", w], None);
    }
    d.err(&["endpoint", "health"]);
    d.err(&["endpoint", "health", "-w", "json"]);
    d.err(&["endpoint", "health", "-w", "table"]);
    d.ok(&["endpoint", "status"]);
    d.ok(&["endpoint", "status", "-w", "json"]);
    d.ok(&["endpoint", "status", "-w", "table"]);
    d.ok(&["alarm", "disarm"]);
    d.ok(&["alarm", "list"]);
    d.ok(&["endpoint", "health", "-w", "fields"]);
}

#[test]
fn etcdctl_cluster_against_our_server() {
    let mut d = Differential::ctls(Kind::Ours, &[]);
    corpus(&mut d);
    d.finish();
}

#[test]
fn etcdctl_cluster_against_etcd_35() {
    let mut d = Differential::ctls(Kind::Ref35, &[]);
    corpus(&mut d);
    d.finish();
}

#[test]
fn etcdctl_cluster_against_etcd_34() {
    let mut d = Differential::ctls(Kind::Ref34, &[]);
    corpus(&mut d);
    d.finish();
}

#[test]
fn etcdctl_nospace_alarm_against_our_server() {
    let mut d = Differential::ctls(Kind::Ours, &[SMALL_QUOTA]);
    nospace(&mut d, &ALARM_WRITERS);
    d.finish();
}

#[test]
fn etcdctl_nospace_alarm_against_etcd_35() {
    let mut d = Differential::ctls(Kind::Ref35, &[SMALL_QUOTA]);
    nospace(&mut d, &ALARM_WRITERS);
    d.finish();
}

#[test]
fn etcdctl_nospace_alarm_against_etcd_34() {
    // etcd 3.4 sends alarm lists without a header, on which etcdctl's
    // fields writer crashes: not compared.
    let mut d = Differential::ctls(Kind::Ref34, &[SMALL_QUOTA]);
    nospace(&mut d, &["simple", "json", "table"]);
    d.finish();
}

/// etcdctl 3.6's own commands (3.5.1 has neither): `downgrade` and
/// `member list --consistency`, against our server, with etcd 3.6's text.
#[test]
fn etcdctl_36_cluster_commands_on_our_server() {
    let server = common::EtcdProcess::start(Kind::Ours, &[]);
    let ctl = Etcdctl::ours();
    let ep = server.endpoint();
    let run = |args: &[&str]| ctl.run(&ep, args, None);

    let out = run(&["member", "list", "--consistency=s"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains(", started, etcd-test, "), "{out:?}");
    let out = run(&["member", "list", "--consistency=x"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (4, "Error: unknown consistency flag \"x\"\n")
    );

    for (args, code, stderr) in [
        (
            &["downgrade", "validate"][..],
            128,
            "Error: TARGET_VERSION not provided\n",
        ),
        (
            &["downgrade", "enable", "3.5", "3.4"][..],
            128,
            "Error: too many arguments\n",
        ),
        (
            &["downgrade", "enable", ""][..],
            128,
            "Error: target version not provided\n",
        ),
        (
            &["downgrade", "validate", "3.5", "-w", "table"][..],
            4,
            "Error: table not supported as output format\n",
        ),
    ] {
        let out = run(args);
        assert_eq!((out.code, out.stderr.as_str()), (code, stderr), "{args:?}");
    }
    let out = run(&["downgrade", "validate", "3.5"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Downgrade validate success, cluster version 3.6\n"),
        "{out:?}"
    );
    let out = run(&["downgrade", "validate", "3.4"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.starts_with("Error: etcdserver: "), "{out:?}");
    let out = run(&["downgrade", "enable", "3.5", "-w", "json"]);
    assert_eq!(out.code, 0, "{out:?}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("downgrade json");
    assert_eq!(json["version"], "3.6", "{out:?}");
    let out = run(&["endpoint", "status"]);
    assert!(out.stdout.trim_end().ends_with(", 3.5.0, true"), "{out:?}");
    let out = run(&["downgrade", "cancel"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .starts_with("Downgrade cancel success, cluster version "),
        "{out:?}"
    );
}

/// `--cluster` and several `--endpoints` on three members, and move-leader
/// moving the leadership for real, with our etcdctl.
#[test]
fn etcdctl_on_three_members() {
    let mut cluster = Cluster::start("ctl-three", 3, &[]);
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let ctl = Etcdctl::ours();
    let one = cluster.endpoint(0);
    let all = (0..3)
        .map(|i| cluster.endpoint(i))
        .collect::<Vec<_>>()
        .join(",");

    let out = ctl.run(
        &one,
        &["endpoint", "status", "--cluster", "-w", "json"],
        None,
    );
    assert_eq!(out.code, 0, "{out:?}");
    let rows: serde_json::Value = serde_json::from_str(&out.stdout).expect("status json");
    let rows = rows.as_array().expect("a list");
    assert_eq!(rows.len(), 3, "{out:?}");
    let leading = rows
        .iter()
        .filter(|r| r["Status"]["leader"] == r["Status"]["header"]["member_id"])
        .count();
    assert_eq!(leading, 1, "one row is the leader's: {out:?}");
    for i in 0..3 {
        assert!(out.stdout.contains(&cluster.client_url(i)), "{out:?}");
    }

    let out = ctl.run(&one, &["endpoint", "health", "--cluster"], None);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout
            .matches(" is healthy: successfully committed proposal: took = ")
            .count(),
        3
    );

    let out = ctl.run(&all, &["endpoint", "status"], None);
    assert_eq!((out.code, out.stdout.lines().count()), (0, 3), "{out:?}");

    let out = ctl.run(&one, &["endpoint", "hashkv", "--cluster"], None);
    assert_eq!(out.code, 0, "{out:?}");
    let hashes: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split(", ").nth(1))
        .collect();
    assert_eq!(hashes.len(), 3, "{out:?}");
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{out:?}");

    let out = ctl.run(&one, &["defrag", "--cluster"], None);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout
            .matches("Finished defragmenting etcd member[http://")
            .count(),
        3
    );

    let follower = (leader + 1) % 3;
    let (from, to) = (cluster.member_id(leader), cluster.member_id(follower));
    let out = ctl.run(&all, &["move-leader", &format!("{to:x}")], None);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (
            0,
            format!("Leadership transferred from {from:x} to {to:x}\n").as_str()
        ),
        "{out:?}"
    );
    assert_eq!(cluster.wait_leader(Duration::from_secs(10)), follower);

    // Only followers given: etcdctl finds no leader to ask.
    let other = (follower + 1) % 3;
    let ep = cluster.endpoint(other);
    let out = ctl.run(&ep, &["move-leader", &format!("{from:x}")], None);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (
            128,
            format!("Error: no leader endpoint given at [{ep}]\n").as_str()
        ),
        "{out:?}"
    );
}
