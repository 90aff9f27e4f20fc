//! Maintenance.Downgrade on real processes, driven with the `etcd-client`
//! crate (and our generated client for an action outside the enum), as etcd
//! 3.6 answers it:
//! - one member: VALIDATE/ENABLE errors (format, target, job in progress),
//!   answers carrying the cluster version as major.minor, CANCEL without a
//!   job succeeding (3.6; 3.5 answered "no inflight downgrade job"), the
//!   cluster version (/version `etcdcluster`, `storage`, Status
//!   `storageVersion`) moving to 3.5.0 after ENABLE and back to 3.6.0 after
//!   CANCEL, the job in Status `downgradeInfo`, and all of it kept across
//!   restarts (from the WAL and from a raft snapshot); the gateway route
//!   `/v3/maintenance/downgrade`;
//! - three members: a job started through one member is seen and enforced
//!   by all, survives a restart of the leader, and is cancelled through
//!   another member;
//! - the error answers etcd 3.5.1 shares with 3.6 (codes and strings),
//!   compared with the real binary.
//!
//! etcdctl 3.4.23 and 3.5.1 have no `downgrade` command ("unknown command"),
//! so no etcdctl can drive this RPC. Every wait is bounded.

mod cluster_support;
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use api::etcdserverpb::maintenance_client::MaintenanceClient;
use api::etcdserverpb::DowngradeRequest;
use cluster_support::Cluster;
use common::client::{bounded, connect, CALL_TIMEOUT};
use common::{http_get, EtcdProcess, Kind};
use etcd_client::{DowngradeOptions, PutOptions};

/// Bound on one client call.
/// How long a change the test waits for may take to show on a member.
const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

const FORMAT: &str = "InvalidArgument: etcdserver: wrong downgrade target version format";
const TARGET: &str = "InvalidArgument: etcdserver: invalid downgrade target version";
const IN_PROGRESS: &str = "FailedPrecondition: etcdserver: cluster has a downgrade job in progress";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// One Downgrade call: the answered cluster version, or `Code: message`.
async fn downgrade(url: &str, options: DowngradeOptions) -> Result<String, String> {
    let what = format!("Downgrade {options:?} on {url}");
    let mut client = connect(&[url.to_string()]).await.maintenance_client();
    let resp = bounded(&what, client.downgrade(options)).await?;
    assert!(resp.header().is_some(), "{what}: no header");
    Ok(resp.version().to_string())
}

fn validate(v: &str) -> DowngradeOptions {
    DowngradeOptions::Validate(v.to_string())
}

fn enable(v: &str) -> DowngradeOptions {
    DowngradeOptions::Enable(v.to_string())
}

/// What Status reports: (job enabled, job target, storage version).
async fn status(url: &str) -> (bool, String, String) {
    let mut client = connect(&[url.to_string()]).await;
    let resp = bounded(&format!("Status on {url}"), client.status())
        .await
        .unwrap_or_else(|e| panic!("Status on {url}: {e}"));
    let job = resp
        .downgrade_info()
        .unwrap_or_else(|| panic!("Status on {url} without downgradeInfo"));
    (
        job.enabled(),
        job.target_version().to_string(),
        resp.storage_version().to_string(),
    )
}

/// The body of `GET /version` (etcdserver, etcdcluster, storage).
fn versions(port: u16) -> Option<serde_json::Value> {
    let response = http_get(port, "/version")?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// Waits until member `port`'s /version reports cluster and storage version `want`.
fn wait_cluster_version(port: u16, want: &str) {
    let expected = serde_json::json!({"etcdserver": "3.6.0", "etcdcluster": want, "storage": want});
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    while Instant::now() < deadline {
        last = versions(port);
        if last.as_ref() == Some(&expected) {
            return;
        }
        std::thread::sleep(POLL);
    }
    panic!("port {port}: /version is {last:?} after {WAIT:?}, want {expected}");
}

/// Waits until the member at `url` reports the job (`enabled`, `target`) in Status.
async fn wait_job(url: &str, enabled: bool, target: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (on, to, _) = status(url).await;
        if (on, to.as_str()) == (enabled, target) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url}: Status downgradeInfo is ({on}, {to:?}) after {WAIT:?}, want ({enabled}, {target:?})"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A Downgrade request with an action outside the enum, through our generated client.
async fn unknown_action(url: &str) -> String {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2));
    let channel = tokio::time::timeout(CALL_TIMEOUT, endpoint.connect())
        .await
        .expect("connect timed out")
        .expect("connect");
    let request = DowngradeRequest {
        action: 7,
        version: "3.5".into(),
    };
    let answer = tokio::time::timeout(
        CALL_TIMEOUT,
        MaintenanceClient::new(channel).downgrade(request),
    )
    .await
    .expect("Downgrade timed out");
    match answer {
        Ok(resp) => panic!("an unknown action succeeded: {resp:?}"),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    }
}

