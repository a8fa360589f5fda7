//! Disk seam: durable records, with the faults real disks have.
//!
//! A file is a sequence of records. Each record is framed as
//! `[payload length: u32 LE][crc32 of the length: u32 LE][crc32 of the payload: u32 LE][payload]`
//! so a reader tells three cases apart: a whole record, a *torn tail* (the file ends inside the
//! last record: a write that did not finish before a crash) and *corruption* (a header or
//! payload whose checksum fails: reported as [`DiskError::Corrupt`], never returned as data).
//!
//! Operations: [`Disk::append`] adds a record, [`Disk::write`] replaces a file with one record
//! (atomically, by rename, on the real disk), [`Disk::read`] returns the records, and
//! [`Disk::fsync`] makes a file's writes durable. Until `fsync`, writes are *pending*: visible
//! to reads, lost by a crash.
//!
//! The real disk ([`RealDisk`]) keeps files in a directory and calls `fsync` for real. The
//! simulated disk ([`SimDisk`]) keeps the same bytes in memory, durable and pending apart, and
//! takes its faults from a [`DiskControl`]: fsync latency, slow-disk mode (latency x10 to
//! x1000), stalls, pending writes lost on a crash, a torn last write, bit rot, I/O errors on
//! writes and fsyncs, and a full disk.
//!
//! A failed fsync behaves as Linux's page cache does (the "fsyncgate" semantics): the file's
//! pending writes are dropped with the error, so a second fsync succeeds and the data is gone.
//! A caller that retries an fsync and carries on has lost writes it believes durable; the only
//! safe answer is the one every durable component here gives
//! ([`crate::node::exit_on_write_failure`]): exit, restart, recover from what the disk holds.
//!
//! **Invariant:** a read never returns bytes that fail their checksum.
//! **Invariant:** after a crash a file holds exactly its durable bytes, plus (only with torn
//! writes armed) a prefix of the bytes that were pending.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;

use super::rng::SeededRng;

/// Size of a record's header.
pub const RECORD_HEADER_BYTES: usize = 12;
/// Largest payload one record may carry: a bound, so a corrupt length can never make a reader
/// allocate without limit.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 64 << 20;
/// Longest file name the seam accepts.
pub const FILE_NAME_BYTES_MAX: usize = 128;

/// What a disk operation can fail with. Real code can observe and handle each of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiskError {
    /// A record's header or payload failed its checksum.
    #[error("{file}: corrupt record at byte {offset}: {what}")]
    Corrupt { file: String, offset: usize, what: &'static str },
    /// The file name is empty, too long, or has characters other than `[A-Za-z0-9._-]`.
    #[error("invalid file name {0:?}")]
    InvalidName(String),
    /// A payload larger than [`RECORD_PAYLOAD_BYTES_MAX`].
    #[error("record of {0} bytes exceeds the record size bound")]
    TooLarge(usize),
    /// The operating system refused: an I/O error on the real disk, or one the simulated disk
    /// injects.
    #[error("{file}: {message}")]
    Io { file: String, message: String },
    /// No space left for a write (`ENOSPC`).
    #[error("{file}: no space left on device")]
    Full { file: String },
}

impl DiskError {
    /// Whether a write or an fsync failed (an I/O error, a full disk): what the disk holds is
    /// then unknown to the caller, unlike a corrupt record, which is known to be damaged.
    pub fn is_write_failure(&self) -> bool {
        matches!(self, DiskError::Io { .. } | DiskError::Full { .. })
    }
}

/// The records of a file, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    pub records: Vec<Vec<u8>>,
    /// Bytes at the end of the file that belong to a record whose write did not complete.
    /// They are ignored; a writer that appends again should first rewrite the file.
    pub torn_tail_bytes: usize,
}

