//! The run journal: what a runner process puts on the machine (processes it starts, cgroups,
//! scratch folders, results folders being written), written down before it is made. When a
//! runner is killed (SIGKILL, a crash) its journal stays behind, and the next runner start
//! reaps it: it stops the processes, removes the cgroups and scratch folders, and marks the
//! results folder as abandoned. Journals of runs still alive tell a new run which CPUs they
//! hold.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::Duration,
};

use serde::{Deserialize, Serialize};

/// Something a run made that must not outlive it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Item {
    /// A process runner started (with its start time, so a reused pid is not killed), and
    /// its children.
    Process { pid: u32, start: u64 },
    /// A cgroup runner created: its processes are killed, then it is removed.
    Cgroup { path: PathBuf },
    /// A scratch folder, removed.
    Scratch { path: PathBuf },
    /// A results folder being written: kept, and renamed to show it was abandoned.
    Partial { path: PathBuf },
}

/// A journal file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Entry {
    pid: u32,
    /// The process's start time (clock ticks since boot), to tell a reused pid.
    start: u64,
    command: String,
    /// The CPUs the run pinned its app and its client to.
    app_cpus: Vec<usize>,
    client_cpus: Vec<usize>,
    items: Vec<Item>,
}

static OWN: Mutex<Option<Entry>> = Mutex::new(None);

/// Where journals live: /run/runner for root, else a folder of the user's.
pub fn dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/runner/journal");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("runner/journal"),
        None => std::env::temp_dir().join(format!("runner-journal-{}", nix::unistd::getuid())),
    }
}

fn own_path() -> PathBuf {
    dir().join(format!("{}.json", std::process::id()))
}

/// The start time of process `pid`, when it runs.
pub fn start_time(pid: u32) -> Option<u64> {
    procfs::process::Process::new(pid as i32)
        .ok()?
        .stat()
        .ok()
        .map(|s| s.starttime)
}