/// One POST over a raw HTTP/1.1 connection: (status code, body).
fn http_post(port: u16, path: &str, body: &str) -> (u16, String) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect for POST");
    stream.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send POST");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read answer");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    (code, body.to_string())
}

#[test]
fn one_member_validate_enable_cancel_and_restart() {
    // A raft snapshot every 10 entries, so the job also travels in one.
    let mut etcd = EtcdProcess::start(Kind::Ours, &["--snapshot-count=10"]);
    let url = etcd.client_url();
    let port = etcd.client_port();
    let rt = runtime();
    wait_cluster_version(port, "3.6.0");
    rt.block_on(async {
        assert_eq!(status(&url).await, (false, String::new(), "3.6.0".into()));
        for (v, want) in [
            ("3.4", TARGET),
            ("3.6", TARGET),
            ("3.7.0", TARGET),
            ("4.5", TARGET),
            ("2.5", TARGET),
            ("abc", FORMAT),
            ("", FORMAT),
            ("3", FORMAT),
            ("3.5.0.1", FORMAT),
            ("v3.5", FORMAT),
        ] {
            assert_eq!(
                downgrade(&url, validate(v)).await,
                Err(want.into()),
                "validate {v:?}"
            );
            assert_eq!(
                downgrade(&url, enable(v)).await,
                Err(want.into()),
                "enable {v:?}"
            );
        }
        for v in ["3.5", "3.5.0", "3.5.7-rc.1"] {
            assert_eq!(
                downgrade(&url, validate(v)).await,
                Ok("3.6".into()),
                "validate {v:?}"
            );
        }
        // etcd 3.6 logs a cancel without a job and answers the cluster version.
        assert_eq!(
            downgrade(&url, DowngradeOptions::Cancel).await,
            Ok("3.6".into())
        );
        assert_eq!(
            unknown_action(&url).await,
            "Unknown: etcdserver: unknown method"
        );
        assert_eq!(status(&url).await, (false, String::new(), "3.6.0".into()));

        // The answer carries the cluster version when the job was applied;
        // the leader's monitor may already have lowered it.
        let answered = downgrade(&url, enable("3.5.0")).await;
        assert!(
            answered == Ok("3.6".into()) || answered == Ok("3.5".into()),
            "enable 3.5.0: {answered:?}"
        );
        wait_job(&url, true, "3.5.0").await;
    });
    wait_cluster_version(port, "3.5.0");
    rt.block_on(async {
        assert_eq!(status(&url).await, (true, "3.5.0".into(), "3.5.0".into()));
        // The only target now is 3.4, and a job already runs.
        assert_eq!(downgrade(&url, validate("3.5")).await, Err(TARGET.into()));
        assert_eq!(
            downgrade(&url, validate("3.4")).await,
            Err(IN_PROGRESS.into())
        );
        assert_eq!(
            downgrade(&url, enable("3.4.0")).await,
            Err(IN_PROGRESS.into())
        );
        // Enough entries for a raft snapshot that holds the job.
        let mut client = connect(std::slice::from_ref(&url)).await;
        for i in 0..20 {
            bounded("put", client.put(format!("k{i}"), "v", None::<PutOptions>))
                .await
                .expect("put");
        }
    });
    assert!(
        etcd.log_contents()
            .contains("The server is ready to downgrade"),
        "no \"ready to downgrade\" line:\n{}",
        etcd.log_tail()
    );

    etcd.restart();
    assert!(
        etcd.log_contents()
            .contains("cluster is downgrading to target version"),
        "the restarted member did not find the job in its snapshot:\n{}",
        etcd.log_tail()
    );
    wait_cluster_version(port, "3.5.0");
    rt.block_on(async {
        assert_eq!(status(&url).await, (true, "3.5.0".into(), "3.5.0".into()));
        assert_eq!(
            downgrade(&url, validate("3.4")).await,
            Err(IN_PROGRESS.into())
        );
        let answered = downgrade(&url, DowngradeOptions::Cancel).await;
        assert!(
            answered == Ok("3.5".into()) || answered == Ok("3.6".into()),
            "cancel: {answered:?}"
        );
        wait_job(&url, false, "").await;
    });
    wait_cluster_version(port, "3.6.0");
    rt.block_on(async {
        assert_eq!(
            downgrade(&url, DowngradeOptions::Cancel).await,
            Ok("3.6".into())
        );
        assert_eq!(downgrade(&url, validate("3.5")).await, Ok("3.6".into()));
    });

    etcd.restart();
    wait_cluster_version(port, "3.6.0");
    rt.block_on(async {
        assert_eq!(status(&url).await, (false, String::new(), "3.6.0".into()));
    });

    // The gateway route, with grpc-gateway's JSON.
    let (code, body) = http_post(
        port,
        "/v3/maintenance/downgrade",
        r#"{"action":"VALIDATE","version":"3.5"}"#,
    );
    assert_eq!(code, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["version"], "3.6", "{body}");
    assert!(answer["header"]["member_id"].is_string(), "{body}");
    let (code, body) = http_post(
        port,
        "/v3/maintenance/downgrade",
        r#"{"action":"ENABLE","version":"x"}"#,
    );
    assert_eq!(
        (code, body.as_str()),
        (
            400,
            r#"{"error":"etcdserver: wrong downgrade target version format","code":3,"message":"etcdserver: wrong downgrade target version format"}"#
        )
    );
    let (code, body) = http_post(port, "/v3/maintenance/status", "{}");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""downgradeInfo":{}"#), "{body}");
}

