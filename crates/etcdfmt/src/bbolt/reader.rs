//! The streaming reader: positioned reads, one page (with its overflow) per
//! tree level on the stack, every offset checked.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::page::{
    flags_name, page_size_ok, u64_at, Header, LeafElem, Meta, PageView, BUCKET_HEADER_BYTES,
    FLAG_BRANCH, FLAG_FREELIST, FLAG_LEAF, LEAF_FLAG_BUCKET, NO_FREELIST, PAGE_HEADER_BYTES,
};
use super::{show, Error, Result};

/// Deepest tree we follow (pages from the root bucket down, nested buckets
/// included). bbolt trees of a few GiB are 4–5 levels deep.
const MAX_DEPTH: usize = 64;

/// What bbolt reads of the first page when it looks for the page size.
const PROBE_BYTES: u64 = 4096;

/// An open bbolt file (read only).
pub struct Db {
    file: File,
    len_bytes: u64,
    page_size: u32,
    meta: Meta,
}

/// One row of a bucket, as [`Db::for_each_entry`] yields it.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// A key and its value.
    Value(&'a [u8], &'a [u8]),
    /// A nested bucket (its contents are not yielded).
    Bucket(&'a [u8]),
}

/// What [`Db::check`] found in a file that passed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckReport {
    pub page_size: u32,
    pub high_water_pgid: u64,
    /// Pages reachable from the metas (metas, freelist and tree pages).
    pub reachable_pages: u64,
    /// Pages free (listed in the freelist page, or, without one, the pages
    /// below the high-water mark that nothing reaches, as bbolt rebuilds it).
    pub free_pages: u64,
    /// Top-level buckets.
    pub buckets: u64,
    /// Buckets nested inside other buckets.
    pub nested_buckets: u64,
    /// Key/value rows in all buckets.
    pub keys: u64,
    /// Deepest page stack seen (1 = the root tree is one leaf).
    pub max_depth: usize,
}

