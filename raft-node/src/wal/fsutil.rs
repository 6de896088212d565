//! Small filesystem helpers that time their fsyncs into [`WalMetrics`] and
//! wrap errors with the file they concern.

use super::metrics::WalMetrics;
use crate::store::StoreError;
use std::fs::File;
use std::path::Path;
use std::time::Instant;

/// Flushes a file's data (and the metadata needed to read it back, such as
/// its length) to stable storage.
pub(crate) fn sync_data(file: &File, path: &Path, metrics: &WalMetrics) -> Result<(), StoreError> {
    let t = Instant::now();
    file.sync_data()
        .map_err(|e| StoreError::io(format!("fsync {}", path.display()), e))?;
    metrics.record_fsync(t.elapsed());
    Ok(())
}

/// Flushes a file's data and all of its metadata.
pub(crate) fn sync_all(file: &File, path: &Path, metrics: &WalMetrics) -> Result<(), StoreError> {
    let t = Instant::now();
    file.sync_all()
        .map_err(|e| StoreError::io(format!("fsync {}", path.display()), e))?;
    metrics.record_fsync(t.elapsed());
    Ok(())
}

/// Makes the creation, renaming or removal of entries in `dir` durable.
pub(crate) fn sync_dir(dir: &Path, metrics: &WalMetrics) -> Result<(), StoreError> {
    let f = File::open(dir)
        .map_err(|e| StoreError::io(format!("open directory {} to fsync it", dir.display()), e))?;
    sync_all(&f, dir, metrics)
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsynced,
/// renamed over `path`, then the directory fsynced. A crash leaves either
/// the old file or the new one, plus perhaps a `.tmp` leftover.
pub(crate) fn write_atomic(
    path: &Path,
    bytes: &[u8],
    metrics: &WalMetrics,
) -> Result<(), StoreError> {
    use std::io::Write as _;
    let dir = path.parent().ok_or_else(|| {
        StoreError::Invalid(format!("{} has no parent directory", path.display()))
    })?;
    let tmp = tmp_path(path);
    let mut f =
        File::create(&tmp).map_err(|e| StoreError::io(format!("create {}", tmp.display()), e))?;
    f.write_all(bytes)
        .map_err(|e| StoreError::io(format!("write {}", tmp.display()), e))?;
    metrics.record_write(bytes.len() as u64, 0);
    sync_all(&f, &tmp, metrics)?;
    drop(f);
    rename(&tmp, path)?;
    sync_dir(dir, metrics)
}

/// `path` with `.tmp` appended to its file name.
pub(crate) fn tmp_path(path: &Path) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    s.into()
}

pub(crate) fn rename(from: &Path, to: &Path) -> Result<(), StoreError> {
    std::fs::rename(from, to)
        .map_err(|e| StoreError::io(format!("rename {} to {}", from.display(), to.display()), e))
}

pub(crate) fn remove_file(path: &Path) -> Result<(), StoreError> {
    std::fs::remove_file(path).map_err(|e| StoreError::io(format!("remove {}", path.display()), e))
}

/// Creates `dir` if missing, making its creation durable.
pub(crate) fn ensure_dir(dir: &Path, metrics: &WalMetrics) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| StoreError::io(format!("create directory {}", dir.display()), e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent, metrics)?;
    }
    Ok(())
}

/// The names of the regular files in `dir`.
pub(crate) fn list_files(dir: &Path) -> Result<Vec<String>, StoreError> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| StoreError::io(format!("list directory {}", dir.display()), e))?;
    let mut names = Vec::new();
    for ent in rd {
        let ent =
            ent.map_err(|e| StoreError::io(format!("list directory {}", dir.display()), e))?;
        let is_file = ent
            .file_type()
            .map_err(|e| StoreError::io(format!("stat {}", ent.path().display()), e))?
            .is_file();
        if is_file {
            if let Some(name) = ent.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}
