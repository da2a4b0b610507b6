//! Faults injected at the provider (through [`FaultProxy`] and the embedded provider's knobs)
//! and in the session store. Each case checks what the person gets, and that no session that
//! existed is lost, replaced or opened for someone else.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use tower_oauth2_login::{
    MemoryStore, Session, SessionKey, SessionMatch, SessionStore, StoreError,
};

use tower_oauth2_login_dev_provider::TokenBehavior;

use super::fault_proxy::{Fault, FaultProxy};
use super::support::app::{self, Browser, Options, TestApp};

/// Signs in again (a "Sign in" link), also for a browser with a session.
const RELOGIN: &str = "/auth/login?return_to=%2Fprotected";

/// The subject `/me` answers for this browser, or the status when it is not a 200.
async fn me(app: &TestApp, browser: &Browser) -> Result<String, StatusCode> {
    let res = browser.get_json(&app.url("/me")).await;
    if res.status != StatusCode::OK {
        return Err(res.status);
    }
    let v: serde_json::Value = serde_json::from_str(&res.body).unwrap();
    Ok(v["subject"].as_str().unwrap().to_string())
}

fn sets_a_session(seen: &app::Seen) -> bool {
    seen.set_cookies()
        .iter()
        .any(|c| c.starts_with("oauth2_session=") && !c.starts_with("oauth2_session=;"))
}

/// An app whose token and userinfo endpoints are behind two fault proxies.
async fn app_behind_proxies() -> (TestApp, Arc<FaultProxy>, Arc<FaultProxy>) {
    let token = FaultProxy::start("").await;
    let userinfo = FaultProxy::start("").await;
    let (t, u) = (token.url("/token"), userinfo.url("/userinfo"));
    let app = app::start_with(Options {
        layer: Box::new(move |b| {
            b.with_token_endpoint(t)
                .with_userinfo_endpoint(u)
                .with_http_timeout(Duration::from_secs(1))
                .with_connect_timeout(Duration::from_millis(500))
        }),
        ..Default::default()
    })
    .await;
    token.set_upstream(app.provider.base_url());
    userinfo.set_upstream(app.provider.base_url());
    (app, token, userinfo)
}

/// With `inject` in force: a signed-in browser that signs in again, and a new browser, are
/// both refused with `status` and `text`, quickly; the signed-in browser keeps its session,
/// another signed-in browser too; the new one has none. After `clear`, sign-in works.
async fn survives<I, C>(
    app: &TestApp,
    what: &str,
    status: StatusCode,
    text: &str,
    inject: I,
    clear: C,
) where
    I: std::future::Future<Output = ()>,
    C: std::future::Future<Output = ()>,
{
    let (a, b, c) = (Browser::new(), Browser::new(), Browser::new());
    assert_eq!(
        app.login(&a, "/protected").await.status,
        StatusCode::SEE_OTHER,
        "{what}"
    );
    assert_eq!(
        app.login(&b, "/protected").await.status,
        StatusCode::SEE_OTHER,
        "{what}"
    );
    let a_cookie = a.cookie(&app.base, "oauth2_session").unwrap();

    inject.await;
    for browser in [&a, &c] {
        let started = Instant::now();
        let res = app.login(browser, RELOGIN).await;
        assert_eq!(res.status, status, "{what}: {res:#?}");
        assert!(res.body.contains(text), "{what}: {}", res.body);
        assert!(res.body.contains("Try again"), "{what}");
        assert!(!res.body.contains(app::CLIENT_SECRET), "{what}");
        assert!(!sets_a_session(&res), "{what}: no new session");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{what}: bounded"
        );
    }
    // Nothing existing was lost or replaced; nothing was opened.
    assert_eq!(
        a.cookie(&app.base, "oauth2_session").as_deref(),
        Some(a_cookie.as_str())
    );
    assert_eq!(me(app, &a).await.as_deref(), Ok("alice"), "{what}");
    assert_eq!(me(app, &b).await.as_deref(), Ok("alice"), "{what}");
    assert_eq!(me(app, &c).await, Err(StatusCode::UNAUTHORIZED), "{what}");

    clear.await;
    assert_eq!(
        app.login(&c, "/protected").await.status,
        StatusCode::SEE_OTHER,
        "{what}"
    );
    assert_eq!(me(app, &c).await.as_deref(), Ok("alice"), "{what}");
    assert_eq!(me(app, &a).await.as_deref(), Ok("alice"), "{what}");
}

