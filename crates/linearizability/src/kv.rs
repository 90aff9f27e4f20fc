//! A model of etcd's key-value operations, one key at a time.
//!
//! Values are best unique per write (a client id and a counter): then a read names the
//! write it saw, violations are unambiguous, and [`Model::pending_hints`] can place the
//! writes that never returned.

use std::collections::{HashMap, HashSet};

use crate::history::Operation;
use crate::model::{Model, PendingHint};

/// An etcd request on one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// `Put(key, value)`.
    Put { key: String, value: String },
    /// `Range(key)` for a single key.
    Get { key: String },
    /// `DeleteRange(key)` for a single key.
    Delete { key: String },
    /// `Txn(if value(key) == expected then Put(key, value) else Get(key))`, where
    /// `expected: None` compares for a missing key (etcd: `create_revision == 0`).
    /// The compare-and-swap of etcd's clients and recipes.
    Txn {
        key: String,
        expected: Option<String>,
        value: String,
    },
}

impl KvInput {
    /// A put of `value` to `key`.
    pub fn put(key: &str, value: &str) -> Self {
        KvInput::Put {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    /// A read of `key`.
    pub fn get(key: &str) -> Self {
        KvInput::Get {
            key: key.to_owned(),
        }
    }

    /// A delete of `key`.
    pub fn delete(key: &str) -> Self {
        KvInput::Delete {
            key: key.to_owned(),
        }
    }

    /// A compare-and-swap: set `key` to `value` if it holds `expected` (`None`: missing).
    pub fn cas(key: &str, expected: Option<&str>, value: &str) -> Self {
        KvInput::Txn {
            key: key.to_owned(),
            expected: expected.map(str::to_owned),
            value: value.to_owned(),
        }
    }

    /// The key this request touches.
    pub fn key(&self) -> &str {
        match self {
            KvInput::Put { key, .. }
            | KvInput::Get { key }
            | KvInput::Delete { key }
            | KvInput::Txn { key, .. } => key,
        }
    }
}

/// What etcd answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// The put was applied.
    Put,
    /// The value read; `None` if the key does not exist.
    Get { value: Option<String> },
    /// How many keys the delete removed (0 or 1).
    Delete { deleted: u64 },
    /// The compare held and the put was applied.
    TxnSucceeded,
    /// The compare failed; `value` is what the else branch's get read.
    TxnFailed { value: Option<String> },
}

impl KvOutput {
    /// A read that returned `value`.
    pub fn get(value: Option<&str>) -> Self {
        KvOutput::Get {
            value: value.map(str::to_owned),
        }
    }

    /// A failed compare whose else branch read `value`.
    pub fn txn_failed(value: Option<&str>) -> Self {
        KvOutput::TxnFailed {
            value: value.map(str::to_owned),
        }
    }
}

/// etcd's key-value semantics, partitioned by key: the state is one key's value.
#[derive(Debug, Clone, Copy, Default)]
pub struct KvModel;

impl KvModel {
    /// What etcd would answer to `input` on a key holding `value`, and the value after.
    fn apply(value: &Option<String>, input: &KvInput) -> (KvOutput, Option<String>) {
        match input {
            KvInput::Put { value: new, .. } => (KvOutput::Put, Some(new.clone())),
            KvInput::Get { .. } => (
                KvOutput::Get {
                    value: value.clone(),
                },
                value.clone(),
            ),
            KvInput::Delete { .. } => (
                KvOutput::Delete {
                    deleted: u64::from(value.is_some()),
                },
                None,
            ),
            KvInput::Txn {
                expected,
                value: new,
                ..
            } => {
                if value == expected {
                    (KvOutput::TxnSucceeded, Some(new.clone()))
                } else {
                    (
                        KvOutput::TxnFailed {
                            value: value.clone(),
                        },
                        value.clone(),
                    )
                }
            }
        }
    }
}

impl Model for KvModel {
    type State = Option<String>;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Self::State {
        None
    }

    fn step(&self, state: &Self::State, input: &KvInput, output: &KvOutput) -> Option<Self::State> {
        let (expected, next) = Self::apply(state, input);
        (expected == *output).then_some(next)
    }

    fn step_unobserved(&self, state: &Self::State, input: &KvInput) -> Self::State {
        Self::apply(state, input).1
    }

    fn is_read_only(&self, input: &KvInput, output: Option<&KvOutput>) -> bool {
        matches!(
            (input, output),
            (KvInput::Get { .. }, _)
                | (KvInput::Txn { .. }, Some(KvOutput::TxnFailed { .. }))
                | (
                    KvInput::Delete { .. },
                    Some(KvOutput::Delete { deleted: 0 })
                )
        )
    }

