//! Signing out, started by the person: locally (the server-side session is deleted, the
//! cookie cleared), at the provider (RFC 7009 revocation of the refresh token, OpenID
//! Connect RP-initiated logout through the end-session endpoint), and the return from the
//! provider's end-session page. A logout started by the provider is `backchannel_logout`.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use subtle::ConstantTimeEq;

use crate::context::Context;
use crate::error::FlowError;
use crate::http::classify::{is_cross_site, wants_json};
use crate::http::{cookie, page};
use crate::provider::revoke::revoke;
use crate::session::{self, Session, SessionId};

/// Answers `POST <logout path>`.
#[tracing::instrument(name = "oauth2_login.logout", skip_all)]
pub(crate) async fn handle(inner: &Arc<Context>, headers: &HeaderMap) -> Response<Bytes> {
    let wants_json = wants_json(headers);
    // Another site must not be able to sign users out (logout CSRF).
    if is_cross_site(&inner.app_origin, headers) {
        tracing::info!("cross-site logout refused");
        return FlowError::CrossSite.response(wants_json, None);
    }
    let mut failed = false;
    let mut ended: Option<Arc<Session>> = None;
    // The first session cookies only: however many the request carries, the store does a
    // bounded amount of work for it.
    for value in cookie::session_values(headers, &inner.cookies) {
        let Some(id) = SessionId::parse(value) else {
            continue;
        };
        let (key, seal) = id.keys();
        inner.refresh_flights.forget(&key);
        match inner.store.load(&key).await {
            // Its tokens (to revoke, for the ID token hint) only if it opens with this
            // cookie; it is deleted either way.
            Ok(session) => ended = ended.or(session.and_then(|s| session::opened(s, &seal))),
            Err(e) => {
                tracing::error!(error = %e, "could not read the session at logout");
                failed = true;
            }
        }
        if let Err(e) = inner.store.delete(&key).await {
            tracing::error!(error = %e, "could not delete the session at logout");
            failed = true;
        }
    }
    if let Some(session) = &ended {
        revoke_in_background(inner, session);
    }

    let mut res = if failed {
        // The browser forgets the cookie either way, but the person must know the
        // server-side session may still be alive.
        FlowError::Store.response(wants_json, None)
    } else if let Some(end_session) = inner
        .provider
        .oidc
        .as_ref()
        .and_then(|o| o.end_session_endpoint.as_ref())
    {
        tracing::info!("logged out; continuing at the provider's end-session endpoint");
        rp_initiated_logout(inner, end_session, ended.as_deref())
    } else {
        tracing::info!("logged out");
        page::see_other(&inner.post_logout_redirect)
    };
    res.headers_mut()
        .append(header::SET_COOKIE, inner.cookies.clear_session_cookie());
    res
}

/// Answers `GET <logout path>`: a page whose button sends the `POST` that signs out, so
/// that a plain "Sign out" link works and a link alone (a prefetch, an `<img>` on another
/// site) never signs anyone out.
pub(crate) fn confirmation(inner: &Context) -> Response<Bytes> {
    page::sign_out_confirmation(&inner.logout_path, "/")
}

/// The redirect to the end-session endpoint (OpenID Connect RP-Initiated Logout 1.0),
/// with a `state` kept in a short-lived cookie for the way back.
fn rp_initiated_logout(
    inner: &Context,
    end_session: &url::Url,
    session: Option<&Session>,
) -> Response<Bytes> {
    let state = oauth2::CsrfToken::new_random_len(32);
    let mut url = end_session.clone();
    {
        let mut q = url.query_pairs_mut();
        match session.and_then(Session::id_token) {
            Some(id_token) if inner.provider.id_token_hint => {
                q.append_pair("id_token_hint", id_token);
            }
            _ => {
                q.append_pair("client_id", inner.provider.oauth.client_id().as_str());
            }
        }
        q.append_pair("post_logout_redirect_uri", &inner.post_logout_redirect_uri);
        q.append_pair("state", state.secret());
    }
    let mut res = page::see_other(url.as_str());
    res.headers_mut().append(
        header::SET_COOKIE,
        inner.cookies.logout_state_cookie(state.secret()),
    );
    res
}

/// Answers `GET <logout callback path>`, where the provider sends the browser back after
/// RP-initiated logout: with a `state`, it must be the one this browser left with.
pub(crate) fn finish(inner: &Context, headers: &HeaderMap, query: &str) -> Response<Bytes> {
    let state = url::form_urlencoded::parse(query.as_bytes())
        .find(|(n, _)| n == "state")
        .map(|(_, v)| v.into_owned());
    let expected = cookie::find(headers, &inner.cookies.logout_state_name).next();
    let ok = match (&state, expected) {
        (Some(state), Some(expected)) => state.as_bytes().ct_eq(expected.as_bytes()).into(),
        (Some(_), None) => false,
        // Providers need not echo the state; the local session is gone either way.
        (None, _) => true,
    };
    let mut res = if ok {
        page::see_other(&inner.post_logout_redirect)
    } else {
        tracing::info!("logout callback with an unknown state");
        page::html(
            StatusCode::BAD_REQUEST,
            "Sign-out response not recognised",
            "This sign-out response does not belong to a sign-out started in this browser. \
             You are signed out of this application.",
            Some(&inner.post_logout_redirect),
        )
    };
    res.headers_mut().append(
        header::SET_COOKIE,
        inner.cookies.clear_logout_state_cookie(),
    );
    res.headers_mut()
        .insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    res
}

/// Revokes the session's refresh token (or, without one, its access token) at the
/// provider (RFC 7009), without making the person wait: local logout is already done, and
/// a provider that is down must not hold it up.
fn revoke_in_background(inner: &Arc<Context>, session: &Session) {
    let Some(url) = inner.provider.revocation_url.clone() else {
        return;
    };
    let (token, hint) = match (session.refresh_token(), session.access_token()) {
        (Some(t), _) => (t.to_owned(), "refresh_token"),
        (None, Some(t)) => (t.to_owned(), "access_token"),
        (None, None) => return,
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let inner = Arc::clone(inner);
    runtime.spawn(async move {
        match revoke(&inner.provider, &url, &token, hint).await {
            Ok(()) => tracing::debug!("token revoked at the provider"),
            Err(e) => tracing::warn!(error = %e, "could not revoke the token at the provider"),
        }
    });
}
