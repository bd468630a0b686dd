//! CGI entry point for /cgi-bin/messages.
fn main() -> std::process::ExitCode {
    piggyback::gateway::run(piggyback::handlers::messages)
}
