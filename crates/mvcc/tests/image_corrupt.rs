//! Damaged images: every one is refused with `Error::Corrupt` (or the I/O
//! error for a failing source), and a refused restore leaves the store as
//! it was, in memory and on disk.

mod common;

use api::mvccpb::KeyValue;
use common::*;
use mvcc::{image_info, Error, ImageInfo, Store, IMAGE_FORMAT_VERSION};

/// A small image with history, a compaction and a consistent index.
fn source_image() -> (Vec<u8>, ImageInfo) {
    let src = open();
    for i in 0..30u64 {
        put(&src, &format!("key{}", i % 6), &format!("v{i}"), (i + 1, 1));
    }
    delete(&src, "key2", "", (40, 1));
    compact(&src, 20, false);
    put(&src, "last", "x", (41, 1));
    image(&src)
}

/// A store with other data, and what it reads before any restore attempt.
struct Target {
    store: TestStore,
    state: (i64, i64, (u64, u64), Vec<KeyValue>),
}

impl Target {
    fn new() -> Target {
        let store = open();
        for i in 0..50u64 {
            put(&store, &format!("mine{}", i % 9), "m", (100 + i, 5));
        }
        compact(&store, 25, false);
        let state = Target::state_of(&store);
        Target { store, state }
    }

    fn state_of(store: &Store) -> (i64, i64, (u64, u64), Vec<KeyValue>) {
        (
            store.current_revision(),
            store.compact_revision(),
            store.consistent_index(),
            dump(store, 0).unwrap().1,
        )
    }

    /// Restoring `bytes` fails as `Corrupt` (with `expect` in the message)
    /// and changes nothing.
    fn refuses(&self, bytes: &[u8], expect: &str) {
        match self.store.restore_image(&mut &bytes[..]) {
            Err(Error::Corrupt(message)) => {
                assert!(message.contains(expect), "{message:?} lacks {expect:?}")
            }
            other => panic!("restore of a bad image: {other:?}"),
        }
        assert_eq!(Target::state_of(&self.store), self.state);
    }

    /// The store still works and its backend still holds the old data.
    fn check_intact(self) {
        assert!(matches!(dump(&self.store, 24), Err(Error::Compacted)));
        let rev = put(&self.store, "mine0", "later", (200, 5));
        assert_eq!(rev, self.state.0 + 1);
        let store = self.store.reopen();
        assert_eq!(store.current_revision(), rev);
        assert_eq!(store.compact_revision(), 25);
        assert_eq!(dump(&store, rev - 1).unwrap().1, self.state.3);
    }
}

fn info_error(bytes: &[u8]) -> String {
    match image_info(&mut &bytes[..]) {
        Err(Error::Corrupt(message)) => message,
        other => panic!("image_info of a bad image: {other:?}"),
    }
}

#[test]
fn every_flipped_byte_is_detected() {
    let (bytes, _) = source_image();
    let target = Target::new();
    for at in 0..bytes.len() {
        for bit in [0x01, 0x80] {
            let mut bad = bytes.clone();
            bad[at] ^= bit;
            info_error(&bad);
            if at % 3 == 0 {
                target.refuses(&bad, "");
            }
        }
    }
    target.check_intact();
}

#[test]
fn every_truncation_is_detected() {
    let (bytes, _) = source_image();
    let target = Target::new();
    for len in 0..bytes.len() {
        let message = info_error(&bytes[..len]);
        assert!(message.contains("truncated"), "at {len}: {message}");
        if len % 3 == 0 {
            target.refuses(&bytes[..len], "truncated");
        }
    }
    target.check_intact();
}

#[test]
fn wrong_magic_and_unknown_version_are_named() {
    let (bytes, _) = source_image();
    let target = Target::new();
    let mut bad = bytes.clone();
    bad[..8].copy_from_slice(b"bbolt-db");
    assert!(info_error(&bad).contains("not an etcd-rs backend image"));
    target.refuses(&bad, "not an etcd-rs backend image");

    let mut newer = bytes.clone();
    newer[8..12].copy_from_slice(&(IMAGE_FORMAT_VERSION + 1).to_be_bytes());
    reseal(&mut newer);
    let message = info_error(&newer);
    let unsupported = format!(
        "unsupported image format version {}",
        IMAGE_FORMAT_VERSION + 1
    );
    assert!(message.contains(&unsupported), "{message}");
    target.refuses(&newer, &unsupported);
    target.check_intact();
}

fn meta(schema_version: Option<u64>) -> Vec<(u8, Vec<u8>, Vec<u8>)> {
    let mut records = vec![meta_row("consistent_index", 9), meta_row("term", 1)];
    if let Some(version) = schema_version {
        records.insert(1, meta_row("schema_version", version));
    }
    records
}

