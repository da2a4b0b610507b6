//! The layer in its different settings: a plain hyper service, a sub-router protected with
//! `require_login`, https cookies, a failing session store, and configuration errors.

use crate::support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use support::app::{self, Browser, Options};
use tower::ServiceExt;
use tower_oauth2_login::{
    Access, AuthUser, ClientAuth, ConfigError, LoginLayer, MemoryStore, Session, SessionKey,
    SessionStore, StoreError,
};
use tower_oauth2_login_dev_provider::{DevClient, DevProvider};

#[tokio::test]
async fn works_on_a_plain_hyper_service() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let redirect = format!("http://{addr}/auth/callback");
    let provider = DevProvider::builder()
        .with_client(DevClient::public("hyper-app", &redirect))
        .with_auto_login("bob")
        .start()
        .await
        .unwrap();
    let layer = LoginLayer::builder()
        .with_client_id("hyper-app")
        .with_authorization_endpoint(provider.authorization_endpoint())
        .with_token_endpoint(provider.token_endpoint())
        .with_userinfo_endpoint(provider.userinfo_endpoint())
        .with_redirect_url(&redirect)
        .build()
        .unwrap();
    let service = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(
            |req: Request<hyper::body::Incoming>| async move {
                let who = req
                    .extensions()
                    .get::<AuthUser>()
                    .map(|u| u.subject().to_string())
                    .unwrap_or_default();
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                    "hyper says hi to {who}"
                )))))
            },
        ));
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = hyper_util::service::TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });

    let browser = Browser::new();
    let hops = browser.follow(&format!("http://{addr}/anything?z=9")).await;
    let last = hops.last().unwrap();
    assert_eq!(last.status, StatusCode::OK, "{hops:#?}");
    assert_eq!(last.body, "hyper says hi to bob");
    assert_eq!(last.url, format!("http://{addr}/anything?z=9"));
    server.abort();
}

#[tokio::test]
async fn protects_a_nested_sub_router_with_require_login() {
    let app = app::start_with(Options {
        layer: Box::new(|b| b.with_default_access(Access::Public)),
        app: Some(Box::new(|login: LoginLayer| {
            let admin =
                Router::new()
                    .route(
                        "/panel",
                        get(|user: AuthUser| async move {
                            Html(format!("panel for {}", user.subject()))
                        }),
                    )
                    .layer(login.require_login());
            Router::new()
                .route(
                    "/",
                    get(|user: Option<AuthUser>| async move {
                        format!(
                            "open to all ({})",
                            user.map(|u| u.subject().to_string()).unwrap_or_default()
                        )
                    }),
                )
                .route("/free", get(|| async { "no login needed" }))
                .nest("/admin", admin)
                .layer(login)
        })),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    assert_eq!(browser.get(&app.url("/free")).await.body, "no login needed");
    assert_eq!(browser.get(&app.url("/")).await.body, "open to all ()");
    let api = browser.get_json(&app.url("/admin/panel")).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);

    let hops = browser.follow(&app.url("/admin/panel?tab=keys")).await;
    let last = hops.last().unwrap();
    assert_eq!(last.status, StatusCode::OK, "{hops:#?}");
    assert_eq!(
        last.url,
        app.url("/admin/panel?tab=keys"),
        "back to the nested page's full path"
    );
    assert_eq!(last.body, "panel for alice");
    assert_eq!(browser.get(&app.url("/")).await.body, "open to all (alice)");
}

#[tokio::test]
async fn https_cookies_are_secure_and_prefixed() {
    let redirect = "https://app.test/auth/callback";
    let provider = DevProvider::builder()
        .with_client(DevClient::confidential("c", "s", redirect))
        .with_auto_login("carol")
        .start()
        .await
        .unwrap();
    let layer = LoginLayer::builder()
        .with_client_id("c")
        .with_client_secret("s")
        .with_authorization_endpoint(provider.authorization_endpoint())
        .with_token_endpoint(provider.token_endpoint())
        .with_userinfo_endpoint(provider.userinfo_endpoint())
        .with_redirect_url(redirect)
        .build()
        .unwrap();
    let service = layer.layer_service();

    // 1. The login starts with a __Secure- pending cookie.
    let res = call(&service, "/protected", None).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (pending, index): (Vec<String>, Vec<String>) = set_cookies(&res)
        .into_iter()
        .partition(|c| !c.starts_with("__Host-oauth2_logins="));
    assert_eq!(pending.len(), 1);
    // ... and the index of pending logins, a __Host- cookie.
    assert_eq!(index.len(), 1);
    assert!(index[0].contains("Secure") && index[0].contains("Path=/"));
    assert!(
        pending[0].starts_with("__Secure-oauth2_pending_"),
        "{pending:?}"
    );
    assert!(pending[0].contains("Secure") && pending[0].contains("Path=/auth/callback"));
    let pending_pair = pending[0].split(';').next().unwrap().to_string();

    // 2. The provider answers (no redirects followed: the app is not really at app.test).
    let location = res.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let back = http.get(&location).send().await.unwrap();
    let callback = back.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    let callback_path = callback
        .strip_prefix("https://app.test")
        .unwrap()
        .to_string();

    // 3. The callback sets a __Host- session cookie.
    let res = call(&service, &callback_path, Some(&pending_pair)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let session = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with("__Host-oauth2_session="))
        .expect("a __Host- session cookie");
    for flag in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(flag), "{flag} in {session}");
    }
    assert!(!session.contains("Domain"));
    let session_pair = session.split(';').next().unwrap().to_string();

    // 4. And it works.
    let res = call(&service, "/protected", Some(&session_pair)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body(res).await, "hello carol");
    // The plain name is not accepted over https.
    let plain = session_pair.replacen("__Host-", "", 1);
    assert_eq!(
        call(&service, "/protected", Some(&plain)).await.status(),
        StatusCode::SEE_OTHER
    );
}

