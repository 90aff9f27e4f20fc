//! Hand-written histories with known verdicts.

use linearizability::{
    check, Budget, CheckResult, KvInput, KvModel, KvOutput, Model, Operation, Recorder, Register,
    RegisterInput, RegisterOutput,
};

type KvOperation = Operation<KvInput, KvOutput>;

/// A completed operation: client, call, return, input, output.
fn op(client: u64, call: u64, ret: u64, input: KvInput, output: KvOutput) -> KvOperation {
    Operation::completed(client, call, ret, input, output)
}

/// An operation that never returned.
fn pending(client: u64, call: u64, input: KvInput) -> KvOperation {
    Operation::pending(client, call, input)
}

fn put(key: &str, value: &str) -> KvInput {
    KvInput::put(key, value)
}

fn get(key: &str) -> KvInput {
    KvInput::get(key)
}

fn read(value: Option<&str>) -> KvOutput {
    KvOutput::get(value)
}

const PUT: KvOutput = KvOutput::Put;

/// `None`: linearizable; `Some(key)`: a violation on `key`.
struct Case {
    name: &'static str,
    history: Vec<KvOperation>,
    violation: Option<&'static str>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "empty history",
            history: vec![],
            violation: None,
        },
        Case {
            name: "sequential: put, get, delete, cas",
            history: vec![
                op(1, 0, 10, get("x"), read(None)),
                op(1, 20, 30, put("x", "a"), PUT),
                op(2, 40, 50, get("x"), read(Some("a"))),
                op(
                    1,
                    60,
                    70,
                    KvInput::cas("x", Some("a"), "b"),
                    KvOutput::TxnSucceeded,
                ),
                op(
                    2,
                    80,
                    90,
                    KvInput::cas("x", Some("a"), "c"),
                    KvOutput::txn_failed(Some("b")),
                ),
                op(
                    3,
                    100,
                    110,
                    KvInput::delete("x"),
                    KvOutput::Delete { deleted: 1 },
                ),
                op(
                    3,
                    120,
                    130,
                    KvInput::delete("x"),
                    KvOutput::Delete { deleted: 0 },
                ),
                op(
                    1,
                    140,
                    150,
                    KvInput::cas("x", None, "d"),
                    KvOutput::TxnSucceeded,
                ),
                op(2, 160, 170, get("x"), read(Some("d"))),
            ],
            violation: None,
        },
        Case {
            name: "sequential: delete reports a key it could not have removed",
            history: vec![
                op(1, 0, 10, put("x", "a"), PUT),
                op(
                    1,
                    20,
                    30,
                    KvInput::delete("x"),
                    KvOutput::Delete { deleted: 1 },
                ),
                op(
                    1,
                    40,
                    50,
                    KvInput::delete("x"),
                    KvOutput::Delete { deleted: 1 },
                ),
            ],
            violation: Some("x"),
        },
        Case {
            name: "overlapping writes, a concurrent read sees the first",
            history: vec![
                op(1, 0, 100, put("x", "a"), PUT),
                op(2, 10, 90, put("x", "b"), PUT),
                op(3, 50, 60, get("x"), read(Some("a"))),
                op(3, 110, 120, get("x"), read(Some("b"))),
            ],
            violation: None,
        },
        Case {
            name: "overlapping writes, a concurrent read sees the second",
            history: vec![
                op(1, 0, 100, put("x", "a"), PUT),
                op(2, 10, 90, put("x", "b"), PUT),
                op(3, 50, 60, get("x"), read(Some("b"))),
                op(3, 110, 120, get("x"), read(Some("a"))),
            ],
            violation: None,
        },
        Case {
            name: "overlapping writes, later reads disagree on the winner",
            history: vec![
                op(1, 0, 100, put("x", "a"), PUT),
                op(2, 10, 90, put("x", "b"), PUT),
                op(3, 110, 120, get("x"), read(Some("b"))),
                op(4, 130, 140, get("x"), read(Some("a"))),
            ],
            violation: Some("x"),
        },
        Case {
            name: "touching operations count as concurrent",
            history: vec![
                op(1, 0, 10, put("x", "a"), PUT),
                op(2, 10, 20, get("x"), read(None)),
            ],
            violation: None,
        },
        Case {
            name: "stale read after a completed write",
            history: vec![
                op(1, 0, 10, put("x", "a"), PUT),
                op(1, 20, 30, put("x", "b"), PUT),
                op(2, 40, 50, get("x"), read(Some("a"))),
            ],
            violation: Some("x"),
        },
        Case {
            name: "read of a value never written",
            history: vec![
                op(1, 0, 10, put("x", "a"), PUT),
                op(2, 5, 50, get("x"), read(Some("z"))),
            ],
            violation: Some("x"),
        },
        Case {
            name: "read from the future: the write is called after the read returned",
            history: vec![
                op(2, 0, 10, get("x"), read(Some("a"))),
                op(1, 20, 30, put("x", "a"), PUT),
            ],
            violation: Some("x"),
        },
        Case {
            name: "lost update: two CAS from the same old value both succeed",
            history: vec![
                op(1, 0, 10, put("x", "0"), PUT),
                op(
                    2,
                    20,
                    40,
                    KvInput::cas("x", Some("0"), "1"),
                    KvOutput::TxnSucceeded,
                ),
                op(
                    3,
                    25,
                    45,
                    KvInput::cas("x", Some("0"), "2"),
                    KvOutput::TxnSucceeded,
                ),
            ],
            violation: Some("x"),
        },
        Case {
            name: "racing CAS: one wins, the other reads the winner's value",
            history: vec![
                op(1, 0, 10, put("x", "0"), PUT),
                op(
                    2,
                    20,
                    40,
                    KvInput::cas("x", Some("0"), "1"),
                    KvOutput::TxnSucceeded,
                ),
                op(
                    3,
                    25,
                    45,
                    KvInput::cas("x", Some("0"), "2"),
                    KvOutput::txn_failed(Some("1")),
                ),
                op(1, 50, 60, get("x"), read(Some("1"))),
            ],
            violation: None,
        },
        Case {
            name: "pending write whose effect is seen later",
            history: vec![
                op(1, 0, 10, put("x", "a"), PUT),
                pending(2, 20, put("x", "b")),
                op(3, 100, 110, get("x"), read(Some("b"))),
                op(3, 120, 130, get("x"), read(Some("b"))),
            ],
            violation: None,
        },
        Case {
            name: "pending write whose effect is never seen",
            history: vec![
                op(1, 0, 10, put("x", "a"), PUT),
                pending(2, 20, put("x", "b")),
                op(3, 100, 110, get("x"), read(Some("a"))),
                op(3, 1_000, 1_010, get("x"), read(Some("a"))),
            ],
            violation: None,
        },
        Case {
            name: "pending write seen late, after reads of the old value",
            history: vec![
                op(1, 0, 10, put("x", "a"), PUT),
                pending(2, 20, put("x", "b")),
                op(3, 100, 110, get("x"), read(Some("a"))),
                op(3, 1_000, 1_010, get("x"), read(Some("b"))),
            ],
            violation: None,
        },
        Case {
            name: "pending write seen, then undone",
            history: vec![
                op(1, 0, 10, put("x", "a"), PUT),
                pending(2, 20, put("x", "b")),
                op(3, 100, 110, get("x"), read(Some("b"))),
                op(3, 120, 130, get("x"), read(Some("a"))),
            ],
            violation: Some("x"),
        },
        Case {
            name: "pending write seen before it was called",
            history: vec![
                op(3, 0, 10, get("x"), read(Some("b"))),
                pending(2, 20, put("x", "b")),
            ],
            violation: Some("x"),
        },
        Case {
            name: "pending CAS that took effect",
            history: vec![
                op(1, 0, 10, put("x", "0"), PUT),
                pending(2, 20, KvInput::cas("x", Some("0"), "1")),
                op(
                    3,
                    30,
                    40,
                    KvInput::cas("x", Some("0"), "2"),
                    KvOutput::txn_failed(Some("1")),
                ),
            ],
            violation: None,
        },
        Case {
            name: "pending CAS that did not",
            history: vec![
                op(1, 0, 10, put("x", "0"), PUT),
                pending(2, 20, KvInput::cas("x", Some("0"), "1")),
                op(
                    3,
                    30,
                    40,
                    KvInput::cas("x", Some("0"), "2"),
                    KvOutput::TxnSucceeded,
                ),
                op(3, 50, 60, get("x"), read(Some("2"))),
            ],
            violation: None,
        },
        Case {
            name: "pending reads explain nothing",
            history: vec![
                pending(2, 0, get("x")),
                op(1, 10, 20, put("x", "a"), PUT),
                op(3, 30, 40, get("x"), read(Some("a"))),
            ],
            violation: None,
        },
        Case {
            name: "keys are independent: only y is wrong",
            history: vec![
                op(1, 0, 10, put("x", "a"), PUT),
                op(2, 5, 15, put("y", "a"), PUT),
                op(1, 20, 30, get("y"), read(None)),
                op(2, 25, 35, get("x"), read(Some("a"))),
            ],
            violation: Some("y"),
        },
        Case {
            name: "keys are independent: a value of x is not seen on y",
            history: vec![
                op(1, 0, 10, put("x", "a"), PUT),
                op(2, 20, 30, get("y"), read(Some("a"))),
            ],
            violation: Some("y"),
        },
    ]
}

