//! The auth management plane's state machine: accounts and API keys, replicated with Raft
//! (strongly consistent), pure logic, no I/O.
//!
//! # Rules
//!
//! - Keys are stored **hashed**: the plane holds the BLAKE3 hash of each secret, never the
//!   secret. The admin endpoint hands the secret out once, when it creates the key.
//! - Every command is idempotent under retry: accounts and keys carry ids chosen by the admin
//!   endpoint before the first try, so a retried create finds what the first try made (and a
//!   create that reuses an id for something else is refused), and a revoke of a revoked key
//!   changes nothing.
//! - Every change bumps the plane's `version` and stamps the changed key with it, so the data
//!   plane pulls only what changed since the version it holds ([`Command::Changes`]).
//! - Time comes only from the leader's stamps (a running maximum, as in the queue).
//!
//! **Invariant:** a revoked key stays revoked: no command un-revokes it. **Invariant:** key
//! versions are unique and below or at the plane's version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::replica::{Stamped, StateMachine};

/// The first byte of every snapshot: the format of the bytes that follow.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 1;
/// Most key records one [`Command::Changes`] answers; the data plane pulls again for the rest.
pub const CHANGES_MAX: usize = 512;
/// Longest account name, in bytes.
pub const ACCOUNT_NAME_BYTES_MAX: usize = 128;

/// What the admin endpoints and the data plane ask of the plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    CreateAccount {
        account: String,
        name: String,
    },
    /// `secret_hash`: the BLAKE3 hash of the key's secret, hex.
    CreateKey {
        key: String,
        account: String,
        secret_hash: String,
    },
    RevokeKey {
        key: String,
    },
    /// The key records changed after `since` (at most [`CHANGES_MAX`], oldest first).
    Changes {
        since: u64,
    },
    /// The key whose secret hashes to `secret_hash`, if any.
    Lookup {
        secret_hash: String,
    },
}

/// A key as the data plane caches it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key: String,
    pub account: String,
    pub secret_hash: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
    /// The plane's version when this record last changed.
    pub version: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    AccountCreated {
        account: String,
    },
    KeyCreated {
        key: String,
    },
    KeyRevoked {
        key: String,
        revoked_ms: i64,
    },
    /// `records` changed after the asked version, oldest first; `version` is the version the
    /// caller holds once it has applied them (the plane's version when they are all).
    Changes {
        records: Vec<KeyRecord>,
        version: u64,
    },
    Found(Option<KeyRecord>),
    Refused {
        reason: String,
    },
}

/// The plane's replicated state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthMachine {
    now_ms: i64,
    version: u64,
    last_applied: u64,
    /// Account id to name.
    accounts: BTreeMap<String, String>,
    keys: BTreeMap<String, KeyRecord>,
    key_by_hash: BTreeMap<String, String>,
    /// Key ids by the version they last changed at.
    key_by_version: BTreeMap<u64, String>,
}

impl AuthMachine {
    pub fn new() -> AuthMachine {
        AuthMachine::default()
    }

