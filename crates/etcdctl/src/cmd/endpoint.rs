//! `endpoint health|status|hashkv`: one connection per endpoint (the
//! `--endpoints`, or with `--cluster` every member's client URLs), results
//! in etcdctl's structs and tables.
//!
//! - health: a linearizable get of the key `health` (permission denied
//!   counts as healthy: the request went through consensus), then the
//!   alarm list; endpoints are checked concurrently and reported in the
//!   order they answer, as etcdctl's goroutines do. Any unhealthy endpoint
//!   ends with `unhealthy cluster` (exit code 1).
//! - status and hashkv visit the endpoints in order; a failed endpoint is
//!   reported on stderr and the rest are still printed, then exit code 1.

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{Map, Value as Json};
use tokio::task::JoinSet;

use api::etcdserverpb::alarm_request::AlarmAction;
use api::etcdserverpb::{
    AlarmRequest, AlarmType, HashKvRequest, HashKvResponse, MemberListRequest, RangeRequest,
    StatusRequest, StatusResponse,
};

use crate::client::Client;
use crate::cmd::kv::fields_header;
use crate::cmd::Ctx;
use crate::error::{CtlError, CtlResult};
use crate::global::{parse_go_bool, parse_go_i64, ClientConfig};
use crate::output::{go_json, print_json, print_table, Format, Printer};

#[derive(Args, Debug)]
pub struct EndpointArgs {
    /// use all endpoints from the cluster member list
    #[arg(long, global = true, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub cluster: bool,
    #[command(subcommand)]
    pub command: EndpointCommand,
}

#[derive(Subcommand, Debug)]
pub enum EndpointCommand {
    /// Checks the healthiness of endpoints specified in `--endpoints` flag
    Health(NoArgs),
    /// Prints out the status of endpoints specified in `--endpoints` flag
    Status(NoArgs),
    /// Prints the KV history hash for each endpoint in --endpoints
    Hashkv(HashKvArgs),
}

