//! The entry point: split a history into partitions and search each.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::history::Operation;
use crate::model::Model;
use crate::report;
use crate::search::{Outcome, Search};

/// How much work [`check`] may do before answering [`CheckResult::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Search steps per partition (one step tries one entry of the list).
    pub steps_max: u64,
    /// Wall-clock time for the whole check; `None` for no limit.
    pub wall_time_max: Option<Duration>,
}

impl Default for Budget {
    /// Ten million steps per partition (a few seconds at worst), no time limit, so the
    /// verdict does not depend on the machine.
    fn default() -> Self {
        Budget {
            steps_max: 10_000_000,
            wall_time_max: None,
        }
    }
}

/// The verdict on a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    Linearizable,
    /// No linearization exists for the operations on `key`; `history_excerpt` lists them
    /// in call order with times, outputs and the longest linearizable prefix found.
    NotLinearizable {
        key: String,
        history_excerpt: String,
    },
    /// The budget ran out on these keys before an answer; every other key is linearizable.
    Unknown {
        keys: Vec<String>,
    },
}

impl CheckResult {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, CheckResult::Linearizable)
    }

    /// Panics with the offending history unless the result is `Linearizable`. For tests.
    #[track_caller]
    pub fn assert_linearizable(&self) {
        assert!(self.is_linearizable(), "{self}");
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Linearizable => write!(f, "linearizable"),
            CheckResult::NotLinearizable {
                key,
                history_excerpt,
            } => write!(f, "not linearizable on key {key:?}:\n{history_excerpt}"),
            CheckResult::Unknown { keys } => {
                write!(f, "unknown: the check ran out of budget on keys {keys:?}")
            }
        }
    }
}

/// Checks `history` against `model`, partition by partition.
///
/// A violation in any partition is reported even if another ran out of budget. Panics if
/// an operation returned before it was called (a broken recorder).
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    budget: Budget,
) -> CheckResult {
    let deadline = budget
        .wall_time_max
        .and_then(|limit| Instant::now().checked_add(limit));
    let mut partitions: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, operation) in history.iter().enumerate() {
        if let Some(ret) = &operation.ret {
            assert!(
                ret.ret_ns >= operation.call_ns,
                "operation #{index} returned before it was called: {operation:?}"
            );
        } else if model.is_read_only(&operation.input, None) {
            continue;
        }
        let key = model.partition(&operation.input);
        partitions.entry(key).or_default().push(index);
    }
    for operations in partitions.values_mut() {
        operations.sort_by_key(|&index| (history[index].call_ns, index));
    }
    let mut unknown = Vec::new();
    for (key, operations) in partitions {
        let mut search = Search::new(model, history, &operations);
        match search.run(budget.steps_max, deadline) {
            Outcome::Linearizable => {}
            Outcome::Exhausted => unknown.push(key.to_owned()),
            Outcome::Violation => {
                let (prefix, state) = search.best_prefix();
                return CheckResult::NotLinearizable {
                    key: key.to_owned(),
                    history_excerpt: report::excerpt(model, history, key, &prefix, &state),
                };
            }
        }
    }
    if unknown.is_empty() {
        CheckResult::Linearizable
    } else {
        CheckResult::Unknown { keys: unknown }
    }
}
