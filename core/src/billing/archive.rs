//! The cold-storage archive: an append-only log of the usage records billing archived, and
//! the ledger of what they billed.
//!
//! A record is a usage key's state as billing read it: each writer's running total. The
//! archive remembers, per key and writer, the highest total it archived, and a record bills
//! only what lies beyond it (`sum over writers of max(0, total - archived)`). So a record
//! archived twice (a billing run retried after a crash, a delete that failed) bills nothing
//! the second time, and counts that arrived after an earlier read bill exactly their own
//! amount. Every record that bills something is appended to `archive.log` and fsynced before
//! the archive answers; on restart the ledger is rebuilt from the log. Nothing is ever
//! removed.
//!
//! History events: `archive_recovered`, `archive_stopped`.
//!
//! **Invariant:** the ledger holds exactly the records of the fsynced log; a writer's total
//! is billed at most once.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Amounts, BillingMessage, Ledger, RawRecord};
use crate::node::NodeContext;
use crate::seams::disk::Disk;
use crate::usage;

/// The role name of the archive node.
pub const ROLE: &str = "archive";
/// The archive's log on its disk.
pub const LOG_FILE: &str = "archive.log";
/// Keys the archive keeps totals for; beyond it, it refuses new keys.
pub const KEYS_MAX: usize = 1_000_000;

/// One archived record: the totals newly archived and what they billed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Archived {
    run: u64,
    key: String,
    period: u64,
    /// (writer, total) for the writers whose total grew.
    totals: Vec<(String, u64)>,
    amount: u64,
}

/// The ledger in memory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Books {
    records: u64,
    archived: BTreeMap<String, BTreeMap<String, u64>>,
    billed: Amounts,
}

impl Books {
    /// What `record` newly bills in run `run`, and the totals that grew: nothing it, or
    /// `pending` (records of the same request not applied yet), archived before.
    fn price(&self, run: u64, record: &RawRecord, pending: &[Archived]) -> Option<Archived> {
        let known = self.archived.get(&record.key);
        let mut totals = Vec::new();
        let mut amount = 0u64;
        for (writer, slot) in &record.counter.slots {
            let pending_total = pending
                .iter()
                .filter(|archived| archived.key == record.key)
                .flat_map(|archived| &archived.totals)
                .filter(|(pending_writer, _)| pending_writer == writer)
                .map(|(_, total)| *total);
            let before = known
                .and_then(|totals| totals.get(writer))
                .copied()
                .into_iter()
                .chain(pending_total)
                .max()
                .unwrap_or(0);
            if slot.total > before {
                amount += slot.total - before;
                totals.push((writer.clone(), slot.total));
            }
        }
        (amount > 0).then(|| Archived {
            run,
            key: record.key.clone(),
            period: record.period,
            totals,
            amount,
        })
    }

    fn apply(&mut self, archived: &Archived) {
        let totals = self.archived.entry(archived.key.clone()).or_default();
        for (writer, total) in &archived.totals {
            let mine = totals.entry(writer.clone()).or_default();
            *mine = (*mine).max(*total);
        }
        let account = usage::parse_key(&archived.key).map_or("", |(account, _)| account);
        *self.billed.entry(account.to_string()).or_default().entry(archived.period).or_default() +=
            archived.amount;
        self.records += 1;
    }

    /// The ledger as the archive answers it.
    pub fn ledger(&self) -> Ledger {
        Ledger {
            records: self.records,
            billed: self.billed.clone(),
            archived: self
                .archived
                .iter()
                .flat_map(|(key, totals)| {
                    totals.iter().map(|(writer, total)| (key.clone(), writer.clone(), *total))
                })
                .collect(),
        }
    }
}

/// The archive's books and log.
pub struct Archive {
    books: Books,
    disk: Disk,
}

impl Archive {
    /// The archive on `disk`, its books rebuilt from the log (a torn last record, never
    /// answered, is cut off). Corruption of the log is an error: the archive must not bill
    /// from records it cannot vouch for.
    pub async fn recover(disk: Disk) -> Result<(Archive, usize), String> {
        let log = disk.read(LOG_FILE).await.map_err(|error| error.to_string())?;
        let mut books = Books::default();
        for (position, bytes) in log.records.iter().enumerate() {
            let record: Archived = postcard::from_bytes(bytes)
                .map_err(|error| format!("{LOG_FILE}: record {position}: {error}"))?;
            books.apply(&record);
        }
        if log.torn_tail_bytes > 0 {
            disk.rewrite(LOG_FILE, &log.records).await.map_err(|error| error.to_string())?;
            disk.fsync(LOG_FILE).await.map_err(|error| error.to_string())?;
        }
        Ok((Archive { books, disk }, log.torn_tail_bytes))
    }

    pub fn books(&self) -> &Books {
        &self.books
    }

