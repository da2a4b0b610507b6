//! Sessions in Redis or Valkey, shared by every instance of an app (feature `redis`).
//!
//! # Layout
//!
//! With the default prefix `tower-oauth2-login:`:
//!
//! | key | type | holds | expires |
//! |---|---|---|---|
//! | `<prefix>session:<SessionKey hex>` | string | the [`Session`] as JSON, its tokens sealed | at [`Session::expires_at`] (`SET .. EXAT`) |
//! | `<prefix>subject:<sub>` | set | hex keys of the sessions of that user | at the latest absolute deadline of its sessions |
//! | `<prefix>sid:<sid>` | set | hex keys of the sessions of that provider session | the same |
//! | `<prefix>once:<OnceKey hex>` | string | `1`: a back-channel logout token (issuer and `jti`, hashed) already acted on | when the token would no longer be accepted (`SET .. NX EX`) |
//!
//! The session key is the SHA-256 of the cookie value ([`SessionKey`]), so a dump of Redis
//! holds no usable cookie, and the tokens are sealed under a key derived from the cookie
//! value (see [`Session`]), so it holds no usable token either. Expiry is Redis's job:
//! every write sets the key's deadline to the session's (idle deadline, capped at the
//! absolute one), and a session already expired is never written. The two index sets exist only for [`delete_matching`] (back-channel
//! logout): their members may outlive the sessions they name, so `delete_matching` checks
//! each session it finds against the target and removes members that no longer exist.
//!
//! # The local cache
//!
//! Each store keeps the sessions it read in memory ([`RedisStoreBuilder::with_local_cache`],
//! 10,000 by default), so that a request whose session this instance has seen costs no
//! round trip. Redis keeps that copy true: the connection speaks RESP3 with `CLIENT
//! TRACKING ON`, and Redis sends an invalidation for each key this connection read as soon
//! as anyone changes or deletes it. How a stale session is never served (reads that race
//! with a change, own writes, reconnections, a silent server) is in `tracked_cache.rs`.
//!
//! # Failure
//!
//! Every operation is bounded by one timeout (2 s by default, [`RedisStoreBuilder::with_timeout`]):
//! a hung or unreachable server makes it fail with a [`StoreError`] after at most that
//! long, and the layer answers `503` (it fails closed). The local cache serves only while
//! Redis has answered within the last second, and a broken connection empties it. The
//! connection is one multiplexed connection per store (clones share it) under redis-rs's
//! `ConnectionManager`, which
//! reconnects by itself; an operation that meets a broken connection is tried once more on
//! the new one, so the first request after an outage succeeds. Error messages name the
//! operation and the kind of failure, never a key, a session or the URL (which may hold a
//! password).
//!
//! # Servers
//!
//! Redis 7.0 or later, or Valkey: the commands used are `GET`, `SET .. EXAT|NX|XX|EX`, `GETDEL`,
//! `DEL`, `EXISTS`, `MGET`, `SADD`, `SREM`, `SMEMBERS`, `EXPIREAT .. NX|GT`, `EVAL` and `MULTI`/`EXEC`,
//! and, with the local cache, `HELLO 3` (RESP3), `CLIENT TRACKING ON` and `PING`. One
//! server (or a primary behind a stable address): Redis Cluster is not supported, because
//! a save updates the session and its index sets in one transaction. TLS (`rediss://`) is
//! not built in yet: use a TLS-terminating proxy, or a private network.
//!
//! # The refresh lock across instances
//!
//! "One refresh per session at a time" holds across instances: the lock key
//! `<prefix>refresh:<SessionKey hex>` is taken with `SET .. NX PX <ttl>` holding a random
//! token and released by a compare-and-delete `EVAL` (Valkey has it too), so a slow holder
//! cannot release a lock that already passed to another. An instance that does not get the
//! lock waits briefly and re-loads the session, which the holder saves with the new tokens;
//! a crashed holder blocks the session for the lock's lifetime at most.
//!
//! [`delete_matching`]: SessionStore::delete_matching

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::{socket2::TcpKeepalive, TcpSettings};
use redis::{FromRedisValue, IntoConnectionInfo, RedisError, RedisResult};

use super::tracked_cache::{key_from_hex, TrackedCache, HEARTBEAT_EVERY};
use super::{now_secs, OnceKey, RefreshLock, Session, SessionKey, SessionMatch, SessionStore};
use crate::error::StoreError;

