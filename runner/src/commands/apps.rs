//! `runner list` and `runner verify`.

use std::process::ExitCode;

use anyhow::Context;

use crate::cpython::install::Choice;
use crate::{
    apps::{
        choose_scenarios, load_all,
        manifest::{self, apps_dir},
        scenarios::Scenarios,
        session::{Session, SessionOptions},
        verify,
    },
    host::default_cpus,
};

/// `runner list [--json]`: the apps x scenarios matrix.
pub fn list(json: bool) -> anyhow::Result<ExitCode> {
    let (_, scenarios, apps) = load_all()?;
    if json {
        let matrix: Vec<serde_json::Value> = apps
            .iter()
            .map(|a| {
                let cells: serde_json::Map<String, serde_json::Value> = scenarios
                    .all
                    .iter()
                    .map(|s| {
                        let cell = match a.unsupported_reason(&s.name) {
                            Some(reason) => {
                                serde_json::json!({"supported": false, "reason": reason})
                            }
                            None => {
                                serde_json::json!({"supported": true, "note": a.notes.get(&s.name)})
                            }
                        };
                        (s.name.clone(), cell)
                    })
                    .collect();
                serde_json::json!({"app": a.name, "framework": a.framework, "server": a.server,
                    "concurrency": a.concurrency, "scenarios": cells})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&matrix)?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = apps.iter().map(|a| a.name.len()).max().unwrap_or(4).max(4);
    let mut header = format!("{:<width$}", "app");
    for (i, _) in scenarios.all.iter().enumerate() {
        header.push_str(&format!(" {:>2}", i + 1));
    }
    println!("{header}");
    for a in &apps {
        let mut row = format!("{:<width$}", a.name);
        for s in &scenarios.all {
            row.push_str(if a.unsupported_reason(&s.name).is_some() {
                "  -"
            } else {
                "  +"
            });
        }
        println!("{row}");
    }
    println!("\nscenarios:");
    for (i, s) in scenarios.all.iter().enumerate() {
        println!("  {:>2} {:<24} {}", i + 1, s.name, s.group);
    }
    println!("\nunsupported (-):");
    for a in &apps {
        for (s, reason) in &a.unsupported {
            println!("  {:<width$} {s}: {reason}", a.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `runner verify APP [--scenario S]...`.
pub fn verify(app: &str, only: &[String], python: Option<&Choice>) -> anyhow::Result<ExitCode> {
    let dir = apps_dir();
    let scenarios = Scenarios::read(&dir)?;
    let manifest = manifest::find(app, &dir, &scenarios.names())?;
    let chosen = choose_scenarios(&manifest, &scenarios, only)?;
    let (app_cpus, client_cpus) = default_cpus();
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "runner-verify-{}-{}",
        manifest.name,
        std::process::id()
    )));
    let opts = SessionOptions {
        workers: None,
        app_cpus,
        client_cpus,
        memory: Some(2 << 30),
        run_dir: scratch.0.clone(),
        python: python.cloned(),
    };
    let session = Session::start(&manifest, &chosen, &dir, &opts, &mut |m| {
        eprintln!("runner: {m}")
    })
    .with_context(|| format!("starting {}", manifest.name))?;
    for w in &session.facts.warnings {
        eprintln!("runner: warning: {w}");
    }
    if let Some(i) = &session.facts.interpreter {
        eprintln!(
            "runner: {} runs on {}",
            manifest.name,
            crate::report::run::interpreter_line(i)
        );
    }
    let mut checks = Vec::new();
    for s in &chosen {
        checks.extend(verify::check(
            session.app.addr,
            s,
            session.database_url.as_deref(),
        ));
    }
    checks.push(verify::date_header(session.app.addr, manifest.health()));
    drop(session);
    drop(scratch);
    print!("{}", crate::report::verify::table(&manifest.name, &checks));
    Ok(if checks.iter().all(|c| c.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A scratch folder, removed however the command ends.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
