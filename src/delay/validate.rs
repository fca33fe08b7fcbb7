//! `sendDelaySync` validation (delay.md §3) and the add's id and record (§4).

use std::sync::Arc;

use scheduler::{DelayId, Record};

use super::{id, to_ms, MS_THRESHOLD};
use crate::forward::admit::{TopicRoute, DEFAULT_SIZE_LIMIT};
use crate::forward::snapshot::Snapshot;
use crate::forward::validate::{check_tags_and_properties, is_blank};
use crate::proto::{Code, DelayMessage};

/// Runs the validation table of delay.md §3 (steps 2-17) at time `now_ms` against one
/// configuration snapshot; returns the admitted delay topic's route.
pub fn validate(
    snap: &Snapshot,
    max_delay_sec: i64,
    m: &DelayMessage,
    now_ms: i64,
) -> Result<Arc<TopicRoute>, Code> {
    let topic = m.topic.as_deref().unwrap_or("");
    if topic.is_empty() || m.invalid_utf8 {
        return Err(Code::Illegal);
    }
    check_tags_and_properties(m.tags.as_deref(), &m.properties).map_err(|_| Code::Illegal)?;
    let route = snap.topics.admit(topic);
    if m.action == 1 {
        let limit = route.as_ref().map_or(DEFAULT_SIZE_LIMIT, |r| r.size_limit);
        match &m.body {
            Some(b) if !b.is_empty() && b.len() <= limit => {}
            _ => return Err(Code::Illegal),
        }
    }
    let route = route.ok_or(Code::NotWhitelisted)?;
    let prefix = &snap.proxy.carrera.inner_topic_prefix;
    if !is_blank(prefix) && topic.starts_with(prefix.as_str()) {
        return Err(Code::Illegal);
    }
    if !route.delay_topic {
        return Err(Code::TopicNotDelay);
    }
    match m.action {
        1 => validate_add(m, now_ms, max_delay_sec)?,
        2 => validate_cancel_id(m, snap.proxy.carrera.inner_topic_num)?,
        _ => return Err(Code::IllegalDelayAction),
    }
    Ok(route)
}

/// Steps 9-11 of a cancel: the id parses, its type is 2/3/4, its seq is in range.
fn validate_cancel_id(m: &DelayMessage, inner_topic_num: i64) -> Result<(), Code> {
    let raw = m.uniq_delay_msg_id.as_deref().unwrap_or("");
    if is_blank(raw) {
        return Err(Code::IllegalDelayId);
    }
    let parsed = DelayId::parse(raw.trim()).ok_or(Code::IllegalDelayId)?;
    if !(2..=4).contains(&parsed.dtype) {
        return Err(Code::IllegalDelayType);
    }
    if parsed.seq >= inner_topic_num {
        return Err(Code::IllegalDelaySeq);
    }
    Ok(())
}

fn validate_add(m: &DelayMessage, now_ms: i64, max_delay_sec: i64) -> Result<(), Code> {
    let due_ms = to_ms(m.timestamp);
    if m.timestamp < 1_000_000_000
        || due_ms > now_ms.saturating_add(max_delay_sec.saturating_mul(1000))
    {
        return Err(Code::IllegalDelayTimestamp);
    }
    if !(2..=4).contains(&m.dmsgtype) {
        return Err(Code::IllegalDelayType);
    }
    let is_loop = m.dmsgtype != 2;
    if (!is_loop && m.times != 0) || (is_loop && m.times <= 0) {
        return Err(Code::IllegalLoopTimes);
    }
    if is_loop && to_ms(m.expire) <= due_ms {
        return Err(Code::IllegalExpire);
    }
    if m.dmsgtype == 3 && m.interval < 3 {
        return Err(Code::IllegalInterval);
    }
    if m.dmsgtype == 4 && m.interval < 2 {
        return Err(Code::IllegalBase);
    }
    Ok(())
}

/// Builds the add id and the record of a validated add (delay.md §4.2).
pub fn build_add(
    m: DelayMessage,
    inner_topic_num: i64,
    now_ms: i64,
    owner: Option<&str>,
) -> (String, Record) {
    let uuid = id::normalize_uuid(m.uuid.as_deref());
    let ms_unit = m.timestamp >= MS_THRESHOLD;
    let (expire, times, interval) = if m.dmsgtype == 2 {
        let two_days = if ms_unit { 172_800_000 } else { 172_800 };
        (m.timestamp.saturating_add(two_days), 0, m.interval.max(0))
    } else {
        (m.expire, m.times, m.interval)
    };
    let delay_id = DelayId {
        timestamp: m.timestamp,
        dtype: i64::from(m.dmsgtype),
        expire,
        times,
        timed: 0,
        interval,
        seq: id::seq_for(&uuid, inner_topic_num),
        uuid,
    };
    let rec = Record {
        topic: m.topic.unwrap_or_default(),
        tags: m.tags,
        properties: m.properties,
        body: m.body.map(|b| b.to_vec()).unwrap_or_default(),
        id: delay_id.clone(),
        next_index: 0,
        next_due_ms: to_ms(m.timestamp),
        attempts: 0,
        first_failure_ms: 0,
        created_ms: now_ms,
        owner: owner.unwrap_or_default().to_string(),
        caught_up: 0,
    };
    (delay_id.to_string(), rec)
}
