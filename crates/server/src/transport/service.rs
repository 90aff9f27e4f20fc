//! The receiving side: the `Raft` gRPC service on the peer port.
//!
//! Every batch and chunk is checked (protocol version, cluster ID, addressee)
//! before anything in it is decoded; a refusal ends the call with
//! `StreamResponse.error` and is logged, at most once per interval per sender.
//! A stream's batches are handled one after another, so its messages reach
//! `deliver` in the order they were sent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use api::peerpb::raft_server::{Raft, RaftServer};
use api::peerpb::{MessageBatch, SnapshotChunk, StreamResponse};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tonic::{Request, Response, Status, Streaming};

use crate::metrics::PeerMetrics;

use super::{
    hex, Deliver, WarnLimiter, PEER_GRPC_MESSAGE_SIZE_MAX_BYTES, SERVICE_LOG_PEERS_MAX,
    SNAPSHOT_SIZE_MAX_BYTES,
};

/// The tonic service for the peer listener: checks each batch, decodes its
/// messages and hands them to `deliver`, which must not block (it runs on a
/// runtime worker). Snapshots are reassembled, their CRC-32 verified, and
/// delivered as one MsgSnapshot carrying the data.
pub fn service(
    local_id: u64,
    cluster_id: u64,
    deliver: Deliver,
    metrics: PeerMetrics,
) -> RaftServer<impl Raft> {
    RaftServer::new(PeerService {
        local_id,
        cluster_id,
        deliver,
        metrics,
        warn: Mutex::new(HashMap::new()),
    })
    .max_decoding_message_size(PEER_GRPC_MESSAGE_SIZE_MAX_BYTES)
    .max_encoding_message_size(PEER_GRPC_MESSAGE_SIZE_MAX_BYTES)
}

struct PeerService {
    local_id: u64,
    cluster_id: u64,
    deliver: Deliver,
    /// `etcd_network_peer_received_bytes_total` and snapshot receives.
    metrics: PeerMetrics,
    /// Warnings per sending member.
    warn: Mutex<HashMap<u64, WarnLimiter>>,
}

type Answer = Result<Response<StreamResponse>, Status>;

fn accepted() -> Answer {
    Ok(Response::new(StreamResponse::default()))
}

impl PeerService {
    /// Why a batch or chunk with these header fields is refused, if it is.
    fn check(&self, version: u32, cluster_id: u64, to: u64) -> Result<(), String> {
        super::check_version(version)?;
        if cluster_id != self.cluster_id {
            return Err(format!(
                "cluster ID mismatch: local {}, remote {}",
                hex(self.cluster_id),
                hex(cluster_id)
            ));
        }
        if to != self.local_id {
            return Err(format!(
                "member ID mismatch: local {}, addressed to {}",
                hex(self.local_id),
                hex(to)
            ));
        }
        Ok(())
    }

    /// Ends the call with `reason`, logged at most once per interval per sender.
    fn refuse(&self, from: u64, reason: String) -> Answer {
        let allowed = {
            let mut warn = self
                .warn
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if warn.len() >= SERVICE_LOG_PEERS_MAX && !warn.contains_key(&from) {
                warn.clear();
            }
            warn.entry(from).or_default().allow(Instant::now())
        };
        if let Some(suppressed) = allowed {
            tracing::warn!(
                local_member_id = %hex(self.local_id),
                remote_peer_id = %hex(from),
                error = %reason,
                suppressed,
                "refused a peer stream"
            );
        }
        Ok(Response::new(StreamResponse { error: reason }))
    }

