//! Txn semantics: compares, paths through nested txns, checks, revisions.

use api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use api::etcdserverpb::request_op::Request;
use api::etcdserverpb::response_op::Response;
use api::etcdserverpb::{
    CompactionRequest, Compare, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest,
    TxnResponse,
};
use api::mvccpb::event::EventType;

use crate::store_tests::{del_req, kv, open, put_req, range_req, TestStore};
use crate::{is_txn_read_only, is_txn_serializable, Error, LeaseLookup};

fn put(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(put_req(key, value))),
    }
}

fn del(key: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(del_req(key, end))),
    }
}

fn get(key: &str) -> RequestOp {
    get_at(key, 0)
}

fn get_at(key: &str, revision: i64) -> RequestOp {
    let mut req = range_req(key, "");
    req.revision = revision;
    RequestOp {
        request: Some(Request::RequestRange(req)),
    }
}

fn nested(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestTxn(TxnRequest {
            compare,
            success,
            failure,
        })),
    }
}

fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare,
        success,
        failure,
    }
}

fn cmp(
    key: &str,
    end: &str,
    target: CompareTarget,
    result: CompareResult,
    union: TargetUnion,
) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.into(),
        range_end: end.into(),
        target_union: Some(union),
    }
}

fn version_is(key: &str, result: CompareResult, version: i64) -> Compare {
    cmp(
        key,
        "",
        CompareTarget::Version,
        result,
        TargetUnion::Version(version),
    )
}

fn run(t: &TestStore, req: &TxnRequest) -> Result<(TxnResponse, Vec<api::mvccpb::Event>), Error> {
    let mut batch = t.store.write_batch().unwrap();
    let result = batch.txn(req);
    batch.commit(false).unwrap();
    result
}

fn revision(header: &Option<ResponseHeader>) -> i64 {
    header.as_ref().unwrap().revision
}

#[test]
fn compare_targets_and_results() {
    use CompareResult::{Equal as Eq, Greater as Gt, Less as Lt, NotEqual as Ne};
    use CompareTarget::{Create, Lease, Mod, Value, Version};
    use TargetUnion as U;
    let t = open();
    t.put("k", "b"); // 2
    t.put("k", "b"); // 3: create 2, mod 3, version 2
    let mut batch = t.store.write_batch().unwrap();
    let mut leased = put_req("l", "x");
    leased.lease = 7;
    batch.put(&leased).unwrap(); // 4
    batch.commit(false).unwrap();

    let cases: Vec<(&str, Compare, bool)> = vec![
        ("version ==", cmp("k", "", Version, Eq, U::Version(2)), true),
        ("version >", cmp("k", "", Version, Gt, U::Version(1)), true),
        ("version <", cmp("k", "", Version, Lt, U::Version(2)), false),
        (
            "version !=",
            cmp("k", "", Version, Ne, U::Version(2)),
            false,
        ),
        (
            "create ==",
            cmp("k", "", Create, Eq, U::CreateRevision(2)),
            true,
        ),
        ("mod ==", cmp("k", "", Mod, Eq, U::ModRevision(3)), true),
        ("mod >", cmp("k", "", Mod, Gt, U::ModRevision(3)), false),
        ("mod <", cmp("k", "", Mod, Lt, U::ModRevision(4)), true),
        (
            "value ==",
            cmp("k", "", Value, Eq, U::Value(b"b".to_vec())),
            true,
        ),
        (
            "value >",
            cmp("k", "", Value, Gt, U::Value(b"a".to_vec())),
            true,
        ),
        (
            "value <",
            cmp("k", "", Value, Lt, U::Value(b"c".to_vec())),
            true,
        ),
        (
            "value !=",
            cmp("k", "", Value, Ne, U::Value(b"b".to_vec())),
            false,
        ),
        ("lease ==", cmp("l", "", Lease, Eq, U::Lease(7)), true),
        ("no lease", cmp("k", "", Lease, Eq, U::Lease(0)), true),
        // A missing key compares as an empty KeyValue, but never by value.
        (
            "missing version",
            cmp("m", "", Version, Eq, U::Version(0)),
            true,
        ),
        (
            "missing create",
            cmp("m", "", Create, Eq, U::CreateRevision(0)),
            true,
        ),
        (
            "missing mod",
            cmp("m", "", Mod, Lt, U::ModRevision(1)),
            true,
        ),
        ("missing lease", cmp("m", "", Lease, Eq, U::Lease(0)), true),
        (
            "missing value ==",
            cmp("m", "", Value, Eq, U::Value(vec![])),
            false,
        ),
        (
            "missing value !=",
            cmp("m", "", Value, Ne, U::Value(b"x".to_vec())),
            false,
        ),
        // Over a range every live key must satisfy the compare.
        (
            "range all > 0",
            cmp("a", "z", Version, Gt, U::Version(0)),
            true,
        ),
        (
            "range all == 2",
            cmp("a", "z", Version, Eq, U::Version(2)),
            false,
        ),
        ("from key", cmp("l", "\0", Mod, Eq, U::ModRevision(4)), true),
        (
            "empty range by value",
            cmp("x", "z", Value, Eq, U::Value(vec![])),
            false,
        ),
        (
            "empty range by version",
            cmp("x", "z", Version, Eq, U::Version(0)),
            true,
        ),
        // A union of another kind compares against zero.
        (
            "mismatched union",
            cmp("k", "", Version, Gt, U::ModRevision(9)),
            true,
        ),
        (
            "unknown result holds",
            Compare {
                result: 9,
                ..cmp("k", "", Version, Eq, U::Version(7))
            },
            true,
        ),
        (
            "unknown target compares equal",
            Compare {
                target: 9,
                ..cmp("k", "", Version, Eq, U::Version(7))
            },
            true,
        ),
    ];
    for (name, compare, want) in cases {
        let req = txn(vec![compare], vec![get("k")], vec![]);
        let resp = t.store.txn_read_only(&req).unwrap();
        assert_eq!(resp.succeeded, want, "{name}");
        assert_eq!(resp.responses.len(), usize::from(want), "{name}");
        assert_eq!(revision(&resp.header), 4);
    }
}

