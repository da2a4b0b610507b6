//! Keeping the access token fresh: a refresh with the refresh token when it is expired or
//! about to be, one flight per session however many requests arrive together.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::panic::AssertUnwindSafe;

use dashmap::mapref::entry::Entry;
use futures_util::FutureExt;
use oauth2::basic::BasicErrorResponseType;
use oauth2::{RefreshToken, RequestTokenError, TokenResponse};
use serde_json::Value;
use tokio::sync::watch;

use crate::context::Context;
use crate::provider::http_client::BackchannelError;
use crate::provider::oidc::NonceCheck;
use crate::session::flights::Refreshed;
use crate::session::{self, now_secs, RefreshLock, Session, SessionKey};

/// One running refresh. Dropped when the refresh ends, whether it landed, panicked, or the
/// runtime dropped its task: the entry in [`Flights`] goes with it, and waiters that saw no
/// outcome learn that none is coming (the sender is gone) instead of waiting forever.
struct Flight {
    inner: Arc<Context>,
    key: SessionKey,
    outcome: watch::Sender<Option<Refreshed>>,
}

impl Flight {
    async fn fly(self, seen: Arc<Session>) {
        let outcome = run(&self.inner, &self.key, seen).await;
        self.outcome.send_replace(Some(outcome));
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        // Only this flight's entry: a later flight of the session may have its own.
        self.inner
            .refresh_flights
            .running
            .remove_if(&self.key, |_, r| r.same_channel(&self.outcome.subscribe()));
    }
}

/// Whether the session's access token should be refreshed now: it has expired, or it
/// expires within the skew. The skew is at most a quarter of the token's lifetime, so a
/// token that lives a few seconds is not refreshed on every request.
pub(crate) fn needs_refresh(session: &Session, skew: Duration, now: u64) -> bool {
    // Without a refresh token there is nothing to do: the session goes on, and the
    // `AccessToken` extractor refuses the expired token.
    // (A session still sealed has none to see: the layer opens every session it serves.)
    session.refresh_token().is_some() && is_due(session, skew, now)
}

/// Whether the session's access token has expired or expires within the skew (at most a
/// quarter of its lifetime), refresh token or not.
pub(crate) fn is_due(session: &Session, skew: Duration, now: u64) -> bool {
    let Some(expires_at) = session.access_expires_at else {
        return false;
    };
    let lifetime = expires_at.saturating_sub(session.access_obtained_at);
    let skew = skew.as_secs().min(lifetime / 4);
    now.saturating_add(skew) >= expires_at
}

/// Refreshes the session under `key`, sharing one refresh between all requests of the
/// session that need it at the same time.
///
/// The refresh runs in a task of its own: the provider may rotate the refresh token as
/// soon as it gets the request, so a refresh cut short by a request that goes away (the
/// browser closed the connection) would lose the only live refresh token, and the next
/// refresh would send the spent one: `invalid_grant`, the session ends, and a provider
/// with reuse detection revokes the whole grant (RFC 9700 4.14.2). Whatever happens to the
/// request that started it, the task stores the new tokens, and every waiter gets them.
pub(crate) async fn refresh(
    inner: &Arc<Context>,
    key: SessionKey,
    seen: Arc<Session>,
) -> Refreshed {
    let (mut outcome, flight) = match inner.refresh_flights.running.entry(key) {
        Entry::Occupied(running) => (running.get().clone(), None),
        Entry::Vacant(vacant) => {
            let (sender, receiver) = watch::channel(None);
            vacant.insert(receiver.clone());
            let flight = Flight {
                inner: Arc::clone(inner),
                key,
                outcome: sender,
            };
            (receiver, Some(flight))
        }
    };
    if let Some(flight) = flight {
        let fly = flight.fly(Arc::clone(&seen));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(fly)),
            // Polled outside a tokio runtime (another executor), there is no task to hand
            // the refresh to: it runs in this request, single flight still, and a waiter
            // whose leader goes away serves what it has (below).
            Err(_) => fly.await,
        }
    }
    let landed = outcome
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|outcome| outcome.clone());
    landed.unwrap_or_else(|| {
        tracing::error!("the refresh ended without an outcome; the session is kept");
        fallback(seen)
    })
}

