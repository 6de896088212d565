//! What a chaos run shows people: the verdict, a summary table, and a
//! self-contained HTML timeline of every operation per client with the
//! fault windows shaded and any anomaly marked.
//!
//! Pure formatting: it reads the results and writes text, and must never
//! decide a verdict itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::history::{OpKind, OpRecord, Outcome};
use super::nemesis::FaultWindow;

/// Latency percentiles in milliseconds: (p50, p90, p99, max).
pub fn percentiles(mut lat_ns: Vec<u64>) -> Option<(f64, f64, f64, f64)> {
    if lat_ns.is_empty() {
        return None;
    }
    lat_ns.sort_unstable();
    let at = |q: f64| {
        let i = ((lat_ns.len() as f64 - 1.0) * q).round() as usize;
        lat_ns[i.min(lat_ns.len() - 1)] as f64 / 1e6
    };
    Some((at(0.5), at(0.9), at(0.99), at(1.0)))
}

/// The ops-by-outcome and latency table.
pub fn ops_table(ops: &[OpRecord]) -> String {
    let mut counts: BTreeMap<(usize, Outcome), usize> = BTreeMap::new();
    let kinds = [
        (OpKind::Read, "read"),
        (OpKind::Write, "write"),
        (OpKind::Cas, "cas"),
    ];
    let idx = |k: OpKind| kinds.iter().position(|(x, _)| *x == k).unwrap_or(0);
    for op in ops {
        *counts.entry((idx(op.f), op.outcome)).or_default() += 1;
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<8} {:>8} {:>8} {:>8} {:>8}   {:>8} {:>8} {:>8} {:>8}",
        "op", "total", "ok", "fail", "unknown", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    let mut totals = [0usize; 4];
    for (i, (kind, name)) in kinds.iter().enumerate() {
        let c = |o| counts.get(&(i, o)).copied().unwrap_or(0);
        let (ok, fail, unk) = (c(Outcome::Ok), c(Outcome::Fail), c(Outcome::Unknown));
        let lat: Vec<u64> = ops
            .iter()
            .filter(|o| o.f == *kind && o.outcome == Outcome::Ok)
            .map(|o| o.complete_ns.saturating_sub(o.invoke_ns))
            .collect();
        let p = percentiles(lat).map_or_else(
            || format!("{:>8} {:>8} {:>8} {:>8}", "-", "-", "-", "-"),
            |(a, b, c, d)| format!("{a:>8.1} {b:>8.1} {c:>8.1} {d:>8.1}"),
        );
        let _ = writeln!(
            s,
            "{name:<8} {:>8} {ok:>8} {fail:>8} {unk:>8}   {p}",
            ok + fail + unk
        );
        totals[0] += ok + fail + unk;
        totals[1] += ok;
        totals[2] += fail;
        totals[3] += unk;
    }
    let _ = writeln!(
        s,
        "{:<8} {:>8} {:>8} {:>8} {:>8}",
        "all", totals[0], totals[1], totals[2], totals[3]
    );
    s
}

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What the picture marks as wrong.
#[derive(Clone, Debug, Default)]
pub struct Marks {
    /// The operation that could not be linearized.
    pub blocking: Option<usize>,
    /// Operations bearing on it, and lost writes.
    pub related: Vec<usize>,
    pub caption: Option<String>,
}