/// The logout-state cookie gets the https treatment of every cookie of
/// the layer (`Secure`, the `__Secure-` prefix: its Path is the logout callback's), and the
/// logout callback reads it under that name only.
#[tokio::test]
async fn https_logout_state_cookie_is_secure_and_prefixed() {
    let redirect = "https://app.test/auth/callback";
    let provider = DevProvider::builder()
        .with_client(DevClient::confidential("c", "s", redirect))
        .start()
        .await
        .unwrap();
    let layer = LoginLayer::builder()
        .with_client_id("c")
        .with_client_secret("s")
        .with_authorization_endpoint(provider.authorization_endpoint())
        .with_token_endpoint(provider.token_endpoint())
        .with_issuer(provider.issuer())
        .with_jwks_uri(provider.jwks_uri())
        .with_end_session_endpoint(provider.end_session_endpoint())
        .with_redirect_url(redirect)
        .build()
        .unwrap();
    let service = layer.layer_service();
    let res = service
        .clone()
        .oneshot(
            Request::post("/auth/logout")
                .header("sec-fetch-site", "same-origin")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let state = res.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("state="))
        .unwrap()
        .to_string();
    let set = set_cookies(&res)
        .into_iter()
        .find(|c| c.contains("logout_state"))
        .expect("a logout-state cookie");
    assert!(
        set.starts_with(&format!("__Secure-oauth2_logout_state={state};")),
        "{set}"
    );
    for flag in [
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/auth/logout-callback",
    ] {
        assert!(set.contains(flag), "{flag} in {set}");
    }

    let back = format!("/auth/logout-callback?state={state}");
    // The plain name is not the layer's cookie over https.
    let plain = format!("oauth2_logout_state={state}");
    let res = call(&service, &back, Some(&plain)).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let prefixed = format!("__Secure-oauth2_logout_state={state}");
    let res = call(&service, &back, Some(&prefixed)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let clear = set_cookies(&res)
        .into_iter()
        .find(|c| c.contains("logout_state"))
        .expect("the logout-state cookie cleared");
    assert!(
        clear.starts_with("__Secure-oauth2_logout_state=;"),
        "{clear}"
    );
    assert!(
        clear.contains("Secure") && clear.contains("Max-Age=0"),
        "{clear}"
    );
}

type TestService =
    tower::util::BoxCloneSyncService<Request<Full<Bytes>>, Response<Full<Bytes>>, Infallible>;

trait LayerService {
    fn layer_service(&self) -> TestService;
}

impl LayerService for LoginLayer {
    fn layer_service(&self) -> TestService {
        let svc = tower::ServiceBuilder::new()
            .layer(self.clone())
            .service(tower::service_fn(|req: Request<Full<Bytes>>| async move {
                let who = req
                    .extensions()
                    .get::<AuthUser>()
                    .map(|u| u.subject().to_string());
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                    "hello {}",
                    who.unwrap_or_default()
                )))))
            }));
        tower::util::BoxCloneSyncService::new(svc)
    }
}

