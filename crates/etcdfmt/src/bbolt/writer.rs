//! The bulk writer: a compact bbolt file from sorted rows, in two passes
//! over the same [`RowSource`] so the file can be streamed front to back.
//!
//! ```text
//! page 0 meta (txid 2) | page 1 meta (txid 3) | page 2 empty freelist |
//! bucket A: leaves..., branches bottom-up (root last) |
//! bucket B: ... | root tree: leaves..., branches (root last)
//! ```
//!
//! - Pass 1 ([`Plan::new`]) packs rows into leaves exactly as pass 2 will
//!   and keeps, per page, only its first key, element count and span; the
//!   branch pages follow from that. Memory: O(pages).
//! - Pass 2 ([`Plan::write`]) packs again, buffering one leaf's rows, checks
//!   each leaf against the plan, and writes every page once, in increasing
//!   page order. A CRC over all rows catches sources that changed between
//!   the passes in ways the layout alone would not show.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::page::{
    bucket_header, encode_branch, encode_leaf, padded, page_size_ok, Header, Meta,
    BRANCH_ELEM_BYTES, FLAG_FREELIST, LEAF_ELEM_BYTES, LEAF_FLAG_BUCKET, MAGIC, MAX_KEY_BYTES,
    PAGE_HEADER_BYTES, VERSION,
};
use super::{show, Error, Result};

/// bbolt's `MaxValueSize`.
const MAX_VALUE_BYTES: usize = (1 << 31) - 2;
/// Page id of the (empty) freelist page.
const FREELIST_PGID: u64 = 2;
/// First page of the trees.
const FIRST_DATA_PGID: u64 = 3;
/// Most elements in one page (bbolt panics at 0xFFFF).
const MAX_ELEMS_PER_PAGE: usize = 0xFFFF - 1;

