//! Snapshot files: what `etcdctl snapshot save` downloads from
//! `Maintenance.Snapshot`, and what `etcdutl snapshot status` and
//! `snapshot restore` read.
//!
//! ```text
//!  ┌──────────────────────────────┬──────────────────┬──────────────────────┐
//!  │ backend image (mvcc::image)  │ zero bytes up to │ SHA-256 of all bytes │
//!  │ "ETCDRSIM" … CRC-32          │ a multiple of 512│ before it (32 bytes) │
//!  └──────────────────────────────┴──────────────────┴──────────────────────┘
//! ```
//!
//! etcd streams its bbolt file, whose size is a multiple of the page size,
//! and appends the SHA-256 of it; `etcdctl snapshot save` (3.4 to 3.6) keeps
//! a download only if `size % 512 == 32` (its `hasChecksum`), and restore
//! looks for the digest by the same rule. Our image's size is arbitrary, so
//! the stream pads it with zeros to a multiple of 512 bytes before the
//! digest. Readers of the image stop at its end record; restore checks that
//! only zeros follow.
//!
//! A snapshot file may also be a raw copy of a member's `member/snap/db`
//! (etcd restores those with `--skip-hash-check`), or etcd's own bbolt
//! file (what the real `etcdctl snapshot save` downloads, and what ours
//! serves: see `grpc/snapshot.rs`): [`detect_format`] tells them apart by
//! their first bytes; bbolt files are converted by `interchange::backend`.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// etcd's sector rule: a file with a digest is `n * 512 + 32` bytes long.
pub const SECTOR_BYTES: u64 = 512;
/// Length of the SHA-256 digest at the end of a downloaded snapshot.
pub const SHA256_BYTES: u64 = 32;
/// The etcd storage version our backend schema is (what etcd 3.6 reports in
/// a snapshot's `version` and in `snapshot status`).
pub const STORAGE_VERSION: &str = "3.6.0";

/// Bytes [`detect_format`] needs to decide.
pub const FORMAT_HEAD_BYTES: usize = 20;

/// Zero bytes that pad an image of `image_bytes` to a multiple of 512.
pub fn padding_bytes(image_bytes: u64) -> u64 {
    (SECTOR_BYTES - image_bytes % SECTOR_BYTES) % SECTOR_BYTES
}

/// etcd's `hasChecksum`: whether a file of `file_bytes` ends with a digest.
pub fn has_checksum(file_bytes: u64) -> bool {
    file_bytes % SECTOR_BYTES == SHA256_BYTES
}

/// What a snapshot file holds, by its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Our backend image (`mvcc::image`), as `Maintenance.Snapshot` streams it.
    Image,
    /// A raw copy of our backend file (`member/snap/db`, redb).
    Backend,
    /// etcd's own backend (bbolt): a snapshot saved from etcd, or its db file.
    Bbolt,
    Unknown,
}

/// The one place that decides a snapshot file's format (a converter for
/// etcd's bbolt files is one more arm here and in the readers).
pub fn detect_format(head: &[u8]) -> Format {
    if head.starts_with(&mvcc::IMAGE_MAGIC) {
        Format::Image
    } else if head.starts_with(&mvcc::BACKEND_FILE_MAGIC) {
        Format::Backend
    } else if etcdfmt::bbolt::looks_like_bbolt(head) {
        Format::Bbolt
    } else {
        Format::Unknown
    }
}

/// An error of the operating system as Go prints it (`open x: no such file
/// or directory`), which etcd's tools show.
pub fn go_io_error(op: &str, path: &Path, e: &std::io::Error) -> anyhow::Error {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    let text = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    };
    anyhow::anyhow!("{op} {}: {text}", path.display())
}

/// A snapshot file opened for reading.
pub struct SnapshotFile {
    path: PathBuf,
    file: File,
    /// Whole file.
    len: u64,
    /// Whether it ends with a digest (etcd's size rule).
    has_hash: bool,
    format: Format,
}