impl Db {
    /// Opens the bbolt file at `path` (the whole file is bbolt pages).
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        let path = path.as_ref();
        let file =
            File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
            .len();
        Db::open_with_len(file, len)
    }

    /// Opens a bbolt file whose pages are the first `len_bytes` bytes of
    /// `file` (a snapshot file: its length minus the 32-byte digest).
    pub fn open_with_len(file: File, len_bytes: u64) -> Result<Db> {
        let page_size = find_page_size(&file, len_bytes)?;
        let ps = u64::from(page_size);
        if len_bytes < 2 * ps {
            return Err(Error::Corrupt(format!(
                "file of {len_bytes} bytes is shorter than two {page_size}-byte meta pages"
            )));
        }
        let mut metas = Vec::with_capacity(2);
        for id in 0..2u64 {
            let mut buf = vec![0u8; page_size as usize];
            read_exact_at(&file, &mut buf, id * ps, || format!("read meta page {id}"))?;
            let meta =
                Meta::parse(&buf).ok_or_else(|| Error::Corrupt("meta page too short".into()))?;
            metas.push((id, meta));
        }
        // The valid meta with the higher txid wins (bbolt's rule).
        if metas[1].1.txid > metas[0].1.txid {
            metas.swap(0, 1);
        }
        let meta = match metas.iter().find(|(_, m)| m.problem().is_none()) {
            Some((_, m)) => *m,
            None => {
                let why: Vec<String> = metas
                    .iter()
                    .map(|(id, m)| format!("meta page {id}: {}", m.problem().unwrap_or_default()))
                    .collect();
                return Err(Error::Corrupt(format!(
                    "no valid meta page ({})",
                    why.join("; ")
                )));
            }
        };
        if meta.page_size != page_size {
            return Err(Error::Corrupt(format!(
                "meta says page size {} but the file was opened with page size {page_size}",
                meta.page_size
            )));
        }
        let hwm = meta.pgid;
        hwm.checked_mul(ps).filter(|b| *b <= len_bytes).ok_or_else(|| {
            Error::Corrupt(format!(
                "high-water mark of {hwm} pages of {page_size} bytes lies beyond the end of the {len_bytes}-byte file"
            ))
        })?;
        if meta.root_pgid < 2 || meta.root_pgid >= hwm {
            return Err(Error::Corrupt(format!(
                "meta (txid {}) root bucket page {} is outside 2..{hwm}",
                meta.txid, meta.root_pgid
            )));
        }
        if meta.freelist_pgid != NO_FREELIST
            && (meta.freelist_pgid < 2 || meta.freelist_pgid >= hwm)
        {
            return Err(Error::Corrupt(format!(
                "meta (txid {}) freelist page {} is outside 2..{hwm}",
                meta.txid, meta.freelist_pgid
            )));
        }
        Ok(Db {
            file,
            len_bytes,
            page_size,
            meta,
        })
    }

    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    pub fn txid(&self) -> u64 {
        self.meta.txid
    }

    /// `meta.pgid`: pages `0..high_water_pgid()` are in use or free.
    pub fn high_water_pgid(&self) -> u64 {
        self.meta.pgid
    }

    /// High-water mark × page size: what bbolt's `tx.Size()` returns (and
    /// the bytes `tx.WriteTo` copies into a snapshot).
    pub fn size_bytes(&self) -> u64 {
        // Checked at open: it fits in the file.
        self.meta.pgid.saturating_mul(u64::from(self.page_size))
    }

    /// Whether the file carries a freelist page (etcd runs bbolt with
    /// NoFreelistSync, so its own files usually do not).
    pub fn has_freelist(&self) -> bool {
        self.meta.freelist_pgid != NO_FREELIST
    }

    /// The top-level bucket names, in key order.
    pub fn buckets(&self) -> Result<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        let mut w = Walker::new(self);
        w.root_tree(&mut |_, name, _, _| {
            names.push(name.to_vec());
            Ok(())
        })?;
        Ok(names)
    }

    /// Calls `f` with every key/value of the top-level bucket `bucket`, in
    /// key order, skipping nested buckets. Returns false if there is no
    /// such bucket.
    #[allow(clippy::type_complexity)]
    pub fn for_each(
        &self,
        bucket: &[u8],
        f: &mut dyn FnMut(&[u8], &[u8]) -> Result<()>,
    ) -> Result<bool> {
        self.for_each_entry(bucket, &mut |e| match e {
            Entry::Value(k, v) => f(k, v),
            Entry::Bucket(_) => Ok(()),
        })
    }

    /// Like [`Db::for_each`], but nested buckets are yielded as
    /// [`Entry::Bucket`].
    pub fn for_each_entry(
        &self,
        bucket: &[u8],
        f: &mut dyn FnMut(Entry<'_>) -> Result<()>,
    ) -> Result<bool> {
        let mut found = false;
        let mut w = Walker::new(self);
        w.root_tree(&mut |w, name, value, depth| {
            if name != bucket {
                return Ok(());
            }
            found = true;
            w.bucket(name, value, depth, &mut |_, e: &LeafElem<'_>, _| {
                if e.flags & LEAF_FLAG_BUCKET != 0 {
                    f(Entry::Bucket(e.key))
                } else {
                    f(Entry::Value(e.key, e.value))
                }
            })
        })?;
        Ok(found)
    }

    /// Calls `f(bucket, key, value)` for every row of every top-level
    /// bucket, buckets and keys in order (nested buckets skipped).
    #[allow(clippy::type_complexity)]
    pub fn walk(&self, f: &mut dyn FnMut(&[u8], &[u8], &[u8]) -> Result<()>) -> Result<()> {
        let mut w = Walker::new(self);
        w.root_tree(&mut |w, name, value, depth| {
            w.bucket(name, value, depth, &mut |_, e: &LeafElem<'_>, _| {
                if e.flags & LEAF_FLAG_BUCKET != 0 {
                    Ok(())
                } else {
                    f(name, e.key, e.value)
                }
            })
        })
    }

    /// Reads every page reachable from the meta (nested buckets included)
    /// and the freelist, checking that no page is reached twice and that
    /// freelist and tree agree, and counts what it saw.
    pub fn check(&self) -> Result<CheckReport> {
        let mut report = CheckReport {
            page_size: self.page_size,
            high_water_pgid: self.meta.pgid,
            ..CheckReport::default()
        };
        let mut w = Walker::new(self);
        w.seen.insert(0);
        w.seen.insert(1);
        let freelist = if self.has_freelist() {
            let buf = w.read_page(
                self.meta.freelist_pgid,
                "the meta",
                FLAG_FREELIST,
                "(freelist)",
            )?;
            Some(buf)
        } else {
            None
        };
        let mut counts = (0u64, 0u64);
        w.root_tree(&mut |w, name, value, depth| {
            report.buckets += 1;
            check_bucket(w, &show(name), value, depth, &mut counts)
        })?;
        report.keys = counts.0;
        report.nested_buckets = counts.1;
        report.max_depth = w.max_depth;
        report.reachable_pages = w.seen.count();
        let unreached = self.meta.pgid.saturating_sub(report.reachable_pages);
        match freelist {
            None => report.free_pages = unreached,
            Some(buf) => {
                let mut freed = Bitset::new(self.meta.pgid);
                for_each_free_id(&buf, self.meta.freelist_pgid, &mut |id| {
                    if id < 2 || id >= self.meta.pgid {
                        return Err(Error::Corrupt(format!(
                            "freelist page {} lists page {id}, outside 2..{}",
                            self.meta.freelist_pgid, self.meta.pgid
                        )));
                    }
                    if w.seen.contains(id) {
                        return Err(Error::Corrupt(format!(
                            "freelist page {} lists page {id}, which the tree uses",
                            self.meta.freelist_pgid
                        )));
                    }
                    if !freed.insert(id) {
                        return Err(Error::Corrupt(format!(
                            "freelist page {} lists page {id} twice",
                            self.meta.freelist_pgid
                        )));
                    }
                    report.free_pages += 1;
                    Ok(())
                })?;
                if report.free_pages != unreached {
                    return Err(Error::Corrupt(format!(
                        "{} pages below the high-water mark {} are neither reachable nor free",
                        unreached.saturating_sub(report.free_pages),
                        self.meta.pgid
                    )));
                }
            }
        }
        Ok(report)
    }

    /// Free pages, as bbolt counts them (etcd's `dbSizeInUse` is
    /// `size_bytes() - free_pages_count() × page_size()`): the freelist
    /// page's count if there is one, else the pages below the high-water
    /// mark that the tree does not reach (a full read of the tree).
    pub fn free_pages_count(&self) -> Result<u64> {
        if self.has_freelist() {
            let mut w = Walker::new(self);
            let buf = w.read_page(
                self.meta.freelist_pgid,
                "the meta",
                FLAG_FREELIST,
                "(freelist)",
            )?;
            let mut n = 0u64;
            for_each_free_id(&buf, self.meta.freelist_pgid, &mut |_| {
                n += 1;
                Ok(())
            })?;
            Ok(n)
        } else {
            Ok(self.check()?.free_pages)
        }
    }

    /// Bytes of the bbolt pages this handle reads (the file may hold more).
    pub fn file_len_bytes(&self) -> u64 {
        self.len_bytes
    }
}