/// How many session keys one `MGET` of [`RedisStore::delete_matching`] reads.
const MGET_CHUNK: usize = 128;

/// Sessions in Redis or Valkey, for apps that run on several instances (feature `redis`).
///
/// Every instance that shares a Redis server, a prefix and a cookie key
/// ([`with_cookie_key`](crate::LoginLayerBuilder::with_cookie_key)) serves every session:
/// a user signed in through one instance is signed in on all, and signing out on one signs
/// out everywhere. Sessions survive restarts of the app (and of Redis, if it persists).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tower_oauth2_login::{LoginLayer, session::RedisStore};
///
/// let store = RedisStore::builder("redis://127.0.0.1:6379/0")
///     .with_prefix("my-app:")                    // default "tower-oauth2-login:"
///     .with_timeout(Duration::from_millis(500)) // default 2 s
///     .connect()
///     .await?; // fails fast when Redis cannot be reached
/// let login = LoginLayer::builder()
///     // ... the client and the provider ...
///     .with_store(store)
/// #   .with_client_id("c")
/// #   .with_authorization_endpoint("https://idp.example/authorize")
/// #   .with_token_endpoint("https://idp.example/token")
/// #   .with_userinfo_endpoint("https://idp.example/userinfo")
/// #   .with_redirect_url("https://app.example/auth/callback")
///     .build()?;
/// # Ok(()) }
/// ```
///
/// See [the module documentation](self) for the keys it writes, how it fails and which
/// servers it works with.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
    /// The sessions read, kept true by Redis's invalidation messages; `None` when
    /// [`RedisStoreBuilder::with_local_cache`] is 0.
    cache: Option<Arc<TrackedCache>>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it may carry a password.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("local_cache", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

/// The settings of a [`RedisStore`], from [`RedisStore::builder`].
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    cache_capacity: usize,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("cache_capacity", &self.cache_capacity)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The key prefix unless [`RedisStoreBuilder::with_prefix`] says otherwise.
    pub const DEFAULT_PREFIX: &'static str = "tower-oauth2-login:";
    /// The bound of every operation unless [`RedisStoreBuilder::with_timeout`] says otherwise.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    /// How many sessions the local cache holds unless [`RedisStoreBuilder::with_local_cache`]
    /// says otherwise.
    pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

    /// Connects with the default prefix and timeout; see [`RedisStoreBuilder::connect`].
    ///
    /// `url` is a redis-rs connection URL: `redis://[[user]:password@]host[:port][/db]`,
    /// or `redis+unix:///path/to/socket[?db=N]`.
    pub async fn connect(url: &str) -> Result<RedisStore, StoreError> {
        Self::builder(url).connect().await
    }

    /// Starts the settings of a store on the server at `url` (see [`RedisStore::connect`]).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: Self::DEFAULT_PREFIX.to_string(),
            timeout: Self::DEFAULT_TIMEOUT,
            cache_capacity: Self::DEFAULT_CACHE_CAPACITY,
        }
    }

    /// The prefix of every key this store writes.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The bound of every operation.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn session_key(&self, hex: &str) -> String {
        format!("{}session:{hex}", self.prefix)
    }

    fn refresh_lock_key(&self, hex: &str) -> String {
        format!("{}refresh:{hex}", self.prefix)
    }

    fn subject_index(&self, subject: &str) -> String {
        format!("{}subject:{subject}", self.prefix)
    }

    fn sid_index(&self, sid: &str) -> String {
        format!("{}sid:{sid}", self.prefix)
    }

    /// Runs `op` with the store's timeout; failures become [`StoreError`]s that name `what`.
    async fn bounded<T>(
        &self,
        what: &'static str,
        op: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(store_error(what, &e)),
            Err(elapsed) => Err(StoreError::with_source(
                format!(
                    "redis {what}: no answer within {} ms",
                    self.timeout.as_millis()
                ),
                elapsed,
            )),
        }
    }

    /// Sends a command or transaction; once more if the connection broke (the manager
    /// reconnects on that error, and every command here may safely run twice).
    async fn query<T: FromRedisValue>(&self, request: Request<'_>) -> RedisResult<T> {
        let mut conn = self.conn.clone();
        match request.send(&mut conn).await {
            Err(e) if is_connection_error(&e) => {
                if let Some(cache) = &self.cache {
                    // What was read on the broken connection is no longer tracked.
                    cache.disconnected();
                }
                request.send(&mut conn).await
            }
            done => done,
        }
    }

    /// Forgets `key` in the local cache: before and after this instance writes it.
    fn forget(&self, key: &SessionKey) {
        if let Some(cache) = &self.cache {
            cache.forget(key);
        }
    }

    /// One `GET` of a session, after `CLIENT TRACKING ON` when the connection is new.
    async fn get(&self, key: &SessionKey, tracking: bool) -> Result<Option<Vec<u8>>, StoreError> {
        let name = self.session_key(&key.to_hex());
        if tracking {
            let mut pipe = redis::pipe();
            pipe.cmd("CLIENT")
                .arg("TRACKING")
                .arg("ON")
                .ignore()
                .cmd("GET")
                .arg(name);
            let (raw,): (Option<Vec<u8>>,) = self
                .bounded("load", self.query(Request::Pipe(&pipe)))
                .await?;
            Ok(raw)
        } else {
            let cmd = redis::cmd("GET").arg(name).clone();
            self.bounded("load", self.query(Request::Cmd(&cmd))).await
        }
    }
}

