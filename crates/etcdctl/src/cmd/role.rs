//! `role add|delete|get|list|grant-permission|revoke-permission`.
//!
//! Permission ranges follow etcdctl's `permRange`: an empty key means the
//! key `\0`, and with `--prefix` or `--from-key` the whole key space
//! (`[\0, \0)`); `--prefix` ends the range at the next prefix, `--from-key`
//! at `\0` (open ended).

use std::io::Write;

use clap::{Args, Subcommand};

use api::authpb::permission::Type as PermType;
use api::authpb::Permission;
use api::etcdserverpb::{
    AuthRoleAddRequest, AuthRoleDeleteRequest, AuthRoleGetRequest, AuthRoleGetResponse,
    AuthRoleGrantPermissionRequest, AuthRoleListRequest, AuthRoleListResponse,
    AuthRoleRevokePermissionRequest,
};

use crate::cmd::auth::{group_help, print_header_only, NoArgs};
use crate::cmd::kv::{fields_header, prefix_range_end};
use crate::cmd::Ctx;
use crate::error::{CtlError, CtlResult};
use crate::global::parse_go_bool;
use crate::output::{go_json, print_json, print_protobuf, Format, Printer};

#[derive(Args, Debug)]
pub struct RoleArgs {
    #[command(subcommand)]
    pub command: Option<RoleCommand>,
}

#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    /// Adds a new role
    Add(Names),
    /// Deletes a role
    Delete(Names),
    /// Gets detailed information of a role
    Get(Names),
    /// Lists all roles
    List(NoArgs),
    /// Grants a key to a role
    GrantPermission(PermArgs),
    /// Revokes a key from a role
    RevokePermission(PermArgs),
    /// Anything else: cobra shows the group's help.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

#[derive(Args, Debug)]
pub struct Names {
    #[arg(value_name = "role name")]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PermArgs {
    /// the permission covers the keys with this prefix
    #[arg(long, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub prefix: bool,
    /// the permission covers the keys that are greater than or equal to the given key using byte compare
    #[arg(long = "from-key", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub from_key: bool,
    /// <role name> [<permission type>] <key> [endkey]
    #[arg(value_name = "args")]
    pub args: Vec<String>,
}

pub async fn run(ctx: &Ctx, a: RoleArgs) -> CtlResult {
    match a.command {
        Some(RoleCommand::Add(a)) => add(ctx, a).await,
        Some(RoleCommand::Delete(a)) => delete(ctx, a).await,
        Some(RoleCommand::Get(a)) => get(ctx, a).await,
        Some(RoleCommand::List(a)) => list(ctx, a).await,
        Some(RoleCommand::GrantPermission(a)) => grant(ctx, a).await,
        Some(RoleCommand::RevokePermission(a)) => revoke(ctx, a).await,
        Some(RoleCommand::Other(_)) | None => group_help("role"),
    }
}

/// clientv3's `StrToPermissionType`.
fn permission_type(s: &str) -> CtlResult<PermType> {
    PermType::from_str_name(&s.to_uppercase())
        .ok_or_else(|| CtlError::bad_args(format!("invalid permission type: {s}")))
}

/// etcdctl's `permRange`: the key and range end for `args` = `<key> [endkey]`.
fn perm_range(args: &[String], prefix: bool, from_key: bool) -> CtlResult<(Vec<u8>, Vec<u8>)> {
    let exclusive = || CtlError::bad_args("--from-key and --prefix flags are mutually exclusive");
    let key = args[0].as_bytes();
    if key.is_empty() {
        if prefix && from_key {
            return Err(exclusive());
        }
        let end = if prefix || from_key {
            vec![0]
        } else {
            Vec::new()
        };
        return Ok((vec![0], end));
    }
    let end = match (args.get(1), prefix, from_key) {
        (None, true, true) => return Err(exclusive()),
        (None, true, false) => prefix_range_end(key),
        (None, false, true) => vec![0],
        (None, false, false) => Vec::new(),
        (Some(_), true, _) => {
            return Err(CtlError::bad_args(
                "unexpected endkey argument with --prefix flag",
            ))
        }
        (Some(_), false, true) => {
            return Err(CtlError::bad_args(
                "unexpected endkey argument with --from-key flag",
            ))
        }
        (Some(end), false, false) => end.as_bytes().to_vec(),
    };
    Ok((key.to_vec(), end))
}

