//! Raft log entries, etcd's to ours and ours to etcd's.
//!
//! Both logs hold raftpb entries with the same wire layout; what differs is
//! a few payloads:
//!
//! ```text
//!  etcd (3.4 / 3.5)                              ours
//!  ConfChange AddNode / AddLearnerNode (3),      ConfChange AddNode / AddLearnerNode (2),
//!    context: member JSON                          context: etcdserverpb.Member (protobuf)
//!  ConfChange RemoveNode                         ConfChange RemoveNode
//!  ConfChange UpdateNode (2), member JSON        normal entry: InternalRaftRequest.member_update
//!  normal: InternalRaftRequest                   normal: the same bytes
//!  normal: v2 Request PUT /0/members/<id>/attributes   ClusterMemberAttrSetRequest
//!  normal: v2 Request PUT /0/version             ClusterVersionSetRequest
//!  normal: any other v2 Request (v2 keys, SYNC)  an empty normal entry (nothing to apply)
//! ```
//!
//! InternalRaftRequest bytes are kept as they are in both directions: the
//! field numbers are etcd's, and fields one side does not know (etcd's auth
//! requests here, our `server_version` attribute there) are skipped by the
//! other's decoder, as protobuf wants. Index and term never change, so the
//! log's shape (and raft's view of it) is the same on both sides.
//!
//! Left out: ConfChangeV2 entries (neither etcd 3.4-3.6 nor we write them:
//! refused), and going back to etcd 3.4 (its log would need v2 requests for
//! what 3.5 applies as v3 requests, and our members speak 3.6).

use anyhow::{bail, Context, Result};
use api::etcdserverpb::{
    Attributes, ClusterMemberAttrSetRequest, ClusterVersionSetRequest, InternalRaftRequest, Member,
    MemberUpdateRequest,
};
use etcdfmt::raftpb::{self, ConfChangeType as EtcdCc, EntryType as EtcdType};
use etcdfmt::schema::MemberJson;
use prost::Message;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType};

/// etcd's v2 `etcdserverpb.Request`: the fields a v2 write carries that we
/// read (etcd 3.4 and 3.5 still publish member attributes and the cluster
/// version this way).
#[derive(Clone, PartialEq, Message)]
pub struct V2Request {
    #[prost(uint64, optional, tag = "1")]
    pub id: Option<u64>,
    #[prost(string, optional, tag = "2")]
    pub method: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub path: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub val: Option<String>,
}

/// etcd's membership.Attributes, as v2 requests carry it.
#[derive(serde::Deserialize)]
struct AttributesJson {
    #[serde(default)]
    name: String,
    #[serde(rename = "clientURLs", default)]
    client_urls: Vec<String>,
}

/// What translating a log found worth reporting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Translated {
    /// v2 requests with nothing to apply for us (v2 keys, TTL syncs).
    pub v2_dropped: u64,
}

/// One of etcd's entries as ours.
pub fn from_etcd(e: &raftpb::Entry, report: &mut Translated) -> Result<Entry> {
    let mut out = Entry {
        term: e.term,
        index: e.index,
        ..Default::default()
    };
    let data = e.data.as_deref().unwrap_or_default();
    match EtcdType::try_from(e.r#type) {
        Ok(EtcdType::Normal) => {
            out.set_entry_type(EntryType::EntryNormal);
            out.data = normal_from_etcd(data, report)
                .with_context(|| format!("entry {} (term {})", e.index, e.term))?
                .into();
        }
        Ok(EtcdType::ConfChange) => {
            let cc = raftpb::ConfChange::decode(data)
                .with_context(|| format!("entry {}: etcd conf change", e.index))?;
            match conf_change_from_etcd(&cc)
                .with_context(|| format!("entry {}: etcd conf change", e.index))?
            {
                Translation::ConfChange(ours) => {
                    out.set_entry_type(EntryType::EntryConfChange);
                    out.data = protobuf::Message::write_to_bytes(&ours)
                        .context("encode a conf change")?
                        .into();
                }
                Translation::Normal(data) => {
                    out.set_entry_type(EntryType::EntryNormal);
                    out.data = data.into();
                }
            }
        }
        Ok(EtcdType::ConfChangeV2) | Err(_) => bail!(
            "entry {} has type {}, which etcd 3.4-3.6 never write: refusing to convert it",
            e.index,
            e.r#type
        ),
    }
    Ok(out)
}