/// The store's commands, without the local cache's bookkeeping.
impl RedisStore {
    /// One transaction: `SET .. EXAT` of the session, and `SADD` plus `EXPIREAT .. NX`
    /// and `EXPIREAT .. GT` (so the later deadline wins) of each index set.
    async fn save_uncached(
        &self,
        key: &SessionKey,
        session: Arc<Session>,
    ) -> Result<(), StoreError> {
        let hex = key.to_hex();
        let session_key = self.session_key(&hex);
        let expires_at = session.expires_at.min(session.absolute_expires_at);
        if expires_at <= now_secs() {
            // Never written; and whatever was stored under this key is replaced by nothing.
            let cmd = redis::cmd("DEL").arg(&session_key).clone();
            return self
                .bounded::<()>("save", self.query(Request::Cmd(&cmd)))
                .await;
        }
        let value = serde_json::to_vec(&*session).map_err(|e| {
            StoreError::with_source("redis save: the session could not be serialized", e)
        })?;
        // The sets live as long as the longest-lived session they name can: the absolute
        // deadline, which no slide of the idle deadline passes.
        let index_expires_at = session.absolute_expires_at.max(expires_at);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&session_key)
            .arg(value)
            .arg("EXAT")
            .arg(expires_at)
            .ignore();
        let subject_index = self.subject_index(&session.subject);
        let sid_index = session.sid.as_deref().map(|sid| self.sid_index(sid));
        for index in std::iter::once(&subject_index).chain(sid_index.as_ref()) {
            // NX sets a deadline on a new set (GT alone would not: no TTL counts as
            // infinite), GT moves an existing one later, never earlier.
            pipe.cmd("SADD")
                .arg(index)
                .arg(&hex)
                .ignore()
                .cmd("EXPIREAT")
                .arg(index)
                .arg(index_expires_at)
                .arg("NX")
                .ignore()
                .cmd("EXPIREAT")
                .arg(index)
                .arg(index_expires_at)
                .arg("GT")
                .ignore();
        }
        self.bounded::<()>("save", self.query(Request::Pipe(&pipe)))
            .await
    }

    async fn update_uncached(
        &self,
        key: &SessionKey,
        session: Arc<Session>,
    ) -> Result<bool, StoreError> {
        let expires_at = session.expires_at.min(session.absolute_expires_at);
        if expires_at <= now_secs() {
            self.delete_uncached(key).await?;
            return Ok(false);
        }
        let value = serde_json::to_vec(&*session).map_err(|e| {
            StoreError::with_source("redis update: the session could not be serialized", e)
        })?;
        let cmd = redis::cmd("SET")
            .arg(self.session_key(&key.to_hex()))
            .arg(value)
            .arg("EXAT")
            .arg(expires_at)
            .arg("XX")
            .clone();
        let written: Option<String> = self
            .bounded("update", self.query(Request::Cmd(&cmd)))
            .await?;
        Ok(written.is_some())
    }

    async fn lock_refresh_uncached(
        &self,
        key: &SessionKey,
        ttl: Duration,
    ) -> Result<Option<RefreshLock>, StoreError> {
        let token = {
            use rand::RngCore;
            let mut bytes = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let cmd = redis::cmd("SET")
            .arg(self.refresh_lock_key(&key.to_hex()))
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(millis)
            .clone();
        let taken: Option<String> = self.bounded("lock", self.query(Request::Cmd(&cmd))).await?;
        Ok(taken.map(|_| RefreshLock::new(token)))
    }

    async fn delete_uncached(&self, key: &SessionKey) -> Result<(), StoreError> {
        let hex = key.to_hex();
        let cmd = redis::cmd("GETDEL").arg(self.session_key(&hex)).clone();
        self.bounded("delete", async {
            let raw: Option<Vec<u8>> = self.query(Request::Cmd(&cmd)).await?;
            let Some(session) = raw.and_then(|bytes| decode(&bytes)) else {
                return Ok(());
            };
            let mut pipe = redis::pipe();
            pipe.cmd("SREM")
                .arg(self.subject_index(&session.subject))
                .arg(&hex)
                .ignore();
            if let Some(sid) = &session.sid {
                pipe.cmd("SREM").arg(self.sid_index(sid)).arg(&hex).ignore();
            }
            self.query::<()>(Request::Pipe(&pipe)).await
        })
        .await
    }
}

