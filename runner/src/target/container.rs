//! A Docker or Podman container, through the Docker Engine API (bollard): which socket to
//! use (`DOCKER_HOST`, else /var/run/docker.sock, else /run/podman/podman.sock), and what the
//! engine says of a container: id, name, image, first process, state, restarts and the
//! limits it was given. Read-only: nothing here starts, stops or changes a container.

use std::{collections::HashMap, io::ErrorKind, path::Path};

use bollard::{
    errors::Error as ApiError, models::ContainerInspectResponse,
    query_parameters::ListContainersOptions, Docker,
};
use serde::{Deserialize, Serialize};

/// Sockets tried, in order, when `DOCKER_HOST` is not set.
pub const SOCKETS: [&str; 2] = ["/var/run/docker.sock", "/run/podman/podman.sock"];

/// Seconds an API call may take.
const TIMEOUT_S: u64 = 10;

/// Why a container cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("no Docker or Podman socket: DOCKER_HOST is not set and neither {} nor {} exists (start Docker, run `podman system service`, or set DOCKER_HOST)", SOCKETS[0], SOCKETS[1])]
    NoSocket,
    #[error("no permission to use {endpoint}: run as root, or as a member of the socket's group")]
    Permission { endpoint: String },
    #[error("cannot reach the container engine at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("DOCKER_HOST={0} is not supported: use unix:///path or tcp://host:port")]
    Scheme(String),
    #[error("no container `{name}` at {endpoint} (see `docker ps`)")]
    NoSuchContainer { name: String, endpoint: String },
    #[error(
        "`{name}` names several running compose services ({matches}); give a container name or id"
    )]
    Ambiguous { name: String, matches: String },
    #[error("container `{name}` is not running (it is {state})")]
    NotRunning { name: String, state: String },
    #[error("asking {endpoint} about `{name}` failed: {reason}")]
    Api {
        name: String,
        endpoint: String,
        reason: String,
    },
    #[error("cannot start the Docker API client")]
    Runtime(#[source] std::io::Error),
}

/// What the engine says of a container, for run.json.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerFacts {
    pub id: String,
    pub name: String,
    /// The image as the container was created from it (e.g. `app:latest`).
    pub image: Option<String>,
    pub image_id: Option<String>,
    /// `docker 27.3.1`, `podman 4.3.1`...
    pub engine: String,
    /// The socket or address of the engine.
    pub endpoint: String,
    /// The container's first process, as the host sees it.
    pub pid: u32,
    pub state: String,
    pub started_at: Option<String>,
    pub restart_count: i64,
    /// The limits it was created with (the cgroup's own files are in `limits`).
    pub nano_cpus: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub memory_bytes: Option<i64>,
    /// `com.docker.compose.project`/`service` labels, when compose made it.
    pub compose_project: Option<String>,
    pub compose_service: Option<String>,
}

/// A connection to the engine.
pub struct Engine {
    docker: Docker,
    runtime: tokio::runtime::Runtime,
    pub endpoint: String,
    /// `docker VERSION` or `podman VERSION`.
    pub name: String,
}

/// Which engine endpoint to use: `DOCKER_HOST`, else the first of `sockets` that exists.
fn endpoint(docker_host: Option<String>, sockets: &[&str]) -> Result<String, ContainerError> {
    if let Some(host) = docker_host.filter(|h| !h.is_empty()) {
        return Ok(host);
    }
    sockets
        .iter()
        .find(|s| Path::new(s).exists())
        .map(|s| format!("unix://{s}"))
        .ok_or(ContainerError::NoSocket)
}

