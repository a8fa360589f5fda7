//! Every published history in `tests/data/lincheck` must get its published verdict.
//!
//! Data-driven: one `check(path)` helper per file, one failure list at the end, so a
//! regression names every file it breaks.

use std::path::{Path, PathBuf};

use pessimist_sim::lincheck::{check_file, load_history, Expect, Verdict, STATES_EXPLORED_MAX};

fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lincheck")
}

fn fixture_files(folder: &Path, files: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap_or_else(|error| panic!("{}: {error}", folder.display()))
        .map(|entry| entry.expect("readable folder entry").path())
        .collect();
    // Sorted, so the failure list reads in a stable order.
    entries.sort();
    for path in entries {
        if path.is_dir() {
            fixture_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "json") {
            files.push(path);
        }
    }
}

/// Checks one file; returns a description of the disagreement, if any.
fn check(path: &Path) -> Option<String> {
    let file = load_history(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let expect = file.expect.expect("every fixture says its verdict");
    let verdict = check_file(&file, STATES_EXPLORED_MAX)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let agrees = matches!(
        (&verdict, expect),
        (Verdict::Linearizable, Expect::Linearizable)
            | (Verdict::NotLinearizable { .. }, Expect::NotLinearizable)
    );
    (!agrees).then(|| format!("{}: got {}, expected {expect:?}", path.display(), verdict.name()))
}

#[test]
fn published_verdicts_agree() {
    let mut files = Vec::new();
    fixture_files(&fixture_root(), &mut files);
    assert_eq!(files.len(), 108, "102 etcd histories and 6 kv histories");
    let disagreements: Vec<String> = files.iter().filter_map(|path| check(path)).collect();
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}

/// The queue histories projected from runs (`tests/data/queue-projected`) get the verdict
/// Porcupine's queue model gave them too.
#[test]
fn projected_queue_histories_agree() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/queue-projected");
    let mut files = Vec::new();
    fixture_files(&folder, &mut files);
    assert_eq!(files.len(), 8, "seed 1 of each of the eight queue scenarios");
    let disagreements: Vec<String> = files.iter().filter_map(|path| check(path)).collect();
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}
