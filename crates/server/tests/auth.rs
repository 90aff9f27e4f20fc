//! Permissions, RPC by RPC, through the `etcd-client` crate: the same
//! scenario against our server and etcd 3.5.1, whose answers (values,
//! errors) must be equal, plus what etcd 3.6 and 3.7 changed (checked on
//! ours only): a read grant on one key does not let a watch start there
//! and run onward (GHSA-xg4h-6gfc-h4m8, fixed in 3.7.1), a nested txn's
//! operations are checked, and the maintenance calls refuse a non-root
//! user with `PermissionDenied`.

mod common;

use common::{start_pair, EtcdProcess, Kind};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, LeaseGrantOptions,
    Permission, PutOptions, Txn, TxnOp, WatchOptions,
};

async fn connect(process: &EtcdProcess, user: Option<(&str, &str)>) -> Client {
    let options = user.map(|(name, pw)| ConnectOptions::new().with_user(name, pw));
    Client::connect([process.client_url()], options)
        .await
        .unwrap_or_else(|e| panic!("connect to {} as {user:?}: {e}", process.client_url()))
}

/// `ok` or the error's code and message.
fn outcome<T>(result: Result<T, etcd_client::Error>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(etcd_client::Error::GRpcStatus(s)) => format!("{:?}: {}", s.code(), s.message()),
        Err(e) => format!("error: {e}"),
    }
}

/// Root, a role `r` (read on `foo` alone, read-write under `dir/`, write on
/// `w`), a user `alice` with it, and auth on.
async fn set_up(process: &EtcdProcess) {
    let mut root = connect(process, None).await;
    root.user_add("root", "rootpw", None).await.expect("root");
    root.user_grant_role("root", "root")
        .await
        .expect("root role");
    root.role_add("r").await.expect("role");
    for perm in [
        Permission::read("foo"),
        Permission::read_write("dir/").with_prefix(),
        Permission::write("w"),
    ] {
        root.role_grant_permission("r", perm).await.expect("grant");
    }
    root.user_add("alice", "pw", None).await.expect("alice");
    root.user_grant_role("alice", "r")
        .await
        .expect("alice's role");
    root.put("secret", "s", None).await.expect("secret");
    root.auth_enable().await.expect("enable");
}