/// Encodes one record, header and payload.
pub fn encode_record(payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= RECORD_PAYLOAD_BYTES_MAX, "record payload beyond the bound");
    let length = (payload.len() as u32).to_le_bytes();
    let mut bytes = Vec::with_capacity(RECORD_HEADER_BYTES + payload.len());
    bytes.extend_from_slice(&length);
    bytes.extend_from_slice(&crc32fast::hash(&length).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// Decodes a file's bytes into records; see the module comment for the three cases.
pub fn decode_records(file: &str, bytes: &[u8]) -> Result<Records, DiskError> {
    let (records, corruption) = decode_prefix(file, bytes);
    match corruption {
        Some(error) => Err(error),
        None => Ok(records),
    }
}

/// Decodes the whole records before the first corrupt one, and that corruption if any.
fn decode_prefix(file: &str, bytes: &[u8]) -> (Records, Option<DiskError>) {
    let mut whole = Vec::new();
    match decode_into(file, bytes, &mut whole) {
        Ok(torn_tail_bytes) => (Records { records: whole, torn_tail_bytes }, None),
        Err(error) => (Records { records: whole, torn_tail_bytes: 0 }, Some(error)),
    }
}

fn decode_into(file: &str, bytes: &[u8], records: &mut Vec<Vec<u8>>) -> Result<usize, DiskError> {
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.len() < RECORD_HEADER_BYTES {
            return Ok(rest.len());
        }
        let length_bytes: [u8; 4] = rest[0..4].try_into().expect("four bytes");
        let length_crc = u32::from_le_bytes(rest[4..8].try_into().expect("four bytes"));
        let payload_crc = u32::from_le_bytes(rest[8..12].try_into().expect("four bytes"));
        if crc32fast::hash(&length_bytes) != length_crc {
            let what = "header checksum mismatch";
            return Err(DiskError::Corrupt { file: file.to_string(), offset, what });
        }
        let length = u32::from_le_bytes(length_bytes) as usize;
        if length > RECORD_PAYLOAD_BYTES_MAX {
            let what = "length beyond the record bound";
            return Err(DiskError::Corrupt { file: file.to_string(), offset, what });
        }
        if rest.len() < RECORD_HEADER_BYTES + length {
            return Ok(rest.len());
        }
        let payload = &rest[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + length];
        if crc32fast::hash(payload) != payload_crc {
            let what = "payload checksum mismatch";
            return Err(DiskError::Corrupt { file: file.to_string(), offset, what });
        }
        records.push(payload.to_vec());
        offset += RECORD_HEADER_BYTES + length;
    }
    Ok(0)
}

fn check_name(file: &str) -> Result<(), DiskError> {
    let valid = !file.is_empty()
        && file.len() <= FILE_NAME_BYTES_MAX
        && !file.starts_with('.')
        && file.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(DiskError::InvalidName(file.to_string()))
    }
}

fn check_size(payload: &[u8]) -> Result<(), DiskError> {
    if payload.len() > RECORD_PAYLOAD_BYTES_MAX {
        return Err(DiskError::TooLarge(payload.len()));
    }
    Ok(())
}

/// A node's disk: real or simulated. Cheap to clone; clones share the same files.
#[derive(Clone, Debug)]
pub enum Disk {
    Real(RealDisk),
    Sim(SimDisk),
}

impl Disk {
    /// Appends one record. Pending until [`Disk::fsync`].
    pub async fn append(&self, file: &str, payload: &[u8]) -> Result<(), DiskError> {
        check_name(file)?;
        check_size(payload)?;
        match self {
            Disk::Real(disk) => disk.append(file, payload),
            Disk::Sim(disk) => disk.append(file, payload).await,
        }
    }

    /// Replaces the file with one record. Pending until [`Disk::fsync`]; a crash before it
    /// leaves the old contents.
    pub async fn write(&self, file: &str, payload: &[u8]) -> Result<(), DiskError> {
        check_name(file)?;
        check_size(payload)?;
        match self {
            Disk::Real(disk) => disk.write(file, payload),
            Disk::Sim(disk) => disk.write(file, payload).await,
        }
    }

    /// Replaces the file with `records` in one step (used to rewrite a log without its torn
    /// tail or to compact it). Pending until [`Disk::fsync`]; a crash before it leaves the old
    /// contents.
    pub async fn rewrite(&self, file: &str, records: &[Vec<u8>]) -> Result<(), DiskError> {
        check_name(file)?;
        for record in records {
            check_size(record)?;
        }
        let bytes: Vec<u8> = records.iter().flat_map(|record| encode_record(record)).collect();
        match self {
            Disk::Real(disk) => disk.replace_bytes(file, &bytes),
            Disk::Sim(disk) => disk.replace_bytes(file, bytes).await,
        }
    }

    /// Reads every record of the file; a missing file has none.
    pub async fn read(&self, file: &str) -> Result<Records, DiskError> {
        check_name(file)?;
        match self {
            Disk::Real(disk) => disk.read(file),
            Disk::Sim(disk) => disk.read(file).await,
        }
    }

    /// Recovery after [`DiskError::Corrupt`]: the whole records before the first corrupt one,
    /// and the corruption found (`None` when the file is sound). The caller decides what the
    /// records after the corruption cost it; nothing past a bad checksum is ever returned.
    pub async fn salvage(&self, file: &str) -> Result<(Records, Option<DiskError>), DiskError> {
        check_name(file)?;
        let bytes = match self {
            Disk::Real(disk) => disk.read_bytes(file)?,
            Disk::Sim(disk) => disk.read_bytes(file).await,
        };
        Ok(decode_prefix(file, &bytes))
    }

    /// Makes every write to the file so far durable.
    pub async fn fsync(&self, file: &str) -> Result<(), DiskError> {
        check_name(file)?;
        match self {
            Disk::Real(disk) => disk.fsync(file),
            Disk::Sim(disk) => disk.fsync(file).await,
        }
    }

    /// Removes the file (durably on return).
    pub async fn remove(&self, file: &str) -> Result<(), DiskError> {
        check_name(file)?;
        match self {
            Disk::Real(disk) => disk.remove(file),
            Disk::Sim(disk) => disk.remove(file).await,
        }
    }

