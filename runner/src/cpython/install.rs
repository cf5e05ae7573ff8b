//! CPython installations on this machine, where users keep them (pyenv, uv's managed
//! Pythons, /usr/bin and /usr/local/bin, an explicit path), and what each is: its version
//! and build (free-threaded, frame pointers, stripped), as the interpreter itself reports.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde::{Deserialize, Serialize};

/// A CPython installation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Install {
    /// The executable (what venvs link to).
    pub path: PathBuf,
    /// Where it was found: `pyenv`, `uv`, `system` (/usr/bin, /usr/local/bin) or `path`.
    pub source: String,
    /// `3.13.0`.
    pub version: String,
    /// Built without the GIL (`Py_GIL_DISABLED`, a `3.13t`).
    pub free_threaded: bool,
    /// Built with `-fno-omit-frame-pointer` (native stacks unwind through it).
    pub frame_pointers: bool,
    /// The file holding the interpreter (libpython, or the executable) has no symbol table:
    /// its native frames show as `[file name]`.
    pub stripped: bool,
    /// That file.
    pub module: PathBuf,
    /// `sys.base_prefix`.
    pub prefix: PathBuf,
    /// The installation this one is a copy of (one the app user could not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied_from: Option<PathBuf>,
}

impl Install {
    /// (major, minor).
    pub fn minor(&self) -> (u8, u8) {
        parse_version(&self.version)
            .map(|v| (v.0, v.1))
            .unwrap_or_default()
    }

    /// `3.13.0 (pyenv, symbols)` or `3.11.2 (system, stripped)`, plus `free-threaded` and
    /// `frame pointers` when they apply.
    pub fn describe(&self) -> String {
        let mut flags = vec![self.source.as_str()];
        flags.push(if self.stripped { "stripped" } else { "symbols" });
        if self.free_threaded {
            flags.push("free-threaded");
        }
        if self.frame_pointers {
            flags.push("frame pointers");
        }
        format!("{} ({})", self.version, flags.join(", "))
    }

    /// True for the versions and builds runner's walker reads.
    pub fn walkable(&self) -> bool {
        // The layouts runner knows (cpython/layout.rs): 3.11 to 3.15, free-threaded from 3.13.
        let v = self.minor();
        ((3, 11)..=(3, 15)).contains(&v) && (!self.free_threaded || v >= (3, 13))
    }
}

/// Errors finding or asking an interpreter.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("`{0}` is not a Python version like 3.13 (or 3.13.0, 3.13t) nor a path")]
    Spec(String),
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error("{path} did not run as a CPython interpreter: {why}")]
    NotPython { path: PathBuf, why: String },
    #[error("no CPython {wanted} here (looked in {looked}); found: {found}. Install it (`pyenv install {wanted}` or `uv python install {wanted}`) or pass --python /path/to/python{wanted}")]
    NotFound {
        wanted: String,
        looked: String,
        found: String,
    },
}

/// What `--python` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// `3.13`, `3.13.0`, `3.13t`: the best matching installation found.
    Version {
        major: u8,
        minor: u8,
        patch: Option<u8>,
        free_threaded: bool,
    },
    /// An executable, or an installation's folder (its `bin/python3`).
    Path(PathBuf),
}

impl std::str::FromStr for Choice {
    type Err = InstallError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let t = text.trim();
        if t.contains('/') {
            return Ok(Choice::Path(PathBuf::from(t)));
        }
        let (t, free_threaded) = match t.strip_suffix('t') {
            Some(rest) => (rest, true),
            None => (t, false),
        };
        let parts: Vec<&str> = t.split('.').collect();
        let num = |s: &str| s.parse::<u8>().ok();
        match parts.as_slice() {
            [ma, mi] | [ma, mi, _] if num(ma).is_some() && num(mi).is_some() => {
                let patch = match parts.get(2) {
                    Some(p) => Some(num(p).ok_or_else(|| InstallError::Spec(text.into()))?),
                    None => None,
                };
                Ok(Choice::Version {
                    major: num(ma).unwrap(),
                    minor: num(mi).unwrap(),
                    patch,
                    free_threaded,
                })
            }
            _ => Err(InstallError::Spec(text.into())),
        }
    }
}