/// Garbage in several shapes: not JSON, JSON of the wrong shape, the wrong types.
fn garbage() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("text/html", b"<html>oops</html>".to_vec()),
        ("application/json", b"{\"access_token\":".to_vec()),
        ("application/json", b"[]".to_vec()),
        (
            "application/json",
            b"{\"access_token\":5,\"token_type\":\"bearer\"}".to_vec(),
        ),
        (
            "application/json",
            b"{\"sub\":null,\"access_token\":\"x\"}".to_vec(),
        ),
        ("application/json", b"\xff\xfe\x00garbage".to_vec()),
    ]
}

#[tokio::test]
async fn token_endpoint_faults_refuse_the_login_and_keep_every_session() {
    let (app, token, _) = app_behind_proxies().await;
    let t = &token;
    survives(
        &app,
        "refused",
        StatusCode::BAD_GATEWAY,
        "could not be reached",
        async { t.go_down() },
        async { t.come_up().await },
    )
    .await;
    survives(
        &app,
        "slow",
        StatusCode::GATEWAY_TIMEOUT,
        "did not answer in time",
        async { t.set(Fault::Hang(Duration::from_secs(3))) },
        async { t.set(Fault::None) },
    )
    .await;
    for code in [500, 502, 503] {
        survives(
            &app,
            "5xx",
            StatusCode::BAD_GATEWAY,
            "server error",
            async { t.set(Fault::Status(code)) },
            async { t.set(Fault::None) },
        )
        .await;
    }
    for (content_type, body) in garbage() {
        survives(
            &app,
            "garbage",
            StatusCode::BAD_GATEWAY,
            "not valid",
            async { t.set(Fault::Body(content_type, body)) },
            async { t.set(Fault::None) },
        )
        .await;
    }
    // 2 MiB with a Content-Length, and a body without length that never ends: bounded.
    let big = format!(
        "{{\"access_token\":\"{}\",\"token_type\":\"bearer\"}}",
        "a".repeat(2 << 20)
    );
    survives(
        &app,
        "huge",
        StatusCode::BAD_GATEWAY,
        "too large",
        async { t.set(Fault::Body("application/json", big.into_bytes())) },
        async { t.set(Fault::None) },
    )
    .await;
    survives(
        &app,
        "endless",
        StatusCode::BAD_GATEWAY,
        "too large",
        async { t.set(Fault::Endless) },
        async { t.set(Fault::None) },
    )
    .await;
    survives(
        &app,
        "drip",
        StatusCode::GATEWAY_TIMEOUT,
        "did not answer in time",
        async { t.set(Fault::Drip) },
        async { t.set(Fault::None) },
    )
    .await;
}

#[tokio::test]
async fn userinfo_faults_refuse_the_login_and_keep_every_session() {
    let (app, _, userinfo) = app_behind_proxies().await;
    let u = &userinfo;
    survives(
        &app,
        "refused",
        StatusCode::BAD_GATEWAY,
        "could not be reached",
        async { u.go_down() },
        async { u.come_up().await },
    )
    .await;
    survives(
        &app,
        "slow",
        StatusCode::GATEWAY_TIMEOUT,
        "did not answer in time",
        async { u.set(Fault::Hang(Duration::from_secs(3))) },
        async { u.set(Fault::None) },
    )
    .await;
    survives(
        &app,
        "5xx",
        StatusCode::BAD_GATEWAY,
        "refused to say who you are",
        async { u.set(Fault::Status(500)) },
        async { u.set(Fault::None) },
    )
    .await;
    for (content_type, body) in garbage() {
        survives(
            &app,
            "garbage",
            StatusCode::BAD_GATEWAY,
            "",
            async { u.set(Fault::Body(content_type, body)) },
            async { u.set(Fault::None) },
        )
        .await;
    }
    survives(
        &app,
        "endless",
        StatusCode::BAD_GATEWAY,
        "too large",
        async { u.set(Fault::Endless) },
        async { u.set(Fault::None) },
    )
    .await;
}