/// A command or a pipeline, so [`RedisStore::query`] can send either twice.
#[derive(Clone, Copy)]
enum Request<'a> {
    Cmd(&'a redis::Cmd),
    Pipe(&'a redis::Pipeline),
}

impl Request<'_> {
    async fn send<T: FromRedisValue>(self, conn: &mut ConnectionManager) -> RedisResult<T> {
        match self {
            Request::Cmd(cmd) => cmd.query_async(conn).await,
            Request::Pipe(pipe) => pipe.query_async(conn).await,
        }
    }
}

/// A broken or refused connection (worth one more try on the reconnected one), as opposed
/// to a timeout or an answer from the server.
fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() && !e.is_timeout()
}

/// A [`StoreError`] that says what failed and how, with nothing from the request: server
/// error details can echo arguments (keys), so only their code is kept, and the
/// `RedisError` is not attached as the source (loggers print the whole chain).
fn store_error(what: &str, e: &RedisError) -> StoreError {
    let how = if e.is_connection_refusal() {
        "connection refused".to_string()
    } else if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_io_error() {
        "connection lost".to_string()
    } else if let Some(code) = e.code() {
        format!("server answered {code}")
    } else {
        e.category().to_string()
    };
    StoreError::new(format!("redis {what}: {how}"))
}