    /// Applies one committed command at log `index`.
    ///
    /// # Panics
    /// If `index` does not grow: a replica applying out of order would diverge.
    pub fn apply(&mut self, index: u64, stamped: &Stamped<Command>) -> Response {
        assert!(index > self.last_applied, "auth: index {index} after {}", self.last_applied);
        self.last_applied = index;
        self.now_ms = self.now_ms.max(stamped.now_ms);
        let refuse = |reason: String| Response::Refused { reason };
        match &stamped.command {
            Command::CreateAccount { account, name } => {
                if name.is_empty() || name.len() > ACCOUNT_NAME_BYTES_MAX {
                    return refuse(format!(
                        "an account name has 1 to {ACCOUNT_NAME_BYTES_MAX} bytes"
                    ));
                }
                match self.accounts.get(account) {
                    Some(existing) if existing == name => {}
                    Some(_) => return refuse(format!("account id {account} is taken")),
                    None => {
                        self.accounts.insert(account.clone(), name.clone());
                    }
                }
                Response::AccountCreated { account: account.clone() }
            }
            Command::CreateKey { key, account, secret_hash } => {
                if !self.accounts.contains_key(account) {
                    return refuse(format!("no account {account}"));
                }
                if let Some(existing) = self.keys.get(key) {
                    if existing.account == *account && existing.secret_hash == *secret_hash {
                        return Response::KeyCreated { key: key.clone() };
                    }
                    return refuse(format!("key id {key} is taken"));
                }
                if self.key_by_hash.contains_key(secret_hash) {
                    return refuse("a key with this secret exists".into());
                }
                let record = KeyRecord {
                    key: key.clone(),
                    account: account.clone(),
                    secret_hash: secret_hash.clone(),
                    created_ms: self.now_ms,
                    revoked_ms: None,
                    version: 0,
                };
                self.key_by_hash.insert(secret_hash.clone(), key.clone());
                self.keys.insert(key.clone(), record);
                self.bump(key);
                Response::KeyCreated { key: key.clone() }
            }
            Command::RevokeKey { key } => {
                let now_ms = self.now_ms;
                let Some(record) = self.keys.get_mut(key) else {
                    return refuse(format!("no key {key}"));
                };
                if let Some(revoked_ms) = record.revoked_ms {
                    return Response::KeyRevoked { key: key.clone(), revoked_ms };
                }
                record.revoked_ms = Some(now_ms);
                self.bump(key);
                Response::KeyRevoked { key: key.clone(), revoked_ms: now_ms }
            }
            Command::Changes { since } => {
                let records: Vec<KeyRecord> = self
                    .key_by_version
                    .range(since + 1..)
                    .take(CHANGES_MAX)
                    .map(|(_, key)| self.keys[key].clone())
                    .collect();
                let version = if records.len() == CHANGES_MAX {
                    records.last().map_or(*since, |record| record.version)
                } else {
                    self.version
                };
                Response::Changes { records, version }
            }
            Command::Lookup { secret_hash } => {
                Response::Found(self.key_by_hash.get(secret_hash).map(|key| self.keys[key].clone()))
            }
        }
    }

    /// Stamps `key` with a new version.
    fn bump(&mut self, key: &str) {
        self.version += 1;
        let record = self.keys.get_mut(key).expect("auth: a bumped key exists");
        if record.version > 0 {
            self.key_by_version.remove(&record.version);
        }
        record.version = self.version;
        self.key_by_version.insert(self.version, key.to_string());
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Checks the invariants; the error names the one broken.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.key_by_version.len() != self.keys.len() {
            return Err("every key is indexed by its version".into());
        }
        for (version, key) in &self.key_by_version {
            let record = self.keys.get(key).ok_or("a versioned key exists")?;
            if record.version != *version || *version > self.version || *version == 0 {
                return Err(format!("key {key} has version {} (index {version})", record.version));
            }
            if self.key_by_hash.get(&record.secret_hash) != Some(key) {
                return Err(format!("key {key} is indexed by its hash"));
            }
            if !self.accounts.contains_key(&record.account) {
                return Err(format!("key {key} belongs to a known account"));
            }
        }
        Ok(())
    }
}

impl StateMachine for AuthMachine {
    type Command = Command;
    type Response = Response;

    fn apply(&mut self, index: u64, stamped: &Stamped<Command>) -> Response {
        AuthMachine::apply(self, index, stamped)
    }

    fn snapshot(&self) -> Vec<u8> {
        postcard::to_extend(self, vec![SNAPSHOT_FORMAT_VERSION])
            .expect("auth: encoding a machine into a Vec cannot fail")
    }

    fn restore(bytes: &[u8]) -> Result<AuthMachine, String> {
        let (&version, body) = bytes.split_first().ok_or("an empty snapshot")?;
        if version != SNAPSHOT_FORMAT_VERSION {
            return Err(format!("snapshot format {version}, expected {SNAPSHOT_FORMAT_VERSION}"));
        }
        let machine: AuthMachine = postcard::from_bytes(body).map_err(|e| e.to_string())?;
        machine.check_invariants()?;
        Ok(machine)
    }
}

