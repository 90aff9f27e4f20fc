//! etcd's backend schema: the buckets etcd 3.4, 3.5 and 3.6 keep in their
//! bbolt file and the encodings of the rows in them.
//!
//! ```text
//!  bucket            key                          value
//!  ───────────────── ──────────────────────────── ─────────────────────────────────
//!  alarm             AlarmMember (protobuf)       empty
//!  auth              "authEnabled"                0x00 | 0x01
//!                    "authRevision"               u64 BE
//!  authRoles         role name                    authpb.Role
//!  authUsers         user name                    authpb.User
//!  cluster           "clusterVersion"             "3.5.0"
//!                    "downgrade" (3.6)            {"target-version":"3.5.0","enabled":true}
//!  key               main BE 8 '_' sub BE 8 ['t'] mvccpb.KeyValue
//!  lease             lease ID BE 8                leasepb.Lease
//!  members           member ID in hex             {"id":…,"peerURLs":[…],"isLearner":…,"name":…,"clientURLs":[…]}
//!  members_removed   member ID in hex             "removed"
//!  meta              "consistent_index"           u64 BE
//!                    "term" (3.5+)                u64 BE
//!                    "confState" (3.5+)           raftpb.ConfState as JSON
//!                    "scheduledCompactRev"        revision, 17 bytes (main '_' sub)
//!                    "finishedCompactRev"         revision, 17 bytes
//!                    "storageVersion" (3.6)       "3.6.0"
//! ```
//!
//! Bucket names sort as bbolt keeps them (bytewise), which is the order
//! [`BUCKETS`] lists and every walk of a bbolt file meets them in.
//!
//! Left out: etcd 3.6's `test` bucket (tests only) and the v2 store, which
//! lives in snap files, not in the backend.

use serde::{Deserialize, Serialize};

pub const ALARM: &[u8] = b"alarm";
pub const AUTH: &[u8] = b"auth";
pub const AUTH_ROLES: &[u8] = b"authRoles";
pub const AUTH_USERS: &[u8] = b"authUsers";
pub const CLUSTER: &[u8] = b"cluster";
pub const KEY: &[u8] = b"key";
pub const LEASE: &[u8] = b"lease";
pub const MEMBERS: &[u8] = b"members";
pub const MEMBERS_REMOVED: &[u8] = b"members_removed";
pub const META: &[u8] = b"meta";

/// Every bucket etcd 3.4 to 3.6 creates, in bbolt's (bytewise) order.
pub const BUCKETS: [&[u8]; 10] = [
    ALARM,
    AUTH,
    AUTH_ROLES,
    AUTH_USERS,
    CLUSTER,
    KEY,
    LEASE,
    MEMBERS,
    MEMBERS_REMOVED,
    META,
];

pub const META_CONSISTENT_INDEX: &str = "consistent_index";
pub const META_TERM: &str = "term";
pub const META_CONF_STATE: &str = "confState";
pub const META_SCHEDULED_COMPACT: &str = "scheduledCompactRev";
pub const META_FINISHED_COMPACT: &str = "finishedCompactRev";
pub const META_STORAGE_VERSION: &str = "storageVersion";

pub const CLUSTER_VERSION: &[u8] = b"clusterVersion";
pub const CLUSTER_DOWNGRADE: &[u8] = b"downgrade";

pub const AUTH_ENABLED: &[u8] = b"authEnabled";
pub const AUTH_REVISION: &[u8] = b"authRevision";

/// The value etcd stores for each removed member.
pub const REMOVED_VALUE: &[u8] = b"removed";

/// Bytes of a revision key without the tombstone mark.
pub const REV_BYTES: usize = 17;

/// Encodes a revision as etcd's `revToBytes`: main and sub as big-endian
/// 8-byte integers joined by `_`.
pub fn encode_rev(main: i64, sub: i64) -> [u8; REV_BYTES] {
    let mut out = [0u8; REV_BYTES];
    out[..8].copy_from_slice(&main.to_be_bytes());
    out[8] = b'_';
    out[9..].copy_from_slice(&sub.to_be_bytes());
    out
}

