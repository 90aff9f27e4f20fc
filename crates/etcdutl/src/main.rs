//! `etcdutl`: etcd's offline utility, for data directories and snapshot
//! files (no server needed). Flags, output, errors and exit codes follow
//! etcd 3.6's `etcdutl`; the work is done by the `datadir` crate
//! (`datadir::restore`, `datadir::snapshot_file`, `datadir::offline`,
//! `datadir::migrate`), so this binary only parses and prints, and links
//! no server.
//!
//! Commands: `version`, `snapshot status <file>`, `snapshot restore <file>`,
//! `defrag --data-dir`, `hashkv <file>`, `migrate --data-dir
//! --target-version`, `completion <shell>`. As with cobra, a unique prefix
//! of a command name works (`etcdutl snap status`).

// The doc comments on commands and flags are clap's help text, written in
// etcd's words (`<key> [range_end]`), not rustdoc links or HTML.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

mod ops;
mod printer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use printer::OutputFormat;

/// cobrautl's exit codes.
pub(crate) const EXIT_ERROR: u8 = 1;
pub(crate) const EXIT_BAD_FEATURE: u8 = 4;
pub(crate) const EXIT_BAD_ARGS: u8 = 128;

/// etcd's defaults for a restore.
const DEFAULT_NAME: &str = "default";
const DEFAULT_INITIAL_ADVERTISE_PEER_URLS: &str = "http://localhost:2380";

#[derive(Parser)]
#[command(
    name = "etcdutl",
    about = "An administrative command line tool for etcd3."
)]
#[command(
    disable_version_flag = true,
    arg_required_else_help = true,
    infer_subcommands = true
)]
pub(crate) struct Cli {
    /// set the output format (fields, json, protobuf, simple, table)
    #[arg(
        short = 'w',
        long = "write-out",
        default_value = "simple",
        global = true
    )]
    write_out: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Defragments the storage of the etcd
    Defrag {
        /// Required. Defragments a data directory not in use by etcd.
        #[arg(long = "data-dir", value_name = "string")]
        data_dir: Option<String>,
    },
    /// Manages etcd node snapshots
    #[command(arg_required_else_help = true, infer_subcommands = true)]
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Prints the KV history hash of a given file
    Hashkv {
        #[arg(value_name = "filename")]
        files: Vec<String>,
        /// maximum revision to hash (default: latest revision)
        #[arg(long = "rev", value_name = "int", default_value = "0")]
        rev: String,
    },
    /// Prints the version of etcdutl
    Version,
    /// Generate completion script
    Completion {
        #[arg(value_name = "bash|zsh|fish|powershell")]
        shells: Vec<String>,
    },
    /// Migrates schema of etcd data dir files to make them compatible with different etcd version
    Migrate(MigrateArgs),
}

#[derive(Args)]
struct MigrateArgs {
    /// Path to the etcd data dir
    #[arg(long = "data-dir", value_name = "string")]
    data_dir: Option<String>,
    /// Target etcd version to migrate contents of data dir. Minimal value 3.5. Format "X.Y" for example 3.6.
    #[arg(long = "target-version", value_name = "string")]
    target_version: Option<String>,
    /// Ignore migration failure and forcefully override storage version. Not recommended.
    #[arg(long = "force", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true")]
    force: bool,
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Gets backend snapshot status of a given file
    Status {
        #[arg(value_name = "filename")]
        files: Vec<String>,
    },
    /// Restores an etcd member snapshot to an etcd directory
    Restore(RestoreArgs),
    /// Stores an etcd node backend snapshot to a given file (use etcdctl)
    #[command(hide = true)]
    Save {
        #[arg(value_name = "filename")]
        files: Vec<String>,
    },
}

#[derive(Args)]
struct RestoreArgs {
    #[arg(value_name = "filename")]
    files: Vec<String>,
    /// Path to the output data directory (default: <name>.etcd)
    #[arg(long = "data-dir", default_value = "")]
    data_dir: String,
    /// Path to the WAL directory (use --data-dir if none given)
    #[arg(long = "wal-dir", default_value = "")]
    wal_dir: String,
    /// Initial cluster configuration for restore bootstrap
    #[arg(
        long = "initial-cluster",
        default_value = "default=http://localhost:2380"
    )]
    initial_cluster: String,
    /// Initial cluster token for the etcd cluster during restore bootstrap
    #[arg(long = "initial-cluster-token", default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster
    #[arg(long = "initial-advertise-peer-urls", default_value = DEFAULT_INITIAL_ADVERTISE_PEER_URLS)]
    initial_advertise_peer_urls: String,
    /// Human-readable name for this member
    #[arg(long = "name", default_value = DEFAULT_NAME)]
    name: String,
    /// Ignore snapshot integrity hash value (required if copied from data directory)
    #[arg(long = "skip-hash-check", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true")]
    skip_hash_check: bool,
    /// How much to increase the latest revision after restore
    #[arg(long = "bump-revision", default_value_t = 0)]
    bump_revision: u64,
    /// Mark the latest revision after restore as the point of scheduled compaction (required if --bump-revision > 0, disallowed otherwise)
    #[arg(long = "mark-compacted", num_args = 0..=1, require_equals = true,
          default_value = "false", default_missing_value = "true")]
    mark_compacted: bool,
}

