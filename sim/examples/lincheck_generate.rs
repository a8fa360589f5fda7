//! Writes a synthetic history for `pessimist lincheck` to standard output.
//!
//! `cargo run --release -p pessimist-sim --example lincheck_generate -- MODEL OPERATIONS
//! [PROCESSES [SEED]] [--broken] > history.json`, MODEL `fifo-queue` or `register`; see
//! `pessimist_sim::lincheck::generate` for what the history looks like.

use std::io::Write;

use pessimist_sim::lincheck::generate::{history, Shape};

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let broken = arguments.iter().any(|argument| argument == "--broken");
    let positional: Vec<&String> =
        arguments.iter().filter(|argument| !argument.starts_with("--")).collect();
    let usage = "usage: lincheck_generate fifo-queue|register OPERATIONS [PROCESSES [SEED]] \
                 [--broken]";
    let number = |index: usize, default: u64| -> u64 {
        positional.get(index).map_or(default, |text| {
            text.parse().unwrap_or_else(|_| {
                eprintln!("{usage}");
                std::process::exit(2)
            })
        })
    };
    let model = match positional.first().map(|text| text.as_str()) {
        Some("fifo-queue") => "fifo-queue",
        Some("register") => "register",
        _ => {
            eprintln!("{usage}");
            std::process::exit(2)
        }
    };
    let shape = Shape {
        model,
        operations: number(1, 1000) as usize,
        processes: number(2, 8).max(1),
        seed: number(3, 1),
        broken,
    };
    let file = history(shape);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    serde_json::to_writer(&mut out, &file).expect("a history serializes");
    writeln!(out).and_then(|()| out.flush()).expect("standard output is writable");
}
