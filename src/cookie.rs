//! The layer's cookies: their names, their flags, sealing the pending-login cookie, and
//! finding a cookie in a request.
//!
//! Cookies are built with the `cookie` crate that `tower-cookies` re-exports, and the
//! pending-login cookie is sealed with its private (AES-256-GCM, name-bound) jar. The
//! `CookieManager` middleware itself is not used: it would parse every cookie and take a
//! lock on every request, where the authenticated path needs one cookie value only.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{header, HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};
use tower_cookies::cookie::time::Duration as CookieDuration;
use tower_cookies::cookie::{Cookie, CookieJar, SameSite};
use tower_cookies::Key;

/// The base name of the session cookie.
pub(crate) const SESSION_COOKIE: &str = "oauth2_session";
/// The base name of the pending-login cookies; each carries a short hash of its state.
pub(crate) const PENDING_COOKIE_PREFIX: &str = "oauth2_pending_";
/// The base name of the pending-login index: `Path=/`, so that the start of a login, which
/// cannot see the pending cookies (they are scoped to the callback path), knows them.
pub(crate) const PENDING_INDEX_COOKIE: &str = "oauth2_logins";

/// The most bytes of name and value together that browsers keep in one cookie (RFC 6265bis
/// section 5.7; Chrome and Firefox ignore a larger cookie without a word).
pub(crate) const MAX_COOKIE_PAIR_BYTES: usize = 4096;

/// The length of the `name=value` part of a `Set-Cookie` value: what browsers count against
/// [`MAX_COOKIE_PAIR_BYTES`].
pub(crate) fn pair_len(set_cookie: &HeaderValue) -> usize {
    let bytes = set_cookie.as_bytes();
    bytes.iter().position(|b| *b == b';').unwrap_or(bytes.len())
}

/// Cookie names and flags, fixed at build time.
#[derive(Clone)]
pub(crate) struct CookieConfig {
    /// `Secure` flag and name prefixes: on whenever the redirect URL is https.
    pub(crate) secure: bool,
    /// The full session cookie name (with `__Host-` when secure).
    pub(crate) session_name: String,
    /// The prefix of every pending-login cookie name (with `__Secure-` when secure).
    pub(crate) pending_prefix: String,
    /// The path the pending cookies are scoped to: the callback path.
    pub(crate) pending_path: String,
    /// The full name of the pending-login index cookie (with `__Host-` when secure).
    pub(crate) index_name: String,
    pub(crate) pending_max_age: Duration,
    pub(crate) session_max_age: Duration,
    pub(crate) key: Key,
}

impl CookieConfig {
    pub(crate) fn new(
        secure: bool,
        callback_path: &str,
        key: Key,
        pending_max_age: Duration,
        session_max_age: Duration,
    ) -> Self {
        // `__Host-` needs Secure, Path=/ and no Domain: exactly the session cookie's flags.
        // The pending cookies are scoped to the callback path, so they can only take
        // `__Secure-`.
        let (session_name, pending_prefix) = if secure {
            (
                format!("__Host-{SESSION_COOKIE}"),
                format!("__Secure-{PENDING_COOKIE_PREFIX}"),
            )
        } else {
            (
                SESSION_COOKIE.to_string(),
                PENDING_COOKIE_PREFIX.to_string(),
            )
        };
        let index_name = if secure {
            format!("__Host-{PENDING_INDEX_COOKIE}")
        } else {
            PENDING_INDEX_COOKIE.to_string()
        };
        Self {
            secure,
            session_name,
            pending_prefix,
            index_name,
            pending_path: callback_path.to_string(),
            pending_max_age,
            session_max_age,
            key,
        }
    }

