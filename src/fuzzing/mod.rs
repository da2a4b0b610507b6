//! Entry points for the fuzz targets (`fuzz/`) and the property tests: every parser and
//! check that sees bytes from a browser or a provider, each wrapped so that it **panics when
//! its invariant breaks** (a clear error for bad input, never a panic of its own, never the
//! acceptance of what must be refused). Not part of the public API: compiled only for the
//! library's own tests and under `--cfg fuzzing` (which cargo-fuzz sets), never in a normal
//! build whatever its features, and hidden from the documentation.
//!
//! The oracles that sign tokens take their keys from the caller ([`install_keys`]): the
//! library has no dependency on the development provider whose keys they are.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{header, HeaderMap, HeaderValue, StatusCode};
use oauth2::{AuthorizationCode, PkceCodeVerifier};
use serde_json::{json, Map, Value};

use crate::context::Context as Shared;
use crate::error::FlowError;
use crate::flow::callback::{self, CallbackParams};
use crate::flow::pending::{self, PendingLogin};
use crate::flow::return_to::{safe_return_to, MAX_RETURN_TO_LEN};
use crate::http::cookie;
use crate::provider::http_client::BackchannelError;
use crate::provider::oidc::{NonceCheck, Oidc};
use crate::provider::token;
use crate::session::{now_secs, SealKey, Session, SessionId};
use crate::LoginLayer;

/// The issuer of the fixed test configuration.
pub const ISSUER: &str = "https://issuer.example";
/// The client id of the fixed test configuration.
pub const CLIENT_ID: &str = "fuzz-client";
/// The nonce [`id_token`] expects.
pub const NONCE: &str = "fuzz-nonce-0123456789";
/// The origin return paths are resolved against.
pub const APP_ORIGIN: &str = "https://app.example";
/// A port on loopback where nothing listens: endpoints of the fixed configuration point
/// there, so that a call that should never happen fails fast instead of leaving the machine.
const CLOSED: &str = "http://127.0.0.1:9";

/// Polls a future once and returns its output, or `None` when it would have waited: the
/// entry points below never do I/O, so `None` means the code reached the network.
fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

/// A current-thread runtime for the entry points that may touch the (closed) network.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// The fixed plain OAuth 2.0 configuration: endpoints on a closed loopback port.
pub fn layer() -> &'static LoginLayer {
    static LAYER: OnceLock<LoginLayer> = OnceLock::new();
    LAYER.get_or_init(|| {
        let _rt = runtime().enter();
        LoginLayer::builder()
            .with_client_id(CLIENT_ID)
            .with_client_secret("fuzz-secret")
            .with_authorization_endpoint(format!("{CLOSED}/authorize"))
            .with_token_endpoint(format!("{CLOSED}/token"))
            .with_userinfo_endpoint(format!("{CLOSED}/userinfo"))
            .with_issuer(ISSUER)
            .with_redirect_url(format!("{APP_ORIGIN}/auth/callback"))
            .with_cookie_key([42u8; 64])
            .with_connect_timeout(Duration::from_millis(200))
            .with_http_timeout(Duration::from_millis(500))
            .build()
            .expect("the fuzzing configuration is valid")
    })
}

fn inner() -> &'static Shared {
    layer().shared()
}

// ---------------------------------------------------------------------------------------
// Browser input
// ---------------------------------------------------------------------------------------

/// The callback query (`CallbackParams::parse`) against an independent model: refused
/// exactly when one of the five parameters is repeated or longer than 4096 bytes, and when
/// accepted, each parameter is the decoded value of the query.
pub fn callback_query(query: &str) {
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        seen.entry(name.into_owned())
            .or_default()
            .push(value.into_owned());
    }
    let known = ["code", "state", "error", "error_description", "iss"];
    // The parser stops at the first fault, so a too long value after a repeat (or the
    // other way round) still makes an error: any fault means refusal.
    let faulty = known.iter().any(|name| {
        seen.get(*name)
            .is_some_and(|values| values.len() > 1 || values.iter().any(|v| v.len() > 4096))
    });
    match CallbackParams::parse(query) {
        Ok(p) => {
            assert!(
                !faulty,
                "accepted a repeated or oversized parameter: {query:?}"
            );
            let one = |name: &str| seen.get(name).map(|v| v[0].clone());
            assert_eq!(p.code, one("code"));
            assert_eq!(p.state, one("state"));
            assert_eq!(p.error, one("error"));
            assert_eq!(p.error_description, one("error_description"));
            assert_eq!(p.iss, one("iss"));
        }
        Err(e) => {
            assert!(faulty, "refused a well-formed query {query:?}: {e}");
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        }
    }
}

