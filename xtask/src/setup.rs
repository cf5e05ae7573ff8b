//! `cargo xtask setup`: installs what a fresh machine lacks, says what it does, and is a
//! quick no-op once everything is there.

use std::{path::Path, process::Command};

use anyhow::{bail, Context};

use crate::sh;

/// Debian packages: the BPF build chain of ../shared/toolchain.md, plus the tools the tests use.
const PACKAGES: &[&str] = &[
    "rustc-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "gcc",
    "libc6-dev",
    "bpftool",
    // Apps: their Python environments and their database.
    "python3-venv",
    "python3-dev",
    "postgresql",
    "libsqlite3-dev",
    // The report test opens report.html in headless Chromium.
    "chromium",
    // For `cargo xtask bench load`: the server (its http_v2 and ssl modules), its
    // certificate, and the tools to compare against (wrk links OpenSSL; h2load speaks
    // HTTP/2). oha comes from crates.io when the bench first runs.
    "nginx-light",
    "openssl",
    "wrk",
    "nghttp2-client",
    // The container tests: Podman serves the Docker Engine API; runc, because crun refuses
    // hybrid cgroup hierarchies; gunicorn for the pre-fork app inside a container.
    "podman",
    "runc",
    "python3-gunicorn",
];

/// bpf-linker, built against Debian's LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run() -> anyhow::Result<()> {
    let mut did = false;
    did |= packages()?;
    did |= bpf_linker()?;
    did |= py_spy()?;
    did |= tracefs()?;
    if !did {
        eprintln!("setup: everything is installed");
    }
    Ok(())
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn root_command(program: &str) -> Command {
    if sh::is_root() {
        Command::new(program)
    } else {
        let mut cmd = Command::new("sudo");
        cmd.arg(program);
        cmd
    }
}

fn packages() -> anyhow::Result<bool> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(false);
    }
    eprintln!("setup: installing Debian packages: {}", missing.join(" "));
    sh::run(root_command("apt-get").args(["update", "-qq"]))?;
    sh::run(
        root_command("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq"])
            .args(&missing),
    )
    .context("apt-get install")?;
    Ok(true)
}

fn cargo_bin() -> std::path::PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_else(|| "/root/.cargo".into())
        .join("bin")
}

fn bpf_linker() -> anyhow::Result<bool> {
    let linker = cargo_bin().join("bpf-linker");
    let current = Command::new(&linker)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION))
        .unwrap_or(false);
    if current {
        return Ok(false);
    }
    eprintln!("setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about a minute)");
    sh::run(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args(["--no-default-features", "--features", "llvm-22"]),
    )
    .context("cargo install bpf-linker")?;
    Ok(true)
}

/// py-spy, the reference the Python-stack tests compare against (PyPI ships it as a wheel).
const PY_SPY_VERSION: &str = "0.4.3";
/// Where the tests look for it.
pub const TOOLS_VENV: &str = "/var/cache/runner/tools";

fn py_spy() -> anyhow::Result<bool> {
    let bin = Path::new(TOOLS_VENV).join("bin/py-spy");
    let current = Command::new(&bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(PY_SPY_VERSION))
        .unwrap_or(false);
    if current {
        return Ok(false);
    }
    eprintln!("setup: installing py-spy {PY_SPY_VERSION} into {TOOLS_VENV}");
    sh::run(root_command("/usr/bin/python3").args(["-m", "venv", TOOLS_VENV]))
        .context("creating the tools venv")?;
    sh::run(root_command(&format!("{TOOLS_VENV}/bin/pip")).args([
        "install",
        "--quiet",
        &format!("py-spy=={PY_SPY_VERSION}"),
    ]))
    .context("pip install py-spy")?;
    Ok(true)
}

fn tracefs() -> anyhow::Result<bool> {
    if Path::new("/sys/kernel/tracing/events").is_dir()
        || Path::new("/sys/kernel/debug/tracing/events").is_dir()
    {
        return Ok(false);
    }
    eprintln!("setup: mounting tracefs at /sys/kernel/tracing");
    let status = root_command("mount")
        .args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"])
        .status()?;
    if !status.success() {
        bail!("mounting tracefs failed; runner probe will try again itself");
    }
    Ok(true)
}
