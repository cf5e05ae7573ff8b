//! Running targets runner did not start: real Podman containers found through the Docker
//! Engine API (Podman's own service on a socket of each test's), profiled, diagnosed, probed
//! and benched as a user of a compose stack would. The containers' roots are bind mounts of
//! this machine's /usr and /etc (there is no registry here); a pyenv CPython mounted at
//! /opt/python gives a container another Python than the host's.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use common::*;
use serde_json::Value;

/// Podman as the tests run it: runc, because crun refuses hybrid cgroup hierarchies, and the
/// cgroupfs manager (no systemd).
fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.args(["--runtime", "runc", "--cgroup-manager=cgroupfs"]);
    cmd
}

/// Podman serving the Docker Engine API on a socket of one test's own; the containers it
/// ran are removed, and the service stopped, when it is dropped.
struct Engine {
    service: Child,
    socket: PathBuf,
    rootfs: PathBuf,
    prefix: String,
    containers: Vec<String>,
}

impl Engine {
    fn start(test: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("containers")
            .join(test);
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        for d in [
            "usr",
            "etc",
            "tmp",
            "proc",
            "sys",
            "dev",
            "root",
            "srv",
            "opt/python",
            "app",
        ] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        for (link, to) in [
            ("bin", "usr/bin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
            ("sbin", "usr/sbin"),
        ] {
            std::os::unix::fs::symlink(to, rootfs.join(link)).unwrap();
        }
        let socket = dir.join("api.sock");
        let service = podman()
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("podman runs (cargo xtask setup installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "podman's API socket never came up"
            );
            sleep(Duration::from_millis(50));
        }
        Self {
            service,
            socket,
            rootfs,
            prefix: format!("runner-test-{test}-{}", std::process::id()),
            containers: Vec::new(),
        }
    }

    fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// `runner ARGS` talking to this engine.
    fn runner(&self) -> Command {
        let mut cmd = runner();
        cmd.env("DOCKER_HOST", self.docker_host());
        cmd
    }

    /// Runs a container named `<prefix>-NAME` in the background, with the host's network,
    /// /usr and /etc, and `extra` options of `podman run`; returns its full name.
    fn run(&mut self, name: &str, extra: &[&str], argv: &[&str]) -> String {
        let name = format!("{}-{name}", self.prefix);
        let output = podman()
            .args(["run", "-d", "--name", &name, "--network", "host"])
            // podman's default ulimits need CAP_SYS_RESOURCE; these are within the current ones.
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1000:1000",
            ])
            .args(["-v", "/usr:/usr:ro", "-v", "/etc:/etc:ro"])
            .args(extra)
            .arg("--rootfs")
            .arg(&self.rootfs)
            .args(argv)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "podman run {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.containers.push(name.clone());
        name
    }

    /// A field of `podman inspect`.
    fn inspect(&self, name: &str, format: &str) -> String {
        let output = podman()
            .args(["inspect", name, "--format", format])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    fn pid(&self, name: &str) -> u32 {
        self.inspect(name, "{{.State.Pid}}").parse().unwrap()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for name in &self.containers {
            let _ = podman().args(["rm", "-f", "-t", "0", name]).output();
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.service.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.service.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `http://127.0.0.1:PORT/PATH` answers 200.
fn wait_http(port: u16, path: &str) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let mut head = [0u8; 12];
            if s.read_exact(&mut head).is_ok() && head.ends_with(b"200") {
                return;
            }
        }
        assert!(Instant::now() < deadline, "nothing answered on port {port}");
        sleep(Duration::from_millis(100));
    }
}

fn workloads() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads")
}

