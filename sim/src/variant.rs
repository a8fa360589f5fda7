//! Design variants: one scenario, several settings of its design knobs, run on the same seeds
//! so their figures can be put side by side (`pessimist compare`).
//!
//! A variant overlays its `knobs` on the scenario's: objects merge key by key (so a variant
//! may change `knobs.queue.election_ticks` alone), any other value replaces the scenario's.
//!
//! **Invariant:** a variant changes only knobs; topology, workload, phases, faults, checks
//! and seeds stay the scenario's, so the same seed means the same load and the same faults.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::scenario::Scenario;

/// Variants one scenario may declare.
pub const VARIANTS_MAX: usize = 16;

/// One setting of the design knobs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Letters, digits, '-' or '_'; names the variant in reports.
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Overlaid on the scenario's knobs.
    #[serde(default)]
    pub knobs: Map<String, Value>,
}

/// Merges `overlay` into `base`: objects key by key, recursively; other values replace.
pub fn overlay_knobs(base: &mut Map<String, Value>, overlay: &Map<String, Value>) {
    for (key, value) in overlay {
        match (base.get_mut(key), value) {
            (Some(Value::Object(base)), Value::Object(overlay)) => overlay_knobs(base, overlay),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

impl Scenario {
    /// The scenario as variant `index` sets it: its knobs overlaid, named
    /// `<scenario>-<variant>`, with no variants of its own.
    pub fn with_variant(&self, index: usize) -> Scenario {
        let variant = &self.variants[index];
        let mut scenario = self.clone();
        overlay_knobs(&mut scenario.knobs, &variant.knobs);
        scenario.name = format!("{}-{}", self.name, variant.name);
        scenario.variants = Vec::new();
        scenario
    }
}

/// Checks the variants of a validated-otherwise scenario: names, count, and that each
/// variant's knobs make a valid scenario. The error is `(path, message)`.
pub(crate) fn validate(scenario: &Scenario) -> Result<(), (String, String)> {
    if scenario.variants.len() > VARIANTS_MAX {
        return Err(("variants".into(), format!("more than {VARIANTS_MAX} variants")));
    }
    let mut names = std::collections::BTreeSet::new();
    for (index, variant) in scenario.variants.iter().enumerate() {
        let path = format!("variants[{index}]");
        let valid = !variant.name.is_empty()
            && variant.name.len() <= 64
            && variant.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err((
                format!("{path}.name"),
                "must be 1 to 64 letters, digits, '-' or '_'".into(),
            ));
        }
        if !names.insert(variant.name.as_str()) {
            return Err((format!("{path}.name"), format!("duplicate variant {:?}", variant.name)));
        }
        // The variant's scenario has no variants, so this does not recurse further.
        scenario.with_variant(index).validate().map_err(|invalid| {
            match invalid.path.strip_prefix("knobs") {
                Some(field) => (format!("{path}.knobs{field}"), invalid.message),
                None => {
                    (invalid.path, format!("under variant {:?}: {}", variant.name, invalid.message))
                }
            }
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().expect("an object").clone()
    }

    #[test]
    fn overlay_merges_objects_and_replaces_the_rest() {
        let mut base =
            object(json!({"queue": {"tick_ms": 10, "election_ticks": 10}, "flag": true}));
        overlay_knobs(&mut base, &object(json!({"queue": {"election_ticks": 20}, "flag": false})));
        assert_eq!(
            Value::Object(base),
            json!({"queue": {"tick_ms": 10, "election_ticks": 20}, "flag": false})
        );
    }
}
