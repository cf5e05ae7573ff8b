//! Live progress of a load on stderr.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use crate::load::Progress;

/// A progress display on stderr when it is a terminal; nothing otherwise.
pub fn bar(total: Option<std::time::Duration>) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match total {
        Some(t) => ProgressBar::new(t.as_secs().max(1)).with_style(
            ProgressStyle::with_template("{elapsed:>4}/{len}s [{bar:30}] {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("valid template"),
        ),
    };
    Some(bar)
}

/// Shows `p` on `bar`.
pub fn show(bar: &Option<ProgressBar>, p: &Progress) {
    if let Some(bar) = bar {
        bar.set_position(p.elapsed.as_secs());
        bar.set_message(format!(
            "ok/s {} · p99 {:.2}ms · errors {}",
            p.last_second.ok,
            p.last_second.p99_us as f64 / 1000.0,
            p.errors
        ));
    }
}

/// Clears the bar, if any.
pub fn finish(bar: Option<ProgressBar>) {
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}
