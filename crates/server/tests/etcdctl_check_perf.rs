//! `etcdctl check perf` and `check datascale`, end to end.
//!
//! - Our etcdctl's `check perf --load=s` (60 s at 150 writes/s from 50
//!   clients) against our server must pass: every criterion's `PASS:` line,
//!   then `PASS`, exit code 0, and the check's keys deleted afterwards. The
//!   line shapes are etcdctl 3.5.1's, as it prints them against etcd 3.5.1:
//!   a progress line redrawn with `\r` (` 12 / 60   20.00% 00m48s`), then
//!   `PASS: Throughput is 143 writes/s`, `PASS: Slowest request took
//!   0.052160s`, `PASS: Stddev is 0.002688s`, `PASS`.
//! - `check datascale` runs with our etcdctl against our server and with
//!   etcdctl 3.5.1 against etcd 3.5.1; the outputs must have the same shape
//!   (numbers and the progress line aside).
//!
//! This is the suite's one long test (about 75 s); it runs alone in its
//! binary so that nothing else loads the machine during the perf window.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{EtcdProcess, Etcdctl, Kind};

/// The perf check runs 60 s; connecting, cleaning up and a loaded machine
/// get the rest.
const CHECK_TIMEOUT: Duration = Duration::from_secs(180);

struct Run {
    stdout: String,
    stderr: String,
    code: i32,
}

/// `etcdctl --endpoints=<endpoint> <args>`, killed after CHECK_TIMEOUT.
fn run_long(ctl: &Path, endpoint: &str, args: &[&str]) -> Run {
    let mut child = Command::new(ctl)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", ctl.display()));
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let stdout = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let stderr = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + CHECK_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for etcdctl") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("etcdctl {args:?} did not finish within {CHECK_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(100));
    };
    Run {
        stdout: String::from_utf8_lossy(&stdout.join().expect("stdout reader")).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned(),
        code: status.code().unwrap_or(-1),
    }
}

/// Every number (digits with a `.` or a leading `-`) as `N`.
fn numbers_masked(line: &str) -> String {
    let mut out = String::new();
    let mut in_number = false;
    for c in line.chars() {
        let part = c.is_ascii_digit() || (in_number && c == '.');
        if part {
            if !in_number {
                out.push('N');
                in_number = true;
            }
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out.replace(" -N", " N")
}

/// The lines after the progress line (which is redrawn with `\r` and ends
/// with a newline once finished).
fn after_progress(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| l.rsplit('\r').next().unwrap_or(l).to_string())
        .filter(|l| !l.starts_with(' '))
        .collect()
}

fn stderr_without_logs(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with("{\"level\":"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn check_perf_passes_on_our_server_and_datascale_has_etcdctls_shape() {
    let ours = EtcdProcess::start(Kind::Ours, &[]);
    let ctl = Etcdctl::ours();

    let perf = run_long(&ctl.bin, &ours.endpoint(), &["check", "perf", "--load=s"]);
    assert_eq!(
        (perf.code, stderr_without_logs(&perf.stderr).as_str()),
        (0, ""),
        "check perf failed:\n{}\n{}",
        perf.stdout,
        perf.stderr
    );
    assert!(
        perf.stdout.starts_with("\r 0 / 60    0.00%"),
        "progress line: {:?}",
        &perf.stdout[..perf.stdout.len().min(80)]
    );
    assert!(
        perf.stdout.contains("\r 60 / 60  100.00% "),
        "{}",
        perf.stdout
    );
    let results: Vec<String> = after_progress(&perf.stdout)
        .iter()
        .map(|l| numbers_masked(l))
        .collect();
    assert_eq!(
        results,
        [
            "PASS: Throughput is N writes/s",
            "PASS: Slowest request took Ns",
            "PASS: Stddev is Ns",
            "PASS",
        ],
        "{}",
        perf.stdout
    );
    let left = ctl.run(
        &ours.endpoint(),
        &["get", "/etcdctl-check-perf/", "--prefix", "--keys-only"],
        None,
    );
    assert_eq!((left.code, left.stdout.as_str()), (0, ""), "{left:?}");

    // datascale: our etcdctl on our server, etcdctl 3.5.1 on etcd 3.5.1.
    let reference = EtcdProcess::start(Kind::Ref35, &[]);
    let ref_ctl = Etcdctl::reference(Kind::Ref35);
    let ours_ds = run_long(&ctl.bin, &ours.endpoint(), &["check", "datascale"]);
    let ref_ds = run_long(&ref_ctl.bin, &reference.endpoint(), &["check", "datascale"]);
    let shape = |r: &Run| {
        (
            r.code,
            after_progress(&r.stdout)
                .iter()
                .map(|l| numbers_masked(l))
                .collect::<Vec<_>>(),
            stderr_without_logs(&r.stderr),
        )
    };
    assert_eq!(
        shape(&ours_ds),
        shape(&ref_ds),
        "check datascale differs from etcdctl 3.5.1's:\n--- ours:\n{}\n--- etcd:\n{}",
        ours_ds.stdout,
        ref_ds.stdout
    );
    assert_eq!(ours_ds.code, 0, "{}", ours_ds.stdout);
    assert!(
        ours_ds.stdout.contains("\r 10000 / 10000  100.00% "),
        "{}",
        ours_ds.stdout
    );
}

#[test]
fn number_masking() {
    assert_eq!(
        numbers_masked("PASS: Approximate system memory used : -17.89 MB."),
        "PASS: Approximate system memory used : N MB."
    );
    assert_eq!(
        after_progress("\r 0 / 9    0.00%\r 9 / 9  100.00% 1s\nPASS\n"),
        ["PASS"]
    );
}