/// Counts (keys, nested buckets) of one bucket, recursing into nested
/// buckets.
fn check_bucket(
    w: &mut Walker<'_>,
    path: &str,
    value: &[u8],
    depth: usize,
    counts: &mut (u64, u64),
) -> Result<()> {
    w.bucket_at(path, value, depth, &mut |w, e: &LeafElem<'_>, depth| {
        if e.flags & LEAF_FLAG_BUCKET != 0 {
            counts.1 += 1;
            let child = format!("{path}/{}", show(e.key));
            check_bucket(w, &child, e.value, depth, counts)
        } else {
            counts.0 += 1;
            Ok(())
        }
    })
}

/// Calls `f` with every page id the freelist page `buf` lists.
fn for_each_free_id(buf: &[u8], pgid: u64, f: &mut dyn FnMut(u64) -> Result<()>) -> Result<()> {
    let header = Header::parse(buf)
        .ok_or_else(|| Error::Corrupt(format!("freelist page {pgid} is short")))?;
    let (first, count) = if header.count == 0xFFFF {
        // The real count does not fit in u16: it is the first u64.
        let n = u64_at(buf, PAGE_HEADER_BYTES)
            .ok_or_else(|| Error::Corrupt(format!("freelist page {pgid} is short")))?;
        (1u64, n)
    } else {
        (0, u64::from(header.count))
    };
    let end = first
        .checked_add(count)
        .ok_or_else(|| Error::Corrupt(format!("freelist page {pgid}: count {count} overflows")))?;
    for i in first..end {
        let off = usize::try_from(i)
            .ok()
            .and_then(|i| i.checked_mul(8))
            .and_then(|o| o.checked_add(PAGE_HEADER_BYTES));
        let id = off.and_then(|o| u64_at(buf, o)).ok_or_else(|| {
            Error::Corrupt(format!(
                "freelist page {pgid}: {count} ids do not fit in the page and its overflow"
            ))
        })?;
        f(id)?;
    }
    Ok(())
}