    /// A value is *observed* by a completed read or failed txn that returned it, or by a
    /// txn that compared against it (an observer of its existence, if it succeeded).
    ///
    /// * A pending write of a value that exactly one operation writes, and that a
    ///   completed operation observed, is `observed_by` the first observer to return.
    /// * Mapping every unobserved value to one token changes no output (only equality
    ///   with observed values, and existence, matter), so pending writes that differ only
    ///   in unobserved values are interchangeable (`same_as`), and pending deletes are.
    fn pending_hints(&self, operations: &[&Operation<KvInput, KvOutput>]) -> Vec<PendingHint> {
        let mut compared: HashSet<&str> = HashSet::new();
        let mut writers: HashMap<&str, usize> = HashMap::new();
        // Value → (return time, operation) of its first observer to return.
        let mut first_observer: HashMap<&str, (u64, usize)> = HashMap::new();
        for (index, operation) in operations.iter().enumerate() {
            match &operation.input {
                KvInput::Put { value, .. } => *writers.entry(value).or_default() += 1,
                KvInput::Txn {
                    expected, value, ..
                } => {
                    *writers.entry(value).or_default() += 1;
                    if let Some(expected) = expected {
                        compared.insert(expected);
                    }
                }
                KvInput::Get { .. } | KvInput::Delete { .. } => {}
            }
            let Some(ret) = &operation.ret else { continue };
            let seen = match (&operation.input, &ret.output) {
                (_, KvOutput::Get { value: Some(value) })
                | (_, KvOutput::TxnFailed { value: Some(value) }) => value,
                (
                    KvInput::Txn {
                        expected: Some(expected),
                        ..
                    },
                    KvOutput::TxnSucceeded,
                ) => expected,
                _ => continue,
            };
            let observer = first_observer.entry(seen).or_insert((ret.ret_ns, index));
            *observer = (*observer).min((ret.ret_ns, index));
        }
        let is_observed =
            |value: &str| compared.contains(value) || first_observer.contains_key(value);

        let mut representatives = HashMap::new();
        operations
            .iter()
            .enumerate()
            .map(|(index, operation)| {
                if operation.ret.is_some() {
                    return PendingHint::default();
                }
                let written = match &operation.input {
                    KvInput::Put { value, .. } | KvInput::Txn { value, .. } => Some(value.as_str()),
                    KvInput::Get { .. } | KvInput::Delete { .. } => None,
                };
                if let Some(value) = written {
                    if writers.get(value) == Some(&1) {
                        if let Some(&(_, observer)) = first_observer.get(value) {
                            return PendingHint {
                                same_as: None,
                                observed_by: Some(observer),
                            };
                        }
                    }
                }
                // The class: the input with every unobserved value replaced by `None`.
                let canonical = |value: &str| is_observed(value).then(|| value.to_owned());
                let class = match &operation.input {
                    KvInput::Put { value, .. } => (0, None, canonical(value)),
                    KvInput::Get { .. } => (1, None, None),
                    KvInput::Delete { .. } => (2, None, None),
                    KvInput::Txn {
                        expected, value, ..
                    } => (3, Some(expected.clone()), canonical(value)),
                };
                PendingHint {
                    same_as: Some(*representatives.entry(class).or_insert(index)),
                    observed_by: None,
                }
            })
            .collect()
    }

    fn partition<'a>(&self, input: &'a KvInput) -> &'a str {
        input.key()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_etcd() {
        let m = KvModel;
        let missing = None;
        let a = Some("a".to_owned());
        // (state, input, output, the next state or None if the output is impossible)
        type Case<'a> = (
            &'a Option<String>,
            KvInput,
            KvOutput,
            Option<Option<String>>,
        );
        let cases: Vec<Case> = vec![
            (&missing, KvInput::get("k"), KvOutput::get(None), Some(None)),
            (&missing, KvInput::get("k"), KvOutput::get(Some("a")), None),
            (
                &missing,
                KvInput::put("k", "a"),
                KvOutput::Put,
                Some(a.clone()),
            ),
            (
                &a,
                KvInput::get("k"),
                KvOutput::get(Some("a")),
                Some(a.clone()),
            ),
            (
                &a,
                KvInput::delete("k"),
                KvOutput::Delete { deleted: 1 },
                Some(None),
            ),
            (
                &a,
                KvInput::delete("k"),
                KvOutput::Delete { deleted: 0 },
                None,
            ),
            (
                &missing,
                KvInput::delete("k"),
                KvOutput::Delete { deleted: 0 },
                Some(None),
            ),
            (
                &missing,
                KvInput::cas("k", None, "b"),
                KvOutput::TxnSucceeded,
                Some(Some("b".into())),
            ),
            (
                &a,
                KvInput::cas("k", Some("a"), "b"),
                KvOutput::TxnSucceeded,
                Some(Some("b".into())),
            ),
            (
                &a,
                KvInput::cas("k", None, "b"),
                KvOutput::txn_failed(Some("a")),
                Some(a.clone()),
            ),
            (
                &a,
                KvInput::cas("k", None, "b"),
                KvOutput::TxnSucceeded,
                None,
            ),
            (
                &a,
                KvInput::cas("k", Some("x"), "b"),
                KvOutput::txn_failed(Some("x")),
                None,
            ),
            (&a, KvInput::put("k", "b"), KvOutput::get(None), None),
        ];
        for (i, (state, input, output, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                m.step(state, &input, &output),
                want,
                "case {i}: {input:?} -> {output:?}"
            );
        }
        assert_eq!(
            m.step_unobserved(&a, &KvInput::cas("k", Some("a"), "b")),
            Some("b".into())
        );
        assert_eq!(m.step_unobserved(&a, &KvInput::cas("k", None, "b")), a);
    }
}
