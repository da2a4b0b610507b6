//! The callback, in three parts: [`check`] (the provider's answer against the pending
//! login: state, issuer, errors, code), [`exchange`] (the code redeemed over the back
//! channel: the only part that depends on the token endpoint) and [`finish`] (the token
//! response checked, the user identified, a new session created). [`answer`] runs them
//! and clears the pending cookies whatever happens.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response};
use oauth2::{AuthorizationCode, PkceCodeVerifier, TokenResponse as _};

use crate::context::Context;
use crate::error::{CallbackError, FlowError, IdTokenError, IdentityError};
use crate::flow::pending::{open_pending_value, sweep_pending, PendingLogin};
use crate::flow::return_to::login_href;
use crate::http::classify::wants_json;
use crate::http::cookie::CallbackCookies;
use crate::http::page;
use crate::provider::oidc::{NonceCheck, Oidc};
use crate::provider::token::{sanitize_error_code, token_error, usable_access_token};
use crate::provider::{userinfo, TokenResponse};
use crate::session::{now_secs, Claims, Secrets, Session, SessionId, Tokens};

/// The callback's query parameters (RFC 6749 4.1.2 and 4.1.2.1, RFC 9207).
#[derive(Default, Debug)]
pub(crate) struct CallbackParams {
    pub(crate) code: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) error_description: Option<String>,
    pub(crate) iss: Option<String>,
}

impl CallbackParams {
    /// Parses the query. A parameter that appears twice makes the whole response invalid
    /// (RFC 6749 section 3.1), so a second `state` or `code` cannot be smuggled in.
    pub(crate) fn parse(query: &str) -> Result<Self, FlowError> {
        let mut p = CallbackParams::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match &*name {
                "code" => &mut p.code,
                "state" => &mut p.state,
                "error" => &mut p.error,
                "error_description" => &mut p.error_description,
                "iss" => &mut p.iss,
                _ => continue,
            };
            if slot.is_some() {
                return Err(FlowError::BadCallback(CallbackError::RepeatedParameter));
            }
            if value.len() > 4096 {
                return Err(FlowError::BadCallback(CallbackError::ParameterTooLong));
            }
            *slot = Some(value.into_owned());
        }
        Ok(p)
    }

    /// The first `max` `state` values of a query, of one that [`parse`](Self::parse)
    /// refuses too, so that their pending cookies can be cleared.
    pub(crate) fn states(query: &str, max: usize) -> Vec<String> {
        url::form_urlencoded::parse(query.as_bytes())
            .filter(|(name, _)| name == "state")
            .take(max)
            .map(|(_, value)| value.into_owned())
            .collect()
    }
}

/// How many `state` values of a malformed callback (a repeated `state`) have their pending
/// cookie cleared: a provider sends one, and whatever else an attacker adds costs no more.
const MAX_STATES: usize = 2;

/// Answers a request to the callback path.
pub(crate) async fn handle(inner: &Context, headers: &HeaderMap, query: &str) -> Response<Bytes> {
    answer(inner, headers, query, |code, verifier| {
        exchange(inner, code, verifier)
    })
    .await
}

