//! Byte-level layout of bbolt pages: the page header, meta pages, branch and
//! leaf elements, bucket headers. Everything here works on byte slices and
//! checks every offset it computes, so that callers can hand it any bytes.

use super::Error;

/// Bytes of the page header: id u64, flags u16, count u16, overflow u32.
pub const PAGE_HEADER_BYTES: usize = 16;
/// Bytes of one branch element: pos u32, ksize u32, pgid u64.
pub const BRANCH_ELEM_BYTES: usize = 16;
/// Bytes of one leaf element: flags u32, pos u32, ksize u32, vsize u32.
pub const LEAF_ELEM_BYTES: usize = 16;
/// Bytes of a bucket header (the first bytes of a bucket's value): root
/// pgid u64, sequence u64.
pub const BUCKET_HEADER_BYTES: usize = 16;

pub const FLAG_BRANCH: u16 = 0x01;
pub const FLAG_LEAF: u16 = 0x02;
pub const FLAG_META: u16 = 0x04;
pub const FLAG_FREELIST: u16 = 0x10;

/// Leaf element flag: the value is a nested bucket.
pub const LEAF_FLAG_BUCKET: u32 = 0x01;

pub const MAGIC: u32 = 0xED0C_DAED;
pub const VERSION: u32 = 2;
/// `meta.freelist` when the freelist is not stored (bbolt's NoFreelistSync,
/// which etcd uses).
pub const NO_FREELIST: u64 = u64::MAX;

/// Smallest and largest page size we accept (both powers of two).
pub const MIN_PAGE_SIZE_BYTES: u32 = 512;
pub const MAX_PAGE_SIZE_BYTES: u32 = 64 * 1024;

/// bbolt refuses longer keys (`MaxKeySize`).
pub const MAX_KEY_BYTES: usize = 32 * 1024;

/// Bytes of the meta struct before its checksum (what the checksum covers).
const META_SUMMED_BYTES: usize = 56;
/// Bytes of the meta struct including the checksum.
pub const META_BYTES: usize = 64;

/// Whether `page_size` is one we read and write.
pub fn page_size_ok(page_size: u32) -> bool {
    page_size.is_power_of_two() && (MIN_PAGE_SIZE_BYTES..=MAX_PAGE_SIZE_BYTES).contains(&page_size)
}

/// Human name of a page flag value, for error messages.
pub fn flags_name(flags: u16) -> String {
    match flags {
        FLAG_BRANCH => "branch".into(),
        FLAG_LEAF => "leaf".into(),
        FLAG_META => "meta".into(),
        FLAG_FREELIST => "freelist".into(),
        other => format!("unknown<{other:#06x}>"),
    }
}

pub fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

pub fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Some(u32::from_le_bytes(a))
}

pub fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// FNV-1a, 64 bits: bbolt's meta checksum.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The decoded page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u64,
    pub flags: u16,
    pub count: u16,
    pub overflow: u32,
}

impl Header {
    /// Decodes the first 16 bytes of `b` (None if `b` is shorter).
    pub fn parse(b: &[u8]) -> Option<Header> {
        Some(Header {
            id: u64_at(b, 0)?,
            flags: u16_at(b, 8)?,
            count: u16_at(b, 10)?,
            overflow: u32_at(b, 12)?,
        })
    }

    pub fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..10].copy_from_slice(&self.flags.to_le_bytes());
        out[10..12].copy_from_slice(&self.count.to_le_bytes());
        out[12..16].copy_from_slice(&self.overflow.to_le_bytes());
    }
}

/// A meta page's payload (it starts right after the page header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub magic: u32,
    pub version: u32,
    pub page_size: u32,
    pub flags: u32,
    pub root_pgid: u64,
    pub root_sequence: u64,
    pub freelist_pgid: u64,
    /// High-water mark: pages `0..pgid` are in use or free.
    pub pgid: u64,
    pub txid: u64,
    pub checksum: u64,
}

impl Meta {
    /// Decodes the meta from a whole page's bytes (header included).
    pub fn parse(page: &[u8]) -> Option<Meta> {
        let m = page.get(PAGE_HEADER_BYTES..PAGE_HEADER_BYTES + META_BYTES)?;
        Some(Meta {
            magic: u32_at(m, 0)?,
            version: u32_at(m, 4)?,
            page_size: u32_at(m, 8)?,
            flags: u32_at(m, 12)?,
            root_pgid: u64_at(m, 16)?,
            root_sequence: u64_at(m, 24)?,
            freelist_pgid: u64_at(m, 32)?,
            pgid: u64_at(m, 40)?,
            txid: u64_at(m, 48)?,
            checksum: u64_at(m, 56)?,
        })
    }

