//! Limits on what the layer accepts and reads: the pending cookies a browser collects, the
//! back-channel logout body. (Provider answers: `faults.rs`, huge and endless bodies.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::StatusCode;
use tower_oauth2_login::{Session, SessionKey, SessionMatch, SessionStore, StoreError};

use super::support::app::{self, Browser, Options};

/// Many page loads that start a login and never finish it (tabs restored after the session
/// ended, a crawler with a cookie jar): the pending cookies stay at the cap, so the
/// `Cookie` header of the callback stays small (proxies refuse headers past 8 KiB), and the
/// newest logins still complete.
#[tokio::test]
async fn pending_logins_stay_capped_however_many_start() {
    let app = app::start().await;
    let browser = Browser::new();
    let mut authorizations = Vec::new();
    for i in 0..30 {
        authorizations.push(
            app.start_login(&browser, &format!("/protected?tab={i}"))
                .await,
        );
    }
    let header = browser.cookies_for(&app.redirect_url);
    let pending = header.matches("oauth2_pending_").count();
    assert_eq!(pending, 5, "{header}");
    assert!(header.len() < 3 * 1024, "{} bytes: {header}", header.len());
    // The newest completes; the oldest were dropped.
    let callback = app
        .authorize(&browser, authorizations.last().unwrap())
        .await;
    let done = browser.get(&callback).await;
    assert_eq!(done.location(), Some("/protected?tab=29"));
    // The oldest was dropped: its callback redeems nothing (the browser, signed in now,
    // is sent home).
    let redeemed = app.provider.token_requests();
    let old = app.authorize(&browser, &authorizations[0]).await;
    assert_eq!(browser.get(&old).await.location(), Some("/"));
    assert_eq!(app.provider.token_requests(), redeemed);
    // Pages stay reachable, and the index cookie stays small.
    let index = browser
        .cookie(&app.base, "oauth2_logins")
        .unwrap_or_default();
    assert!(index.len() <= 5 * 24, "{index}");
}

/// Long return paths make bigger pending cookies: still capped, each under the 4 KiB a
/// browser keeps.
#[tokio::test]
async fn long_return_paths_make_bounded_pending_cookies() {
    let app = app::start().await;
    let browser = Browser::new();
    for i in 0..10 {
        let path = format!("/protected?{}={i}", "q".repeat(2000));
        app.start_login(&browser, &path).await;
    }
    let header = browser.cookies_for(&app.redirect_url);
    assert_eq!(header.matches("oauth2_pending_").count(), 5);
    for pair in header.split("; ") {
        assert!(pair.len() < 4096, "{}", pair.len());
    }
    assert!(header.len() < 5 * 4096);
}

/// A malicious or garbled index cookie changes nothing but which of the browser's own
/// pending cookies are dropped first.
#[tokio::test]
async fn a_forged_index_cookie_is_harmless() {
    let app = app::start().await;
    let browser = Browser::new();
    let auth = app.start_login(&browser, "/protected?mine").await;
    let callback = app.authorize(&browser, &auth).await;
    for forged in [
        "x",
        "AAAAAAAAAAA.0|BBBBBBBBBBB.99999999999999999999",
        &"AAAAAAAAAAA.1|".repeat(2000),
        "AAAAAAAAAAA.18446744073709551615",
    ] {
        let cookie = format!("oauth2_logins={forged}; {}", browser.cookies_for(&callback));
        let res = Browser::new()
            .request(
                reqwest::Method::GET,
                &app.url("/protected?other"),
                &[("cookie", &cookie), ("accept", app::HTML)],
            )
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER);
        assert!(res.set_cookies().len() <= 2 + 5, "{:?}", res.set_cookies());
    }
    // The browser's own login still completes.
    assert_eq!(
        browser.get(&callback).await.location(),
        Some("/protected?mine")
    );
}