/// Reads `buf.len()` bytes at `offset`, or fails with `what()` in the
/// message.
fn read_exact_at(
    file: &File,
    buf: &mut [u8],
    offset: u64,
    what: impl Fn() -> String,
) -> Result<()> {
    file.read_exact_at(buf, offset)
        .map_err(|e| Error::io(format!("{} at byte {offset}", what()), e))
}

/// The page size: from meta 0 if it is valid, else from a valid meta 1
/// found at one of the candidate page sizes (bbolt probes the same way).
fn find_page_size(file: &File, len_bytes: u64) -> Result<u32> {
    let meta_at = |offset: u64| -> Result<Option<Meta>> {
        let n = PROBE_BYTES.min(len_bytes.saturating_sub(offset));
        if n < 128 {
            return Ok(None);
        }
        let mut buf = vec![0u8; n as usize];
        read_exact_at(file, &mut buf, offset, || "read meta".to_string())?;
        Ok(Meta::parse(&buf).filter(|m| m.problem().is_none()))
    };
    if let Some(m) = meta_at(0)? {
        if !page_size_ok(m.page_size) {
            return Err(Error::Corrupt(format!(
                "meta page 0 has an unsupported page size {}",
                m.page_size
            )));
        }
        return Ok(m.page_size);
    }
    let mut size = super::page::MIN_PAGE_SIZE_BYTES;
    while size <= super::page::MAX_PAGE_SIZE_BYTES {
        if let Some(m) = meta_at(u64::from(size))? {
            if m.page_size == size {
                return Ok(size);
            }
        }
        size *= 2;
    }
    let why = match Meta::parse(&{
        let mut b = vec![0u8; 128.min(len_bytes) as usize];
        read_exact_at(file, &mut b, 0, || "read meta page 0".to_string())?;
        b
    }) {
        Some(m) => m
            .problem()
            .unwrap_or_else(|| "unsupported page size".into()),
        None => format!("file of {len_bytes} bytes is too short"),
    };
    Err(Error::Corrupt(format!(
        "no valid meta page found (meta page 0: {why})"
    )))
}

/// One bit per page below the high-water mark.
struct Bitset {
    words: Vec<u64>,
    ones: u64,
}

impl Bitset {
    fn new(bits: u64) -> Bitset {
        Bitset {
            words: vec![0; (bits / 64 + 1) as usize],
            ones: 0,
        }
    }

    /// Sets bit `i`; false if it was set already (or out of range).
    fn insert(&mut self, i: u64) -> bool {
        let Some(w) = self.words.get_mut((i / 64) as usize) else {
            return false;
        };
        let bit = 1u64 << (i % 64);
        if *w & bit != 0 {
            return false;
        }
        *w |= bit;
        self.ones += 1;
        true
    }

    fn contains(&self, i: u64) -> bool {
        self.words
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    fn count(&self) -> u64 {
        self.ones
    }
}

/// A visitor of leaf elements: (walker, element, depth of its page).
type Visit<'v> = dyn FnMut(&mut Walker<'_>, &LeafElem<'_>, usize) -> Result<()> + 'v;

/// One traversal: the pages it has seen (each may be reached once).
struct Walker<'d> {
    db: &'d Db,
    seen: Bitset,
    max_depth: usize,
}