/// Rows to write, sorted by (bucket, key), both bytewise ascending. Called
/// once per pass; both calls must yield the same rows.
pub trait RowSource {
    #[allow(clippy::type_complexity)]
    fn rows(
        &mut self,
        f: &mut dyn FnMut(&[u8], &[u8], &[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()>;
}

/// The layout of a file, from pass 1.
#[derive(Debug)]
pub struct Plan {
    page_size: u32,
    /// Buckets in name order with their trees.
    buckets: Vec<(Vec<u8>, TreePlan)>,
    /// The root bucket's tree (bucket name → bucket header).
    root: TreePlan,
    high_water_pgid: u64,
    rows: u64,
    rows_crc: u32,
}

#[derive(Debug)]
struct TreePlan {
    first_pgid: u64,
    leaves: Vec<LeafPlan>,
    /// Branch pages in page order, the tree's root last.
    branches: Vec<BranchPlan>,
    root_pgid: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct LeafPlan {
    first_key: Vec<u8>,
    count: usize,
    span_pages: u64,
}

#[derive(Debug)]
struct BranchPlan {
    pgid: u64,
    children: Vec<(Vec<u8>, u64)>,
}

/// Decides where leaf and branch pages end; both passes share it.
struct Packer {
    page_size_bytes: usize,
    bytes: usize,
    count: usize,
    min_count: usize,
}

impl Packer {
    fn new(page_size_bytes: usize, min_count: usize) -> Packer {
        Packer {
            page_size_bytes,
            bytes: PAGE_HEADER_BYTES,
            count: 0,
            min_count,
        }
    }

    /// Adds an element of `elem_bytes`; true if it starts a new page (the
    /// caller closes the current one first).
    fn add(&mut self, elem_bytes: usize) -> bool {
        let fits = self.bytes + elem_bytes <= self.page_size_bytes;
        let new_page =
            self.count >= self.min_count.max(1) && (!fits || self.count >= MAX_ELEMS_PER_PAGE);
        if new_page {
            self.bytes = PAGE_HEADER_BYTES;
            self.count = 0;
        }
        self.bytes += elem_bytes;
        self.count += 1;
        new_page
    }

    fn span_pages(&self) -> u64 {
        (padded(self.bytes, self.page_size_bytes) / self.page_size_bytes) as u64
    }
}

/// Checks row order and limits; both passes share it.
struct RowCheck<'n> {
    names: &'n [Vec<u8>],
    current: Option<usize>,
    last_key: Vec<u8>,
    crc: crc32fast::Hasher,
    rows: u64,
}

impl<'n> RowCheck<'n> {
    fn new(names: &'n [Vec<u8>]) -> RowCheck<'n> {
        RowCheck {
            names,
            current: None,
            last_key: Vec::new(),
            crc: crc32fast::Hasher::new(),
            rows: 0,
        }
    }

    /// The bucket index of the row, after checking it.
    fn accept(&mut self, bucket: &[u8], key: &[u8], value: &[u8]) -> Result<usize> {
        let idx = self
            .names
            .binary_search_by(|n| n.as_slice().cmp(bucket))
            .map_err(|_| {
                Error::Input(format!(
                    "row for bucket {} which is not among the bucket names",
                    show(bucket)
                ))
            })?;
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(Error::Input(format!(
                "bucket {}: key of {} bytes (allowed 1..={MAX_KEY_BYTES})",
                show(bucket),
                key.len()
            )));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(Error::Input(format!(
                "bucket {}: value of {} bytes is too large",
                show(bucket),
                value.len()
            )));
        }
        match self.current {
            Some(c) if idx < c || (idx == c && key <= self.last_key.as_slice()) => {
                return Err(Error::Input(format!(
                    "rows out of order: bucket {} key {} after bucket {} key {}",
                    show(bucket),
                    show(key),
                    show(&self.names[c]),
                    show(&self.last_key)
                )))
            }
            _ => {}
        }
        self.current = Some(idx);
        self.last_key.clear();
        self.last_key.extend_from_slice(key);
        for part in [bucket, key, value] {
            self.crc.update(&(part.len() as u64).to_le_bytes());
            self.crc.update(part);
        }
        self.rows += 1;
        Ok(idx)
    }
}

/// Runs the source, turning the first error of `f` into the result.
#[allow(clippy::type_complexity)]
fn run_source(
    source: &mut dyn RowSource,
    f: &mut dyn FnMut(&[u8], &[u8], &[u8]) -> Result<()>,
) -> Result<()> {
    let mut failure: Option<Error> = None;
    let r = source.rows(&mut |b, k, v| match f(b, k, v) {
        Ok(()) => Ok(()),
        Err(e) => {
            failure = Some(e);
            Err(std::io::Error::other("bbolt writer stopped the row source"))
        }
    });
    match (failure, r) {
        (Some(e), _) => Err(e),
        (None, Err(e)) => Err(Error::io("row source", e)),
        (None, Ok(())) => Ok(()),
    }
}

/// Lays out a tree whose leaves are `leaves`, from page `first_pgid`.
fn build_tree(mut leaves: Vec<LeafPlan>, first_pgid: u64, page_size_bytes: usize) -> TreePlan {
    if leaves.is_empty() {
        leaves.push(LeafPlan {
            first_key: Vec::new(),
            count: 0,
            span_pages: 1,
        });
    }
    let mut next = first_pgid;
    let mut level: Vec<(Vec<u8>, u64)> = Vec::with_capacity(leaves.len());
    for leaf in &leaves {
        level.push((leaf.first_key.clone(), next));
        next += leaf.span_pages;
    }
    let mut branches = Vec::new();
    while level.len() > 1 {
        let mut packer = Packer::new(page_size_bytes, 2);
        let mut pages: Vec<Vec<(Vec<u8>, u64)>> = Vec::new();
        for child in level {
            if packer.add(BRANCH_ELEM_BYTES + child.0.len()) || pages.is_empty() {
                pages.push(Vec::new());
            }
            if let Some(p) = pages.last_mut() {
                p.push(child);
            }
        }
        level = Vec::with_capacity(pages.len());
        for children in pages {
            let bytes = PAGE_HEADER_BYTES
                + children
                    .iter()
                    .map(|(k, _)| BRANCH_ELEM_BYTES + k.len())
                    .sum::<usize>();
            let span = (padded(bytes, page_size_bytes) / page_size_bytes) as u64;
            level.push((children[0].0.clone(), next));
            branches.push(BranchPlan {
                pgid: next,
                children,
            });
            next += span;
        }
    }
    let root_pgid = level[0].1;
    TreePlan {
        first_pgid,
        leaves,
        branches,
        root_pgid,
    }
}

impl TreePlan {
    /// First page after this tree.
    fn end_pgid(&self, page_size_bytes: usize) -> u64 {
        match self.branches.last() {
            Some(b) => {
                let bytes = PAGE_HEADER_BYTES
                    + b.children
                        .iter()
                        .map(|(k, _)| BRANCH_ELEM_BYTES + k.len())
                        .sum::<usize>();
                b.pgid + (padded(bytes, page_size_bytes) / page_size_bytes) as u64
            }
            None => self.first_pgid + self.leaves.iter().map(|l| l.span_pages).sum::<u64>(),
        }
    }
}

/// Collects leaf page plans (pass 1).
struct LeafCollector {
    packer: Packer,
    leaves: Vec<LeafPlan>,
}

impl LeafCollector {
    fn new(page_size_bytes: usize) -> LeafCollector {
        LeafCollector {
            packer: Packer::new(page_size_bytes, 1),
            leaves: Vec::new(),
        }
    }

    fn add(&mut self, key: &[u8], value_len: usize) {
        if self.packer.add(LEAF_ELEM_BYTES + key.len() + value_len) || self.leaves.is_empty() {
            self.leaves.push(LeafPlan {
                first_key: key.to_vec(),
                count: 0,
                span_pages: 1,
            });
        }
        if let Some(l) = self.leaves.last_mut() {
            l.count += 1;
            l.span_pages = self.packer.span_pages();
        }
    }
}

impl Plan {
    /// Pass 1: reads all rows once and lays out the file. Every bucket in
    /// `bucket_names` is created, with or without rows.
    pub fn new(bucket_names: &[&[u8]], page_size: u32, source: &mut dyn RowSource) -> Result<Plan> {
        if !page_size_ok(page_size) {
            return Err(Error::Input(format!("unsupported page size {page_size}")));
        }
        let ps = page_size as usize;
        let mut names: Vec<Vec<u8>> = bucket_names.iter().map(|n| n.to_vec()).collect();
        names.sort();
        names.dedup();
        if let Some(bad) = names
            .iter()
            .find(|n| n.is_empty() || n.len() > MAX_KEY_BYTES)
        {
            return Err(Error::Input(format!("bucket name of {} bytes", bad.len())));
        }
        let mut collectors: Vec<LeafCollector> =
            names.iter().map(|_| LeafCollector::new(ps)).collect();
        let mut check = RowCheck::new(&names);
        run_source(source, &mut |b, k, v| {
            let idx = check.accept(b, k, v)?;
            if let Some(c) = collectors.get_mut(idx) {
                c.add(k, v.len());
            }
            Ok(())
        })?;
        let (rows, rows_crc) = (check.rows, check.crc.finalize());

        let mut next = FIRST_DATA_PGID;
        let mut buckets = Vec::with_capacity(names.len());
        let mut root_rows = LeafCollector::new(ps);
        for (name, collector) in names.into_iter().zip(collectors) {
            let tree = build_tree(collector.leaves, next, ps);
            next = tree.end_pgid(ps);
            root_rows.add(&name, super::page::BUCKET_HEADER_BYTES);
            buckets.push((name, tree));
        }
        let root = build_tree(root_rows.leaves, next, ps);
        let high_water_pgid = root.end_pgid(ps);
        Ok(Plan {
            page_size,
            buckets,
            root,
            high_water_pgid,
            rows,
            rows_crc,
        })
    }

    /// Exact bytes [`Plan::write`] writes (a multiple of the page size).
    pub fn file_bytes(&self) -> u64 {
        self.high_water_pgid * u64::from(self.page_size)
    }

    /// Pages in the file (bbolt's high-water mark).
    pub fn high_water_pgid(&self) -> u64 {
        self.high_water_pgid
    }

    /// Rows pass 1 saw.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Pass 2: reads the rows again and writes the file to `out`, page by
    /// page in order. Fails (after writing part of the file) if the rows
    /// differ from pass 1's.
    pub fn write(&self, source: &mut dyn RowSource, out: &mut dyn Write) -> Result<()> {
        let ps = self.page_size as usize;
        let mut out = Pages {
            out: BufWriter::with_capacity(256 * 1024, out),
            written_bytes: 0,
        };
        for (txid, pgid) in [(2u64, 0u64), (3, 1)] {
            let meta = Meta {
                magic: MAGIC,
                version: VERSION,
                page_size: self.page_size,
                flags: 0,
                root_pgid: self.root.root_pgid,
                root_sequence: 0,
                freelist_pgid: FREELIST_PGID,
                pgid: self.high_water_pgid,
                txid,
                checksum: 0,
            };
            out.put(&meta.encode_page(pgid, ps))?;
        }
        // An empty freelist page. etcd's bbolt (NoFreelistSync) rebuilds the
        // freelist from the tree and ignores this; older bbolt versions, and
        // readers opening without NoFreelistSync, need a stored freelist.
        let mut freelist = vec![0u8; ps];
        Header {
            id: FREELIST_PGID,
            flags: FLAG_FREELIST,
            count: 0,
            overflow: 0,
        }
        .encode(&mut freelist);
        out.put(&freelist)?;

        let names: Vec<Vec<u8>> = self.buckets.iter().map(|(n, _)| n.clone()).collect();
        let mut check = RowCheck::new(&names);
        let mut current: Option<(usize, LeafWriter<'_>)> = None;
        run_source(source, &mut |b, k, v| {
            let idx = check.accept(b, k, v)?;
            let start = match &current {
                Some((c, _)) if *c == idx => None,
                Some((c, _)) => Some(*c + 1),
                None => Some(0),
            };
            if let Some(first) = start {
                if let Some((_, w)) = current.take() {
                    w.finish(&mut out)?;
                }
                for empty in first..idx {
                    self.leaf_writer(empty).finish(&mut out)?;
                }
                current = Some((idx, self.leaf_writer(idx)));
            }
            if let Some((_, w)) = current.as_mut() {
                w.add(k, v, &mut out)?;
            }
            Ok(())
        })?;
        let first_unwritten = match current.take() {
            Some((c, w)) => {
                w.finish(&mut out)?;
                c + 1
            }
            None => 0,
        };
        for empty in first_unwritten..self.buckets.len() {
            self.leaf_writer(empty).finish(&mut out)?;
        }
        if check.rows != self.rows || check.crc.finalize() != self.rows_crc {
            return Err(Error::Input(format!(
                "the rows changed between the passes ({} rows, then {})",
                self.rows, check.rows
            )));
        }
        let mut root = LeafWriter::new(&self.root, ps);
        for (name, tree) in &self.buckets {
            let header = bucket_header(tree.root_pgid, 0);
            root.add_flagged(LEAF_FLAG_BUCKET, name, &header, &mut out)?;
        }
        root.finish(&mut out)?;
        if out.written_bytes != self.file_bytes() {
            return Err(Error::Input(format!(
                "wrote {} bytes, planned {}",
                out.written_bytes,
                self.file_bytes()
            )));
        }
        out.out.flush().map_err(|e| Error::io("flush", e))
    }

    fn leaf_writer(&self, bucket: usize) -> LeafWriter<'_> {
        LeafWriter::new(&self.buckets[bucket].1, self.page_size as usize)
    }
}

/// The output, counting bytes.
struct Pages<'o> {
    out: BufWriter<&'o mut dyn Write>,
    written_bytes: u64,
}

impl Pages<'_> {
    fn put(&mut self, page: &[u8]) -> Result<()> {
        self.out
            .write_all(page)
            .map_err(|e| Error::io(format!("write at byte {}", self.written_bytes), e))?;
        self.written_bytes += page.len() as u64;
        Ok(())
    }
}

/// Pass 2 for one tree: buffers one leaf's rows, writes leaves as they
/// fill, then the branch pages.
struct LeafWriter<'p> {
    plan: &'p TreePlan,
    packer: Packer,
    entries: Vec<(u32, Vec<u8>, Vec<u8>)>,
    leaf_index: usize,
    next_pgid: u64,
}

