//! `watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]`
//! and `watch -i`, which reads `watch …` and `progress` lines from stdin.
//!
//! Arguments are sorted out as etcdctl's `parseWatchArgs` does: cobra has
//! already dropped `--`, so the raw command line tells where the exec
//! command starts; `ETCDCTL_WATCH_KEY` / `ETCDCTL_WATCH_RANGE_END` stand in
//! for the key and range end (and conflict with a key given as well). Each
//! event runs the exec command with `ETCD_WATCH_*` set to Go-quoted values.
//!
//! A watch that ends (a compaction, a refused create, a server-side cancel)
//! ends `watch` with exit code 5; in interactive mode it only ends that
//! watch, and the end of stdin ends `watch -i` (exit code 3).

use std::io::BufRead;

use clap::Args;
use serde_json::{Map, Value as Json};
use tokio::sync::mpsc;

use api::etcdserverpb::{ResponseHeader, WatchResponse as PbWatchResponse};

use crate::cmd::kv::{fields_header, fields_kv, prefix_range_end, print_kv};
use crate::cmd::txn::argify;
use crate::cmd::Ctx;
use crate::error::{CtlError, CtlResult, EXIT_INTERRUPTED, EXIT_INVALID_INPUT};
use crate::global::{parse_go_bool, parse_go_i64, parse_int};
use crate::goexec;
use crate::output::{go_json, print_json, print_protobuf, Format, Printer};
use crate::watcher::{WatchChan, WatchResponse, WatchSpec, Watcher};

const BAD_ARGS_NUM: &str = "bad number of arguments";
const BAD_ARGS_CONFLICT_ENV: &str = "bad number of arguments (found conflicting environment key)";
const BAD_ARGS_SEPARATOR: &str = "bad number of arguments (found separator --, but no commands)";

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Interactive mode
    #[arg(short = 'i', long, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub interactive: bool,
    /// Watch on a prefix if prefix is set
    #[arg(long, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub prefix: bool,
    /// Revision to start watching
    #[arg(long, default_value = "0", value_parser = parse_go_i64)]
    pub rev: i64,
    /// get the previous key-value pair before the event happens
    #[arg(long = "prev-kv", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub prev_kv: bool,
    /// get periodic watch progress notification from server
    #[arg(long = "progress-notify", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub progress_notify: bool,
    /// [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]
    #[arg(value_name = "key")]
    pub args: Vec<String>,
}

/// The watch flags, from the command line or from an interactive line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchFlags {
    pub prefix: bool,
    pub rev: i64,
    pub prev_kv: bool,
    pub progress_notify: bool,
}

pub async fn run(ctx: &Ctx, a: WatchArgs) -> CtlResult {
    let env_key = std::env::var("ETCDCTL_WATCH_KEY").unwrap_or_default();
    let env_range = std::env::var("ETCDCTL_WATCH_RANGE_END").unwrap_or_default();
    if env_key.is_empty() && !env_range.is_empty() {
        return Err(CtlError::bad_args(format!(
            "ETCDCTL_WATCH_KEY is empty but got ETCDCTL_WATCH_RANGE_END={}",
            gofmt::quote::quote(env_range.as_bytes())
        )));
    }
    if a.interactive {
        let printer = ctx.printer()?;
        return interactive(ctx, printer, &env_key, &env_range).await;
    }
    let os_args: Vec<String> = std::env::args().collect();
    let parsed = parse_watch_args(&os_args, &a.args, &env_key, &env_range, false)
        .map_err(CtlError::bad_args)?;
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let flags = WatchFlags {
        prefix: a.prefix,
        rev: a.rev,
        prev_kv: a.prev_kv,
        progress_notify: a.progress_notify,
    };
    let spec = watch_spec(&parsed.watch_args, &flags).map_err(CtlError::bad_args)?;
    let watcher = Watcher::new(&client);
    let responses = watcher.watch(spec).await;
    print_watch_chan(printer, responses, &parsed.exec_args).await?;
    Err(CtlError::new(
        EXIT_INTERRUPTED,
        "watch is canceled by the server",
    ))
}

