//! `lease grant|revoke|timetolive|list|keep-alive`, their writers, and the
//! keep-alive loop `lock` and `elect` sessions share.
//!
//! clientv3 wraps most lease responses in structs that embed the
//! `*ResponseHeader`, which shows in two writers: json inlines the header's
//! fields, and protobuf marshals the header alone (the embedded pointer's
//! `Marshal` is the struct's). `LeaseRevokeResponse` is a plain copy of the
//! protobuf type without its methods, so json nests the header and protobuf
//! refuses it.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Map, Value as Json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use api::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, ResponseHeader,
};

use crate::client::Client;
use crate::cmd::kv::fields_header;
use crate::cmd::Ctx;
use crate::error::{CtlError, CtlResult, EXIT_BAD_CONNECTION};
use crate::global::{parse_go_bool, parse_int};
use crate::output::{go_json, header_fields, print_json, print_protobuf, Format, Printer};

#[derive(Args, Debug)]
pub struct LeaseArgs {
    #[command(subcommand)]
    pub command: Option<LeaseCommand>,
    /// Anything but a subcommand: etcdctl shows the help.
    #[arg(hide = true)]
    pub rest: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Creates leases
    Grant(IdArgs),
    /// Revokes leases
    Revoke(IdArgs),
    /// Get lease information
    Timetolive(TimeToLiveArgs),
    /// List all active leases
    List(IdArgs),
    /// Keeps leases alive (renew)
    #[command(name = "keep-alive")]
    KeepAlive(KeepAliveArgs),
}

