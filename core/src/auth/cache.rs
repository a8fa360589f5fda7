//! The auth data plane: each API server's cache of identities, sans-IO.
//!
//! **Pull, not push.** The API server pulls the key records changed since the version it holds
//! ([`super::machine::Command::Changes`]) every `refresh_ms`. Pull needs no membership on the
//! plane's side (it does not track API servers, and a server that was cut off catches up by
//! itself with one request), its load is bounded by servers / `refresh_ms`, and what it costs,
//! a new key working only after the next pull, is bought back by a lookup on a miss.
//!
//! **TTL.** The cache is trusted for `ttl_ms` after the start of its last complete pull,
//! measured on the server's monotonic time ([`crate::seams::clock::Clock::monotonic_ms`]),
//! never on its wall clock: a wall clock set back (a backward jump, an offset healed or put
//! on, a slow drift) would otherwise stretch the trust in a stale cache by as much, so a
//! revoked key would keep working past any bound while the plane is unreachable. Past the
//! TTL every request is a miss. A pull's answer reflects the plane at some moment after the
//! pull started, so while the plane is unreachable a revoked key keeps working for at most
//! `ttl_ms` after its revocation commits (the promise, [`super::AuthSettings::revocation_bound_ms`],
//! allows one pull's timeout more), and a key never seen is answered as
//! `on_miss_unreachable` says. Wall times stay where a wall time is meant: the records'
//! `created_ms` and `revoked_ms`, the plane leader's stamps.
//!
//! **Invariant:** the cache's version and the start of its last complete pull only grow, and
//! a revoked record is never replaced by an unrevoked one (the plane never un-revokes; a stale
//! lookup must not either).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::machine::KeyRecord;

/// What an API server answers for a key it cannot confirm while the plane is unreachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissPolicy {
    /// 401: treat the key as unknown (safe; a brand-new key fails until the plane is back).
    Deny,
    /// 503: say the service cannot authenticate now (safe; the client retries).
    Unavailable,
    /// Accept the request unauthenticated (unsafe: the key checker reports every such accept
    /// of an unknown key).
    Allow,
}

/// The cache's verdict on a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Accept {
        key: String,
        account: String,
    },
    Revoked {
        key: String,
    },
    /// The plane, as of a fresh pull or lookup, has no such key.
    Unknown,
    /// The cache cannot answer (no such key in it, or the cache is past its TTL): look it up.
    Miss,
}

/// An API server's identity cache.
#[derive(Clone, Debug, Default)]
pub struct IdentityCache {
    version: u64,
    /// Secret hash to record.
    by_hash: BTreeMap<String, KeyRecord>,
    /// When the last complete pull started, on the server's monotonic time.
    pulled_at_ms: Option<u64>,
    ttl_ms: u64,
}

impl IdentityCache {
    pub fn new(ttl_ms: u64) -> IdentityCache {
        IdentityCache { ttl_ms, ..IdentityCache::default() }
    }

    /// The plane's version this cache holds.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Whether the last complete pull started within the TTL before `now_ms` (monotonic).
    pub fn is_fresh(&self, now_ms: u64) -> bool {
        // A reading taken just before a pull landed (another thread) may precede its start:
        // an age of zero, not a negative one.
        self.pulled_at_ms.is_some_and(|at| now_ms.saturating_sub(at) <= self.ttl_ms)
    }

    /// A pull's answer: the records changed after `self.version()` up to `version`, asked
    /// at `pulled_at_ms` (monotonic, read before the request left, so the answer is at least
    /// that new). `complete`: the pull brought every change (not a page of them), so the
    /// cache is fresh.
    pub fn apply_changes(
        &mut self,
        records: Vec<KeyRecord>,
        version: u64,
        pulled_at_ms: u64,
        complete: bool,
    ) {
        if version < self.version {
            return; // An answer older than what the cache holds.
        }
        for record in records {
            self.insert(record);
        }
        self.version = version;
        if complete {
            // Pulls run one after another, so starts grow; the maximum keeps the invariant
            // should two ever overlap.
            self.pulled_at_ms =
                Some(self.pulled_at_ms.map_or(pulled_at_ms, |at| at.max(pulled_at_ms)));
        }
    }

    /// A record a lookup found.
    pub fn insert(&mut self, record: KeyRecord) {
        if let Some(held) = self.by_hash.get(&record.secret_hash) {
            if held.version >= record.version || held.revoked_ms.is_some() {
                return;
            }
        }
        self.by_hash.insert(record.secret_hash.clone(), record);
    }

    /// The verdict on a key whose secret hashes to `secret_hash`, at `now_ms` on the server's
    /// monotonic time.
    pub fn decide(&self, secret_hash: &str, now_ms: u64) -> Decision {
        if !self.is_fresh(now_ms) {
            return Decision::Miss;
        }
        match self.by_hash.get(secret_hash) {
            Some(record) if record.revoked_ms.is_some() => {
                Decision::Revoked { key: record.key.clone() }
            }
            Some(record) => {
                Decision::Accept { key: record.key.clone(), account: record.account.clone() }
            }
            None => Decision::Miss,
        }
    }