async fn add(ctx: &Ctx, a: Names) -> CtlResult {
    let [name] = a.args.as_slice() else {
        return Err(CtlError::bad_args(
            "role add command requires role name as its argument",
        ));
    };
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let request = AuthRoleAddRequest { name: name.clone() };
    let resp = client.unary(client.auth().role_add(request)).await?;
    print_header_only(
        &printer,
        &resp,
        resp.header.as_ref(),
        "etcdserverpb.AuthRoleAddResponse",
        &format!("Role {name} created"),
    )
}

async fn delete(ctx: &Ctx, a: Names) -> CtlResult {
    let [name] = a.args.as_slice() else {
        return Err(CtlError::bad_args(
            "role delete command requires role name as its argument",
        ));
    };
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let request = AuthRoleDeleteRequest { role: name.clone() };
    let resp = client.unary(client.auth().role_delete(request)).await?;
    print_header_only(
        &printer,
        &resp,
        resp.header.as_ref(),
        "etcdserverpb.AuthRoleDeleteResponse",
        &format!("Role {name} deleted"),
    )
}

async fn get(ctx: &Ctx, a: Names) -> CtlResult {
    let [name] = a.args.as_slice() else {
        return Err(CtlError::bad_args(
            "role get command requires role name as its argument",
        ));
    };
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let request = AuthRoleGetRequest { role: name.clone() };
    let resp = client.unary(client.auth().role_get(request)).await?;
    print_role_get(&printer, name, &resp)
}

/// `role get`'s writers (also used by `user get --detail`).
pub fn print_role_get(p: &Printer, name: &str, r: &AuthRoleGetResponse) -> CtlResult {
    match p.format {
        Format::Simple => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&role_text(name, &r.perm));
            let _ = out.flush();
        }
        Format::Json => print_json(&go_json(r, "etcdserverpb.AuthRoleGetResponse")),
        Format::Protobuf => print_protobuf(r),
        Format::Fields => {
            fields_header(r.header.as_ref());
            for perm in &r.perm {
                let kind = PermType::try_from(perm.perm_type)
                    .map(|t| t.as_str_name().to_string())
                    .unwrap_or_else(|_| perm.perm_type.to_string());
                println!("\"PermType\" :  {kind}");
                println!("\"Key\" : {}", gofmt::quote::quote(&perm.key));
                println!("\"RangeEnd\" : {}", gofmt::quote::quote(&perm.range_end));
            }
        }
        Format::Table => return Err(p.unsupported()),
    }
    Ok(())
}

/// The simple writer's text: the read then the write permissions, a key
/// alone, a range `[key, end)`, or `[key, <open ended>` to the end of the
/// key space, marked `(prefix key)` when the range is exactly a prefix.
fn role_text(name: &str, perms: &[Permission]) -> Vec<u8> {
    let mut out = format!("Role {name}\n").into_bytes();
    let sections = [
        ("KV Read:", [PermType::Read, PermType::Readwrite]),
        ("KV Write:", [PermType::Write, PermType::Readwrite]),
    ];
    for (title, kinds) in sections {
        out.extend_from_slice(title.as_bytes());
        out.push(b'\n');
        for perm in perms {
            if !kinds.iter().any(|k| *k as i32 == perm.perm_type) {
                continue;
            }
            out.push(b'\t');
            if perm.range_end.is_empty() {
                out.extend_from_slice(&perm.key);
            } else {
                out.push(b'[');
                out.extend_from_slice(&perm.key);
                out.extend_from_slice(b", ");
                if perm.range_end == [0] {
                    out.extend_from_slice(b"<open ended>");
                } else {
                    out.extend_from_slice(&perm.range_end);
                    out.push(b')');
                }
                if prefix_range_end(&perm.key) == perm.range_end {
                    out.extend_from_slice(b" (prefix ");
                    out.extend_from_slice(&perm.key);
                    out.push(b')');
                }
            }
            out.push(b'\n');
        }
    }
    out
}

async fn list(ctx: &Ctx, a: NoArgs) -> CtlResult {
    if !a.args.is_empty() {
        return Err(CtlError::bad_args(
            "role list command requires no arguments",
        ));
    }
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let resp = client
        .unary(client.auth().role_list(AuthRoleListRequest {}))
        .await?;
    print_role_list(&printer, &resp)
}