    fn encode_without_checksum(&self) -> [u8; META_BYTES] {
        let mut m = [0u8; META_BYTES];
        m[0..4].copy_from_slice(&self.magic.to_le_bytes());
        m[4..8].copy_from_slice(&self.version.to_le_bytes());
        m[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        m[12..16].copy_from_slice(&self.flags.to_le_bytes());
        m[16..24].copy_from_slice(&self.root_pgid.to_le_bytes());
        m[24..32].copy_from_slice(&self.root_sequence.to_le_bytes());
        m[32..40].copy_from_slice(&self.freelist_pgid.to_le_bytes());
        m[40..48].copy_from_slice(&self.pgid.to_le_bytes());
        m[48..56].copy_from_slice(&self.txid.to_le_bytes());
        m
    }

    /// The checksum these fields should carry.
    pub fn sum64(&self) -> u64 {
        fnv1a64(&self.encode_without_checksum()[..META_SUMMED_BYTES])
    }

    /// What is wrong with this meta, as bbolt checks it (magic, version,
    /// checksum), or None.
    pub fn problem(&self) -> Option<String> {
        if self.magic != MAGIC {
            Some(format!("bad magic {:#010x}", self.magic))
        } else if self.version != VERSION {
            Some(format!("unsupported version {}", self.version))
        } else if self.checksum != self.sum64() {
            Some(format!(
                "checksum {:#018x} does not match {:#018x}",
                self.checksum,
                self.sum64()
            ))
        } else {
            None
        }
    }

    /// Encodes a whole meta page (id `page_id`) with a fresh checksum.
    pub fn encode_page(&self, page_id: u64, page_size_bytes: usize) -> Vec<u8> {
        let mut page = vec![0u8; page_size_bytes];
        Header {
            id: page_id,
            flags: FLAG_META,
            count: 0,
            overflow: 0,
        }
        .encode(&mut page);
        let mut m = self.encode_without_checksum();
        m[56..64].copy_from_slice(&self.sum64().to_le_bytes());
        page[PAGE_HEADER_BYTES..PAGE_HEADER_BYTES + META_BYTES].copy_from_slice(&m);
        page
    }
}

/// A page's bytes (header included, overflow pages included), as read from
/// the file or found inline in a bucket value. The element accessors take
/// `where_`, which names the page in error messages.
pub struct PageView<'a> {
    pub bytes: &'a [u8],
    pub header: Header,
}

/// One leaf element, borrowed from its page.
pub struct LeafElem<'a> {
    pub flags: u32,
    /// Where the key and value lie in the page.
    pub data: std::ops::Range<usize>,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// One branch element, borrowed from its page.
pub struct BranchElem<'a> {
    /// Where the key lies in the page.
    pub data: std::ops::Range<usize>,
    pub key: &'a [u8],
    pub pgid: u64,
}

impl<'a> PageView<'a> {
    pub fn new(bytes: &'a [u8]) -> Option<PageView<'a>> {
        Some(PageView {
            bytes,
            header: Header::parse(bytes)?,
        })
    }

    /// Offset of element `i` (both element kinds are 16 bytes).
    fn elem_offset(&self, i: u16) -> usize {
        PAGE_HEADER_BYTES + usize::from(i) * LEAF_ELEM_BYTES
    }

    /// The bytes `[elem+pos, elem+pos+len)`, checked to lie in the page
    /// after the element array (bbolt writes the data of element i after
    /// all elements and after the data of element i-1), with their range.
    fn slice_at(
        &self,
        elem_off: usize,
        pos: u32,
        len: u64,
    ) -> Option<(&'a [u8], std::ops::Range<usize>)> {
        let start = elem_off.checked_add(usize::try_from(pos).ok()?)?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        let elems_end = PAGE_HEADER_BYTES + usize::from(self.header.count) * LEAF_ELEM_BYTES;
        if start < elems_end {
            return None;
        }
        Some((self.bytes.get(start..end)?, start..end))
    }

    pub fn leaf_elem(&self, i: u16, where_: &dyn Fn() -> String) -> Result<LeafElem<'a>, Error> {
        let off = self.elem_offset(i);
        let bad = |what: &str| Error::Corrupt(format!("{}: leaf element {i} {what}", where_()));
        let e = self
            .bytes
            .get(off..off + LEAF_ELEM_BYTES)
            .ok_or_else(|| bad("lies beyond the page"))?;
        let (flags, pos, ksize, vsize) =
            match (u32_at(e, 0), u32_at(e, 4), u32_at(e, 8), u32_at(e, 12)) {
                (Some(a), Some(b), Some(c), Some(d)) => (a, b, c, d),
                _ => return Err(bad("lies beyond the page")),
            };
        let (kv, data) = self
            .slice_at(off, pos, u64::from(ksize) + u64::from(vsize))
            .ok_or_else(|| {
                bad(&format!(
                    "(pos {pos}, key {ksize} bytes, value {vsize} bytes) points outside the page's data"
                ))
            })?;
        let (key, value) = kv.split_at(ksize as usize);
        Ok(LeafElem {
            flags,
            data,
            key,
            value,
        })
    }

