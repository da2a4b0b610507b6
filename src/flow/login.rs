//! The start of a login: a pending login (state, PKCE verifier, where to return) sealed in
//! its own cookie, and the redirect to the authorization endpoint.

use bytes::Bytes;
use http::{header, HeaderMap, Response};
use oauth2::{CsrfToken, PkceCodeChallenge, Scope};
use serde::{Deserialize, Serialize};

use crate::callback::MAX_PENDING_LOGINS;
use crate::config::Inner;
use crate::cookie::{self, PendingIndex};
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
    /// The same-origin path and query to return to, as [`safe_return_to`] resolved it.
    #[serde(rename = "r", deserialize_with = "resolved_return_to")]
    pub(crate) return_to: String,
    /// When the login started, in seconds since the Unix epoch.
    #[serde(rename = "t")]
    pub(crate) created_at: u64,
    /// The OpenID Connect nonce the ID token must carry.
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub(crate) nonce: Option<String>,
}

/// Reads a sealed return path through [`safe_return_to`] again (anything unsafe becomes
/// `/`): a cookie sealed by an older version of the layer, which stored paths as given,
/// can still arrive at the callback after an upgrade, and the redirect must not trust it.
fn resolved_return_to<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let given = String::deserialize(d)?;
    Ok(safe_return_to(&given).unwrap_or_else(|| "/".to_string()))
}

/// Starts a login that returns to `return_to` (validated here; anything unsafe becomes
/// `/`): a 303 to the authorization endpoint that sets the pending cookie.
pub(crate) fn start(inner: &Inner, headers: &HeaderMap, return_to: &str) -> Response<Bytes> {
    let return_to = safe_return_to(return_to).unwrap_or_else(|| "/".to_string());
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

/// The longest `return_to` looked at: no longer one can fit in the cookie that carries it.
/// A bound on the work per request; what decides whether a return path is kept is the size
/// of the sealed cookie as built (see [`start`]).
pub(crate) const MAX_RETURN_TO_LEN: usize = cookie::MAX_COOKIE_PAIR_BYTES;

/// `path` as the browser would resolve it, if that is safe to redirect the browser to
/// after login: a same-origin relative path, with its query and fragment.
///
/// The resolved form is what is returned (dot segments, percent-encoded ones too,
/// removed; what a browser percent-encodes encoded), because that is what a browser reads
/// in a `Location`: a check of the path as given passes `/.//evil.example`, which a browser
/// turns into the network path `//evil.example`.
///
/// Refused: anything not starting with a single `/` (`//host`, `/\host`, `\\host`,
/// schemes), backslashes, control characters and whitespace anywhere, any of those hidden
/// behind percent-encoding (decoded repeatedly), and any path that resolves to one starting
/// with `//`, also after one or more rounds of decoding and with `;` parameters stripped from
/// its segments (a proxy or a framework that decodes once more, or reads `..;` as `..`,
/// must not turn it into a network path either). The fragment is kept: the browser never
/// sends it, so it cannot steer a server, and it lets a page's client-side route survive the
/// login.
pub(crate) fn safe_return_to(path: &str) -> Option<String> {
    if path.len() > MAX_RETURN_TO_LEN {
        return None;
    }
    // The path part: a server splits the query and fragment off before it decodes.
    let path_part = path.split(['?', '#']).next().unwrap_or_default();
    // Decode up to three times to see through double and triple encoding; a value still
    // encoded after that is refused.
    let mut current = std::borrow::Cow::Borrowed(path);
    let mut current_path = std::borrow::Cow::Borrowed(path_part);
    for round in 0..4 {
        if !looks_like_local_path(&current)
            || climbs_to_network_path(&current_path, false)
            || climbs_to_network_path(&current_path, true)
        {
            return None;
        }
        let decoded = percent_decode(&current)?;
        if decoded == *current {
            break;
        }
        if round == 3 {
            return None;
        }
        current_path = std::borrow::Cow::Owned(percent_decode(&current_path)?);
        current = std::borrow::Cow::Owned(decoded);
    }
    // Finally resolve it the way a browser does (the WHATWG URL parser: `.`, `..`, `%2e`
    // and `%2E` dot segments), against a placeholder origin, and keep what came out.
    let base = url::Url::parse("http://origin.invalid/").ok()?;
    let joined = base.join(path).ok()?;
    let resolved = &joined[url::Position::BeforePath..];
    let same_origin = joined.origin() == base.origin()
        && joined.username().is_empty()
        && joined.password().is_none();
    (same_origin && looks_like_local_path(resolved)).then(|| resolved.to_string())
}

/// Whether removing the dot segments of `path` (RFC 3986 section 5.2.4, with `%2e` read as
/// `.` in any case as browsers do) leaves a path that starts with `//`. With
/// `strip_params`, each segment is first cut at its first `;`, as servlet containers read
/// `..;x` as `..`.
fn climbs_to_network_path(path: &str, strip_params: bool) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let mut segments = rest.split('/').peekable();
    // Only how many segments are kept, and whether the first of them is empty, matter.
    let mut depth = 0usize;
    let mut first_empty = false;
    let mut keep = |depth: &mut usize, empty: bool| {
        if *depth == 0 {
            first_empty = empty;
        }
        *depth += 1;
    };
    while let Some(segment) = segments.next() {
        let segment = if strip_params {
            segment.split(';').next().unwrap_or_default()
        } else {
            segment
        };
        let last = segments.peek().is_none();
        match dot_segment(segment) {
            Some(dots) => {
                if dots == 2 {
                    depth = depth.saturating_sub(1);
                }
                // A trailing dot segment leaves a trailing slash.
                if last {
                    keep(&mut depth, true);
                }
            }
            None => keep(&mut depth, segment.is_empty()),
        }
    }
    depth > 1 && first_empty
}

