//! Rendering the registry for a scrape, and the helpers collectors use to describe values they
//! read at scrape time.

use std::fmt;

use prometheus_client::encoding::{
    prometheus_text, text, DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
    NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The OpenMetrics text content type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition format of one scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (the default).
    Prometheus,
    /// OpenMetrics 1.0 text, for scrapers that ask for it.
    OpenMetrics,
}

impl Format {
    /// The format a scraper's `Accept` header asks for. Prometheus servers list OpenMetrics
    /// first when they accept it; anything else gets the 0.0.4 text format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS,
        }
    }
}

/// The whole registry in `format`.
pub fn render(registry: &Registry, format: Format) -> String {
    let mut out = String::with_capacity(32 * 1024);
    let written = match format {
        Format::Prometheus => prometheus_text::encode(&mut out, registry),
        Format::OpenMetrics => text::encode(&mut out, registry),
    };
    // Writing into a String cannot fail; a collector's own error would be a bug.
    debug_assert!(written.is_ok(), "metric encoding failed");
    out
}

/// Describes one gauge read now (counts as integers, fractions as `f64`).
pub fn gauge<N: EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: N,
) -> fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

/// Describes one counter read now; `name` without `_total`.
pub fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(v).encode(m)
}

/// Describes a labelled counter family read now; `name` without `_total`.
pub fn counters<L: EncodeLabelSet>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(L, u64)],
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in series {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// Describes a histogram kept elsewhere as per-bucket (not cumulative) counts with a final +Inf
/// bucket. Bounds and sum are integers in a smaller unit; `unit` of them make one exposed unit
/// (1000 for milliseconds shown as seconds).
pub fn raw_histogram(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    bounds: &[u64],
    unit: f64,
    counts: &[u64],
    sum: u64,
) -> fmt::Result {
    debug_assert_eq!(
        counts.len(),
        bounds.len() + 1,
        "one count per bound and +Inf"
    );
    let buckets: Vec<(f64, u64)> = bounds
        .iter()
        .map(|b| *b as f64 / unit)
        .chain(std::iter::once(f64::INFINITY))
        .zip(counts.iter().copied())
        .collect();
    let count = buckets.iter().map(|b| b.1).sum();
    let sum = sum as f64 / unit;
    let mut m = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    m.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
}
