//! CGI entry point for /cgi-bin/profile.
fn main() -> std::process::ExitCode {
    piggyback::gateway::run(piggyback::handlers::profile)
}
