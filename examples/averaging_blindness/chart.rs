//! The PNG: each tenant's p99 (log scale) and success rate, worst first, against the
//! platform's average latency and success rate.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::FAILING;

/// One tenant on the chart.
pub(super) struct Point {
    pub(super) failing: bool,
    pub(super) p99_ms: f64,
    pub(super) success: f64,
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type Drawn = Result<(), Box<dyn std::error::Error>>;

const HEALTHY: RGBColor = RGBColor(60, 110, 200);
const THRESHOLD: RGBColor = RGBColor(230, 120, 0);

pub(super) fn draw(path: &str, points: &[Point], (average_ms, success): (f64, f64)) -> Drawn {
    register_font()?;
    let root = BitMapBackend::new(path, (1100, 820)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Averaging blindness: each tenant against the platform average",
        ("sans-serif", 26),
    )?;
    let (top, bottom) = root.split_vertically(430);
    latency(&top, points, average_ms)?;
    success_rate(&bottom, points, success)?;
    root.present()?;
    Ok(())
}

/// The p99 panel, on a log scale from the decade of the fastest tenant to the decade above
/// the slowest one's p99 plus a third: no empty decade, no point on the edge.
fn latency(area: &Area<'_>, points: &[Point], average_ms: f64) -> Drawn {
    let (legend, area) = area.split_vertically(34);
    let p99s = points.iter().map(|p| p.p99_ms).filter(|v| *v > 0.0);
    let fastest = p99s.clone().fold(average_ms, f64::min).max(0.1);
    let slowest = p99s.fold(average_ms, f64::max);
    let low = 10f64.powf(fastest.log10().floor());
    let high = 10f64.powf((slowest * 1.3).log10().ceil()).max(low * 10.0);
    let n = points.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&area)
        .margin_left(20)
        .margin_right(40)
        .margin_top(10)
        .x_label_area_size(10)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5..n - 0.5, (low..high).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("p99 latency (log scale)")
        .y_label_formatter(&|v| duration_label(*v))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()?;
    chart.draw_series(LineSeries::new(
        [(-0.5, average_ms), (n - 0.5, average_ms)],
        BLACK.stroke_width(2),
    ))?;
    chart.draw_series(
        points
            .iter()
            .enumerate()
            .map(|(i, p)| Circle::new((i as f64, p.p99_ms.max(low)), 5, color(p).filled())),
    )?;
    if let Some((i, p)) = points.iter().enumerate().find(|(_, p)| p.failing) {
        chart.draw_series(std::iter::once(Text::new(
            format!("{FAILING}: p99 {}", duration_label(p.p99_ms)),
            (i as f64 + 0.8, p.p99_ms),
            ("sans-serif", 17).into_font().color(&RED),
        )))?;
    }
    let average = format!("platform average: {}", duration_label(average_ms));
    draw_legend(
        &legend,
        &[
            (Key::Dot, HEALTHY, "a healthy tenant's p99"),
            (Key::Dot, RED, &format!("{FAILING} (failing)")),
            (Key::Line, BLACK, &average),
        ],
    )
}

/// The success-rate panel, from a little under the worst tenant to 100 %.
fn success_rate(area: &Area<'_>, points: &[Point], platform: f64) -> Drawn {
    let (legend, area) = area.split_vertically(34);
    let worst = points
        .iter()
        .map(|p| p.success * 100.0)
        .fold(platform * 100.0, f64::min)
        .min(95.0);
    let low = ((worst - 5.0) / 10.0).floor().max(0.0) * 10.0;
    let n = points.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&area)
        .margin_left(20)
        .margin_right(40)
        .margin_top(10)
        .margin_bottom(10)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5..n - 0.5, low..101.0)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .x_desc("tenants, worst first")
        .y_desc("success rate")
        .y_label_formatter(&|v| format!("{v:.0} %"))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()?;
    chart.draw_series(DashedLineSeries::new(
        [(-0.5, 95.0), (n - 0.5, 95.0)],
        8,
        6,
        THRESHOLD.stroke_width(2),
    ))?;
    chart.draw_series(LineSeries::new(
        [(-0.5, platform * 100.0), (n - 0.5, platform * 100.0)],
        BLACK.stroke_width(2),
    ))?;
    chart.draw_series(
        points
            .iter()
            .enumerate()
            .map(|(i, p)| Circle::new((i as f64, p.success * 100.0), 5, color(p).filled())),
    )?;
    if let Some((i, p)) = points.iter().enumerate().find(|(_, p)| p.failing) {
        chart.draw_series(std::iter::once(Text::new(
            format!("{FAILING}: {:.1} %", p.success * 100.0),
            (i as f64 + 0.8, p.success * 100.0),
            ("sans-serif", 17).into_font().color(&RED),
        )))?;
    }
    let average = format!("platform: {:.2} %", platform * 100.0);
    draw_legend(
        &legend,
        &[
            (Key::Dot, HEALTHY, "a healthy tenant's success rate"),
            (Key::Dot, RED, &format!("{FAILING} (failing)")),
            (Key::Line, BLACK, &average),
            (Key::Line, THRESHOLD, "alert under 95 %"),
        ],
    )
}

fn color(p: &Point) -> RGBColor {
    if p.failing {
        RED
    } else {
        HEALTHY
    }
}

enum Key {
    Dot,
    Line,
}

/// The legend, on a strip of its own above its panel, where it can cover no point.
fn draw_legend(strip: &Area<'_>, keys: &[(Key, RGBColor, &str)]) -> Drawn {
    let font: TextStyle<'_> = ("sans-serif", 16).into_font().into();
    let (mut x, y) = (100, 18);
    for (key, color, text) in keys {
        match key {
            Key::Dot => strip.draw(&Circle::new((x + 9, y), 5, color.filled()))?,
            Key::Line => strip.draw(&PathElement::new(
                vec![(x, y), (x + 18, y)],
                color.stroke_width(2),
            ))?,
        }
        strip.draw(&Text::new(text.to_string(), (x + 26, y - 9), font.clone()))?;
        let (width, _) = strip.estimate_text_size(text, &font)?;
        x += 26 + width as i32 + 30;
    }
    Ok(())
}

/// `50 ms`, `1 s`, `2.5 s`: never `1000.0`.
fn duration_label(ms: f64) -> String {
    let (value, unit) = if ms >= 1000.0 {
        (ms / 1000.0, "s")
    } else {
        (ms, "ms")
    };
    if value >= 10.0 || (value - value.round()).abs() < 0.05 {
        format!("{value:.0} {unit}")
    } else {
        format!("{value:.1} {unit}")
    }
}

/// The chart's text needs a font: DejaVu Sans, from Debian's `fonts-dejavu-core`.
fn register_font() -> Drawn {
    const PATHS: [&str; 2] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    ];
    let bytes = PATHS
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or("DejaVu Sans not found (apt-get install fonts-dejavu-core)")?;
    // Registered once for the process's life: the font registry wants 'static bytes.
    plotters::style::register_font("sans-serif", FontStyle::Normal, Vec::leak(bytes))
        .map_err(|_| "DejaVu Sans could not be read")?;
    Ok(())
}
