//! What a run measured, for people (a table) and machines (JSON).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in nanoseconds, with three significant figures, up to an hour.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3)
        .unwrap_or_else(|e| unreachable!("fixed histogram bounds: {e}"))
}

/// What one worker saw; merged at the end.
pub(crate) struct Tally {
    pub(crate) latency: Histogram<u64>,
    pub(crate) outcomes: BTreeMap<&'static str, u64>,
    pub(crate) reasons: BTreeMap<&'static str, u64>,
    pub(crate) errors: BTreeMap<String, u64>,
}

impl Tally {
    pub(crate) fn new() -> Self {
        Self {
            latency: histogram(),
            outcomes: BTreeMap::new(),
            reasons: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    pub(crate) fn merge(&mut self, other: Tally) {
        let _ = self.latency.add(&other.latency);
        for (k, v) in other.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        for (k, v) in other.reasons {
            *self.reasons.entry(k).or_default() += v;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

#[derive(Serialize)]
pub(crate) struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    p99_9: f64,
    p99_99: f64,
    max: f64,
    mean: f64,
}

/// The run's result.
#[derive(Serialize)]
pub(crate) struct Report {
    pub(crate) scenario: crate::scenario::Scenario,
    pub(crate) mode: &'static str,
    pub(crate) target: &'static str,
    pub(crate) connections: usize,
    pub(crate) streams: usize,
    pub(crate) depth: usize,
    pub(crate) users: usize,
    pub(crate) measured_s: f64,
    pub(crate) offered_per_s: Option<f64>,
    pub(crate) achieved_per_s: f64,
    pub(crate) answers: u64,
    pub(crate) latency_us: Percentiles,
    pub(crate) outcomes: BTreeMap<&'static str, u64>,
    pub(crate) reasons: BTreeMap<&'static str, u64>,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) requests_per_datagram_sent: f64,
    pub(crate) answers_per_datagram_received: f64,
    pub(crate) client_cpu_us_per_request: f64,
    pub(crate) server_cpu_us_per_request: Option<f64>,
    /// Requests the generator could not send on schedule (open loop). Non-zero means the
    /// run measured the generator's limit, not the server's.
    pub(crate) generator_saturated: u64,
    /// The latency distribution, for plots: latency at each percentile.
    pub(crate) distribution: Vec<Point>,
}

/// The latency at one percentile.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Point {
    pub(crate) percentile: f64,
    pub(crate) latency_us: f64,
}

/// The latency at percentiles spaced evenly in "nines" (90 %, 99 %, 99.9 %, ...), ten
/// steps to each nine, as far as the number of samples supports, then the maximum.
pub(crate) fn distribution(h: &Histogram<u64>) -> Vec<Point> {
    let mut points = Vec::new();
    if h.is_empty() {
        return points;
    }
    let samples = h.len() as f64;
    for step in 0..=60 {
        let nines = f64::from(step) / 10.0;
        let tail = 10f64.powf(-nines);
        if tail * samples < 1.0 {
            break;
        }
        let q = 1.0 - tail;
        points.push(Point {
            percentile: q * 100.0,
            latency_us: h.value_at_quantile(q) as f64 / 1_000.0,
        });
    }
    points.push(Point {
        percentile: 100.0 * (1.0 - 1.0 / samples),
        latency_us: h.max() as f64 / 1_000.0,
    });
    points
}

pub(crate) fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let us = |ns: u64| ns as f64 / 1_000.0;
    Percentiles {
        p50: us(h.value_at_quantile(0.50)),
        p90: us(h.value_at_quantile(0.90)),
        p99: us(h.value_at_quantile(0.99)),
        p99_9: us(h.value_at_quantile(0.999)),
        p99_99: us(h.value_at_quantile(0.9999)),
        max: us(h.max()),
        mean: h.mean() / 1_000.0,
    }
}

impl Report {
    pub(crate) fn print(&self) {
        let offered = self
            .offered_per_s
            .map_or("as fast as answered (closed loop)".to_owned(), |r| {
                format!("{r:.0}/s")
            });
        println!(
            "{:?} against {} ({} mode): {} connections x {} streams, depth {}, {} users",
            self.scenario,
            self.target,
            self.mode,
            self.connections,
            self.streams,
            self.depth,
            self.users
        );
        println!(
            "offered {offered}; achieved {:.0}/s ({} answers in {:.1} s)",
            self.achieved_per_s, self.answers, self.measured_s
        );
        let l = &self.latency_us;
        println!("latency (us)     p50      p90      p99    p99.9   p99.99      max");
        println!(
            "             {:>7.0}  {:>7.0}  {:>7.0}  {:>7.0}  {:>7.0}  {:>7.0}",
            l.p50, l.p90, l.p99, l.p99_9, l.p99_99, l.max
        );
        println!("outcomes: {}", counts(&self.outcomes));
        println!("reasons: {}", counts(&self.reasons));
        if self.errors.is_empty() {
            println!("errors: none");
        } else {
            for (k, v) in &self.errors {
                println!("errors: {v} x {k}");
            }
        }
        println!(
            "batching: {:.1} requests per datagram sent, {:.1} answers per datagram received",
            self.requests_per_datagram_sent, self.answers_per_datagram_received
        );
        print!(
            "CPU per request: client {:.2} us",
            self.client_cpu_us_per_request
        );
        match self.server_cpu_us_per_request {
            Some(s) => println!(", server {s:.2} us"),
            None => println!(" (pass --server-pid for the server's)"),
        }
        if self.generator_saturated > 0 {
            println!("{}", saturation_warning(self.generator_saturated));
        }
    }
}

/// `name count, name count, ...`
fn counts(tally: &BTreeMap<&str, u64>) -> String {
    let items: Vec<String> = tally.iter().map(|(k, v)| format!("{k} {v}")).collect();
    items.join(", ")
}

/// What a saturated run must say loudly.
pub(crate) fn saturation_warning(unsent: u64) -> String {
    format!(
        "WARNING: the generator could not send {unsent} requests on schedule; this run \
         measured the generator, not the server. Offer less, or raise --max-in-flight."
    )
}
