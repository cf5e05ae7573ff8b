//! Command-line parsing. clap lives here only; arguments are validated into the typed
//! configurations that the commands take.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::{
    cgroup,
    commands::{
        self,
        load::LoadRun,
        probe::{ProbeRun, TargetSpec},
    },
    cpython::install::Choice,
    probe::{ProbeConfig, ProbeKind, MAX_FREQ},
};

#[derive(Parser, Debug)]
#[command(
    name = "runner",
    version,
    about = "HTTP load, eBPF probes and flamegraphs for web-framework apps"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Attach the four probes (oncpu, offcpu, runqlat, syscalls) and the resource sampler to
    /// processes, a cgroup, a container, or a command (with load at --url if given), and write
    /// flamegraphs and figures.
    Probe(Box<ProbeArgs>),
    /// Drive HTTP (or WebSocket echo) load at a URL: closed or open loop, schedules, mixes.
    Load(Box<LoadArgs>),
    /// Profile an app under load: provision, start, verify, warm up, then record latency,
    /// flamegraphs, syscalls, run queue and resources into results/<run-id>/. Or a service
    /// that already runs (--container, --pid, --cgroup with --url), left as it is.
    Profile(Box<ProfileArgs>),
    /// Profile the apps x scenarios matrix (or running services, --targets FILE), --runs
    /// times per cell, medians side by side.
    Bench(Box<BenchArgs>),
    /// Re-render report.md and report.html of a run or bench folder.
    Report {
        /// A run or bench folder.
        dir: PathBuf,
    },
    /// Two runs side by side, with a differential on-CPU flamegraph written into RUN_B.
    Compare { run_a: PathBuf, run_b: PathBuf },
    /// List the apps and which scenarios each supports.
    List {
        /// Print the matrix as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start an app (and its database) and check every supported scenario against the contract.
    Verify {
        /// A bundled app's name, or the path of an app.toml.
        app: String,
        /// Check only these scenarios (repeatable).
        #[arg(long = "scenario", value_name = "S")]
        scenarios: Vec<String>,
        /// The interpreter of a Python app: a version found on this machine (3.12, 3.13.0,
        /// from pyenv, uv, /usr/bin, /usr/local/bin) or a path [default: the system's python3,
        /// or the same version with symbols when one is installed].
        #[arg(long, value_name = "VERSION|PATH", value_parser = parse_python)]
        python: Option<Choice>,
    },
    /// Find event loops that block: load each scenario (or URL) in turn and name the syscall
    /// and the Python line that stalled the loop.
    Diagnose(Box<DiagnoseArgs>),
    /// Check that this machine can run the probes, and say how to fix what is missing.
    Doctor,
}

#[derive(Args, Debug)]
struct DiagnoseArgs {
    /// A bundled app's name, or the path of an app.toml (or a running target with --url: --container, --pid, --cgroup; or -- CMD).
    app: Option<String>,
    /// Diagnose only these scenarios (repeatable; default: every supported one).
    #[arg(long = "scenario", value_name = "S")]
    scenarios: Vec<String>,
    #[command(flatten)]
    target: TargetArgs,
    /// A URL to load while watching a running target or the command (repeatable; one window
    /// each; with --mix, the base URL).
    #[arg(long = "url", value_name = "URL")]
    urls: Vec<String>,
    #[command(flatten)]
    shape: ShapeArgs,
    #[command(flatten)]
    request: RequestArgs,
    #[command(flatten)]
    check: CheckArgs,
    /// Warm-up before each scenario, not measured.
    #[arg(long, default_value = "1s", value_parser = parse_warmup)]
    warmup: Duration,
    /// An iteration of an event loop at least this long is a stall.
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    threshold: Duration,
    /// App worker processes (default: the app's, per its app.toml).
    #[arg(long)]
    workers: Option<u32>,
    /// The interpreter of a Python app: a version found on this machine or a path (see
    /// `runner profile --help`).
    #[arg(long, value_name = "VERSION|PATH", value_parser = parse_python)]
    python: Option<Choice>,
    /// On-CPU sampling frequency in Hz (finds the hot line of CPU-bound stalls).
    #[arg(long, default_value_t = 499)]
    freq: u64,
    /// Results folder; the diagnosis goes into a new folder inside it.
    #[arg(long, default_value = "results", value_name = "DIR")]
    out: PathBuf,
    /// A command to launch and diagnose (with --url).
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// How much load, shared by `runner load` and `runner profile`.
#[derive(Args, Debug)]
struct ShapeArgs {
    /// Connections (closed loop), or the most connections in flight (open loop) [default: 50;
    /// diagnose: 10, or a list such as 1,10,64 to load each scenario or URL at each].
    #[arg(
        short = 'c',
        long,
        value_delimiter = ',',
        allow_negative_numbers = true
    )]
    connections: Vec<i64>,
    /// Worker threads, each a pinned current-thread runtime.
    #[arg(short = 't', long, default_value_t = 1, allow_negative_numbers = true)]
    threads: i64,
    /// Duration (per step with --rates).
    #[arg(short = 'd', long, value_parser = parse_duration, conflicts_with = "requests")]
    duration: Option<Duration>,
    /// Stop after this many requests.
    #[arg(short = 'n', long = "requests", allow_negative_numbers = true)]
    requests: Option<i64>,
    /// Open loop at a constant rate (requests/s).
    #[arg(long, allow_negative_numbers = true, conflicts_with_all = ["rates", "schedule"])]
    rate: Option<f64>,
    /// Open loop, one step per rate, each lasting -d.
    #[arg(
        long,
        value_delimiter = ',',
        allow_negative_numbers = true,
        conflicts_with = "schedule"
    )]
    rates: Vec<f64>,
    /// A schedule: sweep:50-1000:50:10s, rates:1000,2000:10s, spike:10,100,250,500:15s,
    /// ramp:100-5000:60s, steady:C:DUR or rate:R:DUR.
    #[arg(long, value_name = "SPEC")]
    schedule: Option<String>,
    /// Pause between a response and the next request on a connection (closed loop).
    #[arg(long, value_parser = parse_duration)]
    think: Option<Duration>,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// A run whose share of failed requests is above this (percent) fails; so does one
    /// without a single correct response.
    #[arg(long, default_value_t = 5.0, value_name = "PERCENT")]
    max_error_rate: f64,
}

