//! The dashboard's charts as SVG, drawn on the server (no scripts): stacked bars, lines and
//! markers over labelled axes — "nice" ticks (1, 2 or 5 × 10ⁿ) with gridlines, a zero line, tick
//! labels in the page's zone, axis titles with units, and a hover title on every bar.
//!
//! Each chart is drawn twice, for a wide and a narrow screen (CSS shows one): a chart scaled
//! down from a wide drawing would have 4 px labels on a phone.

use std::fmt::Write as _;

use super::pages::esc;

/// One stacked bar series.
pub struct Stack {
    pub name: String,
    pub colour: &'static str,
    /// One value per slot (0 = no bar).
    pub values: Vec<f64>,
    /// The hover text of each slot's bar.
    pub titles: Vec<String>,
    /// Where a click on each slot's bar leads (a drill-down), if anywhere; may be empty.
    pub links: Vec<Option<String>>,
}

/// A line across the slots (e.g. a baseline).
pub struct Line {
    pub name: String,
    pub colour: &'static str,
    pub values: Vec<f64>,
}

/// A dot above a slot (e.g. an alert).
pub struct Marker {
    pub slot: usize,
    pub rule: String,
    pub title: String,
}

/// What a chart shows; [`responsive`] draws it.
pub struct Plot {
    pub id: &'static str,
    /// Read out by screen readers.
    pub label: String,
    pub slots: usize,
    /// Candidate tick labels on the x axis, by slot; thinned out to fit the width.
    pub x_labels: Vec<(usize, String)>,
    /// Under the x axis, e.g. `day (Europe/Berlin)`.
    pub x_title: String,
    /// Beside the y axis, e.g. `USD per day`.
    pub y_title: String,
    pub y_format: fn(f64) -> String,
    pub stacks: Vec<Stack>,
    pub lines: Vec<Line>,
    pub markers: Vec<Marker>,
}

/// Tick values from 0 up to at least `max`, about `target` steps of 1, 2 or 5 × 10ⁿ.
pub fn ticks(max: f64, target: usize) -> Vec<f64> {
    if !(max.is_finite() && max > 0.0) {
        return vec![0.0, 1.0];
    }
    let rough = max / target.max(1) as f64;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * magnitude);
    let n = (max / step).ceil().max(1.0) as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

/// `$` amounts as tick labels: `$0`, `$0.05`, `$12`, `$1.5k`, `$2M`.
pub fn usd_tick(v: f64) -> String {
    match v.abs() {
        0.0 => "$0".to_owned(),
        a if a >= 1e6 => format!("${}M", trim(v / 1e6)),
        a if a >= 1e3 => format!("${}k", trim(v / 1e3)),
        a if a >= 10.0 => format!("${v:.0}"),
        a if a >= 1.0 => format!("${}", trim(v)),
        _ => format!("${}", trim_small(v)),
    }
}

