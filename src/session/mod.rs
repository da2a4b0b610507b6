//! Server-side sessions: what a session holds, how it is keyed, and the store trait.
//!
//! The browser holds only an opaque, random 256-bit session id. The store never sees that
//! id: it is keyed by the SHA-256 of it ([`SessionKey`]), so a dump of the store holds no
//! value that could be replayed as a cookie. Nor any token: a session's serde form (what
//! `RedisStore` and any serialising store write) carries the access, refresh and ID tokens
//! sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the session id, so only
//! a request with the cookie can open them; the layer opens a session once when it reads it
//! from a store, and serves cached sessions opened.
//!
//! Two stores come with the crate: [`MemoryStore`] (the default: one instance, fastest,
//! lost on restart) and, with the feature `redis`, `RedisStore` (Redis or Valkey:
//! several instances, survives restarts of the app).

mod claims;
pub(crate) mod flights;
mod memory;
mod once;
#[cfg(feature = "redis")]
pub mod redis;
mod seal;
#[cfg(feature = "redis")]
mod tracked_cache;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

pub(crate) use self::claims::Claims;
pub use self::memory::MemoryStore;
pub use self::once::OnceKey;
#[cfg(feature = "redis")]
pub use self::redis::{RedisStore, RedisStoreBuilder};
use self::seal::{Binding, Sealed};
pub(crate) use self::seal::{SealError, SealKey, Tokens};
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

    /// The key that seals this session's tokens: derived from the id, never stored.
    pub(crate) fn seal_key(&self) -> SealKey {
        SealKey::for_cookie_value(&self.0)
    }

    /// Both keys of the id: where its session is stored, and what opens its tokens.
    pub(crate) fn keys(&self) -> (SessionKey, SealKey) {
        (self.key(), self.seal_key())
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
/// `Debug` output leaves them out). They are never in a store either: the serde form of a
/// session, which is what `RedisStore` writes and what any serialising store gets, holds
/// the access, refresh and ID tokens only sealed (AES-256-GCM under a key derived from the
/// session id, which stores never see). Subject, sid, claims, scopes and deadlines stay
/// readable, for expiry and back-channel logout. A store that keeps `Arc<Session>`s in
/// memory (like [`MemoryStore`]) keeps them opened, as the layer made them.
#[derive(Clone)]
pub struct Session {
    pub(crate) subject: String,
    /// Compact JSON text, parsed on demand (see [`Claims`] for why).
    pub(crate) claims: Claims,
    pub(crate) scopes: Vec<String>,
    pub(crate) access_expires_at: Option<u64>,
    /// When the current access token was obtained, to know its lifetime.
    pub(crate) access_obtained_at: u64,
    /// The provider's session id (`sid` claim, OpenID Connect), for back-channel logout.
    pub(crate) sid: Option<String>,
    pub(crate) created_at: u64,
    /// When the session ends unless it is used: min(idle deadline, absolute deadline).
    pub(crate) expires_at: u64,
    /// When the session ends however much it is used.
    pub(crate) absolute_expires_at: u64,
    /// The tokens, sealed and in the clear.
    pub(crate) secrets: Secrets,
}

/// A session's tokens, in the two forms it may have.
///
/// A session made by the layer (a login, a refresh) starts opened and is sealed the first
/// time a store serializes it; a session read from a store starts sealed and is opened by
/// the layer once, with the key from the cookie. Both forms are then kept: an idle-deadline
/// write reuses the sealed form as it is, and a cached session is served opened, with no
/// crypto per request.
#[derive(Clone, Default)]
pub(crate) struct Secrets {
    sealed: OnceLock<Sealed>,
    opened: OnceLock<Opened>,
}

#[derive(Clone)]
struct Opened {
    tokens: Tokens,
    /// The key they were opened with (or will be sealed with): never serialized.
    seal: SealKey,
}

impl Secrets {
    /// New tokens, to be sealed under `seal` when a store first serializes them.
    pub(crate) fn new(tokens: Tokens, seal: SealKey) -> Self {
        Secrets {
            sealed: OnceLock::new(),
            opened: OnceLock::from(Opened { tokens, seal }),
        }
    }
}

impl Session {
    /// A session of `subject` with no claims and a dummy access token, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(subject: &str, expires_at: u64, absolute_expires_at: u64) -> Self {
        Session {
            subject: subject.into(),
            claims: Default::default(),
            scopes: vec![],
            access_expires_at: None,
            access_obtained_at: now_secs(),
            sid: None,
            created_at: now_secs(),
            expires_at,
            absolute_expires_at,
            secrets: Secrets::new(
                Tokens {
                    access_token: "at".into(),
                    refresh_token: None,
                    id_token: None,
                },
                SealKey::for_cookie_value("for-tests"),
            ),
        }
    }

    fn binding(&self) -> Binding<'_> {
        Binding {
            subject: &self.subject,
            sid: self.sid.as_deref(),
            claims: self.claims.as_json(),
            created_at: self.created_at,
            absolute_expires_at: self.absolute_expires_at,
        }
    }

    /// Opens the tokens with the seal key of the session's id, once: later calls compare
    /// the key and return what was opened. A session that does not open (sealed under
    /// another id, edited in the store, or of a format this version cannot read) must be
    /// treated as no session.
    pub(crate) fn open(&self, seal: &SealKey) -> Result<&Tokens, SealError> {
        if let Some(opened) = self.secrets.opened.get() {
            return if opened.seal.same_as(seal) {
                Ok(&opened.tokens)
            } else {
                Err(SealError)
            };
        }
        let sealed = self.secrets.sealed.get().ok_or(SealError)?;
        let tokens = seal::open(sealed, seal, &self.binding())?;
        // Two requests may open the same cached session at once: the first one's is kept,
        // the same tokens either way.
        let opened = self.secrets.opened.get_or_init(|| Opened {
            tokens,
            seal: *seal,
        });
        Ok(&opened.tokens)
    }

    /// Whether the tokens are open: the hot path serves only sessions that are.
    pub(crate) fn is_open(&self) -> bool {
        self.secrets.opened.get().is_some()
    }

    /// The tokens, if opened.
    pub(crate) fn tokens(&self) -> Option<&Tokens> {
        self.secrets.opened.get().map(|o| &o.tokens)
    }

    /// The access token, if the tokens are opened.
    pub(crate) fn access_token(&self) -> Option<&str> {
        self.tokens().map(|t| t.access_token.as_str())
    }

    /// The refresh token, if there is one and the tokens are opened.
    pub(crate) fn refresh_token(&self) -> Option<&str> {
        self.tokens().and_then(|t| t.refresh_token.as_deref())
    }

    /// The ID token, if there is one and the tokens are opened.
    pub(crate) fn id_token(&self) -> Option<&str> {
        self.tokens().and_then(|t| t.id_token.as_deref())
    }

    /// The key the tokens were opened with, to open this session's record again (a
    /// refresh re-reads it from the store).
    pub(crate) fn seal_key(&self) -> Option<SealKey> {
        self.secrets.opened.get().map(|o| o.seal)
    }

    /// Replaces the tokens (a refresh): sealed afresh, under the same key, at the next
    /// save. `Err` when this session was never opened, so has no key to seal with.
    pub(crate) fn set_tokens(&mut self, tokens: Tokens) -> Result<(), SealError> {
        let seal = self.seal_key().ok_or(SealError)?;
        self.secrets = Secrets::new(tokens, seal);
        Ok(())
    }

    /// The sealed tokens, sealing them now if this session was made here and not yet
    /// stored.
    fn sealed(&self) -> Result<&Sealed, SealError> {
        if let Some(sealed) = self.secrets.sealed.get() {
            return Ok(sealed);
        }
        let opened = self.secrets.opened.get().ok_or(SealError)?;
        let sealed = seal::seal(&opened.tokens, &opened.seal, &self.binding())?;
        // Two saves of the same new session at once may both seal: either value opens.
        Ok(self.secrets.sealed.get_or_init(|| sealed))
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

/// The stored form of a session, as written: the readable fields and the sealed tokens.
#[derive(Serialize)]
struct StoredRef<'a> {
    subject: &'a str,
    claims: &'a Claims,
    scopes: &'a [String],
    access_expires_at: Option<u64>,
    access_obtained_at: u64,
    sid: Option<&'a str>,
    created_at: u64,
    expires_at: u64,
    absolute_expires_at: u64,
    sealed: &'a Sealed,
}

