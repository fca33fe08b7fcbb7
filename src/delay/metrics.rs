//! The delay families of `/metrics`: one scheduler's in single-node mode, the owned partitions'
//! and the journal's in cluster mode.

use std::sync::atomic::Ordering;

use super::cluster::Cluster;
use crate::metrics::{gauge, raw_histogram, sample};

/// Single-node mode: the scheduler's families.
pub(super) fn scheduler(out: &mut String, s: &scheduler::Scheduler) {
    {
        let st = s.stats();
        let (loaded, inflight) = s.loaded_and_inflight();
        gauge(
            out,
            "pproxy_delay_pending",
            "Pending delay records.",
            st.pending.load(Ordering::Relaxed) as f64,
        );
        gauge(
            out,
            "pproxy_delay_loaded",
            "Delay records in the in-memory wheel.",
            loaded as f64,
        );
        gauge(
            out,
            "pproxy_delay_inflight",
            "Delay fires in flight.",
            inflight as f64,
        );
        gauge(
            out,
            "pproxy_delay_dead_letters",
            "Dead letters kept.",
            s.dead_count() as f64,
        );
        sample(
            out,
            "pproxy_delay_skipped_total",
            "Loop occurrences skipped by catch-up.",
            "counter",
            st.skipped.load(Ordering::Relaxed) as f64,
        );
        let cs = s.commit_stats();
        let lag = super::service::fired_through_lag_ms(s) as f64 / 1000.0;
        gauge(
            out,
            "pproxy_delay_fired_through_lag_seconds",
            "Now minus the fired-through watermark.",
            lag,
        );
        sample(
            out,
            "pproxy_delay_store_errors_total",
            "Delay storage failures.",
            "counter",
            cs.errors.load(Ordering::Relaxed) as f64,
        );
        gauge(
            out,
            "pproxy_delay_store_failed",
            "1 from an I/O error of the delay store until it is reopened (adds and cancels answer 10).",
            f64::from(u8::from(s.store_failed())),
        );
        gauge(
            out,
            "pproxy_delay_store_stuck",
            "1 while a delay-store commit has been in flight longer than scheduler.storeStuckAfterMs (adds and cancels answer 10).",
            f64::from(u8::from(s.store_stuck_ms().is_some())),
        );
        sample(
            out,
            "pproxy_delay_store_reopens_total",
            "Reopens of the delay store after an I/O error.",
            "counter",
            s.store_reopens() as f64,
        );
        raw_histogram(
            out,
            "pproxy_delay_fire_lateness_seconds",
            "Hand-off time minus due time.",
            &scheduler::LATENESS_BUCKETS_MS,
            1000.0,
            &st.lateness,
            &st.lateness_sum_ms,
        );
        raw_histogram(
            out,
            "pproxy_delay_commit_duration_seconds",
            "Group commit including flush.",
            &scheduler::GROUP_US_BUCKETS,
            1e6,
            &cs.group_us_hist,
            &cs.group_us_sum,
        );
        raw_histogram(
            out,
            "pproxy_delay_commit_group_size",
            "Mutations per group commit.",
            &scheduler::GROUP_SIZE_BUCKETS,
            1.0,
            &cs.group_size_hist,
            &cs.group_size_sum,
        );
    }
}

/// Cluster mode: owned partitions, journal appends and what owners applied.
pub(super) fn cluster(out: &mut String, c: &Cluster) {
    let owned = c.owned.lock().unwrap_or_else(|e| e.into_inner());
    let active = owned.values().filter(|o| o.may_fire()).count();
    let pending: i64 = owned
        .values()
        .filter_map(|o| o.engine())
        .map(|e| e.stats().pending.load(Ordering::Relaxed))
        .sum();
    drop(owned);
    sample(
        out,
        "pproxy_delay_cluster_partitions_owned",
        "Journal partitions this node owns and fires.",
        "gauge",
        active as f64,
    );
    sample(
        out,
        "pproxy_delay_pending",
        "Pending delay records (of the partitions this node owns).",
        "gauge",
        pending as f64,
    );
    let st = &c.stats;
    out.push_str("# HELP pproxy_delay_cluster_journal_appends_total Journal records acknowledged by the broker.\n# TYPE pproxy_delay_cluster_journal_appends_total counter\n");
    for (i, kind) in ["add", "cancel", "fired", "claim"].iter().enumerate() {
        out.push_str(&format!(
            "pproxy_delay_cluster_journal_appends_total{{kind=\"{kind}\"}} {}\n",
            st.appends[i].load(Ordering::Relaxed)
        ));
    }
    for (name, help, v) in [
        (
            "pproxy_delay_cluster_journal_append_errors_total",
            "Journal appends that failed.",
            &st.append_errors,
        ),
        (
            "pproxy_delay_cluster_applied_total",
            "Journal records applied to owned partitions.",
            &st.applied,
        ),
        (
            "pproxy_delay_cluster_foreign_fired_total",
            "Fired markers of an older owner seen after this node's claim.",
            &st.foreign_fired,
        ),
        (
            "pproxy_delay_cluster_partitions_gained_total",
            "Partitions assigned to this node.",
            &st.gained,
        ),
        (
            "pproxy_delay_cluster_partitions_lost_total",
            "Partitions revoked from this node.",
            &st.lost,
        ),
        (
            "pproxy_delay_cluster_tombstones_total",
            "Tombstones appended to the journal for finished ids.",
            &st.tombstones,
        ),
    ] {
        sample(out, name, help, "counter", v.load(Ordering::Relaxed) as f64);
    }
}
