//! `GET /delay/{id}` of one scheduler: the lifecycle of any add or occurrence id as JSON.

use serde_json::json;

/// The status JSON of `raw_id` in `sched` (operations.md §4).
pub async fn of(sched: &scheduler::Scheduler, raw_id: &str) -> (u16, String) {
    let canonical = scheduler::DelayId::canonical_of(raw_id);
    let st = match sched.status(canonical.clone()).await {
        Ok(s) => s,
        Err(e) => return (500, json!({"error": e.to_string()}).to_string()),
    };
    let parsed = scheduler::DelayId::parse(&canonical);
    let mut v = json!({
        "id": raw_id,
        "canonicalId": canonical,
        "state": st.state,
        "type": parsed.as_ref().map(|d| d.dtype),
        "times": parsed.as_ref().map(|d| d.times),
        "expire": parsed.as_ref().map(|d| d.expire),
        "interval": parsed.as_ref().map(|d| d.interval),
    });
    if let Some(r) = &st.record {
        v["topic"] = json!(r.topic);
        v["nextIndex"] = json!(r.next_index);
        v["nextDueMs"] = json!(r.next_due_ms);
        v["attempts"] = json!(r.attempts);
        if !r.owner.is_empty() {
            v["owner"] = json!(r.owner);
        }
        v["nextOccurrenceId"] = json!(r.occurrence_id(r.next_index));
        if r.kind() != scheduler::Kind::Once {
            // Occurrences still to fire, bounded by times (expire may end the loop sooner).
            v["remainingLoops"] = json!((r.id.times - r.next_index as i64).max(0));
        }
    }
    if let Some(d) = &st.done {
        v["finishedMs"] = json!(d.finished_ms);
        v["lastIndex"] = json!(d.last_index);
        v["cancelRequests"] = d
            .cancels
            .iter()
            .map(|(at, r)| json!({"atMs": at, "result": r.name()}))
            .collect();
    }
    if let Some(last) = st.dead.last() {
        v["lastCode"] = json!(last.code);
        v["lastMsg"] = json!(last.msg);
        v["topic"] = json!(last.record.topic);
    }
    v["deadLetters"] = st
        .dead
        .iter()
        .map(|d| json!({"k": d.k, "code": d.code, "msg": d.msg, "deadMs": d.dead_ms}))
        .collect();
    (200, v.to_string())
}
