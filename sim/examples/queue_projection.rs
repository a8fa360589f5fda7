//! Writes the `fifo-queue` history that the queue's linearizability check searches, projected
//! from a run's history, for `pessimist lincheck` or another checker of the format.
//!
//! `cargo run --release -p pessimist-sim --example queue_projection -- HISTORY.jsonl >
//! queue.json`, HISTORY a queue scenario's `histories/seed-N.jsonl` as `run` writes it; see
//! `pessimist_sim::queue::check::queue_projection`. Exits 2 with one line when the history
//! cannot be read or has nothing to search.

use std::io::Write;

use pessimist_core::history::from_json_lines;
use pessimist_sim::queue::check::queue_projection;

fn fail(message: String) -> ! {
    eprintln!("queue_projection: {message}");
    std::process::exit(2)
}

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let [path] = arguments.as_slice() else {
        fail("usage: queue_projection HISTORY.jsonl".to_string())
    };
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| fail(format!("{path}: {error}")));
    let events = from_json_lines(&text).unwrap_or_else(|error| fail(format!("{path}: {error}")));
    let file = queue_projection(&events).unwrap_or_else(|error| fail(format!("{path}: {error}")));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    serde_json::to_writer(&mut out, &file).expect("a history serializes");
    writeln!(out).and_then(|()| out.flush()).expect("standard output is writable");
}
