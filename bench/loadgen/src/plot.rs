//! Hand-written SVG charts: a line chart of deliveries over time and a
//! grouped bar chart.

use std::fmt::Write;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 360.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// One colour per system, in the order the suite runs them.
const COLOURS: [&str; 4] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"];

/// Draws a line chart of `series` (name, values per `step_s` seconds).
pub fn timeline(title: &str, y_label: &str, step_s: f64, series: &[(String, Vec<f64>)]) -> String {
    let points = series
        .iter()
        .map(|(_, values)| values.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let x_max = points as f64 * step_s;
    let y_max = nice_ceiling(
        series
            .iter()
            .flat_map(|(_, values)| values.iter().copied())
            .fold(0.0, f64::max),
    );
    let mut svg = open(title);
    axes(
        &mut svg,
        "seconds since the first send",
        y_label,
        x_max,
        y_max,
    );
    for (index, (name, values)) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let path: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                format!(
                    "{:.1},{:.1}",
                    x_at(i as f64 * step_s, x_max),
                    y_at(*value, y_max)
                )
            })
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            path.join(" ")
        );
        legend(&mut svg, index, name, colour);
    }
    svg.push_str("</svg>\n");
    svg
}

/// Draws a grouped bar chart: one group per label, one bar per system.
pub fn bars(
    title: &str,
    y_label: &str,
    systems: &[String],
    groups: &[(String, Vec<Option<f64>>)],
) -> String {
    let y_max = nice_ceiling(
        groups
            .iter()
            .flat_map(|(_, values)| values.iter().flatten().copied())
            .fold(0.0, f64::max),
    );
    let mut svg = open(title);
    axes(&mut svg, "", y_label, 0.0, y_max);
    let plot_width = WIDTH - LEFT - RIGHT;
    let group_width = plot_width / groups.len().max(1) as f64;
    let bar_width = group_width * 0.8 / systems.len().max(1) as f64;
    for (group_index, (label, values)) in groups.iter().enumerate() {
        let group_left = LEFT + group_index as f64 * group_width + group_width * 0.1;
        for (system_index, value) in values.iter().enumerate() {
            let Some(value) = value else {
                continue;
            };
            let x = group_left + system_index as f64 * bar_width;
            let y = y_at(*value, y_max);
            let colour = COLOURS[system_index % COLOURS.len()];
            let _ = writeln!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{} {label}: {}</title></rect>"#,
                bar_width * 0.95,
                (HEIGHT - BOTTOM - y).max(0.0),
                escape(&systems[system_index]),
                format_value(*value)
            );
        }
        let centre = group_left + group_width * 0.4;
        let _ = writeln!(
            svg,
            r#"<text x="{centre:.1}" y="{:.1}" font-size="9" text-anchor="middle">{}</text>"#,
            HEIGHT - BOTTOM + 14.0,
            escape(label)
        );
    }
    for (index, system) in systems.iter().enumerate() {
        legend(&mut svg, index, system, COLOURS[index % COLOURS.len()]);
    }
    svg.push_str("</svg>\n");
    svg
}

fn open(title: &str) -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" font-size="14" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    svg
}

fn axes(svg: &mut String, x_label: &str, y_label: &str, x_max: f64, y_max: f64) {
    let (x0, y0, x1, y1) = (LEFT, HEIGHT - BOTTOM, WIDTH - RIGHT, TOP);
    let _ = writeln!(
        svg,
        r#"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="black"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="black"/>"#
    );
    for step in 0..=4 {
        let value = y_max * f64::from(step) / 4.0;
        let y = y_at(value, y_max);
        let _ = writeln!(
            svg,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#ddd"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"#,
            x0 - 4.0,
            y + 3.0,
            format_value(value)
        );
        if x_max > 0.0 {
            let x_value = x_max * f64::from(step) / 4.0;
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{x_value:.1}</text>"#,
                x_at(x_value, x_max),
                y0 + 14.0
            );
        }
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
        (x0 + x1) / 2.0,
        HEIGHT - 12.0,
        escape(x_label)
    );
    let _ = writeln!(
        svg,
        r#"<text x="14" y="{:.1}" font-size="11" text-anchor="middle" transform="rotate(-90 14 {:.1})">{}</text>"#,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        escape(y_label)
    );
}

fn legend(svg: &mut String, index: usize, name: &str, colour: &str) {
    let y = TOP + 10.0 + index as f64 * 18.0;
    let x = WIDTH - RIGHT + 12.0;
    let _ = writeln!(
        svg,
        r#"<rect x="{x}" y="{:.1}" width="12" height="12" fill="{colour}"/>"#,
        y - 10.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{y:.1}" font-size="11">{}</text>"#,
        x + 16.0,
        escape(name)
    );
}

fn x_at(value: f64, x_max: f64) -> f64 {
    LEFT + (WIDTH - LEFT - RIGHT) * value / x_max.max(1e-9)
}

fn y_at(value: f64, y_max: f64) -> f64 {
    HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * value / y_max.max(1e-9)
}

/// The smallest 1, 2 or 5 times a power of ten at or above `value`.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|factor| factor * power)
        .find(|&nice| nice >= value)
        .unwrap_or(10.0 * power)
}

fn format_value(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.0}k", value / 1000.0)
    } else if value >= 10.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceiling_rounds_up() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(12_000.0), 20_000.0);
    }

    #[test]
    fn charts_are_closed_svg() {
        let line = timeline("t", "y", 0.1, &[("a".into(), vec![1.0, 2.0])]);
        assert!(line.starts_with("<svg") && line.ends_with("</svg>\n"));
        let bar = bars("t", "y", &["a".into()], &[("g".into(), vec![Some(1.0)])]);
        assert!(bar.contains("<rect x="));
    }
}
