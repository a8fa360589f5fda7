//! The usage store's scenarios show what they exist for: the figures behind each verdict.

// These tests drive the simulator, which exists only in the simulation build.
#![cfg(madsim)]

use pessimist_scenarios::{load_scenario, suite::workspace_root};
use pessimist_sim::run::{run_seed, SeedOutcome};
use pessimist_sim::scenario::Scenario;
use serde_json::Value;

fn scenario(name: &str) -> Scenario {
    let path = workspace_root().join(format!("scenarios/{name}.json"));
    load_scenario(&path).expect("the shipped scenarios load")
}

fn figure(outcome: &SeedOutcome, check: &str, name: &str) -> Value {
    outcome.checks[check].figures.get(name).cloned().unwrap_or(Value::Null)
}

fn number(outcome: &SeedOutcome, check: &str, name: &str) -> f64 {
    let value = figure(outcome, check, name);
    value.as_f64().unwrap_or_else(|| panic!("{check}.{name} is {value}"))
}

#[test]
fn a_sloppy_quorum_writes_through_partitions_and_hands_the_hints_off() {
    let partition = scenario("store-partition");
    let outcome = run_seed(&partition, 1);
    assert!(outcome.outcome.passed(), "{:?}", outcome.checks);
    assert!(number(&outcome, "replication", "hinted_acknowledgements") > 0.0);
    assert!(number(&outcome, "replication", "handed_off_keys") > 0.0);
    let sloppy = number(&outcome, "availability", "flush_ok_fraction_during_faults");
    assert!(sloppy >= 0.95, "{sloppy}");
    assert!(number(&outcome, "convergence", "keys_disagreeing_at_heal") > 0.0);
    assert!(number(&outcome, "convergence", "converge_ms_max") > 0.0);
    assert_eq!(number(&outcome, "no_acknowledged_loss", "lost_increments"), 0.0);
    // The same faults under a strict quorum: the minority side cannot write most keys.
    let strict = run_seed(&partition.with_variant(0), 1);
    assert!(strict.outcome.passed(), "{:?}", strict.checks);
    assert_eq!(figure(&strict, "replication", "hinted_acknowledgements"), Value::from(0));
    let strict_fraction = number(&strict, "availability", "flush_ok_fraction_during_faults");
    assert!(strict_fraction < sloppy, "strict {strict_fraction}, sloppy {sloppy}");
}

#[test]
fn a_crashed_replica_gets_the_writes_it_missed_handed_back() {
    let outcome = run_seed(&scenario("store-replica-crash"), 1);
    assert!(outcome.outcome.passed(), "{:?}", outcome.checks);
    assert!(number(&outcome, "replication", "handoffs") > 0.0);
    assert_eq!(number(&outcome, "availability", "flush_ok_fraction_during_faults"), 1.0);
}

/// R/W settings side by side under the same faults: 1/1 misses own writes (not promised,
/// so reported, not failed), 2/2 and 1/3 never do (promised and checked); 1/3 pays with
/// write availability.
#[test]
fn quorum_settings_side_by_side() {
    let (mut one_one_stale, mut writes) = (0.0, [0.0; 3]);
    for seed in 1..=3 {
        for (index, name) in ["store-rw-1-1", "store-rw-2-2", "store-rw-1-3"].iter().enumerate() {
            let outcome = run_seed(&scenario(name), seed);
            assert!(outcome.outcome.passed(), "{name} seed {seed}: {:?}", outcome.checks);
            let stale = number(&outcome, "read_your_writes", "stale_own_reads");
            let promised = figure(&outcome, "read_your_writes", "promised") == Value::Bool(true);
            assert_eq!(promised, index > 0, "{name}");
            if index == 0 {
                one_one_stale += stale;
            } else {
                assert_eq!(stale, 0.0, "{name} seed {seed}");
            }
            writes[index] += number(&outcome, "availability", "flush_ok_fraction_during_faults");
        }
    }
    assert!(one_one_stale > 0.0, "R=1, W=1 shows reads missing their own writes");
    assert!(writes[0] >= writes[1] && writes[1] > writes[2], "flush availability {writes:?}");
}
