//! Classic tracepoint field locations, read from tracefs by userspace and handed to the
//! programs as globals.

use crate::pod;

/// Where a field sits in a tracepoint's record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Field {
    pub offset: u32,
    pub size: u32,
}

pod!(Field);

/// `prev_state` bits that mean the task went to sleep; with none of them set it was preempted
/// while runnable (the kernel reports preemption as `TASK_REPORT_MAX`, 0x100, above this mask).
pub const TASK_REPORT_MASK: u64 = 0xff;

/// `prev_state` bits of a task that is exiting (EXIT_DEAD, EXIT_ZOMBIE): its last switch-out.
pub const EXIT_STATE_MASK: u64 = 0x30;

/// `CLONE_THREAD` in task_newtask's `clone_flags`: the new task is a thread, not a process.
pub const CLONE_THREAD: u64 = 0x0001_0000;
