//! The v2 store JSON etcd 3.4/3.5 put in a raft snapshot's data
//! (`v2store.store.Save()`), reduced to what a member needs from it: the
//! membership and the cluster version.
//!
//! # Shape
//!
//! Go's `encoding/json` of the store struct (exported fields, map keys
//! sorted):
//!
//! ```text
//! {"Root": node "/",            node = {"Path": "/0/members",
//!  "WatcherHub": {"EventHistory":         "CreatedIndex": 1, "ModifiedIndex": 1,
//!     {"Queue": {"Events": [null x 1000], "ExpireTime": "0001-01-01T00:00:00Z",
//!                "Size":0, "Front":0,     "Value": "",          (key-value nodes)
//!                "Back":0, "Capacity":1000},  "Children": {name: node, ...}
//!      "StartIndex":0, "LastIndex":0}},              (directories; null for a key)
//!  "CurrentIndex": N, "Stats": {..counters..}, "CurrentVersion": 2}
//!
//! /0/members/<hex id>/raftAttributes  = {"peerURLs":[..],"isLearner":true}
//! /0/members/<hex id>/attributes      = {"name":"..","clientURLs":[..]}
//! /0/removed_members/<hex id>         = ""
//! /0/version                          = "3.5.0"
//! /1/...                              v2 API keys (ignored here)
//! ```
//!
//! # What `Recovery` needs
//!
//! etcd unmarshals the JSON over a fresh store and then walks `Root`. A
//! missing `WatcherHub` or `Stats` would become a nil pointer that the next
//! v2 write (etcd's own publish of member attributes) dereferences, and an
//! event queue whose `Events` is shorter than `Capacity` makes that write
//! index out of range; so [`to_v2_store_json`] writes them in full, the way
//! a fresh etcd store marshals. A node is a directory iff `Children` is
//! non-null, so directories get `{}` and keys `null`.
//!
//! Left out: v2 keys under `/1`, TTLs, and keeping unknown parts on a
//! round trip (parsing ignores everything but membership and version).

use serde_json::{json, Map, Value};

use crate::wal::Problem;

/// One member as recorded under `/0/members`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct V2Member {
    /// Member id (the hex directory name).
    pub id: u64,
    /// `attributes.name` (empty until the member published it).
    pub name: String,
    /// `raftAttributes.peerURLs`.
    pub peer_urls: Vec<String>,
    /// `attributes.clientURLs`.
    pub client_urls: Vec<String>,
    /// `raftAttributes.isLearner`.
    pub is_learner: bool,
}

/// Membership and cluster version from a v2 store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct V2Membership {
    /// Members, in the store's (sorted hex id) order.
    pub members: Vec<V2Member>,
    /// Removed member ids.
    pub removed: Vec<u64>,
    /// `/0/version`, e.g. "3.5.0".
    pub cluster_version: Option<String>,
}

fn bad(why: impl Into<String>) -> Problem {
    Problem::V2Store(why.into())
}

fn children(node: &Value) -> Option<&Map<String, Value>> {
    node.get("Children")?.as_object()
}

fn child<'a>(node: &'a Value, name: &str) -> Option<&'a Value> {
    children(node)?.get(name)
}

fn value_str(node: &Value) -> Option<&str> {
    node.get("Value")?.as_str()
}

