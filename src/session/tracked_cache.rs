//! The Redis store's local copy of the sessions it has read, kept true by Redis itself:
//! server-assisted client-side caching (RESP3 `CLIENT TRACKING`, default mode).
//!
//! Without it every request with a session cookie costs a round trip to Redis and a JSON
//! decode; with it a request whose session was read before is answered from memory, and
//! Redis tells this instance when any client changes or deletes that key (a sign-out,
//! a refresh or a back-channel logout on another instance, an expiry). Written here rather
//! than taken from redis-rs's `cache-aio`, which its authors call experimental, caches
//! replies per command (each hit would still decode the JSON) and has no notion of the
//! freshness bound below.
//!
//! # Why a cached session is never one that was signed out
//!
//! - **One connection, one generation.** Tracking belongs to a connection. Every slot is
//!   stamped with the generation of the connection it was read on, a disconnection (seen
//!   from redis-rs's push, or from an error of our own command) starts a new generation, and
//!   only slots of the current one, read while tracking was on, are served. A new
//!   connection gets `CLIENT TRACKING ON` in the same pipeline as its first `GET`.
//! - **The read/invalidate race** (Redis's documentation on client-side caching): a slot is
//!   marked pending before its `GET` is sent, an invalidation removes a pending slot too,
//!   and the answer is kept only if its own pending mark is still there.
//! - **Our own writes** remove the slot before they are sent and after they are answered,
//!   so that this instance reads its own writes at once (a refresh must never see the
//!   refresh token it just rotated away).
//! - **A bound on silence.** A connection can look open while Redis is gone (a host lost
//!   without a reset) or hung: slots are served only while Redis has answered within the
//!   last [`FRESH_FOR`]; a heartbeat `PING` keeps that true while all reads are hits. After
//!   that every request goes to Redis and fails closed as without the cache.
//!
//! What remains is the delay of an invalidation on the wire: a sign-out on another
//! instance reaches this one's cache as fast as Redis's message does, well under a
//! millisecond on a local network, which is before the browser's next request can.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use redis::{PushInfo, PushKind, Value};

use super::{now_secs, Session, SessionKey};

/// How long after Redis's last answer cached sessions are still served.
pub(super) const FRESH_FOR: Duration = Duration::from_millis(1000);
/// How often the heartbeat pings Redis; a few pings fit in [`FRESH_FOR`].
pub(super) const HEARTBEAT_EVERY: Duration = Duration::from_millis(250);

/// The sessions one [`RedisStore`](super::RedisStore) (and its clones) read.
pub(super) struct TrackedCache {
    slots: DashMap<SessionKey, Slot>,
    /// The connection's generation: bumped at every disconnection.
    generation: AtomicU64,
    /// `generation + 1` of the connection that has `CLIENT TRACKING ON`; 0 for none.
    tracking: AtomicU64,
    /// Milliseconds from `origin` to Redis's last answer.
    last_answer: AtomicU64,
    origin: Instant,
    tickets: AtomicU64,
    capacity: usize,
    /// `<prefix>session:`, to find session keys in invalidation messages.
    session_prefix: Box<[u8]>,
}

enum Slot {
    /// A `GET` of this key is on its way; an invalidation removes this mark.
    Pending(u64),
    Ready {
        generation: u64,
        session: Arc<Session>,
    },
}

/// A read on its way: [`Read::fill`] keeps its answer. Dropped unfilled (the `GET`
/// failed, or the request was cancelled), it takes its pending mark away, so that marks of
/// reads that never finished do not fill the cache.
pub(super) struct Read<'a> {
    cache: &'a TrackedCache,
    key: SessionKey,
    generation: u64,
    /// `None` when the cache is full: the answer is not kept.
    ticket: Option<u64>,
    /// Whether this read must turn tracking on first (a new connection).
    pub(super) needs_tracking: bool,
}

