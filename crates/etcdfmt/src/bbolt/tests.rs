//! Writer → reader round trips, and mutated files that must give errors,
//! not panics or endless walks.

use std::io::Write;

use super::page::{Header, PAGE_HEADER_BYTES};
use super::{Db, Entry, Error, Plan, Result, RowSource};

type Row = (Vec<u8>, Vec<u8>, Vec<u8>);

struct VecSource(Vec<Row>);

impl RowSource for VecSource {
    fn rows(
        &mut self,
        f: &mut dyn FnMut(&[u8], &[u8], &[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        for (b, k, v) in &self.0 {
            f(b, k, v)?;
        }
        Ok(())
    }
}

use crate::test_rng::Rng;

fn build(names: &[&[u8]], rows: Vec<Row>, page_size: u32) -> Vec<u8> {
    let mut src = VecSource(rows);
    let plan = Plan::new(names, page_size, &mut src).expect("plan");
    let mut out = Vec::new();
    plan.write(&mut src, &mut out).expect("write");
    assert_eq!(out.len() as u64, plan.file_bytes());
    out
}

fn open_bytes(bytes: &[u8]) -> Result<Db> {
    let mut f = tempfile::tempfile().expect("tempfile");
    f.write_all(bytes).expect("write tempfile");
    Db::open_with_len(f, bytes.len() as u64)
}

fn read_all(db: &Db) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    db.walk(&mut |b, k, v| {
        rows.push((b.to_vec(), k.to_vec(), v.to_vec()));
        Ok(())
    })?;
    Ok(rows)
}

/// Writes `rows` (sorted here), reads them back, and checks everything.
fn round_trip(names: &[&[u8]], mut rows: Vec<Row>, page_size: u32) -> Db {
    rows.sort();
    rows.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    let bytes = build(names, rows.clone(), page_size);
    let db = open_bytes(&bytes).expect("open");
    assert_eq!(db.size_bytes(), bytes.len() as u64);
    assert_eq!(db.page_size(), page_size);
    assert!(db.has_freelist());
    assert_eq!(read_all(&db).expect("walk"), rows);
    let mut want_names: Vec<Vec<u8>> = names.iter().map(|n| n.to_vec()).collect();
    want_names.sort();
    want_names.dedup();
    assert_eq!(db.buckets().expect("buckets"), want_names);
    let report = db.check().expect("check");
    assert_eq!(report.free_pages, 0);
    assert_eq!(report.reachable_pages, db.high_water_pgid());
    assert_eq!(report.keys, rows.len() as u64);
    assert_eq!(db.free_pages_count().expect("free pages"), 0);
    for name in &want_names {
        let mut got = Vec::new();
        assert!(db
            .for_each(name, &mut |k, v| {
                got.push((name.clone(), k.to_vec(), v.to_vec()));
                Ok(())
            })
            .expect("for_each"));
        let want: Vec<Row> = rows.iter().filter(|r| &r.0 == name).cloned().collect();
        assert_eq!(got, want);
    }
    assert!(!db
        .for_each(b"no such bucket", &mut |_, _| Ok(()))
        .expect("for_each"));
    db
}

fn kv(bucket: &str, key: &[u8], value: &[u8]) -> Row {
    (bucket.as_bytes().to_vec(), key.to_vec(), value.to_vec())
}

#[test]
fn empty_db() {
    let db = round_trip(&[], vec![], 4096);
    assert_eq!(db.high_water_pgid(), 4);
    assert_eq!(db.txid(), 3);
}

#[test]
fn empty_buckets() {
    let db = round_trip(&[b"key", b"meta", b"alarm"], vec![], 4096);
    assert_eq!(db.check().expect("check").buckets, 3);
}

#[test]
fn many_small_rows_make_branches() {
    let rows: Vec<Row> = (0..50_000u32)
        .map(|i| kv("key", &i.to_be_bytes(), format!("v{i}").as_bytes()))
        .collect();
    let db = round_trip(&[b"key", b"meta"], rows, 512);
    // 50k rows in 512-byte pages need at least three levels.
    assert!(db.check().expect("check").max_depth >= 4);
}

#[test]
fn huge_values_overflow() {
    let rows = vec![
        kv("b", b"a", b"small"),
        kv("b", b"big", &vec![7u8; 100_000]),
        kv("b", b"c", b"after"),
        kv("b", &vec![b'k'; 5000], &[1u8; 3]),
        kv("b", &vec![b'l'; 5000], &vec![2u8; 70_000]),
    ];
    round_trip(&[b"b"], rows, 4096);
}

#[test]
fn many_buckets_and_binary_keys() {
    let mut rng = Rng(42);
    let names: Vec<Vec<u8>> = (0..600u32)
        .map(|i| format!("bucket{i:04}").into_bytes())
        .collect();
    let mut rows = Vec::new();
    for name in names.iter().step_by(3) {
        for _ in 0..5 {
            let mut key = rng.bytes(20);
            key.push(0);
            rows.push((name.clone(), key, rng.bytes(40)));
        }
    }
    let refs: Vec<&[u8]> = names.iter().map(|n| n.as_slice()).collect();
    round_trip(&refs, rows, 1024);
}

#[test]
fn entries_report_nothing_nested_for_our_files() {
    let db = round_trip(&[b"b"], vec![kv("b", b"k", b"v")], 4096);
    let mut entries = Vec::new();
    db.for_each_entry(b"b", &mut |e| {
        if let Entry::Value(k, v) = e {
            entries.push((k.to_vec(), v.to_vec()));
        }
        Ok(())
    })
    .expect("entries");
    assert_eq!(entries, vec![(b"k".to_vec(), b"v".to_vec())]);
}

#[test]
fn callback_errors_stop_the_walk() {
    let db = round_trip(
        &[b"b"],
        vec![kv("b", b"k1", b"v"), kv("b", b"k2", b"v")],
        4096,
    );
    let mut seen = 0;
    let err = db
        .walk(&mut |_, _, _| {
            seen += 1;
            Err(Error::Callback("stop".into()))
        })
        .expect_err("stopped");
    assert_eq!(seen, 1);
    assert!(matches!(err, Error::Callback(m) if m == "stop"));
}

#[test]
fn writer_rejects_bad_input() {
    let cases: Vec<(Vec<Row>, &str)> = vec![
        (vec![kv("x", b"k", b"v")], "not among"),
        (
            vec![kv("b", b"k2", b"v"), kv("b", b"k1", b"v")],
            "out of order",
        ),
        (
            vec![kv("b", b"k", b"v"), kv("b", b"k", b"v")],
            "out of order",
        ),
        (
            vec![kv("c", b"k", b"v"), kv("b", b"k", b"v")],
            "out of order",
        ),
        (vec![kv("b", b"", b"v")], "key of 0 bytes"),
    ];
    for (rows, want) in cases {
        let err = Plan::new(&[b"b", b"c"], 4096, &mut VecSource(rows)).expect_err(want);
        assert!(err.to_string().contains(want), "{err} should say {want}");
    }
    assert!(Plan::new(&[], 1000, &mut VecSource(vec![])).is_err());
}

#[test]
fn writer_notices_rows_changed_between_passes() {
    let rows: Vec<Row> = (0..200u32)
        .map(|i| kv("b", &i.to_be_bytes(), b"v"))
        .collect();
    let plan = Plan::new(&[b"b"], 4096, &mut VecSource(rows.clone())).expect("plan");
    for change in 0..3 {
        let mut other = rows.clone();
        match change {
            0 => other[100].2 = b"w".to_vec(),
            1 => {
                other.pop();
            }
            _ => other[5].2 = vec![0; 3000],
        }
        let mut out = Vec::new();
        let err = plan
            .write(&mut VecSource(other), &mut out)
            .expect_err("changed rows");
        assert!(err.to_string().contains("changed"), "{err}");
    }
}

#[test]
fn write_file_renames_into_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let n = super::write_file(
        &path,
        &[b"b"],
        4096,
        &mut VecSource(vec![kv("b", b"k", b"v")]),
    )
    .expect("write_file");
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), n);
    assert!(!dir.path().join("db.tmp").exists());
    let db = Db::open(&path).expect("open");
    assert_eq!(read_all(&db).expect("walk"), vec![kv("b", b"k", b"v")]);
}

