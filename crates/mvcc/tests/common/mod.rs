//! Helpers shared by the image tests: a store in a temp dir, writes in
//! batches of their own, dumps of the whole key space at a revision, and an
//! encoder of the image format written from its documentation alone.

#![allow(dead_code)]

use api::etcdserverpb::request_op::Request;
use api::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use api::mvccpb::KeyValue;
use mvcc::{Error, ImageInfo, Store, StoreOptions};

pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub store: Store,
}

pub fn open() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("member/snap/db"), StoreOptions::default()).unwrap();
    TestStore { dir, store }
}

impl std::ops::Deref for TestStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl TestStore {
    pub fn reopen(self) -> TestStore {
        let TestStore { dir, store } = self;
        drop(store);
        let store =
            Store::open(&dir.path().join("member/snap/db"), StoreOptions::default()).unwrap();
        TestStore { dir, store }
    }
}

pub fn put_req(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

pub fn del_req(key: &str, end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: key.into(),
        range_end: end.into(),
        ..Default::default()
    }
}

/// One batch of puts (each its own revision), with a consistent index.
pub fn put_all(store: &Store, kvs: &[(String, String)], consistent: (u64, u64)) {
    let mut batch = store.write_batch().unwrap();
    for (key, value) in kvs {
        batch.put(&put_req(key, value)).unwrap();
    }
    batch.set_consistent_index(consistent.0, consistent.1);
    batch.commit(false).unwrap();
}

pub fn put(store: &Store, key: &str, value: &str, consistent: (u64, u64)) -> i64 {
    put_all(store, &[(key.into(), value.into())], consistent);
    store.current_revision()
}

pub fn delete(store: &Store, key: &str, end: &str, consistent: (u64, u64)) -> i64 {
    let mut batch = store.write_batch().unwrap();
    let (resp, _) = batch.delete_range(&del_req(key, end)).unwrap();
    batch.set_consistent_index(consistent.0, consistent.1);
    batch.commit(false).unwrap();
    resp.deleted
}

/// A txn putting both keys (one revision).
pub fn txn_put2(store: &Store, a: &str, b: &str, value: &str) {
    let op = |key: &str| RequestOp {
        request: Some(Request::RequestPut(put_req(key, value))),
    };
    let mut batch = store.write_batch().unwrap();
    batch
        .txn(&TxnRequest {
            success: vec![op(a), op(b)],
            ..Default::default()
        })
        .unwrap();
    batch.commit(false).unwrap();
}

pub fn compact(store: &Store, rev: i64, durable: bool) {
    let mut batch = store.write_batch().unwrap();
    batch
        .compact(&CompactionRequest {
            revision: rev,
            physical: true,
        })
        .unwrap();
    batch.commit(durable).unwrap();
}

/// Every key live at `rev` (0: current), with the count.
pub fn dump(store: &Store, rev: i64) -> Result<(i64, Vec<KeyValue>), Error> {
    let resp = store.range(&RangeRequest {
        key: vec![0],
        range_end: vec![0],
        revision: rev,
        ..Default::default()
    })?;
    assert_eq!(resp.count as usize, resp.kvs.len());
    Ok((resp.header.unwrap().revision, resp.kvs))
}

/// Asserts equal dumps, printing the first difference rather than both.
pub fn assert_same_kvs(a: &[KeyValue], b: &[KeyValue], rev: i64) {
    if a != b {
        let first = a.iter().zip(b).position(|(x, y)| x != y);
        let at = first.unwrap_or(a.len().min(b.len()));
        panic!(
            "dumps differ at revision {rev}: {} vs {} kvs, first difference at {at}: {:?} vs {:?}",
            a.len(),
            b.len(),
            a.get(at),
            b.get(at)
        );
    }
}

pub fn image(store: &Store) -> (Vec<u8>, ImageInfo) {
    let mut bytes = Vec::new();
    let info = store.write_image(&mut bytes).unwrap();
    assert_eq!(info.bytes, bytes.len() as u64);
    (bytes, info)
}

