//! `user add|delete|get|list|passwd|grant-role|revoke-role`.

use clap::{Args, Subcommand};

use api::authpb::UserAddOptions;
use api::etcdserverpb::{
    AuthRoleGetRequest, AuthUserAddRequest, AuthUserChangePasswordRequest, AuthUserDeleteRequest,
    AuthUserGetRequest, AuthUserGetResponse, AuthUserGrantRoleRequest, AuthUserListRequest,
    AuthUserListResponse, AuthUserRevokeRoleRequest,
};

use crate::cmd::auth::{group_help, print_header_only, NoArgs};
use crate::cmd::role::print_role_get;
use crate::cmd::Ctx;
use crate::error::{CtlError, CtlResult};
use crate::global::parse_go_bool;
use crate::output::{go_json, print_json, print_protobuf, Format, Printer};
use crate::prompt;

#[derive(Args, Debug)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: Option<UserCommand>,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Adds a new user
    Add(AddArgs),
    /// Deletes a user
    Delete(Names),
    /// Gets detailed information of a user
    Get(GetArgs),
    /// Lists all users
    List(NoArgs),
    /// Changes password of user
    Passwd(PasswdArgs),
    /// Grants a role to a user
    GrantRole(Names),
    /// Revokes a role from a user
    RevokeRole(Names),
    /// Anything else: cobra shows the group's help.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// Read password from stdin instead of interactive terminal
    #[arg(long, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true")]
    pub interactive: bool,
    /// Supply password from the command line flag
    #[arg(long = "new-user-password", default_value = "")]
    pub new_user_password: String,
    /// Create a user without password (CN based auth only)
    #[arg(long = "no-password", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub no_password: bool,
    /// <user name or user:password>
    #[arg(value_name = "user name or user:password")]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// Show permissions of roles granted to the user
    #[arg(long, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub detail: bool,
    /// <user name>
    #[arg(value_name = "user name")]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PasswdArgs {
    /// If true, read password from stdin instead of interactive terminal
    #[arg(long, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true")]
    pub interactive: bool,
    /// <user name>
    #[arg(value_name = "user name")]
    pub args: Vec<String>,
}

/// Positional names (`<user name>`, `<user name> <role name>`).
#[derive(Args, Debug)]
pub struct Names {
    #[arg(value_name = "names")]
    pub args: Vec<String>,
}

pub async fn run(ctx: &Ctx, a: UserArgs) -> CtlResult {
    match a.command {
        Some(UserCommand::Add(a)) => add(ctx, a).await,
        Some(UserCommand::Delete(a)) => delete(ctx, a).await,
        Some(UserCommand::Get(a)) => get(ctx, a).await,
        Some(UserCommand::List(a)) => list(ctx, a).await,
        Some(UserCommand::Passwd(a)) => passwd(ctx, a).await,
        Some(UserCommand::GrantRole(a)) => grant_role(ctx, a).await,
        Some(UserCommand::RevokeRole(a)) => revoke_role(ctx, a).await,
        Some(UserCommand::Other(_)) | None => group_help("user"),
    }
}

/// etcdctl's `readPasswordInteractive`: asked twice, both must agree.
fn ask_new_password(name: &str) -> CtlResult<String> {
    let first = prompt::ask(&format!("Password of {name}: "))
        .map_err(|e| CtlError::bad_args(format!("failed to ask password: {e}")))?;
    if first.is_empty() {
        return Err(CtlError::bad_args("empty password"));
    }
    let second = prompt::ask(&format!("Type password of {name} again for confirmation: "))
        .map_err(|e| CtlError::bad_args(format!("failed to ask password: {e}")))?;
    if first != second {
        return Err(CtlError::bad_args("given passwords are different"));
    }
    Ok(first)
}

/// The name and password `user add` sends (etcdctl's order of sources:
/// --no-password, --new-user-password, `name:password`, stdin, prompt).
fn add_request(a: &AddArgs) -> CtlResult<AuthUserAddRequest> {
    let [arg] = a.args.as_slice() else {
        return Err(CtlError::bad_args(
            "user add command requires user name as its argument",
        ));
    };
    let (name, password) = if a.no_password {
        (arg.clone(), String::new())
    } else if !a.new_user_password.is_empty() {
        (arg.clone(), a.new_user_password.clone())
    } else if let Some((name, password)) = arg.split_once(':') {
        if name.is_empty() {
            return Err(CtlError::bad_args("empty user name is not allowed"));
        }
        (name.to_string(), password.to_string())
    } else if !a.interactive {
        (arg.clone(), prompt::scan_word())
    } else {
        (arg.clone(), ask_new_password(arg)?)
    };
    Ok(AuthUserAddRequest {
        name,
        password,
        options: Some(UserAddOptions {
            no_password: a.no_password,
        }),
        hashed_password: String::new(),
    })
}

async fn add(ctx: &Ctx, a: AddArgs) -> CtlResult {
    let request = add_request(&a)?;
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let name = request.name.clone();
    let resp = client.unary(client.auth().user_add(request)).await?;
    print_header_only(
        &printer,
        &resp,
        resp.header.as_ref(),
        "etcdserverpb.AuthUserAddResponse",
        &format!("User {name} created"),
    )
}

