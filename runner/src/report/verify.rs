//! `runner verify`'s checks, as a pass/fail table.

use crate::apps::verify::Check;

/// The checks as a pass/fail table.
pub fn table(app: &str, checks: &[Check]) -> String {
    let w1 = checks
        .iter()
        .map(|c| c.scenario.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let w2 = checks
        .iter()
        .map(|c| c.check.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "{app}: {} checks, {} failed\n",
        checks.len(),
        checks.iter().filter(|c| !c.ok).count()
    );
    for c in checks {
        out.push_str(&format!(
            "  {:<4} {:<w1$}  {:<w2$}  {}\n",
            if c.ok { "ok" } else { "FAIL" },
            c.scenario,
            c.check,
            c.detail
        ));
    }
    out
}
