//! Usage errors need no cluster: each must print etcdctl's `Error:` line and
//! exit with its code before any connection is tried (the endpoint below is
//! never listened on).

use std::process::Command;

/// An endpoint nothing answers on: a usage error must come before dialing.
const NOWHERE: &str = "--endpoints=127.0.0.1:9";

fn run(args: &[&str]) -> (String, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_etcdctl"))
        .arg(NOWHERE)
        .args(args)
        .env_remove("ETCDCTL_ENDPOINTS")
        .output()
        .expect("run etcdctl");
    let stderr = String::from_utf8_lossy(&out.stderr)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    (stderr, out.status.code().unwrap_or(-1))
}

#[test]
fn usage_errors_are_etcdctls() {
    let cases: &[(&[&str], &str, i32)] = &[
        (&["get"], "Error: get command needs one argument as key and an optional argument as range_end", 128),
        (&["get", "a", "--prefix", "--from-key"], "Error: `--prefix` and `--from-key` cannot be set at the same time, choose one", 128),
        (&["get", "a", "--consistency=x"], "Error: unknown consistency flag \"x\"", 4),
        (&["get", "a", "--order=up"], "Error: bad sort order up", 4),
        (&["get", "a", "--limit=x"], "Error: invalid argument \"x\" for \"--limit\" flag: strconv.ParseInt: parsing \"x\": invalid syntax", 1),
        (&["get", "a", "--bogus"], "Error: unknown flag: --bogus", 1),
        (&["frobnicate"], "Error: unknown command \"frobnicate\" for \"etcdctl\"", 1),
        (&["put"], "Error: put command needs 1 argument and input from stdin or 2 arguments", 128),
        (&["put", "k", "v", "--lease=xyz"], "Error: bad lease ID (strconv.ParseInt: parsing \"xyz\": invalid syntax), expecting ID in Hex", 128),
        (&["del", "a", "b", "c"], "Error: del command needs one argument as key and an optional argument as range_end", 128),
        (&["compaction"], "Error: compaction command needs 1 argument", 128),
        (&["txn", "x"], "Error: txn command does not accept argument", 128),
        (&["get", "a", "--dial-timeout=soon"], "Error: invalid argument \"soon\" for \"--dial-timeout\" flag: time: invalid duration \"soon\"", 1),
    ];
    for (args, line, code) in cases {
        let (stderr, got) = run(args);
        assert_eq!((stderr.as_str(), got), (*line, *code), "etcdctl {args:?}");
    }
}

#[test]
fn an_unreachable_cluster_is_a_deadline() {
    let (stderr, code) = run(&["get", "a", "--dial-timeout=200ms"]);
    assert_eq!(
        (stderr.as_str(), code),
        ("Error: context deadline exceeded", 1)
    );
}