fn row(main: i64) -> (u8, Vec<u8>, Vec<u8>) {
    (
        TABLE_KEY,
        rev_key(main, 0, false),
        kv_row("k", "v", 2, main, main - 1),
    )
}

fn end(records: u64, keys: u64, revision: i64) -> End {
    End {
        consistent_index: 9,
        consistent_term: 1,
        revision,
        compact_revision: -1,
        keys,
        records,
    }
}

/// Well checksummed images whose content is wrong.
#[test]
fn sealed_but_inconsistent_images_are_refused() {
    let target = Target::new();
    let good = [meta(Some(1)), vec![row(2), row(3)]].concat();
    let ok = encode(1, &good, &end(5, 2, 3));
    assert_eq!(image_info(&mut ok.as_slice()).unwrap().revision, 3);

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            encode(
                1,
                &[good.clone(), vec![(8, b"x".to_vec(), vec![])]].concat(),
                &end(6, 2, 3),
            ),
            "unknown table id 8",
        ),
        (
            encode(
                1,
                &[meta(Some(1)), vec![row(3), row(2)]].concat(),
                &end(5, 2, 3),
            ),
            "out of order",
        ),
        (
            encode(
                1,
                &[meta(Some(1)), vec![row(2), row(2)]].concat(),
                &end(5, 2, 3),
            ),
            "out of order",
        ),
        (
            encode(1, &[vec![row(2)], meta(Some(1))].concat(), &end(4, 1, 2)),
            "out of order",
        ),
        (
            encode(1, &[meta(Some(2)), vec![row(2)]].concat(), &end(4, 1, 2)),
            "schema version 2",
        ),
        (
            encode(1, &[meta(None), vec![row(2)]].concat(), &end(3, 1, 2)),
            "no schema version",
        ),
        (encode(1, &good, &end(5, 2, 4)), "end record disagrees"),
        (encode(1, &good, &end(6, 2, 3)), "end record disagrees"),
        (
            encode(
                1,
                &[meta(Some(1)), vec![(TABLE_KEY, b"short".to_vec(), vec![])]].concat(),
                &end(4, 1, 2),
            ),
            "bad revision key",
        ),
        (
            encode(
                1,
                &[
                    meta(Some(1)),
                    vec![(TABLE_KEY, rev_key(2, 0, false), vec![0xFF])],
                ]
                .concat(),
                &end(4, 1, 2),
            ),
            "value at revision",
        ),
        (
            encode(
                1,
                &[meta(Some(1)), vec![(TABLE_META, vec![0xC3], vec![])]].concat(),
                &end(4, 0, 1),
            ),
            "not UTF-8",
        ),
        (
            encode(
                1,
                &[vec![(TABLE_META, b"consistent_index".to_vec(), vec![1])]].concat(),
                &end(1, 0, 1),
            ),
            "consistent_index is not 8 bytes",
        ),
    ];
    for (bytes, expect) in cases {
        target.refuses(&bytes, expect);
    }
    target.check_intact();
}

/// A source that fails part way: the I/O error comes back as is.
struct FailingReader<'a> {
    bytes: &'a [u8],
}

impl std::io::Read for FailingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.bytes.is_empty() {
            return Err(std::io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.bytes.len()).min(7);
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

struct FailingWriter {
    left: usize,
}

impl std::io::Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::other("disk full"));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn io_errors_are_reported_and_change_nothing() {
    let (bytes, _) = source_image();
    let target = Target::new();
    let mut failing = FailingReader {
        bytes: &bytes[..bytes.len() / 2],
    };
    match target.store.restore_image(&mut failing) {
        Err(Error::Backend { context, .. }) => assert_eq!(context, "read image"),
        other => panic!("restore from a failing source: {other:?}"),
    }
    assert_eq!(Target::state_of(&target.store), target.state);

    for left in [0, 100, bytes.len() - 1] {
        match target.store.write_image(&mut FailingWriter { left }) {
            Err(Error::Backend { context, .. }) => assert_eq!(context, "write image"),
            other => panic!("image to a failing sink: {other:?}"),
        }
    }
    target.check_intact();
}

/// The reader stops at the end of the image: what follows stays unread.
#[test]
fn reader_consumes_exactly_the_image() {
    let (bytes, info) = source_image();
    let mut stream = bytes.clone();
    stream.extend_from_slice(b"next frame");
    let mut rest = stream.as_slice();
    assert_eq!(image_info(&mut rest).unwrap(), info);
    assert_eq!(rest, b"next frame");
    let dst = open();
    let mut rest = stream.as_slice();
    assert_eq!(dst.restore_image(&mut rest).unwrap(), info);
    assert_eq!(rest, b"next frame");
}
