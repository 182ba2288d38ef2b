//! The `chimera` command line: thin over the coordinator, worker and eval crates.

mod cli;
mod commands;
mod distributed;
mod entities;
mod eval_entities;
mod eval_llm;
mod health;
mod progress;

use std::process::ExitCode;

use clap::Parser;

/// Exit status of a command whose reader went away (`chimera inspect m.json | head`), as a
/// shell reports one stopped by SIGPIPE.
const BROKEN_PIPE: i32 = 141;

/// A closed standard output ends the command quietly instead of with a panic: Rust ignores
/// SIGPIPE, so `println!` panics when the reader has gone.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(BROKEN_PIPE);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = cli::Cli::parse();
    progress::init_logging(&cli.global);
    if let Some(n) = cli.global.threads {
        if n == 0 {
            eprintln!("error: --threads must be at least 1");
            return ExitCode::from(2);
        }
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
        {
            eprintln!("error: cannot start {n} threads: {e}");
            return ExitCode::from(1);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            if !progress::json_logs() {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(1)
        }
    }
}
