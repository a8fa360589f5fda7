//! The first screen of a report says what failed, what failed as expected and what could not
//! decide, each in its own box and word, and a fault band is labelled with its kind and
//! target: checked on the page's structure (its elements and classes), not on pixels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pessimist_core::history::{to_json_lines, Event, EventKind};
use pessimist_sim::check::{Outcome, Status, Verdict};
use pessimist_sim::summary::{RunSummary, SeedSummary};
use serde_json::json;

/// A run of 3 s: an operation every 100 ms, and `api-1` crashed from 1 s to 2 s.
fn history() -> Vec<Event> {
    let mut events = Vec::new();
    let mut push = |time_ms: u64, kind: EventKind| {
        events.push(Event { index: events.len() as u64, time_us: time_ms * 1000, kind });
    };
    push(0, EventKind::Phase { name: "faults".into(), detail: json!({}) });
    for step in 0..30u64 {
        let at_ms = 50 + step * 100;
        if at_ms == 1050 {
            let detail = json!({"kind": "crash", "node": "api-1"});
            push(1000, EventKind::FaultStart { fault: 7, kind: "crash".into(), detail });
        }
        if at_ms == 2050 {
            push(2000, EventKind::FaultEnd { fault: 7, kind: "crash".into() });
        }
        push(at_ms, EventKind::Invoke { process: 0, f: "write".into(), value: json!(step) });
        push(at_ms + 20, EventKind::Ok { process: 0, f: "write".into(), value: json!(step) });
    }
    events
}

fn verdict(status: Status) -> Verdict {
    let mut verdict = match status {
        Status::Unknown => Verdict::unknown(json!("budget spent"), BTreeMap::new()),
        Status::Passed => Verdict::from_violations(Vec::new(), BTreeMap::new()),
        _ => Verdict::from_violations(vec!["broken".into()], BTreeMap::new()),
    };
    verdict.status = status;
    verdict
}

/// A scenario directory with one seed whose `check` ended in `status`.
fn scenario(root: &Path, name: &str, check: &str, status: Status) {
    let directory = root.join(name);
    std::fs::create_dir_all(directory.join("histories")).unwrap();
    std::fs::write(directory.join("histories/seed-1.jsonl"), to_json_lines(&history())).unwrap();
    let checks = BTreeMap::from([
        (check.to_string(), verdict(status)),
        ("durability".to_string(), verdict(Status::Passed)),
    ]);
    let outcome = Outcome::of_checks(checks.values());
    let seed = SeedSummary {
        seed: 1,
        history_hash: "hash".into(),
        outcome,
        checks,
        replay: format!("pessimist replay {name}.json --seed 1"),
        shrink: None,
        history: Some("histories/seed-1.jsonl".into()),
        fault_events: 1,
        history_events: 61,
    };
    let run = RunSummary {
        must_happen: Vec::new(),
        scenario: name.into(),
        file: format!("{name}.json"),
        description: format!("What {name} shows."),
        heal_ok_fraction_min: Some(0.95),
        outcome,
        seeds: vec![seed],
    };
    std::fs::write(directory.join("summary.json"), serde_json::to_string(&run).unwrap()).unwrap();
}

/// A fresh directory of the test's own: the tests of this file run in parallel threads of one
/// process, so the process id alone would let one wipe another's files.
fn scratch(test: &str) -> PathBuf {
    let directory =
        std::env::temp_dir().join(format!("pessimist-glance-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

/// The inside of the first element that starts with `open` (no nesting of its own tag).
fn element<'a>(html: &'a str, open: &str, close: &str) -> &'a str {
    let start = html.find(open).unwrap_or_else(|| panic!("no {open:?} in the page"));
    let end = html[start..].find(close).expect("the element closes") + start;
    &html[start..end]
}

#[test]
fn the_first_screen_tells_failed_expected_and_inconclusive_apart() {
    let root = scratch("the_first_screen_tells_failed_expected_and_inconclusive_apart");
    scenario(&root, "broken-design", "pill_quarantine", Status::FailedAsExpected);
    scenario(&root, "undecided", "linearizability", Status::Unknown);
    scenario(&root, "regressed", "no_double_ack", Status::Failed);
    scenario(&root, "healthy", "no_double_ack", Status::Passed);
    let written = pessimist_reports::write_report(&root, &root).expect("report");
    let html = std::fs::read_to_string(&written.html).unwrap();

    let glance = element(&html, "<section id=\"glance\">", "</section>");
    let failed = element(glance, "<div class=\"box failed\">", "</ul>");
    assert!(failed.contains("<a href=\"#regressed\">regressed</a>: no_double_ack (1 of 1 seeds)"));
    assert!(!failed.contains("broken-design") && !failed.contains("undecided"), "{failed}");
    let expected = element(glance, "<div class=\"box expected\">", "</ul>");
    assert!(expected.contains("<h3 class=\"expected\">Failed as expected (1)</h3>"), "{expected}");
    assert!(expected.contains("<a href=\"#broken-design\">broken-design</a>: pill_quarantine"));
    let inconclusive = element(glance, "<div class=\"box inconclusive\">", "</ul>");
    assert!(inconclusive.contains("<a href=\"#undecided\">undecided</a>: linearizability"));
    let passed = element(glance, "<div class=\"box passed\">", "</div>");
    assert!(passed.contains("#healthy") && !passed.contains("#broken-design"), "{passed}");

    // The expected failure is violet and says so wherever its verdict shows, never "passed".
    let heading = element(&html, "<h2 id=\"broken-design\">", "</h2>");
    assert!(heading.contains("<span class=\"expected\">failed as expected</span>"), "{heading}");
    let row = element(&html, "<td><a href=\"#broken-design\">", "</tr>");
    assert!(row.contains("<span class=\"expected\">failed as expected</span>"), "{row}");
    assert!(row.contains("What broken-design shows."), "the description: {row}");
    let heading = element(&html, "<h2 id=\"undecided\">", "</h2>");
    assert!(heading.contains("<span class=\"inconclusive\">INCONCLUSIVE</span>"), "{heading}");

    // The fault band is labelled with its id, kind and target, and the plan lists it.
    let section = element(&html, "<h2 id=\"healthy\">", "<h3>Across seeds</h3>");
    // plotters writes a text element's content on a line of its own.
    assert!(section.contains(">\n#7 crash api-1\n</text>"), "the band's label");
    let plan = element(section, "<table class=\"plan\">", "</table>");
    assert!(plan.contains("crash</td><td>api-1</td>"), "{plan}");
    assert!(plan.contains("<td class=\"n\">1 s</td><td class=\"n\">2 s</td>"), "{plan}");
    // The SLO line, where the scenario sets one.
    assert!(section.contains("SLO from the heal: &gt;= 95%"), "the SLO's legend");
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_page_without_expected_failures_shows_no_such_box() {
    let root = scratch("a_page_without_expected_failures_shows_no_such_box").join("plain");
    std::fs::create_dir_all(&root).unwrap();
    scenario(&root, "healthy", "no_double_ack", Status::Passed);
    let written = pessimist_reports::write_report(&root, &root).expect("report");
    let html = std::fs::read_to_string(&written.html).unwrap();
    for absent in ["box failed", "box expected", "box inconclusive", "class=\"expected\""] {
        assert!(!html.contains(absent), "a clean run shows no {absent:?}");
    }
    assert!(html.contains("<h3 class=\"passed\">Passed (1)</h3>"));
    let _ = std::fs::remove_dir_all(root);
}