/// A whole callback request through the layer's callback handler, with any query and any
/// `Cookie` header: without a pending cookie sealed by the layer, the answer is a 4xx page
/// that sets no session, clears only pending cookies, is not cached, and is reached
/// without a network call (the code is never sent anywhere).
pub fn callback_request(query: &str, cookie_header: &[u8]) {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(cookie_header) {
        headers.insert(header::COOKIE, v);
    }
    let inner = inner();
    let _rt = runtime().enter();
    let res = poll_once(callback::handle(inner, &headers, query))
        .unwrap_or_else(|| panic!("the callback reached the network: {query:?}"));
    assert!(
        res.status().is_client_error(),
        "{query:?}: {}",
        res.status()
    );
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    for set in res.headers().get_all(header::SET_COOKIE) {
        let set = set.to_str().expect("ASCII Set-Cookie");
        let index = format!("{}=", inner.cookies.index_name);
        assert!(
            (set.starts_with(&inner.cookies.pending_prefix) && set.contains("Max-Age=0"))
                || set.starts_with(&index),
            "the callback set a cookie it should not: {set}"
        );
    }
    if let Some(location) = res.headers().get(header::LOCATION) {
        panic!("a failed callback redirected to {location:?}");
    }
}

/// The browser's view of a path in a `Location` header, the way the WHATWG URL parser
/// reads it for an http(s) base and independently of the `url` crate: leading and
/// trailing C0 controls and spaces dropped, tabs and newlines removed anywhere, and
/// backslashes read as slashes. `true` when the result is a path on the same origin: one
/// `/` then anything but a second `/`.
pub fn browser_keeps_on_origin(location: &str) -> bool {
    let trimmed = location.trim_matches(|c: char| c <= ' ');
    let cleaned: String = trimmed
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .map(|c| if c == '\\' { '/' } else { c })
        .collect();
    let mut chars = cleaned.chars();
    chars.next() == Some('/') && chars.next() != Some('/')
}

/// `safe_return_to`: anything it accepts comes back in the form a browser resolves it to
/// (a fixed point: accepted again unchanged), and stays on the app's origin when resolved
/// by the `url` crate against it, when resolved the way a browser reads it, and after up to
/// three rounds of percent-decoding with dot segments removed (with and without `;`
/// parameters): a proxy or a framework that decodes once more must not turn it into an open
/// redirect either.
pub fn return_to(path: &str) {
    let Some(accepted) = safe_return_to(path) else {
        return;
    };
    // Resolution can lengthen a path (percent-encoding); one longer than the input limit
    // never fits in the pending cookie, so it is never stored, and never read back.
    if accepted.len() <= MAX_RETURN_TO_LEN {
        assert_eq!(
            safe_return_to(&accepted).as_deref(),
            Some(accepted.as_str()),
            "{path:?} was accepted as {accepted:?}, which is not a fixed point"
        );
    }
    let base = url::Url::parse(&format!("{APP_ORIGIN}/some/page?q=1")).expect("base URL");
    let resolved = base
        .join(&accepted)
        .unwrap_or_else(|e| panic!("accepted {path:?}, which does not resolve: {e}"));
    assert_eq!(
        resolved.origin(),
        base.origin(),
        "accepted {path:?}, which leaves the origin: {resolved}"
    );
    assert!(
        resolved.username().is_empty() && resolved.password().is_none(),
        "{path:?}"
    );
    assert_eq!(
        &resolved[url::Position::BeforePath..],
        accepted,
        "{path:?}: what is stored is not what a browser navigates to"
    );
    let mut current = accepted.clone();
    for _ in 0..4 {
        assert!(
            browser_keeps_on_origin(&current),
            "accepted {path:?}, which a browser reads as leaving the origin ({current:?})"
        );
        let path_part = current.split(['?', '#']).next().unwrap_or_default();
        for strip_params in [false, true] {
            let dotless = remove_dot_segments(path_part, strip_params);
            assert!(
                browser_keeps_on_origin(&dotless),
                "accepted {path:?}, which resolves to the network path {dotless:?}"
            );
        }
        let decoded = percent_encoding_decode(&current);
        if decoded == current {
            break;
        }
        current = decoded;
    }
    // It also makes a valid `Location` header as it is.
    assert!(HeaderValue::from_str(&accepted).is_ok(), "{path:?}");
}

