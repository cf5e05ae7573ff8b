//! The framework apps: manifests, the scenario contract, Python environments, an ephemeral
//! PostgreSQL, launching apps in their own cgroups, and verification.

pub mod http;
pub mod manifest;
pub mod postgres;
pub mod process;
pub mod python;
pub mod scenarios;
pub mod session;
pub mod user;
pub mod venv;
pub mod verify;

use std::{net::SocketAddr, path::PathBuf};

use crate::load::{self, request::RequestSpec, LoadConfig, LoadError, LoadShape};
use manifest::{apps_dir, bundled_names, Manifest};
use scenarios::{Scenario, Scenarios};

/// The contract and the bundled apps.
pub fn load_all() -> anyhow::Result<(PathBuf, Scenarios, Vec<Manifest>)> {
    let dir = apps_dir();
    let scenarios = Scenarios::read(&dir)?;
    let names = scenarios.names();
    let apps = bundled_names(&dir)
        .iter()
        .map(|n| manifest::find(n, &dir, &names))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((dir, scenarios, apps))
}

/// The scenarios of `app` to run: `only` (each must be supported), or every supported one.
pub fn choose_scenarios<'a>(
    app: &Manifest,
    all: &'a Scenarios,
    only: &[String],
) -> anyhow::Result<Vec<&'a Scenario>> {
    if only.is_empty() {
        return Ok(all
            .all
            .iter()
            .filter(|s| app.unsupported_reason(&s.name).is_none())
            .collect());
    }
    only.iter()
        .map(|name| {
            let s = all.get(name)?;
            if let Some(reason) = app.unsupported_reason(name) {
                anyhow::bail!("{} does not support {name}: {reason}", app.name);
            }
            Ok(s)
        })
        .collect()
}

/// The load of a scenario's requests (or a URL's) against the app at `addr`; WebSocket
/// scenarios get a ws:// target.
pub fn load_config(
    addr: SocketAddr,
    requests: Vec<RequestSpec>,
    scenario: Option<&Scenario>,
    shape: LoadShape,
) -> Result<LoadConfig, LoadError> {
    let websocket = scenario.is_some_and(|s| s.websocket);
    let path = requests
        .first()
        .map(|r| r.path.clone())
        .or_else(|| scenario.map(|s| s.path().to_string()))
        .unwrap_or_else(|| "/".into());
    let scheme = if websocket { "ws" } else { "http" };
    let target = load::parse_url(&format!(
        "{scheme}://{addr}{}",
        if websocket { path.as_str() } else { "/" }
    ))?;
    Ok(LoadConfig::new(target, requests, shape))
}
