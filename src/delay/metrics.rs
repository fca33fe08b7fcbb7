//! The delay families of `/metrics`, read at scrape time: one scheduler's in single-node mode;
//! in cluster mode the same families summed over the partitions this node owns, plus the
//! journal's counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};

use super::cluster::Cluster;
use super::service::{fired_through_lag_ms, Backend, DelayService};
use crate::metrics::scrape::{counter, counters, gauge, raw_histogram};

/// The delay collector: registered once, it reads whichever backend is open at scrape time.
pub struct Gauges(pub Arc<DelayService>);

impl std::fmt::Debug for Gauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("delay::Gauges")
    }
}

impl Collector for Gauges {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        match self.0.backend() {
            Some(Backend::Single(s)) => Totals::of(std::slice::from_ref(s)).encode(&mut e),
            Some(Backend::Cluster(c)) => cluster(&mut e, c),
            None => Ok(()),
        }
    }
}

/// One or more schedulers' figures, summed (the fired-through lag is the largest).
#[derive(Default)]
struct Totals {
    pending: i64,
    loaded: usize,
    inflight: usize,
    dead: usize,
    skipped: u64,
    lag_ms: i64,
    store_errors: u64,
    store_failed: bool,
    store_stuck: bool,
    reopens: u64,
    lateness: Vec<u64>,
    lateness_sum_ms: u64,
    commit_us: Vec<u64>,
    commit_us_sum: u64,
    group: Vec<u64>,
    group_sum: u64,
}

/// Adds per-bucket counts into `into`.
fn add_buckets(into: &mut Vec<u64>, counts: &[AtomicU64]) {
    into.resize(counts.len(), 0);
    for (i, c) in counts.iter().enumerate() {
        into[i] += c.load(Ordering::Relaxed);
    }
}

impl Totals {
    fn of(schedulers: &[scheduler::Scheduler]) -> Totals {
        let mut t = Totals::default();
        // Empty histograms still show their buckets.
        t.lateness
            .resize(scheduler::LATENESS_BUCKETS_MS.len() + 1, 0);
        t.commit_us.resize(scheduler::GROUP_US_BUCKETS.len() + 1, 0);
        t.group.resize(scheduler::GROUP_SIZE_BUCKETS.len() + 1, 0);
        for s in schedulers {
            let st = s.stats();
            let cs = s.commit_stats();
            let (loaded, inflight) = s.loaded_and_inflight();
            t.pending += st.pending.load(Ordering::Relaxed);
            t.loaded += loaded;
            t.inflight += inflight;
            t.dead += s.dead_count();
            t.skipped += st.skipped.load(Ordering::Relaxed);
            t.lag_ms = t.lag_ms.max(fired_through_lag_ms(s));
            t.store_errors += cs.errors.load(Ordering::Relaxed);
            t.store_failed |= s.store_failed();
            t.store_stuck |= s.store_stuck_ms().is_some();
            t.reopens += s.store_reopens();
            add_buckets(&mut t.lateness, &st.lateness);
            t.lateness_sum_ms += st.lateness_sum_ms.load(Ordering::Relaxed);
            add_buckets(&mut t.commit_us, &cs.group_us_hist);
            t.commit_us_sum += cs.group_us_sum.load(Ordering::Relaxed);
            add_buckets(&mut t.group, &cs.group_size_hist);
            t.group_sum += cs.group_size_sum.load(Ordering::Relaxed);
        }
        t
    }

