//! `seckill-bench report`: renders `BENCHMARKS.md` from the JSON lines
//! `bench/limits.sh` collected (one per measurement, each with a `label`):
//! the limits table with every path's ratio to its limit, the targets met
//! or not, and for each target not met the analysis kept in
//! `bench/notes/<label>.md` (measured reasons, written by whoever tuned).

use anyhow::Context;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The JSON lines of one limits run.
    #[arg(long)]
    pub results: PathBuf,
    /// Where the analyses of targets not met are (`<label>.md`).
    #[arg(long, default_value = "bench/notes")]
    pub notes: PathBuf,
    /// The command that produced the results, quoted in the report.
    #[arg(long, default_value = "bash bench/limits.sh")]
    pub command: String,
    /// Charts to show (paths relative to the report), one per flag.
    #[arg(long)]
    pub chart: Vec<String>,
    /// Output file.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
}

/// One row of the table: a measured path and what it is compared with.
struct Row {
    label: &'static str,
    what: &'static str,
    /// The limit it is a fraction of, if any.
    limit: Option<&'static str>,
    /// The ratio to reach (the issue's targets), if any.
    target: Option<f64>,
}

const ROWS: &[Row] = &[
    Row {
        label: "nginx_static",
        what: "nginx, static 200 (Debian nginx, one worker per core): the HTTP limit",
        limit: None,
        target: None,
    },
    Row {
        label: "healthz",
        what: "gateway `GET /healthz`",
        limit: Some("nginx_static"),
        target: None,
    },
    Row {
        label: "campaign_get",
        what: "gateway `GET /api/v1/campaigns/{id}`",
        limit: Some("nginx_static"),
        target: None,
    },
    Row {
        label: "grab_memory",
        what:
            "grab, memory ledger, every grab wins (fsync before 202, writer at its default ceiling)",
        limit: Some("nginx_static"),
        target: Some(0.5),
    },
    Row {
        label: "funnel",
        what: "full funnel (hidden path + quiz), every grab wins",
        limit: Some("grab_memory"),
        target: None,
    },
    Row {
        label: "sold_out",
        what: "grab, sold out (the cheap refusal)",
        limit: Some("healthz"),
        target: Some(0.9),
    },
    Row {
        label: "redis_evalsha",
        what: "`redis-benchmark` EVALSHA of the RESERVE script: the Redis limit",
        limit: None,
        target: None,
    },
    Row {
        label: "broker_produce",
        what: "broker produce, idempotent, acks=all, an order record per message: the Kafka limit",
        limit: None,
        target: None,
    },
    Row {
        label: "grab_redis",
        what: "grab, Redis ledger + Kafka log, every grab wins",
        limit: Some("redis_evalsha"),
        target: Some(0.5),
    },
    Row {
        label: "grab_redis_vs_broker",
        what: "the same, against the broker's limit",
        limit: Some("broker_produce"),
        target: None,
    },
    Row {
        label: "mysql_raw_insert",
        what: "MySQL raw multi-row insert, rows/s: the store limit",
        limit: None,
        target: None,
    },
    Row {
        label: "writer_drain",
        what: "order writer draining a backlog into MySQL, rows/s",
        limit: Some("mysql_raw_insert"),
        target: Some(0.5),
    },
];

fn by_label(lines: &str) -> anyhow::Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for (n, line) in lines.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("results line {}", n + 1))?;
        let label = v["label"]
            .as_str()
            .with_context(|| format!("results line {}: no label", n + 1))?
            .to_string();
        out.insert(label, v);
    }
    Ok(out)
}

fn rate(r: &BTreeMap<String, Value>, label: &str) -> Option<f64> {
    let label = if label == "grab_redis_vs_broker" {
        "grab_redis"
    } else {
        label
    };
    r.get(label)?["requests_per_s"].as_f64()
}

/// What a target section says: its name (the notes file's label), the
/// sentence, and whether it holds.
struct Verdict {
    label: &'static str,
    text: String,
    met: Option<bool>,
}

