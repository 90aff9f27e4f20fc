//! The operations commands: `defrag`, `hashkv`, `migrate` and
//! `completion`, with etcd 3.6's argument checks, errors and exit codes
//! (cobra's own checks exit 1, the commands' `cobrautl` codes otherwise).

use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::printer::{self, OutputFormat};
use crate::{Cli, Failure, EXIT_BAD_ARGS, EXIT_BAD_FEATURE, EXIT_ERROR};

/// cobra's check of flags marked required, in its words (names sorted).
fn require_flags(flags: &[(&str, bool)]) -> Result<(), Failure> {
    let mut missing: Vec<&str> = flags
        .iter()
        .filter(|(_, given)| !given)
        .map(|(name, _)| *name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort_unstable();
    Err(Failure::new(
        EXIT_ERROR,
        format!("required flag(s) \"{}\" not set", missing.join("\", \"")),
    ))
}

/// cobra's `ExactArgs(n)`.
fn exact_args(args: &[String], n: usize) -> Result<(), Failure> {
    if args.len() == n {
        return Ok(());
    }
    Err(Failure::new(
        EXIT_ERROR,
        format!("accepts {n} arg(s), received {}", args.len()),
    ))
}

/// `etcdutl defrag --data-dir <dir>`: prints nothing on success (etcd's
/// backend logs two lines), `Failed to defragment etcd data[<dir>] (…)`
/// otherwise.
pub(crate) fn defrag(data_dir: Option<&str>) -> Result<(), Failure> {
    require_flags(&[("data-dir", data_dir.is_some())])?;
    let dir = data_dir.unwrap_or_default();
    datadir::offline::defrag(Path::new(dir)).map_err(|e| {
        Failure::new(
            EXIT_ERROR,
            format!("Failed to defragment etcd data[{dir}] ({e:#})"),
        )
    })?;
    Ok(())
}

/// `etcdutl hashkv <file> [--rev N]`.
pub(crate) fn hash_kv(files: &[String], rev: &str, write_out: &str) -> Result<(), Failure> {
    exact_args(files, 1)?;
    let rev = datadir::migrate::go_parse_int(rev).map_err(|e| {
        Failure::new(
            EXIT_ERROR,
            format!("invalid argument {rev:?} for \"--rev\" flag: {e}"),
        )
    })?;
    let format = OutputFormat::parse(write_out)
        .ok_or_else(|| Failure::new(EXIT_BAD_FEATURE, "unsupported output format"))?;
    let hash = datadir::offline::hash_kv(&PathBuf::from(&files[0]), rev).map_err(Failure::error)?;
    let text = printer::db_hash_kv(format, &hash).map_err(|unsupported| {
        Failure::new(
            EXIT_BAD_FEATURE,
            format!("{unsupported} not supported as output format"),
        )
    })?;
    print!("{text}");
    Ok(())
}

/// `etcdutl migrate --data-dir <dir> --target-version X.Y [--force]`:
/// prints nothing on success, logs what it did.
pub(crate) fn migrate(
    data_dir: Option<&str>,
    target_version: Option<&str>,
    force: bool,
) -> Result<(), Failure> {
    require_flags(&[
        ("data-dir", data_dir.is_some()),
        ("target-version", target_version.is_some()),
    ])?;
    let opts = datadir::migrate::MigrateOptions {
        data_dir: PathBuf::from(data_dir.unwrap_or_default()),
        target_version: target_version.unwrap_or_default().to_string(),
        force,
    };
    match datadir::migrate::migrate(&opts) {
        Ok(_) => Ok(()),
        Err(datadir::migrate::MigrateError::BadArgs(e)) => {
            Err(Failure::new(EXIT_BAD_ARGS, format!("{e:#}")))
        }
        Err(datadir::migrate::MigrateError::Failed(e)) => Err(Failure::error(e)),
    }
}

/// `etcdutl completion bash|zsh|fish|powershell`: the script on stdout.
pub(crate) fn completion(args: &[String]) -> Result<(), Failure> {
    use clap_complete::Shell;
    exact_args(args, 1)?;
    let shell = match args[0].as_str() {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        "powershell" => Shell::PowerShell,
        other => {
            return Err(Failure::new(
                EXIT_ERROR,
                format!("invalid argument {other:?} for \"etcdutl completion\""),
            ))
        }
    };
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "etcdutl",
        &mut std::io::stdout(),
    );
    Ok(())
}
