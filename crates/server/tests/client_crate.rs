//! The `etcd-client` crate as an independent client: KV round trips with
//! etcd's revision semantics, range options, error codes and messages, Status
//! and MemberList. Every scenario runs against our server and against etcd
//! 3.5.1: its assertions hold on both, and the transcripts of what each server
//! answered (revisions, keys, values, versions, counts, errors) must be equal.

mod common;

use common::{start_pair, EtcdProcess};
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, GetOptions, GetResponse,
    KeyValue, PutOptions, ResponseHeader, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};

/// Connects to `process`, saying which server the scenario runs against (shown
/// with a failing test's output, so a failed assertion names its server).
async fn connect(process: &EtcdProcess) -> Client {
    eprintln!(
        "connecting to {} at {}",
        process.kind().label(),
        process.client_url()
    );
    Client::connect([process.client_url()], None)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", process.client_url()))
}

fn revision(header: Option<&ResponseHeader>) -> i64 {
    header.expect("a response header").revision()
}

fn show_kv(kv: &KeyValue) -> String {
    format!(
        "{}={} create={} mod={} version={} lease={}",
        String::from_utf8_lossy(kv.key()),
        String::from_utf8_lossy(kv.value()),
        kv.create_revision(),
        kv.mod_revision(),
        kv.version(),
        kv.lease()
    )
}

fn show_get(resp: &GetResponse) -> String {
    let kvs: Vec<String> = resp.kvs().iter().map(show_kv).collect();
    format!(
        "rev={} count={} more={} kvs=[{}]",
        revision(resp.header()),
        resp.count(),
        resp.more(),
        kvs.join(", ")
    )
}

/// `Code: message` of a gRPC error (and the error itself for anything else).
fn show_err(error: etcd_client::Error) -> String {
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => format!("not a gRPC status: {other}"),
    }
}

/// Panics at the first line where two transcripts differ, showing both.
fn assert_same_transcript(ours: &[String], reference: &[String]) {
    if std::env::var_os("ETCD_RS_TEST_VERBOSE").is_some() {
        eprintln!(
            "etcd 3.5.1:\n{}\nours:\n{}",
            reference.join("\n"),
            ours.join("\n")
        );
    }
    for (i, (o, r)) in ours.iter().zip(reference).enumerate() {
        assert_eq!(
            o,
            r,
            "step {i} differs from etcd 3.5.1\nours:\n{}\netcd 3.5.1:\n{}",
            ours.join("\n"),
            reference.join("\n")
        );
    }
    assert_eq!(ours.len(), reference.len(), "transcripts differ in length");
}

