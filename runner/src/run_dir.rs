//! A results folder in the making: written as `.ID.partial` beside its final name and renamed
//! into place when complete, so a folder named ID is always whole. Names cannot collide
//! between runs (the partial folder is created exclusively, then a suffix is tried), files are
//! written through the artifact registry, and under sudo everything belongs to the invoker.

use std::{
    collections::BTreeMap,
    io::ErrorKind,
    path::{Path, PathBuf},
};

use anyhow::Context;

use crate::journal;

/// A file a results folder can hold.
#[derive(Clone, Copy, Debug)]
pub struct Artifact {
    /// File name; `{n}` stands for a number (one file per window).
    pub name: &'static str,
    /// Listed on the terminal after a run.
    pub listed: bool,
    /// Embedded in report.html under this heading (flamegraphs).
    pub embed: Option<&'static str>,
}

const fn plain(name: &'static str) -> Artifact {
    Artifact {
        name,
        listed: false,
        embed: None,
    }
}

const fn shown(name: &'static str) -> Artifact {
    Artifact {
        name,
        listed: true,
        embed: None,
    }
}

const fn embedded(name: &'static str, heading: &'static str) -> Artifact {
    Artifact {
        name,
        listed: true,
        embed: Some(heading),
    }
}

/// Every file runner writes into a results folder, in the order the terminal lists them.
pub const ARTIFACTS: &[Artifact] = &[
    shown("report.html"),
    shown("report.md"),
    embedded("oncpu.svg", "On-CPU flamegraph"),
    embedded("offcpu.svg", "Off-CPU flamegraph"),
    embedded("stalls.svg", "Event-loop stalls flamegraph"),
    shown("summary.json"),
    plain("summary.csv"),
    shown("diagnosis.md"),
    shown("diagnosis.json"),
    plain("run.json"),
    plain("probe.json"),
    plain("load.json"),
    plain("latency.hgrm"),
    plain("timeseries.csv"),
    plain("resources.csv"),
    plain("oncpu.folded"),
    plain("offcpu.folded"),
    plain("stalls.folded"),
    plain("stalls-{n}.folded"),
    plain("stalls-{n}.svg"),
    plain("syscalls.json"),
    plain("runqlat.json"),
    plain("app.log"),
];

impl Artifact {
    /// True when `name` is this artifact's file name.
    pub fn matches(&self, name: &str) -> bool {
        match self.name.split_once("{n}") {
            None => self.name == name,
            Some((head, tail)) => name
                .strip_prefix(head)
                .and_then(|rest| rest.strip_suffix(tail))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
        }
    }

    /// The registry entry of a file name.
    pub fn of(name: &str) -> Option<&'static Artifact> {
        ARTIFACTS.iter().find(|a| a.matches(name))
    }
}

/// A results folder being written.
#[derive(Debug)]
pub struct RunDir {
    partial: PathBuf,
    final_dir: PathBuf,
    id: String,
    written: Vec<String>,
}

impl RunDir {
    /// Creates `ROOT/.ID.partial` for a folder to be named `ROOT/ID` (or `ID-2`, `ID-3`... when
    /// that name is taken, by a finished run or one still writing).
    pub fn create(root: &Path, id: &str) -> anyhow::Result<Self> {
        let root = create_owned(root)?;
        for n in 1.. {
            let id = if n == 1 {
                id.to_string()
            } else {
                format!("{id}-{n}")
            };
            let partial = root.join(format!(".{id}.partial"));
            journal::add(journal::Item::Partial {
                path: partial.clone(),
            });
            if let Err(e) = std::fs::create_dir(&partial) {
                // Not ours: another run's folder, or none at all.
                journal::remove(&journal::Item::Partial {
                    path: partial.clone(),
                });
                if e.kind() == ErrorKind::AlreadyExists {
                    continue;
                }
                return Err(e).with_context(|| format!("creating {}", partial.display()));
            }
            let final_dir = root.join(&id);
            if final_dir.exists() {
                let _ = std::fs::remove_dir(&partial);
                journal::remove(&journal::Item::Partial { path: partial });
                continue;
            }
            return Ok(Self {
                partial,
                final_dir,
                id,
                written: Vec::new(),
            });
        }
        unreachable!("some suffix is free")
    }

    /// Writes straight into `dir` (created if missing, and kept if it holds other files):
    /// for `--out` folders the user names. Nothing is renamed at the end.
    pub fn at(dir: &Path) -> anyhow::Result<Self> {
        let dir = create_owned(dir)?;
        Ok(Self {
            partial: dir.clone(),
            id: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            final_dir: dir,
            written: Vec::new(),
        })
    }

    /// The folder being written (absolute).
    pub fn path(&self) -> &Path {
        &self.partial
    }

    /// The folder's final name, e.g. `20261201T012330Z-aquilia-ping`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Writes an artifact of the registry, naming the file in any error.
    pub fn write(&mut self, name: &str, bytes: impl AsRef<[u8]>) -> anyhow::Result<()> {
        debug_assert!(
            Artifact::of(name).is_some(),
            "{name} is not in run_dir::ARTIFACTS"
        );
        write_file(&self.partial.join(name), bytes)?;
        self.note(name);
        Ok(())
    }