/// Commands that take no arguments of their own (extra ones are ignored,
/// as cobra does for these).
#[derive(Args, Debug)]
pub struct NoArgs {
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct HashKvArgs {
    /// maximum revision to hash (default: all revisions)
    #[arg(long, default_value = "0", value_parser = parse_go_i64)]
    pub rev: i64,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

pub async fn run(ctx: &Ctx, a: EndpointArgs) -> CtlResult {
    match a.command {
        EndpointCommand::Health(_) => health(ctx, a.cluster).await,
        EndpointCommand::Status(_) => status(ctx, a.cluster).await,
        EndpointCommand::Hashkv(h) => hashkv(ctx, a.cluster, h.rev).await,
    }
}

/// The endpoints a per-endpoint command visits: `--endpoints` as given, or
/// with `--cluster` the client URLs of every member (MemberList asked
/// without credentials, as etcdctl does, since it needs none).
pub async fn endpoints_from_cluster(
    ctx: &Ctx,
    config: &ClientConfig,
    cluster: bool,
) -> CtlResult<Vec<String>> {
    if !cluster {
        return Ok(ctx.global.endpoints.clone());
    }
    let failed = |e: CtlError| {
        CtlError::error(format!(
            "failed to fetch endpoints from etcd cluster member list: {e}"
        ))
    };
    let anonymous = ClientConfig {
        credentials: None,
        ..config.clone()
    };
    let client = Client::connect(&anonymous).await.map_err(failed)?;
    let request = MemberListRequest { linearizable: true };
    let resp = client
        .unary(client.cluster().member_list(request))
        .await
        .map_err(failed)?;
    Ok(resp
        .members
        .into_iter()
        .flat_map(|m| m.client_ur_ls)
        .collect())
}

/// etcdctl's `epHealth`.
#[derive(Debug, Clone)]
pub struct EpHealth {
    pub endpoint: String,
    pub health: bool,
    pub took: String,
    pub error: String,
}

pub async fn health(ctx: &Ctx, cluster: bool) -> CtlResult {
    let printer = ctx.printer()?;
    let config = ctx.global.client_config()?;
    let endpoints = endpoints_from_cluster(ctx, &config, cluster).await?;
    let mut checks = JoinSet::new();
    for endpoint in endpoints {
        let config = config.clone();
        checks.spawn(async move { check_health(&config, endpoint).await });
    }
    let mut results = Vec::new();
    while let Some(done) = checks.join_next().await {
        match done {
            Ok(h) => results.push(h),
            Err(e) => return Err(CtlError::error(format!("health check failed: {e}"))),
        }
    }
    print_health(&printer, &results)?;
    if results.iter().any(|h| !h.error.is_empty()) {
        return Err(CtlError::error("unhealthy cluster"));
    }
    Ok(())
}

/// Connects to `endpoint`, trying again until `deadline` as gRPC's dialer
/// does for a request under a deadline (so a dead endpoint answers when the
/// command's time is up, after the live ones, as in etcdctl).
async fn connect_until(
    config: &ClientConfig,
    endpoint: &str,
    deadline: Instant,
) -> CtlResult<Client> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match Client::connect_to(config, endpoint).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(e);
                }
                tokio::time::sleep(backoff.min(left)).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn check_health(config: &ClientConfig, endpoint: String) -> EpHealth {
    let started = Instant::now();
    let client = match connect_until(config, &endpoint, started + config.command_timeout).await {
        Ok(c) => c,
        Err(e) => {
            return EpHealth {
                endpoint,
                health: false,
                took: gofmt::duration::format(started.elapsed()),
                error: e.message,
            }
        }
    };
    let st = Instant::now();
    let deadline = st + config.command_timeout;
    let request = RangeRequest {
        key: b"health".to_vec(),
        ..RangeRequest::default()
    };
    let got = client.unary(client.kv().range(request)).await;
    let mut h = EpHealth {
        endpoint,
        health: false,
        took: gofmt::duration::format(st.elapsed()),
        error: String::new(),
    };
    // Permission denied is fine: the request went through consensus.
    match got {
        Ok(_) => h.health = true,
        Err(e) if e.message == "etcdserver: permission denied" => h.health = true,
        Err(e) => h.error = e.message,
    }
    if h.health {
        let left = deadline.saturating_duration_since(Instant::now());
        let request = AlarmRequest {
            action: AlarmAction::Get as i32,
            ..AlarmRequest::default()
        };
        match client
            .within(left, client.maintenance().alarm(request))
            .await
        {
            Ok(resp) if !resp.alarms.is_empty() => {
                h.health = false;
                h.error = "Active Alarm(s): ".to_string();
                for a in &resp.alarms {
                    h.error.push_str(match AlarmType::try_from(a.alarm) {
                        Ok(AlarmType::Nospace) => "NOSPACE ",
                        Ok(AlarmType::Corrupt) => "CORRUPT ",
                        _ => "UNKNOWN ",
                    });
                }
            }
            Ok(_) => {}
            Err(_) => {
                h.health = false;
                h.error = "Unable to fetch the alarm list".to_string();
            }
        }
    }
    h
}

pub fn print_health(p: &Printer, list: &[EpHealth]) -> CtlResult {
    match p.format {
        Format::Simple => {
            for h in list {
                if h.error.is_empty() {
                    println!(
                        "{} is healthy: successfully committed proposal: took = {}",
                        h.endpoint, h.took
                    );
                } else {
                    eprintln!(
                        "{} is unhealthy: failed to commit proposal: {}",
                        h.endpoint, h.error
                    );
                }
            }
        }
        Format::Json => {
            let items: Vec<Json> = list
                .iter()
                .map(|h| {
                    let mut m = Map::new();
                    m.insert("endpoint".into(), Json::from(h.endpoint.clone()));
                    m.insert("health".into(), Json::from(h.health));
                    m.insert("took".into(), Json::from(h.took.clone()));
                    if !h.error.is_empty() {
                        m.insert("error".into(), Json::from(h.error.clone()));
                    }
                    Json::Object(m)
                })
                .collect();
            print_json(&Json::Array(items));
        }
        Format::Fields => {
            for h in list {
                println!(
                    "\"Endpoint\" : {}",
                    gofmt::quote::quote(h.endpoint.as_bytes())
                );
                println!("\"Health\" : {}", h.health);
                println!("\"Took\" : {}", h.took);
                println!("\"Error\" : {}", h.error);
                println!();
            }
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|h| {
                    vec![
                        h.endpoint.clone(),
                        h.health.to_string(),
                        h.took.clone(),
                        h.error.clone(),
                    ]
                })
                .collect();
            print_table(&["endpoint", "health", "took", "error"], &rows)?;
        }
        Format::Protobuf => return Err(p.unsupported()),
    }
    Ok(())
}

