//! Differential tests: the real etcdctl (3.4.23 and 3.5.1) runs the same
//! sequence of invocations against our server and against etcd 3.5.1, each on a
//! fresh data directory; normalized stdout, stderr and exit code must match
//! invocation by invocation (see `common::Normalizer` for what is normalized:
//! ids, ports, versions, raft term/index, db size, timings, never revisions).
//!
//! Each test starts both servers once and collects every mismatch, then fails
//! listing them with both outputs.

mod common;

use common::{Differential, Etcdctl, Kind};

/// Which etcdctl drives a test; the few flags one of them lacks are skipped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctl {
    V34,
    V35,
}

impl Ctl {
    fn start(self, extra_args: &[&str]) -> Differential {
        let kind = match self {
            Ctl::V34 => Kind::Ref34,
            Ctl::V35 => Kind::Ref35,
        };
        Differential::start(Etcdctl::reference(kind), extra_args)
    }
}

/// put and get: value forms, prev-kv, ignore-value/lease, range options, output formats.
fn put_get(ctl: Ctl) {
    let mut d = ctl.start(&[]);
    // put
    d.ok(&["put", "foo", "bar"]); // rev 2
    d.ok(&["put", "foo", "bar2", "--prev-kv"]); // rev 3
    d.ok(&["put", "foo", "--ignore-value", "-w", "json"]); // rev 4
    d.err(&["put", "missing", "--ignore-value"]);
    d.ok(&["put", "foo", "bar3", "--ignore-lease"]); // rev 5
    d.err(&["put", "missing", "v", "--ignore-lease"]);
    d.err(&["put", "", "v"]);
    d.ok_in(&["put", "fromstdin"], "value from stdin\n"); // rev 6
    d.ok(&["put", "--", "dash", "-value-with-dash"]); // rev 7
    d.ok(&["put", "key with spaces", "value with spaces"]); // rev 8
    d.ok_in(&["put", "bin"], b"\x00\x01\xfe\xff\n".as_slice()); // rev 9
    d.ok(&["put", "utf8", "h\u{e9}llo w\u{f6}rld \u{2713}"]); // rev 10
    d.ok(&["put", "foo", "bar4", "--prev-kv", "-w", "json"]); // rev 11
                                                              // get: single keys, formats
    d.ok(&["get", "foo"]);
    d.ok(&["get", "missing"]);
    d.ok(&["get", "missing", "-w", "json"]);
    d.err(&["get", ""]);
    d.ok(&["get", "foo", "-w", "json"]);
    d.ok(&["get", "foo", "-w", "fields"]);
    d.ok(&["get", "foo", "-w", "simple"]);
    d.ok(&["get", "fromstdin", "-w", "json"]);
    d.ok(&["get", "dash"]);
    d.ok(&["get", "key with spaces", "--print-value-only"]);
    d.ok(&["get", "bin", "--hex"]);
    d.ok(&["get", "bin", "-w", "json"]);
    d.ok(&["get", "utf8", "--hex", "-w", "fields"]);
    // a range of keys with distinct versions, create and mod revisions, values
    for (key, value) in [
        ("k3", "c"),
        ("k1", "e"),
        ("k5", "a"),
        ("k2", "d"),
        ("k4", "b"),
    ] {
        d.ok(&["put", key, value]); // revs 12..=16
    }
    d.ok(&["put", "k5", "a2"]); // rev 17
    d.ok(&["put", "k5", "a3"]); // rev 18
    d.ok(&["put", "k1", "e2"]); // rev 19
    d.ok(&["get", "k", "--prefix"]);
    d.ok(&["get", "k3", "--from-key"]);
    d.ok(&["get", "k2", "k4"]);
    d.ok(&["get", "k4", "k2"]);
    d.ok(&["get", "k", "--prefix", "--limit", "2"]);
    d.ok(&["get", "k", "--prefix", "--limit", "2", "-w", "json"]);
    d.ok(&["get", "k", "--prefix", "--order", "DESCEND"]);
    d.ok(&[
        "get",
        "k",
        "--prefix",
        "--order",
        "ASCEND",
        "--sort-by",
        "KEY",
    ]);
    d.ok(&[
        "get",
        "k",
        "--prefix",
        "--sort-by",
        "VERSION",
        "--order",
        "DESCEND",
    ]);
    d.ok(&[
        "get",
        "k",
        "--prefix",
        "--sort-by",
        "VERSION",
        "--order",
        "ASCEND",
    ]);
    d.ok(&[
        "get",
        "k",
        "--prefix",
        "--sort-by",
        "CREATE",
        "--order",
        "DESCEND",
    ]);
    d.ok(&[
        "get",
        "k",
        "--prefix",
        "--sort-by",
        "CREATE",
        "--order",
        "ASCEND",
    ]);
    d.ok(&[
        "get",
        "k",
        "--prefix",
        "--sort-by",
        "MODIFY",
        "--order",
        "DESCEND",
    ]);
    d.ok(&[
        "get",
        "k",
        "--prefix",
        "--sort-by",
        "VALUE",
        "--order",
        "ASCEND",
    ]);
    d.ok(&[
        "get",
        "k",
        "--prefix",
        "--sort-by",
        "VALUE",
        "--order",
        "DESCEND",
        "--limit",
        "3",
    ]);
    d.ok(&["get", "k", "--prefix", "--sort-by", "MODIFY", "-w", "json"]);
    d.ok(&["get", "k", "--prefix", "--keys-only"]);
    d.ok(&["get", "k", "--prefix", "--keys-only", "-w", "json"]);
    if ctl == Ctl::V35 {
        // etcdctl 3.4 has no --count-only; 3.5 takes it with -w fields only.
        d.ok(&["get", "k", "--prefix", "--count-only", "-w", "fields"]);
        d.err(&["get", "k", "--prefix", "--count-only", "-w", "json"]);
    }
    d.ok(&["get", "k", "--prefix", "--print-value-only"]);
    d.ok(&["get", "k", "--prefix", "--consistency=s"]);
    d.ok(&["get", "k", "--prefix", "-w", "fields"]);
    d.ok(&["get", "", "--prefix", "--keys-only"]);
    if ctl == Ctl::V35 {
        d.ok(&["get", "", "--from-key", "--count-only", "-w", "fields"]);
    }
    // revisions: old, current, future
    d.ok(&["get", "foo", "--rev", "2"]);
    d.ok(&["get", "foo", "--rev", "3", "-w", "json"]);
    d.ok(&["get", "k", "--prefix", "--rev", "14"]);
    d.ok(&["get", "k5", "--rev", "19"]);
    d.ok(&["get", "k5", "--rev", "1"]);
    d.err(&["get", "foo", "--rev", "20"]);
    d.err(&["get", "foo", "--rev", "1000", "-w", "json"]);
    d.finish();
}