#[test]
fn txn_takes_one_revision_and_reports_per_op_headers() {
    let t = open();
    t.put("a", "0"); // 2
    let req = txn(
        vec![],
        vec![
            get("a"),
            del("zz", ""),
            put("a", "1"),
            get("a"),
            del("b", ""),
            put("c", "1"),
            del("a", ""),
        ],
        vec![],
    );
    let (resp, events) = run(&t, &req).unwrap();
    assert!(resp.succeeded);
    assert_eq!(revision(&resp.header), 3);
    let op_revisions: Vec<i64> = resp
        .responses
        .iter()
        .map(|r| match r.response.as_ref().unwrap() {
            Response::ResponseRange(r) => revision(&r.header),
            Response::ResponsePut(r) => revision(&r.header),
            Response::ResponseDeleteRange(r) => revision(&r.header),
            Response::ResponseTxn(r) => revision(&r.header),
        })
        .collect();
    // Before the first write an op sees revision 2, after it 3.
    assert_eq!(op_revisions, [2, 2, 3, 3, 3, 3, 3]);
    let seen: Vec<_> = events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            (
                e.r#type,
                String::from_utf8(kv.key.clone()).unwrap(),
                kv.mod_revision,
            )
        })
        .collect();
    let (p, d) = (EventType::Put as i32, EventType::Delete as i32);
    assert_eq!(
        seen,
        [(p, "a".into(), 3), (p, "c".into(), 3), (d, "a".into(), 3)]
    );
    assert_eq!(t.store.current_revision(), 3);
    assert!(t.get("a").is_none());
    assert_eq!(t.get("c"), Some(kv("c", "1", 3, 3, 1)));
    // The range after the put saw it.
    let Some(Response::ResponseRange(r)) = &resp.responses[3].response else {
        panic!("not a range")
    };
    assert_eq!(r.kvs, vec![kv("a", "1", 2, 3, 2)]);
}

