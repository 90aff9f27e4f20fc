//! Differential tests for leases, watches, `lock` and `elect`: the real etcdctl
//! (3.5.1, and 3.4.23 for a subset) runs the same scenario against our server
//! and against etcd 3.5.1, each on a fresh data directory; the normalized
//! stdout, stderr and exit code of every step must match.
//!
//! Unlike `etcdctl_compat.rs`, a scenario here also drives long-running
//! etcdctl processes (watchers, keep-alives, lock holders, candidates) in the
//! background, so each server gets its own copy of the scenario, both copies
//! run at the same time (one thread per server), and their recorded steps are
//! compared afterwards, step by step.
//!
//! On top of `common::Normalizer`, only what is nondeterministic is normalized:
//! lease IDs (numbered in the order the scenario granted them), the lease-ID
//! suffix of lock and election keys, the remaining TTL of a lease (which may
//! be one second apart), and the order of a lease's attached keys (etcd lists
//! them in Go map order). Revisions are never normalized.
//!
//! Every wait is bounded; a background etcdctl is killed (with its process
//! group, so commands it runs die with it) when its step is over.

mod common;

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    bytes_to_text, start_pair, EtcdProcess, Etcdctl, Kind, Normalizer, Output, ServerIds,
};

/// How long a background watcher gets to register its watch before writes.
const WATCH_SETUP: Duration = Duration::from_secs(1);
/// How long to wait for expected output from a background etcdctl.
const BG_WAIT: Duration = Duration::from_secs(10);
/// After the expected output arrived: time for anything unexpected to follow.
const SETTLE: Duration = Duration::from_millis(300);
/// How long a background etcdctl may take to exit once asked to.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// How long the lease-expiry scenario waits for a 2 s lease to expire.
const EXPIRY_WAIT: Duration = Duration::from_secs(10);

/// What a step expects of etcd 3.5.1 itself (so the scenarios cannot silently
/// drift into comparing only failures).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Ok,
    Err,
    Any,
}

struct Step {
    label: String,
    expect: Expect,
    out: Output,
}

/// One server's run of a scenario: etcdctl invocations and background
/// processes against one endpoint, with everything they printed.
struct Session {
    ctl: Etcdctl,
    endpoint: String,
    norm: Normalizer,
    /// Prefixes of keys whose last segment is a lease ID (`lock`, `elect`).
    id_prefixes: Vec<&'static str>,
    /// Leases the scenario granted, in order, by ID.
    leases: Vec<u64>,
    steps: Vec<Step>,
}

