//! Clock seam: what a node believes the time is.
//!
//! The real clock reads the system's wall clock. The simulated clock reads madsim's global
//! simulated time (madsim has one clock for every node) and adds this node's own faults: a
//! fixed offset, a drift in parts per million, and jumps forward or back. The nemesis drives
//! those faults through a [`ClockControl`].
//!
//! Two readings are offered, as on a real machine:
//! - [`Clock::wall_ms`], the wall clock: skewed, drifting and jumping. Anything a node stamps
//!   into a message or compares across nodes uses it, and suffers its faults.
//! - [`Clock::sleep`], timers on the node's monotonic clock: they never jump, but a drifting
//!   oscillator makes them run fast or slow.
//! - [`Clock::monotonic_ms`] and [`Clock::deadline_in`], readings of the runtime's monotonic
//!   time: no offset, drift or jump touches them. Anything that measures how long ago
//!   something happened on this node (a cache's age, a budget) uses them, so a clock fault
//!   cannot stretch it.
//!
//! **Invariant:** service logic reads time only through a `Clock`; this module holds the only
//! read of the machine's wall clock in `core`.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Milliseconds between the UNIX epoch and the instant a simulated run starts: a fixed date,
/// so that simulated wall-clock readings look like real ones and replay identically.
pub const SIMULATED_EPOCH_UNIX_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// Largest drift a clock fault may set: 10% fast or slow. Real oscillators drift by tens of
/// ppm; larger values model a broken clock, and beyond this bound timers stop meaning much.
pub const DRIFT_PPM_MAX: i64 = 100_000;

/// A node's clock. Cheap to clone; clones share the same faults.
#[derive(Clone, Debug)]
pub struct Clock {
    kind: ClockKind,
}

#[derive(Clone, Debug)]
enum ClockKind {
    /// `origin`: the first monotonic reading, taken lazily so a system clock can be made
    /// outside a runtime.
    System {
        origin: Arc<OnceLock<tokio::time::Instant>>,
    },
    Simulated {
        start: tokio::time::Instant,
        skew: Arc<Mutex<Skew>>,
    },
}

/// What a simulated clock's faults did to its readings, for the nemesis to report. Counts only
/// grow; the nemesis compares two readings of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockStats {
    /// Wall-clock readings that were off true time (by at least a microsecond).
    pub skewed_reads: u64,
    /// The largest error of any reading so far, in ms (reading minus true time, either sign).
    pub error_ms_max_abs: u64,
    /// Sleeps stretched or shrunk by drift.
    pub drifted_sleeps: u64,
}

/// The faults applied on top of true time. `offset_us` absorbs jumps and the drift
/// accumulated before `drift_anchor_us`, so a reading is a pure function of true time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Skew {
    offset_us: i64,
    drift_ppm: i64,
    drift_anchor_us: i64,
    stats: ClockStats,
}

impl Skew {
    fn reading_us(&self, true_us: i64) -> i64 {
        let drifted_us =
            (true_us - self.drift_anchor_us) as i128 * self.drift_ppm as i128 / 1_000_000;
        true_us + self.offset_us + drifted_us as i64
    }
}

/// A moment on the runtime's monotonic time, from [`Clock::deadline_in`].
#[derive(Clone, Copy, Debug)]
pub struct Deadline(tokio::time::Instant);

impl Deadline {
    /// What is left until the deadline; zero once it passed.
    pub fn left(&self) -> Duration {
        self.0.saturating_duration_since(tokio::time::Instant::now())
    }
}

impl Clock {
    /// The machine's own wall clock, for the real build.
    pub fn system() -> Clock {
        Clock { kind: ClockKind::System { origin: Arc::new(OnceLock::new()) } }
    }

    /// A simulated clock starting now with no faults, and the handle that injects them.
    /// Must be called inside the simulation (or any tokio runtime with time).
    pub fn simulated() -> (Clock, ClockControl) {
        let skew = Arc::new(Mutex::new(Skew::default()));
        let start = tokio::time::Instant::now();
        let clock = Clock { kind: ClockKind::Simulated { start, skew: skew.clone() } };
        (clock.clone(), ClockControl { clock })
    }

