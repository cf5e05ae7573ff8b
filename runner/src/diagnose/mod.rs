//! Event-loop diagnosis from what the evloop probe recorded: which threads are event loops,
//! how much of their time was blocked or CPU-bound, their stalls and blocking calls grouped by
//! culprit (cause and Python stack), and a verdict with advice per window. Presenting it is
//! `crate::report::diagnosis`'s job.

pub mod advice;
pub mod analyse;
pub mod model;

pub use analyse::{analyse, culprit_frame, stall_folded};
pub use model::{
    Cause, Culprit, CulpritKind, Diagnosis, Entry, LoadFigures, LoopThread, Verdict, SCHEMA,
};