impl Session {
    fn new(ctl: &Etcdctl, server: &EtcdProcess, id_prefixes: &[&'static str]) -> Session {
        let ids = ServerIds::read(ctl, &server.endpoint());
        Session {
            ctl: ctl.clone(),
            endpoint: server.endpoint(),
            norm: Normalizer::for_server(server, ids),
            id_prefixes: id_prefixes.to_vec(),
            leases: Vec::new(),
            steps: Vec::new(),
        }
    }

    fn record(&mut self, label: impl Into<String>, expect: Expect, out: Output) {
        self.steps.push(Step {
            label: label.into(),
            expect,
            out,
        });
    }

    /// Runs etcdctl and records the step.
    fn run(&mut self, expect: Expect, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let out = self.ctl.run(&self.endpoint, args, stdin);
        self.record(format!("etcdctl {}", self.label(args)), expect, out.clone());
        out
    }

    fn ok(&mut self, args: &[&str]) -> Output {
        self.run(Expect::Ok, args, None)
    }

    fn err(&mut self, args: &[&str]) -> Output {
        self.run(Expect::Err, args, None)
    }

    /// Runs etcdctl without recording it (polling).
    fn quiet(&self, args: &[&str]) -> Output {
        self.ctl.run(&self.endpoint, args, None)
    }

    /// Runs a `lease grant` (any output format), records it, and registers the
    /// granted lease; its hex ID (or "0" when the grant failed, which the
    /// comparison then reports).
    fn grant(&mut self, args: &[&str]) -> String {
        let out = self.run(Expect::Ok, args, None);
        let id = parse_granted_id(&out.stdout);
        match id {
            Some(id) => {
                self.leases.push(id);
                format!("{id:016x}")
            }
            None => "0".to_string(),
        }
    }

    /// `args` with this server's lease IDs replaced by their placeholders.
    fn label(&self, args: &[&str]) -> String {
        args.iter()
            .map(|arg| {
                let mut arg = arg.to_string();
                for (i, id) in self.leases.iter().enumerate() {
                    let hex = format!("{id:016x}");
                    if arg == hex || arg.ends_with(&format!("={hex}")) {
                        arg = arg.replace(hex.as_str(), &format!("<lease-{}>", i + 1));
                    }
                }
                arg
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Polls `etcdctl <args>` (unrecorded, bounded by BG_WAIT) until its stdout
    /// satisfies `done`; true if it did.
    fn poll_until(&self, args: &[&str], done: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + BG_WAIT;
        loop {
            if done(&self.quiet(args).stdout) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts etcdctl in the background (in its own process group).
    fn spawn(&self, args: &[&str]) -> Background {
        Background::spawn(&self.ctl, &self.endpoint, args, self.label(args))
    }

    /// Stops a background etcdctl (see `Background::finish`) and records what it printed.
    fn finish(&mut self, bg: Background, stop: Stop) -> Output {
        let label = format!("background etcdctl {}", bg.label);
        let out = bg.finish(stop);
        self.record(label, Expect::Any, out.clone());
        out
    }

    fn normalize(&self, out: &Output) -> Output {
        let text = |s: &str| self.normalize_text(&self.norm.apply(&self.map_lease_ids(s)));
        Output {
            stdout: text(&out.stdout),
            stderr: text(&out.stderr),
            code: out.code,
            ..Output::default()
        }
    }

    /// Lease IDs, in the places etcdctl prints them, as `<lease-N>`.
    fn map_lease_ids(&self, text: &str) -> String {
        // etcdctl prints hex IDs with %016x, decimal ones in JSON and fields.
        let lookup = |token: &str| {
            self.leases
                .iter()
                .position(|id| token == format!("{id:016x}") || token == id.to_string())
                .map(|i| format!("<lease-{}>", i + 1))
        };
        let mut text = replace_token_after(text, "lease ", is_alnum, lookup);
        for marker in [
            "\"ID\":",
            "\"id\":",
            "\"lease\":",
            "\"ID\" : ",
            "\"Lease\" : ",
        ] {
            text = replace_token_after(&text, marker, is_alnum, lookup);
        }
        // `lease list` prints one hex ID a line.
        text.split('\n')
            .map(|line| lookup(line).unwrap_or_else(|| line.to_string()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn normalize_text(&self, text: &str) -> String {
        let mut text = sort_attached_keys(text);
        text = sort_json_keys(&text);
        text = sort_key_field_lines(&text);
        text = remaining_ttl(&text);
        for prefix in &self.id_prefixes {
            text = replace_token_after(&text, &format!("{prefix}/"), is_hex, |_| {
                Some("<ID>".to_string())
            });
        }
        text
    }
}

/// The lease ID in `lease grant`'s output (simple, json or fields).
fn parse_granted_id(stdout: &str) -> Option<u64> {
    if let Some(rest) = stdout.strip_prefix("lease ") {
        let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
        return u64::from_str_radix(&hex, 16).ok();
    }
    for marker in ["\"ID\":", "\"ID\" : "] {
        if let Some(at) = stdout.find(marker) {
            let digits: String = stdout[at + marker.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            return digits.parse().ok();
        }
    }
    None
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn is_hex(c: char) -> bool {
    c.is_ascii_hexdigit()
}

/// After each `marker`, replaces the token (the longest run of `in_token`
/// characters) by `f(token)` when that is `Some`.
fn replace_token_after(
    text: &str,
    marker: &str,
    in_token: fn(char) -> bool,
    f: impl Fn(&str) -> Option<String>,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        let after = at + marker.len();
        out.push_str(&rest[..after]);
        let len = rest[after..]
            .find(|c: char| !in_token(c))
            .unwrap_or(rest.len() - after);
        let token = &rest[after..after + len];
        match f(token) {
            Some(new) if !token.is_empty() => out.push_str(&new),
            _ => out.push_str(token),
        }
        rest = &rest[after + len..];
    }
    out.push_str(rest);
    out
}

/// Rewrites the text between `open` and the next `close` after each `open`.
fn rewrite_between(text: &str, open: &str, close: &str, f: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(open) {
        let after = at + open.len();
        out.push_str(&rest[..after]);
        match rest[after..].find(close) {
            Some(len) => {
                out.push_str(&f(&rest[after..after + len]));
                rest = &rest[after + len..];
            }
            None => rest = &rest[after..],
        }
    }
    out.push_str(rest);
    out
}

/// `attached keys([k2 k1])`: etcd lists a lease's keys in Go map order.
fn sort_attached_keys(text: &str) -> String {
    rewrite_between(text, "attached keys([", "])", |inner| {
        let mut keys: Vec<&str> = inner.split(' ').collect();
        keys.sort_unstable();
        keys.join(" ")
    })
}

/// `"keys":["azI=","azE="]` in `lease timetolive --keys -w json`: map order too.
fn sort_json_keys(text: &str) -> String {
    rewrite_between(text, "\"keys\":[", "]", |inner| {
        let mut keys: Vec<&str> = inner.split(',').collect();
        keys.sort_unstable();
        keys.join(",")
    })
}

/// Runs of `"Key" : ...` lines in `lease timetolive --keys -w fields`: map order too.
fn sort_key_field_lines(text: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let mut run: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        if line.starts_with("\"Key\" : ") {
            run.push(line);
            continue;
        }
        run.sort_unstable();
        out.append(&mut run);
        out.push(line);
    }
    run.sort_unstable();
    out.append(&mut run);
    out.join("\n")
}

/// The remaining TTL in `lease timetolive`'s output (`remaining(99s)`,
/// `"ttl":99`, and `"TTL" : 99` beside `"GrantedTTL"`) is one second apart
/// depending on when it is read: values close to the 100 s TTL the scenarios
/// grant become `~100`. Other values (-1 for expired leases) stay, and so do
/// granted TTLs.
fn remaining_ttl(text: &str) -> String {
    let near = |token: &str| match token.parse::<i64>() {
        Ok(v) if (95..=100).contains(&v) => Some("~100".to_string()),
        _ => None,
    };
    let is_digit = |c: char| c.is_ascii_digit();
    let mut text = replace_token_after(text, "remaining(", is_digit, near);
    text = replace_token_after(&text, "\"ttl\":", is_digit, near);
    if text.contains("\"GrantedTTL\" : ") {
        text = replace_token_after(&text, "\"TTL\" : ", is_digit, near);
    }
    text
}

/// How a background etcdctl is stopped.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// SIGKILL (with its process group).
    Kill,
    /// SIGTERM, then wait (bounded) for it to exit.
    Term,
    /// Wait (bounded) for it to exit by itself.
    Exit,
}

/// A background etcdctl whose output is collected while it runs.
struct Background {
    child: Child,
    label: String,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<thread::JoinHandle<()>>,
    exited: Option<i32>,
}

impl Background {
    fn spawn(ctl: &Etcdctl, endpoint: &str, args: &[&str], label: String) -> Background {
        let mut command = Command::new(&ctl.bin);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCDCTL_") {
                command.env_remove(key);
            }
        }
        let mut child = command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", ctl.bin.display()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().expect("piped stdout"), stdout.clone()),
            collect(child.stderr.take().expect("piped stderr"), stderr.clone()),
        ];
        Background {
            stdin: child.stdin.take(),
            child,
            label,
            stdout,
            stderr,
            readers,
            exited: None,
        }
    }

    fn stdout(&self) -> String {
        bytes_to_text(&self.stdout.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn stderr(&self) -> String {
        bytes_to_text(&self.stderr.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Polls (bounded by BG_WAIT) until `done(stdout)`, or until the process
    /// exits; then waits SETTLE for anything that follows. True if `done`.
    fn wait_until(&mut self, done: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + BG_WAIT;
        let ok = loop {
            if done(&self.stdout()) {
                break true;
            }
            if self.try_exit().is_some() || Instant::now() >= deadline {
                break done(&self.stdout());
            }
            thread::sleep(Duration::from_millis(20));
        };
        thread::sleep(SETTLE);
        ok
    }

    fn wait_for(&mut self, needle: &str) -> bool {
        self.wait_until(|out| out.contains(needle))
    }

    /// Writes to etcdctl's stdin (a closed pipe is ignored: the output shows it).
    fn send(&mut self, text: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(text.as_bytes());
            let _ = stdin.flush();
        }
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The exit code once the process has exited (-1: killed by a signal).
    fn try_exit(&mut self) -> Option<i32> {
        if self.exited.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status.code().unwrap_or(-1));
            }
        }
        self.exited
    }

    fn signal(&mut self, signal: &str, group: bool) {
        if self.try_exit().is_some() {
            return; // reaped: its pid may belong to someone else by now
        }
        let pid = self.child.id();
        let target = if group {
            format!("-{pid}")
        } else {
            pid.to_string()
        };
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), "--", &target])
            .stderr(Stdio::null())
            .status();
    }

    /// Stops the process as `stop` says (a process still running after
    /// EXIT_GRACE is killed and reports exit code -9), then returns everything
    /// it printed.
    fn finish(mut self, stop: Stop) -> Output {
        self.close_stdin();
        match stop {
            Stop::Kill => self.signal("KILL", true),
            Stop::Term => self.signal("TERM", false),
            Stop::Exit => {}
        }
        let deadline = Instant::now() + EXIT_GRACE;
        let code = loop {
            if let Some(code) = self.try_exit() {
                break code;
            }
            if Instant::now() >= deadline {
                self.signal("KILL", true);
                let _ = self.child.wait();
                self.exited = Some(-1);
                break -9;
            }
            thread::sleep(Duration::from_millis(10));
        };
        // Commands etcdctl started may hold the pipes a little longer.
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        Output {
            stdout: self.stdout(),
            stderr: self.stderr(),
            code,
            ..Output::default()
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            self.signal("KILL", true);
            let _ = self.child.wait();
        }
    }
}

fn collect<R: Read + Send + 'static>(
    mut reader: R,
    into: Arc<Mutex<Vec<u8>>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => into
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&buffer[..n]),
            }
        }
    })
}