    async fn receive_batches(&self, mut batches: Streaming<MessageBatch>) -> Answer {
        // The counter of the member this stream comes from.
        let mut received: Option<(u64, prometheus::IntCounter)> = None;
        loop {
            let batch = match batches.message().await {
                Ok(Some(batch)) => batch,
                Ok(None) => return accepted(),
                // The sender or its connection went away; nobody reads an answer.
                Err(status) => return Err(status),
            };
            if let Err(reason) = self.check(batch.version, batch.cluster_id, batch.to) {
                return self.refuse(batch.from, reason);
            }
            let counter = match &received {
                Some((from, counter)) if *from == batch.from => counter,
                _ => {
                    let counter = self
                        .metrics
                        .received_bytes
                        .with_label_values(&[&hex(batch.from)]);
                    &received.insert((batch.from, counter)).1
                }
            };
            let bytes: usize = batch.messages.iter().map(Vec::len).sum();
            counter.inc_by(bytes as u64);
            for encoded in &batch.messages {
                match Message::parse_from_bytes(encoded) {
                    Ok(msg) => (self.deliver)(msg),
                    Err(e) => {
                        return self.refuse(batch.from, format!("undecodable raft message: {e}"))
                    }
                }
            }
        }
    }

    async fn receive_snapshot(&self, mut chunks: Streaming<SnapshotChunk>) -> Answer {
        let mut message: Option<Message> = None;
        let mut data: Vec<u8> = Vec::new();
        let mut crc = crc32fast::Hasher::new();
        loop {
            let chunk = match chunks.message().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => {
                    let from = message.as_ref().map_or(0, |m| m.from);
                    return self.refuse(
                        from,
                        "snapshot stream ended before its last chunk".to_string(),
                    );
                }
                Err(status) => return Err(status),
            };
            if let Err(reason) = self.check(chunk.version, chunk.cluster_id, chunk.to) {
                return self.refuse(chunk.from, reason);
            }
            if message.is_none() {
                match Message::parse_from_bytes(&chunk.message) {
                    Ok(msg) if msg.get_msg_type() == MessageType::MsgSnapshot => {
                        message = Some(msg)
                    }
                    Ok(msg) => {
                        let reason = format!(
                            "first snapshot chunk carries {:?}, not MsgSnapshot",
                            msg.get_msg_type()
                        );
                        return self.refuse(chunk.from, reason);
                    }
                    Err(e) => {
                        return self
                            .refuse(chunk.from, format!("undecodable snapshot message: {e}"))
                    }
                }
            }
            if data.len() as u64 + chunk.data.len() as u64 > SNAPSHOT_SIZE_MAX_BYTES {
                return self.refuse(
                    chunk.from,
                    format!("snapshot larger than {SNAPSHOT_SIZE_MAX_BYTES} bytes"),
                );
            }
            crc.update(&chunk.data);
            if data.is_empty() {
                data = chunk.data;
            } else {
                data.extend_from_slice(&chunk.data);
            }
            if !chunk.last {
                continue;
            }
            let computed = crc.finalize();
            if computed != chunk.crc32 {
                let reason = format!(
                    "snapshot CRC mismatch: computed {computed:08x}, sent {:08x}",
                    chunk.crc32
                );
                return self.refuse(chunk.from, reason);
            }
            let Some(mut msg) = message else {
                return self.refuse(chunk.from, "snapshot without its message".to_string());
            };
            let size_bytes = data.len();
            let from = [hex(chunk.from)];
            self.metrics
                .received_bytes
                .with_label_values(&from)
                .inc_by(size_bytes as u64);
            self.metrics
                .snapshot_receive_success
                .with_label_values(&from)
                .inc();
            msg.mut_snapshot().set_data(data.into());
            tracing::info!(
                local_member_id = %hex(self.local_id),
                remote_peer_id = %hex(chunk.from),
                snapshot_index = msg.get_snapshot().get_metadata().index,
                size_bytes,
                "received database snapshot"
            );
            (self.deliver)(msg);
            return accepted();
        }
    }
}

#[tonic::async_trait]
impl Raft for PeerService {
    async fn stream(&self, request: Request<Streaming<MessageBatch>>) -> Answer {
        self.receive_batches(request.into_inner()).await
    }

    async fn snapshot(&self, request: Request<Streaming<SnapshotChunk>>) -> Answer {
        self.receive_snapshot(request.into_inner()).await
    }
}
