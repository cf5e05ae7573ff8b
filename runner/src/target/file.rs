//! targets.toml, the services `runner bench --targets` compares: each a name, a container,
//! processes or a cgroup, a base URL, and what to load (contract scenarios, request paths,
//! or request mixes). Lists at the top level apply to every target that names no workload of
//! its own.
//!
//! ```toml
//! paths = ["/", "/items/{1..1000}"]
//!
//! [[target]]
//! name = "fastapi"
//! container = "load-test-fastapi-api-1"
//! url = "http://127.0.0.1:8002"
//!
//! [[target]]
//! name = "axum"
//! pid = 4242
//! url = "http://127.0.0.1:8080"
//! scenarios = ["ping", "json"]
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::TargetSpec;

/// Errors in a targets file, each naming the file and the target.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    scenarios: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    mixes: Vec<PathBuf>,
    #[serde(default)]
    target: Vec<EntryToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryToml {
    name: Option<String>,
    container: Option<String>,
    pid: Option<u32>,
    #[serde(default)]
    pids: Vec<u32>,
    cgroup: Option<PathBuf>,
    url: Option<String>,
    scenarios: Option<Vec<String>>,
    paths: Option<Vec<String>>,
    mixes: Option<Vec<PathBuf>>,
}

/// What one cell of the matrix loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    /// A contract scenario (apps/scenarios.toml), at the target's URL.
    Scenario(String),
    /// GET of a path (with `{A..B}` and `{unique}` filled in per request).
    Path(String),
    /// A weighted mix of requests from a TOML file.
    Mix(PathBuf),
}

impl Workload {
    /// The name of its column in the matrix: the scenario, the path, or the mix's file stem.
    pub fn label(&self) -> String {
        match self {
            Workload::Scenario(s) | Workload::Path(s) => s.clone(),
            Workload::Mix(p) => p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
        }
    }
}

/// One service to compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetEntry {
    pub name: String,
    pub spec: TargetSpec,
    /// Base URL, `http://host:port`.
    pub url: String,
    pub workloads: Vec<Workload>,
}

/// Reads and checks a targets file; mix paths are relative to the file's folder.
pub fn read(path: &Path) -> Result<Vec<TargetEntry>, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

fn parse(text: &str, path: &Path) -> Result<Vec<TargetEntry>, FileError> {
    let file: FileToml = toml::from_str(text).map_err(|e| FileError::Toml {
        path: path.to_path_buf(),
        message: crate::toml_error::describe(text, &e),
    })?;
    let invalid = |message: String| FileError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    if file.target.is_empty() {
        return Err(invalid(
            "no [[target]]: name at least one service (name, container, url)".into(),
        ));
    }
    let folder = path.parent().unwrap_or(Path::new("."));
    let mut entries: Vec<TargetEntry> = Vec::new();
    for (i, t) in file.target.into_iter().enumerate() {
        let label = t
            .name
            .clone()
            .unwrap_or_else(|| format!("number {}", i + 1));
        let bad = |m: &str| invalid(format!("target `{label}`: {m}"));
        let mut pids = t.pids.clone();
        pids.extend(t.pid);
        let spec = match (t.container, pids.is_empty(), t.cgroup) {
            (Some(c), true, None) => TargetSpec::Container(c),
            (None, false, None) => TargetSpec::Pids(pids),
            (None, true, Some(g)) => TargetSpec::Cgroup(g),
            (None, true, None) => {
                return Err(bad(
                    "say which service: container = \"NAME\", pid = PID or cgroup = \"PATH\"",
                ))
            }
            _ => return Err(bad("give one of container, pid or cgroup")),
        };
        let url = t
            .url
            .ok_or_else(|| bad("needs url = \"http://host:port\""))?;
        if !(url.starts_with("http://") || url.starts_with("ws://")) {
            return Err(bad(&format!(
                "url `{url}` must be a full URL like http://127.0.0.1:8001"
            )));
        }
        // A target that names any workload of its own takes none from the top of the file.
        let (scenarios, paths, mixes) =
            if t.scenarios.is_some() || t.paths.is_some() || t.mixes.is_some() {
                (
                    t.scenarios.unwrap_or_default(),
                    t.paths.unwrap_or_default(),
                    t.mixes.unwrap_or_default(),
                )
            } else {
                (
                    file.scenarios.clone(),
                    file.paths.clone(),
                    file.mixes.clone(),
                )
            };
        let mut workloads: Vec<Workload> = scenarios.into_iter().map(Workload::Scenario).collect();
        for p in paths {
            if !p.starts_with('/') {
                return Err(bad(&format!("path `{p}` must start with /")));
            }
            workloads.push(Workload::Path(p));
        }
        workloads.extend(mixes.into_iter().map(|m| Workload::Mix(folder.join(m))));
        if workloads.is_empty() {
            return Err(bad(
                "nothing to load: give scenarios, paths or mixes (here or at the top of the file)",
            ));
        }
        let name = t.name.unwrap_or_else(|| match &spec {
            TargetSpec::Container(c) => c.clone(),
            other => other.to_string().replace([' ', '/', ','], "-"),
        });
        if entries.iter().any(|e| e.name == name) {
            return Err(invalid(format!("two targets are named `{name}`")));
        }
        entries.push(TargetEntry {
            name,
            spec,
            url: url.trim_end_matches('/').to_string(),
            workloads,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_targets_with_shared_workloads() {
        let text = r#"
paths = ["/", "/items/{1..10}"]
mixes = ["crud.toml"]

[[target]]
name = "fastapi"
container = "load-test-fastapi-1"
url = "http://127.0.0.1:8002/"

[[target]]
pid = 42
url = "http://127.0.0.1:8080"
scenarios = ["ping"]
"#;
        let t = parse(text, Path::new("/bench/targets.toml")).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[0].spec,
            TargetSpec::Container("load-test-fastapi-1".into())
        );
        assert_eq!(t[0].url, "http://127.0.0.1:8002");
        assert_eq!(
            t[0].workloads,
            vec![
                Workload::Path("/".into()),
                Workload::Path("/items/{1..10}".into()),
                Workload::Mix("/bench/crud.toml".into())
            ]
        );
        assert_eq!(t[0].workloads[2].label(), "crud");
        assert_eq!(t[1].name, "pid-42");
        assert_eq!(t[1].workloads, vec![Workload::Scenario("ping".into())]);
    }

    #[test]
    fn bad_files_say_which_target_and_why() {
        let err = |text: &str| parse(text, Path::new("t.toml")).unwrap_err().to_string();
        assert!(err("").contains("no [[target]]"));
        assert!(
            err("[[target]]\nname = \"a\"\nurl = \"http://x:1\"\npaths = [\"/\"]")
                .contains("target `a`: say which service")
        );
        assert!(err(
            "[[target]]\nname = \"a\"\ncontainer = \"c\"\npid = 3\nurl = \"http://x:1\"\npaths = [\"/\"]"
        )
        .contains("give one of container, pid or cgroup"));
        assert!(
            err("[[target]]\nname = \"a\"\ncontainer = \"c\"\nurl = \"http://x:1\"")
                .contains("nothing to load")
        );
        assert!(
            err("[[target]]\nname = \"a\"\ncontainer = \"c\"\nurl = \"x:1\"\npaths = [\"/\"]")
                .contains("must be a full URL")
        );
        assert!(err("[[target]]\ncontainr = \"c\"")
            .starts_with("t.toml: line 2, column 1: unknown field `containr`"));
    }
}
