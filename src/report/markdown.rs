//! `report.md`: the run report for a person. Headline numbers come first,
//! then per-class accuracy, the confusion matrix, the class balance of the
//! synthetic labels, the sites with their audits, and the phase timings.

use std::fmt::Write;

use super::{AuditSummary, ClassBalance, Evaluation, RunReport, RunStatus, SiteStatus};

/// Renders the whole report as Markdown.
pub fn render_markdown(report: &RunReport) -> String {
    let mut out = String::new();
    headline(&mut out, report);
    per_class(&mut out, report);
    confusion(&mut out, report);
    class_balance(&mut out, report);
    sites(&mut out, report);
    audits(&mut out, report);
    timings(&mut out, report);
    files(&mut out, report);
    out
}

fn headline(out: &mut String, report: &RunReport) {
    let _ = writeln!(out, "# Run {}\n", report.run_id);
    let status = match &report.status {
        RunStatus::Completed => "completed".to_string(),
        RunStatus::Failed { reason } => format!("**failed**: {reason}"),
        RunStatus::Interrupted { reason } => format!("**interrupted**: {reason}"),
    };
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| Status | {status} |");

    match &report.final_classifier {
        Some(eval) => {
            let _ = writeln!(
                out,
                "| c' accuracy (trained on synthetic images, real test set of {}) | **{}** |",
                eval.count,
                percent(eval.accuracy)
            );
        }
        None => {
            let _ = writeln!(out, "| c' accuracy | not evaluated |");
        }
    }
    if let Some(eval) = &report.centralised {
        let _ = writeln!(
            out,
            "| c accuracy (trained on the union of the real shards) | {} |",
            percent(eval.accuracy)
        );
    }
    if let Some(share) = report.agreement {
        let _ = writeln!(
            out,
            "| Agreement of c and c' (share of test images with the same prediction) | {} |",
            percent(share)
        );
    }

    let wall = report
        .wall_seconds()
        .map(duration)
        .unwrap_or_else(|| "unknown".into());
    let _ = writeln!(out, "| Wall time of the run | {wall} |");
    let _ = writeln!(
        out,
        "| Sites completed | {} of {} |",
        report.completed_sites(),
        report.sites.len()
    );
    let received: u64 = report.sites.iter().map(|s| s.images_received).sum();
    let _ = writeln!(out, "| Synthetic images pooled | {received} |");
    let _ = writeln!(
        out,
        "| Started, finished (UTC) | {}, {} |\n",
        report.started_at, report.finished_at
    );
}

fn per_class(out: &mut String, report: &RunReport) {
    let Some(final_eval) = &report.final_classifier else {
        return;
    };
    let _ = writeln!(out, "## Accuracy per class\n");
    let centralised = report.centralised.as_ref();
    if centralised.is_some() {
        let _ = writeln!(out, "| Class | c' | c |\n|---|---:|---:|");
    } else {
        let _ = writeln!(out, "| Class | c' |\n|---|---:|");
    }
    for (class, accuracy) in final_eval.per_class_accuracy.iter().enumerate() {
        let name = class_name(report, class);
        let mut row = format!("| {name} | {} |", percent(*accuracy));
        if let Some(c) = centralised {
            let value = c.per_class_accuracy.get(class).copied().map(percent);
            let _ = write!(row, " {} |", value.unwrap_or_else(|| "-".into()));
        }
        let _ = writeln!(out, "{row}");
    }
    out.push('\n');
}

fn confusion(out: &mut String, report: &RunReport) {
    if let Some(eval) = &report.final_classifier {
        confusion_table(out, report, "c'", eval);
    }
    if let Some(eval) = &report.centralised {
        confusion_table(out, report, "c", eval);
    }
}

fn confusion_table(out: &mut String, report: &RunReport, model: &str, eval: &Evaluation) {
    if eval.confusion.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Confusion matrix of {model}\n\nRows are the true class, columns the predicted class.\n"
    );
    let classes = eval.confusion.len();
    let mut header = String::from("| true \\ predicted |");
    let mut rule = String::from("|---|");
    for class in 0..classes {
        let _ = write!(header, " {} |", class_name(report, class));
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    for (class, row) in eval.confusion.iter().enumerate() {
        let mut line = format!("| {} |", class_name(report, class));
        for count in row {
            let _ = write!(line, " {count} |");
        }
        let _ = writeln!(out, "{line}");
    }
    out.push('\n');
}