impl<'d> Walker<'d> {
    fn new(db: &'d Db) -> Walker<'d> {
        Walker {
            db,
            seen: Bitset::new(db.meta.pgid),
            max_depth: 0,
        }
    }

    /// Reads page `pgid` (and its overflow pages), checking that it is in
    /// range, says its own id, has `want_flags` (branch|leaf allowed when
    /// `want_flags` is both), and was not reached before.
    fn read_page(
        &mut self,
        pgid: u64,
        from: &str,
        want_flags: u16,
        bucket: &str,
    ) -> Result<Vec<u8>> {
        let db = self.db;
        let hwm = db.meta.pgid;
        let ps = u64::from(db.page_size);
        let at = || format!("page {pgid} referenced by {from} (bucket {bucket})");
        if pgid < 2 {
            return Err(Error::Corrupt(format!(
                "{}: a meta page cannot be a tree page",
                at()
            )));
        }
        if pgid >= hwm {
            return Err(Error::Corrupt(format!(
                "{} is beyond the high-water mark {hwm}",
                at()
            )));
        }
        let offset = pgid
            .checked_mul(ps)
            .filter(|o| o.saturating_add(ps) <= db.len_bytes)
            .ok_or_else(|| Error::Corrupt(format!("{} lies beyond the end of the file", at())))?;
        let mut buf = vec![0u8; db.page_size as usize];
        read_exact_at(&db.file, &mut buf, offset, || format!("read page {pgid}"))?;
        let header =
            Header::parse(&buf).ok_or_else(|| Error::Corrupt(format!("{}: short page", at())))?;
        if header.id != pgid {
            return Err(Error::Corrupt(format!(
                "{}: its header says it is page {}",
                at(),
                header.id
            )));
        }
        if header.flags & want_flags == 0
            || !matches!(header.flags, FLAG_BRANCH | FLAG_LEAF | FLAG_FREELIST)
        {
            return Err(Error::Corrupt(format!(
                "{}: expected a {} page, found {}",
                at(),
                flags_name(want_flags),
                flags_name(header.flags)
            )));
        }
        let last = pgid
            .checked_add(u64::from(header.overflow))
            .filter(|l| *l < hwm)
            .ok_or_else(|| {
                Error::Corrupt(format!(
                    "{}: its {} overflow pages run past the high-water mark {hwm}",
                    at(),
                    header.overflow
                ))
            })?;
        for id in pgid..=last {
            if !self.seen.insert(id) {
                return Err(Error::Corrupt(format!(
                    "{}: page {id} is reachable twice",
                    at()
                )));
            }
        }
        if header.overflow > 0 {
            let total = (u64::from(header.overflow) + 1) * ps; // last < hwm ≤ len / ps
                                                               // Read in place: a value of 50 kB copied once more cost a tenth
                                                               // of a conversion's CPU.
            buf.resize(total as usize, 0);
            read_exact_at(&db.file, &mut buf[ps as usize..], offset + ps, || {
                format!("read overflow of page {pgid}")
            })?;
        }
        Ok(buf)
    }

    /// Walks the root bucket's tree, calling `f(walker, name, value,
    /// depth)` for each top-level bucket in order.
    #[allow(clippy::type_complexity)]
    fn root_tree(
        &mut self,
        f: &mut dyn FnMut(&mut Walker<'_>, &[u8], &[u8], usize) -> Result<()>,
    ) -> Result<()> {
        let root = self.db.meta.root_pgid;
        self.tree_page(
            root,
            "the meta",
            None,
            None,
            1,
            "(root)",
            &mut |w, e: &LeafElem<'_>, depth| {
                if e.flags & LEAF_FLAG_BUCKET == 0 {
                    return Err(Error::Corrupt(format!(
                        "top-level key {} is not a bucket (leaf flags {:#x})",
                        show(e.key),
                        e.flags
                    )));
                }
                f(w, e.key, e.value, depth)
            },
        )
    }

    /// Walks the bucket whose value (header and maybe inline page) is
    /// `value`, found in a page at `depth`.
    fn bucket(
        &mut self,
        name: &[u8],
        value: &[u8],
        depth: usize,
        visit: &mut Visit<'_>,
    ) -> Result<()> {
        self.bucket_at(&show(name), value, depth, visit)
    }

    fn bucket_at(
        &mut self,
        name: &str,
        value: &[u8],
        depth: usize,
        visit: &mut Visit<'_>,
    ) -> Result<()> {
        let (Some(root), true) = (u64_at(value, 0), value.len() >= BUCKET_HEADER_BYTES) else {
            return Err(Error::Corrupt(format!(
                "bucket {name}: value of {} bytes is shorter than the 16-byte bucket header",
                value.len()
            )));
        };
        let depth = depth + 1;
        if depth > MAX_DEPTH {
            return Err(Error::Corrupt(format!(
                "bucket {name}: nested deeper than {MAX_DEPTH} pages"
            )));
        }
        if root != 0 {
            let from = format!("the header of bucket {name}");
            return self.tree_page(root, &from, None, None, depth, name, visit);
        }
        let inline = &value[BUCKET_HEADER_BYTES..];
        let view = PageView::new(inline).ok_or_else(|| {
            Error::Corrupt(format!(
                "bucket {name}: inline page of {} bytes is shorter than a page header",
                inline.len()
            ))
        })?;
        if view.header.flags != FLAG_LEAF {
            return Err(Error::Corrupt(format!(
                "bucket {name}: inline page is a {} page, not a leaf",
                flags_name(view.header.flags)
            )));
        }
        self.max_depth = self.max_depth.max(depth);
        let at = || format!("inline page of bucket {name}");
        self.leaf(&view, None, None, depth, &at, visit)
    }

    /// Walks the subtree at `pgid`, whose keys must lie in `[lo, hi)`.
    #[allow(clippy::too_many_arguments)]
    fn tree_page(
        &mut self,
        pgid: u64,
        from: &str,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        depth: usize,
        bucket: &str,
        visit: &mut Visit<'_>,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::Corrupt(format!(
                "page {pgid} referenced by {from} (bucket {bucket}): tree deeper than {MAX_DEPTH} pages"
            )));
        }
        self.max_depth = self.max_depth.max(depth);
        let buf = self.read_page(pgid, from, FLAG_BRANCH | FLAG_LEAF, bucket)?;
        let view =
            PageView::new(&buf).ok_or_else(|| Error::Corrupt(format!("page {pgid} is short")))?;
        let at = || format!("page {pgid} (bucket {bucket})");
        if view.header.flags == FLAG_LEAF {
            return self.leaf(&view, lo, hi, depth, &at, visit);
        }
        if view.header.count == 0 {
            return Err(Error::Corrupt(format!(
                "{}: branch page without elements",
                at()
            )));
        }
        let from_here = format!("page {pgid}");
        let mut prev: Option<&[u8]> = None;
        let mut prev_end = 0;
        for i in 0..view.header.count {
            let e = view.branch_elem(i, &at)?;
            check_order(e.key, prev, lo, hi, i, &at)?;
            prev_end = check_data_after(&e.data, prev_end, i, &at)?;
            let next_hi = if i + 1 < view.header.count {
                Some(view.branch_elem(i + 1, &at)?.key)
            } else {
                hi
            };
            self.tree_page(
                e.pgid,
                &from_here,
                Some(e.key),
                next_hi,
                depth + 1,
                bucket,
                visit,
            )?;
            prev = Some(e.key);
        }
        Ok(())
    }

    fn leaf(
        &mut self,
        view: &PageView<'_>,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        depth: usize,
        at: &dyn Fn() -> String,
        visit: &mut Visit<'_>,
    ) -> Result<()> {
        let mut prev: Option<&[u8]> = None;
        let mut prev_end = 0;
        for i in 0..view.header.count {
            let e = view.leaf_elem(i, at)?;
            check_order(e.key, prev, lo, hi, i, at)?;
            prev_end = check_data_after(&e.data, prev_end, i, at)?;
            visit(self, &e, depth)?;
            prev = Some(e.key);
        }
        Ok(())
    }
}

