//! `Maintenance.Snapshot`: what etcd streams, a bbolt file with etcd's
//! buckets and the SHA-256 of it, laid out from our backend as it streams.
//!
//! ```text
//!  handler ── Store::image_source() (one redb read txn: the point in time)
//!     │       + the cluster view (members, removed, version, downgrade job)
//!     └─▶ blocking thread: layout pass (bbolt::Plan) ─▶ write pass into ChunkWriter
//!                                          │ 32 KiB blobs, remaining_bytes
//!                                          ▼ bounded channel (CHUNKS_IN_FLIGHT)
//!          tonic pulls responses ◀──────────── … then the SHA-256 as the last blob
//! ```
//!
//! - The file is what `interchange::backend::BboltRows` yields: etcd's
//!   buckets and encodings, so the real `etcdutl`/`etcdctl snapshot
//!   restore` and status read it; its size is a multiple of the page size,
//!   so etcdctl's `size % 512 == 32` rule holds without padding.
//!
//! - Writes go on meanwhile: the read transaction holds its pages, the
//!   applier never waits for it.
//! - Memory is bounded by the channel, whatever the database size; a client
//!   that reads slowly holds the writer thread, not the server.
//! - The total is known before the first chunk (the layout pass reads every
//!   row and keeps one key per page), so every response carries
//!   `remaining_bytes`.
//! - A client that goes away ends the write pass at its next chunk and
//!   releases the read transaction; a backend error ends the stream with
//!   the error's status, as etcd returns its read error.
//! - As etcd 3.6: no header, `version` is the storage version.

use std::io::Write;
use std::time::Instant;

use api::etcdserverpb::SnapshotResponse;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tonic::Status;

use datadir::interchange::backend::{BboltRows, EtcdCluster};
use datadir::snapshot_file::STORAGE_VERSION;
use gofmt::bytes::humanize as humanize_bytes;

/// etcd's `snapshotSendBufferSize`: more than one OS page per message.
pub const SNAPSHOT_CHUNK_BYTES: usize = 32 * 1024;
/// Chunks queued between the writer thread and the gRPC stream.
const CHUNKS_IN_FLIGHT: usize = 8;

pub type SnapshotStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

/// Starts streaming a snapshot of `store` as of now, with `cluster` as
/// its membership buckets.
pub fn stream(store: &mvcc::Store, cluster: EtcdCluster) -> Result<SnapshotStream, Status> {
    let source = store.image_source().map_err(crate::status::mvcc_status)?;
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let error_tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = send_bbolt(&source, &cluster, tx) {
            match e {
                SendError::ClientGone => {
                    tracing::warn!("snapshot stream closed by the client before its end");
                }
                SendError::Backend(e) => {
                    tracing::warn!(error = %e, "failed to send database snapshot");
                    let _ = error_tx.blocking_send(Err(crate::status::mvcc_status(e)));
                }
            }
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

enum SendError {
    /// The receiving end was dropped: the client went away.
    ClientGone,
    Backend(mvcc::Error),
}

fn backend_error(e: impl std::fmt::Display) -> SendError {
    SendError::Backend(mvcc::Error::Corrupt(format!("{e:#}")))
}

/// Writes the bbolt file and its digest into `tx` as responses.
fn send_bbolt(
    source: &mvcc::ImageSource,
    cluster: &EtcdCluster,
    tx: mpsc::Sender<Result<SnapshotResponse, Status>>,
) -> Result<(), SendError> {
    let mut rows = BboltRows::new(source, cluster);
    let plan = rows.plan().map_err(backend_error)?;
    let total = plan.file_bytes();
    let start = Instant::now();
    tracing::info!(
        total_bytes = total,
        size = %humanize_bytes(total),
        storage_version = STORAGE_VERSION,
        "sending database snapshot to client"
    );
    let mut out = ChunkWriter {
        tx,
        buf: Vec::with_capacity(SNAPSHOT_CHUNK_BYTES),
        sha: Sha256::new(),
        total,
        sent: 0,
        gone: false,
    };
    let written = plan.write(&mut rows, &mut out);
    if out.gone {
        return Err(SendError::ClientGone);
    }
    written.map_err(backend_error)?;
    if out.sent + out.buf.len() as u64 != total {
        return Err(backend_error(format!(
            "the snapshot was {total} bytes when laid out and {} when written",
            out.sent + out.buf.len() as u64
        )));
    }
    out.send_buffered().map_err(|_| SendError::ClientGone)?;
    let sha = std::mem::take(&mut out.sha).finalize();
    tracing::info!(
        total_bytes = total,
        checksum_size = sha.len(),
        "sending database sha256 checksum to client"
    );
    out.send(sha.to_vec(), 0)?;
    tracing::info!(
        total_bytes = total,
        size = %humanize_bytes(total),
        took = %format!("{:?}", start.elapsed()),
        storage_version = STORAGE_VERSION,
        "successfully sent database snapshot to client"
    );
    Ok(())
}

/// Cuts what is written into 32 KiB responses, hashing every byte.
struct ChunkWriter {
    tx: mpsc::Sender<Result<SnapshotResponse, Status>>,
    buf: Vec<u8>,
    sha: Sha256,
    total: u64,
    sent: u64,
    gone: bool,
}

impl ChunkWriter {
    fn send(&mut self, blob: Vec<u8>, remaining_bytes: u64) -> Result<(), SendError> {
        let response = SnapshotResponse {
            header: None,
            remaining_bytes,
            blob,
            version: STORAGE_VERSION.to_string(),
        };
        if self.tx.blocking_send(Ok(response)).is_err() {
            self.gone = true;
            return Err(SendError::ClientGone);
        }
        Ok(())
    }

    fn send_buffered(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let blob = std::mem::replace(&mut self.buf, Vec::with_capacity(SNAPSHOT_CHUNK_BYTES));
        self.sha.update(&blob);
        self.sent += blob.len() as u64;
        let remaining = self.total.saturating_sub(self.sent);
        self.send(blob, remaining).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the snapshot stream was closed",
            )
        })
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = bytes.len().min(SNAPSHOT_CHUNK_BYTES - self.buf.len());
        self.buf.extend_from_slice(&bytes[..n]);
        if self.buf.len() == SNAPSHOT_CHUNK_BYTES {
            self.send_buffered()?;
        }
        Ok(n)
    }

    /// Sends nothing: a partial chunk goes out only at the end
    /// (`send_buffered`), so every chunk but the last is 32 KiB.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
