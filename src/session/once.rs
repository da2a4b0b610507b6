//! Once-only keys: what a store remembers so that something (a back-channel logout
//! token's `jti`) is accepted once, and the bounded in-process set behind
//! [`MemoryStore`](super::MemoryStore) and the trait's default.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::SessionKey;

/// A key that a store remembers for a while, to accept what it names only once
/// ([`SessionStore::remember_once`](super::SessionStore::remember_once)).
///
/// It is a SHA-256, so the store never sees what it names: for a back-channel logout
/// token, the hash of its issuer and its `jti` (the same `jti` from two issuers gives two
/// keys).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OnceKey([u8; 32]);

impl OnceKey {
    /// A key from its 32 bytes, e.g. for a store's tests.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        OnceKey(bytes)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex of the key, for stores keyed by strings.
    pub fn to_hex(&self) -> String {
        SessionKey::from_bytes(self.0).to_hex()
    }

    /// The key of a back-channel logout token: its `jti` scoped by its issuer. Lengths
    /// go in first, so no pair of strings can spell another pair.
    pub(crate) fn logout_token(issuer: &str, jti: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"tower-oauth2-login backchannel-logout jti\0");
        h.update((issuer.len() as u64).to_be_bytes());
        h.update(issuer.as_bytes());
        h.update((jti.len() as u64).to_be_bytes());
        h.update(jti.as_bytes());
        OnceKey(h.finalize().into())
    }
}

impl fmt::Debug for OnceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnceKey(..)")
    }
}

/// How many keys an in-process set holds at most. An entry is about 150 bytes, so the set
/// stays under about 15 MB however many keys arrive.
pub(crate) const DEFAULT_CAPACITY: usize = 100_000;

/// Once-only keys in this process's memory, each until its deadline, at most `capacity`.
///
/// Past the capacity the key nearest its deadline is dropped. What reaches the set for
/// back-channel logout has passed the provider's signature: only the provider (or whoever
/// holds its signing key, who can mint any logout anyway) can fill it, and a stranger
/// replaying a captured token adds nothing, since that key is already there. Dropping the
/// oldest rather than refusing new ones keeps logouts working under the provider's own
/// load; the cost is that a token among the oldest could be replayed once after more than
/// `capacity` logouts inside its window.
pub(crate) struct OnceSet {
    capacity: usize,
    inner: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    deadlines: HashMap<OnceKey, Instant>,
    by_deadline: BTreeSet<(Instant, OnceKey)>,
}

impl Entries {
    fn remove_expired(&mut self, now: Instant) {
        while let Some(&(deadline, key)) = self.by_deadline.first() {
            if deadline > now {
                break;
            }
            self.by_deadline.pop_first();
            self.deadlines.remove(&key);
        }
    }
}

impl OnceSet {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::default(),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic elsewhere while holding it leaves two consistent-enough maps: an entry
        // in one and not the other is only dropped late or early by the sweep.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `key` is held and its deadline has not passed.
    pub(crate) fn contains(&self, key: &OnceKey) -> bool {
        self.contains_at(key, Instant::now())
    }

    /// Holds `key` for `ttl`; whether it was new. A key already held keeps the later of
    /// its two deadlines.
    pub(crate) fn insert(&self, key: &OnceKey, ttl: Duration) -> bool {
        self.insert_at(key, ttl, Instant::now())
    }

    fn contains_at(&self, key: &OnceKey, now: Instant) -> bool {
        self.entries().deadlines.get(key).is_some_and(|d| *d > now)
    }

    fn insert_at(&self, key: &OnceKey, ttl: Duration, now: Instant) -> bool {
        let deadline = now + ttl;
        let mut entries = self.entries();
        entries.remove_expired(now);
        if let Some(&old) = entries.deadlines.get(key) {
            if deadline > old {
                entries.by_deadline.remove(&(old, *key));
                entries.by_deadline.insert((deadline, *key));
                entries.deadlines.insert(*key, deadline);
            }
            return false;
        }
        if entries.deadlines.len() >= self.capacity {
            if let Some((_, oldest)) = entries.by_deadline.pop_first() {
                entries.deadlines.remove(&oldest);
                tracing::warn!(
                    capacity = self.capacity,
                    "once-only keys at capacity: the oldest is forgotten early"
                );
            }
        }
        entries.deadlines.insert(*key, deadline);
        entries.by_deadline.insert((deadline, *key));
        true
    }

