//! `pproxy run`: the server.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{config_path, load_settings, usage, VERSION};

pub(crate) fn run(
    config: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    log_dir: Option<PathBuf>,
) -> ExitCode {
    let path = config_path(config);
    let mut settings = match load_settings(path.as_ref()) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    if let Some(d) = log_dir {
        settings.logging.dir = d;
    }
    if let Err(e) = pproxy::logging::init(&settings.logging) {
        eprintln!(
            "pproxy: cannot log to {}: {e}",
            settings.logging.dir.display()
        );
        return ExitCode::from(2);
    }
    tracing::info!(version = VERSION, "starting");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(pproxy::runtime::run(settings, path, pid_file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "fatal");
            eprintln!("pproxy: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