    /// The names of the files on the disk, sorted.
    pub async fn list(&self) -> Result<Vec<String>, DiskError> {
        match self {
            Disk::Real(disk) => disk.list(),
            Disk::Sim(disk) => Ok(disk.list()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The real disk.

/// Files in a directory, made durable with `fsync`.
///
/// Operations are synchronous `std::fs` calls: records are small and each node is its own
/// process in the real build, so a short block of the runtime thread costs less than handing
/// every write to a blocking pool. (`tokio::fs` is not usable: it panics in the simulation,
/// and this type compiles in both builds.)
#[derive(Clone, Debug)]
pub struct RealDisk {
    dir: PathBuf,
}

impl RealDisk {
    /// A disk whose files live in `dir` (created if missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<RealDisk, DiskError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir.display().to_string(), e))?;
        Ok(RealDisk { dir })
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn append(&self, file: &str, payload: &[u8]) -> Result<(), DiskError> {
        use std::io::Write;
        let mut handle = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(file))
            .map_err(|e| io_error(file, e))?;
        handle.write_all(&encode_record(payload)).map_err(|e| io_error(file, e))
    }

    fn write(&self, file: &str, payload: &[u8]) -> Result<(), DiskError> {
        self.replace_bytes(file, &encode_record(payload))
    }

    fn replace_bytes(&self, file: &str, bytes: &[u8]) -> Result<(), DiskError> {
        // Write beside, then rename over: a crash leaves either the old file or the new one.
        let temporary = self.dir.join(format!(".{file}.tmp"));
        std::fs::write(&temporary, bytes).map_err(|e| io_error(file, e))?;
        let handle = std::fs::File::open(&temporary).map_err(|e| io_error(file, e))?;
        handle.sync_all().map_err(|e| io_error(file, e))?;
        std::fs::rename(&temporary, self.path(file)).map_err(|e| io_error(file, e))
    }

    fn read(&self, file: &str) -> Result<Records, DiskError> {
        decode_records(file, &self.read_bytes(file)?)
    }

    fn read_bytes(&self, file: &str) -> Result<Vec<u8>, DiskError> {
        match std::fs::read(self.path(file)) {
            Ok(bytes) => Ok(bytes),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(error) => Err(io_error(file, error)),
        }
    }

    fn fsync(&self, file: &str) -> Result<(), DiskError> {
        match std::fs::File::open(self.path(file)) {
            Ok(handle) => handle.sync_all().map_err(|e| io_error(file, e))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(file, error)),
        }
        // The directory entry (creation, rename) is durable only once the directory is synced.
        sync_directory(&self.dir).map_err(|e| io_error(file, e))
    }

    fn remove(&self, file: &str) -> Result<(), DiskError> {
        match std::fs::remove_file(self.path(file)) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(file, error)),
        }
        sync_directory(&self.dir).map_err(|e| io_error(file, e))
    }

