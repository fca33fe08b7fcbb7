//! The server's own commands of the `pproxy` binary (`run`, `check-config`), one file each, and
//! what they share; the client commands (`send`, `delay`, `status`) are the pproxy-cli crate's.

pub(crate) mod check;
pub(crate) mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use pproxy::config::settings::Settings;

pub(crate) const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PPROXY_GIT_COMMIT"),
    ")"
);

pub(crate) fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("{msg}");
    ExitCode::from(2)
}

pub(crate) fn config_path(config: Option<PathBuf>) -> Option<PathBuf> {
    config.or_else(|| {
        let p = PathBuf::from("conf/carrera.yaml");
        p.exists().then_some(p)
    })
}

pub(crate) fn load_settings(path: Option<&PathBuf>) -> Result<Settings, String> {
    match path {
        None => Ok(Settings::default()),
        Some(p) => {
            let (s, unknown) = Settings::load(p).map_err(|e| e.to_string())?;
            for k in unknown {
                eprintln!("warning: unknown key `{k}` in {} ignored", p.display());
            }
            Ok(s)
        }
    }
}
