//! Every hostile image of `tests/data/hostile-images/` (the decoders' own crash tests and
//! corrupt suites, see its README) and the bombs `resize::pills` generates, through the
//! worker's path with its default limits: [`resize::probe`], the work budget
//! ([`resize::check_work`]) and [`resize::thumbnail`] under the memory budget.
//!
//! Each file must end as a thumbnail or a precise error: never a panic or an abort, an
//! over-budget error only when the need really is over the budget, a corrupt file with its
//! reason, and a heap peak within the memory budget. The test prints the counts (thumbnails,
//! errors per kind) and the slowest file; times are printed, never asserted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pessimist_core::resize::{self, pills, ResizeError, ResizeSpec};
use pessimist_core::seams::rng::SeededRng;
use pessimist_core::worker::WorkerSettings;
use rand::SeedableRng;

thread_local! {
    static CURRENT: Cell<u64> = const { Cell::new(0) };
    static PEAK: Cell<u64> = const { Cell::new(0) };
}

/// Counts this thread's heap use, so the test can bound a decode's peak.
struct Meter;

// SAFETY: forwards to the system allocator unchanged; the thread-local counters are
// const-initialized `Cell`s without destructors, so touching them never allocates.
unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as u64);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as u64);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        sub(layout.size() as u64);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        sub(layout.size() as u64);
        add(new_size as u64);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static METER: Meter = Meter;

