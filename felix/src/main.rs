//! The `felix` binary: `felix run` (see `felix::cli`) with the pure
//! calculation `felix::calc::calculate`.

fn main() -> std::process::ExitCode {
    felix::cli::main(felix::calc::calculate)
}
