//! App manifests (`apps/<name>/app.toml`) and where the bundled apps live.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// Errors from finding or reading an app.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("no app `{name}`: not a bundled app ({known}) and not a path to an app.toml")]
    Unknown { name: String, known: String },
    #[error("cannot read {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: [unsupported] names `{scenario}`, which is not a scenario in scenarios.toml")]
    UnknownScenario { path: PathBuf, scenario: String },
}

/// How an app handles concurrency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    Async,
    Sync,
    Threaded,
}

/// The app's language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Python,
    Rust,
}

/// The default worker count: the app's CPU count, or a number.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Workers {
    Count(u32),
    Keyword(String),
}

impl Workers {
    /// The count for an app given `cpus` CPUs.
    pub fn resolve(&self, cpus: usize) -> u32 {
        match self {
            Workers::Count(n) => (*n).max(1),
            Workers::Keyword(_) => cpus.max(1) as u32,
        }
    }
}

/// One app.toml.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub framework: String,
    pub language: Language,
    pub concurrency: Concurrency,
    pub server: String,
    #[serde(default)]
    pub requirements: Option<String>,
    /// Command template: {python} {port} {workers} {app_dir} {bin}.
    pub start: String,
    /// Build command for compiled apps, run in the workspace.
    #[serde(default)]
    pub build: Option<String>,
    /// Path of the built binary, relative to the workspace ({bin} in `start`).
    #[serde(default)]
    pub binary: Option<String>,
    pub workers: Workers,
    pub db_pool: u32,
    /// Readiness route (default /ping).
    #[serde(default)]
    pub health: Option<String>,
    #[serde(default)]
    pub unsupported: BTreeMap<String, String>,
    #[serde(default)]
    pub notes: BTreeMap<String, String>,
    /// The folder of the app.toml.
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Manifest {
    /// The readiness route.
    pub fn health(&self) -> &str {
        self.health.as_deref().unwrap_or("/ping")
    }

    /// Why `scenario` is unsupported, if it is.
    pub fn unsupported_reason(&self, scenario: &str) -> Option<&str> {
        self.unsupported.get(scenario).map(String::as_str)
    }

    /// Reads and checks an app.toml against the known scenario names.
    pub fn read(path: &Path, scenarios: &[String]) -> Result<Self, ManifestError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ManifestError::Read(path.into(), e))?;
        let mut manifest: Manifest = toml::from_str(&text).map_err(|e| ManifestError::Parse {
            path: path.into(),
            message: crate::toml_error::describe(&text, &e),
        })?;
        manifest.dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        if let Ok(abs) = std::fs::canonicalize(&manifest.dir) {
            manifest.dir = abs;
        }
        for scenario in manifest.unsupported.keys() {
            if !scenarios.contains(scenario) {
                return Err(ManifestError::UnknownScenario {
                    path: path.into(),
                    scenario: scenario.clone(),
                });
            }
        }
        Ok(manifest)
    }
}

/// The folder of the bundled apps: $RUNNER_APPS_DIR, ./apps, or the apps/ this binary was
/// built from.
pub fn apps_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RUNNER_APPS_DIR") {
        return PathBuf::from(dir);
    }
    let local = PathBuf::from("apps");
    if local.join("scenarios.toml").is_file() {
        return std::fs::canonicalize(&local).unwrap_or(local);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../apps")
}

/// Names of the bundled apps (folders of apps/ with an app.toml), sorted.
pub fn bundled_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().join("app.toml").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// An app by bundled name, or by the path of an app.toml (or of its folder).
pub fn find(app: &str, dir: &Path, scenarios: &[String]) -> Result<Manifest, ManifestError> {
    let as_path = PathBuf::from(app);
    let path = if as_path.is_file() {
        as_path
    } else if as_path.join("app.toml").is_file() {
        as_path.join("app.toml")
    } else if dir.join(app).join("app.toml").is_file() {
        dir.join(app).join("app.toml")
    } else {
        return Err(ManifestError::Unknown {
            name: app.into(),
            known: bundled_names(dir).join(", "),
        });
    };
    Manifest::read(&path, scenarios)
}