/// RFC 3986 section 5.2.4 on an absolute path, `%2e` read as `.` as browsers do, written
/// apart from the code under test; with `strip_params`, each segment cut at its first `;`
/// first, as servlet containers do.
fn remove_dot_segments(path: &str, strip_params: bool) -> String {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let mut out: Vec<&str> = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let segment = if strip_params {
            segment.split(';').next().unwrap_or_default()
        } else {
            segment
        };
        let last = i + 1 == segments.len();
        match segment.to_ascii_lowercase().replace("%2e", ".").as_str() {
            "." if last => out.push(""),
            "." => {}
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            _ => out.push(segment),
        }
    }
    format!("/{}", out.join("/"))
}

/// Plain percent-decoding (lossy), independent of the code under test.
fn percent_encoding_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The session cookie in any `Cookie` header: `cookie::find` and `SessionId::parse`
/// accept only 43 base64url characters, which are then exactly a cookie value of the
/// header; anything else is no session. The pending-login index read from the same header
/// holds a few well-formed entries at most.
pub fn session_cookie(cookie_header: &[u8]) {
    let mut headers = HeaderMap::new();
    let Ok(value) = HeaderValue::from_bytes(cookie_header) else {
        return;
    };
    headers.insert(header::COOKIE, value);
    let raw = String::from_utf8_lossy(cookie_header);
    for found in cookie::find(&headers, &inner().cookies.session_name) {
        assert!(raw.contains(found));
        if let Some(id) = SessionId::parse(found) {
            assert_eq!(id.as_str().len(), 43);
            assert!(id
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
    }
    // What the callback picks out of the same header: a few values at most.
    let picked = cookie::CallbackCookies::read(&headers, &inner().cookies, &[]);
    assert!(picked.sessions.len() <= cookie::MAX_SESSION_COOKIES);
    assert!(picked.indexed.len() <= 2 * cookie::MAX_PENDING_LOGINS);
    // The index of pending logins: a few well-formed entries at most, whatever was sent,
    // and a small cookie when written back.
    let index = cookie::PendingIndex::read(&headers, &inner().cookies);
    assert!(index.0.len() <= 2 * cookie::MAX_PENDING_LOGINS);
    for (hash, _) in &index.0 {
        assert_eq!(hash.len(), 11);
        assert!(hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
    assert!(index.set_cookie(&inner().cookies).len() < 512);
}

/// Seals a pending login for `state` as the layer does; returns the cookie name and value.
pub fn seal_pending(state: &str, return_to: &str, created_at: u64) -> (String, String) {
    let pending = PendingLogin {
        state: state.to_string(),
        verifier: "v".repeat(43),
        return_to: return_to.to_string(),
        created_at,
        nonce: None,
    };
    let json = serde_json::to_string(&pending).expect("JSON");
    let cookie = inner().cookies.pending_cookie(state, json);
    let pair = cookie
        .to_str()
        .expect("ASCII")
        .split(';')
        .next()
        .expect("a pair")
        .to_string();
    let (name, value) = pair.split_once('=').expect("name=value");
    (name.to_string(), value.to_string())
}

/// Opens a pending cookie from a `Cookie` header for the callback `state`, as the callback
/// does; `Some(return_to)` when it is accepted.
pub fn open_pending(cookie_header: &str, state: &str) -> Option<String> {
    let mut headers = HeaderMap::new();
    headers.insert(header::COOKIE, HeaderValue::from_str(cookie_header).ok()?);
    let name = inner().cookies.pending_name(state);
    pending::open_pending(inner(), &headers, &name, state).map(|p| p.return_to)
}

/// A pending cookie value that is not one the layer sealed (any bytes, under the name of
/// `state`) never opens, and the stale-cookie sweep of the callback takes it for stale.
pub fn forged_pending(state: &str, value: &[u8]) {
    let name = inner().cookies.pending_name(state);
    let Ok(value) = std::str::from_utf8(value) else {
        return;
    };
    if value.contains([';', ',']) {
        return;
    }
    assert!(
        inner().cookies.open_pending(&name, value).is_none(),
        "a forged pending cookie opened: {value:?}"
    );
    let Ok(cookie) = HeaderValue::from_str(&format!("{name}={value}")) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::COOKIE, cookie);
    assert!(pending::open_pending(inner(), &headers, &name, state).is_none());
    // Named by the index, the callback's sweep takes it for stale.
    let hash = &name[inner().cookies.pending_prefix.len()..];
    let index = format!("{}={hash}.{}", inner().cookies.index_name, now_secs());
    let Ok(index) = HeaderValue::from_str(&index) else {
        return;
    };
    headers.append(header::COOKIE, index);
    // A header that is not visible ASCII is not read at all, this cookie with it; then
    // the entry stays while the index's time says it may be live.
    let seen = cookie::find(&headers, &name).next().is_some();
    let picked = cookie::CallbackCookies::read(&headers, &inner().cookies, &[]);
    let (stale, kept) = pending::sweep_pending(inner(), &picked, &[]);
    let kept = kept.expect("an index was sent");
    if seen {
        assert_eq!(stale, vec![name]);
        assert!(kept.0.is_empty());
    } else {
        assert!(stale.is_empty());
        assert_eq!(kept.0.len(), 1);
    }
}

/// The plaintext of a pending cookie, once opened: any JSON either parses into a pending
/// login or is refused, and a parsed one is accepted only for its own state and age.
pub fn pending_json(json: &[u8]) {
    let Ok(pending) = serde_json::from_slice::<PendingLogin>(json) else {
        return;
    };
    // A value sealed by the layer with this content: accepted only for its state, while
    // fresh. Sealing is done here, so this checks the checks after the seal.
    let state = pending.state.clone();
    if state.is_empty() || state.contains(['\u{0}']) {
        return;
    }
    let json = serde_json::to_string(&pending).expect("JSON");
    let cookie = inner().cookies.pending_cookie(&state, json);
    let Ok(pair) = cookie.to_str() else { return };
    let pair = pair.split(';').next().unwrap_or_default().to_string();
    let fresh = now_secs().saturating_sub(pending.created_at) <= inner().pending_lifetime.as_secs();
    let opened = open_pending(&pair, &state);
    assert_eq!(opened.is_some(), fresh, "{pair}");
    if opened.is_some() {
        assert_eq!(opened.as_deref(), Some(pending.return_to.as_str()));
    }
}

// ---------------------------------------------------------------------------------------
// Provider input
// ---------------------------------------------------------------------------------------

/// Answers every request with the next canned response, as a provider would.
struct Canned(Mutex<Vec<oauth2::HttpResponse>>);

impl Canned {
    fn new(mut responses: Vec<oauth2::HttpResponse>) -> Self {
        responses.reverse();
        Canned(Mutex::new(responses))
    }
}

impl<'c> oauth2::AsyncHttpClient<'c> for Canned {
    type Error = BackchannelError;
    type Future = std::future::Ready<Result<oauth2::HttpResponse, BackchannelError>>;

    fn call(&'c self, _request: oauth2::HttpRequest) -> Self::Future {
        let next = self.0.lock().unwrap_or_else(|e| e.into_inner()).pop();
        std::future::ready(next.ok_or(BackchannelError::Connect(String::new())))
    }
}

fn response(status: u16, content_type: &str, body: &[u8]) -> oauth2::HttpResponse {
    let mut res = http::Response::new(body.to_vec());
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        res.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    res
}

/// The token endpoint's answer (any status, any body) through `oauth2` and the layer's
/// checks: accepted only with a non-empty bearer access token from a 2xx JSON answer;
/// refused with a 4xx/5xx error whose text never contains the provider's bytes.
pub fn token_response(status: u16, body: &[u8]) {
    let client = Canned::new(vec![response(status, "application/json", body)]);
    let outcome = poll_once(
        inner()
            .provider
            .oauth
            .exchange_code(AuthorizationCode::new("code".into()))
            .set_pkce_verifier(PkceCodeVerifier::new("v".repeat(43)))
            .request_async(&client),
    )
    .expect("no I/O with canned responses");
    let result = outcome
        .map_err(token::token_error)
        .and_then(|token| token::usable_access_token(&token).map(str::to_string));
    match result {
        Ok(access_token) => {
            assert!(
                (200..300).contains(&status),
                "accepted with status {status}"
            );
            assert!(!access_token.is_empty());
            let value: Value = serde_json::from_slice(body).expect("accepted JSON");
            assert_eq!(value["access_token"].as_str(), Some(access_token.as_str()));
            let token_type = value["token_type"].as_str().unwrap_or_default();
            assert!(token_type.eq_ignore_ascii_case("bearer"), "{token_type}");
        }
        Err(e) => assert_no_echo(&e, body),
    }
}

/// A refused answer is told without the provider's bytes: they may hold tokens.
fn assert_no_echo(e: &FlowError, body: &[u8]) {
    assert!(e.status().is_client_error() || e.status().is_server_error());
    let res = e.response(false, None);
    let page = String::from_utf8_lossy(res.body());
    let text = String::from_utf8_lossy(body);
    // Any distinctive run of the provider's text (long enough not to occur by chance in
    // the fixed page) must not be on the page.
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if word.len() >= 24 {
            assert!(
                !page.contains(word),
                "the page shows the provider's {word:?}"
            );
        }
    }
}

/// A userinfo body: accepted only as a JSON object whose `sub` is a non-empty string of at
/// most 255 bytes or an integer, which becomes the subject.
pub fn userinfo(body: &[u8]) {
    for field in ["sub", "id"] {
        match crate::provider::userinfo::parse(body, field) {
            Ok(identity) => {
                let value: Map<String, Value> = serde_json::from_slice(body).expect("an object");
                match &value[field] {
                    Value::String(s) => {
                        assert!(!s.is_empty() && s.len() <= 255);
                        assert_eq!(&identity.subject, s);
                    }
                    Value::Number(n) => {
                        assert!(n.is_i64() || n.is_u64());
                        assert_eq!(identity.subject, n.to_string());
                    }
                    other => panic!("accepted a subject {other}"),
                }
            }
            Err(e) => assert_no_echo(&e, body),
        }
    }
}

/// A discovery document and the JWKS it names, through `openidconnect` and the builder:
/// either refused with a configuration error or a layer whose issuer is the configured one
/// and whose endpoints passed the builder's checks. Never a panic.
pub fn discovery(document: &[u8], jwks: &[u8]) {
    let client = Canned::new(vec![
        response(200, "application/json", document),
        response(200, "application/json", jwks),
    ]);
    let Some(outcome) = poll_once(crate::provider::oidc::discover(&client, ISSUER)) else {
        panic!("discovery did I/O with canned responses");
    };
    let Ok(metadata) = outcome else { return };
    assert_eq!(metadata.issuer().as_str(), ISSUER);
    let _rt = runtime().enter();
    let built = LoginLayer::builder()
        .with_client_id(CLIENT_ID)
        .with_redirect_url(format!("{APP_ORIGIN}/auth/callback"))
        .with_cookie_key([1u8; 64])
        .apply_metadata(ISSUER.to_string(), &metadata)
        .and_then(|b| b.build());
    if let Ok(layer) = built {
        let inner = layer.shared();
        assert_eq!(inner.provider.issuer.as_deref(), Some(ISSUER));
        let token_url = inner.provider.oauth.token_uri().url().clone();
        for url in std::iter::once(&token_url).chain(inner.provider.userinfo_url.iter()) {
            let loopback = url
                .host_str()
                .is_some_and(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]");
            assert!(url.scheme() == "https" || loopback, "{url}");
        }
    }
}

/// The keys the oracles verify and sign with (the development provider's embedded ones),
/// given by the caller: the fuzz crate and the tests depend on the development provider,
/// the library does not.
pub struct TestKeys {
    /// The public JWKs of three RSA keys; tokens are signed with the first.
    pub jwks: [Value; 3],
    /// Signs `claims` as a compact JWS with RS256 and the first key: the header's `typ`
    /// when given, and the key's `kid` when asked.
    pub sign: fn(typ: Option<&str>, claims: &Map<String, Value>, with_kid: bool) -> String,
}

static KEYS: OnceLock<TestKeys> = OnceLock::new();

/// Sets the keys for this process; the first call wins.
pub fn install_keys(keys: TestKeys) {
    let _ = KEYS.set(keys);
}

fn keys() -> &'static TestKeys {
    #[cfg(test)]
    install_keys(dev_keys());
    KEYS.get()
        .expect("call fuzzing::install_keys before the oracles that need keys")
}

/// The development provider's keys, for the library's own tests (a dev-dependency).
#[cfg(test)]
pub(crate) fn dev_keys() -> TestKeys {
    use tower_oauth2_login_dev_provider::keys::key_ring;
    let ring = key_ring().expect("the embedded keys");
    let jwk = |i: usize| ring.rotation_key(i).expect("a rotation key").jwk().clone();
    TestKeys {
        jwks: [jwk(0), jwk(1), jwk(2)],
        sign: |typ, claims, with_kid| {
            use tower_oauth2_login_dev_provider::keys::{key_ring, sign_jwt, Signing};
            let ring = key_ring().expect("the embedded keys");
            let signing = if with_kid {
                Signing::Rs256
            } else {
                Signing::Rs256NoKid
            };
            let key = ring.rotation_key(0).expect("a key");
            sign_jwt(typ, claims, signing, key, ring, b"").expect("signing")
        },
    }
}

/// Public JWK `index` (0, 1 or 2) of the installed keys.
fn dev_jwk(index: usize) -> Value {
    keys().jwks[index].clone()
}

/// Signs `claims` with RS256 and the first installed key (with its `kid` when asked).
pub fn sign_id_token(claims: &Map<String, Value>, with_kid: bool) -> String {
    (keys().sign)(None, claims, with_kid)
}

/// A correct set of ID token claims for the fixed configuration, issued now.
pub fn good_claims() -> Map<String, Value> {
    let now = now_secs();
    let Value::Object(map) = json!({
        "iss": ISSUER,
        "sub": "alice",
        "aud": CLIENT_ID,
        "iat": now,
        "exp": now + 300,
        "nonce": NONCE,
    }) else {
        unreachable!()
    };
    map
}

fn oidc_with(jwks: Value) -> Oidc {
    let keys = serde_json::from_value(jwks).expect("a JWKS");
    let oidc = Oidc::new(
        openidconnect::IssuerUrl::new(ISSUER.into()).expect("issuer"),
        openidconnect::ClientId::new(CLIENT_ID.into()),
        openidconnect::JsonWebKeySetUrl::new(format!("{CLOSED}/jwks")).expect("jwks url"),
        Some(keys),
        vec![openidconnect::core::CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256],
        Duration::from_secs(60),
        None,
    );
    oidc.assume_keys_unavailable();
    oidc
}

/// The fixed OpenID Connect verifier: the dev provider's first key, RS256.
fn oidc() -> &'static Oidc {
    static OIDC: OnceLock<Oidc> = OnceLock::new();
    OIDC.get_or_init(|| oidc_with(json!({ "keys": [dev_jwk(0)] })))
}

