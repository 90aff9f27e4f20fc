//! Our etcdctl against the real etcdctl 3.5.1: `watch` (with `-i`, exec
//! commands and `ETCDCTL_WATCH_*`), `lease`, `lock`, `elect` and
//! `make-mirror`, in every writer, with their usage errors. Each etcdctl
//! drives its own server of the same kind with the same history (see
//! `common::Differential::ctls`); the corpus runs against our server and
//! the real etcd 3.5.1 and 3.4.23.
//!
//! Long-running commands run as children read while they print: the test
//! waits (bounded) until both sides printed what it expects, then stops
//! them (a signal, or the end of stdin for `watch -i`) and compares what
//! they printed and how they exited. Revisions are fixed with `--rev` so
//! no event depends on when a watch was created.
//!
//! Per-side normalization beyond the harness's: lease IDs (each server
//! grants its own) in hex, decimal and inside base64 keys; the remaining
//! TTL of `lease timetolive` (seconds tick independently on each side);
//! and the number of `keep-alive` answers (one per tick), reduced to the
//! distinct lines.
//!
//! etcd 3.6's `make-mirror --rev` and `--max-txn-ops` do not exist in
//! etcdctl 3.5.1 (which rejects them as unknown flags): they are checked on
//! our etcdctl alone, by their effect on the destination.

mod common;

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{bytes_to_text, Differential, Etcdctl, Kind, Output};

const WRITERS: [&str; 5] = ["simple", "json", "fields", "protobuf", "table"];
/// How long a long-running etcdctl may take to print what the test waits for.
const PRINT_WAIT: Duration = Duration::from_secs(10);
/// How long a stopped etcdctl may take to exit.
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// A long-running etcdctl, read while it prints.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Running {
    fn spawn(ctl: &Etcdctl, endpoint: &str, args: &[String], env: &[(&str, &str)]) -> Running {
        let mut command = Command::new(&ctl.bin);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCDCTL_") {
                command.env_remove(key);
            }
        }
        let mut child = command
            .env("ETCDCTL_API", "3")
            .envs(env.iter().copied())
            .arg(format!("--endpoints={endpoint}"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", ctl.bin.display()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().expect("piped stdout"), stdout.clone()),
            collect(child.stderr.take().expect("piped stderr"), stderr.clone()),
        ];
        Running {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            readers,
        }
    }

    fn printed(&self) -> String {
        let out = bytes_to_text(&self.stdout.lock().unwrap());
        out + &bytes_to_text(&self.stderr.lock().unwrap())
    }

    /// Waits (bounded) until what it printed satisfies `done`.
    fn wait_until(&self, done: &dyn Fn(&str) -> bool) {
        let deadline = Instant::now() + PRINT_WAIT;
        while !done(&self.printed()) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn send(&mut self, line: &str) {
        if let Some(stdin) = &mut self.stdin {
            let _ = stdin.write_all(line.as_bytes());
            let _ = stdin.flush();
        }
    }

    fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits for the exit (killing it after EXIT_WAIT) and returns its output.
    fn finish(mut self) -> Output {
        self.stdin.take();
        let deadline = Instant::now() + EXIT_WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for etcdctl") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                break self.child.wait().expect("wait for etcdctl");
            }
            thread::sleep(Duration::from_millis(10));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let raw_stdout = std::mem::take(&mut *self.stdout.lock().unwrap());
        let stderr = bytes_to_text(&self.stderr.lock().unwrap());
        Output {
            stdout: bytes_to_text(&raw_stdout),
            raw_stdout,
            stderr,
            code: status.code().unwrap_or(-1),
        }
    }
}

fn collect<R: Read + Send + 'static>(
    mut from: R,
    into: Arc<Mutex<Vec<u8>>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

/// Which server (and etcdctl) an argument list is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Ours,
    Reference,
}

/// The same command on both sides, each with its own arguments.
struct Pair {
    ours: Running,
    reference: Running,
    label: Vec<String>,
}