async fn interactive(ctx: &Ctx, printer: Printer, env_key: &str, env_range: &str) -> CtlResult {
    let client = ctx.client().await?;
    let watcher = Watcher::new(&client);
    let os_args: Vec<String> = std::env::args().collect();
    let mut lines = stdin_lines();
    loop {
        let line = match lines.recv().await {
            Some(Ok(line)) => line,
            Some(Err(e)) => {
                return Err(CtlError::new(
                    EXIT_INVALID_INPUT,
                    format!("error reading watch request line: {e}"),
                ))
            }
            None => {
                return Err(CtlError::new(
                    EXIT_INVALID_INPUT,
                    "error reading watch request line: EOF",
                ))
            }
        };
        let args = argify(&line).map_err(|e| CtlError::new(EXIT_INVALID_INPUT, e))?;
        match args.first().map(String::as_str) {
            None => eprintln!("Invalid command: {line} (watch and progress supported)"),
            Some("watch") => {
                if args.len() < 2 && env_key.is_empty() {
                    eprintln!("Invalid command {line} (command type or key is not provided)");
                    continue;
                }
                let parsed = parse_watch_args(&os_args, &args, env_key, env_range, true)
                    .map_err(CtlError::bad_args)?;
                let flags = parsed.flags.clone().unwrap_or_default();
                let spec = match watch_spec(&parsed.watch_args, &flags) {
                    Ok(spec) => spec,
                    Err(e) => {
                        eprintln!("Invalid command {line} ({e})");
                        continue;
                    }
                };
                let responses = watcher.watch(spec).await;
                let exec_args = parsed.exec_args;
                tokio::spawn(async move {
                    if let Err(e) = print_watch_chan(printer, responses, &exec_args).await {
                        e.exit_now();
                    }
                });
            }
            Some("progress") => watcher.request_progress(),
            Some(_) => eprintln!("Invalid command {line} (only support watch)"),
        }
    }
}

/// Lines of stdin without their `\n`; an error (`EOF` for input that ends,
/// even mid-line, as Go's `ReadString`) ends the channel.
fn stdin_lines() -> mpsc::UnboundedReceiver<Result<String, String>> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        loop {
            let mut buf = Vec::new();
            let line = match input.read_until(b'\n', &mut buf) {
                Ok(_) if buf.last() == Some(&b'\n') => {
                    buf.pop();
                    Ok(String::from_utf8_lossy(&buf).into_owned())
                }
                Ok(_) => Err("EOF".to_string()),
                Err(e) => Err(e.to_string()),
            };
            let failed = line.is_err();
            if tx.send(line).is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// The outcome of etcdctl's `parseWatchArgs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedWatch {
    /// Key and range end (more are ignored, as etcdctl does).
    pub watch_args: Vec<String>,
    pub exec_args: Vec<String>,
    /// The line's own flags (interactive mode).
    pub flags: Option<WatchFlags>,
}

/// etcdctl's `parseWatchArgs`: `os_args` is the whole command line,
/// `command_args` what cobra left of it (or the interactive line's words).
pub fn parse_watch_args(
    os_args: &[String],
    command_args: &[String],
    env_key: &str,
    env_range: &str,
    interactive: bool,
) -> Result<ParsedWatch, String> {
    let mut raw: &[String] = os_args;
    if let Some(at) = raw.iter().position(|a| a == "watch") {
        raw = &raw[at + 1..];
    }
    let mut watch_args: Vec<String> = command_args.to_vec();
    let mut flags = None;
    let args_with_sep: Vec<String>;
    if interactive {
        if watch_args.first().map(String::as_str) != Some("watch") {
            return Err("args[0] must be 'watch' for interactive calls".into());
        }
        watch_args.remove(0);
        let sep = watch_args.iter().position(|a| a == "--");
        if sep.is_some() && sep == watch_args.len().checked_sub(1) {
            return Err(BAD_ARGS_SEPARATOR.into());
        }
        let (_, positional) = parse_line_flags(&watch_args)?;
        if sep.is_none() && env_key.is_empty() && positional.is_empty() {
            return Err(BAD_ARGS_NUM.into());
        }
        if sep.is_none() && !positional.is_empty() && !env_key.is_empty() {
            return Err(BAD_ARGS_CONFLICT_ENV.into());
        }
        args_with_sep = watch_args.clone();
        let (line_flags, positional) = parse_line_flags(&args_with_sep)?;
        flags = Some(line_flags);
        watch_args = positional;
    } else {
        let sep = raw.iter().position(|a| a == "--");
        if sep.is_some() && sep == raw.len().checked_sub(1) {
            return Err(BAD_ARGS_SEPARATOR.into());
        }
        if sep.is_none() && raw.is_empty() && env_key.is_empty() {
            return Err(BAD_ARGS_NUM.into());
        }
        if let (Some(exec_at), false) = (sep, env_key.is_empty()) {
            // Match cobra's words to the raw line from the end; a word
            // left over before the separator is a key given beside the
            // environment's.
            let mut r = raw.len() as isize - 1;
            for w in watch_args.iter().rev() {
                if r >= 0 && *w == raw[r as usize] {
                    r -= 1;
                    continue;
                }
                if r == exec_at as isize {
                    return Err(BAD_ARGS_CONFLICT_ENV.into());
                }
            }
        }
        if sep.is_none() && !watch_args.is_empty() && !env_key.is_empty() {
            return Err(BAD_ARGS_CONFLICT_ENV.into());
        }
        args_with_sep = raw.to_vec();
    }
    let sep = args_with_sep.iter().position(|a| a == "--");
    let exec_args = match sep {
        Some(at) => args_with_sep[at + 1..].to_vec(),
        None => Vec::new(),
    };
    if !env_key.is_empty() {
        let mut ranges = vec![env_key.to_string()];
        if !env_range.is_empty() {
            ranges.push(env_range.to_string());
        }
        ranges.extend(watch_args);
        watch_args = ranges;
    }
    if let Some(first_exec) = exec_args.first() {
        // cobra's words run on into the exec command: cut them where it starts.
        let end = watch_args
            .iter()
            .rposition(|a| a == first_exec)
            .unwrap_or(0);
        watch_args.truncate(end);
    }
    Ok(ParsedWatch {
        watch_args,
        exec_args,
        flags,
    })
}