/// The stored form of a session, as read. `sealed` is required: a record of a version that
/// kept the tokens in the clear is not read (the browser signs in again), so that no
/// plain-text record is ever taken for a session.
#[derive(Deserialize)]
struct Stored {
    subject: String,
    claims: Claims,
    scopes: Vec<String>,
    access_expires_at: Option<u64>,
    #[serde(default)]
    access_obtained_at: u64,
    #[serde(default)]
    sid: Option<String>,
    created_at: u64,
    expires_at: u64,
    absolute_expires_at: u64,
    sealed: Sealed,
}

/// The stored form: every field but the tokens readable, the tokens sealed (see
/// [`Session`]). Fails for a session that is neither sealed nor opened, which the layer
/// never makes.
impl Serialize for Session {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let sealed = self.sealed().map_err(serde::ser::Error::custom)?;
        StoredRef {
            subject: &self.subject,
            claims: &self.claims,
            scopes: &self.scopes,
            access_expires_at: self.access_expires_at,
            access_obtained_at: self.access_obtained_at,
            sid: self.sid.as_deref(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            absolute_expires_at: self.absolute_expires_at,
            sealed,
        }
        .serialize(serializer)
    }
}

/// A session as a store wrote it: sealed, to be opened by the layer with the key from the
/// cookie.
impl<'de> Deserialize<'de> for Session {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = Stored::deserialize(deserializer)?;
        Ok(Session {
            subject: s.subject,
            claims: s.claims,
            scopes: s.scopes,
            access_expires_at: s.access_expires_at,
            access_obtained_at: s.access_obtained_at,
            sid: s.sid,
            created_at: s.created_at,
            expires_at: s.expires_at,
            absolute_expires_at: s.absolute_expires_at,
            secrets: Secrets {
                sealed: OnceLock::from(s.sealed),
                opened: OnceLock::new(),
            },
        })
    }
}

