//! The synchronous store: recovery, appends, truncation, snapshots and
//! compaction. Everything here blocks on the disk; [`super::FileStore`]
//! runs it off the async runtime.

use super::fsutil;
use super::metrics::WalMetrics;
use super::record::{self, Header, RecordType, SegmentHeaderBody, HEADER_LEN, MAX_PAYLOAD};
use super::segment::{self, Item};
use super::snapfile;
use super::{RecoveryReport, TornTail, WalOptions, FORMAT_FILE, FORMAT_LINE, FORMAT_VERSION};
use crate::store::StoreError;
use bytes::Bytes;
use raft_core::{Entry, HardState, InitialState, LogIndex, Snapshot, SnapshotMeta, Term};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Where a live entry's record starts.
#[derive(Copy, Clone, Debug)]
struct Loc {
    seg: u64,
    off: u64,
}

fn corrupt(file: &Path, offset: u64, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        file: file.display().to_string(),
        offset,
        reason: reason.into(),
    }
}

#[derive(Debug)]
pub(crate) struct WalCore {
    /// The exclusive lock on `LOCK`, held while the store is open.
    _lock: DirLock,
    dir: PathBuf,
    wal_dir: PathBuf,
    snap_dir: PathBuf,
    opts: WalOptions,
    metrics: Arc<WalMetrics>,
    /// Seqs of the segments on disk, ascending; the last is being appended.
    segments: Vec<u64>,
    active: File,
    active_len: u64,
    /// Index of `locs[0]`; when `locs` is empty, the next index expected.
    first: LogIndex,
    locs: Vec<Loc>,
    hard_state: HardState,
    snapshot: Option<SnapshotMeta>,
    /// Entries decoded during recovery, kept until `initial_state` takes them
    /// so the log is read only once at start-up.
    initial: Option<Vec<Entry>>,
    buf: Vec<u8>,
    scratch: Vec<u64>,
    /// Set when a write failed: what reached the disk is then unknown (a
    /// failed fsync may have dropped dirty pages), so no further write is
    /// acknowledged; the node must restart and recover.
    failed: Option<String>,
}

/// The log as rebuilt by replaying records in order.
#[derive(Default)]
struct Replay {
    first: LogIndex,
    locs: Vec<Loc>,
    entries: Vec<Entry>,
    reset_base: Option<LogIndex>,
    hard_state: HardState,
}

impl Replay {
    /// Applies one entry record with the same rule `persist` follows: an
    /// index at or below the last one drops the suffix from there first.
    fn entry(&mut self, e: Entry, loc: Loc) -> Result<(), String> {
        if e.index == 0 {
            return Err("entry with index 0".into());
        }
        if self.locs.is_empty() {
            if let Some(base) = self.reset_base {
                if e.index != base + 1 {
                    return Err(format!(
                        "entry {} follows a reset of the log to index {base}",
                        e.index
                    ));
                }
            }
            self.first = e.index;
        } else {
            let last = self.first + self.locs.len() as u64 - 1;
            if e.index > last + 1 {
                return Err(format!(
                    "entry {} follows entry {last}: a gap in the log",
                    e.index
                ));
            }
            if e.index < self.first {
                // The suffix replaces entries whose records were in segments
                // already deleted by compaction.
                self.locs.clear();
                self.entries.clear();
                self.first = e.index;
            } else {
                let keep = (e.index - self.first) as usize;
                self.locs.truncate(keep);
                self.entries.truncate(keep);
            }
        }
        self.locs.push(loc);
        self.entries.push(e);
        Ok(())
    }

    fn reset(&mut self, base: LogIndex) {
        self.locs.clear();
        self.entries.clear();
        self.reset_base = Some(base);
    }
}

/// The data directory's lock: the open `LOCK` file, flock-ed.
#[cfg(unix)]
type DirLock = nix::fcntl::Flock<File>;
#[cfg(not(unix))]
type DirLock = File;

/// Takes an exclusive advisory lock on `dir/LOCK` (flock), released when
/// the returned lock is dropped, also when the process dies. Two processes
/// appending to one log would interleave their records and lose
/// acknowledged writes, so the second is refused. (Not on non-Unix
/// systems, where the file is only created.)
fn lock_dir(dir: &Path) -> Result<DirLock, StoreError> {
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(format!("open {}", path.display()), e))?;
    #[cfg(unix)]
    {
        use nix::fcntl::{Flock, FlockArg};
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(lock),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(StoreError::InUse(format!(
                "{} is locked by another process: is another node running on {}?",
                path.display(),
                dir.display()
            ))),
            Err((_, e)) => Err(StoreError::io(
                format!("lock {}", path.display()),
                std::io::Error::from(e),
            )),
        }
    }
    #[cfg(not(unix))]
    Ok(f)
}

