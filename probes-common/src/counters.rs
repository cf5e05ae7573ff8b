//! Event and loss counters, kept in one per-CPU array indexed by [`Counter`].

/// One slot of the counters array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    OncpuSamples = 0,
    OncpuKstackLost,
    OncpuUstackLost,
    OncpuMapFull,
    OffcpuSwitches,
    OffcpuKstackLost,
    OffcpuUstackLost,
    OffcpuMapFull,
    OffcpuBelowMin,
    RunqEvents,
    RunqHistFull,
    RunqThreadFull,
    SyscallEvents,
    SyscallMapFull,
    SyscallExitUnmatched,
    TargetTidsFull,
    TargetTgidsFull,
    ForksFollowed,
    StackCollision,
    StackFault,
    StackOther,
    StackMapFull,
    PyStacks,
    PyNoThreadState,
    PyReadFault,
    PyTruncated,
    PyStackMapFull,
    PyProcsFull,
    LoopIterations,
    LoopStalls,
    LoopStallsLost,
    LoopMapFull,
    LoopCallMapFull,
    LoopStackLost,
}

/// Number of counters.
pub const COUNTERS: u32 = Counter::LoopStackLost as u32 + 1;

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; COUNTERS as usize] = [
        Counter::OncpuSamples,
        Counter::OncpuKstackLost,
        Counter::OncpuUstackLost,
        Counter::OncpuMapFull,
        Counter::OffcpuSwitches,
        Counter::OffcpuKstackLost,
        Counter::OffcpuUstackLost,
        Counter::OffcpuMapFull,
        Counter::OffcpuBelowMin,
        Counter::RunqEvents,
        Counter::RunqHistFull,
        Counter::RunqThreadFull,
        Counter::SyscallEvents,
        Counter::SyscallMapFull,
        Counter::SyscallExitUnmatched,
        Counter::TargetTidsFull,
        Counter::TargetTgidsFull,
        Counter::ForksFollowed,
        Counter::StackCollision,
        Counter::StackFault,
        Counter::StackOther,
        Counter::StackMapFull,
        Counter::PyStacks,
        Counter::PyNoThreadState,
        Counter::PyReadFault,
        Counter::PyTruncated,
        Counter::PyStackMapFull,
        Counter::PyProcsFull,
        Counter::LoopIterations,
        Counter::LoopStalls,
        Counter::LoopStallsLost,
        Counter::LoopMapFull,
        Counter::LoopCallMapFull,
        Counter::LoopStackLost,
    ];

    /// Name used in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::OncpuSamples => "oncpu_samples",
            Counter::OncpuKstackLost => "oncpu_kernel_stack_lost",
            Counter::OncpuUstackLost => "oncpu_user_stack_lost",
            Counter::OncpuMapFull => "oncpu_map_full",
            Counter::OffcpuSwitches => "offcpu_switches",
            Counter::OffcpuKstackLost => "offcpu_kernel_stack_lost",
            Counter::OffcpuUstackLost => "offcpu_user_stack_lost",
            Counter::OffcpuMapFull => "offcpu_map_full",
            Counter::OffcpuBelowMin => "offcpu_below_min_duration",
            Counter::RunqEvents => "runqlat_events",
            Counter::RunqHistFull => "runqlat_hist_map_full",
            Counter::RunqThreadFull => "runqlat_thread_map_full",
            Counter::SyscallEvents => "syscall_events",
            Counter::SyscallMapFull => "syscall_map_full",
            Counter::SyscallExitUnmatched => "syscall_exit_unmatched",
            Counter::TargetTidsFull => "target_tids_map_full",
            Counter::TargetTgidsFull => "target_tgids_map_full",
            Counter::ForksFollowed => "forks_followed",
            Counter::StackCollision => "stack_id_collisions",
            Counter::StackFault => "stack_id_faults",
            Counter::StackOther => "stack_id_other_errors",
            Counter::StackMapFull => "stack_id_map_full",
            Counter::PyStacks => "python_stacks",
            Counter::PyNoThreadState => "python_no_thread_state",
            Counter::PyReadFault => "python_read_faults",
            Counter::PyTruncated => "python_stacks_truncated",
            Counter::PyStackMapFull => "python_stack_map_full",
            Counter::PyProcsFull => "python_procs_map_full",
            Counter::LoopIterations => "loop_iterations",
            Counter::LoopStalls => "loop_stalls",
            Counter::LoopStallsLost => "loop_stall_events_lost",
            Counter::LoopMapFull => "loop_map_full",
            Counter::LoopCallMapFull => "loop_call_map_full",
            Counter::LoopStackLost => "loop_call_stack_lost",
        }
    }

    /// True when the counter records data that was lost, rather than an event tally.
    pub const fn is_loss(self) -> bool {
        !matches!(
            self,
            Counter::OncpuSamples
                | Counter::OffcpuSwitches
                | Counter::OffcpuBelowMin
                | Counter::RunqEvents
                | Counter::SyscallEvents
                | Counter::SyscallExitUnmatched
                | Counter::ForksFollowed
                | Counter::StackCollision
                | Counter::StackFault
                | Counter::StackOther
                | Counter::StackMapFull
                | Counter::PyStacks
                | Counter::PyNoThreadState
                | Counter::LoopIterations
                | Counter::LoopStalls
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }
}