impl RedisStoreBuilder {
    /// The prefix of every key the store writes. Default `tower-oauth2-login:`. Apps that
    /// share a Redis database but not their sessions need different prefixes.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The longest any store operation (and connecting) may take before it fails with a
    /// [`StoreError`]. Default 2 s. Requests with a session cookie wait up to this long
    /// for their answer when Redis hangs.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many sessions this instance keeps in memory after reading them, so that the
    /// requests of a session it has seen need no round trip to Redis. Default 10,000
    /// (roughly 1–2 KiB each); `0` turns the cache off and every request reads Redis.
    ///
    /// The cache cannot serve a session that was signed out elsewhere: Redis itself
    /// tells this instance when any client changes or deletes a session it read
    /// (server-assisted client-side caching, RESP3 `CLIENT TRACKING`); a broken
    /// connection empties it; and it is used only while Redis has answered within the last
    /// second (a heartbeat `PING` keeps that true), so a hung or unreachable Redis still
    /// makes requests fail closed. It needs Redis 6 or later, or Valkey, which both
    /// speak RESP3 (the store needs Redis 7 anyway).
    pub fn with_local_cache(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Connects, checks that the server takes this store's writes, and returns the store.
    ///
    /// It fails fast rather than waiting for Redis: an error after at most the timeout
    /// when the URL is invalid, the server cannot be reached, refuses the credentials, is
    /// a read-only replica, or is older than Redis 7.0. Start Redis first, or let the
    /// process supervisor restart the app. Once connected the store reconnects by itself:
    /// later outages make requests fail (`503`) while they last, and no more.
    pub async fn connect(self) -> Result<RedisStore, StoreError> {
        if self.timeout.is_zero() {
            return Err(StoreError::new("redis: the timeout must be above zero"));
        }
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| StoreError::new(format!("invalid Redis URL: {}", e.category())))?;
        // Small requests on one multiplexed connection: no Nagle delay. A server that
        // vanished without closing the connection (a host gone in a failover) is found by
        // keepalive probes while the connection is idle, and, on Linux, by the user
        // timeout while requests are unacknowledged; then the manager reconnects. (A
        // server that hangs but is there, acknowledges: only the operation timeout acts.)
        let keepalive = TcpKeepalive::new()
            .with_time(Duration::from_secs(15))
            .with_interval(Duration::from_secs(5));
        let tcp = TcpSettings::default()
            .set_nodelay(true)
            .set_keepalive(keepalive);
        #[cfg(target_os = "linux")]
        let tcp = tcp.set_user_timeout((self.timeout * 2).max(Duration::from_secs(10)));
        let mut info = info.set_tcp_settings(tcp);
        let prefix: Arc<str> = self.prefix.into();
        let cache = (self.cache_capacity > 0).then(|| {
            Arc::new(TrackedCache::new(
                format!("{prefix}session:"),
                self.cache_capacity,
            ))
        });
        if cache.is_some() {
            // Invalidation messages are RESP3 pushes on the connection itself.
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(redis::ProtocolVersion::RESP3);
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info)
            .map_err(|e| StoreError::new(format!("invalid Redis URL: {}", e.category())))?;
        // One quick retry per reconnection: while Redis is down, requests fail within
        // milliseconds instead of queueing behind a long backoff; each failed request
        // starts the next attempt.
        // No response timeout of the connection's own: `bounded` puts one timeout around
        // each whole operation (a timed-out reply is still read, and dropped, in order).
        let mut config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(None)
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        if let Some(cache) = &cache {
            // Weak: the manager owns this sender, and the store owns the cache.
            let weak = Arc::downgrade(cache);
            config = config.set_push_sender(move |push: redis::PushInfo| {
                if let Some(cache) = weak.upgrade() {
                    cache.on_push(&push);
                }
                Ok::<(), redis::aio::SendError>(())
            });
        }
        let probe_key = format!("{prefix}probe");
        let caching = cache.is_some();
        let connect = async {
            let mut conn = ConnectionManager::new_with_config(client, config).await?;
            // The commands a save uses, on a key of our own: this fails on servers before
            // 7.0 (EXPIREAT NX/GT), read-only replicas and ACLs that forbid our keys.
            // With the local cache, also the tracking it relies on (an ACL may forbid
            // `CLIENT`): better refused here than a cache that never serves.
            let until = now_secs() + 60;
            let mut probe = redis::pipe();
            if caching {
                probe.cmd("CLIENT").arg("TRACKING").arg("ON").ignore();
            }
            probe
                .cmd("SET")
                .arg(&probe_key)
                .arg("1")
                .arg("EXAT")
                .arg(until)
                .ignore()
                .cmd("EXPIREAT")
                .arg(&probe_key)
                .arg(until)
                .arg("GT")
                .ignore()
                .cmd("DEL")
                .arg(&probe_key)
                .ignore()
                .exec_async(&mut conn)
                .await?;
            Ok::<_, RedisError>(conn)
        };
        let conn = match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) if caching && e.code() == Some("NOPERM") => {
                return Err(StoreError::new(
                    "redis connect: server answered NOPERM (the local cache needs `CLIENT \
                     TRACKING`: allow it, or turn the cache off with `with_local_cache(0)`)",
                ))
            }
            Ok(Err(e)) => return Err(store_error("connect", &e)),
            Err(elapsed) => {
                return Err(StoreError::with_source(
                    format!(
                        "redis connect: no answer within {} ms",
                        self.timeout.as_millis()
                    ),
                    elapsed,
                ))
            }
        };
        if let Some(cache) = &cache {
            tokio::spawn(heartbeat(Arc::downgrade(cache), conn.clone(), self.timeout));
        }
        Ok(RedisStore {
            conn,
            prefix,
            timeout: self.timeout,
            cache,
        })
    }
}

/// Pings Redis while the local cache holds sessions, so that they are served only while
/// Redis answers (see [`TrackedCache`]); ends with the last clone of the store.
async fn heartbeat(
    cache: std::sync::Weak<TrackedCache>,
    mut conn: ConnectionManager,
    timeout: Duration,
) {
    loop {
        tokio::time::sleep(HEARTBEAT_EVERY).await;
        let Some(cache) = cache.upgrade() else { return };
        if cache.is_empty() {
            continue;
        }
        let ping = redis::cmd("PING").clone();
        match tokio::time::timeout(timeout, ping.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => cache.answered(),
            Ok(Err(e)) if is_connection_error(&e) => cache.disconnected(),
            // A hung server: the cache stops serving by itself once it has been silent.
            _ => {}
        }
    }
}

