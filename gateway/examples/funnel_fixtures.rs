//! Writes grabs that pass the whole funnel (hidden path + quiz), for
//! `scripts/measure-grabs.sh`: one line per grab,
//! `<buyer token>\t<grab path>\t<body>`, each with its own quiz token
//! issued now and answered right, so a load generator can send them at full
//! speed from one second after this ran (quiz tokens are single use).
//!
//! Usage: `funnel_fixtures <funnel secret> <campaign id> <starts_at_ms>
//! <quiz_questions> <count> < users.tsv > fixtures.tsv`, where each line of
//! `users.tsv` is `<user id>\t<buyer token>`.

use engine::{CampaignId, CampaignSpec};
use std::io::{BufRead, Write};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [secret, id, starts_at_ms, questions, count] = args.as_slice() else {
        anyhow::bail!(
            "usage: funnel_fixtures <secret> <campaign> <starts_at_ms> <quiz_questions> <count>"
        );
    };
    let starts_at_ms: u64 = starts_at_ms.parse()?;
    let id = CampaignId::parse(id)?;
    let campaign = CampaignSpec {
        id: Some(id.clone()),
        title: "fixtures".into(),
        price_cents: 1,
        stock: 1,
        starts_at_ms,
        ends_at_ms: starts_at_ms + 1,
        per_user_limit: None,
        quiz: Some(true),
        quiz_questions: Some(questions.parse()?),
        hidden_path: Some(true),
        payment_window_s: None,
        load_test: None,
        stock_buckets: None,
    }
    .validate(id)?;
    let gate = gateway::quiz::Gate::new(
        secret.as_bytes(),
        gateway::config::QuizSettings::default(),
        std::path::Path::new("/nonexistent"),
    );
    let users: Vec<(engine::UserId, String)> = std::io::stdin()
        .lock()
        .lines()
        .map(|l| -> anyhow::Result<_> {
            let l = l?;
            let (u, t) = l
                .split_once('\t')
                .ok_or_else(|| anyhow::anyhow!("want <user>\\t<token>"))?;
            Ok((engine::UserId::parse(u)?, t.to_string()))
        })
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(!users.is_empty(), "no users on standard input");
    let now = gateway::app::now_ms();
    let bank = gate.bank(&campaign);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in 0..count.parse::<usize>()? {
        let (user, token) = &users[i % users.len()];
        let (quiz_token, image_url) = gate.issue(&campaign, user, now);
        let answer = bank
            .question(quiz_token.split('.').nth(1).unwrap_or("0").parse()?)
            .answer;
        debug_assert!(image_url.ends_with(".png"));
        let body = serde_json::json!({ "quiz_token": quiz_token, "answer": answer });
        writeln!(out, "{token}\t{}\t{body}", gate.grab_path(&campaign, user))?;
    }
    out.flush()?;
    Ok(())
}