/// Puts, gets, deletes, txns and compaction from a fresh server (revision 1).
async fn kv_scenario(c: &mut Client) -> Vec<String> {
    let mut t = Vec::new();

    let resp = c.put("foo", "bar", None).await.expect("put");
    assert_eq!(revision(resp.header()), 2);
    assert!(resp.prev_key().is_none());
    t.push(format!("put foo bar: rev={}", revision(resp.header())));

    let resp = c
        .put("foo", "baz", Some(PutOptions::new().with_prev_key()))
        .await
        .expect("put prev_kv");
    assert_eq!(revision(resp.header()), 3);
    let prev = resp.prev_key().expect("prev_kv");
    assert_eq!(
        (prev.value(), prev.mod_revision(), prev.version()),
        (&b"bar"[..], 2, 1)
    );
    t.push(format!(
        "put foo baz prev_kv: rev={} prev={}",
        3,
        show_kv(prev)
    ));

    let resp = c
        .put(
            "foo",
            "",
            Some(PutOptions::new().with_ignore_value().with_prev_key()),
        )
        .await
        .expect("put ignore_value");
    assert_eq!(revision(resp.header()), 4);
    t.push(format!(
        "put foo ignore_value: rev={} prev={}",
        revision(resp.header()),
        resp.prev_key().map(show_kv).unwrap_or_default()
    ));

    let resp = c.get("foo", None).await.expect("get foo");
    let kv = &resp.kvs()[0];
    assert_eq!(
        (
            kv.value(),
            kv.create_revision(),
            kv.mod_revision(),
            kv.version()
        ),
        (&b"baz"[..], 2, 4, 3)
    );
    t.push(format!("get foo: {}", show_get(&resp)));

    // Keys with distinct versions, create and mod revisions and values.
    for (key, value) in [
        ("k3", "c"),
        ("k1", "e"),
        ("k5", "a"),
        ("k2", "d"),
        ("k4", "b"),
    ] {
        let resp = c.put(key, value, None).await.expect("put k");
        t.push(format!(
            "put {key} {value}: rev={}",
            revision(resp.header())
        ));
    }
    c.put("k5", "a2", None).await.expect("put k5");
    let resp = c.put("k1", "e2", None).await.expect("put k1");
    assert_eq!(revision(resp.header()), 11);

    let gets: Vec<(&str, GetOptions)> = vec![
        ("prefix", GetOptions::new().with_prefix()),
        (
            "prefix limit 2",
            GetOptions::new().with_prefix().with_limit(2),
        ),
        (
            "prefix sort version desc",
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Version, SortOrder::Descend),
        ),
        (
            "prefix sort create asc",
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Create, SortOrder::Ascend),
        ),
        (
            "prefix sort mod desc limit 3",
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Mod, SortOrder::Descend)
                .with_limit(3),
        ),
        (
            "prefix sort value asc",
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Value, SortOrder::Ascend),
        ),
        (
            "prefix sort key desc",
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Key, SortOrder::Descend),
        ),
        (
            "prefix keys_only",
            GetOptions::new().with_prefix().with_keys_only(),
        ),
        (
            "prefix count_only",
            GetOptions::new().with_prefix().with_count_only(),
        ),
        (
            "prefix at rev 7",
            GetOptions::new().with_prefix().with_revision(7),
        ),
        (
            "prefix serializable",
            GetOptions::new().with_prefix().with_serializable(),
        ),
        ("range k2..k4", GetOptions::new().with_range("k4")),
        ("from key", GetOptions::new().with_from_key()),
    ];
    for (name, options) in gets {
        let key = if name.starts_with("range") { "k2" } else { "k" };
        let resp = c.get(key, Some(options)).await.expect(name);
        t.push(format!("get {name}: {}", show_get(&resp)));
    }
    let resp = c
        .get("k", Some(GetOptions::new().with_prefix().with_limit(2)))
        .await
        .expect("limit");
    assert_eq!((resp.kvs().len(), resp.count(), resp.more()), (2, 5, true));
    let resp = c
        .get("k", Some(GetOptions::new().with_prefix().with_count_only()))
        .await
        .expect("count_only");
    assert!(resp.kvs().is_empty());
    assert_eq!(resp.count(), 5);
    let resp = c
        .get("k", Some(GetOptions::new().with_prefix().with_keys_only()))
        .await
        .expect("keys_only");
    assert!(resp.kvs().iter().all(|kv| kv.value().is_empty()));
    assert_eq!(resp.kvs().len(), 5);
    let resp = c
        .get("k", Some(GetOptions::new().with_prefix().with_revision(7)))
        .await
        .expect("revision 7");
    assert_eq!(resp.kvs().len(), 3, "k3, k1 and k5 existed at revision 7");
    assert_eq!(
        revision(resp.header()),
        11,
        "the header has the current revision"
    );

    // Deletes.
    let resp = c
        .delete("foo", Some(DeleteOptions::new().with_prev_key()))
        .await
        .expect("delete foo");
    assert_eq!((resp.deleted(), revision(resp.header())), (1, 12));
    t.push(format!(
        "delete foo: rev={} deleted={} prev=[{}]",
        revision(resp.header()),
        resp.deleted(),
        resp.prev_kvs()
            .iter()
            .map(show_kv)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let resp = c.delete("foo", None).await.expect("delete missing");
    assert_eq!((resp.deleted(), revision(resp.header())), (0, 12));
    t.push(format!(
        "delete missing: rev={} deleted={}",
        12,
        resp.deleted()
    ));
    let resp = c
        .delete("k2", Some(DeleteOptions::new().with_range("k4")))
        .await
        .expect("delete range");
    assert_eq!((resp.deleted(), revision(resp.header())), (2, 13));
    t.push(format!(
        "delete k2..k4: rev={} deleted={}",
        13,
        resp.deleted()
    ));
    let resp = c.put("foo", "again", None).await.expect("put after delete");
    assert_eq!(revision(resp.header()), 14);
    let resp = c.get("foo", None).await.expect("get foo again");
    let kv = &resp.kvs()[0];
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (14, 14, 1)
    );
    t.push(format!("get foo after re-create: {}", show_get(&resp)));

    // Transactions: one revision per txn, success and failure branches, nesting.
    let txn = Txn::new()
        .when([
            Compare::value("foo", CompareOp::Equal, "again"),
            Compare::version("k1", CompareOp::Greater, 1),
            Compare::create_revision("k5", CompareOp::Less, 100),
            Compare::mod_revision("k4", CompareOp::NotEqual, 3),
        ])
        .and_then([
            TxnOp::put("t1", "x", Some(PutOptions::new().with_prev_key())),
            TxnOp::put("t2", "y", None),
            TxnOp::get("t", Some(GetOptions::new().with_prefix())),
            TxnOp::delete("k1", Some(DeleteOptions::new().with_prev_key())),
        ])
        .or_else([TxnOp::put("never", "x", None)]);
    let resp = c.txn(txn).await.expect("txn success");
    assert!(resp.succeeded());
    assert_eq!(revision(resp.header()), 15);
    t.push(format!("txn success: {}", show_txn(&resp)));
    let txn = Txn::new()
        .when([Compare::value("foo", CompareOp::Equal, "nope")])
        .and_then([TxnOp::put("never", "x", None)])
        .or_else([
            TxnOp::get("foo", None),
            TxnOp::put("f", "from-failure", None),
            TxnOp::txn(
                Txn::new()
                    .when([Compare::version("f", CompareOp::Equal, 0)])
                    .and_then([TxnOp::get("f", None)]),
            ),
        ]);
    let resp = c.txn(txn).await.expect("txn failure");
    assert!(!resp.succeeded());
    assert_eq!(revision(resp.header()), 16);
    t.push(format!("txn failure with nested txn: {}", show_txn(&resp)));
    let txn = Txn::new().and_then([TxnOp::get("foo", None)]);
    let resp = c.txn(txn).await.expect("read-only txn");
    assert_eq!(
        revision(resp.header()),
        16,
        "a read-only txn does not add a revision"
    );
    t.push(format!("read-only txn: {}", show_txn(&resp)));

    // Compaction.
    let resp = c.compact(5, None).await.expect("compact 5");
    t.push(format!("compact 5: rev={}", revision(resp.header())));
    let resp = c
        .compact(8, Some(CompactionOptions::new().with_physical()))
        .await
        .expect("compact 8 physical");
    t.push(format!(
        "compact 8 physical: rev={}",
        revision(resp.header())
    ));
    let resp = c
        .get("k", Some(GetOptions::new().with_prefix().with_revision(8)))
        .await
        .expect("get at the compacted revision");
    t.push(format!("get prefix k at rev 8: {}", show_get(&resp)));
    let resp = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .expect("get all");
    t.push(format!("get all: {}", show_get(&resp)));
    t
}

