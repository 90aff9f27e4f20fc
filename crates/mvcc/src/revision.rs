//! Revisions and their encoding as backend keys.

use crate::{Error, Result};

/// A point in the history of the key space: `main` counts write requests,
/// `sub` counts the changes inside one request. Ordered by `main`, then `sub`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }
}

impl std::fmt::Display for Revision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

/// Length of an encoded revision: main (8), '_', sub (8).
pub(crate) const REV_KEY_LEN: usize = 17;
/// Length of an encoded revision with the tombstone mark.
const MARKED_REV_KEY_LEN: usize = REV_KEY_LEN + 1;
const SEPARATOR: u8 = b'_';
const TOMBSTONE_MARK: u8 = b't';

/// A revision encoded as a key of the "key" table: big-endian main, '_',
/// big-endian sub, and a trailing 't' when the change is a delete. Byte order
/// is revision order, since revisions are never negative.
#[derive(Clone, Copy)]
pub(crate) struct RevKey {
    bytes: [u8; MARKED_REV_KEY_LEN],
    tombstone: bool,
}

impl RevKey {
    pub(crate) fn new(rev: Revision, tombstone: bool) -> RevKey {
        let mut bytes = [0u8; MARKED_REV_KEY_LEN];
        bytes[..8].copy_from_slice(&(rev.main as u64).to_be_bytes());
        bytes[8] = SEPARATOR;
        bytes[9..17].copy_from_slice(&(rev.sub as u64).to_be_bytes());
        bytes[17] = TOMBSTONE_MARK;
        RevKey { bytes, tombstone }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        if self.tombstone {
            &self.bytes
        } else {
            &self.bytes[..REV_KEY_LEN]
        }
    }
}

/// Decodes a key of the "key" table into its revision and tombstone flag.
pub(crate) fn decode_rev_key(bytes: &[u8]) -> Result<(Revision, bool)> {
    let tombstone = match bytes.len() {
        REV_KEY_LEN => false,
        MARKED_REV_KEY_LEN if bytes[REV_KEY_LEN] == TOMBSTONE_MARK => true,
        _ => return Err(Error::Corrupt(format!("bad revision key {bytes:02x?}"))),
    };
    if bytes[8] != SEPARATOR {
        return Err(Error::Corrupt(format!("bad revision key {bytes:02x?}")));
    }
    let mut main = [0u8; 8];
    let mut sub = [0u8; 8];
    main.copy_from_slice(&bytes[..8]);
    sub.copy_from_slice(&bytes[9..17]);
    let rev = Revision::new(
        u64::from_be_bytes(main) as i64,
        u64::from_be_bytes(sub) as i64,
    );
    if rev.main < 0 || rev.sub < 0 {
        return Err(Error::Corrupt(format!("negative revision {rev}")));
    }
    Ok((rev, tombstone))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_sorts_like_revisions() {
        let revs = [
            Revision::new(0, 0),
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(1, 256),
            Revision::new(2, 0),
            Revision::new(256, 0),
            Revision::new(i64::MAX, i64::MAX),
        ];
        for (i, rev) in revs.iter().enumerate() {
            for tombstone in [false, true] {
                let key = RevKey::new(*rev, tombstone);
                assert_eq!(decode_rev_key(key.as_bytes()).unwrap(), (*rev, tombstone));
            }
            if i > 0 {
                let prev = RevKey::new(revs[i - 1], true);
                assert!(prev.as_bytes() < RevKey::new(*rev, false).as_bytes());
            }
        }
        // etcd's exact bytes: 8 + '_' + 8 (+ 't').
        assert_eq!(
            RevKey::new(Revision::new(2, 1), true).as_bytes(),
            b"\0\0\0\0\0\0\0\x02_\0\0\0\0\0\0\0\x01t"
        );
    }

    #[test]
    fn bad_keys_are_corrupt() {
        for bad in [
            &b""[..],
            &b"short"[..],
            &b"\0\0\0\0\0\0\0\x02-\0\0\0\0\0\0\0\x01"[..],
            &b"\0\0\0\0\0\0\0\x02_\0\0\0\0\0\0\0\x01x"[..],
            &b"\x80\0\0\0\0\0\0\x02_\0\0\0\0\0\0\0\x01"[..],
        ] {
            assert!(
                matches!(decode_rev_key(bad), Err(Error::Corrupt(_))),
                "{bad:?}"
            );
        }
    }
}