/// The session in a `GET`'s answer, unless it has expired: Redis expires the key on its
/// own clock; this instance's clock has the last word.
fn fresh(raw: Option<Vec<u8>>) -> Option<Arc<Session>> {
    raw.and_then(|bytes| decode(&bytes))
        .filter(|s| !s.is_expired(now_secs()))
        .map(Arc::new)
}

/// The session in a stored value, or `None` (logged) for one this version cannot read
/// (also a record of a version that kept the tokens in the clear).
fn decode(bytes: &[u8]) -> Option<Session> {
    match serde_json::from_slice::<Session>(bytes) {
        Ok(session) => Some(session),
        Err(_) => {
            tracing::warn!("unreadable session record in redis: treated as no session");
            None
        }
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    /// The local cache when it holds the session, else one `GET`. A session read from
    /// Redis comes sealed; the layer opens it in place, so that the cached copy is served
    /// opened from then on.
    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<Session>>, StoreError> {
        let Some(cache) = &self.cache else {
            return Ok(fresh(self.get(key, false).await?));
        };
        if let Some(session) = cache.get(key) {
            return Ok(Some(session));
        }
        let read = cache.begin(key);
        // On an error `read` is dropped, which takes its pending mark away.
        let session = fresh(self.get(key, read.needs_tracking).await?);
        read.fill(session.as_ref());
        Ok(session)
    }

    /// The local cache's copy, when it has one it may serve.
    fn load_now(&self, key: &SessionKey) -> Option<Option<Arc<Session>>> {
        self.cache.as_ref()?.get(key).map(Some)
    }

    /// See `save_uncached`: one transaction of the session and its index sets.
    async fn save(&self, key: &SessionKey, session: Arc<Session>) -> Result<(), StoreError> {
        self.forget(key);
        let saved = self.save_uncached(key, session).await;
        self.forget(key);
        saved
    }

    /// One `SET .. EXAT .. XX`: only a session that is still there is replaced. Its index
    /// sets already name it (an update keeps the subject and sid).
    async fn update(&self, key: &SessionKey, session: Arc<Session>) -> Result<bool, StoreError> {
        self.forget(key);
        let updated = self.update_uncached(key, session).await;
        self.forget(key);
        updated
    }

    /// `SET <prefix>refresh:<hex> <random> NX PX <ttl>`. The local copy of the session is
    /// dropped: whoever refreshes next must start from the stored tokens.
    async fn lock_refresh(
        &self,
        key: &SessionKey,
        ttl: Duration,
    ) -> Result<Option<RefreshLock>, StoreError> {
        let locked = self.lock_refresh_uncached(key, ttl).await;
        self.forget(key);
        locked
    }

    /// A compare-and-delete: only the holder's own token releases the lock.
    async fn unlock_refresh(&self, key: &SessionKey, lock: RefreshLock) -> Result<(), StoreError> {
        const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                               return redis.call('DEL', KEYS[1]) else return 0 end";
        let cmd = redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(self.refresh_lock_key(&key.to_hex()))
            .arg(lock.token())
            .clone();
        self.bounded::<i64>("unlock", self.query(Request::Cmd(&cmd)))
            .await
            .map(drop)
    }

    /// `GETDEL`, then `SREM` of the session from its index sets.
    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.forget(key);
        let deleted = self.delete_uncached(key).await;
        self.forget(key);
        deleted
    }

    /// `SMEMBERS` of the sid index (or else of the subject index), `MGET` of the sessions
    /// it names, then one transaction that `DEL`s those that [`Session::matches`] the
    /// target and `SREM`s them, and members whose session is gone, from the index sets.
    ///
    /// A session created while this runs may survive it: a back-channel logout ends the
    /// sessions that exist when it arrives.
    async fn delete_matching(&self, target: &SessionMatch<'_>) -> Result<usize, StoreError> {
        let (index, by_sid) = match (target.subject, target.sid) {
            (_, Some(sid)) => (self.sid_index(sid), true),
            (Some(subject), None) => (self.subject_index(subject), false),
            (None, None) => return Ok(0),
        };
        self.bounded("delete_matching", async {
            let smembers = redis::cmd("SMEMBERS").arg(&index).clone();
            let members: Vec<String> = self.query(Request::Cmd(&smembers)).await?;
            let mut doomed: Vec<(String, Session)> = Vec::new();
            let mut stale: Vec<String> = Vec::new();
            for chunk in members.chunks(MGET_CHUNK) {
                let mut mget = redis::cmd("MGET");
                for hex in chunk {
                    mget.arg(self.session_key(hex));
                }
                let values: Vec<Option<Vec<u8>>> = self.query(Request::Cmd(&mget)).await?;
                for (hex, value) in chunk.iter().zip(values) {
                    match value.and_then(|bytes| decode(&bytes)) {
                        Some(session) if session.matches(target) => {
                            doomed.push((hex.clone(), session))
                        }
                        // Still in this set by right: another subject under the same sid.
                        Some(session)
                            if (by_sid && session.sid.as_deref() == target.sid)
                                || (!by_sid && target.subject == Some(&session.subject)) => {}
                        // Gone (expired, deleted) or no longer of this set.
                        _ => stale.push(hex.clone()),
                    }
                }
            }
            if doomed.is_empty() && stale.is_empty() {
                return Ok(0);
            }
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (hex, session) in &doomed {
                // The one reply kept per doomed session: 1 if this DEL removed it.
                pipe.cmd("DEL").arg(self.session_key(hex));
                pipe.cmd("SREM")
                    .arg(self.subject_index(&session.subject))
                    .arg(hex)
                    .ignore();
                if let Some(sid) = &session.sid {
                    pipe.cmd("SREM").arg(self.sid_index(sid)).arg(hex).ignore();
                }
            }
            if !stale.is_empty() {
                pipe.cmd("SREM").arg(&index).arg(&stale).ignore();
            }
            let deleted: Vec<usize> = self.query(Request::Pipe(&pipe)).await?;
            for (hex, _) in &doomed {
                if let Some(key) = key_from_hex(hex.as_bytes()) {
                    self.forget(&key);
                }
            }
            Ok(deleted.into_iter().sum())
        })
        .await
    }

    /// `EXISTS <prefix>once:<hex>`: shared by every instance on this server and prefix.
    async fn is_remembered(&self, key: &OnceKey) -> Result<bool, StoreError> {
        let cmd = redis::cmd("EXISTS").arg(self.once_key(key)).clone();
        let n: i64 = self
            .bounded("is_remembered", self.query(Request::Cmd(&cmd)))
            .await?;
        Ok(n > 0)
    }

    /// `SET <prefix>once:<hex> 1 NX EX <ttl>`: new exactly when the `SET` wrote. Redis
    /// expires the key, so memory follows the tokens of the last window only.
    async fn remember_once(&self, key: &OnceKey, ttl: Duration) -> Result<bool, StoreError> {
        let cmd = redis::cmd("SET")
            .arg(self.once_key(key))
            .arg("1")
            .arg("NX")
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .clone();
        let written: Option<String> = self
            .bounded("remember_once", self.query(Request::Cmd(&cmd)))
            .await?;
        Ok(written.is_some())
    }
}

