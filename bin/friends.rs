//! CGI entry point for /cgi-bin/friends.
fn main() -> std::process::ExitCode {
    piggyback::gateway::run(piggyback::handlers::friends)
}
