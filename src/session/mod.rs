//! Server-side sessions: what a session holds, how it is keyed, and the store trait.
//!
//! The browser holds only an opaque, random 256-bit session id. The store never sees that
//! id: it is keyed by the SHA-256 of it ([`SessionKey`]), so a dump of the store holds no
//! value that could be replayed as a cookie.
//!
//! Two stores come with the crate: [`MemoryStore`] (the default: one instance, fastest,
//! lost on restart) and, with the feature `redis`, `RedisStore` (Redis or Valkey:
//! several instances, survives restarts of the app).

mod claims;
mod memory;
mod once;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
mod tracked_cache;

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub(crate) use self::claims::Claims;
pub use self::memory::MemoryStore;
pub use self::once::OnceKey;
#[cfg(feature = "redis")]
pub use self::redis::{RedisStore, RedisStoreBuilder};
use crate::error::StoreError;

/// Seconds since the Unix epoch, the time unit of every stored deadline.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The key a session is stored under: the SHA-256 of its session id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    /// A key from its 32 bytes, e.g. read back from an external store, or for a store's
    /// tests. The layer makes its keys from session ids; a key alone is no credential.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SessionKey(bytes)
    }

    /// The raw 32 bytes, e.g. to build a key in an external store.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex of the key, for stores keyed by strings.
    pub fn to_hex(&self) -> String {
        // By hand: `format!` per byte was 32 allocations, on every Redis operation.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(DIGITS[usize::from(b >> 4)]));
            s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
        }
        s
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not secret (it is a hash), but there is no reason to spread it through logs.
        f.write_str("SessionKey(..)")
    }
}

/// The session id: the cookie value. Crate-private so it cannot be logged by accident.
pub(crate) struct SessionId(String);

impl SessionId {
    /// A fresh id: 256 bits from the operating system's CSPRNG (through `rand`).
    pub(crate) fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        SessionId(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Reads an id from a cookie value; anything but 43 base64url characters is refused
    /// before it costs a hash or a store lookup.
    pub(crate) fn parse(value: &str) -> Option<Self> {
        Self::well_formed(value).then(|| SessionId(value.to_owned()))
    }

    /// The store key of a cookie value, if it is a well-formed id: [`parse`](Self::parse)
    /// and [`key`](Self::key) without copying the value, for the per-request lookup.
    pub(crate) fn key_of(value: &str) -> Option<SessionKey> {
        Self::well_formed(value).then(|| SessionKey::for_cookie_value(value))
    }

    fn well_formed(value: &str) -> bool {
        value.len() == 43
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn key(&self) -> SessionKey {
        SessionKey::for_cookie_value(&self.0)
    }
}

impl SessionKey {
    /// The store key of a cookie value. Hashing is the one piece of crypto on the
    /// authenticated path: about a hundred nanoseconds for 43 bytes.
    pub(crate) fn for_cookie_value(value: &str) -> SessionKey {
        SessionKey(Sha256::digest(value.as_bytes()).into())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(..)")
    }
}

/// Everything the server keeps about one signed-in browser.
///
/// Tokens live here and nowhere else: never in a cookie, a URL, a page or a log (the
/// `Debug` output leaves them out).
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    pub(crate) subject: String,
    /// Compact JSON text, parsed on demand (see [`Claims`] for why).
    pub(crate) claims: Claims,
    pub(crate) scopes: Vec<String>,
    pub(crate) access_token: String,
    pub(crate) access_expires_at: Option<u64>,
    /// When the current access token was obtained, to know its lifetime.
    #[serde(default)]
    pub(crate) access_obtained_at: u64,
    pub(crate) refresh_token: Option<String>,
    pub(crate) id_token: Option<String>,
    /// The provider's session id (`sid` claim, OpenID Connect), for back-channel logout.
    #[serde(default)]
    pub(crate) sid: Option<String>,
    pub(crate) created_at: u64,
    /// When the session ends unless it is used: min(idle deadline, absolute deadline).
    pub(crate) expires_at: u64,
    /// When the session ends however much it is used.
    pub(crate) absolute_expires_at: u64,
}

impl Session {
    /// A session of `subject` with no claims and a dummy access token, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(subject: &str, expires_at: u64, absolute_expires_at: u64) -> Self {
        Session {
            subject: subject.into(),
            claims: Default::default(),
            scopes: vec![],
            access_token: "at".into(),
            access_expires_at: None,
            access_obtained_at: now_secs(),
            refresh_token: None,
            id_token: None,
            sid: None,
            created_at: now_secs(),
            expires_at,
            absolute_expires_at,
        }
    }

