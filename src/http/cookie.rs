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
/// The base name of the cookie that carries the `state` of an RP-initiated logout to the
/// logout callback.
pub(crate) const LOGOUT_STATE_COOKIE: &str = "oauth2_logout_state";
/// How long a logout may stay at the provider before its state is forgotten.
const LOGOUT_STATE_MAX_AGE: Duration = Duration::from_secs(10 * 60);

/// How many session cookies a request is acted on for (store loads, deletes), however many
/// it carries: a browser holds one, and a second covers a stale one sent before it (a
/// cookie of the same name set by a sibling domain, or left from before a configuration
/// change). The rest are ignored, so that their number never multiplies store work.
pub(crate) const MAX_SESSION_COOKIES: usize = 2;

/// How many logins may be pending in one browser at once (tabs); older ones are dropped
/// at the next callback so the `Cookie` header stays small.
pub(crate) const MAX_PENDING_LOGINS: usize = 5;

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
    /// The full name of the logout-state cookie (with `__Secure-` when secure).
    pub(crate) logout_state_name: String,
    /// The path the logout-state cookie is scoped to: the logout callback path.
    pub(crate) logout_state_path: String,
    pub(crate) pending_max_age: Duration,
    pub(crate) session_max_age: Duration,
    pub(crate) key: Key,
}

impl CookieConfig {
    pub(crate) fn new(
        secure: bool,
        callback_path: &str,
        logout_callback_path: &str,
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
        // Scoped to the logout callback path, like the pending cookies: `__Secure-`.
        let logout_state_name = if secure {
            format!("__Secure-{LOGOUT_STATE_COOKIE}")
        } else {
            LOGOUT_STATE_COOKIE.to_string()
        };
        Self {
            secure,
            session_name,
            pending_prefix,
            index_name,
            logout_state_name,
            logout_state_path: logout_callback_path.to_string(),
            pending_path: callback_path.to_string(),
            pending_max_age,
            session_max_age,
            key,
        }
    }

    /// Every cookie the layer sets is made here, so that none misses a rule: `HttpOnly`,
    /// `SameSite=Lax`, no `Domain`, and `Secure` whenever the redirect URL is https (the
    /// name prefixes that need it are chosen in [`new`](Self::new)).
    fn build<'c>(
        &self,
        name: impl Into<std::borrow::Cow<'c, str>>,
        value: impl Into<std::borrow::Cow<'c, str>>,
        path: &str,
        max_age: CookieDuration,
    ) -> Cookie<'c> {
        Cookie::build((name, value))
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .path(path.to_string())
            .max_age(max_age)
            .build()
    }

    /// The `Set-Cookie` value that gives the browser its session id.
    pub(crate) fn session_cookie(&self, id: &str) -> HeaderValue {
        let max_age = to_cookie_duration(self.session_max_age);
        to_header(&self.build(self.session_name.as_str(), id, "/", max_age))
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub(crate) fn clear_session_cookie(&self) -> HeaderValue {
        to_header(&self.build(self.session_name.as_str(), "", "/", CookieDuration::ZERO))
    }

    /// The `Set-Cookie` value that keeps the `state` of an RP-initiated logout for the way
    /// back from the provider.
    pub(crate) fn logout_state_cookie(&self, state: &str) -> HeaderValue {
        to_header(&self.build(
            self.logout_state_name.as_str(),
            state,
            &self.logout_state_path,
            to_cookie_duration(LOGOUT_STATE_MAX_AGE),
        ))
    }

    /// The `Set-Cookie` value that removes the logout-state cookie.
    pub(crate) fn clear_logout_state_cookie(&self) -> HeaderValue {
        to_header(&self.build(
            self.logout_state_name.as_str(),
            "",
            &self.logout_state_path,
            CookieDuration::ZERO,
        ))
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
        let max_age = to_cookie_duration(self.pending_max_age);
        let cookie = self.build(name.clone(), value, &self.pending_path, max_age);
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
        #[cfg(test)]
        tests::count_open();
        let jar = CookieJar::new();
        jar.private(&self.key)
            .decrypt(Cookie::new(name.to_string(), sealed.to_string()))
            .map(|c| c.value().to_string())
    }

    /// The `Set-Cookie` value that removes the pending cookie `name`.
    pub(crate) fn clear_pending_cookie(&self, name: &str) -> HeaderValue {
        to_header(&self.build(name, "", &self.pending_path, CookieDuration::ZERO))
    }
}

