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
use crate::cookie::PendingIndex;
use crate::error::FlowError;
use crate::session::{now_secs, Claims, Secrets, Session, SessionId, Tokens};
use crate::{cookie, page, userinfo};

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
                return Err(FlowError::BadCallback("a parameter is repeated"));
            }
            if value.len() > 4096 {
                return Err(FlowError::BadCallback("a parameter is too long"));
            }
            *slot = Some(value.into_owned());
        }
        Ok(p)
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
    let (outcome, pending_name) = match CallbackParams::parse(query) {
        Ok(params) => {
            let pending_name = params
                .state
                .as_deref()
                .map(|s| inner.cookies.pending_name(s));
            (
                complete(inner, headers, &params, pending_name.as_deref(), exchange).await,
                pending_name,
            )
        }
        Err(e) => (Err((e, None)), None),
    };

    let mut res = match outcome {
        Ok(res) => res,
        // A callback that belongs to no login in progress, from a browser that is signed
        // in: the callback URL reloaded, or a spent login form sent again from the
        // history. Nothing was redeemed; the person goes home rather than to an error.
        Err((FlowError::UnknownState, _)) if signed_in(inner, headers).await => {
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
    // attempts' cookies that are unreadable, expired, or past the cap.
    let stale = stale_pending_cookies(inner, headers, pending_name.as_deref());
    let cleared: Vec<String> = pending_name.into_iter().chain(stale).collect();
    for name in &cleared {
        res.headers_mut()
            .append(header::SET_COOKIE, inner.cookies.clear_pending_cookie(name));
    }
    // The index of pending logins (read at the start of each login) forgets them too.
    let mut index = PendingIndex::read(headers, &inner.cookies);
    if !index.0.is_empty() {
        let prefix = &inner.cookies.pending_prefix;
        index.retain(
            now_secs().saturating_sub(inner.pending_lifetime.as_secs()),
            |hash| {
                cleared
                    .iter()
                    .any(|n| n.strip_prefix(prefix.as_str()) == Some(hash))
            },
        );
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

async fn complete(
    inner: &Inner,
    headers: &HeaderMap,
    params: &CallbackParams,
    pending_name: Option<&str>,
    exchange: Exchange,
) -> Result<Response<Bytes>, Failure> {
    // 1. The state must match a pending login started in this browser.
    let pending = match (params.state.as_deref(), pending_name) {
        (Some(state), Some(name)) => open_pending(inner, headers, name, state),
        _ => None,
    };
    let return_to = pending.as_ref().map(|p| p.return_to.clone());

    // 2. A provider error ends here, with a page and a way to try again (no loop: the
    // page waits for the person to click).
    if let Some(code) = &params.error {
        let code = sanitize_error_code(code);
        let description = params
            .error_description
            .as_deref()
            .map(|d| d.chars().take(300).collect());
        return Err((FlowError::Provider { code, description }, return_to));
    }
    let Some(pending) = pending else {
        return Err((
            if params.state.is_none() {
                FlowError::BadCallback("the state parameter is missing")
            } else {
                FlowError::UnknownState
            },
            None,
        ));
    };

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
            FlowError::BadCallback("the code parameter is missing"),
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
                FlowError::Provider5xx("the provider's answer is not valid"),
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
    // The session the browser had before, if any, ends with this login.
    for old in cookie::find(headers, &inner.cookies.session_name) {
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

/// Whether the request carries the cookie of a live session.
async fn signed_in(inner: &Inner, headers: &HeaderMap) -> bool {
    let Some(id) = cookie::find(headers, &inner.cookies.session_name)
        .next()
        .and_then(SessionId::parse)
    else {
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
        return Err(FlowError::Provider5xx(
            "the provider issued a token of an unknown type",
        ));
    }
    let access_token = token.access_token().secret();
    if access_token.is_empty() {
        return Err(FlowError::Provider5xx("the provider issued an empty token"));
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
    let raw = id_token.ok_or(FlowError::IdToken("the provider sent no ID token"))?;
    let nonce = pending.nonce.as_deref().ok_or(FlowError::IdToken(
        "the sign-in was started without a nonce",
    ))?;
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
            return Err(FlowError::Identity(
                "the provider's user information is about another user",
            ));
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

/// The names of pending cookies, other than the one being answered, that should go:
/// unreadable (another key, tampered), expired, or the oldest past the cap.
pub(crate) fn stale_pending_cookies(
    inner: &Inner,
    headers: &HeaderMap,
    answered: Option<&str>,
) -> Vec<String> {
    let mut live: Vec<(u64, &str)> = Vec::new();
    let mut stale: Vec<String> = Vec::new();
    let now = now_secs();
    for name in cookie::names_with_prefix(headers, &inner.cookies.pending_prefix) {
        if Some(name) == answered
            || live.iter().any(|(_, n)| *n == name)
            || stale.iter().any(|n| n == name)
        {
            continue;
        }
        let created = cookie::find(headers, name)
            .next()
            .and_then(|sealed| inner.cookies.open_pending(name, sealed))
            .and_then(|json| serde_json::from_str::<PendingLogin>(&json).ok())
            .map(|p| p.created_at)
            .filter(|t| now.saturating_sub(*t) <= inner.pending_lifetime.as_secs());
        match created {
            Some(t) => live.push((t, name)),
            None => stale.push(name.to_string()),
        }
    }
    if live.len() > MAX_PENDING_LOGINS {
        live.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
        stale.extend(live.drain(MAX_PENDING_LOGINS..).map(|(_, n)| n.to_string()));
    }
    stale
}

/// Opens the pending cookie `name` and checks it belongs to `state` and is fresh.
pub(crate) fn open_pending(
    inner: &Inner,
    headers: &HeaderMap,
    name: &str,
    state: &str,
) -> Option<PendingLogin> {
    let sealed = cookie::find(headers, name).next()?;
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
                _ => FlowError::Provider5xx("the provider refused this application"),
            }
        }
        RequestTokenError::Request(BackchannelError::Timeout) => {
            tracing::warn!("the token endpoint did not answer in time");
            FlowError::Provider5xx("the provider did not answer in time")
        }
        RequestTokenError::Request(BackchannelError::TooLarge) => {
            tracing::warn!("the token endpoint's answer is too large");
            FlowError::Provider5xx("the provider's answer is too large")
        }
        RequestTokenError::Request(BackchannelError::ServerError(status)) => {
            tracing::warn!(%status, "the token endpoint failed");
            FlowError::Provider5xx("the provider answered with a server error")
        }
        RequestTokenError::Request(e) => {
            tracing::warn!(error = %e, "the token endpoint could not be reached");
            FlowError::Provider5xx("the provider could not be reached")
        }
        RequestTokenError::Parse(_, _) => {
            tracing::warn!("the token endpoint's answer could not be parsed");
            FlowError::Provider5xx("the provider's answer is not valid")
        }
        RequestTokenError::Other(_) => {
            tracing::warn!("the token endpoint's answer is not usable");
            FlowError::Provider5xx("the provider's answer is not valid")
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
    fn error_codes_are_sanitized() {
        assert_eq!(sanitize_error_code("access_denied"), "access_denied");
        assert_eq!(sanitize_error_code("<script>"), "script");
        assert_eq!(sanitize_error_code("<>"), "unknown_error");
    }
}
