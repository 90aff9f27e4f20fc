//! Our etcdctl against the real etcdctl 3.5.1: `get`, `put`, `del`, `txn`,
//! `compaction` and `version`, in every writer, with their usage errors.
//! Each etcdctl drives its own server of the same kind with the same
//! history, so outputs and exit codes must match invocation by invocation
//! (see `common::Differential::ctls`). The corpus runs against our server
//! and against the real etcd 3.5.1 and 3.4.23.

mod common;

use common::{Differential, Kind};

const WRITERS: [&str; 5] = ["simple", "json", "fields", "protobuf", "table"];

fn corpus(d: &mut Differential) {
    // put: arguments, stdin, prev-kv, ignore-value/lease, usage errors.
    d.ok(&["put", "foo", "bar"]);
    d.ok(&["put", "foo", "bar2", "--prev-kv"]);
    d.ok(&["put", "foo", "--ignore-value", "-w", "json"]);
    d.ok_in(&["put", "stdin-key"], "from stdin\n");
    d.ok(&["put", "--", "dash", "-value"]);
    d.ok(&["put", "sp ace", "x<y&z>"]);
    d.ok(&["put", "nl", "line1\nline2"]);
    d.err(&["put"]);
    d.err(&["put", "missing", "--ignore-value=true", "extra"]);
    d.err(&["put", "k", "v", "--lease=zz"]);
    d.err(&["put", "k", "v", "--lease=1234abcd"]);
    d.err(&["put", "missing", "v", "--ignore-lease"]);
    for w in WRITERS {
        d.check(&["put", "w", w, "--prev-kv", "-w", w], None);
    }
    // get: ranges, prefixes, sorting, limits, revisions, projections.
    for i in 0..5 {
        d.ok(&["put", &format!("k{i}"), &format!("v{}", 4 - i)]);
    }
    for w in WRITERS {
        d.check(&["get", "k", "--prefix", "-w", w], None);
        d.check(&["get", "k1", "k3", "-w", w, "--hex"], None);
    }
    d.ok(&["get", "k", "--prefix", "--limit", "2"]);
    d.ok(&["get", "k", "--prefix", "--sort-by=VALUE"]);
    d.ok(&["get", "k", "--prefix", "--sort-by=value", "--order=DESCEND"]);
    d.ok(&["get", "k", "--prefix", "--order=descend", "-w", "json"]);
    d.ok(&["get", "k", "--prefix", "--sort-by=CREATE", "--order=ASCEND"]);
    d.ok(&[
        "get",
        "k",
        "--prefix",
        "--sort-by=MODIFY",
        "--limit=1",
        "-w",
        "fields",
    ]);
    d.ok(&["get", "k", "--prefix", "--sort-by=VERSION"]);
    d.ok(&["get", "k", "--prefix", "--keys-only"]);
    d.ok(&["get", "k", "--prefix", "--keys-only", "-w", "json"]);
    d.err(&["get", "k", "--prefix", "--count-only", "-w", "json"]);
    d.err(&["get", "k", "--prefix", "--count-only", "--keys-only"]);
    d.ok(&["get", "k", "--prefix", "--count-only", "-w", "fields"]);
    d.ok(&["get", "k", "--prefix", "--print-value-only"]);
    d.err(&["get", "k", "--prefix", "--print-value-only", "-w", "json"]);
    d.ok(&["get", "k2", "--from-key"]);
    d.ok(&["get", "", "--from-key", "--keys-only"]);
    d.ok(&["get", "", "--prefix", "--limit=3", "-w", "json"]);
    d.ok(&["get", "foo", "--rev=2"]);
    d.ok(&["get", "foo", "--rev", "3", "-w", "fields"]);
    d.ok(&["get", "foo", "--consistency=s"]);
    d.ok(&["get", "nothing-here"]);
    d.ok(&["get", "nothing-here", "-w", "json"]);
    d.ok(&["get", "sp ace", "-w", "json"]);
    d.ok(&["get", "sp ace", "-w", "fields"]);
    d.ok(&["get", "nl", "--hex"]);
    d.ok(&["get", "nl", "-w", "fields"]);
    d.err(&["get"]);
    d.err(&["get", "a", "--prefix", "--from-key"]);
    d.err(&["get", "a", "b", "--prefix"]);
    d.err(&["get", "a", "--consistency=x"]);
    d.err(&["get", "a", "--order=sideways"]);
    d.err(&["get", "a", "--sort-by=size"]);
    d.err(&["get", "a", "--limit=x"]);
    d.err(&["get", "a", "-w", "yaml"]);
    d.err(&["get", "foo", "--rev=999"]);
    d.err(&["get", "--bogus", "a"]);
    d.err(&["bogus-command"]);
    // del
    for w in WRITERS {
        d.check(&["del", "w", "--prev-kv", "-w", w], None);
    }
    d.ok(&["del", "k0"]);
    d.ok(&["del", "k1", "k3", "--prev-kv"]);
    d.ok(&["del", "k", "--prefix", "-w", "json"]);
    d.ok(&["del", "nothing-here"]);
    d.ok(&["del", "sp", "--from-key", "--prev-kv", "-w", "fields"]);
    d.err(&["del"]);
    d.err(&["del", "a", "b", "c"]);
    d.err(&["del", "a", "--prefix", "--from-key"]);
    // txn from stdin, in every writer.
    d.ok(&["put", "t1", "1"]);
    let txn = "mod(\"t1\") > \"0\"\nval(\"t1\") = \"1\"\n\nput t2 two\nget t1\ndel nothing\n\nput t3 three\n\n";
    for w in WRITERS {
        d.check(&["txn", "-w", w], Some(txn.as_bytes()));
    }
    d.ok_in(
        &["txn"],
        "ver(\"t1\") = \"9\"\n\nput t2 x\n\nput t3 \"quoted value\"\nget t3 --prefix\n\n",
    );
    d.ok_in(
        &["txn", "-i"],
        "create(\"t2\") != \"0\"\n\ndel t2 --prev-kv\n\n\n",
    );
    d.ok_in(
        &["txn", "-w", "json"],
        "value(\"t1\") < \"2\"\n\nput 't 4' 'a b'\n\n\n",
    );
    d.ok_in(&["txn"], "\n\n\n");
    d.err_in(&["txn"], "bogus line\n\n\n");
    d.err_in(&["txn"], "mod(\"t1\") > \"x\"\n\n\n");
    d.err_in(&["txn"], "\nput onlykey\n\n\n");
    d.err_in(&["txn"], "\nfrobnicate a b\n\n\n");
    d.err_in(&["txn"], "mod(\"t1\") > \"0\"\n\nput a b\n");
    d.err(&["txn", "extra-arg"]);
    // compaction
    d.ok(&["compaction", "3"]);
    d.err(&["compaction", "3"]);
    d.err(&["compaction", "99999"]);
    d.err(&["compaction"]);
    d.err(&["compaction", "abc"]);
    d.ok(&["compaction", "5", "--physical"]);
    d.err(&["get", "foo", "--rev=2"]);
    // global flags
    d.ok(&["--hex", "get", "t1"]);
    d.ok(&["get", "t1", "--hex=true", "-w", "json"]);
    d.ok(&["get", "t1", "--command-timeout=3s", "--dial-timeout=1s"]);
    d.err(&["get", "t1", "--dial-timeout=abc"]);
    d.ok(&["version"]);
    // clientv3's limits: over 2 MiB is refused by the client, over the
    // server's 1.5 MiB request limit by the server.
    d.err_in(&["put", "big"], vec![b'a'; 3_000_000]);
    d.err_in(&["put", "big"], vec![b'a'; 1_600_000]);
    d.ok_in(&["put", "big"], vec![b'a'; 1_000_000]);
}

#[test]
fn etcdctl_kv_against_our_server() {
    let mut d = Differential::ctls(Kind::Ours, &[]);
    corpus(&mut d);
    d.finish();
}

#[test]
fn etcdctl_kv_against_etcd_35() {
    let mut d = Differential::ctls(Kind::Ref35, &[]);
    corpus(&mut d);
    d.finish();
}

#[test]
fn etcdctl_kv_against_etcd_34() {
    let mut d = Differential::ctls(Kind::Ref34, &[]);
    corpus(&mut d);
    d.finish();
}