fn show_txn(resp: &etcd_client::TxnResponse) -> String {
    let ops: Vec<String> = resp
        .op_responses()
        .iter()
        .map(|op| match op {
            TxnOpResponse::Put(p) => format!(
                "put(rev={} prev={})",
                revision(p.header()),
                p.prev_key().map(show_kv).unwrap_or_default()
            ),
            TxnOpResponse::Get(g) => format!("get({})", show_get(g)),
            TxnOpResponse::Delete(d) => format!(
                "delete(rev={} deleted={} prev=[{}])",
                revision(d.header()),
                d.deleted(),
                d.prev_kvs()
                    .iter()
                    .map(show_kv)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            TxnOpResponse::Txn(t) => format!("txn({})", show_txn(t)),
        })
        .collect();
    format!(
        "rev={} succeeded={} ops=[{}]",
        revision(resp.header()),
        resp.succeeded(),
        ops.join("; ")
    )
}

/// Errors: codes and messages, and a failed request changes nothing.
async fn error_scenario(c: &mut Client) -> Vec<String> {
    let mut t = Vec::new();
    for i in 1..=5 {
        c.put("e", format!("v{i}"), None).await.expect("put e"); // revs 2..=6
    }
    let mut expect_err =
        |what: &str, result: Result<String, etcd_client::Error>, expected: &str| {
            let got = match result {
                Ok(ok) => format!("unexpected success: {ok}"),
                Err(e) => show_err(e),
            };
            assert_eq!(got, expected, "{what}");
            t.push(format!("{what}: {got}"));
        };
    const FUTURE: &str = "OutOfRange: etcdserver: mvcc: required revision is a future revision";
    const COMPACTED: &str = "OutOfRange: etcdserver: mvcc: required revision has been compacted";
    const NO_KEY: &str = "InvalidArgument: etcdserver: key is not provided";
    const TOO_MANY: &str = "InvalidArgument: etcdserver: too many operations in txn request";
    const DUPLICATE: &str = "InvalidArgument: etcdserver: duplicate key given in txn request";
    const NOT_FOUND: &str = "InvalidArgument: etcdserver: key not found";

    let get_at = |rev: i64| GetOptions::new().with_revision(rev);
    let r = c.get("e", Some(get_at(7))).await.map(|r| show_get(&r));
    expect_err("get at future revision 7", r, FUTURE);
    let r = c.get("e", Some(get_at(1000))).await.map(|r| show_get(&r));
    expect_err("get at future revision 1000", r, FUTURE);
    let r = c.compact(7, None).await.map(|_| String::new());
    expect_err("compact future revision 7", r, FUTURE);
    c.compact(4, None).await.expect("compact 4");
    let r = c.get("e", Some(get_at(3))).await.map(|r| show_get(&r));
    expect_err("get at compacted revision 3", r, COMPACTED);
    let r = c.compact(4, None).await.map(|_| String::new());
    expect_err("compact 4 again", r, COMPACTED);
    let r = c.compact(2, None).await.map(|_| String::new());
    expect_err("compact older revision 2", r, COMPACTED);
    let txn = Txn::new().and_then([TxnOp::get("e", Some(get_at(3)))]);
    let r = c.txn(txn).await.map(|r| show_txn(&r));
    expect_err("txn get at compacted revision", r, COMPACTED);
    let r = c.put("", "v", None).await.map(|_| String::new());
    expect_err("put empty key", r, NO_KEY);
    let r = c.get("", None).await.map(|r| show_get(&r));
    expect_err("get empty key", r, NO_KEY);
    let r = c.delete("", None).await.map(|_| String::new());
    expect_err("delete empty key", r, NO_KEY);
    let r = c
        .txn(Txn::new().and_then([TxnOp::put("", "v", None)]))
        .await
        .map(|r| show_txn(&r));
    expect_err("txn put empty key", r, NO_KEY);
    let ops: Vec<TxnOp> = (0..129)
        .map(|i| TxnOp::put(format!("op{i}"), "v", None))
        .collect();
    let r = c.txn(Txn::new().and_then(ops)).await.map(|r| show_txn(&r));
    expect_err("txn with 129 ops (max 128)", r, TOO_MANY);
    let ops: Vec<TxnOp> = (0..128)
        .map(|i| TxnOp::get(format!("op{i}"), None))
        .collect();
    let r = c
        .txn(Txn::new().and_then(ops))
        .await
        .map(|r| r.succeeded().to_string());
    assert_eq!(r.expect("128 ops are allowed"), "true");
    let txn = Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]);
    let r = c.txn(txn).await.map(|r| show_txn(&r));
    expect_err("txn putting one key twice", r, DUPLICATE);
    let txn = Txn::new().and_then([
        TxnOp::put("d", "1", None),
        TxnOp::delete("c", Some(DeleteOptions::new().with_range("e"))),
    ]);
    let r = c.txn(txn).await.map(|r| show_txn(&r));
    expect_err("txn putting a key it deletes", r, DUPLICATE);
    let options = PutOptions::new().with_ignore_value();
    let r = c
        .put("missing", "", Some(options))
        .await
        .map(|_| String::new());
    expect_err("put ignore_value on a missing key", r, NOT_FOUND);
    let r = c
        .put("missing", "v", Some(PutOptions::new().with_ignore_lease()))
        .await
        .map(|_| String::new());
    expect_err("put ignore_lease on a missing key", r, NOT_FOUND);

    // Nothing above changed the store.
    let resp = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .expect("get all");
    assert_eq!(
        revision(resp.header()),
        6,
        "failed requests must not add revisions"
    );
    t.push(format!("after the errors: {}", show_get(&resp)));
    t
}

