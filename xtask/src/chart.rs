//! The benchmark chart: one SVG of horizontal bars per measured group, so
//! the book can show the figures at a glance. Plain SVG text: a dozen bars
//! need no plotting library.

/// One bar: its label and value.
pub struct Bar {
    /// What was measured.
    pub label: String,
    /// Its value (TSC ticks per call).
    pub value: f64,
}

/// A titled group of bars, scaled to its own largest value.
pub struct Group {
    /// The group's title.
    pub title: String,
    /// Its bars.
    pub bars: Vec<Bar>,
}

const WIDTH: f64 = 720.0;
const LABEL: f64 = 230.0;
const BAR_HEIGHT: f64 = 18.0;
const GAP: f64 = 6.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG for `groups`.
pub fn svg(groups: &[Group]) -> String {
    let mut body = String::new();
    let mut y = 10.0;
    for g in groups {
        y += 18.0;
        body.push_str(&format!(
            "<text x=\"4\" y=\"{y}\" font-weight=\"bold\">{}</text>\n",
            escape(&g.title)
        ));
        y += 8.0;
        let max = g.bars.iter().map(|b| b.value).fold(0.0, f64::max);
        let room = WIDTH - LABEL - 110.0;
        for b in &g.bars {
            let w = if max > 0.0 { b.value / max * room } else { 0.0 };
            body.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n<rect x=\"{LABEL}\" y=\"{y}\" width=\"{w:.1}\" height=\"{BAR_HEIGHT}\" fill=\"#4a7ab5\"/>\n<text x=\"{:.1}\" y=\"{}\">{:.2}</text>\n",
                LABEL - 6.0,
                y + BAR_HEIGHT - 5.0,
                escape(&b.label),
                LABEL + w + 6.0,
                y + BAR_HEIGHT - 5.0,
                b.value
            ));
            y += BAR_HEIGHT + GAP;
        }
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{body}</svg>\n",
        y + 10.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_labels_are_escaped() {
        let s = svg(&[Group {
            title: "a < b".into(),
            bars: vec![
                Bar {
                    label: "raw".into(),
                    value: 1.0,
                },
                Bar {
                    label: "run time".into(),
                    value: 2.0,
                },
            ],
        }]);
        assert!(s.contains("a &lt; b"));
        assert!(s.contains("width=\"380.0\""), "{s}");
        assert!(s.contains("width=\"190.0\""), "{s}");
    }
}
