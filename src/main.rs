//! The `pproxy` command: the server (`run`) and the operator tools (operations.md §7).
//! Exit status of the tools: 0 result code 0; 1 non-zero result code; 2 usage error;
//! 3 transport error, socket timeout or admin endpoint unreachable.

#![recursion_limit = "256"]

mod cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cmd::VERSION;

/// jemalloc instead of glibc's malloc: a fifth of the CPU of a fire went to malloc and free
/// (docs/DECISIONS.md, "Allocator").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its start: freed pages go back to the OS from its background
/// thread within seconds (the default keeps them 10 s, then 10 s more as lazily freed pages that
/// still count in RSS), so memory returns after a storm of connections.
#[export_name = "_rjem_malloc_conf"]
static MALLOC_CONF: MallocConf =
    MallocConf(c"background_thread:true,dirty_decay_ms:2000,muzzy_decay_ms:0".as_ptr());

/// A C string pointer jemalloc reads once, before any allocation.
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a static, NUL-terminated, never-written byte string.
unsafe impl Sync for MallocConf {}

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
    /// The client commands (send, delay, status): the pproxy-cli crate's.
    #[command(flatten)]
    Client(Box<pproxy_cli::Command>),
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
        Cmd::Client(c) => c.run(),
    }
}