/// Asserts that both stores are in the same state, and read the same at
/// `samples` revisions spread over the readable ones (and fail alike
/// outside them).
pub fn assert_same(a: &Store, b: &Store, samples: i64) {
    assert_eq!(a.current_revision(), b.current_revision(), "revision");
    assert_eq!(a.compact_revision(), b.compact_revision(), "compaction");
    assert_eq!(
        a.consistent_index(),
        b.consistent_index(),
        "consistent index"
    );
    assert_eq!(a.key_index_len(), b.key_index_len(), "key index");
    let current = a.current_revision();
    let first = a.compact_revision().max(1);
    let step = ((current - first) / samples).max(1) as usize;
    let mut revs: Vec<i64> = (first..=current).step_by(step).collect();
    revs.extend([0, current]);
    for rev in revs {
        let ((a_rev, a_kvs), (b_rev, b_kvs)) = (dump(a, rev).unwrap(), dump(b, rev).unwrap());
        assert_eq!(a_rev, b_rev, "header revision at {rev}");
        assert_same_kvs(&a_kvs, &b_kvs, rev);
    }
    if a.compact_revision() > 1 {
        for rev in [1, a.compact_revision() - 1] {
            assert!(matches!(dump(b, rev), Err(Error::Compacted)), "at {rev}");
        }
    }
    assert!(matches!(dump(b, current + 1), Err(Error::FutureRevision)));
}

// ---- An encoder of the documented format, independent of the crate's ----

pub const TABLE_META: u8 = 1;
pub const TABLE_KEY: u8 = 2;
pub const TABLE_LEASE: u8 = 3;
pub const TABLE_ALARM: u8 = 4;
pub const TABLE_AUTH: u8 = 5;
pub const TABLE_AUTH_ROLES: u8 = 7;

pub fn rev_key(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    let mut key = main.to_be_bytes().to_vec();
    key.push(b'_');
    key.extend_from_slice(&sub.to_be_bytes());
    if tombstone {
        key.push(b't');
    }
    key
}

pub fn kv_row(key: &str, value: &str, create: i64, modified: i64, version: i64) -> Vec<u8> {
    prost::Message::encode_to_vec(&KeyValue {
        key: key.into(),
        value: value.into(),
        create_revision: create,
        mod_revision: modified,
        version,
        lease: 0,
    })
}

pub fn meta_row(name: &str, value: u64) -> (u8, Vec<u8>, Vec<u8>) {
    (TABLE_META, name.into(), value.to_be_bytes().to_vec())
}

/// The end record's fields, as documented.
pub struct End {
    pub consistent_index: u64,
    pub consistent_term: u64,
    pub revision: i64,
    pub compact_revision: i64,
    pub keys: u64,
    pub records: u64,
}

/// Encodes an image of `records` with the given format version and end
/// record, checksummed.
pub fn encode(version: u32, records: &[(u8, Vec<u8>, Vec<u8>)], end: &End) -> Vec<u8> {
    let mut out = b"ETCDRSIM".to_vec();
    out.extend_from_slice(&version.to_be_bytes());
    for (table, key, value) in records {
        out.push(*table);
        out.extend_from_slice(&(key.len() as u32).to_be_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(value);
    }
    out.push(0xFF);
    for field in [
        end.consistent_index,
        end.consistent_term,
        end.revision as u64,
        end.compact_revision as u64,
        end.keys,
        end.records,
    ] {
        out.extend_from_slice(&field.to_be_bytes());
    }
    out.extend_from_slice(&[0; 4]);
    reseal(&mut out);
    out
}

/// Recomputes the checksum (the last 4 bytes) after an edit.
pub fn reseal(image: &mut [u8]) {
    let at = image.len() - 4;
    let crc = crc32fast::hash(&image[..at]);
    image[at..].copy_from_slice(&crc.to_be_bytes());
}