/// pyenv's CPython builds newer than the host's 3.11 (/usr/bin/python3), newest first.
fn pyenv_pythons() -> Vec<(PathBuf, String)> {
    let found: Vec<(PathBuf, String)> = ["3.13.0", "3.12.1"]
        .iter()
        .map(|v| {
            (
                PathBuf::from("/root/.pyenv/versions").join(v),
                v[..4].to_string(),
            )
        })
        .filter(|(dir, _)| dir.join("bin/python3").exists())
        .collect();
    assert!(
        !found.is_empty(),
        "the container tests need pyenv's CPython 3.13.0 or 3.12.1 under /root/.pyenv/versions"
    );
    found
}

/// A container running tests/workloads/async_app.py on pyenv CPython `python`, mounted at
/// /opt/python (a path the host does not have); returns its name and port.
fn async_app(engine: &mut Engine, name: &str, python: &Path, extra: &[&str]) -> (String, u16) {
    let port = free_port();
    let mut options = vec![
        "-v".to_string(),
        format!("{}:/opt/python:ro", python.display()),
        "-v".to_string(),
        format!("{}:/app:ro", workloads().display()),
        "-e".to_string(),
        "LD_LIBRARY_PATH=/opt/python/lib".to_string(),
    ];
    options.extend(extra.iter().map(|s| s.to_string()));
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    let name = engine.run(
        name,
        &options,
        &[
            "/opt/python/bin/python3",
            "/app/async_app.py",
            &port.to_string(),
        ],
    );
    wait_http(port, "/ping");
    (name, port)
}

fn results(test: &str) -> PathBuf {
    fresh_dir("container-results", test)
}

fn ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: {}\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// 1-based number of the line of `file` containing `needle`.
fn line_of(file: &Path, needle: &str) -> u64 {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in {}", file.display())) as u64
        + 1
}

/// The line of a frame `name (file.py:LINE)`.
fn frame_line(frame: &str) -> Option<u64> {
    frame.rsplit_once(':')?.1.strip_suffix(')')?.parse().ok()
}

/// The container is running as it was: same first process, no restart.
fn untouched(engine: &Engine, name: &str, pid: u32) {
    assert_eq!(engine.inspect(name, "{{.State.Status}}"), "running");
    assert_eq!(engine.pid(name), pid, "{name} kept its process");
    assert_eq!(engine.inspect(name, "{{.RestartCount}}"), "0");
}