fn save(entry: &Entry) {
    let path = own_path();
    if entry.items.is_empty() && entry.app_cpus.is_empty() {
        let _ = std::fs::remove_file(&path);
        return;
    }
    let _ = std::fs::create_dir_all(dir());
    let tmp = path.with_extension("tmp");
    if let Ok(bytes) = serde_json::to_vec(entry) {
        if std::fs::write(&tmp, bytes).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
}

fn with_own(f: impl FnOnce(&mut Entry)) {
    let mut own = OWN.lock().unwrap_or_else(|e| e.into_inner());
    let entry = own.get_or_insert_with(|| Entry {
        pid: std::process::id(),
        start: start_time(std::process::id()).unwrap_or(0),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        ..Entry::default()
    });
    f(entry);
    save(entry);
}

/// The item of a process runner just started.
pub fn process_item(pid: u32) -> Item {
    Item::Process {
        pid,
        start: start_time(pid).unwrap_or(0),
    }
}

/// Writes `item` down, before it is made.
pub fn add(item: Item) {
    with_own(|e| {
        if !e.items.contains(&item) {
            e.items.push(item);
        }
    });
}

/// Crosses `item` out, once it is gone (or handed over, like a finished results folder).
pub fn remove(item: &Item) {
    with_own(|e| e.items.retain(|i| i != item));
}

/// A CPU this busy with other work before a run is worth a warning.
const BUSY_PCT: f64 = 30.0;

/// Claims the CPUs this run pins its app and client to (runs that start meanwhile see them),
/// and says what would distort the measurement: the app and the client sharing CPUs, another
/// runner on the same CPUs, other work keeping them busy.
pub fn claim_cpus(app: &[usize], client: &[usize]) -> Vec<String> {
    use crate::host::{busy_cpus, cpu_list_text};
    // Claimed first, so that two runs starting together see each other.
    with_own(|e| {
        e.app_cpus = app.to_vec();
        e.client_cpus = client.to_vec();
    });
    let mut warnings = Vec::new();
    let shared: Vec<usize> = app.iter().copied().filter(|c| client.contains(c)).collect();
    if !shared.is_empty() {
        warnings.push(format!(
            "the app and the load client share CPU(s) {}: the client's work lands in the app's figures (give --app-cpus and --client-cpus that do not overlap)",
            cpu_list_text(&shared)
        ));
    }
    let ours: Vec<usize> = app.iter().chain(client).copied().collect();
    for (pid, their_app, their_client) in live_runs() {
        let overlap: Vec<usize> = their_app
            .iter()
            .chain(&their_client)
            .copied()
            .filter(|c| ours.contains(c))
            .collect();
        if !overlap.is_empty() {
            warnings.push(format!(
                "another runner (pid {pid}) uses CPU(s) {} as well: both runs' figures suffer; run them one after the other",
                cpu_list_text(&overlap)
            ));
        }
    }
    for (cpu, pct) in busy_cpus(&ours, Duration::from_millis(300)) {
        if pct >= BUSY_PCT {
            warnings.push(format!(
                "CPU {cpu} was {pct:.0}% busy with other work just before the run: its figures will suffer (see the run's interference figures)"
            ));
        }
    }
    warnings
}

/// At the end of a command: the CPUs are let go; anything still listed (a bug, or a panic on
/// the way) stays for the next start to clean up.
pub fn close() {
    if OWN.lock().map(|o| o.is_none()).unwrap_or(false) {
        return;
    }
    with_own(|e| {
        e.app_cpus.clear();
        e.client_cpus.clear();
    });
}

/// Journals in the journal folder, with their paths.
fn journals() -> Vec<(PathBuf, Entry)> {
    let Ok(files) = std::fs::read_dir(dir()) else {
        return Vec::new();
    };
    files
        .flatten()
        .map(|f| f.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter_map(|p| {
            let entry = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
            Some((p, entry))
        })
        .collect()
}

fn alive(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// Other runner processes alive now, with the CPUs their app and client hold.
pub fn live_runs() -> Vec<(u32, Vec<usize>, Vec<usize>)> {
    journals()
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.pid != std::process::id() && alive(e.pid, e.start))
        .map(|e| (e.pid, e.app_cpus, e.client_cpus))
        .collect()
}

/// What the next start found of a dead run, and did about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    pub pid: u32,
    pub command: String,
    /// One line per thing undone.
    pub done: Vec<String>,
}

/// Undoes what runs that are no longer alive left behind; returns what was done.
pub fn reap() -> Vec<Reaped> {
    let mut reaped = Vec::new();
    for (path, entry) in journals() {
        if entry.pid == std::process::id() || alive(entry.pid, entry.start) {
            continue;
        }
        let mut done = Vec::new();
        // Processes first (they hold the cgroups and folders), then cgroups, then folders.
        let mut items = entry.items.clone();
        items.sort_by_key(|i| match i {
            Item::Process { .. } => 0,
            Item::Cgroup { .. } => 1,
            Item::Scratch { .. } => 2,
            Item::Partial { .. } => 3,
        });
        for item in &items {
            if let Some(line) = undo(item) {
                done.push(line);
            }
        }
        let _ = std::fs::remove_file(&path);
        reaped.push(Reaped {
            pid: entry.pid,
            command: entry.command,
            done,
        });
    }
    reaped
}

/// Undoes one item; says what was done, when something was.
fn undo(item: &Item) -> Option<String> {
    match item {
        Item::Process { pid, start } => {
            if !alive(*pid, *start) {
                return None;
            }
            let tree = with_descendants(*pid);
            for p in &tree {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*p as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            // Gone (or a zombie) before the folders they write in are removed.
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while tree.iter().any(|p| running(*p)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            Some(format!(
                "stopped process {pid} ({} with its children)",
                comm(*pid)
            ))
        }
        Item::Cgroup { path } => {
            if !path.exists() {
                return None;
            }
            kill_cgroup(path);
            Some(format!("removed cgroup {}", path.display()))
        }
        Item::Scratch { path } => {
            if !path.exists() {
                return None;
            }
            let stopped = remove_with_holders(path);
            Some(match stopped {
                0 => format!("removed {}", path.display()),
                n => format!(
                    "removed {} (stopped {n} process(es) still working in it)",
                    path.display()
                ),
            })
        }
        Item::Partial { path } => {
            if !path.exists() {
                return None;
            }
            let to = abandoned_name(path);
            let _ = std::fs::write(
                path.join("ABANDONED"),
                "runner was killed while writing this folder: what is here is partial.\n",
            );
            std::fs::rename(path, &to).ok()?;
            Some(format!("kept the partial results as {}", to.display()))
        }
    }
}

/// `ROOT/.ID.partial` -> `ROOT/ID.abandoned` (with a suffix when taken).
fn abandoned_name(partial: &Path) -> PathBuf {
    let name = partial
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = name
        .trim_start_matches('.')
        .trim_end_matches(".partial")
        .to_string();
    let parent = partial.parent().unwrap_or(Path::new("."));
    let mut to = parent.join(format!("{id}.abandoned"));
    let mut n = 2;
    while to.exists() {
        to = parent.join(format!("{id}.abandoned-{n}"));
        n += 1;
    }
    to
}

/// Whether `pid` exists and has not exited.
fn running(pid: u32) -> bool {
    procfs::process::Process::new(pid as i32)
        .and_then(|p| p.stat())
        .is_ok_and(|s| s.state != 'Z' && s.state != 'X')
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "gone".into())
}

/// `pid` and every process below it.
fn with_descendants(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let Ok(procs) = procfs::process::all_processes() else {
        return all;
    };
    let parents: Vec<(u32, u32)> = procs
        .flatten()
        .filter_map(|p| p.stat().ok())
        .map(|s| (s.pid as u32, s.ppid as u32))
        .collect();
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        all.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    all
}

/// Processes (other than this one) whose working folder, root or an open file lies in
/// `dir`: what a killed run's helpers left working there, even once orphaned (initdb's
/// bootstrap backend names its data folder in neither its arguments nor its parentage).
fn holders(dir: &Path) -> Vec<u32> {
    let Ok(procs) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let own = std::process::id() as i32;
    procs
        .flatten()
        .filter(|p| p.pid != own)
        .filter(|p| {
            let inside = |t: std::io::Result<PathBuf>| t.is_ok_and(|t| t.starts_with(dir));
            inside(p.cwd().map_err(std::io::Error::other))
                || inside(p.root().map_err(std::io::Error::other))
                || p.fd().is_ok_and(|fds| {
                    fds.flatten().any(|fd| match fd.target {
                        procfs::process::FDTarget::Path(t) => t.starts_with(dir),
                        _ => false,
                    })
                })
        })
        .map(|p| p.pid as u32)
        .collect()
}

/// Removes `dir`, first stopping whatever still works in it, until it is gone (a process
/// being killed may finish one last write). Returns how many processes were stopped.
fn remove_with_holders(dir: &Path) -> usize {
    let mut stopped = std::collections::BTreeSet::new();
    for _ in 0..100 {
        let held = holders(dir);
        for pid in &held {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            stopped.insert(*pid);
        }
        if held.is_empty() && (std::fs::remove_dir_all(dir).is_ok() || !dir.exists()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stopped.len()
}

/// Kills every process in a cgroup, then removes it.
pub fn kill_cgroup(path: &Path) {
    for _ in 0..50 {
        let procs = crate::cgroup::procs(path);
        if procs.is_empty() && std::fs::remove_dir(path).is_ok() {
            return;
        }
        if std::fs::write(path.join("cgroup.kill"), "1").is_err() {
            for pid in procs {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        std::thread::sleep(Duration::from_millis(20));
        if !path.exists() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_folders_keep_their_name() {
        let root = std::env::temp_dir().join(format!("journal-test-{}", std::process::id()));
        let partial = root.join(".20261201T010203Z-app-ping.partial");
        std::fs::create_dir_all(&partial).unwrap();
        assert_eq!(
            abandoned_name(&partial),
            root.join("20261201T010203Z-app-ping.abandoned")
        );
        let line = undo(&Item::Partial {
            path: partial.clone(),
        })
        .unwrap();
        assert!(line.contains("abandoned"), "{line}");
        assert!(root
            .join("20261201T010203Z-app-ping.abandoned/ABANDONED")
            .exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_scratch_folder_goes_with_what_still_works_in_it() {
        let dir = std::env::temp_dir().join(format!("journal-held-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        // Like initdb's orphaned backend: found by its working folder alone.
        let mut worker = std::process::Command::new("sh")
            .args(["-c", "while :; do touch f$$; sleep 0.01; done"])
            .current_dir(dir.join("data"))
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let line = undo(&Item::Scratch { path: dir.clone() }).unwrap();
        assert!(line.contains("process(es) still working in it"), "{line}");
        assert!(!dir.exists());
        let status = worker.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "the worker was killed");
    }

    #[test]
    fn a_dead_process_is_not_undone_twice() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = start_time(pid).unwrap();
        let item = Item::Process { pid, start };
        assert!(undo(&item).is_some());
        child.wait().unwrap();
        assert_eq!(
            undo(&item),
            None,
            "a pid that is gone (or reused) is left alone"
        );
    }
}
