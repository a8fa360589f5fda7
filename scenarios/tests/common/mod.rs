//! What the command-line tests share: running the binary, and a scratch directory each.
#![allow(dead_code)] // Each test binary uses what it needs.

use std::path::PathBuf;
use std::process::{Command, Output};

use pessimist_scenarios::suite::workspace_root;

/// Runs the `pessimist` binary with `args` from the workspace root.
pub fn pessimist(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pessimist"))
        .args(args)
        .current_dir(workspace_root())
        .output()
        .expect("the pessimist binary runs")
}

/// An empty directory of this test binary's own, named `name`, for this process.
pub fn scratch(name: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!(
        "pessimist-{}-{}-{name}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

/// The command the binary prints to `verb` (`replay`, `shrink`) `seed` of the scenario at
/// `file` (relative to the workspace root): the binary by its absolute path, the file by its.
pub fn printed_command(verb: &str, file: &str, seed: Option<u64>) -> String {
    let command = format!(
        "{} {verb} {}",
        env!("CARGO_BIN_EXE_pessimist"),
        workspace_root().join(file).display()
    );
    match seed {
        Some(seed) => format!("{command} --seed {seed}"),
        None => format!("{command} --seed"),
    }
}
