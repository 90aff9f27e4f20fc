//! The revisions of one key.
//!
//! A key's life is a sequence of *generations*. A generation starts with the
//! put that creates the key, collects every later put, and ends with the
//! delete (tombstone) that removes the key; the delete also opens a new,
//! empty generation for a later re-creation. A key index always ends with
//! the generation a new put would extend.
//!
//! ```text
//! put@1 put@2 delete@3 put@4 delete@5 on "foo":
//!
//!   generation 0: created 1, version 3, revs [1, 2, 3(tombstone)]
//!   generation 1: created 4, version 2, revs [4, 5(tombstone)]
//!   generation 2: empty
//! ```
//!
//! Invariants:
//! - revisions are strictly increasing across all generations;
//! - every generation but the last is non-empty and ends with a tombstone;
//! - `version` counts every change of the generation (the tombstone too),
//!   also those a compaction dropped, so a revision's version is
//!   `version - (changes after it)`.
//!
//! Compaction at `c` drops, per generation, the revisions `< ` the latest one
//! `<= c`, drops generations that ended at or before `c` (and a generation
//! whose only remaining revision `<= c` is its tombstone), and reports in
//! `available` the revisions the backend must keep.

use std::collections::HashSet;

use crate::Revision;

/// One life of a key, from its creation to its deletion.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Generation {
    /// Changes made in this generation, the tombstone included.
    pub version: i64,
    /// Revision of the put that created the key.
    pub created: Revision,
    /// The revisions still indexed, oldest first.
    pub revs: Vec<Revision>,
}

/// The history of one key: its generations of revisions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyIndex {
    /// The last change of the key.
    modified: Revision,
    generations: Vec<Generation>,
}

/// The key has no live revision where one was required.
#[derive(Debug, PartialEq, Eq)]
pub struct RevisionNotFound;

impl KeyIndex {
    /// A key index without revisions, for the first [`KeyIndex::put`].
    pub fn new() -> KeyIndex {
        KeyIndex::default()
    }

    /// A key index restored from the backend: the key was created at
    /// `created`, last modified at `modified`, with `version` changes.
    pub fn restored(created: Revision, modified: Revision, version: i64) -> KeyIndex {
        KeyIndex {
            modified,
            generations: vec![Generation {
                version,
                created,
                revs: vec![modified],
            }],
        }
    }

    pub fn generations(&self) -> &[Generation] {
        &self.generations
    }

    pub fn modified(&self) -> Revision {
        self.modified
    }

    /// Records a put at `rev`, which must be above every indexed revision.
    pub fn put(&mut self, rev: Revision) {
        assert!(
            rev > self.modified,
            "key index: put at {rev} not after the last change {}",
            self.modified
        );
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let last = self.generations.len() - 1;
        let generation = &mut self.generations[last];
        if generation.revs.is_empty() {
            generation.created = rev;
        }
        generation.revs.push(rev);
        generation.version += 1;
        self.modified = rev;
    }

    /// Records a delete at `rev` and opens a new, empty generation. Fails
    /// when the key does not currently exist.
    pub fn tombstone(&mut self, rev: Revision) -> Result<(), RevisionNotFound> {
        match self.generations.last() {
            Some(generation) if !generation.revs.is_empty() => {}
            _ => return Err(RevisionNotFound),
        }
        self.put(rev);
        self.generations.push(Generation::default());
        Ok(())
    }

    /// Whether nothing is indexed (the key index can be dropped).
    pub fn is_empty(&self) -> bool {
        match self.generations.as_slice() {
            [] => true,
            [only] => only.revs.is_empty(),
            _ => false,
        }
    }

    /// Whether the key exists at the latest indexed revision.
    pub fn is_live(&self) -> bool {
        self.generations.last().is_some_and(|g| !g.revs.is_empty())
    }

    /// The key as of `at`: its last modification `<= at`, its creation and
    /// its version then. `None` when the key did not exist at `at`.
    pub fn get(&self, at: i64) -> Option<(Revision, Revision, i64)> {
        let generation = self.find_generation(at)?;
        let n = generation.revs.iter().rposition(|rev| rev.main <= at)?;
        let newer = (generation.revs.len() - n - 1) as i64;
        Some((
            generation.revs[n],
            generation.created,
            generation.version - newer,
        ))
    }

