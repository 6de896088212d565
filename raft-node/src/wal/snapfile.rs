//! Snapshot files: `snap/snap-<index>-<term>.snap`, each written under a
//! `.tmp` name, fsynced and renamed, so that a file with the final name is
//! always complete. A checksum covers everything after the magic, so a
//! damaged snapshot is detected rather than restored.
//!
//! ```text
//! offset size field
//!      0    8 magic      "RAFTSNAP"
//!      8    4 version    1
//!     12    4 meta_len   length of the postcard SnapshotMeta
//!     16    8 data_len   length of the application data
//!     24    4 crc        crc32 of bytes 8..24, the meta and the data
//!     28      meta, then data
//! ```

use super::fsutil;
use super::metrics::WalMetrics;
use crate::store::StoreError;
use bytes::Bytes;
use raft_core::{Snapshot, SnapshotMeta};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"RAFTSNAP";
const VERSION: u32 = 1;
const HEADER_LEN: u64 = 28;
/// The largest encoded [`SnapshotMeta`] accepted; a membership is a few
/// node ids, so anything near this is damage.
const MAX_META: u32 = 16 << 20;

/// The file name of the snapshot at `index`, `term`. Zero-padded so that
/// names sort by index.
pub(crate) fn file_name(index: u64, term: u64) -> String {
    format!("snap-{index:020}-{term:020}.snap")
}

/// The `(index, term)` a snapshot file name stands for.
pub(crate) fn parse_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    let (i, t) = rest.split_once('-')?;
    if i.len() != 20 || t.len() != 20 {
        return None;
    }
    Some((i.parse().ok()?, t.parse().ok()?))
}

/// Writes `snap` into `dir` durably and returns its path. The directory is
/// fsynced after the rename.
pub(crate) fn write(
    dir: &Path,
    snap: &Snapshot,
    metrics: &WalMetrics,
) -> Result<PathBuf, StoreError> {
    let path = dir.join(file_name(snap.meta.index, snap.meta.term));
    let tmp = fsutil::tmp_path(&path);
    let meta = postcard::to_allocvec(&snap.meta)
        .map_err(|e| StoreError::Invalid(format!("snapshot metadata does not encode: {e}")))?;
    let meta_len = u32::try_from(meta.len())
        .ok()
        .filter(|&n| n <= MAX_META)
        .ok_or_else(|| {
            StoreError::Invalid(format!(
                "snapshot metadata of {} bytes is too large",
                meta.len()
            ))
        })?;
    let mut fields = Vec::with_capacity(16);
    fields.extend_from_slice(&VERSION.to_le_bytes());
    fields.extend_from_slice(&meta_len.to_le_bytes());
    fields.extend_from_slice(&(snap.data.len() as u64).to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&fields);
    h.update(&meta);
    h.update(&snap.data);
    let crc = h.finalize();

    let file =
        File::create(&tmp).map_err(|e| StoreError::io(format!("create {}", tmp.display()), e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let werr = |e| StoreError::io(format!("write {}", tmp.display()), e);
    w.write_all(MAGIC).map_err(werr)?;
    w.write_all(&fields).map_err(werr)?;
    w.write_all(&crc.to_le_bytes()).map_err(werr)?;
    w.write_all(&meta).map_err(werr)?;
    w.write_all(&snap.data).map_err(werr)?;
    let file = w
        .into_inner()
        .map_err(|e| StoreError::io(format!("write {}", tmp.display()), e.into_error()))?;
    metrics.record_write(HEADER_LEN + meta.len() as u64 + snap.data.len() as u64, 0);
    fsutil::sync_all(&file, &tmp, metrics)?;
    drop(file);
    fsutil::rename(&tmp, &path)?;
    fsutil::sync_dir(dir, metrics)?;
    Ok(path)
}

/// What reading a snapshot file found.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// The file is intact; `data` is present when it was asked for.
    Valid {
        meta: SnapshotMeta,
        data: Option<Bytes>,
    },
    /// The file is damaged.
    Damaged { offset: u64, reason: String },
}

/// Reads and verifies a snapshot file. With `load` the data is returned,
/// otherwise it is only streamed through the checksum.
pub(crate) fn read(path: &Path, load: bool) -> Result<Loaded, StoreError> {
    let ioerr = |e| StoreError::io(format!("read {}", path.display()), e);
    let mut f =
        File::open(path).map_err(|e| StoreError::io(format!("open {}", path.display()), e))?;
    let file_len = f.metadata().map_err(ioerr)?.len();
    let damaged = |offset: u64, reason: String| Ok(Loaded::Damaged { offset, reason });
    if file_len < HEADER_LEN {
        return damaged(
            file_len,
            format!("file of {file_len} bytes is shorter than the header"),
        );
    }
    let mut head = [0u8; HEADER_LEN as usize];
    f.read_exact(&mut head).map_err(ioerr)?;
    if &head[..8] != MAGIC {
        return damaged(0, "bad magic".into());
    }
    let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
    let meta_len = u32::from_le_bytes(head[12..16].try_into().expect("4 bytes"));
    let data_len = u64::from_le_bytes(head[16..24].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(head[24..28].try_into().expect("4 bytes"));
    if version != VERSION {
        return damaged(
            8,
            format!("snapshot format version {version}, expected {VERSION}"),
        );
    }
    if meta_len > MAX_META {
        return damaged(12, format!("metadata length {meta_len} is implausible"));
    }
    let expect_len = HEADER_LEN
        .checked_add(u64::from(meta_len))
        .and_then(|n| n.checked_add(data_len));
    if expect_len != Some(file_len) {
        return damaged(
            12,
            format!("header says {meta_len} + {data_len} bytes of content but the file has {file_len} bytes"),
        );
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&head[8..24]);
    let mut meta = vec![0u8; meta_len as usize];
    f.read_exact(&mut meta).map_err(ioerr)?;
    h.update(&meta);
    let data = if load {
        // The length was checked against the file's size above, so this
        // allocation is bounded by what is really on disk.
        let n = usize::try_from(data_len).map_err(|_| {
            StoreError::Invalid(format!(
                "snapshot {} does not fit in memory",
                path.display()
            ))
        })?;
        let mut data = vec![0u8; n];
        f.read_exact(&mut data).map_err(ioerr)?;
        h.update(&data);
        Some(Bytes::from(data))
    } else {
        let mut buf = vec![0u8; 1 << 20];
        let mut left = data_len;
        while left > 0 {
            let n = usize::try_from(left.min(buf.len() as u64)).expect("at most the buffer size");
            f.read_exact(&mut buf[..n]).map_err(ioerr)?;
            h.update(&buf[..n]);
            left -= n as u64;
        }
        None
    };
    if h.finalize() != crc {
        return damaged(24, "checksum mismatch".into());
    }
    match postcard::from_bytes::<SnapshotMeta>(&meta) {
        Ok(meta) => Ok(Loaded::Valid { meta, data }),
        Err(e) => damaged(HEADER_LEN, format!("metadata does not decode: {e}")),
    }
}