/// Runs `scenario` with etcdctl of `ctl` against our server and etcd 3.5.1 at
/// the same time, then compares the recorded steps; panics listing every
/// mismatch.
fn differential(ctl: Kind, id_prefixes: &[&'static str], scenario: fn(&mut Session)) {
    let started = Instant::now();
    let ctl = Etcdctl::reference(ctl);
    let (ours, reference) = start_pair(&[]);
    let mut ours_session = Session::new(&ctl, &ours, id_prefixes);
    let mut ref_session = Session::new(&ctl, &reference, id_prefixes);
    let (ours_result, ref_result) = thread::scope(|s| {
        let ours_thread = s.spawn(|| scenario(&mut ours_session));
        let ref_result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scenario(&mut ref_session)));
        (ours_thread.join(), ref_result)
    });
    if let Err(e) = ref_result {
        std::panic::resume_unwind(e);
    }
    let mut problems = Vec::new();
    if let Err(e) = ours_result {
        let message = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        problems.push(format!(
            "=== the scenario against our server panicked after {} steps: {message}",
            ours_session.steps.len()
        ));
    }
    for (i, r) in ref_session.steps.iter().enumerate() {
        let ok = r.out.code == 0;
        assert!(
            r.expect == Expect::Any || ok == (r.expect == Expect::Ok),
            "the scenario expects {} against etcd 3.5.1 to {}: {:#?}",
            r.label,
            if r.expect == Expect::Ok {
                "succeed"
            } else {
                "fail"
            },
            r.out
        );
        let Some(o) = ours_session.steps.get(i) else {
            break;
        };
        let r_n = ref_session.normalize(&r.out);
        let o_n = ours_session.normalize(&o.out);
        if std::env::var_os("ETCD_RS_TEST_VERBOSE").is_some() {
            eprintln!(
                "$ {} (exit {})\n{}{}",
                r.label,
                r_n.code,
                section("stdout", &r_n.stdout),
                section("stderr", &r_n.stderr)
            );
        }
        if r_n != o_n {
            problems.push(format!(
                "=== step {}: {}\n--- etcd 3.5.1 (exit {}):\n{}{}--- ours: {} (exit {}):\n{}{}\
                 --- normalized, etcd 3.5.1:\n{:?}\n--- normalized, ours:\n{:?}",
                i + 1,
                r.label,
                r.out.code,
                section("stdout", &r.out.stdout),
                section("stderr", &r.out.stderr),
                o.label,
                o.out.code,
                section("stdout", &o.out.stdout),
                section("stderr", &o.out.stderr),
                r_n,
                o_n,
            ));
        }
    }
    eprintln!(
        "{} steps with {}, {} mismatches, {:.1?}",
        ref_session.steps.len(),
        ctl.bin.display(),
        problems.len(),
        started.elapsed()
    );
    if !problems.is_empty() {
        panic!(
            "{} of {} steps differ from etcd 3.5.1:\n{}\n--- last lines of our server's log:\n{}",
            problems.len(),
            ref_session.steps.len(),
            problems.join("\n"),
            ours.log_tail()
        );
    }
}