#[test]
fn profile_a_python_container_on_its_own_cpython() {
    let _machine = exclusive();
    let mut engine = Engine::start("profile-py");
    let (python, version) = pyenv_pythons().remove(0);
    let (name, port) = async_app(&mut engine, "py", &python, &[]);
    let pid = engine.pid(&name);
    // A busy process outside the container: the probes must not count it.
    let outsider = Background::spawn(&mut Command::new(workload("outsider")));
    let out = results("profile-py");
    let output = engine
        .runner()
        .args(["profile", "--container", &name, "--url"])
        .arg(format!("http://127.0.0.1:{port}/cpu"))
        .args(["-d", "3s", "--warmup", "0", "-c", "2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    drop(outsider);
    ok(&output, "runner profile --container");
    let dir = only_dir(&out);
    let summary = json(&dir, "summary.json");
    assert_eq!(summary["status"], "ok", "{summary}");
    assert!(summary["load"]["ok"].as_u64().unwrap() > 0);

    // The container's own CPython, read through its root: /opt/python is not on the host.
    let py = &summary["probes"]["python"]["processes"];
    assert_eq!(py.as_array().unwrap().len(), 1, "{py}");
    assert_eq!(py[0]["version"], version.as_str(), "{py}");
    let module = py[0]["module"].as_str().unwrap();
    assert!(module.starts_with("/opt/python/lib/libpython"), "{module}");
    assert!(!Path::new(module).exists(), "the host has no {module}");

    // Python frames from inside the container, with their lines.
    let app = workloads().join("async_app.py");
    let def = line_of(&app, "def burn_cpu");
    let oncpu = read(&dir, "oncpu.folded");
    let burn = folded_sum(&oncpu, |s| {
        s.split(';').any(|f| {
            f.starts_with("burn_cpu (async_app.py:")
                && frame_line(f).is_some_and(|l| (def..def + 6).contains(&l))
        })
    });
    assert!(
        burn * 2 > folded_sum(&oncpu, |_| true),
        "most samples in burn_cpu's lines:\n{oncpu}"
    );
    assert!(oncpu.contains("handle_cpu (async_app.py:"), "{oncpu}");

    // The cgroup filter: nothing of the busy process outside.
    assert_eq!(
        folded_sum(&oncpu, |s| s.starts_with("outsider")),
        0,
        "{oncpu}"
    );
    let processes = summary["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 1, "{processes:?}");
    // In-container PIDs beside host PIDs.
    assert_eq!(processes[0]["pid"], pid);
    assert_eq!(processes[0]["ns_pid"], 1);
    let csv = read(&dir, "resources.csv");
    assert!(
        csv.lines()
            .any(|l| l.starts_with(|c: char| c.is_ascii_digit())
                && l.contains(&format!(",{pid},"))
                && l.ends_with(",1")),
        "{csv}"
    );
    // The container's cgroup counted its CPU time, from its own counters.
    let cgroup = &summary["resources"]["cgroup"];
    let id = engine.inspect(&name, "{{.Id}}");
    assert!(cgroup["path"].as_str().unwrap().contains(&id), "{cgroup}");
    let cpu_s = cgroup["cpu_ns"].as_u64().unwrap() as f64 / 1e9;
    assert!(cpu_s > 0.2, "the app burned CPU: {cgroup}");
    assert!(
        cgroup["memory_bytes"].as_u64().unwrap() > 1 << 20,
        "{cgroup}"
    );

    // run.json records what the target was.
    let run = json(&dir, "run.json");
    let t = &run["target"];
    assert_eq!(t["kind"], "container");
    assert_eq!(t["container"]["id"], id.as_str());
    assert_eq!(t["container"]["name"], name.as_str());
    assert_eq!(t["container"]["restart_count"], 0);
    assert!(t["container"]["engine"]
        .as_str()
        .unwrap()
        .starts_with("podman"));
    assert_eq!(t["processes"][0]["ns_pid"], 1);
    assert!(run.get("app").is_none(), "{run}");
    let md = read(&dir, "report.md");
    assert!(
        md.contains("## Target") && md.contains("| PID | PID inside |"),
        "{md}"
    );

    // The same container named by its cgroup.
    let out = results("profile-cgroup");
    let output = engine
        .runner()
        .args([
            "profile",
            "--cgroup",
            cgroup["path"].as_str().unwrap(),
            "--url",
        ])
        .arg(format!("http://127.0.0.1:{port}/cpu"))
        .args(["-d", "2s", "--warmup", "0", "-c", "2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    ok(&output, "runner profile --cgroup");
    let summary = json(&only_dir(&out), "summary.json");
    assert_eq!(summary["target"]["kind"], "cgroup");
    assert_eq!(summary["processes"][0]["ns_pid"], 1);
    assert!(summary["resources"]["cgroup"]["cpu_ns"].as_u64().unwrap() > 0);
    assert!(read(&only_dir(&out), "oncpu.folded").contains("burn_cpu (async_app.py:"));
    untouched(&engine, &name, pid);
}

#[test]
fn diagnose_names_the_blocking_handler_inside_a_container() {
    let _machine = exclusive();
    let mut engine = Engine::start("diagnose");
    // The other pyenv CPython than the profile test's, when there are two.
    let (python, _) = pyenv_pythons().pop().unwrap();
    // Named as docker compose names it: the service name finds the container.
    let service = format!("{}-api", engine.prefix);
    let label = format!("com.docker.compose.service={service}");
    let (name, port) = async_app(&mut engine, "py", &python, &["--label", &label]);
    let pid = engine.pid(&name);
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let out = results("diagnose");
    let output = engine
        .runner()
        .args(["diagnose", "--container", &service])
        .args(["--url", &url("/fetch"), "--url", &url("/ok")])
        .args(["-d", "2s", "--warmup", "0", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    ok(&output, "runner diagnose --container");
    let d = json(&only_dir(&out), "diagnosis.json");
    let entry = |u: &str| {
        d["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["target"] == u)
            .unwrap_or_else(|| panic!("no entry {u}: {d}"))
            .clone()
    };
    let fetch = entry(&url("/fetch"));
    assert_eq!(fetch["flagged"], true, "{fetch:#}");
    let worst = &fetch["culprits"][0];
    assert_eq!(worst["cause"], "blocking", "{worst:#}");
    let frame = worst["frame"].as_str().unwrap();
    assert!(
        frame.starts_with("handle_fetch (async_app.py:"),
        "{worst:#}"
    );
    assert_eq!(
        frame_line(frame),
        Some(line_of(
            &workloads().join("async_app.py"),
            "urllib.request.urlopen(SLOW_URL"
        )),
        "{worst:#}"
    );
    assert_eq!(entry(&url("/ok"))["flagged"], false, "{d}");
    assert_eq!(d["target"]["container"]["name"], name.as_str());
    assert_eq!(
        d["target"]["container"]["compose_service"],
        service.as_str()
    );
    assert_eq!(d["target"]["processes"][0]["ns_pid"], 1);

    // `runner probe` records the same container while loading it.
    let out = results("probe");
    let output = engine
        .runner()
        .args(["probe", "--container", &service, "--url", &url("/cpu")])
        .args(["-d", "2s", "-c", "2", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    ok(&output, "runner probe --container --url");
    let probe = json(&out, "probe.json");
    assert_eq!(
        probe["target"]["running"]["container"]["name"],
        name.as_str()
    );
    assert_eq!(probe["target"]["processes"][0]["ns_pid"], 1, "{probe}");
    assert!(probe["load"]["ok"].as_u64().unwrap() > 0, "{probe}");
    assert!(probe["cgroup_resources"][0]["cpu_ns"].as_u64().unwrap() > 0);
    assert!(read(&out, "oncpu.folded").contains("burn_cpu (async_app.py:"));
    assert!(out.join("load.json").exists());
    untouched(&engine, &name, pid);
}

#[test]
fn gunicorn_workers_respawned_inside_a_container_are_followed() {
    let _machine = exclusive();
    let mut engine = Engine::start("gunicorn");
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let app_dir = format!("{}:/app:ro", workloads().display());
    // Two workers, each replaced after 100 requests: new processes during the run.
    let name = engine.run(
        "gunicorn",
        &["-v", &app_dir],
        &[
            "/usr/bin/python3",
            "-m",
            "gunicorn",
            "-w",
            "2",
            "--max-requests",
            "100",
            "--max-requests-jitter",
            "0",
            "-b",
            &bind,
            "--chdir",
            "/app",
            "wsgi_app:app",
        ],
    );
    wait_http(port, "/");
    let master = engine.pid(&name);
    let out = results("gunicorn");
    let output = engine
        .runner()
        .args(["profile", "--container", &name, "--url"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .args(["-d", "4s", "--warmup", "0", "-c", "4", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    ok(&output, "runner profile --container (gunicorn)");
    let dir = only_dir(&out);
    let summary = json(&dir, "summary.json");
    assert_eq!(summary["status"], "ok", "{summary}");
    let requests = summary["load"]["ok"].as_u64().unwrap();
    assert!(
        requests > 400,
        "enough requests to replace workers: {requests}"
    );
    let at_start: Vec<u64> = json(&dir, "run.json")["target"]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(at_start.len(), 3, "master and two workers: {at_start:?}");
    let processes = summary["processes"].as_array().unwrap();
    let respawned: Vec<&Value> = processes
        .iter()
        .filter(|p| !at_start.contains(&p["pid"].as_u64().unwrap()))
        .collect();
    assert!(
        !respawned.is_empty(),
        "workers started during the run: {processes:?}"
    );
    // Every process has its PID inside the container: the master is 1, workers later.
    for p in processes {
        let inner = p["ns_pid"].as_u64().unwrap();
        assert_eq!(inner == 1, p["pid"] == master, "{p}");
    }
    // The respawned workers' Python stacks were walked and named.
    let walked: Vec<u64> = summary["probes"]["python"]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["stacks"].as_u64().unwrap() > 0)
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert!(
        respawned
            .iter()
            .any(|p| walked.contains(&p["pid"].as_u64().unwrap())),
        "respawned workers {respawned:?} among the walked {walked:?}"
    );
    let wsgi = workloads().join("wsgi_app.py");
    let def = line_of(&wsgi, "def work");
    let oncpu = read(&dir, "oncpu.folded");
    assert!(
        oncpu.lines().any(|l| l.split(';').any(|f| {
            f.starts_with("work (wsgi_app.py:")
                && frame_line(f).is_some_and(|n| (def..def + 6).contains(&n))
        })),
        "{oncpu}"
    );

    // The master's PID finds the workers it has now and those it forks later.
    let out = results("gunicorn-pid");
    let output = engine
        .runner()
        .args(["profile", "--pid", &master.to_string(), "--url"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .args(["-d", "2s", "--warmup", "0", "-c", "4", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    ok(&output, "runner profile --pid (gunicorn master)");
    let dir = only_dir(&out);
    let summary = json(&dir, "summary.json");
    assert_eq!(summary["target"]["kind"], "pid");
    let walked = summary["probes"]["python"]["processes"].as_array().unwrap();
    assert!(
        walked
            .iter()
            .filter(|p| p["pid"] != master && p["stacks"].as_u64().unwrap() > 0)
            .count()
            >= 2,
        "the workers' stacks: {walked:?}"
    );
    assert!(read(&dir, "oncpu.folded").contains("work (wsgi_app.py:"));
    untouched(&engine, &name, master);
}

/// Builds the axum app as its app.toml says (frame pointers, its own target dir).
fn axum_binary() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "axum-app",
            "--target-dir",
            "target/apps",
        ])
        .env("RUSTFLAGS", "-C force-frame-pointers=yes")
        .current_dir(workspace)
        .status()
        .unwrap();
    assert!(status.success(), "building the axum app");
    workspace.join("target/apps/release/axum-app")
}

#[test]
fn bench_compares_running_containers_and_warns_of_unequal_limits() {
    let _machine = exclusive();
    let axum = axum_binary();
    let mut engine = Engine::start("bench");
    let axum_port = free_port();
    let mount = format!("{}:/srv/axum-app:ro", axum.display());
    let port_env = format!("PORT={axum_port}");
    let axum_name = engine.run(
        "axum",
        &[
            "-v",
            &mount,
            "-e",
            &port_env,
            "-e",
            "WORKERS=1",
            "--cpus",
            "1",
            "--memory",
            "256m",
        ],
        &["/srv/axum-app"],
    );
    wait_http(axum_port, "/ping");
    let (python, _) = pyenv_pythons().remove(0);
    let (py_name, py_port) = async_app(&mut engine, "py", &python, &[]);
    let out = results("bench");
    std::fs::create_dir_all(&out).unwrap();
    let targets = out.join("targets.toml");
    std::fs::write(
        &targets,
        format!(
            r#"
paths = ["/ping"]

[[target]]
name = "axum"
container = "{axum_name}"
url = "http://127.0.0.1:{axum_port}"

[[target]]
name = "asyncio"
container = "{py_name}"
url = "http://127.0.0.1:{py_port}"
"#
        ),
    )
    .unwrap();
    let output = engine
        .runner()
        .args(["bench", "--targets"])
        .arg(&targets)
        .args([
            "--runs", "1", "-d", "2s", "--warmup", "0", "-c", "4", "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    ok(&output, "runner bench --targets");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning: axum and asyncio run with different limits (CPU quota 1 CPUs vs none; memory limit 256 MiB vs none)"),
        "{stderr}"
    );
    let bench_dir = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("bench-")
        })
        .expect("a bench folder");
    let bench = json(&bench_dir, "summary.json");
    let cells = bench["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2, "{bench}");
    for c in cells {
        assert_eq!(c["scenario"], "/ping");
        assert_eq!(c["status"], "ok", "{c}");
        assert!(c["rps"].as_f64().unwrap() > 0.0, "{c}");
        let run = json(&bench_dir.join(c["runs"][0].as_str().unwrap()), "run.json");
        assert_eq!(run["target"]["kind"], "container");
        if c["app"] == "axum" {
            assert_eq!(run["target"]["limits"]["cpu_quota_cores"], 1.0, "{run}");
            assert_eq!(
                run["target"]["limits"]["memory_max_bytes"],
                256u64 << 20,
                "{run}"
            );
            let oncpu = read(
                &bench_dir.join(c["runs"][0].as_str().unwrap()),
                "oncpu.folded",
            );
            assert!(oncpu.contains("axum"), "{oncpu}");
        }
    }
    assert_eq!(bench["warnings"].as_array().unwrap().len(), 1, "{bench}");
    let md = read(&bench_dir, "report.md");
    assert!(md.contains("## /ping") && md.contains("x best"), "{md}");
    assert!(
        md.contains("> Warning: axum and asyncio run with different limits"),
        "{md}"
    );
    assert!(read(&bench_dir, "report.html").contains("<table>"));
}

/// Runs `runner profile --container NAME` at PORT for up to 30 s, calls `interrupt` once the
/// load has run a few seconds, and returns runner's output, its run folder and how long it
/// took in all.
fn profile_interrupted(
    engine: &Engine,
    test: &str,
    name: &str,
    port: u16,
    interrupt: impl FnOnce(),
) -> (Output, PathBuf, Duration) {
    let out = results(test);
    let started = Instant::now();
    let child = engine
        .runner()
        .args(["profile", "--container", name, "--url"])
        .arg(format!("http://127.0.0.1:{port}/ok"))
        .args(["-d", "30s", "--warmup", "0", "-c", "4", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the load: its four connections established to the app (the host's network).
    let deadline = Instant::now() + Duration::from_secs(60);
    while established(port) < 4 {
        assert!(Instant::now() < deadline, "the load never started");
        sleep(Duration::from_millis(100));
    }
    sleep(Duration::from_secs(2));
    interrupt();
    let output = child.wait_with_output().unwrap();
    let took = started.elapsed();
    (output, only_dir(&out), took)
}

/// Established TCP connections whose local port is `port` (the server's side).
fn established(port: u16) -> usize {
    use procfs::net::TcpState;
    procfs::net::tcp()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.local_address.port() == port && e.state == TcpState::Established)
        .count()
}

/// A run that failed when its container went away, with what it measured until then.
fn failed_with_partial_results(output: &Output, dir: &Path, took: Duration, says: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        took < Duration::from_secs(25),
        "the run stopped with the container"
    );
    let last = stderr.lines().last().unwrap();
    assert!(last.starts_with(&format!("runner: {says}")), "{stderr}");
    let summary = json(dir, "summary.json");
    assert_eq!(summary["status"], "failed");
    let failure = summary["failure"].as_str().unwrap();
    assert!(
        failure.starts_with(says) && failure.contains("partial"),
        "{failure}"
    );
    assert!(
        summary["load"]["ok"].as_u64().unwrap() > 0,
        "partial results are kept"
    );
    assert!(dir.join("oncpu.folded").exists() && dir.join("report.html").exists());
    // The container's files, held open while it ran, still name its frames after it is gone.
    let symbols = &summary["probes"]["symbolization"];
    assert!(symbols["user_frames"].as_u64().unwrap() > 0, "{symbols}");
    assert_eq!(symbols["unreadable"], serde_json::json!({}), "{symbols}");
}

#[test]
fn a_container_killed_mid_run_fails_the_run_and_keeps_what_was_measured() {
    let _machine = exclusive();
    let mut engine = Engine::start("killed");
    let (python, _) = pyenv_pythons().remove(0);
    let (name, port) = async_app(&mut engine, "py", &python, &[]);
    let (output, dir, took) = profile_interrupted(&engine, "killed", &name, port, || {
        assert!(podman()
            .args(["kill", &name])
            .output()
            .unwrap()
            .status
            .success());
    });
    failed_with_partial_results(
        &output,
        &dir,
        took,
        &format!("container `{name}` stopped during the run"),
    );
    // runner did not bring it back.
    assert_ne!(engine.inspect(&name, "{{.State.Status}}"), "running");
}

#[test]
fn a_container_restarted_mid_run_fails_the_run() {
    let _machine = exclusive();
    let mut engine = Engine::start("restarted");
    let (python, _) = pyenv_pythons().remove(0);
    let (name, port) = async_app(&mut engine, "py", &python, &["--restart", "always"]);
    let pid = engine.pid(&name);
    let (output, dir, took) = profile_interrupted(&engine, "restarted", &name, port, || {
        // The app crashes; the engine starts it again.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    });
    failed_with_partial_results(
        &output,
        &dir,
        took,
        &format!("container `{name}` restarted during the run (restart count 0 -> 1"),
    );
}

#[test]
fn bad_targets_are_one_clear_line() {
    let mut engine = Engine::start("bad");
    let one_line = |output: Output, says: &str| {
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(!output.status.success(), "{says}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(says), "{says}: {stderr}");
    };
    let url = "http://127.0.0.1:9/";
    let out = results("bad");
    let missing = format!(
        "no container `no-such-container-here` at {}",
        engine.docker_host()
    );
    for command in ["profile", "diagnose", "probe"] {
        let output = engine
            .runner()
            .args([
                command,
                "--container",
                "no-such-container-here",
                "--url",
                url,
            ])
            .arg("--out")
            .arg(out.join(command))
            .output()
            .unwrap();
        one_line(output, &missing);
    }
    std::fs::create_dir_all(&out).unwrap();
    let targets = out.join("targets.toml");
    std::fs::write(
        &targets,
        "[[target]]\nname = \"gone\"\ncontainer = \"no-such-container-here\"\nurl = \"http://127.0.0.1:9\"\npaths = [\"/\"]\n",
    )
    .unwrap();
    let output = engine
        .runner()
        .args(["bench", "--targets"])
        .arg(&targets)
        .arg("--out")
        .arg(out.join("bench"))
        .output()
        .unwrap();
    one_line(output, &format!("target `gone`: {missing}"));
    // Nothing was left behind: no results folder of any of them.
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("targets.toml")],
        "{left:?}"
    );
    // A container that is not running.
    let stopped = engine.run("stopped", &[], &["/bin/true"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while engine.inspect(&stopped, "{{.State.Status}}") == "running" {
        assert!(Instant::now() < deadline);
        sleep(Duration::from_millis(100));
    }
    let output = engine
        .runner()
        .args(["profile", "--container", &stopped, "--url", url])
        .output()
        .unwrap();
    one_line(
        output,
        &format!("container `{stopped}` is not running (it is exited, exit code 0)"),
    );
    // No socket there.
    let output = runner()
        .env("DOCKER_HOST", "unix:///no/such/docker.sock")
        .args(["diagnose", "--container", "web", "--url", url])
        .output()
        .unwrap();
    one_line(
        output,
        "cannot reach the container engine at unix:///no/such/docker.sock: the socket does not exist",
    );
    // No permission on the socket (an unprivileged user; --no-probes needs no root).
    use std::os::unix::process::CommandExt;
    let output = engine
        .runner()
        .args(["profile", "--no-probes", "--container", "web", "--url", url])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    one_line(
        output,
        &format!("no permission to use {}", engine.docker_host()),
    );
}