    fn list(&self) -> Result<Vec<String>, DiskError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io_error("<dir>", e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("<dir>", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if check_name(&name).is_ok() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

fn sync_directory(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn io_error(file: &str, error: std::io::Error) -> DiskError {
    if error.kind() == std::io::ErrorKind::StorageFull {
        return DiskError::Full { file: file.to_string() };
    }
    DiskError::Io { file: file.to_string(), message: error.to_string() }
}

// ---------------------------------------------------------------------------------------------
// The simulated disk.

/// Latencies of the simulated disk when healthy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiskTiming {
    /// Cost of a write or read reaching the page cache, in microseconds.
    pub io_latency_us: u64,
    /// Cost of an fsync, drawn uniformly from this range, in microseconds.
    pub fsync_latency_us_min: u64,
    pub fsync_latency_us_max: u64,
}

impl Default for DiskTiming {
    /// A datacenter SSD: page-cache writes nearly free, fsync 0.5 to 2 ms.
    fn default() -> Self {
        DiskTiming { io_latency_us: 20, fsync_latency_us_min: 500, fsync_latency_us_max: 2_000 }
    }
}

/// Bounds of the slow-disk multiplier (a gray failure: the disk works, slowly).
pub const SLOW_FACTOR_MAX: u64 = 1000;

#[derive(Clone, Debug, Default)]
struct SimFile {
    durable: Vec<u8>,
    pending: Vec<PendingWrite>,
}

#[derive(Clone, Debug)]
enum PendingWrite {
    Append(Vec<u8>),
    Replace(Vec<u8>),
}

impl PendingWrite {
    fn len(&self) -> usize {
        match self {
            PendingWrite::Append(bytes) | PendingWrite::Replace(bytes) => bytes.len(),
        }
    }
}

fn injected_io_error(file: &str) -> DiskError {
    DiskError::Io { file: file.to_string(), message: "input/output error (EIO)".to_string() }
}

impl SimDiskState {
    /// Draws whether this operation fails with an I/O error. Draws nothing while errors are
    /// off, so a run without the fault takes the same random numbers as before it existed.
    fn injects_error(&mut self) -> bool {
        self.error_probability > 0.0 && self.rng.random_bool(self.error_probability)
    }

    /// Refuses a write on a full disk or with an injected I/O error; it then leaves no trace.
    fn refuse_write(&mut self, file: &str) -> Result<(), DiskError> {
        if self.full {
            self.stats.full_refusals += 1;
            return Err(DiskError::Full { file: file.to_string() });
        }
        if self.injects_error() {
            self.stats.io_errors += 1;
            return Err(injected_io_error(file));
        }
        Ok(())
    }
}

impl SimFile {
    fn visible(&self) -> Vec<u8> {
        let mut bytes = self.durable.clone();
        for write in &self.pending {
            match write {
                PendingWrite::Append(more) => bytes.extend_from_slice(more),
                PendingWrite::Replace(all) => bytes.clone_from(all),
            }
        }
        bytes
    }
}

#[derive(Debug)]
struct SimDiskState {
    files: BTreeMap<String, SimFile>,
    timing: DiskTiming,
    slow_factor: u64,
    stalled: bool,
    unstalled: Arc<tokio::sync::Notify>,
    torn_writes: bool,
    /// Chance that a write or an fsync fails with an I/O error (0: never).
    error_probability: f64,
    /// Every write is refused for want of space (fsyncs of what was written still succeed).
    full: bool,
    /// Called by the next fsync as it begins, which then never completes: the nemesis's way
    /// to crash the node in the middle of an fsync.
    fsync_trap: Option<Trap>,
    /// Latency owed but not yet slept: madsim's smallest sleep is 1 ms, so sub-millisecond
    /// costs accumulate here until they add up to a sleep.
    latency_debt_us: u64,
    rng: SeededRng,
    stats: DiskStats,
}

/// Counters a checker or benchmark may read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub fsyncs: u64,
    pub crashes: u64,
    pub bytes_lost_on_crash: u64,
    pub corruptions_injected: u64,
    /// Operations charged while the disk was slow, and the latency the slowness added.
    pub ops_slowed: u64,
    pub slowed_extra_us: u64,
    /// Operations that found the disk stalled and waited for the stall to end.
    pub ops_stalled: u64,
    /// Crashes that kept a torn prefix of pending appends (torn writes armed, some kept).
    pub torn_crashes: u64,
    /// Writes and fsyncs failed with an injected I/O error, and the pending bytes the failed
    /// fsyncs dropped.
    pub io_errors: u64,
    pub bytes_dropped_by_fsync_errors: u64,
    /// Writes refused because the disk was full.
    pub full_refusals: u64,
    /// Fsyncs an armed trap caught, and the bytes pending when it did.
    pub fsyncs_trapped: u64,
    pub pending_bytes_at_trap: u64,
}

/// What an armed fsync trap does when it springs (the nemesis kills the node).
pub type FsyncTrap = Box<dyn FnOnce() + Send>;

struct Trap(FsyncTrap);

impl std::fmt::Debug for Trap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Trap")
    }
}

/// A node's disk kept in memory. The state lives outside the node, so it survives the node's
/// crash exactly as far as the crash semantics allow.
#[derive(Clone, Debug)]
pub struct SimDisk {
    state: Arc<Mutex<SimDiskState>>,
}

impl SimDisk {
    /// A healthy empty disk and its fault control. `rng` decides latencies and tears.
    pub fn new(timing: DiskTiming, rng: SeededRng) -> (SimDisk, DiskControl) {
        assert!(timing.fsync_latency_us_min <= timing.fsync_latency_us_max);
        let state = SimDiskState {
            files: BTreeMap::new(),
            timing,
            slow_factor: 1,
            stalled: false,
            unstalled: Arc::new(tokio::sync::Notify::new()),
            torn_writes: false,
            error_probability: 0.0,
            full: false,
            fsync_trap: None,
            latency_debt_us: 0,
            rng,
            stats: DiskStats::default(),
        };
        let disk = SimDisk { state: Arc::new(Mutex::new(state)) };
        (disk.clone(), DiskControl { disk })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimDiskState> {
        self.state.lock().expect("disk lock poisoned")
    }

    /// Charges `base_us` of latency (times the slow factor) and waits out any stall.
    async fn charge(&self, base_us: u64) {
        let mut waited = false;
        loop {
            let unstalled = self.lock().unstalled.clone();
            let notified = unstalled.notified();
            tokio::pin!(notified);
            // Registered before the check, so an unstall between the check and the wait wakes us.
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if !state.stalled {
                    break;
                }
                if !waited {
                    state.stats.ops_stalled += 1;
                    waited = true;
                }
            }
            notified.await;
        }
        let sleep_us = {
            let mut state = self.lock();
            if state.slow_factor > 1 {
                state.stats.ops_slowed += 1;
                state.stats.slowed_extra_us += base_us * (state.slow_factor - 1);
            }
            state.latency_debt_us += base_us * state.slow_factor;
            let whole_ms_us = state.latency_debt_us / 1000 * 1000;
            state.latency_debt_us -= whole_ms_us;
            whole_ms_us
        };
        if sleep_us > 0 {
            tokio::time::sleep(Duration::from_micros(sleep_us)).await;
        }
    }