/// Decodes a revision key (a trailing tombstone mark `t` is allowed):
/// `(main, sub, tombstone)`, or None when it is not one.
pub fn decode_rev(bytes: &[u8]) -> Option<(i64, i64, bool)> {
    let tombstone = match bytes.len() {
        REV_BYTES => false,
        18 if bytes[REV_BYTES] == b't' => true,
        _ => return None,
    };
    if bytes[8] != b'_' {
        return None;
    }
    let main = i64::from_be_bytes(bytes[..8].try_into().ok()?);
    let sub = i64::from_be_bytes(bytes[9..REV_BYTES].try_into().ok()?);
    Some((main, sub, tombstone))
}

/// A row of the `members` bucket, as etcd's `json.Marshal(member)` writes
/// it (field order and omissions are Go's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberJson {
    pub id: u64,
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
    #[serde(rename = "isLearner", default, skip_serializing_if = "is_false")]
    pub is_learner: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(rename = "clientURLs", default, skip_serializing_if = "Vec::is_empty")]
    pub client_urls: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The `members` bucket's key for a member: its ID in lower-case hex.
pub fn member_key(id: u64) -> Vec<u8> {
    format!("{id:x}").into_bytes()
}

/// Parses a `members`/`members_removed` key.
pub fn parse_member_key(key: &[u8]) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(key).ok()?, 16).ok()
}

/// The `cluster` bucket's `downgrade` row (etcd 3.6).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DowngradeJson {
    #[serde(rename = "target-version", default)]
    pub target_version: String,
    #[serde(default)]
    pub enabled: bool,
}

/// The `meta` bucket's `confState` row: raftpb.ConfState as gogo's JSON
/// (`omitempty` on the lists, `auto_leave` always written).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfStateJson {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voters: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learners: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voters_outgoing: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learners_next: Vec<u64>,
    #[serde(default)]
    pub auto_leave: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_in_bbolt_order() {
        let mut sorted = BUCKETS;
        sorted.sort();
        assert_eq!(sorted, BUCKETS);
    }

    #[test]
    fn revisions_round_trip() {
        let bytes = encode_rev(0x0102, 7);
        assert_eq!(decode_rev(&bytes), Some((0x0102, 7, false)));
        let mut tomb = bytes.to_vec();
        tomb.push(b't');
        assert_eq!(decode_rev(&tomb), Some((0x0102, 7, true)));
        assert_eq!(decode_rev(&bytes[..16]), None);
        let mut bad = bytes;
        bad[8] = b'-';
        assert_eq!(decode_rev(&bad), None);
    }

    #[test]
    fn member_json_is_gos() {
        let m = MemberJson {
            id: 10276657743932975437,
            peer_urls: vec!["http://localhost:2380".into()],
            is_learner: false,
            name: "default".into(),
            client_urls: vec!["http://localhost:2379".into()],
        };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(
            text,
            r#"{"id":10276657743932975437,"peerURLs":["http://localhost:2380"],"name":"default","clientURLs":["http://localhost:2379"]}"#
        );
        assert_eq!(serde_json::from_str::<MemberJson>(&text).unwrap(), m);
        let learner = MemberJson {
            id: 1,
            peer_urls: vec![],
            is_learner: true,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&learner).unwrap(),
            r#"{"id":1,"peerURLs":[],"isLearner":true}"#
        );
        assert_eq!(
            parse_member_key(&member_key(0x8e9e05c52164694d)),
            Some(0x8e9e05c52164694d)
        );
    }

    #[test]
    fn conf_state_json_is_gogos() {
        let cs = ConfStateJson {
            voters: vec![1, 2],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&cs).unwrap(),
            r#"{"voters":[1,2],"auto_leave":false}"#
        );
    }
}