/// The lock file's name in the data directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

impl WalCore {
    pub(crate) fn open(
        dir: &Path,
        opts: WalOptions,
        metrics: Arc<WalMetrics>,
    ) -> Result<(WalCore, RecoveryReport), StoreError> {
        let started = Instant::now();
        if opts.segment_size == 0 {
            return Err(StoreError::Invalid(
                "segment_size must be above zero".into(),
            ));
        }
        let dir = dir.to_path_buf();
        let wal_dir = dir.join("wal");
        let snap_dir = dir.join("snap");
        fsutil::ensure_dir(&dir, &metrics)?;
        let lock = lock_dir(&dir)?;
        let created = check_format(&dir, &wal_dir, &snap_dir, &metrics)?;
        fsutil::ensure_dir(&wal_dir, &metrics)?;
        fsutil::ensure_dir(&snap_dir, &metrics)?;
        let mut temp_files_removed = remove_tmp_files(&dir, &metrics)?;
        temp_files_removed += remove_tmp_files(&wal_dir, &metrics)?;
        temp_files_removed += remove_tmp_files(&snap_dir, &metrics)?;

        let (snapshot, snapshots_pruned) = pick_snapshot(&snap_dir, &metrics)?;
        let snap_index = snapshot.as_ref().map_or(0, |m| m.index);

        let mut seqs = Vec::new();
        for name in fsutil::list_files(&wal_dir)? {
            match segment::parse_name(&name) {
                Some(seq) => seqs.push(seq),
                None => {
                    tracing::warn!(file = %wal_dir.join(&name).display(), "ignoring an unknown file in the WAL directory")
                }
            }
        }
        seqs.sort_unstable();
        if seqs.is_empty() {
            if let Some(m) = &snapshot {
                return Err(corrupt(
                    &wal_dir,
                    0,
                    format!(
                        "no WAL segments, but a snapshot at index {} exists: the log and hard state are missing",
                        m.index
                    ),
                ));
            }
            create_segment(&wal_dir, 1, HardState::default(), &metrics)?;
            seqs.push(1);
        }
        for w in seqs.windows(2) {
            if w[1] != w[0] + 1 {
                return Err(corrupt(
                    &wal_dir.join(segment::file_name(w[1])),
                    0,
                    format!("segment {} is missing: the WAL has a hole", w[0] + 1),
                ));
            }
        }

        let mut rp = Replay::default();
        let mut torn = None;
        let mut active_len = 0;
        let mut bytes_read = 0;
        for (i, &seq) in seqs.iter().enumerate() {
            let path = wal_dir.join(segment::file_name(seq));
            let is_last = i + 1 == seqs.len();
            let (end, t) = replay_segment(&path, seq, is_last, &mut rp)?;
            bytes_read += end;
            if is_last {
                active_len = end;
                torn = t;
            }
        }
        let last_path = wal_dir.join(segment::file_name(
            *seqs.last().expect("at least one segment"),
        ));
        if let Some(t) = &torn {
            tracing::warn!(
                file = %t.file.display(),
                offset = t.offset,
                bytes_cut = t.bytes_cut,
                reason = %t.reason,
                "cutting a torn or damaged record at the end of the WAL (a write interrupted by a crash)"
            );
            let f = OpenOptions::new()
                .write(true)
                .open(&last_path)
                .map_err(|e| {
                    StoreError::io(format!("open {} to cut its tail", last_path.display()), e)
                })?;
            f.set_len(t.offset)
                .map_err(|e| StoreError::io(format!("truncate {}", last_path.display()), e))?;
            fsutil::sync_all(&f, &last_path, &metrics)?;
        }

        // Reconcile the log with the snapshot.
        let mut need_reset = false;
        let first;
        if rp.locs.is_empty() {
            let base = rp.reset_base.unwrap_or(0);
            if base > snap_index {
                return Err(corrupt(
                    &snap_dir,
                    0,
                    format!(
                        "the log was replaced by a snapshot at index {base}, but the newest valid snapshot is at index {snap_index}"
                    ),
                ));
            }
            first = snap_index + 1;
        } else {
            let last = rp.first + rp.locs.len() as u64 - 1;
            if rp.first > snap_index + 1 {
                let loc = rp.locs[0];
                return Err(corrupt(
                    &wal_dir.join(segment::file_name(loc.seg)),
                    loc.off,
                    format!(
                        "the log starts at entry {} but {}: entries {}..{} are missing",
                        rp.first,
                        if snap_index == 0 {
                            "there is no snapshot".to_string()
                        } else {
                            format!("the snapshot ends at {snap_index}")
                        },
                        snap_index + 1,
                        rp.first - 1
                    ),
                ));
            }
            if let Some(m) = &snapshot {
                if m.index >= rp.first
                    && (last < m.index || rp.entries[(m.index - rp.first) as usize].term != m.term)
                {
                    need_reset = true;
                }
            }
            first = if need_reset { snap_index + 1 } else { rp.first };
        }

        let active = OpenOptions::new()
            .append(true)
            .open(&last_path)
            .map_err(|e| {
                StoreError::io(format!("open {} for appending", last_path.display()), e)
            })?;

        let initial = if need_reset {
            Vec::new()
        } else if snap_index >= rp.first && !rp.entries.is_empty() {
            rp.entries.split_off((snap_index + 1 - rp.first) as usize)
        } else {
            std::mem::take(&mut rp.entries)
        };
        let mut core = WalCore {
            _lock: lock,
            dir,
            wal_dir,
            snap_dir,
            opts,
            metrics,
            segments: seqs,
            active,
            active_len,
            first,
            locs: if need_reset { Vec::new() } else { rp.locs },
            hard_state: rp.hard_state,
            snapshot,
            initial: None,
            buf: Vec::new(),
            scratch: Vec::new(),
            failed: None,
        };
        if need_reset {
            let m = core
                .snapshot
                .clone()
                .expect("a reset is only needed against a snapshot");
            tracing::warn!(
                snapshot_index = m.index,
                snapshot_term = m.term,
                "the log does not reach the snapshot: completing an interrupted snapshot installation by dropping the log"
            );
            core.append_reset(m.index, m.term)?;
        }
        let report = RecoveryReport {
            created,
            entries: initial.len() as u64,
            first_index: core.first,
            last_index: core.last_index(),
            segments: core.segments.len(),
            bytes_read,
            snapshot: core.snapshot.as_ref().map(|m| (m.index, m.term)),
            hard_state: core.hard_state,
            torn_tail: torn,
            temp_files_removed,
            snapshots_pruned,
            completed_snapshot_install: need_reset,
            elapsed: started.elapsed(),
        };
        core.initial = Some(initial);
        tracing::info!(
            dir = %core.dir.display(),
            entries = report.entries,
            first_index = report.first_index,
            last_index = report.last_index,
            segments = report.segments,
            bytes = report.bytes_read,
            snapshot_index = snap_index,
            term = report.hard_state.term,
            commit = report.hard_state.commit,
            torn_tail = report.torn_tail.is_some(),
            elapsed_ms = report.elapsed.as_secs_f64() * 1000.0,
            "recovered the raft store"
        );
        Ok((core, report))
    }

