//! A CGI program: the handler `piggyback::handlers::PROGRAMS` pairs with this executable's name.
fn main() -> std::process::ExitCode {
    piggyback::gateway::run_program(env!("CARGO_BIN_NAME"))
}
