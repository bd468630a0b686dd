//! CGI interpreter-wrapper: runs a site's own CGI program and adds `site_messages` to its JSON answers.
fn main() -> std::process::ExitCode {
    piggyback::wrap::run()
}