    fn last_index(&self) -> LogIndex {
        self.first + self.locs.len() as u64 - 1
    }

    fn snap_index(&self) -> LogIndex {
        self.snapshot.as_ref().map_or(0, |m| m.index)
    }

    fn check_usable(&self) -> Result<(), StoreError> {
        match &self.failed {
            None => Ok(()),
            Some(reason) => Err(StoreError::io(
                "the store refuses writes after an earlier write failed; restart to recover",
                std::io::Error::other(reason.clone()),
            )),
        }
    }

    fn fail(&mut self, e: StoreError) -> StoreError {
        tracing::error!(dir = %self.dir.display(), error = %e, "a storage write failed; no further writes will be accepted");
        self.failed = Some(e.to_string());
        e
    }

    pub(crate) fn initial_state(&mut self) -> Result<InitialState, StoreError> {
        let entries = match self.initial.take() {
            Some(e) => e,
            None => {
                let lo = self.first.max(self.snap_index() + 1);
                self.entries(lo, self.last_index() + 1)?
            }
        };
        Ok(InitialState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries,
        })
    }

    pub(crate) fn persist(
        &mut self,
        hard_state: Option<HardState>,
        entries: &[Entry],
    ) -> Result<(), StoreError> {
        self.check_usable()?;
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        if let Some(e0) = entries.first() {
            let last = self.last_index();
            let snap = self.snap_index();
            if e0.index <= snap {
                return Err(StoreError::Invalid(format!(
                    "entry {} is at or below the snapshot index {snap}",
                    e0.index
                )));
            }
            if e0.index < self.first || e0.index > last + 1 {
                return Err(StoreError::Invalid(format!(
                    "entry {} does not attach to the stored log [{}, {last}]",
                    e0.index, self.first
                )));
            }
            for (i, e) in entries.iter().enumerate() {
                if e.index != e0.index + i as u64 {
                    return Err(StoreError::Invalid(format!(
                        "batch is not contiguous: entry {} at position {i} after {}",
                        e.index, e0.index
                    )));
                }
                if e.data.len() > MAX_PAYLOAD as usize {
                    return Err(StoreError::Invalid(format!(
                        "entry {} has {} bytes, above the limit of {MAX_PAYLOAD}",
                        e.index,
                        e.data.len()
                    )));
                }
            }
        }
        self.initial = None;
        self.persist_inner(hard_state, entries)
            .map_err(|e| self.fail(e))
    }

    fn persist_inner(
        &mut self,
        hard_state: Option<HardState>,
        entries: &[Entry],
    ) -> Result<(), StoreError> {
        if self.active_len >= self.opts.segment_size {
            self.rotate()?;
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        self.scratch.clear();
        for e in entries {
            self.scratch.push(self.active_len + buf.len() as u64);
            record::encode(
                &mut buf,
                RecordType::Entry,
                record::kind_to_u8(e.kind),
                e.index,
                e.term,
                &e.data,
            );
        }
        // The hard state goes last: a crash that tears the batch then also
        // drops the new commit index, which may cover the torn entries.
        if let Some(hs) = hard_state {
            let payload = postcard::to_allocvec(&hs).expect("a hard state always encodes");
            record::encode(
                &mut buf,
                RecordType::HardState,
                0,
                hs.commit,
                hs.term,
                &payload,
            );
        }
        let path = self.active_path();
        let res = self
            .active
            .write_all(&buf)
            .map_err(|e| StoreError::io(format!("append to {}", path.display()), e))
            .and_then(|()| fsutil::sync_data(&self.active, &path, &self.metrics));
        let written = buf.len() as u64;
        self.buf = buf;
        res?;
        self.active_len += written;
        self.metrics.record_write(written, entries.len() as u64);
        self.metrics.record_batch();
        if let Some(e0) = entries.first() {
            self.locs.truncate((e0.index - self.first) as usize);
            let seg = self.active_seq();
            self.locs
                .extend(self.scratch.iter().map(|&off| Loc { seg, off }));
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs;
        }
        Ok(())
    }

    pub(crate) fn save_snapshot(&mut self, snap: &Snapshot, keep: u64) -> Result<(), StoreError> {
        self.check_usable()?;
        let cur = self.snap_index();
        if snap.meta.index == 0 {
            return Err(StoreError::Invalid(
                "a snapshot at index 0 holds nothing".into(),
            ));
        }
        if snap.meta.index < cur {
            return Err(StoreError::Invalid(format!(
                "snapshot at index {} is older than the stored one at {cur}",
                snap.meta.index
            )));
        }
        self.initial = None;
        self.save_snapshot_inner(snap, keep)
            .map_err(|e| self.fail(e))
    }

    fn save_snapshot_inner(&mut self, snap: &Snapshot, keep: u64) -> Result<(), StoreError> {
        let (index, term) = (snap.meta.index, snap.meta.term);
        // 1. The snapshot file, durable under its final name.
        let path = snapfile::write(&self.snap_dir, snap, &self.metrics)?;
        // 2. If the log disagrees with the snapshot (one received from a
        // leader), drop it with a reset record. Recovery completes this step
        // if a crash comes first.
        let matches = if index < self.first {
            self.snapshot.as_ref().map(|m| (m.index, m.term)) == Some((index, term))
        } else if index <= self.last_index() {
            self.term_at(index)? == term
        } else {
            false
        };
        if !matches {
            self.append_reset(index, term)?;
        }
        self.snapshot = Some(snap.meta.clone());
        tracing::info!(
            index,
            term,
            bytes = snap.data.len(),
            log_dropped = !matches,
            "saved a snapshot"
        );
        // 3. Whole segments before the kept suffix; 4. older snapshots.
        self.compact(index.saturating_sub(keep))?;
        let mut pruned = 0;
        for name in fsutil::list_files(&self.snap_dir)? {
            if snapfile::parse_name(&name).is_some_and(|it| it != (index, term)) {
                fsutil::remove_file(&self.snap_dir.join(&name))?;
                pruned += 1;
            }
        }
        if pruned > 0 {
            fsutil::sync_dir(&self.snap_dir, &self.metrics)?;
            tracing::debug!(pruned, "removed older snapshots");
        }
        debug_assert!(path.exists());
        Ok(())
    }

    /// Deletes every segment that holds no live entry above `to`, oldest
    /// first, so that a crash part-way leaves a contiguous suffix.
    fn compact(&mut self, to: LogIndex) -> Result<(), StoreError> {
        let active = self.active_seq();
        let boundary = if to + 1 < self.first {
            self.locs.first().map_or(active, |l| l.seg)
        } else {
            self.locs
                .get((to + 1 - self.first) as usize)
                .map_or(active, |l| l.seg)
        };
        let doomed = self.segments.iter().take_while(|&&s| s < boundary).count();
        if doomed == 0 {
            return Ok(());
        }
        for &seq in &self.segments[..doomed] {
            fsutil::remove_file(&self.wal_dir.join(segment::file_name(seq)))?;
        }
        fsutil::sync_dir(&self.wal_dir, &self.metrics)?;
        self.segments.drain(..doomed);
        let dropped = self.locs.iter().take_while(|l| l.seg < boundary).count();
        self.locs.drain(..dropped);
        self.first += dropped as u64;
        tracing::info!(
            segments_removed = doomed,
            entries_removed = dropped,
            up_to = to,
            first_index = self.first,
            "compacted the WAL"
        );
        Ok(())
    }

    fn append_reset(&mut self, index: LogIndex, term: Term) -> Result<(), StoreError> {
        let mut buf = Vec::with_capacity(HEADER_LEN);
        record::encode(&mut buf, RecordType::Reset, 0, index, term, &[]);
        let path = self.active_path();
        self.active
            .write_all(&buf)
            .map_err(|e| StoreError::io(format!("append to {}", path.display()), e))?;
        fsutil::sync_data(&self.active, &path, &self.metrics)?;
        self.active_len += buf.len() as u64;
        self.metrics.record_write(buf.len() as u64, 0);
        self.locs.clear();
        self.first = index + 1;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), StoreError> {
        let seq = self.active_seq() + 1;
        let (file, len) = create_segment(&self.wal_dir, seq, self.hard_state, &self.metrics)?;
        self.active = file;
        self.active_len = len;
        self.segments.push(seq);
        tracing::debug!(segment = seq, "started a new WAL segment");
        Ok(())
    }

    fn active_seq(&self) -> u64 {
        *self
            .segments
            .last()
            .expect("the store always has an active segment")
    }

    fn active_path(&self) -> PathBuf {
        self.wal_dir.join(segment::file_name(self.active_seq()))
    }

    fn loc(&self, index: LogIndex) -> Loc {
        self.locs[(index - self.first) as usize]
    }

    fn term_at(&self, index: LogIndex) -> Result<Term, StoreError> {
        let loc = self.loc(index);
        let path = self.wal_dir.join(segment::file_name(loc.seg));
        let mut f =
            File::open(&path).map_err(|e| StoreError::io(format!("open {}", path.display()), e))?;
        f.seek(SeekFrom::Start(loc.off))
            .map_err(|e| StoreError::io(format!("seek {}", path.display()), e))?;
        let mut hb = [0u8; HEADER_LEN];
        f.read_exact(&mut hb)
            .map_err(|e| StoreError::io(format!("read {}", path.display()), e))?;
        let h = Header::decode(&hb)
            .map_err(|e| corrupt(&path, loc.off, format!("record header: {e:?}")))?;
        if h.ty != RecordType::Entry || h.index != index {
            return Err(corrupt(
                &path,
                loc.off,
                format!("expected entry {index} here"),
            ));
        }
        Ok(h.term)
    }

    pub(crate) fn snapshot(&mut self) -> Result<Option<Snapshot>, StoreError> {
        let Some(meta) = &self.snapshot else {
            return Ok(None);
        };
        let path = self
            .snap_dir
            .join(snapfile::file_name(meta.index, meta.term));
        match snapfile::read(&path, true)? {
            snapfile::Loaded::Valid { meta, data } => Ok(Some(Snapshot {
                meta,
                data: data.unwrap_or_default(),
            })),
            snapfile::Loaded::Damaged { offset, reason } => Err(corrupt(&path, offset, reason)),
        }
    }

    pub(crate) fn entries(&mut self, lo: LogIndex, hi: LogIndex) -> Result<Vec<Entry>, StoreError> {
        if lo > hi {
            return Err(StoreError::Invalid(format!("empty range [{lo}, {hi})")));
        }
        if lo == hi {
            return Ok(Vec::new());
        }
        let last = self.last_index();
        if lo < self.first || hi > last + 1 {
            return Err(StoreError::Invalid(format!(
                "entries [{lo}, {hi}) are outside the stored range [{}, {last}]",
                self.first
            )));
        }
        let mut out = Vec::with_capacity((hi - lo) as usize);
        let mut cur: Option<(u64, PathBuf, BufReader<File>, u64)> = None;
        for index in lo..hi {
            let loc = self.loc(index);
            let reopen = cur.as_ref().is_none_or(|c| c.0 != loc.seg || loc.off < c.3);
            if reopen {
                let path = self.wal_dir.join(segment::file_name(loc.seg));
                let mut f = File::open(&path)
                    .map_err(|e| StoreError::io(format!("open {}", path.display()), e))?;
                f.seek(SeekFrom::Start(loc.off))
                    .map_err(|e| StoreError::io(format!("seek {}", path.display()), e))?;
                cur = Some((
                    loc.seg,
                    path,
                    BufReader::with_capacity(256 << 10, f),
                    loc.off,
                ));
            }
            let (_, path, r, pos) = cur.as_mut().expect("opened above");
            if loc.off > *pos {
                r.seek_relative((loc.off - *pos) as i64)
                    .map_err(|e| StoreError::io(format!("seek {}", path.display()), e))?;
            }
            let rerr = |e| StoreError::io(format!("read {}", path.display()), e);
            let mut hb = [0u8; HEADER_LEN];
            r.read_exact(&mut hb).map_err(rerr)?;
            let h = Header::decode(&hb)
                .map_err(|e| corrupt(path, loc.off, format!("record header: {e:?}")))?;
            if h.ty != RecordType::Entry || h.index != index {
                return Err(corrupt(
                    path,
                    loc.off,
                    format!("expected entry {index} here"),
                ));
            }
            let mut payload = vec![0u8; h.len as usize];
            r.read_exact(&mut payload).map_err(rerr)?;
            if crc32fast::hash(&payload) != h.payload_crc {
                return Err(corrupt(path, loc.off, "record payload checksum mismatch"));
            }
            let kind = record::kind_from_u8(h.kind)
                .ok_or_else(|| corrupt(path, loc.off, format!("unknown entry kind {}", h.kind)))?;
            *pos = loc.off + h.record_len();
            out.push(Entry {
                term: h.term,
                index,
                kind,
                data: Bytes::from(payload),
            });
        }
        Ok(out)
    }
}

