//! Auth on three members: auth enabled through one, a user authenticated
//! through another, and a permission revoked through the first while the
//! user writes through the third. No write the revocation should refuse is
//! applied anywhere: every write that succeeded has a revision at or below
//! the revision the revocation was applied at, every member ends with the
//! same keys (HashKV) and the same auth revision.

mod cluster_support;
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cluster_support::Cluster;
use etcd_client::{Client, ConnectOptions, Permission, RoleRevokePermissionOptions};

async fn connect(url: &str, user: Option<(&str, &str)>) -> Client {
    let options = user.map(|(n, p)| {
        ConnectOptions::new()
            .with_user(n, p)
            .with_timeout(Duration::from_secs(5))
    });
    Client::connect([url], options)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

#[test]
fn a_revoked_permission_refuses_writes_on_every_member() {
    let cluster = Cluster::start("auth-revoke", 3, &[]);
    let urls = cluster.endpoints();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Set up and enable through member 0.
        let mut admin = connect(&urls[0], None).await;
        admin.user_add("root", "rootpw", None).await.expect("root");
        admin
            .user_grant_role("root", "root")
            .await
            .expect("root role");
        admin.role_add("writer").await.expect("role");
        admin
            .role_grant_permission("writer", Permission::read_write("w/").with_prefix())
            .await
            .expect("grant");
        admin.user_add("alice", "pw", None).await.expect("alice");
        admin
            .user_grant_role("alice", "writer")
            .await
            .expect("alice's role");
        admin.auth_enable().await.expect("enable");
        let mut root = connect(&urls[0], Some(("root", "rootpw"))).await;

        // Authenticated through member 1, which writes.
        let mut via_one = connect(&urls[1], Some(("alice", "pw"))).await;
        via_one
            .put("w/first", "1", None)
            .await
            .expect("put through member 1");

        // Alice writes through member 2 until told to stop.
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            let url = urls[2].clone();
            tokio::spawn(async move {
                let mut alice = connect(&url, Some(("alice", "pw"))).await;
                let mut outcomes = Vec::new();
                for i in 0..2_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let put = alice.put(format!("w/{i}"), "v", None).await;
                    outcomes.push(put.map(|r| r.header().map_or(0, |h| h.revision())));
                }
                outcomes
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let revoked = root
            .role_revoke_permission(
                "writer",
                "w/",
                Some(RoleRevokePermissionOptions::new().with_prefix()),
            )
            .await
            .expect("revoke");
        let revoked_at = revoked.header().expect("header").revision();
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        let outcomes = writer.await.expect("writer");

        let succeeded: Vec<i64> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok().copied())
            .collect();
        let refused: Vec<String> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().err().map(|e| e.to_string()))
            .collect();
        assert!(
            !succeeded.is_empty(),
            "no write before the revocation: {refused:?}"
        );
        assert!(!refused.is_empty(), "no write refused after the revocation");
        let late: Vec<&i64> = succeeded.iter().filter(|&&r| r > revoked_at).collect();
        assert!(
            late.is_empty(),
            "writes applied after the revocation (at revision {revoked_at}): {late:?}"
        );
        for e in &refused {
            assert!(
                e.contains("permission denied") || e.contains("revision of auth store is old"),
                "unexpected refusal: {e}"
            );
        }

        // Every member: the same keys and the same auth revision.
        let mut hashes = Vec::new();
        let mut revisions = Vec::new();
        let last = root
            .put("w/last", "x", None)
            .await
            .expect("root writes")
            .header()
            .expect("header")
            .revision();
        for url in &urls {
            let mut c = connect(url, Some(("root", "rootpw"))).await;
            // Wait until this member has applied the last write.
            for _ in 0..100 {
                let get = c
                    .get(
                        "w/last",
                        Some(etcd_client::GetOptions::new().with_serializable()),
                    )
                    .await
                    .expect("get");
                if get.header().map_or(0, |h| h.revision()) >= last {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            hashes.push(c.hash_kv(last).await.expect("hashkv").hash());
            let mut auth = api::etcdserverpb::auth_client::AuthClient::connect(url.clone())
                .await
                .expect("auth client");
            let status = auth
                .auth_status(api::etcdserverpb::AuthStatusRequest {})
                .await
                .expect("auth status")
                .into_inner();
            revisions.push(status.auth_revision);
        }
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "HashKV differs: {hashes:?}"
        );
        assert!(
            revisions.windows(2).all(|w| w[0] == w[1]),
            "auth revisions differ: {revisions:?}"
        );
    });
}