    fn encode(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let flag = |b: bool| i64::from(b);
        gauge(
            e,
            "pproxy_delay_pending",
            "Pending delay records.",
            self.pending,
        )?;
        gauge(
            e,
            "pproxy_delay_loaded",
            "Delay records in the in-memory wheel.",
            self.loaded as i64,
        )?;
        gauge(
            e,
            "pproxy_delay_inflight",
            "Delay fires in flight.",
            self.inflight as i64,
        )?;
        gauge(
            e,
            "pproxy_delay_dead_letters",
            "Dead letters kept.",
            self.dead as i64,
        )?;
        counter(
            e,
            "pproxy_delay_skipped",
            "Loop occurrences skipped by catch-up.",
            self.skipped,
        )?;
        gauge(
            e,
            "pproxy_delay_fired_through_lag_seconds",
            "Now minus the fired-through watermark.",
            self.lag_ms as f64 / 1000.0,
        )?;
        counter(
            e,
            "pproxy_delay_store_errors",
            "Delay storage failures.",
            self.store_errors,
        )?;
        gauge(
            e,
            "pproxy_delay_store_failed",
            "1 from an I/O error of the delay store until it is reopened (adds and cancels answer 10).",
            flag(self.store_failed),
        )?;
        gauge(
            e,
            "pproxy_delay_store_stuck",
            "1 while a delay-store commit has been in flight longer than scheduler.storeStuckAfterMs (adds and cancels answer 10).",
            flag(self.store_stuck),
        )?;
        counter(
            e,
            "pproxy_delay_store_reopens",
            "Reopens of the delay store after an I/O error.",
            self.reopens,
        )?;
        raw_histogram(
            e,
            "pproxy_delay_fire_lateness_seconds",
            "Hand-off time minus due time.",
            &scheduler::LATENESS_BUCKETS_MS,
            1000.0,
            &self.lateness,
            self.lateness_sum_ms,
        )?;
        raw_histogram(
            e,
            "pproxy_delay_commit_duration_seconds",
            "Group commit including flush.",
            &scheduler::GROUP_US_BUCKETS,
            1e6,
            &self.commit_us,
            self.commit_us_sum,
        )?;
        raw_histogram(
            e,
            "pproxy_delay_commit_group_size",
            "Mutations per group commit.",
            &scheduler::GROUP_SIZE_BUCKETS,
            1.0,
            &self.group,
            self.group_sum,
        )
    }
}

/// The journal record kinds counted by `pproxy_delay_cluster_journal_appends_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JournalKind {
    kind: &'static str,
}

/// Who confirmed a journaled cancel, for `pproxy_delay_cluster_cancel_confirms_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConfirmHow {
    how: &'static str,
}

/// Cluster mode: the owned partitions' schedulers summed, and the journal's counters.
fn cluster(e: &mut DescriptorEncoder, c: &Cluster) -> std::fmt::Result {
    let engines: Vec<scheduler::Scheduler> = {
        let owned = c.owned.lock().unwrap_or_else(|e| e.into_inner());
        owned.values().filter_map(|o| o.engine()).collect()
    };
    gauge(
        e,
        "pproxy_delay_cluster_partitions_owned",
        "Journal partitions this node owns and fires.",
        engines.len() as i64,
    )?;
    Totals::of(&engines).encode(e)?;
    let st = &c.stats;
    let appends: Vec<(JournalKind, u64)> = ["add", "cancel", "fired", "claim"]
        .iter()
        .zip(&st.appends)
        .map(|(kind, n)| (JournalKind { kind }, n.load(Ordering::Relaxed)))
        .collect();
    counters(
        e,
        "pproxy_delay_cluster_journal_appends",
        "Journal records acknowledged by the broker.",
        &appends,
    )?;
    let confirms: Vec<(ConfirmHow, u64)> = super::cluster::confirm::CONFIRM_LABELS
        .iter()
        .zip(&st.cancel_confirms)
        .map(|(how, n)| (ConfirmHow { how }, n.load(Ordering::Relaxed)))
        .collect();
    counters(
        e,
        "pproxy_delay_cluster_cancel_confirms",
        "Journaled cancels by who confirmed them applied before the answer: this node (local), \
         the owner asked over its admin port (owner), nobody within the bound (unconfirmed, \
         answered 10).",
        &confirms,
    )?;
    for (name, help, v) in [
        (
            "pproxy_delay_cluster_journal_append_errors",
            "Journal appends that failed.",
            &st.append_errors,
        ),
        (
            "pproxy_delay_cluster_applied",
            "Journal records applied to owned partitions.",
            &st.applied,
        ),
        (
            "pproxy_delay_cluster_foreign_fired",
            "Fired markers of an older owner seen after this node's claim.",
            &st.foreign_fired,
        ),
        (
            "pproxy_delay_cluster_partitions_gained",
            "Partitions assigned to this node.",
            &st.gained,
        ),
        (
            "pproxy_delay_cluster_partitions_lost",
            "Partitions revoked from this node.",
            &st.lost,
        ),
        (
            "pproxy_delay_cluster_tombstones",
            "Tombstones appended to the journal for finished ids.",
            &st.tombstones,
        ),
    ] {
        counter(e, name, help, v.load(Ordering::Relaxed))?;
    }
    Ok(())
}
