//! Shared by the integration tests: the golden cases under `tests/data`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use policy::{Config, Model, Ruleset};

/// `tests/data`.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Every case directory, sorted.
pub fn cases() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .expect("tests/data exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Reads one YAML file of a case.
pub fn resources(path: &Path) -> Vec<api::Resource> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    api::parse_documents(&path.display().to_string(), &text).unwrap_or_else(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("{}", lines.join("\n"))
    })
}

/// The case's resources (policy.yaml then endpoints.yaml) and its config (an
/// optional `node` file names the local node).
pub fn load(case: &Path) -> (Vec<api::Resource>, Config) {
    let mut all = resources(&case.join("policy.yaml"));
    all.extend(resources(&case.join("endpoints.yaml")));
    let mut config = Config::default();
    if let Ok(node) = std::fs::read_to_string(case.join("node")) {
        config.node = Some(node.trim().to_string());
    }
    (all, config)
}

/// Compiles the case.
pub fn compile_case(case: &Path) -> Ruleset {
    let (resources, config) = load(case);
    let model = Model::from_resources(&resources, config)
        .unwrap_or_else(|e| panic!("{}: {e}", case.display()));
    policy::compile(&model)
}

/// Compiles YAML given inline (policies, endpoints, ... in one text).
pub fn compile_yaml(yaml: &str) -> Ruleset {
    let resources = api::parse_documents("inline", yaml).unwrap_or_else(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("{}", lines.join("\n"))
    });
    let model = Model::from_resources(&resources, Config::default()).expect("model builds");
    policy::compile(&model)
}