/// Commands whose only input is their positional arguments.
#[derive(Args, Debug)]
pub struct IdArgs {
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TimeToLiveArgs {
    /// Get keys attached to this lease
    #[arg(long, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub keys: bool,
    /// <leaseID>
    #[arg(value_name = "leaseID")]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct KeepAliveArgs {
    /// Resets the keep-alive time to its original value and exits immediately
    #[arg(long, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub once: bool,
    /// <leaseID>
    #[arg(value_name = "leaseID")]
    pub args: Vec<String>,
}

pub async fn run(ctx: &Ctx, a: LeaseArgs) -> CtlResult {
    match a.command {
        Some(LeaseCommand::Grant(a)) => grant(ctx, a).await,
        Some(LeaseCommand::Revoke(a)) => revoke(ctx, a).await,
        Some(LeaseCommand::Timetolive(a)) => time_to_live(ctx, a).await,
        Some(LeaseCommand::List(_)) => list(ctx).await,
        Some(LeaseCommand::KeepAlive(a)) => keep_alive_command(ctx, a).await,
        None => {
            crate::print_help(&["lease"]);
            Ok(())
        }
    }
}

/// A lease ID argument: hexadecimal, as etcdctl's `leaseFromArgs`.
pub fn lease_from_arg(arg: &str) -> CtlResult<i64> {
    parse_int(arg, 16)
        .map_err(|e| CtlError::bad_args(format!("bad lease ID arg ({e}), expecting ID in Hex")))
}

/// Go's `%016x` of a signed ID (a minus sign counts toward the width).
pub fn hex16(id: i64) -> String {
    if id < 0 {
        format!("-{:015x}", id.unsigned_abs())
    } else {
        format!("{id:016x}")
    }
}

async fn grant(ctx: &Ctx, a: IdArgs) -> CtlResult {
    let [ttl] = a.args.as_slice() else {
        return Err(CtlError::bad_args("lease grant command needs TTL argument"));
    };
    let ttl = parse_int(ttl, 10).map_err(|e| CtlError::bad_args(format!("bad TTL ({e})")))?;
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let request = LeaseGrantRequest { ttl, id: 0 };
    let resp = client
        .unary(client.lease().lease_grant(request))
        .await
        .map_err(|e| CtlError::error(format!("failed to grant lease ({e})")))?;
    print_grant(&printer, &resp)
}

async fn revoke(ctx: &Ctx, a: IdArgs) -> CtlResult {
    let [id] = a.args.as_slice() else {
        return Err(CtlError::bad_args("lease revoke command needs 1 argument"));
    };
    let id = lease_from_arg(id)?;
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let resp = client
        .unary(client.lease().lease_revoke(LeaseRevokeRequest { id }))
        .await
        .map_err(|e| CtlError::error(format!("failed to revoke lease ({e})")))?;
    print_revoke(&printer, id, &resp)
}

async fn time_to_live(ctx: &Ctx, a: TimeToLiveArgs) -> CtlResult {
    let [id] = a.args.as_slice() else {
        return Err(CtlError::bad_args(
            "lease timetolive command needs lease ID as argument",
        ));
    };
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let id = lease_from_arg(id)?;
    let request = LeaseTimeToLiveRequest { id, keys: a.keys };
    let resp = client
        .call(client.lease().lease_time_to_live(request))
        .await
        .map_err(|e| e.with_code(EXIT_BAD_CONNECTION))?;
    print_time_to_live(&printer, &resp, a.keys)
}

async fn list(ctx: &Ctx) -> CtlResult {
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let resp = client
        .call(client.lease().lease_leases(LeaseLeasesRequest {}))
        .await
        .map_err(|e| e.with_code(EXIT_BAD_CONNECTION))?;
    print_leases(&printer, &resp)
}

async fn keep_alive_command(ctx: &Ctx, a: KeepAliveArgs) -> CtlResult {
    let [id] = a.args.as_slice() else {
        return Err(CtlError::bad_args(
            "lease keep-alive command needs lease ID as argument",
        ));
    };
    let id = lease_from_arg(id)?;
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    if a.once {
        let resp = keep_alive_once(&client, id)
            .await
            .map_err(|e| e.with_code(EXIT_BAD_CONNECTION))?;
        return print_keep_alive(&printer, &resp);
    }
    let mut responses = keep_alive(client, id);
    while let Some(resp) = responses.recv().await {
        print_keep_alive(&printer, &resp)?;
    }
    if printer.format == Format::Simple {
        println!("lease {} expired or revoked.", hex16(id));
    }
    Ok(())
}

/// clientv3's `KeepAliveOnce`: one request on a stream of its own; a
/// response without TTL means the lease is gone.
async fn keep_alive_once(client: &Client, id: i64) -> CtlResult<LeaseKeepAliveResponse> {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.send(LeaseKeepAliveRequest { id }).await;
    let mut stream = client
        .call(client.lease().lease_keep_alive(ReceiverStream::new(rx)))
        .await?;
    let resp = stream
        .message()
        .await
        .map_err(|status| CtlError::from_status(&status))?
        .ok_or_else(|| CtlError::error("EOF"))?;
    if resp.ttl <= 0 {
        return Err(CtlError::error(api::EtcdError::LeaseNotFound.message()));
    }
    Ok(resp)
}

/// What clientv3 assumes a lease's TTL is until the first answer.
const FIRST_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the keep-alive loop looks at its clock, and waits after a
/// broken stream (clientv3's `retryConnWait`).
const KEEP_ALIVE_TICK: Duration = Duration::from_millis(500);

/// clientv3's `KeepAlive`: renews lease `id` every TTL/3 and passes each
/// answer on; the channel closes when the lease is gone (an answer without
/// TTL) or no answer came for a whole TTL. A broken stream is reopened.
pub fn keep_alive(client: Client, id: i64) -> mpsc::Receiver<LeaseKeepAliveResponse> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut deadline = Instant::now() + FIRST_KEEP_ALIVE_TIMEOUT;
        let mut next = Instant::now();
        while Instant::now() < deadline {
            let (requests, request_rx) = mpsc::channel(1);
            let mut lease = client.lease();
            let open = lease.lease_keep_alive(ReceiverStream::new(request_rx));
            tokio::pin!(open);
            let mut stream = None;
            let mut tick = tokio::time::interval(KEEP_ALIVE_TICK);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let now = Instant::now();
                        if now >= deadline || tx.is_closed() {
                            return;
                        }
                        // Until an answer moves `next`, every tick asks again
                        // (a full channel: the last request is still queued).
                        let sent = if now >= next {
                            requests.try_send(LeaseKeepAliveRequest { id })
                        } else {
                            Ok(())
                        };
                        if let Err(mpsc::error::TrySendError::Closed(_)) = sent {
                            break;
                        }
                    }
                    opened = &mut open, if stream.is_none() => match opened {
                        Ok(resp) => stream = Some(resp.into_inner()),
                        Err(_) => break,
                    },
                    message = next_message(&mut stream), if stream.is_some() => match message {
                        Ok(Some(resp)) => {
                            if resp.ttl <= 0 {
                                return;
                            }
                            let ttl = Duration::from_secs(resp.ttl.unsigned_abs());
                            next = Instant::now() + ttl / 3;
                            deadline = Instant::now() + ttl;
                            // A slow reader misses answers, as in clientv3.
                            let _ = tx.try_send(resp);
                        }
                        Ok(None) | Err(_) => break,
                    },
                }
            }
            tokio::time::sleep(KEEP_ALIVE_TICK).await;
        }
    });
    rx
}

