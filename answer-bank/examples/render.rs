//! Times [`Bank::render_all`] into a fresh temporary directory.
//!
//! `cargo run --release -p answer-bank --example render -- <count> <threads>`
//! (defaults: 1000 images, 1 thread). Prints the elapsed time and the rate.

use std::time::Instant;

use answer_bank::{Bank, QuizKey};

fn arg(args: &mut impl Iterator<Item = String>, name: &str, default: u32) -> std::io::Result<u32> {
    match args.next() {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| std::io::Error::other(format!("{name}: expected a number, got {text:?}"))),
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let count = arg(&mut args, "count", 1000)?;
    let threads = arg(&mut args, "threads", 1)?;
    let dir = tempfile::tempdir()?;
    let bank = Bank::new(QuizKey::derive(b"render benchmark"), "bench", count);

    let start = Instant::now();
    let report = bank.render_all(dir.path(), threads as usize, &|_, _| {})?;
    let elapsed = start.elapsed();

    let bytes: u64 = std::fs::read_dir(dir.path())?
        .map(|entry| entry.and_then(|e| e.metadata()).map(|m| m.len()))
        .sum::<std::io::Result<u64>>()?;
    println!(
        "{count} images on {threads} thread(s) into {}: {:.3} s, {:.1} images/s \
         (written {}, kept {}, {:.1} KiB per image)",
        dir.path().display(),
        elapsed.as_secs_f64(),
        f64::from(report.written + report.kept) / elapsed.as_secs_f64(),
        report.written,
        report.kept,
        bytes as f64 / 1024.0 / f64::from(count.max(1)),
    );
    Ok(())
}
