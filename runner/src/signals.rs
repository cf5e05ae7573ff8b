//! Stopping cleanly: SIGINT, SIGTERM and SIGHUP (a closed terminal) set a flag that every
//! stage of a command watches, so it stops, cleans up and writes what it has.

use std::sync::{atomic::AtomicBool, Arc};

/// A flag set by SIGINT, SIGTERM or SIGHUP.
pub fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| anyhow::anyhow!("installing signal handlers: {e}"))?;
    }
    Ok(stop)
}
