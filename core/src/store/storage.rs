//! A store node's data: in memory ([`StoreData`], pure) and on the disk seam ([`Durable`]).
//!
//! A node keeps two maps: the keys it is a *home* replica of, and *hints*: states it holds
//! for a home replica a coordinator could not reach (a sloppy quorum), to hand off when that
//! replica answers again. Each home key also feeds a Merkle tree per ring partition: a
//! partition has [`LEAVES`] leaf buckets (by the key's hash), a leaf is the XOR of its keys'
//! entry hashes (kept up to date on every merge), and the root hashes the leaves. Two
//! replicas compare roots, then leaves, then exchange only the keys of the buckets that
//! differ (anti-entropy).
//!
//! On disk a node keeps `store.wal`, a write-ahead log of the states it merged
//! ([`WalRecord`]), and `store.snap`, a snapshot of both maps taken every `snapshot_every`
//! records (written and fsynced, then the log removed). Because merging is idempotent,
//! replaying a log over a snapshot that already holds some of it is harmless: a crash between
//! the snapshot and the log's removal loses nothing and doubles nothing.
//!
//! **Invariant:** the node's driver answers a request that changed the data only after the
//! records for it are fsynced, so an acknowledged write survives any crash; a crash loses
//! exactly the un-fsynced records, none of them acknowledged.
//! **Invariant:** the leaves always equal the leaves recomputed from the home map
//! (checked by the tests after every kind of change).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::counter::{Counter, WRITERS_PER_KEY_MAX, WRITER_ID_BYTES_MAX};
use super::msg::{Dump, ReplicaReply, ReplicaRequest};
use super::ring::{hash64, Ring};
use crate::seams::disk::{Disk, DiskError};

/// The write-ahead log's file.
pub const WAL_FILE: &str = "store.wal";
/// The snapshot's file.
pub const SNAPSHOT_FILE: &str = "store.snap";
/// Leaf buckets per partition in the Merkle trees.
pub const LEAVES: usize = 16;
/// Longest key.
pub const KEY_BYTES_MAX: usize = 512;
/// Largest page a scan answers.
pub const SCAN_KEYS_MAX: usize = 10_000;
/// Most states one anti-entropy exchange or one handoff carries; the rest waits for the next
/// round.
pub const EXCHANGE_ENTRIES_MAX: usize = 2_048;

/// One record of the write-ahead log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WalRecord {
    /// A state merged into a home key.
    Home { key: String, update: Counter },
    /// A state merged into the hints held for `home`.
    Hint { home: String, key: String, update: Counter },
    /// Hints `home` acknowledged: each dropped if its state still has this digest.
    Delivered { home: String, entries: Vec<(String, u64)> },
}

/// Why a node refused to store something. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{key:?} is not a key this node is a home replica of")]
    NotHome { key: String },
    #[error("the node holds {keys_max} keys, its bound")]
    Full { keys_max: usize },
    #[error("{key:?} would have more than {WRITERS_PER_KEY_MAX} writers")]
    TooManyWriters { key: String },
    #[error("bad key or writer id: {reason}")]
    BadInput { reason: String },
}

/// A node's data in memory: home keys, hints, and the Merkle leaves of the home keys.
#[derive(Clone, Debug)]
pub struct StoreData {
    me: String,
    ring: Arc<Ring>,
    keys_max: usize,
    home: BTreeMap<String, Counter>,
    /// Home node → key → state held for it.
    hints: BTreeMap<String, BTreeMap<String, Counter>>,
    hint_entries: usize,
    /// Partition → leaf digests (absent: every leaf zero).
    leaves: BTreeMap<u32, [u64; LEAVES]>,
}

/// Where a key sits in the Merkle trees: (partition, leaf bucket).
pub fn bucket_of(ring: &Ring, key: &str) -> (u32, u32) {
    let position = hash64(key.as_bytes());
    (ring.partition_of_hash(position), (position % LEAVES as u64) as u32)
}

fn entry_hash(key: &str, counter: &Counter) -> u64 {
    let mut bytes = Vec::with_capacity(key.len() + 8);
    bytes.extend_from_slice(key.as_bytes());
    bytes.extend_from_slice(&counter.digest().to_le_bytes());
    hash64(&bytes)
}

fn root_of(leaves: &[u64; LEAVES]) -> u64 {
    let bytes: Vec<u8> = leaves.iter().flat_map(|leaf| leaf.to_le_bytes()).collect();
    hash64(&bytes)
}