    async fn append(&self, file: &str, payload: &[u8]) -> Result<(), DiskError> {
        let io_latency_us = self.lock().timing.io_latency_us;
        self.charge(io_latency_us).await;
        let record = encode_record(payload);
        let mut state = self.lock();
        state.refuse_write(file)?;
        state.files.entry(file.to_string()).or_default().pending.push(PendingWrite::Append(record));
        Ok(())
    }

    async fn write(&self, file: &str, payload: &[u8]) -> Result<(), DiskError> {
        self.replace_bytes(file, encode_record(payload)).await
    }

    async fn replace_bytes(&self, file: &str, record: Vec<u8>) -> Result<(), DiskError> {
        let io_latency_us = self.lock().timing.io_latency_us;
        self.charge(io_latency_us).await;
        let mut state = self.lock();
        state.refuse_write(file)?;
        let entry = state.files.entry(file.to_string()).or_default();
        entry.pending.push(PendingWrite::Replace(record));
        Ok(())
    }

    async fn read(&self, file: &str) -> Result<Records, DiskError> {
        decode_records(file, &self.read_bytes(file).await)
    }

    async fn read_bytes(&self, file: &str) -> Vec<u8> {
        let io_latency_us = self.lock().timing.io_latency_us;
        self.charge(io_latency_us).await;
        self.lock().files.get(file).map(SimFile::visible).unwrap_or_default()
    }

    async fn fsync(&self, file: &str) -> Result<(), DiskError> {
        let trap = {
            let mut state = self.lock();
            let trap = state.fsync_trap.take();
            if trap.is_some() {
                let pending: usize =
                    state.files.values().flat_map(|f| &f.pending).map(PendingWrite::len).sum();
                state.stats.fsyncs_trapped += 1;
                state.stats.pending_bytes_at_trap += pending as u64;
            }
            trap
        };
        if let Some(Trap(trap)) = trap {
            // The node dies here, its writes still pending: this fsync never returns.
            trap();
            std::future::pending::<()>().await;
        }
        let fsync_latency_us = {
            let mut state = self.lock();
            let (min, max) = (state.timing.fsync_latency_us_min, state.timing.fsync_latency_us_max);
            state.rng.random_range(min..=max)
        };
        self.charge(fsync_latency_us).await;
        // Durable from the moment the fsync returns: writes issued while it slept are covered
        // too, as on a real disk where fsync flushes whatever is dirty when it completes.
        let mut state = self.lock();
        if state.injects_error() {
            // The kernel drops the dirty pages it failed to write back and reports the error
            // once: the writes are gone, and a retried fsync would succeed.
            let state = &mut *state;
            let dropped = state.files.get_mut(file).map(|entry| {
                let pending = std::mem::take(&mut entry.pending);
                pending.iter().map(PendingWrite::len).sum::<usize>() as u64
            });
            state.stats.bytes_dropped_by_fsync_errors += dropped.unwrap_or(0);
            state.stats.io_errors += 1;
            return Err(injected_io_error(file));
        }
        state.stats.fsyncs += 1;
        if let Some(entry) = state.files.get_mut(file) {
            entry.durable = entry.visible();
            entry.pending.clear();
        }
        Ok(())
    }

    async fn remove(&self, file: &str) -> Result<(), DiskError> {
        let fsync_latency_us = self.lock().timing.fsync_latency_us_min;
        self.charge(fsync_latency_us).await;
        self.lock().files.remove(file);
        Ok(())
    }