/// Element data does not overlap the previous element's (as bbolt writes
/// it); this also bounds the work per page by its size, however many
/// elements point at the same bytes. Returns the new end.
fn check_data_after(
    data: &std::ops::Range<usize>,
    prev_end: usize,
    i: u16,
    at: &dyn Fn() -> String,
) -> Result<usize> {
    if data.start < prev_end {
        return Err(Error::Corrupt(format!(
            "{}: element {i}'s data (bytes {}..{}) overlaps the previous element's",
            at(),
            data.start,
            data.end
        )));
    }
    Ok(data.end)
}

/// Keys ascend strictly within a page and stay within the parent's range.
fn check_order(
    key: &[u8],
    prev: Option<&[u8]>,
    lo: Option<&[u8]>,
    hi: Option<&[u8]>,
    i: u16,
    at: &dyn Fn() -> String,
) -> Result<()> {
    if let Some(p) = prev {
        if key <= p {
            return Err(Error::Corrupt(format!(
                "{}: key {i} ({}) does not come after the previous key ({})",
                at(),
                show(key),
                show(p)
            )));
        }
    } else if let Some(lo) = lo {
        if key < lo {
            return Err(Error::Corrupt(format!(
                "{}: first key ({}) is below the parent's key ({})",
                at(),
                show(key),
                show(lo)
            )));
        }
    }
    if let Some(hi) = hi {
        if key >= hi {
            return Err(Error::Corrupt(format!(
                "{}: key {i} ({}) is not below the parent's next key ({})",
                at(),
                show(key),
                show(hi)
            )));
        }
    }
    Ok(())
}
