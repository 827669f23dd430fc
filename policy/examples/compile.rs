//! Compiles policy YAML into the nft ruleset and prints it.
//!
//! ```text
//! cargo run -p policy --example compile -- [--node NODE] FILE_OR_DIR...
//! ```
//!
//! Every file given (and every `.yaml`, `.yml` or `.json` file in a directory
//! given) is read with `api::parse_documents`; tiers, policies, profiles,
//! endpoints and network sets are compiled together. `--node` keeps chains to
//! that node's endpoints. The output loads with `nft -f`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

fn files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
        let p = entry?.path();
        if p.extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            found.push(p);
        }
    }
    found.sort();
    Ok(found)
}

fn main() -> anyhow::Result<()> {
    let mut config = policy::Config::default();
    let mut paths = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--node" => config.node = Some(args.next().context("--node needs a value")?),
            "-h" | "--help" => {
                println!("usage: compile [--node NODE] FILE_OR_DIR...");
                return Ok(());
            }
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    if paths.is_empty() {
        bail!("usage: compile [--node NODE] FILE_OR_DIR...");
    }
    let mut resources = Vec::new();
    for path in &paths {
        for file in files(path)? {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            match api::parse_documents(&file.display().to_string(), &text) {
                Ok(found) => resources.extend(found),
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{e}");
                    }
                    bail!("{} error(s) in {}", errors.len(), file.display());
                }
            }
        }
    }
    let model = policy::Model::from_resources(&resources, config)?;
    print!("{}", policy::render(&policy::compile(&model)));
    Ok(())
}
