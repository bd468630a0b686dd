//! Hostile, malformed and unusual requests.

mod hostile;
mod in_process;
mod requests;