fn random_rows(rng: &mut Rng, names: &[Vec<u8>]) -> Vec<Row> {
    let n = rng.below(300);
    let mut rows = Vec::new();
    for _ in 0..n {
        let b = names[rng.below(names.len() as u64) as usize].clone();
        let mut k = rng.bytes(12);
        k.push(1);
        let v = if rng.below(20) == 0 {
            rng.bytes(9000)
        } else {
            rng.bytes(30)
        };
        rows.push((b, k, v));
    }
    rows
}

#[test]
fn random_rows_round_trip() {
    let mut rng = Rng(0x5eed);
    for case in 0..48 {
        let names: Vec<Vec<u8>> = (0..1 + rng.below(5))
            .map(|i| format!("b{i}").into_bytes())
            .collect();
        let rows = random_rows(&mut rng, &names);
        let refs: Vec<&[u8]> = names.iter().map(|n| n.as_slice()).collect();
        let page_size = [512u32, 1024, 4096][case % 3];
        round_trip(&refs, rows, page_size);
    }
}

/// Open, walk and check; any result is fine, a panic is not.
fn exercise(bytes: &[u8]) -> bool {
    let Ok(db) = open_bytes(bytes) else {
        return false;
    };
    let _ = db.buckets();
    let walked = read_all(&db).is_ok();
    let checked = db.check().is_ok();
    let _ = db.free_pages_count();
    walked && checked
}