/// `Some(1)` for `.`, `Some(2)` for `..`, each dot possibly written `%2e` or `%2E`.
fn dot_segment(segment: &str) -> Option<u8> {
    let mut rest = segment.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        if rest[0] == b'.' {
            rest = &rest[1..];
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"%2e") {
            rest = &rest[3..];
        } else {
            return None;
        }
        dots += 1;
        if dots > 2 {
            return None;
        }
    }
    (dots > 0).then_some(dots)
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

/// One round of percent-decoding (`+` stays `+`); `None` when the result is not UTF-8.
/// Strict rather than lossy, so that a path and its encoded form are judged alike.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
        if bytes[i] == b'%' {
            if let (Some(high), Some(low)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                // Two hex digits make one byte: the cast cannot truncate.
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
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
            assert_eq!(safe_return_to(ok).as_deref(), Some(ok), "{ok}");
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
        assert_eq!(safe_return_to(&format!("/{}", "a".repeat(5000))), None);
    }

    /// The pending cookie of `start(return_to)`: its `name=value` pair, and the login it
    /// holds.
    fn started(inner: &Inner, return_to: &str) -> (String, PendingLogin) {
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
                        pair.len() <= crate::cookie::MAX_COOKIE_PAIR_BYTES,
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
                        crate::cookie::pair_len(&cookie) > crate::cookie::MAX_COOKIE_PAIR_BYTES,
                        "{unit:?} x {count} fell back though it fits"
                    );
                }
            }
        }
        assert!(fell_back > 0 && kept_long > 0, "{fell_back} {kept_long}");
    }

    /// Paths whose dot segments (plain, percent-encoded in any case, behind `;`
    /// parameters or behind one more round of decoding) climb to a `//` path: a browser
    /// resolves them to a network-path reference, and one echo into a relative URL makes
    /// an open redirect.
    #[test]
    fn refuses_what_resolves_to_a_network_path() {
        for bad in [
            "/.//evil.example",
            "/..//evil.example",
            "/%2e%2e//evil.example",
            "/%2E%2E//evil.example",
            "/%2e%2E//evil.example",
            "/.%2e//evil.example",
            "/%2e.//evil.example",
            "/%2e//evil.example",
            "/a/../..//x",
            "/a/..//b",
            "/a/b/../../..//x",
            "/a/./.././/x",
            "/././/x",
            "/.//x?q=1",
            "/..//x#frag",
            "/%2e%2e%2f%2fx",
            "/%2E%2E%2F%2Fx",
            "/.%2f%2fx",
            "/a/..%2f%2fx",
            "/%252e%252e//x",
            "/%252e%252e%252f%252fx",
            "/..;//x",
            "/.;x//x",
            "/a;p=1/..;/..;//x",
            "/..;/..;//x",
            "/;x//evil.example",
        ] {
            assert_eq!(safe_return_to(bad), None, "{bad:?}");
        }
    }

    /// What is accepted comes back resolved the way a browser resolves it: dot segments
    /// (encoded ones too) removed, characters a browser would encode percent-encoded; and
    /// the result is a fixed point.
    #[test]
    fn returns_the_resolved_path() {
        for (given, resolved) in [
            ("/a/./b", "/a/b"),
            ("/a/b/../c", "/a/c"),
            ("/a/%2e%2e/c", "/c"),
            ("/a/%2E/c", "/a/c"),
            ("/./%2e/x", "/x"),
            ("/a/.%2E/b?q=1", "/b?q=1"),
            ("/..", "/"),
            ("/../x", "/x"),
            ("/a/..", "/"),
            ("/a/.", "/a/"),
            ("/a//b", "/a//b"),
            ("/x?next=/../..//y", "/x?next=/../..//y"),
            ("/x?a=%2F&b=..", "/x?a=%2F&b=.."),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/a\"b", "/a%22b"),
            ("/a<b>", "/a%3Cb%3E"),
            ("/x#/settings/../..//y", "/x#/settings/../..//y"),
            ("/a;p=1/b", "/a;p=1/b"),
        ] {
            assert_eq!(
                safe_return_to(given).as_deref(),
                Some(resolved),
                "{given:?}"
            );
            assert_eq!(
                safe_return_to(resolved).as_deref(),
                Some(resolved),
                "{given:?} resolves to {resolved:?}, which is not a fixed point"
            );
        }
    }
}
