//! Long histories from a simulated store that is linearizable by construction, and the
//! same histories with one read corrupted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use linearizability::{check, Budget, CheckResult, KvInput, KvModel, KvOutput, Operation};

type KvOperation = Operation<KvInput, KvOutput>;

/// splitmix64: small, seedable, good enough for schedules.
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

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

struct Shape {
    operations: usize,
    keys: u64,
    clients: u64,
    /// The longest an operation that returns takes.
    duration_max: u64,
    /// Operations that time out (never return), in percent.
    pending_percent: u64,
}

/// About six operations in flight per key, one in twenty never returns.
const SHAPE: Shape = Shape {
    operations: 2_000,
    keys: 10,
    clients: 32,
    duration_max: 200,
    pending_percent: 5,
};

/// About ten operations in flight per key, one in ten never returns.
const HEAVY: Shape = Shape {
    operations: 2_000,
    keys: 10,
    clients: 100,
    duration_max: 300,
    pending_percent: 10,
};

/// A history from `clients` that each run one operation at a time against an atomic
/// store. Every operation takes effect at a random point between its call and return;
/// one that times out takes effect at a random later point, or never.
fn simulate(seed: u64, shape: &Shape) -> Vec<KvOperation> {
    let mut rng = Rng(seed);
    let mut free_at: Vec<u64> = (0..shape.clients).map(|_| rng.below(50)).collect();
    let mut history = Vec::with_capacity(shape.operations);
    // (linearization point, history index) of every operation that takes effect.
    let mut points = Vec::new();
    // Values written per key so far, for the expectations of compare-and-swaps.
    let mut written: HashMap<String, Vec<String>> = HashMap::new();
    for index in 0..shape.operations {
        let client = (0..shape.clients)
            .min_by_key(|&client| (free_at[client as usize], client))
            .unwrap_or(0);
        let call = free_at[client as usize];
        let key = format!("k{}", rng.below(shape.keys));
        let value = format!("c{client}-{index}");
        let roll = rng.below(100);
        let input = if roll < 35 {
            KvInput::get(&key)
        } else if roll < 65 {
            KvInput::put(&key, &value)
        } else if roll < 72 {
            KvInput::delete(&key)
        } else {
            let values = written.get(&key).map(Vec::as_slice).unwrap_or_default();
            let expected = match (values.len() as u64, rng.below(4)) {
                (0, _) | (_, 0) => None,
                (n, 1) => Some(values[rng.below(n) as usize].as_str()),
                (n, _) => Some(values[n as usize - 1].as_str()),
            };
            KvInput::cas(&key, expected, &value)
        };
        if matches!(input, KvInput::Put { .. } | KvInput::Txn { .. }) {
            written.entry(key).or_default().push(value);
        }
        if rng.percent(shape.pending_percent) {
            if rng.percent(50) {
                points.push((call + rng.below(400), index));
            }
            free_at[client as usize] = call + 200 + rng.below(20);
            history.push(Operation::pending(client, call, input));
        } else {
            let ret = call + 1 + rng.below(shape.duration_max);
            points.push((call + rng.below(ret - call + 1), index));
            free_at[client as usize] = ret + rng.below(20);
            // The output is filled in below, once the order of effects is known.
            history.push(Operation::completed(
                client,
                call,
                ret,
                input,
                KvOutput::Put,
            ));
        }
    }
    points.sort_unstable();
    let mut store: HashMap<String, String> = HashMap::new();
    for (_, index) in points {
        let output = apply(&mut store, &history[index].input);
        if let Some(ret) = &mut history[index].ret {
            ret.output = output;
        }
    }
    history
}