/// A failure with the exit code etcd's tools use for it.
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn error(e: anyhow::Error) -> Failure {
        Failure::new(EXIT_ERROR, format!("{e:#}"))
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return parse_failure(e),
    };
    // hashkv logs nothing (etcd gives it a no-op logger); the others log
    // what they do, as etcd's backend and restore do.
    let level = match cli.command {
        Command::Hashkv { .. } => tracing::Level::WARN,
        _ => tracing::Level::INFO,
    };
    gofmt::zap::init_console(level);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("Error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Defrag { data_dir } => ops::defrag(data_dir.as_deref()),
        Command::Hashkv { files, rev } => ops::hash_kv(&files, &rev, &cli.write_out),
        Command::Completion { shells } => ops::completion(&shells),
        Command::Migrate(args) => ops::migrate(
            args.data_dir.as_deref(),
            args.target_version.as_deref(),
            args.force,
        ),
        Command::Version => {
            println!("etcdutl version: {}", datadir::membership::SERVER_VERSION);
            println!("API version: {}", api_version());
            println!("etcd-rs version: {}", datadir::BUILD_VERSION);
            Ok(())
        }
        Command::Snapshot { command } => match command {
            SnapshotCommand::Status { files } => snapshot_status(&files, &cli.write_out),
            SnapshotCommand::Restore(args) => snapshot_restore(args),
            SnapshotCommand::Save { .. } => {
                eprintln!(
                    "Command \"save\" is deprecated, Use `etcdctl snapshot save` to download snapshot"
                );
                Err(Failure::new(
                    EXIT_BAD_ARGS,
                    "In order to download snapshot use: `etcdctl snapshot save ...`",
                ))
            }
        },
    }
}

/// "3.6" of "3.6.0".
fn api_version() -> &'static str {
    let v = datadir::membership::SERVER_VERSION;
    v.rsplit_once('.').map_or(v, |(major_minor, _)| major_minor)
}

fn snapshot_status(files: &[String], write_out: &str) -> Result<(), Failure> {
    let [file] = files else {
        return Err(Failure::new(
            EXIT_BAD_ARGS,
            "snapshot status requires exactly one argument",
        ));
    };
    let path = PathBuf::from(file);
    std::fs::metadata(&path)
        .map_err(|e| Failure::error(datadir::snapshot_file::go_io_error("stat", &path, &e)))?;
    let format = OutputFormat::parse(write_out)
        .ok_or_else(|| Failure::new(EXIT_BAD_FEATURE, "unsupported output format"))?;
    let status = datadir::snapshot_file::status(&path).map_err(Failure::error)?;
    let text = printer::db_status(format, &status).map_err(|unsupported| {
        Failure::new(
            EXIT_BAD_FEATURE,
            format!("{unsupported} not supported as output format"),
        )
    })?;
    print!("{text}");
    Ok(())
}

fn snapshot_restore(args: RestoreArgs) -> Result<(), Failure> {
    let [file] = args.files.as_slice() else {
        return Err(Failure::new(
            EXIT_BAD_ARGS,
            "snapshot restore requires exactly one argument",
        ));
    };
    if (args.bump_revision == 0 && args.mark_compacted)
        || (args.bump_revision > 0 && !args.mark_compacted)
    {
        return Err(Failure::new(
            EXIT_BAD_ARGS,
            "--mark-compacted required if --revision-bump > 0",
        ));
    }
    let data_dir = match args.data_dir.as_str() {
        "" => PathBuf::from(format!("{}.etcd", args.name)),
        dir => PathBuf::from(dir),
    };
    let wal_dir = Some(args.wal_dir)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from);
    let cfg = datadir::restore::RestoreConfig {
        snapshot_path: PathBuf::from(file),
        name: args.name,
        data_dir,
        wal_dir,
        initial_cluster: args.initial_cluster,
        initial_cluster_token: args.initial_cluster_token,
        initial_advertise_peer_urls: args
            .initial_advertise_peer_urls
            .split(',')
            .map(str::to_string)
            .collect(),
        skip_hash_check: args.skip_hash_check,
        revision_bump: args.bump_revision,
    };
    datadir::restore::restore(&cfg).map_err(Failure::error)?;
    Ok(())
}

/// clap's own errors, in cobra's words and exit code; help goes to stdout.
fn parse_failure(e: clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        ErrorKind::DisplayVersion => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let invalid = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg.clone(),
        _ => String::new(),
    };
    let message = match e.kind() {
        ErrorKind::UnknownArgument => {
            let flag = invalid.split('=').next().unwrap_or_default();
            format!("unknown flag: {flag}")
        }
        ErrorKind::InvalidSubcommand => match e.get(ContextKind::InvalidSubcommand) {
            Some(ContextValue::String(command)) => format!(
                "unknown command \"{command}\" for \"etcdutl\"\nRun 'etcdutl --help' for usage."
            ),
            _ => first_line(&e),
        },
        _ => first_line(&e),
    };
    eprintln!("Error: {message}");
    ExitCode::from(EXIT_ERROR)
}

fn first_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let line = text.lines().next().unwrap_or_default();
    line.trim_start_matches("error: ").to_string()
}
