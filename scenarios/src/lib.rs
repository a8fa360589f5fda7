//! pessimist-scenarios: loading scenario files with precise errors, running them over seeds,
//! and writing what the `pessimist` command reports.
//!
//! **Invariant:** a bad scenario file is an error that names the file, the line, the column
//! and the field; it never panics and never runs.

#[cfg(not(madsim))]
pub mod cluster;
pub mod compare;
pub mod locate;
pub mod review;
pub mod shrink;
pub mod suite;
pub mod sweep;

use std::path::Path;

use pessimist_sim::scenario::Scenario;

/// Why a scenario file could not be used. Displayed as one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The field's path (`faults.plan[0].fault.node`); empty for the whole file.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.file, self.message);
        }
        let field = if self.field.is_empty() { "(top level)" } else { &self.field };
        write!(
            f,
            "{}:{}:{}: field `{}`: {}",
            self.file, self.line, self.column, field, self.message
        )
    }
}

impl std::error::Error for LoadError {}

/// The scenario files' JSON Schema, generated from the scenario types (checked in as
/// `scenarios/schema.json` so editors can validate scenario files). The loader remains the
/// authority: the schema cannot say that a node a fault names exists, the loader does.
pub fn scenario_schema() -> String {
    let schema = schemars::schema_for!(Scenario);
    serde_json::to_string_pretty(&schema).expect("a schema serializes") + "\n"
}

/// Reads, parses and validates a scenario file.
pub fn load_scenario(path: &Path) -> Result<Scenario, LoadError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| LoadError {
        file: file.clone(),
        line: 0,
        column: 0,
        field: String::new(),
        message: format!("cannot read: {error}"),
    })?;
    parse_scenario(&file, &text)
}

/// Parses and validates scenario text; `file` names it in errors.
pub fn parse_scenario(file: &str, text: &str) -> Result<Scenario, LoadError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let scenario: Scenario =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            // The path ends in `?` where serde could not name the element (a syntax error).
            let field =
                error.path().to_string().trim_end_matches(".?").trim_end_matches('?').to_string();
            let inner = error.into_inner();
            let message = strip_position(&inner.to_string());
            LoadError {
                file: file.to_string(),
                line: inner.line(),
                column: inner.column(),
                field: if field == "." || field.is_empty() { String::new() } else { field },
                message,
            }
        })?;
    deserializer.end().map_err(|error| LoadError {
        file: file.to_string(),
        line: error.line(),
        column: error.column(),
        field: String::new(),
        message: "trailing characters after the scenario".into(),
    })?;
    scenario.validate().map_err(|invalid| {
        let (line, column) = locate::locate(text, &invalid.path).unwrap_or((1, 1));
        LoadError {
            file: file.to_string(),
            line,
            column,
            field: invalid.path,
            message: invalid.message,
        }
    })?;
    Ok(scenario)
}

/// serde_json appends " at line L column C" to its messages; the error line already says it.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}