    /// Milliseconds since the UNIX epoch as this node's wall clock reads them: skewed,
    /// drifting and jumping under faults. May go backwards after a backward jump.
    pub fn wall_ms(&self) -> i64 {
        match &self.kind {
            ClockKind::System { .. } => {
                // The seam's one read of the machine's wall clock.
                let since_epoch = std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap_or_default();
                since_epoch.as_millis() as i64
            }
            ClockKind::Simulated { start, skew } => {
                let true_us = start.elapsed().as_micros() as i64;
                let mut skew = skew.lock().expect("clock lock poisoned");
                let reading_us = skew.reading_us(true_us);
                let error_us = reading_us - true_us;
                if error_us != 0 {
                    skew.stats.skewed_reads += 1;
                    let error_ms = error_us.unsigned_abs() / 1000;
                    skew.stats.error_ms_max_abs = skew.stats.error_ms_max_abs.max(error_ms);
                }
                SIMULATED_EPOCH_UNIX_MS + reading_us.div_euclid(1000)
            }
        }
    }

    /// Milliseconds on the runtime's monotonic time since this clock's origin (its creation
    /// in the simulation, its first monotonic reading on a real machine): never goes back,
    /// and no offset, drift or jump of the wall clock moves it. Only differences between two
    /// readings of one clock mean anything.
    pub fn monotonic_ms(&self) -> u64 {
        let origin = match &self.kind {
            ClockKind::System { origin } => *origin.get_or_init(tokio::time::Instant::now),
            ClockKind::Simulated { start, .. } => *start,
        };
        origin.elapsed().as_millis() as u64
    }

    /// Sleeps for `duration` as measured by this node's monotonic clock: a clock drifting
    /// fast wakes early in true time, a slow one late. Jumps do not affect it.
    pub async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(self.true_duration(duration)).await
    }

    /// The moment `duration` from now on the runtime's monotonic time: the time the
    /// transport's timeouts run on, which the node's drift does not stretch.
    pub fn deadline_in(&self, duration: Duration) -> Deadline {
        Deadline(tokio::time::Instant::now() + duration)
    }

    /// The true (simulated) duration that this node's monotonic clock measures as `duration`.
    pub fn true_duration(&self, duration: Duration) -> Duration {
        match &self.kind {
            ClockKind::System { .. } => duration,
            ClockKind::Simulated { skew, .. } => {
                let drift_ppm = {
                    let mut skew = skew.lock().expect("clock lock poisoned");
                    skew.stats.drifted_sleeps += u64::from(skew.drift_ppm != 0);
                    skew.drift_ppm
                };
                let scaled_us =
                    duration.as_micros() as i128 * 1_000_000 / (1_000_000 + drift_ppm) as i128;
                Duration::from_micros(scaled_us.max(0) as u64)
            }
        }
    }

    fn true_now_us(&self) -> i64 {
        match &self.kind {
            ClockKind::System { .. } => 0,
            ClockKind::Simulated { start, .. } => start.elapsed().as_micros() as i64,
        }
    }
}

/// The nemesis's handle on one node's simulated clock.
#[derive(Clone, Debug)]
pub struct ClockControl {
    clock: Clock,
}

impl ClockControl {
    fn with_skew(&self, change: impl FnOnce(&mut Skew, i64)) {
        let true_us = self.clock.true_now_us();
        if let ClockKind::Simulated { skew, .. } = &self.clock.kind {
            change(&mut skew.lock().expect("clock lock poisoned"), true_us);
        }
    }

    /// Sets the clock to read `offset_ms` away from true time from now on (drift continues).
    pub fn set_offset_ms(&self, offset_ms: i64) {
        self.with_skew(|skew, true_us| {
            let current_error_us = skew.reading_us(true_us) - true_us;
            skew.offset_us += offset_ms * 1000 - current_error_us;
        });
    }

    /// Moves the clock by `delta_ms` at once: forward when positive, back when negative.
    pub fn jump_ms(&self, delta_ms: i64) {
        self.with_skew(|skew, _| skew.offset_us += delta_ms * 1000);
    }