impl Pair {
    fn spawn(d: &Differential, args: impl Fn(Side) -> Vec<String>, env: &[(&str, &str)]) -> Pair {
        Pair {
            ours: Running::spawn(&d.ours_ctl, &d.ours.endpoint(), &args(Side::Ours), env),
            reference: Running::spawn(&d.ctl, &d.reference.endpoint(), &args(Side::Reference), env),
            label: args(Side::Reference),
        }
    }

    fn same(d: &Differential, args: &[&str]) -> Pair {
        Pair::spawn(d, |_| strings(args), &[])
    }

    fn wait_for(&self, needle: &str) {
        self.wait_until(&|text: &str| text.contains(needle));
    }

    fn wait_until(&self, done: &dyn Fn(&str) -> bool) {
        self.ours.wait_until(done);
        self.reference.wait_until(done);
    }

    fn send(&mut self, line: &str) {
        self.ours.send(line);
        self.reference.send(line);
    }

    fn signal(&self, name: &str) {
        self.ours.signal(name);
        self.reference.signal(name);
    }

    fn outputs(self) -> (Output, Output, Vec<String>) {
        let label = self.label;
        let (ours, reference) = thread::scope(|s| {
            let ours = s.spawn(|| self.ours.finish());
            (ours.join().expect("ours"), self.reference.finish())
        });
        (ours, reference, label)
    }

    /// Waits for both to exit and compares them.
    fn finish(self, d: &mut Differential) -> Output {
        self.finish_with(d, |o| o)
    }

    fn finish_with(self, d: &mut Differential, adjust: impl Fn(Output) -> Output) -> Output {
        let (ours, reference, label) = self.outputs();
        let label: Vec<&str> = label.iter().map(String::as_str).collect();
        d.compare(&label, None, &adjust(ours), &adjust(reference))
    }