    /// The `Set-Cookie` value that gives the browser its session id.
    pub(crate) fn session_cookie(&self, id: &str) -> HeaderValue {
        let cookie = Cookie::build((self.session_name.as_str(), id))
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .path("/")
            .max_age(to_cookie_duration(self.session_max_age))
            .build();
        to_header(&cookie)
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub(crate) fn clear_session_cookie(&self) -> HeaderValue {
        let cookie = Cookie::build((self.session_name.as_str(), ""))
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .path("/")
            .max_age(CookieDuration::ZERO)
            .build();
        to_header(&cookie)
    }

    /// The name of the pending-login cookie for `state`: the prefix and 64 bits of the
    /// state's SHA-256, so that logins in several tabs each get their own cookie.
    pub(crate) fn pending_name(&self, state: &str) -> String {
        let digest = Sha256::digest(state.as_bytes());
        format!(
            "{}{}",
            self.pending_prefix,
            URL_SAFE_NO_PAD.encode(&digest[..8])
        )
    }

    /// The `Set-Cookie` value of a pending login, its value sealed (encrypted and
    /// authenticated, bound to its name) with the cookie key.
    pub(crate) fn pending_cookie(&self, state: &str, value: String) -> HeaderValue {
        let name = self.pending_name(state);
        let cookie = Cookie::build((name.clone(), value))
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .path(self.pending_path.clone())
            .max_age(to_cookie_duration(self.pending_max_age))
            .build();
        let mut jar = CookieJar::new();
        jar.private_mut(&self.key).add(cookie);
        match jar.get(&name) {
            Some(sealed) => to_header(sealed),
            // The jar returns what was just added; this arm cannot be reached.
            None => HeaderValue::from_static(""),
        }
    }

    /// Opens a sealed pending-login cookie value; `None` when it was tampered with, made
    /// with another key, or moved to another name.
    pub(crate) fn open_pending(&self, name: &str, sealed: &str) -> Option<String> {
        let jar = CookieJar::new();
        jar.private(&self.key)
            .decrypt(Cookie::new(name.to_string(), sealed.to_string()))
            .map(|c| c.value().to_string())
    }

    /// The `Set-Cookie` value that removes the pending cookie `name`.
    pub(crate) fn clear_pending_cookie(&self, name: &str) -> HeaderValue {
        let cookie = Cookie::build((name, ""))
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .path(self.pending_path.clone())
            .max_age(CookieDuration::ZERO)
            .build();
        to_header(&cookie)
    }
}

/// The pending logins of a browser as the index cookie lists them: the short hash of each
/// (the pending cookie's name without the prefix) and when it started. A hint, not a
/// proof: it only tells which of this browser's own pending cookies to drop first.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PendingIndex(pub(crate) Vec<(String, u64)>);

impl PendingIndex {
    /// Reads the index from the request; malformed entries are skipped, and at most a few
    /// are read whatever the browser sends.
    pub(crate) fn read(headers: &HeaderMap, config: &CookieConfig) -> Self {
        let Some(value) = find(headers, &config.index_name).next() else {
            return Self::default();
        };
        let entries = value
            .split('|')
            .take(2 * crate::callback::MAX_PENDING_LOGINS)
            .filter_map(|entry| {
                let (hash, at) = entry.split_once('.')?;
                let ok = hash.len() == 11
                    && hash
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                Some((hash.to_string(), at.parse().ok()?)).filter(|_| ok)
            })
            .collect();
        Self(entries)
    }

    /// Drops entries started before `oldest`, and those whose cookie `is_gone`.
    pub(crate) fn retain(&mut self, oldest: u64, is_gone: impl Fn(&str) -> bool) {
        self.0.retain(|(hash, at)| *at >= oldest && !is_gone(hash));
    }