    /// The generation holding the key's state at `at`, if the key existed.
    fn find_generation(&self, at: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (i, generation) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(end)) = (generation.revs.first(), generation.revs.last()) else {
                continue;
            };
            // A closed generation whose tombstone is at or before `at`: the
            // key was deleted then and not re-created by `at`.
            if i != last && end.main <= at {
                return None;
            }
            if first.main <= at {
                return Some(generation);
            }
        }
        None
    }

    /// The revisions at or after main revision `rev`, oldest first; of
    /// several changes in one main revision only the last is returned.
    pub fn since(&self, rev: i64) -> Vec<Revision> {
        let since = Revision::new(rev, 0);
        let mut start = self.generations.len().saturating_sub(1);
        while start > 0 {
            let generation = &self.generations[start];
            if !generation.revs.is_empty() && since > generation.created {
                break;
            }
            start -= 1;
        }
        let mut revs: Vec<Revision> = Vec::new();
        for generation in &self.generations[start..] {
            for &r in &generation.revs {
                if since > r {
                    continue;
                }
                match revs.last_mut() {
                    Some(last) if last.main == r.main => *last = r,
                    _ => revs.push(r),
                }
            }
        }
        revs
    }

    /// Finds the generation a compaction at `at` starts from and, in it, the
    /// latest revision `<= at` (which goes into `available`).
    fn compaction_point(
        &self,
        at: i64,
        available: &mut HashSet<Revision>,
    ) -> (usize, Option<usize>) {
        let last = self.generations.len() - 1;
        let mut g = 0;
        while g < last {
            match self.generations[g].revs.last() {
                Some(tombstone) if tombstone.main > at => break,
                _ => g += 1,
            }
        }
        let revs = &self.generations[g].revs;
        let r = revs.iter().rposition(|rev| rev.main <= at);
        if let Some(r) = r {
            available.insert(revs[r]);
        }
        (g, r)
    }

    /// Drops what a compaction at `at` makes unreachable and adds to
    /// `available` the revisions `<= at` that stay. Afterwards the key index
    /// may be empty: the caller then drops it.
    pub fn compact(&mut self, at: i64, available: &mut HashSet<Revision>) {
        if self.is_empty() {
            return;
        }
        let (mut g, r) = self.compaction_point(at, available);
        let last = self.generations.len() - 1;
        let generation = &mut self.generations[g];
        if !generation.revs.is_empty() {
            if let Some(r) = r {
                generation.revs.drain(..r);
            }
            // Only the tombstone is left: the whole generation is history.
            if generation.revs.len() == 1 && g != last {
                available.remove(&generation.revs[0]);
                g += 1;
            }
        }
        self.generations.drain(..g);
    }

    /// Adds to `available` the revisions a compaction at `at` would keep,
    /// without changing anything.
    pub fn keep(&self, at: i64, available: &mut HashSet<Revision>) {
        if self.is_empty() {
            return;
        }
        let (g, r) = self.compaction_point(at, available);
        let revs = &self.generations[g].revs;
        if let Some(r) = r {
            if r == revs.len() - 1 && g != self.generations.len() - 1 {
                available.remove(&revs[r]);
            }
        }
    }
}

impl std::fmt::Display for KeyIndex {
    /// `c2 v3 [2 4 6] | []`: per generation its creation, version and revisions.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, generation) in self.generations.iter().enumerate() {
            if i > 0 {
                write!(f, " | ")?;
            }
            if !generation.revs.is_empty() {
                write!(f, "c{} v{} ", short(generation.created), generation.version)?;
            }
            write!(f, "[")?;
            for (j, rev) in generation.revs.iter().enumerate() {
                if j > 0 {
                    write!(f, " ")?;
                }
                write!(f, "{}", short(*rev))?;
            }
            write!(f, "]")?;
        }
        Ok(())
    }
}

