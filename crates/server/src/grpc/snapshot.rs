//! `Maintenance.Snapshot`: the backend image streamed as etcd streams its
//! database file.
//!
//! ```text
//!  handler ── Store::image_source() (one redb read txn: the point in time)
//!     │
//!     └─▶ blocking thread: size pass ─▶ write pass into ChunkWriter
//!                                          │ 32 KiB blobs, remaining_bytes
//!                                          ▼ bounded channel (CHUNKS_IN_FLIGHT)
//!          tonic pulls responses ◀──────────── … then zero padding to 512,
//!                                              then the SHA-256 as the last blob
//! ```
//!
//! - Writes go on meanwhile: the read transaction holds its pages, the
//!   applier never waits for it.
//! - Memory is bounded by the channel, whatever the database size; a client
//!   that reads slowly holds the writer thread, not the server.
//! - The total is known before the first chunk (a pass over the rows that
//!   writes nothing), so every response carries `remaining_bytes`.
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

use crate::snapshot_file::{humanize_bytes, padding_bytes, STORAGE_VERSION};

/// etcd's `snapshotSendBufferSize`: more than one OS page per message.
pub const SNAPSHOT_CHUNK_BYTES: usize = 32 * 1024;
/// Chunks queued between the writer thread and the gRPC stream.
const CHUNKS_IN_FLIGHT: usize = 8;

pub type SnapshotStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

/// Starts streaming a snapshot of `store` as of now.
pub fn stream(store: &mvcc::Store) -> Result<SnapshotStream, Status> {
    let source = store.image_source().map_err(crate::status::mvcc_status)?;
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let error_tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = send_image(&source, tx) {
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

/// Writes the image, its padding and its digest into `tx` as responses.
fn send_image(
    source: &mvcc::ImageSource,
    tx: mpsc::Sender<Result<SnapshotResponse, Status>>,
) -> Result<(), SendError> {
    let image_bytes = source.size().map_err(SendError::Backend)?;
    let total = image_bytes + padding_bytes(image_bytes);
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
    let written = source.write_to(&mut out);
    if out.gone {
        return Err(SendError::ClientGone);
    }
    let info = written.map_err(SendError::Backend)?;
    if info.bytes != image_bytes {
        return Err(SendError::Backend(mvcc::Error::Corrupt(format!(
            "the snapshot image was {image_bytes} bytes when sized and {} when written",
            info.bytes
        ))));
    }
    let padding = vec![0u8; padding_bytes(image_bytes) as usize];
    out.write_all(&padding)
        .and_then(|()| out.send_buffered())
        .map_err(|_| SendError::ClientGone)?;
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

    /// Sends nothing: a partial chunk goes out only after the padding
    /// (`send_buffered`), so every chunk but the last is 32 KiB.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