    /// How many keys are held, expired ones not yet swept included.
    pub(crate) fn len(&self) -> usize {
        self.entries().deadlines.len()
    }
}

impl Default for OnceSet {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl fmt::Debug for OnceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnceSet")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// The set behind the trait's default, one per process: shared by every store that does
/// not implement once-only keys itself. Sharing is harmless, since keys are hashes scoped
/// by what they name (issuer and `jti`).
pub(crate) fn process_local() -> &'static OnceSet {
    static SET: OnceLock<OnceSet> = OnceLock::new();
    SET.get_or_init(OnceSet::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> OnceKey {
        OnceKey::from_bytes([n; 32])
    }

    #[test]
    fn a_key_is_new_once_until_its_deadline() {
        let set = OnceSet::new(10);
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        assert!(!set.contains_at(&key(1), t0));
        assert!(set.insert_at(&key(1), ttl, t0));
        assert!(set.contains_at(&key(1), t0));
        assert!(!set.insert_at(&key(1), ttl, t0 + Duration::from_secs(59)));
        assert!(!set.contains_at(&key(2), t0), "another key is not held");
        // The second insert moved the deadline to t0 + 119 s.
        assert!(set.contains_at(&key(1), t0 + Duration::from_secs(118)));
        assert!(!set.contains_at(&key(1), t0 + Duration::from_secs(119)));
        assert!(set.insert_at(&key(1), ttl, t0 + Duration::from_secs(119)));
    }

    #[test]
    fn expired_keys_are_swept_so_the_set_does_not_grow() {
        let set = OnceSet::new(1_000);
        let t0 = Instant::now();
        for n in 0..100u8 {
            assert!(set.insert_at(&key(n), Duration::from_secs(1), t0));
        }
        assert_eq!(set.len(), 100);
        assert!(set.insert_at(
            &key(200),
            Duration::from_secs(1),
            t0 + Duration::from_secs(2)
        ));
        assert_eq!(set.len(), 1, "the expired keys went with the next insert");
    }

    #[test]
    fn a_flood_is_capped_and_drops_the_key_nearest_its_deadline() {
        let set = OnceSet::new(3);
        let t0 = Instant::now();
        assert!(set.insert_at(&key(1), Duration::from_secs(30), t0));
        assert!(set.insert_at(&key(2), Duration::from_secs(10), t0));
        assert!(set.insert_at(&key(3), Duration::from_secs(20), t0));
        for n in 10..200u8 {
            assert!(set.insert_at(&key(n), Duration::from_secs(600), t0));
            assert!(set.len() <= 3);
        }
        assert!(
            !set.contains_at(&key(2), t0),
            "nearest its deadline: dropped first"
        );
        assert!(set.contains_at(&key(199), t0), "the newest is held");
    }

    #[test]
    fn logout_token_keys_are_scoped_by_issuer_and_unambiguous() {
        let a = OnceKey::logout_token("https://a.example", "jti-1");
        assert_eq!(a, OnceKey::logout_token("https://a.example", "jti-1"));
        assert_ne!(a, OnceKey::logout_token("https://b.example", "jti-1"));
        assert_ne!(a, OnceKey::logout_token("https://a.example", "jti-2"));
        // Concatenation alone would make these one string.
        assert_ne!(
            OnceKey::logout_token("https://a.example/x", "y"),
            OnceKey::logout_token("https://a.example/", "xy"),
        );
        assert!(!a.to_hex().contains("jti"));
        assert_eq!(a.to_hex().len(), 64);
        assert_eq!(format!("{a:?}"), "OnceKey(..)");
        // Per issuer in a set too.
        let set = OnceSet::new(10);
        assert!(set.insert(&a, Duration::from_secs(60)));
        assert!(set.insert(
            &OnceKey::logout_token("https://b.example", "jti-1"),
            Duration::from_secs(60)
        ));
        assert!(!set.insert(&a, Duration::from_secs(60)));
    }
}
