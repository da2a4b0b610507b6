//! The callback: the provider's answer is checked (state, issuer, errors), the code is
//! exchanged over the back channel, and a new session is created.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response};
use oauth2::basic::BasicErrorResponseType;
use oauth2::{AuthorizationCode, PkceCodeVerifier, RequestTokenError, TokenResponse};
use subtle::ConstantTimeEq;

use crate::authorize::PendingLogin;
use crate::backchannel::BackchannelError;
use crate::config::Inner;
use crate::cookie::{CallbackCookies, PendingIndex};
use crate::error::{CallbackError, FlowError, IdTokenError, IdentityError, ProviderError};
use crate::session::{now_secs, Claims, Secrets, Session, SessionId, Tokens};
use crate::{page, userinfo};

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

/// Where the token endpoint's answer comes from.
pub(crate) enum Exchange {
    /// The code is redeemed at the token endpoint: every real callback.
    Network,
    /// The answer is given (the bench hook, `crate::bench`): the callback's own work
    /// without the network.
    #[cfg(feature = "dev-provider")]
    Recorded(Bytes),
}

/// How many `state` values of a malformed callback (a repeated `state`) have their pending
/// cookie cleared: a provider sends one, and whatever else an attacker adds costs no more.
const MAX_STATES: usize = 2;

/// Answers a request to the callback path.
pub(crate) async fn handle(inner: &Inner, headers: &HeaderMap, query: &str) -> Response<Bytes> {
    handle_with(inner, headers, query, Exchange::Network).await
}

