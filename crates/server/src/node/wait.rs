//! Proposers wait here for the result of their entry, by request ID (etcd's
//! `wait.Wait`). The applier triggers each ID once; a proposal that raft
//! drops is failed by the raft loop; a proposer that gives up cancels.

use std::collections::HashMap;
use std::sync::Mutex;

use api::EtcdError;
use tokio::sync::oneshot;

use crate::node::apply::ApplyOutcome;

#[derive(Default)]
pub struct Wait {
    waiters: Mutex<HashMap<u64, oneshot::Sender<ApplyOutcome>>>,
}

impl Wait {
    pub fn register(&self, id: u64) -> oneshot::Receiver<ApplyOutcome> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        rx
    }

    /// Delivers the outcome to the waiter of `id`, if it still waits.
    pub fn trigger(&self, id: u64, outcome: ApplyOutcome) {
        if let Some(tx) = self.lock().remove(&id) {
            let _ = tx.send(outcome);
        }
    }

    pub fn fail(&self, id: u64, err: EtcdError) {
        self.trigger(id, Err(err));
    }

    pub fn cancel(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Fails every waiter (shutdown).
    pub fn fail_all(&self, err: EtcdError) {
        for (_, tx) in self.lock().drain() {
            let _ = tx.send(Err(err));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<ApplyOutcome>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }
}