impl Engine {
    /// Connects to the engine and agrees on an API version.
    pub fn connect() -> Result<Self, ContainerError> {
        let endpoint = endpoint(std::env::var("DOCKER_HOST").ok(), &SOCKETS)?;
        let unreachable = |reason: String| ContainerError::Unreachable {
            endpoint: endpoint.clone(),
            reason,
        };
        let version = bollard::API_DEFAULT_VERSION;
        let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
            // Say what is wrong with the socket itself before the client does, vaguely.
            if let Err(e) = std::os::unix::net::UnixStream::connect(path) {
                return Err(match e.kind() {
                    ErrorKind::PermissionDenied => ContainerError::Permission {
                        endpoint: endpoint.clone(),
                    },
                    ErrorKind::NotFound => unreachable("the socket does not exist".into()),
                    ErrorKind::ConnectionRefused => {
                        unreachable("nothing listens on the socket".into())
                    }
                    _ => unreachable(e.to_string()),
                });
            }
            Docker::connect_with_unix(&endpoint, TIMEOUT_S, version)
        } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
            Docker::connect_with_http(&endpoint, TIMEOUT_S, version)
        } else {
            return Err(ContainerError::Scheme(endpoint));
        }
        .map_err(|e| unreachable(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ContainerError::Runtime)?;
        let docker = runtime
            .block_on(docker.negotiate_version())
            .map_err(|e| unreachable(api_reason(&e)))?;
        let name = runtime
            .block_on(docker.version())
            .ok()
            .map(|v| {
                let podman = v
                    .components
                    .iter()
                    .flatten()
                    .any(|c| c.name.to_lowercase().contains("podman"));
                let kind = if podman { "podman" } else { "docker" };
                format!("{kind} {}", v.version.unwrap_or_default())
                    .trim()
                    .to_string()
            })
            .unwrap_or_else(|| "unknown".into());
        Ok(Self {
            docker,
            runtime,
            endpoint,
            name,
        })
    }

    /// The container named `name` (a name, an id or its prefix, or a compose service name),
    /// which must be running.
    pub fn running(&self, name: &str) -> Result<ContainerFacts, ContainerError> {
        let facts = self.inspect(name)?;
        if facts.state != "running" {
            return Err(ContainerError::NotRunning {
                name: name.to_string(),
                state: facts.state,
            });
        }
        Ok(facts)
    }

    /// What the engine says of `name` now, running or not.
    pub fn inspect(&self, name: &str) -> Result<ContainerFacts, ContainerError> {
        match self.inspect_exact(name) {
            Err(ContainerError::NoSuchContainer { .. }) => {
                let id = self.compose_service(name)?;
                self.inspect_exact(&id)
            }
            other => other,
        }
    }

    fn inspect_exact(&self, name: &str) -> Result<ContainerFacts, ContainerError> {
        let response = self
            .runtime
            .block_on(self.docker.inspect_container(name, None))
            .map_err(|e| self.error(name, e))?;
        Ok(self.facts(response))
    }

    /// The one running container of compose service `service`.
    fn compose_service(&self, service: &str) -> Result<String, ContainerError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("com.docker.compose.service={service}")],
        )]);
        let options = ListContainersOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let found = self
            .runtime
            .block_on(self.docker.list_containers(Some(options)))
            .unwrap_or_default();
        match found.as_slice() {
            [one] => one.id.clone().ok_or_else(|| self.missing(service)),
            [] => Err(self.missing(service)),
            many => Err(ContainerError::Ambiguous {
                name: service.to_string(),
                matches: many
                    .iter()
                    .flat_map(|c| c.names.iter().flatten())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    fn missing(&self, name: &str) -> ContainerError {
        ContainerError::NoSuchContainer {
            name: name.to_string(),
            endpoint: self.endpoint.clone(),
        }
    }

    fn error(&self, name: &str, e: ApiError) -> ContainerError {
        match e {
            ApiError::DockerResponseServerError {
                status_code: 404, ..
            } => self.missing(name),
            e => ContainerError::Api {
                name: name.to_string(),
                endpoint: self.endpoint.clone(),
                reason: api_reason(&e),
            },
        }
    }

    fn facts(&self, r: ContainerInspectResponse) -> ContainerFacts {
        let state = r.state.unwrap_or_default();
        let host = r.host_config.unwrap_or_default();
        let config = r.config.unwrap_or_default();
        let label = |k: &str| config.labels.as_ref().and_then(|l| l.get(k).cloned());
        let status = state
            .status
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                if state.running == Some(true) {
                    "running".into()
                } else {
                    "not running".into()
                }
            });
        let state_text = match (status.as_str(), state.exit_code) {
            ("exited" | "dead", Some(code)) => format!("{status}, exit code {code}"),
            _ => status,
        };
        let nonzero = |v: Option<i64>| v.filter(|&v| v != 0);
        ContainerFacts {
            id: r.id.unwrap_or_default(),
            name: r
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            image: config.image.filter(|i| !i.is_empty()),
            image_id: r.image.filter(|i| !i.is_empty() && i != "sha256:"),
            engine: self.name.clone(),
            endpoint: self.endpoint.clone(),
            pid: state.pid.unwrap_or(0).max(0) as u32,
            state: state_text,
            started_at: state.started_at,
            restart_count: r.restart_count.unwrap_or(0),
            nano_cpus: nonzero(host.nano_cpus),
            cpu_quota: nonzero(host.cpu_quota),
            cpu_period: nonzero(host.cpu_period),
            cpuset_cpus: host.cpuset_cpus.filter(|c| !c.is_empty()),
            memory_bytes: nonzero(host.memory),
            compose_project: label("com.docker.compose.project"),
            compose_service: label("com.docker.compose.service"),
        }
    }
}

/// An API error in words: the engine's own message when it sent one.
fn api_reason(e: &ApiError) -> String {
    match e {
        ApiError::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} (HTTP {status_code})"),
        e => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_first_then_the_sockets_in_order() {
        let tmp = std::env::temp_dir();
        let here = tmp.to_str().unwrap();
        assert_eq!(
            endpoint(Some("tcp://h:2375".into()), &[here]).unwrap(),
            "tcp://h:2375"
        );
        assert_eq!(
            endpoint(None, &["/no/such.sock", here]).unwrap(),
            format!("unix://{here}")
        );
        assert_eq!(
            endpoint(Some(String::new()), &["/no/such.sock"])
                .unwrap_err()
                .to_string(),
            "no Docker or Podman socket: DOCKER_HOST is not set and neither /var/run/docker.sock nor /run/podman/podman.sock exists (start Docker, run `podman system service`, or set DOCKER_HOST)"
        );
    }

    #[test]
    fn a_missing_socket_is_one_clear_line() {
        // Environment variables are process-wide: this is the only test here that sets one.
        std::env::set_var("DOCKER_HOST", "unix:///no/such/docker.sock");
        let err = Engine::connect().err().expect("no engine there");
        assert_eq!(
            err.to_string(),
            "cannot reach the container engine at unix:///no/such/docker.sock: the socket does not exist"
        );
        std::env::set_var("DOCKER_HOST", "ssh://somewhere");
        let err = Engine::connect().err().expect("unsupported");
        assert!(err.to_string().contains("is not supported"), "{err}");
        std::env::remove_var("DOCKER_HOST");
    }
}
