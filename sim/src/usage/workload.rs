//! The usage pipeline's final bill: once the image service's clients have drained, the
//! billing client asks the billing node for final runs that bill every window, open ones
//! too, until a run completes and bills nothing new, then reads the archive's ledger
//! ([`crate::usage::check`] compares it with what the API servers counted).
//!
//! It runs in the simulation and, over real TCP, against a real cluster (`cluster drive`).
//!
//! History shapes:
//! - `bill`: invoke `{close_all: true}`, ok with the run's report
//!   ([`pessimist_core::billing::RunReport`]), fail or info with the reason;
//! - `ledger`: invoke `{}`, ok with the archive's ledger ([`pessimist_core::billing::Ledger`]).

use std::time::Duration;

use pessimist_core::billing::BillingMessage;
use pessimist_core::history::{EventKind, History};
use pessimist_core::seams::net::{NetError, Transport};
use pessimist_core::store::StoreSettings;
use pessimist_core::usage::UsageSettings;
use serde_json::{json, Value};

/// The phase in which the final bill is drawn.
pub const PHASE_BILLING: &str = "billing";
/// How long one final run may take before the client gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
const LEDGER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long after the clients' last request the API servers' last flush, its retries
/// included, has surely landed: two flush intervals, every try's timeout, and a second.
pub fn settle_ms(usage: &UsageSettings, store: &StoreSettings) -> u64 {
    2 * usage.flush_interval_ms + u64::from(usage.store_attempts) * store.request_timeout_ms + 1_000
}

/// Where the final bill is asked for.
pub struct FinalBill {
    pub process: u64,
    pub transport: Transport<BillingMessage>,
    pub billing: String,
    pub archive: String,
    /// Waited before the first run: long enough for the API servers' last flush.
    pub settle: Duration,
    /// Waited between runs.
    pub pause: Duration,
    /// The phase's bound: no run starts after it.
    pub bound: Duration,
}

fn record_failure(history: &History, process: u64, f: &str, error: &NetError, value: Value) {
    let reason = error.to_string();
    match error {
        NetError::Timeout { .. } | NetError::ConnectionLost { .. } => {
            history.record(EventKind::Info { process, f: f.into(), value, error: reason })
        }
        _ => history.record(EventKind::Fail { process, f: f.into(), value, error: reason }),
    };
}

/// Final runs, then the ledger: see the module comment.
pub async fn final_bill(bill: FinalBill, history: History) {
    let FinalBill { process, transport, billing, archive, settle, pause, bound } = bill;
    let deadline = tokio::time::Instant::now() + bound;
    tokio::time::sleep(settle.min(bound)).await;
    loop {
        let invoked = json!({ "close_all": true });
        history.record(EventKind::Invoke { process, f: "bill".into(), value: invoked.clone() });
        let request = BillingMessage::Run { close_all: true };
        let done = match transport.call(&billing, &request, RUN_TIMEOUT).await {
            Ok(BillingMessage::Ran(report)) => {
                let settled = report.complete && report.billed.is_empty();
                let value = serde_json::to_value(&report).expect("a run report is JSON");
                history.record(EventKind::Ok { process, f: "bill".into(), value });
                settled
            }
            Ok(other) => {
                let error = format!("unexpected answer {other:?}");
                history.record(EventKind::Fail {
                    process,
                    f: "bill".into(),
                    value: invoked,
                    error,
                });
                false
            }
            Err(error) => {
                record_failure(&history, process, "bill", &error, invoked);
                false
            }
        };
        if done || tokio::time::Instant::now() + pause >= deadline {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    loop {
        history.record(EventKind::Invoke { process, f: "ledger".into(), value: json!({}) });
        match transport.call(&archive, &BillingMessage::Ledger, LEDGER_TIMEOUT).await {
            Ok(BillingMessage::LedgerIs(ledger)) => {
                let value = serde_json::to_value(&ledger).expect("a ledger is JSON");
                history.record(EventKind::Ok { process, f: "ledger".into(), value });
                return;
            }
            Ok(other) => {
                let error = format!("unexpected answer {other:?}");
                history.record(EventKind::Fail {
                    process,
                    f: "ledger".into(),
                    value: json!({}),
                    error,
                });
            }
            Err(error) => record_failure(&history, process, "ledger", &error, json!({})),
        }
        if tokio::time::Instant::now() + pause >= deadline {
            return;
        }
        tokio::time::sleep(pause).await;
    }
}