fn verdicts(r: &BTreeMap<String, Value>) -> Vec<Verdict> {
    let mut out = Vec::new();
    for row in ROWS {
        let (Some(target), Some(limit)) = (row.target, row.limit) else {
            continue;
        };
        let ratio = rate(r, row.label).zip(rate(r, limit)).map(|(a, b)| a / b);
        out.push(Verdict {
            label: row.label,
            text: format!(
                "{}: at least {target} x `{limit}`; measured {}",
                row.what,
                ratio.map_or("nothing".to_string(), |x| format!("{x:.2} x"))
            ),
            met: ratio.map(|x| x >= target),
        });
    }
    let sale = r.get("realistic_sale");
    let p99 = sale.and_then(|s| s["latency_ms"]["p99"].as_f64());
    let exact =
        sale.map(|s| s["winners"] == s["stock"] && s["invariants_hold"] == Value::Bool(true));
    out.push(Verdict {
        label: "realistic_sale",
        text: format!(
            "a realistic sale, open loop (10,000 units, 1,000,000 distinct buyers, arrivals at half the sold-out path's closed-loop rate): p99 <= 5 ms and exactly the stock sold; measured p99 {} ms, {}",
            p99.map_or("?".to_string(), |x| format!("{x:.2}")),
            match exact { Some(true) => "exact", Some(false) => "NOT exact", None => "not run" }
        ),
        met: p99.zip(exact).map(|(p, e)| p <= 5.0 && e),
    });
    let rss = r.get("rss_1m").and_then(|v| v["rss_bytes"].as_f64());
    out.push(Verdict {
        label: "rss_1m",
        text: format!(
            "gateway resident memory after 1,000,000 distinct buyers tried a 10,000-unit campaign: under 64 MB; measured {}",
            rss.map_or("?".to_string(), |b| format!("{:.1} MB", b / 1e6))
        ),
        met: rss.map(|b| b < 64e6),
    });
    let per = r.get("bytes_per_order").and_then(|v| v["bytes"].as_f64());
    out.push(Verdict {
        label: "bytes_per_order",
        text: format!(
            "resident bytes per winning order: 256 or less; measured {}",
            per.map_or("?".to_string(), |b| format!("{b:.0} B"))
        ),
        met: per.map(|b| b <= 256.0),
    });
    out
}

/// The whole report, from the results, the machine's description, the
/// analyses (`label` -> text) and the charts.
pub fn render(
    r: &BTreeMap<String, Value>,
    machine: &str,
    command: &str,
    notes: &BTreeMap<String, String>,
    charts: &[String],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks\n");
    let _ = writeln!(
        s,
        "Written by `seckill-bench report` from one run of `{command}`; rerun it to measure your own machine. \
Every HTTP figure is `seckill-bench` closed loop with the same connections against release builds on this one machine \
(the load generator shares its cores), rate limits off. A ratio compares a path with the limit it cannot beat; \
timings are noisy here, so compare ratios within one run.\n"
    );
    let _ = writeln!(s, "Machine: {machine}\n");
    let _ = writeln!(s, "## Limits\n");
    let _ = writeln!(s, "| path | per second | p99 ms | ratio |");
    let _ = writeln!(s, "|---|---:|---:|---|");
    for row in ROWS {
        let Some(x) = rate(r, row.label) else {
            let _ = writeln!(s, "| {} | not measured | | |", row.what);
            continue;
        };
        let src = if row.label == "grab_redis_vs_broker" {
            "grab_redis"
        } else {
            row.label
        };
        let p99 = r[src]["latency_ms"]["p99"]
            .as_f64()
            .map_or(String::new(), |p| format!("{p:.2}"));
        let ratio = match row.limit {
            None => "the limit".to_string(),
            Some(l) => rate(r, l).map_or("?".to_string(), |y| format!("{:.2} x `{l}`", x / y)),
        };
        let _ = writeln!(
            s,
            "| {} (`{}`) | {x:.0} | {p99} | {ratio} |",
            row.what, row.label
        );
    }
    if let Some(v) = r.get("realistic_sale") {
        let _ = writeln!(
            s,
            "| a realistic sale, open loop: {} units, {} requests at {} req/s (`realistic_sale`) | {:.0} | {:.2} | winners {}, invariants {} |",
            v["stock"], v["requests"], v["rate"], v["requests_per_s"].as_f64().unwrap_or(0.0),
            v["latency_ms"]["p99"].as_f64().unwrap_or(0.0), v["winners"],
            if v["invariants_hold"] == Value::Bool(true) { "hold" } else { "VIOLATED" }
        );
    }
    if let Some(v) = r.get("rss_1m") {
        let _ = writeln!(s, "| gateway RSS after 1,000,000 buyers on a 10,000-unit campaign (`rss_1m`) | {:.1} MB | | |", v["rss_bytes"].as_f64().unwrap_or(0.0) / 1e6);
    }
    if let Some(v) = r.get("bytes_per_order") {
        let _ = writeln!(
            s,
            "| resident bytes per winning order, {} orders (`bytes_per_order`) | {:.0} B | | |",
            v["orders"],
            v["bytes"].as_f64().unwrap_or(0.0)
        );
    }
    let _ = writeln!(s, "\n## Targets\n");
    let vs = verdicts(r);
    for v in &vs {
        let mark = match v.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        let _ = writeln!(s, "- **{mark}**: {}", v.text);
    }
    for v in vs.iter().filter(|v| v.met != Some(true)) {
        let _ = writeln!(s, "\n### Not met: `{}`\n", v.label);
        match notes.get(v.label) {
            Some(text) => {
                let _ = writeln!(s, "{}", text.trim_end());
            }
            None => {
                let _ = writeln!(s, "No analysis written yet (`bench/notes/{}.md`).", v.label);
            }
        }
    }
    if !charts.is_empty() {
        let _ = writeln!(s, "\n## Charts\n");
        for c in charts {
            let _ = writeln!(s, "![{c}]({c})\n");
        }
    }
    s
}