/// Reads one segment into `rp`. Returns where its valid records end and, for
/// the last segment, the torn tail found after them.
fn replay_segment(
    path: &Path,
    seq: u64,
    is_last: bool,
    rp: &mut Replay,
) -> Result<(u64, Option<TornTail>), StoreError> {
    let mut rd = segment::Reader::open(path)?;
    let mut seen_header = false;
    loop {
        let (offset, reason, scan_from) = match rd.next_item()? {
            Item::Record {
                offset,
                header,
                payload,
            } => {
                apply_record(path, seq, offset, header, payload, !seen_header, rp)?;
                seen_header = true;
                continue;
            }
            Item::End => {
                if !seen_header {
                    return Err(corrupt(path, 0, "empty segment: no segment header"));
                }
                return Ok((rd.len(), None));
            }
            Item::Implausible { offset, reason } => return Err(corrupt(path, offset, reason)),
            Item::Incomplete { offset, reason } => (offset, reason, None),
            Item::Damaged {
                offset,
                reason,
                scan_from,
            } => (offset, reason, Some(scan_from)),
        };
        // Segments are created complete (temporary name, then rename), so a
        // damaged segment header is never a torn write.
        if !seen_header {
            return Err(corrupt(path, offset, format!("segment header: {reason}")));
        }
        // A segment is fully fsynced before the next one is created, so only
        // the last can end in a torn write.
        if !is_last {
            return Err(corrupt(
                path,
                offset,
                format!("{reason}, in a segment that later segments follow"),
            ));
        }
        if let Some(from) = scan_from {
            if let Some(at) = segment::find_valid_header(path, from)? {
                return Err(corrupt(
                    path,
                    offset,
                    format!("{reason}; a valid record follows at offset {at}, so this is not a torn tail"),
                ));
            }
        }
        let tail = TornTail {
            file: path.to_path_buf(),
            offset,
            bytes_cut: rd.len() - offset,
            reason,
        };
        return Ok((offset, Some(tail)));
    }
}

