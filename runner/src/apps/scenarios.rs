//! The scenario contract (`apps/scenarios.toml`): what each scenario sends, and how it is
//! turned into requests for the load engine.

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

use crate::load::request::{BodySource, Expect, RequestSpec, StatusExpect};

/// Errors from reading scenarios.toml.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {0}")]
    Read(std::path::PathBuf, #[source] std::io::Error),
    #[error("{path}: {message}")]
    Parse {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("no scenario `{name}`; scenarios: {known}")]
    Unknown { name: String, known: String },
}

/// One request of a scenario.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct RequestDef {
    #[serde(default = "get")]
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub body_size: Option<u64>,
    #[serde(default)]
    pub status: Option<u16>,
}

fn get() -> String {
    "GET".into()
}

/// One scenario.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Scenario {
    #[serde(skip)]
    pub name: String,
    pub group: String,
    pub description: String,
    #[serde(flatten)]
    pub request: Option<RequestDef>,
    #[serde(default)]
    pub needs_db: bool,
    #[serde(default)]
    pub needs_sqlite: bool,
    #[serde(default)]
    pub websocket: bool,
    pub verify: String,
    /// name = weight, for mixes.
    #[serde(default)]
    pub mix: BTreeMap<String, u32>,
    #[serde(default)]
    pub requests: BTreeMap<String, RequestDef>,
}

#[derive(Deserialize)]
struct File {
    scenario: BTreeMap<String, Scenario>,
}

/// All scenarios, in file order of their names (sorted by group, then name).
#[derive(Clone, Debug)]
pub struct Scenarios {
    pub all: Vec<Scenario>,
}

const GROUP_ORDER: [&str; 4] = ["core", "blocking", "crud", "mixed"];

impl Scenarios {
    /// Reads `scenarios.toml` from the apps folder.
    pub fn read(dir: &Path) -> Result<Self, ScenarioError> {
        let path = dir.join("scenarios.toml");
        let text =
            std::fs::read_to_string(&path).map_err(|e| ScenarioError::Read(path.clone(), e))?;
        let file: File = toml::from_str(&text).map_err(|e| ScenarioError::Parse {
            path: path.clone(),
            message: crate::toml_error::describe(&text, &e),
        })?;
        let mut all: Vec<Scenario> = file
            .scenario
            .into_iter()
            .map(|(name, mut s)| {
                s.name = name;
                s
            })
            .collect();
        all.sort_by_key(|s| {
            (
                GROUP_ORDER
                    .iter()
                    .position(|g| *g == s.group)
                    .unwrap_or(GROUP_ORDER.len()),
                order_in_file(&text, &s.name),
            )
        });
        Ok(Self { all })
    }

    /// Scenario names.
    pub fn names(&self) -> Vec<String> {
        self.all.iter().map(|s| s.name.clone()).collect()
    }

    /// A scenario by name.
    pub fn get(&self, name: &str) -> Result<&Scenario, ScenarioError> {
        self.all
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| ScenarioError::Unknown {
                name: name.into(),
                known: self.names().join(", "),
            })
    }
}

fn order_in_file(text: &str, name: &str) -> usize {
    text.find(&format!("[scenario.{name}]"))
        .unwrap_or(usize::MAX)
}

fn spec(name: &str, weight: u32, def: &RequestDef) -> RequestSpec {
    let body = match (&def.body, def.body_size) {
        (Some(text), _) => BodySource::Text(text.clone()),
        (None, Some(size)) => BodySource::Size(size),
        (None, None) => BodySource::Empty,
    };
    RequestSpec {
        name: name.into(),
        weight,
        method: def.method.clone(),
        path: def.path.clone(),
        headers: def
            .content_type
            .iter()
            .map(|ct| format!("Content-Type: {ct}"))
            .collect(),
        body,
        expect: Expect {
            status: def
                .status
                .map(|s| StatusExpect::OneOf(vec![s]))
                .unwrap_or_default(),
            body: None,
        },
    }
}

impl Scenario {
    /// The requests the load engine sends for this scenario.
    pub fn requests(&self) -> Vec<RequestSpec> {
        if !self.mix.is_empty() {
            return self
                .mix
                .iter()
                .filter_map(|(name, weight)| {
                    self.requests.get(name).map(|def| spec(name, *weight, def))
                })
                .collect();
        }
        match &self.request {
            Some(def) => vec![spec(&self.name, 1, def)],
            None => Vec::new(),
        }
    }

    /// The path for load and checks (WebSocket scenarios have no method).
    pub fn path(&self) -> &str {
        self.request
            .as_ref()
            .map(|r| r.path.as_str())
            .unwrap_or("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundled() -> Scenarios {
        Scenarios::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../apps")).unwrap()
    }

    #[test]
    fn the_bundled_contract_parses() {
        let s = bundled();
        assert!(s.all.len() >= 19, "{}", s.all.len());
        assert_eq!(s.all[0].name, "ping");
        let crud = s.get("crud").unwrap();
        let requests = crud.requests();
        assert_eq!(requests.len(), 6);
        let weights: u32 = requests.iter().map(|r| r.weight).sum();
        assert_eq!(weights, 14);
        let upload = s.get("upload").unwrap().requests();
        assert_eq!(upload[0].body, BodySource::Size(5 * 1024 * 1024));
        assert!(s.get("ws-echo").unwrap().websocket);
        assert!(s.get("nope").is_err());
        // Every request of every scenario builds.
        for sc in &s.all {
            if !sc.websocket {
                crate::load::request::Prepared::new(&sc.requests(), "127.0.0.1:1").unwrap();
            }
        }
    }
}