/// The timeline as a self-contained HTML page (inline SVG, no scripts, no
/// external resources).
pub fn timeline_html(
    title: &str,
    verdict: &str,
    ops: &[OpRecord],
    faults: &[FaultWindow],
    leaders: &[(u64, u64, u64)],
    marks: &Marks,
) -> String {
    let end_ns = ops
        .iter()
        .map(|o| o.complete_ns)
        .chain(faults.iter().map(|f| f.end_ns))
        .max()
        .unwrap_or(1)
        .max(1);
    let secs = end_ns as f64 / 1e9;
    let left = 70.0;
    let width = (secs * 60.0).clamp(1200.0, 20000.0);
    let row_h = 14.0;
    let top = 56.0;
    let clients: usize = ops.iter().map(|o| o.client + 1).max().unwrap_or(0);
    let height = top + row_h * clients as f64 + 40.0;
    let x = |ns: u64| left + (ns as f64 / end_ns as f64) * width;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{height:.0}" font-family="monospace" font-size="10">"#,
        w = left + width + 20.0
    );
    // Fault windows first, so operations draw over them.
    for f in faults {
        let colour = match f.kind.as_str() {
            "kill" => "#d0d0d0",
            "pause" => "#cfe3f7",
            _ => "#f7d4d4",
        };
        let (x0, x1) = (x(f.start_ns), x(f.end_ns));
        let _ = write!(
            svg,
            r##"<rect x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{colour}" opacity="0.7"><title>{t}</title></rect><text x="{tx:.1}" y="{ty:.1}" fill="#803030">{t}</text>"##,
            y = top - 14.0,
            w = (x1 - x0).max(1.0),
            h = row_h * clients as f64 + 14.0,
            t = esc(&f.label),
            tx = x0 + 2.0,
            ty = top - 4.0,
        );
    }
    // Leader changes along the top.
    for &(at, term, id) in leaders {
        let lx = x(at);
        let _ = write!(
            svg,
            r##"<line x1="{lx:.1}" y1="14" x2="{lx:.1}" y2="30" stroke="#333"/><text x="{tx:.1}" y="26" fill="#333">t{term}:n{id}</text>"##,
            tx = lx + 2.0
        );
    }
    let _ = write!(svg, r#"<text x="4" y="26">leader</text>"#);
    // Client rows.
    for c in 0..clients {
        let y = top + row_h * c as f64;
        let is_final = ops.iter().any(|o| o.client == c && o.is_final);
        let name = if is_final {
            "final".to_string()
        } else {
            format!("c{c}")
        };
        let _ = write!(
            svg,
            r##"<text x="4" y="{ty:.1}">{name}</text><line x1="{left}" y1="{ly:.1}" x2="{lx:.1}" y2="{ly:.1}" stroke="#eee"/>"##,
            ty = y + row_h - 4.0,
            ly = y + row_h,
            lx = left + width
        );
    }
    let marked = |id: usize| marks.blocking == Some(id) || marks.related.contains(&id);
    for op in ops {
        let y = top + row_h * op.client as f64 + 2.0;
        let (x0, x1) = (x(op.invoke_ns), x(op.complete_ns));
        let fill = match (op.outcome, op.f) {
            (Outcome::Fail, _) => "#b0b0b0",
            (Outcome::Unknown, _) => "#f5a623",
            (Outcome::Ok, OpKind::Read) => "#4a90d9",
            (Outcome::Ok, OpKind::Write) => "#2e7d32",
            (Outcome::Ok, OpKind::Cas) => "#8e24aa",
        };
        let stroke = if marked(op.id) {
            r##" stroke="#e00000" stroke-width="2""##
        } else {
            ""
        };
        let _ = write!(
            svg,
            r#"<rect x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{fill}"{stroke}><title>{t}</title></rect>"#,
            w = (x1 - x0).max(1.5),
            h = row_h - 4.0,
            t = esc(&describe(op)),
        );
        if op.outcome == Outcome::Unknown && matches!(op.f, OpKind::Write | OpKind::Cas) {
            // An unknown write may take effect any time later.
            let _ = write!(
                svg,
                r##"<line x1="{x1:.1}" y1="{ly:.1}" x2="{x2:.1}" y2="{ly:.1}" stroke="#f5a623" stroke-dasharray="2,3" opacity="0.5"/>"##,
                ly = y + (row_h - 4.0) / 2.0,
                x2 = left + width
            );
        }
        if marked(op.id) {
            let _ = write!(
                svg,
                r##"<text x="{tx:.1}" y="{ty:.1}" fill="#e00000" font-size="14" font-weight="bold">&#9660;</text>"##,
                tx = x0 - 4.0,
                ty = y - 1.0
            );
        }
    }
    // Time axis.
    let axis_y = top + row_h * clients as f64 + 16.0;
    let step = if secs > 120.0 {
        10
    } else if secs > 30.0 {
        5
    } else {
        1
    };
    let mut s = 0;
    while (s as f64) <= secs {
        let tx = x(s * 1_000_000_000);
        let _ = write!(
            svg,
            r##"<line x1="{tx:.1}" y1="{y0:.1}" x2="{tx:.1}" y2="{y1:.1}" stroke="#999"/><text x="{lx:.1}" y="{ly:.1}">{s}s</text>"##,
            y0 = axis_y - 6.0,
            y1 = axis_y,
            lx = tx + 2.0,
            ly = axis_y + 10.0
        );
        s += step;
    }
    svg.push_str("</svg>");

    let caption = marks
        .caption
        .as_deref()
        .map(|c| format!(r#"<p class="bad">&#9660; {}</p>"#, esc(c)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>{t}</title>
<style>body{{font-family:sans-serif;margin:16px}} .bad{{color:#c00;font-weight:bold}} .key span{{display:inline-block;width:12px;height:10px;margin:0 4px 0 12px}} .wrap{{overflow-x:auto;border:1px solid #ddd}}</style>
</head><body>
<h2>{t}</h2>
<p><b>{v}</b></p>
{caption}
<p class="key">ok:<span style="background:#4a90d9"></span>read<span style="background:#2e7d32"></span>write<span style="background:#8e24aa"></span>cas<span style="background:#b0b0b0"></span>failed (not applied)<span style="background:#f5a623"></span>unknown (dotted: may apply later)
&nbsp; faults:<span style="background:#f7d4d4"></span>partition<span style="background:#d0d0d0"></span>kill<span style="background:#cfe3f7"></span>pause</p>
<p>Hover over an operation for its details. Top row: the term and leader each time a new leader was seen.</p>
<div class="wrap">{svg}</div>
</body></html>
"#,
        t = esc(title),
        v = esc(verdict),
    )
}

/// One operation as a line of text.
pub fn describe(op: &OpRecord) -> String {
    let show = |v: &Option<String>| {
        v.as_deref()
            .map_or("absent".to_string(), |s| format!("{s:?}"))
    };
    let what = match op.f {
        OpKind::Read if op.outcome == Outcome::Ok => {
            format!("read {} -> {}", op.key, show(&op.value))
        }
        OpKind::Read => format!("read {}", op.key),
        OpKind::Write => format!("write {} = {}", op.key, show(&op.value)),
        OpKind::Cas => format!(
            "cas {} {} -> {}",
            op.key,
            show(&op.expected.clone().unwrap_or(None)),
            show(&op.value)
        ),
    };
    let mut s = format!(
        "op {} client {} node {}: {what} [{:?}] {:.3}s..{:.3}s",
        op.id,
        op.client,
        op.node,
        op.outcome,
        op.invoke_ns as f64 / 1e9,
        op.complete_ns as f64 / 1e9
    );
    if op.stale {
        s.push_str(" (stale read)");
    }
    if let Some(cur) = &op.current {
        let _ = write!(s, " current={}", show(cur));
    }
    if let Some(e) = &op.error {
        let _ = write!(s, " ({e})");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: usize, client: usize, f: OpKind, outcome: Outcome, t: (u64, u64)) -> OpRecord {
        OpRecord {
            id,
            client,
            node: 1,
            answered_by: None,
            key: "k0".into(),
            f,
            value: Some(format!("c{client}-{id}")),
            expected: None,
            current: None,
            outcome,
            invoke_ns: t.0,
            complete_ns: t.1,
            status: None,
            error: None,
            stale: false,
            is_final: false,
        }
    }

    #[test]
    fn percentiles_pick_ranks() {
        assert_eq!(percentiles(vec![]), None);
        let (p50, p90, p99, max) =
            percentiles((1..=100).map(|i| i * 1_000_000).collect()).expect("non-empty");
        assert_eq!(
            (p50.round(), p90.round(), p99.round(), max),
            (51.0, 90.0, 99.0, 100.0)
        );
    }

    #[test]
    fn table_counts_by_kind_and_outcome() {
        let ops = vec![
            op(0, 0, OpKind::Read, Outcome::Ok, (0, 2_000_000)),
            op(1, 0, OpKind::Write, Outcome::Unknown, (0, 1)),
            op(2, 1, OpKind::Write, Outcome::Ok, (0, 1)),
            op(3, 1, OpKind::Cas, Outcome::Fail, (0, 1)),
        ];
        let t = ops_table(&ops);
        let line = |name: &str| {
            t.lines()
                .find(|l| l.starts_with(name))
                .map(|l| l.split_whitespace().take(5).collect::<Vec<_>>().join(" "))
        };
        assert_eq!(line("read").as_deref(), Some("read 1 1 0 0"));
        assert_eq!(line("write").as_deref(), Some("write 2 1 0 1"));
        assert_eq!(line("cas").as_deref(), Some("cas 1 0 1 0"));
        assert_eq!(line("all").as_deref(), Some("all 4 2 1 1"));
        assert!(t.contains("2.0"), "{t}");
    }

    #[test]
    fn timeline_marks_anomalies_and_escapes_text() {
        let mut ops = vec![
            op(0, 0, OpKind::Write, Outcome::Ok, (0, 1_000_000)),
            op(1, 1, OpKind::Read, Outcome::Ok, (2_000_000, 3_000_000)),
        ];
        ops[1].value = Some("<script>".into());
        let faults = vec![FaultWindow {
            label: "isolate node 1".into(),
            kind: "partition".into(),
            start_ns: 0,
            end_ns: 2_000_000,
            nodes: vec![1],
            error: None,
            links: Vec::new(),
        }];
        let marks = Marks {
            blocking: Some(1),
            related: vec![0],
            caption: Some("stale read".into()),
        };
        let html = timeline_html("run", "FAIL", &ops, &faults, &[(0, 1, 2)], &marks);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert_eq!(html.matches("stroke=\"#e00000\"").count(), 2);
        assert!(html.contains("isolate node 1"));
        assert!(html.contains("t1:n2"));
        assert!(html.contains("stale read"));
        let clean = timeline_html("run", "PASS", &ops, &faults, &[], &Marks::default());
        assert!(!clean.contains("#e00000"));
    }
}
