//! `lock <lockname> [exec-command arg1 arg2 ...]` and
//! `elect <election-name> [proposal]` / `elect -l <election-name>`, over
//! the server's v3lock and v3election services (they run the same
//! key-and-revision protocol as clientv3's concurrency package, so keys
//! and revisions come out as etcdctl's).
//!
//! Both hold a session: a lease (`--ttl`, 10 s for `lock`; 60 s for
//! `elect`) kept alive until the process ends; etcdctl never revokes it,
//! so the lease outlives the command by its TTL. Both stop on SIGINT or
//! SIGTERM: a held lock is released and a won election resigned (exit 0);
//! one still waiting ends with `context canceled`. A session whose lease
//! goes away ends them with `session expired`.

use clap::Args;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::oneshot;

use api::etcdserverpb::{LeaseGrantRequest, RangeRequest, RangeResponse};
use api::v3electionpb::{CampaignRequest, LeaderKey, LeaderRequest, ResignRequest};
use api::v3lockpb::{LockRequest, UnlockRequest};

use crate::client::Client;
use crate::cmd::kv::print_get;
use crate::cmd::lease::keep_alive;
use crate::cmd::Ctx;
use crate::error::{CtlError, CtlResult, EXIT_ERROR};
use crate::global::{parse_go_bool, parse_go_i64};
use crate::goexec;

/// clientv3 concurrency's session TTL when none (or no positive one) is given.
const DEFAULT_SESSION_TTL: i64 = 60;

#[derive(Args, Debug)]
pub struct LockArgs {
    /// timeout for session
    #[arg(long, default_value = "10", value_parser = parse_go_i64)]
    pub ttl: i64,
    /// <lockname> [exec-command arg1 arg2 ...]
    #[arg(value_name = "lockname")]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ElectArgs {
    /// observation mode
    #[arg(short = 'l', long, value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub listen: bool,
    /// <election-name> [proposal]
    #[arg(value_name = "election-name")]
    pub args: Vec<String>,
}

/// A lease kept alive in the background (clientv3's `concurrency.Session`).
struct Session {
    lease: i64,
    /// Resolves when the lease is gone (revoked, expired, unreachable).
    done: oneshot::Receiver<()>,
}

impl Session {
    async fn new(client: &Client, ttl: i64) -> CtlResult<Session> {
        let ttl = if ttl > 0 { ttl } else { DEFAULT_SESSION_TTL };
        let grant = client
            .call(client.lease().lease_grant(LeaseGrantRequest { ttl, id: 0 }))
            .await?;
        let mut answers = keep_alive(client.clone(), grant.id);
        let (tx, done) = oneshot::channel();
        tokio::spawn(async move {
            while answers.recv().await.is_some() {}
            let _ = tx.send(());
        });
        Ok(Session {
            lease: grant.id,
            done,
        })
    }
}

/// SIGINT and SIGTERM, caught from here on (etcdctl's `signal.Notify`).
struct Interrupt {
    int: Signal,
    term: Signal,
}

