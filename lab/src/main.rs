//! `calico-lab`: `up FILE`, `down FILE|--name LAB`, `exec NODE -- CMD…`,
//! `inspect`; see the library's docs for how nodes are realised.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use lab::{Settings, State, run};

#[derive(Debug, Parser)]
#[command(
    name = "calico-lab",
    about = "Run containerlab topology files in network namespaces"
)]
struct Cli {
    /// Where labs keep their state
    #[arg(
        long,
        env = "CALICO_LAB_STATE_DIR",
        default_value = "/run/calico-lab",
        global = true
    )]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create the lab's namespaces, links and daemons
    Up {
        /// The topology file
        file: PathBuf,
        /// The lab's name instead of the file's (containerlab's `--name`)
        #[arg(long)]
        name: Option<String>,
        /// The felix binary felix nodes run (goldmane nodes run the `goldmane`
        /// beside it) [default: next to calico-lab, else on PATH]
        #[arg(long, env = "CALICO_LAB_FELIX")]
        felix: Option<PathBuf>,
        /// Seconds a daemon may take to be ready (felix: its BGP socket);
        /// a lab of hundreds of hosts on a few cores needs more
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
        ready_timeout: u64,
    },
    /// Remove everything a lab made, also after the runner crashed
    Down {
        /// The topology file (its `name` is the lab)
        #[arg(required_unless_present = "name", conflicts_with = "name")]
        file: Option<PathBuf>,
        #[arg(long)]
        name: Option<String>,
    },
    /// Run a command in a node's namespace
    Exec {
        /// The lab [default: the only one up]
        #[arg(long)]
        name: Option<String>,
        node: String,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// List nodes, interfaces, addresses and state
    Inspect {
        /// The lab [default: every lab up]
        #[arg(long)]
        name: Option<String>,
    },
}

fn main() -> ExitCode {
    match main_() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("calico-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main_() -> Result<ExitCode> {
    let cli = Cli::parse();
    let root = cli.state_dir;
    match cli.command {
        Cmd::Up {
            file,
            name,
            felix,
            ready_timeout,
        } => {
            let (topology, text) = read(&file)?;
            let settings = Settings {
                state_root: root,
                file_dir: file
                    .canonicalize()
                    .with_context(|| format!("resolving {}", file.display()))?
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
                name,
                felix: felix.unwrap_or_else(default_felix),
            };
            let plan = lab::plan(&topology, &text, &settings)
                .with_context(|| file.display().to_string())?;
            let state = run::up(&plan, Duration::from_secs(ready_timeout))?;
            print!("{}", run::table(&run::inspect(&state)));
        }
        Cmd::Down { file, name } => {
            let lab = match (name, file) {
                (Some(name), _) => name,
                (None, Some(file)) => read(&file)?.0.name,
                (None, None) => bail!("down needs a FILE or --name"),
            };
            let removed = run::down(&root, &lab)?;
            println!(
                "lab {lab}: removed {} namespaces, {} daemons",
                removed.namespaces.len(),
                removed.pids.len()
            );
        }
        Cmd::Exec { name, node, cmd } => {
            let state = load(&root, &lab_name(&root, name)?)?;
            let status = run::exec_command(&state, &node, &cmd)?;
            return Ok(ExitCode::from(status.code().map_or(1, |c| c as u8)));
        }
        Cmd::Inspect { name } => {
            let labs = match name {
                Some(n) => vec![n],
                None => run::labs(&root),
            };
            let mut rows = Vec::new();
            for lab in labs {
                rows.extend(run::inspect(&load(&root, &lab)?));
            }
            print!("{}", run::table(&rows));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The file's topology and its text, `${VAR}` expanded from this process's
/// environment (lines kept, so later errors name the file's lines).
fn read(file: &Path) -> Result<(lab::Topology, String)> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let text = lab::expand(&text, |name| std::env::var(name).ok())
        .with_context(|| file.display().to_string())?;
    let topology = lab::parse(&text).with_context(|| file.display().to_string())?;
    Ok((topology, text))
}

fn load(root: &Path, lab: &str) -> Result<State> {
    State::load(&root.join(lab))?.ok_or_else(|| lab::RunError::NotUp(lab.to_string()).into())
}

/// The lab named, or the only one up.
fn lab_name(root: &Path, name: Option<String>) -> Result<String> {
    if let Some(n) = name {
        return Ok(n);
    }
    match run::labs(root).as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no lab is up under {}", root.display()),
        many => bail!(
            "several labs are up ({}); pick one with --name",
            many.join(", ")
        ),
    }
}

/// `felix` next to this binary if built together, else `felix` on PATH.
fn default_felix() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("felix")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("felix"))
}
