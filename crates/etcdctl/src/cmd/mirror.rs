//! `make-mirror [options] <destination>`: copies the keys under `--prefix`
//! (all keys without one) to another cluster, then follows their changes
//! there, as etcdctl's make-mirror (clientv3's mirror syncer) does.
//!
//! - Base sync: the source's current revision is read (a get of the prefix,
//!   or of `foo` for the whole key space), then keys are read at that
//!   revision 1000 at a time and put one by one at the destination.
//! - Updates: a watch from the next revision; the events of one revision
//!   go to the destination as one transaction (at most `--max-txn-ops`
//!   operations each). `--rev` skips the base sync and starts the watch at
//!   that revision (etcd 3.6).
//! - Keys are renamed by replacing the first occurrence of `--prefix` with
//!   `--dest-prefix` (the prefix itself unless `--no-dest-prefix`).
//! - Every 30 s the number of keys synced so far is printed. The command
//!   only ends on failure (a compacted source, an unreachable side).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use api::etcdserverpb::request_op::Request;
use api::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

use crate::client::Client;
use crate::cmd::kv::prefix_range_end;
use crate::cmd::Ctx;
use crate::error::{CtlError, CtlResult};
use crate::global::{
    parse_go_bool, parse_go_i64, parse_uint, ClientConfig, Credentials, TlsSettings,
};
use crate::watcher::{WatchSpec, Watcher};

/// Keys per read of the base sync (clientv3 mirror's `batchLimit`).
const BATCH_LIMIT: i64 = 1000;
/// How often the synced-key count is printed.
const REPORT_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Args, Debug)]
pub struct MakeMirrorArgs {
    /// Key-value prefix to mirror
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Specify the kv revision to start to mirror
    #[arg(long, default_value = "0", value_parser = parse_go_i64)]
    pub rev: i64,
    /// Maximum number of operations permitted in a transaction during syncing updates.
    #[arg(long = "max-txn-ops", default_value = "128", value_parser = parse_go_u64)]
    pub max_txn_ops: u64,
    /// destination prefix to mirror a prefix to a different prefix in the destination cluster
    #[arg(long = "dest-prefix", default_value = "")]
    pub dest_prefix: String,
    /// mirror key-values to the root of the destination cluster
    #[arg(long = "no-dest-prefix", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "false", default_missing_value = "true")]
    pub no_dest_prefix: bool,
    /// Identify secure client using this TLS certificate file for the destination cluster
    #[arg(long = "dest-cert", default_value = "")]
    pub dest_cert: String,
    /// Identify secure client using this TLS key file
    #[arg(long = "dest-key", default_value = "")]
    pub dest_key: String,
    /// Verify certificates of TLS enabled secure servers using this CA bundle
    #[arg(long = "dest-cacert", default_value = "")]
    pub dest_cacert: String,
    /// Disable transport security for client connections
    #[arg(long = "dest-insecure-transport", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true")]
    pub dest_insecure_transport: bool,
    /// Destination username[:password] for authentication (prompt if password is not supplied)
    #[arg(long = "dest-user", default_value = "")]
    pub dest_user: String,
    /// Destination password for authentication (if this option is used, --user option shouldn't include password)
    #[arg(long = "dest-password", default_value = "")]
    pub dest_password: String,
    /// <destination>
    #[arg(value_name = "destination")]
    pub args: Vec<String>,
}

fn parse_go_u64(s: &str) -> Result<u64, String> {
    parse_uint(s, 10)
}

pub async fn run(ctx: &Ctx, a: MakeMirrorArgs) -> CtlResult {
    let [destination] = a.args.as_slice() else {
        return Err(CtlError::bad_args(
            "make-mirror takes one destination argument",
        ));
    };
    let dest_config = destination_config(ctx, &a, destination)?;
    let dest = Client::connect(&dest_config).await?;
    // etcdctl checks the writer when it makes the source's client.
    ctx.printer()?;
    let source = ctx.client().await?;
    if a.no_dest_prefix && !a.dest_prefix.is_empty() {
        return Err(CtlError::bad_args(
            "`--dest-prefix` and `--no-dest-prefix` cannot be set at the same time, choose one",
        ));
    }
    let dest_prefix = if !a.no_dest_prefix && a.dest_prefix.is_empty() {
        a.prefix.clone()
    } else {
        a.dest_prefix.clone()
    };
    let mirror = Mirror {
        source,
        dest,
        prefix: a.prefix.as_bytes().to_vec(),
        dest_prefix: dest_prefix.into_bytes(),
        max_txn_ops: usize::try_from(a.max_txn_ops).unwrap_or(usize::MAX),
        total: Arc::new(AtomicI64::new(0)),
    };
    let total = mirror.total.clone();
    let reporter = tokio::spawn(async move {
        loop {
            tokio::time::sleep(REPORT_INTERVAL).await;
            println!("{}", total.load(Ordering::Relaxed));
        }
    });
    let result = mirror.run(a.rev).await;
    reporter.abort();
    // etcdctl exits through ExitWithError even when the watch just ends.
    Err(result.err().unwrap_or_else(|| CtlError::error("<nil>")))
}

