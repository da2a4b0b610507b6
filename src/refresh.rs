//! Keeping the access token fresh: a refresh with the refresh token when it is expired or
//! about to be, one flight per session however many requests arrive together.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use oauth2::basic::BasicErrorResponseType;
use oauth2::{RefreshToken, RequestTokenError, TokenResponse};
use serde_json::Value;

use crate::backchannel::BackchannelError;
use crate::config::Inner;
use crate::oidc::NonceCheck;
use crate::session::{self, now_secs, RefreshLock, Session, SessionKey};

/// What became of a session whose access token needed a refresh.
pub(crate) enum Refreshed {
    /// The session to serve the request with (refreshed, or still good enough).
    Session(Arc<Session>),
    /// The provider refused the refresh token (revoked, expired) or its answer failed the
    /// checks: the session has ended.
    Ended,
    /// The provider could not be asked (timeout, 5xx, store failure) and the token has
    /// expired: the request cannot be served now, but the session lives on.
    Unavailable,
}

/// Refreshes in flight, by session: the first request of a session runs the refresh, the
/// others wait for its outcome.
#[derive(Default)]
pub(crate) struct Flights {
    running: DashMap<SessionKey, Arc<tokio::sync::OnceCell<Refreshed>>>,
    /// Refreshed sessions the store could not save. The provider may have rotated the
    /// refresh token away, so these hold the only live tokens: later requests use them and
    /// try the save again, rather than refresh with the stored, spent refresh token.
    unsaved: DashMap<SessionKey, Arc<Session>>,
}

impl Flights {
    /// Forgets what is kept of the session `key` (it has ended).
    pub(crate) fn forget(&self, key: &SessionKey) {
        self.unsaved.remove(key);
    }
}

impl Clone for Refreshed {
    fn clone(&self) -> Self {
        match self {
            Refreshed::Session(s) => Refreshed::Session(Arc::clone(s)),
            Refreshed::Ended => Refreshed::Ended,
            Refreshed::Unavailable => Refreshed::Unavailable,
        }
    }
}

/// Whether the session's access token should be refreshed now: it has expired, or it
/// expires within the skew. The skew is at most a quarter of the token's lifetime, so a
/// token that lives a few seconds is not refreshed on every request.
pub(crate) fn needs_refresh(session: &Session, skew: Duration, now: u64) -> bool {
    // Without a refresh token there is nothing to do: the session goes on, and the
    // `AccessToken` extractor refuses the expired token.
    // (A session still sealed has none to see: the layer opens every session it serves.)
    let (Some(expires_at), Some(_)) = (session.access_expires_at, session.refresh_token()) else {
        return false;
    };
    let lifetime = expires_at.saturating_sub(session.access_obtained_at);
    let skew = skew.as_secs().min(lifetime / 4);
    now.saturating_add(skew) >= expires_at
}

/// Refreshes the session under `key`, sharing one refresh between all requests of the
/// session that need it at the same time.
pub(crate) async fn refresh(inner: &Inner, key: &SessionKey, seen: Arc<Session>) -> Refreshed {
    let cell = Arc::clone(
        inner
            .refresh_flights
            .running
            .entry(*key)
            .or_default()
            .value(),
    );
    let outcome = cell
        .get_or_init(|| async {
            let outcome = run(inner, key, seen).await;
            // Later requests load the saved session; the flight is done.
            inner.refresh_flights.running.remove(key);
            outcome
        })
        .await
        .clone();
    outcome
}

async fn run(inner: &Inner, key: &SessionKey, seen: Arc<Session>) -> Refreshed {
    // Another instance sharing the store may be refreshing this session right now: take
    // its refresh lock first, or wait for that instance's result.
    let lock = match acquire(inner, key, &seen).await {
        Ok(lock) => lock,
        Err(outcome) => return outcome,
    };
    let outcome = run_locked(inner, key, seen).await;
    if let Err(e) = inner.store.unlock_refresh(key, lock).await {
        // It expires by itself.
        tracing::warn!(error = %e, "could not release the refresh lock");
    }
    outcome
}

/// Takes the session's refresh lock, or, while another instance holds it, waits for the
/// session it saves. A holder that crashed keeps the lock for its lifetime only; then
/// this instance takes it.
async fn acquire(
    inner: &Inner,
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

async fn run_locked(inner: &Inner, key: &SessionKey, seen: Arc<Session>) -> Refreshed {
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
        .oauth
        .exchange_refresh_token(&RefreshToken::new(refresh_token.clone()))
        .request_async(&inner.backchannel)
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
    if let (Some(oidc), Some(raw)) = (&inner.oidc, token.extra_fields().id_token.as_deref()) {
        let nonce = current.claims.get::<String>("nonce");
        match oidc
            .verify_id_token(
                &inner.backchannel,
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
            Err(crate::error::FlowError::Provider5xx(crate::oidc::KEYS_UNAVAILABLE)) => {
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

async fn end(inner: &Inner, key: &SessionKey) -> Refreshed {
    inner.refresh_flights.unsaved.remove(key);
    if let Err(e) = inner.store.delete(key).await {
        tracing::warn!(error = %e, "could not delete the ended session");
    }
    Refreshed::Ended
}

#[cfg(test)]
mod tests {
    use super::*;

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