async fn next_message(
    stream: &mut Option<tonic::Streaming<LeaseKeepAliveResponse>>,
) -> Result<Option<LeaseKeepAliveResponse>, tonic::Status> {
    match stream {
        Some(s) => s.message().await,
        None => std::future::pending().await,
    }
}

/// json of a clientv3 struct embedding `*ResponseHeader`, then `fields`.
fn embedded_json(header: Option<&ResponseHeader>, fields: Vec<(&str, Json)>) -> Json {
    let mut map: Map<String, Json> = header_fields(header);
    for (name, value) in fields {
        map.insert(name.to_string(), value);
    }
    Json::Object(map)
}

/// The protobuf writer for those structs: the header's own encoding.
fn print_embedded_header(header: Option<&ResponseHeader>) {
    print_protobuf(&header.cloned().unwrap_or_default());
}

pub fn print_grant(p: &Printer, r: &LeaseGrantResponse) -> CtlResult {
    match p.format {
        Format::Simple => println!("lease {} granted with TTL({}s)", hex16(r.id), r.ttl),
        Format::Json => print_json(&embedded_json(
            r.header.as_ref(),
            vec![
                ("ID", Json::from(r.id)),
                ("TTL", Json::from(r.ttl)),
                ("Error", Json::from(r.error.clone())),
            ],
        )),
        Format::Fields => {
            fields_header(r.header.as_ref());
            println!("\"ID\" : {}", r.id);
            println!("\"TTL\" : {}", r.ttl);
        }
        Format::Protobuf => print_embedded_header(r.header.as_ref()),
        Format::Table => return Err(p.unsupported()),
    }
    Ok(())
}

pub fn print_revoke(p: &Printer, id: i64, r: &LeaseRevokeResponse) -> CtlResult {
    match p.format {
        Format::Simple => println!("lease {} revoked", hex16(id)),
        Format::Json => print_json(&go_json(r, "etcdserverpb.LeaseRevokeResponse")),
        Format::Fields => fields_header(r.header.as_ref()),
        Format::Protobuf => {
            // Go's %v of the struct: the header's compact text, then the
            // gogo bookkeeping fields.
            let header = match &r.header {
                Some(h) => compact_text(h),
                None => "<nil>".to_string(),
            };
            return Err(CtlError::bad_feature(format!(
                "marshal unsupported for type clientv3.LeaseRevokeResponse ({{{header} {{}} [] 0}})"
            )));
        }
        Format::Table => return Err(p.unsupported()),
    }
    Ok(())
}

/// gogo's `CompactTextString` of a header (each set field and a space).
fn compact_text(h: &ResponseHeader) -> String {
    let mut out = String::new();
    if h.cluster_id != 0 {
        out.push_str(&format!("cluster_id:{} ", h.cluster_id));
    }
    if h.member_id != 0 {
        out.push_str(&format!("member_id:{} ", h.member_id));
    }
    if h.revision != 0 {
        out.push_str(&format!("revision:{} ", h.revision));
    }
    if h.raft_term != 0 {
        out.push_str(&format!("raft_term:{} ", h.raft_term));
    }
    out
}

