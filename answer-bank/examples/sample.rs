//! Draws one question and saves it, to look at the rendering.
//!
//! `cargo run -p answer-bank --example sample -- [path] [index] [campaign]`
//! (defaults: `/tmp/answer-bank-sample.png`, `0`, `sample`). Prints the
//! answer and the image name.

use answer_bank::{Bank, QuizKey};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "/tmp/answer-bank-sample.png".to_string());
    let index: u32 = match args.next() {
        Some(text) => text
            .parse()
            .map_err(|_| std::io::Error::other("index: expected a number"))?,
        None => 0,
    };
    let campaign = args.next().unwrap_or_else(|| "sample".to_string());
    let bank = Bank::new(QuizKey::derive(b"sample secret"), &campaign, index + 1);
    let question = bank.question(index);
    std::fs::write(&path, bank.try_render_png(index)?)?;
    println!(
        "{path}: answer {} (image name {})",
        question.answer, question.image_file
    );
    Ok(())
}