#[tokio::test]
async fn jwks_down_during_a_key_rotation() {
    let app = app::start_with(Options {
        discover: true,
        provider: Box::new(|p| p.with_access_token_lifetime(Duration::from_secs(3))),
        ..Default::default()
    })
    .await;
    let (a, c) = (Browser::new(), Browser::new());
    assert_eq!(
        app.login(&a, "/protected").await.status,
        StatusCode::SEE_OTHER
    );

    app.provider.rotate_signing_key(false);
    app.provider.set_jwks_available(false);
    let res = app.login(&c, "/protected").await;
    // The keys may be had in a moment (RFC 9110 15.6.4): 503, with Retry-After.
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{res:#?}");
    assert!(res.header("retry-after").is_some(), "{res:#?}");
    assert!(
        res.body.contains("signing keys could not be fetched"),
        "{}",
        res.body
    );
    assert!(!sets_a_session(&res));
    assert_eq!(me(&app, &c).await, Err(StatusCode::UNAUTHORIZED));

    // The signed-in user's token expires; the refresh returns an ID token signed with the
    // new key, which cannot be fetched. The session must live on with the new tokens (the
    // refresh token was rotated: the old one is spent).
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(me(&app, &a).await.as_deref(), Ok("alice"));
    assert_eq!(app.provider.refresh_requests(), 1);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        me(&app, &a).await.as_deref(),
        Ok("alice"),
        "the rotated refresh token was kept"
    );
    assert_eq!(app.provider.refresh_requests(), 2);

    // The JWKS is back: once the re-fetch interval has passed, logins work again.
    app.provider.set_jwks_available(true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        app.login(&c, "/protected").await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(me(&app, &c).await.as_deref(), Ok("alice"));
    assert_eq!(me(&app, &a).await.as_deref(), Ok("alice"));
}

/// Found by the soak with 3-second tokens on a loaded machine (6 callback 502s in 87,660
/// logins, not reproduced since): a token that reaches the layer old, or a sign-in slower
/// than the token lives, has expired by the time userinfo is called. The login cannot
/// succeed, but the page must say why, not blame the provider, and set no session.
#[tokio::test]
async fn a_token_that_expires_during_the_sign_in_is_explained() {
    let app = app::start_with(Options {
        discover: true,
        provider: Box::new(|p| p.with_access_token_lifetime(Duration::from_secs(1))),
        ..Default::default()
    })
    .await;
    app.provider
        .set_token_behavior(TokenBehavior::SlowAnswer(Duration::from_millis(1500)));
    let browser = Browser::new();
    let res = app.login(&browser, "/protected").await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY, "{res:#?}");
    assert!(
        res.body
            .contains("the sign-in took longer than the provider&#39;s access token lasts"),
        "{}",
        res.body
    );
    assert!(!sets_a_session(&res));
    assert!(res.body.contains("Try again"), "{}", res.body);

    // The same provider answering in time: signed in.
    app.provider.set_token_behavior(TokenBehavior::Normal);
    let res = app.login(&browser, "/protected").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:#?}");
    assert_eq!(me(&app, &browser).await.as_deref(), Ok("alice"));
}

/// The same finding, its quieter half: the token's lifetime counts from the token request,
/// not from the end of the sign-in, so a slow answer does not make the layer keep (and hand
/// to handlers) a token the provider already considers expired.
#[tokio::test]
async fn a_slow_token_answer_does_not_make_the_token_look_younger() {
    let app = app::start_with(Options {
        discover: true,
        provider: Box::new(|p| p.with_access_token_lifetime(Duration::from_secs(4))),
        ..Default::default()
    })
    .await;
    app.provider
        .set_token_behavior(TokenBehavior::SlowAnswer(Duration::from_millis(2500)));
    let browser = Browser::new();
    let requested = Instant::now();
    let res = app.login(&browser, "/protected").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:#?}");
    app.provider.set_token_behavior(TokenBehavior::Normal);
    assert_eq!(app.provider.refresh_requests(), 0);
    // 3.6 s after the token request the token has under half a second left (it lives 4 s):
    // within the refresh skew (at most a quarter of its life). Counted from the end of the
    // sign-in it would seem to have almost 3 s left, and would not be refreshed.
    tokio::time::sleep_until((requested + Duration::from_millis(3600)).into()).await;
    let res = browser.get(&app.url("/token-check")).await;
    assert_eq!(res.status, StatusCode::OK, "{res:#?}");
    assert_eq!(app.provider.refresh_requests(), 1);
}

/// A store whose load, save, delete and delete_matching can fail separately.
#[derive(Clone, Default)]
pub struct FaultStore {
    inner: MemoryStore,
    pub load: Arc<AtomicBool>,
    pub save: Arc<AtomicBool>,
    pub delete: Arc<AtomicBool>,
}

fn fail(flag: &AtomicBool, what: &str) -> Result<(), StoreError> {
    if flag.load(Ordering::SeqCst) {
        Err(StoreError::new(format!("{what} failed")))
    } else {
        Ok(())
    }
}

#[async_trait]
impl SessionStore for FaultStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<Session>>, StoreError> {
        fail(&self.load, "load")?;
        self.inner.load(key).await
    }
    async fn save(&self, key: &SessionKey, session: Arc<Session>) -> Result<(), StoreError> {
        fail(&self.save, "save")?;
        self.inner.save(key, session).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        fail(&self.delete, "delete")?;
        self.inner.delete(key).await
    }
    async fn delete_matching(&self, target: &SessionMatch<'_>) -> Result<usize, StoreError> {
        fail(&self.delete, "delete")?;
        self.inner.delete_matching(target).await
    }
}

