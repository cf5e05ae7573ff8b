//! What to do about a culprit: a table of rules over what held the loop (the cause), the
//! syscall, and the frames of the culprit's stack (Python call sites and kernel frames),
//! tried in order; the first that matches gives the advice.

use super::{
    analyse::touches_files,
    model::{Cause, Culprit},
};

/// One rule of the advice table.
struct Rule {
    /// The causes it applies to.
    causes: &'static [Cause],
    /// The syscalls it applies to; empty: any (or none).
    syscalls: &'static [&'static str],
    /// Some frame must contain one of these; empty: no condition.
    frames: &'static [&'static str],
    /// With `Some(b)`: whether the kernel frames show file-system work.
    files: Option<bool>,
    advice: &'static str,
}

const ANY: &[&str] = &[];
const SOCKET_CALLS: &[&str] = &[
    "recvfrom", "recvmsg", "sendto", "sendmsg", "connect", "accept", "accept4", "read", "write",
    "readv", "writev",
];
const POLLS: &[&str] = &[
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "epoll_wait",
    "epoll_pwait",
];

/// The table, first match wins.
const RULES: &[Rule] = &[
    Rule {
        causes: &[Cause::Lock],
        syscalls: ANY,
        frames: ANY,
        files: None,
        advice: "the loop waited on a lock held by another thread (threading.Lock and friends): use asyncio.Lock for state shared between coroutines, and keep a lock shared with threads off the loop (await asyncio.to_thread(...) for the work that takes it)",
    },
    Rule {
        causes: &[Cause::Gil],
        syscalls: ANY,
        frames: ANY,
        files: None,
        advice: "the loop waited for the GIL while another thread ran Python: move CPU-heavy thread work to a process pool (ProcessPoolExecutor), or keep threads to I/O that releases the GIL",
    },
    Rule {
        causes: &[Cause::Blocking],
        syscalls: ANY,
        frames: &["subprocess.py"],
        files: None,
        advice: "subprocess.run/check_output on the loop waits for the child: use `await asyncio.create_subprocess_exec(...)` and `await proc.communicate()`",
    },
    Rule {
        causes: &[Cause::Blocking],
        syscalls: &["wait4", "waitid"],
        frames: ANY,
        files: None,
        advice: "the loop waits for a child process: use `await asyncio.create_subprocess_exec(...)` and `await proc.wait()`",
    },
    Rule {
        causes: &[Cause::Blocking],
        syscalls: &["clock_nanosleep", "nanosleep"],
        frames: ANY,
        files: None,
        advice: "a blocking sleep on the loop (time.sleep): use `await asyncio.sleep(...)`",
    },
    Rule {
        causes: &[Cause::Blocking],
        syscalls: ANY,
        frames: &["sqlite"],
        files: None,
        advice: "synchronous sqlite3 on the loop: use an async driver (aiosqlite) or run the query in a thread (await asyncio.to_thread(...), or a plain def handler)",
    },
    Rule {
        causes: &[Cause::Blocking],
        syscalls: ANY,
        frames: &["requests/", "urllib3/", "urllib/request.py", "http/client.py", "httpx/_client.py"],
        files: None,
        advice: "a synchronous HTTP client on the loop (requests, urllib): use an async client (httpx.AsyncClient, aiohttp) or run the call in a thread (await asyncio.to_thread(...))",
    },
    Rule {
        causes: &[Cause::Blocking],
        syscalls: POLLS,
        frames: &["selectors.py", "select", "poll"],
        files: None,
        advice: "select/poll with a timeout on the loop blocks it until the fd is ready: let the loop watch the fd (loop.add_reader, asyncio streams) or run the wait in a thread",
    },
    Rule {
        causes: &[Cause::Blocking],
        syscalls: &["fsync", "fdatasync", "sync", "syncfs", "sync_file_range"],
        frames: ANY,
        files: None,
        advice: "a file sync (fsync) on the loop waits for the disk: do the write and sync in a thread (await asyncio.to_thread(...)) or with aiofiles",
    },
    Rule {
        causes: &[Cause::Blocking],
        syscalls: &["flock", "fcntl"],
        frames: ANY,
        files: None,
        advice: "a file lock on the loop: take it in a thread (await asyncio.to_thread(...)), or coordinate with an asyncio.Lock",
    },
    Rule {
        causes: &[Cause::Blocking],
        syscalls: &["pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2"],
        frames: ANY,
        files: None,
        advice: "blocking file I/O on the loop: read and write files with aiofiles or in a thread (await asyncio.to_thread(...))",
    },
    Rule {
        causes: &[Cause::Blocking],
        syscalls: ANY,
        frames: ANY,
        files: Some(true),
        advice: "blocking file I/O on the loop (a large read or write of a file): use aiofiles or await asyncio.to_thread(...) for it",
    },
    Rule {
        causes: &[Cause::Blocking],
        syscalls: POLLS,
        frames: ANY,
        files: None,
        advice: "a wait with a timeout on the loop (poll/select on a blocking fd): let the loop watch the fd (loop.add_reader, asyncio streams) or run the wait in a thread",
    },
    Rule {
        causes: &[Cause::Blocking],
        syscalls: SOCKET_CALLS,
        frames: ANY,
        files: None,
        advice: "blocking network I/O on the loop: use an async client or driver (httpx.AsyncClient, asyncpg) or run the call in a thread (await asyncio.to_thread(...))",
    },
    Rule {
        causes: &[Cause::Blocking],
        syscalls: ANY,
        frames: ANY,
        files: None,
        advice: "a blocking call on the loop: run it in a thread (await asyncio.to_thread(...)) or use an async equivalent",
    },
    Rule {
        causes: &[Cause::Cpu],
        syscalls: ANY,
        frames: &["json/encoder.py", "json/decoder.py", "json/__init__.py"],
        files: None,
        advice: "large JSON encoding or decoding on the loop: move it to a process pool (loop.run_in_executor with a ProcessPoolExecutor), or use a faster encoder (orjson) and smaller payloads",
    },
    Rule {
        causes: &[Cause::Cpu],
        syscalls: ANY,
        frames: ANY,
        files: None,
        advice: "CPU-bound work on the loop: move it to a process pool (loop.run_in_executor with a ProcessPoolExecutor)",
    },
    Rule {
        causes: &[Cause::Kernel],
        // No syscall: asleep outside any call.
        syscalls: &[""],
        frames: ANY,
        files: None,
        advice: "asleep in the kernel outside any call (page faults or memory reclaim): the machine's memory or disk, not a call to make async; see the run's interference figures and the app's memory limit",
    },
    Rule {
        causes: &[Cause::Kernel],
        syscalls: ANY,
        frames: ANY,
        files: None,
        advice: "time spent running inside socket calls: kernel work or time the hypervisor took, not the app's code; see the run's interference figures",
    },
];