async fn call(service: &TestService, path: &str, cookie: Option<&str>) -> Response<Full<Bytes>> {
    let mut req = Request::get(path).header(header::ACCEPT, "text/html");
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    service
        .clone()
        .oneshot(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap()
}

fn set_cookies<B>(res: &Response<B>) -> Vec<String> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

async fn body(res: Response<Full<Bytes>>) -> String {
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// A store that can be switched off, to see the layer fail closed.
#[derive(Clone, Default)]
struct FlakyStore {
    inner: MemoryStore,
    down: Arc<AtomicBool>,
}

#[async_trait]
impl SessionStore for FlakyStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<Session>>, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::new("down"));
        }
        self.inner.load(key).await
    }
    async fn save(&self, key: &SessionKey, session: Arc<Session>) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::new("down"));
        }
        self.inner.save(key, session).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::new("down"));
        }
        self.inner.delete(key).await
    }
    async fn delete_matching(
        &self,
        target: &tower_oauth2_login::SessionMatch<'_>,
    ) -> Result<usize, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::new("down"));
        }
        self.inner.delete_matching(target).await
    }
}

#[tokio::test]
async fn a_failing_store_fails_closed() {
    let store = FlakyStore::default();
    let down = Arc::clone(&store.down);
    let app = app::start_with(Options {
        layer: Box::new(move |b| b.with_store(store)),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    assert_eq!(
        browser.get(&app.url("/protected")).await.status,
        StatusCode::OK
    );

    down.store(true, Ordering::SeqCst);
    // Protected and public pages alike: never served as anonymous, never a login loop.
    for path in ["/protected", "/"] {
        let res = browser.get(&app.url(path)).await;
        assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(res.header("retry-after"), Some("5"));
        assert!(res.location().is_none());
        assert!(res.set_cookies().is_empty(), "the session cookie is kept");
    }
    let api = browser.get_json(&app.url("/me")).await;
    assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&api.body).unwrap()["error"],
        "session_store_unavailable"
    );
    // A login that cannot store its session says so.
    let other = Browser::new();
    let res = app.login(&other, "/protected").await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.body.contains("Sessions are unavailable"));

    // When the store is back, the session is still there.
    down.store(false, Ordering::SeqCst);
    assert_eq!(
        browser.get(&app.url("/protected")).await.status,
        StatusCode::OK
    );
}

fn valid() -> tower_oauth2_login::LoginLayerBuilder {
    LoginLayer::builder()
        .with_client_id("c")
        .with_authorization_endpoint("https://idp.example/authorize")
        .with_token_endpoint("https://idp.example/token")
        .with_userinfo_endpoint("https://idp.example/userinfo")
        .with_redirect_url("https://app.example/auth/callback")
}