fn apply_record(
    path: &Path,
    seq: u64,
    offset: u64,
    header: Header,
    payload: Vec<u8>,
    first_in_segment: bool,
    rp: &mut Replay,
) -> Result<(), StoreError> {
    if first_in_segment {
        if header.ty != RecordType::SegmentHeader {
            return Err(corrupt(
                path,
                offset,
                "the segment does not start with a segment header",
            ));
        }
        let body: SegmentHeaderBody = postcard::from_bytes(&payload)
            .map_err(|e| corrupt(path, offset, format!("segment header does not decode: {e}")))?;
        if body.format != FORMAT_VERSION {
            return Err(StoreError::Incompatible(format!(
                "{} was written in store format {}, this build reads format {FORMAT_VERSION}",
                path.display(),
                body.format
            )));
        }
        if body.seq != seq {
            return Err(corrupt(
                path,
                offset,
                format!(
                    "segment header says seq {}, the file name says {seq}",
                    body.seq
                ),
            ));
        }
        rp.hard_state = body.hard_state;
        return Ok(());
    }
    match header.ty {
        RecordType::SegmentHeader => Err(corrupt(path, offset, "a second segment header")),
        RecordType::Entry => {
            let kind = record::kind_from_u8(header.kind).ok_or_else(|| {
                corrupt(path, offset, format!("unknown entry kind {}", header.kind))
            })?;
            let e = Entry {
                term: header.term,
                index: header.index,
                kind,
                data: Bytes::from(payload),
            };
            rp.entry(
                e,
                Loc {
                    seg: seq,
                    off: offset,
                },
            )
            .map_err(|reason| corrupt(path, offset, reason))
        }
        RecordType::HardState => {
            rp.hard_state = postcard::from_bytes(&payload)
                .map_err(|e| corrupt(path, offset, format!("hard state does not decode: {e}")))?;
            Ok(())
        }
        RecordType::Reset => {
            rp.reset(header.index);
            Ok(())
        }
    }
}

