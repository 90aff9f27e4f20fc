//! [`Wal`]: creating, opening, appending to and releasing the segmented log.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use protobuf::Message;
use raft::eraftpb::{Entry, HardState};

use crate::error::IoContext;
use crate::record::{self, RecordType, SegmentHeader};
use crate::replay::{Replay, SegmentEnd};
use crate::segment::{self, Segment, SegmentName, TMP_SUFFIX};
use crate::{Error, ReadState, Result, WalSnapshot};

/// Size at which the tail is cut into a new segment, and the size segments are
/// preallocated to.
pub const DEFAULT_SEGMENT_SIZE_BYTES: u64 = 64 << 20;

/// A sync slower than this is logged: the disk is too slow for raft's timeouts.
const SLOW_SYNC: Duration = Duration::from_secs(1);

/// The write-ahead log of one member, open for appending.
///
/// Holds an exclusive lock on the tail segment, so a second process cannot append to the
/// same log.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    /// Every segment in the directory, in order; the last one is the tail.
    segments: Vec<Segment>,
    /// The tail, positioned at `offset`.
    tail: File,
    /// Where the next record goes in the tail.
    offset: u64,
    /// Data crc of the last record written: the seed of the next one.
    chain_crc: u32,
    metadata: Vec<u8>,
    /// The last hard state saved; repeated at the start of each new segment.
    hard_state: HardState,
    last_index: u64,
    segment_size: u64,
    /// Reused encoding buffers.
    buf: Vec<u8>,
    scratch: Vec<u8>,
    /// Set when a write or sync failed; the log refuses further use.
    poisoned: Option<String>,
    /// Bytes appended to segments since the log was opened.
    bytes_written: u64,
    /// How long the last `save` spent in fdatasync (None: it did not sync).
    last_sync: Option<Duration>,
}

/// The log's segments in order (checked to follow each other) and the index
/// of the one holding `snap`, where reading starts.
fn segments_from(dir: &Path, snap: WalSnapshot) -> Result<(Vec<segment::Segment>, usize)> {
    let segments = segment::list_segments(dir)?;
    let Some(first) = segments.first() else {
        return Err(Error::NotFound {
            dir: dir.to_path_buf(),
        });
    };
    let oldest_first_index = first.name.first_index;
    segment::check_sequence(dir, &segments)?;
    let start = segments
        .iter()
        .rposition(|s| s.name.first_index <= snap.index)
        .ok_or_else(|| Error::SnapshotNotCovered {
            dir: dir.to_path_buf(),
            index: snap.index,
            oldest_first_index,
        })?;
    Ok((segments, start))
}

impl Wal {
    /// Whether `dir` holds at least one segment.
    pub fn exists(dir: &Path) -> bool {
        segment::list_segments(dir).is_ok_and(|s| !s.is_empty())
    }