/// [`handle`], with the token endpoint's answer from `exchange`.
pub(crate) async fn handle_with(
    inner: &Inner,
    headers: &HeaderMap,
    query: &str,
    exchange: Exchange,
) -> Response<Bytes> {
    let wants_json = crate::layer::wants_json(headers);
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
            complete(inner, &params, pending, &cookies.sessions, exchange).await
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
            let retry = crate::layer::login_href(inner, return_to.as_deref().unwrap_or("/"));
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
async fn complete(
    inner: &Inner,
    params: &CallbackParams,
    pending: Option<PendingLogin>,
    sessions: &[&str],
    exchange: Exchange,
) -> Result<Response<Bytes>, Failure> {
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
    if let Some(expected) = &inner.issuer {
        match &params.iss {
            Some(iss) if iss == expected => {}
            Some(_) => return Err((FlowError::IssuerMismatch, return_to)),
            None if inner.require_iss => return Err((FlowError::IssuerMismatch, return_to)),
            None => {}
        }
    }

    let Some(code) = params.code.as_deref().filter(|c| !c.is_empty()) else {
        return Err((
            FlowError::BadCallback(CallbackError::MissingCode),
            return_to,
        ));
    };

    // 4. The back-channel exchange, with the PKCE verifier and client authentication.
    // The token's lifetime counts from the request: the provider's clock started then, and
    // a slow answer (or a slow userinfo call after it) must not make it look younger.
    let requested_at = now_secs();
    let token: crate::config::TokenResponse = match exchange {
        Exchange::Network => inner
            .oauth
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()))
            .request_async(&inner.backchannel)
            .await
            .map_err(|e| (token_error(e), return_to.clone()))?,
        #[cfg(feature = "dev-provider")]
        Exchange::Recorded(body) => serde_json::from_slice(&body).map_err(|_| {
            (
                FlowError::ProviderFailed(ProviderError::InvalidAnswer),
                return_to.clone(),
            )
        })?,
    };

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
    let identity = match &inner.oidc {
        Some(oidc) => identify_oidc(inner, oidc, id_token.as_deref(), &pending, bearer)
            .await
            .map_err(|e| (e, return_to.clone()))?,
        None => userinfo::fetch(inner, bearer)
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
            .unwrap_or_else(|| inner.scopes.clone()),
        access_expires_at,
        access_obtained_at: requested_at,
        // Sealed under the key of the new id when a store first writes the session.
        secrets: Secrets::new(
            Tokens {
                access_token,
                refresh_token: token.refresh_token().map(|t| t.secret().clone()),
                id_token: inner.oidc.as_ref().and(id_token),
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
async fn signed_in(inner: &Inner, session_cookie: Option<&str>) -> bool {
    let Some(id) = session_cookie.and_then(SessionId::parse) else {
        return false;
    };
    // Live, and this browser's: a record that does not open with its cookie is no session.
    matches!(inner.store.load(&id.key()).await,
        Ok(Some(s)) if !s.is_expired(now_secs()) && s.open(&id.seal_key()).is_ok())
}

/// The access token of a token response, if the layer can use it: RFC 6749 7.1 and
/// RFC 6750, the layer only knows how to use bearer tokens, and an empty one is no token.
pub(crate) fn usable_access_token(token: &crate::config::TokenResponse) -> Result<&str, FlowError> {
    if !token.token_type().as_ref().eq_ignore_ascii_case("bearer") {
        return Err(FlowError::ProviderFailed(ProviderError::UnknownTokenType));
    }
    let access_token = token.access_token().secret();
    if access_token.is_empty() {
        return Err(FlowError::ProviderFailed(ProviderError::EmptyToken));
    }
    Ok(access_token)
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
    inner: &Inner,
    oidc: &crate::oidc::Oidc,
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
        .verify_id_token(
            &inner.backchannel,
            raw,
            crate::oidc::NonceCheck::Equal(nonce),
        )
        .await?;
    let mut claims = verified.claims;
    if inner.userinfo_url.is_some() {
        let info = userinfo::fetch(inner, access_token).await?;
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

/// How many logins may be pending in one browser at once (tabs); older ones are dropped
/// at the next callback so the `Cookie` header stays small.
pub(crate) const MAX_PENDING_LOGINS: usize = 5;

/// What becomes of the other pending logins of this browser, as the index names them (a
/// few at most; pending cookies it does not name are not looked at, see
/// [`CallbackCookies`]): the names of those to clear (unreadable, expired, or the oldest
/// past the cap), and the index to write back, `None` when the request had none.
pub(crate) fn sweep_pending(
    inner: &Inner,
    cookies: &CallbackCookies<'_>,
    answered: &[String],
) -> (Vec<String>, Option<PendingIndex>) {
    if cookies.index.0.is_empty() {
        return (Vec::new(), None);
    }
    let now = now_secs();
    let lifetime = inner.pending_lifetime.as_secs();
    let mut stale = Vec::new();
    let mut live: Vec<(u64, usize)> = Vec::new();
    let mut keep = vec![false; cookies.index.0.len()];
    for (i, ((hash, started), sealed)) in cookies.index.0.iter().zip(&cookies.indexed).enumerate() {
        let name = format!("{}{hash}", inner.cookies.pending_prefix);
        if answered.contains(&name) {
            continue;
        }
        let Some(sealed) = sealed else {
            // Not sent here: the browser dropped it, or sends it elsewhere. The entry
            // stays while it may still be live, as the index's own time says.
            keep[i] = now.saturating_sub(*started) <= lifetime;
            continue;
        };
        let created = inner
            .cookies
            .open_pending(&name, sealed)
            .and_then(|json| serde_json::from_str::<PendingLogin>(&json).ok())
            .map(|p| p.created_at)
            .filter(|t| now.saturating_sub(*t) <= lifetime);
        match created {
            Some(t) => live.push((t, i)),
            None => stale.push(name),
        }
    }
    live.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
    for (rank, (_, i)) in live.into_iter().enumerate() {
        if rank < MAX_PENDING_LOGINS {
            keep[i] = true;
        } else {
            stale.push(format!(
                "{}{}",
                inner.cookies.pending_prefix, cookies.index.0[i].0
            ));
        }
    }
    let kept = cookies
        .index
        .0
        .iter()
        .zip(keep)
        .filter(|(_, keep)| *keep)
        .map(|(entry, _)| entry.clone())
        .collect();
    (stale, Some(PendingIndex(kept)))
}

/// Opens the pending cookie `name` of the request and checks it belongs to `state` and is
/// fresh.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn open_pending(
    inner: &Inner,
    headers: &HeaderMap,
    name: &str,
    state: &str,
) -> Option<PendingLogin> {
    let sealed = crate::cookie::find(headers, name).next()?;
    open_pending_value(inner, name, sealed, state)
}

/// Opens the sealed value of the pending cookie `name` and checks it belongs to `state` and
/// is fresh.
fn open_pending_value(
    inner: &Inner,
    name: &str,
    sealed: &str,
    state: &str,
) -> Option<PendingLogin> {
    let json = inner.cookies.open_pending(name, sealed)?;
    let pending: PendingLogin = serde_json::from_str(&json).ok()?;
    let same_state: bool = pending.state.as_bytes().ct_eq(state.as_bytes()).into();
    let age = now_secs().saturating_sub(pending.created_at);
    (same_state && age <= inner.pending_lifetime.as_secs()).then_some(pending)
}

/// Keeps an `error` code to the RFC 6749 character set, so a hostile value cannot make
/// the page say something else.
fn sanitize_error_code(code: &str) -> String {
    let clean: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || *c == '.')
        .take(64)
        .collect();
    if clean.is_empty() {
        "unknown_error".to_string()
    } else {
        clean
    }
}

/// Maps a failed exchange to what the person is told. The raw provider answer is never
/// shown or logged: a malformed success response may hold tokens.
pub(crate) fn token_error(
    e: RequestTokenError<BackchannelError, oauth2::basic::BasicErrorResponse>,
) -> FlowError {
    match e {
        RequestTokenError::ServerResponse(err) => {
            let code = err.error().as_ref().to_string();
            tracing::warn!(error = %code, "the token endpoint refused the code");
            match err.error() {
                BasicErrorResponseType::InvalidGrant
                | BasicErrorResponseType::InvalidRequest
                | BasicErrorResponseType::InvalidScope => {
                    FlowError::CodeRejected(sanitize_error_code(&code))
                }
                BasicErrorResponseType::InvalidClient
                | BasicErrorResponseType::UnauthorizedClient
                | BasicErrorResponseType::UnsupportedGrantType => {
                    FlowError::ProviderFailed(ProviderError::ClientRefused)
                }
                // A code outside RFC 6749 5.2 (`server_error`, `temporarily_unavailable`,
                // a provider's own): the provider failing, not this client refused.
                BasicErrorResponseType::Extension(_) => {
                    FlowError::ProviderFailed(ProviderError::ErrorAnswer)
                }
            }
        }
        RequestTokenError::Request(BackchannelError::Timeout) => {
            tracing::warn!("the token endpoint did not answer in time");
            FlowError::ProviderFailed(ProviderError::Timeout)
        }
        RequestTokenError::Request(BackchannelError::TooLarge) => {
            tracing::warn!("the token endpoint's answer is too large");
            FlowError::ProviderFailed(ProviderError::TooLarge)
        }
        RequestTokenError::Request(BackchannelError::ServerError(status)) => {
            tracing::warn!(%status, "the token endpoint failed");
            FlowError::ProviderFailed(ProviderError::ServerError(status))
        }
        RequestTokenError::Request(e) => {
            tracing::warn!(error = %e, "the token endpoint could not be reached");
            FlowError::ProviderFailed(ProviderError::Unreachable)
        }
        RequestTokenError::Parse(_, _) => {
            tracing::warn!("the token endpoint's answer could not be parsed");
            FlowError::ProviderFailed(ProviderError::InvalidAnswer)
        }
        RequestTokenError::Other(_) => {
            tracing::warn!("the token endpoint's answer is not usable");
            FlowError::ProviderFailed(ProviderError::InvalidAnswer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let before = crate::cookie::tests::opens();
        let res = handle(inner, &headers, "code=c&state=s")
            .now_or_never()
            .expect("no network");
        let opened = crate::cookie::tests::opens() - before;
        assert_eq!(res.status(), http::StatusCode::BAD_REQUEST);
        assert!(opened <= 2 * MAX_PENDING_LOGINS, "{opened} opened");
        let set = res.headers().get_all(header::SET_COOKIE).iter().count();
        // The state's own cookie, the index entries' (stale), the index.
        assert!(set <= 1 + 2 * MAX_PENDING_LOGINS + 1, "{set} Set-Cookie");

        // A malformed query costs no more.
        let before = crate::cookie::tests::opens();
        let res = handle(inner, &headers, &"state=s&".repeat(5000))
            .now_or_never()
            .expect("no network");
        assert!(crate::cookie::tests::opens() - before <= 2 * MAX_PENDING_LOGINS);
        let set = res.headers().get_all(header::SET_COOKIE).iter().count();
        assert!(
            set <= MAX_STATES + 2 * MAX_PENDING_LOGINS + 1,
            "{set} Set-Cookie"
        );
    }

    #[test]
    fn error_codes_are_sanitized() {
        assert_eq!(sanitize_error_code("access_denied"), "access_denied");
        assert_eq!(sanitize_error_code("<script>"), "script");
        assert_eq!(sanitize_error_code("<>"), "unknown_error");
    }
}
