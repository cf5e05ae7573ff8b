//! Python environments for apps: one virtualenv per requirements file and interpreter,
//! created on first use in a cache and reused after.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use sha2::{Digest, Sha256};

use super::{manifest::Manifest, python, user::RunAs};
use crate::cpython::install::{Choice, Install};

/// Errors from provisioning.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{0} has no requirements file")]
    NoRequirements(String),
    #[error("cannot read {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error(transparent)]
    Python(#[from] super::python::PythonError),
    #[error("creating the virtualenv {0} failed: {1}")]
    Venv(PathBuf, String),
    #[error("installing {app}'s requirements failed at package `{package}`; pip said:\n{tail}")]
    Install {
        app: String,
        package: String,
        tail: String,
    },
}

/// The cache folder: the invoking user's ~/.cache/runner under sudo, /var/cache/runner for
/// root, ~/.cache/runner otherwise.
pub fn cache_dir() -> PathBuf {
    if let Ok(user) = std::env::var("SUDO_USER") {
        if let Ok(Some(u)) = nix::unistd::User::from_name(&user) {
            if !u.uid.is_root() {
                return u.dir.join(".cache/runner");
            }
        }
    }
    if nix::unistd::Uid::effective().is_root() {
        return PathBuf::from("/var/cache/runner");
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("runner")
}

/// The package pip failed on, from its output.
pub fn failed_package(output: &str) -> String {
    for line in output.lines().rev() {
        for marker in [
            "No matching distribution found for ",
            "Could not find a version that satisfies the requirement ",
            "Failed to build ",
            "Failed building wheel for ",
        ] {
            if let Some(rest) = line.split(marker).nth(1) {
                return rest
                    .split_whitespace()
                    .next()
                    .unwrap_or(rest)
                    .trim_end_matches(',')
                    .to_string();
            }
        }
    }
    "(unknown: see pip's output)".into()
}

/// A provisioned environment.
#[derive(Clone, Debug)]
pub struct PythonEnv {
    /// The virtualenv's python.
    pub python: PathBuf,
    /// The interpreter it is built on.
    pub base: Install,
    pub fresh: bool,
}

/// The virtualenv of `app` on the interpreter `choice` names (or the default one), created
/// (and owned by `owner`) when missing; one per requirements file and interpreter.
pub fn provision(
    app: &Manifest,
    choice: Option<&Choice>,
    cache: &Path,
    owner: &RunAs,
    progress: &mut dyn FnMut(&str),
) -> Result<PythonEnv, ProvisionError> {
    let requirements = app
        .requirements
        .as_ref()
        .map(|r| app.dir.join(r))
        .ok_or_else(|| ProvisionError::NoRequirements(app.name.clone()))?;
    let text =
        std::fs::read(&requirements).map_err(|e| ProvisionError::Read(requirements.clone(), e))?;
    // A virtualenv links to its interpreter: the app's (unprivileged) user must be able to
    // run it (python::for_app copies one it cannot read).
    let base = python::for_app(choice, owner, cache, progress)?;
    let mut hasher = Sha256::new();
    hasher.update(&text);
    hasher.update(base.version.as_bytes());
    hasher.update(base.path.as_os_str().as_encoded_bytes());
    hasher.update(b"runner-venv-v1");
    let hash = crate::load::request::hex(&hasher.finalize());
    let venv = cache
        .join("venvs")
        .join(format!("{}-{}-{}", app.name, base.version, &hash[..12]));
    let python = venv.join("bin/python");
    let complete = || venv.join(".complete").is_file() && python.exists();
    // Two first runs at once build it once: the second waits for the first, then uses it.
    let _building = if complete() {
        None
    } else {
        Some(lock_building(&venv, progress)?)
    };
    if complete() {
        return Ok(PythonEnv {
            python,
            base,
            fresh: false,
        });
    }
    progress(&format!(
        "creating a Python environment for {} on CPython {} (first use; cached in {})",
        app.name,
        base.describe(),
        venv.display()
    ));
    let _ = std::fs::remove_dir_all(&venv);
    let out = Command::new(&base.path)
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .map_err(|e| ProvisionError::Venv(venv.clone(), e.to_string()))?;
    if !out.status.success() {
        return Err(ProvisionError::Venv(
            venv,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    progress(&format!("installing {}", requirements.display()));
    let out = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-q",
            "-r",
        ])
        .arg(&requirements)
        .output()
        .map_err(|e| ProvisionError::Venv(venv.clone(), e.to_string()))?;
    if !out.status.success() {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = all.lines().collect();
        return Err(ProvisionError::Install {
            app: app.name.clone(),
            package: failed_package(&all),
            tail: lines[lines.len().saturating_sub(8)..].join("\n"),
        });
    }
    std::fs::write(venv.join(".complete"), &hash)
        .map_err(|e| ProvisionError::Read(venv.clone(), e))?;
    if std::env::var_os("SUDO_UID").is_some() {
        // Under sudo the cache belongs to the invoking user.
        chown_tree(&cache.join("venvs"), owner);
        chown_tree(&cache.join("pythons"), owner);
    }
    Ok(PythonEnv {
        python,
        base,
        fresh: true,
    })
}

/// The installed version of `package` in the environment of `python`, when it has one.
pub fn package_version(python: Option<&str>, package: &str) -> Option<String> {
    let out = std::process::Command::new(python?)
        .args([
            "-c",
            &format!("import importlib.metadata as m; print(m.version({package:?}))"),
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn chown_tree(dir: &Path, owner: &RunAs) {
    let _ = owner.own(dir);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = owner.own(&path);
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                chown_tree(&path, owner);
            }
        }
    }
}

/// Holds the lock of environment `venv` (a file beside it) while it is built; waits, saying
/// so, while another runner holds it.
fn lock_building(
    venv: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<nix::fcntl::Flock<std::fs::File>, ProvisionError> {
    std::fs::create_dir_all(venv.parent().unwrap())
        .map_err(|e| ProvisionError::Read(venv.to_path_buf(), e))?;
    let lock_path = venv.with_file_name(format!(
        "{}.lock",
        venv.file_name().unwrap_or_default().to_string_lossy()
    ));
    let lock_file = std::fs::File::create(&lock_path)
        .map_err(|e| ProvisionError::Read(lock_path.clone(), e))?;
    match nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((file, _)) => {
            progress(&format!(
                "waiting for another runner that is creating {}",
                venv.display()
            ));
            nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, e)| ProvisionError::Read(lock_path, e.into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_package_pip_failed_on() {
        let out = "ERROR: Could not find a version that satisfies the requirement flask==99.0 (from versions: 1.0)\nERROR: No matching distribution found for flask==99.0\n";
        assert_eq!(failed_package(out), "flask==99.0");
        assert_eq!(
            failed_package("something else"),
            "(unknown: see pip's output)"
        );
    }
}