fn class_balance(out: &mut String, report: &RunReport) {
    let real = sum_histograms(report.sites.iter().map(|s| &s.real_label_histogram));
    let synthetic = &report.pooled_label_histogram;
    if synthetic.is_empty() && real.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Class balance of the synthetic labels\n\n\
         The class of a synthetic image is the argmax of the soft label its \
         site's classifier gave it.\n"
    );
    let real_total: u64 = real.iter().sum();
    let synthetic_total: u64 = synthetic.iter().sum();
    let _ = writeln!(
        out,
        "| Class | synthetic (pooled) | share | real (all shards) | share |\n\
         |---|---:|---:|---:|---:|"
    );
    for class in 0..real.len().max(synthetic.len()) {
        let s = synthetic.get(class).copied().unwrap_or(0);
        let r = real.get(class).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "| {} | {s} | {} | {r} | {} |",
            class_name(report, class),
            share(s, synthetic_total),
            share(r, real_total)
        );
    }
    out.push('\n');
    for (label, histogram) in [("Synthetic", synthetic.as_slice()), ("Real", &real)] {
        if let Some(balance) = ClassBalance::of(histogram) {
            let _ = writeln!(
                out,
                "- {label}: largest class {} at {}, smallest class {} at {}, ratio {}.",
                class_name(report, balance.max_class),
                percent(balance.max_share),
                class_name(report, balance.min_class),
                percent(balance.min_share),
                ratio(balance.max_min_ratio())
            );
        }
    }
    out.push('\n');
}

fn sites(out: &mut String, report: &RunReport) {
    if report.sites.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Sites\n\n\
         | Site | Shard | Status | Real images | Images received | Dropped by audit \
         | Bytes received | Audit |\n\
         |---|---:|---|---:|---:|---:|---:|---|"
    );
    for site in &report.sites {
        let status = match &site.status {
            SiteStatus::Completed => "completed".to_string(),
            SiteStatus::Dropped { reason } => format!("dropped: {reason}"),
        };
        let real: u64 = site.real_label_histogram.iter().sum();
        let audit = site
            .audit
            .as_ref()
            .map(audit_headline)
            .unwrap_or_else(|| "none".into());
        let _ = writeln!(
            out,
            "| {} | {} | {status} | {real} | {} | {} | {} | {audit} |",
            site.site_id,
            site.shard_index,
            site.images_received,
            site.images_dropped_by_audit,
            bytes(site.bytes_received)
        );
    }
    out.push('\n');
}

/// The audit summary's headline numbers: a label and a JSON pointer into
/// the serialised summary, in display order.
const AUDIT_HEADLINES: [(&str, &str); 5] = [
    ("flagged", "/flagged_count"),
    (
        "share below holdout DCR p5",
        "/dcr/synthetic_share_below_holdout_p5",
    ),
    ("C_T", "/c_t"),
    ("exact duplicates", "/exact_duplicates"),
    ("near duplicates", "/near_duplicates"),
];

fn audit_headline(summary: &AuditSummary) -> String {
    let Ok(value) = serde_json::to_value(summary) else {
        return "unreadable".into();
    };
    let parts: Vec<String> = AUDIT_HEADLINES
        .iter()
        .filter_map(|(label, pointer)| {
            Some(format!("{label} {}", scalar(value.pointer(pointer)?)?))
        })
        .collect();
    if parts.is_empty() {
        "see below".into()
    } else {
        parts.join(", ")
    }
}

fn audits(out: &mut String, report: &RunReport) {
    let audited: Vec<_> = report
        .sites
        .iter()
        .filter_map(|site| Some((site, serde_json::to_value(site.audit.as_ref()?).ok()?)))
        .collect();
    if audited.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Privacy audit per site\n");
    for (site, summary) in audited {
        let _ = writeln!(out, "### {} (shard {})\n", site.site_id, site.shard_index);
        let mut rows = Vec::new();
        flatten("", &summary, &mut rows);
        let _ = writeln!(out, "| Statistic | Value |\n|---|---:|");
        for (key, value) in rows {
            let _ = writeln!(out, "| {key} | {value} |");
        }
        out.push('\n');
    }
}

