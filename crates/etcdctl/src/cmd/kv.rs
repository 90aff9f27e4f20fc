//! `get`, `put`, `del` and `compaction`, and their writers. The request
//! builders are shared with `txn`, whose lines are these commands.

use std::io::Read;

use clap::Args;

use api::etcdserverpb::range_request::{SortOrder, SortTarget};
use api::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, ResponseHeader,
};
use api::mvccpb::KeyValue;

use crate::client::check_send_size;
use crate::cmd::Ctx;
use crate::error::{CtlError, CtlResult, EXIT_BAD_ARGS};
use crate::global::{parse_go_bool, parse_go_i64, parse_int};
use crate::output::{go_json, print_json, print_protobuf, println_bytes, Format, Printer};

#[derive(Args, Debug, Clone, Default)]
pub struct GetArgs {
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default)
    #[arg(long, default_value = "")]
    pub order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
    #[arg(long = "sort-by", default_value = "")]
    pub sort_by: String,
    /// Maximum number of results
    #[arg(long, default_value = "0", value_parser = parse_go_i64)]
    pub limit: i64,
    /// Get keys with matching prefix
    #[arg(long, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare
    #[arg(long = "from-key", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub from_key: bool,
    /// Specify the kv revision
    #[arg(long, default_value = "0", value_parser = parse_go_i64)]
    pub rev: i64,
    /// Get only the keys
    #[arg(long = "keys-only", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub keys_only: bool,
    /// Get only the count
    #[arg(long = "count-only", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub count_only: bool,
    /// Only write values when using the "simple" output format
    #[arg(long = "print-value-only", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub print_value_only: bool,
    /// Restrict results to kvs with create revision lower or equal than the supplied revision
    #[arg(long = "max-create-rev", default_value = "0", value_parser = parse_go_i64)]
    pub max_create_rev: i64,
    /// Restrict results to kvs with create revision greater or equal than the supplied revision
    #[arg(long = "min-create-rev", default_value = "0", value_parser = parse_go_i64)]
    pub min_create_rev: i64,
    /// Restrict results to kvs with modified revision lower or equal than the supplied revision
    #[arg(long = "max-mod-rev", default_value = "0", value_parser = parse_go_i64)]
    pub max_mod_rev: i64,
    /// Restrict results to kvs with modified revision greater or equal than the supplied revision
    #[arg(long = "min-mod-rev", default_value = "0", value_parser = parse_go_i64)]
    pub min_mod_rev: i64,
    /// <key> [range_end]
    #[arg(value_name = "key")]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct PutArgs {
    /// lease ID (in hexadecimal) to attach to the key
    #[arg(long, default_value = "0")]
    pub lease: String,
    /// return the previous key-value pair before modification
    #[arg(long = "prev-kv", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub prev_kv: bool,
    /// updates the key using its current value
    #[arg(long = "ignore-value", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub ignore_value: bool,
    /// updates the key using its current lease
    #[arg(long = "ignore-lease", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub ignore_lease: bool,
    /// <key> <value>
    #[arg(value_name = "key")]
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct DelArgs {
    /// delete keys with matching prefix
    #[arg(long, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub prefix: bool,
    /// return deleted key-value pairs
    #[arg(long = "prev-kv", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub prev_kv: bool,
    /// delete keys that are greater than or equal to the given key using byte compare
    #[arg(long = "from-key", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub from_key: bool,
    /// <key> [range_end]
    #[arg(value_name = "key")]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CompactionArgs {
    /// 'true' to wait for compaction to physically remove all old revisions
    #[arg(long, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub physical: bool,
    /// <revision>
    #[arg(value_name = "revision")]
    pub args: Vec<String>,
}

/// The end of the range of keys starting with `key` (clientv3's
/// `GetPrefixRangeEnd`): `\0` (every key) when no such end exists.
pub fn prefix_range_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// `key` and `range_end` after `--prefix` / `--from-key` (an empty key with
/// either means every key).
fn key_range(
    key: &str,
    range_end: Option<&str>,
    prefix: bool,
    from_key: bool,
) -> (Vec<u8>, Vec<u8>) {
    let mut key = key.as_bytes().to_vec();
    let mut end = range_end.map(|e| e.as_bytes().to_vec()).unwrap_or_default();
    if prefix {
        if key.is_empty() {
            key = vec![0];
            end = vec![0];
        } else {
            end = prefix_range_end(&key);
        }
    }
    if from_key {
        if key.is_empty() {
            key = vec![0];
        }
        end = vec![0];
    }
    (key, end)
}

