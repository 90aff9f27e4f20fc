//! The in-memory key index: every key with its [`KeyIndex`], in key order.
//!
//! Reads ask it which revision of each key was live at a revision, then load
//! those revisions from the backend. The store keeps it behind a `RwLock`;
//! the single writer updates it while the batch runs, readers ignore the
//! revisions above the published one.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;

use crate::key_index::KeyIndex;
use crate::Revision;

/// Which keys a request addresses, from its `key` and `range_end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRange<'a> {
    /// `range_end` empty: exactly `key`.
    Key(&'a [u8]),
    /// `range_end` is `"\0"`: every key `>= key`.
    From(&'a [u8]),
    /// Keys in `[key, range_end)`; empty when `range_end <= key`.
    Between(&'a [u8], &'a [u8]),
}

impl<'a> KeyRange<'a> {
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> KeyRange<'a> {
        match range_end {
            [] => KeyRange::Key(key),
            [0] => KeyRange::From(key),
            end => KeyRange::Between(key, end),
        }
    }

    /// Whether `key` falls in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match *self {
            KeyRange::Key(k) => key == k,
            KeyRange::From(k) => key >= k,
            KeyRange::Between(k, end) => key >= k && key < end,
        }
    }

    fn bounds(&self) -> Option<KeyBounds<'a>> {
        match *self {
            KeyRange::Key(k) => Some((Bound::Included(k), Bound::Included(k))),
            KeyRange::From(k) => Some((Bound::Included(k), Bound::Unbounded)),
            KeyRange::Between(k, end) if k < end => {
                Some((Bound::Included(k), Bound::Excluded(end)))
            }
            KeyRange::Between(..) => None,
        }
    }
}

/// Lower and upper bound of a [`KeyRange`] over the key tree.
type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// All keys and their histories.
#[derive(Clone, Debug, Default)]
pub struct KeyTree {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
    /// Keys live at the latest revision (etcd's `keys_total` gauge).
    live: usize,
}

impl KeyTree {
    pub fn new() -> KeyTree {
        KeyTree::default()
    }

    /// Number of indexed keys (live or with history).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Number of keys that exist at the latest revision.
    pub fn live_len(&self) -> usize {
        self.live
    }

    pub fn key_index(&self, key: &[u8]) -> Option<&KeyIndex> {
        self.keys.get(key)
    }

    /// `key` as of `at`: (modified, created, version), if it existed.
    pub fn get(&self, key: &[u8], at: i64) -> Option<(Revision, Revision, i64)> {
        self.keys.get(key)?.get(at)
    }