#[test]
fn txn_without_writes_takes_no_revision() {
    let t = open();
    t.put("a", "0"); // 2
                     // Read-only, and "mixed": the branch taken has no writes.
    for req in [
        txn(vec![], vec![get("a")], vec![]),
        txn(
            vec![version_is("a", CompareResult::Equal, 5)],
            vec![put("a", "1")],
            vec![get("a")],
        ),
        txn(
            vec![],
            vec![del("nothing", ""), nested(vec![], vec![get("a")], vec![])],
            vec![],
        ),
        txn(vec![], vec![], vec![]),
    ] {
        let (resp, events) = run(&t, &req).unwrap();
        assert_eq!(revision(&resp.header), 2);
        assert!(events.is_empty());
        assert_eq!(t.store.current_revision(), 2);
    }
}

#[test]
fn nested_txn_compares_see_the_state_before_the_txn() {
    let t = open();
    let req = txn(
        vec![],
        vec![
            put("a", "1"),
            nested(
                vec![version_is("a", CompareResult::Greater, 0)],
                vec![put("b", "1")],
                vec![put("c", "1"), nested(vec![], vec![get("a")], vec![])],
            ),
        ],
        vec![],
    );
    let (resp, events) = run(&t, &req).unwrap();
    assert_eq!(revision(&resp.header), 2);
    assert_eq!(events.len(), 2);
    let Some(Response::ResponseTxn(inner)) = &resp.responses[1].response else {
        panic!("not a txn")
    };
    // a did not exist before the txn: the nested failure branch ran.
    assert!(!inner.succeeded);
    assert_eq!(inner.header, Some(ResponseHeader::default()));
    let Some(Response::ResponsePut(put_resp)) = &inner.responses[0].response else {
        panic!("not a put")
    };
    assert_eq!(revision(&put_resp.header), 2);
    let Some(Response::ResponseTxn(innermost)) = &inner.responses[1].response else {
        panic!("not a txn")
    };
    assert!(innermost.succeeded);
    let Some(Response::ResponseRange(r)) = &innermost.responses[0].response else {
        panic!("not a range")
    };
    assert_eq!(r.kvs, vec![kv("a", "1", 2, 2, 1)]);
    assert!(t.get("b").is_none());
    assert_eq!(t.get("c"), Some(kv("c", "1", 2, 2, 1)));
}

struct NoLeases;

impl LeaseLookup for NoLeases {
    fn lease_exists(&self, _: i64) -> bool {
        false
    }
}

#[test]
fn failed_checks_fail_the_whole_txn() {
    let t = open();
    t.put("a", "1"); // 2
    t.put("b", "1"); // 3
    t.compact(2).unwrap();
    let ignore_value = |key: &str| RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: key.into(),
            ignore_value: true,
            ..Default::default()
        })),
    };
    let leased = RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: b"x".to_vec(),
            lease: 5,
            ..Default::default()
        })),
    };
    let cases: Vec<(&str, TxnRequest, Error)> = vec![
        (
            "future range",
            txn(vec![], vec![put("x", "1"), get_at("a", 4)], vec![]),
            Error::FutureRevision,
        ),
        (
            "compacted range",
            txn(vec![], vec![put("x", "1"), get_at("a", 1)], vec![]),
            Error::Compacted,
        ),
        // Unlike a plain range, a negative revision below the compaction fails.
        (
            "negative range",
            txn(vec![], vec![get_at("a", -1)], vec![]),
            Error::Compacted,
        ),
        (
            "nested range",
            txn(
                vec![],
                vec![put("x", "1"), nested(vec![], vec![get_at("a", 9)], vec![])],
                vec![],
            ),
            Error::FutureRevision,
        ),
        (
            "ignore_value on missing key",
            txn(vec![], vec![put("x", "1"), ignore_value("m")], vec![]),
            Error::KeyNotFound,
        ),
        // Puts are checked before ranges.
        (
            "put check first",
            txn(vec![], vec![get_at("a", 9), ignore_value("m")], vec![]),
            Error::KeyNotFound,
        ),
        // A from-key delete escapes the edge's duplicate check; the put
        // after it finds no key (etcd would crash here).
        (
            "ignore_value after from-key delete",
            txn(vec![], vec![del("a", "\0"), ignore_value("b")], vec![]),
            Error::KeyNotFound,
        ),
        (
            "unknown lease",
            txn(vec![], vec![put("y", "1"), leased], vec![]),
            Error::LeaseNotFound,
        ),
    ];
    let leases = NoLeases;
    let mut batch = t.store.write_batch().unwrap();
    batch.set_lease_lookup(&leases);
    for (name, req, want) in cases {
        let got = batch.txn(&req).err().map(|e| e.to_string());
        assert_eq!(got, Some(want.to_string()), "{name}");
        assert_eq!(batch.revision(), 3, "{name}");
    }
    // The batch is still usable and nothing changed.
    let (resp, _) = batch
        .txn(&txn(vec![], vec![ignore_value("b")], vec![]))
        .unwrap();
    assert_eq!(revision(&resp.header), 4);
    batch.commit(false).unwrap();
    assert_eq!(t.get("a"), Some(kv("a", "1", 2, 2, 1)));
    assert_eq!(t.get("b"), Some(kv("b", "1", 3, 4, 2)));
    assert!(t.get("x").is_none());
}