fn check_input(key: &str, update: &Counter) -> Result<(), Refusal> {
    if key.is_empty() || key.len() > KEY_BYTES_MAX {
        return Err(Refusal::BadInput { reason: format!("key of {} bytes", key.len()) });
    }
    let long = update
        .slots
        .keys()
        .chain(update.floors.keys())
        .find(|w| w.is_empty() || w.len() > WRITER_ID_BYTES_MAX);
    if let Some(writer) = long {
        return Err(Refusal::BadInput { reason: format!("writer id of {} bytes", writer.len()) });
    }
    Ok(())
}

impl StoreData {
    /// An empty node `me` of `ring`, holding at most `keys_max` home keys and as many hints.
    pub fn new(me: &str, ring: Arc<Ring>, keys_max: usize) -> StoreData {
        assert!(ring.nodes().iter().any(|node| node == me), "{me} is not on the ring");
        assert!(keys_max > 0, "keys_max must be positive");
        StoreData {
            me: me.to_string(),
            ring,
            keys_max,
            home: BTreeMap::new(),
            hints: BTreeMap::new(),
            hint_entries: 0,
            leaves: BTreeMap::new(),
        }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }

    /// Home keys held.
    pub fn home_keys(&self) -> usize {
        self.home.len()
    }

    /// Hinted states held, over every home node.
    pub fn hints_pending(&self) -> usize {
        self.hint_entries
    }

    /// The state of a home key.
    pub fn home_state(&self, key: &str) -> Option<&Counter> {
        self.home.get(key)
    }

    /// Merges `update` into home key `key`; whether it changed anything.
    pub fn merge_home(&mut self, key: &str, update: &Counter) -> Result<bool, Refusal> {
        check_input(key, update)?;
        if !self.ring.is_home(&self.me, key) {
            return Err(Refusal::NotHome { key: key.to_string() });
        }
        let existing = self.home.get(key);
        if existing.is_none() && self.home.len() >= self.keys_max {
            return Err(Refusal::Full { keys_max: self.keys_max });
        }
        let old_hash = existing.map(|state| entry_hash(key, state));
        let mut merged = existing.cloned().unwrap_or_default();
        if !merged.merge(update) {
            return Ok(false);
        }
        if merged.writers() > WRITERS_PER_KEY_MAX {
            return Err(Refusal::TooManyWriters { key: key.to_string() });
        }
        let (partition, bucket) = bucket_of(&self.ring, key);
        let leaves = self.leaves.entry(partition).or_insert([0; LEAVES]);
        leaves[bucket as usize] ^= old_hash.unwrap_or(0) ^ entry_hash(key, &merged);
        self.home.insert(key.to_string(), merged);
        Ok(true)
    }

    /// Merges `update` into the hint for `key` held for `home` (into the home key when
    /// `home` is this node).
    pub fn merge_hint(&mut self, home: &str, key: &str, update: &Counter) -> Result<bool, Refusal> {
        if home == self.me {
            return self.merge_home(key, update);
        }
        check_input(key, update)?;
        if !self.ring.is_home(home, key) {
            return Err(Refusal::BadInput { reason: format!("{home} is not a home of {key:?}") });
        }
        let held = self.hints.get(home).and_then(|keys| keys.get(key));
        if held.is_none() && self.hint_entries >= self.keys_max {
            return Err(Refusal::Full { keys_max: self.keys_max });
        }
        let mut merged = held.cloned().unwrap_or_default();
        if !merged.merge(update) {
            return Ok(false);
        }
        if merged.writers() > WRITERS_PER_KEY_MAX {
            return Err(Refusal::TooManyWriters { key: key.to_string() });
        }
        if held.is_none() {
            self.hint_entries += 1;
        }
        self.hints.entry(home.to_string()).or_default().insert(key.to_string(), merged);
        Ok(true)
    }

    /// What this node knows of `key`: its home state merged with every hint it holds for it.
    pub fn state(&self, key: &str) -> Option<Counter> {
        let mut found = self.home.get(key).cloned();
        for keys in self.hints.values() {
            if let Some(hint) = keys.get(key) {
                found.get_or_insert_with(Counter::default).merge(hint);
            }
        }
        found
    }

