//! Backend images: write, restore and inspect, including while writes and
//! reads run. Damaged images are in `image_corrupt.rs`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::*;
use mvcc::{image_info, Error, Store};

/// Puts, deletes (single and range), a txn, a compaction in the middle and
/// a key re-created after its delete; consistent index ends at (77, 3).
fn build_history(store: &Store) {
    let mut index = 10;
    let mut next = || {
        index += 1;
        (index, 2)
    };
    for i in 0..40 {
        put(store, &format!("key{}", i % 10), &format!("v{i}"), next());
    }
    assert_eq!(delete(store, "key3", "", next()), 1);
    assert_eq!(delete(store, "key5", "key7", next()), 2);
    txn_put2(store, "a", "b", "t");
    compact(store, 30, false);
    for i in 0..20 {
        put(store, &format!("key{}", i % 7), &format!("w{i}"), next());
    }
    delete(store, "key0", "", next());
    put(store, "key3", "back", (77, 3));
}

/// Other data: more revisions, a later compaction, a higher consistent index.
fn build_other(store: &Store) {
    for i in 0..200u64 {
        put(store, &format!("other/{}", i % 50), "x", (800 + i, 9));
    }
    compact(store, 150, false);
    delete(store, "other/1", "other/3", (1000, 9));
}

#[test]
fn restore_replaces_other_data() {
    let src = open();
    build_history(&src);
    let dst = open();
    build_other(&dst);
    assert!(dst.current_revision() > src.current_revision());

    let (bytes, info) = image(&src);
    assert_eq!(info.revision, src.current_revision());
    assert_eq!(info.compact_revision, 30);
    assert_eq!((info.consistent_index, info.consistent_term), (77, 3));
    assert_eq!(image_info(&mut bytes.as_slice()).unwrap(), info);

    let restored = dst.restore_image(&mut bytes.as_slice()).unwrap();
    assert_eq!(restored, info);
    assert_same(&src, &dst, 50);
    assert!(dump(&dst, 0)
        .unwrap()
        .1
        .iter()
        .all(|kv| !kv.key.starts_with(b"other/")));

    // Both go on alike: next revision, consistent index growing from 77.
    for store in [&src.store, &dst.store] {
        assert_eq!(put(store, "key9", "after", (78, 3)), info.revision + 1);
        compact(store, info.revision, false);
    }
    assert_same(&src, &dst, 50);
    assert_eq!(image(&src).0, image(&dst).0, "images of equal stores");

    // The restore was durable, and the backend holds what memory said.
    let dst = dst.reopen();
    assert_same(&src, &dst, 50);
}

#[test]
fn round_trip_50k_keys_with_compaction() {
    let src = open();
    let batch = |range: std::ops::Range<usize>, value: &str, index: u64| {
        let kvs: Vec<_> = range
            .map(|i| (format!("k{:05}", i % 40_000), value.to_string()))
            .collect();
        put_all(&src, &kvs, (index, 1));
    };
    for (n, start) in (0..50_000).step_by(5_000).enumerate() {
        batch(start..start + 5_000, "v1", n as u64 + 1);
    }
    compact(&src, 25_001, true);
    assert!(matches!(dump(&src, 25_000), Err(Error::Compacted)));
    assert_eq!(delete(&src, "k10000", "k12000", (100, 1)), 2_000);
    batch(20_000..21_000, "v2", 101);
    batch(0..10, "v3", 102);

    let (bytes, info) = image(&src);
    assert_eq!(info.consistent_index, 102);
    assert_eq!(info.revision, 51_012);
    assert_eq!(info.compact_revision, 25_001);
    assert_eq!(image_info(&mut bytes.as_slice()).unwrap(), info);

    let dst = open();
    put(&dst, "unrelated", "x", (5, 1));
    assert_eq!(dst.restore_image(&mut bytes.as_slice()).unwrap(), info);
    assert_same(&src, &dst, 8);
    assert_eq!(image(&dst).0, bytes, "a restored store images identically");
    let dst = dst.reopen();
    assert_same(&src, &dst, 4);
}

/// Each batch takes exactly 10 revisions and records its number as the
/// consistent index, so an image's revision follows from its index.
fn hot_batch(store: &Store, n: u64) {
    let mut batch = store.write_batch().unwrap();
    for j in 0..8 {
        let key = format!("hot{}", (n * 8 + j) % 500);
        batch.put(&put_req(&key, &format!("n{n}"))).unwrap();
    }
    batch.put(&put_req("tmp", "x")).unwrap();
    batch.delete_range(&del_req("tmp", "")).unwrap();
    batch.set_consistent_index(n, 4);
    batch.commit(false).unwrap();
}

