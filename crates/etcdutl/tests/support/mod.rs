//! Running the etcdutl binary from the crate's tests.

#![allow(dead_code)]

use std::process::Command;

/// What one run printed, and its exit code.
pub struct Run {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// Runs our etcdutl with `args` (it works offline and ends on its own).
pub fn etcdutl(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_etcdutl"))
        .args(args)
        .output()
        .expect("run etcdutl");
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

/// The last line of stderr: etcd's tools end with `Error: …`.
pub fn error_line(run: &Run) -> &str {
    run.stderr.lines().last().unwrap_or_default()
}
