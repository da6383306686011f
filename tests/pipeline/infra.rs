//! `infra/` against the code: the Grafana dashboard and the Prometheus alert rules use
//! only metrics the code exports, the dashboard shows every one of them, and the rules
//! pass `promtool check rules` and their unit tests (`promtool test rules`).
//!
//! The deployable artifacts, checked statically (nothing can be applied here):
//! - every `.tf` file of `infra/terraform` parses as HCL (python-hcl2);
//! - checkov finds no failed check in `infra/terraform` (with its defaults, and with
//!   `create_msk = true`: tests/infra/msk.tfvars) nor in `infra/Dockerfile`, and
//!   every check skipped there carries its reason inline (`#checkov:skip=CKV_…:reason`);
//! - hadolint has no finding on `infra/Dockerfile`, and every `# hadolint ignore=` follows
//!   a comment giving the reason;
//! - `infra/compose.yaml` and the Terraform container settings use only flags and
//!   `EXPOSURES_*` variables that `exposures <stage> --help` lists (secrets only through
//!   ECS `secrets`), publish the ports those settings (or their defaults) listen on, point
//!   the image's health probe at them, and `infra/compose/prometheus.yml` scrapes them;
//!   the Dockerfile exposes the default ports.
//!
//! The Python tools: `python3 -m pip install -r tests/infra/requirements.txt`, and checkov
//! in its own virtualenv (tests/infra/requirements-checkov.txt, see .ci/run).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

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

// ---------------------------------------------------------------------------------------
// Deployable artifacts: Dockerfile, compose, Terraform
// ---------------------------------------------------------------------------------------

const STAGES: [&str; 3] = ["ingest", "sink", "load"];
const PYTHON_TOOLS: &str = "python3 -m pip install -r tests/infra/requirements.txt";
const CHECKOV_INSTALL: &str = "python3 -m venv target/checkov-venv && \
     target/checkov-venv/bin/pip install -r tests/infra/requirements-checkov.txt";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn succeeds(program: &Path, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The parsed documents of `files` (paths relative to the repository), keyed by that path,
/// through tests/infra/to_json.py (python-hcl2 for .tf, PyYAML for YAML). `None` when the
/// Python modules are missing (and allowed to be).
fn parsed(files: &[String]) -> Option<BTreeMap<String, Value>> {
    // python-hcl2 8's API; checkov's fork of the module (bc-python-hcl2), installed into the
    // same environment, overwrites it and lacks this.
    let probe = "import yaml; from hcl2.utils import SerializationOptions";
    let modules = succeeds(Path::new("python3"), &["-c", probe]);
    if !available("python-hcl2 (8.x) and PyYAML", modules, PYTHON_TOOLS) {
        return None;
    }
    let output = Command::new("python3")
        .arg("tests/infra/to_json.py")
        .args(files)
        .current_dir(repo())
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "these files do not parse:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("to_json.py prints JSON"))
}

fn terraform_files() -> Vec<String> {
    let dir = infra().join("terraform");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".tf"))
        .map(|name| format!("infra/terraform/{name}"))
        .collect();
    files.sort();
    files
}

/// What `exposures <stage> --help` documents: its flags (and which the usage line
/// requires), and for each `EXPOSURES_*` variable whether clap hides its value
/// (`[env: NAME]` without `=`: a secret).
struct Help {
    stage: &'static str,
    flags: BTreeSet<String>,
    required: BTreeSet<String>,
    env: BTreeMap<String, bool>,
    defaults: BTreeMap<String, String>,
}