#[test]
fn kv_table() {
    for case in cases() {
        let result = check(&KvModel, &case.history, Budget::default());
        match (case.violation, &result) {
            (None, CheckResult::Linearizable) => {}
            (Some(want), CheckResult::NotLinearizable { key, .. }) if key == want => {}
            _ => panic!(
                "case {:?}: want violation {:?}, got {result}",
                case.name, case.violation
            ),
        }
    }
}

#[test]
fn excerpt_shows_the_history_of_the_key() {
    let history = vec![
        op(1, 1_000, 1_010, put("y", "other"), PUT),
        op(1, 1_000, 1_010, put("x", "a"), PUT),
        pending(3, 1_015, put("x", "c")),
        op(1, 1_020, 1_030, put("x", "b"), PUT),
        op(2, 1_040, 1_050, get("x"), read(Some("a"))),
    ];
    let result = check(&KvModel, &history, Budget::default());
    let CheckResult::NotLinearizable {
        key,
        history_excerpt,
    } = result
    else {
        panic!("want a violation, got {result}");
    };
    assert_eq!(key, "x");
    let want = r#"4 operations; times in ns since the first call of the history
  op  client  call  return  input -> output
  #1       1     0      10  Put { key: "x", value: "a" } -> Put
  #2       3    15       -  Put { key: "x", value: "c" } -> (never returned)
  #3       1    20      30  Put { key: "x", value: "b" } -> Put
  #4       2    40      50  Get { key: "x" } -> Get { value: Some("a") }
longest linearizable prefix (3 of 4): #1 #2 #3
state after it: Some("b")
not linearized: #4"#;
    assert_eq!(history_excerpt, want, "\n{history_excerpt}");
}