    /// The stable identifier of the user at the provider.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The user's claims as the provider gave them (the ID token's and userinfo's).
    ///
    /// The session keeps its claims as compact JSON text: the map is built on the first
    /// call and kept with the session from then on. To read a claim or two on every
    /// request, [`AuthUser::claim`](crate::AuthUser::claim) and
    /// [`AuthUser::claims_as`](crate::AuthUser::claims_as) read the text without it.
    pub fn claims(&self) -> &serde_json::Map<String, serde_json::Value> {
        self.claims.map()
    }

    /// The scopes granted by the provider.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// When the session ends unless it is used again, in seconds since the Unix epoch.
    /// Stores use it as the record's time to live.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// When the session ends at the latest, in seconds since the Unix epoch.
    pub fn absolute_expires_at(&self) -> u64 {
        self.absolute_expires_at
    }

    /// When the user signed in, in seconds since the Unix epoch.
    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    /// The provider's session id (the ID token's `sid` claim), when it sent one.
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// Whether a back-channel logout for `target` names this session.
    pub fn matches(&self, target: &SessionMatch<'_>) -> bool {
        match (target.subject, target.sid) {
            (None, None) => false,
            (subject, Some(sid)) => {
                self.sid.as_deref() == Some(sid) && subject.is_none_or(|s| s == self.subject)
            }
            (Some(subject), None) => self.subject == subject,
        }
    }

    /// When the access token expires, if the provider said.
    pub fn access_token_expires_at(&self) -> Option<u64> {
        self.access_expires_at
    }

    pub(crate) fn is_expired(&self, now: u64) -> bool {
        now >= self.expires_at || now >= self.absolute_expires_at
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("subject", &self.subject)
            .field("scopes", &self.scopes)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("absolute_expires_at", &self.absolute_expires_at)
            .finish_non_exhaustive()
    }
}

/// Where sessions live. Implement it to keep sessions in your own database.
///
/// The layer calls [`load`](SessionStore::load) once per request that carries a session
/// cookie, so it should be fast; [`save`](SessionStore::save) runs at login and at most
/// about once a minute per session to slide the idle deadline.
///
/// A store must not return a session whose [`Session::expires_at`] has passed if it can
/// help it (the layer checks again anyway) and should drop such records by itself.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// The session stored under `key`, if any.
    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<Session>>, StoreError>;

    /// The session stored under `key`, if the store can tell without waiting: `Some` with
    /// the answer, or `None` to say "ask [`load`](SessionStore::load)".
    ///
    /// The layer asks this first on every request that carries a session cookie, so a
    /// store that holds its sessions in memory (like [`MemoryStore`]) serves the request
    /// without the allocation of an `async` call. It may return a session that has expired
    /// (the layer then calls `load`, which may remove it). The default is `None`: stores
    /// that do I/O need not implement it.
    fn load_now(&self, key: &SessionKey) -> Option<Option<Arc<Session>>> {
        let _ = key;
        None
    }

    /// Creates or replaces the session under `key`. It may be dropped after
    /// [`Session::expires_at`].
    async fn save(&self, key: &SessionKey, session: Arc<Session>) -> Result<(), StoreError>;

    /// Deletes the session under `key`; deleting a missing session is not an error.
    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError>;

    /// Replaces the session under `key` only if it is still there, and says whether it
    /// was. The layer updates sessions with it (sliding the idle deadline, storing
    /// refreshed tokens), so a logout that lands between its load and its write (on
    /// another instance, or a back-channel logout) is not undone.
    ///
    /// The default loads, then saves: correct for a single writer, but a store shared by
    /// several instances should do it in one step (Redis: `SET .. XX`).
    async fn update(&self, key: &SessionKey, session: Arc<Session>) -> Result<bool, StoreError> {
        if self.load(key).await?.is_none() {
            return Ok(false);
        }
        self.save(key, session).await?;
        Ok(true)
    }

    /// Deletes every session that [`Session::matches`] `target` (an OpenID Connect
    /// back-channel logout) and returns how many were deleted.
    async fn delete_matching(&self, target: &SessionMatch<'_>) -> Result<usize, StoreError>;

    /// Takes the refresh lock of the session under `key` for at most `ttl`, so that
    /// instances sharing this store refresh a session once between them. `None` when
    /// another holder has it: the caller waits and re-loads the session, which the holder
    /// saves with the new tokens. A crashed holder blocks the session for `ttl` at most.
    ///
    /// The default always grants it: within one process the layer already runs one
    /// refresh per session at a time, which is enough for a store that only one instance
    /// uses. Stores shared by several instances override it (and [`unlock_refresh`]).
    ///
    /// [`unlock_refresh`]: SessionStore::unlock_refresh
    async fn lock_refresh(
        &self,
        key: &SessionKey,
        ttl: std::time::Duration,
    ) -> Result<Option<RefreshLock>, StoreError> {
        let _ = (key, ttl);
        Ok(Some(RefreshLock::new(String::new())))
    }

    /// Releases a lock taken with [`lock_refresh`](SessionStore::lock_refresh), if it is
    /// still this holder's (it may have expired and passed to another).
    async fn unlock_refresh(&self, key: &SessionKey, lock: RefreshLock) -> Result<(), StoreError> {
        let _ = (key, lock);
        Ok(())
    }

    /// Whether `key` was remembered by [`remember_once`](SessionStore::remember_once) and
    /// its time has not run out. The layer asks before it acts on a back-channel logout
    /// token, to refuse one it has acted on already (a replay).
    ///
    /// The default, like `remember_once`'s, asks a bounded set in this process's memory,
    /// shared by every store that keeps the defaults: replays are refused within one
    /// instance. A store shared by several instances should implement both methods (or
    /// neither), so that a token used on one instance is refused on all.
    async fn is_remembered(&self, key: &OnceKey) -> Result<bool, StoreError> {
        Ok(once::process_local().contains(key))
    }

    /// Remembers `key` for at least `ttl`, and says whether it was new. The layer calls it
    /// once a back-channel logout token has taken effect, with the time the token would
    /// still be accepted for; a store may forget the key after that (Redis: `SET .. NX
    /// EX`). A key already remembered keeps at least its deadline.
    ///
    /// See [`is_remembered`](SessionStore::is_remembered) for the default.
    async fn remember_once(
        &self,
        key: &OnceKey,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        Ok(once::process_local().insert(key, ttl))
    }
}

