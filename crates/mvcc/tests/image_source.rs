//! Image sources (one committed state, sized then written), `snapshot
//! status` numbers, backend files read as images, and the rebase a restore
//! applies for a new cluster.

mod common;

use common::*;
use mvcc::{image_info, image_status, Error, ImageSource, BACKEND_FILE_MAGIC};

fn history(store: &mvcc::Store) {
    for i in 0..30u64 {
        put(store, &format!("k{}", i % 7), &format!("v{i}"), (i + 1, 1));
    }
    delete(store, "k2", "", (31, 1));
    compact(store, 12, false);
    put(store, "k2", "again", (32, 2));
}

/// CRC-32C bit by bit (independent of the crate's table-driven one).
fn crc32c(bytes: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for chunk in bytes {
        for b in chunk.iter() {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
        }
    }
    !crc
}

/// The records of an image, parsed from the documented layout.
fn records(image: &[u8]) -> Vec<(u8, Vec<u8>, Vec<u8>)> {
    let mut at = 12;
    let mut out = Vec::new();
    while image[at] != 0xFF {
        let table = image[at];
        let key_len = u32::from_be_bytes(image[at + 1..at + 5].try_into().unwrap()) as usize;
        let value_len = u32::from_be_bytes(image[at + 5..at + 9].try_into().unwrap()) as usize;
        let key = image[at + 9..at + 9 + key_len].to_vec();
        let value = image[at + 9 + key_len..at + 9 + key_len + value_len].to_vec();
        out.push((table, key, value));
        at += 9 + key_len + value_len;
    }
    out
}

#[test]
fn a_source_is_one_state_while_writes_continue() {
    let src = open();
    history(&src);
    let before = src.current_revision();
    let source = src.image_source().unwrap();
    let size = source.size().unwrap();
    // Writes after the source was taken are not in it.
    for i in 0..20u64 {
        put(&src, &format!("late{i}"), "x", (100 + i, 3));
    }
    let mut bytes = Vec::new();
    let info = source.write_to(&mut bytes).unwrap();
    assert_eq!(info.bytes, size, "the size pass and the write agree");
    assert_eq!(bytes.len() as u64, size);
    assert_eq!(info.revision, before);
    assert_eq!(info.consistent_index, 32);
    assert_eq!(image_info(&mut bytes.as_slice()).unwrap(), info);
    let mut again = Vec::new();
    source.write_to(&mut again).unwrap();
    assert_eq!(again, bytes, "a source writes the same image every time");
    assert!(image(&src).1.revision > before);
}

#[test]
fn status_hashes_table_names_and_rows_in_image_order() {
    let src = open();
    history(&src);
    let (bytes, info) = image(&src);
    let status = image_status(&mut bytes.as_slice()).unwrap();
    assert_eq!(status.info, info);

    let rows = records(&bytes);
    assert_eq!(status.rows, rows.len() as u64);
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut table = 0;
    for (t, key, value) in &rows {
        if *t != table {
            table = *t;
            parts.push(match t {
                1 => b"meta",
                2 => b"key",
                _ => b"lease",
            });
        }
        parts.push(key);
        parts.push(value);
    }
    assert_eq!(status.hash, crc32c(&parts));
    assert_eq!(src.image_source().unwrap().status().unwrap(), status);

    // Any change of a row changes the hash.
    put(&src, "k1", "other", (40, 2));
    let changed = src.image_source().unwrap().status().unwrap();
    assert_ne!(changed.hash, status.hash);
}

#[test]
fn a_backend_file_is_read_as_an_image() {
    let src = open();
    history(&src);
    let (bytes, info) = image(&src);
    let path = src.dir.path().join("member/snap/db");
    let dir = src.dir;
    drop(src.store);
    let copy = dir.path().join("copy.db");
    std::fs::copy(&path, &copy).unwrap();
    let head = std::fs::read(&copy).unwrap();
    assert_eq!(head[..BACKEND_FILE_MAGIC.len()], BACKEND_FILE_MAGIC);
    let source = ImageSource::open_file(&copy).unwrap();
    let mut from_file = Vec::new();
    assert_eq!(source.write_to(&mut from_file).unwrap(), info);
    assert!(
        from_file == bytes,
        "the image of the file equals the live one"
    );
    drop(source);
    // Opened read-only: the file is unchanged.
    assert!(
        std::fs::read(&copy).unwrap() == head,
        "the file was changed"
    );
}

#[test]
fn rebase_moves_the_consistent_index_back() {
    let src = open();
    history(&src);
    let revision = src.current_revision();
    assert_eq!(src.rebase(3, 1, 0).unwrap(), revision);
    assert_eq!(src.consistent_index(), (3, 1));
    assert_eq!(src.compact_revision(), 12);
    let src = src.reopen();
    assert_eq!(src.consistent_index(), (3, 1));
    assert_eq!(src.current_revision(), revision);
    // The log of the new cluster goes on from there.
    assert_eq!(put(&src, "new", "x", (4, 2)), revision + 1);
}

#[test]
fn rebase_bumps_the_revision_and_marks_it_compacted() {
    let src = open();
    history(&src);
    let revision = src.current_revision();
    let (_, live) = dump(&src, 0).unwrap();
    let bumped = src.rebase(3, 1, 1000).unwrap();
    assert_eq!(bumped, revision + 1000);
    assert_eq!(src.current_revision(), bumped);
    assert_eq!(src.compact_revision(), bumped);
    // The same keys, read at the bumped revision; older ones are compacted.
    let (rev, kvs) = dump(&src, 0).unwrap();
    assert_eq!(rev, bumped);
    assert_same_kvs(&kvs, &live, bumped);
    assert!(matches!(dump(&src, revision), Err(Error::Compacted)));
    assert_eq!(put(&src, "next", "x", (4, 1)), bumped + 1);
    let src = src.reopen();
    assert_eq!(
        (src.current_revision(), src.compact_revision()),
        (bumped + 1, bumped)
    );
    let (_, info) = image(&src);
    assert_eq!(info.compact_revision, bumped);
}