/// A run this long gets a warning.
const LONG_RUN: Duration = Duration::from_secs(24 * 3600);

/// The shape's threads, request budget and schedule.
struct Shape {
    threads: usize,
    max_requests: Option<u64>,
    schedule: crate::load::schedule::Schedule,
}

impl ShapeArgs {
    /// Validates the shape; `default_duration` applies when neither -d nor -n is given.
    fn resolve(&self, default_duration: Duration) -> anyhow::Result<Shape> {
        self.resolve_with(default_duration, 50)
    }

    /// The share of failed requests (percent) above which a run fails.
    fn error_rate(&self) -> anyhow::Result<f64> {
        if !(0.0..=100.0).contains(&self.max_error_rate) {
            bail!(
                "--max-error-rate is a percentage from 0 to 100, not {}",
                self.max_error_rate
            );
        }
        Ok(self.max_error_rate)
    }

    /// The connection counts given with -c (`default` when none), each at least 1.
    fn counts(&self, default: i64) -> anyhow::Result<Vec<usize>> {
        if self.connections.is_empty() {
            return Ok(vec![positive("connections (-c)", default)?]);
        }
        self.connections
            .iter()
            .map(|&c| positive("connections (-c)", c))
            .collect()
    }

    /// The same, with a command's own default number of connections.
    fn resolve_with(
        &self,
        default_duration: Duration,
        default_connections: i64,
    ) -> anyhow::Result<Shape> {
        let connections = match self.connections.as_slice() {
            [] => positive("connections (-c)", default_connections)?,
            [one] => positive("connections (-c)", *one)?,
            _ => bail!(
                "-c takes one count here; runner diagnose takes a list (1,10,64), and --schedule sweep:... loads one after the other"
            ),
        };
        self.shape_with(default_duration, connections)
    }

    /// The shape with `connections`, whatever -c said.
    fn shape_with(&self, default_duration: Duration, connections: usize) -> anyhow::Result<Shape> {
        use crate::load::schedule::Schedule;
        let threads = positive("threads (-t)", self.threads)?;
        let max_requests = self
            .requests
            .map(|n| positive("requests (-n)", n).map(|n| n as u64))
            .transpose()?;
        for r in self.rate.iter().chain(&self.rates) {
            if !(r.is_finite() && *r > 0.0) {
                bail!("the rate must be above zero, not {r}");
            }
        }
        let duration = match (self.duration, max_requests) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(default_duration),
        };
        if let Some(d) = duration.filter(|d| *d >= LONG_RUN) {
            eprintln!(
                "runner: warning: -d {} is a long run; Ctrl-C stops it early and keeps what was measured",
                humantime::format_duration(d)
            );
        }
        if let (Some(think), Some(d)) = (self.think, duration) {
            if think >= d {
                eprintln!(
                    "runner: warning: --think {} is as long as the run ({}): each connection sends at most one request",
                    humantime::format_duration(think),
                    humantime::format_duration(d)
                );
            }
        }
        let schedule = if let Some(spec) = &self.schedule {
            Schedule::parse(spec, connections)?
        } else if let Some(rate) = self.rate {
            Schedule::rates(&[rate], connections, duration)
        } else if !self.rates.is_empty() {
            Schedule::rates(&self.rates, connections, duration)
        } else {
            Schedule::closed(connections, duration)
        };
        Ok(Shape {
            threads,
            max_requests,
            schedule,
        })
    }
}

/// What each request sends, shared by `runner load` and `runner profile --url`.
#[derive(Args, Debug)]
struct RequestArgs {
    /// HTTP method.
    #[arg(short = 'm', long, default_value = "GET")]
    method: String,
    /// A header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "K: V")]
    headers: Vec<String>,
    /// Request body text; {A..B} and {unique} are filled in per request.
    #[arg(long, conflicts_with_all = ["body_file", "body_size", "multipart"])]
    body: Option<String>,
    /// Request body from a file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["body_size", "multipart"])]
    body_file: Option<PathBuf>,
    /// A random body of this size, e.g. 5MiB.
    #[arg(long, value_name = "BYTES", conflicts_with = "multipart")]
    body_size: Option<String>,
    /// Upload FILE as multipart/form-data field `file`.
    #[arg(long, value_name = "FILE")]
    multipart: Option<PathBuf>,
}

impl RequestArgs {
    /// The body source these arguments describe.
    fn body(&self) -> anyhow::Result<crate::load::request::BodySource> {
        use crate::load::request::BodySource;
        let readable = |file: &PathBuf, what: &str| -> anyhow::Result<()> {
            std::fs::File::open(file)
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("cannot read the {what} {}: {e}", file.display()))
        };
        Ok(if let Some(text) = &self.body {
            BodySource::Text(text.clone())
        } else if let Some(file) = &self.body_file {
            readable(file, "body file")?;
            BodySource::File(file.clone())
        } else if let Some(size) = &self.body_size {
            BodySource::Size(parse_size(size)?)
        } else if let Some(file) = &self.multipart {
            readable(file, "multipart file")?;
            BodySource::Multipart(file.clone())
        } else {
            BodySource::Empty
        })
    }
}

/// What else is requested and what counts as a correct response, shared by `runner load` and
/// the commands that load a running target.
#[derive(Args, Debug)]
struct CheckArgs {
    /// A weighted mix of requests from a TOML file (see README); replaces the URL's path.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["body", "body_file", "body_size", "multipart"])]
    mix: Option<PathBuf>,
    /// Statuses that count as correct (default: any 2xx).
    #[arg(long, value_delimiter = ',')]
    expect_status: Vec<u16>,
    /// The body must be exactly this.
    #[arg(long, conflicts_with_all = ["expect_json", "expect_sha256"])]
    expect_body: Option<String>,
    /// The body must be JSON containing these keys and values.
    #[arg(long, conflicts_with = "expect_sha256")]
    expect_json: Option<String>,
    /// The body must have this SHA-256 (64 hex digits); needs --expect-size.
    #[arg(long, requires = "expect_size")]
    expect_sha256: Option<String>,
    /// The body must have this many bytes (with --expect-sha256).
    #[arg(long, requires = "expect_sha256")]
    expect_size: Option<u64>,
    /// WebSocket message to echo.
    #[arg(long, default_value = "runner-echo")]
    ws_message: String,
}