#[test]
fn three_members_share_the_job_and_the_version() {
    let mut cluster = Cluster::start("downgrade", 3, &[]);
    let urls: Vec<String> = (0..3).map(|i| cluster.client_url(i)).collect();
    let ports: Vec<u16> = (0..3).map(|i| cluster.client_port(i)).collect();
    let rt = runtime();
    for &port in &ports {
        wait_cluster_version(port, "3.6.0");
    }
    rt.block_on(async {
        let answered = downgrade(&urls[1], enable("3.5")).await;
        assert!(
            answered == Ok("3.6".into()) || answered == Ok("3.5".into()),
            "enable 3.5: {answered:?}"
        );
        // Every member answers from the replicated job (after a read barrier).
        // (3.5 is a valid target until the monitor lowers the version.)
        let seen = downgrade(&urls[0], validate("3.5")).await;
        assert!(
            seen == Err(IN_PROGRESS.into()) || seen == Err(TARGET.into()),
            "validate 3.5 on m0 right after enable on m1: {seen:?}"
        );
        for url in &urls {
            wait_job(url, true, "3.5.0").await;
        }
    });
    for &port in &ports {
        wait_cluster_version(port, "3.5.0");
    }
    rt.block_on(async {
        assert_eq!(
            downgrade(&urls[2], validate("3.4")).await,
            Err(IN_PROGRESS.into())
        );
        assert_eq!(downgrade(&urls[0], enable("3.5")).await, Err(TARGET.into()));
    });

    // The leader restarts: the job and the version stay, on every member.
    let leader = cluster.wait_leader(WAIT);
    cluster.restart(leader);
    for &port in &ports {
        wait_cluster_version(port, "3.5.0");
    }
    rt.block_on(async {
        for url in &urls {
            wait_job(url, true, "3.5.0").await;
        }
        let answered = downgrade(&urls[(leader + 1) % 3], DowngradeOptions::Cancel).await;
        assert!(
            answered == Ok("3.5".into()) || answered == Ok("3.6".into()),
            "cancel: {answered:?}"
        );
        for url in &urls {
            wait_job(url, false, "").await;
        }
    });
    for &port in &ports {
        wait_cluster_version(port, "3.6.0");
    }
}

#[test]
fn error_answers_match_etcd_35() {
    let ours = EtcdProcess::start(Kind::Ours, &[]);
    let theirs = EtcdProcess::start(Kind::Ref35, &[]);
    let rt = runtime();
    rt.block_on(async {
        // Targets neither a 3.5 nor a 3.6 cluster may go to, and bad formats.
        for v in ["3.3", "3.7", "2.4", "abc", "", "3", "3.4.0.0"] {
            for options in [validate(v), enable(v)] {
                let mine = downgrade(&ours.client_url(), options.clone()).await;
                let reference = downgrade(&theirs.client_url(), options.clone()).await;
                assert!(mine.is_err(), "{options:?}: {mine:?}");
                assert_eq!(mine, reference, "{options:?}");
            }
        }
        assert_eq!(
            unknown_action(&ours.client_url()).await,
            unknown_action(&theirs.client_url()).await
        );
    });
}