async fn status_and_members(process: &EtcdProcess) {
    let label = process.kind().label();
    let mut c = connect(process).await;
    c.put("s", "v", None).await.expect("put");
    let status = c.status().await.expect("status");
    let header = status.header().expect("status header");
    assert_ne!(header.member_id(), 0, "{label}: member id");
    assert_ne!(header.cluster_id(), 0, "{label}: cluster id");
    assert_eq!(header.revision(), 2, "{label}: revision");
    assert!(header.raft_term() >= 1, "{label}: raft term");
    assert_eq!(
        status.leader(),
        header.member_id(),
        "{label}: the only member leads"
    );
    assert!(status.raft_index() > 0, "{label}: raft index");
    assert!(
        status.raft_applied_index() > 0,
        "{label}: raft applied index"
    );
    assert!(
        status.raft_applied_index() <= status.raft_index(),
        "{label}: applied {} > committed {}",
        status.raft_applied_index(),
        status.raft_index()
    );
    assert_eq!(status.raft_term(), header.raft_term(), "{label}: raft term");
    assert!(status.db_size() > 0, "{label}: db size");
    assert!(status.raft_used_db_size() > 0, "{label}: db size in use");
    assert!(
        status.errors().is_empty(),
        "{label}: errors {:?}",
        status.errors()
    );
    assert!(!status.is_learner(), "{label}: learner");
    let version: Vec<&str> = status.version().split('.').collect();
    assert!(
        version.len() == 3 && version.iter().all(|p| p.parse::<u32>().is_ok()),
        "{label}: version {:?}",
        status.version()
    );
    assert!(version[0] == "3" && version[1].parse::<u32>().unwrap_or(0) >= 5);

    let members = c.member_list().await.expect("member list");
    let list_header = members.header().expect("member list header");
    assert_eq!(
        list_header.cluster_id(),
        header.cluster_id(),
        "{label}: cluster id"
    );
    assert_eq!(
        list_header.member_id(),
        header.member_id(),
        "{label}: member id"
    );
    let [member] = members.members() else {
        panic!("{label}: expected one member: {:?}", members.members());
    };
    assert_eq!(member.id(), header.member_id(), "{label}: member id");
    assert_eq!(member.name(), process.name(), "{label}: member name");
    assert_eq!(
        member.peer_urls(),
        [process.peer_url()],
        "{label}: peer urls"
    );
    assert_eq!(
        member.client_urls(),
        [process.client_url()],
        "{label}: client urls"
    );
    assert!(!member.is_learner(), "{label}: learner");
}