impl TrackedCache {
    pub(super) fn new(session_prefix: String, capacity: usize) -> Self {
        Self {
            slots: DashMap::new(),
            generation: AtomicU64::new(0),
            tracking: AtomicU64::new(0),
            last_answer: AtomicU64::new(0),
            origin: Instant::now(),
            tickets: AtomicU64::new(0),
            capacity,
            session_prefix: session_prefix.into_bytes().into_boxed_slice(),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether slots may be served now: tracking is on for this connection and Redis
    /// answered recently.
    fn serving(&self, generation: u64) -> bool {
        self.tracking.load(Ordering::Acquire) == generation + 1
            && self
                .elapsed_ms()
                .saturating_sub(self.last_answer.load(Ordering::Relaxed))
                <= FRESH_FOR.as_millis() as u64
    }

    /// The cached session under `key`, when it may be served.
    pub(super) fn get(&self, key: &SessionKey) -> Option<Arc<Session>> {
        let generation = self.generation.load(Ordering::Acquire);
        if !self.serving(generation) {
            return None;
        }
        match self.slots.get(key).as_deref() {
            Some(Slot::Ready {
                generation: g,
                session,
            }) if *g == generation && !session.is_expired(now_secs()) => Some(Arc::clone(session)),
            _ => None,
        }
    }

    /// Marks `key` as being read; call before sending the `GET`.
    pub(super) fn begin(&self, key: &SessionKey) -> Read<'_> {
        let generation = self.generation.load(Ordering::Acquire);
        let needs_tracking = self.tracking.load(Ordering::Acquire) != generation + 1;
        let ticket = (self.slots.len() < self.capacity).then(|| {
            let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
            self.slots.insert(*key, Slot::Pending(ticket));
            ticket
        });
        Read {
            cache: self,
            key: *key,
            generation,
            ticket,
            needs_tracking,
        }
    }

    /// Forgets `key`, before and after this instance writes or deletes it.
    pub(super) fn forget(&self, key: &SessionKey) {
        self.slots.remove(key);
    }

    /// Redis answered a command just now.
    pub(super) fn answered(&self) {
        self.last_answer.store(self.elapsed_ms(), Ordering::Relaxed);
    }

    /// The connection broke (or may have): a new generation, with tracking off and every
    /// slot forgotten.
    pub(super) fn disconnected(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.tracking.store(0, Ordering::Release);
        self.slots.clear();
    }

    /// A push message from redis-rs: an invalidation from Redis, or a disconnection.
    pub(super) fn on_push(&self, push: &PushInfo) {
        match push.kind {
            PushKind::Disconnection => self.disconnected(),
            PushKind::Invalidate => match push.data.first() {
                Some(Value::Array(keys)) => {
                    for key in keys {
                        if let Some(key) = self.session_key(key) {
                            self.slots.remove(&key);
                        }
                    }
                }
                // A null after FLUSHALL or FLUSHDB (or an overflow of the server's
                // tracking table): everything.
                _ => self.slots.clear(),
            },
            _ => {}
        }
    }

    /// The [`SessionKey`] of a Redis key `<prefix>session:<hex>`; `None` for other keys.
    fn session_key(&self, value: &Value) -> Option<SessionKey> {
        let bytes: &[u8] = match value {
            Value::BulkString(b) => b,
            Value::SimpleString(s) => s.as_bytes(),
            _ => return None,
        };
        key_from_hex(bytes.strip_prefix(&*self.session_prefix)?)
    }

    /// Whether no session is cached (nor being read).
    pub(super) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.len()
    }
}

impl Read<'_> {
    /// Keeps the answer (`None`: no such session), unless the key was invalidated or
    /// written, or the connection changed, since [`TrackedCache::begin`].
    pub(super) fn fill(mut self, session: Option<&Arc<Session>>) {
        let cache = self.cache;
        cache.answered();
        if self.needs_tracking && cache.generation.load(Ordering::Acquire) == self.generation {
            // Tracking is on for the connection of this generation. Should that connection
            // break meanwhile, its new generation no longer matches this value.
            cache.tracking.store(self.generation + 1, Ordering::Release);
        }
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let current = cache.generation.load(Ordering::Acquire) == self.generation;
        if let (true, Some(session)) = (current, session) {
            if let Some(mut slot) = cache.slots.get_mut(&self.key) {
                if matches!(*slot, Slot::Pending(t) if t == ticket) {
                    *slot = Slot::Ready {
                        generation: self.generation,
                        session: Arc::clone(session),
                    };
                    return;
                }
            }
        }
        cache.slots.remove_if(
            &self.key,
            |_, s| matches!(s, Slot::Pending(t) if *t == ticket),
        );
    }
}

impl Drop for Read<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.cache.slots.remove_if(
                &self.key,
                |_, s| matches!(s, Slot::Pending(t) if *t == ticket),
            );
        }
    }
}