fn apply(store: &mut HashMap<String, String>, input: &KvInput) -> KvOutput {
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

fn ret_ns(operation: &KvOperation) -> Option<u64> {
    operation.ret.as_ref().map(|ret| ret.ret_ns)
}

/// A write on `key` that certainly took effect: it returned, and it was not a failed CAS.
fn is_definite_write(operation: &KvOperation, key: &str) -> bool {
    let Some(ret) = &operation.ret else {
        return false;
    };
    operation.input.key() == key
        && matches!(
            (&operation.input, &ret.output),
            (KvInput::Put { .. }, _) | (KvInput::Delete { .. }, _) | (_, KvOutput::TxnSucceeded)
        )
}

/// Makes the last possible read return a value that was certainly overwritten before the
/// read was called: put(u) returned, then a definite write was called and returned, then
/// the read was called. Returns the read's index.
fn corrupt_with_stale_read(history: &mut [KvOperation]) -> usize {
    for read in (0..history.len()).rev() {
        let (KvInput::Get { key }, Some(read_ret)) = (&history[read].input, &history[read].ret)
        else {
            continue;
        };
        let read_call = history[read].call_ns;
        let overwrite = history
            .iter()
            .filter(|op| is_definite_write(op, key) && ret_ns(op) < Some(read_call))
            .max_by_key(|op| op.call_ns);
        let Some(overwrite) = overwrite else { continue };
        let stale = history
            .iter()
            .filter(|op| matches!(op.input, KvInput::Put { .. }) && op.input.key() == key)
            .filter(|op| ret_ns(op) < Some(overwrite.call_ns))
            .max_by_key(|op| ret_ns(op));
        let Some(KvInput::Put { value, .. }) = stale.map(|op| &op.input) else {
            continue;
        };
        let stale = KvOutput::get(Some(value));
        if read_ret.output == stale {
            continue;
        }
        if let Some(ret) = &mut history[read].ret {
            ret.output = stale;
        }
        return read;
    }
    panic!("no read to corrupt");
}

/// Makes the first possible read in the second half return the value of a put called after it returned.
fn corrupt_with_future_read(history: &mut [KvOperation]) -> usize {
    for read in history.len() / 2..history.len() {
        let (KvInput::Get { key }, Some(read_ret)) = (&history[read].input, &history[read].ret)
        else {
            continue;
        };
        let future = history.iter().find(|op| {
            matches!(op.input, KvInput::Put { .. })
                && op.input.key() == key
                && op.call_ns > read_ret.ret_ns
        });
        let Some(KvInput::Put { value, .. }) = future.map(|op| &op.input) else {
            continue;
        };
        let future = KvOutput::get(Some(value));
        if let Some(ret) = &mut history[read].ret {
            ret.output = future;
        }
        return read;
    }
    panic!("no read to corrupt");
}

fn timed_check(history: &[KvOperation]) -> (CheckResult, Duration) {
    let start = Instant::now();
    let result = check(&KvModel, history, Budget::default());
    (result, start.elapsed())
}

const SEEDS: [u64; 3] = [1, 2, 3];

#[test]
fn simulated_histories_are_linearizable() {
    for seed in SEEDS {
        let history = simulate(seed, &SHAPE);
        let count = |f: fn(&KvOperation) -> bool| history.iter().filter(|op| f(op)).count();
        let pending = count(|op| op.ret.is_none());
        let cas_won = count(|op| matches!(&op.ret, Some(r) if r.output == KvOutput::TxnSucceeded));
        let cas_lost = count(
            |op| matches!(&op.ret, Some(r) if matches!(r.output, KvOutput::TxnFailed { .. })),
        );
        assert!(
            pending > 20 && cas_won > 50 && cas_lost > 50,
            "seed {seed}: a dull history"
        );

        let (result, elapsed) = timed_check(&history);
        eprintln!(
            "seed {seed}: {} operations, {pending} pending, {cas_won}/{cas_lost} CAS won/lost: \
             {result} in {elapsed:?}",
            history.len()
        );
        assert!(result.is_linearizable(), "seed {seed}: {result}");
    }
}

#[test]
fn heavy_simulated_histories_are_linearizable() {
    for seed in SEEDS {
        let history = simulate(seed, &HEAVY);
        let (result, elapsed) = timed_check(&history);
        eprintln!("seed {seed}: heavy: {result} in {elapsed:?}");
        assert!(result.is_linearizable(), "seed {seed}: {result}");
    }
}

#[test]
fn a_stale_read_in_a_simulated_history_is_found() {
    for seed in SEEDS {
        let mut history = simulate(seed, &SHAPE);
        let read = corrupt_with_stale_read(&mut history);
        let (result, elapsed) = timed_check(&history);
        eprintln!("seed {seed}: stale read #{read}: found in {elapsed:?}");
        expect_violation_at(seed, &history, read, &result);
    }
}

#[test]
fn a_read_from_the_future_in_a_simulated_history_is_found() {
    for seed in SEEDS {
        let mut history = simulate(seed, &SHAPE);
        let read = corrupt_with_future_read(&mut history);
        let (result, elapsed) = timed_check(&history);
        eprintln!("seed {seed}: future read #{read}: found in {elapsed:?}");
        expect_violation_at(seed, &history, read, &result);
    }
}

fn expect_violation_at(seed: u64, history: &[KvOperation], read: usize, result: &CheckResult) {
    let CheckResult::NotLinearizable {
        key,
        history_excerpt,
    } = result
    else {
        panic!("seed {seed}: want a violation at #{read}, got {result}");
    };
    assert_eq!(key, history[read].input.key(), "seed {seed}");
    assert!(
        history_excerpt.contains(&format!("#{read} ")),
        "seed {seed}: #{read} missing from\n{history_excerpt}"
    );
}