#[test]
fn register_table() {
    use RegisterInput::{Cas, Read, Write};
    let op = Operation::completed;
    type History = Vec<Operation<RegisterInput, RegisterOutput>>;
    let cases: Vec<(&str, History, bool)> = vec![
        (
            "porcupine's first example: reads on both sides of a write",
            vec![
                op(0, 0, 100, Write(100), RegisterOutput::Written),
                op(1, 25, 75, Read, RegisterOutput::Read(100)),
                op(2, 30, 60, Read, RegisterOutput::Read(0)),
            ],
            true,
        ),
        (
            "porcupine's second example: a read after a read of the new value sees the old",
            vec![
                op(0, 0, 100, Write(200), RegisterOutput::Written),
                op(1, 10, 30, Read, RegisterOutput::Read(200)),
                op(2, 40, 90, Read, RegisterOutput::Read(0)),
            ],
            false,
        ),
        (
            "cas chain",
            vec![
                op(
                    0,
                    0,
                    10,
                    Cas {
                        expected: 0,
                        new: 1,
                    },
                    RegisterOutput::Cas(true),
                ),
                op(
                    1,
                    5,
                    15,
                    Cas {
                        expected: 0,
                        new: 2,
                    },
                    RegisterOutput::Cas(false),
                ),
                op(
                    2,
                    20,
                    30,
                    Cas {
                        expected: 1,
                        new: 3,
                    },
                    RegisterOutput::Cas(true),
                ),
                Operation::pending(3, 35, Write(9)),
                op(1, 40, 50, Read, RegisterOutput::Read(9)),
            ],
            true,
        ),
    ];
    for (name, history, linearizable) in cases {
        let result = check(&Register, &history, Budget::default());
        assert_eq!(result.is_linearizable(), linearizable, "{name}: {result}");
        if !linearizable {
            assert!(
                matches!(result, CheckResult::NotLinearizable { ref key, .. } if key.is_empty())
            );
        }
    }
}

#[test]
fn exhausted_budget_is_unknown_but_a_violation_elsewhere_still_counts() {
    // Many concurrent writes and one read at the end: a small budget cannot finish.
    let mut history: Vec<KvOperation> = (0..12)
        .map(|i| op(i, i, 1_000, put("x", &format!("v{i}")), PUT))
        .collect();
    history.push(op(99, 2_000, 2_010, get("x"), read(Some("v0"))));
    let tiny = Budget {
        steps_max: 10,
        wall_time_max: None,
    };
    assert_eq!(
        check(&KvModel, &history, tiny),
        CheckResult::Unknown {
            keys: vec!["x".to_owned()]
        }
    );
    assert!(check(&KvModel, &history, Budget::default()).is_linearizable());

    history.push(op(1, 0, 10, get("a"), read(Some("never written"))));
    assert!(matches!(
        check(&KvModel, &history, tiny),
        CheckResult::NotLinearizable { key, .. } if key == "a"
    ));
}

