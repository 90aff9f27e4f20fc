//! The search over one partition: Wing & Gong's backtracking with Lowe's cache.
//!
//! Every operation has a call entry and a return entry (at +infinity if it never
//! returned) in one list, in time order:
//!
//! ```text
//! HEAD ⇄ call a ⇄ call p ⇄ call b ⇄ ret a ⇄ call c ⇄ ret b ⇄ ret c ⇄ ret p (∞) ⇄ TAIL
//! ```
//!
//! It is a doubly linked list over arrays, so an operation is lifted out and put back in
//! O(1) (dancing links). The candidates to linearize next are the calls before the first
//! return entry (`a`, `p`, `b`), tried in that order. Once only operations that never
//! returned are left, they follow in call order and the partition is linearizable.
//!
//! A read-only operation that fits is a forced choice (see `Frame::forced`): backtracking
//! passes over it to the choice before, and meeting it in the cache means a dead end.
//!
//! (Trying pending operations last looks tempting, since an effect nobody saw is best
//! placed at the end, but it measured slower on the histories of `tests/random.rs`,
//! probably because a pending write that someone did see is then found late.)

use std::collections::HashSet;
use std::time::Instant;

use crate::history::Operation;
use crate::model::{Model, PendingHint};

pub(crate) enum Outcome {
    Linearizable,
    Violation,
    Exhausted,
}

/// A doubly linked list over nodes `1..=len`, with sentinels `0` and `len + 1`.
struct Links {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Links {
    const HEAD: usize = 0;

    fn new(len: usize) -> Self {
        let tail = len + 1;
        Links {
            next: (0..=tail).map(|node| (node + 1).min(tail)).collect(),
            prev: (0..=tail).map(|node| node.saturating_sub(1)).collect(),
        }
    }

    fn first(&self) -> usize {
        self.next[Self::HEAD]
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        self.prev[next] = prev;
    }

    /// Undoes `unlink(node)`; unlinks must be undone in reverse order.
    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        self.prev[next] = node;
    }
}

/// Operations are numbered 0..n in call order (local numbers).
pub(crate) struct Search<'a, M: Model> {
    model: &'a M,
    /// Local number → operation.
    partition: Vec<&'a Operation<M::Input, M::Output>>,
    /// Local number → index in the history.
    indices: &'a [usize],
    entries: Links,
    /// Entry node → local number, and whether it is a call.
    entry_operation: Vec<usize>,
    entry_is_call: Vec<bool>,
    /// Local number → its return entry node.
    return_entry: Vec<usize>,
    /// Operations with a return time that are not linearized yet.
    returned_left: usize,
    /// Local number → whether its return is at +infinity.
    is_pending: Vec<bool>,
    /// Local number → the first member of its class of interchangeable pending
    /// operations ([`PendingHint::same_as`]) and its rank in the class.
    class: Vec<Option<(usize, usize)>>,
    /// Class (by first member) → how many members are linearized.
    class_linearized: Vec<usize>,
    state: M::State,
    linearized: Bitset,
    /// The call entries taken, with the state before each.
    stack: Vec<Frame<M::State>>,
    cache: HashSet<(Bitset, M::State)>,
    /// The longest stack seen (as history indices) and the state after it; saved when
    /// backtracking from it, so a search that goes straight through copies nothing.
    best: (Vec<usize>, M::State),
    best_len: usize,
    best_saved: bool,
}

