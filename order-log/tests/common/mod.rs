//! Helpers shared by the integration tests: records and file surgery.

#![allow(dead_code)] // Each test binary uses a different subset.

use engine::ports::LogRecord;
use order_log::{FileLog, FileLogConfig, Positioned};
use std::io::Write;
use std::path::{Path, PathBuf};

pub use order_log::test_support::record;

/// The `i` that [`record`] was built from.
pub fn index_of(record: &LogRecord) -> u64 {
    let LogRecord::Order(o) = record;
    o.created_at_ms - 1_700_000_000_000
}

pub fn log_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("orders.log")
}

pub fn open(path: &Path) -> (FileLog, Vec<Positioned>) {
    FileLog::open(FileLogConfig::new(path)).expect("log opens")
}

pub fn records(replay: &[Positioned]) -> Vec<LogRecord> {
    replay.iter().map(|p| p.record.clone()).collect()
}

/// Creates a log holding records `0..n`, closes it and returns the replay.
pub async fn log_with(path: &Path, n: u64) -> Vec<Positioned> {
    use engine::ports::OrderLog;
    let (log, _) = open(path);
    for i in 0..n {
        log.append(&record(i)).await.expect("append");
    }
    log.close();
    drop(log);
    let (_log, replay) = open(path);
    assert_eq!(records(&replay), (0..n).map(record).collect::<Vec<_>>());
    replay
}

pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat").len()
}

pub fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(bytes).expect("write");
}

pub fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[offset as usize] ^= 0x01;
    std::fs::write(path, bytes).expect("write");
}