impl std::fmt::Display for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Choice::Path(p) => write!(f, "{}", p.display()),
            Choice::Version {
                major,
                minor,
                patch,
                free_threaded,
            } => {
                write!(f, "{major}.{minor}")?;
                if let Some(p) = patch {
                    write!(f, ".{p}")?;
                }
                if *free_threaded {
                    f.write_str("t")?;
                }
                Ok(())
            }
        }
    }
}

impl Choice {
    fn matches(&self, version: (u8, u8, u8), free_threaded: bool) -> bool {
        match self {
            Choice::Path(_) => false,
            Choice::Version {
                major,
                minor,
                patch,
                free_threaded: ft,
            } => {
                (version.0, version.1) == (*major, *minor)
                    && patch.is_none_or(|p| p == version.2)
                    && *ft == free_threaded
            }
        }
    }
}

/// `3.13.0` (or `3.13.0t`, `cpython-3.13.0-linux...`) -> (3, 13, 0); a missing patch is 0.
fn parse_version(text: &str) -> Option<(u8, u8, u8)> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let mut nums = text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u8>().ok());
    let major = nums.next()??;
    let minor = nums.next()??;
    let patch = nums.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

/// An executable found on disk, before asking it anything: path, source, the version and
/// free-threading its name says.
#[derive(Clone, Debug)]
struct Candidate {
    path: PathBuf,
    /// The version as the name says it (`3.11` for /usr/bin/python3.11, `3.13.0` in pyenv).
    label: String,
    source: &'static str,
    version: (u8, u8, u8),
    free_threaded: bool,
}

/// Home folders to look in: $HOME, the sudo user's, and root's when runner is root.
fn homes() -> Vec<PathBuf> {
    let mut homes: Vec<PathBuf> = std::env::var_os("HOME")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    if let Ok(user) = std::env::var("SUDO_USER") {
        if let Ok(Some(u)) = nix::unistd::User::from_name(&user) {
            homes.push(u.dir);
        }
    }
    if nix::unistd::Uid::effective().is_root() {
        homes.push("/root".into());
    }
    homes.dedup();
    homes
}

/// The folders searched, in order of preference, with their source names.
fn places() -> Vec<(PathBuf, &'static str)> {
    let mut places = Vec::new();
    if let Some(root) = std::env::var_os("PYENV_ROOT") {
        places.push((PathBuf::from(root).join("versions"), "pyenv"));
    }
    if let Some(dir) = std::env::var_os("UV_PYTHON_INSTALL_DIR") {
        places.push((PathBuf::from(dir), "uv"));
    }
    for home in homes() {
        places.push((home.join(".pyenv/versions"), "pyenv"));
        places.push((home.join(".local/share/uv/python"), "uv"));
    }
    places.push(("/usr/local/bin".into(), "system"));
    places.push(("/usr/bin".into(), "system"));
    let mut seen = std::collections::HashSet::new();
    places.retain(|(p, _)| seen.insert(p.clone()));
    places
}

/// Every CPython 3 executable found where users keep them.
fn candidates() -> Vec<Candidate> {
    candidates_in(&places())
}