/// Page ids of branch pages in a file (from their headers).
fn pages_with_flags(bytes: &[u8], page_size: usize, flags: u16) -> Vec<usize> {
    (2..bytes.len() / page_size)
        .filter(|p| {
            Header::parse(&bytes[p * page_size..])
                .is_some_and(|h| h.flags == flags && h.id == *p as u64)
        })
        .collect()
}

#[test]
fn mutated_files_fail_cleanly() {
    // BBOLT_MUTATION_ROUNDS / BBOLT_MUTATION_SEED run longer or other cases.
    let seed = std::env::var("BBOLT_MUTATION_SEED")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);
    let mut rng = Rng(seed);
    let ps = 512usize;
    let names: Vec<Vec<u8>> = vec![b"alpha".to_vec(), b"beta".to_vec()];
    let refs: Vec<&[u8]> = names.iter().map(|n| n.as_slice()).collect();
    let mut rows: Vec<Row> = (0..400u32)
        .map(|i| {
            (
                names[(i % 2) as usize].clone(),
                i.to_be_bytes().to_vec(),
                vec![i as u8; (i % 50) as usize],
            )
        })
        .collect();
    rows.push((names[0].clone(), vec![0xff; 4], vec![9; 3000]));
    rows.sort();
    let good = build(&refs, rows, ps as u32);
    assert!(exercise(&good));
    let branches = pages_with_flags(&good, ps, super::page::FLAG_BRANCH);
    assert!(!branches.is_empty());
    let pages = good.len() / ps;

    let rounds: usize = std::env::var("BBOLT_MUTATION_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(400);
    let mut failures = 0;
    for round in 0..rounds {
        let mut bad = good.clone();
        match round % 7 {
            0 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(bad.len() as u64) as usize;
                    bad[i] ^= 1 << rng.below(8);
                }
            }
            1 => bad.truncate(rng.below(bad.len() as u64) as usize),
            2 => {
                let p = rng.below(pages as u64) as usize;
                bad[p * ps..(p + 1) * ps].fill(0);
            }
            3 => {
                // A child pointer beyond the file, or to itself / an ancestor.
                let p = branches[rng.below(branches.len() as u64) as usize];
                let count = Header::parse(&bad[p * ps..]).map_or(1, |h| h.count.max(1)) as usize;
                let e = p * ps + PAGE_HEADER_BYTES + 16 * rng.below(count as u64) as usize;
                let target = match rng.below(3) {
                    0 => pages as u64 + rng.below(1000),
                    1 => p as u64,
                    _ => branches[rng.below(branches.len() as u64) as usize] as u64,
                };
                bad[e + 8..e + 16].copy_from_slice(&target.to_le_bytes());
            }
            4 => {
                // Random u32 fields in element arrays (pos, sizes).
                let p = 2 + rng.below(pages as u64 - 2) as usize;
                let off = p * ps + PAGE_HEADER_BYTES + 4 * rng.below(40) as usize;
                let v = [0u32, 1, 15, 16, 511, 4096, u32::MAX, rng.next() as u32]
                    [rng.below(8) as usize];
                bad[off..off + 4].copy_from_slice(&v.to_le_bytes());
            }
            5 => {
                // Header fields: count, overflow, flags.
                let p = 2 + rng.below(pages as u64 - 2) as usize;
                let off = p * ps + 8 + 2 * rng.below(4) as usize;
                let v = [0u16, 1, 2, 4, 0x10, 0xFFFF, rng.next() as u16][rng.below(7) as usize];
                bad[off..off + 2].copy_from_slice(&v.to_le_bytes());
            }
            _ => {
                // Shorten a bucket value in the root tree's leaf.
                let root = pages - 1;
                let e = root * ps + PAGE_HEADER_BYTES + 16 * rng.below(2) as usize;
                let v = rng.below(17) as u32;
                bad[e + 12..e + 16].copy_from_slice(&v.to_le_bytes());
            }
        }
        if !exercise(&bad) {
            failures += 1;
        }
    }
    assert!(
        failures > rounds / 4,
        "only {failures} mutations were noticed"
    );
}