/// The pending logins of a browser as the index cookie lists them: the short hash of each
/// (the pending cookie's name without the prefix) and when it started. A hint, not a
/// proof: it only tells which of this browser's own pending cookies to drop first.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PendingIndex(pub(crate) Vec<(String, u64)>);

impl PendingIndex {
    /// Reads the index from the request; malformed and repeated entries are skipped, and
    /// at most a few are read whatever the browser sends.
    pub(crate) fn read(headers: &HeaderMap, config: &CookieConfig) -> Self {
        let Some(value) = find(headers, &config.index_name).next() else {
            return Self::default();
        };
        let mut entries: Vec<(String, u64)> = Vec::new();
        for entry in value.split('|').take(2 * MAX_PENDING_LOGINS) {
            let Some((hash, at)) = entry.split_once('.') else {
                continue;
            };
            let ok = hash.len() == 11
                && hash
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            let Ok(at) = at.parse() else {
                continue;
            };
            if ok && !entries.iter().any(|(h, _)| h == hash) {
                entries.push((hash.to_string(), at));
            }
        }
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
        to_header(&config.build(config.index_name.as_str(), value.join("|"), "/", max_age))
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

/// Every `name=value` pair of the request's `Cookie` headers, in order, the name trimmed
/// and the value as sent: one walk over the header bytes, nothing allocated.
fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let (n, v) = pair.split_once('=')?;
            Some((n.trim(), v))
        })
}

/// A cookie value without the blanks and quotes around it.
fn clean(value: &str) -> &str {
    value.trim().trim_matches('"')
}

/// Every value of the cookie `name` in the request's `Cookie` headers.
///
/// Hand-written because the authenticated path needs one value, not a parsed jar: it walks
/// the header bytes once and allocates nothing.
pub(crate) fn find<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    pairs(headers)
        .filter(move |(n, _)| *n == name)
        .map(|(_, v)| clean(v))
}

/// The session cookie values a request is acted on for: the first
/// [`MAX_SESSION_COOKIES`], however many it carries.
pub(crate) fn session_values<'a>(
    headers: &'a HeaderMap,
    config: &'a CookieConfig,
) -> impl Iterator<Item = &'a str> {
    find(headers, &config.session_name).take(MAX_SESSION_COOKIES)
}

/// The cookies the callback acts on, picked out of the request in one pass over its
/// `Cookie` headers (after the index cookie is found); every other cookie is skipped
/// without a second look, so the work is linear in the header and the result is bounded
/// whatever the request carries.
///
/// Pending cookies are known by name only when the callback's state or the index names
/// them. Any other cookie that starts with the pending prefix is ignored: one the layer
/// set but the index lost (two tabs starting logins at the same instant) expires by its
/// `Max-Age`; a made-up one is the sender's own, harmless (it opens nothing) and sent
/// nowhere but the callback path.
pub(crate) struct CallbackCookies<'a> {
    /// The value of each pending cookie asked for (the callback's states), in the order
    /// asked, when the request carries it.
    pub(crate) answered: Vec<Option<&'a str>>,
    /// The index of pending logins, as read.
    pub(crate) index: PendingIndex,
    /// The value of the pending cookie of each index entry, in the index's order, when the
    /// request carries it; `None` for the entries that are asked for in `answered`.
    pub(crate) indexed: Vec<Option<&'a str>>,
    /// The first [`MAX_SESSION_COOKIES`] session cookie values.
    pub(crate) sessions: Vec<&'a str>,
}