/// The watch flags of an interactive line, parsed as pflag parses them;
/// the words left are the positional ones (everything after `--` too).
pub fn parse_line_flags(words: &[String]) -> Result<(WatchFlags, Vec<String>), String> {
    let mut flags = WatchFlags::default();
    let mut positional = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        i += 1;
        if word == "--" {
            positional.extend(words[i..].iter().cloned());
            break;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let flag = format!("--{name}");
            match name {
                "help" => return Err("pflag: help requested".into()),
                "rev" => {
                    let value = match value {
                        Some(v) => v,
                        None if i < words.len() => {
                            i += 1;
                            words[i - 1].clone()
                        }
                        None => return Err(format!("flag needs an argument: {flag}")),
                    };
                    flags.rev = parse_int(&value, 10).map_err(|e| invalid(&value, &flag, &e))?;
                }
                "prefix" | "prev-kv" | "progress-notify" | "interactive" => {
                    let value = value.unwrap_or_else(|| "true".into());
                    let on = parse_go_bool(&value).map_err(|e| invalid(&value, &flag, &e))?;
                    match name {
                        "prefix" => flags.prefix = on,
                        "prev-kv" => flags.prev_kv = on,
                        "progress-notify" => flags.progress_notify = on,
                        _ => {}
                    }
                }
                _ => return Err(format!("unknown flag: {flag}")),
            }
            continue;
        }
        if word.len() > 1 && word.starts_with('-') {
            let shorts = &word[1..];
            for (at, c) in shorts.char_indices() {
                match c {
                    'h' => return Err("pflag: help requested".into()),
                    'i' => {
                        let rest = &shorts[at + c.len_utf8()..];
                        if let Some(value) = rest.strip_prefix('=') {
                            parse_go_bool(value)
                                .map_err(|e| invalid(value, "-i, --interactive", &e))?;
                            break;
                        }
                    }
                    other => {
                        return Err(format!("unknown shorthand flag: '{other}' in {word}"));
                    }
                }
            }
            continue;
        }
        positional.push(word.clone());
    }
    Ok((flags, positional))
}

fn invalid(value: &str, flag: &str, reason: &str) -> String {
    format!(
        "invalid argument {} for {} flag: {reason}",
        gofmt::quote::quote(value.as_bytes()),
        gofmt::quote::quote(flag.as_bytes())
    )
}

/// etcdctl's `getWatchChan` options: key, range end or prefix, revision.
pub fn watch_spec(args: &[String], flags: &WatchFlags) -> Result<WatchSpec, String> {
    let Some(key) = args.first() else {
        return Err(BAD_ARGS_NUM.into());
    };
    let mut key = key.as_bytes().to_vec();
    let mut range_end = Vec::new();
    if args.len() == 2 {
        if flags.prefix {
            return Err("`range_end` and `--prefix` are mutually exclusive".into());
        }
        range_end = args[1].as_bytes().to_vec();
    }
    if flags.prefix {
        if key.is_empty() {
            key = vec![0];
            range_end = vec![0];
        } else {
            range_end = prefix_range_end(&key);
        }
    }
    Ok(WatchSpec {
        key,
        range_end,
        start_revision: flags.rev,
        prev_kv: flags.prev_kv,
        progress_notify: flags.progress_notify,
    })
}