/// [`handle`], with the token endpoint's answer from `redeem(code, PKCE verifier)`: the
/// code exchange is the callback's only dependency on the network before the token
/// response, so the benches and fuzz targets give the answer here and measure or explore
/// everything else as it runs for real.
pub(crate) async fn answer<R, F>(
    inner: &Context,
    headers: &HeaderMap,
    query: &str,
    redeem: R,
) -> Response<Bytes>
where
    R: FnOnce(String, String) -> F,
    F: Future<Output = Result<TokenResponse, FlowError>>,
{
    let wants_json = wants_json(headers);
    let parsed = CallbackParams::parse(query);
    // The pending cookies this answer is for: the state's, or, when the query is refused,
    // those of its first few states, which are cleared all the same (single use).
    let states: Vec<String> = match &parsed {
        Ok(params) => params.state.iter().cloned().collect(),
        Err(_) => CallbackParams::states(query, MAX_STATES),
    };
    let mut answered: Vec<String> = Vec::with_capacity(states.len());
    for state in &states {
        let name = inner.cookies.pending_name(state);
        if !answered.contains(&name) {
            answered.push(name);
        }
    }
    let cookies = CallbackCookies::read(headers, &inner.cookies, &answered);

    let outcome = match parsed {
        Ok(params) => {
            // The state must match a pending login started in this browser.
            let sealed = cookies.answered.first().copied().flatten();
            let pending = match (params.state.as_deref(), answered.first(), sealed) {
                (Some(state), Some(name), Some(sealed)) => {
                    open_pending_value(inner, name, sealed, state)
                }
                _ => None,
            };
            complete(inner, &params, pending, &cookies.sessions, redeem).await
        }
        Err(e) => Err((e, None)),
    };

    let mut res = match outcome {
        Ok(res) => res,
        // A callback that belongs to no login in progress, from a browser that is signed
        // in: the callback URL reloaded, or a spent login form sent again from the
        // history. Nothing was redeemed; the person goes home rather than to an error.
        Err((FlowError::UnknownState, _))
            if signed_in(inner, cookies.sessions.first().copied()).await =>
        {
            tracing::info!("stale callback from a signed-in browser");
            page::see_other("/")
        }
        Err((error, return_to)) => {
            tracing::info!(error = %error, "login failed at the callback");
            let retry = login_href(inner, return_to.as_deref().unwrap_or("/"));
            error.response(wants_json, Some(&retry))
        }
    };
    // Single use: whatever happened, this attempt's pending cookie is gone; so are other
    // attempts' cookies, as the index names them, that are unreadable, expired, or past
    // the cap. The index of pending logins (read at the start of each login) forgets them.
    let (stale, index) = sweep_pending(inner, &cookies, &answered);
    for name in answered.iter().chain(&stale) {
        res.headers_mut()
            .append(header::SET_COOKIE, inner.cookies.clear_pending_cookie(name));
    }
    if let Some(index) = index {
        res.headers_mut()
            .append(header::SET_COOKIE, index.set_cookie(&inner.cookies));
    }
    // The code must not leak through the Referer of whatever the next page loads, nor
    // be kept by a cache.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut()
        .insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    res
}

type Failure = (FlowError, Option<String>);

/// The callback once its query is parsed: `pending` is the login of this browser that the
/// state names (opened and checked), `sessions` the session cookies it brought.
async fn complete<R, F>(
    inner: &Context,
    params: &CallbackParams,
    pending: Option<PendingLogin>,
    sessions: &[&str],
    redeem: R,
) -> Result<Response<Bytes>, Failure>
where
    R: FnOnce(String, String) -> F,
    F: Future<Output = Result<TokenResponse, FlowError>>,
{
    let (pending, code) = check(inner, params, pending)?;
    let return_to = Some(pending.return_to.clone());
    // The token's lifetime counts from the request: the provider's clock started then, and
    // a slow answer (or a slow userinfo call after it) must not make it look younger.
    let requested_at = now_secs();
    let token = redeem(code, pending.verifier.clone())
        .await
        .map_err(|e| (e, return_to))?;
    finish(inner, token, requested_at, &pending, sessions).await
}

/// What the provider's answer says before any request is made with it: a pending login of
/// this browser, no error, the expected issuer, a code. Returns the pending login and the
/// code.
pub(crate) fn check(
    inner: &Context,
    params: &CallbackParams,
    pending: Option<PendingLogin>,
) -> Result<(PendingLogin, String), Failure> {
    // 1. No login of this browser waits for this answer: whatever it says, a provider
    // error included, it gets a page of the layer's own words. Its `error` and
    // `error_description` are anyone's text, written into a link to the app's origin.
    let Some(pending) = pending else {
        return Err((
            if params.state.is_none() {
                FlowError::BadCallback(CallbackError::MissingState)
            } else {
                FlowError::UnknownState
            },
            None,
        ));
    };
    let return_to = Some(pending.return_to.clone());

    // 2. A provider error for this browser's login ends here, with a page and a way to
    // try again (no loop: the page waits for the person to click).
    if let Some(code) = &params.error {
        let code = sanitize_error_code(code);
        let description = params
            .error_description
            .as_deref()
            .map(|d| d.chars().take(300).collect());
        return Err((FlowError::Provider { code, description }, return_to));
    }

    // 3. RFC 9207: a callback that names another issuer is a mix-up attack; checked
    // before the code is sent anywhere.
    if let Some(expected) = &inner.provider.issuer {
        match &params.iss {
            Some(iss) if iss == expected => {}
            Some(_) => return Err((FlowError::IssuerMismatch, return_to)),
            None if inner.provider.require_iss => {
                return Err((FlowError::IssuerMismatch, return_to))
            }
            None => {}
        }
    }

    let Some(code) = params.code.as_deref().filter(|c| !c.is_empty()) else {
        return Err((
            FlowError::BadCallback(CallbackError::MissingCode),
            return_to,
        ));
    };
    Ok((pending, code.to_string()))
}