/// The Range request `get` sends (etcdctl's `getGetOp`).
pub fn range_request(a: &GetArgs) -> CtlResult<RangeRequest> {
    if a.args.is_empty() {
        return Err(CtlError::bad_args(
            "get command needs one argument as key and an optional argument as range_end",
        ));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    if a.keys_only && a.count_only {
        return Err(CtlError::bad_args(
            "`--keys-only` and `--count-only` cannot be set at the same time, choose one",
        ));
    }
    let serializable = match a.consistency.as_str() {
        "s" => true,
        "l" => false,
        other => {
            return Err(CtlError::bad_feature(format!(
                "unknown consistency flag {}",
                gofmt::duration::quote(other)
            )))
        }
    };
    if a.args.len() > 1 && (a.prefix || a.from_key) {
        return Err(CtlError::bad_args(
            "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
        ));
    }
    let sort_order = match a.order.to_uppercase().as_str() {
        "ASCEND" => SortOrder::Ascend,
        "DESCEND" => SortOrder::Descend,
        "" => SortOrder::None,
        _ => return Err(CtlError::bad_feature(format!("bad sort order {}", a.order))),
    };
    let sort_target = match a.sort_by.to_uppercase().as_str() {
        "CREATE" => SortTarget::Create,
        "KEY" | "" => SortTarget::Key,
        "MODIFY" => SortTarget::Mod,
        "VALUE" => SortTarget::Value,
        "VERSION" => SortTarget::Version,
        _ => {
            return Err(CtlError::bad_feature(format!(
                "bad sort target {}",
                a.sort_by
            )))
        }
    };
    let (key, range_end) = key_range(
        &a.args[0],
        a.args.get(1).map(String::as_str),
        a.prefix,
        a.from_key,
    );
    // clientv3's WithSort: ascending by key is the server's default order,
    // so it is sent as no sort at all.
    let (sort_order, sort_target) =
        if sort_target == SortTarget::Key && sort_order == SortOrder::Ascend {
            (SortOrder::None, SortTarget::Key)
        } else {
            (sort_order, sort_target)
        };
    Ok(RangeRequest {
        key,
        range_end,
        limit: a.limit,
        revision: a.rev.max(0),
        sort_order: sort_order as i32,
        sort_target: sort_target as i32,
        serializable,
        keys_only: a.keys_only,
        count_only: a.count_only,
        min_mod_revision: a.min_mod_rev,
        max_mod_revision: a.max_mod_rev,
        min_create_revision: a.min_create_rev,
        max_create_revision: a.max_create_rev,
    })
}

/// The Put request `put` sends (etcdctl's `getPutOp`); `stdin` supplies the
/// value when only the key is given.
pub fn put_request(a: &PutArgs, stdin: Option<&mut dyn Read>) -> CtlResult<PutRequest> {
    let needs =
        || CtlError::bad_args("put command needs 1 argument and input from stdin or 2 arguments");
    let Some(key) = a.args.first() else {
        return Err(needs());
    };
    if a.ignore_value && a.args.len() > 1 {
        return Err(CtlError::bad_args(
            "put command needs only 1 argument when 'ignore-value' is set",
        ));
    }
    let value = if a.ignore_value {
        Vec::new()
    } else if let Some(v) = a.args.get(1) {
        v.as_bytes().to_vec()
    } else {
        let mut buf = Vec::new();
        let read = stdin.map(|input| input.read_to_end(&mut buf).is_ok());
        if read != Some(true) || buf.is_empty() {
            return Err(needs());
        }
        buf
    };
    let lease = parse_int(&a.lease, 16)
        .map_err(|e| CtlError::bad_args(format!("bad lease ID ({e}), expecting ID in Hex")))?;
    Ok(PutRequest {
        key: key.as_bytes().to_vec(),
        value,
        lease,
        prev_kv: a.prev_kv,
        ignore_value: a.ignore_value,
        ignore_lease: a.ignore_lease,
    })
}

/// The DeleteRange request `del` sends (etcdctl's `getDelOp`).
pub fn delete_request(a: &DelArgs) -> CtlResult<DeleteRangeRequest> {
    if a.args.is_empty() || a.args.len() > 2 {
        return Err(CtlError::bad_args(
            "del command needs one argument as key and an optional argument as range_end",
        ));
    }
    if a.prefix && a.from_key {
        return Err(CtlError::bad_args(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    if a.args.len() > 1 && (a.prefix || a.from_key) {
        return Err(CtlError::bad_args(
            "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
        ));
    }
    let (key, range_end) = key_range(
        &a.args[0],
        a.args.get(1).map(String::as_str),
        a.prefix,
        a.from_key,
    );
    Ok(DeleteRangeRequest {
        key,
        range_end,
        prev_kv: a.prev_kv,
    })
}

pub async fn get(ctx: &Ctx, a: GetArgs) -> CtlResult {
    let request = range_request(&a)?;
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let resp = client.unary(client.kv().range(request)).await?;
    if a.count_only && printer.format != Format::Fields {
        return Err(CtlError::bad_args(
            "--count-only is only for `--write-out=fields`",
        ));
    }
    if a.print_value_only && printer.format != Format::Simple {
        return Err(CtlError::new(
            EXIT_BAD_ARGS,
            "print-value-only is only for `--write-out=simple`",
        ));
    }
    print_get(&printer, &resp, a.print_value_only)
}

pub async fn put(ctx: &Ctx, a: PutArgs) -> CtlResult {
    let request = put_request(&a, Some(&mut std::io::stdin()))?;
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    check_send_size(&request)?;
    let resp = client.unary(client.kv().put(request)).await?;
    print_put(&printer, &resp)
}

pub async fn del(ctx: &Ctx, a: DelArgs) -> CtlResult {
    let request = delete_request(&a)?;
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let resp = client.unary(client.kv().delete_range(request)).await?;
    print_del(&printer, &resp)
}

pub async fn compaction(ctx: &Ctx, a: CompactionArgs) -> CtlResult {
    let [rev] = a.args.as_slice() else {
        return Err(CtlError::bad_args("compaction command needs 1 argument"));
    };
    let revision = parse_int(rev, 10).map_err(CtlError::error)?;
    // etcdctl builds this command's client before reading --command-timeout.
    let client = ctx.client_env_timeout().await?;
    let request = CompactionRequest {
        revision,
        physical: a.physical,
    };
    client.unary(client.kv().compact(request)).await?;
    println!("compacted revision {revision}");
    Ok(())
}

/// etcdctl's `printKV`: the key (unless value-only), then the value.
pub fn print_kv(p: &Printer, value_only: bool, kv: &KeyValue) {
    if !value_only {
        println_bytes(&p.bytes(&kv.key));
    }
    println_bytes(&p.bytes(&kv.value));
}

/// The fields writer's header lines.
pub fn fields_header(h: Option<&ResponseHeader>) {
    let h = h.cloned().unwrap_or_default();
    println!("\"ClusterID\" : {}", h.cluster_id);
    println!("\"MemberID\" : {}", h.member_id);
    println!("\"Revision\" : {}", h.revision);
    println!("\"RaftTerm\" : {}", h.raft_term);
}

/// The fields writer's lines for a key-value, each name after `prefix`.
pub fn fields_kv(prefix: &str, kv: &KeyValue) {
    println!("\"{prefix}Key\" : {}", gofmt::quote::quote(&kv.key));
    println!("\"{prefix}CreateRevision\" : {}", kv.create_revision);
    println!("\"{prefix}ModRevision\" : {}", kv.mod_revision);
    println!("\"{prefix}Version\" : {}", kv.version);
    println!("\"{prefix}Value\" : {}", gofmt::quote::quote(&kv.value));
    println!("\"{prefix}Lease\" : {}", kv.lease);
}

pub fn print_get(p: &Printer, r: &RangeResponse, value_only: bool) -> CtlResult {
    match p.format {
        Format::Simple => {
            for kv in &r.kvs {
                print_kv(p, value_only, kv);
            }
        }
        Format::Json => print_json(&go_json(r, "etcdserverpb.RangeResponse")),
        Format::Protobuf => print_protobuf(r),
        Format::Fields => {
            fields_header(r.header.as_ref());
            for kv in &r.kvs {
                fields_kv("", kv);
            }
            println!("\"More\" : {}", r.more);
            println!("\"Count\" : {}", r.count);
        }
        Format::Table => return Err(p.unsupported()),
    }
    Ok(())
}

pub fn print_put(p: &Printer, r: &PutResponse) -> CtlResult {
    match p.format {
        Format::Simple => {
            println!("OK");
            if let Some(prev) = &r.prev_kv {
                print_kv(p, false, prev);
            }
        }
        Format::Json => print_json(&go_json(r, "etcdserverpb.PutResponse")),
        Format::Protobuf => print_protobuf(r),
        Format::Fields => {
            fields_header(r.header.as_ref());
            if let Some(prev) = &r.prev_kv {
                fields_kv("Prev", prev);
            }
        }
        Format::Table => return Err(p.unsupported()),
    }
    Ok(())
}

pub fn print_del(p: &Printer, r: &DeleteRangeResponse) -> CtlResult {
    match p.format {
        Format::Simple => {
            println!("{}", r.deleted);
            for kv in &r.prev_kvs {
                print_kv(p, false, kv);
            }
        }
        Format::Json => print_json(&go_json(r, "etcdserverpb.DeleteRangeResponse")),
        Format::Protobuf => print_protobuf(r),
        Format::Fields => {
            fields_header(r.header.as_ref());
            println!("\"Deleted\" : {}", r.deleted);
            for kv in &r.prev_kvs {
                fields_kv("Prev", kv);
            }
        }
        Format::Table => return Err(p.unsupported()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_range_end(b"foo"), b"fop");
        assert_eq!(prefix_range_end(b"a\xff"), b"b");
        assert_eq!(prefix_range_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn get_checks_arguments_as_etcdctl() {
        let err = range_request(&GetArgs::default()).unwrap_err();
        assert_eq!(err.code, 128);
        let a = GetArgs {
            args: vec!["a".into()],
            consistency: "x".into(),
            ..GetArgs::default()
        };
        assert_eq!(
            range_request(&a).unwrap_err().message,
            "unknown consistency flag \"x\""
        );
    }
}
