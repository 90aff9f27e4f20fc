//! The Lock and Election gRPC services (v3lockpb, v3electionpb) driven by
//! the `etcd-client` crate, against our server and etcd 3.5.1: each scenario
//! asserts etcd's behaviour on both, and the transcripts (keys with the lease
//! ID replaced, values, errors) must be equal.

mod common;

use std::time::Duration;

use common::{start_pair, EtcdProcess};
use etcd_client::{Client, LeaderKey, LockOptions, ProclaimOptions, ResignOptions};

async fn connect(process: &EtcdProcess) -> Client {
    Client::connect([process.client_url()], None)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", process.client_url()))
}

/// `name/<lease hex>` with the lease shown as `<lease>`.
fn show_key(key: &[u8], lease: i64) -> String {
    String::from_utf8_lossy(key).replace(&format!("{lease:x}"), "<lease>")
}

fn show_err(error: etcd_client::Error) -> String {
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => format!("{other}"),
    }
}

const WAIT: Duration = Duration::from_secs(10);

async fn lock_scenario(process: &EtcdProcess) -> Vec<String> {
    let mut c = connect(process).await;
    let mut log = Vec::new();
    let l1 = c.lease_grant(30, None).await.expect("grant").id();
    let l2 = c.lease_grant(30, None).await.expect("grant").id();
    let first = c
        .lock("job", Some(LockOptions::new().with_lease(l1)))
        .await
        .expect("first lock");
    log.push(format!("first holds {}", show_key(first.key(), l1)));

    // A second contender waits until the first unlocks.
    let mut c2 = c.clone();
    let second = tokio::spawn(async move {
        c2.lock("job", Some(LockOptions::new().with_lease(l2)))
            .await
            .map(|r| r.key().to_vec())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    log.push(format!("second waiting: {}", !second.is_finished()));
    let owner = c
        .get("job/", Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .expect("get");
    log.push(format!("contenders: {}", owner.kvs().len()));
    c.unlock(first.key()).await.expect("unlock");
    let key = tokio::time::timeout(WAIT, second)
        .await
        .expect("the second lock in time")
        .expect("task")
        .expect("second lock");
    log.push(format!("second holds {}", show_key(&key, l2)));

    // Revoking the holder's lease releases the lock too.
    let mut c3 = c.clone();
    let l3 = c.lease_grant(30, None).await.expect("grant").id();
    let third = tokio::spawn(async move {
        c3.lock("job", Some(LockOptions::new().with_lease(l3)))
            .await
            .map(|r| r.key().to_vec())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.lease_revoke(l2).await.expect("revoke");
    let key = tokio::time::timeout(WAIT, third)
        .await
        .expect("the third lock in time")
        .expect("task")
        .expect("third lock");
    log.push(format!("third holds {}", show_key(&key, l3)));
    log
}

async fn election_scenario(process: &EtcdProcess) -> Vec<String> {
    let mut c = connect(process).await;
    let mut log = Vec::new();
    let l1 = c.lease_grant(30, None).await.expect("grant").id();
    let l2 = c.lease_grant(30, None).await.expect("grant").id();
    // etcd sends the stream's headers with its first message: observe in a task.
    let mut oc = c.clone();
    let observed = tokio::spawn(async move {
        let mut observer = oc.observe("vote").await.expect("observe");
        let mut values = Vec::new();
        while values.len() < 3 {
            let Ok(Some(next)) = observer.message().await else {
                break;
            };
            let kv = next.kv().expect("kv");
            values.push(String::from_utf8_lossy(kv.value()).into_owned());
        }
        values
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let won = c.campaign("vote", "alpha", l1).await.expect("campaign");
    let leader = won.leader().expect("leader key").clone();
    log.push(format!(
        "won {} lease={}",
        show_key(leader.key(), l1),
        leader.lease() == l1
    ));
    let seen = c.leader("vote").await.expect("leader");
    let kv = seen.kv().expect("kv");
    log.push(format!(
        "leader {}={}",
        show_key(kv.key(), l1),
        String::from_utf8_lossy(kv.value())
    ));

    let mut c2 = c.clone();
    let second = tokio::spawn(async move { c2.campaign("vote", "beta", l2).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    log.push(format!("second waiting: {}", !second.is_finished()));

    c.proclaim(
        "alpha-2",
        Some(ProclaimOptions::new().with_leader(leader.clone())),
    )
    .await
    .expect("proclaim");
    // A stale leader key cannot proclaim.
    let stale = LeaderKey::new()
        .with_name("vote")
        .with_key(leader.key())
        .with_rev(leader.rev() + 1000)
        .with_lease(l1);
    log.push(format!(
        "stale proclaim: {}",
        c.proclaim("x", Some(ProclaimOptions::new().with_leader(stale)))
            .await
            .map(|_| "ok".to_string())
            .unwrap_or_else(show_err)
    ));
    c.resign(Some(ResignOptions::new().with_leader(leader)))
        .await
        .expect("resign");
    let second = tokio::time::timeout(WAIT, second)
        .await
        .expect("the second campaign in time")
        .expect("task")
        .expect("second campaign");
    log.push(format!(
        "second won {}",
        show_key(second.leader().expect("leader").key(), l2)
    ));

    // The observer saw alpha, alpha-2, then beta.
    let values = tokio::time::timeout(WAIT, observed)
        .await
        .expect("observations in time")
        .expect("observer task");
    log.push(format!("observed {values:?}"));
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_election_services_match_etcd() {
    let (ours, reference) = start_pair(&[]);
    let ours_lock = lock_scenario(&ours).await;
    let ref_lock = lock_scenario(&reference).await;
    assert_eq!(ours_lock, ref_lock, "lock transcripts (ours, then etcd)");
    assert_eq!(
        ours_lock,
        vec![
            "first holds job/<lease>",
            "second waiting: true",
            "contenders: 2",
            "second holds job/<lease>",
            "third holds job/<lease>",
        ]
    );
    let ours_election = election_scenario(&ours).await;
    let ref_election = election_scenario(&reference).await;
    assert_eq!(
        ours_election, ref_election,
        "election transcripts (ours, then etcd)"
    );
}

/// Leader of an election nobody campaigns in: etcd's "election: no leader".
/// (Not compared: etcd 3.5.1's Leader call does not return in this case.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_of_an_empty_election() {
    let ours = EtcdProcess::start(common::Kind::Ours, &[]);
    let mut c = connect(&ours).await;
    let answer = tokio::time::timeout(WAIT, c.leader("nobody"))
        .await
        .expect("an answer in time");
    assert_eq!(
        answer.map(|_| String::new()).unwrap_or_else(show_err),
        "Unknown: election: no leader"
    );
}
