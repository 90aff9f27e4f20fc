//! Golden scripts: each file in `tests/testdata/` is a list of commands,
//! each followed by its expected output (lines starting with `> `). The
//! test runs the commands against a fresh store and compares the whole
//! text. Run with `UPDATE_GOLDEN=1` to rewrite the files after a reviewed
//! change.
//!
//! Commands (keys and values are text; `\0` is a zero byte, `-` empty):
//!
//! ```text
//! put KEY VALUE [lease=N] [prev_kv] [ignore_value] [ignore_lease]
//! del KEY [END] [prev_kv]
//! get KEY [END] [rev=N] [limit=N] [order=ASCEND|DESCEND]
//!     [target=KEY|VERSION|CREATE|MOD|VALUE] [keys_only] [count_only]
//!     [min_mod=N] [max_mod=N] [min_create=N] [max_create=N]
//! txn [COMPARE...] ? [OP ; OP ...] : [OP ; OP ...]
//!     COMPARE: version|create|mod|value|lease(KEY[..END])(=|!=|>|<)ARG
//!     OP: a put, del or get command as above
//! compact REV
//! batch                      following writes share one batch ...
//! commit [durable]           ... until this
//! reopen                     close and open the store again
//! status                     current and compact revision
//! ```
//!
//! Writes outside `batch` run in a batch of their own. Every write prints
//! its response and its events.

use std::fmt::Write as _;
use std::path::Path;

use api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use api::etcdserverpb::range_request::{SortOrder, SortTarget};
use api::etcdserverpb::request_op::Request;
use api::etcdserverpb::response_op::Response;
use api::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse,
    RequestOp, TxnRequest, TxnResponse,
};
use api::mvccpb::event::EventType;
use api::mvccpb::{Event, KeyValue};
use mvcc::{Store, StoreOptions, WriteBatch};

fn bytes(arg: &str) -> Vec<u8> {
    if arg == "-" {
        return Vec::new();
    }
    arg.replace("\\0", "\0").into_bytes()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace('\0', "\\0")
}

fn number(s: &str) -> i64 {
    s.parse().unwrap_or_else(|_| panic!("not a number: {s}"))
}

fn show_kv(kv: &KeyValue) -> String {
    let mut s = format!(
        "{}={} c={} m={} v={}",
        text(&kv.key),
        text(&kv.value),
        kv.create_revision,
        kv.mod_revision,
        kv.version
    );
    if kv.lease != 0 {
        write!(s, " lease={}", kv.lease).unwrap();
    }
    s
}

/// Splits `a=b` options from positional arguments.
fn split_args<'a>(args: &[&'a str]) -> (Vec<&'a str>, Vec<(&'a str, &'a str)>) {
    let mut positional = Vec::new();
    let mut options = Vec::new();
    for arg in args {
        match arg.split_once('=') {
            Some((name, value)) if !name.is_empty() => options.push((name, value)),
            _ if matches!(
                *arg,
                "prev_kv" | "ignore_value" | "ignore_lease" | "keys_only" | "count_only"
            ) =>
            {
                options.push((arg, ""))
            }
            _ => positional.push(*arg),
        }
    }
    (positional, options)
}

fn parse_put(args: &[&str]) -> PutRequest {
    let (pos, opts) = split_args(args);
    let mut req = PutRequest {
        key: bytes(pos[0]),
        value: pos.get(1).map(|v| bytes(v)).unwrap_or_default(),
        ..Default::default()
    };
    for (name, value) in opts {
        match name {
            "lease" => req.lease = number(value),
            "prev_kv" => req.prev_kv = true,
            "ignore_value" => req.ignore_value = true,
            "ignore_lease" => req.ignore_lease = true,
            _ => panic!("put: unknown option {name}"),
        }
    }
    req
}

fn parse_del(args: &[&str]) -> DeleteRangeRequest {
    let (pos, opts) = split_args(args);
    let mut req = DeleteRangeRequest {
        key: bytes(pos[0]),
        range_end: pos.get(1).map(|v| bytes(v)).unwrap_or_default(),
        ..Default::default()
    };
    for (name, _) in opts {
        match name {
            "prev_kv" => req.prev_kv = true,
            _ => panic!("del: unknown option {name}"),
        }
    }
    req
}