async fn run(inner: &Context, key: &SessionKey, seen: Arc<Session>) -> Refreshed {
    // Another instance sharing the store may be refreshing this session right now: take
    // its refresh lock first, or wait for that instance's result.
    let lock = match acquire(inner, key, &seen).await {
        Ok(lock) => lock,
        Err(outcome) => return outcome,
    };
    // A panic in the refresh (a bug in a custom store, say) must not keep the lock for its
    // whole lifetime, making every other instance wait that long for this session: it is
    // released first, then the panic goes on (the flight's guard wakes this instance's
    // waiters).
    let outcome = AssertUnwindSafe(run_locked(inner, key, seen))
        .catch_unwind()
        .await;
    if let Err(e) = inner.store.unlock_refresh(key, lock).await {
        // It expires by itself.
        tracing::warn!(error = %e, "could not release the refresh lock");
    }
    outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Takes the session's refresh lock, or, while another instance holds it, waits for the
/// session it saves. A holder that crashed keeps the lock for its lifetime only; then
/// this instance takes it.
async fn acquire(
    inner: &Context,
    key: &SessionKey,
    seen: &Arc<Session>,
) -> Result<RefreshLock, Refreshed> {
    let ttl = inner.refresh_lock_ttl;
    let give_up = Instant::now() + ttl + Duration::from_secs(2);
    loop {
        match inner.store.lock_refresh(key, ttl).await {
            Ok(Some(lock)) => return Ok(lock),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "session store unavailable for the refresh lock");
                return Err(fallback(Arc::clone(seen)));
            }
        }
        tokio::time::sleep(LOCK_POLL).await;
        // What another instance saved is sealed: opened with the key `seen` was opened with.
        let loaded = inner.store.load(key).await;
        let loaded = loaded.map(|s| s.and_then(|s| open_like(s, seen)));
        match loaded {
            Ok(Some(s)) if !needs_refresh(&s, inner.refresh_skew, now_secs()) => {
                return Err(Refreshed::Session(s));
            }
            Ok(Some(s)) if Instant::now() >= give_up => return Err(fallback(s)),
            Ok(Some(_)) => {}
            Ok(None) => return Err(Refreshed::Ended),
            Err(e) => {
                tracing::error!(error = %e, "session store unavailable during refresh");
                return Err(fallback(Arc::clone(seen)));
            }
        }
    }
}

/// How often an instance waiting for another's refresh looks at the session.
const LOCK_POLL: Duration = Duration::from_millis(50);

