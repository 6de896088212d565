//! Tests of the frame format. The property tests check that arbitrary bytes
//! never panic the decoder or make it ask for more than the frame limit, and
//! that any chunking of a valid stream decodes to the same messages.

use super::*;
use crate::message::{Body, Entry, EntryKind};
use crate::types::NodeId;
use bytes::Bytes;
use proptest::prelude::*;

fn hb(ctx: u64) -> Message {
    Message {
        from: NodeId(1),
        to: NodeId(2),
        term: 3,
        body: Body::Heartbeat {
            leader_commit: 9,
            ctx,
        },
    }
}

#[test]
fn round_trip_and_keepalive() {
    let mut buf = encode_frame(&hb(1), DEFAULT_MAX_FRAME).unwrap();
    buf.extend_from_slice(&KEEPALIVE);
    let Decoded::Message { msg, consumed } = decode_frame(&buf, DEFAULT_MAX_FRAME).unwrap() else {
        panic!("expected a message")
    };
    assert_eq!(msg, hb(1));
    assert_eq!(
        decode_frame(&buf[consumed..], DEFAULT_MAX_FRAME).unwrap(),
        Decoded::Keepalive { consumed: 4 }
    );
}

#[test]
fn oversized_prefix_is_rejected_before_the_body_arrives() {
    let buf = 1025u32.to_be_bytes();
    assert_eq!(
        decode_frame(&buf, 1024),
        Err(FrameError::TooLarge {
            len: 1025,
            max: 1024
        })
    );
    assert_eq!(
        decode_frame(&1024u32.to_be_bytes(), 1024),
        Ok(Decoded::Incomplete { needed: 1028 })
    );
}

#[test]
fn encoding_refuses_messages_over_the_limit() {
    let frame = encode_frame(&hb(1), DEFAULT_MAX_FRAME).unwrap();
    let body_len = frame.len() - HEADER_LEN;
    let mut out = vec![7u8];
    assert!(matches!(
        encode_frame_into(&hb(1), body_len - 1, &mut out),
        Err(FrameError::TooLarge { .. })
    ));
    assert_eq!(
        out,
        vec![7u8],
        "a refused frame leaves the buffer untouched"
    );
    encode_frame_into(&hb(1), body_len, &mut out).unwrap();
    assert_eq!(&out[1..], &frame[..]);
}

#[test]
fn encoding_for_send_names_the_size_and_the_limit() {
    let frame = encode_frame(&hb(1), DEFAULT_MAX_FRAME).unwrap();
    let body_len = frame.len() - HEADER_LEN;
    assert_eq!(encode_for_send(&hb(1), body_len), Ok(frame));
    assert_eq!(
        encode_for_send(&hb(1), body_len - 1),
        Err(SendError::TooLarge {
            size: body_len,
            limit: body_len - 1
        })
    );
}

#[test]
fn a_batch_skips_keepalives_and_stops_at_the_incomplete_frame() {
    let mut buf = encode_frame(&hb(1), DEFAULT_MAX_FRAME).unwrap();
    let one = buf.len();
    buf.extend_from_slice(&KEEPALIVE);
    buf.extend_from_slice(&encode_frame(&hb(2), DEFAULT_MAX_FRAME).unwrap());
    let whole = buf.len();
    let third = encode_frame(&hb(3), DEFAULT_MAX_FRAME).unwrap();
    buf.extend_from_slice(&third[..3]);
    let mut out = Vec::new();
    let d = decode_batch(&buf, DEFAULT_MAX_FRAME, NodeId(1), NodeId(2), &mut out).unwrap();
    assert_eq!(out, vec![hb(1), hb(2)]);
    assert_eq!(
        d,
        Drained {
            consumed: whole,
            message_bytes: 2 * one,
            needed: HEADER_LEN,
        }
    );
    buf.extend_from_slice(&third[3..HEADER_LEN]);
    out.clear();
    let d = decode_batch(
        &buf[whole..],
        DEFAULT_MAX_FRAME,
        NodeId(1),
        NodeId(2),
        &mut out,
    )
    .unwrap();
    assert!(out.is_empty());
    assert_eq!(d.needed, third.len());
}

#[test]
fn a_batch_refuses_messages_not_between_the_connection_ends() {
    let buf = encode_frame(&hb(1), DEFAULT_MAX_FRAME).unwrap();
    let mut out = Vec::new();
    let e = decode_batch(&buf, DEFAULT_MAX_FRAME, NodeId(5), NodeId(2), &mut out).unwrap_err();
    assert_eq!(
        e,
        FrameError::WrongSender {
            claimed: NodeId(1),
            peer: NodeId(5)
        }
    );
    assert_eq!(
        e.to_string(),
        "message claims to come from node 1 on a connection from node 5"
    );
    let e = decode_batch(&buf, DEFAULT_MAX_FRAME, NodeId(1), NodeId(7), &mut out).unwrap_err();
    assert_eq!(
        e.to_string(),
        "message addressed to node 2 arrived at node 7"
    );
    assert_eq!(
        decode_batch(&[0, 0, 0, 9], 8, NodeId(1), NodeId(2), &mut out),
        Err(FrameError::TooLarge { len: 9, max: 8 })
    );
}

#[test]
fn leftover_bytes_at_end_of_stream_are_a_truncation() {
    assert_eq!(check_end_of_stream(&[]), Ok(()));
    assert_eq!(
        check_end_of_stream(&[0, 0]),
        Err(FrameError::Truncated { buffered: 2 })
    );
}

#[test]
fn prefixes_of_a_frame_are_incomplete_and_garbage_is_refused() {
    let m = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: 1,
        body: Body::TimeoutNow,
    };
    let f = encode_frame(&m, DEFAULT_MAX_FRAME).unwrap();
    for cut in 0..f.len() {
        assert!(matches!(
            decode_frame(&f[..cut], DEFAULT_MAX_FRAME),
            Ok(Decoded::Incomplete { .. })
        ));
    }
    assert!(matches!(
        decode_frame(&[0, 0, 0, 2, 0xff, 0xff], 8),
        Err(FrameError::Codec(_))
    ));
}

// Property tests: a reader fed in arbitrary chunks, as the transports feed it.

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
