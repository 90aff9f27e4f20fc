//! Recorded operations, and the thread-safe [`Recorder`] that collects them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// One client operation as observed by the client.
///
/// Times are nanoseconds on one clock shared by all clients (any origin). The call time
/// must be taken before the request is sent and the return time after the answer
/// arrived; then "A returned before B was called" in the record implies it in reality.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<I, O> {
    pub client_id: u64,
    pub call_ns: u64,
    /// `None`: the call never returned (timed out, connection lost). It may take effect at
    /// any time after `call_ns`, or never, and its output is unknown.
    pub ret: Option<Return<O>>,
    pub input: I,
}

/// The return of an operation: when, and what the client got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Return<O> {
    pub ret_ns: u64,
    pub output: O,
}

impl<I, O> Operation<I, O> {
    /// An operation called at `call_ns` that returned `output` at `ret_ns`.
    pub fn completed(client_id: u64, call_ns: u64, ret_ns: u64, input: I, output: O) -> Self {
        Operation {
            client_id,
            call_ns,
            ret: Some(Return { ret_ns, output }),
            input,
        }
    }

    /// An operation called at `call_ns` whose outcome is unknown.
    pub fn pending(client_id: u64, call_ns: u64, input: I) -> Self {
        Operation {
            client_id,
            call_ns,
            ret: None,
            input,
        }
    }
}

/// A call in flight, from [`Recorder::call`]. Dropping it without [`Recorder::ret`] is
/// the same as [`Recorder::fail`]: the outcome is unknown.
#[must_use = "pass the handle to Recorder::ret or Recorder::fail"]
#[derive(Debug)]
pub struct CallHandle {
    recorder_id: u64,
    index: usize,
}

/// Collects a history from concurrent clients (share it by reference or `Arc`).
///
/// ```
/// use linearizability::{check, Budget, KvInput, KvModel, KvOutput, Recorder};
///
/// let rec = Recorder::new();
/// let h = rec.call(1, KvInput::put("k", "v"));
/// rec.ret(h, KvOutput::Put);
/// let h = rec.call(2, KvInput::get("k"));
/// rec.ret(h, KvOutput::get(Some("v")));
/// let h = rec.call(3, KvInput::put("k", "w"));
/// rec.fail(h); // timed out: may or may not have happened
/// assert!(check(&KvModel, &rec.history(), Budget::default()).is_linearizable());
/// ```
pub struct Recorder<I, O> {
    id: u64,
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
    operations: Mutex<Vec<Operation<I, O>>>,
}

impl<I, O> Default for Recorder<I, O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I, O> Recorder<I, O> {
    /// A recorder timing operations with the monotonic clock (`Instant`). This is right
    /// even under `tokio::time::pause`: real events still happen in real-time order.
    pub fn new() -> Self {
        let start = Instant::now();
        Self::with_clock(move || u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// A recorder reading time from `clock` (nanoseconds, never going backwards), for a
    /// simulated clock.
    pub fn with_clock(clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Recorder {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            clock: Box::new(clock),
            operations: Mutex::new(Vec::new()),
        }
    }

    /// Records the call of `input` by `client_id`. Call it before sending the request.
    pub fn call(&self, client_id: u64, input: I) -> CallHandle {
        let mut operations = self.lock();
        // Read the clock under the lock, so that call order in the history is time order.
        let call_ns = (self.clock)();
        operations.push(Operation::pending(client_id, call_ns, input));
        CallHandle {
            recorder_id: self.id,
            index: operations.len() - 1,
        }
    }

    /// Records that the call returned `output`. Call it after the answer arrived.
    pub fn ret(&self, handle: CallHandle, output: O) {
        let ret_ns = (self.clock)();
        let mut operations = self.lock();
        let operation = self.operation(&mut operations, &handle);
        assert!(
            ret_ns >= operation.call_ns,
            "the recorder's clock went backwards"
        );
        operation.ret = Some(Return { ret_ns, output });
    }

    /// Records that the outcome of the call is unknown (it never returned, or failed in a
    /// way that does not tell whether it took effect, such as a timeout).
    ///
    /// Only use [`Recorder::ret`] for errors that prove the request had no effect, with
    /// an output your model treats as a no-op.
    pub fn fail(&self, handle: CallHandle) {
        let mut operations = self.lock();
        self.operation(&mut operations, &handle).ret = None;
    }

    /// The operations recorded so far, in call order; those in flight are pending.
    pub fn history(&self) -> Vec<Operation<I, O>>
    where
        I: Clone,
        O: Clone,
    {
        self.lock().clone()
    }

    /// The recorded operations, in call order.
    pub fn into_history(self) -> Vec<Operation<I, O>> {
        self.operations
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Operation<I, O>>> {
        // A client thread that panicked leaves a consistent Vec behind.
        self.operations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn operation<'a>(
        &self,
        operations: &'a mut [Operation<I, O>],
        handle: &CallHandle,
    ) -> &'a mut Operation<I, O> {
        assert_eq!(
            handle.recorder_id, self.id,
            "CallHandle used with another Recorder"
        );
        &mut operations[handle.index]
    }
}
