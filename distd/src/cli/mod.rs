//! The `distd` command line: flags → settings (`args`), one function per command (`commands`).
//! `distd ctl`'s flags and requests are in `ctl`.

pub mod args;
pub mod commands;