async fn app_with_store(lifetime: Duration) -> (TestApp, FaultStore) {
    let store = FaultStore::default();
    let s = store.clone();
    let app = app::start_with(Options {
        provider: Box::new(move |p| p.with_access_token_lifetime(lifetime)),
        layer: Box::new(move |b| b.with_store(s)),
        ..Default::default()
    })
    .await;
    (app, store)
}

#[tokio::test]
async fn store_failing_on_load() {
    let (app, store) = app_with_store(Duration::from_secs(3600)).await;
    let a = Browser::new();
    app.login(&a, "/protected").await;
    store.load.store(true, Ordering::SeqCst);
    for res in [
        a.get(&app.url("/protected")).await,
        a.get(&app.url("/")).await,
    ] {
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "fails closed");
        assert!(res.location().is_none() && res.set_cookies().is_empty());
    }
    assert_eq!(me(&app, &a).await, Err(StatusCode::SERVICE_UNAVAILABLE));
    store.load.store(false, Ordering::SeqCst);
    assert_eq!(me(&app, &a).await.as_deref(), Ok("alice"));
}

#[tokio::test]
async fn store_failing_on_save() {
    let (app, store) = app_with_store(Duration::from_secs(3600)).await;
    let (a, c) = (Browser::new(), Browser::new());
    app.login(&a, "/protected").await;
    store.save.store(true, Ordering::SeqCst);
    for browser in [&a, &c] {
        let res = app.login(browser, RELOGIN).await;
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(res.body.contains("Sessions are unavailable"));
        assert!(!sets_a_session(&res));
    }
    assert_eq!(
        me(&app, &a).await.as_deref(),
        Ok("alice"),
        "the old session is kept"
    );
    assert_eq!(me(&app, &c).await, Err(StatusCode::UNAUTHORIZED));
    store.save.store(false, Ordering::SeqCst);
    assert_eq!(
        app.login(&c, "/protected").await.status,
        StatusCode::SEE_OTHER
    );
}

/// Regression: a refresh whose save failed used to answer 503 and forget the new tokens;
/// the provider had rotated the refresh token, so the next refresh was refused and the
/// session ended. The new tokens are now kept in memory until a save works.
#[tokio::test]
async fn store_failing_on_save_during_a_refresh_loses_no_session() {
    let (app, store) = app_with_store(Duration::from_secs(2)).await;
    let a = Browser::new();
    app.login(&a, "/protected").await;
    store.save.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        me(&app, &a).await.as_deref(),
        Ok("alice"),
        "served with the new token"
    );
    assert_eq!(me(&app, &a).await.as_deref(), Ok("alice"));
    assert_eq!(
        app.provider.refresh_requests(),
        1,
        "no refresh with the spent token"
    );
    store.save.store(false, Ordering::SeqCst);
    assert_eq!(me(&app, &a).await.as_deref(), Ok("alice"));
    // Saved now: a later refresh starts from the stored, rotated refresh token.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(me(&app, &a).await.as_deref(), Ok("alice"));
    assert_eq!(app.provider.refresh_requests(), 2);
    let token = a.get(&app.url("/token-check")).await;
    assert_eq!(token.status, StatusCode::OK, "{token:#?}");
}

#[tokio::test]
async fn store_failing_on_delete() {
    let (app, store) = app_with_store(Duration::from_secs(3600)).await;
    let (a, b) = (Browser::new(), Browser::new());
    app.login(&a, "/protected").await;
    app.login(&b, "/protected").await;
    store.delete.store(true, Ordering::SeqCst);
    // A new login replaces the old session even if the old one cannot be deleted.
    let res = app.login(&a, RELOGIN).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(me(&app, &a).await.as_deref(), Ok("alice"));
    // Logout says the server-side session may live on, and the browser forgets it.
    let res = a
        .request(
            Method::POST,
            &app.url("/logout"),
            &[("origin", &app.base), ("accept", app::HTML)],
        )
        .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{res:#?}");
    assert!(res
        .set_cookies()
        .iter()
        .any(|c| c.starts_with("oauth2_session=;")));
    assert_eq!(me(&app, &a).await, Err(StatusCode::UNAUTHORIZED));
    assert_eq!(
        me(&app, &b).await.as_deref(),
        Ok("alice"),
        "others keep theirs"
    );
    store.delete.store(false, Ordering::SeqCst);
    assert_eq!(me(&app, &b).await.as_deref(), Ok("alice"));
}