impl SnapshotFile {
    pub fn open(path: &Path) -> Result<SnapshotFile> {
        let mut file = File::open(path).map_err(|e| go_io_error("open", path, &e))?;
        let len = file
            .metadata()
            .map_err(|e| go_io_error("stat", path, &e))?
            .len();
        let mut head = Vec::with_capacity(FORMAT_HEAD_BYTES);
        (&mut file)
            .take(FORMAT_HEAD_BYTES as u64)
            .read_to_end(&mut head)
            .map_err(|e| go_io_error("read", path, &e))?;
        Ok(SnapshotFile {
            path: path.to_path_buf(),
            file,
            len,
            has_hash: has_checksum(len),
            format: detect_format(&head),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn has_hash(&self) -> bool {
        self.has_hash
    }

    /// Bytes before the digest (the whole file if it has none).
    pub fn data_len(&self) -> u64 {
        if self.has_hash {
            self.len - SHA256_BYTES
        } else {
            self.len
        }
    }

    /// etcd's integrity check before a restore: a file without a digest
    /// needs `--skip-hash-check`; a digest must match the bytes before it.
    pub fn verify_hash(&mut self, skip_hash_check: bool) -> Result<()> {
        if !self.has_hash {
            if skip_hash_check {
                return Ok(());
            }
            bail!("snapshot missing hash but --skip-hash-check=false");
        }
        if skip_hash_check {
            return Ok(());
        }
        let mut stored = [0u8; SHA256_BYTES as usize];
        self.file
            .seek(SeekFrom::Start(self.data_len()))
            .and_then(|_| self.file.read_exact(&mut stored))
            .map_err(|e| go_io_error("read", &self.path, &e))?;
        let mut hasher = Sha256::new();
        let mut data = self.data()?;
        std::io::copy(&mut data, &mut hasher).map_err(|e| go_io_error("read", &self.path, &e))?;
        let computed = hasher.finalize();
        if computed.as_slice() != stored {
            bail!(
                "expected sha256 {}, got {}",
                go_bytes(&stored),
                go_bytes(&computed)
            );
        }
        Ok(())
    }

    /// A buffered reader of the bytes before the digest, from the start.
    pub fn data(&mut self) -> Result<BufReader<std::io::Take<&mut File>>> {
        let data_len = self.data_len();
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| go_io_error("seek", &self.path, &e))?;
        Ok(BufReader::with_capacity(
            256 << 10,
            (&mut self.file).take(data_len),
        ))
    }

    /// The error for a file of no format we know (etcd's words).
    pub fn unsupported(&self) -> anyhow::Error {
        anyhow::anyhow!("invalid database")
    }

    /// Opens the bytes before the digest as a bbolt file.
    pub fn bbolt(&self) -> Result<etcdfmt::bbolt::Db> {
        let file = self
            .file
            .try_clone()
            .map_err(|e| go_io_error("open", &self.path, &e))?;
        etcdfmt::bbolt::Db::open_with_len(file, self.data_len())
            .with_context(|| format!("read the bbolt file {}", self.path.display()))
    }
}

/// A byte slice as Go's `%v` prints it: `[1 2 3]`.
fn go_bytes(bytes: &[u8]) -> String {
    let items: Vec<String> = bytes.iter().map(u8::to_string).collect();
    format!("[{}]", items.join(" "))
}

/// What `etcdutl snapshot status` shows (etcd's `snapshot.Status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// CRC-32C over every table's name and rows ([`mvcc::ImageStatus::hash`]).
    pub hash: u32,
    /// The revision the data is at (what a restore serves).
    pub revision: i64,
    /// Rows of every table.
    pub total_key: u64,
    /// Bytes of the image (padding and digest not counted), or of the
    /// backend file for a raw copy.
    pub total_size: u64,
    /// The storage version ([`STORAGE_VERSION`]).
    pub version: String,
}

/// Reads a snapshot file's status (the digest is not checked, as in etcd;
/// the image's own checksum is).
pub fn status(path: &Path) -> Result<Status> {
    std::fs::metadata(path).map_err(|e| go_io_error("stat", path, &e))?;
    let mut file = SnapshotFile::open(path)?;
    let (status, total_size) = match file.format() {
        Format::Image => {
            let mut data = file.data()?;
            let status = mvcc::image_status(&mut data)
                .with_context(|| format!("read the snapshot {}", path.display()))?;
            let size = status.info.bytes;
            (status, size)
        }
        Format::Backend => {
            let status = mvcc::ImageSource::open_file(path)
                .and_then(|source| source.status())
                .with_context(|| format!("read the backend file {}", path.display()))?;
            (status, file.len)
        }
        Format::Bbolt => {
            let db = file.bbolt()?;
            let s = crate::interchange::backend::bbolt_status(&db)
                .with_context(|| format!("read the snapshot {}", path.display()))?;
            return Ok(Status {
                hash: s.hash,
                revision: s.revision,
                total_key: s.total_keys,
                total_size: s.total_size,
                version: s.version.unwrap_or_default(),
            });
        }
        Format::Unknown => return Err(file.unsupported()),
    };
    Ok(Status {
        hash: status.hash,
        revision: status.info.revision,
        total_key: status.rows,
        total_size,
        version: STORAGE_VERSION.to_string(),
    })
}

/// Writes the backend of a restored member at `db_path` from a snapshot
/// file (its digest already checked): an image is restored into a new
/// backend, a raw backend copy is copied. Returns the opened store.
pub fn restore_backend(file: &mut SnapshotFile, db_path: &Path) -> Result<mvcc::Store> {
    match file.format() {
        Format::Image => {
            let path = file.path().to_path_buf();
            let store = open_store(db_path)?;
            let mut data = file.data()?;
            store
                .restore_image(&mut data)
                .with_context(|| format!("restore the snapshot {}", path.display()))?;
            let mut rest = Vec::new();
            data.take(SECTOR_BYTES)
                .read_to_end(&mut rest)
                .map_err(|e| go_io_error("read", &path, &e))?;
            if rest.len() as u64 >= SECTOR_BYTES || rest.iter().any(|b| *b != 0) {
                bail!(
                    "{}: unexpected bytes after the backend image",
                    path.display()
                );
            }
            Ok(store)
        }
        Format::Backend => {
            let data_len = file.data_len();
            let path = file.path().to_path_buf();
            let mut data = file.data()?;
            let mut out = File::create(db_path).map_err(|e| go_io_error("open", db_path, &e))?;
            let copied = std::io::copy(&mut data, &mut out)
                .map_err(|e| go_io_error("write", db_path, &e))?;
            if copied != data_len {
                bail!("{}: short read while copying", path.display());
            }
            out.sync_all()
                .map_err(|e| go_io_error("sync", db_path, &e))?;
            drop(out);
            open_store(db_path)
        }
        Format::Bbolt => {
            let db = file.bbolt()?;
            let path = file.path().to_path_buf();
            let store = open_store(db_path)?;
            restore_bbolt(&db, &store)
                .with_context(|| format!("restore the snapshot {}", path.display()))?;
            Ok(store)
        }
        Format::Unknown => Err(file.unsupported()),
    }
}

/// Converts an etcd backend file into `store`, a new backend (it is left
/// partly filled if this fails): the conversion writes our image into an
/// in-process pipe on one thread while the store loads it in bounded
/// transactions on this one, so nothing the size of the database is held
/// in memory.
pub fn restore_bbolt(
    db: &etcdfmt::bbolt::Db,
    store: &mvcc::Store,
) -> Result<crate::interchange::backend::Imported> {
    restore_bbolt_until(db, store, &std::sync::atomic::AtomicBool::new(false))
}

/// [`restore_bbolt`], given up (with an error) soon after `cancel` is set.
pub fn restore_bbolt_until(
    db: &etcdfmt::bbolt::Db,
    store: &mvcc::Store,
    cancel: &std::sync::atomic::AtomicBool,
) -> Result<crate::interchange::backend::Imported> {
    let (mut input, out) = crate::interchange::pipe::pipe();
    let mut out = crate::interchange::pipe::Cancellable::new(out, cancel);
    std::thread::scope(|scope| {
        let converter = std::thread::Builder::new()
            .name("bbolt-reader".into())
            .spawn_scoped(scope, move || {
                let imported = crate::interchange::backend::import(db, &mut out)?;
                out.flush().context("write the converted image")?;
                Ok::<_, anyhow::Error>(imported)
            })
            .context("start the bbolt reader")?;
        let restored = store.load_image(&mut input);
        // A failed restore stops reading: dropping the pipe's reading end
        // ends the converter with a write error rather than a block.
        drop(input);
        let imported = converter
            .join()
            .map_err(|_| anyhow::anyhow!("the bbolt converter panicked"))?;
        // The converter's error names the cause; the restore's is its echo.
        let imported = imported?;
        restored.context("restore the converted image")?;
        Ok(imported)
    })
}

fn open_store(db_path: &Path) -> Result<mvcc::Store> {
    mvcc::Store::open(db_path, mvcc::StoreOptions::default())
        .with_context(|| format!("open the backend {}", db_path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_makes_etcds_checksum_rule_hold() {
        for image in [0u64, 1, 13, 511, 512, 513, 20_480, 1 << 20, 32_769] {
            let file = image + padding_bytes(image) + SHA256_BYTES;
            assert!(has_checksum(file), "image of {image} bytes");
            assert!(padding_bytes(image) < SECTOR_BYTES);
        }
        assert!(!has_checksum(20_480));
        assert!(has_checksum(20_512));
    }

    #[test]
    fn formats_are_told_by_their_first_bytes() {
        assert_eq!(detect_format(b"ETCDRSIM\0\0\0\x02"), Format::Image);
        assert_eq!(
            detect_format(&[b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A, 0]),
            Format::Backend
        );
        let mut bolt = vec![0u8; 4096];
        bolt[16..20].copy_from_slice(&[0xED, 0xDA, 0x0C, 0xED]);
        assert_eq!(detect_format(&bolt), Format::Bbolt);
        assert_eq!(detect_format(b"hello"), Format::Unknown);
        assert_eq!(detect_format(b""), Format::Unknown);
    }

    #[test]
    fn go_formats() {
        assert_eq!(go_bytes(&[40, 113, 0]), "[40 113 0]");
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(
            go_io_error("open", Path::new("x.db"), &e).to_string(),
            "open x.db: no such file or directory"
        );
    }
}
