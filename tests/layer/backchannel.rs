//! Back-channel logout under hostile or repeated input, through the real layer over HTTP:
//! JWKS fetches that strangers can force are rate-limited and never make other requests
//! wait, and a logout token is used once.

use crate::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode as AxumStatus;
use axum::response::IntoResponse;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::StatusCode;
use support::app::{self, Browser, Options, CLIENT_ID};
use tokio::sync::Notify;
use tower_oauth2_login_dev_provider::LogoutTokenMisbehavior;

// ---- A JWKS endpoint that counts its requests --------------------------------------------

/// What the counting JWKS endpoint answers.
#[derive(Clone)]
enum Jwks {
    /// `503`.
    Fail,
    /// Nothing until the test calls [`CountingJwks::release`], then `503`.
    Hang,
    /// The keys at this URL (the embedded provider's).
    From(String),
}

#[derive(Clone)]
struct CountingJwks {
    url: String,
    requests: Arc<AtomicUsize>,
    mode: Arc<Mutex<Jwks>>,
    released: Arc<Notify>,
}

impl CountingJwks {
    async fn start(mode: Jwks) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let this = CountingJwks {
            url: format!("http://{}/jwks", listener.local_addr().unwrap()),
            requests: Arc::default(),
            mode: Arc::new(Mutex::new(mode)),
            released: Arc::default(),
        };
        let state = this.clone();
        let router = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let state = state.clone();
                async move {
                    state.requests.fetch_add(1, Ordering::SeqCst);
                    let mode = state.mode.lock().unwrap().clone();
                    match mode {
                        Jwks::Fail => AxumStatus::SERVICE_UNAVAILABLE.into_response(),
                        Jwks::Hang => {
                            state.released.notified().await;
                            AxumStatus::SERVICE_UNAVAILABLE.into_response()
                        }
                        Jwks::From(url) => {
                            let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
                            ([("content-type", "application/json")], body).into_response()
                        }
                    }
                }
            }),
        );
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        this
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn set(&self, mode: Jwks) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Answers every hanging request.
    fn release(&self) {
        self.set(Jwks::Fail);
        self.released.notify_waiters();
    }

    /// Waits until the endpoint has received `n` requests in all.
    async fn wait_for(&self, n: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while self.requests() < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the JWKS request arrives");
    }
}

/// A test app configured without discovery: its only keys are those at `jwks.url`,
/// fetched on demand (none at start).
async fn app_with_jwks_uri(jwks: &CountingJwks) -> app::TestApp {
    let url = jwks.url.clone();
    let app = app::start_with(Options {
        layer: Box::new(move |b| b.with_jwks_uri(url).with_scopes(["openid", "profile"])),
        ..Default::default()
    })
    .await;
    assert_eq!(jwks.requests(), 0, "no fetch before a token needs one");
    app
}

/// A logout token anyone can make: well-formed, signed by nobody, under a key id that no
/// JWKS has.
fn bogus_logout_token(n: usize) -> String {
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"RS256","kid":"made-up-{n}"}}"#));
    let claims = URL_SAFE_NO_PAD.encode(r#"{"iss":"x","jti":"y"}"#);
    let signature = URL_SAFE_NO_PAD.encode([7u8; 256]);
    format!("{header}.{claims}.{signature}")
}

async fn post_logout_token(app: &app::TestApp, token: &str) -> StatusCode {
    reqwest::Client::new()
        .post(app.url("/auth/backchannel-logout"))
        .form(&[("logout_token", token)])
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap()
        .status()
}

/// Refused, as a bad token (400) or for want of keys (503): never accepted.
fn refused(status: StatusCode) -> bool {
    status == StatusCode::BAD_REQUEST || status == StatusCode::SERVICE_UNAVAILABLE
}

