//! `sendDelaySync`: validation (delay.md §3) and, once the scheduler lands, add and cancel.

pub mod id;

use std::sync::Arc;

use crate::app::App;
use crate::forward::admit::DEFAULT_SIZE_LIMIT;
use crate::forward::validate::{check_tags_and_properties, is_blank};
use crate::proto::{Code, DelayMessage, Outcome};

/// Message of code 10 while no scheduler is built in (the Foundation issue's wording).
pub const SCHEDULER_UNAVAILABLE: &str = "FAILED: delay scheduler is not available.";

/// Default first-fire horizon: 62 days.
pub const MAX_DELAY_SECONDS: i64 = 5_356_800;

/// Timestamps at or above this are milliseconds.
pub const MS_THRESHOLD: i64 = 1_000_000_000_000;

/// Converts a client timestamp (seconds, or ms when >= 10^12) to ms.
pub fn to_ms(v: i64) -> i64 {
    if v >= MS_THRESHOLD {
        v
    } else {
        v.saturating_mul(1000)
    }
}

/// Runs the validation table of delay.md §3 (steps 2-17) at time `now_ms`.
pub fn validate(app: &App, m: &DelayMessage, now_ms: i64) -> Result<(), Code> {
    let snap = app.config.load();
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
        1 => validate_add(m, now_ms),
        2 => {
            let raw = m.uniq_delay_msg_id.as_deref().unwrap_or("");
            if is_blank(raw) {
                return Err(Code::IllegalDelayId);
            }
            let parsed = id::parse(raw.trim()).ok_or(Code::IllegalDelayId)?;
            if !(2..=4).contains(&parsed.dtype) {
                return Err(Code::IllegalDelayType);
            }
            if parsed.seq >= snap.proxy.carrera.inner_topic_num {
                return Err(Code::IllegalDelaySeq);
            }
            Ok(())
        }
        _ => Err(Code::IllegalDelayAction),
    }
}

fn validate_add(m: &DelayMessage, now_ms: i64) -> Result<(), Code> {
    let due_ms = to_ms(m.timestamp);
    if m.timestamp < 1_000_000_000 || due_ms > now_ms.saturating_add(MAX_DELAY_SECONDS * 1000) {
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

/// Handles one `sendDelaySync` after the drain check: the outcome and the id to answer.
pub async fn handle(app: &Arc<App>, m: Option<DelayMessage>) -> (Outcome, String) {
    let Some(m) = m else {
        return (Code::Illegal.into(), String::new());
    };
    let echo = if m.action == 2 {
        m.uniq_delay_msg_id.clone().unwrap_or_default()
    } else {
        String::new()
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    if let Err(code) = validate(app, &m, now_ms) {
        return (code.into(), echo);
    }
    // The durable scheduler is the delay issue's work; until then every valid request is refused.
    (
        Outcome {
            code: Code::Failed,
            msg: Some(SCHEDULER_UNAVAILABLE),
        },
        echo,
    )
}