    pub fn branch_elem(
        &self,
        i: u16,
        where_: &dyn Fn() -> String,
    ) -> Result<BranchElem<'a>, Error> {
        let off = self.elem_offset(i);
        let bad = |what: &str| Error::Corrupt(format!("{}: branch element {i} {what}", where_()));
        let e = self
            .bytes
            .get(off..off + BRANCH_ELEM_BYTES)
            .ok_or_else(|| bad("lies beyond the page"))?;
        let (pos, ksize, pgid) = match (u32_at(e, 0), u32_at(e, 4), u64_at(e, 8)) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => return Err(bad("lies beyond the page")),
        };
        let (key, data) = self.slice_at(off, pos, u64::from(ksize)).ok_or_else(|| {
            bad(&format!(
                "(pos {pos}, key {ksize} bytes) points outside the page's data"
            ))
        })?;
        Ok(BranchElem { data, key, pgid })
    }
}

/// Encodes a leaf page holding `entries` (flags, key, value), padded to
/// whole pages. Returns the bytes; their length is `span × page size`.
pub fn encode_leaf<'e>(
    page_id: u64,
    entries: &[(u32, &'e [u8], &'e [u8])],
    page_size_bytes: usize,
) -> Vec<u8> {
    let elems_end = PAGE_HEADER_BYTES + entries.len() * LEAF_ELEM_BYTES;
    let data_bytes: usize = entries.iter().map(|(_, k, v)| k.len() + v.len()).sum();
    let mut page = vec![0u8; padded(elems_end + data_bytes, page_size_bytes)];
    let span = page.len() / page_size_bytes;
    Header {
        id: page_id,
        flags: FLAG_LEAF,
        count: entries.len() as u16,
        overflow: (span - 1) as u32,
    }
    .encode(&mut page);
    let mut data = elems_end;
    for (i, (flags, k, v)) in entries.iter().enumerate() {
        let off = PAGE_HEADER_BYTES + i * LEAF_ELEM_BYTES;
        page[off..off + 4].copy_from_slice(&flags.to_le_bytes());
        page[off + 4..off + 8].copy_from_slice(&((data - off) as u32).to_le_bytes());
        page[off + 8..off + 12].copy_from_slice(&(k.len() as u32).to_le_bytes());
        page[off + 12..off + 16].copy_from_slice(&(v.len() as u32).to_le_bytes());
        page[data..data + k.len()].copy_from_slice(k);
        data += k.len();
        page[data..data + v.len()].copy_from_slice(v);
        data += v.len();
    }
    page
}

/// Encodes a branch page pointing at `children` (first key, pgid).
pub fn encode_branch(page_id: u64, children: &[(Vec<u8>, u64)], page_size_bytes: usize) -> Vec<u8> {
    let elems_end = PAGE_HEADER_BYTES + children.len() * BRANCH_ELEM_BYTES;
    let data_bytes: usize = children.iter().map(|(k, _)| k.len()).sum();
    let mut page = vec![0u8; padded(elems_end + data_bytes, page_size_bytes)];
    let span = page.len() / page_size_bytes;
    Header {
        id: page_id,
        flags: FLAG_BRANCH,
        count: children.len() as u16,
        overflow: (span - 1) as u32,
    }
    .encode(&mut page);
    let mut data = elems_end;
    for (i, (k, pgid)) in children.iter().enumerate() {
        let off = PAGE_HEADER_BYTES + i * BRANCH_ELEM_BYTES;
        page[off..off + 4].copy_from_slice(&((data - off) as u32).to_le_bytes());
        page[off + 4..off + 8].copy_from_slice(&(k.len() as u32).to_le_bytes());
        page[off + 8..off + 16].copy_from_slice(&pgid.to_le_bytes());
        page[data..data + k.len()].copy_from_slice(k);
        data += k.len();
    }
    page
}

/// `bytes` rounded up to whole pages (at least one).
pub fn padded(bytes: usize, page_size_bytes: usize) -> usize {
    bytes.div_ceil(page_size_bytes).max(1) * page_size_bytes
}

/// Encodes a bucket header: root pgid, sequence.
pub fn bucket_header(root_pgid: u64, sequence: u64) -> [u8; BUCKET_HEADER_BYTES] {
    let mut b = [0u8; BUCKET_HEADER_BYTES];
    b[..8].copy_from_slice(&root_pgid.to_le_bytes());
    b[8..].copy_from_slice(&sequence.to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_known_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn meta_round_trips() {
        let m = Meta {
            magic: MAGIC,
            version: VERSION,
            page_size: 4096,
            flags: 0,
            root_pgid: 7,
            root_sequence: 0,
            freelist_pgid: 2,
            pgid: 9,
            txid: 4,
            checksum: 0,
        };
        let page = m.encode_page(0, 4096);
        let back = Meta::parse(&page).unwrap();
        assert_eq!(back.problem(), None);
        assert_eq!(back.checksum, m.sum64());
    }
}