    /// Records that an artifact was written by someone else (the app's log).
    pub fn note(&mut self, name: &str) {
        if !self.written.iter().any(|w| w == name) {
            self.written.push(name.to_string());
        }
    }

    /// The artifacts written so far, and `more` to come: name -> path in the folder.
    pub fn artifacts(&self, more: &[&str]) -> BTreeMap<String, String> {
        self.written
            .iter()
            .map(String::as_str)
            .chain(more.iter().copied())
            .map(|n| (n.to_string(), n.to_string()))
            .collect()
    }

    /// Renames the folder into place and gives it to the invoker; returns its path.
    pub fn finish(self) -> anyhow::Result<PathBuf> {
        if self.partial != self.final_dir {
            rename_noreplace(&self.partial, &self.final_dir)
                .with_context(|| format!("moving results to {}", self.final_dir.display()))?;
            journal::remove(&self.journal_item());
        }
        give_to_invoker(&self.final_dir);
        Ok(self.final_dir.clone())
    }

    /// Nothing was measured, but the app's log tells why: the folder is kept with the log
    /// alone, and the log's path returned. Without a log, the folder is removed.
    pub fn keep_log(mut self) -> Option<PathBuf> {
        if !self.partial.join("app.log").exists() {
            self.discard();
            return None;
        }
        self.note("app.log");
        let dir = self.finish().ok()?;
        Some(dir.join("app.log"))
    }

    /// Removes the folder and everything in it (nothing was measured).
    pub fn discard(self) {
        let _ = std::fs::remove_dir_all(&self.partial);
        journal::remove(&self.journal_item());
    }

    fn journal_item(&self) -> journal::Item {
        journal::Item::Partial {
            path: self.partial.clone(),
        }
    }
}

/// Writes a file, naming it in any error; under sudo it belongs to the invoker.
pub fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    chown_to_invoker(path);
    Ok(())
}

/// The files a run lists on the terminal, in registry order, among `artifacts`.
pub fn listed(artifacts: &BTreeMap<String, String>) -> impl Iterator<Item = &str> {
    ARTIFACTS
        .iter()
        .filter(|a| a.listed)
        .filter_map(|a| artifacts.keys().find(|k| a.matches(k)).map(String::as_str))
}

fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE)
        .map_err(std::io::Error::from)
}

/// Creates `dir` (and its parents) if missing, giving what it creates to the invoker under
/// sudo; returns it absolute.
pub fn create_owned(dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = std::path::absolute(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let mut missing = Vec::new();
    let mut at = dir.as_path();
    while !at.exists() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(p) => at = p,
            None => break,
        }
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for created in missing {
        chown_to_invoker(&created);
    }
    Ok(dir)
}

/// The invoking user under sudo (SUDO_UID and SUDO_GID).
fn invoker() -> Option<(u32, u32)> {
    let id = |var: &str| std::env::var(var).ok().and_then(|v| v.parse::<u32>().ok());
    Some((id("SUDO_UID")?, id("SUDO_GID")?))
}

fn chown_to_invoker(path: &Path) {
    if let Some((uid, gid)) = invoker() {
        let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    }
}

/// Under sudo, `path` and everything inside it belong to the invoking user.
pub fn give_to_invoker(path: &Path) {
    if invoker().is_none() {
        return;
    }
    chown_to_invoker(path);
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            give_to_invoker(&e.path());
        }
    }
}

/// The current UTC time as `YYYYmmddTHHMMSSZ`, for folder names.
pub fn timestamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twin_runs_get_their_own_folders() {
        let root = std::env::temp_dir().join(format!("run-dir-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut a = RunDir::create(&root, "t-app-ping").unwrap();
        let mut b = RunDir::create(&root, "t-app-ping").unwrap();
        assert_eq!(a.id(), "t-app-ping");
        assert_eq!(b.id(), "t-app-ping-2");
        a.write("summary.json", "{}").unwrap();
        b.write("summary.json", "{}").unwrap();
        let a = a.finish().unwrap();
        let c = RunDir::create(&root, "t-app-ping").unwrap();
        assert_eq!(
            c.id(),
            "t-app-ping-3",
            "a finished folder's name is taken too"
        );
        c.discard();
        let b = b.finish().unwrap();
        assert!(a.join("summary.json").exists() && b.join("summary.json").exists());
        let names: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_registry_knows_numbered_files() {
        assert!(Artifact::of("stalls-12.svg").is_some());
        assert!(Artifact::of("stalls-.svg").is_none());
        assert!(Artifact::of("stalls.svg").is_some_and(|a| a.embed.is_some()));
        assert!(Artifact::of("nonsense.txt").is_none());
        let written: BTreeMap<String, String> = ["summary.json", "oncpu.svg", "report.html"]
            .iter()
            .map(|n| (n.to_string(), n.to_string()))
            .collect();
        assert_eq!(
            listed(&written).collect::<Vec<_>>(),
            ["report.html", "oncpu.svg", "summary.json"]
        );
    }
}