impl<'a> CallbackCookies<'a> {
    /// Picks the cookies the callback needs: the pending cookies named `answered` (a few
    /// at most), those the index names, the index, and the first session cookies. The
    /// first value of each name is kept, as a browser sends the most specific one first.
    pub(crate) fn read(headers: &'a HeaderMap, config: &CookieConfig, answered: &[String]) -> Self {
        let index = PendingIndex::read(headers, config);
        let mut out = Self {
            answered: vec![None; answered.len()],
            indexed: vec![None; index.0.len()],
            index,
            sessions: Vec::new(),
        };
        for (name, value) in pairs(headers) {
            if name == config.session_name {
                if out.sessions.len() < MAX_SESSION_COOKIES {
                    out.sessions.push(clean(value));
                }
            } else if let Some(hash) = name.strip_prefix(config.pending_prefix.as_str()) {
                // Bounded work per cookie: a few names of the callback's states, and the
                // index's few entries.
                if let Some(i) = answered.iter().position(|n| n == name) {
                    out.answered[i].get_or_insert(clean(value));
                } else if let Some(i) = out.index.0.iter().position(|(h, _)| h == hash) {
                    out.indexed[i].get_or_insert(clean(value));
                }
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        static OPENS: Cell<usize> = const { Cell::new(0) };
    }

    /// Counts an attempt to open a sealed pending cookie, for the tests that bound the
    /// work of a request.
    pub(super) fn count_open() {
        OPENS.with(|n| n.set(n.get() + 1));
    }

    /// How many sealed pending cookies this thread has tried to open.
    pub(crate) fn opens() -> usize {
        OPENS.with(Cell::get)
    }

    fn config(secure: bool) -> CookieConfig {
        CookieConfig::new(
            secure,
            "/auth/callback",
            "/auth/logout-callback",
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
        assert_eq!(find(&h, "oauth2_session_x").collect::<Vec<_>>(), vec!["no"]);
    }

    #[test]
    fn session_values_are_the_first_two() {
        let cfg = config(false);
        let mut h = HeaderMap::new();
        let many: String = (0..1000).map(|i| format!("oauth2_session={i}; ")).collect();
        h.insert(header::COOKIE, HeaderValue::from_str(&many).unwrap());
        assert_eq!(session_values(&h, &cfg).collect::<Vec<_>>(), vec!["0", "1"]);
    }

    #[test]
    fn index_entries_are_capped_and_deduplicated() {
        let cfg = config(false);
        let mut h = HeaderMap::new();
        let value = format!(
            "oauth2_logins=AAAAAAAAAAA.1|AAAAAAAAAAA.2|bad.3|BBBBBBBBBBB.x|{}",
            "CCCCCCCCCCC.4|".repeat(1000)
        );
        h.insert(header::COOKIE, HeaderValue::from_str(&value).unwrap());
        let index = PendingIndex::read(&h, &cfg);
        assert_eq!(
            index.0,
            vec![
                ("AAAAAAAAAAA".to_string(), 1),
                ("CCCCCCCCCCC".to_string(), 4)
            ]
        );
    }

    #[test]
    fn callback_cookies_pick_what_the_callback_needs_and_nothing_else() {
        let cfg = config(false);
        let mine = cfg.pending_name("s");
        let mut h = HeaderMap::new();
        let bogus: String = (0..5000)
            .map(|i| format!("oauth2_pending_{i:011}=x; oauth2_session=s{i}; "))
            .collect();
        h.append(
            header::COOKIE,
            HeaderValue::from_str(&format!(
                "{bogus}oauth2_pending_AAAAAAAAAAA=a1; {mine}=m1; {mine}=m2"
            ))
            .unwrap(),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static(
                "oauth2_logins=AAAAAAAAAAA.1|BBBBBBBBBBB.2; oauth2_pending_AAAAAAAAAAA=a2",
            ),
        );
        let picked = CallbackCookies::read(&h, &cfg, &[mine.clone(), cfg.pending_name("t")]);
        assert_eq!(picked.answered, vec![Some("m1"), None]);
        assert_eq!(picked.index.0.len(), 2);
        assert_eq!(picked.indexed, vec![Some("a1"), None]);
        assert_eq!(picked.sessions, vec!["s0", "s1"]);
    }

    #[test]
    fn https_logout_state_cookie_is_secure_and_prefixed() {
        for (secure, name) in [
            (true, "__Secure-oauth2_logout_state"),
            (false, "oauth2_logout_state"),
        ] {
            let cfg = config(secure);
            assert_eq!(cfg.logout_state_name, name);
            let set = cfg.logout_state_cookie("st");
            let s = set.to_str().unwrap();
            assert!(s.starts_with(&format!("{name}=st;")), "{s}");
            assert!(s.contains("Path=/auth/logout-callback") && s.contains("Max-Age=600"));
            assert!(s.contains("HttpOnly") && s.contains("SameSite=Lax"));
            assert_eq!(s.contains("; Secure"), secure, "{s}");
            let clear = cfg.clear_logout_state_cookie();
            let c = clear.to_str().unwrap();
            assert!(
                c.starts_with(&format!("{name}=;")) && c.contains("Max-Age=0"),
                "{c}"
            );
            assert_eq!(c.contains("; Secure"), secure, "{c}");
        }
    }
}
