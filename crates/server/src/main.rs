//! `etcd`: the server binary.

use std::collections::HashMap;
use std::process::ExitCode;

use etcd_server::config::{self, Command, ParseError};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env: HashMap<String, String> = std::env::vars().collect();
    let cfg = match config::parse(&args, &env) {
        Ok(Command::Run(cfg)) => *cfg,
        Ok(Command::PrintVersion) => {
            println!("etcd Version: {}", datadir::membership::SERVER_VERSION);
            println!("etcd-rs Version: {}", etcd_server::BUILD_VERSION);
            println!("Rust Version: {}", env!("CARGO_PKG_RUST_VERSION"));
            println!(
                "OS/Arch: {}/{}",
                std::env::consts::OS,
                std::env::consts::ARCH
            );
            return ExitCode::SUCCESS;
        }
        Ok(Command::PrintHelp) => {
            print!("{}", config::usage());
            return ExitCode::SUCCESS;
        }
        Err(ParseError::Flag(e)) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
        Err(ParseError::Refused { msg, error }) => {
            // etcd reports these with its default logger (stderr) and exits 1.
            let _ = gofmt::zap::init(tracing::Level::INFO, &["default".to_string()]);
            tracing::warn!(error = %error, "{msg}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = gofmt::zap::init(cfg.log_level, &cfg.log_outputs) {
        eprintln!("cannot open log output: {e}");
        return ExitCode::from(2);
    }
    if let Some(path) = &cfg.config_file {
        tracing::info!(
            path = %path.display(),
            "loaded server configuration, other configuration command line flags and environment variables will be ignored if provided"
        );
        if !cfg.ignored_config_keys.is_empty() {
            tracing::warn!(
                keys = %cfg.ignored_config_keys.join(","),
                "ignoring configuration file keys etcd-rs does not use"
            );
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(etcd_server::run(cfg, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "etcd stopped with an error");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    let name = tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupt",
        _ = term.recv() => "terminated",
    };
    tracing::info!(signal = name, "received signal; shutting down");
}
