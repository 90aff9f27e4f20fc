//! `txn`: compares, then success requests, then failure requests, read from
//! stdin one per line, each block ended by an empty line (with `-i`, under
//! prompts). Requests are `get`, `put` and `del` command lines.

use std::io::BufRead;

use clap::{Args, Parser};

use api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use api::etcdserverpb::request_op::Request;
use api::etcdserverpb::response_op::Response;
use api::etcdserverpb::{Compare, RequestOp, TxnRequest, TxnResponse};

use crate::cmd::kv::{self, DelArgs, GetArgs, PutArgs};
use crate::cmd::Ctx;
use crate::error::{CtlError, CtlResult, EXIT_INVALID_INPUT};
use crate::global::{parse_go_bool, parse_int};
use crate::output::{go_json, print_json, print_protobuf, Format, Printer};

#[derive(Args, Debug)]
pub struct TxnArgs {
    /// Input transaction in interactive mode
    #[arg(short = 'i', long, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub interactive: bool,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

pub async fn run(ctx: &Ctx, a: TxnArgs) -> CtlResult {
    if !a.args.is_empty() {
        return Err(CtlError::bad_args("txn command does not accept argument"));
    }
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let prompt = |s: &str| {
        if a.interactive {
            println!("{s}");
        }
    };
    prompt("compares:");
    let compare = read_compares(&mut input)?;
    prompt("success requests (get, put, del):");
    let success = read_ops(&mut input)?;
    prompt("failure requests (get, put, del):");
    let failure = read_ops(&mut input)?;
    let request = TxnRequest {
        compare,
        success,
        failure,
    };
    crate::client::check_send_size(&request)?;
    let resp = client.unary(client.kv().txn(request)).await?;
    print_txn(&printer, &resp)
}

/// One line, trimmed; Go's `ReadString('\n')` fails with `EOF` when the
/// input ends before a newline.
fn read_line(input: &mut dyn BufRead) -> CtlResult<String> {
    let mut buf = Vec::new();
    match input.read_until(b'\n', &mut buf) {
        Ok(_) if buf.last() == Some(&b'\n') => Ok(String::from_utf8_lossy(&buf).trim().to_string()),
        Ok(_) => Err(CtlError::new(EXIT_INVALID_INPUT, "EOF")),
        Err(e) => Err(CtlError::new(EXIT_INVALID_INPUT, e.to_string())),
    }
}

fn read_compares(input: &mut dyn BufRead) -> CtlResult<Vec<Compare>> {
    let mut out = Vec::new();
    loop {
        let line = read_line(input)?;
        if line.is_empty() {
            return Ok(out);
        }
        out.push(parse_compare(&line).map_err(|e| CtlError::new(EXIT_INVALID_INPUT, e))?);
    }
}

fn read_ops(input: &mut dyn BufRead) -> CtlResult<Vec<RequestOp>> {
    let mut out = Vec::new();
    loop {
        let line = read_line(input)?;
        if line.is_empty() {
            return Ok(out);
        }
        out.push(parse_op(&line)?);
    }
}

/// A txn request line, parsed as the command it names.
#[derive(Parser, Debug)]
#[command(no_binary_name = true, disable_help_subcommand = true)]
enum OpLine {
    Get(GetArgs),
    Put(PutArgs),
    Del(DelArgs),
}

fn parse_op(line: &str) -> CtlResult<RequestOp> {
    let args = argify(line).map_err(|e| CtlError::new(EXIT_INVALID_INPUT, e))?;
    if args.len() < 2 {
        return Err(CtlError::new(
            EXIT_INVALID_INPUT,
            format!("invalid txn compare request: {line}"),
        ));
    }
    let op = OpLine::try_parse_from(&args)
        .map_err(|_| CtlError::new(EXIT_INVALID_INPUT, format!("invalid txn request: {line}")))?;
    let request = match op {
        OpLine::Get(a) => Request::RequestRange(kv::range_request(&a)?),
        OpLine::Put(a) => Request::RequestPut(kv::put_request(&a, None)?),
        OpLine::Del(a) => Request::RequestDeleteRange(kv::delete_request(&a)?),
    };
    Ok(RequestOp {
        request: Some(request),
    })
}

/// Splits a line into words as etcdctl's `argify`: double-quoted words are
/// unquoted as Go string literals, single-quoted ones taken as they are.
pub fn argify(s: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            if i >= chars.len() {
                // No closing quote: the regexp matches nothing here; skip the quote.
                i = start + 1;
                continue;
            }
            let literal: String = chars[start..=i].iter().collect();
            out.push(unquote(&literal)?);
            i += 1;
        } else if c == '\'' {
            match chars[i + 1..].iter().position(|&c| c == '\'') {
                Some(len) => {
                    out.push(chars[i + 1..i + 1 + len].iter().collect());
                    i += len + 2;
                }
                None => i += 1,
            }
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        }
    }
    Ok(out)
}

