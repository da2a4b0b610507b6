//! The start of a login: a pending login (state, PKCE verifier, where to return) sealed in
//! its own cookie, and the redirect to the authorization endpoint.

use bytes::Bytes;
use http::{header, HeaderMap, Method, Response};
use oauth2::{CsrfToken, PkceCodeChallenge, Scope};

use crate::context::{Context, UnauthenticatedApi};
use crate::flow::deny;
use crate::flow::pending::PendingLogin;
use crate::flow::return_to::safe_return_to;
use crate::http::classify::is_browser_navigation;
use crate::http::cookie::{self, PendingIndex, MAX_PENDING_LOGINS};
use crate::http::page;
use crate::session::now_secs;

/// Starts a login that returns to `return_to` (validated here; anything unsafe becomes
/// `/`): a 303 to the authorization endpoint that sets the pending cookie.
pub(crate) fn start(inner: &Context, headers: &HeaderMap, return_to: &str) -> Response<Bytes> {
    let return_to = safe_return_to(return_to).unwrap_or_else(|| "/".to_string());
    // 256 bits of state from `oauth2`'s CSPRNG: twice the 128 bits RFC 9700 asks for.
    let state = CsrfToken::new_random_len(32);
    // S256 with a fresh 32-byte verifier; `plain` is never used.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();

    let state_for_request = state.clone();
    let mut request = inner
        .provider
        .oauth
        .authorize_url(move || state_for_request)
        .set_pkce_challenge(challenge)
        .add_scopes(inner.provider.scopes.iter().cloned().map(Scope::new));
    for (name, value) in &inner.provider.extra_auth_params {
        request = request.add_extra_param(name.as_str(), value.as_str());
    }
    // OpenID Connect: a fresh nonce binds the ID token to this login (and this browser,
    // through the sealed cookie).
    let nonce = inner
        .provider
        .oidc
        .as_ref()
        .map(|_| CsrfToken::new_random_len(32).secret().clone());
    if let Some(nonce) = &nonce {
        request = request.add_extra_param("nonce", nonce.clone());
    }
    let (url, _) = request.url();

    let mut pending = PendingLogin {
        state: state.secret().clone(),
        verifier: verifier.secret().clone(),
        return_to,
        created_at: now_secs(),
        nonce,
    };
    // Serializing a struct of strings and a number cannot fail.
    let seal = |pending: &PendingLogin| {
        let json = serde_json::to_string(pending).unwrap_or_default();
        inner.cookies.pending_cookie(state.secret(), json)
    };
    let mut pending_cookie = seal(&pending);
    // Measured on the cookie as built: JSON escaping, percent-encoding by the resolution,
    // the seal's nonce and tag and base64 all grow the return path, and a browser drops a
    // cookie past its limit without a word, which would fail the login. Home is a short
    // path, and the other fields have a fixed size, so the second cookie always fits.
    let oversized = cookie::pair_len(&pending_cookie);
    if oversized > cookie::MAX_COOKIE_PAIR_BYTES {
        tracing::warn!(
            return_to_bytes = pending.return_to.len(),
            cookie_bytes = oversized,
            limit = cookie::MAX_COOKIE_PAIR_BYTES,
            "the return path does not fit in the pending-login cookie; this login returns to / \
             instead"
        );
        pending.return_to = "/".to_string();
        pending_cookie = seal(&pending);
    }

    let mut res = page::see_other(url.as_str());
    res.headers_mut().append(header::SET_COOKIE, pending_cookie);
    // Keep at most MAX_PENDING_LOGINS pending cookies in this browser, however many logins
    // start before one comes back: the pending cookies are scoped to the callback path and
    // not sent here, so the index cookie says which there are, and the oldest past the
    // cap are removed now (a response may remove a cookie of another path).
    let mut index = PendingIndex::read(headers, &inner.cookies);
    let now = pending.created_at;
    index.retain(now.saturating_sub(inner.pending_lifetime.as_secs()), |_| {
        false
    });
    index.0.sort_by_key(|(_, at)| *at);
    while index.0.len() >= MAX_PENDING_LOGINS {
        let (hash, _) = index.0.remove(0);
        let name = format!("{}{hash}", inner.cookies.pending_prefix);
        res.headers_mut().append(
            header::SET_COOKIE,
            inner.cookies.clear_pending_cookie(&name),
        );
    }
    let name = inner.cookies.pending_name(state.secret());
    let hash = name[inner.cookies.pending_prefix.len()..].to_string();
    index.0.push((hash, now));
    res.headers_mut()
        .append(header::SET_COOKIE, index.set_cookie(&inner.cookies));
    tracing::debug!("login started; redirecting to the authorization endpoint");
    res
}

