//! Member, cluster and request IDs, derived exactly as etcd derives them so
//! that `member list` shows the same IDs for the same flags.

use sha1::{Digest, Sha1};
use std::sync::atomic::{AtomicU64, Ordering};

/// A member's ID: the first 8 bytes (big-endian) of SHA-1 over its sorted peer
/// URLs concatenated, followed by the cluster token.
pub fn member_id(peer_urls: &[String], cluster_token: &str) -> u64 {
    hash_member(peer_urls, cluster_token, None)
}

/// The ID of a member added at run time (MemberAdd): as [`member_id`], with the
/// time in seconds appended so the same URLs get a new ID each time (etcd's rule;
/// etcd passes an empty cluster name here).
pub fn member_id_at(peer_urls: &[String], cluster_token: &str, now_unix_secs: u64) -> u64 {
    hash_member(peer_urls, cluster_token, Some(now_unix_secs))
}

fn hash_member(peer_urls: &[String], cluster_token: &str, now_unix_secs: Option<u64>) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut hasher = Sha1::new();
    hasher.update(urls.concat().as_bytes());
    hasher.update(cluster_token.as_bytes());
    if let Some(secs) = now_unix_secs {
        hasher.update(secs.to_string().as_bytes());
    }
    first_u64(&hasher.finalize())
}

/// The cluster's ID: the first 8 bytes of SHA-1 over the sorted member IDs,
/// each as 8 big-endian bytes.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut hasher = Sha1::new();
    for id in ids {
        hasher.update(id.to_be_bytes());
    }
    first_u64(&hasher.finalize())
}

fn first_u64(digest: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(b)
}

/// Unique request IDs: the member ID's low 16 bits, then a 48-bit counter
/// seeded from the clock in milliseconds, so IDs differ across restarts and
/// across members (etcd's idutil scheme).
pub struct RequestIdGenerator {
    prefix: u64,
    suffix: AtomicU64,
}

const SUFFIX_BITS: u32 = 48;
const SUFFIX_MASK: u64 = (1 << SUFFIX_BITS) - 1;

impl RequestIdGenerator {
    pub fn new(member_id: u64, now_unix_ms: u64) -> Self {
        RequestIdGenerator {
            prefix: (member_id & 0xffff) << SUFFIX_BITS,
            suffix: AtomicU64::new((now_unix_ms << 8) & SUFFIX_MASK),
        }
    }

    pub fn next(&self) -> u64 {
        let s = self.suffix.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        self.prefix | (s & SUFFIX_MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_member_and_cluster_ids_match_etcd() {
        let m = member_id(&["http://localhost:2380".to_string()], "etcd-cluster");
        assert_eq!(format!("{m:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster_id(&[m])), "cdf818194e3a8c32");
    }

    #[test]
    fn request_ids_are_unique_and_prefixed() {
        let g = RequestIdGenerator::new(0x8e9e05c52164694d, 1_700_000_000_000);
        let a = g.next();
        let b = g.next();
        assert_ne!(a, b);
        assert_eq!(a >> 48, 0x694d);
    }
}