/// del and txn (non-interactive and interactive).
fn del_txn(ctl: Ctl) {
    let mut d = ctl.start(&[]);
    for key in ["a", "b", "c", "d", "p/1", "p/2", "p/3", "q", "r"] {
        d.ok(&["put", key, &format!("v-{key}")]); // revs 2..=10
    }
    d.ok(&["del", "a"]);
    d.ok(&["del", "a"]);
    d.ok(&["del", "missing", "-w", "json"]);
    d.err(&["del", ""]);
    d.ok(&["del", "p/", "--prefix", "--prev-kv"]);
    d.ok(&["del", "b", "d"]);
    d.ok(&["del", "d", "--prev-kv", "-w", "json"]);
    d.ok(&["del", "q", "--from-key", "-w", "json"]);
    d.ok(&["get", "", "--from-key", "-w", "json"]);
    // a key deleted and put again starts a new generation
    d.ok(&["put", "a", "again"]);
    d.ok(&["get", "a", "-w", "json"]);
    d.ok(&["put", "n", "5"]);
    d.ok(&["put", "n", "6"]);
    // txn from stdin: compares, success ops, failure ops
    let success = "value(\"n\") = \"6\"\nversion(\"n\") > \"1\"\ncreate(\"n\") < \"1000\"\n\
                   mod(\"n\") != \"3\"\n\nput n 7\nget n\ndel c\n\nput n failed\n\n";
    d.ok_in(&["txn"], success);
    d.ok_in(&["txn", "-w", "json"], success);
    let failure = "value(\"n\") = \"6\"\n\nput n 8\n\nget n\nput x from-failure\ndel a\n\n";
    d.ok_in(&["txn"], failure);
    d.ok_in(&["txn", "-w", "json"], failure);
    d.ok_in(&["txn"], "version(\"nokey\") = \"0\"\n\nget nokey\n\n\n");
    d.ok_in(&["txn"], "\nput t1 x\nput t2 y\nget t --prefix\n\n\n");
    d.ok_in(
        &["txn", "-w", "json"],
        "mod(\"t1\") > \"0\"\n\ndel t --prefix\n\n\n",
    );
    d.ok_in(
        &["txn", "-w", "fields"],
        "create(\"a\") = \"0\"\n\n\nget a\n\n",
    );
    d.err_in(&["txn"], "\nput dup 1\nput dup 2\n\n\n");
    d.err_in(&["txn"], "\nput dup 1\ndel dup\n\n\n");
    d.ok_in(
        &["txn"],
        "value(\"n\") < \"zzz\"\nvalue(\"n\") > \"a\"\n\nget n\n\n\n",
    );
    d.ok(&["get", "", "--from-key", "-w", "json"]);
    // interactive: etcdctl prints its prompts
    d.ok_in(
        &["txn", "-i"],
        "value(\"n\") = \"failed\"\n\nput n 10\nget n\n\nget a\n\n",
    );
    d.ok_in(
        &["txn", "-i", "-w", "json"],
        "version(\"n\") = \"42\"\n\nput n 11\n\nget n\n\n",
    );
    d.ok(&["get", "n", "-w", "json"]);
    d.ok(&["del", "", "--from-key", "--prev-kv", "-w", "json"]);
    d.ok(&["get", "", "--from-key", "-w", "json"]);
    d.finish();
}