    /// States of the keys in `[start, end)`, home and hinted merged, at most `limit`; and
    /// whether more keys follow.
    pub fn scan(
        &self,
        start: &str,
        end: Option<&str>,
        limit: usize,
    ) -> (Vec<(String, Counter)>, bool) {
        let limit = limit.clamp(1, SCAN_KEYS_MAX);
        let in_range = |key: &String| end.is_none_or(|end| key.as_str() < end);
        let mut found: BTreeMap<String, Counter> = BTreeMap::new();
        let sources = std::iter::once(&self.home).chain(self.hints.values());
        for source in sources {
            let range = source
                .range::<str, _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded));
            for (key, state) in range.take_while(|(key, _)| in_range(key)).take(limit + 1) {
                found.entry(key.clone()).or_default().merge(state);
            }
        }
        let truncated = found.len() > limit;
        (found.into_iter().take(limit).collect(), truncated)
    }

    /// Home nodes this node holds hints for, sorted.
    pub fn hinted_homes(&self) -> Vec<String> {
        self.hints
            .iter()
            .filter(|(_, keys)| !keys.is_empty())
            .map(|(home, _)| home.clone())
            .collect()
    }

    /// Up to `max` hinted states held for `home`, in key order.
    pub fn hints_for(&self, home: &str, max: usize) -> Vec<(String, Counter)> {
        self.hints
            .get(home)
            .map(|keys| keys.iter().take(max).map(|(k, c)| (k.clone(), c.clone())).collect())
            .unwrap_or_default()
    }

    /// `home` acknowledged these hints: drops each one whose state still has the digest
    /// delivered (a hint merged again since then stays, to be delivered again). Returns how
    /// many were dropped.
    pub fn delivered(&mut self, home: &str, entries: &[(String, u64)]) -> usize {
        let Some(keys) = self.hints.get_mut(home) else { return 0 };
        let mut dropped = 0;
        for (key, digest) in entries {
            if keys.get(key).is_some_and(|state| state.digest() == *digest) {
                keys.remove(key);
                dropped += 1;
            }
        }
        if keys.is_empty() {
            self.hints.remove(home);
        }
        self.hint_entries -= dropped;
        dropped
    }

    /// The Merkle root of each of `partitions`.
    pub fn roots(&self, partitions: &[u32]) -> Vec<(u32, u64)> {
        partitions.iter().map(|&p| (p, root_of(&self.leaves_of(p)))).collect()
    }

    /// The leaf digests of `partition`.
    pub fn leaves_of(&self, partition: u32) -> [u64; LEAVES] {
        self.leaves.get(&partition).copied().unwrap_or([0; LEAVES])
    }

    /// Given a peer's roots, the partitions whose roots differ here, with this node's leaves
    /// (partitions this node is not home of are left out).
    pub fn differing_roots(&self, theirs: &[(u32, u64)]) -> Vec<(u32, Vec<u64>)> {
        theirs
            .iter()
            .filter(|(p, _)| {
                *p < self.ring.partitions() && self.ring.is_home_of_partition(&self.me, *p)
            })
            .filter(|(p, root)| root_of(&self.leaves_of(*p)) != *root)
            .map(|(p, _)| (*p, self.leaves_of(*p).to_vec()))
            .collect()
    }

    /// Given a peer's leaves, the buckets whose leaves differ here.
    pub fn differing_buckets(&self, theirs: &[(u32, Vec<u64>)]) -> Vec<(u32, u32)> {
        let mut buckets = Vec::new();
        for (partition, leaves) in theirs {
            let mine = self.leaves_of(*partition);
            for (bucket, leaf) in leaves.iter().enumerate().take(LEAVES) {
                if mine[bucket] != *leaf {
                    buckets.push((*partition, bucket as u32));
                }
            }
        }
        buckets
    }

    /// Home states in `buckets`, at most [`EXCHANGE_ENTRIES_MAX`].
    pub fn entries_in(&self, buckets: &[(u32, u32)]) -> Vec<(String, Counter)> {
        let wanted: BTreeSet<(u32, u32)> = buckets.iter().copied().collect();
        if wanted.is_empty() {
            return Vec::new();
        }
        self.home
            .iter()
            .filter(|(key, _)| wanted.contains(&bucket_of(&self.ring, key)))
            .take(EXCHANGE_ENTRIES_MAX)
            .map(|(key, state)| (key.clone(), state.clone()))
            .collect()
    }

    /// This node's data for a monitor.
    pub fn dump(&self, full: bool) -> Dump {
        let home = self
            .home
            .iter()
            .map(|(key, state)| (key.clone(), state.digest(), full.then(|| state.clone())))
            .collect();
        let hinted = self
            .hints
            .iter()
            .flat_map(|(home, keys)| {
                keys.iter().map(move |(key, state)| {
                    (home.clone(), key.clone(), full.then(|| state.clone()))
                })
            })
            .collect();
        Dump { home, hinted }
    }

    /// Applies one log record (live or in replay). Refusals leave the data as it was.
    pub fn apply(&mut self, record: &WalRecord) -> Result<bool, Refusal> {
        match record {
            WalRecord::Home { key, update } => self.merge_home(key, update),
            WalRecord::Hint { home, key, update } => self.merge_hint(home, key, update),
            WalRecord::Delivered { home, entries } => Ok(self.delivered(home, entries) > 0),
        }
    }

    /// Serves a replica request: the answer, and the log records to make durable before the
    /// answer leaves. Handoffs and exchanges stop at the first refusal; what was merged
    /// before it is logged.
    pub fn handle(&mut self, request: &ReplicaRequest) -> (ReplicaReply, Vec<WalRecord>) {
        let refused = |refusal: Refusal| ReplicaReply::Refused { reason: refusal.to_string() };
        let mut records = Vec::new();
        let reply = match request {
            ReplicaRequest::Put { key, update, hint_for } => {
                let record = match hint_for {
                    Some(home) if home != &self.me => WalRecord::Hint {
                        home: home.clone(),
                        key: key.clone(),
                        update: update.clone(),
                    },
                    _ => WalRecord::Home { key: key.clone(), update: update.clone() },
                };
                match self.apply(&record) {
                    Ok(changed) => {
                        if changed {
                            records.push(record);
                        }
                        ReplicaReply::Stored
                    }
                    Err(refusal) => refused(refusal),
                }
            }
            ReplicaRequest::Get { key } => ReplicaReply::Got { counter: self.state(key) },
            ReplicaRequest::Scan { start, end, limit } => {
                let (entries, truncated) = self.scan(start, end.as_deref(), *limit as usize);
                ReplicaReply::Scanned { entries, truncated }
            }
            ReplicaRequest::Handoff { entries } => {
                match self.merge_entries(entries, &mut records) {
                    Ok(()) => ReplicaReply::Stored,
                    Err(refusal) => refused(refusal),
                }
            }
            ReplicaRequest::Roots { roots } => {
                ReplicaReply::Leaves { differing: self.differing_roots(roots) }
            }
            ReplicaRequest::Exchange { buckets, entries } => {
                match self.merge_entries(entries, &mut records) {
                    Ok(()) => ReplicaReply::Entries { entries: self.entries_in(buckets) },
                    Err(refusal) => refused(refusal),
                }
            }
            ReplicaRequest::Dump { full } => ReplicaReply::Dumped(self.dump(*full)),
        };
        (reply, records)
    }

    /// Merges home states (a handoff, an exchange), adding a record per change.
    pub fn merge_entries(
        &mut self,
        entries: &[(String, Counter)],
        records: &mut Vec<WalRecord>,
    ) -> Result<(), Refusal> {
        for (key, update) in entries {
            if self.merge_home(key, update)? {
                records.push(WalRecord::Home { key: key.clone(), update: update.clone() });
            }
        }
        Ok(())
    }

    /// The leaves recomputed from the home map (for checks of the incremental ones).
    pub fn recomputed_leaves(&self) -> BTreeMap<u32, [u64; LEAVES]> {
        let mut leaves: BTreeMap<u32, [u64; LEAVES]> = BTreeMap::new();
        for (key, state) in &self.home {
            let (partition, bucket) = bucket_of(&self.ring, key);
            leaves.entry(partition).or_insert([0; LEAVES])[bucket as usize] ^=
                entry_hash(key, state);
        }
        leaves
    }

    /// Whether the incremental leaves agree with the home map (an XOR can cancel a whole
    /// partition to zero; zero leaves and absent ones are the same).
    pub fn leaves_consistent(&self) -> bool {
        let recomputed = self.recomputed_leaves();
        let partitions: BTreeSet<u32> =
            recomputed.keys().chain(self.leaves.keys()).copied().collect();
        partitions
            .into_iter()
            .all(|p| recomputed.get(&p).copied().unwrap_or([0; LEAVES]) == self.leaves_of(p))
    }

    fn snapshot(&self) -> Vec<u8> {
        let snapshot = SnapshotData {
            home: self.home.iter().map(|(k, c)| (k.clone(), c.clone())).collect(),
            hints: self
                .hints
                .iter()
                .flat_map(|(home, keys)| {
                    keys.iter().map(move |(k, c)| (home.clone(), k.clone(), c.clone()))
                })
                .collect(),
        };
        postcard::to_stdvec(&snapshot).expect("postcard encoding of a store snapshot")
    }
}