/// Verifies an ID token with the fixed verifier and the expected [`NONCE`]. The verifier
/// takes its JWKS endpoint for down, so a token with an unknown key is refused without a
/// fetch (at most one every 10 s, from a closed loopback port).
pub fn verify_id_token(raw: &str) -> Result<String, String> {
    let backchannel = &inner().provider.http;
    runtime()
        .block_on(oidc().verify_id_token(backchannel, raw, NonceCheck::Equal(NONCE)))
        .map(|v| v.subject)
        .map_err(|e| e.to_string())
}

/// Any string as an ID token: refused with a clear error (nobody but the key holder can
/// make one that passes), never a panic.
pub fn id_token(raw: &str) {
    if let Ok(subject) = verify_id_token(raw) {
        panic!("accepted a forged ID token for {subject:?}: {raw:?}");
    }
}

/// Any JWKS: a correctly signed ID token verifies only if the set holds its key.
pub fn jwks(body: &[u8]) {
    static TOKEN: OnceLock<String> = OnceLock::new();
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let Ok(_) = serde_json::from_value::<openidconnect::core::CoreJsonWebKeySet>(value.clone())
    else {
        return;
    };
    let token = TOKEN.get_or_init(|| {
        let mut claims = good_claims();
        // Long-lived, so that the fuzzer can run for hours on one token.
        claims.insert("exp".into(), json!(now_secs() + 365 * 24 * 3600));
        sign_id_token(&claims, true)
    });
    let oidc = oidc_with(value.clone());
    let accepted = runtime()
        .block_on(oidc.verify_id_token(&inner().provider.http, token, NonceCheck::Equal(NONCE)))
        .is_ok();
    if accepted {
        let n = dev_jwk(0)["n"].clone();
        let holds = value["keys"]
            .as_array()
            .is_some_and(|keys| keys.iter().any(|k| k["n"] == n));
        assert!(holds, "verified with a JWKS that lacks the key: {value}");
    }
}

