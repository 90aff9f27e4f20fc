//! Reading passwords as etcdctl does.
//!
//! - [`ask`] is speakeasy's `Ask`, which etcdctl uses for `--user name` and
//!   interactive `user add`/`user passwd`: the prompt on stdout, terminal
//!   echo turned off by running `/bin/stty -echo` on stdin (and `stty echo`
//!   after), one line read byte by byte, then a newline on stdout. On a
//!   stdin that is not a terminal `stty` complains on stderr and the line is
//!   read all the same, so scripts that pipe a password see what they see
//!   with etcdctl. Without `/bin/stty`, echo is switched through termios.
//! - [`scan_word`] is Go's `fmt.Scanf("%s", &password)`, which
//!   `--interactive=false` uses: one whitespace-delimited word from stdin.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

const STTY: &str = "/bin/stty";

/// Prints `prompt`, reads one line with echo off, prints a newline; the
/// line with surrounding whitespace trimmed.
pub fn ask(prompt: &str) -> Result<String, String> {
    let mut out = std::io::stdout();
    let _ = out.write_all(prompt.as_bytes());
    let _ = out.flush();
    let restore = echo_off();
    let line = read_line();
    restore.run();
    let _ = out.write_all(b"\n");
    let _ = out.flush();
    Ok(line
        .map_err(|e| format!("failed during password entry: {e}"))?
        .trim()
        .to_string())
}

/// How to turn echo back on.
enum Restore {
    Stty,
    Termios(rustix::termios::Termios),
    Nothing,
}

impl Restore {
    fn run(self) {
        let stdin = std::io::stdin();
        match self {
            Restore::Stty => stty("echo"),
            Restore::Termios(attrs) => {
                let _ = rustix::termios::tcsetattr(
                    &stdin,
                    rustix::termios::OptionalActions::Now,
                    &attrs,
                );
            }
            Restore::Nothing => {}
        }
    }
}

fn echo_off() -> Restore {
    if std::path::Path::new(STTY).exists() {
        stty("-echo");
        return Restore::Stty;
    }
    let stdin = std::io::stdin();
    match rustix::termios::tcgetattr(&stdin) {
        Ok(attrs) => {
            let mut quiet = attrs.clone();
            quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
            let _ =
                rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet);
            Restore::Termios(attrs)
        }
        Err(_) => Restore::Nothing,
    }
}

/// Runs `stty <arg>` on our stdin, stdout and stderr (its complaints
/// included), as speakeasy does.
fn stty(arg: &str) {
    use std::os::unix::process::CommandExt;
    let _ = Command::new(STTY)
        .arg0("stty")
        .arg(arg)
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status();
}

/// Bytes up to a newline or the end of input (never more: the rest of
/// stdin stays for the next question), without a trailing `\r`.
fn read_line() -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut stdin = std::io::stdin().lock();
    let mut byte = [0u8; 1];
    loop {
        match stdin.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// `fmt.Scanf("%s")` on stdin: an empty string when input ends or a
/// newline comes before any word.
pub fn scan_word() -> String {
    scan_word_from(&mut std::io::stdin().lock())
}

fn scan_word_from(input: &mut impl Read) -> String {
    let mut next = || {
        let mut byte = [0u8; 1];
        match input.read(&mut byte) {
            Ok(1) => Some(byte[0]),
            _ => None,
        }
    };
    let mut word = Vec::new();
    let mut c = next();
    // Leading blanks are skipped; a newline (or \r\n) ends the scan.
    while let Some(b) = c {
        match b {
            b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c' => c = next(),
            _ => break,
        }
    }
    while let Some(b) = c {
        if b.is_ascii_whitespace() || b == b'\x0b' {
            break;
        }
        word.push(b);
        c = next();
    }
    String::from_utf8_lossy(&word).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanf_takes_one_word() {
        let scan = |s: &str| scan_word_from(&mut s.as_bytes());
        assert_eq!(scan("secret more\n"), "secret");
        assert_eq!(scan("  tok  en"), "tok");
        assert_eq!(scan("\nabc"), "");
        assert_eq!(scan(""), "");
        assert_eq!(scan("pw\r\n"), "pw");
    }
}
