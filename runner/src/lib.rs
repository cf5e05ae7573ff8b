//! runner: drives HTTP load at web-framework apps while eBPF probes and procfs sample them,
//! and writes flamegraphs, syscall and run-queue figures beside the results.
//!
//! The rooms (see ARCHITECTURE.md): `cli` parses, `commands` compose stages; `apps` and
//! `launch` bring targets up; `load` drives load; `probe`, `record`, `sampler`, `stacks` and
//! `cpython` record; `diagnose` analyses; `results` holds finished data; `run_dir` writes it;
//! `report` presents it.

pub mod apps;
pub mod cgroup;
pub mod cli;
pub mod commands;
pub mod cpython;
pub mod diagnose;
pub mod doctor;
pub mod hist;
pub mod host;
pub mod interference;
pub mod journal;
pub mod launch;
pub mod load;
pub mod num;
pub mod privilege;
pub mod probe;
pub mod record;
pub mod report;
pub mod results;
pub mod run_dir;
pub mod sampler;
pub mod signals;
pub mod stacks;
pub mod target;
pub mod toml_error;
