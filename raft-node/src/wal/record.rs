//! The framing of one WAL record: a fixed 32-byte header followed by a
//! payload.
//!
//! ```text
//! offset size field
//!      0    4 header_crc   crc32 of bytes 4..32 of the header
//!      4    4 len          payload length in bytes
//!      8    8 index        log index (entries), seq (segment header),
//!                          base index (reset), commit (hard state)
//!     16    8 term         term of the entry / of the reset base / hard state
//!     24    1 type         1 segment header, 2 entry, 3 hard state, 4 reset
//!     25    1 kind         entry kind (0 normal, 1 conf change, 2 no-op)
//!     26    2 reserved     zero
//!     28    4 payload_crc  crc32 of the payload
//! ```
//!
//! The header has its own checksum so that a length is trusted only when the
//! header is intact: a damaged header never makes the reader skip over (and
//! so silently drop) the records behind it. All integers are little-endian.

use raft_core::EntryKind;

/// Bytes in a record header.
pub(crate) const HEADER_LEN: usize = 32;

/// The largest payload a record may carry. Bounds the memory one record can
/// make recovery allocate, whatever a damaged or hostile file says.
pub(crate) const MAX_PAYLOAD: u32 = 256 << 20;

/// What a record holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum RecordType {
    /// First record of every segment: format, seq and the hard state in force
    /// when the segment was started (postcard [`SegmentHeaderBody`]).
    SegmentHeader = 1,
    /// A log entry; `data` is the payload.
    Entry = 2,
    /// A new hard state (postcard [`raft_core::HardState`]).
    HardState = 3,
    /// The log was replaced by a snapshot: drop every entry; the next entry
    /// is `index + 1`. No payload.
    Reset = 4,
}

impl RecordType {
    fn from_u8(v: u8) -> Option<RecordType> {
        match v {
            1 => Some(RecordType::SegmentHeader),
            2 => Some(RecordType::Entry),
            3 => Some(RecordType::HardState),
            4 => Some(RecordType::Reset),
            _ => None,
        }
    }
}

/// The payload of a [`RecordType::SegmentHeader`] record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SegmentHeaderBody {
    /// The on-disk format version ([`super::FORMAT_VERSION`]).
    pub format: u32,
    /// The segment's sequence number, as in its file name.
    pub seq: u64,
    /// The hard state in force when the segment was started, so that the
    /// newest hard state survives the deletion of older segments.
    pub hard_state: raft_core::HardState,
}

/// A decoded, checksum-verified record header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub len: u32,
    pub index: u64,
    pub term: u64,
    pub ty: RecordType,
    pub kind: u8,
    pub payload_crc: u32,
}

/// Why 32 bytes are not a valid header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// The header checksum does not match: the bytes are damaged or were
    /// never a header.
    Checksum,
    /// The checksum matches but a field is impossible (unknown type, a length
    /// above [`MAX_PAYLOAD`]): written by another format, not torn.
    Implausible(String),
}

impl Header {
    /// The total size of the record this header starts.
    pub fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.len)
    }

    /// Parses and verifies a header.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, HeaderError> {
        let stored = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if crc32fast::hash(&b[4..]) != stored {
            return Err(HeaderError::Checksum);
        }
        let len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let index = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
        let term = u64::from_le_bytes(b[16..24].try_into().expect("8 bytes"));
        let ty = RecordType::from_u8(b[24])
            .ok_or_else(|| HeaderError::Implausible(format!("unknown record type {}", b[24])))?;
        let kind = b[25];
        if b[26] != 0 || b[27] != 0 {
            return Err(HeaderError::Implausible(
                "reserved header bytes are not zero".into(),
            ));
        }
        if len > MAX_PAYLOAD {
            return Err(HeaderError::Implausible(format!(
                "record length {len} exceeds the limit of {MAX_PAYLOAD} bytes"
            )));
        }
        let payload_crc = u32::from_le_bytes([b[28], b[29], b[30], b[31]]);
        Ok(Header {
            len,
            index,
            term,
            ty,
            kind,
            payload_crc,
        })
    }

    /// A cheap pre-filter for scanning damaged regions: whether these bytes
    /// could be a header at all, before paying for the checksum.
    pub fn plausible(b: &[u8]) -> bool {
        b.len() >= HEADER_LEN
            && RecordType::from_u8(b[24]).is_some()
            && b[25] <= 2
            && b[26] == 0
            && b[27] == 0
    }
}

/// Appends one record to `buf`.
pub(crate) fn encode(
    buf: &mut Vec<u8>,
    ty: RecordType,
    kind: u8,
    index: u64,
    term: u64,
    payload: &[u8],
) {
    debug_assert!(payload.len() <= MAX_PAYLOAD as usize);
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 4]);
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&index.to_le_bytes());
    buf.extend_from_slice(&term.to_le_bytes());
    buf.push(ty as u8);
    buf.push(kind);
    buf.extend_from_slice(&[0u8; 2]);
    buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let crc = crc32fast::hash(&buf[start + 4..start + HEADER_LEN]);
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// The on-disk code of an entry kind.
pub(crate) fn kind_to_u8(kind: EntryKind) -> u8 {
    match kind {
        EntryKind::Normal => 0,
        EntryKind::ConfChange => 1,
        EntryKind::Noop => 2,
    }
}

/// The entry kind of an on-disk code.
pub(crate) fn kind_from_u8(v: u8) -> Option<EntryKind> {
    match v {
        0 => Some(EntryKind::Normal),
        1 => Some(EntryKind::ConfChange),
        2 => Some(EntryKind::Noop),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_any_flipped_bit_is_caught() {
        let mut buf = Vec::new();
        encode(&mut buf, RecordType::Entry, 1, 42, 7, b"hello");
        let h: [u8; HEADER_LEN] = buf[..HEADER_LEN].try_into().unwrap();
        let d = Header::decode(&h).unwrap();
        assert_eq!(
            (d.len, d.index, d.term, d.ty, d.kind),
            (5, 42, 7, RecordType::Entry, 1)
        );
        assert_eq!(d.payload_crc, crc32fast::hash(b"hello"));
        for byte in 0..HEADER_LEN {
            for bit in 0..8 {
                let mut bad = h;
                bad[byte] ^= 1 << bit;
                assert!(
                    Header::decode(&bad).is_err(),
                    "flip at {byte}:{bit} undetected"
                );
            }
        }
    }

    #[test]
    fn zeroed_header_is_not_valid() {
        assert_eq!(
            Header::decode(&[0u8; HEADER_LEN]),
            Err(HeaderError::Checksum)
        );
    }
}