fn parse_id(hex: &str) -> Result<u64, Problem> {
    u64::from_str_radix(hex, 16).map_err(|_| bad(format!("member id {hex:?} is not hex")))
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses the membership out of a v2 store JSON (a raft snapshot's data).
pub fn parse_v2_store(json: &[u8]) -> Result<V2Membership, Problem> {
    let v: Value = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    let root = v.get("Root").ok_or_else(|| bad("no Root"))?;
    let mut out = V2Membership::default();
    let Some(cluster) = child(root, "0") else {
        return Ok(out);
    };
    if let Some(members) = child(cluster, "members").and_then(children) {
        for (hex, node) in members {
            let mut m = V2Member {
                id: parse_id(hex)?,
                ..Default::default()
            };
            if let Some(raw) = child(node, "raftAttributes").and_then(value_str) {
                let ra: Value = serde_json::from_str(raw)
                    .map_err(|e| bad(format!("member {hex} raftAttributes: {e}")))?;
                m.peer_urls = str_list(ra.get("peerURLs"));
                m.is_learner = ra.get("isLearner").and_then(Value::as_bool) == Some(true);
            }
            if let Some(raw) = child(node, "attributes").and_then(value_str) {
                let a: Value = serde_json::from_str(raw)
                    .map_err(|e| bad(format!("member {hex} attributes: {e}")))?;
                m.name = a
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                m.client_urls = str_list(a.get("clientURLs"));
            }
            out.members.push(m);
        }
    }
    if let Some(removed) = child(cluster, "removed_members").and_then(children) {
        for hex in removed.keys() {
            out.removed.push(parse_id(hex)?);
        }
    }
    out.cluster_version = child(cluster, "version")
        .and_then(value_str)
        .map(str::to_owned);
    Ok(out)
}

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn kv(path: String, index: u64, value: String) -> Value {
    json!({
        "Path": path,
        "CreatedIndex": index,
        "ModifiedIndex": index,
        "ExpireTime": ZERO_TIME,
        "Value": value,
        "Children": null,
    })
}

fn dir(path: String, index: u64, kids: Map<String, Value>) -> Value {
    json!({
        "Path": path,
        "CreatedIndex": index,
        "ModifiedIndex": index,
        "ExpireTime": ZERO_TIME,
        "Value": "",
        "Children": kids,
    })
}

/// Produces a v2 store JSON etcd 3.4 and 3.5 recover from, holding `m`.
/// `index` is used as the store's `CurrentIndex` and as every node's
/// created/modified index (pass the raft snapshot's index).
pub fn to_v2_store_json(m: &V2Membership, index: u64) -> Vec<u8> {
    let mut members = Map::new();
    let mut sorted: Vec<&V2Member> = m.members.iter().collect();
    sorted.sort_by_key(|x| format!("{:x}", x.id));
    for mem in sorted {
        let hex = format!("{:x}", mem.id);
        let base = format!("/0/members/{hex}");
        let mut ra = Map::new();
        ra.insert("peerURLs".into(), json!(mem.peer_urls));
        if mem.is_learner {
            ra.insert("isLearner".into(), json!(true));
        }
        let mut kids = Map::new();
        // Go marshals the Children map with sorted keys.
        if !mem.name.is_empty() || !mem.client_urls.is_empty() {
            let mut a = Map::new();
            if !mem.name.is_empty() {
                a.insert("name".into(), json!(mem.name));
            }
            if !mem.client_urls.is_empty() {
                a.insert("clientURLs".into(), json!(mem.client_urls));
            }
            kids.insert(
                "attributes".into(),
                kv(
                    format!("{base}/attributes"),
                    index,
                    Value::Object(a).to_string(),
                ),
            );
        }
        kids.insert(
            "raftAttributes".into(),
            kv(
                format!("{base}/raftAttributes"),
                index,
                Value::Object(ra).to_string(),
            ),
        );
        members.insert(hex, dir(base, index, kids));
    }
    let mut removed = Map::new();
    let mut ids = m.removed.clone();
    ids.sort_by_key(|id| format!("{id:x}"));
    for id in ids {
        let hex = format!("{id:x}");
        removed.insert(
            hex.clone(),
            kv(format!("/0/removed_members/{hex}"), index, String::new()),
        );
    }
    let mut cluster = Map::new();
    cluster.insert("members".into(), dir("/0/members".into(), index, members));
    if !removed.is_empty() {
        cluster.insert(
            "removed_members".into(),
            dir("/0/removed_members".into(), index, removed),
        );
    }
    if let Some(v) = &m.cluster_version {
        cluster.insert("version".into(), kv("/0/version".into(), index, v.clone()));
    }
    let mut top = Map::new();
    top.insert("0".into(), dir("/0".into(), 0, cluster));
    top.insert("1".into(), dir("/1".into(), 0, Map::new()));
    let stats = json!({
        "getsSuccess": 0, "getsFail": 0, "setsSuccess": 0, "setsFail": 0,
        "deleteSuccess": 0, "deleteFail": 0, "updateSuccess": 0, "updateFail": 0,
        "createSuccess": 0, "createFail": 0, "compareAndSwapSuccess": 0,
        "compareAndSwapFail": 0, "compareAndDeleteSuccess": 0,
        "compareAndDeleteFail": 0, "expireCount": 0, "watchers": 0,
    });
    let store = json!({
        "Root": dir("/".into(), 0, top),
        "WatcherHub": {
            "EventHistory": {
                "Queue": {
                    "Events": vec![Value::Null; 1000],
                    "Size": 0, "Front": 0, "Back": 0, "Capacity": 1000,
                },
                "StartIndex": 0,
                "LastIndex": 0,
            }
        },
        "CurrentIndex": index,
        "Stats": stats,
        "CurrentVersion": 2,
    });
    store.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = V2Membership {
            members: vec![
                V2Member {
                    id: 0x8e9e05c52164694d,
                    name: "default".into(),
                    peer_urls: vec!["http://127.0.0.1:2380".into()],
                    client_urls: vec!["http://127.0.0.1:2379".into()],
                    is_learner: false,
                },
                V2Member {
                    id: 0x1234,
                    name: String::new(),
                    peer_urls: vec!["http://10.0.0.2:2380".into()],
                    client_urls: vec![],
                    is_learner: true,
                },
            ],
            removed: vec![0xabc],
            cluster_version: Some("3.5.0".into()),
        };
        let j = to_v2_store_json(&m, 42);
        let back = parse_v2_store(&j).unwrap();
        let mut want = m.clone();
        want.members.sort_by_key(|x| format!("{:x}", x.id));
        assert_eq!(back, want);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for s in ["", "{", "[]", "{\"Root\":1}", "{\"Root\":{\"Children\":{\"0\":{\"Children\":{\"members\":{\"Children\":{\"zz\":{}}}}}}}}"] {
            let _ = parse_v2_store(s.as_bytes());
        }
        assert!(parse_v2_store(b"{}").is_err());
        assert_eq!(
            parse_v2_store(b"{\"Root\":{}}").unwrap(),
            V2Membership::default()
        );
    }
}
