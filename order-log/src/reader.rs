//! `FileLogReader`: follows the log from a checkpoint up to the durable end.
//!
//! The reader has its own file handle and never reads past the durable end
//! it last saw: bytes beyond it may be half-written by the log thread at this
//! very moment. Bytes below it never change (the file is append-only), so
//! what the reader has buffered stays valid.

use crate::frame::{decode, Decoded};
use crate::{LogError, Positioned};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use tokio::sync::watch;

/// Most bytes read from the file at once.
const READ_CHUNK_LEN: usize = 1 << 20;

/// Reads durable records in order. Each reader is used by one task.
pub struct FileLogReader {
    file: File,
    /// Offset of the next record to return.
    position: u64,
    /// File bytes from `position - consumed` on, all below the durable end.
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already returned.
    consumed: usize,
    durable: watch::Receiver<u64>,
}

impl std::fmt::Debug for FileLogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileLogReader")
            .field("position", &self.position)
            .field("buffered_len", &(self.buf.len() - self.consumed))
            .finish_non_exhaustive()
    }
}

impl FileLogReader {
    pub(crate) fn new(file: File, from: u64, durable: watch::Receiver<u64>) -> Self {
        Self {
            file,
            position: from,
            buf: Vec::new(),
            consumed: 0,
            durable,
        }
    }

    /// Offset of the next record: a record boundary, usable as checkpoint.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Up to `rows_max` records between the position and the durable end,
    /// advancing the position past them. Empty when there are none.
    ///
    /// The position only ever moves past records that are returned: when an
    /// error follows some good records, those come back first and the error
    /// on the next call, at the exact offset, so a retry skips nothing.
    pub fn read_available(&mut self, rows_max: usize) -> Result<Vec<Positioned>, LogError> {
        let mut out = Vec::new();
        match self.read_into(rows_max, &mut out) {
            Err(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    fn read_into(&mut self, rows_max: usize, out: &mut Vec<Positioned>) -> Result<(), LogError> {
        let durable_end = *self.durable.borrow();
        while out.len() < rows_max && self.position < durable_end {
            match decode(&self.buf[self.consumed..]) {
                Decoded::Record { record, frame_len } => {
                    self.consumed += frame_len;
                    self.position += frame_len as u64;
                    out.push(Positioned {
                        end: self.position,
                        record,
                    });
                }
                Decoded::Incomplete => {
                    if !self.fill(durable_end)? {
                        // The durable end is always a record boundary, so the
                        // reader started inside a record.
                        return Err(self.corrupt("record crosses the durable end".into()));
                    }
                }
                Decoded::Bad { reason } => return Err(self.corrupt(reason)),
            }
        }
        Ok(())
    }

    /// Waits until the durable end is past the position; returns at once if
    /// it already is. Returns `false` when the log closed (or was poisoned)
    /// and everything durable has been read. Cancel safe.
    pub async fn wait_for_more(&mut self) -> bool {
        loop {
            if *self.durable.borrow_and_update() > self.position {
                return true;
            }
            if self.durable.changed().await.is_err() {
                // The value can still have moved between the check above and
                // the sender dropping.
                return *self.durable.borrow() > self.position;
            }
        }
    }

    /// Reads more bytes below `durable_end` into the buffer; `false` if
    /// everything below it is already buffered.
    fn fill(&mut self, durable_end: u64) -> Result<bool, LogError> {
        self.buf.drain(..self.consumed);
        self.consumed = 0;
        let buffered_end = self.position + self.buf.len() as u64;
        if buffered_end >= durable_end {
            return Ok(false);
        }
        let len = (durable_end - buffered_end).min(READ_CHUNK_LEN as u64) as usize;
        let old_len = self.buf.len();
        self.buf.resize(old_len + len, 0);
        let read = self
            .file
            .seek(SeekFrom::Start(buffered_end))
            .and_then(|_| self.file.read_exact(&mut self.buf[old_len..]));
        if let Err(e) = read {
            self.buf.truncate(old_len);
            return Err(LogError::Io(format!(
                "cannot read the order log at byte {buffered_end}: {e}"
            )));
        }
        Ok(true)
    }

    fn corrupt(&self, reason: String) -> LogError {
        LogError::Corrupt {
            offset: self.position,
            reason,
        }
    }
}
