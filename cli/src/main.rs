//! `pproxy-cli`: the operator commands of `pproxy` (send, delay, status) without the server.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "pproxy-cli", version, about = "pproxy operator CLI")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    #[command(flatten)]
    Client(pproxy_cli::Command),
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Client(c) => c.run(),
    }
}
