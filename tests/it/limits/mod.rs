//! Rates, quotas and lockouts.

mod lockouts;
mod rates;

// ---- 1. the login throttle raced ---------------------------------------------------

/// Starts every request at once, then collects the statuses.
fn statuses(requests: Vec<crate::support::Cgi>) -> Vec<u16> {
    let running: Vec<_> = requests.iter().map(|r| r.spawn()).collect();
    running.into_iter().map(|r| r.wait().status).collect()
}