    fn list(&self) -> Vec<String> {
        self.lock()
            .files
            .iter()
            .filter(|(_, f)| !f.visible().is_empty() || !f.durable.is_empty())
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// The nemesis's handle on one node's simulated disk.
#[derive(Clone, Debug)]
pub struct DiskControl {
    disk: SimDisk,
}

impl DiskControl {
    /// Multiplies every latency by `factor` (1 = healthy, up to [`SLOW_FACTOR_MAX`]).
    pub fn set_slow_factor(&self, factor: u64) {
        assert!((1..=SLOW_FACTOR_MAX).contains(&factor), "slow factor {factor} out of bounds");
        self.disk.lock().slow_factor = factor;
    }

    /// Blocks every operation from now until [`DiskControl::unstall`] (a hung controller).
    pub fn stall(&self) {
        self.disk.lock().stalled = true;
    }

    /// Ends a stall: blocked operations proceed.
    pub fn unstall(&self) {
        let mut state = self.disk.lock();
        state.stalled = false;
        state.unstalled.notify_waiters();
    }

    /// Arms or disarms torn writes: with them armed, a crash keeps a random prefix of each
    /// file's pending appended bytes instead of dropping them all.
    pub fn set_torn_writes(&self, armed: bool) {
        self.disk.lock().torn_writes = armed;
    }

    /// Makes each write and fsync fail with an I/O error with this chance (0 turns errors
    /// off). A failed fsync drops the file's pending writes.
    pub fn set_io_errors(&self, probability: f64) {
        assert!(
            (0.0..=1.0).contains(&probability),
            "I/O error chance {probability} is no probability"
        );
        self.disk.lock().error_probability = probability;
    }

    /// Fills the disk (every write refused with [`DiskError::Full`]) or frees it.
    pub fn set_full(&self, full: bool) {
        self.disk.lock().full = full;
    }

    /// Arms a trap the node's next fsync springs as it begins (before anything is durable),
    /// and which then never returns; `None` disarms. Returns the trap that was armed and
    /// did not spring.
    pub fn set_fsync_trap(&self, trap: Option<FsyncTrap>) -> Option<FsyncTrap> {
        std::mem::replace(&mut self.disk.lock().fsync_trap, trap.map(Trap)).map(|Trap(trap)| trap)
    }

    /// Returns latency to healthy and ends any stall. Torn writes stay as set.
    pub fn heal(&self) {
        self.disk.lock().slow_factor = 1;
        self.unstall();
    }

    /// Applies a crash: pending writes are lost (or torn, when armed). Called by the world when
    /// it kills the node that owns this disk.
    pub fn crash(&self) {
        let mut state = self.disk.lock();
        let state = &mut *state;
        state.stats.crashes += 1;
        let mut torn = false;
        for file in state.files.values_mut() {
            let pending = std::mem::take(&mut file.pending);
            let only_appends = pending.iter().all(|w| matches!(w, PendingWrite::Append(_)));
            let pending_bytes: Vec<u8> = pending
                .iter()
                .flat_map(|w| match w {
                    PendingWrite::Append(bytes) | PendingWrite::Replace(bytes) => bytes.clone(),
                })
                .collect();
            // A torn write needs bytes written in place after the durable ones: appends. A
            // pending replace is atomic (write beside, rename) so it is lost whole.
            let kept = if state.torn_writes && only_appends && !pending_bytes.is_empty() {
                state.rng.random_range(0..pending_bytes.len())
            } else {
                0
            };
            torn |= kept > 0;
            file.durable.extend_from_slice(&pending_bytes[..kept]);
            state.stats.bytes_lost_on_crash += (pending_bytes.len() - kept) as u64;
        }
        state.stats.torn_crashes += u64::from(torn);
        state.files.retain(|_, file| !file.durable.is_empty());
        state.latency_debt_us = 0;
    }

    /// Flips one bit in the durable bytes of `file` (or of a file chosen at random when
    /// `None`). Returns the file and byte offset hit, or `None` when there was nothing to hit.
    pub fn corrupt(&self, file: Option<&str>) -> Option<(String, usize)> {
        let mut state = self.disk.lock();
        let state = &mut *state;
        let candidates: Vec<String> = state
            .files
            .iter()
            .filter(|(name, f)| !f.durable.is_empty() && file.is_none_or(|wanted| wanted == *name))
            .map(|(name, _)| name.clone())
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let name = candidates[state.rng.random_range(0..candidates.len())].clone();
        let target = state.files.get_mut(&name).expect("candidate exists");
        let offset = state.rng.random_range(0..target.durable.len());
        let bit = state.rng.random_range(0..8);
        target.durable[offset] ^= 1 << bit;
        state.stats.corruptions_injected += 1;
        Some((name, offset))
    }

    /// The durable bytes of a file: what a crash now would leave (torn writes aside).
    pub fn durable_bytes(&self, file: &str) -> Vec<u8> {
        self.disk.lock().files.get(file).map(|f| f.durable.clone()).unwrap_or_default()
    }

    /// The bytes a read sees now, durable and pending.
    pub fn visible_bytes(&self, file: &str) -> Vec<u8> {
        self.disk.lock().files.get(file).map(SimFile::visible).unwrap_or_default()
    }

    /// Bytes written but not yet fsynced, over every file: what a crash now would lose.
    pub fn pending_bytes(&self) -> u64 {
        let state = self.disk.lock();
        let pending = state.files.values().flat_map(|file| &file.pending);
        pending.map(|write| write.len() as u64).sum()
    }

    /// Counters so far.
    pub fn stats(&self) -> DiskStats {
        self.disk.lock().stats
    }

    /// The disk this control drives.
    pub fn disk(&self) -> Disk {
        Disk::Sim(self.disk.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_round_trip() {
        let mut bytes = encode_record(b"alpha");
        bytes.extend(encode_record(b""));
        bytes.extend(encode_record(b"gamma"));
        let read = decode_records("f", &bytes).unwrap();
        assert_eq!(read.records, vec![b"alpha".to_vec(), vec![], b"gamma".to_vec()]);
        assert_eq!(read.torn_tail_bytes, 0);
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["", ".hidden", "a/b", "../x", "sp ace"] {
            assert_eq!(check_name(name), Err(DiskError::InvalidName(name.to_string())));
        }
        assert!(check_name("raft-log.0001").is_ok());
    }

    proptest! {
        /// Any prefix of a valid file reads as whole records plus a torn tail, never as
        /// corruption and never as a record that was not written.
        #[test]
        fn a_prefix_reads_as_records_and_a_torn_tail(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = Vec::new();
            let mut ends = vec![0];
            for payload in &payloads {
                bytes.extend(encode_record(payload));
                ends.push(bytes.len());
            }
            let cut_at = cut.index(bytes.len() + 1);
            let read = decode_records("f", &bytes[..cut_at]).unwrap();
            let whole = ends.iter().filter(|&&end| end <= cut_at).count() - 1;
            prop_assert_eq!(&read.records[..], &payloads[..whole]);
            prop_assert_eq!(read.torn_tail_bytes, cut_at - ends[whole]);
        }

        /// Any single flipped bit in a file is reported as corruption or, when it only shortens
        /// what a reader can see, never yields a payload that differs from what was written.
        #[test]
        fn a_flipped_bit_is_detected(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 1..6),
            at in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut bytes = Vec::new();
            for payload in &payloads {
                bytes.extend(encode_record(payload));
            }
            let offset = at.index(bytes.len());
            bytes[offset] ^= 1 << bit;
            match decode_records("f", &bytes) {
                Err(DiskError::Corrupt { offset: record_offset, .. }) => prop_assert!(record_offset <= offset),
                other => prop_assert!(false, "flip at {} not detected: {:?}", offset, other),
            }
        }
    }
}

/// The crash semantics of the simulated disk, exercised inside madsim (it sleeps on madsim's
/// clock).
#[cfg(all(test, madsim))]
mod crash_tests {
    use super::*;
    use crate::seams::rng::rng_for;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Append(Vec<u8>),
        Fsync,
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        proptest::collection::vec(
            prop_oneof![
                3 => proptest::collection::vec(any::<u8>(), 0..24).prop_map(Op::Append),
                1 => Just(Op::Fsync),
            ],
            0..20,
        )
    }

    fn in_simulation<T: Send + 'static>(
        seed: u64,
        body: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default())
            .block_on(body)
    }

