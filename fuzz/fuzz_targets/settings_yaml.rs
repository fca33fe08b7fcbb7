//! carrera.yaml (`Settings::parse`) and what start-up derives from it without I/O: the mode,
//! the scheduler configuration and the static topics of `defaultTopicInfoConf`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pproxy::config::model::parse_topic_info;
use pproxy::config::settings::Settings;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((settings, _unknown)) = Settings::parse(s) else {
        return;
    };
    assert!(settings.port > 0);
    let _ = settings.mode();
    let c = settings.scheduler.to_config();
    assert!(c.max_loaded >= 1 && c.fire_batch_size >= 1);
    if let Some(v) = &settings.default_topic_info_conf {
        let _ = parse_topic_info(v);
    }
});
