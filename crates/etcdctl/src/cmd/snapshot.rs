//! `snapshot save <file>`: the member's backend streamed into `<file>.part`,
//! checked, synced, then renamed to `<file>`. `snapshot status` and
//! `snapshot restore` work as etcdctl 3.5 keeps them for scripts written
//! for 3.4: a deprecation notice, then `etcdutl`'s command (our `etcdutl`,
//! found beside this binary or on `PATH`, runs with the same arguments).
//!
//! - Exactly one endpoint: a snapshot is one member's database.
//! - The stream ends with the SHA-256 of everything before it, the whole
//!   padded to a multiple of 512 bytes plus the 32-byte digest; the digest
//!   is checked as the bytes arrive and kept in the file (restore checks it
//!   again).
//! - Progress goes to stderr as etcdctl's zap logger writes it (JSON lines);
//!   without `--command-timeout` the download has no deadline.
//! - Failures exit with code 5 (etcdctl's `ExitInterrupted`) and leave no
//!   `.part` file behind.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use api::etcdserverpb::SnapshotRequest;

use crate::client::Client;
use crate::cmd::Ctx;
use crate::error::{CtlError, CtlResult, EXIT_INTERRUPTED};

/// Size of the digest that ends a snapshot.
const DIGEST_BYTES: usize = 32;
/// A snapshot's data is padded to this multiple before its digest.
const SNAPSHOT_ALIGN_BYTES: u64 = 512;

#[derive(Args, Debug)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Stores an etcd node backend snapshot to a given file
    Save(SaveArgs),
    /// [deprecated] Gets backend snapshot status of a given file
    Status(OfflineArgs),
    /// Restores an etcd member snapshot to an etcd directory
    Restore(OfflineArgs),
}

/// The arguments of a command `etcdutl` runs, passed on as they are.
#[derive(Args, Debug)]
pub struct OfflineArgs {
    #[arg(
        value_name = "filename",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// <filename>
    #[arg(value_name = "filename")]
    pub args: Vec<String>,
}

pub async fn run(ctx: &Ctx, a: SnapshotArgs) -> CtlResult {
    match a.command {
        SnapshotCommand::Save(s) => save(ctx, s).await,
        SnapshotCommand::Status(a) => offline(ctx, "status", a),
        SnapshotCommand::Restore(a) => offline(ctx, "restore", a),
    }
}

/// `etcdutl snapshot <command>` with the same arguments, after etcdctl
/// 3.5's notice; its output is etcdutl's and so is its exit code.
fn offline(ctx: &Ctx, command: &str, a: OfflineArgs) -> CtlResult {
    eprintln!("Deprecated: Use `etcdutl snapshot {command}` instead.\n");
    let beside = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("etcdutl"))
        .filter(|p| p.is_file());
    let etcdutl = beside.unwrap_or_else(|| std::path::PathBuf::from("etcdutl"));
    let status = std::process::Command::new(&etcdutl)
        .arg("snapshot")
        .arg(command)
        .args(&a.args)
        .arg(format!("--write-out={}", ctx.global.write_out))
        .status()
        .map_err(|e| CtlError::error(format!("cannot run {}: {e}", etcdutl.display())))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(CtlError::exit(u8::try_from(code).unwrap_or(1))),
        None => Err(CtlError::exit(1)),
    }
}

pub async fn save(ctx: &Ctx, a: SaveArgs) -> CtlResult {
    let [path] = a.args.as_slice() else {
        return Err(CtlError::bad_args("snapshot save expects one argument"));
    };
    let config = ctx.global.client_config()?;
    let interrupted = |e: CtlError| e.with_code(EXIT_INTERRUPTED);
    let [endpoint] = config.endpoints.as_slice() else {
        return Err(CtlError::new(
            EXIT_INTERRUPTED,
            format!(
                "snapshot must be requested to one selected node, not multiple [{}]",
                config.endpoints.join(" ")
            ),
        ));
    };
    let timeout = command_timeout_given().then_some(config.command_timeout);
    let part = format!("{path}.part");
    let file = OpenOptions::new()
        .mode(0o600)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&part)
        .map_err(|e| {
            CtlError::new(
                EXIT_INTERRUPTED,
                format!(
                    "could not open {part} ({})",
                    go_path_error("open", &part, &e)
                ),
            )
        })?;
    log(
        "snapshot/v3_snapshot.go:65",
        None,
        "created temporary db file",
        &[("path", &part)],
    );
    let saved = async {
        let client = Client::connect_to(&config, endpoint).await?;
        let download = download(&client, endpoint, file, &part, path);
        match timeout {
            Some(t) => tokio::time::timeout(t, download)
                .await
                .unwrap_or_else(|_| Err(CtlError::deadline())),
            None => download.await,
        }
    }
    .await;
    let version = match saved {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(interrupted(e));
        }
    };
    println!("Snapshot saved at {path}");
    if !version.is_empty() {
        println!("Server version {version}");
    }
    Ok(())
}