    /// Kills both (SIGKILL) and compares what they printed.
    fn stop(self, d: &mut Differential) -> Output {
        self.signal("KILL");
        self.finish(d)
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Runs a command that ends by itself, with its own arguments per side.
fn each(d: &mut Differential, args: impl Fn(Side) -> Vec<String>) -> Output {
    each_with(d, args, |o| o)
}

fn each_with(
    d: &mut Differential,
    args: impl Fn(Side) -> Vec<String>,
    adjust: impl Fn(Output) -> Output,
) -> Output {
    Pair::spawn(d, args, &[]).finish_with(d, adjust)
}

/// Runs a command that ends by itself with extra environment variables.
fn with_env(d: &mut Differential, args: &[&str], env: &[(&str, &str)]) -> Output {
    Pair::spawn(d, |_| strings(args), env).finish(d)
}

/// A lease granted on each side.
#[derive(Clone, Copy)]
struct Lease {
    ours: i64,
    reference: i64,
}

impl Lease {
    fn on(self, side: Side) -> i64 {
        match side {
            Side::Ours => self.ours,
            Side::Reference => self.reference,
        }
    }

    fn hex(self, side: Side) -> String {
        format!("{:016x}", self.on(side))
    }
}

/// Placeholders for the lease IDs each side got.
#[derive(Default)]
struct Names(usize);

impl Names {
    /// Normalizes the lease (and the lock or election key `key_prefix/<id>`
    /// in base64, as json shows keys) to `<lease-N>`.
    fn name(&mut self, d: &mut Differential, lease: Lease, key_prefix: Option<&str>) {
        self.0 += 1;
        let to = format!("<lease-{}>", self.0);
        d.literal(
            format!("{:016x}", lease.ours),
            format!("{:016x}", lease.reference),
            &to,
        );
        d.literal(
            format!("{:x}", lease.ours),
            format!("{:x}", lease.reference),
            &to,
        );
        d.literal(lease.ours.to_string(), lease.reference.to_string(), &to);
        if let Some(prefix) = key_prefix {
            let key = |id: i64| base64(format!("{prefix}/{id:x}").as_bytes());
            d.literal(
                key(lease.ours),
                key(lease.reference),
                &format!("<key-{}>", self.0),
            );
        }
    }
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The lease in `<prefix>/<hex id>` (a lock or election key) in `text`.
fn lease_in_key(text: &str, prefix: &str) -> Option<i64> {
    let marker = format!("{prefix}/");
    let at = text.find(&marker)? + marker.len();
    let hex: String = text[at..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    i64::from_str_radix(&hex, 16).ok()
}

/// The lease of the first key in a json `get` (`"lease":N`).
fn lease_in_json(text: &str) -> Option<i64> {
    let at = text.find("\"lease\":")? + "\"lease\":".len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Grants a lease on each side with `lease grant <ttl> -w <writer>`, names
/// its IDs, and compares the outputs.
fn grant(d: &mut Differential, names: &mut Names, ttl: &str, writer: &str) -> Lease {
    let args = ["lease", "grant", ttl, "-w", writer];
    let ours = d.ours_ctl.run(&d.ours.endpoint(), &args, None);
    let reference = d.ctl.run(&d.reference.endpoint(), &args, None);
    let id = |out: &Output| -> i64 {
        let text = &out.stdout;
        let parsed = if writer == "simple" {
            text.split_whitespace()
                .nth(1)
                .and_then(|h| i64::from_str_radix(h, 16).ok())
        } else {
            let marker = if writer == "json" {
                "\"ID\":"
            } else {
                "\"ID\" : "
            };
            text.find(marker).and_then(|at| {
                let digits: String = text[at + marker.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                digits.parse().ok()
            })
        };
        parsed.unwrap_or_else(|| panic!("no lease ID in {out:?}"))
    };
    let lease = Lease {
        ours: id(&ours),
        reference: id(&reference),
    };
    names.name(d, lease, None);
    d.compare(&args, None, &ours, &reference);
    lease
}

/// The server's revision now (from a `get`, itself compared).
fn revision(d: &mut Differential) -> i64 {
    let out = d.ok(&["get", "no-such-key", "-w", "json"]);
    let at = out.stdout.find("\"revision\":").expect("revision") + "\"revision\":".len();
    let digits: String = out.stdout[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().expect("revision number")
}

/// Replaces the number after each `marker` with `<n>`.
fn number_hidden(text: &str, marker: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        let after = at + marker.len();
        out.push_str(&rest[..after]);
        let digits = rest[after..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .count();
        out.push_str("<n>");
        rest = &rest[after + digits..];
    }
    out.push_str(rest);
    out
}

/// `lease timetolive`'s remaining TTL: each server counts it down on its own.
fn remaining_hidden(mut out: Output) -> Output {
    for marker in ["remaining(", "\"ttl\":", "\"TTL\" : "] {
        out.stdout = number_hidden(&out.stdout, marker);
    }
    out
}

/// `lease keep-alive` prints one answer per renewal, as often as time
/// allows: only which lines it printed is compared.
fn distinct_lines(mut out: Output) -> Output {
    let mut seen = Vec::new();
    for line in out.stdout.lines() {
        if !seen.contains(&line) {
            seen.push(line);
        }
    }
    out.stdout = seen.iter().map(|l| format!("{l}\n")).collect();
    out
}

fn leases(d: &mut Differential, names: &mut Names) {
    d.err(&["lease", "grant"]);
    d.err(&["lease", "grant", "x"]);
    d.err(&["lease", "grant", "1", "2"]);
    d.err(&["lease", "grant", "99999999999"]);
    d.err(&["lease", "revoke"]);
    d.err(&["lease", "revoke", "zz"]);
    d.err(&["lease", "revoke", "0x12"]);
    d.err(&["lease", "revoke", "1234"]);
    d.err(&["lease", "timetolive"]);
    d.err(&["lease", "timetolive", "xyz"]);
    d.err(&["lease", "timetolive", "--keys=maybe", "12"]);
    d.ok(&["lease", "timetolive", "1234"]);
    d.ok(&["lease", "timetolive", "1234", "-w", "json"]);
    d.err(&["lease", "keep-alive"]);
    d.err(&["lease", "keep-alive", "q"]);
    d.err(&["lease", "keep-alive", "--once", "1234"]);
    d.ok(&["lease", "keep-alive", "1234"]);
    d.ok(&["lease", "keep-alive", "1234", "-w", "json"]);
    d.ok(&["lease", "list"]);
    d.ok(&["lease", "list", "-w", "json"]);

    let a = grant(d, names, "60", "simple");
    let b = grant(d, names, "60", "json");
    let c = grant(d, names, "60", "fields");
    // One key per lease: etcd lists a lease's keys in map order.
    each(d, |s| strings(&["put", "lk1", "v", "--lease", &a.hex(s)]));
    each(d, |s| strings(&["put", "lk2", "v", "--lease", &b.hex(s)]));
    for w in WRITERS {
        each_with(
            d,
            |s| strings(&["lease", "timetolive", &a.hex(s), "--keys", "-w", w]),
            remaining_hidden,
        );
    }
    each_with(
        d,
        |s| strings(&["lease", "timetolive", &b.hex(s)]),
        remaining_hidden,
    );
    for w in WRITERS {
        d.check(&["lease", "list", "-w", w], None);
    }
    for w in WRITERS {
        each(d, |s| {
            strings(&["lease", "keep-alive", "--once", &a.hex(s), "-w", w])
        });
    }
    each(d, |s| strings(&["lease", "revoke", &c.hex(s)]));
    each(d, |s| {
        strings(&["lease", "revoke", &b.hex(s), "-w", "json"])
    });
    for w in ["fields", "protobuf", "table"] {
        let l = grant(d, names, "60", "simple");
        each(d, |s| strings(&["lease", "revoke", &l.hex(s), "-w", w]));
    }
    each(d, |s| {
        strings(&["lease", "timetolive", &c.hex(s), "--keys"])
    });
    d.ok(&["get", "lk", "--prefix", "--keys-only"]);
    each(d, |s| strings(&["lease", "revoke", &a.hex(s)]));
    d.ok(&["get", "lk", "--prefix", "--keys-only"]);
    d.ok(&["lease", "list"]);

    // keep-alive runs until its lease is revoked.
    let short = grant(d, names, "3", "simple");
    let shorter = grant(d, names, "0", "simple");
    let simple = Pair::spawn(d, |s| strings(&["lease", "keep-alive", &short.hex(s)]), &[]);
    let fields = Pair::spawn(
        d,
        |s| strings(&["lease", "keep-alive", &shorter.hex(s), "-w", "fields"]),
        &[],
    );
    simple.wait_for("keepalived");
    fields.wait_for("\"TTL\"");
    each(d, |s| strings(&["lease", "revoke", &short.hex(s)]));
    each(d, |s| strings(&["lease", "revoke", &shorter.hex(s)]));
    simple.finish_with(d, distinct_lines);
    fields.finish_with(d, distinct_lines);

    // Leases only the table and protobuf writers saw: nothing lists them later.
    d.ok(&["lease", "grant", "60", "-w", "protobuf"]);
    d.err(&["lease", "grant", "60", "-w", "table"]);
}

fn watches(d: &mut Differential) {
    d.err(&["watch"]);
    d.err(&["watch", "a", "b", "--prefix"]);
    d.err(&["watch", "a", "--"]);
    d.err(&["watch", "--rev=x", "a"]);
    d.err(&["watch", "--prefix=x", "a"]);
    d.err(&["watch", "a", "-w", "yaml"]);
    with_env(d, &["watch", "foo"], &[("ETCDCTL_WATCH_KEY", "foo")]);
    with_env(d, &["watch", "foo"], &[("ETCDCTL_WATCH_RANGE_END", "z")]);
    with_env(
        d,
        &["watch", "foo", "--", "echo"],
        &[("ETCDCTL_WATCH_KEY", "foo")],
    );

    let start = (revision(d) + 1).to_string();
    let rev = format!("--rev={start}");
    d.ok(&["put", "w1", "a"]);
    d.ok(&["put", "w2", "x y\"z"]);
    d.ok(&["put", "w1", "b"]);
    d.ok(&["del", "w1"]);
    d.ok(&["put", "w1", "the-end"]);
    for w in WRITERS {
        let p = Pair::same(d, &["watch", "w1", &rev, "--prev-kv", "-w", w]);
        let marker = match w {
            "json" => "dGhlLWVuZA==",
            "table" => "not supported",
            _ => "the-end",
        };
        p.wait_for(marker);
        if w == "table" {
            p.finish(d);
        } else {
            p.stop(d);
        }
    }
    let the_end_hex = r"\x74\x68\x65\x2d\x65\x6e\x64";
    for (args, marker) in [
        (vec!["watch", "w", "--prefix", &rev], "the-end"),
        (vec!["watch", "w1", "w3", &rev, "--hex"], the_end_hex),
        (vec!["watch", &rev, "--progress-notify", "w1"], "the-end"),
    ] {
        let p = Pair::same(d, &args);
        p.wait_for(marker);
        p.stop(d);
    }
    let echo =
        "echo \"$ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_REVISION\"";
    let p = Pair::same(d, &["watch", "w", "--prefix", &rev, "--", "sh", "-c", echo]);
    p.wait_for("the-end\"");
    p.stop(d);
    d.err(&["watch", "w1", &rev, "--", "sh", "-c", "exit 4"]);
    d.err(&["watch", "w1", &rev, "--", "no-such-command-here"]);
    with_env(
        d,
        &["watch", &rev, "--", "sh", "-c", "exit 2"],
        &[("ETCDCTL_WATCH_KEY", "w2")],
    );
    let p = Pair::spawn(
        d,
        |_| strings(&["watch", &rev, "--", "sh", "-c", echo]),
        &[
            ("ETCDCTL_WATCH_KEY", "w1"),
            ("ETCDCTL_WATCH_RANGE_END", "w3"),
        ],
    );
    p.wait_for("the-end\"");
    p.stop(d);

    // A watch from a compacted revision, and one the server refuses.
    let now = revision(d).to_string();
    d.ok(&["compaction", &now]);
    for w in ["simple", "json", "fields", "protobuf"] {
        d.err(&["watch", "w1", &format!("--rev={start}"), "-w", w]);
    }
    for w in ["simple", "json", "protobuf"] {
        d.err(&["watch", "w3", "w1", "-w", w]);
    }
}

fn interactive_watches(d: &mut Differential) {
    d.err_in(&["watch", "-i"], "watch i1 --bogus\n");
    d.err_in(&["watch", "-i"], "watch i1 -w json\n");
    d.err_in(&["watch", "-i"], "watch i1 --\n");
    d.err_in(
        &["watch", "-i"],
        "notwatch\n\nwatch\nwatch a b --prefix\nwatch i1 --rev=x\n",
    );
    d.err_in(&["watch", "-i"], "watch i1");

    let rev = format!("--rev={}", revision(d) + 1);
    d.ok(&["put", "i1", "one"]);
    d.ok(&["put", "j1", "two"]);
    d.ok(&["put", "i2", "three"]);
    let mut p = Pair::same(d, &["watch", "-i"]);
    p.send(&format!("watch i1 {rev}\n"));
    p.wait_for("one");
    p.send(&format!("watch --prefix j {rev} --prev-kv\n"));
    p.wait_for("two");
    // Double quotes: etcdctl 3.5.1 cuts single-quoted words short (its
    // argify slices by the word count), which etcd fixed later.
    p.send(&format!(
        "watch i2 {rev} -- sh -c \"echo exec $ETCD_WATCH_KEY\"\n"
    ));
    p.wait_for("exec \"i2\"");
    p.send("bogus\nwatch\n");
    p.wait_for("(command type or key is not provided)");
    p.send("progress\n");
    p.wait_until(&|text: &str| text.matches("progress notify").count() == 3);
    p.finish(d);

    let mut p = Pair::same(d, &["watch", "-i", "-w", "json"]);
    p.send(&format!("watch i {rev} --prefix\n"));
    p.wait_for("dGhyZWU=");
    p.send("progress\n");
    p.wait_for("progress notify");
    p.finish(d);
}

fn locks(d: &mut Differential, names: &mut Names) {
    d.err(&["lock"]);
    d.err(&["lock", "--ttl=x", "l0"]);
    // A holder, a waiter that gets the lock after it, one that gives up.
    let first = Pair::same(d, &["lock", "l1"]);
    first.wait_for("l1/");
    let second = Pair::same(d, &["lock", "l1", "-w", "json"]);
    wait_for_count(d, "l1/", 2);
    let third = Pair::same(d, &["lock", "l1"]);
    wait_for_count(d, "l1/", 3);
    name_key(d, names, &first, "l1");
    first.signal("INT");
    second.wait_for("\"lease\":");
    let lease = Lease {
        ours: lease_in_json(&second.ours.printed()).unwrap_or(0),
        reference: lease_in_json(&second.reference.printed()).unwrap_or(0),
    };
    names.name(d, lease, Some("l1"));
    first.finish(d);
    third.signal("TERM");
    third.finish(d);
    second.signal("INT");
    second.finish(d);
    d.ok(&["get", "l1", "--prefix"]);

    // With a command: its exit status is etcdctl's.
    let script = "echo \"$ETCD_LOCK_KEY $ETCD_LOCK_REV\"; exit 3";
    let p = Pair::same(d, &["lock", "l2", "--", "sh", "-c", script]);
    p.wait_for("l2/");
    name_key(d, names, &p, "l2");
    p.finish(d);
    d.err(&["lock", "l2", "--", "sh", "-c", "kill -9 $$"]);
    d.err(&["lock", "l2", "no-such-command-here"]);
    d.ok(&["lock", "l2", "true"]);

    // The session's lease revoked under the holder.
    let p = Pair::same(d, &["lock", "l3", "--ttl=5", "-w", "fields"]);
    p.wait_for("\"Lease\" : ");
    name_key(d, names, &p, "l3");
    let lease = leases_of(&p, "l3");
    each(d, |s| strings(&["lease", "revoke", &lease.hex(s)]));
    p.finish(d);
    // The lock is taken, then the writer refuses (the key stays until
    // its lease expires). The protobuf writer's bytes hold the lease ID
    // unnormalized, so only table is compared.
    Pair::same(d, &["lock", "l4", "-w", "table"]).finish(d);
}

fn leases_of(p: &Pair, prefix: &str) -> Lease {
    Lease {
        ours: lease_in_key(&p.ours.printed(), prefix).unwrap_or(0),
        reference: lease_in_key(&p.reference.printed(), prefix).unwrap_or(0),
    }
}

/// Names the lease in the `<prefix>/<id>` key both sides printed.
fn name_key(d: &mut Differential, names: &mut Names, p: &Pair, prefix: &str) {
    names.name(d, leases_of(p, prefix), Some(prefix));
}

fn elections(d: &mut Differential, names: &mut Names) {
    d.err(&["elect"]);
    d.err(&["elect", "e1"]);
    d.err(&["elect", "e1", "p", "-l"]);
    d.err(&["elect", "a", "b", "c"]);
    d.err(&["elect", "-l=x", "e1"]);
    let observer = Pair::same(d, &["elect", "e1", "-l"]);
    let watcher = Pair::same(d, &["elect", "e1", "--listen", "-w", "json"]);
    let leader = Pair::same(d, &["elect", "e1", "p1"]);
    leader.wait_for("p1");
    observer.wait_for("p1");
    watcher.wait_for("cDE=");
    name_key(d, names, &leader, "e1");
    let next = Pair::same(d, &["elect", "e1", "p2", "-w", "fields"]);
    wait_for_count(d, "e1/", 2);
    let quitter = Pair::same(d, &["elect", "e1", "p3"]);
    wait_for_count(d, "e1/", 3);
    leader.signal("INT");
    next.wait_for("\"Lease\" : ");
    name_key(d, names, &next, "e1");
    observer.wait_for("p2");
    watcher.wait_for("cDI=");
    leader.finish(d);
    quitter.signal("TERM");
    quitter.finish(d);
    next.signal("INT");
    next.finish(d);
    observer.signal("INT");
    observer.finish(d);
    watcher.signal("TERM");
    watcher.finish(d);
    d.ok(&["get", "e1", "--prefix"]);
}

/// Mirrors `src/` to `dst/` on the same server (so each side mirrors onto
/// itself), then follows puts, deletes and a transaction.
fn mirrors(d: &mut Differential) {
    d.err(&["make-mirror"]);
    d.err(&["make-mirror", "a", "b"]);
    let (ours, reference) = (d.ours.endpoint(), d.reference.endpoint());
    each(d, |s| {
        let dest = if s == Side::Ours { &ours } else { &reference };
        strings(&["make-mirror", "--dest-prefix=x", "--no-dest-prefix", dest])
    });
    d.ok(&["put", "src/a", "1"]);
    d.ok(&["put", "src/b", "2"]);
    d.ok(&["put", "other", "3"]);
    let p = Pair::spawn(
        d,
        |s| {
            strings(&[
                "make-mirror",
                "--prefix=src/",
                "--dest-prefix=dst/",
                &endpoint(d, s),
            ])
        },
        &[],
    );
    wait_for_value(d, "dst/b", "2");
    // Each source write is waited for at the destination before the next
    // one, so the mirror's writes and ours interleave alike on both sides.
    d.ok(&["put", "src/c", "3"]);
    wait_for_value(d, "dst/c", "3");
    d.ok(&["del", "src/a"]);
    wait_for_absent(d, "dst/a");
    d.ok_in(&["txn"], "\nput src/x 1\nput src/y 2\ndel src/b\n\n\n");
    wait_for_absent(d, "dst/b");
    d.ok(&["put", "src/z", "done"]);
    wait_for_value(d, "dst/z", "done");
    p.stop(d);
    d.ok(&["get", "dst/", "--prefix", "-w", "json"]);

    // --no-dest-prefix: to the root of the destination.
    let p = Pair::spawn(
        d,
        |s| {
            strings(&[
                "make-mirror",
                "--prefix=src/",
                "--no-dest-prefix",
                &endpoint(d, s),
            ])
        },
        &[],
    );
    wait_for_value(d, "z", "done");
    p.stop(d);
    d.ok(&["get", "c"]);
    d.ok(&["get", "x", "--from-key", "--keys-only"]);
}

/// Waits (bounded) until `n` keys start with `prefix` on both servers (a
/// lock or election waiter has queued).
fn wait_for_count(d: &Differential, prefix: &str, n: usize) {
    let want = format!("\"Count\" : {n}\n");
    for endpoint in [d.ours.endpoint(), d.reference.endpoint()] {
        let deadline = Instant::now() + PRINT_WAIT;
        let args = ["get", prefix, "--prefix", "--count-only", "-w", "fields"];
        while Instant::now() < deadline && !d.ctl.run(&endpoint, &args, None).stdout.contains(&want)
        {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn endpoint(d: &Differential, side: Side) -> String {
    match side {
        Side::Ours => d.ours.endpoint(),
        Side::Reference => d.reference.endpoint(),
    }
}

/// Waits (bounded) until `key` holds `value` on both servers.
fn wait_for_value(d: &Differential, key: &str, value: &str) {
    wait_for(d, key, Some(value));
}

/// Waits (bounded) on both sides until `key` is gone.
fn wait_for_absent(d: &Differential, key: &str) {
    wait_for(d, key, None);
}

/// Waits (bounded) on both sides until `key` holds `value` (`None`: no key).
fn wait_for(d: &Differential, key: &str, value: Option<&str>) {
    let want = value.map_or(String::new(), |v| format!("{v}\n"));
    for endpoint in [d.ours.endpoint(), d.reference.endpoint()] {
        let deadline = Instant::now() + PRINT_WAIT;
        while Instant::now() < deadline {
            let out = d
                .ctl
                .run(&endpoint, &["get", key, "--print-value-only"], None);
            if out.stdout == want {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// etcd 3.6's `make-mirror --rev` and `--max-txn-ops`, on our etcdctl
/// alone (etcdctl 3.5.1 has neither): from `--rev` only later events are
/// copied, and a transaction of three puts arrives as three of at most one.
fn mirror_flags_of_36(d: &mut Differential) {
    let ctl = d.ours_ctl.clone();
    let endpoint = d.ours.endpoint();
    let run = |args: &[&str]| ctl.run(&endpoint, args, None);
    let rev_of = |out: &Output| -> i64 {
        let at = out.stdout.find("\"revision\":").expect("revision") + "\"revision\":".len();
        let digits: String = out.stdout[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().expect("revision")
    };
    assert_eq!(run(&["put", "r/old", "1"]).code, 0);
    let from = rev_of(&run(&["get", "r/old", "-w", "json"])) + 1;
    assert_eq!(run(&["put", "r/new", "2"]).code, 0);
    let txn = b"\nput r/t1 a\nput r/t2 b\nput r/t3 c\n\n\n";
    assert_eq!(ctl.run(&endpoint, &["txn"], Some(txn)).code, 0);
    let mirror = Running::spawn(
        &ctl,
        &endpoint,
        &strings(&[
            "make-mirror",
            &format!("--rev={from}"),
            "--max-txn-ops=1",
            "--prefix=r/",
            "--dest-prefix=rd/",
            &endpoint,
        ]),
        &[],
    );
    let deadline = Instant::now() + PRINT_WAIT;
    let mut copied = Output::default();
    while Instant::now() < deadline {
        copied = run(&["get", "rd/", "--prefix", "-w", "json"]);
        if copied.stdout.contains("\"count\":4") {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    mirror.signal("KILL");
    let out = mirror.finish();
    assert!(
        copied.stdout.contains("\"count\":4"),
        "rd/: {copied:?} ({out:?})"
    );
    let keys = run(&["get", "rd/", "--prefix", "--keys-only"]).stdout;
    assert_eq!(keys, "rd/new\n\nrd/t1\n\nrd/t2\n\nrd/t3\n\n");
    // rd/new, then t1, t2, t3 in transactions of their own.
    let mods: Vec<i64> = ["rd/t1", "rd/t2", "rd/t3"]
        .iter()
        .map(|k| {
            let out = run(&["get", k, "-w", "json"]);
            let at = out.stdout.find("\"mod_revision\":").expect("mod_revision") + 15;
            let digits: String = out.stdout[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().expect("mod_revision")
        })
        .collect();
    assert_eq!(mods[1], mods[0] + 1, "{mods:?}");
    assert_eq!(mods[2], mods[1] + 1, "{mods:?}");
    // etcdctl 3.5.1 does not know these flags.
    let old = d.ctl.run(
        &d.reference.endpoint(),
        &["make-mirror", "--rev=1", "x"],
        None,
    );
    assert_eq!(old.code, 1, "{old:?}");
}

fn corpus(d: &mut Differential) {
    let mut names = Names::default();
    leases(d, &mut names);
    watches(d);
    interactive_watches(d);
    locks(d, &mut names);
    elections(d, &mut names);
    mirrors(d);
    mirror_flags_of_36(d);
    assert!(d.invocations() >= 45, "{} invocations", d.invocations());
}

#[test]
fn etcdctl_watch_lease_lock_against_our_server() {
    let mut d = Differential::ctls(Kind::Ours, &[]);
    corpus(&mut d);
    d.finish();
}

#[test]
fn etcdctl_watch_lease_lock_against_etcd_35() {
    let mut d = Differential::ctls(Kind::Ref35, &[]);
    corpus(&mut d);
    d.finish();
}

#[test]
fn etcdctl_watch_lease_lock_against_etcd_34() {
    let mut d = Differential::ctls(Kind::Ref34, &[]);
    corpus(&mut d);
    d.finish();
}