    /// Creates a new log in `dir`, which must not exist or be empty.
    ///
    /// The first segment is written into a sibling temporary directory that is renamed to
    /// `dir` once it is synced, so a crash never leaves a half-created log behind.
    pub fn create(dir: &Path, metadata: &[u8]) -> Result<Wal> {
        if dir.exists() {
            if !segment::file_names(dir)?.is_empty() {
                return Err(Error::AlreadyExists {
                    dir: dir.to_path_buf(),
                });
            }
            fs::remove_dir(dir).context(|| format!("remove empty directory {}", dir.display()))?;
        }
        let file_name = dir.file_name().ok_or_else(|| Error::Io {
            context: format!("create log in {}", dir.display()),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the path has no final component",
            ),
        })?;
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).context(|| format!("create {}", parent.display()))?;

        let mut tmp_name = file_name.to_os_string();
        tmp_name.push(TMP_SUFFIX);
        let tmp_dir = parent.join(tmp_name);
        if tmp_dir.exists() {
            fs::remove_dir_all(&tmp_dir)
                .context(|| format!("remove leftover {}", tmp_dir.display()))?;
        }
        fs::create_dir_all(&tmp_dir).context(|| format!("create {}", tmp_dir.display()))?;

        let name = SegmentName {
            seq: 0,
            first_index: 0,
        };
        let tmp_path = tmp_dir.join(name.file_name());
        let mut file = segment::open_locked(&tmp_path, true)?;
        segment::preallocate(&file, DEFAULT_SEGMENT_SIZE_BYTES, &tmp_path)?;
        let header = SegmentHeader {
            seq: 0,
            first_index: 0,
            prev_crc: 0,
        };
        let (buf, chain_crc) = segment_start(header, metadata, None)?;
        file.write_all(&buf)
            .and_then(|()| file.sync_all())
            .context(|| format!("write {}", tmp_path.display()))?;
        segment::sync_dir(&tmp_dir)?;
        fs::rename(&tmp_dir, dir)
            .context(|| format!("rename {} to {}", tmp_dir.display(), dir.display()))?;
        segment::sync_dir(&parent)?;
        tracing::info!(dir = %dir.display(), "wal: created a new log");

        Ok(Wal {
            dir: dir.to_path_buf(),
            segments: vec![Segment {
                name,
                path: dir.join(name.file_name()),
            }],
            tail: file,
            offset: buf.len() as u64,
            chain_crc,
            metadata: metadata.to_vec(),
            hard_state: HardState::default(),
            last_index: 0,
            segment_size: DEFAULT_SEGMENT_SIZE_BYTES,
            buf: Vec::new(),
            scratch: Vec::new(),
            poisoned: None,
            bytes_written: 0,
            last_sync: None,
        })
    }

    /// Opens the log in `dir` for appending and reads back what raft needs to restart from
    /// the snapshot `snap`: the entries after it, the last hard state and the metadata.
    ///
    /// Unless `snap.index` is 0 the log must hold a snapshot marker for `snap`. A torn write
    /// at the end of the last segment is cut off (see the crate docs); any other damage is
    /// [`Error::Corrupt`].
    pub fn open(dir: &Path, snap: WalSnapshot) -> Result<(Wal, ReadState)> {
        let (segments, start) = segments_from(dir, snap)?;
        let Some(last) = segments.last() else {
            return Err(Error::NotFound {
                dir: dir.to_path_buf(),
            });
        };

        // Lock before reading, so nobody appends while we decide where the log ends.
        let mut tail = segment::open_locked(&last.path, false)?;
        segment::remove_stale_tmp(dir)?;

        let mut replay = Replay::new(dir, snap);
        for seg in &segments[start..segments.len() - 1] {
            let buf = fs::read(&seg.path).context(|| format!("read {}", seg.path.display()))?;
            replay.read_segment(seg.name, &seg.path, &buf, false)?;
        }
        let mut buf = Vec::new();
        tail.read_to_end(&mut buf)
            .context(|| format!("read {}", last.path.display()))?;
        let end = replay.read_segment(last.name, &last.path, &buf, true)?;
        let file_len = buf.len() as u64;
        drop(buf);

        if snap.index != 0 && !replay.snapshot_found {
            return Err(Error::SnapshotNotFound {
                dir: dir.to_path_buf(),
                index: snap.index,
                term: snap.term,
            });
        }
        let Some(metadata) = replay.metadata else {
            return Err(Error::Corrupt {
                path: segments[start].path.clone(),
                offset: 0,
                reason: "no metadata record".to_string(),
            });
        };
        let repaired_tail_bytes = match end.torn {
            Some(torn) => {
                repair_tail(&tail, &last.path, torn.offset, file_len)?;
                torn.bytes
            }
            None => 0,
        };
        let SegmentEnd {
            valid_len,
            last_crc,
            ..
        } = end;
        tail.seek(SeekFrom::Start(valid_len))
            .context(|| format!("seek in {}", last.path.display()))?;

        let wal = Wal {
            dir: dir.to_path_buf(),
            segments,
            tail,
            offset: valid_len,
            chain_crc: last_crc,
            metadata: metadata.clone(),
            hard_state: replay.hard_state.clone(),
            last_index: replay.last_index,
            segment_size: DEFAULT_SEGMENT_SIZE_BYTES,
            buf: Vec::new(),
            scratch: Vec::new(),
            poisoned: None,
            bytes_written: 0,
            last_sync: None,
        };
        let state = ReadState {
            metadata,
            hard_state: replay.hard_state,
            entries: replay.entries,
            repaired_tail_bytes,
        };
        Ok((wal, state))
    }

    /// Reads the log in `dir` from the snapshot `snap` as [`Wal::open`] does, without
    /// opening it for appending: no lock, no repair, nothing written (offline tools such
    /// as `etcdutl migrate` read a stopped member's log this way). A torn write at the end
    /// of the last segment ends the read; `repaired_tail_bytes` tells how many bytes a
    /// later [`Wal::open`] would cut off.
    pub fn read(dir: &Path, snap: WalSnapshot) -> Result<ReadState> {
        let (segments, start) = segments_from(dir, snap)?;
        let mut replay = Replay::new(dir, snap);
        let mut torn_bytes = 0;
        for (i, seg) in segments.iter().enumerate().skip(start) {
            let buf = fs::read(&seg.path).context(|| format!("read {}", seg.path.display()))?;
            let is_last = i + 1 == segments.len();
            let end = replay.read_segment(seg.name, &seg.path, &buf, is_last)?;
            torn_bytes = end.torn.map_or(0, |t| t.bytes);
        }
        if snap.index != 0 && !replay.snapshot_found {
            return Err(Error::SnapshotNotFound {
                dir: dir.to_path_buf(),
                index: snap.index,
                term: snap.term,
            });
        }
        let Some(metadata) = replay.metadata else {
            return Err(Error::Corrupt {
                path: segments[start].path.clone(),
                offset: 0,
                reason: "no metadata record".to_string(),
            });
        };
        Ok(ReadState {
            metadata,
            hard_state: replay.hard_state,
            entries: replay.entries,
            repaired_tail_bytes: torn_bytes,
        })
    }

    /// Appends `entries` and then `hard_state`, and returns once they are on stable storage
    /// (one `fdatasync`). No sync is done when there was nothing to write, or when only
    /// the commit index of the hard state moved (it may trail after a crash). Cuts a new
    /// segment when the tail has grown past the segment size.
    pub fn save(&mut self, hard_state: Option<&HardState>, entries: &[Entry]) -> Result<()> {
        self.check_poisoned()?;
        self.last_sync = None;
        if hard_state.is_none() && entries.is_empty() {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut crc = self.chain_crc;
        let encoded = (|| {
            for entry in entries {
                self.scratch.clear();
                entry
                    .write_to_vec(&mut self.scratch)
                    .map_err(|source| Error::Encode {
                        what: "entry",
                        source,
                    })?;
                crc = record::encode(&mut buf, RecordType::Entry, &self.scratch, crc)?;
            }
            if let Some(hs) = hard_state {
                let payload = encode_hard_state(hs)?;
                crc = record::encode(&mut buf, RecordType::HardState, &payload, crc)?;
            }
            Ok(())
        })();
        // Nothing has reached the disk if encoding failed: the log is unchanged.
        if let Err(e) = encoded {
            self.buf = buf;
            return Err(e);
        }
        // As etcd (raft's MustSync): only new entries or a new term or vote
        // must be durable before anyone acts on them. A commit index that
        // moved alone may be lost in a crash: it is re-derived on restart.
        let must_sync = !entries.is_empty()
            || hard_state.is_some_and(|hs| {
                hs.term != self.hard_state.term || hs.vote != self.hard_state.vote
            });
        let written = self.append(&buf, crc);
        self.buf = buf;
        written?;

        if let Some(entry) = entries.last() {
            self.last_index = entry.index;
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs.clone();
        }
        if self.offset >= self.segment_size {
            // Cutting syncs the batch just written with the old tail.
            let started = Instant::now();
            let cut = self.cut();
            self.last_sync = Some(started.elapsed());
            cut
        } else if must_sync {
            self.sync()
        } else {
            Ok(())
        }
    }

    /// Records that a snapshot at `snap` was saved, and syncs.
    pub fn save_snapshot(&mut self, snap: WalSnapshot) -> Result<()> {
        self.check_poisoned()?;
        let mut buf = Vec::with_capacity(record::frame_len(16));
        let payload = record::encode_snapshot_marker(snap);
        let crc = record::encode(&mut buf, RecordType::Snapshot, &payload, self.chain_crc)?;
        self.append(&buf, crc)?;
        self.last_index = self.last_index.max(snap.index);
        self.sync()
    }

    /// Deletes the segments that hold only entries below `index`: every segment before
    /// the one `index` falls in. That segment and the later ones stay, and so does the tail.
    pub fn release_to(&mut self, index: u64) -> Result<()> {
        self.check_poisoned()?;
        let keep_from = self
            .segments
            .iter()
            .rposition(|s| s.name.first_index <= index)
            .unwrap_or(0);
        if keep_from == 0 {
            return Ok(());
        }
        let mut removed = 0;
        let mut result = Ok(());
        for seg in &self.segments[..keep_from] {
            if let Err(e) =
                fs::remove_file(&seg.path).context(|| format!("remove {}", seg.path.display()))
            {
                result = Err(e);
                break;
            }
            tracing::debug!(file = %seg.path.display(), "wal: released segment");
            removed += 1;
        }
        self.segments.drain(..removed);
        if removed > 0 {
            segment::sync_dir(&self.dir)?;
        }
        result
    }

    /// Sets the size at which the tail is cut (default 64 MiB). Applies to the next cut;
    /// new segments are preallocated to this size.
    pub fn segment_size_bytes(&mut self, n: u64) {
        self.segment_size = n;
    }

    /// Index of the last entry in the log (or of the latest snapshot, if that is later).
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// Bytes of records appended since the log was opened (etcd's
    /// `wal_write_bytes_total`).
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// The time the last `save` spent in fdatasync; `None` when it did not
    /// sync (etcd's `wal_fsync_duration_seconds` observes these).
    pub fn last_sync_duration(&self) -> Option<Duration> {
        self.last_sync
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(reason) => Err(Error::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records the first failure of a write or sync: from here on the log refuses use.
    fn guard<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            self.poisoned = Some(e.to_string());
        }
        result
    }

    fn tail_path(&self) -> &Path {
        // `segments` is never empty: create and open start with one, release keeps the tail.
        self.segments.last().map_or(self.dir.as_path(), |s| &s.path)
    }

    /// Writes encoded records at the end of the tail (not synced).
    fn append(&mut self, buf: &[u8], crc: u32) -> Result<()> {
        let result = self
            .tail
            .write_all(buf)
            .context(|| format!("write {}", self.tail_path().display()));
        self.guard(result)?;
        self.offset += buf.len() as u64;
        self.bytes_written += buf.len() as u64;
        self.chain_crc = crc;
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        let started = Instant::now();
        let result = self
            .tail
            .sync_data()
            .context(|| format!("fdatasync {}", self.tail_path().display()));
        self.guard(result)?;
        let took = started.elapsed();
        self.last_sync = Some(took);
        if took > SLOW_SYNC {
            tracing::warn!(file = %self.tail_path().display(), took = ?took, "wal: slow fdatasync");
        }
        Ok(())
    }

    fn cut(&mut self) -> Result<()> {
        let result = self.cut_inner();
        self.guard(result)
    }

    /// Closes the tail at its data and starts the next segment. The new segment is written
    /// and synced under a temporary name and renamed into place, so a crash leaves either
    /// the old tail or a complete new one.
    fn cut_inner(&mut self) -> Result<()> {
        let old_path = self.tail_path().to_path_buf();
        let old = self.segments.last().map(|s| s.name).unwrap_or(SegmentName {
            seq: 0,
            first_index: 0,
        });
        // Drop the preallocated rest and make the batch just written durable.
        self.tail
            .set_len(self.offset)
            .and_then(|()| self.tail.sync_all())
            .context(|| format!("truncate and sync {}", old_path.display()))?;

        let name = SegmentName {
            seq: old.seq + 1,
            first_index: self.last_index.saturating_add(1),
        };
        let path = self.dir.join(name.file_name());
        let tmp_path = self.dir.join(format!("{}{TMP_SUFFIX}", name.file_name()));
        if tmp_path.exists() {
            fs::remove_file(&tmp_path).context(|| format!("remove {}", tmp_path.display()))?;
        }
        let mut file = segment::open_locked(&tmp_path, true)?;
        segment::preallocate(&file, self.segment_size, &tmp_path)?;
        let header = SegmentHeader {
            seq: name.seq,
            first_index: name.first_index,
            prev_crc: self.chain_crc,
        };
        let (buf, crc) = segment_start(header, &self.metadata, Some(&self.hard_state))?;
        file.write_all(&buf)
            .and_then(|()| file.sync_all())
            .context(|| format!("write {}", tmp_path.display()))?;
        fs::rename(&tmp_path, &path)
            .context(|| format!("rename {} to {}", tmp_path.display(), path.display()))?;
        segment::sync_dir(&self.dir)?;

        tracing::info!(file = %path.display(), "wal: cut a new segment");
        self.tail = file;
        self.offset = buf.len() as u64;
        self.chain_crc = crc;
        self.segments.push(Segment { name, path });
        Ok(())
    }
}

