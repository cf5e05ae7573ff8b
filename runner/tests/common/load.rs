//! Load runs for the load tests: a configuration for a URL, and a run that must end in time.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{atomic::AtomicBool, Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use runner::load::{
    self, request::RequestSpec, schedule::Schedule, LoadConfig, LoadError, LoadOutcome,
};

/// Tests that measure rates and latencies do not share the machine with each other.
static TIMING: Mutex<()> = Mutex::new(());

pub fn timing() -> MutexGuard<'static, ()> {
    TIMING.lock().unwrap_or_else(|e| e.into_inner())
}

/// One thread, a GET of the URL's path, a 5 s timeout.
pub fn config(url: &str, schedule: Schedule) -> LoadConfig {
    let target = load::parse_url(url).unwrap();
    LoadConfig {
        requests: vec![RequestSpec::get(&target.path)],
        target,
        threads: 1,
        cpus: Vec::new(),
        schedule,
        max_requests: None,
        timeout: Duration::from_secs(5),
        think: None,
        busy_poll: load::DEFAULT_BUSY_POLL,
        ws_message: "x".into(),
        http: Default::default(),
    }
}

/// Runs `config`, which must end within its schedule (30 s for a request count) plus its
/// timeout and 5 s.
pub fn try_run(config: &LoadConfig) -> Result<LoadOutcome, LoadError> {
    let started = Instant::now();
    let outcome = load::run(config, Arc::new(AtomicBool::new(false)), &mut |_| {});
    let limit = config
        .schedule
        .duration()
        .unwrap_or(Duration::from_secs(30))
        + config.timeout
        + Duration::from_secs(5);
    assert!(started.elapsed() < limit, "the run ended in time");
    outcome
}

pub fn run(config: &LoadConfig) -> LoadOutcome {
    try_run(config).unwrap()
}

/// A test server on a thread and runtime of its own: `serve` gets a listener on a free
/// loopback port. It runs until the returned sender is dropped.
pub fn serve_on_thread<F, Fut>(serve: F) -> (SocketAddr, tokio::sync::oneshot::Sender<()>)
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            tokio::select! {
                _ = serve(listener) => {}
                _ = stopped => {}
            }
        });
    });
    (addr_rx.recv().unwrap(), stop)
}
