//! Key permissions as sets of key intervals, merged per user, and the
//! checks etcd makes against them.
//!
//! etcd's ranges: an empty `range_end` is the single key `key`; a
//! `range_end` of one zero byte is open-ended (every key from `key`); any
//! other `range_end` is `[key, range_end)`. An empty key is greater than
//! every key (so a range starting there covers nothing), as in etcd's
//! interval tree.

use api::authpb::{permission::Type, Permission};

/// An interval's upper bound: exclusive, or none.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Before(Vec<u8>),
    Unbounded,
}

/// Sorted, disjoint, non-adjacent `[start, end)` intervals of keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    intervals: Vec<(Vec<u8>, End)>,
}

/// `[key, range_end)` in etcd's conventions, or None for an empty interval.
fn interval(key: &[u8], range_end: &[u8]) -> Option<(Vec<u8>, End)> {
    if key.is_empty() {
        return None;
    }
    let end = match range_end {
        [] => {
            let mut next = key.to_vec();
            next.push(0);
            End::Before(next)
        }
        [0] => End::Unbounded,
        end => End::Before(end.to_vec()),
    };
    Some((key.to_vec(), end))
}

impl KeySet {
    /// Adds `[key, range_end)` (etcd's conventions; an empty or inverted
    /// interval adds nothing).
    pub fn insert(&mut self, key: &[u8], range_end: &[u8]) {
        let Some((start, end)) = interval(key, range_end) else {
            return;
        };
        if matches!(&end, End::Before(e) if e.as_slice() <= start.as_slice()) {
            return;
        }
        self.intervals.push((start, end));
        self.intervals.sort();
        let mut merged: Vec<(Vec<u8>, End)> = Vec::with_capacity(self.intervals.len());
        for (s, e) in self.intervals.drain(..) {
            match merged.last_mut() {
                // Overlapping or touching: one interval.
                Some((_, last_end)) if touches(last_end, &s) => {
                    if e > *last_end {
                        *last_end = e;
                    }
                }
                _ => merged.push((s, e)),
            }
        }
        self.intervals = merged;
    }

    /// Whether `key` alone is in the set.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        // The last interval starting at or before the key.
        let i = self.intervals.partition_point(|(s, _)| s.as_slice() <= key);
        i > 0 && above(&self.intervals[i - 1].1, key)
    }

    /// Whether every key of `[key, range_end)` is in the set (a range of
    /// etcd's request: empty `range_end` for one key, `\0` for every key
    /// from `key`).
    pub fn contains(&self, key: &[u8], range_end: &[u8]) -> bool {
        if range_end.is_empty() {
            return self.contains_key(key);
        }
        if key.is_empty() {
            return false;
        }
        let i = self.intervals.partition_point(|(s, _)| s.as_slice() <= key);
        if i == 0 {
            return false;
        }
        let (_, end) = &self.intervals[i - 1];
        let wanted = if range_end == [0] {
            End::Unbounded
        } else {
            End::Before(range_end.to_vec())
        };
        above(end, key) && *end >= wanted
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }
}

/// Whether an interval ending at `end` reaches `start` (overlaps or touches).
fn touches(end: &End, start: &[u8]) -> bool {
    match end {
        End::Unbounded => true,
        End::Before(e) => e.as_slice() >= start,
    }
}

/// Whether `key` is below `end`.
fn above(end: &End, key: &[u8]) -> bool {
    match end {
        End::Unbounded => true,
        End::Before(e) => key < e.as_slice(),
    }
}

/// What a user may read and write: the union of its roles' permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Perms {
    pub read: KeySet,
    pub write: KeySet,
}

impl Perms {
    /// The union of `perms`.
    pub fn merged<'a>(perms: impl IntoIterator<Item = &'a Permission>) -> Perms {
        let mut out = Perms::default();
        for p in perms {
            let (read, write) = match Type::try_from(p.perm_type) {
                Ok(Type::Read) => (true, false),
                Ok(Type::Write) => (false, true),
                Ok(Type::Readwrite) => (true, true),
                Err(_) => (false, false),
            };
            if read {
                out.read.insert(&p.key, &p.range_end);
            }
            if write {
                out.write.insert(&p.key, &p.range_end);
            }
        }
        out
    }
}

/// Whether a permission's range is one etcd accepts (3.6: a key, and an
/// empty, open-ended or greater range end).
pub fn is_valid_range(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && (range_end.is_empty() || range_end == [0] || key < range_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ranges: &[(&str, &str)]) -> KeySet {
        let mut s = KeySet::default();
        for (k, e) in ranges {
            s.insert(k.as_bytes(), e.as_bytes());
        }
        s
    }

    #[test]
    fn single_keys_ranges_and_open_ends() {
        let s = set(&[("foo", ""), ("b", "d"), ("x", "\0")]);
        assert!(s.contains_key(b"foo"));
        assert!(!s.contains_key(b"foo0"));
        assert!(!s.contains_key(b"fo"));
        assert!(s.contains(b"foo", b""));
        assert!(s.contains(b"b", b"d"));
        assert!(s.contains(b"bb", b"c"));
        assert!(!s.contains(b"b", b"d0"));
        assert!(!s.contains(b"a", b"c"));
        assert!(s.contains(b"x", b"\0"));
        assert!(s.contains(b"zzz", b"\0"));
        assert!(s.contains_key(b"\xff\xff"));
        assert!(!s.contains(b"w", b"\0"));
    }

    #[test]
    fn read_on_one_key_does_not_cover_everything_from_it() {
        // GHSA-xg4h-6gfc-h4m8: a watch from `foo` onward (range_end `\0`)
        // needs the open range, not the key.
        let s = set(&[("foo", "")]);
        assert!(s.contains(b"foo", b""));
        assert!(!s.contains(b"foo", b"\0"));
        assert!(!s.contains(b"foo", b"fop"));
    }

    #[test]
    fn touching_and_overlapping_intervals_merge() {
        let s = set(&[("a", "c"), ("c", "e"), ("d", "g"), ("k", "")]);
        assert!(s.contains(b"a", b"g"));
        assert!(!s.contains(b"a", b"h"));
        // `k` is [k, k\0): it touches nothing around it.
        assert!(!s.contains(b"g", b"k\0"));
        let adjacent = set(&[("k", ""), ("k\0", "l")]);
        assert!(adjacent.contains(b"k", b"l"));
        assert_eq!(adjacent.intervals.len(), 1);
    }

    #[test]
    fn empty_keys_and_inverted_ranges_cover_nothing() {
        let s = set(&[("", "\0"), ("b", "a")]);
        assert!(s.is_empty());
        let all = set(&[("\0", "\0")]);
        assert!(all.contains(b"\0", b"\0"));
        assert!(all.contains(b"anything", b""));
        assert!(!all.contains(b"", b"\0"));
    }

    #[test]
    fn valid_permission_ranges_as_etcd_3_6() {
        assert!(is_valid_range(b"a", b""));
        assert!(is_valid_range(b"a", b"\0"));
        assert!(is_valid_range(b"a", b"b"));
        assert!(!is_valid_range(b"", b""));
        assert!(!is_valid_range(b"b", b"a"));
        assert!(!is_valid_range(b"a", b"a"));
    }
}
