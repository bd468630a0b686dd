//! What each program answers.

mod in_process;
mod programs;
