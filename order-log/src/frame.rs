//! The on-disk record format.
//!
//! A frame is `[u32 LE payload length][u32 LE crc32 of payload][payload]`,
//! where the payload is the JSON of one `LogRecord`. JSON keeps the file
//! readable with ordinary tools during an incident; the crc catches torn
//! writes and bit rot; the length limit keeps a damaged length field from
//! making a reader allocate gigabytes.

use engine::ports::LogRecord;

/// Bytes of the frame header: payload length, then crc32.
pub const FRAME_HEADER_LEN: usize = 8;
/// Largest accepted payload, in bytes, on write and on read. An order record
/// is a few hundred bytes; anything near this limit is a bug or damage.
pub const RECORD_PAYLOAD_LEN_MAX: usize = 64 * 1024;

/// Why a record could not be framed for writing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("record is {len} bytes, over the {RECORD_PAYLOAD_LEN_MAX}-byte limit")]
    TooLarge { len: usize },
    #[error("record cannot be serialized: {0}")]
    Serialize(String),
}

/// Frames one record: header and payload in one buffer, ready to append.
pub fn encode(record: &LogRecord) -> Result<Vec<u8>, EncodeError> {
    encode_limited(record, RECORD_PAYLOAD_LEN_MAX)
}

/// [`encode`] with the payload limit as a parameter, so tests can reach the
/// refusal with a real record (valid ids keep real records far below it).
fn encode_limited(record: &LogRecord, payload_len_max: usize) -> Result<Vec<u8>, EncodeError> {
    debug_assert!(payload_len_max <= RECORD_PAYLOAD_LEN_MAX);
    let mut frame = vec![0u8; FRAME_HEADER_LEN];
    serde_json::to_writer(&mut frame, record).map_err(|e| EncodeError::Serialize(e.to_string()))?;
    let payload_len = frame.len() - FRAME_HEADER_LEN;
    if payload_len > payload_len_max {
        return Err(EncodeError::TooLarge { len: payload_len });
    }
    // In range: payload_len <= RECORD_PAYLOAD_LEN_MAX < u32::MAX.
    let len_le = (payload_len as u32).to_le_bytes();
    let crc_le = crc32fast::hash(&frame[FRAME_HEADER_LEN..]).to_le_bytes();
    frame[..4].copy_from_slice(&len_le);
    frame[4..FRAME_HEADER_LEN].copy_from_slice(&crc_le);
    Ok(frame)
}

/// A frame header as read, before the payload is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub payload_len: usize,
    pub crc: u32,
}

impl Header {
    pub fn parse(bytes: [u8; FRAME_HEADER_LEN]) -> Self {
        let [l0, l1, l2, l3, c0, c1, c2, c3] = bytes;
        Self {
            payload_len: u32::from_le_bytes([l0, l1, l2, l3]) as usize,
            crc: u32::from_le_bytes([c0, c1, c2, c3]),
        }
    }

    /// Whole frame length, header included.
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER_LEN + self.payload_len
    }

    /// Refuses lengths no writer produces. Zero matters: the crc32 of an
    /// empty payload is 0, so a run of zero bytes would otherwise pass the crc.
    pub fn check_len(&self) -> Result<(), String> {
        if self.payload_len == 0 {
            Err("empty payload".into())
        } else if self.payload_len > RECORD_PAYLOAD_LEN_MAX {
            Err(format!(
                "payload length {} over the {RECORD_PAYLOAD_LEN_MAX}-byte limit",
                self.payload_len
            ))
        } else {
            Ok(())
        }
    }
}

/// Checks a payload against its header's crc, then parses it.
pub(crate) fn check_payload(header: &Header, payload: &[u8]) -> Result<LogRecord, PayloadError> {
    if crc32fast::hash(payload) != header.crc {
        return Err(PayloadError::Crc);
    }
    serde_json::from_slice(payload).map_err(|e| PayloadError::Parse(e.to_string()))
}

/// Why a complete payload was refused. The two cases differ for recovery: a
/// crc failure can be a torn write, a parse failure after a good crc cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PayloadError {
    Crc,
    Parse(String),
}

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PayloadError::Crc => f.write_str("crc mismatch"),
            PayloadError::Parse(e) => write!(f, "crc ok but record does not parse: {e}"),
        }
    }
}

/// What the start of a buffer holds.
#[derive(Debug)]
pub enum Decoded {
    Record {
        record: LogRecord,
        frame_len: usize,
    },
    /// The buffer ends before the frame does.
    Incomplete,
    Bad {
        reason: String,
    },
}

/// Decodes the frame at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded {
    let Some((head, rest)) = buf.split_first_chunk::<FRAME_HEADER_LEN>() else {
        return Decoded::Incomplete;
    };
    let header = Header::parse(*head);
    if let Err(reason) = header.check_len() {
        return Decoded::Bad { reason };
    }
    let Some(payload) = rest.get(..header.payload_len) else {
        return Decoded::Incomplete;
    };
    match check_payload(&header, payload) {
        Ok(record) => Decoded::Record {
            record,
            frame_len: header.frame_len(),
        },
        Err(e) => Decoded::Bad {
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::record;

    #[test]
    fn round_trips_and_reports_length() {
        let frame = encode(&record(7)).expect("encodes");
        match decode(&frame) {
            Decoded::Record {
                record: got,
                frame_len,
            } => {
                assert_eq!(got, record(7));
                assert_eq!(frame_len, frame.len());
            }
            other => panic!("expected a record, got {other:?}"),
        }
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        let frame = encode(&record(1)).expect("encodes");
        for cut in 0..frame.len() {
            assert!(
                matches!(decode(&frame[..cut]), Decoded::Incomplete),
                "prefix of {cut} bytes"
            );
        }
    }

    #[test]
    fn any_flipped_payload_byte_is_bad() {
        let frame = encode(&record(1)).expect("encodes");
        for i in FRAME_HEADER_LEN..frame.len() {
            let mut f = frame.clone();
            f[i] ^= 0x40;
            assert!(matches!(decode(&f), Decoded::Bad { .. }), "byte {i}");
        }
    }

    #[test]
    fn zeros_and_oversize_lengths_are_bad_without_reading_payload() {
        assert!(matches!(decode(&[0u8; 64]), Decoded::Bad { .. }));
        let mut head = [0u8; FRAME_HEADER_LEN];
        head[..4].copy_from_slice(&(RECORD_PAYLOAD_LEN_MAX as u32 + 1).to_le_bytes());
        assert!(matches!(decode(&head), Decoded::Bad { .. }));
    }

    #[test]
    fn good_crc_over_non_json_is_a_parse_error() {
        let payload = b"not json";
        let header = Header {
            payload_len: payload.len(),
            crc: crc32fast::hash(payload),
        };
        assert!(matches!(
            check_payload(&header, payload),
            Err(PayloadError::Parse(_))
        ));
    }

    #[test]
    fn oversize_record_is_refused_on_write() {
        let len = encode(&record(1)).expect("encodes").len() - FRAME_HEADER_LEN;
        assert!(encode_limited(&record(1), len).is_ok());
        assert_eq!(
            encode_limited(&record(1), len - 1),
            Err(EncodeError::TooLarge { len })
        );
    }
}