enum Translation {
    ConfChange(ConfChange),
    Normal(Vec<u8>),
}

fn normal_from_etcd(data: &[u8], report: &mut Translated) -> Result<Vec<u8>> {
    if data.is_empty() || InternalRaftRequest::decode(data).is_ok() {
        return Ok(data.to_vec());
    }
    // etcd's own rule: what does not decode as InternalRaftRequest is a v2 Request.
    let v2 = V2Request::decode(data).context("neither a v3 nor a v2 request")?;
    let path = v2.path.as_deref().unwrap_or_default();
    let id = v2.id.unwrap_or_default();
    let put = v2.method.as_deref() == Some("PUT");
    if let (true, Some(member)) = (put, member_attributes_path(path)) {
        let attrs: AttributesJson = serde_json::from_str(v2.val.as_deref().unwrap_or_default())
            .with_context(|| format!("v2 attributes of member {member:x}"))?;
        let req = InternalRaftRequest {
            id,
            cluster_member_attr_set: Some(ClusterMemberAttrSetRequest {
                member_id: member,
                member_attributes: Some(Attributes {
                    name: attrs.name,
                    client_urls: attrs.client_urls,
                    server_version: String::new(),
                }),
            }),
            ..Default::default()
        };
        return Ok(req.encode_to_vec());
    }
    if put && path == "/0/version" {
        let req = InternalRaftRequest {
            id,
            cluster_version_set: Some(ClusterVersionSetRequest {
                ver: v2.val.unwrap_or_default(),
            }),
            ..Default::default()
        };
        return Ok(req.encode_to_vec());
    }
    report.v2_dropped += 1;
    Ok(Vec::new())
}

/// The member ID of `/0/members/<hex id>/attributes`.
fn member_attributes_path(path: &str) -> Option<u64> {
    let id = path
        .strip_prefix("/0/members/")?
        .strip_suffix("/attributes")?;
    u64::from_str_radix(id, 16).ok()
}

fn member_from_json(context: &[u8]) -> Result<Member> {
    let m: MemberJson = serde_json::from_slice(context).context("member JSON")?;
    Ok(super::member_from_json(m))
}

