//! pessimist-scenarios: loading scenario files with precise errors, running them over seeds,
//! and writing what the `pessimist` command reports.
//!
//! **Invariant:** a bad scenario file is an error that names the file, the line, the column
//! and the field; it never panics and never runs.

#[cfg(not(madsim))]
pub mod cluster;
pub mod compare;
pub mod locate;
pub mod mutants;
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
    // Editors on some systems start a UTF-8 file with a byte order mark; JSON has no use for it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        if !value.is_object() {
            let kind = match value {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                _ => "null",
            };
            return Err(LoadError {
                file: file.to_string(),
                line: 1,
                column: 1,
                field: String::new(),
                message: format!(
                    "the file holds {kind}; a scenario is one JSON object: {{\"name\": ..., \"topology\": ..., \"workload\": ..., \"phases\": ...}}"
                ),
            });
        }
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let scenario: Scenario =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            // The path ends in `?` where serde could not name the element (a syntax error).
            let field =
                error.path().to_string().trim_end_matches(".?").trim_end_matches('?').to_string();
            let inner = error.into_inner();
            let message = friendly_number_message(&strip_position(&inner.to_string()));
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

/// serde's messages for a number of the wrong kind (`invalid type: floating point
/// `1.8446744073709552e+19`, expected u64`) in words: serde_json reads a whole number beyond
/// 64 bits as floating point, so the message must say what was wanted, not what serde saw.
fn friendly_number_message(message: &str) -> String {
    let wanted = |expected: &str| match expected {
        "u64" | "usize" => Some(format!("a whole number from 0 to {}", u64::MAX)),
        "u32" => Some(format!("a whole number from 0 to {}", u32::MAX)),
        "u16" => Some(format!("a whole number from 0 to {}", u16::MAX)),
        "i64" => Some(format!("a whole number from {} to {}", i64::MIN, i64::MAX)),
        _ => None,
    };
    let Some((found, expected)) = message.split_once(", expected ") else {
        return message.to_string();
    };
    let Some(wanted) = wanted(expected) else { return message.to_string() };
    let literal = found.split('`').nth(1).unwrap_or(found);
    if found.starts_with("invalid type: floating point") {
        format!("{literal} is not {wanted} (too large, or not whole)")
    } else if found.starts_with("invalid value: integer") {
        format!("{literal} is not {wanted}")
    } else {
        message.to_string()
    }
}

/// serde_json appends " at line L column C" to its messages; the error line already says it.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("queue-leader-isolated.json");
        std::fs::read_to_string(path).expect("a checked-in scenario")
    }

    #[test]
    fn a_byte_order_mark_is_accepted() {
        let text = format!("\u{feff}{}", example());
        assert_eq!(
            parse_scenario("bom.json", &text).expect("loads"),
            parse_scenario("plain.json", &example()).unwrap()
        );
    }

    #[test]
    fn a_file_that_is_no_object_says_what_a_scenario_is() {
        for (text, kind) in [("[]", "an array"), ("3", "a number"), ("\"x\"", "a string")] {
            let error = parse_scenario("shape.json", text).unwrap_err();
            assert!(error.message.starts_with(&format!("the file holds {kind};")), "{error}");
            assert!(error.message.contains("one JSON object"), "{error}");
            assert!(!error.message.contains("struct Scenario"), "{error}");
        }
    }

    #[test]
    fn numbers_out_of_range_say_what_was_wanted() {
        let seeds = "\"seeds\": [1, 2, 3]";
        assert!(example().contains(seeds), "the example lists its seeds");
        let text = example().replacen(seeds, "\"seeds\": [18446744073709551616]", 1);
        let error = parse_scenario("big.json", &text).unwrap_err();
        assert_eq!(error.field, "seeds[0]", "{error}");
        // serde_json reads the number as floating point; the message says what was wanted.
        assert!(
            error.message.ends_with(
                " is not a whole number from 0 to 18446744073709551615 (too large, or not whole)"
            ),
            "{error}"
        );
        assert!(!error.message.contains("floating point"), "{error}");
        let text = example().replacen(seeds, "\"seeds\": [-1]", 1);
        let error = parse_scenario("negative.json", &text).unwrap_err();
        assert_eq!(error.message, "-1 is not a whole number from 0 to 18446744073709551615");
    }

    #[test]
    fn other_messages_pass_through() {
        assert_eq!(friendly_number_message("missing field `name`"), "missing field `name`");
        assert_eq!(
            friendly_number_message("invalid type: string \"a\", expected u64"),
            "invalid type: string \"a\", expected u64"
        );
    }
}