impl CheckArgs {
    /// The expectations of a request of the user's own.
    fn expect(&self) -> anyhow::Result<crate::load::request::Expect> {
        use crate::load::request::{parse_sha256, BodyCheck, Expect, RequestError, StatusExpect};
        let body = if let Some(body) = &self.expect_body {
            Some(BodyCheck::Exact(body.clone().into()))
        } else if let Some(json) = &self.expect_json {
            Some(BodyCheck::JsonSubset(
                serde_json::from_str(json).map_err(|e| RequestError::ExpectJson(e.to_string()))?,
            ))
        } else if let (Some(sha), Some(size)) = (&self.expect_sha256, self.expect_size) {
            Some(BodyCheck::Digest {
                size,
                sha256: parse_sha256(sha)?,
            })
        } else {
            None
        };
        let status = if self.expect_status.is_empty() {
            StatusExpect::Success
        } else {
            StatusExpect::OneOf(self.expect_status.clone())
        };
        Ok(Expect { status, body })
    }

    /// True when any option of these was given.
    fn given(&self) -> bool {
        self.mix.is_some()
            || !self.expect_status.is_empty()
            || self.expect_body.is_some()
            || self.expect_json.is_some()
            || self.expect_sha256.is_some()
    }
}

/// What a command loads when it is not a contract scenario: the `--mix` file's requests, or
/// one request at `path` made of -m, -H and the body options, checked by the --expect
/// options. Returns a label for folder names and reports with the requests.
fn own_requests(
    path: &str,
    request: &RequestArgs,
    check: &CheckArgs,
) -> anyhow::Result<(String, Vec<crate::load::request::RequestSpec>)> {
    use crate::load::request::{read_mix, RequestSpec};
    if let Some(mix) = &check.mix {
        let stem = mix
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "mix".into());
        return Ok((format!("mix-{stem}"), read_mix(mix)?));
    }
    let label = format!(
        "url{}",
        path.replace(['/', '?', '&', '=', '{', '}', '.'], "-")
            .trim_end_matches('-')
    );
    Ok((
        label,
        vec![RequestSpec {
            name: "request".into(),
            weight: 1,
            method: request.method.clone(),
            path: path.to_string(),
            headers: request.headers.clone(),
            body: request.body()?,
            expect: check.expect()?,
        }],
    ))
}

/// A running target: a container, processes, or a cgroup.
#[derive(Args, Debug, Default)]
struct TargetArgs {
    /// A running Docker or Podman container: name, id, or compose service name, found
    /// through the Docker Engine API (DOCKER_HOST, /var/run/docker.sock or
    /// /run/podman/podman.sock).
    #[arg(long, value_name = "NAME|ID", conflicts_with_all = ["pids", "cgroup"])]
    container: Option<String>,
    /// A running process, with its children and the processes they fork (repeatable).
    #[arg(long = "pid", value_name = "PID", conflicts_with = "cgroup")]
    pids: Vec<u32>,
    /// A cgroup v2 directory and its descendants (on hybrid machines, the directory under
    /// /sys/fs/cgroup/unified).
    #[arg(long, value_name = "PATH")]
    cgroup: Option<PathBuf>,
}

impl TargetArgs {
    /// The target named, if any.
    fn spec(&self) -> Option<crate::target::TargetSpec> {
        use crate::target::TargetSpec;
        if let Some(c) = &self.container {
            Some(TargetSpec::Container(c.clone()))
        } else if !self.pids.is_empty() {
            Some(TargetSpec::Pids(self.pids.clone()))
        } else {
            self.cgroup.clone().map(TargetSpec::Cgroup)
        }
    }
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// Apps to run (default: all bundled apps).
    #[arg(long, value_delimiter = ',')]
    apps: Vec<String>,
    /// Scenarios to run (default: ping).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Compare services that already run instead of bundled apps: a TOML file of targets,
    /// each a name, a container, pid or cgroup, a base URL, and scenarios, paths or mixes
    /// (see README).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["apps", "scenarios"])]
    targets: Option<PathBuf>,
    /// Interpreters of the Python apps, a matrix dimension: versions found on this machine
    /// (3.11,3.13) or paths [default: one, as `runner profile` chooses].
    #[arg(long, value_name = "VERSION|PATH,...", value_delimiter = ',', value_parser = parse_python, conflicts_with = "targets")]
    python: Vec<Choice>,
    /// Runs per cell; the report shows medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Measure a run again when the machine disturbed it (steal, other processes, stalls),
    /// up to this many times.
    #[arg(long, default_value_t = 1)]
    repeat_disturbed: usize,
    #[command(flatten)]
    shape: ShapeArgs,
    /// Warm-up before each run.
    #[arg(long, default_value = "5s", value_parser = parse_warmup)]
    warmup: Duration,
    /// No probes: load and procfs figures only.
    #[arg(long)]
    no_probes: bool,
    /// Results folder; the bench goes into a new bench-<time> folder inside it.
    #[arg(long, default_value = "results", value_name = "DIR")]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct ProfileArgs {
    /// A bundled app's name, or the path of an app.toml of your own. With --container, --pid
    /// or --cgroup: the contract scenario to load, if any.
    app: Option<String>,
    /// A contract scenario (see `runner list`); or use --url.
    scenario: Option<String>,
    #[command(flatten)]
    target: TargetArgs,
    /// For an app: a path of it to load instead of a scenario (with -m, -H, --body...). For a
    /// running target: the full URL to load, or its base URL with a scenario or --mix.
    #[arg(long, value_name = "URL|PATH")]
    url: Option<String>,
    #[command(flatten)]
    shape: ShapeArgs,
    #[command(flatten)]
    request: RequestArgs,
    #[command(flatten)]
    check: CheckArgs,
    /// Warm-up before recording, excluded from the results.
    #[arg(long, default_value = "5s", value_parser = parse_warmup)]
    warmup: Duration,
    /// App worker processes (default: the app's CPU count, per its app.toml).
    #[arg(long)]
    workers: Option<u32>,
    /// The interpreter of a Python app: a version found on this machine (3.12, 3.13.0,
    /// from pyenv, uv, /usr/bin, /usr/local/bin) or a path [default: the system's python3,
    /// or the same version with symbols when one is installed].
    #[arg(long, value_name = "VERSION|PATH", value_parser = parse_python)]
    python: Option<Choice>,
    /// CPUs for the app (default: the upper half).
    #[arg(long, value_name = "LIST")]
    app_cpus: Option<String>,
    /// CPUs for the load client and the database (default: the lower half; for a running
    /// target, the CPUs outside its cpuset, or no pinning).
    #[arg(long, value_name = "LIST")]
    client_cpus: Option<String>,
    /// Memory limit of the app (default: 2GiB).
    #[arg(long)]
    memory: Option<String>,
    /// On-CPU sampling frequency in Hz.
    #[arg(long, default_value_t = 99)]
    freq: u64,
    /// Probes to attach, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "oncpu,offcpu,runqlat,syscalls,evloop", value_parser = parse_probe, conflicts_with = "no_probes")]
    probes: Vec<ProbeKind>,
    /// Results folder; the run goes into a new folder inside it.
    #[arg(long, default_value = "results", value_name = "DIR")]
    out: PathBuf,
    /// No probes: load and procfs figures only (needs no root).
    #[arg(long)]
    no_probes: bool,
    /// Leave the app running after the load until Ctrl-C.
    #[arg(long)]
    keep_running: bool,
}

