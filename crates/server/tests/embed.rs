//! The embed API in one process: a member starts on free ports, serves
//! in-process and gRPC requests, refuses a second start on its data dir
//! while it runs, and once closed leaves the dir free for the next start,
//! which finds the data it left.

use std::path::Path;
use std::time::Duration;

use etcd_server::embed::{Config, Etcd, PutRequest, RangeRequest};

fn config(dir: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.data_dir = dir.join("embedded.etcd");
    cfg.listen_client_urls = vec!["http://127.0.0.1:0".into()];
    cfg.advertise_client_urls = cfg.listen_client_urls.clone();
    cfg.listen_peer_urls = vec!["http://127.0.0.1:0".into()];
    cfg.initial_advertise_peer_urls = cfg.listen_peer_urls.clone();
    cfg.with_name("embedded")
}

async fn start_ready(cfg: Config) -> Etcd {
    let etcd = Etcd::start(cfg).await.expect("start");
    tokio::time::timeout(Duration::from_secs(30), etcd.ready())
        .await
        .expect("ready within 30 s")
        .expect("ready");
    etcd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_member_frees_its_dir_for_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = start_ready(config(dir.path())).await;
    assert!(etcd.server().leader() != 0, "a single member leads itself");
    let put = etcd
        .server()
        .put(PutRequest {
            key: b"k".to_vec(),
            value: b"v1".to_vec(),
            ..Default::default()
        })
        .await
        .expect("put in process");
    let revision = put.header.expect("a header").revision;
    assert_eq!(revision, 2);
    let status = etcd.server().status();
    assert_eq!(status.leader, status.member_id);
    assert_eq!((status.revision, status.keys), (2, 1));
    assert!(status.applied_index > 0 && !status.is_learner);

    // The gRPC edge sees the same member.
    let endpoint = etcd.client_urls()[0].clone();
    assert!(!endpoint.ends_with(":0"), "the bound port: {endpoint}");
    let mut client = etcd_client::Client::connect([endpoint.clone()], None)
        .await
        .expect("connect");
    let got = client.get("k", None).await.expect("get");
    assert_eq!(got.kvs()[0].value(), b"v1");

    // The dir is locked while the member runs.
    match Etcd::start(config(dir.path())).await {
        Ok(_) => panic!("a second member started on a dir in use"),
        Err(e) => assert!(e.to_string().contains("lock"), "{e}"),
    }

    etcd.close().await;
    assert!(
        client.get("k", None).await.is_err(),
        "a closed member answers no more"
    );

    let etcd = start_ready(config(dir.path())).await;
    let read = etcd
        .server()
        .range(RangeRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range");
    assert_eq!(read.kvs.len(), 1);
    assert_eq!(read.kvs[0].value, b"v1");
    assert_eq!(read.kvs[0].mod_revision, revision);
    etcd.close().await;
}