impl<'a, M: Model> Search<'a, M> {
    /// `indices`: the partition's operations in `history`, in call order.
    pub(crate) fn new(
        model: &'a M,
        history: &'a [Operation<M::Input, M::Output>],
        indices: &'a [usize],
    ) -> Self {
        let n = indices.len();
        let partition: Vec<&Operation<M::Input, M::Output>> =
            indices.iter().map(|&index| &history[index]).collect();
        let hints = model.pending_hints(&partition);
        assert_eq!(
            hints.len(),
            n,
            "Model::pending_hints: one hint per operation"
        );

        // (time, 0 = call / 1 = return, local number): calls sort before returns at the
        // same instant, so operations that touch count as concurrent.
        let mut sorted: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * n);
        let mut is_pending = vec![false; n];
        for (local, operation) in partition.iter().enumerate() {
            sorted.push((operation.call_ns, 0, local));
            let ret_ns = return_ns(&partition, &hints, local);
            is_pending[local] = ret_ns.is_none();
            sorted.push((ret_ns.unwrap_or(u64::MAX), 1, local));
        }
        sorted.sort_unstable();
        let mut entry_operation = vec![0; 2 * n + 2];
        let mut entry_is_call = vec![false; 2 * n + 2];
        let mut return_entry = vec![0; n];
        for (position, &(_, kind, local)) in sorted.iter().enumerate() {
            let node = position + 1;
            entry_operation[node] = local;
            entry_is_call[node] = kind == 0;
            if kind == 1 {
                return_entry[local] = node;
            }
        }
        let class = classes(&partition, &hints);
        let init = model.init();
        Search {
            model,
            partition,
            indices,
            entries: Links::new(2 * n),
            entry_operation,
            entry_is_call,
            return_entry,
            returned_left: is_pending.iter().filter(|&&pending| !pending).count(),
            is_pending,
            class,
            class_linearized: vec![0; n],
            state: init.clone(),
            linearized: Bitset::new(n),
            stack: Vec::new(),
            cache: HashSet::new(),
            best: (Vec::new(), init),
            best_len: 0,
            best_saved: true,
        }
    }

    pub(crate) fn run(&mut self, steps_max: u64, deadline: Option<Instant>) -> Outcome {
        let mut entry = self.entries.first();
        let mut steps: u64 = 0;
        // Pending operations left over go at the end, in call order.
        while self.returned_left > 0 {
            steps += 1;
            if steps > steps_max
                || (steps.is_multiple_of(4096) && deadline.is_some_and(|at| Instant::now() >= at))
            {
                return Outcome::Exhausted;
            }
            // A return entry: its operation was not linearized before its return.
            let take = match self.entry_is_call[entry] {
                true => self.take(entry),
                false => Take::DeadEnd,
            };
            entry = match take {
                Take::Taken => self.entries.first(),
                Take::Rejected => self.entries.next[entry],
                Take::DeadEnd => match self.backtrack() {
                    Some(call) => self.entries.next[call],
                    None => return Outcome::Violation,
                },
            };
        }
        Outcome::Linearizable
    }

    /// The longest linearizable prefix found (history indices), and the state after it.
    pub(crate) fn best_prefix(&self) -> (Vec<usize>, M::State) {
        self.best.clone()
    }

    /// Linearizes the operation of `call` next and lifts it out of the list, if the model
    /// allows it and the resulting (linearized set, state) is new.
    fn take(&mut self, call: usize) -> Take {
        let local = self.entry_operation[call];
        let operation = self.partition[local];
        let next_state = match (&operation.ret, self.class[local]) {
            (Some(ret), _) => self.model.step(&self.state, &operation.input, &ret.output),
            (None, None) => Some(self.model.step_unobserved(&self.state, &operation.input)),
            (None, Some((first, rank))) => {
                // Interchangeable operations go in call order, all as the first member.
                if self.class_linearized[first] != rank {
                    return Take::Rejected;
                }
                let input = &self.partition[first].input;
                Some(self.model.step_unobserved(&self.state, input))
            }
        };
        let Some(next_state) = next_state else {
            return Take::Rejected;
        };
        let forced = self.model.is_read_only(
            &operation.input,
            operation.ret.as_ref().map(|ret| &ret.output),
        );
        debug_assert!(!forced || next_state == self.state, "Model::is_read_only");
        self.linearized.set(local);
        if !self
            .cache
            .insert((self.linearized.clone(), next_state.clone()))
        {
            // Explored before, and it failed; for a read-only operation that means every
            // choice here fails (see `Frame::forced`).
            self.linearized.clear(local);
            return if forced {
                Take::DeadEnd
            } else {
                Take::Rejected
            };
        }
        if let Some((first, _)) = self.class[local] {
            self.class_linearized[first] += 1;
        }
        if !self.is_pending[local] {
            self.returned_left -= 1;
        }
        let previous = std::mem::replace(&mut self.state, next_state);
        self.stack.push(Frame {
            call,
            previous,
            forced,
        });
        self.entries.unlink(call);
        self.entries.unlink(self.return_entry[local]);
        if self.stack.len() > self.best_len {
            self.best_len = self.stack.len();
            self.best_saved = false;
        }
        Take::Taken
    }

    /// Undoes the last choice: the last `take` and any forced ones after it. Returns the
    /// call entry taken by that choice, or `None` if there is none.
    fn backtrack(&mut self) -> Option<usize> {
        if !self.best_saved {
            let prefix = self
                .stack
                .iter()
                .map(|frame| self.indices[self.entry_operation[frame.call]])
                .collect();
            self.best = (prefix, self.state.clone());
            self.best_saved = true;
        }
        loop {
            let frame = self.stack.pop()?;
            self.state = frame.previous;
            let local = self.entry_operation[frame.call];
            self.linearized.clear(local);
            if let Some((first, _)) = self.class[local] {
                self.class_linearized[first] -= 1;
            }
            if !self.is_pending[local] {
                self.returned_left += 1;
            }
            self.entries.relink(self.return_entry[local]);
            self.entries.relink(frame.call);
            if !frame.forced {
                return Some(frame.call);
            }
        }
    }
}

