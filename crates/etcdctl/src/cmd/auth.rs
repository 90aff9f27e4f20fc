//! `auth enable|disable|status`, and the writers the auth, user and role
//! commands share.

use clap::{Args, CommandFactory, Subcommand};

use api::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthStatusRequest,
    AuthStatusResponse, AuthUserGrantRoleRequest, ResponseHeader,
};
use api::EtcdError;

use crate::cmd::kv::fields_header;
use crate::cmd::Ctx;
use crate::error::{CtlError, CtlResult};
use crate::output::{go_json, print_json, print_protobuf, Format, Printer};
use crate::Cli;

/// How often `auth enable` creates the root role and tries again.
const ENABLE_ATTEMPTS_MAX: usize = 3;

#[derive(Args, Debug)]
pub struct AuthArgs {
    #[command(subcommand)]
    pub command: Option<AuthCommand>,
}

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Disables authentication
    Disable(NoArgs),
    /// Enables authentication
    Enable(NoArgs),
    /// Returns authentication status
    Status(NoArgs),
    /// Anything else: cobra shows the group's help.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

/// A command that takes no arguments (they are counted, to refuse them as
/// etcdctl does).
#[derive(Args, Debug)]
pub struct NoArgs {
    #[arg(value_name = "args", hide = true)]
    pub args: Vec<String>,
}

pub async fn run(ctx: &Ctx, a: AuthArgs) -> CtlResult {
    match a.command {
        Some(AuthCommand::Enable(a)) => enable(ctx, a).await,
        Some(AuthCommand::Disable(a)) => disable(ctx, a).await,
        Some(AuthCommand::Status(a)) => status(ctx, a).await,
        Some(AuthCommand::Other(_)) | None => group_help("auth"),
    }
}

/// cobra's answer to a group name alone or with an unknown subcommand: the
/// group's help on stdout, exit 0.
pub fn group_help(name: &str) -> CtlResult {
    let mut command = Cli::command();
    if let Some(group) = command.find_subcommand_mut(name) {
        let _ = group.print_help();
    }
    Ok(())
}

async fn enable(ctx: &Ctx, a: NoArgs) -> CtlResult {
    if !a.args.is_empty() {
        return Err(CtlError::bad_args(
            "auth enable command does not accept any arguments",
        ));
    }
    ctx.printer()?;
    let client = ctx.client().await?;
    // A root user without the root role: etcdctl creates the role, grants
    // it and tries again.
    let root_role_missing = EtcdError::RootRoleNotExist.message();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match client
            .unary(client.auth().auth_enable(AuthEnableRequest {}))
            .await
        {
            Ok(_) => break,
            Err(e) if e.message == root_role_missing && attempts < ENABLE_ATTEMPTS_MAX => {
                let role = AuthRoleAddRequest {
                    name: "root".into(),
                };
                client.unary(client.auth().role_add(role)).await?;
                let grant = AuthUserGrantRoleRequest {
                    user: "root".into(),
                    role: "root".into(),
                };
                client.unary(client.auth().user_grant_role(grant)).await?;
            }
            Err(e) => return Err(e),
        }
    }
    println!("Authentication Enabled");
    Ok(())
}

async fn disable(ctx: &Ctx, a: NoArgs) -> CtlResult {
    if !a.args.is_empty() {
        return Err(CtlError::bad_args(
            "auth disable command does not accept any arguments",
        ));
    }
    ctx.printer()?;
    let client = ctx.client().await?;
    client
        .unary(client.auth().auth_disable(AuthDisableRequest {}))
        .await?;
    println!("Authentication Disabled");
    Ok(())
}

async fn status(ctx: &Ctx, a: NoArgs) -> CtlResult {
    if !a.args.is_empty() {
        return Err(CtlError::bad_args(
            "auth status command does not accept any arguments",
        ));
    }
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let resp = client
        .unary(client.auth().auth_status(AuthStatusRequest {}))
        .await?;
    print_status(&printer, &resp)
}

fn print_status(p: &Printer, r: &AuthStatusResponse) -> CtlResult {
    match p.format {
        Format::Simple => {
            println!("Authentication Status: {}", r.enabled);
            println!("AuthRevision: {}", r.auth_revision);
        }
        Format::Json => print_json(&go_json(r, "etcdserverpb.AuthStatusResponse")),
        Format::Protobuf => print_protobuf(r),
        Format::Fields | Format::Table => return Err(p.unsupported()),
    }
    Ok(())
}

/// The writers of a response that carries only its header: `simple`
/// prints `line`, `fields` the header, `json`/`protobuf` the message, and
/// `table` is not supported.
pub fn print_header_only<M: prost::Message>(
    p: &Printer,
    resp: &M,
    header: Option<&ResponseHeader>,
    type_name: &str,
    line: &str,
) -> CtlResult {
    match p.format {
        Format::Simple => println!("{line}"),
        Format::Json => print_json(&go_json(resp, type_name)),
        Format::Protobuf => print_protobuf(resp),
        Format::Fields => fields_header(header),
        Format::Table => return Err(p.unsupported()),
    }
    Ok(())
}