impl<'p> LeafWriter<'p> {
    fn new(plan: &'p TreePlan, page_size_bytes: usize) -> LeafWriter<'p> {
        LeafWriter {
            plan,
            packer: Packer::new(page_size_bytes, 1),
            entries: Vec::new(),
            leaf_index: 0,
            next_pgid: plan.first_pgid,
        }
    }

    fn add(&mut self, key: &[u8], value: &[u8], out: &mut Pages<'_>) -> Result<()> {
        self.add_flagged(0, key, value, out)
    }

    fn add_flagged(
        &mut self,
        flags: u32,
        key: &[u8],
        value: &[u8],
        out: &mut Pages<'_>,
    ) -> Result<()> {
        if self.packer.add(LEAF_ELEM_BYTES + key.len() + value.len()) {
            self.flush(out)?;
        }
        self.entries.push((flags, key.to_vec(), value.to_vec()));
        Ok(())
    }

    /// Writes the buffered leaf after checking it against the plan.
    fn flush(&mut self, out: &mut Pages<'_>) -> Result<()> {
        let ps = self.packer.page_size_bytes;
        let refs: Vec<(u32, &[u8], &[u8])> = self
            .entries
            .iter()
            .map(|(f, k, v)| (*f, k.as_slice(), v.as_slice()))
            .collect();
        let page = encode_leaf(self.next_pgid, &refs, ps);
        let got = LeafPlan {
            first_key: self
                .entries
                .first()
                .map(|e| e.1.clone())
                .unwrap_or_default(),
            count: self.entries.len(),
            span_pages: (page.len() / ps) as u64,
        };
        if self.plan.leaves.get(self.leaf_index) != Some(&got) {
            return Err(Error::Input(format!(
                "the rows changed between the passes (leaf page {} does not match the plan)",
                self.next_pgid
            )));
        }
        out.put(&page)?;
        self.next_pgid += got.span_pages;
        self.leaf_index += 1;
        self.entries.clear();
        Ok(())
    }

    /// Writes the last leaf (an empty one for an empty tree) and the
    /// branch pages.
    fn finish(mut self, out: &mut Pages<'_>) -> Result<()> {
        if !self.entries.is_empty() || self.leaf_index == 0 {
            self.flush(out)?;
        }
        if self.leaf_index != self.plan.leaves.len() {
            return Err(Error::Input(format!(
                "the rows changed between the passes ({} leaf pages, planned {})",
                self.leaf_index,
                self.plan.leaves.len()
            )));
        }
        let ps = self.packer.page_size_bytes;
        for b in &self.plan.branches {
            out.put(&encode_branch(b.pgid, &b.children, ps))?;
        }
        Ok(())
    }
}

/// Writes the file at `path` (via `path.tmp`, fsynced and renamed, the
/// directory fsynced). Returns the bytes written.
pub fn write_file(
    path: &Path,
    bucket_names: &[&[u8]],
    page_size: u32,
    source: &mut dyn RowSource,
) -> Result<u64> {
    let plan = Plan::new(bucket_names, page_size, source)?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut file =
        File::create(&tmp).map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
    plan.write(source, &mut file)?;
    file.sync_all()
        .map_err(|e| Error::io(format!("fsync {}", tmp.display()), e))?;
    drop(file);
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::io(format!("rename {} to {}", tmp.display(), path.display()), e))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsync {}", dir.display()), e))?;
    Ok(plan.file_bytes())
}