#[tokio::test]
async fn back_channel_logout_bodies_past_64_kib_are_refused() {
    let app = app::start_with(Options {
        discover: true,
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    let url = app.url("/auth/backchannel-logout");
    let token = app
        .provider
        .mint_logout_token(app::CLIENT_ID, Some("alice"), None, Default::default())
        .unwrap();
    let http = reqwest::Client::new();
    let form = "application/x-www-form-urlencoded";
    // A valid token padded past the limit, with a length and without one (chunked).
    let padded = format!("logout_token={token}&pad={}", "p".repeat(70 * 1024));
    let res = http
        .post(&url)
        .header("content-type", form)
        .body(padded.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        chunked_post(
            app.addr,
            "/auth/backchannel-logout",
            form,
            padded.as_bytes()
        )
        .await,
        400
    );
    assert_eq!(
        browser.get_json(&app.url("/me")).await.status,
        StatusCode::OK,
        "no session ended"
    );
    // Under the limit, the same token works.
    let res = http
        .post(&url)
        .header("content-type", form)
        .body(format!("logout_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        browser.get_json(&app.url("/me")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// A POST with a chunked body (no Content-Length), over a raw connection; the status.
async fn chunked_post(
    addr: std::net::SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {content_type}\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(8192) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading it all.
    let _ = stream.write_all(&request).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let head = String::from_utf8_lossy(&answer);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Bounded work per request: a callback request that carries 16,000 made-up
/// pending-cookie names (about 400 KB, just under the server's header limit) gets an answer
/// the size of a normal one. Only the pending cookie the state names and those the index
/// names are acted on; a bogus name the index does not name is left alone (it is the
/// sender's own cookie, sent only to the callback path, and would expire by its Max-Age).
#[tokio::test]
async fn a_callback_with_16000_bogus_pending_cookies_answers_in_bounded_size() {
    let app = app::start().await;
    let browser = Browser::new();
    let auth = app.start_login(&browser, "/protected?mine").await;
    let callback = app.authorize(&browser, &auth).await;
    let own = browser.cookies_for(&callback);
    let bogus: String = (0..16_000)
        .map(|i| format!("oauth2_pending_{i:05}=x; "))
        .collect();
    let cookie = format!("{bogus}{own}");
    let res = Browser::new()
        .request(
            reqwest::Method::GET,
            &callback,
            &[("cookie", &cookie), ("accept", app::HTML)],
        )
        .await;
    // The browser's own login completes through the noise.
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(res.location(), Some("/protected?mine"));
    let set = res.set_cookies();
    // The session, the answered pending cookie cleared, the index rewritten.
    assert!(
        set.len() <= 3,
        "{} Set-Cookie: {:?}",
        set.len(),
        &set[..set.len().min(5)]
    );
    assert!(
        set.iter().all(|c| !c.starts_with("oauth2_pending_0")),
        "a bogus name was answered"
    );

    // An index that names 2,000 bogus cookies the request carries: at most the capped
    // number of index entries are opened and cleared.
    let forged_index: String = (0..2_000)
        .map(|i| format!("{i:011}.{}", now()))
        .collect::<Vec<_>>()
        .join("|");
    let named: String = (0..2_000)
        .map(|i| format!("oauth2_pending_{i:011}=x; "))
        .collect();
    let cookie = format!("oauth2_logins={forged_index}; {named}");
    let res = Browser::new()
        .request(
            reqwest::Method::GET,
            &callback,
            &[("cookie", &cookie), ("accept", app::HTML)],
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let set = res.set_cookies();
    assert!(set.len() <= 2 * 5 + 2, "{} Set-Cookie", set.len());
    assert!(set.iter().map(|c| c.len()).sum::<usize>() < 4096);
}

/// A pending cookie of this browser that no longer opens (tampered, or sealed under a key
/// the app no longer has) is named by the index, so the next callback clears it.
#[tokio::test]
async fn unreadable_pending_cookies_named_by_the_index_are_cleared() {
    let app = app::start().await;
    let browser = Browser::new();
    let first = app.start_login(&browser, "/protected?first").await;
    let second = app.start_login(&browser, "/protected?second").await;
    let callback = app.authorize(&browser, &second).await;
    let first_name = pending_name(&app::param(&first, "state").unwrap());
    let header = browser.cookies_for(&callback);
    assert!(header.contains(&format!("{first_name}=")), "{header}");
    let tampered: String = header
        .split("; ")
        .map(|pair| match pair.split_once('=') {
            Some((n, v)) if n == first_name => {
                let flipped = if v.starts_with('A') { 'B' } else { 'A' };
                format!("{n}={flipped}{}", &v[1..])
            }
            _ => pair.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let res = Browser::new()
        .request(
            reqwest::Method::GET,
            &callback,
            &[("cookie", &tampered), ("accept", app::HTML)],
        )
        .await;
    assert_eq!(res.location(), Some("/protected?second"));
    let cleared: Vec<String> = res
        .set_cookies()
        .into_iter()
        .filter(|c| c.starts_with("oauth2_pending_") && c.contains("Max-Age=0"))
        .collect();
    assert_eq!(
        cleared.len(),
        2,
        "the answered one and the unreadable one: {cleared:?}"
    );
    assert!(cleared
        .iter()
        .any(|c| c.starts_with(&format!("{first_name}="))));
}

/// A logout request with 6,000 session cookies makes at most two store
/// loads and two deletes, and so does a callback.
#[tokio::test]
async fn logout_and_callback_act_on_at_most_two_session_cookies() {
    let store = CountingStore::default();
    let counted = store.clone();
    let app = app::start_with(Options {
        layer: Box::new(move |b| b.with_store(counted)),
        ..Default::default()
    })
    .await;
    let many: String = (0..6_000)
        .map(|i| format!("oauth2_session={i:043}; "))
        .collect();
    let res = Browser::new()
        .request(
            reqwest::Method::POST,
            &app.url("/logout"),
            &[("cookie", &many)],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(store.loads() <= 2, "{} loads", store.loads());
    assert!(store.deletes() <= 2, "{} deletes", store.deletes());

    let browser = Browser::new();
    let auth = app.start_login(&browser, "/protected").await;
    let callback = app.authorize(&browser, &auth).await;
    let cookie = format!("{many}{}", browser.cookies_for(&callback));
    let before = (store.loads(), store.deletes());
    let res = Browser::new()
        .request(
            reqwest::Method::GET,
            &callback,
            &[("cookie", &cookie), ("accept", app::HTML)],
        )
        .await;
    assert_eq!(res.location(), Some("/protected"));
    assert!(
        store.loads() - before.0 <= 2,
        "{} loads",
        store.loads() - before.0
    );
    assert!(
        store.deletes() - before.1 <= 2,
        "{} deletes",
        store.deletes() - before.1
    );
}

/// The name of the pending cookie of `state`, as the layer makes it.
fn pending_name(state: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(state.as_bytes());
    format!(
        "oauth2_pending_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..8])
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A memory store that counts the loads and deletes it is asked for.
#[derive(Clone, Default)]
struct CountingStore {
    inner: tower_oauth2_login::MemoryStore,
    loads: Arc<AtomicUsize>,
    deletes: Arc<AtomicUsize>,
}

impl CountingStore {
    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
    fn deletes(&self) -> usize {
        self.deletes.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl SessionStore for CountingStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<Session>>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(key).await
    }
    async fn save(&self, key: &SessionKey, session: Arc<Session>) -> Result<(), StoreError> {
        self.inner.save(key, session).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(key).await
    }
    async fn delete_matching(&self, target: &SessionMatch<'_>) -> Result<usize, StoreError> {
        self.inner.delete_matching(target).await
    }
}