fn section(name: &str, text: &str) -> String {
    if text.is_empty() {
        return format!("  [{name}: empty]\n");
    }
    let mut s = format!("  [{name}]\n");
    for line in text.lines() {
        s.push_str("  | ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// Only the first line of stdout (for outputs that repeat over time).
fn first_line(out: Output) -> Output {
    Output {
        stdout: out.stdout.lines().next().unwrap_or_default().to_string(),
        ..out
    }
}

// ---------------------------------------------------------------- scenarios

/// Lease grant / put --lease / timetolive / keep-alive / list / revoke.
fn leases(s: &mut Session) {
    let a = s.grant(&["lease", "grant", "100"]);
    s.err(&["lease", "grant", "9000000001"]);
    s.err(&["lease", "grant", "9000000001", "-w", "json"]);
    let lease_a = format!("--lease={a}");
    s.ok(&["put", &lease_a, "k1", "v1"]); // rev 2
    s.ok(&["put", &lease_a, "k2", "v2"]); // rev 3
    s.ok(&["put", "k3", "no-lease"]); // rev 4
    s.ok(&["get", "k", "--prefix", "-w", "json"]);
    s.ok(&["get", "k1", "-w", "fields"]);
    s.ok(&["lease", "timetolive", &a]);
    s.ok(&["lease", "timetolive", &a, "--keys"]);
    s.ok(&["lease", "timetolive", &a, "-w", "json"]);
    s.ok(&["lease", "timetolive", &a, "--keys", "-w", "json"]);
    s.ok(&["lease", "timetolive", &a, "-w", "fields"]);
    s.ok(&["lease", "timetolive", &a, "--keys", "-w", "fields"]);
    s.ok(&["lease", "keep-alive", "--once", &a]);
    s.ok(&["lease", "keep-alive", "--once", &a, "-w", "json"]);
    let b = s.grant(&["lease", "grant", "100", "-w", "fields"]);
    let c = s.grant(&["lease", "grant", "100", "-w", "json"]);
    s.ok(&["lease", "list"]);
    s.ok(&["lease", "list", "-w", "json"]);
    s.ok(&["lease", "list", "-w", "fields"]);
    // reattaching a key moves it to the new lease
    s.ok(&["put", &format!("--lease={b}"), "k2", "v2b"]); // rev 5
    s.ok(&["lease", "timetolive", &a, "--keys"]);
    s.ok(&["lease", "timetolive", &b, "--keys"]);
    s.ok(&["lease", "revoke", &a]); // deletes k1: rev 6
    s.ok(&["get", "k", "--prefix"]);
    s.ok(&["get", "k", "--prefix", "-w", "json"]);
    s.ok(&["lease", "timetolive", &a]);
    s.ok(&["lease", "timetolive", &a, "--keys", "-w", "json"]);
    s.ok(&["lease", "timetolive", &a, "-w", "fields"]);
    s.err(&["lease", "revoke", &a]);
    s.err(&["lease", "keep-alive", "--once", &a]);
    s.err(&["put", "--lease=1234", "x", "y"]);
    s.err(&["put", "--lease=zz", "x", "y"]);
    s.ok(&["lease", "timetolive", "1234"]);
    s.err(&["lease", "revoke", "1234"]);
    s.err(&["lease", "grant"]);
    s.err(&["lease", "grant", "abc"]);
    s.err(&["lease", "revoke"]);
    s.ok(&["lease", "revoke", &b, "-w", "json"]); // deletes k2: rev 7
    s.ok(&["get", "", "--from-key", "-w", "json"]);
    s.ok(&["lease", "list"]);
    // keep-alive (not --once) for about 2 s: the first line is printed at once.
    let mut keepalive = s.spawn(&["lease", "keep-alive", &c]);
    keepalive.wait_for("keepalived");
    thread::sleep(Duration::from_millis(1500));
    let out = keepalive.finish(Stop::Kill);
    s.record(
        "background etcdctl lease keep-alive <lease-3> (first line)",
        Expect::Any,
        first_line(out),
    );
    s.ok(&["lease", "revoke", &c]);
    // a keep-alive of a revoked lease ends by itself
    let gone = s.spawn(&["lease", "keep-alive", &c]);
    s.finish(gone, Stop::Exit);
    // a 1 s TTL is raised to the minimum TTL (2 s, for the default election timeout)
    s.grant(&["lease", "grant", "1", "-w", "json"]);
    s.grant(&["lease", "grant", "1"]);
}

/// A 2 s lease expires (revoked by the leader) and takes its key with it.
fn lease_expiry(s: &mut Session) {
    let l = s.grant(&["lease", "grant", "2"]);
    s.ok(&["put", &format!("--lease={l}"), "exp", "v"]); // rev 2
    s.ok(&["put", "keep", "v"]); // rev 3
    s.ok(&["get", "exp", "--keys-only"]);
    let deadline = Instant::now() + EXPIRY_WAIT;
    let expired = loop {
        let out = s.quiet(&["get", "exp", "--keys-only"]);
        if out.code == 0 && out.stdout.is_empty() {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        thread::sleep(Duration::from_millis(100));
    };
    s.record(
        format!("key gone within {EXPIRY_WAIT:?}"),
        Expect::Any,
        Output {
            stdout: expired.to_string(),
            stderr: String::new(),
            code: 0,
            ..Output::default()
        },
    );
    s.ok(&["get", "", "--from-key", "-w", "json"]); // the delete is rev 4
    s.ok(&["lease", "timetolive", &l]);
    s.ok(&["lease", "timetolive", &l, "--keys", "-w", "json"]);
    s.ok(&["lease", "list"]);
    s.err(&["lease", "revoke", &l]);
    s.err(&["lease", "keep-alive", "--once", &l]);
}

/// Watches: live, from a past revision, JSON, interactive, exec mode, compacted.
fn watches(s: &mut Session) {
    // live events
    let mut live = s.spawn(&["watch", "foo"]);
    thread::sleep(WATCH_SETUP);
    s.ok(&["put", "foo", "a"]); // rev 2
    s.ok(&["put", "foo1", "b"]); // rev 3
    s.ok(&["del", "foo"]); // rev 4
    s.ok(&["put", "foo", "c"]); // rev 5
    s.ok(&["put", "bar", "x"]); // rev 6
    s.ok(&["put", "foo", "d"]); // rev 7
    live.wait_until(|out| out.ends_with("foo\nd\n"));
    s.finish(live, Stop::Kill);
    // live events of a prefix, with previous values, as JSON
    let mut live_json = s.spawn(&["watch", "--prefix", "foo", "--prev-kv", "-w", "json"]);
    thread::sleep(WATCH_SETUP);
    s.ok(&["put", "foo1", "b2"]); // rev 8
    s.ok(&["del", "foo", "--prefix"]); // rev 9
    live_json.wait_until(|out| out.lines().count() >= 2);
    s.finish(live_json, Stop::Kill);
    // the history from revision 1
    let mut history = s.spawn(&["watch", "--prefix", "foo", "--rev=1", "--prev-kv"]);
    history.wait_until(|out| out.matches("DELETE").count() >= 3);
    s.finish(history, Stop::Kill);
    let mut history = s.spawn(&["watch", "foo", "--rev=2", "-w", "json"]);
    history.wait_until(|out| out.lines().count() >= 1);
    s.finish(history, Stop::Kill);
    let mut range = s.spawn(&["watch", "foo", "foo2", "--rev=3"]);
    range.wait_until(|out| out.matches("PUT").count() >= 4);
    s.finish(range, Stop::Kill);
    // interactive: a watch request, then a progress request
    let mut interactive = s.spawn(&["watch", "-i"]);
    interactive.send("watch foo2\n");
    thread::sleep(WATCH_SETUP);
    s.ok(&["put", "foo2", "v"]); // rev 10
    interactive.wait_for("v\n");
    interactive.send("progress\n");
    interactive.wait_for("progress notify");
    interactive.send("watch bar --rev=6\n");
    interactive.wait_for("x\n");
    s.finish(interactive, Stop::Exit); // stdin closed: etcdctl exits
                                       // exec mode: a command per event, with ETCD_WATCH_* set
    let mut exec = s.spawn(&[
        "watch",
        "foo2",
        "--",
        "sh",
        "-c",
        "echo got $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_REVISION",
    ]);
    thread::sleep(WATCH_SETUP);
    s.ok(&["put", "foo2", "x"]); // rev 11
    s.ok(&["del", "foo2"]); // rev 12
    exec.wait_until(|out| out.matches("got").count() >= 2);
    s.finish(exec, Stop::Kill);
    // compaction cancels watches below the compacted revision
    s.ok(&["compaction", "3"]);
    s.err(&["watch", "foo", "--rev=2"]);
    let mut after = s.spawn(&["watch", "foo1", "--rev=3"]);
    after.wait_for("b2\n");
    s.finish(after, Stop::Kill);
}

/// The JSON response of a watch canceled because its start revision was
/// compacted (see `watch_compacted_json_etcdctl_35`).
fn watch_compacted_json(s: &mut Session) {
    for i in 1..=4 {
        s.ok(&["put", "foo", &format!("v{i}")]); // revs 2..=5
    }
    s.ok(&["compaction", "3"]);
    s.err(&["watch", "foo", "--rev=2", "-w", "json"]);
    s.err(&["watch", "--prefix", "foo", "--rev=1", "-w", "json"]);
}

/// `lock` (with a command, and two contenders) and `elect` (campaign and observe).
fn lock_elect(s: &mut Session) {
    s.ok(&[
        "lock",
        "mylock",
        "--",
        "sh",
        "-c",
        "echo holding $ETCD_LOCK_KEY $ETCD_LOCK_REV",
    ]);
    s.ok(&["get", "mylock", "--prefix"]);
    // two contenders: the second waits until the first lets go
    let mut first = s.spawn(&["lock", "l2"]);
    first.wait_for("l2/");
    let mut second = s.spawn(&[
        "lock",
        "l2",
        "--",
        "sh",
        "-c",
        "echo second $ETCD_LOCK_KEY $ETCD_LOCK_REV",
    ]);
    // both contenders' keys exist: the second is waiting for the first's
    s.poll_until(&["get", "l2", "--prefix", "--keys-only"], |out| {
        out.matches("l2/").count() >= 2
    });
    thread::sleep(SETTLE);
    let waiting = Output {
        stdout: second.stdout(),
        stderr: second.stderr(),
        code: i32::from(second.try_exit().is_some()),
        ..Output::default()
    };
    s.record(
        "the second lock contender while the first holds the lock",
        Expect::Any,
        waiting,
    );
    s.ok(&["get", "l2", "--prefix", "--keys-only"]);
    s.finish(first, Stop::Term);
    second.wait_for("second");
    s.finish(second, Stop::Exit);
    s.ok(&["get", "l2", "--prefix"]);
    // election: a candidate, then an observer
    let mut candidate = s.spawn(&["elect", "e1", "p1"]);
    candidate.wait_for("p1\n");
    let mut observer = s.spawn(&["elect", "-l", "e1"]);
    observer.wait_for("p1\n");
    let mut second_candidate = s.spawn(&["elect", "e1", "p2"]);
    s.poll_until(&["get", "e1", "--prefix", "--keys-only"], |out| {
        out.matches("e1/").count() >= 2
    });
    thread::sleep(SETTLE);
    s.ok(&["get", "e1", "--prefix"]);
    s.finish(candidate, Stop::Term);
    second_candidate.wait_for("p2\n");
    observer.wait_for("p2\n");
    s.finish(second_candidate, Stop::Term);
    s.finish(observer, Stop::Kill);
    s.ok(&["get", "e1", "--prefix"]);
}

/// A representative subset for etcdctl 3.4.23.
fn leases_and_watch_34(s: &mut Session) {
    let a = s.grant(&["lease", "grant", "100"]);
    s.grant(&["lease", "grant", "1", "-w", "json"]);
    s.err(&["lease", "grant", "9000000001"]);
    s.ok(&["put", &format!("--lease={a}"), "k1", "v1"]); // rev 2
    s.ok(&["put", &format!("--lease={a}"), "k2", "v2"]); // rev 3
    s.ok(&["lease", "timetolive", &a, "--keys"]);
    s.ok(&["lease", "timetolive", &a, "--keys", "-w", "json"]);
    s.ok(&["lease", "keep-alive", "--once", &a]);
    s.ok(&["lease", "revoke", &a]); // rev 4
    s.ok(&["get", "k", "--prefix"]);
    s.ok(&["lease", "timetolive", &a]);
    s.err(&["lease", "revoke", &a]);
    s.err(&["put", "--lease=1234", "x", "y"]);
    let mut live = s.spawn(&["watch", "foo"]);
    thread::sleep(WATCH_SETUP);
    s.ok(&["put", "foo", "a"]); // rev 5
    s.ok(&["del", "foo"]); // rev 6
    live.wait_for("DELETE");
    s.finish(live, Stop::Kill);
    let mut history = s.spawn(&[
        "watch",
        "--prefix",
        "k",
        "--rev=1",
        "--prev-kv",
        "-w",
        "json",
    ]);
    history.wait_until(|out| out.lines().count() >= 1);
    s.finish(history, Stop::Kill);
    s.ok(&["compaction", "5"]);
    s.err(&["watch", "foo", "--rev=2"]);
}

#[test]
fn leases_etcdctl_35() {
    differential(Kind::Ref35, &[], leases);
}

#[test]
fn lease_expiry_etcdctl_35() {
    differential(Kind::Ref35, &[], lease_expiry);
}

#[test]
fn watches_etcdctl_35() {
    differential(Kind::Ref35, &[], watches);
}

/// The cancellation of a compacted watch in JSON: etcd sends its header
/// without a revision (`{"cluster_id":..,"member_id":..,"raft_term":2}`).
#[test]
fn watch_compacted_json_etcdctl_35() {
    differential(Kind::Ref35, &[], watch_compacted_json);
}

#[test]
fn lock_elect_etcdctl_35() {
    differential(Kind::Ref35, &["mylock", "l2", "e1"], lock_elect);
}

#[test]
fn leases_and_watch_etcdctl_34() {
    differential(Kind::Ref34, &[], leases_and_watch_34);
}