/// `session` with its tokens opened with `seal`, or `None` when they do not open (then it
/// is no session: sealed under another id, or edited in the store).
pub(crate) fn opened(session: Arc<Session>, seal: &SealKey) -> Option<Arc<Session>> {
    match session.open(seal) {
        Ok(_) => Some(session),
        Err(_) => {
            tracing::warn!("a stored session does not open with its cookie: treated as no session");
            None
        }
    }
}

/// A session from its fields with the tokens in the clear, as a login makes it: for the
/// benches and tests (`crate::bench`), which have no login to make one.
pub(crate) fn from_plain_json(
    fields: serde_json::Value,
    seal: SealKey,
) -> Result<Session, serde_json::Error> {
    #[derive(Deserialize)]
    struct Plain {
        subject: String,
        claims: Claims,
        scopes: Vec<String>,
        access_token: String,
        access_expires_at: Option<u64>,
        #[serde(default)]
        access_obtained_at: u64,
        #[serde(default)]
        refresh_token: Option<String>,
        #[serde(default)]
        id_token: Option<String>,
        #[serde(default)]
        sid: Option<String>,
        created_at: u64,
        expires_at: u64,
        absolute_expires_at: u64,
    }
    let p: Plain = serde_json::from_value(fields)?;
    Ok(Session {
        subject: p.subject,
        claims: p.claims,
        scopes: p.scopes,
        access_expires_at: p.access_expires_at,
        access_obtained_at: p.access_obtained_at,
        sid: p.sid,
        created_at: p.created_at,
        expires_at: p.expires_at,
        absolute_expires_at: p.absolute_expires_at,
        secrets: Secrets::new(
            Tokens {
                access_token: p.access_token,
                refresh_token: p.refresh_token,
                id_token: p.id_token,
            },
            seal,
        ),
    })
}

