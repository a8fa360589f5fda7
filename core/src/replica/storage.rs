//! The Raft log of a replica: in memory for raft-rs ([`LogStore`], its `Storage`), and on
//! the disk seam for crashes ([`Durable`]).
//!
//! On disk a node keeps two files:
//! - `raft.wal`, a write-ahead log of records, each a postcard [`WalRecord`]: a batch of
//!   entries (protobuf-encoded, raft-rs's own encoding) or a hard state (term, vote, commit).
//!   Replaying it in order rebuilds the log: a batch that starts at an index already present
//!   replaces the suffix from there, as Raft's conflict rule demands.
//! - `raft.snap`, one record: the latest snapshot (protobuf), whose data is a [`SnapshotData`]
//!   (the state machine and the chain hash of the applied log up to the snapshot).
//!
//! Compaction writes the snapshot, fsyncs it, then rewrites the WAL with only the hard state
//! and the entries after the snapshot. A crash between the two leaves the old WAL, whose
//! entries at or below the snapshot are skipped on replay, so every step is safe to stop at.
//!
//! **Invariant:** nothing is acknowledged to a peer before the WAL records it are fsynced; the
//! driver in [`super::node`] calls [`Durable::sync`] before it sends a Ready's messages.

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::seams::disk::{Disk, DiskError};

/// The write-ahead log's file.
pub const WAL_FILE: &str = "raft.wal";
/// The snapshot's file.
pub const SNAPSHOT_FILE: &str = "raft.snap";

/// One record of the write-ahead log. Byte vectors are byte strings to serde (`serde_bytes`):
/// postcard copies them whole instead of one `u8` at a time, on the same bytes on disk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WalRecord {
    /// Consecutive entries, each protobuf-encoded.
    Entries(Vec<ByteBuf>),
    HardState {
        term: u64,
        vote: u64,
        commit: u64,
    },
}

/// What a snapshot carries besides raft-rs's metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotData {
    /// The state machine, as [`super::StateMachine::snapshot`] encodes it.
    #[serde(with = "serde_bytes")]
    pub machine: Vec<u8>,
    /// The chain hash of the applied log up to the snapshot's index.
    pub chain: u64,
}

