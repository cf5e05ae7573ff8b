//! Builds the BPF programs in `probes/` for bpfel-unknown-none and copies the object to
//! OUT_DIR, where `src/probe/mod.rs` embeds it. The chain is the one in ../shared/toolchain.md:
//! Debian's rustc (which ships a prebuilt `core` for the BPF targets) plus bpf-linker.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const SETUP_HINT: &str =
    "run `cargo xtask setup` (it installs rustc-web, libstd-rust-web-dev-bpf and bpf-linker)";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    for watched in [
        "probes/src",
        "probes/Cargo.toml",
        "probes-common/src",
        "probes-common/Cargo.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=RUNNER_BPF_RUSTC");

    let rustc = env::var_os("RUNNER_BPF_RUSTC")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/rustc"));
    if !rustc.exists() {
        fail(&format!(
            "the BPF probes need Debian's rustc at {}, which is missing: {SETUP_HINT}",
            rustc.display()
        ));
    }
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"));
    let path = prepend_path(&cargo_home.join("bin"));
    if !on_path("bpf-linker", &path) {
        fail(&format!("bpf-linker is not installed: {SETUP_HINT}"));
    }

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("bpf");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // Nothing of the outer build (target, flags, clippy's wrapper) may leak into this one.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        let keep = key == "CARGO_HOME" || key == "CARGO_NET_OFFLINE";
        if !keep && (key.starts_with("CARGO") || key.starts_with("RUST")) {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd.current_dir(&workspace)
        .env("PATH", &path)
        .env("RUSTC", &rustc)
        .env("RUSTC_BOOTSTRAP", "1")
        .args([
            "build",
            "--release",
            "--package",
            "probes",
            "--target",
            "bpfel-unknown-none",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    let status = cmd
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run cargo for the BPF probes: {e}")));
    if !status.success() {
        fail(&format!("building the BPF probes failed ({status}); if the toolchain is incomplete, {SETUP_HINT}"));
    }
    let object = target_dir.join("bpfel-unknown-none/release/probes");
    std::fs::copy(&object, out_dir.join("probes.bpf.o"))
        .unwrap_or_else(|e| fail(&format!("cannot copy {}: {e}", object.display())));
}

fn prepend_path(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(existing) = env::var_os("PATH") {
        paths.extend(env::split_paths(&existing));
    }
    env::join_paths(paths).unwrap()
}

fn on_path(program: &str, path: &std::ffi::OsStr) -> bool {
    env::split_paths(path).any(|dir| dir.join(program).is_file())
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