fn conf_change_from_etcd(cc: &raftpb::ConfChange) -> Result<Translation> {
    let context = cc.context.as_deref().unwrap_or_default();
    let mut ours = ConfChange {
        id: cc.id,
        node_id: cc.node_id,
        ..Default::default()
    };
    let kind = EtcdCc::try_from(cc.r#type)
        .map_err(|_| anyhow::anyhow!("unknown conf change type {}", cc.r#type))?;
    match kind {
        EtcdCc::AddNode | EtcdCc::AddLearnerNode => {
            ours.set_change_type(if kind == EtcdCc::AddNode {
                ConfChangeType::AddNode
            } else {
                ConfChangeType::AddLearnerNode
            });
            ours.context = member_from_json(context)?.encode_to_vec().into();
        }
        EtcdCc::RemoveNode => {
            ours.set_change_type(ConfChangeType::RemoveNode);
            ours.context = context.to_vec().into();
        }
        EtcdCc::UpdateNode => {
            let m = member_from_json(context)?;
            let req = InternalRaftRequest {
                id: cc.id,
                member_update: Some(MemberUpdateRequest {
                    id: cc.node_id,
                    peer_ur_ls: m.peer_ur_ls,
                }),
                ..Default::default()
            };
            return Ok(Translation::Normal(req.encode_to_vec()));
        }
    }
    Ok(Translation::ConfChange(ours))
}

/// One of our entries as etcd 3.5 applies it.
pub fn to_etcd(e: &Entry) -> Result<raftpb::Entry> {
    let mut out = raftpb::Entry {
        r#type: EtcdType::Normal as i32,
        term: e.term,
        index: e.index,
        data: None,
    };
    let data: &[u8] = &e.data;
    match e.get_entry_type() {
        EntryType::EntryNormal => {
            if data.is_empty() {
                return Ok(out);
            }
            let req = InternalRaftRequest::decode(data)
                .with_context(|| format!("entry {}: not an InternalRaftRequest", e.index))?;
            if let Some(update) = req.member_update {
                let context = MemberJson {
                    id: update.id,
                    peer_urls: update.peer_ur_ls,
                    ..Default::default()
                };
                let cc = raftpb::ConfChange {
                    id: req.id,
                    r#type: EtcdCc::UpdateNode as i32,
                    node_id: update.id,
                    context: Some(serde_json::to_vec(&context).context("member JSON")?),
                };
                out.r#type = EtcdType::ConfChange as i32;
                out.data = Some(cc.encode_to_vec());
            } else {
                out.data = Some(data.to_vec());
            }
        }
        EntryType::EntryConfChange => {
            let cc: ConfChange = protobuf::Message::parse_from_bytes(data)
                .with_context(|| format!("entry {}: conf change", e.index))?;
            let (kind, context) = match cc.get_change_type() {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    let m = Member::decode(&cc.context[..])
                        .with_context(|| format!("entry {}: member", e.index))?;
                    let json = super::member_to_json(m);
                    let kind = if cc.get_change_type() == ConfChangeType::AddNode {
                        EtcdCc::AddNode
                    } else {
                        EtcdCc::AddLearnerNode
                    };
                    (
                        kind,
                        Some(serde_json::to_vec(&json).context("member JSON")?),
                    )
                }
                ConfChangeType::RemoveNode => (EtcdCc::RemoveNode, None),
            };
            let etcd_cc = raftpb::ConfChange {
                id: cc.id,
                r#type: kind as i32,
                node_id: cc.node_id,
                context,
            };
            out.r#type = EtcdType::ConfChange as i32;
            out.data = Some(etcd_cc.encode_to_vec());
        }
        EntryType::EntryConfChangeV2 => bail!(
            "entry {} is a ConfChangeV2, which etcd-rs never writes",
            e.index
        ),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etcd_entry(kind: EtcdType, index: u64, data: Vec<u8>) -> raftpb::Entry {
        raftpb::Entry {
            r#type: kind as i32,
            term: 3,
            index,
            data: Some(data),
        }
    }

    fn etcd_cc(kind: EtcdCc, node: u64, context: &str) -> Vec<u8> {
        raftpb::ConfChange {
            id: 9,
            r#type: kind as i32,
            node_id: node,
            context: (!context.is_empty()).then(|| context.as_bytes().to_vec()),
        }
        .encode_to_vec()
    }

    #[test]
    fn conf_changes_round_trip() {
        let member = r#"{"id":10276657743932975437,"peerURLs":["http://localhost:2380"],"name":"default","clientURLs":["http://localhost:2379"]}"#;
        let learner = r#"{"id":7,"peerURLs":["http://b:2380"],"isLearner":true}"#;
        let cases = [
            (EtcdCc::AddNode, 10276657743932975437, member),
            (EtcdCc::AddLearnerNode, 7, learner),
            (EtcdCc::RemoveNode, 7, ""),
        ];
        for (kind, node, context) in cases {
            let etcd = etcd_entry(EtcdType::ConfChange, 5, etcd_cc(kind, node, context));
            let mut report = Translated::default();
            let ours = from_etcd(&etcd, &mut report).unwrap();
            assert_eq!(ours.get_entry_type(), EntryType::EntryConfChange);
            let cc: ConfChange = protobuf::Message::parse_from_bytes(&ours.data).unwrap();
            assert_eq!(cc.node_id, node);
            if kind != EtcdCc::RemoveNode {
                let m = Member::decode(&cc.context[..]).unwrap();
                assert_eq!(m.id, node);
                assert_eq!(m.is_learner, kind == EtcdCc::AddLearnerNode);
            }
            // And back: the same bytes etcd wrote.
            assert_eq!(to_etcd(&ours).unwrap(), etcd, "{kind:?}");
        }
    }

    #[test]
    fn member_update_becomes_a_normal_entry_and_back() {
        let context = r#"{"id":7,"peerURLs":["http://c:2380"]}"#;
        let etcd = etcd_entry(
            EtcdType::ConfChange,
            6,
            etcd_cc(EtcdCc::UpdateNode, 7, context),
        );
        let ours = from_etcd(&etcd, &mut Translated::default()).unwrap();
        assert_eq!(ours.get_entry_type(), EntryType::EntryNormal);
        let req = InternalRaftRequest::decode(&ours.data[..]).unwrap();
        let update = req.member_update.unwrap();
        assert_eq!(
            (update.id, update.peer_ur_ls),
            (7, vec!["http://c:2380".to_string()])
        );
        assert_eq!(to_etcd(&ours).unwrap(), etcd);
    }

    #[test]
    fn v2_requests_become_cluster_requests_or_nothing() {
        let v2 = |path: &str, val: &str| {
            V2Request {
                id: Some(77),
                method: Some("PUT".into()),
                path: Some(path.into()),
                val: Some(val.into()),
            }
            .encode_to_vec()
        };
        let mut report = Translated::default();
        let attrs = v2(
            "/0/members/8e9e05c52164694d/attributes",
            r#"{"name":"default","clientURLs":["http://localhost:2379"]}"#,
        );
        // The v2 bytes do not decode as InternalRaftRequest (etcd's rule).
        assert!(InternalRaftRequest::decode(&attrs[..]).is_err());
        let ours = from_etcd(&etcd_entry(EtcdType::Normal, 2, attrs), &mut report).unwrap();
        let req = InternalRaftRequest::decode(&ours.data[..]).unwrap();
        let set = req.cluster_member_attr_set.unwrap();
        assert_eq!(set.member_id, 0x8e9e05c52164694d);
        assert_eq!(set.member_attributes.unwrap().name, "default");

        let version = from_etcd(
            &etcd_entry(EtcdType::Normal, 3, v2("/0/version", "3.5.0")),
            &mut report,
        )
        .unwrap();
        let req = InternalRaftRequest::decode(&version.data[..]).unwrap();
        assert_eq!(req.cluster_version_set.unwrap().ver, "3.5.0");

        let key = from_etcd(
            &etcd_entry(EtcdType::Normal, 4, v2("/1/foo", "bar")),
            &mut report,
        )
        .unwrap();
        assert!(key.data.is_empty());
        assert_eq!(report.v2_dropped, 1);
    }

    #[test]
    fn v3_requests_keep_their_bytes_and_v2_entries_are_refused() {
        let put = InternalRaftRequest {
            id: 5,
            put: Some(api::etcdserverpb::PutRequest {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let etcd = etcd_entry(EtcdType::Normal, 8, put.clone());
        let ours = from_etcd(&etcd, &mut Translated::default()).unwrap();
        assert_eq!(&ours.data[..], &put[..]);
        assert_eq!(to_etcd(&ours).unwrap(), etcd);
        let empty = raftpb::Entry {
            r#type: EtcdType::Normal as i32,
            term: 2,
            index: 9,
            data: None,
        };
        let ours = from_etcd(&empty, &mut Translated::default()).unwrap();
        assert_eq!(to_etcd(&ours).unwrap(), empty);
        let v2cc = etcd_entry(EtcdType::ConfChangeV2, 10, vec![]);
        assert!(from_etcd(&v2cc, &mut Translated::default()).is_err());
    }
}
