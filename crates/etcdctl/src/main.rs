//! `etcdctl`: etcd's command-line client, a drop-in for etcd 3.6's (v3 API).
//!
//! Flags, environment variables (`ETCDCTL_*`), outputs of every writer,
//! error lines (`Error: …` on stderr) and exit codes follow etcdctl, since
//! scripts depend on them. Each command lives in [`cmd`]; the connection in
//! [`client`]; the writers in [`output`].

// The doc comments on commands and flags are clap's help text, written in
// etcd's words (`<key> [range_end]`), not rustdoc links or HTML.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

mod client;
mod cmd;
mod discovery;
mod dns;
mod error;
mod global;
mod goexec;
mod output;
mod prompt;
mod watcher;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches, Parser};

use cmd::Command;
use error::{CtlError, EXIT_ERROR};
use global::GlobalArgs;

/// A simple command line client for etcd3.
#[derive(Parser, Debug)]
#[command(name = "etcdctl", about = "A simple command line client for etcd3.")]
#[command(
    disable_version_flag = true,
    infer_subcommands = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&CtlError::error(format!("cannot start the runtime: {e}"))),
    };
    let result = runtime.block_on(cmd::run(cli));
    // On failure, exit before the runtime winds down: tasks still running
    // (watch printers, keep-alives) must not print after the error.
    if let Err(e) = result {
        e.exit_now();
    }
    // Streams (watch, keep-alive) may still be open: do not wait for them.
    runtime.shutdown_background();
    ExitCode::SUCCESS
}

/// Prints the help of `etcdctl <path…>`, as cobra does for a command group
/// run without a subcommand.
pub fn print_help(path: &[&str]) {
    let mut command = Cli::command();
    command.build();
    for name in path {
        match command.find_subcommand(name) {
            Some(sub) => command = sub.clone(),
            None => break,
        }
    }
    let _ = command.print_help();
}

fn fail(e: &CtlError) -> ExitCode {
    if !e.message.is_empty() {
        eprintln!("Error: {}", e.message);
    }
    ExitCode::from(e.code)
}

/// Parses the command line, turning clap's errors into cobra's wording.
fn parse() -> Result<Cli, u8> {
    let command = Cli::command();
    let matches = match command.try_get_matches() {
        Ok(m) => m,
        Err(e) => return Err(usage_error(e)),
    };
    let mut cli = Cli::from_arg_matches(&matches).map_err(usage_error)?;
    if let Some(endpoints) = global::repeated_endpoints(std::env::args()) {
        cli.global.endpoints = endpoints;
    }
    cli.global.apply_env(
        |flag| given_on_command_line(&matches, flag),
        std::env::vars_os(),
    );
    Ok(cli)
}

/// Whether a global flag was given on the command line, before or after
/// the subcommand names (pflag's `Changed`).
fn given_on_command_line(matches: &clap::ArgMatches, flag: &str) -> bool {
    let id = flag.replace('-', "_");
    let mut level = Some(matches);
    while let Some(m) = level {
        let from_line = m
            .try_contains_id(&id)
            .ok()
            .filter(|present| *present)
            .and_then(|_| m.value_source(&id))
            == Some(clap::parser::ValueSource::CommandLine);
        if from_line {
            return true;
        }
        level = m.subcommand().map(|(_, sub)| sub);
    }
    false
}

fn usage_error(e: clap::Error) -> u8 {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        | ErrorKind::DisplayVersion => {
            let _ = e.print();
            0
        }
        ErrorKind::InvalidSubcommand => {
            let name = context(&e, clap::error::ContextKind::InvalidSubcommand).unwrap_or_default();
            // Below the root (`etcdctl member bogus`) cobra shows the group's
            // help, as for the group alone.
            if let Some(mut group) = group_of(&name) {
                let _ = group.print_help();
                return 0;
            }
            eprintln!("Error: unknown command \"{name}\" for \"etcdctl\"");
            eprintln!("Run 'etcdctl --help' for usage.");
            EXIT_ERROR
        }
        ErrorKind::UnknownArgument => {
            let flag = context(&e, clap::error::ContextKind::InvalidArg).unwrap_or_default();
            let flag = flag.split('=').next().unwrap_or_default().to_string();
            if let Some(short) = flag.strip_prefix('-').filter(|f| !f.starts_with('-')) {
                let c = short.chars().next().unwrap_or('?');
                eprintln!("Error: unknown shorthand flag: '{c}' in {flag}");
            } else {
                eprintln!("Error: unknown flag: {flag}");
            }
            EXIT_ERROR
        }
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
            let arg = e
                .get(clap::error::ContextKind::InvalidArg)
                .map(|a| a.to_string())
                .unwrap_or_default();
            let value = context(&e, clap::error::ContextKind::InvalidValue).unwrap_or_default();
            let flag = arg
                .split([' ', '=', '['])
                .next()
                .unwrap_or_default()
                .to_string();
            let flag = flag.rsplit(", ").next().unwrap_or_default().to_string();
            let reason = std::error::Error::source(&e).map(|s| s.to_string());
            let Some(reason) = reason else {
                // `--rev` last on the line, without its value.
                eprintln!("Error: flag needs an argument: {flag}");
                return EXIT_ERROR;
            };
            let flag = pflag_name(flag.trim_start_matches('-'));
            eprintln!("Error: invalid argument \"{value}\" for \"{flag}\" flag: {reason}");
            EXIT_ERROR
        }
        _ => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            eprintln!("Error: {first}");
            EXIT_ERROR
        }
    }
}

/// The command group (`member`, `endpoint`, …) whose subcommand `name`
/// was looked up in, from the command line.
fn group_of(name: &str) -> Option<clap::Command> {
    let root = Cli::command();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let at = args.iter().position(|a| a == name)?;
    let parent = args[..at].iter().rev().find(|a| !a.starts_with('-'))?;
    root.find_subcommand(parent).cloned()
}

/// pflag's name for a flag in its errors: `-l, --listen` when the command
/// being run (or a parent, for global flags) gives it a shorthand, else
/// `--name`.
fn pflag_name(long: &str) -> String {
    let mut command = Cli::command();
    let mut chain = vec![command.clone()];
    for word in std::env::args().skip(1).filter(|w| !w.starts_with('-')) {
        if let Some(sub) = command.find_subcommand(&word).cloned() {
            command = sub;
            chain.push(command.clone());
        }
    }
    let short = chain.iter().rev().find_map(|c| {
        c.get_arguments()
            .find(|a| a.get_long() == Some(long))
            .map(|a| a.get_short())
    });
    match short.flatten() {
        Some(short) => format!("-{short}, --{long}"),
        None => format!("--{long}"),
    }
}

fn context(e: &clap::Error, kind: clap::error::ContextKind) -> Option<String> {
    e.get(kind).map(|v| match v {
        clap::error::ContextValue::String(s) => s.clone(),
        other => other.to_string(),
    })
}
