//! The `pessimist lincheck FILE... [--budget STATES] [--json]` command, minus argument
//! parsing (the `pessimist` binary owns that).
//!
//! Role: check each file, print one line per file (verdict, operations, time) and, under a
//! non-linearizable one, its witness; or with `--json` one JSON object per line and file.
//! The budget counts states explored, so the verdict is the same on any machine; the time is
//! printed for the reader only.
//!
//! Exit status: 2 if any file is malformed (unreadable, bad JSON, bad history, or larger than
//! [`HISTORY_FILE_BYTES_MAX`], refused before it is read), else 1 if any verdict disagrees with
//! the file's `expect`, else 3 if any verdict is `unknown` (the budget ran out: undecided,
//! neither agreeing nor disagreeing, and never a pass), else 0. Every file is checked even
//! after a failure, so one run reports them all.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::history::{load_history, Expect};
use super::witness::{Verdict, Witness};
use super::{check_file, GaveUp};

/// Exit status when every file is well formed and agrees with its `expect`.
pub const EXIT_AGREES: i32 = 0;
/// Exit status when some verdict disagrees with its file's `expect`.
pub const EXIT_DISAGREES: i32 = 1;
/// Exit status when some file is malformed.
pub const EXIT_MALFORMED: i32 = 2;
/// Exit status when no file is malformed or disagrees, but some verdict is `unknown`.
pub const EXIT_INCONCLUSIVE: i32 = 3;

/// One file's result in `--json` mode.
#[derive(Serialize)]
struct FileReport<'a> {
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    /// `linearizable`, `not-linearizable`, `unknown`, or `error`.
    verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expect: Option<Expect>,
    /// Whether the verdict matches `expect`; absent without `expect`.
    #[serde(skip_serializing_if = "Option::is_none")]
    agrees: Option<bool>,
    operations: usize,
    time_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    unknown_reason: Option<GaveUp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    witness: Option<&'a Witness>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Largest history file the command reads: parsed, a file takes several times its size in
/// memory (about 1 KB per operation), so a larger one is refused with a one-line message
/// rather than risking the process being killed for memory. A million operations take about
/// 80 MB of JSON.
pub const HISTORY_FILE_BYTES_MAX: u64 = 1 << 30;

/// Runs the command, exploring at most `states_max` states per file; returns the process exit
/// status.
pub fn run(files: &[PathBuf], states_max: u64, json: bool) -> i32 {
    run_limited(files, states_max, json, HISTORY_FILE_BYTES_MAX)
}

/// [`run`] with a file size limit of `file_bytes_max`.
pub fn run_limited(files: &[PathBuf], states_max: u64, json: bool, file_bytes_max: u64) -> i32 {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut exit_status = EXIT_AGREES;
    let mut any_undecided = false;
    for path in files {
        let started = Instant::now();
        let outcome = refuse_if_too_large(path, file_bytes_max)
            .and_then(|()| load_history(path))
            .and_then(|file| {
                let verdict = check_file(&file, states_max)?;
                Ok((file, verdict))
            });
        let time_ms = started.elapsed().as_secs_f64() * 1e3;
        let file_name = path.display().to_string();
        // Printing failures (a closed pipe) are not the history's fault: ignore them.
        match outcome {
            Err(error) => {
                exit_status = EXIT_MALFORMED;
                let message = error.to_string();
                if json {
                    let report = FileReport {
                        file: file_name.clone(),
                        model: None,
                        verdict: "error",
                        expect: None,
                        agrees: None,
                        operations: 0,
                        time_ms,
                        unknown_reason: None,
                        witness: None,
                        error: Some(message.clone()),
                    };
                    let _ = writeln!(out, "{}", to_json_line(&report));
                } else {
                    let _ = writeln!(out, "{file_name}: error");
                }
                // A malformed file always says why on stderr, whatever the output mode.
                eprintln!("error: {file_name}: {message}");
            }
            Ok((file, verdict)) => {
                let operations =
                    file.history.iter().filter(|op| op.op_type == super::OpType::Invoke).count();
                let undecided = matches!(verdict, Verdict::Unknown { .. });
                any_undecided |= undecided;
                let agrees = match undecided {
                    true => None,
                    false => file.expect.map(|expect| agrees_with(&verdict, expect)),
                };
                if agrees == Some(false) && exit_status == EXIT_AGREES {
                    exit_status = EXIT_DISAGREES;
                }
                let (witness, unknown_reason) = match &verdict {
                    Verdict::Linearizable => (None, None),
                    Verdict::NotLinearizable { witness } => (Some(witness.as_ref()), None),
                    Verdict::Unknown { reason } => (None, Some(*reason)),
                };
                if json {
                    let report = FileReport {
                        file: file_name,
                        model: Some(&file.model),
                        verdict: verdict.name(),
                        expect: file.expect,
                        agrees,
                        operations,
                        time_ms,
                        unknown_reason,
                        witness,
                        error: None,
                    };
                    let _ = writeln!(out, "{}", to_json_line(&report));
                } else {
                    let mut line = format!(
                        "{file_name}: {} ({operations} operations, {time_ms:.1} ms)",
                        verdict.name()
                    );
                    if let Some(reason) = unknown_reason {
                        line.push_str(match reason {
                            GaveUp::BudgetSpent => " [budget of states spent]",
                            GaveUp::CacheFull => " [search cache full]",
                        });
                    }
                    if let (Some(false), Some(expect)) = (agrees, file.expect) {
                        line.push_str(&format!(" MISMATCH: expected {}", expect_name(expect)));
                    }
                    let _ = writeln!(out, "{line}");
                    if let Some(witness) = witness {
                        for witness_line in witness.to_string().lines() {
                            let _ = writeln!(out, "    {witness_line}");
                        }
                    }
                }
            }
        }
    }
    let _ = out.flush();
    if exit_status == EXIT_AGREES && any_undecided {
        return EXIT_INCONCLUSIVE;
    }
    exit_status
}

