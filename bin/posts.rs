//! CGI entry point for /cgi-bin/posts.
fn main() -> std::process::ExitCode {
    piggyback::gateway::run(piggyback::handlers::posts)
}