#[test]
fn configuration_errors_are_reported_at_build_time() {
    assert!(valid().build().is_ok());
    let cases: Vec<(&str, tower_oauth2_login::LoginLayerBuilder)> = vec![
        (
            "no client id",
            LoginLayer::builder()
                .with_authorization_endpoint("https://idp.example/a")
                .with_token_endpoint("https://idp.example/t")
                .with_userinfo_endpoint("https://idp.example/u")
                .with_redirect_url("https://app.example/cb"),
        ),
        (
            "plain http endpoint",
            valid().with_token_endpoint("http://idp.example/token"),
        ),
        (
            "relative redirect",
            valid().with_redirect_url("/auth/callback"),
        ),
        (
            "redirect with fragment",
            valid().with_redirect_url("https://app.example/cb#x"),
        ),
        (
            "credentials in URL",
            valid().with_authorization_endpoint("https://u:p@idp.example/a"),
        ),
        (
            "other scheme",
            valid().with_token_endpoint("ftp://idp.example/t"),
        ),
        ("short cookie key", valid().with_cookie_key([1u8; 32])),
        (
            "post without secret",
            valid().with_client_auth(ClientAuth::ClientSecretPost),
        ),
        (
            "basic without secret",
            valid().with_client_auth(ClientAuth::ClientSecretBasic),
        ),
        (
            "logout on callback",
            valid().with_logout_path("/auth/callback"),
        ),
        (
            "login equals logout",
            valid().with_login_path("/x").with_logout_path("/x"),
        ),
        ("relative logout path", valid().with_logout_path("logout")),
        (
            "reserved parameter",
            valid().with_authorization_param("state", "fixed"),
        ),
        (
            "unsafe post-logout page",
            valid().with_post_logout_redirect("https://evil.example"),
        ),
        (
            "iss required without issuer",
            valid().with_iss_parameter_required(true),
        ),
        (
            "zero idle timeout",
            valid().with_idle_timeout(std::time::Duration::ZERO),
        ),
        (
            "short login timeout",
            valid().with_login_timeout(std::time::Duration::from_secs(1)),
        ),
    ];
    for (what, builder) in cases {
        let err: ConfigError = builder.build().expect_err(what);
        assert!(!err.to_string().is_empty(), "{what}");
    }
    // Loopback may use plain http, for development.
    assert!(valid()
        .with_token_endpoint("http://127.0.0.1:9/token")
        .with_redirect_url("http://localhost:3000/cb")
        .build()
        .is_ok());
}

#[test]
fn a_reserved_authorization_parameter_is_named() {
    for name in ["state", "nonce", "redirect_uri", "code_challenge"] {
        let err = valid()
            .with_authorization_param(name, "fixed")
            .build()
            .expect_err(name);
        assert!(
            matches!(&err, ConfigError::ReservedAuthorizationParam { name: n } if n == name),
            "{err:?}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn paths_default_beside_the_callback() {
    let layer = valid().build().unwrap();
    assert_eq!(layer.callback_path(), "/auth/callback");
    assert_eq!(layer.login_path(), "/auth/login");
    assert_eq!(layer.logout_path(), "/auth/logout");
}

#[test]
fn debug_output_shows_no_secret() {
    let builder = valid().with_client_secret("super-secret-value");
    assert!(!format!("{builder:?}").contains("super-secret-value"));
    let layer = builder.with_cookie_key([9u8; 64]).build().unwrap();
    assert!(!format!("{layer:?}").contains("super-secret-value"));
}

#[tokio::test]
async fn the_back_channel_follows_no_redirect() {
    // A token endpoint that answers with a redirect to another server: following it would
    // send the code, the verifier and the client secret there.
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let capture_hits = Arc::clone(&hits);
    let capture = Router::new().fallback(move || {
        let hits = Arc::clone(&capture_hits);
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            axum::Json(serde_json::json!({"access_token": "x", "token_type": "bearer"}))
        }
    });
    let capture_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let capture_url = format!("http://{}/steal", capture_listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(capture_listener, capture).await.unwrap() });

    let redirector = Router::new().fallback(move || {
        let to = capture_url.clone();
        async move { (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]) }
    });
    let redirector_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token_url = format!("http://{}/token", redirector_listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(redirector_listener, redirector).await.unwrap() });

    let app = app::start_with(Options {
        layer: Box::new(move |b| b.with_token_endpoint(token_url)),
        ..Default::default()
    })
    .await;
    let res = app.login(&Browser::new(), "/protected").await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY, "{res:#?}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the redirect was not followed"
    );
}

/// Counts the writes that reach the store.
#[derive(Clone, Default)]
struct CountingStore {
    inner: MemoryStore,
    saves: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait]
impl SessionStore for CountingStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<Session>>, StoreError> {
        self.inner.load(key).await
    }
    async fn save(&self, key: &SessionKey, session: Arc<Session>) -> Result<(), StoreError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.inner.save(key, session).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn delete_matching(
        &self,
        target: &tower_oauth2_login::SessionMatch<'_>,
    ) -> Result<usize, StoreError> {
        self.inner.delete_matching(target).await
    }
}