    /// Makes the clock gain (positive) or lose (negative) `drift_ppm` microseconds per second
    /// from now on. The error accumulated so far is kept.
    pub fn set_drift_ppm(&self, drift_ppm: i64) {
        assert!(drift_ppm.abs() <= DRIFT_PPM_MAX, "clock drift {drift_ppm} ppm beyond the bound");
        self.with_skew(|skew, true_us| {
            let reading_us = skew.reading_us(true_us);
            skew.offset_us = reading_us - true_us;
            skew.drift_anchor_us = true_us;
            skew.drift_ppm = drift_ppm;
        });
    }

    /// Removes every clock fault: the clock reads true time again. The stats stay.
    pub fn heal(&self) {
        self.with_skew(|skew, _| *skew = Skew { stats: skew.stats, ..Skew::default() });
    }

    /// What the clock's faults did to its readings so far.
    pub fn stats(&self) -> ClockStats {
        match &self.clock.kind {
            ClockKind::System { .. } => ClockStats::default(),
            ClockKind::Simulated { skew, .. } => skew.lock().expect("clock lock poisoned").stats,
        }
    }

    /// This node's clock error now, in milliseconds (reading minus true time).
    pub fn error_ms(&self) -> i64 {
        let true_us = self.clock.true_now_us();
        match &self.clock.kind {
            ClockKind::System { .. } => 0,
            ClockKind::Simulated { skew, .. } => {
                (skew.lock().expect("clock lock poisoned").reading_us(true_us) - true_us)
                    .div_euclid(1000)
            }
        }
    }

    /// The clock this control drives.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_reading_combines_offset_and_drift() {
        let skew = Skew {
            offset_us: 5_000,
            drift_ppm: 1_000,
            drift_anchor_us: 1_000_000,
            ..Skew::default()
        };
        // One second after the anchor a +1000 ppm clock has gained 1 ms.
        assert_eq!(skew.reading_us(2_000_000), 2_000_000 + 5_000 + 1_000);
        assert_eq!(Skew::default().reading_us(123), 123);
    }
}

#[cfg(all(test, madsim))]
mod simulated_tests {
    use super::*;

    #[test]
    fn a_skewed_clock_reads_as_configured() {
        let runtime = madsim::runtime::Runtime::with_seed_and_config(1, madsim::Config::default());
        runtime.block_on(async {
            let (clock, control) = Clock::simulated();
            let true_ms = |c: &Clock| c.wall_ms() - SIMULATED_EPOCH_UNIX_MS;
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert_eq!(true_ms(&clock), 1000);
            control.set_offset_ms(5_000);
            assert_eq!(control.error_ms(), 5_000);
            assert_eq!(true_ms(&clock), 6_000);
            control.set_drift_ppm(100_000); // 10% fast
            tokio::time::sleep(Duration::from_secs(10)).await;
            assert_eq!(control.error_ms(), 6_000);
            assert_eq!(true_ms(&clock), 17_000);
            control.jump_ms(-30_000);
            assert_eq!(true_ms(&clock), -13_000, "a backward jump moves the wall clock back");
            // Timers run on the drifting oscillator: 1.1 s of local time is 1 s of true time.
            assert_eq!(clock.true_duration(Duration::from_millis(1100)), Duration::from_secs(1));
            control.heal();
            assert_eq!(control.error_ms(), 0);
            assert_eq!(true_ms(&clock), 11_000);
        });
    }

    #[test]
    fn the_monotonic_reading_ignores_every_clock_fault() {
        let runtime = madsim::runtime::Runtime::with_seed_and_config(1, madsim::Config::default());
        runtime.block_on(async {
            let (clock, control) = Clock::simulated();
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert_eq!(clock.monotonic_ms(), 1000);
            control.set_offset_ms(-20_000);
            control.jump_ms(-30_000);
            control.set_drift_ppm(-100_000);
            assert_eq!(clock.monotonic_ms(), 1000, "offsets and jumps leave it alone");
            tokio::time::sleep(Duration::from_secs(10)).await;
            assert_eq!(clock.monotonic_ms(), 11_000, "a slow oscillator does not slow it");
            assert_eq!(control.error_ms(), -51_000);
            control.heal();
            assert_eq!(clock.monotonic_ms(), 11_000);
            assert_eq!(
                Clock::system().monotonic_ms(),
                0,
                "a system clock starts at its first read"
            );
        });
    }
}
