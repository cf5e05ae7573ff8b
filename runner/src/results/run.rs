//! run.json (`runner.run/v1`): what a run was: the machine, the app and how it was started
//! (or the running target: container, image, cgroup, limits, restarts), the load's settings,
//! the probes, and runner's own cost.

use serde::Serialize;

use crate::{
    apps::session::SessionFacts,
    load::{request::RequestSpec, schedule::Schedule},
    probe::ProbeConfig,
    target::TargetFacts,
};

/// The schema tag of run.json.
pub const SCHEMA: &str = "runner.run/v1";

/// run.json.
#[derive(Serialize)]
pub struct RunInfo<'a> {
    pub schema: &'static str,
    pub run_id: &'a str,
    pub status: &'a str,
    pub runner_version: &'static str,
    pub git_commit: Option<String>,
    pub kernel_release: String,
    pub cpu_model: Option<String>,
    pub online_cpus: usize,
    /// The app runner started; absent for a running target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<&'a SessionFacts>,
    /// The running target; absent for an app runner started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'a TargetFacts>,
    pub framework_version: Option<String>,
    pub scenario: &'a str,
    pub client_cpus: &'a [usize],
    pub load: LoadSettings<'a>,
    pub probes: Option<&'a ProbeConfig>,
    pub client: ClientUsage,
}

/// The load's settings.
#[derive(Serialize)]
pub struct LoadSettings<'a> {
    pub threads: usize,
    pub schedule: &'a Schedule,
    pub max_requests: Option<u64>,
    pub timeout_s: f64,
    pub warmup_s: f64,
    pub requests: &'a [RequestSpec],
}

/// runner's own cost during the load.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClientUsage {
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
    pub max_rss_mb: f64,
}