/// Creates segment `seq` complete with its header: written under a temporary
/// name, fsynced, renamed, directory fsynced. Returns it open for appending.
fn create_segment(
    wal_dir: &Path,
    seq: u64,
    hard_state: HardState,
    metrics: &WalMetrics,
) -> Result<(File, u64), StoreError> {
    let path = wal_dir.join(segment::file_name(seq));
    let tmp = fsutil::tmp_path(&path);
    let body = SegmentHeaderBody {
        format: FORMAT_VERSION,
        seq,
        hard_state,
    };
    let payload = postcard::to_allocvec(&body).expect("a segment header always encodes");
    let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
    record::encode(
        &mut buf,
        RecordType::SegmentHeader,
        0,
        seq,
        hard_state.term,
        &payload,
    );
    let mut f =
        File::create(&tmp).map_err(|e| StoreError::io(format!("create {}", tmp.display()), e))?;
    f.write_all(&buf)
        .map_err(|e| StoreError::io(format!("write {}", tmp.display()), e))?;
    fsutil::sync_all(&f, &tmp, metrics)?;
    drop(f);
    fsutil::rename(&tmp, &path)?;
    fsutil::sync_dir(wal_dir, metrics)?;
    metrics.record_write(buf.len() as u64, 0);
    let f = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| StoreError::io(format!("open {} for appending", path.display()), e))?;
    Ok((f, buf.len() as u64))
}

