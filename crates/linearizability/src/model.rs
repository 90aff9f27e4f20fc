//! The sequential specification that a history is checked against.

use std::fmt::Debug;
use std::hash::Hash;

use crate::history::Operation;

/// A deterministic sequential object: a state and the operations on it.
///
/// The checker owns the states it explores; `step` must not have side effects. When
/// [`Model::partition`] splits a history, the state is that of one partition (one key).
pub trait Model {
    /// The state of the object; hashed into the search cache, so keep it small.
    type State: Clone + Eq + Hash + Debug;
    /// What a client asked for.
    type Input: Debug;
    /// What the client got back.
    type Output: Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Applies `input` in `state`. Returns the next state if the object would have
    /// returned `output`, and `None` if it could not have.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State>;

    /// Applies `input` in `state` when its output was never observed (the call never
    /// returned). Any output is allowed, so this always succeeds.
    fn step_unobserved(&self, state: &Self::State, input: &Self::Input) -> Self::State;

    /// True if `input` with `output` (`None`: unknown) leaves the state as it was in every
    /// state where `step` accepts it: a read, a failed compare-and-swap. Default: false,
    /// which is always correct.
    ///
    /// The search takes such an operation as soon as it fits and never tries another order
    /// around it (moving it earlier can break nothing), so concurrent reads cost nothing.
    /// A read-only operation that never returned explains nothing and is dropped.
    fn is_read_only(&self, _input: &Self::Input, _output: Option<&Self::Output>) -> bool {
        false
    }

    /// Optional speed-ups for operations that never returned. Each is concurrent with
    /// everything after its call, so k of them can make the search cost 2^k.
    ///
    /// `operations` are one partition's operations in call order; return one hint per
    /// operation (see [`PendingHint`]; completed operations get the default). Default: no
    /// hints, which is always correct.
    fn pending_hints(
        &self,
        operations: &[&Operation<Self::Input, Self::Output>],
    ) -> Vec<PendingHint> {
        vec![PendingHint::default(); operations.len()]
    }

    /// The partition (key) that `input` touches. Operations in different partitions must
    /// be independent: each partition is checked on its own, from [`Model::init`].
    fn partition<'a>(&self, _input: &'a Self::Input) -> &'a str {
        ""
    }
}

/// What a model knows about one operation that never returned, from the rest of its
/// partition. Both fields are indices into the partition's operations (call order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingHint {
    /// `Some(j)`: this operation is *interchangeable* with pending operation `j` (`j` not
    /// after it, and `j`'s own hint says `Some(j)`): giving one the other's input changes
    /// no completed operation's output in any order. The search then linearizes such a
    /// class in call order only (an exchange argument: their returns are all at
    /// +infinity) and steps each member with `j`'s input, so k interchangeable writes cost
    /// k + 1 choices instead of 2^k. Pending operations with equal inputs always are.
    pub same_as: Option<usize>,
    /// `Some(j)`: completed operation `j` saw this operation's effect, so this operation
    /// must be linearized before `j` returns: the search uses `j`'s return as its own.
    /// (Only when nothing else could have had that effect, e.g. the writer of a unique
    /// value that `j` read.) Not together with `same_as`.
    pub observed_by: Option<usize>,
}
