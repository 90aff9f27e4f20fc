//! `alarm list|disarm`, `defrag`, `move-leader` and `downgrade
//! validate|enable|cancel`: the Maintenance service's cluster operations.
//!
//! - `defrag` visits each endpoint (or with `--cluster` each member) on a
//!   connection of its own and prints etcd 3.6's line with the time taken;
//!   any failure ends with exit code 1 after the others were tried.
//! - `move-leader` looks for the leader among `--endpoints` (its Status
//!   says it leads) and asks it to transfer leadership.

use std::time::Instant;

use clap::{Args, Subcommand};

use api::etcdserverpb::alarm_request::AlarmAction;
use api::etcdserverpb::downgrade_request::DowngradeAction;
use api::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DowngradeRequest,
    DowngradeResponse, MoveLeaderRequest, StatusRequest,
};

use crate::client::Client;
use crate::cmd::endpoint::endpoints_from_cluster;
use crate::cmd::kv::fields_header;
use crate::cmd::Ctx;
use crate::error::{CtlError, CtlResult, EXIT_ERROR};
use crate::global::{parse_go_bool, parse_uint};
use crate::output::{go_json, print_json, print_protobuf, Format, Printer};

#[derive(Args, Debug)]
pub struct AlarmArgs {
    #[command(subcommand)]
    pub command: AlarmCommand,
}

#[derive(Subcommand, Debug)]
pub enum AlarmCommand {
    /// Disarms all alarms
    Disarm(RestArgs),
    /// Lists all alarms
    List(RestArgs),
}

