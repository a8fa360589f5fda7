//! Calibration of the work estimate (`resize::estimate_work`) against real thumbnails on this
//! machine: for each file, its estimate, the measured time of `resize::thumbnail` (the fastest
//! of a few runs) and their ratio. The constants in `core/src/resize/cost.rs` were fitted from
//! this output; the figures belong here, printed, not in the code.
//!
//! Run: `cargo run --release -p pessimist-core --example decode_cost` (the real build works
//! too: `RUSTFLAGS= cargo run --release --target-dir target/real -p pessimist-core --example
//! decode_cost`). The machine is shared: check its load (`uptime`) first.

use std::time::{Duration, Instant};

use pessimist_core::resize::{self, pills, DecodeBudget, ResizeSpec};
use pessimist_core::seams::rng::SeededRng;
use rand::SeedableRng;

fn main() {
    let budget = DecodeBudget { memory_bytes_max: 256 << 20, limits_enabled: true };
    let mut rng = SeededRng::seed_from_u64(7);
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (width, height) in [(160, 120), (640, 480), (1600, 1200), (3000, 2000)] {
        files.push((
            format!("photo {width}x{height} jpeg"),
            pills::photo_like_jpeg(&mut rng, width, height, 80),
        ));
    }
    for (width, height) in [(160, 120), (1600, 1200)] {
        files.push((
            format!("photo {width}x{height} png"),
            pills::photo_like_png(&mut rng, width, height),
        ));
    }
    for (side, scans) in [(1024, 1000), (1536, 1500), (2048, 2500), (2048, 5000)] {
        files.push((
            format!("scan bomb {side}x{side}, {scans} scans"),
            pills::jpeg_scan_bomb(side, side, scans),
        ));
    }
    for side in [4000, 8000, 12000] {
        files.push((
            format!("decompression bomb {side}x{side}"),
            pills::png_decompression_bomb(side, side),
        ));
    }
    println!(
        "{:<34} {:>6} {:>9} {:>10} {:>10} {:>6}",
        "file", "box", "bytes", "estimate", "measured", "ratio"
    );
    for (name, bytes) in &files {
        for side in [32, 256] {
            let spec = ResizeSpec::new(side, side).expect("a valid box");
            let work = resize::estimate_work(bytes, &spec).expect("the calibration files probe");
            // The fastest of a few runs (one for the slow ones): the machine is shared.
            let runs = if work.cpu_ms() > 500 { 1 } else { 5 };
            let measured = (0..runs)
                .map(|_| {
                    let started = Instant::now();
                    let result = resize::thumbnail(bytes, &spec, &budget);
                    let took = started.elapsed();
                    result.expect("the calibration files make thumbnails");
                    took
                })
                .min()
                .unwrap_or(Duration::ZERO);
            let estimate = Duration::from_nanos(work.cpu_ns());
            println!(
                "{:<34} {:>6} {:>9} {:>8.1}ms {:>8.1}ms {:>6.2}",
                name,
                side,
                bytes.len(),
                estimate.as_secs_f64() * 1000.0,
                measured.as_secs_f64() * 1000.0,
                estimate.as_secs_f64() / measured.as_secs_f64().max(1e-9)
            );
        }
    }
}
