//! HashKV (a hash of the key table up to a revision, see
//! `mvcc::Store::hash_kv`) off the async threads: it reads the whole table.

use std::sync::Arc;

/// HashKV off the async threads (it reads the whole key table).
pub async fn hash_kv(store: Arc<mvcc::Store>, rev: i64) -> Result<mvcc::KvHash, mvcc::Error> {
    match tokio::task::spawn_blocking(move || store.hash_kv(rev)).await {
        Ok(result) => result,
        Err(e) => Err(mvcc::Error::Corrupt(format!("the hash task stopped: {e}"))),
    }
}