#[tokio::test]
async fn sliding_the_idle_deadline_does_not_write_on_every_request() {
    let store = CountingStore::default();
    let saves = Arc::clone(&store.saves);
    let app = app::start_with(Options {
        layer: Box::new(move |b| b.with_store(store)),
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    assert_eq!(saves.load(Ordering::SeqCst), 1, "the login");
    for _ in 0..200 {
        assert_eq!(
            browser.get_json(&app.url("/me")).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(saves.load(Ordering::SeqCst), 1, "no write per request");
}

/// A store of its own, as an app would write one over a database: each session kept as the
/// text `serde_json::to_string` makes of it, and read back from that text.
#[derive(Clone, Default)]
struct JsonStore {
    rows: Arc<std::sync::Mutex<std::collections::HashMap<SessionKey, String>>>,
}

impl JsonStore {
    fn rows(&self) -> Vec<String> {
        self.rows.lock().unwrap().values().cloned().collect()
    }
}

impl JsonStore {
    fn read(&self, key: &SessionKey) -> Option<Arc<Session>> {
        let row = self.rows.lock().unwrap().get(key).cloned();
        row.and_then(|text| serde_json::from_str(&text).ok().map(Arc::new))
    }
}

#[async_trait]
impl SessionStore for JsonStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<Arc<Session>>, StoreError> {
        Ok(self.read(key))
    }
    /// Answers at once, with a session read from its text: sealed, so the layer must not
    /// serve it on its hot path before opening it.
    fn load_now(&self, key: &SessionKey) -> Option<Option<Arc<Session>>> {
        Some(self.read(key))
    }
    async fn save(&self, key: &SessionKey, session: Arc<Session>) -> Result<(), StoreError> {
        let text = serde_json::to_string(&*session).map_err(|e| StoreError::new(e.to_string()))?;
        self.rows.lock().unwrap().insert(*key, text);
        Ok(())
    }
    async fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.rows.lock().unwrap().remove(key);
        Ok(())
    }
    async fn delete_matching(
        &self,
        target: &tower_oauth2_login::SessionMatch<'_>,
    ) -> Result<usize, StoreError> {
        let mut rows = self.rows.lock().unwrap();
        let before = rows.len();
        rows.retain(|_, text| {
            !serde_json::from_str::<Session>(text).is_ok_and(|s| s.matches(target))
        });
        Ok(before - rows.len())
    }
}

#[tokio::test]
async fn a_custom_serialising_store_gets_sealed_sessions() {
    let store = JsonStore::default();
    let app = app::start_with(Options {
        discover: true,
        layer: {
            let store = store.clone();
            Box::new(move |b| b.with_store(store))
        },
        ..Default::default()
    })
    .await;
    let browser = Browser::new();
    app.login(&browser, "/protected").await;
    let rows = store.rows();
    assert_eq!(rows.len(), 1);
    let tokens: Vec<String> = app
        .provider
        .issued_access_tokens()
        .into_iter()
        .chain(app.provider.issued_refresh_tokens())
        .collect();
    assert_eq!(tokens.len(), 2);
    for token in &tokens {
        assert!(
            !rows[0].contains(token.as_str()),
            "in the clear: {}",
            rows[0]
        );
    }
    assert!(
        !rows[0].contains("eyJ"),
        "the ID token in the clear: {}",
        rows[0]
    );
    let row: serde_json::Value = serde_json::from_str(&rows[0]).unwrap();
    assert_eq!(row["subject"], "alice");
    assert!(row["sid"].is_string(), "back-channel logout can find it");

    // Every request reads the text back; the layer opens the tokens with the cookie.
    let hash = browser.get_json(&app.url("/token-hash")).await;
    assert_eq!(hash.status, StatusCode::OK);
    assert_eq!(
        hash.body,
        app::token_hash(&app.provider.issued_access_tokens()[0])
    );

    // Logout has what it needs from the sealed record: the refresh token to revoke, the ID
    // token for the end-session hint.
    let res = browser
        .request(
            http::Method::POST,
            &app.url("/logout"),
            &[
                ("origin", app.base.as_str()),
                ("sec-fetch-site", "same-origin"),
            ],
        )
        .await;
    let end_session = res
        .location()
        .expect("to the provider's end-session endpoint");
    assert!(
        app::param(end_session, "id_token_hint").is_some(),
        "{end_session}"
    );
    let refresh_token = app.provider.issued_refresh_tokens()[0].clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !app.provider.revoked_tokens().contains(&refresh_token) {
        assert!(
            std::time::Instant::now() < deadline,
            "the refresh token was not revoked"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(store.rows().is_empty());
}

/// `GET` on the logout path: the layer's confirmation page by default, whose button POSTs
/// and which no other site can frame; the app's own page with `with_logout_page(false)`.
#[tokio::test]
async fn get_on_the_logout_path_shows_a_sign_out_button_unless_the_app_has_its_own() {
    let build = || {
        LoginLayer::builder()
            .with_client_id("app")
            .with_authorization_endpoint("https://idp.example/authorize")
            .with_token_endpoint("https://idp.example/token")
            .with_userinfo_endpoint("https://idp.example/userinfo")
            .with_redirect_url("https://app.example/auth/callback")
            .with_cookie_key([9u8; 64])
            .build()
            .unwrap()
    };
    let app = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
            b"the app's page",
        ))))
    });
    let get_logout = || {
        Request::get("/auth/logout")
            .header(header::ACCEPT, "text/html")
            .header("sec-fetch-mode", "navigate")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };

    let res = tower::Layer::layer(&build(), app)
        .oneshot(get_logout())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::X_FRAME_OPTIONS], "DENY");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let body = std::str::from_utf8(&body).unwrap();
    assert!(
        body.contains(r#"<form method="post" action="/auth/logout">"#),
        "{body}"
    );

    // The app's own page: the request passes, as any other, so the logout path must be
    // public for a signed-out visitor to see it.
    let own = LoginLayer::builder()
        .with_client_id("app")
        .with_authorization_endpoint("https://idp.example/authorize")
        .with_token_endpoint("https://idp.example/token")
        .with_userinfo_endpoint("https://idp.example/userinfo")
        .with_redirect_url("https://app.example/auth/callback")
        .with_cookie_key([9u8; 64])
        .with_logout_page(false)
        .with_public_path("/auth/logout")
        .build()
        .unwrap();
    let res = tower::Layer::layer(&own, app)
        .oneshot(get_logout())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"the app's page");
}

