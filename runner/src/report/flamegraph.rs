//! Flamegraph SVGs drawn by inferno from folded stacks.

use inferno::flamegraph::{self, color::Palette, Options};

use crate::stacks::Folded;

/// Errors from drawing a flamegraph.
#[derive(Debug, thiserror::Error)]
#[error("drawing the flamegraph `{title}` failed: {message}")]
pub struct FlamegraphError {
    title: String,
    message: String,
}

/// Draws `folded` as an SVG. `count_name` names the unit of the counts (e.g. "samples", "us").
/// Colours are hashed from frame names, so the same input gives the same bytes. An empty
/// input gives an SVG that says there was nothing to draw.
pub fn render(folded: &Folded, title: &str, count_name: &str) -> Result<Vec<u8>, FlamegraphError> {
    let mut options = Options::default();
    options.title = title.to_string();
    options.count_name = count_name.to_string();
    options.colors = "java".parse::<Palette>().unwrap_or_default();
    options.hash = true;
    options.deterministic = true;
    let lines = folded.lines();
    let mut svg = Vec::new();
    if lines.is_empty() {
        return Ok(empty_svg(title));
    }
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg).map_err(
        |e| FlamegraphError {
            title: title.to_string(),
            message: e.to_string(),
        },
    )?;
    Ok(svg)
}

/// The differential flamegraph from `a` to `b` (red: more in B, blue: less), both normalised
/// to the same total.
pub fn differential(a: &Folded, b: &Folded, title: &str) -> Result<Vec<u8>, FlamegraphError> {
    let fail = |e: &dyn std::fmt::Display| FlamegraphError {
        title: title.to_string(),
        message: e.to_string(),
    };
    let mut diff = Vec::new();
    let options = inferno::differential::Options {
        normalize: true,
        ..Default::default()
    };
    inferno::differential::from_readers(
        options,
        a.to_bytes().as_slice(),
        b.to_bytes().as_slice(),
        &mut diff,
    )
    .map_err(|e| fail(&e))?;
    let mut fg = Options::default();
    fg.title = title.to_string();
    fg.deterministic = true;
    let text = String::from_utf8_lossy(&diff).into_owned();
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut fg, text.lines(), &mut svg).map_err(|e| fail(&e))?;
    Ok(svg)
}

fn empty_svg(title: &str) -> Vec<u8> {
    let title = title.replace('&', "&amp;").replace('<', "&lt;");
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n<svg version=\"1.1\" width=\"1200\" height=\"60\" xmlns=\"http://www.w3.org/2000/svg\">\
<text x=\"600\" y=\"24\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"17\">{title}</text>\
<text x=\"600\" y=\"48\" text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"12\">no samples were recorded</text></svg>\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Folded {
        let mut folded = Folded::default();
        folded.add(&["app", "main", "burn_major"], 75);
        folded.add(&["app", "main", "burn_minor"], 25);
        folded.add(&["app", "main", "syscall", "do_syscall_64_[k]"], 3);
        folded
    }

    #[test]
    fn svg_is_deterministic_and_names_frames() {
        let a = render(&fixture(), "On-CPU", "samples").unwrap();
        let b = render(&fixture(), "On-CPU", "samples").unwrap();
        assert_eq!(a, b);
        let svg = String::from_utf8(a).unwrap();
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains("burn_major (75 samples, 72.82%)"), "{svg}");
        // inferno drops the `_[k]` marker from the label and colours the frame as kernel.
        assert!(svg.contains("do_syscall_64 (3 samples"), "{svg}");
        assert!(svg.contains(">On-CPU<"));
    }

    #[test]
    fn empty_input_still_gives_an_svg() {
        let svg = String::from_utf8(render(&Folded::default(), "Off-CPU", "us").unwrap()).unwrap();
        assert!(svg.contains("no samples were recorded"));
    }
}