#[test]
fn errors_say_where() {
    let rows: Vec<Row> = (0..300u32)
        .map(|i| kv("key", &i.to_be_bytes(), &[0; 20]))
        .collect();
    let mut bad = build(&[b"key"], rows, 512);
    let ps = 512;
    let branch = pages_with_flags(&bad, ps, super::page::FLAG_BRANCH)[0];
    let e = branch * ps + PAGE_HEADER_BYTES;
    bad[e + 8..e + 16].copy_from_slice(&9999u64.to_le_bytes());
    let db = open_bytes(&bad).expect("metas are fine");
    let msg = read_all(&db).expect_err("bad child").to_string();
    assert!(
        msg.contains(&format!(
            "page 9999 referenced by page {branch} (bucket key) is beyond the high-water mark"
        )),
        "{msg}"
    );

    let mut cyclic = build(
        &[b"key"],
        (0..300u32)
            .map(|i| kv("key", &i.to_be_bytes(), &[0; 20]))
            .collect(),
        512,
    );
    let e = branch * ps + PAGE_HEADER_BYTES + 16;
    cyclic[e + 8..e + 16].copy_from_slice(&(branch as u64).to_le_bytes());
    let db = open_bytes(&cyclic).expect("metas are fine");
    let msg = db.check().expect_err("cycle").to_string();
    assert!(msg.contains("reachable twice"), "{msg}");

    let mut no_meta = cyclic.clone();
    no_meta[16] ^= 1;
    no_meta[ps + 16] ^= 1;
    let msg = open_bytes(&no_meta).err().expect("no meta").to_string();
    assert!(msg.contains("no valid meta page"), "{msg}");
}