#[derive(Serialize, Deserialize)]
struct SnapshotData {
    home: Vec<(String, Counter)>,
    hints: Vec<(String, String, Counter)>,
}

/// Why a node could not recover its data from disk.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error("{file}: record {record} does not decode: {reason}")]
    Decode { file: &'static str, record: usize, reason: String },
}

/// What recovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub wal_records: usize,
    /// Records the log held that the data refused on replay (a bound lowered since).
    pub refused_records: usize,
    /// Bytes of a torn last record cut off (an interrupted write, never acknowledged).
    pub torn_tail_bytes: usize,
    /// The corrupt records found, one per damaged file: what lay past each was dropped.
    pub corruption: Vec<String>,
}

/// The node's data on the disk seam.
#[derive(Clone, Debug)]
pub struct Durable {
    disk: Disk,
    snapshot_every: usize,
    wal_records: usize,
}

impl Durable {
    /// The data of `disk`, snapshotted every `snapshot_every` log records.
    pub fn new(disk: Disk, snapshot_every: usize) -> Durable {
        assert!(snapshot_every > 0, "snapshot_every must be positive");
        Durable { disk, snapshot_every, wal_records: 0 }
    }

    /// Appends records to the log (pending until [`Durable::sync`]).
    pub async fn append(&mut self, records: &[WalRecord]) -> Result<(), DiskError> {
        for record in records {
            let bytes = postcard::to_stdvec(record).expect("postcard encoding of a WAL record");
            self.disk.append(WAL_FILE, &bytes).await?;
            self.wal_records += 1;
        }
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub async fn sync(&self) -> Result<(), DiskError> {
        self.disk.fsync(WAL_FILE).await
    }

    /// After a sync: when the log is long, writes and fsyncs a snapshot of `data`, then
    /// removes the log. A crash in between replays the old log over the new snapshot, which
    /// merging makes harmless.
    pub async fn maybe_snapshot(&mut self, data: &StoreData) -> Result<bool, DiskError> {
        if self.wal_records < self.snapshot_every {
            return Ok(false);
        }
        self.disk.write(SNAPSHOT_FILE, &data.snapshot()).await?;
        self.disk.fsync(SNAPSHOT_FILE).await?;
        self.disk.remove(WAL_FILE).await?;
        self.wal_records = 0;
        Ok(true)
    }

    /// Rebuilds the data of node `me` from disk. A torn last log record (never fsynced, so
    /// never acknowledged) is cut off and the log rewritten without it.
    ///
    /// Corruption of fsynced data (a record failing its checksum) costs the node what lies
    /// past it: the whole records before it are kept, the rest dropped (a corrupt snapshot is
    /// dropped whole), and the files rewritten so; [`Recovered::corruption`] says what was
    /// found. The node's peers give the keys back: every acknowledged write is on W replicas,
    /// fsynced, and anti-entropy and read repair merge it back, by the counters' maximum,
    /// which a replica missing some updates cannot lower. That is why the store repairs from
    /// its peers while a Raft replica with a corrupt log stops for good: a Raft replica that
    /// forgot an entry or a vote it acknowledged can let a later leader lose a committed
    /// entry, while a store replica that forgot a count only lags until repaired.
    pub async fn recover(
        &mut self,
        me: &str,
        ring: Arc<Ring>,
        keys_max: usize,
    ) -> Result<(StoreData, Recovered), RecoverError> {
        let mut data = StoreData::new(me, ring, keys_max);
        let mut refused_records = 0;
        let mut corruption = Vec::new();
        let (snapshots, damage) = self.disk.salvage(SNAPSHOT_FILE).await?;
        if let Some(damage) = damage {
            corruption.push(damage.to_string());
            self.disk.remove(SNAPSHOT_FILE).await?;
        }
        if let Some(bytes) = snapshots.records.last() {
            let snapshot: SnapshotData = postcard::from_bytes(bytes).map_err(|error| {
                RecoverError::Decode { file: SNAPSHOT_FILE, record: 0, reason: error.to_string() }
            })?;
            for (key, state) in &snapshot.home {
                refused_records += usize::from(data.merge_home(key, state).is_err());
            }
            for (home, key, state) in &snapshot.hints {
                refused_records += usize::from(data.merge_hint(home, key, state).is_err());
            }
        }
        let (wal, damage) = self.disk.salvage(WAL_FILE).await?;
        let wal_damaged = damage.is_some();
        corruption.extend(damage.map(|damage| damage.to_string()));
        for (position, bytes) in wal.records.iter().enumerate() {
            let record: WalRecord = postcard::from_bytes(bytes).map_err(|error| {
                RecoverError::Decode { file: WAL_FILE, record: position, reason: error.to_string() }
            })?;
            refused_records += usize::from(data.apply(&record).is_err());
        }
        if wal.torn_tail_bytes > 0 || wal_damaged {
            self.disk.rewrite(WAL_FILE, &wal.records).await?;
            self.disk.fsync(WAL_FILE).await?;
        }
        self.wal_records = wal.records.len();
        let recovered = Recovered {
            wal_records: wal.records.len(),
            refused_records,
            torn_tail_bytes: wal.torn_tail_bytes,
            corruption,
        };
        Ok((data, recovered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::counter::Slot;
    use proptest::prelude::*;

    fn ring() -> Arc<Ring> {
        let nodes: Vec<String> = (1..=4).map(|i| format!("store-{i}")).collect();
        Arc::new(Ring::new(&nodes, 8, 2))
    }

    fn write(writer: &str, batch: u64, total: u64) -> Counter {
        Counter::from_slot(writer, Slot { batch, total })
    }

    /// A key `store-1` is home of, and one it is not.
    fn keys(ring: &Ring) -> (String, String) {
        let home = (0..).map(|i| format!("k{i}")).find(|k| ring.is_home("store-1", k)).unwrap();
        let other = (0..).map(|i| format!("k{i}")).find(|k| !ring.is_home("store-1", k)).unwrap();
        (home, other)
    }

    #[test]
    fn home_keys_hints_and_refusals() {
        let ring = ring();
        let (mine, other) = keys(&ring);
        let mut data = StoreData::new("store-1", ring.clone(), 2);
        assert_eq!(data.merge_home(&mine, &write("w", 1, 3)), Ok(true));
        assert_eq!(data.merge_home(&mine, &write("w", 1, 3)), Ok(false));
        assert!(matches!(data.merge_home(&other, &write("w", 1, 3)), Err(Refusal::NotHome { .. })));
        let other_home = ring.home(&other)[0].clone();
        assert_eq!(data.merge_hint(&other_home, &other, &write("w", 1, 4)), Ok(true));
        assert_eq!(data.hints_pending(), 1);
        assert_eq!(data.state(&other).unwrap().value(), 4);
        let digest = data.state(&other).unwrap().digest();
        // Merged again after delivery: the newer hint stays.
        data.merge_hint(&other_home, &other, &write("w", 2, 6)).unwrap();
        assert_eq!(data.delivered(&other_home, &[(other.clone(), digest)]), 0);
        let digest = data.state(&other).unwrap().digest();
        assert_eq!(data.delivered(&other_home, &[(other.clone(), digest)]), 1);
        assert_eq!(data.hints_pending(), 0);
        assert!(data.hinted_homes().is_empty());
        assert!(data.leaves_consistent());
        assert!(matches!(data.merge_home("", &write("w", 1, 1)), Err(Refusal::BadInput { .. })));
    }

    #[test]
    fn scans_merge_home_and_hints_in_key_order_and_page() {
        let ring = Arc::new(Ring::new(&["a".to_string(), "b".to_string()], 4, 1));
        let mut data = StoreData::new("a", ring.clone(), 100);
        for i in 0..20 {
            let key = format!("usage/acct-{i:02}/1");
            let home = ring.home(&key)[0].clone();
            data.merge_hint(&home, &key, &write("w", 1, i + 1)).unwrap();
        }
        let (page, more) = data.scan("usage/acct-05", Some("usage/acct-15"), 4);
        let keys: Vec<&str> = page.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["usage/acct-05/1", "usage/acct-06/1", "usage/acct-07/1", "usage/acct-08/1"]
        );
        assert!(more);
        let (rest, more) = data.scan("usage/acct-12", Some("usage/acct-15"), 10);
        assert_eq!(rest.len(), 3);
        assert!(!more);
    }

    fn ops() -> impl Strategy<Value = Vec<(bool, u8, u8, u64)>> {
        // (to a, key index, writer index, total)
        proptest::collection::vec((any::<bool>(), 0u8..30, 0u8..3, 1u64..100), 0..60)
    }

    proptest! {
        /// Two replicas written apart agree on every shared partition after one anti-entropy
        /// round (roots, leaves, exchange both ways), and the incremental leaves stay exact.
        #[test]
        fn one_anti_entropy_round_makes_two_replicas_agree(ops in ops()) {
            let ring = ring();
            let mut a = StoreData::new("store-1", ring.clone(), 1000);
            let mut b = StoreData::new("store-2", ring.clone(), 1000);
            for (to_a, key, writer, total) in ops {
                let key = format!("usage/acct-{key}/7");
                let update = write(&format!("w{writer}"), total, total);
                let target = if to_a { &mut a } else { &mut b };
                let _ = target.merge_home(&key, &update);
            }
            prop_assert!(a.leaves_consistent() && b.leaves_consistent());
            let shared = ring.shared_partitions("store-1", "store-2");
            let (reply, _) = b.handle(&ReplicaRequest::Roots { roots: a.roots(&shared) });
            let ReplicaReply::Leaves { differing } = reply else { panic!("{reply:?}") };
            let buckets = a.differing_buckets(&differing);
            let entries = a.entries_in(&buckets);
            let (reply, _) = b.handle(&ReplicaRequest::Exchange { buckets, entries });
            let ReplicaReply::Entries { entries } = reply else { panic!("{reply:?}") };
            a.merge_entries(&entries, &mut Vec::new()).unwrap();
            prop_assert_eq!(a.roots(&shared), b.roots(&shared));
            for (key, state) in &a.home {
                if ring.is_home("store-2", key) {
                    prop_assert_eq!(Some(state), b.home_state(key));
                }
            }
            prop_assert!(a.leaves_consistent() && b.leaves_consistent());
        }
    }

    #[cfg(madsim)]
    mod on_the_simulated_disk {
        use super::*;
        use crate::seams::disk::{DiskTiming, SimDisk};
        use crate::seams::rng::rng_for;

        #[derive(Clone, Debug)]
        enum Op {
            /// Merge a writer's total into a key (both by index), as the storage task does.
            Merge(u8, u8, u64),
            /// Sync, and snapshot when the log is long enough.
            Sync,
            Crash {
                torn: bool,
            },
        }

        fn ops() -> impl Strategy<Value = Vec<Op>> {
            proptest::collection::vec(
                prop_oneof![
                    6 => (0u8..6, 0u8..3, 1u64..100).prop_map(|(k, w, t)| Op::Merge(k, w, t)),
                    3 => Just(Op::Sync),
                    1 => any::<bool>().prop_map(|torn| Op::Crash { torn }),
                ],
                0..40,
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]

            /// Against a model: after any interleaving of merges, syncs, snapshots and
            /// crashes (torn or not), recovery holds at least every merge fsynced (an
            /// acknowledgement is kept) and nothing that was never written; a torn crash may
            /// keep whole records that were still pending (never acknowledged, so allowed),
            /// and from then on they are durable too.
            #[test]
            fn recovery_holds_the_synced_merges_and_nothing_unwritten(ops in ops(), seed in any::<u64>()) {
                let runtime = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
                runtime.block_on(async move {
                    let ring = ring();
                    let mine: Vec<String> = (0..)
                        .map(|i| format!("usage/acct-{i}/1"))
                        .filter(|k| ring.is_home("store-1", k))
                        .take(6)
                        .collect();
                    let (_, control) = SimDisk::new(DiskTiming::default(), rng_for(seed, "disk"));
                    let mut durable = Durable::new(control.disk(), 4);
                    let mut data = StoreData::new("store-1", ring.clone(), 100);
                    // Lower bound: what is durable. Upper bound: everything ever written.
                    let mut synced: BTreeMap<String, Counter> = BTreeMap::new();
                    let mut written: BTreeMap<String, Counter> = BTreeMap::new();
                    let mut pending: Vec<(String, Counter)> = Vec::new();
                    let check = |recovered: &StoreData,
                                 synced: &BTreeMap<String, Counter>,
                                 written: &BTreeMap<String, Counter>| {
                        assert!(recovered.leaves_consistent());
                        for key in &mine {
                            let got = recovered.home_state(key).cloned().unwrap_or_default();
                            let low = synced.get(key).cloned().unwrap_or_default();
                            let high = written.get(key).cloned().unwrap_or_default();
                            assert!(got.covers(&low), "{key}: lost {low:?}, holds {got:?}");
                            assert!(high.covers(&got), "{key}: holds {got:?}, never written");
                        }
                    };
                    for op in ops {
                        match op {
                            Op::Merge(key, writer, total) => {
                                let key = mine[key as usize].clone();
                                let update = write(&format!("w{writer}"), total, total);
                                let record = WalRecord::Home { key: key.clone(), update: update.clone() };
                                if data.apply(&record).unwrap() {
                                    durable.append(std::slice::from_ref(&record)).await.unwrap();
                                    written.entry(key.clone()).or_default().merge(&update);
                                    pending.push((key, update));
                                }
                            }
                            Op::Sync => {
                                durable.sync().await.unwrap();
                                durable.maybe_snapshot(&data).await.unwrap();
                                for (key, update) in pending.drain(..) {
                                    synced.entry(key).or_default().merge(&update);
                                }
                            }
                            Op::Crash { torn } => {
                                control.set_torn_writes(torn);
                                control.crash();
                                pending.clear();
                                durable = Durable::new(control.disk(), 4);
                                data = durable.recover("store-1", ring.clone(), 100).await.unwrap().0;
                                check(&data, &synced, &written);
                                // Whatever survived is durable now.
                                for key in &mine {
                                    if let Some(state) = data.home_state(key) {
                                        synced.entry(key.clone()).or_default().merge(state);
                                    }
                                }
                            }
                        }
                    }
                    control.crash();
                    let (recovered, _) =
                        Durable::new(control.disk(), 4).recover("store-1", ring.clone(), 100).await.unwrap();
                    check(&recovered, &synced, &written);
                });
            }
        }

        #[madsim::test]
        async fn recovery_keeps_exactly_what_was_fsynced_across_snapshots() {
            let ring = ring();
            let (mine, _) = keys(&ring);
            let (_, control) = SimDisk::new(DiskTiming::default(), rng_for(1, "disk"));
            let mut durable = Durable::new(control.disk(), 3);
            let mut data = StoreData::new("store-1", ring.clone(), 100);
            for batch in 1..=5 {
                let record =
                    WalRecord::Home { key: mine.clone(), update: write("w", batch, batch * 10) };
                data.apply(&record).unwrap();
                durable.append(&[record]).await.unwrap();
                durable.sync().await.unwrap();
                durable.maybe_snapshot(&data).await.unwrap();
            }
            let unsynced = WalRecord::Home { key: mine.clone(), update: write("w", 6, 60) };
            durable.append(&[unsynced]).await.unwrap();
            control.set_torn_writes(true);
            control.crash();
            let mut again = Durable::new(control.disk(), 3);
            let (recovered, report) = again.recover("store-1", ring.clone(), 100).await.unwrap();
            assert_eq!(recovered.home_state(&mine).unwrap().value(), 50, "{report:?}");
            assert!(recovered.leaves_consistent());
            let (twice, report) = again.recover("store-1", ring, 100).await.unwrap();
            assert_eq!(report.torn_tail_bytes, 0, "the torn tail was cut the first time");
            assert_eq!(twice.home_state(&mine).unwrap().value(), 50);
        }

        #[madsim::test]
        async fn corruption_of_fsynced_data_keeps_the_records_before_it() {
            let ring = ring();
            let (mine, _) = keys(&ring);
            let (_, control) = SimDisk::new(DiskTiming::default(), rng_for(2, "disk"));
            let mut durable = Durable::new(control.disk(), 100);
            for batch in 1..=4 {
                let update = write("w", batch, batch * 10);
                durable.append(&[WalRecord::Home { key: mine.clone(), update }]).await.unwrap();
            }
            durable.sync().await.unwrap();
            let record_bytes = control.durable_bytes(WAL_FILE).len() / 4;
            let (_, offset) = control.corrupt(Some(WAL_FILE)).unwrap();
            // Records are alike in size: the ones wholly before the flipped byte survive.
            let kept = (offset / record_bytes) as u64;
            let (data, report) = durable.recover("store-1", ring.clone(), 100).await.unwrap();
            let value = data.home_state(&mine).map(|state| state.value());
            assert_eq!(value, (kept > 0).then_some(kept * 10), "{report:?}");
            assert_eq!(report.corruption.len(), 1, "{report:?}");
            assert!(report.corruption[0].contains("corrupt record"), "{report:?}");
            // The log was rewritten without the damage: a second recovery finds none.
            let (again, report) = durable.recover("store-1", ring, 100).await.unwrap();
            assert!(report.corruption.is_empty(), "{report:?}");
            assert_eq!(report.wal_records as u64, kept);
            assert_eq!(again.home_state(&mine).map(|state| state.value()), value);
        }
    }
}