/// This machine in one line: CPU model, cores, memory, kernel.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split(':').nth(1))
        })
        .map_or("unknown CPU".to_string(), |m| m.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:").map(|r| {
                r.trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} cores, {:.0} GiB, Linux {}",
        mem_kb as f64 / 1_048_576.0,
        kernel.trim()
    )
}

fn read_notes(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "md") {
            if let (Some(stem), Ok(text)) = (p.file_stem(), std::fs::read_to_string(&p)) {
                out.insert(stem.to_string_lossy().into_owned(), text);
            }
        }
    }
    out
}

pub fn main(args: &Args) -> anyhow::Result<bool> {
    let lines = std::fs::read_to_string(&args.results)
        .with_context(|| format!("reading {}", args.results.display()))?;
    let r = by_label(&lines)?;
    let text = render(
        &r,
        &machine(),
        &args.command,
        &read_notes(&args.notes),
        &args.chart,
    );
    std::fs::write(&args.out, &text).with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::{by_label, render};
    use std::collections::BTreeMap;

    const RESULTS: &str = r#"{"label":"nginx_static","requests_per_s":100000.0}
{"label":"healthz","requests_per_s":80000.0,"latency_ms":{"p99":1.5}}
{"label":"grab_memory","requests_per_s":60000.0}
{"label":"sold_out","requests_per_s":76000.0}
{"label":"realistic_sale","requests_per_s":30000.0,"rate":30000,"requests":1000000,"stock":10000,"winners":10000,"invariants_hold":true,"latency_ms":{"p99":7.25}}
{"label":"rss_1m","rss_bytes":40000000}
"#;

    #[test]
    fn ratios_targets_and_notes() -> anyhow::Result<()> {
        let r = by_label(RESULTS)?;
        let mut notes = BTreeMap::new();
        notes.insert(
            "realistic_sale".to_string(),
            "Because of X, measured.".to_string(),
        );
        let md = render(&r, "test machine", "bash bench/limits.sh", &notes, &[]);
        assert!(
            md.contains("| 80000 | 1.50 | 0.80 x `nginx_static` |"),
            "{md}"
        );
        assert!(md.contains("**met**: grab, memory ledger"), "{md}");
        assert!(md.contains("measured 0.60 x"), "{md}");
        assert!(md.contains("**met**: grab, sold out (the cheap refusal): at least 0.9 x `healthz`; measured 0.95 x"), "{md}");
        assert!(md.contains("**NOT met**: a realistic sale"), "{md}");
        assert!(
            md.contains("### Not met: `realistic_sale`\n\nBecause of X, measured."),
            "{md}"
        );
        // Not measured is said, never counted as met.
        assert!(
            md.contains("**not measured**: resident bytes per winning order"),
            "{md}"
        );
        assert!(
            md.contains("No analysis written yet (`bench/notes/bytes_per_order.md`)"),
            "{md}"
        );
        assert!(md.contains("**met**: gateway resident memory"), "{md}");
        Ok(())
    }

    #[test]
    fn a_line_without_label_is_an_error() {
        assert!(by_label("{\"requests_per_s\":1}\n").is_err());
        assert!(by_label("not json\n").is_err());
    }
}