    /// The `Set-Cookie` value that stores the index, or removes it when empty.
    pub(crate) fn set_cookie(&self, config: &CookieConfig) -> HeaderValue {
        let value: Vec<String> = self.0.iter().map(|(h, t)| format!("{h}.{t}")).collect();
        let max_age = if value.is_empty() {
            CookieDuration::ZERO
        } else {
            to_cookie_duration(config.pending_max_age)
        };
        let cookie = Cookie::build((config.index_name.as_str(), value.join("|")))
            .http_only(true)
            .secure(config.secure)
            .same_site(SameSite::Lax)
            .path("/")
            .max_age(max_age)
            .build();
        to_header(&cookie)
    }
}

fn to_cookie_duration(d: Duration) -> CookieDuration {
    CookieDuration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn to_header(cookie: &Cookie<'_>) -> HeaderValue {
    // Names are ours and values are base64 or ASCII ids, so the encoding always succeeds;
    // an empty value (that removes nothing) is the harmless fallback.
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Every value of the cookie `name` in the request's `Cookie` headers.
///
/// Hand-written because the authenticated path needs one value, not a parsed jar: it walks
/// the header bytes once and allocates nothing.
pub(crate) fn find<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (n, v) = pair.split_once('=')?;
            (n.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

/// The names of the cookies in the request that start with `prefix`.
pub(crate) fn names_with_prefix<'a>(
    headers: &'a HeaderMap,
    prefix: &'a str,
) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (n, _) = pair.split_once('=')?;
            let n = n.trim();
            n.starts_with(prefix).then_some(n)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secure: bool) -> CookieConfig {
        CookieConfig::new(
            secure,
            "/auth/callback",
            Key::generate(),
            Duration::from_secs(600),
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn session_cookie_flags_plain_http() {
        let c = config(false).session_cookie("abc");
        let s = c.to_str().unwrap();
        assert!(s.starts_with("oauth2_session=abc"));
        assert!(s.contains("HttpOnly"));
        assert!(s.contains("SameSite=Lax"));
        assert!(s.contains("Path=/"));
        assert!(!s.contains("Secure"));
        assert!(!s.contains("Domain"));
    }

    #[test]
    fn session_cookie_flags_https_use_host_prefix() {
        let c = config(true).session_cookie("abc");
        let s = c.to_str().unwrap();
        assert!(s.starts_with("__Host-oauth2_session=abc"));
        assert!(s.contains("Secure"));
        assert!(s.contains("Path=/"));
        assert!(!s.contains("Domain"));
    }

    #[test]
    fn pending_cookie_round_trip_and_binding() {
        let cfg = config(false);
        let header = cfg.pending_cookie("state-1", "payload".into());
        let s = header.to_str().unwrap().to_string();
        let name = cfg.pending_name("state-1");
        assert!(s.starts_with(&format!("{name}=")));
        assert!(s.contains("Path=/auth/callback"));
        assert!(s.contains("HttpOnly") && s.contains("SameSite=Lax") && s.contains("Max-Age=600"));
        assert!(!s.contains("payload"), "the value is encrypted");
        let sealed = s[name.len() + 1..].split(';').next().unwrap();
        assert_eq!(cfg.open_pending(&name, sealed).as_deref(), Some("payload"));
        // Bound to its name: moved to another state's name, it does not open.
        let other = cfg.pending_name("state-2");
        assert_ne!(name, other);
        assert!(cfg.open_pending(&other, sealed).is_none());
        // Another key does not open it.
        assert!(config(false).open_pending(&name, sealed).is_none());
        // Tampering is detected.
        let mut bytes = sealed.as_bytes().to_vec();
        bytes[10] = if bytes[10] == b'A' { b'B' } else { b'A' };
        assert!(cfg
            .open_pending(&name, std::str::from_utf8(&bytes).unwrap())
            .is_none());
        assert!(cfg.open_pending(&name, "").is_none());
        assert!(cfg.open_pending(&name, "%%%").is_none());
    }

    #[test]
    fn https_pending_cookie_uses_secure_prefix() {
        let cfg = config(true);
        assert!(cfg
            .pending_name("s")
            .starts_with("__Secure-oauth2_pending_"));
        let s = cfg.pending_cookie("s", "v".into());
        assert!(s.to_str().unwrap().contains("Secure"));
    }

    #[test]
    fn finds_cookies_across_headers() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; oauth2_session=xyz"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("b=2;oauth2_session_x=no"),
        );
        assert_eq!(find(&h, "oauth2_session").collect::<Vec<_>>(), vec!["xyz"]);
        assert_eq!(find(&h, "b").collect::<Vec<_>>(), vec!["2"]);
        assert_eq!(find(&h, "c").count(), 0);
        assert_eq!(
            names_with_prefix(&h, "oauth2_session").collect::<Vec<_>>(),
            vec!["oauth2_session", "oauth2_session_x"]
        );
    }
}
