//! The backend size the store reports and the quota charges, as etcd
//! measures it.
//!
//! etcd charges `--quota-backend-bytes` against bbolt's size: the high-water
//! mark of pages in use (`tx.Size()`, page ID × page size), and reports it as
//! `dbSize`; `dbSizeInUse` is that size minus the free pages. Our redb file's
//! length is no measure of either: redb grows its file by doubling and
//! rounds every page allocation up to a power of two, so a quota charged
//! against the file holds a third of the data etcd holds; and reading redb's
//! own page counts costs a walk of every page of the database
//! (`WriteTransaction::stats`), too dear for every commit.
//!
//! So the store charges, per row of the "key" table, the bytes bbolt would
//! use to hold the same row (etcd's rows are the same: a 17- or 18-byte
//! revision key and a marshalled KeyValue, appended in revision order):
//! a leaf element header and the row, in leaf nodes that bbolt splits at 90%
//! of a page (etcd's fill percent for sequential puts), with at least two
//! rows per node, each node rounded up to whole pages, plus its entry in a
//! branch page. The sum, updated with each commit and compaction from the
//! rows' lengths, is `dbSizeInUse`; `dbSize` is its high-water mark since
//! the store was opened or defragmented: like bbolt's file, it does not go
//! down when a compaction frees rows, only with a defragmentation.

/// bbolt's page size on the platforms etcd runs on.
const PAGE: u64 = 4096;
/// bbolt's page header.
const PAGE_HEADER: u64 = 16;
/// bbolt's leaf and branch element headers.
const ELEMENT_HEADER: u64 = 16;
/// Where bbolt splits a node of the "key" bucket: 90% of a page (etcd sets
/// `FillPercent = 0.9` for its sequential puts).
const SPLIT_THRESHOLD: u64 = PAGE * 9 / 10;
/// bbolt keeps at least two elements in a node, however large.
const MIN_ROWS_PER_NODE: u64 = 2;
/// A revision key, the key of the node's entry in its branch page.
const BRANCH_KEY: u64 = 17;
/// What an empty etcd 3.4 backend uses (`dbSizeInUse` of a new member:
/// meta, freelist and bucket pages).
pub(crate) const EMPTY_BACKEND: u64 = 4 * PAGE;

/// The bytes bbolt uses to hold one row of `row_bytes` (key and value) of
/// the "key" bucket: its share of the leaf node it lands in and of that
/// node's branch entry.
pub(crate) fn row(row_bytes: u64) -> u64 {
    let element = ELEMENT_HEADER + row_bytes;
    let per_node = ((SPLIT_THRESHOLD - PAGE_HEADER) / element).max(MIN_ROWS_PER_NODE);
    let node_pages = (PAGE_HEADER + per_node * element).div_ceil(PAGE);
    // The node's entry in a branch page, branch pages filled as leaves.
    let branch = (ELEMENT_HEADER + BRANCH_KEY) * PAGE / (SPLIT_THRESHOLD - PAGE_HEADER);
    (node_pages * PAGE + branch).div_ceil(per_node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_rows_share_pages_filled_to_ninety_percent() {
        // 100-byte rows: 31 to a node, one page: 133 bytes each (the page
        // and a share of the branch entry).
        assert_eq!(row(100), (PAGE + 36).div_ceil(31));
        let small = row(100) as f64 / 100.0;
        assert!((1.2..1.4).contains(&small), "{small}");
        // Tiny rows cost more than their bytes: the element header.
        assert!(row(40) > 56);
    }

    #[test]
    fn large_rows_pair_up_in_nodes_rounded_to_pages() {
        // A 10 kB value (a 10,045-byte row): two to a 5-page node.
        assert_eq!(row(10_045), (5 * PAGE + 36).div_ceil(2));
        // A 100 kB value: two to a 49-page node.
        assert_eq!(row(100_050), (49 * PAGE + 36).div_ceil(2));
        // Rows over a page cost a few percent over their bytes at most.
        for bytes in [5_000u64, 10_045, 50_000, 100_050, 1 << 20] {
            let ratio = row(bytes) as f64 / bytes as f64;
            assert!((1.0..1.25).contains(&ratio), "{bytes}: {ratio}");
        }
    }

    #[test]
    fn grows_with_the_row() {
        let mut last = 0;
        for bytes in (1..200_000).step_by(97) {
            let cost = row(bytes);
            assert!(cost >= bytes, "{bytes}: {cost}");
            // Not monotonic step by step (rows per node change), but never
            // far below a smaller row's cost.
            assert!(cost * 2 >= last, "{bytes}: {cost} after {last}");
            last = cost;
        }
    }
}