    /// The verdict once a lookup answered (`found`), whatever the cache's age.
    pub fn decide_found(found: Option<&KeyRecord>) -> Decision {
        match found {
            Some(record) if record.revoked_ms.is_some() => {
                Decision::Revoked { key: record.key.clone() }
            }
            Some(record) => {
                Decision::Accept { key: record.key.clone(), account: record.account.clone() }
            }
            None => Decision::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, version: u64, revoked: bool) -> KeyRecord {
        KeyRecord {
            key: key.into(),
            account: "a".into(),
            secret_hash: format!("h-{key}"),
            created_ms: 0,
            revoked_ms: revoked.then_some(5),
            version,
        }
    }

    #[test]
    fn the_cache_answers_within_its_ttl_and_never_unrevokes() {
        let mut cache = IdentityCache::new(1000);
        assert_eq!(cache.decide("h-k1", 0), Decision::Miss, "never pulled");
        cache.apply_changes(vec![record("k1", 1, false)], 1, 100, true);
        let accept = Decision::Accept { key: "k1".into(), account: "a".into() };
        assert_eq!(cache.decide("h-k1", 1100), accept);
        assert_eq!(cache.decide("h-k1", 1101), Decision::Miss, "past the TTL");
        assert_eq!(cache.decide("h-other", 500), Decision::Miss);
        cache.apply_changes(vec![record("k1", 2, true)], 2, 200, true);
        assert_eq!(cache.decide("h-k1", 300), Decision::Revoked { key: "k1".into() });
        cache.insert(record("k1", 1, false));
        cache.apply_changes(vec![record("k1", 1, false)], 1, 300, true);
        assert_eq!(cache.decide("h-k1", 300), Decision::Revoked { key: "k1".into() });
        assert_eq!(cache.version(), 2);
        cache.apply_changes(vec![], 3, 2000, false);
        assert_eq!(cache.decide("h-k1", 2000), Decision::Miss, "a partial page is not a refresh");
        assert_eq!(IdentityCache::decide_found(None), Decision::Unknown);
    }

    #[test]
    fn an_early_reading_is_fresh_and_pull_starts_only_grow() {
        let mut cache = IdentityCache::new(1000);
        cache.apply_changes(vec![record("k1", 1, false)], 1, 500, true);
        assert!(cache.is_fresh(499), "a reading taken just before the pull landed");
        cache.apply_changes(vec![], 1, 400, true);
        assert!(!cache.is_fresh(1501), "an older start does not move the trust back");
        assert!(cache.is_fresh(1500));
    }
}

/// The cache driven by a simulated node's clock, as the API server drives it: trust runs on
/// the monotonic reading, so the wall clock's faults cannot stretch it.
#[cfg(all(test, madsim))]
mod clock_tests {
    use std::time::Duration;

    use super::*;
    use crate::seams::clock::{Clock, ClockControl};

    /// Injects `before`, pulls `k1` (unrevoked) at 1 s, injects `after`, and answers whether
    /// the cache still trusts `k1` at `ask_at_ms` of true time (TTL 10 s).
    fn trusted_at(
        before: impl FnOnce(&ClockControl),
        after: impl FnOnce(&ClockControl),
        ask_at_ms: u64,
    ) -> bool {
        let runtime = madsim::runtime::Runtime::with_seed_and_config(1, madsim::Config::default());
        runtime.block_on(async {
            let (clock, control) = Clock::simulated();
            let mut cache = IdentityCache::new(10_000);
            before(&control);
            tokio::time::sleep(Duration::from_secs(1)).await;
            let record = KeyRecord {
                key: "k1".into(),
                account: "a".into(),
                secret_hash: "h-k1".into(),
                created_ms: clock.wall_ms(),
                revoked_ms: None,
                version: 1,
            };
            cache.apply_changes(vec![record], 1, clock.monotonic_ms(), true);
            after(&control);
            tokio::time::sleep(Duration::from_millis(ask_at_ms - 1000)).await;
            matches!(cache.decide("h-k1", clock.monotonic_ms()), Decision::Accept { .. })
        })
    }

    #[test]
    fn a_backward_wall_clock_jump_does_not_extend_trust() {
        let none = |_: &ClockControl| {};
        assert!(trusted_at(none, none, 11_000), "within the TTL");
        assert!(!trusted_at(none, none, 11_001), "past the TTL");
        assert!(!trusted_at(none, |control| control.jump_ms(-30_000), 11_001));
        assert!(!trusted_at(none, |control| control.set_offset_ms(-30_000), 11_001));
        assert!(!trusted_at(none, |control| control.set_drift_ppm(-100_000), 11_001));
        // An offset that was on at the pull and is healed after it sets the wall clock back.
        let offset = |control: &ClockControl| control.set_offset_ms(30_000);
        assert!(!trusted_at(offset, |control| control.heal(), 11_001));
        // Nor does a forward jump cut trust short: how stale the cache is is a matter of true
        // time, not of the wall clock.
        assert!(trusted_at(none, |control| control.jump_ms(30_000), 11_000));
    }
}