fn parse_warmup(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text).map_err(|e| format!("`{text}` is not a duration like 5s ({e})"))
}

#[derive(Args, Debug)]
struct LoadArgs {
    /// http:// or https://host:port/path, or ws:// or wss:// for WebSocket echo load.
    url: String,
    #[command(flatten)]
    shape: ShapeArgs,
    #[command(flatten)]
    request: RequestArgs,
    /// CPUs to pin the worker threads to, e.g. 0 or 0,2-3.
    #[arg(long, value_name = "LIST")]
    cpus: Option<String>,
    #[command(flatten)]
    check: CheckArgs,
    /// HTTP/2: TLS with ALPN h2 for https://, cleartext with prior knowledge (h2c) for http://.
    #[arg(long)]
    http2: bool,
    /// HTTP/2 streams in flight per connection.
    #[arg(
        short = 'p',
        long = "streams",
        value_name = "STREAMS",
        allow_negative_numbers = true
    )]
    streams: Option<i64>,
    /// Accept TLS certificates that do not verify (self-signed, another host's).
    #[arg(short = 'k', long)]
    insecure: bool,
    /// The HTTP/1.1 client: auto (the lean one when it can send the requests), lean, hyper.
    #[arg(long, value_name = "CLIENT", default_value = "auto", value_parser = parse_http1_client)]
    http1_client: crate::load::http1::Client,
    /// Once two responses come this close together (closed loop, no --think), the worker
    /// polls for the next one instead of sleeping, so the server need not wake it for each
    /// response; 0 never polls.
    #[arg(long, value_name = "DURATION", default_value = "20us", value_parser = parse_warmup)]
    busy_poll: Duration,
    /// Write the report as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the latency percentile distribution (HdrHistogram .hgrm).
    #[arg(long, value_name = "FILE")]
    hgrm: Option<PathBuf>,
    /// Write the per-second time series as CSV.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ProbeArgs {
    /// A process to record (repeatable), with its children; processes they fork are followed.
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// A cgroup v2 directory to record, with its descendants (repeatable).
    #[arg(long = "cgroup", value_name = "PATH")]
    cgroups: Vec<PathBuf>,
    /// A running Docker or Podman container (name, id, or compose service), found through
    /// the Docker Engine API (DOCKER_HOST, /var/run/docker.sock or /run/podman/podman.sock).
    #[arg(long, value_name = "NAME|ID", conflicts_with_all = ["pids", "cgroups"])]
    container: Option<String>,
    /// Drive load at this URL while recording (with the options of `runner load`); the
    /// recording lasts as long as the load.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    #[command(flatten)]
    shape: ShapeArgs,
    #[command(flatten)]
    request: RequestArgs,
    #[command(flatten)]
    check: CheckArgs,
    /// On-CPU sampling frequency in Hz (1 to 10000).
    #[arg(long, default_value_t = 99)]
    freq: u64,
    /// Shortest off-CPU interval recorded.
    #[arg(long, default_value = "1us", value_parser = parse_duration)]
    offcpu_min: Duration,
    /// Probes to attach, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "oncpu,offcpu,runqlat,syscalls", value_parser = parse_probe)]
    probes: Vec<ProbeKind>,
    /// Do not follow processes forked by --pid targets or the command.
    #[arg(long)]
    no_follow: bool,
    /// Output directory (default: results/probe-<UTC time>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The command to launch and record.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// A `--python` that names an interpreter found here (looked up now, so a missing one is
/// refused before anything starts).
fn parse_python(text: &str) -> Result<Choice, String> {
    let choice: Choice = text.parse().map_err(|e| format!("{e}"))?;
    crate::cpython::install::find(&choice).map_err(|e| format!("{e}"))?;
    Ok(choice)
}

fn parse_probe(text: &str) -> Result<ProbeKind, String> {
    ProbeKind::ALL
        .into_iter()
        .find(|k| k.name() == text)
        .ok_or_else(|| {
            format!("`{text}` is not a probe (oncpu, offcpu, runqlat, syscalls, evloop)")
        })
}