/// Once-only keys (back-channel logout `jti`s).
impl RedisStore {
    fn once_key(&self, key: &OnceKey) -> String {
        format!("{}once:{}", self.prefix, key.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::{ErrorKind, ServerErrorKind};

    #[test]
    fn errors_keep_the_code_and_drop_the_details() {
        // A server error's detail can echo the command's arguments: the keys.
        let echo =
            "unknown command 'X', with args beginning with: 'tower-oauth2-login:session:0a1b'";
        let e = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "An error was signalled by the server",
            echo.to_string(),
        ));
        let msg = store_error("load", &e).to_string();
        assert_eq!(msg, "session store error: redis load: server answered ERR");
        assert!(!msg.contains("0a1b"));

        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(
            store_error("save", &io).to_string(),
            "session store error: redis save: connection refused"
        );
        assert!(is_connection_error(&io));
        let reset = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(store_error("save", &reset)
            .to_string()
            .ends_with("connection lost"));
        let timed_out = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(!is_connection_error(&timed_out), "a timeout is not retried");
    }

    #[tokio::test]
    async fn a_zero_timeout_is_refused() {
        let err = RedisStore::builder("redis://127.0.0.1:1/")
            .with_timeout(Duration::ZERO)
            .connect()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("timeout must be above zero"));
    }
}
