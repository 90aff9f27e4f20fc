//! The checker against brute force on many small random histories: every pruning
//! (cache, pending hints, read-only operations) must leave the verdict unchanged.

use std::collections::{BTreeMap, HashSet};

use linearizability::{check, Budget, CheckResult, KvInput, KvModel, KvOutput, Operation};

type KvOperation = Operation<KvInput, KvOutput>;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn maybe<'a>(&mut self, items: &[&'a str]) -> Option<&'a str> {
        (self.below(3) > 0).then(|| self.pick(items))
    }
}

type Store = BTreeMap<String, String>;

fn apply(store: &mut Store, input: &KvInput) -> KvOutput {
    match input {
        KvInput::Put { key, value } => {
            store.insert(key.clone(), value.clone());
            KvOutput::Put
        }
        KvInput::Get { key } => KvOutput::Get {
            value: store.get(key).cloned(),
        },
        KvInput::Delete { key } => KvOutput::Delete {
            deleted: u64::from(store.remove(key).is_some()),
        },
        KvInput::Txn {
            key,
            expected,
            value,
        } => {
            let current = store.get(key).cloned();
            if current == *expected {
                store.insert(key.clone(), value.clone());
                KvOutput::TxnSucceeded
            } else {
                KvOutput::TxnFailed { value: current }
            }
        }
    }
}

/// Tries every order that respects real time; pending operations anywhere or nowhere.
fn brute_force(history: &[KvOperation]) -> bool {
    fn search(
        history: &[KvOperation],
        left: u32,
        store: &Store,
        dead: &mut HashSet<(u32, Store)>,
    ) -> bool {
        let completed_left = (0..history.len())
            .filter(|&i| left & (1 << i) != 0 && history[i].ret.is_some())
            .count();
        if completed_left == 0 {
            return true;
        }
        if dead.contains(&(left, store.clone())) {
            return false;
        }
        for i in (0..history.len()).filter(|&i| left & (1 << i) != 0) {
            // Nothing still to place may have returned before this call.
            let blocked = (0..history.len()).any(|j| {
                left & (1 << j) != 0
                    && history[j]
                        .ret
                        .as_ref()
                        .is_some_and(|ret| ret.ret_ns < history[i].call_ns)
            });
            if blocked {
                continue;
            }
            let mut next = store.clone();
            let output = apply(&mut next, &history[i].input);
            if history[i]
                .ret
                .as_ref()
                .is_some_and(|ret| ret.output != output)
            {
                continue;
            }
            if search(history, left & !(1 << i), &next, dead) {
                return true;
            }
        }
        dead.insert((left, store.clone()));
        false
    }
    let all = (1u32 << history.len()) - 1;
    search(history, all, &Store::new(), &mut HashSet::new())
}

/// A small history: simulated from an atomic store, then perhaps one output changed.
fn small_history(rng: &mut Rng) -> Vec<KvOperation> {
    let keys = ["x", "y"];
    let values = ["a", "b", "c", "d"];
    // Unique written values half the time: that is when the pending hints apply.
    let unique = rng.below(2) == 0;
    let n = 2 + rng.below(11) as usize;
    let keys = &keys[..1 + rng.below(2) as usize];
    let mut history = Vec::new();
    let mut points = Vec::new();
    for index in 0..n {
        let key = rng.pick(keys);
        let input = match rng.below(4) {
            0 => KvInput::get(key),
            1 if unique => KvInput::put(key, &format!("u{index}")),
            1 => KvInput::put(key, rng.pick(&values)),
            2 => KvInput::delete(key),
            _ if unique => {
                let expected = match rng.below(3) {
                    0 => None,
                    _ => Some(format!("u{}", rng.below(n as u64))),
                };
                KvInput::cas(key, expected.as_deref(), &format!("u{index}"))
            }
            _ => KvInput::cas(key, rng.maybe(&values), rng.pick(&values)),
        };
        let call = rng.below(20);
        if rng.below(4) == 0 {
            if rng.below(2) == 0 {
                points.push((call + rng.below(30), index));
            }
            history.push(Operation::pending(index as u64, call, input));
        } else {
            let ret = call + rng.below(8);
            points.push((call + rng.below(ret - call + 1), index));
            history.push(Operation::completed(
                index as u64,
                call,
                ret,
                input,
                KvOutput::Put,
            ));
        }
    }
    points.sort_unstable();
    let mut store = Store::new();
    for (_, index) in points {
        let output = apply(&mut store, &history[index].input);
        if let Some(ret) = &mut history[index].ret {
            ret.output = output;
        }
    }
    for _ in 0..rng.below(3) {
        let victim = rng.below(n as u64) as usize;
        let output = match &history[victim].input {
            KvInput::Put { .. } => KvOutput::Put,
            KvInput::Get { .. } if unique => {
                KvOutput::get(Some(&format!("u{}", rng.below(n as u64))))
            }
            KvInput::Get { .. } => KvOutput::get(rng.maybe(&values)),
            KvInput::Delete { .. } => KvOutput::Delete {
                deleted: rng.below(2),
            },
            KvInput::Txn { .. } => match rng.below(2) {
                0 => KvOutput::TxnSucceeded,
                _ => KvOutput::txn_failed(rng.maybe(&values)),
            },
        };
        if let Some(ret) = &mut history[victim].ret {
            ret.output = output;
        }
    }
    history
}

#[test]
fn agrees_with_brute_force() {
    let mut rng = Rng(7);
    let (mut linearizable, mut violations) = (0, 0);
    for round in 0..20_000 {
        let history = small_history(&mut rng);
        let want = brute_force(&history);
        let got = check(&KvModel, &history, Budget::default());
        assert!(
            !matches!(got, CheckResult::Unknown { .. }),
            "round {round}: {got}"
        );
        assert_eq!(
            got.is_linearizable(),
            want,
            "round {round}: brute force says {want}, checker says {got}\n{history:#?}"
        );
        if want {
            linearizable += 1;
        } else {
            violations += 1;
        }
    }
    eprintln!("{linearizable} linearizable, {violations} not");
    assert!(linearizable > 5_000 && violations > 5_000, "unbalanced");
}