/// Every CPython 3 executable in `places` (folders with their source names).
fn candidates_in(places: &[(PathBuf, &'static str)]) -> Vec<Candidate> {
    let mut found = Vec::new();
    for &(ref dir, source) in places {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in names {
            let (path, free_threaded) = if source == "system" {
                // python3.11, python3.13t: one per version, not python3 or -config.
                let Some(rest) = name.strip_prefix("python3.") else {
                    continue;
                };
                let ft = rest.ends_with('t');
                if !rest
                    .trim_end_matches('t')
                    .chars()
                    .all(|c| c.is_ascii_digit())
                {
                    continue;
                }
                (dir.join(&name), ft)
            } else {
                // pyenv: 3.13.0, 3.13.0t; uv: cpython-3.13.0-linux-x86_64-gnu,
                // cpython-3.13.0+freethreaded-...
                if !(name.starts_with('3') || name.starts_with("cpython-3")) {
                    continue;
                }
                let ft = name.contains("freethreaded")
                    || name.split('-').next().is_some_and(|v| v.ends_with('t'));
                (dir.join(&name).join("bin/python3"), ft)
            };
            let Some(version) = parse_version(&name) else {
                continue;
            };
            if version.0 == 3 && path.exists() {
                let label = if source == "system" {
                    name.trim_start_matches("python").to_string()
                } else {
                    name.trim_start_matches("cpython-")
                        .split('-')
                        .next()
                        .unwrap_or(&name)
                        .to_string()
                };
                found.push(Candidate {
                    label,
                    path,
                    source,
                    version,
                    free_threaded,
                });
            }
        }
    }
    found
}

/// What the interpreter says of itself, as one JSON line.
const ASK: &str = r#"
import json, os, sys, sysconfig
cfg = sysconfig.get_config_var
module = sys.executable
try:
    for line in open("/proc/self/maps"):
        p = line.split()[-1]
        if "/libpython3" in p:
            module = p
            break
except OSError:
    pass
flags = " ".join(str(cfg(v) or "") for v in ("CFLAGS", "PY_CFLAGS", "CONFIG_ARGS"))
print(json.dumps({
    "implementation": sys.implementation.name,
    "version": "%d.%d.%d" % sys.version_info[:3],
    "free_threaded": bool(cfg("Py_GIL_DISABLED")),
    "frame_pointers": "-fno-omit-frame-pointer" in flags or "--with-frame-pointers" in flags,
    "module": os.path.realpath(module),
    "prefix": sys.base_prefix,
}))
"#;

#[derive(Deserialize)]
struct Answer {
    implementation: String,
    version: String,
    free_threaded: bool,
    frame_pointers: bool,
    module: PathBuf,
    prefix: PathBuf,
}

/// Asks the interpreter at `path` what it is (it runs, as runner's user).
pub fn inspect(path: &Path, source: &str) -> Result<Install, InstallError> {
    let not_python = |why: String| InstallError::NotPython {
        path: path.to_path_buf(),
        why,
    };
    if !path.exists() {
        return Err(InstallError::Missing(path.to_path_buf()));
    }
    let out = Command::new(path)
        .args(["-I", "-c", ASK])
        .output()
        .map_err(|e| not_python(e.to_string()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(not_python(
            err.lines().last().unwrap_or("it failed").to_string(),
        ));
    }
    let answer: Answer = serde_json::from_slice(&out.stdout)
        .map_err(|e| not_python(format!("unexpected answer ({e})")))?;
    if answer.implementation != "cpython" {
        return Err(not_python(format!("it is {}", answer.implementation)));
    }
    Ok(Install {
        path: path.to_path_buf(),
        source: source.into(),
        version: answer.version,
        free_threaded: answer.free_threaded,
        frame_pointers: answer.frame_pointers,
        stripped: is_stripped(&answer.module),
        module: answer.module,
        prefix: answer.prefix,
        copied_from: None,
    })
}

/// True when the ELF file at `path` has no symbol table (or cannot be read).
pub fn is_stripped(path: &Path) -> bool {
    use object::Object;
    let Ok(file) = std::fs::File::open(path) else {
        return true;
    };
    let cache = object::ReadCache::new(file);
    object::File::parse(&cache).map_or(true, |elf| elf.symbol_table().is_none())
}

/// Every CPython 3 found (asked, so each one listed runs), in order of preference of its
/// place: pyenv, uv, /usr/local/bin, /usr/bin.
pub fn find_all() -> Vec<Install> {
    let mut all: Vec<Install> = Vec::new();
    for c in candidates() {
        if let Ok(install) = inspect(&c.path, c.source) {
            if !all.iter().any(|i| i.module == install.module) {
                all.push(install);
            }
        }
    }
    all
}

/// The installation `choice` names: a path as given, or the best match of a version (with
/// symbols first, then the newest patch release).
pub fn find(choice: &Choice) -> Result<Install, InstallError> {
    if let Choice::Path(path) = choice {
        let exe = if path.is_dir() {
            path.join("bin/python3")
        } else {
            path.clone()
        };
        return inspect(&exe, "path");
    }
    let all = candidates();
    let mut matching: Vec<Install> = all
        .iter()
        .filter(|c| choice.matches(c.version, c.free_threaded))
        .filter_map(|c| inspect(&c.path, c.source).ok())
        .collect();
    matching.sort_by_key(|i| {
        (
            i.stripped,
            std::cmp::Reverse(parse_version(&i.version).unwrap_or_default()),
        )
    });
    matching.into_iter().next().ok_or_else(|| {
        let mut found: Vec<String> = all
            .iter()
            .map(|c| format!("{} ({})", c.label, c.path.display()))
            .collect();
        if found.is_empty() {
            found.push("none".into());
        }
        InstallError::NotFound {
            wanted: choice.to_string(),
            looked: places()
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            found: found.join(", "),
        }
    })
}

/// The system's `python3` (/usr/bin/python3, else the first on PATH).
pub fn system() -> Result<Install, InstallError> {
    let path = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join("python3"))
                    .find(|p| p.exists())
            })
        })
        .ok_or_else(|| InstallError::Missing("python3".into()))?;
    inspect(&path, "system")
}