fn parse_get(args: &[&str]) -> RangeRequest {
    let (pos, opts) = split_args(args);
    let mut req = RangeRequest {
        key: bytes(pos[0]),
        range_end: pos.get(1).map(|v| bytes(v)).unwrap_or_default(),
        ..Default::default()
    };
    for (name, value) in opts {
        match name {
            "rev" => req.revision = number(value),
            "limit" => req.limit = number(value),
            "order" => req.sort_order = SortOrder::from_str_name(value).expect("order") as i32,
            "target" => req.sort_target = SortTarget::from_str_name(value).expect("target") as i32,
            "keys_only" => req.keys_only = true,
            "count_only" => req.count_only = true,
            "min_mod" => req.min_mod_revision = number(value),
            "max_mod" => req.max_mod_revision = number(value),
            "min_create" => req.min_create_revision = number(value),
            "max_create" => req.max_create_revision = number(value),
            _ => panic!("get: unknown option {name}"),
        }
    }
    req
}

fn parse_compare(s: &str) -> Compare {
    let (target, rest) = s.split_once('(').expect("compare: target(");
    let (range, rest) = rest.split_once(')').expect("compare: )");
    let (key, end) = range.split_once("..").unwrap_or((range, ""));
    let (result, arg) = if let Some(arg) = rest.strip_prefix("!=") {
        (CompareResult::NotEqual, arg)
    } else if let Some(arg) = rest.strip_prefix('=') {
        (CompareResult::Equal, arg)
    } else if let Some(arg) = rest.strip_prefix('>') {
        (CompareResult::Greater, arg)
    } else if let Some(arg) = rest.strip_prefix('<') {
        (CompareResult::Less, arg)
    } else {
        panic!("compare: operator in {s}")
    };
    let (target, union) = match target {
        "version" => (CompareTarget::Version, TargetUnion::Version(number(arg))),
        "create" => (
            CompareTarget::Create,
            TargetUnion::CreateRevision(number(arg)),
        ),
        "mod" => (CompareTarget::Mod, TargetUnion::ModRevision(number(arg))),
        "value" => (CompareTarget::Value, TargetUnion::Value(bytes(arg))),
        "lease" => (CompareTarget::Lease, TargetUnion::Lease(number(arg))),
        _ => panic!("compare: target {target}"),
    };
    Compare {
        result: result as i32,
        target: target as i32,
        key: bytes(key),
        range_end: bytes(end),
        target_union: Some(union),
    }
}

fn parse_ops(s: &str) -> Vec<RequestOp> {
    s.split(';')
        .map(str::trim)
        .filter(|op| !op.is_empty())
        .map(|op| {
            let words: Vec<&str> = op.split_whitespace().collect();
            let request = match words[0] {
                "put" => Request::RequestPut(parse_put(&words[1..])),
                "del" => Request::RequestDeleteRange(parse_del(&words[1..])),
                "get" => Request::RequestRange(parse_get(&words[1..])),
                other => panic!("txn: unknown op {other}"),
            };
            RequestOp {
                request: Some(request),
            }
        })
        .collect()
}

fn parse_txn(line: &str) -> TxnRequest {
    let (compares, rest) = line.split_once('?').expect("txn: ?");
    let (success, failure) = rest.split_once(':').unwrap_or((rest, ""));
    TxnRequest {
        compare: compares.split_whitespace().map(parse_compare).collect(),
        success: parse_ops(success),
        failure: parse_ops(failure),
    }
}

/// Prints a range response: `prefix` before its first line, `indent`
/// before each KeyValue.
fn show_range(out: &mut String, prefix: &str, indent: &str, resp: &RangeResponse) {
    let rev = resp.header.as_ref().map_or(0, |h| h.revision);
    writeln!(
        out,
        "{prefix}rev {rev} count {} more {}",
        resp.count, resp.more
    )
    .unwrap();
    for kv in &resp.kvs {
        writeln!(out, "{indent}{}", show_kv(kv)).unwrap();
    }
}

fn show_txn(out: &mut String, resp: &TxnResponse) {
    let rev = resp.header.as_ref().map_or(0, |h| h.revision);
    writeln!(out, "rev {rev} succeeded {}", resp.succeeded).unwrap();
    for op in &resp.responses {
        match &op.response {
            Some(Response::ResponseRange(r)) => show_range(out, "  get: ", "    ", r),
            Some(Response::ResponsePut(r)) => {
                let rev = r.header.as_ref().map_or(0, |h| h.revision);
                writeln!(out, "  put: rev {rev}").unwrap();
            }
            Some(Response::ResponseDeleteRange(r)) => {
                let rev = r.header.as_ref().map_or(0, |h| h.revision);
                writeln!(out, "  del: rev {rev} deleted {}", r.deleted).unwrap();
            }
            Some(Response::ResponseTxn(_)) => writeln!(out, "  txn").unwrap(),
            None => writeln!(out, "  (empty)").unwrap(),
        }
    }
}