fn add(bytes: u64) {
    let _ = CURRENT.try_with(|current| {
        let now = current.get() + bytes;
        current.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn sub(bytes: u64) {
    let _ = CURRENT.try_with(|current| current.set(current.get().saturating_sub(bytes)));
}

fn peak_bytes_during<T>(work: impl FnOnce() -> T) -> (T, u64) {
    CURRENT.with(|current| current.set(0));
    PEAK.with(|peak| peak.set(0));
    let result = work();
    (result, PEAK.with(Cell::get))
}

fn corpus_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hostile-images");
    let mut files = Vec::new();
    let mut folders = vec![root];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("the corpus folder is readable") {
            let path = entry.expect("a readable entry").path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or("");
            let documentation = name.starts_with("LICENSE")
                || name.starts_with("License")
                || name.starts_with("PngSuite.")
                || name.ends_with(".md");
            if !documentation {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The generated set: the bombs and lying headers of `pills`, at the sizes the issue met them.
fn generated_files() -> Vec<(String, Vec<u8>)> {
    let mut rng = SeededRng::seed_from_u64(27);
    vec![
        // 5,000 empty scans over a 2048x2048 frame: about 50 KB.
        ("generated/jpeg-scan-bomb-5000.jpg".into(), pills::jpeg_scan_bomb(2048, 2048, 5000)),
        ("generated/jpeg-scan-bomb-1500.jpg".into(), pills::jpeg_scan_bomb(1536, 1536, 1500)),
        (
            "generated/png-decompression-bomb.png".into(),
            pills::png_decompression_bomb(12000, 12000),
        ),
        ("generated/png-137k-text-chunk.png".into(), pills::png_with_text_chunk(&mut rng, 137_000)),
        (
            "generated/jpeg-8000x8000-10-bytes.jpg".into(),
            pills::jpeg_no_scan_data(&mut rng, 8000, 8000, 10),
        ),
    ]
}

/// Checks one error names its real cause; returns its kind.
fn check_precise(name: &str, error: &ResizeError, memory_bytes_max: u64) -> &'static str {
    match error {
        ResizeError::OverBudget { needed, budget } => {
            assert!(needed > budget, "{name}: over budget with {needed} <= {budget}: {error}");
            assert_eq!(*budget, memory_bytes_max, "{name}: {error}");
        }
        ResizeError::WouldExhaustMemory { .. } => {
            panic!("{name}: limits are on, nothing may be modelled as exhausting memory")
        }
        ResizeError::Corrupt { reason, .. } => {
            assert!(!reason.trim().is_empty(), "{name}: a corrupt file without a reason")
        }
        ResizeError::UnsupportedFormat { detail } => {
            assert!(!detail.trim().is_empty(), "{name}: unsupported without saying what")
        }
        ResizeError::Encode { detail } => panic!("{name}: encoding a thumbnail failed: {detail}"),
        ResizeError::InvalidSpec { .. } => panic!("{name}: the spec is valid"),
        _ => {}
    }
    error.kind()
}

#[test]
fn every_hostile_image_ends_as_a_thumbnail_or_a_precise_error_within_its_budgets() {
    let worker = WorkerSettings::default();
    let budget = worker.decode_budget();
    assert!(budget.limits_enabled, "the worker's default decodes under limits");
    // The service's box (32: JPEGs of 128 pixels and more are shrunk on load) and a larger one
    // (256: most decode whole).
    let specs = [ResizeSpec::new(32, 32).unwrap(), ResizeSpec::new(256, 256).unwrap()];

    let mut inputs: Vec<(String, Vec<u8>)> = corpus_files()
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("a readable corpus file");
            let name = path
                .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data"))
                .unwrap_or(&path)
                .display()
                .to_string();
            (name, bytes)
        })
        .collect();
    assert!(inputs.len() >= 140, "the corpus is in place: {} files", inputs.len());
    inputs.extend(generated_files());

    let mut outcomes: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut slowest: (Duration, String, u64) = (Duration::ZERO, String::new(), 0);
    for (name, bytes) in &inputs {
        let _ = resize::probe(bytes);
        for spec in &specs {
            let case = format!("{name} into {}x{}", spec.max_width, spec.max_height);
            let work = match resize::check_work(bytes, spec, worker.decode_budget_ms) {
                Err(error @ ResizeError::WorkOverBudget { .. }) => {
                    let message = error.to_string();
                    assert!(message.contains("over the budget of"), "{case}: {message}");
                    *outcomes.entry("work_over_budget").or_default() += 1;
                    continue;
                }
                Ok(work) => Some(work),
                Err(_) => None,
            };
            let started = Instant::now();
            let (result, peak) = peak_bytes_during(|| resize::thumbnail(bytes, spec, &budget));
            let took = started.elapsed();
            if took > slowest.0 {
                slowest = (took, case.clone(), work.map_or(0, |work| work.cpu_ms()));
            }
            assert!(
                peak <= budget.memory_bytes_max,
                "{case}: {peak} bytes at the peak, over the budget of {}",
                budget.memory_bytes_max
            );
            let kind = match &result {
                Ok(thumbnail) => {
                    assert!(
                        thumbnail.width <= spec.max_width && thumbnail.height <= spec.max_height
                    );
                    assert!(!thumbnail.jpeg.is_empty(), "{case}: an empty thumbnail");
                    "thumbnail"
                }
                Err(error) => check_precise(&case, error, budget.memory_bytes_max),
            };
            *outcomes.entry(kind).or_default() += 1;
        }
    }
    println!("{} files, {} conversions each:", inputs.len(), specs.len());
    for (kind, count) in &outcomes {
        println!("  {kind:<24} {count}");
    }
    println!(
        "slowest: {} in {:.1} ms (estimated {} ms)",
        slowest.1,
        slowest.0.as_secs_f64() * 1000.0,
        slowest.2
    );
    assert!(outcomes.get("thumbnail").copied().unwrap_or(0) > 0, "some files decode");
    assert!(outcomes.get("corrupt").copied().unwrap_or(0) > 0, "most are refused");
}

#[test]
fn the_generated_pills_get_the_answers_the_issue_asks_for() {
    let worker = WorkerSettings::default();
    let budget = worker.decode_budget();
    let spec = ResizeSpec::new(32, 32).unwrap();
    let generated: BTreeMap<String, Vec<u8>> = generated_files().into_iter().collect();
    let get = |name: &str| &generated[&format!("generated/{name}")];

    // The scan bomb: refused on its estimate, naming its scans.
    let bomb = get("jpeg-scan-bomb-5000.jpg");
    assert!(bomb.len() < 80 * 1024, "tens of KB: {}", bomb.len());
    let refused = resize::check_work(bomb, &spec, worker.decode_budget_ms).unwrap_err();
    assert_eq!(refused.kind(), "work_over_budget");
    assert!(refused.to_string().starts_with("jpeg of 2048x2048 in 5001 scans would take"));

    // The valid 32x32 PNG with a 137 KB text chunk makes a thumbnail.
    let text = get("png-137k-text-chunk.png");
    assert!(text.len() > 137_000);
    let thumbnail = resize::thumbnail(text, &spec, &budget).unwrap();
    assert_eq!((thumbnail.width, thumbnail.height), (32, 32));

    // A header of 8000x8000 with 10 bytes of scan data is corrupt, and says why.
    let lying = get("jpeg-8000x8000-10-bytes.jpg");
    assert_eq!(
        resize::thumbnail(lying, &spec, &budget).unwrap_err().to_string(),
        "corrupt jpeg: 10 bytes of scan data cannot code 1000000 blocks (at least one bit each)"
    );

    // The decompression bomb is a thousandth of its decoded size and within the memory budget.
    let png_bomb = get("png-decompression-bomb.png");
    let header = resize::probe(png_bomb).unwrap();
    assert!(header.decoded_bytes > 1000 * png_bomb.len() as u64);
    assert!(header.decode_bytes_needed <= budget.memory_bytes_max);
}