/// Redeems the code at the token endpoint over the back channel, with the PKCE verifier
/// and the client's authentication.
pub(crate) async fn exchange(
    inner: &Context,
    code: String,
    verifier: String,
) -> Result<TokenResponse, FlowError> {
    inner
        .provider
        .oauth
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier))
        .request_async(&inner.provider.http)
        .await
        .map_err(token_error)
}

/// The callback once the token endpoint answered (`requested_at`: when it was asked):
/// the token response is checked, the user identified (the verified ID token, userinfo),
/// and a new session stored under a fresh id; the answer is the `303` back with its cookie.
pub(crate) async fn finish(
    inner: &Context,
    token: TokenResponse,
    requested_at: u64,
    pending: &PendingLogin,
    sessions: &[&str],
) -> Result<Response<Bytes>, Failure> {
    let return_to = Some(pending.return_to.clone());
    let access_token = usable_access_token(&token)
        .map_err(|e| (e, return_to.clone()))?
        .to_string();
    let access_expires_at = token
        .expires_in()
        .map(|d| requested_at.saturating_add(d.as_secs()));
    let bearer = userinfo::Bearer {
        token: &access_token,
        expires_at: access_expires_at,
    };

    // 5. Who the user is: the verified ID token (OpenID Connect), with userinfo claims
    // added; or the userinfo endpoint alone (plain OAuth 2.0).
    let id_token = token.extra_fields().id_token.clone();
    let identity = match &inner.provider.oidc {
        Some(oidc) => identify_oidc(inner, oidc, id_token.as_deref(), pending, bearer)
            .await
            .map_err(|e| (e, return_to.clone()))?,
        None => userinfo::fetch(&inner.provider, bearer)
            .await
            .map_err(|e| (e, return_to.clone()))?,
    };

    // 6. A new session under a fresh id (never one the browser brought: no fixation).
    let now = now_secs();
    let absolute = now.saturating_add(inner.absolute_lifetime.as_secs());
    let id = SessionId::generate();
    let (key, seal) = id.keys();
    let session = Session {
        subject: identity.subject,
        claims: Claims::from_map(&identity.claims),
        scopes: token
            .scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect())
            .unwrap_or_else(|| inner.provider.scopes.clone()),
        access_expires_at,
        access_obtained_at: requested_at,
        // Sealed under the key of the new id when a store first writes the session.
        secrets: Secrets::new(
            Tokens {
                access_token,
                refresh_token: token.refresh_token().map(|t| t.secret().clone()),
                id_token: inner.provider.oidc.as_ref().and(id_token),
            },
            seal,
        ),
        sid: identity.sid,
        created_at: now,
        expires_at: now
            .saturating_add(inner.idle_timeout.as_secs())
            .min(absolute),
        absolute_expires_at: absolute,
    };
    if let Err(e) = inner.store.save(&key, Arc::new(session)).await {
        tracing::error!(error = %e, "could not store the new session");
        return Err((FlowError::Store, return_to));
    }
    // The session the browser had before, if any, ends with this login (the first
    // session cookies only: their number must not multiply store work).
    for old in sessions {
        if let Some(old) = SessionId::parse(old) {
            if let Err(e) = inner.store.delete(&old.key()).await {
                tracing::warn!(error = %e, "could not delete the previous session");
            }
        }
    }
    tracing::info!("login completed");

    let mut res = page::see_other(&pending.return_to);
    res.headers_mut().append(
        header::SET_COOKIE,
        inner.cookies.session_cookie(id.as_str()),
    );
    Ok(res)
}

/// Whether the request's (first) session cookie is that of a live session.
async fn signed_in(inner: &Context, session_cookie: Option<&str>) -> bool {
    let Some(id) = session_cookie.and_then(SessionId::parse) else {
        return false;
    };
    // Live, and this browser's: a record that does not open with its cookie is no session.
    matches!(inner.store.load(&id.key()).await,
        Ok(Some(s)) if !s.is_expired(now_secs()) && s.open(&id.seal_key()).is_ok())
}

/// Claims of the ID token that userinfo must not overwrite: they are the verified facts.
const PROTECTED_CLAIMS: [&str; 11] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "nonce",
    "azp",
    "auth_time",
    "sid",
    "at_hash",
];