fn parse_http1_client(text: &str) -> Result<crate::load::http1::Client, String> {
    use crate::load::http1::Client;
    match text {
        "auto" => Ok(Client::Auto),
        "lean" => Ok(Client::Lean),
        "hyper" => Ok(Client::Hyper),
        _ => Err(format!("`{text}` is not a client (auto, lean, hyper)")),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration like 10s, 500ms or 2m ({e})"))?;
    if duration.is_zero() {
        return Err("the duration must be above zero".into());
    }
    Ok(duration)
}

/// Parses the command line, runs the command and returns the process exit code.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // Whatever a killed runner left behind is cleaned up first.
    let reaped = crate::journal::reap();
    for r in &reaped {
        if !r.done.is_empty() {
            eprintln!(
                "runner: an earlier runner (pid {}, `{}`) ended without cleaning up; now done: {}",
                r.pid,
                r.command,
                r.done.join("; ")
            );
        }
    }
    match cli.command {
        Command::Probe(args) => {
            let run = probe_run(*args)?;
            let outcome = commands::probe::run(&run)?;
            Ok(if outcome.target_gone.is_some() {
                ExitCode::FAILURE
            } else if outcome.interrupted {
                ExitCode::from(130)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Load(args) => commands::load::run(&load_run(*args)?),
        Command::Profile(args) => commands::profile::run(&profile_run(*args)?),
        Command::Bench(args) => commands::bench::run(&bench_run(*args)?),
        Command::Report { dir } => commands::report::rerender(&dir),
        Command::Compare { run_a, run_b } => commands::report::compare(&run_a, &run_b),
        Command::List { json } => commands::apps::list(json),
        Command::Verify {
            app,
            scenarios,
            python,
        } => commands::apps::verify(&app, &scenarios, python.as_ref()),
        Command::Diagnose(args) => commands::diagnose::run(&diagnose_run(*args)?),
        Command::Doctor => commands::doctor(&reaped),
    }
}

fn bench_run(args: BenchArgs) -> anyhow::Result<commands::bench::BenchRun> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let shape = args.shape.resolve(Duration::from_secs(30))?;
    let targets = match &args.targets {
        Some(file) => {
            let entries = crate::target::file::read(file)?;
            for e in &entries {
                crate::load::parse_url(&e.url)
                    .with_context(|| format!("{}: target `{}`", file.display(), e.name))?;
                for w in &e.workloads {
                    if let crate::target::file::Workload::Mix(mix) = w {
                        crate::load::request::read_mix(mix)
                            .with_context(|| format!("{}: target `{}`", file.display(), e.name))?;
                    }
                }
            }
            entries
        }
        None => Vec::new(),
    };
    Ok(commands::bench::BenchRun {
        pythons: args.python,
        apps: args.apps,
        scenarios: args.scenarios,
        targets,
        runs: args.runs,
        repeat_disturbed: args.repeat_disturbed,
        template: commands::profile::ProfileRun {
            target: commands::profile::ProfileTarget::App(String::new()),
            scenario: None,
            own: None,
            ws_message: "runner-echo".into(),
            threads: shape.threads,
            schedule: shape.schedule,
            max_requests: shape.max_requests,
            timeout: args.shape.timeout,
            think: args.shape.think,
            max_error_rate: args.shape.error_rate()?,
            warmup: args.warmup,
            workers: None,
            python: None,
            app_cpus: None,
            client_cpus: None,
            memory: Some(2 << 30),
            probe: ProbeConfig::default(),
            no_probes: args.no_probes,
            keep_running: false,
            out: args.out,
        },
    })
}

fn diagnose_run(args: DiagnoseArgs) -> anyhow::Result<commands::diagnose::DiagnoseRun> {
    use commands::diagnose::{DiagnoseRun, DiagnoseTarget, UrlJob};
    if !(1..=MAX_FREQ).contains(&args.freq) {
        bail!(
            "--freq must be between 1 and {MAX_FREQ} Hz, not {}",
            args.freq
        );
    }
    if args.shape.connections.contains(&0) {
        bail!("--connections must be at least 1");
    }
    let counts = args.shape.counts(10)?;
    if counts.len() > 1
        && (args.shape.rate.is_some()
            || !args.shape.rates.is_empty()
            || args.shape.schedule.is_some())
    {
        bail!("several connection counts (-c 1,10,64) run closed loops: drop --rate, --rates or --schedule");
    }
    let shape = args.shape.shape_with(Duration::from_secs(10), counts[0])?;
    let running = args.target.spec();
    let target = match (args.app, running.is_some(), args.command.is_empty()) {
        (Some(app), false, true) => {
            if !args.urls.is_empty() {
                bail!("--url goes with a running target (--container, --pid, --cgroup) or a command; an app is loaded at its scenarios (--scenario)");
            }
            DiagnoseTarget::App {
                app,
                scenarios: args.scenarios,
            }
        }
        (None, true, true) | (None, false, false) => {
            if args.python.is_some() {
                bail!("--python applies to apps runner starts; a running target or a command keeps its own interpreter");
            }
            if args.urls.is_empty() {
                bail!("say where to send load: --url http://127.0.0.1:PORT/path (repeatable)");
            }
            if !args.scenarios.is_empty() {
                bail!("--scenario needs an app; with a running target or a command, use --url");
            }
            if args.check.mix.is_some() && args.urls.len() > 1 {
                bail!("--mix loads one window at one base URL: give a single --url");
            }
            let jobs = args
                .urls
                .iter()
                .map(|url| {
                    let parsed = crate::load::parse_url(url)?;
                    let (label, requests) = own_requests(&parsed.path, &args.request, &args.check)?;
                    Ok(UrlJob {
                        label: if args.check.mix.is_some() {
                            format!("{label} at {url}")
                        } else {
                            url.clone()
                        },
                        url: url.clone(),
                        requests,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            match running {
                Some(spec) => DiagnoseTarget::Running { spec, jobs },
                None => DiagnoseTarget::Command {
                    argv: args.command,
                    jobs,
                },
            }
        }
        (None, false, true) => bail!(
            "name what to diagnose: an app (runner list), ./path/app.toml, --container NAME --url URL, --pid PID --url URL, or -- CMD --url URL"
        ),
        _ => bail!("diagnose one thing: an app, a running target (--container, --pid, --cgroup), or a command"),
    };
    let probes = [
        ProbeKind::Oncpu,
        ProbeKind::Offcpu,
        ProbeKind::Syscalls,
        ProbeKind::Evloop,
    ];
    Ok(DiagnoseRun {
        target,
        shape: crate::load::LoadShape {
            threads: shape.threads,
            cpus: Vec::new(),
            schedule: shape.schedule,
            max_requests: shape.max_requests,
            timeout: args.shape.timeout,
            think: args.shape.think,
        },
        connections: counts,
        ws_message: args.check.ws_message,
        warmup: args.warmup,
        workers: workers(args.workers)?,
        python: args.python,
        probe: ProbeConfig {
            freq_hz: args.freq,
            probes: probes.into_iter().collect(),
            stall_threshold: args.threshold,
            loops_only: true,
            ..ProbeConfig::default()
        },
        out: args.out,
    })
}

fn profile_run(args: ProfileArgs) -> anyhow::Result<commands::profile::ProfileRun> {
    use commands::profile::ProfileTarget;
    if !(1..=MAX_FREQ).contains(&args.freq) {
        bail!(
            "--freq must be between 1 and {MAX_FREQ} Hz, not {}",
            args.freq
        );
    }
    let shape = args.shape.resolve(Duration::from_secs(30))?;
    let (target, scenario, own) = match args.target.spec() {
        Some(spec) => {
            if args.scenario.is_some() {
                bail!("a running target takes at most a scenario: runner profile --container NAME [SCENARIO] --url URL");
            }
            for (given, flag) in [
                (args.workers.is_some(), "--workers"),
                (args.app_cpus.is_some(), "--app-cpus"),
                (args.memory.is_some(), "--memory"),
                (args.python.is_some(), "--python"),
                (args.keep_running, "--keep-running"),
            ] {
                if given {
                    bail!("{flag} applies to apps runner starts; a running target keeps its own settings");
                }
            }
            let url = args.url.clone().ok_or_else(|| {
                anyhow::anyhow!("say where the target answers: --url http://HOST:PORT/PATH")
            })?;
            let parsed = crate::load::parse_url(&url)?;
            let scenario = args.app.clone();
            if scenario.is_some() && args.check.given() {
                bail!("a scenario brings its own requests and checks: drop --mix and --expect-*, or the scenario");
            }
            let own = match scenario {
                Some(_) => None,
                None => Some(own_requests(&parsed.path, &args.request, &args.check)?),
            };
            (ProfileTarget::Running { spec, url }, scenario, own)
        }
        None => {
            let app = args.app.clone().ok_or_else(|| {
                anyhow::anyhow!("name an app (runner list), ./path/app.toml, or a running target: --container NAME --url URL")
            })?;
            if let Some(path) = &args.url {
                if !path.starts_with('/') {
                    bail!("--url takes a path of the app, like /api/items, not `{path}` (a full URL goes with --container, --pid or --cgroup)");
                }
            }
            let own = if args.url.is_some() || args.check.given() {
                if args.scenario.is_some() {
                    bail!("give a scenario or --url/--mix, not both");
                }
                let path = args.url.as_deref().unwrap_or("/");
                Some(own_requests(path, &args.request, &args.check)?)
            } else {
                None
            };
            (ProfileTarget::App(app), args.scenario.clone(), own)
        }
    };
    let app_cpus = args
        .app_cpus
        .as_deref()
        .map(|t| online_cpus("--app-cpus", t))
        .transpose()?;
    let client_cpus = args
        .client_cpus
        .as_deref()
        .map(|t| online_cpus("--client-cpus", t))
        .transpose()?;
    Ok(commands::profile::ProfileRun {
        target,
        scenario,
        own,
        ws_message: args.check.ws_message.clone(),
        threads: shape.threads,
        schedule: shape.schedule,
        max_requests: shape.max_requests,
        timeout: args.shape.timeout,
        think: args.shape.think,
        max_error_rate: args.shape.error_rate()?,
        warmup: args.warmup,
        workers: workers(args.workers)?,
        python: args.python,
        app_cpus,
        client_cpus,
        memory: Some(parse_size(args.memory.as_deref().unwrap_or("2GiB"))?),
        probe: ProbeConfig {
            freq_hz: args.freq,
            probes: args.probes.into_iter().collect(),
            ..ProbeConfig::default()
        },
        no_probes: args.no_probes,
        keep_running: args.keep_running,
        out: args.out,
    })
}

/// Parses a size like `5MiB`, `10kB`, `1024`.
fn parse_size(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("`{text}` is not a size like 5MiB, 10kB or 1024"))?;
    let factor = match unit.trim().to_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => bail!("`{text}` is not a size like 5MiB, 10kB or 1024"),
    };
    Ok((number * factor) as u64)
}

/// Parses a CPU list like `0,2-3`.
fn parse_cpus(text: &str) -> anyhow::Result<Vec<usize>> {
    crate::host::parse_cpu_list(text).map_err(|part| {
        anyhow::anyhow!("--cpus `{text}`: `{part}` is not a CPU number or range like 2-3")
    })
}

/// A CPU list the machine can honour: every CPU online.
fn online_cpus(flag: &str, text: &str) -> anyhow::Result<Vec<usize>> {
    let cpus = parse_cpus(text).map_err(|e| anyhow::anyhow!("{flag}: {e:#}"))?;
    let online = crate::host::online_cpus();
    if let Some(missing) = cpus.iter().find(|c| !online.contains(c)) {
        bail!(
            "{flag} {text}: CPU {missing} is not online on this machine (online: {})",
            crate::host::cpu_list_text(&online)
        );
    }
    Ok(cpus)
}

/// A worker count of at least one.
fn workers(value: Option<u32>) -> anyhow::Result<Option<u32>> {
    if value == Some(0) {
        bail!("--workers must be at least 1, not 0");
    }
    Ok(value)
}

fn positive(name: &str, value: i64) -> anyhow::Result<usize> {
    if value < 1 {
        bail!("{name} must be at least 1, not {value}");
    }
    Ok(value as usize)
}

fn load_run(args: LoadArgs) -> anyhow::Result<LoadRun> {
    use crate::load::{parse_url, LoadConfig};
    let shape = args.shape.resolve(Duration::from_secs(10))?;
    let target = parse_url(&args.url)?;
    let cpus = args
        .cpus
        .as_deref()
        .map(|t| online_cpus("--cpus", t))
        .transpose()?
        .unwrap_or_default();
    let (_, requests) = own_requests(&target.path, &args.request, &args.check)?;
    let http2 = match (args.http2, args.streams) {
        (false, Some(_)) => bail!("streams per connection (-p) go with --http2"),
        (false, None) => None,
        (true, streams) => Some(positive(
            "streams per connection (-p)",
            streams.unwrap_or(1),
        )?),
    };
    let config = LoadConfig {
        target,
        requests,
        threads: shape.threads,
        cpus,
        schedule: shape.schedule,
        max_requests: shape.max_requests,
        timeout: args.shape.timeout,
        think: args.shape.think,
        busy_poll: args.busy_poll,
        ws_message: args.check.ws_message,
        http: crate::load::HttpOptions {
            http2,
            http1: args.http1_client,
            insecure: args.insecure,
        },
    };

    config.validate()?;
    Ok(LoadRun {
        config,
        json: args.json,
        hgrm: args.hgrm,
        csv: args.csv,
        max_error_rate: args.shape.error_rate()?,
    })
}

fn probe_run(args: ProbeArgs) -> anyhow::Result<ProbeRun> {
    if !(1..=MAX_FREQ).contains(&args.freq) {
        bail!(
            "--freq must be between 1 and {MAX_FREQ} Hz, not {}",
            args.freq
        );
    }
    let has_processes = !args.pids.is_empty() || !args.cgroups.is_empty();
    let target = match (has_processes, args.container, args.command.is_empty()) {
        (false, None, true) => {
            bail!(
                "name a target: --pid PID, --cgroup PATH, --container NAME, or a command after --"
            )
        }
        (true, _, false) | (_, Some(_), false) => {
            bail!("give either --pid/--cgroup/--container or a command after --, not both")
        }
        (false, None, false) => TargetSpec::Command(args.command),
        (false, Some(name), true) => TargetSpec::Container(name),
        (true, _, true) => {
            for pid in &args.pids {
                if *pid == 0 || !PathBuf::from(format!("/proc/{pid}")).exists() {
                    bail!("no process with PID {pid}");
                }
            }
            let cgroups = args
                .cgroups
                .iter()
                .map(|p| cgroup::resolve(p))
                .collect::<Result<Vec<_>, _>>()
                .context("--cgroup")?;
            TargetSpec::Processes {
                pids: args.pids,
                cgroups,
            }
        }
    };
    let shape = args.shape.resolve(Duration::from_secs(10))?;
    let load = match &args.url {
        Some(url) => {
            let parsed = crate::load::parse_url(url)?;
            let (_, requests) = own_requests(&parsed.path, &args.request, &args.check)?;
            let mut config = crate::load::LoadConfig::new(
                parsed,
                requests,
                crate::load::LoadShape {
                    threads: shape.threads,
                    cpus: Vec::new(),
                    schedule: shape.schedule.clone(),
                    max_requests: shape.max_requests,
                    timeout: args.shape.timeout,
                    think: args.shape.think,
                },
            );
            config.ws_message = args.check.ws_message.clone();
            config.validate()?;
            Some(config)
        }
        None => {
            let s = &args.shape;
            if !s.connections.is_empty()
                || s.requests.is_some()
                || s.rate.is_some()
                || !s.rates.is_empty()
                || s.schedule.is_some()
                || s.think.is_some()
                || args.check.given()
            {
                bail!("the load options (-c, -n, --rate, --schedule, --mix, --expect-*...) shape the load of --url: give --url too");
            }
            None
        }
    };
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from("results").join(format!("probe-{}", crate::run_dir::timestamp()))
    });
    Ok(ProbeRun {
        target,
        duration: shape.schedule.duration().unwrap_or(Duration::from_secs(10)),
        load,
        config: ProbeConfig {
            freq_hz: args.freq,
            offcpu_min: args.offcpu_min,
            follow_fork: !args.no_follow,
            probes: args.probes.into_iter().collect(),
            ..ProbeConfig::default()
        },
        out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<ProbeRun> {
        let cli = Cli::try_parse_from(std::iter::once("runner").chain(args.iter().copied()))?;
        match cli.command {
            Command::Probe(a) => probe_run(*a),
            _ => unreachable!(),
        }
    }

    fn diagnose(args: &[&str]) -> anyhow::Result<commands::diagnose::DiagnoseRun> {
        let cli = Cli::try_parse_from(
            ["runner", "diagnose"]
                .into_iter()
                .chain(args.iter().copied()),
        )?;
        match cli.command {
            Command::Diagnose(a) => diagnose_run(*a),
            _ => unreachable!(),
        }
    }

    #[test]
    fn diagnose_takes_one_target() {
        use commands::diagnose::DiagnoseTarget;
        let run = diagnose(&["fastapi", "--scenario", "ping", "-d", "2s"]).unwrap();
        assert!(matches!(run.target, DiagnoseTarget::App { .. }));
        assert!(run.probe.probes.contains(&ProbeKind::Evloop));
        assert_eq!(run.probe.stall_threshold, Duration::from_millis(10));
        let run = diagnose(&[
            "--pid",
            "1",
            "--url",
            "http://127.0.0.1:1/x",
            "--threshold",
            "5ms",
        ])
        .unwrap();
        assert!(matches!(run.target, DiagnoseTarget::Running { .. }));
        assert_eq!(run.probe.stall_threshold, Duration::from_millis(5));
        let run = diagnose(&["--url", "http://127.0.0.1:1/", "--", "python3", "app.py"]).unwrap();
        assert!(matches!(run.target, DiagnoseTarget::Command { .. }));
        for (args, says) in [
            (vec![], "name what to diagnose"),
            (vec!["--pid", "1"], "--url"),
            (
                vec!["fastapi", "--url", "http://127.0.0.1:1/"],
                "--url goes with",
            ),
            (vec!["fastapi", "--pid", "1"], "one thing"),
            (vec!["--pid", "1", "--url", "ftp://x/"], "ftp"),
            (vec!["fastapi", "-c", "0"], "--connections"),
        ] {
            let err = format!("{:#}", diagnose(&args).unwrap_err());
            assert!(err.contains(says), "{args:?}: {err}");
        }
    }

    fn load(args: &[&str]) -> anyhow::Result<LoadRun> {
        let cli = Cli::try_parse_from(["runner", "load"].into_iter().chain(args.iter().copied()))?;
        match cli.command {
            Command::Load(a) => load_run(*a),
            _ => unreachable!(),
        }
    }

    #[test]
    fn load_busy_polls_by_default_with_the_engine_s_window() {
        let run = load(&["http://127.0.0.1:1/"]).unwrap();
        assert_eq!(run.config.busy_poll, crate::load::DEFAULT_BUSY_POLL);
        let run = load(&["http://127.0.0.1:1/", "--busy-poll", "0"]).unwrap();
        assert_eq!(run.config.busy_poll, Duration::ZERO);
    }

    #[test]
    fn load_bad_input_is_one_clear_line() {
        let err = |args: &[&str]| format!("{:#}", load(args).unwrap_err());
        assert_eq!(
            err(&["http://127.0.0.1:1/", "-c", "0"]),
            "connections (-c) must be at least 1, not 0"
        );
        assert_eq!(
            err(&["http://127.0.0.1:1/", "-c", "-5"]),
            "connections (-c) must be at least 1, not -5"
        );
        assert_eq!(
            err(&["http://127.0.0.1:1/", "-t", "0"]),
            "threads (-t) must be at least 1, not 0"
        );
        assert_eq!(
            err(&["http://127.0.0.1:1/", "--rate", "-3"]),
            "the rate must be above zero, not -3"
        );
        assert!(err(&["ftp://x/"]).starts_with("ftp:// is not supported"));
        assert!(err(&["::nonsense"]).contains("is not a URL"));
        assert!(err(&["http://127.0.0.1:1/", "--schedule", "sweep:1-x:1:1s"]).contains("(at `x`)"));
        assert!(
            err(&["http://127.0.0.1:1/", "--body-file", "/no/such/file"])
                .starts_with("cannot read the body file /no/such/file")
        );
        assert!(err(&["http://127.0.0.1:1/", "-t", "4", "-c", "2"])
            .contains("4 threads need at least as many connections"));
        assert_eq!(
            err(&["http://127.0.0.1:1/", "--http2", "-p", "0"]),
            "streams per connection (-p) must be at least 1, not 0"
        );
        assert_eq!(
            err(&["http://127.0.0.1:1/", "-p", "4"]),
            "streams per connection (-p) go with --http2"
        );
        assert_eq!(
            err(&["ws://127.0.0.1:1/", "--http2"]),
            "--http2 loads HTTP URLs, not WebSocket ones"
        );
    }

    #[test]
    fn load_parses_sizes_cpus_and_modes() {
        assert_eq!(parse_size("5MiB").unwrap(), 5 * 1024 * 1024);
        assert_eq!(parse_size("10kB").unwrap(), 10_000);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_cpus("0,2-3").unwrap(), vec![0, 2, 3]);
        assert!(parse_cpus("3-1").is_err());
        let run = load(&["http://127.0.0.1:1/x", "--rates", "100,200", "-d", "2s"]).unwrap();
        assert_eq!(run.config.schedule.steps.len(), 2);
        let run = load(&["http://127.0.0.1:1/x", "-n", "100"]).unwrap();
        assert_eq!(run.config.max_requests, Some(100));
        assert_eq!(run.config.schedule.duration(), None);
    }

    #[test]
    fn a_command_is_a_target() {
        let run = parse(&["probe", "-d", "2s", "--freq", "999", "--", "sleep", "1"]).unwrap();
        assert!(matches!(run.target, TargetSpec::Command(ref c) if c == &["sleep", "1"]));
        assert_eq!(run.duration, Duration::from_secs(2));
        assert_eq!(run.config.freq_hz, 999);
        assert_eq!(run.config.probes.len(), 4);
        let run = parse(&["probe", "--probes", "syscalls,oncpu", "--", "true"]).unwrap();
        assert_eq!(
            run.config.probes.into_iter().collect::<Vec<_>>(),
            vec![ProbeKind::Oncpu, ProbeKind::Syscalls]
        );
        assert!(parse(&["probe", "--probes", "gpu", "--", "true"]).is_err());
    }

    #[test]
    fn bad_input_is_one_clear_line() {
        let err = |args: &[&str]| format!("{:#}", parse(args).unwrap_err());
        assert_eq!(
            err(&["probe"]),
            "name a target: --pid PID, --cgroup PATH, --container NAME, or a command after --"
        );
        assert_eq!(
            err(&["probe", "--pid", "999999999"]),
            "no process with PID 999999999"
        );
        assert_eq!(
            err(&["probe", "--freq", "20000", "--", "true"]),
            "--freq must be between 1 and 10000 Hz, not 20000"
        );
        assert_eq!(
            err(&["probe", "--cgroup", "/tmp"]),
            "--cgroup: /tmp is not a cgroup directory"
        );
        assert!(err(&["probe", "-d", "soon", "--", "true"]).contains("not a duration"));
        assert_eq!(
            err(&["probe", "--pid", "1", "--", "true"]),
            "give either --pid/--cgroup/--container or a command after --, not both"
        );
        assert!(err(&["probe", "--pid", "1", "--rate", "10"]).contains("give --url too"));
    }
}