/// etcdctl's `printWatchCh`: each response printed (with the cancel reason
/// and progress lines), then the exec command run once per event.
async fn print_watch_chan(
    printer: Printer,
    mut responses: WatchChan,
    exec: &[String],
) -> CtlResult {
    while let Some(resp) = responses.recv().await {
        if resp.canceled {
            eprintln!("watch was canceled ({})", resp.err().unwrap_or_default());
        }
        if resp.is_progress_notify() {
            println!("progress notify: {}", resp.header.revision);
        }
        print_watch(&printer, &resp)?;
        if exec.is_empty() {
            continue;
        }
        for ev in resp.events() {
            let kv = ev.kv.clone().unwrap_or_default();
            let kind = event_type(ev.r#type);
            let env = vec![
                (
                    "ETCD_WATCH_REVISION".to_string(),
                    resp.header.revision.to_string(),
                ),
                (
                    "ETCD_WATCH_EVENT_TYPE".to_string(),
                    gofmt::quote::quote(kind.as_bytes()),
                ),
                ("ETCD_WATCH_KEY".to_string(), gofmt::quote::quote(&kv.key)),
                (
                    "ETCD_WATCH_VALUE".to_string(),
                    gofmt::quote::quote(&kv.value),
                ),
            ];
            let args = exec.to_vec();
            let ran = tokio::task::spawn_blocking(move || goexec::run(&args, &env, false)).await;
            let failure = match ran {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.text,
                Err(e) => e.to_string(),
            };
            eprintln!("command {} error ({failure})", goexec::quote_args(exec));
            std::process::exit(1);
        }
    }
    Ok(())
}

/// `mvccpb.Event_EventType.String()`.
fn event_type(t: i32) -> String {
    match t {
        0 => "PUT".to_string(),
        1 => "DELETE".to_string(),
        other => other.to_string(),
    }
}

/// One watch response in the chosen writer.
pub fn print_watch(p: &Printer, r: &WatchResponse) -> CtlResult {
    // One response's lines stay together when several watches print.
    let stdout = std::io::stdout();
    let _lines = stdout.lock();
    match p.format {
        Format::Simple => {
            for ev in r.events() {
                println!("{}", event_type(ev.r#type));
                if let Some(prev) = &ev.prev_kv {
                    print_kv(p, false, prev);
                }
                print_kv(p, false, &ev.kv.clone().unwrap_or_default());
            }
        }
        Format::Json => print_json(&watch_json(r)),
        Format::Fields => {
            fields_header(Some(&r.header));
            for ev in r.events() {
                println!("\"Type\" : {}", event_type(ev.r#type));
                if let Some(prev) = &ev.prev_kv {
                    fields_kv("Prev", prev);
                }
                fields_kv("", &ev.kv.clone().unwrap_or_default());
            }
        }
        Format::Protobuf => print_protobuf(&PbWatchResponse {
            header: Some(r.header),
            events: r.events().to_vec(),
            compact_revision: r.compact_revision,
            canceled: r.canceled,
            created: r.created,
            ..PbWatchResponse::default()
        }),
        Format::Table => return Err(p.unsupported()),
    }
    Ok(())
}

/// Go's `encoding/json` of `clientv3.WatchResponse`: its exported fields
/// by their Go names, the header always present.
fn watch_json(r: &WatchResponse) -> Json {
    let mut m = Map::new();
    m.insert("Header".into(), header_json(&r.header));
    let events = match &r.events {
        Some(events) => Json::Array(
            events
                .iter()
                .map(|ev| go_json(ev, "mvccpb.Event"))
                .collect(),
        ),
        None => Json::Null,
    };
    m.insert("Events".into(), events);
    m.insert("CompactRevision".into(), Json::from(r.compact_revision));
    m.insert("Canceled".into(), Json::from(r.canceled));
    m.insert("Created".into(), Json::from(r.created));
    Json::Object(m)
}

fn header_json(h: &ResponseHeader) -> Json {
    match go_json(h, "etcdserverpb.ResponseHeader") {
        Json::Null => Json::Object(Map::new()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn parse(os: &str, cobra: &str, env_key: &str) -> Result<ParsedWatch, String> {
        parse_watch_args(&words(os), &words(cobra), env_key, "", false)
    }

    #[test]
    fn exec_commands_follow_the_separator() {
        let p = parse("etcdctl watch foo -- echo hi", "foo echo hi", "").unwrap();
        assert_eq!(p.watch_args, words("foo"));
        assert_eq!(p.exec_args, words("echo hi"));
        let p = parse(
            "etcdctl watch foo --rev 1 bar -- echo hi",
            "foo bar echo hi",
            "",
        )
        .unwrap();
        assert_eq!(p.watch_args, words("foo bar"));
        assert_eq!(
            parse("etcdctl watch foo bar --", "foo bar", "").unwrap_err(),
            BAD_ARGS_SEPARATOR
        );
        assert_eq!(parse("etcdctl watch", "", "").unwrap_err(), BAD_ARGS_NUM);
    }

    #[test]
    fn the_environment_key_conflicts_with_a_key_argument() {
        let p = parse("etcdctl watch -- echo hi", "echo hi", "k").unwrap();
        assert_eq!(p.watch_args, words("k"));
        assert_eq!(p.exec_args, words("echo hi"));
        assert_eq!(
            parse("etcdctl watch foo -- echo hi", "foo echo hi", "k").unwrap_err(),
            BAD_ARGS_CONFLICT_ENV
        );
        assert_eq!(
            parse("etcdctl watch foo", "foo", "k").unwrap_err(),
            BAD_ARGS_CONFLICT_ENV
        );
        let p = parse("etcdctl watch --prefix", "", "k").unwrap();
        assert_eq!(p.watch_args, words("k"));
    }

    #[test]
    fn interactive_lines_carry_their_own_flags() {
        let p = parse_watch_args(&[], &words("watch --prefix k --rev=3"), "", "", true).unwrap();
        assert_eq!(p.watch_args, words("k"));
        assert_eq!(
            p.flags,
            Some(WatchFlags {
                prefix: true,
                rev: 3,
                ..WatchFlags::default()
            })
        );
        let p = parse_watch_args(&[], &words("watch k -- sh -c x"), "", "", true).unwrap();
        assert_eq!(p.watch_args, words("k"));
        assert_eq!(p.exec_args, words("sh -c x"));
        assert_eq!(
            parse_watch_args(&[], &words("watch k --bogus"), "", "", true).unwrap_err(),
            "unknown flag: --bogus"
        );
        assert_eq!(
            parse_watch_args(&[], &words("watch k -w json"), "", "", true).unwrap_err(),
            "unknown shorthand flag: 'w' in -w"
        );
        assert_eq!(
            parse_watch_args(&[], &words("watch k --rev"), "", "", true).unwrap_err(),
            "flag needs an argument: --rev"
        );
        assert_eq!(
            parse_watch_args(&[], &words("watch k --rev=x"), "", "", true).unwrap_err(),
            "invalid argument \"x\" for \"--rev\" flag: strconv.ParseInt: parsing \"x\": invalid syntax"
        );
    }

    #[test]
    fn specs_as_clientv3_options() {
        let flags = WatchFlags {
            prefix: true,
            ..WatchFlags::default()
        };
        let spec = watch_spec(&words("foo"), &flags).unwrap();
        assert_eq!(
            (spec.key, spec.range_end),
            (b"foo".to_vec(), b"fop".to_vec())
        );
        let spec = watch_spec(&["".to_string()], &flags).unwrap();
        assert_eq!((spec.key, spec.range_end), (vec![0], vec![0]));
        assert!(watch_spec(&words("a b"), &flags).is_err());
        let spec = watch_spec(&words("a b c"), &WatchFlags::default()).unwrap();
        assert_eq!((spec.key, spec.range_end), (b"a".to_vec(), Vec::new()));
    }

    #[test]
    fn json_is_clientv3_watch_response() {
        let r = WatchResponse {
            header: ResponseHeader {
                revision: 4,
                ..ResponseHeader::default()
            },
            events: Some(Vec::new()),
            compact_revision: 2,
            canceled: true,
            ..WatchResponse::default()
        };
        assert_eq!(
            watch_json(&r).to_string(),
            r#"{"Header":{"revision":4},"Events":[],"CompactRevision":2,"Canceled":true,"Created":false}"#
        );
        let closed = WatchResponse {
            canceled: true,
            ..WatchResponse::default()
        };
        assert_eq!(
            watch_json(&closed).to_string(),
            r#"{"Header":{},"Events":null,"CompactRevision":0,"Canceled":true,"Created":false}"#
        );
    }
}