/// The destination's connection: the global timeouts, the `--dest-*` TLS
/// and credentials (no server-name or skip-verify settings, as etcdctl).
fn destination_config(ctx: &Ctx, a: &MakeMirrorArgs, destination: &str) -> CtlResult<ClientConfig> {
    let global = &ctx.global;
    let some = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
    let (cert, key, cacert) = (some(&a.dest_cert), some(&a.dest_key), some(&a.dest_cacert));
    let wants_tls = cert.is_some() || key.is_some() || cacert.is_some();
    let tls = (wants_tls || !a.dest_insecure_transport).then_some(TlsSettings {
        cert,
        key,
        cacert,
        server_name: None,
        skip_verify: false,
    });
    let credentials = if a.dest_user.is_empty() {
        None
    } else if !a.dest_password.is_empty() {
        Some(Credentials {
            user: a.dest_user.clone(),
            password: a.dest_password.clone(),
        })
    } else if let Some((user, password)) = a.dest_user.split_once(':') {
        Some(Credentials {
            user: user.to_string(),
            password: password.to_string(),
        })
    } else {
        let password = crate::prompt::ask("Destination Password: ").map_err(CtlError::error)?;
        Some(Credentials {
            user: a.dest_user.clone(),
            password,
        })
    };
    Ok(ClientConfig {
        endpoints: vec![destination.to_string()],
        dial_timeout: global.dial_timeout,
        command_timeout: global.command_timeout,
        keepalive_time: global.keepalive_time,
        keepalive_timeout: global.keepalive_timeout,
        tls,
        credentials,
    })
}

struct Mirror {
    source: Client,
    dest: Client,
    prefix: Vec<u8>,
    dest_prefix: Vec<u8>,
    max_txn_ops: usize,
    total: Arc<AtomicI64>,
}

impl Mirror {
    async fn run(&self, rev: i64) -> CtlResult {
        let mut synced_rev = (rev - 1).max(0);
        if synced_rev == 0 {
            synced_rev = self.sync_base().await?;
        }
        let (key, range_end) = if self.prefix.is_empty() {
            (vec![0], vec![0])
        } else {
            (self.prefix.clone(), prefix_range_end(&self.prefix))
        };
        let watcher = Watcher::new(&self.source);
        let mut updates = watcher
            .watch(WatchSpec {
                key,
                range_end,
                start_revision: synced_rev + 1,
                ..WatchSpec::default()
            })
            .await;
        while let Some(resp) = updates.recv().await {
            if resp.compact_revision != 0 {
                return Err(CtlError::error(api::EtcdError::Compacted.message()));
            }
            let mut ops = Vec::new();
            let mut last_rev = 0;
            for ev in resp.events() {
                let kv = ev.kv.clone().unwrap_or_default();
                if last_rev != 0 && kv.mod_revision > last_rev {
                    self.commit(std::mem::take(&mut ops)).await?;
                }
                last_rev = kv.mod_revision;
                if ops.len() == self.max_txn_ops {
                    self.commit(std::mem::take(&mut ops)).await?;
                }
                let key = self.rename(&kv.key);
                let op = if ev.r#type == api::mvccpb::event::EventType::Delete as i32 {
                    Request::RequestDeleteRange(DeleteRangeRequest {
                        key,
                        ..DeleteRangeRequest::default()
                    })
                } else {
                    Request::RequestPut(PutRequest {
                        key,
                        value: kv.value,
                        ..PutRequest::default()
                    })
                };
                ops.push(RequestOp { request: Some(op) });
                self.total.fetch_add(1, Ordering::Relaxed);
            }
            if !ops.is_empty() {
                self.commit(ops).await?;
            }
        }
        Ok(())
    }

    /// Copies every key as of the source's current revision; returns it.
    async fn sync_base(&self) -> CtlResult<i64> {
        let check = if self.prefix.is_empty() {
            b"foo".to_vec()
        } else {
            self.prefix.clone()
        };
        let head = self
            .source
            .call(self.source.kv().range(RangeRequest {
                key: check,
                ..RangeRequest::default()
            }))
            .await?;
        let rev = head.header.map_or(0, |h| h.revision);
        let (mut key, range_end) = if self.prefix.is_empty() {
            (vec![0], vec![0])
        } else {
            (self.prefix.clone(), prefix_range_end(&self.prefix))
        };
        loop {
            let page = self
                .source
                .call(self.source.kv().range(RangeRequest {
                    key: key.clone(),
                    range_end: range_end.clone(),
                    limit: BATCH_LIMIT,
                    revision: rev,
                    ..RangeRequest::default()
                }))
                .await?;
            for kv in &page.kvs {
                let put = PutRequest {
                    key: self.rename(&kv.key),
                    value: kv.value.clone(),
                    ..PutRequest::default()
                };
                self.dest.call(self.dest.kv().put(put)).await?;
                self.total.fetch_add(1, Ordering::Relaxed);
            }
            match page.kvs.last() {
                Some(last) if page.more => {
                    key = last.key.clone();
                    key.push(0);
                }
                _ => return Ok(rev),
            }
        }
    }

    async fn commit(&self, success: Vec<RequestOp>) -> CtlResult {
        let txn = TxnRequest {
            success,
            ..TxnRequest::default()
        };
        self.dest.call(self.dest.kv().txn(txn)).await.map(|_| ())
    }

    /// Go's `strings.Replace(key, prefix, destPrefix, 1)`.
    fn rename(&self, key: &[u8]) -> Vec<u8> {
        replace_first(key, &self.prefix, &self.dest_prefix)
    }
}

fn replace_first(s: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = if from.is_empty() {
        Some(0)
    } else {
        s.windows(from.len()).position(|w| w == from)
    };
    match at {
        Some(at) => [&s[..at], to, &s[at + from.len()..]].concat(),
        None => s.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_renamed_as_go_strings_replace() {
        assert_eq!(replace_first(b"src/a", b"src/", b"dst/"), b"dst/a");
        assert_eq!(replace_first(b"a", b"", b"x/"), b"x/a");
        assert_eq!(replace_first(b"x/src/a", b"src/", b""), b"x/a");
        assert_eq!(replace_first(b"other", b"src/", b"dst/"), b"other");
    }
}