/// Streams the snapshot into `file`, checks and syncs it, renames it to
/// `path`; the server's version.
async fn download(
    client: &Client,
    endpoint: &str,
    mut file: File,
    part: &str,
    path: &str,
) -> CtlResult<String> {
    let started = Instant::now();
    let mut stream = client
        .maintenance()
        .snapshot(SnapshotRequest {})
        .await
        .map_err(|s| CtlError::from_status(&s))?
        .into_inner();
    log(
        "v3/maintenance.go:237",
        Some("client"),
        "opened snapshot stream; downloading",
        &[],
    );
    log(
        "snapshot/v3_snapshot.go:73",
        None,
        "fetching snapshot",
        &[("endpoint", endpoint)],
    );
    let mut check = TrailerCheck::default();
    let mut version = String::new();
    loop {
        let msg = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(status) => return Err(CtlError::from_status(&status)),
        };
        if version.is_empty() {
            version = msg.version.clone();
        }
        file.write_all(&msg.blob)
            .map_err(|e| CtlError::error(format!("write {part}: {e}")))?;
        check.push(&msg.blob);
    }
    log(
        "v3/maintenance.go:302",
        Some("client"),
        "completed snapshot read; closing",
        &[],
    );
    let size = check.size;
    check.finish()?;
    file.sync_all()
        .map_err(|e| CtlError::error(format!("fsync {part}: {e}")))?;
    drop(file);
    log(
        "snapshot/v3_snapshot.go:88",
        None,
        "fetched snapshot",
        &[
            ("endpoint", endpoint),
            ("size", &gofmt::bytes::humanize(size)),
            ("took", &gofmt::duration::format(started.elapsed())),
            ("etcd-version", &version),
        ],
    );
    std::fs::rename(part, path).map_err(|e| {
        CtlError::error(format!(
            "could not rename {part} to {path} ({})",
            go_path_error("rename", &format!("{part} {path}"), &e)
        ))
    })?;
    log(
        "snapshot/v3_snapshot.go:97",
        None,
        "saved",
        &[("path", path)],
    );
    Ok(version)
}

/// The SHA-256 of everything but the last 32 bytes, compared with them.
#[derive(Default)]
struct TrailerCheck {
    hasher: Sha256,
    /// The last bytes seen (at most 32): the digest, once the stream ends.
    tail: Vec<u8>,
    size: u64,
}

impl TrailerCheck {
    fn push(&mut self, chunk: &[u8]) {
        self.size += chunk.len() as u64;
        self.tail.extend_from_slice(chunk);
        if self.tail.len() > DIGEST_BYTES {
            let keep_from = self.tail.len() - DIGEST_BYTES;
            self.hasher.update(&self.tail[..keep_from]);
            self.tail.drain(..keep_from);
        }
    }

    /// etcd's `hasChecksum` size rule, then the digest itself.
    fn finish(self) -> CtlResult {
        if self.size % SNAPSHOT_ALIGN_BYTES != DIGEST_BYTES as u64 {
            return Err(CtlError::error(format!(
                "sha256 checksum not found [bytes: {}]",
                self.size
            )));
        }
        let computed = self.hasher.finalize();
        if computed.as_slice() != self.tail.as_slice() {
            return Err(CtlError::error(format!(
                "expected sha256 {}, got {}",
                go_bytes(&self.tail),
                go_bytes(computed.as_slice())
            )));
        }
        Ok(())
    }
}

/// Go's `%v` of a `[]byte`: `[1 2 3]`.
fn go_bytes(b: &[u8]) -> String {
    let items: Vec<String> = b.iter().map(u8::to_string).collect();
    format!("[{}]", items.join(" "))
}

/// An `os.PathError` (or `LinkError`) as Go prints it:
/// `open x: no such file or directory`.
fn go_path_error(op: &str, path: &str, e: &std::io::Error) -> String {
    let reason = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => {
            let text = e.to_string();
            // Rust appends " (os error N)"; Go does not.
            let text = text.split(" (os error").next().unwrap_or(&text);
            let mut chars = text.chars();
            match chars.next() {
                Some(c) => c.to_lowercase().collect::<String>() + chars.as_str(),
                None => String::new(),
            }
        }
    };
    format!("{op} {path}: {reason}")
}

/// Whether `--command-timeout` was given (flag or environment): only then
/// does the download have a deadline.
fn command_timeout_given() -> bool {
    std::env::var_os("ETCDCTL_COMMAND_TIMEOUT").is_some()
        || std::env::args().any(|a| a == "--command-timeout" || a.starts_with("--command-timeout="))
}

/// One line of etcdctl's zap logger (JSON, info level) on stderr.
fn log(caller: &str, logger: Option<&str>, msg: &str, fields: &[(&str, &str)]) {
    let mut m = Map::new();
    m.insert("level".into(), Json::from("info"));
    m.insert("ts".into(), Json::from(timestamp(SystemTime::now())));
    if let Some(l) = logger {
        m.insert("logger".into(), Json::from(l));
    }
    m.insert("caller".into(), Json::from(caller));
    m.insert("msg".into(), Json::from(msg));
    for (k, v) in fields {
        m.insert((*k).to_string(), Json::from(*v));
    }
    eprintln!("{}", crate::output::go_json_text(&Json::Object(m)));
}

/// zap's ISO 8601 time with microseconds, in UTC:
/// `2025-05-15T10:00:00.123456+0000`.
fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, mo, da) = civil_from_days(days as i64);
    format!(
        "{y:04}-{mo:02}-{da:02}T{:02}:{:02}:{:02}.{:06}+0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_trailer_is_checked() {
        let data = vec![7u8; 512];
        let digest = Sha256::digest(&data);
        let mut good = TrailerCheck::default();
        good.push(&data[..100]);
        good.push(&data[100..]);
        good.push(&digest[..10]);
        good.push(&digest[10..]);
        assert!(good.finish().is_ok());

        let mut bad = TrailerCheck::default();
        bad.push(&data);
        bad.push(&[0u8; 32]);
        assert!(bad
            .finish()
            .unwrap_err()
            .message
            .starts_with("expected sha256 [0 0"));

        let mut short = TrailerCheck::default();
        short.push(&data);
        assert_eq!(
            short.finish().unwrap_err().message,
            "sha256 checksum not found [bytes: 512]"
        );
    }

    #[test]
    fn timestamps_are_iso_8601() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(timestamp(t), "2023-11-14T22:13:20.123456+0000");
    }
}