/// OpenID Connect: verifies the ID token (before anything else is used), then adds the
/// userinfo claims when there is a userinfo endpoint, whose `sub` must be the ID token's
/// (OIDC Core 5.3.2: otherwise the answer may be about someone else).
async fn identify_oidc(
    inner: &Context,
    oidc: &Oidc,
    id_token: Option<&str>,
    pending: &PendingLogin,
    access_token: userinfo::Bearer<'_>,
) -> Result<userinfo::Identity, FlowError> {
    let raw = id_token.ok_or(FlowError::IdToken(IdTokenError::Missing))?;
    let nonce = pending
        .nonce
        .as_deref()
        .ok_or(FlowError::IdToken(IdTokenError::LoginWithoutNonce))?;
    let verified = oidc
        .verify_id_token(&inner.provider.http, raw, NonceCheck::Equal(nonce))
        .await?;
    let mut claims = verified.claims;
    if inner.provider.userinfo_url.is_some() {
        let info = userinfo::fetch(&inner.provider, access_token).await?;
        if info.claims.get("sub").and_then(serde_json::Value::as_str) != Some(&verified.subject) {
            tracing::warn!("userinfo refused: its sub is not the ID token's");
            return Err(FlowError::Identity(IdentityError::AnotherUser));
        }
        for (name, value) in info.claims {
            if !PROTECTED_CLAIMS.contains(&name.as_str()) {
                claims.insert(name, value);
            }
        }
    }
    Ok(userinfo::Identity {
        subject: verified.subject,
        claims,
        sid: verified.sid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::cookie::MAX_PENDING_LOGINS;

    #[test]
    fn parses_callback_params() {
        let p =
            CallbackParams::parse("code=abc&state=xyz&iss=https%3A%2F%2Fi.example&x=1").unwrap();
        assert_eq!(p.code.as_deref(), Some("abc"));
        assert_eq!(p.state.as_deref(), Some("xyz"));
        assert_eq!(p.iss.as_deref(), Some("https://i.example"));
        assert!(p.error.is_none());
        let e =
            CallbackParams::parse("error=access_denied&error_description=No+way&state=s").unwrap();
        assert_eq!(e.error.as_deref(), Some("access_denied"));
        assert_eq!(e.error_description.as_deref(), Some("No way"));
    }

    #[test]
    fn repeated_parameters_are_refused() {
        for q in [
            "state=a&state=b",
            "code=a&code=b",
            "iss=a&iss=a",
            "error=a&error=b",
        ] {
            assert!(CallbackParams::parse(q).is_err(), "{q}");
        }
    }

    #[test]
    fn states_of_a_refused_query_are_read_a_few_at_most() {
        let q = format!("state=a&code=x&code=y{}", "&state=b".repeat(1000));
        assert!(CallbackParams::parse(&q).is_err());
        assert_eq!(CallbackParams::states(&q, 2), vec!["a", "b"]);
        assert!(CallbackParams::states("code=x", 2).is_empty());
    }

    /// The work of a callback does not grow with the pending cookies it
    /// carries. 16,000 made-up ones and an index that names 2,000 of them: the cookies
    /// opened are those the index may name (capped), and the answer clears no more.
    #[test]
    fn a_callback_opens_and_clears_a_bounded_number_of_pending_cookies() {
        use futures_util::FutureExt;
        let inner = crate::fuzzing::layer().shared();
        let now = now_secs();
        let index: Vec<String> = (0..2_000).map(|i| format!("{i:011}.{now}")).collect();
        // The fixed configuration is https: the names carry their prefixes.
        let mut cookie = format!("__Host-oauth2_logins={}; ", index.join("|"));
        for i in 0..16_000 {
            cookie.push_str(&format!("__Secure-oauth2_pending_{i:011}=x; "));
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        let before = crate::http::cookie::tests::opens();
        let res = handle(inner, &headers, "code=c&state=s")
            .now_or_never()
            .expect("no network");
        let opened = crate::http::cookie::tests::opens() - before;
        assert_eq!(res.status(), http::StatusCode::BAD_REQUEST);
        assert!(opened <= 2 * MAX_PENDING_LOGINS, "{opened} opened");
        let set = res.headers().get_all(header::SET_COOKIE).iter().count();
        // The state's own cookie, the index entries' (stale), the index.
        assert!(set <= 1 + 2 * MAX_PENDING_LOGINS + 1, "{set} Set-Cookie");

        // A malformed query costs no more.
        let before = crate::http::cookie::tests::opens();
        let res = handle(inner, &headers, &"state=s&".repeat(5000))
            .now_or_never()
            .expect("no network");
        assert!(crate::http::cookie::tests::opens() - before <= 2 * MAX_PENDING_LOGINS);
        let set = res.headers().get_all(header::SET_COOKIE).iter().count();
        assert!(
            set <= MAX_STATES + 2 * MAX_PENDING_LOGINS + 1,
            "{set} Set-Cookie"
        );
    }
}