/// A Go double-quoted string literal's value.
fn unquote(lit: &str) -> Result<String, String> {
    let inner = lit
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .ok_or_else(|| "invalid syntax".to_string())?;
    let mut out = Vec::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let esc = chars.next().ok_or("invalid syntax")?;
        match esc {
            'n' => out.push(b'\n'),
            't' => out.push(b'\t'),
            'r' => out.push(b'\r'),
            'a' => out.push(7),
            'b' => out.push(8),
            'f' => out.push(12),
            'v' => out.push(11),
            '\\' => out.push(b'\\'),
            '"' => out.push(b'"'),
            '\'' => out.push(b'\''),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).map_err(|_| "invalid syntax")?);
            }
            'u' | 'U' => {
                let n = if esc == 'u' { 4 } else { 8 };
                let hex: String = chars.by_ref().take(n).collect();
                let code = u32::from_str_radix(&hex, 16).map_err(|_| "invalid syntax")?;
                let c = char::from_u32(code).ok_or("invalid syntax")?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => return Err("invalid syntax".into()),
        }
    }
    String::from_utf8(out).map_err(|_| "invalid syntax".to_string())
}

/// Reads a Go-quoted string at the start of `s`; the value and the rest.
fn scan_quoted(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    let rest = s.strip_prefix('"')?;
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => {
                let value = unquote(&s[..i + 2]).ok()?;
                return Some((value, &rest[i + 1..]));
            }
            _ => {}
        }
    }
    None
}

/// `mod("key") > "5"`, `value("k") = "v"`, `lease("k") = "694d…"` …
pub fn parse_compare(line: &str) -> Result<Compare, String> {
    let Some((target, rest)) = line.split_once('(') else {
        return Err(format!("malformed comparison: {line}"));
    };
    let parsed = scan_quoted(rest).and_then(|(key, rest)| {
        let rest = rest.strip_prefix(')')?.trim_start();
        let (op, rest) = rest.split_once(char::is_whitespace)?;
        let (val, _) = scan_quoted(rest)?;
        Some((key, op.to_string(), val))
    });
    let Some((key, op, val)) = parsed else {
        return Err(format!("malformed comparison: {line}"));
    };
    let result = match op.as_str() {
        "=" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        "<" => CompareResult::Less,
        ">" => CompareResult::Greater,
        _ => return Err(format!("malformed comparison: {line} (unknown op {op})")),
    };
    let number = |base: u32| {
        parse_int(&val, base).map_err(|e| format!("invalid txn compare request: {line} ({e})"))
    };
    let (target, union) = match target {
        "ver" | "version" => (CompareTarget::Version, TargetUnion::Version(number(10)?)),
        "c" | "create" => (
            CompareTarget::Create,
            TargetUnion::CreateRevision(number(10)?),
        ),
        "m" | "mod" => (CompareTarget::Mod, TargetUnion::ModRevision(number(10)?)),
        "val" | "value" => (
            CompareTarget::Value,
            TargetUnion::Value(val.clone().into_bytes()),
        ),
        "lease" => (CompareTarget::Lease, TargetUnion::Lease(number(16)?)),
        _ => {
            return Err(format!(
                "malformed comparison: {line} (unknown target {target})"
            ))
        }
    };
    Ok(Compare {
        result: result as i32,
        target: target as i32,
        key: key.into_bytes(),
        range_end: Vec::new(),
        target_union: Some(union),
    })
}

pub fn print_txn(p: &Printer, r: &TxnResponse) -> CtlResult {
    match p.format {
        Format::Simple => {
            println!("{}", if r.succeeded { "SUCCESS" } else { "FAILURE" });
            for op in &r.responses {
                println!();
                print_sub(p, op.response.as_ref())?;
            }
        }
        Format::Fields => {
            kv::fields_header(r.header.as_ref());
            println!("\"Succeeded\" : {}", r.succeeded);
            for op in &r.responses {
                print_sub(p, op.response.as_ref())?;
            }
        }
        Format::Json => print_json(&go_json(r, "etcdserverpb.TxnResponse")),
        Format::Protobuf => print_protobuf(r),
        Format::Table => return Err(p.unsupported()),
    }
    Ok(())
}

fn print_sub(p: &Printer, r: Option<&Response>) -> CtlResult {
    match r {
        Some(Response::ResponseRange(r)) => kv::print_get(p, r, false),
        Some(Response::ResponsePut(r)) => kv::print_put(p, r),
        Some(Response::ResponseDeleteRange(r)) => kv::print_del(p, r),
        Some(Response::ResponseTxn(r)) => print_txn(p, r),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argify_splits_like_etcdctl() {
        assert_eq!(
            argify(r#"put "a b" 'c d' e"#).unwrap(),
            vec!["put", "a b", "c d", "e"]
        );
        assert_eq!(argify(r#"put k "x\ny""#).unwrap(), vec!["put", "k", "x\ny"]);
    }

    #[test]
    fn compares() {
        let c = parse_compare(r#"mod("key1") > "0""#).unwrap();
        assert_eq!(c.key, b"key1");
        assert_eq!(c.target_union, Some(TargetUnion::ModRevision(0)));
        assert_eq!(c.result, CompareResult::Greater as i32);
        let c = parse_compare(r#"val("k") = "v w""#).unwrap();
        assert_eq!(c.target_union, Some(TargetUnion::Value(b"v w".to_vec())));
        assert!(parse_compare("bogus")
            .unwrap_err()
            .starts_with("malformed comparison"));
        assert!(parse_compare(r#"ver("k") = "x""#)
            .unwrap_err()
            .starts_with("invalid txn compare request"));
    }
}