#[test]
fn ignore_value_sees_earlier_puts_of_the_same_txn() {
    let t = open();
    t.put("a", "1");
    let ignore = RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: b"a".to_vec(),
            ignore_value: true,
            prev_kv: true,
            ..Default::default()
        })),
    };
    let (resp, _) = run(&t, &txn(vec![], vec![put("b", "2"), ignore], vec![])).unwrap();
    let Some(Response::ResponsePut(p)) = &resp.responses[1].response else {
        panic!("not a put")
    };
    assert_eq!(p.prev_kv, Some(kv("a", "1", 2, 2, 1)));
    assert_eq!(t.get("a"), Some(kv("a", "1", 2, 3, 2)));
}

#[test]
fn read_only_txns() {
    let t = open();
    t.put("a", "1");
    t.put("a", "2");
    t.compact(2).unwrap();
    let ro = txn(
        vec![version_is("a", CompareResult::Equal, 2)],
        vec![get("a")],
        vec![get("b")],
    );
    assert!(is_txn_read_only(&ro));
    assert!(!is_txn_serializable(&ro));
    let resp = t.store.txn_read_only(&ro).unwrap();
    assert!(resp.succeeded);
    assert_eq!(revision(&resp.header), 3);
    let with_write = txn(vec![], vec![get("a")], vec![put("a", "1")]);
    assert!(!is_txn_read_only(&with_write));
    assert!(matches!(
        t.store.txn_read_only(&with_write),
        Err(Error::NotReadOnly)
    ));
    let with_nested = txn(vec![], vec![nested(vec![], vec![], vec![])], vec![]);
    assert!(!is_txn_read_only(&with_nested));
    let mut serializable = range_req("a", "");
    serializable.serializable = true;
    let all_serializable = txn(
        vec![],
        vec![RequestOp {
            request: Some(Request::RequestRange(serializable)),
        }],
        vec![],
    );
    assert!(is_txn_serializable(&all_serializable));
    for (revision, want) in [
        (1, Error::Compacted),
        (4, Error::FutureRevision),
        (-1, Error::Compacted),
    ] {
        let req = txn(vec![], vec![get_at("a", revision)], vec![]);
        let got = t.store.txn_read_only(&req).err().map(|e| e.to_string());
        assert_eq!(got, Some(want.to_string()), "revision {revision}");
    }
    let req = txn(vec![], vec![get_at("a", 2)], vec![]);
    assert!(t.store.txn_read_only(&req).unwrap().succeeded);
}

#[test]
fn batch_range_sees_batch_writes() {
    let t = open();
    let mut batch = t.store.write_batch().unwrap();
    batch.put(&put_req("a", "1")).unwrap();
    let resp = batch
        .range(&RangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(resp.kvs, vec![kv("a", "1", 2, 2, 1)]);
    assert_eq!(revision(&resp.header), 2);
    batch
        .compact(&CompactionRequest {
            revision: 2,
            physical: false,
        })
        .unwrap();
    batch.commit(false).unwrap();
}