/// Checks the format marker, writing it into a new directory. Returns
/// whether the store is new.
fn check_format(
    dir: &Path,
    wal_dir: &Path,
    snap_dir: &Path,
    metrics: &WalMetrics,
) -> Result<bool, StoreError> {
    let path = dir.join(FORMAT_FILE);
    match File::open(&path) {
        Ok(f) => {
            let mut text = String::new();
            // Bounded: the marker is one short line.
            f.take(256)
                .read_to_string(&mut text)
                .map_err(|e| StoreError::io(format!("read {}", path.display()), e))?;
            let found = text.trim();
            if found == FORMAT_LINE.trim() {
                return Ok(false);
            }
            let msg = match found.strip_prefix("raft-node-store ") {
                Some(v) => format!(
                    "{} holds store format {v}, but this build reads format {FORMAT_VERSION}; \
                     use a matching build, or start this node with an empty data directory",
                    dir.display()
                ),
                None => format!(
                    "{} does not identify a raft-node store (found {found:?}, expected {:?})",
                    path.display(),
                    FORMAT_LINE.trim()
                ),
            };
            Err(StoreError::Incompatible(msg))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let has_segments = wal_dir.is_dir()
                && fsutil::list_files(wal_dir)?
                    .iter()
                    .any(|n| segment::parse_name(n).is_some());
            let has_snapshots = snap_dir.is_dir()
                && fsutil::list_files(snap_dir)?
                    .iter()
                    .any(|n| snapfile::parse_name(n).is_some());
            if has_segments || has_snapshots {
                return Err(StoreError::Incompatible(format!(
                    "{} holds store files but no {FORMAT_FILE} marker: written by an older or foreign version",
                    dir.display()
                )));
            }
            fsutil::write_atomic(&path, FORMAT_LINE.as_bytes(), metrics)?;
            tracing::info!(dir = %dir.display(), "created a new raft store");
            Ok(true)
        }
        Err(e) => Err(StoreError::io(format!("open {}", path.display()), e)),
    }
}