impl Help {
    fn of(stage: &'static str) -> Help {
        let output = Command::new(env!("CARGO_BIN_EXE_exposures"))
            .args([stage, "--help"])
            .output()
            .expect("exposures runs");
        assert!(output.status.success(), "exposures {stage} --help failed");
        let text = String::from_utf8(output.stdout).expect("help is UTF-8");
        let option = regex::Regex::new(r"^ {2}(?:-[a-zA-Z], | {4})--[a-z0-9-]+").expect("regex");
        let flag = regex::Regex::new(r"--([a-z0-9-]+)").expect("regex");
        let env = regex::Regex::new(r"\[env: (EXPOSURES_[A-Z0-9_]+)(=?)\]").expect("regex");
        let default = regex::Regex::new(r"\[default: ([^\]]*)\]").expect("regex");
        // One block per option: its line and the description lines under it, unwrapped.
        let mut blocks: Vec<String> = Vec::new();
        for line in text.lines() {
            if option.is_match(line) {
                blocks.push(line.trim().to_owned());
            } else if let Some(block) = blocks.last_mut() {
                block.push(' ');
                block.push_str(line.trim());
            }
        }
        let usage = text
            .lines()
            .find_map(|line| line.strip_prefix("Usage: "))
            .expect("a usage line");
        let mut help = Help {
            stage,
            flags: BTreeSet::new(),
            required: flag.captures_iter(usage).map(|c| c[1].to_owned()).collect(),
            env: BTreeMap::new(),
            defaults: BTreeMap::new(),
        };
        for block in &blocks {
            let block = block.split_whitespace().collect::<Vec<_>>().join(" ");
            let name = flag.captures(&block).expect("an option line names its flag")[1].to_owned();
            if let Some(captures) = env.captures(&block) {
                help.env.insert(captures[1].to_owned(), captures[2].is_empty());
            }
            if let Some(captures) = default.captures(&block) {
                help.defaults.insert(name.clone(), captures[1].to_owned());
            }
            help.flags.insert(name);
        }
        assert!(
            help.flags.contains("help") && !help.env.is_empty(),
            "{stage} --help not understood"
        );
        help
    }

    /// The flag whose address serves this stage's `/metrics`: ingest's API, else --metrics-listen.
    fn metrics_flag(&self) -> &'static str {
        if self.stage == "ingest" {
            "listen"
        } else {
            "metrics-listen"
        }
    }

    fn env_of(&self, flag: &str) -> String {
        format!("EXPOSURES_{}", flag.to_uppercase().replace('-', "_"))
    }

    /// The port `flag` listens on, as `environment` sets it or else as the help's default;
    /// the address must take connections from outside the container.
    fn port(&self, flag: &str, environment: &BTreeMap<String, String>, place: &str) -> u16 {
        let name = self.env_of(flag);
        assert!(
            self.env.contains_key(&name),
            "exposures {} has no {name}",
            self.stage
        );
        let address = environment
            .get(&name)
            .or_else(|| self.defaults.get(flag))
            .unwrap_or_else(|| panic!("{place}: no --{flag} and no default"));
        let (host, port) = address
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{place}: {name}={address} is not HOST:PORT"));
        assert!(
            host == "0.0.0.0" || host == "[::]",
            "{place}: {name}={address} is not reachable from outside the container"
        );
        port.parse()
            .unwrap_or_else(|_| panic!("{place}: {name}={address}: bad port"))
    }

    /// Every flag the usage line requires is given: as its variable in `names` (environment
    /// and secrets), or on the `command` line.
    fn assert_sets_required(&self, names: &BTreeSet<String>, command: &[String], place: &str) {
        let missing: Vec<&String> = self
            .required
            .iter()
            .filter(|flag| {
                let on_command_line = command
                    .iter()
                    .any(|word| word.split('=').next() == Some(format!("--{flag}").as_str()));
                !names.contains(&self.env_of(flag)) && !on_command_line
            })
            .collect();
        assert!(
            missing.is_empty(),
            "{place}: `exposures {}` requires {missing:?}, which are not set",
            self.stage
        );
    }

    /// Every `EXPOSURES_*` name in `names` is one of this stage's variables.
    fn assert_knows<'a>(&self, names: impl IntoIterator<Item = &'a String>, place: &str) {
        let unknown: Vec<&String> = names
            .into_iter()
            .filter(|n| n.starts_with("EXPOSURES_") && !self.env.contains_key(*n))
            .collect();
        assert!(
            unknown.is_empty(),
            "{place} sets {unknown:?}, which `exposures {}` does not read (its --help lists {:?})",
            self.stage,
            self.env.keys().collect::<Vec<_>>()
        );
    }

    /// The image's health probe (infra/healthcheck.sh, defaults 8080 and /healthz) asks
    /// this stage on its metrics port: /healthz for ingest, /metrics (all sink and load
    /// serve) otherwise.
    fn assert_probe(&self, environment: &BTreeMap<String, String>, port: u16, place: &str) {
        let probe_port = environment.get("HEALTHCHECK_PORT").map_or("8080", String::as_str);
        let probe_path = environment
            .get("HEALTHCHECK_PATH")
            .map_or("/healthz", String::as_str);
        let expected = if self.stage == "ingest" {
            "/healthz"
        } else {
            "/metrics"
        };
        assert_eq!(
            probe_port,
            port.to_string(),
            "{place}: HEALTHCHECK_PORT is not the listening port"
        );
        assert_eq!(probe_path, expected, "{place}: HEALTHCHECK_PATH");
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn terraform_files_parse_as_hcl() {
    let files = terraform_files();
    assert!(files.len() >= 5, "infra/terraform holds {files:?}");
    let Some(documents) = parsed(&files) else {
        return;
    };
    for (file, document) in &documents {
        assert!(
            document.as_object().is_some_and(|blocks| !blocks.is_empty()),
            "{file} is empty"
        );
    }
    let blocks = |kind: &str| -> usize {
        documents
            .values()
            .filter_map(|d| d.get(kind)?.as_array().map(Vec::len))
            .sum()
    };
    assert!(blocks("resource") > 20 && blocks("variable") > 20 && blocks("output") > 5);
    // Every variable is typed, described, and in the table of infra/README.md.
    let readme = std::fs::read_to_string(infra().join("README.md")).expect("infra/README.md");
    for variables in documents.values().filter_map(|d| d["variable"].as_array()) {
        for (name, variable) in variables.iter().filter_map(Value::as_object).flatten() {
            let description = variable["description"].as_str().unwrap_or("");
            assert!(
                variable.get("type").is_some() && description.len() > 10,
                "variable {name} needs a type and a description"
            );
            assert!(
                readme.contains(&format!("| `{name}` |")),
                "infra/README.md does not document variable {name}"
            );
        }
    }
}

/// checkov's findings in `report` (one framework of its JSON output): none failed, none
/// unparsed, and each skip justified.
fn assert_checkov_report(report: &Value, target: &str) -> (u64, u64) {
    let summary = &report["summary"];
    let count = |key: &str| summary[key].as_u64().unwrap_or(0);
    let framework = report["check_type"].as_str().unwrap_or("?");
    let failed: Vec<String> = report["results"]["failed_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{} {} ({}:{})",
                c["check_id"], c["resource"], c["file_path"], c["file_line_range"]
            )
        })
        .collect();
    assert!(
        count("failed") == 0 && failed.is_empty(),
        "checkov {target} ({framework}): {} failed checks:\n{}",
        count("failed"),
        failed.join("\n")
    );
    assert_eq!(
        count("parsing_errors"),
        0,
        "checkov {target} ({framework}) could not parse files"
    );
    for skipped in report["results"]["skipped_checks"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let reason = skipped["check_result"]["suppress_comment"].as_str().unwrap_or("");
        assert!(
            reason.trim().len() >= 20 && reason != "No comment provided",
            "checkov {target}: {} on {} is skipped without a reason",
            skipped["check_id"],
            skipped["resource"]
        );
    }
    (count("passed"), count("skipped"))
}

