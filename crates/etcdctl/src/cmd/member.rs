//! `member add|remove|update|list|promote` and their writers.
//!
//! - `member add` prints, with the simple writer only, the block of
//!   `ETCD_*` variables the new member starts with.
//! - Peer URLs are checked as clientv3 checks them (`types.NewURLs`) before
//!   the request, with its error texts.
//! - `member list -w json --hex` is etcdctl's hand-written JSON: ids as hex
//!   strings, `clientURLS` spelled as etcdctl spells it, no revision.

use clap::{Args, Subcommand};

use api::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberRemoveRequest, MemberUpdateRequest, ResponseHeader,
};

use crate::cmd::kv::fields_header;
use crate::cmd::Ctx;
use crate::error::{CtlError, CtlResult};
use crate::global::{parse_go_bool, parse_uint};
use crate::output::{go_json, print_json, print_protobuf, print_table, Format, Printer};

#[derive(Args, Debug)]
pub struct MemberArgs {
    #[command(subcommand)]
    pub command: MemberCommand,
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Adds a member into the cluster
    Add(AddArgs),
    /// Removes a member from the cluster
    Remove(IdArgs),
    /// Updates a member in the cluster
    Update(UpdateArgs),
    /// Lists all members in the cluster
    List(ListArgs),
    /// Promotes a non-voting member in the cluster
    Promote(IdArgs),
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// comma separated peer URLs for the new member.
    #[arg(long = "peer-urls", default_value = "")]
    pub peer_urls: String,
    /// indicates if the new member is raft learner
    #[arg(long, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub learner: bool,
    /// <memberName>
    #[arg(value_name = "memberName")]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// comma separated peer URLs for the updated member.
    #[arg(long = "peer-urls", default_value = "")]
    pub peer_urls: String,
    /// <memberID>
    #[arg(value_name = "memberID")]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
    #[arg(value_name = "args", hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    /// <memberID>
    #[arg(value_name = "memberID")]
    pub args: Vec<String>,
}

pub async fn run(ctx: &Ctx, a: MemberArgs) -> CtlResult {
    match a.command {
        MemberCommand::Add(a) => add(ctx, a).await,
        MemberCommand::Remove(a) => remove(ctx, a).await,
        MemberCommand::Update(a) => update(ctx, a).await,
        MemberCommand::List(a) => list(ctx, a).await,
        MemberCommand::Promote(a) => promote(ctx, a).await,
    }
}

/// The one hex member ID argument of remove, update and promote.
fn member_id(args: &[String]) -> CtlResult<u64> {
    let [id] = args else {
        return Err(CtlError::bad_args("member ID is not provided"));
    };
    parse_uint(id, 16)
        .map_err(|e| CtlError::bad_args(format!("bad member ID arg ({e}), expecting ID in Hex")))
}

/// clientv3's check of peer URLs (`types.NewURLs`), with its messages.
pub fn check_urls(urls: &[String]) -> CtlResult {
    if urls.is_empty() {
        return Err(CtlError::error("no valid URLs given"));
    }
    for url in urls {
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        match scheme {
            "http" | "https" => {
                let (host, path) = match rest.find(['/', '?', '#']) {
                    Some(at) => rest.split_at(at),
                    None => (rest, ""),
                };
                if !has_host_port(host) {
                    return Err(CtlError::error(format!(
                        "URL address does not have the form \"host:port\": {url}"
                    )));
                }
                if path.starts_with('/') {
                    return Err(CtlError::error(format!(
                        "URL must not contain a path: {url}"
                    )));
                }
            }
            "unix" | "unixs" => {}
            _ => {
                return Err(CtlError::error(format!(
                    "URL scheme must be http, https, unix, or unixs: {url}"
                )))
            }
        }
    }
    Ok(())
}

/// Go's `net.SplitHostPort` succeeds: `host:port` or `[v6]:port`.
fn has_host_port(hostport: &str) -> bool {
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    if let Some(rest) = hostport.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((_, after)) => after.starts_with(':') && !after[1..].contains(':'),
            None => false,
        };
    }
    hostport.matches(':').count() == 1
}

fn split_urls(urls: &str) -> Vec<String> {
    urls.split(',').map(str::to_string).collect()
}

pub async fn add(ctx: &Ctx, a: AddArgs) -> CtlResult {
    let name = match a.args.as_slice() {
        [] => return Err(CtlError::bad_args("member name not provided")),
        [name] => name.clone(),
        many => {
            let mut message = String::from("too many arguments");
            for s in many {
                if s.to_lowercase().starts_with("http") {
                    message.push_str(&format!(", did you mean --peer-urls={s}"));
                }
            }
            return Err(CtlError::bad_args(message));
        }
    };
    if a.peer_urls.is_empty() {
        return Err(CtlError::bad_args("member peer urls not provided"));
    }
    let printer = ctx.printer()?;
    let urls = split_urls(&a.peer_urls);
    check_urls(&urls)?;
    let client = ctx.client().await?;
    let request = MemberAddRequest {
        peer_ur_ls: urls,
        is_learner: a.learner,
    };
    let resp = client.unary(client.cluster().member_add(request)).await?;
    print_add(&printer, &resp)?;
    if printer.format == Format::Simple {
        print_env_block(&name, &a.peer_urls, &resp);
    }
    Ok(())
}