/// Positional arguments a command checks itself (to answer with etcdctl's
/// own message).
#[derive(Args, Debug)]
pub struct RestArgs {
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DefragArgs {
    /// use all endpoints from the cluster member list
    #[arg(long, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub cluster: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct MoveLeaderArgs {
    /// <transferee-member-id>
    #[arg(value_name = "transferee-member-id")]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DowngradeArgs {
    #[command(subcommand)]
    pub command: DowngradeCommand,
}

#[derive(Subcommand, Debug)]
pub enum DowngradeCommand {
    /// Validate downgrade capability before starting downgrade
    Validate(RestArgs),
    /// Start a downgrade action to cluster
    Enable(RestArgs),
    /// Cancel the ongoing downgrade action to cluster
    Cancel(RestArgs),
}

pub async fn alarm(ctx: &Ctx, a: AlarmArgs) -> CtlResult {
    let (action, name, args) = match a.command {
        AlarmCommand::Disarm(r) => (AlarmAction::Deactivate, "disarm", r.args),
        AlarmCommand::List(r) => (AlarmAction::Get, "list", r.args),
    };
    if !args.is_empty() {
        return Err(CtlError::bad_args(format!(
            "alarm {name} command accepts no arguments"
        )));
    }
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let list = AlarmRequest {
        action: AlarmAction::Get as i32,
        ..AlarmRequest::default()
    };
    let resp = client.unary(client.maintenance().alarm(list)).await?;
    if action == AlarmAction::Get {
        return print_alarms(&printer, &resp);
    }
    // clientv3 disarms "all" one alarm at a time, from the list; what it
    // returns is its own response, with no header.
    let mut disarmed = AlarmResponse::default();
    for a in resp.alarms {
        let request = AlarmRequest {
            action: AlarmAction::Deactivate as i32,
            member_id: a.member_id,
            alarm: a.alarm,
        };
        let done = client.unary(client.maintenance().alarm(request)).await?;
        disarmed.alarms.extend(done.alarms);
    }
    print_alarms(&printer, &disarmed)
}

fn alarm_name(alarm: i32) -> String {
    match AlarmType::try_from(alarm) {
        Ok(t) => t.as_str_name().to_string(),
        Err(_) => alarm.to_string(),
    }
}

/// Go's `%+v` of an `*AlarmMember`: its compact protobuf text form, zero
/// fields left out, each field followed by a space.
pub fn alarm_text(a: &AlarmMember) -> String {
    let mut out = String::new();
    if a.member_id != 0 {
        out.push_str(&format!("memberID:{} ", a.member_id));
    }
    if a.alarm != 0 {
        out.push_str(&format!("alarm:{} ", alarm_name(a.alarm)));
    }
    out
}

pub fn print_alarms(p: &Printer, r: &AlarmResponse) -> CtlResult {
    match p.format {
        Format::Simple => {
            for a in &r.alarms {
                println!("{}", alarm_text(a));
            }
        }
        Format::Json => print_json(&go_json(r, "etcdserverpb.AlarmResponse")),
        Format::Protobuf => print_protobuf(r),
        Format::Fields => {
            fields_header(r.header.as_ref());
            for a in &r.alarms {
                println!("\"MemberID\" : {}", a.member_id);
                println!("\"AlarmType\" : {}", alarm_name(a.alarm));
                println!();
            }
        }
        Format::Table => return Err(p.unsupported()),
    }
    Ok(())
}

pub async fn defrag(ctx: &Ctx, a: DefragArgs) -> CtlResult {
    let config = ctx.global.client_config()?;
    let mut failures = 0;
    for ep in endpoints_from_cluster(ctx, &config, a.cluster).await? {
        let started = Instant::now();
        let done = match Client::connect_to(&config, &ep).await {
            Ok(c) => c
                .unary(c.maintenance().defragment(DefragmentRequest {}))
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        let took = gofmt::duration::format(started.elapsed());
        match done {
            Ok(()) => println!("Finished defragmenting etcd member[{ep}]. took {took}"),
            Err(e) => {
                eprintln!("Failed to defragment etcd member[{ep}]. took {took}. ({e})");
                failures += 1;
            }
        }
    }
    if failures > 0 {
        return Err(CtlError::exit(EXIT_ERROR));
    }
    Ok(())
}

pub async fn move_leader(ctx: &Ctx, a: MoveLeaderArgs) -> CtlResult {
    let [target] = a.args.as_slice() else {
        return Err(CtlError::bad_args("move-leader command needs 1 argument"));
    };
    let target = parse_uint(target, 16).map_err(CtlError::bad_args)?;
    let printer = ctx.printer()?;
    let config = ctx.global.client_config()?;
    let mut leader = None;
    for ep in &config.endpoints {
        let client = Client::connect_to(&config, ep).await?;
        let status = client
            .unary(client.maintenance().status(StatusRequest {}))
            .await?;
        let member_id = status
            .header
            .as_ref()
            .map(|h| h.member_id)
            .unwrap_or_default();
        if member_id == status.leader {
            leader = Some((client, status.leader));
            break;
        }
    }
    let Some((client, leader_id)) = leader else {
        return Err(CtlError::bad_args(format!(
            "no leader endpoint given at [{}]",
            config.endpoints.join(" ")
        )));
    };
    let request = MoveLeaderRequest { target_id: target };
    let resp = client
        .unary(client.maintenance().move_leader(request))
        .await?;
    match printer.format {
        Format::Simple => println!("Leadership transferred from {leader_id:x} to {target:x}"),
        Format::Json => print_json(&go_json(&resp, "etcdserverpb.MoveLeaderResponse")),
        Format::Protobuf => print_protobuf(&resp),
        Format::Fields | Format::Table => return Err(printer.unsupported()),
    }
    Ok(())
}

pub async fn downgrade(ctx: &Ctx, a: DowngradeArgs) -> CtlResult {
    let (action, verb, version) = match a.command {
        DowngradeCommand::Validate(r) => (DowngradeAction::Validate, "validate", target(&r.args)?),
        DowngradeCommand::Enable(r) => (DowngradeAction::Enable, "enable", target(&r.args)?),
        DowngradeCommand::Cancel(_) => (DowngradeAction::Cancel, "cancel", String::new()),
    };
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let request = DowngradeRequest {
        action: action as i32,
        version,
    };
    let resp = client
        .unary(client.maintenance().downgrade(request))
        .await?;
    print_downgrade(&printer, verb, &resp)
}

/// The `<TARGET_VERSION>` argument of validate and enable.
fn target(args: &[String]) -> CtlResult<String> {
    match args {
        [] => Err(CtlError::bad_args("TARGET_VERSION not provided")),
        [v] if v.is_empty() => Err(CtlError::bad_args("target version not provided")),
        [v] => Ok(v.clone()),
        _ => Err(CtlError::bad_args("too many arguments")),
    }
}

pub fn print_downgrade(p: &Printer, verb: &str, r: &DowngradeResponse) -> CtlResult {
    match p.format {
        Format::Simple => println!("Downgrade {verb} success, cluster version {}", r.version),
        Format::Json => print_json(&go_json(r, "etcdserverpb.DowngradeResponse")),
        Format::Protobuf => print_protobuf(r),
        Format::Fields | Format::Table => return Err(p.unsupported()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_print_as_go_protobuf_text() {
        let a = AlarmMember {
            member_id: 1875973962661131211,
            alarm: AlarmType::Nospace as i32,
        };
        assert_eq!(
            alarm_text(&a),
            "memberID:1875973962661131211 alarm:NOSPACE "
        );
    }

    #[test]
    fn downgrade_target_checks() {
        assert_eq!(
            target(&[]).unwrap_err().message,
            "TARGET_VERSION not provided"
        );
        assert_eq!(
            target(&["3.5".into(), "x".into()]).unwrap_err().message,
            "too many arguments"
        );
        assert_eq!(target(&["3.5".into()]).unwrap(), "3.5");
    }
}