#[test]
fn falls_back_to_meta_one() {
    let mut bytes = build(&[b"b"], vec![kv("b", b"k", b"v")], 1024);
    bytes[16..20].fill(0); // meta 0's magic
    let db = open_bytes(&bytes).expect("meta 1 is valid");
    assert_eq!(db.page_size(), 1024);
    assert_eq!(db.txid(), 3);
    let mut bytes = build(&[b"b"], vec![kv("b", b"k", b"v")], 1024);
    bytes[1024 + 16] ^= 1; // meta 1's magic: meta 0 (lower txid) wins
    let db = open_bytes(&bytes).expect("meta 0 is valid");
    assert_eq!(db.txid(), 2);
}

/// A file with inline buckets and a nested bucket, which our writer never
/// makes but bbolt does: pages 0/1 metas, 2 freelist, 3 root leaf, 4 the
/// leaf of bucket "nest".
fn hand_made_file() -> Vec<u8> {
    use super::page::{
        bucket_header, encode_leaf, Meta, FLAG_FREELIST, LEAF_FLAG_BUCKET, MAGIC, VERSION,
    };
    let ps = 1024usize;
    let inline = |entries: &[(u32, &[u8], &[u8])]| {
        let mut v = bucket_header(0, 0).to_vec();
        v.extend_from_slice(&encode_leaf(0, entries, 1));
        v
    };
    let inl = inline(&[(0, b"a", b"1"), (0, b"b", b"2")]);
    let sub = inline(&[(0, b"x", b"9")]);
    let nest_header = bucket_header(4, 7);
    let root = encode_leaf(
        3,
        &[
            (LEAF_FLAG_BUCKET, b"inl", &inl),
            (LEAF_FLAG_BUCKET, b"nest", &nest_header),
        ],
        ps,
    );
    let nest = encode_leaf(4, &[(0, b"k", b"v"), (LEAF_FLAG_BUCKET, b"sub", &sub)], ps);
    let mut file = Vec::new();
    for (pgid, txid) in [(0u64, 4u64), (1, 3)] {
        let meta = Meta {
            magic: MAGIC,
            version: VERSION,
            page_size: ps as u32,
            flags: 0,
            root_pgid: 3,
            root_sequence: 0,
            freelist_pgid: 2,
            pgid: 5,
            txid,
            checksum: 0,
        };
        file.extend_from_slice(&meta.encode_page(pgid, ps));
    }
    let mut freelist = vec![0u8; ps];
    Header {
        id: 2,
        flags: FLAG_FREELIST,
        count: 0,
        overflow: 0,
    }
    .encode(&mut freelist);
    file.extend_from_slice(&freelist);
    file.extend_from_slice(&root);
    file.extend_from_slice(&nest);
    file
}

#[test]
fn inline_and_nested_buckets() {
    let bytes = hand_made_file();
    let db = open_bytes(&bytes).expect("open");
    assert_eq!(db.txid(), 4);
    assert_eq!(
        read_all(&db).expect("walk"),
        vec![
            kv("inl", b"a", b"1"),
            kv("inl", b"b", b"2"),
            kv("nest", b"k", b"v")
        ]
    );
    let mut entries = Vec::new();
    db.for_each_entry(b"nest", &mut |e| {
        entries.push(format!("{e:?}"));
        Ok(())
    })
    .expect("entries");
    assert_eq!(
        entries,
        vec![
            format!("{:?}", Entry::Value(b"k", b"v")),
            format!("{:?}", Entry::Bucket(b"sub"))
        ]
    );
    let report = db.check().expect("check");
    assert_eq!(
        (
            report.buckets,
            report.nested_buckets,
            report.keys,
            report.free_pages
        ),
        (2, 1, 4, 0)
    );

    // Every single-byte change of the trees: errors or not, never a panic.
    let mut rng = Rng(99);
    for i in 3 * 1024..bytes.len() {
        if bytes[i] == 0 && rng.below(8) != 0 {
            continue;
        }
        let mut bad = bytes.clone();
        bad[i] = [0u8, 1, 0x10, 0xff, bad[i] ^ 0x80, rng.next() as u8][rng.below(6) as usize];
        exercise(&bad);
    }
}
