//! The session of a request: on the hot path synchronously ([`lookup_now`]: one cookie
//! scan, one hash, one map read), otherwise awaited from the store, opened, its idle
//! deadline pushed back and its access token refreshed when due ([`lookup`]).

use std::sync::Arc;

use http::HeaderMap;

use crate::context::Context;
use crate::flow::refresh;
use crate::http::cookie;
use crate::session::flights::Refreshed;
use crate::session::{self, now_secs, SealKey, Session, SessionId, SessionKey};

pub(crate) enum Lookup {
    Found(Arc<Session>),
    None {
        stale: bool,
    },
    StoreDown,
    /// The access token expired and the provider could not refresh it just now.
    ProviderDown,
}

/// The hot path when the store answers at once (the memory store): one cookie scan, one
/// hash, one map read, nothing allocated, nothing awaited. `None` sends the request the
/// long way ([`lookup`]): no session cookie, an unknown or expired session, a store that
/// must be awaited, a session read from a store and not opened yet, an idle deadline to
/// push back or an access token to refresh.
pub(crate) fn lookup_now(inner: &Context, headers: &HeaderMap) -> Option<Arc<Session>> {
    let value = cookie::find(headers, &inner.cookies.session_name).next()?;
    let key = SessionId::key_of(value)?;
    let session = inner.store.load_now(&key)??;
    let now = now_secs();
    // No crypto here: a session whose tokens are still sealed takes the long way once,
    // which opens it in place (the store's cache then holds it opened).
    let fresh = session.is_open()
        && !session.is_expired(now)
        && idle_deadline_due(inner, &session, now).is_none()
        && !refresh::needs_refresh(&session, inner.refresh_skew, now);
    fresh.then_some(session)
}

/// The session of a request, whatever it takes: one cookie scan, one hash, one store read,
/// opening its tokens when the store gave them sealed, and when due a write of the idle
/// deadline or a token refresh.
pub(crate) async fn lookup(inner: &Arc<Context>, headers: &HeaderMap) -> Lookup {
    let Some(value) = cookie::find(headers, &inner.cookies.session_name).next() else {
        return Lookup::None { stale: false };
    };
    let Some(key) = SessionId::key_of(value) else {
        return Lookup::None { stale: true };
    };
    match inner.store.load(&key).await {
        Ok(Some(session)) => {
            let now = now_secs();
            if session.is_expired(now) {
                if let Err(e) = inner.store.delete(&key).await {
                    tracing::warn!(error = %e, "could not delete an expired session");
                }
                return Lookup::None { stale: true };
            }
            // Derived only once a session is found, so that a made-up cookie costs no
            // HKDF.
            let seal = SealKey::for_cookie_value(value);
            let Some(session) = session::opened(session, &seal) else {
                return Lookup::None { stale: true };
            };
            let Some(session) = slide_idle_deadline(inner, &key, session, now).await else {
                return Lookup::None { stale: true };
            };
            if !refresh::needs_refresh(&session, inner.refresh_skew, now) {
                return Lookup::Found(session);
            }
            match Box::pin(refresh::refresh(inner, key, session)).await {
                Refreshed::Session(session) => Lookup::Found(session),
                Refreshed::Ended => Lookup::None { stale: true },
                Refreshed::Unavailable => Lookup::ProviderDown,
            }
        }
        Ok(None) => Lookup::None { stale: true },
        Err(e) => {
            tracing::error!(error = %e, "session store unavailable");
            Lookup::StoreDown
        }
    }
}

/// How much of the idle timeout may pass before the deadline is pushed back: bounded
/// writes (at most one a minute per session) rather than one per request.
const TOUCH_INTERVAL_SECS: u64 = 60;

/// The new idle deadline of `session`, when it is due to be pushed back.
fn idle_deadline_due(inner: &Context, session: &Session, now: u64) -> Option<u64> {
    let wanted = now
        .saturating_add(inner.idle_timeout.as_secs())
        .min(session.absolute_expires_at);
    (wanted.saturating_sub(session.expires_at) >= TOUCH_INTERVAL_SECS).then_some(wanted)
}

async fn slide_idle_deadline(
    inner: &Context,
    key: &SessionKey,
    session: Arc<Session>,
    now: u64,
) -> Option<Arc<Session>> {
    let Some(wanted) = idle_deadline_due(inner, &session, now) else {
        return Some(session);
    };
    let mut touched = (*session).clone();
    touched.expires_at = wanted;
    let touched = Arc::new(touched);
    match inner.store.update(key, Arc::clone(&touched)).await {
        Ok(true) => Some(touched),
        // Deleted since it was loaded (a logout elsewhere): it stays deleted.
        Ok(false) => None,
        Err(e) => {
            // The session stays valid until its old deadline; the next request tries
            // again.
            tracing::warn!(error = %e, "could not extend the session's idle deadline");
            Some(session)
        }
    }
}