    /// Archives `records` of billing run `run`: per record the amount it newly bills, every
    /// one durable on return. On an error nothing was billed (the books are unchanged; some
    /// records may be in the log, and replaying them later bills what this call would have).
    pub async fn archive(&mut self, run: u64, records: &[RawRecord]) -> Result<Vec<u64>, String> {
        if let Some(record) = records.iter().find(|r| usage::parse_key(&r.key).is_none()) {
            return Err(format!("{:?} is not a usage key", record.key));
        }
        let new_keys: BTreeSet<&str> = records
            .iter()
            .map(|record| record.key.as_str())
            .filter(|key| !self.books.archived.contains_key(*key))
            .collect();
        if self.books.archived.len() + new_keys.len() > KEYS_MAX {
            return Err(format!("the archive holds {KEYS_MAX} keys, its bound"));
        }
        let mut amounts = Vec::with_capacity(records.len());
        let mut appended: Vec<Archived> = Vec::new();
        for record in records {
            match self.books.price(run, record, &appended) {
                Some(archived) => {
                    amounts.push(archived.amount);
                    appended.push(archived);
                }
                None => amounts.push(0),
            }
        }
        if appended.is_empty() {
            return Ok(amounts);
        }
        for archived in &appended {
            let bytes = postcard::to_stdvec(archived).expect("postcard encoding of a record");
            self.disk.append(LOG_FILE, &bytes).await.map_err(|error| error.to_string())?;
        }
        self.disk.fsync(LOG_FILE).await.map_err(|error| error.to_string())?;
        for archived in &appended {
            self.books.apply(archived);
        }
        Ok(amounts)
    }
}

/// Runs the archive node: one request at a time, in arrival order.
pub async fn serve(context: NodeContext) {
    let recorder = context.recorder.clone();
    let stop = |reason: String| recorder.record("archive_stopped", json!({ "reason": reason }));
    let (mut archive, torn_tail_bytes) = match Archive::recover(context.disk.clone()).await {
        Ok(found) => found,
        Err(reason) => return stop(format!("recovery: {reason}")),
    };
    recorder.record(
        "archive_recovered",
        json!({ "records": archive.books.records, "keys": archive.books.archived.len(),
                "torn_tail_bytes": torn_tail_bytes }),
    );
    let (transport, mut inbox) = match context.bind::<BillingMessage>().await {
        Ok(bound) => bound,
        Err(reason) => return stop(reason),
    };
    while let Some(incoming) = inbox.recv().await {
        let reply = match &incoming.body {
            BillingMessage::Archive { run, records } => {
                match archive.archive(*run, records).await {
                    Ok(amounts) => BillingMessage::Archived { amounts },
                    Err(reason) => BillingMessage::Failed { reason },
                }
            }
            BillingMessage::Ledger => BillingMessage::LedgerIs(archive.books.ledger()),
            other => {
                BillingMessage::Failed { reason: format!("the archive does not take {other:?}") }
            }
        };
        if incoming.wants_reply() {
            let _ = transport.reply(&incoming, &reply).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seams::disk::{DiskTiming, SimDisk};
    use crate::seams::rng::rng_for;
    use crate::store::counter::{Counter, Slot};

    fn record(key: &str, slots: &[(&str, u64)]) -> RawRecord {
        let mut counter = Counter::default();
        for (writer, total) in slots {
            counter.merge(&Counter::from_slot(writer, Slot { batch: 1, total: *total }));
        }
        RawRecord { key: key.to_string(), period: 0, counter }
    }

    #[madsim::test]
    async fn a_total_is_billed_once_and_survives_a_crash() {
        let (sim, control) = SimDisk::new(DiskTiming::default(), rng_for(1, "archive"));
        let disk = Disk::Sim(sim);
        let (mut archive, _) = Archive::recover(disk.clone()).await.unwrap();
        let key = usage::usage_key("acct", 0);
        assert_eq!(archive.archive(1, &[record(&key, &[("a", 3), ("b", 2)])]).await, Ok(vec![5]));
        // Retried: nothing more. Later counts: only them.
        assert_eq!(archive.archive(2, &[record(&key, &[("a", 3), ("b", 2)])]).await, Ok(vec![0]));
        assert_eq!(archive.archive(3, &[record(&key, &[("a", 4), ("b", 2)])]).await, Ok(vec![1]));
        assert_eq!(archive.books().ledger().billed["acct"][&0], 6);
        assert!(archive.archive(4, &[record("not-usage", &[("a", 1)])]).await.is_err());
        control.crash();
        let (recovered, _) = Archive::recover(disk).await.unwrap();
        assert_eq!(recovered.books(), archive.books());
        assert_eq!(
            recovered.books().ledger().archived,
            [(key.clone(), "a".into(), 4), (key, "b".into(), 2)]
        );
    }
}