/// A held refresh lock: the random token that proves who holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshLock(String);

impl RefreshLock {
    /// A lock held under `token` (stores create it; the layer only hands it back).
    pub fn new(token: String) -> Self {
        RefreshLock(token)
    }

    /// The holder's token.
    pub fn token(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RefreshLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshLock(..)")
    }
}

/// Which sessions a back-channel logout ends: those with the provider session `sid` (of
/// `subject` too, when both are given), or else every session of `subject`. With neither,
/// none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionMatch<'a> {
    /// The user (`sub` claim).
    pub subject: Option<&'a str>,
    /// The provider's session id (`sid` claim).
    pub sid: Option<&'a str>,
}

#[async_trait]
impl<T: SessionStore + ?Sized> SessionStore for Arc<T> {
    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<Session>>, StoreError> {
        (**self).load(key).await
    }
    fn load_now(&self, key: &SessionKey) -> Option<Option<Arc<Session>>> {
        (**self).load_now(key)
    }
    async fn save(&self, key: &SessionKey, session: Arc<Session>) -> Result<(), StoreError> {
        (**self).save(key, session).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        (**self).delete(key).await
    }
    async fn update(&self, key: &SessionKey, session: Arc<Session>) -> Result<bool, StoreError> {
        (**self).update(key, session).await
    }
    async fn delete_matching(&self, target: &SessionMatch<'_>) -> Result<usize, StoreError> {
        (**self).delete_matching(target).await
    }
    async fn lock_refresh(
        &self,
        key: &SessionKey,
        ttl: std::time::Duration,
    ) -> Result<Option<RefreshLock>, StoreError> {
        (**self).lock_refresh(key, ttl).await
    }
    async fn unlock_refresh(&self, key: &SessionKey, lock: RefreshLock) -> Result<(), StoreError> {
        (**self).unlock_refresh(key, lock).await
    }
    async fn is_remembered(&self, key: &OnceKey) -> Result<bool, StoreError> {
        (**self).is_remembered(key).await
    }
    async fn remember_once(
        &self,
        key: &OnceKey,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        (**self).remember_once(key, ttl).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_and_well_formed() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a.as_str(), b.as_str());
        assert_eq!(a.as_str().len(), 43);
        assert!(SessionId::parse(a.as_str()).is_some());
        assert_eq!(a.key(), SessionId::parse(a.as_str()).unwrap().key());
        assert_eq!(SessionId::key_of(a.as_str()), Some(a.key()));
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "short",
            &"a".repeat(44),
            &format!("{}=", "a".repeat(42)),
            &format!("{};", "a".repeat(42)),
            &"é".repeat(22),
        ] {
            assert!(SessionId::parse(bad).is_none(), "{bad:?}");
            assert!(SessionId::key_of(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn key_is_not_the_id() {
        let id = SessionId::generate();
        assert!(!id.key().to_hex().contains(id.as_str()));
        assert_eq!(id.key().to_hex().len(), 64);
        let mut bytes = [0u8; 32];
        bytes[0] = 0x0f;
        bytes[1] = 0xa9;
        bytes[31] = 0xff;
        let hex = SessionKey::from_bytes(bytes).to_hex();
        assert_eq!(&hex[..4], "0fa9");
        assert_eq!(&hex[60..], "00ff");
        assert_eq!(format!("{:?}", id), "SessionId(..)");
    }
}
