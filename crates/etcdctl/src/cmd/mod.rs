//! etcdctl's commands: one module per group, each with its clap arguments
//! and an async `run`. Arguments are checked before connecting, as etcdctl
//! does, so usage errors come out the same with or without a cluster.

use clap::Subcommand;

use crate::client::Client;
use crate::error::CtlResult;
use crate::global::GlobalArgs;
use crate::output::Printer;
use crate::Cli;

pub mod auth;
pub mod check;
pub mod completion;
pub mod concurrency;
pub mod endpoint;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod member;
pub mod mirror;
pub mod role;
pub mod snapshot;
pub mod txn;
pub mod user;
pub mod watch;

/// Everything a command needs besides its own arguments.
pub struct Ctx {
    pub global: GlobalArgs,
}

impl Ctx {
    /// The writer `-w`/`--hex` chose.
    pub fn printer(&self) -> CtlResult<Printer> {
        self.global.printer()
    }

    /// A connection to the cluster (the first endpoint that answers), for a
    /// command that, as most of etcdctl's, takes its deadline from
    /// `--command-timeout` before the `ETCDCTL_*` variables apply.
    pub async fn client(&self) -> CtlResult<Client> {
        let config = self.global.client_config()?;
        Client::connect(&config).await
    }

    /// The same for a command that builds its client first, so that
    /// `ETCDCTL_COMMAND_TIMEOUT` sets its deadline (etcdctl's `compaction`).
    pub async fn client_env_timeout(&self) -> CtlResult<Client> {
        let mut config = self.global.client_config()?;
        config.command_timeout = self.global.command_timeout;
        Client::connect(&config).await
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Gets the key or a range of keys
    Get(kv::GetArgs),
    /// Puts the given key into the store
    Put(kv::PutArgs),
    /// Removes the specified key or range of keys [key, range_end)
    Del(kv::DelArgs),
    /// Txn processes all the requests in one transaction
    Txn(txn::TxnArgs),
    /// Compacts the event history in etcd
    Compaction(kv::CompactionArgs),
    /// Alarm related commands
    Alarm(maintenance::AlarmArgs),
    /// Defragments the storage of the etcd members with given endpoints
    Defrag(maintenance::DefragArgs),
    /// Endpoint related commands
    Endpoint(endpoint::EndpointArgs),
    /// Transfers leadership to another etcd cluster member.
    MoveLeader(maintenance::MoveLeaderArgs),
    /// Watches events stream on keys or prefixes
    Watch(watch::WatchArgs),
    /// Prints the version of etcdctl
    Version,
    /// Lease related commands
    Lease(lease::LeaseArgs),
    /// Membership related commands
    Member(member::MemberArgs),
    /// Manages etcd node snapshots
    Snapshot(snapshot::SnapshotArgs),
    /// Makes a mirror at the destination etcd cluster
    MakeMirror(mirror::MakeMirrorArgs),
    /// Acquires a named lock
    Lock(concurrency::LockArgs),
    /// Observes and participates in leader election
    Elect(concurrency::ElectArgs),
    /// commands for checking properties of the etcd cluster
    Check(check::CheckArgs),
    /// Enable or disable authentication
    Auth(auth::AuthArgs),
    /// User related commands
    User(user::UserArgs),
    /// Role related commands
    Role(role::RoleArgs),
    /// Generate completion script
    Completion(completion::CompletionArgs),
    /// Downgrade related commands
    Downgrade(maintenance::DowngradeArgs),
}

pub async fn run(cli: Cli) -> CtlResult {
    let ctx = Ctx { global: cli.global };
    match cli.command {
        Command::Get(args) => kv::get(&ctx, args).await,
        Command::Put(args) => kv::put(&ctx, args).await,
        Command::Del(args) => kv::del(&ctx, args).await,
        Command::Txn(args) => txn::run(&ctx, args).await,
        Command::Compaction(args) => kv::compaction(&ctx, args).await,
        Command::Alarm(args) => maintenance::alarm(&ctx, args).await,
        Command::Defrag(args) => maintenance::defrag(&ctx, args).await,
        Command::Endpoint(args) => endpoint::run(&ctx, args).await,
        Command::MoveLeader(args) => maintenance::move_leader(&ctx, args).await,
        Command::Watch(args) => watch::run(&ctx, args).await,
        Command::Lease(args) => lease::run(&ctx, args).await,
        Command::MakeMirror(args) => mirror::run(&ctx, args).await,
        Command::Lock(args) => concurrency::lock(&ctx, args).await,
        Command::Elect(args) => concurrency::elect(&ctx, args).await,
        Command::Version => {
            println!("etcdctl version: {}", api::ETCD_VERSION);
            println!("API version: {}", api::API_VERSION);
            Ok(())
        }
        Command::Member(args) => member::run(&ctx, args).await,
        Command::Snapshot(args) => snapshot::run(&ctx, args).await,
        Command::Check(args) => check::run(&ctx, args).await,
        Command::Auth(args) => auth::run(&ctx, args).await,
        Command::User(args) => user::run(&ctx, args).await,
        Command::Role(args) => role::run(&ctx, args).await,
        Command::Completion(args) => completion::run(args),
        Command::Downgrade(args) => maintenance::downgrade(&ctx, args).await,
    }
}