    /// Plays `ops`, crashes, and returns (records up to the last fsync, every record appended,
    /// durable bytes before the crash, bytes pending at the crash, bytes after the crash).
    async fn play_and_crash(
        ops: Vec<Op>,
        torn: bool,
        seed: u64,
    ) -> (Vec<Vec<u8>>, Vec<u8>, Vec<u8>, Vec<u8>) {
        let (disk, control) = SimDisk::new(DiskTiming::default(), rng_for(seed, "disk"));
        let disk = Disk::Sim(disk);
        control.set_torn_writes(torn);
        let mut synced = Vec::new();
        let mut written = Vec::new();
        for op in ops {
            match op {
                Op::Append(payload) => {
                    disk.append("log", &payload).await.unwrap();
                    written.push(payload);
                }
                Op::Fsync => {
                    disk.fsync("log").await.unwrap();
                    synced = written.clone();
                }
            }
        }
        let durable = control.durable_bytes("log");
        let visible = control.visible_bytes("log");
        control.crash();
        (synced, durable, visible, control.visible_bytes("log"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// After a crash exactly the un-fsynced writes are gone.
        #[test]
        fn a_crash_loses_exactly_the_unsynced_writes(ops in ops(), seed in any::<u64>()) {
            let (synced, durable, _, after) = in_simulation(seed, play_and_crash(ops, false, seed));
            prop_assert_eq!(&after, &durable);
            prop_assert_eq!(decode_records("log", &after).unwrap().records, synced);
        }

        /// With torn writes armed, a crash leaves the durable bytes plus a strict prefix of the
        /// pending ones, which reads back as the synced records, maybe more whole records, and
        /// a torn tail.
        #[test]
        fn a_torn_write_leaves_a_prefix(ops in ops(), seed in any::<u64>()) {
            let (synced, durable, visible, after) = in_simulation(seed, play_and_crash(ops, true, seed));
            prop_assert!(after.starts_with(&durable));
            prop_assert!(visible.starts_with(&after));
            prop_assert!(after.len() < visible.len() || after.len() == durable.len());
            let read = decode_records("log", &after).unwrap();
            prop_assert!(read.records.starts_with(&synced));
        }
    }

    #[test]
    fn corruption_is_detected_and_salvage_keeps_the_prefix() {
        in_simulation(1, async {
            let (disk, control) = SimDisk::new(DiskTiming::default(), rng_for(1, "disk"));
            let disk = Disk::Sim(disk);
            for value in 0u8..10 {
                disk.append("log", &[value; 16]).await.unwrap();
            }
            disk.fsync("log").await.unwrap();
            let (file, offset) = control.corrupt(Some("log")).unwrap();
            assert_eq!(file, "log");
            let error = disk.read("log").await.unwrap_err();
            let DiskError::Corrupt { offset: record_offset, .. } = error else {
                panic!("{error:?}")
            };
            assert!(record_offset <= offset);
            let (salvaged, found) = disk.salvage("log").await.unwrap();
            assert!(found.is_some());
            assert_eq!(salvaged.records.len(), record_offset / (RECORD_HEADER_BYTES + 16));
        });
    }

    #[test]
    fn a_failed_fsync_drops_the_pending_writes_and_the_retry_succeeds() {
        in_simulation(3, async {
            let (disk, control) = SimDisk::new(DiskTiming::default(), rng_for(3, "disk"));
            let disk = Disk::Sim(disk);
            disk.append("log", b"durable").await.unwrap();
            disk.fsync("log").await.unwrap();
            control.set_io_errors(1.0);
            let refused = disk.append("log", b"refused").await.unwrap_err();
            assert!(refused.is_write_failure(), "{refused}");
            control.set_io_errors(0.0);
            disk.append("log", b"lost").await.unwrap();
            control.set_io_errors(1.0);
            let error = disk.fsync("log").await.unwrap_err();
            assert_eq!(error.to_string(), "log: input/output error (EIO)");
            control.set_io_errors(0.0);
            // The retry succeeds, and what the failed fsync covered is gone: fsyncgate.
            disk.fsync("log").await.unwrap();
            assert_eq!(disk.read("log").await.unwrap().records, vec![b"durable".to_vec()]);
            let stats = control.stats();
            assert_eq!(stats.io_errors, 2);
            assert_eq!(stats.bytes_dropped_by_fsync_errors, (RECORD_HEADER_BYTES + 4) as u64);
        });
    }

    #[test]
    fn an_fsync_trap_springs_once_before_anything_is_durable() {
        in_simulation(5, async {
            let (disk, control) = SimDisk::new(DiskTiming::default(), rng_for(5, "disk"));
            let disk = Disk::Sim(disk);
            disk.append("log", b"pending").await.unwrap();
            let sprung = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = sprung.clone();
            let trap: FsyncTrap =
                Box::new(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
            assert!(control.set_fsync_trap(Some(trap)).is_none());
            let stuck = tokio::time::timeout(Duration::from_secs(5), disk.fsync("log")).await;
            assert!(stuck.is_err(), "a trapped fsync never returns");
            assert!(sprung.load(std::sync::atomic::Ordering::SeqCst));
            assert!(control.durable_bytes("log").is_empty(), "nothing became durable");
            let stats = control.stats();
            assert_eq!((stats.fsyncs_trapped, stats.pending_bytes_at_trap), (1, 19));
            // Sprung once: the next fsync goes through, and nothing is left armed.
            disk.fsync("log").await.unwrap();
            assert!(control.set_fsync_trap(None).is_none());
        });
    }

    #[test]
    fn a_full_disk_refuses_writes_but_not_fsyncs() {
        in_simulation(4, async {
            let (disk, control) = SimDisk::new(DiskTiming::default(), rng_for(4, "disk"));
            let disk = Disk::Sim(disk);
            disk.append("log", b"before").await.unwrap();
            control.set_full(true);
            let error = disk.append("log", b"more").await.unwrap_err();
            assert_eq!(error, DiskError::Full { file: "log".into() });
            assert!(disk.write("snap", b"x").await.unwrap_err().is_write_failure());
            disk.fsync("log").await.unwrap();
            control.set_full(false);
            disk.append("log", b"after").await.unwrap();
            let records = disk.read("log").await.unwrap().records;
            assert_eq!(records, vec![b"before".to_vec(), b"after".to_vec()]);
            assert_eq!(control.stats().full_refusals, 2);
            assert!(
                !DiskError::Corrupt { file: "f".into(), offset: 0, what: "x" }.is_write_failure()
            );
        });
    }

    #[test]
    fn slow_disk_and_stalls_cost_simulated_time() {
        in_simulation(2, async {
            let timing = DiskTiming {
                io_latency_us: 20,
                fsync_latency_us_min: 1000,
                fsync_latency_us_max: 1000,
            };
            let (disk, control) = SimDisk::new(timing, rng_for(2, "disk"));
            let disk = Disk::Sim(disk);
            let start = tokio::time::Instant::now();
            disk.fsync("log").await.unwrap();
            let healthy = start.elapsed();
            control.set_slow_factor(1000);
            let start = tokio::time::Instant::now();
            disk.fsync("log").await.unwrap();
            let slow = start.elapsed();
            assert!(slow >= healthy * 900, "healthy {healthy:?}, slow {slow:?}");
            control.heal();
            control.stall();
            let stalled = disk.clone();
            let waiter = tokio::spawn(async move { stalled.append("log", b"x").await });
            tokio::time::sleep(Duration::from_secs(5)).await;
            assert!(!waiter.is_finished(), "a stalled disk must not complete writes");
            control.unstall();
            waiter.await.unwrap().unwrap();
        });
    }
}