/// Connects to `endpoint` alone and runs one call there under
/// `--command-timeout`.
async fn on_endpoint<T, F, Fut>(config: &ClientConfig, endpoint: &str, call: F) -> CtlResult<T>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = CtlResult<T>>,
{
    let client = Client::connect_to(config, endpoint).await?;
    call(client).await
}

/// Runs `call` on each endpoint in turn; the answers, and the last failure
/// (each reported on stderr as `Failed to get the <what> of endpoint …`).
async fn per_endpoint<T, F, Fut>(
    config: &ClientConfig,
    endpoints: Vec<String>,
    what: &str,
    call: F,
) -> (Vec<(String, T)>, Option<CtlError>)
where
    F: Fn(Client) -> Fut,
    Fut: std::future::Future<Output = CtlResult<T>>,
{
    let mut list = Vec::new();
    let mut failed = None;
    for ep in endpoints {
        match on_endpoint(config, &ep, &call).await {
            Ok(resp) => list.push((ep, resp)),
            Err(e) => {
                eprintln!("Failed to get the {what} of endpoint {ep} ({e})");
                failed = Some(e);
            }
        }
    }
    (list, failed)
}

pub async fn status(ctx: &Ctx, cluster: bool) -> CtlResult {
    let printer = ctx.printer()?;
    let config = ctx.global.client_config()?;
    let endpoints = endpoints_from_cluster(ctx, &config, cluster).await?;
    let (list, failed) = per_endpoint(&config, endpoints, "status", |c| async move {
        c.unary(c.maintenance().status(StatusRequest {})).await
    })
    .await;
    print_status(&printer, &list)?;
    match failed {
        Some(_) => Err(CtlError::exit(crate::error::EXIT_ERROR)),
        None => Ok(()),
    }
}

/// etcd 3.6's status columns.
const STATUS_HEADER: [&str; 16] = [
    "endpoint",
    "ID",
    "version",
    "storage version",
    "db size",
    "in use",
    "percentage not in use",
    "quota",
    "is leader",
    "is learner",
    "raft term",
    "raft index",
    "raft applied index",
    "errors",
    "downgrade target version",
    "downgrade enabled",
];

fn status_rows(list: &[(String, StatusResponse)]) -> Vec<Vec<String>> {
    list.iter()
        .map(|(ep, s)| {
            let member_id = s.header.as_ref().map(|h| h.member_id).unwrap_or_default();
            let not_in_use = if s.db_size > 0 {
                100 - s.db_size_in_use.saturating_mul(100) / s.db_size
            } else {
                0
            };
            let downgrade = s.downgrade_info.clone().unwrap_or_default();
            vec![
                ep.clone(),
                format!("{member_id:x}"),
                s.version.clone(),
                s.storage_version.clone(),
                gofmt::bytes::humanize(s.db_size.max(0) as u64),
                gofmt::bytes::humanize(s.db_size_in_use.max(0) as u64),
                format!("{not_in_use}%"),
                gofmt::bytes::humanize(s.db_size_quota.max(0) as u64),
                (s.leader == member_id).to_string(),
                s.is_learner.to_string(),
                s.raft_term.to_string(),
                s.raft_index.to_string(),
                s.raft_applied_index.to_string(),
                s.errors.join(", "),
                downgrade.target_version,
                downgrade.enabled.to_string(),
            ]
        })
        .collect()
}