pub fn print_keep_alive(p: &Printer, r: &LeaseKeepAliveResponse) -> CtlResult {
    match p.format {
        Format::Simple => println!("lease {} keepalived with TTL({})", hex16(r.id), r.ttl),
        Format::Json => print_json(&embedded_json(
            r.header.as_ref(),
            vec![("ID", Json::from(r.id)), ("TTL", Json::from(r.ttl))],
        )),
        Format::Fields => {
            fields_header(r.header.as_ref());
            println!("\"ID\" : {}", r.id);
            println!("\"TTL\" : {}", r.ttl);
        }
        Format::Protobuf => print_embedded_header(r.header.as_ref()),
        Format::Table => return Err(p.unsupported()),
    }
    Ok(())
}

pub fn print_time_to_live(p: &Printer, r: &LeaseTimeToLiveResponse, keys: bool) -> CtlResult {
    match p.format {
        Format::Simple => {
            if r.granted_ttl == 0 && r.ttl == -1 {
                println!("lease {} already expired", hex16(r.id));
                return Ok(());
            }
            let mut text = format!(
                "lease {} granted with TTL({}s), remaining({}s)",
                hex16(r.id),
                r.granted_ttl,
                r.ttl
            );
            if keys {
                let names: Vec<String> = r
                    .keys
                    .iter()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect();
                text.push_str(&format!(", attached keys([{}])", names.join(" ")));
            }
            println!("{text}");
        }
        Format::Json => {
            // clientv3's struct names its fields in lower case; a nil key
            // list is null.
            let keys = if r.keys.is_empty() {
                Json::Null
            } else {
                Json::Array(
                    r.keys
                        .iter()
                        .map(|k| {
                            Json::from(base64::Engine::encode(
                                &base64::engine::general_purpose::STANDARD,
                                k,
                            ))
                        })
                        .collect(),
                )
            };
            print_json(&embedded_json(
                r.header.as_ref(),
                vec![
                    ("id", Json::from(r.id)),
                    ("ttl", Json::from(r.ttl)),
                    ("granted-ttl", Json::from(r.granted_ttl)),
                    ("keys", keys),
                ],
            ));
        }
        Format::Fields => {
            fields_header(r.header.as_ref());
            println!("\"ID\" : {}", r.id);
            println!("\"TTL\" : {}", r.ttl);
            println!("\"GrantedTTL\" : {}", r.granted_ttl);
            for k in &r.keys {
                println!("\"Key\" : {}", gofmt::quote::quote(k));
            }
        }
        Format::Protobuf => print_embedded_header(r.header.as_ref()),
        Format::Table => return Err(p.unsupported()),
    }
    Ok(())
}

pub fn print_leases(p: &Printer, r: &LeaseLeasesResponse) -> CtlResult {
    match p.format {
        Format::Simple => {
            println!("found {} leases", r.leases.len());
            for l in &r.leases {
                println!("{}", hex16(l.id));
            }
        }
        Format::Json => {
            let leases = r
                .leases
                .iter()
                .map(|l| {
                    let mut m = Map::new();
                    m.insert("id".into(), Json::from(l.id));
                    Json::Object(m)
                })
                .collect();
            print_json(&embedded_json(
                r.header.as_ref(),
                vec![("leases", Json::Array(leases))],
            ));
        }
        Format::Fields => {
            fields_header(r.header.as_ref());
            for l in &r.leases {
                println!("\"ID\" : {}", l.id);
            }
        }
        Format::Protobuf => print_embedded_header(r.header.as_ref()),
        Format::Table => return Err(p.unsupported()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_as_go_hex() {
        assert_eq!(hex16(0x1234), "0000000000001234");
        assert_eq!(hex16(-1), "-000000000000001");
        assert_eq!(hex16(-1).len(), 16);
        assert_eq!(
            lease_from_arg("zz").unwrap_err().message,
            "bad lease ID arg (strconv.ParseInt: parsing \"zz\": invalid syntax), expecting ID in Hex"
        );
        assert_eq!(
            lease_from_arg("694d77aa9e38260f").unwrap(),
            0x694d77aa9e38260f
        );
    }

    #[test]
    fn revoke_header_reads_as_gogo_compact_text() {
        let h = ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 43,
            raft_term: 0,
        };
        assert_eq!(compact_text(&h), "cluster_id:1 member_id:2 revision:43 ");
    }
}
