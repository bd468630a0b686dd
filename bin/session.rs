//! CGI entry point for /cgi-bin/session.
fn main() -> std::process::ExitCode {
    piggyback::gateway::run(piggyback::handlers::session)
}