#[test]
fn image_is_consistent_during_concurrent_writes() {
    const PRELOAD_BATCHES: u64 = 20;
    let src = open();
    for n in 1..=PRELOAD_BATCHES {
        let kvs: Vec<_> = (0..1000)
            .map(|i| (format!("pre{n}/{i}"), "v".to_string()))
            .collect();
        put_all(&src, &kvs, (n, 4));
    }
    let expected_rev =
        |index: u64| 1 + 1000 * PRELOAD_BATCHES as i64 + 10 * (index - PRELOAD_BATCHES) as i64;
    let stop = AtomicBool::new(false);
    let written = AtomicU64::new(PRELOAD_BATCHES);
    let dst = open();
    let mut images = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut n = PRELOAD_BATCHES;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                hot_batch(&src, n);
                written.store(n, Ordering::Release);
            }
        });
        while written.load(Ordering::Acquire) < PRELOAD_BATCHES + 20 {
            std::thread::yield_now();
        }
        for _ in 0..5 {
            let before = written.load(Ordering::Acquire);
            let image = image(&src);
            let after = written.load(Ordering::Acquire);
            images.push((image, before, after));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let overlapping = images.iter().filter(|(_, b, a)| a > b).count();
    assert!(
        overlapping > 0,
        "no image was taken while batches committed"
    );

    for ((bytes, info), before, _) in images {
        assert!(info.consistent_index >= before);
        assert_eq!(info.revision, expected_rev(info.consistent_index));
        // Restore over the previous image: the store must equal the
        // source as it was at the image's revision.
        dst.restore_image(&mut bytes.as_slice()).unwrap();
        assert_eq!(dst.current_revision(), info.revision);
        assert_eq!(dst.consistent_index(), (info.consistent_index, 4));
        for back in [0, 10, 100, 1000] {
            let rev = info.revision - back;
            assert_same_kvs(
                &dump(&dst, rev).unwrap().1,
                &dump(&src, rev).unwrap().1,
                rev,
            );
        }
    }
}