impl Rule {
    fn matches(&self, c: &Culprit) -> bool {
        let syscall = c.syscall.as_deref().unwrap_or("");
        self.causes.contains(&c.cause)
            && (self.syscalls.is_empty() || self.syscalls.contains(&syscall))
            && (self.frames.is_empty()
                || c.stack
                    .iter()
                    .any(|f| self.frames.iter().any(|needle| f.contains(needle))))
            && self
                .files
                .is_none_or(|want| touches_files(&c.stack) == want)
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

    fn culprit(cause: Cause, sys: Option<&str>, stack: &[&str]) -> Culprit {
        Culprit {
            cause,
            syscall: sys.map(String::from),
            stack: stack.iter().map(|s| s.to_string()).collect(),
            ..Culprit::default()
        }
    }

    /// Every rule, with a culprit it must (and the rules before it must not) match.
    #[test]
    fn each_rule_is_reached_by_its_own_case() {
        use Cause::*;
        let cases: [(Culprit, &str); 19] = [
            (
                culprit(Lock, Some("futex"), &["handler (app.py:9)"]),
                "threading.Lock",
            ),
            (culprit(Gil, Some("futex"), &["handler (app.py:9)"]), "GIL"),
            (
                culprit(Blocking, Some("read"), &["run (subprocess.py:550)", "read"]),
                "create_subprocess_exec",
            ),
            (
                culprit(Blocking, Some("wait4"), &["handler (app.py:3)"]),
                "proc.wait",
            ),
            (
                culprit(Blocking, Some("clock_nanosleep"), &[]),
                "asyncio.sleep",
            ),
            (
                culprit(Blocking, Some("pread64"), &["_sqlite3.so"]),
                "aiosqlite",
            ),
            (
                culprit(
                    Blocking,
                    Some("recvfrom"),
                    &["Session.get (requests/sessions.py:602)"],
                ),
                "httpx.AsyncClient",
            ),
            (
                culprit(Blocking, Some("select"), &["handler (app.py:3)", "select"]),
                "loop.add_reader",
            ),
            (culprit(Blocking, Some("fdatasync"), &[]), "file sync"),
            (culprit(Blocking, Some("flock"), &[]), "file lock"),
            (
                culprit(Blocking, Some("pread64"), &["handler (app.py:4)"]),
                "aiofiles",
            ),
            (
                culprit(
                    Blocking,
                    Some("read"),
                    &["h (app.py:4)", "read", "filemap_read_[k]"],
                ),
                "large read or write of a file",
            ),
            (
                culprit(Blocking, Some("ppoll"), &["h (app.py:4)"]),
                "poll/select on a blocking fd",
            ),
            (
                culprit(Blocking, Some("connect"), &["h (app.py:4)"]),
                "network I/O",
            ),
            (
                culprit(Blocking, Some("mmap"), &[]),
                "a blocking call on the loop",
            ),
            (
                culprit(Cpu, None, &["h (app.py:4)", "dumps (json/__init__.py:231)"]),
                "JSON",
            ),
            (culprit(Cpu, None, &["burn (app.py:4)"]), "process pool"),
            (culprit(Kernel, Some("sendto"), &[]), "hypervisor"),
            (culprit(Kernel, None, &[]), "page faults or memory reclaim"),
        ];
        for (c, says) in &cases {
            let a = advice(c);
            assert!(a.contains(says), "{c:?}\n-> {a}");
        }
        // Every rule is some case's first match.
        let first: std::collections::BTreeSet<usize> = cases
            .iter()
            .map(|(c, _)| RULES.iter().position(|r| r.matches(c)).unwrap())
            .collect();
        assert_eq!(first.len(), RULES.len(), "a rule no case reaches");
    }
}