// ---- Defect 6: forced JWKS fetches ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bogus_logout_tokens_force_at_most_one_fetch_of_a_failing_jwks() {
    let jwks = CountingJwks::start(Jwks::Fail).await;
    let app = app_with_jwks_uri(&jwks).await;
    // One after the other: before the fix, each made one fetch (the first fetch, and every
    // one until a fetch succeeds, was not rate-limited).
    for n in 0..20 {
        let status = post_logout_token(&app, &bogus_logout_token(n)).await;
        assert!(refused(status), "{n}: {status}");
    }
    assert_eq!(
        jwks.requests(),
        1,
        "one fetch per window, failures included"
    );
    // And all at once.
    let posts = (20..60).map(|n| {
        let token = bogus_logout_token(n);
        let app = &app;
        async move { post_logout_token(app, &token).await }
    });
    for status in futures_util::future::join_all(posts).await {
        assert!(refused(status), "{status}");
    }
    assert_eq!(
        jwks.requests(),
        1,
        "concurrent requests make no fetch either"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bogus_logout_tokens_force_at_most_one_fetch_of_a_working_jwks() {
    let jwks = CountingJwks::start(Jwks::Fail).await;
    let app = app_with_jwks_uri(&jwks).await;
    jwks.set(Jwks::From(app.provider.jwks_uri()));
    for n in 0..20 {
        let status = post_logout_token(&app, &bogus_logout_token(n)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{n}");
    }
    assert_eq!(jwks.requests(), 1);
    // The keys fetched serve the logins that follow: no fetch of their own.
    let browser = Browser::new();
    let res = app.login(&browser, "/protected").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:#?}");
    assert_eq!(jwks.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_waits_behind_a_jwks_fetch_that_hangs() {
    let jwks = CountingJwks::start(Jwks::Hang).await;
    let app = app_with_jwks_uri(&jwks).await;
    // A stranger's token starts a fetch, which hangs.
    let first = {
        let url = app.url("/auth/backchannel-logout");
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .form(&[("logout_token", bogus_logout_token(0))])
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    jwks.wait_for(1).await;

    // Other tokens are answered while it runs, without a fetch of their own; before the
    // fix they queued behind the lock the running fetch holds (until the HTTP timeout).
    let quick = Duration::from_secs(5);
    for n in 1..10 {
        let status = tokio::time::timeout(quick, post_logout_token(&app, &bogus_logout_token(n)))
            .await
            .expect("answered while the fetch hangs");
        assert!(refused(status), "{n}: {status}");
    }
    // A login needs keys too: it fails fast ("keys unavailable"), and does not hang.
    let browser = Browser::new();
    let res = tokio::time::timeout(quick, app.login(&browser, "/protected"))
        .await
        .expect("the login is answered while the fetch hangs");
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE, "{res:#?}");
    assert!(browser.cookie(&app.base, "oauth2_session").is_none());
    assert_eq!(jwks.requests(), 1, "one fetch in flight, no other");

    jwks.release();
    let status = first.await.unwrap();
    assert!(refused(status), "{status}");
    // The failed fetch counts: within its window there is no other.
    assert!(refused(
        post_logout_token(&app, &bogus_logout_token(99)).await
    ));
    assert_eq!(jwks.requests(), 1);
}

// ---- Defect 8: a logout token is used once ----------------------------------------------

async fn oidc_app() -> app::TestApp {
    app::start_with(Options {
        discover: true,
        ..Default::default()
    })
    .await
}

async fn signed_in(app: &app::TestApp) -> Browser {
    let browser = Browser::new();
    let res = app.login(&browser, "/protected").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res:#?}");
    assert_eq!(
        browser.get_json(&app.url("/me")).await.status,
        StatusCode::OK
    );
    browser
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_logout_token_is_refused_and_ends_no_later_session() {
    let app = oidc_app().await;
    let before = signed_in(&app).await;
    // About the user (no sid): it names every session of alice, the later ones too.
    let token = app
        .provider
        .mint_logout_token(
            CLIENT_ID,
            Some("alice"),
            None,
            LogoutTokenMisbehavior::Normal,
        )
        .unwrap();
    assert_eq!(post_logout_token(&app, &token).await, StatusCode::OK);
    assert_eq!(
        before.get_json(&app.url("/me")).await.status,
        StatusCode::UNAUTHORIZED
    );

    // alice signs in again; someone who kept the token sends it again.
    let after = signed_in(&app).await;
    assert_eq!(
        post_logout_token(&app, &token).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        after.get_json(&app.url("/me")).await.status,
        StatusCode::OK,
        "the replay ends no session"
    );
    // A fresh token from the provider still works.
    let fresh = app
        .provider
        .mint_logout_token(
            CLIENT_ID,
            Some("alice"),
            None,
            LogoutTokenMisbehavior::Normal,
        )
        .unwrap();
    assert_eq!(post_logout_token(&app, &fresh).await, StatusCode::OK);
    assert_eq!(
        after.get_json(&app.url("/me")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_token_is_refused_again_with_a_custom_store() {
    // A store of the app's own that knows nothing of `remember_once`: the layer's default
    // still refuses the replay within this instance.
    #[derive(Clone, Default)]
    struct Custom(tower_oauth2_login::MemoryStore);
    #[async_trait::async_trait]
    impl tower_oauth2_login::SessionStore for Custom {
        async fn load(
            &self,
            key: &tower_oauth2_login::SessionKey,
        ) -> Result<Option<Arc<tower_oauth2_login::Session>>, tower_oauth2_login::StoreError>
        {
            self.0.load(key).await
        }
        async fn save(
            &self,
            key: &tower_oauth2_login::SessionKey,
            session: Arc<tower_oauth2_login::Session>,
        ) -> Result<(), tower_oauth2_login::StoreError> {
            self.0.save(key, session).await
        }
        async fn delete(
            &self,
            key: &tower_oauth2_login::SessionKey,
        ) -> Result<(), tower_oauth2_login::StoreError> {
            self.0.delete(key).await
        }
        async fn delete_matching(
            &self,
            target: &tower_oauth2_login::SessionMatch<'_>,
        ) -> Result<usize, tower_oauth2_login::StoreError> {
            self.0.delete_matching(target).await
        }
    }
    let app = app::start_with(Options {
        discover: true,
        layer: Box::new(|b| b.with_store(Custom::default())),
        ..Default::default()
    })
    .await;
    signed_in(&app).await;
    let token = app
        .provider
        .mint_logout_token(
            CLIENT_ID,
            Some("alice"),
            None,
            LogoutTokenMisbehavior::Normal,
        )
        .unwrap();
    assert_eq!(post_logout_token(&app, &token).await, StatusCode::OK);
    let after = signed_in(&app).await;
    assert_eq!(
        post_logout_token(&app, &token).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(after.get_json(&app.url("/me")).await.status, StatusCode::OK);
}