async fn delete(ctx: &Ctx, a: Names) -> CtlResult {
    let [name] = a.args.as_slice() else {
        return Err(CtlError::bad_args(
            "user delete command requires user name as its argument",
        ));
    };
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let request = AuthUserDeleteRequest { name: name.clone() };
    let resp = client.unary(client.auth().user_delete(request)).await?;
    print_header_only(
        &printer,
        &resp,
        resp.header.as_ref(),
        "etcdserverpb.AuthUserDeleteResponse",
        &format!("User {name} deleted"),
    )
}

async fn get(ctx: &Ctx, a: GetArgs) -> CtlResult {
    let [name] = a.args.as_slice() else {
        return Err(CtlError::bad_args(
            "user get command requires user name as its argument",
        ));
    };
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let request = AuthUserGetRequest { name: name.clone() };
    let resp = client.unary(client.auth().user_get(request)).await?;
    if !a.detail {
        return print_user_get(&printer, name, &resp);
    }
    // --detail: the name, then each role as `role get` prints it.
    println!("User: {name}");
    for role in &resp.roles {
        println!();
        let request = AuthRoleGetRequest { role: role.clone() };
        let role_resp = client.unary(client.auth().role_get(request)).await?;
        print_role_get(&printer, role, &role_resp)?;
    }
    Ok(())
}

fn print_user_get(p: &Printer, name: &str, r: &AuthUserGetResponse) -> CtlResult {
    match p.format {
        Format::Simple => {
            println!("User: {name}");
            let roles: String = r.roles.iter().map(|role| format!(" {role}")).collect();
            println!("Roles:{roles}");
        }
        Format::Json => print_json(&go_json(r, "etcdserverpb.AuthUserGetResponse")),
        Format::Protobuf => print_protobuf(r),
        Format::Fields | Format::Table => return Err(p.unsupported()),
    }
    Ok(())
}

async fn list(ctx: &Ctx, a: NoArgs) -> CtlResult {
    if !a.args.is_empty() {
        return Err(CtlError::bad_args(
            "user list command requires no arguments",
        ));
    }
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let resp = client
        .unary(client.auth().user_list(AuthUserListRequest {}))
        .await?;
    print_user_list(&printer, &resp)
}

fn print_user_list(p: &Printer, r: &AuthUserListResponse) -> CtlResult {
    match p.format {
        Format::Simple => {
            for user in &r.users {
                println!("{user}");
            }
        }
        Format::Json => print_json(&go_json(r, "etcdserverpb.AuthUserListResponse")),
        Format::Protobuf => print_protobuf(r),
        Format::Fields | Format::Table => return Err(p.unsupported()),
    }
    Ok(())
}

async fn passwd(ctx: &Ctx, a: PasswdArgs) -> CtlResult {
    let [name] = a.args.as_slice() else {
        return Err(CtlError::bad_args(
            "user passwd command requires user name as its argument",
        ));
    };
    let password = if a.interactive {
        ask_new_password(name)?
    } else {
        prompt::scan_word()
    };
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let request = AuthUserChangePasswordRequest {
        name: name.clone(),
        password,
        hashed_password: String::new(),
    };
    let resp = client
        .unary(client.auth().user_change_password(request))
        .await?;
    print_header_only(
        &printer,
        &resp,
        resp.header.as_ref(),
        "etcdserverpb.AuthUserChangePasswordResponse",
        "Password updated",
    )
}

async fn grant_role(ctx: &Ctx, a: Names) -> CtlResult {
    let [user, role] = a.args.as_slice() else {
        return Err(CtlError::bad_args(
            "user grant command requires user name and role name as its argument",
        ));
    };
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let request = AuthUserGrantRoleRequest {
        user: user.clone(),
        role: role.clone(),
    };
    let resp = client.unary(client.auth().user_grant_role(request)).await?;
    print_header_only(
        &printer,
        &resp,
        resp.header.as_ref(),
        "etcdserverpb.AuthUserGrantRoleResponse",
        &format!("Role {role} is granted to user {user}"),
    )
}

async fn revoke_role(ctx: &Ctx, a: Names) -> CtlResult {
    let [user, role] = a.args.as_slice() else {
        return Err(CtlError::bad_args(
            "user revoke-role requires user name and role name as its argument",
        ));
    };
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let request = AuthUserRevokeRoleRequest {
        name: user.clone(),
        role: role.clone(),
    };
    let resp = client
        .unary(client.auth().user_revoke_role(request))
        .await?;
    print_header_only(
        &printer,
        &resp,
        resp.header.as_ref(),
        "etcdserverpb.AuthUserRevokeRoleResponse",
        &format!("Role {role} is revoked from user {user}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add_args(args: &[&str]) -> AddArgs {
        AddArgs {
            interactive: true,
            new_user_password: String::new(),
            no_password: false,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn user_add_takes_the_password_as_etcdctl() {
        let r = add_request(&add_args(&["alice:pw:x"])).unwrap();
        assert_eq!((r.name.as_str(), r.password.as_str()), ("alice", "pw:x"));
        let mut a = add_args(&["bob:ignored"]);
        a.new_user_password = "flag".into();
        let r = add_request(&a).unwrap();
        assert_eq!(
            (r.name.as_str(), r.password.as_str()),
            ("bob:ignored", "flag")
        );
        let mut a = add_args(&["carl"]);
        a.no_password = true;
        let r = add_request(&a).unwrap();
        assert_eq!(r.options, Some(UserAddOptions { no_password: true }));
        let e = add_request(&add_args(&[":pw"])).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (128, "empty user name is not allowed")
        );
        let e = add_request(&add_args(&[])).unwrap_err();
        assert_eq!(
            e.message,
            "user add command requires user name as its argument"
        );
    }
}