/// A discovery that fails says which URL and why: a refused connection, a status, a
/// document that is not JSON.
#[tokio::test]
async fn discovery_failures_name_the_url_and_the_cause() {
    use tower_oauth2_login::DiscoveryError;

    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = format!("http://127.0.0.1:{port}");
    let err = LoginLayer::builder().discover(&issuer).await.unwrap_err();
    let ConfigError::Discovery(DiscoveryError::Request { url, source }) = &err else {
        panic!("expected a failed request, got {err:?}");
    };
    assert_eq!(url, &format!("{issuer}/.well-known/openid-configuration"));
    assert!(
        source.to_string().to_lowercase().contains("refused"),
        "{source}"
    );
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        format!("could not fetch {url}")
    );

    // A server that is not a provider: a 404 page, then an HTML 200.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route(
            "/html/.well-known/openid-configuration",
            get(|| async { Html("<p>not here</p>") }),
        )
        .route(
            "/json/.well-known/openid-configuration",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    "{\"issuer\": 1}",
                )
            }),
        );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://{addr}");

    let err = LoginLayer::builder().discover(&base).await.unwrap_err();
    let ConfigError::Discovery(DiscoveryError::Status { url, status, .. }) = &err else {
        panic!("expected a status, got {err:?}");
    };
    assert_eq!(url, &format!("{base}/.well-known/openid-configuration"));
    assert_eq!(*status, StatusCode::NOT_FOUND);

    let err = LoginLayer::builder()
        .discover(format!("{base}/html"))
        .await
        .unwrap_err();
    let ConfigError::Discovery(DiscoveryError::Status { reason, .. }) = &err else {
        panic!("expected a content type refusal, got {err:?}");
    };
    assert!(reason.contains("text/html"), "{reason}");

    let err = LoginLayer::builder()
        .discover(format!("{base}/json"))
        .await
        .unwrap_err();
    let ConfigError::Discovery(DiscoveryError::InvalidDocument { url, .. }) = &err else {
        panic!("expected an invalid document, got {err:?}");
    };
    assert_eq!(
        url,
        &format!("{base}/json/.well-known/openid-configuration")
    );
    server.abort();
}
