//! Starts an etcd member inside this process, talks to it over gRPC with
//! the `etcd-client` crate and in-process through `Etcd::server`, and
//! closes it.
//!
//! ```text
//! cargo run --example embed -p etcd-server
//! ```

use etcd_server::embed::{Config, Etcd};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut cfg = Config::default();
    cfg.data_dir = dir.path().join("embedded.etcd");
    // Port 0: the system picks free ports; `client_urls` tells which.
    cfg.listen_client_urls = vec!["http://127.0.0.1:0".into()];
    cfg.advertise_client_urls = cfg.listen_client_urls.clone();
    cfg.listen_peer_urls = vec!["http://127.0.0.1:0".into()];
    cfg.initial_advertise_peer_urls = cfg.listen_peer_urls.clone();
    let cfg = cfg.with_name("embedded");

    let etcd = Etcd::start(cfg).await?;
    etcd.ready().await?;
    let endpoint = etcd.client_urls()[0].clone();
    println!("member {:x} serves {endpoint}", etcd.server().member_id());

    let mut client = etcd_client::Client::connect([endpoint], None).await?;
    client.put("greeting", "hello from etcd-rs", None).await?;
    let got = client.get("greeting", None).await?;
    let value = got
        .kvs()
        .first()
        .map(|kv| kv.value_str().map(str::to_string));
    println!("over gRPC: greeting = {:?}", value.transpose()?);

    let read = etcd
        .server()
        .range(etcd_server::embed::RangeRequest {
            key: b"greeting".to_vec(),
            ..Default::default()
        })
        .await?;
    println!(
        "in process: {} key(s) at revision {}",
        read.count,
        read.header.map_or(0, |h| h.revision)
    );

    etcd.close().await;
    println!("closed");
    Ok(())
}
