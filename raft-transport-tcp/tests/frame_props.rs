//! Property tests of the frame decoder: arbitrary bytes never panic it or
//! make it ask for more than the frame limit, and any chunking of a valid
//! stream decodes to the same messages.

use bytes::Bytes;
use proptest::prelude::*;
use raft_core::{Body, Entry, EntryKind, Message, NodeId};
use raft_transport_tcp::frame::{
    check_end_of_stream, decode_frame, encode_frame, Decoded, FrameError, HEADER_LEN, KEEPALIVE,
};

const MAX: usize = 4096;

fn message() -> impl Strategy<Value = Message> {
    let body = prop_oneof![
        (any::<u64>(), any::<u64>())
            .prop_map(|(leader_commit, ctx)| Body::Heartbeat { leader_commit, ctx }),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)
        )
            .prop_map(
                |(prev_log_index, prev_log_term, datas)| Body::AppendEntries {
                    prev_log_index,
                    prev_log_term,
                    entries: datas
                        .into_iter()
                        .enumerate()
                        .map(|(i, d)| Entry {
                            term: 1,
                            index: i as u64 + 1,
                            kind: EntryKind::Normal,
                            data: Bytes::from(d)
                        })
                        .collect(),
                    leader_commit: 0,
                }
            ),
        Just(Body::TimeoutNow),
    ];
    (1u64..10, 1u64..10, any::<u64>(), body).prop_map(|(f, t, term, body)| Message {
        from: NodeId(f),
        to: NodeId(t),
        term,
        body,
    })
}

/// Feeds `stream` to a reader in the given chunk sizes, as the transport
/// does; returns the messages and the error that stopped it, if any.
fn read_all(stream: &[u8], chunks: &[usize]) -> (Vec<Message>, Option<FrameError>) {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut sizes = chunks.iter().cycle();
    loop {
        loop {
            match decode_frame(&buf, MAX) {
                Ok(Decoded::Incomplete { needed }) => {
                    assert!(needed > buf.len(), "asked for bytes it already has");
                    assert!(
                        needed <= MAX + HEADER_LEN,
                        "asked for {needed} bytes, past the limit"
                    );
                    break;
                }
                Ok(Decoded::Keepalive { consumed }) => {
                    assert!(consumed <= buf.len());
                    buf.drain(..consumed);
                }
                Ok(Decoded::Message { msg, consumed }) => {
                    assert!(consumed <= buf.len() && consumed > HEADER_LEN);
                    buf.drain(..consumed);
                    out.push(msg);
                }
                Err(e) => return (out, Some(e)),
            }
        }
        if pos == stream.len() {
            return (out, check_end_of_stream(&buf).err());
        }
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, stream.len() - pos);
        buf.extend_from_slice(&stream[pos..pos + n]);
        pos += n;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic_and_stay_bounded(
        stream in proptest::collection::vec(any::<u8>(), 0..2048),
        chunks in proptest::collection::vec(1usize..300, 1..8),
    ) {
        let _ = read_all(&stream, &chunks);
    }

    #[test]
    fn random_bodies_behind_valid_prefixes_never_panic(
        bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..6),
        chunks in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let mut stream = Vec::new();
        for b in &bodies {
            stream.extend_from_slice(&(b.len() as u32).to_be_bytes());
            stream.extend_from_slice(b);
        }
        let (_, err) = read_all(&stream, &chunks);
        // Every frame is complete, so the only possible failure is a body
        // that does not decode.
        prop_assert!(matches!(err, None | Some(FrameError::Codec(_))), "{err:?}");
    }

    #[test]
    fn any_chunking_of_a_valid_stream_yields_the_messages(
        msgs in proptest::collection::vec(message(), 0..20),
        keepalives in proptest::collection::vec(any::<bool>(), 20),
        chunks in proptest::collection::vec(1usize..100, 1..10),
    ) {
        let mut stream = Vec::new();
        for (m, k) in msgs.iter().zip(&keepalives) {
            if *k {
                stream.extend_from_slice(&KEEPALIVE);
            }
            stream.extend_from_slice(&encode_frame(m, MAX).unwrap());
        }
        let (got, err) = read_all(&stream, &chunks);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, msgs);
    }

    #[test]
    fn a_cut_valid_stream_reports_truncation(
        msgs in proptest::collection::vec(message(), 1..6),
        cut_seed in any::<usize>(),
        chunks in proptest::collection::vec(1usize..50, 1..5),
    ) {
        let mut stream = Vec::new();
        let mut boundaries = vec![0];
        for m in &msgs {
            stream.extend_from_slice(&encode_frame(m, MAX).unwrap());
            boundaries.push(stream.len());
        }
        let cut = cut_seed % stream.len();
        let (got, err) = read_all(&stream[..cut], &chunks);
        let complete = boundaries.iter().filter(|&&b| b <= cut).count() - 1;
        prop_assert_eq!(&got[..], &msgs[..complete]);
        if boundaries.contains(&cut) {
            prop_assert_eq!(err, None);
        } else {
            prop_assert!(matches!(err, Some(FrameError::Truncated { .. })), "{err:?}");
        }
    }

    #[test]
    fn an_oversized_prefix_is_refused_without_its_body(len in (MAX as u32 + 1)..=u32::MAX, extra in proptest::collection::vec(any::<u8>(), 0..16)) {
        let mut stream = len.to_be_bytes().to_vec();
        stream.extend_from_slice(&extra);
        prop_assert_eq!(
            decode_frame(&stream, MAX),
            Err(FrameError::TooLarge { len: len as usize, max: MAX })
        );
    }
}
