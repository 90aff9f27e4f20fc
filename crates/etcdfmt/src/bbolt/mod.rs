//! bbolt's file format: etcd's backend file (`member/snap/db`) and every
//! file `etcdctl snapshot save` writes (the same pages, then a 32-byte
//! SHA-256 of them).
//!
//! A bbolt file is an array of fixed-size pages (4096 bytes in etcd),
//! addressed by page id (`pgid`): page `n` starts at byte `n × page_size`.
//!
//! ```text
//!  page 0      page 1      page 2..                        page hwm-1
//! +-----------+-----------+--------+--------+-------------+--------+
//! | meta (A)  | meta (B)  | leaf   | branch | leaf + 2 overflow    |...
//! +-----------+-----------+--------+--------+-------------+--------+
//!
//! every page:  id u64 | flags u16 | count u16 | overflow u32 | body...
//!
//! meta body:   magic u32 | version u32 | page_size u32 | flags u32 |
//!              root {pgid u64, sequence u64} | freelist u64 | pgid u64 |
//!              txid u64 | checksum u64  (FNV-1a 64 of the 56 bytes before)
//!
//! leaf body:   [flags u32, pos u32, ksize u32, vsize u32] × count, then
//!              key/value bytes; pos is counted from the element itself
//! branch body: [pos u32, ksize u32, pgid u64] × count, then key bytes
//! ```
//!
//! The tree: the meta's root bucket is a B+tree whose leaves map bucket
//! names to bucket values (leaf flag 0x01). A bucket value is a 16-byte
//! header {root pgid, sequence}; when root is 0 the bucket is *inline*: a
//! leaf page (header and elements) follows the header inside the value.
//! Otherwise root names the bucket's own B+tree of key/value leaves.
//!
//! Invariants the reader checks (a file breaking one is reported as
//! [`Error::Corrupt`] naming the page and the bucket, never a panic):
//!
//! - at least two pages; one meta with the right magic, version 2 and
//!   checksum; of two valid metas the one with the higher txid wins;
//! - the page size is a power of two from 512 B to 64 KiB, and the
//!   high-water mark (`meta.pgid`) pages fit in the file;
//! - every referenced page is in `2..hwm` (with its overflow pages), says
//!   its own id in its header, has the type its parent expects, and is
//!   reached once (a bitset of `hwm` bits; this also stops cycles);
//! - element offsets and lengths stay inside their page (overflow included);
//! - keys ascend strictly in a page and stay within the range the parent
//!   branch gives them; trees (bucket nesting included) are at most 64
//!   pages deep;
//! - bucket values hold at least the 16-byte header; inline pages are
//!   well-formed leaves.
//!
//! The writer ([`Plan`]) produces compact files from sorted rows in two
//! passes so the meta pages (which come first) can be streamed before the
//! rows: pass 1 lays out pages, pass 2 writes them in increasing order.
//!
//! Left out: writing in place (transactions, the freelist's reuse of pages),
//! inline buckets in the writer (every bucket gets its own root page), and
//! bucket sequences other than 0 in the writer (etcd does not use them).

mod page;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

pub use reader::{CheckReport, Db, Entry};
pub use writer::{write_file, Plan, RowSource};

/// Whether `head` (a file's first bytes, at least 20) starts like a bbolt
/// file: meta page 0's magic follows its 16-byte page header. A hint for
/// telling files apart; [`Db::open`] checks the rest.
pub fn looks_like_bbolt(head: &[u8]) -> bool {
    head.get(page::PAGE_HEADER_BYTES..page::PAGE_HEADER_BYTES + 4)
        == Some(&page::MAGIC.to_le_bytes()[..])
}

/// The result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong reading or writing a bbolt file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused a read or write.
    #[error("bbolt: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The file breaks bbolt's format; the message says what and where.
    #[error("bbolt: {0}")]
    Corrupt(String),
    /// The writer was given rows it cannot lay out (unlisted bucket, rows
    /// out of order, different rows on the second pass, oversized keys).
    #[error("bbolt writer: {0}")]
    Input(String),
    /// A caller's callback stopped a walk with its own error.
    #[error("{0}")]
    Callback(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// A key or bucket name for messages: printable ASCII as is, the rest
/// escaped.
pub(crate) fn show(bytes: &[u8]) -> String {
    const MAX_SHOWN_BYTES: usize = 64;
    let shown: String = bytes
        .iter()
        .take(MAX_SHOWN_BYTES)
        .flat_map(|b| b.escape_ascii())
        .map(char::from)
        .collect();
    if bytes.len() > MAX_SHOWN_BYTES {
        format!("{shown}...")
    } else {
        shown
    }
}
