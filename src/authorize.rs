//! The start of a login: a pending login (state, PKCE verifier, where to return) sealed in
//! its own cookie, and the redirect to the authorization endpoint.

use bytes::Bytes;
use http::{header, HeaderMap, Response};
use oauth2::{CsrfToken, PkceCodeChallenge, Scope};
use serde::{Deserialize, Serialize};

use crate::callback::MAX_PENDING_LOGINS;
use crate::config::Inner;
use crate::cookie::PendingIndex;
use crate::page;
use crate::session::now_secs;

/// What the callback needs to finish a login, kept in the browser's pending cookie.
///
/// Sealed with the cookie key, so the browser can neither read the PKCE verifier nor
/// change the return path.
#[derive(Serialize, Deserialize)]
pub(crate) struct PendingLogin {
    /// The `state` sent to the provider.
    #[serde(rename = "s")]
    pub(crate) state: String,
    /// The PKCE code verifier whose S256 challenge was sent.
    #[serde(rename = "v")]
    pub(crate) verifier: String,
    /// The same-origin path and query to return to.
    #[serde(rename = "r")]
    pub(crate) return_to: String,
    /// When the login started, in seconds since the Unix epoch.
    #[serde(rename = "t")]
    pub(crate) created_at: u64,
    /// The OpenID Connect nonce the ID token must carry.
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub(crate) nonce: Option<String>,
}

/// Starts a login that returns to `return_to` (validated here; anything unsafe becomes
/// `/`): a 303 to the authorization endpoint that sets the pending cookie.
pub(crate) fn start(inner: &Inner, headers: &HeaderMap, return_to: &str) -> Response<Bytes> {
    let return_to = safe_return_to(return_to).unwrap_or("/");
    // 256 bits of state from `oauth2`'s CSPRNG: twice the 128 bits RFC 9700 asks for.
    let state = CsrfToken::new_random_len(32);
    // S256 with a fresh 32-byte verifier; `plain` is never used.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();

    let state_for_request = state.clone();
    let mut request = inner
        .oauth
        .authorize_url(move || state_for_request)
        .set_pkce_challenge(challenge)
        .add_scopes(inner.scopes.iter().cloned().map(Scope::new));
    for (name, value) in &inner.extra_auth_params {
        request = request.add_extra_param(name.as_str(), value.as_str());
    }
    // OpenID Connect: a fresh nonce binds the ID token to this login (and this browser,
    // through the sealed cookie).
    let nonce = inner
        .oidc
        .as_ref()
        .map(|_| CsrfToken::new_random_len(32).secret().clone());
    if let Some(nonce) = &nonce {
        request = request.add_extra_param("nonce", nonce.clone());
    }
    let (url, _) = request.url();

    let pending = PendingLogin {
        state: state.secret().clone(),
        verifier: verifier.secret().clone(),
        return_to: return_to.to_string(),
        created_at: now_secs(),
        nonce,
    };
    // Serializing a struct of strings and a number cannot fail.
    let sealed_value = serde_json::to_string(&pending).unwrap_or_default();

    let mut res = page::see_other(url.as_str());
    res.headers_mut().append(
        header::SET_COOKIE,
        inner.cookies.pending_cookie(state.secret(), sealed_value),
    );
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

/// `path` if it is safe to redirect the browser to after login: a same-origin relative
/// path. Refused: anything not starting with a single `/` (`//host`, `/\host`, `\\host`,
/// schemes), backslashes, control characters and whitespace anywhere, and any of those
/// hidden behind percent-encoding (decoded repeatedly).
pub(crate) fn safe_return_to(path: &str) -> Option<&str> {
    if path.len() > 2048 {
        return None;
    }
    // Decode up to three times to see through double and triple encoding; a value still
    // encoded after that is refused.
    let mut current = std::borrow::Cow::Borrowed(path);
    for round in 0..4 {
        if !looks_like_local_path(&current) {
            return None;
        }
        let decoded = percent_decode(&current)?;
        if decoded == *current {
            break;
        }
        if round == 3 {
            return None;
        }
        current = std::borrow::Cow::Owned(decoded);
    }
    // Finally resolve it the way a browser would, against a placeholder origin.
    let base = url::Url::parse("http://origin.invalid/").ok()?;
    let joined = base.join(path).ok()?;
    (joined.origin() == base.origin()).then_some(path)
}

fn looks_like_local_path(p: &str) -> bool {
    let bytes = p.as_bytes();
    bytes.first() == Some(&b'/')
        && bytes.get(1) != Some(&b'/')
        && !p.contains('\\')
        && !p
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\u{FEFF}')
}

/// One round of percent-decoding; `None` when the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.contains('\u{FFFD}') || s.contains('\u{FFFD}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_local_paths() {
        for ok in [
            "/",
            "/protected",
            "/a/b?c=d&e=%2Ff",
            "/search?q=a+b",
            "/caf%C3%A9",
            "/x#frag",
        ] {
            assert_eq!(safe_return_to(ok), Some(ok), "{ok}");
        }
    }

    #[test]
    fn refuses_open_redirects() {
        for bad in [
            "",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "\\/evil.example",
            "https://evil.example",
            "http:evil.example",
            "javascript:alert(1)",
            "evil.example",
            "/%2Fevil.example",
            "/%2fevil.example",
            "%2F%2Fevil.example",
            "/%5Cevil.example",
            "/%255Cevil.example",
            "/%252F%252Fevil.example",
            "/%25252F%25252Fevil.example",
            "/\tevil",
            "/\n/evil.example",
            "/%09/evil.example",
            "/%0d%0a/evil.example",
            " /evil",
            "/ /evil",
            "/%20/evil",
            "/\u{3000}evil",
            "/\u{FEFF}/evil",
            "/%E3%80%80/evil",
            "/%FF",
        ] {
            assert_eq!(safe_return_to(bad), None, "{bad:?}");
        }
        assert_eq!(safe_return_to(&format!("/{}", "a".repeat(3000))), None);
    }
}