/// Acknowledged writes survive SIGTERM and SIGKILL, with their revisions, and
/// are not applied a second time when the log is replayed.
async fn restart_scenario(process: &mut EtcdProcess) -> Vec<String> {
    let label = process.kind().label();
    let mut t = Vec::new();
    let mut c = connect(process).await;
    for i in 1..=3 {
        c.put(format!("r{i}"), format!("v{i}"), None)
            .await
            .expect("put");
    }
    drop(c);
    process.terminate();
    process.restart();
    let mut c = connect(process).await;
    let resp = c
        .get("r", Some(GetOptions::new().with_prefix()))
        .await
        .expect("get");
    let got = show_get(&resp);
    assert_eq!(
        revision(resp.header()),
        4,
        "{label}: after SIGTERM and restart: {got}"
    );
    t.push(format!("after SIGTERM and restart: {got}"));
    let resp = c.put("r2", "after-restart", None).await.expect("put");
    assert_eq!(revision(resp.header()), 5, "{label}: put after restart");
    drop(c);
    process.kill9();
    process.restart();
    let mut c = connect(process).await;
    let resp = c
        .get("r", Some(GetOptions::new().with_prefix()))
        .await
        .expect("get");
    let got = show_get(&resp);
    assert_eq!(
        revision(resp.header()),
        5,
        "{label}: after SIGKILL and restart: {got}"
    );
    t.push(format!("after SIGKILL and restart: {got}"));
    t
}