/// The `ETCD_*` settings the new member starts with.
fn print_env_block(name: &str, peer_urls: &str, resp: &MemberAddResponse) {
    let new_id = resp.member.as_ref().map(|m| m.id);
    let mut cluster = Vec::new();
    for m in &resp.members {
        let member_name = if Some(m.id) == new_id { name } else { &m.name };
        for u in &m.peer_ur_ls {
            cluster.push(format!("{member_name}={u}"));
        }
    }
    println!();
    println!("ETCD_NAME={}", go_quote(name));
    println!("ETCD_INITIAL_CLUSTER={}", go_quote(&cluster.join(",")));
    println!("ETCD_INITIAL_ADVERTISE_PEER_URLS={}", go_quote(peer_urls));
    println!("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
}

fn go_quote(s: &str) -> String {
    gofmt::quote::quote(s.as_bytes())
}

/// `Member <id> removed from|updated in|promoted in cluster <id>`, or the response.
fn print_change(
    printer: &Printer,
    id: u64,
    verb: &str,
    header: Option<&ResponseHeader>,
    resp: &impl prost::Message,
    type_name: &str,
) -> CtlResult {
    match printer.format {
        Format::Simple => println!("Member {id:16x} {verb} cluster {:16x}", cluster_id(header)),
        Format::Json => print_json(&go_json(resp, type_name)),
        Format::Protobuf => print_protobuf(resp),
        Format::Fields | Format::Table => return Err(printer.unsupported()),
    }
    Ok(())
}

pub async fn remove(ctx: &Ctx, a: IdArgs) -> CtlResult {
    let id = member_id(&a.args)?;
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let request = MemberRemoveRequest { id };
    let resp = client
        .unary(client.cluster().member_remove(request))
        .await?;
    print_change(
        &printer,
        id,
        "removed from",
        resp.header.as_ref(),
        &resp,
        "etcdserverpb.MemberRemoveResponse",
    )
}

pub async fn update(ctx: &Ctx, a: UpdateArgs) -> CtlResult {
    let id = member_id(&a.args)?;
    if a.peer_urls.is_empty() {
        return Err(CtlError::bad_args("member peer urls not provided"));
    }
    let printer = ctx.printer()?;
    let urls = split_urls(&a.peer_urls);
    check_urls(&urls)?;
    let client = ctx.client().await?;
    let request = MemberUpdateRequest {
        id,
        peer_ur_ls: urls,
    };
    let resp = client
        .unary(client.cluster().member_update(request))
        .await?;
    print_change(
        &printer,
        id,
        "updated in",
        resp.header.as_ref(),
        &resp,
        "etcdserverpb.MemberUpdateResponse",
    )
}

pub async fn promote(ctx: &Ctx, a: IdArgs) -> CtlResult {
    let id = member_id(&a.args)?;
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let request = MemberPromoteRequest { id };
    let resp = client
        .unary(client.cluster().member_promote(request))
        .await?;
    print_change(
        &printer,
        id,
        "promoted in",
        resp.header.as_ref(),
        &resp,
        "etcdserverpb.MemberPromoteResponse",
    )
}

pub async fn list(ctx: &Ctx, a: ListArgs) -> CtlResult {
    let linearizable = match a.consistency.as_str() {
        "l" => true,
        "s" => false,
        other => {
            return Err(CtlError::bad_feature(format!(
                "unknown consistency flag {}",
                go_quote(other)
            )))
        }
    };
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let request = MemberListRequest { linearizable };
    let resp = client.unary(client.cluster().member_list(request)).await?;
    print_list(&printer, &resp)
}

fn cluster_id(h: Option<&ResponseHeader>) -> u64 {
    h.map(|h| h.cluster_id).unwrap_or_default()
}

pub fn print_add(p: &Printer, r: &MemberAddResponse) -> CtlResult {
    match p.format {
        Format::Simple => {
            let member = r.member.clone().unwrap_or_default();
            let learner = if member.is_learner {
                " as learner "
            } else {
                " "
            };
            println!(
                "Member {:16x} added{learner}to cluster {:16x}",
                member.id,
                cluster_id(r.header.as_ref())
            );
        }
        Format::Json => print_json(&go_json(r, "etcdserverpb.MemberAddResponse")),
        Format::Protobuf => print_protobuf(r),
        Format::Fields | Format::Table => return Err(p.unsupported()),
    }
    Ok(())
}

/// etcdctl's member table: ID, status (unstarted until the member has a
/// name), name, peer and client URLs, learner.
pub fn member_rows(members: &[Member]) -> Vec<Vec<String>> {
    members
        .iter()
        .map(|m| {
            let status = if m.name.is_empty() {
                "unstarted"
            } else {
                "started"
            };
            vec![
                format!("{:x}", m.id),
                status.to_string(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect()
}

const MEMBER_TABLE_HEADER: [&str; 6] = [
    "ID",
    "Status",
    "Name",
    "Peer Addrs",
    "Client Addrs",
    "Is Learner",
];

pub fn print_list(p: &Printer, r: &MemberListResponse) -> CtlResult {
    match p.format {
        Format::Simple => {
            for row in member_rows(&r.members) {
                println!("{}", row.join(", "));
            }
        }
        Format::Json if p.hex => println!("{}", hex_list_json(r)),
        Format::Json => print_json(&go_json(r, "etcdserverpb.MemberListResponse")),
        Format::Protobuf => print_protobuf(r),
        Format::Fields => {
            fields_header(r.header.as_ref());
            for m in &r.members {
                println!("\"ID\" : {}", m.id);
                println!("\"Name\" : {}", go_quote(&m.name));
                for u in &m.peer_ur_ls {
                    println!("\"PeerURL\" : {}", go_quote(u));
                }
                for u in &m.client_ur_ls {
                    println!("\"ClientURL\" : {}", go_quote(u));
                }
                println!("\"IsLearner\" : {}", m.is_learner);
                println!();
            }
        }
        Format::Table => print_table(&MEMBER_TABLE_HEADER, &member_rows(&r.members))?,
    }
    Ok(())
}

/// etcdctl's `printMemberListWithHexJSON`, byte for byte: the name is
/// written unescaped, URL lists through `encoding/json` (`null` when empty),
/// and an empty member list leaves the object unclosed, as etcdctl does.
fn hex_list_json(r: &MemberListResponse) -> String {
    let h = r.header.unwrap_or_default();
    let mut out = format!(
        "{{\"header\":{{\"cluster_id\":\"{:x}\",\"member_id\":\"{:x}\",\"raft_term\":{}",
        h.cluster_id, h.member_id, h.raft_term
    );
    let urls = |list: &[String]| -> String {
        if list.is_empty() {
            "null".to_string()
        } else {
            crate::output::go_json_text(&serde_json::Value::from(list.to_vec()))
        }
    };
    for (i, m) in r.members.iter().enumerate() {
        out.push_str(if i == 0 {
            "},\"members\":[{\"ID\":\""
        } else {
            "},{\"ID\":\""
        });
        out.push_str(&format!("{:x}", m.id));
        out.push_str(&format!("\",\"name\":\"{}\",\"peerURLs\":", m.name));
        out.push_str(&urls(&m.peer_ur_ls));
        out.push_str(",\"clientURLS\":");
        out.push_str(&urls(&m.client_ur_ls));
        if i == r.members.len() - 1 {
            out.push_str("}]}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_checked_as_clientv3_does() {
        let check = |u: &str| check_urls(&[u.to_string()]).err().map(|e| e.message);
        assert_eq!(check("http://127.0.0.1:2380"), None);
        assert_eq!(check("https://[::1]:2380"), None);
        assert_eq!(check("unix://x"), None);
        assert_eq!(
            check("foo").as_deref(),
            Some("URL scheme must be http, https, unix, or unixs: foo")
        );
        assert_eq!(
            check("http://a").as_deref(),
            Some("URL address does not have the form \"host:port\": http://a")
        );
        assert_eq!(
            check("http://a:1/p").as_deref(),
            Some("URL must not contain a path: http://a:1/p")
        );
    }

    #[test]
    fn hex_json_is_etcdctls_hand_written_form() {
        let r = MemberListResponse {
            header: Some(ResponseHeader {
                cluster_id: 0xea1cd0687a341470,
                member_id: 0x9e78ec95dfa41421,
                revision: 5,
                raft_term: 2,
            }),
            members: vec![
                Member {
                    id: 0x6ea197d63fc5cc6,
                    peer_ur_ls: vec!["http://127.0.0.1:1999".into()],
                    is_learner: true,
                    ..Member::default()
                },
                Member {
                    id: 0x9e78ec95dfa41421,
                    name: "n1".into(),
                    peer_ur_ls: vec!["http://127.0.0.1:47821".into()],
                    client_ur_ls: vec!["http://127.0.0.1:47820".into()],
                    is_learner: false,
                },
            ],
        };
        assert_eq!(
            hex_list_json(&r),
            r#"{"header":{"cluster_id":"ea1cd0687a341470","member_id":"9e78ec95dfa41421","raft_term":2},"members":[{"ID":"6ea197d63fc5cc6","name":"","peerURLs":["http://127.0.0.1:1999"],"clientURLS":null},{"ID":"9e78ec95dfa41421","name":"n1","peerURLs":["http://127.0.0.1:47821"],"clientURLS":["http://127.0.0.1:47820"]}]}"#
        );
    }
}