/// The interpreter bundled apps use when `--python` is not given: the system's `python3`,
/// or, when that is stripped, an installation of the same version with symbols (pyenv's and
/// uv's keep them), so native frames get names.
pub fn default_for_apps() -> Result<Install, InstallError> {
    let system = system()?;
    if !system.stripped {
        return Ok(system);
    }
    let (major, minor) = system.minor();
    let same = Choice::Version {
        major,
        minor,
        patch: None,
        free_threaded: system.free_threaded,
    };
    Ok(find(&same).ok().filter(|i| !i.stripped).unwrap_or(system))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_choices() {
        assert_eq!(
            "3.13".parse::<Choice>().unwrap(),
            Choice::Version {
                major: 3,
                minor: 13,
                patch: None,
                free_threaded: false
            }
        );
        assert_eq!(
            "3.13.1t".parse::<Choice>().unwrap(),
            Choice::Version {
                major: 3,
                minor: 13,
                patch: Some(1),
                free_threaded: true
            }
        );
        assert_eq!("3.13t".parse::<Choice>().unwrap().to_string(), "3.13t");
        assert_eq!(
            "./py/bin/python3".parse::<Choice>().unwrap(),
            Choice::Path("./py/bin/python3".into())
        );
        assert!("python".parse::<Choice>().is_err());
        assert!("3".parse::<Choice>().is_err());
        assert!("3.x".parse::<Choice>().is_err());
    }

    #[test]
    fn versions_from_names() {
        assert_eq!(parse_version("3.13.0"), Some((3, 13, 0)));
        assert_eq!(parse_version("python3.11"), Some((3, 11, 0)));
        assert_eq!(
            parse_version("cpython-3.12.7-linux-x86_64-gnu"),
            Some((3, 12, 7))
        );
        assert_eq!(parse_version("3.14.0t"), Some((3, 14, 0)));
        let v = "3.12".parse::<Choice>().unwrap();
        assert!(v.matches((3, 12, 1), false));
        assert!(!v.matches((3, 12, 1), true));
        assert!(!v.matches((3, 13, 0), false));
    }

    #[test]
    fn finds_pyenv_uv_and_system_layouts() {
        let root = std::env::temp_dir().join(format!("runner-installs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let exe = |dir: &Path| {
            std::fs::create_dir_all(dir.join("bin")).unwrap();
            std::os::unix::fs::symlink("/usr/bin/python3", dir.join("bin/python3")).unwrap();
        };
        exe(&root.join("pyenv/3.12.1"));
        exe(&root.join("pyenv/3.13.0t"));
        std::fs::create_dir_all(root.join("pyenv/system")).unwrap();
        exe(&root.join("uv/cpython-3.13.2-linux-x86_64-gnu"));
        exe(&root.join("uv/cpython-3.14.0+freethreaded-linux-x86_64-gnu"));
        std::fs::create_dir_all(root.join("bin")).unwrap();
        for name in ["python3.12", "python3", "python3.12-config", "python3.13t"] {
            std::os::unix::fs::symlink("/usr/bin/python3", root.join("bin").join(name)).unwrap();
        }
        let found = candidates_in(&[
            (root.join("pyenv"), "pyenv"),
            (root.join("uv"), "uv"),
            (root.join("bin"), "system"),
        ]);
        let seen: Vec<String> = found
            .iter()
            .map(|c| {
                let (ma, mi, pa) = c.version;
                format!(
                    "{} {} {ma}.{mi}.{pa} {}",
                    c.label, c.source, c.free_threaded
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                "3.12.1 pyenv 3.12.1 false",
                "3.13.0t pyenv 3.13.0 true",
                "3.13.2 uv 3.13.2 false",
                "3.14.0+freethreaded uv 3.14.0 true",
                "3.12 system 3.12.0 false",
                "3.13t system 3.13.0 true",
            ]
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_system_python_answers() {
        // CI has Debian's python3 (xtask setup); every machine runner supports has one.
        let system = system().unwrap();
        assert!(system.version.starts_with("3."), "{system:?}");
        assert!(system.module.exists(), "{system:?}");
    }
}