/// Any string as a back-channel logout token: refused (not signed by the key), never a
/// panic.
pub fn logout_token(raw: &str) {
    let backchannel = &inner().provider.http;
    if let Ok(found) = runtime().block_on(oidc().verify_logout_token(backchannel, raw)) {
        panic!("accepted a forged logout token naming {found:?}");
    }
}

/// Verifies a logout token with the fixed verifier; `Ok((sub, sid))` when accepted.
pub fn verify_logout_token(raw: &str) -> Result<(Option<String>, Option<String>), String> {
    let backchannel = &inner().provider.http;
    runtime()
        .block_on(oidc().verify_logout_token(backchannel, raw))
        .map(|token| (token.subject, token.sid))
        .map_err(|refused| format!("{refused:?}"))
}

/// The session id the seed record of [`stored_session`] is sealed for.
pub const STORED_SESSION_ID: &str = "fuzzSeedSessionId_0123456789abcdefghijklmno";
/// The access token sealed in that record: the only one any input may open to.
const STORED_ACCESS_TOKEN: &str = "fuzz-seed-access-token";

/// A record as the layer writes it to a store, sealed for [`STORED_SESSION_ID`].
pub fn stored_session_seed() -> String {
    let now = now_secs();
    let session = crate::session::from_plain_json(
        json!({
            "subject": "alice", "claims": {"sub": "alice", "name": "Alice"},
            "scopes": ["openid"], "access_token": STORED_ACCESS_TOKEN,
            "access_expires_at": now + 600, "refresh_token": "fuzz-seed-refresh-token",
            "id_token": "x.y.z", "sid": "s1", "created_at": now,
            "expires_at": now + 600, "absolute_expires_at": now + 3600,
        }),
        SealKey::for_cookie_value(STORED_SESSION_ID),
    )
    .expect("a valid session");
    serde_json::to_string(&session).expect("a session serializes")
}

