//! The `pproxy` command: the server (`run`) and the operator tools (operations.md §7).
//! Exit status of the tools: 0 result code 0; 1 non-zero result code; 2 usage error;
//! 3 transport error, socket timeout or admin endpoint unreachable.

#![recursion_limit = "256"]

mod cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cmd::delay::DelayCmd;
use cmd::send::SendArgs;
use cmd::{Common, VERSION};

#[derive(Parser)]
#[command(name = "pproxy", version = VERSION, about = "DDMQ-compatible producer proxy")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server (without -c: conf/carrera.yaml if present, else embedded mode).
    Run {
        /// carrera.yaml path.
        #[arg(short = 'c', long)]
        config: Option<PathBuf>,
        /// Write the pid here.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Log directory (overrides logging.dir).
        #[arg(long)]
        log_dir: Option<PathBuf>,
    },
    /// Parse carrera.yaml and the proxy config; print admitted topics and clusters.
    CheckConfig {
        /// carrera.yaml path.
        #[arg(short = 'c', long)]
        config: Option<PathBuf>,
    },
    /// Send messages with sendSync (or sendAsync, or sendBatchSync with --batch).
    Send(SendArgs),
    /// sendDelaySync add/cancel, id status, dead letters.
    Delay {
        #[command(subcommand)]
        cmd: DelayCmd,
        #[command(flatten)]
        common: Common,
    },
    /// Summary of /status and /ready.
    Status {
        #[command(flatten)]
        common: Common,
    },
    /// Print version and commit.
    Version,
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Version => {
            println!("pproxy {VERSION}");
            ExitCode::SUCCESS
        }
        Cmd::CheckConfig { config } => cmd::check::check_config(config),
        Cmd::Run {
            config,
            pid_file,
            log_dir,
        } => cmd::run::run(config, pid_file, log_dir),
        Cmd::Send(a) => cmd::send::send(a),
        Cmd::Delay { cmd, common } => cmd::delay::delay_command(cmd, common),
        Cmd::Status { common } => cmd::status::status(common),
    }
}