impl Interrupt {
    fn catch() -> CtlResult<Interrupt> {
        let catch =
            |kind| signal(kind).map_err(|e| CtlError::error(format!("cannot catch signals: {e}")));
        Ok(Interrupt {
            int: catch(SignalKind::interrupt())?,
            term: catch(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

fn canceled() -> CtlError {
    CtlError::error("context canceled")
}

pub async fn lock(ctx: &Ctx, a: LockArgs) -> CtlResult {
    let Some((name, command)) = a.args.split_first() else {
        return Err(CtlError::bad_args(
            "lock takes a lock name argument and an optional command to execute",
        ));
    };
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let session = Session::new(&client, a.ttl).await?;
    let mut interrupt = Interrupt::catch()?;
    let request = LockRequest {
        name: name.as_bytes().to_vec(),
        lease: session.lease,
    };
    let mut locker = client.lock();
    let locked = tokio::select! {
        locked = client.call(locker.lock(request)) => locked?,
        _ = interrupt.recv() => return Err(canceled()),
    };
    let key = locked.key;
    let unlock = |key: Vec<u8>| async {
        client
            .call(client.lock().unlock(UnlockRequest { key }))
            .await
            .map(|_| ())
    };
    if !command.is_empty() {
        let revision = locked.header.as_ref().map_or(0, |h| h.revision);
        let env = vec![
            (
                "ETCD_LOCK_KEY".to_string(),
                String::from_utf8_lossy(&key).into_owned(),
            ),
            ("ETCD_LOCK_REV".to_string(), revision.to_string()),
        ];
        let args = command.to_vec();
        let ran = tokio::task::spawn_blocking(move || goexec::run(&args, &env, true))
            .await
            .map_err(|e| CtlError::error(e.to_string()))?;
        let unlocked = unlock(key).await;
        // 3.5+: a failing command's exit status becomes etcdctl's.
        if let Err(e) = ran {
            let code = match e.status {
                Some(status) => status as u8,
                None => EXIT_ERROR,
            };
            return Err(CtlError::new(code, e.text));
        }
        return unlocked;
    }
    let get = client
        .call(client.kv().range(RangeRequest {
            key: key.clone(),
            ..RangeRequest::default()
        }))
        .await?;
    if get.kvs.is_empty() {
        return Err(CtlError::error("lock lost on init"));
    }
    if let Err(e) = print_get(&printer, &get, false) {
        e.exit_now();
    }
    tokio::select! {
        _ = interrupt.recv() => unlock(key).await,
        _ = session.done => Err(CtlError::error("session expired")),
    }
}

pub async fn elect(ctx: &Ctx, a: ElectArgs) -> CtlResult {
    if a.args.len() != 1 && a.args.len() != 2 {
        return Err(CtlError::bad_args(
            "elect takes one election name argument and an optional proposal argument",
        ));
    }
    let printer = ctx.printer()?;
    let client = ctx.client().await?;
    let name = a.args[0].as_bytes().to_vec();
    match a.args.get(1) {
        None if !a.listen => Err(CtlError::bad_args("no proposal argument but -l not set")),
        None => observe(&client, printer, name).await,
        Some(_) if a.listen => Err(CtlError::bad_args("proposal given but -l is set")),
        Some(proposal) => campaign(&client, printer, name, proposal.as_bytes().to_vec()).await,
    }
}

async fn observe(client: &Client, printer: crate::output::Printer, name: Vec<u8>) -> CtlResult {
    let _session = Session::new(client, DEFAULT_SESSION_TTL).await?;
    let mut interrupt = Interrupt::catch()?;
    let mut election = client.election();
    let observing = async {
        let mut stream = client
            .call(election.observe(LeaderRequest { name }))
            .await?;
        while let Ok(Some(leader)) = stream.message().await {
            // concurrency's Observe hands out a GetResponse of the header
            // and the leader's key alone.
            let resp = RangeResponse {
                header: leader.header,
                kvs: leader.kv.into_iter().collect(),
                ..RangeResponse::default()
            };
            if let Err(e) = print_get(&printer, &resp, false) {
                e.exit_now();
            }
        }
        Ok::<(), CtlError>(())
    };
    tokio::select! {
        _ = interrupt.recv() => Ok(()),
        _ = observing => Err(CtlError::error("elect: observer lost")),
    }
}

async fn campaign(
    client: &Client,
    printer: crate::output::Printer,
    name: Vec<u8>,
    proposal: Vec<u8>,
) -> CtlResult {
    let session = Session::new(client, DEFAULT_SESSION_TTL).await?;
    let mut interrupt = Interrupt::catch()?;
    let request = CampaignRequest {
        name: name.clone(),
        lease: session.lease,
        value: proposal,
    };
    let mut election = client.election();
    let won = tokio::select! {
        won = client.call(election.campaign(request)) => won?,
        _ = interrupt.recv() => return Err(canceled()),
    };
    let leader = won.leader.unwrap_or(LeaderKey {
        name,
        lease: session.lease,
        ..LeaderKey::default()
    });
    let mut kv = client.kv();
    let get = tokio::select! {
        get = client.call(kv.range(RangeRequest {
            key: leader.key.clone(),
            ..RangeRequest::default()
        })) => get?,
        _ = interrupt.recv() => return Err(canceled()),
    };
    if let Err(e) = print_get(&printer, &get, false) {
        e.exit_now();
    }
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = session.done => return Err(CtlError::error("elect: session expired")),
    }
    client
        .call(client.election().resign(ResignRequest {
            leader: Some(leader),
        }))
        .await
        .map(|_| ())
}
