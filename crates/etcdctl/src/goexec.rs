//! Running a user's command as Go's `os/exec` does for etcdctl (`watch …
//! -- cmd`, `lock name cmd`): found on `$PATH` like `exec.LookPath`, run
//! with inherited stdio, and failures worded as Go words them
//! (`exit status 3`, `signal: killed`, `exec: "x": executable file not
//! found in $PATH`), since etcdctl prints those texts.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a command did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecError {
    /// Go's error text.
    pub text: String,
    /// The exit code Go's `WaitStatus.ExitStatus()` reports: the status, or
    /// -1 after a signal; `None` when the command did not run.
    pub status: Option<i32>,
}

/// Go's `%q` of a `[]string`: `["sh" "-c" "exit 3"]`.
pub fn quote_args(args: &[String]) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| gofmt::quote::quote(a.as_bytes()))
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// Runs `args[0]` with the rest as arguments and `env` added to the
/// environment (or, with `env_first`, only where the environment lacks the
/// name: Go keeps the last of duplicate entries), and waits for it.
pub fn run(args: &[String], env: &[(String, String)], env_first: bool) -> Result<(), ExecError> {
    let Some(name) = args.first() else {
        return Err(ExecError {
            text: "exec: no command".into(),
            status: None,
        });
    };
    let path = look_path(name).map_err(|text| ExecError { text, status: None })?;
    // stdout is shared with the command: what we printed goes first.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let mut command = Command::new(&path);
    command.arg0(name).args(&args[1..]);
    for (key, value) in env {
        if !env_first || std::env::var_os(key).is_none() {
            command.env(key, value);
        }
    }
    let status = command.status().map_err(|e| ExecError {
        text: format!("fork/exec {}: {}", path.display(), errno_text(&e)),
        status: None,
    })?;
    if status.success() {
        return Ok(());
    }
    if let Some(code) = status.code() {
        return Err(ExecError {
            text: format!("exit status {code}"),
            status: Some(code),
        });
    }
    let signal = status.signal().unwrap_or(0);
    let mut text = format!("signal: {}", signal_name(signal));
    if status.core_dumped() {
        text.push_str(" (core dumped)");
    }
    Err(ExecError {
        text,
        status: Some(-1),
    })
}

/// `exec.LookPath`: a name with a slash is used as it is, others are
/// searched on `$PATH` (an empty entry is the current directory).
fn look_path(name: &str) -> Result<PathBuf, String> {
    let quoted = gofmt::quote::quote(name.as_bytes());
    if name.contains('/') {
        return match executable(Path::new(name)) {
            Ok(()) => Ok(PathBuf::from(name)),
            Err(e) => Err(format!("exec: {quoted}: {e}")),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(name);
        if executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "exec: {quoted}: executable file not found in $PATH"
    ))
}

/// Go's `findExecutable`: a file (not a directory) with an execute bit.
fn executable(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("stat {}: {}", path.display(), errno_text(&e)))?;
    if meta.is_dir() {
        return Err("is a directory".into());
    }
    if meta.permissions().mode() & 0o111 != 0 {
        Ok(())
    } else {
        Err("permission denied".into())
    }
}

/// An OS error as Go's `syscall.Errno` prints it ("no such file or directory").
fn errno_text(e: &std::io::Error) -> String {
    let text = match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
        None => e.to_string(),
    };
    let text = match text.find(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().collect::<String>() + chars.as_str(),
        None => text,
    }
}

/// Go's `syscall.Signal.String()` on Linux.
fn signal_name(signal: i32) -> String {
    let name = match signal {
        1 => "hangup",
        2 => "interrupt",
        3 => "quit",
        4 => "illegal instruction",
        5 => "trace/breakpoint trap",
        6 => "aborted",
        7 => "bus error",
        8 => "floating point exception",
        9 => "killed",
        10 => "user defined signal 1",
        11 => "segmentation fault",
        12 => "user defined signal 2",
        13 => "broken pipe",
        14 => "alarm clock",
        15 => "terminated",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_read_as_go_prints_them() {
        let sh = |script: &str| vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        assert_eq!(run(&sh("exit 0"), &[], false), Ok(()));
        assert_eq!(
            run(&sh("exit 3"), &[], false),
            Err(ExecError {
                text: "exit status 3".into(),
                status: Some(3)
            })
        );
        assert_eq!(
            run(&sh("kill -9 $$"), &[], false).unwrap_err().text,
            "signal: killed"
        );
        assert_eq!(
            run(&["no-such-command-here".to_string()], &[], false)
                .unwrap_err()
                .text,
            "exec: \"no-such-command-here\": executable file not found in $PATH"
        );
        assert_eq!(
            run(&["./no/such".to_string()], &[], false)
                .unwrap_err()
                .text,
            "exec: \"./no/such\": stat ./no/such: no such file or directory"
        );
        let env = [("ETCD_RS_EXEC_TEST".to_string(), "7".to_string())];
        assert_eq!(
            run(&sh("exit $ETCD_RS_EXEC_TEST"), &env, false)
                .unwrap_err()
                .status,
            Some(7)
        );
    }

    #[test]
    fn argument_lists_quote_as_go() {
        let args = [
            "sh".to_string(),
            "-c".to_string(),
            "echo \"hi\"".to_string(),
        ];
        assert_eq!(quote_args(&args), r#"["sh" "-c" "echo \"hi\""]"#);
    }
}