async fn run_locked(inner: &Context, key: &SessionKey, seen: Arc<Session>) -> Refreshed {
    // Another flight (or instance) may have refreshed since this request loaded the
    // session: start from the stored one, and stop if it is fresh already. Using a
    // refresh token that was just rotated away would end the session.
    let loaded = inner.store.load(key).await;
    let mut current = match loaded.map(|s| s.and_then(|s| open_like(s, &seen))) {
        Ok(Some(s)) => s,
        Ok(None) => {
            inner.refresh_flights.unsaved.remove(key);
            return Refreshed::Ended;
        }
        Err(e) => {
            tracing::error!(error = %e, "session store unavailable during refresh");
            let unsaved = inner
                .refresh_flights
                .unsaved
                .get(key)
                .map(|s| Arc::clone(&s));
            return fallback(unsaved.unwrap_or(seen));
        }
    };
    // A refresh whose save failed has the newer tokens: save them now.
    let unsaved = inner
        .refresh_flights
        .unsaved
        .get(key)
        .map(|s| Arc::clone(&s));
    if let Some(unsaved) = unsaved {
        if unsaved.access_obtained_at >= current.access_obtained_at {
            current = unsaved;
            match inner.store.update(key, Arc::clone(&current)).await {
                Ok(true) => {
                    inner.refresh_flights.unsaved.remove(key);
                }
                // Logged out meanwhile: it stays logged out.
                Ok(false) => {
                    inner.refresh_flights.unsaved.remove(key);
                    return Refreshed::Ended;
                }
                Err(e) => tracing::warn!(error = %e, "could not store the refreshed session yet"),
            }
        } else {
            inner.refresh_flights.unsaved.remove(key);
        }
    }
    let now = now_secs();
    if !needs_refresh(&current, inner.refresh_skew, now) {
        return Refreshed::Session(current);
    }
    let Some(refresh_token) = current.refresh_token().map(str::to_owned) else {
        return Refreshed::Session(current);
    };

    let response = inner
        .provider
        .oauth
        .exchange_refresh_token(&RefreshToken::new(refresh_token.clone()))
        .request_async(&inner.provider.http)
        .await;
    let token = match response {
        Ok(token) => token,
        Err(RequestTokenError::ServerResponse(err))
            if matches!(
                err.error(),
                BasicErrorResponseType::InvalidGrant
                    | BasicErrorResponseType::InvalidClient
                    | BasicErrorResponseType::UnauthorizedClient
            ) =>
        {
            tracing::info!(error = %err.error().as_ref(), "refresh refused; the session ends");
            return end(inner, key).await;
        }
        Err(e) => {
            let reason = match &e {
                RequestTokenError::Request(BackchannelError::Timeout) => "timeout",
                RequestTokenError::Request(BackchannelError::ServerError(_)) => "server error",
                RequestTokenError::Request(_) => "unreachable",
                _ => "unusable answer",
            };
            tracing::warn!(reason, "refresh failed; the session is kept");
            return fallback(current);
        }
    };
    if !token.token_type().as_ref().eq_ignore_ascii_case("bearer")
        || token.access_token().secret().is_empty()
    {
        tracing::warn!("refresh answered with an unusable token; the session is kept");
        return fallback(current);
    }

    let mut next = (*current).clone();
    let Some(mut tokens) = current.tokens().cloned() else {
        return fallback(current);
    };
    // OIDC Core 12.2: a refreshed ID token must be about the same user, from the same
    // issuer, for the same client, and must not carry a new nonce.
    if let (Some(oidc), Some(raw)) = (
        &inner.provider.oidc,
        token.extra_fields().id_token.as_deref(),
    ) {
        let nonce = current.claims.get::<String>("nonce");
        match oidc
            .verify_id_token(
                &inner.provider.http,
                raw,
                NonceCheck::AbsentOrEqual(nonce.as_deref()),
            )
            .await
        {
            Ok(v)
                if v.subject == current.subject
                    && v.claims.get("iss") == current.claims.get::<Value>("iss").as_ref()
                    && v.claims.get("aud") == current.claims.get::<Value>("aud").as_ref() =>
            {
                tokens.id_token = Some(raw.to_string());
            }
            Ok(_) => {
                tracing::warn!(
                    "refreshed ID token is about another user or client; the session ends"
                );
                return end(inner, key).await;
            }
            // The keys cannot be fetched (the JWKS endpoint is down during a rotation):
            // the token may well be good. The new tokens come from the token endpoint, as
            // in a refresh without an ID token (allowed, OIDC Core 12.2), so they are kept
            // with the verified identity of the login; dropping them would end the session
            // at the next refresh, the refresh token having been rotated.
            Err(crate::error::FlowError::ProviderFailed(
                crate::error::ProviderError::KeysUnavailable,
            )) => {
                tracing::warn!("refreshed ID token not verified: the provider's keys are unavailable; the new tokens are kept");
            }
            Err(e) => {
                tracing::warn!(error = %e, "refreshed ID token refused; the session ends");
                return end(inner, key).await;
            }
        }
    }
    tokens.access_token = token.access_token().secret().clone();
    next.access_obtained_at = now;
    next.access_expires_at = token.expires_in().map(|d| now.saturating_add(d.as_secs()));
    // Rotation: a new refresh token replaces the old one at once, which is never used
    // again. Without one, the old one stays valid (RFC 6749 6).
    if let Some(rotated) = token.refresh_token() {
        tokens.refresh_token = Some(rotated.secret().clone());
    }
    if next.set_tokens(tokens).is_err() {
        // Unreachable: `current` is opened, so it has its seal key.
        return fallback(current);
    }
    if let Some(scopes) = token.scopes() {
        next.scopes = scopes.iter().map(|s| s.to_string()).collect();
    }
    let next = Arc::new(next);
    match inner.store.update(key, Arc::clone(&next)).await {
        Ok(true) => {}
        // Logged out while the refresh ran: it stays logged out.
        Ok(false) => return Refreshed::Ended,
        Err(e) => {
            // Serve with the new tokens and keep them here until a save works: the old
            // refresh token may be spent, and forgetting the new one would end the session.
            tracing::error!(error = %e, "could not store the refreshed session; kept in memory");
            inner
                .refresh_flights
                .unsaved
                .insert(*key, Arc::clone(&next));
            return Refreshed::Session(next);
        }
    }
    tracing::debug!("access token refreshed");
    Refreshed::Session(next)
}

