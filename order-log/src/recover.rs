//! Validation of an existing log file at open, and torn-tail truncation.
//!
//! An append is acknowledged only after the fsync that covers it, so a crash
//! can damage only bytes that nobody was told are durable, and only at the
//! end of the file. Recovery therefore forgives exactly one shape of damage:
//! a bad frame (short, over-long, failing its crc) after which **no valid
//! frame starts anywhere** in the rest of the file. That tail is cut off so
//! new appends start on a clean boundary. A bad frame followed by a valid one
//! may hide an acknowledged winner, so it stops the open with
//! `LogError::Corrupt`: a refused start can be repaired by an operator, a
//! silently dropped winner cannot.
//!
//! A frame whose crc matches but whose JSON does not parse is never a tail:
//! a crash does not produce a matching crc, a format mismatch does.
//!
//! Known limit: one batch is one `write`; if a crash persists its pages out
//! of order (a hole, then later records of the same unacknowledged batch),
//! the file looks damaged in the middle and open refuses it. That is the
//! safe side; the records after the hole were never acknowledged.

use crate::frame::{
    check_payload, decode, Decoded, Header, PayloadError, FRAME_HEADER_LEN, RECORD_PAYLOAD_LEN_MAX,
};
use crate::{LogError, Positioned};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// Read buffer for the scan: large sequential reads, bounded memory.
const SCAN_BUF_LEN: usize = 1 << 20;

/// What recovery found and did.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Every valid record, in file order.
    pub records: Vec<Positioned>,
    /// End of the last valid record; the file's length after recovery.
    pub end: u64,
    /// Bytes cut off as a torn tail.
    pub truncated_len: u64,
}

/// How the scan ended.
#[derive(Debug)]
enum Stop {
    Clean,
    Torn { reason: String },
}

/// One step of the scan.
#[derive(Debug)]
enum Step {
    Record(Positioned),
    End(Stop),
}

/// Why the scan could not finish.
#[derive(Debug)]
enum ScanError {
    Io(std::io::Error),
    Corrupt { offset: u64, reason: String },
}

impl From<std::io::Error> for ScanError {
    fn from(e: std::io::Error) -> Self {
        ScanError::Io(e)
    }
}

/// Validates every frame of `file`, truncates a torn tail and makes the
/// truncation durable before returning.
pub(crate) fn recover(file: &File, path: &Path) -> Result<Recovered, LogError> {
    let file_len = file
        .metadata()
        .map_err(|e| LogError::io("cannot stat", path, e))?
        .len();
    let (records, end, stop) = scan(file, file_len).map_err(|e| match e {
        ScanError::Io(e) => LogError::io("cannot read", path, e),
        ScanError::Corrupt { offset, reason } => LogError::Corrupt { offset, reason },
    })?;
    let truncated_len = file_len - end;
    if let Stop::Torn { reason } = stop {
        tracing::warn!(
            path = %path.display(),
            offset = end,
            truncated_len,
            %reason,
            "order log: cutting off a torn tail left by a crash (never acknowledged)"
        );
        file.set_len(end)
            .map_err(|e| LogError::io("cannot truncate", path, e))?;
        // The new length is metadata; sync_all makes sure it is on disk
        // before appends land after it.
        file.sync_all()
            .map_err(|e| LogError::io("cannot fsync", path, e))?;
    }
    Ok(Recovered {
        records,
        end,
        truncated_len,
    })
}

/// Walks the frames from the start of the file.
fn scan(file: &File, file_len: u64) -> Result<(Vec<Positioned>, u64, Stop), ScanError> {
    let mut rd = BufReader::with_capacity(SCAN_BUF_LEN, file);
    rd.seek(SeekFrom::Start(0))?;
    let mut records = Vec::new();
    let mut payload = Vec::new();
    let mut off = 0u64;
    loop {
        match next_frame(&mut rd, off, file_len, &mut payload)? {
            Step::Record(p) => {
                off = p.end;
                records.push(p);
            }
            Step::End(stop) => return Ok((records, off, stop)),
        }
    }
}

/// Reads and judges the frame at `off`; `rd` must be positioned there.
fn next_frame(
    rd: &mut BufReader<&File>,
    off: u64,
    file_len: u64,
    payload: &mut Vec<u8>,
) -> Result<Step, ScanError> {
    let remaining = file_len - off;
    if remaining == 0 {
        return Ok(Step::End(Stop::Clean));
    }
    let reason = if remaining < FRAME_HEADER_LEN as u64 {
        "incomplete header".to_string()
    } else {
        let mut head = [0u8; FRAME_HEADER_LEN];
        rd.read_exact(&mut head)?;
        let header = Header::parse(head);
        let frame_end = off + header.frame_len() as u64;
        if let Err(reason) = header.check_len() {
            reason
        } else if frame_end > file_len {
            "frame runs past the end of the file".to_string()
        } else {
            payload.resize(header.payload_len, 0);
            rd.read_exact(payload)?;
            match check_payload(&header, payload) {
                Ok(record) => {
                    return Ok(Step::Record(Positioned {
                        end: frame_end,
                        record,
                    }))
                }
                Err(e @ PayloadError::Parse(_)) => {
                    return Err(ScanError::Corrupt {
                        offset: off,
                        reason: e.to_string(),
                    })
                }
                Err(e @ PayloadError::Crc) => e.to_string(),
            }
        }
    };
    match find_valid_frame(rd.get_ref(), off + 1, file_len)? {
        None => Ok(Step::End(Stop::Torn { reason })),
        Some(at) => Err(ScanError::Corrupt {
            offset: off,
            reason: format!("{reason}, yet a valid record starts at byte {at}"),
        }),
    }
}

/// Bytes of the file searched per step of [`find_valid_frame`].
const SEARCH_STEP_LEN: usize = 1 << 20;

/// The first offset in `from..file_len` where a valid frame starts, if any.
///
/// This is what tells a torn tail from damage in the middle. JSON payloads
/// contain no zero bytes, so the high bytes of a plausible length (at most
/// 64 KiB) almost never occur inside one; nearly every offset is refused on
/// its length alone, and the crc is computed only for the rare rest.
fn find_valid_frame(mut file: &File, from: u64, file_len: u64) -> std::io::Result<Option<u64>> {
    let window_len = SEARCH_STEP_LEN + FRAME_HEADER_LEN + RECORD_PAYLOAD_LEN_MAX;
    let mut window = Vec::with_capacity(window_len);
    let mut start = from;
    while start < file_len {
        // The window reaches one largest frame past the step, so a frame
        // starting inside the step is seen whole if the file holds it whole.
        let len = (file_len - start).min(window_len as u64) as usize;
        window.resize(len, 0);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut window)?;
        for i in 0..len.min(SEARCH_STEP_LEN) {
            if let Decoded::Record { .. } = decode(&window[i..]) {
                return Ok(Some(start + i as u64));
            }
        }
        start += SEARCH_STEP_LEN as u64;
    }
    Ok(None)
}