/// Removes `*.tmp` leftovers of writes a crash interrupted.
fn remove_tmp_files(dir: &Path, metrics: &WalMetrics) -> Result<usize, StoreError> {
    let mut n = 0;
    for name in fsutil::list_files(dir)? {
        if name.ends_with(".tmp") {
            let p = dir.join(&name);
            tracing::info!(file = %p.display(), "removing a temporary file left by an interrupted write");
            fsutil::remove_file(&p)?;
            n += 1;
        }
    }
    if n > 0 {
        fsutil::sync_dir(dir, metrics)?;
    }
    Ok(n)
}

/// Finds the newest valid snapshot and removes the older ones. Damaged
/// snapshots newer than it are left in place for inspection (and removed by
/// the next snapshot save).
fn pick_snapshot(
    snap_dir: &Path,
    metrics: &WalMetrics,
) -> Result<(Option<SnapshotMeta>, usize), StoreError> {
    let mut snaps: Vec<(u64, u64, String)> = fsutil::list_files(snap_dir)?
        .into_iter()
        .filter_map(|n| snapfile::parse_name(&n).map(|(i, t)| (i, t, n)))
        .collect();
    snaps.sort_unstable_by_key(|s| std::cmp::Reverse((s.0, s.1)));
    let mut chosen = None;
    let mut pruned = 0;
    for (index, term, name) in snaps {
        let path = snap_dir.join(&name);
        if chosen.is_some() {
            fsutil::remove_file(&path)?;
            pruned += 1;
            continue;
        }
        match snapfile::read(&path, false)? {
            snapfile::Loaded::Valid { meta, .. } if (meta.index, meta.term) == (index, term) => {
                chosen = Some(meta);
            }
            snapfile::Loaded::Valid { meta, .. } => tracing::warn!(
                file = %path.display(),
                index = meta.index,
                term = meta.term,
                "ignoring a snapshot whose contents do not match its name"
            ),
            snapfile::Loaded::Damaged { offset, reason } => tracing::warn!(
                file = %path.display(),
                offset,
                reason = %reason,
                "ignoring a damaged snapshot"
            ),
        }
    }
    if pruned > 0 {
        fsutil::sync_dir(snap_dir, metrics)?;
        tracing::info!(pruned, "removed older snapshots");
    }
    Ok((chosen, pruned))
}
