//! runner: drives HTTP load at web-framework apps while eBPF probes and procfs sample them,
//! and writes flamegraphs, syscall and run-queue figures beside the results.

pub mod apps;
pub mod cgroup;
pub mod cli;
pub mod commands;
pub mod cpython;
pub mod diagnose;
pub mod doctor;
pub mod flamegraph;
pub mod folded;
pub mod hist;
pub mod launch;
pub mod load;
pub mod privilege;
pub mod probe;
pub mod recording;
pub mod report;
pub mod sampler;
pub mod symbolize;