enum Take {
    Taken,
    /// Not here: try the next candidate.
    Rejected,
    /// No candidate can work here: backtrack.
    DeadEnd,
}

/// A call entry taken, and the state before it.
struct Frame<S> {
    call: usize,
    previous: S,
    /// A read-only operation ([`Model::is_read_only`]): in any linearization from here it
    /// can be moved to this place, so if nothing works after it, no other choice here
    /// can work either.
    forced: bool,
}

/// When operation `local` returned, or `None` (+infinity) if it never did, unless a hint
/// says that a completed operation saw its effect.
fn return_ns<I, O>(
    partition: &[&Operation<I, O>],
    hints: &[PendingHint],
    local: usize,
) -> Option<u64> {
    let operation = partition[local];
    if let Some(ret) = &operation.ret {
        return Some(ret.ret_ns);
    }
    let observer = hints[local].observed_by?;
    let Some(observed) = &partition[observer].ret else {
        panic!("PendingHint: operation {local} observed by pending operation {observer}");
    };
    // An observer that returned before the call is a violation the search will find.
    Some(observed.ret_ns.max(operation.call_ns))
}

/// The classes of interchangeable pending operations, with each member's rank.
fn classes<I, O>(
    partition: &[&Operation<I, O>],
    hints: &[PendingHint],
) -> Vec<Option<(usize, usize)>> {
    let mut sizes = vec![0; partition.len()];
    let mut ranked = Vec::with_capacity(partition.len());
    for (local, hint) in hints.iter().enumerate() {
        ranked.push(hint.same_as.map(|first| {
            assert!(
                first <= local
                    && hints[first].same_as == Some(first)
                    && hint.observed_by.is_none()
                    && partition[local].ret.is_none(),
                "PendingHint: bad class {first} for operation {local}"
            );
            sizes[first] += 1;
            (first, sizes[first] - 1)
        }));
    }
    ranked
}

/// The set of linearized operations of a partition.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(len: usize) -> Self {
        Bitset(vec![0; len.div_ceil(64)])
    }

    fn set(&mut self, bit: usize) {
        self.0[bit / 64] |= 1 << (bit % 64);
    }

    fn clear(&mut self, bit: usize) {
        self.0[bit / 64] &= !(1 << (bit % 64));
    }
}
