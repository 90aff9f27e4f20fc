//! Sending a raft snapshot over `Raft.Snapshot`, on its own connection.
//!
//! ```text
//!   chunk 0:   header, message = MsgSnapshot without data, data[0 .. 1 MiB]
//!   chunk 1…:  header, data[next 1 MiB]
//!   last:      header, remaining data, last = true, crc32 = CRC-32 (IEEE) of all data
//! ```
//! (One chunk is both first and last when the data fits in it.) Chunks are cut
//! as the connection takes them, so only a chunk or two is copied at a time.

use std::time::Duration;

use api::peerpb::SnapshotChunk;
use protobuf::Message as _;
use raft::eraftpb::Message;

use super::dial::{self, error_chain, Dialer};
use super::{
    PROTOCOL_VERSION, SNAPSHOT_CHUNK_SIZE_BYTES, SNAPSHOT_SEND_TIMEOUT_BASE_MS,
    SNAPSHOT_SEND_TIMEOUT_PER_MIB_MS,
};

/// One snapshot to send.
pub(super) struct SnapshotJob {
    pub(super) local_id: u64,
    pub(super) cluster_id: u64,
    pub(super) urls: Vec<String>,
    /// A MsgSnapshot carrying the snapshot data.
    pub(super) message: Message,
    /// XORed into the CRC sent (tests corrupt it; always 0 otherwise).
    pub(super) crc_xor: u32,
    pub(super) dialer: Dialer,
}

/// Sends the snapshot to the first reachable URL; `Ok(data bytes sent)` once the
/// receiver has accepted it whole.
pub(super) async fn send(job: SnapshotJob) -> Result<u64, String> {
    let size_bytes = job.message.get_snapshot().get_data().len() as u64;
    let timeout = Duration::from_millis(
        SNAPSHOT_SEND_TIMEOUT_BASE_MS
            + SNAPSHOT_SEND_TIMEOUT_PER_MIB_MS * size_bytes.div_ceil(1024 * 1024),
    );
    match tokio::time::timeout(timeout, send_within(job)).await {
        Ok(Ok(())) => Ok(size_bytes),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("timed out after {timeout:?}")),
    }
}

async fn send_within(job: SnapshotJob) -> Result<(), String> {
    let (url, mut client) = dial::connect_any(&job.dialer, &job.urls).await?;
    let response = client
        .snapshot(tokio_stream::iter(chunks(job)?))
        .await
        .map_err(|status| format!("{url}: {}", error_chain(&status)))?
        .into_inner();
    if response.error.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{url}: peer refused the snapshot: {}",
            response.error
        ))
    }
}

/// The chunks of one snapshot, cut lazily.
pub(super) fn chunks(
    job: SnapshotJob,
) -> Result<impl Iterator<Item = SnapshotChunk> + Send + 'static, String> {
    let SnapshotJob {
        local_id,
        cluster_id,
        mut message,
        crc_xor,
        ..
    } = job;
    let to = message.to;
    let data = message.mut_snapshot().take_data();
    let header = message
        .write_to_bytes()
        .map_err(|e| format!("cannot encode snapshot message: {e}"))?;
    let count = data.len().div_ceil(SNAPSHOT_CHUNK_SIZE_BYTES).max(1);
    let mut header = Some(header);
    let mut crc = crc32fast::Hasher::new();
    Ok((0..count).map(move |i| {
        let start = i * SNAPSHOT_CHUNK_SIZE_BYTES;
        let end = (start + SNAPSHOT_CHUNK_SIZE_BYTES).min(data.len());
        let piece = data.slice(start..end);
        crc.update(&piece);
        let last = i + 1 == count;
        SnapshotChunk {
            version: PROTOCOL_VERSION,
            cluster_id,
            from: local_id,
            to,
            message: header.take().unwrap_or_default(),
            data: piece.to_vec(),
            last,
            crc32: if last {
                crc.clone().finalize() ^ crc_xor
            } else {
                0
            },
        }
    }))
}