/// Why a node could not recover its log from disk.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error("{file}: record {record} does not decode: {reason}")]
    Decode { file: &'static str, record: usize, reason: String },
    #[error("{file}: the log has a gap: entry {found} follows {last}")]
    Gap { file: &'static str, last: u64, found: u64 },
}

/// The Raft log in memory: the latest snapshot, the entries after it, the hard and
/// configuration states. raft-rs reads it through [`Storage`]; the driver writes it after
/// the same data is on disk.
#[derive(Clone, Debug, Default)]
pub struct LogStore {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    /// Entries `snapshot index + 1 ..= last index`.
    entries: Vec<Entry>,
}

impl LogStore {
    /// A fresh log for a cluster of `voters`.
    pub fn new(voters: &[u64]) -> LogStore {
        let mut conf_state = ConfState::default();
        conf_state.set_voters(voters.to_vec());
        LogStore { conf_state, ..LogStore::default() }
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The latest snapshot (empty metadata before the first one).
    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The entries after the snapshot.
    pub fn entries_after_snapshot(&self) -> &[Entry] {
        &self.entries
    }

    fn last(&self) -> u64 {
        self.entries.last().map_or(self.snapshot_index(), |entry| entry.index)
    }

    /// Appends entries, replacing any suffix they conflict with. Entries at or below the
    /// snapshot are already covered by it and skipped.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), (u64, u64)> {
        let floor = self.snapshot_index();
        let entries: Vec<&Entry> = entries.iter().filter(|entry| entry.index > floor).collect();
        let Some(first) = entries.first() else { return Ok(()) };
        if first.index > self.last() + 1 {
            return Err((self.last(), first.index));
        }
        self.entries.truncate((first.index - floor - 1) as usize);
        self.entries.extend(entries.into_iter().cloned());
        Ok(())
    }

    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    /// Installs a snapshot received from the leader: the log restarts after it.
    pub fn install_snapshot(&mut self, snapshot: Snapshot) {
        let metadata = snapshot.get_metadata();
        self.hard_state.term = self.hard_state.term.max(metadata.term);
        self.hard_state.commit = self.hard_state.commit.max(metadata.index);
        self.conf_state = metadata.get_conf_state().clone();
        self.entries.clear();
        self.snapshot = snapshot;
    }

    /// Adopts a snapshot taken locally at an applied index: entries up to it are dropped.
    pub fn compact_to(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        let drop = (index.saturating_sub(self.snapshot_index()) as usize).min(self.entries.len());
        self.entries.drain(..drop);
        self.snapshot = snapshot;
    }
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), self.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let floor = self.snapshot_index();
        if low <= floor {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut entries =
            self.entries[(low - floor - 1) as usize..(high - floor - 1) as usize].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let floor = self.snapshot_index();
        if index == floor {
            return Ok(self.snapshot.get_metadata().term);
        }
        if index < floor {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        match self.entries.get((index - floor - 1) as usize) {
            Some(entry) => Ok(entry.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snapshot_index() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot_index() < request_index || self.snapshot_index() == 0 {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(self.snapshot.clone())
    }
}

/// What recovery found on disk.
#[derive(Debug)]
pub struct Recovered {
    pub store: LogStore,
    /// Bytes of a torn last record that were cut off (an interrupted, never-acknowledged write).
    pub torn_tail_bytes: usize,
    pub wal_records: usize,
}

/// The node's log on the disk seam.
#[derive(Clone, Debug)]
pub struct Durable {
    disk: Disk,
}

impl Durable {
    pub fn new(disk: Disk) -> Durable {
        Durable { disk }
    }

    /// Appends entries to the WAL (pending until [`Durable::sync`]).
    pub async fn append_entries(&self, entries: &[Entry]) -> Result<(), DiskError> {
        let record = WalRecord::Entries(entries.iter().map(encode_entry).collect());
        self.disk.append(WAL_FILE, &encode_wal(&record)).await
    }

    /// Appends a hard state to the WAL (pending until [`Durable::sync`]).
    pub async fn append_hard_state(&self, hard_state: &HardState) -> Result<(), DiskError> {
        self.disk.append(WAL_FILE, &encode_wal(&hard_state_record(hard_state))).await
    }

    /// Makes everything appended so far durable.
    pub async fn sync(&self) -> Result<(), DiskError> {
        self.disk.fsync(WAL_FILE).await
    }

    /// Makes `snapshot` durable, then rewrites the WAL to hold only `hard_state` and the
    /// entries after the snapshot.
    pub async fn save_snapshot(
        &self,
        snapshot: &Snapshot,
        hard_state: &HardState,
        after: &[Entry],
    ) -> Result<(), DiskError> {
        let bytes = snapshot.write_to_bytes().expect("protobuf encoding of a snapshot");
        self.disk.write(SNAPSHOT_FILE, &bytes).await?;
        self.disk.fsync(SNAPSHOT_FILE).await?;
        let mut records = vec![encode_wal(&hard_state_record(hard_state))];
        if !after.is_empty() {
            records.push(encode_wal(&WalRecord::Entries(after.iter().map(encode_entry).collect())));
        }
        self.disk.rewrite(WAL_FILE, &records).await?;
        self.disk.fsync(WAL_FILE).await
    }

    /// Rebuilds the log from disk after a restart. A torn last record of the WAL (a write a
    /// crash interrupted, never fsynced, so never acknowledged) is cut off and the WAL
    /// rewritten without it. Corruption of fsynced data is an error: the node must not guess
    /// what it acknowledged.
    pub async fn recover(&self, voters: &[u64]) -> Result<Recovered, RecoverError> {
        let mut store = LogStore::new(voters);
        let snapshots = self.disk.read(SNAPSHOT_FILE).await?;
        if let Some(bytes) = snapshots.records.last() {
            let snapshot = Snapshot::parse_from_bytes(bytes).map_err(|error| {
                RecoverError::Decode { file: SNAPSHOT_FILE, record: 0, reason: error.to_string() }
            })?;
            store.install_snapshot(snapshot);
        }
        let wal = self.disk.read(WAL_FILE).await?;
        for (position, bytes) in wal.records.iter().enumerate() {
            let decode_error =
                |reason: String| RecoverError::Decode { file: WAL_FILE, record: position, reason };
            let record: WalRecord =
                postcard::from_bytes(bytes).map_err(|error| decode_error(error.to_string()))?;
            match record {
                WalRecord::Entries(encoded) => {
                    let mut entries = Vec::with_capacity(encoded.len());
                    for bytes in &encoded {
                        let entry = Entry::parse_from_bytes(bytes)
                            .map_err(|error| decode_error(error.to_string()))?;
                        entries.push(entry);
                    }
                    store.append(&entries).map_err(|(last, found)| RecoverError::Gap {
                        file: WAL_FILE,
                        last,
                        found,
                    })?;
                }
                WalRecord::HardState { term, vote, commit } => {
                    let mut hard_state = HardState::default();
                    hard_state.term = term.max(store.hard_state.term);
                    hard_state.vote = vote;
                    // The snapshot is committed; the hard state may predate it.
                    hard_state.commit = commit.max(store.snapshot_index());
                    store.set_hard_state(hard_state);
                }
            }
        }
        // A commit index past the log's end cannot be trusted to name entries we have.
        let last = store.last();
        if store.hard_state.commit > last {
            store.hard_state.commit = last;
        }
        if wal.torn_tail_bytes > 0 {
            self.disk.rewrite(WAL_FILE, &wal.records).await?;
            self.disk.fsync(WAL_FILE).await?;
        }
        Ok(Recovered {
            store,
            torn_tail_bytes: wal.torn_tail_bytes,
            wal_records: wal.records.len(),
        })
    }
}

fn encode_entry(entry: &Entry) -> ByteBuf {
    ByteBuf::from(entry.write_to_bytes().expect("protobuf encoding of an entry"))
}

fn encode_wal(record: &WalRecord) -> Vec<u8> {
    postcard::to_stdvec(record).expect("postcard encoding of a WAL record")
}

fn hard_state_record(hard_state: &HardState) -> WalRecord {
    WalRecord::HardState { term: hard_state.term, vote: hard_state.vote, commit: hard_state.commit }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logs and snapshots written when entries were plain `Vec<u8>` read back unchanged: the
    /// byte strings encode to the same bytes.
    #[test]
    fn byte_strings_keep_the_bytes_on_disk() {
        let entries: Vec<Vec<u8>> = vec![(0..=255).collect(), vec![7; 3]];
        let record = WalRecord::Entries(entries.iter().cloned().map(ByteBuf::from).collect());
        let encoded = encode_wal(&record);
        assert_eq!(encoded, postcard::to_stdvec(&(0u32, &entries)).unwrap());
        let snapshot = SnapshotData { machine: entries[0].clone(), chain: 9 };
        let plain = postcard::to_stdvec(&(&entries[0], 9u64)).unwrap();
        assert_eq!(postcard::to_stdvec(&snapshot).unwrap(), plain);
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("{index}/{term}").into_bytes().into(),
            ..Entry::default()
        }
    }

    #[test]
    fn append_replaces_a_conflicting_suffix() {
        let mut store = LogStore::new(&[1, 2, 3]);
        store.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]).unwrap();
        store.append(&[entry(2, 2)]).unwrap();
        assert_eq!(store.last_index().unwrap(), 2);
        assert_eq!(store.term(2).unwrap(), 2);
        assert_eq!(store.append(&[entry(5, 2)]), Err((2, 5)));
    }

    #[test]
    fn compaction_keeps_the_entries_after_the_snapshot() {
        let mut store = LogStore::new(&[1, 2, 3]);
        store.append(&(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>()).unwrap();
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = 6;
        snapshot.mut_metadata().term = 1;
        store.compact_to(snapshot);
        assert_eq!(store.first_index().unwrap(), 7);
        assert_eq!(store.term(6).unwrap(), 1);
        assert!(store.term(5).is_err());
        let got = store.entries(7, 11, None, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(got.iter().map(|e| e.index).collect::<Vec<_>>(), vec![7, 8, 9, 10]);
        assert!(store.entries(6, 8, None, GetEntriesContext::empty(false)).is_err());
    }

    #[cfg(madsim)]
    mod on_the_simulated_disk {
        use super::*;
        use crate::seams::disk::{DiskTiming, SimDisk};
        use crate::seams::rng::rng_for;

        fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
            HardState { term, vote, commit, ..HardState::default() }
        }

        #[madsim::test]
        async fn recovery_keeps_exactly_what_was_fsynced() {
            let (_, control) = SimDisk::new(DiskTiming::default(), rng_for(1, "disk"));
            let durable = Durable::new(control.disk());
            durable.append_entries(&[entry(1, 1), entry(2, 1)]).await.unwrap();
            durable.append_hard_state(&hard_state(1, 1, 2)).await.unwrap();
            durable.sync().await.unwrap();
            durable.append_entries(&[entry(3, 1)]).await.unwrap();
            durable.append_hard_state(&hard_state(1, 1, 3)).await.unwrap();
            control.set_torn_writes(true);
            control.crash();
            let recovered = durable.recover(&[1, 2, 3]).await.unwrap();
            let store = recovered.store;
            assert_eq!(store.last_index().unwrap(), 2, "the unsynced entry is gone");
            assert_eq!(store.hard_state(), &hard_state(1, 1, 2));
            assert_eq!(
                store.entries(1, 3, None, GetEntriesContext::empty(false)).unwrap().len(),
                2
            );
            // A torn tail, if the crash left one, was cut and the WAL rewritten without it.
            let again = durable.recover(&[1, 2, 3]).await.unwrap();
            assert_eq!(again.torn_tail_bytes, 0);
            assert_eq!(again.store.last_index().unwrap(), 2);
        }

        #[madsim::test]
        async fn a_snapshot_compacts_the_wal_and_survives_a_crash() {
            let (_, control) = SimDisk::new(DiskTiming::default(), rng_for(2, "disk"));
            let durable = Durable::new(control.disk());
            let entries: Vec<Entry> = (1..=5).map(|i| entry(i, 2)).collect();
            durable.append_entries(&entries).await.unwrap();
            durable.append_hard_state(&hard_state(2, 1, 5)).await.unwrap();
            durable.sync().await.unwrap();
            let mut snapshot = Snapshot::default();
            snapshot.set_data(b"machine".to_vec().into());
            snapshot.mut_metadata().index = 3;
            snapshot.mut_metadata().term = 2;
            snapshot.mut_metadata().mut_conf_state().set_voters(vec![1, 2, 3]);
            durable.save_snapshot(&snapshot, &hard_state(2, 1, 5), &entries[3..]).await.unwrap();
            // A later entry conflicting with the log's tail replaces it.
            durable.append_entries(&[entry(5, 3), entry(6, 3)]).await.unwrap();
            durable.sync().await.unwrap();
            control.crash();
            let store = durable.recover(&[1, 2, 3]).await.unwrap().store;
            assert_eq!(store.first_index().unwrap(), 4);
            assert_eq!(store.last_index().unwrap(), 6);
            assert_eq!((store.term(3).unwrap(), store.term(5).unwrap()), (2, 3));
            assert_eq!(store.latest_snapshot().get_data(), b"machine");
            assert_eq!(store.hard_state().commit, 5);
        }

        #[madsim::test]
        async fn corruption_of_fsynced_data_stops_recovery() {
            let (_, control) = SimDisk::new(DiskTiming::default(), rng_for(3, "disk"));
            let durable = Durable::new(control.disk());
            durable.append_entries(&[entry(1, 1), entry(2, 1)]).await.unwrap();
            durable.sync().await.unwrap();
            control.corrupt(Some(WAL_FILE)).expect("the WAL has bytes to corrupt");
            let error = durable.recover(&[1, 2, 3]).await.unwrap_err();
            assert!(matches!(error, RecoverError::Disk(DiskError::Corrupt { .. })), "{error}");
        }
    }
}