/// A session record as a store could hold it (a dump, an attacker with write access):
/// read, written back and opened with the key of the session id before the first `\n`.
/// Never a panic; what is read writes back to the same record; and only a record sealed
/// for that id opens (from the seeds: [`STORED_SESSION_ID`]'s, to its own tokens).
pub fn stored_session(data: &[u8]) {
    let (id, record) = split2(data);
    let Ok(session) = serde_json::from_slice::<Session>(record) else {
        return;
    };
    let written = serde_json::to_value(&session).expect("a session read writes back");
    let again: Session = serde_json::from_value(written.clone()).expect("and reads again");
    assert_eq!(serde_json::to_value(&again).expect("writes"), written);
    let id = String::from_utf8_lossy(id);
    if let Ok(tokens) = session.open(&SealKey::for_cookie_value(&id)) {
        assert_eq!(id, STORED_SESSION_ID, "opened for another id");
        assert_eq!(tokens.access_token, STORED_ACCESS_TOKEN);
    }
    assert!(session
        .open(&SealKey::for_cookie_value("another id"))
        .is_err());
}

/// Splits bytes in two at the first `\n` (for targets with two inputs).
pub fn split2(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Starting inputs for each fuzz target (`scripts/fuzz.sh` writes them to the corpus):
/// well-formed examples, so that the fuzzer starts deep in each parser.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Sealed by the layer, but expired: a callback with it must still be refused.
    let (pending_name, pending_value) =
        seal_pending("a-state", "/protected?x=1", now_secs() - 3600);
    // Correctly signed, so that the fuzzer starts past the signature, but refused for
    // one claim (the nonce of another login): no mutation can make it acceptable.
    let id_token = {
        let mut claims = good_claims();
        claims.insert("nonce".into(), json!("another-login"));
        sign_id_token(&claims, true)
    };
    let jwks = json!({ "keys": [dev_jwk(0), dev_jwk(1)] }).to_string();
    let logout = {
        let Value::Object(claims) = json!({
            // Signed, but with a nonce, which a logout token must not carry.
            "iss": ISSUER, "aud": CLIENT_ID, "iat": now_secs(), "jti": "j", "sid": "s", "nonce": "n",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        }) else {
            unreachable!()
        };
        (keys().sign)(Some("logout+jwt"), &claims, true)
    };
    let discovery = json!({
        "issuer": ISSUER,
        "authorization_endpoint": format!("{ISSUER}/authorize"),
        "token_endpoint": format!("{ISSUER}/token"),
        "userinfo_endpoint": format!("{ISSUER}/userinfo"),
        "jwks_uri": format!("{ISSUER}/jwks"),
        "end_session_endpoint": format!("{ISSUER}/end_session"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        "authorization_response_iss_parameter_supported": true,
    })
    .to_string();
    let b = |s: &str| s.as_bytes().to_vec();
    vec![
        ("callback_query", b("code=abc&state=xyz&iss=https%3A%2F%2Fissuer.example")),
        ("callback_query", b("error=access_denied&error_description=No+way&state=s")),
        ("callback_request", b(&format!("code=c&state=a-state&iss=https%3A%2F%2Fissuer.example\n{pending_name}={pending_value}; __Host-oauth2_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))),
        ("return_to", b("/protected?x=%2F#frag")),
        ("return_to", b("/%252F%252Fevil.example")),
        ("session_cookie", b("a=1; __Host-oauth2_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA; __Secure-oauth2_pending_x=y")),
        ("stored_session", b(&format!("{STORED_SESSION_ID}\n{}", stored_session_seed()))),
        ("stored_session", b(&format!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n{}", stored_session_seed()))),
        // Sealed for another state: moved to this one, it must not open.
        ("pending_cookie", b(&format!("b-state\n{pending_value}"))),
        ("pending_cookie", b(r#"{"s":"st","v":"ver","r":"/x","t":1700000000,"n":"nn"}"#)),
        ("userinfo", b(r#"{"sub":"alice","name":"Alice","email":"a@example.com"}"#)),
        ("userinfo", b(r#"{"id":583231,"login":"octocat"}"#)),
        ("token_response", b(r#" {"access_token":"at","token_type":"Bearer","expires_in":3600,"refresh_token":"rt","scope":"openid profile","id_token":"x.y.z"}"#)),
        ("discovery", b(&format!("{discovery}\n{jwks}"))),
        ("jwks", b(&jwks)),
        ("id_token", b(&id_token)),
        ("logout_token", b(&logout)),
    ]
}

#[cfg(test)]
mod props;
