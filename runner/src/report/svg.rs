//! Small inline SVG line charts for the HTML reports: no scripts, no external resources.

use std::fmt::Write as _;

/// One line of a chart.
pub struct Series<'a> {
    pub label: &'a str,
    pub color: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// How the x axis is drawn.
#[derive(Clone, Copy)]
pub enum XAxis {
    Linear,
    /// Percentiles on a 1/(1-p) log scale; x values are percentiles (0..100).
    Percentile,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn nice(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v.abs() >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A line chart, 640x260, with axes, ticks and a legend.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    x_axis: XAxis,
    series: &[Series<'_>],
) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 260.0, 64.0, 16.0, 28.0, 40.0);
    let tx = |x: f64| match x_axis {
        XAxis::Linear => x,
        XAxis::Percentile => -(1.0 - (x / 100.0).min(0.99999)).log10(),
    };
    let points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|&(x, y)| (tx(x), y)))
        .collect();
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img"><title>{t}</title><rect width="{w}" height="{h}" fill="#fff"/><text x="{left}" y="18" font-size="13" font-family="sans-serif" font-weight="bold">{t}</text>"##,
        t = escape(title)
    );
    if points.is_empty() {
        let _ = write!(
            out,
            r##"<text x="{}" y="{}" font-size="12" font-family="sans-serif" text-anchor="middle">no data</text></svg>"##,
            w / 2.0,
            h / 2.0
        );
        return out;
    }
    let (mut x0, mut x1) = points
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let y1 = points.iter().fold(0.0f64, |a, p| a.max(p.1)) * 1.1;
    let y1 = if y1 <= 0.0 { 1.0 } else { y1 };
    if x1 <= x0 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let sx = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let sy = |y: f64| h - bottom - y / y1 * (h - top - bottom);
    let _ = write!(
        out,
        r##"<line x1="{left}" y1="{b}" x2="{r}" y2="{b}" stroke="#333"/><line x1="{left}" y1="{top}" x2="{left}" y2="{b}" stroke="#333"/>"##,
        b = h - bottom,
        r = w - right
    );
    for i in 0..=4 {
        let y = y1 * i as f64 / 4.0;
        let _ = write!(
            out,
            r##"<line x1="{left}" y1="{py:.1}" x2="{r}" y2="{py:.1}" stroke="#eee"/><text x="{lx}" y="{ty:.1}" font-size="10" font-family="sans-serif" text-anchor="end">{v}</text>"##,
            py = sy(y),
            r = w - right,
            lx = left - 4.0,
            ty = sy(y) + 3.0,
            v = nice(y)
        );
    }
    let ticks: Vec<(f64, String)> = match x_axis {
        XAxis::Linear => (0..=4)
            .map(|i| {
                let x = x0 + (x1 - x0) * i as f64 / 4.0;
                (x, nice(x))
            })
            .collect(),
        XAxis::Percentile => [0.0, 90.0, 99.0, 99.9, 99.99, 99.999]
            .iter()
            .map(|&p| (tx(p), format!("{p}%")))
            .filter(|(x, _)| *x <= x1 + 1e-9)
            .collect(),
    };
    for (x, label) in ticks {
        let _ = write!(
            out,
            r##"<text x="{px:.1}" y="{ty}" font-size="10" font-family="sans-serif" text-anchor="middle">{label}</text>"##,
            px = sx(x),
            ty = h - bottom + 14.0
        );
    }
    let _ = write!(
        out,
        r##"<text x="{cx}" y="{by}" font-size="11" font-family="sans-serif" text-anchor="middle">{xl}</text><text x="12" y="{cy}" font-size="11" font-family="sans-serif" text-anchor="middle" transform="rotate(-90 12 {cy})">{yl}</text>"##,
        cx = (left + w - right) / 2.0,
        by = h - 6.0,
        cy = (top + h - bottom) / 2.0,
        xl = escape(x_label),
        yl = escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let path: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(tx(x)), sy(y)))
            .collect();
        if path.len() == 1 {
            let _ = write!(
                out,
                r##"<circle cx="{}" r="3" fill="{}" cy="{}"/>"##,
                path[0].split(',').next().unwrap(),
                s.color,
                path[0].split(',').nth(1).unwrap()
            );
        } else {
            let _ = write!(
                out,
                r##"<polyline fill="none" stroke="{}" stroke-width="1.6" points="{}"/>"##,
                s.color,
                path.join(" ")
            );
        }
        let lx = w - right - 150.0;
        let ly = top + 14.0 * i as f64 + 4.0;
        let _ = write!(
            out,
            r##"<rect x="{lx}" y="{ry}" width="10" height="3" fill="{c}"/><text x="{tx}" y="{ty}" font-size="10" font-family="sans-serif">{l}</text>"##,
            ry = ly,
            c = s.color,
            tx = lx + 14.0,
            ty = ly + 4.0,
            l = escape(s.label)
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_deterministic_svg() {
        let s = [Series {
            label: "ok/s",
            color: "#1f77b4",
            points: vec![(0.0, 10.0), (1.0, 20.0), (2.0, 15.0)],
        }];
        let a = line_chart("Throughput", "s", "req/s", XAxis::Linear, &s);
        assert_eq!(a, line_chart("Throughput", "s", "req/s", XAxis::Linear, &s));
        assert!(a.starts_with("<svg") && a.ends_with("</svg>"));
        assert!(a.contains("<polyline"));
        let p = line_chart(
            "Latency",
            "percentile",
            "ms",
            XAxis::Percentile,
            &[Series {
                label: "c",
                color: "#000",
                points: vec![(50.0, 1.0), (99.9, 9.0)],
            }],
        );
        assert!(p.contains("99.9%"));
        assert!(line_chart("Empty", "x", "y", XAxis::Linear, &[]).contains("no data"));
    }
}
