//! The latency distribution as an SVG plot: latency (log scale) against percentile, with
//! the percentile axis spaced by "nines" (90 %, 99 %, 99.9 %, ...) so the tail gets as
//! much room as the median. Several runs can share one plot.

use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;

use crate::report::{Point, Report};

/// One line on the plot.
pub(crate) struct Series {
    pub(crate) label: String,
    pub(crate) points: Vec<Point>,
}

/// The fields of a JSON report a plot needs.
#[derive(Deserialize)]
struct Run {
    scenario: String,
    target: String,
    offered_per_s: Option<f64>,
    achieved_per_s: f64,
    distribution: Vec<Point>,
}

impl Series {
    pub(crate) fn of(report: &Report, label: Option<String>) -> Self {
        let scenario = serde_json::to_value(report.scenario)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        Self {
            label: label.unwrap_or_else(|| {
                describe(
                    &scenario,
                    report.target,
                    report.offered_per_s,
                    report.achieved_per_s,
                )
            }),
            points: report.distribution.clone(),
        }
    }
}

fn describe(scenario: &str, target: &str, offered: Option<f64>, achieved: f64) -> String {
    match offered {
        Some(r) => format!("{scenario} at {}/s ({target})", thousands(r)),
        None => format!(
            "{scenario}, closed loop, {}/s ({target})",
            thousands(achieved)
        ),
    }
}

fn thousands(r: f64) -> String {
    if r >= 1_000.0 {
        format!("{:.0}k", r / 1_000.0)
    } else {
        format!("{r:.0}")
    }
}

/// `portvakt-load plot`: reads reports (`FILE` or `LABEL=FILE`) and writes one plot.
pub(crate) fn from_reports(
    out: &Path,
    title: Option<String>,
    reports: &[String],
) -> Result<(), String> {
    let mut series = Vec::new();
    for arg in reports {
        let (label, file) = match arg.split_once('=') {
            Some((l, f)) if !Path::new(arg).exists() => (Some(l.to_owned()), f),
            _ => (None, arg.as_str()),
        };
        let text = std::fs::read_to_string(file).map_err(|e| format!("reading {file}: {e}"))?;
        let run: Run = serde_json::from_str(&text)
            .map_err(|e| format!("{file} is not a portvakt-load --json report: {e}"))?;
        if run.distribution.is_empty() {
            return Err(format!("{file} has no latencies to plot"));
        }
        series.push(Series {
            label: label.unwrap_or_else(|| {
                describe(
                    &run.scenario,
                    &run.target,
                    run.offered_per_s,
                    run.achieved_per_s,
                )
            }),
            points: run.distribution,
        });
    }
    let title = title.unwrap_or_else(|| self::title(&series));
    std::fs::write(out, svg(&series, &title)).map_err(|e| format!("writing {}: {e}", out.display()))
}

/// A title for a plot of `series`.
pub(crate) fn title(series: &[Series]) -> String {
    match series {
        [one] => format!("Portvakt decision latency: {}", one.label),
        _ => "Portvakt decision latency".to_owned(),
    }
}

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 500.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 56.0;
const TOP: f64 = 48.0;
const BOTTOM: f64 = 56.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// How many nines a percentile has: 90 % is 1, 99 % is 2.
fn nines(percentile: f64) -> f64 {
    let tail = (1.0 - percentile / 100.0).max(1e-9);
    -tail.log10()
}

/// Draws `series` as an SVG document.
pub(crate) fn svg(series: &[Series], title: &str) -> String {
    let all = || series.iter().flat_map(|s| s.points.iter());
    let x_max = all()
        .map(|p| nines(p.percentile))
        .fold(2.0f64, f64::max)
        .ceil();
    let lowest = all().map(|p| p.latency_us).fold(f64::INFINITY, f64::min);
    let highest = all().map(|p| p.latency_us).fold(0.0f64, f64::max);
    let y_min = if lowest.is_finite() && lowest > 0.0 {
        lowest.log10().floor()
    } else {
        0.0
    };
    let y_max = if highest > 0.0 {
        highest.log10().ceil().max(y_min + 1.0)
    } else {
        y_min + 1.0
    };
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let x = |n: f64| LEFT + n / x_max * plot_w;
    let y = |us: f64| TOP + plot_h - (us.max(1e-3).log10() - y_min) / (y_max - y_min) * plot_h;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    // The percentile axis: one gridline per nine.
    for n in 0..=(x_max as u32) {
        let px = x(f64::from(n));
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0,
            percentile_label(n)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 12.0
    );
    // The latency axis: one gridline per decade.
    for d in (y_min as i32)..=(y_max as i32) {
        let us = 10f64.powi(d);
        let py = y(us);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            py + 4.0,
            latency_label(us)
        );
    }
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">latency (log scale)</text>"#,
        TOP + plot_h / 2.0
    );
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="black"/>"#
    );
    for (i, line) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = line
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(nines(p.percentile)), y(p.latency_us)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let ly = TOP + 18.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT + 12.0,
            ly - 4.0,
            LEFT + 36.0,
            ly - 4.0,
            LEFT + 42.0,
            ly,
            escape(&line.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn percentile_label(nines: u32) -> String {
    match nines {
        0 => "0%".to_owned(),
        1 => "90%".to_owned(),
        n => format!("99.{}%", "9".repeat(n as usize - 2)).replace(".%", "%"),
    }
}

fn latency_label(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{} ms", us / 1e3)
    } else if us >= 1.0 {
        format!("{us} µs")
    } else {
        format!("{} ns", us * 1e3)
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels() {
        let labels: Vec<_> = (0..5).map(percentile_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
        assert_eq!(latency_label(10.0), "10 µs");
        assert_eq!(latency_label(1000.0), "1 ms");
        assert_eq!(latency_label(1e6), "1 s");
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn a_plot_has_a_line_per_series_and_escapes_labels() {
        let series = |label: &str, scale: f64| Series {
            label: label.to_owned(),
            points: [(50.0, 40.0), (99.0, 200.0), (99.99, 3_000.0)]
                .map(|(percentile, us)| Point {
                    percentile,
                    latency_us: us * scale,
                })
                .to_vec(),
        };
        let doc = svg(&[series("a<b", 1.0), series("c&d", 2.0)], "t");
        assert_eq!(doc.matches("<polyline").count(), 2);
        assert!(doc.contains("a&lt;b") && doc.contains("c&amp;d"));
        assert!(!doc.contains("a<b"));
        // Ten microseconds to ten milliseconds: four decades, and four nines.
        assert!(doc.contains(">10 µs<") && doc.contains(">10 ms<"));
        assert!(doc.contains(">99.99%<"));
        assert!(!doc.contains("NaN") && !doc.contains("inf"));
    }
}