/// etcdctl's `[{"Endpoint":…,"<field>":<response>}, …]`.
fn per_endpoint_json<M: prost::Message>(
    list: &[(String, M)],
    field: &str,
    type_name: &str,
) -> Json {
    let items = list
        .iter()
        .map(|(ep, resp)| {
            let mut m = Map::new();
            m.insert("Endpoint".into(), Json::from(ep.clone()));
            m.insert(field.into(), go_json(resp, type_name));
            Json::Object(m)
        })
        .collect();
    Json::Array(items)
}

/// Go's `%v` of a `[]string`: `[a b]`.
fn go_string_slice(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

pub fn print_status(p: &Printer, list: &[(String, StatusResponse)]) -> CtlResult {
    match p.format {
        Format::Simple => {
            for row in status_rows(list) {
                println!("{}", row.join(", "));
            }
        }
        Format::Json => print_json(&per_endpoint_json(
            list,
            "Status",
            "etcdserverpb.StatusResponse",
        )),
        Format::Fields => {
            for (ep, s) in list {
                fields_header(s.header.as_ref());
                println!(
                    "\"Version\" : {}",
                    gofmt::quote::quote(s.version.as_bytes())
                );
                println!("\"DBSize\" : {}", s.db_size);
                println!("\"Leader\" : {}", s.leader);
                println!("\"IsLearner\" : {}", s.is_learner);
                println!("\"RaftIndex\" : {}", s.raft_index);
                println!("\"RaftTerm\" : {}", s.raft_term);
                println!("\"RaftAppliedIndex\" : {}", s.raft_applied_index);
                println!("\"Errors\" : {}", go_string_slice(&s.errors));
                println!("\"Endpoint\" : {}", gofmt::quote::quote(ep.as_bytes()));
                println!();
            }
        }
        Format::Table => print_table(&STATUS_HEADER, &status_rows(list))?,
        Format::Protobuf => return Err(p.unsupported()),
    }
    Ok(())
}

pub async fn hashkv(ctx: &Ctx, cluster: bool, revision: i64) -> CtlResult {
    let printer = ctx.printer()?;
    let config = ctx.global.client_config()?;
    let endpoints = endpoints_from_cluster(ctx, &config, cluster).await?;
    let (list, failed) = per_endpoint(&config, endpoints, "hash", |c| async move {
        c.unary(c.maintenance().hash_kv(HashKvRequest { revision }))
            .await
    })
    .await;
    print_hashkv(&printer, &list)?;
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn hashkv_rows(list: &[(String, HashKvResponse)]) -> Vec<Vec<String>> {
    list.iter()
        .map(|(ep, h)| vec![ep.clone(), h.hash.to_string(), h.hash_revision.to_string()])
        .collect()
}

pub fn print_hashkv(p: &Printer, list: &[(String, HashKvResponse)]) -> CtlResult {
    match p.format {
        Format::Simple => {
            for row in hashkv_rows(list) {
                println!("{}", row.join(", "));
            }
        }
        Format::Json => print_json(&per_endpoint_json(
            list,
            "HashKV",
            "etcdserverpb.HashKVResponse",
        )),
        Format::Fields => {
            for (ep, h) in list {
                fields_header(h.header.as_ref());
                println!("\"Endpoint\" : {}", gofmt::quote::quote(ep.as_bytes()));
                println!("\"Hash\" : {}", h.hash);
                println!("\"HashRevision\" : {}", h.hash_revision);
                println!();
            }
        }
        Format::Table => print_table(&["endpoint", "hash", "hash_revision"], &hashkv_rows(list))?,
        Format::Protobuf => return Err(p.unsupported()),
    }
    Ok(())
}
