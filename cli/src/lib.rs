//! The operator CLI of pproxy (operations.md §7): `send`, `delay` and `status`, a client of the
//! Thrift port and the admin port. A crate of its own so it builds without the proxy and its
//! broker libraries; the `pproxy` binary offers the same commands through [`Command`], and the
//! `pproxy-cli` binary offers them alone.
//!
//! Exit status: 0 result code 0; 1 non-zero result code; 2 usage error; 3 transport error,
//! socket timeout or admin endpoint unreachable.

pub mod admin;
pub mod common;
pub mod delay;
pub mod send;
pub mod status;

use std::process::ExitCode;

use clap::Subcommand;

pub use common::Common;

/// The client commands.
#[derive(Subcommand)]
pub enum Command {
    /// Send messages with sendSync (or sendAsync, or sendBatchSync with --batch).
    Send(send::SendArgs),
    /// sendDelaySync add/cancel, id status, dead letters.
    Delay {
        #[command(subcommand)]
        cmd: delay::DelayCmd,
        #[command(flatten)]
        common: Common,
    },
    /// Summary of /status and /ready.
    Status {
        #[command(flatten)]
        common: Common,
    },
}

impl Command {
    /// Runs the command; its exit status.
    pub fn run(self) -> ExitCode {
        match self {
            Command::Send(a) => send::send(a),
            Command::Delay { cmd, common } => delay::delay_command(cmd, common),
            Command::Status { common } => status::status(common),
        }
    }
}