/// Token counts as tick labels: `0`, `500`, `20k`, `1.5M`.
pub fn count_tick(v: f64) -> String {
    match v.abs() {
        a if a >= 1e9 => format!("{}G", trim(v / 1e9)),
        a if a >= 1e6 => format!("{}M", trim(v / 1e6)),
        a if a >= 1e3 => format!("{}k", trim(v / 1e3)),
        _ => format!("{v:.0}"),
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

fn trim_small(v: f64) -> String {
    let s = format!("{v:.8}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The chart drawn for a wide and a narrow screen; the page's CSS shows one of them.
pub fn responsive(plot: &Plot) -> String {
    format!(
        "<div class=\"plot\">{}{}</div>",
        render(plot, 900.0, "wide", plot.id),
        render(plot, 380.0, "narrow", &format!("{}-narrow", plot.id))
    )
}

/// One drawing `w` units wide; text is 12 units tall, which is 12 px when shown at `w` px.
fn render(plot: &Plot, w: f64, class: &str, id: &str) -> String {
    let h = if w < 500.0 { 240.0 } else { 280.0 };
    let (left, right, top, bottom) = (if w < 500.0 { 46.0 } else { 58.0 }, 10.0, 16.0, 46.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let slots = plot.slots.max(1);
    let step = plot_w / slots as f64;
    let stacked_max = (0..slots)
        .map(|s| {
            plot.stacks
                .iter()
                .map(|st| st.values.get(s).copied().unwrap_or(0.0).max(0.0))
                .sum::<f64>()
        })
        .fold(0.0, f64::max);
    let line_max = plot
        .lines
        .iter()
        .flat_map(|l| l.values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let ticks = ticks(stacked_max.max(line_max), if w < 500.0 { 4 } else { 5 });
    let top_value = ticks.last().copied().unwrap_or(1.0).max(f64::MIN_POSITIVE);
    let y = |v: f64| top + plot_h - (v.max(0.0) / top_value).min(1.0) * plot_h;
    let x = |slot: usize| left + slot as f64 * step;

    let mut o = format!(
        "<svg class=\"chart {class}\" id=\"{}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\" font-size=\"12\">",
        esc(id),
        esc(&plot.label)
    );
    // Gridlines and y tick labels; the zero line darker.
    for t in &ticks {
        let yy = y(*t);
        let class = if *t == 0.0 { "zero" } else { "grid" };
        let _ = write!(
            o,
            "<line class=\"{class}\" x1=\"{left}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\"/>\
             <text class=\"tick y\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            w - right,
            left - 6.0,
            yy + 4.0,
            esc(&(plot.y_format)(*t))
        );
    }
    let _ = write!(
        o,
        "<text class=\"axis-title y\" x=\"12\" y=\"{:.1}\" transform=\"rotate(-90 12 {:.1})\" text-anchor=\"middle\">{}</text>",
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        esc(&plot.y_title)
    );
    // Bars.
    let mut base = vec![0.0f64; slots];
    for st in &plot.stacks {
        let _ = write!(
            o,
            "<g class=\"series\" data-series=\"{}\" fill=\"{}\">",
            esc(&st.name),
            st.colour
        );
        for (s, v) in st.values.iter().enumerate().take(slots) {
            if *v <= 0.0 {
                continue;
            }
            let (y0, y1) = (y(base[s]), y(base[s] + v));
            let link = st.links.get(s).and_then(Option::as_deref);
            if let Some(href) = link {
                let _ = write!(o, "<a href=\"{}\">", esc(href));
            }
            let _ = write!(
                o,
                "<rect x=\"{:.1}\" y=\"{y1:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}</title></rect>",
                x(s) + step * 0.08,
                (step * 0.84).max(0.5),
                (y0 - y1).max(0.5),
                esc(st.titles.get(s).map_or("", String::as_str))
            );
            if link.is_some() {
                o.push_str("</a>");
            }
            base[s] += v;
        }
        o.push_str("</g>");
    }
    for l in &plot.lines {
        let points: Vec<String> = l
            .values
            .iter()
            .enumerate()
            .take(slots)
            .map(|(s, v)| format!("{:.1},{:.1}", x(s) + step / 2.0, y(*v)))
            .collect();
        let _ = write!(
            o,
            "<polyline class=\"series\" data-series=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
            esc(&l.name),
            l.colour,
            points.join(" ")
        );
    }
    for m in &plot.markers {
        let _ = write!(
            o,
            "<circle class=\"alert-marker\" data-rule=\"{}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\"><title>{}</title></circle>",
            esc(&m.rule),
            x(m.slot.min(slots - 1)) + step / 2.0,
            top + 4.0,
            esc(&m.title)
        );
    }
    // X tick labels: as many as fit, evenly spaced among the candidates.
    let fit = ((plot_w / if w < 500.0 { 70.0 } else { 90.0 }).floor() as usize).max(2);
    let every = plot.x_labels.len().div_ceil(fit).max(1);
    for (slot, label) in plot.x_labels.iter().step_by(every) {
        let xx = x(*slot) + step / 2.0;
        let _ = write!(
            o,
            "<line class=\"tick-mark\" x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
             <text class=\"tick x\" x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            top + plot_h,
            top + plot_h + 4.0,
            top + plot_h + 17.0,
            esc(label)
        );
    }
    let _ = write!(
        o,
        "<text class=\"axis-title x\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text></svg>",
        left + plot_w / 2.0,
        h - 6.0,
        esc(&plot.x_title)
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(ticks(7.41, 5), [0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(ticks(100.0, 5), [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(ticks(0.0, 5), [0.0, 1.0]);
        let small = ticks(0.003, 4);
        assert!(
            small.last().unwrap() >= &0.003 && small.len() <= 6,
            "{small:?}"
        );
        assert_eq!(usd_tick(1500.0), "$1.5k");
        assert_eq!(usd_tick(0.05), "$0.05");
        assert_eq!(usd_tick(12.0), "$12");
        assert_eq!(count_tick(20_000.0), "20k");
    }

    #[test]
    fn both_drawings_have_axes_titles_and_hover_text() {
        let plot = Plot {
            id: "t",
            label: "test".to_owned(),
            slots: 3,
            x_labels: vec![
                (0, "1 Dec".into()),
                (1, "2 Dec".into()),
                (2, "3 Dec".into()),
            ],
            x_title: "day (Europe/Berlin)".into(),
            y_title: "USD per day".into(),
            y_format: usd_tick,
            stacks: vec![Stack {
                name: "k".into(),
                colour: "#4e79a7",
                values: vec![1.0, 0.0, 3.0],
                titles: vec!["a".into(), "b".into(), "3 Dec: $3.00".into()],
                links: Vec::new(),
            }],
            lines: Vec::new(),
            markers: Vec::new(),
        };
        let html = responsive(&plot);
        assert_eq!(html.matches("<svg").count(), 2);
        for needle in [
            "class=\"zero\"",
            ">USD per day<",
            ">day (Europe/Berlin)<",
            "<title>3 Dec: $3.00</title>",
            ">$3<",
            ">1 Dec<",
        ] {
            assert!(html.contains(needle), "{needle}");
        }
    }
}
