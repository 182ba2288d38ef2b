//! Logs (text or JSON) and progress bars (only on a terminal, never in JSON mode).

use std::io::IsTerminal;
use std::sync::OnceLock;

use chimera_coordinator::Progress;
use indicatif::{ProgressBar, ProgressStyle};
use tracing_subscriber::EnvFilter;

use crate::cli::{GlobalArgs, LogFormat};

static JSON: OnceLock<bool> = OnceLock::new();
static BARS: OnceLock<bool> = OnceLock::new();

pub fn json_logs() -> bool {
    JSON.get().copied().unwrap_or(false)
}

pub fn init_logging(g: &GlobalArgs) {
    let json = g.log_format == LogFormat::Json;
    let _ = JSON.set(json);
    let _ = BARS.set(!json && !g.quiet && std::io::stderr().is_terminal());
    let default = if g.quiet { "warn" } else { "info" };
    let filter = EnvFilter::try_from_env("CHIMERA_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().with_current_span(true).init();
    } else {
        builder.with_target(false).without_time().init();
    }
}

/// A progress bar per pass over the table, on a terminal.
pub struct Bars {
    bar: std::sync::Mutex<Option<ProgressBar>>,
}

impl Bars {
    pub fn new() -> Bars {
        Bars {
            bar: std::sync::Mutex::new(None),
        }
    }

    pub fn enabled() -> bool {
        BARS.get().copied().unwrap_or(false)
    }

    /// A bar over `total` units labelled `what`, or a hidden one.
    pub fn counter(what: &str, total: u64) -> ProgressBar {
        if !Self::enabled() {
            return ProgressBar::hidden();
        }
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template(
                "{msg:>10} [{bar:40}] {human_pos}/{human_len} rows ({per_sec}, {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_message(what.to_string());
        b
    }
}

impl Progress for Bars {
    fn start(&self, pass: &str, rows: Option<u64>) {
        tracing::info!(pass, "pass over the table");
        if !Self::enabled() {
            return;
        }
        let b = match rows {
            Some(n) => Self::counter(pass, n),
            None => {
                let b = ProgressBar::new_spinner();
                b.set_style(
                    ProgressStyle::with_template(
                        "{msg:>10} {spinner} {human_pos} rows ({per_sec})",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                b.set_message(pass.to_string());
                b
            }
        };
        if let Ok(mut g) = self.bar.lock() {
            *g = Some(b);
        }
    }

    fn advance(&self, rows: u64) {
        if let Ok(g) = self.bar.lock()
            && let Some(b) = g.as_ref()
        {
            b.inc(rows);
        }
    }

    fn finish(&self) {
        if let Ok(mut g) = self.bar.lock()
            && let Some(b) = g.take()
        {
            b.finish_and_clear();
        }
    }
}
