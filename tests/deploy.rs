//! Checks of the files under `deploy/`: every manifest parses with the
//! sizes it promises, and every command line in the Kubernetes and Compose
//! files is accepted by the real command-line parser.
//!
//! NOTE: no YAML parser is a dependency, so the YAML files are not parsed
//! as a whole here. Their command lines are written as JSON-style flow
//! sequences, which these tests extract and parse.

use std::path::{Path, PathBuf};

use clap::Parser;
use fedsynth::backend::BackendKind;
use fedsynth::launch::manifest::Manifest;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|err| panic!("{file}: {err}"))
}

/// Parses a manifest without validating it, so a wgpu manifest also reads
/// in a build without the wgpu feature.
fn parse_unvalidated(file: &str) -> Manifest {
    toml::from_str(&read(file)).unwrap_or_else(|err| panic!("{file}: {err}"))
}

/// Returns every `key: [..]` flow sequence in `text`, parsed as JSON.
fn command_lines(text: &str, key: &str) -> Vec<Vec<String>> {
    let prefix = format!("{key}: [");
    text.lines()
        .filter_map(|line| {
            let start = line.find(&prefix)? + prefix.len() - 1;
            Some(serde_json::from_str(&line[start..]).unwrap_or_else(|err| panic!("{line}: {err}")))
        })
        .collect()
}

fn assert_cli_accepts(args: &[String]) {
    let argv = std::iter::once("fedsynth".to_string()).chain(args.iter().cloned());
    if let Err(err) = fedsynth::cli::Cli::try_parse_from(argv) {
        panic!("the CLI rejects {args:?}: {err}");
    }
}

/// Value of the first `key: VALUE` line in `text`.
fn yaml_scalar<'a>(text: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}:");
    text.lines()
        .find_map(|line| line.trim().strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no `{key}:` line"))
        .trim()
}

#[test]
fn local_manifest_is_valid_and_local() {
    let manifest = Manifest::load(&deploy("local.toml")).unwrap();
    assert_eq!(manifest.run.backend, BackendKind::Flex);
    assert_eq!(manifest.sites.count, 2);
    assert!(manifest.coordinator.centralised_baseline);
    assert!(manifest.coordinator.address.starts_with("127.0.0.1:"));
}

#[test]
fn reference_manifest_has_reference_scale() {
    let manifest = parse_unvalidated("reference.toml");
    assert_eq!(manifest.run.backend, BackendKind::Wgpu);
    assert_eq!(manifest.gan.epochs, 200);
    assert_eq!(manifest.gan.batch_size, 128);
    let total = manifest.synthetic.samples_per_site * manifest.sites.count;
    assert_eq!(total, 50_000);
    assert_eq!(manifest.data.train_limit, None);
    assert_eq!(manifest.data.test_limit, None);
}

#[cfg(feature = "wgpu")]
#[test]
fn reference_manifest_validates_with_wgpu() {
    Manifest::load(&deploy("reference.toml")).unwrap();
}

#[test]
fn cluster_manifest_is_valid() {
    let manifest = Manifest::load(&deploy("k8s/manifest.toml")).unwrap();
    assert!(manifest.coordinator.address.ends_with(":50051"));
    assert!(!manifest.coordinator.centralised_baseline);
}

#[test]
fn site_counts_match_the_cluster_manifest() {
    let manifest = Manifest::load(&deploy("k8s/manifest.toml")).unwrap();
    let replicas: usize = yaml_scalar(&read("k8s/sites.yaml"), "replicas")
        .parse()
        .unwrap();
    assert_eq!(replicas, manifest.sites.count);
    let compose = read("compose.yaml");
    let site_services = compose
        .lines()
        .filter(|line| line.starts_with("  site-") && line.ends_with(':'))
        .count();
    assert_eq!(site_services, manifest.sites.count);
}

#[test]
fn kubernetes_commands_parse() {
    let mut count = 0;
    for file in ["k8s/coordinator.yaml", "k8s/sites.yaml"] {
        for args in command_lines(&read(file), "args") {
            // Kubernetes expands $(SHARD_INDEX) from the pod's ordinal.
            let args: Vec<String> = args
                .into_iter()
                .map(|arg| arg.replace("$(SHARD_INDEX)", "2"))
                .collect();
            assert_cli_accepts(&args);
            count += 1;
        }
    }
    assert_eq!(count, 2);
}

#[test]
fn compose_commands_parse() {
    let commands = command_lines(&read("compose.yaml"), "command");
    assert_eq!(commands.len(), 4);
    for args in &commands {
        assert_cli_accepts(args);
    }
}

#[test]
fn deploy_files_mount_the_same_manifest() {
    let kustomization = read("k8s/kustomization.yaml");
    assert!(kustomization.contains("- manifest.toml"));
    let compose = read("compose.yaml");
    assert!(compose.contains("file: ./k8s/manifest.toml"));
    for args in command_lines(&read("k8s/coordinator.yaml"), "args")
        .into_iter()
        .chain(command_lines(&compose, "command"))
        .filter(|args| args[0] == "coordinator")
    {
        let at = args.iter().position(|a| a == "--manifest").unwrap();
        assert_eq!(args[at + 1], "/etc/fedsynth/manifest.toml");
    }
}

#[test]
fn yaml_files_have_no_tabs() {
    for file in [
        "compose.yaml",
        "k8s/kustomization.yaml",
        "k8s/namespace.yaml",
        "k8s/storage.yaml",
        "k8s/coordinator.yaml",
        "k8s/sites.yaml",
    ] {
        assert!(!read(file).contains('\t'), "{file} contains a tab");
    }
}