/// A file over `file_bytes_max` bytes is an error naming its size and the limit; a file whose
/// size cannot be read is left to [`load_history`] to report.
fn refuse_if_too_large(path: &Path, file_bytes_max: u64) -> Result<(), super::HistoryError> {
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.len() > file_bytes_max => Err(super::HistoryError::invalid(
            "file",
            format!(
                "{} bytes is more than the {file_bytes_max} bytes a history file may have",
                metadata.len()
            ),
        )),
        _ => Ok(()),
    }
}

fn agrees_with(verdict: &Verdict, expect: Expect) -> bool {
    matches!(
        (verdict, expect),
        (Verdict::Linearizable, Expect::Linearizable)
            | (Verdict::NotLinearizable { .. }, Expect::NotLinearizable)
    )
}

fn expect_name(expect: Expect) -> &'static str {
    match expect {
        Expect::Linearizable => "linearizable",
        Expect::NotLinearizable => "not-linearizable",
    }
}

fn to_json_line<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("reports serialize: plain data, string keys")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `text` to a fresh file under the system's temporary folder.
    fn history_file(name: &str, text: &str) -> PathBuf {
        let folder = std::env::temp_dir().join(format!("lincheck-cli-{}", std::process::id()));
        std::fs::create_dir_all(&folder).expect("temporary folder");
        let path = folder.join(name);
        std::fs::write(&path, text).expect("temporary file");
        path
    }

    const STALE_READ: &str = r#"{"model": "register", "init": null, "expect": "EXPECT",
        "history": [
            {"process": 0, "type": "invoke", "f": "write", "value": 1},
            {"process": 0, "type": "ok", "f": "write", "value": 1},
            {"process": 1, "type": "invoke", "f": "read", "value": null},
            {"process": 1, "type": "ok", "f": "read", "value": null}]}"#;

    #[test]
    fn exit_status_says_agreement() {
        let agrees = history_file("agrees.json", &STALE_READ.replace("EXPECT", "not-linearizable"));
        let disagrees =
            history_file("disagrees.json", &STALE_READ.replace("EXPECT", "linearizable"));
        let budget = crate::lincheck::STATES_EXPLORED_MAX;
        assert_eq!(run(std::slice::from_ref(&agrees), budget, false), EXIT_AGREES);
        assert_eq!(run(std::slice::from_ref(&agrees), budget, true), EXIT_AGREES);
        assert_eq!(run(&[agrees.clone(), disagrees.clone()], budget, false), EXIT_DISAGREES);
        // A budget of no states answers unknown: undecided, never a pass, but no mismatch.
        assert_eq!(run(std::slice::from_ref(&agrees), 0, false), EXIT_INCONCLUSIVE);
        assert_eq!(run(&[agrees.clone(), disagrees.clone()], 0, false), EXIT_INCONCLUSIVE);
        // A file over the size limit is refused as malformed, before it is read.
        assert_eq!(run_limited(std::slice::from_ref(&agrees), budget, false, 64), EXIT_MALFORMED);
        assert_eq!(run_limited(&[agrees], budget, true, 64), EXIT_MALFORMED);
        let malformed = history_file(
            "malformed.json",
            &STALE_READ
                .replace("EXPECT", "linearizable")
                .replace("\"read\", \"value\": null}]", "\"read\"}]"),
        );
        let unpaired = history_file(
            "unpaired.json",
            r#"{"model": "register", "history": [{"process": 0, "type": "ok", "f": "read"}]}"#,
        );
        let missing = PathBuf::from("/nonexistent/lincheck/history.json");
        for bad in [unpaired, missing] {
            assert_eq!(run(&[bad.clone(), disagrees.clone()], budget, false), EXIT_MALFORMED);
            assert_eq!(run(&[bad], budget, true), EXIT_MALFORMED);
        }
        assert_eq!(run(&[malformed], budget, false), EXIT_DISAGREES, "value defaults to null");
    }
}