#[tokio::test]
async fn kv_round_trips_match_etcd() {
    let (ours, reference) = start_pair(&[]);
    let theirs = kv_scenario(&mut connect(&reference).await).await;
    let mine = kv_scenario(&mut connect(&ours).await).await;
    assert_same_transcript(&mine, &theirs);
}

#[tokio::test]
async fn error_codes_and_messages_match_etcd() {
    let (ours, reference) = start_pair(&[]);
    let theirs = error_scenario(&mut connect(&reference).await).await;
    let mine = error_scenario(&mut connect(&ours).await).await;
    assert_same_transcript(&mine, &theirs);
}

#[tokio::test]
async fn status_and_member_list() {
    let (ours, reference) = start_pair(&[]);
    status_and_members(&reference).await;
    status_and_members(&ours).await;
}

#[tokio::test]
async fn writes_survive_restart() {
    let (mut ours, mut reference) = start_pair(&[]);
    let theirs = restart_scenario(&mut reference).await;
    let mine = restart_scenario(&mut ours).await;
    assert_same_transcript(&mine, &theirs);
}

/// HashKV over a history of puts (with and without leases), deletes, a txn
/// and a compaction: the hashes are etcd's to the bit, since the backend
/// rows (revision keys, KeyValue encodings) are etcd's.
async fn hash_scenario(c: &mut Client) -> Vec<String> {
    let mut t = Vec::new();
    // A chosen lease ID: server-chosen ones differ, and they are in the rows.
    let lease = c
        .lease_grant(
            600,
            Some(etcd_client::LeaseGrantOptions::new().with_id(0x5eed)),
        )
        .await
        .expect("grant")
        .id();
    for i in 0..30 {
        let key = format!("h{}", i % 7);
        let options = (i % 5 == 0).then(|| PutOptions::new().with_lease(lease));
        c.put(key, format!("value-{i}"), options)
            .await
            .expect("put");
    }
    c.delete("h3", None).await.expect("delete");
    c.delete("h4", Some(DeleteOptions::new().with_prefix()))
        .await
        .expect("delete prefix");
    c.txn(Txn::new().and_then([
        TxnOp::put("t1", "a", None),
        TxnOp::put("t2", "b", None),
        TxnOp::delete("h5", None),
    ]))
    .await
    .expect("txn");
    let hash_at = |r: Result<etcd_client::HashKvResponse, etcd_client::Error>| match r {
        Ok(h) => format!("hash={} compact={}", h.hash(), h.compact_version()),
        Err(e) => show_err(e),
    };
    t.push(format!("now: {}", hash_at(c.hash_kv(0).await)));
    t.push(format!("at 20: {}", hash_at(c.hash_kv(20).await)));
    c.compact(25, Some(CompactionOptions::new().with_physical()))
        .await
        .expect("compact");
    t.push(format!("compacted, now: {}", hash_at(c.hash_kv(0).await)));
    t.push(format!(
        "compacted, at 30: {}",
        hash_at(c.hash_kv(30).await)
    ));
    t.push(format!("at 25: {}", hash_at(c.hash_kv(25).await)));
    t.push(format!("future: {}", hash_at(c.hash_kv(10_000).await)));
    t
}

#[tokio::test]
async fn hash_kv_matches_etcd() {
    let (ours, reference) = start_pair(&[]);
    let theirs = hash_scenario(&mut connect(&reference).await).await;
    let mine = hash_scenario(&mut connect(&ours).await).await;
    assert_same_transcript(&mine, &theirs);
}
