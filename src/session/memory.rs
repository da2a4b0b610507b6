//! The default store: sessions in this process's memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;

use super::once::OnceSet;
use super::{now_secs, OnceKey, Session, SessionKey, SessionMatch, SessionStore};
use crate::error::StoreError;

/// How often, at most, a save sweeps out expired sessions.
const SWEEP_INTERVAL_SECS: u64 = 60;

/// Sessions in memory, for a single instance.
///
/// Reads take a shard read lock of a [`DashMap`] and clone an `Arc`: no global lock and no
/// copy of the session. Expired sessions are removed when they are next read, and all of
/// them at most once a minute on a save, so the map does not grow with abandoned sessions.
/// Sessions are lost when the process restarts; use a shared store for several instances.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: DashMap<SessionKey, Arc<Session>>,
    last_sweep: AtomicU64,
    /// Once-only keys (back-channel logout `jti`s) of this store, bounded.
    once: OnceSet,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of sessions held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.inner.sessions.len()
    }

    /// Whether the store holds no session.
    pub fn is_empty(&self) -> bool {
        self.inner.sessions.is_empty()
    }

    /// Removes every expired session now.
    pub fn sweep(&self) {
        let now = now_secs();
        self.inner.last_sweep.store(now, Ordering::Relaxed);
        self.inner.sessions.retain(|_, s| !s.is_expired(now));
    }

    fn sweep_if_due(&self, now: u64) {
        let last = self.inner.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= SWEEP_INTERVAL_SECS
            && self
                .inner
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.inner.sessions.retain(|_, s| !s.is_expired(now));
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<Session>>, StoreError> {
        let found = self.inner.sessions.get(key).map(|s| Arc::clone(&s));
        match found {
            Some(s) if s.is_expired(now_secs()) => {
                self.inner.sessions.remove(key);
                Ok(None)
            }
            other => Ok(other),
        }
    }

    /// Always answers: a shard read lock and an `Arc` clone. An expired session is
    /// returned as it is; the layer then calls [`load`](SessionStore::load), which
    /// removes it.
    fn load_now(&self, key: &SessionKey) -> Option<Option<Arc<Session>>> {
        Some(self.inner.sessions.get(key).map(|s| Arc::clone(&s)))
    }

    async fn save(&self, key: &SessionKey, session: Arc<Session>) -> Result<(), StoreError> {
        let now = now_secs();
        self.sweep_if_due(now);
        self.inner.sessions.insert(*key, session);
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.inner.sessions.remove(key);
        Ok(())
    }

    /// Replaces the entry under its shard's write lock: a delete cannot slip in between.
    async fn update(&self, key: &SessionKey, session: Arc<Session>) -> Result<bool, StoreError> {
        match self.inner.sessions.get_mut(key) {
            Some(mut entry) => {
                *entry = session;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// A scan of all sessions: back-channel logouts are rare, and an index would cost
    /// memory and work on every save.
    async fn delete_matching(&self, target: &SessionMatch<'_>) -> Result<usize, StoreError> {
        let mut deleted = 0;
        self.inner.sessions.retain(|_, s| {
            let hit = s.matches(target);
            deleted += usize::from(hit);
            !hit
        });
        Ok(deleted)
    }

    /// This store's own bounded set (not the process-wide default), so that stores are
    /// independent as their sessions are.
    async fn is_remembered(&self, key: &OnceKey) -> Result<bool, StoreError> {
        Ok(self.inner.once.contains(key))
    }

    /// Expired keys are swept on each insert; past 100,000 keys the one nearest its
    /// deadline is dropped, so a flood does not grow memory.
    async fn remember_once(
        &self,
        key: &OnceKey,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        Ok(self.inner.once.insert(key, ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::SessionId;

    fn session(expires_at: u64) -> Arc<Session> {
        Arc::new(Session::for_tests("alice", expires_at, expires_at))
    }

    #[tokio::test]
    async fn save_load_delete() {
        let store = MemoryStore::new();
        let key = SessionId::generate().key();
        assert!(store.load(&key).await.unwrap().is_none());
        assert!(store.load_now(&key).unwrap().is_none());
        store.save(&key, session(now_secs() + 60)).await.unwrap();
        assert_eq!(store.load(&key).await.unwrap().unwrap().subject(), "alice");
        assert_eq!(store.load_now(&key).unwrap().unwrap().subject(), "alice");
        store.delete(&key).await.unwrap();
        assert!(store.load(&key).await.unwrap().is_none());
        store.delete(&key).await.unwrap();
    }

    #[tokio::test]
    async fn update_replaces_only_a_session_that_is_there() {
        let store = MemoryStore::new();
        let key = SessionId::generate().key();
        assert!(!store.update(&key, session(now_secs() + 60)).await.unwrap());
        assert!(store.load(&key).await.unwrap().is_none(), "not created");
        store.save(&key, session(now_secs() + 60)).await.unwrap();
        let later = session(now_secs() + 120);
        assert!(store.update(&key, later).await.unwrap());
        assert_eq!(
            store.load(&key).await.unwrap().unwrap().expires_at(),
            now_secs() + 120
        );
    }

    #[tokio::test]
    async fn delete_matching_by_sid_and_subject() {
        let store = MemoryStore::new();
        let with = |subject: &str, sid: Option<&str>| {
            let mut s = (*session(now_secs() + 60)).clone();
            s.subject = subject.into();
            s.sid = sid.map(Into::into);
            Arc::new(s)
        };
        let a1 = SessionId::generate().key();
        let a2 = SessionId::generate().key();
        let b = SessionId::generate().key();
        store.save(&a1, with("alice", Some("s1"))).await.unwrap();
        store.save(&a2, with("alice", Some("s2"))).await.unwrap();
        store.save(&b, with("bob", Some("s1"))).await.unwrap();
        let by = |subject, sid| SessionMatch { subject, sid };
        assert_eq!(store.delete_matching(&by(None, None)).await.unwrap(), 0);
        assert_eq!(
            store
                .delete_matching(&by(Some("alice"), Some("s9")))
                .await
                .unwrap(),
            0
        );
        // sid and sub together: only alice's s1.
        assert_eq!(
            store
                .delete_matching(&by(Some("alice"), Some("s1")))
                .await
                .unwrap(),
            1
        );
        assert!(store.load(&b).await.unwrap().is_some());
        // sub alone: all of alice's.
        assert_eq!(
            store
                .delete_matching(&by(Some("alice"), None))
                .await
                .unwrap(),
            1
        );
        assert!(store.load(&a2).await.unwrap().is_none());
        // sid alone.
        assert_eq!(
            store.delete_matching(&by(None, Some("s1"))).await.unwrap(),
            1
        );
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn once_only_keys_are_new_once_and_per_store() {
        let store = MemoryStore::new();
        let other = MemoryStore::new();
        let k = OnceKey::from_bytes([1u8; 32]);
        let ttl = std::time::Duration::from_secs(60);
        assert!(!store.is_remembered(&k).await.unwrap());
        assert!(store.remember_once(&k, ttl).await.unwrap());
        assert!(store.is_remembered(&k).await.unwrap());
        assert!(!store.remember_once(&k, ttl).await.unwrap());
        // A clone shares it; another store does not.
        assert!(store.clone().is_remembered(&k).await.unwrap());
        assert!(!other.is_remembered(&k).await.unwrap());
        assert!(other.remember_once(&k, ttl).await.unwrap());
    }

    #[tokio::test]
    async fn expired_sessions_are_not_returned_and_are_swept() {
        let store = MemoryStore::new();
        let live = SessionId::generate().key();
        let dead = SessionId::generate().key();
        let dead2 = SessionId::generate().key();
        store.save(&dead, session(now_secs() - 1)).await.unwrap();
        store.save(&dead2, session(now_secs() - 1)).await.unwrap();
        store.save(&live, session(now_secs() + 60)).await.unwrap();
        assert!(store.load(&dead).await.unwrap().is_none());
        assert_eq!(store.len(), 2, "an expired session is removed when read");
        store.sweep();
        assert_eq!(
            store.len(),
            1,
            "the sweep removes the unread expired session"
        );
        assert!(store.load(&live).await.unwrap().is_some());
    }
}