/// `5` for 5.0, `5.1` otherwise.
fn short(rev: Revision) -> String {
    if rev.sub == 0 {
        rev.main.to_string()
    } else {
        rev.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// put 2, put 4, delete 6, put 8, put 10, delete 12, put 14, put 14.1,
    /// delete 16: three closed generations and an open, empty one.
    fn three_generations() -> KeyIndex {
        let mut ki = KeyIndex::new();
        ki.put(rev(2));
        ki.put(rev(4));
        ki.tombstone(rev(6)).unwrap();
        ki.put(rev(8));
        ki.put(rev(10));
        ki.tombstone(rev(12)).unwrap();
        ki.put(rev(14));
        ki.put(Revision::new(14, 1));
        ki.tombstone(rev(16)).unwrap();
        ki
    }

    fn sorted(available: &HashSet<Revision>) -> Vec<Revision> {
        let mut v: Vec<_> = available.iter().copied().collect();
        v.sort();
        v
    }

    #[test]
    fn put_tombstone_and_display() {
        let mut ki = KeyIndex::new();
        assert!(ki.is_empty());
        ki.put(rev(5));
        assert_eq!(ki.to_string(), "c5 v1 [5]");
        ki.put(rev(7));
        assert_eq!(ki.to_string(), "c5 v2 [5 7]");
        ki.tombstone(rev(9)).unwrap();
        assert_eq!(ki.to_string(), "c5 v3 [5 7 9] | []");
        assert_eq!(ki.tombstone(rev(10)), Err(RevisionNotFound));
        ki.put(rev(11));
        assert_eq!(ki.to_string(), "c5 v3 [5 7 9] | c11 v1 [11]");
        assert_eq!(ki.modified(), rev(11));
        assert!(!ki.is_empty());
        assert_eq!(KeyIndex::new().tombstone(rev(1)), Err(RevisionNotFound));
    }

    #[test]
    #[should_panic(expected = "not after the last change")]
    fn put_must_move_forward() {
        let mut ki = KeyIndex::new();
        ki.put(rev(5));
        ki.put(rev(5));
    }

    #[test]
    fn restored_key_continues_its_version() {
        let mut ki = KeyIndex::restored(rev(5), rev(7), 2);
        assert_eq!(ki.to_string(), "c5 v2 [7]");
        assert_eq!(ki.get(7), Some((rev(7), rev(5), 2)));
        ki.put(rev(9));
        assert_eq!(ki.get(9), Some((rev(9), rev(5), 3)));
    }

    #[test]
    fn get_at_every_revision() {
        // Compacting at 4 keeps the version numbers of what remains.
        let mut ki = three_generations();
        ki.compact(4, &mut HashSet::new());
        type Got = Option<(Revision, Revision, i64)>;
        let cases: &[(i64, Got)] = &[
            (17, None),
            (16, None),
            (15, Some((Revision::new(14, 1), rev(14), 2))),
            (14, Some((Revision::new(14, 1), rev(14), 2))),
            (13, None),
            (12, None),
            (11, Some((rev(10), rev(8), 2))),
            (10, Some((rev(10), rev(8), 2))),
            (9, Some((rev(8), rev(8), 1))),
            (8, Some((rev(8), rev(8), 1))),
            (7, None),
            (6, None),
            (5, Some((rev(4), rev(2), 2))),
            (4, Some((rev(4), rev(2), 2))),
            (3, None),
            (2, None),
            (1, None),
            (0, None),
        ];
        for &(at, want) in cases {
            assert_eq!(ki.get(at), want, "get({at})");
        }
    }

    #[test]
    fn since_returns_last_change_per_main_revision() {
        let mut ki = three_generations();
        ki.compact(4, &mut HashSet::new());
        let all = [
            rev(4),
            rev(6),
            rev(8),
            rev(10),
            rev(12),
            Revision::new(14, 1),
            rev(16),
        ];
        let cases: &[(i64, usize)] = &[
            (16, 6),
            (15, 6),
            (14, 5),
            (13, 5),
            (12, 4),
            (11, 4),
            (10, 3),
            (9, 3),
            (8, 2),
            (7, 2),
            (6, 1),
            (5, 1),
            (4, 0),
            (3, 0),
            (0, 0),
        ];
        assert_eq!(ki.since(17), Vec::<Revision>::new());
        for &(at, from) in cases {
            assert_eq!(ki.since(at), all[from..].to_vec(), "since({at})");
        }
    }

    #[test]
    fn compact_and_keep_agree_at_every_revision() {
        let r14_1 = Revision::new(14, 1);
        let g0 = "c2 v3 [2 4 6]";
        let g1 = "c8 v3 [8 10 12]";
        let g2 = "c14 v3 [14 14.1 16]";
        let full = format!("{g0} | {g1} | {g2} | []");
        let from4 = format!("c2 v3 [4 6] | {g1} | {g2} | []");
        let from8 = format!("{g1} | {g2} | []");
        let from10 = format!("c8 v3 [10 12] | {g2} | []");
        let from14 = format!("{g2} | []");
        let from14_1 = "c14 v3 [14.1 16] | []".to_string();
        let cases: Vec<(i64, String, Vec<Revision>)> = vec![
            (1, full.clone(), vec![]),
            (2, full.clone(), vec![rev(2)]),
            (3, full.clone(), vec![rev(2)]),
            (4, from4.clone(), vec![rev(4)]),
            (5, from4.clone(), vec![rev(4)]),
            (6, from8.clone(), vec![]),
            (7, from8.clone(), vec![]),
            (8, from8.clone(), vec![rev(8)]),
            (9, from8.clone(), vec![rev(8)]),
            (10, from10.clone(), vec![rev(10)]),
            (11, from10.clone(), vec![rev(10)]),
            (12, from14.clone(), vec![]),
            (13, from14.clone(), vec![]),
            (14, from14_1.clone(), vec![r14_1]),
            (15, from14_1.clone(), vec![r14_1]),
            (16, "[]".to_string(), vec![]),
            (17, "[]".to_string(), vec![]),
        ];

        // From a fresh key index each time.
        for (at, want, want_available) in &cases {
            let mut ki = three_generations();
            let mut kept = HashSet::new();
            ki.keep(*at, &mut kept);
            assert_eq!(ki, three_generations(), "keep({at}) changed the index");
            assert_eq!(sorted(&kept), *want_available, "keep({at})");
            let mut available = HashSet::new();
            ki.compact(*at, &mut available);
            assert_eq!(ki.to_string(), *want, "compact({at})");
            assert_eq!(sorted(&available), *want_available, "compact({at})");
        }

        // Compacting step by step ends in the same states.
        let mut ki = three_generations();
        for (at, want, want_available) in &cases {
            let mut kept = HashSet::new();
            ki.keep(*at, &mut kept);
            assert_eq!(sorted(&kept), *want_available, "keep({at}) after earlier");
            let mut available = HashSet::new();
            ki.compact(*at, &mut available);
            assert_eq!(ki.to_string(), *want, "compact({at}) after earlier");
            assert_eq!(sorted(&available), *want_available);
        }
        assert!(ki.is_empty());
    }

    #[test]
    fn compact_beyond_the_last_change_keeps_a_live_key() {
        let mut ki = KeyIndex::new();
        ki.put(rev(1));
        ki.put(rev(2));
        let mut available = HashSet::new();
        ki.compact(3, &mut available);
        assert_eq!(ki.to_string(), "c1 v2 [2]");
        assert_eq!(sorted(&available), vec![rev(2)]);
        assert_eq!(ki.get(3), Some((rev(2), rev(1), 2)));
    }

    #[test]
    fn emptiness() {
        let mut ki = KeyIndex::new();
        assert!(ki.is_empty() && !ki.is_live());
        ki.put(rev(1));
        assert!(!ki.is_empty() && ki.is_live());
        ki.tombstone(rev(2)).unwrap();
        assert!(!ki.is_empty() && !ki.is_live());
        ki.compact(2, &mut HashSet::new());
        assert!(ki.is_empty());
    }
}
