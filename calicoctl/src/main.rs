//! `calicoctl`: manage `projectcalico.org/v3` resources in the datastore
//! (embedded SQLite by default, or etcd), Calico-style.
//!
//! # Layout
//!
//! - `cli`: the clap grammar (also the source of completions and man pages).
//! - `input`: reading `-f` (file, directory, stdin).
//! - `edit`: pure JSON merge patch and label edits.
//! - `output`: YAML/JSON documents and the per-kind tables.
//! - `errors`: exit statuses and the "invalid input" error.
//! - `commands`: one module per subcommand, plus datastore selection.

mod cli;
mod commands;
mod edit;
mod errors;
mod input;
mod output;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match commands::run(cli) {
        Ok(()) => errors::EXIT_OK.into(),
        Err(err) => {
            eprintln!("Error: {err:#}");
            errors::exit_code(&err).into()
        }
    }
}