/// Every RPC the scenario makes, with its outcome, in order.
async fn scenario(process: &EtcdProcess) -> Vec<String> {
    set_up(process).await;
    let mut root = connect(process, Some(("root", "rootpw"))).await;
    let mut alice = connect(process, Some(("alice", "pw"))).await;
    let mut anonymous = connect(process, None).await;
    let mut log = Vec::new();
    let mut note = |what: &str, result: String| log.push(format!("{what}: {result}"));

    note("anonymous get", outcome(anonymous.get("foo", None).await));
    note(
        "anonymous put",
        outcome(anonymous.put("dir/a", "1", None).await),
    );
    note("get foo", outcome(alice.get("foo", None).await));
    note("put foo", outcome(alice.put("foo", "x", None).await));
    let from_foo = GetOptions::new().with_from_key();
    note(
        "get from foo on",
        outcome(alice.get("foo", Some(from_foo)).await),
    );
    note("put dir/a", outcome(alice.put("dir/a", "1", None).await));
    let prefix = GetOptions::new().with_prefix();
    note(
        "get dir/ prefix",
        outcome(alice.get("dir/", Some(prefix)).await),
    );
    let too_wide = GetOptions::new().with_prefix();
    note(
        "get di prefix",
        outcome(alice.get("di", Some(too_wide)).await),
    );
    note("put w", outcome(alice.put("w", "1", None).await));
    let prev = PutOptions::new().with_prev_key();
    note(
        "put w prev_kv",
        outcome(alice.put("w", "2", Some(prev)).await),
    );
    let del_prev = DeleteOptions::new().with_prev_key();
    note(
        "delete dir/a prev_kv",
        outcome(alice.delete("dir/a", Some(del_prev)).await),
    );
    note("delete w", outcome(alice.delete("w", None).await));
    note("get secret", outcome(alice.get("secret", None).await));

    // Txns: every compare, both branches, nested ones.
    let allowed = Txn::new()
        .when([Compare::value("foo", CompareOp::NotEqual, "z")])
        .and_then([TxnOp::put("dir/t", "1", None)])
        .or_else([TxnOp::get("dir/t", None)]);
    note("txn allowed", outcome(alice.txn(allowed).await));
    let denied_branch = Txn::new()
        .when([Compare::value("foo", CompareOp::NotEqual, "z")])
        .and_then([TxnOp::put("dir/t", "2", None)])
        .or_else([TxnOp::put("secret", "x", None)]);
    note(
        "txn one denied branch",
        outcome(alice.txn(denied_branch).await),
    );
    let denied_compare = Txn::new()
        .when([Compare::version("secret", CompareOp::Greater, 0)])
        .and_then([TxnOp::put("dir/t", "3", None)]);
    note(
        "txn denied compare",
        outcome(alice.txn(denied_compare).await),
    );
    let read_only = Txn::new().and_then([TxnOp::get("secret", None)]);
    note("txn read-only denied", outcome(alice.txn(read_only).await));

    // Leases: revoking one that holds a key alice cannot write is refused.
    let lease = root.lease_grant(60, None).await.expect("grant").id();
    root.put("secret", "s", Some(PutOptions::new().with_lease(lease)))
        .await
        .expect("attach");
    note(
        "revoke root's lease",
        outcome(alice.lease_revoke(lease).await),
    );
    let own = alice
        .lease_grant(60, Some(LeaseGrantOptions::new()))
        .await
        .expect("alice's lease")
        .id();
    note(
        "put dir/l with own lease",
        outcome(
            alice
                .put("dir/l", "1", Some(PutOptions::new().with_lease(own)))
                .await,
        ),
    );
    note(
        "attach root's lease",
        outcome(
            alice
                .put("dir/m", "1", Some(PutOptions::new().with_lease(lease)))
                .await,
        ),
    );
    note("revoke own lease", outcome(alice.lease_revoke(own).await));

    // User and role management.
    note("user get self", outcome(alice.user_get("alice").await));
    note("user get root", outcome(alice.user_get("root").await));
    note("user list", outcome(alice.user_list().await));
    note("role get own", outcome(alice.role_get("r").await));
    note("role add", outcome(alice.role_add("r2").await));
    note("root user list", outcome(root.user_list().await));
    note("delete root", outcome(root.user_delete("root").await));

    // A permission revoked: alice's next write under dir/ is refused.
    root.role_revoke_permission(
        "r",
        "dir/",
        Some(etcd_client::RoleRevokePermissionOptions::new().with_prefix()),
    )
    .await
    .expect("revoke");
    note(
        "put dir/b after revoke",
        outcome(alice.put("dir/b", "1", None).await),
    );
    // A deleted user's token stands for no one.
    root.user_delete("alice").await.expect("delete alice");
    note("get foo as deleted", outcome(alice.get("foo", None).await));
    note("disable", outcome(root.auth_disable().await));
    note(
        "anonymous get after disable",
        outcome(anonymous.get("secret", None).await),
    );
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_rpc_by_rpc_as_etcd() {
    let (ours, reference) = start_pair(&[]);
    let ours_log = scenario(&ours).await;
    let reference_log = scenario(&reference).await;
    for (o, r) in ours_log.iter().zip(&reference_log) {
        assert_eq!(
            o, r,
            "ours (left) and etcd 3.5.1 (right) answer differently"
        );
    }
    assert_eq!(ours_log.len(), reference_log.len());
    // A few answers spelled out, so the scenario cannot pass by both
    // servers allowing (or refusing) everything.
    let find = |what: &str| {
        ours_log
            .iter()
            .find(|l| l.starts_with(&format!("{what}:")))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(find("get foo"), "get foo: ok");
    assert_eq!(
        find("put foo"),
        "put foo: PermissionDenied: etcdserver: permission denied"
    );
    assert_eq!(
        find("anonymous get"),
        "anonymous get: InvalidArgument: etcdserver: user name is empty"
    );
    assert_eq!(
        find("txn one denied branch"),
        "txn one denied branch: PermissionDenied: etcdserver: permission denied"
    );
    assert_eq!(find("revoke own lease"), "revoke own lease: ok");
    assert_eq!(
        find("get foo as deleted"),
        "get foo as deleted: Unauthenticated: etcdserver: invalid auth token"
    );
}

/// etcd 3.7.1's fix of GHSA-xg4h-6gfc-h4m8: a watch from a key onward
/// needs read on the open range, not on the key; and 3.6's maintenance
/// refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_and_maintenance_as_etcd_3_7() {
    let ours = EtcdProcess::start(Kind::Ours, &[]);
    set_up(&ours).await;
    let mut alice = connect(&ours, Some(("alice", "pw"))).await;
    let mut root = connect(&ours, Some(("root", "rootpw"))).await;

    let mut from_foo = alice
        .watch("foo", Some(WatchOptions::new().with_from_key()))
        .await
        .expect("watch stream");
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), from_foo.message())
        .await
        .expect("an answer")
        .expect("a message")
        .expect("not closed");
    assert!(first.canceled(), "{first:?}");
    assert_eq!(
        first.cancel_reason(),
        "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
    );

    // The single key is watchable, and sees only itself.
    let mut on_foo = alice.watch("foo", None).await.expect("watch stream");
    let created = on_foo.message().await.expect("message").expect("open");
    assert!(created.created() && !created.canceled(), "{created:?}");
    root.put("foo0", "sibling", None)
        .await
        .expect("put sibling");
    root.put("foo", "v", None).await.expect("put foo");
    let event = tokio::time::timeout(std::time::Duration::from_secs(10), on_foo.message())
        .await
        .expect("an event")
        .expect("message")
        .expect("open");
    let keys: Vec<&[u8]> = event
        .events()
        .iter()
        .filter_map(|e| e.kv())
        .map(|kv| kv.key())
        .collect();
    assert_eq!(keys, vec![&b"foo"[..]]);

    let denied = "PermissionDenied: etcdserver: permission denied";
    // A nested txn's operations are checked too (etcd 3.5.1 let this one
    // through; 3.6 and 3.7 check every level).
    let nested = Txn::new().and_then([TxnOp::txn(
        Txn::new().and_then([TxnOp::delete("secret", None)]),
    )]);
    assert_eq!(outcome(alice.txn(nested).await), denied);
    assert_eq!(outcome(alice.defragment().await), denied);
    assert_eq!(outcome(alice.hash_kv(0).await), denied);
    assert_eq!(
        outcome(alice.snapshot().await.map(|_| ())),
        denied.to_string()
    );
    assert_eq!(outcome(root.hash_kv(0).await), "ok");
    assert_eq!(outcome(alice.status().await), "ok");

    // 3.7's requireAuthInfo: a user is needed for Status, alarm lists,
    // member lists and lease calls; raising alarms and changing members
    // is root's; TimeToLive with keys and the lease list need read on
    // every key of the leases.
    let mut anonymous = connect(&ours, None).await;
    let empty = "InvalidArgument: etcdserver: user name is empty";
    assert_eq!(outcome(anonymous.status().await), empty);
    assert_eq!(outcome(anonymous.member_list().await), empty);
    assert_eq!(
        outcome(
            anonymous
                .alarm(
                    etcd_client::AlarmAction::Get,
                    etcd_client::AlarmType::None,
                    None
                )
                .await
        ),
        empty
    );
    assert_eq!(outcome(anonymous.lease_grant(10, None).await), empty);
    assert_eq!(outcome(alice.member_list().await), "ok");
    assert_eq!(
        outcome(
            alice
                .alarm(
                    etcd_client::AlarmAction::Get,
                    etcd_client::AlarmType::None,
                    None
                )
                .await
        ),
        "ok"
    );
    assert_eq!(
        outcome(
            alice
                .alarm(
                    etcd_client::AlarmAction::Activate,
                    etcd_client::AlarmType::Nospace,
                    None
                )
                .await
        ),
        denied
    );
    assert_eq!(
        outcome(alice.member_add(["http://127.0.0.1:1"], None).await),
        denied
    );
    let lease = root.lease_grant(60, None).await.expect("grant").id();
    root.put(
        "secret",
        "s",
        Some(etcd_client::PutOptions::new().with_lease(lease)),
    )
    .await
    .expect("attach");
    let with_keys = etcd_client::LeaseTimeToLiveOptions::new().with_keys();
    assert_eq!(
        outcome(alice.lease_time_to_live(lease, Some(with_keys)).await),
        denied
    );
    assert_eq!(outcome(alice.lease_time_to_live(lease, None).await), "ok");
    assert_eq!(outcome(alice.leases().await), denied);
    assert_eq!(outcome(root.leases().await), "ok");
}