/// A session read from the store, opened with the key that opened `seen` (the same
/// session, read earlier in this request); `None` when it does not open: no session.
fn open_like(loaded: Arc<Session>, seen: &Session) -> Option<Arc<Session>> {
    session::opened(loaded, &seen.seal_key()?)
}

/// After a failure that may pass: serve with the current token while it is still valid.
fn fallback(session: Arc<Session>) -> Refreshed {
    match session.access_expires_at {
        Some(exp) if now_secs() < exp => Refreshed::Session(session),
        _ => Refreshed::Unavailable,
    }
}

async fn end(inner: &Context, key: &SessionKey) -> Refreshed {
    inner.refresh_flights.unsaved.remove(key);
    if let Err(e) = inner.store.delete(key).await {
        tracing::warn!(error = %e, "could not delete the ended session");
    }
    Refreshed::Ended
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StoreError;
    use crate::session::{MemoryStore, SessionMatch, SessionStore};
    use crate::LoginLayer;
    use futures_util::FutureExt;
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    /// Where [`Panicky`] panics, as a bug in a custom store would.
    #[derive(Clone, Copy, PartialEq)]
    enum PanicAt {
        /// Taking the refresh lock.
        Lock,
        /// Reading the session while the refresh holds the lock.
        LoadUnderLock,
    }

    /// A memory store that panics at one point of a refresh, and counts the unlocks.
    struct Panicky {
        inner: MemoryStore,
        at: PanicAt,
        locked: AtomicBool,
        unlocks: Arc<AtomicUsize>,
    }

    impl Panicky {
        fn new(inner: MemoryStore, at: PanicAt) -> Self {
            Panicky {
                inner,
                at,
                locked: AtomicBool::new(false),
                unlocks: Arc::new(AtomicUsize::new(0)),
            }
        }
    }

    #[async_trait::async_trait]
    impl SessionStore for Panicky {
        async fn load(&self, key: &SessionKey) -> Result<Option<Arc<Session>>, StoreError> {
            if self.at == PanicAt::LoadUnderLock && self.locked.load(SeqCst) {
                panic!("the store panicked under the refresh lock");
            }
            self.inner.load(key).await
        }
        async fn save(&self, key: &SessionKey, session: Arc<Session>) -> Result<(), StoreError> {
            self.inner.save(key, session).await
        }
        async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
            self.inner.delete(key).await
        }
        async fn delete_matching(&self, target: &SessionMatch<'_>) -> Result<usize, StoreError> {
            self.inner.delete_matching(target).await
        }
        async fn lock_refresh(
            &self,
            _key: &SessionKey,
            _ttl: Duration,
        ) -> Result<Option<RefreshLock>, StoreError> {
            if self.at == PanicAt::Lock {
                panic!("the store's refresh lock panicked");
            }
            self.locked.store(true, SeqCst);
            Ok(Some(RefreshLock::new("held".into())))
        }
        async fn unlock_refresh(
            &self,
            _key: &SessionKey,
            lock: RefreshLock,
        ) -> Result<(), StoreError> {
            assert_eq!(lock.token(), "held");
            self.locked.store(false, SeqCst);
            self.unlocks.fetch_add(1, SeqCst);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_refresh_that_panics_under_the_lock_releases_it() {
        let store = MemoryStore::new();
        let key = SessionKey::from_bytes([4; 32]);
        store.save(&key, due()).await.unwrap();
        let store = Panicky::new(store, PanicAt::LoadUnderLock);
        let unlocks = Arc::clone(&store.unlocks);
        let layer = layer(store);
        let inner = layer.shared();
        let outcome = tokio::time::timeout(Duration::from_secs(30), refresh(inner, key, due()))
            .await
            .expect("the waiter of a panicked refresh was woken");
        assert!(matches!(outcome, Refreshed::Unavailable));
        // Other instances need not wait out the lock's lifetime.
        assert_eq!(unlocks.load(SeqCst), 1);
        assert_eq!(inner.refresh_flights.running(), 0);
    }

    fn layer(store: impl SessionStore) -> LoginLayer {
        // Endpoints on a closed port: no test here reaches the provider.
        LoginLayer::builder()
            .with_client_id("c")
            .with_authorization_endpoint("http://127.0.0.1:9/authorize")
            .with_token_endpoint("http://127.0.0.1:9/token")
            .with_userinfo_endpoint("http://127.0.0.1:9/userinfo")
            .with_redirect_url("http://127.0.0.1:8080/auth/callback")
            .with_cookie_key([3u8; 64])
            .with_store(store)
            .build()
            .unwrap()
    }

    /// A session whose access token expired a minute ago, with a refresh token.
    fn due() -> Arc<Session> {
        let now = now_secs();
        let mut s = Session::for_tests("s", now + 3600, now + 3600);
        s.access_obtained_at = now - 120;
        s.access_expires_at = Some(now - 60);
        s.set_tokens(crate::session::Tokens {
            access_token: "at".into(),
            refresh_token: Some("r".into()),
            id_token: None,
        })
        .unwrap();
        Arc::new(s)
    }

    #[tokio::test]
    async fn a_refresh_that_panics_leaves_no_waiter_hanging_and_no_flight_behind() {
        let store = MemoryStore::new();
        let key = SessionKey::from_bytes([1; 32]);
        store.save(&key, due()).await.unwrap();
        let layer = layer(Panicky::new(store, PanicAt::Lock));
        let inner = layer.shared();
        // Two requests of the session at once, then a later one: each gets an answer
        // (the token has expired: "unavailable", the session kept), none waits forever.
        let both =
            futures_util::future::join(refresh(inner, key, due()), refresh(inner, key, due()));
        let (a, b) = tokio::time::timeout(Duration::from_secs(30), both)
            .await
            .expect("the waiters of a panicked refresh were woken");
        assert!(matches!(a, Refreshed::Unavailable));
        assert!(matches!(b, Refreshed::Unavailable));
        assert_eq!(inner.refresh_flights.running(), 0, "no flight left behind");
        let later = tokio::time::timeout(Duration::from_secs(30), refresh(inner, key, due()))
            .await
            .expect("a later refresh is not stuck behind the panicked one");
        assert!(matches!(later, Refreshed::Unavailable));
        assert_eq!(inner.refresh_flights.running(), 0);
    }

    #[test]
    fn without_a_runtime_the_refresh_runs_in_the_request() {
        // Another instance refreshed meanwhile: the stored session is fresh.
        let store = MemoryStore::new();
        let key = SessionKey::from_bytes([2; 32]);
        let now = now_secs();
        let mut fresh = (*due()).clone();
        fresh.access_obtained_at = now;
        fresh.access_expires_at = Some(now + 3600);
        let fresh = Arc::new(fresh);
        store
            .save(&key, Arc::clone(&fresh))
            .now_or_never()
            .unwrap()
            .unwrap();
        let layer = layer(store);
        let inner = layer.shared();
        assert!(tokio::runtime::Handle::try_current().is_err());
        let outcome = refresh(inner, key, due())
            .now_or_never()
            .expect("done in the request, nothing to wait for");
        assert!(matches!(outcome, Refreshed::Session(s) if Arc::ptr_eq(&s, &fresh)));
        assert_eq!(inner.refresh_flights.running(), 0);
    }

    fn session(obtained: u64, expires: Option<u64>, refresh: bool) -> Session {
        Session {
            subject: "s".into(),
            claims: Default::default(),
            scopes: vec![],
            access_expires_at: expires,
            access_obtained_at: obtained,
            secrets: session::Secrets::new(
                session::Tokens {
                    access_token: "a".into(),
                    refresh_token: refresh.then(|| "r".into()),
                    id_token: None,
                },
                session::SealKey::for_cookie_value("t"),
            ),
            sid: None,
            created_at: obtained,
            expires_at: u64::MAX,
            absolute_expires_at: u64::MAX,
        }
    }

    #[test]
    fn refreshes_within_the_skew_bounded_by_a_quarter_of_the_lifetime() {
        let skew = Duration::from_secs(60);
        // A one-hour token: refreshed in its last minute.
        let s = session(1000, Some(4600), true);
        assert!(!needs_refresh(&s, skew, 4539));
        assert!(needs_refresh(&s, skew, 4540));
        assert!(needs_refresh(&s, skew, 5000));
        // A 5-second token: the skew shrinks to 1 s, so it is not refreshed at once.
        let s = session(1000, Some(1005), true);
        assert!(!needs_refresh(&s, skew, 1000));
        assert!(!needs_refresh(&s, skew, 1003));
        assert!(needs_refresh(&s, skew, 1004));
        // No expiry known: never.
        assert!(!needs_refresh(&session(1000, None, true), skew, 99_999));
        // Without a refresh token, never.
        assert!(!needs_refresh(
            &session(1000, Some(4600), false),
            skew,
            9999
        ));
    }
}