#[test]
fn readers_never_see_a_mix_during_restore() {
    let old = open();
    for i in 0..100u64 {
        put(&old, &format!("r{i:03}"), "old", (i + 1, 1));
    }
    let new = open();
    for i in 0..100u64 {
        put(&new, &format!("r{i:03}"), "first", (i + 1, 2));
    }
    for i in 0..100u64 {
        put(&new, &format!("r{i:03}"), "new", (i + 101, 2));
    }
    compact(&new, 150, false);
    let (old_image, old_info) = image(&old);
    let (new_image, new_info) = image(&new);
    assert_eq!((old_info.revision, new_info.revision), (101, 201));

    let dst = open();
    dst.restore_image(&mut old_image.as_slice()).unwrap();
    let stop = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let (rev, kvs) = dump(&dst, 0).unwrap();
                    let value: &[u8] = match rev {
                        101 => b"old",
                        201 => b"new",
                        other => panic!("read at revision {other}"),
                    };
                    assert_eq!(kvs.len(), 100);
                    assert!(kvs.iter().all(|kv| kv.value == value), "mixed at {rev}");
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for round in 0..20 {
            let (bytes, info) = match round % 2 {
                0 => (&new_image, &new_info),
                _ => (&old_image, &old_info),
            };
            assert_eq!(&dst.restore_image(&mut bytes.as_slice()).unwrap(), info);
            assert_eq!(dst.compact_revision(), info.compact_revision);
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_same(&old, &dst, 50);
}

/// Rows of a small history: foo put at 2 and 3, deleted at 4; bar put at 5.
fn documented_rows() -> Vec<(u8, Vec<u8>, Vec<u8>)> {
    vec![
        (
            TABLE_KEY,
            rev_key(2, 0, false),
            kv_row("foo", "v1", 2, 2, 1),
        ),
        (
            TABLE_KEY,
            rev_key(3, 0, false),
            kv_row("foo", "v2", 2, 3, 2),
        ),
        (TABLE_KEY, rev_key(4, 0, true), kv_row("foo", "", 0, 0, 0)),
        (TABLE_KEY, rev_key(5, 0, false), kv_row("bar", "b", 5, 5, 1)),
    ]
}

fn documented_end(compact_revision: i64, records: u64) -> End {
    End {
        consistent_index: 42,
        consistent_term: 7,
        revision: 5,
        compact_revision,
        keys: 4,
        records,
    }
}

#[test]
fn documented_format_restores_and_is_what_the_writer_writes() {
    let mut records = vec![
        meta_row("consistent_index", 42),
        meta_row("schema_version", 1),
        meta_row("term", 7),
    ];
    records.extend(documented_rows());
    records.push((
        TABLE_LEASE,
        7i64.to_be_bytes().to_vec(),
        b"lease seven".to_vec(),
    ));
    records.push((TABLE_ALARM, b"an alarm".to_vec(), Vec::new()));
    // etcd's auth rows travel as they are (format version 4).
    records.push((TABLE_AUTH, b"authEnabled".to_vec(), vec![1]));
    records.push((TABLE_AUTH_ROLES, b"root".to_vec(), b"role row".to_vec()));
    let bytes = encode(4, &records, &documented_end(-1, 11));
    let info = image_info(&mut bytes.as_slice()).unwrap();
    assert_eq!(info.bytes, bytes.len() as u64);

    let dst = open();
    build_other(&dst);
    assert_eq!(dst.restore_image(&mut bytes.as_slice()).unwrap(), info);
    assert_eq!(dst.current_revision(), 5);
    assert_eq!(dst.compact_revision(), -1);
    assert_eq!(dst.consistent_index(), (42, 7));
    let values = |rev| -> Vec<(Vec<u8>, Vec<u8>)> {
        let (_, kvs) = dump(&dst, rev).unwrap();
        kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
    };
    assert_eq!(values(3), vec![(b"foo".to_vec(), b"v2".to_vec())]);
    assert_eq!(values(4), vec![]);
    assert_eq!(values(5), vec![(b"bar".to_vec(), b"b".to_vec())]);
    assert_eq!(dst.leases().unwrap(), vec![(7, b"lease seven".to_vec())]);
    assert_eq!(dst.alarms().unwrap(), vec![b"an alarm".to_vec()]);
    assert_eq!(image(&dst).0, bytes);
    // ... and survive a defragmentation.
    dst.defragment().unwrap();
    assert_eq!(image(&dst).0, bytes);

    // Format version 3 (no auth tables) still restores.
    let v3: Vec<_> = records
        .iter()
        .filter(|r| r.0 < TABLE_AUTH)
        .cloned()
        .collect();
    let bytes = encode(3, &v3, &documented_end(-1, 9));
    dst.restore_image(&mut bytes.as_slice()).unwrap();
    assert_eq!(dst.alarms().unwrap(), vec![b"an alarm".to_vec()]);

    // Format version 1 (no lease table) still restores, and empties the lease table.
    let mut v1 = vec![
        meta_row("consistent_index", 42),
        meta_row("schema_version", 1),
        meta_row("term", 7),
    ];
    v1.extend(documented_rows());
    let bytes = encode(1, &v1, &documented_end(-1, 7));
    dst.restore_image(&mut bytes.as_slice()).unwrap();
    assert_eq!(dst.leases().unwrap(), vec![]);
    assert_eq!(dst.current_revision(), 5);
}

#[test]
fn lease_rows_are_written_with_the_batch_and_travel_in_images() {
    let src = open();
    let mut wb = src.write_batch().unwrap();
    wb.put_lease(2, b"two".to_vec());
    wb.put_lease(1, b"one".to_vec());
    wb.put_lease(3, b"three".to_vec());
    wb.delete_lease(3);
    wb.set_consistent_index(5, 1);
    wb.commit(true).unwrap();
    assert_eq!(
        src.leases().unwrap(),
        vec![(1, b"one".to_vec()), (2, b"two".to_vec())]
    );
    let dst = open();
    let (bytes, _) = image(&src);
    dst.restore_image(&mut bytes.as_slice()).unwrap();
    assert_eq!(dst.leases().unwrap(), src.leases().unwrap());
    let dst = dst.reopen();
    assert_eq!(dst.leases().unwrap().len(), 2);
}

#[test]
fn interrupted_compaction_in_an_image_is_finished_on_restore() {
    let mut records = vec![
        meta_row("consistent_index", 42),
        meta_row("scheduledCompactRev", 4),
        meta_row("schema_version", 1),
        meta_row("term", 7),
    ];
    records.extend(documented_rows());
    let bytes = encode(1, &records, &documented_end(4, 8));
    assert_eq!(
        image_info(&mut bytes.as_slice()).unwrap().compact_revision,
        4
    );

    let dst = open();
    let info = dst.restore_image(&mut bytes.as_slice()).unwrap();
    assert_eq!((info.revision, info.compact_revision), (5, 4));
    assert_eq!(dst.compact_revision(), 4);
    assert!(matches!(dump(&dst, 3), Err(Error::Compacted)));
    assert_eq!(dump(&dst, 4).unwrap().1, vec![]);
    assert_eq!(dst.key_index_len(), 1, "foo's history is gone");
    // Only bar's row is left, and the compaction is marked finished.
    let (_, again) = image(&dst);
    assert_eq!((again.keys, again.compact_revision), (1, 4));
    let dst = dst.reopen();
    assert_eq!(dst.compact_revision(), 4);
}