    /// Calls `f` for every indexed key in `range`, in key order.
    pub fn visit<'s>(&'s self, range: KeyRange<'_>, mut f: impl FnMut(&'s [u8], &'s KeyIndex)) {
        let Some(bounds) = range.bounds() else {
            return;
        };
        for (key, ki) in self.keys.range::<[u8], _>(bounds) {
            f(key, ki);
        }
    }

    /// The revisions live at `at` in `range`, in key order: at most `limit`
    /// of them (0: all), and how many there are in total.
    pub fn revisions(&self, range: KeyRange<'_>, at: i64, limit: usize) -> (Vec<Revision>, usize) {
        let mut revs = Vec::new();
        let mut count = 0;
        self.visit(range, |_, ki| {
            if let Some((modified, _, _)) = ki.get(at) {
                if limit == 0 || revs.len() < limit {
                    revs.push(modified);
                }
                count += 1;
            }
        });
        (revs, count)
    }

    /// Records a put of `key` at `rev` and returns the key's create revision
    /// and version after it.
    pub fn put(&mut self, key: &[u8], rev: Revision) -> (i64, i64) {
        let ki = match self.keys.get_mut(key) {
            Some(ki) => ki,
            None => self.keys.entry(key.to_vec()).or_default(),
        };
        let (created, version) = match ki.get(rev.main) {
            Some((_, created, version)) => (created.main, version + 1),
            None => (rev.main, 1),
        };
        let was_live = ki.is_live();
        ki.put(rev);
        if !was_live {
            self.live += 1;
        }
        (created, version)
    }

    /// Deletes every key of `range` live at `at`, the n-th one at main
    /// revision `main` and sub revision `first_sub + n`. Returns the deleted
    /// keys with their tombstone revisions, in key order.
    pub fn tombstone_range(
        &mut self,
        range: KeyRange<'_>,
        at: i64,
        main: i64,
        first_sub: i64,
    ) -> Vec<(Vec<u8>, Revision)> {
        let mut deleted = Vec::new();
        let Some(bounds) = range.bounds() else {
            return deleted;
        };
        for (key, ki) in self.keys.range_mut::<[u8], _>(bounds) {
            if ki.get(at).is_none() {
                continue;
            }
            let rev = Revision::new(main, first_sub + deleted.len() as i64);
            // A key live at `at` (the latest revision) can be deleted.
            if ki.tombstone(rev).is_ok() {
                deleted.push((key.clone(), rev));
            }
        }
        self.live -= deleted.len();
        deleted
    }

    /// Replays one change read from the backend while rebuilding the index.
    /// `created` and `version` come from the stored KeyValue.
    pub fn restore(
        &mut self,
        key: &[u8],
        rev: Revision,
        tombstone: bool,
        created: i64,
        version: i64,
    ) {
        match self.keys.get_mut(key) {
            Some(ki) if tombstone => {
                // A tombstone of a key whose history was compacted away
                // entirely has nothing to end.
                if ki.tombstone(rev).is_ok() {
                    self.live -= 1;
                }
            }
            Some(ki) => {
                let was_live = ki.is_live();
                ki.put(rev);
                if !was_live {
                    self.live += 1;
                }
            }
            // The key's earlier revisions were compacted and it was deleted.
            None if tombstone => {}
            None => {
                let ki = KeyIndex::restored(Revision::new(created, 0), rev, version);
                self.keys.insert(key.to_vec(), ki);
                self.live += 1;
            }
        }
    }

    /// Compacts every key at `at`, drops keys left without history, and
    /// returns the revisions `<= at` the backend must keep.
    pub fn compact(&mut self, at: i64) -> HashSet<Revision> {
        let mut available = HashSet::new();
        // Compaction drops history only: a live key keeps its generation.
        self.keys.retain(|_, ki| {
            ki.compact(at, &mut available);
            !ki.is_empty()
        });
        debug_assert_eq!(
            self.live,
            self.keys.values().filter(|k| k.is_live()).count()
        );
        available
    }

    /// The revisions `<= at` a compaction at `at` would keep.
    pub fn keep(&self, at: i64) -> HashSet<Revision> {
        let mut available = HashSet::new();
        for ki in self.keys.values() {
            ki.keep(at, &mut available);
        }
        available
    }

    /// Every revision at or after `rev` of the keys in `range`, in revision
    /// order (one per main revision and key).
    pub fn range_since(&self, range: KeyRange<'_>, rev: i64) -> Vec<Revision> {
        let mut revs = Vec::new();
        self.visit(range, |_, ki| revs.extend(ki.since(rev)));
        revs.sort();
        revs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// foo@1 foo1@2 foo2@3 foo2@4 foo1@5 foo@6, then delete foo1@7.
    fn tree() -> KeyTree {
        let mut t = KeyTree::new();
        for (key, main) in [
            ("foo", 1),
            ("foo1", 2),
            ("foo2", 3),
            ("foo2", 4),
            ("foo1", 5),
            ("foo", 6),
        ] {
            t.put(key.as_bytes(), rev(main));
        }
        let deleted = t.tombstone_range(KeyRange::Key(b"foo1"), 6, 7, 0);
        assert_eq!(deleted, vec![(b"foo1".to_vec(), rev(7))]);
        t
    }

    #[test]
    fn live_keys_follow_puts_deletes_and_compaction() {
        let mut t = tree();
        // foo and foo2 live, foo1 deleted.
        assert_eq!((t.len(), t.live_len()), (3, 2));
        t.put(b"foo1", rev(8));
        assert_eq!(t.live_len(), 3);
        t.put(b"foo1", rev(9));
        assert_eq!(t.live_len(), 3);
        let deleted = t.tombstone_range(KeyRange::From(b"foo"), 9, 10, 0);
        assert_eq!((deleted.len(), t.live_len()), (3, 0));
        t.compact(10);
        assert_eq!((t.len(), t.live_len()), (0, 0));
        let mut restored = KeyTree::new();
        restored.restore(b"a", rev(2), false, 2, 1);
        restored.restore(b"a", rev(3), true, 0, 0);
        restored.restore(b"b", rev(4), false, 4, 1);
        restored.restore(b"b", rev(5), false, 4, 2);
        assert_eq!(restored.live_len(), 1);
    }

    #[test]
    fn key_range_from_request_fields() {
        assert_eq!(KeyRange::new(b"a", b""), KeyRange::Key(b"a"));
        assert_eq!(KeyRange::new(b"a", b"\0"), KeyRange::From(b"a"));
        assert_eq!(KeyRange::new(b"a", b"b"), KeyRange::Between(b"a", b"b"));
        let r = KeyRange::new(b"b", b"d");
        assert!(!r.contains(b"a") && r.contains(b"b") && r.contains(b"c\xff") && !r.contains(b"d"));
        assert!(KeyRange::new(b"\0", b"\0").contains(b"\0"));
        assert!(!KeyRange::new(b"z", b"a").contains(b"b"));
    }

    #[test]
    fn get_and_put_track_create_revision_and_version() {
        let mut t = KeyTree::new();
        assert_eq!(t.put(b"k", rev(2)), (2, 1));
        assert_eq!(t.put(b"k", rev(3)), (2, 2));
        assert_eq!(t.tombstone_range(KeyRange::Key(b"k"), 3, 4, 0).len(), 1);
        assert_eq!(t.put(b"k", rev(5)), (5, 1));
        assert_eq!(t.get(b"k", 3), Some((rev(3), rev(2), 2)));
        assert_eq!(t.get(b"k", 4), None);
        assert_eq!(t.get(b"k", 5), Some((rev(5), rev(5), 1)));
        assert_eq!(t.get(b"nope", 5), None);
    }

    #[test]
    fn revisions_over_ranges() {
        let t = tree();
        // key, range_end, at, limit, wanted main revisions, wanted count
        type Case = (
            &'static [u8],
            &'static [u8],
            i64,
            usize,
            &'static [i64],
            usize,
        );
        let cases: &[Case] = &[
            (b"foo", b"", 7, 0, &[6], 1),
            (b"foo", b"", 5, 0, &[1], 1),
            (b"foo1", b"", 7, 0, &[], 0),
            (b"foo1", b"", 6, 0, &[5], 1),
            (b"foo", b"foo3", 7, 0, &[6, 4], 2),
            (b"foo", b"foo3", 6, 0, &[6, 5, 4], 3),
            (b"foo", b"foo3", 6, 2, &[6, 5], 3),
            (b"foo", b"\0", 3, 0, &[1, 2, 3], 3),
            (b"\0", b"\0", 2, 0, &[1, 2], 2),
            (b"foo3", b"foo", 7, 0, &[], 0),
            (b"foo", b"foo", 7, 0, &[], 0),
            (b"foo", b"foo3", 0, 0, &[], 0),
        ];
        for &(key, end, at, limit, want, want_count) in cases {
            let (revs, count) = t.revisions(KeyRange::new(key, end), at, limit);
            let mains: Vec<i64> = revs.iter().map(|r| r.main).collect();
            assert_eq!(
                (mains.as_slice(), count),
                (want, want_count),
                "{key:?} {end:?} @{at} limit {limit}"
            );
        }
    }

    #[test]
    fn tombstone_range_numbers_sub_revisions_in_key_order() {
        let mut t = tree();
        let deleted = t.tombstone_range(KeyRange::From(b"f"), 7, 8, 3);
        assert_eq!(
            deleted,
            vec![
                (b"foo".to_vec(), Revision::new(8, 3)),
                (b"foo2".to_vec(), Revision::new(8, 4)),
            ]
        );
        assert!(t.tombstone_range(KeyRange::From(b"f"), 8, 9, 0).is_empty());
    }

    #[test]
    fn compact_drops_dead_keys_and_reports_what_stays() {
        let mut t = tree();
        assert_eq!(t.keep(5), t.clone().compact(5));
        let available = t.compact(5);
        let mut kept: Vec<_> = available.into_iter().collect();
        kept.sort();
        assert_eq!(kept, vec![rev(1), rev(4), rev(5)]);
        assert_eq!(t.len(), 3);
        // foo1's tombstone at 7 ends its history.
        let available = t.compact(7);
        let mut kept: Vec<_> = available.into_iter().collect();
        kept.sort();
        assert_eq!(kept, vec![rev(4), rev(6)]);
        assert_eq!(t.len(), 2);
        assert!(t.key_index(b"foo1").is_none());
    }

    #[test]
    fn restore_rebuilds_histories() {
        let mut t = KeyTree::new();
        // After a compaction the backend starts with the latest kept revision.
        t.restore(b"a", rev(4), false, 2, 2);
        t.restore(b"gone", rev(5), true, 0, 0);
        t.restore(b"a", rev(6), true, 0, 0);
        t.restore(b"a", rev(7), false, 7, 1);
        assert_eq!(
            t.key_index(b"a").unwrap().to_string(),
            "c2 v3 [4 6] | c7 v1 [7]"
        );
        assert!(t.key_index(b"gone").is_none());
        assert_eq!(t.get(b"a", 5), Some((rev(4), rev(2), 2)));
    }

    #[test]
    fn range_since_is_in_revision_order() {
        let t = tree();
        let mains: Vec<i64> = t
            .range_since(KeyRange::From(b"foo"), 3)
            .iter()
            .map(|r| r.main)
            .collect();
        assert_eq!(mains, vec![3, 4, 5, 6, 7]);
    }
}
