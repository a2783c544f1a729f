//! The order-log record decoder: `order_log::frame::decode` (file log
//! frames) and the record JSON that the Kafka consumer parses.
//!
//! Input: one mode byte, then
//! - even mode: raw bytes given to the frame decoder;
//! - odd mode: a payload, framed here with its true length and crc32, so
//!   the fuzzer reaches the record parser behind the crc check.
#![no_main]

use engine::ports::LogRecord;
use libfuzzer_sys::fuzz_target;
use order_log::frame::{decode, encode, Decoded, FRAME_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let framed;
    let buf = if mode & 1 == 0 {
        rest
    } else {
        let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
        let mut f = Vec::with_capacity(FRAME_HEADER_LEN + rest.len());
        f.extend_from_slice(&len.to_le_bytes());
        f.extend_from_slice(&crc32fast::hash(rest).to_le_bytes());
        f.extend_from_slice(rest);
        framed = f;
        &framed
    };
    match decode(buf) {
        Decoded::Record { record, frame_len } => {
            assert!(frame_len > FRAME_HEADER_LEN && frame_len <= buf.len());
            // A decoded record frames again and decodes to itself.
            let again = encode(&record).expect("a decoded record encodes");
            match decode(&again) {
                Decoded::Record { record: back, .. } => assert_eq!(back, record),
                other => panic!("re-encoded record does not decode: {other:?}"),
            }
        }
        Decoded::Incomplete => assert!(buf.len() < FRAME_HEADER_LEN || mode & 1 == 0),
        Decoded::Bad { .. } => {}
    }
    // The Kafka consumer parses message payloads with the same type.
    if let Ok(record) = serde_json::from_slice::<LogRecord>(rest) {
        let json = serde_json::to_vec(&record).expect("a record serializes");
        let back: LogRecord = serde_json::from_slice(&json).expect("and parses back");
        assert_eq!(back, record);
    }
});
