//! `runner report DIR` re-renders a run's or a bench's reports from its summary.json;
//! `runner compare A B` puts two runs side by side with a differential flamegraph.

use std::{path::Path, process::ExitCode};

use anyhow::{bail, Context};

use crate::{
    report,
    results::{
        bench::{self, Bench},
        summary::{self, Summary},
    },
    run_dir::write_file,
    stacks::Folded,
};

/// `runner report DIR`.
pub fn rerender(dir: &Path) -> anyhow::Result<ExitCode> {
    let path = dir.join("summary.json");
    let text = std::fs::read(&path).with_context(|| {
        format!(
            "{} is not a run or bench folder: no summary.json",
            dir.display()
        )
    })?;
    let value: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))?;
    let write = |name: &str, text: String| write_file(&dir.join(name), text);
    match value["schema"].as_str() {
        Some(summary::SCHEMA) => {
            let summary: Summary = serde_json::from_value(value)?;
            write("report.md", report::run::markdown(&summary))?;
            write("report.html", report::run::html(&summary))?;
        }
        Some(bench::SCHEMA) => {
            let bench: Bench = serde_json::from_value(value)?;
            write("summary.csv", report::bench::csv(&bench))?;
            write("report.md", report::bench::markdown(&bench))?;
            write("report.html", report::bench::html(&bench))?;
        }
        other => bail!("{}: unknown schema {other:?}", path.display()),
    }
    println!(
        "wrote {} and {}",
        dir.join("report.md").display(),
        dir.join("report.html").display()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_summary(dir: &Path) -> anyhow::Result<Summary> {
    let path = dir.join("summary.json");
    let text = std::fs::read(&path)
        .with_context(|| format!("{} is not a run folder: no summary.json", dir.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))
}

/// `runner compare RUN_A RUN_B`: both runs side by side, and a differential on-CPU flamegraph
/// written into RUN_B.
pub fn compare(a_dir: &Path, b_dir: &Path) -> anyhow::Result<ExitCode> {
    let (a, b) = (read_summary(a_dir)?, read_summary(b_dir)?);
    let run = |d: &Path| {
        std::fs::read(d.join("run.json"))
            .ok()
            .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
    };
    for w in report::compare::warnings(&a, &b, run(a_dir).as_ref(), run(b_dir).as_ref()) {
        eprintln!("runner: warning: not like for like: {w}");
    }
    print!("{}", report::compare::table(&a, &b));
    let folded =
        |d: &Path| std::fs::read_to_string(d.join("oncpu.folded")).map(|t| Folded::parse(&t));
    let (Ok(fa), Ok(fb)) = (folded(a_dir), folded(b_dir)) else {
        println!("(no oncpu.folded in both runs: no differential flamegraph)");
        return Ok(ExitCode::SUCCESS);
    };
    let title = format!("On-CPU differential: {} (A) -> {} (B)", a.run_id, b.run_id);
    let svg = report::flamegraph::differential(&fa, &fb, &title)?;
    let name = format!(
        "diff-oncpu-vs-{}.svg",
        a_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let path = b_dir.join(&name);
    write_file(&path, svg)?;
    println!("differential flamegraph: {}", path.display());
    Ok(ExitCode::SUCCESS)
}
