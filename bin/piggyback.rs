//! The `piggyback` administration command.
fn main() -> std::process::ExitCode {
    piggyback::cli::main()
}
