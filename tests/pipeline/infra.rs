//! `infra/` against the code: the Grafana dashboard and the Prometheus alert rules use
//! only metrics the code exports, the dashboard shows every one of them, and the rules
//! pass `promtool check rules` and their unit tests (`promtool test rules`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::available;

fn infra() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("infra")
}

fn exported() -> BTreeSet<&'static str> {
    ingest::metrics::ALL
        .iter()
        .chain(loader::metrics::ALL.iter())
        .copied()
        .collect()
}

/// Metric names a file mentions (`exposures_…`; histogram series folded onto their metric).
fn mentioned(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut names = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("exposures_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let preceded_by_word = rest[..start].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        if !preceded_by_word {
            let metric = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            names.insert(metric.to_owned());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn dashboard_and_alerts_use_only_exported_metrics_and_the_dashboard_shows_all() {
    let exported = exported();
    let files = [
        "grafana/exposures.json",
        "prometheus/alerts.yml",
        "prometheus/alerts_test.yml",
    ];
    for file in files {
        let path = infra().join(file);
        let names = mentioned(&path);
        assert!(!names.is_empty(), "{file} mentions no metric");
        let unknown: Vec<&String> = names.iter().filter(|n| !exported.contains(n.as_str())).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics the code does not export: {unknown:?}"
        );
    }
    let dashboard = mentioned(&infra().join("grafana/exposures.json"));
    let missing: Vec<&&str> = exported.iter().filter(|m| !dashboard.contains(**m)).collect();
    assert!(missing.is_empty(), "the dashboard does not show {missing:?}");
    let parsed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(infra().join("grafana/exposures.json")).expect("read"))
            .expect("the dashboard is JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() > 10));
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let promtool = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available("promtool", promtool, "apt-get install prometheus") {
        return;
    }
    let dir = infra().join("prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ] {
        let output = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool runs");
        assert!(
            output.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
