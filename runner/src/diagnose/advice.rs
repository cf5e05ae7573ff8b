//! What to do about a culprit: a table of rules, each matching the syscall and the frames of
//! the culprit's stack, tried in order.

use super::model::Culprit;

/// One rule of the advice table.
struct Rule {
    /// The syscalls it applies to; empty: any syscall. `None` in a culprit is CPU work.
    syscalls: &'static [&'static str],
    /// Applies to CPU culprits (no syscall) instead of syscall ones.
    cpu: bool,
    /// Some frame of the stack must contain one of these; empty: no condition.
    frames: &'static [&'static str],
    advice: &'static str,
}

const NETWORK: &[&str] = &[
    "poll", "ppoll", "select", "pselect6", "recvfrom", "recvmsg", "connect", "sendto", "read",
    "write",
];

/// The table, first match wins.
const RULES: &[Rule] = &[
    Rule {
        syscalls: &[],
        cpu: true,
        frames: &[],
        advice: "CPU-bound work on the loop: move it to a process pool (loop.run_in_executor with a ProcessPoolExecutor) or a worker thread",
    },
    Rule {
        syscalls: &["clock_nanosleep", "nanosleep"],
        cpu: false,
        frames: &[],
        advice: "a blocking sleep on the loop: use `await asyncio.sleep(...)`",
    },
    Rule {
        syscalls: &[],
        cpu: false,
        frames: &["sqlite"],
        advice: "synchronous sqlite3 on the loop: use an async driver (aiosqlite) or run it in a threadpool (run_in_executor / a plain def handler)",
    },
    Rule {
        syscalls: &["futex"],
        cpu: false,
        frames: &[],
        advice: "the loop waited on a lock or the GIL held by another thread: keep work that holds it off the loop's path",
    },
    Rule {
        syscalls: NETWORK,
        cpu: false,
        frames: &[],
        advice: "blocking network I/O on the loop: use an async client or driver (httpx.AsyncClient, asyncpg) or run it in a threadpool",
    },
    Rule {
        syscalls: &[],
        cpu: false,
        frames: &[],
        advice: "blocking file I/O on the loop (sqlite3, file reads and writes, fsync, file locks): use an async driver or library (aiosqlite, aiofiles) or run it in a threadpool (run_in_executor / a plain def handler)",
    },
];

impl Rule {
    fn matches(&self, c: &Culprit) -> bool {
        let cause = match (&c.syscall, self.cpu) {
            (None, true) => true,
            (Some(sys), false) => self.syscalls.is_empty() || self.syscalls.contains(&sys.as_str()),
            _ => false,
        };
        cause
            && (self.frames.is_empty()
                || c.stack
                    .iter()
                    .any(|f| self.frames.iter().any(|needle| f.contains(needle))))
    }
}

/// Advice for a culprit.
pub fn advice(c: &Culprit) -> String {
    RULES
        .iter()
        .find(|r| r.matches(c))
        .map(|r| r.advice.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_follows_the_cause() {
        let c = |sys: Option<&str>, stack: &[&str]| Culprit {
            syscall: sys.map(String::from),
            stack: stack.iter().map(|s| s.to_string()).collect(),
            ..Culprit::default()
        };
        assert!(advice(&c(Some("clock_nanosleep"), &[])).contains("asyncio.sleep"));
        assert!(advice(&c(Some("pread64"), &["_sqlite3.so"])).contains("aiosqlite"));
        assert!(advice(&c(None, &[])).contains("CPU-bound"));
        assert!(advice(&c(Some("poll"), &[])).contains("async client"));
        assert!(advice(&c(Some("futex"), &[])).contains("lock or the GIL"));
        assert!(advice(&c(Some("fsync"), &[])).contains("file I/O"));
    }
}