#[test]
fn checkov_passes_terraform_and_dockerfile_with_every_skip_justified() {
    let venv = repo().join("target/checkov-venv/bin/checkov");
    let checkov = if venv.exists() {
        venv
    } else {
        PathBuf::from("checkov")
    };
    if !available("checkov", succeeds(&checkov, &["--version"]), CHECKOV_INSTALL) {
        return;
    }
    // The MSK resources have count 0 with the defaults, and checkov skips those: a second
    // pass over the Terraform with create_msk = true checks them.
    let targets: [&[&str]; 3] = [
        &["-d", "infra/terraform"],
        &["-d", "infra/terraform", "--var-file", "tests/infra/msk.tfvars"],
        &["-f", "infra/Dockerfile", "--framework", "dockerfile", "secrets"],
    ];
    for target in targets {
        let output = Command::new(&checkov)
            .args(target)
            .args(["--quiet", "--compact", "--skip-download", "--output", "json"])
            .current_dir(repo())
            .output()
            .expect("checkov runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "checkov {target:?} printed no JSON ({e}):\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        // One report per framework: an array, or one object when a single framework ran.
        let reports = match json {
            Value::Array(reports) => reports,
            report => vec![report],
        };
        let (mut passed, mut skipped) = (0, 0);
        for report in &reports {
            let (p, s) = assert_checkov_report(report, &target.join(" "));
            passed += p;
            skipped += s;
        }
        assert!(passed > 0, "checkov {target:?} checked nothing");
        assert!(output.status.success(), "checkov {target:?} failed:\n{stdout}");
        eprintln!(
            "checkov {}: {passed} passed, 0 failed, {skipped} skipped",
            target.join(" ")
        );
    }
    // Every inline skip in the sources names a check and gives a reason.
    let skip = regex::Regex::new(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?").expect("regex");
    let mut sources: Vec<String> = terraform_files();
    sources.push("infra/Dockerfile".into());
    for file in sources {
        let text = std::fs::read_to_string(repo().join(&file)).expect("read");
        for captures in skip.captures_iter(&text) {
            let reason = captures.get(2).map_or("", |m| m.as_str().trim());
            assert!(
                reason.len() >= 20,
                "{file}: checkov:skip={} without a reason",
                &captures[1]
            );
        }
    }
}

#[test]
fn hadolint_passes_the_dockerfile_and_every_ignore_gives_a_reason() {
    let present = succeeds(Path::new("hadolint"), &["--version"]);
    if !available("hadolint", present, PYTHON_TOOLS) {
        return;
    }
    let output = Command::new("hadolint")
        .args(["--no-color", "infra/Dockerfile"])
        .current_dir(repo())
        .output()
        .expect("hadolint runs");
    assert!(
        output.status.success() && output.stdout.is_empty(),
        "hadolint infra/Dockerfile:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // hadolint takes no text after `ignore=` codes, so the reason is the comment above.
    let dockerfile = std::fs::read_to_string(infra().join("Dockerfile")).expect("read");
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    for (index, line) in lines.iter().enumerate() {
        if line.starts_with("# hadolint ignore=") {
            let above = index.checked_sub(1).map_or("", |i| lines[i]);
            assert!(
                above.starts_with('#') && !above.contains("hadolint") && above.len() > 20,
                "infra/Dockerfile:{}: `{line}` without a reason in the comment above it",
                index + 1
            );
        }
    }
}

/// A compose service's `environment`, as a map (the list form `NAME=value` too).
fn compose_environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let item = text(item);
                let (name, value) = item.split_once('=').unwrap_or((item.as_str(), ""));
                (name.to_owned(), value.to_owned())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The container ports a compose service publishes.
fn compose_ports(service: &Value) -> BTreeSet<u16> {
    service["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|port| match port {
            Value::Object(long) => text(&long["target"]),
            short => {
                let short = text(short);
                let container = short.rsplit(':').next().unwrap_or_default();
                container.split('/').next().unwrap_or_default().to_owned()
            }
        })
        .map(|port| port.parse().unwrap_or_else(|_| panic!("compose port {port:?}")))
        .collect()
}

#[test]
fn compose_stages_use_real_flags_variables_and_ports_and_prometheus_scrapes_them() {
    let files = [
        "infra/compose.yaml".to_owned(),
        "infra/compose/prometheus.yml".to_owned(),
    ];
    let Some(documents) = parsed(&files) else {
        return;
    };
    let compose = &documents["infra/compose.yaml"];
    let prometheus = &documents["infra/compose/prometheus.yml"];
    let targets: BTreeSet<String> = prometheus["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .inspect(|job| {
            let path = job["metrics_path"].as_str().unwrap_or("/metrics");
            assert_eq!(
                path, "/metrics",
                "scrape job {} has another metrics_path",
                job["job_name"]
            );
        })
        .flat_map(|job| job["static_configs"].as_array().cloned().unwrap_or_default())
        .flat_map(|config| config["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| text(&target))
        .collect();
    let services = compose["services"].as_object().expect("services");
    let mut stages_seen = BTreeSet::new();
    for (name, service) in services {
        let command: Vec<String> = match &service["command"] {
            Value::Array(words) => words.iter().map(text).collect(),
            Value::String(line) => line.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        let built_here = service["build"]["dockerfile"].as_str() == Some("infra/Dockerfile");
        if !built_here {
            let env = compose_environment(service);
            assert!(
                !env.keys().any(|k| k.starts_with("EXPOSURES_")),
                "service {name} sets EXPOSURES_* but is not the exposures image"
            );
            continue;
        }
        let stage = command.first().map(String::as_str).unwrap_or("");
        let stage = STAGES
            .into_iter()
            .find(|s| *s == stage)
            .unwrap_or_else(|| panic!("service {name}: command {command:?} is not a stage"));
        stages_seen.insert(stage);
        let help = Help::of(stage);
        let place = format!("infra/compose.yaml service {name}");
        for word in &command[1..] {
            if let Some(flag) = word.strip_prefix("--") {
                let flag = flag.split('=').next().unwrap_or_default();
                assert!(
                    help.flags.contains(flag),
                    "{place}: `exposures {stage}` has no --{flag}"
                );
            }
        }
        let environment = compose_environment(service);
        help.assert_knows(environment.keys(), &place);
        help.assert_sets_required(&environment.keys().cloned().collect(), &command, &place);
        let port = help.port(help.metrics_flag(), &environment, &place);
        assert_eq!(
            compose_ports(service),
            BTreeSet::from([port]),
            "{place} must publish the port it listens on ({port}) and no other"
        );
        help.assert_probe(&environment, port, &place);
        assert!(
            targets.contains(&format!("{name}:{port}")),
            "infra/compose/prometheus.yml does not scrape {name}:{port} (it scrapes {targets:?})"
        );
    }
    assert_eq!(stages_seen, BTreeSet::from(STAGES), "compose runs each stage");
    // What compose mounts from the repository exists.
    for (name, service) in services {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let volume = text(volume);
            if let Some(source) = volume.split(':').next().filter(|s| s.starts_with("./")) {
                assert!(
                    infra().join(source).exists(),
                    "service {name} mounts missing {source}"
                );
            }
        }
    }
}

/// All `locals` blocks of the Terraform files, merged.
fn terraform_locals(documents: &BTreeMap<String, Value>) -> serde_json::Map<String, Value> {
    let mut locals = serde_json::Map::new();
    for document in documents.values() {
        for block in document["locals"].as_array().into_iter().flatten() {
            locals.extend(block.as_object().cloned().unwrap_or_default());
        }
    }
    locals
}

#[test]
fn terraform_containers_use_real_variables_secrets_and_ports() {
    let files = terraform_files();
    let Some(documents) = parsed(&files) else {
        return;
    };
    let locals = Value::Object(terraform_locals(&documents));
    let mut known = BTreeSet::new();
    for stage in STAGES {
        let help = Help::of(stage);
        let place = format!("infra/terraform (local.environment.{stage})");
        let environment: BTreeMap<String, String> = locals["environment"][stage]
            .as_object()
            .unwrap_or_else(|| panic!("{place} is missing"))
            .iter()
            .map(|(k, v)| (k.clone(), text(v)))
            .collect();
        let secrets: BTreeSet<String> = locals["secrets"][stage]
            .as_object()
            .unwrap_or_else(|| panic!("local.secrets.{stage} is missing"))
            .keys()
            .cloned()
            .collect();
        help.assert_knows(environment.keys(), &place);
        help.assert_knows(&secrets, &format!("infra/terraform (local.secrets.{stage})"));
        let all: BTreeSet<String> = environment.keys().chain(&secrets).cloned().collect();
        help.assert_sets_required(&all, &[stage.to_owned()], &place);
        let exposed: Vec<&String> = environment
            .keys()
            .filter(|n| help.env.get(*n) == Some(&true))
            .collect();
        assert!(
            exposed.is_empty(),
            "{place}: {exposed:?} are secrets (--help hides their values): pass them in local.secrets"
        );
        let plain: Vec<&String> = secrets
            .iter()
            .filter(|n| help.env.get(*n) == Some(&false))
            .collect();
        assert!(
            plain.is_empty(),
            "infra/terraform: {plain:?} are no secrets of `exposures {stage}`: pass them in local.environment"
        );
        let port = help.port(help.metrics_flag(), &environment, &place);
        assert_eq!(
            locals["ports"][stage].as_u64(),
            Some(u64::from(port)),
            "infra/terraform: local.ports.{stage} is not the port {stage} listens on ({port})"
        );
        help.assert_probe(&environment, port, &place);
        known.extend(help.env.keys().cloned());
    }
    // No EXPOSURES_* variable elsewhere in the Terraform files that no stage reads.
    let name = regex::Regex::new(r"EXPOSURES_[A-Z0-9_]+").expect("regex");
    for file in &files {
        let text = std::fs::read_to_string(repo().join(file)).expect("read");
        for found in name.find_iter(&text) {
            assert!(
                known.contains(found.as_str()),
                "{file}: {} is no variable of exposures",
                found.as_str()
            );
        }
    }
}

#[test]
fn dockerfile_exposes_the_default_ports_and_sets_no_unknown_variable() {
    let dockerfile = std::fs::read_to_string(infra().join("Dockerfile")).expect("read");
    let exposed: BTreeSet<u16> = dockerfile
        .lines()
        .filter_map(|line| line.trim().strip_prefix("EXPOSE "))
        .flat_map(|ports| {
            ports
                .split_whitespace()
                .map(|p| p.trim_end_matches("/tcp").parse::<u16>())
        })
        .map(|port| port.expect("EXPOSE takes port numbers"))
        .collect();
    let mut defaults = BTreeSet::new();
    let mut known = BTreeSet::new();
    for stage in STAGES {
        let help = Help::of(stage);
        defaults.insert(help.port(
            help.metrics_flag(),
            &BTreeMap::new(),
            &format!("{stage} defaults"),
        ));
        known.extend(help.env.keys().cloned());
    }
    assert_eq!(
        exposed, defaults,
        "infra/Dockerfile EXPOSE and the stages' default ports"
    );
    let name = regex::Regex::new(r"EXPOSURES_[A-Z0-9_]+").expect("regex");
    for found in name.find_iter(&dockerfile) {
        assert!(
            known.contains(found.as_str()),
            "infra/Dockerfile: {} is no variable",
            found.as_str()
        );
    }
    assert!(dockerfile.contains("ENTRYPOINT [\"exposures\"]"));
}

/// With `msk_auth = "iam"` each stage's task role may do on MSK exactly what its Kafka
/// clients do, on the cluster, its own topics and its own consumer group: nothing
/// broader (no `*`, no other action), and the group names are the stages' `--group`
/// defaults as their `--help` shows them.
#[test]
fn msk_iam_grants_each_stage_only_its_cluster_topics_and_group() {
    let files = terraform_files();
    let Some(documents) = parsed(&files) else {
        return;
    };
    let locals = terraform_locals(&documents);
    let grants = locals["msk_grants"].as_object().expect("local.msk_grants");
    let cluster = "${local.msk_cluster}";
    let topic = |name: &str| format!("${{local.msk_topic[\"{name}\"]}}");
    let group = |stage: &str| format!("${{local.msk_group[\"{stage}\"]}}");
    let connect = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"];
    let idempotent = "kafka-cluster:WriteDataIdempotently";
    let expected: BTreeMap<&str, Vec<(Vec<&str>, String)>> = BTreeMap::from([
        (
            "ingest",
            vec![
                ([connect.as_slice(), &[idempotent]].concat(), cluster.to_owned()),
                (
                    vec!["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"],
                    topic("exposures"),
                ),
            ],
        ),
        (
            "sink",
            vec![
                ([connect.as_slice(), &[idempotent]].concat(), cluster.to_owned()),
                (
                    vec!["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"],
                    topic("exposures"),
                ),
                (
                    vec!["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"],
                    topic("files"),
                ),
                (
                    vec!["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"],
                    group("sink"),
                ),
            ],
        ),
        (
            "load",
            vec![
                (connect.to_vec(), cluster.to_owned()),
                (
                    vec!["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"],
                    topic("files"),
                ),
                (
                    vec!["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"],
                    group("load"),
                ),
            ],
        ),
    ]);
    assert_eq!(grants.len(), expected.len(), "one entry per stage");
    for (stage, statements) in expected {
        let found: Vec<(Vec<String>, Vec<String>)> = grants[stage]
            .as_array()
            .expect("statements")
            .iter()
            .map(|statement| {
                let strings = |value: &Value| -> Vec<String> {
                    value.as_array().expect("a list").iter().map(text).collect()
                };
                (strings(&statement[0]), strings(&statement[1]))
            })
            .collect();
        let wanted: Vec<(Vec<String>, Vec<String>)> = statements
            .into_iter()
            .map(|(actions, resource)| (actions.into_iter().map(String::from).collect(), vec![resource]))
            .collect();
        assert_eq!(found, wanted, "local.msk_grants.{stage}");
    }
    let groups = text(&locals["msk_group"]);
    for stage in ["sink", "load"] {
        let default = Help::of(stage)
            .defaults
            .get("group")
            .cloned()
            .expect("a --group default");
        assert!(
            groups.contains(&format!("{stage} = \"{default}\""))
                || groups.contains(&format!("\"{default}\"")),
            "local.msk_group does not name {stage}'s --group default {default}: {groups}"
        );
    }
}