/// The answer to a request that needs a signed-in user and has none: a login that returns
/// to `return_to` for a browser's page load (or for any request, with
/// [`UnauthenticatedApi::Redirect`]), a `401` for an API call.
pub(crate) fn required(
    inner: &Context,
    method: &Method,
    headers: &HeaderMap,
    return_to: &str,
) -> Response<Bytes> {
    if is_browser_navigation(method, headers)
        || inner.unauthenticated_api == UnauthenticatedApi::Redirect
    {
        return start(inner, headers, return_to);
    }
    deny::unauthorized(inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::return_to::MAX_RETURN_TO_LEN;

    /// The pending cookie of `start(return_to)`: its `name=value` pair, and the login it
    /// holds.
    fn started(inner: &Context, return_to: &str) -> (String, PendingLogin) {
        let res = start(inner, &HeaderMap::new(), return_to);
        let set = res
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .find(|c| c.starts_with(&inner.cookies.pending_prefix))
            .expect("a pending cookie")
            .to_string();
        let pair = set.split(';').next().unwrap().to_string();
        let (name, value) = pair.split_once('=').unwrap();
        let json = inner.cookies.open_pending(name, value).expect("it opens");
        let pending: PendingLogin = serde_json::from_str(&json).unwrap();
        (pair, pending)
    }

    /// Whatever the return path (characters JSON escapes, characters the resolution
    /// percent-encodes, multi-byte characters, `%` sequences, any length up to the input
    /// limit), the pending cookie's `name=value` stays within what browsers keep; the path
    /// is kept whenever its cookie fits, and replaced by `/` only when it would not.
    #[test]
    fn the_pending_cookie_fits_in_a_browser() {
        let inner = crate::fuzzing::layer().shared();
        let units = [
            "\"",
            "\\",
            "%22",
            "%25",
            "%",
            "\u{e9}",
            "\u{1F600}",
            "<",
            "a",
            "\u{7f}",
            "'",
        ];
        let mut fell_back = 0;
        let mut kept_long = 0;
        for unit in units {
            for prefix in ["/", "/x?q="] {
                for count in [
                    1, 100, 300, 500, 600, 700, 900, 1000, 1300, 2000, 2100, 4000,
                ] {
                    let given = format!("{prefix}{}", unit.repeat(count));
                    if given.len() > MAX_RETURN_TO_LEN {
                        continue;
                    }
                    let (pair, pending) = started(inner, &given);
                    assert!(
                        pair.len() <= crate::http::cookie::MAX_COOKIE_PAIR_BYTES,
                        "{unit:?} x {count}: a {}-byte cookie",
                        pair.len()
                    );
                    let Some(resolved) = safe_return_to(&given) else {
                        assert_eq!(pending.return_to, "/");
                        continue;
                    };
                    if pending.return_to == resolved {
                        kept_long += usize::from(resolved.len() > 1000);
                        continue;
                    }
                    // Replaced by `/`: only because the path's own cookie is too large.
                    assert_eq!(pending.return_to, "/", "{unit:?} x {count}");
                    fell_back += 1;
                    let would_be = PendingLogin {
                        return_to: resolved,
                        ..pending
                    };
                    let json = serde_json::to_string(&would_be).unwrap();
                    let cookie = inner.cookies.pending_cookie(&would_be.state, json);
                    assert!(
                        crate::http::cookie::pair_len(&cookie)
                            > crate::http::cookie::MAX_COOKIE_PAIR_BYTES,
                        "{unit:?} x {count} fell back though it fits"
                    );
                }
            }
        }
        assert!(fell_back > 0 && kept_long > 0, "{fell_back} {kept_long}");
    }
}