/// Lists every scalar inside `value` as `(dotted.key, text)`.
fn flatten(prefix: &str, value: &serde_json::Value, rows: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, inner, rows);
            }
        }
        serde_json::Value::Array(items) if items.len() > 12 => {
            rows.push((prefix.to_string(), format!("{} values", items.len())));
        }
        serde_json::Value::Array(items) => {
            let text: Vec<String> = items.iter().filter_map(scalar).collect();
            rows.push((prefix.to_string(), text.join(", ")));
        }
        other => {
            if let Some(text) = scalar(other) {
                rows.push((prefix.to_string(), text));
            }
        }
    }
}

fn scalar(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Number(n) => Some(match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => u.to_string(),
            (_, Some(i), _) => i.to_string(),
            (_, _, Some(f)) => format!("{f:.4}"),
            _ => n.to_string(),
        }),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) => Some(format!("{} values", items.len())),
        _ => None,
    }
}

fn timings(out: &mut String, report: &RunReport) {
    if report.phases.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Timings\n\n| Phase | Wall time |\n|---|---:|");
    for phase in &report.phases {
        let _ = writeln!(out, "| {} | {} |", phase.name, duration(phase.seconds));
    }
    out.push('\n');
}

fn files(out: &mut String, report: &RunReport) {
    let _ = writeln!(
        out,
        "## Files\n\n\
         - `report.json`: this report, machine-readable.\n\
         - `manifest.toml`: the manifest of the run.\n\
         - `samples/site-<shard>.png`: synthetic images received from each site.\n\
         - `label_histograms.png`: real and synthetic classes per site.\n\
         - `losses.png`: training losses reported by the sites.\n\
         - `checkpoints/final_classifier/`: the weights of c'.\n\
         - `synthetic/`: the pooled synthetic images and their soft labels."
    );
    if report.final_classifier.is_some() {
        let _ = writeln!(out, "- `confusion.png`: confusion matrix of c'.");
    }
    if report.centralised.is_some() {
        let _ = writeln!(
            out,
            "- `confusion_centralised.png`: confusion matrix of c.\n\
             - `checkpoints/centralised_classifier/`: the weights of c."
        );
    }
}

fn sum_histograms<'a>(histograms: impl Iterator<Item = &'a Vec<u64>>) -> Vec<u64> {
    let mut total: Vec<u64> = Vec::new();
    for histogram in histograms {
        if total.len() < histogram.len() {
            total.resize(histogram.len(), 0);
        }
        for (sum, count) in total.iter_mut().zip(histogram) {
            *sum += count;
        }
    }
    total
}

fn class_name(report: &RunReport, class: usize) -> String {
    report
        .class_names
        .get(class)
        .cloned()
        .unwrap_or_else(|| format!("class {class}"))
}

fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

fn share(count: u64, total: u64) -> String {
    if total == 0 {
        "-".into()
    } else {
        percent(count as f64 / total as f64)
    }
}

fn ratio(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.2}")
    } else {
        "infinite (a class is missing)".into()
    }
}

fn bytes(count: u64) -> String {
    const KIB: f64 = 1024.0;
    const MIB: f64 = 1024.0 * 1024.0;
    let value = count as f64;
    if value >= MIB {
        format!("{:.1} MiB", value / MIB)
    } else if value >= KIB {
        format!("{:.1} KiB", value / KIB)
    } else {
        format!("{count} B")
    }
}

fn duration(seconds: f64) -> String {
    let whole = seconds.max(0.0).round() as u64;
    match whole {
        0..60 => format!("{seconds:.1} s"),
        60..3600 => format!("{}m {:02}s", whole / 60, whole % 60),
        _ => format!(
            "{}h {:02}m {:02}s",
            whole / 3600,
            whole / 60 % 60,
            whole % 60
        ),
    }
}
