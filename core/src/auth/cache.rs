//! The auth data plane: each API server's cache of identities, sans-IO.
//!
//! **Pull, not push.** The API server pulls the key records changed since the version it holds
//! ([`super::machine::Command::Changes`]) every `refresh_ms`. Pull needs no membership on the
//! plane's side (it does not track API servers, and a server that was cut off catches up by
//! itself with one request), its load is bounded by servers / `refresh_ms`, and what it costs,
//! a new key working only after the next pull, is bought back by a lookup on a miss.
//!
//! **TTL.** The cache is trusted for `ttl_ms` after its last successful pull, on the server's
//! own clock. Past that, every request is a miss. So while the plane is unreachable a revoked
//! key keeps working for at most `ttl_ms` + one pull's duration after the revocation, and a key
//! never seen is answered as `on_miss_unreachable` says.
//!
//! **Invariant:** the cache's version only grows, and a revoked record is never replaced by
//! an unrevoked one (the plane never un-revokes; a stale lookup must not either).

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
    /// The local time of the last successful pull.
    refreshed_at_ms: Option<i64>,
    ttl_ms: i64,
}

impl IdentityCache {
    pub fn new(ttl_ms: u64) -> IdentityCache {
        IdentityCache { ttl_ms: ttl_ms as i64, ..IdentityCache::default() }
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

    /// Whether the last pull is within the TTL at `now_ms`.
    pub fn is_fresh(&self, now_ms: i64) -> bool {
        self.refreshed_at_ms.is_some_and(|at| now_ms - at <= self.ttl_ms)
    }

    /// A pull's answer, taken at `now_ms`: the records changed after `self.version()` up to
    /// `version`. `complete`: the pull brought every change (not a page of them), so the cache
    /// is fresh.
    pub fn apply_changes(
        &mut self,
        records: Vec<KeyRecord>,
        version: u64,
        now_ms: i64,
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
            self.refreshed_at_ms = Some(now_ms);
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

    /// The verdict on a key whose secret hashes to `secret_hash`, at local time `now_ms`.
    pub fn decide(&self, secret_hash: &str, now_ms: i64) -> Decision {
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
}
