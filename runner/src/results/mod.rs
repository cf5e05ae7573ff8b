//! Finished results as data: a run's summary.json and run.json, and a bench's summary.json.
//! Written by the commands, presented by `crate::report`, read back by `runner report` and
//! `runner compare`.

pub mod bench;
pub mod run;
pub mod summary;