/// Compaction and reads below the compacted revision.
fn compaction(ctl: Ctl) {
    let mut d = ctl.start(&[]);
    for i in 1..=8 {
        d.ok(&["put", "c", &format!("v{i}")]); // revs 2..=9
    }
    d.ok(&["put", "other", "x"]); // rev 10
    d.ok(&["get", "c", "--rev", "3"]);
    d.ok(&["compaction", "4"]);
    d.err(&["get", "c", "--rev", "3"]);
    d.ok(&["get", "c", "--rev", "4", "-w", "json"]);
    d.ok(&["get", "c", "--rev", "6"]);
    d.ok(&["compaction", "--physical", "6"]);
    d.err(&["get", "c", "--rev", "5", "-w", "json"]);
    d.err(&["get", "", "--prefix", "--rev", "2"]);
    d.ok(&["get", "", "--prefix", "--rev", "6"]);
    if ctl == Ctl::V35 {
        d.ok(&[
            "get",
            "",
            "--prefix",
            "--rev",
            "6",
            "--count-only",
            "-w",
            "fields",
        ]);
    }
    d.err(&["compaction", "5"]);
    d.err(&["compaction", "6"]);
    d.err(&["compaction", "100"]);
    d.err(&["compaction", "--physical", "11"]);
    d.ok(&["compaction", "10"]);
    d.ok(&["get", "c", "-w", "json"]);
    d.ok_in(&["txn"], "\nget c --rev 10\n\n\n");
    d.err_in(&["txn"], "\nget c --rev 9\n\n\n");
    d.ok(&["put", "c", "after-compaction"]);
    d.ok(&["get", "c", "-w", "json"]);
    d.ok(&["del", "c"]);
    d.ok(&["compaction", "12"]);
    d.ok(&["get", "c", "--rev", "12", "-w", "json"]);
    d.ok(&["get", "", "--from-key", "-w", "json"]);
    d.finish();
}

/// endpoint status / health and member list in every output format.
fn cluster_info(ctl: Ctl) {
    let mut d = ctl.start(&[]);
    d.ok(&["put", "x", "y"]);
    for format in ["json", "table", "fields", "simple"] {
        d.ok(&["endpoint", "status", "-w", format]);
        d.ok(&["endpoint", "health", "-w", format]);
        d.ok(&["member", "list", "-w", format]);
    }
    d.ok(&["member", "list", "--hex", "-w", "json"]);
    d.ok(&["endpoint", "status", "--hex", "-w", "json"]);
    d.finish();
}

/// Request limits: --max-txn-ops=4 and --max-request-bytes=1024 on both servers.
fn limits(ctl: Ctl) {
    let mut d = ctl.start(&["--max-txn-ops=4", "--max-request-bytes=1024"]);
    d.ok_in(&["txn"], "\nput a 1\nput b 2\nput c 3\nput d 4\n\n\n");
    d.err_in(
        &["txn"],
        "\nput a 1\nput b 2\nput c 3\nput d 4\nput e 5\n\n\n",
    );
    d.err_in(&["txn"], "\n\nget a\nget b\nget c\nget d\nget e\n\n");
    let compares = "version(\"a\") = \"1\"\n".repeat(5);
    d.err_in(&["txn"], format!("{compares}\nget a\n\n\n"));
    d.ok_in(
        &["txn"],
        format!(
            "{}\nget a\n\nget b\n\n",
            "version(\"a\") = \"1\"\n".repeat(4)
        ),
    );
    d.err_in(
        &["txn", "-w", "json"],
        "\nput dup 1\nget x\nput dup 2\n\n\n",
    );
    d.ok(&["put", "small", &"s".repeat(500)]);
    d.err(&["put", "big", &"b".repeat(2048)]);
    d.err(&["put", "big", &"b".repeat(2048), "-w", "json"]);
    d.err_in(&["txn"], format!("\nput big {}\n\n\n", "b".repeat(2048)));
    d.ok(&["get", "", "--from-key", "--keys-only", "-w", "json"]);
    d.finish();
}

#[test]
fn put_get_etcdctl_34() {
    put_get(Ctl::V34);
}

#[test]
fn put_get_etcdctl_35() {
    put_get(Ctl::V35);
}

#[test]
fn del_txn_etcdctl_34() {
    del_txn(Ctl::V34);
}

#[test]
fn del_txn_etcdctl_35() {
    del_txn(Ctl::V35);
}

#[test]
fn compaction_etcdctl_34() {
    compaction(Ctl::V34);
}

#[test]
fn compaction_etcdctl_35() {
    compaction(Ctl::V35);
}

#[test]
fn cluster_info_etcdctl_34() {
    cluster_info(Ctl::V34);
}

#[test]
fn cluster_info_etcdctl_35() {
    cluster_info(Ctl::V35);
}

#[test]
fn limits_etcdctl_34() {
    limits(Ctl::V34);
}

#[test]
fn limits_etcdctl_35() {
    limits(Ctl::V35);
}
