//! The run as two SVG charts (plotters): latency by percentile, and
//! requests per second over the run.

use anyhow::Context;
use hdrhistogram::Histogram;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Writes `latency.svg` and `throughput.svg` into `dir`; returns their paths.
pub fn write(
    dir: &Path,
    latency: &Histogram<u64>,
    per_second: &[(u64, u64)],
    rate: Option<u64>,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let lat = dir.join("latency.svg");
    latency_chart(&lat, latency).map_err(|e| anyhow::anyhow!("drawing {}: {e}", lat.display()))?;
    let thr = dir.join("throughput.svg");
    throughput_chart(&thr, per_second, rate)
        .map_err(|e| anyhow::anyhow!("drawing {}: {e}", thr.display()))?;
    Ok(vec![lat, thr])
}

/// Latency against percentile, on a "nines" axis (x = -log10(1 - p): 1 is
/// p90, 2 is p99, 3 is p99.9), where the tail is visible.
fn latency_chart(path: &Path, h: &Histogram<u64>) -> Result<(), Box<dyn std::error::Error>> {
    let points: Vec<(f64, f64)> = (0..=400)
        .map(|i| {
            let nines = f64::from(i) / 100.0;
            let q = 1.0 - 10f64.powf(-nines);
            (nines, h.value_at_quantile(q.min(0.999_999)) as f64 / 1000.0)
        })
        .collect();
    let top = points.iter().map(|p| p.1).fold(0.0, f64::max).max(0.1) * 1.1;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "seckill-bench: grab latency by percentile",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..4f64, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| match (*x * 10.0).round() as i64 {
            0 => "p0".into(),
            10 => "p90".into(),
            20 => "p99".into(),
            30 => "p99.9".into(),
            40 => "p99.99".into(),
            _ => String::new(),
        })
        .x_labels(5)
        .draw()?;
    chart.draw_series(LineSeries::new(points, &BLUE))?;
    root.present()?;
    Ok(())
}

fn throughput_chart(
    path: &Path,
    per_second: &[(u64, u64)],
    rate: Option<u64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let top = per_second
        .iter()
        .map(|p| p.0)
        .chain(rate)
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("seckill-bench: requests per second", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..per_second.len() as f64, 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("second of the run")
        .y_desc("requests/s")
        .draw()?;
    let answered = per_second
        .iter()
        .enumerate()
        .map(|(i, p)| (i as f64 + 0.5, p.0 as f64));
    chart
        .draw_series(LineSeries::new(answered, &BLUE))?
        .label("answered")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    let accepted = per_second
        .iter()
        .enumerate()
        .map(|(i, p)| (i as f64 + 0.5, p.1 as f64));
    chart
        .draw_series(LineSeries::new(accepted, &GREEN))?
        .label("accepted (202)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    if let Some(r) = rate {
        let line = [(0.0, r as f64), (per_second.len() as f64, r as f64)];
        chart
            .draw_series(LineSeries::new(line, &RED))?
            .label("intended rate")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    root.present()?;
    Ok(())
}
