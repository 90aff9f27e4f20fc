//! A linearizability checker for histories of concurrent client operations, for tests.
//!
//! A test records what its clients did with a [`Recorder`]: when each call started, when
//! it returned and what it returned, or that it never returned (a timeout, a dropped
//! connection: the request may still take effect later, or never). [`check`] then decides
//! whether some sequential execution of a [`Model`] explains every observed output while
//! respecting real time: if operation A returned before B was called, A comes first.
//!
//! # The idea
//!
//! Each operation takes effect atomically at one instant, its *linearization point*,
//! somewhere between its call and its return. A history is linearizable if such points
//! can be chosen so that the model, fed the operations in point order, returns exactly the
//! recorded outputs.
//!
//! ```text
//!  client 1  |--put(x,1)--*-|
//!  client 2       |--------*-------get(x)->1---|
//!  client 3                                       |--*--get(x)->None--|
//!            ─────────────────────────────────────────────────────────────▶ time
//! ```
//!
//! The `*` marks work for the first two operations: put, then the read of 1. No point can
//! save the third: it was called after the put returned, so it must come after it and
//! should have read 1. It is a stale read, and the history is not linearizable.
//!
//! # The search (Wing & Gong, with Lowe's just-in-time pruning)
//!
//! This is the algorithm of porcupine and Knossos:
//!
//! * Every operation becomes two entries, its call and its return, in one list sorted by
//!   time (a call sorts before a return at the same instant, so touching operations count
//!   as concurrent). An operation that never returned has its return at +infinity.
//! * Walk the list from the front. At a call entry, try to linearize that operation now:
//!   step the model; if the output matches, lift the call and its return out of the list,
//!   push (entry, old state) on a stack and start again from the front. Otherwise try the
//!   next entry.
//! * Reaching a return entry means its operation had to be linearized by now and was not:
//!   pop the stack, put the last lifted operation back and try the entry after it.
//!   An empty stack means every choice failed: not linearizable. An empty list means done.
//! * Prune with a cache of (set of linearized operations, model state): reaching a pair
//!   seen before cannot lead anywhere new. This is what makes the search practical.
//! * Commit to reads: an operation that cannot change the state ([`Model::is_read_only`]:
//!   a get, a failed compare-and-swap) is taken as soon as it fits, and if nothing works
//!   after it, nothing works at all at that point, so no other order is tried around it.
//!   (In any linearization it could be moved there.) Concurrent reads then cost nothing.
//! * Bound the work: a step budget per partition, and an optional wall-clock limit. An
//!   exhausted budget gives [`CheckResult::Unknown`], never a wrong answer.
//!
//! Operations whose output is unknown (they never returned) step the model without an
//! output to match, so they may be linearized anywhere after their call. Since their
//! return is at +infinity they can also be linearized after everything else, which is the
//! same as "not at all": a write whose effect nobody saw is explained either way. A
//! pending read-only operation explains nothing and is dropped before the search, and
//! once only pending operations are left the search is done.
//!
//! Many pending operations make the search exponential, and faults produce many. A model
//! can give [`PendingHint`]s (the [`KvModel`] does, given unique values): a pending write
//! whose value was read must come before that read returns, so it gets a return time;
//! pending writes of values nobody read are interchangeable, so only one order of them
//! is tried. (etcd's robustness tests patch their histories in the same spirit.)
//!
//! The search is in `search.rs`; `tests/reference.rs` holds it against brute force on
//! small random histories, which is how every pruning above is kept honest.
//!
//! # Partitioning
//!
//! The search is exponential in the worst case, in the number of concurrent operations.
//! Operations on different keys of a KV store are independent, so a history that is
//! linearizable per key is linearizable as a whole (linearizability is compositional,
//! Herlihy & Wing). [`Model::partition`] names the key of an operation and each key is
//! checked on its own; the [`KvModel`] keeps every operation, a txn included, on one key.
//!
//! # Left out on purpose
//!
//! * Revisions: etcd's revision is global to the store, so a per-key check cannot verify
//!   it. Invariant 2 (one revision per write) is tested elsewhere.
//! * Multi-key transactions, ranges, leases and watches: they would break partitioning.
//! * Nondeterministic models: [`Model::step`] yields at most one next state.

mod checker;
mod history;
mod kv;
mod model;
mod register;
mod report;
mod search;

pub use checker::{check, Budget, CheckResult};
pub use history::{CallHandle, Operation, Recorder, Return};
pub use kv::{KvInput, KvModel, KvOutput};
pub use model::{Model, PendingHint};
pub use register::{Register, RegisterInput, RegisterOutput};