/// The hash the plane stores for a key's secret.
pub fn hash_secret(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(now_ms: i64, command: Command) -> Stamped<Command> {
        Stamped { now_ms, command }
    }

    #[test]
    fn keys_are_created_revoked_and_pulled_by_version() {
        let mut machine = AuthMachine::new();
        let mut index = 0;
        let mut apply = |machine: &mut AuthMachine, now_ms, command| {
            index += 1;
            let response = machine.apply(index, &at(now_ms, command));
            machine.check_invariants().unwrap();
            response
        };
        let account = Command::CreateAccount { account: "a1".into(), name: "acme".into() };
        assert_eq!(
            apply(&mut machine, 1, account.clone()),
            Response::AccountCreated { account: "a1".into() }
        );
        assert_eq!(
            apply(&mut machine, 2, account),
            Response::AccountCreated { account: "a1".into() }
        );
        let create = Command::CreateKey {
            key: "k1".into(),
            account: "a1".into(),
            secret_hash: hash_secret("s1"),
        };
        assert_eq!(
            apply(&mut machine, 3, create.clone()),
            Response::KeyCreated { key: "k1".into() }
        );
        assert_eq!(apply(&mut machine, 4, create), Response::KeyCreated { key: "k1".into() });
        let stolen_id =
            Command::CreateKey { key: "k1".into(), account: "a1".into(), secret_hash: "x".into() };
        assert!(matches!(apply(&mut machine, 5, stolen_id), Response::Refused { .. }));
        let orphan = Command::CreateKey {
            key: "k2".into(),
            account: "nope".into(),
            secret_hash: "y".into(),
        };
        assert!(matches!(apply(&mut machine, 5, orphan), Response::Refused { .. }));
        let Response::Changes { records, version } =
            apply(&mut machine, 6, Command::Changes { since: 0 })
        else {
            panic!("changes answer Changes")
        };
        assert_eq!((records.len(), version), (1, 1));
        assert_eq!(records[0].created_ms, 3);
        let revoke = Command::RevokeKey { key: "k1".into() };
        let revoked = Response::KeyRevoked { key: "k1".into(), revoked_ms: 7 };
        assert_eq!(apply(&mut machine, 7, revoke.clone()), revoked);
        assert_eq!(apply(&mut machine, 9, revoke), revoked, "a revoke is idempotent");
        let Response::Changes { records, version } =
            apply(&mut machine, 10, Command::Changes { since: 1 })
        else {
            panic!("changes answer Changes")
        };
        assert_eq!((records.len(), version, records[0].revoked_ms), (1, 2, Some(7)));
        assert_eq!(
            apply(&mut machine, 11, Command::Changes { since: 2 }),
            Response::Changes { records: vec![], version: 2 }
        );
        let found = apply(&mut machine, 12, Command::Lookup { secret_hash: hash_secret("s1") });
        assert!(matches!(found, Response::Found(Some(record)) if record.key == "k1"));
        let snapshot = machine.snapshot();
        assert_eq!(AuthMachine::restore(&snapshot).unwrap(), machine);
        assert!(AuthMachine::restore(&snapshot[..snapshot.len() - 1]).is_err());
        assert!(AuthMachine::restore(&[]).is_err());
    }

    #[test]
    fn changes_are_paged() {
        let mut machine = AuthMachine::new();
        let mut index = 0;
        let mut apply = |machine: &mut AuthMachine, command| {
            index += 1;
            machine.apply(index, &at(0, command))
        };
        apply(&mut machine, Command::CreateAccount { account: "a".into(), name: "a".into() });
        for key in 0..CHANGES_MAX + 3 {
            let secret_hash = hash_secret(&key.to_string());
            apply(
                &mut machine,
                Command::CreateKey { key: format!("k{key}"), account: "a".into(), secret_hash },
            );
        }
        let Response::Changes { records, version } =
            apply(&mut machine, Command::Changes { since: 0 })
        else {
            panic!()
        };
        assert_eq!((records.len(), version), (CHANGES_MAX, CHANGES_MAX as u64));
        let Response::Changes { records, version } =
            apply(&mut machine, Command::Changes { since: version })
        else {
            panic!()
        };
        assert_eq!((records.len(), version), (3, CHANGES_MAX as u64 + 3));
    }
}
