//! The checked-in JSON Schema of scenario files is the one the types generate, and every
//! scenario file in `scenarios/` follows it and loads.

use std::path::{Path, PathBuf};

use pessimist_scenarios::{load_scenario, scenario_schema, suite::workspace_root};

const SCHEMA_URL: &str = "file:///pessimist/scenarios/schema.json";

fn checked_in_schema() -> String {
    std::fs::read_to_string(workspace_root().join("scenarios/schema.json"))
        .expect("scenarios/schema.json is checked in")
}

/// Every `*.json` under `scenarios/` but the schema itself.
fn scenario_files(directory: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(directory).expect("the directory lists") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            scenario_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "json")
            && path.file_name().is_some_and(|name| name != "schema.json")
        {
            found.push(path);
        }
    }
}

fn compiled_schema() -> (boon::Schemas, boon::SchemaIndex) {
    let schema: serde_json::Value =
        serde_json::from_str(&checked_in_schema()).expect("the schema is JSON");
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler.add_resource(SCHEMA_URL, schema).expect("the schema is added");
    let index = compiler.compile(SCHEMA_URL, &mut schemas).expect("the schema compiles");
    (schemas, index)
}

#[test]
fn the_checked_in_schema_is_up_to_date() {
    assert!(
        checked_in_schema() == scenario_schema(),
        "scenarios/schema.json is stale: regenerate it with \
         `cargo run --release -- schema --out scenarios/schema.json`"
    );
}

#[test]
fn every_scenario_file_follows_the_schema_and_loads() {
    let (schemas, index) = compiled_schema();
    let mut files = Vec::new();
    scenario_files(&workspace_root().join("scenarios"), &mut files);
    files.sort();
    assert!(files.len() >= 13, "found only {files:?}");
    for file in &files {
        let instance: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        if let Err(error) = schemas.validate(&instance, index) {
            panic!("{} does not follow the schema: {error}", file.display());
        }
        load_scenario(file).unwrap_or_else(|error| panic!("{error}"));
    }
}

#[test]
fn the_schema_rejects_what_the_loader_rejects_by_type() {
    let (schemas, index) = compiled_schema();
    let good: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("scenarios/seams/probe-crashes.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(schemas.validate(&good, index).is_ok());
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 4] = [
        ("an unknown top-level field", |value| value["colour"] = "blue".into()),
        ("an unknown fault kind", |value| {
            value["faults"]["plan"][0]["fault"]["kind"] = "meteor".into()
        }),
        ("a string where a number belongs", |value| value["phases"]["faults_ms"] = "ten".into()),
        ("a missing workload", |value| {
            value.as_object_mut().unwrap().remove("workload");
        }),
    ];
    for (what, edit) in edits {
        let mut bad = good.clone();
        edit(&mut bad);
        assert!(schemas.validate(&bad, index).is_err(), "the schema accepts {what}");
        let text = serde_json::to_string(&bad).unwrap();
        assert!(
            pessimist_scenarios::parse_scenario("bad.json", &text).is_err(),
            "the loader accepts {what}"
        );
    }
}

#[test]
fn the_schema_sits_among_the_scenarios_but_is_none() {
    let files = pessimist_scenarios::suite::default_suite_files().unwrap();
    assert!(files.len() >= 8, "{files:?}");
    for file in &files {
        assert_ne!(file.file_name().unwrap(), "schema.json");
        load_scenario(file).unwrap_or_else(|error| panic!("{error}"));
    }
}