/// Where sessions live. Implement it to keep sessions in your own database.
///
/// A store that serializes sessions (`serde`) gets their tokens sealed without doing
/// anything: the serde form of a [`Session`] never holds a token in the clear, and a record
/// that does not open with its own cookie (moved under another key, edited) is taken by the
/// layer for no session. Keep the serde form as it is: the layer needs every field back.
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

    /// A session as a login makes it for the id `id`, with tokens one can look for.
    fn signed_in(id: &SessionId) -> Session {
        let mut s = Session::for_tests("alice", now_secs() + 600, now_secs() + 3600);
        s.sid = Some("sid-1".into());
        s.claims = Claims::from_map(
            serde_json::json!({"sub": "alice", "groups": ["a"]})
                .as_object()
                .unwrap(),
        );
        s.secrets = Secrets::new(
            Tokens {
                access_token: "access-SECRET-1".into(),
                refresh_token: Some("refresh-SECRET-1".into()),
                id_token: Some("eyJ.id-SECRET-1.sig".into()),
            },
            id.seal_key(),
        );
        s
    }

    const SECRETS: [&str; 3] = ["access-SECRET-1", "refresh-SECRET-1", "id-SECRET-1"];

    fn assert_no_secret(text: &str) {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn the_stored_form_holds_no_token_and_opens_only_with_its_id() {
        let id = SessionId::generate();
        let other = SessionId::generate();
        let text = serde_json::to_string(&signed_in(&id)).unwrap();
        assert_no_secret(&text);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        // What expiry and back-channel logout need stays readable.
        assert_eq!(value["subject"], "alice");
        assert_eq!(value["sid"], "sid-1");
        assert_eq!(value["claims"]["groups"][0], "a");
        assert!(value["expires_at"].is_u64() && value["absolute_expires_at"].is_u64());
        for name in ["access_token", "refresh_token", "id_token"] {
            assert!(value.get(name).is_none(), "{name}");
        }

        let read: Session = serde_json::from_str(&text).unwrap();
        assert!(!read.is_open());
        assert!(read.access_token().is_none() && read.refresh_token().is_none());
        assert_eq!(read.open(&other.seal_key()).unwrap_err(), SealError);
        assert!(!read.is_open());
        let tokens = read.open(&id.seal_key()).unwrap();
        assert_eq!(tokens.access_token, "access-SECRET-1");
        assert!(read.is_open());
        assert_eq!(read.refresh_token(), Some("refresh-SECRET-1"));
        assert_eq!(read.id_token(), Some("eyJ.id-SECRET-1.sig"));
        // Opened once; another key still gets nothing.
        assert!(read.open(&other.seal_key()).is_err());
        assert!(read.open(&id.seal_key()).is_ok());
        assert_no_secret(&format!("{read:?}{:?}{:?}", id.seal_key(), read.tokens()));
    }

    #[test]
    fn an_idle_slide_keeps_the_sealed_tokens_and_new_tokens_are_sealed_afresh() {
        let id = SessionId::generate();
        let stored = |s: &Session| serde_json::to_value(s).unwrap();
        let made = signed_in(&id);
        let first = stored(&made);
        assert_eq!(stored(&made)["sealed"], first["sealed"], "sealed once");
        let read: Session = serde_json::from_value(first.clone()).unwrap();
        read.open(&id.seal_key()).unwrap();

        let mut slid = read.clone();
        slid.expires_at += 60;
        let after_slide = stored(&slid);
        assert_eq!(
            after_slide["sealed"], first["sealed"],
            "no crypto for a deadline"
        );
        assert_eq!(
            after_slide["expires_at"],
            first["expires_at"].as_u64().unwrap() + 60
        );

        let mut refreshed = read.clone();
        let mut tokens = refreshed.tokens().unwrap().clone();
        tokens.access_token = "access-SECRET-2".into();
        refreshed.set_tokens(tokens).unwrap();
        let after_refresh = stored(&refreshed);
        assert_ne!(after_refresh["sealed"], first["sealed"]);
        assert!(!after_refresh.to_string().contains("access-SECRET-2"));
        let again: Session = serde_json::from_value(after_refresh).unwrap();
        assert_eq!(
            again.open(&id.seal_key()).unwrap().access_token,
            "access-SECRET-2"
        );
        assert_eq!(again.refresh_token(), Some("refresh-SECRET-1"));

        // A session read and never opened has no key to seal new tokens with.
        let mut sealed_only: Session = serde_json::from_value(first).unwrap();
        assert!(sealed_only
            .set_tokens(read.tokens().unwrap().clone())
            .is_err());
    }

    #[test]
    fn an_edited_or_moved_record_does_not_open() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        let record = serde_json::to_value(signed_in(&a)).unwrap();
        let opens = |value: &serde_json::Value, id: &SessionId| {
            let s: Session = serde_json::from_value(value.clone()).unwrap();
            s.open(&id.seal_key()).is_ok()
        };
        assert!(opens(&record, &a));
        assert!(!opens(&record, &b), "moved under another id's key");
        let edits: [(&str, serde_json::Value); 5] = [
            ("subject", "mallory".into()),
            ("sid", "sid-2".into()),
            (
                "claims",
                serde_json::json!({"sub": "alice", "groups": ["admin"]}),
            ),
            ("created_at", 1.into()),
            (
                "absolute_expires_at",
                (now_secs() + 10 * 365 * 86_400).into(),
            ),
        ];
        for (field, value) in edits {
            let mut edited = record.clone();
            edited[field] = value;
            assert!(!opens(&edited, &a), "{field} edited");
        }
        // B's tokens put in A's record do not open with A's cookie.
        let mut swapped = record.clone();
        swapped["sealed"] = serde_json::to_value(signed_in(&b)).unwrap()["sealed"].clone();
        assert!(!opens(&swapped, &a));
        // The sliding deadline is not bound (it changes without the tokens).
        let mut slid = record.clone();
        slid["expires_at"] = (now_secs() + 900).into();
        assert!(opens(&slid, &a));
    }

    #[test]
    fn plain_text_records_are_not_read() {
        let now = now_secs();
        let old = serde_json::json!({
            "subject": "alice", "claims": {}, "scopes": [],
            "access_token": "access-SECRET-1", "access_expires_at": null,
            "refresh_token": null, "id_token": null,
            "created_at": now, "expires_at": now + 60, "absolute_expires_at": now + 60,
        });
        assert!(serde_json::from_value::<Session>(old).is_err());
        let mut bogus = serde_json::to_value(signed_in(&SessionId::generate())).unwrap();
        bogus["sealed"] = "AAAA".into();
        let s: Session = serde_json::from_value(bogus).unwrap();
        assert!(s.open(&SessionId::generate().seal_key()).is_err());
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
