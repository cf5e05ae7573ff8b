//! Presentation, and only here: functions from finished data to bytes or text. Run reports
//! (report.md, report.html with inline SVG charts and no scripts or network resources), the
//! terminal summaries, bench tables, the diagnosis, the flamegraphs and the load exporters.

pub mod bench;
pub mod compare;
pub mod diagnosis;
pub mod flamegraph;
pub mod load;
pub mod progress;
pub mod recording;
pub mod run;
pub mod svg;
pub mod target;
pub mod terminal;
pub mod verify;

use std::fmt::Write as _;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;max-width:1320px;color:#222}table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.charts{display:flex;flex-wrap:wrap;gap:12px}.charts svg{border:1px solid #ddd}object{width:100%;border:1px solid #ddd;margin:6px 0}code{font-size:12px}";

/// Renders the Markdown these reports write (headings, pipe tables, link lists,
/// paragraphs) as HTML. `after_h2` returns extra HTML to put after each `## ` heading.
pub fn markdown_html(md: &str, after_h2: &mut dyn FnMut(&str) -> String) -> String {
    let mut out = String::new();
    let mut in_table = false;
    for line in md.lines() {
        if line.starts_with('|') {
            if line.starts_with("|---") {
                continue;
            }
            if !in_table {
                out.push_str("<table>");
                in_table = true;
            }
            out.push_str("<tr>");
            for cell in line.trim_matches('|').split(" | ") {
                let _ = write!(out, "<td>{}</td>", escape(cell.trim().trim_matches('`')));
            }
            out.push_str("</tr>");
            continue;
        }
        if in_table {
            out.push_str("</table>");
            in_table = false;
        }
        if let Some(h) = line.strip_prefix("## ") {
            let _ = write!(out, "<h2>{}</h2>", escape(h));
            out.push_str(&after_h2(h));
        } else if let Some(h) = line.strip_prefix("# ") {
            let _ = write!(out, "<h1>{}</h1>", escape(h));
        } else if let Some(item) = line.strip_prefix("- ") {
            let (name, path) = item.split_once(": ").unwrap_or((item, ""));
            let path = path
                .split("](")
                .nth(1)
                .map(|p| p.trim_end_matches(')'))
                .unwrap_or(path);
            let _ = write!(
                out,
                "<div>{}: <a href=\"{p}\">{p}</a></div>",
                escape(name),
                p = escape(path)
            );
        } else if !line.trim().is_empty() {
            let _ = write!(
                out,
                "<p>{}</p>",
                escape(line.trim_start_matches("> ")).replace("**", "")
            );
        }
    }
    if in_table {
        out.push_str("</table>");
    }
    out
}

/// The opening of a report page.
pub fn page_head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
        escape(title)
    )
}