fn print_role_list(p: &Printer, r: &AuthRoleListResponse) -> CtlResult {
    match p.format {
        Format::Simple => {
            for role in &r.roles {
                println!("{role}");
            }
        }
        Format::Json => print_json(&go_json(r, "etcdserverpb.AuthRoleListResponse")),
        Format::Protobuf => print_protobuf(r),
        Format::Fields => {
            fields_header(r.header.as_ref());
            let roles: String = r
                .roles
                .iter()
                .map(|role| format!(" {}", gofmt::quote::quote(role.as_bytes())))
                .collect();
            println!("\"Roles\" :{roles}");
        }
        Format::Table => return Err(p.unsupported()),
    }
    Ok(())
}

async fn grant(ctx: &Ctx, a: PermArgs) -> CtlResult {
    if a.args.len() < 3 {
        return Err(CtlError::bad_args(
            "role grant command requires role name, permission type, and key [endkey] as its argument",
        ));
    }
    let kind = permission_type(&a.args[1])?;
    let (key, range_end) = perm_range(&a.args[2..], a.prefix, a.from_key)?;
    let role = a.args[0].clone();
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let request = AuthRoleGrantPermissionRequest {
        name: role.clone(),
        perm: Some(Permission {
            perm_type: kind as i32,
            key,
            range_end,
        }),
    };
    let resp = client
        .unary(client.auth().role_grant_permission(request))
        .await?;
    print_header_only(
        &printer,
        &resp,
        resp.header.as_ref(),
        "etcdserverpb.AuthRoleGrantPermissionResponse",
        &format!("Role {role} updated"),
    )
}

async fn revoke(ctx: &Ctx, a: PermArgs) -> CtlResult {
    if a.args.len() < 2 {
        return Err(CtlError::bad_args(
            "role revoke-permission command requires role name and key [endkey] as its argument",
        ));
    }
    let (key, range_end) = perm_range(&a.args[1..], a.prefix, a.from_key)?;
    let role = a.args[0].clone();
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let request = AuthRoleRevokePermissionRequest {
        role: role.clone(),
        key,
        range_end: range_end.clone(),
    };
    let resp = client
        .unary(client.auth().role_revoke_permission(request))
        .await?;
    // The message names the key as given (an empty key stays empty).
    let given = &a.args[1];
    let line = if range_end.is_empty() {
        format!("Permission of key {given} is revoked from role {role}")
    } else if range_end == [0] {
        format!("Permission of range [{given}, <open ended> is revoked from role {role}")
    } else {
        format!(
            "Permission of range [{given}, {}) is revoked from role {role}",
            String::from_utf8_lossy(&range_end)
        )
    };
    print_header_only(
        &printer,
        &resp,
        resp.header.as_ref(),
        "etcdserverpb.AuthRoleRevokePermissionResponse",
        &line,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ranges_follow_perm_range() {
        assert_eq!(
            perm_range(&args(&["p"]), true, false).unwrap(),
            (b"p".to_vec(), b"q".to_vec())
        );
        assert_eq!(
            perm_range(&args(&[""]), false, false).unwrap(),
            (vec![0], vec![])
        );
        assert_eq!(
            perm_range(&args(&[""]), true, false).unwrap(),
            (vec![0], vec![0])
        );
        assert_eq!(
            perm_range(&args(&["a", "z"]), false, false).unwrap(),
            (b"a".to_vec(), b"z".to_vec())
        );
        assert_eq!(
            perm_range(&args(&["a", "z"]), false, true)
                .unwrap_err()
                .message,
            "unexpected endkey argument with --from-key flag"
        );
        assert_eq!(
            perm_range(&args(&[""]), true, true).unwrap_err().message,
            "--from-key and --prefix flags are mutually exclusive"
        );
        assert_eq!(permission_type("rw").unwrap_err().code, 128);
        assert_eq!(permission_type("readWrite").unwrap(), PermType::Readwrite);
    }

    #[test]
    fn role_get_simple_text() {
        let perm = |t: PermType, k: &[u8], e: &[u8]| Permission {
            perm_type: t as i32,
            key: k.to_vec(),
            range_end: e.to_vec(),
        };
        let text = role_text(
            "r1",
            &[
                perm(PermType::Read, b"\0", b"\0"),
                perm(PermType::Write, b"a", b"z"),
                perm(PermType::Readwrite, b"p", b"q"),
                perm(PermType::Read, b"foo", b""),
            ],
        );
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "Role r1\nKV Read:\n\t[\0, <open ended>\n\t[p, q) (prefix p)\n\tfoo\n\
             KV Write:\n\t[a, z)\n\t[p, q) (prefix p)\n"
        );
    }
}
