//! WAL segment files: naming, sequential reading with damage
//! classification, and the scan that tells a torn tail from damage in the
//! middle of the log.

use super::record::{Header, HeaderError, HEADER_LEN};
use crate::store::StoreError;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The file name of segment `seq`. Zero-padded so that names sort by seq.
pub(crate) fn file_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

/// The seq a segment file name stands for.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What the reader found at its position.
#[derive(Debug)]
pub(crate) enum Item {
    /// A record whose header and payload checksums match.
    Record {
        offset: u64,
        header: Header,
        payload: Vec<u8>,
    },
    /// The file ends cleanly at a record boundary.
    End,
    /// The file ends inside a record: a write cut short. Nothing can follow.
    Incomplete { offset: u64, reason: String },
    /// The record at `offset` fails its checksum. Whether it is a torn tail
    /// depends on whether any valid record follows from `scan_from` on.
    Damaged {
        offset: u64,
        reason: String,
        scan_from: u64,
    },
    /// A header with a valid checksum but impossible content: not a torn
    /// write, so never cut.
    Implausible { offset: u64, reason: String },
}

/// Reads one segment front to back. Memory use is bounded by the largest
/// record ([`super::record::MAX_PAYLOAD`]) and the file's real size, never
/// by what a length field claims.
#[derive(Debug)]
pub(crate) struct Reader {
    r: BufReader<File>,
    path: PathBuf,
    pos: u64,
    len: u64,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader, StoreError> {
        let f =
            File::open(path).map_err(|e| StoreError::io(format!("open {}", path.display()), e))?;
        let len = f
            .metadata()
            .map_err(|e| StoreError::io(format!("stat {}", path.display()), e))?
            .len();
        Ok(Reader {
            r: BufReader::with_capacity(1 << 20, f),
            path: path.to_owned(),
            pos: 0,
            len,
        })
    }

    /// The file's length when it was opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), StoreError> {
        self.r
            .read_exact(buf)
            .map_err(|e| StoreError::io(format!("read {}", self.path.display()), e))
    }

    pub fn next_item(&mut self) -> Result<Item, StoreError> {
        let offset = self.pos;
        let remaining = self.len - offset;
        if remaining == 0 {
            return Ok(Item::End);
        }
        if remaining < HEADER_LEN as u64 {
            return Ok(Item::Incomplete {
                offset,
                reason: format!("{remaining} bytes left, a record header needs {HEADER_LEN}"),
            });
        }
        let mut hb = [0u8; HEADER_LEN];
        self.read_exact(&mut hb)?;
        let header = match Header::decode(&hb) {
            Ok(h) => h,
            Err(HeaderError::Checksum) => {
                return Ok(Item::Damaged {
                    offset,
                    reason: "record header checksum mismatch".into(),
                    scan_from: offset + 1,
                })
            }
            Err(HeaderError::Implausible(reason)) => {
                return Ok(Item::Implausible { offset, reason })
            }
        };
        if header.record_len() > remaining {
            return Ok(Item::Incomplete {
                offset,
                reason: format!(
                    "record of {} bytes but only {remaining} bytes left in the file",
                    header.record_len()
                ),
            });
        }
        let mut payload = vec![0u8; header.len as usize];
        self.read_exact(&mut payload)?;
        if crc32fast::hash(&payload) != header.payload_crc {
            return Ok(Item::Damaged {
                offset,
                reason: "record payload checksum mismatch".into(),
                scan_from: offset + header.record_len(),
            });
        }
        self.pos += header.record_len();
        Ok(Item::Record {
            offset,
            header,
            payload,
        })
    }
}

/// The offset of the first plausible record header with a valid checksum at
/// or after `from`, if any. Damage followed by such a header is damage in
/// the middle of the log, never a torn tail.
///
/// Runs only when damage was found, and in time linear in the bytes after
/// it: the header checksum is computed only where the cheap field checks
/// pass.
pub(crate) fn find_valid_header(path: &Path, from: u64) -> Result<Option<u64>, StoreError> {
    let ioerr = |e| StoreError::io(format!("scan {}", path.display()), e);
    let mut f =
        File::open(path).map_err(|e| StoreError::io(format!("open {}", path.display()), e))?;
    f.seek(SeekFrom::Start(from)).map_err(ioerr)?;
    let mut window: Vec<u8> = Vec::with_capacity((1 << 20) + HEADER_LEN);
    let mut chunk = vec![0u8; 1 << 20];
    let mut base = from;
    loop {
        let n = f.read(&mut chunk).map_err(ioerr)?;
        window.extend_from_slice(&chunk[..n]);
        let mut i = 0;
        while i + HEADER_LEN <= window.len() {
            if Header::plausible(&window[i..]) {
                let hb: &[u8; HEADER_LEN] = window[i..i + HEADER_LEN].try_into().expect("32 bytes");
                if Header::decode(hb).is_ok() {
                    return Ok(Some(base + i as u64));
                }
            }
            i += 1;
        }
        window.drain(..i);
        base += i as u64;
        if n == 0 {
            return Ok(None);
        }
    }
}