/// The records every segment starts with: header, metadata and (after the first) the
/// latest hard state, so that older segments can be released without losing them.
fn segment_start(
    header: SegmentHeader,
    metadata: &[u8],
    hard_state: Option<&HardState>,
) -> Result<(Vec<u8>, u32)> {
    let mut buf = Vec::new();
    let mut crc = record::encode(&mut buf, RecordType::SegmentHeader, &header.encode(), 0)?;
    crc = record::encode(&mut buf, RecordType::Metadata, metadata, crc)?;
    if let Some(hs) = hard_state {
        crc = record::encode(
            &mut buf,
            RecordType::HardState,
            &encode_hard_state(hs)?,
            crc,
        )?;
    }
    Ok((buf, crc))
}

fn encode_hard_state(hs: &HardState) -> Result<Vec<u8>> {
    hs.write_to_bytes().map_err(|source| Error::Encode {
        what: "hard state",
        source,
    })
}

/// Cuts a torn write off the tail: truncates at `offset`, restores the preallocated size
/// (the file system zero-fills it) and syncs.
fn repair_tail(tail: &File, path: &Path, offset: u64, file_len: u64) -> Result<()> {
    tail.set_len(offset)
        .context(|| format!("truncate {} at {offset}", path.display()))?;
    segment::preallocate(tail, file_len, path)?;
    tail.sync_all()
        .context(|| format!("sync {} after repair", path.display()))
}