#[test]
fn many_pending_writes_that_nobody_read() {
    // Forty writes time out; a read after them all sees the last completed write, then
    // one of them. Without merging interchangeable pending writes this is 2^40 orders.
    let mut history = vec![op(0, 0, 10, put("x", "a"), PUT)];
    for client in 1..=40 {
        history.push(pending(
            client,
            10 + client,
            put("x", &format!("lost-{client}")),
        ));
    }
    history.push(op(50, 100, 110, get("x"), read(Some("a"))));
    history.push(op(50, 120, 130, get("x"), read(Some("lost-7"))));
    let small = Budget {
        steps_max: 100_000,
        wall_time_max: None,
    };
    check(&KvModel, &history, small).assert_linearizable();

    // A stale read at the end is a violation, and is found within the same budget.
    history.push(op(0, 140, 150, put("x", "b"), PUT));
    history.push(op(50, 160, 170, get("x"), read(Some("a"))));
    assert!(matches!(
        check(&KvModel, &history, small),
        CheckResult::NotLinearizable { .. }
    ));
    // Without the classes the search drowns.
    assert!(matches!(
        check(&WithoutClasses, &history, small),
        CheckResult::Unknown { .. }
    ));
}

/// The KV model without [`Model::pending_classes`].
struct WithoutClasses;

impl Model for WithoutClasses {
    type State = Option<String>;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Self::State {
        KvModel.init()
    }

    fn step(&self, state: &Self::State, input: &KvInput, output: &KvOutput) -> Option<Self::State> {
        KvModel.step(state, input, output)
    }

    fn step_unobserved(&self, state: &Self::State, input: &KvInput) -> Self::State {
        KvModel.step_unobserved(state, input)
    }

    fn partition<'a>(&self, input: &'a KvInput) -> &'a str {
        KvModel.partition(input)
    }
}

#[test]
fn recorder_collects_a_linearizable_history_from_threads() {
    use std::collections::HashMap;
    use std::sync::Mutex;

    let recorder = Recorder::new();
    let store: Mutex<HashMap<String, String>> = Mutex::new(HashMap::new());
    std::thread::scope(|scope| {
        for client in 0..8u64 {
            let (recorder, store) = (&recorder, &store);
            scope.spawn(move || {
                for i in 0..200u64 {
                    let key = format!("k{}", (client + i) % 3);
                    let input = match i % 4 {
                        0 => KvInput::put(&key, &format!("{client}-{i}")),
                        1 => KvInput::cas(&key, None, &format!("{client}-{i}")),
                        2 if client == 0 => KvInput::delete(&key),
                        _ => KvInput::get(&key),
                    };
                    let handle = recorder.call(client, input.clone());
                    let mut store = store.lock().unwrap();
                    let current = store.get(&key).cloned();
                    let output = match input {
                        KvInput::Put { key, value } => {
                            store.insert(key, value);
                            KvOutput::Put
                        }
                        KvInput::Get { .. } => KvOutput::Get { value: current },
                        KvInput::Delete { key } => KvOutput::Delete {
                            deleted: u64::from(store.remove(&key).is_some()),
                        },
                        KvInput::Txn {
                            key,
                            expected,
                            value,
                        } => {
                            if current == expected {
                                store.insert(key, value);
                                KvOutput::TxnSucceeded
                            } else {
                                KvOutput::TxnFailed { value: current }
                            }
                        }
                    };
                    drop(store);
                    if i % 50 == 7 {
                        // A timeout: applied or not, the client cannot tell.
                        recorder.fail(handle);
                    } else {
                        recorder.ret(handle, output);
                    }
                }
            });
        }
    });
    let history = recorder.into_history();
    assert_eq!(history.len(), 8 * 200);
    assert!(history.iter().any(|op| op.ret.is_none()));
    assert!(history.windows(2).all(|w| w[0].call_ns <= w[1].call_ns));
    check(&KvModel, &history, Budget::default()).assert_linearizable();
}

#[test]
fn recorder_with_a_simulated_clock() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    let now = Arc::new(AtomicU64::new(0));
    let clock = Arc::clone(&now);
    let recorder = Recorder::with_clock(move || clock.load(Ordering::SeqCst));
    let first = recorder.call(1, put("x", "a"));
    now.store(10, Ordering::SeqCst);
    let second = recorder.call(2, get("x"));
    let dropped = recorder.call(3, put("x", "b"));
    now.store(20, Ordering::SeqCst);
    recorder.ret(first, PUT);
    recorder.fail(second);
    drop(dropped);
    assert_eq!(
        recorder.history(),
        vec![
            op(1, 0, 20, put("x", "a"), PUT),
            pending(2, 10, get("x")),
            pending(3, 10, put("x", "b")),
        ]
    );
}

#[test]
#[should_panic(expected = "another Recorder")]
fn a_handle_belongs_to_its_recorder() {
    let a: Recorder<KvInput, KvOutput> = Recorder::new();
    let b: Recorder<KvInput, KvOutput> = Recorder::new();
    let _ = a.call(1, get("x"));
    let handle = b.call(1, get("x"));
    a.ret(handle, read(None));
}