/// The [`SessionKey`] written as 64 hex digits, as in the Redis keys.
pub(super) fn key_from_hex(hex: &[u8]) -> Option<SessionKey> {
    if hex.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (byte, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
        let digit = |c: u8| char::from(c).to_digit(16);
        *byte = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(SessionKey::from_bytes(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Arc<Session> {
        let now = now_secs();
        Arc::new(Session::for_tests("alice", now + 3600, now + 7200))
    }

    fn key(n: u8) -> SessionKey {
        SessionKey::from_bytes([n; 32])
    }

    fn invalidate(cache: &TrackedCache, k: &SessionKey) {
        let name = format!("p:session:{}", k.to_hex()).into_bytes();
        cache.on_push(&PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Array(vec![Value::BulkString(name)])],
        });
    }

    fn cached(cache: &TrackedCache, k: &SessionKey) -> Arc<Session> {
        let read = cache.begin(k);
        let s = session();
        read.fill(Some(&s));
        s
    }

    #[test]
    fn reads_the_keys_it_writes() {
        let k = SessionKey::from_bytes([0xa7; 32]);
        assert_eq!(key_from_hex(k.to_hex().as_bytes()), Some(k));
        assert_eq!(key_from_hex(b"a7"), None);
        assert_eq!(key_from_hex(&[b'g'; 64]), None);
    }

    #[test]
    fn serves_what_it_read_with_tracking_on() {
        let cache = TrackedCache::new("p:session:".into(), 10);
        let k = key(1);
        assert!(cache.get(&k).is_none());
        let read = cache.begin(&k);
        assert!(read.needs_tracking, "a new connection turns tracking on");
        let s = session();
        read.fill(Some(&s));
        assert!(Arc::ptr_eq(&cache.get(&k).unwrap(), &s));
        assert!(!cache.begin(&key(2)).needs_tracking);
    }

    #[test]
    fn an_invalidation_removes_a_session_and_cancels_a_read_in_flight() {
        let cache = TrackedCache::new("p:session:".into(), 10);
        let k = key(1);
        cached(&cache, &k);
        invalidate(&cache, &k);
        assert!(cache.get(&k).is_none());

        // The race Redis's documentation warns of: the key changes while its GET is out.
        let read = cache.begin(&k);
        invalidate(&cache, &k);
        read.fill(Some(&session()));
        assert!(cache.get(&k).is_none(), "an answer older than the change");
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn own_writes_cancel_reads_in_flight() {
        let cache = TrackedCache::new("p:session:".into(), 10);
        let k = key(1);
        cached(&cache, &k);
        let read = cache.begin(&k);
        cache.forget(&k);
        read.fill(Some(&session()));
        assert!(cache.get(&k).is_none());
    }

    #[test]
    fn a_disconnection_forgets_everything_and_needs_tracking_again() {
        let cache = TrackedCache::new("p:session:".into(), 10);
        let k = key(1);
        cached(&cache, &k);
        let in_flight = cache.begin(&key(2));
        cache.on_push(&PushInfo {
            kind: PushKind::Disconnection,
            data: vec![],
        });
        assert!(cache.get(&k).is_none());
        in_flight.fill(Some(&session()));
        assert!(cache.get(&key(2)).is_none(), "read on the old connection");
        let read = cache.begin(&k);
        assert!(read.needs_tracking);
        read.fill(Some(&session()));
        assert!(cache.get(&k).is_some());
    }

    #[test]
    fn nothing_is_served_after_a_silence() {
        let cache = TrackedCache::new("p:session:".into(), 10);
        let k = key(1);
        cached(&cache, &k);
        // As if Redis last answered longer ago than FRESH_FOR.
        cache.last_answer.store(0, Ordering::Relaxed);
        let cache = TrackedCache {
            origin: Instant::now() - FRESH_FOR - Duration::from_millis(10),
            ..cache
        };
        assert!(cache.get(&k).is_none());
        cache.answered();
        assert!(cache.get(&k).is_some());
    }

    #[test]
    fn a_flush_forgets_everything_and_other_keys_are_ignored() {
        let cache = TrackedCache::new("p:session:".into(), 10);
        let k = key(1);
        cached(&cache, &k);
        cache.on_push(&PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Array(vec![
                Value::BulkString(b"p:subject:alice".to_vec()),
                Value::BulkString(b"other:session:00".to_vec()),
                Value::BulkString(b"p:session:zz".to_vec()),
            ])],
        });
        assert!(cache.get(&k).is_some());
        cache.on_push(&PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Nil],
        });
        assert!(cache.get(&k).is_none());
    }

    #[test]
    fn a_read_that_never_finishes_leaves_no_mark() {
        let cache = TrackedCache::new("p:session:".into(), 1);
        drop(cache.begin(&key(1)));
        assert_eq!(cache.len(), 0);
        // So the one place is free for the next read.
        cached(&cache, &key(2));
        assert!(cache.get(&key(2)).is_some());
    }

    #[test]
    fn a_full_cache_reads_through() {
        let cache = TrackedCache::new("p:session:".into(), 1);
        cached(&cache, &key(1));
        cached(&cache, &key(2));
        assert!(cache.get(&key(1)).is_some());
        assert!(cache.get(&key(2)).is_none());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn expired_sessions_are_not_served() {
        let cache = TrackedCache::new("p:session:".into(), 10);
        let k = key(1);
        let read = cache.begin(&k);
        let now = now_secs();
        let s = Arc::new(Session::for_tests("alice", now - 1, now + 60));
        read.fill(Some(&s));
        assert!(cache.get(&k).is_none());
    }
}