fn show_events(out: &mut String, events: &[Event]) {
    for event in events {
        let kind = EventType::try_from(event.r#type).map_or("?", |t| t.as_str_name());
        let kv = event.kv.as_ref().map(show_kv).unwrap_or_default();
        writeln!(out, "event {kind} {kv}").unwrap();
    }
}

/// Runs one write command in `batch`, printing its outcome.
fn write(out: &mut String, batch: &mut WriteBatch<'_>, cmd: &str, args: &[&str], line: &str) {
    let result = match cmd {
        "put" => batch.put(&parse_put(args)).map(|(resp, events)| {
            let rev = resp.header.as_ref().map_or(0, |h| h.revision);
            writeln!(out, "rev {rev}").unwrap();
            if let Some(prev) = &resp.prev_kv {
                writeln!(out, "prev {}", show_kv(prev)).unwrap();
            }
            show_events(out, &events);
        }),
        "del" => batch.delete_range(&parse_del(args)).map(|(resp, events)| {
            let rev = resp.header.as_ref().map_or(0, |h| h.revision);
            writeln!(out, "rev {rev} deleted {}", resp.deleted).unwrap();
            for prev in &resp.prev_kvs {
                writeln!(out, "prev {}", show_kv(prev)).unwrap();
            }
            show_events(out, &events);
        }),
        "txn" => batch
            .txn(&parse_txn(line.trim_start_matches("txn")))
            .map(|(resp, events)| {
                show_txn(out, &resp);
                show_events(out, &events);
            }),
        "compact" => batch
            .compact(&CompactionRequest {
                revision: number(args[0]),
                physical: false,
            })
            .map(|resp| {
                let rev = resp.header.as_ref().map_or(0, |h| h.revision);
                writeln!(out, "rev {rev}").unwrap();
            }),
        _ => panic!("unknown command {cmd}"),
    };
    if let Err(e) = result {
        writeln!(out, "error: {e}").unwrap();
    }
}

fn run_script(script: &str, dir: &Path) -> String {
    let path = dir.join("member/snap/db");
    let mut store = Some(Store::open(&path, StoreOptions::default()).unwrap());
    let mut out = String::new();
    let lines = script.lines().filter(|l| !l.starts_with("> "));
    // Commands between `batch` and `commit`, run when the commit comes.
    let mut pending: Option<Vec<String>> = None;
    for line in lines {
        out.push_str(line);
        out.push('\n');
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        let (cmd, args) = (words[0], &words[1..]);
        let s = store.as_ref().unwrap();
        let mut buf = String::new();
        match cmd {
            "batch" => pending = Some(Vec::new()),
            "put" | "del" | "txn" | "compact" if pending.is_some() => {
                pending.as_mut().unwrap().push(trimmed.to_string());
                buf.push_str("(batched)\n");
            }
            "put" | "del" | "txn" | "compact" => {
                let mut batch = s.write_batch().unwrap();
                write(&mut buf, &mut batch, cmd, args, trimmed);
                batch.commit(false).unwrap();
            }
            "commit" => {
                let mut batch = s.write_batch().unwrap();
                for queued in pending.take().expect("commit without batch") {
                    let words: Vec<&str> = queued.split_whitespace().collect();
                    writeln!(buf, "{queued}:").unwrap();
                    write(&mut buf, &mut batch, words[0], &words[1..], &queued);
                }
                batch.commit(args.first() == Some(&"durable")).unwrap();
            }
            "get" => match s.range(&parse_get(args)) {
                Ok(resp) => show_range(&mut buf, "", "  ", &resp),
                Err(e) => writeln!(buf, "error: {e}").unwrap(),
            },
            "reopen" => {
                drop(store.take());
                store = Some(Store::open(&path, StoreOptions::default()).unwrap());
            }
            "status" => writeln!(
                buf,
                "current {} compact {}",
                s.current_revision(),
                s.compact_revision()
            )
            .unwrap(),
            _ => panic!("unknown command {cmd}"),
        }
        for output in buf.lines() {
            writeln!(out, "> {output}").unwrap();
        }
    }
    out
}

#[test]
fn golden_scripts() {
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut names: Vec<_> = std::fs::read_dir(&testdata)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for file in names {
        let script = std::fs::read_to_string(&file).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let got = run_script(&script, dir.path());
        if update {
            std::fs::write(&file, &got).unwrap();
        } else {
            assert_eq!(
                got,
                script,
                "{} differs; rerun with UPDATE_GOLDEN=1 and review the diff",
                file.display()
            );
        }
    }
}
